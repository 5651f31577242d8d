package sqs_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// cliFails runs the CLI expecting a failure whose message names code.
func cliFails(t *testing.T, e *harness.Env, code string, args ...string) {
	t.Helper()
	_, stderr, rc := e.CLI(args...)
	if rc == 0 || !strings.Contains(stderr, code) {
		t.Fatalf("aws %s: exit %d, want %s: %s", strings.Join(args, " "), rc, code, stderr)
	}
}

// TestCLI: the operations from /usr/bin/aws (the Query protocol; botocore
// checks the MD5s of what it sends and receives) and errors; TestBoto3
// covers the rest of the Query protocol in one process (each aws run
// costs a Python start).
func TestCLI(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	var cq struct{ QueueUrl string }
	e.MustCLI(&cq, "sqs", "create-queue", "--queue-name", "cli-q", "--attributes", "VisibilityTimeout=20", "--tags", "team=x")
	url := cq.QueueUrl
	if !strings.HasSuffix(url, "/"+e.Srv.Account.ID+"/cli-q") {
		t.Fatalf("queue URL %s", url)
	}
	var dq struct{ QueueUrl string }
	e.MustCLI(&dq, "sqs", "create-queue", "--queue-name", "cli-dlq")
	cliFails(t, e, "AWS.SimpleQueueService.NonExistentQueue", "sqs", "get-queue-url", "--queue-name", "nope")
	var gu struct{ QueueUrl string }
	e.MustCLI(&gu, "sqs", "get-queue-url", "--queue-name", "cli-q")
	if gu.QueueUrl != url {
		t.Fatalf("get-queue-url %s", gu.QueueUrl)
	}
	var sm struct{ MessageId, MD5OfMessageBody, MD5OfMessageAttributes string }
	e.MustCLI(&sm, "sqs", "send-message", "--queue-url", url, "--message-body", "hi from the cli",
		"--message-attributes", `{"a":{"DataType":"String","StringValue":"v"},"b":{"DataType":"Binary","BinaryValue":"AAEC"}}`)
	if sm.MessageId == "" || sm.MD5OfMessageAttributes == "" {
		t.Fatalf("send-message %+v", sm)
	}
	var sb struct{ Successful, Failed []map[string]any }
	e.MustCLI(&sb, "sqs", "send-message-batch", "--queue-url", url, "--entries", `[{"Id":"1","MessageBody":"one"},{"Id":"2","MessageBody":"two","DelaySeconds":0}]`)
	if len(sb.Successful) != 2 {
		t.Fatalf("send-message-batch %+v", sb)
	}
	cliFails(t, e, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "sqs", "send-message-batch", "--queue-url", url, "--entries", `[{"Id":"1","MessageBody":"one"},{"Id":"1","MessageBody":"two"}]`)
	type msg struct {
		MessageId, ReceiptHandle, Body string
		Attributes                     map[string]string
		MessageAttributes              map[string]json.RawMessage
	}
	var got []msg
	for i := 0; i < 10 && len(got) < 3; i++ {
		var rm struct{ Messages []msg }
		e.MustCLI(&rm, "sqs", "receive-message", "--queue-url", url, "--max-number-of-messages", "10", "--attribute-names", "All",
			"--message-attribute-names", "All", "--wait-time-seconds", "1")
		got = append(got, rm.Messages...)
	}
	if len(got) != 3 {
		t.Fatalf("received %d of 3", len(got))
	}
	var first msg
	for _, m := range got {
		if m.MessageId == sm.MessageId {
			first = m
		}
	}
	if first.Body != "hi from the cli" || len(first.MessageAttributes) != 2 || first.Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("message %+v", first)
	}
	e.MustCLI(nil, "sqs", "change-message-visibility", "--queue-url", url, "--receipt-handle", got[1].ReceiptHandle, "--visibility-timeout", "60")
	e.MustCLI(nil, "sqs", "delete-message", "--queue-url", url, "--receipt-handle", first.ReceiptHandle)
	cliFails(t, e, "ReceiptHandleIsInvalid", "sqs", "delete-message", "--queue-url", url, "--receipt-handle", "nonsense")
	cliFails(t, e, "AWS.SimpleQueueService.MessageNotInflight", "sqs", "change-message-visibility", "--queue-url", url, "--receipt-handle", first.ReceiptHandle, "--visibility-timeout", "5")
	var db struct{ Successful, Failed []map[string]any }
	e.MustCLI(&db, "sqs", "delete-message-batch", "--queue-url", url, "--entries",
		`[{"Id":"a","ReceiptHandle":"`+got[1].ReceiptHandle+`"},{"Id":"b","ReceiptHandle":"`+got[2].ReceiptHandle+`"}]`)
	if len(db.Successful) != 2 {
		t.Fatalf("delete-message-batch %+v", db)
	}
	dlqARN := "arn:aws:sqs:us-east-1:" + e.Srv.Account.ID + ":cli-dlq"
	e.MustCLI(nil, "sqs", "set-queue-attributes", "--queue-url", url, "--attributes",
		`{"DelaySeconds":"1","RedrivePolicy":"{\"deadLetterTargetArn\":\"`+dlqARN+`\",\"maxReceiveCount\":\"3\"}"}`)
	var ga struct{ Attributes map[string]string }
	e.MustCLI(&ga, "sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "All")
	if ga.Attributes["DelaySeconds"] != "1" || ga.Attributes["VisibilityTimeout"] != "20" || !strings.Contains(ga.Attributes["RedrivePolicy"], dlqARN) || ga.Attributes["QueueArn"] == "" {
		t.Fatalf("attributes %v", ga.Attributes)
	}
	var ds struct{ QueueUrls []string }
	e.MustCLI(&ds, "sqs", "list-dead-letter-source-queues", "--queue-url", dq.QueueUrl)
	if len(ds.QueueUrls) != 1 || ds.QueueUrls[0] != url {
		t.Fatalf("list-dead-letter-source-queues %v", ds.QueueUrls)
	}
	e.MustCLI(nil, "sqs", "tag-queue", "--queue-url", url, "--tags", "env=dev,owner=me")
	var tags struct{ Tags map[string]string }
	e.MustCLI(&tags, "sqs", "list-queue-tags", "--queue-url", url)
	if len(tags.Tags) != 3 || tags.Tags["team"] != "x" || tags.Tags["env"] != "dev" {
		t.Fatalf("tags %v", tags.Tags)
	}
	e.MustCLI(nil, "sqs", "purge-queue", "--queue-url", url)
	e.MustCLI(nil, "sqs", "delete-queue", "--queue-url", url)
	cliFails(t, e, "AWS.SimpleQueueService.NonExistentQueue", "sqs", "send-message", "--queue-url", url, "--message-body", "x")
	cliFails(t, e, "AWS.SimpleQueueService.QueueDeletedRecently", "sqs", "create-queue", "--queue-name", "cli-q")
}

