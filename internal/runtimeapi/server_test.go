package runtimeapi

// Raw HTTP tests of every Runtime API status code, without a runtime process.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

type rawEnv struct {
	srv    *Server
	base   string // http://addr/2018-06-01/runtime/
	client *http.Client
}

func startRaw(t *testing.T, o Options) *rawEnv {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(o)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	tr := &http.Transport{}
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		tr.CloseIdleConnections()
	})
	return &rawEnv{srv: s, base: "http://" + l.Addr().String() + "/2018-06-01/runtime/", client: &http.Client{Transport: tr}}
}

type rawResp struct {
	status int
	header http.Header
	body   []byte
}

func (e *rawEnv) do(t *testing.T, method, path string, hdr http.Header, body io.Reader) rawResp {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResp{resp.StatusCode, resp.Header, b}
}

// errorType checks a JSON error response and returns its errorType.
func (r rawResp) errorType(t *testing.T) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var doc struct{ ErrorMessage, ErrorType string }
	if err := json.Unmarshal(r.body, &doc); err != nil || doc.ErrorMessage == "" {
		t.Errorf("error body %q: %v", r.body, err)
	}
	return doc.ErrorType
}

type invokeResult struct {
	res *Result
	err error
}

// startInvoke runs Invoke in the background.
func (e *rawEnv) startInvoke(inv *Invocation) <-chan invokeResult {
	ch := make(chan invokeResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := e.srv.Invoke(ctx, inv)
		ch <- invokeResult{res, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan invokeResult) invokeResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Invoke did not return")
	}
	return invokeResult{}
}

// next performs GET /next and checks it returns the invocation with id.
func (e *rawEnv) next(t *testing.T, id string) rawResp {
	t.Helper()
	r := e.do(t, http.MethodGet, "invocation/next", nil, nil)
	if r.status != http.StatusOK || r.header.Get("Lambda-Runtime-Aws-Request-Id") != id {
		t.Fatalf("GET /next = %d %v %s, want 200 for %s", r.status, r.header, r.body, id)
	}
	return r
}

