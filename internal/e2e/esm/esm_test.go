package esm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/server"
	"github.com/lambdaplane/lambdaplane/internal/sqs"
)

// TestSQS runs the mapping and async-destination scenarios on one server,
// in parallel.
func TestSQS(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	role := sqsRole(t, e)
	t.Run("MappingOperations", func(t *testing.T) { t.Parallel(); mappingOperations(t, for_(t, e), role) })
	t.Run("ThousandExactlyOnce", func(t *testing.T) { t.Parallel(); thousandExactlyOnce(t, for_(t, e), role) })
	t.Run("PartialBatchFailures", func(t *testing.T) { t.Parallel(); partialBatchFailures(t, for_(t, e), role) })
	t.Run("Filters", func(t *testing.T) { t.Parallel(); filters(t, for_(t, e), role) })
	t.Run("FailingMessageToDLQ", func(t *testing.T) { t.Parallel(); failingToDLQ(t, for_(t, e), role) })
	t.Run("CLIExample", func(t *testing.T) { t.Parallel(); cliExample(t, for_(t, e)) })
	t.Run("Boto3", func(t *testing.T) { t.Parallel(); boto3Example(t, for_(t, e), role) })
}

func mappingOperations(t *testing.T, e *harness.Env, role string) {
	ctx := context.Background()
	lc := e.Lambda
	q := createQueue(t, e, "ops", nil)
	createPy(t, e, "ops-fn", role, printer, 3)
	// A function whose role has no SQS permissions.
	createPy(t, e, "ops-norole", e.Role("probe"), printer, 3)

	bad := []struct {
		name string
		in   lambda.CreateEventSourceMappingInput
		code string
		msg  string
	}{
		{"no function", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("nope")}, "ResourceNotFoundException", ""},
		{"no queue", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q + "-missing"), FunctionName: aws.String("ops-fn")}, "InvalidParameterValueException", "NonExistentQueue"},
		{"not sqs", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String("arn:aws:kinesis:us-east-1:" + e.Srv.Account.ID + ":stream/s"), FunctionName: aws.String("ops-fn")}, "InvalidParameterValueException", "SQS"},
		{"role", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("ops-norole")}, "InvalidParameterValueException", "The function execution role does not have permissions to call ReceiveMessage on SQS"},
		{"batch without window", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("ops-fn"), BatchSize: aws.Int32(11)}, "InvalidParameterValueException", "Maximum batch window"},
		{"batch too big", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("ops-fn"), BatchSize: aws.Int32(10001), MaximumBatchingWindowInSeconds: aws.Int32(1)}, "ValidationException", "batchSize"},
		{"concurrency", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("ops-fn"), ScalingConfig: &types.ScalingConfig{MaximumConcurrency: aws.Int32(1)}}, "ValidationException", "maximumConcurrency"},
		{"filter", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("ops-fn"), FilterCriteria: &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"body":"x"}`)}}}}, "InvalidParameterValueException", "Invalid filter pattern"},
		{"starting position", lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("ops-fn"), StartingPosition: types.EventSourcePositionLatest}, "InvalidParameterValueException", "StartingPosition"},
	}
	for _, b := range bad {
		_, err := lc.CreateEventSourceMapping(ctx, &b.in)
		if errCode(err) != b.code || !strings.Contains(fmt.Sprint(err), b.msg) {
			t.Errorf("%s: got %v, want %s (%s)", b.name, err, b.code, b.msg)
		}
	}

	out, err := lc.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		EventSourceArn: aws.String(q), FunctionName: aws.String("ops-fn"), BatchSize: aws.Int32(50), MaximumBatchingWindowInSeconds: aws.Int32(1),
		FunctionResponseTypes: []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures},
		ScalingConfig:         &types.ScalingConfig{MaximumConcurrency: aws.Int32(5)},
		FilterCriteria:        &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"body":{"a":[{"prefix":"x"}]}}`)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	uuid := aws.ToString(out.UUID)
	if aws.ToString(out.State) != "Creating" || aws.ToInt32(out.BatchSize) != 50 || aws.ToString(out.FunctionArn) != "arn:aws:lambda:us-east-1:"+e.Srv.Account.ID+":function:ops-fn" ||
		aws.ToString(out.EventSourceArn) != q || out.LastModified == nil || aws.ToInt32(out.ScalingConfig.MaximumConcurrency) != 5 || len(out.FilterCriteria.Filters) != 1 ||
		len(out.FunctionResponseTypes) != 1 {
		t.Errorf("created: %+v", out)
	}
	waitState(t, e, uuid, "Enabled")
	if _, err := lc.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("ops-fn")}); errCode(err) != "ResourceConflictException" || !strings.Contains(err.Error(), uuid) {
		t.Errorf("duplicate: %v", err)
	}
	for _, in := range []*lambda.ListEventSourceMappingsInput{{}, {FunctionName: aws.String("ops-fn")}, {EventSourceArn: aws.String(q)}} {
		l, err := lc.ListEventSourceMappings(ctx, in)
		if err != nil || len(l.EventSourceMappings) != 1 || aws.ToString(l.EventSourceMappings[0].UUID) != uuid {
			if in.FunctionName == nil && in.EventSourceArn == nil && err == nil {
				found := false
				for _, m := range l.EventSourceMappings {
					found = found || aws.ToString(m.UUID) == uuid
				}
				if found {
					continue
				}
			}
			t.Errorf("list %+v: %v %v", in, l, err)
		}
	}
	up, err := lc.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(uuid), BatchSize: aws.Int32(10), MaximumBatchingWindowInSeconds: aws.Int32(0)})
	if err != nil || aws.ToString(up.State) != "Updating" || aws.ToInt32(up.BatchSize) != 10 {
		t.Fatalf("update: %+v %v", up, err)
	}
	waitState(t, e, uuid, "Enabled")
	if _, err := lc.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(uuid), BatchSize: aws.Int32(20)}); errCode(err) != "InvalidParameterValueException" {
		t.Errorf("update to 20 without a window: %v", err)
	}
	up, err = lc.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(uuid), Enabled: aws.Bool(false)})
	if err != nil || aws.ToString(up.State) != "Disabling" {
		t.Fatalf("disable: %+v %v", up, err)
	}
	waitState(t, e, uuid, "Disabled")
	del, err := lc.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: aws.String(uuid)})
	if err != nil || aws.ToString(del.State) != "Deleting" {
		t.Fatalf("delete: %+v %v", del, err)
	}
	harness.Eventually(t, 10*time.Second, "mapping gone", func() bool {
		_, err := lc.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String(uuid)})
		return errCode(err) == "ResourceNotFoundException"
	})
	if _, err := lc.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(uuid), Enabled: aws.Bool(true)}); errCode(err) != "ResourceNotFoundException" {
		t.Errorf("update of a deleted mapping: %v", err)
	}
}

