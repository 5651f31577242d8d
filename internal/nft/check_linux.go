package nft

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// Drift says which part of a VPC router's table differs from the desired
// state (CheckVPC). Callers map it to what they count as repaired.
type Drift string

// Drifts of CheckVPC.
const (
	DriftNone    Drift = ""
	DriftTable   Drift = "table"   // the table, a chain, a base chain's rules, a set or an interface map element
	DriftMembers Drift = "members" // a security group's member set (m_<sg>)
	DriftENIMaps Drift = "eni"     // env2eni, eni_snat or eni_egress
	DriftNAT     Drift = "nat"     // nat_addrs (the NAT gateways' addresses)
)

// CheckVPC compares table t.Name in the kernel with t (t.Attached is the
// expected env2eni) without changing anything, and reports the first
// difference found and the object it is in. It reads the table's chains,
// the rules of its base chains and every set's elements; the rules inside
// group and interface chains are not read (their chains must exist).
func (c *Conn) CheckVPC(t VPCTable) (Drift, string, error) {
	if err := t.valid(); err != nil {
		return DriftNone, "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	have, err := c.findTable(t.Name)
	if err != nil {
		return DriftNone, "", err
	}
	if have == nil {
		return DriftTable, "table ip " + t.Name, nil
	}
	tb := table(t.Name)

	// Chains: exactly the expected names; base chains with their rules.
	all, err := c.c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return DriftNone, "", fmt.Errorf("nft: list chains: %w", err)
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range all {
		if ch.Table != nil && ch.Table.Name == t.Name {
			chains[ch.Name] = ch
		}
	}
	want := vpcChainNames(t)
	base := vpcBaseChains(t)
	for _, cs := range base {
		want[cs.Name] = true
	}
	for n := range want {
		if chains[n] == nil {
			return DriftTable, "chain " + n, nil
		}
	}
	for n := range chains {
		if !want[n] {
			return DriftTable, "chain " + n + " (not wanted)", nil
		}
	}
	for _, cs := range base {
		if !sameChain(chains[cs.Name], cs) {
			return DriftTable, "chain " + cs.Name, nil
		}
		rules, err := c.c.GetRules(tb, chains[cs.Name])
		if err != nil {
			return DriftNone, "", fmt.Errorf("nft: list rules of chain %s: %w", cs.Name, err)
		}
		if !sameRules(rules, cs.Rules) {
			return DriftTable, "rules of chain " + cs.Name, nil
		}
	}

	// Sets and maps with their elements.
	sets, err := c.c.GetSets(tb)
	if err != nil {
		return DriftNone, "", fmt.Errorf("nft: list sets: %w", err)
	}
	byName := map[string]*nftables.Set{}
	for _, s := range sets {
		byName[s.Name] = s
	}
	type check struct {
		name  string
		drift Drift
		want  []string // element keys (and values), sorted
		keyFn func(nftables.SetElement) string
	}
	block := t.IGWBlock
	if block == nil {
		block = DefaultEgressBlock()
	}
	checks := []check{
		{name: SetIGWBlock, drift: DriftTable, want: elementKeys(intervalElements(block))},
		{name: SetNATAddrs, drift: DriftNAT, want: addrStrings(t.NATAddrs), keyFn: addrElemKey},
	}
	for _, g := range t.Groups {
		checks = append(checks, check{name: memberSet(g.ID), drift: DriftMembers, want: addrStrings(g.Members), keyFn: addrElemKey})
	}
	var links []string
	for _, i := range t.Ifaces {
		links = append(links, i.Link)
	}
	checks = append(checks,
		check{name: MapEgress, drift: DriftTable, want: jumpStrings(links), keyFn: jumpElemKey},
		check{name: MapIngress, drift: DriftTable, want: jumpStrings(links), keyFn: jumpElemKey})
	if t.HPLink != "" {
		var env, snat, egress []string
		for _, a := range t.Attached {
			env = append(env, fmt.Sprintf("%v>%d", a.Env, a.Mark))
		}
		for _, l := range t.Lambdas {
			snat = append(snat, fmt.Sprintf("%d>%v", l.Mark, l.Addr))
			egress = append(egress, fmt.Sprint(l.Mark))
		}
		checks = append(checks,
			check{name: MapEnvENI, drift: DriftENIMaps, want: sorted(env), keyFn: envElemKey},
			check{name: MapENISNAT, drift: DriftENIMaps, want: sorted(snat), keyFn: snatElemKey},
			check{name: MapENIEgress, drift: DriftENIMaps, want: sorted(egress), keyFn: egressElemKey})
	}
	wantSets := map[string]bool{}
	for _, ck := range checks {
		wantSets[ck.name] = true
		s := byName[ck.name]
		if s == nil {
			return ck.drift, "set " + ck.name, nil
		}
		els, err := c.c.GetSetElements(s)
		if err != nil {
			return DriftNone, "", fmt.Errorf("nft: list elements of set %s: %w", ck.name, err)
		}
		var got []string
		if ck.keyFn == nil {
			got = elementKeys(els)
		} else {
			for _, e := range els {
				got = append(got, ck.keyFn(e))
			}
			slices.Sort(got)
		}
		if !slices.Equal(got, ck.want) {
			return ck.drift, "elements of set " + ck.name, nil
		}
	}
	for n := range byName {
		if !wantSets[n] {
			return DriftTable, "set " + n + " (not wanted)", nil
		}
	}
	return DriftNone, "", nil
}

// vpcChainNames are the names of vpcChains(t), without building rules.
func vpcChainNames(t VPCTable) map[string]bool {
	out := map[string]bool{}
	for _, g := range t.Groups {
		out[groupChain(g.ID, true)], out[groupChain(g.ID, false)] = true, true
	}
	for _, i := range t.Ifaces {
		out[ifaceChain(i.Link, true)], out[ifaceChain(i.Link, false)] = true, true
	}
	if t.HPLink != "" {
		for _, l := range t.Lambdas {
			out[lambdaChain(l)] = true
		}
	}
	return out
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

func addrStrings(as []netip.Addr) []string {
	out := []string{}
	for _, a := range as {
		if a.Is4() {
			out = append(out, a.String())
		}
	}
	return sorted(slices.Compact(out))
}

func addr4(b []byte) netip.Addr {
	if len(b) < 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}

func addrElemKey(e nftables.SetElement) string { return addr4(e.Key).String() }

// jumpStrings are the keys of an interface vmap (the library does not
// decode a verdict map's data, so only keys are compared).
func jumpStrings(links []string) []string {
	out := []string{}
	for _, l := range links {
		out = append(out, string(ifKey(l)))
	}
	return sorted(out)
}

func jumpElemKey(e nftables.SetElement) string {
	k := string(e.Key)
	if len(k) < 16 {
		k += string(make([]byte, 16-len(k)))
	}
	return k
}

func markOf(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binaryutil.NativeEndian.Uint32(b[:4])
}

func envElemKey(e nftables.SetElement) string {
	return fmt.Sprintf("%v>%d", addr4(e.Key), markOf(e.Val))
}

func snatElemKey(e nftables.SetElement) string {
	return fmt.Sprintf("%d>%v", markOf(e.Key), addr4(e.Val))
}

func egressElemKey(e nftables.SetElement) string { return fmt.Sprint(markOf(e.Key)) }
