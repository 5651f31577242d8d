package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"regexp"

	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Hyperplane: environments reach a VPC through its router.
//
//	env netns               service router <p>-svc                     VPC router <p>-v<vpc>
//	eth0 100.64.0.7/32 ──  e7 ... ip rule from 100.64.0.7 lookup T    hp 169.254.64.x/32
//	                        table T: default via 169.254.64.x dev h<vpc14> ── veth ── (route 100.64/16 via 169.254.0.1)
//	                        h<vpc14> 169.254.0.1/32                    nft: env2eni 100.64.0.7 → mark(ENI)
//	                                                                   fwmark(ENI) → the ENI's subnet table
//	                                                                   snat to eni_snat[mark]; eni_egress[mark]
//	                                                                   ENI addresses on lo (ARP, local)
//
// The hyperplane link exists while the VPC has at least one lambda ENI; it
// is built by the reconciler (Apply), never by an attach. An attach is two
// elements over lasting netlink connections: the service router's rule and
// the VPC router's env2eni element.
const (
	// HPLinkName is the hyperplane link's end in a VPC router.
	HPLinkName = "hp"
	// hpRulePref is the priority of the service router's per-environment
	// rules (before main: an attached environment's traffic all goes to
	// its VPC).
	hpRulePref   = 100
	hpTableBase  = 1 << 17
	hpTableSpan  = 1 << 20
	hpLinkPrefix = nft.HPLinkPrefix
)

// hpLinkNet is where the VPC routers' ends of hyperplane links take a /32
// (the service router's end is GatewayAddr, as on every environment link).
var hpLinkNet = netip.MustParsePrefix("169.254.64.0/18")

var hpSvcLinkRE = regexp.MustCompile(`^` + hpLinkPrefix + `[0-9a-f]{14}$`)

func hpSvcLink(vpcID string) string { return hpLinkPrefix + short14(vpcID) }

