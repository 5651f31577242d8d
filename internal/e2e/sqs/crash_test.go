package sqs_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

func healthy(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET /_lambdaplane/health HTTP/1.0\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.Contains(line, " 200")
}

// serveProc is a `lambdaplane serve` process.
type serveProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func spawn(t *testing.T, data, prefix, listen, uplink, metrics, logF string) *serveProc {
	t.Helper()
	logf, err := os.OpenFile(logF, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(harness.BinDir, "lambdaplane"), "serve", "--data", data, "--prefix", prefix, "--listen", listen,
		"--uplink", "netns:"+harness.InternetNS, "--uplink-net", uplink, "--service-cidr", "auto", "--pool-size", "1",
		"--log-level", "info", "--metrics-listen", metrics, "--url-listen", "off")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for !healthy(listen) {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(logF)
			t.Fatalf("server exited while starting:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("server not healthy after 90 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func (p *serveProc) kill(t *testing.T) {
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the killed server did not exit")
	}
}

// TestSIGKILL: a server process killed while clients send and hold
// messages in flight loses no acknowledged message, and the in-flight ones
// stay in flight (their receipt handles still work) after the restart.
func TestSIGKILL(t *testing.T) {
	t.Parallel()
	harness.RequireRoot(t)
	data, prefix, listen, metrics := t.TempDir(), "r"+harness.RandHex(4), harness.FreePort(t), harness.FreePort(t)
	uplink := harness.UplinkNet().String()
	logF := filepath.Join(t.TempDir(), "serve.log")
	p := spawn(t, data, prefix, listen, uplink, metrics, logF)
	defer func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.exited:
			case <-time.After(30 * time.Second):
				_ = p.cmd.Process.Kill()
			}
		}
	}()
	newClient := func() *sqs.Client {
		creds := harness.ReadCreds(t, filepath.Join(data, "credentials"))
		return sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + listen), Credentials: creds,
			Retryer: aws.NopRetryer{}, HTTPClient: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}})
	}
	c := newClient()
	ctx := context.Background()
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("durable"), Attributes: map[string]string{"VisibilityTimeout": "120"}})
	if err != nil {
		t.Fatal(err)
	}
	url := q.QueueUrl
	// Messages received (in flight) before the kill.
	var inflight []types.Message
	for i := 0; i < 5; i++ {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(fmt.Sprint("held-", i))}); err != nil {
			t.Fatal(err)
		}
	}
	for len(inflight) < 5 {
		r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		inflight = append(inflight, r.Messages...)
	}
	// Senders until the kill; only answered sends count as acknowledged.
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var entries []types.SendMessageBatchRequestEntry
				for j := 0; j < 10; j++ {
					entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(fmt.Sprintf("w%d-%d-%d", w, i, j))})
				}
				out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: entries})
				if err != nil {
					return // the server is gone: this batch is not acknowledged
				}
				mu.Lock()
				for _, s := range out.Successful {
					acked[*s.MessageId] = true
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	p.kill(t)
	close(stop)
	wg.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	if n == 0 {
		t.Fatal("no send was acknowledged before the kill")
	}
	t.Logf("%d messages acknowledged before SIGKILL", n)

	p = spawn(t, data, prefix, listen, uplink, metrics, logF)
	c = newClient()
	seen := map[string]bool{}
	held := map[string]bool{}
	for _, m := range inflight {
		held[*m.MessageId] = true
	}
	drain := func() {
		empty := 0
		for empty < 2 {
			r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Messages) == 0 {
				empty++
				continue
			}
			var del []types.DeleteMessageBatchRequestEntry
			for i, m := range r.Messages {
				seen[*m.MessageId] = true
				del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
			}
			if _, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: del}); err != nil {
				t.Fatal(err)
			}
		}
	}
	drain()
	for id := range held {
		if seen[id] {
			t.Fatalf("message %s, in flight before the kill, was delivered again within its visibility timeout", id)
		}
	}
	missing := 0
	for id := range acked {
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged messages lost", missing, n)
	}
	// The in-flight messages' receipt handles still work after the restart.
	for _, m := range inflight {
		if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
			t.Fatalf("change visibility of a held message after the restart: %v", err)
		}
	}
	drain()
	for id := range held {
		if !seen[id] {
			t.Fatalf("held message %s lost", id)
		}
	}
}
