// Package iamapi serves the IAM Query API subset (version 2010-05-08, SigV4
// service "iam", form-encoded requests, XML responses) on top of
// internal/iam: roles and users, their managed and inline policies, and
// users' access keys (kept by the accounts registry).
package iamapi

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/queryxml"
)

const (
	apiVersion = "2010-05-08"
	xmlns      = "https://iam.amazonaws.com/doc/2010-05-08/"
)

// Service is the IAM API; it implements api.Service.
type Service struct {
	roles *iam.Roles
	users *iam.Users
	keys  Keys
	log   *slog.Logger
	proto queryxml.Protocol
	now   func() time.Time
}

// New returns the IAM API over roles. log nil means slog.Default().
func New(roles *iam.Roles, users *iam.Users, keys Keys, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("service", "iam")
	proto := protocol
	proto.Log = log
	return &Service{roles: roles, users: users, keys: keys, log: log, proto: proto, now: time.Now}
}

// Name is the SigV4 credential-scope service.
func (s *Service) Name() string { return "iam" }

// errInvalidAction is returned for an Action this API does not serve.
var errInvalidAction = queryxml.ErrInvalidAction

type handler func(s *Service, c *call) (any, error)

var handlers = func() map[string]handler {
	hs := map[string]handler{
		"CreateRole":             (*Service).createRole,
		"GetRole":                (*Service).getRole,
		"DeleteRole":             (*Service).deleteRole,
		"ListRoles":              (*Service).listRoles,
		"UpdateAssumeRolePolicy": (*Service).updateAssumeRolePolicy,
		"CreateUser":             (*Service).createUser,
		"GetUser":                (*Service).getUser,
		"DeleteUser":             (*Service).deleteUser,
		"ListUsers":              (*Service).listUsers,
		"CreateAccessKey":        (*Service).createAccessKey,
		"DeleteAccessKey":        (*Service).deleteAccessKey,
		"ListAccessKeys":         (*Service).listAccessKeys,
	}
	maps.Copy(hs, policyHandlers("Role", (*Service).rolePrincipal))
	maps.Copy(hs, policyHandlers("User", (*Service).userPrincipal))
	return hs
}()

// Operations names the Actions the service serves (the front's metric
// labels).
func (s *Service) Operations() []string {
	out := make([]string, 0, len(handlers))
	for a := range handlers {
		out = append(out, a)
	}
	return out
}

// call is one request being served.
type call struct {
	r      *http.Request
	id     auth.Identity
	form   url.Values
	action string
}

func (c *call) get(name string) string { return c.form.Get(name) }

// required returns a parameter or a ValidationError naming it as AWS does.
func (c *call) required(name string) (string, error) {
	v := c.form.Get(name)
	if v == "" {
		field := strings.ToLower(name[:1]) + name[1:]
		return "", &iam.Error{Kind: iam.ErrValidation, Msg: fmt.Sprintf("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", field)}
	}
	return v, nil
}

// requiredAll is required for several parameters, in order.
func (c *call) requiredAll(names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		v, err := c.required(n)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// ServeAWS handles one verified IAM request.
func (s *Service) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	form, err := queryxml.Form(r, body)
	if err != nil {
		s.WriteError(w, r, &iam.Error{Kind: iam.ErrValidation, Msg: "The request body is not a valid form-encoded IAM Query request: " + err.Error()})
		return
	}
	c := &call{r: r, id: id, form: form, action: form.Get("Action")}
	h, ok := handlers[c.action]
	if !ok {
		s.WriteError(w, r, fmt.Errorf("%w: Could not find operation %s for version %s (lambdaplane serves: %s)", errInvalidAction, c.action, apiVersion, supportedActions()))
		return
	}
	if v := form.Get("Version"); v != "" && v != apiVersion {
		s.WriteError(w, r, fmt.Errorf("%w: Could not find operation %s for version %s (use %s)", errInvalidAction, c.action, v, apiVersion))
		return
	}
	result, err := h(s, c)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	s.proto.WriteResponse(w, c.action, result)
}

