package stsapi

import (
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/lambdaplane/lambdaplane/internal/sts"
)

const (
	apiVersion = "2011-06-15"
	xmlns      = "https://sts.amazonaws.com/doc/2011-06-15/"
)

// Service is the STS API; it implements api.Service.
type Service struct {
	sts   *sts.Service
	log   *slog.Logger
	proto queryxml.Protocol
}

// New returns the STS API over s. log nil means slog.Default().
func New(s *sts.Service, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("service", "sts")
	proto := protocol
	proto.Log = log
	return &Service{sts: s, log: log, proto: proto}
}

// Name is the SigV4 credential-scope service.
func (s *Service) Name() string { return "sts" }

type handler func(s *Service, r *http.Request, id auth.Identity, form url.Values) (any, error)

var handlers = map[string]handler{
	"GetCallerIdentity": (*Service).getCallerIdentity,
	"AssumeRole":        (*Service).assumeRole,
	"GetSessionToken":   (*Service).getSessionToken,
}

// Operations names the Actions the service serves (the front's metric
// labels).
func (s *Service) Operations() []string {
	out := make([]string, 0, len(handlers))
	for a := range handlers {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

var errInvalidAction = queryxml.ErrInvalidAction

// ServeAWS handles one verified STS request.
func (s *Service) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	form, err := queryxml.Form(r, body)
	if err != nil {
		s.WriteError(w, r, &sts.Error{Code: "InvalidParameterValue", Status: 400, Msg: "The request body is not a valid form-encoded STS Query request: " + err.Error()})
		return
	}
	action := form.Get("Action")
	h, ok := handlers[action]
	if !ok {
		s.WriteError(w, r, fmt.Errorf("%w: Could not find operation %s for version %s (lambdaplane serves STS's %s)", errInvalidAction, action, apiVersion, strings.Join(s.Operations(), ", ")))
		return
	}
	if v := form.Get("Version"); v != "" && v != apiVersion {
		s.WriteError(w, r, fmt.Errorf("%w: Could not find operation %s for version %s (use %s)", errInvalidAction, action, v, apiVersion))
		return
	}
	result, err := h(s, r, id, form)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	s.proto.WriteResponse(w, action, result)
}

type xmlCallerIdentity struct {
	Arn     string `xml:"Arn"`
	UserID  string `xml:"UserId"`
	Account string `xml:"Account"`
}

func (s *Service) getCallerIdentity(r *http.Request, id auth.Identity, _ url.Values) (any, error) {
	ci, err := s.sts.GetCallerIdentity(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return xmlCallerIdentity{Arn: ci.Arn, UserID: ci.UserID, Account: ci.Account}, nil
}

type xmlCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

func credentials(sess *auth.Session) xmlCredentials {
	return xmlCredentials{AccessKeyID: sess.AccessKeyID, SecretAccessKey: sess.Secret, SessionToken: sess.Token, Expiration: sess.Expiration.UTC().Format(time.RFC3339)}
}

type xmlAssumeRole struct {
	Credentials     xmlCredentials `xml:"Credentials"`
	AssumedRoleUser struct {
		AssumedRoleID string `xml:"AssumedRoleId"`
		Arn           string `xml:"Arn"`
	} `xml:"AssumedRoleUser"`
	PackedPolicySize *int `xml:"PackedPolicySize,omitempty"`
}

// duration parses DurationSeconds (0 when absent).
func duration(form url.Values) (int, error) {
	v := form.Get("DurationSeconds")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, &sts.Error{Code: "ValidationError", Status: 400, Msg: fmt.Sprintf("1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must be an integer", v)}
	}
	return n, nil
}

func (s *Service) assumeRole(r *http.Request, id auth.Identity, form url.Values) (any, error) {
	d, err := duration(form)
	if err != nil {
		return nil, err
	}
	for k := range form {
		if strings.HasPrefix(k, "PolicyArns.") || strings.HasPrefix(k, "Tags.") || k == "SerialNumber" || k == "TokenCode" || k == "SourceIdentity" || k == "ExternalId" {
			return nil, &sts.Error{Code: "InvalidParameterValue", Status: 400, Msg: fmt.Sprintf("AssumeRole parameter %s is not supported by lambdaplane (supported: RoleArn, RoleSessionName, DurationSeconds, Policy)", strings.SplitN(k, ".", 2)[0])}
		}
	}
	out, err := s.sts.AssumeRole(r.Context(), id, sts.AssumeRoleInput{
		RoleArn: form.Get("RoleArn"), RoleSessionName: form.Get("RoleSessionName"), DurationSeconds: d, Policy: form.Get("Policy"),
	})
	if err != nil {
		return nil, err
	}
	res := xmlAssumeRole{Credentials: credentials(out.Session)}
	res.AssumedRoleUser.AssumedRoleID, res.AssumedRoleUser.Arn = out.AssumedRoleID, out.Arn
	if out.PackedPolicySize > 0 {
		n := out.PackedPolicySize
		res.PackedPolicySize = &n
	}
	return res, nil
}

type xmlSessionToken struct {
	Credentials xmlCredentials `xml:"Credentials"`
}

func (s *Service) getSessionToken(r *http.Request, id auth.Identity, form url.Values) (any, error) {
	d, err := duration(form)
	if err != nil {
		return nil, err
	}
	if form.Get("SerialNumber") != "" || form.Get("TokenCode") != "" {
		return nil, &sts.Error{Code: "InvalidParameterValue", Status: 400, Msg: "GetSessionToken with SerialNumber/TokenCode (MFA) is not supported by lambdaplane: it has no MFA devices"}
	}
	sess, err := s.sts.GetSessionToken(r.Context(), id, d)
	if err != nil {
		return nil, err
	}
	return xmlSessionToken{Credentials: credentials(sess)}, nil
}

// errorMapping is the one table from the front's typed errors to STS's.
var errorMapping = []queryxml.Mapping{
	{Err: auth.ErrUnknownKey, Code: "InvalidClientTokenId", Status: http.StatusForbidden},
	{Err: auth.ErrExpiredToken, Code: "ExpiredToken", Status: http.StatusBadRequest},
	{Err: auth.ErrBadSignature, Code: "SignatureDoesNotMatch", Status: http.StatusForbidden},
	{Err: auth.ErrClockSkew, Code: "SignatureDoesNotMatch", Status: http.StatusForbidden},
	{Err: auth.ErrPresignedExpired, Code: "SignatureDoesNotMatch", Status: http.StatusForbidden},
	{Err: auth.ErrMissingAuth, Code: "MissingAuthenticationToken", Status: http.StatusForbidden},
	{Err: auth.ErrMalformedAuth, Code: "IncompleteSignature", Status: http.StatusBadRequest},
	{Err: errInvalidAction, Code: "InvalidAction", Status: http.StatusBadRequest},
	{Err: iam.ErrNoSuchEntity, Code: "AccessDenied", Status: http.StatusForbidden},
	{Err: iam.ErrValidation, Code: "ValidationError", Status: http.StatusBadRequest},
	{Err: iam.ErrMalformedPolicyDocument, Code: "MalformedPolicyDocument", Status: http.StatusBadRequest},
	{Err: api.ErrBodyTooLarge, Code: "RequestEntityTooLarge", Status: http.StatusRequestEntityTooLarge},
	{Err: api.ErrBodyTimeout, Code: "RequestTimeout", Status: http.StatusRequestTimeout},
}

// protocol is STS's Query/XML conventions (the service adds its logger).
var protocol = queryxml.Protocol{Xmlns: xmlns, Errors: errorMapping, InternalCode: "InternalFailure",
	Classify: func(err error) (string, int, bool) {
		var se *sts.Error
		if errors.As(err, &se) {
			return se.Code, se.Status, true
		}
		return "", 0, false
	}}

// ErrorCode returns STS's error code and HTTP status for err
// (InternalFailure, 500, for anything unexpected).
func ErrorCode(err error) (code string, status int) { return protocol.Code(err) }

// WriteError writes err as an STS XML error.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	s.proto.WriteError(w, r, err)
}
