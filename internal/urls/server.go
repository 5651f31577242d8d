package urls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
)

// MaxBody is the largest request body a function URL accepts (Lambda's
// synchronous payload limit; the event is larger still once encoded).
const MaxBody = 6 << 20

// IntegrationContentType marks a streamed response that starts with a JSON
// prelude (statusCode, headers, cookies) followed by 8 NUL bytes.
const IntegrationContentType = "application/vnd.awslambda.http-integration-response"

// Verifier checks a request's SigV4 signature (*auth.Verifier).
type Verifier interface {
	Begin(r *http.Request, service string) (*auth.Pending, error)
}

// Authorizer checks a restricted caller (IAM user, role session) against
// its identity policies; nil or *auth.AccessDenied.
type Authorizer interface {
	Authorize(ctx context.Context, id auth.Identity, action, resource string, cond map[string][]string) error
}

// Functions is what the server needs of the control plane.
type Functions interface {
	URLByID(id string) *control.FunctionURL
	PolicyAllows(owner, region, name, qualifier string, caller control.Caller, action string, cond map[string][]string) bool
}

// Invoker runs an invocation (*invoke.Scheduler).
type Invoker interface {
	Invoke(ctx context.Context, r *invoke.Request) (*invoke.Response, error)
}

// Deps are what a Server is built from.
type Deps struct {
	Functions  Functions
	Invoker    Invoker
	Verifier   Verifier
	Authorizer Authorizer // nil: restricted callers are not checked (tests)
	// CallerOf maps a verified identity to a resource-policy principal.
	CallerOf func(auth.Identity) control.Caller
	Log      *slog.Logger
	Now      func() time.Time
}

// Server is the function URL listener's handler.
type Server struct {
	d Deps
}

// New builds a Server.
func New(d Deps) *Server {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Server{d: d}
}

// URLID extracts the URL id from a Host header
// (<id>.lambda-url.<region>.localhost[:port], or .on.aws); "" if it is not one.
func URLID(host string) string {
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	id, rest, ok := strings.Cut(strings.ToLower(host), ".")
	if !ok || !strings.HasPrefix(rest, "lambda-url.") || len(id) != 32 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return id
}

func message(w http.ResponseWriter, status int, errType, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if errType != "" {
		h.Set("X-Amzn-ErrorType", errType)
	}
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"Message": msg})
	_, _ = w.Write(b)
}

