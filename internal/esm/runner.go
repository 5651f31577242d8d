package esm

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/lineage"
)

// Poll bounds.
const (
	longPoll       = 5 * time.Second // each receive's wait (a new message ends it at once)
	receiveMax     = 10              // messages per ReceiveMessage
	maxEventBytes  = 6 << 20         // a synchronous invoke's payload limit
	eventOverhead  = 1024            // a record's fields beyond body and attributes
	maxThrottleGap = 5 * time.Second
)

// runner runs one mapping's pollers on this server: between 1 and the
// mapping's concurrency limit of them, more while batches come back full,
// fewer when the queue is empty or the function is throttled.
type runner struct {
	p        *Placer
	cfg      atomic.Pointer[runCfg]
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	leaseRev uint64    // the placer's loop only
	renewed  time.Time // the placer's loop only: last renewal

	mu       sync.Mutex
	workers  int // running
	target   int // wanted
	throttle time.Duration
	until    time.Time // no invoke before (after a 429)
	// policyChecked, policyOK: the last check of another account's
	// queue Policy (permitted).
	policyChecked time.Time
	policyOK      bool

	resultMu sync.Mutex
	result   string // the LastProcessingResult last recorded (report)
}

type runCfg struct {
	m       *Mapping
	filters FilterSet
}

func newRunner(p *Placer, m *Mapping) *runner {
	ctx, cancel := context.WithCancel(p.ctx)
	r := &runner{p: p, ctx: ctx, cancel: cancel, target: 1, result: m.LastProcessingResult}
	r.update(m)
	return r
}

func (r *runner) update(m *Mapping) {
	cur := r.cfg.Load()
	if cur != nil && cur.m.LastModified.Equal(m.LastModified) && cur.m.FunctionArn() == m.FunctionArn() {
		return
	}
	fs, err := CompileFilters(m.Filters)
	if err != nil {
		r.p.log.Error("event source mapping has invalid filters; none applied", "uuid", m.UUID, "err", err)
	}
	r.cfg.Store(&runCfg{m: m, filters: fs})
}

func (r *runner) start() {
	r.mu.Lock()
	r.spawnLocked()
	r.mu.Unlock()
}

func (r *runner) stop() {
	r.cancel()
	r.wg.Wait()
}

// limit is the most pollers the mapping may have now.
func (r *runner) limit() int {
	c := r.cfg.Load()
	n := r.p.o.MaxPollers
	if c.m.MaximumConcurrency > 0 {
		n = c.m.MaximumConcurrency
	}
	if res := r.p.o.Functions.Reserved(c.m.AccountID, c.m.FunctionName); res != nil && *res < n {
		n = max(*res, 1)
	}
	return n
}

func (r *runner) spawnLocked() {
	for r.workers < r.target && r.ctx.Err() == nil {
		r.workers++
		r.wg.Add(1)
		go r.worker()
	}
}

func (r *runner) scale(delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.target = min(max(r.target+delta, 1), r.limit())
	r.spawnLocked()
}

// surplus reports (and books) that the calling worker should exit.
func (r *runner) surplus() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.target > r.limit() {
		r.target = max(r.limit(), 1)
	}
	if r.workers > r.target {
		r.workers--
		return true
	}
	return false
}

func (r *runner) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *runner) worker() {
	defer r.wg.Done()
	for r.ctx.Err() == nil {
		if r.surplus() {
			return
		}
		r.mu.Lock()
		wait := time.Until(r.until)
		r.mu.Unlock()
		if wait > 0 && !r.sleep(wait) {
			break
		}
		c := r.cfg.Load()
		if !r.permitted(c.m) {
			r.scale(-1)
			if !r.sleep(policyRecheck) {
				break
			}
			continue
		}
		msgs, err := r.collect(c.m)
		if err != nil {
			if r.ctx.Err() != nil {
				break
			}
			if errors.Is(err, ErrNoQueue) {
				r.report(c.m, ResultNoQueue)
			}
			r.p.log.Warn("receiving from the mapped queue failed; retrying", "uuid", c.m.UUID, "queue", c.m.EventSourceArn, "err", err)
			if !r.sleep(time.Second) {
				break
			}
			continue
		}
		if len(msgs) == 0 {
			r.scale(-1)
			continue
		}
		if len(msgs) >= min(c.m.BatchSize, receiveMax) {
			r.scale(+1) // a backlog: one more poller
		}
		r.process(c, msgs)
	}
	r.mu.Lock()
	r.workers--
	r.mu.Unlock()
}

// collect receives one batch: as soon as messages arrive when the mapping
// has no batching window; else until BatchSize messages or the window.
func (r *runner) collect(m *Mapping) ([]Message, error) {
	q := r.p.o.Queues
	msgs, err := q.Receive(r.ctx, m.EventSourceArn, min(m.BatchSize, receiveMax), longPoll)
	if err != nil || len(msgs) == 0 || m.MaximumBatchingWindowInSeconds == 0 {
		return msgs, err
	}
	deadline := time.Now().Add(time.Duration(m.MaximumBatchingWindowInSeconds) * time.Second)
	size := 0
	for _, x := range msgs {
		size += msgSize(x)
	}
	for len(msgs) < m.BatchSize && size < maxEventBytes-256<<10 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		more, err := q.Receive(r.ctx, m.EventSourceArn, min(m.BatchSize-len(msgs), receiveMax), left)
		if err != nil {
			if r.ctx.Err() != nil {
				return msgs, nil // processed below only if still running
			}
			break
		}
		for _, x := range more {
			size += msgSize(x)
		}
		msgs = append(msgs, more...)
	}
	return msgs, nil
}

