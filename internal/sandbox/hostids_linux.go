package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Host ids. Every environment runs in a user namespace of its own whose
// only mapped uid and gid (Config.UID/GID inside, 993 by default) stand
// for a host uid and gid that no other live environment on the host holds.
// Kernel objects and limits keyed by uid (keyrings, inotify instances,
// message queues, RLIMIT_NPROC, user namespaces) are therefore per
// environment.
//
// A manager claims a block of HostIDBlock consecutive ids host-wide (an
// flock on HostIDLockDir/<base>.lock, held while it lives, dropped by the
// kernel if it dies, and the file removed when it closes), so several
// servers on one host never hand out the same id, and allocates from its
// block: ids never used first, then the longest-freed one.
const (
	// HostIDBlock is how many host ids one manager claims.
	HostIDBlock = 1 << 16
	// DefaultHostIDBase is where automatically claimed blocks start
	// (0x40000000, far above ordinary users and the usual /etc/subuid
	// ranges, and below 2^31, which some tools read as negative).
	DefaultHostIDBase = 0x40000000
	hostIDMaxBlocks   = 8192
	// HostIDLockDir holds one lock file per claimed block.
	HostIDLockDir = "/run/lambdaplane/hostids"
)

// ErrNoHostIDs means every host id of the manager's block is held by a
// live environment.
var ErrNoHostIDs = errors.New("sandbox: no free host uid for another environment")

type hostIDs struct {
	base int
	lock *os.File

	mu   sync.Mutex
	next int   // ids base..base+next-1 have been handed out at least once
	free []int // freed ids, oldest first
}

// claimHostIDs claims the block at base (a multiple of HostIDBlock), or the
// first free block from DefaultHostIDBase when base is 0.
func claimHostIDs(base int, prefix string) (*hostIDs, error) {
	if err := os.MkdirAll(HostIDLockDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", HostIDLockDir, err)
	}
	if base != 0 {
		if base < 0 || base%HostIDBlock != 0 || base > 1<<32-1-HostIDBlock {
			return nil, fmt.Errorf("%w: --sandbox-uid-base %d must be a positive multiple of %d below %d", ErrInvalidSpec, base, HostIDBlock, 1<<32-HostIDBlock)
		}
		ids, holder, err := tryClaim(base, prefix)
		if err != nil {
			return nil, err
		}
		if ids == nil {
			return nil, fmt.Errorf("host uids %d-%d are in use by another lambdaplane server (%s): pass another --sandbox-uid-base, or 0 to pick a free block", base, base+HostIDBlock-1, holder)
		}
		return ids, nil
	}
	for k := range hostIDMaxBlocks {
		ids, _, err := tryClaim(DefaultHostIDBase+k*HostIDBlock, prefix)
		if err != nil {
			return nil, err
		}
		if ids != nil {
			return ids, nil
		}
	}
	return nil, fmt.Errorf("all %d host uid blocks from %d are in use by other lambdaplane servers", hostIDMaxBlocks, DefaultHostIDBase)
}

// tryClaim returns nil and a description of the holder if the block is
// taken. The lock file is removed when the block is given back; a claim
// that locked a file removed meanwhile (its path now names another file,
// or none) tries again.
func tryClaim(base int, prefix string) (*hostIDs, string, error) {
	path := filepath.Join(HostIDLockDir, fmt.Sprintf("%d.lock", base))
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, "", fmt.Errorf("host uid lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			holder, _ := os.ReadFile(path)
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, strings.TrimSpace(string(holder)), nil
			}
			return nil, "", fmt.Errorf("lock %s: %w", path, err)
		}
		var held, named unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(path, &named) != nil || held.Ino != named.Ino {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d, prefix %s\n", os.Getpid(), prefix)), 0)
		}
		return &hostIDs{base: base, lock: f}, "", nil
	}
}

func (h *hostIDs) alloc() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next < HostIDBlock {
		h.next++
		return h.base + h.next - 1, nil
	}
	if len(h.free) == 0 {
		return 0, ErrNoHostIDs
	}
	id := h.free[0]
	h.free = h.free[1:]
	return id, nil
}

func (h *hostIDs) release(id int) {
	if id == 0 {
		return
	}
	h.mu.Lock()
	h.free = append(h.free, id)
	h.mu.Unlock()
}

// Close gives the block back and removes its lock file (while still
// holding the lock, so a claim racing with it sees the file gone and
// tries again).
func (h *hostIDs) Close() error {
	err := os.Remove(h.lock.Name())
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, h.lock.Close())
}

// HostIDRange returns the first and last host uid this manager hands out.
func (m *Manager) HostIDRange() (first, last int) {
	return m.ids.base, m.ids.base + HostIDBlock - 1
}
