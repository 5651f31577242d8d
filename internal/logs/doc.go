// Package logs captures the output of execution environments and keeps it
// per function and version: a non-blocking pipe reader that an invocation
// can drain synchronously (so a line printed before the response belongs to
// that invocation), the START/END/REPORT lines Lambda writes, and a bounded
// JetStream stream that `lambdaplane logs --follow` reads, written in
// batches (one message per function per flush delay).
//
// # Retention: no tenant's logs evict another's
//
// All functions share one stream, LOGS, with one subject per function
// (logs.<account>.<function>). What it keeps is bounded per function and
// per account, never stream-wide: a stream byte limit with DiscardOld drops
// the stream's oldest messages whoever wrote them, so one flooding tenant
// would erase everyone's earlier records (that was issue 12).
//
//   - Per function: the newest FunctionBytes (default 64 MiB,
//     --log-quota-function-bytes) and at most FunctionMsgs stored messages
//     (default 10,000 batches; JetStream's own MaxMsgsPerSubject). Past
//     either, the function's own oldest records go.
//   - Per account: AccountBytes (default 1 GiB, --log-quota-account-bytes)
//     for all its functions together. Past it, the account's function
//     holding the most bytes loses its oldest records, and again, until the
//     account is within its quota: a flooding function trims itself first,
//     and a quiet function keeps about an even share of the account's
//     quota (AccountBytes / its functions with logs) before it loses any.
//     Only when no function of the account holds more than its newest run
//     (many small functions) does the largest lose all of its records, so
//     the account's bound holds however many functions it has.
//   - The stream has no byte or message limit of its own.
//
// JetStream has no per-subject byte limit, so the Store accounts bytes
// itself (the ledger): every message the stream acknowledged is entered,
// with its sequence, in runs of about 1/16 of a function's quota, and a
// function over a quota is cut with a purge of its subject below the first
// sequence it keeps (a message stored meanwhile is never taken). A trimmed
// function keeps between 15/16 and all of its quota. On start the Store updates an existing
// LOGS stream to this configuration (records stored by earlier versions stay
// readable) and accounts what it holds by reading the stored messages'
// headers, trimming what is over the current quotas.
//
// Disk in total is bounded by accounts × AccountBytes (plus JetStream's
// per-message overhead of some tens of bytes); accounts are made by the
// operator (`lambdaplane accounts create`).
//
// # Output rate
//
// Each execution environment may write Burst bytes (default 1 MiB,
// --log-rate-burst-bytes) at once and Rate bytes per second (default
// 256 KiB/s, --log-rate-bytes; -1 = no bound) sustained to stdout and
// stderr together: a token bucket in the Capture. Output beyond it is read
// and dropped (the process never blocks on its pipe, as on Lambda), and one
// line per dropped stretch takes its place; a stretch ends once the bucket
// has refilled 4 KB, and the marker is charged to it like output:
//
//	[lambdaplane] N bytes of function output dropped: over the log rate limit (R bytes/s, burst B bytes)
//
// the counterpart of Lambda's platform.logsDropped event. A stretch still
// open when an invocation's output is taken ends there, so every
// invocation's log (and its LogType=Tail, the log's last 4 KB) says what it
// lost. The START/END/REPORT lines are the platform's and never dropped.
package logs
