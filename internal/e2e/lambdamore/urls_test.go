package lambdamore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// webJS answers by path: /bare returns a plain object (a 200 JSON body),
// /fail throws (502), anything else echoes the event in a structured
// response with a header and a cookie.
const webJS = `
exports.handler = async (event) => {
  if (event.rawPath === '/bare') return { hello: 'world' };
  if (event.rawPath === '/fail') throw new Error('boom');
  if (event.rawPath === '/ping') return { statusCode: 200, body: 'pong' };
  return { statusCode: 201, headers: { 'x-echo': '1', 'content-type': 'application/json' }, cookies: ['a=b; Path=/'], body: JSON.stringify(event) };
};
`

var urlRe = regexp.MustCompile(`^http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:[0-9]+/$`)

// curl runs curl against a function URL: it returns the status, the
// response headers (lower-cased names) and the body.
func curl(t *testing.T, args ...string) (int, map[string]string, string) {
	t.Helper()
	full := append([]string{"-s", "-S", "--max-time", "20", "-D", "-"}, args...)
	out, err := exec.Command("curl", full...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	head, body, _ := strings.Cut(string(out), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	var status int
	fmt.Sscanf(lines[0], "HTTP/1.1 %d", &status)
	h := map[string]string{}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			k = strings.ToLower(strings.TrimSpace(k))
			if h[k] != "" {
				h[k] += ", "
			}
			h[k] += strings.TrimSpace(v)
		}
	}
	return status, h, body
}

