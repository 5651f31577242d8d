package nft

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Hyperplane ENIs in a VPC router's table. Execution environments' traffic
// arrives on the router's hyperplane link (VPCTable.HPLink) with the
// environment's service-network address as its source:
//
//	map env2eni    { type ipv4_addr : mark }     # per attach: env → its ENI's mark
//	map eni_snat   { type mark : ipv4_addr }     # per ENI: mark → ENI address
//	map eni_egress { type mark : verdict }       # per ENI: mark → jump o_<eni chain>
//	chain o_<eni> { ip saddr != <eni addr> drop; jump ge_<sg>...; counter name sg_dropped drop }
//	chain hpmark { type filter hook prerouting priority mangle;
//	  iifname <hp> meta mark set ip saddr map @env2eni   # routes by fwmark → the ENI's subnet table
//	  iifname <hp> meta mark 0 counter name hp_dropped drop
//	  iifname <hp> ct mark set meta mark
//	  ct mark != 0 meta mark set ct mark }               # replies: rp_filter (src_valid_mark) by the ENI's subnet
//	chain natpost { ...; meta mark != 0 snat to meta mark map @eni_snat }
//	chain hpout { type filter hook postrouting priority 150;   # after srcnat: sees the ENI address
//	  ct state established,related accept
//	  meta mark vmap @eni_egress                         # the function's egress rules
//	  meta mark != 0 counter name hp_dropped drop }
//
// plus "oifname <hp> drop" in forward (nothing in the VPC opens a
// connection to an environment) and "iifname <hp> drop" in input. An
// attach is one element of env2eni; everything else changes only when an
// ENI is created or deleted.
const (
	MapEnvENI        = "env2eni"
	MapENISNAT       = "eni_snat"
	MapENIEgress     = "eni_egress"
	ChainHPMark      = "hpmark"
	ChainHPOut       = "hpout"
	CounterHPDropped = "hp_dropped"
)

// VPCLambda is a Hyperplane ENI owned by the VPC router: its address is
// the router's; traffic of environments attached to it carries Mark.
type VPCLambda struct {
	Mark   uint32
	Addr   netip.Addr
	Chain  string // egress chain suffix: o_<Chain>
	Groups []string
}

// VPCAttach is one attached environment (host-local state).
type VPCAttach struct {
	Env  netip.Addr
	Mark uint32
}

func markKey(m uint32) []byte { return binaryutil.NativeEndian.PutUint32(m) }

func envMap(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: MapEnvENI, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeMark}
}

func snatMap(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: MapENISNAT, IsMap: true, KeyType: nftables.TypeMark, DataType: nftables.TypeIPAddr}
}

func egressMap(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: MapENIEgress, IsMap: true, KeyType: nftables.TypeMark, DataType: nftables.TypeVerdict}
}

func lambdaChain(l VPCLambda) string { return ifaceChain(l.Chain, false) }

// lambdaRules is a Hyperplane ENI's egress chain: only traffic SNATed to
// its address, then its groups' egress rules, then drop (counted).
func lambdaRules(l VPCLambda, known map[string]bool) []Rule {
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	rules := []Rule{rule(fmt.Sprintf("ip saddr != %v counter name %s drop", l.Addr, CounterSGDropped),
		cat(ipPrefix(offSaddr, netip.PrefixFrom(l.Addr, 32), true), objCounter(CounterSGDropped), drop)...)}
	return append(rules, ifaceRules(VPCIface{Link: l.Chain, Groups: l.Groups}, false, known)...)
}

