package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The cgroup pool: Config.PoolSize cgroup sets made ahead, with the limits
// of a pooledMemoryMB environment, named pool.<token>.<n> under the
// prefix. A Start takes one and renames its directories to the
// environment's id (cgroup v1 renames within a parent; three renames cost
// about a quarter of three mkdirs and five limit writes), then writes the
// limits that differ. The token is this manager's, so Cleanup tells a
// leftover pool of a crashed server from its own. ListCgroups leaves
// pooled sets out: they hold no environment.

// pooledMemoryMB is the memory size pooled cgroup sets are made for
// (Lambda's default).
const pooledMemoryMB = 128

// cgPoolPrefix starts the name of every pooled cgroup set.
const cgPoolPrefix = "pool."

type cgPool struct {
	prefix string
	token  string
	memsw  bool
	size   int

	mu   sync.Mutex
	free []cgroupSet
	next int
	kick chan struct{}
	done chan struct{}
	hits atomic.Int64 // sets taken
}

func newCgPool(prefix string, size int, memsw bool) *cgPool {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &cgPool{prefix: prefix, token: hex.EncodeToString(b[:]), memsw: memsw, size: size,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// isPooledName reports whether a cgroup directory name is a pooled set's.
func isPooledName(name string) bool { return strings.HasPrefix(name, cgPoolPrefix) }

// mine reports whether name is a pooled set of this pool.
func (p *cgPool) mine(name string) bool {
	return strings.HasPrefix(name, cgPoolPrefix+p.token+".")
}

// fill keeps size sets made until stop closes; then it removes them.
func (p *cgPool) fill(stop <-chan struct{}) {
	defer close(p.done)
	defer p.drain()
	for {
		p.mu.Lock()
		need := p.size - len(p.free)
		p.mu.Unlock()
		for ; need > 0; need-- {
			select {
			case <-stop:
				return
			default:
			}
			p.mu.Lock()
			p.next++
			name := cgPoolPrefix + p.token + "." + strconv.Itoa(p.next)
			p.mu.Unlock()
			cg := newCgroupSet(p.prefix, name)
			if err := cg.create(pooledMemoryMB, p.memsw); err != nil {
				break // tried again at the next kick
			}
			p.mu.Lock()
			p.free = append(p.free, cg)
			p.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-p.kick:
		}
	}
}

func (p *cgPool) drain() {
	p.mu.Lock()
	free := p.free
	p.free = nil
	p.mu.Unlock()
	for _, cg := range free {
		_ = cg.remove()
	}
}

// take renames a pooled set to id's and sets memoryMB's limits; ok false
// when the pool is empty or the set could not be taken (the caller makes
// one).
func (p *cgPool) take(id string, memoryMB int) (cgroupSet, bool) {
	if p == nil {
		return cgroupSet{}, false
	}
	p.mu.Lock()
	n := len(p.free)
	if n == 0 {
		p.mu.Unlock()
		p.refill()
		return cgroupSet{}, false
	}
	from := p.free[n-1]
	p.free = p.free[:n-1]
	p.mu.Unlock()
	p.refill()
	to := newCgroupSet(p.prefix, id)
	for i := range from {
		if err := os.Rename(from[i], to[i]); err != nil {
			var mixed cgroupSet
			copy(mixed[:i], to[:i])
			copy(mixed[i:], from[i:])
			_ = mixed.remove()
			return cgroupSet{}, false
		}
	}
	if memoryMB != pooledMemoryMB {
		if err := to.setLimits(pooledMemoryMB, memoryMB, p.memsw); err != nil {
			_ = to.remove()
			return cgroupSet{}, false
		}
	}
	p.hits.Add(1)
	return to, true
}

func (p *cgPool) refill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// setLimits changes a set made for fromMB to toMB's limits: memory (memsw
// must stay at least the limit, so the order depends on the direction)
// and cpu.shares; pids.max and swappiness do not depend on the size.
func (cg cgroupSet) setLimits(fromMB, toMB int, memsw bool) error {
	var writes []cgWrite
	for _, w := range limits(toMB, memsw) {
		if w.ctrl == 0 && w.file != "memory.swappiness" || w.file == "cpu.shares" {
			writes = append(writes, w)
		}
	}
	if toMB > fromMB && memsw { // memsw first when growing
		writes[0], writes[1] = writes[1], writes[0]
	}
	for _, w := range writes {
		if err := writeFile(filepath.Join(cg[w.ctrl], w.file), w.value); err != nil {
			return errors.New("set " + w.file + "=" + w.value + " in " + cg[w.ctrl] + ": " + err.Error())
		}
	}
	return nil
}

// removeStalePooled removes pooled sets under prefix that are not p's
// (a crashed server's); p nil removes every pooled set.
func removeStalePooled(prefix string, p *cgPool) error {
	dirs, err := listCgroups(prefix, true)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		name := filepath.Base(d)
		if !isPooledName(name) || (p != nil && p.mine(name)) {
			continue
		}
		killCgroupTasks(d)
		if err := removeCgroup(d); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
