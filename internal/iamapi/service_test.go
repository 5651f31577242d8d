package iamapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/iamapi"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

var _ api.Service = (*iamapi.Service)(nil)

const trustDoc = `{"Version":"2012-10-17","Statement":[{"Sid":"Lambda assume","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

type env struct {
	url   string
	acct  *auth.Account
	other *auth.Account
	roles *iam.Roles
}

// setup runs a real store, accounts registry, verifier and the IAM service
// behind a front that does what internal/api does: read the body, verify,
// dispatch or WriteError.
func setup(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	s, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	accts, err := auth.NewAccounts(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(accts.Close)
	a1, err := accts.Create(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := accts.Create(ctx, "two")
	if err != nil {
		t.Fatal(err)
	}
	roles, err := iam.NewRoles(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	svc := iamapi.New(roles, nil, nil, nil)
	v := auth.NewVerifier(accts, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			svc.WriteError(w, r, err)
			return
		}
		id, err := v.Verify(r, body)
		if err != nil {
			svc.WriteError(w, r, err)
			return
		}
		if id.Service != svc.Name() {
			t.Errorf("scope service %q", id.Service)
		}
		svc.ServeAWS(w, r, id, body)
	}))
	t.Cleanup(srv.Close)
	return &env{url: srv.URL, acct: a1, other: a2, roles: roles}
}

func (e *env) client(key auth.AccessKey) *awsiam.Client {
	return awsiam.New(awsiam.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(key.ID, key.Secret, ""),
		BaseEndpoint:     aws.String(e.url),
		RetryMaxAttempts: 1,
	})
}

func apiCode(err error) string {
	var ae interface{ ErrorCode() string } // smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestIAMWithSDK(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	c := e.client(e.acct.Keys[0])

	out, err := c.CreateRole(ctx, &awsiam.CreateRoleInput{
		RoleName:                 aws.String("lambda-exec"),
		Path:                     aws.String("/service-role/"),
		AssumeRolePolicyDocument: aws.String(trustDoc),
		Description:              aws.String("exec role <&>"),
		Tags:                     []types.Tag{{Key: aws.String("team"), Value: aws.String("a b")}},
	})
	if err != nil {
		t.Fatalf("CreateRole: %v", err)
	}
	r := out.Role
	wantARN := "arn:aws:iam::" + e.acct.ID + ":role/service-role/lambda-exec"
	if aws.ToString(r.Arn) != wantARN || aws.ToString(r.RoleName) != "lambda-exec" || !strings.HasPrefix(aws.ToString(r.RoleId), "AROA") ||
		r.CreateDate == nil || time.Since(*r.CreateDate) > time.Minute || aws.ToString(r.Description) != "exec role <&>" || len(r.Tags) != 1 {
		t.Fatalf("CreateRole output %+v", r)
	}
	// IAM returns policy documents URL-encoded.
	if doc, err := url.QueryUnescape(aws.ToString(r.AssumeRolePolicyDocument)); err != nil || doc != trustDoc {
		t.Fatalf("AssumeRolePolicyDocument %q (%v)", aws.ToString(r.AssumeRolePolicyDocument), err)
	}

	_, err = c.CreateRole(ctx, &awsiam.CreateRoleInput{RoleName: aws.String("LAMBDA-EXEC"), AssumeRolePolicyDocument: aws.String(trustDoc)})
	var exists *types.EntityAlreadyExistsException
	if !errors.As(err, &exists) || httpStatus(err) != 409 {
		t.Fatalf("duplicate CreateRole: %v", err)
	}
	_, err = c.CreateRole(ctx, &awsiam.CreateRoleInput{RoleName: aws.String("bad"), AssumeRolePolicyDocument: aws.String(`{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}`)})
	var malformed *types.MalformedPolicyDocumentException
	if !errors.As(err, &malformed) || httpStatus(err) != 400 {
		t.Fatalf("malformed trust: %v", err)
	}
	if _, err = c.CreateRole(ctx, &awsiam.CreateRoleInput{RoleName: aws.String("bad/name"), AssumeRolePolicyDocument: aws.String(trustDoc)}); apiCode(err) != "ValidationError" || httpStatus(err) != 400 {
		t.Fatalf("bad name: %v", err)
	}

	g, err := c.GetRole(ctx, &awsiam.GetRoleInput{RoleName: aws.String("lambda-exec")})
	if err != nil || aws.ToString(g.Role.Arn) != wantARN || aws.ToInt32(g.Role.MaxSessionDuration) != 3600 {
		t.Fatalf("GetRole: %+v %v", g, err)
	}
	_, err = c.GetRole(ctx, &awsiam.GetRoleInput{RoleName: aws.String("nope")})
	var nse *types.NoSuchEntityException
	if !errors.As(err, &nse) || httpStatus(err) != 404 || !strings.Contains(nse.ErrorMessage(), "nope") {
		t.Fatalf("GetRole missing: %v", err)
	}
	// The other account sees nothing of it.
	if _, err := e.client(e.other.Keys[0]).GetRole(ctx, &awsiam.GetRoleInput{RoleName: aws.String("lambda-exec")}); !errors.As(err, &nse) {
		t.Fatalf("other account GetRole: %v", err)
	}

	// ListRoles with pagination.
	for _, n := range []string{"b-role", "a-role", "c-role"} {
		if _, err := c.CreateRole(ctx, &awsiam.CreateRoleInput{RoleName: aws.String(n), AssumeRolePolicyDocument: aws.String(trustDoc)}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	p := awsiam.NewListRolesPaginator(c, &awsiam.ListRolesInput{MaxItems: aws.Int32(3)})
	pages := 0
	for p.HasMorePages() {
		lr, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListRoles: %v", err)
		}
		pages++
		for _, r := range lr.Roles {
			names = append(names, aws.ToString(r.RoleName))
		}
	}
	if strings.Join(names, ",") != "a-role,b-role,c-role,lambda-exec" || pages != 2 {
		t.Fatalf("ListRoles names %v in %d pages", names, pages)
	}
	lr, err := c.ListRoles(ctx, &awsiam.ListRolesInput{PathPrefix: aws.String("/service-role/")})
	if err != nil || len(lr.Roles) != 1 || lr.IsTruncated {
		t.Fatalf("ListRoles prefix: %+v %v", lr, err)
	}
	lr, err = e.client(e.other.Keys[0]).ListRoles(ctx, &awsiam.ListRolesInput{})
	if err != nil || len(lr.Roles) != 0 {
		t.Fatalf("other account ListRoles: %+v %v", lr, err)
	}

	// Managed policies.
	if _, err := c.AttachRolePolicy(ctx, &awsiam.AttachRolePolicyInput{RoleName: aws.String("lambda-exec"), PolicyArn: aws.String(iam.VPCAccessExecutionRoleARN)}); err != nil {
		t.Fatalf("AttachRolePolicy: %v", err)
	}
	if _, err := c.AttachRolePolicy(ctx, &awsiam.AttachRolePolicyInput{RoleName: aws.String("lambda-exec"), PolicyArn: aws.String("arn:aws:iam::aws:policy/Nope")}); !errors.As(err, &nse) {
		t.Fatalf("attach unknown policy: %v", err)
	}
	ap, err := c.ListAttachedRolePolicies(ctx, &awsiam.ListAttachedRolePoliciesInput{RoleName: aws.String("lambda-exec")})
	if err != nil || len(ap.AttachedPolicies) != 1 || aws.ToString(ap.AttachedPolicies[0].PolicyName) != "AWSLambdaVPCAccessExecutionRole" {
		t.Fatalf("ListAttachedRolePolicies: %+v %v", ap, err)
	}
	ok, missing, err := e.roles.RoleAllows(ctx, e.acct.ID, wantARN, []string{"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface"})
	if err != nil || !ok {
		t.Fatalf("RoleAllows: %v %v %v", ok, missing, err)
	}
	if ok, err := e.roles.TrustsService(ctx, wantARN, "lambda.amazonaws.com"); err != nil || !ok {
		t.Fatalf("TrustsService: %v %v", ok, err)
	}

	// Inline policies.
	inline := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ec2:DeleteNetworkInterface","Resource":"*"}]}`
	if _, err := c.PutRolePolicy(ctx, &awsiam.PutRolePolicyInput{RoleName: aws.String("lambda-exec"), PolicyName: aws.String("deny-delete"), PolicyDocument: aws.String(inline)}); err != nil {
		t.Fatalf("PutRolePolicy: %v", err)
	}
	if _, err := c.PutRolePolicy(ctx, &awsiam.PutRolePolicyInput{RoleName: aws.String("lambda-exec"), PolicyName: aws.String("bad"), PolicyDocument: aws.String(`{"Statement":[{"Effect":"Allow","Action":"s3:*"}]}`)}); !errors.As(err, &malformed) {
		t.Fatalf("PutRolePolicy malformed: %v", err)
	}
	gp, err := c.GetRolePolicy(ctx, &awsiam.GetRolePolicyInput{RoleName: aws.String("lambda-exec"), PolicyName: aws.String("deny-delete")})
	if err != nil {
		t.Fatalf("GetRolePolicy: %v", err)
	}
	if doc, _ := url.QueryUnescape(aws.ToString(gp.PolicyDocument)); doc != inline {
		t.Fatalf("GetRolePolicy document %q", doc)
	}
	lp, err := c.ListRolePolicies(ctx, &awsiam.ListRolePoliciesInput{RoleName: aws.String("lambda-exec")})
	if err != nil || len(lp.PolicyNames) != 1 || lp.PolicyNames[0] != "deny-delete" {
		t.Fatalf("ListRolePolicies: %+v %v", lp, err)
	}
	if ok, missing, _ := e.roles.RoleAllows(ctx, e.acct.ID, wantARN, []string{"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface"}); ok || len(missing) != 1 {
		t.Fatalf("RoleAllows with inline deny: %v %v", ok, missing)
	}

	// DeleteRole conflicts until policies are gone.
	_, err = c.DeleteRole(ctx, &awsiam.DeleteRoleInput{RoleName: aws.String("lambda-exec")})
	var conflict *types.DeleteConflictException
	if !errors.As(err, &conflict) || httpStatus(err) != 409 {
		t.Fatalf("DeleteRole with policies: %v", err)
	}
	if _, err := c.DetachRolePolicy(ctx, &awsiam.DetachRolePolicyInput{RoleName: aws.String("lambda-exec"), PolicyArn: aws.String(iam.VPCAccessExecutionRoleARN)}); err != nil {
		t.Fatalf("DetachRolePolicy: %v", err)
	}
	if _, err := c.DeleteRole(ctx, &awsiam.DeleteRoleInput{RoleName: aws.String("lambda-exec")}); !errors.As(err, &conflict) {
		t.Fatalf("DeleteRole with inline: %v", err)
	}
	if _, err := c.DeleteRolePolicy(ctx, &awsiam.DeleteRolePolicyInput{RoleName: aws.String("lambda-exec"), PolicyName: aws.String("deny-delete")}); err != nil {
		t.Fatalf("DeleteRolePolicy: %v", err)
	}
	if _, err := c.DeleteRole(ctx, &awsiam.DeleteRoleInput{RoleName: aws.String("lambda-exec")}); err != nil {
		t.Fatalf("DeleteRole: %v", err)
	}
	if _, err := c.DeleteRole(ctx, &awsiam.DeleteRoleInput{RoleName: aws.String("lambda-exec")}); !errors.As(err, &nse) {
		t.Fatalf("DeleteRole again: %v", err)
	}

	// Unsupported operations and authentication failures in IAM's format.
	if _, err := c.ListGroups(ctx, &awsiam.ListGroupsInput{}); apiCode(err) != "InvalidAction" || httpStatus(err) != 400 {
		t.Fatalf("unsupported action: %v", err)
	}
	bad := e.client(auth.AccessKey{ID: e.acct.Keys[0].ID, Secret: strings.Repeat("x", 40)})
	if _, err := bad.ListRoles(ctx, &awsiam.ListRolesInput{}); apiCode(err) != "SignatureDoesNotMatch" || httpStatus(err) != 403 {
		t.Fatalf("bad secret: %v", err)
	}
	unknown := e.client(auth.AccessKey{ID: "AKIANOTKNOWNNOTKNOWN", Secret: strings.Repeat("x", 40)})
	if _, err := unknown.ListRoles(ctx, &awsiam.ListRolesInput{}); apiCode(err) != "InvalidClientTokenId" || httpStatus(err) != 403 {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		err    error
		code   string
		status int
	}{
		{&iam.Error{Kind: iam.ErrNoSuchEntity, Msg: "x"}, "NoSuchEntity", 404},
		{&iam.Error{Kind: iam.ErrEntityAlreadyExists}, "EntityAlreadyExists", 409},
		{&iam.Error{Kind: iam.ErrMalformedPolicyDocument}, "MalformedPolicyDocument", 400},
		{&iam.Error{Kind: iam.ErrDeleteConflict}, "DeleteConflict", 409},
		{&iam.Error{Kind: iam.ErrValidation}, "ValidationError", 400},
		{&iam.Error{Kind: iam.ErrLimitExceeded}, "LimitExceeded", 409},
		{auth.ErrUnknownKey, "InvalidClientTokenId", 403},
		{auth.ErrBadSignature, "SignatureDoesNotMatch", 403},
		{auth.ErrClockSkew, "SignatureDoesNotMatch", 403},
		{auth.ErrMissingAuth, "MissingAuthenticationToken", 403},
		{auth.ErrMalformedAuth, "IncompleteSignature", 400},
		{errors.New("disk on fire"), "ServiceFailure", 500},
	}
	for _, c := range cases {
		code, status := iamapi.ErrorCode(c.err)
		if code != c.code || status != c.status {
			t.Errorf("%v: %s %d, want %s %d", c.err, code, status, c.code, c.status)
		}
	}
	// Wire shape.
	w := httptest.NewRecorder()
	iamapi.New(nil, nil, nil, nil).WriteError(w, httptest.NewRequest("POST", "/", nil), &iam.Error{Kind: iam.ErrNoSuchEntity, Msg: "The role with name x cannot be found."})
	body := w.Body.String()
	for _, want := range []string{`<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">`, "<Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The role with name x cannot be found.</Message></Error>", "<RequestId>"} {
		if !strings.Contains(body, want) {
			t.Errorf("error body lacks %q:\n%s", want, body)
		}
	}
	if w.Code != 404 || w.Header().Get("Content-Type") != "text/xml" {
		t.Errorf("status %d content-type %q", w.Code, w.Header().Get("Content-Type"))
	}
}

