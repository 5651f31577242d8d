package lambdaapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
)

// The classic operations: InvokeAsync, recursion and runtime management
// configs, code signing configs (internal/control/classic.go), and what
// they change in other operations: recursive loop detection on
// every invocation (internal/invoke/recursion.go), code signing enforcement on CreateFunction and
// UpdateFunctionCode, RuntimeVersionConfig in GetFunction(Configuration).

func (h *Handler) addClassicOps() {
	h.handle("InvokeAsync", h.invokeAsync)
	h.handle("GetFunctionRecursionConfig", func(c *call) {
		fs, err := h.ctl.Settings(c.id.AccountID, c.region(), c.param("FunctionName"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]string{"RecursiveLoop": fs.RecursiveLoop})
	})
	h.handle("PutFunctionRecursionConfig", func(c *call) {
		var in struct{ RecursiveLoop *string }
		if !c.decode(&in) {
			return
		}
		if in.RecursiveLoop == nil {
			c.fail(&control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: Value null at 'recursiveLoop' failed to satisfy constraint: Member must not be null"})
			return
		}
		fs, err := h.ctl.PutRecursion(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), *in.RecursiveLoop)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]string{"RecursiveLoop": fs.RecursiveLoop})
	})
	h.handle("GetRuntimeManagementConfig", func(c *call) {
		q := c.r.URL.Query().Get("Qualifier")
		cfg, _, err := h.ctl.GetFunction(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), q)
		if err != nil {
			c.fail(err)
			return
		}
		fs, err := h.ctl.Settings(c.id.AccountID, c.region(), cfg.FunctionName)
		if err != nil {
			c.fail(err)
			return
		}
		out := map[string]string{"UpdateRuntimeOn": fs.UpdateRuntimeOn, "FunctionArn": control.QualifiedARN(cfg.Region, cfg.AccountID, cfg.FunctionName, cfg.Version)}
		if fs.UpdateRuntimeOn == control.UpdateRuntimeManual {
			out["RuntimeVersionArn"] = fs.RuntimeVersionArn
		}
		c.json(200, out)
	})
	h.handle("PutRuntimeManagementConfig", func(c *call) {
		var in struct {
			UpdateRuntimeOn   *string
			RuntimeVersionArn string
		}
		if !c.decode(&in) {
			return
		}
		if in.UpdateRuntimeOn == nil {
			c.fail(&control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: Value null at 'updateRuntimeOn' failed to satisfy constraint: Member must not be null"})
			return
		}
		fs, err := h.ctl.PutRuntimeManagement(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"), *in.UpdateRuntimeOn, in.RuntimeVersionArn)
		if err != nil {
			c.fail(err)
			return
		}
		out := map[string]string{"UpdateRuntimeOn": fs.UpdateRuntimeOn, "FunctionArn": control.FunctionARN(c.region(), c.id.AccountID, fs.FunctionName)}
		if fs.RuntimeVersionArn != "" {
			out["RuntimeVersionArn"] = fs.RuntimeVersionArn
		}
		c.json(200, out)
	})
	h.addCodeSigningOps()

	// What the settings change in the core operations.
	for _, op := range []string{"GetFunction", "GetFunctionConfiguration"} {
		h.wrapRuntimeVersion(op)
	}
	h.wrapCodeSigning()
}

// invokeAsync is the deprecated InvokeAsync: an Event invoke answered 202
// {"Status":202}.
func (h *Handler) invokeAsync(c *call) {
	payload := c.body
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("{}")
	} else if !json.Valid(payload) {
		c.fail(control.InvalidContent("Could not parse request body into json: Could not parse payload into json: Unexpected character: was expecting a JSON value"))
		return
	}
	req := &invoke.Request{
		AccountID: c.id.AccountID, Region: c.region(), Function: c.param("FunctionName"), InvocationType: invoke.Event,
		Payload: payload, RequestID: c.reqID, TraceID: traceID(c.r.Header.Get("X-Amzn-Trace-Id")),
	}
	if _, err := h.sched.Invoke(c.ctx, req); err != nil {
		c.fail(err)
		return
	}
	c.json(202, map[string]int{"Status": 202})
}

// capture buffers a response so that a wrapper can amend it.
type capture struct {
	hdr    http.Header
	status int
	buf    bytes.Buffer
}

func (w *capture) Header() http.Header         { return w.hdr }
func (w *capture) WriteHeader(s int)           { w.status = s }
func (w *capture) Write(b []byte) (int, error) { return w.buf.Write(b) }

