package initproc

import (
	"fmt"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The seccomp filter every function runs under. It is modelled on Docker's
// default profile (moby profiles/seccomp default.json) resolved for a
// process without capabilities, which is what a function is: every system
// call that profile does not allow unconditionally is refused here, and
// the conditional ones (clone, socket, personality) get the same argument
// checks. It is written as a deny list over an allowing default, so a
// call the kernel adds later is not refused until it is reviewed; the
// unit test compares this list with the profile so that the two cannot
// drift apart unnoticed.
//
// Beyond Docker's profile, ptrace and process_vm_readv/writev are refused
// (a function has no business inspecting other processes), and so are
// packet and raw IP sockets (which the kernel refuses a function without
// CAP_NET_RAW anyway).
//
// Two calls Docker refuses without capabilities are let through because
// the init itself makes them after the filter is installed, and the
// kernel refuses them to the function anyway:
//   - chroot: the init's child enters the function's root with it; a
//     function has no CAP_SYS_CHROOT.
//   - clone with CLONE_NEWUSER: it is how the init creates the function's
//     user namespace; a function runs chrooted, and the kernel refuses a
//     chrooted caller a new user namespace (EPERM).
//
// clone3 fails with ENOSYS, not EPERM, so that libcs fall back to clone,
// whose flags the filter can see.

// deniedSyscalls fail with EPERM.
var deniedSyscalls = []string{
	// Namespaces and mounts.
	"unshare", "setns", "mount", "umount2", "pivot_root", "move_mount", "open_tree",
	"open_tree_attr", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	// Keys.
	"keyctl", "add_key", "request_key",
	// Kernel attack surface a function does not need.
	"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
	"io_uring_register", "fanotify_init", "lookup_dcookie", "open_by_handle_at",
	// Other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"process_madvise",
	// Modules, kexec, the machine.
	"init_module", "finit_module", "delete_module", "create_module", "query_module",
	"get_kernel_syms", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
	"acct", "quotactl", "quotactl_fd", "nfsservctl", "syslog", "vhangup",
	"ioperm", "iopl", "settimeofday", "clock_settime", "sethostname", "setdomainname",
	// Memory placement (Docker: CAP_SYS_NICE only).
	"mbind", "set_mempolicy", "set_mempolicy_home_node", "get_mempolicy", "migrate_pages", "move_pages",
	// Obsolete or unimplemented.
	"_sysctl", "sysfs", "ustat", "uselib", "afs_syscall", "getpmsg", "putpmsg",
	"security", "tuxcall", "vserver",
	// Linux security module attributes (not in Docker's profile yet).
	"lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules",
}

// Namespace flags clone refuses (everything but CLONE_NEWUSER, see above).
const cloneNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// personalities Docker allows: PER_LINUX, UNAME26, PER_LINUX32,
// UNAME26|PER_LINUX32, and 0xffffffff (query).
var personalities = []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// Policy returns the seccomp policy of a function.
func Policy() *seccomp.Policy {
	eperm := seccomp.ActionErrno | seccomp.Action(unix.EPERM)
	var conditional []seccomp.NameWithConditions
	conditional = append(conditional, seccomp.NameWithConditions{Name: "clone", Conditions: seccomp.ArgumentConditions{
		{Argument: 0, Operation: seccomp.BitsSet, Value: cloneNamespaceFlags},
	}})
	// Sockets: vsock (Docker), packet, and raw IP ones (netlink sockets
	// are SOCK_RAW too, and stay allowed: Go's net.InterfaceAddrs needs one).
	for _, family := range []uint64{unix.AF_VSOCK, unix.AF_PACKET} {
		conditional = append(conditional, seccomp.NameWithConditions{Name: "socket", Conditions: seccomp.ArgumentConditions{
			{Argument: 0, Operation: seccomp.Equal, Value: family},
		}})
	}
	for _, family := range []uint64{unix.AF_INET, unix.AF_INET6} {
		for _, flags := range []uint64{0, unix.SOCK_CLOEXEC, unix.SOCK_NONBLOCK, unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK} {
			conditional = append(conditional, seccomp.NameWithConditions{Name: "socket", Conditions: seccomp.ArgumentConditions{
				{Argument: 0, Operation: seccomp.Equal, Value: family},
				{Argument: 1, Operation: seccomp.Equal, Value: unix.SOCK_RAW | flags},
			}})
		}
	}
	var persona seccomp.ArgumentConditions
	for _, p := range personalities {
		persona = append(persona, seccomp.Condition{Argument: 0, Operation: seccomp.NotEqual, Value: p})
	}
	conditional = append(conditional, seccomp.NameWithConditions{Name: "personality", Conditions: persona})
	return &seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)},
			{Names: deniedSyscalls, Action: eperm},
			{NamesWithCondtions: conditional, Action: eperm},
		},
	}
}

// Program returns the filter's BPF program: the policy, behind a check
// that refuses (ENOSYS) every call made through another ABI than the
// native one (int 0x80 from a 64-bit process reaches the i386 table, where
// the policy's numbers mean other calls; the library's own check would let
// such calls through to the default action).
func Program() ([]bpf.Instruction, error) {
	policy := Policy()
	insts, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp policy: %w", err)
	}
	native, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp policy: %w", err)
	}
	guard := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(native.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)},
	}
	return append(guard, insts...), nil
}

// compileSeccomp assembles the filter. A pooled init does it before it
// reports ready, so a cold start only loads it.
func compileSeccomp() (*unix.SockFprog, error) {
	insts, err := Program()
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("seccomp policy: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}, nil
}

// loadSeccomp sets no_new_privs and loads prog on the calling thread only
// (not the init's other threads: only this one forks the function, which
// inherits both).
func loadSeccomp(prog *unix.SockFprog) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(prog))); e != 0 {
		return fmt.Errorf("load seccomp filter: %w", e)
	}
	return nil
}
