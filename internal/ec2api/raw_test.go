package ec2api

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// post sends a form request with a fake credential scope and returns the
// status and body.
func post(t *testing.T, e *env, akid string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+akid+"/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRawWireFormat(t *testing.T) {
	e := newEnv(t)
	status, body := post(t, e, keyA, url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}})
	if status != 400 {
		t.Fatalf("status %d", status)
	}
	var er struct {
		Errors []struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
		} `xml:"Errors"`
		RequestID string `xml:"RequestID"`
	}
	if err := xml.Unmarshal([]byte(body), &er); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(er.Errors) != 1 || er.Errors[0].Code != "InvalidAction" || er.RequestID == "" || !strings.HasPrefix(body, "<?xml") || !strings.Contains(body, "<Response><Errors><Error><Code>InvalidAction</Code>") {
		t.Fatalf("error body: %s", body)
	}
	status, body = post(t, e, "AKIANOPENOPENOPENOPE", url.Values{"Action": {"DescribeVpcs"}})
	if status != 401 || !strings.Contains(body, "<Code>AuthFailure</Code>") {
		t.Fatalf("unknown key: %d %s", status, body)
	}
	status, body = post(t, e, badSecretKey, url.Values{"Action": {"DescribeVpcs"}})
	if status != 403 || !strings.Contains(body, "<Code>SignatureDoesNotMatch</Code>") {
		t.Fatalf("bad signature: %d %s", status, body)
	}
	status, body = post(t, e, keyA, url.Values{"Action": {"CreateVpc"}, "Version": {"2016-11-15"}, "CidrBlock": {"10.0.0.0/16"}})
	if status != 200 || !strings.Contains(body, `<CreateVpcResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>`) || !strings.Contains(body, "<vpc><vpcId>vpc-") {
		t.Fatalf("create vpc: %d %s", status, body)
	}
	status, body = post(t, e, keyA, url.Values{"Action": {"DescribeVpcs"}, "Filter.1.Name": {"cidr-block"}, "Filter.1.Value.1": {"10.0.*"}})
	if status != 200 || !strings.Contains(body, "<vpcSet><item><vpcId>vpc-") {
		t.Fatalf("describe: %d %s", status, body)
	}
}
