package logs

import (
	"fmt"
	"strings"
	"testing"
)

func testLedger(t *testing.T, q Quota) *ledger {
	t.Helper()
	if err := q.Defaults(); err != nil {
		t.Fatal(err)
	}
	return newLedger(q)
}

// testSeq numbers the messages the tests add, as the stream would.
var testSeq uint64

func put(l *ledger, subj string, size int64) map[string]uint64 {
	testSeq++
	return l.add(subj, size, testSeq)
}

// fill adds n messages of size bytes to subj and returns the last trims
// asked for each subject.
func fill(l *ledger, subj string, n int, size int64) map[string]uint64 {
	all := map[string]uint64{}
	for range n {
		for s, k := range put(l, subj, size) {
			all[s] = k
		}
	}
	return all
}

func TestLedgerFunctionQuotaTrimsOnlyThatFunction(t *testing.T) {
	l := testLedger(t, Quota{FunctionBytes: 1 << 20, AccountBytes: 1 << 30})
	quiet, other, flood := "logs.111.quiet", "logs.222.quiet", "logs.111.flood"
	fill(l, quiet, 3, 1000)
	fill(l, other, 3, 1000)
	trims := fill(l, flood, 100, 100<<10) // 10 MB into a 1 MB quota
	if len(trims) != 1 {
		t.Fatalf("trims %v: only the flooding function may be trimmed", trims)
	}
	fb, _ := l.usage(flood)
	if fb > 1<<20 || fb < (1<<20)*(chunksPerQuota-1)/chunksPerQuota-100<<10 {
		t.Fatalf("flooding function keeps %d bytes, want about its 1 MB quota", fb)
	}
	// The purge removes the messages below the oldest one still counted:
	// those kept are exactly the newest the ledger holds.
	u := l.subjects[flood]
	if below := trims[flood]; below != u.runs[0].first || u.last-below+1 != uint64(u.msgs) || u.msgs == 0 || u.msgs >= 100 {
		t.Fatalf("purge below %d, newest %d: %d messages kept, ledger has %d", below, u.last, u.last-below+1, u.msgs)
	}
	for _, s := range []string{quiet, other} {
		if b, _ := l.usage(s); b != 3000 {
			t.Fatalf("%s has %d bytes accounted, want 3000", s, b)
		}
	}
}

func TestLedgerAccountQuotaTrimsLargestFirst(t *testing.T) {
	l := testLedger(t, Quota{FunctionBytes: 2 << 20, AccountBytes: 3 << 20})
	quiet, f1, f2, b := "logs.111.quiet", "logs.111.f1", "logs.111.f2", "logs.222.big"
	fill(l, quiet, 20, 20<<10) // 400 KB, in several runs
	fill(l, b, 40, 50<<10)     // another account, 2 MB: its own business
	trimmed := map[string]bool{}
	for i := range 60 { // f1 and f2 alternate, 50 KB each: 6 MB into the account's 3 MB
		for s := range put(l, []string{f1, f2}[i%2], 50<<10) {
			trimmed[s] = true
		}
		for s := range put(l, []string{f2, f1}[i%2], 50<<10) {
			trimmed[s] = true
		}
	}
	if trimmed[quiet] || trimmed[b] {
		t.Fatalf("trimmed %v: the quiet function and the other account must be kept", trimmed)
	}
	if !trimmed[f1] || !trimmed[f2] {
		t.Fatalf("trimmed %v: both flooding functions should be", trimmed)
	}
	_, acct := l.usage(quiet)
	if acct > 3<<20 {
		t.Fatalf("account keeps %d bytes, over its 3 MB quota", acct)
	}
	if qb, _ := l.usage(quiet); qb != 400<<10 {
		t.Fatalf("quiet function has %d bytes, want all 400 KB", qb)
	}
	if bb, other := l.usage(b); bb != 2000<<10 || other != bb {
		t.Fatalf("other account: function %d, account %d bytes", bb, other)
	}

	// A quiet function is trimmed only once it is the account's largest:
	// a function over its share (not over its own quota) keeps the newest.
	l = testLedger(t, Quota{FunctionBytes: 2 << 20, AccountBytes: 2 << 20})
	fill(l, quiet, 40, 20<<10) // 800 KB
	trims := fill(l, f1, 60, 50<<10)
	if _, ok := trims[quiet]; ok {
		t.Fatalf("quiet function trimmed while a larger one existed: %v", trims)
	}
	q, acct := l.usage(quiet)
	f, _ := l.usage(f1)
	if acct > 2<<20 || f < q-l.chunkSize-50<<10 {
		t.Fatalf("account %d bytes, flood %d, quiet %d", acct, f, q)
	}
}

// TestLedgerAccountQuotaManyFunctions: many functions, each below one run,
// cannot take their account past its quota.
func TestLedgerAccountQuotaManyFunctions(t *testing.T) {
	l := testLedger(t, Quota{FunctionBytes: 16 << 20, AccountBytes: 16 << 20})
	fill(l, "logs.222.other", 1, 100)
	purged := map[string]bool{}
	for i := range 100 { // 100 functions × 512 KB (a run is 1 MB): 50 MB
		subj := fmt.Sprintf("logs.111.f%03d", i)
		for s, below := range fill(l, subj, 2, 256<<10) {
			if u := l.subjects[s]; u.msgs == 0 && below == u.last+1 {
				purged[s] = true
			}
		}
		if _, acct := l.usage(subj); acct > 16<<20 {
			t.Fatalf("after %d functions the account has %d bytes, over its 16 MB", i+1, acct)
		}
	}
	if len(purged) == 0 || purged["logs.222.other"] {
		t.Fatalf("purged %d functions (the other account's among them: %v)", len(purged), purged["logs.222.other"])
	}
	if b, _ := l.usage("logs.222.other"); b != 100 {
		t.Fatalf("other account: %d bytes", b)
	}
}

func TestLedgerMessageLimitAndRemove(t *testing.T) {
	l := testLedger(t, Quota{FunctionMsgs: 32})
	if trims := fill(l, "logs.111.f", 100, 100); len(trims) != 0 {
		t.Fatalf("count limit is JetStream's, yet trims %v", trims)
	}
	u := l.subjects["logs.111.f"]
	if u.msgs != 32 || u.bytes != 3200 || u.acct.bytes != 3200 {
		t.Fatalf("after the count limit: %d messages, %d bytes, account %d", u.msgs, u.bytes, u.acct.bytes)
	}
	fill(l, "logs.111.g", 1, 50)
	l.remove("logs.111.f")
	if f, a := l.usage("logs.111.f"); f != 0 || a != 50 {
		t.Fatalf("after remove: function %d, account %d bytes", f, a)
	}
	l.remove("logs.111.g")
	if len(l.accounts) != 0 || len(l.subjects) != 0 {
		t.Fatalf("ledger not empty: %v %v", l.accounts, l.subjects)
	}
}

func TestQuotaDefaults(t *testing.T) {
	var q Quota
	if err := q.Defaults(); err != nil || q.FunctionBytes != DefaultFunctionBytes || q.AccountBytes != DefaultAccountBytes || q.FunctionMsgs != DefaultFunctionMsgs {
		t.Fatalf("defaults %+v, %v", q, err)
	}
	for _, bad := range []Quota{{FunctionBytes: 1000}, {FunctionBytes: 8 << 20, AccountBytes: 4 << 20}, {FunctionMsgs: 3}} {
		if err := bad.Defaults(); err == nil || !strings.Contains(err.Error(), "log quota") {
			t.Errorf("%+v: error %v", bad, err)
		}
	}
}
