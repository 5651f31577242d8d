package netdev

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/nft"
)

// repairLog records what OnRepair reports.
type repairLog struct {
	mu    sync.Mutex
	kinds []RepairKind
}

func (l *repairLog) add(k RepairKind, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kinds = append(l.kinds, k)
}

func (l *repairLog) take() []RepairKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.kinds
	l.kinds = nil
	return out
}

// waitFor polls cond every 50ms for at most d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRepairWhileRunning: objects deleted behind the router's back (as an
// operator's "ip netns del" or "nft delete table" would) are found by
// Repair, reported by kind, and converged again; the environment handed
// out before keeps working, and a Repair with nothing to do reports
// nothing.
func TestRepairWhileRunning(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	inet := newInternet(t)
	serve(t, inet, "203.0.113.1:8080")
	var log repairLog
	r := newTestRouter(t, inet, func(c *Config) { c.PoolSize = 2; c.OnRepair = log.add })
	ctx := context.Background()
	if !waitFor(20*time.Second, func() bool { n, _ := r.Pooled(); return n == 2 }) {
		t.Fatal("pool not filled")
	}
	e, err := r.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release(e)
	works := func(what string) {
		t.Helper()
		var got string
		ok := waitFor(5*time.Second, func() bool {
			got, err = ask(e.Path, "203.0.113.1:8080", time.Second)
			return err == nil && got == "169.254.255.1"
		})
		if !ok {
			t.Fatalf("%s: env -> internet: %q %v", what, got, err)
		}
	}
	works("before")
	// The platform endpoint, served as the server serves it: a listener
	// opened once in its namespace.
	apiLn, err := r.ListenAPI()
	if err != nil {
		t.Fatal(err)
	}
	defer apiLn.Close()
	go func() {
		for {
			c, err := apiLn.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "api\n")
			c.Close()
		}
	}()
	apiAddr := strings.TrimPrefix(r.APIEndpoint(), "http://")
	apiWorks := func(what string) {
		t.Helper()
		var got string
		if !waitFor(5*time.Second, func() bool {
			got, err = ask(e.Path, apiAddr, time.Second)
			return err == nil && got == "api"
		}) {
			t.Fatalf("%s: env -> API endpoint %s: %q %v", what, apiAddr, got, err)
		}
	}
	apiWorks("before")
	if err := r.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if k := log.take(); len(k) != 0 {
		t.Fatalf("Repair of an intact router reported %v", k)
	}

	ipNetnsDel := func(name string) {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del %s: %v %s", name, err, out)
		}
	}
	cases := []struct {
		name   string
		damage func()
		want   RepairKind
	}{
		{"service nft table deleted", func() {
			c, err := nft.Open(r.SvcNetnsPath())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.DeleteTable(r.cfg.Prefix); err != nil {
				t.Fatal(err)
			}
		}, RepairServiceNft},
		{"uplink peer deleted", func() { delLink(handleAt(t, inet), hostLinkName(r.cfg.Prefix)) }, RepairUplink},
		{"env veth deleted", func() { delLink(handleAt(t, r.SvcNetnsPath()), e.HostLink) }, RepairEnvLink},
		{"pooled namespace deleted", func() {
			r.mu.Lock()
			name := r.pool[0].Name
			r.mu.Unlock()
			ipNetnsDel(name)
		}, RepairPoolNetns},
		{"API endpoint namespace deleted", func() { ipNetnsDel(apiNetnsName(r.cfg.Prefix)) }, RepairAPIEndpoint},
		{"API endpoint namespace replaced by an empty one", func() {
			ipNetnsDel(apiNetnsName(r.cfg.Prefix))
			if out, err := exec.Command("ip", "netns", "add", apiNetnsName(r.cfg.Prefix)).CombinedOutput(); err != nil {
				t.Fatalf("ip netns add: %v %s", err, out)
			}
		}, RepairAPIEndpoint},
		{"API endpoint veth deleted", func() { delLink(handleAt(t, r.SvcNetnsPath()), apiLinkName) }, RepairAPIEndpoint},
		{"service router namespace deleted", func() { ipNetnsDel(svcName(r.cfg.Prefix)) }, RepairServiceNetns},
	}
	for _, c := range cases {
		c.damage()
		if err := r.Repair(ctx); err != nil {
			t.Fatalf("%s: Repair: %v", c.name, err)
		}
		if k := log.take(); !slices.Contains(k, c.want) {
			t.Fatalf("%s: repairs reported %v, want %s", c.name, k, c.want)
		}
		works(c.name)
		apiWorks(c.name)
		if err := r.Repair(ctx); err != nil {
			t.Fatalf("%s: second Repair: %v", c.name, err)
		}
		if k := log.take(); len(k) != 0 {
			t.Fatalf("%s: second Repair reported %v", c.name, k)
		}
	}
	// The pool is whole again, every pooled namespace exists and works.
	if !waitFor(20*time.Second, func() bool { n, _ := r.Pooled(); return n == 2 }) {
		t.Fatal("pool not refilled")
	}
	p, err := r.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release(p)
	if !isNetnsMount(p.Path) {
		t.Fatalf("pooled %s has no namespace", p.Name)
	}
	if got, err := ask(p.Path, "203.0.113.1:8080", 2*time.Second); err != nil || got != "169.254.255.1" {
		t.Fatalf("pooled env after repairs -> internet: %q %v", got, err)
	}
}

// TestWatchNetnsRemovals: removing a namespace with the prefix is seen at
// once; other names are not reported.
func TestWatchNetnsRemovals(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	prefix := "lpt" + randHex(2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan string, 8)
	if err := WatchNetnsRemovals(ctx, prefix, func(n string) { seen <- n }); err != nil {
		t.Fatal(err)
	}
	other := "lptw" + randHex(3)
	mine := prefix + "-x1"
	for _, n := range []string{other, mine} {
		if err := createNamedNetns(n, envSysctls); err != nil {
			t.Fatal(err)
		}
	}
	if err := deleteNamedNetns(other); err != nil {
		t.Fatal(err)
	}
	if err := deleteNamedNetns(mine); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-seen:
		if n != mine {
			t.Fatalf("reported %q, want %q", n, mine)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removal not reported")
	}
	select {
	case n := <-seen:
		if !strings.HasPrefix(n, prefix+"-") {
			t.Fatalf("reported %q", n)
		}
	default:
	}
}
