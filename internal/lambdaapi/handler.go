package lambdaapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/codeurl"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/destinations"
	"github.com/lambdaplane/lambdaplane/internal/esm"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/lambdaops"
	"github.com/lambdaplane/lambdaplane/internal/logs"
)

// Handler is the Lambda service (api.Service).
type Handler struct {
	ctl   *control.Service
	sched *invoke.Scheduler
	logs  *logs.Store
	log   *slog.Logger
	ops   map[string]func(*call) // operation name → handler
	cross map[string]bool        // operations another account may call by ARN (access.go)
	// codeURLs signs Code.Location / Content.Location (codeurl.go).
	codeURLs *codeurl.Signer
	esm      *esm.Service
	// urlPort is the function URL listener's port (access.go).
	urlPort func() int
	// eventInvoke: function event invoke configs.
	eventInvoke *destinations.Configs
}

// Deps are what the Lambda service is built from.
type Deps struct {
	Control   *control.Service
	Scheduler *invoke.Scheduler
	Logs      *logs.Store
	Log       *slog.Logger
	// CodeURLs signs the download URLs of code packages (nil: none).
	CodeURLs *codeurl.Signer
	ESM      *esm.Service // event source mappings
	// URLPort returns the function URL listener's port (0: none).
	URLPort func() int
	// EventInvoke stores the function event invoke configs.
	EventInvoke *destinations.Configs
}

// New builds the Lambda service.
func New(d Deps) *Handler {
	h := &Handler{ctl: d.Control, sched: d.Scheduler, logs: d.Logs, log: d.Log, ops: map[string]func(*call){}, cross: map[string]bool{}, esm: d.ESM, eventInvoke: d.EventInvoke}
	h.addCoreOps()
	h.addTagOps()
	h.codeURLs = d.CodeURLs
	h.addESMOps()
	h.addAccessOps(d.URLPort)
	h.addEventInvokeOps()
	h.addProvisionedOps()
	h.addClassicOps()   // it wraps core operations
	h.addCrossAccount() // last: it wraps every operation a resource policy can grant
	return h
}

// handle registers the handler of a Lambda operation (a name of
// lambdaops' table). Each feature file registers its operations from a
// method New calls.
func (h *Handler) handle(op string, f func(*call)) { h.ops[op] = f }

// Name is the SigV4 service name.
func (h *Handler) Name() string { return "lambda" }

// WriteError writes an authentication or front-end error.
func (h *Handler) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, invoke.NewRequestID(), err)
}

type call struct {
	w      http.ResponseWriter
	r      *http.Request
	id     auth.Identity
	body   []byte
	reqID  string
	ctx    context.Context
	op     lambdaops.Route  // the operation matched
	params lambdaops.Params // its path labels, unescaped
}

// param returns a path label of the operation (FunctionName, Name, …).
func (c *call) param(name string) string { return c.params[name] }

func (c *call) region() string {
	if c.id.Region == "" {
		return "us-east-1"
	}
	return c.id.Region
}

func (c *call) json(status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(c.w, c.reqID, err)
		return
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("X-Amzn-RequestId", c.reqID)
	c.w.WriteHeader(status)
	_, _ = c.w.Write(b)
}

func (c *call) noContent() {
	c.w.Header().Set("X-Amzn-RequestId", c.reqID)
	c.w.WriteHeader(http.StatusNoContent)
}

func (c *call) fail(err error) { writeError(c.w, c.reqID, err) }

func (c *call) decode(v any) bool {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return true
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		c.fail(control.InvalidContent("Could not parse request body into json: %v", err))
		return false
	}
	return true
}

func (c *call) maxItems() (int, bool) {
	s := c.r.URL.Query().Get("MaxItems")
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 10000 {
		c.fail(&control.Error{Code: "ValidationException", Status: 400, Message: fmt.Sprintf("1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000", s)})
		return 0, false
	}
	return n, true
}

// ServeAWS routes one verified request by the operation table.
func (h *Handler) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	c := &call{w: w, r: r, id: id, body: body, reqID: invoke.NewRequestID(), ctx: auth.WithIdentity(r.Context(), id)}
	rt, params, ok := lambdaops.Match(r.Method, r.URL.EscapedPath(), r.URL.Query())
	if !ok {
		h.unknown(c)
		return
	}
	c.op, c.params = rt, params
	if err := h.foreignFunction(c); err != nil {
		c.fail(err)
		return
	}
	f := h.ops[rt.Name]
	if f == nil {
		c.fail(&control.Error{Code: "UnknownOperationException", Status: 404, Message: fmt.Sprintf("lambdaplane does not serve the Lambda operation %s (%s %s)", rt.Name, r.Method, r.URL.Path)})
		return
	}
	f(c)
}

