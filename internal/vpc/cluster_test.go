package vpc

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// TestVNIs: every VPC gets a VNI, distinct even for two accounts' VPCs
// created at once with the same CIDR; deleting a VPC frees its VNI; a VPC
// without one (made before VNIs) gets one from EnsureVNIs.
func TestVNIs(t *testing.T) {
	m := newModel(t)
	ctx := context.Background()
	var mu sync.Mutex
	seen := map[uint32]string{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := "11111111111" + string(rune('0'+i%2))
			v, err := m.CreateVPC(ctx, acct, VPCRequest{CidrBlock: "10.0.0.0/16"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if v.VNI == 0 || v.VNI > MaxVNI {
				t.Errorf("VNI %d", v.VNI)
			}
			if o, ok := seen[v.VNI]; ok {
				t.Errorf("VNI %d given to %s and %s", v.VNI, o, v.ID)
			}
			seen[v.VNI] = v.ID
		}()
	}
	wg.Wait()
	v := mustVPC(t, m, "222222222222", "10.1.0.0/16")
	if got, err := m.GetVPC(ctx, "222222222222", v.ID); err != nil || got.VNI != v.VNI {
		t.Fatalf("stored VNI %+v %v, want %d", got, err, v.VNI)
	}
	if err := m.DeleteVPC(ctx, "222222222222", v.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.vnis.Get(ctx, vniKey(v.VNI)); err == nil {
		t.Errorf("VNI %d still reserved after the VPC was deleted", v.VNI)
	}
	// A VPC of before: no VNI.
	old := mustVPC(t, m, "333333333333", "10.2.0.0/16")
	if _, err := update(ctx, m.vpcs, old.AccountID, old.ID, nfVPC, func(v *VPC) error { v.VNI = 0; return nil }); err != nil {
		t.Fatal(err)
	}
	if n, err := m.EnsureVNIs(ctx); err != nil || n != 1 {
		t.Fatalf("EnsureVNIs gave %d (%v), want 1", n, err)
	}
	if got, _ := m.GetVPC(ctx, old.AccountID, old.ID); got.VNI == 0 {
		t.Error("EnsureVNIs left the VPC without a VNI")
	}
	if n, err := m.EnsureVNIs(ctx); err != nil || n != 0 {
		t.Fatalf("second EnsureVNIs gave %d (%v)", n, err)
	}
}

// TestRehomeInterfaces: interfaces are homed where they were created;
// the leader moves a dead host's interfaces (same id, same address) and
// leaves the live ones; the desired state carries homes and VNIs.
func TestRehomeInterfaces(t *testing.T) {
	m := newModel(t)
	ctx := context.Background()
	v := mustVPC(t, m, "111111111111", "10.0.0.0/16")
	sub, err := m.CreateSubnet(ctx, v.AccountID, SubnetRequest{VpcID: v.ID, CidrBlock: "10.0.1.0/24", AvailabilityZone: "us-east-1a"})
	if err != nil {
		t.Fatal(err)
	}
	m.SetHome("h1")
	a, err := m.CreateInterface(ctx, v.AccountID, InterfaceRequest{SubnetID: sub.ID})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.CreateInterface(ctx, v.AccountID, InterfaceRequest{SubnetID: sub.ID, Home: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Home != "h1" || b.Home != "h2" {
		t.Fatalf("homes %q %q", a.Home, b.Home)
	}
	alive := func(h string) bool { return h != "h2" }
	moved, err := m.RehomeInterfaces(ctx, alive, func(string) string { return "h3" })
	if err != nil || !slices.Equal(moved, []string{b.ID}) {
		t.Fatalf("moved %v (%v), want [%s]", moved, err, b.ID)
	}
	got, err := m.GetInterface(ctx, v.AccountID, b.ID)
	if err != nil || got.Home != "h3" || got.PrivateIP != b.PrivateIP {
		t.Fatalf("after rehome: %+v %v", got, err)
	}
	if err := m.SetInterfaceHome(ctx, v.AccountID, a.ID, "h3"); err != nil {
		t.Fatal(err)
	}
	ds, err := m.Desired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.VPCs) != 1 || ds.VPCs[0].VNI != v.VNI || v.VNI == 0 {
		t.Fatalf("desired VNI: %+v, want %d", ds.VPCs, v.VNI)
	}
	for _, di := range ds.VPCs[0].Interfaces {
		if di.Home != "h3" {
			t.Errorf("desired interface %s home %q, want h3", di.ID, di.Home)
		}
	}
}