func TestNextHeadersAndResponse(t *testing.T) {
	e := startRaw(t, Options{})
	select {
	case <-e.srv.Ready():
		t.Fatal("Ready before GET /next")
	default:
	}
	deadline := time.UnixMilli(1_900_000_000_123)
	inv := &Invocation{
		RequestID:       "req-1",
		FunctionARN:     "arn:aws:lambda:us-east-1:123456789012:function:f",
		TraceID:         "Root=1-abc",
		ClientContext:   `{"custom":{"a":"b"}}`,
		CognitoIdentity: `{"cognitoIdentityId":"i"}`,
		Payload:         []byte(`{"k":1}`),
		Deadline:        deadline,
	}
	done := e.startInvoke(inv)
	r := e.next(t, "req-1")
	<-e.srv.Ready()
	for k, want := range map[string]string{
		"Content-Type":                        "application/json",
		"Lambda-Runtime-Deadline-Ms":          "1900000000123",
		"Lambda-Runtime-Invoked-Function-Arn": inv.FunctionARN,
		"Lambda-Runtime-Trace-Id":             inv.TraceID,
		"Lambda-Runtime-Client-Context":       inv.ClientContext,
		"Lambda-Runtime-Cognito-Identity":     inv.CognitoIdentity,
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if string(r.body) != `{"k":1}` {
		t.Errorf("body = %s", r.body)
	}

	// Wrong id: 400, the invocation stays open.
	if r := e.do(t, http.MethodPost, "invocation/other/response", nil, strings.NewReader("x")); r.status != 400 || r.errorType(t) != "InvalidRequestID" {
		t.Errorf("wrong id: %d %s", r.status, r.body)
	}
	// Second GET /next before answering: 403.
	if r := e.do(t, http.MethodGet, "invocation/next", nil, nil); r.status != 403 || r.errorType(t) != "InvalidStateTransition" {
		t.Errorf("/next while unanswered: %d %s", r.status, r.body)
	}

	r = e.do(t, http.MethodPost, "invocation/req-1/response", nil, strings.NewReader(`{"ok":true}`))
	if r.status != http.StatusAccepted || strings.TrimSpace(string(r.body)) != `{"status":"OK"}` {
		t.Errorf("response: %d %s", r.status, r.body)
	}
	got := wait(t, done)
	if got.err != nil || got.res.Err != nil || string(got.res.Payload) != `{"ok":true}` {
		t.Fatalf("Invoke = %+v %v", got.res, got.err)
	}

	// Posting twice, as response or as error: 400.
	for _, p := range []string{"invocation/req-1/response", "invocation/req-1/error"} {
		if r := e.do(t, http.MethodPost, p, nil, strings.NewReader("{}")); r.status != 400 || r.errorType(t) != "InvalidRequestID" {
			t.Errorf("second post to %s: %d %s", p, r.status, r.body)
		}
	}
}

func TestOptionalHeadersOmitted(t *testing.T) {
	e := startRaw(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan invokeResult, 1)
	go func() {
		res, err := e.srv.Invoke(ctx, &Invocation{RequestID: "r"}) // deadline from ctx
		done <- invokeResult{res, err}
	}()
	r := e.next(t, "r")
	if _, ok := r.header["Lambda-Runtime-Client-Context"]; ok {
		t.Error("Client-Context sent although empty")
	}
	if _, ok := r.header["Lambda-Runtime-Cognito-Identity"]; ok {
		t.Error("Cognito-Identity sent although empty")
	}
	dl, _ := ctx.Deadline()
	if got := r.header.Get("Lambda-Runtime-Deadline-Ms"); got != strconv.FormatInt(dl.UnixMilli(), 10) {
		t.Errorf("deadline = %s, want ctx deadline %d", got, dl.UnixMilli())
	}
	e.do(t, http.MethodPost, "invocation/r/response", nil, nil)
	if got := wait(t, done); got.err != nil || len(got.res.Payload) != 0 || got.res.Err != nil {
		t.Errorf("empty response: %+v %v", got.res, got.err)
	}
}

func TestErrorEndpoint(t *testing.T) {
	cases := []struct {
		name             string
		header           string
		body             string
		wantType         string
		wantMsg          string
		wantBodyVerbatim bool
	}{
		{"json body", "", `{"errorMessage":"m","errorType":"ValueError","stackTrace":["a"]}`, "ValueError", "m", true},
		{"json body wins over header", "Unhandled", `{"errorMessage":"m","errorType":"KeyError"}`, "KeyError", "m", true},
		{"json without type uses header", "Runtime.ExitError", `{"errorMessage":"exit 1"}`, "Runtime.ExitError", "exit 1", true},
		{"not json", "Runtime.ExitError", `segfault`, "Runtime.ExitError", "segfault", false},
		{"not json no header", "", `oops`, "Unhandled", "oops", false},
		{"empty", "", ``, "Unhandled", "", false},
	}
	e := startRaw(t, Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done := e.startInvoke(&Invocation{RequestID: "id-" + c.name})
			e.next(t, "id-"+c.name)
			hdr := http.Header{}
			if c.header != "" {
				hdr.Set("Lambda-Runtime-Function-Error-Type", c.header)
			}
			r := e.do(t, http.MethodPost, "invocation/id-"+c.name+"/error", hdr, strings.NewReader(c.body))
			if r.status != http.StatusAccepted {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			got := wait(t, done)
			if got.err != nil || got.res.Err == nil {
				t.Fatalf("Invoke = %+v %v", got.res, got.err)
			}
			fe := got.res.Err
			if fe.Type != c.wantType || fe.Message != c.wantMsg {
				t.Errorf("error = %q %q, want %q %q", fe.Type, fe.Message, c.wantType, c.wantMsg)
			}
			if c.wantBodyVerbatim {
				if string(fe.Body) != c.body {
					t.Errorf("body = %s, want verbatim", fe.Body)
				}
				return
			}
			var doc struct {
				ErrorMessage *string   `json:"errorMessage"`
				ErrorType    *string   `json:"errorType"`
				StackTrace   *[]string `json:"stackTrace"`
			}
			if err := json.Unmarshal(fe.Body, &doc); err != nil || doc.ErrorMessage == nil || doc.ErrorType == nil || doc.StackTrace == nil {
				t.Fatalf("normalised body %s: %v", fe.Body, err)
			}
			if *doc.ErrorMessage != c.wantMsg || *doc.ErrorType != c.wantType {
				t.Errorf("normalised body = %s", fe.Body)
			}
		})
	}
}

