package vpc

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// CreateRouteTable creates a (non-main) route table holding the local route.
func (m *Model) CreateRouteTable(ctx context.Context, accountID, vpcID string, tags []Tag) (*RouteTable, error) {
	if vpcID == "" {
		return nil, missing("VpcId")
	}
	v, err := m.GetVPC(ctx, accountID, vpcID)
	if err != nil {
		return nil, err
	}
	rt := &RouteTable{
		ID: NewID(PrefixRouteTable), AccountID: accountID, VpcID: v.ID, Tags: cleanTags(tags), Created: m.now().UTC(),
		Routes: []Route{{DestinationCidrBlock: v.CidrBlock, GatewayID: "local", Origin: "CreateRouteTable"}},
	}
	if _, err := m.rtbs.Create(ctx, key(accountID, rt.ID), rt); err != nil {
		return nil, err
	}
	m.changed()
	return m.GetRouteTable(ctx, accountID, rt.ID)
}

// GetRouteTable returns one route table with associations and route states.
func (m *Model) GetRouteTable(ctx context.Context, accountID, id string) (*RouteTable, error) {
	rt, _, err := get(ctx, m.rtbs, accountID, id, nfRouteTable)
	if err != nil {
		return nil, err
	}
	if err := m.fillRouteTables(ctx, accountID, []*RouteTable{rt}); err != nil {
		return nil, err
	}
	return rt, nil
}

// ListRouteTables returns the account's route tables with associations and
// route states.
func (m *Model) ListRouteTables(ctx context.Context, accountID string) ([]*RouteTable, error) {
	rts, err := list(ctx, m.rtbs, accountID)
	if err != nil {
		return nil, err
	}
	return rts, m.fillRouteTables(ctx, accountID, rts)
}

func (m *Model) fillRouteTables(ctx context.Context, accountID string, rts []*RouteTable) error {
	subs, err := m.ListSubnets(ctx, accountID)
	if err != nil {
		return err
	}
	igws, err := list(ctx, m.igws, accountID)
	if err != nil {
		return err
	}
	nats, err := list(ctx, m.nats, accountID)
	if err != nil {
		return err
	}
	fillRoutes(rts, subs, igws, nats)
	return nil
}

// fillRoutes computes associations and route states (pure).
func fillRoutes(rts []*RouteTable, subs []*Subnet, igws []*InternetGateway, nats []*NatGateway) {
	igwVPC := map[string]string{}
	for _, g := range igws {
		igwVPC[g.ID] = g.VpcID
	}
	natOK := map[string]bool{}
	for _, n := range nats {
		natOK[n.ID] = n.State == NatStateAvailable
	}
	for _, rt := range rts {
		rt.Associations = nil
		if rt.Main {
			rt.Associations = append(rt.Associations, Association{ID: rt.MainAssociationID, RouteTableID: rt.ID, Main: true})
		}
		for _, s := range subs {
			if s.RouteTableID == rt.ID {
				rt.Associations = append(rt.Associations, Association{ID: s.AssociationID, RouteTableID: rt.ID, SubnetID: s.ID})
			}
		}
		for i := range rt.Routes {
			r := &rt.Routes[i]
			r.State = "active"
			switch {
			case r.NatGatewayID != "" && !natOK[r.NatGatewayID]:
				r.State = "blackhole"
			case r.GatewayID != "" && r.GatewayID != "local" && igwVPC[r.GatewayID] != rt.VpcID:
				r.State = "blackhole"
			}
		}
	}
}

// DeleteRouteTable deletes a non-main route table without associations.
func (m *Model) DeleteRouteTable(ctx context.Context, accountID, id string) error {
	rt, err := m.GetRouteTable(ctx, accountID, id)
	if err != nil {
		return err
	}
	if rt.Main || len(rt.Associations) > 0 {
		return errf(CodeDependencyViolation, "The routeTable '%s' has dependencies and cannot be deleted (it is the main table or has subnet associations; disassociate them first)", id)
	}
	if err := m.rtbs.Delete(ctx, key(accountID, id)); err != nil {
		return err
	}
	m.changed()
	return nil
}

// RouteRequest is CreateRoute's input: one of GatewayID (an igw-) or
// NatGatewayID.
type RouteRequest struct {
	RouteTableID         string
	DestinationCidrBlock string
	GatewayID            string
	NatGatewayID         string
}

