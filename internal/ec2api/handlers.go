package ec2api

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// pick applies explicit IDs (each must exist: unknown → its NotFound code)
// and filters to items.
func pick[T any](items []T, idOf func(T) string, ids []string, fs []filter, attrsOf func(T) (attrs, []vpc.Tag)) ([]T, error) {
	var want map[string]bool
	if len(ids) > 0 {
		have := map[string]bool{}
		for _, it := range items {
			have[idOf(it)] = true
		}
		want = map[string]bool{}
		for _, id := range ids {
			if !have[id] {
				return nil, vpc.NotFound(id)
			}
			want[id] = true
		}
	}
	out := []T{}
	for _, it := range items {
		if want != nil && !want[idOf(it)] {
			continue
		}
		a, tags := attrsOf(it)
		okf, err := match(fs, a, tags)
		if err != nil {
			return nil, err
		}
		if okf {
			out = append(out, it)
		}
	}
	return out, nil
}

// page applies MaxResults/NextToken to a Describe result (AWS: 5..1000,
// not combined with explicit ids); the token is the opaque offset of the
// next item. It returns the page and the token of the rest ("" at the end).
func page[T any](c *call, items []T, ids []string) ([]T, string, error) {
	start := 0
	if tok := c.p.str("NextToken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		n, perr := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
		if err != nil || perr != nil || !strings.HasPrefix(string(b), "o:") || n < 0 {
			return nil, "", &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "The nextToken " + tok + " is invalid: pass the NextToken of the previous response unchanged."}
		}
		start = min(n, len(items))
	}
	maxp, err := c.p.int32p("MaxResults")
	if err != nil {
		return nil, "", err
	}
	if maxp == nil {
		return items[start:], "", nil
	}
	if len(ids) > 0 {
		return nil, "", &vpc.Error{Code: vpc.CodeInvalidParameterCombo, Message: "The parameter MaxResults cannot be used with explicit resource IDs; use Filter or leave MaxResults out."}
	}
	if m := int(*maxp); m < 5 || m > 1000 {
		return nil, "", &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: fmt.Sprintf("Value ( %d ) for parameter maxResults is invalid. Parameter must be between 5 and 1000.", m)}
	}
	end := min(start+int(*maxp), len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(end)))
	}
	return items[start:end], next, nil
}

