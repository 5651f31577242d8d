package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// openCluster starts three clustered embedded stores on loopback.
func openCluster(t *testing.T) []*Store {
	t.Helper()
	ports := freePorts(t, 3)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stores := make([]*Store, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		var peers []string
		for j := range 3 {
			if j != i {
				peers = append(peers, addr(j))
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(ctx, Options{DataDir: t.TempDir(), SyncInterval: time.Second,
				Cluster: ClusterOptions{ServerName: fmt.Sprintf("lp-t%d", i), Listen: addr(i), Peers: peers}})
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range stores {
			if s != nil {
				s.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
	return stores
}

type rec struct{ N int }

// TestClusterReadYourWrites: on a three-server store every bucket is read
// from its stream leader, so a read through any server right after a
// write (through the same or another server) sees it — a direct get could
// be answered by a replica that is behind — and a listing shows it too;
// revision conflicts are ErrConflict / ErrExists as on one server
// (a replicated stream reports them with another code).
func TestClusterReadYourWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-server cluster")
	}
	stores := openCluster(t)
	ctx := context.Background()
	tables := make([]*Table[rec], 3)
	for i, s := range stores {
		if s.Replicas() != 3 {
			t.Fatalf("store %d: %d replicas", i, s.Replicas())
		}
		tb, err := NewTable[rec](ctx, s, "ryw")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := tb.KV().(*consistentKV); !ok {
			t.Fatalf("store %d: bucket is a %T, not a consistentKV", i, tb.KV())
		}
		tables[i] = tb
	}
	for n := range 300 {
		w, r := tables[n%3], tables[(n+n/3)%3]
		key := fmt.Sprintf("k.%d", n%7)
		if _, err := w.Put(ctx, key, &rec{N: n}); err != nil {
			t.Fatal(err)
		}
		got, _, err := r.Get(ctx, key)
		if err != nil || got.N != n {
			t.Fatalf("write %d through store %d, read through store %d: %+v, %v", n, n%3, (n+n/3)%3, got, err)
		}
		if n%50 == 0 {
			l, err := r.List(ctx, "k.>")
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range l {
				found = found || (e.Key == key && e.Value.N == n)
			}
			if !found {
				t.Fatalf("listing after write %d misses it: %+v", n, l)
			}
		}
	}

	// Create, conflicts, delete and recreate.
	rev, err := tables[0].Create(ctx, "c", &rec{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tables[1].Create(ctx, "c", &rec{N: 2}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if _, err := tables[2].UpdateAt(ctx, "c", &rec{N: 3}, rev+1000); !errors.Is(err, ErrConflict) {
		t.Fatalf("UpdateAt at a wrong revision: %v, want ErrConflict", err)
	}
	if err := tables[2].KV().Delete(ctx, "c", jetstream.LastRevision(rev+1000)); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("Delete at a wrong revision: %v, want ErrKeyRevisionMismatch", err)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, _, err := tables[i].Update(ctx, "c", func(v *rec) error { v.N++; return nil }); err != nil {
					t.Errorf("concurrent Update through store %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, _, err := tables[1].Get(ctx, "c"); err != nil || got.N != 31 {
		t.Fatalf("after 30 concurrent increments: %+v, %v (want 31)", got, err)
	}
	if err := tables[0].Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tables[1].Get(ctx, "c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if _, err := tables[2].Create(ctx, "c", &rec{N: 9}); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if got, _, err := tables[0].Get(ctx, "c"); err != nil || got.N != 9 {
		t.Fatalf("recreated: %+v, %v", got, err)
	}
}
