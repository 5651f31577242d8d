package auth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Buckets used by the accounts registry.
const (
	accountsBucket   = "accounts"      // key: account id → Account
	accessKeysBucket = "accesskeys"    // key: access key id → keyIndex
	accountsMeta     = "accounts_meta" // key: "first" → the first Account
	firstAccountKey  = "first"
	firstAccountName = "default"
)

// ErrAccountNotFound is returned by Get for an unknown account id.
var ErrAccountNotFound = errors.New("account not found")

// keyIndex is the record of the accesskeys bucket. Creating it claims an
// access key id globally, so no two accounts can ever share one.
type keyIndex struct {
	AccountID string `json:"accountId"`
}

// Accounts is the registry of accounts and their access keys. Records live
// in the store; the key → account map used on every request is kept in
// memory and current with a watch on the accounts bucket, so LookupKey never
// touches the store. Any number of processes may share the store.
type Accounts struct {
	accounts *store.Table[Account]
	index    *store.Table[keyIndex]
	meta     *store.Table[Account]
	log      *slog.Logger
	conn     *nats.Conn

	mu     sync.RWMutex
	byKey  map[string]cachedKey // access key id → key and owner
	byAcct map[string]cachedAcct

	cancel context.CancelFunc
	done   chan struct{}
}

type cachedKey struct {
	acct *Account
	key  AccessKey
}

type cachedAcct struct {
	rev  uint64
	acct *Account
}

// NewAccounts opens the registry and returns once the in-memory key cache
// holds every stored account. The cache is kept current until ctx is
// cancelled or Close is called.
func NewAccounts(ctx context.Context, s *store.Store) (*Accounts, error) {
	accts, err := store.NewTable[Account](ctx, s, accountsBucket)
	if err != nil {
		return nil, err
	}
	idx, err := store.NewTable[keyIndex](ctx, s, accessKeysBucket)
	if err != nil {
		return nil, err
	}
	meta, err := store.NewTable[Account](ctx, s, accountsMeta)
	if err != nil {
		return nil, err
	}
	a := &Accounts{
		accounts: accts,
		index:    idx,
		meta:     meta,
		log:      slog.Default().With("component", "accounts"),
		conn:     s.Conn(),
		byKey:    map[string]cachedKey{},
		byAcct:   map[string]cachedAcct{},
		done:     make(chan struct{}),
	}
	wctx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	ready := make(chan error, 1)
	go a.watch(wctx, ready)
	select {
	case err := <-ready:
		if err != nil {
			cancel()
			<-a.done
			return nil, err
		}
	case <-ctx.Done():
		cancel()
		<-a.done
		return nil, ctx.Err()
	}
	return a, nil
}

// Close stops the watch that keeps the key cache current.
func (a *Accounts) Close() {
	a.cancel()
	<-a.done
}

// watch mirrors the accounts bucket into the cache. The first snapshot is
// reported on ready; later, if the watch ends unexpectedly, it is restarted
// and the cache rebuilt from a fresh snapshot.
func (a *Accounts) watch(ctx context.Context, ready chan<- error) {
	defer close(a.done)
	first := true
	for {
		err := a.watchOnce(ctx, func() {
			if first {
				first = false
				ready <- nil
			}
		})
		if ctx.Err() != nil {
			if first {
				ready <- ctx.Err()
			}
			return
		}
		if first {
			ready <- err
			return
		}
		if a.conn.IsClosed() {
			// The store was closed under us: nothing left to watch.
			return
		}
		a.log.Warn("accounts watch ended; restarting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (a *Accounts) watchOnce(ctx context.Context, synced func()) error {
	w, err := a.accounts.KV().WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch accounts: %w", err)
	}
	defer func() { _ = w.Stop() }()
	snapshot := map[string]cachedAcct{}
	var snapRev uint64 // highest revision (put or delete) in the snapshot
	initial := true
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok = <-w.Updates():
		}
		if !ok {
			return errors.New("watch channel closed")
		}
		if e == nil { // end of the initial snapshot
			if initial {
				initial = false
				a.replace(snapshot, snapRev)
				snapshot = nil
				synced()
			}
			continue
		}
		if initial {
			snapRev = max(snapRev, e.Revision())
		}
		if e.Operation() != jetstream.KeyValuePut {
			if initial {
				delete(snapshot, e.Key())
			} else {
				a.remove(e.Key())
			}
			continue
		}
		acct := new(Account)
		if err := json.Unmarshal(e.Value(), acct); err != nil {
			a.log.Error("undecodable account record ignored", "key", e.Key(), "err", err)
			continue
		}
		if initial {
			snapshot[acct.ID] = cachedAcct{rev: e.Revision(), acct: acct}
		} else {
			a.apply(acct, e.Revision())
		}
	}
}