func vals(v ...string) []string {
	var out []string
	for _, s := range v {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func boolStr(b bool) string { return strconv.FormatBool(b) }

// ---- VPCs

type createVpcResponse struct {
	meta
	Vpc vpcXML `xml:"vpc"`
}

func (s *Service) createVpc(c *call) (requestIDSetter, error) {
	tags, err := c.p.tagSpecs("vpc")
	if err != nil {
		return nil, err
	}
	v, err := s.m.CreateVPC(c.ctx, c.account, vpc.VPCRequest{CidrBlock: c.p.str("CidrBlock"), InstanceTenancy: c.p.str("InstanceTenancy"), Tags: tags})
	if err != nil {
		return nil, err
	}
	return &createVpcResponse{Vpc: toVPC(v)}, nil
}

type describeVpcsResponse struct {
	meta
	Vpcs []vpcXML `xml:"vpcSet>item"`
}

func vpcAttrs(v *vpc.VPC) (attrs, []vpc.Tag) {
	return attrs{
		"vpc-id": {v.ID}, "cidr": {v.CidrBlock}, "cidr-block": {v.CidrBlock}, "cidrBlock": {v.CidrBlock},
		"cidr-block-association.cidr-block": {v.CidrBlock}, "cidr-block-association.association-id": {v.CidrAssociationID},
		"cidr-block-association.state": {"associated"}, "state": {v.State}, "owner-id": {v.AccountID},
		"is-default": {"false"}, "dhcp-options-id": {"default"}, "instance-tenancy": {v.InstanceTenancy},
	}, v.Tags
}

func (s *Service) describeVpcs(c *call) (requestIDSetter, error) {
	all, err := s.m.ListVPCs(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	sel, err := pick(all, func(v *vpc.VPC) string { return v.ID }, c.p.list("VpcId"), c.p.filters(), vpcAttrs)
	if err != nil {
		return nil, err
	}
	sel, next, err := page(c, sel, c.p.list("VpcId"))
	if err != nil {
		return nil, err
	}
	out := &describeVpcsResponse{Vpcs: []vpcXML{}}
	out.NextToken = next
	for _, v := range sel {
		out.Vpcs = append(out.Vpcs, toVPC(v))
	}
	return out, nil
}

func (s *Service) deleteVpc(c *call) (requestIDSetter, error) {
	id := c.p.str("VpcId")
	if id == "" {
		return nil, &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter VpcId"}
	}
	if err := s.m.DeleteVPC(c.ctx, c.account, id); err != nil {
		return nil, err
	}
	return ok()
}

// ---- Subnets

type createSubnetResponse struct {
	meta
	Subnet subnetXML `xml:"subnet"`
}

func (s *Service) createSubnet(c *call) (requestIDSetter, error) {
	tags, err := c.p.tagSpecs("subnet")
	if err != nil {
		return nil, err
	}
	az := c.p.str("AvailabilityZone")
	if az == "" {
		az = c.region + "a"
	}
	if suffix, found := strings.CutPrefix(az, c.region); !found || len(suffix) != 1 || suffix[0] < 'a' || suffix[0] > 'f' {
		return nil, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "Value (" + az + ") for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: " + c.region + "a, " + c.region + "b, " + c.region + "c, " + c.region + "d, " + c.region + "e, " + c.region + "f."}
	}
	sub, err := s.m.CreateSubnet(c.ctx, c.account, vpc.SubnetRequest{VpcID: c.p.str("VpcId"), CidrBlock: c.p.str("CidrBlock"), AvailabilityZone: az, Tags: tags})
	if err != nil {
		return nil, err
	}
	return &createSubnetResponse{Subnet: toSubnet(c.region, sub)}, nil
}

type describeSubnetsResponse struct {
	meta
	Subnets []subnetXML `xml:"subnetSet>item"`
}

func subnetAttrs(region string) func(*vpc.Subnet) (attrs, []vpc.Tag) {
	return func(s *vpc.Subnet) (attrs, []vpc.Tag) {
		return attrs{
			"subnet-id": {s.ID}, "vpc-id": {s.VpcID}, "cidr-block": {s.CidrBlock}, "cidr": {s.CidrBlock}, "cidrBlock": {s.CidrBlock},
			"availability-zone": {s.AvailabilityZone}, "availabilityZone": {s.AvailabilityZone}, "state": {s.State},
			"owner-id": {s.AccountID}, "available-ip-address-count": {strconv.Itoa(s.AvailableIPs)},
			"default-for-az": {"false"}, "defaultForAz": {"false"}, "map-public-ip-on-launch": {"false"},
			"subnet-arn": {"arn:aws:ec2:" + region + ":" + s.AccountID + ":subnet/" + s.ID},
		}, s.Tags
	}
}

func (s *Service) describeSubnets(c *call) (requestIDSetter, error) {
	all, err := s.m.ListSubnets(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	sel, err := pick(all, func(v *vpc.Subnet) string { return v.ID }, c.p.list("SubnetId"), c.p.filters(), subnetAttrs(c.region))
	if err != nil {
		return nil, err
	}
	sel, next, err := page(c, sel, c.p.list("SubnetId"))
	if err != nil {
		return nil, err
	}
	out := &describeSubnetsResponse{Subnets: []subnetXML{}}
	out.NextToken = next
	for _, v := range sel {
		out.Subnets = append(out.Subnets, toSubnet(c.region, v))
	}
	return out, nil
}

func (s *Service) deleteSubnet(c *call) (requestIDSetter, error) {
	id := c.p.str("SubnetId")
	if id == "" {
		return nil, &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter SubnetId"}
	}
	if err := s.m.DeleteSubnet(c.ctx, c.account, id); err != nil {
		return nil, err
	}
	return ok()
}

// ---- Security groups

type createSecurityGroupResponse struct {
	meta
	GroupID string   `xml:"groupId"`
	Arn     string   `xml:"securityGroupArn"`
	Tags    []tagXML `xml:"tagSet>item"`
}

func (s *Service) createSecurityGroup(c *call) (requestIDSetter, error) {
	tags, err := c.p.tagSpecs("security-group")
	if err != nil {
		return nil, err
	}
	g, err := s.m.CreateSecurityGroup(c.ctx, c.account, vpc.GroupRequest{VpcID: c.p.str("VpcId"), Name: c.p.str("GroupName"), Description: c.p.str("GroupDescription"), Tags: tags})
	if err != nil {
		return nil, err
	}
	return &createSecurityGroupResponse{GroupID: g.ID, Arn: groupArn(c.region, g.AccountID, g.ID), Tags: tagsXML(g.Tags)}, nil
}

type describeSecurityGroupsResponse struct {
	meta
	Groups []securityGroupXML `xml:"securityGroupInfo>item"`
}

func ruleAttrs(a attrs, prefix string, rules []vpc.Rule) {
	for _, k := range []string{"protocol", "from-port", "to-port", "cidr", "group-id", "group-name", "user-id"} {
		a[prefix+k] = nil
	}
	for _, r := range rules {
		a[prefix+"protocol"] = append(a[prefix+"protocol"], r.Protocol)
		a[prefix+"from-port"] = append(a[prefix+"from-port"], strconv.Itoa(int(r.FromPort)))
		a[prefix+"to-port"] = append(a[prefix+"to-port"], strconv.Itoa(int(r.ToPort)))
		a[prefix+"cidr"] = append(a[prefix+"cidr"], vals(r.CIDR)...)
		a[prefix+"group-id"] = append(a[prefix+"group-id"], vals(r.GroupID)...)
		a[prefix+"user-id"] = append(a[prefix+"user-id"], vals(r.UserID)...)
	}
}

func groupAttrs(g *vpc.SecurityGroup) (attrs, []vpc.Tag) {
	a := attrs{"group-id": {g.ID}, "group-name": {g.Name}, "vpc-id": {g.VpcID}, "owner-id": {g.AccountID}, "description": {g.Description}}
	ruleAttrs(a, "ip-permission.", g.Ingress)
	ruleAttrs(a, "egress.ip-permission.", g.Egress)
	return a, g.Tags
}

func (s *Service) describeSecurityGroups(c *call) (requestIDSetter, error) {
	all, err := s.m.ListSecurityGroups(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	if names := c.p.list("GroupName"); len(names) > 0 {
		want := map[string]bool{}
		for _, n := range names {
			found := false
			for _, g := range all {
				if g.Name == n {
					found = true
				}
			}
			if !found {
				return nil, &vpc.Error{Code: vpc.CodeGroupNotFound, Message: "The security group '" + n + "' does not exist"}
			}
			want[n] = true
		}
		var keep []*vpc.SecurityGroup
		for _, g := range all {
			if want[g.Name] {
				keep = append(keep, g)
			}
		}
		all = keep
	}
	sel, err := pick(all, func(v *vpc.SecurityGroup) string { return v.ID }, c.p.list("GroupId"), c.p.filters(), groupAttrs)
	if err != nil {
		return nil, err
	}
	sel, next, err := page(c, sel, c.p.list("GroupId"))
	if err != nil {
		return nil, err
	}
	out := &describeSecurityGroupsResponse{Groups: []securityGroupXML{}}
	out.NextToken = next
	for _, g := range sel {
		out.Groups = append(out.Groups, toSecurityGroup(c.region, g))
	}
	return out, nil
}

// groupID resolves the GroupId or GroupName parameter.
func (s *Service) groupID(c *call) (string, error) {
	if id := c.p.str("GroupId"); id != "" {
		return id, nil
	}
	if name := c.p.str("GroupName"); name != "" {
		return s.m.GroupIDByName(c.ctx, c.account, "", name)
	}
	return "", &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter GroupId (or GroupName)"}
}

func (s *Service) deleteSecurityGroup(c *call) (requestIDSetter, error) {
	id, err := s.groupID(c)
	if err != nil {
		return nil, err
	}
	if err := s.m.DeleteSecurityGroup(c.ctx, c.account, id); err != nil {
		return nil, err
	}
	return ok()
}

type authorizeResponse struct {
	meta
	Return bool      `xml:"return"`
	Rules  []ruleXML `xml:"securityGroupRuleSet>item"`
}

type revokeResponse struct {
	meta
	Return  bool       `xml:"return"`
	Revoked []ruleXML  `xml:"revokedSecurityGroupRuleSet>item"`
	Unknown []struct{} `xml:"unknownIpPermissionSet>item"`
}

func (s *Service) changeRules(c *call, egress, add bool) (requestIDSetter, error) {
	id, err := s.groupID(c)
	if err != nil {
		return nil, err
	}
	perms, err := c.p.permissions()
	if err != nil {
		return nil, err
	}
	if add {
		rules, err := s.m.Authorize(c.ctx, c.account, id, egress, perms)
		if err != nil {
			return nil, err
		}
		return &authorizeResponse{Return: true, Rules: toRules(c.account, id, egress, rules)}, nil
	}
	rules, err := s.m.Revoke(c.ctx, c.account, id, egress, perms)
	if err != nil {
		return nil, err
	}
	return &revokeResponse{Return: true, Revoked: toRules(c.account, id, egress, rules)}, nil
}

func (s *Service) authorizeIngress(c *call) (requestIDSetter, error) {
	return s.changeRules(c, false, true)
}
func (s *Service) authorizeEgress(c *call) (requestIDSetter, error) {
	return s.changeRules(c, true, true)
}
func (s *Service) revokeIngress(c *call) (requestIDSetter, error) {
	return s.changeRules(c, false, false)
}
func (s *Service) revokeEgress(c *call) (requestIDSetter, error) {
	return s.changeRules(c, true, false)
}

// ---- Network interfaces

type createNetworkInterfaceResponse struct {
	meta
	NetworkInterface eniXML `xml:"networkInterface"`
}

func (s *Service) groupNames(c *call) (map[string]string, error) {
	gs, err := s.m.ListSecurityGroups(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, g := range gs {
		names[g.ID] = g.Name
	}
	return names, nil
}

func (s *Service) createNetworkInterface(c *call) (requestIDSetter, error) {
	tags, err := c.p.tagSpecs("network-interface")
	if err != nil {
		return nil, err
	}
	typ := c.p.str("InterfaceType")
	if typ != "" && typ != vpc.InterfaceTypeInterface {
		return nil, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "Value (" + typ + ") for parameter InterfaceType is invalid. Only 'interface' may be created through the API."}
	}
	if len(c.p.indices("PrivateIpAddresses")) > 0 || c.p.str("SecondaryPrivateIpAddressCount") != "" {
		return nil, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "Secondary private addresses are not supported; use PrivateIpAddress."}
	}
	n, err := s.m.CreateInterface(c.ctx, c.account, vpc.InterfaceRequest{
		SubnetID: c.p.str("SubnetId"), GroupIDs: c.p.list("SecurityGroupId"), PrivateIP: c.p.str("PrivateIpAddress"),
		InterfaceType: vpc.InterfaceTypeInterface, Description: c.p.str("Description"), Tags: tags,
	})
	if err != nil {
		return nil, err
	}
	names, err := s.groupNames(c)
	if err != nil {
		return nil, err
	}
	return &createNetworkInterfaceResponse{NetworkInterface: toENI(n, names)}, nil
}

type describeNetworkInterfacesResponse struct {
	meta
	Interfaces []eniXML `xml:"networkInterfaceSet>item"`
}

func eniAttrs(names map[string]string) func(*vpc.NetworkInterface) (attrs, []vpc.Tag) {
	return func(n *vpc.NetworkInterface) (attrs, []vpc.Tag) {
		a := attrs{
			"network-interface-id": {n.ID}, "subnet-id": {n.SubnetID}, "vpc-id": {n.VpcID}, "availability-zone": {n.AvailabilityZone},
			"interface-type": {n.InterfaceType}, "requester-id": vals(n.RequesterID), "requester-managed": {boolStr(n.RequesterManaged)},
			"status": {n.Status}, "private-ip-address": {n.PrivateIP}, "addresses.private-ip-address": {n.PrivateIP},
			"mac-address": {n.MAC}, "owner-id": {n.AccountID}, "description": {n.Description}, "source-dest-check": {"true"},
			"group-id": nil, "group-name": nil,
		}
		for _, g := range n.Groups {
			a["group-id"] = append(a["group-id"], g)
			a["group-name"] = append(a["group-name"], names[g])
		}
		return a, n.Tags
	}
}

func (s *Service) describeNetworkInterfaces(c *call) (requestIDSetter, error) {
	all, err := s.m.ListInterfaces(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	names, err := s.groupNames(c)
	if err != nil {
		return nil, err
	}
	sel, err := pick(all, func(v *vpc.NetworkInterface) string { return v.ID }, c.p.list("NetworkInterfaceId"), c.p.filters(), eniAttrs(names))
	if err != nil {
		return nil, err
	}
	sel, next, err := page(c, sel, c.p.list("NetworkInterfaceId"))
	if err != nil {
		return nil, err
	}
	out := &describeNetworkInterfacesResponse{Interfaces: []eniXML{}}
	out.NextToken = next
	for _, n := range sel {
		out.Interfaces = append(out.Interfaces, toENI(n, names))
	}
	return out, nil
}

func (s *Service) deleteNetworkInterface(c *call) (requestIDSetter, error) {
	id := c.p.str("NetworkInterfaceId")
	if id == "" {
		return nil, &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter NetworkInterfaceId"}
	}
	if err := s.m.DeleteNetworkInterface(c.ctx, c.account, id); err != nil {
		return nil, err
	}
	return ok()
}

// ---- Route tables

type createRouteTableResponse struct {
	meta
	RouteTable routeTableXML `xml:"routeTable"`
}

func (s *Service) createRouteTable(c *call) (requestIDSetter, error) {
	tags, err := c.p.tagSpecs("route-table")
	if err != nil {
		return nil, err
	}
	rt, err := s.m.CreateRouteTable(c.ctx, c.account, c.p.str("VpcId"), tags)
	if err != nil {
		return nil, err
	}
	return &createRouteTableResponse{RouteTable: toRouteTable(rt)}, nil
}

type describeRouteTablesResponse struct {
	meta
	RouteTables []routeTableXML `xml:"routeTableSet>item"`
}

func routeTableAttrs(rt *vpc.RouteTable) (attrs, []vpc.Tag) {
	a := attrs{"route-table-id": {rt.ID}, "vpc-id": {rt.VpcID}, "owner-id": {rt.AccountID},
		"association.main": {boolStr(rt.Main)}, "association.subnet-id": nil, "association.route-table-association-id": nil,
		"association.route-table-id": {rt.ID}, "route.destination-cidr-block": nil, "route.gateway-id": nil,
		"route.nat-gateway-id": nil, "route.state": nil, "route.origin": nil}
	for _, as := range rt.Associations {
		a["association.route-table-association-id"] = append(a["association.route-table-association-id"], as.ID)
		a["association.subnet-id"] = append(a["association.subnet-id"], vals(as.SubnetID)...)
	}
	for _, r := range rt.Routes {
		a["route.destination-cidr-block"] = append(a["route.destination-cidr-block"], r.DestinationCidrBlock)
		a["route.gateway-id"] = append(a["route.gateway-id"], vals(r.GatewayID)...)
		a["route.nat-gateway-id"] = append(a["route.nat-gateway-id"], vals(r.NatGatewayID)...)
		a["route.state"] = append(a["route.state"], r.State)
		a["route.origin"] = append(a["route.origin"], r.Origin)
	}
	return a, rt.Tags
}

func (s *Service) describeRouteTables(c *call) (requestIDSetter, error) {
	all, err := s.m.ListRouteTables(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	sel, err := pick(all, func(v *vpc.RouteTable) string { return v.ID }, c.p.list("RouteTableId"), c.p.filters(), routeTableAttrs)
	if err != nil {
		return nil, err
	}
	sel, next, err := page(c, sel, c.p.list("RouteTableId"))
	if err != nil {
		return nil, err
	}
	out := &describeRouteTablesResponse{RouteTables: []routeTableXML{}}
	out.NextToken = next
	for _, rt := range sel {
		out.RouteTables = append(out.RouteTables, toRouteTable(rt))
	}
	return out, nil
}

func (s *Service) deleteRouteTable(c *call) (requestIDSetter, error) {
	id := c.p.str("RouteTableId")
	if id == "" {
		return nil, &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter RouteTableId"}
	}
	if err := s.m.DeleteRouteTable(c.ctx, c.account, id); err != nil {
		return nil, err
	}
	return ok()
}

func (s *Service) createRoute(c *call) (requestIDSetter, error) {
	for _, unsupported := range []string{"DestinationIpv6CidrBlock", "DestinationPrefixListId", "InstanceId", "NetworkInterfaceId", "TransitGatewayId", "VpcPeeringConnectionId", "EgressOnlyInternetGatewayId", "CarrierGatewayId", "LocalGatewayId", "VpcEndpointId"} {
		if c.p.str(unsupported) != "" {
			return nil, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "Route targets other than GatewayId (internet gateway) and NatGatewayId are not supported (got " + unsupported + ")."}
		}
	}
	err := s.m.CreateRoute(c.ctx, c.account, vpc.RouteRequest{RouteTableID: c.p.str("RouteTableId"), DestinationCidrBlock: c.p.str("DestinationCidrBlock"),
		GatewayID: c.p.str("GatewayId"), NatGatewayID: c.p.str("NatGatewayId")})
	if err != nil {
		return nil, err
	}
	return ok()
}

func (s *Service) deleteRoute(c *call) (requestIDSetter, error) {
	if err := s.m.DeleteRoute(c.ctx, c.account, c.p.str("RouteTableId"), c.p.str("DestinationCidrBlock")); err != nil {
		return nil, err
	}
	return ok()
}

type associateRouteTableResponse struct {
	meta
	AssociationID string   `xml:"associationId"`
	State         stateXML `xml:"associationState"`
}

func (s *Service) associateRouteTable(c *call) (requestIDSetter, error) {
	if c.p.str("GatewayId") != "" {
		return nil, &vpc.Error{Code: vpc.CodeInvalidParameterValue, Message: "Gateway route-table associations are not supported; associate a SubnetId."}
	}
	id, err := s.m.AssociateRouteTable(c.ctx, c.account, c.p.str("RouteTableId"), c.p.str("SubnetId"))
	if err != nil {
		return nil, err
	}
	return &associateRouteTableResponse{AssociationID: id, State: stateXML{"associated"}}, nil
}

func (s *Service) disassociateRouteTable(c *call) (requestIDSetter, error) {
	id := c.p.str("AssociationId")
	if id == "" {
		return nil, &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter AssociationId"}
	}
	if err := s.m.DisassociateRouteTable(c.ctx, c.account, id); err != nil {
		return nil, err
	}
	return ok()
}

// ---- Internet gateways

type createInternetGatewayResponse struct {
	meta
	InternetGateway igwXML `xml:"internetGateway"`
}

func (s *Service) createInternetGateway(c *call) (requestIDSetter, error) {
	tags, err := c.p.tagSpecs("internet-gateway")
	if err != nil {
		return nil, err
	}
	g, err := s.m.CreateInternetGateway(c.ctx, c.account, tags)
	if err != nil {
		return nil, err
	}
	return &createInternetGatewayResponse{InternetGateway: toIGW(g)}, nil
}

type describeInternetGatewaysResponse struct {
	meta
	Gateways []igwXML `xml:"internetGatewaySet>item"`
}

func igwAttrs(g *vpc.InternetGateway) (attrs, []vpc.Tag) {
	a := attrs{"internet-gateway-id": {g.ID}, "owner-id": {g.AccountID}, "attachment.vpc-id": vals(g.VpcID), "attachment.state": nil}
	if g.VpcID != "" {
		a["attachment.state"] = []string{"available"}
	}
	return a, g.Tags
}

func (s *Service) describeInternetGateways(c *call) (requestIDSetter, error) {
	all, err := s.m.ListInternetGateways(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	sel, err := pick(all, func(v *vpc.InternetGateway) string { return v.ID }, c.p.list("InternetGatewayId"), c.p.filters(), igwAttrs)
	if err != nil {
		return nil, err
	}
	sel, next, err := page(c, sel, c.p.list("InternetGatewayId"))
	if err != nil {
		return nil, err
	}
	out := &describeInternetGatewaysResponse{Gateways: []igwXML{}}
	out.NextToken = next
	for _, g := range sel {
		out.Gateways = append(out.Gateways, toIGW(g))
	}
	return out, nil
}

func (s *Service) attachInternetGateway(c *call) (requestIDSetter, error) {
	if err := s.m.AttachInternetGateway(c.ctx, c.account, c.p.str("InternetGatewayId"), c.p.str("VpcId")); err != nil {
		return nil, err
	}
	return ok()
}

func (s *Service) detachInternetGateway(c *call) (requestIDSetter, error) {
	if err := s.m.DetachInternetGateway(c.ctx, c.account, c.p.str("InternetGatewayId"), c.p.str("VpcId")); err != nil {
		return nil, err
	}
	return ok()
}

func (s *Service) deleteInternetGateway(c *call) (requestIDSetter, error) {
	id := c.p.str("InternetGatewayId")
	if id == "" {
		return nil, &vpc.Error{Code: vpc.CodeMissingParameter, Message: "The request must contain the parameter InternetGatewayId"}
	}
	if err := s.m.DeleteInternetGateway(c.ctx, c.account, id); err != nil {
		return nil, err
	}
	return ok()
}

// ---- NAT gateways

type createNatGatewayResponse struct {
	meta
	ClientToken string `xml:"clientToken,omitempty"`
	NatGateway  natXML `xml:"natGateway"`
}

func (s *Service) createNatGateway(c *call) (requestIDSetter, error) {
	tags, err := c.p.tagSpecs("natgateway")
	if err != nil {
		return nil, err
	}
	n, err := s.m.CreateNatGateway(c.ctx, c.account, vpc.NatRequest{SubnetID: c.p.str("SubnetId"), ConnectivityType: c.p.str("ConnectivityType"),
		AllocationID: c.p.str("AllocationId"), PrivateIP: c.p.str("PrivateIpAddress"), Tags: tags})
	if err != nil {
		return nil, err
	}
	return &createNatGatewayResponse{ClientToken: c.p.str("ClientToken"), NatGateway: toNAT(n)}, nil
}

type describeNatGatewaysResponse struct {
	meta
	NatGateways []natXML `xml:"natGatewaySet>item"`
}

func natAttrs(n *vpc.NatGateway) (attrs, []vpc.Tag) {
	return attrs{"nat-gateway-id": {n.ID}, "subnet-id": {n.SubnetID}, "vpc-id": {n.VpcID}, "state": {n.State}}, n.Tags
}

func (s *Service) describeNatGateways(c *call) (requestIDSetter, error) {
	all, err := s.m.ListNatGateways(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	sel, err := pick(all, func(v *vpc.NatGateway) string { return v.ID }, c.p.list("NatGatewayId"), c.p.filters(), natAttrs)
	if err != nil {
		return nil, err
	}
	sel, next, err := page(c, sel, c.p.list("NatGatewayId"))
	if err != nil {
		return nil, err
	}
	out := &describeNatGatewaysResponse{NatGateways: []natXML{}}
	out.NextToken = next
	for _, n := range sel {
		out.NatGateways = append(out.NatGateways, toNAT(n))
	}
	return out, nil
}

type deleteNatGatewayResponse struct {
	meta
	NatGatewayID string `xml:"natGatewayId"`
}

func (s *Service) deleteNatGateway(c *call) (requestIDSetter, error) {
	id := c.p.str("NatGatewayId")
	if err := s.m.DeleteNatGateway(c.ctx, c.account, id); err != nil {
		return nil, err
	}
	return &deleteNatGatewayResponse{NatGatewayID: id}, nil
}

// ---- Tags

func (s *Service) createTags(c *call) (requestIDSetter, error) {
	if err := s.m.CreateTags(c.ctx, c.account, c.p.list("ResourceId"), c.p.tags("Tag")); err != nil {
		return nil, err
	}
	return ok()
}

func (s *Service) deleteTags(c *call) (requestIDSetter, error) {
	var keys []string
	var values []*string
	for _, i := range c.p.indices("Tag") {
		pre := "Tag." + strconv.Itoa(i)
		keys = append(keys, c.p.str(pre+".Key"))
		if c.p.has(pre + ".Value") {
			v := c.p.str(pre + ".Value")
			values = append(values, &v)
		} else {
			values = append(values, nil)
		}
	}
	if err := s.m.DeleteTags(c.ctx, c.account, c.p.list("ResourceId"), keys, values); err != nil {
		return nil, err
	}
	return ok()
}

type describeTagsResponse struct {
	meta
	Tags []tagDescXML `xml:"tagSet>item"`
}

func (s *Service) describeTags(c *call) (requestIDSetter, error) {
	all, err := s.m.ListTags(c.ctx, c.account)
	if err != nil {
		return nil, err
	}
	sel, err := pick(all, func(t vpc.TagDescription) string { return t.ResourceID }, nil, c.p.filters(), func(t vpc.TagDescription) (attrs, []vpc.Tag) {
		return attrs{"resource-id": {t.ResourceID}, "resource-type": {t.ResourceType}, "key": {t.Key}, "value": {t.Value}}, nil
	})
	if err != nil {
		return nil, err
	}
	sel, next, err := page(c, sel, nil)
	if err != nil {
		return nil, err
	}
	out := &describeTagsResponse{Tags: []tagDescXML{}}
	out.NextToken = next
	for _, t := range sel {
		out.Tags = append(out.Tags, tagDescXML(t))
	}
	return out, nil
}
