package hyperplane

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
)

// Attachment is one execution environment steered to an ENI. It is
// host-local: derived from a live environment, gone with the process.
type Attachment struct {
	m    *Manager
	env  netip.Addr
	en   *entry
	eni  *ENI
	once sync.Once
	err  error
}

// ENI is the ENI the environment's traffic leaves with.
func (a *Attachment) ENI() *ENI { return a.eni }

// Env is the environment's service-network address.
func (a *Attachment) Env() netip.Addr { return a.env }

// Attach steers environment env (its service-network address) to eni or,
// when the key has several ENIs, to the least loaded of them: two map
// elements (the service router's rule, the VPC router's env2eni element)
// over lasting netlink connections. Nothing is created.
func (m *Manager) Attach(ctx context.Context, env netip.Addr, eni *ENI) (*Attachment, error) {
	if m.vpcs == nil {
		return nil, newErr(ReasonInternalError, nil, "No VPC datapath is configured on this host.")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	en := m.pick(eni)
	if en == nil {
		m.mu.Unlock()
		return nil, newErr(ReasonInternalError, nil, "The network interface %s is not managed here (deleted, or the function's VPC configuration changed). Update the function to recreate it.", eni.ID)
	}
	en.attached++ // reserved before the kernel work, so a Release cannot delete it meanwhile
	m.mu.Unlock()
	if err := m.vpcs.Attach(en.eni.VpcID, env, en.eni.Addr); err != nil {
		m.unref(en)
		if errors.Is(err, netdev.ErrENINotBuilt) || errors.Is(err, netdev.ErrNoVPCLink) {
			return nil, newErr(ReasonInternalError, err, "The network interface %s is not built on this host yet: %v. Retry.", en.eni.ID, err)
		}
		return nil, newErr(ReasonInternalError, err, "Attaching to network interface %s failed: %v", en.eni.ID, err)
	}
	return &Attachment{m: m, env: env, en: en, eni: en.eni}, nil
}

// pick returns the least loaded live ENI of eni's key (fewest sampled
// connections, then fewest attachments), or eni itself for a legacy one.
// Caller holds mu.
func (m *Manager) pick(eni *ENI) *entry {
	if eni == nil {
		return nil
	}
	if eni.PerEnv {
		if en := m.enis[eni.ID]; en != nil && !en.deleting {
			return en
		}
		return nil
	}
	var best *entry
	for _, en := range m.byKey[eni.Key] {
		if en.deleting {
			continue
		}
		if best == nil || en.conns < best.conns || (en.conns == best.conns && en.attached < best.attached) {
			best = en
		}
	}
	return best
}

// unref drops one attachment of en; an ENI nobody uses any more (Release
// ran meanwhile) is deleted in the background, under its key lock and
// only if still nobody uses it then (Ensure may have shared it meanwhile).
func (m *Manager) unref(en *entry) {
	m.mu.Lock()
	en.attached--
	idle := en.attached == 0 && len(en.users) == 0 && !en.deleting && !en.eni.PerEnv
	closed := m.closed
	m.mu.Unlock()
	if !idle || closed {
		return
	}
	m.deleteIfUnused(en)
}

// Detach removes the environment's two elements (a legacy ENI is deleted
// with it). Calling it again returns the first result.
func (a *Attachment) Detach() error {
	a.once.Do(func() {
		a.err = a.m.vpcs.Detach(a.env)
		if a.eni.PerEnv {
			a.m.mu.Lock()
			a.en.attached--
			a.en.deleting = true
			a.m.remove(a.en)
			a.m.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			a.err = errors.Join(a.err, a.m.deleteENI(ctx, a.eni.AccountID, a.eni.ID))
			return
		}
		a.m.unref(a.en)
	})
	return a.err
}

// AttachPerEnv is the legacy (pre-2019) model: an ENI of the environment's
// own, created now (an address of the subnet; quotas and the creation
// rate apply, and exceeding the rate fails at once), built, attached; it
// is deleted at Detach.
func (m *Manager) AttachPerEnv(ctx context.Context, env netip.Addr, account, user, subnetID string, sgIDs []string) (*Attachment, error) {
	if m.vpcs == nil {
		return nil, newErr(ReasonInternalError, nil, "No VPC datapath is configured on this host.")
	}
	ts, err := m.validate(ctx, account, []string{subnetID}, sgIDs)
	if err != nil {
		return nil, err
	}
	if ok, _ := m.rate.take(); !ok {
		return nil, newErr(ReasonEniLimitExceeded, nil, "The network interface creation rate (%g per second) was exceeded. Retry later, or use the hyperplane VPC mode.", m.cfg.CreateRate)
	}
	en, err := m.create(ctx, account, "", ts[0], true, false)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	en.attached++
	m.mu.Unlock()
	if err := m.vpcs.Attach(en.eni.VpcID, env, en.eni.Addr); err != nil {
		m.mu.Lock()
		en.deleting = true
		m.remove(en)
		m.mu.Unlock()
		return nil, errors.Join(newErr(ReasonInternalError, err, "Attaching to network interface %s failed: %v", en.eni.ID, err),
			m.deleteENI(context.WithoutCancel(ctx), account, en.eni.ID))
	}
	return &Attachment{m: m, env: env, en: en, eni: en.eni}, nil
}

// Mode is the configured VPC mode.
func (m *Manager) Mode() string { return m.cfg.Mode }

func (m *Manager) loop(ctx context.Context) {
	defer m.loopWG.Done()
	t := time.NewTicker(m.cfg.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.Rebalance(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("hyperplane rebalance", "err", err)
		}
	}
}

// Rebalance samples every shared ENI's connections (conntrack entries
// SNATed to it in its VPC router), adds an ENI to every key whose ENIs are
// all at MaxConnsPerENI, and deletes extra ENIs that carry nothing while a
// sibling has room.
func (m *Manager) Rebalance(ctx context.Context) error {
	if m.vpcs == nil {
		return nil
	}
	m.mu.Lock()
	byVPC := map[string][]*entry{}
	for _, en := range m.enis {
		if !en.eni.PerEnv && !en.deleting {
			byVPC[en.eni.VpcID] = append(byVPC[en.eni.VpcID], en)
		}
	}
	m.mu.Unlock()
	var errs []error
	for vpcID, ens := range byVPC {
		addrs := make([]netip.Addr, 0, len(ens))
		for _, en := range ens {
			addrs = append(addrs, en.eni.Addr)
		}
		counts, err := m.vpcs.SNATConnections(vpcID, addrs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.mu.Lock()
		for _, en := range ens {
			en.conns = counts[en.eni.Addr]
		}
		m.mu.Unlock()
	}
	type grow struct {
		key  string
		tmpl *entry
	}
	var grows []grow
	var shrink []*entry
	m.mu.Lock()
	for k, l := range m.byKey {
		full := len(l) > 0
		for _, en := range l {
			if en.conns < m.cfg.MaxConnsPerENI {
				full = false
			}
		}
		if full && !m.growing[k] {
			m.growing[k] = true
			grows = append(grows, grow{k, l[0]})
			continue
		}
		if full {
			continue
		}
		for _, en := range l {
			if en.extra && en.attached == 0 && en.conns == 0 && !en.deleting && len(l) > 1 && m.mayDelete(en.home) {
				en.deleting = true
				shrink = append(shrink, en)
				break // one per round: capacity shrinks gently
			}
		}
	}
	for _, en := range shrink {
		m.remove(en)
	}
	m.mu.Unlock()
	for _, en := range shrink {
		errs = append(errs, m.deleteENI(ctx, en.eni.AccountID, en.eni.ID))
	}
	for _, g := range grows {
		errs = append(errs, m.grow(ctx, g.key, g.tmpl))
	}
	return errors.Join(errs...)
}

// grow adds an extra ENI to a key whose ENIs are full; it is shared by
// the key's users.
func (m *Manager) grow(ctx context.Context, key string, tmpl *entry) error {
	defer func() {
		m.mu.Lock()
		delete(m.growing, key)
		m.mu.Unlock()
	}()
	unlock, err := m.lockBoth(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	sub, err := m.cfg.Model.GetSubnet(ctx, tmpl.eni.AccountID, tmpl.eni.SubnetID)
	if err != nil {
		return err
	}
	if err := m.rate.wait(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	var users []string
	for u := range tmpl.users {
		users = append(users, u)
	}
	m.mu.Unlock()
	first := ""
	if len(users) > 0 {
		first = users[0]
	}
	en, err := m.create(ctx, tmpl.eni.AccountID, first, target{subnet: sub, groups: tmpl.eni.Groups, key: key}, false, true)
	if err != nil {
		return err
	}
	for _, u := range users[min(1, len(users)):] {
		if err := m.addUser(ctx, en, u); err != nil {
			return err
		}
	}
	m.log.Info("added an ENI for capacity", "key", key, "eni", en.eni.ID)
	return nil
}
