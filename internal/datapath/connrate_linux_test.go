package datapath

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The connection-rate benchmark runs its load in separate processes: this
// test binary re-executed (in a namespace, through nsenter) with
// LP_CONNRATE set to "server ADDR" or "client ADDR MODE".
//
// Both sides are written with socket system calls on locked threads, as a
// C load generator would be: with Go's net package (netpoller, a goroutine
// per connection) the generator itself used most of the two cores and
// capped the rate at ~15,000/s on one namespace's loopback, the same as
// through the datapath. The client connects with blocking calls on three
// threads; the server is one thread that drains its accept queue before it
// waits (epoll), which took more connections per wake-up than blocking
// accepts on two threads (on 2 cores: 17–19k/s through the datapath vs
// 14–16k/s).
//
// Every client connection is a new one (SYN, SYN-ACK, ACK from an
// ephemeral port the kernel picks, a new conntrack entry in the router) and
// ends with a reset, so no TIME_WAIT piles up; a port freed by a reset can
// come round again (conntrack then replaces the closed entry). The modes
// differ only in what the client process does with its sockets on the same
// two cores:
//   - reuse: each thread keeps one socket; connect(AF_UNSPEC) resets the
//     connection (tcp_disconnect sends the RST and releases the port) and
//     the next connect starts a new one. This is the datapath's rate: a
//     socket's allocation and teardown in the client (file, inode, dentry,
//     slab and memcg accounting) is not network work, yet with it on the
//     two shared cores the rate through the datapath was 14–28% lower.
//   - fresh: a new socket per connection, closed with SO_LINGER 0, as most
//     client programs do.
const connRateEnv = "LP_CONNRATE"

// Client modes.
const (
	connReuse = "reuse"
	connFresh = "fresh"
)

const (
	connRateServerThreads = 1
	connRateClientThreads = 3
	connRateMax           = 15000
	connRateBound         = 3 * time.Second
)

func TestMain(m *testing.M) {
	if role := os.Getenv(connRateEnv); role != "" {
		os.Exit(connRateChild(strings.Fields(role)))
	}
	os.Exit(m.Run())
}

// connRateChild is the child's body. server: accept and close until
// killed, after printing "ready". client: dial and reset connections until
// connRateMax or connRateBound, then print "<count> <nanoseconds>".
func connRateChild(args []string) int {
	if !(len(args) == 2 && args[0] == "server" || len(args) == 3 && args[0] == "client") {
		fmt.Fprintln(os.Stderr, "usage: server ADDR | client ADDR reuse|fresh")
		return 2
	}
	var err error
	if args[0] == "server" {
		err = acceptLoop(args[1], connRateServerThreads, func() { fmt.Println("ready") })
	} else {
		var n int64
		var d time.Duration
		n, d, err = connectLoop(args[1], args[2], connRateClientThreads, connRateMax, connRateBound)
		if err == nil {
			fmt.Println(n, d.Nanoseconds())
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func sockaddr4(addr string) (*syscall.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("address %q: want IPv4 ADDR:PORT", addr)
	}
	return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
}

// acceptLoop listens on addr with one SO_REUSEPORT listener per thread,
// calls ready, and accepts and closes connections until an accept fails.
// Each thread drains its queue before it waits again (epoll), so a busy
// server takes several connections per wake-up.
func acceptLoop(addr string, threads int, ready func()) error {
	sa, err := sockaddr4(addr)
	if err != nil {
		return err
	}
	fds := make([]int, 0, threads)
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for range threads {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soReusePort, 1); err != nil {
			return err
		}
		if err := syscall.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind %s: %w", addr, err)
		}
		if err := syscall.Listen(fd, 4096); err != nil {
			return err
		}
	}
	ready()
	errc := make(chan error, threads)
	for _, fd := range fds {
		go func() { errc <- acceptOn(fd) }()
	}
	return <-errc
}

// soReusePort is SO_REUSEPORT (not in package syscall).
const soReusePort = 0xf

func acceptOn(fd int) error {
	runtime.LockOSThread()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer syscall.Close(ep)
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
		return err
	}
	events := make([]syscall.EpollEvent, 1)
	for {
		c, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC)
		switch {
		case err == nil:
			syscall.Close(c)
		case errors.Is(err, syscall.EAGAIN):
			if _, err := syscall.EpollWait(ep, events, -1); err != nil && !errors.Is(err, syscall.EINTR) {
				return err
			}
		case errors.Is(err, syscall.EINTR), errors.Is(err, syscall.ECONNABORTED):
		default:
			return fmt.Errorf("accept: %w", err)
		}
	}
}

