// Command probe is the "function" used by the sandbox tests. It is built
// statically by TestMain and placed in the test's code directory.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe report|alloc MB [hold]|fill MB|sleep")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "report":
		report()
	case "alloc":
		mb, _ := strconv.Atoi(os.Args[2])
		var keep [][]byte
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				if j%4096 == 0 {
					b[j] = 1
				}
			}
			keep = append(keep, b)
		}
		fmt.Printf("allocated %d MB\n", len(keep))
		if len(os.Args) > 3 {
			time.Sleep(time.Hour)
		}
	case "fill":
		mb, _ := strconv.Atoi(os.Args[2])
		f, err := os.Create("/tmp/fill")
		if err == nil {
			buf := make([]byte, 1<<20)
			for i := 0; i < mb && err == nil; i++ {
				_, err = f.Write(buf)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		fmt.Printf("fill: %v\n", err)
	case "sleep":
		time.Sleep(time.Hour)
	case "escape":
		escape()
	case "getppid":
		// getppid N: the mean cost of one system call the filter allows.
		n, _ := strconv.Atoi(os.Args[2])
		runtime.LockOSThread()
		t := time.Now()
		for i := 0; i < n; i++ {
			syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		}
		fmt.Printf("%.1f\n", float64(time.Since(t).Nanoseconds())/float64(n))
	case "inotify":
		// inotify [hold]: create instances until refused, say how many.
		n, err := 0, error(nil)
		for n < 100000 {
			if _, err = syscall.InotifyInit1(syscall.IN_CLOEXEC); err != nil {
				break
			}
			n++
		}
		fmt.Printf("inotify %d %v\n", n, err)
		if len(os.Args) > 2 {
			time.Sleep(time.Hour)
		}
	}
}

// escape tries what the sandbox must refuse and prints, as JSON, each
// attempt's error ("" = it worked).
func escape() {
	out := map[string]string{}
	sys := func(name string, trap uintptr, args ...uintptr) {
		var a [6]uintptr
		copy(a[:], args)
		r, _, e := syscall.Syscall6(trap, a[0], a[1], a[2], a[3], a[4], a[5])
		if e != 0 {
			out[name] = e.Error()
			return
		}
		out[name] = ""
		if name == "socket-packet" || name == "socket-raw" || name == "io_uring_setup" || name == "bpf" || name == "perf_event_open" || name == "userfaultfd" {
			syscall.Close(int(r))
		}
	}
	var keep [][]byte // what str hands out as addresses stays reachable
	str := func(s string) uintptr {
		b := append([]byte(s), 0)
		keep = append(keep, b)
		return uintptr(unsafe.Pointer(&b[0]))
	}
	defer func() { _ = keep }()
	sys("unshare-user", syscall.SYS_UNSHARE, syscall.CLONE_NEWUSER)
	sys("unshare-net", syscall.SYS_UNSHARE, syscall.CLONE_NEWNET)
	sys("unshare-mount", syscall.SYS_UNSHARE, syscall.CLONE_NEWNS)
	sys("setns", 308, 0, 0)
	sys("mount", syscall.SYS_MOUNT, str("none"), str("/tmp"), str("tmpfs"), 0, 0)
	sys("chroot", syscall.SYS_CHROOT, str("/tmp"))
	sys("add_key", 248, str("user"), str("k"), str("secret"), 6, ^uintptr(4)+1) // KEY_SPEC_USER_KEYRING = -4
	sys("request_key", 249, str("user"), str("k"), 0, 0)
	sys("keyctl", 250, 0, ^uintptr(4)+1, 0) // KEYCTL_GET_KEYRING_ID @u
	var params [120]byte
	sys("io_uring_setup", 425, 1, uintptr(unsafe.Pointer(&params[0])))
	var attr [128]byte
	sys("bpf", 321, 0, uintptr(unsafe.Pointer(&attr[0])), 128)
	sys("perf_event_open", 298, uintptr(unsafe.Pointer(&attr[0])), 0, ^uintptr(0), ^uintptr(0), 0)
	sys("userfaultfd", 323, 0)
	sys("socket-packet", syscall.SYS_SOCKET, syscall.AF_PACKET, syscall.SOCK_RAW, 0)
	sys("socket-raw", syscall.SYS_SOCKET, syscall.AF_INET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.IPPROTO_ICMP)
	sys("ptrace-init", syscall.SYS_PTRACE, syscall.PTRACE_ATTACH, 1)
	sys("kill-init", syscall.SYS_KILL, 1, uintptr(syscall.SIGTERM))
	sys("sethostname", syscall.SYS_SETHOSTNAME, str("x"), 1)
	sys("clone3", 435, 0, 0)
	// A new user namespace through clone (what the filter lets through
	// for the init): the kernel refuses it to a chrooted process.
	cmd := exec.Command("/var/task/probe", "sleep")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	err := cmd.Start()
	if err == nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
	out["clone-user"] = errString(err)
	if f, err := os.Open("/proc/1/mem"); err != nil {
		out["open-init-mem"] = err.Error()
	} else {
		out["open-init-mem"] = ""
		f.Close()
	}
	if _, err := os.Readlink("/proc/1/root"); err != nil {
		out["init-root"] = err.Error()
	} else {
		out["init-root"] = ""
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

type Report struct {
	Pid      int
	Pids     []string
	Uid, Gid int
	Groups   []int
	Status   map[string]string
	NetnsIno uint64
	Hostname string
	Cwd      string
	Writes   map[string]string // path -> error ("" = write succeeded)
	Devices  map[string]string // /dev/null etc. -> error of write
	Listing  map[string][]string
	Mounts   []string // mount points from /proc/self/mountinfo
}

func report() {
	r := Report{Pid: os.Getpid(), Uid: os.Getuid(), Gid: os.Getgid(), Status: map[string]string{},
		Writes: map[string]string{}, Devices: map[string]string{}, Listing: map[string][]string{}}
	r.Groups, _ = os.Getgroups()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			r.Pids = append(r.Pids, e.Name())
		}
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			r.Status[k] = strings.TrimSpace(v)
		}
		f.Close()
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err == nil {
		r.NetnsIno = st.Ino
	}
	r.Hostname, _ = os.Hostname()
	r.Cwd, _ = os.Getwd()
	for _, d := range []string{"/", "/var/task", "/etc", "/usr", "/usr/bin", "/opt", "/var/runtime", "/tmp", "/dev", "/dev/shm", "/proc"} {
		p := strings.TrimSuffix(d, "/") + "/probe-write"
		err := os.WriteFile(p, []byte("x"), 0o644)
		r.Writes[d] = errString(err)
		os.Remove(p)
	}
	for _, d := range []string{"null", "zero", "full", "urandom"} {
		f, err := os.OpenFile("/dev/"+d, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write([]byte("x"))
			f.Close()
		}
		r.Devices[d] = errString(err)
	}
	for _, d := range []string{"/", "/var/task", "/opt", "/var/runtime", "/dev"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			r.Listing[d] = append(r.Listing[d], e.Name())
		}
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 4 {
				r.Mounts = append(r.Mounts, f[4])
			}
		}
		f.Close()
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
