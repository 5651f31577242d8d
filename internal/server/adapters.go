package server

import (
	"context"

	"github.com/lambdaplane/lambdaplane/internal/hyperplane"
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