// LambdaMark is the packet mark of a Hyperplane ENI's traffic in its VPC
// router: its address as a number (unique within the VPC, never 0).
func LambdaMark(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// Errors of Attach.
var (
	ErrNoVPCLink    = errors.New("netdev: the VPC has no hyperplane link (no lambda ENI is built in it yet)")
	ErrENINotBuilt  = errors.New("netdev: the ENI is not built in its VPC router yet")
	ErrNotServiceIP = errors.New("netdev: not an environment address of the service network")
)

// hpState is a VPC's hyperplane link as attaches see it. Guarded by
// VPCs.amu.
type hpState struct {
	rt    *vpcRouter
	table int                   // service router table: default via the link
	link  int                   // service router link index
	marks map[netip.Addr]uint32 // ENI address → mark, for built ENIs
}

type attachment struct {
	vpcID string
	mark  uint32
	table int
}

// hpTable picks the service router table of a VPC's link: stable for a
// VPC ID (hash, then the next number no other VPC uses). Caller holds amu.
func (v *VPCs) hpTable(vpcID string) int {
	if s, ok := v.hp[vpcID]; ok {
		return s.table
	}
	if t, ok := v.hpTables[vpcID]; ok { // kept while the link is rebuilt
		return t
	}
	h := fnv.New32a()
	h.Write([]byte(vpcID))
	t := hpTableBase + int(h.Sum32()%hpTableSpan)
	used := map[int]bool{}
	for _, s := range v.hp {
		used[s.table] = true
	}
	for _, t2 := range v.hpTables {
		used[t2] = true
	}
	for used[t] {
		t++
	}
	return t
}

// ensureHP converges a VPC's hyperplane link: a veth h<vpc14> (service
// router) <-> hp (VPC router) while the VPC has lambda ENIs, addresses,
// both sides' routes and the service router's per-VPC table. Without
// lambda ENIs the link (and with it every route through it) is removed.
func (v *VPCs) ensureHP(rt *vpcRouter, s VPCSpec) error {
	svcLink := hpSvcLink(s.ID)
	if len(s.Lambdas) == 0 {
		err := errors.Join(delLink(rt.h, HPLinkName), delLink(v.r.svcH, svcLink))
		v.releaseHP(s.ID)
		return err
	}
	rl, sl, err := v.ensureSvcVeth(rt, svcLink, HPLinkName, "hyperplane")
	if err != nil {
		return err
	}
	addr, err := v.hpAddr(rt, s.ID, rl)
	if err != nil {
		return err
	}
	if err := errors.Join(ensureAddr(rt.h, rl, host32(addr), true), ensureAddr(v.r.svcH, sl, host32(GatewayAddr), true)); err != nil {
		return err
	}
	if err := errors.Join(ensureUp(rt.h, rl), ensureUp(v.r.svcH, sl)); err != nil {
		return err
	}
	v.amu.Lock()
	table := v.hpTable(s.ID)
	v.hpTables[s.ID] = table
	v.amu.Unlock()
	zero := ipNet(netip.MustParsePrefix("0.0.0.0/0"))
	return errors.Join(
		ensureRoute(v.r.svcH, &netlink.Route{LinkIndex: sl.Attrs().Index, Dst: ipNet(host32(addr)), Scope: netlink.SCOPE_LINK}),
		v.r.svcH.RouteReplace(&netlink.Route{Table: table, Dst: zero, LinkIndex: sl.Attrs().Index, Gw: addr.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}),
		ensureRoute(rt.h, &netlink.Route{LinkIndex: rl.Attrs().Index, Dst: ipNet(host32(GatewayAddr)), Scope: netlink.SCOPE_LINK}),
		ensureRoute(rt.h, &netlink.Route{LinkIndex: rl.Attrs().Index, Dst: ipNet(v.r.cfg.ServiceCIDR), Gw: GatewayAddr.AsSlice(), Scope: netlink.SCOPE_UNIVERSE}),
		v.ensureEnvRules(s.ID),
	)
}

// ensureEnvRules adds the service router's rule of every environment
// attached in the VPC that lacks it (a rebuilt service router has none).
func (v *VPCs) ensureEnvRules(vpcID string) error {
	v.amu.Lock()
	defer v.amu.Unlock()
	var errs []error
	for env, a := range v.att {
		if a.vpcID != vpcID {
			continue
		}
		if err := v.r.svcH.RuleAdd(envRule(env, a.table)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("rule from %v lookup %d: %w", env, a.table, err))
		}
	}
	return errors.Join(errs...)
}

