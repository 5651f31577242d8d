package api

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
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/lambdaops"
	"github.com/prometheus/client_golang/prometheus"
)

// Body limits, by operation. A request declaring more (Content-Length) is
// refused before its body is read; a longer chunked body is cut at the limit.
const (
	// MaxBody bounds the operations that carry code (CreateFunction,
	// UpdateFunctionCode, PublishLayerVersion): a 50 MB zip,
	// base64-encoded inside JSON.
	MaxBody = 72 << 20
	// MaxInvokeBody is Lambda's synchronous invoke payload limit (the
	// scheduler checks the smaller asynchronous one).
	MaxInvokeBody = 6 << 20
	// MaxSmallBody bounds every other request: configuration JSON and
	// EC2/IAM Query forms (an IAM policy document is at most 10 KB).
	MaxSmallBody = 1 << 20
)

// minBodyRate is the slowest upload the body deadline allows for on top of
// the read timeout: a 70 MB CreateFunction may take ReadTimeout + 9 minutes.
const minBodyRate = 128 << 10 // bytes per second

// Verifier establishes who signed a request: Begin checks what the headers
// say before the body is read, Pending.Finish completes the check with the
// body's SHA-256 (*auth.Verifier).
type Verifier interface {
	Begin(r *http.Request, service string) (*auth.Pending, error)
}

// ErrBodyTooLarge is handed to a service's WriteError (wrapped in a
// *BodyTooLarge) when a body is over its operation's limit.
var ErrBodyTooLarge = errors.New("request body is too large")

// ErrBodyTimeout is handed to a service's WriteError when a request's body
// did not arrive within the read timeout.
var ErrBodyTimeout = errors.New("the request body was not received within the read timeout; send it at once, at more than 128 KB/s")

// BodyTooLarge is a request body over its operation's limit. Its message is
// Lambda's ("Request must be smaller than 6291456 bytes for the Invoke
// operation").
type BodyTooLarge struct {
	Operation string
	Limit     int64
}

func (e *BodyTooLarge) Error() string {
	if e.Operation == "" {
		return fmt.Sprintf("Request must be smaller than %d bytes", e.Limit)
	}
	return fmt.Sprintf("Request must be smaller than %d bytes for the %s operation", e.Limit, e.Operation)
}
func (e *BodyTooLarge) Unwrap() error { return ErrBodyTooLarge }

// Operations is implemented by Query API services (ec2, iam) to name the
// Actions they serve: the operation label of the request metric takes only
// these values (others count as "Unknown").
type Operations interface {
	Operations() []string
}

// Labels of the operation dimension that are not operations.
const (
	OpUnknown         = "Unknown"         // an authenticated request for no known operation
	OpUnauthenticated = "unauthenticated" // a request refused before it was authenticated
)

// Server routes verified requests to services.
type Server struct {
	verifier    Verifier
	services    map[string]Service
	known       map[string]map[string]bool // service -> Actions it serves (Query APIs)
	extra       map[string]http.Handler
	log         *slog.Logger
	ready       atomic.Bool
	requests    *prometheus.CounterVec
	authz       Authorizer    // nil: IAM users are not restricted (tests)
	readTimeout time.Duration // body deadline beyond the size allowance; 0 = the http.Server's
}

// New builds the front. reg may be nil.
func New(v Verifier, log *slog.Logger, reg prometheus.Registerer, services ...Service) *Server {
	s := &Server{verifier: v, services: map[string]Service{}, known: map[string]map[string]bool{}, extra: map[string]http.Handler{}, log: log}
	for _, svc := range services {
		s.services[svc.Name()] = svc
		if ops, ok := svc.(Operations); ok {
			set := map[string]bool{}
			for _, op := range ops.Operations() {
				set[op] = true
			}
			s.known[svc.Name()] = set
		}
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests, Help: "API requests by service, operation (\"unauthenticated\" when refused before authentication, \"Unknown\" for no known operation) and HTTP status."}, []string{"service", "operation", "status"})
	if reg != nil {
		reg.MustRegister(s.requests)
	}
	return s
}

