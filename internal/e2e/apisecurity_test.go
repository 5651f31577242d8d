package e2e

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	dto "github.com/prometheus/client_model/go"
)

// rawSign signs req with the account's root key as an SDK would, over the
// SHA-256 of body unless declare is set (then sent as X-Amz-Content-Sha256
// and signed as the payload hash).
func (e *env) rawSign(t *testing.T, req *http.Request, body []byte, service, region, declare string) {
	t.Helper()
	sum := sha256.Sum256(body)
	ph := hex.EncodeToString(sum[:])
	if declare != "" {
		ph = declare
		req.Header.Set("X-Amz-Content-Sha256", declare)
	}
	k := e.srv.Account.Keys[0]
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: k.ID, SecretAccessKey: k.Secret}, req, ph, service, region, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// lambdaError reads a Lambda JSON error response.
func lambdaError(t *testing.T, resp *http.Response) (code, typ, msg string) {
	t.Helper()
	defer resp.Body.Close()
	var body struct{ Type, Message string }
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("status %d: not a Lambda JSON error: %q", resp.StatusCode, b)
	}
	return resp.Header.Get("X-Amzn-ErrorType"), body.Type, body.Message
}

// TestAPIRefusesBeforeBody: an unsigned request declaring a 50 MB body is
// answered 403 in Lambda's format on the headers alone (the body is never
// sent), and the server's heap does not grow by it.
func TestAPIRefusesBeforeBody(t *testing.T) {
	e := startServer(t)
	addr := strings.TrimPrefix(e.srv.Endpoint, "http://")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a server waiting for the body fails the test
	fmt.Fprintf(c, "POST /2015-03-31/functions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 52428800\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response before the body was sent: %v", err)
	}
	code, typ, msg := lambdaError(t, resp)
	if resp.StatusCode != 403 || code != "MissingAuthenticationTokenException" || typ != "User" {
		t.Fatalf("%d %s %s %q, want 403 MissingAuthenticationTokenException", resp.StatusCode, code, typ, msg)
	}
	if !resp.Close {
		t.Error("the connection of a refused request is kept open")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
		t.Errorf("heap grew by %d MB answering a 50 MB request whose body was never sent", grown>>20)
	}
}

