package hyperplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
	"github.com/nats-io/nats.go/jetstream"
)

// Several hosts. With Config.HostID set, the manager is one of several
// sharing one store, and "one ENI per (account, subnet, SG set)" holds for
// the whole cluster:
//
//   - Every Ensure, Release and deletion of a key runs under the key's
//     cluster-wide lock, a lease record in the bucket hyperplane_locks
//     (created with Create, so one holder at a time; a holder that died is
//     replaced once its lease lapsed, by a revision-checked update), on
//     top of the host-local key mutex. Under it the key's ENIs are read
//     again from the records, so an ENI another host created is shared,
//     never duplicated.
//   - Each ENI record names its home host (Home): the host that created
//     it, or the one the leader moved it to when its home died (Rehome).
//     Only the home (or, for a record without a home, the leader) deletes
//     an ENI: a release elsewhere only drops the share, and the home's
//     watch of the records deletes the ENI once no function uses it.
//   - A watch of the records keeps this host's index current with ENIs
//     created, shared, moved and deleted by other hosts (ENIsFor and
//     Attach are served from it: no store read at a cold start).
//
// A manager without HostID is the single-host manager, exactly as before:
// no lock records, no watch.
const (
	bucketLocks = "hyperplane_locks"
	// LockTTL is how long a key's cluster lock is held at most by a host
	// that died holding it.
	LockTTL = 45 * time.Second
)

type keyLock struct {
	Key   string    `json:"key"`
	Host  string    `json:"host"`
	Until time.Time `json:"until"`
}

func lockName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

func (m *Manager) clustered() bool { return m.cfg.HostID != "" }

func (m *Manager) isLeader() bool { return m.cfg.IsLeader == nil || m.cfg.IsLeader() }

// mayDelete: only an ENI's home deletes it; a record without a home (made
// before the cluster) is the leader's to delete.
func (m *Manager) mayDelete(home string) bool {
	if !m.clustered() {
		return true
	}
	if home == "" {
		return m.isLeader()
	}
	return home == m.cfg.HostID
}

