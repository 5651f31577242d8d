package netdev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ErrDatapathBroken is returned by CheckInterface when the kernel lacks
// part of an interface's datapath; the VPC is then reconciled fully by
// the next Apply.
var ErrDatapathBroken = errors.New("netdev: the datapath differs from what was applied")

// Verify compares every converged VPC router with the spec last applied
// to it, reading the kernel only: the router namespace, its internet
// gateway and hyperplane veths, the gateway and Hyperplane ENI addresses,
// every interface's namespace, veth and address, NAT gateways' tables, the
// router's nft table (chains, base chain rules, every set and map) and the
// service router's rules of attached environments. A router that differs
// is reported (Config.OnRepair, log) and marked so that the next Apply
// reconciles it fully, with the same code that converges it at start-up.
// It returns how many routers were marked.
func (v *VPCs) Verify(ctx context.Context) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return 0, ErrClosed
	}
	v.r.kmu.RLock()
	defer v.r.kmu.RUnlock()
	if v.r.svcH == nil {
		return 0, ErrNotSetup
	}
	svcLinks, err := linkMap(v.r.svcH)
	if err != nil {
		return 0, fmt.Errorf("netdev: list service router links: %w", err)
	}
	noRule, err := v.missingEnvRules()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for id, rt := range v.rts {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		if rt.applied == nil {
			continue // Apply reconciles it fully anyway
		}
		kind, obj, err := v.verifyRouter(rt, *rt.applied, svcLinks)
		if err != nil {
			errs = append(errs, fmt.Errorf("netdev: verify %s: %w", id, err))
			continue
		}
		if kind == "" && noRule[id].IsValid() {
			kind, obj = RepairENIMap, fmt.Sprintf("service router rule from %v", noRule[id])
		}
		if kind != "" {
			v.r.repaired(kind, id+": "+obj)
			rt.applied = nil
			n++
		}
	}
	return n, errors.Join(errs...)
}

// CheckInterface verifies the datapath of one built interface (a
// Hyperplane ENI or an instance's interface) as Verify does for its whole
// router. When it differs the router is reported and marked for a full
// reconcile, and the error wraps ErrDatapathBroken; an interface not
// built (yet) wraps ErrENINotBuilt.
func (v *VPCs) CheckInterface(eniID string) error {
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
	for id, rt := range v.rts {
		if rt.applied == nil || !hasInterface(*rt.applied, eniID) {
			continue
		}
		svcLinks, err := linkMap(v.r.svcH)
		if err != nil {
			return err
		}
		kind, obj, err := v.verifyRouter(rt, *rt.applied, svcLinks)
		if err != nil {
			return err
		}
		if kind == "" {
			if a, ok := lambdaAddr(*rt.applied, eniID); ok {
				v.amu.Lock()
				st := v.hp[id]
				_, attachable := st.marksHas(a)
				v.amu.Unlock()
				if !attachable {
					kind, obj = RepairENIMap, "ENI "+eniID+" not attachable"
				}
			}
		}
		if kind != "" {
			v.r.repaired(kind, id+": "+obj)
			rt.applied = nil
			return fmt.Errorf("%w: %s: %s %s", ErrDatapathBroken, eniID, kind, obj)
		}
		return nil
	}
	return fmt.Errorf("%w: %s", ErrENINotBuilt, eniID)
}

func (st *hpState) marksHas(a netip.Addr) (uint32, bool) {
	if st == nil {
		return 0, false
	}
	m, ok := st.marks[a]
	return m, ok
}

func hasInterface(s VPCSpec, id string) bool {
	for _, i := range s.Interfaces {
		if i.ID == id {
			return true
		}
	}
	_, ok := lambdaAddr(s, id)
	return ok
}

func lambdaAddr(s VPCSpec, id string) (netip.Addr, bool) {
	for _, l := range s.Lambdas {
		if l.ID == id {
			return l.Addr, true
		}
	}
	return netip.Addr{}, false
}

// Owns reports whether name is a namespace the VPC datapath believes
// exists: a VPC router or an interface's namespace.
func (v *VPCs) Owns(name string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, rt := range v.rts {
		if rt.name == name {
			return true
		}
		for _, i := range rt.interfaces() {
			if InstanceNetnsName(v.prefix, i.ID) == name {
				return true
			}
		}
	}
	return false
}

func linkMap(h *netlink.Handle) (map[string]netlink.Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	out := make(map[string]netlink.Link, len(links))
	for _, l := range links {
		out[l.Attrs().Name] = l
	}
	return out, nil
}

func isUp(l netlink.Link) bool { return l != nil && l.Attrs().Flags&net.FlagUp != 0 }

// missingEnvRules returns, per VPC, an attached environment whose service
// router rule is gone. Caller holds kmu.
func (v *VPCs) missingEnvRules() (map[string]netip.Addr, error) {
	v.amu.Lock()
	defer v.amu.Unlock()
	if len(v.att) == 0 {
		return nil, nil
	}
	rules, err := v.r.svcH.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("netdev: list service router rules: %w", err)
	}
	type key struct {
		env   netip.Addr
		table int
	}
	have := map[key]bool{}
	for _, r := range rules {
		if r.Priority == hpRulePref && r.Src != nil {
			if ip, ok := netip.AddrFromSlice(r.Src.IP); ok {
				have[key{ip.Unmap(), r.Table}] = true
			}
		}
	}
	out := map[string]netip.Addr{}
	for env, a := range v.att {
		if !have[key{env, a.table}] {
			out[a.vpcID] = env
		}
	}
	return out, nil
}