// TestAPISignatureRefusals: a tampered body, UNSIGNED-PAYLOAD, a foreign
// region and another service's scope are each refused with the service's
// code, status and message.
func TestAPISignatureRefusals(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	create := func(name string) []byte {
		b, _ := json.Marshal(map[string]any{
			"FunctionName": name, "Runtime": "provided.al2023", "Handler": "bootstrap",
			"Role": "arn:aws:iam::" + e.srv.Account.ID + ":role/probe", "Code": map[string]any{"ZipFile": probeZip},
		})
		return b
	}
	lambdaReq := func(body, send []byte, service, region, declare string) *http.Request {
		r, _ := http.NewRequest("POST", e.srv.Endpoint+"/2015-03-31/functions", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		e.rawSign(t, r, body, service, region, declare)
		if send != nil {
			r.Body = io.NopCloser(bytes.NewReader(send))
		}
		return r
	}
	good, bad := create("signed-fn"), create("signex-fn") // same length
	const mismatch = "The request signature we calculated does not match the signature you provided."
	cases := []struct {
		name string
		req  *http.Request
		msg  string
	}{
		{"tampered body, hash declared", lambdaReq(good, bad, "lambda", "us-east-1", hashOf(good)), mismatch},
		{"tampered body, hash not declared", lambdaReq(good, bad, "lambda", "us-east-1", ""), mismatch},
		{"UNSIGNED-PAYLOAD", lambdaReq(good, nil, "lambda", "us-east-1", "UNSIGNED-PAYLOAD"), "X-Amz-Content-SHA256: UNSIGNED-PAYLOAD is not accepted"},
		{"eu-west-1 scope", lambdaReq(good, nil, "lambda", "eu-west-1", ""), "Credential should be scoped to a valid region, not 'eu-west-1'. "},
		{"s3 scope", lambdaReq(good, nil, "s3", "us-east-1", ""), "Credential should be scoped to correct service: 'lambda'. "},
		{"ec2 scope on a Lambda path", lambdaReq(good, nil, "ec2", "us-east-1", ""), "Credential should be scoped to correct service: 'lambda'. "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(c.req)
			if err != nil {
				t.Fatal(err)
			}
			code, typ, msg := lambdaError(t, resp)
			if resp.StatusCode != 403 || code != "InvalidSignatureException" || typ != "User" || !strings.Contains(msg, c.msg) {
				t.Fatalf("%d %s %s %q, want 403 InvalidSignatureException saying %q", resp.StatusCode, code, typ, msg, c.msg)
			}
		})
	}
	ctx := context.Background()
	for _, n := range []string{"signed-fn", "signex-fn"} {
		var nf *types.ResourceNotFoundException
		if _, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(n)}); !errors.As(err, &nf) {
			t.Errorf("GetFunction %s after the refusals: %v, want ResourceNotFoundException", n, err)
		}
	}
	// The same request, as signed, is served (both ways of signing the
	// payload): the refusals were for what each case changed.
	for i, declare := range []string{"", hashOf(good)} {
		body := create(fmt.Sprintf("signed-fn-%d", i))
		if declare != "" {
			declare = hashOf(body)
		}
		resp, err := http.DefaultClient.Do(lambdaReq(body, nil, "lambda", "us-east-1", declare))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("signed CreateFunction (declared %q): %d %s", declare, resp.StatusCode, b)
		}
	}

	// The Query APIs answer in XML: IAM is scoped to us-east-1 (or the
	// server's region), EC2 to the server's region.
	query := func(service, region, form string) (int, string, string) {
		r, _ := http.NewRequest("POST", e.srv.Endpoint+"/", strings.NewReader(form))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		e.rawSign(t, r, []byte(form), service, region, "")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var x struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
			Errors  struct {
				Code    string `xml:"Error>Code"`
				Message string `xml:"Error>Message"`
			} `xml:"Errors"`
		}
		b, _ := io.ReadAll(resp.Body)
		_ = xml.Unmarshal(b, &x)
		if x.Code == "" {
			x.Code, x.Message = x.Errors.Code, x.Errors.Message
		}
		return resp.StatusCode, x.Code, x.Message
	}
	if st, code, msg := query("iam", "us-west-2", "Action=ListRoles&Version=2010-05-08"); st != 403 || code != "SignatureDoesNotMatch" || msg != "Credential should be scoped to a valid region, not 'us-west-2'. " {
		t.Errorf("IAM scoped to us-west-2: %d %s %q", st, code, msg)
	}
	if st, code, msg := query("iam", "us-east-1", "Action=ListRoles&Version=2010-05-08"); st != 200 {
		t.Errorf("IAM scoped to us-east-1: %d %s %q", st, code, msg)
	}
	if st, code, msg := query("ec2", "eu-west-1", "Action=DescribeVpcs&Version=2016-11-15"); st != 403 || code != "SignatureDoesNotMatch" || msg != "Credential should be scoped to a valid region, not 'eu-west-1'. " {
		t.Errorf("EC2 scoped to eu-west-1: %d %s %q", st, code, msg)
	}
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestAPISlowClientsCut: a signed request whose body trickles is cut by
// the read timeout (408 RequestTimeoutException, connection closed), and
// headers that trickle are cut by the read-header timeout.
func TestAPISlowClientsCut(t *testing.T) {
	t.Parallel()
	e := startServer(t, func(c *serverConfig) { c.ReadTimeout = time.Second; c.ReadHeaderTimeout = time.Second })
	addr := strings.TrimPrefix(e.srv.Endpoint, "http://")
	// One byte every 100 ms: the body would take hours, longer than the
	// test's own deadline, so the connection's end can only be the server's.
	body := bytes.Repeat([]byte(" "), 100000)
	r, _ := http.NewRequest("POST", e.srv.Endpoint+"/2015-03-31/functions", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	e.rawSign(t, r, body, "lambda", "us-east-1", "")
	c, err := net.Dial("tcp", addr)
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
		for i := range body {
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
		t.Fatalf("no answer to the slow body: %v", err)
	}
	code, _, msg := lambdaError(t, resp)
	if resp.StatusCode != 408 || code != "RequestTimeoutException" || !resp.Close {
		t.Fatalf("%d %s %q (close %v), want 408 RequestTimeoutException and the connection closed", resp.StatusCode, code, msg, resp.Close)
	}
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection stayed open after the timeout: %v", err)
	}

	h, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_ = h.SetReadDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(h, "GET /2015-03-31/functions/ HTTP/1.1\r\nHost: %s\r\n", addr) // and never the end of the headers
	if _, err := io.ReadAll(h); err != nil {
		t.Fatalf("the connection with unfinished headers was not closed by the server: %v", err)
	}
}

// seriesOf counts the series in a scrape and collects every label value.
func seriesOf(mf map[string]*dto.MetricFamily) (int, map[string]bool) {
	n, vals := 0, map[string]bool{}
	for _, f := range mf {
		n += len(f.Metric)
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				vals[lp.GetValue()] = true
			}
		}
	}
	return n, vals
}

