package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupRoot is where the cgroup v1 hierarchies are mounted.
const CgroupRoot = "/sys/fs/cgroup"

// controllers are the v1 hierarchies an environment gets a cgroup in.
var controllers = [...]string{"memory", "pids", "cpu"}

const (
	maxPids          = 1024
	lambdaMBPerVCPU  = 1769 // AWS: 1769 MB = one full vCPU
	minCPUShares     = 2
	cgroupRmdirLimit = 2 * time.Second
)

// cgroupSet is one environment's cgroup directories, indexed like controllers.
type cgroupSet [len(controllers)]string

func newCgroupSet(prefix, id string) cgroupSet {
	var cg cgroupSet
	for i, c := range controllers {
		cg[i] = filepath.Join(CgroupRoot, c, prefix, id)
	}
	return cg
}

func (cg cgroupSet) memory() string { return cg[0] }

// procs returns the cgroup.procs files the init process writes itself into.
func (cg cgroupSet) procs() []string {
	out := make([]string, len(cg))
	for i, d := range cg {
		out[i] = d + "/cgroup.procs"
	}
	return out
}

// cpuShares maps memory to CPU weight the way Lambda does: 1769 MB is one
// full vCPU (1024 shares).
func cpuShares(memoryMB int) int {
	return max(minCPUShares, 1024*memoryMB/lambdaMBPerVCPU)
}

// VCPUs is an environment's CPU allotment in whole CPUs: Lambda's 1769 MB
// per vCPU rounded up, at least one and at most the CPUs this process may
// run on. The cgroup's cpu.shares weigh environments against each other;
// this number tells a runtime how many threads of parallel work are worth
// scheduling (GOMAXPROCS for Go functions).
func VCPUs(memoryMB int) int {
	return min(runtime.NumCPU(), max(1, (memoryMB+lambdaMBPerVCPU-1)/lambdaMBPerVCPU))
}

// limits returns the files and values written to a fresh cgroup set.
// Optional files (memsw without swap accounting, swappiness) are marked.
func limits(memoryMB int, memsw bool) []cgWrite {
	b := strconv.FormatInt(int64(memoryMB)<<20, 10)
	w := []cgWrite{{0, "memory.limit_in_bytes", b, false}}
	if memsw {
		// Must come after memory.limit_in_bytes (memsw >= limit).
		w = append(w, cgWrite{0, "memory.memsw.limit_in_bytes", b, false})
	}
	return append(w,
		cgWrite{0, "memory.swappiness", "0", true},
		cgWrite{1, "pids.max", strconv.Itoa(maxPids), false},
		cgWrite{2, "cpu.shares", strconv.Itoa(cpuShares(memoryMB)), false},
	)
}

type cgWrite struct {
	ctrl     int
	file     string
	value    string
	optional bool
}

