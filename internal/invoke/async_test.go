package invoke

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/nats-io/nats.go"
)

// TestSystemError: an Event invoke that failed for a reason of the
// platform's (a store or forwarding failure, a 5xx) goes back to the queue
// until its maximum age; a 4xx invocation error uses up its retries.
func TestSystemError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("invocation forwarded to host h3: no answer (%w)", nats.ErrTimeout), true},
		{errors.New("read execution role: nats: API error: code=503 err_code=10008"), true},
		{&control.Error{Code: "ServiceException", Status: 500}, true},
		{fmt.Errorf("wrapped: %w", &control.Error{Code: "ServiceException", Status: 500}), true},
		{&control.Error{Code: "InvalidParameterValueException", Status: 400}, false},
	} {
		if got := systemError(c.err); got != c.want {
			t.Errorf("systemError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
