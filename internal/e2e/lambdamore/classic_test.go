package lambdamore

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/logs"
)

// countLog counts the stored log records of fn containing marker.
func countLog(t *testing.T, e *harness.Env, fn, marker string) int {
	t.Helper()
	n := 0
	if err := e.Srv.Logs().Follow(context.Background(), e.Srv.Account.ID, fn, 0, false, func(r logs.Record) error {
		n += strings.Count(string(r.Text), marker)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// loopPy invokes its own function asynchronously through the platform
// endpoint (boto3 passes _X_AMZN_TRACE_ID on as X-Amzn-Trace-Id).
const loopPy = `import os, boto3
def handler(event, context):
    print("loop-hop", os.environ.get("_X_AMZN_TRACE_ID", ""))
    boto3.client("lambda", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).invoke(
        FunctionName=context.function_name, InvocationType="Event", Payload=b"{}")
    return "ok"
`

// TestClassicOperations: InvokeAsync queues an event (202) that runs; a
// function that invokes itself asynchronously is stopped after 16 loops
// (RecursiveLoop Terminate, the default; Get/PutFunctionRecursionConfig);
// runtime management configs are stored, validated and shown in
// GetFunctionConfiguration; code signing configs are stored and, with
// Enforce, unsigned code is refused with CodeVerificationFailedException
// (from the SDK and Debian's awscli).
func TestClassicOperations(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()

	// InvokeAsync.
	e.CreateProbe("async1")
	ia, err := e.Lambda.InvokeAsync(ctx, &lambda.InvokeAsyncInput{FunctionName: aws.String("async1"), InvokeArgs: bytes.NewReader([]byte(`{"print":"invoke-async-ran"}`))})
	if err != nil || ia.Status != 202 {
		t.Fatalf("InvokeAsync = %+v, %v", ia, err)
	}
	harness.Eventually(t, 20*time.Second, "the InvokeAsync event to run", func() bool { return countLog(t, e, "async1", "invoke-async-ran") == 1 })
	if _, err := e.Lambda.InvokeAsync(ctx, &lambda.InvokeAsyncInput{FunctionName: aws.String("async1"), InvokeArgs: strings.NewReader("not json")}); errCode(err) != "InvalidRequestContentException" {
		t.Fatalf("InvokeAsync with a bad payload: %v", err)
	}

	// Recursion: the loop stops after 16 invocations.
	role := makeRole(t, e, "looper", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"*"}]}`)
	e.CreateFunction("loop", "python3.11", "app.handler", harness.Zip(t, map[string]string{"app.py": loopPy}), func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String(role)
		in.Timeout = aws.Int32(20)
		in.MemorySize = aws.Int32(256)
	})
	rc, err := e.Lambda.GetFunctionRecursionConfig(ctx, &lambda.GetFunctionRecursionConfigInput{FunctionName: aws.String("loop")})
	if err != nil || rc.RecursiveLoop != types.RecursiveLoopTerminate {
		t.Fatalf("GetFunctionRecursionConfig = %+v, %v", rc, err)
	}
	if _, err := e.Lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("loop"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 45*time.Second, "16 loop hops", func() bool { return countLog(t, e, "loop", "loop-hop") >= 16 })
	time.Sleep(1500 * time.Millisecond) // a 17th would have run by now
	if n := countLog(t, e, "loop", "loop-hop"); n != 16 {
		t.Fatalf("the loop ran %d times, want 16", n)
	}
	if _, err := e.Lambda.PutFunctionRecursionConfig(ctx, &lambda.PutFunctionRecursionConfigInput{FunctionName: aws.String("loop"), RecursiveLoop: types.RecursiveLoopAllow}); err != nil {
		t.Fatal(err)
	}
	if rc, _ := e.Lambda.GetFunctionRecursionConfig(ctx, &lambda.GetFunctionRecursionConfigInput{FunctionName: aws.String("loop")}); rc.RecursiveLoop != types.RecursiveLoopAllow {
		t.Fatalf("recursion after Put Allow = %s", rc.RecursiveLoop)
	}
	if _, err := e.Lambda.PutFunctionRecursionConfig(ctx, &lambda.PutFunctionRecursionConfigInput{FunctionName: aws.String("loop"), RecursiveLoop: "Sometimes"}); errCode(err) != "ValidationException" {
		t.Fatalf("RecursiveLoop Sometimes: %v", err)
	}

	// Runtime management.
	rm, err := e.Lambda.GetRuntimeManagementConfig(ctx, &lambda.GetRuntimeManagementConfigInput{FunctionName: aws.String("async1")})
	if err != nil || rm.UpdateRuntimeOn != types.UpdateRuntimeOnAuto {
		t.Fatalf("GetRuntimeManagementConfig = %+v, %v", rm, err)
	}
	fc, err := e.Lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("async1")})
	if err != nil || fc.RuntimeVersionConfig == nil || !strings.Contains(aws.ToString(fc.RuntimeVersionConfig.RuntimeVersionArn), "::runtime:") {
		t.Fatalf("RuntimeVersionConfig = %+v, %v", fc.RuntimeVersionConfig, err)
	}
	current := aws.ToString(fc.RuntimeVersionConfig.RuntimeVersionArn)
	if _, err := e.Lambda.PutRuntimeManagementConfig(ctx, &lambda.PutRuntimeManagementConfigInput{FunctionName: aws.String("async1"), UpdateRuntimeOn: types.UpdateRuntimeOnManual,
		RuntimeVersionArn: aws.String("arn:aws:lambda:us-east-1::runtime:0000")}); errCode(err) != "InvalidParameterValueException" {
		t.Fatalf("Manual with a version this host lacks: %v", err)
	}
	if _, err := e.Lambda.PutRuntimeManagementConfig(ctx, &lambda.PutRuntimeManagementConfigInput{FunctionName: aws.String("async1"), UpdateRuntimeOn: types.UpdateRuntimeOnManual, RuntimeVersionArn: aws.String(current)}); err != nil {
		t.Fatal(err)
	}
	rm, _ = e.Lambda.GetRuntimeManagementConfig(ctx, &lambda.GetRuntimeManagementConfigInput{FunctionName: aws.String("async1")})
	if rm.UpdateRuntimeOn != types.UpdateRuntimeOnManual || aws.ToString(rm.RuntimeVersionArn) != current {
		t.Fatalf("after Put Manual: %+v", rm)
	}
	gf, err := e.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("async1")})
	if err != nil || gf.Configuration.RuntimeVersionConfig == nil || aws.ToString(gf.Configuration.RuntimeVersionConfig.RuntimeVersionArn) != current {
		t.Fatalf("GetFunction RuntimeVersionConfig: %v", err)
	}

	// Code signing.
	profile := "arn:aws:signer:us-east-1:" + e.Srv.Account.ID + ":/signing-profiles/prof/abcdef1234"
	mk := func(policy types.CodeSigningPolicy) string {
		out, err := e.Lambda.CreateCodeSigningConfig(ctx, &lambda.CreateCodeSigningConfigInput{
			AllowedPublishers:   &types.AllowedPublishers{SigningProfileVersionArns: []string{profile}},
			CodeSigningPolicies: &types.CodeSigningPolicies{UntrustedArtifactOnDeployment: policy}, Description: aws.String(string(policy)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.CodeSigningConfig.CodeSigningConfigArn)
	}
	warn, enforce := mk(types.CodeSigningPolicyWarn), mk(types.CodeSigningPolicyEnforce)
	create := func(name, csc string) error {
		_, err := e.Lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
			Role: aws.String(e.Role("probe")), Code: &types.FunctionCode{ZipFile: harness.ProbeZip}, CodeSigningConfigArn: aws.String(csc)})
		return err
	}
	if err := create("signed1", enforce); errCode(err) != "CodeVerificationFailedException" {
		t.Fatalf("create under Enforce: %v, want CodeVerificationFailedException", err)
	}
	if _, stderr, code := e.CLI("lambda", "create-function", "--function-name", "signed2", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", e.Role("probe"), "--zip-file", "fileb://"+writeTemp(t, harness.ProbeZip), "--code-signing-config-arn", enforce); code == 0 || !strings.Contains(stderr, "CodeVerificationFailedException") {
		t.Fatalf("aws lambda create-function under Enforce: exit %d: %s", code, stderr)
	}
	if err := create("signed1", warn); err != nil {
		t.Fatalf("create under Warn: %v", err)
	}
	fcsc, err := e.Lambda.GetFunctionCodeSigningConfig(ctx, &lambda.GetFunctionCodeSigningConfigInput{FunctionName: aws.String("signed1")})
	if err != nil || aws.ToString(fcsc.CodeSigningConfigArn) != warn {
		t.Fatalf("GetFunctionCodeSigningConfig = %+v, %v", fcsc, err)
	}
	byCSC, err := e.Lambda.ListFunctionsByCodeSigningConfig(ctx, &lambda.ListFunctionsByCodeSigningConfigInput{CodeSigningConfigArn: aws.String(warn)})
	if err != nil || len(byCSC.FunctionArns) != 1 || !strings.HasSuffix(byCSC.FunctionArns[0], ":function:signed1") {
		t.Fatalf("ListFunctionsByCodeSigningConfig = %+v, %v", byCSC, err)
	}
	if _, err := e.Lambda.DeleteCodeSigningConfig(ctx, &lambda.DeleteCodeSigningConfigInput{CodeSigningConfigArn: aws.String(warn)}); errCode(err) != "ResourceConflictException" {
		t.Fatalf("delete a config in use: %v", err)
	}
	if _, err := e.Lambda.PutFunctionCodeSigningConfig(ctx, &lambda.PutFunctionCodeSigningConfigInput{FunctionName: aws.String("signed1"), CodeSigningConfigArn: aws.String(enforce)}); err != nil {
		t.Fatal(err)
	}
	update := func() error {
		_, err := e.Lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("signed1"), ZipFile: harness.ProbeZip})
		return err
	}
	if err := update(); errCode(err) != "CodeVerificationFailedException" {
		t.Fatalf("update code under Enforce: %v", err)
	}
	if _, err := e.Lambda.DeleteFunctionCodeSigningConfig(ctx, &lambda.DeleteFunctionCodeSigningConfigInput{FunctionName: aws.String("signed1")}); err != nil {
		t.Fatal(err)
	}
	if err := update(); err != nil {
		t.Fatalf("update code with no code signing config: %v", err)
	}
	if _, err := e.Lambda.UpdateCodeSigningConfig(ctx, &lambda.UpdateCodeSigningConfigInput{CodeSigningConfigArn: aws.String(warn), Description: aws.String("changed")}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Lambda.GetCodeSigningConfig(ctx, &lambda.GetCodeSigningConfigInput{CodeSigningConfigArn: aws.String(warn)})
	if err != nil || aws.ToString(got.CodeSigningConfig.Description) != "changed" || got.CodeSigningConfig.CodeSigningPolicies.UntrustedArtifactOnDeployment != types.CodeSigningPolicyWarn {
		t.Fatalf("GetCodeSigningConfig = %+v, %v", got, err)
	}
	list, err := e.Lambda.ListCodeSigningConfigs(ctx, &lambda.ListCodeSigningConfigsInput{})
	if err != nil || len(list.CodeSigningConfigs) != 2 {
		t.Fatalf("ListCodeSigningConfigs = %d, %v", len(list.CodeSigningConfigs), err)
	}
	for _, arn := range []string{warn, enforce} {
		if _, err := e.Lambda.DeleteCodeSigningConfig(ctx, &lambda.DeleteCodeSigningConfigInput{CodeSigningConfigArn: aws.String(arn)}); err != nil {
			t.Fatalf("delete %s: %v", arn, err)
		}
	}
	if _, err := e.Lambda.GetCodeSigningConfig(ctx, &lambda.GetCodeSigningConfigInput{CodeSigningConfigArn: aws.String(warn)}); errCode(err) != "CodeSigningConfigNotFoundException" {
		t.Fatalf("get a deleted config: %v", err)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := t.TempDir() + "/code.zip"
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
