// Package backup protects a single-host install: `lambdaplane backup DIR`
// takes a snapshot of every JetStream stream of a running server into a
// directory, and `lambdaplane restore DIR` rebuilds a data directory from
// one.
//
// Everything lambdaplane keeps is a stream: records are KV buckets (KV_*:
// functions, versions, aliases, VPCs, subnets, security groups, network
// interfaces, roles, users, accounts…), code packages and layers are object
// stores (OBJ_*), queued Event invokes and logs are streams of their own.
// Extracted code trees, the runtime directory and kernel state are derived
// from them and rebuilt on start. The data directory's credentials and
// config files (the AWS CLI profiles `serve` and `accounts create
// --write-profile` wrote) are copied too; the admin token is not (a
// restored server writes a new one).
//
// The client reaches the server's store through the admin API (Handler, on
// the API listener under Path, authorised by the data directory's admin
// token): the server runs JetStream's snapshot of each stream on its own
// store connection and streams it back. Each stream's snapshot is
// consistent on its own; streams are taken one after another, records
// before the code objects they name. A write that lands between two
// snapshots is restored like a crash at that moment, which the server
// reconciles on start.
//
// A backup directory holds manifest.json (written last: a backup without
// one is incomplete), streams/NAME.snap (JetStream's snapshot format, an
// s2-compressed tar) and files/ (credentials, config). Restore checks every
// file's SHA-256 before it touches the data directory, which must be empty.
package backup
