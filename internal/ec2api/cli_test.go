package ec2api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

const awsCLI = "/usr/bin/aws"

type cli struct {
	t   *testing.T
	url string
	env []string
}

func newCLI(t *testing.T, e *env) *cli {
	t.Helper()
	if _, err := os.Stat(awsCLI); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: %v", awsCLI, err)
		}
		t.Skipf("%s not installed", awsCLI)
	}
	dir := t.TempDir()
	creds := "[a]\naws_access_key_id = " + keyA + "\naws_secret_access_key = secretA\n" +
		"[b]\naws_access_key_id = " + keyB + "\naws_secret_access_key = secretB\n"
	conf := "[profile a]\nregion = us-east-1\n[profile b]\nregion = us-east-1\n"
	if err := os.WriteFile(filepath.Join(dir, "credentials"), []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return &cli{t: t, url: e.url, env: append(os.Environ(),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"), "AWS_CONFIG_FILE="+filepath.Join(dir, "config"),
		"HOME="+dir, "AWS_PAGER=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_PROFILE=", "AWS_DEFAULT_PROFILE=")}
}

// run executes the CLI as profile and returns stdout, stderr and whether it
// succeeded.
func (c *cli) run(profile string, args ...string) (string, string, bool) {
	all := append([]string{"--endpoint-url", c.url, "--profile", profile, "--region", "us-east-1", "--output", "json"}, args...)
	cmd := exec.Command(awsCLI, all...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err == nil
}

// ok runs a command that must succeed and decodes its JSON output.
func (c *cli) ok(profile string, args ...string) map[string]any {
	c.t.Helper()
	out, stderr, ok := c.run(profile, args...)
	if !ok {
		c.t.Fatalf("aws %v failed: %s", args, stderr)
	}
	m := map[string]any{}
	if len(bytes.TrimSpace([]byte(out))) > 0 {
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			c.t.Fatalf("aws %v: bad JSON %v: %s", args, err, out)
		}
	}
	return m
}

var cliErrRE = regexp.MustCompile(`An error occurred \(([^)]+)\)`)

// fails runs a command that must fail with code.
func (c *cli) fails(code, profile string, args ...string) {
	c.t.Helper()
	_, stderr, ok := c.run(profile, args...)
	if ok {
		c.t.Errorf("aws %v succeeded; want %s", args, code)
		return
	}
	m := cliErrRE.FindStringSubmatch(stderr)
	if m == nil || m[1] != code {
		c.t.Errorf("aws %v: want %s, got: %s", args, code, stderr)
	}
}

func path(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, keys ...any) string { s, _ := path(v, keys...).(string); return s }

func TestCLIFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := newCLI(t, e)

	vpcOut := c.ok("a", "ec2", "create-vpc", "--cidr-block", "10.0.0.0/16", "--tag-specifications", "ResourceType=vpc,Tags=[{Key=Name,Value=main}]")
	vpcID := str(vpcOut, "Vpc", "VpcId")
	if !regexp.MustCompile(`^vpc-[0-9a-f]{17}$`).MatchString(vpcID) || str(vpcOut, "Vpc", "Tags", 0, "Value") != "main" {
		t.Fatalf("create-vpc: %v", vpcOut)
	}
	subOut := c.ok("a", "ec2", "create-subnet", "--vpc-id", vpcID, "--cidr-block", "10.0.1.0/24", "--availability-zone", "us-east-1a")
	subID := str(subOut, "Subnet", "SubnetId")
	if path(subOut, "Subnet", "AvailableIpAddressCount") != float64(251) {
		t.Fatalf("create-subnet: %v", subOut)
	}
	app := str(c.ok("a", "ec2", "create-security-group", "--group-name", "app", "--description", "app", "--vpc-id", vpcID), "GroupId")
	db := str(c.ok("a", "ec2", "create-security-group", "--group-name", "db", "--description", "db", "--vpc-id", vpcID), "GroupId")
	if !regexp.MustCompile(`^sg-[0-9a-f]{17}$`).MatchString(db) {
		t.Fatalf("sg id %q", db)
	}
	au := c.ok("a", "ec2", "authorize-security-group-ingress", "--group-id", db, "--protocol", "tcp", "--port", "6379", "--source-group", app)
	if path(au, "Return") != true {
		t.Fatalf("authorize: %v", au)
	}
	c.ok("a", "ec2", "authorize-security-group-ingress", "--group-id", db, "--protocol", "tcp", "--port", "5432-5433", "--cidr", "10.0.9.0/24")
	c.ok("a", "ec2", "authorize-security-group-ingress", "--group-id", db,
		"--ip-permissions", `IpProtocol=icmp,FromPort=8,ToPort=-1,IpRanges=[{CidrIp=10.0.0.0/16,Description=ping}]`)
	eni := c.ok("a", "ec2", "create-network-interface", "--subnet-id", subID, "--groups", db, "--private-ip-address", "10.0.1.20", "--description", "redis")
	eniID := str(eni, "NetworkInterface", "NetworkInterfaceId")
	if str(eni, "NetworkInterface", "PrivateIpAddress") != "10.0.1.20" || str(eni, "NetworkInterface", "Status") != "available" ||
		str(eni, "NetworkInterface", "Groups", 0, "GroupName") != "db" {
		t.Fatalf("create-network-interface: %v", eni)
	}
	c.ok("a", "ec2", "create-network-interface", "--subnet-id", subID)

	dn := c.ok("a", "ec2", "describe-network-interfaces", "--filters", "Name=subnet-id,Values="+subID)
	if l, _ := path(dn, "NetworkInterfaces").([]any); len(l) != 2 {
		t.Fatalf("describe-network-interfaces: %v", dn)
	}
	dn = c.ok("a", "ec2", "describe-network-interfaces", "--filters", "Name=group-id,Values="+db, "Name=interface-type,Values=interface")
	if l, _ := path(dn, "NetworkInterfaces").([]any); len(l) != 1 || str(dn, "NetworkInterfaces", 0, "NetworkInterfaceId") != eniID ||
		!regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`).MatchString(str(dn, "NetworkInterfaces", 0, "MacAddress")) {
		t.Fatalf("describe-network-interfaces by group: %v", dn)
	}
	ds := c.ok("a", "ec2", "describe-subnets")
	if path(ds, "Subnets", 0, "AvailableIpAddressCount") != float64(249) {
		t.Fatalf("describe-subnets: %v", ds)
	}
	sg := c.ok("a", "ec2", "describe-security-groups", "--group-ids", db)
	perms, _ := path(sg, "SecurityGroups", 0, "IpPermissions").([]any)
	if len(perms) != 3 || str(sg, "SecurityGroups", 0, "IpPermissions", 0, "UserIdGroupPairs", 0, "GroupId") != app ||
		path(sg, "SecurityGroups", 0, "IpPermissions", 0, "FromPort") != float64(6379) ||
		str(sg, "SecurityGroups", 0, "IpPermissions", 2, "IpRanges", 0, "Description") != "ping" {
		t.Fatalf("describe-security-groups: %v", sg)
	}
	dv := c.ok("a", "ec2", "describe-vpcs", "--filters", "Name=tag:Name,Values=main")
	if str(dv, "Vpcs", 0, "VpcId") != vpcID {
		t.Fatalf("describe-vpcs: %v", dv)
	}

	// Routing.
	igw := str(c.ok("a", "ec2", "create-internet-gateway"), "InternetGateway", "InternetGatewayId")
	c.ok("a", "ec2", "attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpcID)
	pub := str(c.ok("a", "ec2", "create-subnet", "--vpc-id", vpcID, "--cidr-block", "10.0.0.0/24"), "Subnet", "SubnetId")
	rtb := str(c.ok("a", "ec2", "create-route-table", "--vpc-id", vpcID), "RouteTable", "RouteTableId")
	c.ok("a", "ec2", "create-route", "--route-table-id", rtb, "--destination-cidr-block", "0.0.0.0/0", "--gateway-id", igw)
	assoc := c.ok("a", "ec2", "associate-route-table", "--route-table-id", rtb, "--subnet-id", pub)
	if !regexp.MustCompile(`^rtbassoc-[0-9a-f]{17}$`).MatchString(str(assoc, "AssociationId")) {
		t.Fatalf("associate-route-table: %v", assoc)
	}
	nat := c.ok("a", "ec2", "create-nat-gateway", "--subnet-id", pub)
	natID := str(nat, "NatGateway", "NatGatewayId")
	if str(nat, "NatGateway", "State") != "available" || str(nat, "NatGateway", "NatGatewayAddresses", 0, "PrivateIp") != "10.0.0.4" {
		t.Fatalf("create-nat-gateway: %v", nat)
	}
	main := c.ok("a", "ec2", "describe-route-tables", "--filters", "Name=vpc-id,Values="+vpcID, "Name=association.main,Values=true")
	mainID := str(main, "RouteTables", 0, "RouteTableId")
	c.ok("a", "ec2", "create-route", "--route-table-id", mainID, "--destination-cidr-block", "0.0.0.0/0", "--nat-gateway-id", natID)
	dng := c.ok("a", "ec2", "describe-nat-gateways", "--filter", "Name=vpc-id,Values="+vpcID)
	if str(dng, "NatGateways", 0, "NatGatewayId") != natID {
		t.Fatalf("describe-nat-gateways: %v", dng)
	}
	c.ok("a", "ec2", "create-tags", "--resources", subID, "--tags", "Key=tier,Value=private")
	dt := c.ok("a", "ec2", "describe-tags", "--filters", "Name=resource-id,Values="+subID)
	if str(dt, "Tags", 0, "Key") != "tier" || str(dt, "Tags", 0, "ResourceType") != "subnet" {
		t.Fatalf("describe-tags: %v", dt)
	}

	// Errors, run concurrently (each CLI start costs about a second).
	errCases := []struct {
		code, profile string
		args          []string
	}{
		{"InvalidVpc.Range", "a", []string{"ec2", "create-vpc", "--cidr-block", "10.0.0.0/8"}},
		{"InvalidParameterValue", "a", []string{"ec2", "create-vpc", "--cidr-block", "10.0.0.1/16"}},
		{"InvalidSubnet.Range", "a", []string{"ec2", "create-subnet", "--vpc-id", vpcID, "--cidr-block", "192.168.0.0/24"}},
		{"InvalidSubnet.Conflict", "a", []string{"ec2", "create-subnet", "--vpc-id", vpcID, "--cidr-block", "10.0.1.128/25"}},
		{"InvalidGroup.Duplicate", "a", []string{"ec2", "create-security-group", "--group-name", "db", "--description", "x", "--vpc-id", vpcID}},
		{"InvalidPermission.Duplicate", "a", []string{"ec2", "authorize-security-group-ingress", "--group-id", db, "--protocol", "tcp", "--port", "6379", "--source-group", app}},
		{"InvalidPermission.NotFound", "a", []string{"ec2", "revoke-security-group-ingress", "--group-id", db, "--protocol", "tcp", "--port", "1234", "--cidr", "10.0.0.0/8"}},
		{"DependencyViolation", "a", []string{"ec2", "delete-vpc", "--vpc-id", vpcID}},
		{"DependencyViolation", "a", []string{"ec2", "delete-subnet", "--subnet-id", subID}},
		{"DependencyViolation", "a", []string{"ec2", "delete-security-group", "--group-id", db}},
		{"DependencyViolation", "a", []string{"ec2", "delete-security-group", "--group-id", app}},
		{"InvalidVpcID.NotFound", "a", []string{"ec2", "describe-vpcs", "--vpc-ids", "vpc-0123456789abcdef0"}},
		{"InvalidSubnetID.NotFound", "a", []string{"ec2", "create-network-interface", "--subnet-id", "subnet-0123456789abcdef0"}},
		{"InvalidGroup.NotFound", "a", []string{"ec2", "delete-security-group", "--group-id", "sg-0123456789abcdef0"}},
		{"InvalidNetworkInterfaceID.NotFound", "a", []string{"ec2", "delete-network-interface", "--network-interface-id", "eni-0123456789abcdef0"}},
		{"InvalidRouteTableID.NotFound", "a", []string{"ec2", "create-route", "--route-table-id", "rtb-0123456789abcdef0", "--destination-cidr-block", "0.0.0.0/0", "--gateway-id", igw}},
		{"InvalidInternetGatewayID.NotFound", "a", []string{"ec2", "attach-internet-gateway", "--internet-gateway-id", "igw-0123456789abcdef0", "--vpc-id", vpcID}},
		{"NatGatewayNotFound", "a", []string{"ec2", "delete-nat-gateway", "--nat-gateway-id", "nat-0123456789abcdef0"}},
		{"InvalidIPAddress.InUse", "a", []string{"ec2", "create-network-interface", "--subnet-id", subID, "--private-ip-address", "10.0.1.20"}},
		{"MissingParameter", "a", []string{"ec2", "create-vpc"}},
		{"InvalidParameterValue", "a", []string{"ec2", "describe-subnets", "--filters", "Name=no-such-filter,Values=x"}},
		// Account B cannot see, describe, use or delete A's resources.
		{"InvalidVpcID.NotFound", "b", []string{"ec2", "describe-vpcs", "--vpc-ids", vpcID}},
		{"InvalidVpcID.NotFound", "b", []string{"ec2", "delete-vpc", "--vpc-id", vpcID}},
		{"InvalidVpcID.NotFound", "b", []string{"ec2", "create-subnet", "--vpc-id", vpcID, "--cidr-block", "10.0.7.0/24"}},
		{"InvalidSubnetID.NotFound", "b", []string{"ec2", "describe-subnets", "--subnet-ids", subID}},
		{"InvalidGroup.NotFound", "b", []string{"ec2", "describe-security-groups", "--group-ids", db}},
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, ec := range errCases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c.fails(ec.code, ec.profile, ec.args...)
		}()
	}
	wg.Wait()
	bv := c.ok("b", "ec2", "describe-vpcs")
	if l, _ := path(bv, "Vpcs").([]any); len(l) != 0 {
		t.Fatalf("account b lists: %v", bv)
	}
	// A still has its VPC after B's attempts.
	if str(c.ok("a", "ec2", "describe-vpcs", "--vpc-ids", vpcID), "Vpcs", 0, "VpcId") != vpcID {
		t.Fatal("A's VPC vanished")
	}
}

// TestCLIExhaustion fills a /28 through the CLI: 11 interfaces, the 12th
// fails with InsufficientFreeAddressesInSubnet.
func TestCLIExhaustion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := newCLI(t, e)
	vpcID := str(c.ok("a", "ec2", "create-vpc", "--cidr-block", "10.9.0.0/16"), "Vpc", "VpcId")
	sub := c.ok("a", "ec2", "create-subnet", "--vpc-id", vpcID, "--cidr-block", "10.9.0.0/28")
	subID := str(sub, "Subnet", "SubnetId")
	if path(sub, "Subnet", "AvailableIpAddressCount") != float64(11) {
		t.Fatalf("/28: %v", sub)
	}
	var wg sync.WaitGroup
	for range 11 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, stderr, ok := c.run("a", "ec2", "create-network-interface", "--subnet-id", subID); !ok {
				t.Errorf("create-network-interface: %s", stderr)
			}
		}()
	}
	wg.Wait()
	c.fails("InsufficientFreeAddressesInSubnet", "a", "ec2", "create-network-interface", "--subnet-id", subID)
	ds := c.ok("a", "ec2", "describe-subnets", "--subnet-ids", subID)
	if path(ds, "Subnets", 0, "AvailableIpAddressCount") != float64(0) {
		t.Fatalf("describe-subnets: %v", ds)
	}
}

// TestCLIPagination: the AWS CLI follows nextToken (--page-size sets
// MaxResults) and --max-items stops early with a resume token.
func TestCLIPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := newCLI(t, e)
	sdk := e.client(keyA)
	for i := range 6 {
		if _, err := sdk.CreateVpc(context.Background(), &ec2.CreateVpcInput{CidrBlock: aws.String(fmt.Sprintf("10.%d.0.0/16", i))}); err != nil {
			t.Fatal(err)
		}
	}
	all := c.ok("a", "ec2", "describe-vpcs", "--page-size", "5")
	if vpcs, _ := all["Vpcs"].([]any); len(vpcs) != 6 {
		t.Fatalf("describe-vpcs --page-size 5: %d VPCs, want 6: %v", len(vpcs), all)
	}
	some := c.ok("a", "ec2", "describe-vpcs", "--page-size", "5", "--max-items", "3")
	if vpcs, _ := some["Vpcs"].([]any); len(vpcs) != 3 || some["NextToken"] == nil {
		t.Fatalf("describe-vpcs --max-items 3: %v", some)
	}
}