// CreateRoute adds a route to an internet gateway attached to the table's
// VPC or to a NAT gateway in it.
func (m *Model) CreateRoute(ctx context.Context, accountID string, req RouteRequest) error {
	if req.RouteTableID == "" {
		return missing("RouteTableId")
	}
	if req.DestinationCidrBlock == "" {
		return missing("DestinationCidrBlock")
	}
	dst, err := netip.ParsePrefix(req.DestinationCidrBlock)
	if err != nil || !dst.Addr().Is4() {
		return invalidValue("DestinationCidrBlock", req.DestinationCidrBlock, "This is not a valid IPv4 CIDR block.")
	}
	dst = dst.Masked()
	switch {
	case req.GatewayID == "" && req.NatGatewayID == "":
		return errf(CodeMissingParameter, "The request must contain exactly one of gatewayId or natGatewayId")
	case req.GatewayID != "" && req.NatGatewayID != "":
		return errf(CodeInvalidParameterCombo, "The parameter gatewayId cannot be used with natGatewayId; specify exactly one target")
	case req.GatewayID == "local":
		return invalidValue("GatewayId", "local", "The local route is created with the route table and cannot be added.")
	}
	rt, _, err := get(ctx, m.rtbs, accountID, req.RouteTableID, nfRouteTable)
	if err != nil {
		return err
	}
	r := Route{DestinationCidrBlock: dst.String(), Origin: "CreateRoute"}
	if req.GatewayID != "" {
		g, _, err := get(ctx, m.igws, accountID, req.GatewayID, nfIGW)
		if err != nil {
			return err
		}
		if g.VpcID != rt.VpcID {
			return errf(CodeInvalidParameterValue, "route table %s and network gateway %s belong to different networks (attach the gateway to %s first)", rt.ID, g.ID, rt.VpcID)
		}
		r.GatewayID = g.ID
	} else {
		n, _, err := get(ctx, m.nats, accountID, req.NatGatewayID, nfNAT)
		if err != nil {
			return err
		}
		if n.State != NatStateAvailable {
			return nfNAT(n.ID)
		}
		if n.VpcID != rt.VpcID {
			return errf(CodeInvalidParameterValue, "route table %s and NAT gateway %s belong to different networks", rt.ID, n.ID)
		}
		r.NatGatewayID = n.ID
	}
	_, err = update(ctx, m.rtbs, accountID, rt.ID, nfRouteTable, func(rt *RouteTable) error {
		for _, o := range rt.Routes {
			if o.DestinationCidrBlock == r.DestinationCidrBlock {
				return errf(CodeRouteAlreadyExists, "The route identified by %s already exists.", r.DestinationCidrBlock)
			}
		}
		rt.Routes = append(rt.Routes, r)
		return nil
	})
	if err != nil {
		return err
	}
	m.changed()
	return nil
}

// DeleteRoute removes a route (not the local one).
func (m *Model) DeleteRoute(ctx context.Context, accountID, rtbID, destination string) error {
	if rtbID == "" {
		return missing("RouteTableId")
	}
	if destination == "" {
		return missing("DestinationCidrBlock")
	}
	dst, err := netip.ParsePrefix(destination)
	if err != nil || !dst.Addr().Is4() {
		return invalidValue("DestinationCidrBlock", destination, "This is not a valid IPv4 CIDR block.")
	}
	_, err = update(ctx, m.rtbs, accountID, rtbID, nfRouteTable, func(rt *RouteTable) error {
		for i, o := range rt.Routes {
			if o.DestinationCidrBlock == dst.Masked().String() {
				if o.GatewayID == "local" {
					return errf(CodeInvalidParameterValue, "cannot remove local route %s in route table %s", o.DestinationCidrBlock, rtbID)
				}
				rt.Routes = append(rt.Routes[:i:i], rt.Routes[i+1:]...)
				return nil
			}
		}
		return errf(CodeRouteNotFound, "no route with destination-cidr-block %s in route table %s", destination, rtbID)
	})
	if err != nil {
		return err
	}
	m.changed()
	return nil
}

