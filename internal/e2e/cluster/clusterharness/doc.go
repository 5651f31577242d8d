// Package clusterharness runs a lambdaplane cluster on one machine for
// end-to-end tests (issue 14): each host is the built `lambdaplane serve`
// (harness.BinDir) started with `nsenter --net` in a network namespace of
// its own, with its own --prefix, data directory, and port; the hosts are
// joined by an underlay namespace holding a bridge, one veth per host, on
// 198.18.0.0/24 (checked first with `ip route get`: this machine's own
// network is 192.0.2.0/24 and is never used). The test driver is a
// namespace of its own on the same bridge; its clients dial from it
// (netdev.DialIn), so nothing a test sends can leave the machine: no
// namespace the harness makes has a default route. Cutting a host's veth
// (Partition) cuts it off from the others and the driver alike.
//
// Everything is removed when the test ends, and every host is checked to
// leave no kernel object with its prefix behind.
package clusterharness
