// Package nft holds lambdaplane's nftables rule sets and a small reconciler
// that converges a table in some network namespace to a desired state over
// netlink (github.com/google/nftables); no nft(8) processes are spawned.
//
// A table is described by a [TableSpec]: named counters, IPv4 interval sets
// and chains whose rules each carry a comment. [Conn.Apply] reads the table
// back and changes only what differs (missing objects are added, a set whose
// elements differ is flushed and refilled, a chain whose rule comments differ
// is flushed and refilled, an incompatible chain or set makes the whole table
// be rebuilt), all in one netlink transaction. Applying the same spec twice
// changes nothing.
//
// [SvcTable] is the service router's table (forward isolation, egress
// allow/block sets, the egress_blocked counter, masquerade out of the uplink)
// and [HostTable] the host's table when the uplink ends in the host's root
// namespace. The service table has a regular chain "vpc", jumped to from the
// forward chain for traffic from environments: it accepts traffic that
// policy routing (one "ip rule from <env>" per attached environment, see
// internal/netdev) steered to a VPC's hyperplane link. A VPC router's
// Hyperplane objects (env2eni, eni_snat, eni_egress) are in
// hyperplane_linux.go.
package nft
