package sts

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// Limits of STS.
const (
	MinDuration          = 900 * time.Second
	chainedMaxDuration   = time.Hour
	maxSessionToken      = 36 * time.Hour
	maxRootSessionToken  = time.Hour
	defaultSessionToken  = 12 * time.Hour
	defaultAssumeRole    = time.Hour
	maxSessionPolicySize = 2048
)

var reSessionName = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

// AssumeRoleInput is AssumeRole's request.
type AssumeRoleInput struct {
	RoleArn         string
	RoleSessionName string
	DurationSeconds int    // 0 = 3600
	Policy          string // session policy (JSON), optional
}

// AssumeRoleOutput is AssumeRole's result.
type AssumeRoleOutput struct {
	Session          *auth.Session
	AssumedRoleID    string // AROA…:session
	Arn              string // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
	PackedPolicySize int    // percent of the allowed size, when a policy was given
}

// CallerIdentity is GetCallerIdentity's answer.
type CallerIdentity struct {
	Account, Arn, UserID string
}

// GetCallerIdentity names the caller: the account root, an IAM user (its
// AIDA… id) or a role session (AROA…:session).
func (s *Service) GetCallerIdentity(ctx context.Context, id auth.Identity) (CallerIdentity, error) {
	switch {
	case id.Role != "":
		return CallerIdentity{Account: id.AccountID, Arn: id.ARN(), UserID: id.RoleID + ":" + id.Session}, nil
	case id.User != "":
		u, err := s.users.GetUser(ctx, id.AccountID, id.User)
		if err != nil {
			return CallerIdentity{}, err
		}
		return CallerIdentity{Account: id.AccountID, Arn: u.Arn, UserID: u.UserID}, nil
	}
	return CallerIdentity{Account: id.AccountID, Arn: id.ARN(), UserID: id.AccountID}, nil
}

// callerARN is the caller's ARN as a trust policy names it: a user's own
// ARN (with its path), a role session's role ARN.
func (s *Service) callerARNs(ctx context.Context, id auth.Identity) ([]string, error) {
	switch {
	case id.Role != "":
		return []string{iam.RoleARN(id.AccountID, id.RolePath, id.Role), id.ARN()}, nil
	case id.User != "":
		u, err := s.users.GetUser(ctx, id.AccountID, id.User)
		if err != nil {
			return nil, err
		}
		return []string{u.Arn}, nil
	}
	return []string{id.ARN()}, nil
}

func denied(id auth.Identity, action, resource, reason string) error {
	return &Error{Code: "AccessDenied", Status: 403, Msg: (&auth.AccessDenied{Caller: id.ARN(), Action: action, Resource: resource, Reason: reason}).Error()}
}