// ServeHTTP serves one function URL request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := invoke.NewRequestID()
	w.Header().Set("X-Amzn-RequestId", reqID)
	u := s.d.Functions.URLByID(URLID(r.Host))
	if u == nil {
		message(w, http.StatusNotFound, "ResourceNotFoundException", "No function URL is served at "+r.Host+" (the URL id must be the one Create/GetFunctionUrlConfig returned)")
		return
	}
	origin := r.Header.Get("Origin")
	if r.Method == http.MethodOptions && u.Cors != nil && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		preflight(w, r, u.Cors)
		return
	}
	if r.ContentLength > MaxBody {
		message(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", fmt.Sprintf("Request must be smaller than %d bytes", MaxBody))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		message(w, http.StatusBadRequest, "InvalidRequestContentException", "could not read the request body: "+err.Error())
		return
	}
	if len(body) > MaxBody {
		message(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", fmt.Sprintf("Request must be smaller than %d bytes", MaxBody))
		return
	}
	account, iamCtx, ok := s.authorize(r, u, body)
	if !ok {
		message(w, http.StatusForbidden, "AccessDeniedException", "Forbidden")
		return
	}
	ev := BuildEvent(r, body, u.ID, account, reqID, iamCtx, s.d.Now())
	payload, err := json.Marshal(ev)
	if err != nil {
		message(w, http.StatusInternalServerError, "ServiceException", "Internal Server Error")
		return
	}
	if u.Cors != nil && origin != "" {
		corsHeaders(w.Header(), origin, u.Cors)
	}
	req := &invoke.Request{
		AccountID: u.AccountID, Region: u.Region, Function: u.FunctionName, Qualifier: u.Qualifier,
		InvocationType: invoke.RequestResponse, Payload: payload, RequestID: reqID,
		TraceID: traceID(r.Header.Get("X-Amzn-Trace-Id"), reqID, s.d.Now()),
	}
	var sink *streamSink
	if u.InvokeMode == control.InvokeStream {
		sink = &streamSink{w: w}
		req.Stream = sink
	}
	resp, err := s.d.Invoker.Invoke(r.Context(), req)
	if sink != nil {
		sink.close()
		if sink.started {
			return // the function's stream was the response (an error ends it)
		}
	}
	if err != nil {
		var ce *control.Error
		if errors.As(err, &ce) && ce.Status == http.StatusTooManyRequests {
			message(w, http.StatusTooManyRequests, "TooManyRequestsException", "Rate Exceeded.")
			return
		}
		s.d.Log.Debug("function URL invoke failed", "url", u.ID, "function", u.FunctionName, "err", err)
		message(w, http.StatusBadGateway, "ServiceException", "Internal Server Error")
		return
	}
	if resp.FunctionError != "" {
		message(w, http.StatusBadGateway, "", "Internal Server Error")
		return
	}
	out := resp.Payload
	if sink != nil && sink.integration {
		out = sink.pre // an integration prelude that never completed
	}
	m := MapResponse(out)
	if m.Invalid {
		message(w, http.StatusBadGateway, "", "Internal Server Error")
		return
	}
	h := w.Header()
	for k, vs := range m.Header {
		h[k] = vs
	}
	h.Set("Content-Length", strconv.Itoa(len(m.Body)))
	w.WriteHeader(m.Status)
	_, _ = w.Write(m.Body)
}

// authorize decides whether the request may invoke the URL and returns the
// caller's account for the event ("anonymous" for NONE) and, for AWS_IAM,
// the authorizer context.
func (s *Server) authorize(r *http.Request, u *control.FunctionURL, body []byte) (string, *IAMAuthorizer, bool) {
	const action = "lambda:InvokeFunctionUrl"
	if u.AuthType == control.URLAuthNone {
		ok := s.d.Functions.PolicyAllows(u.AccountID, u.Region, u.FunctionName, u.Qualifier, control.Caller{}, action,
			map[string][]string{"lambda:FunctionUrlAuthType": {control.URLAuthNone}})
		if !ok {
			s.d.Log.Debug("function URL refused: no resource-policy statement allows lambda:InvokeFunctionUrl to * with FunctionUrlAuthType NONE", "url", u.ID)
		}
		return "anonymous", nil, ok
	}
	pending, err := s.d.Verifier.Begin(r, "lambda")
	if err != nil {
		s.d.Log.Debug("function URL refused: signature", "url", u.ID, "err", err)
		return "", nil, false
	}
	sum := sha256.Sum256(body)
	id, err := pending.Finish(hex.EncodeToString(sum[:]))
	if err != nil {
		s.d.Log.Debug("function URL refused: signature", "url", u.ID, "err", err)
		return "", nil, false
	}
	cond := map[string][]string{"lambda:FunctionUrlAuthType": {control.URLAuthIAM}}
	resource := u.FunctionARN()
	var caller control.Caller
	if s.d.CallerOf != nil {
		caller = s.d.CallerOf(id)
	} else {
		caller = control.Caller{AccountID: id.AccountID, ARNs: []string{"arn:aws:iam::" + id.AccountID + ":root"}}
	}
	granted := s.d.Functions.PolicyAllows(u.AccountID, u.Region, u.FunctionName, u.Qualifier, caller, action, cond)
	identityOK := !id.Restricted() || s.d.Authorizer == nil ||
		s.d.Authorizer.Authorize(r.Context(), id, action, resource, cond) == nil
	var ok bool
	if id.AccountID == u.AccountID {
		ok = identityOK || granted
	} else {
		ok = granted && identityOK
	}
	if !ok {
		s.d.Log.Debug("function URL refused: not authorized", "url", u.ID, "account", id.AccountID, "user", id.User)
		return "", nil, false
	}
	arn := "arn:aws:iam::" + id.AccountID + ":root"
	if len(caller.ARNs) > 1 {
		arn = caller.ARNs[len(caller.ARNs)-1]
	}
	userID := id.AccountID
	if id.User != "" {
		userID = id.AccessKeyID
	}
	return id.AccountID, &IAMAuthorizer{AccessKey: id.AccessKeyID, AccountID: id.AccountID, CallerID: userID, UserARN: arn, UserID: userID}, true
}

// preflight answers a CORS preflight request from the URL's configuration,
// without invoking the function.
func preflight(w http.ResponseWriter, r *http.Request, c *control.Cors) {
	h := w.Header()
	origin := r.Header.Get("Origin")
	if allowOrigin(origin, c) != "" {
		corsHeaders(h, origin, c)
		method := r.Header.Get("Access-Control-Request-Method")
		if len(c.AllowMethods) > 0 {
			if contains(c.AllowMethods, "*") {
				h.Set("Access-Control-Allow-Methods", method)
			} else {
				h.Set("Access-Control-Allow-Methods", strings.Join(c.AllowMethods, ","))
			}
		}
		if len(c.AllowHeaders) > 0 {
			if contains(c.AllowHeaders, "*") {
				if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
					h.Set("Access-Control-Allow-Headers", rh)
				}
			} else {
				h.Set("Access-Control-Allow-Headers", strings.Join(c.AllowHeaders, ","))
			}
		}
		if c.MaxAge != nil {
			h.Set("Access-Control-Max-Age", strconv.Itoa(*c.MaxAge))
		}
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// corsHeaders adds the headers of a response to a cross-origin request.
func corsHeaders(h http.Header, origin string, c *control.Cors) {
	o := allowOrigin(origin, c)
	if o == "" {
		return
	}
	h.Set("Access-Control-Allow-Origin", o)
	h.Add("Vary", "Origin")
	if c.AllowCredentials != nil && *c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if len(c.ExposeHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ","))
	}
}