// replace swaps the whole cache for snapshot (which covers revisions up to
// snapRev), keeping entries newer than it (written by this process while
// the watch started; the watch delivers them next).
func (a *Accounts) replace(snapshot map[string]cachedAcct, snapRev uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, c := range a.byAcct {
		if c.rev <= snapRev {
			continue
		}
		if s, ok := snapshot[id]; !ok || s.rev < c.rev {
			snapshot[id] = c
		}
	}
	a.byAcct = snapshot
	a.byKey = make(map[string]cachedKey, len(snapshot))
	for _, c := range snapshot {
		for _, k := range c.acct.Keys {
			a.byKey[k.ID] = cachedKey{acct: c.acct, key: k}
		}
	}
}

// apply records acct at revision rev unless the cache already has a newer one.
func (a *Accounts) apply(acct *Account, rev uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.byAcct[acct.ID]; ok {
		if old.rev > rev {
			return
		}
		for _, k := range old.acct.Keys {
			delete(a.byKey, k.ID)
		}
	}
	a.byAcct[acct.ID] = cachedAcct{rev: rev, acct: acct}
	for _, k := range acct.Keys {
		a.byKey[k.ID] = cachedKey{acct: acct, key: k}
	}
}

func (a *Accounts) remove(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.byAcct[id]; ok {
		for _, k := range old.acct.Keys {
			delete(a.byKey, k.ID)
		}
		delete(a.byAcct, id)
	}
}

// LookupKey returns the account owning access key keyID and the key pair.
// It reads only memory.
func (a *Accounts) LookupKey(keyID string) (Account, AccessKey, bool) {
	a.mu.RLock()
	c, ok := a.byKey[keyID]
	a.mu.RUnlock()
	if !ok {
		return Account{}, AccessKey{}, false
	}
	return *c.acct, c.key, true
}

// Create makes a new account named name with one access key.
func (a *Accounts) Create(ctx context.Context, name string) (*Account, error) {
	acct, err := newAccount(name)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		err := a.materialize(ctx, acct, false)
		if err == nil {
			return acct, nil
		}
		if !errors.Is(err, store.ErrExists) || attempt >= 5 {
			return nil, err
		}
		// A random id or key collided with an existing one: draw again.
		if acct, err = newAccount(name); err != nil {
			return nil, err
		}
	}
}

// materialize writes acct's key index records and then the account record.
// With idempotent set, records that already exist with the same content are
// accepted (EnsureFirst finishing a creation another writer began);
// otherwise any existing record is store.ErrExists.
func (a *Accounts) materialize(ctx context.Context, acct *Account, idempotent bool) error {
	for _, k := range acct.Keys {
		_, err := a.index.Create(ctx, k.ID, &keyIndex{AccountID: acct.ID})
		if errors.Is(err, store.ErrExists) {
			cur, _, gerr := a.index.Get(ctx, k.ID)
			if !idempotent || gerr != nil || cur.AccountID != acct.ID {
				return fmt.Errorf("access key %s: %w", k.ID, store.ErrExists)
			}
		} else if err != nil {
			return fmt.Errorf("index access key: %w", err)
		}
	}
	rev, err := a.accounts.Create(ctx, acct.ID, acct)
	if errors.Is(err, store.ErrExists) {
		if !idempotent {
			return fmt.Errorf("account %s: %w", acct.ID, store.ErrExists)
		}
		cur, crev, gerr := a.accounts.Get(ctx, acct.ID)
		if gerr != nil {
			return fmt.Errorf("read account %s: %w", acct.ID, gerr)
		}
		a.apply(cur, crev)
		return nil
	}
	if err != nil {
		return fmt.Errorf("store account: %w", err)
	}
	a.apply(acct, rev)
	return nil
}

// ErrKeyNotFound is returned by DeleteUserKey for a key the user does not
// have.
var ErrKeyNotFound = errors.New("access key not found")

// maxUserKeys is IAM's quota of access keys per user.
const maxUserKeys = 2

// ErrKeyLimit is returned by CreateUserKey when the user has maxUserKeys.
var ErrKeyLimit = fmt.Errorf("cannot exceed quota for AccessKeysPerUser: %d", maxUserKeys)

// CreateUserKey issues an access key for IAM user user of account acctID
// (the IAM API's CreateAccessKey; the user's existence is the caller's
// check). Requests signed with it carry Identity.User.
func (a *Accounts) CreateUserKey(ctx context.Context, acctID, user string) (AccessKey, error) {
	for attempt := 0; ; attempt++ {
		key, err := NewAccessKey()
		if err != nil {
			return AccessKey{}, err
		}
		key.User, key.Created = user, time.Now().UTC().Truncate(time.Second)
		if _, err := a.index.Create(ctx, key.ID, &keyIndex{AccountID: acctID}); errors.Is(err, store.ErrExists) && attempt < 5 {
			continue
		} else if err != nil {
			return AccessKey{}, fmt.Errorf("index access key: %w", err)
		}
		acct, rev, err := a.accounts.Update(ctx, acctID, func(acct *Account) error {
			n := 0
			for _, k := range acct.Keys {
				if k.User == user {
					n++
				}
			}
			if n >= maxUserKeys {
				return ErrKeyLimit
			}
			acct.Keys = append(acct.Keys, key)
			return nil
		})
		if err != nil {
			_ = a.index.Delete(ctx, key.ID)
			if errors.Is(err, store.ErrNotFound) {
				return AccessKey{}, fmt.Errorf("%w: %s", ErrAccountNotFound, acctID)
			}
			return AccessKey{}, err
		}
		a.apply(acct, rev)
		return key, nil
	}
}

