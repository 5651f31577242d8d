package datapath

import (
	"net/netip"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

type quorumHosts struct {
	self    Host
	live    []Host
	quorate bool
}

func (h quorumHosts) Self() Host                           { return h.self }
func (h quorumHosts) Live() []Host                         { return h.live }
func (h quorumHosts) Subscribe() (<-chan struct{}, func()) { return nil, func() {} }
func (h quorumHosts) HomeOf(string) string                 { return h.self.ID }
func (h quorumHosts) Quorate() bool                        { return h.quorate }

// TestFencedHostWithdrawsENIs: a host that sees a majority builds the
// Hyperplane ENI homed on it and, the others gone, takes over their
// interfaces (HomeOf); partitioned (no majority), it withdraws its ENI's
// address and takes over nothing, so the ENI lives only on the majority's
// side (where the leader re-homes it).
func TestFencedHostWithdrawsENIs(t *testing.T) {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	ds := &vpc.DesiredState{VPCs: []vpc.DesiredVPC{{
		AccountID: "1", ID: "vpc-01", CIDR: p("10.0.0.0/16"), VNI: 7,
		Subnets: []vpc.DesiredSubnet{{ID: "subnet-a", CIDR: p("10.0.1.0/24"), Gateway: a("10.0.1.1")}},
		Interfaces: []vpc.DesiredInterface{
			{ID: "eni-mine", SubnetID: "subnet-a", Address: a("10.0.1.5"), Type: vpc.InterfaceTypeLambda, Home: "h3"},
			{ID: "eni-theirs", SubnetID: "subnet-a", Address: a("10.0.1.6"), Type: vpc.InterfaceTypeLambda, Home: "h1"},
			{ID: "eni-inst", SubnetID: "subnet-a", Address: a("10.0.1.7"), MAC: "02:00:00:00:00:07", Type: vpc.InterfaceTypeInterface, Home: "h2"},
		},
	}}}
	self := Host{ID: "h3", Underlay: a("198.18.0.3"), ServiceCIDR: p("10.99.2.0/24")}
	lambdas := func(q bool) map[string]bool {
		specs := BuildFor(ds, ViewOf(quorumHosts{self: self, live: []Host{self}, quorate: q}))
		if len(specs) != 1 {
			t.Fatalf("quorate %v: %d VPC specs", q, len(specs))
		}
		out := map[string]bool{}
		for _, l := range specs[0].Lambdas {
			if !l.Home.IsValid() {
				out[l.ID] = true // its address lives here
			}
		}
		for _, i := range specs[0].Interfaces {
			out[i.ID] = true
		}
		return out
	}
	if got := lambdas(true); !got["eni-mine"] || !got["eni-theirs"] || !got["eni-inst"] {
		t.Fatalf("quorate, the others dead: built here %v (want all three)", got)
	}
	if got := lambdas(false); len(got) != 0 {
		t.Fatalf("fenced: built here %v (want none)", got)
	}
	if v := ViewOf(quorumHosts{self: self, live: []Host{self}}); !v.Fenced || v.HomeOf != nil {
		t.Fatalf("view without a majority: %+v", v)
	}
}