// create makes the directories and applies the limits; on failure it removes
// what it made. A leftover directory with the same name (a crash) is removed
// and recreated so no stale counters (oom_kill, max usage) survive.
func (cg cgroupSet) create(memoryMB int, memsw bool) error {
	for i, d := range cg {
		err := unix.Mkdir(d, 0o755)
		if err == unix.ENOENT {
			if err = os.MkdirAll(filepath.Dir(d), 0o755); err == nil {
				err = unix.Mkdir(d, 0o755)
			}
		}
		if err == unix.EEXIST {
			if err = removeCgroup(d); err == nil {
				err = unix.Mkdir(d, 0o755)
			}
		}
		if err != nil {
			_ = cgroupSet(cg).removeFirst(i)
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
	}
	for _, w := range limits(memoryMB, memsw) {
		if err := writeFile(filepath.Join(cg[w.ctrl], w.file), w.value); err != nil && !w.optional {
			_ = cg.remove()
			return fmt.Errorf("set %s=%s in %s: %w", w.file, w.value, cg[w.ctrl], err)
		}
	}
	return nil
}

func (cg cgroupSet) removeFirst(n int) error {
	var errs []error
	for _, d := range cg[:n] {
		errs = append(errs, removeCgroup(d))
	}
	return errors.Join(errs...)
}

// remove deletes every directory of the set; already gone is success.
func (cg cgroupSet) remove() error { return cg.removeFirst(len(cg)) }

// removeCgroup removes one cgroup directory. Tasks that exited may take a
// moment to leave; tasks still running (an orphan from a crashed manager)
// are killed.
func removeCgroup(dir string) error {
	deadline := time.Now().Add(cgroupRmdirLimit)
	wait := 100 * time.Microsecond
	for {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		killCgroupTasks(dir)
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

func killCgroupTasks(dir string) {
	b, err := os.ReadFile(dir + "/cgroup.procs")
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

func writeFile(path, value string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, err = unix.Write(fd, []byte(value))
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
}

// oomKills returns the oom_kill counter of memory.oom_control (kernel ≥ 4.13);
// ok is false if the line is missing.
func oomKills(oomControl []byte) (n int64, ok bool) {
	for _, line := range strings.Split(string(oomControl), "\n") {
		if v, found := strings.CutPrefix(line, "oom_kill "); found {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// oomKilled tells whether the kernel OOM killer fired in the memory cgroup.
// Without the oom_kill counter, a hit limit (failcnt) plus death by SIGKILL
// is taken as an OOM kill.
func oomKilled(memDir string, sig syscall.Signal) bool {
	if b, err := os.ReadFile(memDir + "/memory.oom_control"); err == nil {
		if n, ok := oomKills(b); ok {
			return n > 0
		}
	}
	n, err := readInt(memDir + "/memory.failcnt")
	return err == nil && n > 0 && sig == syscall.SIGKILL
}

// ListCgroups returns every environment cgroup directory under prefix in all
// controllers (for leak checks and reconcile), sorted; pooled sets, which
// hold no environment, are left out.
func ListCgroups(prefix string) ([]string, error) { return listCgroups(prefix, false) }

// ListAllCgroups is ListCgroups with the pooled sets: everything a server
// with prefix holds, for checks that nothing is left after it stopped.
func ListAllCgroups(prefix string) ([]string, error) { return listCgroups(prefix, true) }

// listCgroups is ListCgroups, with the pooled sets when pooled is set.
func listCgroups(prefix string, pooled bool) ([]string, error) {
	if prefix == "" || strings.Contains(prefix, "/") {
		return nil, fmt.Errorf("%w: prefix %q must be a non-empty name", ErrInvalidSpec, prefix)
	}
	var out []string
	for _, c := range controllers {
		base := filepath.Join(CgroupRoot, c, prefix)
		ents, err := os.ReadDir(base)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.IsDir() && (pooled || !isPooledName(e.Name())) {
				out = append(out, filepath.Join(base, e.Name()))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// tuneCgroups turns on favordynmods. All cgroup hierarchies share one lock
// (cgroup_threadgroup_rwsem) that a task migration takes for writing; by
// default the writer waits for an RCU grace period, which made joining the
// cgroups the slowest step of a cold start (~10 ms). favordynmods, a
// per-root mount option that applies to that shared lock, makes migrations
// fast at a small cost to fork and exit. The cgroup2 root (where present)
// is remounted because v2 supports changing the option on remount; the v1
// memory root is tried otherwise. Failure is logged, never fatal.
func tuneCgroups(log *slog.Logger) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	type mnt struct{ dir, data string }
	var candidates []mnt
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[2] != "cgroup2" && f[2] != "cgroup") {
			continue
		}
		// Remount replaces the fs options: keep the current ones.
		var keep []string
		for _, o := range strings.Split(f[3], ",") {
			switch o {
			case "favordynmods":
				return // already on: the lock is shared by all hierarchies
			case "rw", "ro", "relatime", "noatime", "strictatime", "nosuid", "nodev", "noexec":
			default:
				keep = append(keep, o)
			}
		}
		data := strings.Join(append(keep, "favordynmods"), ",")
		switch {
		case f[2] == "cgroup2":
			candidates = append([]mnt{{f[1], data}}, candidates...)
		case slices.Contains(keep, "memory"):
			candidates = append(candidates, mnt{f[1], data})
		}
	}
	for _, c := range candidates {
		err := unix.Mount("", c.dir, "", unix.MS_REMOUNT, c.data)
		if err == nil {
			log.Info("remounted cgroup hierarchy with favordynmods for fast cgroup joins", "mountpoint", c.dir, "options", c.data)
			return
		}
		log.Debug("cannot enable favordynmods", "mountpoint", c.dir, "err", err)
	}
	log.Warn("cgroup favordynmods unavailable: each environment start may wait for an RCU grace period (~10 ms)")
}
