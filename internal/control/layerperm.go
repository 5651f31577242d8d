package control

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Layer version permissions (AddLayerVersionPermission,
// RemoveLayerVersionPermission, GetLayerVersionPolicy): who else may use a
// layer version (GetLayerVersion, and attach it to a function). One record
// per layer version in the "layerpolicies" bucket.

// LayerPolicy is the stored policy of one layer version.
type LayerPolicy struct {
	// LayerCreated is the Created time of the layer version: a policy of
	// a deleted version never applies to another.
	LayerCreated time.Time         `json:"LayerCreated"`
	RevisionID   string            `json:"RevisionId"`
	Statements   []PolicyStatement `json:"Statements"`
}

// LayerPermissionInput is AddLayerVersionPermission's body.
type LayerPermissionInput struct {
	StatementId    string `json:"StatementId"`
	Action         string `json:"Action"`
	Principal      string `json:"Principal"`
	OrganizationId string `json:"OrganizationId"`
}

func (s *Service) ownLayerVersion(ctx context.Context, acct, region, nameOrArn, version string) (*LayerVersion, error) {
	v, err := s.GetLayerVersion(ctx, acct, region, nameOrArn, version)
	if err != nil {
		return nil, err
	}
	if v.AccountID != acct {
		return nil, denied(acct, v.ARN())
	}
	return v, nil
}

// AddLayerVersionPermission grants an account (or every account, or an
// organization's) use of a layer version; it returns the statement JSON
// and the policy's new revision.
func (s *Service) AddLayerVersionPermission(ctx context.Context, acct, region, nameOrArn, version, revisionID string, in *LayerPermissionInput) (string, string, error) {
	if !statementIDRe.MatchString(in.StatementId) {
		return "", "", validation("1 validation error detected: Value '%s' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)", in.StatementId)
	}
	if in.Action != "lambda:GetLayerVersion" {
		return "", "", validation("1 validation error detected: Value '%s' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: lambda:GetLayerVersion", in.Action)
	}
	var prin any
	switch {
	case in.Principal == "*":
		prin = "*"
	case accountRe.MatchString(in.Principal):
		prin = map[string]any{"AWS": "arn:aws:iam::" + in.Principal + ":root"}
	default:
		return "", "", validation("1 validation error detected: Value '%s' at 'principal' failed to satisfy constraint: Member must satisfy regular expression pattern: \\d{12}|\\*|arn:(aws[a-zA-Z-]*):iam::\\d{12}:root", in.Principal)
	}
	if in.OrganizationId != "" {
		if in.Principal != "*" {
			return "", "", invalidParam("OrganizationId can only be used with the principal *")
		}
		if !orgIDRe.MatchString(in.OrganizationId) {
			return "", "", validation("1 validation error detected: Value '%s' at 'organizationId' failed to satisfy constraint: Member must satisfy regular expression pattern: o-[a-z0-9]{10,32}", in.OrganizationId)
		}
	}
	v, err := s.ownLayerVersion(ctx, acct, region, nameOrArn, version)
	if err != nil {
		return "", "", err
	}
	st := PolicyStatement{Sid: in.StatementId, Effect: "Allow", Principal: prin, Action: in.Action, Resource: v.ARN()}
	if in.OrganizationId != "" {
		st.Condition = map[string]map[string]any{"StringEquals": {"aws:PrincipalOrgID": in.OrganizationId}}
	}
	p, err := s.updateLayerPolicy(ctx, v, func(p *LayerPolicy) error {
		if revisionID != "" && p.RevisionID != revisionID {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetLayerVersionPolicy API to retrieve the latest Revision Id")
		}
		for _, x := range p.Statements {
			if x.Sid == in.StatementId {
				return conflict("The statement id (%s) provided already exists. Please provide a new statement id, or remove the existing statement.", in.StatementId)
			}
		}
		p.Statements = append(p.Statements, st)
		return nil
	})
	if err != nil {
		return "", "", err
	}
	b, _ := json.Marshal(st)
	return string(b), p.RevisionID, nil
}

// RemoveLayerVersionPermission removes one statement.
func (s *Service) RemoveLayerVersionPermission(ctx context.Context, acct, region, nameOrArn, version, sid, revisionID string) error {
	v, err := s.ownLayerVersion(ctx, acct, region, nameOrArn, version)
	if err != nil {
		return err
	}
	_, err = s.updateLayerPolicy(ctx, v, func(p *LayerPolicy) error {
		if revisionID != "" && p.RevisionID != revisionID {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetLayerVersionPolicy API to retrieve the latest Revision Id")
		}
		for i, x := range p.Statements {
			if x.Sid == sid {
				p.Statements = append(p.Statements[:i], p.Statements[i+1:]...)
				return nil
			}
		}
		return notFound("Statement %s is not found in resource policy.", sid)
	})
	return err
}

// GetLayerVersionPolicy returns the policy document and revision.
func (s *Service) GetLayerVersionPolicy(ctx context.Context, acct, region, nameOrArn, version string) (string, string, error) {
	v, err := s.ownLayerVersion(ctx, acct, region, nameOrArn, version)
	if err != nil {
		return "", "", err
	}
	p, _, err := s.layerPolicy(ctx, v)
	if err != nil {
		return "", "", err
	}
	if p == nil || len(p.Statements) == 0 {
		return "", "", notFound("No policy is associated with the given resource.")
	}
	doc := (&ResourcePolicy{Statements: p.Statements}).Document()
	return doc, p.RevisionID, nil
}

func (s *Service) layerPolicy(ctx context.Context, v *LayerVersion) (*LayerPolicy, uint64, error) {
	p, rev, err := s.access.layerPol.Get(ctx, layerVersionKey(v.AccountID, v.LayerName, v.Version))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if !p.LayerCreated.Equal(v.Created) {
		return nil, rev, nil
	}
	return p, rev, nil
}

func (s *Service) updateLayerPolicy(ctx context.Context, v *LayerVersion, change func(p *LayerPolicy) error) (*LayerPolicy, error) {
	key := layerVersionKey(v.AccountID, v.LayerName, v.Version)
	for attempt := 0; ; attempt++ {
		cur, rev, err := s.layerPolicy(ctx, v)
		if err != nil {
			return nil, err
		}
		p := &LayerPolicy{LayerCreated: v.Created}
		if cur != nil {
			p.Statements = append(p.Statements, cur.Statements...)
			p.RevisionID = cur.RevisionID
		}
		if err := change(p); err != nil {
			return nil, err
		}
		p.RevisionID = newRevision()
		if len(p.Statements) == 0 {
			return p, s.access.layerPol.Delete(ctx, key)
		}
		if rev == 0 {
			_, err = s.access.layerPol.Create(ctx, key, p)
		} else {
			_, err = s.access.layerPol.UpdateAt(ctx, key, p, rev)
		}
		if (errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict)) && attempt < 20 {
			continue
		}
		return p, err
	}
}

// layerGranted reports whether account caller may use the layer version
// (owner, name, n) under its policy.
func (s *Service) layerGranted(ctx context.Context, caller string, v *LayerVersion) bool {
	if v.AccountID == caller {
		return true
	}
	if s.access == nil {
		return false
	}
	p, _, err := s.layerPolicy(ctx, v)
	if err != nil || p == nil {
		return false
	}
	c := Caller{AccountID: caller, ARNs: []string{"arn:aws:iam::" + caller + ":root"}}
	allowed := false
	for i := range p.Statements {
		st := &p.Statements[i]
		if !statementMatches(st, c, "lambda:GetLayerVersion", v.ARN(), map[string][]string{}) {
			continue
		}
		if st.Effect == "Deny" {
			return false
		}
		allowed = true
	}
	return allowed
}
