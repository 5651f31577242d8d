package vpc

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// GroupRequest is CreateSecurityGroup's input.
type GroupRequest struct {
	VpcID       string
	Name        string
	Description string
	Tags        []Tag
}

func groupNameKey(accountID, vpcID, name string) string {
	return accountID + "." + vpcID + "." + hex.EncodeToString([]byte(name))
}

// CreateSecurityGroup creates a group in a VPC. The new group allows all
// egress and no ingress, as on EC2.
func (m *Model) CreateSecurityGroup(ctx context.Context, accountID string, req GroupRequest) (*SecurityGroup, error) {
	switch {
	case req.Name == "":
		return nil, missing("GroupName")
	case req.Description == "":
		return nil, missing("GroupDescription")
	case req.VpcID == "":
		return nil, missing("VpcId")
	case len(req.Name) > 255:
		return nil, invalidValue("GroupName", req.Name, "The name may be at most 255 characters.")
	case len(req.Description) > 255:
		return nil, invalidValue("GroupDescription", req.Description, "The description may be at most 255 characters.")
	case strings.EqualFold(req.Name, DefaultGroupName):
		return nil, errf(CodeInvalidParameterValue, "Cannot use reserved security group name: %s", req.Name)
	case strings.HasPrefix(strings.ToLower(req.Name), "sg-"):
		return nil, invalidValue("GroupName", req.Name, "Group names may not start with 'sg-'.")
	}
	v, err := m.GetVPC(ctx, accountID, req.VpcID)
	if err != nil {
		return nil, err
	}
	g := &SecurityGroup{
		ID: NewID(PrefixSecurityGroup), AccountID: accountID, VpcID: v.ID, Name: req.Name,
		Description: req.Description, Tags: cleanTags(req.Tags), Created: m.now().UTC(),
		Egress: []Rule{{ID: NewID(PrefixRule), Protocol: "-1", FromPort: -1, ToPort: -1, CIDR: "0.0.0.0/0"}},
	}
	nk := groupNameKey(accountID, v.ID, g.Name)
	if _, err := m.names.Create(ctx, nk, &nameIndex{GroupID: g.ID}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, errf(CodeInvalidGroupDuplicate, "The security group '%s' already exists for VPC '%s'", g.Name, v.ID)
		}
		return nil, err
	}
	if _, err := m.sgs.Create(ctx, key(accountID, g.ID), g); err != nil {
		_ = m.names.Delete(ctx, nk)
		return nil, err
	}
	m.log.Info("security group created", "account", accountID, "group", g.ID, "vpc", v.ID, "name", g.Name)
	m.changed()
	return g, nil
}

// GetSecurityGroup returns one group.
func (m *Model) GetSecurityGroup(ctx context.Context, accountID, id string) (*SecurityGroup, error) {
	g, _, err := get(ctx, m.sgs, accountID, id, nfGroup)
	return g, err
}

// ListSecurityGroups returns the account's groups ordered by ID.
func (m *Model) ListSecurityGroups(ctx context.Context, accountID string) ([]*SecurityGroup, error) {
	return list(ctx, m.sgs, accountID)
}

// GroupIDByName finds a group by name, in vpcID when given, otherwise in
// any of the account's VPCs (ambiguity is an error).
func (m *Model) GroupIDByName(ctx context.Context, accountID, vpcID, name string) (string, error) {
	if vpcID != "" {
		ix, _, err := m.names.Get(ctx, groupNameKey(accountID, vpcID, name))
		if errors.Is(err, store.ErrNotFound) {
			return "", errf(CodeGroupNotFound, "The security group '%s' does not exist in VPC '%s'", name, vpcID)
		}
		if err != nil {
			return "", err
		}
		return ix.GroupID, nil
	}
	gs, err := list(ctx, m.sgs, accountID)
	if err != nil {
		return "", err
	}
	var found []*SecurityGroup
	for _, g := range gs {
		if g.Name == name {
			found = append(found, g)
		}
	}
	switch len(found) {
	case 0:
		return "", errf(CodeGroupNotFound, "The security group '%s' does not exist", name)
	case 1:
		return found[0].ID, nil
	}
	return "", errf(CodeInvalidParameterCombo, "The security group name '%s' exists in several VPCs; identify the group by GroupId instead", name)
}

