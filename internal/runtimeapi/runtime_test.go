package runtimeapi

// Tests that drive the Server with the real aws-lambda-go runtime client: a
// Go Lambda function (testdata/handler) built in TestMain and run as a
// subprocess with AWS_LAMBDA_RUNTIME_API pointing at the server.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var handlerBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "runtimeapi-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	handlerBin = filepath.Join(dir, "handler")
	cmd := exec.Command(goBin, "build", "-o", handlerBin, "./testdata/handler")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building testdata/handler: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// lockedBuffer collects a subprocess's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testEnv struct {
	srv    *Server
	exited chan struct{} // closed when the runtime process has exited
	output *lockedBuffer
}

// startEnv starts a Server on a loopback listener and the handler process
// against it, and waits until the runtime has called GET /next.
func startEnv(tb testing.TB, o Options) *testEnv {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := New(o)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	out := &lockedBuffer{}
	cmd := exec.Command(handlerBin)
	cmd.Env = []string{
		"AWS_LAMBDA_RUNTIME_API=" + l.Addr().String(),
		"_HANDLER=handler",
		"AWS_LAMBDA_FUNCTION_NAME=test",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"TZ=:UTC",
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.Close()
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		s.Close()
		if err := <-served; err != nil {
			tb.Errorf("Serve: %v", err)
		}
		if tb.Failed() {
			tb.Logf("runtime output:\n%s", out.String())
		}
	})

	select {
	case <-s.Ready():
	case <-exited:
		tb.Fatalf("runtime exited before GET /next: %v\n%s", waitErr, out.String())
	case <-time.After(10 * time.Second):
		tb.Fatal("runtime did not call GET /next within 10s")
	}
	return &testEnv{srv: s, exited: exited, output: out}
}

var reqSeq struct {
	sync.Mutex
	n int
}

func newRequestID() string {
	reqSeq.Lock()
	defer reqSeq.Unlock()
	reqSeq.n++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", reqSeq.n)
}

func event(t testing.TB, op, data string, n int) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"op": op, "data": data, "n": n})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *testEnv) invoke(t *testing.T, payload []byte) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.srv.Invoke(ctx, &Invocation{
		RequestID:   newRequestID(),
		FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:test",
		TraceID:     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
		Payload:     payload,
		Deadline:    time.Now().Add(15 * time.Second),
	})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	return res
}

func TestRuntimeEchoSequential(t *testing.T) {
	e := startEnv(t, Options{})
	for i := range 100 {
		data := "hello-" + strconv.Itoa(i)
		res := e.invoke(t, event(t, "echo", data, 0))
		if res.Err != nil {
			t.Fatalf("invoke %d: function error %v", i, res.Err)
		}
		want := `{"op":"echo","data":"` + data + `"}`
		if string(res.Payload) != want {
			t.Fatalf("invoke %d: payload %s, want %s", i, res.Payload, want)
		}
	}
	select {
	case <-e.exited:
		t.Fatalf("runtime exited:\n%s", e.output)
	default:
	}
}

func TestRuntimeHandlerError(t *testing.T) {
	e := startEnv(t, Options{})

	res := e.invoke(t, event(t, "error", "disk full", 0))
	if res.Err == nil {
		t.Fatalf("want function error, got payload %s", res.Payload)
	}
	if res.Err.Type != "CustomError" || res.Err.Message != "custom failure: disk full" {
		t.Errorf("error = %+v, want CustomError / custom failure: disk full", res.Err)
	}
	var doc map[string]any
	if err := json.Unmarshal(res.Err.Body, &doc); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, res.Err.Body)
	}
	if doc["errorType"] != "CustomError" || doc["errorMessage"] != "custom failure: disk full" {
		t.Errorf("body = %s", res.Err.Body)
	}

	res = e.invoke(t, event(t, "plainerror", "nope", 0))
	if res.Err == nil || res.Err.Type != "errorString" || res.Err.Message != "nope" {
		t.Errorf("errors.New: got %+v", res.Err)
	}

	// A handled error does not end the environment.
	res = e.invoke(t, event(t, "echo", "after", 0))
	if res.Err != nil || string(res.Payload) != `{"op":"echo","data":"after"}` {
		t.Errorf("after error: %+v %s", res.Err, res.Payload)
	}
}

func TestRuntimePanic(t *testing.T) {
	e := startEnv(t, Options{})
	res := e.invoke(t, event(t, "panic", "kaput", 0))
	if res.Err == nil {
		t.Fatalf("want function error, got payload %s", res.Payload)
	}
	if res.Err.Type != "string" || res.Err.Message != "boom: kaput" {
		t.Errorf("panic error = %+v", res.Err)
	}
	var doc struct {
		StackTrace []json.RawMessage `json:"stackTrace"`
	}
	if err := json.Unmarshal(res.Err.Body, &doc); err != nil || len(doc.StackTrace) == 0 {
		t.Errorf("want a stack trace in %s (err %v)", res.Err.Body, err)
	}
	// aws-lambda-go exits after reporting a panic.
	select {
	case <-e.exited:
	case <-time.After(5 * time.Second):
		t.Error("runtime did not exit after a panic")
	}
}

