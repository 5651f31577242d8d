package control

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/codepkg"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

const testAcct, otherAcct, testRegion = "123456789012", "210987654321", "us-east-1"

func newTestService(t *testing.T, limits codepkg.Limits) *Service {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s, err := New(ctx, Options{Store: st, DataDir: dir, CodeLimits: limits})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func testZip(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for n, c := range files {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(c))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func publish(t *testing.T, s *Service, acct, name string, files map[string]string) *LayerVersion {
	t.Helper()
	in := &PublishLayerInput{}
	in.Content = &struct {
		ZipFile             []byte  `json:"ZipFile"`
		S3Bucket            *string `json:"S3Bucket"`
		S3Key               *string `json:"S3Key"`
		S3ObjectVersion     *string `json:"S3ObjectVersion"`
		S3ObjectStorageMode *string `json:"S3ObjectStorageMode"`
	}{ZipFile: testZip(t, files)}
	v, err := s.PublishLayerVersion(context.Background(), acct, testRegion, name, in)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func fnCode(t *testing.T, s string) *CodeInput {
	return &CodeInput{ZipFile: testZip(t, map[string]string{"app.py": s})}
}

func errCode(err error) string {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

func TestLayerVersionsAndFunctions(t *testing.T) {
	s := newTestService(t, codepkg.Limits{MaxUnzipped: 1000})
	ctx := context.Background()
	a1 := publish(t, s, testAcct, "a", map[string]string{"x": strings.Repeat("a", 300)})
	a2 := publish(t, s, testAcct, "a", map[string]string{"x": "a2"})
	b1 := publish(t, s, testAcct, "b", map[string]string{"x": strings.Repeat("b", 300), "y": "b"})
	if a1.Version != 1 || a2.Version != 2 || b1.Version != 1 || a1.ARN() != "arn:aws:lambda:us-east-1:123456789012:layer:a:1" {
		t.Fatalf("versions %d %d %d %s", a1.Version, a2.Version, b1.Version, a1.ARN())
	}
	if err := s.DeleteLayerVersion(ctx, testAcct, testRegion, "a", "2"); err != nil {
		t.Fatal(err)
	}
	if a3 := publish(t, s, testAcct, "a", map[string]string{"x": "a3"}); a3.Version != 3 {
		t.Fatalf("version after delete = %d, want 3", a3.Version)
	}

	create := func(name string, body string, layers ...string) (*Config, error) {
		return s.CreateFunction(ctx, testAcct, testRegion, &CreateInput{
			FunctionName: name, Runtime: "python3.11", Role: "arn:aws:iam::123456789012:role/r", Handler: "app.handler",
			Code: fnCode(t, body), Layers: layers,
		})
	}
	cfg, err := create("f", "small", a1.ARN(), b1.ARN())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Layers) != 2 || cfg.Layers[0].Arn != a1.ARN() || cfg.Layers[1].CodeSize != b1.CodeSize || cfg.Layers[0].Key != a1.Key {
		t.Fatalf("layers %+v", cfg.Layers)
	}
	// Combined size: 300 + 301 + code within 1000; a bigger function is not.
	if _, err := create("g", strings.Repeat("c", 450), a1.ARN(), b1.ARN()); errCode(err) != "InvalidParameterValueException" ||
		!strings.Contains(err.Error(), "Function code combined with layers exceeds the maximum allowed size of 1000 bytes. The actual size is 1051 bytes.") {
		t.Fatalf("size limit on create: %v", err)
	}
	if _, err := s.UpdateCode(ctx, testAcct, testRegion, "f", &UpdateCodeInput{ZipFile: testZip(t, map[string]string{"app.py": strings.Repeat("c", 450)})}); errCode(err) != "InvalidParameterValueException" {
		t.Fatalf("size limit on code update: %v", err)
	}
	if _, err := create("h", strings.Repeat("c", 450)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateConfig(ctx, testAcct, testRegion, "h", &UpdateConfigInput{Layers: []string{a1.ARN(), b1.ARN()}}); errCode(err) != "InvalidParameterValueException" {
		t.Fatalf("size limit on config update: %v", err)
	}
	for what, tc := range map[string]struct {
		layers []string
		code   string
	}{
		"deleted":       {[]string{"arn:aws:lambda:us-east-1:123456789012:layer:a:2"}, "InvalidParameterValueException"},
		"other region":  {[]string{"arn:aws:lambda:eu-west-1:123456789012:layer:a:1"}, "InvalidParameterValueException"},
		"other account": {[]string{"arn:aws:lambda:us-east-1:" + otherAcct + ":layer:a:1"}, "AccessDeniedException"},
		"malformed":     {[]string{"arn:aws:lambda:us-east-1:123456789012:layer:a"}, "ValidationException"},
		"six":           {[]string{a1.ARN(), a1.ARN(), a1.ARN(), a1.ARN(), a1.ARN(), a1.ARN()}, "ValidationException"},
		"same layer":    {[]string{a1.ARN(), b1.ARN(), "arn:aws:lambda:us-east-1:123456789012:layer:a:3"}, "InvalidParameterValueException"},
	} {
		if _, err := create("bad", "x", tc.layers...); errCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", what, err, tc.code)
		}
	}

	// The merged /opt: b overrides a's x; built once, reused.
	dir, err := s.OptDir(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "x")); string(got) != strings.Repeat("b", 300) {
		t.Errorf("merged x = %q", got)
	}
	if !strings.HasPrefix(dir, filepath.Join(s.o.DataDir, "layers", "merged")) {
		t.Errorf("merged dir %s", dir)
	}
	// A deleted layer version keeps serving functions, also on a host
	// that has not unpacked it yet.
	if err := s.DeleteLayerVersion(ctx, testAcct, testRegion, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(s.o.DataDir, "layers")); err != nil {
		t.Fatal(err)
	}
	if dir2, err := s.OptDir(ctx, cfg); err != nil || dir2 != dir {
		t.Fatalf("OptDir after delete: %s %v", dir2, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "y")); string(got) != "b" {
		t.Errorf("rebuilt y = %q", got)
	}

	// Listing.
	ls, _, err := s.ListLayers(ctx, testAcct, testRegion, "", "", "", 0)
	if err != nil || len(ls) != 2 || ls[0].LayerName != "a" || ls[0].Latest.Version != 3 {
		t.Fatalf("list: %v %+v", err, ls)
	}
	if ls, _, _ := s.ListLayers(ctx, otherAcct, testRegion, "", "", "", 0); len(ls) != 0 {
		t.Errorf("another account sees %+v", ls)
	}
	vs, next, err := s.ListLayerVersions(ctx, testAcct, testRegion, "a", "", "", "", 0)
	if err != nil || len(vs) != 1 || vs[0].Version != 3 || next != "" {
		t.Fatalf("versions of a: %v %+v", err, vs)
	}
	if _, err := s.GetLayerVersion(ctx, testAcct, testRegion, "arn:aws:lambda:us-east-1:"+otherAcct+":layer:a", "3"); errCode(err) != "AccessDeniedException" {
		t.Errorf("get by another account's ARN: %v", err)
	}
	if _, err := s.GetLayerVersion(ctx, testAcct, testRegion, "a", "1"); errCode(err) != "ResourceNotFoundException" {
		t.Errorf("get deleted: %v", err)
	}
}
