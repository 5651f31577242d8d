package iam

import (
	"errors"
	"testing"
)

func mustParse(t *testing.T, doc string, kind PolicyKind) *Policy {
	t.Helper()
	p, err := ParsePolicy(doc, kind)
	if err != nil {
		t.Fatalf("ParsePolicy: %v\n%s", err, doc)
	}
	return p
}

func TestWildcardMatch(t *testing.T) {
	cases := []struct {
		p, s string
		fold bool
		want bool
	}{
		{"*", "", false, true},
		{"*", "anything", false, true},
		{"ec2:*", "ec2:CreateNetworkInterface", false, true},
		{"ec2:*", "EC2:CreateNetworkInterface", false, false},
		{"ec2:*", "EC2:createnetworkinterface", true, true},
		{"ec2:Describe*", "ec2:DescribeSubnets", false, true},
		{"ec2:Describe*", "ec2:CreateSubnet", false, false},
		{"ec2:?escribe*s", "ec2:DescribeSubnets", false, true},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"*a*b*c*", "xxaxxbxxcxx", false, true},
		{"*a*b*c", "xxaxxbxxcxx", false, false},
		{"arn:aws:ec2:*:*:subnet/*", "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-1", false, true},
		{"arn:aws:ec2:*:*:subnet/*", "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1", false, false},
		{"abc", "abcd", false, false},
		{"", "", false, true},
	}
	for _, c := range cases {
		if got := wildcardMatch(c.p, c.s, c.fold); got != c.want {
			t.Errorf("wildcardMatch(%q, %q, %v) = %v, want %v", c.p, c.s, c.fold, got, c.want)
		}
	}
}