func TestResponseTooLarge(t *testing.T) {
	e := startRaw(t, Options{MaxResponseBytes: 16})
	for _, chunked := range []bool{false, true} {
		id := "big"
		if chunked {
			id = "big-chunked"
		}
		done := e.startInvoke(&Invocation{RequestID: id})
		e.next(t, id)
		var body io.Reader = strings.NewReader(strings.Repeat("x", 17))
		if chunked {
			body = io.MultiReader(body) // unknown length: chunked encoding
		}
		r := e.do(t, http.MethodPost, "invocation/"+id+"/response", nil, body)
		if r.status != http.StatusRequestEntityTooLarge || r.errorType(t) != "RequestEntityTooLarge" ||
			!strings.Contains(string(r.body), "(16 bytes)") {
			t.Errorf("chunked=%v: %d %s", chunked, r.status, r.body)
		}
		got := wait(t, done)
		if got.err != nil || got.res.Err == nil || got.res.Err.Type != "Function.ResponseSizeTooLarge" ||
			got.res.Err.Message != "Response payload size exceeded maximum allowed payload size (16 bytes)." {
			t.Errorf("chunked=%v: Invoke = %+v %v", chunked, got.res, got.err)
		}
		// The runtime may carry on.
		if r := e.do(t, http.MethodPost, "invocation/"+id+"/response", nil, strings.NewReader("ok")); r.status != 400 {
			t.Errorf("post after 413: %d", r.status)
		}
	}
	// Exactly at the limit is fine.
	done := e.startInvoke(&Invocation{RequestID: "at-limit"})
	e.next(t, "at-limit")
	if r := e.do(t, http.MethodPost, "invocation/at-limit/response", nil, io.MultiReader(strings.NewReader(strings.Repeat("y", 16)))); r.status != 202 {
		t.Errorf("16 bytes: %d %s", r.status, r.body)
	}
	if got := wait(t, done); got.err != nil || len(got.res.Payload) != 16 {
		t.Errorf("16 bytes: %+v %v", got.res, got.err)
	}
}

func TestTrailerError(t *testing.T) {
	e := startRaw(t, Options{})
	done := e.startInvoke(&Invocation{RequestID: "t"})
	e.next(t, "t")
	req, _ := http.NewRequest(http.MethodPost, e.base+"invocation/t/response", io.MultiReader(strings.NewReader("partial")))
	req.Trailer = http.Header{
		"Lambda-Runtime-Function-Error-Type": {"ReadError"},
		// base64 of {"errorMessage":"read failed","errorType":"ReadError"}
		"Lambda-Runtime-Function-Error-Body": {"eyJlcnJvck1lc3NhZ2UiOiJyZWFkIGZhaWxlZCIsImVycm9yVHlwZSI6IlJlYWRFcnJvciJ9"},
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := wait(t, done)
	if got.err != nil || got.res.Err == nil || got.res.Err.Type != "ReadError" || got.res.Err.Message != "read failed" {
		t.Errorf("Invoke = %+v %v", got.res, got.err)
	}
}

func TestInitError(t *testing.T) {
	e := startRaw(t, Options{})
	// An invocation queued before the runtime failed to initialise fails
	// with the init error instead of waiting for its timeout.
	done := e.startInvoke(&Invocation{RequestID: "never"})
	hdr := http.Header{"Lambda-Runtime-Function-Error-Type": {"Runtime.ImportModuleError"}}
	body := `{"errorMessage":"Unable to import module 'app'","errorType":"Runtime.ImportModuleError","stackTrace":[]}`
	r := e.do(t, http.MethodPost, "init/error", hdr, strings.NewReader(body))
	if r.status != http.StatusAccepted || strings.TrimSpace(string(r.body)) != `{"status":"OK"}` {
		t.Fatalf("init/error: %d %s", r.status, r.body)
	}
	select {
	case fe := <-e.srv.InitError():
		if fe.Type != "Runtime.ImportModuleError" || fe.Message != "Unable to import module 'app'" || string(fe.Body) != body {
			t.Errorf("InitError = %+v", fe)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing on InitError()")
	}
	got := wait(t, done)
	if got.err != nil || got.res.Err == nil || got.res.Err.Type != "Runtime.ImportModuleError" {
		t.Errorf("queued Invoke = %+v %v", got.res, got.err)
	}
	// A second init error is accepted but not delivered again.
	if r := e.do(t, http.MethodPost, "init/error", nil, strings.NewReader("again")); r.status != 202 {
		t.Errorf("second init/error: %d", r.status)
	}
}

func TestRouting(t *testing.T) {
	e := startRaw(t, Options{})
	cases := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "invocation/nope", 404, ""},
		{"GET", "invocation/id/bogus", 404, ""},
		{"POST", "invocation//response", 404, ""},
		{"POST", "invocation/a/b/response", 404, ""},
		{"GET", "../../foo", 404, ""},
		{"GET", "init/other", 404, ""},
		{"POST", "invocation/next", 405, "GET"},
		{"PUT", "invocation/next", 405, "GET"},
		{"GET", "invocation/id/response", 405, "POST"},
		{"GET", "invocation/id/error", 405, "POST"},
		{"GET", "init/error", 405, "POST"},
	}
	for _, c := range cases {
		r := e.do(t, c.method, c.path, nil, nil)
		if r.status != c.status {
			t.Errorf("%s %s = %d, want %d (%s)", c.method, c.path, r.status, c.status, r.body)
			continue
		}
		r.errorType(t)
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow = %q, want %q", c.method, c.path, got, c.allow)
		}
	}
	select {
	case <-e.srv.Ready():
		t.Error("Ready after requests that were not GET /next")
	default:
	}
}

