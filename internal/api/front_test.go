package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	testAcct = auth.Account{ID: "123456789012", Keys: []auth.AccessKey{{ID: "AKIAABCDEFGHIJKLMNOP", Secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}}}
	testKey  = testAcct.Keys[0]
)

type keys struct{}

func (keys) LookupKey(id string) (auth.Account, auth.AccessKey, bool) {
	if id == testKey.ID {
		return testAcct, testKey, true
	}
	return auth.Account{}, auth.AccessKey{}, false
}

// fakeService answers every verified request 200 with the body's length
// and writes errors as {status, "error"}: 403 for authentication, 413,
// 408, 500 otherwise. It records what it saw.
type fakeService struct {
	name string
	ops  []string
	mu   sync.Mutex
	errs []error
	got  [][]byte
}

func (f *fakeService) Name() string { return f.name }
func (f *fakeService) Operations() []string {
	return f.ops
}
func (f *fakeService) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	f.mu.Lock()
	f.got = append(f.got, body)
	f.mu.Unlock()
	fmt.Fprintf(w, "%d", len(body))
}
func (f *fakeService) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
	status := 500
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		status = 413
	case errors.Is(err, ErrBodyTimeout):
		status = 408
	case errors.Is(err, auth.ErrMissingAuth), errors.Is(err, auth.ErrBadSignature), errors.Is(err, auth.ErrUnknownKey),
		errors.Is(err, auth.ErrClockSkew), errors.Is(err, auth.ErrMalformedAuth):
		status = 403
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, err.Error())
}
func (f *fakeService) served() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}
func (f *fakeService) lastErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) == 0 {
		return nil
	}
	return f.errs[len(f.errs)-1]
}

type front struct {
	*Server
	lambda, ec2 *fakeService
	reg         *prometheus.Registry
	url         string
	addr        string
}

// newFront serves a front with a lambda and an ec2 fake on a loopback
// listener limited to maxUnauth unauthenticated connections.
func newFront(t *testing.T, readTimeout time.Duration, maxUnauth int) *front {
	t.Helper()
	v := auth.NewVerifier(keys{}, nil)
	v.SetRegion("us-east-1")
	f := &front{
		lambda: &fakeService{name: "lambda"},
		ec2:    &fakeService{name: "ec2", ops: []string{"DescribeVpcs"}},
		reg:    prometheus.NewRegistry(),
	}
	f.Server = New(v, slog.New(slog.NewTextHandler(io.Discard, nil)), f.reg, f.lambda, f.ec2)
	f.SetReadTimeout(readTimeout)
	f.SetReady(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: f.Server, ConnContext: ConnContext, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(LimitUnauthenticated(ln, maxUnauth)) }()
	t.Cleanup(func() { _ = hs.Close() })
	f.addr = ln.Addr().String()
	f.url = "http://" + f.addr
	return f
}

type signOpts struct {
	service, region string
	declare         string // X-Amz-Content-Sha256 to send and sign with; "" = none
	key             auth.AccessKey
}