// addCoreOps registers the operations this file and layers.go serve.
func (h *Handler) addCoreOps() {
	fn := func(c *call) { h.function(c, c.param("FunctionName"), splitPath(c.r.URL.EscapedPath())[3:]) }
	for _, op := range []string{"GetFunction", "DeleteFunction", "GetFunctionConfiguration", "UpdateFunctionConfiguration",
		"UpdateFunctionCode", "Invoke", "PublishVersion", "ListVersionsByFunction",
		"CreateAlias", "ListAliases", "GetAlias", "UpdateAlias", "DeleteAlias"} {
		h.handle(op, fn)
	}
	h.handle("CreateFunction", h.create)
	h.handle("ListFunctions", h.list)
	h.handle("GetAccountSettings", func(c *call) { c.json(200, h.ctl.GetAccountSettings(c.id.AccountID)) })
	for _, op := range []string{"PutFunctionConcurrency", "DeleteFunctionConcurrency", "GetFunctionConcurrency"} {
		h.handle(op, func(c *call) { h.concurrency(c, c.param("FunctionName")) })
	}
	lay := func(c *call) { h.layers(c, splitPath(c.r.URL.EscapedPath())[2:]) }
	for _, op := range []string{"ListLayers", "GetLayerVersionByArn", "PublishLayerVersion", "ListLayerVersions", "GetLayerVersion", "DeleteLayerVersion"} {
		h.handle(op, lay)
	}
	h.handle("GetLogs", func(c *call) { h.streamLogs(c, c.param("FunctionName")) })
}

func (h *Handler) unknown(c *call) {
	if ops := lambdaops.PathKnown(c.r.URL.EscapedPath()); len(ops) > 0 {
		c.fail(&control.Error{Code: "UnknownOperationException", Status: 405, Message: fmt.Sprintf("No Lambda operation is %s %s: the path exists but not with this method (it serves %s)", c.r.Method, c.r.URL.Path, strings.Join(ops, ", "))})
		return
	}
	c.fail(&control.Error{Code: "UnknownOperationException", Status: 404, Message: fmt.Sprintf("No Lambda operation has the path %s %s: check the API version date and resource path against the Lambda API reference", c.r.Method, c.r.URL.Path)})
}

// splitPath splits an escaped path into unescaped segments, ignoring a
// trailing slash.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return []string{}
	}
	raw := strings.Split(p, "/")
	out := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil
		}
		out[i] = u
	}
	return out
}

