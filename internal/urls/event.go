package urls

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// IAMAuthorizer is requestContext.authorizer.iam of an AWS_IAM request.
type IAMAuthorizer struct {
	AccessKey       string  `json:"accessKey"`
	AccountID       string  `json:"accountId"`
	CallerID        string  `json:"callerId"`
	CognitoIdentity *string `json:"cognitoIdentity"`
	PrincipalOrgID  *string `json:"principalOrgId"`
	UserARN         string  `json:"userArn"`
	UserID          string  `json:"userId"`
}

type httpInfo struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

type requestContext struct {
	AccountID    string                    `json:"accountId"`
	APIID        string                    `json:"apiId"`
	Authorizer   map[string]*IAMAuthorizer `json:"authorizer,omitempty"`
	DomainName   string                    `json:"domainName"`
	DomainPrefix string                    `json:"domainPrefix"`
	HTTP         httpInfo                  `json:"http"`
	RequestID    string                    `json:"requestId"`
	RouteKey     string                    `json:"routeKey"`
	Stage        string                    `json:"stage"`
	Time         string                    `json:"time"`
	TimeEpoch    int64                     `json:"timeEpoch"`
}

// Event is the payload format 2.0 event a function URL sends.
type Event struct {
	Version               string            `json:"version"`
	RouteKey              string            `json:"routeKey"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies,omitempty"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters,omitempty"`
	RequestContext        requestContext    `json:"requestContext"`
	Body                  *string           `json:"body,omitempty"`
	IsBase64Encoded       bool              `json:"isBase64Encoded"`
}

// BuildEvent makes the event of request r (its body already read). account
// is the caller's account ("anonymous" for AuthType NONE); iam is set for
// AWS_IAM.
func BuildEvent(r *http.Request, body []byte, urlID, account, requestID string, iam *IAMAuthorizer, now time.Time) *Event {
	host := r.Host
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.Contains(h, "]") {
		host = h
	}
	ev := &Event{
		Version: "2.0", RouteKey: "$default", RawPath: r.URL.EscapedPath(), RawQueryString: r.URL.RawQuery,
		Headers: make(map[string]string, len(r.Header)+1),
		RequestContext: requestContext{
			AccountID: account, APIID: urlID, DomainName: host, DomainPrefix: urlID,
			HTTP:      httpInfo{Method: r.Method, Path: r.URL.Path, Protocol: r.Proto, SourceIP: sourceIP(r), UserAgent: r.UserAgent()},
			RequestID: requestID, RouteKey: "$default", Stage: "$default",
			Time: now.UTC().Format("02/Jan/2006:15:04:05 -0700"), TimeEpoch: now.UnixMilli(),
		},
	}
	if ev.RawPath == "" {
		ev.RawPath = "/"
	}
	if iam != nil {
		ev.RequestContext.Authorizer = map[string]*IAMAuthorizer{"iam": iam}
	}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			for _, v := range vs {
				for _, c := range strings.Split(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						ev.Cookies = append(ev.Cookies, c)
					}
				}
			}
			continue
		}
		ev.Headers[lk] = strings.Join(vs, ",")
	}
	ev.Headers["host"] = r.Host
	// What Lambda's front end adds, as it does.
	ip := ev.RequestContext.HTTP.SourceIP
	if xff := ev.Headers["x-forwarded-for"]; xff != "" {
		ev.Headers["x-forwarded-for"] = xff + ", " + ip
	} else {
		ev.Headers["x-forwarded-for"] = ip
	}
	ev.Headers["x-forwarded-proto"] = "http"
	if _, port, ok := strings.Cut(r.Host, ":"); ok && !strings.Contains(r.Host, "]") {
		ev.Headers["x-forwarded-port"] = port
	} else {
		ev.Headers["x-forwarded-port"] = "80"
	}
	if r.URL.RawQuery != "" {
		q, _ := url.ParseQuery(r.URL.RawQuery)
		if len(q) > 0 {
			ev.QueryStringParameters = make(map[string]string, len(q))
			for k, vs := range q {
				ev.QueryStringParameters[k] = strings.Join(vs, ",")
			}
		}
	}
	if len(body) > 0 {
		var s string
		if isText(r.Header.Get("Content-Type")) && utf8.Valid(body) {
			s = string(body)
		} else {
			s = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		}
		ev.Body = &s
	}
	return ev
}