// TestBoto3: boto3 (Query protocol) with a FIFO queue: order, dedup, the
// modeled exceptions, and a long poll woken by a send.
func TestBoto3(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	out := e.Python(`
import boto3, os, threading, time
c = boto3.client("sqs", endpoint_url=os.environ["LP_ENDPOINT"], region_name="us-east-1")
u = c.create_queue(QueueName="py.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
ids = [c.send_message(QueueUrl=u, MessageBody="m%d" % i, MessageGroupId="g")["MessageId"] for i in range(5)]
dup = c.send_message(QueueUrl=u, MessageBody="m0", MessageGroupId="g")["MessageId"]
assert dup == ids[0], (dup, ids[0])
bodies = []
for _ in range(10):
    r = c.receive_message(QueueUrl=u, MaxNumberOfMessages=2, AttributeNames=["All"])
    ms = r.get("Messages", [])
    if not ms:
        break
    again = c.receive_message(QueueUrl=u, MaxNumberOfMessages=10).get("Messages", [])
    assert not again, "group delivered while in flight"
    for m in ms:
        assert m["Attributes"]["MessageGroupId"] == "g"
        bodies.append(m["Body"])
        c.delete_message(QueueUrl=u, ReceiptHandle=m["ReceiptHandle"])
assert bodies == ["m%d" % i for i in range(5)], bodies
try:
    c.get_queue_url(QueueName="missing")
    raise SystemExit("no error")
except c.exceptions.QueueDoesNotExist as ex:
    assert ex.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
try:
    c.send_message(QueueUrl=u, MessageBody="x")
    raise SystemExit("no error")
except c.exceptions.ClientError as ex:
    assert ex.response["Error"]["Code"] == "MissingParameter", ex.response
s = c.create_queue(QueueName="py-std", tags={"a": "1"})["QueueUrl"]
def code(f):
    try:
        f()
    except c.exceptions.ClientError as ex:
        return ex.response["Error"]["Code"]
    return "no error"
assert code(lambda: c.create_queue(QueueName="py-std", Attributes={"VisibilityTimeout": "21"})) == "QueueAlreadyExists"
assert code(lambda: c.create_queue(QueueName="no spaces")) == "InvalidParameterValue"
assert code(lambda: c.receive_message(QueueUrl=s, MaxNumberOfMessages=11)) == "InvalidParameterValue"
assert code(lambda: c.set_queue_attributes(QueueUrl=s, Attributes={"VisibilityTimeout": "43201"})) == "InvalidAttributeValue"
assert code(lambda: c.set_queue_attributes(QueueUrl=s, Attributes={"Nope": "1"})) == "InvalidAttributeName"
assert code(lambda: c.send_message_batch(QueueUrl=s, Entries=[])) == "AWS.SimpleQueueService.EmptyBatchRequest"
assert code(lambda: c.send_message_batch(QueueUrl=s, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)])) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
assert code(lambda: c.send_message_batch(QueueUrl=s, Entries=[{"Id": "a b", "MessageBody": "x"}])) == "AWS.SimpleQueueService.InvalidBatchEntryId"
assert code(lambda: c.delete_message(QueueUrl=s, ReceiptHandle="x")) == "ReceiptHandleIsInvalid"
assert code(lambda: c.purge_queue(QueueUrl=s + "-gone")) == "AWS.SimpleQueueService.NonExistentQueue"
cb = c.change_message_visibility_batch(QueueUrl=s, Entries=[{"Id": "a", "ReceiptHandle": "x", "VisibilityTimeout": 3}])
assert cb["Failed"][0]["Code"] == "ReceiptHandleIsInvalid", cb
names = c.list_queues(QueueNamePrefix="py")["QueueUrls"]
assert sorted(n.rsplit("/", 1)[1] for n in names) == ["py-std", "py.fifo"], names
page = c.list_queues(MaxResults=1)
assert len(page["QueueUrls"]) == 1 and "NextToken" in page, page
c.tag_queue(QueueUrl=s, Tags={"b": "2"})
c.untag_queue(QueueUrl=s, TagKeys=["a"])
assert c.list_queue_tags(QueueUrl=s)["Tags"] == {"b": "2"}
attrs = c.get_queue_attributes(QueueUrl=u, AttributeNames=["All"])["Attributes"]
assert attrs["FifoQueue"] == "true" and attrs["ContentBasedDeduplication"] == "true", attrs
def later():
    time.sleep(0.5)
    c.send_message(QueueUrl=s, MessageBody="wake", MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
threading.Thread(target=later).start()
t0 = time.time()
r = c.receive_message(QueueUrl=s, WaitTimeSeconds=10, MessageAttributeNames=["All"])
took = time.time() - t0
assert len(r["Messages"]) == 1 and r["Messages"][0]["MessageAttributes"]["k"]["StringValue"] == "v", r
assert took < 5, took
print("ok %.3f" % took)
`)
	if !strings.HasPrefix(strings.TrimSpace(out), "ok ") {
		t.Fatalf("boto3: %s", out)
	}
	t.Logf("boto3 long poll (send after 0.5 s): %s", strings.TrimSpace(out))
}
