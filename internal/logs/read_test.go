package logs

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestScanAndPurgeBefore: Scan reads a function's records in order (from
// the start, a sequence or a time; pending ones are stored first), and
// PurgeBefore (a log group's retention) removes exactly the messages
// stored before its time, the ledger following.
func TestScanAndPurgeBefore(t *testing.T) {
	st, ls := openStore(t, t.TempDir(), time.Hour)
	defer st.Close()
	defer ls.Close(context.Background())
	ctx := context.Background()
	const acct = "111111111111"
	for i := range 3 {
		if err := ls.AppendNow(acct, "f", Record{Text: []byte(fmt.Sprintf("old %d\n", i))}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	cut := time.Now()
	time.Sleep(20 * time.Millisecond)
	_ = ls.Append(acct, "f", Record{Text: []byte("new 0\n")}) // pending: Scan stores it first
	var got []string
	var seqs []uint64
	if err := ls.Scan(ctx, acct, "f", ScanFrom{}, func(s Stored) bool { got = append(got, string(s.Text)); seqs = append(seqs, s.Seq); return true }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[old 0\n old 1\n old 2\n new 0\n]" {
		t.Fatalf("Scan = %q", got)
	}
	got = nil
	_ = ls.Scan(ctx, acct, "f", ScanFrom{Seq: seqs[2]}, func(s Stored) bool { got = append(got, string(s.Text)); return true })
	if fmt.Sprint(got) != "[old 2\n new 0\n]" {
		t.Fatalf("Scan from a sequence = %q", got)
	}
	got = nil
	_ = ls.Scan(ctx, acct, "f", ScanFrom{Since: cut}, func(s Stored) bool { got = append(got, string(s.Text)); return true })
	if fmt.Sprint(got) != "[new 0\n]" {
		t.Fatalf("Scan since a time = %q", got)
	}
	before := ls.Usage(acct, "f")
	if err := ls.PurgeBefore(ctx, acct, "f", cut); err != nil {
		t.Fatal(err)
	}
	got = nil
	_ = ls.Scan(ctx, acct, "f", ScanFrom{}, func(s Stored) bool { got = append(got, string(s.Text)); return true })
	if fmt.Sprint(got) != "[new 0\n]" {
		t.Fatalf("after PurgeBefore: %q", got)
	}
	if err := ls.PurgeBefore(ctx, acct, "f", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = ls.Scan(ctx, acct, "f", ScanFrom{}, func(Stored) bool { n++; return true })
	if n != 0 || ls.Usage(acct, "f") != 0 || before == 0 {
		t.Fatalf("after purging everything: %d records, usage %d (was %d)", n, ls.Usage(acct, "f"), before)
	}
}
