package bench

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// The warm-floor scenario measures what the warm scenario's client and
// function cost on this machine with no platform in between: a relay that
// takes the Invoke over HTTP and hands it to a waiting function process
// through the Runtime API, with no authentication, sandbox, logs, metrics
// or bookkeeping. Warm figures cannot beat it; the difference is
// lambdaplane's own cost.
var warmFloorScenario = Scenario{
	Name: "warm-floor", Title: "Warm invokes with no platform (reference)",
	About: "The warm scenario's client (aws-sdk-go-v2, SigV4-signed) and hello-world function binary (aws-lambda-go, GOMAXPROCS=1 as a 128 MB environment gets), connected by the least a platform can do: a net/http relay on loopback that passes the Invoke's payload to a function process waiting on /next and returns its /response. No signature check, sandbox, logs, metrics or scheduling. 16 function processes run directly on the host. The gap to the warm scenario is lambdaplane's own cost; the floor itself is what this machine's kernel, Go runtime, SDK and aws-lambda-go cost.",
	Quick: 30 * time.Second,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		zipped, ok := e.Zips[FnHello]
		if !ok {
			return errors.New("hello function not built")
		}
		dir, err := os.MkdirTemp("", "lambdaplane-bench-floor-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		boot, err := extractBootstrap(zipped, dir)
		if err != nil {
			return err
		}
		relay, err := startFloorRelay(boot, 16)
		if err != nil {
			return err
		}
		defer relay.close()
		client := lambda.New(e.Lambda.Options(), func(o *lambda.Options) { o.BaseEndpoint = aws.String(relay.url) })
		invoke := func(ctx context.Context) (time.Duration, error) {
			t := time.Now()
			out, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("floor"), Payload: helloEvent})
			d := time.Since(t)
			if err == nil && out.FunctionError != nil {
				err = fmt.Errorf("function error %s: %s", *out.FunctionError, out.Payload)
			}
			return d, err
		}
		return warmRuns(ctx, e, r, invoke, []int{1, 4, 16})
	},
	Plot: plotWarm,
}

// extractBootstrap writes the package's bootstrap into dir.
func extractBootstrap(zipped []byte, dir string) (string, error) {
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		return "", err
	}
	for _, f := range zr.File {
		if f.Name != "bootstrap" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return "", err
		}
		defer rc.Close()
		path := filepath.Join(dir, "bootstrap")
		out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return "", err
		}
		if _, err := io.Copy(out, rc); err != nil {
			out.Close()
			return "", err
		}
		return path, out.Close()
	}
	return "", errors.New("no bootstrap in the hello package")
}

type floorInvoke struct {
	id      string
	payload []byte
	done    chan []byte
}

type floorRelay struct {
	url string
	mu  sync.Mutex
	// idle holds the function processes waiting on /next, most recent
	// last: an invoke goes to the one that finished last, as lambdaplane
	// picks a warm environment, so c clients keep c processes busy.
	idle    []chan *floorInvoke
	backlog []*floorInvoke
	waiting map[string]*floorInvoke
	seq     atomic.Uint64
	servers []*http.Server
	procs   []*exec.Cmd
}

// startFloorRelay serves the Invoke API and the Runtime API on loopback
// and starts n function processes.
func startFloorRelay(bootstrap string, n int) (*floorRelay, error) {
	f := &floorRelay{waiting: map[string]*floorInvoke{}}
	rt := http.NewServeMux()
	rt.HandleFunc("GET /2018-06-01/runtime/invocation/next", f.next)
	rt.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", f.response)
	api := http.NewServeMux()
	api.HandleFunc("POST /2015-03-31/functions/{name}/invocations", f.invoke)
	var addrs []string
	for _, h := range []http.Handler{rt, api} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.close()
			return nil, err
		}
		s := &http.Server{Handler: h}
		f.servers = append(f.servers, s)
		go s.Serve(l)
		addrs = append(addrs, l.Addr().String())
	}
	f.url = "http://" + addrs[1]
	env := []string{"AWS_LAMBDA_RUNTIME_API=" + addrs[0], "GOMAXPROCS=1", "PATH=/usr/bin:/bin",
		"AWS_LAMBDA_FUNCTION_NAME=floor", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128"}
	for range n {
		c, err := startFresh(bootstrap, env)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("start %s: %w", bootstrap, err)
		}
		f.procs = append(f.procs, c)
	}
	return f, nil
}

// startFresh starts a program this process has just written. A child that
// another goroutine forks meanwhile (the in-process server starts
// sandboxes and refills its pools) holds a copy of the file's write
// descriptor until it execs, and exec of the file fails with ETXTBSY in
// that window (golang/go#22315); it is retried a few times with a growing
// pause, as cmd/go does.
func startFresh(path string, env []string) (*exec.Cmd, error) {
	for try := 0; ; try++ {
		c := exec.Command(path)
		c.Env = env
		err := c.Start()
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || try == 4 {
			return c, err
		}
		time.Sleep(time.Duration(10<<try) * time.Millisecond)
	}
}

func (f *floorRelay) invoke(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	inv := &floorInvoke{id: strconv.FormatUint(f.seq.Add(1), 10), payload: b, done: make(chan []byte, 1)}
	f.mu.Lock()
	f.waiting[inv.id] = inv
	if k := len(f.idle); k > 0 {
		ch := f.idle[k-1]
		f.idle = f.idle[:k-1]
		ch <- inv
	} else {
		f.backlog = append(f.backlog, inv)
	}
	f.mu.Unlock()
	select {
	case out := <-inv.done:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		w.Write(out)
	case <-r.Context().Done():
	}
}

func (f *floorRelay) next(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	var inv *floorInvoke
	var ch chan *floorInvoke
	if len(f.backlog) > 0 {
		inv, f.backlog = f.backlog[0], f.backlog[1:]
	} else {
		ch = make(chan *floorInvoke, 1)
		f.idle = append(f.idle, ch)
	}
	f.mu.Unlock()
	if inv == nil {
		select {
		case inv = <-ch:
		case <-r.Context().Done():
			return
		}
	}
	h := w.Header()
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:floor")
	h.Set("Content-Type", "application/json")
	w.Write(inv.payload)
}

func (f *floorRelay) response(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	inv := f.waiting[r.PathValue("id")]
	delete(f.waiting, r.PathValue("id"))
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	w.Write([]byte(`{"status":"OK"}`))
	if inv != nil {
		inv.done <- b
	}
}

func (f *floorRelay) close() {
	for _, c := range f.procs {
		c.Process.Kill()
		c.Wait()
	}
	for _, s := range f.servers {
		s.Close()
	}
}
