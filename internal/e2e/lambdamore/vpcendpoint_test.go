package lambdamore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
)

// TestVPCFunctionEndpointThroughNAT: a VPC function reaches the platform
// endpoint only the way it reaches anything outside its VPC: not from a
// private subnet without a route out, and through a NAT gateway (public
// subnet, internet gateway) once the subnet routes to one. A function
// without a VPC reaches it directly.
func TestVPCFunctionEndpointThroughNAT(t *testing.T) {
	e := harness.Start(t)
	ctx := context.Background()
	ec := ec2.NewFromConfig(e.AWSConfig())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	v, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.20.0.0/16")})
	must(err)
	vpcID := v.Vpc.VpcId
	priv, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, CidrBlock: aws.String("10.20.1.0/24")})
	must(err)
	pub, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, CidrBlock: aws.String("10.20.0.0/24")})
	must(err)
	sg, err := ec.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{VpcId: vpcID, GroupName: aws.String("fn"), Description: aws.String("fn")})
	must(err)

	ep := e.Srv.Router().APIAddr().String() + fmt.Sprint(":", netdev.APIPort)
	e.CreateProbe("vpcfn", func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String(e.Role("vpc"))
		in.VpcConfig = &types.VpcConfig{SubnetIds: []string{*priv.Subnet.SubnetId}, SecurityGroupIds: []string{*sg.GroupId}}
	})
	e.CreateProbe("plainfn")
	dial := func(fn string) string {
		res, out := e.InvokeJSON(fn, map[string]any{"action": "probe", "addrs": []string{ep}})
		if out.FunctionError != nil {
			t.Fatalf("%s: %s", fn, out.Payload)
		}
		d, _ := res["dials"].(map[string]any)
		return fmt.Sprint(d[ep])
	}
	if got := dial("plainfn"); got != "connected" {
		t.Fatalf("a function without a VPC dialing %s: %s", ep, got)
	}
	if got := dial("vpcfn"); got == "connected" {
		t.Fatalf("a VPC function without a route out reached the endpoint %s", ep)
	}

	igw, err := ec.CreateInternetGateway(ctx, &ec2.CreateInternetGatewayInput{})
	must(err)
	_, err = ec.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: igw.InternetGateway.InternetGatewayId, VpcId: vpcID})
	must(err)
	pubRT, err := ec.CreateRouteTable(ctx, &ec2.CreateRouteTableInput{VpcId: vpcID})
	must(err)
	_, err = ec.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: pubRT.RouteTable.RouteTableId, DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: igw.InternetGateway.InternetGatewayId})
	must(err)
	_, err = ec.AssociateRouteTable(ctx, &ec2.AssociateRouteTableInput{RouteTableId: pubRT.RouteTable.RouteTableId, SubnetId: pub.Subnet.SubnetId})
	must(err)
	nat, err := ec.CreateNatGateway(ctx, &ec2.CreateNatGatewayInput{SubnetId: pub.Subnet.SubnetId})
	must(err)
	privRT, err := ec.CreateRouteTable(ctx, &ec2.CreateRouteTableInput{VpcId: vpcID})
	must(err)
	_, err = ec.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: privRT.RouteTable.RouteTableId, DestinationCidrBlock: aws.String("0.0.0.0/0"), NatGatewayId: nat.NatGateway.NatGatewayId})
	must(err)
	_, err = ec.AssociateRouteTable(ctx, &ec2.AssociateRouteTableInput{RouteTableId: privRT.RouteTable.RouteTableId, SubnetId: priv.Subnet.SubnetId})
	must(err)
	last := ""
	deadline := time.Now().Add(20 * time.Second)
	for last != "connected" && time.Now().Before(deadline) {
		last = dial("vpcfn")
	}
	if last != "connected" {
		res, _ := e.InvokeJSON("vpcfn", map[string]any{"action": "probe", "addrs": []string{harness.InternetTCP}})
		t.Logf("the same function dialing the internet (%s): %v", harness.InternetTCP, res["dials"])
		t.Fatalf("a VPC function routed through a NAT gateway dialing %s: %s", ep, last)
	}
}
