package lambdaapi

import (
	"net/http"

	"github.com/lambdaplane/lambdaplane/internal/control"
)

// layers serves the 2018-10-31 layer API: rest is the path after
// /2018-10-31/layers.
func (h *Handler) layers(c *call, rest []string) {
	m := c.r.Method
	q := c.r.URL.Query()
	switch {
	case len(rest) == 0 && m == http.MethodGet && q.Get("find") == "LayerVersion":
		v, err := h.ctl.GetLayerVersionByArn(c.ctx, c.id.AccountID, c.region(), q.Get("Arn"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, h.withLayerLocation(c, v, layerVersionWire(v, true)))
	case len(rest) == 0 && m == http.MethodGet:
		n, ok := c.maxItems()
		if !ok {
			return
		}
		ls, next, err := h.ctl.ListLayers(c.ctx, c.id.AccountID, c.region(), q.Get("CompatibleRuntime"), q.Get("CompatibleArchitecture"), q.Get("Marker"), n)
		if err != nil {
			c.fail(err)
			return
		}
		out := make([]layersListItem, 0, len(ls))
		for _, l := range ls {
			out = append(out, layersListItem{LayerName: l.LayerName, LayerArn: l.LayerArn, LatestMatchingVersion: layerVersionWire(l.Latest, false)})
		}
		resp := map[string]any{"Layers": out}
		if next != "" {
			resp["NextMarker"] = next
		}
		c.json(200, resp)
	case len(rest) == 2 && rest[1] == "versions" && m == http.MethodPost:
		var in control.PublishLayerInput
		if !c.decode(&in) {
			return
		}
		v, err := h.ctl.PublishLayerVersion(c.ctx, c.id.AccountID, c.region(), rest[0], &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(201, h.withLayerLocation(c, v, layerVersionWire(v, true)))
	case len(rest) == 2 && rest[1] == "versions" && m == http.MethodGet:
		n, ok := c.maxItems()
		if !ok {
			return
		}
		vs, next, err := h.ctl.ListLayerVersions(c.ctx, c.id.AccountID, c.region(), rest[0], q.Get("CompatibleRuntime"), q.Get("CompatibleArchitecture"), q.Get("Marker"), n)
		if err != nil {
			c.fail(err)
			return
		}
		out := make([]*layerVersionOut, 0, len(vs))
		for _, v := range vs {
			out = append(out, layerVersionWire(v, false))
		}
		resp := map[string]any{"LayerVersions": out}
		if next != "" {
			resp["NextMarker"] = next
		}
		c.json(200, resp)
	case len(rest) == 3 && rest[1] == "versions" && m == http.MethodGet:
		v, err := h.ctl.GetLayerVersion(c.ctx, c.id.AccountID, c.region(), rest[0], rest[2])
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, h.withLayerLocation(c, v, layerVersionWire(v, true)))
	case len(rest) == 3 && rest[1] == "versions" && m == http.MethodDelete:
		if err := h.ctl.DeleteLayerVersion(c.ctx, c.id.AccountID, c.region(), rest[0], rest[2]); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	default:
		h.unknown(c)
	}
}
