package lambdamore

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
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
)

// sqsLoopPy sends each message it gets back to its own queue with boto3
// (through AWS_ENDPOINT_URL, with its role's credentials; boto3 passes
// _X_AMZN_TRACE_ID on as X-Amzn-Trace-Id, which SQS keeps as the message's
// AWSTraceHeader) until the message's count reaches its limit.
const sqsLoopPy = `import os, json, boto3
sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
def handler(event, context):
    url = sqs.get_queue_url(QueueName=os.environ["QUEUE"])["QueueUrl"]
    for r in event["Records"]:
        b = json.loads(r["body"])
        print("sqs-hop", b["tag"], b["n"], r["attributes"].get("AWSTraceHeader", ""))
        if b["n"] < b["limit"]:
            b["n"] += 1
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(b))
`

// destLoopPy only prints; its OnSuccess destination is the function
// itself, so each invocation record invokes it again.
const destLoopPy = `import os
def handler(event, context):
    print("dest-hop", os.environ.get("_X_AMZN_TRACE_ID", ""))
    return {"ok": True}
`

// dropped is the function's RecursiveInvocationsDropped count on /metrics.
func dropped(t *testing.T, e *harness.Env, fn string) float64 {
	t.Helper()
	return harness.MetricValue(harness.ScrapeMetrics(t, e.Srv.MetricsEndpoint), invoke.MetricRecursionDropped, map[string]string{"function": fn})
}

const loopRolePolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:*","lambda:InvokeFunction","logs:*"],"Resource":"*"}]}`

