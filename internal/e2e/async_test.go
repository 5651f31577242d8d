package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// TestAsyncRetries: an Event invocation whose function fails runs three
// times in all (the first try and two retries, with backoff) and then stops;
// one that succeeds runs once.
func TestAsyncRetries(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	e.createProbe("flaky")
	ctx := context.Background()
	for _, ev := range []string{`{"action":"error","name":"retry-me","print":"attempt-of-failing-event"}`, `{"name":"ok","print":"attempt-of-good-event"}`} {
		out, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("flaky"), InvocationType: types.InvocationTypeEvent, Payload: []byte(ev)})
		if err != nil || out.StatusCode != 202 {
			t.Fatalf("queue %s: %v", ev, err)
		}
	}
	logsOf := func() string {
		out, _ := exec.Command(filepath.Join(binDir, "lambdaplane"), "logs", "flaky", "--data", e.data).Output()
		return string(out)
	}
	eventually(t, 30*time.Second, "three attempts of the failing event", func() bool {
		return strings.Count(logsOf(), "attempt-of-failing-event") >= 3
	})
	// Past the backoff of a fourth attempt nothing more runs.
	time.Sleep(1500 * time.Millisecond)
	l := logsOf()
	if n := strings.Count(l, "attempt-of-failing-event"); n != 3 {
		t.Errorf("the failing event ran %d times, want 3 (the first try and two retries)", n)
	}
	if n := strings.Count(l, "attempt-of-good-event"); n != 1 {
		t.Errorf("the good event ran %d times, want 1", n)
	}
	if depth, err := e.srv.Scheduler().QueueDepth(ctx); err != nil || depth != 0 {
		t.Errorf("queue depth %d (%v) after all events settled", depth, err)
	}
}