// AssumeRole issues credentials of a role session for caller, if the
// role's trust policy (and, where IAM requires it, the caller's identity
// policies) allow it.
func (s *Service) AssumeRole(ctx context.Context, caller auth.Identity, in AssumeRoleInput) (*AssumeRoleOutput, error) {
	if in.RoleArn == "" {
		return nil, validation("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
	}
	if in.RoleSessionName == "" {
		return nil, validation("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
	}
	if !reSessionName.MatchString(in.RoleSessionName) {
		return nil, validation("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64 and satisfy regular expression pattern: [\\w+=,.@-]*", in.RoleSessionName)
	}
	if len(in.RoleArn) < 20 || len(in.RoleArn) > 2048 {
		return nil, validation("1 validation error detected: Value '%s' at 'roleArn' failed to satisfy constraint: Member must have length between 20 and 2048", in.RoleArn)
	}
	acct, _, _, err := iam.ParseRoleARN(in.RoleArn)
	if err != nil {
		return nil, validation("%s is invalid: RoleArn must be an IAM role ARN, arn:aws:iam::123456789012:role/NAME", in.RoleArn)
	}
	d := defaultAssumeRole
	if in.DurationSeconds != 0 {
		if in.DurationSeconds < int(MinDuration/time.Second) {
			return nil, validation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900", in.DurationSeconds)
		}
		if in.DurationSeconds > 43200 {
			return nil, validation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 43200", in.DurationSeconds)
		}
		d = time.Duration(in.DurationSeconds) * time.Second
	}
	var sessPol *iam.Policy
	if in.Policy != "" {
		if len(in.Policy) > maxSessionPolicySize {
			return nil, validation("1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to %d", maxSessionPolicySize)
		}
		if sessPol, err = iam.ParsePolicy(in.Policy, iam.IdentityPolicy); err != nil {
			return nil, &Error{Code: "MalformedPolicyDocument", Status: 400, Msg: "The session policy is not valid: " + err.Error()}
		}
	}
	const action = "sts:AssumeRole"
	if !caller.Restricted() {
		return nil, &Error{Code: "AccessDenied", Status: 403, Msg: "Roles may not be assumed by root accounts. Call AssumeRole with an IAM user's or a role session's credentials."}
	}
	role, err := s.roles.GetRoleByARN(ctx, in.RoleArn)
	if errors.Is(err, iam.ErrNoSuchEntity) || (err == nil && role.AccountID != acct) {
		return nil, denied(caller, action, in.RoleArn, "")
	} else if err != nil {
		return nil, err
	}
	if caller.Role != "" && d > chainedMaxDuration {
		if in.DurationSeconds != 0 {
			return nil, validation("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
		}
		d = chainedMaxDuration
	}
	if d > time.Duration(role.MaxSessionDuration)*time.Second {
		return nil, validation("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}
	if err := s.trusts(ctx, caller, role, in.RoleSessionName); err != nil {
		return nil, err
	}
	sess, err := s.issue(ctx, &auth.Session{
		AccountID: role.AccountID, Role: role.RoleName, RoleID: role.RoleID, RolePath: role.Path,
		SessionName: in.RoleSessionName, SessionPolicy: in.Policy,
	}, d)
	if err != nil {
		return nil, err
	}
	out := &AssumeRoleOutput{Session: sess, AssumedRoleID: role.RoleID + ":" + in.RoleSessionName, Arn: sess.Identity().ARN()}
	if sessPol != nil {
		out.PackedPolicySize = max(1, len(compact(in.Policy))*100/maxSessionPolicySize)
	}
	return out, nil
}

// compact drops the insignificant whitespace of a JSON document (the
// packed size AWS reports ignores it).
func compact(doc string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(doc); i++ {
		c := doc[i]
		switch {
		case c == '"' && (i == 0 || doc[i-1] != '\\'):
			in = !in
		case !in && (c == ' ' || c == '\n' || c == '\t' || c == '\r'):
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// trusts decides whether caller may assume role: the trust policy must
// allow it; when the policy names the caller only through its account (or
// the role is another account's), the caller's own policies must allow
// sts:AssumeRole on the role as well.
func (s *Service) trusts(ctx context.Context, caller auth.Identity, role *iam.Role, sessionName string) error {
	const action = "sts:AssumeRole"
	trust, err := iam.ParsePolicy(role.AssumeRolePolicyDocument, iam.TrustPolicy)
	if err != nil {
		return err
	}
	arns, err := s.callerARNs(ctx, caller)
	if err != nil {
		return err
	}
	cond := map[string][]string{
		"aws:PrincipalAccount": {caller.AccountID},
		"aws:PrincipalArn":     {arns[0]},
		"sts:RoleSessionName":  {sessionName},
	}
	if caller.User != "" {
		cond["aws:username"] = []string{caller.User}
	}
	eval := func(principal string) iam.Decision {
		return iam.Evaluate(iam.Request{Action: action, Resource: role.Arn, PrincipalType: "AWS", PrincipalID: principal, Context: cond}, trust)
	}
	byName, byAccount := false, false
	for _, p := range append(append([]string{}, arns...), "arn:aws:iam::"+caller.AccountID+":root", caller.AccountID) {
		switch eval(p) {
		case iam.ExplicitDeny:
			return denied(caller, action, role.Arn, "with an explicit deny in a resource-based policy")
		case iam.Allowed:
			if p == arns[0] || p == arns[len(arns)-1] {
				byName = true
			} else {
				byAccount = true
			}
		}
	}
	if !byName && !byAccount {
		return denied(caller, action, role.Arn, "")
	}
	if byName && caller.AccountID == role.AccountID {
		return nil
	}
	// The caller's own policies must allow it too.
	if err := s.Authorize(ctx, caller, iam.Request{Action: action, Resource: role.Arn}); err != nil {
		var ad *auth.AccessDenied
		if errors.As(err, &ad) {
			return &Error{Code: "AccessDenied", Status: 403, Msg: ad.Error()}
		}
		return err
	}
	return nil
}

// GetSessionToken issues temporary credentials that act as the caller
// (an IAM user or the account root) for d (0 = 12 hours; the root: 1 hour).
func (s *Service) GetSessionToken(ctx context.Context, caller auth.Identity, durationSeconds int) (*auth.Session, error) {
	if caller.Temporary {
		return nil, &Error{Code: "AccessDenied", Status: 403, Msg: "Cannot call GetSessionToken with session credentials"}
	}
	d, maxD := defaultSessionToken, maxSessionToken
	if caller.User == "" {
		d, maxD = maxRootSessionToken, maxRootSessionToken
	}
	if durationSeconds != 0 {
		if durationSeconds < int(MinDuration/time.Second) {
			return nil, validation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900", durationSeconds)
		}
		if durationSeconds > int(maxSessionToken/time.Second) {
			return nil, validation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 129600", durationSeconds)
		}
		d = min(time.Duration(durationSeconds)*time.Second, maxD)
	}
	return s.issue(ctx, &auth.Session{AccountID: caller.AccountID, User: caller.User}, d)
}

// ErrNotAssumable is wrapped by RoleCredentials' errors when Lambda could
// not assume the role at all (it is gone, of another account, or does not
// trust lambda.amazonaws.com): the function's configuration is at fault,
// not the store.
var ErrNotAssumable = errors.New("The role defined for the function cannot be assumed by Lambda")

// RoleCredentials issues the credentials of an execution environment:
// a session of role roleARN (of accountID) named sessionName (the
// function's name) lasting d. The role must still exist and trust
// lambda.amazonaws.com, as Lambda checks when it assumes it; when it does
// not, the error wraps ErrNotAssumable. Any other error is the store's.
func (s *Service) RoleCredentials(ctx context.Context, accountID, roleARN, sessionName string, d time.Duration) (*auth.Session, error) {
	role, err := s.roles.GetRoleByARN(ctx, roleARN)
	var ierr *iam.Error
	switch {
	case errors.As(err, &ierr): // gone, or not a role ARN
		return nil, fmt.Errorf("%w: %v", ErrNotAssumable, err)
	case err != nil:
		return nil, fmt.Errorf("read role %s: %w", roleARN, err)
	case role.AccountID != accountID:
		return nil, fmt.Errorf("%w: role %s belongs to another account", ErrNotAssumable, roleARN)
	}
	ok, err := s.roles.TrustsService(ctx, roleARN, "lambda.amazonaws.com")
	if err != nil {
		return nil, fmt.Errorf("read the trust policy of role %s: %w", roleARN, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s does not trust lambda.amazonaws.com", ErrNotAssumable, roleARN)
	}
	if len(sessionName) > 64 {
		sessionName = sessionName[:64]
	}
	return s.issue(ctx, &auth.Session{AccountID: accountID, Role: role.RoleName, RoleID: role.RoleID, RolePath: role.Path, SessionName: sessionName}, d)
}

// Authorize decides a request of a restricted caller: an IAM user by its
// identity policies, a role session by its role's identity policies and
// its session policy (both must allow; a deny in either denies). It
// returns nil, an *auth.AccessDenied, or another error.
func (s *Service) Authorize(ctx context.Context, id auth.Identity, req iam.Request) error {
	if id.Role == "" {
		if id.User == "" {
			return nil
		}
		return s.users.Authorize(ctx, id.AccountID, id.User, req)
	}
	role, err := s.roles.GetRole(ctx, id.AccountID, id.Role)
	if errors.Is(err, iam.ErrNoSuchEntity) || (err == nil && role.RoleID != id.RoleID) {
		return &auth.AccessDenied{Caller: id.ARN(), Action: req.Action, Resource: req.Resource, Reason: "because the role " + id.Role + " no longer exists"}
	}
	if err != nil {
		return err
	}
	pols, err := role.Policies()
	if err != nil {
		return err
	}
	d := iam.Evaluate(req, pols...)
	if d == iam.Allowed && id.SessionPolicy != "" {
		sp, err := iam.ParsePolicy(id.SessionPolicy, iam.IdentityPolicy)
		if err != nil {
			return err
		}
		switch iam.Evaluate(req, sp) {
		case iam.ExplicitDeny:
			return &auth.AccessDenied{Caller: id.ARN(), Action: req.Action, Resource: req.Resource, Reason: "with an explicit deny in a session policy"}
		case iam.ImplicitDeny:
			return &auth.AccessDenied{Caller: id.ARN(), Action: req.Action, Resource: req.Resource, Reason: "because no session policy allows the " + req.Action + " action"}
		}
	}
	switch d {
	case iam.Allowed:
		return nil
	case iam.ExplicitDeny:
		return &auth.AccessDenied{Caller: id.ARN(), Action: req.Action, Resource: req.Resource, Reason: "with an explicit deny in an identity-based policy"}
	}
	return &auth.AccessDenied{Caller: id.ARN(), Action: req.Action, Resource: req.Resource, Reason: "because no identity-based policy allows the " + req.Action + " action"}
}
