package nft

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func baseVPC() VPCTable {
	return VPCTable{Name: "lp", IGWLink: "igw",
		Groups: []SecurityGroup{
			{ID: "a", Members: addrs("10.0.1.4", "10.0.1.5"), Ingress: []SGRule{{Proto: 6, FromPort: 22, ToPort: 22, Group: "b"}}},
			{ID: "b", Members: addrs("10.0.1.6"), Egress: []SGRule{{Proto: ProtoAll, CIDR: netip.MustParsePrefix("0.0.0.0/0")}}},
		},
		Ifaces: []VPCIface{{Link: "i1", Groups: []string{"a"}}, {Link: "i2", Groups: []string{"b"}}},
	}
}

// A member joining or leaving is one element change: no chain or rule.
func TestDiffVPCMembership(t *testing.T) {
	old, new := baseVPC(), baseVPC()
	new.Groups[1].Members = addrs("10.0.1.6", "10.0.1.7")
	new.Groups[0].Members = addrs("10.0.1.5")
	d := DiffVPC(old, new)
	if d.Replace || len(d.SetRules) != 0 || len(d.AddChains)+len(d.DelChains)+len(d.AddIfaces)+len(d.DelIfaces) != 0 {
		t.Fatalf("membership change touches chains: %+v", d)
	}
	if !slices.Equal(d.AddElems["m_b"], addrs("10.0.1.7")) || !slices.Equal(d.DelElems["m_a"], addrs("10.0.1.4")) {
		t.Fatalf("elements: add %v del %v", d.AddElems, d.DelElems)
	}
	if !DiffVPC(new, new).Empty() {
		t.Fatal("equal tables differ")
	}
}

// A rule change rebuilds only its group's chain; an interface is two map
// elements and two chains.
func TestDiffVPCRulesAndIfaces(t *testing.T) {
	old, new := baseVPC(), baseVPC()
	new.Groups[0].Ingress = append(slices.Clone(new.Groups[0].Ingress), SGRule{Proto: 17, FromPort: 53, ToPort: 53, CIDR: netip.MustParsePrefix("10.0.0.0/16")})
	d := DiffVPC(old, new)
	if len(d.SetRules) != 1 || d.SetRules["gi_a"] == nil || len(d.SetRules["gi_a"]) != 2 {
		t.Fatalf("rule change: %+v", d.SetRules)
	}
	new = baseVPC()
	new.Ifaces = append(new.Ifaces, VPCIface{Link: "i3", Groups: []string{"a", "b"}})
	d = DiffVPC(old, new)
	if !slices.Equal(d.AddIfaces, []string{"i3"}) || !slices.Equal(d.AddChains, []string{"i_i3", "o_i3"}) || len(d.SetRules["i_i3"]) != 3 {
		t.Fatalf("interface add: %+v", d)
	}
	d = DiffVPC(new, old)
	if !slices.Equal(d.DelIfaces, []string{"i3"}) || !slices.Equal(d.DelChains, []string{"i_i3", "o_i3"}) {
		t.Fatalf("interface delete: %+v", d)
	}
	// A group going away rebuilds what referenced it and deletes its objects.
	new = baseVPC()
	new.Groups = new.Groups[:1]
	new.Ifaces = new.Ifaces[:1]
	d = DiffVPC(old, new)
	if rs, ok := d.SetRules["gi_a"]; !slices.Equal(d.DelSets, []string{"m_b"}) || !ok || len(rs) != 0 {
		t.Fatalf("group delete: %+v", d)
	}
}