// SetReadTimeout bounds how long a request's body may take to arrive: d
// plus its length at 128 KB/s, from the moment the request is
// authenticated as far as its headers allow. A body not in by then is
// refused with ErrBodyTimeout and the connection closed.
func (s *Server) SetReadTimeout(d time.Duration) { s.readTimeout = d }

// Authorizer decides whether an IAM user (Identity.User != "") may perform
// action on resource with the given condition context; it returns nil or
// an *auth.AccessDenied. Account root keys are never checked.
type Authorizer interface {
	Authorize(ctx context.Context, id auth.Identity, action, resource string, cond map[string][]string) error
}

// SetAuthorizer makes the front check every request signed with an IAM
// user's key against the user's identity policies before the service sees
// it (except the operations a service authorizes itself with a condition
// context: Lambda's CreateFunction and UpdateFunctionConfiguration).
func (s *Server) SetAuthorizer(a Authorizer) { s.authz = a }

// iamRequest names the IAM action and resource of a request: "lambda:" plus
// the operation (Invoke is lambda:InvokeFunction) on the function's ARN,
// "ec2:" plus the Action on "*", "iam:" plus the Action on the role or
// user it names. ok is false for the operations a service authorizes
// itself.
func iamRequest(service string, r *http.Request, body []byte, id auth.Identity) (action, resource string, ok bool) {
	op := Operation(service, r, body)
	switch service {
	case "lambda":
		switch op {
		case "CreateFunction", "UpdateFunctionConfiguration":
			return "", "", false
		}
		resource = "*"
		segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(segs) == 3 && segs[1] == "tags" { // TagResource, UntagResource, ListTags: the ARN
			if arn, err := url.PathUnescape(segs[2]); err == nil && arn != "" {
				resource = arn
			}
		}
		if len(segs) >= 3 && segs[1] == "functions" {
			name, err := url.PathUnescape(segs[2])
			if err == nil && name != "" {
				resource = name
				if !strings.HasPrefix(name, "arn:") {
					region := id.Region
					if region == "" {
						region = "us-east-1"
					}
					resource = "arn:aws:lambda:" + region + ":" + id.AccountID + ":function:" + name
				}
			}
		}
		return lambdaops.Action(op), resource, true
	case "sqs":
		// SQS authorizes itself: the resource is the queue its QueueUrl
		// names, and another account's queue needs the queue's Policy.
		return "", "", false
	case "sts":
		// STS authorizes itself: GetCallerIdentity needs no permission,
		// AssumeRole is decided with the role's trust policy.
		return "", "", false
	case "logs":
		// The log group the request names, else all of the account's.
		var in struct{ LogGroupName, LogGroupIdentifier string }
		_ = json.Unmarshal(body, &in)
		region := id.Region
		if region == "" {
			region = "us-east-1"
		}
		name := in.LogGroupName
		if name == "" {
			name = in.LogGroupIdentifier
		}
		switch {
		case strings.HasPrefix(name, "arn:"):
			resource = strings.TrimSuffix(name, ":*") + ":*"
		case name != "":
			resource = "arn:aws:logs:" + region + ":" + id.AccountID + ":log-group:" + name + ":*"
		default:
			resource = "arn:aws:logs:" + region + ":" + id.AccountID + ":log-group:*"
		}
		return "logs:" + op, resource, true
	case "iam":
		form, _ := url.ParseQuery(string(body))
		resource = "*"
		if n := form.Get("RoleName"); n != "" {
			resource = "arn:aws:iam::" + id.AccountID + ":role/" + n
		} else if n := form.Get("UserName"); n != "" {
			resource = "arn:aws:iam::" + id.AccountID + ":user/" + n
		}
		return "iam:" + op, resource, true
	}
	return service + ":" + op, "*", true
}

