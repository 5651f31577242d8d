package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VPC tunnels. The routers of one VPC on several hosts are joined by a
// VXLAN device "vx" in each router namespace, written from records the
// way flannel's VXLAN backend does it (no multicast, no learning). The
// device carries the packet mark's low 16 bits (VXLAN GBP): a Hyperplane
// ENI's mark crosses to its home with the environment's packets.
//
//	host h1 (underlay 198.18.0.1)              host h2 (underlay 198.18.0.2)
//	router <p1>-v<vpc>                          router <p2>-v<vpc>
//	vx  vni N  mac 0a:4c:c6:12:00:01            vx  vni N  mac 0a:4c:c6:12:00:02
//	  route 10.0.1.20/32 via 198.18.0.2           route 10.0.1.4/32 via 198.18.0.1
//	        dev vx onlink                               dev vx onlink
//	  neigh 198.18.0.2 lladdr 0a:4c:c6:12:00:02   neigh 198.18.0.1 lladdr 0a:4c:c6:12:00:01
//	  fdb 0a:4c:c6:12:00:02 dst 198.18.0.2        fdb 0a:4c:c6:12:00:01 dst 198.18.0.1
//
// The device is created by a netlink handle of the underlay namespace (the
// host's own, where the underlay address lives) directly into the router
// namespace: it keeps its UDP socket in the underlay namespace. The inner
// next hop of a peer is its underlay address (only ever an onlink gateway
// on vx, never routed inside the router), and a VTEP's MAC is derived from
// its underlay address (TunnelMAC), so every host computes every entry
// from the peers' underlay addresses alone.
const (
	// TunnelLinkName is the VXLAN device in a VPC router.
	TunnelLinkName = "vx"
	// TunnelPort is the VXLAN UDP port.
	TunnelPort = 4789
	// tunnelOverhead is what VXLAN over IPv4 adds to a frame.
	tunnelOverhead = 50
)

// TunnelSpec is the desired VXLAN side of one VPC router: its VNI, this
// host's underlay address and the other hosts where the VPC lives. No
// peers: no device.
type TunnelSpec struct {
	VNI   uint32
	Local netip.Addr
	// MTU of the underlay (default 1500); the device gets 50 less.
	UnderlayMTU int
	Peers       []TunnelPeer // sorted by Underlay
}

// Equal reports whether two specs are the same.
func (s TunnelSpec) Equal(o TunnelSpec) bool {
	return s.VNI == o.VNI && s.Local == o.Local && s.UnderlayMTU == o.UnderlayMTU &&
		slices.EqualFunc(s.Peers, o.Peers, func(a, b TunnelPeer) bool {
			return a.Underlay == b.Underlay && slices.Equal(a.Routes, b.Routes)
		})
}

// TunnelPeer is another host's router of the VPC: its underlay address
// and what is routed to it (addresses homed there: interfaces, Hyperplane
// ENIs, its environments' service-network slice).
type TunnelPeer struct {
	Underlay netip.Addr
	Routes   []netip.Prefix
}

// TunnelMAC is the VTEP MAC of a host: locally administered, unicast,
// from its underlay address.
func TunnelMAC(underlay netip.Addr) net.HardwareAddr {
	b := underlay.As4()
	return net.HardwareAddr{0x0a, 0x4c, b[0], b[1], b[2], b[3]}
}

// Validate names what is wrong with a spec.
func (s TunnelSpec) Validate() error {
	if len(s.Peers) == 0 {
		return nil
	}
	if s.VNI == 0 || s.VNI >= 1<<24 {
		return fmt.Errorf("netdev: tunnel VNI %d: want 1..16777215", s.VNI)
	}
	if !s.Local.Is4() {
		return fmt.Errorf("netdev: tunnel local underlay address %v: want an IPv4 address", s.Local)
	}
	for _, p := range s.Peers {
		if !p.Underlay.Is4() || p.Underlay == s.Local {
			return fmt.Errorf("netdev: tunnel peer underlay address %v: want an IPv4 address other than the local %v", p.Underlay, s.Local)
		}
		for _, r := range p.Routes {
			if !r.Addr().Is4() {
				return fmt.Errorf("netdev: tunnel route %v to %v: want an IPv4 prefix", r, p.Underlay)
			}
		}
	}
	return nil
}

// SetTunnel converges the tunnel of the router in routerNetns (a path)
// to s; underlayNetns is the path of the namespace holding the underlay
// address ("" is this process's). Idempotent: what already matches is
// left alone, entries no peer needs are removed, a device of another VNI
// or local address is replaced.
func SetTunnel(underlayNetns, routerNetns string, s TunnelSpec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	rns, err := netns.GetFromPath(routerNetns)
	if err != nil {
		return fmt.Errorf("netdev: open router netns %s: %w", routerNetns, err)
	}
	defer rns.Close()
	rh, err := netlink.NewHandleAt(rns)
	if err != nil {
		return fmt.Errorf("netdev: netlink in %s: %w", routerNetns, err)
	}
	defer rh.Close()
	if len(s.Peers) == 0 {
		return delLink(rh, TunnelLinkName)
	}
	if underlayNetns == "" {
		underlayNetns = hostNetnsPath()
	}
	return setTunnel(underlayNetns, routerNetns, rh, rns, s)
}

