// Package store is lambdaplane's durable state: NATS JetStream key-value
// buckets (records), object stores (code packages) and streams (async
// invokes, logs). By default it runs an embedded nats-server with a file
// store under the data directory and no listening port; with a URL it
// connects to an external NATS cluster instead.
//
// Records are JSON documents addressed by bucket and key. Every update is
// revision-checked (optimistic concurrency), so no code may assume it is the
// only writer: Table.Update re-reads and retries on conflict.
//
// Acknowledged means durable: every write is on disk before its
// acknowledgement reaches the caller, so neither a process kill nor a host
// crash loses a write a caller was told succeeded. A clustered embedded
// server syncs each write (JetStream's sync_always; Raft shares one sync
// among the entries appended together); a single one commits in groups
// (groupcommit.go): the server writes without syncing, and its in-process
// connection hands the caller an acknowledgement only after a syncfs(2)
// that started after the acknowledgement arrived, so one sync covers every
// write acknowledged meanwhile. Nothing on the warm invoke path waits for
// one.
//
// A damaged store is never served silently: Open reads every stream back
// and checks it against JetStream's report of lost messages, its newest
// record and the previous run's recorded state, and refuses lost data with
// a *DataLossError unless Options.AcceptDataLoss (integrity.go). Snapshot
// and Restore move whole streams for backups (snapshot.go, internal/backup).
package store
