package runtimeapi

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordSink notes what a streamed response delivered and when.
type recordSink struct {
	mu     sync.Mutex
	ct     string
	chunks []string
	got    chan string
}

func (s *recordSink) Begin(ct string) { s.mu.Lock(); s.ct = ct; s.mu.Unlock() }
func (s *recordSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.chunks = append(s.chunks, string(p))
	s.mu.Unlock()
	s.got <- string(p)
	return len(p), nil
}

// TestStreamingResponse: a response posted in the streaming mode reaches
// the invocation's sink piece by piece while the runtime is still sending
// it; an error in the trailers after the first piece is the result's error.
func TestStreamingResponse(t *testing.T) {
	for _, fail := range []bool{false, true} {
		e := startRaw(t, Options{})
		sink := &recordSink{got: make(chan string, 10)}
		done := e.startInvoke(&Invocation{RequestID: "s", Stream: sink})
		e.next(t, "s")
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodPost, e.base+"invocation/s/response", pr)
		req.Header.Set("Lambda-Runtime-Function-Response-Mode", "streaming")
		req.Header.Set("Content-Type", "text/plain")
		if fail {
			req.Trailer = http.Header{"Lambda-Runtime-Function-Error-Type": nil, "Lambda-Runtime-Function-Error-Body": nil}
		}
		posted := make(chan *http.Response, 1)
		go func() {
			resp, err := e.client.Do(req)
			if err != nil {
				t.Error(err)
				close(posted)
				return
			}
			posted <- resp
		}()
		if _, err := pw.Write([]byte("first")); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-sink.got:
			if c != "first" {
				t.Fatalf("first piece %q", c)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the first piece did not reach the sink while the response was still open")
		}
		_, _ = pw.Write([]byte("second"))
		if fail {
			// base64 of {"errorMessage":"broke","errorType":"StreamError"}
			req.Trailer.Set("Lambda-Runtime-Function-Error-Type", "StreamError")
			req.Trailer.Set("Lambda-Runtime-Function-Error-Body", "eyJlcnJvck1lc3NhZ2UiOiJicm9rZSIsImVycm9yVHlwZSI6IlN0cmVhbUVycm9yIn0=")
		}
		pw.Close()
		if resp := <-posted; resp == nil || resp.StatusCode != 202 {
			t.Fatalf("POST = %v", resp)
		} else {
			resp.Body.Close()
		}
		got := wait(t, done)
		if got.err != nil || !got.res.Streamed || len(got.res.Payload) != 0 || sink.ct != "text/plain" ||
			strings.Join(sink.chunks, "") != "firstsecond" {
			t.Fatalf("fail=%v: Invoke = %+v %v, sink %q %v", fail, got.res, got.err, sink.ct, sink.chunks)
		}
		if fail != (got.res.Err != nil) || (fail && got.res.Err.Type != "StreamError") {
			t.Fatalf("fail=%v: error %+v", fail, got.res.Err)
		}
	}
}

// TestStreamingWithoutSink: a streamed response to an invocation without
// a sink (a plain Invoke) is buffered.
func TestStreamingWithoutSink(t *testing.T) {
	e := startRaw(t, Options{})
	done := e.startInvoke(&Invocation{RequestID: "b"})
	e.next(t, "b")
	req, _ := http.NewRequest(http.MethodPost, e.base+"invocation/b/response", io.MultiReader(strings.NewReader("all of it")))
	req.Header.Set("Lambda-Runtime-Function-Response-Mode", "streaming")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := wait(t, done)
	if got.err != nil || got.res.Streamed || string(got.res.Payload) != "all of it" {
		t.Fatalf("Invoke = %+v %v", got.res, got.err)
	}
}
