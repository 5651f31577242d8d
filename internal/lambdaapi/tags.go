package lambdaapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/lambdaops"
)

// addTagOps registers TagResource, UntagResource and ListTags.
func (h *Handler) addTagOps() {
	h.handle("ListTags", func(c *call) {
		tags, err := h.ctl.ListTags(c.ctx, c.id.AccountID, c.region(), c.param("Resource"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, map[string]any{"Tags": tags})
	})
	h.handle("TagResource", func(c *call) {
		var in struct {
			Tags map[string]string `json:"Tags"`
		}
		if !c.decode(&in) {
			return
		}
		if err := h.ctl.TagResource(c.ctx, c.id.AccountID, c.region(), c.param("Resource"), in.Tags); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
	h.handle("UntagResource", func(c *call) {
		if err := h.ctl.UntagResource(c.ctx, c.id.AccountID, c.region(), c.param("Resource"), c.r.URL.Query()["tagKeys"]); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
}

// Conditions gives the front the tag condition keys of a request
// (api.Conditioner): aws:ResourceTag/<key> of the function it acts on,
// and for TagResource / UntagResource the tags it sets or removes
// (aws:RequestTag/<key>, aws:TagKeys).
func (h *Handler) Conditions(ctx context.Context, r *http.Request, id auth.Identity, body []byte) map[string][]string {
	rt, params, ok := lambdaops.Match(r.Method, r.URL.EscapedPath(), r.URL.Query())
	if !ok {
		return nil
	}
	target := params["FunctionName"]
	if target == "" {
		target = params["Resource"]
	}
	cond := map[string][]string{}
	if target != "" {
		for k, v := range h.ctl.ResourceTags(id.AccountID, target) {
			cond["aws:ResourceTag/"+k] = []string{v}
		}
	}
	switch rt.Name {
	case "TagResource":
		var in struct {
			Tags map[string]string `json:"Tags"`
		}
		if json.Unmarshal(body, &in) == nil {
			for k, v := range control.TagConditions(in.Tags) {
				cond[k] = v
			}
		}
	case "UntagResource":
		if keys := r.URL.Query()["tagKeys"]; len(keys) > 0 {
			cond["aws:TagKeys"] = keys
		}
	}
	if len(cond) == 0 {
		return nil
	}
	return cond
}
