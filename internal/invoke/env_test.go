package invoke

import (
	"slices"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/runtimes"
)

// TestEnvironGOMAXPROCS: a Go function learns its CPU allotment through
// GOMAXPROCS unless its configuration sets the variable itself; reserved
// variables cannot be overridden.
func TestEnvironGOMAXPROCS(t *testing.T) {
	s := &Scheduler{}
	get := func(vars []string, k string) []string {
		var out []string
		for _, kv := range vars {
			if name, v, _ := strings.Cut(kv, "="); name == k {
				out = append(out, v)
			}
		}
		return out
	}
	cfg := &control.Config{FunctionName: "f", MemorySize: 128, Runtime: "provided.al2023", Environment: map[string]string{"A": "1"}}
	vars := s.environ(&env{cfg: cfg}, runtimes.Runtime{})
	if got := get(vars, "GOMAXPROCS"); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("GOMAXPROCS %v at 128 MB, want [1]", got)
	}
	cfg.Environment = map[string]string{"GOMAXPROCS": "7", "AWS_REGION": "evil"}
	cfg.Region = "us-east-1"
	vars = s.environ(&env{cfg: cfg}, runtimes.Runtime{})
	if got := get(vars, "GOMAXPROCS"); !slices.Equal(got, []string{"7"}) {
		t.Fatalf("GOMAXPROCS %v with the function's own 7, want [7]", got)
	}
	if got := get(vars, "AWS_REGION"); !slices.Equal(got, []string{"us-east-1"}) {
		t.Fatalf("AWS_REGION %v, want the platform's only", got)
	}
}