// Handle mounts a handler that does its own authentication (health, the
// admin API) at an exact path.
func (s *Server) Handle(path string, h http.Handler) { s.extra[path] = h }

// SetReady flips /_lambdaplane/health to 200.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(c int) { w.status = c; w.ResponseWriter.WriteHeader(c) }
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (read deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP implements http.Handler. Nothing of a request's body is read
// before its headers have authenticated it as far as they can (signature
// form, credential scope, access key, date; the signature itself when the
// request declares X-Amz-Content-Sha256); a refused request is answered at
// once and its connection closed.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_lambdaplane/health" {
		if !s.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
		return
	}
	if h, ok := s.extra[r.URL.Path]; ok {
		h.ServeHTTP(w, r)
		return
	}
	if u := s.unservedScope(r); u != nil {
		sw := &statusWriter{ResponseWriter: w, status: 200}
		u.write(sw, r)
		s.requests.WithLabelValues(OpUnserved, OpUnserved, strconv.Itoa(sw.status)).Inc()
		return
	}
	svc := s.pick(r)
	sw := &statusWriter{ResponseWriter: w, status: 200}
	op := OpUnauthenticated
	defer func() {
		s.requests.WithLabelValues(svc.Name(), op, strconv.Itoa(sw.status)).Inc()
	}()
	refuse := func(err error) {
		s.log.Debug("request refused", "service", svc.Name(), "method", r.Method, "path", r.URL.Path, "err", err)
		// The body stays unread: the connection cannot carry another
		// request. An expired read deadline keeps the server from reading
		// what is left of the body before it closes the connection.
		sw.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		svc.WriteError(sw, r, err)
	}
	if !s.ready.Load() {
		refuse(errors.New("service is starting"))
		return
	}
	pending, err := s.verifier.Begin(r, svc.Name())
	if err != nil {
		refuse(err)
		return
	}
	if _, ok := pending.Identity(); ok {
		// The signature is verified (over the declared payload hash): the
		// operation may be named even if the body is then refused.
		op = s.operationLabel(svc.Name(), r, nil)
	}
	opName := "" // the Query APIs' Action may be in the body
	if svc.Name() == "lambda" {
		opName = lambdaOperation(r)
	}
	limit := bodyLimit(svc.Name(), opName)
	if r.ContentLength > limit {
		refuse(&BodyTooLarge{Operation: opName, Limit: limit})
		return
	}
	body, sum, err := s.readBody(sw, r, limit)
	if err != nil {
		if errors.As(err, new(*BodyTooLarge)) {
			err = &BodyTooLarge{Operation: opName, Limit: limit}
		}
		refuse(err)
		return
	}
	id, err := pending.Finish(sum)
	if err != nil {
		refuse(err)
		return
	}
	markAuthenticated(r.Context())
	op = s.operationLabel(svc.Name(), r, body)
	if id.Restricted() && s.authz != nil {
		if action, resource, ok := iamRequest(svc.Name(), r, body, id); ok {
			var cond map[string][]string
			if c, ok := conditioner(svc); ok {
				cond = c.Conditions(r.Context(), r, id, body)
			}
			cond = globalConditions(r, id, cond, time.Now())
			if err := s.authz.Authorize(r.Context(), id, action, resource, cond); err != nil && !resourceGrants(r.Context(), svc, id, action, resource, cond, err) {
				svc.WriteError(sw, r, err)
				return
			}
		}
	}
	t := time.Now()
	svc.ServeAWS(sw, r, id, body)
	s.log.Debug("request", "service", svc.Name(), "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(t))
}

