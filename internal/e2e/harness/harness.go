package harness

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
	"sync"
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

// Runner is what Main runs: *testing.M, or a wrapper of it.
type Runner interface{ Run() int }

// Fixtures built once by Main.
var (
	BinDir     string // lambdaplane, lambdaplane-init
	ProbeZip   []byte // aws-lambda-go probe function, bootstrap at the root
	InternetNS string // netns path standing in for the internet (InternetIP)
	ModRoot    string // the module's root directory
	SkipWhy    string // set when privileged tests cannot run here
)

const (
	InternetIP  = "203.0.113.1"    // a documentation address, lives only in InternetNS
	InternetTCP = "203.0.113.1:80" // answers "internet sees <peer>" and closes
)

// Main builds the fixtures, runs the tests and removes what it made. Call it
// from TestMain: func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }.
func Main(m Runner) int {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "e2e: privileged tests cannot run: CI must run as root")
			return 1
		}
		SkipWhy = "needs root"
		return m.Run()
	}
	cleanup, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer cleanup()
	return m.Run()
}

func setup() (func(), error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	ModRoot = filepath.Dir(strings.TrimSpace(string(out)))
	tmp, err := os.MkdirTemp("", "lpe2e")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (func(), error) { os.RemoveAll(tmp); return nil, err }
	BinDir = filepath.Join(tmp, "bin")
	builds := [][]string{
		{"build", "-o", filepath.Join(BinDir, "lambdaplane"), "./cmd/lambdaplane"},
		{"build", "-trimpath", "-ldflags=-s", "-o", filepath.Join(BinDir, "lambdaplane-init"), "./cmd/lambdaplane-init"},
		{"build", "-trimpath", "-o", filepath.Join(tmp, "probe", "bootstrap"), "./internal/e2e/testdata/probe"},
	}
	for _, b := range builds {
		cmd := exec.Command("go", b...)
		cmd.Dir = ModRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fail(fmt.Errorf("go %v: %v\n%s", b, err, out))
		}
	}
	if ProbeZip, err = ZipFiles(map[string]ZipEntry{"bootstrap": {Path: filepath.Join(tmp, "probe", "bootstrap"), Mode: 0o755}}); err != nil {
		return fail(err)
	}
	// Sweep what a killed earlier run left, unless another e2e package is
	// running right now (it holds the lock for its whole run; a shared lock
	// each, the sweep needs the exclusive one).
	lock, err := os.OpenFile("/run/lambdaplane-e2e.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			sweepStale()
		}
		syscall.Flock(int(lock.Fd()), syscall.LOCK_SH)
	}
	inetCleanup, err := makeInternet()
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return fail(fmt.Errorf("internet namespace: %w", err))
	}
	return func() {
		inetCleanup()
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(tmp)
	}, nil
}

// sweepStale removes what an earlier run left behind when it was killed
// before its cleanups ran (test prefixes are t/r + 4 hex digits).
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
// InternetIP and answers TCP on port 80.
func makeInternet() (func(), error) {
	name, _, err := netdev.NewScratchNetns("lpinet", netip.MustParseAddr(InternetIP))
	if err != nil {
		return nil, err
	}
	InternetNS = "/run/netns/" + name
	ln, err := ListenIn(InternetNS, InternetTCP)
	if err != nil {
		exec.Command("ip", "netns", "del", name).Run()
		return nil, err
	}
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

// RandHex returns n random hex digits.
func RandHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// ZipEntry is one file of a zip built by ZipFiles: its content from Path or Data.
type ZipEntry struct {
	Path string
	Data []byte
	Mode os.FileMode
}

// ZipFiles builds a zip archive.
func ZipFiles(files map[string]ZipEntry) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, f := range files {
		data := f.Data
		if f.Path != "" {
			var err error
			if data, err = os.ReadFile(f.Path); err != nil {
				return nil, err
			}
		}
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
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

// Zip builds a zip of text files (name → content; names ending in
// "bootstrap" or ".sh" are executable) or fails the test.
func Zip(t testing.TB, files map[string]string) []byte {
	t.Helper()
	m := map[string]ZipEntry{}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "bootstrap") || strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		m[name] = ZipEntry{Data: []byte(content), Mode: mode}
	}
	z, err := ZipFiles(m)
	if err != nil {
		t.Fatalf("zip: %v", err)
	}
	return z
}

// RequireRoot skips the test where privileged tests cannot run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if SkipWhy != "" {
		t.Skip(SkipWhy)
	}
}

// Env is one running server for a test.
type Env struct {
	T      testing.TB
	Srv    *server.Server
	Prefix string
	Data   string
	Lambda *lambda.Client // signed with the account's root keys
}

// Option changes the server's configuration before it starts.
type Option func(*server.Config)

// Start starts an in-process server with its own data directory and kernel
// prefix, its uplink in the test internet namespace; it is closed (and
// checked to leave nothing behind by the server's own Close) when the test
// ends. The execution roles "r", "probe", "fn" and "vpc" exist.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	RequireRoot(t)
	data := t.TempDir()
	prefix := "t" + RandHex(4)
	cfg := server.Config{
		Listen: "127.0.0.1:0", DataDir: data, Prefix: prefix, PoolSize: 4,
		UplinkNetns: InternetNS, InitPath: filepath.Join(BinDir, "lambdaplane-init"),
		IdleTimeout: time.Minute, AsyncAckWait: 3 * time.Second,
		AsyncBackoff: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond},
		UplinkNet:    UplinkNet(),
		// Metrics have a listener of their own (MetricsEndpoint).
		MetricsListen: "127.0.0.1:0",
		URLListen:     "127.0.0.1:0",
		// Servers of this and other test packages run at once: each takes
		// a service CIDR no other running server holds.
		AutoServiceCIDR: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	log := TestLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, cfg, log)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	e := &Env{T: t, Srv: srv, Prefix: prefix, Data: data}
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
	e.Lambda = e.LambdaFor(acct.Keys[0].ID, acct.Keys[0].Secret)
	return e
}

