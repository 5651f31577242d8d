package esm_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestAsync runs the event invoke config, destination and dead-letter
// scenarios on one server, in parallel.
func TestAsync(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	role := sqsRole(t, e)
	t.Run("EventInvokeConfigOperations", func(t *testing.T) { t.Parallel(); eventInvokeOps(t, for_(t, e), role) })
	t.Run("Destinations", func(t *testing.T) { t.Parallel(); destinationsScenario(t, for_(t, e), role) })
	t.Run("DeadLetterConfig", func(t *testing.T) { t.Parallel(); deadLetterScenario(t, for_(t, e), role) })
	t.Run("EventAge", func(t *testing.T) { t.Parallel(); eventAgeScenario(t, for_(t, e), role) })
}

const okFn = `
def handler(event, context):
    print("RAN", event.get("n"), flush=True)
    return {"ok": True, "n": event.get("n")}
`

const failFn = `
def handler(event, context):
    print("RAN", event.get("n"), flush=True)
    raise Exception("boom " + str(event.get("n")))
`

const sinkFn = `
import json
def handler(event, context):
    print("SINK " + json.dumps(event), flush=True)
`

func put(t *testing.T, e *harness.Env, in *lambda.PutFunctionEventInvokeConfigInput) *lambda.PutFunctionEventInvokeConfigOutput {
	t.Helper()
	out, err := e.Lambda.PutFunctionEventInvokeConfig(context.Background(), in)
	if err != nil {
		t.Fatalf("put event invoke config of %s: %v", aws.ToString(in.FunctionName), err)
	}
	return out
}

func eventInvoke(t *testing.T, e *harness.Env, fn, payload string) string {
	t.Helper()
	out, err := e.Lambda.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(fn), InvocationType: types.InvocationTypeEvent, Payload: []byte(payload)})
	if err != nil || out.StatusCode != 202 {
		t.Fatalf("invoke %s: %v", fn, err)
	}
	id, _ := awsmw.GetRequestIDMetadata(out.ResultMetadata)
	return id
}

// record is Lambda's invocation record as the tests read it.
type record struct {
	Version        string `json:"version"`
	Timestamp      string `json:"timestamp"`
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionArn            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	RequestPayload  map[string]any `json:"requestPayload"`
	ResponseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError"`
	} `json:"responseContext"`
	ResponsePayload map[string]any `json:"responsePayload"`
}

func oneRecord(t *testing.T, e *harness.Env, queue string, d time.Duration) record {
	t.Helper()
	ms := receiveAll(t, e, queue, 1, d)
	if len(ms) != 1 {
		t.Fatalf("no invocation record in %s within %v", queue, d)
	}
	var r record
	if err := json.Unmarshal([]byte(ms[0].Body), &r); err != nil {
		t.Fatalf("record %q: %v", ms[0].Body, err)
	}
	return r
}

