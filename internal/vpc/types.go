package vpc

import "time"

// Tag is a key/value pair on a resource.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// VPC is a virtual network of one account. Subnets maps each subnet id to
// its CIDR; it is the registry CreateSubnet checks conflicts against and
// DeleteVpc checks emptiness against, updated with revision checks.
type VPC struct {
	ID                     string            `json:"id"`
	AccountID              string            `json:"account"`
	CidrBlock              string            `json:"cidr"`
	CidrAssociationID      string            `json:"cidrAssoc"`
	State                  string            `json:"state"` // available | deleting
	InstanceTenancy        string            `json:"tenancy"`
	DefaultSecurityGroupID string            `json:"defaultSg"`
	MainRouteTableID       string            `json:"mainRtb"`
	Subnets                map[string]string `json:"subnets,omitempty"`
	Tags                   []Tag             `json:"tags,omitempty"`
	Created                time.Time         `json:"created"`
	// VNI is the VPC's VXLAN network identifier, unique in the store
	// (cluster.go): its routers on several hosts are joined by it.
	VNI uint32 `json:"vni,omitempty"`
}

// Subnet is an address range of a VPC in one availability zone.
// AvailableIPs is filled by reads from the subnet's IPAM record.
type Subnet struct {
	ID               string `json:"id"`
	AccountID        string `json:"account"`
	VpcID            string `json:"vpc"`
	CidrBlock        string `json:"cidr"`
	AvailabilityZone string `json:"az"`
	State            string `json:"state"`
	// RouteTableID / AssociationID: the explicit route-table association
	// (empty: the VPC's main table applies).
	RouteTableID  string    `json:"rtb,omitempty"`
	AssociationID string    `json:"rtbAssoc,omitempty"`
	Tags          []Tag     `json:"tags,omitempty"`
	Created       time.Time `json:"created"`

	AvailableIPs int `json:"-"`
}

// Rule is one security-group permission with exactly one source (ingress)
// or destination (egress): a CIDR or another group.
type Rule struct {
	ID string `json:"id"` // sgr-...
	// Protocol is "tcp", "udp", "icmp", "-1" (all) or a protocol number.
	Protocol string `json:"proto"`
	// FromPort/ToPort: port range for tcp/udp, ICMP type/code for icmp
	// (-1 = any); -1/-1 for other protocols.
	FromPort    int32  `json:"from"`
	ToPort      int32  `json:"to"`
	CIDR        string `json:"cidr,omitempty"`
	GroupID     string `json:"group,omitempty"`
	UserID      string `json:"user,omitempty"` // owner of GroupID
	Description string `json:"desc,omitempty"`
}

// SecurityGroup is a stateful firewall applied to network interfaces.
type SecurityGroup struct {
	ID          string    `json:"id"`
	AccountID   string    `json:"account"`
	VpcID       string    `json:"vpc"`
	Name        string    `json:"name"`
	Description string    `json:"desc"`
	Ingress     []Rule    `json:"ingress,omitempty"`
	Egress      []Rule    `json:"egress,omitempty"`
	Tags        []Tag     `json:"tags,omitempty"`
	Created     time.Time `json:"created"`
}

// Interface types.
const (
	InterfaceTypeInterface = "interface"
	InterfaceTypeLambda    = "lambda"
	InterfaceTypeNAT       = "nat_gateway"
)

// Interface statuses.
const (
	StatusAvailable = "available"
	StatusInUse     = "in-use"
)

