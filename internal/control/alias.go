package control

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

func (s *Service) checkAliasTarget(acct, region, name, version string) error {
	if version == LatestVersion {
		return nil
	}
	if !versionRe.MatchString(version) {
		return validation("1 validation error detected: Value '%s' at 'functionVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)", version)
	}
	if s.cache.version(versionKey(acct, name, version)) == nil {
		return notFound("Function not found: %s", QualifiedARN(region, acct, name, version))
	}
	return nil
}

// CreateAlias creates an alias to a version.
func (s *Service) CreateAlias(ctx context.Context, acct, region, name string, in *AliasInput) (*Alias, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, err
	}
	if !aliasRe.MatchString(in.Name) || versionRe.MatchString(in.Name) || in.Name == LatestVersion {
		return nil, validation("1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)", in.Name)
	}
	if in.FunctionVersion == nil || *in.FunctionVersion == "" {
		return nil, invalidParam("FunctionVersion is required: name the version the alias points to")
	}
	if in.RoutingConfig != nil && len(in.RoutingConfig.AdditionalVersionWeights) > 0 {
		return nil, invalidParam("RoutingConfig (weighted aliases) is not supported by lambdaplane yet; point the alias at one version")
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return nil, err
	}
	if err := s.checkAliasTarget(acct, region, r.Name, *in.FunctionVersion); err != nil {
		return nil, err
	}
	a := &Alias{AccountID: acct, FunctionName: r.Name, Name: in.Name, FunctionVersion: *in.FunctionVersion, RevisionID: newRevision(), Updated: s.o.Now().UTC()}
	if in.Description != nil {
		a.Description = *in.Description
	}
	k := aliasKey(acct, r.Name, in.Name)
	rev, err := s.aliases.Create(ctx, k, a)
	if errors.Is(err, store.ErrExists) {
		return nil, conflict("Alias already exists: %s", QualifiedARN(region, acct, r.Name, in.Name))
	}
	if err != nil {
		return nil, err
	}
	s.cache.putAlias(k, a, rev)
	return a, nil
}

// GetAlias returns one alias.
func (s *Service) GetAlias(acct, region, name, alias string) (*Alias, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, err
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return nil, err
	}
	a := s.cache.alias(aliasKey(acct, r.Name, alias))
	if a == nil {
		return nil, notFound("Alias not found: %s", QualifiedARN(region, acct, r.Name, alias))
	}
	return a, nil
}

// UpdateAlias repoints or redescribes an alias.
func (s *Service) UpdateAlias(ctx context.Context, acct, region, name, alias string, in *AliasInput) (*Alias, error) {
	a, err := s.GetAlias(acct, region, name, alias)
	if err != nil {
		return nil, err
	}
	if in.FunctionVersion != nil {
		if err := s.checkAliasTarget(acct, region, a.FunctionName, *in.FunctionVersion); err != nil {
			return nil, err
		}
	}
	if in.RoutingConfig != nil && len(in.RoutingConfig.AdditionalVersionWeights) > 0 {
		return nil, invalidParam("RoutingConfig (weighted aliases) is not supported by lambdaplane yet; point the alias at one version")
	}
	k := aliasKey(acct, a.FunctionName, alias)
	na, rev, err := s.aliases.Update(ctx, k, func(cur *Alias) error {
		if in.RevisionId != "" && in.RevisionId != cur.RevisionID {
			return preconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
		}
		if in.FunctionVersion != nil {
			cur.FunctionVersion = *in.FunctionVersion
		}
		if in.Description != nil {
			cur.Description = *in.Description
		}
		cur.RevisionID = newRevision()
		cur.Updated = s.o.Now().UTC()
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.cache.putAlias(k, na, rev)
	return na, nil
}

// DeleteAlias removes an alias; a missing alias is not an error (as Lambda).
func (s *Service) DeleteAlias(ctx context.Context, acct, region, name, alias string) error {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return err
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return err
	}
	k := aliasKey(acct, r.Name, alias)
	if err := s.aliases.Delete(ctx, k); err != nil {
		return err
	}
	s.cache.putAlias(k, nil, 0)
	s.forgetAccess(ctx, acct, r.Name, alias)
	return nil
}

// ListAliases lists a function's aliases, optionally only those pointing at version.
func (s *Service) ListAliases(ctx context.Context, acct, region, name, version, marker string, maxItems int) ([]Alias, string, error) {
	r, err := s.parseUnqualified(acct, region, name)
	if err != nil {
		return nil, "", err
	}
	if err := checkMaxItems(maxItems); err != nil {
		return nil, "", err
	}
	if maxItems == 0 {
		maxItems = 50
	}
	if _, err := s.lookup(acct, region, r.Name); err != nil {
		return nil, "", err
	}
	prefix := acct + "." + r.Name + "."
	s.cache.mu.RLock()
	var out []Alias
	for k, c := range s.cache.aliases {
		if c.v != nil && strings.HasPrefix(k, prefix) && (version == "" || c.v.FunctionVersion == version) {
			out = append(out, *c.v)
		}
	}
	s.cache.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return page(out, marker, maxItems, func(a Alias) string { return a.Name })
}
