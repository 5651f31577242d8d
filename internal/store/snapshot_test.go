package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// TestSnapshotRestoreRoundTrip: every stream of one store, snapshotted and
// restored into an empty one, holds the same messages (records, objects,
// a work queue with its consumer's acknowledgements), and the restored
// store opens again without a false alarm.
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	a, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	exercise(t, a, 0)
	exercise(t, a, 1)
	streams, err := a.Streams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range streams {
		names = append(names, s.Name)
	}
	if want := "[KV_records OBJ_code LOGLIKE QUEUE]"; fmt.Sprint(names) != want {
		t.Fatalf("backup order %v, want %s", names, want)
	}
	type snap struct {
		md   SnapshotMeta
		data []byte
	}
	var snaps []snap
	for _, st := range streams {
		var buf bytes.Buffer
		var md SnapshotMeta
		n, err := a.Snapshot(ctx, st.Name, &buf, func(m SnapshotMeta) error { md = m; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(buf.Len()) || n == 0 || md.Messages != st.Messages || md.LastSeq != st.LastSeq {
			t.Fatalf("%s: %d bytes written, %d buffered, meta %+v, stream %+v", st.Name, n, buf.Len(), md, st)
		}
		snaps = append(snaps, snap{md, buf.Bytes()})
	}

	dir := t.TempDir()
	b, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		var last int64
		got, err := b.Restore(ctx, s.md, bytes.NewReader(s.data), func(n int64) { last = n })
		if err != nil {
			t.Fatal(err)
		}
		if last != int64(len(s.data)) {
			t.Errorf("%s: progress ended at %d of %d bytes", s.md.Stream, last, len(s.data))
		}
		if got.Messages != s.md.Messages || got.LastSeq != s.md.LastSeq || got.FirstSeq != s.md.FirstSeq {
			t.Errorf("%s restored as %+v, snapshot was %+v", s.md.Stream, got, s.md)
		}
	}
	// Restoring over an existing stream is refused.
	if _, err := b.Restore(ctx, snaps[0].md, bytes.NewReader(snaps[0].data), nil); err == nil {
		t.Errorf("restoring %s twice succeeded", snaps[0].md.Stream)
	}
	compareStores(t, a, b)
	b.Close()

	c, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatalf("the restored store does not open again: %v", err)
	}
	compareStores(t, a, c)
	c.Close()
}

func compareStores(t *testing.T, a, b *Store) {
	t.Helper()
	ctx := context.Background()
	kvA, _ := a.Bucket(ctx, "records")
	kvB, err := b.Bucket(ctx, "records")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("k%d", i)
		ea, errA := kvA.Get(ctx, k)
		eb, errB := kvB.Get(ctx, k)
		if (errA == nil) != (errB == nil) || errA == nil && (!bytes.Equal(ea.Value(), eb.Value()) || ea.Revision() != eb.Revision()) {
			t.Errorf("key %s: %v/%v vs %v/%v", k, ea, errA, eb, errB)
		}
	}
	objB, err := b.Objects(ctx, "code")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pkg0", "pkg1"} {
		data, err := objB.GetBytes(ctx, name)
		if err != nil || len(data) != 300_000 {
			t.Errorf("object %s: %d bytes, %v", name, len(data), err)
		}
	}
	qa, _ := a.JetStream().Consumer(ctx, "QUEUE", "w")
	qb, err := b.JetStream().Consumer(ctx, "QUEUE", "w")
	if err != nil {
		t.Fatal(err)
	}
	ia, _ := qa.Info(ctx)
	ib, _ := qb.Info(ctx)
	if ia.NumPending != ib.NumPending || ia.AckFloor.Stream != ib.AckFloor.Stream || ib.NumPending == 0 {
		t.Errorf("queue consumer: pending %d ack floor %d, restored pending %d ack floor %d", ia.NumPending, ia.AckFloor.Stream, ib.NumPending, ib.AckFloor.Stream)
	}
}
