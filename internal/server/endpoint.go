package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// on this host. A function's session is issued ahead, when its records
// change (prime: created, its role updated), so its first cold start
// writes nothing to the store; a cold start that comes while that issue
// is under way waits for it instead of issuing a second session.
type roleCredentials struct {
	sts *sts.Service
	mu  sync.Mutex
	by  map[[3]string]*auth.Session // account, role ARN, function
	// issuing holds the keys whose session is being issued; the channel
	// closes when it is done.
	issuing map[[3]string]chan struct{}
}

func newRoleCredentials(s *sts.Service) *roleCredentials {
	return &roleCredentials{sts: s, by: map[[3]string]*auth.Session{}, issuing: map[[3]string]chan struct{}{}}
}

// get is the invoke.CredentialSource. A role Lambda cannot assume (gone,
// of another account, not trusting lambda.amazonaws.com) is the caller's
// InvalidParameterValueException; a store that fails to keep the session
// is a ServiceException (500), which a retry may cure.
func (c *roleCredentials) get(ctx context.Context, cfg *control.Config) (*invoke.Credentials, error) {
	sess, err := c.session(ctx, cfg)
	if errors.Is(err, sts.ErrNotAssumable) {
		return nil, control.InvalidParam("%v", err)
	}
	if err != nil {
		return nil, fmt.Errorf("issue the execution role's credentials of %s: %w", cfg.FunctionName, err)
	}
	return &invoke.Credentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.Secret, SessionToken: sess.Token, Expiration: sess.Expiration}, nil
}

// session returns cfg's session with at least envCredsReuse left,
// issuing one (once per key at a time) when there is none.
func (c *roleCredentials) session(ctx context.Context, cfg *control.Config) (*auth.Session, error) {
	k := [3]string{cfg.AccountID, cfg.Role, cfg.FunctionName}
	for {
		now := time.Now()
		c.mu.Lock()
		if sess := c.by[k]; fresh(sess, now) {
			c.mu.Unlock()
			return sess, nil
		}
		if wait, busy := c.issuing[k]; busy {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.issuing[k] = done
		c.mu.Unlock()

		sess, err := c.sts.RoleCredentials(ctx, cfg.AccountID, cfg.Role, cfg.FunctionName, envCredsLife)
		c.mu.Lock()
		delete(c.issuing, k)
		close(done)
		if err == nil {
			for key, s := range c.by {
				if !fresh(s, now) {
					delete(c.by, key)
				}
			}
			c.by[k] = sess
		}
		c.mu.Unlock()
		return sess, err
	}
}

// fresh reports whether a new environment may still take sess at now
// (at least envCredsReuse of it left).
func fresh(sess *auth.Session, now time.Time) bool {
	return sess != nil && sess.Expiration.Sub(now) >= envCredsReuse
}

// prime issues cfg's session ahead of its first cold start, in the
// background; failures are left for that cold start to report.
func (c *roleCredentials) prime(cfg *control.Config, log *slog.Logger) {
	if cfg == nil || cfg.Role == "" {
		return
	}
	k := [3]string{cfg.AccountID, cfg.Role, cfg.FunctionName}
	c.mu.Lock()
	sess, busy := c.by[k], c.issuing[k] != nil
	c.mu.Unlock()
	if busy || fresh(sess, time.Now()) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.session(ctx, cfg); err != nil {
			log.Debug("issuing an execution role session ahead failed", "function", cfg.FunctionName, "role", cfg.Role, "err", err)
		}
	}()
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
