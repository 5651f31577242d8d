package lambdamore

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

const xacctPy = `def handler(event, context):
    return {"v": "%s"}
`

// TestCrossAccountOperations: a resource policy granting account B the
// function actions AWS lets a policy grant lets B manage A's function by
// ARN (code, versions, aliases, concurrency, event invoke config, tags,
// code signing config, delete); account C, with no grant, is refused each;
// UpdateFunctionConfiguration is not grantable (refused to B too).
func TestCrossAccountOperations(t *testing.T) {
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
	e.CreateFunction("xfn", "python3.11", "app.handler", harness.Zip(t, map[string]string{"app.py": fmt.Sprintf(xacctPy, "one")}))
	arn := "arn:aws:lambda:us-east-1:" + a + ":function:xfn"
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"b","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":"lambda:*","Resource":["%s","%s:*"]}]}`, b.ID, arn, arn)
	if _, err := e.Lambda.PutResourcePolicy(ctx, &lambda.PutResourcePolicyInput{ResourceArn: aws.String(arn), Policy: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	fn := aws.String(arn)

	type op struct {
		name string
		call func(l *lambda.Client) error
	}
	ops := []op{
		{"UpdateFunctionCode", func(l *lambda.Client) error {
			_, err := l.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: fn, ZipFile: harness.Zip(t, map[string]string{"app.py": fmt.Sprintf(xacctPy, "two")})})
			return err
		}},
		{"PublishVersion", func(l *lambda.Client) error {
			if err := waitUpdated(ctx, l, arn); err != nil {
				return err
			}
			_, err := l.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: fn})
			return err
		}},
		{"ListVersionsByFunction", func(l *lambda.Client) error {
			out, err := l.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: fn})
			if err == nil && len(out.Versions) != 2 {
				return fmt.Errorf("%d versions", len(out.Versions))
			}
			return err
		}},
		{"CreateAlias", func(l *lambda.Client) error {
			_, err := l.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: fn, Name: aws.String("live"), FunctionVersion: aws.String("1")})
			return err
		}},
		{"GetAlias", func(l *lambda.Client) error {
			_, err := l.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: fn, Name: aws.String("live")})
			return err
		}},
		{"UpdateAlias", func(l *lambda.Client) error {
			_, err := l.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: fn, Name: aws.String("live"), Description: aws.String("from b")})
			return err
		}},
		{"ListAliases", func(l *lambda.Client) error {
			out, err := l.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: fn})
			if err == nil && (len(out.Aliases) != 1 || aws.ToString(out.Aliases[0].Description) != "from b") {
				return fmt.Errorf("aliases %+v", out.Aliases)
			}
			return err
		}},
		{"Invoke", func(l *lambda.Client) error {
			out, err := l.Invoke(ctx, &lambda.InvokeInput{FunctionName: fn})
			if err == nil && string(out.Payload) != `{"v": "two"}` {
				return fmt.Errorf("payload %s", out.Payload)
			}
			return err
		}},
		{"DeleteAlias", func(l *lambda.Client) error {
			_, err := l.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: fn, Name: aws.String("live")})
			return err
		}},
		{"GetFunctionCodeSigningConfig", func(l *lambda.Client) error {
			_, err := l.GetFunctionCodeSigningConfig(ctx, &lambda.GetFunctionCodeSigningConfigInput{FunctionName: fn})
			return err
		}},
		{"PutFunctionConcurrency", func(l *lambda.Client) error {
			_, err := l.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: fn, ReservedConcurrentExecutions: aws.Int32(3)})
			return err
		}},
		{"GetFunctionConcurrency", func(l *lambda.Client) error {
			out, err := l.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: fn})
			if err == nil && aws.ToInt32(out.ReservedConcurrentExecutions) != 3 {
				return fmt.Errorf("concurrency %v", out.ReservedConcurrentExecutions)
			}
			return err
		}},
		{"DeleteFunctionConcurrency", func(l *lambda.Client) error {
			_, err := l.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: fn})
			return err
		}},
		{"PutFunctionEventInvokeConfig", func(l *lambda.Client) error {
			_, err := l.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: fn, MaximumRetryAttempts: aws.Int32(1)})
			return err
		}},
		{"GetFunctionEventInvokeConfig", func(l *lambda.Client) error {
			out, err := l.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: fn})
			if err == nil && aws.ToInt32(out.MaximumRetryAttempts) != 1 {
				return fmt.Errorf("retries %v", out.MaximumRetryAttempts)
			}
			return err
		}},
		{"TagResource", func(l *lambda.Client) error {
			_, err := l.TagResource(ctx, &lambda.TagResourceInput{Resource: fn, Tags: map[string]string{"team": "b"}})
			return err
		}},
		{"ListTags", func(l *lambda.Client) error {
			out, err := l.ListTags(ctx, &lambda.ListTagsInput{Resource: fn})
			if err == nil && out.Tags["team"] != "b" {
				return fmt.Errorf("tags %v", out.Tags)
			}
			return err
		}},
		{"UntagResource", func(l *lambda.Client) error {
			_, err := l.UntagResource(ctx, &lambda.UntagResourceInput{Resource: fn, TagKeys: []string{"team"}})
			return err
		}},
		{"GetPolicy", func(l *lambda.Client) error {
			_, err := l.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: fn})
			return err
		}},
	}
	for _, o := range ops {
		if err := o.call(lc); errCode(err) != "AccessDeniedException" {
			t.Fatalf("C %s on A's function: %v, want AccessDeniedException", o.name, err)
		}
		if err := o.call(lb); err != nil {
			t.Fatalf("B %s on A's function: %v", o.name, err)
		}
	}
	// As A sees it.
	if tags, err := e.Lambda.ListTags(ctx, &lambda.ListTagsInput{Resource: fn}); err != nil || len(tags.Tags) != 0 {
		t.Fatalf("A's tags after B's untag: %v %v", tags, err)
	}
	// Not grantable: UpdateFunctionConfiguration.
	if _, err := lb.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: fn, Description: aws.String("b")}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("B UpdateFunctionConfiguration: %v, want AccessDeniedException", err)
	}
	// DeleteFunction last: C refused, B deletes.
	if _, err := lc.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: fn}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("C DeleteFunction: %v", err)
	}
	if _, err := lb.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: fn}); err != nil {
		t.Fatalf("B DeleteFunction: %v", err)
	}
	if _, err := e.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("xfn")}); errCode(err) != "ResourceNotFoundException" {
		t.Fatalf("A's function after B deleted it: %v", err)
	}
}

// waitUpdated waits for the function's LastUpdateStatus to leave InProgress.
func waitUpdated(ctx context.Context, l *lambda.Client, fn string) error {
	return lambda.NewFunctionUpdatedV2Waiter(l).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(fn)}, 60e9)
}

// TestSameAccountResourcePolicy: an IAM user of the function's own account
// with no identity policy is refused, until the function's resource policy
// names the user: then exactly the granted actions succeed (from the SDK
// and boto3); a statement naming only the account grants the user nothing;
// an explicit Deny in the user's identity policy still refuses.
func TestSameAccountResourcePolicy(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	ctx := context.Background()
	a := e.Srv.Account.ID
	k := e.Srv.Account.Keys[0]
	rootIAM := iamFor(e, k.ID, k.Secret)
	if _, err := rootIAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("dev")}); err != nil {
		t.Fatal(err)
	}
	key, err := rootIAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("dev")})
	if err != nil {
		t.Fatal(err)
	}
	kid, secret := *key.AccessKey.AccessKeyId, *key.AccessKey.SecretAccessKey
	dev := e.LambdaFor(kid, secret)
	e.CreateProbe("mine")
	get := func() error {
		_, err := dev.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("mine")})
		return err
	}
	if err := get(); errCode(err) != "AccessDeniedException" {
		t.Fatalf("user without policies GetFunction: %v", err)
	}
	// A statement naming the account defers to identity policies.
	if _, err := e.Lambda.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("mine"), StatementId: aws.String("acct"),
		Action: aws.String("lambda:GetFunction"), Principal: aws.String(a)}); err != nil {
		t.Fatal(err)
	}
	if err := get(); errCode(err) != "AccessDeniedException" {
		t.Fatalf("user GetFunction with only an account statement: %v", err)
	}
	userARN := "arn:aws:iam::" + a + ":user/dev"
	for _, act := range []string{"lambda:GetFunction", "lambda:InvokeFunction"} {
		if _, err := e.Lambda.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("mine"), StatementId: aws.String("dev-" + act[7:]),
			Action: aws.String(act), Principal: aws.String(userARN)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := get(); err != nil {
		t.Fatalf("user GetFunction granted by the resource policy: %v", err)
	}
	if _, err := dev.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("mine"), Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("user Invoke granted by the resource policy: %v", err)
	}
	out := e.Python(fmt.Sprintf(`
