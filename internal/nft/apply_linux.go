package nft

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Conn is a lasting nftables netlink connection bound to one network
// namespace. It is safe for concurrent use.
type Conn struct {
	mu    sync.Mutex
	ns    netns.NsHandle
	c     *nftables.Conn
	setID uint32 // transaction-local set IDs (see addSet)
}

// Open connects to nftables in the network namespace at nsPath (for example
// /run/netns/lp-svc or /proc/thread-self/ns/net). The caller's thread is not switched.
func Open(nsPath string) (*Conn, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("nft: open namespace %s: %w", nsPath, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting())
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("nft: netlink in %s: %w", nsPath, err)
	}
	return &Conn{ns: ns, c: c}, nil
}

// Close closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.c.CloseLasting()
	c.ns.Close()
	return err
}

func table(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
}

func (c *Conn) findTable(name string) (*nftables.Table, error) {
	ts, err := c.c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nft: list tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, nil
}

// Apply converges table spec.Name to spec in one transaction and reports
// whether anything had to change.
func (c *Conn) Apply(spec TableSpec) (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := c.findTable(spec.Name)
	if err != nil {
		return false, err
	}
	if t == nil {
		if err := c.build(spec, false); err != nil {
			return false, err
		}
		return true, c.flush(spec.Name)
	}
	n, rebuild, err := c.repair(spec, false)
	if err != nil {
		return false, err
	}
	if rebuild {
		if err := c.build(spec, true); err != nil {
			return false, err
		}
		return true, c.flush(spec.Name)
	}
	if n == 0 {
		return false, nil
	}
	return true, c.flush(spec.Name)
}

func (c *Conn) flush(name string) error {
	if err := c.c.Flush(); err != nil {
		return fmt.Errorf("nft: apply table ip %s: %w", name, err)
	}
	return nil
}

// build queues the whole table, after deleting it when replace is set.
func (c *Conn) build(spec TableSpec, replace bool) error {
	t := table(spec.Name)
	if replace {
		c.c.DelTable(t)
	}
	c.c.AddTable(t)
	for _, name := range spec.Counters {
		c.c.AddObj(&nftables.CounterObj{Table: t, Name: name})
	}
	for _, s := range spec.Sets {
		if err := c.addSet(t, s); err != nil {
			return err
		}
	}
	chains := make([]*nftables.Chain, len(spec.Chains))
	for i, cs := range spec.Chains {
		chains[i] = c.c.AddChain(chainOf(t, cs))
	}
	for i, cs := range spec.Chains {
		c.addRules(chains[i], cs.Rules)
	}
	return nil
}

func (c *Conn) addSet(t *nftables.Table, s SetSpec) error {
	// Setting ID ourselves keeps nftables.AddSet from incrementing its
	// unsynchronised package-level counter (a data race between Conns).
	c.setID++
	set := &nftables.Set{Table: t, ID: c.setID, Name: s.Name, KeyType: nftables.TypeIPAddr, Interval: true}
	if err := c.c.AddSet(set, intervalElements(s.Prefixes)); err != nil {
		return fmt.Errorf("nft: set %s: %w", s.Name, err)
	}
	return nil
}

func (c *Conn) addRules(ch *nftables.Chain, rules []Rule) {
	for _, r := range rules {
		c.c.AddRule(&nftables.Rule{
			Table: ch.Table, Chain: ch, Exprs: r.Exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment),
		})
	}
}

func chainOf(t *nftables.Table, cs ChainSpec) *nftables.Chain {
	ch := &nftables.Chain{Table: t, Name: cs.Name}
	if cs.Hook != nil {
		ch.Type, ch.Hooknum, ch.Priority, ch.Policy = cs.Type, cs.Hook, cs.Priority, cs.Policy
	}
	return ch
}

// sameChain reports whether an existing chain has the spec's base-chain
// properties.
func sameChain(have *nftables.Chain, cs ChainSpec) bool {
	if (have.Hooknum == nil) != (cs.Hook == nil) {
		return false
	}
	if cs.Hook == nil {
		return true
	}
	if *have.Hooknum != *cs.Hook || have.Type != cs.Type || have.Priority == nil || *have.Priority != *cs.Priority {
		return false
	}
	wantPol := nftables.ChainPolicyAccept
	if cs.Policy != nil {
		wantPol = *cs.Policy
	}
	havePol := nftables.ChainPolicyAccept
	if have.Policy != nil {
		havePol = *have.Policy
	}
	return wantPol == havePol
}

// Check reports whether table spec.Name exists and matches spec (what
// Apply would leave), without changing anything.
func (c *Conn) Check(spec TableSpec) (same bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := c.findTable(spec.Name)
	if err != nil || t == nil {
		return false, err
	}
	n, rebuild, err := c.repair(spec, true)
	return err == nil && n == 0 && !rebuild, err
}

