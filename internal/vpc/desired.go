package vpc

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
)

// DesiredState is what the datapath must look like: one router per VPC
// with its subnets, interfaces, security groups (as resolved rule lists),
// per-subnet routes and NAT gateways. It is derived from records only.
type DesiredState struct {
	VPCs []DesiredVPC
}

// DesiredVPC is one VPC's router.
type DesiredVPC struct {
	AccountID string
	ID        string
	CIDR      netip.Prefix
	VNI       uint32
	// InternetGatewayID is the attached internet gateway ("" if none).
	InternetGatewayID string
	Subnets           []DesiredSubnet
	Interfaces        []DesiredInterface
	SecurityGroups    []DesiredSecurityGroup
	NATGateways       []DesiredNATGateway
}

// DesiredSubnet is a subnet: the router answers for Gateway (network + 1).
type DesiredSubnet struct {
	ID               string
	CIDR             netip.Prefix
	Gateway          netip.Addr
	AvailabilityZone string
	// RouteTableID is the explicitly associated table, or the main one.
	RouteTableID string
	Routes       []DesiredRoute
	// DefaultRoute is the 0.0.0.0/0 route (Target RouteNone if absent).
	DefaultRoute DesiredRoute
}

// RouteTarget says where a route leads.
type RouteTarget string

// Route targets.
const (
	RouteNone      RouteTarget = "none"
	RouteLocal     RouteTarget = "local"
	RouteIGW       RouteTarget = "igw"
	RouteNAT       RouteTarget = "nat"
	RouteBlackhole RouteTarget = "blackhole" // target gone or detached: drop
)

// DesiredRoute is one resolved route.
type DesiredRoute struct {
	Destination  netip.Prefix
	Target       RouteTarget
	GatewayID    string     // igw
	NATGatewayID string     // nat
	NATAddress   netip.Addr // nat: the gateway's address
	NATSubnetID  string     // nat: the gateway's subnet
}

// DesiredInterface is an address the router owns on a subnet (a /32 veth
// or a Hyperplane ENI) with its security groups.
type DesiredInterface struct {
	ID       string
	SubnetID string
	Address  netip.Addr
	MAC      string
	Type     string // interface | lambda | nat_gateway
	Status   string
	GroupIDs []string
	Home     string // "" on a single host
}

// DesiredSecurityGroup is a group as the firewall sees it: its members'
// addresses (an nft set) and its rules.
type DesiredSecurityGroup struct {
	ID      string
	Name    string
	Members []netip.Addr
	Ingress []DesiredRule
	Egress  []DesiredRule
}

// DesiredRule is one rule. Protocol is an IP protocol number or -1 (all);
// FromPort/ToPort are the port range (tcp/udp) or ICMP type/code (-1 any),
// -1/-1 for other protocols. Exactly one of CIDR (valid) or GroupID is set;
// for GroupID, Addresses are the referenced group's current members.
type DesiredRule struct {
	Protocol  int
	FromPort  int
	ToPort    int
	CIDR      netip.Prefix
	GroupID   string
	Addresses []netip.Addr
}

// DesiredNATGateway is a NAT gateway: traffic routed to it is masqueraded
// (public: to the outside; private: to Address).
type DesiredNATGateway struct {
	ID               string
	SubnetID         string
	InterfaceID      string
	Address          netip.Addr
	ConnectivityType string
}

// Snapshot is every record the desired state is computed from.
type Snapshot struct {
	VPCs             []*VPC
	Subnets          []*Subnet
	SecurityGroups   []*SecurityGroup
	Interfaces       []*NetworkInterface
	RouteTables      []*RouteTable
	InternetGateways []*InternetGateway
	NatGateways      []*NatGateway
}

