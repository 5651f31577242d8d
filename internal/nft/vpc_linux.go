package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Names of objects in a VPC router's table.
const (
	MapEgress         = "egress"      // iifname → jump o_<link>: the sender's egress rules
	MapIngress        = "ingress"     // oifname → jump i_<link>: the receiver's ingress rules
	SetIGWBlock       = "igw_block"   // never carried by the internet gateway
	SetNATAddrs       = "nat_addrs"   // NAT gateway addresses: the only sources sent to the internet gateway
	CounterIGWBlocked = "igw_blocked" // dropped at the internet gateway
	CounterSGDropped  = "sg_dropped"  // dropped by security groups (ingress or egress)
	ChainSGIngress    = "sgin"        // postrouting filter after srcnat: sees SNATed sources
	ChainNATPost      = "natpost"
)

// ProtoAll is an SGRule protocol matching every protocol.
const ProtoAll = -1

// SGRule is one security-group permission. Proto is an IP protocol number
// or ProtoAll; FromPort/ToPort are the port range (tcp, udp; -1 or 0-65535
// = all) or ICMP type and code (icmp; -1 = any). Exactly one of CIDR
// (valid) or Group is the peer: the source for ingress, the destination
// for egress.
type SGRule struct {
	Proto    int
	FromPort int
	ToPort   int
	CIDR     netip.Prefix
	Group    string
}

// SecurityGroup is a group's members (an nft set, so a member joining or
// leaving is one element change) and its rules (one chain each way).
type SecurityGroup struct {
	ID      string
	Members []netip.Addr // sorted, unique
	Ingress []SGRule
	Egress  []SGRule
}

// VPCIface is an interface link in the VPC router and its groups.
type VPCIface struct {
	Link   string
	Groups []string
}

// VPCTable is the desired nftables state of one VPC router namespace:
//
//	table ip <name> {
//	  counter igw_blocked; counter sg_dropped
//	  set igw_block { type ipv4_addr; flags interval }  # private, loopback, ...
//	  set nat_addrs { type ipv4_addr }                  # NAT gateway addresses
//	  set m_<sg> { type ipv4_addr }                     # members of each group
//	  map egress  { type ifname : verdict }             # iifname → jump o_<link>
//	  map ingress { type ifname : verdict }             # oifname → jump i_<link>
//	  chain gi_<sg> { <ingress rules> accept }          # one per group and way
//	  chain ge_<sg> { <egress rules> accept }
//	  chain i_<link> { jump gi_<sg>...; counter name sg_dropped drop }
//	  chain o_<link> { jump ge_<sg>...; counter name sg_dropped drop }
//	  chain forward { type filter hook forward priority filter;
//	    ct state established,related accept; ct state invalid drop
//	    iifname <igw> drop                               # nothing unsolicited comes in
//	    oifname <igw> ip daddr @igw_block counter name igw_blocked drop
//	    oifname <igw> ip saddr != @nat_addrs counter name igw_blocked drop
//	    iifname vmap @egress }
//	  chain sgin { type filter hook postrouting priority 200;   # after srcnat
//	    ct state established,related accept
//	    oifname vmap @ingress }
//	  chain input { type filter hook input priority filter;
//	    ct state established,related accept; iifname lo accept
//	    meta l4proto icmp accept; drop }
//	  chain natpost { type nat hook postrouting priority srcnat;   # only with IGW or HPLink
//	    oifname <igw> masquerade }
//	}
type VPCTable struct {
	Name    string
	IGWLink string // the internet gateway link's name in the router
	// IGW: the internet gateway is attached (its link exists), so natpost
	// masquerades out of it. Without it and without Hyperplane ENIs the
	// table has no NAT chain, and the kernel's NAT hooks stay off this
	// namespace's packets.
	IGW      bool
	IGWBlock []netip.Prefix // nil = DefaultEgressBlock()
	NATAddrs []netip.Addr   // sorted, unique
	Groups   []SecurityGroup
	Ifaces   []VPCIface
	// HPLink is the hyperplane link's name in the router ("" = none: no
	// Hyperplane objects, so no per-packet hpmark/hpout chains). Lambdas
	// are its ENIs (sorted by Mark); Attached is the host-local attach
	// state ReplaceVPC rebuilds env2eni from (UpdateVPC never touches
	// env2eni).
	HPLink   string
	Lambdas  []VPCLambda
	Attached []VPCAttach
	// Tunnel is the VXLAN link to the VPC's routers on other hosts ("" =
	// none). With HPLink, environments' traffic crosses it carrying its
	// ENI's mark (VXLAN GBP: the low 16 bits), and MarkHigh (the VPC
	// CIDR's upper 16 bits; a VPC is at most a /16) restores the rest on
	// arrival. See hyperplane_linux.go.
	Tunnel   string
	MarkHigh uint32
}