func thousandExactlyOnce(t *testing.T, e *harness.Env, role string) {
	ctx := context.Background()
	q, m := mappedPrinter(t, e, role, "thousand")
	sent := sendBatches(t, e, q, 100)
	start := time.Now()
	harness.Eventually(t, 60*time.Second, "1,000 messages delivered and deleted", func() bool {
		return depth(t, e, q) == 0 && len(delivered(t, e, "thousand-fn")) >= 1000
	})
	t.Logf("1,000 messages delivered and deleted in %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second) // a duplicate would show up now
	got := delivered(t, e, "thousand-fn")
	for id, n := range got {
		if !sent[id] {
			t.Errorf("delivered %s, never sent", id)
		}
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	if len(got) != 1000 {
		t.Errorf("%d distinct messages delivered, want 1000", len(got))
	}
	if !strings.Contains(logText(t, e, "thousand-fn"), " aws:sqs us-east-1 ") {
		t.Error("records lack eventSource aws:sqs / awsRegion")
	}
	if g, err := e.Lambda.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: m.UUID}); err != nil || aws.ToString(g.LastProcessingResult) != "OK" {
		t.Errorf("LastProcessingResult after the batches: %v %v", g, err)
	}
}

const partial = `
import json
def handler(event, context):
    fails = []
    for r in event["Records"]:
        print("MSG", r["messageId"], r["attributes"]["ApproximateReceiveCount"], flush=True)
        if json.loads(r["body"]).get("fail") and r["attributes"]["ApproximateReceiveCount"] == "1":
            fails.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": fails}
`

