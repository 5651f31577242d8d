package vpc

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"slices"
)

// MaxGroupsPerInterface is EC2's default security-group limit per interface.
const MaxGroupsPerInterface = 5

// InterfaceRequest is the input of CreateInterface.
type InterfaceRequest struct {
	SubnetID string
	// GroupIDs are security groups of the subnet's VPC; empty means the
	// VPC's default group.
	GroupIDs []string
	// PrivateIP, when set, is the address to take (it must be free).
	PrivateIP string
	// InterfaceType is "interface" (default), "lambda" or "nat_gateway".
	InterfaceType string
	Description   string
	// RequesterID marks a service-managed interface (e.g. the Lambda
	// service for Hyperplane ENIs).
	RequesterID string
	Tags        []Tag
	// ID, when set, is the new interface's ID (eni-...), chosen by a
	// service that records the interface before creating it, so that a
	// crash in between leaves a record of nothing rather than an interface
	// nobody knows. Empty: a new ID.
	ID string
	// Home is the interface's home host; empty: the model's (SetHome).
	Home string
}

// CreateInterface creates a network interface in a subnet, taking an address
// from the subnet's IPAM (revision-checked, so concurrent creations never
// share an address). User-created interfaces are "available"; lambda and
// nat_gateway interfaces are "in-use" from the start.
func (m *Model) CreateInterface(ctx context.Context, accountID string, req InterfaceRequest) (*NetworkInterface, error) {
	if req.SubnetID == "" {
		return nil, missing("SubnetId")
	}
	typ := req.InterfaceType
	if typ == "" {
		typ = InterfaceTypeInterface
	}
	switch typ {
	case InterfaceTypeInterface, InterfaceTypeLambda, InterfaceTypeNAT:
	default:
		return nil, invalidValue("InterfaceType", typ, "Supported types: interface, lambda, nat_gateway.")
	}
	var want netip.Addr
	if req.PrivateIP != "" {
		a, err := netip.ParseAddr(req.PrivateIP)
		if err != nil || !a.Is4() {
			return nil, invalidValue("PrivateIpAddress", req.PrivateIP, "This is not a valid IPv4 address.")
		}
		want = a
	}
	sub, err := m.GetSubnet(ctx, accountID, req.SubnetID)
	if err != nil {
		return nil, err
	}
	groups, err := m.checkGroups(ctx, accountID, sub.VpcID, req.GroupIDs, typ == InterfaceTypeNAT)
	if err != nil {
		return nil, err
	}
	status := StatusAvailable
	if typ != InterfaceTypeInterface {
		status = StatusInUse
	}
	id := req.ID
	if id == "" {
		id = NewID(PrefixInterface)
	} else if !validID(PrefixInterface, id) {
		return nil, invalidValue("NetworkInterfaceId", id, "Use an ID of the form eni-<17 hex digits>.")
	}
	n := &NetworkInterface{
		ID: id, AccountID: accountID, VpcID: sub.VpcID, SubnetID: sub.ID,
		AvailabilityZone: sub.AvailabilityZone, MAC: newMAC(), Groups: groups, InterfaceType: typ,
		Status: status, Description: req.Description, RequesterID: req.RequesterID,
		RequesterManaged: req.RequesterID != "", Tags: cleanTags(req.Tags), Created: m.now().UTC(),
		Home: cmp.Or(req.Home, m.Home()),
	}
	ip, err := m.allocate(ctx, accountID, sub.ID, n.ID, want)
	if err != nil {
		return nil, err
	}
	n.PrivateIP = ip.String()
	if _, err := m.enis.Create(ctx, key(accountID, n.ID), n); err != nil {
		_ = m.release(ctx, accountID, sub.ID, n.PrivateIP, n.ID)
		return nil, err
	}
	m.log.Info("network interface created", "account", accountID, "eni", n.ID, "subnet", sub.ID, "ip", n.PrivateIP, "type", typ)
	m.changed()
	return n, nil
}

