package sqs

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

func open(t *testing.T) *Queues {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	q, err := New(ctx, Config{Store: st, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

func kind(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return fmt.Sprint(err)
}

func TestMD5OfAttributes(t *testing.T) {
	// The value AWS documents for one String attribute is reproduced by
	// the SDKs' own checks (e2e); here: stable and order independent.
	a := map[string]MessageAttributeValue{"b": {DataType: "String", StringValue: "x"}, "a": {DataType: "Number", StringValue: "1"}}
	if MD5OfAttributes(a) != MD5OfAttributes(map[string]MessageAttributeValue{"a": a["a"], "b": a["b"]}) || MD5OfAttributes(a) == "" {
		t.Fatal("md5 of attributes not stable")
	}
	if MD5OfAttributes(nil) != "" {
		t.Fatal("md5 of no attributes must be empty")
	}
}

func TestStandardQueue(t *testing.T) {
	q := open(t)
	ctx := context.Background()
	rec, err := q.Create(ctx, CreateInput{Account: "111111111111", Name: "jobs", Attributes: map[string]string{"VisibilityTimeout": "30"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Create(ctx, CreateInput{Account: "111111111111", Name: "jobs", Attributes: map[string]string{"VisibilityTimeout": "30"}}); err != nil {
		t.Fatalf("idempotent create: %v", err)
	}
	if _, err := q.Create(ctx, CreateInput{Account: "111111111111", Name: "jobs", Attributes: map[string]string{"VisibilityTimeout": "31"}}); kind(err) != KindQueueNameExists {
		t.Fatalf("different attributes: %v", err)
	}
	if _, err := q.Create(ctx, CreateInput{Account: "111111111111", Name: "bad name"}); kind(err) != KindInvalidParameterValue {
		t.Fatalf("bad name: %v", err)
	}
	res, err := q.Send(ctx, rec.ARN(), SendInput{Body: "hello", MessageAttributes: map[string]MessageAttributeValue{"k": {DataType: "String", StringValue: "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.MD5OfBody != "5d41402abc4b2a76b9719d911017c592" {
		t.Fatalf("md5 %s", res.MD5OfBody)
	}
	msgs, err := q.Receive(ctx, rec.ARN(), 10, -1, 0)
	if err != nil || len(msgs) != 1 || msgs[0].Body != "hello" || msgs[0].MessageID != res.MessageID || msgs[0].Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("receive: %v %+v", err, msgs)
	}
	if again, _ := q.Receive(ctx, rec.ARN(), 10, -1, 0); len(again) != 0 {
		t.Fatalf("in-flight message received again: %+v", again)
	}
	// Visible again at once.
	if err := q.ChangeVisibility(ctx, rec.ARN(), msgs[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	var again []Message
	for i := 0; i < 250 && len(again) == 0; i++ {
		again, _ = q.Receive(ctx, rec.ARN(), 10, -1, 0)
		time.Sleep(20 * time.Millisecond)
	}
	if len(again) != 1 || again[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("after visibility 0: %+v", again)
	}
	if err := q.Delete(ctx, rec.ARN(), again[0].ReceiptHandle); err != nil {
		t.Fatal(err)
	}
	if err := q.ChangeVisibility(ctx, rec.ARN(), again[0].ReceiptHandle, 10*time.Second); kind(err) != KindMessageNotInflight {
		t.Fatalf("change visibility of a deleted message: %v", err)
	}
	if err := q.Delete(ctx, rec.ARN(), "garbage"); kind(err) != KindReceiptHandleIsInvalid {
		t.Fatalf("garbage handle: %v", err)
	}
	// Long polling returns when a message arrives.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = q.Send(context.Background(), rec.ARN(), SendInput{Body: "late"})
	}()
	t0 := time.Now()
	got, err := q.Receive(ctx, rec.ARN(), 10, -1, 5*time.Second)
	if err != nil || len(got) != 1 || time.Since(t0) > 4500*time.Millisecond {
		t.Fatalf("long poll: %v %d after %v", err, len(got), time.Since(t0))
	}
}

func TestRedriveAndDelay(t *testing.T) {
	q := open(t)
	ctx := context.Background()
	dlq, err := q.Create(ctx, CreateInput{Account: "1", Name: "dlq"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := q.Create(ctx, CreateInput{Account: "1", Name: "src", Attributes: map[string]string{
		"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"2"}`, dlq.ARN())}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Send(ctx, src.ARN(), SendInput{Body: "poison"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		m, err := q.Receive(ctx, src.ARN(), 1, 0, 2*time.Second)
		if err != nil || len(m) != 1 {
			t.Fatalf("receive %d: %v %d", i, err, len(m))
		}
	}
	if m, _ := q.Receive(ctx, src.ARN(), 1, 0, time.Second); len(m) != 0 {
		t.Fatalf("third receive should move it to the DLQ, got %+v", m)
	}
	m, err := q.Receive(ctx, dlq.ARN(), 1, -1, 2*time.Second)
	if err != nil || len(m) != 1 || m[0].Body != "poison" {
		t.Fatalf("dlq: %v %+v", err, m)
	}
	d := 1
	if _, err := q.Send(ctx, dlq.ARN(), SendInput{Body: "later", DelaySeconds: &d}); err != nil {
		t.Fatal(err)
	}
	if m, _ := q.Receive(ctx, dlq.ARN(), 1, -1, 0); len(m) != 0 {
		t.Fatalf("delayed message received at once")
	}
	m, err = q.Receive(ctx, dlq.ARN(), 1, -1, 5*time.Second)
	if err != nil || len(m) != 1 || m[0].Body != "later" {
		t.Fatalf("delayed: %v %+v", err, m)
	}
}

func TestFifo(t *testing.T) {
	q := open(t)
	ctx := context.Background()
	rec, err := q.Create(ctx, CreateInput{Account: "1", Name: "o.fifo", Attributes: map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Send(ctx, rec.ARN(), SendInput{Body: "x"}); kind(err) != KindMissingParameter {
		t.Fatalf("no group: %v", err)
	}
	var first SendResult
	for i := 0; i < 3; i++ {
		r, err := q.Send(ctx, rec.ARN(), SendInput{Body: fmt.Sprint("m", i), GroupID: "g"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r
		}
	}
	dup, err := q.Send(ctx, rec.ARN(), SendInput{Body: "m0", GroupID: "g"})
	if err != nil || dup.MessageID != first.MessageID {
		t.Fatalf("duplicate: %v %s vs %s", err, dup.MessageID, first.MessageID)
	}
	m, err := q.Receive(ctx, rec.ARN(), 1, -1, 0)
	if err != nil || len(m) != 1 || m[0].Body != "m0" {
		t.Fatalf("first: %v %+v", err, m)
	}
	if m2, _ := q.Receive(ctx, rec.ARN(), 10, -1, 0); len(m2) != 0 {
		t.Fatalf("group in flight yet delivered: %+v", m2)
	}
	if err := q.Delete(ctx, rec.ARN(), m[0].ReceiptHandle); err != nil {
		t.Fatal(err)
	}
	m, err = q.Receive(ctx, rec.ARN(), 10, -1, 0)
	if err != nil || len(m) != 2 || m[0].Body != "m1" || m[1].Body != "m2" {
		t.Fatalf("rest: %v %+v", err, m)
	}
	// A long poll on a FIFO queue wakes on a send to a free group.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = q.Send(context.Background(), rec.ARN(), SendInput{Body: "other", GroupID: "h"})
	}()
	t0 := time.Now()
	m, err = q.Receive(ctx, rec.ARN(), 10, -1, 10*time.Second)
	if err != nil || len(m) != 1 || m[0].Body != "other" || time.Since(t0) > 8*time.Second {
		t.Fatalf("fifo long poll: %v %+v after %v", err, m, time.Since(t0))
	}
}

// A deleted queue's name can be taken again only 60 s later.
func TestQueueDeletedRecently(t *testing.T) {
	q := open(t)
	now := time.Now()
	q.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := q.Create(ctx, CreateInput{Account: "111111111111", Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if err := q.DeleteQueue(ctx, "111111111111", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Create(ctx, CreateInput{Account: "111111111111", Name: "gone"}); kind(err) != KindQueueDeletedRecently {
		t.Fatalf("create right after the delete: %v", err)
	}
	if _, err := q.Create(ctx, CreateInput{Account: "222222222222", Name: "gone"}); err != nil {
		t.Fatalf("another account's queue of that name: %v", err)
	}
	now = now.Add(61 * time.Second)
	if _, err := q.Create(ctx, CreateInput{Account: "111111111111", Name: "gone"}); err != nil {
		t.Fatalf("create 61 s after the delete: %v", err)
	}
}

// A first receive is written to the store only when the message may come
// back: a receive deleted at once writes nothing; a visibility change or
// a message left undeleted keeps its first receive time for the next
// receive.
func TestFirstReceiveDeferred(t *testing.T) {
	q := open(t)
	ctx := context.Background()
	rec, err := q.Create(ctx, CreateInput{Account: "111111111111", Name: "firsts", Attributes: map[string]string{"VisibilityTimeout": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	stored := func(m Message) bool {
		_, err := q.first.Get(ctx, firstKey(rec.ID, m.Sequence))
		return err == nil
	}
	// Received and deleted at once: nothing written, even later.
	if _, err := q.Send(ctx, rec.ARN(), SendInput{Body: "quick"}); err != nil {
		t.Fatal(err)
	}
	got, err := q.Receive(ctx, rec.ARN(), 1, -1, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("receive: %v %v", got, err)
	}
	if err := q.Delete(ctx, rec.ARN(), got[0].ReceiptHandle); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * firstFlushAfter)
	if stored(got[0]) {
		t.Error("a message deleted at once left a first-receive record")
	}
	// Made visible again at once: the next receive reports the first time.
	if _, err := q.Send(ctx, rec.ARN(), SendInput{Body: "again"}); err != nil {
		t.Fatal(err)
	}
	first, err := q.Receive(ctx, rec.ARN(), 1, -1, 0)
	if err != nil || len(first) != 1 {
		t.Fatalf("receive: %v %v", first, err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := q.ChangeVisibility(ctx, rec.ARN(), first[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	second, err := q.Receive(ctx, rec.ARN(), 1, -1, 2*time.Second)
	if err != nil || len(second) != 1 || second[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("second receive: %v %v", second, err)
	}
	if a, b := first[0].Attributes["ApproximateFirstReceiveTimestamp"], second[0].Attributes["ApproximateFirstReceiveTimestamp"]; a != b {
		t.Errorf("first receive %s, then %s", a, b)
	}
	if !stored(first[0]) {
		t.Error("a visibility change did not write the first receive")
	}
	// Left undeleted: written after firstFlushAfter.
	if _, err := q.Send(ctx, rec.ARN(), SendInput{Body: "left"}); err != nil {
		t.Fatal(err)
	}
	left, err := q.Receive(ctx, rec.ARN(), 1, -1, 2*time.Second)
	if err != nil || len(left) != 1 || left[0].Body != "left" {
		t.Fatalf("receive: %v %v", left, err)
	}
	eventually := time.Now().Add(5 * time.Second)
	for !stored(left[0]) {
		if time.Now().After(eventually) {
			t.Fatal("an undeleted message's first receive was never written")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
