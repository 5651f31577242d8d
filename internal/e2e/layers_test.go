package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// TestLayerAPI drives the layer operations through the SDK.
func TestLayerAPI(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	acct := e.srv.Account.ID
	zip1 := zipOf(t, map[string]string{"python/v.py": "V = 1\n"})
	zip2 := zipOf(t, map[string]string{"python/v.py": "V = 2\n"})

	p1, err := e.lambda.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{
		LayerName: aws.String("libs"), Content: &types.LayerVersionContentInput{ZipFile: zip1},
		Description: aws.String("first"), CompatibleRuntimes: []types.Runtime{"python3.11", "nodejs20.x"},
		CompatibleArchitectures: []types.Architecture{"x86_64"}, LicenseInfo: aws.String("MIT"),
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(zip1)
	layerArn := "arn:aws:lambda:us-east-1:" + acct + ":layer:libs"
	if p1.Version != 1 || aws.ToString(p1.LayerArn) != layerArn || aws.ToString(p1.LayerVersionArn) != layerArn+":1" ||
		aws.ToString(p1.Content.CodeSha256) != base64.StdEncoding.EncodeToString(sum[:]) || p1.Content.CodeSize != int64(len(zip1)) ||
		aws.ToString(p1.Content.Location) == "" || aws.ToString(p1.Description) != "first" || aws.ToString(p1.LicenseInfo) != "MIT" ||
		len(p1.CompatibleRuntimes) != 2 || len(p1.CompatibleArchitectures) != 1 {
		t.Fatalf("publish: %+v content %+v", p1, p1.Content)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000-0700", aws.ToString(p1.CreatedDate)); err != nil {
		t.Errorf("CreatedDate %q: %v", aws.ToString(p1.CreatedDate), err)
	}
	// An ARN works as the layer name; the second version is python-only.
	p2, err := e.lambda.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{
		LayerName: aws.String(layerArn), Content: &types.LayerVersionContentInput{ZipFile: zip2},
		CompatibleRuntimes: []types.Runtime{"python3.11"},
	})
	if err != nil || p2.Version != 2 {
		t.Fatalf("publish 2: %v %+v", err, p2)
	}

	g, err := e.lambda.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("libs"), VersionNumber: aws.Int64(1)})
	if err != nil || aws.ToString(g.LayerVersionArn) != layerArn+":1" || aws.ToString(g.Content.CodeSha256) != aws.ToString(p1.Content.CodeSha256) {
		t.Fatalf("get: %v %+v", err, g)
	}
	ga, err := e.lambda.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String(layerArn + ":2")})
	if err != nil || ga.Version != 2 || aws.ToString(ga.LayerArn) != layerArn {
		t.Fatalf("get by arn: %v %+v", err, ga)
	}

	l, err := e.lambda.ListLayers(ctx, &lambda.ListLayersInput{})
	if err != nil || len(l.Layers) != 1 || aws.ToString(l.Layers[0].LayerName) != "libs" || aws.ToString(l.Layers[0].LayerArn) != layerArn ||
		l.Layers[0].LatestMatchingVersion == nil || l.Layers[0].LatestMatchingVersion.Version != 2 {
		t.Fatalf("list layers: %v %+v", err, l)
	}
	l, err = e.lambda.ListLayers(ctx, &lambda.ListLayersInput{CompatibleRuntime: "nodejs20.x"})
	if err != nil || len(l.Layers) != 1 || l.Layers[0].LatestMatchingVersion.Version != 1 {
		t.Fatalf("list layers for nodejs20.x: %v %+v", err, l)
	}
	lv, err := e.lambda.ListLayerVersions(ctx, &lambda.ListLayerVersionsInput{LayerName: aws.String("libs"), MaxItems: aws.Int32(1)})
	if err != nil || len(lv.LayerVersions) != 1 || lv.LayerVersions[0].Version != 2 || aws.ToString(lv.NextMarker) == "" {
		t.Fatalf("list versions page 1: %v %+v", err, lv)
	}
	lv, err = e.lambda.ListLayerVersions(ctx, &lambda.ListLayerVersionsInput{LayerName: aws.String("libs"), Marker: lv.NextMarker})
	if err != nil || len(lv.LayerVersions) != 1 || lv.LayerVersions[0].Version != 1 || lv.NextMarker != nil ||
		aws.ToString(lv.LayerVersions[0].LayerVersionArn) != layerArn+":1" || aws.ToString(lv.LayerVersions[0].Description) != "first" {
		t.Fatalf("list versions page 2: %v %+v", err, lv)
	}

	// Delete: gone, numbers never reused.
	if _, err := e.lambda.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("libs"), VersionNumber: aws.Int64(2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lambda.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("libs"), VersionNumber: aws.Int64(2)}); apiCode(err) != "ResourceNotFoundException" {
		t.Fatalf("deleted version: %v", err)
	}
	if _, err := e.lambda.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("libs"), VersionNumber: aws.Int64(2)}); err != nil {
		t.Fatalf("deleting a deleted version again: %v", err)
	}
	p3, err := e.lambda.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("libs"), Content: &types.LayerVersionContentInput{ZipFile: zip2}})
	if err != nil || p3.Version != 3 {
		t.Fatalf("publish after delete: %v %+v", err, p3)
	}

	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			what string
			err  error
			code string
		}{}
		add := func(what, code string, err error) {
			cases = append(cases, struct {
				what string
				err  error
				code string
			}{what, err, code})
		}
		_, err := e.lambda.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("nope"), VersionNumber: aws.Int64(1)})
		add("get missing layer", "ResourceNotFoundException", err)
		_, err = e.lambda.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String(layerArn + ":99")})
		add("get missing version by arn", "ResourceNotFoundException", err)
		_, err = e.lambda.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("bad"), Content: &types.LayerVersionContentInput{ZipFile: []byte("not a zip")}})
		add("publish bad zip", "InvalidParameterValueException", err)
		_, err = e.lambda.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("bad.name"), Content: &types.LayerVersionContentInput{ZipFile: zip1}})
		add("publish bad name", "ValidationException", err)
		_, err = e.lambda.CreateFunction(ctx, fnInput(e, "six", []string{layerArn + ":1", layerArn + ":3", layerArn + ":1", layerArn + ":3", layerArn + ":1", layerArn + ":3"}))
		add("six layers", "ValidationException", err)
		_, err = e.lambda.CreateFunction(ctx, fnInput(e, "missing", []string{layerArn + ":2"}))
		add("deleted layer on create", "InvalidParameterValueException", err)
		if err != nil && !strings.Contains(err.Error(), "Layer version "+layerArn+":2 does not exist.") {
			t.Errorf("missing layer message: %v", err)
		}
		_, err = e.lambda.CreateFunction(ctx, fnInput(e, "twice", []string{layerArn + ":1", layerArn + ":3"}))
		add("two versions of one layer", "InvalidParameterValueException", err)

		// Another account: its layers are invisible to us and ours to it.
		b, err := e.srv.Accounts().Create(ctx, "tenant-layers")
		if err != nil {
			t.Fatal(err)
		}
		lb := e.lambdaFor(b.Keys[0].ID, b.Keys[0].Secret)
		pb, err := lb.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("libs"), Content: &types.LayerVersionContentInput{ZipFile: zip1}})
		if err != nil || pb.Version != 1 {
			t.Fatalf("B publishes its own libs: %v %+v", err, pb)
		}
		_, err = lb.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String(layerArn + ":1")})
		add("B reads A's layer", "AccessDeniedException", err)
		_, err = e.lambda.CreateFunction(ctx, fnInput(e, "foreign", []string{aws.ToString(pb.LayerVersionArn)}))
		add("A uses B's layer", "AccessDeniedException", err)
		bl, err := lb.ListLayers(ctx, &lambda.ListLayersInput{})
		if err != nil || len(bl.Layers) != 1 || aws.ToString(bl.Layers[0].LatestMatchingVersion.LayerVersionArn) != aws.ToString(pb.LayerVersionArn) {
			t.Errorf("B's list: %v %+v", err, bl)
		}
		for _, c := range cases {
			if got := apiCode(c.err); got != c.code {
				t.Errorf("%s: got %q (%v), want %s", c.what, got, c.err, c.code)
			}
		}
	})
}

