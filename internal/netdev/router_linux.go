package netdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Errors returned by Router.
var (
	ErrNotSetup = errors.New("netdev: router not set up (call Setup first)")
	ErrClosed   = errors.New("netdev: router closed")
)

// Router is the service router namespace, its uplink and nft rules, and the
// pool of environment namespaces behind it. Methods are safe for concurrent
// use.
type Router struct {
	cfg  Config
	log  *slog.Logger
	ipam *ipam
	// apiAddr is the platform endpoint's address (apiendpoint_linux.go).
	apiAddr netip.Addr

	// kmu orders kernel work: Setup and Close hold it exclusively, building
	// and destroying environments hold it shared.
	kmu   sync.RWMutex
	svcNs netns.NsHandle
	svcH  *netlink.Handle
	nft   *nft.Conn
	// apiNs is the platform endpoint's namespace, held open (ensureAPI);
	// apiMu orders its use.
	apiMu sync.Mutex
	apiNs netns.NsHandle

	mu      sync.Mutex
	pool    []*EnvNet
	taken   map[string]*EnvNet
	nextID  uint64
	isSetup bool
	closed  bool
	allow   []netip.Prefix
	// keep are namespaces Close leaves in place (instance namespaces a
	// process still runs in; see VPCs.Close).
	keep map[string]bool

	// nftMu orders converging the service router's table (Setup, Repair)
	// and replacing its allow-list, so a repair never applies a stale list.
	nftMu sync.Mutex

	kick    chan struct{}
	stop    context.CancelFunc
	refillW sync.WaitGroup
}

// EnvNet is one execution environment's network namespace.
type EnvNet struct {
	Name     string     // netns name, e.g. lp-e12
	Path     string     // /run/netns/lp-e12
	Addr     netip.Addr // the environment's /32 on eth0
	HostLink string     // the service router's end of the veth
}

// NewRouter validates cfg and fills defaults; it changes nothing in the
// kernel.
func NewRouter(cfg Config) (*Router, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ip := newIPAM(c.ServiceCIDR)
	apiAddr := APIAddr
	if c.UplinkNet.Contains(apiAddr) {
		apiAddr = apiAddrAlt
	}
	return &Router{
		cfg:     c,
		log:     c.Logger.With("component", "netdev", "prefix", c.Prefix),
		ipam:    ip,
		apiAddr: apiAddr,
		svcNs:   netns.None(),
		apiNs:   netns.None(),
		taken:   map[string]*EnvNet{},
		allow:   c.EgressAllow,
		kick:    make(chan struct{}, 1),
	}, nil
}

// Config returns the effective configuration (defaults filled).
func (r *Router) Config() Config { return r.cfg }

// SvcNetnsPath is the service router namespace's path.
func (r *Router) SvcNetnsPath() string { return filepath.Join(netnsRunDir, svcName(r.cfg.Prefix)) }

// Ready is how many pre-built environments are waiting in the pool.
func (r *Router) Ready() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pool)
}

// Setup converges the kernel to the router's desired state: service router
// namespace and sysctls, uplink, nft tables (service router and, for a host
// uplink, the host), the plumbing of every environment this router knows,
// and no stale environment namespaces or links with the prefix. It is
// idempotent and starts the pool refill. If Setup created the service
// router and then fails, it removes what it created.
func (r *Router) Setup(ctx context.Context) error { return r.setup(ctx, true) }

// setup is Setup; rollback removes a service router it created when the
// rest fails (at start; a repair keeps what it built and retries).
func (r *Router) setup(ctx context.Context, rollback bool) error {
	r.kmu.Lock()
	defer r.kmu.Unlock()
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	start := time.Now()
	if err := ensureNetnsRunDir(); err != nil {
		return fmt.Errorf("netdev: %w", err)
	}
	created, err := r.ensureSvc()
	if err == nil {
		err = r.setupRest(ctx)
	}
	if err != nil {
		if created && rollback {
			r.closeHandles()
			err = errors.Join(err, Cleanup(r.cfg.Prefix))
		}
		return fmt.Errorf("netdev: setup %s: %w", r.cfg.Prefix, err)
	}
	r.mu.Lock()
	first := !r.isSetup
	r.isSetup = true
	r.mu.Unlock()
	if first && r.cfg.PoolSize > 0 {
		rctx, cancel := context.WithCancel(context.Background())
		r.stop = cancel
		r.refillW.Add(1)
		go r.refill(rctx)
	}
	r.poke()
	r.log.Debug("setup done", "took", time.Since(start), "created_svc", created)
	return nil
}