// DesiredWatched computes the desired datapath state from the mirror
// Watch keeps (waiting for its initial load), without a store round trip;
// without Watch it is Desired. The mirror may lag a write that just
// returned, but it has every change whose Subscribe signal was sent: a
// subscriber that calls it after each signal converges on every change.
func (m *Model) DesiredWatched(ctx context.Context) (*DesiredState, error) {
	m.mu.Lock()
	mi := m.mirror
	m.mu.Unlock()
	if mi == nil {
		return m.Desired(ctx)
	}
	select {
	case <-mi.ready:
		return BuildDesired(mi.snapshot()), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Desired reads all accounts' records from the store and computes the
// desired datapath state; it reflects every write that returned before it.
func (m *Model) Desired(ctx context.Context) (*DesiredState, error) {
	var s Snapshot
	var err error
	if s.VPCs, err = list(ctx, m.vpcs, ""); err != nil {
		return nil, err
	}
	if s.Subnets, err = list(ctx, m.subs, ""); err != nil {
		return nil, err
	}
	if s.SecurityGroups, err = list(ctx, m.sgs, ""); err != nil {
		return nil, err
	}
	if s.Interfaces, err = list(ctx, m.enis, ""); err != nil {
		return nil, err
	}
	if s.RouteTables, err = list(ctx, m.rtbs, ""); err != nil {
		return nil, err
	}
	if s.InternetGateways, err = list(ctx, m.igws, ""); err != nil {
		return nil, err
	}
	if s.NatGateways, err = list(ctx, m.nats, ""); err != nil {
		return nil, err
	}
	return BuildDesired(&s), nil
}

// BuildDesired computes the desired state from records (pure). Output is
// sorted (VPCs by account and ID, everything else by ID) so equal inputs
// give equal outputs.
func BuildDesired(s *Snapshot) *DesiredState {
	type vk struct{ acct, id string }
	out := &DesiredState{}
	idx := map[vk]int{}
	mainRT := map[vk]string{}
	for _, v := range s.VPCs {
		if v.State == "deleting" {
			continue
		}
		p, err := netip.ParsePrefix(v.CidrBlock)
		if err != nil {
			continue
		}
		idx[vk{v.AccountID, v.ID}] = len(out.VPCs)
		mainRT[vk{v.AccountID, v.ID}] = v.MainRouteTableID
		out.VPCs = append(out.VPCs, DesiredVPC{AccountID: v.AccountID, ID: v.ID, CIDR: p, VNI: v.VNI})
	}
	vpcOf := func(acct, id string) *DesiredVPC {
		if i, ok := idx[vk{acct, id}]; ok {
			return &out.VPCs[i]
		}
		return nil
	}
	for _, g := range s.InternetGateways {
		if dv := vpcOf(g.AccountID, g.VpcID); dv != nil {
			dv.InternetGatewayID = g.ID
		}
	}
	nats := map[string]*NatGateway{}
	for _, n := range s.NatGateways {
		if n.State != NatStateAvailable {
			continue
		}
		nats[key(n.AccountID, n.ID)] = n
		if dv := vpcOf(n.AccountID, n.VpcID); dv != nil {
			a, _ := netip.ParseAddr(n.PrivateIP)
			dv.NATGateways = append(dv.NATGateways, DesiredNATGateway{ID: n.ID, SubnetID: n.SubnetID, InterfaceID: n.NetworkInterfaceID, Address: a, ConnectivityType: n.ConnectivityType})
		}
	}
	rts := map[vk]*RouteTable{}
	for _, rt := range s.RouteTables {
		rts[vk{rt.AccountID, rt.ID}] = rt
	}
	for _, sub := range s.Subnets {
		dv := vpcOf(sub.AccountID, sub.VpcID)
		if dv == nil {
			continue
		}
		p, err := netip.ParsePrefix(sub.CidrBlock)
		if err != nil {
			continue
		}
		ds := DesiredSubnet{ID: sub.ID, CIDR: p, Gateway: GatewayAddress(p), AvailabilityZone: sub.AvailabilityZone,
			DefaultRoute: DesiredRoute{Destination: netip.MustParsePrefix("0.0.0.0/0"), Target: RouteNone}}
		rtID := sub.RouteTableID
		if rtID == "" {
			rtID = mainRT[vk{sub.AccountID, sub.VpcID}]
		}
		ds.RouteTableID = rtID
		if rt := rts[vk{sub.AccountID, rtID}]; rt != nil {
			for _, r := range rt.Routes {
				dr := resolveRoute(r, dv, nats, sub.AccountID)
				ds.Routes = append(ds.Routes, dr)
				if dr.Destination.Bits() == 0 {
					ds.DefaultRoute = dr
				}
			}
		}
		dv.Subnets = append(dv.Subnets, ds)
	}
	members := map[vk][]netip.Addr{}
	for _, n := range s.Interfaces {
		dv := vpcOf(n.AccountID, n.VpcID)
		if dv == nil {
			continue
		}
		a, err := netip.ParseAddr(n.PrivateIP)
		if err != nil {
			continue
		}
		dv.Interfaces = append(dv.Interfaces, DesiredInterface{ID: n.ID, SubnetID: n.SubnetID, Address: a, MAC: n.MAC,
			Type: n.InterfaceType, Status: n.Status, GroupIDs: slices.Clone(n.Groups), Home: n.Home})
		for _, g := range n.Groups {
			members[vk{n.AccountID, g}] = append(members[vk{n.AccountID, g}], a)
		}
	}
	for k, as := range members {
		slices.SortFunc(as, netip.Addr.Compare)
		members[k] = slices.Compact(as)
	}
	rules := func(acct string, rs []Rule) []DesiredRule {
		var out []DesiredRule
		for _, r := range rs {
			dr := DesiredRule{Protocol: ProtocolNumber(r.Protocol), FromPort: int(r.FromPort), ToPort: int(r.ToPort), GroupID: r.GroupID}
			if r.CIDR != "" {
				p, err := netip.ParsePrefix(r.CIDR)
				if err != nil {
					continue
				}
				dr.CIDR = p
			} else {
				dr.Addresses = slices.Clone(members[vk{acct, r.GroupID}])
			}
			out = append(out, dr)
		}
		return out
	}
	for _, g := range s.SecurityGroups {
		dv := vpcOf(g.AccountID, g.VpcID)
		if dv == nil {
			continue
		}
		dv.SecurityGroups = append(dv.SecurityGroups, DesiredSecurityGroup{ID: g.ID, Name: g.Name,
			Members: slices.Clone(members[vk{g.AccountID, g.ID}]),
			Ingress: rules(g.AccountID, g.Ingress), Egress: rules(g.AccountID, g.Egress)})
	}
	slices.SortFunc(out.VPCs, func(a, b DesiredVPC) int {
		return cmp.Or(cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.ID, b.ID))
	})
	for i := range out.VPCs {
		dv := &out.VPCs[i]
		slices.SortFunc(dv.Subnets, func(a, b DesiredSubnet) int { return cmp.Compare(a.ID, b.ID) })
		slices.SortFunc(dv.Interfaces, func(a, b DesiredInterface) int { return cmp.Compare(a.ID, b.ID) })
		slices.SortFunc(dv.SecurityGroups, func(a, b DesiredSecurityGroup) int { return cmp.Compare(a.ID, b.ID) })
		slices.SortFunc(dv.NATGateways, func(a, b DesiredNATGateway) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out
}

func resolveRoute(r Route, dv *DesiredVPC, nats map[string]*NatGateway, acct string) DesiredRoute {
	p, _ := netip.ParsePrefix(r.DestinationCidrBlock)
	dr := DesiredRoute{Destination: p, Target: RouteBlackhole}
	switch {
	case r.GatewayID == "local":
		dr.Target = RouteLocal
	case r.GatewayID != "":
		dr.GatewayID = r.GatewayID
		if dv.InternetGatewayID == r.GatewayID {
			dr.Target = RouteIGW
		}
	case r.NatGatewayID != "":
		dr.NATGatewayID = r.NatGatewayID
		if n := nats[key(acct, r.NatGatewayID)]; n != nil && n.VpcID == dv.ID {
			dr.Target = RouteNAT
			dr.NATAddress, _ = netip.ParseAddr(n.PrivateIP)
			dr.NATSubnetID = n.SubnetID
		}
	}
	return dr
}
