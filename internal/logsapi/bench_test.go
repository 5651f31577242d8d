package logsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

type oneFunction struct{ created time.Time }

func (f oneFunction) LogGroupFunctions(acct string) map[string][]control.GroupFunction {
	return map[string][]control.GroupFunction{"/aws/lambda/bench": {{Name: "bench", Created: f.created}}}
}

// TestFilterLogEvents100k stores 100,000 records of one function (one
// line each, 1 in 100 holding the term "needle") and times
// FilterLogEvents with the term pattern over all of them, then the same
// with a JSON pattern, a regular expression and a space-delimited pattern;
// it checks the counts and prints the figures (target: <= 100 ms for the
// term pattern). Set LP_BENCH_RECORDS to change
// the count.
func TestFilterLogEvents100k(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 100,000 records")
	}
	const n = 100_000
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: t.TempDir(), SyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls, err := logs.NewStore(ctx, st.JetStream(), logs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close(ctx)
	start := time.Now()
	for i := 0; i < n; i++ {
		line := fmt.Sprintf(`{"level":"INFO","seq":%d,"message":"request handled in %d ms"}`, i, i%250)
		if i%100 == 0 {
			line = fmt.Sprintf(`{"level":"ERROR","seq":%d,"message":"needle: upstream timed out"}`, i)
		}
		if err := ls.Append("111122223333", "bench", logs.Record{Version: "$LATEST", LogStream: "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef", RequestID: "r", Text: []byte(line + "\n")}); err != nil {
			t.Fatal(err)
		}
	}
	// Scan stores what is pending; count the records once.
	stored := 0
	if err := ls.Scan(ctx, "111122223333", "bench", logs.ScanFrom{}, func(logs.Stored) bool { stored++; return true }); err != nil {
		t.Fatal(err)
	}
	if stored != n {
		t.Fatalf("stored %d records, want %d", stored, n)
	}
	t.Logf("stored %d records in %v", n, time.Since(start).Round(time.Millisecond))

	s, err := New(ctx, Options{Store: st, Logs: ls, Functions: oneFunction{time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	filter := func(pattern string) (int, time.Duration) {
		body, _ := json.Marshal(map[string]any{"logGroupName": "/aws/lambda/bench", "filterPattern": pattern})
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header.Set("X-Amz-Target", TargetPrefix+"FilterLogEvents")
		w := httptest.NewRecorder()
		t0 := time.Now()
		s.ServeAWS(w, r, auth.Identity{AccountID: "111122223333", Region: "us-east-1"}, body)
		d := time.Since(t0)
		if w.Code != 200 {
			t.Fatalf("FilterLogEvents %q: %d %s", pattern, w.Code, w.Body)
		}
		var out struct {
			Events    []json.RawMessage `json:"events"`
			NextToken string            `json:"nextToken"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if out.NextToken != "" {
			t.Fatalf("FilterLogEvents %q: a nextToken after %d events", pattern, len(out.Events))
		}
		return len(out.Events), d
	}
	for _, p := range []string{"needle", `{ $.level = "ERROR" }`, `%needle: \w+ timed%`, `[head = *ERROR*, ...]`} {
		var ds []time.Duration
		got := 0
		for i := 0; i < 5; i++ {
			var d time.Duration
			got, d = filter(p)
			ds = append(ds, d)
		}
		if got != n/100 {
			t.Fatalf("FilterLogEvents %q matched %d events, want %d", p, got, n/100)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		t.Logf("FilterLogEvents %-24q over %d records: %d events, min %v, median %v, max %v", p, n, got, ds[0].Round(time.Millisecond/10), ds[2].Round(time.Millisecond/10), ds[4].Round(time.Millisecond/10))
	}
}
