package auth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// fakeAWS is an endpoint that verifies SigV4 on every request and answers
// the few calls the tests make with minimal valid responses.
type fakeAWS struct {
	t   *testing.T
	v   *Verifier
	mu  sync.Mutex
	ids []Identity
	ops []string // "service METHOD path" or "service Action"
}

func (f *fakeAWS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	id, err := f.v.Verify(r, body)
	if err != nil {
		f.t.Errorf("%s %s (scope %s): Verify: %v", r.Method, r.RequestURI, ScopeService(r), err)
		w.Header().Set("X-Amzn-ErrorType", "InvalidSignatureException")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"Type":"User","Message":"`+err.Error()+`"}`)
		return
	}
	f.mu.Lock()
	f.ids = append(f.ids, id)
	f.mu.Unlock()
	switch id.Service {
	case "lambda":
		f.record("lambda " + r.Method + " " + r.URL.EscapedPath())
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "GET" && strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/functions"):
			_, _ = io.WriteString(w, `{"Functions":[]}`)
		case strings.HasSuffix(r.URL.Path, "/configuration"):
			_, _ = io.WriteString(w, `{"FunctionName":"my-fn","FunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:my-fn"}`)
		case strings.HasSuffix(r.URL.Path, "/invocations"):
			w.Header().Set("X-Amz-Executed-Version", "$LATEST")
			_, _ = w.Write(body)
		default:
			w.WriteHeader(404)
			_, _ = io.WriteString(w, `{"Type":"User","Message":"not found"}`)
		}
	case "iam", "ec2":
		form, _ := url.ParseQuery(string(body))
		f.record(id.Service + " " + form.Get("Action"))
		w.Header().Set("Content-Type", "text/xml")
		switch form.Get("Action") {
		case "ListRoles":
			_, _ = io.WriteString(w, `<ListRolesResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListRolesResult><IsTruncated>false</IsTruncated><Roles/></ListRolesResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></ListRolesResponse>`)
		case "DescribeVpcs":
			_, _ = io.WriteString(w, `<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>1</requestId><vpcSet/></DescribeVpcsResponse>`)
		default:
			w.WriteHeader(400)
		}
	}
}

func (f *fakeAWS) record(op string) {
	f.mu.Lock()
	f.ops = append(f.ops, op)
	f.mu.Unlock()
}

func (f *fakeAWS) seen() ([]Identity, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Identity(nil), f.ids...), append([]string(nil), f.ops...)
}

func startFakeAWS(t *testing.T) (*fakeAWS, *httptest.Server) {
	f := &fakeAWS{t: t, v: NewVerifier(staticKeys{testAcct}, nil)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// TestSDKClientsVerify proves that requests made by the real aws-sdk-go-v2
// clients verify: Lambda REST (list, ARN in the path, POST body), IAM and
// EC2 Query (form POST).
func TestSDKClientsVerify(t *testing.T) {
	f, srv := startFakeAWS(t)
	ctx := t.Context()
	creds := credentials.NewStaticCredentialsProvider(testKey.ID, testKey.Secret, "")

	lc := lambda.New(lambda.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1})
	lf, err := lc.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatalf("ListFunctions: %v", err)
	}
	if len(lf.Functions) != 0 {
		t.Fatalf("functions: %v", lf.Functions)
	}
	arn := "arn:aws:lambda:us-east-1:123456789012:function:my-fn"
	if _, err := lc.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(arn), Qualifier: aws.String("$LATEST")}); err != nil {
		t.Fatalf("GetFunctionConfiguration: %v", err)
	}
	inv, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn + ":prod"), Payload: []byte(`{"hello":"world / ä"}`)})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if string(inv.Payload) != `{"hello":"world / ä"}` {
		t.Fatalf("Invoke payload %q", inv.Payload)
	}

	ic := iam.New(iam.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1})
	if _, err := ic.ListRoles(ctx, &iam.ListRolesInput{PathPrefix: aws.String("/service-role/")}); err != nil {
		t.Fatalf("iam ListRoles: %v", err)
	}
	ec := ec2.New(ec2.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1})
	if _, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{"vpc-0123456789abcdef0"}}); err != nil {
		t.Fatalf("ec2 DescribeVpcs: %v", err)
	}

	ids, ops := f.seen()
	want := []string{"lambda", "lambda", "lambda", "iam", "ec2"}
	if len(ids) != len(want) {
		t.Fatalf("verified %d requests (%v), want %d", len(ids), ops, len(want))
	}
	for i, id := range ids {
		if id.Service != want[i] || id.AccountID != testAcct.ID || id.Region != "us-east-1" {
			t.Errorf("request %d (%s): identity %+v", i, ops[i], id)
		}
	}
	if !strings.Contains(ops[1], "arn%3Aaws%3Alambda") {
		t.Errorf("GetFunctionConfiguration path %q: expected an escaped ARN", ops[1])
	}
}

// TestAWSCLIVerifies runs the Debian AWS CLI (/usr/bin/aws) with a
// credentials file written by WriteCredentialsFile and no other
// configuration, against the verifying endpoint.
func TestAWSCLIVerifies(t *testing.T) {
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		t.Skip("no " + cli + " (Debian package awscli)")
	}
	f, srv := startFakeAWS(t)
	dir := t.TempDir()
	credPath := filepath.Join(dir, "credentials")
	if err := WriteCredentialsFile(credPath, &testAcct, DefaultProfile, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=" + dir,
		"PATH=/usr/bin:/bin",
		"AWS_SHARED_CREDENTIALS_FILE=" + credPath,
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "no-config"),
		"AWS_PROFILE=" + DefaultProfile,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	}
	arn := "arn:aws:lambda:us-east-1:123456789012:function:my-fn"
	runs := [][]string{
		{"lambda", "list-functions"},
		{"lambda", "get-function-configuration", "--function-name", arn},
		{"lambda", "invoke", "--function-name", arn + ":prod", "--cli-binary-format", "raw-in-base64-out", "--payload", `{"a":"b c"}`, filepath.Join(dir, "out.json")},
		{"iam", "list-roles"},
		{"ec2", "describe-vpcs", "--vpc-ids", "vpc-0123456789abcdef0"},
	}
	for _, args := range runs {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, cli, append([]string{"--endpoint-url", srv.URL}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ids, ops := f.seen()
	if len(ids) != len(runs) {
		t.Fatalf("verified %d requests (%v), want %d", len(ids), ops, len(runs))
	}
	for i, id := range ids {
		if id.AccountID != testAcct.ID || id.Region != "us-east-1" || id.Service != runs[i][0] {
			t.Errorf("aws %s: identity %+v", runs[i][0], id)
		}
	}
	t.Logf("aws CLI requests verified: %v", ops)
}
