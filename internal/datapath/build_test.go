package datapath

import (
	"net/netip"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

func TestBuild(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	ds := &vpc.DesiredState{VPCs: []vpc.DesiredVPC{{
		AccountID: "1", ID: "vpc-01", CIDR: p("10.0.0.0/16"), InternetGatewayID: "igw-1",
		Subnets: []vpc.DesiredSubnet{
			{ID: "subnet-b", CIDR: p("10.0.1.0/24"), Gateway: a("10.0.1.1"), DefaultRoute: vpc.DesiredRoute{Target: vpc.RouteNAT, NATAddress: a("10.0.0.5")}},
			{ID: "subnet-a", CIDR: p("10.0.0.0/24"), Gateway: a("10.0.0.1"), DefaultRoute: vpc.DesiredRoute{Target: vpc.RouteIGW}},
			{ID: "subnet-c", CIDR: p("10.0.2.0/24"), Gateway: a("10.0.2.1"), DefaultRoute: vpc.DesiredRoute{Target: vpc.RouteNone}},
		},
		Interfaces: []vpc.DesiredInterface{
			{ID: "eni-2", SubnetID: "subnet-b", Address: a("10.0.1.4"), MAC: "02:00:00:00:00:01", Type: vpc.InterfaceTypeInterface, GroupIDs: []string{"sg-0a"}},
			{ID: "eni-1", SubnetID: "subnet-a", Address: a("10.0.0.5"), Type: vpc.InterfaceTypeNAT},
			{ID: "eni-3", SubnetID: "subnet-b", Address: a("10.0.1.5"), Type: vpc.InterfaceTypeLambda},
		},
		SecurityGroups: []vpc.DesiredSecurityGroup{{ID: "sg-0a", Members: []netip.Addr{a("10.0.1.4")},
			Ingress: []vpc.DesiredRule{{Protocol: 6, FromPort: 6379, ToPort: 6379, GroupID: "sg-0a"}, {Protocol: -1, FromPort: -1, ToPort: -1, CIDR: p("::/0")}}}},
	}}}
	specs := Build(ds)
	if len(specs) != 1 {
		t.Fatalf("%d specs", len(specs))
	}
	s := specs[0]
	if !s.InternetGateway || len(s.Subnets) != 3 || s.Subnets[0].ID != "subnet-a" {
		t.Fatalf("spec %+v", s)
	}
	if s.Subnets[0].Default != netdev.RouteIGW || s.Subnets[1].Default != netdev.RouteNAT || s.Subnets[1].NAT != a("10.0.0.5") || s.Subnets[2].Default != netdev.RouteNone {
		t.Fatalf("routes %+v", s.Subnets)
	}
	if len(s.Interfaces) != 2 || s.Interfaces[0].ID != "eni-1" || !s.Interfaces[0].NAT || s.Interfaces[1].Groups[0] != "0a" || s.Interfaces[1].Gateway != a("10.0.1.1") {
		t.Fatalf("interfaces %+v (lambda interfaces are the router's, not built here)", s.Interfaces)
	}
	if len(s.Lambdas) != 1 || s.Lambdas[0].ID != "eni-3" || s.Lambdas[0].Addr != a("10.0.1.5") || s.Lambdas[0].SubnetID != "subnet-b" {
		t.Fatalf("lambdas %+v", s.Lambdas)
	}
	if g := s.Groups[0]; g.ID != "0a" || len(g.Ingress) != 1 || g.Ingress[0].Group != "0a" {
		t.Fatalf("groups %+v (IPv6 rules are skipped)", s.Groups)
	}
}
