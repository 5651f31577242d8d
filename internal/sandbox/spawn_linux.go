package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/sandbox/initproc"
	"golang.org/x/sys/unix"
)

// spawnReq asks a spawner thread to start cmd, inside the network namespace
// mounted at netns unless it is "".
type spawnReq struct {
	cmd   *exec.Cmd
	netns string
	done  chan error // buffered, receives exactly one value
}

// spawner is the body of one spawning goroutine. It locks itself to its OS
// thread for good: children are started with Pdeathsig, which fires when the
// forking *thread* ends, so the thread must outlive them, and it must never
// run other goroutines while it is switched into an environment's netns.
//
// nice is the thread's scheduling niceness, inherited by what it forks: the
// pool filler's spawner runs at BackgroundNice so that refilling the pool
// during a burst of cold starts takes only CPU the burst leaves idle. (A
// locked thread never clones the Go runtime's new threads, so the niceness
// stays on this thread.)
func (m *Manager) spawner(ready chan<- error, reqs <-chan spawnReq, nice int) {
	runtime.LockOSThread()
	if nice != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, nice); err != nil {
			ready <- fmt.Errorf("set spawner thread niceness %d: %w", nice, err)
			return
		}
	}
	orig, origIno, err := openThreadNetns()
	ready <- err
	if err != nil {
		return // nothing was spawned: the thread may end
	}
	defer unix.Close(orig)
	for {
		select {
		case <-m.stop:
			return // Close destroyed every environment first
		case req := <-reqs:
			if req.netns == "" {
				req.done <- req.cmd.Start()
				continue
			}
			err, restored := startInNetns(req.cmd, req.netns, orig, origIno)
			req.done <- err
			if !restored {
				// The thread is stuck in a foreign namespace. Keep it (and its
				// children) alive but idle, and replace it.
				m.log.Error("sandbox spawner thread could not return to its network namespace; parking it", "netns", req.netns)
				go m.spawner(make(chan error, 1), reqs, nice)
				<-m.stop
				return
			}
		}
	}
}

func openThreadNetns() (fd int, ino uint64, err error) {
	fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("open own network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("stat own network namespace: %w", err)
	}
	return fd, st.Ino, nil
}

// startInNetns runs cmd.Start with the calling (locked) thread switched into
// the network namespace at nsPath, so the child is born there, and switches
// back to orig. restored is false only if the thread could not be proven to
// be back in orig; the caller must then never reuse the thread.
func startInNetns(cmd *exec.Cmd, nsPath string, orig int, origIno uint64) (err error, restored bool) {
	ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err), true
	}
	defer unix.Close(ns)
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter network namespace %s (is it one?): %w", nsPath, err), true
	}
	startErr := cmd.Start()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("return from network namespace %s: %w", nsPath, err), false
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil || st.Ino != origIno {
		return fmt.Errorf("return from network namespace %s: thread is not back (stat: %v)", nsPath, err), false
	}
	if startErr != nil {
		return fmt.Errorf("start init process: %w", startErr), true
	}
	return nil, true
}

// proc is a started lambdaplane-init process not yet (or just) bound to an
// environment. Its stdout+stderr go to a pipe we drain (outR), its progress
// to statusR, and it waits for its parameters on ctrl.
type proc struct {
	cmd     *exec.Cmd
	ctrl    *os.File // our end of the control socket
	statusR *os.File
	status  *bufio.Reader // over statusR, once lines are read
	outR    *os.File
	exited  chan struct{} // closed once cmd.Wait returned
	started int64         // Monotonic() when cmd.Start returned
	clone   time.Duration // duration of the spawn itself
}

