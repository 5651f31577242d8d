package iamapi

import (
	"context"
	"encoding/xml"
	"slices"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// principal is a kind of IAM identity with identity policies (roles,
// users): the request parameter naming one and its policy operations. The
// policy actions (Attach/Detach/ListAttached/Put/Get/Delete/List ...Policy)
// are served once for both kinds.
type principal struct {
	param        string // "RoleName", "UserName"
	attach       func(ctx context.Context, acct, name, arn string) error
	detach       func(ctx context.Context, acct, name, arn string) error
	listAttached func(ctx context.Context, acct, name string) ([]iam.AttachedPolicy, error)
	put          func(ctx context.Context, acct, name, policy, doc string) error
	get          func(ctx context.Context, acct, name, policy string) (string, error)
	del          func(ctx context.Context, acct, name, policy string) error
	list         func(ctx context.Context, acct, name string) ([]string, error)
	canonical    func(ctx context.Context, acct, name string) (string, error) // the stored spelling
}

func (s *Service) rolePrincipal() *principal {
	r := s.roles
	return &principal{param: "RoleName", attach: r.AttachRolePolicy, detach: r.DetachRolePolicy, listAttached: r.ListAttachedRolePolicies,
		put: r.PutRolePolicy, get: r.GetRolePolicy, del: r.DeleteRolePolicy, list: r.ListRolePolicies,
		canonical: func(ctx context.Context, acct, name string) (string, error) {
			role, err := r.GetRole(ctx, acct, name)
			if err != nil {
				return "", err
			}
			return role.RoleName, nil
		}}
}

func (s *Service) userPrincipal() *principal {
	u := s.users
	return &principal{param: "UserName", attach: u.AttachUserPolicy, detach: u.DetachUserPolicy, listAttached: u.ListAttachedUserPolicies,
		put: u.PutUserPolicy, get: u.GetUserPolicy, del: u.DeleteUserPolicy, list: u.ListUserPolicies,
		canonical: func(ctx context.Context, acct, name string) (string, error) {
			user, err := u.GetUser(ctx, acct, name)
			if err != nil {
				return "", err
			}
			return user.UserName, nil
		}}
}

// policyHandlers returns the seven policy actions of a principal kind,
// named with infix ("Role", "User").
func policyHandlers(infix string, p func(*Service) *principal) map[string]handler {
	return map[string]handler{
		"Attach" + infix + "Policy":         func(s *Service, c *call) (any, error) { return s.attachPolicy(c, p(s), true) },
		"Detach" + infix + "Policy":         func(s *Service, c *call) (any, error) { return s.attachPolicy(c, p(s), false) },
		"ListAttached" + infix + "Policies": func(s *Service, c *call) (any, error) { return s.listAttachedPolicies(c, p(s)) },
		"Put" + infix + "Policy":            func(s *Service, c *call) (any, error) { return s.putPolicy(c, p(s)) },
		"Get" + infix + "Policy":            func(s *Service, c *call) (any, error) { return s.getPolicy(c, p(s)) },
		"Delete" + infix + "Policy":         func(s *Service, c *call) (any, error) { return s.deletePolicy(c, p(s)) },
		"List" + infix + "Policies":         func(s *Service, c *call) (any, error) { return s.listPolicies(c, p(s)) },
	}
}

func (s *Service) attachPolicy(c *call, p *principal, attach bool) (any, error) {
	v, err := c.requiredAll(p.param, "PolicyArn")
	if err != nil {
		return nil, err
	}
	name, arn := v[0], v[1]
	if attach {
		return nil, p.attach(c.r.Context(), c.id.AccountID, name, arn)
	}
	return nil, p.detach(c.r.Context(), c.id.AccountID, name, arn)
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

func (s *Service) listAttachedPolicies(c *call, p *principal) (any, error) {
	name, err := c.required(p.param)
	if err != nil {
		return nil, err
	}
	att, err := p.listAttached(c.r.Context(), c.id.AccountID, name)
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

func (s *Service) putPolicy(c *call, p *principal) (any, error) {
	v, err := c.requiredAll(p.param, "PolicyName", "PolicyDocument")
	if err != nil {
		return nil, err
	}
	return nil, p.put(c.r.Context(), c.id.AccountID, v[0], v[1], v[2])
}

// xmlNamed is an element whose name is chosen at run time (RoleName or
// UserName in GetRolePolicy/GetUserPolicy).
type xmlNamed struct {
	XMLName xml.Name
	Value   string `xml:",chardata"`
}

type getPolicyResult struct {
	Principal      xmlNamed
	PolicyName     string `xml:"PolicyName"`
	PolicyDocument string `xml:"PolicyDocument"`
}

func (s *Service) getPolicy(c *call, p *principal) (any, error) {
	v, err := c.requiredAll(p.param, "PolicyName")
	if err != nil {
		return nil, err
	}
	name, pname := v[0], v[1]
	doc, err := p.get(c.r.Context(), c.id.AccountID, name, pname)
	if err != nil {
		return nil, err
	}
	stored, err := p.canonical(c.r.Context(), c.id.AccountID, name)
	if err != nil {
		return nil, err
	}
	return getPolicyResult{Principal: xmlNamed{XMLName: xml.Name{Local: p.param}, Value: stored}, PolicyName: pname, PolicyDocument: encodeDocument(doc)}, nil
}

func (s *Service) deletePolicy(c *call, p *principal) (any, error) {
	v, err := c.requiredAll(p.param, "PolicyName")
	if err != nil {
		return nil, err
	}
	name, pname := v[0], v[1]
	return nil, p.del(c.r.Context(), c.id.AccountID, name, pname)
}

type listPoliciesResult struct {
	PolicyNames members[string] `xml:"PolicyNames"`
	IsTruncated bool            `xml:"IsTruncated"`
	Marker      string          `xml:"Marker,omitempty"`
}

func (s *Service) listPolicies(c *call, p *principal) (any, error) {
	name, err := c.required(p.param)
	if err != nil {
		return nil, err
	}
	names, err := p.list(c.r.Context(), c.id.AccountID, name)
	if err != nil {
		return nil, err
	}
	page, trunc, marker, err := paginate(c, names, func(n string) string { return n })
	if err != nil {
		return nil, err
	}
	return listPoliciesResult{PolicyNames: members[string]{Member: page}, IsTruncated: trunc, Marker: marker}, nil
}
