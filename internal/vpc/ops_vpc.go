package vpc

import (
	"context"
	"errors"
	"net/netip"
)

// VPCRequest is CreateVpc's input.
type VPCRequest struct {
	CidrBlock       string
	InstanceTenancy string
	Tags            []Tag
}

// DefaultGroupName is the name of every VPC's default security group.
const DefaultGroupName = "default"

// CreateVPC creates a VPC with its default security group and main route
// table (holding the local route).
func (m *Model) CreateVPC(ctx context.Context, accountID string, req VPCRequest) (*VPC, error) {
	p, err := parseCIDR("CidrBlock", req.CidrBlock)
	if err != nil {
		return nil, err
	}
	if p.Bits() < MinPrefixLen || p.Bits() > MaxPrefixLen {
		return nil, errf(CodeInvalidVpcRange, "The CIDR '%s' is invalid: a VPC CIDR block must be between /%d and /%d.", req.CidrBlock, MinPrefixLen, MaxPrefixLen)
	}
	tenancy := req.InstanceTenancy
	if tenancy == "" {
		tenancy = "default"
	}
	if tenancy != "default" {
		return nil, invalidValue("InstanceTenancy", tenancy, "Only 'default' tenancy is supported.")
	}
	now := m.now().UTC()
	v := &VPC{
		ID: NewID(PrefixVPC), AccountID: accountID, CidrBlock: p.String(),
		CidrAssociationID: NewID("vpc-cidr-assoc"), State: "available", InstanceTenancy: tenancy,
		DefaultSecurityGroupID: NewID(PrefixSecurityGroup), MainRouteTableID: NewID(PrefixRouteTable),
		Tags: cleanTags(req.Tags), Created: now,
	}
	sg := &SecurityGroup{
		ID: v.DefaultSecurityGroupID, AccountID: accountID, VpcID: v.ID, Name: DefaultGroupName,
		Description: "default VPC security group", Created: now,
		Ingress: []Rule{{ID: NewID(PrefixRule), Protocol: "-1", FromPort: -1, ToPort: -1, GroupID: v.DefaultSecurityGroupID, UserID: accountID}},
		Egress:  []Rule{{ID: NewID(PrefixRule), Protocol: "-1", FromPort: -1, ToPort: -1, CIDR: "0.0.0.0/0"}},
	}
	rt := &RouteTable{
		ID: v.MainRouteTableID, AccountID: accountID, VpcID: v.ID, Main: true,
		MainAssociationID: NewID(PrefixAssociation), Created: now,
		Routes: []Route{{DestinationCidrBlock: v.CidrBlock, GatewayID: "local", Origin: "CreateRouteTable"}},
	}
	if v.VNI, err = m.allocVNI(ctx, accountID, v.ID); err != nil {
		return nil, err
	}
	nameKey := groupNameKey(accountID, v.ID, DefaultGroupName)
	if _, err := m.names.Create(ctx, nameKey, &nameIndex{GroupID: sg.ID}); err != nil {
		_ = m.vnis.Delete(ctx, vniKey(v.VNI))
		return nil, err
	}
	if _, err := m.sgs.Create(ctx, key(accountID, sg.ID), sg); err != nil {
		_ = m.names.Delete(ctx, nameKey)
		return nil, err
	}
	if _, err := m.rtbs.Create(ctx, key(accountID, rt.ID), rt); err != nil {
		_ = m.sgs.Delete(ctx, key(accountID, sg.ID))
		_ = m.names.Delete(ctx, nameKey)
		return nil, err
	}
	if _, err := m.vpcs.Create(ctx, key(accountID, v.ID), v); err != nil {
		_ = m.rtbs.Delete(ctx, key(accountID, rt.ID))
		_ = m.sgs.Delete(ctx, key(accountID, sg.ID))
		_ = m.names.Delete(ctx, nameKey)
		return nil, err
	}
	m.log.Info("vpc created", "account", accountID, "vpc", v.ID, "cidr", v.CidrBlock)
	m.changed()
	return v, nil
}

// GetVPC returns one of the account's VPCs.
func (m *Model) GetVPC(ctx context.Context, accountID, id string) (*VPC, error) {
	v, _, err := get(ctx, m.vpcs, accountID, id, nfVPC)
	if err != nil {
		return nil, err
	}
	if v.State == "deleting" {
		return nil, nfVPC(id)
	}
	return v, nil
}

