package ec2api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

func (e *env) client(akid string) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(e.url),
		Credentials:      credentials.NewStaticCredentialsProvider(akid, "secret", ""),
		RetryMaxAttempts: 1,
	})
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want %s, got %v", code, err)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("want %s, got %s: %s", code, ae.ErrorCode(), ae.ErrorMessage())
	}
}

func flt(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

func tagSpec(rt types.ResourceType, k, v string) []types.TagSpecification {
	return []types.TagSpecification{{ResourceType: rt, Tags: []types.Tag{{Key: aws.String(k), Value: aws.String(v)}}}}
}

func TestSDKFlow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client(keyA)

	cv, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16"), TagSpecifications: tagSpec(types.ResourceTypeVpc, "Name", "main")})
	if err != nil {
		t.Fatal(err)
	}
	vpcID := aws.ToString(cv.Vpc.VpcId)
	if len(vpcID) != 21 || cv.Vpc.State != types.VpcStateAvailable || aws.ToString(cv.Vpc.CidrBlock) != "10.0.0.0/16" ||
		aws.ToString(cv.Vpc.OwnerId) != acctA || len(cv.Vpc.Tags) != 1 || aws.ToString(cv.Vpc.Tags[0].Value) != "main" {
		t.Fatalf("vpc: %+v", cv.Vpc)
	}
	dv, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []types.Filter{flt("tag:Name", "ma*")}})
	if err != nil || len(dv.Vpcs) != 1 {
		t.Fatalf("describe vpcs: %+v %v", dv, err)
	}

	cs, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String("10.0.1.0/28"), AvailabilityZone: aws.String("us-east-1a")})
	if err != nil {
		t.Fatal(err)
	}
	subID := aws.ToString(cs.Subnet.SubnetId)
	if aws.ToInt32(cs.Subnet.AvailableIpAddressCount) != 11 || aws.ToString(cs.Subnet.AvailabilityZone) != "us-east-1a" {
		t.Fatalf("subnet: %+v", cs.Subnet)
	}

	// The default group and main route table exist.
	sgs, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{flt("vpc-id", vpcID), flt("group-name", "default")}})
	if err != nil || len(sgs.SecurityGroups) != 1 {
		t.Fatalf("default sg: %+v %v", sgs, err)
	}
	def := sgs.SecurityGroups[0]
	if len(def.IpPermissions) != 1 || aws.ToString(def.IpPermissions[0].IpProtocol) != "-1" || len(def.IpPermissions[0].UserIdGroupPairs) != 1 ||
		aws.ToString(def.IpPermissions[0].UserIdGroupPairs[0].GroupId) != aws.ToString(def.GroupId) ||
		len(def.IpPermissionsEgress) != 1 || aws.ToString(def.IpPermissionsEgress[0].IpRanges[0].CidrIp) != "0.0.0.0/0" {
		t.Fatalf("default sg rules: %+v", def)
	}
	rts, err := c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []types.Filter{flt("vpc-id", vpcID), flt("association.main", "true")}})
	if err != nil || len(rts.RouteTables) != 1 || aws.ToString(rts.RouteTables[0].Routes[0].GatewayId) != "local" || !aws.ToBool(rts.RouteTables[0].Associations[0].Main) {
		t.Fatalf("main rtb: %+v %v", rts, err)
	}
	mainRT := aws.ToString(rts.RouteTables[0].RouteTableId)

	app, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("app"), Description: aws.String("app"), VpcId: &vpcID})
	if err != nil {
		t.Fatal(err)
	}
	db, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("db"), Description: aws.String("db"), VpcId: &vpcID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("db"), Description: aws.String("db"), VpcId: &vpcID})
	wantCode(t, err, "InvalidGroup.Duplicate")

	perm := types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(6379), ToPort: aws.Int32(6379),
		UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: app.GroupId}}, IpRanges: []types.IpRange{{CidrIp: aws.String("10.0.9.0/24"), Description: aws.String("ops")}}}
	au, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: db.GroupId, IpPermissions: []types.IpPermission{perm}})
	if err != nil || !aws.ToBool(au.Return) || len(au.SecurityGroupRules) != 2 {
		t.Fatalf("authorize: %+v %v", au, err)
	}
	_, err = c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: db.GroupId, IpPermissions: []types.IpPermission{perm}})
	wantCode(t, err, "InvalidPermission.Duplicate")
	// Legacy top-level shorthand.
	_, err = c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: db.GroupId, IpProtocol: aws.String("udp"), FromPort: aws.Int32(53), ToPort: aws.Int32(53), CidrIp: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: db.GroupId, IpProtocol: aws.String("icmp"), FromPort: aws.Int32(8), ToPort: aws.Int32(-1), SourceSecurityGroupName: aws.String("app")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{aws.ToString(db.GroupId)}})
	if err != nil || len(got.SecurityGroups) != 1 {
		t.Fatal(err)
	}
	ing := got.SecurityGroups[0].IpPermissions
	if len(ing) != 3 || aws.ToInt32(ing[0].FromPort) != 6379 || len(ing[0].UserIdGroupPairs) != 1 || len(ing[0].IpRanges) != 1 ||
		aws.ToString(ing[0].IpRanges[0].Description) != "ops" || aws.ToString(ing[0].UserIdGroupPairs[0].UserId) != acctA {
		t.Fatalf("ingress: %+v", ing)
	}
	_, err = c.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: db.GroupId, IpProtocol: aws.String("udp"), FromPort: aws.Int32(53), ToPort: aws.Int32(53), CidrIp: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: db.GroupId, IpProtocol: aws.String("udp"), FromPort: aws.Int32(53), ToPort: aws.Int32(53), CidrIp: aws.String("10.0.0.0/16")})
	wantCode(t, err, "InvalidPermission.NotFound")
	_, err = c.AuthorizeSecurityGroupEgress(ctx, &ec2.AuthorizeSecurityGroupEgressInput{GroupId: db.GroupId, IpPermissions: []types.IpPermission{{IpProtocol: aws.String("-1"), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}})
	wantCode(t, err, "InvalidPermission.Duplicate")
	_, err = c.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: db.GroupId, IpPermissions: []types.IpPermission{{IpProtocol: aws.String("-1"), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}})
	if err != nil {
		t.Fatal(err)
	}

	// Interfaces and IPAM.
	var enis []string
	for i := 0; i < 11; i++ {
		in := &ec2.CreateNetworkInterfaceInput{SubnetId: &subID, Groups: []string{aws.ToString(db.GroupId)}, Description: aws.String("redis")}
		if i == 0 {
			in.PrivateIpAddress = aws.String("10.0.1.10")
			in.TagSpecifications = tagSpec(types.ResourceTypeNetworkInterface, "role", "redis")
		}
		n, err := c.CreateNetworkInterface(ctx, in)
		if err != nil {
			t.Fatalf("eni %d: %v", i, err)
		}
		ni := n.NetworkInterface
		if i == 0 && (aws.ToString(ni.PrivateIpAddress) != "10.0.1.10" || ni.Status != types.NetworkInterfaceStatusAvailable ||
			ni.InterfaceType != types.NetworkInterfaceTypeInterface || len(aws.ToString(ni.MacAddress)) != 17 ||
			len(ni.Groups) != 1 || aws.ToString(ni.Groups[0].GroupName) != "db" || aws.ToString(ni.VpcId) != vpcID ||
			aws.ToString(ni.AvailabilityZone) != "us-east-1a" || aws.ToString(ni.OwnerId) != acctA || len(ni.TagSet) != 1) {
			t.Fatalf("eni: %+v", ni)
		}
		enis = append(enis, aws.ToString(ni.NetworkInterfaceId))
	}
	_, err = c.CreateNetworkInterface(ctx, &ec2.CreateNetworkInterfaceInput{SubnetId: &subID})
	wantCode(t, err, "InsufficientFreeAddressesInSubnet")
	ds, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{subID}})
	if err != nil || aws.ToInt32(ds.Subnets[0].AvailableIpAddressCount) != 0 {
		t.Fatalf("subnet count: %+v %v", ds, err)
	}
	if _, err := c.DeleteNetworkInterface(ctx, &ec2.DeleteNetworkInterfaceInput{NetworkInterfaceId: &enis[1]}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateNetworkInterface(ctx, &ec2.CreateNetworkInterfaceInput{SubnetId: &subID, PrivateIpAddress: aws.String("10.0.1.10")})
	wantCode(t, err, "InvalidIPAddress.InUse")
	dn, err := c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{flt("subnet-id", subID), flt("group-id", aws.ToString(db.GroupId)), flt("status", "available"), flt("interface-type", "interface")}})
	if err != nil || len(dn.NetworkInterfaces) != 10 {
		t.Fatalf("describe enis: %d %v", len(dn.NetworkInterfaces), err)
	}
	dn, err = c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{flt("tag:role", "redis")}})
	if err != nil || len(dn.NetworkInterfaces) != 1 {
		t.Fatalf("describe enis by tag: %+v %v", dn, err)
	}
	_, err = c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{flt("bogus", "x")}})
	wantCode(t, err, "InvalidParameterValue")

	// Dependencies.
	_, err = c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: &subID})
	wantCode(t, err, "DependencyViolation")
	_, err = c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: db.GroupId})
	wantCode(t, err, "DependencyViolation")
	_, err = c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: app.GroupId}) // referenced by db's rule
	wantCode(t, err, "DependencyViolation")
	_, err = c.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: &vpcID})
	wantCode(t, err, "DependencyViolation")

	// Routing: igw, nat, route tables.
	ig, err := c.CreateInternetGateway(ctx, &ec2.CreateInternetGatewayInput{})
	if err != nil {
		t.Fatal(err)
	}
	igID := aws.ToString(ig.InternetGateway.InternetGatewayId)
	if _, err := c.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: &igID, VpcId: &vpcID}); err != nil {
		t.Fatal(err)
	}
	dig, err := c.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: []types.Filter{flt("attachment.vpc-id", vpcID)}})
	if err != nil || len(dig.InternetGateways) != 1 || aws.ToString(dig.InternetGateways[0].Attachments[0].VpcId) != vpcID {
		t.Fatalf("igw: %+v %v", dig, err)
	}
	pub, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String("10.0.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	pubID := aws.ToString(pub.Subnet.SubnetId)
	crt, err := c.CreateRouteTable(ctx, &ec2.CreateRouteTableInput{VpcId: &vpcID})
	if err != nil {
		t.Fatal(err)
	}
	rtID := aws.ToString(crt.RouteTable.RouteTableId)
	if _, err := c.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: &rtID, DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: &igID}); err != nil {
		t.Fatal(err)
	}
	as, err := c.AssociateRouteTable(ctx, &ec2.AssociateRouteTableInput{RouteTableId: &rtID, SubnetId: &pubID})
	if err != nil || len(aws.ToString(as.AssociationId)) != len("rtbassoc-")+17 {
		t.Fatalf("associate: %+v %v", as, err)
	}
	ng, err := c.CreateNatGateway(ctx, &ec2.CreateNatGatewayInput{SubnetId: &pubID, TagSpecifications: tagSpec(types.ResourceTypeNatgateway, "Name", "nat")})
	if err != nil {
		t.Fatal(err)
	}
	natID := aws.ToString(ng.NatGateway.NatGatewayId)
	if ng.NatGateway.State != types.NatGatewayStateAvailable || ng.NatGateway.ConnectivityType != types.ConnectivityTypePublic ||
		aws.ToString(ng.NatGateway.NatGatewayAddresses[0].PrivateIp) != "10.0.0.4" {
		t.Fatalf("nat: %+v", ng.NatGateway)
	}
	if _, err := c.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: &mainRT, DestinationCidrBlock: aws.String("0.0.0.0/0"), NatGatewayId: &natID}); err != nil {
		t.Fatal(err)
	}
	dr, err := c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{mainRT}})
	if err != nil || len(dr.RouteTables[0].Routes) != 2 || aws.ToString(dr.RouteTables[0].Routes[1].NatGatewayId) != natID || dr.RouteTables[0].Routes[1].State != types.RouteStateActive {
		t.Fatalf("main routes: %+v %v", dr, err)
	}
	dr, err = c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []types.Filter{flt("association.subnet-id", pubID)}})
	if err != nil || len(dr.RouteTables) != 1 || aws.ToString(dr.RouteTables[0].RouteTableId) != rtID {
		t.Fatalf("rtb by subnet: %+v %v", dr, err)
	}
	dng, err := c.DescribeNatGateways(ctx, &ec2.DescribeNatGatewaysInput{Filter: []types.Filter{flt("vpc-id", vpcID)}})
	if err != nil || len(dng.NatGateways) != 1 {
		t.Fatalf("describe nat: %+v %v", dng, err)
	}
	dn, err = c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{flt("interface-type", "nat_gateway")}})
	if err != nil || len(dn.NetworkInterfaces) != 1 || dn.NetworkInterfaces[0].Status != types.NetworkInterfaceStatusInUse {
		t.Fatalf("nat eni: %+v %v", dn, err)
	}
	_, err = c.DeleteNetworkInterface(ctx, &ec2.DeleteNetworkInterfaceInput{NetworkInterfaceId: dn.NetworkInterfaces[0].NetworkInterfaceId})
	wantCode(t, err, "InvalidNetworkInterface.InUse")
	if _, err := c.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: &mainRT, DestinationCidrBlock: aws.String("0.0.0.0/0")}); err != nil {
		t.Fatal(err)
	}
	dnat, err := c.DeleteNatGateway(ctx, &ec2.DeleteNatGatewayInput{NatGatewayId: &natID})
	if err != nil || aws.ToString(dnat.NatGatewayId) != natID {
		t.Fatalf("delete nat: %v", err)
	}
	_, err = c.DeleteNatGateway(ctx, &ec2.DeleteNatGatewayInput{NatGatewayId: &natID})
	wantCode(t, err, "NatGatewayNotFound")

	// Tags.
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{subID, igID}, Tags: []types.Tag{{Key: aws.String("env"), Value: aws.String("dev")}}}); err != nil {
		t.Fatal(err)
	}
	dt, err := c.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []types.Filter{flt("key", "env")}})
	if err != nil || len(dt.Tags) != 2 {
		t.Fatalf("describe tags: %+v %v", dt, err)
	}
	dt, err = c.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []types.Filter{flt("resource-type", "internet-gateway")}})
	if err != nil || len(dt.Tags) != 1 || aws.ToString(dt.Tags[0].ResourceId) != igID || dt.Tags[0].ResourceType != types.ResourceTypeInternetGateway {
		t.Fatalf("describe tags by type: %+v %v", dt, err)
	}
}

