package server

import (
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/prometheus/client_golang/prometheus"
)

// MetricKernelRepairs counts kernel objects the repair passes found
// missing or different from what was applied and converged again, by
// kind (netdev.RepairKinds).
const MetricKernelRepairs = "lambdaplane_kernel_repairs_total"

// newRepairCounter returns the repairs counter with every kind present at
// zero (so a rate is defined before the first repair).
func newRepairCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricKernelRepairs,
		Help: "Kernel objects (namespaces, links, addresses, nft tables, set and map elements) found missing or different from what was applied and repaired while running, by kind.",
	}, []string{"kind"})
	for _, k := range netdev.RepairKinds() {
		c.WithLabelValues(string(k))
	}
	return c
}