// TestRecursiveLoopSQS: a function whose queue mapping invokes it and
// that sends to that queue from inside (boto3 with its role credentials)
// is stopped after 16 invocations of one chain with RecursiveLoop
// Terminate: the 17th batch is not invoked and reaches the queue's
// dead-letter queue; with Allow the chain runs to its own end (bounded).
func TestRecursiveLoopSQS(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	sc := sqs.NewFromConfig(e.AWSConfig())
	role := makeRole(t, e, "sqslooper", loopRolePolicy)

	dlq, err := sc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("loop-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	dlqAttrs, err := sc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("loopq"), Attributes: map[string]string{
		"VisibilityTimeout": "5",
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"1"}`, dlqAttrs.Attributes["QueueArn"]),
	}})
	if err != nil {
		t.Fatal(err)
	}
	qa, err := sc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		t.Fatal(err)
	}
	e.CreateFunction("sqsloop", "python3.11", "app.handler", harness.Zip(t, map[string]string{"app.py": sqsLoopPy}), func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String(role)
		in.Timeout = aws.Int32(5)
		in.MemorySize = aws.Int32(256)
		in.Environment = &types.Environment{Variables: map[string]string{"QUEUE": "loopq"}}
	})
	if _, err := e.Lambda.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("sqsloop"),
		EventSourceArn: aws.String(qa.Attributes["QueueArn"]), BatchSize: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	send := func(tag string, limit int) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"tag": tag, "n": 1, "limit": limit})
		if _, err := sc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(string(body))}); err != nil {
			t.Fatal(err)
		}
	}

	// Terminate (the default): 16 invocations, then the message goes to
	// the dead-letter queue. The function would go on to 40.
	start := time.Now()
	send("term", 40)
	harness.Eventually(t, 90*time.Second, "16 hops through the queue", func() bool { return countLog(t, e, "sqsloop", "sqs-hop term") >= 16 })
	var got []sqstypes.Message
	harness.Eventually(t, 30*time.Second, "the stopped message in the dead-letter queue", func() bool {
		out, err := sc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{"AWSTraceHeader"}})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out.Messages...)
		return len(got) > 0
	})
	if n := countLog(t, e, "sqsloop", "sqs-hop term"); n != 16 {
		t.Fatalf("the SQS loop ran %d times, want 16", n)
	}
	var b struct {
		Tag string
		N   int
	}
	if err := json.Unmarshal([]byte(aws.ToString(got[0].Body)), &b); err != nil || b.Tag != "term" || b.N != 17 {
		t.Fatalf("dead-letter message %q (%v), want the 17th hop", aws.ToString(got[0].Body), err)
	}
	if tr := got[0].Attributes["AWSTraceHeader"]; !strings.Contains(tr, "Lineage=") || !strings.Contains(tr, ":16") {
		t.Fatalf("the dead-letter message's AWSTraceHeader %q carries no lineage at 16", tr)
	}
	if n := dropped(t, e, "sqsloop"); n < 1 {
		t.Fatalf("%s{function=sqsloop} = %v after the stop", invoke.MetricRecursionDropped, n)
	}
	t.Logf("Terminate: 16 hops and the dead-letter message in %v", time.Since(start).Round(time.Millisecond))

	// Allow: the chain runs to its own end (30 hops).
	if _, err := e.Lambda.PutFunctionRecursionConfig(ctx, &lambda.PutFunctionRecursionConfigInput{FunctionName: aws.String("sqsloop"), RecursiveLoop: types.RecursiveLoopAllow}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	send("allow", 30)
	harness.Eventually(t, 120*time.Second, "30 hops with Allow", func() bool { return countLog(t, e, "sqsloop", "sqs-hop allow") >= 30 })
	time.Sleep(2 * time.Second)
	if n := countLog(t, e, "sqsloop", "sqs-hop allow"); n != 30 {
		t.Fatalf("the allowed loop ran %d times, want 30", n)
	}
	t.Logf("Allow: 30 hops in %v", time.Since(start).Round(time.Millisecond))
}

// TestRecursiveLoopDestination: a function whose OnSuccess destination is
// itself is stopped after 16 invocations (Terminate); the stopped event's
// invocation record goes to its OnFailure destination (a queue).
func TestRecursiveLoopDestination(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	sc := sqs.NewFromConfig(e.AWSConfig())
	role := makeRole(t, e, "destlooper", loopRolePolicy)
	fq, err := sc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("destfail")})
	if err != nil {
		t.Fatal(err)
	}
	fa, err := sc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: fq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		t.Fatal(err)
	}
	e.CreateFunction("destloop", "python3.11", "app.handler", harness.Zip(t, map[string]string{"app.py": destLoopPy}), func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String(role)
	})
	fn, err := e.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("destloop")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lambda.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("destloop"),
		DestinationConfig: &types.DestinationConfig{
			OnSuccess: &types.OnSuccess{Destination: fn.Configuration.FunctionArn},
			OnFailure: &types.OnFailure{Destination: aws.String(fa.Attributes["QueueArn"])},
		}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("destloop"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, "16 hops through the destination", func() bool { return countLog(t, e, "destloop", "dest-hop") >= 16 })
	var msgs []sqstypes.Message
	harness.Eventually(t, 30*time.Second, "the stopped event's record in the OnFailure queue", func() bool {
		out, err := sc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: fq.QueueUrl, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, out.Messages...)
		return len(msgs) > 0
	})
	time.Sleep(time.Second)
	if n := countLog(t, e, "destloop", "dest-hop"); n != 16 {
		t.Fatalf("the destination loop ran %d times, want 16", n)
	}
	if n := dropped(t, e, "destloop"); n != 1 {
		t.Fatalf("%s{function=destloop} = %v, want 1", invoke.MetricRecursionDropped, n)
	}
	var rec struct {
		RequestContext struct {
			FunctionArn string `json:"functionArn"`
			Condition   string `json:"condition"`
		} `json:"requestContext"`
		RequestPayload struct {
			RequestContext struct {
				Condition string `json:"condition"`
			} `json:"requestContext"`
		} `json:"requestPayload"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(msgs[0].Body)), &rec); err != nil || !strings.Contains(rec.RequestContext.FunctionArn, ":function:destloop") ||
		rec.RequestContext.Condition != "RetriesExhausted" || rec.RequestPayload.RequestContext.Condition != "Success" {
		t.Fatalf("OnFailure record %s (%v)", aws.ToString(msgs[0].Body), err)
	}
}
