package e2e

import (
	"bufio"
	"context"
	"fmt"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/sandbox"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// kernelObjects counts what a server with prefix holds in the kernel.
func kernelObjects(t testing.TB, prefix string) (netns, links, cgroups []string) {
	t.Helper()
	ns, ln, err := netdev.ListPrefixed(prefix)
	if err != nil {
		t.Fatal(err)
	}
	cg, err := sandbox.ListCgroups(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ns, ln, cg
}

// TestNoLeakAfterCycles: 100 create/invoke/delete cycles leave nothing
// behind (a leak is per cycle: more cycles only take longer).
func TestNoLeakAfterCycles(t *testing.T) {
	e := startServer(t)
	cycles := 100
	if testing.Short() {
		cycles = 30
	}
	goroutinesBefore := runtime.NumGoroutine()
	for i := 0; i < cycles; i++ {
		name := fmt.Sprintf("cycle-%d", i)
		e.createProbe(name)
		if m, _ := e.invokeJSON(name, map[string]any{"name": "c"}); m["hello"] != "c" {
			t.Fatalf("cycle %d: %v", i, m)
		}
		if _, err := e.lambda.DeleteFunction(context.Background(), &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "every environment torn down", func() bool {
		return e.srv.Scheduler().Stats().Environments == 0
	})
	var ns, links, cgroups []string
	eventually(t, 20*time.Second, "kernel objects back to the idle pool", func() bool {
		ns, links, cgroups = kernelObjects(t, e.prefix)
		// svc, api + the pre-built pool; links: the host side of the uplink lives in the test namespace.
		return len(cgroups) == 0 && len(ns) <= 2+e.srv.Cfg.PoolSize
	})
	t.Logf("after %d cycles: %d namespaces %v, links %v, cgroups %v", cycles, len(ns), ns, links, cgroups)
	eventually(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= goroutinesBefore+20
	})
	// Closing the server removes everything with its prefix.
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	ns, links, cgroups = kernelObjects(t, e.prefix)
	if len(ns)+len(links)+len(cgroups) != 0 {
		t.Fatalf("leftovers after close: netns %v links %v cgroups %v", ns, links, cgroups)
	}
}

// serverProc runs the real binary.
type serverProc struct {
	cmd      *exec.Cmd
	endpoint string
	metrics  string // http://host:port of --metrics-listen
}

func startBinary(t *testing.T, data, prefix, listen string, uplink string) *serverProc {
	t.Helper()
	metricsAddr := freePort(t)
	cmd := exec.Command(filepath.Join(binDir, "lambdaplane"), "serve", "--data", data, "--prefix", prefix, "--listen", listen,
		"--uplink", "netns:"+internetNS, "--uplink-net", uplink, "--service-cidr", "auto", "--pool-size", "2", "--async-redelivery", "2s",
		"--async-retry-backoff", "200ms,400ms", "--log-level", "warn", "--metrics-listen", metricsAddr, "--url-listen", "off")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log("server: " + sc.Text())
		}
	}()
	p := &serverProc{cmd: cmd, endpoint: "http://" + listen, metrics: "http://" + metricsAddr}
	eventually(t, 60*time.Second, "server health", func() bool {
		c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
		if err != nil {
			return false
		}
		fmt.Fprintf(c, "GET /_lambdaplane/health HTTP/1.0\r\n\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		return strings.Contains(line, "200")
	})
	return p
}

// binServer is a `lambdaplane serve` process of a test with its own data
// directory, prefix, listen address and uplink net, stopped (SIGTERM) and
// its prefix swept when the test ends; restart keeps all four.
type binServer struct {
	*serverProc
	data, prefix, listen, uplink string
	creds                        aws.CredentialsProvider // the root keys the server wrote
}

func startBinServer(t *testing.T) *binServer {
	t.Helper()
	requireRoot(t)
	b := &binServer{data: t.TempDir(), prefix: "r" + randHex(4), listen: freePort(t), uplink: uplinkNet().String()}
	b.serverProc = startBinary(t, b.data, b.prefix, b.listen, b.uplink)
	t.Cleanup(func() {
		if b.cmd.ProcessState == nil {
			b.cmd.Process.Signal(syscall.SIGTERM)
			b.cmd.Wait()
		}
		netdev.Cleanup(b.prefix)
	})
	b.creds = readCreds(t, filepath.Join(b.data, "credentials"))
	return b
}

// restart starts the binary again on the same data, prefix and addresses
// (the caller stopped or killed the previous process).
func (b *binServer) restart(t *testing.T) {
	b.serverProc = startBinary(t, b.data, b.prefix, b.listen, b.uplink)
}

func (b *binServer) lambda() *lambda.Client {
	return lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(b.endpoint), Credentials: b.creds})
}