func (h *Handler) function(c *call, name string, rest []string) {
	m := c.r.Method
	q := c.r.URL.Query()
	switch {
	case len(rest) == 0 && m == http.MethodGet:
		cfg, fn, err := h.ctl.GetFunction(c.ctx, c.id.AccountID, c.region(), name, q.Get("Qualifier"))
		if err != nil {
			c.fail(err)
			return
		}
		out := map[string]any{
			"Configuration": toWire(cfg),
			"Code":          map[string]string{"RepositoryType": "S3", "Location": h.codeLocation(c, cfg.CodeKey)},
		}
		if fn.ReservedConcurrency != nil {
			out["Concurrency"] = map[string]int{"ReservedConcurrentExecutions": *fn.ReservedConcurrency}
		}
		if len(fn.Tags) > 0 {
			out["Tags"] = fn.Tags
		}
		c.json(200, out)
	case len(rest) == 0 && m == http.MethodDelete:
		if err := h.ctl.DeleteFunction(c.ctx, c.id.AccountID, c.region(), name, q.Get("Qualifier")); err != nil {
			c.fail(err)
			return
		}
		if h.logs != nil && q.Get("Qualifier") == "" {
			if r, err := control.ParseRef(name); err == nil {
				_ = h.logs.Purge(c.ctx, c.id.AccountID, r.Name)
			}
		}
		h.forgetEventInvokeConfigs(c, name, q.Get("Qualifier"))
		c.noContent()
	case len(rest) == 1 && rest[0] == "configuration" && m == http.MethodGet:
		cfg, _, err := h.ctl.GetFunction(c.ctx, c.id.AccountID, c.region(), name, q.Get("Qualifier"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, toWire(cfg))
	case len(rest) == 1 && rest[0] == "configuration" && m == http.MethodPut:
		var in control.UpdateConfigInput
		if !c.decode(&in) {
			return
		}
		cfg, err := h.ctl.UpdateConfig(c.ctx, c.id.AccountID, c.region(), name, &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, toWire(cfg))
	case len(rest) == 1 && rest[0] == "code" && m == http.MethodPut:
		var in control.UpdateCodeInput
		if !c.decode(&in) {
			return
		}
		cfg, err := h.ctl.UpdateCode(c.ctx, c.id.AccountID, c.region(), name, &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, toWire(cfg))
	case len(rest) == 1 && rest[0] == "invocations" && m == http.MethodPost:
		h.invoke(c, name)
	case len(rest) == 1 && rest[0] == "versions" && m == http.MethodPost:
		var in struct{ CodeSha256, Description, RevisionId string }
		if !c.decode(&in) {
			return
		}
		cfg, err := h.ctl.PublishVersion(c.ctx, c.id.AccountID, c.region(), name, in.CodeSha256, in.Description, in.RevisionId)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(201, toWire(cfg))
	case len(rest) == 1 && rest[0] == "versions" && m == http.MethodGet:
		n, ok := c.maxItems()
		if !ok {
			return
		}
		vs, next, err := h.ctl.ListVersions(c.ctx, c.id.AccountID, c.region(), name, q.Get("Marker"), n)
		if err != nil {
			c.fail(err)
			return
		}
		out := make([]*functionConfiguration, 0, len(vs))
		for i := range vs {
			out = append(out, toWire(&vs[i]))
		}
		resp := map[string]any{"Versions": out}
		if next != "" {
			resp["NextMarker"] = next
		}
		c.json(200, resp)
	case len(rest) >= 1 && rest[0] == "aliases":
		h.aliases(c, name, rest[1:])
	default:
		h.unknown(c)
	}
}

func (h *Handler) create(c *call) {
	var in control.CreateInput
	if !c.decode(&in) {
		return
	}
	cfg, err := h.ctl.CreateFunction(c.ctx, c.id.AccountID, c.region(), &in)
	if err != nil {
		c.fail(err)
		return
	}
	c.json(201, toWire(cfg))
}

func (h *Handler) list(c *call) {
	n, ok := c.maxItems()
	if !ok {
		return
	}
	q := c.r.URL.Query()
	all := false
	switch q.Get("FunctionVersion") {
	case "":
	case "ALL":
		all = true
	default:
		c.fail(&control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: Value '" + q.Get("FunctionVersion") + "' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]"})
		return
	}
	fns, next, err := h.ctl.ListFunctions(c.ctx, c.id.AccountID, q.Get("Marker"), n, all)
	if err != nil {
		c.fail(err)
		return
	}
	out := make([]*functionConfiguration, 0, len(fns))
	for i := range fns {
		out = append(out, toWire(&fns[i]))
	}
	resp := map[string]any{"Functions": out}
	if next != "" {
		resp["NextMarker"] = next
	}
	c.json(200, resp)
}

func (h *Handler) aliases(c *call, name string, rest []string) {
	m := c.r.Method
	switch {
	case len(rest) == 0 && m == http.MethodPost:
		var in control.AliasInput
		if !c.decode(&in) {
			return
		}
		a, err := h.ctl.CreateAlias(c.ctx, c.id.AccountID, c.region(), name, &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(201, aliasWire(c.region(), a))
	case len(rest) == 0 && m == http.MethodGet:
		n, ok := c.maxItems()
		if !ok {
			return
		}
		q := c.r.URL.Query()
		as, next, err := h.ctl.ListAliases(c.ctx, c.id.AccountID, c.region(), name, q.Get("FunctionVersion"), q.Get("Marker"), n)
		if err != nil {
			c.fail(err)
			return
		}
		out := make([]*aliasConfiguration, 0, len(as))
		for i := range as {
			out = append(out, aliasWire(c.region(), &as[i]))
		}
		resp := map[string]any{"Aliases": out}
		if next != "" {
			resp["NextMarker"] = next
		}
		c.json(200, resp)
	case len(rest) == 1 && m == http.MethodGet:
		a, err := h.ctl.GetAlias(c.id.AccountID, c.region(), name, rest[0])
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, aliasWire(c.region(), a))
	case len(rest) == 1 && m == http.MethodPut:
		var in control.AliasInput
		if !c.decode(&in) {
			return
		}
		a, err := h.ctl.UpdateAlias(c.ctx, c.id.AccountID, c.region(), name, rest[0], &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, aliasWire(c.region(), a))
	case len(rest) == 1 && m == http.MethodDelete:
		if err := h.ctl.DeleteAlias(c.ctx, c.id.AccountID, c.region(), name, rest[0]); err != nil {
			c.fail(err)
			return
		}
		// An alias's event invoke config goes with it, as on Lambda.
		h.forgetEventInvokeConfigs(c, name, rest[0])
		c.noContent()
	default:
		h.unknown(c)
	}
}

func (h *Handler) concurrency(c *call, name string) {
	switch c.r.Method {
	case http.MethodPut:
		var in struct {
			ReservedConcurrentExecutions *int
		}
		if !c.decode(&in) {
			return
		}
		n, err := h.ctl.PutConcurrency(c.ctx, c.id.AccountID, c.region(), name, in.ReservedConcurrentExecutions)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]int{"ReservedConcurrentExecutions": n})
	case http.MethodDelete:
		if err := h.ctl.DeleteConcurrency(c.ctx, c.id.AccountID, c.region(), name); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	case http.MethodGet:
		n, err := h.ctl.GetConcurrency(c.id.AccountID, c.region(), name)
		if err != nil {
			c.fail(err)
			return
		}
		if n == nil {
			c.json(200, map[string]any{})
			return
		}
		c.json(200, map[string]int{"ReservedConcurrentExecutions": *n})
	default:
		h.unknown(c)
	}
}

