package initproc

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// step is one system call the function's process makes between its clone
// and its execve (vforkSteps). The layout is the assembly's.
type step struct {
	nr   uintptr
	args [6]uintptr
	from int64   // >= 0: args[0] is the result of that step
	ret  uintptr // the call's result; notRun until it is made
}

const notRun = ^uintptr(0) >> 1

// spawnMem is what the child of spawnFunction reads by address.
type spawnMem struct {
	steps      []step
	strs       [][]byte
	argv, envv []*byte
	all, old   uint64 // signal masks: all blocked, and the one before
	stack      [4096]byte
}

// vforkSteps is in vfork_linux_amd64.s.
//
//go:noescape
func vforkSteps(flags, stack uintptr, steps *step, n uintptr) (pid int64)

// spawnFunction clones the function's process into a new user namespace
// with CLONE_VM|CLONE_VFORK, as Go's ForkExec does for a process without
// one: the clone copies nothing, and this thread waits until the child has
// exec'd. Go's ForkExec gives up vfork when it creates a user namespace,
// because its parent writes the child's id maps while the child waits;
// the full fork of this process that costs measured several times a vfork
// on the path of every cold start. Here the child writes its own one-id
// maps, which the kernel allows because this thread's effective uid and
// gid (startFunction) are the ids mapped and own the namespace, and
// setgroups is denied first, as an unprivileged writer of gid_map must.
// The child then chroots into FnRoot, takes p.UID/p.GID, restores the
// signal mask and execs: a fixed list of system calls run by a few lines
// of assembly (vfork_linux_amd64.s), since no Go code may run in a child
// that shares this process's memory.
func spawnFunction(p *Params, path string) (int, error) {
	// Everything the child reads by address lives in m: on the heap
	// (pinning makes m escape), never on this goroutine's stack, which may
	// move between taking an address and the clone.
	m := new(spawnMem)
	var pin runtime.Pinner
	pin.Pin(m)
	defer pin.Unpin()
	str := func(s string) uintptr {
		b := append([]byte(s), 0)
		m.strs = append(m.strs, b)
		return uintptr(unsafe.Pointer(&b[0]))
	}
	var err error
	if m.argv, err = syscall.SlicePtrFromStrings(p.Argv); err != nil {
		return 0, err
	}
	if m.envv, err = syscall.SlicePtrFromStrings(p.Env); err != nil {
		return 0, err
	}
	gidMap := fmt.Sprintf("%d %d 1", p.GID, p.HostGID)
	uidMap := fmt.Sprintf("%d %d 1", p.UID, p.HostUID)
	m.all = ^uint64(0)
	var names []string // for errors
	call := func(name string, nr uintptr, args ...uintptr) int {
		st := step{nr: nr, from: -1, ret: notRun}
		copy(st.args[:], args)
		m.steps, names = append(m.steps, st), append(names, name)
		return len(m.steps) - 1
	}
	onFd := func(name string, nr uintptr, fd int, args ...uintptr) {
		call(name, nr, append([]uintptr{0}, args...)...)
		m.steps[len(m.steps)-1].from = int64(fd)
	}
	cwd := unix.AT_FDCWD
	writeFile := func(path, data string) {
		fd := call("open "+path, unix.SYS_OPENAT, uintptr(cwd), str(path), unix.O_WRONLY|unix.O_CLOEXEC)
		onFd("write "+path+" "+data, unix.SYS_WRITE, fd, str(data), uintptr(len(data)))
		onFd("close "+path, unix.SYS_CLOSE, fd)
	}
	writeFile("/proc/self/setgroups", "deny")
	writeFile("/proc/self/gid_map", gidMap)
	writeFile("/proc/self/uid_map", uidMap)
	call("chroot "+FnRoot, unix.SYS_CHROOT, str(FnRoot))
	call("chdir /var/task", unix.SYS_CHDIR, str("/var/task"))
	call("setresgid", unix.SYS_SETRESGID, uintptr(p.GID), uintptr(p.GID), uintptr(p.GID))
	call("setresuid", unix.SYS_SETRESUID, uintptr(p.UID), uintptr(p.UID), uintptr(p.UID))
	call("restore the signal mask", unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&m.old)), 0, 8)
	call("execve", unix.SYS_EXECVE, str(path), uintptr(unsafe.Pointer(&m.argv[0])), uintptr(unsafe.Pointer(&m.envv[0])))
	top := uintptr(unsafe.Pointer(&m.stack[len(m.stack)-16])) &^ 15

	// No signal handler may run in the child (it would run Go code on a
	// thread that shares this process's memory): every signal is blocked
	// around the clone, and the child restores the mask before its exec.
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&m.all)), uintptr(unsafe.Pointer(&m.old)), 8, 0, 0)
	pid := vforkSteps(unix.CLONE_VM|unix.CLONE_VFORK|unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), top, &m.steps[0], uintptr(len(m.steps)))
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&m.old)), 0, 8, 0, 0)
	if pid < 0 {
		return 0, fmt.Errorf("clone: %w", syscall.Errno(-pid))
	}
	for i, s := range m.steps {
		if r := int64(s.ret); r < 0 && r > -4096 {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(int(pid), &ws, 0, nil)
			if s.nr == unix.SYS_EXECVE {
				return 0, syscall.Errno(-r)
			}
			return 0, fmt.Errorf("%s: %w", names[i], syscall.Errno(-r))
		}
	}
	return int(pid), nil
}