// repair queues the changes that converge an existing table to spec. It
// returns how many changes were queued, or rebuild=true when the table is
// incompatible and must be replaced as a whole. With dry it only counts
// the differences and queues nothing.
func (c *Conn) repair(spec TableSpec, dry bool) (n int, rebuild bool, err error) {
	t := table(spec.Name)

	allChains, err := c.c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return 0, false, fmt.Errorf("nft: list chains: %w", err)
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range allChains {
		if ch.Table != nil && ch.Table.Name == spec.Name {
			chains[ch.Name] = ch
		}
	}
	sets, err := c.c.GetSets(t)
	if err != nil {
		return 0, false, fmt.Errorf("nft: list sets: %w", err)
	}
	setByName := map[string]*nftables.Set{}
	for _, s := range sets {
		setByName[s.Name] = s
	}
	objs, err := c.c.GetObjects(t)
	if err != nil {
		return 0, false, fmt.Errorf("nft: list objects: %w", err)
	}
	haveObj := map[string]bool{}
	for _, o := range objs {
		switch o := o.(type) {
		case *nftables.CounterObj:
			haveObj[o.Name] = true
		case *nftables.NamedObj:
			if o.Type == nftables.ObjTypeCounter {
				haveObj[o.Name] = true
			}
		}
	}

	// Incompatible chains or sets: rebuild the whole table atomically.
	for _, cs := range spec.Chains {
		if have, ok := chains[cs.Name]; ok && !sameChain(have, cs) {
			return 0, true, nil
		}
	}
	for _, ss := range spec.Sets {
		if have, ok := setByName[ss.Name]; ok && (!have.Interval || have.IsMap || have.KeyType.Name != nftables.TypeIPAddr.Name) {
			return 0, true, nil
		}
	}

	for _, name := range spec.Counters {
		if !haveObj[name] {
			if !dry {
				c.c.AddObj(&nftables.CounterObj{Table: t, Name: name})
			}
			n++
		}
	}
	for _, ss := range spec.Sets {
		have, ok := setByName[ss.Name]
		if !ok {
			if !dry {
				if err := c.addSet(t, ss); err != nil {
					return 0, false, err
				}
			}
			n++
			continue
		}
		els, err := c.c.GetSetElements(have)
		if err != nil {
			return 0, false, fmt.Errorf("nft: list elements of set %s: %w", ss.Name, err)
		}
		want := intervalElements(ss.Prefixes)
		if !slices.Equal(elementKeys(els), elementKeys(want)) {
			n++
			if dry {
				continue
			}
			c.c.FlushSet(have)
			if len(want) > 0 {
				if err := c.c.SetAddElements(have, want); err != nil {
					return 0, false, fmt.Errorf("nft: set %s: %w", ss.Name, err)
				}
			}
		}
	}
	// Chains first (rules may jump to them), then rules.
	queued := map[string]*nftables.Chain{}
	for _, cs := range spec.Chains {
		if have, ok := chains[cs.Name]; ok {
			queued[cs.Name] = have
			continue
		}
		n++
		if !dry {
			queued[cs.Name] = c.c.AddChain(chainOf(t, cs))
		}
	}
	for _, cs := range spec.Chains {
		if cs.Unmanaged {
			continue
		}
		ch := queued[cs.Name]
		if _, existed := chains[cs.Name]; !existed {
			if !dry {
				c.addRules(ch, cs.Rules)
			}
			continue
		}
		rules, err := c.c.GetRules(t, ch)
		if err != nil {
			return 0, false, fmt.Errorf("nft: list rules of chain %s: %w", cs.Name, err)
		}
		if !sameRules(rules, cs.Rules) {
			n++
			if !dry {
				c.c.FlushChain(ch)
				c.addRules(ch, cs.Rules)
			}
		}
	}
	return n, false, nil
}

func sameRules(have []*nftables.Rule, want []Rule) bool {
	if len(have) != len(want) {
		return false
	}
	for i, r := range have {
		comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if comment != want[i].Comment || len(r.Exprs) != len(want[i].Exprs) {
			return false
		}
	}
	return true
}

// SetPrefixes replaces the elements of an interval set (one transaction).
func (c *Conn) SetPrefixes(tableName, setName string, spec SetSpec) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	set, err := c.c.GetSetByName(table(tableName), setName)
	if err != nil {
		return fmt.Errorf("nft: set %s in table ip %s: %w", setName, tableName, err)
	}
	c.c.FlushSet(set)
	if els := intervalElements(spec.Prefixes); len(els) > 0 {
		if err := c.c.SetAddElements(set, els); err != nil {
			return err
		}
	}
	return c.flush(tableName)
}

// CounterPackets reads a named counter's packet count.
func (c *Conn) CounterPackets(tableName, counter string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, err := c.c.GetObject(&nftables.CounterObj{Table: table(tableName), Name: counter})
	if err != nil {
		return 0, fmt.Errorf("nft: counter %s in table ip %s: %w", counter, tableName, err)
	}
	switch o := o.(type) {
	case *nftables.CounterObj:
		return o.Packets, nil
	case *nftables.NamedObj:
		if ctr, ok := o.Obj.(*expr.Counter); ok {
			return ctr.Packets, nil
		}
	}
	return 0, fmt.Errorf("nft: counter %s in table ip %s: unexpected object %T", counter, tableName, o)
}

// HasTable reports whether table ip name exists.
func (c *Conn) HasTable(name string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := c.findTable(name)
	return t != nil, err
}

// DeleteTable deletes table ip name; a missing table is success.
func (c *Conn) DeleteTable(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := c.findTable(name)
	if err != nil || t == nil {
		return err
	}
	c.c.DelTable(t)
	if err := c.c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("nft: delete table ip %s: %w", name, err)
	}
	return nil
}
