package iam

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	rolesBucket = "iam_roles" // key: <account>.<escaped lower-case role name>

	maxTrustPolicyLen   = 2048  // AWS default quota for a trust policy
	maxInlinePoliciesSz = 10240 // total inline policy characters per role
	maxAttachedPolicies = 10    // managed policies per role (AWS default)
	defaultMaxSession   = 3600
)

// Role is an IAM role of one account.
type Role struct {
	AccountID                string    `json:"accountId"`
	RoleName                 string    `json:"roleName"`
	RoleID                   string    `json:"roleId"`
	Path                     string    `json:"path"`
	Arn                      string    `json:"arn"`
	AssumeRolePolicyDocument string    `json:"assumeRolePolicyDocument"` // JSON
	Description              string    `json:"description,omitempty"`
	MaxSessionDuration       int       `json:"maxSessionDuration"`
	CreateDate               time.Time `json:"createDate"`
	Tags                     []Tag     `json:"tags,omitempty"`
	PolicySet
}

// Tag is a role tag.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// AttachedPolicy names a managed policy attached to a role.
type AttachedPolicy struct {
	PolicyName string
	PolicyArn  string
}

// CreateRoleInput holds CreateRole's parameters.
type CreateRoleInput struct {
	RoleName                 string
	Path                     string // default "/"
	AssumeRolePolicyDocument string
	Description              string
	MaxSessionDuration       int // seconds, 0 = 3600
	Tags                     []Tag
}

// Roles is the store-backed registry of IAM roles of all accounts.
type Roles struct {
	t   *store.Table[Role]
	now func() time.Time
}

// NewRoles opens the roles table.
func NewRoles(ctx context.Context, s *store.Store) (*Roles, error) {
	t, err := store.NewTable[Role](ctx, s, rolesBucket)
	if err != nil {
		return nil, err
	}
	return &Roles{t: t, now: time.Now}, nil
}

var (
	reName      = regexp.MustCompile(`^[\w+=,.@-]+$`)
	reAccountID = regexp.MustCompile(`^[0-9]{12}$`)
)

func validateRoleName(name string) error {
	if len(name) < 1 || len(name) > 64 || !reName.MatchString(name) {
		return errorf(ErrValidation, "1 validation error detected: Value '%s' at 'roleName' failed to satisfy constraint: Member must have length 1-64 and match [\\w+=,.@-]+", name)
	}
	return nil
}

func validatePath(p string) error {
	if p == "/" {
		return nil
	}
	if len(p) > 512 || len(p) < 2 || p[0] != '/' || p[len(p)-1] != '/' {
		return errorf(ErrValidation, "The specified value for path is invalid. It must begin and end with / and contain only alphanumeric characters and/or / characters.")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x21 || p[i] > 0x7e {
			return errorf(ErrValidation, "The specified value for path is invalid. It must contain only printable ASCII characters.")
		}
	}
	return nil
}

func validatePolicyName(name string) error {
	if len(name) < 1 || len(name) > 128 || !reName.MatchString(name) {
		return errorf(ErrValidation, "1 validation error detected: Value '%s' at 'policyName' failed to satisfy constraint: Member must have length 1-128 and match [\\w+=,.@-]+", name)
	}
	return nil
}

// roleKey is the store key of a role: role names are unique per account
// regardless of case, and escaped to the characters KV keys allow.
func roleKey(accountID, name string) string {
	return accountID + "." + escapeKey(strings.ToLower(name))
}

