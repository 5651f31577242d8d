package auth

import (
	"context"
	"errors"
	"fmt"
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
}

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
)
