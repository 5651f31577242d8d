package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// sqsScenario measures the queue service's message paths beside raw
// JetStream's on the same store.
var sqsScenario = Scenario{
	Name: "sqs-throughput", Title: "SQS: SendMessageBatch and ReceiveMessage+DeleteMessageBatch throughput",
	About: "Raw JetStream first, through the store's connection (the floor: asynchronous publishes of 256-byte messages in batches of ten with one acknowledgement wait per batch, acknowledged once on disk, one group sync covering all the writes acknowledged meanwhile; the same as JetStream atomic batches of ten; then fetches of ten from a pull consumer, each acknowledged with a reply), then the same number of 256-byte messages through the SQS JSON protocol with aws-sdk-go-v2 over HTTP with SigV4: 32 clients sending SendMessageBatch of ten, then 32 clients each doing ReceiveMessage (10, long poll 1 s) + DeleteMessageBatch until the queue is empty. Then all of it again on a second in-process server whose store syncs in the background every 2 s instead of before acknowledging (not serve's setting: it shows what the syncs cost and what the HTTP, SigV4 and queue paths do without them). In-process only; every loop is bounded in count and time.",
	Quick: 2 * time.Minute, Full: 25 * time.Minute,
	Plot: plotCDF,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		if e.Server == nil {
			r.Skipped = "needs the in-process server (the floor reads its store)"
			return nil
		}
		n := pick(e, 2_000, 100_000)
		if err := measureSQS(ctx, e, r, "", n); err != nil {
			return err
		}
		// The same on a server whose store syncs in the background every
		// 2 s (not what serve does): what the per-write syncs cost, and
		// what the HTTP, SigV4 and queue paths do without them.
		ne, err := e.spawn(ctx, "sqs-background-sync", func(c *server.Config) { c.StoreSyncInterval = 2 * time.Second })
		if err != nil {
			return err
		}
		return measureSQS(ctx, ne, r, ", store synced every 2 s", pick(e, 5_000, 200_000))
	},
}

// measureSQS runs the floor and the SQS paths on e's server; label marks
// the figures.
func measureSQS(ctx context.Context, e *Env, r *Result, label string, n int) error {
	const workers, size = 32, 256
	floor, err := e.Server.Queues().Floor(ctx, n, workers, size)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	r.value("JetStream publish, async (floor)"+label, floor.Publish, "msg/s")
	r.value("JetStream publish, atomic batches of 10 (floor)"+label, floor.PublishAtomic, "msg/s")
	r.value("JetStream consume+ack (floor)"+label, floor.Consume, "msg/s")

	k := e.Server.Account.Keys[0]
	c := sqs.New(sqs.Options{Region: e.Server.Cfg.Region, BaseEndpoint: aws.String(e.Server.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(k.ID, k.Secret, ""),
		HTTPClient:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}})
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("lpb-" + e.runID)})
	if err != nil {
		return err
	}
	defer func() { _, _ = c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}) }()
	body := aws.String(strings.Repeat("x", size))
	lat := r.series("SendMessageBatch latency"+label, "ms", 0)
	var latMu sync.Mutex
	var next, sent atomic.Int64
	var firstErr error
	var errMu sync.Mutex
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	deadline := time.Now().Add(pick(e, 60*time.Second, 4*time.Minute))
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entries := make([]types.SendMessageBatchRequestEntry, 10)
			for i := range entries {
				entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: body}
			}
			for next.Add(10) <= int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: entries})
				if err != nil {
					fail(err)
					return
				}
				if len(out.Failed) > 0 {
					fail(fmt.Errorf("SendMessageBatch: %d failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message)))
					return
				}
				sent.Add(10)
				latMu.Lock()
				lat.Samples = append(lat.Samples, msOf(time.Since(t)))
				latMu.Unlock()
			}
		}()
	}
	wg.Wait()
	sendRate := float64(sent.Load()) / time.Since(t0).Seconds()
	r.value("SendMessageBatch (aws-sdk-go-v2, 32 clients, batches of 10)"+label, sendRate, "msg/s")
	if firstErr != nil {
		return firstErr
	}
	var recvd atomic.Int64
	t0 = time.Now()
	deadline = time.Now().Add(pick(e, 60*time.Second, 4*time.Minute))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			empty := 0
			for recvd.Load() < sent.Load() && time.Now().Before(deadline) && ctx.Err() == nil && empty < 3 {
				out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if err != nil {
					fail(err)
					return
				}
				if len(out.Messages) == 0 {
					empty++
					continue
				}
				empty = 0
				del := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
				for i, m := range out.Messages {
					del[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle}
				}
				d, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: q.QueueUrl, Entries: del})
				if err != nil {
					fail(err)
					return
				}
				if len(d.Failed) > 0 {
					fail(errors.New("DeleteMessageBatch: " + aws.ToString(d.Failed[0].Message)))
					return
				}
				recvd.Add(int64(len(out.Messages)))
			}
		}()
	}
	wg.Wait()
	r.value("ReceiveMessage+DeleteMessageBatch (32 clients)"+label, float64(recvd.Load())/time.Since(t0).Seconds(), "msg/s")
	r.Notes = append(r.Notes, fmt.Sprintf("%d messages of %d bytes%s; SendMessageBatch reached %.0f%% of the JetStream async publish floor", sent.Load(), size, label, 100*sendRate/floor.Publish))
	if recvd.Load() < sent.Load() {
		return fmt.Errorf("received %d of %d messages", recvd.Load(), sent.Load())
	}
	return firstErr
}
