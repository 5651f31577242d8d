package netdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	vpcSysctls = []sysctl{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
		{"net.ipv4.ip_forward", "1"},
		// Strict reverse-path filtering: an interface can only send from the
		// address routed to its own link.
		{"net.ipv4.conf.all.rp_filter", "1"},
		{"net.ipv4.conf.default.rp_filter", "1"},
		// Reverse-path checks use the packet mark: replies to a Hyperplane
		// ENI's connections carry its mark (restored from conntrack), so a
		// reply from a NAT gateway validates against the ENI's subnet table.
		{"net.ipv4.conf.all.src_valid_mark", "1"},
		// Every interface link answers ARP for the rest of the subnet (the
		// router routes it); the gateways are local addresses on lo.
		{"net.ipv4.conf.default.proxy_arp", "1"},
		{"net.ipv4.conf.all.send_redirects", "0"},
		{"net.ipv4.conf.default.send_redirects", "0"},
	}
	instSysctls = []sysctl{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
	}
	natSysctls = []sysctl{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.send_redirects", "0"},
		{"net.ipv4.conf.default.send_redirects", "0"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	}
)

func proxyDelay(link string) []sysctl {
	return []sysctl{{"net.ipv4.neigh." + link + ".proxy_delay", "0"}}
}

// VPCs converges the VPC routers of one platform prefix: a router
// namespace per VPC, a namespace and veth per network interface, policy
// routing per subnet, an internet-gateway link into the service router and
// an nft table per router. Methods are safe for concurrent use.
//
// The first Apply (and any Apply after a failure in a VPC) reads the
// kernel and repairs it in place: namespaces that records own are kept, so
// processes in them keep their connectivity; everything with the prefix no
// record owns is removed. Later Applies change only what differs from the
// last applied spec.
type VPCs struct {
	r      *Router
	prefix string
	log    *slog.Logger

	mu     sync.Mutex
	rts    map[string]*vpcRouter
	igw    map[string]netip.Addr // VPC id → its internet gateway address (service CIDR)
	ready  map[string]string     // interface id → namespace path, once built
	swept  bool
	closed bool

	hpAddrs map[string]netip.Addr // VPC id → its router's hyperplane link address
	hpIPAM  *ipam

	// amu guards the attach state; it is taken after r.kmu and v.mu, and
	// held by Apply only around a VPC's nft transaction.
	amu      sync.Mutex
	hp       map[string]*hpState // VPC id → attachable hyperplane link
	hpTables map[string]int      // VPC id → service router table
	att      map[netip.Addr]attachment
}

type vpcRouter struct {
	id      string
	name    string
	path    string
	ns      netns.NsHandle
	h       *netlink.Handle
	nft     *nft.Conn
	applied *VPCSpec // nil: reconcile fully next time
	last    *VPCSpec // the spec last asked for (applied or not)
	table   nft.VPCTable
}

// interfaces are the router's interfaces as last asked for.
func (rt *vpcRouter) interfaces() []IfaceSpec {
	if rt.last != nil {
		return rt.last.Interfaces
	}
	if rt.applied != nil {
		return rt.applied.Interfaces
	}
	return nil
}

// NewVPCs returns the VPC datapath of router r (which must be set up before
// Apply: internet gateways are links into its namespace).
func NewVPCs(r *Router) *VPCs {
	return &VPCs{
		r: r, prefix: r.cfg.Prefix, log: r.log.With("component", "vpc-datapath"),
		rts: map[string]*vpcRouter{}, igw: map[string]netip.Addr{}, ready: map[string]string{},
		hpAddrs: map[string]netip.Addr{}, hpIPAM: newIPAM(hpLinkNet),
		hp: map[string]*hpState{}, hpTables: map[string]int{}, att: map[netip.Addr]attachment{},
	}
}

// InterfaceNetns returns the namespace path of a built interface.
func (v *VPCs) InterfaceNetns(eniID string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.ready[eniID]
	return p, ok
}

// RouterNetns is the path of a VPC's router namespace.
func (v *VPCs) RouterNetns(vpcID string) string {
	return filepath.Join(netnsRunDir, VPCNetnsName(v.prefix, vpcID))
}

// IGWBlockedPackets reads a VPC router's igw_blocked counter.
func (v *VPCs) IGWBlockedPackets(vpcID string) (uint64, error) {
	return v.counter(vpcID, nft.CounterIGWBlocked)
}

