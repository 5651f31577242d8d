package datapath

import (
	"bufio"
	"errors"
	"fmt"
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
)

// The connection-rate benchmark runs its load in separate processes: this
// test binary re-executed (in a namespace, through nsenter) with
// LP_CONNRATE set to "server ADDR" or "client ADDR".
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
const connRateEnv = "LP_CONNRATE"

const (
	connRateServerThreads = 1
	connRateClientThreads = 3
	connRateMax           = 15000 // below the ephemeral port range: no 4-tuple reused in one run
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
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: server|client ADDR")
		return 2
	}
	var err error
	if args[0] == "server" {
		err = acceptLoop(args[1], connRateServerThreads, func() { fmt.Println("ready") })
	} else {
		var n int64
		var d time.Duration
		n, d, err = connectLoop(args[1], connRateClientThreads, connRateMax, connRateBound)
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
// or the time bound; each connection is reset on close (SO_LINGER 0) so no
// TIME_WAIT state piles up, and a connect gives up after a second.
func connectLoop(addr string, threads int, max int64, bound time.Duration) (int64, time.Duration, error) {
	sa, err := sockaddr4(addr)
	if err != nil {
		return 0, 0, err
	}
	var n, failed atomic.Int64
	var firstErr atomic.Value
	linger := &syscall.Linger{Onoff: 1, Linger: 0}
	timeout := syscall.NsecToTimeval(time.Second.Nanoseconds())
	start := time.Now()
	deadline := start.Add(bound)
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for n.Load() < max && time.Now().Before(deadline) && failed.Load() <= 1000 {
				fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
				if err == nil {
					if err = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &timeout); err == nil {
						err = syscall.Connect(fd, sa)
					}
					if err == nil {
						err = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, linger)
					}
					syscall.Close(fd)
				}
				if err != nil {
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
func connectFrom(b *testing.B, nsPath, addr string) (int64, time.Duration) {
	b.Helper()
	out, err := connRateCmd(nsPath, "client", addr).Output()
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
