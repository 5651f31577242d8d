package destinations

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/lineage"
)

// Conditions of an invocation record.
const (
	Success          = "Success"
	RetriesExhausted = "RetriesExhausted"
	EventAgeExceeded = "EventAgeExceeded"
)

// Outcome is the end of one Event invocation: it succeeded, or failed
// every attempt allowed, or grew older than its maximum age.
type Outcome struct {
	AccountID, Region string
	FunctionName      string
	Qualifier         string // as invoked ("" = $LATEST)
	ExecutedVersion   string // "" when it never ran
	RequestID         string
	Condition         string
	Attempts          int // invocations made
	RequestPayload    []byte
	StatusCode        int    // 200 when it ran
	FunctionError     string // "Unhandled", "Handled" or ""
	ResponsePayload   []byte
	// ErrorMessage, for the dead-letter message: the function's error or
	// why it could not run.
	ErrorMessage string
	// TraceID is the invocation's trace header; the sends carry it on
	// (lineage.WithHeader) so that a loop through a destination or
	// dead-letter queue back to the function is counted.
	TraceID string
}

// MessageAttribute is an SQS message attribute to send.
type MessageAttribute struct {
	DataType    string
	StringValue string
}

// Queues sends to SQS queues (internal/sqs). The sender is the function's
// account (the queue's policy decides cross-account sends).
type Queues interface {
	Send(ctx context.Context, senderAccount, queueARN, body string, attrs map[string]MessageAttribute) error
}

// Invoker queues an Event invocation of another function.
type Invoker interface {
	InvokeEvent(ctx context.Context, account, region, function string, payload []byte) error
}

// Dispatcher sends invocation records to destinations and failed events
// to dead-letter queues.
type Dispatcher struct {
	Configs   *Configs
	Functions Functions
	Queues    Queues
	Invoker   Invoker
	Logger    *slog.Logger
}

// record is Lambda's invocation record.
type record struct {
	Version         string          `json:"version"`
	Timestamp       string          `json:"timestamp"`
	RequestContext  requestContext  `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext responseContext `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

type requestContext struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

type responseContext struct {
	StatusCode      int    `json:"statusCode,omitempty"`
	ExecutedVersion string `json:"executedVersion,omitempty"`
	FunctionError   string `json:"functionError,omitempty"`
}

func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// Record builds Lambda's invocation record of o.
func Record(o *Outcome, now time.Time) ([]byte, error) {
	q := o.Qualifier
	if q == "" {
		q = control.LatestVersion
	}
	r := record{
		Version: "1.0", Timestamp: now.UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: requestContext{RequestID: o.RequestID, FunctionArn: control.QualifiedARN(o.Region, o.AccountID, o.FunctionName, q),
			Condition: o.Condition, ApproximateInvokeCount: o.Attempts},
		RequestPayload:  rawJSON(o.RequestPayload),
		ResponseContext: responseContext{StatusCode: o.StatusCode, ExecutedVersion: o.ExecutedVersion, FunctionError: o.FunctionError},
		ResponsePayload: rawJSON(o.ResponsePayload),
	}
	if r.RequestPayload == nil {
		r.RequestPayload = json.RawMessage("null")
	}
	return json.Marshal(r)
}

// Deliver sends o where the function's configuration says: the invocation
// record to OnSuccess or OnFailure, and a failed event to the function's
// dead-letter queue. An error means a send failed (the caller may retry).
func (d *Dispatcher) Deliver(ctx context.Context, o *Outcome) error {
	ctx = lineage.WithHeader(ctx, o.TraceID)
	cfg := d.Configs.lookup(ctx, o.AccountID, o.FunctionName, o.Qualifier)
	var dest string
	if cfg != nil {
		if o.Condition == Success {
			dest = cfg.OnSuccess
		} else {
			dest = cfg.OnFailure
		}
	}
	var errs []string
	if dest != "" {
		body, err := Record(o, time.Now())
		if err != nil {
			return err
		}
		if err := d.send(ctx, o, dest, body, nil); err != nil {
			errs = append(errs, fmt.Sprintf("destination %s: %v", dest, err))
		}
	}
	if o.Condition != Success {
		fn, err := d.Functions.Resolve(o.AccountID, o.Region, o.FunctionName, o.Qualifier)
		if err == nil && fn.DeadLetterArn != "" {
			msg := o.ErrorMessage
			if len(msg) > 1024 {
				msg = msg[:1024]
			}
			attrs := map[string]MessageAttribute{
				"RequestID":    {DataType: "String", StringValue: o.RequestID},
				"ErrorCode":    {DataType: "Number", StringValue: fmt.Sprint(max(o.StatusCode, 200))},
				"ErrorMessage": {DataType: "String", StringValue: msg},
			}
			if msg == "" {
				attrs["ErrorMessage"] = MessageAttribute{DataType: "String", StringValue: o.Condition}
			}
			if err := d.Queues.Send(ctx, o.AccountID, fn.DeadLetterArn, string(o.RequestPayload), attrs); err != nil {
				errs = append(errs, fmt.Sprintf("dead-letter queue %s: %v", fn.DeadLetterArn, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (d *Dispatcher) send(ctx context.Context, o *Outcome, dest string, body []byte, attrs map[string]MessageAttribute) error {
	p := strings.Split(dest, ":")
	if len(p) >= 3 && p[2] == "lambda" {
		ref, err := control.ParseRef(dest)
		if err != nil {
			return err
		}
		name := ref.Name
		if ref.Qualifier != "" {
			name += ":" + ref.Qualifier
		}
		acct := ref.AccountID
		if acct == "" {
			acct = o.AccountID
		}
		return d.Invoker.InvokeEvent(ctx, acct, o.Region, name, body)
	}
	return d.Queues.Send(ctx, o.AccountID, dest, string(body), attrs)
}

// Limits is Configs.Limits (the dispatcher serves the async queue both).
func (d *Dispatcher) Limits(ctx context.Context, acct, fn, qualifier string) (int, time.Duration) {
	return d.Configs.Limits(ctx, acct, fn, qualifier)
}
