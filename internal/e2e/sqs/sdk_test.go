package sqs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return fmt.Sprint(err)
}

func client(e *harness.Env) *sqs.Client { return sqs.NewFromConfig(e.AWSConfig()) }

// TestSDKQueues: the JSON protocol, queue operations and their errors.
func TestSDKQueues(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	c := client(e)
	ctx := context.Background()
	cq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("orders"),
		Attributes: map[string]string{"VisibilityTimeout": "45"}, Tags: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	url := *cq.QueueUrl
	if want := e.Srv.Endpoint + "/" + e.Srv.Account.ID + "/orders"; url != want {
		t.Fatalf("queue URL %s, want %s", url, want)
	}
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("orders"), Attributes: map[string]string{"VisibilityTimeout": "45"}}); err != nil {
		t.Fatalf("idempotent create: %v", err)
	}
	_, err = c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("orders"), Attributes: map[string]string{"VisibilityTimeout": "46"}})
	var exists *types.QueueNameExists
	if !errors.As(err, &exists) || code(err) != "QueueAlreadyExists" {
		t.Fatalf("create with other attributes: %v", err)
	}
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("bad/name")}); code(err) != "InvalidParameterValue" {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("x.fifo")}); code(err) != "InvalidParameterValue" {
		t.Fatalf(".fifo without FifoQueue: %v", err)
	}
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("x"), Attributes: map[string]string{"DelaySeconds": "901"}}); code(err) != "InvalidAttributeValue" {
		t.Fatalf("DelaySeconds 901: %v", err)
	}
	_, err = c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	var dne *types.QueueDoesNotExist
	if !errors.As(err, &dne) {
		t.Fatalf("GetQueueUrl of a missing queue: %v", err)
	}
	gu, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("orders")})
	if err != nil || *gu.QueueUrl != url {
		t.Fatalf("GetQueueUrl: %v %v", gu, err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("page-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	var tok *string
	for pages := 0; pages < 10; pages++ {
		l, err := c.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("page-"), MaxResults: aws.Int32(2), NextToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, l.QueueUrls...)
		if tok = l.NextToken; tok == nil {
			break
		}
	}
	if len(all) != 5 {
		t.Fatalf("paged ListQueues: %v", all)
	}
	ga, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []types.QueueAttributeName{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	if ga.Attributes["VisibilityTimeout"] != "45" || ga.Attributes["QueueArn"] != "arn:aws:sqs:us-east-1:"+e.Srv.Account.ID+":orders" || ga.Attributes["ApproximateNumberOfMessages"] != "0" || ga.Attributes["CreatedTimestamp"] == "" {
		t.Fatalf("attributes: %v", ga.Attributes)
	}
	if _, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{"MessageRetentionPeriod": "30"}}); code(err) != "InvalidAttributeValue" {
		t.Fatalf("retention 30: %v", err)
	}
	if _, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{"Bogus": "1"}}); code(err) != "InvalidAttributeName" {
		t.Fatalf("unknown attribute: %v", err)
	}
	if _, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{"DelaySeconds": "2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: &url, Tags: map[string]string{"env": "dev"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UntagQueue(ctx, &sqs.UntagQueueInput{QueueUrl: &url, TagKeys: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	tags, err := c.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: &url})
	if err != nil || len(tags.Tags) != 1 || tags.Tags["env"] != "dev" {
		t.Fatalf("tags: %v %v", tags, err)
	}
	if _, err := c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: &url}); code(err) != "AWS.SimpleQueueService.PurgeQueueInProgress" {
		t.Fatalf("second purge: %v", err)
	}
	if _, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &url}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("x")}); !errors.As(err, &dne) || code(err) != "AWS.SimpleQueueService.NonExistentQueue" {
		t.Fatalf("send to a deleted queue: %v", err)
	}
	// The name is taken again only 60 s after the delete.
	var recent *types.QueueDeletedRecently
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("orders")}); !errors.As(err, &recent) || code(err) != "AWS.SimpleQueueService.QueueDeletedRecently" {
		t.Fatalf("create a queue deleted a moment ago: %v", err)
	}
}

