package hyperplane

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/datapath"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// Modes.
const (
	ModeHyperplane = "hyperplane"  // shared ENIs, created at function create/update
	ModePerEnvENI  = "per-env-eni" // legacy: one ENI per environment, at cold start
)

// Defaults.
const (
	DefaultMaxConnsPerENI = 65000
	DefaultENIsPerVPC     = 250
	DefaultENIsPerAccount = 5000
	DefaultCreateRate     = 10 // ENI creations per second (burst: one second's worth)
	DefaultLoadInterval   = time.Second
	DefaultBuildTimeout   = 30 * time.Second
	bucketENIs            = "hyperplane_enis"
	// requesterSuffix ends the RequesterId of every ENI this package
	// creates ("<account>:aws-lambda").
	requesterSuffix = ":aws-lambda"
	// orphanAge: a lambda ENI without a record is deleted at start only if
	// older (another host may be between creating it and recording it).
	orphanAge = 2 * time.Minute
)

// Config configures a Manager.
type Config struct {
	Model    *vpc.Model
	Datapath *datapath.Reconciler // started; builds the ENIs and carries attaches
	Router   *netdev.Router       // optional: service network (address checks)
	Store    *store.Store
	Logger   *slog.Logger

	MaxConnsPerENI int     // simultaneous connections per ENI; default 65,000
	ENIsPerVPC     int     // network interfaces per VPC; default 250
	ENIsPerAccount int     // network interfaces per account; default 5,000
	CreateRate     float64 // ENI creations per second per manager; default 10
	Mode           string  // ModeHyperplane (default) or ModePerEnvENI
	// LoadInterval is how often connection counts are sampled and extra
	// ENIs added or removed; default 1s, negative disables the loop (tests
	// call Rebalance).
	LoadInterval time.Duration
	// BuildTimeout bounds the wait for the datapath to build a new ENI;
	// default 30s.
	BuildTimeout time.Duration
	// HostID names this host when several share the store (cluster.go):
	// ENIs get a home, keys a cluster-wide lock, and the index follows the
	// records. Empty: a single host, as before.
	HostID string
	// IsLeader reports whether this host is the cluster's leader (it
	// deletes ENIs without a home and unrecorded ones); nil: always.
	IsLeader func() bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Model == nil || c.Store == nil {
		return c, errors.New("hyperplane: Model and Store are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxConnsPerENI <= 0 {
		c.MaxConnsPerENI = DefaultMaxConnsPerENI
	}
	if c.ENIsPerVPC <= 0 {
		c.ENIsPerVPC = DefaultENIsPerVPC
	}
	if c.ENIsPerAccount <= 0 {
		c.ENIsPerAccount = DefaultENIsPerAccount
	}
	if c.CreateRate <= 0 {
		c.CreateRate = DefaultCreateRate
	}
	if c.LoadInterval == 0 {
		c.LoadInterval = DefaultLoadInterval
	}
	if c.BuildTimeout <= 0 {
		c.BuildTimeout = DefaultBuildTimeout
	}
	switch c.Mode {
	case "":
		c.Mode = ModeHyperplane
	case ModeHyperplane, ModePerEnvENI:
	default:
		return c, fmt.Errorf("hyperplane: mode %q: use %q or %q", c.Mode, ModeHyperplane, ModePerEnvENI)
	}
	return c, nil
}

// ENI is a Hyperplane ENI: one per (account, subnet, security-group set),
// plus extra ones while the connections of that key exceed one ENI's
// capacity. Fields are read-only.
type ENI struct {
	ID        string
	AccountID string
	VpcID     string
	SubnetID  string
	Groups    []string // sorted
	Addr      netip.Addr
	Key       string // account/subnet/sg,sg
	PerEnv    bool   // legacy: this environment's own ENI
}

// record is an ENI's durable state: who uses it. Revision-checked.
type record struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account"`
	VpcID     string    `json:"vpc"`
	SubnetID  string    `json:"subnet"`
	Groups    []string  `json:"groups"`
	Addr      string    `json:"addr"`
	Users     []string  `json:"users,omitempty"` // function ARNs, sorted
	PerEnv    bool      `json:"perEnv,omitempty"`
	Extra     bool      `json:"extra,omitempty"` // added for capacity
	Created   time.Time `json:"created"`
	// Home is the host where the ENI's address, SNAT and conntrack live
	// (clustered; "" on a single host).
	Home string `json:"home,omitempty"`
}

