package e2e

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// This package's tests predate the exported harness; these names keep them
// short. New end-to-end tests go in packages of their own beside this one
// (they run in parallel with it) and use harness directly.
var (
	binDir      string
	probeZip    []byte
	internetNS  string
	modRoot     string
	skipAllWhy  string
	internetIP  = harness.InternetIP
	internetTCP = harness.InternetTCP
)

func TestMain(m *testing.M) {
	os.Exit(harness.Main(runner{m}))
}

// runner copies the fixtures into this package's names once Main built them.
type runner struct{ m *testing.M }

func (r runner) Run() int {
	binDir, probeZip, internetNS = harness.BinDir, harness.ProbeZip, harness.InternetNS
	modRoot, skipAllWhy = harness.ModRoot, harness.SkipWhy
	return r.m.Run()
}

func randHex(n int) string { return harness.RandHex(n) }

type zipEntry = harness.ZipEntry

func zipFiles(files map[string]zipEntry) ([]byte, error) { return harness.ZipFiles(files) }

func requireRoot(t testing.TB) { t.Helper(); harness.RequireRoot(t) }

// env is one running server for a test.
type env struct {
	*harness.Env
	t      testing.TB
	srv    *server.Server
	prefix string
	data   string
	lambda *lambda.Client
}

type serverConfig = server.Config

type envOpt = harness.Option

func startServer(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	h := harness.Start(t, opts...)
	return &env{Env: h, t: t, srv: h.Srv, prefix: h.Prefix, data: h.Data, lambda: h.Lambda}
}

func uplinkNet() netipPrefix { return harness.UplinkNet() }

func (e *env) lambdaFor(keyID, secret string) *lambda.Client { return e.LambdaFor(keyID, secret) }

func (e *env) cli(args ...string) (string, string, int) { e.t.Helper(); return e.CLI(args...) }

func (e *env) mustCLI(v any, args ...string) string { e.t.Helper(); return e.MustCLI(v, args...) }

func (e *env) createProbe(name string, mutate ...func(*lambda.CreateFunctionInput)) {
	e.t.Helper()
	e.CreateProbe(name, mutate...)
}

func (e *env) invokeJSON(name string, event any) (map[string]any, *lambda.InvokeOutput) {
	e.t.Helper()
	return e.InvokeJSON(name, event)
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	harness.Eventually(t, timeout, what, cond)
}

func listenIn(nsPath, addr string) (net.Listener, error) { return harness.ListenIn(nsPath, addr) }