// TestIAMWithAWSCLI drives the service with the Debian AWS CLI, whose
// botocore decodes the URL-encoded policy documents.
func TestIAMWithAWSCLI(t *testing.T) {
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		t.Skip("no " + cli)
	}
	e := setup(t)
	dir := t.TempDir()
	cred := filepath.Join(dir, "credentials")
	if err := auth.WriteCredentialsFile(cred, e.acct, auth.DefaultProfile, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, append([]string{"--endpoint-url", e.url, "--output", "json"}, args...)...)
		cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin", "AWS_SHARED_CREDENTIALS_FILE=" + cred, "AWS_CONFIG_FILE=" + filepath.Join(dir, "none"), "AWS_PROFILE=lambdaplane", "AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true"}
		return cmd.CombinedOutput()
	}
	out, err := run("iam", "create-role", "--role-name", "cli-role", "--assume-role-policy-document", trustDoc)
	if err != nil {
		t.Fatalf("create-role: %v\n%s", err, out)
	}
	var cr struct {
		Role struct {
			Arn                      string
			AssumeRolePolicyDocument json.RawMessage
		}
	}
	if err := json.Unmarshal(out, &cr); err != nil {
		t.Fatalf("create-role output: %v\n%s", err, out)
	}
	var doc map[string]any
	if err := json.Unmarshal(cr.Role.AssumeRolePolicyDocument, &doc); err != nil || doc["Version"] != "2012-10-17" {
		t.Fatalf("CLI did not decode the trust document: %s", cr.Role.AssumeRolePolicyDocument)
	}
	if out, err := run("iam", "attach-role-policy", "--role-name", "cli-role", "--policy-arn", iam.BasicExecutionRoleARN); err != nil {
		t.Fatalf("attach-role-policy: %v\n%s", err, out)
	}
	if out, err := run("iam", "put-role-policy", "--role-name", "cli-role", "--policy-name", "p1", "--policy-document", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}}`); err != nil {
		t.Fatalf("put-role-policy: %v\n%s", err, out)
	}
	out, err = run("iam", "list-attached-role-policies", "--role-name", "cli-role")
	if err != nil || !strings.Contains(string(out), "AWSLambdaBasicExecutionRole") {
		t.Fatalf("list-attached-role-policies: %v\n%s", err, out)
	}
	out, err = run("iam", "delete-role", "--role-name", "cli-role")
	if err == nil || !strings.Contains(string(out), "DeleteConflict") {
		t.Fatalf("delete-role with policies: %v\n%s", err, out)
	}
	out, err = run("iam", "get-role", "--role-name", "nope")
	if err == nil || !strings.Contains(string(out), "NoSuchEntity") {
		t.Fatalf("get-role missing: %v\n%s", err, out)
	}
	out, err = run("iam", "list-roles")
	if err != nil || !strings.Contains(string(out), cr.Role.Arn) {
		t.Fatalf("list-roles: %v\n%s", err, out)
	}
}
