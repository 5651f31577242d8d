package iam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

const usersBucket = "iam_users" // key: <account>.<escaped lower-case user name>

// User is an IAM user of one account: a principal with its own access keys
// (kept by the accounts registry) whose requests are allowed only what its
// identity policies allow. The account's root key is allowed everything.
type User struct {
	AccountID  string    `json:"accountId"`
	UserName   string    `json:"userName"`
	UserID     string    `json:"userId"`
	Path       string    `json:"path"`
	Arn        string    `json:"arn"`
	CreateDate time.Time `json:"createDate"`
	Tags       []Tag     `json:"tags,omitempty"`
	PolicySet
}

// Users is the store-backed registry of IAM users of all accounts.
type Users struct {
	t   *store.Table[User]
	now func() time.Time
}

// NewUsers opens the users table.
func NewUsers(ctx context.Context, s *store.Store) (*Users, error) {
	t, err := store.NewTable[User](ctx, s, usersBucket)
	if err != nil {
		return nil, err
	}
	return &Users{t: t, now: time.Now}, nil
}

// UserARN is the ARN of user name with path in accountID.
func UserARN(accountID, path, name string) string {
	return "arn:aws:iam::" + accountID + ":user" + path + name
}

func validateUserName(name string) error {
	if len(name) < 1 || len(name) > 64 || !reName.MatchString(name) {
		return errorf(ErrValidation, "1 validation error detected: Value '%s' at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length between 1 and 64", name)
	}
	return nil
}

func userKey(accountID, name string) string {
	return accountID + "." + escapeKey(strings.ToLower(name))
}

// CreateUser creates user name (path "" = "/").
func (u *Users) CreateUser(ctx context.Context, accountID, name, path string, tags []Tag) (*User, error) {
	if err := validateUserName(name); err != nil {
		return nil, err
	}
	if path == "" {
		path = "/"
	}
	if err := validatePath(path); err != nil {
		return nil, err
	}
	id, err := newRoleID()
	if err != nil {
		return nil, err
	}
	user := &User{AccountID: accountID, UserName: name, UserID: "AIDA" + strings.TrimPrefix(id, "AROA"), Path: path,
		Arn: UserARN(accountID, path, name), CreateDate: u.now().UTC().Truncate(time.Second), Tags: tags}
	if _, err := u.t.Create(ctx, userKey(accountID, name), user); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, errorf(ErrEntityAlreadyExists, "User with name %s already exists.", name)
		}
		return nil, err
	}
	return user, nil
}

// GetUser returns user name.
func (u *Users) GetUser(ctx context.Context, accountID, name string) (*User, error) {
	if err := validateUserName(name); err != nil {
		return nil, err
	}
	user, _, err := u.t.Get(ctx, userKey(accountID, name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(ErrNoSuchEntity, "The user with name %s cannot be found.", name)
	}
	return user, err
}

// ListUsers returns the account's users whose path starts with pathPrefix,
// ordered by name.
func (u *Users) ListUsers(ctx context.Context, accountID, pathPrefix string) ([]User, error) {
	es, err := u.t.List(ctx, accountID+".>")
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(es))
	for _, e := range es {
		if strings.HasPrefix(e.Value.Path, pathPrefix) {
			out = append(out, *e.Value)
		}
	}
	slices.SortFunc(out, func(a, b User) int {
		return strings.Compare(strings.ToLower(a.UserName), strings.ToLower(b.UserName))
	})
	return out, nil
}

// DeleteUser deletes a user without policies; hasKeys reports whether it
// still has access keys (DeleteConflict then, as on AWS).
func (u *Users) DeleteUser(ctx context.Context, accountID, name string, hasKeys func() (bool, error)) error {
	user, err := u.GetUser(ctx, accountID, name)
	if err != nil {
		return err
	}
	if err := user.conflict(); err != nil {
		return err
	}
	if keys, err := hasKeys(); err != nil {
		return err
	} else if keys {
		return errorf(ErrDeleteConflict, "Cannot delete entity, must delete access keys first.")
	}
	return u.t.Delete(ctx, userKey(accountID, name))
}

