package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

func TestRankIsStableAndMovesOnlyTheDeadHostsKeys(t *testing.T) {
	hosts := []Host{{ID: "h1"}, {ID: "h2"}, {ID: "h3"}}
	counts := map[string]int{}
	moved := 0
	for i := 0; i < 3000; i++ {
		key := fmt.Sprintf("123456789012/fn-%d", i)
		a := Rank(key, hosts)
		if b := Rank(key, []Host{hosts[2], hosts[0], hosts[1]}); b[0].ID != a[0].ID {
			t.Fatalf("rank of %s depends on input order: %s vs %s", key, a[0].ID, b[0].ID)
		}
		counts[a[0].ID]++
		without := Rank(key, []Host{hosts[0], hosts[1]})
		if a[0].ID != "h3" && without[0].ID != a[0].ID {
			moved++
		}
		if a[0].ID == "h3" && without[0].ID != a[1].ID {
			t.Fatalf("%s: after h3 dies its key should go to the next-ranked %s, went to %s", key, a[1].ID, without[0].ID)
		}
	}
	if moved != 0 {
		t.Errorf("%d keys of live hosts moved when h3 died", moved)
	}
	for id, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("host %s is home of %d of 3000 keys: uneven", id, n)
		}
	}
}

func TestSlices(t *testing.T) {
	s, err := Slices(netip.MustParsePrefix("100.64.0.0/16"), 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 16 || s[0].String() != "100.64.0.0/20" || s[15].String() != "100.64.240.0/20" {
		t.Fatalf("slices: %v", s)
	}
	if _, err := Slices(netip.MustParsePrefix("100.64.0.0/24"), 20); err == nil {
		t.Fatal("a /24 split into /20s should fail")
	}
}

func TestMembershipLeaderAndDeath(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	join := func(id string) *Membership {
		m, err := Join(ctx, Options{Self: Host{ID: id, API: "http://" + id}, Conn: st.Conn(), JetStream: st.JetStream(),
			Heartbeat: 100 * time.Millisecond, DeadAfter: 600 * time.Millisecond, LeaderTTL: 900 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := join("h1")
	b := join("h2")
	defer b.Close()
	waitFor(t, "both alive on both", func() bool { return len(a.Live()) == 2 && len(b.Live()) == 2 })
	waitFor(t, "one leader", func() bool { return a.IsLeader() != b.IsLeader() && a.Leader() == b.Leader() && a.Leader() != "" })
	if !a.Quorate() || !b.Quorate() {
		t.Fatal("two of two hosts alive should be quorate")
	}
	if a.Home("k").ID != b.Home("k").ID {
		t.Fatal("hosts disagree on a key's home")
	}
	ch, stop := b.Subscribe()
	defer stop()
	a.Close()
	<-ch
	waitFor(t, "h1 dead and h2 leader", func() bool { return len(b.Live()) == 1 && b.IsLeader() })
	if b.Quorate() {
		t.Fatal("one of two known hosts should not be quorate")
	}
	if b.Home("anything").ID != "h2" {
		t.Fatal("the only live host should be home of every key")
	}
	// h1 again: a new epoch; the old process's heartbeats would be stale.
	a2 := join("h1")
	defer a2.Close()
	if a2.Self().Epoch != 2 {
		t.Fatalf("restarted host epoch %d, want 2", a2.Self().Epoch)
	}
	waitFor(t, "h1 alive again", func() bool { return b.Alive("h1") })
	old := &Membership{o: a.o, self: a.self}
	old.beat() // a stale epoch-1 heartbeat
	if b.Hosts()[0].Epoch != 2 {
		t.Fatalf("h2 sees h1 at epoch %d, want 2", b.Hosts()[0].Epoch)
	}
	if a2.Fenced() {
		t.Fatal("the newest start of h1 calls itself fenced")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