func escapeKey(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

// RoleARN is the ARN of a role.
func RoleARN(accountID, path, name string) string {
	if path == "" {
		path = "/"
	}
	return "arn:aws:iam::" + accountID + ":role" + path + name
}

// ParseRoleARN splits arn:aws:iam::ACCOUNT:role/PATH/NAME.
func ParseRoleARN(arn string) (accountID, path, name string, err error) {
	rest, ok := strings.CutPrefix(arn, "arn:aws:iam::")
	if !ok {
		return "", "", "", errorf(ErrValidation, "%q is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)", arn)
	}
	accountID, res, ok := strings.Cut(rest, ":")
	if !ok || !reAccountID.MatchString(accountID) || !strings.HasPrefix(res, "role/") {
		return "", "", "", errorf(ErrValidation, "%q is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)", arn)
	}
	res = res[len("role"):]
	i := strings.LastIndexByte(res, '/')
	path, name = res[:i+1], res[i+1:]
	if validateRoleName(name) != nil {
		return "", "", "", errorf(ErrValidation, "%q is not an IAM role ARN: bad role name", arn)
	}
	return accountID, path, name, nil
}

func newRoleID() (string, error) {
	var b [11]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "AROA" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:17], nil
}

// normalizeDocument accepts a JSON document, or one URL-encoded once more
// (as some clients send), validates it and returns the JSON.
func normalizeDocument(doc string, kind PolicyKind) (string, *Policy, error) {
	p, err := ParsePolicy(doc, kind)
	if err != nil {
		if dec, derr := url.QueryUnescape(doc); derr == nil && dec != doc {
			if p2, err2 := ParsePolicy(dec, kind); err2 == nil {
				return dec, p2, nil
			}
		}
		return "", nil, err
	}
	return doc, p, nil
}

// CreateRole creates a role in accountID.
func (r *Roles) CreateRole(ctx context.Context, accountID string, in CreateRoleInput) (*Role, error) {
	if err := validateRoleName(in.RoleName); err != nil {
		return nil, err
	}
	if in.Path == "" {
		in.Path = "/"
	}
	if err := validatePath(in.Path); err != nil {
		return nil, err
	}
	if in.AssumeRolePolicyDocument == "" {
		return nil, errorf(ErrValidation, "1 validation error detected: Value null at 'assumeRolePolicyDocument' failed to satisfy constraint: Member must not be null")
	}
	doc, _, err := normalizeDocument(in.AssumeRolePolicyDocument, TrustPolicy)
	if err != nil {
		return nil, err
	}
	if len(doc) > maxTrustPolicyLen {
		return nil, errorf(ErrLimitExceeded, "Cannot exceed quota for ACLSizePerRole: %d", maxTrustPolicyLen)
	}
	if len(in.Description) > 1000 {
		return nil, errorf(ErrValidation, "Description must be at most 1000 characters.")
	}
	if in.MaxSessionDuration == 0 {
		in.MaxSessionDuration = defaultMaxSession
	}
	if in.MaxSessionDuration < 3600 || in.MaxSessionDuration > 43200 {
		return nil, errorf(ErrValidation, "MaxSessionDuration must be between 3600 and 43200 seconds, got %d.", in.MaxSessionDuration)
	}
	id, err := newRoleID()
	if err != nil {
		return nil, err
	}
	role := &Role{
		AccountID:                accountID,
		RoleName:                 in.RoleName,
		RoleID:                   id,
		Path:                     in.Path,
		Arn:                      RoleARN(accountID, in.Path, in.RoleName),
		AssumeRolePolicyDocument: doc,
		Description:              in.Description,
		MaxSessionDuration:       in.MaxSessionDuration,
		CreateDate:               r.now().UTC().Truncate(time.Second),
		Tags:                     in.Tags,
	}
	if _, err := r.t.Create(ctx, roleKey(accountID, in.RoleName), role); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, errorf(ErrEntityAlreadyExists, "Role with name %s already exists.", in.RoleName)
		}
		return nil, err
	}
	return role, nil
}

