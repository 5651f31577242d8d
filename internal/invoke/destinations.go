package invoke

import (
	"context"
	"encoding/json"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/destinations"
	"github.com/nats-io/nats.go/jetstream"
)

// AsyncDestinations gives Event invocations their retry and age limits
// (the function's event invoke config) and receives every final outcome,
// to send to destinations and dead-letter queues (destinations.Configs
// and destinations.Dispatcher).
type AsyncDestinations interface {
	Limits(ctx context.Context, account, function, qualifier string) (retries int, maxAge time.Duration)
	Deliver(ctx context.Context, o *destinations.Outcome) error
}

// limits returns how many attempts ev may have and its maximum age
// (0: none).
func (q *asyncQueue) limits(ev *queued) (int, time.Duration) {
	d := q.s.o.Destinations
	if d == nil {
		return maxAttempts, 0
	}
	r, age := d.Limits(q.ctx, ev.AccountID, ev.Function, ev.Qualifier)
	return r + 1, age
}

// finish hands an Event invocation's outcome to the destinations (a few
// tries) and acknowledges the event.
func (q *asyncQueue) finish(m jetstream.Msg, ev *queued, o *destinations.Outcome) {
	s := q.s
	if d := s.o.Destinations; d != nil {
		o.AccountID, o.Region, o.FunctionName, o.Qualifier = ev.AccountID, ev.Region, ev.Function, ev.Qualifier
		o.RequestID, o.RequestPayload, o.TraceID = ev.RequestID, ev.Payload, ev.TraceID
		for try := 1; ; try++ {
			err := d.Deliver(q.ctx, o)
			if err == nil {
				break
			}
			if try == 3 || q.ctx.Err() != nil {
				s.log.Error("sending an Event invocation's outcome failed", "function", ev.Function, "requestId", ev.RequestID, "condition", o.Condition, "err", err)
				break
			}
			time.Sleep(time.Duration(try) * 200 * time.Millisecond)
		}
	}
	if aerr := m.DoubleAck(q.ctx); aerr != nil {
		s.log.Warn("async ack failed; the event may run again", "requestId", ev.RequestID, "err", aerr)
	}
}

// errorMessage is a function error payload's errorMessage.
func errorMessage(payload []byte) string {
	var e struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(payload, &e) == nil && e.ErrorMessage != "" {
		return e.ErrorMessage
	}
	return string(payload)
}
