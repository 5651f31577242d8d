package ec2api

import (
	"strconv"

	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// Response shapes follow the aws-sdk-go-v2 EC2 deserializers (element names
// are camelCase; lists are <xxxSet><item>...).

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

type meta struct {
	RequestID string `xml:"requestId"`
	NextToken string `xml:"nextToken,omitempty"` // Describe*: more results follow
}

func (m *meta) setRequestID(id string) { m.RequestID = id }

type requestIDSetter interface{ setRequestID(string) }

type tagXML struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func tagsXML(ts []vpc.Tag) []tagXML {
	out := make([]tagXML, 0, len(ts))
	for _, t := range ts {
		out = append(out, tagXML(t))
	}
	return out
}

type stateXML struct {
	State string `xml:"state"`
}

type cidrAssocXML struct {
	AssociationID  string   `xml:"associationId"`
	CidrBlock      string   `xml:"cidrBlock"`
	CidrBlockState stateXML `xml:"cidrBlockState"`
}

type vpcXML struct {
	VpcID           string         `xml:"vpcId"`
	OwnerID         string         `xml:"ownerId"`
	State           string         `xml:"state"`
	CidrBlock       string         `xml:"cidrBlock"`
	CidrAssocs      []cidrAssocXML `xml:"cidrBlockAssociationSet>item"`
	DhcpOptionsID   string         `xml:"dhcpOptionsId"`
	InstanceTenancy string         `xml:"instanceTenancy"`
	IsDefault       bool           `xml:"isDefault"`
	Tags            []tagXML       `xml:"tagSet>item"`
}

func toVPC(v *vpc.VPC) vpcXML {
	return vpcXML{
		VpcID: v.ID, OwnerID: v.AccountID, State: v.State, CidrBlock: v.CidrBlock,
		CidrAssocs:    []cidrAssocXML{{AssociationID: v.CidrAssociationID, CidrBlock: v.CidrBlock, CidrBlockState: stateXML{"associated"}}},
		DhcpOptionsID: "default", InstanceTenancy: v.InstanceTenancy, Tags: tagsXML(v.Tags),
	}
}

type subnetXML struct {
	SubnetID                string   `xml:"subnetId"`
	SubnetArn               string   `xml:"subnetArn"`
	State                   string   `xml:"state"`
	VpcID                   string   `xml:"vpcId"`
	OwnerID                 string   `xml:"ownerId"`
	CidrBlock               string   `xml:"cidrBlock"`
	AvailableIPAddressCount int      `xml:"availableIpAddressCount"`
	AvailabilityZone        string   `xml:"availabilityZone"`
	DefaultForAz            bool     `xml:"defaultForAz"`
	MapPublicIPOnLaunch     bool     `xml:"mapPublicIpOnLaunch"`
	AssignIpv6OnCreation    bool     `xml:"assignIpv6AddressOnCreation"`
	Tags                    []tagXML `xml:"tagSet>item"`
}

func toSubnet(region string, s *vpc.Subnet) subnetXML {
	return subnetXML{
		SubnetID: s.ID, SubnetArn: "arn:aws:ec2:" + region + ":" + s.AccountID + ":subnet/" + s.ID,
		State: s.State, VpcID: s.VpcID, OwnerID: s.AccountID, CidrBlock: s.CidrBlock,
		AvailableIPAddressCount: s.AvailableIPs, AvailabilityZone: s.AvailabilityZone, Tags: tagsXML(s.Tags),
	}
}

type ipRangeXML struct {
	CidrIP      string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

type groupPairXML struct {
	UserID      string `xml:"userId"`
	GroupID     string `xml:"groupId"`
	Description string `xml:"description,omitempty"`
}

type ipPermXML struct {
	IPProtocol string         `xml:"ipProtocol"`
	FromPort   *int32         `xml:"fromPort,omitempty"`
	ToPort     *int32         `xml:"toPort,omitempty"`
	Groups     []groupPairXML `xml:"groups>item"`
	IPRanges   []ipRangeXML   `xml:"ipRanges>item"`
	Ipv6Ranges []struct{}     `xml:"ipv6Ranges>item"`
	PrefixList []struct{}     `xml:"prefixListIds>item"`
}

// toPermissions groups flat rules by protocol and port range, as EC2 shows them.
func toPermissions(rules []vpc.Rule) []ipPermXML {
	out := []ipPermXML{}
	idx := map[string]int{}
	for _, r := range rules {
		k := r.Protocol + "|" + strconv.Itoa(int(r.FromPort)) + "|" + strconv.Itoa(int(r.ToPort))
		i, ok := idx[k]
		if !ok {
			p := ipPermXML{IPProtocol: r.Protocol}
			if vpc.HasPorts(r.Protocol) {
				f, t := r.FromPort, r.ToPort
				p.FromPort, p.ToPort = &f, &t
			}
			i = len(out)
			idx[k] = i
			out = append(out, p)
		}
		if r.CIDR != "" {
			out[i].IPRanges = append(out[i].IPRanges, ipRangeXML{CidrIP: r.CIDR, Description: r.Description})
		} else {
			out[i].Groups = append(out[i].Groups, groupPairXML{UserID: r.UserID, GroupID: r.GroupID, Description: r.Description})
		}
	}
	return out
}

type securityGroupXML struct {
	OwnerID     string      `xml:"ownerId"`
	GroupID     string      `xml:"groupId"`
	GroupName   string      `xml:"groupName"`
	Description string      `xml:"groupDescription"`
	VpcID       string      `xml:"vpcId"`
	Arn         string      `xml:"securityGroupArn"`
	Ingress     []ipPermXML `xml:"ipPermissions>item"`
	Egress      []ipPermXML `xml:"ipPermissionsEgress>item"`
	Tags        []tagXML    `xml:"tagSet>item"`
}

func groupArn(region, account, id string) string {
	return "arn:aws:ec2:" + region + ":" + account + ":security-group/" + id
}

func toSecurityGroup(region string, g *vpc.SecurityGroup) securityGroupXML {
	return securityGroupXML{
		OwnerID: g.AccountID, GroupID: g.ID, GroupName: g.Name, Description: g.Description, VpcID: g.VpcID,
		Arn: groupArn(region, g.AccountID, g.ID), Ingress: toPermissions(g.Ingress), Egress: toPermissions(g.Egress),
		Tags: tagsXML(g.Tags),
	}
}

type refGroupXML struct {
	GroupID string `xml:"groupId"`
	UserID  string `xml:"userId"`
}

type ruleXML struct {
	RuleID      string       `xml:"securityGroupRuleId"`
	GroupID     string       `xml:"groupId"`
	OwnerID     string       `xml:"groupOwnerId"`
	IsEgress    bool         `xml:"isEgress"`
	IPProtocol  string       `xml:"ipProtocol"`
	FromPort    int32        `xml:"fromPort"`
	ToPort      int32        `xml:"toPort"`
	CidrIpv4    string       `xml:"cidrIpv4,omitempty"`
	Referenced  *refGroupXML `xml:"referencedGroupInfo,omitempty"`
	Description string       `xml:"description,omitempty"`
}

func toRules(account, groupID string, egress bool, rules []vpc.Rule) []ruleXML {
	out := []ruleXML{}
	for _, r := range rules {
		x := ruleXML{RuleID: r.ID, GroupID: groupID, OwnerID: account, IsEgress: egress, IPProtocol: r.Protocol,
			FromPort: r.FromPort, ToPort: r.ToPort, CidrIpv4: r.CIDR, Description: r.Description}
		if r.GroupID != "" {
			x.Referenced = &refGroupXML{GroupID: r.GroupID, UserID: r.UserID}
		}
		out = append(out, x)
	}
	return out
}

type groupIdentXML struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName"`
}

type privateIPXML struct {
	PrivateIPAddress string `xml:"privateIpAddress"`
	Primary          bool   `xml:"primary"`
}

type eniXML struct {
	NetworkInterfaceID string          `xml:"networkInterfaceId"`
	SubnetID           string          `xml:"subnetId"`
	VpcID              string          `xml:"vpcId"`
	AvailabilityZone   string          `xml:"availabilityZone"`
	Description        string          `xml:"description"`
	OwnerID            string          `xml:"ownerId"`
	RequesterID        string          `xml:"requesterId,omitempty"`
	RequesterManaged   bool            `xml:"requesterManaged"`
	Status             string          `xml:"status"`
	MacAddress         string          `xml:"macAddress"`
	PrivateIPAddress   string          `xml:"privateIpAddress"`
	SourceDestCheck    bool            `xml:"sourceDestCheck"`
	InterfaceType      string          `xml:"interfaceType"`
	Groups             []groupIdentXML `xml:"groupSet>item"`
	PrivateIPs         []privateIPXML  `xml:"privateIpAddressesSet>item"`
	Tags               []tagXML        `xml:"tagSet>item"`
}

func toENI(n *vpc.NetworkInterface, names map[string]string) eniXML {
	x := eniXML{
		NetworkInterfaceID: n.ID, SubnetID: n.SubnetID, VpcID: n.VpcID, AvailabilityZone: n.AvailabilityZone,
		Description: n.Description, OwnerID: n.AccountID, RequesterID: n.RequesterID, RequesterManaged: n.RequesterManaged,
		Status: n.Status, MacAddress: n.MAC, PrivateIPAddress: n.PrivateIP, SourceDestCheck: true,
		InterfaceType: n.InterfaceType, Groups: []groupIdentXML{},
		PrivateIPs: []privateIPXML{{PrivateIPAddress: n.PrivateIP, Primary: true}}, Tags: tagsXML(n.Tags),
	}
	for _, g := range n.Groups {
		x.Groups = append(x.Groups, groupIdentXML{GroupID: g, GroupName: names[g]})
	}
	return x
}

type routeXML struct {
	DestinationCidrBlock string `xml:"destinationCidrBlock"`
	GatewayID            string `xml:"gatewayId,omitempty"`
	NatGatewayID         string `xml:"natGatewayId,omitempty"`
	State                string `xml:"state"`
	Origin               string `xml:"origin"`
}

type assocXML struct {
	AssociationID string   `xml:"routeTableAssociationId"`
	RouteTableID  string   `xml:"routeTableId"`
	SubnetID      string   `xml:"subnetId,omitempty"`
	Main          bool     `xml:"main"`
	State         stateXML `xml:"associationState"`
}

type routeTableXML struct {
	RouteTableID string     `xml:"routeTableId"`
	VpcID        string     `xml:"vpcId"`
	OwnerID      string     `xml:"ownerId"`
	Routes       []routeXML `xml:"routeSet>item"`
	Associations []assocXML `xml:"associationSet>item"`
	Propagating  []struct{} `xml:"propagatingVgwSet>item"`
	Tags         []tagXML   `xml:"tagSet>item"`
}

func toRouteTable(rt *vpc.RouteTable) routeTableXML {
	x := routeTableXML{RouteTableID: rt.ID, VpcID: rt.VpcID, OwnerID: rt.AccountID, Routes: []routeXML{}, Associations: []assocXML{}, Tags: tagsXML(rt.Tags)}
	for _, r := range rt.Routes {
		x.Routes = append(x.Routes, routeXML{DestinationCidrBlock: r.DestinationCidrBlock, GatewayID: r.GatewayID, NatGatewayID: r.NatGatewayID, State: r.State, Origin: r.Origin})
	}
	for _, a := range rt.Associations {
		x.Associations = append(x.Associations, assocXML{AssociationID: a.ID, RouteTableID: a.RouteTableID, SubnetID: a.SubnetID, Main: a.Main, State: stateXML{"associated"}})
	}
	return x
}

type igwAttachXML struct {
	VpcID string `xml:"vpcId"`
	State string `xml:"state"`
}

type igwXML struct {
	InternetGatewayID string         `xml:"internetGatewayId"`
	OwnerID           string         `xml:"ownerId"`
	Attachments       []igwAttachXML `xml:"attachmentSet>item"`
	Tags              []tagXML       `xml:"tagSet>item"`
}

func toIGW(g *vpc.InternetGateway) igwXML {
	x := igwXML{InternetGatewayID: g.ID, OwnerID: g.AccountID, Attachments: []igwAttachXML{}, Tags: tagsXML(g.Tags)}
	if g.VpcID != "" {
		x.Attachments = append(x.Attachments, igwAttachXML{VpcID: g.VpcID, State: "available"})
	}
	return x
}

type natAddrXML struct {
	AllocationID       string `xml:"allocationId,omitempty"`
	NetworkInterfaceID string `xml:"networkInterfaceId"`
	PrivateIP          string `xml:"privateIp"`
	IsPrimary          bool   `xml:"isPrimary"`
	Status             string `xml:"status"`
}

type natXML struct {
	NatGatewayID     string       `xml:"natGatewayId"`
	SubnetID         string       `xml:"subnetId"`
	VpcID            string       `xml:"vpcId"`
	State            string       `xml:"state"`
	ConnectivityType string       `xml:"connectivityType"`
	CreateTime       string       `xml:"createTime"`
	DeleteTime       string       `xml:"deleteTime,omitempty"`
	Addresses        []natAddrXML `xml:"natGatewayAddressSet>item"`
	Tags             []tagXML     `xml:"tagSet>item"`
}

const ec2Time = "2006-01-02T15:04:05.000Z"

func toNAT(n *vpc.NatGateway) natXML {
	x := natXML{NatGatewayID: n.ID, SubnetID: n.SubnetID, VpcID: n.VpcID, State: n.State, ConnectivityType: n.ConnectivityType,
		CreateTime: n.Created.UTC().Format(ec2Time), Tags: tagsXML(n.Tags)}
	if n.Deleted != nil {
		x.DeleteTime = n.Deleted.UTC().Format(ec2Time)
	}
	status := "succeeded"
	if n.State == vpc.NatStateDeleted {
		status = "disassociating"
	}
	x.Addresses = []natAddrXML{{AllocationID: n.AllocationID, NetworkInterfaceID: n.NetworkInterfaceID, PrivateIP: n.PrivateIP, IsPrimary: true, Status: status}}
	return x
}

type tagDescXML struct {
	ResourceID   string `xml:"resourceId"`
	ResourceType string `xml:"resourceType"`
	Key          string `xml:"key"`
	Value        string `xml:"value"`
}
