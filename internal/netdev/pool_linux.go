package netdev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/debounce"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Pooled returns how many ready environment namespaces the pool holds and
// its target size.
func (r *Router) Pooled() (n, size int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pool), r.cfg.PoolSize
}

// Take returns a ready environment namespace: one from the pool if there is
// one, otherwise one built now. The caller owns it until Release.
func (r *Router) Take(ctx context.Context) (*EnvNet, error) {
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return nil, ErrClosed
	case !r.isSetup:
		r.mu.Unlock()
		return nil, ErrNotSetup
	}
	if len(r.pool) > 0 {
		e := r.pool[0]
		r.pool = r.pool[1:]
		r.taken[e.Name] = e
		r.mu.Unlock()
		r.poke()
		return e, nil
	}
	r.mu.Unlock()
	r.poke()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, err := r.buildEnv(0)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.kmu.RLock()
		defer r.kmu.RUnlock()
		return nil, errors.Join(ErrClosed, r.destroyEnv(e))
	}
	r.taken[e.Name] = e
	r.mu.Unlock()
	return e, nil
}

// Release destroys an environment's network completely: the veth pair,
// its route, the namespace and its bind mount; its address becomes free.
// Releasing something already gone is success.
func (r *Router) Release(e *EnvNet) error {
	if e == nil {
		return nil
	}
	r.mu.Lock()
	delete(r.taken, e.Name)
	r.mu.Unlock()
	r.kmu.RLock()
	defer r.kmu.RUnlock()
	if err := r.destroyEnv(e); err != nil {
		return fmt.Errorf("netdev: release %s: %w", e.Name, err)
	}
	r.poke()
	return nil
}

// poke wakes the refill goroutine.
func (r *Router) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// BackgroundNice is the scheduling niceness of pool refills: during a
// burst of cold starts, rebuilding the pool only takes CPU the burst
// leaves idle, instead of competing with the starts it is meant to help.
const BackgroundNice = 19

// refill keeps the pool at PoolSize, building one environment at a time.
// Its goroutine keeps its OS thread for good, at BackgroundNice (netlink
// requests run in the sender's thread); a locked thread never clones the Go
// runtime's other threads, and it ends with the goroutine.
func (r *Router) refill(ctx context.Context) {
	defer r.refillW.Done()
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, BackgroundNice); err != nil {
		r.log.Warn("pool refill runs at normal priority", "err", err)
	}
	backoff := 100 * time.Millisecond
	low := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.pool) <= r.cfg.PoolSize/4
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		if !debounce.Wait(r.kick, ctx.Done(), r.cfg.RefillDelay, 10*r.cfg.RefillDelay, low) {
			return
		}
		for ctx.Err() == nil {
			r.mu.Lock()
			need := !r.closed && len(r.pool) < r.cfg.PoolSize
			r.mu.Unlock()
			if !need {
				break
			}
			e, err := r.buildEnv(BackgroundNice)
			if err != nil {
				r.log.Warn("pool refill failed", "err", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 10*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			r.mu.Lock()
			if r.closed {
				r.mu.Unlock()
				r.kmu.RLock()
				_ = r.destroyEnv(e)
				r.kmu.RUnlock()
				return
			}
			r.pool = append(r.pool, e)
			r.mu.Unlock()
		}
	}
}

// buildEnv creates and plumbs a new environment namespace; on failure
// nothing is left behind.
func (r *Router) buildEnv(nice int) (*EnvNet, error) {
	r.kmu.RLock()
	defer r.kmu.RUnlock()
	if r.svcH == nil {
		return nil, ErrNotSetup
	}
	addr, err := r.ipam.alloc()
	if err != nil {
		return nil, err
	}
	for range 100 {
		r.mu.Lock()
		id := r.nextID
		r.nextID++
		r.mu.Unlock()
		name := envName(r.cfg.Prefix, id)
		err = newNetnsDoNice(name, envSysctls, nice, nil)
		if errors.Is(err, errNetnsExists) {
			continue
		}
		if err != nil {
			r.ipam.free(addr)
			return nil, fmt.Errorf("netdev: %w", err)
		}
		e := &EnvNet{Name: name, Path: filepath.Join(netnsRunDir, name), Addr: addr, HostLink: envLinkName(id)}
		if err := r.plumbEnv(e, true); err != nil {
			return nil, fmt.Errorf("netdev: build %s: %w", name, errors.Join(err, r.destroyEnv(e)))
		}
		return e, nil
	}
	r.ipam.free(addr)
	return nil, fmt.Errorf("netdev: no free environment netns name: %w", err)
}

