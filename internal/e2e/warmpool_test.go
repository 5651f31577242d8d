package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// An update makes the function's idle environments useless for $LATEST:
// they go at once (not at the idle timeout), counted as superseded, and the
// next invokes run the new configuration.
func TestSupersededEnvironmentsGo(t *testing.T) {
	t.Parallel()
	e := startServer(t, func(c *serverConfig) { c.IdleTimeout = time.Hour })
	e.createProbe("p")
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.invokeJSON("p", map[string]any{"action": "sleep", "sleepMs": 500})
		}()
	}
	wg.Wait()
	eventually(t, 10*time.Second, "3 idle environments", func() bool {
		st := e.srv.Scheduler().Stats()
		return st.Environments == 3 && st.Idle == 3
	})
	if _, err := e.lambda.UpdateFunctionConfiguration(context.Background(), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("p"), Environment: &types.Environment{Variables: map[string]string{"VER": "2"}},
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the superseded environments to go", func() bool {
		return e.srv.Scheduler().Stats().Environments == 0
	})
	if n := metricValue(scrapeURL(t, e.srv.MetricsEndpoint), invoke.MetricEnvEvicted, map[string]string{"reason": "superseded"}); n != 3 {
		t.Errorf("superseded environments counted: %v, want 3", n)
	}
	out, _ := e.invokeJSON("p", map[string]any{"action": "env"})
	if env, _ := out["env"].(map[string]any); env == nil || env["VER"] != "2" {
		t.Errorf("the invoke after the update saw %v, want VER=2", out)
	}
	if st := e.srv.Scheduler().Stats(); st.Environments != 1 {
		t.Errorf("%d environments after one invoke, want 1", st.Environments)
	}
}

// Past the memory budget, idle environments are destroyed: with a budget
// smaller than one environment, none stays after its invoke.
func TestMemoryBudgetDestroysIdleEnvironments(t *testing.T) {
	t.Parallel()
	e := startServer(t, func(c *serverConfig) { c.EnvMemoryBudget = server.MemoryBudget{MB: 1}; c.IdleTimeout = time.Hour })
	e.createProbe("a")
	e.createProbe("b")
	e.invokeJSON("a", map[string]any{})
	e.invokeJSON("b", map[string]any{})
	eventually(t, 10*time.Second, "no environment over the budget", func() bool {
		return e.srv.Scheduler().Stats().Environments == 0
	})
	if n := metricValue(scrapeURL(t, e.srv.MetricsEndpoint), invoke.MetricEnvEvicted, map[string]string{"reason": "memory_budget"}); n != 2 {
		t.Errorf("environments destroyed over the budget: %v, want 2", n)
	}
	e.invokeJSON("a", map[string]any{}) // a cold start again
}