// run calls f with the response captured; emit writes it (amended) out.
func run(c *call, f func(*call)) *capture {
	w := &capture{hdr: http.Header{}, status: 200}
	orig := c.w
	c.w = w
	f(c)
	c.w = orig
	return w
}

func (w *capture) emit(c *call, body []byte) {
	for k, v := range w.hdr {
		c.w.Header()[k] = v
	}
	c.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	c.w.WriteHeader(w.status)
	_, _ = c.w.Write(body)
}

// wrapRuntimeVersion adds RuntimeVersionConfig to op's configuration.
func (h *Handler) wrapRuntimeVersion(op string) {
	orig := h.ops[op]
	h.handle(op, func(c *call) {
		w := run(c, orig)
		body := w.buf.Bytes()
		if w.status == 200 {
			var m map[string]json.RawMessage
			if json.Unmarshal(body, &m) == nil {
				cfgField := m
				var inner map[string]json.RawMessage
				if op == "GetFunction" && json.Unmarshal(m["Configuration"], &inner) == nil {
					cfgField = inner
				}
				var runtime, name string
				_ = json.Unmarshal(cfgField["Runtime"], &runtime)
				_ = json.Unmarshal(cfgField["FunctionName"], &name)
				if fs, err := h.ctl.Settings(c.id.AccountID, c.region(), name); err == nil && runtime != "" {
					arn := control.RuntimeVersionArn(c.region(), runtime)
					if fs.UpdateRuntimeOn == control.UpdateRuntimeManual {
						arn = fs.RuntimeVersionArn
					}
					cfgField["RuntimeVersionConfig"], _ = json.Marshal(map[string]string{"RuntimeVersionArn": arn})
					if op == "GetFunction" {
						m["Configuration"], _ = json.Marshal(cfgField)
					}
					if b, err := json.Marshal(m); err == nil {
						body = b
					}
				}
			}
		}
		w.emit(c, body)
	})
}

// wrapCodeSigning refuses unsigned code where a code signing config
// enforces signatures, and links the config CreateFunction names.
func (h *Handler) wrapCodeSigning() {
	create := h.ops["CreateFunction"]
	h.handle("CreateFunction", func(c *call) {
		var in struct{ CodeSigningConfigArn string }
		_ = json.Unmarshal(c.body, &in)
		if in.CodeSigningConfigArn == "" {
			create(c)
			return
		}
		warning, err := h.ctl.CheckCodeSigning(c.id.AccountID, in.CodeSigningConfigArn)
		if err != nil {
			c.fail(err)
			return
		}
		w := run(c, create)
		if w.status == 201 {
			var out struct{ FunctionName string }
			_ = json.Unmarshal(w.buf.Bytes(), &out)
			if _, err := h.ctl.PutFunctionCodeSigningConfig(c.ctx, c.id.AccountID, c.region(), out.FunctionName, in.CodeSigningConfigArn); err != nil {
				h.log.Error("linking the code signing config of a new function", "function", out.FunctionName, "err", err)
			}
			h.log.Warn(warning, "function", out.FunctionName)
		}
		w.emit(c, w.buf.Bytes())
	})
	update := h.ops["UpdateFunctionCode"]
	h.handle("UpdateFunctionCode", func(c *call) {
		fs, err := h.ctl.Settings(c.id.AccountID, c.region(), c.param("FunctionName"))
		if err != nil {
			c.fail(err)
			return
		}
		warning, err := h.ctl.CheckCodeSigning(c.id.AccountID, fs.CodeSigningConfigArn)
		if err != nil {
			c.fail(err)
			return
		}
		if warning != "" {
			h.log.Warn(warning, "function", fs.FunctionName)
		}
		update(c)
	})
}

type cscOut struct {
	CodeSigningConfigID  string `json:"CodeSigningConfigId"`
	CodeSigningConfigArn string `json:"CodeSigningConfigArn"`
	Description          string `json:"Description"`
	AllowedPublishers    struct {
		SigningProfileVersionArns []string `json:"SigningProfileVersionArns"`
	} `json:"AllowedPublishers"`
	CodeSigningPolicies struct {
		UntrustedArtifactOnDeployment string `json:"UntrustedArtifactOnDeployment"`
	} `json:"CodeSigningPolicies"`
	LastModified string `json:"LastModified"`
}

func toCSC(c *control.CodeSigningConfig) cscOut {
	var o cscOut
	o.CodeSigningConfigID, o.CodeSigningConfigArn, o.Description = c.ID, c.Arn, c.Description
	o.AllowedPublishers.SigningProfileVersionArns = c.SigningProfileVersionArns
	o.CodeSigningPolicies.UntrustedArtifactOnDeployment = c.UntrustedArtifactOnDeployment
	o.LastModified = c.LastModified.UTC().Format("2006-01-02T15:04:05.000+0000")
	return o
}

