package api

import (
	"net/http/httptest"
	"testing"
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