func TestParsePolicyRejects(t *testing.T) {
	cases := map[string]struct {
		doc  string
		kind PolicyKind
	}{
		"not json":           {`{"Version":`, IdentityPolicy},
		"no statement":       {`{"Version":"2012-10-17"}`, IdentityPolicy},
		"empty statements":   {`{"Version":"2012-10-17","Statement":[]}`, IdentityPolicy},
		"bad version":        {`{"Version":"2020-01-01","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, IdentityPolicy},
		"bad effect":         {`{"Statement":{"Effect":"Maybe","Action":"*","Resource":"*"}}`, IdentityPolicy},
		"no action":          {`{"Statement":{"Effect":"Allow","Resource":"*"}}`, IdentityPolicy},
		"action and not":     {`{"Statement":{"Effect":"Allow","Action":"*","NotAction":"s3:*","Resource":"*"}}`, IdentityPolicy},
		"no vendor":          {`{"Statement":{"Effect":"Allow","Action":"CreateThing","Resource":"*"}}`, IdentityPolicy},
		"no resource":        {`{"Statement":{"Effect":"Allow","Action":"ec2:*"}}`, IdentityPolicy},
		"identity principal": {`{"Statement":{"Effect":"Allow","Principal":"*","Action":"ec2:*","Resource":"*"}}`, IdentityPolicy},
		"trust no principal": {`{"Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}`, TrustPolicy},
		"trust resource":     {`{"Statement":{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole","Resource":"*"}}`, TrustPolicy},
		"bad principal type": {`{"Statement":{"Effect":"Allow","Principal":{"Robot":"x"},"Action":"sts:AssumeRole"}}`, TrustPolicy},
		"bad condition op":   {`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringSortOf":{"a:b":"c"}}}}`, IdentityPolicy},
		"bad set qualifier":  {`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"ForSomeValues:StringEquals":{"a:b":"c"}}}}`, IdentityPolicy},
		"trailing data":      {`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}} x`, IdentityPolicy},
	}
	for name, c := range cases {
		_, err := ParsePolicy(c.doc, c.kind)
		if !errors.Is(err, ErrMalformedPolicyDocument) {
			t.Errorf("%s: err = %v, want MalformedPolicyDocument", name, err)
		}
	}
}

func TestEvaluate(t *testing.T) {
	allowEC2 := mustParse(t, `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["ec2:Describe*","ec2:CreateNetworkInterface"],"Resource":"*"},
		{"Effect":"Allow","Action":"logs:*","Resource":"arn:aws:logs:*:*:log-group:/aws/lambda/*"}]}`, IdentityPolicy)
	denyDelete := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ec2:Delete*","Resource":"*"}}`, IdentityPolicy)
	allowAll := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, IdentityPolicy)
	notAction := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}}`, IdentityPolicy)
	notResource := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"logs:*","NotResource":"arn:aws:logs:*:*:log-group:/aws/lambda/?n*"}}`, IdentityPolicy)

	cases := []struct {
		name     string
		req      Request
		policies []*Policy
		want     Decision
	}{
		{"no policy", Request{Action: "ec2:DescribeSubnets", Resource: "*"}, nil, ImplicitDeny},
		{"wildcard action", Request{Action: "ec2:DescribeSubnets", Resource: "*"}, []*Policy{allowEC2}, Allowed},
		{"action case-insensitive", Request{Action: "EC2:describesubnets", Resource: "*"}, []*Policy{allowEC2}, Allowed},
		{"not listed", Request{Action: "ec2:DeleteNetworkInterface", Resource: "*"}, []*Policy{allowEC2}, ImplicitDeny},
		{"resource pattern", Request{Action: "logs:PutLogEvents", Resource: "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/fn"}, []*Policy{allowEC2}, Allowed},
		{"resource mismatch", Request{Action: "logs:PutLogEvents", Resource: "arn:aws:logs:us-east-1:1:log-group:/other"}, []*Policy{allowEC2}, ImplicitDeny},
		{"explicit deny wins", Request{Action: "ec2:DeleteNetworkInterface", Resource: "*"}, []*Policy{allowAll, denyDelete}, ExplicitDeny},
		{"deny first still wins", Request{Action: "ec2:DeleteNetworkInterface", Resource: "*"}, []*Policy{denyDelete, allowAll}, ExplicitDeny},
		{"deny not matching", Request{Action: "ec2:CreateNetworkInterface", Resource: "*"}, []*Policy{allowAll, denyDelete}, Allowed},
		{"NotAction allows others", Request{Action: "ec2:CreateNetworkInterface", Resource: "*"}, []*Policy{notAction}, Allowed},
		{"NotAction excludes", Request{Action: "iam:CreateRole", Resource: "*"}, []*Policy{notAction}, ImplicitDeny},
		{"NotResource deny hits", Request{Action: "logs:PutLogEvents", Resource: "arn:aws:logs:r:1:log-group:/other"}, []*Policy{allowAll, notResource}, ExplicitDeny},
		{"NotResource deny spares ?", Request{Action: "logs:PutLogEvents", Resource: "arn:aws:logs:r:1:log-group:/aws/lambda/fn1"}, []*Policy{allowAll, notResource}, Allowed},
	}
	for _, c := range cases {
		if got := Evaluate(c.req, c.policies...); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestEvaluateConditions(t *testing.T) {
	// The documented way to restrict the VPCs functions may use.
	pol := mustParse(t, `{"Version":"2012-10-17","Statement":[
		{"Sid":"OnlyVpc1","Effect":"Allow","Action":"lambda:CreateFunction","Resource":"*",
		 "Condition":{"StringEquals":{"lambda:VpcIds":["vpc-1","vpc-2"]}}},
		{"Sid":"OnlyAllowedSubnets","Effect":"Deny","Action":"lambda:CreateFunction","Resource":"*",
		 "Condition":{"ForAnyValue:StringNotEquals":{"lambda:SubnetIds":["subnet-a","subnet-b"]}}},
		{"Sid":"SGs","Effect":"Allow","Action":"lambda:UpdateFunctionConfiguration","Resource":"*",
		 "Condition":{"ForAllValues:StringEquals":{"lambda:SecurityGroupIds":["sg-1","sg-2"]}}},
		{"Sid":"AnySG","Effect":"Allow","Action":"lambda:TagResource","Resource":"*",
		 "Condition":{"ForAnyValue:StringEquals":{"lambda:SecurityGroupIds":["sg-1"]}}},
		{"Sid":"Like","Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"*",
		 "Condition":{"StringLike":{"lambda:FunctionArn":"arn:aws:lambda:*:*:function:prod-*"},"Bool":{"aws:SecureTransport":true}}},
		{"Sid":"NoVpc","Effect":"Allow","Action":"lambda:GetFunction","Resource":"*",
		 "Condition":{"Null":{"lambda:VpcIds":"true"}}},
		{"Sid":"IfExists","Effect":"Allow","Action":"lambda:DeleteFunction","Resource":"*",
		 "Condition":{"StringEqualsIfExists":{"lambda:VpcIds":"vpc-1"}}}
	]}`, IdentityPolicy)

	type ctx = map[string][]string
	cases := []struct {
		name   string
		action string
		ctx    ctx
		want   Decision
	}{
		{"StringEquals match", "lambda:CreateFunction", ctx{"lambda:VpcIds": {"vpc-1"}, "lambda:SubnetIds": {"subnet-a"}}, Allowed},
		{"key names are case-insensitive", "lambda:CreateFunction", ctx{"LAMBDA:vpcids": {"vpc-2"}, "lambda:subnetids": {"subnet-b"}}, Allowed},
		{"StringEquals other vpc", "lambda:CreateFunction", ctx{"lambda:VpcIds": {"vpc-9"}, "lambda:SubnetIds": {"subnet-a"}}, ImplicitDeny},
		{"StringEquals missing key", "lambda:CreateFunction", ctx{}, ImplicitDeny},
		{"ForAnyValue:StringNotEquals deny", "lambda:CreateFunction", ctx{"lambda:VpcIds": {"vpc-1"}, "lambda:SubnetIds": {"subnet-a", "subnet-z"}}, ExplicitDeny},
		{"ForAllValues all in set", "lambda:UpdateFunctionConfiguration", ctx{"lambda:SecurityGroupIds": {"sg-1", "sg-2"}}, Allowed},
		{"ForAllValues one outside", "lambda:UpdateFunctionConfiguration", ctx{"lambda:SecurityGroupIds": {"sg-1", "sg-3"}}, ImplicitDeny},
		{"ForAllValues missing key is vacuously true", "lambda:UpdateFunctionConfiguration", ctx{}, Allowed},
		{"ForAnyValue one in set", "lambda:TagResource", ctx{"lambda:SecurityGroupIds": {"sg-9", "sg-1"}}, Allowed},
		{"ForAnyValue none", "lambda:TagResource", ctx{"lambda:SecurityGroupIds": {"sg-9"}}, ImplicitDeny},
		{"ForAnyValue missing", "lambda:TagResource", ctx{}, ImplicitDeny},
		{"StringLike and Bool", "lambda:InvokeFunction", ctx{"lambda:FunctionArn": {"arn:aws:lambda:us-east-1:1:function:prod-api"}, "aws:SecureTransport": {"true"}}, Allowed},
		{"StringLike no", "lambda:InvokeFunction", ctx{"lambda:FunctionArn": {"arn:aws:lambda:us-east-1:1:function:dev-api"}, "aws:SecureTransport": {"true"}}, ImplicitDeny},
		{"Bool false", "lambda:InvokeFunction", ctx{"lambda:FunctionArn": {"arn:aws:lambda:us-east-1:1:function:prod-api"}, "aws:SecureTransport": {"false"}}, ImplicitDeny},
		{"Null true absent", "lambda:GetFunction", ctx{}, Allowed},
		{"Null true present", "lambda:GetFunction", ctx{"lambda:VpcIds": {"vpc-1"}}, ImplicitDeny},
		{"IfExists absent", "lambda:DeleteFunction", ctx{}, Allowed},
		{"IfExists present match", "lambda:DeleteFunction", ctx{"lambda:VpcIds": {"vpc-1"}}, Allowed},
		{"IfExists present mismatch", "lambda:DeleteFunction", ctx{"lambda:VpcIds": {"vpc-2"}}, ImplicitDeny},
	}
	for _, c := range cases {
		got := Evaluate(Request{Action: c.action, Resource: "*", Context: c.ctx}, pol)
		if got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}

	neg := mustParse(t, `{"Statement":{"Effect":"Allow","Action":"a:b","Resource":"*","Condition":{"StringNotEquals":{"k:x":["1","2"]},"NumericLessThan":{"k:n":"10"},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}}`, IdentityPolicy)
	for _, c := range []struct {
		ctx  ctx
		want Decision
	}{
		{ctx{"k:x": {"3"}, "k:n": {"9"}, "aws:SourceIp": {"10.1.2.3"}}, Allowed},
		{ctx{"k:x": {"3", "1"}, "k:n": {"9"}, "aws:SourceIp": {"10.1.2.3"}}, ImplicitDeny},
		{ctx{"k:n": {"9"}, "aws:SourceIp": {"10.1.2.3"}}, Allowed}, // negated, key absent
		{ctx{"k:x": {"3"}, "k:n": {"10"}, "aws:SourceIp": {"10.1.2.3"}}, ImplicitDeny},
		{ctx{"k:x": {"3"}, "k:n": {"9"}, "aws:SourceIp": {"192.168.0.1"}}, ImplicitDeny},
	} {
		if got := Evaluate(Request{Action: "a:b", Resource: "*", Context: c.ctx}, neg); got != c.want {
			t.Errorf("negated/numeric/ip %v: %v, want %v", c.ctx, got, c.want)
		}
	}
}

func TestTrustEvaluation(t *testing.T) {
	trust := mustParse(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","edgelambda.amazonaws.com"]},"Action":"sts:AssumeRole"}]}`, TrustPolicy)
	req := Request{Action: "sts:AssumeRole", PrincipalType: "Service", PrincipalID: "lambda.amazonaws.com"}
	if got := Evaluate(req, trust); got != Allowed {
		t.Fatalf("lambda trust: %v", got)
	}
	req.PrincipalID = "ec2.amazonaws.com"
	if got := Evaluate(req, trust); got != ImplicitDeny {
		t.Fatalf("ec2 trust: %v", got)
	}
	star := mustParse(t, `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:*"}}`, TrustPolicy)
	if got := Evaluate(req, star); got != Allowed {
		t.Fatalf("star principal: %v", got)
	}
}

func TestManagedPolicies(t *testing.T) {
	basic, _ := LookupManagedPolicy(BasicExecutionRoleARN)
	vpc, _ := LookupManagedPolicy(VPCAccessExecutionRoleARN)
	eni := []string{"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}
	logs := []string{"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
	for _, a := range logs {
		if Evaluate(Request{Action: a, Resource: "*"}, basic.policy) != Allowed || Evaluate(Request{Action: a, Resource: "*"}, vpc.policy) != Allowed {
			t.Errorf("%s not allowed by both managed policies", a)
		}
	}
	for _, a := range eni {
		if Evaluate(Request{Action: a, Resource: "*"}, basic.policy) != ImplicitDeny {
			t.Errorf("%s allowed by basic execution role", a)
		}
		if Evaluate(Request{Action: a, Resource: "*"}, vpc.policy) != Allowed {
			t.Errorf("%s not allowed by VPC access execution role", a)
		}
	}
}
