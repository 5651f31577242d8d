package lambdaapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/control"
)

func TestWriteErrorTable(t *testing.T) {
	cases := []struct {
		err    error
		code   string
		status int
		typ    string
	}{
		{auth.ErrUnknownKey, "UnrecognizedClientException", 403, "User"},
		{fmt.Errorf("key AKIA...: %w", auth.ErrUnknownKey), "UnrecognizedClientException", 403, "User"},
		{auth.ErrBadSignature, "InvalidSignatureException", 403, "User"},
		{auth.ErrClockSkew, "InvalidSignatureException", 403, "User"},
		{auth.ErrPresignedExpired, "InvalidSignatureException", 403, "User"},
		{auth.ErrMissingAuth, "MissingAuthenticationTokenException", 403, "User"},
		{auth.ErrMalformedAuth, "IncompleteSignatureException", 403, "User"},
		{&api.BodyTooLarge{Operation: "Invoke", Limit: api.MaxInvokeBody}, "RequestTooLargeException", 413, "User"},
		{api.ErrBodyTimeout, "RequestTimeoutException", 408, "User"},
		{&auth.Rejection{Kind: auth.ErrBadSignature, Message: "Credential should be scoped to a valid region, not 'eu-west-1'. "}, "InvalidSignatureException", 403, "User"},
		{control.NotFound("Function not found: x"), "ResourceNotFoundException", 404, "User"},
		{control.TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded."), "TooManyRequestsException", 429, "User"},
		{errors.New("disk on fire"), "ServiceException", 500, "Service"},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		writeError(w, "req-1", c.err)
		if w.Code != c.status || w.Header().Get("X-Amzn-ErrorType") != c.code || w.Header().Get("X-Amzn-RequestId") != "req-1" {
			t.Errorf("%v: status %d type %q", c.err, w.Code, w.Header().Get("X-Amzn-ErrorType"))
		}
		var body wireError
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Type != c.typ || body.Message == "" || body.Message != body.Lower {
			t.Errorf("%v: body %s", c.err, w.Body.String())
		}
		var ce *control.Error
		if errors.As(c.err, &ce) && ce.Reason != "" && body.Reason != ce.Reason {
			t.Errorf("%v: Reason %q", c.err, body.Reason)
		}
	}
}

// TestWireMessages: a body over its limit and a refused scope are told in
// AWS's words, naming the limit and the scope.
func TestWireMessages(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{&api.BodyTooLarge{Operation: "Invoke", Limit: api.MaxInvokeBody}, "Request must be smaller than 6291456 bytes for the Invoke operation"},
		{&auth.Rejection{Kind: auth.ErrBadSignature, Message: "Credential should be scoped to correct service: 'lambda'. "}, "Credential should be scoped to correct service: 'lambda'. "},
		{fmt.Errorf("%w (detail)", auth.ErrBadSignature), "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		writeError(w, "req-1", c.err)
		var body wireError
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Message != c.want {
			t.Errorf("%v: body %s, want Message %q", c.err, w.Body.String(), c.want)
		}
	}
}