func freePort(t *testing.T) string { return harness.FreePort(t) }

// TestRestartKeepsQueuedEvents: SIGKILL the server with Event invokes queued;
// after a restart every event runs, none that completed runs again, the
// function is still there and nothing of the old process is left in the kernel.
func TestRestartKeepsQueuedEvents(t *testing.T) {
	t.Parallel()
	b := startBinServer(t)
	lc := b.lambda()
	ctx := context.Background()
	ic := iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String(b.endpoint), Credentials: b.creds})
	role, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"), AssumeRolePolicyDocument: aws.String(server.LambdaTrustPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("slow"), Runtime: "provided.al2023",
		Handler: aws.String("bootstrap"), Role: role.Role.Arn, Code: &types.FunctionCode{ZipFile: probeZip}}); err != nil {
		t.Fatal(err)
	}
	const n = 12
	for i := 0; i < n; i++ {
		payload := fmt.Sprintf(`{"action":"sleep","sleepMs":300,"print":"event-marker-%02d"}`, i)
		out, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), InvocationType: types.InvocationTypeEvent, Payload: []byte(payload)})
		if err != nil || out.StatusCode != 202 {
			t.Fatalf("queue event %d: %v", i, err)
		}
	}
	logsOf := func() string {
		out, _ := exec.Command(filepath.Join(binDir, "lambdaplane"), "logs", "slow", "--data", b.data).Output()
		return string(out)
	}
	// Let a few complete, then kill without warning.
	eventually(t, 30*time.Second, "some events done", func() bool { return strings.Count(logsOf(), "event-marker-") >= 2 })
	before := logsOf()
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	b.cmd.Wait()

	b.restart(t)
	eventually(t, 60*time.Second, "every queued event ran", func() bool {
		l := logsOf()
		for i := 0; i < n; i++ {
			if !strings.Contains(l, fmt.Sprintf("event-marker-%02d", i)) {
				return false
			}
		}
		return true
	})
	after := logsOf()
	for i := 0; i < n; i++ {
		// An event whose log was stored before the kill had completed (and
		// is acknowledged right after its log is written): it must not run again.
		m := fmt.Sprintf("event-marker-%02d", i)
		if strings.Contains(before, m) && strings.Count(after, m) != 1 {
			t.Errorf("%s completed before the kill but ran %d times", m, strings.Count(after, m))
		}
	}
	if _, err := lc.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("slow")}); err != nil {
		t.Fatalf("function lost across SIGKILL: %v", err)
	}
	// No namespace from the killed process survives the restart's reconcile:
	// what is left is the new server's (svc, api, pool of 2, its environments).
	eventually(t, 20*time.Second, "stale environments reconciled", func() bool {
		envs := int(metricValue(scrapeURL(t, b.metrics), invoke.MetricEnvironments, nil))
		ns, _, _ := netdev.ListPrefixed(b.prefix)
		return len(ns) <= 2+2+envs
	})
	b.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.cmd.Wait(); err != nil {
		t.Errorf("clean shutdown: %v", err)
	}
	ns, links, cgroups := kernelObjects(t, b.prefix)
	if len(ns)+len(links)+len(cgroups) != 0 {
		t.Fatalf("leftovers after SIGTERM: %v %v %v", ns, links, cgroups)
	}
}

func readCreds(t *testing.T, path string) aws.CredentialsProvider { return harness.ReadCreds(t, path) }

// TestExternalNATS: --nats-url keeps state in an external JetStream server.
func TestExternalNATS(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	url := ns.ClientURL()
	e := startServer(t, func(c *serverConfig) { c.NATSURL = url })
	e.createProbe("ext")
	if m, _ := e.invokeJSON("ext", map[string]any{"name": "nats"}); m["hello"] != "nats" {
		t.Fatalf("invoke: %v", m)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// A second server (new data dir) on the same NATS sees the function and account.
	e2 := startServer(t, func(c *serverConfig) { c.NATSURL = url })
	if e2.srv.Account.ID != e.srv.Account.ID {
		t.Fatalf("account changed: %s vs %s", e2.srv.Account.ID, e.srv.Account.ID)
	}
	if m, _ := e2.invokeJSON("ext", map[string]any{"name": "again"}); m["hello"] != "again" {
		t.Fatalf("invoke after restart: %v", m)
	}
}