func eventInvokeOps(t *testing.T, e *harness.Env, role string) {
	ctx := context.Background()
	lc := e.Lambda
	createPy(t, e, "eic-fn", role, okFn, 3)
	createPy(t, e, "eic-norole", e.Role("probe"), okFn, 3)
	q := createQueue(t, e, "eic-q", nil)
	acct := e.Srv.Account.ID
	bad := []struct {
		name string
		in   lambda.PutFunctionEventInvokeConfigInput
		code string
		msg  string
	}{
		{"no function", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("nope")}, "ResourceNotFoundException", ""},
		{"retries", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), MaximumRetryAttempts: aws.Int32(3)}, "ValidationException", "maximumRetryAttempts"},
		{"age low", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), MaximumEventAgeInSeconds: aws.Int32(59)}, "ValidationException", "maximumEventAgeInSeconds"},
		{"age high", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), MaximumEventAgeInSeconds: aws.Int32(21601)}, "ValidationException", "maximumEventAgeInSeconds"},
		{"sns", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:sns:us-east-1:" + acct + ":t")}}}, "InvalidParameterValueException", "SQS queues or Lambda functions"},
		{"role", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-norole"), DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(q)}}}, "InvalidParameterValueException", "does not have permissions to call SendMessage on SQS"},
		{"role lambda", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-norole"), DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:lambda:us-east-1:" + acct + ":function:eic-fn")}}}, "InvalidParameterValueException", "does not have permissions to call InvokeFunction on Lambda"},
		{"no version", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), Qualifier: aws.String("7")}, "ResourceNotFoundException", ""},
	}
	for _, b := range bad {
		_, err := lc.PutFunctionEventInvokeConfig(ctx, &b.in)
		if errCode(err) != b.code || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("%s: got %v, want %s (%s)", b.name, err, b.code, b.msg)
		}
	}
	if _, err := lc.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn")}); errCode(err) != "ResourceNotFoundException" {
		t.Errorf("get before put: %v", err)
	}
	out := put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), MaximumRetryAttempts: aws.Int32(1), MaximumEventAgeInSeconds: aws.Int32(120),
		DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(q)}}})
	if aws.ToString(out.FunctionArn) != "arn:aws:lambda:us-east-1:"+acct+":function:eic-fn:$LATEST" || aws.ToInt32(out.MaximumRetryAttempts) != 1 ||
		aws.ToInt32(out.MaximumEventAgeInSeconds) != 120 || aws.ToString(out.DestinationConfig.OnFailure.Destination) != q || out.LastModified == nil {
		t.Errorf("put: %+v", out)
	}
	up, err := lc.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), MaximumRetryAttempts: aws.Int32(0)})
	if err != nil || aws.ToInt32(up.MaximumRetryAttempts) != 0 || aws.ToInt32(up.MaximumEventAgeInSeconds) != 120 || aws.ToString(up.DestinationConfig.OnFailure.Destination) != q {
		t.Errorf("update: %+v %v", up, err)
	}
	// Put replaces: fields not given are gone.
	out = put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), MaximumEventAgeInSeconds: aws.Int32(300)})
	if out.MaximumRetryAttempts != nil || out.DestinationConfig.OnFailure.Destination != nil {
		t.Errorf("put did not replace: %+v", out)
	}
	l, err := lc.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("eic-fn")})
	if err != nil || len(l.FunctionEventInvokeConfigs) != 1 {
		t.Errorf("list: %+v %v", l, err)
	}
	if _, err := lc.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn")}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn")}); errCode(err) != "ResourceNotFoundException" {
		t.Errorf("get after delete: %v", err)
	}
	if _, err := lc.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), MaximumRetryAttempts: aws.Int32(0)}); errCode(err) != "ResourceNotFoundException" {
		t.Errorf("update after delete: %v", err)
	}
	// A function's configs go with it.
	put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), MaximumRetryAttempts: aws.Int32(0)})
	if _, err := lc.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("eic-fn")}); err != nil {
		t.Fatal(err)
	}
	createPy(t, e, "eic-fn", role, okFn, 3)
	if _, err := lc.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn")}); errCode(err) != "ResourceNotFoundException" {
		t.Errorf("a recreated function has its predecessor's event invoke config: %v", err)
	}
	// An alias's config goes with the alias: one recreated under the same
	// name does not inherit it.
	v, err := lc.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("eic-fn")})
	if err != nil {
		t.Fatal(err)
	}
	alias := func() {
		t.Helper()
		if _, err := lc.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("eic-fn"), Name: aws.String("live"), FunctionVersion: v.Version}); err != nil {
			t.Fatal(err)
		}
	}
	alias()
	put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), Qualifier: aws.String("live"), MaximumRetryAttempts: aws.Int32(0)})
	if _, err := lc.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String("eic-fn"), Name: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	alias()
	if _, err := lc.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("eic-fn"), Qualifier: aws.String("live")}); errCode(err) != "ResourceNotFoundException" {
		t.Errorf("a recreated alias has its predecessor's event invoke config: %v", err)
	}
}

func destinationsScenario(t *testing.T, e *harness.Env, role string) {
	acct := e.Srv.Account.ID
	okQ := createQueue(t, e, "dest-success", nil)
	failQ := createQueue(t, e, "dest-failure", nil)
	createPy(t, e, "dest-ok", role, okFn, 3)
	createPy(t, e, "dest-fail", role, failFn, 3)
	createPy(t, e, "dest-fail0", role, failFn, 3)
	createPy(t, e, "dest-sink", role, sinkFn, 3)
	put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("dest-ok"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(okQ)}, OnFailure: &types.OnFailure{Destination: aws.String(failQ)}}})
	put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("dest-fail"), MaximumRetryAttempts: aws.Int32(1),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(okQ)}, OnFailure: &types.OnFailure{Destination: aws.String(failQ)}}})
	put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("dest-fail0"), MaximumRetryAttempts: aws.Int32(0),
		DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:lambda:us-east-1:" + acct + ":function:dest-sink")}}})

	okID := eventInvoke(t, e, "dest-ok", `{"n":1}`)
	r := oneRecord(t, e, okQ, 30*time.Second)
	if r.Version != "1.0" || r.Timestamp == "" || r.RequestContext.Condition != "Success" || r.RequestContext.RequestID != okID ||
		r.RequestContext.ApproximateInvokeCount != 1 || r.RequestContext.FunctionArn != "arn:aws:lambda:us-east-1:"+acct+":function:dest-ok:$LATEST" ||
		r.RequestPayload["n"] != 1.0 || r.ResponseContext.StatusCode != 200 || r.ResponseContext.ExecutedVersion != "$LATEST" ||
		r.ResponseContext.FunctionError != "" || r.ResponsePayload["ok"] != true {
		t.Errorf("success record: %+v", r)
	}

	failID := eventInvoke(t, e, "dest-fail", `{"n":2}`)
	r = oneRecord(t, e, failQ, 30*time.Second)
	if r.RequestContext.Condition != "RetriesExhausted" || r.RequestContext.RequestID != failID || r.RequestContext.ApproximateInvokeCount != 2 ||
		r.ResponseContext.FunctionError != "Unhandled" || r.ResponsePayload["errorMessage"] != "boom 2" || r.RequestPayload["n"] != 2.0 {
		t.Errorf("failure record: %+v", r)
	}
	if n := strings.Count(logText(t, e, "dest-fail"), "RAN 2"); n != 2 {
		t.Errorf("dest-fail ran %d times, want 2 (MaximumRetryAttempts 1)", n)
	}

	id0 := eventInvoke(t, e, "dest-fail0", `{"n":3}`)
	harness.Eventually(t, 30*time.Second, "the failure record at the sink function", func() bool {
		return strings.Contains(logText(t, e, "dest-sink"), `"requestId": "`+id0+`"`)
	})
	sink := logText(t, e, "dest-sink")
	if !strings.Contains(sink, `"condition": "RetriesExhausted"`) || !strings.Contains(sink, `"approximateInvokeCount": 1`) {
		t.Errorf("sink got: %s", sink)
	}
	if n := strings.Count(logText(t, e, "dest-fail0"), "RAN 3"); n != 1 {
		t.Errorf("dest-fail0 ran %d times, want 1 (MaximumRetryAttempts 0)", n)
	}
	if depth(t, e, okQ) != 0 || depth(t, e, failQ) != 0 {
		t.Error("extra records in the destination queues")
	}
}

