package invoke

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/destinations"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	asyncStream   = "INVOKE_ASYNC"
	asyncConsumer = "async-workers"
	maxAttempts   = 3 // the first try and two retries, as Lambda
)

// queued is one Event invocation waiting in the stream.
type queued struct {
	AccountID string    `json:"AccountID"`
	Region    string    `json:"Region"`
	Function  string    `json:"Function"`
	Qualifier string    `json:"Qualifier"`
	RequestID string    `json:"RequestID"`
	Payload   []byte    `json:"Payload"`
	Enqueued  time.Time `json:"Enqueued"`
	TraceID   string    `json:"TraceID,omitempty"`
	// Recursive: stopped in a recursive loop (recursion.go); it is not
	// run, only sent to the dead-letter queue or on-failure destination.
	Recursive bool `json:"Recursive,omitempty"`
}

// asyncQueue is the durable Event queue: a JetStream work-queue stream and
// one durable pull consumer shared by the workers. A message is acknowledged
// (synchronously) only after its invocation finished, so a crash makes it
// run again after AckWait, and one that completed is never run twice.
type asyncQueue struct {
	s      *Scheduler
	js     jetstream.JetStream
	cons   jetstream.Consumer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newAsyncQueue(ctx context.Context, s *Scheduler) (*asyncQueue, error) {
	js := s.o.JetStream
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       asyncStream,
		Subjects:   []string{"async.>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.WorkQueuePolicy,
		MaxMsgSize: MaxAsyncPayload + 64<<10,
	})
	if err != nil {
		return nil, fmt.Errorf("open async invoke stream: %w", err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       asyncConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.o.AsyncAckWait,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
	})
	if err != nil {
		return nil, fmt.Errorf("open async invoke consumer: %w", err)
	}
	qctx, cancel := context.WithCancel(context.Background())
	q := &asyncQueue{s: s, js: js, cons: cons, ctx: qctx, cancel: cancel}
	for i := 0; i < s.o.AsyncWorkers; i++ {
		q.wg.Add(1)
		go q.worker()
	}
	return q, nil
}

func (q *asyncQueue) close() {
	q.cancel()
	q.wg.Wait()
}

// enqueue stores the event durably before the caller gets its 202.
func (q *asyncQueue) enqueue(ctx context.Context, r *Request, cfg *control.Config) error {
	b, err := json.Marshal(queued{AccountID: r.AccountID, Region: r.Region, Function: cfg.FunctionName,
		Qualifier: r.Qualifier, RequestID: r.RequestID, Payload: r.Payload, Enqueued: time.Now().UTC(), TraceID: r.TraceID, Recursive: r.recursive})
	if err != nil {
		return err
	}
	if _, err := q.js.Publish(ctx, "async."+r.AccountID, b); err != nil {
		return fmt.Errorf("queue event: %w", err)
	}
	return nil
}