type entry struct {
	eni      *ENI
	users    map[string]bool
	extra    bool
	attached int
	conns    int // sampled connections SNATed to it
	deleting bool
	home     string
}

// Manager owns the Hyperplane ENIs of this host: their records, their
// creation and deletion, and environments' attaches to them.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	recs  *store.Table[record]
	locks *store.Table[keyLock] // clustered only
	vpcs  *netdev.VPCs
	rate  *bucket

	mu      sync.Mutex
	enis    map[string]*entry   // ENI id → entry
	byKey   map[string][]*entry // key → shared ENIs (primary first)
	keyMu   map[string]*sync.Mutex
	closed  bool
	growing map[string]bool // keys with an extra ENI being created

	bg        sync.WaitGroup
	stop      context.CancelFunc
	stopWatch context.CancelFunc
	loopWG    sync.WaitGroup
}

func recKey(acct, id string) string { return acct + "." + id }

// Key is the sharing key of an ENI: account, subnet and sorted groups.
func Key(account, subnetID string, groups []string) string {
	g := slices.Clone(groups)
	slices.Sort(g)
	return account + "/" + subnetID + "/" + strings.Join(slices.Compact(g), ",")
}

// New opens the manager's records and rebuilds every ENI from them before
// returning: records whose interface is gone are dropped, legacy
// per-environment ENIs and ENIs nobody uses are deleted (attachments die
// with the process), lambda ENIs of this service without a record are
// deleted, and the datapath is waited for until every kept ENI is built
// (bounded by BuildTimeout).
func New(ctx context.Context, cfg Config) (*Manager, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	recs, err := store.NewTable[record](ctx, c.Store, bucketENIs)
	if err != nil {
		return nil, fmt.Errorf("hyperplane: %w", err)
	}
	m := &Manager{
		cfg: c, log: c.Logger.With("component", "hyperplane"), recs: recs,
		rate:  newBucket(c.CreateRate),
		enis:  map[string]*entry{},
		byKey: map[string][]*entry{}, keyMu: map[string]*sync.Mutex{}, growing: map[string]bool{},
	}
	if c.Datapath != nil {
		m.vpcs = c.Datapath.VPCs()
	}
	if m.clustered() {
		if m.locks, err = store.NewTable[keyLock](ctx, c.Store, bucketLocks); err != nil {
			return nil, fmt.Errorf("hyperplane: %w", err)
		}
	}
	if err := m.restore(ctx); err != nil {
		return nil, err
	}
	if m.clustered() {
		wctx, cancel := context.WithCancel(context.Background())
		if err := m.watch(wctx); err != nil {
			cancel()
			return nil, err
		}
		m.stopWatch = cancel
	}
	if c.LoadInterval > 0 {
		lctx, cancel := context.WithCancel(context.Background())
		m.stop = cancel
		m.loopWG.Add(1)
		go m.loop(lctx)
	}
	return m, nil
}