// SGDroppedPackets reads a VPC router's sg_dropped counter.
func (v *VPCs) SGDroppedPackets(vpcID string) (uint64, error) {
	return v.counter(vpcID, nft.CounterSGDropped)
}

func (v *VPCs) counter(vpcID, name string) (uint64, error) {
	v.mu.Lock()
	rt := v.rts[vpcID]
	v.mu.Unlock()
	if rt == nil {
		return 0, fmt.Errorf("netdev: no router for %s", vpcID)
	}
	return rt.nft.CounterPackets(v.prefix, name)
}

// Apply converges every VPC router to specs (all VPCs of all accounts).
// Errors of one VPC do not stop the others; they are joined.
func (v *VPCs) Apply(ctx context.Context, specs []VPCSpec) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return ErrClosed
	}
	v.r.kmu.RLock()
	defer v.r.kmu.RUnlock()
	if v.r.svcH == nil {
		return ErrNotSetup
	}
	var errs []error
	want := map[string]bool{}
	for _, s := range specs {
		want[s.ID] = true
	}
	for id, rt := range v.rts {
		if !want[id] {
			errs = append(errs, v.teardown(rt, false))
			delete(v.rts, id)
		}
	}
	full := !v.swept
	for _, s := range specs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		rt := v.rts[s.ID]
		if rt == nil || rt.applied == nil {
			full = true
		}
		if err := v.apply(s); err != nil {
			errs = append(errs, fmt.Errorf("vpc %s: %w", s.ID, err))
		}
	}
	if full {
		if err := v.sweep(specs, nil); err != nil {
			errs = append(errs, err)
		} else {
			v.swept = true
		}
	}
	return errors.Join(errs...)
}

// apply converges one VPC: fully when its router is new or was left
// unknown by an error, else by the difference to the last applied spec.
func (v *VPCs) apply(s VPCSpec) error {
	rt := v.rts[s.ID]
	if rt == nil {
		var created bool
		var err error
		rt, created, err = v.openRouter(s.ID)
		if err != nil {
			return err
		}
		v.rts[s.ID] = rt
		rt.last = &s
		if err := v.full(rt, s); err != nil {
			if created { // setup rolls back
				err = errors.Join(err, v.teardown(rt, false))
				delete(v.rts, s.ID)
			}
			return err
		}
		return nil
	}
	rt.last = &s
	if rt.applied == nil {
		if !sameNsAsPath(rt.ns, rt.path) {
			if err := v.reopen(rt); err != nil {
				return err
			}
		}
		return v.full(rt, s)
	}
	if err := v.delta(rt, *rt.applied, s); err != nil {
		rt.applied = nil
		return err
	}
	return nil
}

func (v *VPCs) openRouter(id string) (*vpcRouter, bool, error) {
	name := VPCNetnsName(v.prefix, id)
	path := filepath.Join(netnsRunDir, name)
	created := false
	if !isNetnsMount(path) {
		if err := deleteNamedNetns(name); err != nil {
			return nil, false, err
		}
		if err := createNamedNetns(name, vpcSysctls); err != nil {
			return nil, false, err
		}
		created = true
	} else if err := inNetns(path, func() error { return writeSysctls(vpcSysctls) }); err != nil {
		return nil, false, err
	}
	rt := &vpcRouter{id: id, name: name, path: path, ns: netns.None()}
	fail := func(err error) (*vpcRouter, bool, error) {
		rt.close()
		if created {
			_ = deleteNamedNetns(name)
		}
		return nil, false, err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fail(fmt.Errorf("open %s: %w", path, err))
	}
	rt.ns = ns
	if rt.h, err = netlink.NewHandleAt(ns); err != nil {
		return fail(fmt.Errorf("netlink in %s: %w", path, err))
	}
	if rt.nft, err = nft.OpenVPC(path); err != nil {
		return fail(err)
	}
	return rt, created, nil
}

// reopen replaces the handles of a router whose namespace was removed or
// replaced behind our back (they still point at the old one, which lives
// as long as they do): the namespace is opened again, or created, and the
// VPC's attaches wait until a full reconcile has rebuilt it. Closing the
// old handles frees the old namespace, and with it every veth into it.
func (v *VPCs) reopen(rt *vpcRouter) error {
	v.amu.Lock()
	delete(v.hp, rt.id)
	v.amu.Unlock()
	rt.close()
	nrt, _, err := v.openRouter(rt.id)
	if err != nil {
		return err
	}
	rt.ns, rt.h, rt.nft = nrt.ns, nrt.h, nrt.nft
	rt.applied, rt.table = nil, nft.VPCTable{}
	return nil
}