func memberSet(group string) string { return "m_" + group }
func groupChain(group string, ingress bool) string {
	if ingress {
		return "gi_" + group
	}
	return "ge_" + group
}
func ifaceChain(link string, ingress bool) string {
	if ingress {
		return "i_" + link
	}
	return "o_" + link
}

// ruleText is a rule's canonical text (its comment); equal text means equal
// expressions.
func ruleText(r SGRule, ingress bool) string {
	var b strings.Builder
	switch r.Proto {
	case ProtoAll:
		b.WriteString("all")
	case 1:
		b.WriteString("icmp")
	case 6:
		b.WriteString("tcp")
	case 17:
		b.WriteString("udp")
	default:
		fmt.Fprintf(&b, "proto %d", r.Proto)
	}
	if r.Proto == 1 || r.Proto == 6 || r.Proto == 17 {
		fmt.Fprintf(&b, " %d:%d", r.FromPort, r.ToPort)
	}
	dir := " from "
	if !ingress {
		dir = " to "
	}
	if r.Group != "" {
		b.WriteString(dir + "@" + memberSet(r.Group))
	} else {
		b.WriteString(dir + r.CIDR.Masked().String())
	}
	b.WriteString(" accept")
	return b.String()
}

func be16(v int) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(v))
	return b
}

func loadTH(off, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: n}
}

// ruleExprs compiles one security-group rule to an accepting nft rule.
func ruleExprs(r SGRule, ingress bool) []expr.Any {
	var out []expr.Any
	if r.Proto != ProtoAll {
		out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.Proto)}})
	}
	switch r.Proto {
	case 6, 17:
		from, to := r.FromPort, r.ToPort
		if from < 0 {
			from, to = 0, 65535
		}
		if from == to {
			out = append(out, loadTH(2, 2), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(from)})
		} else if from > 0 || to < 65535 {
			out = append(out, loadTH(2, 2), &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(from), ToData: be16(to)})
		}
	case 1:
		if r.FromPort >= 0 {
			out = append(out, loadTH(0, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.FromPort)}})
			if r.ToPort >= 0 {
				out = append(out, loadTH(1, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.ToPort)}})
			}
		}
	}
	off := uint32(offSaddr)
	if !ingress {
		off = offDaddr
	}
	if r.Group != "" {
		out = append(out, ipInSet(off, memberSet(r.Group))...)
	} else if r.CIDR.Bits() > 0 {
		out = append(out, ipPrefix(off, r.CIDR, false)...)
	}
	return append(out, &expr.Verdict{Kind: expr.VerdictAccept})
}

func knownGroups(t VPCTable) map[string]bool {
	known := map[string]bool{}
	for _, g := range t.Groups {
		known[g.ID] = true
	}
	return known
}

// groupRules is a group's chain one way: its rules, each accepting.
func groupRules(g SecurityGroup, ingress bool, known map[string]bool) []Rule {
	rs := g.Egress
	if ingress {
		rs = g.Ingress
	}
	var rules []Rule
	for _, r := range rs {
		if r.Group != "" && !known[r.Group] {
			continue // a group outside this VPC has no members here
		}
		rules = append(rules, rule(ruleText(r, ingress), ruleExprs(r, ingress)...))
	}
	return rules
}

// ifaceRules is an interface's chain one way: a jump to each of its
// groups' chains, then drop (counted).
func ifaceRules(i VPCIface, ingress bool, known map[string]bool) []Rule {
	var rules []Rule
	for _, g := range i.Groups {
		if !known[g] {
			continue
		}
		c := groupChain(g, ingress)
		rules = append(rules, rule("jump "+c, &expr.Verdict{Kind: expr.VerdictJump, Chain: c}))
	}
	return append(rules, rule("counter name "+CounterSGDropped+" drop", objCounter(CounterSGDropped), &expr.Verdict{Kind: expr.VerdictDrop}))
}