func sourceIP(r *http.Request) string {
	h := r.RemoteAddr
	if i := strings.LastIndexByte(h, ':'); i > 0 {
		h = h[:i]
	}
	return strings.Trim(h, "[]")
}

// isText reports whether a body of this content type goes into the event
// as text (others are base64-encoded, as Lambda does).
func isText(ct string) bool {
	ct = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	switch {
	case ct == "":
		return true
	case strings.HasPrefix(ct, "text/"):
		return true
	case strings.HasSuffix(ct, "/json"), strings.HasSuffix(ct, "+json"),
		strings.HasSuffix(ct, "/xml"), strings.HasSuffix(ct, "+xml"),
		strings.HasSuffix(ct, "/javascript"), strings.HasSuffix(ct, "/x-www-form-urlencoded"),
		strings.HasSuffix(ct, "/yaml"):
		return true
	}
	return false
}

// Response is a function's answer mapped to HTTP.
type Response struct {
	Status  int
	Header  http.Header
	Body    []byte
	Invalid bool // the function returned a structured answer Lambda cannot map (502)
}

// MapResponse turns a function's (buffered) payload into the HTTP
// response: an object with statusCode is structured (statusCode, headers,
// multiValueHeaders, cookies, body, isBase64Encoded); any other JSON value
// is the body of a 200 with content-type application/json.
func MapResponse(payload []byte) *Response {
	p := bytes.TrimSpace(payload)
	out := &Response{Status: 200, Header: http.Header{}}
	if len(p) > 0 && p[0] == '{' {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(p, &probe); err == nil {
			if sc, ok := probe["statusCode"]; ok {
				return structured(probe, sc)
			}
		}
	}
	out.Header.Set("Content-Type", "application/json")
	out.Body = payload
	return out
}

func structured(m map[string]json.RawMessage, sc json.RawMessage) *Response {
	out := &Response{Header: http.Header{}}
	var code int
	if err := json.Unmarshal(sc, &code); err != nil {
		var s string
		if json.Unmarshal(sc, &s) != nil {
			return &Response{Invalid: true}
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return &Response{Invalid: true}
		}
		code = n
	}
	if code < 100 || code > 599 {
		return &Response{Invalid: true}
	}
	out.Status = code
	var headers map[string]any
	if raw, ok := m["headers"]; ok {
		_ = json.Unmarshal(raw, &headers)
	}
	for _, k := range sortedKeys(headers) {
		out.Header.Set(k, scalar(headers[k]))
	}
	var multi map[string][]any
	if raw, ok := m["multiValueHeaders"]; ok {
		_ = json.Unmarshal(raw, &multi)
	}
	for _, k := range sortedKeys(multi) {
		for _, v := range multi[k] {
			out.Header.Add(k, scalar(v))
		}
	}
	var cookies []string
	if raw, ok := m["cookies"]; ok {
		_ = json.Unmarshal(raw, &cookies)
	}
	for _, c := range cookies {
		out.Header.Add("Set-Cookie", c)
	}
	if out.Header.Get("Content-Type") == "" {
		out.Header.Set("Content-Type", "application/json")
	}
	var body string
	if raw, ok := m["body"]; ok {
		if json.Unmarshal(raw, &body) != nil {
			// A non-string body is sent as its JSON.
			body = string(raw)
		}
	}
	var b64 bool
	if raw, ok := m["isBase64Encoded"]; ok {
		_ = json.Unmarshal(raw, &b64)
	}
	if b64 {
		dec, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return &Response{Invalid: true}
		}
		out.Body = dec
	} else {
		out.Body = []byte(body)
	}
	return out
}

func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
