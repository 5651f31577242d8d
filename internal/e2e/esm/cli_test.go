package esm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// cliExample is the README's "Queues and triggers" walk-through, from
// Debian's AWS CLI.
func cliExample(t *testing.T, e *harness.Env) {
	dir := t.TempDir()
	code := `import json
def handler(event, context):
    for r in event["Records"]:
        print("order", json.loads(r["body"])["order"], "from", r["eventSourceARN"])
    return {"handled": len(event["Records"])}
`
	zipPath := filepath.Join(dir, "fn.zip")
	if err := os.WriteFile(zipPath, pyZip(t, code), 0o644); err != nil {
		t.Fatal(err)
	}
	var role struct{ Role struct{ Arn string } }
	e.MustCLI(&role, "iam", "create-role", "--role-name", "orders-role", "--assume-role-policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)
	e.MustCLI(nil, "iam", "attach-role-policy", "--role-name", "orders-role", "--policy-arn", "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole")
	e.MustCLI(nil, "iam", "put-role-policy", "--role-name", "orders-role", "--policy-name", "destinations", "--policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"*"}]}`)

	var q struct{ QueueUrl string }
	e.MustCLI(&q, "sqs", "create-queue", "--queue-name", "orders")
	var attrs struct{ Attributes map[string]string }
	e.MustCLI(&attrs, "sqs", "get-queue-attributes", "--queue-url", q.QueueUrl, "--attribute-names", "QueueArn")
	arn := attrs.Attributes["QueueArn"]
	e.MustCLI(nil, "lambda", "create-function", "--function-name", "orders-fn", "--runtime", "python3.11", "--handler", "app.handler",
		"--role", role.Role.Arn, "--zip-file", "fileb://"+zipPath)

	// More than 10 messages a batch need a batching window, as on AWS.
	_, stderr, rc := e.CLI("lambda", "create-event-source-mapping", "--function-name", "orders-fn", "--event-source-arn", arn, "--batch-size", "20")
	if rc == 0 || !strings.Contains(stderr, "InvalidParameterValueException") || !strings.Contains(stderr, "Maximum batch window") {
		t.Errorf("batch size 20 without a window: rc %d %s", rc, stderr)
	}
	var m struct{ UUID, State string }
	e.MustCLI(&m, "lambda", "create-event-source-mapping", "--function-name", "orders-fn", "--event-source-arn", arn, "--batch-size", "10")
	if m.State != "Creating" {
		t.Errorf("created in state %s", m.State)
	}
	harness.Eventually(t, 10*time.Second, "mapping Enabled", func() bool {
		var g struct{ State string }
		e.MustCLI(&g, "lambda", "get-event-source-mapping", "--uuid", m.UUID)
		return g.State == "Enabled"
	})
	var sent struct{ MessageId string }
	e.MustCLI(&sent, "sqs", "send-message", "--queue-url", q.QueueUrl, "--message-body", `{"order": 42}`)
	harness.Eventually(t, 30*time.Second, "the function's log line", func() bool {
		return strings.Contains(logText(t, e, "orders-fn"), "order 42 from "+arn)
	})
	var l struct{ EventSourceMappings []struct{ UUID string } }
	e.MustCLI(&l, "lambda", "list-event-source-mappings", "--function-name", "orders-fn")
	if len(l.EventSourceMappings) != 1 || l.EventSourceMappings[0].UUID != m.UUID {
		t.Errorf("list: %+v", l)
	}

	// An async invoke's outcome to a queue.
	var done struct{ QueueUrl string }
	e.MustCLI(&done, "sqs", "create-queue", "--queue-name", "orders-done")
	e.MustCLI(&attrs, "sqs", "get-queue-attributes", "--queue-url", done.QueueUrl, "--attribute-names", "QueueArn")
	e.MustCLI(nil, "lambda", "put-function-event-invoke-config", "--function-name", "orders-fn", "--maximum-retry-attempts", "0",
		"--destination-config", `{"OnSuccess":{"Destination":"`+attrs.Attributes["QueueArn"]+`"}}`)
	_, stderr, rc = e.CLI("lambda", "put-function-event-invoke-config", "--function-name", "orders-fn", "--maximum-retry-attempts", "3")
	if rc == 0 || !strings.Contains(stderr, "ValidationException") || !strings.Contains(stderr, "maximumRetryAttempts") {
		t.Errorf("3 retries: rc %d %s", rc, stderr)
	}
	out := filepath.Join(dir, "out.json")
	e.MustCLI(nil, "lambda", "invoke", "--function-name", "orders-fn", "--invocation-type", "Event",
		"--cli-binary-format", "raw-in-base64-out", "--payload", `{"Records":[{"body":"{\"order\": 7}","eventSourceARN":"cli"}]}`, out)
	var rm struct{ Messages []struct{ Body string } }
	harness.Eventually(t, 30*time.Second, "the invocation record", func() bool {
		e.MustCLI(&rm, "sqs", "receive-message", "--queue-url", done.QueueUrl, "--wait-time-seconds", "2")
		return len(rm.Messages) == 1
	})
	var rec struct {
		RequestContext  struct{ Condition string } `json:"requestContext"`
		ResponsePayload struct{ Handled int }      `json:"responsePayload"`
	}
	if err := json.Unmarshal([]byte(rm.Messages[0].Body), &rec); err != nil || rec.RequestContext.Condition != "Success" || rec.ResponsePayload.Handled != 1 {
		t.Errorf("record %s: %v", rm.Messages[0].Body, err)
	}
	var del struct{ State string }
	e.MustCLI(&del, "lambda", "delete-event-source-mapping", "--uuid", m.UUID)
	if del.State != "Deleting" {
		t.Errorf("deleted in state %s", del.State)
	}
	e.MustCLI(nil, "lambda", "delete-function-event-invoke-config", "--function-name", "orders-fn")
}

// boto3Example drives the mapping and event invoke config operations and
// their errors from boto3.
func boto3Example(t *testing.T, e *harness.Env, role string) {
	createPy(t, e, "boto-fn", role, printer, 3)
	arn := createQueue(t, e, "boto-q", nil)
	out := e.Python(`
import os, boto3, botocore
lc = boto3.client("lambda", endpoint_url=os.environ["LP_ENDPOINT"])
def code(f):
    try:
        f()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "ok"
arn = os.environ["QUEUE"]
print("nofn", code(lambda: lc.create_event_source_mapping(EventSourceArn=arn, FunctionName="nope")))
print("batch", code(lambda: lc.create_event_source_mapping(EventSourceArn=arn, FunctionName="boto-fn", BatchSize=11)))
m = lc.create_event_source_mapping(EventSourceArn=arn, FunctionName="boto-fn", BatchSize=5,
    FilterCriteria={"Filters": [{"Pattern": '{"body": {"x": [{"exists": true}]}}'}]})
print("state", m["State"], m["BatchSize"], m["FilterCriteria"]["Filters"][0]["Pattern"])
print("get", lc.get_event_source_mapping(UUID=m["UUID"])["UUID"] == m["UUID"])
print("list", len(lc.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]))
print("badget", code(lambda: lc.get_event_source_mapping(UUID="00000000-0000-0000-0000-000000000000")))
c = lc.put_function_event_invoke_config(FunctionName="boto-fn", MaximumRetryAttempts=2, MaximumEventAgeInSeconds=3600)
print("eic", c["MaximumRetryAttempts"], c["MaximumEventAgeInSeconds"], c["FunctionArn"].endswith(":boto-fn:$LATEST"))
print("eicbad", code(lambda: lc.update_function_event_invoke_config(FunctionName="boto-fn", MaximumRetryAttempts=5)))
print("eiclist", len(lc.list_function_event_invoke_configs(FunctionName="boto-fn")["FunctionEventInvokeConfigs"]))
lc.delete_function_event_invoke_config(FunctionName="boto-fn")
print("eicgone", code(lambda: lc.get_function_event_invoke_config(FunctionName="boto-fn")))
print("del", lc.delete_event_source_mapping(UUID=m["UUID"])["State"])
`, "QUEUE="+arn)
	for _, want := range []string{"nofn ResourceNotFoundException", "batch InvalidParameterValueException", `state Creating 5 {"body": {"x": [{"exists": true}]}}`,
		"get True", "list 1", "badget ResourceNotFoundException", "eic 2 3600 True", "eicbad ValidationException", "eiclist 1",
		"eicgone ResourceNotFoundException", "del Deleting"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("boto3: want %q in:\n%s", want, out)
		}
	}
}
