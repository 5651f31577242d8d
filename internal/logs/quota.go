package logs

import (
	"fmt"
	"strings"
)

// Retention defaults: what the store keeps of each function and account.
const (
	DefaultFunctionBytes = 64 << 20 // newest records of one function
	DefaultAccountBytes  = 1 << 30  // all functions of one account
	DefaultFunctionMsgs  = 10000    // stored messages (batches) of one function

	// MinFunctionBytes is the smallest per-function quota: two of the
	// largest messages the store writes, so a function always keeps its
	// newest message whole.
	MinFunctionBytes = 2 * maxBatchBytes

	// msgOverhead is what a stored message costs besides its data in the
	// quota's accounting (subject, headers, JetStream's record framing).
	msgOverhead = 64

	// chunksPerQuota is how finely a function's stored messages are
	// accounted: in runs of about 1/chunksPerQuota of its quota, oldest
	// first. Trimming removes whole runs, so a function over its quota
	// keeps between (1-1/chunksPerQuota) and 1 times its quota.
	chunksPerQuota = 16
)

// Quota bounds what the log store keeps. Zero fields take the defaults.
type Quota struct {
	FunctionBytes int64 // one function's newest records, in bytes
	AccountBytes  int64 // one account's records, all functions together
	FunctionMsgs  int   // one function's stored messages (JetStream MaxMsgsPerSubject)
}

// Defaults fills unset fields and checks the quota is consistent.
func (q *Quota) Defaults() error {
	if q.FunctionBytes == 0 {
		q.FunctionBytes = DefaultFunctionBytes
	}
	if q.AccountBytes == 0 {
		q.AccountBytes = DefaultAccountBytes
	}
	if q.FunctionMsgs == 0 {
		q.FunctionMsgs = DefaultFunctionMsgs
	}
	if q.FunctionBytes < MinFunctionBytes {
		return fmt.Errorf("log quota per function %d bytes is too small: at least %d (--log-quota-function-bytes)", q.FunctionBytes, MinFunctionBytes)
	}
	if q.AccountBytes < q.FunctionBytes {
		return fmt.Errorf("log quota per account (%d bytes) is below the quota per function (%d bytes): raise --log-quota-account-bytes or lower --log-quota-function-bytes", q.AccountBytes, q.FunctionBytes)
	}
	if q.FunctionMsgs < chunksPerQuota {
		return fmt.Errorf("log quota of %d messages per function is too small: at least %d", q.FunctionMsgs, chunksPerQuota)
	}
	return nil
}

// ledger accounts the stored bytes of every function and account and
// decides what to trim. It is pure bookkeeping: the Store feeds it every
// message it stores and carries out the trims it returns.
//
// A function's records are only ever removed (oldest first) when
//   - that function's own records exceed FunctionBytes or FunctionMsgs, or
//   - its account's records exceed AccountBytes and it holds the most
//     bytes of the account's functions (so a flooding function trims
//     itself first, and a quiet one keeps about an even share). A function
//     always keeps its newest run, unless the account is over its quota
//     with no function holding more than one: then the largest function's
//     records go whole, so the account's bound holds however many
//     functions it has.
//
// Never because of another account.
type ledger struct {
	q         Quota
	chunkSize int64
	chunkMsgs int
	accounts  map[string]*acctUsage
	subjects  map[string]*fnUsage
}

type acctUsage struct {
	bytes int64
	fns   map[string]*fnUsage // subject → usage
}

type fnUsage struct {
	acct  *acctUsage
	bytes int64
	msgs  int
	runs  []run  // oldest first
	last  uint64 // stream sequence of the newest message
}

// run is a stretch of consecutive stored messages of one function.
type run struct {
	first uint64 // stream sequence of its oldest message
	msgs  int
	bytes int64
}

func newLedger(q Quota) *ledger {
	return &ledger{q: q, chunkSize: q.FunctionBytes / chunksPerQuota, chunkMsgs: q.FunctionMsgs / chunksPerQuota,
		accounts: map[string]*acctUsage{}, subjects: map[string]*fnUsage{}}
}

