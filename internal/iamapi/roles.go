package iamapi

import (
	"fmt"
	"slices"
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
		tags := make([]xmlTag, len(r.Tags))
		for i, t := range r.Tags {
			tags[i] = xmlTag{Key: t.Key, Value: t.Value}
		}
		x.Tags = &members[xmlTag]{Member: tags}
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

func (s *Service) attachRolePolicy(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	arn, err := c.required("PolicyArn")
	if err != nil {
		return nil, err
	}
	return nil, s.roles.AttachRolePolicy(c.r.Context(), c.id.AccountID, name, arn)
}

func (s *Service) detachRolePolicy(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	arn, err := c.required("PolicyArn")
	if err != nil {
		return nil, err
	}
	return nil, s.roles.DetachRolePolicy(c.r.Context(), c.id.AccountID, name, arn)
}

type xmlAttachedPolicy struct {
	PolicyName string `xml:"PolicyName"`
	PolicyArn  string `xml:"PolicyArn"`
}

type listAttachedResult struct {
	AttachedPolicies members[xmlAttachedPolicy] `xml:"AttachedPolicies"`
	IsTruncated      bool                       `xml:"IsTruncated"`
	Marker           string                     `xml:"Marker,omitempty"`
}

func (s *Service) listAttachedRolePolicies(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	att, err := s.roles.ListAttachedRolePolicies(c.r.Context(), c.id.AccountID, name)
	if err != nil {
		return nil, err
	}
	if prefix := c.get("PathPrefix"); prefix != "" && prefix != "/" {
		att = slices.DeleteFunc(att, func(p iam.AttachedPolicy) bool {
			mp, ok := iam.LookupManagedPolicy(p.PolicyArn)
			return !ok || !strings.HasPrefix(mp.Path, prefix)
		})
	}
	slices.SortFunc(att, func(a, b iam.AttachedPolicy) int { return strings.Compare(a.PolicyArn, b.PolicyArn) })
	page, trunc, marker, err := paginate(c, att, func(p iam.AttachedPolicy) string { return p.PolicyArn })
	if err != nil {
		return nil, err
	}
	res := listAttachedResult{IsTruncated: trunc, Marker: marker}
	for _, p := range page {
		res.AttachedPolicies.Member = append(res.AttachedPolicies.Member, xmlAttachedPolicy(p))
	}
	return res, nil
}

func (s *Service) putRolePolicy(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	pname, err := c.required("PolicyName")
	if err != nil {
		return nil, err
	}
	doc, err := c.required("PolicyDocument")
	if err != nil {
		return nil, err
	}
	return nil, s.roles.PutRolePolicy(c.r.Context(), c.id.AccountID, name, pname, doc)
}

type getRolePolicyResult struct {
	RoleName       string `xml:"RoleName"`
	PolicyName     string `xml:"PolicyName"`
	PolicyDocument string `xml:"PolicyDocument"`
}

func (s *Service) getRolePolicy(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	pname, err := c.required("PolicyName")
	if err != nil {
		return nil, err
	}
	doc, err := s.roles.GetRolePolicy(c.r.Context(), c.id.AccountID, name, pname)
	if err != nil {
		return nil, err
	}
	role, err := s.roles.GetRole(c.r.Context(), c.id.AccountID, name)
	if err != nil {
		return nil, err
	}
	return getRolePolicyResult{RoleName: role.RoleName, PolicyName: pname, PolicyDocument: encodeDocument(doc)}, nil
}

func (s *Service) deleteRolePolicy(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	pname, err := c.required("PolicyName")
	if err != nil {
		return nil, err
	}
	return nil, s.roles.DeleteRolePolicy(c.r.Context(), c.id.AccountID, name, pname)
}

type listRolePoliciesResult struct {
	PolicyNames members[string] `xml:"PolicyNames"`
	IsTruncated bool            `xml:"IsTruncated"`
	Marker      string          `xml:"Marker,omitempty"`
}

func (s *Service) listRolePolicies(c *call) (any, error) {
	name, err := c.required("RoleName")
	if err != nil {
		return nil, err
	}
	names, err := s.roles.ListRolePolicies(c.r.Context(), c.id.AccountID, name)
	if err != nil {
		return nil, err
	}
	page, trunc, marker, err := paginate(c, names, func(n string) string { return n })
	if err != nil {
		return nil, err
	}
	return listRolePoliciesResult{PolicyNames: members[string]{Member: page}, IsTruncated: trunc, Marker: marker}, nil
}
