package destinations

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

type fns struct{ dlq string }

func (f fns) Resolve(acct, region, name, q string) (*control.Config, error) {
	if name != "fn" {
		return nil, control.NotFound("Function not found: %s", name)
	}
	v := q
	if v == "" {
		v = control.LatestVersion
	}
	return &control.Config{FunctionName: "fn", AccountID: acct, Region: region, Version: v, Role: "arn:aws:iam::" + acct + ":role/r", DeadLetterArn: f.dlq}, nil
}

type sent struct {
	queue, body string
	attrs       map[string]MessageAttribute
}

type fakeOut struct {
	mu      sync.Mutex
	sent    []sent
	invoked []string
}

func (f *fakeOut) Send(ctx context.Context, acct, q, body string, attrs map[string]MessageAttribute) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, sent{q, body, attrs})
	return nil
}

func (f *fakeOut) InvokeEvent(ctx context.Context, acct, region, fn string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invoked = append(f.invoked, fn+" "+string(payload))
	return nil
}

func TestConfigsAndDispatch(t *testing.T) {
	st, err := store.Open(t.Context(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	f := fns{dlq: "arn:aws:sqs:us-east-1:111111111111:dlq"}
	cs, err := NewConfigs(ctx, Options{Store: st, Functions: f})
	if err != nil {
		t.Fatal(err)
	}
	i := func(v int) *int { return &v }
	s := func(v string) *string { return &v }
	// Defaults without a config.
	if r, a := cs.Limits(ctx, "111111111111", "fn", ""); r != 2 || a != 6*time.Hour {
		t.Fatalf("defaults %d %v", r, a)
	}
	for _, bad := range []Input{
		{MaximumRetryAttempts: i(3)}, {MaximumRetryAttempts: i(-1)}, {MaximumEventAgeInSeconds: i(59)}, {MaximumEventAgeInSeconds: i(21601)},
		{DestinationConfig: &DestinationConfig{OnSuccess: &Destination{Destination: s("arn:aws:sns:us-east-1:111111111111:t")}}},
		{DestinationConfig: &DestinationConfig{OnFailure: &Destination{Destination: s("nope")}}},
	} {
		if _, err := cs.Put(ctx, "111111111111", "us-east-1", "fn", "", &bad); err == nil {
			t.Errorf("put %+v accepted", bad)
		}
	}
	if _, err := cs.Get(ctx, "111111111111", "us-east-1", "fn", ""); err == nil {
		t.Error("get of a missing config succeeded")
	}
	if _, err := cs.Put(ctx, "111111111111", "us-east-1", "nofn", "", &Input{}); err == nil {
		t.Error("put for a missing function succeeded")
	}
	c, err := cs.Put(ctx, "111111111111", "us-east-1", "fn", "", &Input{MaximumRetryAttempts: i(0), MaximumEventAgeInSeconds: i(60),
		DestinationConfig: &DestinationConfig{OnSuccess: &Destination{Destination: s("arn:aws:sqs:us-east-1:111111111111:ok")},
			OnFailure: &Destination{Destination: s("arn:aws:lambda:us-east-1:111111111111:function:other")}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.FunctionArn() != "arn:aws:lambda:us-east-1:111111111111:function:fn:$LATEST" {
		t.Errorf("arn %s", c.FunctionArn())
	}
	if r, a := cs.Limits(ctx, "111111111111", "fn", ""); r != 0 || a != time.Minute {
		t.Fatalf("limits %d %v", r, a)
	}
	// Update keeps what it does not name.
	c, err = cs.Update(ctx, "111111111111", "us-east-1", "fn", "", &Input{MaximumRetryAttempts: i(1)})
	if err != nil || *c.MaximumEventAgeInSeconds != 60 || *c.MaximumRetryAttempts != 1 || c.OnSuccess == "" {
		t.Fatalf("update: %+v %v", c, err)
	}
	list, _, err := cs.List(ctx, "111111111111", "us-east-1", "fn", "", 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("list %v %v", list, err)
	}

	out := &fakeOut{}
	d := &Dispatcher{Configs: cs, Functions: f, Queues: out, Invoker: out}
	if err := d.Deliver(ctx, &Outcome{AccountID: "111111111111", Region: "us-east-1", FunctionName: "fn", RequestID: "r1",
		Condition: Success, Attempts: 1, RequestPayload: []byte(`{"a":1}`), StatusCode: 200, ExecutedVersion: "$LATEST", ResponsePayload: []byte(`"ok"`)}); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver(ctx, &Outcome{AccountID: "111111111111", Region: "us-east-1", FunctionName: "fn", RequestID: "r2",
		Condition: RetriesExhausted, Attempts: 2, RequestPayload: []byte(`{"b":2}`), StatusCode: 200, ExecutedVersion: "$LATEST",
		FunctionError: "Unhandled", ResponsePayload: []byte(`{"errorMessage":"boom"}`), ErrorMessage: "boom"}); err != nil {
		t.Fatal(err)
	}
	if len(out.sent) != 2 || len(out.invoked) != 1 {
		t.Fatalf("sent %+v invoked %v", out.sent, out.invoked)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(out.sent[0].body), &rec); err != nil {
		t.Fatal(err)
	}
	rc := rec["requestContext"].(map[string]any)
	if rec["version"] != "1.0" || rc["condition"] != "Success" || rc["requestId"] != "r1" || rc["approximateInvokeCount"] != 1.0 ||
		rec["responsePayload"] != "ok" || rec["requestPayload"].(map[string]any)["a"] != 1.0 || rec["responseContext"].(map[string]any)["statusCode"] != 200.0 {
		t.Errorf("success record %s", out.sent[0].body)
	}
	dl := out.sent[1]
	if dl.queue != f.dlq || dl.body != `{"b":2}` || dl.attrs["RequestID"].StringValue != "r2" || dl.attrs["ErrorMessage"].StringValue != "boom" || dl.attrs["ErrorCode"].DataType != "Number" {
		t.Errorf("dead letter %+v", dl)
	}
	if want := "other "; len(out.invoked[0]) < len(want) || out.invoked[0][:len(want)] != want {
		t.Errorf("failure destination %s", out.invoked[0])
	}
	if err := cs.Delete(ctx, "111111111111", "us-east-1", "fn", ""); err != nil {
		t.Fatal(err)
	}
	if err := cs.Delete(ctx, "111111111111", "us-east-1", "fn", ""); err == nil {
		t.Error("second delete succeeded")
	}
}
