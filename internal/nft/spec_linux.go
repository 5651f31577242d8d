package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// schema is part of every rule comment; bump it when a rule's expressions
// change without its text changing, so that Apply replaces the old rules.
const schema = "lp1"

// TableSpec is the desired state of one nftables table of family ip.
type TableSpec struct {
	Name     string
	Counters []string // named counter objects
	Sets     []SetSpec
	Chains   []ChainSpec
}

// SetSpec is an IPv4 address interval set.
type SetSpec struct {
	Name     string
	Prefixes []netip.Prefix
}

// ChainSpec is one chain. Hook == nil means a regular chain.
type ChainSpec struct {
	Name     string
	Type     nftables.ChainType
	Hook     *nftables.ChainHook
	Priority *nftables.ChainPriority
	Policy   *nftables.ChainPolicy
	Rules    []Rule
	// Unmanaged chains are created if missing but their rules are owned by
	// someone else and never compared or flushed.
	Unmanaged bool
}

// Rule is a rule and the comment that identifies it (stored as the rule's
// nft comment, visible in `nft list`).
type Rule struct {
	Comment string
	Exprs   []expr.Any
}

func rule(text string, exprs ...expr.Any) Rule {
	return Rule{Comment: schema + ": " + text, Exprs: exprs}
}

// Names of objects in the service router table.
const (
	SetEgressAllow       = "egress_allow"
	SetEgressBlock       = "egress_block"
	CounterEgressBlocked = "egress_blocked"
	ChainForward         = "forward"
	ChainInput           = "input"
	ChainPostrouting     = "postrouting"
	// ChainVPC is jumped to for traffic from environments before the egress
	// rules: it accepts what policy routing steered (ip rule from <env>) to
	// a VPC's hyperplane link.
	ChainVPC = "vpc"
	// HPLinkPrefix starts the name of every hyperplane link in the service
	// router (h<vpc hex>); environments are steered to one by policy
	// routing, never by address, so the link is the VPC.
	HPLinkPrefix = "h"
)

// DefaultEgressBlock is what an environment may never reach (unless allowed
// by the operator): "this" network, RFC 1918, shared address space (which
// contains the service network), loopback, link-local (including the cloud
// metadata address 169.254.169.254), IETF protocol assignments, benchmarking,
// multicast and reserved. Documentation ranges (192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24) are deliberately not blocked.
func DefaultEgressBlock() []netip.Prefix {
	return mustPrefixes("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
		"169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16",
		"198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4")
}

func mustPrefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// SvcConfig parameterises the service router table.
type SvcConfig struct {
	Table       string         // table name, the platform prefix ("lp")
	ServiceCIDR netip.Prefix   // environments' addresses
	Uplink      string         // uplink interface name inside the service router
	EgressAllow []netip.Prefix // operator allow-list, wins over EgressBlock
	EgressBlock []netip.Prefix // nil = DefaultEgressBlock()
	// APIAddr, when valid, is the platform endpoint: environments (and
	// VPCs' internet gateways) may open TCP connections to APIAddr:APIPort
	// through APILink, the link of the endpoint's namespace, which itself
	// may originate nothing.
	APIAddr netip.Addr
	APIPort uint16
	APILink string
}