// GetRole returns the role named name.
func (r *Roles) GetRole(ctx context.Context, accountID, name string) (*Role, error) {
	if err := validateRoleName(name); err != nil {
		return nil, err
	}
	role, _, err := r.t.Get(ctx, roleKey(accountID, name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(ErrNoSuchEntity, "The role with name %s cannot be found.", name)
	}
	return role, err
}

// GetRoleByARN returns the role arn names (its path must match too).
func (r *Roles) GetRoleByARN(ctx context.Context, arn string) (*Role, error) {
	acct, path, name, err := ParseRoleARN(arn)
	if err != nil {
		return nil, err
	}
	role, err := r.GetRole(ctx, acct, name)
	if err != nil {
		return nil, err
	}
	if role.Path != path || role.RoleName != name {
		return nil, errorf(ErrNoSuchEntity, "The role %s cannot be found (the role is %s).", arn, role.Arn)
	}
	return role, nil
}

// update applies fn to a role with revision-checked retries.
func (r *Roles) update(ctx context.Context, accountID, name string, fn func(*Role) error) (*Role, error) {
	if err := validateRoleName(name); err != nil {
		return nil, err
	}
	role, _, err := r.t.Update(ctx, roleKey(accountID, name), fn)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(ErrNoSuchEntity, "The role with name %s cannot be found.", name)
	}
	return role, err
}

// DeleteRole deletes a role that has no attached or inline policies left
// (DeleteConflict otherwise, as on AWS).
func (r *Roles) DeleteRole(ctx context.Context, accountID, name string) error {
	if err := validateRoleName(name); err != nil {
		return err
	}
	key := roleKey(accountID, name)
	for attempt := 0; ; attempt++ {
		role, rev, err := r.t.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return errorf(ErrNoSuchEntity, "The role with name %s cannot be found.", name)
		}
		if err != nil {
			return err
		}
		if err := role.conflict(); err != nil {
			return err
		}
		// Purge only the revision checked above, so a policy attached
		// meanwhile is never lost with the role.
		err = r.t.KV().Purge(ctx, key, jetstream.LastRevision(rev))
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence && attempt < 50 {
			continue
		}
		return fmt.Errorf("delete role %s: %w", name, err)
	}
}

// ListRoles returns the account's roles whose path starts with pathPrefix
// ("" or "/" for all), ordered by name.
func (r *Roles) ListRoles(ctx context.Context, accountID, pathPrefix string) ([]Role, error) {
	es, err := r.t.List(ctx, accountID+".>")
	if err != nil {
		return nil, err
	}
	out := make([]Role, 0, len(es))
	for _, e := range es {
		if strings.HasPrefix(e.Value.Path, pathPrefix) {
			out = append(out, *e.Value)
		}
	}
	slices.SortFunc(out, func(a, b Role) int {
		return strings.Compare(strings.ToLower(a.RoleName), strings.ToLower(b.RoleName))
	})
	return out, nil
}

// AttachRolePolicy attaches a managed policy (one of the AWS-managed
// policies lambdaplane knows). Attaching an attached policy is a no-op.
func (r *Roles) AttachRolePolicy(ctx context.Context, accountID, name, policyARN string) error {
	if _, ok := LookupManagedPolicy(policyARN); !ok {
		return errorf(ErrNoSuchEntity, "Policy %s does not exist or is not attachable.", policyARN)
	}
	_, err := r.update(ctx, accountID, name, func(role *Role) error { return role.attach(policyARN, "Role") })
	return err
}

// DetachRolePolicy detaches a managed policy.
func (r *Roles) DetachRolePolicy(ctx context.Context, accountID, name, policyARN string) error {
	_, err := r.update(ctx, accountID, name, func(role *Role) error { return role.detach(policyARN) })
	return err
}

// ListAttachedRolePolicies lists the managed policies attached to a role.
func (r *Roles) ListAttachedRolePolicies(ctx context.Context, accountID, name string) ([]AttachedPolicy, error) {
	role, err := r.GetRole(ctx, accountID, name)
	if err != nil {
		return nil, err
	}
	return role.attached(), nil
}

// PutRolePolicy adds or replaces an inline policy.
func (r *Roles) PutRolePolicy(ctx context.Context, accountID, name, policyName, document string) error {
	if err := validatePolicyName(policyName); err != nil {
		return err
	}
	doc, _, err := normalizeDocument(document, IdentityPolicy)
	if err != nil {
		return err
	}
	_, err = r.update(ctx, accountID, name, func(role *Role) error { return role.putInline(policyName, doc, "role", name) })
	return err
}

