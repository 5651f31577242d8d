package iam

import (
	"fmt"
	"slices"
	"strings"
)

// PolicySet is the identity policies of a principal (role or user):
// attached AWS-managed policies and inline policies. Role and User embed
// it; its JSON fields are theirs.
type PolicySet struct {
	AttachedPolicies []string          `json:"attachedPolicies,omitempty"` // ARNs, in attach order
	InlinePolicies   map[string]string `json:"inlinePolicies,omitempty"`   // name → JSON document
}

// attach adds a managed policy; attaching an attached one is a no-op.
func (ps *PolicySet) attach(policyARN, kind string) error {
	if slices.Contains(ps.AttachedPolicies, policyARN) {
		return nil
	}
	if len(ps.AttachedPolicies) >= maxAttachedPolicies {
		return errorf(ErrLimitExceeded, "Cannot exceed quota for PoliciesPer%s: %d", kind, maxAttachedPolicies)
	}
	ps.AttachedPolicies = append(ps.AttachedPolicies, policyARN)
	return nil
}

func (ps *PolicySet) detach(policyARN string) error {
	i := slices.Index(ps.AttachedPolicies, policyARN)
	if i < 0 {
		return errorf(ErrNoSuchEntity, "Policy %s was not found.", policyARN)
	}
	ps.AttachedPolicies = slices.Delete(ps.AttachedPolicies, i, i+1)
	return nil
}

// putInline adds or replaces inline policy name (doc already normalized)
// within the total size quota; owner names the principal in the error.
func (ps *PolicySet) putInline(name, doc, kind, owner string) error {
	total := len(doc)
	for n, d := range ps.InlinePolicies {
		if n != name {
			total += len(d)
		}
	}
	if total > maxInlinePoliciesSz {
		return errorf(ErrLimitExceeded, "Maximum policy size of %d bytes exceeded for %s %s", maxInlinePoliciesSz, kind, owner)
	}
	if ps.InlinePolicies == nil {
		ps.InlinePolicies = map[string]string{}
	}
	ps.InlinePolicies[name] = doc
	return nil
}

func (ps *PolicySet) inline(name, kind string) (string, error) {
	doc, ok := ps.InlinePolicies[name]
	if !ok {
		return "", errorf(ErrNoSuchEntity, "The %s policy with name %s cannot be found.", kind, name)
	}
	return doc, nil
}

func (ps *PolicySet) deleteInline(name, kind string) error {
	if _, err := ps.inline(name, kind); err != nil {
		return err
	}
	delete(ps.InlinePolicies, name)
	return nil
}

// inlineNames lists the inline policies' names, sorted.
func (ps *PolicySet) inlineNames() []string {
	names := make([]string, 0, len(ps.InlinePolicies))
	for n := range ps.InlinePolicies {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// attached lists the attached managed policies with their names.
func (ps *PolicySet) attached() []AttachedPolicy {
	out := make([]AttachedPolicy, 0, len(ps.AttachedPolicies))
	for _, arn := range ps.AttachedPolicies {
		n := arn[strings.LastIndexByte(arn, '/')+1:]
		if mp, ok := LookupManagedPolicy(arn); ok {
			n = mp.Name
		}
		out = append(out, AttachedPolicy{PolicyName: n, PolicyArn: arn})
	}
	return out
}

// conflict is DeleteConflict while policies remain (as on AWS).
func (ps *PolicySet) conflict() error {
	if len(ps.AttachedPolicies) > 0 {
		return errorf(ErrDeleteConflict, "Cannot delete entity, must detach all policies first.")
	}
	if len(ps.InlinePolicies) > 0 {
		return errorf(ErrDeleteConflict, "Cannot delete entity, must delete policies first.")
	}
	return nil
}

// Policies returns the parsed policies: attached managed ones, then inline
// ones; owner names the principal in a parse error.
func (ps *PolicySet) policies(owner string) ([]*Policy, error) {
	out := make([]*Policy, 0, len(ps.AttachedPolicies)+len(ps.InlinePolicies))
	for _, arn := range ps.AttachedPolicies {
		if mp, ok := LookupManagedPolicy(arn); ok {
			out = append(out, mp.policy)
		}
	}
	for name, doc := range ps.InlinePolicies {
		p, err := ParsePolicy(doc, IdentityPolicy)
		if err != nil {
			return nil, fmt.Errorf("%s inline policy %s: %w", owner, name, err)
		}
		out = append(out, p)
	}
	return out, nil
}
