package vpc

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIPAMSlash28OffersEleven(t *testing.T) {
	rec := &ipamRecord{SubnetID: "subnet-0123456789abcdef0", CidrBlock: "10.0.1.0/28"}
	if got := rec.available(); got != 11 {
		t.Fatalf("available on a fresh /28 = %d, want 11", got)
	}
	seen := map[netip.Addr]bool{}
	for i := 0; i < 11; i++ {
		a, err := rec.allocate("eni-x", netip.Addr{})
		if err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
		if seen[a] {
			t.Fatalf("address %s handed out twice", a)
		}
		seen[a] = true
		if !assignable(netip.MustParsePrefix("10.0.1.0/28"), a) {
			t.Fatalf("allocated reserved address %s", a)
		}
	}
	if !seen[netip.MustParseAddr("10.0.1.4")] || !seen[netip.MustParseAddr("10.0.1.14")] {
		t.Fatalf("expected 10.0.1.4..10.0.1.14, got %v", seen)
	}
	_, err := rec.allocate("eni-y", netip.Addr{})
	if !IsCode(err, CodeInsufficientFreeAddresses) {
		t.Fatalf("12th allocation: err = %v, want %s", err, CodeInsufficientFreeAddresses)
	}
	if !strings.Contains(err.Error(), "subnet-0123456789abcdef0") {
		t.Fatalf("exhaustion message does not name the subnet: %v", err)
	}
	if rec.available() != 0 {
		t.Fatalf("available = %d, want 0", rec.available())
	}
	if !rec.release("10.0.1.9", "eni-x") {
		t.Fatal("release failed")
	}
	a, err := rec.allocate("eni-z", netip.Addr{})
	if err != nil || a != netip.MustParseAddr("10.0.1.9") {
		t.Fatalf("after release got %v, %v; want 10.0.1.9", a, err)
	}
}

func TestIPAMExplicitAddress(t *testing.T) {
	rec := &ipamRecord{SubnetID: "subnet-1", CidrBlock: "10.0.1.0/24"}
	want := netip.MustParseAddr("10.0.1.50")
	a, err := rec.allocate("eni-a", want)
	if err != nil || a != want {
		t.Fatalf("explicit: %v %v", a, err)
	}
	if _, err := rec.allocate("eni-b", want); !IsCode(err, CodeIPInUse) {
		t.Fatalf("same address again: %v, want %s", err, CodeIPInUse)
	}
	for _, bad := range []string{"10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.255", "10.0.2.5"} {
		if _, err := rec.allocate("eni-c", netip.MustParseAddr(bad)); !IsCode(err, CodeInvalidParameterValue) {
			t.Errorf("%s: err = %v, want %s", bad, err, CodeInvalidParameterValue)
		}
	}
	// Automatic allocation skips the explicitly taken one.
	for i := 0; i < 250; i++ {
		a, err := rec.allocate("eni-d", netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		if a == want {
			t.Fatal("automatic allocation returned an address in use")
		}
	}
	if _, err := rec.allocate("eni-e", netip.Addr{}); !IsCode(err, CodeInsufficientFreeAddresses) {
		t.Fatalf("want exhaustion after 251 on a /24, got %v", err)
	}
}

func TestUsableAndGateway(t *testing.T) {
	for cidr, n := range map[string]int{"10.0.0.0/16": 65531, "10.0.0.0/24": 251, "10.0.0.0/28": 11} {
		if got := UsableAddresses(netip.MustParsePrefix(cidr)); got != n {
			t.Errorf("UsableAddresses(%s) = %d, want %d", cidr, got, n)
		}
	}
	if g := GatewayAddress(netip.MustParsePrefix("10.0.1.0/24")); g.String() != "10.0.1.1" {
		t.Errorf("gateway = %s", g)
	}
}

func TestParseCIDR(t *testing.T) {
	if _, err := parseCIDR("CidrBlock", ""); !IsCode(err, CodeMissingParameter) {
		t.Errorf("empty: %v", err)
	}
	for _, bad := range []string{"10.0.0.1/16", "nope", "fd00::/64", "10.0.0.0"} {
		if _, err := parseCIDR("CidrBlock", bad); !IsCode(err, CodeInvalidParameterValue) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestValidID(t *testing.T) {
	id := NewID(PrefixVPC)
	if len(id) != len("vpc-")+17 || !validID(PrefixVPC, id) {
		t.Fatalf("bad id %q", id)
	}
	mac := newMAC()
	if len(mac) != 17 {
		t.Fatalf("bad mac %q", mac)
	}
	var first byte
	for i, c := range []byte(mac[:2]) {
		v := c - '0'
		if c >= 'a' {
			v = c - 'a' + 10
		}
		first |= v << (4 * (1 - i))
	}
	if first&0x02 == 0 || first&0x01 != 0 {
		t.Fatalf("mac %s is not unicast locally administered", mac)
	}
}