func TestBusyAndCancel(t *testing.T) {
	e := startRaw(t, Options{})

	// Cancelled before the runtime took it: withdrawn, the slot is free.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := e.srv.Invoke(ctx, &Invocation{RequestID: "withdrawn"})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUndelivered) {
		t.Fatalf("Invoke = %v, want DeadlineExceeded and ErrUndelivered", err)
	}

	done := e.startInvoke(&Invocation{RequestID: "a"})
	e.next(t, "a") // not the withdrawn one
	if _, err := e.srv.Invoke(context.Background(), &Invocation{RequestID: "b"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Invoke = %v, want ErrBusy", err)
	}
	e.do(t, http.MethodPost, "invocation/a/response", nil, strings.NewReader("1"))
	if got := wait(t, done); got.err != nil || string(got.res.Payload) != "1" {
		t.Fatalf("Invoke a = %+v %v", got.res, got.err)
	}
}

func TestCloseEndsLongPollAndInvoke(t *testing.T) {
	e := startRaw(t, Options{})
	polled := make(chan error, 1)
	go func() {
		resp, err := e.client.Get(e.base + "invocation/next")
		if err == nil {
			resp.Body.Close()
			err = errors.New("GET /next returned " + resp.Status)
		}
		polled <- err
	}()
	<-e.srv.Ready()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.srv.Close()
	select {
	case err := <-polled:
		if err == nil || strings.Contains(err.Error(), "returned") {
			t.Errorf("long poll after Close: %v, want a connection error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll not ended by Close")
	}
	if _, err := e.srv.Invoke(ctx, &Invocation{RequestID: "late"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close = %v, want ErrClosed", err)
	}
}

func TestInvokeUnblockedByClose(t *testing.T) {
	e := startRaw(t, Options{})
	done := e.startInvoke(&Invocation{RequestID: "x"})
	e.next(t, "x")
	e.srv.Close()
	if got := wait(t, done); !errors.Is(got.err, ErrClosed) {
		t.Errorf("Invoke = %v, want ErrClosed", got.err)
	}
}

func TestParseFunctionErrorNonObjectJSON(t *testing.T) {
	fe := parseFunctionError("X", []byte(`"just a string"`))
	if fe.Type != "X" || !bytes.Equal(fe.Body, []byte(`"just a string"`)) {
		t.Errorf("%+v", fe)
	}
}

// An Invoke that arrives after the runtime reported an init error fails at
// once with that error instead of waiting for a /next that never comes.
func TestInvokeAfterInitError(t *testing.T) {
	e := startRaw(t, Options{})
	body := `{"errorMessage":"boom","errorType":"Runtime.HandlerNotFound","stackTrace":[]}`
	if r := e.do(t, http.MethodPost, "init/error", nil, strings.NewReader(body)); r.status != http.StatusAccepted {
		t.Fatalf("init/error: %d", r.status)
	}
	<-e.srv.InitError()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := e.srv.Invoke(ctx, &Invocation{RequestID: "late"})
	if err != nil || res == nil || res.Err == nil || res.Err.Type != "Runtime.HandlerNotFound" {
		t.Fatalf("Invoke after init error = %+v, %v", res, err)
	}
}

func TestInvokeWhileRuntimeGone(t *testing.T) {
	e := startRaw(t, Options{})
	errGone := errors.New("gone")

	// The runtime dies before fetching: withdrawn, the slot is free.
	dead := make(chan struct{})
	close(dead)
	_, err := e.srv.InvokeWhile(context.Background(), &Invocation{RequestID: "never"}, dead, errGone)
	if !errors.Is(err, errGone) || !errors.Is(err, ErrUndelivered) {
		t.Fatalf("InvokeWhile = %v, want gone and ErrUndelivered", err)
	}

	// The runtime dies holding the invocation: gone, not undelivered.
	alive := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		_, err := e.srv.InvokeWhile(context.Background(), &Invocation{RequestID: "held"}, alive, errGone)
		res <- err
	}()
	e.next(t, "held")
	close(alive)
	select {
	case err := <-res:
		if !errors.Is(err, errGone) || errors.Is(err, ErrUndelivered) {
			t.Fatalf("InvokeWhile = %v, want gone only", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("InvokeWhile still waiting after the runtime was gone")
	}
}
