package datapath

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// Several hosts. With Config.Hosts set, this host builds only the VPC
// routers where something of the VPC lives here, and joins them to the
// VPC's routers on other hosts by a VXLAN tunnel (netdev.TunnelSpec)
// whose entries come from the records: which host every interface is
// homed on (vpc.NetworkInterface.Home) and where the live hosts are
// (their underlay addresses and service-CIDR slices).
//
//   - A VPC router is built on host H if an interface, NAT gateway or
//     Hyperplane ENI of the VPC is homed on H, or if the VPC has
//     Hyperplane ENIs at all: a function's environments may run on any
//     live host (placement spills), and an attach at a cold start must
//     find the router built (it adds two map elements, nothing else).
//   - Interfaces and NAT gateways are built only on their home. A
//     Hyperplane ENI's address, SNAT and conntrack live on its home; on
//     the other hosts it is a mark whose traffic is routed into the
//     tunnel to the home (netdev.LambdaSpec.Home).
//   - The tunnel routes each peer's homed addresses (/32s) to it, and,
//     where the VPC has Hyperplane ENIs, the peer's service-CIDR slice
//     (replies to its environments, de-SNATed at the ENI's home).
//
// Security groups hold across hosts: egress is checked at the source's
// router, ingress at the destination's, and member sets are built from
// every interface's record, wherever it is homed.
//
// A host that does not see a majority of the cluster (partitioned: its
// membership lease is void) is fenced: it withdraws the addresses of the
// Hyperplane ENIs homed on it (the majority's leader re-homes them, same
// address) and takes over no interface of a host it no longer sees (the
// majority does that), so a partition never leaves one ENI address live on
// both sides. Once it rejoins, the records say where everything lives.

// Host is a live host as the datapath needs it.
type Host struct {
	ID          string
	Underlay    netip.Addr
	ServiceCIDR netip.Prefix
}

// Hosts is the cluster membership the datapath follows (internal/cluster
// through an adapter). Nil in Config: a single host, exactly as before.
type Hosts interface {
	// Self is this host.
	Self() Host
	// Live is the live hosts, this one included.
	Live() []Host
	// Subscribe signals changes of the live set.
	Subscribe() (<-chan struct{}, func())
	// HomeOf is the live host a key goes to (rendezvous): where the
	// leader will move an interface whose home died.
	HomeOf(key string) string
}

// Quorum is implemented by a Hosts that knows whether this host sees a
// majority of the cluster; one that does not is fenced (View.Fenced).
type Quorum interface {
	Quorate() bool
}

// View is one moment of the membership: this host and the live ones.
// HomeOf places an interface whose recorded home is not alive (dead, or
// none yet): every host computes the same live host the leader will
// record, so the datapath converges as soon as the membership changes,
// without waiting for the leader's writes (which a store that lost its
// leader with the dead host delays by seconds).
//
// Fenced: this host does not see a majority. Its Hyperplane ENIs are
// withdrawn and no interface is placed by HomeOf (see above).
type View struct {
	Self   string
	Live   map[string]Host
	HomeOf func(key string) string
	Fenced bool
}

// ViewOf reads a View from h (nil for nil).
func ViewOf(h Hosts) *View {
	if h == nil {
		return nil
	}
	v := &View{Self: h.Self().ID, Live: map[string]Host{}, HomeOf: h.HomeOf}
	if q, ok := h.(Quorum); ok && !q.Quorate() {
		v.Fenced, v.HomeOf = true, nil
	}
	for _, x := range h.Live() {
		v.Live[x.ID] = x
	}
	self := h.Self()
	v.Live[self.ID] = self
	return v
}

// peerView is what one VPC looks like from this host.
type peerView struct {
	v       *View
	dv      *vpc.DesiredVPC
	lambdas bool
	homes   map[string]string // interface id → home host id
}

func newPeerView(v *View, dv *vpc.DesiredVPC) *peerView {
	p := &peerView{v: v, dv: dv, homes: map[string]string{}}
	for _, di := range dv.Interfaces {
		h := di.Home
		if _, ok := v.Live[h]; (!ok || h == "") && v.HomeOf != nil {
			h = v.HomeOf(di.ID)
		}
		if v.Fenced && di.Type == vpc.InterfaceTypeLambda && h == v.Self {
			h = "" // withdrawn: the majority re-homes it
		}
		p.homes[di.ID] = h
		if di.Type == vpc.InterfaceTypeLambda {
			p.lambdas = true
		}
	}
	return p
}

// builds reports whether host id builds the VPC's router.
func (p *peerView) builds(id string) bool {
	if _, ok := p.v.Live[id]; !ok {
		return false
	}
	if p.lambdas {
		return true
	}
	for _, h := range p.homes {
		if h == id {
			return true
		}
	}
	return false
}

// tunnel is the VPC's tunnel spec on this host.
func (p *peerView) tunnel() netdev.TunnelSpec {
	self := p.v.Live[p.v.Self]
	if p.dv.VNI == 0 || !self.Underlay.IsValid() {
		return netdev.TunnelSpec{}
	}
	ts := netdev.TunnelSpec{VNI: p.dv.VNI, Local: self.Underlay}
	ids := make([]string, 0, len(p.v.Live))
	for id := range p.v.Live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		h := p.v.Live[id]
		if id == p.v.Self || !h.Underlay.IsValid() || h.Underlay == self.Underlay || !p.builds(id) {
			continue
		}
		peer := netdev.TunnelPeer{Underlay: h.Underlay}
		for _, di := range p.dv.Interfaces {
			if p.homes[di.ID] == id && di.Address.Is4() {
				peer.Routes = append(peer.Routes, netip.PrefixFrom(di.Address, 32))
			}
		}
		if p.lambdas && h.ServiceCIDR.IsValid() {
			peer.Routes = append(peer.Routes, h.ServiceCIDR.Masked())
		}
		slices.SortFunc(peer.Routes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		ts.Peers = append(ts.Peers, peer)
	}
	slices.SortFunc(ts.Peers, func(a, b netdev.TunnelPeer) int { return a.Underlay.Compare(b.Underlay) })
	return ts
}

// homeOf returns where an interface lives: here (true, invalid address),
// on a live peer (false, its underlay), or nowhere known (false, invalid).
func (p *peerView) homeOf(id string) (bool, netip.Addr) {
	h := p.homes[id]
	if h == p.v.Self {
		return true, netip.Addr{}
	}
	if x, ok := p.v.Live[h]; ok && h != "" {
		return false, x.Underlay
	}
	return false, netip.Addr{}
}

func (v *View) String() string {
	if v == nil {
		return "single host"
	}
	ids := make([]string, 0, len(v.Live))
	for id := range v.Live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if v.Fenced {
		return v.Self + " of [" + strings.Join(ids, " ") + "], fenced (no majority)"
	}
	return v.Self + " of [" + strings.Join(ids, " ") + "]"
}
