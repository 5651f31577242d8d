package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// MaxBody bounds a request body: a 50 MB zip, base64-encoded inside JSON.
const MaxBody = 72 << 20

// Verifier establishes who signed a request.
type Verifier interface {
	Verify(r *http.Request, body []byte) (auth.Identity, error)
}

// ErrBodyTooLarge is handed to a service's WriteError when the body is over MaxBody.
var ErrBodyTooLarge = errors.New("request body is too large")

// Server routes verified requests to services.
type Server struct {
	verifier Verifier
	services map[string]Service
	extra    map[string]http.Handler
	log      *slog.Logger
	ready    atomic.Bool
	requests *prometheus.CounterVec
	authz    Authorizer // nil: IAM users are not restricted (tests)
}

// New builds the front. reg may be nil.
func New(v Verifier, log *slog.Logger, reg prometheus.Registerer, services ...Service) *Server {
	s := &Server{verifier: v, services: map[string]Service{}, extra: map[string]http.Handler{}, log: log}
	for _, svc := range services {
		s.services[svc.Name()] = svc
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests, Help: "API requests by service, operation and HTTP status."}, []string{"service", "operation", "status"})
	if reg != nil {
		reg.MustRegister(s.requests)
	}
	return s
}

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
		case "Invoke":
			op = "InvokeFunction"
		}
		resource = "*"
		segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
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
		return "lambda:" + op, resource, true
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

// Handle mounts an unsigned handler at an exact path (health, metrics).
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

// ServeHTTP implements http.Handler.
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
	svc := s.pick(r)
	sw := &statusWriter{ResponseWriter: w, status: 200}
	var body []byte
	defer func() {
		s.requests.WithLabelValues(svc.Name(), Operation(svc.Name(), r, body), strconv.Itoa(sw.status)).Inc()
	}()
	if !s.ready.Load() {
		svc.WriteError(sw, r, errors.New("service is starting"))
		return
	}
	read, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		svc.WriteError(sw, r, fmt.Errorf("read request body: %w", err))
		return
	}
	if len(read) > MaxBody {
		svc.WriteError(sw, r, ErrBodyTooLarge)
		return
	}
	body = read
	id, err := s.verifier.Verify(r, body)
	if err != nil {
		s.log.Debug("request rejected", "path", r.URL.Path, "err", err)
		svc.WriteError(sw, r, err)
		return
	}
	if id.User != "" && s.authz != nil {
		if action, resource, ok := iamRequest(svc.Name(), r, body, id); ok {
			if err := s.authz.Authorize(r.Context(), id, action, resource, nil); err != nil {
				svc.WriteError(sw, r, err)
				return
			}
		}
	}
	t := time.Now()
	svc.ServeAWS(sw, r, id, body)
	s.log.Debug("request", "service", svc.Name(), "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(t))
}

// pick finds the service: the credential scope when present, else the
// request's shape (Lambda REST paths vs Query API forms).
func (s *Server) pick(r *http.Request) Service {
	if name := auth.ScopeService(r); name != "" {
		if svc, ok := s.services[name]; ok {
			return svc
		}
	}
	if !strings.HasPrefix(r.URL.Path, "/20") && r.Method == http.MethodPost {
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

// Operation names an API request for metrics: the Action of a Query API
// (EC2, IAM) request, the operation a Lambda REST path and method map to,
// or "Unknown" (the label's values stay bounded).
func Operation(service string, r *http.Request, body []byte) string {
	if service != "lambda" {
		if a := r.URL.Query().Get("Action"); a != "" {
			return boundedName(a)
		}
		if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
			return boundedName(v.Get("Action"))
		}
		return "Unknown"
	}
	return lambdaOperation(r.Method, r.URL.Path)
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
func lambdaOperation(method, path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) < 2 {
		return "Unknown"
	}
	n := len(segs)
	switch {
	case segs[0] == "2015-03-31" && segs[1] == "functions" && n == 2:
		switch method {
		case http.MethodPost:
			return "CreateFunction"
		case http.MethodGet:
			return "ListFunctions"
		}
	case segs[0] == "2015-03-31" && segs[1] == "functions" && n == 3:
		switch method {
		case http.MethodGet:
			return "GetFunction"
		case http.MethodDelete:
			return "DeleteFunction"
		}
	case segs[0] == "2015-03-31" && segs[1] == "functions" && n == 4:
		switch segs[3] + " " + method {
		case "configuration GET":
			return "GetFunctionConfiguration"
		case "configuration PUT":
			return "UpdateFunctionConfiguration"
		case "code PUT":
			return "UpdateFunctionCode"
		case "invocations POST":
			return "Invoke"
		case "versions POST":
			return "PublishVersion"
		case "versions GET":
			return "ListVersionsByFunction"
		case "aliases POST":
			return "CreateAlias"
		case "aliases GET":
			return "ListAliases"
		}
	case segs[0] == "2015-03-31" && segs[1] == "functions" && n == 5 && segs[3] == "aliases":
		switch method {
		case http.MethodGet:
			return "GetAlias"
		case http.MethodPut:
			return "UpdateAlias"
		case http.MethodDelete:
			return "DeleteAlias"
		}
	case segs[0] == "2016-08-19" && segs[1] == "account-settings" && method == http.MethodGet:
		return "GetAccountSettings"
	case (segs[0] == "2017-10-31" || segs[0] == "2019-09-30") && segs[1] == "functions" && n == 4 && segs[3] == "concurrency":
		switch method {
		case http.MethodPut:
			return "PutFunctionConcurrency"
		case http.MethodDelete:
			return "DeleteFunctionConcurrency"
		case http.MethodGet:
			return "GetFunctionConcurrency"
		}
	case segs[0] == "2018-10-31" && segs[1] == "layers":
		switch {
		case n == 2 && method == http.MethodGet:
			return "ListLayers"
		case n == 4 && segs[3] == "versions" && method == http.MethodPost:
			return "PublishLayerVersion"
		case n == 4 && segs[3] == "versions" && method == http.MethodGet:
			return "ListLayerVersions"
		case n == 5 && segs[3] == "versions" && method == http.MethodGet:
			return "GetLayerVersion"
		case n == 5 && segs[3] == "versions" && method == http.MethodDelete:
			return "DeleteLayerVersion"
		}
	case segs[0] == "_lambdaplane" && segs[1] == "logs":
		return "GetLogs"
	}
	return "Unknown"
}
