package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// TestInvokeOutcomes covers the ways an invocation can end.
func TestInvokeOutcomes(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	e.createProbe("probe", func(in *lambda.CreateFunctionInput) {
		in.Timeout = aws.Int32(1)
		in.Environment = &types.Environment{Variables: map[string]string{"GREETING": "hi"}}
	})

	t.Run("warm reuse", func(t *testing.T) {
		a, _ := e.invokeJSON("probe", map[string]any{"name": "a"})
		b, _ := e.invokeJSON("probe", map[string]any{"name": "b"})
		if b["invocations"].(float64) != a["invocations"].(float64)+1 {
			t.Fatalf("second invoke did not reuse the environment: %v then %v", a, b)
		}
	})
	t.Run("environment", func(t *testing.T) {
		m, out := e.invokeJSON("probe", map[string]any{"action": "env"})
		env := m["env"].(map[string]any)
		want := map[string]string{
			"GREETING": "hi", "AWS_LAMBDA_FUNCTION_NAME": "probe", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
			"AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_REGION": "us-east-1", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
			"LAMBDA_TASK_ROOT": "/var/task", "_HANDLER": "bootstrap", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
			"AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/probe", "TZ": ":UTC",
			"GOMAXPROCS": "1", // 128 MB is less than one vCPU
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s=%v, want %q", k, env[k], v)
			}
		}
		if !strings.Contains(fmt.Sprint(env["AWS_LAMBDA_LOG_STREAM_NAME"]), "[$LATEST]") {
			t.Errorf("log stream name %v", env["AWS_LAMBDA_LOG_STREAM_NAME"])
		}
		if dl := m["deadlineInMs"].(float64); dl <= 0 || dl > 1000 {
			t.Errorf("deadline in %v ms, want (0, 1000]", dl)
		}
		if aws.ToString(out.ExecutedVersion) != "$LATEST" {
			t.Errorf("X-Amz-Executed-Version %v", aws.ToString(out.ExecutedVersion))
		}
	})
	t.Run("handler error", func(t *testing.T) {
		m, out := e.invokeJSON("probe", map[string]any{"action": "error", "name": "boom"})
		if aws.ToString(out.FunctionError) != "Unhandled" || m["errorType"] != "customError" || m["errorMessage"] != "something went wrong: boom" {
			t.Fatalf("function error: %v %v", aws.ToString(out.FunctionError), m)
		}
	})
	t.Run("panic", func(t *testing.T) {
		m, out := e.invokeJSON("probe", map[string]any{"action": "panic"})
		if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(fmt.Sprint(m["errorMessage"]), "probe panicked") {
			t.Fatalf("panic: %v", m)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		m, out := e.invokeJSON("probe", map[string]any{"action": "sleep", "sleepMs": 3000})
		if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(fmt.Sprint(m["errorMessage"]), "Task timed out after 1.00 seconds") {
			t.Fatalf("timeout: %v", m)
		}
		// The environment was destroyed: the next invoke is a cold start that works.
		m, _ = e.invokeJSON("probe", map[string]any{"name": "after"})
		if m["invocations"].(float64) != 1 {
			t.Fatalf("environment survived its timeout: %v", m)
		}
	})
	t.Run("exit", func(t *testing.T) {
		m, out := e.invokeJSON("probe", map[string]any{"action": "exit"})
		if aws.ToString(out.FunctionError) != "Unhandled" || m["errorType"] != "Runtime.ExitError" || !strings.Contains(fmt.Sprint(m["errorMessage"]), "exit status 3") {
			t.Fatalf("exit: %v", m)
		}
	})
	t.Run("out of memory", func(t *testing.T) {
		// Its own function with room to fill 128 MB on a loaded machine
		// (probe's 1 s timeout came first in ci-like).
		e.createProbe("probe-oom", func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(15) })
		m, out := e.invokeJSON("probe-oom", map[string]any{"action": "oom", "mb": 400})
		if aws.ToString(out.FunctionError) != "Unhandled" || m["errorType"] != "Runtime.OutOfMemory" {
			t.Fatalf("oom: %v", m)
		}
	})
	t.Run("invalid entrypoint", func(t *testing.T) {
		zip, err := zipFiles(map[string]zipEntry{"README": {Data: []byte("no bootstrap here"), Mode: 0o644}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.lambda.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
			FunctionName: aws.String("nobootstrap"), Runtime: "provided.al2", Handler: aws.String("x"),
			Role: aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/r"), Code: &types.FunctionCode{ZipFile: zip},
		}); err != nil {
			t.Fatal(err)
		}
		m, out := e.invokeJSON("nobootstrap", map[string]any{})
		if aws.ToString(out.FunctionError) != "Unhandled" || m["errorType"] != "Runtime.InvalidEntrypoint" {
			t.Fatalf("missing bootstrap: %v", m)
		}
	})
	t.Run("code update retires environments", func(t *testing.T) {
		e.invokeJSON("probe", map[string]any{})
		if _, err := e.lambda.UpdateFunctionConfiguration(context.Background(), &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("probe"), Environment: &types.Environment{Variables: map[string]string{"GREETING": "changed"}},
		}); err != nil {
			t.Fatal(err)
		}
		m, _ := e.invokeJSON("probe", map[string]any{"action": "env"})
		if m["env"].(map[string]any)["GREETING"] != "changed" || m["invocations"].(float64) != 1 {
			t.Fatalf("update did not start a fresh environment: %v", m)
		}
	})
}