// TestFunctionURLs: a URL with AuthType NONE answers curl only once the
// resource policy allows it, with the payload format 2.0 event and the
// function's status, headers and cookies; a bare object is a 200 JSON body;
// a function error is a 502; CORS preflights are answered without invoking;
// an AWS_IAM URL on an alias refuses unsigned requests and accepts a SigV4
// signature of the owner, and of another account once the policy grants
// it; the configs list, update and delete.
func TestFunctionURLs(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	ctx := context.Background()
	a := e.Srv.Account.ID
	e.CreateFunction("web", "nodejs20.x", "index.handler", harness.Zip(t, map[string]string{"index.js": webJS}))

	var cfg struct{ FunctionUrl, FunctionArn, AuthType, CreationTime, InvokeMode string }
	e.MustCLI(&cfg, "lambda", "create-function-url-config", "--function-name", "web", "--auth-type", "NONE")
	m := urlRe.FindStringSubmatch(cfg.FunctionUrl)
	if m == nil || cfg.AuthType != "NONE" || cfg.FunctionArn != "arn:aws:lambda:us-east-1:"+a+":function:web" || cfg.CreationTime == "" {
		t.Fatalf("create-function-url-config = %+v", cfg)
	}
	if _, errOut, code := e.CLI("lambda", "create-function-url-config", "--function-name", "web", "--auth-type", "NONE"); code == 0 || !strings.Contains(errOut, "ResourceConflictException") {
		t.Fatalf("second URL for the function: exit %d %s", code, errOut)
	}
	base := cfg.FunctionUrl

	// Without the resource-policy statement, NONE is refused as on AWS.
	if st, _, _ := curl(t, base+"path?q=1"); st != 403 {
		t.Fatalf("NONE URL without permission: %d", st)
	}
	e.MustCLI(nil, "lambda", "add-permission", "--function-name", "web", "--statement-id", "public",
		"--action", "lambda:InvokeFunctionUrl", "--principal", "*", "--function-url-auth-type", "NONE")

	st, h, body := curl(t, "-H", "Cookie: c1=v1; c2=v2", "-H", "X-Multi: one", "-H", "X-Multi: two", base+"path?q=1&q=2&r=x")
	if st != 201 || h["x-echo"] != "1" || !strings.Contains(h["set-cookie"], "a=b") {
		t.Fatalf("NONE URL: %d %v %s", st, h, body)
	}
	var ev struct {
		Version, RouteKey, RawPath, RawQueryString string
		Cookies                                    []string
		Headers, QueryStringParameters             map[string]string
		IsBase64Encoded                            bool
	}
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		t.Fatalf("event %q: %v", body, err)
	}
	var raw map[string]any
	_ = json.Unmarshal([]byte(body), &raw)
	rc, _ := raw["requestContext"].(map[string]any)
	httpCtx, _ := rc["http"].(map[string]any)
	if ev.Version != "2.0" || ev.RouteKey != "$default" || ev.RawPath != "/path" || ev.RawQueryString != "q=1&q=2&r=x" ||
		ev.QueryStringParameters["q"] != "1,2" || ev.QueryStringParameters["r"] != "x" ||
		strings.Join(ev.Cookies, ";") != "c1=v1;c2=v2" || ev.Headers["x-multi"] != "one,two" || ev.Headers["cookie"] != "" ||
		rc["accountId"] != "anonymous" || rc["apiId"] != m[1] || rc["domainPrefix"] != m[1] || rc["stage"] != "$default" ||
		!strings.HasPrefix(fmt.Sprint(rc["domainName"]), m[1]+".lambda-url.us-east-1.localhost") ||
		httpCtx["method"] != "GET" || httpCtx["path"] != "/path" || httpCtx["sourceIp"] != "127.0.0.1" || !strings.HasPrefix(fmt.Sprint(httpCtx["userAgent"]), "curl/") ||
		rc["timeEpoch"] == nil || rc["requestId"] == "" || ev.IsBase64Encoded {
		t.Fatalf("event = %s", body)
	}
	// A binary body arrives base64-encoded; a text body as is.
	binFile := filepath.Join(t.TempDir(), "body.bin")
	if err := os.WriteFile(binFile, []byte("\x00\x01bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, body = curl(t, "-X", "POST", "-H", "Content-Type: application/octet-stream", "--data-binary", "@"+binFile, base+"up")
	_ = json.Unmarshal([]byte(body), &raw)
	if raw["isBase64Encoded"] != true || raw["body"] != "AAFiaW4=" {
		t.Fatalf("binary body event: %s", body)
	}
	_, _, body = curl(t, "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", `{"k":1}`, base+"up")
	_ = json.Unmarshal([]byte(body), &raw)
	if raw["isBase64Encoded"] != false || raw["body"] != `{"k":1}` {
		t.Fatalf("text body event: %s", body)
	}
	if st, h, body := curl(t, base+"bare"); st != 200 || h["content-type"] != "application/json" || body != `{"hello":"world"}` {
		t.Fatalf("bare object: %d %v %q", st, h, body)
	}
	if st, _, _ := curl(t, base+"fail"); st != 502 {
		t.Fatalf("function error: %d", st)
	}
	// A throttle is a 429.
	if _, err := e.Lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("web"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := curl(t, base+"ping"); st != 429 {
		t.Fatalf("throttled: %d", st)
	}
	if _, err := e.Lambda.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("web")}); err != nil {
		t.Fatal(err)
	}

	// CORS.
	var up struct{ Cors map[string]any }
	e.MustCLI(&up, "lambda", "update-function-url-config", "--function-name", "web", "--cors",
		`{"AllowOrigins":["https://example.com"],"AllowMethods":["GET","POST"],"AllowHeaders":["x-custom"],"ExposeHeaders":["x-echo"],"MaxAge":300,"AllowCredentials":true}`)
	if up.Cors == nil {
		t.Fatalf("update-function-url-config: %+v", up)
	}
	st, h, body = curl(t, "-X", "OPTIONS", "-H", "Origin: https://example.com", "-H", "Access-Control-Request-Method: POST",
		"-H", "Access-Control-Request-Headers: x-custom", base+"path")
	if st != 200 || h["access-control-allow-origin"] != "https://example.com" || h["access-control-allow-methods"] != "GET,POST" ||
		h["access-control-allow-headers"] != "x-custom" || h["access-control-max-age"] != "300" || h["access-control-allow-credentials"] != "true" ||
		h["x-echo"] != "" || body != "" {
		t.Fatalf("preflight (the function must not run): %d %v %q", st, h, body)
	}
	st, h, _ = curl(t, "-H", "Origin: https://example.com", base+"path")
	if st != 201 || h["access-control-allow-origin"] != "https://example.com" || h["access-control-expose-headers"] != "x-echo" {
		t.Fatalf("CORS on a response: %d %v", st, h)
	}
	if _, h, _ = curl(t, "-X", "OPTIONS", "-H", "Origin: https://evil.example", "-H", "Access-Control-Request-Method: POST", base+"path"); h["access-control-allow-origin"] != "" {
		t.Fatalf("preflight from another origin allowed: %v", h)
	}

	// AWS_IAM on an alias.
	if _, err := e.Lambda.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("web")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lambda.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("web"), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	iamURL, err := e.Lambda.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("web"), Qualifier: aws.String("live"), AuthType: types.FunctionUrlAuthTypeAwsIam})
	if err != nil || !urlRe.MatchString(aws.ToString(iamURL.FunctionUrl)) || aws.ToString(iamURL.FunctionArn) != "arn:aws:lambda:us-east-1:"+a+":function:web:live" {
		t.Fatalf("alias URL: %v %+v", err, iamURL)
	}
	iamBase := aws.ToString(iamURL.FunctionUrl)
	if st, _, _ := curl(t, iamBase+"ping"); st != 403 {
		t.Fatalf("unsigned request to an AWS_IAM URL: %d", st)
	}
	root := e.Srv.Account.Keys[0]
	if st, body := signedGet(t, iamBase+"ping", root.ID, root.Secret); st != 200 || body != "pong" {
		t.Fatalf("owner's signed request: %d %q", st, body)
	}
	// Another account: refused until the alias's policy grants it.
	b, err := e.Srv.Accounts().Create(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := signedGet(t, iamBase+"ping", b.Keys[0].ID, b.Keys[0].Secret); st != 403 {
		t.Fatalf("B's signed request without a grant: %d", st)
	}
	if _, err := e.Lambda.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("web"), Qualifier: aws.String("live"),
		StatementId: aws.String("b"), Action: aws.String("lambda:InvokeFunctionUrl"), Principal: aws.String(b.ID),
		FunctionUrlAuthType: types.FunctionUrlAuthTypeAwsIam}); err != nil {
		t.Fatal(err)
	}
	if st, body := signedGet(t, iamBase+"ping", b.Keys[0].ID, b.Keys[0].Secret); st != 200 || body != "pong" {
		t.Fatalf("B's signed request with a grant: %d %q", st, body)
	}
	st, body = signedGet(t, iamBase+"who", b.Keys[0].ID, b.Keys[0].Secret)
	_ = json.Unmarshal([]byte(body), &raw)
	rc, _ = raw["requestContext"].(map[string]any)
	authz, _ := rc["authorizer"].(map[string]any)
	iamCtx, _ := authz["iam"].(map[string]any)
	if st != 201 || rc["accountId"] != b.ID || iamCtx["accountId"] != b.ID || iamCtx["accessKey"] != b.Keys[0].ID {
		t.Fatalf("AWS_IAM event: %d %s", st, body)
	}

	// List, get, delete.
	var list struct{ FunctionUrlConfigs []map[string]any }
	e.MustCLI(&list, "lambda", "list-function-url-configs", "--function-name", "web")
	var urls []string
	for _, c := range list.FunctionUrlConfigs {
		urls = append(urls, fmt.Sprint(c["FunctionUrl"], c["AuthType"]))
	}
	sort.Strings(urls)
	if len(urls) != 2 {
		t.Fatalf("list-function-url-configs = %v", list)
	}
	var got struct{ FunctionUrl, LastModifiedTime string }
	e.MustCLI(&got, "lambda", "get-function-url-config", "--function-name", "web", "--qualifier", "live")
	if got.FunctionUrl != iamBase || got.LastModifiedTime == "" {
		t.Fatalf("get-function-url-config = %+v", got)
	}
	e.MustCLI(nil, "lambda", "delete-function-url-config", "--function-name", "web")
	if st, _, _ := curl(t, base+"path"); st != 404 {
		t.Fatalf("deleted URL: %d", st)
	}
	if _, err := e.Lambda.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("web")}); errCode(err) != "ResourceNotFoundException" {
		t.Fatalf("get a deleted URL config: %v", err)
	}
	// Deleting the function removes its alias's URL too.
	if _, err := e.Lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("web")}); err != nil {
		t.Fatal(err)
	}
	if st, _ := signedGet(t, iamBase+"ping", root.ID, root.Secret); st != 404 {
		t.Fatalf("URL of a deleted function: %d", st)
	}
}