// allowOrigin is the Access-Control-Allow-Origin value for origin, "" if
// the configuration does not allow it.
func allowOrigin(origin string, c *control.Cors) string {
	for _, o := range c.AllowOrigins {
		switch {
		case o == "*":
			if c.AllowCredentials != nil && *c.AllowCredentials {
				return origin // credentials cannot go with a wildcard
			}
			return "*"
		case strings.EqualFold(o, origin):
			return origin
		}
	}
	return ""
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// streamSink writes a streamed function response to the URL's client as it
// arrives: the integration prelude, if any, becomes the status and headers.
type streamSink struct {
	mu          sync.Mutex
	w           http.ResponseWriter
	closed      bool
	started     bool
	integration bool
	pre         []byte // prelude bytes until its 8 NULs arrive
}

var preludeEnd = make([]byte, 8)

func (s *streamSink) Begin(ct string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if strings.HasPrefix(ct, IntegrationContentType) {
		s.integration = true
		return
	}
	s.w.Header().Set("Content-Type", ct)
	s.w.WriteHeader(http.StatusOK)
	s.started = true
	_ = http.NewResponseController(s.w).Flush()
}

func (s *streamSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, http.ErrHandlerTimeout
	}
	n := len(p)
	if !s.started {
		s.pre = append(s.pre, p...)
		i := bytes.Index(s.pre, preludeEnd)
		if i < 0 {
			if len(s.pre) > 1<<20 {
				return 0, errors.New("streamed response prelude is over 1 MiB without its 8 NUL bytes")
			}
			return n, nil
		}
		status := 200
		var pre struct {
			StatusCode int               `json:"statusCode"`
			Headers    map[string]string `json:"headers"`
			Cookies    []string          `json:"cookies"`
		}
		if err := json.Unmarshal(s.pre[:i], &pre); err == nil && pre.StatusCode >= 100 && pre.StatusCode <= 599 {
			status = pre.StatusCode
		}
		h := s.w.Header()
		for k, v := range pre.Headers {
			h.Set(k, v)
		}
		for _, c := range pre.Cookies {
			h.Add("Set-Cookie", c)
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/octet-stream")
		}
		s.w.WriteHeader(status)
		s.started = true
		p = s.pre[i+len(preludeEnd):]
		s.pre = nil
	}
	if len(p) > 0 {
		if _, err := s.w.Write(p); err != nil {
			s.closed = true
			return 0, err
		}
	}
	_ = http.NewResponseController(s.w).Flush()
	return n, nil
}

func (s *streamSink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// traceID is the caller's X-Ray header or a new root trace id.
func traceID(h, reqID string, now time.Time) string {
	if h != "" {
		return h
	}
	hexID := strings.ReplaceAll(reqID, "-", "")
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", now.Unix(), hexID[:24], hexID[16:32])
}
