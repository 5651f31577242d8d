package datapath

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// groupKey is a security group's name inside nft objects ("sg-0a1b" → "0a1b").
func groupKey(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// Build computes the kernel specs of every VPC router from the model's
// desired state (pure). Interfaces of type lambda (Hyperplane ENIs) are
// owned by the router itself: no namespace or link, an address of the
// router (see netdev.LambdaSpec).
func Build(ds *vpc.DesiredState) []netdev.VPCSpec { return BuildFor(ds, nil) }

// BuildFor is Build as host v.Self of a cluster sees it (hosts.go): only
// the VPCs that live here, only the interfaces homed here, Hyperplane ENIs
// homed elsewhere as marks routed to their home, and each VPC's tunnel to
// its routers on the other live hosts. A nil view is a single host.
func BuildFor(ds *vpc.DesiredState, v *View) []netdev.VPCSpec {
	if ds == nil {
		return nil
	}
	out := make([]netdev.VPCSpec, 0, len(ds.VPCs))
	for i := range ds.VPCs {
		dv := &ds.VPCs[i]
		var pv *peerView
		if v != nil {
			if pv = newPeerView(v, dv); !pv.builds(v.Self) {
				continue
			}
		}
		s := netdev.VPCSpec{ID: dv.ID, CIDR: dv.CIDR, InternetGateway: dv.InternetGatewayID != ""}
		subs := map[string]vpc.DesiredSubnet{}
		for _, sub := range dv.Subnets {
			subs[sub.ID] = sub
			ss := netdev.SubnetSpec{ID: sub.ID, CIDR: sub.CIDR, Gateway: sub.Gateway, Default: netdev.RouteNone}
			switch sub.DefaultRoute.Target {
			case vpc.RouteIGW:
				ss.Default = netdev.RouteIGW
			case vpc.RouteNAT:
				ss.Default, ss.NAT = netdev.RouteNAT, sub.DefaultRoute.NATAddress
				if pv != nil {
					if here, via := pv.homeOf(natInterface(dv, sub.DefaultRoute.NATGatewayID)); !here {
						if ss.NATVia = via; !via.IsValid() {
							ss.Default, ss.NAT = netdev.RouteBlackhole, netip.Addr{} // its home is dead: until re-homed
						}
					}
				}
			case vpc.RouteBlackhole:
				ss.Default = netdev.RouteBlackhole
			}
			s.Subnets = append(s.Subnets, ss)
		}
		for _, di := range dv.Interfaces {
			sub, ok := subs[di.SubnetID]
			if !ok || !di.Address.Is4() {
				continue
			}
			if pv != nil {
				here, via := pv.homeOf(di.ID)
				if !here && (di.Type != vpc.InterfaceTypeLambda || !via.IsValid()) {
					continue // built on its home (or, with its home dead, nowhere until re-homed)
				}
			}
			if di.Type == vpc.InterfaceTypeLambda {
				ls := netdev.LambdaSpec{ID: di.ID, Addr: di.Address, SubnetID: di.SubnetID}
				if pv != nil {
					_, ls.Home = pv.homeOf(di.ID)
				}
				for _, g := range di.GroupIDs {
					ls.Groups = append(ls.Groups, groupKey(g))
				}
				s.Lambdas = append(s.Lambdas, ls)
				continue
			}
			if di.Type != vpc.InterfaceTypeInterface && di.Type != vpc.InterfaceTypeNAT {
				continue
			}
			mac, _ := net.ParseMAC(di.MAC)
			is := netdev.IfaceSpec{ID: di.ID, Addr: di.Address, Subnet: sub.CIDR, Gateway: sub.Gateway, MAC: mac,
				NAT:      di.Type == vpc.InterfaceTypeNAT,
				Attached: di.Type == vpc.InterfaceTypeInterface && di.Status == vpc.StatusInUse}
			if !is.NAT {
				for _, g := range di.GroupIDs {
					is.Groups = append(is.Groups, groupKey(g))
				}
			}
			s.Interfaces = append(s.Interfaces, is)
		}
		for _, g := range dv.SecurityGroups {
			sg := nft.SecurityGroup{ID: groupKey(g.ID), Members: sortedAddrs(g.Members),
				Ingress: rules(g.Ingress), Egress: rules(g.Egress)}
			s.Groups = append(s.Groups, sg)
		}
		if pv != nil {
			s.Tunnel = pv.tunnel()
		}
		slices.SortFunc(s.Subnets, func(a, b netdev.SubnetSpec) int { return strings.Compare(a.ID, b.ID) })
		slices.SortFunc(s.Interfaces, func(a, b netdev.IfaceSpec) int { return strings.Compare(a.ID, b.ID) })
		slices.SortFunc(s.Lambdas, func(a, b netdev.LambdaSpec) int { return strings.Compare(a.ID, b.ID) })
		slices.SortFunc(s.Groups, func(a, b nft.SecurityGroup) int { return strings.Compare(a.ID, b.ID) })
		out = append(out, s)
	}
	return out
}

// natInterface is the interface id of a NAT gateway of dv ("" if none).
func natInterface(dv *vpc.DesiredVPC, natID string) string {
	for _, n := range dv.NATGateways {
		if n.ID == natID {
			return n.InterfaceID
		}
	}
	return ""
}

func rules(rs []vpc.DesiredRule) []nft.SGRule {
	var out []nft.SGRule
	for _, r := range rs {
		sr := nft.SGRule{Proto: r.Protocol, FromPort: r.FromPort, ToPort: r.ToPort}
		if r.Protocol < 0 {
			sr.Proto = nft.ProtoAll
		}
		if r.GroupID != "" {
			sr.Group = groupKey(r.GroupID)
		} else if r.CIDR.IsValid() && r.CIDR.Addr().Is4() {
			sr.CIDR = r.CIDR.Masked()
		} else {
			continue // IPv6 CIDRs: the datapath is IPv4 only
		}
		out = append(out, sr)
	}
	return out
}

func sortedAddrs(as []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if a.Is4() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