// GetRolePolicy returns an inline policy document (JSON).
func (r *Roles) GetRolePolicy(ctx context.Context, accountID, name, policyName string) (string, error) {
	role, err := r.GetRole(ctx, accountID, name)
	if err != nil {
		return "", err
	}
	return role.inline(policyName, "role")
}

// DeleteRolePolicy deletes an inline policy.
func (r *Roles) DeleteRolePolicy(ctx context.Context, accountID, name, policyName string) error {
	_, err := r.update(ctx, accountID, name, func(role *Role) error { return role.deleteInline(policyName, "role") })
	return err
}

// ListRolePolicies lists the names of a role's inline policies, sorted.
func (r *Roles) ListRolePolicies(ctx context.Context, accountID, name string) ([]string, error) {
	role, err := r.GetRole(ctx, accountID, name)
	if err != nil {
		return nil, err
	}
	return role.inlineNames(), nil
}

// UpdateAssumeRolePolicy replaces a role's trust policy.
func (r *Roles) UpdateAssumeRolePolicy(ctx context.Context, accountID, name, document string) error {
	doc, _, err := normalizeDocument(document, TrustPolicy)
	if err != nil {
		return err
	}
	if len(doc) > maxTrustPolicyLen {
		return errorf(ErrLimitExceeded, "Cannot exceed quota for ACLSizePerRole: %d", maxTrustPolicyLen)
	}
	_, err = r.update(ctx, accountID, name, func(role *Role) error {
		role.AssumeRolePolicyDocument = doc
		return nil
	})
	return err
}

// Policies returns the parsed identity policies of role: attached managed
// policies, then inline ones.
func (role *Role) Policies() ([]*Policy, error) { return role.policies("role " + role.RoleName) }

// RoleAllows reports whether the role roleARN (which must belong to
// accountID) is allowed every action on resource "*" with no condition
// context; missing lists the actions that are not allowed (implicitly or
// explicitly denied).
func (r *Roles) RoleAllows(ctx context.Context, accountID, roleARN string, actions []string) (ok bool, missing []string, err error) {
	reqs := make([]Request, len(actions))
	for i, a := range actions {
		reqs[i] = Request{Action: a, Resource: "*"}
	}
	return r.RoleAllowsRequests(ctx, accountID, roleARN, reqs)
}

// RoleAllowsRequests is RoleAllows with explicit resources and condition
// context per request; missing lists the actions of the denied requests.
func (r *Roles) RoleAllowsRequests(ctx context.Context, accountID, roleARN string, reqs []Request) (ok bool, missing []string, err error) {
	acct, _, _, err := ParseRoleARN(roleARN)
	if err != nil {
		return false, nil, err
	}
	if acct != accountID {
		return false, nil, errorf(ErrValidation, "Role %s belongs to account %s, not to %s.", roleARN, acct, accountID)
	}
	role, err := r.GetRoleByARN(ctx, roleARN)
	if err != nil {
		return false, nil, err
	}
	pols, err := role.Policies()
	if err != nil {
		return false, nil, err
	}
	for _, req := range reqs {
		if Evaluate(req, pols...) != Allowed {
			missing = append(missing, req.Action)
		}
	}
	return len(missing) == 0, missing, nil
}

// TrustsService reports whether roleARN's trust policy lets service (e.g.
// "lambda.amazonaws.com") call sts:AssumeRole.
func (r *Roles) TrustsService(ctx context.Context, roleARN, service string) (bool, error) {
	role, err := r.GetRoleByARN(ctx, roleARN)
	if err != nil {
		return false, err
	}
	p, err := ParsePolicy(role.AssumeRolePolicyDocument, TrustPolicy)
	if err != nil {
		return false, err
	}
	d := Evaluate(Request{Action: "sts:AssumeRole", Resource: role.Arn, PrincipalType: "Service", PrincipalID: service}, p)
	return d == Allowed, nil
}