// spawnInit starts an init process, inside the network namespace at netns
// if it is not "" (the on-demand path), otherwise in the manager's own (a
// pool member, which joins its namespace later through a passed descriptor).
// background selects the low-priority spawner (pool refills).
func (m *Manager) spawnInit(ctx context.Context, netns string, background bool) (_ *proc, err error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ctrl, childCtrl := os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control-child")
	statusR, statusW, err := os.Pipe()
	if err != nil {
		ctrl.Close()
		childCtrl.Close()
		return nil, fmt.Errorf("status pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		ctrl.Close()
		childCtrl.Close()
		statusR.Close()
		statusW.Close()
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	closers = append(closers, childCtrl, statusW, outW) // the child has its copies
	p := &proc{ctrl: ctrl, statusR: statusR, outR: outR, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			ctrl.Close()
			statusR.Close()
			outR.Close()
		}
	}()
	p.cmd = &exec.Cmd{
		Path:       m.cfg.InitPath,
		Args:       []string{"lambdaplane-init"},
		Env:        []string{initproc.EnvVar + "=" + m.base, "GOMAXPROCS=1", "GOGC=off"},
		Stdout:     outW,
		Stderr:     outW,
		ExtraFiles: []*os.File{statusW, childCtrl}, // fds 3 and 4
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
			Pdeathsig:  syscall.SIGKILL,
			Setsid:     true,
		},
	}
	t := time.Now()
	req := spawnReq{cmd: p.cmd, netns: netns, done: make(chan error, 1)}
	reqs := m.spawnReqs
	if background {
		reqs = m.bgSpawnReqs
	}
	select {
	case reqs <- req:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a spawner thread: %w", ctx.Err())
	case <-m.stop:
		return nil, ErrClosed
	}
	spawnErr := <-req.done
	p.clone, p.started = time.Since(t), initproc.Monotonic()
	if p.cmd.Process != nil {
		go func() {
			_ = p.cmd.Wait()
			close(p.exited)
		}()
	}
	if spawnErr != nil {
		if p.cmd.Process != nil {
			p.kill()
		}
		return nil, spawnErr
	}
	return p, nil
}

// kill SIGKILLs the process (through its pidfd, so a recycled pid is never
// hit) and waits until it is reaped.
func (p *proc) kill() error {
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return nil
	case <-time.After(destroyWait):
		return fmt.Errorf("pid %d did not exit %v after SIGKILL", p.cmd.Process.Pid, destroyWait)
	}
}

// release ends an unused process: closing the control socket makes it exit.
func (p *proc) release() {
	p.ctrl.Close()
	if err := p.kill(); err == nil {
		p.statusR.Close()
		p.outR.Close()
	}
}

// statusLine returns the next line the init reports other than "ready":
// "ok …" or "err …" first, then "exit …" (initproc.ParseStatus,
// ParseExit); at end of file, what was read and the error.
func (p *proc) statusLine() (string, error) {
	if p.status == nil {
		p.status = bufio.NewReaderSize(p.statusR, 512)
	}
	for {
		line, err := p.status.ReadString('\n')
		if err != nil || line != "ready\n" {
			return line, err
		}
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// send hands the parameters and the descriptors they name (see
// initproc.Params) to the process; it closes our end of the control socket.
func (p *proc) send(params []byte, fds []int) error {
	defer p.ctrl.Close()
	if len(params) > initproc.MaxParamsSize {
		return fmt.Errorf("%w: parameters are %d bytes, more than %d (environment too large?)", ErrInvalidSpec, len(params), initproc.MaxParamsSize)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	conn, err := p.ctrl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := conn.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), params, oob, nil, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("send parameters: %w", serr)
	}
	return nil
}

// attachments are the descriptors sent with an environment's parameters,
// with their roles (initproc.Fd*). Close releases ours.
type attachments struct {
	roles []string
	fds   []int
}

func (a *attachments) add(role string, fd int) {
	a.roles = append(a.roles, role)
	a.fds = append(a.fds, fd)
}

func (a *attachments) Close() {
	for _, fd := range a.fds {
		unix.Close(fd)
	}
	a.fds, a.roles = nil, nil
}

// openNetns opens a network namespace to pass (and checks that it is one).
func openNetns(nsPath string) (int, error) {
	ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	if err := checkNetns(ns, nsPath); err != nil {
		unix.Close(ns)
		return -1, err
	}
	return ns, nil
}

// readOnlyTree returns a detached copy of the mount tree at dir (with
// everything mounted below it), read-only, nosuid and nodev: what the init,
// which can no longer see host paths, moves into its root.
func readOnlyTree(dir string) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, fmt.Errorf("clone mount tree %s: %w%s", dir, err, needsKernel(err, "5.2"))
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("make %s read-only: %w%s", dir, err, needsKernel(err, "5.12"))
	}
	return fd, nil
}

func needsKernel(err error, version string) string {
	if errors.Is(err, unix.ENOSYS) {
		return " (the sandbox needs Linux " + version + " or later)"
	}
	return ""
}

// checkNetns verifies that fd is a network namespace (the init process would
// otherwise fail later with a less helpful message).
func checkNetns(fd int, path string) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s is not a network namespace (not on nsfs)", path)
	}
	return nil
}
