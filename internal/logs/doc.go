// Package logs captures the output of execution environments and keeps it
// per function and version: a non-blocking pipe reader that an invocation
// can drain synchronously (so a line printed before the response belongs to
// that invocation), the START/END/REPORT lines Lambda writes, and a bounded
// JetStream stream that `lambdaplane logs --follow` reads, written in
// batches (one message per function per flush delay).
package logs