func (h *Handler) addCodeSigningOps() {
	h.handle("CreateCodeSigningConfig", func(c *call) {
		var in control.CodeSigningInput
		if !c.decode(&in) {
			return
		}
		csc, err := h.ctl.CreateCodeSigningConfig(c.ctx, c.id.AccountID, c.region(), &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(201, map[string]any{"CodeSigningConfig": toCSC(csc)})
	})
	h.handle("GetCodeSigningConfig", func(c *call) {
		csc, err := h.ctl.GetCodeSigningConfig(c.id.AccountID, c.param("CodeSigningConfigArn"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]any{"CodeSigningConfig": toCSC(csc)})
	})
	h.handle("UpdateCodeSigningConfig", func(c *call) {
		var in control.CodeSigningInput
		if !c.decode(&in) {
			return
		}
		csc, err := h.ctl.UpdateCodeSigningConfig(c.ctx, c.id.AccountID, c.param("CodeSigningConfigArn"), &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]any{"CodeSigningConfig": toCSC(csc)})
	})
	h.handle("DeleteCodeSigningConfig", func(c *call) {
		if err := h.ctl.DeleteCodeSigningConfig(c.ctx, c.id.AccountID, c.param("CodeSigningConfigArn")); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
	h.handle("ListCodeSigningConfigs", func(c *call) {
		max, ok := c.maxItems()
		if !ok {
			return
		}
		all := h.ctl.ListCodeSigningConfigs(c.id.AccountID)
		idx, next := pageStrings(len(all), func(i int) string { return all[i].ID }, c.r.URL.Query().Get("Marker"), max, 50)
		out := struct {
			CodeSigningConfigs []cscOut `json:"CodeSigningConfigs"`
			NextMarker         string   `json:"NextMarker,omitempty"`
		}{CodeSigningConfigs: []cscOut{}, NextMarker: next}
		for _, i := range idx {
			out.CodeSigningConfigs = append(out.CodeSigningConfigs, toCSC(&all[i]))
		}
		c.json(200, out)
	})
	h.handle("ListFunctionsByCodeSigningConfig", func(c *call) {
		max, ok := c.maxItems()
		if !ok {
			return
		}
		csc, err := h.ctl.GetCodeSigningConfig(c.id.AccountID, c.param("CodeSigningConfigArn"))
		if err != nil {
			c.fail(err)
			return
		}
		fns := h.ctl.FunctionsByCodeSigningConfig(c.id.AccountID, csc.Arn)
		idx, next := pageStrings(len(fns), func(i int) string { return fns[i] }, c.r.URL.Query().Get("Marker"), max, 50)
		out := struct {
			FunctionArns []string `json:"FunctionArns"`
			NextMarker   string   `json:"NextMarker,omitempty"`
		}{FunctionArns: []string{}, NextMarker: next}
		for _, i := range idx {
			out.FunctionArns = append(out.FunctionArns, control.FunctionARN(c.region(), c.id.AccountID, fns[i]))
		}
		c.json(200, out)
	})
	fnCSC := func(c *call, arn string) {
		c.json(200, map[string]string{"CodeSigningConfigArn": arn, "FunctionName": c.param("FunctionName")})
	}
	h.handle("PutFunctionCodeSigningConfig", func(c *call) {
		var in struct{ CodeSigningConfigArn *string }
		if !c.decode(&in) {
			return
		}
		if in.CodeSigningConfigArn == nil {
			c.fail(&control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: Value null at 'codeSigningConfigArn' failed to satisfy constraint: Member must not be null"})
			return
		}
		fs, err := h.ctl.PutFunctionCodeSigningConfig(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), *in.CodeSigningConfigArn)
		if err != nil {
			c.fail(err)
			return
		}
		fnCSC(c, fs.CodeSigningConfigArn)
	})
	h.handle("GetFunctionCodeSigningConfig", func(c *call) {
		fs, err := h.ctl.Settings(c.id.AccountID, c.region(), c.param("FunctionName"))
		if err != nil {
			c.fail(err)
			return
		}
		fnCSC(c, fs.CodeSigningConfigArn)
	})
	h.handle("DeleteFunctionCodeSigningConfig", func(c *call) {
		if err := h.ctl.DeleteFunctionCodeSigningConfig(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName")); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
}