func (rt *vpcRouter) close() {
	if rt.nft != nil {
		_ = rt.nft.Close()
		rt.nft = nil
	}
	if rt.h != nil {
		rt.h.Close()
		rt.h = nil
	}
	if rt.ns.IsOpen() {
		rt.ns.Close()
		rt.ns = netns.None()
	}
}

// full reads the kernel and repairs the VPC router in place.
func (v *VPCs) full(rt *vpcRouter, s VPCSpec) error {
	rt.applied = nil
	steps := []struct {
		name string
		fn   func() error
	}{
		{"router", func() error { return v.ensureBase(rt, s) }},
		{"internet gateway", func() error { return v.ensureIGW(rt, s) }},
		{"hyperplane link", func() error { return v.ensureHP(rt, s) }},
		{"interfaces", func() error { return v.ensureIfaces(rt, s) }},
		{"tunnel", func() error { return v.ensureTunnel(rt, s) }},
		{"routing", func() error { return v.ensureRouting(rt, s) }},
		{"nft", func() error { return v.applyNft(rt, s, nil) }},
	}
	var errs []error
	for _, st := range steps {
		if err := st.fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	v.applied(rt, s)
	return nil
}

// applied records s as converged: its interfaces are ready (links, routes
// and security groups all in place).
func (v *VPCs) applied(rt *vpcRouter, s VPCSpec) {
	if rt.applied != nil {
		for _, l := range rt.applied.Lambdas {
			delete(v.ready, l.ID)
		}
	}
	cp := s
	rt.applied = &cp
	for _, i := range s.Interfaces {
		v.ready[i.ID] = InstanceNetnsPath(v.prefix, i.ID)
	}
	for _, l := range s.Lambdas {
		v.ready[l.ID] = rt.path // a Hyperplane ENI lives in its router
	}
}

// applyNft converges the router's table: from old (incrementally) or, with
// old nil, by rebuilding it. The attach state is held meanwhile, so a
// rebuild carries every live env2eni element; then the VPC's ENIs become
// attachable.
func (v *VPCs) applyNft(rt *vpcRouter, s VPCSpec, old *nft.VPCTable) error {
	t := nftTable(v.prefix, s)
	v.amu.Lock()
	defer v.amu.Unlock()
	t.Attached = v.attachedOf(s.ID)
	var err error
	if old != nil {
		if err = rt.nft.UpdateVPC(*old, t); err != nil {
			v.log.Warn("incremental nft update failed; replacing the table", "vpc", s.ID, "err", err)
			err = rt.nft.ReplaceVPC(t)
		}
	} else {
		err = rt.nft.ReplaceVPC(t)
	}
	if err != nil {
		delete(v.hp, s.ID)
		return err
	}
	t.Attached = nil
	rt.table = t
	v.publishHP(rt, s)
	return nil
}

// delta applies the difference between old (applied) and s.
func (v *VPCs) delta(rt *vpcRouter, old, s VPCSpec) error {
	if old.CIDR != s.CIDR || !sameGateways(old.Subnets, s.Subnets) || !slices.Equal(lambdaAddrs(old), lambdaAddrs(s)) {
		if err := v.ensureBase(rt, s); err != nil {
			return err
		}
	}
	if old.InternetGateway != s.InternetGateway {
		if err := v.ensureIGW(rt, s); err != nil {
			return err
		}
	}
	if (len(old.Lambdas) == 0) != (len(s.Lambdas) == 0) {
		if err := v.ensureHP(rt, s); err != nil {
			return err
		}
	}
	d := DiffIfaces(old.Interfaces, s.Interfaces)
	// nft first for removals (map elements go before the links), after for
	// additions: one UpdateVPC covers both since chains are keyed by name.
	for _, i := range d.Del {
		if err := v.destroyIface(rt, i.ID); err != nil {
			return err
		}
	}
	for _, i := range d.Add {
		if err := v.createIface(rt, s, i); err != nil {
			return err
		}
	}
	tunnel := !old.Tunnel.Equal(s.Tunnel)
	if tunnel {
		if err := v.ensureTunnel(rt, s); err != nil {
			return err
		}
	}
	if tunnel || routingChanged(old, s) {
		if err := v.ensureRouting(rt, s); err != nil {
			return err
		}
	}
	if err := v.applyNft(rt, s, &rt.table); err != nil {
		return err
	}
	v.applied(rt, s)
	return nil
}

func lambdaAddrs(s VPCSpec) []netip.Addr {
	out := make([]netip.Addr, 0, len(s.Lambdas))
	for _, l := range s.Lambdas {
		if l.Local() {
			out = append(out, l.Addr)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func sameGateways(a, b []SubnetSpec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Gateway != b[i].Gateway || a[i].CIDR != b[i].CIDR {
			return false
		}
	}
	return true
}

// ensureBase converges the router's lo addresses (every subnet gateway as
// a /32, so the router answers ARP for it on every interface link) and the
// unreachable route for the VPC CIDR (addresses without an interface go
// nowhere, never to a default route).
func (v *VPCs) ensureBase(rt *vpcRouter, s VPCSpec) error {
	lo, err := rt.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := ensureUp(rt.h, lo); err != nil {
		return err
	}
	want := map[netip.Prefix]bool{netip.MustParsePrefix("127.0.0.1/8"): true}
	for _, sub := range s.Subnets {
		want[host32(sub.Gateway)] = true
	}
	for _, l := range s.Lambdas {
		if l.Local() {
			want[host32(l.Addr)] = true // Hyperplane ENI: the router's own address
		}
	}
	addrs, err := rt.h.AddrList(lo, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	have := map[netip.Prefix]bool{}
	var errs []error
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		have[p] = true
		if !want[p] {
			if err := rt.h.AddrDel(lo, &a); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove %v from lo: %w", p, err))
			}
		}
	}
	for p := range want {
		if !have[p] {
			if err := rt.h.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("add gateway %v: %w", p, err))
			}
		}
	}
	if s.CIDR.IsValid() {
		if err := rt.h.RouteReplace(&netlink.Route{Dst: ipNet(s.CIDR.Masked()), Type: unix.RTN_UNREACHABLE}); err != nil {
			errs = append(errs, fmt.Errorf("unreachable %v: %w", s.CIDR, err))
		}
	}
	return errors.Join(errs...)
}

