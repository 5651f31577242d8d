package api

import (
	"net/http/httptest"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/auth"
)

func TestOperation(t *testing.T) {
	cases := []struct {
		service, method, target, body, want string
	}{
		{"lambda", "POST", "/2015-03-31/functions", "", "CreateFunction"},
		{"lambda", "GET", "/2015-03-31/functions/", "", "ListFunctions"},
		{"lambda", "POST", "/2015-03-31/functions/f/invocations", "", "Invoke"},
		{"lambda", "GET", "/2015-03-31/functions/f", "", "GetFunction"},
		{"lambda", "PUT", "/2017-10-31/functions/f/concurrency", "", "PutFunctionConcurrency"},
		{"lambda", "GET", "/2015-03-31/functions/f/aliases/live", "", "GetAlias"},
		{"lambda", "GET", "/nope", "", "Unknown"},
		{"ec2", "POST", "/", "Action=DescribeVpcs&Version=2016-11-15", "DescribeVpcs"},
		{"iam", "POST", "/?Action=CreateRole&Version=2010-05-08", "", "CreateRole"},
		{"ec2", "POST", "/", "Action=%3Cscript%3E", "Unknown"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.target, nil)
		if got := Operation(c.service, r, []byte(c.body)); got != c.want {
			t.Errorf("%s %s %s %q: %q, want %q", c.service, c.method, c.target, c.body, got, c.want)
		}
	}
}

func TestIAMRequest(t *testing.T) {
	id := auth.Identity{AccountID: "123456789012", User: "dev", Region: "eu-west-1"}
	cases := []struct {
		service, method, target, body string
		action, resource              string
		ok                            bool
	}{
		{"lambda", "POST", "/2015-03-31/functions/f/invocations", "", "lambda:InvokeFunction", "arn:aws:lambda:eu-west-1:123456789012:function:f", true},
		{"lambda", "GET", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Ag", "", "lambda:GetFunction", "arn:aws:lambda:eu-west-1:123456789012:function:g", true},
		{"lambda", "GET", "/2015-03-31/functions/", "", "lambda:ListFunctions", "*", true},
		{"lambda", "GET", "/2018-10-31/layers", "", "lambda:ListLayers", "*", true},
		{"lambda", "POST", "/2015-03-31/functions", "", "", "", false},                // control checks it with the VPC keys
		{"lambda", "PUT", "/2015-03-31/functions/f/configuration", "", "", "", false}, // likewise
		{"ec2", "POST", "/", "Action=DescribeVpcs&Version=2016-11-15", "ec2:DescribeVpcs", "*", true},
		{"iam", "POST", "/", "Action=GetRole&RoleName=r&Version=2010-05-08", "iam:GetRole", "arn:aws:iam::123456789012:role/r", true},
		{"iam", "POST", "/", "Action=CreateAccessKey&UserName=u&Version=2010-05-08", "iam:CreateAccessKey", "arn:aws:iam::123456789012:user/u", true},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.target, nil)
		action, resource, ok := iamRequest(c.service, r, []byte(c.body), id)
		if action != c.action || resource != c.resource || ok != c.ok {
			t.Errorf("%s %s %s: %q %q %v, want %q %q %v", c.service, c.method, c.target, action, resource, ok, c.action, c.resource, c.ok)
		}
	}
}
