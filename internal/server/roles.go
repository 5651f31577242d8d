package server

import (
	"context"
	"errors"

	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// LambdaTrustPolicy lets Lambda assume a role.
const LambdaTrustPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// EnsureExecutionRole creates (if missing) a Lambda execution role named
// name in account with AWSLambdaBasicExecutionRole, plus
// AWSLambdaVPCAccessExecutionRole when vpc is set, and returns its ARN.
// Tests and the bench use it; users do the same with aws iam.
func (s *Server) EnsureExecutionRole(ctx context.Context, account, name string, vpc bool) (string, error) {
	r, err := s.roles.CreateRole(ctx, account, iam.CreateRoleInput{RoleName: name, AssumeRolePolicyDocument: LambdaTrustPolicy})
	var arn string
	switch {
	case err == nil:
		arn = r.Arn
	case errors.Is(err, iam.ErrEntityAlreadyExists):
		arn = iam.RoleARN(account, "/", name)
	default:
		return "", err
	}
	policies := []string{iam.BasicExecutionRoleARN}
	if vpc {
		policies = append(policies, iam.VPCAccessExecutionRoleARN)
	}
	for _, p := range policies {
		if err := s.roles.AttachRolePolicy(ctx, account, name, p); err != nil {
			return "", err
		}
	}
	return arn, nil
}
