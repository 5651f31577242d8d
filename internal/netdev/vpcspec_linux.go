package netdev

import (
	"cmp"
	"hash/fnv"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/nft"
)

// RouteKind says where a subnet's default route (0.0.0.0/0) leads.
type RouteKind string

// Default route kinds.
const (
	RouteNone      RouteKind = "none"      // no default route: outside destinations are unreachable
	RouteIGW       RouteKind = "igw"       // the VPC's internet gateway link
	RouteNAT       RouteKind = "nat"       // a NAT gateway's address in the VPC
	RouteBlackhole RouteKind = "blackhole" // a route whose target is gone: drop
)

// VPCSpec is the desired kernel state of one VPC router namespace.
type VPCSpec struct {
	ID   string // vpc-...; names the router namespace <prefix>-v<hex>
	CIDR netip.Prefix
	// InternetGateway: a veth from the router to the service router, where
	// traffic is masqueraded out of the platform's uplink.
	InternetGateway bool
	Subnets         []SubnetSpec // sorted by ID
	Interfaces      []IfaceSpec  // sorted by ID
	Groups          []nft.SecurityGroup
	// Lambdas are the VPC's Hyperplane ENIs (sorted by ID): addresses the
	// router itself owns, environments' traffic is SNATed to. An ENI homed
	// on another host (Home set) is only a mark here: its environments'
	// traffic is routed into the tunnel to its home.
	Lambdas []LambdaSpec
	// Tunnel joins this router to the VPC's routers on other hosts (no
	// peers: none; a single host has none).
	Tunnel TunnelSpec
}

// LambdaSpec is a Hyperplane ENI: its address is a local address of the
// router (on lo: it answers ARP on every subnet link), it is a member of
// its groups' sets, and its groups' egress rules apply to the traffic
// SNATed to it; outside destinations are routed by its subnet's table.
type LambdaSpec struct {
	ID       string
	Addr     netip.Addr
	SubnetID string
	Groups   []string
	// Home is the underlay address of the host where the ENI's address,
	// SNAT and conntrack live when that is not this host (invalid: here).
	Home netip.Addr
}

// Local reports whether the ENI is homed on this host.
func (l LambdaSpec) Local() bool { return !l.Home.IsValid() }

// SubnetSpec is one subnet: the router owns Gateway and routes the
// subnet's traffic to outside destinations by Default.
type SubnetSpec struct {
	ID      string
	CIDR    netip.Prefix
	Gateway netip.Addr
	Default RouteKind
	NAT     netip.Addr // Default == RouteNAT: the NAT gateway's address
	// NATVia is the underlay address of the NAT gateway's home when that
	// is another host: the default route leads into the tunnel.
	NATVia netip.Addr
}

// IfaceSpec is a network interface: a veth from the router to the
// interface's own namespace <prefix>-i<hex> holding Addr on eth0.
type IfaceSpec struct {
	ID      string // eni-...
	Addr    netip.Addr
	Subnet  netip.Prefix
	Gateway netip.Addr
	MAC     net.HardwareAddr
	Groups  []string
	// NAT marks a NAT gateway's interface: its namespace forwards and
	// masquerades what the router sends it.
	NAT bool
	// Attached marks an interface attached to an instance ("lambdaplane
	// instance run"): a process lives in its namespace, so VPCs.Close
	// leaves the namespace in place for the next start to adopt.
	Attached bool
}

// Names and numbers inside a VPC router.
const (
	// IGWLinkName is the router's end of the internet gateway veth.
	IGWLinkName = "igw"
	// InstanceIfName is the interface inside an instance namespace.
	InstanceIfName = "eth0"
	vpcRulePref    = 33000 // after the main table (32766): main has the VPC's /32s
	tableBase      = 1000
	tableSpan      = 1 << 20
)

var (
	ifaceLinkRE  = regexp.MustCompile(`^i[0-9a-f]{14}$`)
	svcVPCLinkRE = regexp.MustCompile(`^v[0-9a-f]{14}$`)
)

// idHex is the hex part of an AWS-style id ("eni-0a1b..." → "0a1b...").
func idHex(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		return id[i+1:]
	}
	return id
}

func short14(id string) string {
	h := idHex(id)
	if len(h) > 14 {
		h = h[:14]
	}
	return h
}

// VPCNetnsName is the router namespace of a VPC.
func VPCNetnsName(prefix, vpcID string) string { return prefix + "-v" + idHex(vpcID) }

// InstanceNetnsName is the namespace of a network interface.
func InstanceNetnsName(prefix, eniID string) string { return prefix + "-i" + idHex(eniID) }

// InstanceNetnsPath is where the namespace of a network interface is mounted.
func InstanceNetnsPath(prefix, eniID string) string {
	return filepath.Join(netnsRunDir, InstanceNetnsName(prefix, eniID))
}