// signedGet sends a GET signed with SigV4 for service lambda.
func signedGet(t *testing.T, url, keyID, secret string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret},
		req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := urlClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// urlClient reaches *.localhost at loopback (as curl does).
var urlClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
	DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
		_, port, _ := net.SplitHostPort(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	},
}}

// BenchmarkFunctionURLOverhead compares a function URL request with a plain
// Invoke of the same warm function (the Go probe), both over one keep-alive
// connection from this process, alternating; it reports both medians.
//
//	go test ./internal/e2e/lambdamore -run '^$' -bench FunctionURLOverhead -benchtime 2000x
func BenchmarkFunctionURLOverhead(b *testing.B) {
	e := harness.Start(b)
	ctx := context.Background()
	e.CreateProbe("fast")
	u, err := e.Lambda.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("fast"), AuthType: types.FunctionUrlAuthTypeNone})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.Lambda.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("fast"), StatementId: aws.String("public"),
		Action: aws.String("lambda:InvokeFunctionUrl"), Principal: aws.String("*"), FunctionUrlAuthType: types.FunctionUrlAuthTypeNone}); err != nil {
		b.Fatal(err)
	}
	root := e.Srv.Account.Keys[0]
	creds := aws.Credentials{AccessKeyID: root.ID, SecretAccessKey: root.Secret}
	signer := v4.NewSigner()
	invokeURL := e.Srv.Endpoint + "/2015-03-31/functions/fast/invocations"
	payload := []byte(`{}`)
	sum := sha256.Sum256(payload)
	payloadHash := hex.EncodeToString(sum[:])
	plain := &http.Client{Timeout: 30 * time.Second}
	invokeOnce := func() time.Duration {
		req, _ := http.NewRequest(http.MethodPost, invokeURL, bytes.NewReader(payload))
		if err := signer.SignHTTP(ctx, creds, req, payloadHash, "lambda", "us-east-1", time.Now()); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		resp, err := plain.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 {
			b.Fatalf("invoke: %d", resp.StatusCode)
		}
		return d
	}
	urlOnce := func() time.Duration {
		t0 := time.Now()
		resp, err := urlClient.Get(aws.ToString(u.FunctionUrl) + "x?q=1")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 {
			b.Fatalf("url: %d", resp.StatusCode)
		}
		return d
	}
	for i := 0; i < 50; i++ { // warm both paths and the environment
		invokeOnce()
		urlOnce()
	}
	n := b.N
	if n > 20000 {
		n = 20000
	}
	inv := make([]time.Duration, 0, n)
	url := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := 0; i < n; i++ {
		inv = append(inv, invokeOnce())
		url = append(url, urlOnce())
	}
	b.StopTimer()
	p50 := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	pi, pu := p50(inv), p50(url)
	b.ReportMetric(float64(pi.Microseconds()), "invoke-p50-µs")
	b.ReportMetric(float64(pu.Microseconds()), "url-p50-µs")
	b.Logf("%d requests each: Invoke p50 %v, function URL p50 %v (overhead %v)", n, pi, pu, pu-pi)
}