// AssociateRouteTable associates a subnet with a route table of its VPC and
// returns the association ID. A subnet has at most one explicit association.
func (m *Model) AssociateRouteTable(ctx context.Context, accountID, rtbID, subnetID string) (string, error) {
	if rtbID == "" {
		return "", missing("RouteTableId")
	}
	if subnetID == "" {
		return "", missing("SubnetId")
	}
	rt, _, err := get(ctx, m.rtbs, accountID, rtbID, nfRouteTable)
	if err != nil {
		return "", err
	}
	if _, err := m.GetSubnet(ctx, accountID, subnetID); err != nil {
		return "", err
	}
	assoc := NewID(PrefixAssociation)
	_, err = update(ctx, m.subs, accountID, subnetID, nfSubnet, func(s *Subnet) error {
		if s.VpcID != rt.VpcID {
			return errf(CodeInvalidParameterValue, "route table %s and subnet %s belong to different networks", rtbID, subnetID)
		}
		if s.RouteTableID != "" {
			return errf(CodeAlreadyAssociated, "the specified association for route table %s conflicts with an existing association %s of subnet %s (disassociate it first)", rtbID, s.AssociationID, subnetID)
		}
		s.RouteTableID, s.AssociationID = rtbID, assoc
		return nil
	})
	if err != nil {
		return "", err
	}
	m.changed()
	return assoc, nil
}

// DisassociateRouteTable removes an explicit subnet association; the subnet
// falls back to the main table.
func (m *Model) DisassociateRouteTable(ctx context.Context, accountID, associationID string) error {
	subs, err := m.ListSubnets(ctx, accountID)
	if err != nil {
		return err
	}
	for _, s := range subs {
		if s.AssociationID == associationID {
			_, err := update(ctx, m.subs, accountID, s.ID, nfSubnet, func(s *Subnet) error {
				if s.AssociationID != associationID {
					return errf(CodeAssociationNotFound, "The association ID '%s' does not exist", associationID)
				}
				s.RouteTableID, s.AssociationID = "", ""
				return nil
			})
			if err == nil {
				m.changed()
			}
			return err
		}
	}
	return errf(CodeAssociationNotFound, "The association ID '%s' does not exist", associationID)
}

// CreateInternetGateway creates a detached internet gateway.
func (m *Model) CreateInternetGateway(ctx context.Context, accountID string, tags []Tag) (*InternetGateway, error) {
	g := &InternetGateway{ID: NewID(PrefixInternetGW), AccountID: accountID, Tags: cleanTags(tags), Created: m.now().UTC()}
	if _, err := m.igws.Create(ctx, key(accountID, g.ID), g); err != nil {
		return nil, err
	}
	m.changed()
	return g, nil
}

// GetInternetGateway returns one internet gateway.
func (m *Model) GetInternetGateway(ctx context.Context, accountID, id string) (*InternetGateway, error) {
	g, _, err := get(ctx, m.igws, accountID, id, nfIGW)
	return g, err
}

// ListInternetGateways returns the account's internet gateways.
func (m *Model) ListInternetGateways(ctx context.Context, accountID string) ([]*InternetGateway, error) {
	return list(ctx, m.igws, accountID)
}

// AttachInternetGateway attaches a gateway to a VPC (one gateway per VPC).
func (m *Model) AttachInternetGateway(ctx context.Context, accountID, igwID, vpcID string) error {
	if igwID == "" {
		return missing("InternetGatewayId")
	}
	if vpcID == "" {
		return missing("VpcId")
	}
	if _, err := m.GetInternetGateway(ctx, accountID, igwID); err != nil {
		return err
	}
	if _, err := m.GetVPC(ctx, accountID, vpcID); err != nil {
		return err
	}
	all, err := list(ctx, m.igws, accountID)
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.VpcID == vpcID && o.ID != igwID {
			return errf(CodeAlreadyAssociated, "network %s already has an internet gateway attached (%s)", vpcID, o.ID)
		}
	}
	_, err = update(ctx, m.igws, accountID, igwID, nfIGW, func(g *InternetGateway) error {
		if g.VpcID != "" {
			return errf(CodeAlreadyAssociated, "resource %s is already attached to network %s", igwID, g.VpcID)
		}
		g.VpcID = vpcID
		return nil
	})
	if err != nil {
		return err
	}
	m.changed()
	return nil
}

// DetachInternetGateway detaches a gateway from a VPC.
func (m *Model) DetachInternetGateway(ctx context.Context, accountID, igwID, vpcID string) error {
	if igwID == "" {
		return missing("InternetGatewayId")
	}
	if vpcID == "" {
		return missing("VpcId")
	}
	_, err := update(ctx, m.igws, accountID, igwID, nfIGW, func(g *InternetGateway) error {
		if g.VpcID != vpcID {
			return errf(CodeGatewayNotAttached, "resource %s is not attached to network %s", igwID, vpcID)
		}
		g.VpcID = ""
		return nil
	})
	if err != nil {
		return err
	}
	m.changed()
	return nil
}

