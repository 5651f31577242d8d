package invoke

import (
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/prometheus/client_golang/prometheus"
)

// functionSeries counts the series of reg that name account/function.
func functionSeries(t *testing.T, reg *prometheus.Registry, account, function string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			var a, f string
			for _, lp := range m.Label {
				switch lp.GetName() {
				case "account":
					a = lp.GetValue()
				case "function":
					f = lp.GetValue()
				}
			}
			if a == account && f == function {
				n++
			}
		}
	}
	return n
}

// TestForgetFunction: a deleted function's series are removed, a late
// record of an invocation that was running does not bring them back, and
// a function created again under the name records again.
func TestForgetFunction(t *testing.T) {
	reg := prometheus.NewRegistry()
	exists := map[string]bool{"f": true, "g": true}
	m := newMetrics(reg, func(_, function string) bool { return exists[function] })
	gone := &control.Config{AccountID: "111111111111", FunctionName: "f"}
	kept := &control.Config{AccountID: "111111111111", FunctionName: "g"}
	record := func(c *control.Config) {
		m.invocation(c, RequestResponse, "error")
		m.throttle(c)
		m.enqueue(c)
		m.observeInvoke(c, time.Millisecond, false)
		m.observeColdStart(c, []Phase{{Name: "runtime_init", D: time.Millisecond}})
	}
	record(gone)
	record(kept)
	if n := functionSeries(t, reg, "111111111111", "f"); n != 7 {
		t.Fatalf("%d series for f, want 7 (one per per-function metric)", n)
	}
	exists["f"] = false // deleted; then the series go
	m.forget("111111111111", "f")
	if n := functionSeries(t, reg, "111111111111", "f"); n != 0 {
		t.Fatalf("%d series for the deleted function remain", n)
	}
	record(gone) // an invocation that was running when the function was deleted
	if n := functionSeries(t, reg, "111111111111", "f"); n != 0 {
		t.Fatalf("a late record brought back %d series of the deleted function", n)
	}
	if n := functionSeries(t, reg, "111111111111", "g"); n != 7 {
		t.Fatalf("%d series for the other function, want 7", n)
	}
	exists["f"] = true // created again
	record(gone)
	if n := functionSeries(t, reg, "111111111111", "f"); n != 7 {
		t.Fatalf("%d series for the function created again, want 7", n)
	}
}
