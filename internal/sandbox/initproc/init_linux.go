package initproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Main runs the init process and never returns: it either execs the
// function's command or exits with ExitSetup / ExitExec.
func Main() {
	// Credentials, prctl state, the network namespace and execve are per
	// thread: do all of it on this one.
	runtime.LockOSThread()
	t0 := Monotonic()
	unix.Umask(0o022)

	base, err := DecodeBase(os.Getenv(EnvVar))
	if err != nil {
		fail(ExitSetup, "%v", err)
	}
	if err := prepareRoot(base); err != nil {
		fail(ExitSetup, "prepare root filesystem: %v", err)
	}
	prog, err := compileSeccomp()
	if err != nil {
		fail(ExitSetup, "%v", err)
	}
	report("ready\n")
	msg, fds, err := receive()
	if err != nil {
		fail(ExitSetup, "receive parameters: %v", err)
	}
	if msg == nil {
		os.Exit(0) // released unused (pool shrink or shutdown)
	}
	// A pool member was started at a low priority (background refill);
	// this thread execs the function, which must run at the normal one.
	// Niceness is per thread and inherited by the exec'd program.
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, 0); err != nil {
		fail(ExitSetup, "reset scheduling priority: %v", err)
	}
	p, err := Decode(string(msg))
	if err != nil {
		fail(ExitSetup, "%v", err)
	}
	if len(fds) != len(p.Fds) {
		fail(ExitSetup, "received %d descriptors, the parameters name %d", len(fds), len(p.Fds))
	}
	byRole := map[string][]int{}
	for i, role := range p.Fds {
		byRole[role] = append(byRole[role], fds[i])
	}
	if out := byRole[FdOutput]; len(out) > 0 {
		// The environment's own output pipe replaces the init's stdout and
		// stderr (dup3 without O_CLOEXEC: the function inherits them).
		if err := unix.Dup3(out[0], 1, 0); err != nil {
			fail(ExitSetup, "attach output: %v", err)
		}
		if err := unix.Dup3(out[0], 2, 0); err != nil {
			fail(ExitSetup, "attach output: %v", err)
		}
	}
	t1 := Monotonic()
	if ns := byRole[FdNetns]; len(ns) > 0 {
		if err := unix.Setns(ns[0], unix.CLONE_NEWNET); err != nil {
			fail(ExitSetup, "join network namespace: %v", err)
		}
	}
	for i, fd := range byRole[FdCgroup] {
		if _, err := unix.Write(fd, []byte("0")); err != nil {
			name := "cgroup"
			if i < len(p.CgroupProcs) {
				name = filepath.Dir(p.CgroupProcs[i])
			}
			fail(ExitSetup, "join cgroup %s: %v", name, err)
		}
	}
	t2 := Monotonic()
	if err := finishRoot(p, byRole); err != nil {
		fail(ExitSetup, "build root filesystem: %v", err)
	}
	t3 := Monotonic()
	// Nothing inherited except 0-2 reaches the function (fds 3 and 4
	// included); what was received is not needed any more.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fail(ExitSetup, "close_range: %v", err)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	path, err := lookPath(FnRoot, p.Argv[0], p.Env)
	if err != nil {
		fail(ExitExec, "exec %s: %v", p.Argv[0], err)
	}
	t4 := Monotonic()
	pid, err := startFunction(p, path, prog)
	if err != nil {
		code := ExitSetup
		if execErrno(err) {
			code = ExitExec
		}
		fail(code, "exec %s: %v", p.Argv[0], err)
	}
	ok := []byte("ok")
	for _, t := range [...]int64{t0, t1, t2, t3, t4} {
		ok = strconv.AppendInt(append(ok, ' '), t, 10)
	}
	report(string(append(ok, '\n')))
	os.Exit(reap(pid))
}

