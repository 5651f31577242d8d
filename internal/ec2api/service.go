// Package ec2api serves the EC2 Query API subset (VPCs, subnets, security
// groups, network interfaces, route tables, internet and NAT gateways,
// tags) over internal/vpc, in the XML the AWS CLI and SDKs parse.
package ec2api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// Service is the EC2 api.Service.
type Service struct {
	m   *vpc.Model
	log *slog.Logger
}

// New returns the EC2 service over model m.
func New(m *vpc.Model, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{m: m, log: log}
}

// Name is the SigV4 service name.
func (s *Service) Name() string { return "ec2" }

// call is one request being served.
type call struct {
	ctx     context.Context
	account string
	region  string
	p       params
}

type handler func(s *Service, c *call) (requestIDSetter, error)

var actions = map[string]handler{
	"CreateVpc":                     (*Service).createVpc,
	"DescribeVpcs":                  (*Service).describeVpcs,
	"DeleteVpc":                     (*Service).deleteVpc,
	"CreateSubnet":                  (*Service).createSubnet,
	"DescribeSubnets":               (*Service).describeSubnets,
	"DeleteSubnet":                  (*Service).deleteSubnet,
	"CreateSecurityGroup":           (*Service).createSecurityGroup,
	"DescribeSecurityGroups":        (*Service).describeSecurityGroups,
	"DeleteSecurityGroup":           (*Service).deleteSecurityGroup,
	"AuthorizeSecurityGroupIngress": (*Service).authorizeIngress,
	"AuthorizeSecurityGroupEgress":  (*Service).authorizeEgress,
	"RevokeSecurityGroupIngress":    (*Service).revokeIngress,
	"RevokeSecurityGroupEgress":     (*Service).revokeEgress,
	"CreateNetworkInterface":        (*Service).createNetworkInterface,
	"DescribeNetworkInterfaces":     (*Service).describeNetworkInterfaces,
	"DeleteNetworkInterface":        (*Service).deleteNetworkInterface,
	"CreateRouteTable":              (*Service).createRouteTable,
	"DescribeRouteTables":           (*Service).describeRouteTables,
	"DeleteRouteTable":              (*Service).deleteRouteTable,
	"CreateRoute":                   (*Service).createRoute,
	"DeleteRoute":                   (*Service).deleteRoute,
	"AssociateRouteTable":           (*Service).associateRouteTable,
	"DisassociateRouteTable":        (*Service).disassociateRouteTable,
	"CreateInternetGateway":         (*Service).createInternetGateway,
	"DescribeInternetGateways":      (*Service).describeInternetGateways,
	"AttachInternetGateway":         (*Service).attachInternetGateway,
	"DetachInternetGateway":         (*Service).detachInternetGateway,
	"DeleteInternetGateway":         (*Service).deleteInternetGateway,
	"CreateNatGateway":              (*Service).createNatGateway,
	"DescribeNatGateways":           (*Service).describeNatGateways,
	"DeleteNatGateway":              (*Service).deleteNatGateway,
	"CreateTags":                    (*Service).createTags,
	"DeleteTags":                    (*Service).deleteTags,
	"DescribeTags":                  (*Service).describeTags,
}

// Operations names the Actions the service serves (the front's metric
// labels).
func (s *Service) Operations() []string {
	out := make([]string, 0, len(actions))
	for a := range actions {
		out = append(out, a)
	}
	return out
}

// ServeAWS handles one verified EC2 request.
func (s *Service) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	reqID := newRequestID()
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		s.writeError(w, reqID, &vpc.Error{Code: "MalformedQueryString", Message: "The request body is not a valid form-encoded EC2 query: " + err.Error()})
		return
	}
	for k, v := range r.URL.Query() {
		if _, ok := vals[k]; !ok {
			vals[k] = v
		}
	}
	p := params(vals)
	action := p.str("Action")
	if action == "" {
		s.writeError(w, reqID, &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter Action"})
		return
	}
	h, ok := actions[action]
	if !ok {
		s.writeError(w, reqID, &vpc.Error{Code: "InvalidAction", Message: "The action " + action + " is not valid for this web service."})
		return
	}
	if strings.EqualFold(p.str("DryRun"), "true") {
		s.writeError(w, reqID, &vpc.Error{Code: "DryRunOperation", Message: "Request would have succeeded, but DryRun flag is set."})
		return
	}
	region := id.Region
	if region == "" {
		region = "us-east-1"
	}
	c := &call{ctx: r.Context(), account: id.AccountID, region: region, p: p}
	resp, err := h(s, c)
	if err != nil {
		var ve *vpc.Error
		if !errors.As(err, &ve) {
			s.log.Error("ec2 request failed", "action", action, "account", id.AccountID, "request_id", reqID, "err", err)
		}
		s.writeError(w, reqID, err)
		return
	}
	resp.setRequestID(reqID)
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	start := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: xmlns}}}
	if err := enc.EncodeElement(resp, start); err != nil {
		s.log.Error("ec2 encode response", "action", action, "err", err)
		s.writeError(w, reqID, err)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// WriteError writes an authentication or front-end error as EC2 does.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeError(w, newRequestID(), err)
}

type errorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Errors    []errXML `xml:"Errors>Error"`
	RequestID string   `xml:"RequestID"`
}

type errXML struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// wireError maps an error to its EC2 code, message and HTTP status. This is
// the one place typed errors become wire errors.
func wireError(err error) (code, msg string, status int) {
	var ve *vpc.Error
	var denied *auth.AccessDenied
	switch {
	case errors.As(err, &ve):
		return ve.Code, ve.Message, http.StatusBadRequest
	case errors.As(err, &denied):
		return "UnauthorizedOperation", "You are not authorized to perform this operation. " + denied.Error(), http.StatusForbidden
	case errors.Is(err, auth.ErrUnknownKey):
		return "AuthFailure", "AWS was not able to validate the provided access credentials", http.StatusUnauthorized
	case errors.Is(err, auth.ErrBadSignature):
		return "SignatureDoesNotMatch", err.Error(), http.StatusForbidden
	case errors.Is(err, auth.ErrMissingAuth):
		return "MissingAuthenticationToken", err.Error(), http.StatusUnauthorized
	case errors.Is(err, auth.ErrMalformedAuth):
		return "IncompleteSignature", err.Error(), http.StatusBadRequest
	case errors.Is(err, auth.ErrClockSkew), errors.Is(err, auth.ErrPresignedExpired), errors.Is(err, auth.ErrExpiredToken):
		return "RequestExpired", err.Error(), http.StatusBadRequest
	case errors.Is(err, api.ErrBodyTooLarge):
		return "RequestEntityTooLarge", err.Error(), http.StatusRequestEntityTooLarge
	case errors.Is(err, api.ErrBodyTimeout):
		return "RequestTimeout", err.Error(), http.StatusRequestTimeout
	}
	return "InternalError", "An internal error has occurred; retry the request", http.StatusInternalServerError
}

func (s *Service) writeError(w http.ResponseWriter, reqID string, err error) {
	code, msg, status := wireError(err)
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	_ = xml.NewEncoder(&buf).Encode(errorResponse{Errors: []errXML{{Code: code, Message: msg}}, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// returnResponse is the <return>true</return> of mutating actions.
type returnResponse struct {
	meta
	Return bool `xml:"return"`
}

func ok() (requestIDSetter, error) { return &returnResponse{Return: true}, nil }