func TestRuntimeContext(t *testing.T) {
	e := startEnv(t, Options{})
	deadline := time.Now().Add(42 * time.Second)
	inv := &Invocation{
		RequestID:       newRequestID(),
		FunctionARN:     "arn:aws:lambda:eu-west-1:123456789012:function:ctx:prod",
		TraceID:         "Root=1-00000000-000000000000000000000001",
		ClientContext:   `{"client":{"app_title":"t"},"env":{"e":"1"},"custom":{"k":"v"}}`,
		CognitoIdentity: `{"cognitoIdentityId":"us-east-1:id","cognitoIdentityPoolId":"us-east-1:pool"}`,
		Payload:         event(t, "context", "", 0),
		Deadline:        deadline,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.srv.Invoke(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("function error: %v", res.Err)
	}
	var out struct {
		RequestID  string            `json:"requestId"`
		ARN        string            `json:"arn"`
		DeadlineMs int64             `json:"deadlineMs"`
		Custom     map[string]string `json:"custom"`
		IdentityID string            `json:"identityId"`
	}
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("%v: %s", err, res.Payload)
	}
	if out.RequestID != inv.RequestID || out.ARN != inv.FunctionARN {
		t.Errorf("request id / arn = %q %q", out.RequestID, out.ARN)
	}
	if out.DeadlineMs != deadline.UnixMilli() {
		t.Errorf("handler ctx deadline = %d ms, want %d", out.DeadlineMs, deadline.UnixMilli())
	}
	if out.Custom["k"] != "v" {
		t.Errorf("client context custom = %v", out.Custom)
	}
	if out.IdentityID != "us-east-1:id" {
		t.Errorf("cognito identity = %q", out.IdentityID)
	}
}

func TestRuntimeResponseTooLarge(t *testing.T) {
	t.Run("default limit", func(t *testing.T) {
		e := startEnv(t, Options{})
		// 6 MiB of payload plus JSON quotes is within the limit...
		res := e.invoke(t, event(t, "big", "", 6*1024*1024))
		if res.Err != nil || len(res.Payload) != 6*1024*1024+2 {
			t.Fatalf("6 MiB response: err %v, %d bytes", res.Err, len(res.Payload))
		}
		// ...7 MiB is not.
		res = e.invoke(t, event(t, "big", "", 7*1024*1024))
		if res.Err == nil {
			t.Fatalf("7 MiB response accepted (%d bytes)", len(res.Payload))
		}
		want := "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
		if res.Err.Type != "Function.ResponseSizeTooLarge" || res.Err.Message != want {
			t.Errorf("error = %+v", res.Err)
		}
		if !json.Valid(res.Err.Body) || !strings.Contains(string(res.Err.Body), "Function.ResponseSizeTooLarge") {
			t.Errorf("body = %s", res.Err.Body)
		}
	})
	t.Run("configured limit", func(t *testing.T) {
		e := startEnv(t, Options{MaxResponseBytes: 1024})
		if res := e.invoke(t, event(t, "big", "", 1000)); res.Err != nil {
			t.Fatalf("1000 bytes: %v", res.Err)
		}
		res := e.invoke(t, event(t, "big", "", 1023))
		if res.Err == nil || res.Err.Type != ErrorTypeResponseSizeTooLarge ||
			!strings.Contains(res.Err.Message, "(1024 bytes)") {
			t.Fatalf("1025 bytes: %+v", res.Err)
		}
	})
}

func TestRuntimeInvokeTimeout(t *testing.T) {
	e := startEnv(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := e.srv.Invoke(ctx, &Invocation{
		RequestID: newRequestID(),
		Payload:   event(t, "sleep", "500ms", 0),
		Deadline:  time.Now().Add(10 * time.Second),
	})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUndelivered) {
		t.Fatalf("Invoke = %v, want context.DeadlineExceeded (delivered)", err)
	}
	// The runtime still holds the abandoned invocation.
	if _, err := e.srv.Invoke(context.Background(), &Invocation{RequestID: newRequestID()}); !errors.Is(err, ErrBusy) {
		t.Fatalf("Invoke while the abandoned one runs = %v, want ErrBusy", err)
	}
	// Once the runtime answers it, the environment takes invocations again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := e.srv.Invoke(ctx, &Invocation{RequestID: newRequestID(), Payload: event(t, "echo", "ok", 0)})
		cancel()
		if errors.Is(err, ErrBusy) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil || res.Err != nil || string(res.Payload) != `{"op":"echo","data":"ok"}` {
			t.Fatalf("invoke after the abandoned one: %v %+v %s", err, res, res.Payload)
		}
		break
	}
}

// BenchmarkWarmInvoke measures Invoke round trips (Invoke → GET /next answered
// → handler → POST /response → Invoke returns) against the real aws-lambda-go
// runtime in a subprocess, over loopback.
func BenchmarkWarmInvoke(b *testing.B) {
	e := startEnv(b, Options{})
	payload := []byte(`{"op":"echo","data":"x"}`)
	want := `{"op":"echo","data":"x"}`
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour)
	ids := make([]string, b.N+1)
	for i := range ids {
		ids[i] = "bench-" + strconv.Itoa(i)
	}
	run := func(i int) {
		res, err := e.srv.Invoke(ctx, &Invocation{
			RequestID:   ids[i],
			FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:bench",
			Payload:     payload,
			Deadline:    deadline,
		})
		if err != nil || res.Err != nil || string(res.Payload) != want {
			b.Fatalf("invoke: %v %+v", err, res)
		}
	}
	run(b.N) // warm: connection established, code paths hot
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run(i)
	}
}