// startFunction forks the function's process into a new user namespace of
// its own, where it runs as p.UID/p.GID, mapped to this environment's host
// ids p.HostUID/p.HostGID (and nothing else mapped), chrooted into FnRoot,
// with no_new_privs and the seccomp filter. It returns once the command
// has been exec'd.
//
// Only this (locked) thread changes its credentials, with raw per-thread
// calls, to (real 0, effective host uid, saved 0) and file-system uid 0:
//   - the user namespace the clone creates is owned by its creator's
//     effective uid, and the kernel charges the per-user limits of
//     everything inside it (inotify instances and watches, user
//     namespaces, processes) to that owner as well: owned by root, all
//     environments would share root's limits;
//   - the owner may write a one-id map of itself for its child without
//     CAP_SETUID (the parent, this thread, writes the maps), and the
//     file-system uid 0 lets it open the child's map files, which belong
//     to root because a process whose effective uid changed is not
//     dumpable;
//   - the real and saved uid 0 keep the function (real, effective and
//     saved uid all the host uid) from matching this process for ptrace,
//     /proc/1/mem or signals.
//
// Inside, after the maps are written, the child chroots (so the kernel
// refuses it any further user namespace: see seccomp_linux.go), switches
// to p.UID/p.GID and execs; a non-root uid in its namespace leaves it no
// capability after exec.
func startFunction(p *Params, path string, prog *unix.SockFprog) (int, error) {
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return 0, fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, 0, uintptr(p.HostGID), 0); e != 0 {
		return 0, fmt.Errorf("setresgid 0 %d 0: %w", p.HostGID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 0, uintptr(p.HostUID), 0); e != 0 {
		return 0, fmt.Errorf("setresuid 0 %d 0: %w", p.HostUID, e)
	}
	unix.RawSyscall(unix.SYS_SETFSUID, 0, 0, 0) // returns the old value, never an error
	if old, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); old != 0 {
		return 0, fmt.Errorf("setfsuid 0: still %d", old)
	}
	if err := loadSeccomp(prog); err != nil {
		return 0, err
	}
	// ETXTBSY: a process forked elsewhere on the host (the server starts
	// sandboxes all the time) may still hold, until its own exec closes
	// it, a copy of the descriptor the server wrote the function's code
	// through; the window is short, so the exec is tried again.
	pid, err := spawnFunction(p, path)
	for i := 0; i < 100 && errors.Is(err, unix.ETXTBSY); i++ {
		time.Sleep(2 * time.Millisecond)
		pid, err = spawnFunction(p, path)
	}
	return pid, err
}

// execErrno tells an error of execve itself (the command: missing, not
// executable, bad format) from a failure to build the process.
func execErrno(err error) bool {
	for _, e := range []error{unix.ENOENT, unix.EACCES, unix.ENOEXEC, unix.ENOTDIR, unix.ELOOP,
		unix.ETXTBSY, unix.E2BIG, unix.EISDIR, unix.ENAMETOOLONG, unix.ELIBBAD} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// reap waits for the function, reaping whatever else is reparented to us
// (we are pid 1), reports how it ended and returns the exit code to end
// with: the function's own, or 128 + the signal that killed it. Our exit
// ends every other process in the namespace.
func reap(child int) int {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fail(ExitSetup, "wait for the function: %v", err)
		}
		if pid != child {
			continue
		}
		report(ExitLine(ws))
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// receive blocks for the one message on ControlFD and the descriptors
// attached to it (close-on-exec). msg is nil on end of file.
func receive() (msg []byte, fds []int, err error) {
	buf := make([]byte, MaxParamsSize+1)
	oob := make([]byte, unix.CmsgSpace(4*MaxFds))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(ControlFD, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if n == 0 {
			return nil, nil, nil
		}
		if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > MaxParamsSize {
			return nil, nil, fmt.Errorf("message truncated")
		}
		if oobn > 0 {
			cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				return nil, nil, err
			}
			for _, c := range cmsgs {
				got, err := unix.ParseUnixRights(&c)
				if err != nil {
					return nil, nil, err
				}
				fds = append(fds, got...)
			}
		}
		unix.Close(ControlFD)
		return buf[:n], fds, nil
	}
}

