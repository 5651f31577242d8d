package esm_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"github.com/lambdaplane/lambdaplane/internal/server"
	"github.com/lambdaplane/lambdaplane/internal/sqs"
)

// sqsRole creates the execution role "sqsfn": basic logging, the managed
// AWSLambdaSQSQueueExecutionRole, and sqs:SendMessage and
// lambda:InvokeFunction for destinations and dead-letter queues.
func sqsRole(t *testing.T, e *harness.Env) string {
	t.Helper()
	ctx := context.Background()
	acct := e.Srv.Account.ID
	r := e.Srv.Roles()
	if _, err := r.CreateRole(ctx, acct, iam.CreateRoleInput{RoleName: "sqsfn", AssumeRolePolicyDocument: server.LambdaTrustPolicy}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{iam.BasicExecutionRoleARN, iam.SQSQueueExecutionRoleARN} {
		if err := r.AttachRolePolicy(ctx, acct, "sqsfn", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PutRolePolicy(ctx, acct, "sqsfn", "send", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:SendMessage","lambda:InvokeFunction"],"Resource":"*"}]}`); err != nil {
		t.Fatal(err)
	}
	return e.Role("sqsfn")
}

// createQueue creates a queue in the server's account and returns its ARN.
func createQueue(t *testing.T, e *harness.Env, name string, attrs map[string]string) string {
	t.Helper()
	q, err := e.Srv.QueueEngine().Create(context.Background(), sqs.CreateInput{Account: e.Srv.Account.ID, Name: name, Attributes: attrs})
	if err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	return q.ARN()
}

func send(t *testing.T, e *harness.Env, arn, body string) string {
	t.Helper()
	r, err := e.Srv.QueueEngine().Send(context.Background(), arn, sqs.SendInput{Body: body, SenderID: e.Srv.Account.ID})
	if err != nil {
		t.Fatalf("send to %s: %v", arn, err)
	}
	return r.MessageID
}

// depth is the queue's visible plus in-flight plus delayed messages.
func depth(t *testing.T, e *harness.Env, arn string) int {
	t.Helper()
	q := e.Srv.QueueEngine()
	rec, err := q.Lookup(context.Background(), arn)
	if err != nil {
		t.Fatal(err)
	}
	c, err := q.Counts(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	return c.Visible + c.NotVisible + c.Delayed
}

// receiveAll drains up to n messages from a queue within d.
func receiveAll(t *testing.T, e *harness.Env, arn string, n int, d time.Duration) []sqs.Message {
	t.Helper()
	var out []sqs.Message
	end := time.Now().Add(d)
	for len(out) < n && time.Now().Before(end) {
		ms, err := e.Srv.QueueEngine().Receive(context.Background(), arn, 10, 30*time.Second, min(time.Until(end), 2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			out = append(out, m)
			_ = e.Srv.QueueEngine().Delete(context.Background(), arn, m.ReceiptHandle)
		}
	}
	return out
}

// logText is every stored log line of a function.
func logText(t *testing.T, e *harness.Env, fn string) string {
	t.Helper()
	var b strings.Builder
	if err := e.Srv.Logs().Follow(context.Background(), e.Srv.Account.ID, fn, 0, false, func(r logs.Record) error {
		b.Write(r.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var msgLine = regexp.MustCompile(`(?m)^MSG (\S+)`)

// delivered counts, per message id, the "MSG <id>" lines a function printed.
func delivered(t *testing.T, e *harness.Env, fn string) map[string]int {
	out := map[string]int{}
	for _, m := range msgLine.FindAllStringSubmatch(logText(t, e, fn), -1) {
		out[m[1]]++
	}
	return out
}

func pyZip(t *testing.T, code string) []byte {
	return harness.Zip(t, map[string]string{"app.py": code})
}

func createPy(t *testing.T, e *harness.Env, name, role, code string, timeout int32) {
	t.Helper()
	e.CreateFunction(name, "python3.11", "app.handler", pyZip(t, code), func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String(role)
		in.Timeout = aws.Int32(timeout)
	})
}

func waitState(t *testing.T, e *harness.Env, uuid, want string) {
	t.Helper()
	harness.Eventually(t, 10*time.Second, "mapping "+uuid+" "+want, func() bool {
		out, err := e.Lambda.GetEventSourceMapping(context.Background(), &lambda.GetEventSourceMappingInput{UUID: aws.String(uuid)})
		return err == nil && aws.ToString(out.State) == want
	})
}

// printer prints one MSG line per record.
const printer = `
def handler(event, context):
    for r in event["Records"]:
        print("MSG", r["messageId"], r["attributes"]["ApproximateReceiveCount"], r["eventSource"], r["awsRegion"], r["md5OfBody"], r["body"], flush=True)
    return None
`

func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err == nil {
		return ""
	}
	return fmt.Sprint(err)
}

// for_ is e with t as its test, for a subtest's helpers (the harness
// fails e.T, which must be the running test).
func for_(t *testing.T, e *harness.Env) *harness.Env {
	c := *e
	c.T = t
	return &c
}

// storedLogs is everything the log stream holds, raw: what is stored,
// without first storing what is pending as the log readers do.
func storedLogs(t *testing.T, e *harness.Env) string {
	t.Helper()
	ctx := context.Background()
	js := e.Srv.Store().JetStream()
	st, err := js.Stream(ctx, "LOGS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // purged
		}
		b.Write(m.Data)
	}
	return b.String()
}
