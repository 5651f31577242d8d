package vpc

import (
	"context"
	"net/netip"
	"testing"
)

// TestOpenRecoversInterruptedOperations: the record states a process killed
// between two writes of one operation leaves are completed or undone when
// the model is opened again, so every request works on them afterwards.
func TestOpenRecoversInterruptedOperations(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	m, err := Open(ctx, st, quiet())
	if err != nil {
		t.Fatal(err)
	}
	// 1. DeleteVpc killed after marking the VPC deleting.
	gone := mustVPC(t, m, acctA, "10.1.0.0/16")
	if _, err := update(ctx, m.vpcs, acctA, gone.ID, nfVPC, func(v *VPC) error { v.State = "deleting"; return nil }); err != nil {
		t.Fatal(err)
	}
	// 2. CreateSubnet killed after registering the subnet on its VPC.
	reg := mustVPC(t, m, acctA, "10.2.0.0/16")
	if _, err := update(ctx, m.vpcs, acctA, reg.ID, nfVPC, func(v *VPC) error {
		v.Subnets = map[string]string{"subnet-0123456789abcdef0": "10.2.1.0/24"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// 3. DeleteSubnet killed after marking its address record deleted.
	half := mustVPC(t, m, acctA, "10.3.0.0/16")
	sub, err := m.CreateSubnet(ctx, acctA, SubnetRequest{VpcID: half.ID, CidrBlock: "10.3.1.0/24", AvailabilityZone: "us-east-1a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := update(ctx, m.ipam, acctA, sub.ID, nfSubnet, func(r *ipamRecord) error { r.Deleted = true; return nil }); err != nil {
		t.Fatal(err)
	}
	// 4. CreateInterface killed after allocating its address, and
	// DeleteInterface after deleting the interface record.
	keep := mustVPC(t, m, acctA, "10.4.0.0/16")
	ksub, err := m.CreateSubnet(ctx, acctA, SubnetRequest{VpcID: keep.ID, CidrBlock: "10.4.1.0/24", AvailabilityZone: "us-east-1a"})
	if err != nil {
		t.Fatal(err)
	}
	free := ksub.AvailableIPs
	if _, err := m.allocate(ctx, acctA, ksub.ID, "eni-0000000000000000a", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	n, err := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: ksub.ID})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: ksub.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.enis.Delete(ctx, key(acctA, n.ID)); err != nil {
		t.Fatal(err)
	}
	// 5. CreateSecurityGroup killed after reserving the name.
	if _, err := m.names.Create(ctx, groupNameKey(acctA, keep.ID, "web"), &nameIndex{GroupID: "sg-0000000000000000b"}); err != nil {
		t.Fatal(err)
	}
	// 6. CreateVpc killed before its VPC record: a default group and a
	// main route table of no VPC.
	if _, err := m.sgs.Create(ctx, key(acctA, "sg-0000000000000000c"), &SecurityGroup{ID: "sg-0000000000000000c", AccountID: acctA, VpcID: "vpc-0000000000000000d", Name: DefaultGroupName}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.rtbs.Create(ctx, key(acctA, "rtb-0000000000000000e"), &RouteTable{ID: "rtb-0000000000000000e", AccountID: acctA, VpcID: "vpc-0000000000000000d", Main: true}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	if m, err = Open(ctx, st, quiet()); err != nil {
		t.Fatal(err)
	}
	vpcs, err := m.ListVPCs(ctx, acctA)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vpcs {
		if v.ID == gone.ID {
			t.Errorf("the VPC whose deletion was interrupted is still listed (%s)", v.State)
		}
	}
	gs, _ := m.ListSecurityGroups(ctx, acctA)
	for _, g := range gs {
		if g.VpcID == gone.ID || g.ID == "sg-0000000000000000c" {
			t.Errorf("group %s of no VPC is still listed", g.ID)
		}
	}
	if _, err := m.GetRouteTable(ctx, acctA, "rtb-0000000000000000e"); err == nil {
		t.Error("the route table of no VPC is still there")
	}
	if err := m.DeleteVPC(ctx, acctA, reg.ID); err != nil {
		t.Errorf("a VPC whose subnet creation was interrupted cannot be deleted: %v", err)
	}
	if _, err := m.GetSubnet(ctx, acctA, sub.ID); err == nil {
		t.Error("the subnet whose deletion was interrupted is still there")
	}
	if err := m.DeleteVPC(ctx, acctA, half.ID); err != nil {
		t.Errorf("the VPC of a subnet whose deletion was interrupted cannot be deleted: %v", err)
	}
	s, err := m.GetSubnet(ctx, acctA, ksub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.AvailableIPs != free-1 {
		t.Errorf("%d free addresses with one interface (%s), want %d", s.AvailableIPs, kept.ID, free-1)
	}
	if _, err := m.CreateSecurityGroup(ctx, acctA, GroupRequest{VpcID: keep.ID, Name: "web", Description: "web"}); err != nil {
		t.Errorf("a group name whose creation was interrupted cannot be used: %v", err)
	}
}
