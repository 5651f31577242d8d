package logs

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func openQuotaStore(t *testing.T, dir string, q Quota) (*store.Store, *Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := NewStore(ctx, st.JetStream(), Options{Quota: q})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return st, ls
}

// records returns the texts of a function's stored records.
func records(t *testing.T, ls *Store, acct, fn string) []string {
	t.Helper()
	var out []string
	if err := ls.Follow(context.Background(), acct, fn, 0, false, func(r Record) error {
		out = append(out, string(r.Text))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func totalLen(recs []string) int {
	n := 0
	for _, r := range recs {
		n += len(r)
	}
	return n
}

// TestStoreQuotaFloodKeepsOthers: a function writing far more than its
// quota, and an account writing more than its own, remove only their own
// oldest records; a quiet function of the same account and one of another
// account keep all of theirs. The bounds hold after a restart too.
func TestStoreQuotaFloodKeepsOthers(t *testing.T) {
	dir := t.TempDir()
	q := Quota{FunctionBytes: 1 << 20, AccountBytes: 2 << 20}
	st, ls := openQuotaStore(t, dir, q)
	const a, b = "111111111111", "222222222222"
	for i := range 3 {
		_ = ls.AppendNow(a, "quiet", Record{Text: []byte(fmt.Sprintf("quiet a %d\n", i))})
		_ = ls.AppendNow(b, "quiet", Record{Text: []byte(fmt.Sprintf("quiet b %d\n", i))})
	}
	big := strings.Repeat("x", 100<<10)
	for i := range 40 { // 4 MB each from two functions of account a
		for _, fn := range []string{"flood1", "flood2"} {
			if err := ls.Append(a, fn, Record{Text: []byte(fmt.Sprintf("%s %03d %s\n", fn, i, big))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ls.Close(context.Background()) // stores what is pending and carries out the last trims
	// What the running store left (before a restart could trim anything).
	for fn, max := range map[string]int{"flood1": 1 << 20, "flood2": 1 << 20, "quiet": 100} {
		if n := storedBytes(t, st.JetStream(), subject(a, fn)); n > max || n == 0 {
			t.Fatalf("%s: %d bytes stored, want 1..%d", fn, n, max)
		}
	}
	st.Close()

	st, ls = openQuotaStore(t, dir, q)
	defer st.Close()
	defer ls.Close(context.Background())
	for _, c := range []struct{ acct, name string }{{a, "quiet a"}, {b, "quiet b"}} {
		got := records(t, ls, c.acct, "quiet")
		if len(got) != 3 || got[0] != c.name+" 0\n" {
			t.Fatalf("%s: records %q; a flood elsewhere removed them", c.name, got)
		}
	}
	var sum int
	for _, fn := range []string{"flood1", "flood2"} {
		got := records(t, ls, a, fn)
		n := totalLen(got)
		sum += n
		if n > 1<<20 || len(got) == 0 {
			t.Fatalf("%s keeps %d records, %d bytes: over its 1 MB quota", fn, len(got), n)
		}
		if !strings.HasPrefix(got[len(got)-1], fn+" 039 ") || strings.HasPrefix(got[0], fn+" 000 ") {
			t.Fatalf("%s keeps %q .. %q: want the newest, not the oldest", fn, got[0][:12], got[len(got)-1][:12])
		}
	}
	if sum > 2<<20 || sum < 1<<20 {
		t.Fatalf("account keeps %d bytes of flood: want at most its 2 MB quota (and more than 1 MB)", sum)
	}
}

// TestStoreUpdatesOldStream: a LOGS stream made by an earlier version
// (a stream-wide byte limit, DiscardOld) is updated in place; its records
// stay readable and a function over the quota is trimmed at start.
func TestStoreUpdatesOldStream(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	js := st.JetStream()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streamName, Subjects: []string{"logs.>"}, Storage: jetstream.FileStorage,
		MaxMsgsPerSubject: 10000, MaxBytes: 512 << 20, Discard: jetstream.DiscardOld}); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("o"), 200<<10)
	for i := range 15 { // 3 MB of single-record messages
		m := nats.NewMsg(subject("111111111111", "old"))
		m.Header.Set(HeaderRequestID, fmt.Sprint("r", i))
		m.Data = big
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	m := nats.NewMsg(subject("111111111111", "small"))
	m.Data = []byte("small\n")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	ls, err := NewStore(ctx, js, Options{Quota: Quota{FunctionBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close(ctx)
	info, err := ls.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxBytes != -1 || info.Config.MaxMsgsPerSubject != DefaultFunctionMsgs {
		t.Fatalf("stream config not updated: MaxBytes %d, MaxMsgsPerSubject %d", info.Config.MaxBytes, info.Config.MaxMsgsPerSubject)
	}
	if got := records(t, ls, "111111111111", "small"); len(got) != 1 || got[0] != "small\n" {
		t.Fatalf("small: %q", got)
	}
	var ids []string
	_ = ls.Follow(ctx, "111111111111", "old", 0, false, func(r Record) error {
		ids = append(ids, r.RequestID)
		return nil
	})
	if len(ids) == 0 || len(ids) > 5 || ids[len(ids)-1] != "r14" {
		t.Fatalf("old function keeps %q: want its newest, at most 1 MB", ids)
	}
	// New records are stored next to the old ones.
	_ = ls.Append("111111111111", "small", Record{Text: []byte("new\n")})
	if got := records(t, ls, "111111111111", "small"); len(got) != 2 || got[1] != "new\n" {
		t.Fatalf("small after append: %q", got)
	}
}

// storedBytes sums the data of a subject's stored messages.
func storedBytes(t *testing.T, js jetstream.JetStream, subj string) int {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	left := info.State.Subjects[subj]
	if left == 0 {
		return 0
	}
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for left > 0 {
		msgs, err := c.Fetch(int(left))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range msgs.Messages() {
			n += len(m.Data())
			got++
		}
		if got == 0 {
			t.Fatalf("%s: %d stored messages could not be read", subj, left)
		}
		left -= uint64(got)
	}
	return n
}