// sign signs req as an SDK would, over the SHA-256 of body.
func sign(t *testing.T, req *http.Request, body []byte, o signOpts) {
	t.Helper()
	if o.service == "" {
		o.service = "lambda"
	}
	if o.region == "" {
		o.region = "us-east-1"
	}
	if o.key.ID == "" {
		o.key = testKey
	}
	sum := sha256.Sum256(body)
	ph := hex.EncodeToString(sum[:])
	if o.declare != "" {
		ph = o.declare
		req.Header.Set("X-Amz-Content-Sha256", o.declare)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: o.key.ID, SecretAccessKey: o.key.Secret}, req, ph, o.service, o.region, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestRefusedBeforeBody: an unsigned request declaring a 50 MB body is
// answered before any of the body is sent, and the server holds none of it.
func TestRefusedBeforeBody(t *testing.T) {
	f := newFront(t, time.Minute, 16)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a hang fails instead of blocking the suite
	fmt.Fprintf(c, "POST /2015-03-31/functions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 52428800\r\n\r\n", f.addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response to the headers alone: %v", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !errors.Is(f.lambda.lastErr(), auth.ErrMissingAuth) {
		t.Fatalf("status %d (%s), error %v; want 403 for a missing signature", resp.StatusCode, msg, f.lambda.lastErr())
	}
	if !resp.Close {
		t.Error("the refused connection is kept open")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
		t.Errorf("heap grew by %d bytes answering a 50 MB request that was never sent", grown)
	}
}

// TestRefusals: each request is refused with the error the service
// writes, naming what was wrong; the body reaches no service.
func TestRefusals(t *testing.T) {
	f := newFront(t, time.Minute, 16)
	body := []byte(`{"FunctionName":"f"}`)
	tampered := []byte(`{"FunctionName":"g"}`)
	post := func(mod func(*http.Request), o signOpts, send []byte) *http.Request {
		r, _ := http.NewRequest("POST", f.url+"/2015-03-31/functions", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		sign(t, r, body, o)
		if send != nil {
			r.Body = io.NopCloser(bytes.NewReader(send))
		}
		if mod != nil {
			mod(r)
		}
		return r
	}
	cases := []struct {
		name   string
		req    *http.Request
		svc    *fakeService
		status int
		want   error
		msg    string
	}{
		{"tampered body, hash declared", post(nil, signOpts{declare: hashHex(body)}, tampered), f.lambda, 403, auth.ErrBadSignature, "does not match X-Amz-Content-SHA256"},
		{"tampered body, no hash declared", post(nil, signOpts{}, tampered), f.lambda, 403, auth.ErrBadSignature, ""},
		{"unsigned payload", post(nil, signOpts{declare: "UNSIGNED-PAYLOAD"}, nil), f.lambda, 403, auth.ErrBadSignature, "UNSIGNED-PAYLOAD is not accepted"},
		{"region", post(nil, signOpts{region: "eu-west-1"}, nil), f.lambda, 403, auth.ErrBadSignature, "Credential should be scoped to a valid region, not 'eu-west-1'. "},
		{"service", post(nil, signOpts{service: "s3"}, nil), f.lambda, 403, auth.ErrBadSignature, "Credential should be scoped to correct service: 'lambda'. "},
		{"ec2 scope on a Lambda path", post(nil, signOpts{service: "ec2"}, nil), f.lambda, 403, auth.ErrBadSignature, "Credential should be scoped to correct service: 'lambda'. "},
		{"unknown key", post(nil, signOpts{key: auth.AccessKey{ID: "AKIANOTKNOWNNOTKNOWN", Secret: "x"}}, nil), f.lambda, 403, auth.ErrUnknownKey, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := c.svc.served()
			resp, err := http.DefaultClient.Do(c.req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !errors.Is(c.svc.lastErr(), c.want) || !strings.Contains(string(msg), c.msg) {
				t.Fatalf("status %d %q (error %v), want %d, %v saying %q", resp.StatusCode, msg, c.svc.lastErr(), c.status, c.want, c.msg)
			}
			if c.svc.served() != n {
				t.Fatal("the service was handed the refused request")
			}
		})
	}
	// The same request, untampered, is served: the refusals above were
	// for what each case changed.
	for _, o := range []signOpts{{}, {declare: hashHex(body)}} {
		resp, err := http.DefaultClient.Do(post(nil, o, nil))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(msg) != fmt.Sprint(len(body)) {
			t.Fatalf("valid request (declared %q): %d %s", o.declare, resp.StatusCode, msg)
		}
	}
}

// TestBodyLimit: a signed Invoke declaring more than 6 MB is refused
// before its body is read, naming the limit.
func TestBodyLimit(t *testing.T) {
	f := newFront(t, time.Minute, 16)
	body := bytes.Repeat([]byte("x"), MaxInvokeBody+1)
	r, _ := http.NewRequest("POST", f.url+"/2015-03-31/functions/f/invocations", bytes.NewReader(body))
	sign(t, r, body, signOpts{})
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || string(msg) != "Request must be smaller than 6291456 bytes for the Invoke operation" {
		t.Fatalf("%d %q", resp.StatusCode, msg)
	}
}

// TestSlowBodyCut: a signed request whose body trickles is cut by the read
// timeout: the server answers ErrBodyTimeout and closes the connection.
func TestSlowBodyCut(t *testing.T) {
	f := newFront(t, 300*time.Millisecond, 16)
	// One byte every 100 ms: the body would take hours, longer than the
	// test's own deadline, so the connection's end can only be the server's.
	body := bytes.Repeat([]byte("x"), 100000)
	r, _ := http.NewRequest("POST", f.url+"/2015-03-31/functions", bytes.NewReader(body))
	sign(t, r, body, signOpts{})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "POST /2015-03-31/functions HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", r.Host, len(body))
	for k, vs := range r.Header {
		fmt.Fprintf(c, "%s: %s\r\n", k, vs[0])
	}
	fmt.Fprint(c, "\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < len(body); i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write(body[i : i+1]); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 408 || !errors.Is(f.lambda.lastErr(), ErrBodyTimeout) || !resp.Close {
		t.Fatalf("status %d %q close=%v, want 408 and the connection closed", resp.StatusCode, msg, resp.Close)
	}
	if _, err := br.ReadByte(); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server kept the connection open, reading the rest of the body")
	}
	if f.lambda.served() != 0 {
		t.Fatal("the service was handed a partial body")
	}
}

