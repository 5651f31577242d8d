package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireRootStore(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test cannot run: CI must run as root")
		}
		t.Skip("needs root")
	}
}

// smallDisk mounts a tmpfs of size bytes for the test.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fillDisk writes a file until the filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// TestRestartJetStreamAfterFullDisk: a stream that met ENOSPC refuses every
// later write even once space returns (Stalled names it); RestartJetStream
// loads it again, writes work, and a KV watch opened before carries on.
func TestRestartJetStreamAfterFullDisk(t *testing.T) {
	requireRootStore(t)
	dir := smallDisk(t, 32<<20)
	ctx := context.Background()
	st, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kv, err := st.Bucket(ctx, "recs")
	if err != nil {
		t.Fatal(err)
	}
	obs, err := st.Objects(ctx, "blobs")
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	seen := make(chan string, 100)
	go func() {
		for e := range w.Updates() {
			if e != nil {
				seen <- e.Key()
			}
		}
	}()
	if st.Stalled() != "" {
		t.Fatalf("stalled at start: %s", st.Stalled())
	}
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	buf := make([]byte, 1<<20)
	failed := false
	for i := 0; i < 40 && !failed; i++ {
		_, _ = rand.Read(buf)
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := obs.PutBytes(pctx, fmt.Sprint("o", i), buf)
		cancel()
		failed = err != nil
	}
	if !failed {
		t.Fatal("writes to a full disk all succeeded")
	}
	why := st.Stalled()
	if why == "" {
		t.Fatal("a stream that met ENOSPC is not reported")
	}
	t.Logf("stalled: %s", why)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = obs.PutBytes(pctx, "after", []byte("x"))
	cancel()
	if err == nil {
		t.Log("the stream wrote again without a restart (JetStream behaviour changed?)")
	}
	if err := st.RestartJetStream(); err != nil {
		t.Fatal(err)
	}
	if why := st.Stalled(); why != "" {
		t.Fatalf("still stalled after the restart: %s", why)
	}
	pctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := obs.PutBytes(pctx, "after", []byte("x")); err != nil {
		t.Fatalf("write after the restart: %v", err)
	}
	if err := obs.Delete(pctx, "after"); err != nil {
		t.Fatalf("delete after the restart: %v", err)
	}
	if _, err := kv.Put(pctx, "k", []byte("v")); err != nil {
		t.Fatalf("kv put after the restart: %v", err)
	}
	// The watch resets itself once its heartbeats stop.
	deadline := time.After(60 * time.Second)
	for {
		select {
		case k := <-seen:
			if k == "k" {
				return
			}
		case <-deadline:
			t.Fatal("a KV watch opened before the restart saw no later put")
		}
	}
}