// ensureIGW converges the internet gateway: a veth "igw" in the router
// paired with v<hex> in the service router, an address from the top of the
// service CIDR on igw (the service router then treats the VPC's NATed
// traffic like an environment's: egress blocks, counter, masquerade out of
// the uplink) and 169.254.0.1 on the service side. Without an internet
// gateway the link is removed.
func (v *VPCs) ensureIGW(rt *vpcRouter, s VPCSpec) error {
	svcLinkName := svcVPCLink(s.ID)
	if !s.InternetGateway {
		err := errors.Join(delLink(rt.h, IGWLinkName), delLink(v.r.svcH, svcLinkName))
		v.releaseIGW(s.ID)
		return err
	}
	rl, sl, err := v.ensureSvcVeth(rt, svcLinkName, IGWLinkName, "internet gateway")
	if err != nil {
		return err
	}
	addr, err := v.igwAddr(rt, s.ID, rl)
	if err != nil {
		return err
	}
	if err := ensureAddr(rt.h, rl, host32(addr), true); err != nil {
		return err
	}
	if err := ensureAddr(v.r.svcH, sl, host32(GatewayAddr), true); err != nil {
		return err
	}
	if err := errors.Join(ensureUp(rt.h, rl), ensureUp(v.r.svcH, sl)); err != nil {
		return err
	}
	return ensureRoute(v.r.svcH, &netlink.Route{LinkIndex: sl.Attrs().Index, Dst: ipNet(host32(addr)), Scope: netlink.SCOPE_LINK})
}

// igwAddr returns the VPC's internet gateway address: the one it has (kept
// across restarts) if it is still free, else a new one from the top of the
// service CIDR (environments are allocated from the bottom).
func (v *VPCs) igwAddr(rt *vpcRouter, vpcID string, rl netlink.Link) (netip.Addr, error) {
	if a, ok := v.igw[vpcID]; ok {
		return a, nil
	}
	addrs, err := rt.h.AddrList(rl, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && v.r.ipam.reserve(ip.Unmap()) {
			v.igw[vpcID] = ip.Unmap()
			return ip.Unmap(), nil
		}
	}
	a := v.r.ipam.last
	for i := 0; i < v.r.ipam.size(); i++ {
		if v.r.ipam.reserve(a) {
			v.igw[vpcID] = a
			return a, nil
		}
		a = a.Prev()
	}
	return netip.Addr{}, fmt.Errorf("%w: no address for an internet gateway", ErrPoolExhausted)
}