func hpBaseChains(t VPCTable) []ChainSpec {
	if t.HPLink == "" {
		return nil
	}
	mark := &expr.Meta{Key: expr.MetaKeyMARK, Register: 1}
	zero := []byte{0, 0, 0, 0}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	var tunIn, tunOut []Rule
	if t.Tunnel != "" {
		// Environments of other hosts (or their replies) arrive with the
		// low 16 bits of their ENI's mark (GBP) plus flag bits: the mark
		// is made whole again and kept in conntrack, as for the hp link.
		tunIn = []Rule{
			rule(fmt.Sprintf("iifname %s meta mark != 0 meta mark set meta mark & 0xffff | %#x", t.Tunnel, t.MarkHigh),
				cat(ifname(expr.MetaKeyIIFNAME, t.Tunnel), mark, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: markKey(0xffff), Xor: markKey(t.MarkHigh)},
					&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})...),
			rule("iifname "+t.Tunnel+" meta mark != 0 ct mark set meta mark",
				cat(ifname(expr.MetaKeyIIFNAME, t.Tunnel), mark, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
					&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true})...),
		}
		// Marks of ENIs homed elsewhere: egress is checked at the home,
		// so what leaves into the tunnel (from an environment here) or
		// came out of it (SNATed at the home, going to a NAT gateway or
		// instance here) passes.
		tunOut = []Rule{
			rule("iifname "+t.Tunnel+" accept", cat(ifname(expr.MetaKeyIIFNAME, t.Tunnel), accept)...),
			rule("oifname "+t.Tunnel+" accept", cat(ifname(expr.MetaKeyOIFNAME, t.Tunnel), accept)...),
		}
	}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	mangle := nftables.ChainPriorityMangle
	prio150 := nftables.ChainPriority(150)
	return []ChainSpec{
		{
			Name: ChainHPMark, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPrerouting,
			Priority: mangle, Policy: policy(nftables.ChainPolicyAccept),
			Rules: append(tunIn,
				rule("iifname "+t.HPLink+" meta mark set ip saddr map @"+MapEnvENI,
					cat(ifname(expr.MetaKeyIIFNAME, t.HPLink), loadIP(offSaddr),
						&expr.Lookup{SourceRegister: 1, SetName: MapEnvENI, DestRegister: 1, IsDestRegSet: true},
						&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})...),
				rule("iifname "+t.HPLink+" meta mark 0 counter name "+CounterHPDropped+" drop",
					cat(ifname(expr.MetaKeyIIFNAME, t.HPLink), mark, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: zero},
						objCounter(CounterHPDropped), drop)...),
				rule("iifname "+t.HPLink+" ct mark set meta mark",
					cat(ifname(expr.MetaKeyIIFNAME, t.HPLink), mark, &expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true})...),
				rule("ct mark != 0 meta mark set ct mark",
					&expr.Ct{Key: expr.CtKeyMARK, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
					&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1}),
			),
		},
		{
			Name: ChainHPOut, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPostrouting,
			Priority: &prio150, Policy: policy(nftables.ChainPolicyAccept),
			Rules: append([]Rule{
				rule("ct state established,related accept", cat(ctStateIn(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)...),
				rule("meta mark vmap @"+MapENIEgress, mark,
					&expr.Lookup{SourceRegister: 1, SetName: MapENIEgress, IsDestRegSet: true}),
			}, append(tunOut,
				rule("meta mark != 0 counter name "+CounterHPDropped+" drop",
					mark, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero}, objCounter(CounterHPDropped), drop))...),
		},
	}
}

// hpSNATRule is natpost's first rule: environments' traffic leaves with
// its ENI's address.
func hpSNATRule() Rule {
	return rule("meta mark != 0 snat to meta mark map @"+MapENISNAT,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: MapENISNAT, DestRegister: 1, IsDestRegSet: true},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1})
}

// addHPObjects queues the maps and their elements (ReplaceVPC).
func (c *Conn) addHPObjects(tb *nftables.Table, t VPCTable) error {
	if t.HPLink == "" {
		return nil
	}
	var envEls, snatEls []nftables.SetElement
	for _, a := range t.Attached {
		envEls = append(envEls, nftables.SetElement{Key: addrKey(a.Env), Val: markKey(a.Mark)})
	}
	for _, l := range t.Lambdas {
		snatEls = append(snatEls, nftables.SetElement{Key: markKey(l.Mark), Val: addrKey(l.Addr)})
	}
	if err := c.newSet(envMap(tb), envEls); err != nil {
		return err
	}
	if err := c.newSet(snatMap(tb), snatEls); err != nil {
		return err
	}
	return c.newSet(egressMap(tb), nil)
}

// addHPEgressElems queues eni_egress's elements: after the chains they
// jump to exist.
func (c *Conn) addHPEgressElems(tb *nftables.Table, t VPCTable) error {
	if t.HPLink == "" || len(t.Lambdas) == 0 {
		return nil
	}
	var els []nftables.SetElement
	for _, l := range t.Lambdas {
		els = append(els, nftables.SetElement{Key: markKey(l.Mark), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: lambdaChain(l)}})
	}
	return c.c.SetAddElements(egressMap(tb), els)
}

func sameLambdas(a, b []VPCLambda) bool {
	return slices.EqualFunc(a, b, func(x, y VPCLambda) bool {
		return x.Mark == y.Mark && x.Addr == y.Addr && x.Chain == y.Chain && slices.Equal(x.Groups, y.Groups)
	})
}

// SetAttach adds (or, with del, deletes) one environment's element of
// env2eni in one transaction: the VPC router's half of an attach.
func (c *Conn) SetAttach(tableName string, env netip.Addr, mark uint32, del bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := envMap(table(tableName))
	el := []nftables.SetElement{{Key: addrKey(env), Val: markKey(mark)}}
	var err error
	if del {
		err = c.c.SetDeleteElements(m, el)
	} else {
		err = c.c.SetAddElements(m, el)
	}
	if err != nil {
		return fmt.Errorf("nft: map %s: %w", MapEnvENI, err)
	}
	return c.flush(tableName)
}

// Attached lists env2eni (tests, leak checks).
func (c *Conn) Attached(tableName string) ([]VPCAttach, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.c.GetSetByName(table(tableName), MapEnvENI)
	if err != nil {
		return nil, fmt.Errorf("nft: map %s in table ip %s: %w", MapEnvENI, tableName, err)
	}
	els, err := c.c.GetSetElements(s)
	if err != nil {
		return nil, err
	}
	out := make([]VPCAttach, 0, len(els))
	for _, e := range els {
		if len(e.Key) >= 4 && len(e.Val) >= 4 {
			out = append(out, VPCAttach{Env: netip.AddrFrom4([4]byte(e.Key[:4])), Mark: binaryutil.NativeEndian.Uint32(e.Val[:4])})
		}
	}
	slices.SortFunc(out, func(a, b VPCAttach) int { return a.Env.Compare(b.Env) })
	return out, nil
}