// NetworkInterface is an address in a subnet with security groups.
type NetworkInterface struct {
	ID               string    `json:"id"`
	AccountID        string    `json:"account"`
	VpcID            string    `json:"vpc"`
	SubnetID         string    `json:"subnet"`
	AvailabilityZone string    `json:"az"`
	PrivateIP        string    `json:"ip"`
	MAC              string    `json:"mac"`
	Groups           []string  `json:"groups,omitempty"`
	InterfaceType    string    `json:"type"`
	Status           string    `json:"status"`
	Description      string    `json:"desc,omitempty"`
	RequesterID      string    `json:"requester,omitempty"`
	RequesterManaged bool      `json:"managed,omitempty"`
	Tags             []Tag     `json:"tags,omitempty"`
	Created          time.Time `json:"created"`
	// Home is the host where the interface lives (its namespace, or for a
	// Hyperplane ENI its address, SNAT and conntrack): the host that
	// created or attached it, or the one the leader moved it to when its
	// home died. "" on a single host.
	Home string `json:"home,omitempty"`
}

// Route targets as stored: GatewayID "local" or an igw- id, or NatGatewayID.
type Route struct {
	DestinationCidrBlock string `json:"dst"`
	GatewayID            string `json:"gw,omitempty"`
	NatGatewayID         string `json:"nat,omitempty"`
	Origin               string `json:"origin"` // CreateRouteTable | CreateRoute

	// State is filled by reads: active, or blackhole when the target
	// gateway is gone or detached.
	State string `json:"-"`
}

// Association links a route table to a subnet (or, Main, to the VPC).
type Association struct {
	ID           string
	RouteTableID string
	SubnetID     string
	Main         bool
}

// RouteTable is a VPC's routing table. Explicit subnet associations live on
// the Subnet record (one per subnet, revision-checked).
type RouteTable struct {
	ID                string    `json:"id"`
	AccountID         string    `json:"account"`
	VpcID             string    `json:"vpc"`
	Main              bool      `json:"main"`
	MainAssociationID string    `json:"mainAssoc,omitempty"`
	Routes            []Route   `json:"routes"`
	Tags              []Tag     `json:"tags,omitempty"`
	Created           time.Time `json:"created"`

	// Associations is filled by reads (main association first).
	Associations []Association `json:"-"`
}

// InternetGateway connects a VPC to the outside; VpcID is the attachment.
type InternetGateway struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account"`
	VpcID     string    `json:"vpc,omitempty"`
	Tags      []Tag     `json:"tags,omitempty"`
	Created   time.Time `json:"created"`
}

// NAT gateway states.
const (
	NatStateAvailable = "available"
	NatStateDeleted   = "deleted"
)

// NatGateway translates a subnet's outbound traffic through its own address
// (an interface of type nat_gateway in its subnet).
type NatGateway struct {
	ID                 string     `json:"id"`
	AccountID          string     `json:"account"`
	VpcID              string     `json:"vpc"`
	SubnetID           string     `json:"subnet"`
	ConnectivityType   string     `json:"connectivity"` // public | private
	State              string     `json:"state"`
	PrivateIP          string     `json:"ip"`
	NetworkInterfaceID string     `json:"eni"`
	AllocationID       string     `json:"alloc,omitempty"`
	Tags               []Tag      `json:"tags,omitempty"`
	Created            time.Time  `json:"created"`
	Deleted            *time.Time `json:"deleted,omitempty"`
}

// ipamRecord is one subnet's address allocations: address → owner id.
type ipamRecord struct {
	SubnetID  string            `json:"subnet"`
	CidrBlock string            `json:"cidr"`
	Deleted   bool              `json:"deleted,omitempty"`
	Allocated map[string]string `json:"allocated,omitempty"`
}

// nameIndex reserves a security-group name within a VPC.
type nameIndex struct {
	GroupID string `json:"group"`
}

func (v *VPC) tagList() *[]Tag              { return &v.Tags }
func (s *Subnet) tagList() *[]Tag           { return &s.Tags }
func (g *SecurityGroup) tagList() *[]Tag    { return &g.Tags }
func (n *NetworkInterface) tagList() *[]Tag { return &n.Tags }
func (r *RouteTable) tagList() *[]Tag       { return &r.Tags }
func (g *InternetGateway) tagList() *[]Tag  { return &g.Tags }
func (n *NatGateway) tagList() *[]Tag       { return &n.Tags }