func (v *VPCs) releaseIGW(vpcID string) {
	if a, ok := v.igw[vpcID]; ok {
		v.r.ipam.free(a)
		delete(v.igw, vpcID)
	}
}

// ensureIfaces repairs every interface of s in place and removes interface
// links the spec does not have.
func (v *VPCs) ensureIfaces(rt *vpcRouter, s VPCSpec) error {
	links, err := rt.h.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	byName := map[string]netlink.Link{}
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	wantLinks := map[string]bool{}
	var errs []error
	for _, i := range s.Interfaces {
		name := ifaceLink(i.ID)
		wantLinks[name] = true
		if l := byName[name]; l != nil {
			err := v.repairIface(rt, s, i, l)
			if err == nil {
				continue
			}
			v.log.Info("rebuilding interface", "eni", i.ID, "reason", err)
		}
		// The namespace stays: a process may live in it (an instance, a
		// NAT gateway); createIface plumbs a new veth into it.
		delete(v.ready, i.ID)
		if err := delLink(rt.h, name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := v.createIface(rt, s, i); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", i.ID, err))
		}
	}
	for name, l := range byName {
		if ifaceLinkRE.MatchString(name) && !wantLinks[name] {
			v.log.Info("removing stale interface link", "vpc", s.ID, "link", name)
			if err := rt.h.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete stale link %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// repairIface converges an existing interface without recreating it; an
// error means it must be rebuilt.
func (v *VPCs) repairIface(rt *vpcRouter, s VPCSpec, i IfaceSpec, rl netlink.Link) error {
	path := InstanceNetnsPath(v.prefix, i.ID)
	if !isNetnsMount(path) {
		return errors.New("namespace missing")
	}
	ins, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ins.Close()
	ih, err := netlink.NewHandleAt(ins)
	if err != nil {
		return err
	}
	defer ih.Close()
	el, err := linkByName(ih, InstanceIfName)
	if err != nil {
		return err
	}
	if !paired(rl, el) {
		return errors.New("veth not paired")
	}
	if i.MAC != nil && el.Attrs().HardwareAddr.String() != i.MAC.String() {
		return errors.New("MAC differs")
	}
	if i.NAT {
		if err := inNetns(path, func() error { return writeSysctls(natSysctls) }); err != nil {
			return err
		}
	}
	if err := inNetns(rt.path, func() error { return writeSysctls(proxyDelay(rl.Attrs().Name)) }); err != nil {
		return err
	}
	if err := ensureAddr(ih, el, netip.PrefixFrom(i.Addr, i.Subnet.Bits()), true); err != nil {
		return err
	}
	if err := errors.Join(ensureUp(ih, el), ensureUp(rt.h, rl)); err != nil {
		return err
	}
	if err := ensureRoute(ih, &netlink.Route{LinkIndex: el.Attrs().Index, Gw: i.Gateway.AsSlice(), Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0"))}); err != nil {
		return err
	}
	if err := ensureRoute(rt.h, &netlink.Route{LinkIndex: rl.Attrs().Index, Dst: ipNet(host32(i.Addr)), Scope: netlink.SCOPE_LINK}); err != nil {
		return err
	}
	if i.NAT {
		return v.ensureNATTable(path, i, s.CIDR)
	}
	return nil
}

func (v *VPCs) ensureNATTable(path string, i IfaceSpec, vpcCIDR netip.Prefix) error {
	c, err := nft.Open(path)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Apply(nft.NATTable(v.prefix, InstanceIfName, i.Addr, vpcCIDR))
	return err
}

// createIface builds an interface: its namespace with eth0 (the ENI's MAC
// and address, default route via the subnet gateway) and the router's end
// with a /32 route. A namespace that exists already is adopted (a process
// in it, such as an instance that outlived a server restart, keeps
// running and is reachable again): its old eth0 is replaced. On failure
// the link is removed, and the namespace if it was created now.
func (v *VPCs) createIface(rt *vpcRouter, s VPCSpec, i IfaceSpec) (err error) {
	if !i.Addr.Is4() || !i.Gateway.Is4() || !i.Subnet.IsValid() {
		return fmt.Errorf("interface %s: address %v, gateway %v or subnet %v is not IPv4", i.ID, i.Addr, i.Gateway, i.Subnet)
	}
	name := InstanceNetnsName(v.prefix, i.ID)
	path := filepath.Join(netnsRunDir, name)
	link := ifaceLink(i.ID)
	adopt := isNetnsMount(path)
	defer func() {
		if err != nil {
			err = errors.Join(err, delLink(rt.h, link))
			if !adopt {
				err = errors.Join(err, deleteNamedNetns(name))
			}
		}
	}()
	sc := instSysctls
	if i.NAT {
		sc = natSysctls
	}
	var ins netns.NsHandle
	defer func() {
		if ins.IsOpen() {
			ins.Close()
		}
	}()
	plumb := func() error {
		var err error
		if ins, err = netns.Get(); err != nil {
			return err
		}
		if adopt { // what a lost veth left: an eth0 without a peer, or none
			if err := writeSysctls(sc); err != nil {
				return err
			}
			if lo, err := netlink.LinkByName("lo"); err == nil {
				_ = netlink.LinkSetUp(lo)
			}
			if old, err := netlink.LinkByName(InstanceIfName); err == nil {
				if err := netlink.LinkDel(old); err != nil && !isNotFound(err) {
					return fmt.Errorf("delete stale %s: %w", InstanceIfName, err)
				}
			}
		}
		veth := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: InstanceIfName, HardwareAddr: i.MAC},
			PeerName:  link, PeerNamespace: netlink.NsFd(rt.ns),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s <-> %s: %w", InstanceIfName, link, err)
		}
		// The router answers ARP for the subnet by proxy: at once, not after
		// a random delay of up to proxy_delay (0.8s). Neighbour sysctls are
		// per device outside the initial namespace, so write it there.
		if err := netns.Set(rt.ns); err != nil {
			return err
		}
		if err := writeSysctls(proxyDelay(link)); err != nil {
			return err
		}
		if err := netns.Set(ins); err != nil {
			return err
		}
		el, err := netlink.LinkByName(InstanceIfName)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(el, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(i.Addr, i.Subnet.Bits()))}); err != nil {
			return fmt.Errorf("address %v: %w", i.Addr, err)
		}
		if err := netlink.LinkSetUp(el); err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: el.Attrs().Index, Gw: i.Gateway.AsSlice()})
	}
	if adopt {
		v.log.Info("adopting the existing namespace of an interface", "eni", i.ID, "netns", name)
		err = inNetns(path, plumb)
	} else {
		err = newNetnsDo(name, sc, plumb)
	}
	if errors.Is(err, errNetnsExists) { // appeared meanwhile: adopt it
		return v.createIface(rt, s, i)
	}
	if err != nil {
		return err
	}
	rl, err := rt.h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("router end %s: %w", link, err)
	}
	if err := rt.h.LinkSetUp(rl); err != nil {
		return err
	}
	if err := rt.h.RouteReplace(&netlink.Route{LinkIndex: rl.Attrs().Index, Dst: ipNet(host32(i.Addr)), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route %v: %w", i.Addr, err)
	}
	if i.NAT {
		if err := v.ensureNATTable(path, i, s.CIDR); err != nil {
			return err
		}
	}
	return nil
}

