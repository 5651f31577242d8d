package netdev

import (
	"net/netip"
	"testing"
)

func TestDiffIfaces(t *testing.T) {
	a := IfaceSpec{ID: "eni-a", Addr: netip.MustParseAddr("10.0.1.4")}
	b := IfaceSpec{ID: "eni-b", Addr: netip.MustParseAddr("10.0.1.5")}
	b2 := b
	b2.Addr = netip.MustParseAddr("10.0.1.6")
	bg := b
	bg.Groups = []string{"x"}
	d := DiffIfaces([]IfaceSpec{a, b}, []IfaceSpec{b2})
	if len(d.Add) != 1 || d.Add[0].Addr != b2.Addr || len(d.Del) != 2 {
		t.Fatalf("%+v", d)
	}
	if d := DiffIfaces([]IfaceSpec{b}, []IfaceSpec{bg}); len(d.Add)+len(d.Del) != 0 {
		t.Fatalf("a group change is nft-only: %+v", d)
	}
	if got := ifaceLink("eni-0123456789abcdef0"); got != "i0123456789abcd" || len(got) > 15 {
		t.Fatalf("link name %q", got)
	}
	tables := subnetTables([]SubnetSpec{{ID: "subnet-1"}, {ID: "subnet-2"}})
	if tables["subnet-1"] == tables["subnet-2"] || tables["subnet-1"] < tableBase {
		t.Fatalf("tables %v", tables)
	}
}
