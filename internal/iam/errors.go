// Package iam holds IAM roles and users per account (stored in JetStream
// KV), their attached AWS-managed and inline policies, and a pure policy
// evaluator used to check what an execution role allows and whom it
// trusts, and what an IAM user's request may do (Users.Authorize).
package iam

import (
	"errors"
	"fmt"
)

// Kinds of error returned by this package. Every error wraps exactly one of
// them; its message is the user-facing one (as AWS words it where it can).
var (
	ErrNoSuchEntity            = errors.New("NoSuchEntity")
	ErrEntityAlreadyExists     = errors.New("EntityAlreadyExists")
	ErrMalformedPolicyDocument = errors.New("MalformedPolicyDocument")
	ErrDeleteConflict          = errors.New("DeleteConflict")
	ErrValidation              = errors.New("ValidationError")
	ErrLimitExceeded           = errors.New("LimitExceeded")
)

// Error is a typed IAM error: Kind is one of the Err* values above, and
// Error() is the message for the user.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func malformed(format string, args ...any) error {
	return errorf(ErrMalformedPolicyDocument, format, args...)
}