// TestAccountsIsolated: one account can never see, invoke or change
// another's functions unless a resource policy grants it: by ARN it is
// refused as on AWS (AccessDeniedException: no resource-based policy
// allows the action).
func TestAccountsIsolated(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	b, err := e.srv.Accounts().Create(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	lb := e.lambdaFor(b.Keys[0].ID, b.Keys[0].Secret)
	if _, err := e.srv.EnsureExecutionRole(ctx, b.ID, "r", false); err != nil {
		t.Fatal(err)
	}
	e.createProbe("shared-name")
	arnA := "arn:aws:lambda:us-east-1:" + e.srv.Account.ID + ":function:shared-name"
	if _, err := lb.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(arnA)}); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("B got A's function: %v", err)
	}
	if _, err := lb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arnA)}); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("B invoked A's function: %v", err)
	}
	if _, err := lb.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(arnA)}); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("B deleted A's function: %v", err)
	}
	l, err := lb.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil || len(l.Functions) != 0 {
		t.Fatalf("B lists %v (%v)", l, err)
	}
	// B may use the same name for its own function.
	if _, err := lb.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("shared-name"), Runtime: "provided.al2023",
		Handler: aws.String("bootstrap"), Role: aws.String("arn:aws:iam::" + b.ID + ":role/r"), Code: &types.FunctionCode{ZipFile: probeZip}}); err != nil {
		t.Fatal(err)
	}
	out, err := lb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("shared-name"), Payload: []byte(`{"action":"env"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(out.Payload, &m)
	if !strings.Contains(fmt.Sprint(m["arn"]), b.ID) {
		t.Fatalf("B's invoke ran as %v", m["arn"])
	}
	if _, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("shared-name")}); err != nil {
		t.Fatalf("A lost its function: %v", err)
	}
}

// TestSimultaneousFirstInvokes: 100 first invokes of 100 functions at once all succeed.
// Not parallel: it measures simultaneous cold starts.
func TestSimultaneousFirstInvokes(t *testing.T) {
	e := startServer(t, func(c *serverConfig) { c.PoolSize = 16 })
	const n = 100
	for i := 0; i < n; i++ {
		e.createProbe(fmt.Sprintf("burst-%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := e.lambda.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(fmt.Sprintf("burst-%d", i)), Payload: []byte(`{"name":"burst"}`)})
			if err == nil && out.FunctionError != nil {
				err = fmt.Errorf("function error %s: %s", *out.FunctionError, out.Payload)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