// ListVPCs returns the account's VPCs ordered by ID.
func (m *Model) ListVPCs(ctx context.Context, accountID string) ([]*VPC, error) {
	return list(ctx, m.vpcs, accountID)
}

// DeleteVPC deletes an empty VPC (no subnets, no non-default security
// groups, no non-main route tables, no attached internet gateway) with its
// default security group and main route table.
func (m *Model) DeleteVPC(ctx context.Context, accountID, id string) error {
	v, err := m.GetVPC(ctx, accountID, id)
	if err != nil {
		return err
	}
	dep := func(what string) error {
		return errf(CodeDependencyViolation, "The vpc '%s' has dependencies and cannot be deleted: %s", id, what)
	}
	sgs, err := list(ctx, m.sgs, accountID)
	if err != nil {
		return err
	}
	for _, g := range sgs {
		if g.VpcID == id && g.ID != v.DefaultSecurityGroupID {
			return dep("security group " + g.ID + " (delete it first)")
		}
	}
	rts, err := list(ctx, m.rtbs, accountID)
	if err != nil {
		return err
	}
	for _, r := range rts {
		if r.VpcID == id && !r.Main {
			return dep("route table " + r.ID + " (delete it first)")
		}
	}
	igws, err := list(ctx, m.igws, accountID)
	if err != nil {
		return err
	}
	for _, g := range igws {
		if g.VpcID == id {
			return dep("internet gateway " + g.ID + " is attached (detach it first)")
		}
	}
	_, err = update(ctx, m.vpcs, accountID, id, nfVPC, func(v *VPC) error {
		if v.State == "deleting" {
			return nfVPC(id)
		}
		for sid := range v.Subnets {
			return dep("subnet " + sid + " (delete it first)")
		}
		v.State = "deleting"
		return nil
	})
	if err != nil {
		return err
	}
	// A crash from here on leaves the VPC "deleting": Open finishes it.
	err = m.finishDeleteVPC(ctx, v)
	m.changed()
	return err
}

// SubnetRequest is CreateSubnet's input.
type SubnetRequest struct {
	VpcID            string
	CidrBlock        string
	AvailabilityZone string
	Tags             []Tag
}

// CreateSubnet creates a subnet inside its VPC's CIDR, not overlapping a
// sibling, with an empty IPAM.
func (m *Model) CreateSubnet(ctx context.Context, accountID string, req SubnetRequest) (*Subnet, error) {
	if req.VpcID == "" {
		return nil, missing("VpcId")
	}
	if req.AvailabilityZone == "" {
		return nil, missing("AvailabilityZone")
	}
	p, err := parseCIDR("CidrBlock", req.CidrBlock)
	if err != nil {
		return nil, err
	}
	v, err := m.GetVPC(ctx, accountID, req.VpcID)
	if err != nil {
		return nil, err
	}
	vp, _ := netip.ParsePrefix(v.CidrBlock)
	if p.Bits() < MinPrefixLen || p.Bits() > MaxPrefixLen {
		return nil, errf(CodeInvalidSubnetRange, "The CIDR '%s' is invalid: a subnet CIDR block must be between /%d and /%d.", req.CidrBlock, MinPrefixLen, MaxPrefixLen)
	}
	if !contains(vp, p) {
		return nil, errf(CodeInvalidSubnetRange, "The CIDR '%s' is invalid: it is not inside the CIDR %s of %s.", req.CidrBlock, vp, v.ID)
	}
	s := &Subnet{
		ID: NewID(PrefixSubnet), AccountID: accountID, VpcID: v.ID, CidrBlock: p.String(),
		AvailabilityZone: req.AvailabilityZone, State: "available", Tags: cleanTags(req.Tags), Created: m.now().UTC(),
	}
	_, err = update(ctx, m.vpcs, accountID, v.ID, nfVPC, func(v *VPC) error {
		if v.State == "deleting" {
			return nfVPC(v.ID)
		}
		for sid, c := range v.Subnets {
			if o, err := netip.ParsePrefix(c); err == nil && o.Overlaps(p) {
				return errf(CodeInvalidSubnetConflict, "The CIDR '%s' conflicts with another subnet (%s, %s)", p, sid, o)
			}
		}
		if v.Subnets == nil {
			v.Subnets = map[string]string{}
		}
		v.Subnets[s.ID] = s.CidrBlock
		return nil
	})
	if err != nil {
		return nil, err
	}
	unregister := func() {
		_, _ = update(ctx, m.vpcs, accountID, v.ID, nfVPC, func(v *VPC) error { delete(v.Subnets, s.ID); return nil })
	}
	if _, err := m.ipam.Create(ctx, key(accountID, s.ID), &ipamRecord{SubnetID: s.ID, CidrBlock: s.CidrBlock}); err != nil {
		unregister()
		return nil, err
	}
	if _, err := m.subs.Create(ctx, key(accountID, s.ID), s); err != nil {
		_ = m.ipam.Delete(ctx, key(accountID, s.ID))
		unregister()
		return nil, err
	}
	s.AvailableIPs = UsableAddresses(p)
	m.log.Info("subnet created", "account", accountID, "subnet", s.ID, "vpc", v.ID, "cidr", s.CidrBlock)
	m.changed()
	return s, nil
}

