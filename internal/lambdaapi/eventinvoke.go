package lambdaapi

import (
	"fmt"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/destinations"
)

// eventInvokeWire is FunctionEventInvokeConfig.
type eventInvokeWire struct {
	LastModified             float64         `json:"LastModified"`
	FunctionArn              string          `json:"FunctionArn"`
	MaximumRetryAttempts     *int            `json:"MaximumRetryAttempts,omitempty"`
	MaximumEventAgeInSeconds *int            `json:"MaximumEventAgeInSeconds,omitempty"`
	DestinationConfig        destinationWire `json:"DestinationConfig"`
}

type destinationWire struct {
	OnSuccess map[string]string `json:"OnSuccess"`
	OnFailure map[string]string `json:"OnFailure"`
}

func eventInvokeToWire(c *destinations.Config) *eventInvokeWire {
	w := &eventInvokeWire{
		LastModified: float64(c.LastModified.UnixMilli()) / 1000, FunctionArn: c.FunctionArn(),
		MaximumRetryAttempts: c.MaximumRetryAttempts, MaximumEventAgeInSeconds: c.MaximumEventAgeInSeconds,
		DestinationConfig: destinationWire{OnSuccess: map[string]string{}, OnFailure: map[string]string{}},
	}
	if c.OnSuccess != "" {
		w.DestinationConfig.OnSuccess["Destination"] = c.OnSuccess
	}
	if c.OnFailure != "" {
		w.DestinationConfig.OnFailure["Destination"] = c.OnFailure
	}
	return w
}

// addEventInvokeOps registers the function event invoke config operations.
func (h *Handler) addEventInvokeOps() {
	if h.eventInvoke == nil {
		return
	}
	put := func(update bool) func(*call) {
		return func(c *call) {
			var in destinations.Input
			if !c.decode(&in) {
				return
			}
			f := h.eventInvoke.Put
			if update {
				f = h.eventInvoke.Update
			}
			out, err := f(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"), &in)
			if err != nil {
				c.fail(err)
				return
			}
			c.json(200, eventInvokeToWire(out))
		}
	}
	h.handle("PutFunctionEventInvokeConfig", put(false))
	h.handle("UpdateFunctionEventInvokeConfig", put(true))
	h.handle("GetFunctionEventInvokeConfig", func(c *call) {
		out, err := h.eventInvoke.Get(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier"))
		if err != nil {
			c.fail(err)
			return
		}
		c.json(200, eventInvokeToWire(out))
	})
	h.handle("DeleteFunctionEventInvokeConfig", func(c *call) {
		if err := h.eventInvoke.Delete(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Qualifier")); err != nil {
			c.fail(err)
			return
		}
		c.noContent()
	})
	h.handle("ListFunctionEventInvokeConfigs", func(c *call) {
		n, ok := c.maxItems()
		if !ok {
			return
		}
		if n > 50 {
			c.fail(validationError("Value '%d' at 'maxItems' failed to satisfy constraint: Member must have value less than or equal to 50", n))
			return
		}
		list, next, err := h.eventInvoke.List(c.ctx, c.id.AccountID, c.region(), c.param("FunctionName"), c.r.URL.Query().Get("Marker"), n)
		if err != nil {
			c.fail(err)
			return
		}
		out := make([]*eventInvokeWire, 0, len(list))
		for _, x := range list {
			out = append(out, eventInvokeToWire(x))
		}
		resp := map[string]any{"FunctionEventInvokeConfigs": out}
		if next != "" {
			resp["NextMarker"] = next
		}
		c.json(200, resp)
	})
}

func validationError(format string, a ...any) error {
	return &control.Error{Code: "ValidationException", Status: 400, Message: "1 validation error detected: " + fmt.Sprintf(format, a...)}
}

// forgetEventInvokeConfigs removes the event invoke configs of a deleted
// function (every qualifier) or version, as Lambda does.
func (h *Handler) forgetEventInvokeConfigs(c *call, name, qualifier string) {
	if h.eventInvoke == nil {
		return
	}
	r, err := control.ParseRef(name)
	if err != nil {
		return
	}
	if qualifier == "" {
		qualifier = r.Qualifier
	}
	h.eventInvoke.Forget(c.ctx, c.id.AccountID, r.Name, qualifier)
}
