// Package netdev builds the kernel side of lambdaplane's service network:
// the service router namespace, its uplink, and a pool of pre-built
// execution-environment network namespaces.
//
//	env netns <prefix>-e<N>          service router netns <prefix>-svc           outside
//	eth0 100.64.x.y/32  ── veth ──  e<N> 169.254.0.1/32, route x.y/32 dev e<N>
//	default via 169.254.0.1          nft table ip <prefix> (isolation, egress)
//	                                 uplink 169.254.255.1/30  ── veth ──  <prefix>-up 169.254.255.2/30
//	                                 default via 169.254.255.2             (host root netns, or
//	                                 masquerade out of uplink               Config.UplinkNetns)
//
// Environments are routed, not bridged: each has a /32 from the service CIDR
// and a point-to-point veth into the service router, which forwards to the
// uplink and masquerades. The nft rules (package internal/nft) keep
// environments from reaching each other, the service router, the host and
// blocked destinations (private, link-local, metadata, ...), counting
// blocked packets in a named counter.
//
// All kernel state is converged, not scripted: [Router.Setup] creates or
// repairs the service router, the uplink, the nft tables and the pooled
// environments, and removes stale environment namespaces with the prefix;
// teardown treats "already gone" as success. While running, [Router.Repair]
// and [VPCs.Verify] compare the kernel with what was applied, reading only,
// and converge what differs with the same code (each repair is reported by
// kind, [RepairKinds]). Netlink handles are bound to
// namespaces (netlink.NewHandleAt); a thread switches namespace only where
// the kernel requires it (creating a namespace, writing its /proc/sys/net
// sysctls, opening a socket inside it: [ListenIn], [DialIn]), always on a
// locked OS thread that is discarded if it cannot be switched back.
package netdev