// GetSubnet returns one subnet with its AvailableIPs.
func (m *Model) GetSubnet(ctx context.Context, accountID, id string) (*Subnet, error) {
	s, _, err := get(ctx, m.subs, accountID, id, nfSubnet)
	if err != nil {
		return nil, err
	}
	rec, _, err := get(ctx, m.ipam, accountID, id, nfSubnet)
	if err != nil {
		return nil, err
	}
	if rec.Deleted {
		return nil, nfSubnet(id)
	}
	s.AvailableIPs = rec.available()
	return s, nil
}

// ListSubnets returns the account's subnets with their AvailableIPs.
func (m *Model) ListSubnets(ctx context.Context, accountID string) ([]*Subnet, error) {
	subs, err := list(ctx, m.subs, accountID)
	if err != nil {
		return nil, err
	}
	recs, err := list(ctx, m.ipam, accountID)
	if err != nil {
		return nil, err
	}
	byID := map[string]*ipamRecord{}
	for _, r := range recs {
		byID[r.SubnetID] = r
	}
	out := subs[:0]
	for _, s := range subs {
		r := byID[s.ID]
		if r == nil || r.Deleted {
			continue
		}
		s.AvailableIPs = r.available()
		out = append(out, s)
	}
	return out, nil
}

// DeleteSubnet deletes a subnet that holds no network interfaces.
func (m *Model) DeleteSubnet(ctx context.Context, accountID, id string) error {
	s, _, err := get(ctx, m.subs, accountID, id, nfSubnet)
	if err != nil {
		return err
	}
	_, err = update(ctx, m.ipam, accountID, id, nfSubnet, func(r *ipamRecord) error {
		if r.Deleted {
			return nfSubnet(id)
		}
		for ip, owner := range r.Allocated {
			return errf(CodeDependencyViolation, "The subnet '%s' has dependencies and cannot be deleted: %s uses %s (delete it first)", id, owner, ip)
		}
		r.Deleted = true
		return nil
	})
	if err != nil {
		return err
	}
	errs := []error{m.subs.Delete(ctx, key(accountID, id))}
	_, err = update(ctx, m.vpcs, accountID, s.VpcID, nfVPC, func(v *VPC) error { delete(v.Subnets, id); return nil })
	if err != nil && !IsCode(err, CodeVpcNotFound) {
		errs = append(errs, err)
	}
	errs = append(errs, m.ipam.Delete(ctx, key(accountID, id)))
	m.changed()
	return errors.Join(errs...)
}

// cleanTags drops tags with empty keys and keeps the last value per key.
func cleanTags(tags []Tag) []Tag {
	var out []Tag
	for _, t := range tags {
		if t.Key == "" {
			continue
		}
		out = setTag(out, t)
	}
	return out
}

func setTag(list []Tag, t Tag) []Tag {
	for i := range list {
		if list[i].Key == t.Key {
			list[i].Value = t.Value
			return list
		}
	}
	return append(list, t)
}