func supportedActions() string {
	names := make([]string, 0, len(handlers))
	for n := range handlers {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// errorMapping is the one table from typed errors to IAM wire errors.
var errorMapping = []queryxml.Mapping{
	{Err: iam.ErrNoSuchEntity, Code: "NoSuchEntity", Status: http.StatusNotFound},
	{Err: iam.ErrEntityAlreadyExists, Code: "EntityAlreadyExists", Status: http.StatusConflict},
	{Err: iam.ErrMalformedPolicyDocument, Code: "MalformedPolicyDocument", Status: http.StatusBadRequest},
	{Err: iam.ErrDeleteConflict, Code: "DeleteConflict", Status: http.StatusConflict},
	{Err: iam.ErrValidation, Code: "ValidationError", Status: http.StatusBadRequest},
	{Err: iam.ErrLimitExceeded, Code: "LimitExceeded", Status: http.StatusConflict},
	{Err: errInvalidAction, Code: "InvalidAction", Status: http.StatusBadRequest},
	{Err: auth.ErrUnknownKey, Code: "InvalidClientTokenId", Status: http.StatusForbidden},
	{Err: auth.ErrExpiredToken, Code: "ExpiredToken", Status: http.StatusForbidden},
	{Err: auth.ErrBadSignature, Code: "SignatureDoesNotMatch", Status: http.StatusForbidden},
	{Err: auth.ErrClockSkew, Code: "SignatureDoesNotMatch", Status: http.StatusForbidden},
	{Err: auth.ErrPresignedExpired, Code: "SignatureDoesNotMatch", Status: http.StatusForbidden},
	{Err: auth.ErrMissingAuth, Code: "MissingAuthenticationToken", Status: http.StatusForbidden},
	{Err: auth.ErrMalformedAuth, Code: "IncompleteSignature", Status: http.StatusBadRequest},
	{Err: api.ErrBodyTooLarge, Code: "RequestEntityTooLarge", Status: http.StatusRequestEntityTooLarge},
	{Err: api.ErrBodyTimeout, Code: "RequestTimeout", Status: http.StatusRequestTimeout},
}

// protocol is IAM's Query/XML conventions (the service adds its logger).
var protocol = queryxml.Protocol{Xmlns: xmlns, Errors: errorMapping, InternalCode: "ServiceFailure"}

// ErrorCode returns the IAM error code and HTTP status for err
// (ServiceFailure, 500 for anything unexpected).
func ErrorCode(err error) (code string, status int) { return protocol.Code(err) }

// WriteError writes err as an IAM XML error.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	s.proto.WriteError(w, r, err)
}

// encodeDocument URL-encodes a policy document as IAM returns it
// (RFC 3986: spaces as %20, which botocore's unquote and url.PathUnescape
// and url.QueryUnescape all decode).
func encodeDocument(doc string) string {
	return strings.ReplaceAll(url.QueryEscape(doc), "+", "%20")
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// pagination: Marker is opaque to clients; it encodes the sort key of the
// last item returned.
func paginate[T any](c *call, items []T, key func(T) string) (page []T, truncated bool, marker string, err error) {
	max := 100
	if s := c.get("MaxItems"); s != "" {
		n, perr := strconv.Atoi(s)
		if perr != nil || n < 1 || n > 1000 {
			return nil, false, "", &iam.Error{Kind: iam.ErrValidation, Msg: fmt.Sprintf("1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000", s)}
		}
		max = n
	}
	start := 0
	if m := c.get("Marker"); m != "" {
		after, derr := base64.RawURLEncoding.DecodeString(m)
		if derr != nil {
			return nil, false, "", &iam.Error{Kind: iam.ErrValidation, Msg: "Invalid Marker: pass the Marker of the previous response unchanged."}
		}
		for start < len(items) && key(items[start]) <= string(after) {
			start++
		}
	}
	end := min(start+max, len(items))
	page = items[start:end]
	if end < len(items) {
		truncated = true
		marker = base64.RawURLEncoding.EncodeToString([]byte(key(items[end-1])))
	}
	return page, truncated, marker, nil
}
