package lambdamore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestTags: Tags on CreateFunction (CLI), returned by GetFunction;
// TagResource / UntagResource / ListTags round trip through the CLI and
// the SDK; Lambda's validation; and an IAM user whose policy allows
// invoking only functions tagged team=a (aws:ResourceTag) and tagging only
// with team=a (aws:RequestTag, aws:TagKeys).
func TestTags(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	acct := e.Srv.Account.ID
	zipPath := filepath.Join(t.TempDir(), "probe.zip")
	if err := os.WriteFile(zipPath, harness.ProbeZip, 0o600); err != nil {
		t.Fatal(err)
	}
	e.MustCLI(nil, "lambda", "create-function", "--function-name", "tagged-a", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", e.Role("probe"), "--zip-file", "fileb://"+zipPath, "--tags", "team=a,env=dev")
	got, err := e.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("tagged-a")})
	if err != nil || fmt.Sprint(got.Tags) != "map[env:dev team:a]" {
		t.Fatalf("GetFunction Tags: %v %v", err, got)
	}
	arnA := "arn:aws:lambda:us-east-1:" + acct + ":function:tagged-a"
	e.MustCLI(nil, "lambda", "tag-resource", "--resource", arnA, "--tags", "owner=me,env=prod")
	if l, err := e.Lambda.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arnA)}); err != nil || fmt.Sprint(l.Tags) != "map[env:prod owner:me team:a]" {
		t.Fatalf("ListTags after tag-resource: %v %v", err, l)
	}
	e.MustCLI(nil, "lambda", "untag-resource", "--resource", arnA, "--tag-keys", "env", "owner")
	var lt struct{ Tags map[string]string }
	e.MustCLI(&lt, "lambda", "list-tags", "--resource", arnA)
	if fmt.Sprint(lt.Tags) != "map[team:a]" {
		t.Fatalf("list-tags after untag-resource = %v", lt.Tags)
	}

	// SDK round trip and validation.
	e.CreateProbe("tagged-b", func(in *lambda.CreateFunctionInput) { in.Tags = map[string]string{"team": "b"} })
	arnB := "arn:aws:lambda:us-east-1:" + acct + ":function:tagged-b"
	if _, err := e.Lambda.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arnB), Tags: map[string]string{"cost": "42"}}); err != nil {
		t.Fatal(err)
	}
	if out, err := e.Lambda.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arnB)}); err != nil || fmt.Sprint(out.Tags) != "map[cost:42 team:b]" {
		t.Fatalf("ListTags: %v %v", err, out)
	}
	many := map[string]string{}
	for i := 0; i < 49; i++ {
		many[fmt.Sprintf("k%02d", i)] = "v"
	}
	for name, c := range map[string]struct {
		resource string
		tags     map[string]string
		code     string
		says     string
	}{
		"reserved prefix":  {arnB, map[string]string{"aws:owner": "x"}, "InvalidParameterValueException", "aws:"},
		"long key":         {arnB, map[string]string{strings.Repeat("k", 129): "x"}, "InvalidParameterValueException", "128"},
		"long value":       {arnB, map[string]string{"k": strings.Repeat("v", 257)}, "InvalidParameterValueException", "256"},
		"over 50 in total": {arnB, many, "InvalidParameterValueException", "50"},
		"qualified ARN":    {arnB + ":1", map[string]string{"k": "v"}, "InvalidParameterValueException", "versions or aliases"},
		"a layer":          {"arn:aws:lambda:us-east-1:" + acct + ":layer:l", map[string]string{"k": "v"}, "InvalidParameterValueException", "cannot be tagged"},
		"missing function": {"arn:aws:lambda:us-east-1:" + acct + ":function:nope", map[string]string{"k": "v"}, "ResourceNotFoundException", "nope"},
	} {
		_, err := e.Lambda.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(c.resource), Tags: c.tags})
		if apiErrCode(err) != c.code || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %s saying %q", name, err, c.code, c.says)
		}
	}
	if out, _ := e.Lambda.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arnB)}); len(out.Tags) != 2 {
		t.Fatalf("a refused TagResource changed the tags: %v", out.Tags)
	}

	// Tag conditions for an IAM user.
	root := e.Srv.Account.Keys[0]
	im := iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.Srv.Endpoint), Credentials: credentials.NewStaticCredentialsProvider(root.ID, root.Secret, "")})
	if _, err := im.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("team-a")}); err != nil {
		t.Fatal(err)
	}
	policy := `{"Version":"2012-10-17","Statement":[
	 {"Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/team":"a"}}},
	 {"Effect":"Allow","Action":"lambda:TagResource","Resource":"*","Condition":{"StringEquals":{"aws:RequestTag/team":"a"},"ForAllValues:StringEquals":{"aws:TagKeys":["team"]}}}]}`
	if _, err := im.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String("team-a"), PolicyName: aws.String("tags"), PolicyDocument: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	key, err := im.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("team-a")})
	if err != nil {
		t.Fatal(err)
	}
	user := e.LambdaFor(aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey))
	if _, err := user.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("tagged-a"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("invoke of the team=a function: %v", err)
	}
	if _, err := user.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("tagged-b"), Payload: []byte(`{}`)}); apiErrCode(err) != "AccessDeniedException" {
		t.Fatalf("invoke of the team=b function: %v, want AccessDeniedException", err)
	}
	if _, err := user.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arnB), Tags: map[string]string{"team": "a"}}); err != nil {
		t.Fatalf("tagging team=a: %v", err)
	}
	if _, err := user.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("tagged-b"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("invoke of the function retagged team=a: %v", err)
	}
	if _, err := user.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arnB), Tags: map[string]string{"env": "x"}}); apiErrCode(err) != "AccessDeniedException" {
		t.Fatalf("tagging env=x: %v, want AccessDeniedException", err)
	}
}
