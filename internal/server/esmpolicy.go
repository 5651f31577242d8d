package server

import (
	"context"

	"github.com/lambdaplane/lambdaplane/internal/sqs"
)

// Refused is esm.Queues' policy check: the first action the queue's
// Policy does not grant the role (or its account); none for the queue's
// own account.
func (a esmQueues) Refused(ctx context.Context, arn, acct, roleARN string, actions []string) (string, error) {
	rec, err := a.q.Lookup(ctx, arn)
	if err != nil {
		return "", noQueue(err)
	}
	p := sqs.Principal{Account: acct, ARN: roleARN}
	for _, act := range actions {
		if !sqs.PolicyAllows(rec, p, act) {
			return act, nil
		}
	}
	return "", nil
}
