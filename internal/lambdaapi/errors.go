package lambdaapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/control"
)

// wireError is Lambda's JSON error body.
type wireError struct {
	Type    string `json:"Type"`
	Message string `json:"Message"`
	Lower   string `json:"message"`
	Reason  string `json:"Reason,omitempty"`
}

// authErrors maps SigV4 failures to Lambda's codes (one table, tested once).
var authErrors = []struct {
	err    error
	code   string
	status int
	msg    string
}{
	{auth.ErrUnknownKey, "UnrecognizedClientException", 403, "The security token included in the request is invalid."},
	{auth.ErrExpiredToken, "ExpiredTokenException", 403, "The security token included in the request is expired"},
	{auth.ErrBadSignature, "InvalidSignatureException", 403, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."},
	{auth.ErrClockSkew, "InvalidSignatureException", 403, "Signature expired: the request time is more than 15 minutes away from the server time. Check the clock of the client machine."},
	{auth.ErrPresignedExpired, "InvalidSignatureException", 403, "Signature expired: the presigned URL is past its X-Amz-Expires."},
	{auth.ErrMissingAuth, "MissingAuthenticationTokenException", 403, "Missing Authentication Token: sign requests with AWS Signature Version 4 (use the credentials lambdaplane wrote to its data directory)."},
	{auth.ErrMalformedAuth, "IncompleteSignatureException", 403, "The Authorization header is malformed; sign requests with AWS Signature Version 4."},
	{api.ErrBodyTooLarge, "RequestTooLargeException", 413, ""},
	{api.ErrBodyTimeout, "RequestTimeoutException", 408, ""},
}

// An empty msg in authErrors, or an *auth.Rejection (a wrong credential
// scope, an unsigned payload), means the error's own message is the one
// the client sees.

// writeError writes err in Lambda's format.
func writeError(w http.ResponseWriter, requestID string, err error) {
	code, status, msg, reason := "ServiceException", 500, err.Error(), ""
	var ce *control.Error
	var denied *auth.AccessDenied
	switch {
	case errors.As(err, &ce):
		code, status, msg, reason = ce.Code, ce.Status, ce.Message, ce.Reason
	case errors.As(err, &denied):
		code, status, msg = "AccessDeniedException", 403, denied.Error()
	case errors.Is(err, context.Canceled):
		code, status, msg = "ServiceException", 500, "request canceled"
	default:
		var rej *auth.Rejection
		for _, a := range authErrors {
			if errors.Is(err, a.err) {
				code, status, msg = a.code, a.status, a.msg
				if a.msg == "" || errors.As(err, &rej) {
					msg = err.Error()
				}
				break
			}
		}
	}
	typ := "User"
	if status >= 500 {
		typ = "Service"
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", code)
	if requestID != "" {
		h.Set("X-Amzn-RequestId", requestID)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wireError{Type: typ, Message: msg, Lower: msg, Reason: reason})
}
