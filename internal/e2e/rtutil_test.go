package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Helpers for the managed-runtime and layer tests. They take the calling
// (sub)test's t, so that parallel subtests sharing one server report their
// own failures.

// zipOf builds a zip from name -> content; names ending in "*" are written
// without the star and with mode 0755.
func zipOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		mode := os.FileMode(0o644)
		name := n
		if strings.HasSuffix(n, "*") {
			name, mode = strings.TrimSuffix(n, "*"), 0o755
		}
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipFileOf writes zipOf(files) to a temporary file and returns its path.
func zipFileOf(t testing.TB, files map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pkg.zip")
	if err := os.WriteFile(p, zipOf(t, files), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// awsCLI runs /usr/bin/aws against e's server and decodes its JSON output
// into v (if non-nil); it fails t on a non-zero exit.
func awsCLI(t testing.TB, e *env, v any, args ...string) {
	t.Helper()
	out, errOut, code := awsCLIRaw(t, e, args...)
	if code != 0 {
		t.Fatalf("aws %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if v != nil && strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("aws %s: decode %q: %v", strings.Join(args, " "), out, err)
		}
	}
}

func awsCLIRaw(t testing.TB, e *env, args ...string) (string, string, int) {
	t.Helper()
	full := append([]string{"--profile", "lambdaplane", "--region", "us-east-1", "--endpoint-url", e.srv.Endpoint, "--output", "json", "--no-cli-pager"}, args...)
	cmd := exec.Command("/usr/bin/aws", full...)
	cmd.Env = append(os.Environ(),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(e.data, "credentials"),
		"AWS_CONFIG_FILE="+filepath.Join(e.data, "config"),
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return stdout.String(), stderr.String(), ee.ExitCode()
		}
		t.Fatalf("run aws: %v", err)
	}
	return stdout.String(), stderr.String(), 0
}

// invokeResult is one invocation's outcome as a user sees it.
type invokeResult struct {
	Payload       map[string]any
	Raw           string
	FunctionError string
	Log           string
}

// cliInvoke invokes with `aws lambda invoke --log-type Tail`.
func cliInvoke(t testing.TB, e *env, name, payload string) invokeResult {
	t.Helper()
	outFile := filepath.Join(t.TempDir(), "out.json")
	var meta struct {
		StatusCode    int
		FunctionError string
		LogResult     string
	}
	awsCLI(t, e, &meta, "lambda", "invoke", "--function-name", name, "--payload", payload,
		"--cli-binary-format", "raw-in-base64-out", "--log-type", "Tail", outFile)
	if meta.StatusCode != 200 {
		t.Fatalf("invoke %s: status %d", name, meta.StatusCode)
	}
	raw, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	logText, _ := base64.StdEncoding.DecodeString(meta.LogResult)
	r := invokeResult{Raw: string(raw), FunctionError: meta.FunctionError, Log: string(logText)}
	_ = json.Unmarshal(raw, &r.Payload)
	return r
}

// sdkInvoke invokes through the SDK with LogType Tail.
func sdkInvoke(t testing.TB, e *env, name, payload string) invokeResult {
	t.Helper()
	out, err := e.lambda.Invoke(context.Background(), &lambda.InvokeInput{
		FunctionName: aws.String(name), Payload: []byte(payload), LogType: types.LogTypeTail,
	})
	if err != nil {
		t.Fatalf("invoke %s: %v", name, err)
	}
	logText, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	r := invokeResult{Raw: string(out.Payload), FunctionError: aws.ToString(out.FunctionError), Log: string(logText)}
	_ = json.Unmarshal(out.Payload, &r.Payload)
	return r
}

// createFn creates a function through the SDK.
func createFn(t testing.TB, e *env, name, runtime, handler string, zip []byte, mutate ...func(*lambda.CreateFunctionInput)) {
	t.Helper()
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.Runtime(runtime), Handler: aws.String(handler),
		Role: aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/fn"),
		Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(5),
	}
	for _, m := range mutate {
		m(in)
	}
	if _, err := e.lambda.CreateFunction(context.Background(), in); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
