package auth

import (
	"errors"
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
	ID     string `json:"id"`     // AKIA... (20 chars)
	Secret string `json:"secret"` // 40 chars
}

// Identity is who signed a request, as established by SigV4 verification.
type Identity struct {
	AccountID   string
	AccessKeyID string
	Service     string // credential-scope service: lambda, ec2, iam
	Region      string // credential-scope region
}

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
