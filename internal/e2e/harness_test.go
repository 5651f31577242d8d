package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/sandbox"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// Shared fixtures built once in TestMain.
var (
	binDir      string // lambdaplane, lambdaplane-init
	probeZip    []byte // aws-lambda-go probe function, bootstrap at the root
	internetNS  string // netns path standing in for the internet (203.0.113.1)
	internetLn  net.Listener
	modRoot     string
	skipAllWhy  string
	internetIP  = "203.0.113.1"
	internetTCP = "203.0.113.1:80"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "e2e: privileged tests cannot run: CI must run as root")
			return 1
		}
		skipAllWhy = "needs root"
		return m.Run()
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
		return 1
	}
	modRoot = filepath.Dir(strings.TrimSpace(string(out)))
	tmp, err := os.MkdirTemp("", "lpe2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binDir = filepath.Join(tmp, "bin")
	builds := [][]string{
		{"build", "-o", filepath.Join(binDir, "lambdaplane"), "./cmd/lambdaplane"},
		{"build", "-trimpath", "-ldflags=-s", "-o", filepath.Join(binDir, "lambdaplane-init"), "./cmd/lambdaplane-init"},
		{"build", "-trimpath", "-o", filepath.Join(tmp, "probe", "bootstrap"), "./internal/e2e/testdata/probe"},
	}
	for _, b := range builds {
		cmd := exec.Command("go", b...)
		cmd.Dir = modRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %v: %v\n%s", b, err, out)
			return 1
		}
	}
	probeZip, err = zipFiles(map[string]zipEntry{"bootstrap": {path: filepath.Join(tmp, "probe", "bootstrap"), mode: 0o755}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Sweep what a killed earlier run left, unless another run of this
	// package is alive right now (it holds the lock for its whole run).
	if lock, err := os.OpenFile("/run/lambdaplane-e2e.lock", os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		defer lock.Close()
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			sweepStale()
		}
	}
	cleanup, err := makeInternet()
	if err != nil {
		fmt.Fprintln(os.Stderr, "internet namespace:", err)
		return 1
	}
	defer cleanup()
	return m.Run()
}

// sweepStale removes what an earlier run of this package left behind when it
// was killed before its cleanups ran (its prefixes are t/r + 4 hex digits).
func sweepStale() {
	if ents, err := os.ReadDir(filepath.Join(sandbox.CgroupRoot, "memory")); err == nil {
		for _, e := range ents {
			if e.IsDir() && stalePrefix.MatchString(e.Name()+"-") {
				if err := sandbox.CleanupPrefix(e.Name()); err != nil {
					fmt.Fprintf(os.Stderr, "e2e: sweeping cgroups %s: %v\n", e.Name(), err)
				}
			}
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		name := f[0]
		if staleInternet.MatchString(name) {
			exec.Command("ip", "netns", "del", name).Run()
			continue
		}
		if m := stalePrefix.FindStringSubmatch(name); m != nil && !seen[m[1]] {
			seen[m[1]] = true
			if err := netdev.Cleanup(m[1]); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: sweeping %s: %v\n", m[1], err)
			}
		}
	}
}

var (
	stalePrefix   = regexp.MustCompile(`^([tr][0-9a-f]{4})-`)
	staleInternet = regexp.MustCompile(`^lpinet[0-9a-f]{8}$`)
)

// makeInternet creates the namespace standing in for the internet: it owns
// 203.0.113.1 (a documentation address) and answers TCP on port 80.
func makeInternet() (func(), error) {
	name, _, err := netdev.NewScratchNetns("lpinet", netip.MustParseAddr(internetIP))
	if err != nil {
		return nil, err
	}
	internetNS = "/run/netns/" + name
	ln, err := listenIn(internetNS, internetTCP)
	if err != nil {
		exec.Command("ip", "netns", "del", name).Run()
		return nil, err
	}
	internetLn = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "internet sees %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	return func() {
		ln.Close()
		exec.Command("ip", "netns", "del", name).Run()
	}, nil
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

type zipEntry struct {
	path string
	data []byte
	mode os.FileMode
}