// checkGroups validates interface groups: same VPC, at most five, defaulting
// to the VPC's default group (unless none is wanted, for NAT interfaces).
func (m *Model) checkGroups(ctx context.Context, accountID, vpcID string, ids []string, none bool) ([]string, error) {
	var out []string
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if len(out) > MaxGroupsPerInterface {
		return nil, errf("SecurityGroupsPerInterfaceLimitExceeded", "You have specified %d security groups; an interface may have at most %d.", len(out), MaxGroupsPerInterface)
	}
	for _, id := range out {
		g, err := m.GetSecurityGroup(ctx, accountID, id)
		if err != nil {
			return nil, err
		}
		if g.VpcID != vpcID {
			return nil, errf(CodeInvalidParameterValue, "Security group %s and subnet belong to different networks (%s, %s).", id, g.VpcID, vpcID)
		}
	}
	if len(out) == 0 && !none {
		v, err := m.GetVPC(ctx, accountID, vpcID)
		if err != nil {
			return nil, err
		}
		out = []string{v.DefaultSecurityGroupID}
	}
	slices.Sort(out)
	return out, nil
}

func (m *Model) allocate(ctx context.Context, accountID, subnetID, owner string, want netip.Addr) (netip.Addr, error) {
	var got netip.Addr
	_, err := update(ctx, m.ipam, accountID, subnetID, nfSubnet, func(r *ipamRecord) error {
		if r.Deleted {
			return nfSubnet(subnetID)
		}
		a, err := r.allocate(owner, want)
		got = a
		return err
	})
	return got, err
}

func (m *Model) release(ctx context.Context, accountID, subnetID, ip, owner string) error {
	_, err := update(ctx, m.ipam, accountID, subnetID, nfSubnet, func(r *ipamRecord) error {
		r.release(ip, owner)
		return nil
	})
	if IsCode(err, CodeSubnetNotFound) {
		return nil
	}
	return err
}

// GetInterface returns one network interface.
func (m *Model) GetInterface(ctx context.Context, accountID, id string) (*NetworkInterface, error) {
	n, _, err := get(ctx, m.enis, accountID, id, nfInterface)
	return n, err
}

// ListInterfaces returns the account's interfaces ordered by ID.
func (m *Model) ListInterfaces(ctx context.Context, accountID string) ([]*NetworkInterface, error) {
	return list(ctx, m.enis, accountID)
}

// SetInterfaceStatus sets an interface's status (available | in-use).
func (m *Model) SetInterfaceStatus(ctx context.Context, accountID, id, status string) (*NetworkInterface, error) {
	if status != StatusAvailable && status != StatusInUse {
		return nil, invalidValue("Status", status, "Use available or in-use.")
	}
	n, err := update(ctx, m.enis, accountID, id, nfInterface, func(n *NetworkInterface) error {
		n.Status = status
		return nil
	})
	if err == nil {
		m.changed()
	}
	return n, err
}

// DeleteNetworkInterface is the user's DeleteNetworkInterface: interfaces
// in use (lambda, NAT gateway or attached) cannot be deleted.
func (m *Model) DeleteNetworkInterface(ctx context.Context, accountID, id string) error {
	n, err := m.GetInterface(ctx, accountID, id)
	if err != nil {
		return err
	}
	if n.Status == StatusInUse {
		return errf(CodeInterfaceInUse, "The network interface '%s' is currently in use (type %s) and cannot be deleted", id, n.InterfaceType)
	}
	return m.DeleteInterface(ctx, accountID, id)
}

// DeleteInterface deletes an interface whatever its status and releases
// its address, for internal callers (Hyperplane reclaim). Deleting an
// interface that is already gone succeeds.
func (m *Model) DeleteInterface(ctx context.Context, accountID, id string) error {
	n, _, err := get(ctx, m.enis, accountID, id, nfInterface)
	if IsCode(err, CodeInterfaceNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// Record first, address second: a crash in between leaves an address
	// allocated to no interface (Open releases it) rather than handing it
	// out twice.
	if err := m.enis.Delete(ctx, key(accountID, id)); err != nil {
		return err
	}
	err = m.release(ctx, accountID, n.SubnetID, n.PrivateIP, n.ID)
	m.log.Info("network interface deleted", "account", accountID, "eni", id, "ip", n.PrivateIP)
	m.changed()
	return errors.Join(err)
}
