package invoke

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricEnvEvicted counts healthy environments destroyed, by reason:
// superseded (their function's code or configuration changed),
// idle_timeout, surplus (beyond the recent peak concurrency and its
// headroom) and memory_budget.
const MetricEnvEvicted = "lambdaplane_environments_evicted_total"

func newEvictions(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricEnvEvicted, Help: "Healthy execution environments destroyed, by reason (superseded, idle_timeout, surplus, memory_budget)."}, []string{"reason"})
	for _, r := range []string{"superseded", "idle_timeout", "surplus", "memory_budget"} {
		c.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// poolKey identifies environments that may serve each other's invokes.
type poolKey struct {
	account, function, version, revision string
}

// pool is the environments of one key: idle ones (a stack, most recently
// used last) and how many are busy.
type pool struct {
	idle    []*env
	busy    int
	retired bool // the key no longer resolves: its environments are not kept

	waiters []*waiter     // invokes waiting for one of the busy ones
	exec    time.Duration // moving average of an invoke's duration
}

// waiter is an invoke waiting briefly for a busy environment of its key
// instead of starting one.
type waiter struct {
	ch     chan *env // receives the environment, busy for the waiter
	p      *pool
	served bool
}

// envList is an intrusive doubly-linked list of idle environments, least
// recently used first; pushing and removing allocate nothing.
type envList struct {
	head, tail *env
	n          int
}

func (l *envList) push(e *env) {
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	e.listed = true
	l.n++
}

func (l *envList) remove(e *env) {
	if !e.listed {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next, e.listed = nil, nil, false
	l.n--
}

// warmBook is the scheduler's account of its environments: every live one,
// the idle ones per key and across keys in least-recently-used order, how
// many are busy (and the recent peak of that), and the memory they are
// charged. It decides which idle environments go (idle timeout, memory
// budget, surplus over the recent peak concurrency); destroying them is the
// caller's business. Not safe for concurrent use: the Scheduler holds its
// mutex around every call.
type warmBook struct {
	pools map[poolKey]*pool
	all   map[*env]struct{}
	idle  envList
	busy  int
	memMB int64 // charged to live environments (memMB of each)

	// demand counts the invocations that hold an environment or are
	// getting one (waiting for one to be released, or cold-starting).
	demand int
	// Peak concurrency: high is the most invocations in flight (demand)
	// or environments busy at once since the last sample; peaks holds the
	// last samples' highs (a ring). Demand, not only busy environments:
	// under a burst of cold starts most invocations wait for an
	// environment, and a peak of busy ones alone made the environments
	// just started look surplus (the mixed load destroyed 3,582 as
	// surplus and cold-started them again).
	high   int
	peaks  []int
	peakAt int
}

func newWarmBook(peakSamples int) *warmBook {
	return &warmBook{pools: map[poolKey]*pool{}, all: map[*env]struct{}{}, peaks: make([]int, max(1, peakSamples))}
}

// add books a new environment, busy with its first invoke. Its pool is
// created when missing unless current reports that its key no longer
// resolves (a cold start that began before an update): such an
// environment serves its invoke and is not kept.
func (b *warmBook) add(e *env, current func(poolKey) bool) {
	p := b.pools[e.key]
	if p == nil && current(e.key) {
		p = &pool{}
		b.pools[e.key] = p
	}
	e.pool = p
	b.all[e] = struct{}{}
	b.memMB += int64(e.memMB)
	b.checkout(e)
}

func (b *warmBook) checkout(e *env) {
	e.busy = true
	if e.pool != nil {
		e.pool.busy++
	}
	b.busy++
	b.high = max(b.high, b.busy)
}

// enter and leave count an invocation in flight (demand).
func (b *warmBook) enter() {
	b.demand++
	b.high = max(b.high, b.demand)
}

func (b *warmBook) leave() { b.demand-- }

func (b *warmBook) checkin(e *env) {
	if !e.busy {
		return
	}
	e.busy = false
	if e.pool != nil {
		e.pool.busy--
	}
	b.busy--
}

// take returns the most recently used idle environment of key, now busy,
// or nil.
func (b *warmBook) take(key poolKey) *env {
	p := b.pools[key]
	if p == nil || len(p.idle) == 0 {
		return nil
	}
	e := p.idle[len(p.idle)-1]
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
	b.idle.remove(e)
	b.checkout(e)
	return e
}

// Outcomes of release.
const (
	released = iota // idle in its pool
	handed          // given to a waiting invoke, still busy
	dropped         // not kept (its key retired, or never pooled)
)

// release ends a busy environment's invoke, which took exec (0: unknown);
// the environment is charged memMB from now on. It goes to the first
// invoke waiting for its key, else it becomes idle; one that is not to be
// kept is dropped from the books.
func (b *warmBook) release(e *env, memMB int, now time.Time, exec time.Duration) int {
	b.checkin(e)
	b.memMB += int64(memMB - e.memMB)
	e.memMB = memMB
	p := e.pool
	if p == nil || p.retired {
		b.drop(e)
		return dropped
	}
	if exec > 0 {
		if p.exec == 0 {
			p.exec = exec
		} else {
			p.exec += (exec - p.exec) / 8
		}
	}
	e.lastUsed = now
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters[0] = nil
		p.waiters = p.waiters[1:]
		w.served = true
		b.checkout(e)
		w.ch <- e
		return handed
	}
	p.idle = append(p.idle, e)
	b.idle.push(e)
	return released
}

// await registers an invoke of key that found no idle environment as
// waiting for a busy one, for at most the key's typical invoke duration
// (bounded by limit): when invokes are short, one ends sooner than a cold
// start would, and a momentary rise in concurrency then costs no new
// environment. Nil when no environment of key is busy or limit <= 0.
func (b *warmBook) await(key poolKey, limit time.Duration) (*waiter, time.Duration) {
	p := b.pools[key]
	if p == nil || p.busy == 0 || limit <= 0 || p.exec <= 0 {
		return nil, 0
	}
	w := &waiter{ch: make(chan *env, 1), p: p}
	p.waiters = append(p.waiters, w)
	return w, min(limit, p.exec)
}

// cancel withdraws a waiter and reports whether it was served meanwhile
// (its environment is then in w.ch).
func (b *warmBook) cancel(w *waiter) bool {
	if w.served {
		return true
	}
	for i, x := range w.p.waiters {
		if x == w {
			w.p.waiters = append(w.p.waiters[:i], w.p.waiters[i+1:]...)
			break
		}
	}
	return false
}

// drop removes an environment (busy, or idle and already out of its pool's
// stack) from the books; dropping one that is not booked does nothing.
func (b *warmBook) drop(e *env) {
	if _, ok := b.all[e]; !ok {
		return
	}
	b.checkin(e)
	b.idle.remove(e)
	delete(b.all, e)
	b.memMB -= int64(e.memMB)
}

// evict drops an idle environment, taking it out of its pool's stack.
func (b *warmBook) evict(e *env) {
	if p := e.pool; p != nil {
		for i, x := range p.idle {
			if x == e {
				copy(p.idle[i:], p.idle[i+1:])
				p.idle[len(p.idle)-1] = nil
				p.idle = p.idle[:len(p.idle)-1]
				break
			}
		}
	}
	b.drop(e)
}

// overBudget evicts least recently used idle environments until the
// environments' memory is within budgetMB (or none is idle) and returns
// them. budgetMB <= 0 is no budget.
func (b *warmBook) overBudget(budgetMB int64) []*env {
	if budgetMB <= 0 {
		return nil
	}
	var out []*env
	for b.memMB > budgetMB && b.idle.head != nil {
		e := b.idle.head
		b.evict(e)
		out = append(out, e)
	}
	return out
}

// reap evicts the environments idle since before cutoff.
func (b *warmBook) reap(cutoff time.Time) []*env {
	var out []*env
	for e := b.idle.head; e != nil && e.lastUsed.Before(cutoff); e = b.idle.head {
		b.evict(e)
		out = append(out, e)
	}
	return out
}

// trim evicts surplus idle environments, least recently used first, while
// more than target environments live: those idle since before idleBefore,
// except the last environment of a key (the one warm environment of a
// function invoked now and then is no surplus; it goes at the idle
// timeout).
func (b *warmBook) trim(target int, idleBefore time.Time) []*env {
	var out []*env
	for e := b.idle.head; e != nil && len(b.all) > target && e.lastUsed.Before(idleBefore); {
		next := e.next
		if p := e.pool; p != nil && p.busy == 0 && len(p.idle) == 1 {
			e = next
			continue
		}
		b.evict(e)
		out = append(out, e)
		e = next
	}
	return out
}

// retire marks the pools whose key matches as retired and evicts their
// idle environments; their busy ones are dropped when released.
func (b *warmBook) retire(match func(poolKey) bool) []*env {
	var out []*env
	for k, p := range b.pools {
		if !match(k) {
			continue
		}
		p.retired = true
		p.waiters = nil // they give up at their deadline
		for _, e := range p.idle {
			b.idle.remove(e)
			b.drop(e)
			out = append(out, e)
		}
		p.idle = nil
		delete(b.pools, k)
	}
	return out
}

// samplePeak closes a peak sample interval.
func (b *warmBook) samplePeak() {
	b.peakAt = (b.peakAt + 1) % len(b.peaks)
	b.peaks[b.peakAt] = b.high
	b.high = max(b.busy, b.demand)
}

// peak is the most environments busy at once over the recent samples.
func (b *warmBook) peak() int {
	m := b.high
	for _, p := range b.peaks {
		m = max(m, p)
	}
	return m
}

// removeAll empties the books and returns every environment.
func (b *warmBook) removeAll() []*env {
	out := make([]*env, 0, len(b.all))
	for e := range b.all {
		out = append(out, e)
	}
	demand := b.demand
	*b = *newWarmBook(len(b.peaks))
	b.demand = demand // invocations still running leave later
	return out
}
