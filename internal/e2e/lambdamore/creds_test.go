package lambdamore

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/runtimes"
)

const lambdaTrust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// makeRole creates an execution role trusting Lambda with an inline
// policy (none when policy is "").
func makeRole(t *testing.T, e *harness.Env, name, policy string) string {
	t.Helper()
	ctx := context.Background()
	k := e.Srv.Account.Keys[0]
	c := iamFor(e, k.ID, k.Secret)
	out, err := c.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(lambdaTrust)})
	if err != nil {
		t.Fatal(err)
	}
	if policy != "" {
		if _, err := c.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("p"), PolicyDocument: aws.String(policy)}); err != nil {
			t.Fatal(err)
		}
	}
	return *out.Role.Arn
}

// credsPy lists functions with boto3 and the environment's credentials,
// names itself with STS, and tries other ports of the endpoint's address.
const credsPy = `import os, socket, urllib.parse
import boto3, botocore

def handler(event, context):
    ep = os.environ["AWS_ENDPOINT_URL"]
    out = {"endpoint": ep, "key": os.environ.get("AWS_ACCESS_KEY_ID", "")[:4],
           "token": bool(os.environ.get("AWS_SESSION_TOKEN"))}
    lam = boto3.client("lambda", endpoint_url=ep)
    try:
        out["functions"] = sorted(f["FunctionName"] for f in lam.list_functions()["Functions"])
    except botocore.exceptions.ClientError as e:
        out["error"] = e.response["Error"]["Code"]
        out["message"] = e.response["Error"]["Message"]
    out["arn"] = boto3.client("sts", endpoint_url=ep).get_caller_identity()["Arn"]
    host = urllib.parse.urlparse(ep).hostname
    out["ports"] = {}
    for port in event.get("ports", []):
        s = socket.socket()
        s.settimeout(1)
        try:
            s.connect((host, port))
            out["ports"][str(port)] = "open"
        except OSError as e:
            out["ports"][str(port)] = type(e).__name__
        finally:
            s.close()
    return out
`

// credsJS lists functions with the JS SDK v3 the nodejs runtime carries
// (it reads AWS_ENDPOINT_URL and the credentials from the environment).
const credsJS = `const { LambdaClient, ListFunctionsCommand } = require("@aws-sdk/client-lambda");
exports.handler = async () => {
  try {
    const r = await new LambdaClient({}).send(new ListFunctionsCommand({}));
    return { functions: r.Functions.map((f) => f.FunctionName).sort() };
  } catch (e) {
    return { error: e.name, message: e.message };
  }
};
`

// TestFunctionRoleCredentials: a Python function's environment holds
// temporary credentials of its execution role (session named after the
// function) and AWS_ENDPOINT_URL, an address of the service network that
// serves the API; boto3 lists functions with a role that allows it and
// gets AccessDeniedException with one that does not; so does a Node.js
// function with @aws-sdk/client-lambda (when setup.sh could install it);
// on the endpoint's address only the API port answers (the metrics port
// does not).
func TestFunctionRoleCredentials(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	acct := e.Srv.Account.ID
	lister := makeRole(t, e, "lister", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:ListFunctions","Resource":"*"}]}`)
	nolist := makeRole(t, e, "nolist", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:GetAccountSettings","Resource":"*"}]}`)
	zip := harness.Zip(t, map[string]string{"app.py": credsPy})
	for name, role := range map[string]string{"py-lister": lister, "py-nolist": nolist} {
		e.CreateFunction(name, "python3.11", "app.handler", zip, func(in *lambda.CreateFunctionInput) {
			in.Role = aws.String(role)
			in.Timeout = aws.Int32(20)
			in.MemorySize = aws.Int32(256)
		})
	}
	metricsPort := e.Srv.MetricsEndpoint[strings.LastIndexByte(e.Srv.MetricsEndpoint, ':')+1:]
	var mp int
	fmt.Sscan(metricsPort, &mp)
	res, out := e.InvokeJSON("py-lister", map[string]any{"ports": []int{netdev.APIPort, mp, 22}})
	if out.FunctionError != nil {
		t.Fatalf("py-lister failed: %s", out.Payload)
	}
	wantEP := e.Srv.Router().APIEndpoint()
	if res["endpoint"] != wantEP || res["key"] != "ASIA" || res["token"] != true {
		t.Fatalf("environment: endpoint %v (want %s), key %v, token %v", res["endpoint"], wantEP, res["key"], res["token"])
	}
	if fmt.Sprint(res["functions"]) != "[py-lister py-nolist]" {
		t.Fatalf("list_functions as lister = %v (%v)", res["functions"], res["message"])
	}
	if want := "arn:aws:sts::" + acct + ":assumed-role/lister/py-lister"; res["arn"] != want {
		t.Fatalf("get_caller_identity = %v, want %s", res["arn"], want)
	}
	ports, _ := res["ports"].(map[string]any)
	if ports[fmt.Sprint(netdev.APIPort)] != "open" || ports[metricsPort] == "open" || ports["22"] == "open" {
		t.Fatalf("ports of the endpoint address = %v: only %d may answer", ports, netdev.APIPort)
	}

	res, out = e.InvokeJSON("py-nolist", map[string]any{})
	if out.FunctionError != nil {
		t.Fatalf("py-nolist failed: %s", out.Payload)
	}
	if res["error"] != "AccessDeniedException" || !strings.Contains(fmt.Sprint(res["message"]), "assumed-role/nolist/py-nolist") {
		t.Fatalf("list_functions as nolist = %v %v, want AccessDeniedException", res["error"], res["message"])
	}

	if _, err := os.Stat(runtimes.NodeSDKDir + "/@aws-sdk/client-lambda/package.json"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the JS SDK is not installed (%v): scripts/setup.sh must install it in CI", err)
		}
		t.Logf("Node.js part skipped: the JS SDK is not installed (%v); run scripts/setup.sh", err)
		return
	}
	jszip := harness.Zip(t, map[string]string{"index.js": credsJS})
	for name, role := range map[string]string{"js-lister": lister, "js-nolist": nolist} {
		e.CreateFunction(name, "nodejs20.x", "index.handler", jszip, func(in *lambda.CreateFunctionInput) {
			in.Role = aws.String(role)
			in.Timeout = aws.Int32(20)
			in.MemorySize = aws.Int32(256)
		})
	}
	res, out = e.InvokeJSON("js-lister", map[string]any{})
	if out.FunctionError != nil || fmt.Sprint(res["functions"]) != "[js-lister js-nolist py-lister py-nolist]" {
		t.Fatalf("JS ListFunctions as lister = %s", out.Payload)
	}
	res, out = e.InvokeJSON("js-nolist", map[string]any{})
	if out.FunctionError != nil || res["error"] != "AccessDeniedException" {
		t.Fatalf("JS ListFunctions as nolist = %s, want AccessDeniedException", out.Payload)
	}
	_ = ctx
}