// TestMetricsListener: /metrics is not served on the API listener; on its
// own listener it carries no label value from unauthenticated input
// (10,000 unsigned requests with random Actions add no series), and a
// deleted function's series are gone.
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	if e.srv.MetricsEndpoint == "" || e.srv.MetricsEndpoint == e.srv.Endpoint {
		t.Fatalf("metrics endpoint %q (API %q)", e.srv.MetricsEndpoint, e.srv.Endpoint)
	}
	resp, err := http.Get(e.srv.Endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if code, _, msg := lambdaError(t, resp); resp.StatusCode != 403 || code != "MissingAuthenticationTokenException" {
		t.Fatalf("GET /metrics on the API listener: %d %s %q", resp.StatusCode, code, msg)
	}
	signed, _ := http.NewRequest("GET", e.srv.Endpoint+"/metrics", nil)
	e.rawSign(t, signed, nil, "lambda", "us-east-1", "")
	resp, err = http.DefaultClient.Do(signed)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || strings.Contains(string(b), "lambdaplane_") {
		t.Fatalf("signed GET /metrics on the API listener: %d %.200s", resp.StatusCode, b)
	}

	e.createProbe("series-fn")
	e.invokeJSON("series-fn", map[string]any{"name": "x"})
	has := func(mf map[string]*dto.MetricFamily) bool {
		for _, f := range mf {
			for _, m := range f.Metric {
				for _, lp := range m.Label {
					if lp.GetName() == "function" && lp.GetValue() == "series-fn" {
						return true
					}
				}
			}
		}
		return false
	}
	if !has(scrape(t, e)) {
		t.Fatal("no series names the invoked function")
	}

	// Unsigned requests of each shape: Lambda REST, EC2 and IAM Query.
	// One of each first (their "unauthenticated" series are the bounded set).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	send := func(kind int, action string) error {
		var req *http.Request
		switch kind {
		case 0:
			req, _ = http.NewRequest("GET", e.srv.Endpoint+"/2015-03-31/functions/"+action+"?Action="+action, nil)
		case 1:
			req, _ = http.NewRequest("POST", e.srv.Endpoint+"/?Action="+action, strings.NewReader("Action="+action+"&Version=2016-11-15"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		default:
			req, _ = http.NewRequest("POST", e.srv.Endpoint+"/?Action="+action+"&Version=2010-05-08", strings.NewReader("Action="+action))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 && resp.StatusCode != 403 {
			return fmt.Errorf("unsigned %s: status %d", req.URL, resp.StatusCode)
		}
		return nil
	}
	for kind := range 3 {
		if err := send(kind, "DescribeVpcs"); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := seriesOf(scrape(t, e))
	const total, workers = 10000, 8
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var sent atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total && ctx.Err() == nil; i += workers {
				var rnd [8]byte
				_, _ = rand.Read(rnd[:])
				if err := send(i%3, "Zq"+hex.EncodeToString(rnd[:])); err != nil {
					firstErr.CompareAndSwap(nil, err)
					cancel()
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	if sent.Load() < 1000 {
		t.Fatalf("only %d requests sent within the time bound", sent.Load())
	}
	t.Logf("%d unsigned requests with random Actions sent", sent.Load())
	after, vals := seriesOf(scrape(t, e))
	if after != before {
		t.Errorf("%d series before, %d after the unsigned requests", before, after)
	}
	for v := range vals {
		if strings.HasPrefix(v, "Zq") {
			t.Errorf("a label value came from an unsigned request: %q", v)
		}
	}
	if !vals["unauthenticated"] {
		t.Error("the refused requests are not counted under operation=\"unauthenticated\"")
	}

	if _, err := e.lambda.DeleteFunction(context.Background(), &lambda.DeleteFunctionInput{FunctionName: aws.String("series-fn")}); err != nil {
		t.Fatal(err)
	}
	if has(scrape(t, e)) {
		t.Fatal("series of the deleted function remain")
	}
}

// TestAPILargeUpload: an honest client's 49 MB zip (about 65 MB of JSON
// once base64-encoded) goes through the body limit and deadline.
func TestAPILargeUpload(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zr, err := zip.NewReader(bytes.NewReader(probeZip), int64(len(probeZip)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if err := zw.Copy(f); err != nil {
			t.Fatal(err)
		}
	}
	pad, err := zw.CreateHeader(&zip.FileHeader{Name: "pad.bin", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(pad, rand.Reader, 49<<20-int64(len(probeZip))-4096); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := e.lambda.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("big"), Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
		Role: aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/probe"), Code: &types.FunctionCode{ZipFile: buf.Bytes()},
	})
	if err != nil {
		t.Fatalf("CreateFunction with a %d-byte zip: %v", buf.Len(), err)
	}
	if out.CodeSize != int64(buf.Len()) {
		t.Fatalf("CodeSize %d, want %d", out.CodeSize, buf.Len())
	}
}
