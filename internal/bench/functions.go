package bench

import (
	"archive/zip"
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// The test functions' sources, embedded so that an installed binary can
// build them outside the repository too.
//
//go:embed testdata/hello/main.go testdata/tcpconnect/main.go
var functionSources embed.FS

// Function names (the directories under testdata).
const (
	FnHello      = "hello"
	FnTCPConnect = "tcpconnect"
)

// awsLambdaGo is the aws-lambda-go version used when the functions are built
// outside the repository.
const awsLambdaGo = "github.com/aws/aws-lambda-go@v1.55.1"

const modulePath = "github.com/lambdaplane/lambdaplane"

// ModuleRoot returns the root of the lambdaplane module containing dir, or
// "" when dir is not inside it.
func ModuleRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if strings.TrimSpace(strings.TrimPrefix(first, "module")) == modulePath {
				return d
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// goBuild runs go build with a bounded time, static linux/amd64 output.
func goBuild(ctx context.Context, dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (in %s): %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}

// buildFunctions compiles the test functions with the Go toolchain and
// returns their deployment packages (bootstrap at the root of the zip).
// Inside the repository they are built from internal/bench/testdata with
// the module's own dependencies; elsewhere from the embedded sources in a
// scratch module.
func buildFunctions(ctx context.Context, modRoot, work string) (map[string][]byte, error) {
	src := modRoot
	pkg := func(name string) string { return "./internal/bench/testdata/" + name }
	if src == "" {
		src = filepath.Join(work, "fnsrc")
		if err := writeScratchModule(ctx, src); err != nil {
			return nil, err
		}
		pkg = func(name string) string { return "./" + name }
	}
	out := map[string][]byte{}
	for _, name := range []string{FnHello, FnTCPConnect} {
		bin := filepath.Join(work, "fn", name, "bootstrap")
		if err := goBuild(ctx, src, "-trimpath", "-ldflags=-s -w", "-o", bin, pkg(name)); err != nil {
			return nil, err
		}
		z, err := zipBootstrap(bin)
		if err != nil {
			return nil, err
		}
		out[name] = z
	}
	return out, nil
}

func writeScratchModule(ctx context.Context, dir string) error {
	for _, name := range []string{FnHello, FnTCPConnect} {
		b, err := functionSources.ReadFile("testdata/" + name + "/main.go")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name, "main.go"), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module lambdaplane-bench-functions\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "get", awsLambdaGo)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("fetch %s for the test functions (run from the lambdaplane repository to build offline): %w\n%s", awsLambdaGo, err, out)
	}
	return nil
}

func zipBootstrap(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// lambdaTrust lets Lambda assume the bench's execution role.
const lambdaTrust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// ensureRole creates (or finds) the bench's execution role through the IAM
// API and returns its ARN; fallback when the server has no IAM API.
func ensureRole(ctx context.Context, c *iam.Client, fallback string) (arn string, created bool, err error) {
	out, err := c.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(benchRole), AssumeRolePolicyDocument: aws.String(lambdaTrust)})
	if err == nil {
		return aws.ToString(out.Role.Arn), true, nil
	}
	var exists *iamtypes.EntityAlreadyExistsException
	if errors.As(err, &exists) {
		got, gerr := c.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(benchRole)})
		if gerr != nil {
			return "", false, fmt.Errorf("read role %s: %w", benchRole, gerr)
		}
		return aws.ToString(got.Role.Arn), false, nil
	}
	return fallback, false, nil
}

const benchRole = "lambdaplane-bench"