// vpcChains returns every regular chain of t with its rules, keyed by name.
func vpcChains(t VPCTable) map[string][]Rule {
	out := map[string][]Rule{}
	known := knownGroups(t)
	for _, g := range t.Groups {
		for _, ingress := range []bool{true, false} {
			out[groupChain(g.ID, ingress)] = groupRules(g, ingress, known)
		}
	}
	for _, i := range t.Ifaces {
		for _, ingress := range []bool{true, false} {
			out[ifaceChain(i.Link, ingress)] = ifaceRules(i, ingress, known)
		}
	}
	if t.HPLink != "" {
		for _, l := range t.Lambdas {
			out[lambdaChain(l)] = lambdaRules(l, known)
		}
	}
	return out
}

func ifKey(name string) []byte { return ifnameBytes(name) }

func addrKey(a netip.Addr) []byte { b := a.As4(); return b[:] }

func addrElems(as []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(as))
	for _, a := range as {
		if a.Is4() {
			out = append(out, nftables.SetElement{Key: addrKey(a)})
		}
	}
	return out
}

func addrSet(t *nftables.Table, name string) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr}
}

func vmapSet(t *nftables.Table, name string) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
}

func jumpElem(link string, ingress bool) nftables.SetElement {
	return nftables.SetElement{Key: ifKey(link), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: ifaceChain(link, ingress)}}
}

func vpcBaseChains(t VPCTable) []ChainSpec {
	cs := vpcCoreChains(t)
	if t.HPLink == "" {
		return cs
	}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	for i := range cs {
		switch cs[i].Name {
		case ChainForward: // after ct state: nothing opens a connection to an environment
			r := rule("oifname "+t.HPLink+" drop", cat(ifname(expr.MetaKeyOIFNAME, t.HPLink), drop)...)
			cs[i].Rules = slices.Insert(cs[i].Rules, 2, r)
		case ChainInput: // environments reach nothing on the router itself
			r := rule("iifname "+t.HPLink+" drop", cat(ifname(expr.MetaKeyIIFNAME, t.HPLink), drop)...)
			cs[i].Rules = slices.Insert(cs[i].Rules, 2, r)
		}
	}
	return append(cs, hpBaseChains(t)...)
}

// vpcCoreChains are the chains every VPC router has, and natpost when
// something needs NAT (the Hyperplane SNAT rule first).
func vpcCoreChains(t VPCTable) []ChainSpec {
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	ctEstRel := ctStateIn(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	igw := t.IGWLink
	prio200 := nftables.ChainPriority(200)
	cs := []ChainSpec{
		{
			Name: ChainForward, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookForward,
			Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyAccept),
			Rules: []Rule{
				rule("ct state established,related accept", cat(ctEstRel, accept)...),
				rule("ct state invalid drop", cat(ctStateIn(expr.CtStateBitINVALID), drop)...),
				rule("iifname "+igw+" drop", cat(ifname(expr.MetaKeyIIFNAME, igw), drop)...),
				rule("oifname "+igw+" ip daddr @"+SetIGWBlock+" counter name "+CounterIGWBlocked+" drop",
					cat(ifname(expr.MetaKeyOIFNAME, igw), ipInSet(offDaddr, SetIGWBlock), objCounter(CounterIGWBlocked), drop)...),
				rule("oifname "+igw+" ip saddr != @"+SetNATAddrs+" counter name "+CounterIGWBlocked+" drop",
					cat(ifname(expr.MetaKeyOIFNAME, igw), loadIP(offSaddr), &expr.Lookup{SourceRegister: 1, SetName: SetNATAddrs, Invert: true},
						objCounter(CounterIGWBlocked), drop)...),
				rule("iifname vmap @"+MapEgress, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
					&expr.Lookup{SourceRegister: 1, SetName: MapEgress, IsDestRegSet: true}),
			},
		},
		{
			Name: ChainSGIngress, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPostrouting,
			Priority: &prio200, Policy: policy(nftables.ChainPolicyAccept),
			Rules: []Rule{
				rule("ct state established,related accept", cat(ctEstRel, accept)...),
				rule("oifname vmap @"+MapIngress, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
					&expr.Lookup{SourceRegister: 1, SetName: MapIngress, IsDestRegSet: true}),
			},
		},
		{
			Name: ChainInput, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookInput,
			Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyAccept),
			Rules: []Rule{
				rule("ct state established,related accept", cat(ctEstRel, accept)...),
				rule("iifname lo accept", cat(ifname(expr.MetaKeyIIFNAME, "lo"), accept)...),
				rule("meta l4proto icmp accept", &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}}, accept),
				rule("drop", drop),
			},
		},
	}
	var nat []Rule
	if t.HPLink != "" {
		nat = append(nat, hpSNATRule())
	}
	if t.IGW {
		nat = append(nat, rule("oifname "+igw+" masquerade", cat(ifname(expr.MetaKeyOIFNAME, igw), &expr.Masq{})...))
	}
	if len(nat) > 0 {
		cs = append(cs, ChainSpec{
			Name: ChainNATPost, Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPostrouting,
			Priority: nftables.ChainPriorityNATSource, Policy: policy(nftables.ChainPolicyAccept), Rules: nat,
		})
	}
	return cs
}