// readBody reads at most limit bytes of r's body within the body deadline
// and returns it with its hexadecimal SHA-256. Once the body is in, the
// connection's read deadline is cleared: a long invoke must not see its
// connection time out while the function runs.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, string, error) {
	rc := http.NewResponseController(w)
	if s.readTimeout > 0 {
		n := r.ContentLength
		if n < 0 {
			n = limit
		}
		_ = rc.SetReadDeadline(time.Now().Add(s.readTimeout + time.Duration(n/minBodyRate)*time.Second))
	}
	size := int64(512)
	if r.ContentLength > 0 {
		size = r.ContentLength + 1
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(buf, h), io.LimitReader(r.Body, limit+1))
	switch {
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return nil, "", fmt.Errorf("%w (%d bytes arrived)", ErrBodyTimeout, n)
	case err != nil:
		return nil, "", fmt.Errorf("read request body: %w", err)
	case n > limit:
		return nil, "", &BodyTooLarge{Limit: limit}
	}
	_ = rc.SetReadDeadline(time.Time{})
	return buf.Bytes(), hex.EncodeToString(h.Sum(nil)), nil
}

// bodyLimit is the largest body a request may carry: by operation for
// Lambda, MaxSmallBody for the Query APIs.
func bodyLimit(service, op string) int64 {
	if service != "lambda" {
		return MaxSmallBody
	}
	switch op {
	case "CreateFunction", "UpdateFunctionCode", "PublishLayerVersion":
		return MaxBody
	case "Invoke", "InvokeWithResponseStream":
		return MaxInvokeBody
	}
	return MaxSmallBody
}

// operationLabel names an authenticated request for the request metric:
// a Lambda operation, or an Action the Query service serves, else
// "Unknown"; never a value only the client chose.
func (s *Server) operationLabel(service string, r *http.Request, body []byte) string {
	op := Operation(service, r, body)
	if service == "lambda" {
		return op // lambdaOperation's names are a fixed set
	}
	if s.known[service][op] {
		return op
	}
	return OpUnknown
}

// Conditioner is implemented by services whose requests carry IAM
// condition keys only the service can know (Lambda: aws:ResourceTag/…,
// aws:RequestTag/…, aws:TagKeys); the front passes them to the Authorizer.
type Conditioner interface {
	Conditions(ctx context.Context, r *http.Request, id auth.Identity, body []byte) map[string][]string
}

// globalConditions adds IAM's global condition keys a request carries to
// cond (the service's own keys win): aws:CurrentTime, aws:EpochTime,
// aws:SourceIp, aws:SecureTransport, aws:RequestedRegion,
// aws:PrincipalAccount, aws:PrincipalArn, aws:PrincipalType and, for an
// IAM user, aws:username.
func globalConditions(r *http.Request, id auth.Identity, cond map[string][]string, now time.Time) map[string][]string {
	out := make(map[string][]string, len(cond)+9)
	set := func(k, v string) { out[k] = []string{v} }
	set("aws:CurrentTime", now.UTC().Format(time.RFC3339))
	set("aws:EpochTime", strconv.FormatInt(now.Unix(), 10))
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		set("aws:SourceIp", host)
	}
	set("aws:SecureTransport", strconv.FormatBool(r.TLS != nil))
	if id.Region != "" {
		set("aws:RequestedRegion", id.Region)
	}
	set("aws:PrincipalAccount", id.AccountID)
	switch {
	case id.Role != "":
		set("aws:PrincipalType", "AssumedRole")
		set("aws:PrincipalArn", "arn:aws:iam::"+id.AccountID+":role/"+strings.TrimPrefix(id.RolePath+id.Role, "/"))
	case id.User != "":
		set("aws:PrincipalType", "User")
		set("aws:PrincipalArn", id.ARN())
		set("aws:username", id.User)
	default:
		set("aws:PrincipalType", "Account")
		set("aws:PrincipalArn", id.ARN())
	}
	for k, v := range cond {
		out[k] = v
	}
	return out
}

// ResourceGranter is implemented by services whose resources carry
// resource-based policies (Lambda's functions): in the caller's own
// account a policy naming the caller (its user, role or session ARN)
// allows what its identity policies do not, as IAM evaluates a request
// within one account; an explicit Deny still refuses.
type ResourceGranter interface {
	ResourceGrants(ctx context.Context, id auth.Identity, action, resource string, cond map[string][]string) bool
}

