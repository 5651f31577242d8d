package lambdamore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// invokeTail invokes name:qualifier with event and returns the decoded
// payload and the log tail.
func invokeTail(t *testing.T, e *harness.Env, name, qualifier string, event any) (map[string]any, string) {
	t.Helper()
	b, _ := json.Marshal(event)
	in := &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b, LogType: types.LogTypeTail}
	if qualifier != "" {
		in.Qualifier = aws.String(qualifier)
	}
	out, err := e.Lambda.Invoke(context.Background(), in)
	if err != nil {
		t.Fatalf("invoke %s:%s: %v", name, qualifier, err)
	}
	var m map[string]any
	_ = json.Unmarshal(out.Payload, &m)
	tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	return m, string(tail)
}

func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestProvisionedConcurrency: a configuration on $LATEST is refused; on an
// alias it goes IN_PROGRESS then READY with that many environments
// initialized ahead (AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency),
// counted against the account's unreserved concurrency; the alias's first
// invoke has no Init Duration while an on-demand first invoke has one; an
// environment that dies is replaced; Delete releases them. Reports the
// provisioned vs warm invoke p50.
func TestProvisionedConcurrency(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	e.CreateProbe("pc")
	v, err := e.Lambda.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("pc")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lambda.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("pc"), Name: aws.String("live"), FunctionVersion: v.Version}); err != nil {
		t.Fatal(err)
	}
	before, err := e.Lambda.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lambda.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("$LATEST"), ProvisionedConcurrentExecutions: aws.Int32(1)}); errCode(err) != "InvalidParameterValueException" {
		t.Fatalf("on $LATEST: %v, want InvalidParameterValueException", err)
	}
	if _, err := e.Lambda.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("live")}); errCode(err) != "ProvisionedConcurrencyConfigNotFoundException" {
		t.Fatalf("get before put: %v", err)
	}
	put, err := e.Lambda.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("live"), ProvisionedConcurrentExecutions: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	if put.Status != types.ProvisionedConcurrencyStatusEnumInProgress || aws.ToInt32(put.RequestedProvisionedConcurrentExecutions) != 2 {
		t.Fatalf("put = %s %d", put.Status, aws.ToInt32(put.RequestedProvisionedConcurrentExecutions))
	}
	harness.Eventually(t, 30*time.Second, "provisioned concurrency READY", func() bool {
		g, err := e.Lambda.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("live")})
		if err != nil {
			t.Fatal(err)
		}
		if g.Status == types.ProvisionedConcurrencyStatusEnumFailed {
			t.Fatalf("FAILED: %s", aws.ToString(g.StatusReason))
		}
		return g.Status == types.ProvisionedConcurrencyStatusEnumReady && aws.ToInt32(g.AvailableProvisionedConcurrentExecutions) == 2
	})
	after, err := e.Lambda.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToInt32(after.AccountLimit.UnreservedConcurrentExecutions), aws.ToInt32(before.AccountLimit.UnreservedConcurrentExecutions)-2; got != want {
		t.Fatalf("UnreservedConcurrentExecutions = %d, want %d", got, want)
	}
	list, err := e.Lambda.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: aws.String("pc")})
	if err != nil || len(list.ProvisionedConcurrencyConfigs) != 1 || !strings.HasSuffix(aws.ToString(list.ProvisionedConcurrencyConfigs[0].FunctionArn), ":function:pc:live") {
		t.Fatalf("list = %+v, %v", list, err)
	}

	// The first invoke of the alias runs on a provisioned environment.
	res, tail := invokeTail(t, e, "pc", "live", map[string]any{"action": "env"})
	env, _ := res["env"].(map[string]any)
	if env["AWS_LAMBDA_INITIALIZATION_TYPE"] != "provisioned-concurrency" || strings.Contains(tail, "Init Duration") || !strings.Contains(tail, "REPORT RequestId") {
		t.Fatalf("provisioned invoke: init type %v, log tail:\n%s", env["AWS_LAMBDA_INITIALIZATION_TYPE"], tail)
	}
	res, tail = invokeTail(t, e, "pc", "", map[string]any{"action": "env"})
	env, _ = res["env"].(map[string]any)
	if env["AWS_LAMBDA_INITIALIZATION_TYPE"] != "on-demand" || !strings.Contains(tail, "Init Duration") {
		t.Fatalf("on-demand invoke: init type %v, log tail:\n%s", env["AWS_LAMBDA_INITIALIZATION_TYPE"], tail)
	}

	// One that dies is replaced.
	if _, err := e.Lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("pc"), Qualifier: aws.String("live"), Payload: []byte(`{"action":"exit"}`)}); err != nil {
		t.Fatal(err)
	}
	acct := e.Srv.Account.ID
	harness.Eventually(t, 30*time.Second, "the dead provisioned environment replaced", func() bool {
		ready, starting, _ := e.Srv.Scheduler().ProvisionedStatus(acct, "pc", *v.Version)
		return ready == 2 && starting == 0
	})
	for range 2 {
		if _, tail := invokeTail(t, e, "pc", "live", map[string]any{}); strings.Contains(tail, "Init Duration") {
			t.Fatalf("invoke after the replacement had an Init Duration:\n%s", tail)
		}
	}

	// Latency: provisioned vs warm on-demand, p50 of 100 each, alternating.
	var prov, warm []time.Duration
	for range 100 {
		for _, q := range []string{"live", "$LATEST"} {
			t0 := time.Now()
			if _, err := e.Lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("pc"), Qualifier: aws.String(q), Payload: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			if q == "live" {
				prov = append(prov, time.Since(t0))
			} else {
				warm = append(warm, time.Since(t0))
			}
		}
	}
	t.Logf("invoke latency p50: provisioned %v, warm on-demand %v (n=100 each)", p50(prov), p50(warm))

	if _, err := e.Lambda.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lambda.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("live")}); errCode(err) != "ProvisionedConcurrencyConfigNotFoundException" {
		t.Fatalf("get after delete: %v", err)
	}
	harness.Eventually(t, 10*time.Second, "provisioned environments released", func() bool {
		ready, starting, _ := e.Srv.Scheduler().ProvisionedStatus(acct, "pc", *v.Version)
		return ready == 0 && starting == 0
	})

	// Deleting the alias deletes its configuration, as on Lambda.
	if _, err := e.Lambda.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("live"), ProvisionedConcurrentExecutions: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lambda.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String("pc"), Name: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, "the deleted alias's configuration gone", func() bool {
		l, err := e.Lambda.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: aws.String("pc")})
		ready, starting, _ := e.Srv.Scheduler().ProvisionedStatus(acct, "pc", *v.Version)
		return err == nil && len(l.ProvisionedConcurrencyConfigs) == 0 && ready == 0 && starting == 0
	})
}
