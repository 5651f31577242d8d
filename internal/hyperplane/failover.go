package hyperplane

import (
	"context"
	"errors"
	"time"
)

// Cluster is what failover needs of the membership (internal/cluster
// through an adapter).
type Cluster interface {
	IsLeader() bool
	Alive(host string) bool
	// HomeOf is the live host a key goes to (rendezvous).
	HomeOf(key string) string
	// Subscribe signals changes of the live set or the leader.
	Subscribe() (<-chan struct{}, func())
}

// DefaultFailoverInterval is how often the leader looks for records of
// dead or missing homes besides every membership change.
const DefaultFailoverInterval = 2 * time.Second

// FollowCluster runs failover until the returned function is called:
// after every membership change (and every interval), if this host leads,
// VPCs without a VNI get one, and every network interface (instance, NAT
// gateway, Hyperplane ENI) whose home is dead or missing, and every ENI
// record, moves to the live host c.HomeOf(its id) names: same id, same
// address. The hosts' datapaths follow the records (the new home builds,
// the others repoint their tunnels).
func (m *Manager) FollowCluster(c Cluster, interval time.Duration) func() {
	if interval <= 0 {
		interval = DefaultFailoverInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, unsub := c.Subscribe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer unsub()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
			case <-t.C:
			}
			if c.IsLeader() {
				if err := m.failover(ctx, c); err != nil && ctx.Err() == nil {
					m.log.Warn("failover pass", "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// failover is one leader pass.
func (m *Manager) failover(ctx context.Context, c Cluster) error {
	t := time.Now()
	vnis, verr := m.cfg.Model.EnsureVNIs(ctx)
	ifs, ierr := m.cfg.Model.RehomeInterfaces(ctx, c.Alive, c.HomeOf)
	enis, eerr := m.Rehome(ctx, c.Alive, c.HomeOf)
	if vnis+len(ifs)+len(enis) > 0 {
		m.log.Info("failover: records re-homed", "vnis_given", vnis, "interfaces", ifs, "eni_records", enis, "took", time.Since(t).Round(time.Millisecond))
	}
	return errors.Join(verr, ierr, eerr)
}
