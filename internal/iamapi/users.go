package iamapi

import (
	"context"
	"errors"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// Keys issues and revokes IAM users' access keys (auth.Accounts).
type Keys interface {
	CreateUserKey(ctx context.Context, acctID, user string) (auth.AccessKey, error)
	DeleteUserKey(ctx context.Context, acctID, user, keyID string) error
	UserKeys(ctx context.Context, acctID, user string) ([]auth.AccessKey, error)
}

type xmlUser struct {
	Path       string           `xml:"Path"`
	UserName   string           `xml:"UserName"`
	UserID     string           `xml:"UserId"`
	Arn        string           `xml:"Arn"`
	CreateDate string           `xml:"CreateDate"`
	Tags       *members[xmlTag] `xml:"Tags,omitempty"`
}

func toXMLUser(u *iam.User, withTags bool) xmlUser {
	x := xmlUser{Path: u.Path, UserName: u.UserName, UserID: u.UserID, Arn: u.Arn, CreateDate: isoTime(u.CreateDate)}
	if withTags && len(u.Tags) > 0 {
		x.Tags = &members[xmlTag]{Member: xmlTags(u.Tags)}
	}
	return x
}

type userResult struct {
	User xmlUser `xml:"User"`
}

func (s *Service) createUser(c *call) (any, error) {
	name, err := c.required("UserName")
	if err != nil {
		return nil, err
	}
	tags, err := parseTags(c)
	if err != nil {
		return nil, err
	}
	u, err := s.users.CreateUser(c.r.Context(), c.id.AccountID, name, c.get("Path"), tags)
	if err != nil {
		return nil, err
	}
	return userResult{User: toXMLUser(u, true)}, nil
}

// getUser without UserName describes the caller, as on AWS.
func (s *Service) getUser(c *call) (any, error) {
	name := c.get("UserName")
	if name == "" {
		name = c.id.User
	}
	if name == "" && c.id.Role != "" {
		return nil, &iam.Error{Kind: iam.ErrValidation, Msg: "Must specify userName when calling with non-User credentials"}
	}
	if name == "" {
		return userResult{User: xmlUser{Path: "/", UserName: "root", UserID: c.id.AccountID, Arn: c.id.ARN(), CreateDate: isoTime(s.now())}}, nil
	}
	u, err := s.users.GetUser(c.r.Context(), c.id.AccountID, name)
	if err != nil {
		return nil, err
	}
	return userResult{User: toXMLUser(u, true)}, nil
}

func (s *Service) deleteUser(c *call) (any, error) {
	name, err := c.required("UserName")
	if err != nil {
		return nil, err
	}
	ctx := c.r.Context()
	return nil, s.users.DeleteUser(ctx, c.id.AccountID, name, func() (bool, error) {
		keys, err := s.keys.UserKeys(ctx, c.id.AccountID, name)
		return len(keys) > 0, err
	})
}

type listUsersResult struct {
	Users       members[xmlUser] `xml:"Users"`
	IsTruncated bool             `xml:"IsTruncated"`
	Marker      string           `xml:"Marker,omitempty"`
}

func (s *Service) listUsers(c *call) (any, error) {
	users, err := s.users.ListUsers(c.r.Context(), c.id.AccountID, c.get("PathPrefix"))
	if err != nil {
		return nil, err
	}
	page, trunc, marker, err := paginate(c, users, func(u iam.User) string { return strings.ToLower(u.UserName) })
	if err != nil {
		return nil, err
	}
	res := listUsersResult{IsTruncated: trunc, Marker: marker}
	for i := range page {
		res.Users.Member = append(res.Users.Member, toXMLUser(&page[i], false))
	}
	return res, nil
}

type xmlAccessKey struct {
	UserName        string `xml:"UserName"`
	AccessKeyID     string `xml:"AccessKeyId"`
	Status          string `xml:"Status"`
	SecretAccessKey string `xml:"SecretAccessKey,omitempty"`
	CreateDate      string `xml:"CreateDate"`
}

type createAccessKeyResult struct {
	AccessKey xmlAccessKey `xml:"AccessKey"`
}

// keyOwner is the user an access-key action is about: UserName, else the
// caller (a root caller must name one: lambdaplane does not issue root keys
// through IAM). The user must exist.
func (s *Service) keyOwner(c *call) (*iam.User, error) {
	name := c.get("UserName")
	if name == "" {
		name = c.id.User
	}
	if name == "" {
		if _, err := c.required("UserName"); err != nil {
			return nil, err
		}
	}
	return s.users.GetUser(c.r.Context(), c.id.AccountID, name)
}

func (s *Service) createAccessKey(c *call) (any, error) {
	u, err := s.keyOwner(c)
	if err != nil {
		return nil, err
	}
	k, err := s.keys.CreateUserKey(c.r.Context(), c.id.AccountID, u.UserName)
	if err != nil {
		return nil, limitOr(err)
	}
	return createAccessKeyResult{AccessKey: xmlAccessKey{UserName: u.UserName, AccessKeyID: k.ID, Status: "Active", SecretAccessKey: k.Secret, CreateDate: isoTime(k.Created)}}, nil
}

func limitOr(err error) error {
	if errors.Is(err, auth.ErrKeyLimit) {
		return &iam.Error{Kind: iam.ErrLimitExceeded, Msg: "Cannot exceed quota for AccessKeysPerUser: 2"}
	}
	return err
}

func (s *Service) deleteAccessKey(c *call) (any, error) {
	id, err := c.required("AccessKeyId")
	if err != nil {
		return nil, err
	}
	u, err := s.keyOwner(c)
	if err != nil {
		return nil, err
	}
	if err := s.keys.DeleteUserKey(c.r.Context(), c.id.AccountID, u.UserName, id); err != nil {
		if errors.Is(err, auth.ErrKeyNotFound) {
			return nil, &iam.Error{Kind: iam.ErrNoSuchEntity, Msg: "The Access Key with id " + id + " cannot be found."}
		}
		return nil, err
	}
	return nil, nil
}

type listAccessKeysResult struct {
	UserName          string                `xml:"UserName"`
	AccessKeyMetadata members[xmlAccessKey] `xml:"AccessKeyMetadata"`
	IsTruncated       bool                  `xml:"IsTruncated"`
}

func (s *Service) listAccessKeys(c *call) (any, error) {
	u, err := s.keyOwner(c)
	if err != nil {
		return nil, err
	}
	keys, err := s.keys.UserKeys(c.r.Context(), c.id.AccountID, u.UserName)
	if err != nil {
		return nil, err
	}
	res := listAccessKeysResult{UserName: u.UserName}
	for _, k := range keys {
		res.AccessKeyMetadata.Member = append(res.AccessKeyMetadata.Member, xmlAccessKey{UserName: u.UserName, AccessKeyID: k.ID, Status: "Active", CreateDate: isoTime(k.Created)})
	}
	return res, nil
}
