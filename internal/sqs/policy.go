package sqs

import (
	"context"

	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// Principal is who asks for a queue: an account (and the caller's ARN
// within it), or a service acting for a source resource.
type Principal struct {
	// Account is the caller's account ("" for a service principal).
	Account string
	// ARN is the caller's user or role ARN, if any.
	ARN string
	// Service is a service principal, e.g. "lambda.amazonaws.com".
	Service string
	// SourceARN and SourceAccount fill the aws:SourceArn and
	// aws:SourceAccount condition keys.
	SourceARN, SourceAccount string
}

// Allowed reports whether p may perform action (e.g. "sqs:SendMessage")
// on the queue arn names: the queue's own account always may (its
// identity policies are the caller's business); anyone else exactly when
// the queue's Policy allows it and does not deny it.
func (q *Queues) Allowed(ctx context.Context, arn string, p Principal, action string) bool {
	rec, err := q.Lookup(ctx, arn)
	if err != nil {
		return false
	}
	return PolicyAllows(rec, p, action)
}

// PolicyAllows is Allowed for a queue record.
func PolicyAllows(rec *Queue, p Principal, action string) bool {
	if p.Account != "" && p.Account == rec.Account {
		return true
	}
	doc := rec.Policy()
	if doc == "" {
		return false
	}
	pol, err := iam.ParsePolicy(doc, iam.ResourcePolicy)
	if err != nil {
		return false
	}
	ctx := map[string][]string{}
	if p.SourceARN != "" {
		ctx["aws:SourceArn"] = []string{p.SourceARN}
	}
	if p.SourceAccount != "" {
		ctx["aws:SourceAccount"] = []string{p.SourceAccount}
	}
	if p.Account != "" {
		ctx["aws:PrincipalAccount"] = []string{p.Account}
	}
	var ids [][2]string
	if p.Service != "" {
		ids = append(ids, [2]string{"Service", p.Service})
	}
	if p.Account != "" {
		ids = append(ids, [2]string{"AWS", p.Account}, [2]string{"AWS", "arn:aws:iam::" + p.Account + ":root"})
	}
	if p.ARN != "" {
		ids = append(ids, [2]string{"AWS", p.ARN})
	}
	allowed := false
	for _, id := range ids {
		switch iam.Evaluate(iam.Request{Action: action, Resource: rec.ARN(), PrincipalType: id[0], PrincipalID: id[1], Context: ctx}, pol) {
		case iam.ExplicitDeny:
			return false
		case iam.Allowed:
			allowed = true
		}
	}
	return allowed
}
