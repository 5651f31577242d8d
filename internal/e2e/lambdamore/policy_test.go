package lambdamore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestResourcePolicy: AddPermission writes statements as Lambda does
// (account principal as its root ARN, service principal with SourceArn and
// SourceAccount conditions, * with FunctionUrlAuthType), refuses a
// duplicate statement id, GetPolicy returns the document and a revision;
// account B may invoke A's function by ARN exactly while a statement
// grants it (C never), a statement on an alias grants only the alias, and
// RemovePermission revokes.
func TestResourcePolicy(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	ctx := context.Background()
	a := e.Srv.Account.ID
	b, err := e.Srv.Accounts().Create(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Srv.Accounts().Create(ctx, "tenant-c")
	if err != nil {
		t.Fatal(err)
	}
	lb := e.LambdaFor(b.Keys[0].ID, b.Keys[0].Secret)
	lc := e.LambdaFor(c.Keys[0].ID, c.Keys[0].Secret)
	e.CreateProbe("shared")
	fnArn := "arn:aws:lambda:us-east-1:" + a + ":function:shared"

	// Before any grant, B is refused.
	if _, err := lb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("B invoked A's function without a grant: %v", err)
	}

	var added struct{ Statement string }
	e.MustCLI(&added, "lambda", "add-permission", "--function-name", "shared", "--statement-id", "xacct",
		"--action", "lambda:InvokeFunction", "--principal", b.ID)
	var st map[string]any
	if err := json.Unmarshal([]byte(added.Statement), &st); err != nil {
		t.Fatalf("statement %q: %v", added.Statement, err)
	}
	want := map[string]any{"Sid": "xacct", "Effect": "Allow", "Principal": map[string]any{"AWS": "arn:aws:iam::" + b.ID + ":root"},
		"Action": "lambda:InvokeFunction", "Resource": fnArn}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("statement = %v, want %v", st, want)
	}
	if _, errOut, code := e.CLI("lambda", "add-permission", "--function-name", "shared", "--statement-id", "xacct",
		"--action", "lambda:InvokeFunction", "--principal", c.ID); code == 0 || !strings.Contains(errOut, "ResourceConflictException") {
		t.Fatalf("duplicate statement id: exit %d %s", code, errOut)
	}
	e.MustCLI(&added, "lambda", "add-permission", "--function-name", "shared", "--statement-id", "s3",
		"--action", "lambda:InvokeFunction", "--principal", "s3.amazonaws.com",
		"--source-arn", "arn:aws:s3:::my-bucket", "--source-account", a)
	e.MustCLI(&added, "lambda", "add-permission", "--function-name", "shared", "--statement-id", "url",
		"--action", "lambda:InvokeFunctionUrl", "--principal", "*", "--function-url-auth-type", "NONE")
	if _, errOut, code := e.CLI("lambda", "add-permission", "--function-name", "shared", "--statement-id", "bad",
		"--action", "lambda:InvokeFunction", "--principal", "not a principal"); code == 0 || !strings.Contains(errOut, "InvalidParameterValueException") {
		t.Fatalf("bad principal: exit %d %s", code, errOut)
	}

	// GetPolicy, with boto3.
	out := e.Python(`
import boto3, json, os
l = boto3.client('lambda', endpoint_url=os.environ['LP_ENDPOINT'])
p = l.get_policy(FunctionName='shared')
print(json.dumps({'Policy': json.loads(p['Policy']), 'RevisionId': p['RevisionId']}))
`)
	var pol struct {
		Policy struct {
			Version, Id string
			Statement   []map[string]any
		}
		RevisionId string
	}
	if err := json.Unmarshal([]byte(out), &pol); err != nil {
		t.Fatalf("get_policy: %q: %v", out, err)
	}
	if pol.Policy.Version != "2012-10-17" || pol.Policy.Id != "default" || len(pol.Policy.Statement) != 3 || pol.RevisionId == "" {
		t.Fatalf("policy = %+v", pol)
	}
	s3 := fmt.Sprint(pol.Policy.Statement[1])
	wantS3 := fmt.Sprint(map[string]any{"Sid": "s3", "Effect": "Allow", "Principal": map[string]any{"Service": "s3.amazonaws.com"},
		"Action": "lambda:InvokeFunction", "Resource": fnArn,
		"Condition": map[string]any{"StringEquals": map[string]any{"AWS:SourceAccount": a}, "ArnLike": map[string]any{"AWS:SourceArn": "arn:aws:s3:::my-bucket"}}})
	if s3 != wantS3 {
		t.Fatalf("s3 statement = %s\nwant %s", s3, wantS3)
	}
	url := fmt.Sprint(pol.Policy.Statement[2])
	wantURL := fmt.Sprint(map[string]any{"Sid": "url", "Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunctionUrl", "Resource": fnArn,
		"Condition": map[string]any{"StringEquals": map[string]any{"lambda:FunctionUrlAuthType": "NONE"}}})
	if url != wantURL {
		t.Fatalf("url statement = %s\nwant %s", url, wantURL)
	}

	// B may invoke by ARN; C may not; B may not touch the policy.
	res, err := lb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn), Payload: []byte(`{"action":"env"}`)})
	if err != nil || res.FunctionError != nil {
		t.Fatalf("B invoke with a grant: %v %v", err, res)
	}
	if !strings.Contains(string(res.Payload), a) {
		t.Fatalf("B's invoke did not run A's function: %s", res.Payload)
	}
	if _, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("C invoked A's function: %v", err)
	}
	if _, err := lb.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String(fnArn), StatementId: aws.String("mine"),
		Action: aws.String("lambda:*"), Principal: aws.String(b.ID)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("B changed A's policy: %v", err)
	}
	// The grant is for the unqualified function only.
	if _, err := e.Lambda.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("shared")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lambda.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("shared"), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn + ":live")}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("C invoked the alias without a grant: %v", err)
	}
	if _, err := e.Lambda.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("shared"), Qualifier: aws.String("live"),
		StatementId: aws.String("c-live"), Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("arn:aws:iam::" + c.ID + ":root")}); err != nil {
		t.Fatal(err)
	}
	if res, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn + ":live")}); err != nil || aws.ToString(res.ExecutedVersion) != "1" {
		t.Fatalf("C invoke of the granted alias: %v", err)
	}
	if _, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("C's alias grant let it invoke the function: %v", err)
	}
	gp, err := e.Lambda.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("shared"), Qualifier: aws.String("live")})
	if err != nil || !strings.Contains(aws.ToString(gp.Policy), fnArn+":live") {
		t.Fatalf("alias policy: %v %v", err, gp)
	}

	// A stale RevisionId is refused; RemovePermission revokes.
	if _, err := e.Lambda.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("xacct"),
		RevisionId: aws.String("00000000-0000-0000-0000-000000000000")}); errCode(err) != "PreconditionFailedException" {
		t.Fatalf("stale revision: %v", err)
	}
	if _, err := e.Lambda.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("xacct")}); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("B invoked after the grant was removed: %v", err)
	}
	if _, err := e.Lambda.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("xacct")}); errCode(err) != "ResourceNotFoundException" {
		t.Fatalf("remove a missing statement: %v", err)
	}
	for _, sid := range []string{"s3", "url"} {
		if _, err := e.Lambda.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String(sid)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Lambda.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("shared")}); errCode(err) != "ResourceNotFoundException" {
		t.Fatalf("GetPolicy without statements: %v", err)
	}

	// PutResourcePolicy replaces the whole policy; a deleted and re-created
	// function starts without one.
	doc := `{"Version":"2012-10-17","Statement":[{"Sid":"b","Effect":"Allow","Principal":{"AWS":"` + b.ID + `"},"Action":"lambda:InvokeFunction","Resource":"` + fnArn + `"}]}`
	if _, err := e.Lambda.PutResourcePolicy(ctx, &lambda.PutResourcePolicyInput{ResourceArn: aws.String(fnArn), Policy: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn)}); err != nil {
		t.Fatalf("B after PutResourcePolicy: %v", err)
	}
	if _, err := e.Lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("shared")}); err != nil {
		t.Fatal(err)
	}
	e.CreateProbe("shared")
	if _, err := lb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fnArn)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("a re-created function kept the old grant: %v", err)
	}
}

