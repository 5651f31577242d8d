package lambdamore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

func sha256b64(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// download GETs a URL with no signing; it returns the status and body.
func download(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestCodeLocationDownload: GetFunction's Code.Location and
// GetLayerVersion's Content.Location are presigned URLs that serve the zip
// whose SHA-256 is CodeSha256 to an unsigned GET (Go and curl), also after
// UpdateFunctionCode; an altered URL gets SignatureDoesNotMatch and an
// expired one AccessDenied "Request has expired", S3-style XML, 403.
func TestCodeLocationDownload(t *testing.T) {
	const ttl = 4 * time.Second
	e := harness.Start(t, func(c *server.Config) { c.CodeURLTTL = ttl })
	ctx := context.Background()
	zip1 := harness.Zip(t, map[string]string{"app.py": "def handler(e, c):\n    return 1\n"})
	e.CreateFunction("codefn", "python3.11", "app.handler", zip1)
	got, err := e.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("codefn")})
	if err != nil {
		t.Fatal(err)
	}
	loc := aws.ToString(got.Code.Location)
	issued := time.Now()
	if !strings.HasPrefix(loc, e.Srv.Endpoint+"/") || aws.ToString(got.Code.RepositoryType) != "S3" {
		t.Fatalf("Code = %+v, want a URL on %s", got.Code, e.Srv.Endpoint)
	}
	status, body := download(t, loc)
	if status != 200 || sha256b64(body) != aws.ToString(got.Configuration.CodeSha256) || string(body) != string(zip1) {
		t.Fatalf("download: %d, %d bytes with SHA-256 %s, want CodeSha256 %s", status, len(body), sha256b64(body), aws.ToString(got.Configuration.CodeSha256))
	}
	// curl, from the CLI's get-function.
	var cli struct{ Code struct{ Location string } }
	e.MustCLI(&cli, "lambda", "get-function", "--function-name", "codefn")
	dst := filepath.Join(t.TempDir(), "code.zip")
	if out, err := exec.Command("curl", "-sS", "-f", "-o", dst, cli.Code.Location).CombinedOutput(); err != nil {
		t.Fatalf("curl %s: %v %s", cli.Code.Location, err, out)
	}
	if b, _ := os.ReadFile(dst); sha256b64(b) != aws.ToString(got.Configuration.CodeSha256) {
		t.Fatal("curl downloaded a zip with another SHA-256")
	}

	// Tampered: another key, another expiry, another signature.
	u, _ := url.Parse(loc)
	for _, change := range []func(q url.Values){
		func(q url.Values) { q.Set("key", strings.Repeat("0", 64)) },
		func(q url.Values) { q.Set("X-Lp-Expires", "9999999999") },
		func(q url.Values) { s := q.Get("X-Lp-Signature"); q.Set("X-Lp-Signature", "0"+s[1:]) },
		func(q url.Values) { q.Set("kind", "layer") },
	} {
		v := *u
		q := v.Query()
		change(q)
		v.RawQuery = q.Encode()
		status, body := download(t, v.String())
		if status != 403 || !strings.Contains(string(body), "<Code>SignatureDoesNotMatch</Code>") {
			t.Fatalf("tampered URL %s: %d %s", v.String(), status, body)
		}
	}

	// UpdateFunctionCode: the new package.
	zip2 := harness.Zip(t, map[string]string{"app.py": "def handler(e, c):\n    return 2\n"})
	up, err := e.Lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("codefn"), ZipFile: zip2})
	if err != nil {
		t.Fatal(err)
	}
	got2, err := e.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("codefn")})
	if err != nil {
		t.Fatal(err)
	}
	if status, body := download(t, aws.ToString(got2.Code.Location)); status != 200 || sha256b64(body) != aws.ToString(up.CodeSha256) || string(body) != string(zip2) {
		t.Fatalf("download after UpdateFunctionCode: %d, SHA-256 %s, want %s", status, sha256b64(body), aws.ToString(up.CodeSha256))
	}

	// A layer version's Content.Location.
	layerZip := harness.Zip(t, map[string]string{"python/shared.py": "X = 1\n"})
	pub, err := e.Lambda.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("codelayer"), Content: &types.LayerVersionContentInput{ZipFile: layerZip}})
	if err != nil {
		t.Fatal(err)
	}
	lv, err := e.Lambda.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("codelayer"), VersionNumber: aws.Int64(pub.Version)})
	if err != nil {
		t.Fatal(err)
	}
	if status, body := download(t, aws.ToString(lv.Content.Location)); status != 200 || sha256b64(body) != aws.ToString(lv.Content.CodeSha256) {
		t.Fatalf("layer download: %d, SHA-256 %s, want %s", status, sha256b64(body), aws.ToString(lv.Content.CodeSha256))
	}

	// Expired.
	time.Sleep(time.Until(issued.Add(ttl + time.Second)))
	status, body = download(t, loc)
	if status != 403 || !strings.Contains(string(body), "<Code>AccessDenied</Code>") || !strings.Contains(string(body), "<Message>Request has expired</Message>") {
		t.Fatalf("expired URL: %d %s", status, body)
	}
}