func zipFiles(files map[string]zipEntry) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, f := range files {
		data := f.data
		if f.path != "" {
			var err error
			if data, err = os.ReadFile(f.path); err != nil {
				return nil, err
			}
		}
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(f.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func requireRoot(t testing.TB) {
	t.Helper()
	if skipAllWhy != "" {
		t.Skip(skipAllWhy)
	}
}

// env is one running server for a test.
type env struct {
	t      testing.TB
	srv    *server.Server
	prefix string
	data   string
	lambda *lambda.Client
}

type serverConfig = server.Config

type envOpt func(*server.Config)

// startServer starts an in-process server with its own data directory and
// kernel prefix, its uplink in the test internet namespace.
func startServer(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	requireRoot(t)
	data := t.TempDir()
	prefix := "t" + randHex(4)
	cfg := server.Config{
		Listen: "127.0.0.1:0", DataDir: data, Prefix: prefix, PoolSize: 4,
		UplinkNetns: internetNS, InitPath: filepath.Join(binDir, "lambdaplane-init"),
		IdleTimeout: time.Minute, AsyncAckWait: 3 * time.Second,
		AsyncBackoff: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond},
		UplinkNet:    uplinkNet(),
		// Metrics have a listener of their own (MetricsEndpoint).
		MetricsListen: "127.0.0.1:0",
		// Servers of this and other test packages run at once: each takes
		// a service CIDR no other running server holds.
		AutoServiceCIDR: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, cfg, log)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	e := &env{t: t, srv: srv, prefix: prefix, data: data}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
	})
	// The execution roles the tests name (CreateFunction requires the role
	// to exist and trust Lambda; "vpc" may also manage network interfaces).
	for _, r := range []string{"r", "probe", "fn", "vpc"} {
		if _, err := srv.EnsureExecutionRole(ctx, srv.Account.ID, r, r == "vpc"); err != nil {
			t.Fatalf("create role %s: %v", r, err)
		}
	}
	acct := srv.Account
	e.lambda = lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(acct.Keys[0].ID, acct.Keys[0].Secret, ""),
	})
	return e
}

// Each test server gets its own uplink link net so that parallel servers
// never share addresses in the internet namespace.
var uplinkCounter = make(chan int, 1)

func init() { uplinkCounter <- 0 }

func uplinkNet() netip.Prefix {
	n := <-uplinkCounter
	uplinkCounter <- n + 1
	return netip.MustParsePrefix(fmt.Sprintf("169.254.%d.%d/30", 200+(n/64), (n%64)*4))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// lambdaFor returns a Lambda client signed with the given keys.
func (e *env) lambdaFor(keyID, secret string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(e.srv.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, ""),
	})
}

// cli runs Debian's AWS CLI against the server with the credentials file
// the server wrote. It returns stdout, stderr and the exit code.
func (e *env) cli(args ...string) (string, string, int) {
	e.t.Helper()
	full := append([]string{"--profile", "lambdaplane", "--region", "us-east-1", "--endpoint-url", e.srv.Endpoint, "--output", "json", "--no-cli-pager"}, args...)
	cmd := exec.Command("/usr/bin/aws", full...)
	cmd.Env = append(os.Environ(),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(e.data, "credentials"),
		"AWS_CONFIG_FILE="+filepath.Join(e.data, "config"),
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			e.t.Fatalf("run aws: %v", err)
		}
	}
	return stdout.String(), stderr.String(), code
}

// mustCLI runs the CLI and decodes its JSON output into v (if non-nil).
func (e *env) mustCLI(v any, args ...string) string {
	e.t.Helper()
	out, errOut, code := e.cli(args...)
	if code != 0 {
		e.t.Fatalf("aws %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if v != nil && strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			e.t.Fatalf("aws %s: decode %q: %v", strings.Join(args, " "), out, err)
		}
	}
	return out
}

// createProbe creates a probe function through the SDK.
func (e *env) createProbe(name string, mutate ...func(*lambda.CreateFunctionInput)) {
	e.t.Helper()
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Runtime:      "provided.al2023",
		Handler:      aws.String("bootstrap"),
		Role:         aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/probe"),
		Code:         &types.FunctionCode{ZipFile: probeZip},
		Timeout:      aws.Int32(10),
	}
	for _, m := range mutate {
		m(in)
	}
	if _, err := e.lambda.CreateFunction(context.Background(), in); err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
}

// invokeJSON invokes synchronously and decodes the payload.
func (e *env) invokeJSON(name string, event any) (map[string]any, *lambda.InvokeOutput) {
	e.t.Helper()
	b, _ := json.Marshal(event)
	out, err := e.lambda.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b})
	if err != nil {
		e.t.Fatalf("invoke %s: %v", name, err)
	}
	var m map[string]any
	if len(out.Payload) > 0 {
		if err := json.Unmarshal(out.Payload, &m); err != nil {
			e.t.Fatalf("invoke %s: payload %q: %v", name, out.Payload, err)
		}
	}
	return m, out
}

// eventually polls cond until it is true or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

// listenIn opens a TCP listener inside a network namespace.
func listenIn(nsPath, addr string) (net.Listener, error) {
	return netdev.ListenIn(nsPath, "tcp", addr)
}
