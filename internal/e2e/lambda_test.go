package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

// TestCLIFunctionLifecycle drives the whole function lifecycle with
// Debian's /usr/bin/aws, as a user would.
func TestCLIFunctionLifecycle(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	zipPath := filepath.Join(t.TempDir(), "hello.zip")
	if err := os.WriteFile(zipPath, probeZip, 0o644); err != nil {
		t.Fatal(err)
	}
	role := "arn:aws:iam::" + e.srv.Account.ID + ":role/r"
	var created map[string]any
	e.mustCLI(&created, "lambda", "create-function", "--function-name", "hello", "--runtime", "provided.al2023",
		"--handler", "bootstrap", "--role", role, "--zip-file", "fileb://"+zipPath,
		"--environment", "Variables={GREETING=hi}", "--description", "first")
	if created["State"] != "Active" || created["FunctionArn"] != "arn:aws:lambda:us-east-1:"+e.srv.Account.ID+":function:hello" {
		t.Fatalf("create-function answered %v", created)
	}
	if created["CodeSize"].(float64) != float64(len(probeZip)) {
		t.Errorf("CodeSize %v, want %d", created["CodeSize"], len(probeZip))
	}
	e.mustCLI(nil, "lambda", "wait", "function-active-v2", "--function-name", "hello")

	// Invoke with Tail logs.
	outFile := filepath.Join(t.TempDir(), "out.json")
	var inv map[string]any
	e.mustCLI(&inv, "lambda", "invoke", "--function-name", "hello", "--payload", `{"name":"x","print":"printed-by-handler"}`,
		"--cli-binary-format", "raw-in-base64-out", "--log-type", "Tail", outFile)
	if inv["StatusCode"].(float64) != 200 || inv["ExecutedVersion"] != "$LATEST" {
		t.Fatalf("invoke answered %v", inv)
	}
	logText, _ := base64.StdEncoding.DecodeString(inv["LogResult"].(string))
	for _, want := range []string{"START RequestId:", "printed-by-handler", "END RequestId:", "REPORT RequestId:", "Init Duration:", "Max Memory Used:"} {
		if !bytes.Contains(logText, []byte(want)) {
			t.Errorf("tail log lacks %q:\n%s", want, logText)
		}
	}
	body, _ := os.ReadFile(outFile)
	var payload map[string]any
	if err := json.Unmarshal(body, &payload); err != nil || payload["hello"] != "x" {
		t.Fatalf("payload %s (%v)", body, err)
	}

	// Async and dry-run.
	e.mustCLI(&inv, "lambda", "invoke", "--function-name", "hello", "--invocation-type", "Event", "--payload", `{"name":"async-marker"}`,
		"--cli-binary-format", "raw-in-base64-out", outFile)
	if inv["StatusCode"].(float64) != 202 {
		t.Fatalf("Event invoke: %v", inv)
	}
	e.mustCLI(&inv, "lambda", "invoke", "--function-name", "hello", "--invocation-type", "DryRun", outFile)
	if inv["StatusCode"].(float64) != 204 {
		t.Fatalf("DryRun invoke: %v", inv)
	}

	// Configuration update with the RevisionId precondition.
	var cfg map[string]any
	e.mustCLI(&cfg, "lambda", "get-function-configuration", "--function-name", "hello")
	_, errOut, code := e.cli("lambda", "update-function-configuration", "--function-name", "hello", "--timeout", "5", "--revision-id", "wrong")
	if code == 0 || !strings.Contains(errOut, "PreconditionFailedException") {
		t.Fatalf("stale RevisionId: exit %d %s", code, errOut)
	}
	e.mustCLI(&cfg, "lambda", "update-function-configuration", "--function-name", "hello", "--timeout", "5", "--memory-size", "256",
		"--revision-id", cfg["RevisionId"].(string))
	if cfg["Timeout"].(float64) != 5 || cfg["MemorySize"].(float64) != 256 {
		t.Fatalf("update-function-configuration: %v", cfg)
	}
	e.mustCLI(nil, "lambda", "wait", "function-updated-v2", "--function-name", "hello")
	e.mustCLI(&cfg, "lambda", "update-function-code", "--function-name", "hello", "--zip-file", "fileb://"+zipPath, "--publish")
	if cfg["Version"] != "1" {
		t.Fatalf("update-function-code --publish: %v", cfg)
	}

	// Versions and aliases.
	var alias map[string]any
	e.mustCLI(&alias, "lambda", "create-alias", "--function-name", "hello", "--name", "live", "--function-version", "1")
	if alias["AliasArn"] != "arn:aws:lambda:us-east-1:"+e.srv.Account.ID+":function:hello:live" {
		t.Fatalf("create-alias: %v", alias)
	}
	e.mustCLI(&inv, "lambda", "invoke", "--function-name", "hello", "--qualifier", "live", "--payload", `{"name":"v"}`,
		"--cli-binary-format", "raw-in-base64-out", outFile)
	if inv["ExecutedVersion"] != "1" {
		t.Fatalf("invoke via alias executed %v", inv["ExecutedVersion"])
	}
	var versions struct{ Versions []map[string]any }
	e.mustCLI(&versions, "lambda", "list-versions-by-function", "--function-name", "hello")
	if len(versions.Versions) != 2 || versions.Versions[1]["Version"] != "1" {
		t.Fatalf("list-versions-by-function: %v", versions)
	}
	var aliases struct{ Aliases []map[string]any }
	e.mustCLI(&aliases, "lambda", "list-aliases", "--function-name", "hello")
	if len(aliases.Aliases) != 1 {
		t.Fatalf("list-aliases: %v", aliases)
	}
	var list struct{ Functions []map[string]any }
	e.mustCLI(&list, "lambda", "list-functions")
	if len(list.Functions) != 1 || list.Functions[0]["FunctionName"] != "hello" {
		t.Fatalf("list-functions: %v", list)
	}
	var settings map[string]map[string]any
	e.mustCLI(&settings, "lambda", "get-account-settings")
	if settings["AccountUsage"]["FunctionCount"].(float64) != 1 {
		t.Fatalf("get-account-settings: %v", settings)
	}

	// The lambdaplane logs command sees the invocations (including the async one).
	eventually(t, 15e9, "async invoke in the logs", func() bool {
		out, _ := exec.Command(filepath.Join(binDir, "lambdaplane"), "logs", "hello", "--data", e.data).Output()
		return bytes.Contains(out, []byte("START RequestId")) && bytes.Contains(out, []byte("printed-by-handler")) &&
			bytes.Count(out, []byte("REPORT RequestId")) >= 3
	})

	e.mustCLI(nil, "lambda", "delete-alias", "--function-name", "hello", "--name", "live")
	e.mustCLI(nil, "lambda", "delete-function", "--function-name", "hello")
	_, errOut, code = e.cli("lambda", "get-function", "--function-name", "hello")
	if code == 0 || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Fatalf("get after delete: exit %d: %s", code, errOut)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestErrors checks the Lambda error codes of bad requests, through the SDK.
func TestErrors(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	e.createProbe("errs")
	role := aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/r")
	base := func(mut func(*lambda.CreateFunctionInput)) *lambda.CreateFunctionInput {
		in := &lambda.CreateFunctionInput{FunctionName: aws.String("e2"), Runtime: "provided.al2023", Handler: aws.String("bootstrap"), Role: role, Code: &types.FunctionCode{ZipFile: probeZip}}
		mut(in)
		return in
	}
	cases := []struct {
		name string
		call func() error
		code string
	}{
		{"unknown key", func() error {
			_, err := e.lambdaFor("AKIAUNKNOWNUNKNOWN12", "x").ListFunctions(ctx, &lambda.ListFunctionsInput{})
			return err
		}, "UnrecognizedClientException"},
		{"bad secret", func() error {
			_, err := e.lambdaFor(e.srv.Account.Keys[0].ID, "wrong-secret").ListFunctions(ctx, &lambda.ListFunctionsInput{})
			return err
		}, "InvalidSignatureException"},
		{"missing function", func() error {
			_, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("nope")})
			return err
		}, "ResourceNotFoundException"},
		{"duplicate", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) { in.FunctionName = aws.String("errs") }))
			return err
		}, "ResourceConflictException"},
		{"memory too small", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(100) }))
			return err
		}, "ValidationException"},
		{"timeout too long", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(901) }))
			return err
		}, "ValidationException"},
		{"bad role", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) { in.Role = aws.String("not-a-role") }))
			return err
		}, "ValidationException"},
		{"s3 code", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) {
				in.Code = &types.FunctionCode{S3Bucket: aws.String("b"), S3Key: aws.String("k")}
			}))
			return err
		}, "InvalidParameterValueException"},
		{"image package", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) {
				in.PackageType = types.PackageTypeImage
				in.Code = &types.FunctionCode{ImageUri: aws.String("x")}
			}))
			return err
		}, "InvalidParameterValueException"},
		{"unknown runtime", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) { in.Runtime = "python2.7" }))
			return err
		}, "InvalidParameterValueException"},
		{"reserved env", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) {
				in.Environment = &types.Environment{Variables: map[string]string{"AWS_REGION": "x"}}
			}))
			return err
		}, "InvalidParameterValueException"},
		{"env too large", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) {
				in.Environment = &types.Environment{Variables: map[string]string{"BIG": strings.Repeat("x", 5000)}}
			}))
			return err
		}, "InvalidParameterValueException"},
		{"not a zip", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) { in.Code = &types.FunctionCode{ZipFile: []byte("not a zip")} }))
			return err
		}, "InvalidParameterValueException"},
		{"bad name", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) { in.FunctionName = aws.String("bad name!") }))
			return err
		}, "ValidationException"},
		{"arm64", func() error {
			_, err := e.lambda.CreateFunction(ctx, base(func(in *lambda.CreateFunctionInput) { in.Architectures = []types.Architecture{types.ArchitectureArm64} }))
			return err
		}, "InvalidParameterValueException"},
		{"sync payload too large", func() error {
			_, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("errs"), Payload: []byte(`"` + strings.Repeat("x", 6*1024*1024) + `"`)})
			return err
		}, "RequestTooLargeException"},
		{"async payload too large", func() error {
			_, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("errs"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`"` + strings.Repeat("x", 1024*1024+10) + `"`)})
			return err
		}, "RequestTooLargeException"},
		{"payload not json", func() error {
			_, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("errs"), Payload: []byte(`{not json`)})
			return err
		}, "InvalidRequestContentException"},
		{"missing version", func() error {
			_, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("errs"), Qualifier: aws.String("7")})
			return err
		}, "ResourceNotFoundException"},
		{"revision mismatch", func() error {
			_, err := e.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("errs"), Timeout: aws.Int32(4), RevisionId: aws.String("stale")})
			return err
		}, "PreconditionFailedException"},
		{"alias to missing version", func() error {
			_, err := e.lambda.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("errs"), Name: aws.String("a"), FunctionVersion: aws.String("9")})
			return err
		}, "ResourceNotFoundException"},
		{"other account's ARN", func() error {
			_, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:111111111111:function:errs")})
			return err
		}, "AccessDeniedException"}, // no resource-based policy grants it, as on AWS
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if got := apiCode(err); got != c.code {
				t.Fatalf("error %v: code %q, want %q", err, got, c.code)
			}
		})
	}

	// Reserved concurrency 0 throttles every invoke with its Reason.
	if _, err := e.lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("errs"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	_, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("errs"), Payload: []byte(`{}`)})
	var tmr *types.TooManyRequestsException
	if !errors.As(err, &tmr) || tmr.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
		t.Fatalf("invoke with reserved concurrency 0: %v", err)
	}
	if _, err := e.lambda.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("errs")}); err != nil {
		t.Fatal(err)
	}
	if _, out := e.invokeJSON("errs", map[string]any{"name": "ok"}); out.FunctionError != nil {
		t.Fatalf("invoke after DeleteFunctionConcurrency: %v", *out.FunctionError)
	}
}
