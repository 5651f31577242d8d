package server

import (
	"net/netip"

	"github.com/lambdaplane/lambdaplane/internal/cluster"
	"github.com/lambdaplane/lambdaplane/internal/datapath"
)

// vpcCluster presents the membership to the VPC datapath (datapath.Hosts:
// where the live hosts' routers are) and to Hyperplane failover
// (hyperplane.Cluster: who leads, who is alive, where a record goes).
type vpcCluster struct{ m *cluster.Membership }

func hostOf(h cluster.Host) datapath.Host {
	out := datapath.Host{ID: h.ID}
	if a, err := netip.ParseAddr(h.Underlay); err == nil && a.Is4() {
		out.Underlay = a
	}
	if p, err := netip.ParsePrefix(h.ServiceCIDR); err == nil {
		out.ServiceCIDR = p
	}
	return out
}

func (c vpcCluster) Self() datapath.Host { return hostOf(c.m.Self()) }

func (c vpcCluster) Live() []datapath.Host {
	live := c.m.Live()
	out := make([]datapath.Host, 0, len(live))
	for _, h := range live {
		out = append(out, hostOf(h))
	}
	return out
}

func (c vpcCluster) Subscribe() (<-chan struct{}, func()) { return c.m.Subscribe() }

// Quorate: this host sees a majority (datapath.Quorum; a host that does
// not withdraws its Hyperplane ENIs' addresses).
func (c vpcCluster) Quorate() bool { return c.m.Quorate() }

func (c vpcCluster) IsLeader() bool { return c.m.IsLeader() }

func (c vpcCluster) Alive(id string) bool { return c.m.Alive(id) }

func (c vpcCluster) HomeOf(key string) string { return c.m.Home(key).ID }
