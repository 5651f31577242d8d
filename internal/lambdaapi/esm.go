package lambdaapi

import (
	"fmt"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/esm"
)

// esmWire is EventSourceMappingConfiguration.
type esmWire struct {
	UUID                           string             `json:"UUID"`
	EventSourceMappingArn          string             `json:"EventSourceMappingArn"`
	BatchSize                      int                `json:"BatchSize"`
	MaximumBatchingWindowInSeconds int                `json:"MaximumBatchingWindowInSeconds"`
	EventSourceArn                 string             `json:"EventSourceArn"`
	FunctionArn                    string             `json:"FunctionArn"`
	LastModified                   float64            `json:"LastModified"`
	LastProcessingResult           string             `json:"LastProcessingResult,omitempty"`
	State                          string             `json:"State"`
	StateTransitionReason          string             `json:"StateTransitionReason"`
	FunctionResponseTypes          []string           `json:"FunctionResponseTypes"`
	ScalingConfig                  *esmScaling        `json:"ScalingConfig,omitempty"`
	FilterCriteria                 *esmFilterCriteria `json:"FilterCriteria,omitempty"`
}

type esmScaling struct {
	MaximumConcurrency int `json:"MaximumConcurrency"`
}

type esmFilterCriteria struct {
	Filters []esmFilter `json:"Filters"`
}

type esmFilter struct {
	Pattern string `json:"Pattern"`
}

func esmToWire(m *esm.Mapping) *esmWire {
	w := &esmWire{
		UUID: m.UUID, EventSourceMappingArn: fmt.Sprintf("arn:aws:lambda:%s:%s:event-source-mapping:%s", m.Region, m.AccountID, m.UUID),
		BatchSize: m.BatchSize, MaximumBatchingWindowInSeconds: m.MaximumBatchingWindowInSeconds,
		EventSourceArn: m.EventSourceArn, FunctionArn: m.FunctionArn(),
		LastModified:         float64(m.LastModified.UnixMilli()) / 1000,
		LastProcessingResult: m.LastProcessingResult, State: m.State, StateTransitionReason: m.StateTransitionReason,
		FunctionResponseTypes: m.FunctionResponseTypes,
	}
	if w.FunctionResponseTypes == nil {
		w.FunctionResponseTypes = []string{}
	}
	if m.MaximumConcurrency > 0 {
		w.ScalingConfig = &esmScaling{MaximumConcurrency: m.MaximumConcurrency}
	}
	if len(m.Filters) > 0 {
		w.FilterCriteria = &esmFilterCriteria{}
		for _, p := range m.Filters {
			w.FilterCriteria.Filters = append(w.FilterCriteria.Filters, esmFilter{Pattern: p})
		}
	}
	return w
}

// addESMOps registers the event source mapping operations.
func (h *Handler) addESMOps() {
	if h.esm == nil {
		return // no queue service wired: the operations stay unknown
	}
	h.handle("CreateEventSourceMapping", func(c *call) {
		var in esm.CreateInput
		if !c.decode(&in) {
			return
		}
		m, err := h.esm.Create(c.ctx, c.id.AccountID, c.region(), &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(202, esmToWire(m))
	})
	h.handle("GetEventSourceMapping", func(c *call) {
		m, err := h.esm.Get(c.ctx, c.id.AccountID, c.param("UUID"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, esmToWire(m))
	})
	h.handle("UpdateEventSourceMapping", func(c *call) {
		var in esm.UpdateInput
		if !c.decode(&in) {
			return
		}
		m, err := h.esm.Update(c.ctx, c.id.AccountID, c.region(), c.param("UUID"), &in)
		if err != nil {
			c.fail(err)
			return
		}
		c.json(202, esmToWire(m))
	})
	h.handle("DeleteEventSourceMapping", func(c *call) {
		m, err := h.esm.Delete(c.ctx, c.id.AccountID, c.param("UUID"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(202, esmToWire(m))
	})
	h.handle("ListEventSourceMappings", func(c *call) {
		n, ok := c.maxItems()
		if !ok {
			return
		}
		q := c.r.URL.Query()
		src := q.Get("EventSourceArn")
		if src != "" && !strings.HasPrefix(src, "arn:") {
			c.fail(control.InvalidParam("EventSourceArn %q is not an ARN", src))
			return
		}
		ms, next, err := h.esm.List(c.ctx, c.id.AccountID, c.region(), src, q.Get("FunctionName"), q.Get("Marker"), n)
		if err != nil {
			c.fail(err)
			return
		}
		out := make([]*esmWire, 0, len(ms))
		for _, m := range ms {
			out = append(out, esmToWire(m))
		}
		resp := map[string]any{"EventSourceMappings": out}
		if next != "" {
			resp["NextMarker"] = next
		}
		c.json(200, resp)
	})
}