// lockCluster takes key's cluster-wide lock (a no-op on a single host).
// The returned function releases it.
func (m *Manager) lockCluster(ctx context.Context, key string) (func(), error) {
	if !m.clustered() {
		return func() {}, nil
	}
	name := lockName(key)
	start := time.Now()
	deadline := start.Add(m.cfg.BuildTimeout + LockTTL)
	delay := 2 * time.Millisecond
	logged := false
	for {
		l := &keyLock{Key: key, Host: m.cfg.HostID, Until: time.Now().Add(LockTTL)}
		rev, err := m.locks.Create(ctx, name, l)
		if errors.Is(err, store.ErrExists) {
			cur, crev, gerr := m.locks.Get(ctx, name)
			switch {
			case errors.Is(gerr, store.ErrNotFound):
				continue // released meanwhile
			case gerr != nil:
				err = gerr
			case time.Now().After(cur.Until):
				m.log.Warn("taking over a lapsed ENI key lock", "key", key, "holder", cur.Host)
				if rev, err = m.locks.UpdateAt(ctx, name, l, crev); errors.Is(err, store.ErrConflict) {
					err = store.ErrExists
				}
			}
		}
		if err == nil {
			return func() {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				if derr := m.locks.KV().Delete(dctx, name, jetstream.LastRevision(rev)); derr != nil {
					m.log.Warn("releasing an ENI key lock (it lapses by itself)", "key", key, "err", derr)
				}
			}, nil
		}
		if !errors.Is(err, store.ErrExists) {
			return nil, newErr(ReasonInternalError, err, "Taking the cluster lock of %s failed: %v. Retry.", key, err)
		}
		if time.Now().After(deadline) {
			return nil, newErr(ReasonInternalError, nil, "The cluster lock of %s is held by another host for too long. Retry.", key)
		}
		if !logged && time.Since(start) > 2*time.Second {
			logged = true
			holder := "?"
			if cur, _, err := m.locks.Get(ctx, name); err == nil {
				holder = cur.Host + " until " + cur.Until.Format(time.RFC3339)
			}
			m.log.Warn("waiting for an ENI key's cluster lock", "key", key, "holder", holder, "waited", time.Since(start).Round(time.Millisecond))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, newErr(ReasonInternalError, ctx.Err(), "Waiting for the cluster lock of %s: %v", key, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// lockBoth takes the host-local key mutex, then the cluster lock.
func (m *Manager) lockBoth(ctx context.Context, key string) (func(), error) {
	unlock := m.lockKey(key)
	cunlock, err := m.lockCluster(ctx, key)
	if err != nil {
		unlock()
		return nil, err
	}
	return func() { cunlock(); unlock() }, nil
}

// refreshKey makes the index of key what the records say (caller holds
// the key's locks): ENIs another host created are added, users are the
// recorded ones, ENIs whose record is gone are dropped. A no-op on a
// single host, whose index is the records.
func (m *Manager) refreshKey(ctx context.Context, account, key string) error {
	if !m.clustered() {
		return nil
	}
	es, err := m.recs.List(ctx, account+".>")
	if err != nil {
		return newErr(ReasonInternalError, err, "Reading the network interfaces of %s failed: %v", key, err)
	}
	live := map[string]bool{}
	for _, e := range es {
		r := e.Value
		if r.PerEnv || Key(r.AccountID, r.SubnetID, r.Groups) != key {
			continue
		}
		live[r.ID] = true
		if err := m.upsert(ctx, r); err != nil {
			return err
		}
	}
	m.mu.Lock()
	for _, en := range slices.Clone(m.byKey[key]) {
		if !live[en.eni.ID] {
			en.deleting = true
			m.remove(en)
		}
	}
	m.mu.Unlock()
	return nil
}

// upsert brings one record into the index: its users and home, and the
// entry itself if it is new here (its address read from the interface).
func (m *Manager) upsert(ctx context.Context, r *record) error {
	m.mu.Lock()
	en := m.enis[r.ID]
	if en != nil {
		en.users = map[string]bool{}
		for _, u := range r.Users {
			en.users[u] = true
		}
		en.home = r.Home
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	ip := r.Addr
	if ip == "" {
		n, err := m.cfg.Model.GetInterface(ctx, r.AccountID, r.ID)
		if vpc.IsCode(err, vpc.CodeInterfaceNotFound) {
			return nil // being created (record first) or deleted
		}
		if err != nil {
			return newErr(ReasonInternalError, err, "Reading network interface %s failed: %v", r.ID, err)
		}
		ip = n.PrivateIP
	}
	m.add(m.entryOf(r, ip))
	return nil
}

// watch follows the records (clustered only): other hosts' ENIs, shares
// and deletions reach the index; an ENI homed here that nobody uses any
// more is deleted.
func (m *Manager) watch(ctx context.Context) error {
	w, err := m.recs.KV().WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("hyperplane: watch records: %w", err)
	}
	m.loopWG.Add(1)
	go func() {
		defer m.loopWG.Done()
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					m.onRecord(ctx, e)
				}
			}
		}
	}()
	return nil
}

func (m *Manager) onRecord(ctx context.Context, e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		m.mu.Lock()
		for _, en := range m.enis {
			if recKey(en.eni.AccountID, en.eni.ID) == e.Key() {
				en.deleting = true
				m.remove(en)
				break
			}
		}
		m.mu.Unlock()
		return
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.PerEnv {
		return
	}
	if err := m.upsert(ctx, &r); err != nil {
		m.log.Warn("following an ENI record", "eni", r.ID, "err", err)
		return
	}
	if len(r.Users) == 0 && m.mayDelete(r.Home) {
		m.mu.Lock()
		en := m.enis[r.ID]
		m.mu.Unlock()
		if en != nil {
			m.deleteIfUnused(en)
		}
	}
}

// deleteIfUnused deletes en in the background, under its key's locks, if
// then still nobody uses it (no share recorded, no attachment here).
func (m *Manager) deleteIfUnused(en *entry) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		unlock, err := m.lockBoth(ctx, en.eni.Key)
		if err != nil {
			m.log.Warn("deleting an unused ENI", "eni", en.eni.ID, "err", err)
			return
		}
		defer unlock()
		if m.clustered() {
			r, _, err := m.recs.Get(ctx, recKey(en.eni.AccountID, en.eni.ID))
			if errors.Is(err, store.ErrNotFound) {
				return
			}
			if err != nil {
				m.log.Warn("deleting an unused ENI", "eni", en.eni.ID, "err", err)
				return
			}
			if len(r.Users) > 0 || !m.mayDelete(r.Home) {
				return
			}
		}
		m.mu.Lock()
		del := en.attached == 0 && len(en.users) == 0 && !en.deleting
		if del {
			en.deleting = true
			m.remove(en)
		}
		m.mu.Unlock()
		if !del {
			return
		}
		if err := m.deleteENI(ctx, en.eni.AccountID, en.eni.ID); err != nil {
			m.log.Warn("deleting an unused ENI", "eni", en.eni.ID, "err", err)
		}
	}()
}

// Rehome moves every ENI whose home is not alive to the host home(ENI id)
// names (its record and its interface's) (the leader calls it when a host dies): same ENI id, same
// address, new home. It returns the ENIs moved. Records without a home
// are left alone (a single host's).
func (m *Manager) Rehome(ctx context.Context, alive func(host string) bool, home func(key string) string) ([]string, error) {
	es, err := m.recs.List(ctx, ">")
	if err != nil {
		return nil, fmt.Errorf("hyperplane: rehome: %w", err)
	}
	var moved []string
	var errs []error
	for _, e := range es {
		r := e.Value
		if r.Home == "" || alive(r.Home) {
			continue
		}
		to := home(r.ID)
		if to == "" {
			errs = append(errs, fmt.Errorf("hyperplane: rehome %s: no live host", r.ID))
			continue
		}
		_, _, err := m.recs.Update(ctx, e.Key, func(cur *record) error {
			if cur.Home != r.Home {
				return errMoved
			}
			cur.Home = to
			return nil
		})
		if errors.Is(err, errMoved) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("hyperplane: rehome %s: %w", r.ID, err))
			continue
		}
		if err := m.cfg.Model.SetInterfaceHome(ctx, r.AccountID, r.ID, to); err != nil && !vpc.IsCode(err, vpc.CodeInterfaceNotFound) {
			errs = append(errs, fmt.Errorf("hyperplane: rehome %s: %w", r.ID, err))
		}
		m.log.Info("ENI re-homed", "eni", r.ID, "from", r.Home, "to", to)
		moved = append(moved, r.ID)
	}
	return moved, errors.Join(errs...)
}

var errMoved = errors.New("moved meanwhile")

// Home returns the home host of an ENI this manager knows ("" on a single
// host, or if unknown).
func (m *Manager) Home(eniID string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if en := m.enis[eniID]; en != nil {
		return en.home
	}
	return ""
}