// Depth is the number of queued events not yet acknowledged.
func (q *asyncQueue) depth(ctx context.Context) (uint64, error) {
	info, err := q.cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

func (q *asyncQueue) worker() {
	defer q.wg.Done()
	for q.ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(q.ctx, 2*time.Second)
		msgs, err := q.cons.Fetch(1, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if q.ctx.Err() != nil {
				return
			}
			q.s.log.Warn("fetching queued events failed; retrying", "err", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for m := range msgs.Messages() {
			q.handle(m)
		}
		cancel()
	}
}

func (q *asyncQueue) handle(m jetstream.Msg) {
	s := q.s
	var ev queued
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		s.log.Error("dropping malformed async event", "err", err)
		_ = m.Term()
		return
	}
	meta, _ := m.Metadata()
	attempt := 1
	if meta != nil {
		attempt = int(meta.NumDelivered)
	}
	if ev.Recursive {
		q.finish(m, &ev, stoppedOutcome())
		return
	}
	allowed, maxAge := q.limits(&ev)
	if maxAge > 0 && time.Since(ev.Enqueued) > maxAge {
		q.finish(m, &ev, &destinations.Outcome{Condition: destinations.EventAgeExceeded, Attempts: attempt - 1,
			ErrorMessage: fmt.Sprintf("Event age exceeded the function's MaximumEventAgeInSeconds (%d)", int(maxAge/time.Second))})
		return
	}
	// Keep the message ours while the function runs.
	hbCtx, stopHB := context.WithCancel(q.ctx)
	go func() {
		t := time.NewTicker(s.o.AsyncAckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	resp, err := s.Invoke(q.ctx, &Request{AccountID: ev.AccountID, Region: ev.Region, Function: ev.Function,
		Qualifier: ev.Qualifier, InvocationType: RequestResponse, Payload: ev.Payload, RequestID: ev.RequestID, TraceID: ev.TraceID, async: true})
	stopHB()
	var ce *control.Error
	switch {
	case err == nil && resp.logErr != nil && attempt < allowed:
		// Acknowledged means its log is stored: run it again instead.
		s.log.Warn("storing an Event invoke's log failed; the event runs again", "function", ev.Function, "requestId", ev.RequestID, "attempt", attempt, "err", resp.logErr)
		_ = m.NakWithDelay(s.o.AsyncBackoff[min(attempt-1, len(s.o.AsyncBackoff)-1)])
		return
	case err == nil && resp.FunctionError == "":
		q.finish(m, &ev, &destinations.Outcome{Condition: destinations.Success, Attempts: attempt, StatusCode: resp.Status,
			ExecutedVersion: resp.ExecutedVersion, ResponsePayload: resp.Payload})
	case err == nil:
		if attempt < allowed {
			delay := s.o.AsyncBackoff[min(attempt-1, len(s.o.AsyncBackoff)-1)]
			s.log.Info("async invoke failed; will retry", "function", ev.Function, "requestId", ev.RequestID, "attempt", attempt, "retryIn", delay)
			_ = m.NakWithDelay(delay)
			return
		}
		s.log.Warn("async invoke failed after all retries", "function", ev.Function, "requestId", ev.RequestID, "attempts", attempt)
		q.finish(m, &ev, &destinations.Outcome{Condition: destinations.RetriesExhausted, Attempts: attempt, StatusCode: resp.Status,
			ExecutedVersion: resp.ExecutedVersion, FunctionError: resp.FunctionError, ResponsePayload: resp.Payload, ErrorMessage: errorMessage(resp.Payload)})
	case errors.As(err, &ce) && ce.Code == "TooManyRequestsException":
		_ = m.NakWithDelay(s.o.ThrottleDelay)
	case errors.As(err, &ce) && ce.Code == "ResourceNotFoundException":
		s.log.Warn("async event for a function that no longer exists; discarded", "function", ev.Function, "requestId", ev.RequestID)
		_ = m.DoubleAck(q.ctx)
	case q.ctx.Err() != nil:
		// Shutting down: hand it back so it runs again right after a restart.
		_ = m.Nak()
	default:
		if attempt < allowed {
			_ = m.NakWithDelay(s.o.AsyncBackoff[min(attempt-1, len(s.o.AsyncBackoff)-1)])
			return
		}
		if systemError(err) && time.Since(ev.Enqueued) < cmp.Or(maxAge, maxSystemRetryAge) {
			// The function did not run for a reason of the platform's (the
			// store electing a leader, a host dying under the call): as on
			// Lambda, the event goes back to the queue until its maximum age
			// instead of using up its attempts.
			s.log.Warn("async invoke failed on a system error; will retry", "function", ev.Function, "requestId", ev.RequestID, "attempt", attempt, "err", err)
			_ = m.NakWithDelay(s.o.ThrottleDelay)
			return
		}
		s.log.Error("async invoke could not run after all retries", "function", ev.Function, "requestId", ev.RequestID, "err", err)
		q.finish(m, &ev, &destinations.Outcome{Condition: destinations.RetriesExhausted, Attempts: attempt, ErrorMessage: err.Error()})
	}
}

// maxSystemRetryAge is how long an event that keeps failing on system
// errors is tried when its function sets no maximum age (Lambda's default).
const maxSystemRetryAge = 6 * time.Hour

// systemError: an invocation error that is not the caller's nor the
// function's (no 4xx): a store or forwarding failure, a ServiceException.
func systemError(err error) bool {
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce.Status >= 500
	}
	return true
}

// QueueDepth reports queued Event invocations.
func (s *Scheduler) QueueDepth(ctx context.Context) (uint64, error) {
	if s.async == nil {
		return 0, nil
	}
	return s.async.depth(ctx)
}