// TestUnauthenticatedLimit: past the limit, a new connection is accepted
// only once an earlier one has authenticated or closed.
func TestUnauthenticatedLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitUnauthenticated(ln, 1)
	defer l.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial()
	first := <-accepted
	dial()
	select {
	case <-accepted:
		t.Fatal("a second unauthenticated connection was accepted past the limit of 1")
	case <-time.After(200 * time.Millisecond):
	}
	markAuthenticated(ConnContext(context.Background(), first))
	second := <-accepted // the authenticated one no longer counts
	dial()
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while the second is unauthenticated")
	case <-time.After(200 * time.Millisecond):
	}
	second.Close()
	<-accepted
	// Closing the listener ends an Accept waiting for a slot.
	dial()
	l.Close()
}

// seriesCount counts the series of reg.
func seriesCount(t *testing.T, reg *prometheus.Registry) (int, map[string]bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n, ops := 0, map[string]bool{}
	for _, mf := range mfs {
		n += len(mf.Metric)
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if lp.GetName() == "operation" {
					ops[lp.GetValue()] = true
				}
			}
		}
	}
	return n, ops
}

// TestMetricLabelsBounded: requests naming random Actions, unsigned or
// signed, add no series: unauthenticated ones count under
// "unauthenticated", authenticated unknown ones under "Unknown".
func TestMetricLabelsBounded(t *testing.T) {
	f := newFront(t, time.Minute, 16)
	do := func(action string, signed bool) int {
		body := []byte("Action=" + action + "&Version=2016-11-15")
		r := httptest.NewRequest("POST", "/?Action="+action, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if signed {
			sign(t, r, body, signOpts{service: "ec2"})
		}
		w := httptest.NewRecorder()
		f.ServeHTTP(w, r)
		return w.Code
	}
	// One of each kind first: the series they make are the bounded set.
	do("DescribeVpcs", false)
	do("DescribeVpcs", true)
	do("Nope", true)
	before, ops := seriesCount(t, f.reg)
	for i := 0; i < 10000; i++ {
		a := fmt.Sprintf("X%016x", rand.Uint64())
		if code := do(a, i%100 == 0); code != 200 && code != 403 {
			t.Fatalf("Action %s: status %d", a, code)
		}
	}
	after, opsAfter := seriesCount(t, f.reg)
	if after != before {
		t.Errorf("%d series before, %d after 10,000 requests with random Actions; operations %v", before, after, opsAfter)
	}
	for _, want := range []string{"DescribeVpcs", OpUnknown, OpUnauthenticated} {
		if !ops[want] {
			t.Errorf("no series with operation=%q: %v", want, ops)
		}
	}
}

// TestMetricsNotOnAPI: /metrics is an unsigned request like any other on
// the API listener, refused in the service's format.
func TestMetricsNotOnAPI(t *testing.T) {
	f := newFront(t, time.Minute, 16)
	resp, err := http.Get(f.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || !errors.Is(f.lambda.lastErr(), auth.ErrMissingAuth) {
		t.Fatalf("GET /metrics: %d (%v), want 403 missing authentication", resp.StatusCode, f.lambda.lastErr())
	}
}
