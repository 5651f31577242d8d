package vpc

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

const (
	acctA = "111111111111"
	acctB = "222222222222"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newModel(t *testing.T) *Model {
	t.Helper()
	st := openStore(t, t.TempDir())
	t.Cleanup(st.Close)
	m, err := Open(context.Background(), st, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustVPC(t *testing.T, m *Model, acct, cidr string) *VPC {
	t.Helper()
	v, err := m.CreateVPC(context.Background(), acct, VPCRequest{CidrBlock: cidr})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustSubnet(t *testing.T, m *Model, acct, vpcID, cidr string) *Subnet {
	t.Helper()
	s, err := m.CreateSubnet(context.Background(), acct, SubnetRequest{VpcID: vpcID, CidrBlock: cidr, AvailabilityZone: "us-east-1a"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCreateVPCDefaults(t *testing.T) {
	ctx := context.Background()
	m := newModel(t)
	v := mustVPC(t, m, acctA, "10.0.0.0/16")
	if !validID(PrefixVPC, v.ID) {
		t.Fatalf("id %s", v.ID)
	}
	g, err := m.GetSecurityGroup(ctx, acctA, v.DefaultSecurityGroupID)
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "default" || len(g.Ingress) != 1 || g.Ingress[0].GroupID != g.ID || g.Ingress[0].Protocol != "-1" ||
		len(g.Egress) != 1 || g.Egress[0].CIDR != "0.0.0.0/0" {
		t.Fatalf("default group: %+v", g)
	}
	rt, err := m.GetRouteTable(ctx, acctA, v.MainRouteTableID)
	if err != nil {
		t.Fatal(err)
	}
	if !rt.Main || len(rt.Routes) != 1 || rt.Routes[0].GatewayID != "local" || rt.Routes[0].DestinationCidrBlock != "10.0.0.0/16" || rt.Routes[0].State != "active" {
		t.Fatalf("main table: %+v", rt)
	}
	for _, bad := range []string{"10.0.0.0/8", "10.0.0.0/29", "10.0.0.0/15"} {
		if _, err := m.CreateVPC(ctx, acctA, VPCRequest{CidrBlock: bad}); !IsCode(err, CodeInvalidVpcRange) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if _, err := m.CreateVPC(ctx, acctA, VPCRequest{}); !IsCode(err, CodeMissingParameter) {
		t.Errorf("missing cidr: %v", err)
	}
}

func TestSubnetValidation(t *testing.T) {
	ctx := context.Background()
	m := newModel(t)
	v := mustVPC(t, m, acctA, "10.0.0.0/16")
	s := mustSubnet(t, m, acctA, v.ID, "10.0.1.0/24")
	if s.AvailableIPs != 251 {
		t.Fatalf("available %d", s.AvailableIPs)
	}
	cases := map[string]string{
		"10.1.0.0/24":   CodeInvalidSubnetRange,    // outside the VPC
		"10.0.0.0/15":   CodeInvalidSubnetRange,    // too big
		"10.0.2.0/29":   CodeInvalidSubnetRange,    // too small
		"10.0.1.128/25": CodeInvalidSubnetConflict, // inside a sibling
		"10.0.0.0/23":   CodeInvalidSubnetConflict, // covers a sibling
	}
	for cidr, code := range cases {
		if _, err := m.CreateSubnet(ctx, acctA, SubnetRequest{VpcID: v.ID, CidrBlock: cidr, AvailabilityZone: "us-east-1a"}); !IsCode(err, code) {
			t.Errorf("%s: %v, want %s", cidr, err, code)
		}
	}
	if _, err := m.CreateSubnet(ctx, acctA, SubnetRequest{VpcID: "vpc-0000000000000000a", CidrBlock: "10.0.9.0/24", AvailabilityZone: "us-east-1a"}); !IsCode(err, CodeVpcNotFound) {
		t.Errorf("unknown vpc: %v", err)
	}
	// The same CIDR in another VPC (and another account) is fine.
	v2 := mustVPC(t, m, acctA, "10.0.0.0/16")
	mustSubnet(t, m, acctA, v2.ID, "10.0.1.0/24")
	vb := mustVPC(t, m, acctB, "10.0.0.0/16")
	mustSubnet(t, m, acctB, vb.ID, "10.0.1.0/24")
}

func TestDependencies(t *testing.T) {
	ctx := context.Background()
	m := newModel(t)
	v := mustVPC(t, m, acctA, "10.0.0.0/16")
	s := mustSubnet(t, m, acctA, v.ID, "10.0.1.0/24")
	app, err := m.CreateSecurityGroup(ctx, acctA, GroupRequest{VpcID: v.ID, Name: "app", Description: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateSecurityGroup(ctx, acctA, GroupRequest{VpcID: v.ID, Name: "app", Description: "again"}); !IsCode(err, CodeInvalidGroupDuplicate) {
		t.Fatalf("duplicate name: %v", err)
	}
	db, err := m.CreateSecurityGroup(ctx, acctA, GroupRequest{VpcID: v.ID, Name: "db", Description: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Authorize(ctx, acctA, db.ID, false, []Permission{{Protocol: "tcp", FromPort: i32(6379), ToPort: i32(6379), Groups: []GroupSource{{GroupID: app.ID}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Authorize(ctx, acctA, db.ID, false, []Permission{{Protocol: "tcp", FromPort: i32(6379), ToPort: i32(6379), Groups: []GroupSource{{GroupName: "app"}}}}); !IsCode(err, CodeInvalidPermDuplicate) {
		t.Fatalf("duplicate rule by name: %v", err)
	}
	n, err := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: s.ID, GroupIDs: []string{app.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if n.Status != StatusAvailable || n.PrivateIP != "10.0.1.4" || n.InterfaceType != "interface" {
		t.Fatalf("eni: %+v", n)
	}
	if err := m.DeleteVPC(ctx, acctA, v.ID); !IsCode(err, CodeDependencyViolation) {
		t.Fatalf("delete vpc with stuff: %v", err)
	}
	if err := m.DeleteSubnet(ctx, acctA, s.ID); !IsCode(err, CodeDependencyViolation) {
		t.Fatalf("delete subnet with eni: %v", err)
	}
	if err := m.DeleteSecurityGroup(ctx, acctA, app.ID); !IsCode(err, CodeDependencyViolation) {
		t.Fatalf("delete sg used by eni/rule: %v", err)
	}
	if err := m.DeleteSecurityGroup(ctx, acctA, v.DefaultSecurityGroupID); !IsCode(err, CodeCannotDelete) {
		t.Fatalf("delete default sg: %v", err)
	}
	if err := m.DeleteNetworkInterface(ctx, acctA, n.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteSecurityGroup(ctx, acctA, app.ID); !IsCode(err, CodeDependencyViolation) {
		t.Fatalf("delete sg referenced by a rule: %v", err)
	}
	if _, err := m.Revoke(ctx, acctA, db.ID, false, []Permission{{Protocol: "tcp", FromPort: i32(6379), ToPort: i32(6379), Groups: []GroupSource{{GroupID: app.ID}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Revoke(ctx, acctA, db.ID, false, []Permission{{Protocol: "tcp", FromPort: i32(6379), ToPort: i32(6379), Groups: []GroupSource{{GroupID: app.ID}}}}); !IsCode(err, CodeInvalidPermNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	for _, id := range []string{app.ID, db.ID} {
		if err := m.DeleteSecurityGroup(ctx, acctA, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.DeleteVPC(ctx, acctA, v.ID); !IsCode(err, CodeDependencyViolation) {
		t.Fatalf("delete vpc with subnet: %v", err)
	}
	if err := m.DeleteSubnet(ctx, acctA, s.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteVPC(ctx, acctA, v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetSecurityGroup(ctx, acctA, v.DefaultSecurityGroupID); !IsCode(err, CodeGroupNotFound) {
		t.Fatalf("default group survived: %v", err)
	}
	// The name "app" is free again in a new VPC; and the group name index was cleaned.
	v2 := mustVPC(t, m, acctA, "10.0.0.0/16")
	if _, err := m.CreateSecurityGroup(ctx, acctA, GroupRequest{VpcID: v2.ID, Name: "app", Description: "app"}); err != nil {
		t.Fatal(err)
	}
}

func TestAccountIsolation(t *testing.T) {
	ctx := context.Background()
	m := newModel(t)
	v := mustVPC(t, m, acctA, "10.0.0.0/16")
	s := mustSubnet(t, m, acctA, v.ID, "10.0.1.0/24")
	if _, err := m.GetVPC(ctx, acctB, v.ID); !IsCode(err, CodeVpcNotFound) {
		t.Fatalf("B sees A's vpc: %v", err)
	}
	if err := m.DeleteVPC(ctx, acctB, v.ID); !IsCode(err, CodeVpcNotFound) {
		t.Fatalf("B deletes A's vpc: %v", err)
	}
	if _, err := m.CreateSubnet(ctx, acctB, SubnetRequest{VpcID: v.ID, CidrBlock: "10.0.2.0/24", AvailabilityZone: "us-east-1a"}); !IsCode(err, CodeVpcNotFound) {
		t.Fatalf("B creates subnet in A's vpc: %v", err)
	}
	if _, err := m.CreateInterface(ctx, acctB, InterfaceRequest{SubnetID: s.ID}); !IsCode(err, CodeSubnetNotFound) {
		t.Fatalf("B creates eni in A's subnet: %v", err)
	}
	vb := mustVPC(t, m, acctB, "10.0.0.0/16")
	gb, err := m.CreateSecurityGroup(ctx, acctB, GroupRequest{VpcID: vb.ID, Name: "x", Description: "x"})
	if err != nil {
		t.Fatal(err)
	}
	// A cannot reference B's group, neither by ID nor with B as owner.
	if _, err := m.Authorize(ctx, acctA, v.DefaultSecurityGroupID, false, []Permission{{Protocol: "-1", Groups: []GroupSource{{GroupID: gb.ID}}}}); !IsCode(err, CodeGroupNotFound) {
		t.Fatalf("cross-account group ref: %v", err)
	}
	if _, err := m.Authorize(ctx, acctA, v.DefaultSecurityGroupID, false, []Permission{{Protocol: "-1", Groups: []GroupSource{{GroupID: gb.ID, UserID: acctB}}}}); !IsCode(err, CodeGroupNotFound) {
		t.Fatalf("cross-account group ref with owner: %v", err)
	}
	vs, _ := m.ListVPCs(ctx, acctB)
	if len(vs) != 1 || vs[0].ID != vb.ID {
		t.Fatalf("B lists %v", vs)
	}
}

// TestConcurrentAllocation allocates every address of a /26 from many
// goroutines through two Models sharing one store (two writers): no
// address is handed out twice, the subnet ends up full, and the state
// survives a restart of the store.
func TestConcurrentAllocation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	m1, err := Open(ctx, st, quiet())
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Open(ctx, st, quiet())
	if err != nil {
		t.Fatal(err)
	}
	v := mustVPC(t, m1, acctA, "10.0.0.0/16")
	s := mustSubnet(t, m1, acctA, v.ID, "10.0.1.0/26") // 59 usable
	const workers = 70
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]string{}
	var exhausted int
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := m1
			if i%2 == 1 {
				m = m2
			}
			n, err := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: s.ID})
			mu.Lock()
			defer mu.Unlock()
			if IsCode(err, CodeInsufficientFreeAddresses) {
				exhausted++
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			if o, dup := got[n.PrivateIP]; dup {
				t.Errorf("address %s given to %s and %s", n.PrivateIP, o, n.ID)
			}
			got[n.PrivateIP] = n.ID
		}()
	}
	wg.Wait()
	if len(got) != 59 || exhausted != workers-59 {
		t.Fatalf("allocated %d (want 59), exhausted %d (want %d)", len(got), exhausted, workers-59)
	}
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	m3, err := Open(ctx, st, quiet())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := m3.GetSubnet(ctx, acctA, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sub.AvailableIPs != 0 {
		t.Fatalf("after restart available = %d", sub.AvailableIPs)
	}
	var victim string
	for ip, id := range got {
		victim = ip
		if err := m3.DeleteInterface(ctx, acctA, id); err != nil {
			t.Fatal(err)
		}
		break
	}
	n, err := m3.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	if n.PrivateIP != victim {
		t.Fatalf("reallocated %s, want the freed %s", n.PrivateIP, victim)
	}
	if _, err := m3.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: s.ID, PrivateIP: n.PrivateIP}); !IsCode(err, CodeIPInUse) && !IsCode(err, CodeInsufficientFreeAddresses) {
		t.Fatalf("explicit in-use: %v", err)
	}
}

func TestExplicitIPAndLambdaInterface(t *testing.T) {
	ctx := context.Background()
	m := newModel(t)
	v := mustVPC(t, m, acctA, "10.0.0.0/16")
	s := mustSubnet(t, m, acctA, v.ID, "10.0.1.0/24")
	n, err := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: s.ID, PrivateIP: "10.0.1.77", Description: "redis"})
	if err != nil || n.PrivateIP != "10.0.1.77" {
		t.Fatalf("%v %v", n, err)
	}
	if _, err := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: s.ID, PrivateIP: "10.0.1.77"}); !IsCode(err, CodeIPInUse) {
		t.Fatalf("in use: %v", err)
	}
	l, err := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: s.ID, InterfaceType: InterfaceTypeLambda, RequesterID: "lambdaplane", Description: "AWS Lambda VPC ENI-fn-1"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Status != StatusInUse || !l.RequesterManaged || l.InterfaceType != "lambda" || len(l.Groups) != 1 || l.Groups[0] != v.DefaultSecurityGroupID {
		t.Fatalf("lambda eni: %+v", l)
	}
	if err := m.DeleteNetworkInterface(ctx, acctA, l.ID); !IsCode(err, CodeInterfaceInUse) {
		t.Fatalf("user delete of lambda eni: %v", err)
	}
	if err := m.DeleteInterface(ctx, acctA, l.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteInterface(ctx, acctA, l.ID); err != nil {
		t.Fatalf("second internal delete must succeed: %v", err)
	}
	if err := m.DeleteNetworkInterface(ctx, acctA, l.ID); !IsCode(err, CodeInterfaceNotFound) {
		t.Fatalf("user delete of gone eni: %v", err)
	}
	sub, _ := m.GetSubnet(ctx, acctA, s.ID)
	if sub.AvailableIPs != 250 {
		t.Fatalf("available %d, want 250", sub.AvailableIPs)
	}
}

func TestRoutesAndDesired(t *testing.T) {
	ctx := context.Background()
	m := newModel(t)
	ch, cancel := m.Subscribe()
	defer cancel()
	v := mustVPC(t, m, acctA, "10.0.0.0/16")
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no change signal after CreateVPC")
	}
	pub := mustSubnet(t, m, acctA, v.ID, "10.0.0.0/24")
	priv := mustSubnet(t, m, acctA, v.ID, "10.0.1.0/24")
	igw, err := m.CreateInternetGateway(ctx, acctA, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Route to a detached gateway is refused.
	if err := m.CreateRoute(ctx, acctA, RouteRequest{RouteTableID: v.MainRouteTableID, DestinationCidrBlock: "0.0.0.0/0", GatewayID: igw.ID}); !IsCode(err, CodeInvalidParameterValue) {
		t.Fatalf("route to detached igw: %v", err)
	}
	if err := m.AttachInternetGateway(ctx, acctA, igw.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.AttachInternetGateway(ctx, acctA, igw.ID, v.ID); !IsCode(err, CodeAlreadyAssociated) {
		t.Fatalf("attach twice: %v", err)
	}
	pubRT, err := m.CreateRouteTable(ctx, acctA, v.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CreateRoute(ctx, acctA, RouteRequest{RouteTableID: pubRT.ID, DestinationCidrBlock: "0.0.0.0/0", GatewayID: igw.ID}); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateRoute(ctx, acctA, RouteRequest{RouteTableID: pubRT.ID, DestinationCidrBlock: "0.0.0.0/0", GatewayID: igw.ID}); !IsCode(err, CodeRouteAlreadyExists) {
		t.Fatalf("dup route: %v", err)
	}
	if _, err := m.AssociateRouteTable(ctx, acctA, pubRT.ID, pub.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AssociateRouteTable(ctx, acctA, pubRT.ID, pub.ID); !IsCode(err, CodeAlreadyAssociated) {
		t.Fatalf("associate twice: %v", err)
	}
	nat, err := m.CreateNatGateway(ctx, acctA, NatRequest{SubnetID: pub.ID})
	if err != nil {
		t.Fatal(err)
	}
	if nat.State != NatStateAvailable || nat.PrivateIP != "10.0.0.4" || nat.ConnectivityType != "public" || !validID(PrefixEIPAllocation, nat.AllocationID) {
		t.Fatalf("nat: %+v", nat)
	}
	if err := m.CreateRoute(ctx, acctA, RouteRequest{RouteTableID: v.MainRouteTableID, DestinationCidrBlock: "0.0.0.0/0", NatGatewayID: nat.ID}); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteRoute(ctx, acctA, v.MainRouteTableID, "10.0.0.0/16"); !IsCode(err, CodeInvalidParameterValue) {
		t.Fatalf("delete local route: %v", err)
	}
	if err := m.DeleteRoute(ctx, acctA, v.MainRouteTableID, "192.168.0.0/16"); !IsCode(err, CodeRouteNotFound) {
		t.Fatalf("delete missing route: %v", err)
	}

	app, _ := m.CreateSecurityGroup(ctx, acctA, GroupRequest{VpcID: v.ID, Name: "app", Description: "app"})
	db, _ := m.CreateSecurityGroup(ctx, acctA, GroupRequest{VpcID: v.ID, Name: "db", Description: "db"})
	if _, err := m.Authorize(ctx, acctA, db.ID, false, []Permission{{Protocol: "tcp", FromPort: i32(6379), ToPort: i32(6379), Groups: []GroupSource{{GroupID: app.ID}}}}); err != nil {
		t.Fatal(err)
	}
	redis, _ := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: priv.ID, GroupIDs: []string{db.ID}})
	fn, _ := m.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: priv.ID, GroupIDs: []string{app.ID}, InterfaceType: InterfaceTypeLambda, RequesterID: "lambdaplane"})
	// Another account's VPC with the same CIDR stays separate.
	vb := mustVPC(t, m, acctB, "10.0.0.0/16")
	mustSubnet(t, m, acctB, vb.ID, "10.0.1.0/24")

	d, err := m.Desired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.VPCs) != 2 || d.VPCs[0].AccountID != acctA || d.VPCs[1].AccountID != acctB {
		t.Fatalf("vpcs: %+v", d.VPCs)
	}
	dv := d.VPCs[0]
	if dv.ID != v.ID || dv.CIDR.String() != "10.0.0.0/16" || dv.InternetGatewayID != igw.ID {
		t.Fatalf("vpc: %+v", dv)
	}
	subs := map[string]DesiredSubnet{}
	for _, s := range dv.Subnets {
		subs[s.ID] = s
	}
	ps, qs := subs[pub.ID], subs[priv.ID]
	if ps.Gateway.String() != "10.0.0.1" || ps.RouteTableID != pubRT.ID || ps.DefaultRoute.Target != RouteIGW || ps.DefaultRoute.GatewayID != igw.ID {
		t.Fatalf("public subnet: %+v", ps)
	}
	if qs.Gateway.String() != "10.0.1.1" || qs.RouteTableID != v.MainRouteTableID || qs.DefaultRoute.Target != RouteNAT ||
		qs.DefaultRoute.NATAddress.String() != "10.0.0.4" || qs.DefaultRoute.NATSubnetID != pub.ID {
		t.Fatalf("private subnet: %+v", qs)
	}
	if len(qs.Routes) != 2 || qs.Routes[0].Target != RouteLocal {
		t.Fatalf("private routes: %+v", qs.Routes)
	}
	if len(dv.NATGateways) != 1 || dv.NATGateways[0].Address.String() != "10.0.0.4" {
		t.Fatalf("nats: %+v", dv.NATGateways)
	}
	if len(dv.Interfaces) != 3 { // redis, lambda, nat
		t.Fatalf("interfaces: %+v", dv.Interfaces)
	}
	groups := map[string]DesiredSecurityGroup{}
	for _, g := range dv.SecurityGroups {
		groups[g.ID] = g
	}
	dbg := groups[db.ID]
	if len(dbg.Members) != 1 || dbg.Members[0].String() != redis.PrivateIP {
		t.Fatalf("db members: %+v", dbg.Members)
	}
	if len(dbg.Ingress) != 1 || dbg.Ingress[0].Protocol != 6 || dbg.Ingress[0].FromPort != 6379 || dbg.Ingress[0].GroupID != app.ID ||
		len(dbg.Ingress[0].Addresses) != 1 || dbg.Ingress[0].Addresses[0] != netip.MustParseAddr(fn.PrivateIP) {
		t.Fatalf("db ingress: %+v", dbg.Ingress)
	}
	if len(dbg.Egress) != 1 || dbg.Egress[0].Protocol != -1 || dbg.Egress[0].CIDR.String() != "0.0.0.0/0" {
		t.Fatalf("db egress: %+v", dbg.Egress)
	}
	def := groups[v.DefaultSecurityGroupID]
	if len(def.Ingress) != 1 || def.Ingress[0].GroupID != def.ID || len(def.Members) != 0 {
		t.Fatalf("default group: %+v", def)
	}

	// Deleting the NAT gateway blackholes the route and frees its address.
	if err := m.DeleteNatGateway(ctx, acctA, nat.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteNatGateway(ctx, acctA, nat.ID); !IsCode(err, CodeNatGatewayNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	d, _ = m.Desired(ctx)
	for _, s := range d.VPCs[0].Subnets {
		if s.ID == priv.ID && s.DefaultRoute.Target != RouteBlackhole {
			t.Fatalf("route after NAT delete: %+v", s.DefaultRoute)
		}
	}
	if len(d.VPCs[0].NATGateways) != 0 {
		t.Fatal("deleted NAT still desired")
	}
	rt, _ := m.GetRouteTable(ctx, acctA, v.MainRouteTableID)
	if rt.Routes[1].State != "blackhole" {
		t.Fatalf("route state %+v", rt.Routes)
	}
	if err := m.DeleteInternetGateway(ctx, acctA, igw.ID); !IsCode(err, CodeDependencyViolation) {
		t.Fatalf("delete attached igw: %v", err)
	}
	if err := m.DeleteVPC(ctx, acctA, v.ID); !IsCode(err, CodeDependencyViolation) {
		t.Fatalf("delete vpc with igw: %v", err)
	}
}

func TestTags(t *testing.T) {
	ctx := context.Background()
	m := newModel(t)
	v, err := m.CreateVPC(ctx, acctA, VPCRequest{CidrBlock: "10.0.0.0/16", Tags: []Tag{{Key: "Name", Value: "main"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CreateTags(ctx, acctA, []string{v.ID, v.DefaultSecurityGroupID}, []Tag{{Key: "env", Value: "dev"}}); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateTags(ctx, acctB, []string{v.ID}, []Tag{{Key: "x", Value: "y"}}); !IsCode(err, CodeVpcNotFound) {
		t.Fatalf("B tags A's vpc: %v", err)
	}
	ts, err := m.ListTags(ctx, acctA)
	if err != nil || len(ts) != 3 {
		t.Fatalf("tags: %+v %v", ts, err)
	}
	if err := m.DeleteTags(ctx, acctA, []string{v.ID}, []string{"env"}, []*string{nil}); err != nil {
		t.Fatal(err)
	}
	got, _ := m.GetVPC(ctx, acctA, v.ID)
	if len(got.Tags) != 1 || got.Tags[0].Key != "Name" {
		t.Fatalf("after delete: %+v", got.Tags)
	}
}

func TestWatchOtherWriter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t, t.TempDir())
	defer st.Close()
	writer, _ := Open(ctx, st, quiet())
	reader, _ := Open(ctx, st, quiet())
	if err := reader.Watch(ctx); err != nil {
		t.Fatal(err)
	}
	ch, stop := reader.Subscribe()
	defer stop()
	mustVPC(t, writer, acctA, "10.0.0.0/16")
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no change signal for another writer's mutation")
	}
}

// TestDesiredFromMirror: with Watch, DesiredWatched is computed from the
// in-memory mirror; after another writer's changes (creates, then
// deletes) and the change signal, it equals what listing the store gives.
func TestDesiredFromMirror(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t, t.TempDir())
	defer st.Close()
	writer, _ := Open(ctx, st, quiet())
	lister, _ := Open(ctx, st, quiet())           // no Watch: lists the store
	v := mustVPC(t, writer, acctA, "10.0.0.0/16") // before Watch: the initial load
	reader, _ := Open(ctx, st, quiet())
	if err := reader.Watch(ctx); err != nil {
		t.Fatal(err)
	}
	ch, stop := reader.Subscribe()
	defer stop()
	converged := func(what string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			want, err := lister.Desired(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := reader.DesiredWatched(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(got, want) {
				return
			}
			select {
			case <-ch:
			case <-deadline:
				t.Fatalf("%s: mirror's desired state\n%+v\nwant\n%+v", what, got, want)
			}
		}
	}
	converged("initial load")
	s := mustSubnet(t, writer, acctA, v.ID, "10.0.1.0/24")
	g, err := writer.CreateSecurityGroup(ctx, acctA, GroupRequest{VpcID: v.ID, Name: "app", Description: "app"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := writer.CreateInterface(ctx, acctA, InterfaceRequest{SubnetID: s.ID, GroupIDs: []string{g.ID}})
	if err != nil {
		t.Fatal(err)
	}
	converged("after creates")
	if ds, _ := reader.DesiredWatched(ctx); len(ds.VPCs) != 1 || len(ds.VPCs[0].Interfaces) != 1 {
		t.Fatalf("desired state misses the interface: %+v", ds)
	}
	if err := writer.DeleteInterface(ctx, acctA, n.ID); err != nil {
		t.Fatal(err)
	}
	converged("after delete")
	if ds, _ := reader.DesiredWatched(ctx); len(ds.VPCs[0].Interfaces) != 0 {
		t.Fatalf("deleted interface still desired: %+v", ds.VPCs[0].Interfaces)
	}
}
