package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// TestVPCRestartAfterSIGKILL: kill -9 the server while a VPC function and a
// redis instance run; after a restart the Hyperplane ENI is the same
// interface with the same address, there is still exactly one, and the
// function reaches the same redis (whose instance kept its connectivity).
func TestVPCRestartAfterSIGKILL(t *testing.T) {
	requireRoot(t)
	data := t.TempDir()
	prefix := "r" + randHex(4)
	listen := freePort(t)
	uplink := uplinkNet().String()
	p := startBinary(t, data, prefix, listen, uplink)
	defer func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.cmd.Wait()
		}
		netdev.Cleanup(prefix)
	}()
	ctx := context.Background()
	creds := readCreds(t, filepath.Join(data, "credentials"))
	v, _ := creds.Retrieve(ctx)
	lc := lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.endpoint), Credentials: creds})
	ec := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.endpoint), Credentials: creds})
	ic := iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.endpoint), Credentials: creds})
	role, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("vpc"), AssumeRolePolicyDocument: aws.String(server.LambdaTrustPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("vpc"), PolicyArn: aws.String("arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")}); err != nil {
		t.Fatal(err)
	}
	n := makeNetwork(t, ec, "10.0.0.0/16", "10.0.1.0/24")
	e := &env{t: t, srv: &server.Server{Endpoint: p.endpoint}}
	redis := e.runRedis(t, v.AccessKeyID, v.SecretAccessKey, n.subnet, n.sgDB) + ":6379"
	if _, err := lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("app"), Runtime: "provided.al2023",
		Handler: aws.String("bootstrap"), Role: role.Role.Arn, Code: &types.FunctionCode{ZipFile: probeZip}, Timeout: aws.Int32(10),
		VpcConfig: &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}}); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, lc, "app", types.StateActive)
	eventually(t, 20*time.Second, "redis written before the kill", func() bool {
		m, _, _ := invokeProbe(t, lc, "app", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"SET survived yes"}})
		return m != nil && fmt.Sprint(m["replies"]) == "[+OK]"
	})
	before := e.lambdaENIs(t, ec, n.subnet)
	if len(before) != 1 {
		t.Fatalf("%d lambda ENIs before the kill", len(before))
	}

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	p = startBinary(t, data, prefix, listen, uplink)

	after := e.lambdaENIs(t, ec, n.subnet)
	if len(after) != 1 || *after[0].NetworkInterfaceId != *before[0].NetworkInterfaceId || *after[0].PrivateIpAddress != *before[0].PrivateIpAddress {
		t.Fatalf("after restart the lambda ENIs are %v, want %s (%s) alone", after, *before[0].NetworkInterfaceId, *before[0].PrivateIpAddress)
	}
	eventually(t, 20*time.Second, "the same redis after the restart", func() bool {
		m, _, _ := invokeProbe(t, lc, "app", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"GET survived"}})
		return m != nil && fmt.Sprint(m["replies"]) == "[yes]"
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("clean shutdown: %v", err)
	}
}

// TestVPCNoLeakAfterCycles: create VPC function / invoke / delete, many
// times; afterwards no ENI, address, namespace or cgroup is left over.
func TestVPCNoLeakAfterCycles(t *testing.T) {
	e := startServer(t, func(c *serverConfig) { c.IdleTimeout = 500 * time.Millisecond })
	c := e.ec2()
	n := makeNetwork(t, c, "10.0.0.0/16", "10.0.1.0/24")
	free := e.freeAddresses(t, c, n.subnet)
	ns0, _, _ := kernelObjects(t, e.prefix)
	cycles := 1000
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