func (r *Router) closeHandles() {
	if r.nft != nil {
		_ = r.nft.Close()
		r.nft = nil
	}
	if r.svcH != nil {
		r.svcH.Close()
		r.svcH = nil
	}
	if r.svcNs.IsOpen() {
		r.svcNs.Close()
		r.svcNs = netns.None()
	}
	r.apiMu.Lock()
	if r.apiNs.IsOpen() {
		r.apiNs.Close()
		r.apiNs = netns.None()
	}
	r.apiMu.Unlock()
}

// isNetnsMount reports whether path is a bind-mounted network namespace.
func isNetnsMount(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// sameFile reports whether the open namespace fd is the one at path.
func sameNsAsPath(ns netns.NsHandle, path string) bool {
	if !ns.IsOpen() {
		return false
	}
	var a, b unix.Stat_t
	if unix.Fstat(int(ns), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// ensureSvc makes the service router namespace exist with its sysctls and
// opens handles bound to it. created reports whether it was made now.
func (r *Router) ensureSvc() (created bool, err error) {
	path := r.SvcNetnsPath()
	if sameNsAsPath(r.svcNs, path) {
		return false, inNetns(path, func() error { return writeSysctls(svcSysctls) })
	}
	r.closeHandles()
	if !isNetnsMount(path) {
		if err := deleteNamedNetns(svcName(r.cfg.Prefix)); err != nil {
			return false, err
		}
		if err := createNamedNetns(svcName(r.cfg.Prefix), svcSysctls); err != nil {
			return false, err
		}
		created = true
	} else if err := inNetns(path, func() error { return writeSysctls(svcSysctls) }); err != nil {
		return false, err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return created, fmt.Errorf("open %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return created, fmt.Errorf("netlink in %s: %w", path, err)
	}
	nc, err := nft.Open(path)
	if err != nil {
		h.Close()
		ns.Close()
		return created, err
	}
	r.svcNs, r.svcH, r.nft = ns, h, nc
	return created, nil
}

func (r *Router) setupRest(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func() error
	}{
		{"uplink", r.ensureUplink},
		{"host", r.ensureHost},
		{"nft", r.ensureNft},
		{"api endpoint", r.ensureAPI},
		{"environments", r.reconcileEnvs},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func (r *Router) outsidePath() string {
	if r.cfg.UplinkNetns == "" {
		return hostNetnsPath()
	}
	return r.cfg.UplinkNetns
}

// ensureUplink converges the uplink veth: "uplink" in svc paired with
// <prefix>-up in the outside namespace (created there directly), addresses,
// link state and the service router's default route.
func (r *Router) ensureUplink() error {
	outPath := r.outsidePath()
	outNs, err := netns.GetFromPath(outPath)
	if err != nil {
		return fmt.Errorf("open uplink netns %s: %w", outPath, err)
	}
	defer outNs.Close()
	outH, err := netlink.NewHandleAt(outNs)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", outPath, err)
	}
	defer outH.Close()

	outName := hostLinkName(r.cfg.Prefix)
	svcL, err := linkByName(r.svcH, UplinkName)
	if err != nil {
		return err
	}
	outL, err := linkByName(outH, outName)
	if err != nil {
		return err
	}
	if !paired(svcL, outL) {
		if svcL != nil {
			r.log.Info("replacing uplink", "reason", "not paired with "+outName)
		}
		if err := errors.Join(delLink(r.svcH, UplinkName), delLink(outH, outName)); err != nil {
			return err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: UplinkName}, PeerName: outName, PeerNamespace: netlink.NsFd(outNs)}
		if err := r.svcH.LinkAdd(veth); err != nil {
			return fmt.Errorf("create uplink veth %s <-> %s in %s: %w", UplinkName, outName, outPath, err)
		}
		if err := inNetns(outPath, func() error {
			return writeSysctls([]sysctl{{"net.ipv6.conf." + outName + ".disable_ipv6", "1"}})
		}); err != nil {
			r.log.Warn("cannot disable IPv6 on uplink", "link", outName, "err", err)
		}
		if svcL, err = linkByName(r.svcH, UplinkName); err == nil {
			outL, err = linkByName(outH, outName)
		}
		if err != nil || svcL == nil || outL == nil {
			return fmt.Errorf("uplink veth vanished after creation: %v", err)
		}
	}
	svcAddr, outAddr := uplinkAddrs(r.cfg.UplinkNet)
	if err := ensureAddr(r.svcH, svcL, svcAddr, true); err != nil {
		return err
	}
	if err := ensureAddr(outH, outL, outAddr, true); err != nil {
		return err
	}
	if err := errors.Join(ensureUp(r.svcH, svcL), ensureUp(outH, outL)); err != nil {
		return err
	}
	return ensureRoute(r.svcH, &netlink.Route{
		LinkIndex: svcL.Attrs().Index, Gw: outAddr.Addr().AsSlice(), Scope: netlink.SCOPE_UNIVERSE,
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
	})
}

// ensureHost, for an uplink in the host's root namespace, enables IPv4
// forwarding there and converges the host nft table.
func (r *Router) ensureHost() error {
	_, err := r.applyHost()
	return err
}

// applyHost is ensureHost reporting whether the host table had to change.
func (r *Router) applyHost() (changed bool, err error) {
	if r.cfg.UplinkNetns != "" {
		return false, nil
	}
	if err := inNetns(hostNetnsPath(), func() error {
		return writeSysctls([]sysctl{{"net.ipv4.ip_forward", "1"}})
	}); err != nil {
		return false, err
	}
	spec, err := nft.HostTable(nft.HostConfig{Table: hostTableName(r.cfg.Prefix), UplinkNet: r.cfg.UplinkNet, Uplink: hostLinkName(r.cfg.Prefix)})
	if err != nil {
		return false, err
	}
	c, err := nft.Open(hostNetnsPath())
	if err != nil {
		return false, err
	}
	defer c.Close()
	if changed, err = c.Apply(spec); err != nil {
		return false, err
	} else if changed {
		r.log.Info("host nft table converged", "table", spec.Name)
	}
	return changed, nil
}

func (r *Router) svcSpec(allow []netip.Prefix) (nft.TableSpec, error) {
	return nft.SvcTable(nft.SvcConfig{Table: r.cfg.Prefix, ServiceCIDR: r.cfg.ServiceCIDR, Uplink: UplinkName, EgressAllow: allow,
		APIAddr: r.apiAddr, APIPort: APIPort, APILink: apiLinkName})
}

func (r *Router) ensureNft() error {
	_, err := r.applyNft()
	return err
}

// applyNft is ensureNft reporting whether the table had to change.
func (r *Router) applyNft() (bool, error) {
	r.nftMu.Lock()
	defer r.nftMu.Unlock()
	r.mu.Lock()
	allow := r.allow
	r.mu.Unlock()
	spec, err := r.svcSpec(allow)
	if err != nil {
		return false, err
	}
	changed, err := r.nft.Apply(spec)
	if changed && err == nil {
		r.log.Info("service router nft table converged", "table", spec.Name)
	}
	return changed, err
}

// SetEgressAllow replaces the operator allow-list (one nft transaction).
func (r *Router) SetEgressAllow(allow []netip.Prefix) error {
	c := r.cfg
	c.EgressAllow = allow
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	r.kmu.RLock()
	defer r.kmu.RUnlock()
	if r.nft == nil {
		return ErrNotSetup
	}
	r.nftMu.Lock()
	defer r.nftMu.Unlock()
	spec, err := r.svcSpec(c.EgressAllow)
	if err != nil {
		return err
	}
	if _, err := r.nft.Apply(spec); err != nil {
		return err
	}
	r.mu.Lock()
	r.allow = c.EgressAllow
	r.mu.Unlock()
	return nil
}

// EgressBlockedPackets reads the service router's egress_blocked counter:
// packets from environments dropped because their destination is blocked.
func (r *Router) EgressBlockedPackets() (uint64, error) {
	r.kmu.RLock()
	defer r.kmu.RUnlock()
	if r.nft == nil {
		return 0, ErrNotSetup
	}
	return r.nft.CounterPackets(r.cfg.Prefix, nft.CounterEgressBlocked)
}

var envLinkRE = regexp.MustCompile(`^e([0-9]+)$`)

// reconcileEnvs removes environment namespaces and service-router links
// with the prefix that this router does not own, and repairs the plumbing
// of those it does.
func (r *Router) reconcileEnvs() error {
	r.mu.Lock()
	known := map[string]*EnvNet{}
	for _, e := range r.pool {
		known[e.Name] = e
	}
	for _, e := range r.taken {
		known[e.Name] = e
	}
	r.mu.Unlock()
	knownLinks := map[string]bool{}
	for _, e := range known {
		knownLinks[e.HostLink] = true
	}

	var errs []error
	envRE := regexp.MustCompile(`^` + regexp.QuoteMeta(r.cfg.Prefix) + `-e([0-9]+)$`)
	ents, err := os.ReadDir(netnsRunDir)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		m := envRE.FindStringSubmatch(ent.Name())
		if m == nil {
			continue
		}
		id, _ := strconv.ParseUint(m[1], 10, 64)
		r.bumpID(id)
		if known[ent.Name()] == nil {
			r.log.Info("removing stale environment netns", "netns", ent.Name())
			errs = append(errs, deleteNamedNetns(ent.Name()))
		}
	}
	links, err := r.svcH.LinkList()
	if err != nil {
		return fmt.Errorf("list service router links: %w", err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		if m := envLinkRE.FindStringSubmatch(name); m != nil && !knownLinks[name] {
			r.log.Info("removing stale environment link", "link", name)
			if err := r.svcH.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete stale link %s: %w", name, err))
			}
		}
	}
	for _, e := range known {
		if !isNetnsMount(e.Path) {
			errs = append(errs, r.dropGoneEnv(e))
			continue
		}
		if err := r.plumbEnv(e, false); err != nil {
			errs = append(errs, fmt.Errorf("repair %s: %w", e.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Router) bumpID(seen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seen >= r.nextID {
		r.nextID = seen + 1
	}
}

// Close stops the pool refill and removes everything with the router's
// prefix: environments (pooled and taken), the service router, the uplink
// and the host nft table. IPv4 forwarding in the host is left on.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	envs := append([]*EnvNet{}, r.pool...)
	for _, e := range r.taken {
		envs = append(envs, e)
	}
	r.pool, r.taken = nil, map[string]*EnvNet{}
	r.mu.Unlock()
	if r.stop != nil {
		r.stop()
	}
	r.refillW.Wait()

	r.kmu.Lock()
	defer r.kmu.Unlock()
	var errs []error
	for _, e := range envs {
		errs = append(errs, r.destroyEnv(e))
	}
	if r.svcH != nil {
		// Deleting our end removes the peer in the outside namespace now,
		// not whenever the namespace is finally freed.
		errs = append(errs, delLink(r.svcH, UplinkName))
	}
	r.closeHandles()
	r.mu.Lock()
	keep := r.keep
	r.mu.Unlock()
	errs = append(errs, cleanup(r.cfg.Prefix, keep))
	return errors.Join(errs...)
}

// keepOnClose makes Close leave namespace name in place.
func (r *Router) keepOnClose(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keep == nil {
		r.keep = map[string]bool{}
	}
	r.keep[name] = true
}