func setTunnel(underlayNetns, routerPath string, rh *netlink.Handle, rns netns.NsHandle, s TunnelSpec) error {
	mtu := s.UnderlayMTU
	if mtu == 0 {
		mtu = 1500
	}
	mac := TunnelMAC(s.Local)
	l, err := rh.LinkByName(TunnelLinkName)
	if err == nil {
		vx, ok := l.(*netlink.Vxlan)
		if !ok || vx.VxlanId != int(s.VNI) || !vx.SrcAddr.Equal(s.Local.AsSlice()) || vx.Port != TunnelPort || vx.Learning || !vx.GBP {
			if err := delLink(rh, TunnelLinkName); err != nil {
				return err
			}
			l = nil
		}
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		return fmt.Errorf("netdev: read %s: %w", TunnelLinkName, err)
	} else {
		l = nil
	}
	if l == nil {
		uns, err := netns.GetFromPath(underlayNetns)
		if err != nil {
			return fmt.Errorf("netdev: open underlay netns %s: %w", underlayNetns, err)
		}
		uh, err := netlink.NewHandleAt(uns)
		uns.Close()
		if err != nil {
			return fmt.Errorf("netdev: netlink in %s: %w", underlayNetns, err)
		}
		vx := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: TunnelLinkName, MTU: mtu - tunnelOverhead, HardwareAddr: mac,
				Namespace: netlink.NsFd(int(rns))},
			VxlanId: int(s.VNI), SrcAddr: s.Local.AsSlice(), Port: TunnelPort, Learning: false, GBP: true,
		}
		err = uh.LinkAdd(vx)
		uh.Close()
		if err != nil {
			return fmt.Errorf("netdev: create %s (vni %d) from %s: %w", TunnelLinkName, s.VNI, underlayNetns, err)
		}
		if l, err = rh.LinkByName(TunnelLinkName); err != nil {
			return fmt.Errorf("netdev: read %s: %w", TunnelLinkName, err)
		}
	}
	var errs []error
	if !slices.Equal(l.Attrs().HardwareAddr, mac) {
		errs = append(errs, rh.LinkSetHardwareAddr(l, mac))
	}
	if l.Attrs().MTU != mtu-tunnelOverhead {
		errs = append(errs, rh.LinkSetMTU(l, mtu-tunnelOverhead))
	}
	// Loose reverse-path filtering on the tunnel: a reply SNATed back at
	// an ENI's home may come from an address routed to a link here.
	errs = append(errs, inNetns(routerPath, func() error {
		return writeSysctls([]sysctl{{"net.ipv4.conf." + TunnelLinkName + ".rp_filter", "2"}})
	}), ensureUp(rh, l))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netdev: configure %s: %w", TunnelLinkName, err)
	}
	idx := l.Attrs().Index
	return errors.Join(tunnelNeighs(rh, idx, s), tunnelFDB(rh, idx, s), tunnelRoutes(rh, idx, s))
}

func tunnelNeighs(h *netlink.Handle, idx int, s TunnelSpec) error {
	have, err := h.NeighList(idx, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("netdev: list neighbours of %s: %w", TunnelLinkName, err)
	}
	want := map[netip.Addr]bool{}
	var errs []error
	for _, p := range s.Peers {
		want[p.Underlay] = true
		mac := TunnelMAC(p.Underlay)
		ok := false
		for _, n := range have {
			if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == p.Underlay && slices.Equal(n.HardwareAddr, mac) && n.State&netlink.NUD_PERMANENT != 0 {
				ok = true
			}
		}
		if !ok {
			errs = append(errs, h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
				IP: p.Underlay.AsSlice(), HardwareAddr: mac}))
		}
	}
	for _, n := range have {
		if a, _ := netip.AddrFromSlice(n.IP); !want[a.Unmap()] {
			errs = append(errs, ignoreMissing(h.NeighDel(&n)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netdev: tunnel neighbours: %w", err)
	}
	return nil
}

func tunnelFDB(h *netlink.Handle, idx int, s TunnelSpec) error {
	have, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("netdev: list fdb of %s: %w", TunnelLinkName, err)
	}
	want := map[string]netip.Addr{}
	for _, p := range s.Peers {
		want[TunnelMAC(p.Underlay).String()] = p.Underlay
	}
	var errs []error
	for _, p := range s.Peers {
		mac := TunnelMAC(p.Underlay)
		ok := false
		for _, n := range have {
			if a, _ := netip.AddrFromSlice(n.IP); slices.Equal(n.HardwareAddr, mac) && a.Unmap() == p.Underlay {
				ok = true
			}
		}
		if !ok {
			errs = append(errs, h.NeighAppend(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
				Flags: netlink.NTF_SELF, IP: p.Underlay.AsSlice(), HardwareAddr: mac}))
		}
	}
	for _, n := range have {
		a, _ := netip.AddrFromSlice(n.IP)
		if w, ok := want[n.HardwareAddr.String()]; ok && w == a.Unmap() {
			continue
		}
		n.Family, n.Flags = unix.AF_BRIDGE, netlink.NTF_SELF
		errs = append(errs, ignoreMissing(h.NeighDel(&n)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netdev: tunnel fdb: %w", err)
	}
	return nil
}

func tunnelRoutes(h *netlink.Handle, idx int, s TunnelSpec) error {
	have, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("netdev: list routes of %s: %w", TunnelLinkName, err)
	}
	type rk struct {
		dst netip.Prefix
		gw  netip.Addr
	}
	want := map[rk]bool{}
	var errs []error
	for _, p := range s.Peers {
		for _, d := range p.Routes {
			want[rk{d.Masked(), p.Underlay}] = true
		}
	}
	got := map[rk]bool{}
	for _, r := range have {
		if r.Dst == nil || r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		d, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		gw, _ := netip.AddrFromSlice(r.Gw)
		k := rk{netip.PrefixFrom(d.Unmap(), ones), gw.Unmap()}
		if want[k] && !got[k] {
			got[k] = true
			continue
		}
		errs = append(errs, ignoreMissing(h.RouteDel(&r)))
	}
	for k := range want {
		if got[k] {
			continue
		}
		errs = append(errs, h.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: ipNet(k.dst), Gw: k.gw.AsSlice(),
			Flags: int(netlink.FLAG_ONLINK), Scope: netlink.SCOPE_UNIVERSE}))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netdev: tunnel routes: %w", err)
	}
	return nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// Hyperplane ENIs homed on other hosts: an environment here attached to