func fnInput(e *env, name string, layers []string) *lambda.CreateFunctionInput {
	return &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: "python3.11", Handler: aws.String("app.handler"),
		Role: aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/fn"),
		Code: &types.FunctionCode{ZipFile: zipOf(e.t, map[string]string{"app.py": readOpt})}, Layers: layers,
	}
}

// readOpt is a Python handler that reports files under /opt.
const readOpt = `import os

def handler(event, context):
    out = {}
    for p in event.get("paths", []):
        try:
            out[p] = open(p).read().strip()
        except OSError as e:
            out[p] = "error: " + e.strerror
    return out
`

// TestLayersInOrder: later layers override earlier ones under /opt, in the
// function's order; changing the order retires environments; a deleted
// layer version keeps working for the functions that use it.
func TestLayersInOrder(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	publish := func(name string, files map[string]string) string {
		out, err := e.lambda.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String(name), Content: &types.LayerVersionContentInput{ZipFile: zipOf(t, files)}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.LayerVersionArn)
	}
	a := publish("a", map[string]string{"data/which.txt": "a", "data/only-a.txt": "only a", "python/mod.py": "X = 'a'\n"})
	b := publish("b", map[string]string{"data/which.txt": "b", "data/only-b.txt": "only b"})
	if _, err := e.lambda.CreateFunction(ctx, fnInput(e, "ordered", []string{a, b})); err != nil {
		t.Fatal(err)
	}
	paths := `{"paths":["/opt/data/which.txt","/opt/data/only-a.txt","/opt/data/only-b.txt","/opt/python/mod.py"]}`
	check := func(want map[string]string) {
		t.Helper()
		r := sdkInvoke(t, e, "ordered", paths)
		if r.FunctionError != "" {
			t.Fatalf("%s\n%s", r.Raw, r.Log)
		}
		for p, w := range want {
			if r.Payload[p] != w {
				t.Errorf("%s = %v, want %q", p, r.Payload[p], w)
			}
		}
	}
	check(map[string]string{"/opt/data/which.txt": "b", "/opt/data/only-a.txt": "only a", "/opt/data/only-b.txt": "only b", "/opt/python/mod.py": "X = 'a'"})

	// Reverse the order: the next invoke runs in a new environment.
	cfg, err := e.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("ordered"), Layers: []string{b, a}})
	if err != nil || len(cfg.Layers) != 2 || aws.ToString(cfg.Layers[0].Arn) != b {
		t.Fatalf("update layers: %v %+v", err, cfg)
	}
	check(map[string]string{"/opt/data/which.txt": "a"})

	// /opt is read-only.
	writeProbe := strings.Replace(readOpt, "return out", "try:\n        open('/opt/data/new', 'w')\n        out['write'] = 'ok'\n    except OSError as e:\n        out['write'] = e.strerror\n    return out", 1)
	if _, err := e.lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("ordered"), ZipFile: zipOf(t, map[string]string{"app.py": writeProbe})}); err != nil {
		t.Fatal(err)
	}
	if r := sdkInvoke(t, e, "ordered", `{}`); r.Payload["write"] != "Read-only file system" {
		t.Errorf("write to /opt: %s", r.Raw)
	}

	// Delete both versions: the function keeps its layers, also in a new
	// environment (the update retires the old one).
	for _, n := range []string{"a", "b"} {
		if _, err := e.lambda.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String(n), VersionNumber: aws.Int64(1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("ordered"), Description: aws.String("after delete")}); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"/opt/data/which.txt": "a", "/opt/data/only-b.txt": "only b"})
	got, err := e.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("ordered")})
	if err != nil || len(got.Layers) != 2 {
		t.Fatalf("layers after delete: %v %+v", err, got)
	}

	// Detach every layer with an empty list.
	if _, err := e.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("ordered"), Layers: []string{}}); err != nil {
		t.Fatal(err)
	}
	r := sdkInvoke(t, e, "ordered", paths)
	if !strings.HasPrefix(r.Payload["/opt/data/which.txt"].(string), "error") {
		t.Errorf("/opt still has layers after detaching: %s", r.Raw)
	}
	got, _ = e.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("ordered")})
	if len(got.Layers) != 0 {
		t.Errorf("Layers after detaching: %+v", got.Layers)
	}
}
