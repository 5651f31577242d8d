package invoke

import (
	"context"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
)

// Credentials are an execution environment's temporary credentials for its
// function's execution role (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN), valid until Expiration.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expiration                                 time.Time
}

// CredentialSource issues the credentials of a new environment of cfg's
// function (a session of its role named after the function). Its errors
// reach the invoker as they are: a *control.Error when the function's
// configuration is at fault, any other error a ServiceException.
type CredentialSource func(ctx context.Context, cfg *control.Config) (*Credentials, error)

// credsMargin is how long before its credentials expire an environment
// stops taking invokes: an environment lives at most as long as its
// credentials, less its function's timeout and this margin, so no invoke
// ever runs with expired ones.
const credsMargin = 5 * time.Minute

// credentials fetches a new environment's credentials (none without a
// source).
func (s *Scheduler) credentials(ctx context.Context, cfg *control.Config) (*Credentials, error) {
	if s.o.Credentials == nil {
		return nil, nil
	}
	return s.o.Credentials(ctx, cfg)
}

// credsEnviron is the credential and endpoint part of an environment's
// variables.
func (s *Scheduler) credsEnviron(e *env) []string {
	var out []string
	if c := e.creds; c != nil {
		out = append(out, "AWS_ACCESS_KEY_ID="+c.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+c.SecretAccessKey, "AWS_SESSION_TOKEN="+c.SessionToken)
	}
	if _, own := e.cfg.Environment["AWS_ENDPOINT_URL"]; s.o.EndpointURL != "" && !own {
		out = append(out, "AWS_ENDPOINT_URL="+s.o.EndpointURL)
	}
	return out
}

// credsExpiring reports whether e's credentials expire before an invoke
// started now could end (it is then destroyed instead of reused).
func credsExpiring(e *env, now time.Time) bool {
	if e.creds == nil {
		return false
	}
	return now.Add(time.Duration(e.cfg.Timeout)*time.Second + credsMargin).After(e.creds.Expiration)
}