func (h *Handler) invoke(c *call, name string) {
	hd := c.r.Header
	payload := c.body
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("{}")
	} else if !json.Valid(payload) {
		c.fail(control.InvalidContent("Could not parse request body into json: Could not parse payload into json: Unexpected character: was expecting a JSON value"))
		return
	}
	logType := hd.Get("X-Amz-Log-Type")
	if logType != "" && logType != "None" && logType != "Tail" {
		c.fail(control.InvalidParam("Invalid LogType %q: use None or Tail", logType))
		return
	}
	req := &invoke.Request{
		AccountID: c.id.AccountID, Region: c.region(), Function: name,
		Qualifier: c.r.URL.Query().Get("Qualifier"), InvocationType: hd.Get("X-Amz-Invocation-Type"),
		Payload: payload, LogTail: logType == "Tail", ClientContext: hd.Get("X-Amz-Client-Context"),
		RequestID: c.reqID, TraceID: traceID(hd.Get("X-Amzn-Trace-Id")),
	}
	resp, err := h.sched.Invoke(c.ctx, req)
	if err != nil {
		c.fail(err)
		return
	}
	w := c.w.Header()
	w.Set("X-Amzn-RequestId", resp.RequestID)
	if resp.Host != "" {
		// The host whose environment ran it (or that queued it).
		w.Set("X-Lambdaplane-Host", resp.Host)
	}
	if resp.ExecutedVersion != "" && resp.Status == 200 {
		w.Set("X-Amz-Executed-Version", resp.ExecutedVersion)
	}
	if resp.FunctionError != "" {
		w.Set("X-Amz-Function-Error", resp.FunctionError)
	}
	if resp.LogResult != "" {
		w.Set("X-Amz-Log-Result", resp.LogResult)
	}
	if resp.Status == 200 {
		w.Set("Content-Type", "application/json")
	}
	c.w.WriteHeader(resp.Status)
	if len(resp.Payload) > 0 {
		_, _ = c.w.Write(resp.Payload)
	}
}

// traceID returns the caller's X-Ray header or a new root trace id.
func traceID(h string) string {
	if h != "" {
		return h
	}
	id := invoke.NewRequestID()
	hexID := strings.ReplaceAll(id, "-", "")
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), hexID[:24], hexID[16:32])
}

// streamLogs serves GET /_lambdaplane/logs/NAME[?follow=1&tail=N] as text.
func (h *Handler) streamLogs(c *call, name string) {
	r, err := control.ParseRef(name)
	if err != nil {
		c.fail(err)
		return
	}
	if _, _, err := h.ctl.GetFunction(c.ctx, c.id.AccountID, c.region(), r.Name, ""); err != nil {
		c.fail(err)
		return
	}
	q := c.r.URL.Query()
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	tail, _ := strconv.Atoi(q.Get("tail"))
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.w.WriteHeader(200)
	fl, _ := c.w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	_ = h.logs.Follow(c.ctx, c.id.AccountID, r.Name, tail, follow, func(rec logs.Record) error {
		if _, err := c.w.Write(rec.Text); err != nil {
			return err
		}
		if fl != nil {
			fl.Flush()
		}
		return nil
	})
}