func (m *Manager) restore(ctx context.Context) error {
	es, err := m.recs.List(ctx, ">")
	if err != nil {
		return fmt.Errorf("hyperplane: list records: %w", err)
	}
	recorded := map[string]bool{}
	var kept []*entry
	var errs []error
	for _, e := range es {
		r := e.Value
		recorded[r.ID] = true
		n, err := m.cfg.Model.GetInterface(ctx, r.AccountID, r.ID)
		if vpc.IsCode(err, vpc.CodeInterfaceNotFound) {
			m.log.Info("dropping the record of a deleted ENI", "eni", r.ID)
			errs = append(errs, m.recs.Delete(ctx, e.Key))
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if (r.PerEnv || len(r.Users) == 0) && m.mayDelete(r.Home) {
			m.log.Info("deleting an ENI no function uses", "eni", r.ID, "per_env", r.PerEnv)
			errs = append(errs, m.deleteENI(ctx, r.AccountID, r.ID))
			continue
		}
		en := m.entryOf(r, n.PrivateIP)
		m.add(en)
		kept = append(kept, en)
	}
	// Lambda ENIs of this service that no record owns: a crash between
	// creating and recording. Their addresses go back to the subnet.
	all, err := m.cfg.Model.ListInterfaces(ctx, "")
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range all {
		if n.InterfaceType == vpc.InterfaceTypeLambda && strings.HasSuffix(n.RequesterID, requesterSuffix) &&
			!recorded[n.ID] && time.Since(n.Created) > orphanAge && m.mayDelete("") {
			m.log.Info("deleting an unrecorded lambda ENI", "eni", n.ID)
			errs = append(errs, m.cfg.Model.DeleteInterface(ctx, n.AccountID, n.ID))
		}
	}
	for _, en := range kept {
		errs = append(errs, m.waitBuilt(ctx, en.eni))
	}
	if err := errors.Join(errs...); err != nil {
		m.log.Warn("restoring Hyperplane ENIs", "err", err)
		return fmt.Errorf("hyperplane: restore: %w", err)
	}
	m.log.Info("Hyperplane ENIs restored", "enis", len(kept))
	return nil
}

func (m *Manager) entryOf(r *record, ip string) *entry {
	a, _ := netip.ParseAddr(ip)
	en := &entry{
		eni: &ENI{ID: r.ID, AccountID: r.AccountID, VpcID: r.VpcID, SubnetID: r.SubnetID, Groups: slices.Clone(r.Groups),
			Addr: a, Key: Key(r.AccountID, r.SubnetID, r.Groups), PerEnv: r.PerEnv},
		users: map[string]bool{}, extra: r.Extra, home: r.Home,
	}
	for _, u := range r.Users {
		en.users[u] = true
	}
	return en
}

// add indexes an entry (primary, i.e. non-extra, first) and returns the
// indexed one: an entry of the same ENI already there (the records' watch
// may index it first) is kept. Locks mu.
func (m *Manager) add(en *entry) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.enis[en.eni.ID]; old != nil {
		for u := range en.users {
			old.users[u] = true
		}
		return old
	}
	m.enis[en.eni.ID] = en
	if en.eni.PerEnv {
		return en
	}
	l := append(m.byKey[en.eni.Key], en)
	slices.SortStableFunc(l, func(a, b *entry) int {
		if a.extra != b.extra {
			if a.extra {
				return 1
			}
			return -1
		}
		return strings.Compare(a.eni.ID, b.eni.ID)
	})
	m.byKey[en.eni.Key] = l
	return en
}

// remove unindexes an entry. Caller holds mu.
func (m *Manager) remove(en *entry) {
	delete(m.enis, en.eni.ID)
	l := slices.DeleteFunc(m.byKey[en.eni.Key], func(x *entry) bool { return x == en })
	if len(l) == 0 {
		delete(m.byKey, en.eni.Key)
	} else {
		m.byKey[en.eni.Key] = l
	}
}

