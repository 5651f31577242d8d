package control

import "fmt"

// Error is a typed domain error. Code is the Lambda error code the API edge
// sends (ResourceNotFoundException, ...); Status its HTTP status.
type Error struct {
	Code    string
	Status  int
	Message string
	Reason  string // TooManyRequestsException Reason, when set
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errf(code string, status int, format string, a ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, a...)}
}

// Constructors for the errors this package returns.
func notFound(format string, a ...any) *Error {
	return errf("ResourceNotFoundException", 404, format, a...)
}
func conflict(format string, a ...any) *Error {
	return errf("ResourceConflictException", 409, format, a...)
}
func invalidParam(format string, a ...any) *Error {
	return errf("InvalidParameterValueException", 400, format, a...)
}
func validation(format string, a ...any) *Error {
	return errf("ValidationException", 400, format, a...)
}
func preconditionFailed(format string, a ...any) *Error {
	return errf("PreconditionFailedException", 412, format, a...)
}

// InvalidParam builds an InvalidParameterValueException (used by callers that
// validate inputs, e.g. the API edge decoding a request).
func InvalidParam(format string, a ...any) *Error { return invalidParam(format, a...) }

// InvalidContent builds an InvalidRequestContentException.
func InvalidContent(format string, a ...any) *Error {
	return errf("InvalidRequestContentException", 400, format, a...)
}

// NotFound builds a ResourceNotFoundException.
func NotFound(format string, a ...any) *Error { return notFound(format, a...) }

// TooManyRequests builds a 429 with its Reason.
func TooManyRequests(reason, format string, a ...any) *Error {
	e := errf("TooManyRequestsException", 429, format, a...)
	e.Reason = reason
	return e
}