func partialBatchFailures(t *testing.T, e *harness.Env, role string) {
	ctx := context.Background()
	q := createQueue(t, e, "partial", map[string]string{"VisibilityTimeout": "3"})
	createPy(t, e, "partial-fn", role, partial, 3)
	ids := map[string]bool{}
	okA := send(t, e, q, `{"n":1}`)
	failB := send(t, e, q, `{"n":2,"fail":true}`)
	okC := send(t, e, q, `{"n":3}`)
	ids[okA], ids[failB], ids[okC] = true, true, true
	// Created after the sends, so that the three come in one batch.
	m, err := e.Lambda.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("partial-fn"),
		FunctionResponseTypes: []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures}})
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, "queue drained", func() bool { return depth(t, e, q) == 0 })
	got := delivered(t, e, "partial-fn")
	if got[okA] != 1 || got[okC] != 1 || got[failB] != 2 {
		t.Errorf("deliveries: ok %d %d, failed %d; want 1 1 2", got[okA], got[okC], got[failB])
	}
	_, _ = e.Lambda.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: m.UUID})
}

func filters(t *testing.T, e *harness.Env, role string) {
	ctx := context.Background()
	q := createQueue(t, e, "filtered", nil)
	createPy(t, e, "filtered-fn", role, printer, 3)
	m, err := e.Lambda.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("filtered-fn"),
		FilterCriteria: &types.FilterCriteria{Filters: []types.Filter{
			{Pattern: aws.String(`{"body":{"kind":["order"],"amount":[{"numeric":[">",100]}]}}`)},
			{Pattern: aws.String(`{"body":[{"prefix":"urgent:"}]}`)},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, aws.ToString(m.UUID), "Enabled")
	match1 := send(t, e, q, `{"kind":"order","amount":150}`)
	match2 := send(t, e, q, `urgent: plain text`)
	skip1 := send(t, e, q, `{"kind":"order","amount":50}`)
	skip2 := send(t, e, q, `{"kind":"refund","amount":500}`)
	skip3 := send(t, e, q, `plain text`)
	harness.Eventually(t, 20*time.Second, "queue drained", func() bool {
		g := delivered(t, e, "filtered-fn")
		return depth(t, e, q) == 0 && g[match1] == 1 && g[match2] == 1
	})
	got := delivered(t, e, "filtered-fn")
	for _, id := range []string{skip1, skip2, skip3} {
		if got[id] != 0 {
			t.Errorf("filtered-out message %s was delivered", id)
		}
	}
	if len(got) != 2 {
		t.Errorf("delivered %v, want only the two matching", got)
	}
}

const failing = `
def handler(event, context):
    for r in event["Records"]:
        print("MSG", r["messageId"], r["attributes"]["ApproximateReceiveCount"], flush=True)
    raise Exception("cannot process")
`

func failingToDLQ(t *testing.T, e *harness.Env, role string) {
	ctx := context.Background()
	dlq := createQueue(t, e, "redrive-dlq", nil)
	redrive, _ := json.Marshal(map[string]any{"deadLetterTargetArn": dlq, "maxReceiveCount": 2})
	q := createQueue(t, e, "redrive-src", map[string]string{"VisibilityTimeout": "3", "RedrivePolicy": string(redrive)})
	createPy(t, e, "redrive-fn", role, failing, 3)
	id := send(t, e, q, `{"poison":true}`)
	m, err := e.Lambda.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String("redrive-fn")})
	if err != nil {
		t.Fatal(err)
	}
	got := receiveAll(t, e, dlq, 1, 30*time.Second)
	if len(got) != 1 || got[0].MessageID != id || got[0].Body != `{"poison":true}` {
		t.Fatalf("dead-letter queue holds %+v, want message %s", got, id)
	}
	if n := delivered(t, e, "redrive-fn")[id]; n != 2 {
		t.Errorf("the failing message was invoked %d times, want maxReceiveCount 2", n)
	}
	if depth(t, e, q) != 0 {
		t.Error("the source queue still holds the message")
	}
	if g, err := e.Lambda.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: m.UUID}); err != nil || aws.ToString(g.LastProcessingResult) != "PROBLEM: Function call failed" {
		t.Errorf("LastProcessingResult after the failures: %v %v", g, err)
	}
}

