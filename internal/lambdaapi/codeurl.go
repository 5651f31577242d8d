package lambdaapi

import (
	"github.com/lambdaplane/lambdaplane/internal/codeurl"
	"github.com/lambdaplane/lambdaplane/internal/control"
)

// codeBase is the endpoint the caller reached (the URL it can download from).
func (c *call) codeBase() string {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.r.Host
}

// codeLocation is a function code package's presigned URL.
func (h *Handler) codeLocation(c *call, key string) string {
	if h.codeURLs == nil {
		return "lambdaplane://code/" + key
	}
	return h.codeURLs.URL(c.codeBase(), codeurl.KindFunction, key)
}

// withLayerLocation sets a layer version's Content.Location to its
// presigned URL.
func (h *Handler) withLayerLocation(c *call, v *control.LayerVersion, o *layerVersionOut) *layerVersionOut {
	if o.Content != nil && h.codeURLs != nil {
		o.Content.Location = h.codeURLs.URL(c.codeBase(), codeurl.KindLayer, v.Key)
	}
	return o
}