func TestSDKErrors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client(keyA)
	_, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/8")})
	wantCode(t, err, "InvalidVpc.Range")
	_, err = c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("banana")})
	wantCode(t, err, "InvalidParameterValue")
	_, err = c.CreateVpc(ctx, &ec2.CreateVpcInput{})
	wantCode(t, err, "MissingParameter")
	cv, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	vpcID := cv.Vpc.VpcId
	_, err = c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, CidrBlock: aws.String("10.1.0.0/24")})
	wantCode(t, err, "InvalidSubnet.Range")
	if _, err = c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, CidrBlock: aws.String("10.0.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, CidrBlock: aws.String("10.0.0.0/25")})
	wantCode(t, err, "InvalidSubnet.Conflict")
	_, err = c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, CidrBlock: aws.String("10.0.5.0/24"), AvailabilityZone: aws.String("eu-west-1a")})
	wantCode(t, err, "InvalidParameterValue")
	_, err = c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String("vpc-0123456789abcdef0"), CidrBlock: aws.String("10.0.5.0/24")})
	wantCode(t, err, "InvalidVpcID.NotFound")
	_, err = c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSubnetID.NotFound")
	_, err = c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{"sg-0123456789abcdef0"}})
	wantCode(t, err, "InvalidGroup.NotFound")
	_, err = c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{"eni-0123456789abcdef0"}})
	wantCode(t, err, "InvalidNetworkInterfaceID.NotFound")
	_, err = c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{"rtb-0123456789abcdef0"}})
	wantCode(t, err, "InvalidRouteTableID.NotFound")
	_, err = c.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{InternetGatewayIds: []string{"igw-0123456789abcdef0"}})
	wantCode(t, err, "InvalidInternetGatewayID.NotFound")
	_, err = c.DescribeNatGateways(ctx, &ec2.DescribeNatGatewaysInput{NatGatewayIds: []string{"nat-0123456789abcdef0"}})
	wantCode(t, err, "NatGatewayNotFound")
	_, err = c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("x"), Description: aws.String("x")})
	wantCode(t, err, "MissingParameter")
	_, err = c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String("sg-0123456789abcdef0"), IpProtocol: aws.String("tcp"), FromPort: aws.Int32(1), ToPort: aws.Int32(1), CidrIp: aws.String("0.0.0.0/0")})
	wantCode(t, err, "InvalidGroup.NotFound")
	_, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{DryRun: aws.Bool(true)})
	wantCode(t, err, "DryRunOperation")

	// Account B sees nothing of A's.
	b := e.client(keyB)
	_, err = b.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{aws.ToString(vpcID)}})
	wantCode(t, err, "InvalidVpcID.NotFound")
	_, err = b.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: vpcID})
	wantCode(t, err, "InvalidVpcID.NotFound")
	all, err := b.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(all.Vpcs) != 0 {
		t.Fatalf("B lists: %+v %v", all, err)
	}
	allSG, err := b.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil || len(allSG.SecurityGroups) != 0 {
		t.Fatalf("B lists groups: %+v %v", allSG, err)
	}

	// Authentication failures.
	_, err = e.client("AKIAUNKNOWNUNKNOWNXX").DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	wantCode(t, err, "AuthFailure")
	_, err = e.client(badSecretKey).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	wantCode(t, err, "SignatureDoesNotMatch")
}

