package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fillFunctions writes n records of size bytes into bucket "functions",
// updates the first ten once more and deletes one, then closes the store.
func fillFunctions(t *testing.T, dir string, n, size int) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv, err := s.Bucket(ctx, "functions")
	if err != nil {
		t.Fatal(err)
	}
	val := []byte(strings.Repeat("x", size))
	for i := 0; i < n; i++ {
		if _, err := kv.Put(ctx, fmt.Sprintf("fn.%03d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		if _, err := kv.Put(ctx, fmt.Sprintf("fn.%03d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	if err := kv.Purge(ctx, "fn.050"); err != nil {
		t.Fatal(err)
	}
}

// blocks lists a stream's message block files, oldest first.
func blocks(t *testing.T, dir, stream string) []string {
	t.Helper()
	mdir := filepath.Join(dir, "nats", "jetstream", "$G", "streams", stream, "msgs")
	ents, err := os.ReadDir(mdir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".blk") {
			out = append(out, filepath.Join(mdir, e.Name()))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(out[i]), ".blk"))
		b, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(out[j]), ".blk"))
		return a < b
	})
	if len(out) == 0 {
		t.Fatalf("no blocks in %s", mdir)
	}
	return out
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func overwrite4K(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	if _, err := f.WriteAt(junk, fi.Size()/3); err != nil {
		t.Fatal(err)
	}
}

// mustRefuse opens dir and requires a *DataLossError naming stream.
func mustRefuse(t *testing.T, dir, stream string) *DataLossError {
	t.Helper()
	s, err := Open(context.Background(), Options{DataDir: dir})
	if err == nil {
		s.Close()
		t.Fatalf("a damaged store opened without complaint")
	}
	var dl *DataLossError
	if !errors.As(err, &dl) || !errors.Is(err, ErrDataLoss) {
		t.Fatalf("open: %v, want a *DataLossError", err)
	}
	msg := err.Error()
	for _, want := range []string{stream, "lost", "lambdaplane restore DIR", "--accept-data-loss"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, msg)
		}
	}
	if !slicesContainsStream(dl.Losses, stream) {
		t.Errorf("losses %v do not name %s", dl.Losses, stream)
	}
	return dl
}

func slicesContainsStream(ls []Loss, stream string) bool {
	for _, l := range ls {
		if l.Stream == stream {
			return true
		}
	}
	return false
}

// countKeys opens dir with opts and counts the functions bucket's keys.
func countKeys(t *testing.T, dir string, accept bool) int {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Options{DataDir: dir, AcceptDataLoss: accept})
	if err != nil {
		t.Fatalf("open (accept=%v): %v", accept, err)
	}
	defer s.Close()
	kv, err := s.Bucket(ctx, "functions")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n
}

// TestTruncatedNewestBlockIsRefused: the incident. The newest block of
// KV_functions cut in half used to start with no warning and list part of
// the functions; now every start refuses, naming the stream and what was
// lost, until --accept-data-loss serves what is left.
func TestTruncatedNewestBlockIsRefused(t *testing.T) {
	dir := t.TempDir()
	fillFunctions(t, dir, 121, 3000)
	if n := countKeys(t, dir, false); n != 120 {
		t.Fatalf("%d keys before the damage, want 120", n)
	}
	b := blocks(t, dir, "KV_functions")
	truncateHalf(t, b[len(b)-1])

	dl := mustRefuse(t, dir, "KV_functions")
	l := dl.Losses[0]
	if l.Messages == 0 || l.Bytes == 0 || l.LastSeq == 0 {
		t.Errorf("the loss does not say how much: %+v", l)
	}
	t.Logf("refusal:\n%v", dl)
	// JetStream has repaired the file by now; the next start still refuses.
	mustRefuse(t, dir, "KV_functions")

	left := countKeys(t, dir, true)
	if left == 0 || left >= 120 {
		t.Fatalf("%d keys served with --accept-data-loss, want some but not all 120", left)
	}
	// Accepted once: the store opens again as it is.
	if n := countKeys(t, dir, false); n != left {
		t.Fatalf("%d keys after the loss was accepted, want %d", n, left)
	}
}