func ifaceLink(eniID string) string  { return "i" + short14(eniID) }
func svcVPCLink(vpcID string) string { return "v" + short14(vpcID) }

// subnetTables gives each subnet a policy-routing table number, stable for
// a subnet ID (hash, then the next free number on a collision).
func subnetTables(subs []SubnetSpec) map[string]int {
	ids := make([]string, 0, len(subs))
	for _, s := range subs {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	used := map[int]bool{}
	out := map[string]int{}
	for _, id := range ids {
		h := fnv.New32a()
		h.Write([]byte(id))
		t := tableBase + int(h.Sum32()%tableSpan)
		for used[t] {
			t++
		}
		used[t] = true
		out[id] = t
	}
	return out
}

// nftTable is the VPC router's nft table for spec. The Hyperplane objects
// and the NAT chain are there only while something uses them (Lambda ENIs,
// an internet gateway): each base chain costs every packet the router
// forwards, and a NAT chain every new connection.
func nftTable(prefix string, s VPCSpec) nft.VPCTable {
	t := nft.VPCTable{Name: prefix, IGWLink: IGWLinkName, IGW: s.InternetGateway, Groups: s.Groups,
		// The platform endpoint is reached through the internet gateway
		// (apiendpoint_linux.go), as anything outside the VPC.
		IGWBlock: nft.ExcludeAddrs(nft.DefaultEgressBlock(), APIAddr, apiAddrAlt)}
	if len(s.Lambdas) > 0 {
		t.HPLink = HPLinkName
	}
	for _, l := range s.Lambdas {
		if l.Local() {
			t.Lambdas = append(t.Lambdas, nft.VPCLambda{Mark: LambdaMark(l.Addr), Addr: l.Addr, Chain: "l" + short14(l.ID), Groups: l.Groups})
		}
	}
	if len(s.Tunnel.Peers) > 0 {
		t.Tunnel = TunnelLinkName
		t.MarkHigh = LambdaMark(s.CIDR.Addr()) & 0xffff0000
	}
	slices.SortFunc(t.Lambdas, func(a, b nft.VPCLambda) int { return cmp.Compare(a.Mark, b.Mark) })
	for _, i := range s.Interfaces {
		if i.NAT {
			t.NATAddrs = append(t.NATAddrs, i.Addr)
			continue // NAT gateways have no security groups
		}
		t.Ifaces = append(t.Ifaces, nft.VPCIface{Link: ifaceLink(i.ID), Groups: i.Groups})
	}
	slices.SortFunc(t.NATAddrs, netip.Addr.Compare)
	t.NATAddrs = slices.Compact(t.NATAddrs)
	return t
}

// ifaceKernelEqual reports whether two interface specs need the same links
// and addresses (groups are nft-only).
func ifaceKernelEqual(a, b IfaceSpec) bool {
	return a.ID == b.ID && a.Addr == b.Addr && a.Subnet == b.Subnet && a.Gateway == b.Gateway &&
		slices.Equal(a.MAC, b.MAC) && a.NAT == b.NAT
}

// IfaceDiff is what changes between two interface lists (pure).
type IfaceDiff struct {
	Add, Del []IfaceSpec
}

// DiffIfaces computes which interfaces to create and destroy; one whose
// address, subnet or MAC changed is destroyed and created again.
func DiffIfaces(old, new []IfaceSpec) IfaceDiff {
	var d IfaceDiff
	om := map[string]IfaceSpec{}
	for _, i := range old {
		om[i.ID] = i
	}
	nm := map[string]bool{}
	for _, i := range new {
		nm[i.ID] = true
		o, ok := om[i.ID]
		switch {
		case !ok:
			d.Add = append(d.Add, i)
		case !ifaceKernelEqual(o, i):
			d.Del = append(d.Del, o)
			d.Add = append(d.Add, i)
		}
	}
	for _, o := range old {
		if !nm[o.ID] {
			d.Del = append(d.Del, o)
		}
	}
	return d
}

func natSet(ifs []IfaceSpec) []string {
	var out []string
	for _, i := range ifs {
		if i.NAT {
			out = append(out, i.ID+"="+i.Addr.String())
		}
	}
	return out
}

// routingChanged reports whether policy routing must be re-converged.
func routingChanged(old, new VPCSpec) bool {
	return old.InternetGateway != new.InternetGateway || !slices.Equal(old.Subnets, new.Subnets) ||
		!slices.Equal(natSet(old.Interfaces), natSet(new.Interfaces)) || !sameLambdaRouting(old.Lambdas, new.Lambdas)
}

func sameLambdaRouting(a, b []LambdaSpec) bool {
	return slices.EqualFunc(a, b, func(x, y LambdaSpec) bool {
		return x.ID == y.ID && x.Addr == y.Addr && x.SubnetID == y.SubnetID && x.Home == y.Home
	})
}