// accountOf is the account token of a log subject (logs.<account>.<function>).
func accountOf(subj string) string {
	parts := strings.SplitN(subj, ".", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[1]
}

// add records one stored message (its stream sequence and size) and
// returns the subjects that must be trimmed, each with the sequence below
// which their messages go (a purge below a sequence removes nothing stored
// since, so it can never take more than the ledger let go).
func (l *ledger) add(subj string, size int64, seq uint64) map[string]uint64 {
	u := l.subjects[subj]
	if u == nil {
		acct := accountOf(subj)
		a := l.accounts[acct]
		if a == nil {
			a = &acctUsage{fns: map[string]*fnUsage{}}
			l.accounts[acct] = a
		}
		u = &fnUsage{acct: a}
		a.fns[subj] = u
		l.subjects[subj] = u
	}
	if n := len(u.runs); n == 0 || u.runs[n-1].bytes >= l.chunkSize || u.runs[n-1].msgs >= l.chunkMsgs {
		u.runs = append(u.runs, run{first: seq})
	}
	last := &u.runs[len(u.runs)-1]
	last.first = min(last.first, seq) // acknowledgements may come out of order
	last.msgs++
	last.bytes += size
	u.last = max(u.last, seq)
	u.msgs++
	u.bytes += size
	u.acct.bytes += size
	// JetStream drops the oldest messages past FunctionMsgs by itself.
	if excess := u.msgs - l.q.FunctionMsgs; excess > 0 {
		u.dropOldest(excess)
	}
	var trims map[string]uint64
	trim := func(s string, f *fnUsage) {
		f.dropRun()
		if trims == nil {
			trims = map[string]uint64{}
		}
		if len(f.runs) > 0 {
			trims[s] = f.runs[0].first
		} else {
			trims[s] = f.last + 1
		}
	}
	for u.bytes > l.q.FunctionBytes && len(u.runs) > 1 {
		trim(subj, u)
	}
	for a := u.acct; a.bytes > l.q.AccountBytes; {
		s, f := a.largest(2)
		if f == nil { // many functions, each with one run: the largest goes whole
			s, f = a.largest(1)
		}
		if f == nil {
			break
		}
		trim(s, f)
	}
	return trims
}

// dropOldest forgets the n oldest messages (JetStream removed them).
func (u *fnUsage) dropOldest(n int) {
	for n > 0 && len(u.runs) > 0 {
		r := &u.runs[0]
		if r.msgs <= n {
			n -= r.msgs
			u.forget(r.msgs, r.bytes)
			u.runs = u.runs[1:]
			continue
		}
		b := r.bytes * int64(n) / int64(r.msgs)
		r.msgs -= n
		r.bytes -= b
		u.forget(n, b)
		n = 0
	}
}

// dropRun forgets the oldest run (the Store purges it).
func (u *fnUsage) dropRun() {
	r := u.runs[0]
	u.runs = u.runs[1:]
	u.forget(r.msgs, r.bytes)
}

func (u *fnUsage) forget(msgs int, bytes int64) {
	u.msgs -= msgs
	u.bytes -= bytes
	u.acct.bytes -= bytes
}

// largest is the account's function with the most bytes among those with
// at least minRuns runs stored.
func (a *acctUsage) largest(minRuns int) (string, *fnUsage) {
	var best *fnUsage
	var subj string
	for s, f := range a.fns {
		if len(f.runs) >= minRuns && (best == nil || f.bytes > best.bytes || f.bytes == best.bytes && s < subj) {
			best, subj = f, s
		}
	}
	return subj, best
}

// remove forgets a function (its records were purged).
func (l *ledger) remove(subj string) {
	u := l.subjects[subj]
	if u == nil {
		return
	}
	u.acct.bytes -= u.bytes
	delete(u.acct.fns, subj)
	delete(l.subjects, subj)
	if len(u.acct.fns) == 0 {
		delete(l.accounts, accountOf(subj))
	}
}

// usage reports the accounted bytes of a function and of its account.
func (l *ledger) usage(subj string) (fn, acct int64) {
	if u := l.subjects[subj]; u != nil {
		return u.bytes, u.acct.bytes
	}
	if a := l.accounts[accountOf(subj)]; a != nil {
		return 0, a.bytes
	}
	return 0, 0
}
