package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Account is one tenant. Every resource belongs to exactly one account.
type Account struct {
	ID      string      `json:"id"` // 12 digits
	Name    string      `json:"name"`
	Keys    []AccessKey `json:"keys"`
	Created time.Time   `json:"created"`
}

// AccessKey is an AWS-style key pair.
type AccessKey struct {
	ID      string    `json:"id"`                // AKIA... (20 chars)
	Secret  string    `json:"secret"`            // 40 chars
	User    string    `json:"user,omitempty"`    // IAM user name; "" = the account's root key
	Created time.Time `json:"created,omitempty"` // user keys
}

// Identity is who signed a request, as established by SigV4 verification.
type Identity struct {
	AccountID   string
	AccessKeyID string
	User        string // IAM user the key belongs to; "" = the account root (allowed everything)
	Service     string // credential-scope service: lambda, ec2, iam
	Region      string // credential-scope region

	// Temporary is set for requests signed with temporary credentials
	// (ASIA… keys with X-Amz-Security-Token, issued by STS).
	Temporary bool
	// Role names the role of a role session (AssumeRole, or an execution
	// environment's credentials): its requests are allowed what the role's
	// identity policies (and SessionPolicy) allow. "" otherwise.
	Role, RoleID, RolePath, Session string
	SessionPolicy                   string // JSON; "" = none
}

// Restricted reports whether the caller's requests are subject to IAM
// policies (an IAM user or a role session; the account root is not).
func (id Identity) Restricted() bool { return id.User != "" || id.Role != "" }

type identityKey struct{}

// WithIdentity returns ctx carrying the verified caller (for checks deeper
// in a request than the API edge).
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the caller WithIdentity put in ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// ARN names the caller as IAM does.
func (id Identity) ARN() string {
	if id.Role != "" {
		return "arn:aws:sts::" + id.AccountID + ":assumed-role/" + id.Role + "/" + id.Session
	}
	if id.User == "" {
		return "arn:aws:iam::" + id.AccountID + ":root"
	}
	return "arn:aws:iam::" + id.AccountID + ":user/" + id.User
}

// AccessDenied is an IAM authorization refusal of a caller's request; each
// service writes it in its own wire format (AccessDeniedException,
// UnauthorizedOperation, AccessDenied) with status 403.
type AccessDenied struct {
	Caller, Action, Resource string
	Reason                   string // "because no identity-based policy allows ...", "with an explicit deny ..."
}

// Implicit reports a refusal because no policy allowed the action (not
// an explicit Deny, not a caller that no longer exists): a same-account
// resource policy naming the caller can still allow it.
func (e *AccessDenied) Implicit() bool { return strings.HasPrefix(e.Reason, "because no ") }

func (e *AccessDenied) Error() string {
	return fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s %s", e.Caller, e.Action, e.Resource, e.Reason)
}

// Rejection is a verification failure whose Message is what the client is
// told, in AWS's words where AWS has some ("Credential should be scoped to
// a valid region, not 'eu-west-1'. "); Kind is the sentinel it is a case of.
type Rejection struct {
	Kind    error
	Message string
}

func (e *Rejection) Error() string { return e.Message }
func (e *Rejection) Unwrap() error { return e.Kind }

// Typed verification errors; the API edge maps them to each service's wire
// format (UnrecognizedClientException / InvalidSignatureException / ...).
var (
	ErrMissingAuth      = errors.New("request is not signed: missing Authorization header or X-Amz-Signature query parameter")
	ErrUnknownKey       = errors.New("the security token included in the request is invalid")
	ErrBadSignature     = errors.New("the request signature we calculated does not match the signature you provided; check your AWS Secret Access Key and signing method")
	ErrClockSkew        = errors.New("signature expired: the request time is more than 15 minutes from the server time")
	ErrMalformedAuth    = errors.New("authorization header is malformed")
	ErrPresignedExpired = errors.New("presigned request has expired")
	ErrExpiredToken     = errors.New("the security token included in the request is expired")
)

// Session is a set of temporary credentials (STS): an access key id
// (ASIA…), its secret and session token, valid until Expiration, acting as
// an IAM user (GetSessionToken; User "" = the account root) or as a role
// session (Role set).
type Session struct {
	AccessKeyID   string    `json:"accessKeyId"`
	Secret        string    `json:"secret"`
	Token         string    `json:"token"`
	AccountID     string    `json:"accountId"`
	Expiration    time.Time `json:"expiration"`
	User          string    `json:"user,omitempty"`
	Role          string    `json:"role,omitempty"`
	RoleID        string    `json:"roleId,omitempty"`
	RolePath      string    `json:"rolePath,omitempty"`
	SessionName   string    `json:"sessionName,omitempty"`
	SessionPolicy string    `json:"sessionPolicy,omitempty"`
	Created       time.Time `json:"created"`
}

// Identity is who a request signed with the session's credentials is.
func (s *Session) Identity() Identity {
	return Identity{
		AccountID: s.AccountID, AccessKeyID: s.AccessKeyID, User: s.User, Temporary: true,
		Role: s.Role, RoleID: s.RoleID, RolePath: s.RolePath, Session: s.SessionName, SessionPolicy: s.SessionPolicy,
	}
}

// SessionLookup resolves a temporary access key id to its session; it
// returns (nil, nil) for an id it does not know.
type SessionLookup interface {
	LookupSession(ctx context.Context, keyID string) (*Session, error)
}
