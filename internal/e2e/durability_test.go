package e2e

import (
	"context"
	"fmt"
	"testing"
)

// TestWarmInvokeWritesNoRecord: warm invokes write nothing durable on
// their path — no record, code object, queued event or consumer state —
// so syncing every store write to disk before it is acknowledged costs
// them nothing. Every stream keeps its last sequence across 50 warm
// invokes, except the log stream, whose batches are stored in the
// background.
func TestWarmInvokeWritesNoRecord(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	e.createProbe("warm")
	if m, _ := e.invokeJSON("warm", map[string]any{"name": "cold"}); m["hello"] != "cold" {
		t.Fatalf("cold invoke: %v", m)
	}
	js := e.srv.Store().JetStream()
	ctx := context.Background()
	snapshot := func() map[string]string {
		out := map[string]string{}
		names := js.StreamNames(ctx)
		for name := range names.Name() {
			if name == "LOGS" {
				continue
			}
			st, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = fmt.Sprintf("last %d", info.State.LastSeq)
			for c := range st.ListConsumers(ctx).Info() {
				out[name+"/"+c.Name] = fmt.Sprintf("delivered %d acked %d", c.Delivered.Stream, c.AckFloor.Stream)
			}
		}
		if err := names.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := snapshot()
	if before["KV_functions"] == "" || before["INVOKE_ASYNC"] == "" {
		t.Fatalf("streams %v: the function records and the event queue are missing", before)
	}
	t.Logf("%d streams and consumers compared", len(before))
	for i := range 50 {
		name := fmt.Sprint("warm-", i)
		if m, _ := e.invokeJSON("warm", map[string]any{"name": name}); m["hello"] != name {
			t.Fatalf("warm invoke %d: %v", i, m)
		}
	}
	after := snapshot()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %s before 50 warm invokes, %s after", k, v, after[k])
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared during warm invokes (%s)", k, v)
		}
	}
}