// SvcTable returns the service router's table:
//
//	table ip <prefix> {
//	  counter egress_blocked
//	  set egress_allow { type ipv4_addr; flags interval; }
//	  set egress_block { type ipv4_addr; flags interval; }
//	  chain vpc { oifname "h*" accept }   # steered to a VPC's hyperplane link
//	  chain forward { type filter hook forward priority filter; policy drop;
//	    ct state established,related accept
//	    ct state invalid drop
//	    iifname <api> drop                        # the API endpoint only answers
//	    ip daddr <api addr> tcp dport <port> oifname <api> accept
//	    oifname <api> drop
//	    ip daddr <svc> drop                       # envs cannot reach each other
//	    ip saddr <svc> jump vpc
//	    ip saddr <svc> ip daddr @egress_allow oifname <uplink> accept
//	    ip saddr <svc> ip daddr @egress_block counter name egress_blocked drop
//	    ip saddr <svc> oifname <uplink> accept }
//	  chain input { type filter hook input priority filter; policy accept;
//	    ct state established,related accept
//	    iifname lo accept
//	    ip saddr <svc> drop                       # envs cannot reach svc
//	    iifname <uplink> drop }
//	  chain postrouting { type nat hook postrouting priority srcnat;
//	    oifname <uplink> masquerade }
//	}
func SvcTable(c SvcConfig) (TableSpec, error) {
	if c.Table == "" || c.Uplink == "" || !c.ServiceCIDR.IsValid() || !c.ServiceCIDR.Addr().Is4() {
		return TableSpec{}, fmt.Errorf("nft: service table needs a name, an uplink and an IPv4 service CIDR (got %q, %q, %v)", c.Table, c.Uplink, c.ServiceCIDR)
	}
	block := c.EgressBlock
	if block == nil {
		block = DefaultEgressBlock()
	}
	for _, p := range append(append([]netip.Prefix{}, block...), c.EgressAllow...) {
		if !p.IsValid() || !p.Addr().Is4() {
			return TableSpec{}, fmt.Errorf("nft: egress prefix %v is not an IPv4 prefix", p)
		}
	}
	svc := c.ServiceCIDR.Masked()
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	ctEstRel := ctStateIn(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	fromSvc := ipPrefix(offSaddr, svc, false)
	forward := []Rule{
		rule("ct state established,related accept", cat(ctEstRel, accept)...),
		rule("ct state invalid drop", cat(ctStateIn(expr.CtStateBitINVALID), drop)...),
	}
	if c.APIAddr.IsValid() {
		if !c.APIAddr.Is4() || c.APILink == "" || c.APIPort == 0 {
			return TableSpec{}, fmt.Errorf("nft: the API endpoint needs an IPv4 address, a port and a link (got %v, %d, %q)", c.APIAddr, c.APIPort, c.APILink)
		}
		forward = append(forward,
			rule(fmt.Sprintf("iifname %s drop", c.APILink), cat(ifname(expr.MetaKeyIIFNAME, c.APILink), drop)...),
			rule(fmt.Sprintf("ip daddr %v tcp dport %d oifname %s accept", c.APIAddr, c.APIPort, c.APILink),
				cat(ipPrefix(offDaddr, netip.PrefixFrom(c.APIAddr, 32), false), tcpDport(c.APIPort), ifname(expr.MetaKeyOIFNAME, c.APILink), accept)...),
			rule(fmt.Sprintf("oifname %s drop", c.APILink), cat(ifname(expr.MetaKeyOIFNAME, c.APILink), drop)...),
		)
	}
	forward = append(forward,
		rule(fmt.Sprintf("ip daddr %v drop", svc), cat(ipPrefix(offDaddr, svc, false), drop)...),
		rule(fmt.Sprintf("ip saddr %v jump %s", svc, ChainVPC), cat(fromSvc, &expr.Verdict{Kind: expr.VerdictJump, Chain: ChainVPC})...),
		rule(fmt.Sprintf("ip saddr %v ip daddr @%s oifname %s accept", svc, SetEgressAllow, c.Uplink),
			cat(fromSvc, ipInSet(offDaddr, SetEgressAllow), ifname(expr.MetaKeyOIFNAME, c.Uplink), accept)...),
		rule(fmt.Sprintf("ip saddr %v ip daddr @%s counter name %s drop", svc, SetEgressBlock, CounterEgressBlocked),
			cat(fromSvc, ipInSet(offDaddr, SetEgressBlock), objCounter(CounterEgressBlocked), drop)...),
		rule(fmt.Sprintf("ip saddr %v oifname %s accept", svc, c.Uplink),
			cat(fromSvc, ifname(expr.MetaKeyOIFNAME, c.Uplink), accept)...),
	)
	return TableSpec{
		Name:     c.Table,
		Counters: []string{CounterEgressBlocked},
		Sets: []SetSpec{
			{Name: SetEgressAllow, Prefixes: c.EgressAllow},
			{Name: SetEgressBlock, Prefixes: block},
		},
		Chains: []ChainSpec{
			{Name: ChainVPC, Rules: []Rule{
				rule(fmt.Sprintf("oifname \"%s*\" accept", HPLinkPrefix),
					&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(HPLinkPrefix)}, accept),
			}},
			{
				Name: ChainForward, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookForward,
				Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyDrop),
				Rules: forward,
			},
			{
				Name: ChainInput, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookInput,
				Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyAccept),
				Rules: []Rule{
					rule("ct state established,related accept", cat(ctEstRel, accept)...),
					rule("iifname lo accept", cat(ifname(expr.MetaKeyIIFNAME, "lo"), accept)...),
					rule(fmt.Sprintf("ip saddr %v drop", svc), cat(fromSvc, drop)...),
					rule(fmt.Sprintf("iifname %s drop", c.Uplink), cat(ifname(expr.MetaKeyIIFNAME, c.Uplink), drop)...),
				},
			},
			{
				Name: ChainPostrouting, Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPostrouting,
				Priority: nftables.ChainPriorityNATSource, Policy: policy(nftables.ChainPolicyAccept),
				Rules: []Rule{
					rule(fmt.Sprintf("oifname %s masquerade", c.Uplink), cat(ifname(expr.MetaKeyOIFNAME, c.Uplink), &expr.Masq{})...),
				},
			},
		},
	}, nil
}

