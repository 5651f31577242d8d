package esm

import (
	"context"
	"errors"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// Message is one message received from a queue.
type Message struct {
	MessageID     string
	ReceiptHandle string
	Body          string
	MD5OfBody     string
	// Attributes are the system attributes (ApproximateReceiveCount,
	// SentTimestamp, SenderId, ApproximateFirstReceiveTimestamp, and for
	// FIFO queues MessageGroupId, MessageDeduplicationId, SequenceNumber).
	Attributes        map[string]string
	MessageAttributes map[string]MessageAttribute
}

// MessageAttribute is a message attribute as Lambda's SQS event carries it.
type MessageAttribute struct {
	StringValue      *string  `json:"stringValue,omitempty"`
	BinaryValue      []byte   `json:"binaryValue,omitempty"`
	StringListValues []string `json:"stringListValues"`
	BinaryListValues [][]byte `json:"binaryListValues"`
	DataType         string   `json:"dataType"`
}

// Queues is what pollers need of the queue service (internal/sqs).
type Queues interface {
	// VisibilityTimeout is the queue's visibility timeout; an error
	// wrapping ErrNoQueue when the queue does not exist.
	VisibilityTimeout(ctx context.Context, queueARN string) (time.Duration, error)
	// Receive long-polls up to max messages for at most wait, hiding them
	// for the queue's visibility timeout; it returns as soon as there
	// are messages, and honours ctx.
	Receive(ctx context.Context, queueARN string, max int, wait time.Duration) ([]Message, error)
	// Delete deletes received messages by receipt handle.
	Delete(ctx context.Context, queueARN string, receiptHandles []string) error
	// Refused returns the first of actions that the queue's Policy does
	// not grant the role roleARN of account acct (nor acct), "" when it
	// grants them all or the queue is acct's own; an error wrapping
	// ErrNoQueue when the queue does not exist.
	Refused(ctx context.Context, queueARN, acct, roleARN string, actions []string) (string, error)
}

// ErrNoQueue is wrapped by Queues' errors for a queue that does not exist.
var ErrNoQueue = errors.New("queue does not exist")

// Functions resolves mapping targets (control.Service).
type Functions interface {
	Resolve(acct, region, name, qualifier string) (*control.Config, error)
	Reserved(acct, name string) *int
}

// Invoker runs one synchronous invocation of a mapping's function.
type Invoker interface {
	// Invoke runs the function with payload; functionError is set when
	// the function failed (its payload is the error). err is set when it
	// could not run (TooManyRequestsException, not found, …) or when its
	// log could not be stored: Invoke returns once the invocation's log
	// is stored, since the batch is deleted next and the log is all that
	// stays of it.
	Invoke(ctx context.Context, account, region, function, qualifier string, payload []byte) (out []byte, functionError string, err error)
}

// Roles checks the function's execution role (iam.Roles).
type Roles interface {
	RoleAllowsRequests(ctx context.Context, accountID, roleARN string, reqs []iam.Request) (ok bool, missing []string, err error)
}

// Record is one message in Lambda's SQS event.
type Record struct {
	MessageID         string                      `json:"messageId"`
	ReceiptHandle     string                      `json:"receiptHandle"`
	Body              string                      `json:"body"`
	Attributes        map[string]string           `json:"attributes"`
	MessageAttributes map[string]MessageAttribute `json:"messageAttributes"`
	MD5OfBody         string                      `json:"md5OfBody"`
	EventSource       string                      `json:"eventSource"`
	EventSourceARN    string                      `json:"eventSourceARN"`
	AwsRegion         string                      `json:"awsRegion"`
}

// Event is Lambda's SQS event.
type Event struct {
	Records []Record `json:"Records"`
}

// record builds m's event record.
func record(m Message, queueARN, region string) Record {
	attrs := m.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	mattrs := make(map[string]MessageAttribute, len(m.MessageAttributes))
	for k, a := range m.MessageAttributes {
		if a.StringListValues == nil {
			a.StringListValues = []string{}
		}
		if a.BinaryListValues == nil {
			a.BinaryListValues = [][]byte{}
		}
		mattrs[k] = a
	}
	return Record{
		MessageID: m.MessageID, ReceiptHandle: m.ReceiptHandle, Body: m.Body,
		Attributes: attrs, MessageAttributes: mattrs, MD5OfBody: m.MD5OfBody,
		EventSource: "aws:sqs", EventSourceARN: queueARN, AwsRegion: region,
	}
}
