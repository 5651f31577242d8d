package hyperplane

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// twoHosts: one store, the VPC model, and two clustered managers (h1, the
// leader, and h2) without a datapath: the records side of the cluster.
type twoHosts struct {
	ctx    context.Context
	st     *store.Store
	m      *vpc.Model
	h1, h2 *Manager
	subnet string
	vpcID  string
}

func newTwoHosts(t *testing.T) *twoHosts {
	t.Helper()
	c := &twoHosts{ctx: context.Background()}
	var err error
	if c.st, err = store.Open(c.ctx, store.Options{DataDir: t.TempDir(), Logger: discard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.st.Close)
	if c.m, err = vpc.Open(c.ctx, c.st, discard); err != nil {
		t.Fatal(err)
	}
	mk := func(id string, leader bool) *Manager {
		hp, err := New(c.ctx, Config{Model: c.m, Store: c.st, Logger: discard, LoadInterval: -1, CreateRate: 10000,
			HostID: id, IsLeader: func() bool { return leader }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hp.Close() })
		return hp
	}
	c.h1, c.h2 = mk("h1", true), mk("h2", false)
	v, err := c.m.CreateVPC(c.ctx, acctA, vpc.VPCRequest{CidrBlock: "10.0.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.m.CreateSubnet(c.ctx, acctA, vpc.SubnetRequest{VpcID: v.ID, CidrBlock: "10.0.1.0/24", AvailabilityZone: "us-east-1a"})
	if err != nil {
		t.Fatal(err)
	}
	c.subnet, c.vpcID = s.ID, v.ID
	return c
}

func (c *twoHosts) sg(t *testing.T, name string) string {
	t.Helper()
	g, err := c.m.CreateSecurityGroup(c.ctx, acctA, vpc.GroupRequest{VpcID: c.vpcID, Name: name, Description: name})
	if err != nil {
		t.Fatal(err)
	}
	return g.ID
}

// lambdaENIs lists the account's lambda ENIs in group g.
func (c *twoHosts) lambdaENIs(t *testing.T, g string) []string {
	t.Helper()
	ns, err := c.m.ListInterfaces(c.ctx, acctA)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range ns {
		if n.InterfaceType == vpc.InterfaceTypeLambda && slices.Contains(n.Groups, g) {
			out = append(out, n.ID)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterOneENIPerKey: two hosts create the ENI of one key at the
// same time, 12 keys in a row: each key gets exactly one ENI, both
// functions share it, and the host that did not create it knows it (its
// index follows the records: ENIsFor, served at cold starts, reads no
// store). The ENI's home is the host that created it; releases on the
// other host drop the shares and the home deletes the ENI.
func TestClusterOneENIPerKey(t *testing.T) {
	c := newTwoHosts(t)
	for i := range 12 {
		g := c.sg(t, fmt.Sprintf("g%d", i))
		u1, u2 := fnARN(acctA, 100+i), fnARN(acctA, 200+i)
		var wg sync.WaitGroup
		var e1, e2 []*ENI
		var err1, err2 error
		wg.Add(2)
		go func() { defer wg.Done(); e1, err1 = c.h1.Ensure(c.ctx, acctA, u1, []string{c.subnet}, []string{g}) }()
		go func() { defer wg.Done(); e2, err2 = c.h2.Ensure(c.ctx, acctA, u2, []string{c.subnet}, []string{g}) }()
		wg.Wait()
		if err1 != nil || err2 != nil {
			t.Fatalf("round %d: ensure: %v / %v", i, err1, err2)
		}
		if e1[0].ID != e2[0].ID || e1[0].Addr != e2[0].Addr {
			t.Fatalf("round %d: two ENIs for one key: %s %v, %s %v", i, e1[0].ID, e1[0].Addr, e2[0].ID, e2[0].Addr)
		}
		if got := c.lambdaENIs(t, g); len(got) != 1 {
			t.Fatalf("round %d: lambda ENIs of the key: %v, want one", i, got)
		}
		id := e1[0].ID
		for _, h := range []*Manager{c.h1, c.h2} {
			waitFor(t, "both users on both hosts", func() bool {
				a, b := h.ENIsFor(acctA, u1), h.ENIsFor(acctA, u2)
				return len(a) == 1 && len(b) == 1 && a[0].ID == id && b[0].ID == id
			})
		}
		home := c.h1.Home(id)
		if home != "h1" && home != "h2" || c.h2.Home(id) != home {
			t.Fatalf("round %d: home %q / %q", i, home, c.h2.Home(id))
		}
		// Both shares dropped on the host that is not the home: that host
		// must not delete it; the home does.
		other := c.h2
		if home == "h2" {
			other = c.h1
		}
		if err := other.Release(c.ctx, acctA, u1); err != nil {
			t.Fatal(err)
		}
		if err := other.Release(c.ctx, acctA, u2); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the home to delete the unused ENI", func() bool { return len(c.lambdaENIs(t, g)) == 0 })
		waitFor(t, "both indexes to drop it", func() bool {
			return len(c.h1.ENIsFor(acctA, u1)) == 0 && len(c.h2.ENIsFor(acctA, u2)) == 0 && c.h1.Home(id) == "" && c.h2.Home(id) == ""
		})
	}
}

// TestClusterRehome: the leader moves the ENIs of a dead home to a live
// host (same id, same address); records of live homes stay; the new home
// deletes the ENI once unused. A lock left by a dead host is taken over
// after it lapsed.
func TestClusterRehome(t *testing.T) {
	c := newTwoHosts(t)
	g1, g2 := c.sg(t, "a"), c.sg(t, "b")
	e2, err := c.h2.Ensure(c.ctx, acctA, fnARN(acctA, 1), []string{c.subnet}, []string{g1})
	if err != nil {
		t.Fatal(err)
	}
	e1, err := c.h1.Ensure(c.ctx, acctA, fnARN(acctA, 2), []string{c.subnet}, []string{g2})
	if err != nil {
		t.Fatal(err)
	}
	if c.h2.Home(e2[0].ID) != "h2" || c.h1.Home(e1[0].ID) != "h1" {
		t.Fatalf("homes: %q %q", c.h2.Home(e2[0].ID), c.h1.Home(e1[0].ID))
	}
	// h2 dies: the leader (h1) re-homes what h2 had.
	alive := func(h string) bool { return h == "h1" }
	moved, err := c.h1.Rehome(c.ctx, alive, func(string) string { return "h1" })
	if err != nil || !slices.Equal(moved, []string{e2[0].ID}) {
		t.Fatalf("rehome: %v %v, want [%s]", moved, err, e2[0].ID)
	}
	waitFor(t, "h1 to see the new home", func() bool { return c.h1.Home(e2[0].ID) == "h1" })
	n, err := c.m.GetInterface(c.ctx, acctA, e2[0].ID)
	if err != nil || n.PrivateIP != e2[0].Addr.String() {
		t.Fatalf("re-homed ENI: %+v %v, want address %v", n, err, e2[0].Addr)
	}
	if moved, err := c.h1.Rehome(c.ctx, alive, func(string) string { return "h1" }); err != nil || len(moved) != 0 {
		t.Fatalf("second rehome moved %v (%v)", moved, err)
	}
	// A lapsed lock of the dead host does not block the key for good.
	key := Key(acctA, c.subnet, []string{g1})
	if _, err := c.h1.locks.Put(c.ctx, lockName(key), &keyLock{Key: key, Host: "h2", Until: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := c.h1.Release(c.ctx, acctA, fnARN(acctA, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new home to delete the unused ENI", func() bool { return len(c.lambdaENIs(t, g1)) == 0 })
	if len(c.lambdaENIs(t, g2)) != 1 {
		t.Fatal("the other ENI went too")
	}
}

// fakeCluster is a membership for failover: alive hosts and a leader.
type fakeCluster struct {
	mu     sync.Mutex
	alive  map[string]bool
	leader bool
	ch     chan struct{}
}

func (c *fakeCluster) IsLeader() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.leader }
func (c *fakeCluster) Alive(h string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alive[h]
}
func (c *fakeCluster) HomeOf(string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range []string{"h1", "h2"} {
		if c.alive[h] {
			return h
		}
	}
	return ""
}
func (c *fakeCluster) Subscribe() (<-chan struct{}, func()) { return c.ch, func() {} }

// TestFollowCluster: the leader's failover moves a dead host's interfaces
// and ENI records to a live host after the membership change (a follower
// moves nothing), keeping ids and addresses.
func TestFollowCluster(t *testing.T) {
	c := newTwoHosts(t)
	c.m.SetHome("h2")
	inst, err := c.m.CreateInterface(c.ctx, acctA, vpc.InterfaceRequest{SubnetID: c.subnet})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.h2.Ensure(c.ctx, acctA, fnARN(acctA, 1), []string{c.subnet}, []string{c.sg(t, "a")})
	if err != nil {
		t.Fatal(err)
	}
	follower := &fakeCluster{alive: map[string]bool{"h1": true}, ch: make(chan struct{}, 1)}
	leader := &fakeCluster{alive: map[string]bool{"h1": true}, leader: true, ch: make(chan struct{}, 1)}
	stop2 := c.h2.FollowCluster(follower, time.Hour)
	defer stop2()
	follower.ch <- struct{}{}
	time.Sleep(200 * time.Millisecond)
	if n, _ := c.m.GetInterface(c.ctx, acctA, inst.ID); n.Home != "h2" {
		t.Fatalf("a follower moved %s to %q", inst.ID, n.Home)
	}
	stop1 := c.h1.FollowCluster(leader, time.Hour)
	defer stop1()
	leader.ch <- struct{}{}
	waitFor(t, "the leader to re-home h2's records", func() bool {
		a, _ := c.m.GetInterface(c.ctx, acctA, inst.ID)
		b, _ := c.m.GetInterface(c.ctx, acctA, e[0].ID)
		return a != nil && b != nil && a.Home == "h1" && b.Home == "h1" && c.h1.Home(e[0].ID) == "h1"
	})
	if b, _ := c.m.GetInterface(c.ctx, acctA, e[0].ID); b.PrivateIP != e[0].Addr.String() {
		t.Errorf("re-homed ENI address %s, want %v", b.PrivateIP, e[0].Addr)
	}
}
