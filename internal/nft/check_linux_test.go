package nft

import (
	"net/netip"
	"testing"

	"github.com/google/nftables"
)

// Check reports a damaged table without changing it; Apply repairs it.
func TestCheckTableSpec(t *testing.T) {
	requireRoot(t)
	c, err := Open(tempNetns(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spec := NATTable("lpt", "eth0", netip.MustParseAddr("10.0.1.9"), netip.MustParsePrefix("10.0.0.0/16"))
	check := func(want bool) {
		t.Helper()
		same, err := c.Check(spec)
		if err != nil {
			t.Fatal(err)
		}
		if same != want {
			t.Fatalf("Check = %v, want %v", same, want)
		}
	}
	check(false) // no table
	if _, err := c.Apply(spec); err != nil {
		t.Fatal(err)
	}
	check(true)
	ch := &nftables.Chain{Table: table("lpt"), Name: ChainPostrouting}
	rules, err := c.c.GetRules(table("lpt"), ch)
	if err != nil || len(rules) != 1 {
		t.Fatalf("rules: %v %d", err, len(rules))
	}
	if err := c.c.DelRule(rules[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.c.Flush(); err != nil {
		t.Fatal(err)
	}
	check(false)
	check(false) // Check changed nothing
	if changed, err := c.Apply(spec); err != nil || !changed {
		t.Fatalf("Apply after damage: changed=%v %v", changed, err)
	}
	check(true)
}

// CheckVPC finds each kind of damage to a VPC router's table, and nothing
// once ReplaceVPC rebuilt it.
func TestCheckVPCFindsDamage(t *testing.T) {
	requireRoot(t)
	c, err := OpenVPC(tempNetns(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	vt := baseVPC()
	vt.IGW = true
	vt.NATAddrs = addrs("10.0.1.20")
	vt.HPLink = "hp"
	vt.Lambdas = []VPCLambda{{Mark: 0x0a000104, Addr: netip.MustParseAddr("10.0.1.4"), Chain: "l1", Groups: []string{"a"}}}
	vt.Attached = []VPCAttach{{Env: netip.MustParseAddr("100.64.0.2"), Mark: 0x0a000104}, {Env: netip.MustParseAddr("100.64.0.3"), Mark: 0x0a000104}}
	tb := table(vt.Name)
	expect := func(want Drift) {
		t.Helper()
		d, obj, err := c.CheckVPC(vt)
		if err != nil {
			t.Fatal(err)
		}
		if d != want {
			t.Fatalf("CheckVPC = %q (%s), want %q", d, obj, want)
		}
	}
	rebuild := func() {
		t.Helper()
		if err := c.ReplaceVPC(vt); err != nil {
			t.Fatal(err)
		}
		expect(DriftNone)
	}
	damage := func(fn func()) {
		t.Helper()
		fn()
		if err := c.c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	expect(DriftTable) // no table yet
	rebuild()

	damage(func() {
		if err := c.c.SetDeleteElements(addrSet(tb, memberSet("a")), addrElems(addrs("10.0.1.5"))); err != nil {
			t.Fatal(err)
		}
	})
	expect(DriftMembers)
	rebuild()

	if err := c.SetAttach(vt.Name, netip.MustParseAddr("100.64.0.3"), 0x0a000104, true); err != nil {
		t.Fatal(err)
	}
	expect(DriftENIMaps)
	rebuild()
	damage(func() {
		if err := c.c.SetDeleteElements(snatMap(tb), []nftables.SetElement{{Key: markKey(0x0a000104)}}); err != nil {
			t.Fatal(err)
		}
	})
	expect(DriftENIMaps)
	rebuild()

	damage(func() {
		if err := c.c.SetDeleteElements(addrSet(tb, SetNATAddrs), addrElems(vt.NATAddrs)); err != nil {
			t.Fatal(err)
		}
	})
	expect(DriftNAT)
	rebuild()

	damage(func() {
		if err := c.c.SetDeleteElements(vmapSet(tb, MapIngress), []nftables.SetElement{{Key: ifKey("i2")}}); err != nil {
			t.Fatal(err)
		}
	})
	expect(DriftTable)
	rebuild()

	rules, err := c.c.GetRules(tb, &nftables.Chain{Table: tb, Name: ChainForward})
	if err != nil || len(rules) < 3 {
		t.Fatalf("forward rules: %v %d", err, len(rules))
	}
	damage(func() {
		if err := c.c.DelRule(rules[2]); err != nil {
			t.Fatal(err)
		}
	})
	expect(DriftTable)
	rebuild()

	if err := c.DeleteTable(vt.Name); err != nil {
		t.Fatal(err)
	}
	expect(DriftTable)
	rebuild()
}
