package stsapi

import (
	"bytes"
	"crypto/rand"
	"encoding/xml"
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
	"github.com/lambdaplane/lambdaplane/internal/sts"
)

const (
	apiVersion = "2011-06-15"
	xmlns      = "https://sts.amazonaws.com/doc/2011-06-15/"
)

// Service is the STS API; it implements api.Service.
type Service struct {
	sts *sts.Service
	log *slog.Logger
}

// New returns the STS API over s. log nil means slog.Default().
func New(s *sts.Service, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{sts: s, log: log.With("service", "sts")}
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

var errInvalidAction = errors.New("InvalidAction")

// ServeAWS handles one verified STS request.
func (s *Service) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.WriteError(w, r, &sts.Error{Code: "InvalidParameterValue", Status: 400, Msg: "The request body is not a valid form-encoded STS Query request: " + err.Error()})
		return
	}
	for k, v := range r.URL.Query() {
		if _, ok := form[k]; !ok && !strings.HasPrefix(k, "X-Amz-") {
			form[k] = v
		}
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
	writeResponse(w, action, result)
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

// writeResponse writes <ActionResponse><ActionResult>result</ActionResult>
// <ResponseMetadata/></ActionResponse>.
func writeResponse(w http.ResponseWriter, action string, result any) {
	reqID := newRequestID()
	var b bytes.Buffer
	fmt.Fprintf(&b, `<%sResponse xmlns="%s">`, action, xmlns)
	if err := xml.NewEncoder(&b).EncodeElement(result, xml.StartElement{Name: xml.Name{Local: action + "Result"}}); err != nil {
		writeErrorXML(w, http.StatusInternalServerError, "Receiver", "InternalFailure", "could not encode the response", reqID)
		return
	}
	fmt.Fprintf(&b, `<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, reqID, action)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// errorMapping is the one table from the front's typed errors to STS's.
var errorMapping = []struct {
	err    error
	code   string
	status int
}{
	{auth.ErrUnknownKey, "InvalidClientTokenId", http.StatusForbidden},
	{auth.ErrExpiredToken, "ExpiredToken", http.StatusBadRequest},
	{auth.ErrBadSignature, "SignatureDoesNotMatch", http.StatusForbidden},
	{auth.ErrClockSkew, "SignatureDoesNotMatch", http.StatusForbidden},
	{auth.ErrPresignedExpired, "SignatureDoesNotMatch", http.StatusForbidden},
	{auth.ErrMissingAuth, "MissingAuthenticationToken", http.StatusForbidden},
	{auth.ErrMalformedAuth, "IncompleteSignature", http.StatusBadRequest},
	{errInvalidAction, "InvalidAction", http.StatusBadRequest},
	{iam.ErrNoSuchEntity, "AccessDenied", http.StatusForbidden},
	{iam.ErrValidation, "ValidationError", http.StatusBadRequest},
	{iam.ErrMalformedPolicyDocument, "MalformedPolicyDocument", http.StatusBadRequest},
	{api.ErrBodyTooLarge, "RequestEntityTooLarge", http.StatusRequestEntityTooLarge},
	{api.ErrBodyTimeout, "RequestTimeout", http.StatusRequestTimeout},
}

// ErrorCode returns STS's error code and HTTP status for err
// (InternalFailure, 500, for anything unexpected).
func ErrorCode(err error) (code string, status int) {
	var se *sts.Error
	if errors.As(err, &se) {
		return se.Code, se.Status
	}
	var denied *auth.AccessDenied
	if errors.As(err, &denied) {
		return "AccessDenied", http.StatusForbidden
	}
	for _, m := range errorMapping {
		if errors.Is(err, m.err) {
			return m.code, m.status
		}
	}
	return "InternalFailure", http.StatusInternalServerError
}

// WriteError writes err as an STS XML error.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	code, status := ErrorCode(err)
	msg := err.Error()
	typ := "Sender"
	if status >= 500 {
		typ = "Receiver"
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
		msg = "An internal error occurred; the server log has the details."
	} else if _, rest, ok := strings.Cut(msg, errInvalidAction.Error()+": "); ok && errors.Is(err, errInvalidAction) {
		msg = rest
	}
	writeErrorXML(w, status, typ, code, msg, newRequestID())
}

type xmlError struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

func writeErrorXML(w http.ResponseWriter, status int, typ, code, msg, reqID string) {
	out, _ := xml.Marshal(xmlError{Xmlns: xmlns, Type: typ, Code: code, Message: msg, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
