package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// Scenario is one registered measurement. Adding a scenario is adding one
// of these to registry; one that cannot be measured yet sets Pending and is
// listed as such in RESULTS.md (no numbers are made up).
type Scenario struct {
	Name    string
	Title   string
	Pending string // e.g. "needs VPC attachment"
	Quick   time.Duration
	Full    time.Duration
	Run     func(ctx context.Context, e *Env, r *Result) error
	Plot    func(dir string, r *Result) ([]string, error) // optional
	About   string                                        // one paragraph for RESULTS.md: what is measured, how
}

func (s Scenario) limit(quick bool) time.Duration {
	if quick {
		if s.Quick > 0 {
			return s.Quick
		}
		return 40 * time.Second
	}
	if s.Full > 0 {
		return s.Full
	}
	return 15 * time.Minute
}

// registry is every scenario, in run order.
var registry = []Scenario{
	coldScenario,
	phasesScenario,
	burstScenario,
	warmScenario,
	warmFloorScenario,
	mixedLoadScenario,
	egressScenario,
	memoryScenario,
	sharingScenario,
	vpcColdScenario,
	eniLimitScenario,
	addressesScenario,
	esmLatencyScenario,
	sqsScenario,
}

// Names lists the registered scenarios.
func Names() []string {
	out := make([]string, len(registry))
	for i, s := range registry {
		out[i] = s.Name
	}
	return out
}

func selectScenarios(names []string) ([]Scenario, error) {
	if len(names) == 0 {
		return registry, nil
	}
	var out []Scenario
	for _, n := range names {
		found := false
		for _, s := range registry {
			if s.Name == n {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q: choose from %s", n, strings.Join(Names(), ", "))
		}
	}
	return out, nil
}

func oneLine(r *Result) string {
	var parts []string
	for _, s := range r.Series {
		if len(s.Samples) > 1 {
			parts = append(parts, fmt.Sprintf("%s p50 %.2f %s (n=%d)", s.Name, Quantile(s.Samples, 0.5), s.Unit, len(s.Samples)))
		}
		if len(parts) >= 3 {
			break
		}
	}
	for _, v := range r.Values {
		if len(parts) >= 5 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f %s", v.Name, v.Value, v.Unit))
	}
	if r.Error != "" {
		parts = append(parts, "error: "+r.Error)
	}
	return strings.Join(parts, "; ")
}

// pick returns quick or full.
func pick[T any](e *Env, quick, full T) T {
	if e.Quick {
		return quick
	}
	return full
}

// progress logs a progress line at most every 2 seconds.
type progress struct {
	e     *Env
	what  string
	total int
	last  time.Time
}

func (p *progress) step(done int) {
	if time.Since(p.last) < 2*time.Second && done < p.total {
		return
	}
	p.last = time.Now()
	p.e.Log.Info("bench: progress", "step", p.what, "done", done, "of", p.total)
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }
