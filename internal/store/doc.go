// Package store is lambdaplane's durable state: NATS JetStream key-value
// buckets (records), object stores (code packages) and streams (async
// invokes, logs). By default it runs an embedded nats-server with a file
// store under the data directory and no listening port; with a URL it
// connects to an external NATS cluster instead.
//
// Records are JSON documents addressed by bucket and key. Every update is
// revision-checked (optimistic concurrency), so no code may assume it is the
// only writer: Table.Update re-reads and retries on conflict.
package store