// destroyIface removes an interface's link and namespace; gone is success.
func (v *VPCs) destroyIface(rt *vpcRouter, id string) error {
	delete(v.ready, id)
	return errors.Join(delLink(rt.h, ifaceLink(id)), deleteNamedNetns(InstanceNetnsName(v.prefix, id)))
}

// ensureRouting converges per-subnet policy routing: a rule "from <subnet>
// lookup <table>" after the main table (which holds the VPC's /32s and the
// unreachable VPC CIDR) and the table's default route (internet gateway,
// NAT gateway or blackhole). Subnets without a default route get no rule.
func (v *VPCs) ensureRouting(rt *vpcRouter, s VPCSpec) error {
	tables := subnetTables(s.Subnets)
	type ruleKey struct {
		src   netip.Prefix
		mark  uint32 // Hyperplane ENI traffic: fwmark → its subnet's table
		table int
	}
	want := map[ruleKey]bool{}
	wantTables := map[int]bool{}
	var errs []error
	var igwIdx int
	if s.InternetGateway {
		if l, err := linkByName(rt.h, IGWLinkName); err == nil && l != nil {
			igwIdx = l.Attrs().Index
		}
	}
	natLink := map[netip.Addr]string{}
	for _, i := range s.Interfaces {
		if i.NAT {
			natLink[i.Addr] = ifaceLink(i.ID)
		}
	}
	zero := ipNet(netip.MustParsePrefix("0.0.0.0/0"))
	for _, sub := range s.Subnets {
		if sub.Default == RouteNone || sub.Default == "" {
			continue
		}
		t := tables[sub.ID]
		want[ruleKey{src: sub.CIDR.Masked(), table: t}] = true
		for _, l := range s.Lambdas {
			if l.SubnetID == sub.ID && l.Local() {
				want[ruleKey{mark: LambdaMark(l.Addr), table: t}] = true
			}
		}
		wantTables[t] = true
		r := &netlink.Route{Table: t, Dst: zero, Type: unix.RTN_BLACKHOLE}
		switch sub.Default {
		case RouteIGW:
			if igwIdx != 0 {
				r = &netlink.Route{Table: t, Dst: zero, LinkIndex: igwIdx, Gw: GatewayAddr.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
			}
		case RouteNAT:
			if sub.NATVia.IsValid() {
				if l, err := linkByName(rt.h, TunnelLinkName); err == nil && l != nil {
					r = &netlink.Route{Table: t, Dst: zero, LinkIndex: l.Attrs().Index, Gw: sub.NATVia.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
				}
			} else if name, ok := natLink[sub.NAT]; ok {
				if l, err := linkByName(rt.h, name); err == nil && l != nil {
					r = &netlink.Route{Table: t, Dst: zero, LinkIndex: l.Attrs().Index, Gw: sub.NAT.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
				}
			}
		}
		if err := rt.h.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("default route of %s (table %d): %w", sub.ID, t, err))
		}
	}
	rules, err := rt.h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list rules: %w", err))...)
	}
	errs = append(errs, v.ensureRemoteRouting(rt, s, rules))
	have := map[ruleKey]bool{}
	for _, r := range rules {
		if r.Priority != vpcRulePref {
			continue
		}
		k := ruleKey{mark: r.Mark, table: r.Table}
		if r.Src != nil {
			if p, ok := netip.AddrFromSlice(r.Src.IP); ok {
				ones, _ := r.Src.Mask.Size()
				k.src = netip.PrefixFrom(p.Unmap(), ones)
			}
		}
		if r.Mask != nil && *r.Mask != 0xffffffff {
			k.mark = 0 // not ours
		}
		if want[k] && !have[k] {
			have[k] = true
			continue
		}
		if err := rt.h.RuleDel(&r); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete rule from %v table %d: %w", r.Src, r.Table, err))
		}
		if !wantTables[r.Table] {
			errs = append(errs, flushTable(rt.h, r.Table))
		}
	}
	for k := range want {
		if have[k] {
			continue
		}
		r := netlink.NewRule()
		r.Family = unix.AF_INET
		if k.src.IsValid() {
			r.Src = ipNet(k.src)
		}
		r.Mark = k.mark
		r.Table = k.table
		r.Priority = vpcRulePref
		if err := rt.h.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("rule from %v table %d: %w", k.src, k.table, err))
		}
	}
	return errors.Join(errs...)
}

