package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

var (
	testAcct = Account{ID: "123456789012", Name: "test", Keys: []AccessKey{{ID: "AKIAABCDEFGHIJKLMNOP", Secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}}}
	testKey  = testAcct.Keys[0]
	signTime = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
)

// staticKeys is a KeyLookup over fixed accounts.
type staticKeys []Account

func (s staticKeys) LookupKey(id string) (Account, AccessKey, bool) {
	for _, a := range s {
		for _, k := range a.Keys {
			if k.ID == id {
				return a, k, true
			}
		}
	}
	return Account{}, AccessKey{}, false
}

type verifyResult struct {
	id  Identity
	err error
}

// verifyServer starts a server whose handler verifies every request with v
// and reports the outcome on the returned channel.
func verifyServer(t *testing.T, v *Verifier) (*httptest.Server, <-chan verifyResult) {
	t.Helper()
	ch := make(chan verifyResult, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		id, err := v.Verify(r, body)
		ch <- verifyResult{id, err}
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type signedReq struct {
	method, path, contentType string
	body                      []byte
	header                    map[string]string
	service, region           string
	key                       AccessKey
	at                        time.Time
	payloadHash               string // default: SHA-256 of body
}

// build makes and signs a client request as an SDK would.
func (s signedReq) build(t *testing.T, base string) *http.Request {
	t.Helper()
	var body io.Reader
	if s.body != nil {
		body = bytes.NewReader(s.body)
	}
	req, err := http.NewRequest(s.method, base+s.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if s.contentType != "" {
		req.Header.Set("Content-Type", s.contentType)
	}
	for k, v := range s.header {
		req.Header.Set(k, v)
	}
	ph := s.payloadHash
	if ph == "" {
		ph = hashHex(s.body)
	}
	key, at, svc := s.key, s.at, s.service
	if key.ID == "" {
		key = testKey
	}
	if at.IsZero() {
		at = signTime
	}
	if svc == "" {
		svc = "lambda"
	}
	region := s.region
	if region == "" {
		region = "us-east-1"
	}
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}, req, ph, svc, region, at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func send(t *testing.T, req *http.Request, ch <-chan verifyResult) verifyResult {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("server saw no request")
		return verifyResult{}
	}
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// offsetClock is signTime plus an offset the test may change while the
// server goroutine reads it.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time      { return signTime.Add(time.Duration(c.off.Load())) }
func (c *offsetClock) set(d time.Duration) { c.off.Store(int64(d)) }

const arnPath = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/configuration"

func TestVerifyHeaderOK(t *testing.T) {
	v := NewVerifier(staticKeys{testAcct}, fixedClock(signTime.Add(3*time.Minute)))
	srv, ch := verifyServer(t, v)
	cases := map[string]signedReq{
		"lambda GET ARN path":      {method: "GET", path: arnPath},
		"lambda GET colon path":    {method: "GET", path: "/2015-03-31/functions/123456789012:function:my-fn:prod/configuration"},
		"lambda list with slash":   {method: "GET", path: "/2015-03-31/functions/?MaxItems=10&Marker=a%20b%2Bc%2F%3D"},
		"lambda POST JSON":         {method: "POST", path: "/2015-03-31/functions", contentType: "application/json", body: []byte(`{"FunctionName":"f","Runtime":"provided.al2023"}`)},
		"lambda invoke ARN":        {method: "POST", path: "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations", body: []byte(`{"k":"v"}`), header: map[string]string{"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "Tail"}},
		"ec2 form POST":            {method: "POST", path: "/", service: "ec2", contentType: "application/x-www-form-urlencoded; charset=utf-8", body: []byte("Action=DescribeVpcs&Version=2016-11-15&VpcId.1=vpc-0123")},
		"iam form POST":            {method: "POST", path: "/", service: "iam", contentType: "application/x-www-form-urlencoded; charset=utf-8", body: []byte("Action=CreateRole&RoleName=r&AssumeRolePolicyDocument=%7B%22Version%22%3A%222012-10-17%22%7D&Version=2010-05-08")},
		"content sha header":       {method: "POST", path: "/2015-03-31/functions", body: []byte(`{"a":1}`), header: map[string]string{"X-Amz-Content-Sha256": hashHex([]byte(`{"a":1}`))}},
		"S3-style single escaping": {method: "GET", path: arnPath},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			req := c.build(t, srv.URL)
			if name == "S3-style single escaping" {
				req = c.buildSingleEscape(t, srv.URL)
			}
			res := send(t, req, ch)
			if res.err != nil {
				t.Fatalf("Verify: %v", res.err)
			}
			svc := c.service
			if svc == "" {
				svc = "lambda"
			}
			want := Identity{AccountID: testAcct.ID, AccessKeyID: testKey.ID, Service: svc, Region: "us-east-1"}
			if res.id != want {
				t.Fatalf("identity %+v, want %+v", res.id, want)
			}
		})
	}
}

func (s signedReq) buildSingleEscape(t *testing.T, base string) *http.Request {
	req, err := http.NewRequest(s.method, base+s.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKey.ID, SecretAccessKey: testKey.Secret}, req, hashHex(nil), "lambda", "us-east-1", signTime,
		func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestVerifyRejects(t *testing.T) {
	other := Account{ID: "210987654321", Keys: []AccessKey{{ID: "AKIAZZZZZZZZZZZZZZZZ", Secret: "another-secret-another-secret-another-se"}}}
	clk := &offsetClock{}
	v := NewVerifier(staticKeys{testAcct, other}, clk.now)
	srv, ch := verifyServer(t, v)
	post := signedReq{method: "POST", path: "/2015-03-31/functions", contentType: "application/json", body: []byte(`{"FunctionName":"aaaa"}`)}

	cases := []struct {
		name   string
		req    func() *http.Request
		want   error
		clock  time.Duration
		detail string
	}{
		{name: "body tampered", want: ErrBadSignature, req: func() *http.Request {
			r := post.build(t, srv.URL)
			b := []byte(`{"FunctionName":"bbbb"}`) // same length
			r.Body = io.NopCloser(bytes.NewReader(b))
			return r
		}},
		{name: "signed header tampered", want: ErrBadSignature, req: func() *http.Request {
			r := post.build(t, srv.URL)
			r.Header.Set("Content-Type", "text/plain")
			return r
		}},
		{name: "path tampered", want: ErrBadSignature, req: func() *http.Request {
			r := signedReq{method: "GET", path: arnPath}.build(t, srv.URL)
			r.URL, _ = url.Parse(srv.URL + strings.Replace(arnPath, "my-fn", "my-fx", 1))
			return r
		}},
		{name: "query tampered", want: ErrBadSignature, req: func() *http.Request {
			r := signedReq{method: "GET", path: "/2015-03-31/functions/?MaxItems=10"}.build(t, srv.URL)
			r.URL.RawQuery = "MaxItems=11"
			return r
		}},
		{name: "method tampered", want: ErrBadSignature, req: func() *http.Request {
			r := signedReq{method: "GET", path: "/2015-03-31/functions/f"}.build(t, srv.URL)
			r.Method = "DELETE"
			return r
		}},
		{name: "wrong secret", want: ErrBadSignature, req: func() *http.Request {
			return signedReq{method: "GET", path: arnPath, key: AccessKey{ID: testKey.ID, Secret: strings.Repeat("x", 40)}}.build(t, srv.URL)
		}},
		{name: "other account's key id with my secret", want: ErrBadSignature, req: func() *http.Request {
			return signedReq{method: "GET", path: "/", key: AccessKey{ID: other.Keys[0].ID, Secret: testKey.Secret}}.build(t, srv.URL)
		}},
		{name: "content sha does not match body", want: ErrBadSignature, req: func() *http.Request {
			h := hashHex([]byte("something else"))
			return signedReq{method: "POST", path: "/x", body: []byte("abc"), header: map[string]string{"X-Amz-Content-Sha256": h}, payloadHash: h}.build(t, srv.URL)
		}},
		{name: "unsigned payload", want: ErrBadSignature, req: func() *http.Request {
			return signedReq{method: "POST", path: "/2015-03-31/functions", body: []byte(`{}`), header: map[string]string{"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}, payloadHash: "UNSIGNED-PAYLOAD"}.build(t, srv.URL)
		}},
		{name: "unknown key", want: ErrUnknownKey, req: func() *http.Request {
			return signedReq{method: "GET", path: "/", key: AccessKey{ID: "AKIANOTKNOWNNOTKNOWN", Secret: testKey.Secret}}.build(t, srv.URL)
		}},
		{name: "session token", want: ErrUnknownKey, req: func() *http.Request {
			r, _ := http.NewRequest("GET", srv.URL+"/", nil)
			_ = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKey.ID, SecretAccessKey: testKey.Secret, SessionToken: "tok"}, r, hashHex(nil), "lambda", "us-east-1", signTime)
			return r
		}},
		{name: "skew +16m", want: ErrClockSkew, clock: 16 * time.Minute, req: func() *http.Request {
			return signedReq{method: "GET", path: "/"}.build(t, srv.URL)
		}},
		{name: "skew -16m", want: ErrClockSkew, clock: -16 * time.Minute, req: func() *http.Request {
			return signedReq{method: "GET", path: "/"}.build(t, srv.URL)
		}},
		{name: "skew +14m ok", want: nil, clock: 14 * time.Minute, req: func() *http.Request {
			return signedReq{method: "GET", path: "/"}.build(t, srv.URL)
		}},
		{name: "missing", want: ErrMissingAuth, req: func() *http.Request {
			r, _ := http.NewRequest("GET", srv.URL+"/", nil)
			return r
		}},
		{name: "malformed algorithm", want: ErrMalformedAuth, req: func() *http.Request {
			r, _ := http.NewRequest("GET", srv.URL+"/", nil)
			r.Header.Set("Authorization", "AWS AKIAABCDEFGHIJKLMNOP:abc")
			return r
		}},
		{name: "malformed credential", want: ErrMalformedAuth, req: func() *http.Request {
			r, _ := http.NewRequest("GET", srv.URL+"/", nil)
			r.Header.Set("X-Amz-Date", "20260101T120000Z")
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAABCDEFGHIJKLMNOP/20260101/us-east-1, SignedHeaders=host;x-amz-date, Signature=00")
			return r
		}},
		{name: "malformed date", want: ErrMalformedAuth, req: func() *http.Request {
			r := signedReq{method: "GET", path: "/"}.build(t, srv.URL)
			r.Header.Set("X-Amz-Date", "Thu, 01 Jan 2026 12:00:00 GMT")
			return r
		}},
		{name: "malformed signature", want: ErrMalformedAuth, req: func() *http.Request {
			r := signedReq{method: "GET", path: "/"}.build(t, srv.URL)
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:len(a)-64]+"zz")
			return r
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk.set(c.clock)
			res := send(t, c.req(), ch)
			if c.want == nil {
				if res.err != nil {
					t.Fatalf("Verify: %v", res.err)
				}
				return
			}
			if !errors.Is(res.err, c.want) {
				t.Fatalf("Verify error %v, want %v", res.err, c.want)
			}
		})
	}
}

func presign(t *testing.T, base, path string, expires time.Duration, key AccessKey) string {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if expires > 0 {
		q := req.URL.Query()
		q.Set("X-Amz-Expires", strconv.Itoa(int(expires/time.Second)))
		req.URL.RawQuery = q.Encode()
	}
	u, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}, req, hashHex(nil), "lambda", "us-east-1", signTime)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestVerifyPresigned(t *testing.T) {
	clk := &offsetClock{}
	v := NewVerifier(staticKeys{testAcct}, clk.now)
	srv, ch := verifyServer(t, v)
	get := func(u string) verifyResult {
		req, err := http.NewRequest("GET", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return send(t, req, ch)
	}

	u := presign(t, srv.URL, arnPath+"?Qualifier=prod", 15*time.Minute, testKey)
	for _, d := range []time.Duration{0, 14 * time.Minute} {
		clk.set(d)
		if res := get(u); res.err != nil {
			t.Fatalf("presigned at +%s: %v", d, res.err)
		} else if res.id.AccountID != testAcct.ID || res.id.Service != "lambda" {
			t.Fatalf("identity %+v", res.id)
		}
	}
	clk.set(16 * time.Minute)
	if res := get(u); !errors.Is(res.err, ErrPresignedExpired) {
		t.Fatalf("expired presign: %v", res.err)
	}
	clk.set(-16 * time.Minute)
	if res := get(u); !errors.Is(res.err, ErrClockSkew) {
		t.Fatalf("future presign: %v", res.err)
	}
	clk.set(0)
	if res := get(strings.Replace(u, "Qualifier=prod", "Qualifier=dev", 1)); !errors.Is(res.err, ErrBadSignature) {
		t.Fatalf("tampered presign query: %v", res.err)
	}
	if res := get(strings.Replace(u, "X-Amz-Expires=900", "X-Amz-Expires=3600", 1)); !errors.Is(res.err, ErrBadSignature) {
		t.Fatalf("extended expiry: %v", res.err)
	}
	// Without X-Amz-Expires AWS allows up to 7 days.
	u = presign(t, srv.URL, "/2015-03-31/functions/", 0, testKey)
	clk.set(6 * 24 * time.Hour)
	if res := get(u); res.err != nil {
		t.Fatalf("presign without expires: %v", res.err)
	}
	u = presign(t, srv.URL, "/2015-03-31/functions/", 0, AccessKey{ID: "AKIANOTKNOWNNOTKNOWN", Secret: "x"})
	if res := get(u); !errors.Is(res.err, ErrUnknownKey) {
		t.Fatalf("presign unknown key: %v", res.err)
	}
}

func TestScopeService(t *testing.T) {
	for _, svc := range []string{"lambda", "ec2", "iam"} {
		r := signedReq{method: "GET", path: "/", service: svc}.build(t, "http://h")
		if got := ScopeService(r); got != svc {
			t.Fatalf("ScopeService = %q, want %q", got, svc)
		}
	}
	u := presign(t, "http://h", "/x", time.Minute, testKey)
	r := httptest.NewRequest("GET", u, nil)
	if got := ScopeService(r); got != "lambda" {
		t.Fatalf("presigned ScopeService = %q", got)
	}
	if got := ScopeService(httptest.NewRequest("GET", "/", nil)); got != "" {
		t.Fatalf("unsigned ScopeService = %q", got)
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/2026")
	if got := ScopeService(r); got != "" {
		t.Fatalf("truncated ScopeService = %q", got)
	}
}

// BenchmarkVerify measures one header-signed Lambda POST verification.
func BenchmarkVerify(b *testing.B) {
	v := NewVerifier(staticKeys{testAcct}, fixedClock(signTime))
	body := []byte(`{"FunctionName":"my-function","Payload":"hello"}`)
	req := httptest.NewRequest("POST", "http://127.0.0.1:9000/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
	req.ContentLength = int64(len(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKey.ID, SecretAccessKey: testKey.Secret}, req, hashHex(body), "lambda", "us-east-1", signTime); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(req, body); err != nil {
			b.Fatal(err)
		}
	}
}