// one is marked as usual (env2eni), and its traffic, arriving on the
// hyperplane link, is routed by "iif hp fwmark <mark>" (before main, so
// even a destination in the VPC goes to the home first, where it is
// SNATed) to a table per home: default via the home's underlay address
// into the tunnel. Replies come back through the tunnel and go out of the
// hyperplane link by the main table (the service CIDR's route).
const (
	remoteRulePref  = 32000
	remoteTableBase = 1 << 24
)

// remoteTable is the table of the routes to one home host.
func remoteTable(home netip.Addr) int {
	b := home.As4()
	return remoteTableBase | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
}

func (v *VPCs) ensureTunnel(rt *vpcRouter, s VPCSpec) error {
	if len(s.Tunnel.Peers) == 0 {
		return delLink(rt.h, TunnelLinkName)
	}
	if err := s.Tunnel.Validate(); err != nil {
		return err
	}
	under := v.r.cfg.UnderlayNetns
	if under == "" {
		under = hostNetnsPath()
	}
	return setTunnel(under, rt.path, rt.h, rt.ns, s.Tunnel)
}

// ensureRemoteRouting converges the rules and tables of remote ENIs.
func (v *VPCs) ensureRemoteRouting(rt *vpcRouter, s VPCSpec, rules []netlink.Rule) error {
	type rk struct {
		mark  uint32
		table int
	}
	want := map[rk]bool{}
	homes := map[int]netip.Addr{}
	for _, l := range s.Lambdas {
		if !l.Local() {
			t := remoteTable(l.Home)
			want[rk{LambdaMark(l.Addr), t}] = true
			homes[t] = l.Home
		}
	}
	var errs []error
	have := map[rk]bool{}
	for _, r := range rules {
		if r.Priority != remoteRulePref {
			continue
		}
		k := rk{r.Mark, r.Table}
		if want[k] && !have[k] && r.IifName == HPLinkName {
			have[k] = true
			continue
		}
		if err := rt.h.RuleDel(&r); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete rule fwmark %#x table %d: %w", r.Mark, r.Table, err))
		}
		if _, ok := homes[r.Table]; !ok {
			errs = append(errs, flushTable(rt.h, r.Table))
		}
	}
	var tun netlink.Link
	if len(homes) > 0 {
		l, err := linkByName(rt.h, TunnelLinkName)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		tun = l
	}
	zero := ipNet(netip.MustParsePrefix("0.0.0.0/0"))
	for t, home := range homes {
		r := &netlink.Route{Table: t, Dst: zero, Type: unix.RTN_BLACKHOLE}
		if tun != nil { // else: no peer is alive; dropped until the ENI is re-homed
			r = &netlink.Route{Table: t, Dst: zero, LinkIndex: tun.Attrs().Index, Gw: home.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
		}
		if err := rt.h.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("default route of table %d via %v: %w", t, home, err))
		}
	}
	for k := range want {
		if have[k] {
			continue
		}
		r := netlink.NewRule()
		r.Family = unix.AF_INET
		r.Mark = k.mark
		r.Table = k.table
		r.IifName = HPLinkName
		r.Priority = remoteRulePref
		if err := rt.h.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("rule iif %s fwmark %#x table %d: %w", HPLinkName, k.mark, k.table, err))
		}
	}
	return errors.Join(errs...)
}
