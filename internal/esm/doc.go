// Package esm is Lambda's event source mappings for SQS queues: the
// mapping records (Create/Get/List/Update/Delete with UUIDs and states,
// stored in the bucket "esm"), Lambda's event-filtering patterns, and the
// pollers that receive batches from a queue, invoke the function with
// Lambda's SQS event and delete what it processed.
//
// Pollers are placed through the store, never by "this is the only
// server": every server runs a Placer that, for each enabled mapping,
// tries to take the mapping's lease (a key in the bucket "esm_leases"
// whose entries expire after LeaseTTL unless their holder renews them,
// revision-checked). The holder runs the mapping's pollers; when it dies
// or stops renewing, the key lapses and another server takes it. A server
// that restarts finds its own earlier lease (same host id, another boot)
// and takes it back at once.
//
// A queue and a function have one mapping: Create first creates a claim
// key ("c.<account>.<hash of queue and function>", holding the mapping's
// UUID) in the bucket, so of concurrent creates on any servers exactly
// one proceeds (claim.go). A mapping on another account's queue needs the
// queue's Policy to grant the function's execution role, or its account,
// sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes: at
// create, and again every second while it polls (a withdrawn grant stops
// the polling). LastProcessingResult is what the last poll came to ("OK",
// "PROBLEM: Function call failed", "No records processed", …), written
// when it changes (result.go).
//
// The package is pure: queues, functions, invocations and roles are
// interfaces the server wires (internal/sqs, internal/control,
// internal/invoke, internal/iam).
package esm