// TestSDKMessages: sends with attributes (the SDK checks every MD5),
// batches and their errors, long polling, visibility and redrive.
func TestSDKMessages(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	c := client(e)
	ctx := context.Background()
	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("dlq")})
	if err != nil {
		t.Fatal(err)
	}
	dlqARN := "arn:aws:sqs:us-east-1:" + e.Srv.Account.ID + ":dlq"
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":2}`}})
	if err != nil {
		t.Fatal(err)
	}
	url := *q.QueueUrl
	sm, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("hello ünïcode"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"color": {DataType: aws.String("String"), StringValue: aws.String("blue")},
			"n":     {DataType: aws.String("Number"), StringValue: aws.String("42")},
			"blob":  {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2}},
			"app.x": {DataType: aws.String("String.custom"), StringValue: aws.String("y")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 1,
		MessageAttributeNames: []string{"All"}, MessageSystemAttributeNames: []types.MessageSystemAttributeName{"All"}})
	if err != nil || len(r.Messages) != 1 {
		t.Fatalf("receive: %v %v", r, err)
	}
	m := r.Messages[0]
	if *m.MessageId != *sm.MessageId || *m.Body != "hello ünïcode" || len(m.MessageAttributes) != 4 || m.Attributes["ApproximateReceiveCount"] != "1" || m.Attributes["SenderId"] == "" || m.Attributes["SentTimestamp"] == "" {
		t.Fatalf("message: %+v", m)
	}
	// Prefix selection.
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	r, err = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 2, MessageAttributeNames: []string{"app.*"}})
	if err != nil || len(r.Messages) != 1 || len(r.Messages[0].MessageAttributes) != 1 {
		t.Fatalf("prefix receive: %+v %v", r, err)
	}
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: r.Messages[0].ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	// Third receive exceeds maxReceiveCount 2: the message moves to the DLQ.
	r, err = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
	if err != nil || len(r.Messages) != 0 {
		t.Fatalf("third receive: %+v %v", r, err)
	}
	d, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 5})
	if err != nil || len(d.Messages) != 1 || *d.Messages[0].MessageId != *sm.MessageId {
		t.Fatalf("dead-letter queue: %+v %v", d, err)
	}
	src, err := c.ListDeadLetterSourceQueues(ctx, &sqs.ListDeadLetterSourceQueuesInput{QueueUrl: dlq.QueueUrl})
	if err != nil || len(src.QueueUrls) != 1 || src.QueueUrls[0] != url {
		t.Fatalf("dead-letter sources: %+v %v", src, err)
	}

	// Batches.
	var entries []types.SendMessageBatchRequestEntry
	for i := 0; i < 10; i++ {
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint("e", i)), MessageBody: aws.String(fmt.Sprint("b", i)),
			MessageAttributes: map[string]types.MessageAttributeValue{"i": {DataType: aws.String("Number"), StringValue: aws.String(fmt.Sprint(i))}}})
	}
	sb, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
	if err != nil || len(sb.Successful) != 10 || len(sb.Failed) != 0 {
		t.Fatalf("batch: %+v %v", sb, err)
	}
	if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: append(entries, entries[0])}); code(err) != "AWS.SimpleQueueService.TooManyEntriesInBatchRequest" {
		t.Fatalf("11 entries: %v", err)
	}
	if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{entries[0], entries[0]}}); code(err) != "AWS.SimpleQueueService.BatchEntryIdsNotDistinct" {
		t.Fatalf("repeated ids: %v", err)
	}
	if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{}}); code(err) != "AWS.SimpleQueueService.EmptyBatchRequest" {
		t.Fatalf("empty batch: %v", err)
	}
	big := strings.Repeat("x", 200_000)
	if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String(big)}, {Id: aws.String("b"), MessageBody: aws.String(big)}}}); code(err) != "AWS.SimpleQueueService.BatchRequestTooLong" {
		t.Fatalf("batch over 256 KB: %v", err)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(strings.Repeat("x", 262145))}); code(err) != "InvalidParameterValue" {
		t.Fatalf("message over 256 KB: %v", err)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("a\x01b")}); code(err) != "InvalidMessageContents" {
		t.Fatalf("control character: %v", err)
	}
	got := map[string]bool{}
	for tries := 0; tries < 20 && len(got) < 10; tries++ {
		r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"i"}})
		if err != nil {
			t.Fatal(err)
		}
		var del []types.DeleteMessageBatchRequestEntry
		for i, m := range r.Messages {
			got[*m.Body] = true
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if len(del) > 0 && len(del) < 10 {
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String("bad"), ReceiptHandle: aws.String("not-a-handle")})
			db, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: del})
			if err != nil || len(db.Failed) != 1 || *db.Failed[0].Code != "ReceiptHandleIsInvalid" || len(db.Successful) != len(del)-1 {
				t.Fatalf("delete batch: %+v %v", db, err)
			}
		} else if len(del) > 0 {
			db, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: del})
			if err != nil || len(db.Failed) != 0 {
				t.Fatalf("delete batch: %+v %v", db, err)
			}
		}
	}
	if len(got) != 10 {
		t.Fatalf("received %d of 10", len(got))
	}
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: aws.String("garbage")}); code(err) != "ReceiptHandleIsInvalid" {
		t.Fatalf("delete with garbage: %v", err)
	}

	// Long polling returns as soon as a message arrives.
	done := make(chan time.Time, 1)
	go func() {
		time.Sleep(500 * time.Millisecond)
		_, _ = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("wake")})
		done <- time.Now()
	}()
	r, err = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 10})
	recvAt := time.Now()
	if err != nil || len(r.Messages) != 1 {
		t.Fatalf("long poll: %+v %v", r, err)
	}
	lag := recvAt.Sub(<-done)
	t.Logf("long poll returned %v after the send was acknowledged", lag)
	if lag > 2*time.Second {
		t.Fatalf("long poll returned %v after the send", lag)
	}
	// Visibility timeout: invisible, then visible again.
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: r.Messages[0].ReceiptHandle, VisibilityTimeout: 1}); err != nil {
		t.Fatal(err)
	}
	r2, _ := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url})
	if len(r2.Messages) != 0 {
		t.Fatal("message visible during its visibility timeout")
	}
	r2, err = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 5, MessageSystemAttributeNames: []types.MessageSystemAttributeName{"ApproximateReceiveCount"}})
	if err != nil || len(r2.Messages) != 1 || r2.Messages[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("after the visibility timeout: %+v %v", r2, err)
	}
	cb, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &url, Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
		{Id: aws.String("ok"), ReceiptHandle: r2.Messages[0].ReceiptHandle, VisibilityTimeout: 30},
		{Id: aws.String("bad"), ReceiptHandle: aws.String("x"), VisibilityTimeout: 30}}})
	if err != nil || len(cb.Successful) != 1 || len(cb.Failed) != 1 {
		t.Fatalf("visibility batch: %+v %v", cb, err)
	}
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: r2.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: r2.Messages[0].ReceiptHandle, VisibilityTimeout: 5}); code(err) != "AWS.SimpleQueueService.MessageNotInflight" {
		t.Fatalf("visibility of a deleted message: %v", err)
	}
}

