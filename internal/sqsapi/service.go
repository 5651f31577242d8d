package sqsapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/queryxml"
	"github.com/lambdaplane/lambdaplane/internal/sqs"
)

const xmlns = "http://queue.amazonaws.com/doc/2012-11-05/"

// Authorizer checks a restricted caller's identity policies (api.Authorizer).
type Authorizer interface {
	Authorize(ctx context.Context, id auth.Identity, action, resource string, cond map[string][]string) error
}

// Service is the SQS API; it implements api.Service.
type Service struct {
	q     *sqs.Queues
	authz Authorizer // nil: identity policies are not checked
	log   *slog.Logger
}

// New returns the SQS API over q. authz may be nil; log nil means slog.Default().
func New(q *sqs.Queues, authz Authorizer, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{q: q, authz: authz, log: log.With("service", "sqs")}
}

// Name is the SigV4 credential-scope service.
func (s *Service) Name() string { return "sqs" }

type handler func(s *Service, c *call) ([]node, error)

var handlers = map[string]handler{
	"CreateQueue":                  (*Service).createQueue,
	"DeleteQueue":                  (*Service).deleteQueue,
	"GetQueueUrl":                  (*Service).getQueueURL,
	"ListQueues":                   (*Service).listQueues,
	"GetQueueAttributes":           (*Service).getQueueAttributes,
	"SetQueueAttributes":           (*Service).setQueueAttributes,
	"SendMessage":                  (*Service).sendMessage,
	"SendMessageBatch":             (*Service).sendMessageBatch,
	"ReceiveMessage":               (*Service).receiveMessage,
	"DeleteMessage":                (*Service).deleteMessage,
	"DeleteMessageBatch":           (*Service).deleteMessageBatch,
	"ChangeMessageVisibility":      (*Service).changeVisibility,
	"ChangeMessageVisibilityBatch": (*Service).changeVisibilityBatch,
	"PurgeQueue":                   (*Service).purgeQueue,
	"TagQueue":                     (*Service).tagQueue,
	"UntagQueue":                   (*Service).untagQueue,
	"ListQueueTags":                (*Service).listQueueTags,
	"ListDeadLetterSourceQueues":   (*Service).listDeadLetterSources,
}

// Operations names the actions served (the front's metric labels).
func (s *Service) Operations() []string {
	out := make([]string, 0, len(handlers))
	for a := range handlers {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// call is one request being served.
type call struct {
	ctx    context.Context
	r      *http.Request
	id     auth.Identity
	p      params
	action string
	json   bool
}

func (c *call) get(name string) string { v, _ := c.p.str(name); return v }

func (c *call) required(name string) (string, error) {
	v, ok := c.p.str(name)
	if !ok || v == "" {
		return "", &sqs.Error{Kind: sqs.KindMissingParameter, Message: "The request must contain the parameter " + name + "."}
	}
	return v, nil
}

// ServeAWS handles one verified request in the protocol it came in.
func (s *Service) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	c := &call{ctx: r.Context(), r: r, id: id}
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		c.json = true
		op, ok := strings.CutPrefix(t, "AmazonSQS.")
		if !ok {
			s.writeErr(w, c, &sqs.Error{Kind: "InvalidAction", Message: fmt.Sprintf("The target %q is not an SQS operation (AmazonSQS.<Operation>).", t)})
			return
		}
		c.action = op
		m := map[string]any{}
		if len(bytes.TrimSpace(body)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				s.writeErr(w, c, &sqs.Error{Kind: "SerializationException", Message: "The request body is not a JSON object: " + err.Error()})
				return
			}
		}
		c.p = jsonParams(m)
	} else {
		form, err := queryxml.Form(r, body)
		if err != nil {
			s.writeErr(w, c, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: "The request body is not a valid form-encoded SQS Query request: " + err.Error()})
			return
		}
		c.p = queryParams{form: form}
		c.action = form.Get("Action")
	}
	h, ok := handlers[c.action]
	if !ok {
		s.writeErr(w, c, &sqs.Error{Kind: "InvalidAction", Message: fmt.Sprintf("The action %s is not valid for this endpoint (lambdaplane serves: %s).", c.action, strings.Join(s.Operations(), ", "))})
		return
	}
	out, err := h(s, c)
	if err != nil {
		s.writeErr(w, c, err)
		return
	}
	s.write(w, c, out)
}

