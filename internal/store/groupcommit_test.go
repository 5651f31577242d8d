package store

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// A sync is shared by the waiters that arrive while it runs, skipped when
// nothing was written since the last one started, and not skipped after a
// write or a removal request.
func TestGroupSyncer(t *testing.T) {
	dir := t.TempDir()
	g := newGroupSyncer(dir, slog.Default())
	write := func() {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write()
	if err := g.sync(); err != nil {
		t.Fatal(err)
	}
	if g.syncs.Load() != 1 {
		t.Fatalf("%d syncs after a write, want 1", g.syncs.Load())
	}
	// Nothing written since: the last sync covers it.
	m, _ := g.mark()
	if err := g.sync(); err != nil {
		t.Fatal(err)
	}
	if now, _ := g.mark(); now == m && g.syncs.Load() != 1 {
		t.Fatalf("a sync ran with nothing written (%d)", g.syncs.Load())
	}
	write()
	before := g.syncs.Load()
	if err := g.sync(); err != nil {
		t.Fatal(err)
	}
	if g.syncs.Load() != before+1 {
		t.Fatal("no sync after a write")
	}
	// A removal request (no write of ours) forces one too.
	a, b := net.Pipe()
	defer b.Close()
	go func() { buf := make([]byte, 64); _, _ = b.Read(buf) }()
	c := newSyncedConn(a, g)
	defer c.Close()
	before = g.syncs.Load()
	if _, err := c.Write([]byte("PUB $JS.API.STREAM.DEL")); err != nil {
		t.Fatal(err)
	}
	if g.removals.Load() != 0 {
		t.Fatal("a partial word counted")
	}
	go func() { buf := make([]byte, 64); _, _ = b.Read(buf) }()
	if _, err := c.Write([]byte("ETE.X 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if g.removals.Load() != 1 {
		t.Fatal("a DELETE split between two writes was not counted")
	}
	if err := g.sync(); err != nil {
		t.Fatal(err)
	}
	if g.syncs.Load() != before+1 {
		t.Fatal("no sync after a removal request")
	}
	// Concurrent waiters share syncs.
	write()
	before = g.syncs.Load()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = g.sync() }()
	}
	wg.Wait()
	if n := g.syncs.Load() - before; n < 1 || n > 25 {
		t.Fatalf("%d syncs for 50 concurrent waiters", n)
	}
}

// The connection hands over the server's bytes only through a sync, in
// order, and ends with the server side's error.
func TestSyncedConnOrder(t *testing.T) {
	g := newGroupSyncer(t.TempDir(), slog.Default())
	a, b := net.Pipe()
	c := newSyncedConn(a, g)
	go func() {
		for i := range 100 {
			_, _ = b.Write([]byte{byte(i)})
		}
		b.Close()
	}()
	var got []byte
	buf := make([]byte, 7)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if len(got) != 100 {
		t.Fatalf("%d bytes, want 100", len(got))
	}
	for i, v := range got {
		if int(v) != i {
			t.Fatalf("byte %d is %d", i, v)
		}
	}
	if g.syncs.Load() == 0 {
		t.Fatal("bytes handed over without a sync")
	}
	_ = c.Close()
}