// DeleteUserKey deletes access key keyID of IAM user user.
func (a *Accounts) DeleteUserKey(ctx context.Context, acctID, user, keyID string) error {
	acct, rev, err := a.accounts.Update(ctx, acctID, func(acct *Account) error {
		for i, k := range acct.Keys {
			if k.ID == keyID && k.User == user && user != "" {
				acct.Keys = append(acct.Keys[:i:i], acct.Keys[i+1:]...)
				return nil
			}
		}
		return ErrKeyNotFound
	})
	if err != nil {
		return err
	}
	a.apply(acct, rev)
	return a.index.Delete(ctx, keyID)
}

// UserKeys lists the access keys of IAM user user (secrets included; the
// IAM API shows only ids).
func (a *Accounts) UserKeys(ctx context.Context, acctID, user string) ([]AccessKey, error) {
	acct, err := a.Get(ctx, acctID)
	if err != nil {
		return nil, err
	}
	var out []AccessKey
	for _, k := range acct.Keys {
		if k.User == user && user != "" {
			out = append(out, k)
		}
	}
	return out, nil
}

// Get returns the account with id, or ErrAccountNotFound.
func (a *Accounts) Get(ctx context.Context, id string) (*Account, error) {
	acct, _, err := a.accounts.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrAccountNotFound, id)
	}
	return acct, err
}

// List returns every account, oldest first.
func (a *Accounts) List(ctx context.Context) ([]Account, error) {
	es, err := a.accounts.List(ctx, ">")
	if err != nil {
		return nil, err
	}
	out := make([]Account, 0, len(es))
	for _, e := range es {
		out = append(out, *e.Value)
	}
	// Creation times have millisecond resolution, so two accounts can tie;
	// the first account (the one EnsureFirst made) always leads, and ties
	// among the rest fall back to the id so the order is stable.
	first := ""
	if m, _, err := a.meta.Get(ctx, firstAccountKey); err == nil {
		first = m.ID
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	slices.SortFunc(out, func(x, y Account) int {
		switch {
		case x.ID == y.ID:
			return 0
		case x.ID == first:
			return -1
		case y.ID == first:
			return 1
		}
		if c := x.Created.Compare(y.Created); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out, nil
}

// EnsureFirst returns the first account, creating it (named "default") only
// when no account exists yet. created reports whether this call created it.
// Concurrent callers, in this process or others sharing the store, agree on
// one account: the first is claimed with a create-if-absent marker record
// before it is written, and a writer that finds the marker completes the
// creation idempotently (which also repairs a creation cut short by a crash).
func (a *Accounts) EnsureFirst(ctx context.Context) (*Account, bool, error) {
	if m, _, err := a.meta.Get(ctx, firstAccountKey); err == nil {
		if err := a.materialize(ctx, m, true); err != nil {
			return nil, false, err
		}
		return m, false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	existing, err := a.List(ctx)
	if err != nil {
		return nil, false, err
	}
	if len(existing) > 0 {
		return &existing[0], false, nil
	}
	cand, err := newAccount(firstAccountName)
	if err != nil {
		return nil, false, err
	}
	_, err = a.meta.Create(ctx, firstAccountKey, cand)
	created := err == nil
	if errors.Is(err, store.ErrExists) {
		if cand, _, err = a.meta.Get(ctx, firstAccountKey); err != nil {
			return nil, false, err
		}
	} else if err != nil {
		return nil, false, err
	}
	if err := a.materialize(ctx, cand, true); err != nil {
		return nil, false, err
	}
	return cand, created, nil
}

// newAccount draws a random account id and access key pair.
func newAccount(name string) (*Account, error) {
	id, err := randomAccountID()
	if err != nil {
		return nil, err
	}
	key, err := NewAccessKey()
	if err != nil {
		return nil, err
	}
	return &Account{ID: id, Name: name, Keys: []AccessKey{key}, Created: time.Now().UTC().Truncate(time.Millisecond)}, nil
}

// randomAccountID returns 12 decimal digits, the first not 0.
func randomAccountID() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(9e11))
	if err != nil {
		return "", fmt.Errorf("random account id: %w", err)
	}
	return fmt.Sprintf("%012d", n.Int64()+1e11), nil
}

// NewAccessKey returns a random key pair: id AKIA + 16 upper-case base32
// characters, secret 40 base64 characters.
func NewAccessKey() (AccessKey, error) {
	var idb [10]byte
	var sb [30]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return AccessKey{}, fmt.Errorf("random access key: %w", err)
	}
	if _, err := rand.Read(sb[:]); err != nil {
		return AccessKey{}, fmt.Errorf("random secret key: %w", err)
	}
	return AccessKey{
		ID:     "AKIA" + base32.StdEncoding.EncodeToString(idb[:]),
		Secret: base64.StdEncoding.EncodeToString(sb[:]),
	}, nil
}

var _ KeyLookup = (*Accounts)(nil)