// TestOverwrittenOlderBlockIsRefused: 4 KiB of junk in the middle of an
// older block. JetStream trusts its index for it (the newest block is
// intact) and a watch of the bucket stalls; reading every message back
// finds the one that cannot be read.
func TestOverwrittenOlderBlockIsRefused(t *testing.T) {
	dir := t.TempDir()
	fillFunctions(t, dir, 121, 40_000) // two 4 MB blocks
	b := blocks(t, dir, "KV_functions")
	if len(b) < 2 {
		t.Fatalf("%d blocks, want at least two", len(b))
	}
	overwrite4K(t, b[0])
	dl := mustRefuse(t, dir, "KV_functions")
	if !strings.Contains(dl.Error(), "can be read") {
		t.Errorf("the refusal does not say messages cannot be read:\n%v", dl)
	}
	t.Logf("refusal:\n%v", dl)
}

// TestTruncatedBlockAfterCrashIsRefused: without a clean shutdown (the
// ledger not marked clean, or no ledger at all, as on the first start of
// a version that keeps one) the missing newest record still shows.
func TestTruncatedBlockAfterCrashIsRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		ledger func(t *testing.T, path string)
	}{
		{"unclean ledger", func(t *testing.T, path string) {
			l, err := readLedger(path)
			if err != nil {
				t.Fatal(err)
			}
			l.Clean = false
			if err := writeLedger(path, l); err != nil {
				t.Fatal(err)
			}
		}},
		{"no ledger", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fillFunctions(t, dir, 121, 3000)
			c.ledger(t, filepath.Join(dir, "nats", ledgerFile))
			b := blocks(t, dir, "KV_functions")
			truncateHalf(t, b[len(b)-1])
			mustRefuse(t, dir, "KV_functions")
		})
	}
}

// TestVanishedStreamIsRefused: a stream's directory removed while the
// server was stopped.
func TestVanishedStreamIsRefused(t *testing.T) {
	dir := t.TempDir()
	fillFunctions(t, dir, 20, 100)
	if err := os.RemoveAll(filepath.Join(dir, "nats", "jetstream", "$G", "streams", "KV_functions")); err != nil {
		t.Fatal(err)
	}
	dl := mustRefuse(t, dir, "KV_functions")
	if !strings.Contains(dl.Error(), "gone") {
		t.Errorf("the refusal does not say the stream is gone:\n%v", dl)
	}
}

// TestCleanRestartsAreNotDamage: every kind of stream lambdaplane keeps —
// records with updates and purges, an object store, a work queue whose
// consumer acknowledges, a stream purged by subject — opens again and
// again without a false alarm.
func TestCleanRestartsAreNotDamage(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		s, err := Open(ctx, Options{DataDir: dir})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		exercise(t, s, round)
		s.Close()
	}
	l, err := readLedger(filepath.Join(dir, "nats", ledgerFile))
	if err != nil {
		t.Fatal(err)
	}
	if !l.Clean || len(l.Streams) < 4 {
		t.Fatalf("ledger after a clean close: %+v", l)
	}
}

// exercise writes to a bucket, an object store, a work queue and a
// purged stream.
func exercise(t *testing.T, s *Store, round int) {
	t.Helper()
	ctx := context.Background()
	kv, err := s.Bucket(ctx, "records")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := kv.Put(ctx, fmt.Sprintf("k%d", i%20), []byte(fmt.Sprint(round, i))); err != nil {
			t.Fatal(err)
		}
	}
	_ = kv.Delete(ctx, "k3")
	_ = kv.Purge(ctx, "k4")
	obj, err := s.Objects(ctx, "code")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutBytes(ctx, fmt.Sprintf("pkg%d", round), make([]byte, 300_000)); err != nil {
		t.Fatal(err)
	}
	js := s.JetStream()
	wq, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "QUEUE", Subjects: []string{"q.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := js.Publish(ctx, "q.x", []byte("event")); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := wq.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(7)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		_ = m.Ack() // not waited for: the close must let the server catch up
	}
	logs, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "LOGLIKE", Subjects: []string{"l.>"}, Storage: jetstream.FileStorage, MaxMsgsPerSubject: 5})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := js.Publish(ctx, fmt.Sprintf("l.%d", i%3), []byte("line")); err != nil {
			t.Fatal(err)
		}
	}
	if err := logs.Purge(ctx, jetstream.WithPurgeSubject("l.1")); err != nil {
		t.Fatal(err)
	}
}

