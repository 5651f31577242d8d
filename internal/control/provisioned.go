package control

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// Provisioned concurrency configurations (PutProvisionedConcurrencyConfig
// and friends): one record per function and qualifier (a published
// version or an alias) in the "provisioned" bucket, mirrored in memory by
// a watch. The records say what is wanted and, as written by the host
// that keeps the environments (internal/provision), what is ready.

// Provisioned concurrency statuses, as Lambda names them.
const (
	ProvisionedInProgress = "IN_PROGRESS"
	ProvisionedReady      = "READY"
	ProvisionedFailed     = "FAILED"
)

// ProvisionedConfig is one provisioned concurrency configuration.
type ProvisionedConfig struct {
	AccountID    string    `json:"AccountId"`
	Region       string    `json:"Region"`
	FunctionName string    `json:"FunctionName"`
	Qualifier    string    `json:"Qualifier"`
	Requested    int       `json:"Requested"`
	Available    int       `json:"Available"`
	Allocated    int       `json:"Allocated"`
	Status       string    `json:"Status"`
	StatusReason string    `json:"StatusReason,omitempty"`
	LastModified time.Time `json:"LastModified"`
	// Generation changes with every Put: a FAILED status belongs to one.
	Generation string `json:"Generation"`
}

type provState struct {
	table *store.Table[ProvisionedConfig]
	mu    sync.RWMutex
	m     map[string]cached[ProvisionedConfig]
}

func provKey(acct, name, qualifier string) string { return fnKey(acct, name) + "." + qualifier }

// openProvisioned opens the bucket and starts its watch.
func (s *Service) openProvisioned(ctx, wctx context.Context) error {
	t, err := store.NewTable[ProvisionedConfig](ctx, s.o.Store, "provisioned")
	if err != nil {
		return err
	}
	s.prov = &provState{table: t, m: map[string]cached[ProvisionedConfig]{}}
	return watch(wctx, t.KV(), func(k string, v *ProvisionedConfig, rev uint64) {
		applyTo(&s.prov.mu, s.prov.m, k, v, rev)
	})
}

func errProvNotFound() *Error {
	return errf("ProvisionedConcurrencyConfigNotFoundException", 404, "No Provisioned Concurrency Config found for this function")
}

// provTarget checks a qualifier provisioned concurrency may be set on: a
// published version or an alias of an existing function of acct.
func (s *Service) provTarget(acct, region, name, qualifier string) (Ref, error) {
	r, err := ParseRef(name)
	if err != nil {
		return Ref{}, err
	}
	if err := refInAccount(r, acct, region); err != nil {
		return Ref{}, err
	}
	if qualifier == "" {
		qualifier = r.Qualifier
	} else if r.Qualifier != "" && r.Qualifier != qualifier {
		return Ref{}, invalidParam("The derived qualifier from the function name does not match the specified qualifier.")
	}
	r.Qualifier = qualifier
	if qualifier == "" {
		return Ref{}, invalidParam("Qualifier is required: provisioned concurrency applies to a published version or an alias, not to $LATEST")
	}
	if qualifier == LatestVersion {
		return Ref{}, invalidParam("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
	}
	if _, _, err := s.resolve(acct, region, r.Name, qualifier); err != nil {
		return Ref{}, err
	}
	return r, nil
}

// provisionedTotals sums the account's provisioned concurrency: for
// functions without reserved concurrency (it comes out of the unreserved
// pool) and per function.
func (s *Service) provisionedTotals(acct string) (unreserved int, perFn map[string]int) {
	perFn = map[string]int{}
	if s.prov == nil {
		return 0, perFn
	}
	s.prov.mu.RLock()
	for _, c := range s.prov.m {
		if c.v != nil && c.v.AccountID == acct {
			perFn[c.v.FunctionName] += c.v.Requested
		}
	}
	s.prov.mu.RUnlock()
	for fn, n := range perFn {
		if s.Reserved(acct, fn) == nil {
			unreserved += n
		}
	}
	return unreserved, perFn
}

// PutProvisioned sets a qualifier's provisioned concurrency to n: stored
// IN_PROGRESS; the host that keeps the environments makes it READY.
func (s *Service) PutProvisioned(ctx context.Context, acct, region, name, qualifier string, n int) (*ProvisionedConfig, error) {
	r, err := s.provTarget(acct, region, name, qualifier)
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, validation("1 validation error detected: Value '%d' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1", n)
	}
	k := provKey(acct, r.Name, r.Qualifier)
	old := 0
	if cur := s.provisioned(k); cur != nil {
		old = cur.Requested
	}
	unres, perFn := s.provisionedTotals(acct)
	if res := s.Reserved(acct, r.Name); res != nil {
		if perFn[r.Name]-old+n > *res {
			return nil, invalidParam("Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function (%d; %d provisioned on other qualifiers)", *res, perFn[r.Name]-old)
		}
	} else {
		_, _, reserved := s.usage(acct)
		if s.o.AccountLimit-reserved-(unres-old+n) < s.minUnreserved() {
			return nil, invalidParam("Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].", s.minUnreserved())
		}
	}
	pc := &ProvisionedConfig{
		AccountID: acct, Region: region, FunctionName: r.Name, Qualifier: r.Qualifier, Requested: n,
		Status: ProvisionedInProgress, LastModified: s.o.Now().UTC(), Generation: newRevision(),
	}
	rev, err := s.prov.table.Put(ctx, k, pc)
	if err != nil {
		return nil, err
	}
	applyTo(&s.prov.mu, s.prov.m, k, pc, rev)
	return pc, nil
}

