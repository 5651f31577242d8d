package lambdamore

import (
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestUnservedServices: requests signed for services lambdaplane does not
// serve get an error in their own protocol naming the service (boto3: sns
// Query/XML, dynamodb JSON 1.0, s3 REST-XML, kinesis JSON 1.1; the CLI
// prints it); an unknown Lambda path and a known path with the wrong
// method are told apart.
func TestUnservedServices(t *testing.T) {
	e := harness.Start(t)
	out := e.Python(`
import os, boto3, botocore
from botocore.config import Config
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
import urllib.request, urllib.error

ep = os.environ["LP_ENDPOINT"]
cfg = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})
calls = {
    "sns": lambda c: c.list_topics(),
    "dynamodb": lambda c: c.list_tables(),
    "s3": lambda c: c.list_buckets(),
    "kinesis": lambda c: c.list_streams(),
}
for svc, call in calls.items():
    c = boto3.client(svc, endpoint_url=ep, region_name="us-east-1", config=cfg)
    try:
        call(c)
        print(svc, "SUCCEEDED")
    except botocore.exceptions.ClientError as e:
        err = e.response["Error"]
        print(svc, e.response["ResponseMetadata"]["HTTPStatusCode"], err.get("Code"), "|", err.get("Message"))

# Lambda: an unknown path, and a known path with the wrong method.
creds = boto3.Session().get_credentials()
for method, path in [("GET", "/2015-03-31/no-such-thing"), ("DELETE", "/2015-03-31/functions"), ("PATCH", "/2015-03-31/functions/f/configuration")]:
    req = AWSRequest(method=method, url=ep + path, data=b"")
    SigV4Auth(creds, "lambda", "us-east-1").add_auth(req)
    r = urllib.request.Request(ep + path, method=method, headers=dict(req.headers))
    try:
        urllib.request.urlopen(r)
        print("lambda", method, path, "SUCCEEDED")
    except urllib.error.HTTPError as e:
        print("lambda", method, path, e.code, e.headers.get("X-Amzn-ErrorType"), "|", e.read().decode().replace("\n", " ").strip())
`)
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		key := f[0]
		if key == "lambda" {
			key += " " + f[1] + " " + f[2]
		}
		lines[key] = l
	}
	for _, svc := range []string{"sns", "dynamodb", "s3", "kinesis"} {
		l := lines[svc]
		if !strings.HasPrefix(l, svc+" 400 UnsupportedService | lambdaplane does not serve the "+svc+" service") || !strings.Contains(l, "it serves") {
			t.Errorf("%s: %q", svc, l)
		}
	}
	if l := lines["lambda GET /2015-03-31/no-such-thing"]; !strings.Contains(l, " 404 UnknownOperationException") || !strings.Contains(l, "No Lambda operation has the path GET /2015-03-31/no-such-thing") {
		t.Errorf("unknown Lambda path: %q", l)
	}
	if l := lines["lambda DELETE /2015-03-31/functions"]; !strings.Contains(l, " 405 UnknownOperationException") || !strings.Contains(l, "the path exists but not with this method") ||
		!strings.Contains(l, "GET ListFunctions") || !strings.Contains(l, "POST CreateFunction") {
		t.Errorf("wrong method on a Lambda path: %q", l)
	}
	if l := lines["lambda PATCH /2015-03-31/functions/f/configuration"]; !strings.Contains(l, "GET GetFunctionConfiguration") || !strings.Contains(l, "PUT UpdateFunctionConfiguration") {
		t.Errorf("PATCH on the configuration path: %q", l)
	}
	// The CLI shows the message.
	_, errOut, code := e.CLI("sns", "list-topics")
	if code == 0 || !strings.Contains(errOut, "UnsupportedService") || !strings.Contains(errOut, "lambdaplane does not serve the sns service") {
		t.Errorf("aws sns list-topics: exit %d: %s", code, errOut)
	}
}
