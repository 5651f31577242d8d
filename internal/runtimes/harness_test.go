package runtimes

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// This file is a tiny fake Runtime API and a launcher that runs a runtime
// interface client with the real interpreter, without a sandbox: the runtime
// is relocated (Runtime.Relocate) to temporary task, runtime and /opt dirs.

// invocation is one event handed out by GET /next.
type invocation struct {
	ID       string
	Payload  string
	Deadline time.Time
	Headers  map[string]string // extra headers (client context, identity)
}

// outcome is what the client posted back.
type outcome struct {
	Kind    string // "response", "error" or "init-error"
	ID      string
	Body    []byte
	ErrType string // Lambda-Runtime-Function-Error-Type
}

type fakeAPI struct {
	srv   *httptest.Server
	queue chan invocation
	out   chan outcome
	nexts chan time.Time // a time stamp per GET /next
	done  chan struct{}
}

func newFakeAPI(tb testing.TB) *fakeAPI {
	a := &fakeAPI{
		queue: make(chan invocation, 16),
		out:   make(chan outcome, 64),
		nexts: make(chan time.Time, 1024),
		done:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		select {
		case a.nexts <- time.Now():
		default:
		}
		select {
		case inv := <-a.queue:
			h := w.Header()
			h.Set("Lambda-Runtime-Aws-Request-Id", inv.ID)
			h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.Deadline.UnixMilli(), 10))
			h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:fn-test")
			h.Set("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
			for k, v := range inv.Headers {
				h.Set(k, v)
			}
			h.Set("Content-Type", "application/json")
			io.WriteString(w, inv.Payload)
		case <-r.Context().Done():
		case <-a.done:
			w.WriteHeader(http.StatusGone)
		}
	})
	post := func(kind string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			a.out <- outcome{Kind: kind, ID: r.PathValue("id"), Body: body,
				ErrType: r.Header.Get("Lambda-Runtime-Function-Error-Type")}
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"status":"OK"}`)
		}
	}
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", post("response"))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", post("error"))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", post("init-error"))
	a.srv = httptest.NewServer(mux)
	tb.Cleanup(func() {
		close(a.done)
		a.srv.Close()
	})
	return a
}

func (a *fakeAPI) addr() string { return a.srv.Listener.Addr().String() }

// requireRuntime returns the runtime id from the default table, or skips the
// test when the host lacks its interpreter (fails instead under CI).
func requireRuntime(tb testing.TB, id string) Runtime {
	tb.Helper()
	r, err := Default().Lookup(id)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI must have the interpreter: %v", err)
		}
		tb.Skip(err)
	}
	return r
}

// funcEnv is a function's code, layer and runtime files on disk.
type funcEnv struct {
	tb      testing.TB
	api     *fakeAPI
	rt      Runtime // relocated
	task    string
	rtDir   string
	opt     string
	handler string
	extra   []string
}

// files maps slash-separated relative paths to contents.
type files map[string]string

func writeFiles(tb testing.TB, dir string, fs files) {
	tb.Helper()
	for name, content := range fs {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func newFuncEnv(tb testing.TB, runtimeID, handler string, code, layer files) *funcEnv {
	tb.Helper()
	rt := requireRuntime(tb, runtimeID)
	dir := tb.TempDir()
	task, rtDir, opt := filepath.Join(dir, "task"), filepath.Join(dir, "runtime"), filepath.Join(dir, "opt")
	for _, d := range []string{task, rtDir, opt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	writeFiles(tb, task, code)
	writeFiles(tb, opt, layer)
	if err := Default().WriteRuntimeDir(rtDir); err != nil {
		tb.Fatal(err)
	}
	return &funcEnv{tb: tb, api: newFakeAPI(tb), rt: rt.Relocate(task, rtDir, opt),
		task: task, rtDir: rtDir, opt: opt, handler: handler}
}

// proc is one running function process.
type proc struct {
	tb      testing.TB
	env     *funcEnv
	cmd     *exec.Cmd
	logPath string
	started time.Time
	exited  chan struct{}
	waitErr error
}

var procSeq atomic.Int64

func (e *funcEnv) start() *proc {
	tb := e.tb
	tb.Helper()
	logPath := filepath.Join(tb.TempDir(), "log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	env := append([]string{}, e.rt.Env...)
	env = append(env,
		"_HANDLER="+e.handler,
		"AWS_LAMBDA_RUNTIME_API="+e.api.addr(),
		"LAMBDA_TASK_ROOT="+e.task,
		"LAMBDA_RUNTIME_DIR="+e.rtDir,
		"AWS_LAMBDA_FUNCTION_NAME=fn-test",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/fn-test",
		"AWS_LAMBDA_LOG_STREAM_NAME=2024/01/01/[$LATEST]0123456789abcdef",
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_EXECUTION_ENV=AWS_Lambda_"+e.rt.ID,
		"TZ=:UTC",
		"LANG=en_US.UTF-8", // as internal/invoke sets it; Debian lacks the locale
		"HOME="+tb.TempDir(),
	)
	env = append(env, e.extra...)
	cmd := exec.Command(e.rt.Bootstrap[0], e.rt.Bootstrap[1:]...)
	cmd.Env = env
	cmd.Dir = e.task
	// A file, not a pipe: whatever the process wrote before posting its
	// result is readable once the result arrives.
	cmd.Stdout, cmd.Stderr = logf, logf
	p := &proc{tb: tb, env: e, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Kill()
		<-p.exited
	}
	if os.Getenv("RUNTIMES_SHOW_LOGS") != "" {
		p.tb.Logf("function log:\n%s", p.log())
	}
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// invoke queues payload and waits for the posted outcome.
func (p *proc) invoke(payload string) outcome {
	return p.invokeWith(invocation{Payload: payload})
}

func (p *proc) invokeWith(inv invocation) outcome {
	p.tb.Helper()
	if inv.ID == "" {
		inv.ID = fmt.Sprintf("req-%d-%d", os.Getpid(), procSeq.Add(1))
	}
	if inv.Deadline.IsZero() {
		inv.Deadline = time.Now().Add(60 * time.Second)
	}
	p.env.api.queue <- inv
	o := p.wait()
	if o.ID != inv.ID && o.Kind != "init-error" {
		p.tb.Fatalf("outcome for request %q, want %q", o.ID, inv.ID)
	}
	return o
}

// wait returns the next outcome the process posts.
func (p *proc) wait() outcome {
	p.tb.Helper()
	select {
	case o := <-p.env.api.out:
		return o
	case <-p.exited:
		// It may have posted just before exiting.
		select {
		case o := <-p.env.api.out:
			return o
		default:
		}
		p.tb.Fatalf("process exited (%v) without posting; log:\n%s", p.waitErr, p.log())
	case <-time.After(30 * time.Second):
		p.tb.Fatalf("no outcome within 30s; log:\n%s", p.log())
	}
	return outcome{}
}

// waitExit waits for the process to end and returns its exit error.
func (p *proc) waitExit() error {
	p.tb.Helper()
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(30 * time.Second):
		p.tb.Fatalf("process did not exit; log:\n%s", p.log())
	}
	return errors.New("unreachable")
}
