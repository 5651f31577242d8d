package esm_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	iamsdk "github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	ltypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// serveProc is a `lambdaplane serve` process on a data directory.
type serveProc struct {
	t                       *testing.T
	data, prefix, listen    string
	uplink, logF            string
	cmd                     *exec.Cmd
	exited                  chan struct{}
	lc                      *lambda.Client
	sc                      *sqssdk.Client
	ic                      *iamsdk.Client
	endpoint, keyID, secret string
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (p *serveProc) spawn() {
	logf, err := os.OpenFile(p.logF, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== start %s ===\n", time.Now().Format(time.StampMilli))
	cmd := exec.Command(filepath.Join(harness.BinDir, "lambdaplane"), "serve", "--data", p.data, "--prefix", p.prefix, "--listen", p.listen,
		"--uplink", "netns:"+harness.InternetNS, "--uplink-net", p.uplink, "--service-cidr", "auto", "--pool-size", "2",
		"--log-level", "info", "--metrics-listen", "off", "--url-listen", "off")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = cmd
	ch := make(chan struct{})
	p.exited = ch
	go func() { _ = cmd.Wait(); close(ch) }()
}

// start spawns the server and waits until it is healthy (starting it
// again while the killed one's host lock is still held).
func (p *serveProc) start() {
	p.spawn()
	deadline := time.Now().Add(90 * time.Second)
	for refused := 0; ; {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.logF)
			if refused < 20 && strings.Contains(string(b[max(0, len(b)-4000):]), "another lambdaplane server is running") {
				refused++
				time.Sleep(250 * time.Millisecond)
				p.spawn()
				continue
			}
			p.t.Fatalf("server exited while starting:\n%s", b[max(0, len(b)-4000):])
		default:
		}
		if healthy(p.listen) {
			break
		}
		if time.Now().After(deadline) {
			p.kill()
			p.t.Fatal("server not healthy after 90s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.readCreds()
	creds := credentials.NewStaticCredentialsProvider(p.keyID, p.secret, "")
	ep := aws.String(p.endpoint)
	p.lc = lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds})
	p.sc = sqssdk.New(sqssdk.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds})
	p.ic = iamsdk.New(iamsdk.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds})
}

func (p *serveProc) readCreds() {
	f, err := os.Open(filepath.Join(p.data, "credentials"))
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			p.keyID = strings.TrimSpace(v)
		case "aws_secret_access_key":
			p.secret = strings.TrimSpace(v)
		}
	}
	p.endpoint = "http://" + p.listen
}

func (p *serveProc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("the killed server did not exit")
	}
}

func (p *serveProc) stop() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

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

// logs is the function's stored log, through `lambdaplane logs`.
func (p *serveProc) logs(fn string) string {
	cmd := exec.Command(filepath.Join(harness.BinDir, "lambdaplane"), "logs", fn, "--endpoint-url", p.endpoint, "--data", p.data)
	out, err := cmd.Output()
	if err != nil {
		p.t.Logf("lambdaplane logs %s: %v", fn, err)
	}
	return string(out)
}

// TestCrashWithMappings SIGKILLs a server while two enabled mappings have
// messages in flight: after the restart every mapping is Enabled and
// polling again, and every message whose send was acknowledged reaches
// the function.
func TestCrashWithMappings(t *testing.T) {
	harness.RequireRoot(t)
	t.Parallel()
	p := &serveProc{t: t, data: t.TempDir(), prefix: "q" + harness.RandHex(4), listen: freePort(t), uplink: harness.UplinkNet().String(),
		logF: filepath.Join(t.TempDir(), "serve.log")}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.logF)
			t.Logf("server log (tail):\n%s", b[max(0, len(b)-6000):])
		}
	})
	ctx := context.Background()
	role, err := p.ic.CreateRole(ctx, &iamsdk.CreateRoleInput{RoleName: aws.String("crash-role"), AssumeRolePolicyDocument: aws.String(server.LambdaTrustPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ic.AttachRolePolicy(ctx, &iamsdk.AttachRolePolicyInput{RoleName: aws.String("crash-role"), PolicyArn: aws.String("arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole")}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("crash-fn"), Runtime: ltypes.RuntimePython311, Handler: aws.String("app.handler"),
		Role: role.Role.Arn, Code: &ltypes.FunctionCode{ZipFile: pyZip(t, printer)}, Timeout: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	var urls, uuids []string
	for _, name := range []string{"crash-a", "crash-b"} {
		q, err := p.sc.CreateQueue(ctx, &sqssdk.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"VisibilityTimeout": "5"}})
		if err != nil {
			t.Fatal(err)
		}
		a, err := p.sc.GetQueueAttributes(ctx, &sqssdk.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := p.lc.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(a.Attributes["QueueArn"]), FunctionName: aws.String("crash-fn")})
		if err != nil {
			t.Fatal(err)
		}
		urls, uuids = append(urls, aws.ToString(q.QueueUrl)), append(uuids, aws.ToString(m.UUID))
	}
	// Send until the kill: every acknowledged message must be delivered.
	acked := map[string]bool{}
	killAt := time.Now().Add(1500 * time.Millisecond)
	for i := 0; i < 300 && time.Now().Before(killAt.Add(time.Second)); i++ {
		if time.Now().After(killAt) && p.cmd.ProcessState == nil {
			p.kill()
		}
		entries := make([]sqstypes.SendMessageBatchRequestEntry, 10)
		for j := range entries {
			entries[j] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(fmt.Sprintf(`{"i":%d}`, i*10+j))}
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		out, err := p.sc.SendMessageBatch(sctx, &sqssdk.SendMessageBatchInput{QueueUrl: aws.String(urls[i%2]), Entries: entries})
		cancel()
		if err != nil {
			continue // not acknowledged
		}
		for _, s := range out.Successful {
			acked[aws.ToString(s.MessageId)] = true
		}
	}
	if p.cmd.ProcessState == nil {
		p.kill()
	}
	t.Logf("%d sends acknowledged before the SIGKILL", len(acked))
	p.start()
	for _, u := range uuids {
		harness.Eventually(t, 30*time.Second, "mapping "+u+" Enabled after the restart", func() bool {
			m, err := p.lc.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String(u)})
			return err == nil && aws.ToString(m.State) == "Enabled"
		})
	}
	// Both mappings poll again: one new message each.
	for _, u := range urls {
		out, err := p.sc.SendMessage(ctx, &sqssdk.SendMessageInput{QueueUrl: aws.String(u), MessageBody: aws.String(`{"after":true}`)})
		if err != nil {
			t.Fatal(err)
		}
		acked[aws.ToString(out.MessageId)] = true
	}
	var missing []string
	// In flight at the kill: visible again after the queue's 5 s
	// visibility timeout, once the restarted pollers run. Bounded at 2
	// minutes for a CI machine running other test packages too.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		logs := p.logs("crash-fn")
		missing = missing[:0]
		for id := range acked {
			if !strings.Contains(logs, "MSG "+id+" ") {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never reached the function, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, u := range urls {
		harness.Eventually(t, 30*time.Second, "queue "+u+" drained", func() bool {
			a, err := p.sc.GetQueueAttributes(ctx, &sqssdk.GetQueueAttributesInput{QueueUrl: aws.String(u),
				AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
			return err == nil && a.Attributes["ApproximateNumberOfMessages"] == "0" && a.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
		})
	}
}
