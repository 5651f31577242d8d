// Package placement runs each invocation on the right host of a cluster
// (CLUSTER.md §4-5), on top of internal/cluster's membership.
//
//   - Route (invoke.Placement): a synchronous invoke goes to its function's
//     home, the first host of cluster.Ranked(account/function), so warm
//     environments are reused cluster-wide. The home runs it here or, when
//     this host is not the home, the request is forwarded over NATS
//     request/reply (lp.invoke.<host>: the payload as the body, the rest in
//     a header). A home at its capacity answers "full" before running
//     anything and the next-ranked host is tried (spill); so does a host
//     that is gone ("no responders"). Any other failure, a timeout above
//     all, is returned and never replayed: the invocation may have run.
//     A function with reserved concurrency never spills (its home counts
//     the reservation). Event invocations run on the host whose worker
//     pulled them from the replicated queue, except those of functions
//     with reserved concurrency, which go home too. A host that does not
//     see a majority of the cluster admits nothing.
//   - Ledger (invoke.AccountSlots): the account concurrency limit,
//     counted cluster-wide by a ledger on the host cluster.Home("ledger/" +
//     account) picks. Hosts lease slots from it (lp.ledger.<host>) for
//     LeaseTTL (3 s), renewed every second at what they use plus a little
//     headroom, so a warm invoke takes a slot without a request. A
//     partitioned host's renewals fail and its leases lapse: it stops
//     admitting. A new ledger host rebuilds from the renewals.
//   - Barrier: after a control-plane write is stored, the host that took
//     it asks every live host (lp.sync.<host>) to catch its in-memory
//     records up with the store before the caller is answered: an update
//     through one host is never followed by old code on another.
package placement