// Role returns the ARN of one of the account's execution roles.
func (e *Env) Role(name string) string {
	return "arn:aws:iam::" + e.Srv.Account.ID + ":role/" + name
}

// AWSConfig returns an SDK config for the server signed with the account's
// root keys: explicit endpoint, region and credentials, nothing from the
// environment (so no client can fall back to AWS or the metadata address).
func (e *Env) AWSConfig() aws.Config {
	k := e.Srv.Account.Keys[0]
	return aws.Config{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(e.Srv.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(k.ID, k.Secret, ""),
	}
}

var (
	uplinkMu sync.Mutex
	uplinkN  int
)

// UplinkNet returns a link net for a server's uplink that no other server of
// this test binary holds (packages differ in their random base).
func UplinkNet() netip.Prefix {
	uplinkMu.Lock()
	defer uplinkMu.Unlock()
	if uplinkN == 0 {
		// Each test binary starts at its own random block of 64 nets; the
		// server refuses an uplink net another live server claimed, so a
		// collision is an error, never a shared address.
		var b [1]byte
		_, _ = rand.Read(b[:])
		uplinkN = int(b[0]%16) * 64
	}
	n := uplinkN
	uplinkN++
	n %= 1024
	return netip.MustParsePrefix(fmt.Sprintf("169.254.%d.%d/30", 200+(n/64), (n%64)*4))
}

// TestLogger returns a logger that writes warnings and errors to the test's log.
func TestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// LambdaFor returns a Lambda client signed with the given keys.
func (e *Env) LambdaFor(keyID, secret string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(e.Srv.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, ""),
	})
}

// CLI runs Debian's AWS CLI against the server with the credentials file
// the server wrote. It returns stdout, stderr and the exit code.
func (e *Env) CLI(args ...string) (string, string, int) {
	e.T.Helper()
	full := append([]string{"--profile", "lambdaplane", "--region", "us-east-1", "--endpoint-url", e.Srv.Endpoint, "--output", "json", "--no-cli-pager"}, args...)
	cmd := exec.Command("/usr/bin/aws", full...)
	cmd.Env = append(os.Environ(),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(e.Data, "credentials"),
		"AWS_CONFIG_FILE="+filepath.Join(e.Data, "config"),
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
			e.T.Fatalf("run aws: %v", err)
		}
	}
	return stdout.String(), stderr.String(), code
}

// MustCLI runs the CLI and decodes its JSON output into v (if non-nil).
func (e *Env) MustCLI(v any, args ...string) string {
	e.T.Helper()
	out, errOut, code := e.CLI(args...)
	if code != 0 {
		e.T.Fatalf("aws %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if v != nil && strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			e.T.Fatalf("aws %s: decode %q: %v", strings.Join(args, " "), out, err)
		}
	}
	return out
}

// Python runs a python3 script (Debian's boto3 is importable) with the
// server's endpoint in LP_ENDPOINT and the account's root keys in the usual
// AWS_* variables; it returns stdout or fails the test.
func (e *Env) Python(script string, extraEnv ...string) string {
	e.T.Helper()
	k := e.Srv.Account.Keys[0]
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Env = append(os.Environ(),
		"LP_ENDPOINT="+e.Srv.Endpoint,
		"AWS_ACCESS_KEY_ID="+k.ID, "AWS_SECRET_ACCESS_KEY="+k.Secret,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		e.T.Fatalf("python: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// CreateProbe creates a probe function through the SDK.
func (e *Env) CreateProbe(name string, mutate ...func(*lambda.CreateFunctionInput)) {
	e.T.Helper()
	e.CreateFunction(name, "provided.al2023", "bootstrap", ProbeZip, mutate...)
}

// CreateFunction creates a function through the SDK with the "fn" role.
func (e *Env) CreateFunction(name, runtime, handler string, zip []byte, mutate ...func(*lambda.CreateFunctionInput)) {
	e.T.Helper()
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Runtime:      types.Runtime(runtime),
		Handler:      aws.String(handler),
		Role:         aws.String(e.Role("probe")),
		Code:         &types.FunctionCode{ZipFile: zip},
		Timeout:      aws.Int32(10),
	}
	for _, m := range mutate {
		m(in)
	}
	if _, err := e.Lambda.CreateFunction(context.Background(), in); err != nil {
		e.T.Fatalf("create %s: %v", name, err)
	}
}

// InvokeJSON invokes synchronously and decodes the payload.
func (e *Env) InvokeJSON(name string, event any) (map[string]any, *lambda.InvokeOutput) {
	e.T.Helper()
	b, _ := json.Marshal(event)
	out, err := e.Lambda.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b})
	if err != nil {
		e.T.Fatalf("invoke %s: %v", name, err)
	}
	var m map[string]any
	if len(out.Payload) > 0 {
		if err := json.Unmarshal(out.Payload, &m); err != nil {
			e.T.Fatalf("invoke %s: payload %q: %v", name, out.Payload, err)
		}
	}
	return m, out
}

// Eventually polls cond until it is true or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
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

// ListenIn opens a TCP listener inside a network namespace.
func ListenIn(nsPath, addr string) (net.Listener, error) {
	return netdev.ListenIn(nsPath, "tcp", addr)
}