// TestSDKPagination: Describe* honour MaxResults/NextToken (the SDK's
// paginator walks every page exactly once) and reject bad combinations.
func TestSDKPagination(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client(keyA)
	want := map[string]bool{}
	for i := range 7 {
		v, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(fmt.Sprintf("10.%d.0.0/16", i))})
		if err != nil {
			t.Fatal(err)
		}
		want[aws.ToString(v.Vpc.VpcId)] = true
	}
	seen := map[string]bool{}
	pages := 0
	p := ec2.NewDescribeVpcsPaginator(c, &ec2.DescribeVpcsInput{MaxResults: aws.Int32(5)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(out.Vpcs) > 5 {
			t.Fatalf("page of %d with MaxResults 5", len(out.Vpcs))
		}
		for _, v := range out.Vpcs {
			if seen[aws.ToString(v.VpcId)] {
				t.Fatalf("%s on two pages", aws.ToString(v.VpcId))
			}
			seen[aws.ToString(v.VpcId)] = true
		}
	}
	if pages != 2 || len(seen) != 7 {
		t.Fatalf("%d pages, %d VPCs; want 2 pages, 7 VPCs", pages, len(seen))
	}
	for id := range want {
		if !seen[id] {
			t.Fatalf("%s missing from the pages", id)
		}
	}
	all, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(all.Vpcs) != 7 || all.NextToken != nil {
		t.Fatalf("without MaxResults: %d VPCs, token %v, %v", len(all.Vpcs), all.NextToken, err)
	}
	_, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{MaxResults: aws.Int32(2)})
	wantCode(t, err, "InvalidParameterValue")
	_, err = c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{MaxResults: aws.Int32(5), SubnetIds: []string{"subnet-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSubnetID.NotFound") // ids are checked first, as on AWS
	var first string
	for id := range want {
		first = id
		break
	}
	_, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{MaxResults: aws.Int32(5), VpcIds: []string{first}})
	wantCode(t, err, "InvalidParameterCombination")
	_, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{MaxResults: aws.Int32(5), NextToken: aws.String("garbage!")})
	wantCode(t, err, "InvalidParameterValue")
}