func deadLetterScenario(t *testing.T, e *harness.Env, role string) {
	ctx := context.Background()
	dlq := createQueue(t, e, "fn-dlq", nil)
	// The role must be allowed to send to it.
	_, err := e.Lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("dlq-norole"), Runtime: types.RuntimePython311, Handler: aws.String("app.handler"),
		Role: aws.String(e.Role("probe")), Code: &types.FunctionCode{ZipFile: pyZip(t, failFn)}, DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(dlq)}})
	if errCode(err) != "InvalidParameterValueException" || !strings.Contains(err.Error(), "SendMessage on SQS") {
		t.Errorf("dead-letter queue without sqs:SendMessage: %v", err)
	}
	_, err = e.Lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("dlq-sns"), Runtime: types.RuntimePython311, Handler: aws.String("app.handler"),
		Role: aws.String(role), Code: &types.FunctionCode{ZipFile: pyZip(t, failFn)}, DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:sns:us-east-1:" + e.Srv.Account.ID + ":t")}})
	if errCode(err) != "InvalidParameterValueException" {
		t.Errorf("an SNS dead-letter target: %v", err)
	}
	e.CreateFunction("dlq-fn", "python3.11", "app.handler", pyZip(t, failFn), func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String(role)
		in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String(dlq)}
	})
	cfg, err := e.Lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("dlq-fn")})
	if err != nil || cfg.DeadLetterConfig == nil || aws.ToString(cfg.DeadLetterConfig.TargetArn) != dlq {
		t.Fatalf("configuration: %+v %v", cfg.DeadLetterConfig, err)
	}
	put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("dlq-fn"), MaximumRetryAttempts: aws.Int32(0)})
	id := eventInvoke(t, e, "dlq-fn", `{"n":9}`)
	ms := receiveAll(t, e, dlq, 1, 30*time.Second)
	if len(ms) != 1 {
		t.Fatal("no dead-letter message")
	}
	m := ms[0]
	if m.Body != `{"n":9}` || m.MessageAttributes["RequestID"].StringValue != id || m.MessageAttributes["ErrorCode"].DataType != "Number" ||
		!strings.Contains(m.MessageAttributes["ErrorMessage"].StringValue, "boom 9") {
		t.Errorf("dead-letter message: %+v", m)
	}
	// Removed with an empty TargetArn.
	up, err := e.Lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("dlq-fn"), DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("")}})
	if err != nil || (up.DeadLetterConfig != nil && aws.ToString(up.DeadLetterConfig.TargetArn) != "") {
		t.Errorf("remove the dead-letter queue: %+v %v", up.DeadLetterConfig, err)
	}
}

func eventAgeScenario(t *testing.T, e *harness.Env, role string) {
	ctx := context.Background()
	failQ := createQueue(t, e, "age-failure", nil)
	createPy(t, e, "age-fn", role, okFn, 3)
	// Reserved concurrency 0: every attempt is throttled, so the event
	// waits in the queue until it is too old.
	if _, err := e.Lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("age-fn"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	put(t, e, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("age-fn"), MaximumEventAgeInSeconds: aws.Int32(60),
		DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(failQ)}}})
	id := eventInvoke(t, e, "age-fn", `{"n":5}`)
	r := oneRecord(t, e, failQ, 90*time.Second)
	if r.RequestContext.Condition != "EventAgeExceeded" || r.RequestContext.RequestID != id || r.RequestPayload["n"] != 5.0 {
		t.Errorf("event age record: %+v", r)
	}
	if strings.Contains(logText(t, e, "age-fn"), "RAN 5") {
		t.Error("a throttled function ran")
	}
}
