package control

import "testing"

func TestPrincipalOf(t *testing.T) {
	for in, want := range map[string]string{
		"*":                                "*",
		"123456789012":                     "map[AWS:arn:aws:iam::123456789012:root]",
		"arn:aws:iam::123456789012:user/u": "map[AWS:arn:aws:iam::123456789012:user/u]",
		"s3.amazonaws.com":                 "map[Service:s3.amazonaws.com]",
		"arn:aws:iam::123456789012:root":   "map[AWS:arn:aws:iam::123456789012:root]",
		"sqs.amazonaws.com":                "map[Service:sqs.amazonaws.com]",
	} {
		p, err := principalOf(in)
		if err != nil || sprint(p) != want {
			t.Errorf("principalOf(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "12345", "bob", "arn:aws:s3:::bucket"} {
		if _, err := principalOf(bad); err == nil {
			t.Errorf("principalOf(%q) accepted", bad)
		}
	}
}

func TestStatementMatches(t *testing.T) {
	res := "arn:aws:lambda:us-east-1:111111111111:function:f"
	b := Caller{AccountID: "222222222222", ARNs: []string{"arn:aws:iam::222222222222:root", "arn:aws:iam::222222222222:user/u"}}
	anon := Caller{}
	cases := []struct {
		st     PolicyStatement
		caller Caller
		action string
		cond   map[string][]string
		want   bool
	}{
		{PolicyStatement{Effect: "Allow", Principal: map[string]any{"AWS": "arn:aws:iam::222222222222:root"}, Action: "lambda:InvokeFunction", Resource: res}, b, "lambda:InvokeFunction", nil, true},
		{PolicyStatement{Effect: "Allow", Principal: map[string]any{"AWS": "222222222222"}, Action: "lambda:*", Resource: res}, b, "lambda:GetFunction", nil, true},
		{PolicyStatement{Effect: "Allow", Principal: map[string]any{"AWS": "arn:aws:iam::333333333333:root"}, Action: "lambda:InvokeFunction", Resource: res}, b, "lambda:InvokeFunction", nil, false},
		{PolicyStatement{Effect: "Allow", Principal: map[string]any{"AWS": []any{"arn:aws:iam::222222222222:user/u"}}, Action: "*", Resource: res}, b, "lambda:InvokeFunction", nil, true},
		{PolicyStatement{Effect: "Allow", Principal: map[string]any{"AWS": "arn:aws:iam::222222222222:root"}, Action: "lambda:InvokeFunction", Resource: res + ":live"}, b, "lambda:InvokeFunction", nil, false},
		{PolicyStatement{Effect: "Allow", Principal: "*", Action: "lambda:InvokeFunctionUrl", Resource: res,
			Condition: map[string]map[string]any{"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}}, anon, "lambda:InvokeFunctionUrl", map[string][]string{"lambda:functionurlauthtype": {"NONE"}}, true},
		{PolicyStatement{Effect: "Allow", Principal: "*", Action: "lambda:InvokeFunctionUrl", Resource: res,
			Condition: map[string]map[string]any{"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}}, anon, "lambda:InvokeFunction", nil, false},
		{PolicyStatement{Effect: "Allow", Principal: "*", Action: "lambda:InvokeFunctionUrl", Resource: res,
			Condition: map[string]map[string]any{"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}}, anon, "lambda:InvokeFunctionUrl", map[string][]string{"lambda:functionurlauthtype": {"AWS_IAM"}}, false},
		{PolicyStatement{Effect: "Allow", Principal: map[string]any{"Service": "s3.amazonaws.com"}, Action: "lambda:InvokeFunction", Resource: res,
			Condition: map[string]map[string]any{"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::b*"}}}, Caller{Service: "s3.amazonaws.com"}, "lambda:InvokeFunction", map[string][]string{"aws:sourcearn": {"arn:aws:s3:::bucket"}}, true},
		{PolicyStatement{Effect: "Allow", Principal: map[string]any{"Service": "s3.amazonaws.com"}, Action: "lambda:InvokeFunction", Resource: res,
			Condition: map[string]map[string]any{"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::b*"}}}, b, "lambda:InvokeFunction", map[string][]string{"aws:sourcearn": {"arn:aws:s3:::bucket"}}, false},
		{PolicyStatement{Effect: "Allow", Principal: "*", Action: "lambda:InvokeFunction", Resource: res,
			Condition: map[string]map[string]any{"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}}, b, "lambda:InvokeFunction", nil, false},
	}
	for i, c := range cases {
		if got := statementMatches(&c.st, c.caller, c.action, res, c.cond); got != c.want {
			t.Errorf("case %d: %v, want %v", i, got, c.want)
		}
	}
}

func TestWild(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{{"*", "x", true}, {"a*c", "abbc", true}, {"a?c", "abc", true}, {"a?c", "abbc", false}, {"arn:*:f", "arn:x:y:f", true}, {"abc", "abd", false}} {
		if wild(c.p, c.s, false) != c.want {
			t.Errorf("wild(%q, %q) != %v", c.p, c.s, c.want)
		}
	}
}

func sprint(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case map[string]any:
		for k, x := range t {
			return "map[" + k + ":" + x.(string) + "]"
		}
	}
	return "?"
}

// TestResourcePolicyConditionOperators: a function policy's conditions
// use IAM's evaluator (every operator, IfExists, set qualifiers), and
// numbers or booleans in the document are values like strings.
func TestResourcePolicyConditionOperators(t *testing.T) {
	for _, c := range []struct {
		op         string
		have, want any
		ok         bool
	}{
		{"StringEquals", []string{"123456789012"}, "123456789012", true},
		{"ArnLike", []string{"arn:aws:s3:::bucket-1"}, "arn:aws:s3:::bucket-*", true},
		{"IpAddress", []string{"10.1.2.3"}, []any{"10.0.0.0/8"}, true},
		{"NotIpAddress", []string{"10.1.2.3"}, "10.0.0.0/8", false},
		{"NumericLessThan", []string{"3"}, float64(5), true},
		{"DateGreaterThan", []string{"2026-12-03T00:00:00Z"}, "2026-01-01", true},
		{"Bool", []string{"true"}, true, true},
		{"Null", nil, "true", true},
		{"StringEqualsIfExists", nil, "x", true},
		{"ForAnyValue:StringEquals", []string{"a", "b"}, []any{"b"}, true},
		{"NoSuchOperator", []string{"a"}, "a", false},
	} {
		have, _ := c.have.([]string)
		if got := conditionHolds(c.op, have, strList(c.want)); got != c.ok {
			t.Errorf("%s %v against %v = %v, want %v", c.op, c.have, c.want, got, c.ok)
		}
	}
}
