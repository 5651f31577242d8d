package runtimeapi

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// BenchmarkServerOverhead measures Invoke round trips against an in-process
// fake runtime that speaks the Runtime API with net/http over loopback, the
// way aws-lambda-go does (keep-alive, chunked POST), but without a second
// process: it isolates the server's own cost from process scheduling.
func BenchmarkServerOverhead(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := New(Options{})
	go s.Serve(l)
	defer s.Close()
	base := "http://" + l.Addr().String() + "/2018-06-01/runtime/invocation/"
	client := &http.Client{Transport: &http.Transport{}}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := client.Get(base + "next")
			if err != nil {
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
			// io.MultiReader hides the length: chunked, like aws-lambda-go.
			resp, err = client.Post(base+id+"/response", "application/json", io.MultiReader(bytes.NewReader(body)))
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	defer close(stop)
	ctx := context.Background()
	payload := []byte(`{"op":"echo","data":"x"}`)
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := s.Invoke(ctx, &Invocation{RequestID: strconv.Itoa(i), Payload: payload, Deadline: deadline})
		if err != nil || res.Err != nil || len(res.Payload) != len(payload) {
			b.Fatalf("%v %+v", err, res)
		}
	}
}

// discardWriter is a minimal http.ResponseWriter.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

// reusableBody is a request body that can be rewound without allocating.
type reusableBody struct{ bytes.Reader }

func (*reusableBody) Close() error { return nil }

// BenchmarkHandlerPath measures the server's own work for one invocation —
// Invoke's hand-off, GET /next and POST /response handlers, the result
// hand-back — without HTTP parsing, syscalls or a network: Invoke runs in
// one goroutine, the handlers are called directly from another.
func BenchmarkHandlerPath(b *testing.B) {
	s := New(Options{})
	defer s.Close()
	payload := []byte(`{"op":"echo","data":"x"}`)
	deadline := time.Now().Add(time.Hour)
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	nextReq, _ := http.NewRequest(http.MethodGet, "http://x/2018-06-01/runtime/invocation/next", nil)
	body := &reusableBody{}
	respReqs := make([]*http.Request, b.N)
	for i := range respReqs {
		respReqs[i], _ = http.NewRequest(http.MethodPost, "http://x/2018-06-01/runtime/invocation/"+ids[i]+"/response", body)
		respReqs[i].ContentLength = int64(len(payload))
	}
	w := &discardWriter{h: http.Header{}}
	errc := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		ctx := context.Background()
		for i := 0; i < b.N; i++ {
			if _, err := s.Invoke(ctx, &Invocation{RequestID: ids[i], Payload: payload, Deadline: deadline}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		s.ServeHTTP(w, nextReq)
		body.Reset(payload)
		clear(w.h)
		s.ServeHTTP(w, respReqs[i])
		if w.status != http.StatusAccepted {
			b.Fatalf("status %d", w.status)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