func (m *Manager) lockKey(k string) func() {
	m.mu.Lock()
	l := m.keyMu[k]
	if l == nil {
		l = &sync.Mutex{}
		m.keyMu[k] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// target is one subnet's validated key.
type target struct {
	subnet *vpc.Subnet
	groups []string
	key    string
}

// validate resolves subnets and groups: every subnet and group exists in
// the account and all are in one VPC; no groups means the VPC's default.
func (m *Manager) validate(ctx context.Context, account string, subnetIDs, sgIDs []string) ([]target, error) {
	if len(subnetIDs) == 0 {
		return nil, newErr(ReasonInvalidSubnet, nil, "No subnets are given. Set at least one subnet in the function's VpcConfig SubnetIds.")
	}
	var subs []*vpc.Subnet
	for _, id := range subnetIDs {
		s, err := m.cfg.Model.GetSubnet(ctx, account, id)
		if vpc.IsCode(err, vpc.CodeSubnetNotFound) {
			return nil, newErr(ReasonInvalidSubnet, err, "The subnet %s does not exist in account %s. Check the function's VpcConfig SubnetIds.", id, account)
		}
		if err != nil {
			return nil, newErr(ReasonInternalError, err, "Reading subnet %s failed: %v", id, err)
		}
		if len(subs) > 0 && s.VpcID != subs[0].VpcID {
			return nil, newErr(ReasonInvalidSubnet, nil, "The subnets %s (%s) and %s (%s) are in different VPCs. All subnets of a function must be in one VPC.", subs[0].ID, subs[0].VpcID, s.ID, s.VpcID)
		}
		subs = append(subs, s)
	}
	vpcID := subs[0].VpcID
	groups := slices.Clone(sgIDs)
	slices.Sort(groups)
	groups = slices.Compact(groups)
	if len(groups) == 0 {
		v, err := m.cfg.Model.GetVPC(ctx, account, vpcID)
		if err != nil {
			return nil, newErr(ReasonInternalError, err, "Reading VPC %s failed: %v", vpcID, err)
		}
		groups = []string{v.DefaultSecurityGroupID}
	}
	if len(groups) > vpc.MaxGroupsPerInterface {
		return nil, newErr(ReasonInvalidSecurityGroup, nil, "%d security groups are given; a function may have at most %d.", len(groups), vpc.MaxGroupsPerInterface)
	}
	for _, id := range groups {
		g, err := m.cfg.Model.GetSecurityGroup(ctx, account, id)
		if vpc.IsCode(err, vpc.CodeGroupNotFound) {
			return nil, newErr(ReasonInvalidSecurityGroup, err, "The security group %s does not exist in account %s. Check the function's VpcConfig SecurityGroupIds.", id, account)
		}
		if err != nil {
			return nil, newErr(ReasonInternalError, err, "Reading security group %s failed: %v", id, err)
		}
		if g.VpcID != vpcID {
			return nil, newErr(ReasonInvalidSecurityGroup, nil, "The security group %s is in %s, but the subnets are in %s. Use security groups of the subnets' VPC.", id, g.VpcID, vpcID)
		}
	}
	out := make([]target, 0, len(subs))
	seen := map[string]bool{}
	for _, s := range subs {
		if seen[s.ID] {
			continue
		}
		seen[s.ID] = true
		out = append(out, target{subnet: s, groups: groups, key: Key(account, s.ID, groups)})
	}
	return out, nil
}

// Ensure makes sure user (a function ARN) has an ENI in each of its
// subnets for its security groups: an existing ENI of the same key is
// shared (the user is recorded on it), otherwise one is created (an
// address of the subnet, quotas and the creation rate apply) and waited
// for until the datapath has built it. Called at function create/update,
// never at a cold start. It returns one ENI per subnet, in subnet order.
func (m *Manager) Ensure(ctx context.Context, account, user string, subnetIDs []string, sgIDs []string) ([]*ENI, error) {
	ts, err := m.validate(ctx, account, subnetIDs, sgIDs)
	if err != nil {
		return nil, err
	}
	out := make([]*ENI, 0, len(ts))
	for _, t := range ts {
		m.log.Info("ensuring the ENI of a key", "key", t.key, "user", user)
		e, err := m.ensureOne(ctx, account, user, t)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (m *Manager) ensureOne(ctx context.Context, account, user string, t target) (*ENI, error) {
	unlock, err := m.lockBoth(ctx, t.key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := m.refreshKey(ctx, account, t.key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	shared := slices.Clone(m.byKey[t.key])
	m.mu.Unlock()
	if len(shared) > 0 {
		for _, en := range shared {
			if err := m.addUser(ctx, en, user); err != nil {
				return nil, err
			}
		}
		// A shared ENI was built once; its datapath is checked again (and
		// repaired if it is broken) before the function is reported Active.
		if err := m.waitBuilt(ctx, shared[0].eni); err != nil {
			return nil, err
		}
		return shared[0].eni, nil
	}
	if err := m.rate.wait(ctx); err != nil {
		return nil, newErr(ReasonEniLimitExceeded, err, "The network interface creation rate (%g per second) was exceeded and the request ended while waiting. Retry later.", m.cfg.CreateRate)
	}
	en, err := m.create(ctx, account, user, t, false, false)
	if err != nil {
		return nil, err
	}
	return en.eni, nil
}

// create makes a new ENI: quota checks, its record, the interface (address
// from the subnet), and the wait for the datapath. The record comes first:
// a crash before the interface leaves a record of no interface, which
// restore drops, never an interface without a record.
func (m *Manager) create(ctx context.Context, account, user string, t target, perEnv, extra bool) (*entry, error) {
	if err := m.checkQuotas(ctx, account, t.subnet.VpcID); err != nil {
		return nil, err
	}
	id := vpc.NewID(vpc.PrefixInterface)
	r := &record{ID: id, AccountID: account, VpcID: t.subnet.VpcID, SubnetID: t.subnet.ID, Groups: slices.Clone(t.groups),
		PerEnv: perEnv, Extra: extra, Created: time.Now().UTC(), Home: m.cfg.HostID}
	if user != "" {
		r.Users = []string{user}
	}
	if _, err := m.recs.Create(ctx, recKey(account, id), r); err != nil {
		return nil, newErr(ReasonInternalError, err, "Recording network interface %s failed: %v", id, err)
	}
	n, err := m.cfg.Model.CreateInterface(ctx, account, vpc.InterfaceRequest{
		ID: id, SubnetID: t.subnet.ID, GroupIDs: t.groups, InterfaceType: vpc.InterfaceTypeLambda,
		Description: "AWS Lambda VPC ENI-" + functionName(user) + "-" + newUUID(),
		RequesterID: account + requesterSuffix, Home: m.cfg.HostID,
	})
	if err != nil {
		return nil, errors.Join(fromModel(err, t.subnet.ID, t.groups), m.recs.Delete(context.WithoutCancel(ctx), recKey(account, id)))
	}
	r.Addr = n.PrivateIP
	if m.clustered() {
		// The other hosts index the ENI from its record (their watch):
		// written again with its address, now that the interface exists.
		if _, _, err := m.recs.Update(ctx, recKey(account, id), func(cur *record) error { cur.Addr = n.PrivateIP; return nil }); err != nil {
			return nil, errors.Join(newErr(ReasonInternalError, err, "Recording network interface %s failed: %v", id, err),
				m.deleteENI(context.WithoutCancel(ctx), account, n.ID))
		}
	}
	en := m.entryOf(r, n.PrivateIP)
	if err := m.waitBuilt(ctx, en.eni); err != nil {
		return nil, errors.Join(err, m.deleteENI(context.WithoutCancel(ctx), account, n.ID))
	}
	en = m.add(en)
	m.log.Info("ENI created", "eni", n.ID, "key", en.eni.Key, "addr", n.PrivateIP, "per_env", perEnv, "extra", extra, "user", user)
	return en, nil
}

func (m *Manager) checkQuotas(ctx context.Context, account, vpcID string) error {
	ns, err := m.cfg.Model.ListInterfaces(ctx, account)
	if err != nil {
		return newErr(ReasonInternalError, err, "Listing network interfaces failed: %v", err)
	}
	inVPC := 0
	for _, n := range ns {
		if n.VpcID == vpcID {
			inVPC++
		}
	}
	if len(ns) >= m.cfg.ENIsPerAccount {
		return newErr(ReasonEniLimitExceeded, nil, "Account %s has %d network interfaces, its limit. Delete unused network interfaces or functions, or ask the operator to raise the limit.", account, len(ns))
	}
	if inVPC >= m.cfg.ENIsPerVPC {
		return newErr(ReasonEniLimitExceeded, nil, "VPC %s has %d network interfaces, its limit. Delete unused network interfaces or functions in it, or ask the operator to raise the limit.", vpcID, inVPC)
	}
	return nil
}

func (m *Manager) waitBuilt(ctx context.Context, e *ENI) error {
	if m.cfg.Datapath == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, m.cfg.BuildTimeout)
	defer cancel()
	if _, err := m.cfg.Datapath.WaitInterface(wctx, e.ID); err != nil {
		return newErr(ReasonInternalError, err, "The network interface %s was not built in time: %v. Retry; if it persists, contact the operator.", e.ID, err)
	}
	return nil
}

// addUser records user on an ENI (revision-checked).
func (m *Manager) addUser(ctx context.Context, en *entry, user string) error {
	m.mu.Lock()
	has := en.users[user]
	m.mu.Unlock()
	if has || user == "" {
		return nil
	}
	_, _, err := m.recs.Update(ctx, recKey(en.eni.AccountID, en.eni.ID), func(r *record) error {
		if !slices.Contains(r.Users, user) {
			r.Users = append(r.Users, user)
			slices.Sort(r.Users)
		}
		return nil
	})
	if err != nil {
		return newErr(ReasonInternalError, err, "Recording the use of network interface %s failed: %v", en.eni.ID, err)
	}
	m.mu.Lock()
	en.users[user] = true
	m.mu.Unlock()
	m.log.Info("ENI shared", "eni", en.eni.ID, "user", user)
	return nil
}

// Release drops user's shares of every ENI of the account; an ENI nobody
// uses any more is deleted (its address returns to the subnet) as soon as
// no environment is attached to it. It holds the ENI's key lock, as Ensure
// does, so an ENI is never deleted while another function takes a share
// of it.
func (m *Manager) Release(ctx context.Context, account, user string) error {
	m.mu.Lock()
	var mine []*entry
	for _, en := range m.enis {
		if en.eni.AccountID == account && en.users[user] {
			mine = append(mine, en)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, en := range mine {
		errs = append(errs, m.release(ctx, en, user))
	}
	return errors.Join(errs...)
}

// release drops user's share of one ENI under its key lock.
func (m *Manager) release(ctx context.Context, en *entry, user string) error {
	unlock, err := m.lockBoth(ctx, en.eni.Key)
	if err != nil {
		return err
	}
	defer unlock()
	account := en.eni.AccountID
	r, _, err := m.recs.Update(ctx, recKey(account, en.eni.ID), func(r *record) error {
		r.Users = slices.DeleteFunc(r.Users, func(u string) bool { return u == user })
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		r, err = &record{}, nil
	}
	if err != nil {
		return err
	}
	m.mu.Lock()
	delete(en.users, user)
	del := len(r.Users) == 0 && len(en.users) == 0 && en.attached == 0 && !en.deleting && m.mayDelete(r.Home)
	if del {
		en.deleting = true
		m.remove(en)
	}
	m.mu.Unlock()
	m.log.Info("ENI share released", "eni", en.eni.ID, "user", user, "users_left", len(r.Users))
	if del {
		return m.deleteENI(ctx, account, en.eni.ID)
	}
	return nil
}

// deleteENI deletes the interface (address back to the subnet) and then
// its record.
func (m *Manager) deleteENI(ctx context.Context, account, id string) error {
	if err := m.cfg.Model.DeleteInterface(ctx, account, id); err != nil {
		return fmt.Errorf("hyperplane: delete %s: %w", id, err)
	}
	if err := m.recs.Delete(ctx, recKey(account, id)); err != nil {
		return fmt.Errorf("hyperplane: delete record of %s: %w", id, err)
	}
	m.log.Info("ENI deleted", "eni", id)
	return nil
}

// ENIsFor returns user's ENIs in account, one per (subnet, group set) key:
// the one to pass to Attach (which may choose a less loaded ENI of the
// same key). In memory; cheap.
func (m *Manager) ENIsFor(account, user string) []*ENI {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*ENI
	for _, l := range m.byKey {
		if len(l) > 0 && l[0].eni.AccountID == account && l[0].users[user] {
			out = append(out, l[0].eni)
		}
	}
	slices.SortFunc(out, func(a, b *ENI) int { return cmp.Compare(a.SubnetID, b.SubnetID) })
	return out
}

// Users returns the users (functions' shares) of every shared ENI, by
// account, sorted.
func (m *Manager) Users() map[string][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]string{}
	for _, en := range m.enis {
		if en.eni.PerEnv {
			continue
		}
		for u := range en.users {
			if !slices.Contains(out[en.eni.AccountID], u) {
				out[en.eni.AccountID] = append(out[en.eni.AccountID], u)
			}
		}
	}
	for _, us := range out {
		slices.Sort(us)
	}
	return out
}

// Stats is what the manager holds (metrics, tests).
type Stats struct {
	ENIs        int
	Keys        int
	Attachments int
}

// ENIs returns a snapshot of the ENIs this manager knows (read-only
// copies), for metrics.
func (m *Manager) ENIs() []ENI {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ENI, 0, len(m.enis))
	for _, en := range m.enis {
		out = append(out, *en.eni)
	}
	return out
}

// Stats counts ENIs, keys and attachments.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Stats{ENIs: len(m.enis), Keys: len(m.byKey)}
	for _, en := range m.enis {
		s.Attachments += en.attached
	}
	return s
}

// Close stops the load loop and waits for background deletions. The ENIs
// stay (they are records); attachments are the caller's to detach.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	if m.stop != nil {
		m.stop()
	}
	if m.stopWatch != nil {
		m.stopWatch()
	}
	m.loopWG.Wait()
	m.bg.Wait()
	return nil
}

func functionName(arn string) string {
	parts := strings.Split(arn, ":")
	if len(parts) >= 7 && parts[5] == "function" {
		return parts[6]
	}
	if arn == "" {
		return "unknown"
	}
	return arn
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// bucket is a token bucket: rate tokens per second, one second's worth of
// burst (at least one).
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64) *bucket {
	b := max(1, rate)
	return &bucket{rate: rate, burst: b, tokens: b, last: time.Now()}
}

// take takes a token now or reports how long until one is available.
func (b *bucket) take() (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

func (b *bucket) wait(ctx context.Context) error {
	for {
		ok, d := b.take()
		if ok {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