// TestSDKFifo: per-group order, one in-flight batch per group, and
// deduplication by id and by content.
func TestSDKFifo(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	c := client(e)
	ctx := context.Background()
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("o.fifo"), Attributes: map[string]string{"FifoQueue": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	url := q.QueueUrl
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("x"), MessageGroupId: aws.String("g")}); code(err) != "InvalidParameterValue" {
		t.Fatalf("no dedup id without content-based dedup: %v", err)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("x"), MessageDeduplicationId: aws.String("d")}); code(err) != "MissingParameter" {
		t.Fatalf("no group: %v", err)
	}
	var first *sqs.SendMessageOutput
	for i := 0; i < 4; i++ {
		for _, g := range []string{"a", "b"} {
			out, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(fmt.Sprint(g, i)), MessageGroupId: aws.String(g), MessageDeduplicationId: aws.String(fmt.Sprint(g, i))})
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = out
			}
		}
	}
	dup, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("other body"), MessageGroupId: aws.String("a"), MessageDeduplicationId: aws.String("a0")})
	if err != nil || *dup.MessageId != *first.MessageId {
		t.Fatalf("duplicate: %v %v", dup, err)
	}
	seen := map[string][]string{}
	for round := 0; round < 20; round++ {
		r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 3, MessageSystemAttributeNames: []types.MessageSystemAttributeName{"MessageGroupId", "SequenceNumber"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) == 0 {
			break
		}
		// While this batch is in flight, its groups give nothing more.
		groups := map[string]bool{}
		for _, m := range r.Messages {
			groups[m.Attributes["MessageGroupId"]] = true
		}
		if len(groups) < 2 {
			r2, _ := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10, MessageSystemAttributeNames: []types.MessageSystemAttributeName{"MessageGroupId"}})
			for _, m := range r2.Messages {
				if groups[m.Attributes["MessageGroupId"]] {
					t.Fatalf("group %s delivered while in flight", m.Attributes["MessageGroupId"])
				}
				_, _ = c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
			}
		}
		for _, m := range r.Messages {
			g := m.Attributes["MessageGroupId"]
			seen[g] = append(seen[g], *m.Body)
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: url, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, g := range []string{"a", "b"} {
		want := []string{g + "0", g + "1", g + "2", g + "3"}
		if strings.Join(seen[g], ",") != strings.Join(want, ",") {
			t.Fatalf("group %s in order %v, want %v", g, seen[g], want)
		}
	}
	// Content-based deduplication.
	cq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("c.fifo"), Attributes: map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: cq.QueueUrl, MessageBody: aws.String("same"), MessageGroupId: aws.String("g")}); err != nil {
			t.Fatal(err)
		}
	}
	ga, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: cq.QueueUrl, AttributeNames: []types.QueueAttributeName{"ApproximateNumberOfMessages", "FifoQueue", "ContentBasedDeduplication"}})
	if err != nil || ga.Attributes["ApproximateNumberOfMessages"] != "1" || ga.Attributes["FifoQueue"] != "true" {
		t.Fatalf("content-based dedup: %v %v", ga, err)
	}
}

