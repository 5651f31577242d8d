package lambdamore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

func stsFor(e *harness.Env, keyID, secret, token string) *sts.Client {
	return sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.Srv.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, token)})
}

func iamFor(e *harness.Env, keyID, secret string) *iam.Client {
	return iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.Srv.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, "")})
}

func lambdaSession(e *harness.Env, keyID, secret, token string) *lambda.Client {
	return lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.Srv.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, token)})
}

func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestSTS: GetCallerIdentity names the account root, an IAM user and a
// role session; AssumeRole is allowed by a trust policy naming the user,
// refused when the trust policy names only the account and the user's
// policies do not allow sts:AssumeRole, refused for a role trusting only
// Lambda and for root credentials; a role session is allowed exactly what
// its role's policies allow, intersected with a session policy;
// GetSessionToken credentials act as the user; a wrong session token is
// refused. Debian's awscli and boto3 read the same answers.
func TestSTS(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	acct := e.Srv.Account.ID
	root := e.Srv.Account.Keys[0]

	// Root, through the CLI.
	var ci struct{ Account, Arn, UserId string }
	e.MustCLI(&ci, "sts", "get-caller-identity")
	if ci.Account != acct || ci.Arn != "arn:aws:iam::"+acct+":root" || ci.UserId != acct {
		t.Fatalf("root get-caller-identity = %+v", ci)
	}

	rootIAM := iamFor(e, root.ID, root.Secret)
	if _, err := rootIAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("dev")}); err != nil {
		t.Fatal(err)
	}
	key, err := rootIAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("dev")})
	if err != nil {
		t.Fatal(err)
	}
	kid, secret := *key.AccessKey.AccessKeyId, *key.AccessKey.SecretAccessKey
	userARN := "arn:aws:iam::" + acct + ":user/dev"
	trust := func(principal string) string {
		return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":%q},"Action":"sts:AssumeRole"}]}`, principal)
	}
	for name, doc := range map[string]string{
		"by-user":    trust(userARN),
		"by-account": trust("arn:aws:iam::" + acct + ":root"),
	} {
		if _, err := rootIAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rootIAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("by-user"), PolicyName: aws.String("list"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["lambda:ListFunctions","lambda:GetAccountSettings"],"Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}

	userSTS := stsFor(e, kid, secret, "")
	uci, err := userSTS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if *uci.Arn != userARN || !strings.HasPrefix(*uci.UserId, "AIDA") || *uci.Account != acct {
		t.Fatalf("user identity = %s %s %s", *uci.Arn, *uci.UserId, *uci.Account)
	}

	// Root credentials may not assume roles; a role trusting only Lambda
	// refuses the user; trust by account needs the user's own permission.
	if _, err := stsFor(e, root.ID, root.Secret, "").AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(e.Role("fn")), RoleSessionName: aws.String("s1")}); errCode(err) != "AccessDenied" {
		t.Fatalf("root AssumeRole: %v, want AccessDenied", err)
	}
	for _, role := range []string{"fn", "by-account", "missing"} {
		_, err := userSTS.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(e.Role(role)), RoleSessionName: aws.String("s1")})
		if errCode(err) != "AccessDenied" || !strings.Contains(err.Error(), "sts:AssumeRole") {
			t.Fatalf("AssumeRole %s: %v, want AccessDenied naming sts:AssumeRole", role, err)
		}
	}
	if _, err := userSTS.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(e.Role("by-user")), RoleSessionName: aws.String("s1"), DurationSeconds: aws.Int32(7200)}); errCode(err) != "ValidationError" {
		t.Fatalf("AssumeRole beyond MaxSessionDuration: %v, want ValidationError", err)
	}
	if _, err := rootIAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String("dev"), PolicyName: aws.String("assume"),
		PolicyDocument: aws.String(fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":%q}]}`, e.Role("by-account")))}); err != nil {
		t.Fatal(err)
	}
	if _, err := userSTS.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(e.Role("by-account")), RoleSessionName: aws.String("s1")}); err != nil {
		t.Fatalf("AssumeRole by-account with the user's permission: %v", err)
	}

	ar, err := userSTS.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(e.Role("by-user")), RoleSessionName: aws.String("sess-1"), DurationSeconds: aws.Int32(900)})
	if err != nil {
		t.Fatalf("AssumeRole by-user: %v", err)
	}
	c := ar.Credentials
	if !strings.HasPrefix(*c.AccessKeyId, "ASIA") || *c.SessionToken == "" || c.Expiration == nil {
		t.Fatalf("credentials = %+v", c)
	}
	wantARN := "arn:aws:sts::" + acct + ":assumed-role/by-user/sess-1"
	if *ar.AssumedRoleUser.Arn != wantARN || !strings.HasPrefix(*ar.AssumedRoleUser.AssumedRoleId, "AROA") || !strings.HasSuffix(*ar.AssumedRoleUser.AssumedRoleId, ":sess-1") {
		t.Fatalf("AssumedRoleUser = %s %s", *ar.AssumedRoleUser.Arn, *ar.AssumedRoleUser.AssumedRoleId)
	}
	sci, err := stsFor(e, *c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if *sci.Arn != wantARN || *sci.UserId != *ar.AssumedRoleUser.AssumedRoleId {
		t.Fatalf("session identity = %s %s", *sci.Arn, *sci.UserId)
	}
	// The session is allowed what the role allows, nothing else.
	sl := lambdaSession(e, *c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)
	if _, err := sl.ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil {
		t.Fatalf("ListFunctions as the role: %v", err)
	}
	if _, err := sl.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("x")}); errCode(err) != "AccessDeniedException" || !strings.Contains(err.Error(), wantARN) {
		t.Fatalf("GetFunction as the role: %v, want AccessDeniedException naming %s", err, wantARN)
	}
	// A wrong token is refused.
	if _, err := lambdaSession(e, *c.AccessKeyId, *c.SecretAccessKey, "IQoJwrong").ListFunctions(ctx, &lambda.ListFunctionsInput{}); errCode(err) != "UnrecognizedClientException" {
		t.Fatalf("wrong token: %v, want UnrecognizedClientException", err)
	}

	// A session policy narrows the role: GetAccountSettings only.
	ar2, err := userSTS.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(e.Role("by-user")), RoleSessionName: aws.String("narrow"),
		Policy: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:GetAccountSettings","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ar2.PackedPolicySize == nil || *ar2.PackedPolicySize < 1 {
		t.Fatalf("PackedPolicySize = %v", ar2.PackedPolicySize)
	}
	nl := lambdaSession(e, *ar2.Credentials.AccessKeyId, *ar2.Credentials.SecretAccessKey, *ar2.Credentials.SessionToken)
	if _, err := nl.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{}); err != nil {
		t.Fatalf("GetAccountSettings with the session policy: %v", err)
	}
	if _, err := nl.ListFunctions(ctx, &lambda.ListFunctionsInput{}); errCode(err) != "AccessDeniedException" || !strings.Contains(err.Error(), "session policy") {
		t.Fatalf("ListFunctions outside the session policy: %v, want AccessDeniedException (session policy)", err)
	}

	// GetSessionToken: the user's temporary credentials act as the user.
	st, err := userSTS.GetSessionToken(ctx, &sts.GetSessionTokenInput{DurationSeconds: aws.Int32(900)})
	if err != nil {
		t.Fatal(err)
	}
	tc := st.Credentials
	tci, err := stsFor(e, *tc.AccessKeyId, *tc.SecretAccessKey, *tc.SessionToken).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || *tci.Arn != userARN {
		t.Fatalf("GetSessionToken credentials identity = %v, %v", tci, err)
	}
	if _, err := stsFor(e, *tc.AccessKeyId, *tc.SecretAccessKey, *tc.SessionToken).GetSessionToken(ctx, &sts.GetSessionTokenInput{}); errCode(err) != "AccessDenied" {
		t.Fatalf("GetSessionToken with session credentials: %v, want AccessDenied", err)
	}

	// boto3 (Debian's) with the role session's credentials.
	out := e.Python(`
import boto3, os
s = boto3.client('sts', endpoint_url=os.environ['LP_ENDPOINT'], region_name='us-east-1')
print(s.get_caller_identity()['Arn'])
`, "AWS_ACCESS_KEY_ID="+*c.AccessKeyId, "AWS_SECRET_ACCESS_KEY="+*c.SecretAccessKey, "AWS_SESSION_TOKEN="+*c.SessionToken)
	if strings.TrimSpace(out) != wantARN {
		t.Fatalf("boto3 get_caller_identity = %q, want %s", out, wantARN)
	}
}
