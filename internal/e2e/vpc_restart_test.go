package e2e

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdaplane/lambdaplane/internal/server"
)

// TestVPCRestartAfterSIGKILL: kill -9 the server while a VPC function and a
// redis instance run; after a restart the Hyperplane ENI is the same
// interface with the same address, there is still exactly one, and the
// function reaches the same redis (whose instance kept its connectivity).
func TestVPCRestartAfterSIGKILL(t *testing.T) {
	t.Parallel()
	b := startBinServer(t)
	a := b.vpcAppWithRedis(t)
	e, lc, ec, n, redis := a.e, a.lc, a.ec, a.net, a.redis
	eventually(t, 20*time.Second, "redis written before the kill", func() bool {
		m, _, _ := invokeProbe(t, lc, "app", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"SET survived yes"}})
		return m != nil && fmt.Sprint(m["replies"]) == "[+OK]"
	})
	before := e.lambdaENIs(t, ec, n.subnet)
	if len(before) != 1 {
		t.Fatalf("%d lambda ENIs before the kill", len(before))
	}

	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	b.cmd.Wait()
	b.restart(t)

	after := e.lambdaENIs(t, ec, n.subnet)
	if len(after) != 1 || *after[0].NetworkInterfaceId != *before[0].NetworkInterfaceId || *after[0].PrivateIpAddress != *before[0].PrivateIpAddress {
		t.Fatalf("after restart the lambda ENIs are %v, want %s (%s) alone", after, *before[0].NetworkInterfaceId, *before[0].PrivateIpAddress)
	}
	eventually(t, 20*time.Second, "the same redis after the restart", func() bool {
		m, _, _ := invokeProbe(t, lc, "app", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"GET survived"}})
		return m != nil && fmt.Sprint(m["replies"]) == "[yes]"
	})
	b.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.cmd.Wait(); err != nil {
		t.Errorf("clean shutdown: %v", err)
	}
}

// TestVPCNoLeakAfterCycles: create VPC function / invoke / delete, many
// times; afterwards no ENI, address, namespace or cgroup is left over.
func TestVPCNoLeakAfterCycles(t *testing.T) {
	t.Parallel()
	e := startServer(t, func(c *serverConfig) { c.IdleTimeout = 500 * time.Millisecond })
	c := e.ec2()
	n := makeNetwork(t, c, "10.0.0.0/16", "10.0.1.0/24")
	free := e.freeAddresses(t, c, n.subnet)
	ns0, _, _ := kernelObjects(t, e.prefix)
	cycles := 150
	if testing.Short() {
		cycles = 100
	}
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < cycles; i++ {
		name := fmt.Sprintf("vcycle-%d", i)
		e.createProbe(name, func(in *lambda.CreateFunctionInput) {
			in.Role = aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/vpc")
			in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}
		})
		if m, _, err := invokeProbe(t, e.lambda, name, map[string]any{"name": "c"}); err != nil || m["hello"] != "c" {
			t.Fatalf("cycle %d: %v %v", i, m, err)
		}
		if _, err := e.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d VPC create/invoke/delete cycles in %v", cycles, time.Since(start).Round(time.Millisecond))
	eventually(t, 60*time.Second, "ENIs released and addresses back", func() bool {
		return len(e.lambdaENIs(t, c, n.subnet)) == 0 && e.freeAddresses(t, c, n.subnet) == free
	})
	eventually(t, 30*time.Second, "environments, namespaces and cgroups back to the start", func() bool {
		ns, _, cg := kernelObjects(t, e.prefix)
		return e.srv.Scheduler().Stats().Environments == 0 && len(cg) == 0 && len(ns) <= len(ns0)+1
	})
	if st := e.srv.Hyperplane().Stats(); fmt.Sprint(st) == "" {
		t.Log("hyperplane stats unavailable")
	} else {
		t.Logf("hyperplane after the cycles: %+v", st)
	}
}

// vpcApp is what vpcAppWithRedis made.
type vpcApp struct {
	e     *env
	lc    *lambda.Client
	ec    *ec2.Client
	net   network
	redis string // host:port
}

// vpcAppWithRedis makes, on a binServer, a role "vpc" that may manage
// network interfaces, a VPC with a subnet, a redis instance in it and an
// Active VPC function "app" whose security group may reach it.
func (b *binServer) vpcAppWithRedis(t *testing.T) vpcApp {
	t.Helper()
	ctx := context.Background()
	v, _ := b.creds.Retrieve(ctx)
	a := vpcApp{lc: b.lambda(), ec: ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(b.endpoint), Credentials: b.creds})}
	ic := iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String(b.endpoint), Credentials: b.creds})
	role, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("vpc"), AssumeRolePolicyDocument: aws.String(server.LambdaTrustPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("vpc"), PolicyArn: aws.String("arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")}); err != nil {
		t.Fatal(err)
	}
	a.net = makeNetwork(t, a.ec, "10.0.0.0/16", "10.0.1.0/24")
	a.e = &env{t: t, srv: &server.Server{Endpoint: b.endpoint}}
	a.redis = a.e.runRedis(t, v.AccessKeyID, v.SecretAccessKey, a.net.subnet, a.net.sgDB) + ":6379"
	if _, err := a.lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("app"), Runtime: "provided.al2023",
		Handler: aws.String("bootstrap"), Role: role.Role.Arn, Code: &types.FunctionCode{ZipFile: probeZip}, Timeout: aws.Int32(10),
		VpcConfig: &types.VpcConfig{SubnetIds: []string{a.net.subnet}, SecurityGroupIds: []string{a.net.sgApp}}}); err != nil {
		t.Fatal(err)
	}
	a.e.waitState(t, a.lc, "app", types.StateActive)
	return a
}