func (s *Service) provisioned(k string) *ProvisionedConfig {
	s.prov.mu.RLock()
	defer s.prov.mu.RUnlock()
	if c, ok := s.prov.m[k]; ok && c.v != nil {
		v := *c.v
		return &v
	}
	return nil
}

// GetProvisioned returns a qualifier's provisioned concurrency.
func (s *Service) GetProvisioned(acct, region, name, qualifier string) (*ProvisionedConfig, error) {
	r, err := s.provTarget(acct, region, name, qualifier)
	if err != nil {
		return nil, err
	}
	pc := s.provisioned(provKey(acct, r.Name, r.Qualifier))
	if pc == nil {
		return nil, errProvNotFound()
	}
	return pc, nil
}

// DeleteProvisioned removes a qualifier's provisioned concurrency.
func (s *Service) DeleteProvisioned(ctx context.Context, acct, region, name, qualifier string) error {
	r, err := s.provTarget(acct, region, name, qualifier)
	if err != nil {
		return err
	}
	k := provKey(acct, r.Name, r.Qualifier)
	if s.provisioned(k) == nil {
		return errProvNotFound()
	}
	if err := s.prov.table.Delete(ctx, k); err != nil {
		return err
	}
	applyTo(&s.prov.mu, s.prov.m, k, nil, 0)
	return nil
}

// ListProvisioned lists a function's provisioned concurrency
// configurations, by qualifier.
func (s *Service) ListProvisioned(acct, region, name string) ([]ProvisionedConfig, error) {
	r, err := ParseRef(name)
	if err != nil {
		return nil, err
	}
	if err := refInAccount(r, acct, region); err != nil {
		return nil, err
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return nil, err
	}
	prefix := fnKey(acct, r.Name) + "."
	var out []ProvisionedConfig
	s.prov.mu.RLock()
	for k, c := range s.prov.m {
		if c.v != nil && strings.HasPrefix(k, prefix) && c.v.FunctionName == r.Name {
			out = append(out, *c.v)
		}
	}
	s.prov.mu.RUnlock()
	slices.SortFunc(out, func(a, b ProvisionedConfig) int { return strings.Compare(a.Qualifier, b.Qualifier) })
	return out, nil
}

// ProvisionedConfigs returns every configuration (the keeper's work list).
func (s *Service) ProvisionedConfigs() []ProvisionedConfig {
	if s.prov == nil {
		return nil
	}
	s.prov.mu.RLock()
	defer s.prov.mu.RUnlock()
	out := make([]ProvisionedConfig, 0, len(s.prov.m))
	for _, c := range s.prov.m {
		if c.v != nil {
			out = append(out, *c.v)
		}
	}
	return out
}

// SetProvisionedStatus records what the keeper achieved for the
// configuration of generation gen (a newer Put wins; a deleted one stays
// deleted).
func (s *Service) SetProvisionedStatus(ctx context.Context, acct, name, qualifier, gen string, available int, status, reason string) error {
	k := provKey(acct, name, qualifier)
	v, rev, err := s.prov.table.Update(ctx, k, func(pc *ProvisionedConfig) error {
		if pc.Generation != gen {
			return errStaleGeneration
		}
		pc.Available, pc.Allocated, pc.Status, pc.StatusReason = available, available, status, reason
		return nil
	})
	if errors.Is(err, errStaleGeneration) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	applyTo(&s.prov.mu, s.prov.m, k, v, rev)
	return nil
}

var errStaleGeneration = errors.New("provisioned concurrency configuration replaced")

// DropProvisioned deletes a configuration whose version or alias is gone
// (as Lambda does when they are deleted), unless it was put again since.
func (s *Service) DropProvisioned(ctx context.Context, pc *ProvisionedConfig) error {
	k := provKey(pc.AccountID, pc.FunctionName, pc.Qualifier)
	_, rev, err := s.prov.table.Get(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur := s.provisioned(k); cur == nil || cur.Generation != pc.Generation {
		return nil
	}
	if err := s.prov.table.KV().Delete(ctx, k, jetstream.LastRevision(rev)); err != nil {
		return err
	}
	applyTo(&s.prov.mu, s.prov.m, k, nil, 0)
	return nil
}

// ResolveProvisioned resolves a configuration's qualifier to the
// configuration its environments run (an alias to its version); an error
// when the version or alias is gone.
func (s *Service) ResolveProvisioned(pc *ProvisionedConfig) (*Config, error) {
	cfg, _, err := s.resolve(pc.AccountID, pc.Region, pc.FunctionName, pc.Qualifier)
	return cfg, err
}