func (u *Users) update(ctx context.Context, accountID, name string, fn func(*User) error) error {
	if err := validateUserName(name); err != nil {
		return err
	}
	_, _, err := u.t.Update(ctx, userKey(accountID, name), fn)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(ErrNoSuchEntity, "The user with name %s cannot be found.", name)
	}
	return err
}

// AttachUserPolicy attaches a managed policy to a user.
func (u *Users) AttachUserPolicy(ctx context.Context, accountID, name, policyARN string) error {
	if _, ok := LookupManagedPolicy(policyARN); !ok {
		return errorf(ErrNoSuchEntity, "Policy %s does not exist or is not attachable.", policyARN)
	}
	return u.update(ctx, accountID, name, func(user *User) error { return user.attach(policyARN, "User") })
}

// DetachUserPolicy detaches a managed policy.
func (u *Users) DetachUserPolicy(ctx context.Context, accountID, name, policyARN string) error {
	return u.update(ctx, accountID, name, func(user *User) error { return user.detach(policyARN) })
}

// ListAttachedUserPolicies lists the managed policies attached to a user.
func (u *Users) ListAttachedUserPolicies(ctx context.Context, accountID, name string) ([]AttachedPolicy, error) {
	user, err := u.GetUser(ctx, accountID, name)
	if err != nil {
		return nil, err
	}
	return user.attached(), nil
}

// PutUserPolicy adds or replaces an inline policy of a user.
func (u *Users) PutUserPolicy(ctx context.Context, accountID, name, policyName, document string) error {
	if err := validatePolicyName(policyName); err != nil {
		return err
	}
	doc, _, err := normalizeDocument(document, IdentityPolicy)
	if err != nil {
		return err
	}
	return u.update(ctx, accountID, name, func(user *User) error { return user.putInline(policyName, doc, "user", name) })
}

// GetUserPolicy returns an inline policy document (JSON).
func (u *Users) GetUserPolicy(ctx context.Context, accountID, name, policyName string) (string, error) {
	user, err := u.GetUser(ctx, accountID, name)
	if err != nil {
		return "", err
	}
	return user.inline(policyName, "user")
}

// DeleteUserPolicy deletes an inline policy of a user.
func (u *Users) DeleteUserPolicy(ctx context.Context, accountID, name, policyName string) error {
	return u.update(ctx, accountID, name, func(user *User) error { return user.deleteInline(policyName, "user") })
}

// ListUserPolicies lists the names of a user's inline policies, sorted.
func (u *Users) ListUserPolicies(ctx context.Context, accountID, name string) ([]string, error) {
	user, err := u.GetUser(ctx, accountID, name)
	if err != nil {
		return nil, err
	}
	return user.inlineNames(), nil
}

// Authorize decides whether IAM user name of accountID may perform req
// (Action, Resource, Context; condition keys in lower or mixed case). It
// returns nil when the user's policies allow it, *auth.AccessDenied when
// they do not (implicitly or explicitly), or another error.
func (u *Users) Authorize(ctx context.Context, accountID, name string, req Request) error {
	user, err := u.GetUser(ctx, accountID, name)
	if errors.Is(err, ErrNoSuchEntity) {
		return &auth.AccessDenied{Caller: UserARN(accountID, "/", name), Action: req.Action, Resource: req.Resource, Reason: "because the user no longer exists"}
	}
	if err != nil {
		return err
	}
	pols, err := user.policies("user " + name)
	if err != nil {
		return err
	}
	switch Evaluate(req, pols...) {
	case Allowed:
		return nil
	case ExplicitDeny:
		return &auth.AccessDenied{Caller: user.Arn, Action: req.Action, Resource: req.Resource, Reason: "with an explicit deny in an identity-based policy"}
	}
	return &auth.AccessDenied{Caller: user.Arn, Action: req.Action, Resource: req.Resource, Reason: fmt.Sprintf("because no identity-based policy allows the %s action", req.Action)}
}