// connectLoop connects to addr from threads threads until max connections
// or the time bound, resetting each connection (see the modes above); a
// connect gives up after a second.
func connectLoop(addr, mode string, threads int, max int64, bound time.Duration) (int64, time.Duration, error) {
	sa, err := sockaddr4(addr)
	if err != nil {
		return 0, 0, err
	}
	var once func(fd *int) error
	switch mode {
	case connReuse:
		once = func(fd *int) error { return connectReset(fd, sa) }
	case connFresh:
		once = func(*int) error { return connectClose(sa) }
	default:
		return 0, 0, fmt.Errorf("client mode %q: want %s or %s", mode, connReuse, connFresh)
	}
	var n, claimed, failed atomic.Int64 // claimed: connections started or made
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(bound)
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			fd := -1
			defer func() {
				if fd >= 0 {
					syscall.Close(fd)
				}
			}()
			for time.Now().Before(deadline) && failed.Load() <= 1000 {
				if claimed.Add(1) > max {
					return
				}
				if err := once(&fd); err != nil {
					claimed.Add(-1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("connect %s: %w", addr, err))
					failed.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if e, ok := firstErr.Load().(error); ok && (n.Load() == 0 || failed.Load() > 1000) {
		return 0, d, fmt.Errorf("%d connections, %d failed: %w", n.Load(), failed.Load(), e)
	}
	return n.Load(), d, nil
}

// connectTimeout bounds one connect (SO_SNDTIMEO).
var connectTimeout = syscall.NsecToTimeval(time.Second.Nanoseconds())

// connectSocket is a blocking TCP socket with connectTimeout.
func connectSocket() (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &connectTimeout); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// connectReset makes one connection on *fd (a socket made on first use and
// after a failure) and resets it with connect(AF_UNSPEC), which leaves the
// socket unconnected and unbound for the next one.
func connectReset(fd *int, sa *syscall.SockaddrInet4) error {
	if *fd < 0 {
		s, err := connectSocket()
		if err != nil {
			return err
		}
		*fd = s
	}
	err := syscall.Connect(*fd, sa)
	if err == nil {
		var unspec syscall.RawSockaddr // Family 0: AF_UNSPEC
		if _, _, e := syscall.Syscall(syscall.SYS_CONNECT, uintptr(*fd), uintptr(unsafe.Pointer(&unspec)), unsafe.Sizeof(unspec)); e != 0 {
			err = fmt.Errorf("reset: %w", e)
		}
	}
	if err != nil {
		syscall.Close(*fd)
		*fd = -1
	}
	return err
}

// connectClose makes one connection on a new socket and closes it with a
// reset (SO_LINGER 0).
func connectClose(sa *syscall.SockaddrInet4) error {
	fd, err := connectSocket()
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := syscall.Connect(fd, sa); err != nil {
		return err
	}
	return syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
}

func connRateCmd(nsPath, role, addr string) *exec.Cmd {
	cmd := exec.Command("nsenter", "--net="+nsPath, os.Args[0])
	cmd.Env = append(os.Environ(), connRateEnv+"="+role+" "+addr)
	cmd.Stderr = os.Stderr
	return cmd
}

// startConnServer runs the server child in nsPath and waits until it
// listens; the returned function stops it.
func startConnServer(b *testing.B, nsPath, addr string) func() {
	b.Helper()
	cmd := connRateCmd(nsPath, "server", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		stop()
		b.Fatalf("connection server in %s: %q %v", nsPath, line, err)
	}
	return stop
}

// connectFrom runs one client child in nsPath against addr.
func connectFrom(b *testing.B, nsPath, addr, mode string) (int64, time.Duration) {
	b.Helper()
	out, err := connRateCmd(nsPath, "client", addr+" "+mode).Output()
	if err != nil {
		b.Fatalf("connection client in %s: %v", nsPath, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		b.Fatalf("connection client printed %q", out)
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	ns, _ := strconv.ParseInt(f[1], 10, 64)
	if n == 0 || ns <= 0 {
		b.Fatalf("connection client printed %q", out)
	}
	return n, time.Duration(ns)
}

// TestConnectLoopModes: in both client modes every counted connection is a
// new one the server accepts (the reuse mode's reset leaves the socket
// ready for the next connect), on this namespace's loopback.
func TestConnectLoopModes(t *testing.T) {
	for _, mode := range []string{connReuse, connFresh} {
		t.Run(mode, func(t *testing.T) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var mu sync.Mutex
			accepted := 0
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					mu.Lock()
					accepted++
					mu.Unlock()
					c.Close()
				}
			}()
			const want = 300
			n, _, err := connectLoop(ln.Addr().String(), mode, 2, want, 20*time.Second)
			if err != nil || n != want {
				t.Fatalf("connectLoop: %d connections, %v; want %d", n, err, want)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				a := accepted
				mu.Unlock()
				if a == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("server accepted %d connections, want %d", a, want)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	if _, _, err := connectLoop("127.0.0.1:1", "keep", 1, 1, time.Second); err == nil {
		t.Fatal("an unknown mode was accepted")
	}
}
