package bench

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"github.com/lambdaplane/lambdaplane/internal/sqs"
)

// esmLatencyFn prints, for each record, the time the message was sent
// (its body, Unix ns) and the time the handler started.
const esmLatencyFn = `import time
def handler(event, context):
    t = time.time_ns()
    for r in event["Records"]:
        print("LAT", r["body"], t, flush=True)
`

// esmLatencyScenario measures how long a message sent to a queue takes to
// reach a function through an enabled event source mapping.
var esmLatencyScenario = Scenario{
	Name: "esm-latency", Title: "SQS event source mapping: SendMessage to function start",
	About: "One standard queue, one enabled mapping (BatchSize 1, no batching window) to a warm Python 3.11 function. " +
		"Messages are sent one at a time, 20 ms apart, through the queue engine's Send (the call SendMessage makes); each body is the Unix time in ns just before the send. " +
		"The function prints, per record, that time and time.time_ns() at the handler's start; the latency is the difference (one clock: same host). " +
		"The mapping's poller long-polls the queue (a JetStream pull request), so a message wakes it at once; there is no polling interval. In-process only; bounded in count and time.",
	Quick: 90 * time.Second, Full: 4 * time.Minute,
	Plot: plotCDF,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		if e.Server == nil {
			r.Skipped = "needs the in-process server (it sends through the queue engine and reads the function's stored log)"
			return nil
		}
		srv := e.Server
		acct := srv.Account.ID
		roleName := e.role[strings.LastIndex(e.role, "/")+1:]
		if err := srv.Roles().AttachRolePolicy(ctx, acct, roleName, iam.SQSQueueExecutionRoleARN); err != nil {
			return fmt.Errorf("attach the SQS execution policy to %s: %w", roleName, err)
		}
		defer func() {
			_ = srv.Roles().DetachRolePolicy(context.Background(), acct, roleName, iam.SQSQueueExecutionRoleARN)
		}()
		qs := srv.QueueEngine()
		qname := "lpb-" + e.runID + "-esm"
		q, err := qs.Create(ctx, sqs.CreateInput{Account: acct, Name: qname})
		if err != nil {
			return err
		}
		defer func() { _ = qs.DeleteQueue(context.Background(), acct, qname) }()
		name := e.Name("esm", 0)
		var zb bytes.Buffer
		zw := zip.NewWriter(&zb)
		w, _ := zw.Create("app.py")
		_, _ = w.Write([]byte(esmLatencyFn))
		_ = zw.Close()
		e.mu.Lock()
		e.created[name] = true
		e.mu.Unlock()
		if _, err := e.Lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: types.RuntimePython311,
			Handler: aws.String("app.handler"), Role: aws.String(e.role), Code: &types.FunctionCode{ZipFile: zb.Bytes()}, Timeout: aws.Int32(10)}); err != nil {
			return fmt.Errorf("create function %s: %w", name, err)
		}
		m, err := e.Lambda.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(q.ARN()), FunctionName: aws.String(name), BatchSize: aws.Int32(1)})
		if err != nil {
			return fmt.Errorf("create the mapping: %w", err)
		}
		defer func() {
			_, _ = e.Lambda.DeleteEventSourceMapping(context.Background(), &lambda.DeleteEventSourceMappingInput{UUID: m.UUID})
		}()
		send := func() error {
			_, err := qs.Send(ctx, q.ARN(), sqs.SendInput{Body: strconv.FormatInt(time.Now().UnixNano(), 10), SenderID: acct})
			return err
		}
		dups := 0
		// seen maps each message (its send time) to the first start of the
		// function with it; dups counts deliveries after the first.
		seen := func() (map[int64]int64, error) {
			out := map[int64]int64{}
			dups = 0
			err := srv.Logs().Follow(ctx, acct, name, 0, false, func(rec logs.Record) error {
				for _, l := range latLine.FindAllStringSubmatch(string(rec.Text), -1) {
					sent, _ := strconv.ParseInt(l[1], 10, 64)
					start, _ := strconv.ParseInt(l[2], 10, 64)
					if first, ok := out[sent]; ok {
						dups++
						start = min(start, first)
					}
					out[sent] = start
				}
				return nil
			})
			return out, err
		}
		// Warm up: the first message waits for the mapping to be enabled
		// and for the cold start.
		if err := send(); err != nil {
			return err
		}
		if err := waitFor(ctx, 60*time.Second, func() (bool, error) { s, err := seen(); return len(s) >= 1, err }); err != nil {
			return fmt.Errorf("the first message did not reach the function: %w", err)
		}
		n := pick(e, 200, 1000)
		deadline := time.Now().Add(pick(e, 30*time.Second, 2*time.Minute))
		sentN := 1
		for i := 0; i < n && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
			if err := send(); err != nil {
				return err
			}
			sentN++
			time.Sleep(20 * time.Millisecond)
		}
		var got map[int64]int64
		if err := waitFor(ctx, 60*time.Second, func() (bool, error) {
			var err error
			got, err = seen()
			return len(got) >= sentN, err
		}); err != nil {
			return fmt.Errorf("%d of %d messages reached the function: %w", len(got), sentN, err)
		}
		var sents []int64
		for s := range got {
			sents = append(sents, s)
		}
		sort.Slice(sents, func(i, j int) bool { return sents[i] < sents[j] })
		lat := r.series("SendMessage to function start", "ms", 0)
		for _, s := range sents[1:] { // the warm-up message included a cold start
			lat.Samples = append(lat.Samples, float64(got[s]-s)/1e6)
		}
		r.value("messages measured", float64(len(lat.Samples)), "")
		r.value("deliveries beyond the first (a delete that failed)", float64(dups), "")
		return nil
	},
}

var latLine = regexp.MustCompile(`(?m)^LAT (\d+) (\d+)`)

// waitFor polls cond every 100 ms until it holds, fails, or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	end := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("timed out after %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
