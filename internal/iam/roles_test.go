package iam

import (
	"errors"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

const (
	acctA       = "123456789012"
	acctB       = "210987654321"
	lambdaTrust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
)

func newRoles(t *testing.T) *Roles {
	t.Helper()
	s, err := store.Open(t.Context(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	r, err := NewRoles(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRolesLifecycle(t *testing.T) {
	r := newRoles(t)
	ctx := t.Context()

	role, err := r.CreateRole(ctx, acctA, CreateRoleInput{RoleName: "fn-exec", Path: "/service-role/", AssumeRolePolicyDocument: lambdaTrust, Tags: []Tag{{"team", "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	if role.Arn != "arn:aws:iam::123456789012:role/service-role/fn-exec" || len(role.RoleID) != 21 || role.MaxSessionDuration != 3600 {
		t.Fatalf("role %+v", role)
	}
	// Names are unique regardless of case; other accounts are separate.
	if _, err := r.CreateRole(ctx, acctA, CreateRoleInput{RoleName: "FN-EXEC", AssumeRolePolicyDocument: lambdaTrust}); !errors.Is(err, ErrEntityAlreadyExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := r.CreateRole(ctx, acctB, CreateRoleInput{RoleName: "fn-exec", AssumeRolePolicyDocument: lambdaTrust}); err != nil {
		t.Fatalf("same name in other account: %v", err)
	}
	// A doubly URL-encoded document is accepted too.
	if _, err := r.CreateRole(ctx, acctA, CreateRoleInput{RoleName: "a+b=c,d.e@f-g_h", AssumeRolePolicyDocument: url.QueryEscape(lambdaTrust)}); err != nil {
		t.Fatalf("special name / encoded doc: %v", err)
	}
	for name, in := range map[string]CreateRoleInput{
		"bad name":    {RoleName: "a/b", AssumeRolePolicyDocument: lambdaTrust},
		"long name":   {RoleName: string(make([]byte, 65)), AssumeRolePolicyDocument: lambdaTrust},
		"bad path":    {RoleName: "x", Path: "nope", AssumeRolePolicyDocument: lambdaTrust},
		"no document": {RoleName: "x"},
		"session":     {RoleName: "x", AssumeRolePolicyDocument: lambdaTrust, MaxSessionDuration: 60},
	} {
		if _, err := r.CreateRole(ctx, acctA, in); !errors.Is(err, ErrValidation) {
			t.Errorf("%s: %v, want ValidationError", name, err)
		}
	}
	if _, err := r.CreateRole(ctx, acctA, CreateRoleInput{RoleName: "x", AssumeRolePolicyDocument: `{"Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}`}); !errors.Is(err, ErrMalformedPolicyDocument) {
		t.Errorf("trust without principal: %v", err)
	}

	got, err := r.GetRole(ctx, acctA, "Fn-Exec")
	if err != nil || got.RoleID != role.RoleID || got.RoleName != "fn-exec" {
		t.Fatalf("GetRole: %+v %v", got, err)
	}
	if _, err := r.GetRole(ctx, acctA, "nope"); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("GetRole missing: %v", err)
	}
	list, err := r.ListRoles(ctx, acctA, "")
	if err != nil || len(list) != 2 || list[0].RoleName != "a+b=c,d.e@f-g_h" {
		t.Fatalf("ListRoles: %+v %v", list, err)
	}
	if list, _ := r.ListRoles(ctx, acctA, "/service-role/"); len(list) != 1 {
		t.Fatalf("ListRoles prefix: %+v", list)
	}

	// Managed policies.
	if err := r.AttachRolePolicy(ctx, acctA, "fn-exec", "arn:aws:iam::aws:policy/AdministratorAccess"); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("attach unknown: %v", err)
	}
	if err := r.AttachRolePolicy(ctx, acctA, "fn-exec", BasicExecutionRoleARN); err != nil {
		t.Fatal(err)
	}
	if err := r.AttachRolePolicy(ctx, acctA, "fn-exec", BasicExecutionRoleARN); err != nil {
		t.Fatalf("attach twice: %v", err)
	}
	att, _ := r.ListAttachedRolePolicies(ctx, acctA, "fn-exec")
	if len(att) != 1 || att[0].PolicyName != "AWSLambdaBasicExecutionRole" {
		t.Fatalf("attached: %+v", att)
	}
	eni := []string{"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface"}
	ok, missing, err := r.RoleAllows(ctx, acctA, role.Arn, eni)
	if err != nil || ok || !slices.Equal(missing, eni) {
		t.Fatalf("RoleAllows with basic role: ok=%v missing=%v err=%v", ok, missing, err)
	}
	if err := r.AttachRolePolicy(ctx, acctA, "fn-exec", VPCAccessExecutionRoleARN); err != nil {
		t.Fatal(err)
	}
	if ok, missing, err := r.RoleAllows(ctx, acctA, role.Arn, eni); err != nil || !ok || len(missing) != 0 {
		t.Fatalf("RoleAllows with VPC role: ok=%v missing=%v err=%v", ok, missing, err)
	}
	// An inline Deny overrides the managed Allow.
	if err := r.PutRolePolicy(ctx, acctA, "fn-exec", "no-delete", `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ec2:Delete*","Resource":"*"}}`); err != nil {
		t.Fatal(err)
	}
	if ok, missing, _ := r.RoleAllows(ctx, acctA, role.Arn, eni); ok || !slices.Equal(missing, []string{"ec2:DeleteNetworkInterface"}) {
		t.Fatalf("RoleAllows with inline deny: ok=%v missing=%v", ok, missing)
	}
	if _, _, err := r.RoleAllows(ctx, acctB, role.Arn, eni); !errors.Is(err, ErrValidation) {
		t.Fatalf("RoleAllows from other account: %v", err)
	}
	if _, _, err := r.RoleAllows(ctx, acctA, "arn:aws:iam::123456789012:role/other-path/fn-exec", eni); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("RoleAllows wrong path: %v", err)
	}
	if ok, err := r.TrustsService(ctx, role.Arn, "lambda.amazonaws.com"); err != nil || !ok {
		t.Fatalf("TrustsService lambda: %v %v", ok, err)
	}
	if ok, err := r.TrustsService(ctx, role.Arn, "ec2.amazonaws.com"); err != nil || ok {
		t.Fatalf("TrustsService ec2: %v %v", ok, err)
	}

	// Inline policies.
	if err := r.PutRolePolicy(ctx, acctA, "fn-exec", "bad", `{"Statement":{"Effect":"Allow","Action":"s3:*"}}`); !errors.Is(err, ErrMalformedPolicyDocument) {
		t.Fatalf("put malformed: %v", err)
	}
	names, _ := r.ListRolePolicies(ctx, acctA, "fn-exec")
	if !slices.Equal(names, []string{"no-delete"}) {
		t.Fatalf("inline names %v", names)
	}
	if doc, err := r.GetRolePolicy(ctx, acctA, "fn-exec", "no-delete"); err != nil || doc == "" {
		t.Fatalf("GetRolePolicy: %q %v", doc, err)
	}
	if _, err := r.GetRolePolicy(ctx, acctA, "fn-exec", "zzz"); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("GetRolePolicy missing: %v", err)
	}

	// Delete needs policies gone first.
	if err := r.DeleteRole(ctx, acctA, "fn-exec"); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete with attached: %v", err)
	}
	for _, arn := range []string{BasicExecutionRoleARN, VPCAccessExecutionRoleARN} {
		if err := r.DetachRolePolicy(ctx, acctA, "fn-exec", arn); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.DetachRolePolicy(ctx, acctA, "fn-exec", BasicExecutionRoleARN); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("detach twice: %v", err)
	}
	if err := r.DeleteRole(ctx, acctA, "fn-exec"); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete with inline: %v", err)
	}
	if err := r.DeleteRolePolicy(ctx, acctA, "fn-exec", "no-delete"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteRole(ctx, acctA, "fn-exec"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := r.DeleteRole(ctx, acctA, "fn-exec"); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("delete again: %v", err)
	}
	if _, err := r.GetRole(ctx, acctB, "fn-exec"); err != nil {
		t.Fatalf("other account's role gone: %v", err)
	}
}

// TestAttachConcurrent: concurrent attaches from many writers all land
// (revision-checked updates).
func TestAttachConcurrent(t *testing.T) {
	r := newRoles(t)
	ctx := t.Context()
	if _, err := r.CreateRole(ctx, acctA, CreateRoleInput{RoleName: "r", AssumeRolePolicyDocument: lambdaTrust}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 {
				err = r.AttachRolePolicy(ctx, acctA, "r", BasicExecutionRoleARN)
			} else {
				err = r.AttachRolePolicy(ctx, acctA, "r", VPCAccessExecutionRoleARN)
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	att, _ := r.ListAttachedRolePolicies(ctx, acctA, "r")
	if len(att) != 2 {
		t.Fatalf("attached %+v", att)
	}
}

func TestParseRoleARN(t *testing.T) {
	acct, path, name, err := ParseRoleARN("arn:aws:iam::123456789012:role/service-role/a/b/my-role")
	if err != nil || acct != "123456789012" || path != "/service-role/a/b/" || name != "my-role" {
		t.Fatalf("%s %s %s %v", acct, path, name, err)
	}
	for _, bad := range []string{"", "my-role", "arn:aws:iam::1234:role/x", "arn:aws:iam::123456789012:user/x", "arn:aws:iam::123456789012:role/"} {
		if _, _, _, err := ParseRoleARN(bad); !errors.Is(err, ErrValidation) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
