package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
}

// New builds the front. reg may be nil.
func New(v Verifier, log *slog.Logger, reg prometheus.Registerer, services ...Service) *Server {
	s := &Server{verifier: v, services: map[string]Service{}, extra: map[string]http.Handler{}, log: log}
	for _, svc := range services {
		s.services[svc.Name()] = svc
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lambdaplane_api_requests_total", Help: "API requests by service and status."}, []string{"service", "status"})
	if reg != nil {
		reg.MustRegister(s.requests)
	}
	return s
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
	defer func() { s.requests.WithLabelValues(svc.Name(), fmt.Sprint(sw.status)).Inc() }()
	if !s.ready.Load() {
		svc.WriteError(sw, r, errors.New("service is starting"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		svc.WriteError(sw, r, fmt.Errorf("read request body: %w", err))
		return
	}
	if len(body) > MaxBody {
		svc.WriteError(sw, r, ErrBodyTooLarge)
		return
	}
	id, err := s.verifier.Verify(r, body)
	if err != nil {
		s.log.Debug("request rejected", "path", r.URL.Path, "err", err)
		svc.WriteError(sw, r, err)
		return
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
