package lambdaapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/lambdaops"
)

// urlTimeFormat is how Lambda writes function URL timestamps.
const urlTimeFormat = "2006-01-02T15:04:05.000000Z"

// addAccessOps registers resource policies, layer permissions, function
// URL configs, cross-account invocation and response streaming.
func (h *Handler) addAccessOps(urlPort func() int) {
	h.urlPort = urlPort
	h.handle("AddPermission", func(c *call) {
		var in control.PermissionInput
		if !c.decode(&in) {
			return
		}
		st, err := h.ctl.AddPermission(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"), &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(201, map[string]string{"Statement": st})
	})
	h.handle("RemovePermission", func(c *call) {
		q := c.r.URL.Query()
		if err := h.ctl.RemovePermission(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), q.Get("Qualifier"), c.param("StatementId"), q.Get("RevisionId")); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
	h.handle("GetPolicy", func(c *call) {
		doc, rev, err := h.ctl.GetPolicy(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]string{"Policy": doc, "RevisionId": rev})
	})
	h.handle("GetResourcePolicy", func(c *call) {
		doc, rev, err := h.ctl.GetResourcePolicy(c.ctx, c.id.AccountID, c.region(), c.param("ResourceArn"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]string{"Policy": doc, "RevisionId": rev})
	})
	h.handle("PutResourcePolicy", func(c *call) {
		var in struct{ Policy, RevisionId string }
		if !c.decode(&in) {
			return
		}
		doc, rev, err := h.ctl.PutResourcePolicy(c.ctx, c.id.AccountID, c.region(), c.param("ResourceArn"), in.Policy, in.RevisionId)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]string{"Policy": doc, "RevisionId": rev})
	})
	h.handle("DeleteResourcePolicy", func(c *call) {
		if err := h.ctl.DeleteResourcePolicy(c.ctx, c.id.AccountID, c.region(), c.param("ResourceArn"), c.r.URL.Query().Get("RevisionId")); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})

	h.handle("AddLayerVersionPermission", func(c *call) {
		var in control.LayerPermissionInput
		if !c.decode(&in) {
			return
		}
		st, rev, err := h.ctl.AddLayerVersionPermission(c.ctx, c.id.AccountID, c.region(), c.param("LayerName"), c.param("VersionNumber"), c.r.URL.Query().Get("RevisionId"), &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(201, map[string]string{"Statement": st, "RevisionId": rev})
	})
	h.handle("RemoveLayerVersionPermission", func(c *call) {
		if err := h.ctl.RemoveLayerVersionPermission(c.ctx, c.id.AccountID, c.region(), c.param("LayerName"), c.param("VersionNumber"), c.param("StatementId"), c.r.URL.Query().Get("RevisionId")); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
	h.handle("GetLayerVersionPolicy", func(c *call) {
		doc, rev, err := h.ctl.GetLayerVersionPolicy(c.ctx, c.id.AccountID, c.region(), c.param("LayerName"), c.param("VersionNumber"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]string{"Policy": doc, "RevisionId": rev})
	})

	h.handle("CreateFunctionUrlConfig", func(c *call) {
		var in control.URLInput
		if !c.decode(&in) {
			return
		}
		u, err := h.ctl.CreateFunctionURL(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"), &in)
		if err != nil {
			c.fail(err)
			return
		}
		out := h.urlWire(u)
		delete(out, "LastModifiedTime")
		c.json(201, out)
	})
	h.handle("GetFunctionUrlConfig", func(c *call) {
		u, err := h.ctl.GetFunctionURL(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, h.urlWire(u))
	})
	h.handle("UpdateFunctionUrlConfig", func(c *call) {
		var in control.URLInput
		if !c.decode(&in) {
			return
		}
		u, err := h.ctl.UpdateFunctionURL(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"), &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, h.urlWire(u))
	})
	h.handle("DeleteFunctionUrlConfig", func(c *call) {
		if err := h.ctl.DeleteFunctionURL(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier")); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
	h.handle("ListFunctionUrlConfigs", func(c *call) {
		n, ok := c.maxItems()
		if !ok {
			return
		}
		us, next, err := h.ctl.ListFunctionURLs(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Marker"), n)
		if err != nil {
			c.fail(err)
			return
		}
		out := make([]map[string]any, 0, len(us))
		for i := range us {
			out = append(out, h.urlWire(&us[i]))
		}
		resp := map[string]any{"FunctionUrlConfigs": out}
		if next != "" {
			resp["NextMarker"] = next
		}
		c.json(200, resp)
	})

	h.handle("InvokeWithResponseStream", h.invokeStream)
}

// crossAccountOps are the operations on a function that its resource
// policy can grant another account (Lambda's "Function actions" of
// resource-based policies; UpdateFunctionConfiguration, AddPermission
// and RemovePermission are not among them, as on AWS).
var crossAccountOps = []string{
	"Invoke", "InvokeWithResponseStream", "GetFunction", "GetFunctionConfiguration", "GetPolicy",
	"UpdateFunctionCode", "DeleteFunction", "PublishVersion", "ListVersionsByFunction",
	"CreateAlias", "GetAlias", "ListAliases", "UpdateAlias", "DeleteAlias",
	"GetFunctionCodeSigningConfig",
	"GetFunctionConcurrency", "PutFunctionConcurrency", "DeleteFunctionConcurrency",
	"GetFunctionEventInvokeConfig", "PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig",
	"DeleteFunctionEventInvokeConfig", "ListFunctionEventInvokeConfigs",
	"GetProvisionedConcurrencyConfig", "PutProvisionedConcurrencyConfig", "DeleteProvisionedConcurrencyConfig",
	"ListProvisionedConcurrencyConfigs",
	"ListTags", "TagResource", "UntagResource",
}

// addCrossAccount makes the operations a resource policy can grant serve
// another account's function by ARN (called last: the wrapper is the
// outermost, so every wrapped step sees the function's account).
func (h *Handler) addCrossAccount() {
	for _, op := range crossAccountOps {
		if f := h.ops[op]; f != nil {
			h.handleCross(op, f)
		}
	}
}

// target is the function an operation names: FunctionName, or the
// Resource ARN of the tag operations.
func (c *call) target() string {
	if fn := c.param("FunctionName"); fn != "" {
		return fn
	}
	return c.param("Resource")
}

// FunctionURL is the address of a function URL: http://ID.lambda-url.REGION.localhost:PORT/.
func (h *Handler) FunctionURL(u *control.FunctionURL) string {
	port := 0
	if h.urlPort != nil {
		port = h.urlPort()
	}
	if port == 0 {
		return fmt.Sprintf("http://%s.lambda-url.%s.localhost/", u.ID, u.Region)
	}
	return fmt.Sprintf("http://%s.lambda-url.%s.localhost:%d/", u.ID, u.Region, port)
}

func (h *Handler) urlWire(u *control.FunctionURL) map[string]any {
	out := map[string]any{
		"FunctionUrl": h.FunctionURL(u), "FunctionArn": u.FunctionARN(), "AuthType": u.AuthType,
		"CreationTime": u.Created.UTC().Format(urlTimeFormat), "LastModifiedTime": u.LastModified.UTC().Format(urlTimeFormat),
		"InvokeMode": u.InvokeMode,
	}
	if u.Cors != nil {
		out["Cors"] = u.Cors
	}
	return out
}

// CallerOf is who a verified identity is to a resource policy.
func CallerOf(id auth.Identity) control.Caller {
	c := control.Caller{AccountID: id.AccountID, ARNs: []string{"arn:aws:iam::" + id.AccountID + ":root"}}
	if id.User != "" {
		c.ARNs = append(c.ARNs, "arn:aws:iam::"+id.AccountID+":user/"+id.User)
	}
	if id.Role != "" {
		c.ARNs = append(c.ARNs, "arn:aws:iam::"+id.AccountID+":role/"+strings.TrimPrefix(id.RolePath+id.Role, "/"),
			"arn:aws:iam::"+id.AccountID+":role/"+id.Role)
		if id.Session != "" {
			c.ARNs = append(c.ARNs, "arn:aws:sts::"+id.AccountID+":assumed-role/"+id.Role+"/"+id.Session)
		}
	}
	return c
}

// callerARN names the caller in an AccessDenied message.
func callerARN(id auth.Identity) string {
	switch {
	case id.User != "":
		return "arn:aws:iam::" + id.AccountID + ":user/" + id.User
	case id.Role != "":
		return "arn:aws:sts::" + id.AccountID + ":assumed-role/" + id.Role + "/" + id.Session
	}
	return "arn:aws:iam::" + id.AccountID + ":root"
}

// crossAccount wraps an operation on a function so that a caller naming
// another account's function by ARN is served as that account, if the
// function's resource policy grants the caller action (an IAM caller's
// own policies were checked by the front against the same ARN). Calls on
// the caller's own functions pass through.
// handleCross registers an operation that may name another account's
// function by ARN: its resource policy decides (crossAccount). Every other
// operation naming another account's function is refused (ServeAWS).
func (h *Handler) handleCross(op string, f func(*call)) {
	h.cross[op] = true
	h.handle(op, h.crossAccount(lambdaops.Action(op), f))
}

func (h *Handler) crossAccount(action string, f func(*call)) func(*call) {
	return func(c *call) {
		r, err := control.ParseRef(c.target())
		if err != nil || r.AccountID == "" || r.AccountID == c.id.AccountID {
			f(c)
			return
		}
		q := c.r.URL.Query().Get("Qualifier")
		if q == "" {
			q = r.Qualifier
		}
		if !h.ctl.PolicyAllows(r.AccountID, c.region(), r.Name, q, CallerOf(c.id), action, nil) {
			c.fail(noPolicyAllows(c.id, action, control.QualifiedARN(c.region(), r.AccountID, r.Name, q)))
			return
		}
		c2 := *c
		c2.id.AccountID = r.AccountID
		f(&c2)
	}
}

// noPolicyAllows is Lambda's refusal of another account's resource.
func noPolicyAllows(id auth.Identity, action, resource string) error {
	return &control.Error{Code: "AccessDeniedException", Status: http.StatusForbidden,
		Message: fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because no resource-based policy allows the %s action", callerARN(id), action, resource, action)}
}

// foreignFunction reports an operation naming another account's function
// by ARN where no resource policy can grant it: the refusal, or nil.
func (h *Handler) foreignFunction(c *call) error {
	fn := c.target()
	if fn == "" || h.cross[c.op.Name] {
		return nil
	}
	r, err := control.ParseRef(fn)
	if err != nil || r.AccountID == "" || r.AccountID == c.id.AccountID {
		return nil
	}
	q := c.r.URL.Query().Get("Qualifier")
	if q == "" {
		q = r.Qualifier
	}
	return noPolicyAllows(c.id, lambdaops.Action(c.op.Name), control.QualifiedARN(c.region(), r.AccountID, r.Name, q))
}

// ResourceGrants is the front's same-account resource-policy check
// (api.ResourceGranter): a function's policy (or its version's or
// alias's) allows action to the caller named by its user, role or
// session ARN. A statement naming only the account does not: within an
// account that defers to the caller's identity policies, as IAM does.
func (h *Handler) ResourceGrants(ctx context.Context, id auth.Identity, action, resource string, cond map[string][]string) bool {
	r, err := control.ParseRef(resource)
	if err != nil || r.AccountID != id.AccountID {
		return false
	}
	region := id.Region
	if region == "" {
		region = "us-east-1"
	}
	caller := CallerOf(id)
	caller.AccountID = ""
	caller.ARNs = caller.ARNs[1:] // not the account root
	if len(caller.ARNs) == 0 {
		return false
	}
	return h.ctl.PolicyAllows(r.AccountID, region, r.Name, r.Qualifier, caller, action, cond)
}
