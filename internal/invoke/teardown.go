package invoke

import (
	"log/slog"
	"sync"
)

// teardownQueue releases items with a fixed number of workers, in the order
// they were added. It bounds how much kernel work teardown does at once:
// environments' network namespaces are released here, and each release
// holds the kernel's rtnl lock (and the router's netlink socket) for
// milliseconds that a cold start would otherwise wait behind.
type teardownQueue[T any] struct {
	release func(T) error
	log     *slog.Logger

	mu     sync.Mutex
	cond   *sync.Cond
	q      []T
	closed bool
	wg     sync.WaitGroup
}

func newTeardownQueue[T any](workers int, release func(T) error, log *slog.Logger) *teardownQueue[T] {
	t := &teardownQueue[T]{release: release, log: log}
	t.cond = sync.NewCond(&t.mu)
	for range max(1, workers) {
		t.wg.Add(1)
		go t.work()
	}
	return t
}

// add queues x; after close it is released at once by the caller.
func (t *teardownQueue[T]) add(x T) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.do(x)
		return
	}
	t.q = append(t.q, x)
	t.mu.Unlock()
	t.cond.Signal()
}

// pending is how many items wait.
func (t *teardownQueue[T]) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.q)
}

func (t *teardownQueue[T]) work() {
	defer t.wg.Done()
	for {
		t.mu.Lock()
		for len(t.q) == 0 && !t.closed {
			t.cond.Wait()
		}
		if len(t.q) == 0 {
			t.mu.Unlock()
			return
		}
		x := t.q[0]
		var zero T
		t.q[0] = zero
		t.q = t.q[1:]
		t.mu.Unlock()
		t.do(x)
	}
}

func (t *teardownQueue[T]) do(x T) {
	if err := t.release(x); err != nil {
		t.log.Warn("environment teardown incomplete", "err", err)
	}
}

// close releases what is queued and waits for it.
func (t *teardownQueue[T]) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cond.Broadcast()
	t.wg.Wait()
}
