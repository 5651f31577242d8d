package lambdaops

import (
	"net/url"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		method, path, query, want string
		params                    Params
	}{
		{"POST", "/2015-03-31/functions", "", "CreateFunction", nil},
		{"GET", "/2015-03-31/functions/", "", "ListFunctions", nil},
		{"GET", "/2015-03-31/functions/f", "", "GetFunction", Params{"FunctionName": "f"}},
		{"POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations", "", "Invoke", Params{"FunctionName": "arn:aws:lambda:us-east-1:1:function:f"}},
		{"DELETE", "/2015-03-31/functions/f/policy/s1", "", "RemovePermission", Params{"FunctionName": "f", "StatementId": "s1"}},
		{"GET", "/2018-10-31/layers", "find=LayerVersion&Arn=x", "GetLayerVersionByArn", nil},
		{"GET", "/2018-10-31/layers", "", "ListLayers", nil},
		{"GET", "/2019-09-30/functions/f/provisioned-concurrency", "List=ALL", "ListProvisionedConcurrencyConfigs", Params{"FunctionName": "f"}},
		{"GET", "/2019-09-30/functions/f/provisioned-concurrency", "Qualifier=1", "GetProvisionedConcurrencyConfig", Params{"FunctionName": "f"}},
		{"GET", "/2019-09-25/functions/f/event-invoke-config/list", "", "ListFunctionEventInvokeConfigs", Params{"FunctionName": "f"}},
		{"GET", "/2017-03-31/tags/arn:aws:lambda:us-east-1:1:function:f", "", "ListTags", Params{"Resource": "arn:aws:lambda:us-east-1:1:function:f"}},
		{"GET", "/_lambdaplane/logs/f", "", "GetLogs", Params{"FunctionName": "f"}},
	}
	for _, c := range cases {
		q, _ := url.ParseQuery(c.query)
		r, p, ok := Match(c.method, c.path, q)
		if !ok || r.Name != c.want {
			t.Errorf("%s %s?%s: got %q ok=%v, want %s", c.method, c.path, c.query, r.Name, ok, c.want)
			continue
		}
		for k, v := range c.params {
			if p[k] != v {
				t.Errorf("%s %s: param %s = %q, want %q", c.method, c.path, k, p[k], v)
			}
		}
	}
	for _, bad := range []struct{ method, path string }{
		{"PATCH", "/2015-03-31/functions/f"}, {"GET", "/2015-03-31/nothing"}, {"GET", "/2015-03-31/functions/f/%zz"}, {"GET", "/2015-03-31/functions//code"},
	} {
		if r, _, ok := Match(bad.method, bad.path, url.Values{}); ok {
			t.Errorf("%s %s matched %s", bad.method, bad.path, r.Name)
		}
	}
}

// Every operation of the model is reachable by its own template (no route
// shadows another).
func TestEveryOperationRoutable(t *testing.T) {
	if len(model) < 88 {
		t.Fatalf("model has %d operations, want the current model's 88 or more", len(model))
	}
	for _, r := range model {
		path, query, _ := cutQuery(r.URI)
		q, _ := url.ParseQuery(query)
		got, _, ok := Match(r.Method, fill(path), q)
		if !ok || got.Name != r.Name {
			t.Errorf("%s %s: matched %q", r.Method, r.URI, got.Name)
		}
	}
}

func cutQuery(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '?' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func fill(p string) string {
	out := []byte{}
	in := false
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '{':
			in = true
			out = append(out, 'x')
		case p[i] == '}':
			in = false
		case !in:
			out = append(out, p[i])
		}
	}
	return string(out)
}