func (t VPCTable) valid() error {
	if t.Name == "" || t.IGWLink == "" {
		return fmt.Errorf("nft: VPC table needs a name and an internet gateway link name (got %q, %q)", t.Name, t.IGWLink)
	}
	return nil
}

// ReplaceVPC builds table t from scratch in one transaction, atomically
// replacing a table of that name. Connection tracking is not part of the
// table, so established flows keep flowing if t still allows them.
func (c *Conn) ReplaceVPC(t VPCTable) error {
	if err := t.valid(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	have, err := c.findTable(t.Name)
	if err != nil {
		return err
	}
	tb := table(t.Name)
	if have != nil {
		c.c.DelTable(tb)
	}
	c.c.AddTable(tb)
	for _, n := range []string{CounterIGWBlocked, CounterSGDropped, CounterHPDropped} {
		c.c.AddObj(&nftables.CounterObj{Table: tb, Name: n})
	}
	block := t.IGWBlock
	if block == nil {
		block = DefaultEgressBlock()
	}
	if err := c.addSet(tb, SetSpec{Name: SetIGWBlock, Prefixes: block}); err != nil {
		return err
	}
	if err := c.newSet(addrSet(tb, SetNATAddrs), addrElems(t.NATAddrs)); err != nil {
		return err
	}
	for _, g := range t.Groups {
		if err := c.newSet(addrSet(tb, memberSet(g.ID)), addrElems(g.Members)); err != nil {
			return err
		}
	}
	egress, ingress := vmapSet(tb, MapEgress), vmapSet(tb, MapIngress)
	if err := c.newSet(egress, nil); err != nil {
		return err
	}
	if err := c.newSet(ingress, nil); err != nil {
		return err
	}
	if err := c.addHPObjects(tb, t); err != nil {
		return err
	}
	chains := vpcChains(t)
	names := sortedKeys(chains)
	for _, n := range names {
		c.c.AddChain(&nftables.Chain{Table: tb, Name: n})
	}
	for _, n := range names {
		c.addRules(&nftables.Chain{Table: tb, Name: n}, chains[n])
	}
	if err := c.addIfaceElems(egress, ingress, t.Ifaces); err != nil {
		return err
	}
	if err := c.addHPEgressElems(tb, t); err != nil {
		return err
	}
	for _, cs := range vpcBaseChains(t) {
		ch := c.c.AddChain(chainOf(tb, cs))
		c.addRules(ch, cs.Rules)
	}
	return c.flush(t.Name)
}

func (c *Conn) addIfaceElems(egress, ingress *nftables.Set, ifs []VPCIface) error {
	if len(ifs) == 0 {
		return nil
	}
	var eg, in []nftables.SetElement
	for _, i := range ifs {
		eg = append(eg, jumpElem(i.Link, false))
		in = append(in, jumpElem(i.Link, true))
	}
	if err := c.c.SetAddElements(egress, eg); err != nil {
		return fmt.Errorf("nft: map %s: %w", MapEgress, err)
	}
	if err := c.c.SetAddElements(ingress, in); err != nil {
		return fmt.Errorf("nft: map %s: %w", MapIngress, err)
	}
	return nil
}

func (c *Conn) newSet(s *nftables.Set, els []nftables.SetElement) error {
	c.setID++
	s.ID = c.setID
	if err := c.c.AddSet(s, els); err != nil {
		return fmt.Errorf("nft: set %s: %w", s.Name, err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// VPCDelta is the difference between two VPCTables as nft operations.
type VPCDelta struct {
	Replace   bool // base objects differ: rebuild the table
	AddSets   map[string][]netip.Addr
	AddElems  map[string][]netip.Addr
	DelElems  map[string][]netip.Addr
	AddChains []string
	SetRules  map[string][]Rule // new or changed chains → their rules
	AddIfaces []string          // map elements to add (links)
	DelIfaces []string          // map elements to delete (links)
	DelChains []string
	DelSets   []string
}

// Empty reports whether the delta changes nothing.
func (d VPCDelta) Empty() bool {
	return !d.Replace && len(d.AddSets) == 0 && len(d.AddElems) == 0 && len(d.DelElems) == 0 &&
		len(d.AddChains) == 0 && len(d.SetRules) == 0 && len(d.AddIfaces) == 0 && len(d.DelIfaces) == 0 &&
		len(d.DelChains) == 0 && len(d.DelSets) == 0
}

// addrDiff returns what to add and delete to go from a to b (both sorted).
func addrDiff(a, b []netip.Addr) (add, del []netip.Addr) {
	if slices.Equal(a, b) {
		return nil, nil
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i == len(a):
			add = append(add, b[j])
			j++
		case j == len(b):
			del = append(del, a[i])
			i++
		default:
			switch a[i].Compare(b[j]) {
			case 0:
				i++
				j++
			case -1:
				del = append(del, a[i])
				i++
			default:
				add = append(add, b[j])
				j++
			}
		}
	}
	return add, del
}

func sameComments(a, b []Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Comment != b[i].Comment {
			return false
		}
	}
	return true
}

// DiffVPC computes the operations that turn table old into table new (pure).
func DiffVPC(old, new VPCTable) VPCDelta {
	d := VPCDelta{AddSets: map[string][]netip.Addr{}, AddElems: map[string][]netip.Addr{}, DelElems: map[string][]netip.Addr{}, SetRules: map[string][]Rule{}}
	if old.Name != new.Name || old.IGWLink != new.IGWLink || old.IGW != new.IGW || !slices.Equal(old.IGWBlock, new.IGWBlock) ||
		old.HPLink != new.HPLink || !sameLambdas(old.Lambdas, new.Lambdas) ||
		old.Tunnel != new.Tunnel || old.MarkHigh != new.MarkHigh {
		// Hyperplane ENIs change at function create/update, never per
		// invoke: a rebuild (which keeps env2eni from Attached) is fine.
		d.Replace = true
		return d
	}
	if add, del := addrDiff(old.NATAddrs, new.NATAddrs); len(add)+len(del) > 0 {
		d.AddElems[SetNATAddrs], d.DelElems[SetNATAddrs] = add, del
	}
	oldG := map[string]SecurityGroup{}
	for _, g := range old.Groups {
		oldG[g.ID] = g
	}
	newG := map[string]bool{}
	for _, g := range new.Groups {
		newG[g.ID] = true
		og, ok := oldG[g.ID]
		if !ok {
			d.AddSets[memberSet(g.ID)] = g.Members
			continue
		}
		if add, del := addrDiff(og.Members, g.Members); len(add)+len(del) > 0 {
			if len(add) > 0 {
				d.AddElems[memberSet(g.ID)] = add
			}
			if len(del) > 0 {
				d.DelElems[memberSet(g.ID)] = del
			}
		}
	}
	for _, g := range old.Groups {
		if !newG[g.ID] {
			d.DelSets = append(d.DelSets, memberSet(g.ID))
		}
	}
	if maps.Equal(knownGroups(old), knownGroups(new)) {
		diffChainsFast(&d, old, new, oldG)
	} else { // a group appeared or went: references may change anywhere
		oc, nc := vpcChains(old), vpcChains(new)
		for _, n := range sortedKeys(nc) {
			or, ok := oc[n]
			if !ok {
				d.AddChains = append(d.AddChains, n)
				d.SetRules[n] = nc[n]
			} else if !sameComments(or, nc[n]) {
				d.SetRules[n] = nc[n]
			}
		}
		for _, n := range sortedKeys(oc) {
			if _, ok := nc[n]; !ok {
				d.DelChains = append(d.DelChains, n)
			}
		}
	}
	oi := map[string]bool{}
	for _, i := range old.Ifaces {
		oi[i.Link] = true
	}
	ni := map[string]bool{}
	for _, i := range new.Ifaces {
		ni[i.Link] = true
		if !oi[i.Link] {
			d.AddIfaces = append(d.AddIfaces, i.Link)
		}
	}
	for _, i := range old.Ifaces {
		if !ni[i.Link] {
			d.DelIfaces = append(d.DelIfaces, i.Link)
		}
	}
	if len(d.AddElems) == 0 {
		d.AddElems = nil
	}
	if len(d.DelElems) == 0 {
		d.DelElems = nil
	}
	if len(d.AddSets) == 0 {
		d.AddSets = nil
	}
	if len(d.SetRules) == 0 {
		d.SetRules = nil
	}
	return d
}

// diffChainsFast compares rules and interface groups structurally and
// builds expressions only for chains that change: the cost does not grow
// with the number of rules or members that stay the same.
func diffChainsFast(d *VPCDelta, old, new VPCTable, oldG map[string]SecurityGroup) {
	known := knownGroups(new)
	for _, g := range new.Groups {
		og := oldG[g.ID] // same group IDs on both sides
		if !slices.Equal(og.Ingress, g.Ingress) {
			d.SetRules[groupChain(g.ID, true)] = groupRules(g, true, known)
		}
		if !slices.Equal(og.Egress, g.Egress) {
			d.SetRules[groupChain(g.ID, false)] = groupRules(g, false, known)
		}
	}
	oi := map[string][]string{}
	for _, i := range old.Ifaces {
		oi[i.Link] = i.Groups
	}
	ni := map[string]bool{}
	for _, i := range new.Ifaces {
		ni[i.Link] = true
		og, ok := oi[i.Link]
		if ok && slices.Equal(og, i.Groups) {
			continue
		}
		for _, ingress := range []bool{true, false} {
			n := ifaceChain(i.Link, ingress)
			if !ok {
				d.AddChains = append(d.AddChains, n)
			}
			d.SetRules[n] = ifaceRules(i, ingress, known)
		}
	}
	for _, i := range old.Ifaces {
		if !ni[i.Link] {
			d.DelChains = append(d.DelChains, ifaceChain(i.Link, true), ifaceChain(i.Link, false))
		}
	}
	slices.Sort(d.AddChains)
	slices.Sort(d.DelChains)
}

// UpdateVPC converges table new.Name from old (what was last applied) to
// new in one transaction: member changes are set-element changes, a rule
// change rebuilds only that group's chain, an interface is two map elements
// and its two chains. If the kernel does not hold old exactly the
// transaction fails as a whole; the caller then uses ReplaceVPC.
func (c *Conn) UpdateVPC(old, new VPCTable) error {
	if err := new.valid(); err != nil {
		return err
	}
	d := DiffVPC(old, new)
	if d.Replace {
		return c.ReplaceVPC(new)
	}
	if d.Empty() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	tb := table(new.Name)
	for _, n := range sortedKeys(d.AddSets) {
		if err := c.newSet(addrSet(tb, n), addrElems(d.AddSets[n])); err != nil {
			return err
		}
	}
	for _, n := range sortedKeys(d.AddElems) {
		if err := c.c.SetAddElements(addrSet(tb, n), addrElems(d.AddElems[n])); err != nil {
			return fmt.Errorf("nft: set %s: %w", n, err)
		}
	}
	for _, n := range d.AddChains {
		c.c.AddChain(&nftables.Chain{Table: tb, Name: n})
	}
	added := map[string]bool{}
	for _, n := range d.AddChains {
		added[n] = true
	}
	for _, n := range sortedKeys(d.SetRules) {
		ch := &nftables.Chain{Table: tb, Name: n}
		if !added[n] {
			c.c.FlushChain(ch)
		}
		c.addRules(ch, d.SetRules[n])
	}
	egress, ingress := vmapSet(tb, MapEgress), vmapSet(tb, MapIngress)
	if len(d.DelIfaces) > 0 {
		var keys []nftables.SetElement
		for _, l := range d.DelIfaces {
			keys = append(keys, nftables.SetElement{Key: ifKey(l)})
		}
		if err := c.c.SetDeleteElements(egress, keys); err != nil {
			return err
		}
		if err := c.c.SetDeleteElements(ingress, keys); err != nil {
			return err
		}
	}
	var addIfs []VPCIface
	for _, l := range d.AddIfaces {
		addIfs = append(addIfs, VPCIface{Link: l})
	}
	if err := c.addIfaceElems(egress, ingress, addIfs); err != nil {
		return err
	}
	for _, n := range d.DelChains {
		ch := &nftables.Chain{Table: tb, Name: n}
		c.c.FlushChain(ch)
	}
	for _, n := range d.DelChains {
		c.c.DelChain(&nftables.Chain{Table: tb, Name: n})
	}
	for _, n := range sortedKeys(d.DelElems) {
		if err := c.c.SetDeleteElements(addrSet(tb, n), addrElems(d.DelElems[n])); err != nil {
			return fmt.Errorf("nft: set %s: %w", n, err)
		}
	}
	for _, n := range d.DelSets {
		c.c.DelSet(addrSet(tb, n))
	}
	return c.flush(new.Name)
}

// SetAddrs adds (or, with del, deletes) addresses of an address set in one
// transaction: the hot path of a security-group member joining or leaving.
func (c *Conn) SetAddrs(tableName, setName string, addrs []netip.Addr, del bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := addrSet(table(tableName), setName)
	var err error
	if del {
		err = c.c.SetDeleteElements(s, addrElems(addrs))
	} else {
		err = c.c.SetAddElements(s, addrElems(addrs))
	}
	if err != nil {
		return fmt.Errorf("nft: set %s: %w", setName, err)
	}
	return c.flush(tableName)
}

// SetAddrsOf lists an address set's elements (tests, leak checks).
func (c *Conn) SetAddrsOf(tableName, setName string) ([]netip.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.c.GetSetByName(table(tableName), setName)
	if err != nil {
		return nil, fmt.Errorf("nft: set %s in table ip %s: %w", setName, tableName, err)
	}
	els, err := c.c.GetSetElements(s)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, e := range els {
		if len(e.Key) >= 4 && !e.IntervalEnd {
			out = append(out, netip.AddrFrom4([4]byte(e.Key[:4])))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// TableObjects counts a table's chains, sets and set elements (leak checks).
func (c *Conn) TableObjects(tableName string) (chains, sets, elems int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tb := table(tableName)
	chs, err := c.c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, ch := range chs {
		if ch.Table != nil && ch.Table.Name == tableName {
			chains++
		}
	}
	ss, err := c.c.GetSets(tb)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, s := range ss {
		sets++
		els, err := c.c.GetSetElements(s)
		if err != nil {
			return 0, 0, 0, err
		}
		elems += len(els)
	}
	return chains, sets, elems, nil
}

// NATTable is a NAT gateway namespace's table: traffic it forwards out of
// its link to destinations outside the VPC leaves with its own address.
//
//	table ip <name> { chain postrouting { type nat hook postrouting priority srcnat;
//	  oifname <link> ip saddr != <addr> ip daddr != <vpc> masquerade } }
func NATTable(name, link string, addr netip.Addr, vpc netip.Prefix) TableSpec {
	return TableSpec{
		Name: name,
		Chains: []ChainSpec{{
			Name: ChainPostrouting, Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPostrouting,
			Priority: nftables.ChainPriorityNATSource, Policy: policy(nftables.ChainPolicyAccept),
			Rules: []Rule{rule(fmt.Sprintf("oifname %s ip saddr != %v ip daddr != %v masquerade", link, addr, vpc.Masked()),
				cat(ifname(expr.MetaKeyOIFNAME, link), ipPrefix(offSaddr, netip.PrefixFrom(addr, 32), true),
					ipPrefix(offDaddr, vpc, true), &expr.Masq{})...)},
		}},
	}
}

// bigBuffers lets one transaction carry a whole VPC table (thousands of
// rules): netlink refuses a batch larger than the socket's send buffer.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 32<<20); e != nil && serr == nil {
				serr = e
			}
		}
	})
	return errors.Join(err, serr)
}

// OpenVPC is Open for a VPC router: its socket buffers hold large
// transactions (a whole table with thousands of rules or members).
func OpenVPC(nsPath string) (*Conn, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("nft: open namespace %s: %w", nsPath, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting(), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("nft: netlink in %s: %w", nsPath, err)
	}
	return &Conn{ns: ns, c: c}, nil
}