func fail(code int, format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	fmt.Fprintf(os.Stderr, "lambdaplane-init: %s\n", msg)
	report(fmt.Sprintf("err %d %s\n", code, msg))
	os.Exit(code)
}

func report(s string) { _, _ = unix.Write(StatusFD, []byte(s)) }

func writeFile(path, s string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, err = unix.Write(fd, []byte(s))
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

const (
	roFlags  = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	tmpFlags = unix.MS_NOSUID | unix.MS_NODEV
)

func mount(src, dst, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s): %w", src, dst, fstype, err)
	}
	return nil
}

// bindRO bind-mounts src (with everything mounted below it) read-only,
// nosuid, nodev at dst.
func bindRO(src, dst string) error {
	if err := mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	attr := unix.MountAttr{Attr_set: roFlags}
	err := unix.MountSetattr(unix.AT_FDCWD, dst, unix.AT_RECURSIVE, &attr)
	if errors.Is(err, unix.ENOSYS) { // kernel < 5.12: top mount only
		err = unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
	}
	if err != nil {
		return fmt.Errorf("make %s read-only: %w", dst, err)
	}
	return nil
}

func mkdir(path string, mode uint32) error {
	if err := unix.Mkdir(path, mode); err != nil && err != unix.EEXIST {
		return fmt.Errorf("mkdir %s: %w", path, err)
	}
	return nil
}

