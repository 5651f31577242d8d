package urls

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestURLID(t *testing.T) {
	id := strings.Repeat("a1", 16)
	for host, want := range map[string]string{
		id + ".lambda-url.us-east-1.localhost:9010": id,
		id + ".lambda-url.us-east-1.localhost":      id,
		id + ".lambda-url.eu-west-1.on.aws":         id,
		"A" + id[1:] + ".lambda-url.x.localhost":    "a" + id[1:],
		"short.lambda-url.us-east-1.localhost":      "",
		id + ".example.com":                         "",
		"127.0.0.1:9010":                            "",
	} {
		if got := URLID(host); got != want {
			t.Errorf("URLID(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestBuildEvent(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://x.lambda-url.us-east-1.localhost:9010/a%20b/c?x=1&x=2&y=", strings.NewReader(""))
	r.Header.Set("Cookie", "k=v; k2=v2")
	r.Header.Add("X-A", "1")
	r.Header.Add("X-A", "2")
	r.Header.Set("Content-Type", "image/png")
	ev := BuildEvent(r, []byte{0xff, 0x00}, "id", "anonymous", "req", nil, time.Unix(1700000000, 0))
	if ev.RawPath != "/a%20b/c" || ev.RequestContext.HTTP.Path != "/a b/c" || ev.RawQueryString != "x=1&x=2&y=" ||
		ev.QueryStringParameters["x"] != "1,2" || ev.QueryStringParameters["y"] != "" || len(ev.Cookies) != 2 ||
		ev.Headers["x-a"] != "1,2" || ev.Headers["cookie"] != "" || !ev.IsBase64Encoded || *ev.Body != "/wA=" ||
		ev.RequestContext.Time != "14/Nov/2023:22:13:20 +0000" || ev.RequestContext.TimeEpoch != 1700000000000 ||
		ev.RequestContext.DomainName != "x.lambda-url.us-east-1.localhost" ||
		ev.Headers["x-forwarded-proto"] != "http" || ev.Headers["x-forwarded-port"] != "9010" || ev.Headers["x-forwarded-for"] != ev.RequestContext.HTTP.SourceIP {
		t.Fatalf("event = %+v", ev)
	}
}

func TestMapResponse(t *testing.T) {
	cases := []struct {
		payload string
		status  int
		body    string
		header  map[string]string
		invalid bool
	}{
		{`{"hello":"world"}`, 200, `{"hello":"world"}`, map[string]string{"Content-Type": "application/json"}, false},
		{`"text"`, 200, `"text"`, map[string]string{"Content-Type": "application/json"}, false},
		{`42`, 200, `42`, nil, false},
		{`{"statusCode":404,"body":"nope","headers":{"content-type":"text/plain","x-n":3}}`, 404, "nope", map[string]string{"Content-Type": "text/plain", "X-N": "3"}, false},
		{`{"statusCode":"201","body":"aGk=","isBase64Encoded":true,"cookies":["a=1","b=2"]}`, 201, "hi", map[string]string{"Set-Cookie": "a=1"}, false},
		{`{"statusCode":200,"multiValueHeaders":{"x-m":["1","2"]}}`, 200, "", map[string]string{"X-M": "1"}, false},
		{`{"statusCode":99}`, 0, "", nil, true},
	}
	for _, c := range cases {
		m := MapResponse([]byte(c.payload))
		if m.Invalid != c.invalid {
			t.Fatalf("%s: invalid %v", c.payload, m.Invalid)
		}
		if c.invalid {
			continue
		}
		if m.Status != c.status || string(m.Body) != c.body {
			t.Fatalf("%s: %d %q", c.payload, m.Status, m.Body)
		}
		for k, v := range c.header {
			if m.Header.Get(k) != v {
				t.Fatalf("%s: header %s = %q, want %q (%v)", c.payload, k, m.Header.Get(k), v, m.Header)
			}
		}
	}
	if m := MapResponse([]byte(`{"statusCode":200,"cookies":["a=1","b=2"],"multiValueHeaders":{"x-m":["1","2"]}}`)); len(m.Header.Values("Set-Cookie")) != 2 || len(m.Header.Values("X-M")) != 2 {
		t.Fatalf("multi-valued headers: %v", m.Header)
	}
}
