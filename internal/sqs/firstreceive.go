package sqs

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// A standard queue's ApproximateFirstReceiveTimestamp is only read when a
// message is received again, and most messages are deleted long before
// that can happen (the consumer redelivers after its AckWait, at least
// one second). So a first receive is remembered here and written to the
// bucket sqs_first_receive only once the message has stayed undeleted
// for firstFlushAfter, or at once when it may come back sooner (a
// visibility below that, a visibility change): a receive and delete
// within the interval writes nothing. A receive on another server, or
// after a restart, that finds no record reports the time of that receive
// (the attribute is approximate).
const firstFlushAfter = 500 * time.Millisecond

type firstReceives struct {
	q    *Queues
	mu   sync.Mutex
	recs map[string]int64 // "<queue id>.<sequence>" → Unix ms
	stop chan struct{}
	done chan struct{}
}

func newFirstReceives(q *Queues) *firstReceives {
	f := &firstReceives{q: q, recs: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go f.loop()
	return f
}

func firstKey(qid string, seq uint64) string { return qid + "." + strconv.FormatUint(seq, 10) }

// note remembers a first receive; now writes it at once.
func (f *firstReceives) note(key string, ms int64, now bool) {
	if now {
		f.write(key, ms)
		return
	}
	f.mu.Lock()
	f.recs[key] = ms
	f.mu.Unlock()
}

// get is a first receive remembered here or stored.
func (f *firstReceives) get(ctx context.Context, key string) (int64, bool) {
	f.mu.Lock()
	ms, ok := f.recs[key]
	f.mu.Unlock()
	if ok {
		return ms, true
	}
	e, err := f.q.first.Get(ctx, key)
	if err != nil {
		return 0, false
	}
	ms, err = strconv.ParseInt(string(e.Value()), 10, 64)
	return ms, err == nil
}

// forget drops a deleted message's first receive.
func (f *firstReceives) forget(key string) {
	f.mu.Lock()
	delete(f.recs, key)
	f.mu.Unlock()
}

// flush writes a first receive now (the message may come back soon).
func (f *firstReceives) flush(key string) {
	f.mu.Lock()
	ms, ok := f.recs[key]
	delete(f.recs, key)
	f.mu.Unlock()
	if ok {
		f.write(key, ms)
	}
}

func (f *firstReceives) write(key string, ms int64) {
	// Not waited for: only a later receive reads it.
	_, _ = f.q.js.PublishAsync("$KV."+firstBucket+"."+key, []byte(strconv.FormatInt(ms, 10)))
}

func (f *firstReceives) loop() {
	defer close(f.done)
	t := time.NewTicker(firstFlushAfter / 2)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			f.flushOlder(time.Now().Add(time.Hour))
			return
		case now := <-t.C:
			f.flushOlder(now.Add(-firstFlushAfter))
		}
	}
}

// flushOlder writes the first receives before cutoff.
func (f *firstReceives) flushOlder(cutoff time.Time) {
	c := cutoff.UnixMilli()
	var due map[string]int64
	f.mu.Lock()
	for k, ms := range f.recs {
		if ms <= c {
			if due == nil {
				due = map[string]int64{}
			}
			due[k] = ms
			delete(f.recs, k)
		}
	}
	f.mu.Unlock()
	for k, ms := range due {
		f.write(k, ms)
	}
}

func (f *firstReceives) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
		<-f.done
	}
}