// TestLayerPermission: another account may use a layer version (get it by
// ARN, attach it to a function) exactly while the layer's policy grants it.
func TestLayerPermission(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	ctx := context.Background()
	b, err := e.Srv.Accounts().Create(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Srv.Accounts().Create(ctx, "tenant-c")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{b.ID, c.ID} {
		if _, err := e.Srv.EnsureExecutionRole(ctx, id, "r", false); err != nil {
			t.Fatal(err)
		}
	}
	lb := e.LambdaFor(b.Keys[0].ID, b.Keys[0].Secret)
	lc := e.LambdaFor(c.Keys[0].ID, c.Keys[0].Secret)
	pub, err := e.Lambda.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("shared-lib"),
		Content: &types.LayerVersionContentInput{ZipFile: harness.Zip(t, map[string]string{"lib/hello.txt": "hi"})}})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(pub.LayerVersionArn)
	create := func(l *lambda.Client, acct, name string) error {
		_, err := l.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: "provided.al2023",
			Handler: aws.String("bootstrap"), Role: aws.String("arn:aws:iam::" + acct + ":role/r"),
			Code: &types.FunctionCode{ZipFile: harness.ProbeZip}, Layers: []string{arn}})
		return err
	}
	if _, err := lb.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String(arn)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("B read the layer without a grant: %v", err)
	}
	if err := create(lb, b.ID, "uses-layer"); errCode(err) != "AccessDeniedException" {
		t.Fatalf("B attached the layer without a grant: %v", err)
	}
	var added struct{ Statement, RevisionId string }
	e.MustCLI(&added, "lambda", "add-layer-version-permission", "--layer-name", "shared-lib", "--version-number", "1",
		"--statement-id", "to-b", "--action", "lambda:GetLayerVersion", "--principal", b.ID)
	var st map[string]any
	_ = json.Unmarshal([]byte(added.Statement), &st)
	want := map[string]any{"Sid": "to-b", "Effect": "Allow", "Principal": map[string]any{"AWS": "arn:aws:iam::" + b.ID + ":root"},
		"Action": "lambda:GetLayerVersion", "Resource": arn}
	if fmt.Sprint(st) != fmt.Sprint(want) || added.RevisionId == "" {
		t.Fatalf("layer statement = %v (%s)", st, added.RevisionId)
	}
	var pol struct{ Policy, RevisionId string }
	e.MustCLI(&pol, "lambda", "get-layer-version-policy", "--layer-name", "shared-lib", "--version-number", "1")
	if !strings.Contains(pol.Policy, `"Id":"default"`) || !strings.Contains(pol.Policy, `"Sid":"to-b"`) || pol.RevisionId != added.RevisionId {
		t.Fatalf("layer policy = %+v", pol)
	}
	got, err := lb.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String(arn)})
	if err != nil || aws.ToString(got.LayerVersionArn) != arn {
		t.Fatalf("B read the granted layer: %v", err)
	}
	if err := create(lb, b.ID, "uses-layer"); err != nil {
		t.Fatalf("B attach the granted layer: %v", err)
	}
	if _, err := lc.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String(arn)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("C read the layer: %v", err)
	}
	if _, err := lc.AddLayerVersionPermission(ctx, &lambda.AddLayerVersionPermissionInput{LayerName: pub.LayerArn, VersionNumber: aws.Int64(1),
		StatementId: aws.String("x"), Action: aws.String("lambda:GetLayerVersion"), Principal: aws.String("*")}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("C changed A's layer policy: %v", err)
	}
	if _, err := e.Lambda.RemoveLayerVersionPermission(ctx, &lambda.RemoveLayerVersionPermissionInput{LayerName: aws.String("shared-lib"),
		VersionNumber: aws.Int64(1), StatementId: aws.String("to-b")}); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String(arn)}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("B read the layer after the grant was removed: %v", err)
	}
	// Everyone (principal *).
	if _, err := e.Lambda.AddLayerVersionPermission(ctx, &lambda.AddLayerVersionPermissionInput{LayerName: aws.String("shared-lib"), VersionNumber: aws.Int64(1),
		StatementId: aws.String("all"), Action: aws.String("lambda:GetLayerVersion"), Principal: aws.String("*")}); err != nil {
		t.Fatal(err)
	}
	if err := create(lc, c.ID, "c-uses-layer"); err != nil {
		t.Fatalf("C attach a public layer: %v", err)
	}
}