// verifyRouter reads one router's kernel state and returns the first
// difference from s (kind "" if none). Caller holds v.mu and kmu.
func (v *VPCs) verifyRouter(rt *vpcRouter, s VPCSpec, svcLinks map[string]netlink.Link) (RepairKind, string, error) {
	if !sameNsAsPath(rt.ns, rt.path) {
		return RepairVPCNetns, "namespace " + rt.name, nil
	}
	links, err := linkMap(rt.h)
	if err != nil {
		return "", "", fmt.Errorf("list links: %w", err)
	}
	type pair struct {
		want           bool
		vpcEnd, svcEnd string
	}
	for _, p := range []pair{
		{s.InternetGateway, IGWLinkName, svcVPCLink(s.ID)},
		{len(s.Lambdas) > 0, HPLinkName, hpSvcLink(s.ID)},
	} {
		if !p.want {
			continue
		}
		rl, sl := links[p.vpcEnd], svcLinks[p.svcEnd]
		if !paired(rl, sl) || !isUp(rl) || !isUp(sl) {
			return RepairVPCLink, p.vpcEnd + " <-> " + p.svcEnd, nil
		}
	}
	if len(s.Tunnel.Peers) > 0 {
		if l := links[TunnelLinkName]; l == nil || !isUp(l) {
			return RepairVPCLink, TunnelLinkName + " (tunnel)", nil
		}
	}
	if kind, obj, err := v.verifyAddrs(rt, s, links["lo"]); err != nil || kind != "" {
		return kind, obj, err
	}
	for _, i := range s.Interfaces {
		if kind, obj, err := v.verifyIface(rt, s, i, links[ifaceLink(i.ID)]); err != nil || kind != "" {
			return kind, obj, err
		}
	}
	return v.verifyNft(rt, s)
}

// verifyAddrs checks the router's own addresses on lo: every subnet
// gateway and Hyperplane ENI.
func (v *VPCs) verifyAddrs(rt *vpcRouter, s VPCSpec, lo netlink.Link) (RepairKind, string, error) {
	if lo == nil {
		return RepairVPCNetns, "lo", nil
	}
	addrs, err := rt.h.AddrList(lo, netlink.FAMILY_V4)
	if err != nil {
		return "", "", err
	}
	have := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			have[ip.Unmap()] = true
		}
	}
	for _, l := range s.Lambdas {
		if l.Local() && !have[l.Addr] {
			return RepairENIAddress, fmt.Sprintf("ENI %s address %v", l.ID, l.Addr), nil
		}
	}
	for _, sub := range s.Subnets {
		if !have[sub.Gateway] {
			return RepairENIAddress, fmt.Sprintf("subnet %s gateway %v", sub.ID, sub.Gateway), nil
		}
	}
	return "", "", nil
}

// verifyIface checks an interface: its namespace, the veth from the
// router (rl) to its eth0, eth0's address and, for a NAT gateway, its
// table.
func (v *VPCs) verifyIface(rt *vpcRouter, s VPCSpec, i IfaceSpec, rl netlink.Link) (RepairKind, string, error) {
	path := InstanceNetnsPath(v.prefix, i.ID)
	what := "interface " + i.ID
	if !isNetnsMount(path) {
		return RepairInterface, what + " namespace", nil
	}
	if !isUp(rl) {
		return RepairInterface, what + " router link", nil
	}
	ins, err := netns.GetFromPath(path)
	if err != nil {
		return RepairInterface, what + " namespace", nil
	}
	defer ins.Close()
	ih, err := netlink.NewHandleAt(ins)
	if err != nil {
		return "", "", err
	}
	defer ih.Close()
	el, err := linkByName(ih, InstanceIfName)
	if err != nil {
		return "", "", err
	}
	if !paired(rl, el) || !isUp(el) {
		return RepairInterface, what + " veth", nil
	}
	if ok, err := hasAddr(ih, el, netip.PrefixFrom(i.Addr, i.Subnet.Bits()).String()); err != nil {
		return "", "", err
	} else if !ok {
		return RepairInterface, fmt.Sprintf("%s address %v", what, i.Addr), nil
	}
	if i.NAT {
		c, err := nft.Open(path)
		if err != nil {
			return "", "", err
		}
		defer c.Close()
		same, err := c.Check(nft.NATTable(v.prefix, InstanceIfName, i.Addr, s.CIDR))
		if err != nil {
			return "", "", err
		}
		if !same {
			return RepairNAT, "NAT gateway " + i.ID + " table ip " + v.prefix, nil
		}
	}
	return "", "", nil
}

// verifyNft checks the router's table against the one last applied, with
// the attach state as env2eni. A difference in env2eni alone is checked
// again holding the attach lock: an attach may have run in between.
func (v *VPCs) verifyNft(rt *vpcRouter, s VPCSpec) (RepairKind, string, error) {
	check := func(locked bool) (nft.Drift, string, error) {
		v.amu.Lock()
		t := rt.table
		t.Attached = v.attachedOf(s.ID)
		if !locked {
			v.amu.Unlock()
		} else {
			defer v.amu.Unlock()
		}
		return rt.nft.CheckVPC(t)
	}
	d, obj, err := check(false)
	if err == nil && d == nft.DriftENIMaps {
		d, obj, err = check(true)
	}
	if err != nil {
		return "", "", err
	}
	switch d {
	case nft.DriftNone:
		return "", "", nil
	case nft.DriftMembers:
		return RepairSGSet, obj, nil
	case nft.DriftENIMaps:
		return RepairENIMap, obj, nil
	case nft.DriftNAT:
		return RepairNAT, obj, nil
	default:
		return RepairVPCNft, obj, nil
	}
}