// plumbEnv converges an environment's link: veth HostLink (svc) <-> eth0
// (env, created directly in the env namespace), gateway and env addresses,
// links up, routes on both sides. fresh skips the checks for a namespace
// that was just created. Caller holds kmu.
func (r *Router) plumbEnv(e *EnvNet, fresh bool) error {
	envNs, err := netns.GetFromPath(e.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", e.Path, err)
	}
	defer envNs.Close()
	envH, err := netlink.NewHandleAt(envNs)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", e.Path, err)
	}
	defer envH.Close()

	var svcL, envL netlink.Link
	if !fresh {
		if svcL, err = linkByName(r.svcH, e.HostLink); err == nil {
			envL, err = linkByName(envH, EnvIfName)
		}
		if err != nil {
			return err
		}
		if !paired(svcL, envL) {
			r.log.Info("re-plumbing environment", "netns", e.Name)
			if err := errors.Join(delLink(r.svcH, e.HostLink), delLink(envH, EnvIfName)); err != nil {
				return err
			}
			svcL, envL = nil, nil
		}
	}
	if svcL == nil {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: e.HostLink}, PeerName: EnvIfName, PeerNamespace: netlink.NsFd(envNs)}
		err := r.svcH.LinkAdd(veth)
		if errors.Is(err, unix.EEXIST) { // stale link with our name in svc
			if err = delLink(r.svcH, e.HostLink); err == nil {
				err = r.svcH.LinkAdd(veth)
			}
		}
		if err != nil {
			return fmt.Errorf("create veth %s <-> %s:%s: %w", e.HostLink, e.Name, EnvIfName, err)
		}
		if svcL, err = r.svcH.LinkByName(e.HostLink); err == nil {
			envL, err = envH.LinkByName(EnvIfName)
		}
		if err != nil {
			return fmt.Errorf("find new veth: %w", err)
		}
		fresh = true
	}

	gw := host32(GatewayAddr)
	own := host32(e.Addr)
	gwRoute := &netlink.Route{LinkIndex: envL.Attrs().Index, Dst: ipNet(gw), Scope: netlink.SCOPE_LINK}
	defRoute := &netlink.Route{LinkIndex: envL.Attrs().Index, Gw: net.IP(GatewayAddr.AsSlice()), Scope: netlink.SCOPE_UNIVERSE,
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	svcRoute := &netlink.Route{LinkIndex: svcL.Attrs().Index, Dst: ipNet(own), Scope: netlink.SCOPE_LINK}

	if fresh {
		// New links: no need to read before writing.
		steps := []func() error{
			func() error { return r.svcH.AddrAdd(svcL, &netlink.Addr{IPNet: ipNet(gw)}) },
			func() error { return r.svcH.LinkSetUp(svcL) },
			func() error { return r.svcH.RouteReplace(svcRoute) },
			func() error { return envH.AddrAdd(envL, &netlink.Addr{IPNet: ipNet(own)}) },
			func() error { return envH.LinkSetUp(envL) },
			func() error { return envH.RouteReplace(gwRoute) },
			func() error { return envH.RouteReplace(defRoute) },
		}
		for i, s := range steps {
			if err := s(); err != nil {
				return fmt.Errorf("plumb step %d: %w", i, err)
			}
		}
		return nil
	}
	return errors.Join(
		ensureAddr(r.svcH, svcL, gw, true),
		ensureUp(r.svcH, svcL),
		ensureRoute(r.svcH, svcRoute),
		ensureAddr(envH, envL, own, true),
		ensureUp(envH, envL),
		ensureRoute(envH, gwRoute),
		ensureRoute(envH, defRoute),
	)
}

// destroyEnv removes an environment's kernel state; already gone is
// success. The address is freed only once its link is known to be gone.
// Caller holds kmu (shared or exclusive).
func (r *Router) destroyEnv(e *EnvNet) error {
	var linkErr error
	if r.svcH != nil {
		// Deleting one end deletes both, and the /32 route with them.
		linkErr = delLink(r.svcH, e.HostLink)
	}
	nsErr := deleteNamedNetns(e.Name)
	if linkErr == nil {
		r.ipam.free(e.Addr)
	}
	return errors.Join(linkErr, nsErr)
}
