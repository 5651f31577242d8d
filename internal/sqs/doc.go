// Package sqs is the queue engine behind the SQS-compatible API: queues,
// their attributes and tags, messages, visibility, dead-letter redrive and
// FIFO groups, kept in JetStream so that a message acknowledged by Send
// survives a crash and several servers on one JetStream serve the same
// queues. It has no wire format (internal/sqsapi has both) and no kernel
// code.
//
// Storage:
//
//   - Queue records live in the KV bucket "sqs_queues", key
//     "<account>.<name>"; every server watches the bucket, so a queue
//     created on one host is served by all.
//   - Every message of every queue lives in one work-queue stream, "SQS",
//     on subjects under "sqs.<queue id>.": a standard queue's messages on
//     "sqs.<id>.m", consumed by the queue's durable pull consumer
//     "Q_<id>" (explicit acks; AckWait is the queue's VisibilityTimeout).
//     The consumer is the visibility state: a received message is pending
//     on it until deleted (acked) or until its visibility ends (redelivered);
//     ChangeMessageVisibility is a NAK with that delay; the receive count is
//     the consumer's delivery count. All of it is JetStream's replicated,
//     synced consumer state, never one process's memory.
//   - A delayed message (DelaySeconds) is a JetStream message schedule on
//     "sqs.<id>.d.<unique>" that the server publishes into "sqs.<id>.m"
//     when it is due; MessageRetentionPeriod is each message's TTL.
//   - A FIFO queue's messages are on "sqs.<id>.g.<hex group id>", read in
//     order by sequence; each group's in-flight batch and receive counts
//     are a record in the KV bucket "sqs_fifo" updated with
//     compare-and-swap, so two receivers (on any hosts) never take one
//     group at once. Deduplication is JetStream's (Nats-Msg-Id, a
//     5-minute window).
//
// Durability: a Send, SendBatch, Delete or DeleteBatch answered is on
// disk. On a single server the store commits in groups
// (internal/store/groupcommit.go has the argument from nats-server's
// file store): the message record, or the work-queue stream's tombstone
// that a consumer ack writes before the server replies, is write(2)n
// before the server answers, and the store's connection passes the
// answer on only after a syncfs(2) that started after it arrived, so one
// sync serves every request waiting at that moment. A DeleteMessage is an
// ack request with a reply (not a fire-and-forget ack) for that reason.
// On a cluster every write is a Raft entry synced on a quorum of
// replicas before it is acknowledged (sync_always). What is not durable
// at the answer, by design, is a consumer's delivery bookkeeping
// (ApproximateReceiveCount, visibility), written by JetStream up to
// 100 ms later: a host crash may deliver an undeleted message once more
// or count one receive fewer, never lose or resurrect a message.
//
// Long polling waits on the consumer's pull request (standard) or on a
// subscription to the queue's subjects (FIFO), so a send on one host wakes
// a receiver on another at once.
//
// The Go API other packages use (event source mappings, destinations,
// dead-letter queues of functions) is Queues: Lookup, Send, SendBatch,
// Receive, Delete, DeleteBatch, ChangeVisibility, Allowed and Notify, all
// by queue ARN.
package sqs