// TestCrossAccount: another account reaches a queue exactly when the
// queue's Policy grants it.
func TestCrossAccount(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	c := client(e)
	ctx := context.Background()
	b, err := e.Srv.Accounts().Create(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	cfgB := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(e.Srv.Endpoint), Credentials: credentials.NewStaticCredentialsProvider(b.Keys[0].ID, b.Keys[0].Secret, "")}
	cb := sqs.NewFromConfig(cfgB)
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("shared")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cb.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("x")}); code(err) != "AccessDenied" {
		t.Fatalf("B sent without a policy: %v", err)
	}
	arn := "arn:aws:sqs:us-east-1:" + e.Srv.Account.ID + ":shared"
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + b.ID + `"},"Action":"sqs:SendMessage","Resource":"` + arn + `"}]}`
	if _, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: q.QueueUrl, Attributes: map[string]string{"Policy": policy}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("from b")}); err != nil {
		t.Fatalf("B sends with the policy: %v", err)
	}
	if _, err := cb.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl}); code(err) != "AccessDenied" {
		t.Fatalf("B received with only SendMessage granted: %v", err)
	}
	r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 2, MessageSystemAttributeNames: []types.MessageSystemAttributeName{"SenderId"}})
	if err != nil || len(r.Messages) != 1 || r.Messages[0].Attributes["SenderId"] != b.ID {
		t.Fatalf("A receives B's message: %+v %v", r, err)
	}
	// B's own queue of the same name is B's.
	qb, err := cb.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("shared")})
	if err != nil || *qb.QueueUrl == *q.QueueUrl {
		t.Fatalf("B's queue: %v %v", qb, err)
	}
	l, err := cb.ListQueues(ctx, &sqs.ListQueuesInput{})
	if err != nil || len(l.QueueUrls) != 1 || l.QueueUrls[0] != *qb.QueueUrl {
		t.Fatalf("B lists %v %v", l, err)
	}
}
