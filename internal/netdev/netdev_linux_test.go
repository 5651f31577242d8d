package netdev

import (
	"errors"
	"net/netip"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Prefix != "lp" || c.ServiceCIDR.String() != "100.64.0.0/16" || c.UplinkNet.String() != "169.254.255.0/30" || c.PoolSize != 8 {
		t.Fatalf("defaults: %+v", c)
	}
	svc, out := uplinkAddrs(c.UplinkNet)
	if svc.String() != "169.254.255.1/30" || out.String() != "169.254.255.2/30" {
		t.Fatalf("uplink addrs %v %v", svc, out)
	}
	if c, _ := (Config{PoolSize: -1}).withDefaults(); c.PoolSize != 0 {
		t.Fatalf("negative pool size -> %d", c.PoolSize)
	}
	for _, bad := range []Config{
		{Prefix: "lp-x"},
		{Prefix: "abcdefghijklm"}, // 13 > 12
		{Prefix: "1lp"},
		{ServiceCIDR: netip.MustParsePrefix("2001:db8::/64")},
		{ServiceCIDR: netip.MustParsePrefix("100.64.0.0/31")},
		{ServiceCIDR: netip.MustParsePrefix("169.254.0.0/16")}, // contains the gateway
		{UplinkNet: netip.MustParsePrefix("100.64.1.0/30")},    // overlaps services
		{UplinkNetns: "relative/path"},
		{EgressAllow: []netip.Prefix{netip.MustParsePrefix("::/0")}},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v, want ErrInvalidConfig", bad, err)
		}
	}
	if envName("lp", 12) != "lp-e12" || hostLinkName("abcdefghijkl") != "abcdefghijkl-up" || len(hostLinkName("abcdefghijkl")) > 15 {
		t.Fatal("names")
	}
}

func TestIPAM(t *testing.T) {
	a := newIPAM(netip.MustParsePrefix("10.0.0.0/29")) // 6 usable: .1-.6
	if a.size() != 6 {
		t.Fatalf("size %d", a.size())
	}
	seen := map[netip.Addr]bool{}
	var got []netip.Addr
	for range 6 {
		x, err := a.alloc()
		if err != nil {
			t.Fatal(err)
		}
		if seen[x] || x.String() == "10.0.0.0" || x.String() == "10.0.0.7" {
			t.Fatalf("bad or duplicate address %v", x)
		}
		seen[x] = true
		got = append(got, x)
	}
	if _, err := a.alloc(); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("exhausted: %v", err)
	}
	a.free(got[3])
	if x, err := a.alloc(); err != nil || x != got[3] {
		t.Fatalf("realloc = %v %v, want %v", x, err, got[3])
	}
	// Next-fit: a freed address is not handed out again before the others.
	a.free(got[0])
	a.free(got[1])
	if x, _ := a.alloc(); x != got[0] {
		t.Fatalf("next-fit: got %v want %v", x, got[0])
	}
	if a.reserve(got[2]) || a.inUse() != 5 {
		t.Fatalf("reserve of an address in use succeeded (in use %d)", a.inUse())
	}
	big := newIPAM(netip.MustParsePrefix("100.64.0.0/16"))
	if big.last.String() != "100.64.255.254" || big.first.String() != "100.64.0.1" {
		t.Fatalf("range %v-%v", big.first, big.last)
	}
}
