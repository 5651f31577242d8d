package logsapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
)

// Error is a CloudWatch Logs error: its __type and message.
type Error struct {
	Code    string
	Message string
	Status  int // 400 unless set
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func invalidParam(msg string) *Error { return &Error{Code: "InvalidParameterException", Message: msg} }
func notFound(msg string) *Error     { return &Error{Code: "ResourceNotFoundException", Message: msg} }

// authErrors maps SigV4 failures to the codes JSON services send.
var authErrors = []struct {
	err  error
	code string
	msg  string
}{
	{auth.ErrUnknownKey, "UnrecognizedClientException", "The security token included in the request is invalid."},
	{auth.ErrExpiredToken, "ExpiredTokenException", "The security token included in the request is expired"},
	{auth.ErrBadSignature, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."},
	{auth.ErrClockSkew, "InvalidSignatureException", "Signature expired: the request time is more than 15 minutes away from the server time. Check the clock of the client machine."},
	{auth.ErrPresignedExpired, "InvalidSignatureException", "Signature expired: the presigned URL is past its X-Amz-Expires."},
	{auth.ErrMissingAuth, "MissingAuthenticationTokenException", "Missing Authentication Token: sign requests with AWS Signature Version 4 (use the credentials lambdaplane wrote to its data directory)."},
	{auth.ErrMalformedAuth, "IncompleteSignatureException", "The Authorization header is malformed; sign requests with AWS Signature Version 4."},
	{api.ErrBodyTooLarge, "InvalidParameterException", ""},
	{api.ErrBodyTimeout, "RequestTimeoutException", ""},
}

// writeError writes err as a JSON 1.1 error.
func writeError(w http.ResponseWriter, reqID string, err error) {
	code, status, msg := "ServiceUnavailableException", 500, err.Error()
	var le *Error
	var denied *auth.AccessDenied
	var pe *PatternError
	switch {
	case errors.As(err, &le):
		code, status, msg = le.Code, 400, le.Message
		if le.Status != 0 {
			status = le.Status
		}
	case errors.As(err, &pe):
		code, status, msg = "InvalidParameterException", 400, pe.Msg
	case errors.As(err, &denied):
		code, status, msg = "AccessDeniedException", 400, denied.Error()
	case errors.Is(err, context.Canceled):
		msg = "request canceled"
	default:
		var rej *auth.Rejection
		for _, a := range authErrors {
			if errors.Is(err, a.err) {
				code, status, msg = a.code, 400, a.msg
				if a.msg == "" || errors.As(err, &rej) {
					msg = err.Error()
				}
				break
			}
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-amz-json-1.1")
	if reqID != "" {
		h.Set("X-Amzn-RequestId", reqID)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}
