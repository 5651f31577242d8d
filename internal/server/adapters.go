package server

import (
	"context"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/hyperplane"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/sts"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// vpcLookup answers the control plane's VpcConfig questions from the model.
type vpcLookup struct{ m *vpc.Model }

func (l vpcLookup) SubnetVPC(ctx context.Context, account, id string) (string, error) {
	sn, err := l.m.GetSubnet(ctx, account, id)
	if err != nil {
		return "", err
	}
	return sn.VpcID, nil
}

func (l vpcLookup) GroupVPC(ctx context.Context, account, id string) (string, error) {
	g, err := l.m.GetSecurityGroup(ctx, account, id)
	if err != nil {
		return "", err
	}
	return g.VpcID, nil
}

// networks gives the control plane the Hyperplane manager's share calls.
type networks struct{ m *hyperplane.Manager }

func (n networks) Ensure(ctx context.Context, account, user string, subnetIDs, sgIDs []string) error {
	if n.m.Mode() == hyperplane.ModePerEnvENI {
		// The pre-2019 model creates no ENI with the function: each
		// environment creates its own at cold start.
		return nil
	}
	_, err := n.m.Ensure(ctx, account, user, subnetIDs, sgIDs)
	return err
}

func (n networks) Release(ctx context.Context, account, user string) error {
	return n.m.Release(ctx, account, user)
}

func (networks) ReasonOf(err error) string { return hyperplane.ReasonOf(err) }

// Shares lists the functions' ENI shares (control.ShareLister).
func (n networks) Shares(ctx context.Context) (map[string][]string, error) {
	return n.m.Users(), nil
}

// userAuthorizer checks requests signed with an IAM user's access key
// against the user's identity policies (iam.Users.Authorize), and those
// signed with a role session's temporary credentials against the role's
// (sts.Service.Authorize); account root keys are allowed everything.
type userAuthorizer struct {
	users    *iam.Users
	sessions *sts.Service
}

func (a userAuthorizer) Authorize(ctx context.Context, id auth.Identity, action, resource string, cond map[string][]string) error {
	if !id.Restricted() {
		return nil
	}
	if id.Role != "" {
		return a.sessions.Authorize(ctx, id, iam.Request{Action: action, Resource: resource, Context: cond})
	}
	return a.users.Authorize(ctx, id.AccountID, id.User, iam.Request{Action: action, Resource: resource, Context: cond})
}

// authorizeCaller is Authorize for the caller the Lambda API put in ctx
// (control's condition-keyed checks).
func (a userAuthorizer) authorizeCaller(ctx context.Context, action, resource string, cond map[string][]string) error {
	id, ok := auth.IdentityFrom(ctx)
	if !ok {
		return nil
	}
	return a.Authorize(ctx, id, action, resource, cond)
}
