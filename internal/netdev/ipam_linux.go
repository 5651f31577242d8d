package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// ErrPoolExhausted means the service CIDR has no free address.
var ErrPoolExhausted = errors.New("netdev: service CIDR exhausted")

// ipam hands out /32s from a prefix, never one still in use. It skips the
// network and broadcast addresses and cycles through the range (next-fit) so
// that a freed address is not reused immediately.
type ipam struct {
	mu     sync.Mutex
	prefix netip.Prefix
	first  netip.Addr
	last   netip.Addr
	next   netip.Addr
	used   map[netip.Addr]bool
}

func newIPAM(p netip.Prefix) *ipam {
	p = p.Masked()
	first := p.Addr().Next()
	b := p.Addr().As4()
	n := binary.BigEndian.Uint32(b[:]) + uint32(1)<<(32-p.Bits()) - 2 // broadcast - 1
	binary.BigEndian.PutUint32(b[:], n)
	last := netip.AddrFrom4(b)
	return &ipam{prefix: p, first: first, last: last, next: first, used: map[netip.Addr]bool{}}
}

func (a *ipam) size() int {
	return 1<<(32-a.prefix.Bits()) - 2
}

func (a *ipam) alloc() (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.used) >= a.size() {
		return netip.Addr{}, fmt.Errorf("%w: all %d addresses of %v in use", ErrPoolExhausted, a.size(), a.prefix)
	}
	for {
		c := a.next
		if c == a.last {
			a.next = a.first
		} else {
			a.next = c.Next()
		}
		if !a.used[c] {
			a.used[c] = true
			return c, nil
		}
	}
}

// reserve marks an address used (for state found in the kernel).
func (a *ipam) reserve(x netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.prefix.Contains(x) || a.used[x] {
		return false
	}
	a.used[x] = true
	return true
}

func (a *ipam) free(x netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, x)
}

func (a *ipam) inUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.used)
}