// hpAddr returns the VPC router's address on its hyperplane link: the one
// it has (kept across restarts) if still free, else the next free one.
func (v *VPCs) hpAddr(rt *vpcRouter, vpcID string, rl netlink.Link) (netip.Addr, error) {
	if a, ok := v.hpAddrs[vpcID]; ok {
		return a, nil
	}
	addrs, err := rt.h.AddrList(rl, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && !v.r.cfg.UplinkNet.Contains(ip.Unmap()) && v.hpIPAM.reserve(ip.Unmap()) {
			v.hpAddrs[vpcID] = ip.Unmap()
			return ip.Unmap(), nil
		}
	}
	for range v.hpIPAM.size() {
		a, err := v.hpIPAM.alloc()
		if err != nil {
			return netip.Addr{}, err
		}
		if v.r.cfg.UplinkNet.Contains(a) || a == GatewayAddr {
			continue // stays reserved: never handed out
		}
		v.hpAddrs[vpcID] = a
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%w: no hyperplane link address left in %v", ErrPoolExhausted, hpLinkNet)
}

// releaseHP forgets a VPC's hyperplane link: its address, its table, its
// attachments (their service router rules are deleted).
func (v *VPCs) releaseHP(vpcID string) {
	if a, ok := v.hpAddrs[vpcID]; ok {
		v.hpIPAM.free(a)
		delete(v.hpAddrs, vpcID)
	}
	v.amu.Lock()
	defer v.amu.Unlock()
	delete(v.hp, vpcID)
	delete(v.hpTables, vpcID)
	for env, a := range v.att {
		if a.vpcID == vpcID {
			_ = v.delSvcRule(env, a.table)
			delete(v.att, env)
		}
	}
}

// publishHP makes a converged VPC's ENIs attachable and drops attachments
// whose ENI is gone. Caller holds amu.
func (v *VPCs) publishHP(rt *vpcRouter, s VPCSpec) {
	if len(s.Lambdas) == 0 {
		delete(v.hp, s.ID)
		return
	}
	sl, err := linkByName(v.r.svcH, hpSvcLink(s.ID))
	if err != nil || sl == nil {
		delete(v.hp, s.ID)
		return
	}
	st := &hpState{rt: rt, table: v.hpTables[s.ID], link: sl.Attrs().Index, marks: map[netip.Addr]uint32{}}
	for _, l := range s.Lambdas {
		st.marks[l.Addr] = LambdaMark(l.Addr)
	}
	v.hp[s.ID] = st
	live := map[uint32]bool{}
	for _, m := range st.marks {
		live[m] = true
	}
	for env, a := range v.att {
		if a.vpcID == s.ID && !live[a.mark] {
			_ = v.delSvcRule(env, a.table)
			delete(v.att, env)
		}
	}
}

// attachedOf is the attach state of one VPC, for a table rebuild. Caller
// holds amu.
func (v *VPCs) attachedOf(vpcID string) []nft.VPCAttach {
	var out []nft.VPCAttach
	for env, a := range v.att {
		if a.vpcID == vpcID {
			out = append(out, nft.VPCAttach{Env: env, Mark: a.mark})
		}
	}
	return out
}

func envRule(env netip.Addr, table int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = unix.AF_INET
	r.Src = ipNet(host32(env))
	r.Table = table
	r.Priority = hpRulePref
	return r
}

func (v *VPCs) delSvcRule(env netip.Addr, table int) error {
	if v.r.svcH == nil {
		return nil
	}
	if err := v.r.svcH.RuleDel(envRule(env, table)); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete rule from %v: %w", env, err)
	}
	return nil
}

// Attach steers environment env to the Hyperplane ENI eniAddr of VPC
// vpcID: the VPC router's env2eni element (env → the ENI's mark), then the
// service router's rule "from env lookup <the VPC's table>". Nothing is
// created but these two; both go over lasting netlink connections.
// Attaching an attached environment moves it.
func (v *VPCs) Attach(vpcID string, env, eniAddr netip.Addr) error {
	if !v.r.cfg.ServiceCIDR.Contains(env) {
		return fmt.Errorf("%w: %v", ErrNotServiceIP, env)
	}
	v.r.kmu.RLock()
	defer v.r.kmu.RUnlock()
	if v.r.svcH == nil {
		return ErrNotSetup
	}
	v.amu.Lock()
	defer v.amu.Unlock()
	st := v.hp[vpcID]
	if st == nil {
		return fmt.Errorf("%w: %s", ErrNoVPCLink, vpcID)
	}
	mark, ok := st.marks[eniAddr]
	if !ok {
		return fmt.Errorf("%w: %v in %s", ErrENINotBuilt, eniAddr, vpcID)
	}
	if old, ok := v.att[env]; ok {
		if old.vpcID == vpcID && old.mark == mark {
			return nil
		}
		if err := v.detachLocked(env, old); err != nil {
			return err
		}
	}
	if err := st.rt.nft.SetAttach(v.prefix, env, mark, false); err != nil {
		return err
	}
	if err := v.r.svcH.RuleAdd(envRule(env, st.table)); err != nil && !errors.Is(err, unix.EEXIST) {
		return errors.Join(fmt.Errorf("rule from %v lookup %d: %w", env, st.table, err),
			st.rt.nft.SetAttach(v.prefix, env, mark, true))
	}
	v.att[env] = attachment{vpcID: vpcID, mark: mark, table: st.table}
	return nil
}

// Detach removes an environment's two elements (rule first, so nothing
// is steered to a VPC that no longer knows the environment). Detaching
// something not attached is success.
func (v *VPCs) Detach(env netip.Addr) error {
	v.r.kmu.RLock()
	defer v.r.kmu.RUnlock()
	v.amu.Lock()
	defer v.amu.Unlock()
	a, ok := v.att[env]
	if !ok {
		return nil
	}
	return v.detachLocked(env, a)
}

