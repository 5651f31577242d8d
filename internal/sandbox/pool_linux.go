package sandbox

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/debounce"
)

const readyTimeout = 10 * time.Second

// The warm pool holds init processes that are already started (namespaces
// created, Go runtime up) and block waiting for their parameters. Taking
// one removes fork, exec and runtime start-up (~2 ms here) from a cold
// start. Members live in the manager's own network namespace until they
// receive the environment's, and are replaced in the background.

// takePooled returns a live pool member, or nil if the pool is empty.
// Pooled returns how many started init processes the pool holds and its
// target size.
func (m *Manager) Pooled() (n, size int) { return len(m.pool), cap(m.pool) }

func (m *Manager) takePooled() *proc {
	for {
		select {
		case p := <-m.pool:
			m.refill()
			if p.alive() {
				return p
			}
			p.release()
		default:
			m.refill()
			return nil
		}
	}
}

func (m *Manager) refill() {
	select {
	case m.refillCh <- struct{}{}:
	default:
	}
}

// filler keeps the pool full. It runs until the manager stops.
func (m *Manager) filler() {
	defer close(m.fillerDone)
	backoff := 10 * time.Millisecond
	low := func() bool { return len(m.pool) <= cap(m.pool)/4 }
	for {
		for len(m.pool) < cap(m.pool) {
			p, err := m.spawnInit(context.Background(), "", true)
			if err == nil {
				if err = p.waitReady(); err != nil {
					p.release()
				}
			}
			if err != nil {
				select {
				case <-m.stop:
					return
				default:
				}
				m.log.Warn("sandbox pool: spawning an init process failed", "err", err, "retry", backoff)
				select {
				case <-m.stop:
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 10 * time.Millisecond
			select {
			case m.pool <- p:
			case <-m.stop:
				p.release()
				return
			}
		}
		select {
		case <-m.stop:
			return
		case <-m.refillCh:
		}
		if !debounce.Wait(m.refillCh, m.stop, m.cfg.RefillDelay, 10*m.cfg.RefillDelay, low) {
			return
		}
	}
}

// drainPool releases every pool member (on Close).
func (m *Manager) drainPool() {
	for {
		select {
		case p := <-m.pool:
			p.release()
		default:
			return
		}
	}
}

// waitReady waits until a pool member has built the common part of its
// root and blocks for its parameters, so taking it costs nothing and its
// start-up does not compete with the cold start that takes it.
func (p *proc) waitReady() error {
	const ready = "ready\n"
	_ = p.statusR.SetReadDeadline(time.Now().Add(readyTimeout))
	defer p.statusR.SetReadDeadline(time.Time{})
	buf := make([]byte, len(ready))
	if _, err := io.ReadFull(p.statusR, buf); err != nil || string(buf) != ready {
		rest, _ := io.ReadAll(io.LimitReader(p.statusR, 4096))
		return fmt.Errorf("init process not ready: %v %q", err, string(buf)+string(rest))
	}
	return nil
}
