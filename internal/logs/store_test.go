package logs

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go"
)

func openStore(t *testing.T, dir string, delay time.Duration) (*store.Store, *Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := NewStore(ctx, st.JetStream(), Options{FlushDelay: delay})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return st, ls
}

func texts(t *testing.T, ls *Store, fn string, tail int) []string {
	t.Helper()
	var out []string
	if err := ls.Follow(context.Background(), "111111111111", fn, tail, false, func(r Record) error {
		out = append(out, string(r.Text))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStoreBatchesAndTails(t *testing.T) {
	dir := t.TempDir()
	st, ls := openStore(t, dir, time.Hour) // only Follow and Close store batches
	const acct = "111111111111"
	for i := range 5 {
		if err := ls.Append(acct, "f", Record{Version: "$LATEST", RequestID: fmt.Sprint("r", i), Text: []byte(fmt.Sprintf("line %d\n", i))}); err != nil {
			t.Fatal(err)
		}
	}
	_ = ls.Append(acct, "other", Record{Text: []byte("not f\n")})
	// Follow stores f's pending records first: all five, in order.
	if got := texts(t, ls, "f", 0); len(got) != 5 || got[0] != "line 0\n" || got[4] != "line 4\n" {
		t.Fatalf("records = %q", got)
	}
	// Two more batches; tail counts records, not messages.
	for i := 5; i < 8; i++ {
		_ = ls.Append(acct, "f", Record{Text: []byte(fmt.Sprintf("line %d\n", i))})
	}
	_ = texts(t, ls, "f", 0)
	_ = ls.Append(acct, "f", Record{Text: []byte("line 8\n")})
	if got := texts(t, ls, "f", 2); len(got) != 2 || got[0] != "line 7\n" || got[1] != "line 8\n" {
		t.Fatalf("tail 2 = %q", got)
	}
	if got := texts(t, ls, "f", 4); len(got) != 4 || got[0] != "line 5\n" {
		t.Fatalf("tail 4 = %q", got)
	}
	// Close stores what is pending; it survives a restart.
	_ = ls.Append(acct, "f", Record{Text: []byte("last\n")})
	ls.Close(context.Background())
	if err := ls.Append(acct, "f", Record{Text: []byte("late\n")}); err == nil {
		t.Error("Append after Close succeeded")
	}
	st.Close()
	st, ls = openStore(t, dir, 0)
	defer st.Close()
	defer ls.Close(context.Background())
	got := texts(t, ls, "f", 0)
	if len(got) != 10 || got[9] != "last\n" {
		t.Fatalf("after restart %d records, last %q", len(got), got[len(got)-1])
	}
	if got := texts(t, ls, "other", 0); len(got) != 1 {
		t.Fatalf("other function: %q", got)
	}
	// Purge drops stored and pending records.
	_ = ls.Append(acct, "f", Record{Text: []byte("pending\n")})
	if err := ls.Purge(context.Background(), acct, "f"); err != nil {
		t.Fatal(err)
	}
	if got := texts(t, ls, "f", 0); len(got) != 0 {
		t.Fatalf("after purge %q", got)
	}
}

func TestStoreFlushesAfterDelay(t *testing.T) {
	st, ls := openStore(t, t.TempDir(), 20*time.Millisecond)
	defer st.Close()
	defer ls.Close(context.Background())
	_ = ls.Append("111111111111", "f", Record{Text: []byte("a\n")})
	_ = ls.Append("111111111111", "f", Record{Text: []byte("b\n")})
	subj := subject("111111111111", "f")
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := ls.st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing stored after the flush delay (%d messages)", info.State.Msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m, err := ls.st.GetLastMsgForSubject(context.Background(), subj)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(headerFormat) != formatFrames {
		t.Fatalf("stored message format %q", m.Header.Get(headerFormat))
	}
	recs, err := decodeFrames(m.Data)
	if err != nil || len(recs) != 2 || string(recs[1].Text) != "b\n" {
		t.Fatalf("one message holds %d records (%v)", len(recs), err)
	}
}

func TestStoreReadsSingleRecordMessages(t *testing.T) {
	st, ls := openStore(t, t.TempDir(), 0)
	defer st.Close()
	defer ls.Close(context.Background())
	// A record stored before batching: fields in headers, text as data.
	m := nats.NewMsg(subject("111111111111", "f"))
	m.Header.Set(HeaderRequestID, "old")
	m.Data = []byte("old line\n")
	if _, err := st.JetStream().PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	_ = ls.Append("111111111111", "f", Record{RequestID: "new", Text: []byte("new line\n")})
	var ids []string
	_ = ls.Follow(context.Background(), "111111111111", "f", 0, false, func(r Record) error {
		ids = append(ids, r.RequestID)
		return nil
	})
	if len(ids) != 2 || ids[0] != "old" || ids[1] != "new" {
		t.Fatalf("request ids %q", ids)
	}
}

func TestFrames(t *testing.T) {
	now := time.Unix(1700000000, 123)
	in := []Record{{Time: now, Version: "3", LogStream: "s", RequestID: "r", Text: []byte("x\n")}, {Time: now, Text: bytes.Repeat([]byte("y"), 300)}}
	var b []byte
	for _, r := range in {
		if len(appendFrame(nil, r)) > frameSize(r) {
			t.Fatal("frameSize underestimates")
		}
		b = appendFrame(b, r)
	}
	out, err := decodeFrames(b)
	if err != nil || len(out) != 2 || out[0].Version != "3" || out[0].RequestID != "r" || !out[0].Time.Equal(now) || len(out[1].Text) != 300 {
		t.Fatalf("decoded %+v, %v", out, err)
	}
	if _, err := decodeFrames(b[:len(b)-1]); err == nil {
		t.Error("truncated frames decoded")
	}
}

func TestStoreAppendNow(t *testing.T) {
	st, ls := openStore(t, t.TempDir(), time.Hour)
	defer st.Close()
	defer ls.Close(context.Background())
	_ = ls.Append("111111111111", "f", Record{Text: []byte("queued\n")})
	if err := ls.AppendNow("111111111111", "f", Record{Text: []byte("event\n")}); err != nil {
		t.Fatal(err)
	}
	// Stored without a Follow or Close: both records, in one message.
	select {
	case <-st.JetStream().PublishAsyncComplete():
	case <-time.After(5 * time.Second):
		t.Fatal("publish not acknowledged")
	}
	m, err := ls.st.GetLastMsgForSubject(context.Background(), subject("111111111111", "f"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := decodeFrames(m.Data)
	if err != nil || len(recs) != 2 || string(recs[0].Text) != "queued\n" || string(recs[1].Text) != "event\n" {
		t.Fatalf("stored %d records (%v)", len(recs), err)
	}
}
