package netdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a dedicated OS thread switched into the network
// namespace at path, then switches the thread back. If the thread cannot be
// switched back it stays locked and is discarded by the Go runtime when the
// goroutine exits, so no other goroutine ever runs in the wrong namespace.
func inNetns(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	return onLockedThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter netns %s: %w", path, err)
		}
		return fn()
	})
}

// onLockedThread runs fn on a fresh locked OS thread and restores the
// thread's network namespace afterwards (fn may switch or unshare it).
func onLockedThread(fn func() error) error { return onLockedThreadNice(0, fn) }

// onLockedThreadNice is onLockedThread at scheduling niceness nice (kernel
// work done by a background refill only takes CPU nothing else wants). The
// thread's niceness is restored before it is unlocked; if it cannot be,
// the thread stays locked and dies with the goroutine.
func onLockedThreadNice(nice int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if nice != 0 {
			if err := unix.Setpriority(unix.PRIO_PROCESS, 0, nice); err != nil {
				errc <- fmt.Errorf("set thread niceness %d: %w", nice, err)
				return // locked: the thread ends with this goroutine
			}
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		if nice != 0 {
			if err := unix.Setpriority(unix.PRIO_PROCESS, 0, 0); err != nil {
				errc <- ferr
				return // locked: the thread ends with this goroutine
			}
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

type sysctl struct{ key, value string }

// writeSysctls writes net.* sysctls in the calling thread's network
// namespace (/proc/sys/net is resolved per opening thread). A missing ipv6
// tree (IPv6 disabled at boot) is not an error.
func writeSysctls(sc []sysctl) error {
	var errs []error
	for _, s := range sc {
		p := "/proc/sys/" + strings.ReplaceAll(s.key, ".", "/")
		cur, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(s.key, "net.ipv6.") {
			continue
		}
		if err == nil && string(bytes.TrimSpace(cur)) == s.value {
			continue
		}
		if err := os.WriteFile(p, []byte(s.value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("sysctl %s=%s: %w", s.key, s.value, err))
		}
	}
	return errors.Join(errs...)
}

var (
	envSysctls = []sysctl{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
	}
	svcSysctls = []sysctl{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
		{"net.ipv4.ip_forward", "1"},
		// Strict reverse-path filtering: an environment can only send from
		// the address routed to its own link (no spoofing other envs).
		{"net.ipv4.conf.all.rp_filter", "1"},
		{"net.ipv4.conf.default.rp_filter", "1"},
	}
)

// ensureNetnsRunDir makes /run/netns a shared mount point, as iproute2
// does, so namespace bind mounts propagate to other mount namespaces.
func ensureNetnsRunDir() error {
	if err := os.MkdirAll(netnsRunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsRunDir, err)
	}
	err := unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err = unix.Mount(netnsRunDir, netnsRunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", netnsRunDir, err)
	}
	return nil
}

// errNetnsExists is returned by createNamedNetns when the name is taken.
var errNetnsExists = errors.New("netns already exists")

// createNamedNetns creates network namespace name, bind-mounted at
// /run/netns/name, writes sysctls inside it and sets lo up. On failure
// nothing is left behind.
func createNamedNetns(name string, sc []sysctl) error {
	return newNetnsDoNice(name, sc, 0, nil)
}

// newNetnsDo creates network namespace name (bind-mounted under
// /run/netns), writes sysctls, sets lo up and runs fn inside it, all on
// one locked thread. On failure nothing is left behind.
func newNetnsDo(name string, sc []sysctl, fn func() error) error {
	return newNetnsDoNice(name, sc, 0, fn)
}

// newNetnsDoNice is newNetnsDo with the thread at scheduling niceness nice
// (a background pool refill); fn may be nil.
func newNetnsDoNice(name string, sc []sysctl, nice int, fn func() error) error {
	path := filepath.Join(netnsRunDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s", errNetnsExists, path)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	err = onLockedThreadNice(nice, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare netns: %w", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount netns at %s: %w", path, err)
		}
		if err := writeSysctls(sc); err != nil {
			return err
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		if fn == nil {
			return nil
		}
		return fn()
	})
	if err != nil {
		_ = deleteNamedNetns(name)
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	return nil
}

// deleteNamedNetns unmounts and removes /run/netns/name; already gone is
// success. The namespace itself disappears when nothing else holds it.
func deleteNamedNetns(name string) error {
	path := filepath.Join(netnsRunDir, name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// ListenIn opens a listener inside the network namespace at nsPath (for
// example the Runtime API on 127.0.0.1:9001 in an environment). The socket
// stays in that namespace; the caller's thread is not switched.
func ListenIn(nsPath, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(nsPath, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netdev: listen %s %s in %s: %w", network, addr, nsPath, err)
	}
	return l, nil
}

// ListenPacketIn is ListenIn for packet sockets (udp).
func ListenPacketIn(nsPath, network, addr string) (net.PacketConn, error) {
	var l net.PacketConn
	err := inNetns(nsPath, func() error {
		var err error
		l, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netdev: listen %s %s in %s: %w", network, addr, nsPath, err)
	}
	return l, nil
}

// DialIn connects from inside the network namespace at nsPath.
func DialIn(nsPath, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(nsPath, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netdev: dial %s %s from %s: %w", network, addr, nsPath, err)
	}
	return c, nil
}

// mountNetns bind-mounts the open namespace ns at path (made if missing):
// a namespace still held open gets its name back.
func mountNetns(ns netns.NsHandle, path string) error {
	if err := ensureNetnsRunDir(); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", int(ns)), path, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("bind-mount netns at %s: %w", path, err)
	}
	return nil
}