func (v *VPCs) detachLocked(env netip.Addr, a attachment) error {
	err := v.delSvcRule(env, a.table)
	if st := v.hp[a.vpcID]; st != nil && st.rt.nft != nil {
		if e := st.rt.nft.SetAttach(v.prefix, env, a.mark, true); e != nil && !isNotFound(e) {
			err = errors.Join(err, e)
		}
	}
	if err == nil {
		delete(v.att, env)
	}
	return err
}

// Attachments is how many environments are attached (all VPCs).
func (v *VPCs) Attachments() int {
	v.amu.Lock()
	defer v.amu.Unlock()
	return len(v.att)
}

// sweepHP removes service-router hyperplane links no spec wants and
// per-environment rules no attachment owns (after a restart: all).
func (v *VPCs) sweepHP(specs []VPCSpec) error {
	want := map[string]bool{}
	for _, s := range specs {
		if len(s.Lambdas) > 0 {
			want[hpSvcLink(s.ID)] = true
		}
	}
	var errs []error
	links, err := v.r.svcH.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if n := l.Attrs().Name; hpSvcLinkRE.MatchString(n) && !want[n] {
			v.log.Info("removing stale hyperplane link", "link", n)
			if err := v.r.svcH.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	rules, err := v.r.svcH.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	v.amu.Lock()
	defer v.amu.Unlock()
	for _, r := range rules {
		if r.Priority != hpRulePref || r.Src == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(r.Src.IP)
		if a, ok := v.att[ip.Unmap()]; ok && a.table == r.Table {
			continue
		}
		if err := v.r.svcH.RuleDel(&r); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete stale rule from %v: %w", r.Src, err))
		}
	}
	return errors.Join(errs...)
}

// HPDroppedPackets reads a VPC router's hp_dropped counter: environment
// traffic without an attach or an ENI.
func (v *VPCs) HPDroppedPackets(vpcID string) (uint64, error) {
	return v.counter(vpcID, nft.CounterHPDropped)
}

// Conntrack TCP states (nf_conntrack_tcp.h): FIN_WAIT and later are closing.
const (
	tcpFinWait  = 4
	tcpSynSent2 = 9
)

// SNATConnections counts a VPC router's conntrack entries by the address
// their reply goes to, for the given ENI addresses: the connections each
// Hyperplane ENI carries. It opens its own netlink socket (a dump of a
// large table must not hold up attaches).
func (v *VPCs) SNATConnections(vpcID string, enis []netip.Addr) (map[netip.Addr]int, error) {
	path := v.RouterNetns(vpcID)
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("netdev: open %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netdev: netlink in %s: %w", path, err)
	}
	defer h.Close()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, netlink.InetFamily(unix.AF_INET))
	if err != nil {
		return nil, fmt.Errorf("netdev: conntrack in %s: %w", path, err)
	}
	out := make(map[netip.Addr]int, len(enis))
	for _, a := range enis {
		out[a] = 0
	}
	for _, f := range flows {
		a, ok := netip.AddrFromSlice(f.Reverse.DstIP)
		if !ok {
			continue
		}
		if tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok && tcp.State >= tcpFinWait && tcp.State != tcpSynSent2 {
			continue // closing or closed: not a simultaneous connection any more
		}
		if n, ok := out[a.Unmap()]; ok && !f.Forward.SrcIP.Equal(net.IP(a.Unmap().AsSlice())) {
			out[a.Unmap()] = n + 1
		}
	}
	return out, nil
}

// EnvRules lists the service router's per-environment rules as
// "env→table" (tests, leak checks).
func (v *VPCs) EnvRules() ([]string, error) {
	v.r.kmu.RLock()
	defer v.r.kmu.RUnlock()
	if v.r.svcH == nil {
		return nil, ErrNotSetup
	}
	rules, err := v.r.svcH.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rules {
		if r.Priority == hpRulePref && r.Src != nil {
			out = append(out, fmt.Sprintf("%v→%d", r.Src.IP, r.Table))
		}
	}
	return out, nil
}