// DeleteSecurityGroup deletes a group no interface uses and no other
// group's rule references. A VPC's default group cannot be deleted.
func (m *Model) DeleteSecurityGroup(ctx context.Context, accountID, id string) error {
	g, err := m.GetSecurityGroup(ctx, accountID, id)
	if err != nil {
		return err
	}
	if g.Name == DefaultGroupName {
		return errf(CodeCannotDelete, "the specified group: \"%s\" name: \"default\" cannot be deleted by a user", id)
	}
	enis, err := list(ctx, m.enis, accountID)
	if err != nil {
		return err
	}
	for _, n := range enis {
		for _, gid := range n.Groups {
			if gid == id {
				return errf(CodeDependencyViolation, "resource %s has a dependent object: network interface %s uses it", id, n.ID)
			}
		}
	}
	gs, err := list(ctx, m.sgs, accountID)
	if err != nil {
		return err
	}
	for _, o := range gs {
		if o.ID == id {
			continue
		}
		for _, r := range append(append([]Rule(nil), o.Ingress...), o.Egress...) {
			if r.GroupID == id {
				return errf(CodeDependencyViolation, "resource %s has a dependent object: a rule of security group %s references it (revoke that rule first)", id, o.ID)
			}
		}
	}
	errs := []error{m.sgs.Delete(ctx, key(accountID, id)), m.names.Delete(ctx, groupNameKey(accountID, g.VpcID, g.Name))}
	m.changed()
	return errors.Join(errs...)
}

// Authorize adds ingress (or egress) rules to a group. Any duplicate fails
// the whole request with InvalidPermission.Duplicate. It returns the rules
// added.
func (m *Model) Authorize(ctx context.Context, accountID, groupID string, egress bool, perms []Permission) ([]Rule, error) {
	return m.editRules(ctx, accountID, groupID, egress, perms, addRules)
}

// Revoke removes ingress (or egress) rules from a group; a rule that does
// not exist fails the request with InvalidPermission.NotFound.
func (m *Model) Revoke(ctx context.Context, accountID, groupID string, egress bool, perms []Permission) ([]Rule, error) {
	return m.editRules(ctx, accountID, groupID, egress, perms, removeRules)
}

// editRules applies op (addRules or removeRules) to the group's ingress or
// egress list in one revision-checked update and returns the rules op
// reports as changed.
func (m *Model) editRules(ctx context.Context, accountID, groupID string, egress bool, perms []Permission,
	op func(list, rules []Rule) ([]Rule, []Rule, error)) ([]Rule, error) {
	rules, err := m.expandFor(ctx, accountID, groupID, perms)
	if err != nil {
		return nil, err
	}
	var changed []Rule
	_, err = update(ctx, m.sgs, accountID, groupID, nfGroup, func(g *SecurityGroup) error {
		list := &g.Ingress
		if egress {
			list = &g.Egress
		}
		nl, c, err := op(*list, rules)
		if err != nil {
			return err
		}
		*list, changed = nl, c
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.changed()
	return changed, nil
}

func (m *Model) expandFor(ctx context.Context, accountID, groupID string, perms []Permission) ([]Rule, error) {
	if groupID == "" {
		return nil, missing("GroupId")
	}
	target, err := m.GetSecurityGroup(ctx, accountID, groupID)
	if err != nil {
		return nil, err
	}
	return expand(perms, func(s GroupSource) (string, string, error) {
		if s.UserID != "" && s.UserID != accountID {
			// Another account's groups are invisible.
			ref := s.GroupID
			if ref == "" {
				ref = s.GroupName
			}
			return "", "", nfGroup(ref)
		}
		id := s.GroupID
		if id == "" {
			if s.GroupName == "" {
				return "", "", errf(CodeMissingParameter, "A group pair needs GroupId or GroupName")
			}
			var err error
			if id, err = m.GroupIDByName(ctx, accountID, target.VpcID, s.GroupName); err != nil {
				return "", "", err
			}
		}
		ref, err := m.GetSecurityGroup(ctx, accountID, id)
		if err != nil {
			return "", "", err
		}
		if ref.VpcID != target.VpcID {
			return "", "", errf(CodeInvalidParameterValue, "You have specified two resources that belong to different networks: %s is in %s, %s is in %s", id, ref.VpcID, groupID, target.VpcID)
		}
		return id, accountID, nil
	})
}
