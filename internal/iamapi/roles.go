package iamapi

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// XML shapes, as in the IAM API reference and the aws-sdk-go-v2 model.

// members is an IAM list: <Name><member>..</member>...</Name>, written even
// when empty.
type members[T any] struct {
	Member []T `xml:"member"`
}

type xmlTag struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

type xmlRole struct {
	Path                     string           `xml:"Path"`
	RoleName                 string           `xml:"RoleName"`
	RoleID                   string           `xml:"RoleId"`
	Arn                      string           `xml:"Arn"`
	CreateDate               string           `xml:"CreateDate"`
	AssumeRolePolicyDocument string           `xml:"AssumeRolePolicyDocument"`
	Description              string           `xml:"Description,omitempty"`
	MaxSessionDuration       int              `xml:"MaxSessionDuration"`
	Tags                     *members[xmlTag] `xml:"Tags,omitempty"`
}

func toXMLRole(r *iam.Role, withTags bool) xmlRole {
	x := xmlRole{
		Path:                     r.Path,
		RoleName:                 r.RoleName,
		RoleID:                   r.RoleID,
		Arn:                      r.Arn,
		CreateDate:               isoTime(r.CreateDate),
		AssumeRolePolicyDocument: encodeDocument(r.AssumeRolePolicyDocument),
		Description:              r.Description,
		MaxSessionDuration:       r.MaxSessionDuration,
	}
	if withTags && len(r.Tags) > 0 {
		x.Tags = &members[xmlTag]{Member: xmlTags(r.Tags)}
	}
	return x
}

type roleResult struct {
	Role xmlRole `xml:"Role"`
}

// parseTags reads Tags.member.N.Key / Tags.member.N.Value.
func parseTags(c *call) ([]iam.Tag, error) {
	var tags []iam.Tag
	for i := 1; ; i++ {
		k := c.get(fmt.Sprintf("Tags.member.%d.Key", i))
		if k == "" {
			break
		}
		if i > 50 {
			return nil, &iam.Error{Kind: iam.ErrLimitExceeded, Msg: "A role can have at most 50 tags."}
		}
		tags = append(tags, iam.Tag{Key: k, Value: c.get(fmt.Sprintf("Tags.member.%d.Value", i))})
	}
	return tags, nil
}

func (s *Service) createRole(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	doc, err := c.required("AssumeRolePolicyDocument")
	if err != nil {
		return nil, err
	}
	in := iam.CreateRoleInput{
		RoleName:                 name,
		Path:                     c.get("Path"),
		AssumeRolePolicyDocument: doc,
		Description:              c.get("Description"),
	}
	if v := c.get("MaxSessionDuration"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, &iam.Error{Kind: iam.ErrValidation, Msg: fmt.Sprintf("MaxSessionDuration %q is not a number of seconds.", v)}
		}
		in.MaxSessionDuration = n
	}
	if in.Tags, err = parseTags(c); err != nil {
		return nil, err
	}
	role, err := s.roles.CreateRole(c.r.Context(), c.id.AccountID, in)
	if err != nil {
		return nil, err
	}
	return roleResult{Role: toXMLRole(role, true)}, nil
}

func (s *Service) getRole(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	role, err := s.roles.GetRole(c.r.Context(), c.id.AccountID, name)
	if err != nil {
		return nil, err
	}
	return roleResult{Role: toXMLRole(role, true)}, nil
}

func (s *Service) deleteRole(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	return nil, s.roles.DeleteRole(c.r.Context(), c.id.AccountID, name)
}

type listRolesResult struct {
	Roles       members[xmlRole] `xml:"Roles"`
	IsTruncated bool             `xml:"IsTruncated"`
	Marker      string           `xml:"Marker,omitempty"`
}

func (s *Service) listRoles(c *call) (any, error) {
	prefix := c.get("PathPrefix")
	roles, err := s.roles.ListRoles(c.r.Context(), c.id.AccountID, prefix)
	if err != nil {
		return nil, err
	}
	page, trunc, marker, err := paginate(c, roles, func(r iam.Role) string { return strings.ToLower(r.RoleName) })
	if err != nil {
		return nil, err
	}
	res := listRolesResult{IsTruncated: trunc, Marker: marker}
	for i := range page {
		res.Roles.Member = append(res.Roles.Member, toXMLRole(&page[i], false))
	}
	return res, nil
}

func (s *Service) updateAssumeRolePolicy(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	doc, err := c.required("PolicyDocument")
	if err != nil {
		return nil, err
	}
	return nil, s.roles.UpdateAssumeRolePolicy(c.r.Context(), c.id.AccountID, name, doc)
}

func xmlTags(ts []iam.Tag) []xmlTag {
	tags := make([]xmlTag, len(ts))
	for i, t := range ts {
		tags[i] = xmlTag{Key: t.Key, Value: t.Value}
	}
	return tags
}
