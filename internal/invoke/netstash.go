package invoke

import (
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
)

// netStash keeps the network namespaces of destroyed environments for the
// next cold starts of the same account, for a short while. Building a
// namespace and tearing one down each hold the kernel's rtnl lock for
// milliseconds (a veth's deletion waits for an RCU grace period under it);
// when a function's code changes, its environments are replaced at once,
// and reusing their namespaces makes the replacement cost neither. A
// namespace is reused only when everything that ran in it is gone (the
// environment's processes killed and reaped, its VPC attachment removed),
// and only by the same account: what a function may leave behind in its
// namespace (sockets in TIME_WAIT, counters in /proc/net) stays with its
// own tenant.
type netStash struct {
	mu     sync.Mutex
	by     map[string][]stashedNet // account -> most recently stashed last
	n      int
	max    int
	closed bool
}

type stashedNet struct {
	net *netdev.EnvNet
	at  time.Time
}

func newNetStash(max int) *netStash {
	return &netStash{by: map[string][]stashedNet{}, max: max}
}

// put keeps n for account; it reports false when the stash is full (the
// caller tears n down).
func (st *netStash) put(account string, n *netdev.EnvNet, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.n >= st.max {
		return false
	}
	st.by[account] = append(st.by[account], stashedNet{n, now})
	st.n++
	return true
}

// take returns a namespace account's environments left, or nil.
func (st *netStash) take(account string) *netdev.EnvNet {
	st.mu.Lock()
	defer st.mu.Unlock()
	l := st.by[account]
	if len(l) == 0 {
		return nil
	}
	n := l[len(l)-1].net
	l[len(l)-1] = stashedNet{}
	if l = l[:len(l)-1]; len(l) == 0 {
		delete(st.by, account)
	} else {
		st.by[account] = l
	}
	st.n--
	return n
}

// expire removes and returns the namespaces stashed before cutoff.
func (st *netStash) expire(cutoff time.Time) []*netdev.EnvNet {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*netdev.EnvNet
	for acct, l := range st.by {
		k := 0
		for k < len(l) && l[k].at.Before(cutoff) {
			out = append(out, l[k].net)
			k++
		}
		if k == 0 {
			continue
		}
		st.n -= k
		if k == len(l) {
			delete(st.by, acct)
		} else {
			st.by[acct] = append(l[:0], l[k:]...)
		}
	}
	return out
}

// len is how many namespaces are stashed.
func (st *netStash) len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.n
}

// close empties the stash for good and returns what it held.
func (st *netStash) close() []*netdev.EnvNet {
	out := st.expire(time.Now().Add(time.Hour))
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	return out
}