func (s *Service) write(w http.ResponseWriter, c *call, out []node) {
	reqID := queryxml.RequestID()
	w.Header().Set("X-Amzn-RequestId", reqID)
	if c.json {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(renderJSON(out))
		return
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?>`)
	fmt.Fprintf(&b, `<%sResponse xmlns="%s">`, c.action, xmlns)
	if out != nil {
		obj(c.action+"Result", out...).xmlTo(&b, c.action+"Result")
	}
	fmt.Fprintf(&b, `<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, reqID, c.action)
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// wire is one error's wire form.
type wire struct {
	query  string // Query protocol code (also x-amzn-query-error)
	status int
}

// errorTable maps error kinds to wire codes and statuses.
var errorTable = map[string]wire{
	sqs.KindQueueDoesNotExist:            {"AWS.SimpleQueueService.NonExistentQueue", 400},
	sqs.KindQueueNameExists:              {"QueueAlreadyExists", 400},
	sqs.KindQueueDeletedRecently:         {"AWS.SimpleQueueService.QueueDeletedRecently", 400},
	sqs.KindInvalidAttributeName:         {"InvalidAttributeName", 400},
	sqs.KindInvalidAttributeValue:        {"InvalidAttributeValue", 400},
	sqs.KindInvalidParameterValue:        {"InvalidParameterValue", 400},
	sqs.KindMissingParameter:             {"MissingParameter", 400},
	sqs.KindInvalidMessageContents:       {"InvalidMessageContents", 400},
	sqs.KindReceiptHandleIsInvalid:       {"ReceiptHandleIsInvalid", 400},
	sqs.KindMessageNotInflight:           {"AWS.SimpleQueueService.MessageNotInflight", 400},
	sqs.KindPurgeQueueInProgress:         {"AWS.SimpleQueueService.PurgeQueueInProgress", 403},
	sqs.KindTooManyEntriesInBatchRequest: {"AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400},
	sqs.KindEmptyBatchRequest:            {"AWS.SimpleQueueService.EmptyBatchRequest", 400},
	sqs.KindBatchEntryIdsNotDistinct:     {"AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400},
	sqs.KindInvalidBatchEntryId:          {"AWS.SimpleQueueService.InvalidBatchEntryId", 400},
	sqs.KindBatchRequestTooLong:          {"AWS.SimpleQueueService.BatchRequestTooLong", 400},
	sqs.KindUnsupportedOperation:         {"AWS.SimpleQueueService.UnsupportedOperation", 400},
	sqs.KindAccessDenied:                 {"AccessDenied", 403},
	sqs.KindOverLimit:                    {"OverLimit", 403},
	"InvalidAction":                      {"InvalidAction", 400},
	"InvalidAddress":                     {"InvalidAddress", 404},
	"SerializationException":             {"SerializationException", 400},
	"InvalidClientTokenId":               {"InvalidClientTokenId", 403},
	"SignatureDoesNotMatch":              {"SignatureDoesNotMatch", 403},
	"MissingAuthenticationToken":         {"MissingAuthenticationToken", 403},
	"IncompleteSignature":                {"IncompleteSignature", 400},
	"ExpiredToken":                       {"ExpiredToken", 403},
	"RequestEntityTooLarge":              {"RequestEntityTooLarge", 413},
	"RequestTimeout":                     {"RequestTimeout", 408},
	"ServiceUnavailable":                 {"ServiceUnavailable", 503},
}

// classify turns any error into a kind and message.
func classify(err error) (kind, msg string) {
	var e *sqs.Error
	var denied *auth.AccessDenied
	switch {
	case errors.As(err, &e):
		return e.Kind, e.Message
	case errors.As(err, &denied):
		return sqs.KindAccessDenied, denied.Error()
	case errors.Is(err, auth.ErrUnknownKey):
		return "InvalidClientTokenId", err.Error()
	case errors.Is(err, auth.ErrExpiredToken):
		return "ExpiredToken", err.Error()
	case errors.Is(err, auth.ErrBadSignature), errors.Is(err, auth.ErrClockSkew), errors.Is(err, auth.ErrPresignedExpired):
		return "SignatureDoesNotMatch", err.Error()
	case errors.Is(err, auth.ErrMissingAuth):
		return "MissingAuthenticationToken", err.Error()
	case errors.Is(err, auth.ErrMalformedAuth):
		return "IncompleteSignature", err.Error()
	case errors.Is(err, api.ErrBodyTooLarge):
		return "RequestEntityTooLarge", err.Error()
	case errors.Is(err, api.ErrBodyTimeout):
		return "RequestTimeout", err.Error()
	}
	var rej *auth.Rejection
	if errors.As(err, &rej) {
		return classify(rej.Kind)
	}
	if err != nil && strings.Contains(err.Error(), "service is starting") {
		return "ServiceUnavailable", err.Error()
	}
	return sqs.KindInternal, ""
}

// WriteError writes err (from the front) in the protocol of the request.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeErr(w, &call{r: r, json: r.Header.Get("X-Amz-Target") != ""}, err)
}

func (s *Service) writeErr(w http.ResponseWriter, c *call, err error) {
	kind, msg := classify(err)
	wr, ok := errorTable[kind]
	if !ok {
		wr = wire{"InternalError", 500}
		s.log.Error("request failed", "action", c.action, "err", err)
		msg = "An internal error occurred; the server log has the details."
	}
	typ := "Sender"
	if wr.status >= 500 {
		typ = "Receiver"
	}
	reqID := queryxml.RequestID()
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.Header().Set("x-amzn-query-error", wr.query+";"+typ)
	if c.json {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(wr.status)
		b, _ := json.Marshal(map[string]string{"__type": "com.amazonaws.sqs#" + kind, "message": msg})
		_, _ = w.Write(b)
		return
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><ErrorResponse xmlns="` + xmlns + `"><Error><Type>` + typ + `</Type>`)
	elem(&b, "Code", wr.query)
	elem(&b, "Message", msg)
	b.WriteString(`<Detail/></Error>`)
	elem(&b, "RequestId", reqID)
	b.WriteString(`</ErrorResponse>`)
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(wr.status)
	_, _ = w.Write(b.Bytes())
}

// host is the endpoint the request came to (queue URLs use it).
func (c *call) host() string { return c.r.Host }

func (c *call) region() string {
	if c.id.Region != "" {
		return c.id.Region
	}
	return "us-east-1"
}

// authorize checks a restricted caller's identity policies for action on
// resource.
func (s *Service) authorize(c *call, resource string) error {
	if s.authz == nil || !c.id.Restricted() {
		return nil
	}
	return s.authz.Authorize(c.ctx, c.id, "sqs:"+c.action, resource, nil)
}

// queue resolves the request's QueueUrl (or the request path) to a queue
// the caller may use for the action.
func (s *Service) queue(c *call) (*sqs.Queue, error) {
	u := c.get("QueueUrl")
	if u == "" {
		if p := strings.Trim(c.r.URL.Path, "/"); strings.Count(p, "/") == 1 {
			u = "http://" + c.host() + "/" + p
		}
	}
	if u == "" {
		return nil, &sqs.Error{Kind: sqs.KindMissingParameter, Message: "The request must contain the parameter QueueUrl."}
	}
	pu, err := url.Parse(u)
	segs := []string{}
	if err == nil {
		segs = strings.Split(strings.Trim(pu.Path, "/"), "/")
	}
	if err != nil || len(segs) != 2 || segs[0] == "" || segs[1] == "" {
		return nil, &sqs.Error{Kind: "InvalidAddress", Message: fmt.Sprintf("The address %s is not valid for this endpoint (use http://%s/<account>/<queue name>).", u, c.host())}
	}
	rec, err := s.q.Get(c.ctx, segs[0], segs[1])
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, rec.ARN()); err != nil {
		return nil, err
	}
	if rec.Account != c.id.AccountID {
		p := sqs.Principal{Account: c.id.AccountID}
		if c.id.User != "" {
			p.ARN = "arn:aws:iam::" + c.id.AccountID + ":user/" + c.id.User
		}
		if !sqs.PolicyAllows(rec, p, "sqs:"+c.action) {
			return nil, &sqs.Error{Kind: sqs.KindAccessDenied, Message: fmt.Sprintf("Access to the resource %s is denied.", rec.URL(c.host()))}
		}
	}
	return rec, nil
}

func (s *Service) createQueue(c *call) ([]node, error) {
	name, err := c.required("QueueName")
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, "arn:aws:sqs:"+c.region()+":"+c.id.AccountID+":"+name); err != nil {
		return nil, err
	}
	attrs := c.p.strMap("Attributes", []string{"Attribute"}, "Name", "Value")
	tags := c.p.strMap("tags", []string{"Tag", "Tags"}, "Key", "Value")
	rec, err := s.q.Create(c.ctx, sqs.CreateInput{Account: c.id.AccountID, Name: name, Attributes: attrs, Tags: tags})
	if err != nil {
		return nil, err
	}
	return []node{str("QueueUrl", rec.URL(c.host()))}, nil
}

func (s *Service) deleteQueue(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	return nil, s.q.DeleteQueue(c.ctx, rec.Account, rec.Name)
}

func (s *Service) getQueueURL(c *call) ([]node, error) {
	name, err := c.required("QueueName")
	if err != nil {
		return nil, err
	}
	owner := c.get("QueueOwnerAWSAccountId")
	if owner == "" {
		owner = c.id.AccountID
	}
	rec, err := s.q.Get(c.ctx, owner, name)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, rec.ARN()); err != nil {
		return nil, err
	}
	if rec.Account != c.id.AccountID && !sqs.PolicyAllows(rec, sqs.Principal{Account: c.id.AccountID}, "sqs:GetQueueUrl") {
		return nil, &sqs.Error{Kind: sqs.KindQueueDoesNotExist, Message: "The specified queue does not exist or you do not have access to it."}
	}
	return []node{str("QueueUrl", rec.URL(c.host()))}, nil
}

func (s *Service) listQueues(c *call) ([]node, error) {
	if err := s.authorize(c, "arn:aws:sqs:"+c.region()+":"+c.id.AccountID+":*"); err != nil {
		return nil, err
	}
	maxRes, err := getInt(c.p, "MaxResults")
	if err != nil {
		return nil, err
	}
	if maxRes != nil && (*maxRes < 1 || *maxRes > 1000) {
		return nil, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: fmt.Sprintf("Value %d for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000.", *maxRes)}
	}
	tok := c.get("NextToken")
	if tok != "" && maxRes == nil {
		return nil, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: "MaxResults is a mandatory parameter when you provide a value for NextToken."}
	}
	qs, err := s.q.List(c.ctx, c.id.AccountID, c.get("QueueNamePrefix"))
	if err != nil {
		return nil, err
	}
	start := 0
	if tok != "" {
		after, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			return nil, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: "Invalid NextToken value: pass the NextToken of the previous response unchanged."}
		}
		for start < len(qs) && qs[start].Name <= string(after) {
			start++
		}
	}
	limit := 1000
	if maxRes != nil {
		limit = *maxRes
	}
	end := min(len(qs), start+limit)
	var urls []node
	for _, q := range qs[start:end] {
		urls = append(urls, str("", q.URL(c.host())))
	}
	out := []node{list("QueueUrls", "QueueUrl", urls)}
	if len(urls) == 0 {
		out[0].present = false
	}
	if maxRes != nil && end < len(qs) {
		out = append(out, str("NextToken", base64.RawURLEncoding.EncodeToString([]byte(qs[end-1].Name))))
	}
	return out, nil
}

func (s *Service) getQueueAttributes(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	names := c.p.list("AttributeNames", "AttributeName")
	attrs, err := s.q.Attributes(c.ctx, rec, names)
	if err != nil {
		return nil, err
	}
	return []node{smap("Attributes", "Attribute", "Name", "Value", attrs)}, nil
}

func (s *Service) setQueueAttributes(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	attrs := c.p.strMap("Attributes", []string{"Attribute"}, "Name", "Value")
	if len(attrs) == 0 {
		return nil, &sqs.Error{Kind: sqs.KindMissingParameter, Message: "The request must contain the parameter Attributes."}
	}
	return nil, s.q.SetAttributes(c.ctx, rec.Account, rec.Name, attrs)
}

func (c *call) senderID() string {
	if c.id.User != "" {
		return c.id.AccessKeyID
	}
	return c.id.AccountID
}

// sendInput reads one message (the request or a batch entry).
func sendInput(c *call, p params) (sqs.SendInput, error) {
	in := sqs.SendInput{SenderID: c.senderID()}
	in.Body, _ = p.str("MessageBody")
	d, err := getInt(p, "DelaySeconds")
	if err != nil {
		return in, err
	}
	in.DelaySeconds = d
	if in.MessageAttributes, err = p.msgAttrs("MessageAttributes", "MessageAttribute"); err != nil {
		return in, err
	}
	if in.SystemAttributes, err = p.msgAttrs("MessageSystemAttributes", "MessageSystemAttribute"); err != nil {
		return in, err
	}
	if h := c.r.Header.Get("X-Amzn-Trace-Id"); h != "" && in.SystemAttributes["AWSTraceHeader"].StringValue == "" {
		// As SQS: the request's trace header becomes AWSTraceHeader (a
		// function's SDK sends its _X_AMZN_TRACE_ID, with the lineage).
		if in.SystemAttributes == nil {
			in.SystemAttributes = map[string]sqs.MessageAttributeValue{}
		}
		in.SystemAttributes["AWSTraceHeader"] = sqs.MessageAttributeValue{DataType: "String", StringValue: h}
	}
	in.GroupID, _ = p.str("MessageGroupId")
	in.DeduplicationID, _ = p.str("MessageDeduplicationId")
	return in, nil
}

func sendNodes(r sqs.SendResult) []node {
	return []node{str("MD5OfMessageBody", r.MD5OfBody), str("MD5OfMessageAttributes", r.MD5OfMessageAttributes),
		str("MD5OfMessageSystemAttributes", r.MD5OfSystemAttributes), str("MessageId", r.MessageID), str("SequenceNumber", r.SequenceNumber)}
}

func (s *Service) sendMessage(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	in, err := sendInput(c, c.p)
	if err != nil {
		return nil, err
	}
	r, err := s.q.SendTo(c.ctx, rec, in)
	if err != nil {
		return nil, err
	}
	return sendNodes(r), nil
}

// batchIDs checks a batch's entry ids: 1-10 entries, ids of up to 80
// letters, digits, '-' and '_', distinct.
func batchIDs(entries []params, what string) ([]string, error) {
	if len(entries) == 0 {
		return nil, &sqs.Error{Kind: sqs.KindEmptyBatchRequest, Message: "There should be at least one " + what + " in the request."}
	}
	if len(entries) > sqs.MaxBatch {
		return nil, &sqs.Error{Kind: sqs.KindTooManyEntriesInBatchRequest, Message: fmt.Sprintf("Maximum number of entries per request are 10. You have sent %d.", len(entries))}
	}
	ids := make([]string, len(entries))
	seen := map[string]bool{}
	for i, e := range entries {
		id, _ := e.str("Id")
		ok := id != "" && len(id) <= 80
		for _, ch := range id {
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				ok = false
			}
		}
		if !ok {
			return nil, &sqs.Error{Kind: sqs.KindInvalidBatchEntryId, Message: fmt.Sprintf("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long (got %q).", id)}
		}
		if seen[id] {
			return nil, &sqs.Error{Kind: sqs.KindBatchEntryIdsNotDistinct, Message: fmt.Sprintf("Id %s repeated.", id)}
		}
		seen[id] = true
		ids[i] = id
	}
	return ids, nil
}

func failure(id string, err error) node {
	kind, msg := classify(err)
	wr, ok := errorTable[kind]
	code := kind
	if ok {
		code = wr.query
	}
	sender := !ok || wr.status < 500
	if !ok {
		msg = "An internal error occurred."
	}
	return obj("", str("Id", id), boolean("SenderFault", sender), str("Code", code), str("Message", msg))
}

func (s *Service) sendMessageBatch(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	entries := c.p.entries("Entries", "SendMessageBatchRequestEntry")
	ids, err := batchIDs(entries, "SendMessageBatchRequestEntry")
	if err != nil {
		return nil, err
	}
	ins := make([]sqs.SendInput, len(entries))
	pre := make([]error, len(entries))
	for i, e := range entries {
		ins[i], pre[i] = sendInput(c, e)
	}
	results, errs, err := s.q.SendBatch(c.ctx, rec, ins)
	if err != nil {
		return nil, err
	}
	var ok, failed []node
	for i := range entries {
		if e := cmpErr(pre[i], errs[i]); e != nil {
			failed = append(failed, failure(ids[i], e))
			continue
		}
		ok = append(ok, obj("", append([]node{str("Id", ids[i])}, sendNodes(results[i])...)...))
	}
	return batchOut(c, "SendMessageBatchResultEntry", ok, failed), nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func batchOut(c *call, item string, ok, failed []node) []node {
	out := []node{list("Successful", item, ok), list("Failed", "BatchResultErrorEntry", failed)}
	if c.json {
		return out
	}
	if len(ok) == 0 {
		out[0].present = false
	}
	if len(failed) == 0 {
		out[1].present = false
	}
	return out
}

func (s *Service) receiveMessage(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	o := sqs.ReceiveOptions{Max: 1, Visibility: -1, Wait: -1}
	if n, err := getInt(c.p, "MaxNumberOfMessages"); err != nil {
		return nil, err
	} else if n != nil {
		o.Max = *n
	}
	if n, err := getInt(c.p, "VisibilityTimeout"); err != nil {
		return nil, err
	} else if n != nil {
		if *n < 0 || *n > 43200 {
			return nil, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: fmt.Sprintf("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", *n)}
		}
		o.Visibility = time.Duration(*n) * time.Second
	}
	if n, err := getInt(c.p, "WaitTimeSeconds"); err != nil {
		return nil, err
	} else if n != nil {
		if *n < 0 || *n > 20 {
			return nil, &sqs.Error{Kind: sqs.KindInvalidParameterValue, Message: fmt.Sprintf("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *n)}
		}
		o.Wait = time.Duration(*n) * time.Second
	}
	attrNames := append(c.p.list("AttributeNames", "AttributeName"), c.p.list("MessageSystemAttributeNames", "MessageSystemAttributeName")...)
	maNames := c.p.list("MessageAttributeNames", "MessageAttributeName")
	msgs, err := s.q.ReceiveFrom(c.ctx, rec, o)
	if err != nil {
		return nil, err
	}
	var items []node
	for _, m := range msgs {
		attrs := pickAttrs(m.Attributes, attrNames)
		ma := pickMsgAttrs(m.MessageAttributes, maNames)
		items = append(items, obj("", str("MessageId", m.MessageID), str("ReceiptHandle", m.ReceiptHandle), str("MD5OfBody", m.MD5OfBody),
			str("Body", m.Body), smap("Attributes", "Attribute", "Name", "Value", attrs), str("MD5OfMessageAttributes", sqs.MD5OfAttributes(ma)), mattrs("MessageAttributes", ma)))
	}
	out := list("Messages", "Message", items)
	if len(items) == 0 && !c.json {
		out.present = false
	}
	if len(items) == 0 && c.json {
		return []node{}, nil
	}
	return []node{out}, nil
}

func pickAttrs(all map[string]string, names []string) map[string]string {
	if len(names) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, n := range names {
		if n == "All" {
			return all
		}
		if v, ok := all[n]; ok {
			out[n] = v
		}
	}
	return out
}

func pickMsgAttrs(all map[string]sqs.MessageAttributeValue, names []string) map[string]sqs.MessageAttributeValue {
	if len(names) == 0 || len(all) == 0 {
		return nil
	}
	out := map[string]sqs.MessageAttributeValue{}
	for _, n := range names {
		if n == "All" || n == ".*" {
			return all
		}
		if p, ok := strings.CutSuffix(n, ".*"); ok {
			for k, v := range all {
				if strings.HasPrefix(k, p+".") {
					out[k] = v
				}
			}
			continue
		}
		if v, ok := all[n]; ok {
			out[n] = v
		}
	}
	return out
}

func (s *Service) deleteMessage(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	h, err := c.required("ReceiptHandle")
	if err != nil {
		return nil, err
	}
	return nil, s.q.DeleteMessage(c.ctx, rec, h)
}

func (s *Service) deleteMessageBatch(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	entries := c.p.entries("Entries", "DeleteMessageBatchRequestEntry")
	ids, err := batchIDs(entries, "DeleteMessageBatchRequestEntry")
	if err != nil {
		return nil, err
	}
	handles := make([]string, len(entries))
	for i, e := range entries {
		handles[i], _ = e.str("ReceiptHandle")
	}
	errs := s.q.DeleteMessages(c.ctx, rec, handles)
	var ok, failed []node
	for i := range entries {
		if errs[i] != nil {
			failed = append(failed, failure(ids[i], errs[i]))
			continue
		}
		ok = append(ok, obj("", str("Id", ids[i])))
	}
	return batchOut(c, "DeleteMessageBatchResultEntry", ok, failed), nil
}

func (s *Service) changeVisibility(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	h, err := c.required("ReceiptHandle")
	if err != nil {
		return nil, err
	}
	v, err := getInt(c.p, "VisibilityTimeout")
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, &sqs.Error{Kind: sqs.KindMissingParameter, Message: "The request must contain the parameter VisibilityTimeout."}
	}
	return nil, s.q.ChangeMessageVisibility(c.ctx, rec, h, time.Duration(*v)*time.Second)
}

func (s *Service) changeVisibilityBatch(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	entries := c.p.entries("Entries", "ChangeMessageVisibilityBatchRequestEntry")
	ids, err := batchIDs(entries, "ChangeMessageVisibilityBatchRequestEntry")
	if err != nil {
		return nil, err
	}
	var ok, failed []node
	for i, e := range entries {
		h, _ := e.str("ReceiptHandle")
		v, err := getInt(e, "VisibilityTimeout")
		if err == nil && v == nil {
			err = &sqs.Error{Kind: sqs.KindMissingParameter, Message: "The request must contain the parameter VisibilityTimeout."}
		}
		if err == nil {
			err = s.q.ChangeMessageVisibility(c.ctx, rec, h, time.Duration(*v)*time.Second)
		}
		if err != nil {
			failed = append(failed, failure(ids[i], err))
			continue
		}
		ok = append(ok, obj("", str("Id", ids[i])))
	}
	return batchOut(c, "ChangeMessageVisibilityBatchResultEntry", ok, failed), nil
}

func (s *Service) purgeQueue(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	return nil, s.q.Purge(c.ctx, rec.Account, rec.Name)
}

func (s *Service) tagQueue(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	tags := c.p.strMap("Tags", []string{"Tags", "Tag"}, "Key", "Value")
	if len(tags) == 0 {
		return nil, &sqs.Error{Kind: sqs.KindMissingParameter, Message: "The request must contain the parameter Tags."}
	}
	return nil, s.q.Tag(c.ctx, rec.Account, rec.Name, tags)
}

func (s *Service) untagQueue(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	keys := c.p.list("TagKeys", "TagKey")
	if len(keys) == 0 {
		return nil, &sqs.Error{Kind: sqs.KindMissingParameter, Message: "The request must contain the parameter TagKeys."}
	}
	return nil, s.q.Untag(c.ctx, rec.Account, rec.Name, keys)
}

func (s *Service) listQueueTags(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	return []node{smap("Tags", "Tag", "Key", "Value", rec.Tags)}, nil
}

func (s *Service) listDeadLetterSources(c *call) ([]node, error) {
	rec, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	var urls []node
	for _, q := range s.q.DeadLetterSources(c.ctx, rec) {
		urls = append(urls, str("", q.URL(c.host())))
	}
	n := list("queueUrls", "QueueUrl", urls)
	if len(urls) == 0 && !c.json {
		n.present = false
	}
	return []node{n}, nil
}
