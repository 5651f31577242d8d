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
// forward chain for traffic from environments, whose rules the reconciler
// never touches: it is where per-environment VPC steering (an nft map keyed
// by source address) will be added.
package nft