// HostConfig parameterises the host table used when the uplink ends in the
// host's root namespace.
type HostConfig struct {
	Table     string       // "<prefix>-host"
	UplinkNet netip.Prefix // the uplink link net
	Uplink    string       // host-side uplink interface name
}

// HostTable returns the host's table:
//
//	table ip <prefix>-host {
//	  chain postrouting { type nat hook postrouting priority srcnat;
//	    ip saddr <uplinknet> oifname != <uplink> masquerade }
//	  chain input { type filter hook input priority filter; policy accept;
//	    iifname <uplink> ct state established,related accept
//	    iifname <uplink> drop }                   # envs never reach host services
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    oifname <uplink> ct state established,related accept
//	    oifname <uplink> drop }                   # nothing routes into the platform
//	}
func HostTable(c HostConfig) (TableSpec, error) {
	if c.Table == "" || c.Uplink == "" || !c.UplinkNet.IsValid() || !c.UplinkNet.Addr().Is4() {
		return TableSpec{}, fmt.Errorf("nft: host table needs a name, an uplink and an IPv4 link net (got %q, %q, %v)", c.Table, c.Uplink, c.UplinkNet)
	}
	n := c.UplinkNet.Masked()
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	ctEstRel := ctStateIn(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	in := ifname(expr.MetaKeyIIFNAME, c.Uplink)
	out := ifname(expr.MetaKeyOIFNAME, c.Uplink)
	return TableSpec{
		Name: c.Table,
		Chains: []ChainSpec{
			{
				Name: ChainPostrouting, Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPostrouting,
				Priority: nftables.ChainPriorityNATSource, Policy: policy(nftables.ChainPolicyAccept),
				Rules: []Rule{
					rule(fmt.Sprintf("ip saddr %v oifname != %s masquerade", n, c.Uplink),
						cat(ipPrefix(offSaddr, n, false), ifnameNeq(expr.MetaKeyOIFNAME, c.Uplink), &expr.Masq{})...),
				},
			},
			{
				Name: ChainInput, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookInput,
				Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyAccept),
				Rules: []Rule{
					rule(fmt.Sprintf("iifname %s ct state established,related accept", c.Uplink), cat(in, ctEstRel, accept)...),
					rule(fmt.Sprintf("iifname %s drop", c.Uplink), cat(in, drop)...),
				},
			},
			{
				Name: "forward", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookForward,
				Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyAccept),
				Rules: []Rule{
					rule(fmt.Sprintf("oifname %s ct state established,related accept", c.Uplink), cat(out, ctEstRel, accept)...),
					rule(fmt.Sprintf("oifname %s drop", c.Uplink), cat(out, drop)...),
				},
			},
		},
	}, nil
}

func policy(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }
