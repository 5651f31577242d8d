package auth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBeginReadsNoBody: every refusal that the headers decide happens in
// Begin, which never touches the body, and answers with AWS's message.
func TestBeginReadsNoBody(t *testing.T) {
	v := NewVerifier(staticKeys{testAcct}, fixedClock(signTime))
	v.SetRegion("us-east-1")
	body := []byte(`{"FunctionName":"f"}`)
	build := func(mod func(*signedReq)) *http.Request {
		s := signedReq{method: "POST", path: "/2015-03-31/functions", body: body}
		if mod != nil {
			mod(&s)
		}
		r := s.build(t, "http://127.0.0.1:9009")
		// The server side of the request: a body that fails the test if read.
		r.Body = io.NopCloser(bodyTrap{t})
		return r
	}
	cases := []struct {
		name    string
		r       *http.Request
		service string
		want    error
		msg     string
	}{
		{"unsigned", httptest.NewRequest("POST", "/2015-03-31/functions", bodyTrap{t}), "lambda", ErrMissingAuth, ""},
		{"unknown key", build(func(s *signedReq) { s.key = AccessKey{ID: "AKIANOTKNOWNNOTKNOWN", Secret: "x"} }), "lambda", ErrUnknownKey, ""},
		{"expired", build(func(s *signedReq) { s.at = signTime.Add(-20 * time.Minute) }), "lambda", ErrClockSkew, ""},
		{"region", build(func(s *signedReq) { s.region = "eu-west-1" }), "lambda", ErrBadSignature, "Credential should be scoped to a valid region, not 'eu-west-1'. "},
		{"service", build(func(s *signedReq) { s.service = "s3" }), "lambda", ErrBadSignature, "Credential should be scoped to correct service: 'lambda'. "},
		{"unsigned payload", build(func(s *signedReq) {
			s.header = map[string]string{"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}
			s.payloadHash = "UNSIGNED-PAYLOAD"
		}), "lambda", ErrBadSignature, "UNSIGNED-PAYLOAD is not accepted"},
		{"declared hash not hex", build(func(s *signedReq) {
			s.header = map[string]string{"X-Amz-Content-Sha256": "abc"}
			s.payloadHash = "abc"
		}), "lambda", ErrBadSignature, `"abc" is not the hexadecimal SHA-256`},
		{"signature over declared hash", build(func(s *signedReq) {
			s.header = map[string]string{"X-Amz-Content-Sha256": hashHex(body)}
			s.key = AccessKey{ID: testKey.ID, Secret: strings.Repeat("x", 40)}
		}), "lambda", ErrBadSignature, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Begin(c.r, c.service)
			if !errors.Is(err, c.want) {
				t.Fatalf("Begin: %v, want %v", err, c.want)
			}
			if c.msg != "" {
				var rej *Rejection
				if !errors.As(err, &rej) || !strings.Contains(rej.Message, c.msg) {
					t.Fatalf("Begin: %q, want a Rejection saying %q", err, c.msg)
				}
			}
		})
	}
}

type bodyTrap struct{ t *testing.T }

func (b bodyTrap) Read([]byte) (int, error) {
	b.t.Error("the body was read before the request was authenticated")
	return 0, io.EOF
}

// TestBeginFinish: with X-Amz-Content-Sha256 the signature is verified
// before the body and the body is then checked against the declared hash;
// without it, the body's hash completes the signature.
func TestBeginFinish(t *testing.T) {
	v := NewVerifier(staticKeys{testAcct}, fixedClock(signTime))
	v.SetRegion("us-east-1")
	body := []byte(`{"FunctionName":"f"}`)
	tampered := []byte(`{"FunctionName":"g"}`)
	for _, declared := range []bool{true, false} {
		s := signedReq{method: "POST", path: "/2015-03-31/functions", body: body}
		if declared {
			s.header = map[string]string{"X-Amz-Content-Sha256": hashHex(body)}
		}
		r := s.build(t, "http://127.0.0.1:9009")
		pd, err := v.Begin(r, "lambda")
		if err != nil {
			t.Fatalf("declared=%v: Begin: %v", declared, err)
		}
		if _, ok := pd.Identity(); ok != declared {
			t.Fatalf("declared=%v: identity known before the body: %v", declared, ok)
		}
		if _, err := pd.Finish(hashHex(tampered)); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("declared=%v: tampered body: %v, want ErrBadSignature", declared, err)
		}
		id, err := pd.Finish(hashHex(body))
		if err != nil || id.AccountID != testAcct.ID {
			t.Fatalf("declared=%v: Finish: %+v %v", declared, id, err)
		}
	}
}

// TestIAMScopeRegion: IAM is scoped to us-east-1 as on AWS, and to the
// server's own region (what clients using --endpoint-url sign with).
func TestIAMScopeRegion(t *testing.T) {
	v := NewVerifier(staticKeys{testAcct}, fixedClock(signTime))
	v.SetRegion("eu-west-1")
	form := []byte("Action=ListRoles&Version=2010-05-08")
	for region, ok := range map[string]bool{"us-east-1": true, "eu-west-1": true, "us-west-2": false} {
		r := signedReq{method: "POST", path: "/", service: "iam", region: region, body: form}.build(t, "http://h")
		r.Body = io.NopCloser(bytes.NewReader(form))
		_, err := v.Begin(r, "iam")
		if (err == nil) != ok {
			t.Errorf("iam scoped to %s: %v", region, err)
		}
	}
	r := signedReq{method: "GET", path: "/2015-03-31/functions/", region: "us-east-1"}.build(t, "http://h")
	if _, err := v.Begin(r, "lambda"); err == nil {
		t.Error("lambda scoped to us-east-1 on an eu-west-1 server was accepted")
	}
}
