package datapath

import (
	"bytes"
	"context"
	"crypto/rand"
	hexenc "encoding/hex"
	"encoding/xml"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// TagInstanceID is the tag an attached interface carries: the instance it
// is attached to.
const TagInstanceID = "lambdaplane:instance-id"

// AttachmentPrefix starts attachment IDs: eni-attach-<hex of the eni>.
const AttachmentPrefix = "eni-attach-"

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// attachWait bounds how long AttachNetworkInterface waits for the datapath.
const attachWait = 30 * time.Second

// EC2 wraps the EC2 service (internal/ec2api) with the actions that need
// the datapath: AttachNetworkInterface and DetachNetworkInterface. Every
// other action goes to the wrapped service.
type EC2 struct {
	inner api.Service
	m     *vpc.Model
	r     *Reconciler
}

// WrapEC2 returns inner extended with the attach actions.
func WrapEC2(inner api.Service, m *vpc.Model, r *Reconciler) *EC2 {
	return &EC2{inner: inner, m: m, r: r}
}

// Name is the SigV4 service name.
func (e *EC2) Name() string { return e.inner.Name() }

// Operations names the Actions served: the inner service's and the two
// added here.
func (e *EC2) Operations() []string {
	var ops []string
	if o, ok := e.inner.(api.Operations); ok {
		ops = o.Operations()
	}
	return append(ops, "AttachNetworkInterface", "DetachNetworkInterface")
}

// WriteError writes an error in EC2's format.
func (e *EC2) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e.inner.WriteError(w, r, err)
}

// ServeAWS handles one verified request.
func (e *EC2) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	vals, err := url.ParseQuery(string(body))
	if err == nil {
		for k, v := range r.URL.Query() {
			if _, ok := vals[k]; !ok {
				vals[k] = v
			}
		}
	}
	switch vals.Get("Action") {
	case "AttachNetworkInterface":
		e.serve(w, r, "AttachNetworkInterface", func() (any, error) { return e.attach(r.Context(), id.AccountID, vals) })
	case "DetachNetworkInterface":
		e.serve(w, r, "DetachNetworkInterface", func() (any, error) { return e.detach(r.Context(), id.AccountID, vals) })
	default:
		e.inner.ServeAWS(w, r, id, body)
	}
}

type attachResponse struct {
	RequestID        string `xml:"requestId"`
	AttachmentID     string `xml:"attachmentId"`
	NetworkCardIndex int    `xml:"networkCardIndex"`
	// NetnsPath is lambdaplane's addition: the namespace holding the
	// interface (AWS SDKs ignore unknown elements).
	NetnsPath string `xml:"netnsPath"`
}

type returnResponse struct {
	RequestID string `xml:"requestId"`
	Return    bool   `xml:"return"`
}

func (e *EC2) serve(w http.ResponseWriter, r *http.Request, action string, fn func() (any, error)) {
	resp, err := fn()
	if err != nil {
		e.inner.WriteError(w, r, err)
		return
	}
	reqID := newRequestID()
	switch v := resp.(type) {
	case *attachResponse:
		v.RequestID = reqID
	case *returnResponse:
		v.RequestID = reqID
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	start := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: xmlns}}}
	if err := xml.NewEncoder(&buf).EncodeElement(resp, start); err != nil {
		e.inner.WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

func missing(p string) error {
	return &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter " + p}
}

// attach waits until the interface's namespace is built, marks the
// interface in-use with the instance's id, and returns the namespace.
func (e *EC2) attach(ctx context.Context, account string, p url.Values) (any, error) {
	eni, inst := p.Get("NetworkInterfaceId"), p.Get("InstanceId")
	if eni == "" {
		return nil, missing("NetworkInterfaceId")
	}
	if inst == "" {
		return nil, missing("InstanceId")
	}
	if !strings.HasPrefix(inst, "i-") {
		return nil, &vpc.Error{Code: "InvalidInstanceID.Malformed", Message: "Invalid id: \"" + inst + "\" (expecting \"i-...\")"}
	}
	n, err := e.m.GetInterface(ctx, account, eni)
	if err != nil {
		return nil, err
	}
	if n.InterfaceType != vpc.InterfaceTypeInterface {
		return nil, &vpc.Error{Code: "OperationNotPermitted", Message: "Interface " + eni + " is of type " + n.InterfaceType + " and is managed by the service; only interfaces of type interface can be attached."}
	}
	if n.Status == vpc.StatusInUse {
		return nil, &vpc.Error{Code: vpc.CodeInterfaceInUse, Message: "Interface: " + eni + " in use."}
	}
	// The instance runs on the host that serves the call: its interface
	// is homed (built) here.
	if h := e.r.cfg.Hosts; h != nil && n.Home != h.Self().ID {
		if err := e.m.SetInterfaceHome(ctx, account, eni, h.Self().ID); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, attachWait)
	defer cancel()
	path, err := e.r.WaitInterface(wctx, eni)
	if err != nil {
		return nil, &vpc.Error{Code: "IncorrectState", Message: "The network interface " + eni + " is not ready yet (" + err.Error() + "); retry the attach."}
	}
	if err := e.m.CreateTags(ctx, account, []string{eni}, []vpc.Tag{{Key: TagInstanceID, Value: inst}}); err != nil {
		return nil, err
	}
	if _, err := e.m.SetInterfaceStatus(ctx, account, eni, vpc.StatusInUse); err != nil {
		return nil, err
	}
	return &attachResponse{AttachmentID: AttachmentPrefix + idHex(eni), NetnsPath: path}, nil
}

func idHex(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// detach marks the interface available again.
func (e *EC2) detach(ctx context.Context, account string, p url.Values) (any, error) {
	att := p.Get("AttachmentId")
	if att == "" {
		return nil, missing("AttachmentId")
	}
	hex, ok := strings.CutPrefix(att, AttachmentPrefix)
	notFound := &vpc.Error{Code: "InvalidAttachmentID.NotFound", Message: "The attachment ID '" + att + "' does not exist"}
	if !ok || hex == "" {
		return nil, notFound
	}
	eni := "eni-" + hex
	n, err := e.m.GetInterface(ctx, account, eni)
	if vpc.IsCode(err, vpc.CodeInterfaceNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if n.InterfaceType != vpc.InterfaceTypeInterface || n.Status != vpc.StatusInUse {
		return nil, notFound
	}
	if _, err := e.m.SetInterfaceStatus(ctx, account, eni, vpc.StatusAvailable); err != nil {
		return nil, err
	}
	if err := e.m.DeleteTags(ctx, account, []string{eni}, []string{TagInstanceID}, nil); err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	return &returnResponse{Return: true}, nil
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hexenc.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
