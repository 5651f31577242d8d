package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/lambdaapi"
	"github.com/lambdaplane/lambdaplane/internal/urls"
)

// urlListener is the function URL listener (Cfg.URLListen).
type urlListener struct {
	srv  *http.Server
	port int
}

// serveURLs opens the function URL listener, unless Cfg.URLListen is off.
func (s *Server) serveURLs(v *auth.Verifier, authz urls.Authorizer) error {
	if s.Cfg.URLListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.Cfg.URLListen)
	if err != nil {
		return fmt.Errorf("listen on %s for function URLs: %w (pass --url-listen ADDR, or off)", s.Cfg.URLListen, err)
	}
	s.URLEndpoint = "http://" + ln.Addr().String()
	h := urls.New(urls.Deps{Functions: s.ctl, Invoker: s.sched, Verifier: v, Authorizer: authz, CallerOf: lambdaapi.CallerOf, Log: s.log})
	s.fnURLs = &urlListener{port: ln.Addr().(*net.TCPAddr).Port, srv: &http.Server{
		Handler: h, ReadHeaderTimeout: s.Cfg.ReadHeaderTimeout, ReadTimeout: s.Cfg.ReadTimeout, IdleTimeout: s.Cfg.IdleConnTimeout,
	}}
	go func() {
		if err := s.fnURLs.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("function URL server stopped", "err", err)
		}
	}()
	s.log.Info("serving function URLs", "listen", ln.Addr().String())
	return nil
}

// urlPort is the function URL listener's port (0: off).
func (s *Server) urlPort() int {
	if s.fnURLs == nil {
		return 0
	}
	return s.fnURLs.port
}

func (s *Server) closeURLs() {
	if s.fnURLs != nil {
		_ = s.fnURLs.srv.Close()
	}
}
