package esm

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// LastProcessingResult values, in Lambda's words: what the mapping's
// last poll came to.
const (
	ResultNone      = "No records processed"
	ResultOK        = "OK"
	ResultFailed    = "PROBLEM: Function call failed"
	ResultThrottled = "PROBLEM: Function call throttled"
	ResultNoQueue   = "PROBLEM: The SQS queue does not exist"
)

// resultNoAccess is the result of a poll the queue's Policy refuses.
func resultNoAccess(action string) string {
	return "PROBLEM: The function execution role does not have permissions to call " + strings.TrimPrefix(action, "sqs:") + " on SQS (the queue's Policy does not grant it to the role's account or the role)"
}

// policyRecheck is how often a poller of another account's queue checks
// the queue's Policy again.
const policyRecheck = time.Second

var errSkip = errors.New("skip")

// report records result as the mapping's LastProcessingResult when it
// differs from the last one recorded (one write per change, not per batch).
func (r *runner) report(m *Mapping, result string) {
	r.resultMu.Lock()
	defer r.resultMu.Unlock()
	if r.result == result {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 5*time.Second)
	defer cancel()
	_, _, err := r.p.o.Service.table.Update(ctx, key(m.AccountID, m.UUID), func(x *Mapping) error {
		if x.State == StateDeleting {
			return errSkip
		}
		x.LastProcessingResult = result
		return nil
	})
	switch {
	case err == nil:
		r.result = result
	case errors.Is(err, errSkip), errors.Is(err, store.ErrNotFound):
	default:
		r.p.log.Warn("recording an event source mapping's last processing result failed", "uuid", m.UUID, "err", err)
	}
}

// queueAccount is the account of an SQS queue ARN.
func queueAccount(arn string) string {
	p := strings.Split(arn, ":")
	if len(p) != 6 {
		return ""
	}
	return p[4]
}

// permitted reports whether the mapping may poll its queue now: always
// for a queue of its own account; for another account's, when the
// queue's Policy grants the function's execution role (or its account)
// every action a poller needs, checked again every policyRecheck.
func (r *runner) permitted(m *Mapping) bool {
	if queueAccount(m.EventSourceArn) == m.AccountID {
		return true
	}
	r.mu.Lock()
	if time.Since(r.policyChecked) < policyRecheck {
		ok := r.policyOK
		r.mu.Unlock()
		return ok
	}
	r.mu.Unlock()
	missing := ""
	cfg, err := r.p.o.Functions.Resolve(m.AccountID, m.Region, m.FunctionName, m.Qualifier)
	if err == nil {
		missing, err = r.p.o.Queues.Refused(r.ctx, m.EventSourceArn, m.AccountID, cfg.Role, sqsActions)
	}
	ok := err == nil && missing == ""
	r.mu.Lock()
	r.policyChecked, r.policyOK = time.Now(), ok
	r.mu.Unlock()
	switch {
	case errors.Is(err, ErrNoQueue):
		r.report(m, ResultNoQueue)
	case err != nil:
		if r.ctx.Err() == nil {
			r.p.log.Warn("checking the mapped queue's policy failed", "uuid", m.UUID, "err", err)
		}
	case missing != "":
		r.p.log.Warn("the mapped queue's policy does not let the function's role poll it", "uuid", m.UUID, "queue", m.EventSourceArn, "role", cfg.Role, "action", missing)
		r.report(m, resultNoAccess(missing))
	}
	return ok
}
