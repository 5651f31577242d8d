package vpc

import (
	"context"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/store"
)

// Resource types as DescribeTags reports them.
const (
	ResourceVPC             = "vpc"
	ResourceSubnet          = "subnet"
	ResourceSecurityGroup   = "security-group"
	ResourceInterface       = "network-interface"
	ResourceRouteTable      = "route-table"
	ResourceInternetGateway = "internet-gateway"
	ResourceNatGateway      = "natgateway"
)

// TagDescription is one tag of one resource.
type TagDescription struct {
	ResourceID   string
	ResourceType string
	Key          string
	Value        string
}

type tagged interface{ tagList() *[]Tag }

func retag[T any, P interface {
	*T
	tagged
}](ctx context.Context, t *store.Table[T], accountID, id string, nf func(string) *Error, fn func(*[]Tag)) error {
	_, err := update(ctx, t, accountID, id, nf, func(v *T) error {
		fn(P(v).tagList())
		return nil
	})
	return err
}

// ResourceType maps an ID to its tag resource type ("" if unknown).
func ResourceType(id string) string {
	pfx, _, _ := strings.Cut(id, "-")
	switch pfx {
	case PrefixVPC:
		return ResourceVPC
	case PrefixSubnet:
		return ResourceSubnet
	case PrefixSecurityGroup:
		return ResourceSecurityGroup
	case PrefixInterface:
		return ResourceInterface
	case PrefixRouteTable:
		return ResourceRouteTable
	case PrefixInternetGW:
		return ResourceInternetGateway
	case PrefixNatGateway:
		return ResourceNatGateway
	}
	return ""
}

func (m *Model) retag(ctx context.Context, accountID, id string, fn func(*[]Tag)) error {
	switch ResourceType(id) {
	case ResourceVPC:
		return retag(ctx, m.vpcs, accountID, id, nfVPC, fn)
	case ResourceSubnet:
		return retag(ctx, m.subs, accountID, id, nfSubnet, fn)
	case ResourceSecurityGroup:
		return retag(ctx, m.sgs, accountID, id, nfGroup, fn)
	case ResourceInterface:
		return retag(ctx, m.enis, accountID, id, nfInterface, fn)
	case ResourceRouteTable:
		return retag(ctx, m.rtbs, accountID, id, nfRouteTable, fn)
	case ResourceInternetGateway:
		return retag(ctx, m.igws, accountID, id, nfIGW, fn)
	case ResourceNatGateway:
		return retag(ctx, m.nats, accountID, id, nfNAT, fn)
	}
	return errf(CodeInvalidID, "The ID '%s' is not valid (supported: vpc-, subnet-, sg-, eni-, rtb-, igw-, nat-)", id)
}

// CreateTags adds or overwrites tags on resources.
func (m *Model) CreateTags(ctx context.Context, accountID string, ids []string, tags []Tag) error {
	if len(ids) == 0 {
		return missing("ResourceId")
	}
	if len(tags) == 0 {
		return missing("Tag")
	}
	for _, t := range tags {
		if t.Key == "" {
			return invalidValue("Tag.Key", "", "Tag keys must not be empty.")
		}
		if strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return invalidValue("Tag.Key", t.Key, "Tag keys starting with 'aws:' are reserved.")
		}
	}
	for _, id := range ids {
		if err := m.retag(ctx, accountID, id, func(list *[]Tag) {
			for _, t := range tags {
				*list = setTag(*list, t)
			}
		}); err != nil {
			return err
		}
	}
	m.changed()
	return nil
}

// DeleteTags removes tags (by key; by key and value when value is non-nil).
// With no tags given, all tags are removed.
func (m *Model) DeleteTags(ctx context.Context, accountID string, ids []string, keys []string, values []*string) error {
	if len(ids) == 0 {
		return missing("ResourceId")
	}
	for _, id := range ids {
		if err := m.retag(ctx, accountID, id, func(list *[]Tag) {
			if len(keys) == 0 {
				*list = nil
				return
			}
			var out []Tag
			for _, t := range *list {
				drop := false
				for i, k := range keys {
					if t.Key == k && (i >= len(values) || values[i] == nil || *values[i] == t.Value) {
						drop = true
					}
				}
				if !drop {
					out = append(out, t)
				}
			}
			*list = out
		}); err != nil {
			return err
		}
	}
	m.changed()
	return nil
}

// ListTags returns every tag of the account's resources.
func (m *Model) ListTags(ctx context.Context, accountID string) ([]TagDescription, error) {
	var out []TagDescription
	add := func(id string, tags []Tag) {
		for _, t := range tags {
			out = append(out, TagDescription{ResourceID: id, ResourceType: ResourceType(id), Key: t.Key, Value: t.Value})
		}
	}
	vpcs, err := m.ListVPCs(ctx, accountID)
	if err != nil {
		return nil, err
	}
	for _, v := range vpcs {
		add(v.ID, v.Tags)
	}
	subs, err := m.ListSubnets(ctx, accountID)
	if err != nil {
		return nil, err
	}
	for _, v := range subs {
		add(v.ID, v.Tags)
	}
	sgs, err := m.ListSecurityGroups(ctx, accountID)
	if err != nil {
		return nil, err
	}
	for _, v := range sgs {
		add(v.ID, v.Tags)
	}
	enis, err := m.ListInterfaces(ctx, accountID)
	if err != nil {
		return nil, err
	}
	for _, v := range enis {
		add(v.ID, v.Tags)
	}
	rts, err := list(ctx, m.rtbs, accountID)
	if err != nil {
		return nil, err
	}
	for _, v := range rts {
		add(v.ID, v.Tags)
	}
	igws, err := m.ListInternetGateways(ctx, accountID)
	if err != nil {
		return nil, err
	}
	for _, v := range igws {
		add(v.ID, v.Tags)
	}
	nats, err := m.ListNatGateways(ctx, accountID)
	if err != nil {
		return nil, err
	}
	for _, v := range nats {
		add(v.ID, v.Tags)
	}
	return out, nil
}