func msgSize(m Message) int {
	n := len(m.Body) + len(m.ReceiptHandle) + eventOverhead
	for k, a := range m.MessageAttributes {
		n += len(k) + len(a.BinaryValue)*4/3 + 64
		if a.StringValue != nil {
			n += len(*a.StringValue)
		}
	}
	return n
}

// process filters a batch, invokes the function with what matched and
// deletes what was processed.
func (r *runner) process(c *runCfg, msgs []Message) {
	m := c.m
	ctx := context.WithoutCancel(r.ctx) // a batch taken is finished even while stopping
	var drop []string
	recs := make([]Record, 0, len(msgs))
	for _, x := range msgs {
		rec := record(x, m.EventSourceArn, m.Region)
		if c.filters.Match(&rec) {
			recs = append(recs, rec)
		} else {
			drop = append(drop, x.ReceiptHandle)
		}
	}
	if len(drop) > 0 {
		if err := r.p.o.Queues.Delete(ctx, m.EventSourceArn, drop); err != nil {
			r.p.log.Warn("deleting filtered-out messages failed; they will be filtered again", "uuid", m.UUID, "err", err)
		}
	}
	if len(recs) == 0 {
		return
	}
	payload, err := json.Marshal(Event{Records: recs})
	if err != nil {
		r.p.log.Error("encoding an SQS event failed", "uuid", m.UUID, "err", err)
		return
	}
	// The batch's trace header (its first message's AWSTraceHeader, as
	// Lambda traces a batch) carries the event's lineage (internal/lineage).
	ictx := lineage.WithHeader(ctx, recs[0].Attributes["AWSTraceHeader"])
	out, fnErr, err := r.p.o.Invoker.Invoke(ictx, m.AccountID, m.Region, m.FunctionName, m.Qualifier, payload)
	var ce *control.Error
	switch {
	case err != nil && errors.As(err, &ce) && ce.Code == "RecursiveInvocationException":
		// Stopped in a recursive loop: the batch returns to the queue
		// and reaches its dead-letter queue after maxReceiveCount.
		return
	case err != nil && errors.As(err, &ce) && ce.Code == "TooManyRequestsException":
		// Back off: fewer pollers, and a pause that doubles while the
		// throttling lasts. The batch reappears after the visibility timeout.
		r.mu.Lock()
		r.throttle = min(max(r.throttle*2, 100*time.Millisecond), maxThrottleGap)
		r.until = time.Now().Add(r.throttle)
		r.target = max(r.target/2, 1)
		r.mu.Unlock()
		r.report(m, ResultThrottled)
		return
	case err != nil:
		r.p.log.Warn("invoking the mapped function failed; the batch returns to the queue", "uuid", m.UUID, "function", m.FunctionArn(), "err", err)
		r.report(m, ResultFailed)
		r.sleep(time.Second)
		return
	}
	r.mu.Lock()
	r.throttle = 0
	r.mu.Unlock()
	if fnErr != "" {
		r.report(m, ResultFailed)
		return // every message returns after the visibility timeout
	}
	r.report(m, ResultOK)
	del := make([]string, 0, len(recs))
	if m.ReportsItemFailures() {
		failed, ok := batchItemFailures(out, recs)
		if !ok {
			r.p.log.Warn("the function's batchItemFailures response is invalid; the whole batch returns to the queue", "uuid", m.UUID)
			return
		}
		for _, rec := range recs {
			if !failed[rec.MessageID] {
				del = append(del, rec.ReceiptHandle)
			}
		}
	} else {
		for _, rec := range recs {
			del = append(del, rec.ReceiptHandle)
		}
	}
	if len(del) == 0 {
		return
	}
	if err := r.p.o.Queues.Delete(ctx, m.EventSourceArn, del); err != nil {
		r.p.log.Warn("deleting a processed batch failed; its messages may be delivered again", "uuid", m.UUID, "err", err)
	}
}

// batchItemFailures reads the function's partial-batch response as Lambda
// does: an empty or null response, or none listed, is a complete success;
// an invalid response, or an identifier that is empty or not of the batch,
// is a complete failure (ok false).
func batchItemFailures(out []byte, recs []Record) (map[string]bool, bool) {
	failed := map[string]bool{}
	if len(out) == 0 {
		return failed, true
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, false
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return failed, true // null, a string, a number: no failures reported
	}
	raw, present := obj["batchItemFailures"]
	if !present || raw == nil {
		return failed, true
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, false
	}
	ids := make(map[string]bool, len(recs))
	for _, rec := range recs {
		ids[rec.MessageID] = true
	}
	for _, it := range list {
		o, ok := it.(map[string]any)
		if !ok {
			return nil, false
		}
		id, ok := o["itemIdentifier"].(string)
		if !ok || id == "" || !ids[id] {
			return nil, false
		}
		failed[id] = true
	}
	return failed, true
}
