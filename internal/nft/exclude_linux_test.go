package nft

import (
	"net/netip"
	"testing"
)

func TestExcludeAddrs(t *testing.T) {
	a := netip.MustParseAddr("169.254.100.1")
	out := ExcludeAddrs([]netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("10.0.0.0/8")}, a)
	if len(out) != 17 {
		t.Fatalf("%d prefixes: %v", len(out), out)
	}
	for _, p := range out {
		if p.Contains(a) {
			t.Fatalf("%v still holds %v", p, a)
		}
	}
	for _, x := range []string{"169.254.100.0", "169.254.100.2", "169.254.0.1", "169.254.255.255", "10.1.2.3"} {
		held := false
		for _, p := range out {
			held = held || p.Contains(netip.MustParseAddr(x))
		}
		if !held {
			t.Errorf("%s no longer held", x)
		}
	}
}