// TestLossStringNamesEverything: the one-line form carries the stream,
// what it holds, counts, bytes, the sequence range and how it showed.
func TestLossStringNamesEverything(t *testing.T) {
	l := Loss{Stream: "KV_functions", Messages: 56, Bytes: 168_000, FirstSeq: 11, LastSeq: 132, Found: "its newest message (sequence 132) is missing"}
	got := l.String()
	want := "KV_functions (records bucket functions): 56 messages (168.0 kB) lost within sequences 11-132: its newest message (sequence 132) is missing"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	b, _ := json.Marshal(l)
	var back Loss
	if err := json.Unmarshal(b, &back); err != nil || back != l {
		t.Fatalf("round trip through the ledger: %+v, %v", back, err)
	}
}

// TestOverwrittenStreamBlockIsRefused: the same damage in streams that
// are not buckets and allow no direct gets: a work queue (like the async
// invokes; read one get at a time) and a limits stream (like the logs; read
// through a consumer, which skips or stalls at the bad message instead of
// hanging the start).
func TestOverwrittenStreamBlockIsRefused(t *testing.T) {
	for _, retention := range []jetstream.RetentionPolicy{jetstream.WorkQueuePolicy, jetstream.LimitsPolicy} {
		t.Run(retention.String(), func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			s, err := Open(ctx, Options{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			js := s.JetStream()
			if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "QUEUE", Subjects: []string{"q.>"}, Retention: retention, Storage: jetstream.FileStorage}); err != nil {
				t.Fatal(err)
			}
			payload := []byte(strings.Repeat("e", 60_000))
			for i := 0; i < 200; i++ { // two 8 MB blocks
				if _, err := js.Publish(ctx, "q.fn", payload); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			b := blocks(t, dir, "QUEUE")
			if len(b) < 2 {
				t.Fatalf("%d blocks, want at least two", len(b))
			}
			overwrite4K(t, b[0])
			dl := mustRefuse(t, dir, "QUEUE")
			t.Logf("refusal:\n%v", dl)
		})
	}
}

// A large object store (hundreds of 128 KiB chunks, more than one direct
// get batch may carry) is read back at start in bounded batches: an
// unbounded batch overran the subscription and the start waited out its
// timeout, then refused the store.
func TestLargeObjectStoreIsReadBack(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Objects(ctx, "code")
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 96<<20)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	if _, err := obj.PutBytes(ctx, "big", blob); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatalf("reopen after a clean close: %v", err)
	}
	s.Close()
	// As after a crash: the ledger does not vouch for the streams, so
	// every message is read back.
	l, err := readLedger(filepath.Join(dir, "nats", ledgerFile))
	if err != nil {
		t.Fatal(err)
	}
	l.Clean = false
	if err := writeLedger(filepath.Join(dir, "nats", ledgerFile), l); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s, err = Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatalf("reopen with every message read back: %v (after %v)", err, time.Since(start))
	}
	s.Close()
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("reading 96 MiB of objects back took %v", took)
	}
}

// A stream that does not answer direct gets (as one can right after a
// start that recovered it) is read back through the API instead.
func TestScanFallsBackWhenDirectGetIsNotAnswered(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "NODIRECT", Subjects: []string{"nodirect.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		if _, err := s.JetStream().Publish(ctx, fmt.Sprintf("nodirect.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	r := &scanResult{}
	if err := s.scanDirect(ctx, "NODIRECT", 1, 25, r); err != nil {
		t.Fatal(err)
	}
	if r.count != 25 || len(r.gaps) != 0 {
		t.Fatalf("read back %d messages (gaps %v), want 25", r.count, r.gaps)
	}
}

// TestRemovedWhileScannedIsNotLoss: a host joining a running cluster
// checks streams other hosts write to: a key's older revision removed (or
// a message expired) between the index's count and the read is not a
// loss (TestClusterHostThroughNATSURL was refused for a TTL'd key that
// expired meanwhile). (A message the index still counts and that cannot
// be read is: the damaged-block tests above.)
func TestRemovedWhileScannedIsNotLoss(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv, err := s.Bucket(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := kv.Put(ctx, fmt.Sprintf("k%d", i), []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.JetStream().Stream(ctx, "KV_live")
	if err != nil {
		t.Fatal(err)
	}
	stale, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// New revisions of two keys remove their older ones (history 1).
	for _, k := range []string{"k1", "k3"} {
		if _, err := kv.Put(ctx, k, []byte("v2")); err != nil {
			t.Fatal(err)
		}
	}
	if l, _, err := s.checkStream(ctx, stale, nil, false); err != nil || l != nil {
		t.Fatalf("revisions replaced during the check: loss %+v, err %v; want none", l, err)
	}
}
