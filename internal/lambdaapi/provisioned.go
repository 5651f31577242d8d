package lambdaapi

import (
	"github.com/lambdaplane/lambdaplane/internal/control"
)

// Provisioned concurrency (internal/control/provisioned.go, kept by
// internal/provision).

type provisionedOut struct {
	FunctionArn                              string `json:"FunctionArn,omitempty"`
	RequestedProvisionedConcurrentExecutions int    `json:"RequestedProvisionedConcurrentExecutions"`
	AvailableProvisionedConcurrentExecutions int    `json:"AvailableProvisionedConcurrentExecutions"`
	AllocatedProvisionedConcurrentExecutions int    `json:"AllocatedProvisionedConcurrentExecutions"`
	Status                                   string `json:"Status"`
	StatusReason                             string `json:"StatusReason,omitempty"`
	LastModified                             string `json:"LastModified"`
}

func toProvisioned(pc *control.ProvisionedConfig, withArn bool) provisionedOut {
	out := provisionedOut{
		RequestedProvisionedConcurrentExecutions: pc.Requested,
		AvailableProvisionedConcurrentExecutions: pc.Available,
		AllocatedProvisionedConcurrentExecutions: pc.Allocated,
		Status:                                   pc.Status, StatusReason: pc.StatusReason,
		LastModified: pc.LastModified.UTC().Format("2006-01-02T15:04:05+0000"),
	}
	if withArn {
		out.FunctionArn = control.QualifiedARN(pc.Region, pc.AccountID, pc.FunctionName, pc.Qualifier)
	}
	return out
}

func (h *Handler) addProvisionedOps() {
	h.handle("PutProvisionedConcurrencyConfig", func(c *call) {
		var in struct {
			ProvisionedConcurrentExecutions *int `json:"ProvisionedConcurrentExecutions"`
		}
		if !c.decode(&in) {
			return
		}
		if in.ProvisionedConcurrentExecutions == nil {
			c.fail(&control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: Value null at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must not be null"})
			return
		}
		pc, err := h.ctl.PutProvisioned(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"), *in.ProvisionedConcurrentExecutions)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(202, toProvisioned(pc, false))
	})
	h.handle("GetProvisionedConcurrencyConfig", func(c *call) {
		pc, err := h.ctl.GetProvisioned(c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, toProvisioned(pc, false))
	})
	h.handle("DeleteProvisionedConcurrencyConfig", func(c *call) {
		if err := h.ctl.DeleteProvisioned(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier")); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
	h.handle("ListProvisionedConcurrencyConfigs", func(c *call) {
		max, ok := c.maxItems()
		if !ok {
			return
		}
		pcs, err := h.ctl.ListProvisioned(c.id.AccountID, c.region(), c.param("FunctionName"))
		if err != nil {
			c.fail(err)
			return
		}
		items, next := pageStrings(len(pcs), func(i int) string { return pcs[i].Qualifier }, c.r.URL.Query().Get("Marker"), max, 50)
		out := struct {
			ProvisionedConcurrencyConfigs []provisionedOut `json:"ProvisionedConcurrencyConfigs"`
			NextMarker                    string           `json:"NextMarker,omitempty"`
		}{ProvisionedConcurrencyConfigs: []provisionedOut{}, NextMarker: next}
		for _, i := range items {
			out.ProvisionedConcurrencyConfigs = append(out.ProvisionedConcurrencyConfigs, toProvisioned(&pcs[i], true))
		}
		c.json(200, out)
	})
}

// pageStrings pages n items sorted by key(i): those after marker (a key),
// at most max (0: def). It returns the indexes and the next marker.
func pageStrings(n int, key func(int) string, marker string, max, def int) ([]int, string) {
	if max <= 0 {
		max = def
	}
	var out []int
	for i := 0; i < n; i++ {
		if marker != "" && key(i) <= marker {
			continue
		}
		if len(out) == max {
			return out, key(out[len(out)-1])
		}
		out = append(out, i)
	}
	return out, ""
}