func flushTable(h *netlink.Handle, table int) error {
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil && !isNotFound(err) && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// teardown removes a VPC router, its interfaces' namespaces and its
// internet gateway; already gone is success. With keepAttached the
// namespaces of interfaces attached to an instance stay (and Router.Close
// is told to leave them): the instance's process keeps its namespace, and
// the next start adopts it.
func (v *VPCs) teardown(rt *vpcRouter, keepAttached bool) error {
	var errs []error
	for _, i := range rt.interfaces() {
		name := InstanceNetnsName(v.prefix, i.ID)
		delete(v.ready, i.ID)
		if keepAttached && i.Attached {
			v.log.Info("leaving an instance's namespace in place", "eni", i.ID, "netns", name)
			v.r.keepOnClose(name)
			continue
		}
		errs = append(errs, deleteNamedNetns(name))
	}
	for _, sp := range []*VPCSpec{rt.applied, rt.last} {
		if sp != nil {
			for _, l := range sp.Lambdas {
				delete(v.ready, l.ID)
			}
		}
	}
	if v.r.svcH != nil {
		errs = append(errs, delLink(v.r.svcH, svcVPCLink(rt.id)), delLink(v.r.svcH, hpSvcLink(rt.id)))
	}
	v.releaseIGW(rt.id)
	v.releaseHP(rt.id)
	rt.close()
	if isNetnsMount(rt.path) {
		errs = append(errs, deleteAllLinks(rt.path))
	}
	errs = append(errs, deleteNamedNetns(rt.name))
	return errors.Join(errs...)
}

// sweep removes what has the prefix but no record: VPC router and
// interface namespaces and service-router VPC links. Namespaces in keep
// stay.
func (v *VPCs) sweep(specs []VPCSpec, keep map[string]bool) error {
	wantNs := map[string]bool{}
	wantSvc := map[string]bool{}
	for _, s := range specs {
		wantNs[VPCNetnsName(v.prefix, s.ID)] = true
		if s.InternetGateway {
			wantSvc[svcVPCLink(s.ID)] = true
		}
		for _, i := range s.Interfaces {
			wantNs[InstanceNetnsName(v.prefix, i.ID)] = true
		}
	}
	names, err := prefixedNetns(v.prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		rest := strings.TrimPrefix(n, v.prefix+"-")
		if (strings.HasPrefix(rest, "v") || strings.HasPrefix(rest, "i")) && !wantNs[n] && !keep[n] {
			v.log.Info("removing stale namespace", "netns", n)
			path := filepath.Join(netnsRunDir, n)
			if strings.HasPrefix(rest, "v") && isNetnsMount(path) {
				errs = append(errs, deleteAllLinks(path))
			}
			errs = append(errs, deleteNamedNetns(n))
		}
	}
	links, err := v.r.svcH.LinkList()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, l := range links {
		if n := l.Attrs().Name; svcVPCLinkRE.MatchString(n) && !wantSvc[n] {
			v.log.Info("removing stale internet gateway link", "link", n)
			if err := v.r.svcH.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, v.sweepHP(specs))
	return errors.Join(errs...)
}

// Close removes every VPC router and interface namespace this datapath
// manages (the service router is the Router's), except the namespaces of
// interfaces attached to an instance: a process runs in each, and the
// next start adopts it (re-plumbing its veth), so the instance is
// reachable again without being restarted. Already gone is success.
func (v *VPCs) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	v.r.kmu.RLock()
	defer v.r.kmu.RUnlock()
	var errs []error
	keep := map[string]bool{}
	for id, rt := range v.rts {
		for _, i := range rt.interfaces() {
			if i.Attached {
				keep[InstanceNetnsName(v.prefix, i.ID)] = true
			}
		}
		errs = append(errs, v.teardown(rt, true))
		delete(v.rts, id)
	}
	if v.r.svcH != nil {
		errs = append(errs, v.sweep(nil, keep))
	}
	return errors.Join(errs...)
}

// StartIn starts cmd with the calling thread switched into the network
// namespace at nsPath, so the child runs there; the caller's goroutine is
// not affected.
func StartIn(nsPath string, start func() error) error {
	return inNetns(nsPath, start)
}

// Invalidate makes the next Apply read the kernel and repair every VPC
// router in place, and sweep what no record owns (periodic resync).
func (v *VPCs) Invalidate() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, rt := range v.rts {
		rt.applied = nil
	}
	v.swept = false
}