// resourceGrants reports whether svc's resource policy overcomes denied,
// an implicit denial of the caller's identity policies.
func resourceGrants(ctx context.Context, svc Service, id auth.Identity, action, resource string, cond map[string][]string, denied error) bool {
	var ad *auth.AccessDenied
	if !errors.As(denied, &ad) || !ad.Implicit() {
		return false
	}
	for range 4 {
		if g, ok := svc.(ResourceGranter); ok {
			return g.ResourceGrants(ctx, id, action, resource, cond)
		}
		u, ok := svc.(interface{ Unwrap() Service })
		if !ok {
			return false
		}
		svc = u.Unwrap()
	}
	return false
}

// conditioner finds the Conditioner of svc, or of the service it wraps
// (a wrapper has Unwrap() Service).
func conditioner(svc Service) (Conditioner, bool) {
	for range 4 {
		if c, ok := svc.(Conditioner); ok {
			return c, true
		}
		u, ok := svc.(interface{ Unwrap() Service })
		if !ok {
			return nil, false
		}
		svc = u.Unwrap()
	}
	return nil, false
}

// unservedScope is the answer to a request signed for a service
// lambdaplane does not serve (nil if it serves it, or the path is
// Lambda's).
func (s *Server) unservedScope(r *http.Request) *unserved {
	name := auth.ScopeService(r)
	if name == "" || strings.HasPrefix(r.URL.Path, "/20") || strings.HasPrefix(r.URL.Path, "/_lambdaplane/") {
		return nil
	}
	if _, ok := s.services[name]; ok {
		return nil
	}
	return s.unservedFor(name)
}

// pick finds the service: the credential scope when it names a served
// service, else the request's shape (Lambda REST paths vs Query API forms).
// A Lambda REST path is Lambda's whatever the scope says, so that a request
// signed for another service is refused in Lambda's words.
func (s *Server) pick(r *http.Request) Service {
	lambdaPath := strings.HasPrefix(r.URL.Path, "/20") || strings.HasPrefix(r.URL.Path, "/_lambdaplane/")
	if name := auth.ScopeService(r); name != "" && (!lambdaPath || name == "lambda") {
		if svc, ok := s.services[name]; ok {
			return svc
		}
	}
	if !lambdaPath && r.Method == http.MethodPost {
		if strings.Contains(r.URL.RawQuery, "Version=2010-05-08") {
			if svc, ok := s.services["iam"]; ok {
				return svc
			}
		}
		if svc, ok := s.services["ec2"]; ok && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			return svc
		}
	}
	return s.services["lambda"]
}

// MetricRequests counts API requests by service, operation and status.
const MetricRequests = "lambdaplane_api_requests_total"

// Operation names an API request: the Action of a Query API (EC2, IAM)
// request when it is a short identifier, the operation a Lambda REST path
// and method map to, or "Unknown". IAM authorization names the action with
// it; the request metric keeps only the Actions a service serves.
func Operation(service string, r *http.Request, body []byte) string {
	if service != "lambda" {
		if t := r.Header.Get("X-Amz-Target"); t != "" { // JSON protocols: Prefix_Version.Operation
			if _, op, ok := strings.Cut(t, "."); ok {
				return boundedName(op)
			}
			return "Unknown"
		}
		if a := r.URL.Query().Get("Action"); a != "" {
			return boundedName(a)
		}
		if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
			return boundedName(v.Get("Action"))
		}
		return "Unknown"
	}
	return lambdaOperation(r)
}

// boundedName keeps an operation name a short identifier.
func boundedName(s string) string {
	if len(s) > 64 {
		return "Unknown"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "Unknown"
		}
	}
	return s
}

// lambdaOperation maps a Lambda REST request to its operation name.
func lambdaOperation(r *http.Request) string {
	if rt, _, ok := lambdaops.Match(r.Method, r.URL.EscapedPath(), r.URL.Query()); ok {
		return rt.Name
	}
	return "Unknown"
}