// DeleteInternetGateway deletes a detached gateway.
func (m *Model) DeleteInternetGateway(ctx context.Context, accountID, igwID string) error {
	g, err := m.GetInternetGateway(ctx, accountID, igwID)
	if err != nil {
		return err
	}
	if g.VpcID != "" {
		return errf(CodeDependencyViolation, "The internetGateway '%s' has dependencies and cannot be deleted: it is attached to %s (detach it first)", igwID, g.VpcID)
	}
	if err := m.igws.Delete(ctx, key(accountID, igwID)); err != nil {
		return err
	}
	m.changed()
	return nil
}

// NatRequest is CreateNatGateway's input.
type NatRequest struct {
	SubnetID         string
	ConnectivityType string // public (default) | private
	AllocationID     string
	PrivateIP        string
	Tags             []Tag
}

// NatRequesterID is the RequesterId of NAT gateway interfaces.
const NatRequesterID = "amazon-nat-gateway"

// natRetention is how long deleted NAT gateways stay visible, as on EC2.
const natRetention = time.Hour

// CreateNatGateway creates a NAT gateway owning an address of its subnet
// (through a nat_gateway interface). It is available at once.
func (m *Model) CreateNatGateway(ctx context.Context, accountID string, req NatRequest) (*NatGateway, error) {
	if req.SubnetID == "" {
		return nil, missing("SubnetId")
	}
	ct := req.ConnectivityType
	if ct == "" {
		ct = "public"
	}
	if ct != "public" && ct != "private" {
		return nil, invalidValue("ConnectivityType", ct, "Use public or private.")
	}
	if ct == "private" && req.AllocationID != "" {
		return nil, errf(CodeInvalidParameterCombo, "A private NAT gateway cannot have an Elastic IP allocation (AllocationId)")
	}
	sub, err := m.GetSubnet(ctx, accountID, req.SubnetID)
	if err != nil {
		return nil, err
	}
	n := &NatGateway{
		ID: NewID(PrefixNatGateway), AccountID: accountID, VpcID: sub.VpcID, SubnetID: sub.ID,
		ConnectivityType: ct, State: NatStateAvailable, AllocationID: req.AllocationID,
		Tags: cleanTags(req.Tags), Created: m.now().UTC(),
	}
	if ct == "public" && n.AllocationID == "" {
		n.AllocationID = NewID(PrefixEIPAllocation)
	}
	eni, err := m.CreateInterface(ctx, accountID, InterfaceRequest{
		SubnetID: sub.ID, PrivateIP: req.PrivateIP, InterfaceType: InterfaceTypeNAT,
		Description: "Interface for NAT Gateway " + n.ID, RequesterID: NatRequesterID,
	})
	if err != nil {
		return nil, err
	}
	n.PrivateIP, n.NetworkInterfaceID = eni.PrivateIP, eni.ID
	if _, err := m.nats.Create(ctx, key(accountID, n.ID), n); err != nil {
		_ = m.DeleteInterface(ctx, accountID, eni.ID)
		return nil, err
	}
	m.log.Info("nat gateway created", "account", accountID, "nat", n.ID, "subnet", sub.ID, "ip", n.PrivateIP)
	m.changed()
	return n, nil
}

// GetNatGateway returns one NAT gateway (deleted ones stay visible for a while).
func (m *Model) GetNatGateway(ctx context.Context, accountID, id string) (*NatGateway, error) {
	n, _, err := get(ctx, m.nats, accountID, id, nfNAT)
	return n, err
}

// ListNatGateways returns the account's NAT gateways, purging those deleted
// more than an hour ago.
func (m *Model) ListNatGateways(ctx context.Context, accountID string) ([]*NatGateway, error) {
	all, err := list(ctx, m.nats, accountID)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, n := range all {
		if n.Deleted != nil && m.now().Sub(*n.Deleted) > natRetention {
			_ = m.nats.Delete(ctx, key(n.AccountID, n.ID))
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// DeleteNatGateway deletes a NAT gateway: its interface and address are
// released and it shows as "deleted"; routes to it become blackholes.
func (m *Model) DeleteNatGateway(ctx context.Context, accountID, id string) error {
	if id == "" {
		return missing("NatGatewayId")
	}
	n, err := update(ctx, m.nats, accountID, id, nfNAT, func(n *NatGateway) error {
		if n.State == NatStateDeleted {
			return nfNAT(id)
		}
		now := m.now().UTC()
		n.State, n.Deleted = NatStateDeleted, &now
		return nil
	})
	if err != nil {
		return err
	}
	err = m.DeleteInterface(ctx, accountID, n.NetworkInterfaceID)
	m.changed()
	return errors.Join(err)
}