func TestRuleText(t *testing.T) {
	for _, c := range []struct {
		r       SGRule
		ingress bool
		want    string
	}{
		{SGRule{Proto: 6, FromPort: 6379, ToPort: 6379, Group: "x"}, true, "tcp 6379:6379 from @m_x accept"},
		{SGRule{Proto: ProtoAll, CIDR: netip.MustParsePrefix("0.0.0.0/0")}, false, "all to 0.0.0.0/0 accept"},
		{SGRule{Proto: 1, FromPort: -1, ToPort: -1, CIDR: netip.MustParsePrefix("10.1.2.3/16")}, true, "icmp -1:-1 from 10.1.0.0/16 accept"},
		{SGRule{Proto: 47, CIDR: netip.MustParsePrefix("10.0.0.0/8")}, true, "proto 47 from 10.0.0.0/8 accept"},
	} {
		if got := ruleText(c.r, c.ingress); got != c.want {
			t.Errorf("%+v: %q, want %q", c.r, got, c.want)
		}
	}
}

// Hyperplane ENIs change the table only at function create/update: a new
// or removed ENI rebuilds it; attachments never appear in a diff.
func TestDiffVPCLambdas(t *testing.T) {
	old, new := baseVPC(), baseVPC()
	old.HPLink, new.HPLink = "hp", "hp"
	l := VPCLambda{Mark: 0x0a000104, Addr: netip.MustParseAddr("10.0.1.4"), Chain: "l1", Groups: []string{"a"}}
	new.Lambdas = []VPCLambda{l}
	if d := DiffVPC(old, new); !d.Replace {
		t.Fatalf("new ENI: %+v, want a rebuild", d)
	}
	old.Lambdas = []VPCLambda{l}
	new.Attached = []VPCAttach{{Env: netip.MustParseAddr("100.64.0.2"), Mark: l.Mark}}
	if d := DiffVPC(old, new); !d.Empty() {
		t.Fatalf("an attachment shows in the diff: %+v", d)
	}
	if _, ok := vpcChains(new)["o_l1"]; !ok {
		t.Fatal("no egress chain for the ENI")
	}
}

// The per-packet Hyperplane chains and the NAT chain are in the table only
// while something uses them; attaching an internet gateway rebuilds it.
func TestVPCBaseChainsOnlyWhenUsed(t *testing.T) {
	chains := func(v VPCTable) map[string][]string {
		out := map[string][]string{}
		for _, c := range vpcBaseChains(v) {
			for _, r := range c.Rules {
				out[c.Name] = append(out[c.Name], strings.TrimPrefix(r.Comment, schema+": "))
			}
			if len(c.Rules) == 0 {
				out[c.Name] = nil
			}
		}
		return out
	}
	plain := baseVPC()
	got := chains(plain)
	for _, n := range []string{ChainForward, ChainSGIngress, ChainInput} {
		if _, ok := got[n]; !ok {
			t.Errorf("no %s chain without IGW and Hyperplane ENIs: %v", n, got)
		}
	}
	for _, n := range []string{ChainNATPost, ChainHPMark, ChainHPOut} {
		if _, ok := got[n]; ok {
			t.Errorf("%s chain without IGW and Hyperplane ENIs: %v", n, got[n])
		}
	}
	igw := baseVPC()
	igw.IGW = true
	if r := chains(igw)[ChainNATPost]; !slices.Equal(r, []string{"oifname igw masquerade"}) {
		t.Errorf("natpost with an IGW: %q", r)
	}
	if !DiffVPC(plain, igw).Replace {
		t.Error("attaching the IGW does not rebuild the table")
	}
	hp := baseVPC()
	hp.HPLink = "hp"
	got = chains(hp)
	if r := got[ChainNATPost]; len(r) != 1 || !strings.HasPrefix(r[0], "meta mark != 0 snat") {
		t.Errorf("natpost with Hyperplane ENIs and no IGW: %q", r)
	}
	if _, ok := got[ChainHPMark]; !ok {
		t.Errorf("no %s chain with a hyperplane link: %v", ChainHPMark, got)
	}
	hp.IGW = true
	if r := chains(hp)[ChainNATPost]; len(r) != 2 || r[1] != "oifname igw masquerade" {
		t.Errorf("natpost with both: %q", r)
	}
}
