package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/sts"
)

// Execution environments' credentials: a session of the function's role
// lasts envCredsLife; a new environment reuses its function's session
// while at least envCredsReuse of it is left, so an environment never
// holds credentials with less than that (and goes before they expire:
// invoke's credsMargin).
const (
	envCredsLife  = 12 * time.Hour
	envCredsReuse = 6 * time.Hour
)

// roleCredentials issues execution environments' credentials (an
// invoke.CredentialSource), one session per function and role at a time
// on this host.
type roleCredentials struct {
	sts *sts.Service
	mu  sync.Mutex
	by  map[[3]string]*auth.Session // account, role ARN, function
}

func newRoleCredentials(s *sts.Service) *roleCredentials {
	return &roleCredentials{sts: s, by: map[[3]string]*auth.Session{}}
}

func (c *roleCredentials) get(ctx context.Context, cfg *control.Config) (*invoke.Credentials, error) {
	k := [3]string{cfg.AccountID, cfg.Role, cfg.FunctionName}
	now := time.Now()
	c.mu.Lock()
	sess := c.by[k]
	c.mu.Unlock()
	if sess == nil || sess.Expiration.Sub(now) < envCredsReuse {
		var err error
		if sess, err = c.sts.RoleCredentials(ctx, cfg.AccountID, cfg.Role, cfg.FunctionName, envCredsLife); err != nil {
			return nil, err
		}
		c.mu.Lock()
		for key, s := range c.by {
			if s.Expiration.Sub(now) < envCredsReuse {
				delete(c.by, key)
			}
		}
		c.by[k] = sess
		c.mu.Unlock()
	}
	return &invoke.Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.Secret, SessionToken: sess.Token, Expiration: sess.Expiration}, nil
}

// serveFunctionEndpoint serves the API front inside the service network's
// endpoint namespace (netdev.Router.ListenAPI): functions reach it at
// AWS_ENDPOINT_URL.
func (s *Server) serveFunctionEndpoint() error {
	ln, err := s.router.ListenAPI()
	if err != nil {
		return err
	}
	cfg := s.Cfg
	s.fnAPI = &http.Server{
		Handler: s.front, ConnContext: api.ConnContext,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout, IdleTimeout: cfg.IdleConnTimeout,
	}
	go func() {
		if err := s.fnAPI.Serve(api.LimitUnauthenticated(ln, cfg.MaxUnauthConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("function API endpoint stopped", "err", err)
		}
	}()
	return nil
}

func (s *Server) closeFunctionEndpoint() {
	if s.fnAPI != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.fnAPI.Shutdown(ctx)
		cancel()
	}
}
