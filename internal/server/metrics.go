package server

import (
	"context"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/hyperplane"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
	"github.com/prometheus/client_golang/prometheus"
)

// vpcCollector reports the VPC state at scrape time: network interfaces
// per subnet and type, and the subnets' free addresses. It reads the VPC
// model (the durable records) and the Hyperplane manager (which of the
// Lambda ENIs are shared and which belong to one environment).
type vpcCollector struct {
	accounts *auth.Accounts
	model    *vpc.Model
	hp       *hyperplane.Manager
	enis     *prometheus.Desc
	free     *prometheus.Desc
}

func newVPCCollector(accounts *auth.Accounts, model *vpc.Model, hp *hyperplane.Manager) *vpcCollector {
	return &vpcCollector{
		accounts: accounts, model: model, hp: hp,
		enis: prometheus.NewDesc("lambdaplane_enis",
			"Network interfaces per subnet by type: hyperplane (a shared Lambda ENI), per-env (a Lambda ENI of one environment, --vpc-mode=per-env-eni), or the interface's EC2 type for others (interface, ...).",
			[]string{"account", "subnet", "type"}, nil),
		free: prometheus.NewDesc("lambdaplane_subnet_free_addresses",
			"Addresses still free in the subnet (DescribeSubnets AvailableIpAddressCount).",
			[]string{"account", "subnet"}, nil),
	}
}

func (c *vpcCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.enis
	ch <- c.free
}

func (c *vpcCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	accts, err := c.accounts.List(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.enis, err)
		return
	}
	kind := map[string]string{}
	if c.hp != nil {
		for _, en := range c.hp.ENIs() {
			if en.PerEnv {
				kind[en.ID] = "per-env"
			} else {
				kind[en.ID] = "hyperplane"
			}
		}
	}
	for _, a := range accts {
		subs, err := c.model.ListSubnets(ctx, a.ID)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.free, err)
			return
		}
		count := map[[2]string]int{}
		for _, s := range subs {
			ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(s.AvailableIPs), a.ID, s.ID)
		}
		ifs, err := c.model.ListInterfaces(ctx, a.ID)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.enis, err)
			return
		}
		for _, n := range ifs {
			t := kind[n.ID]
			if t == "" {
				t = n.InterfaceType
			}
			count[[2]string{n.SubnetID, t}]++
		}
		for k, v := range count {
			ch <- prometheus.MustNewConstMetric(c.enis, prometheus.GaugeValue, float64(v), a.ID, k[0], k[1])
		}
	}
}