// TestLogStoredBeforeDelete: a mapping deletes a batch only once the
// invocation's log is stored, since the log is all that stays of it (a
// crash in between lost the batch's output: TestCrashWithMappings under
// load). Other logs are batched; here the batching never ends within the
// test, so a log stored by it would be missing when its batch is gone.
func TestLogStoredBeforeDelete(t *testing.T) {
	t.Parallel()
	e := harness.Start(t, func(c *server.Config) { c.LogFlushDelay = time.Hour })
	role := sqsRole(t, e)
	ctx := context.Background()
	q, _ := mappedPrinter(t, e, role, "stored")
	sent := sendBatches(t, e, q, 3)
	harness.Eventually(t, 30*time.Second, "30 messages processed and deleted", func() bool { return depth(t, e, q) == 0 })
	stored := storedLogs(t, e)
	for id := range sent {
		if !strings.Contains(stored, "MSG "+id+" ") {
			t.Errorf("message %s is deleted but its invocation's log is not stored", id)
		}
	}
	// A synchronous invoke's log is still batched: not stored yet.
	if _, err := e.Lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("stored-fn"), Payload: []byte(`{"Records":[{"messageId":"direct","attributes":{"ApproximateReceiveCount":"1"},"eventSource":"e","awsRegion":"r","md5OfBody":"m","body":"b"}]}`)}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(storedLogs(t, e), "MSG direct ") {
		t.Error("a RequestResponse invoke's log was stored at once, not batched")
	}
}

// mappedPrinter creates queue name, the printer function name-fn and an
// enabled mapping between them.
func mappedPrinter(t *testing.T, e *harness.Env, role, name string) (queue string, m *lambda.CreateEventSourceMappingOutput) {
	t.Helper()
	q := createQueue(t, e, name, nil)
	createPy(t, e, name+"-fn", role, printer, 10)
	m, err := e.Lambda.CreateEventSourceMapping(context.Background(), &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q), FunctionName: aws.String(name + "-fn")})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, aws.ToString(m.UUID), "Enabled")
	return q, m
}

// sendBatches sends n batches of ten to the queue; it returns the ids.
func sendBatches(t *testing.T, e *harness.Env, q string, n int) map[string]bool {
	t.Helper()
	ctx := context.Background()
	rec, err := e.Srv.QueueEngine().Lookup(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]bool{}
	for i := 0; i < n; i++ {
		batch := make([]sqs.SendInput, 10)
		for j := range batch {
			batch[j] = sqs.SendInput{Body: fmt.Sprintf(`{"n":%d}`, i*10+j), SenderID: e.Srv.Account.ID}
		}
		res, errs, err := e.Srv.QueueEngine().SendBatch(ctx, rec, batch)
		if err != nil {
			t.Fatal(err)
		}
		for j, r := range res {
			if errs[j] != nil {
				t.Fatal(errs[j])
			}
			sent[r.MessageID] = true
		}
	}
	return sent
}
