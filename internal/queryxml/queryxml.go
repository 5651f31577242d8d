package queryxml

import (
	"bytes"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/auth"
)

// ErrInvalidAction is wrapped by the error for an Action a service does
// not serve (or a Version it does not speak); its message after
// "InvalidAction: " is what the caller reads.
var ErrInvalidAction = errors.New("InvalidAction")

// Mapping is one row of a service's error table: an error errors.Is
// matches, and the code and HTTP status it is answered with.
type Mapping struct {
	Err    error
	Code   string
	Status int
}

// Protocol is one Query service's conventions.
type Protocol struct {
	// Xmlns is the namespace of every response and error document.
	Xmlns string
	// Classify, when set, is asked first for an error's code and status
	// (ok false: not one of the service's own typed errors).
	Classify func(err error) (code string, status int, ok bool)
	// Errors is the table tried after Classify and *auth.AccessDenied
	// (403 AccessDenied).
	Errors []Mapping
	// InternalCode is the code of anything unexpected (500).
	InternalCode string
	// Log records 5xx errors in full (the caller gets a generic message).
	Log *slog.Logger
}

// Form is a request's parameters: the form-encoded body, and the query
// string's parameters the body does not have (SigV4's X-Amz-* excepted).
func Form(r *http.Request, body []byte) (url.Values, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, err
	}
	for k, v := range r.URL.Query() {
		if _, ok := form[k]; !ok && !strings.HasPrefix(k, "X-Amz-") {
			form[k] = v
		}
	}
	return form, nil
}

// Code is err's code and HTTP status.
func (p *Protocol) Code(err error) (code string, status int) {
	if p.Classify != nil {
		if code, status, ok := p.Classify(err); ok {
			return code, status
		}
	}
	var denied *auth.AccessDenied
	if errors.As(err, &denied) {
		return "AccessDenied", http.StatusForbidden
	}
	for _, m := range p.Errors {
		if errors.Is(err, m.Err) {
			return m.Code, m.Status
		}
	}
	return p.InternalCode, http.StatusInternalServerError
}

// WriteResponse writes <ActionResponse><ActionResult>result</ActionResult>
// <ResponseMetadata/></ActionResponse>; a nil result writes no Result
// element.
func (p *Protocol) WriteResponse(w http.ResponseWriter, action string, result any) {
	reqID := RequestID()
	var b bytes.Buffer
	b.WriteString(xml.Header)
	fmt.Fprintf(&b, `<%sResponse xmlns="%s">`, action, p.Xmlns)
	if result != nil {
		if err := xml.NewEncoder(&b).EncodeElement(result, xml.StartElement{Name: xml.Name{Local: action + "Result"}}); err != nil {
			p.Log.Error("encoding a response failed", "action", action, "err", err)
			p.writeError(w, http.StatusInternalServerError, p.InternalCode, "could not encode the response", reqID)
			return
		}
	}
	fmt.Fprintf(&b, `<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, reqID, action)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// WriteError writes err as an <ErrorResponse>: Sender for 4xx with err's
// message, Receiver for 5xx with a generic one (err goes to the log).
func (p *Protocol) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	code, status := p.Code(err)
	msg := err.Error()
	if status >= 500 {
		p.Log.Error("request failed", "path", r.URL.Path, "err", err)
		msg = "An internal error occurred; the server log has the details."
	} else if _, rest, ok := strings.Cut(msg, ErrInvalidAction.Error()+": "); ok && errors.Is(err, ErrInvalidAction) {
		msg = rest
	}
	p.writeError(w, status, code, msg, RequestID())
}

type xmlError struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

func (p *Protocol) writeError(w http.ResponseWriter, status int, code, msg, reqID string) {
	typ := "Sender"
	if status >= 500 {
		typ = "Receiver"
	}
	out, _ := xml.Marshal(xmlError{Xmlns: p.Xmlns, Type: typ, Code: code, Message: msg, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

// RequestID is a new request id in AWS's format.
func RequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
