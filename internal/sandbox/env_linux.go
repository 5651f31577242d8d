package sandbox

import (
	"fmt"

	"github.com/lambdaplane/lambdaplane/internal/sandbox/initproc"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExitInfo describes how an environment's process ended.
type ExitInfo struct {
	Code      int    // exit status; -1 if killed by a signal
	Signal    string // e.g. "SIGKILL"; "" if it exited
	OOMKilled bool   // the memory cgroup's OOM killer fired in this environment
}

// Phase is the duration of one step of Start. Phases do not overlap; their
// sum is the time from Start to the function's exec. Names: cgroup (create
// and limit), clone (netns switch + fork + exec of the init helper),
// runtime (init helper start-up), join (parameters + cgroup join), rootfs
// (mounts + pivot_root), exec (privilege drop + execve of the command).
type Phase struct {
	Name string
	D    time.Duration
}

// Env is one running (or exited, not yet destroyed) execution environment.
type Env struct {
	m         *Manager
	id        string
	cg        cgroupSet
	cgCreated bool
	p         *proc
	pid       int
	hostID    int // host uid and gid of the environment's user namespace
	phases    []Phase

	statusRead     chan struct{} // closed once Start has read the init's first status line
	statusReadOnce sync.Once

	done     chan struct{}
	exit     ExitInfo // written before done is closed
	closeOut *os.File // the monitor's copy of an *os.File output, closed by it

	maxUsageOnce sync.Once
	maxUsageFile *os.File // memory.max_usage_in_bytes, closed by Destroy

	destroyMu sync.Mutex
	destroyed bool
}

// ID returns the environment's ID.
func (e *Env) ID() string { return e.id }

// Pid returns the host pid of the environment's pid 1, the init process
// whose child (pid 2) is the function; killing it ends the environment.
func (e *Env) Pid() int { return e.pid }

// HostUID returns the host uid (and gid) the function's uid maps to.
func (e *Env) HostUID() int { return e.hostID }

func (e *Env) statusReadDone() { e.statusReadOnce.Do(func() { close(e.statusRead) }) }

// Done is closed when the process, and with it the whole pid namespace, has
// exited and been reaped.
func (e *Env) Done() <-chan struct{} { return e.done }

// Exit is valid after Done is closed; before, it returns the zero value.
func (e *Env) Exit() ExitInfo {
	select {
	case <-e.done:
		return e.exit
	default:
		return ExitInfo{}
	}
}

// Phases returns the start-up phase durations.
func (e *Env) Phases() []Phase { return append([]Phase(nil), e.phases...) }

func (e *Env) phase(name string, d time.Duration) {
	e.phases = append(e.phases, Phase{name, d})
}

// maxUsage returns memory.max_usage_in_bytes, opened once and kept open:
// it is read and reset on every invoke, and opening a cgroup file each time
// costs tens of microseconds.
func (e *Env) maxUsage() *os.File {
	e.maxUsageOnce.Do(func() {
		f, err := os.Open(e.cg.memory() + "/memory.max_usage_in_bytes")
		if err == nil {
			e.maxUsageFile = f
		}
	})
	return e.maxUsageFile
}

// MaxMemoryUsedMB returns the environment's memory high-water mark since it
// started (memory.max_usage_in_bytes), rounded up to MiB; 0 if unavailable.
// Lambda's REPORT line shows the same: the environment's peak, not the
// invoke's.
func (e *Env) MaxMemoryUsedMB() int {
	f := e.maxUsage()
	if f == nil {
		return 0
	}
	var buf [32]byte
	k, err := f.ReadAt(buf[:], 0)
	if k == 0 && err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(buf[:k])), 10, 64)
	if err != nil {
		return 0
	}
	return int((n + 1<<20 - 1) >> 20)
}

// monitor copies the environment's output until every writer is gone
// (the whole pid namespace exited), waits for the reaping, and records how
// it ended while the cgroups are still there to read the OOM counter.
func (e *Env) monitor(w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	_, _ = io.Copy(w, e.p.outR)
	if e.closeOut != nil {
		e.closeOut.Close()
	}
	<-e.p.exited
	e.p.outR.Close()
	// The init reports how the function (its child) ended; without that
	// line (the init itself was killed, or never ran the function) its
	// own end is the environment's.
	<-e.statusRead
	fn, fnOK := syscall.WaitStatus(0), false
	if line, _ := e.p.statusLine(); line != "" {
		var ws unix.WaitStatus
		ws, fnOK = initproc.ParseExit(line)
		fn = syscall.WaitStatus(ws)
	}
	e.p.statusR.Close()
	var x ExitInfo
	var sig syscall.Signal
	if ps := e.p.cmd.ProcessState; ps != nil || fnOK {
		ws := fn
		if !fnOK {
			ws = ps.Sys().(syscall.WaitStatus)
		}
		switch {
		case ws.Signaled():
			sig = ws.Signal()
			x.Code, x.Signal = -1, unix.SignalName(sig)
		default:
			x.Code = ws.ExitStatus()
		}
	} else {
		x.Code = -1
	}
	if e.cgCreated {
		x.OOMKilled = oomKilled(e.cg.memory(), sig)
	}
	e.exit = x
	close(e.done)
}

// kill SIGKILLs the process and waits until it is reaped and its output
// drained.
func (e *Env) kill() error {
	if e.p == nil {
		return nil
	}
	if err := e.p.kill(); err != nil {
		return fmt.Errorf("sandbox %s: %w", e.id, err)
	}
	select {
	case <-e.done:
		return nil
	case <-time.After(destroyWait):
		return fmt.Errorf("sandbox %s: output of pid %d still open %v after exit", e.id, e.pid, destroyWait)
	}
}

// Destroy kills the environment's processes, waits for them and removes its
// cgroups. Calling it again after success does nothing; after a failure it
// retries.
func (e *Env) Destroy() error {
	e.destroyMu.Lock()
	defer e.destroyMu.Unlock()
	if e.destroyed {
		return nil
	}
	if err := e.kill(); err != nil {
		return err
	}
	e.maxUsageOnce.Do(func() {}) // no later open
	if e.maxUsageFile != nil {
		e.maxUsageFile.Close()
	}
	if err := e.cg.remove(); err != nil {
		return fmt.Errorf("sandbox %s: %w", e.id, err)
	}
	e.destroyed = true
	e.m.ids.release(e.hostID)
	e.m.release(e.id)
	return nil
}

// rollback undoes a failed Start.
func (e *Env) rollback() error {
	e.destroyMu.Lock()
	defer e.destroyMu.Unlock()
	err := e.kill()
	if err == nil && e.cgCreated {
		err = e.cg.remove()
	}
	if err == nil {
		e.m.ids.release(e.hostID)
	}
	e.destroyed = true
	e.m.release(e.id)
	return err
}
