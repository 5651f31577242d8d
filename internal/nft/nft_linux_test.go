package nft

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test cannot run: CI must run as root")
		}
		t.Skip("needs root")
	}
}

func TestIntervalElements(t *testing.T) {
	got := elementKeys(intervalElements(DefaultEgressBlock()))
	want := []string{
		"0.0.0.0", "1.0.0.0/end",
		"10.0.0.0", "11.0.0.0/end",
		"100.64.0.0", "100.128.0.0/end",
		"127.0.0.0", "128.0.0.0/end",
		"169.254.0.0", "169.255.0.0/end",
		"172.16.0.0", "172.32.0.0/end",
		"192.0.0.0", "192.0.1.0/end",
		"192.168.0.0", "192.169.0.0/end",
		"198.18.0.0", "198.20.0.0/end",
		"224.0.0.0", // 224/4 and 240/4 merge and run to the top: no end element
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("elements\n got %v\nwant %v", got, want)
	}
	// Overlap, containment and adjacency merge.
	got = elementKeys(intervalElements(mustPrefixes("10.0.0.0/16", "10.0.1.0/24", "10.1.0.0/16", "192.0.2.7/32")))
	want = []string{"10.0.0.0", "10.2.0.0/end", "192.0.2.7", "192.0.2.8/end"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("merged\n got %v\nwant %v", got, want)
	}
	if n := len(intervalElements(nil)); n != 0 {
		t.Fatalf("empty: %d elements", n)
	}
}

func TestSvcTableSpec(t *testing.T) {
	spec, err := SvcTable(SvcConfig{Table: "lp", ServiceCIDR: netip.MustParsePrefix("100.64.0.0/16"), Uplink: "uplink"})
	if err != nil {
		t.Fatal(err)
	}
	var fwd []string
	for _, c := range spec.Chains {
		if c.Name == ChainForward {
			for _, r := range c.Rules {
				fwd = append(fwd, r.Comment)
			}
		}
	}
	want := []string{
		"lp1: ct state established,related accept",
		"lp1: ct state invalid drop",
		"lp1: ip daddr 100.64.0.0/16 drop",
		"lp1: ip saddr 100.64.0.0/16 jump vpc",
		"lp1: ip saddr 100.64.0.0/16 ip daddr @egress_allow oifname uplink accept",
		"lp1: ip saddr 100.64.0.0/16 ip daddr @egress_block counter name egress_blocked drop",
		"lp1: ip saddr 100.64.0.0/16 oifname uplink accept",
	}
	if !slices.Equal(fwd, want) {
		t.Fatalf("forward rules\n got %q\nwant %q", fwd, want)
	}
	if _, err := SvcTable(SvcConfig{Table: "lp", ServiceCIDR: netip.MustParsePrefix("100.64.0.0/16"), Uplink: "uplink",
		EgressAllow: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}); err == nil {
		t.Fatal("IPv6 allow prefix accepted")
	}
	if _, err := HostTable(HostConfig{Table: "lp-host", UplinkNet: netip.MustParsePrefix("169.254.255.0/30"), Uplink: "lp-up"}); err != nil {
		t.Fatal(err)
	}
}

// tempNetns creates a throwaway named network namespace and returns its path.
func tempNetns(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	name := "lptnft" + hex.EncodeToString(b)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- err
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			return
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			errc <- err // thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	return "/run/netns/" + name
}

func testSpec(allow ...string) TableSpec {
	spec, err := SvcTable(SvcConfig{Table: "lpt", ServiceCIDR: netip.MustParsePrefix("100.64.0.0/16"), Uplink: "uplink",
		EgressAllow: mustPrefixes(allow...)})
	if err != nil {
		panic(err)
	}
	return spec
}

func TestApplyConverges(t *testing.T) {
	requireRoot(t)
	c, err := Open(tempNetns(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	apply := func(spec TableSpec, wantChanged bool) {
		t.Helper()
		changed, err := c.Apply(spec)
		if err != nil {
			t.Fatal(err)
		}
		if changed != wantChanged {
			t.Fatalf("Apply changed=%v, want %v", changed, wantChanged)
		}
	}
	apply(testSpec(), true)
	apply(testSpec(), false) // idempotent

	// The set content round-trips (the reconciler compares it).
	set, err := c.c.GetSetByName(table("lpt"), SetEgressBlock)
	if err != nil {
		t.Fatal(err)
	}
	els, err := c.c.GetSetElements(set)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := elementKeys(els), elementKeys(intervalElements(DefaultEgressBlock())); !slices.Equal(got, want) {
		t.Fatalf("egress_block in kernel %v, want %v", got, want)
	}

	// Allow-list change: only the set changes.
	apply(testSpec("10.9.0.0/16"), true)
	apply(testSpec("10.9.0.0/16"), false)

	// Damage: delete a rule, flush a set, delete a chain; Apply repairs.
	fwd := &nftables.Chain{Table: table("lpt"), Name: ChainForward}
	rules, err := c.c.GetRules(table("lpt"), fwd)
	if err != nil || len(rules) == 0 {
		t.Fatalf("rules: %v %d", err, len(rules))
	}
	if err := c.c.DelRule(rules[2]); err != nil {
		t.Fatal(err)
	}
	c.c.FlushSet(set)
	c.c.FlushChain(&nftables.Chain{Table: table("lpt"), Name: ChainPostrouting})
	c.c.DelChain(&nftables.Chain{Table: table("lpt"), Name: ChainPostrouting})
	if err := c.c.Flush(); err != nil {
		t.Fatal(err)
	}
	apply(testSpec("10.9.0.0/16"), true)
	apply(testSpec("10.9.0.0/16"), false)

	// Incompatible chain (wrong policy) forces a rebuild; the result converges.
	c.c.AddChain(&nftables.Chain{Table: table("lpt"), Name: ChainInput, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyDrop)})
	if err := c.c.Flush(); err != nil {
		t.Fatal(err)
	}
	apply(testSpec("10.9.0.0/16"), true)
	apply(testSpec("10.9.0.0/16"), false)

	if n, err := c.CounterPackets("lpt", CounterEgressBlocked); err != nil || n != 0 {
		t.Fatalf("counter = %d, %v", n, err)
	}
	if err := c.DeleteTable("lpt"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTable("lpt"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if ok, err := c.HasTable("lpt"); err != nil || ok {
		t.Fatalf("table still there: %v %v", ok, err)
	}
}
