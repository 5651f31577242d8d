package control

import (
	"context"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// DeadLetterInput is DeadLetterConfig as UpdateFunctionConfiguration sends
// it: an empty TargetArn removes the dead-letter queue.
type DeadLetterInput struct {
	TargetArn *string `json:"TargetArn"`
}

// roleRequests is implemented by RoleCheckers that evaluate actions on
// specific resources (iam.Roles).
type roleRequests interface {
	RoleAllowsRequests(ctx context.Context, accountID, roleARN string, reqs []iam.Request) (ok bool, missing []string, err error)
}

// checkDeadLetterArn checks the form of a dead-letter target: an SQS
// queue ARN (lambdaplane has no SNS).
func checkDeadLetterArn(arn string) error {
	if arn == "" {
		return nil
	}
	p := strings.Split(arn, ":")
	if len(p) == 6 && p[0] == "arn" && p[2] == "sns" {
		return invalidParam("DeadLetterConfig.TargetArn %s is an SNS topic; lambdaplane's dead-letter targets are SQS queues (arn:aws:sqs:REGION:ACCOUNT:NAME).", arn)
	}
	if len(p) != 6 || p[0] != "arn" || p[2] != "sqs" || p[3] == "" || p[4] == "" || p[5] == "" {
		return invalidParam("DeadLetterConfig.TargetArn %q is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME).", arn)
	}
	return nil
}

// checkDeadLetterRole: the execution role may send to the dead-letter queue.
func (s *Service) checkDeadLetterRole(ctx context.Context, acct, role, arn string) error {
	if arn == "" || s.o.Roles == nil {
		return nil
	}
	var ok bool
	var err error
	if rr, can := s.o.Roles.(roleRequests); can {
		ok, _, err = rr.RoleAllowsRequests(ctx, acct, role, []iam.Request{{Action: "sqs:SendMessage", Resource: arn}})
	} else {
		ok, _, err = s.o.Roles.RoleAllows(ctx, acct, role, []string{"sqs:SendMessage"})
	}
	if err != nil || !ok {
		return invalidParam("The provided execution role does not have permissions to call SendMessage on SQS: allow sqs:SendMessage on %s in %s.", arn, role)
	}
	return nil
}