func mkdirs(root string, paths ...string) error {
	for _, p := range paths {
		if err := mkdir(root+p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func symlink(target, link string) error {
	if err := unix.Symlink(target, link); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", link, target, err)
	}
	return nil
}

// prepareRoot builds everything that is the same for all environments on
// a tmpfs at b.Root: host system directories, mountpoints, /proc, /dev. We
// are alone in a fresh mount namespace, so the staging path is the same for
// every environment and nothing is visible to the host. A pooled process
// does this before it is assigned an environment.
func prepareRoot(b *Base) error {
	r := b.Root
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := mount("lambdaplane", r, "tmpfs", tmpFlags, "size=1m,nr_inodes=1024,mode=755"); err != nil {
		return err
	}
	if err := mkdir(r+FnRoot, 0o755); err != nil {
		return err
	}
	// The init writes its child's id maps under /proc/<pid>.
	if err := symlink(FnRoot[1:]+"/proc", r+"/proc"); err != nil {
		return err
	}
	r += FnRoot
	for _, e := range b.System {
		if e.Link != "" {
			if err := symlink(e.Link, r+e.Path); err != nil {
				return err
			}
			continue
		}
		if err := mkdir(r+e.Path, 0o755); err != nil {
			return err
		}
		if err := bindRO(e.Path, r+e.Path); err != nil {
			return err
		}
	}
	if err := mkdirs(r, "/var", "/var/task", "/var/runtime", "/opt", "/tmp", "/proc", "/dev"); err != nil {
		return err
	}
	// Our pid namespace exists already, so /proc can be mounted now.
	if err := mount("proc", r+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := prepareDev(b, r+"/dev"); err != nil {
		return err
	}
	// Pivot now, while nothing waits for us: detaching the copy of the
	// host's mount tree is the costliest step of building a root (its
	// size grows with the host's mounts, and the unmount waits for an RCU
	// grace period), and pivot_root visits every task on the host.
	return pivot(b.Root)
}

// finishRoot moves the environment's own trees into the root (already
// pivoted into by prepareRoot), mounts /tmp and /dev/shm, and makes the
// root and /dev read-only.
func finishRoot(p *Params, fds map[string][]int) error {
	for _, m := range [...]struct{ role, dst, src string }{
		{FdCode, FnRoot + "/var/task", p.CodeDir}, {FdOpt, FnRoot + "/opt", p.OptDir}, {FdRuntime, FnRoot + "/var/runtime", p.RuntimeDir},
	} {
		if t := fds[m.role]; len(t) > 0 {
			if err := unix.MoveMount(t[0], "", unix.AT_FDCWD, m.dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return fmt.Errorf("mount %s on %s: %w", m.src, m.dst, err)
			}
		}
	}
	// /tmp and /dev/shm belong to the function (host ids: we are outside
	// its user namespace).
	owner := ",uid=" + strconv.Itoa(p.HostUID) + ",gid=" + strconv.Itoa(p.HostGID)
	if err := mount("tmpfs", FnRoot+"/tmp", "tmpfs", tmpFlags, "mode=1777,size="+strconv.Itoa(p.TmpMB)+"m"+owner); err != nil {
		return err
	}
	if err := mount("shm", FnRoot+"/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size="+strconv.Itoa(p.ShmMB)+"m"+owner); err != nil {
		return err
	}
	if err := mount("", FnRoot+"/dev", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if p.Hostname != "" {
		if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	if err := mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return err
	}
	return nil
}

// devNumbers are the fixed Linux device numbers of the nodes /dev may hold.
var devNumbers = map[string][2]uint32{
	"null": {1, 3}, "zero": {1, 5}, "full": {1, 7}, "random": {1, 8}, "urandom": {1, 9}, "tty": {5, 0},
}

// prepareDev makes a minimal /dev: a tmpfs with the usual character
// devices (mknod is several times cheaper than bind-mounting the host's
// nodes), the /proc/self/fd symlinks and a mountpoint for /dev/shm.
// finishRoot mounts /dev/shm and makes /dev read-only.
func prepareDev(b *Base, dev string) error {
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,nr_inodes=64,mode=755"); err != nil {
		return err
	}
	for _, d := range b.Devices {
		n, ok := devNumbers[d]
		if !ok {
			return fmt.Errorf("unknown device %q", d)
		}
		if err := unix.Mknod(dev+"/"+d, unix.S_IFCHR|0o666, int(unix.Mkdev(n[0], n[1]))); err != nil {
			return fmt.Errorf("mknod %s/%s: %w", dev, d, err)
		}
		// mknod obeys the umask; the nodes must be 0666.
		if err := unix.Chmod(dev+"/"+d, 0o666); err != nil {
			return fmt.Errorf("chmod %s/%s: %w", dev, d, err)
		}
	}
	if err := mkdir(dev+"/shm", 0o1777); err != nil {
		return err
	}
	for _, l := range [][2]string{
		{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
	} {
		if err := symlink(l[1], dev+"/"+l[0]); err != nil {
			return err
		}
	}
	return nil
}

// pivot makes root the process's root and detaches the host tree, as runc
// does: pivot_root(".", ".") stacks the old root on top of the new one, and
// the old one is then lazily unmounted.
func pivot(root string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		if err != unix.EINVAL {
			return fmt.Errorf("pivot_root %s: %w", root, err)
		}
		// The host root is not a mount point (initramfs): move and chroot.
		if err := mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
			return err
		}
		if err := unix.Chroot("."); err != nil {
			return fmt.Errorf("chroot %s: %w", root, err)
		}
		return unix.Chdir("/")
	}
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("fchdir old root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath resolves argv0 like execvp, for a process whose root is the
// directory root and whose working directory is /var/task: names with a
// slash are used as is, others are searched in PATH from env. It returns
// the path as that process sees it.
func lookPath(root, argv0 string, env []string) (string, error) {
	if argv0 == "" {
		return "", errors.New("empty command")
	}
	if strings.Contains(argv0, "/") {
		in := argv0
		if !strings.HasPrefix(in, "/") {
			in = "/var/task/" + in
		}
		return argv0, executable(root + in)
	}
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	err := error(unix.ENOENT)
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + argv0
		if !strings.HasPrefix(p, "/") {
			p = "/var/task/" + p
		}
		e := executable(root + p)
		if e == nil {
			return p, nil
		}
		if e != unix.ENOENT && e != unix.ENOTDIR {
			err = e
		}
	}
	return "", fmt.Errorf("not found in PATH %q: %w", path, err)
}

func executable(p string) error {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.EISDIR
	}
	return unix.Access(p, unix.X_OK)
}