// TestFunctionURLIAMUser: an IAM user of the owner account may call an
// AWS_IAM URL only once its policies allow lambda:InvokeFunctionUrl on that
// function (a policy for another function does not help).
func TestFunctionURLIAMUser(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	ctx := context.Background()
	a := e.Srv.Account.ID
	e.CreateProbe("guarded")
	u, err := e.Lambda.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("guarded"), AuthType: types.FunctionUrlAuthTypeAwsIam})
	if err != nil {
		t.Fatal(err)
	}
	root := e.Srv.Account.Keys[0]
	im := iamFor(e, root.ID, root.Secret)
	if _, err := im.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("web")}); err != nil {
		t.Fatal(err)
	}
	key, err := im.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("web")})
	if err != nil {
		t.Fatal(err)
	}
	kid, sec := aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey)
	if st, _ := signedGet(t, aws.ToString(u.FunctionUrl), kid, sec); st != 403 {
		t.Fatalf("IAM user without a policy: %d", st)
	}
	put := func(resource string) {
		doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:InvokeFunctionUrl","Resource":"` + resource + `",
			"Condition":{"StringEquals":{"lambda:FunctionUrlAuthType":"AWS_IAM"}}}]}`
		if _, err := im.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String("web"), PolicyName: aws.String("url"), PolicyDocument: aws.String(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	put("arn:aws:lambda:us-east-1:" + a + ":function:other")
	if st, _ := signedGet(t, aws.ToString(u.FunctionUrl), kid, sec); st != 403 {
		t.Fatalf("IAM user allowed another function: %d", st)
	}
	put("arn:aws:lambda:us-east-1:" + a + ":function:guarded")
	if st, body := signedGet(t, aws.ToString(u.FunctionUrl), kid, sec); st != 200 || !strings.Contains(body, `"arn"`) {
		t.Fatalf("IAM user allowed: %d %s", st, body)
	}
}