import boto3, os
l = boto3.client('lambda', endpoint_url=os.environ['LP_ENDPOINT'], aws_access_key_id=%q, aws_secret_access_key=%q, region_name='us-east-1')
print(l.invoke(FunctionName='mine', Payload=b'{}')['StatusCode'])
`, kid, secret))
	if strings.TrimSpace(out) != "200" {
		t.Fatalf("boto3 invoke as the user: %q", out)
	}
	// Not granted: DeleteFunction, ListFunctions, another function.
	if _, err := dev.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("mine")}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("user DeleteFunction: %v", err)
	}
	if _, err := dev.ListFunctions(ctx, &lambda.ListFunctionsInput{}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("user ListFunctions: %v", err)
	}
	e.CreateProbe("other")
	if _, err := dev.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("other")}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("user Invoke of another function: %v", err)
	}
	// An explicit Deny in the user's identity policy wins.
	if _, err := rootIAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String("dev"), PolicyName: aws.String("deny"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"lambda:GetFunction","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	if err := get(); errCode(err) != "AccessDeniedException" {
		t.Fatalf("user GetFunction with an explicit deny: %v", err)
	}
	if _, err := dev.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("mine"), InvocationType: types.InvocationTypeDryRun}); err != nil {
		t.Fatalf("user Invoke (not denied) after the deny of GetFunction: %v", err)
	}
}

// TestIAMConditionOperators: an IAM user's identity policy conditioned on
// global keys the front supplies (aws:SourceIp, aws:CurrentTime,
// aws:EpochTime, aws:PrincipalType, aws:SecureTransport) with IpAddress,
// NotIpAddress, Date*, Numeric*, Null, Bool and ForAnyValue operators.
func TestIAMConditionOperators(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	ctx := context.Background()
	k := e.Srv.Account.Keys[0]
	rootIAM := iamFor(e, k.ID, k.Secret)
	if _, err := rootIAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("cond")}); err != nil {
		t.Fatal(err)
	}
	key, err := rootIAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("cond")})
	if err != nil {
		t.Fatal(err)
	}
	policy := `{"Version":"2012-10-17","Statement":[
	 {"Effect":"Allow","Action":"lambda:ListFunctions","Resource":"*","Condition":{
	   "IpAddress":{"aws:SourceIp":["127.0.0.0/8","::1/128"]},"DateLessThan":{"aws:CurrentTime":"2100-01-01T00:00:00Z"},
	   "NumericGreaterThan":{"aws:EpochTime":1700000000},"ForAnyValue:StringEquals":{"aws:PrincipalType":["User"]},
	   "Null":{"aws:username":"false"},"Bool":{"aws:SecureTransport":"false"}}},
	 {"Effect":"Allow","Action":"lambda:GetAccountSettings","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["127.0.0.0/8","::1/128"]}}},
	 {"Effect":"Allow","Action":"lambda:ListLayers","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2100-01-01"}}},
	 {"Effect":"Allow","Action":"lambda:ListEventSourceMappings","Resource":"*","Condition":{"NumericLessThanIfExists":{"lambda:NoSuchKey":"1"}}}
	]}`
	if _, err := rootIAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String("cond"), PolicyName: aws.String("p"), PolicyDocument: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	l := e.LambdaFor(*key.AccessKey.AccessKeyId, *key.AccessKey.SecretAccessKey)
	if _, err := l.ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil {
		t.Fatalf("ListFunctions (IpAddress, Date, Numeric, ForAnyValue, Null, Bool all hold): %v", err)
	}
	if _, err := l.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("GetAccountSettings (NotIpAddress of loopback): %v", err)
	}
	if _, err := l.ListLayers(ctx, &lambda.ListLayersInput{}); errCode(err) != "AccessDeniedException" {
		t.Fatalf("ListLayers (DateGreaterThan 2100): %v", err)
	}
	if _, err := l.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{}); err != nil {
		t.Fatalf("ListEventSourceMappings (IfExists on an absent key): %v", err)
	}
}
