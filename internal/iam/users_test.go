package iam

import (
	"errors"
	"strings"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

func newUsers(t *testing.T) *Users {
	t.Helper()
	s, err := store.Open(t.Context(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	u, err := NewUsers(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestUserAuthorizeVpcKeys: a user's inline policy restricting
// lambda:CreateFunction with the VPC condition keys, evaluated as the
// Lambda API asks (the keys present only with a VpcConfig).
func TestUserAuthorizeVpcKeys(t *testing.T) {
	u := newUsers(t)
	ctx := t.Context()
	if _, err := u.CreateUser(ctx, acctA, "dev", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := u.CreateUser(ctx, acctA, "DEV", "", nil); !errors.Is(err, ErrEntityAlreadyExists) {
		t.Fatalf("names are case-insensitive: %v", err)
	}
	doc := `{"Version":"2012-10-17","Statement":[
	 {"Effect":"Allow","Action":"lambda:CreateFunction","Resource":"*","Condition":{
	   "StringEquals":{"lambda:VpcIds":"vpc-1"},
	   "ForAllValues:StringEquals":{"lambda:SubnetIds":["subnet-a","subnet-b"],"lambda:SecurityGroupIds":["sg-1"]}}},
	 {"Effect":"Deny","Action":"lambda:*","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"lambda:SubnetIds":"subnet-x"}}}]}`
	if err := u.PutUserPolicy(ctx, acctA, "dev", "vpc", doc); err != nil {
		t.Fatal(err)
	}
	vpcCtx := func(vpc string, subnets, sgs []string) map[string][]string {
		return map[string][]string{"lambda:VpcIds": {vpc}, "lambda:SubnetIds": subnets, "lambda:SecurityGroupIds": sgs}
	}
	for _, tc := range []struct {
		what string
		ctx  map[string][]string
		ok   bool
		deny string // substring of the refusal
	}{
		{"allowed VPC, subnets and group", vpcCtx("vpc-1", []string{"subnet-a", "subnet-b"}, []string{"sg-1"}), true, ""},
		{"one allowed subnet", vpcCtx("vpc-1", []string{"subnet-b"}, []string{"sg-1"}), true, ""},
		{"other VPC", vpcCtx("vpc-2", []string{"subnet-a"}, []string{"sg-1"}), false, "no identity-based policy allows"},
		{"unlisted subnet", vpcCtx("vpc-1", []string{"subnet-a", "subnet-c"}, []string{"sg-1"}), false, "no identity-based policy allows"},
		{"unlisted group", vpcCtx("vpc-1", []string{"subnet-a"}, []string{"sg-1", "sg-2"}), false, "no identity-based policy allows"},
		{"denied subnet", vpcCtx("vpc-1", []string{"subnet-x"}, []string{"sg-1"}), false, "explicit deny"},
		{"no VpcConfig (StringEquals on a missing key)", nil, false, "no identity-based policy allows"},
	} {
		err := u.Authorize(ctx, acctA, "dev", Request{Action: "lambda:CreateFunction", Resource: "arn:aws:lambda:us-east-1:" + acctA + ":function:f", Context: tc.ctx})
		var denied *auth.AccessDenied
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v, want allowed", tc.what, err)
		case !tc.ok && (!errors.As(err, &denied) || !strings.Contains(err.Error(), tc.deny) || denied.Caller != UserARN(acctA, "/", "dev")):
			t.Errorf("%s: %v, want AccessDenied (%s) for user dev", tc.what, err, tc.deny)
		}
	}
	if err := u.Authorize(ctx, acctA, "nobody", Request{Action: "lambda:GetFunction", Resource: "*"}); err == nil {
		t.Error("an unknown user is allowed")
	}
	if err := u.Authorize(ctx, acctB, "dev", Request{Action: "lambda:CreateFunction", Resource: "*", Context: vpcCtx("vpc-1", []string{"subnet-a"}, []string{"sg-1"})}); err == nil {
		t.Error("another account's user of the same name is allowed")
	}
	// Policies block deletion; attached managed policies count.
	if err := u.AttachUserPolicy(ctx, acctA, "dev", "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"); err != nil {
		t.Fatal(err)
	}
	noKeys := func() (bool, error) { return false, nil }
	if err := u.DeleteUser(ctx, acctA, "dev", noKeys); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete with policies: %v", err)
	}
	if err := u.DetachUserPolicy(ctx, acctA, "dev", "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"); err != nil {
		t.Fatal(err)
	}
	if err := u.DeleteUserPolicy(ctx, acctA, "dev", "vpc"); err != nil {
		t.Fatal(err)
	}
	if err := u.DeleteUser(ctx, acctA, "dev", func() (bool, error) { return true, nil }); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete with keys: %v", err)
	}
	if err := u.DeleteUser(ctx, acctA, "dev", noKeys); err != nil {
		t.Fatal(err)
	}
	if _, err := u.GetUser(ctx, acctA, "dev"); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("after delete: %v", err)
	}
}