// WaitGone reports an error if link name still exists in the namespace at
// nsPath (tests).
func WaitGone(nsPath, name string) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := linkByName(h, name)
	if err != nil {
		return err
	}
	if l != nil {
		return fmt.Errorf("link %s still exists in %s", name, nsPath)
	}
	return nil
}

// ensureSvcVeth makes sure a veth pair joins the service router (svcName)
// and the VPC router rt (vpcName), replacing a half or mismatched pair. It
// returns the VPC-router end and the service-router end. what names the
// link in errors.
func (v *VPCs) ensureSvcVeth(rt *vpcRouter, svcName, vpcName, what string) (vpcEnd, svcEnd netlink.Link, err error) {
	if vpcEnd, err = linkByName(rt.h, vpcName); err != nil {
		return nil, nil, err
	}
	if svcEnd, err = linkByName(v.r.svcH, svcName); err != nil {
		return nil, nil, err
	}
	if paired(vpcEnd, svcEnd) {
		return vpcEnd, svcEnd, nil
	}
	if err := errors.Join(delLink(rt.h, vpcName), delLink(v.r.svcH, svcName)); err != nil {
		return nil, nil, err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: svcName}, PeerName: vpcName, PeerNamespace: netlink.NsFd(rt.ns)}
	if err := v.r.svcH.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("create %s veth %s <-> %s: %w", what, svcName, vpcName, err)
	}
	if vpcEnd, err = linkByName(rt.h, vpcName); err == nil {
		svcEnd, err = linkByName(v.r.svcH, svcName)
	}
	if err != nil || vpcEnd == nil || svcEnd == nil {
		return nil, nil, fmt.Errorf("%s veth vanished after creation: %v", what, err)
	}
	return vpcEnd, svcEnd, nil
}
