package initproc

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// filter runs the function's seccomp program in a BPF interpreter.
type filter struct {
	t    *testing.T
	vm   *bpf.VM
	arch *arch.Info
}

func newFilter(t *testing.T) *filter {
	insts, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	a, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	return &filter{t: t, vm: vm, arch: a}
}

const (
	verdictAllow  = uint32(unix.SECCOMP_RET_ALLOW)
	verdictEPERM  = uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.EPERM)
	verdictENOSYS = uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.ENOSYS)
)

// verdict returns the filter's answer to a call (struct seccomp_data:
// nr, arch, instruction pointer, six arguments). The kernel loads 32-bit
// words in the host's (little-endian) order, the interpreter in network
// order: each word is written big-endian, a 64-bit argument's low word
// first.
func (f *filter) verdict(archID uint32, nr uint32, args ...uint64) uint32 {
	f.t.Helper()
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], archID)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[16+8*i+4:], uint32(a>>32))
	}
	v, err := f.vm.Run(b)
	if err != nil {
		f.t.Fatal(err)
	}
	return uint32(v)
}

func (f *filter) call(name string, args ...uint64) uint32 {
	f.t.Helper()
	nr, ok := f.arch.SyscallNames[name]
	if !ok {
		f.t.Fatalf("no syscall %q on %s", name, f.arch.Name)
	}
	return f.verdict(uint32(f.arch.ID), uint32(nr), args...)
}

// The filter refuses everything Docker's default profile refuses a process
// without capabilities, with the documented exceptions, and refuses beyond
// it only what it documents.
func TestSeccompCoversDockerDefault(t *testing.T) {
	f := newFilter(t)
	profile, err := moby.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}})
	if err != nil {
		t.Fatal(err)
	}
	dockerAllows := map[string]bool{}
	for _, s := range profile.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 {
			for _, n := range s.Names {
				dockerAllows[n] = true
			}
		}
	}
	// Conditional in both (checked below) or let through on purpose
	// (see the comment in seccomp_linux.go).
	conditional := []string{"clone", "socket", "personality", "chroot"}
	beyondDocker := []string{"ptrace", "process_vm_readv", "process_vm_writev"}
	for name := range f.arch.SyscallNames {
		v := f.call(name)
		denied := v == verdictEPERM || v == verdictENOSYS
		switch {
		case slices.Contains(conditional, name):
		case !dockerAllows[name] && !denied:
			t.Errorf("%s: Docker's default profile refuses it, the filter allows it (%#x)", name, v)
		case dockerAllows[name] && denied && !slices.Contains(beyondDocker, name):
			t.Errorf("%s: refused (%#x) though Docker's default profile allows it and it is not documented", name, v)
		}
	}
	for _, name := range beyondDocker {
		if f.call(name) != verdictEPERM {
			t.Errorf("%s is not refused", name)
		}
	}
}

func TestSeccompDecisions(t *testing.T) {
	f := newFilter(t)
	for _, c := range []struct {
		what string
		name string
		args []uint64
		want uint32
	}{
		{"thread (Go, glibc fallback)", "clone", []uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM}, verdictAllow},
		{"fork", "clone", []uint64{uint64(unix.SIGCHLD)}, verdictAllow},
		{"the init's own user namespace", "clone", []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, verdictAllow},
		{"new network namespace", "clone", []uint64{unix.CLONE_NEWNET | uint64(unix.SIGCHLD)}, verdictEPERM},
		{"new mount namespace", "clone", []uint64{unix.CLONE_NEWNS}, verdictEPERM},
		{"new pid namespace with a user namespace", "clone", []uint64{unix.CLONE_NEWUSER | unix.CLONE_NEWPID}, verdictEPERM},
		{"clone3", "clone3", nil, verdictENOSYS},
		{"unshare user", "unshare", []uint64{unix.CLONE_NEWUSER}, verdictEPERM},
		{"unshare files (no namespace)", "unshare", []uint64{unix.CLONE_FILES}, verdictEPERM},
		{"setns", "setns", nil, verdictEPERM},
		{"mount", "mount", nil, verdictEPERM},
		{"keyctl", "keyctl", nil, verdictEPERM},
		{"add_key", "add_key", nil, verdictEPERM},
		{"io_uring_setup", "io_uring_setup", nil, verdictEPERM},
		{"bpf", "bpf", nil, verdictEPERM},
		{"perf_event_open", "perf_event_open", nil, verdictEPERM},
		{"userfaultfd", "userfaultfd", nil, verdictEPERM},
		{"TCP socket", "socket", []uint64{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_CLOEXEC}, verdictAllow},
		{"UDP socket", "socket", []uint64{unix.AF_INET6, unix.SOCK_DGRAM}, verdictAllow},
		{"unix socket", "socket", []uint64{unix.AF_UNIX, unix.SOCK_SEQPACKET | unix.SOCK_NONBLOCK}, verdictAllow},
		{"ping socket", "socket", []uint64{unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP}, verdictAllow},
		{"packet socket", "socket", []uint64{unix.AF_PACKET, unix.SOCK_DGRAM}, verdictEPERM},
		{"raw IP socket", "socket", []uint64{unix.AF_INET, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.IPPROTO_TCP}, verdictEPERM},
		{"raw IPv6 socket", "socket", []uint64{unix.AF_INET6, unix.SOCK_RAW | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC}, verdictEPERM},
		{"netlink (route)", "socket", []uint64{unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE}, verdictAllow},
		{"netlink, datagram", "socket", []uint64{unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_ROUTE}, verdictAllow},
		{"vsock", "socket", []uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, verdictEPERM},
		{"personality query", "personality", []uint64{0xffffffff}, verdictAllow},
		{"personality ADDR_NO_RANDOMIZE", "personality", []uint64{0x0040000}, verdictEPERM},
		{"epoll", "epoll_create1", []uint64{unix.EPOLL_CLOEXEC}, verdictAllow},
		{"signalfd", "signalfd4", nil, verdictAllow},
		{"getrandom", "getrandom", nil, verdictAllow},
		{"memfd_create", "memfd_create", nil, verdictAllow},
		{"inotify", "inotify_init1", nil, verdictAllow},
		{"execve", "execve", nil, verdictAllow},
	} {
		if got := f.call(c.name, c.args...); got != c.want {
			t.Errorf("%s: %s(%#x) = %#x, want %#x", c.what, c.name, c.args, got, c.want)
		}
	}
	// Another ABI: unshare through the i386 table (int 0x80) or the x32 one.
	if got := f.verdict(unix.AUDIT_ARCH_I386, 310, unix.CLONE_NEWUSER); got != verdictENOSYS {
		t.Errorf("i386 unshare = %#x, want ENOSYS", got)
	}
	nr := f.arch.SyscallNames["unshare"]
	if got := f.verdict(uint32(f.arch.ID), uint32(nr)|0x40000000, unix.CLONE_NEWUSER); got != verdictENOSYS {
		t.Errorf("x32 unshare = %#x, want ENOSYS", got)
	}
}
