package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/e2e/cluster/clusterharness"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

func ec2Of(c *clusterharness.Cluster, i int) *ec2.Client { return ec2.NewFromConfig(c.AWSConfig(i)) }

var instanceIPRe = regexp.MustCompile(`ip ([0-9.]+)`)

// runRedis starts redis-server as an instance with `lambdaplane instance
// run` through host via's API (the CLI dials from the driver namespace),
// as a user on that host would; the instance is homed there.
func runRedis(t *testing.T, c *clusterharness.Cluster, via int, subnet, sg string) string {
	t.Helper()
	credFile := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(credFile, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", c.Keys.AccessKeyID, c.Keys.SecretAccessKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+c.DriverNS, filepath.Join(harness.BinDir, "lambdaplane"), "instance", "run",
		"--endpoint-url", c.Hosts[via].API, "--region", "us-east-1", "--subnet-id", subnet, "--security-group-ids", sg, "--",
		"/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no")
	cmd.Env = append(os.Environ(), "AWS_SHARED_CREDENTIALS_FILE="+credFile, "AWS_PROFILE=default")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ipc := make(chan string, 1)
	var logMu sync.Mutex
	var log []string
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			log = append(log, sc.Text())
			logMu.Unlock()
			if m := instanceIPRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ipc <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	select {
	case ip := <-ipc:
		return ip
	case <-time.After(90 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("instance run through h%d did not print its address: %s", via+1, strings.Join(log, "\n"))
	}
	return ""
}

// homedOn returns n function names that rendezvous puts on host id.
func homedOn(c *clusterharness.Cluster, prefix, id string, n int) []string {
	var out []string
	for i := 0; len(out) < n && i < 10000; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if home(c, name, 0, 1, 2) == id {
			out = append(out, name)
		}
	}
	return out
}

func lambdaENIs(t *testing.T, c *clusterharness.Cluster, via int, subnet string) []ec2types.NetworkInterface {
	t.Helper()
	out, err := ec2Of(c, via).DescribeNetworkInterfaces(context.Background(), &ec2.DescribeNetworkInterfacesInput{Filters: []ec2types.Filter{
		{Name: aws.String("interface-type"), Values: []string{"lambda"}}, {Name: aws.String("subnet-id"), Values: []string{subnet}}}})
	if err != nil {
		t.Fatal(err)
	}
	return out.NetworkInterfaces
}

// TestClusterVPC (issue 14, item 6-8): a redis instance homed on h2 is
// reached by VPC functions whose environments run on h1 and h3 (checked
// with X-Lambdaplane-Host) through the one Hyperplane ENI of their key,
// homed on h3 (the host that served the first CreateFunction); an SG the
// instance does not admit still blocks; DescribeNetworkInterfaces shows
// one lambda ENI for the key through every host; 50 cold starts across
// hosts create none; SIGKILL of the ENI's home: VPC invokes through the
// other two succeed again within 10 s and the ENI keeps its id and
// address; the killed host restarts and deletes nothing.
func TestClusterVPC(t *testing.T) {
	harness.RequireRoot(t)
	c := clusterharness.New(t, clusterharness.Options{Args: []string{"--account-concurrency", "200"}})
	ctx := context.Background()
	ic := iam.NewFromConfig(c.AWSConfig(0))
	if _, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("vpc"), AssumeRolePolicyDocument: aws.String(server.LambdaTrustPolicy)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("vpc"), PolicyArn: aws.String("arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")}); err != nil {
		t.Fatal(err)
	}

	// The network, through h1.
	e1 := ec2Of(c, 0)
	v, err := e1.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	vpcID := aws.ToString(v.Vpc.VpcId)
	sn, err := e1.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpcID), CidrBlock: aws.String("10.0.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	subnet := aws.ToString(sn.Subnet.SubnetId)
	sgs := map[string]string{}
	for _, name := range []string{"app", "db", "other"} {
		g, err := e1.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name), VpcId: aws.String(vpcID)})
		if err != nil {
			t.Fatal(err)
		}
		sgs[name] = aws.ToString(g.GroupId)
	}
	if _, err := e1.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sgs["db"]),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(6379), ToPort: aws.Int32(6379),
			UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(sgs["app"])}}}}}); err != nil {
		t.Fatal(err)
	}
	redis := runRedis(t, c, 1, subnet, sgs["db"]) + ":6379"
	t.Logf("redis homed on h2 at %s", redis)

	vpcFn := func(groups ...string) func(*lambda.CreateFunctionInput) {
		return func(in *lambda.CreateFunctionInput) {
			in.Role = aws.String(c.Role("vpc"))
			in.VpcConfig = &types.VpcConfig{SubnetIds: []string{subnet}, SecurityGroupIds: groups}
		}
	}
	waitActive := func(name string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			out, err := c.Lambda(0).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
			if err == nil && out.Configuration.State == types.StateActive {
				return
			}
			if err == nil && out.Configuration.State == types.StateFailed {
				t.Fatalf("%s failed: %s", name, aws.ToString(out.Configuration.StateReason))
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not Active in 90 s (%v)", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The first function of the key is created through h3: its ENI is
	// homed there. Then functions homed on h1 and on h3, created through
	// the other hosts, share it.
	on1, on3 := homedOn(c, "vp", "h1", 2), homedOn(c, "vp", "h3", 2)
	fns := append(append([]string{}, on1...), on3...)
	for i, name := range fns {
		create(t, c, []int{2, 0, 1, 2}[i%4], name, vpcFn(sgs["app"]))
		waitActive(name)
	}
	enis := lambdaENIs(t, c, 0, subnet)
	if len(enis) != 1 {
		t.Fatalf("lambda ENIs of the key: %d, want 1", len(enis))
	}
	eniID, eniIP := aws.ToString(enis[0].NetworkInterfaceId), aws.ToString(enis[0].PrivateIpAddress)
	for i := range c.Hosts {
		if got := lambdaENIs(t, c, i, subnet); len(got) != 1 || aws.ToString(got[0].NetworkInterfaceId) != eniID {
			t.Errorf("DescribeNetworkInterfaces through h%d: %d lambda ENIs", i+1, len(got))
		}
	}
	ping := func(via int, fn string) result {
		return invoke(c, via, fn, map[string]any{"action": "redis", "addr": redis, "cmds": []string{"PING", "CLIENT INFO"}}, "")
	}
	reached := func(r result) bool {
		rep := fmt.Sprint(r.payload["replies"])
		return r.err == nil && strings.HasPrefix(rep, "[+PONG ") && strings.Contains(rep, "addr="+eniIP+":")
	}
	for _, fn := range fns {
		want := home(c, fn, 0, 1, 2)
		for via := range c.Hosts {
			var r result
			deadline := time.Now().Add(20 * time.Second)
			for r = ping(via, fn); !reached(r) && time.Now().Before(deadline); r = ping(via, fn) {
				time.Sleep(200 * time.Millisecond)
			}
			if !reached(r) {
				t.Fatalf("%s through h%d (ran on %s): redis on h2 not reached through the ENI %s: %v %v", fn, via+1, r.host, eniIP, r.err, r.payload)
			}
			if r.host != want {
				t.Errorf("%s through h%d ran on %q, want its home %s", fn, via+1, r.host, want)
			}
		}
	}

	// An SG the instance does not admit still blocks, wherever it runs.
	for _, id := range []string{"h1", "h3"} {
		name := homedOn(c, "out", id, 1)[0]
		create(t, c, 0, name, vpcFn(sgs["other"]))
		waitActive(name)
		if r := ping(1, name); r.err == nil || r.host != id {
			t.Errorf("%s (group other, on %s) reached redis or ran elsewhere: host %q, %v %v", name, id, r.host, r.err, r.payload)
		}
	}
	if got := lambdaENIs(t, c, 1, subnet); len(got) != 2 {
		t.Errorf("two keys: %d lambda ENIs, want 2", len(got))
	}

	// 50 cold starts across hosts create no ENI: concurrent invokes of the
	// four functions (each host's environments beyond the warm ones).
	before := len(lambdaENIs(t, c, 0, subnet))
	var wg sync.WaitGroup
	var mu sync.Mutex
	cold, failed := 0, 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := invoke(c, i%3, fns[i%len(fns)], map[string]any{"action": "sleep", "sleepMs": 1500}, "")
			mu.Lock()
			defer mu.Unlock()
			if r.cold {
				cold++
			}
			if r.err != nil {
				failed++
			}
		}()
	}
	wg.Wait()
	if failed > 0 || cold < 40 {
		t.Errorf("50 concurrent invokes: %d failed, %d cold starts (want >= 40)", failed, cold)
	}
	if after := len(lambdaENIs(t, c, 0, subnet)); after != before {
		t.Errorf("%d cold starts changed the lambda ENIs: %d -> %d", cold, before, after)
	}

	// `cluster status` names the ENI's home through every host: h3.
	for i := range c.Hosts {
		if h := eniHome(t, c, i, eniID); h != c.Hosts[2].ID {
			t.Errorf("cluster status through h%d: ENI %s homed on %q, want %s", i+1, eniID, h, c.Hosts[2].ID)
		}
	}

	// SIGKILL the ENI's home (h3, which served the first create): through
	// the other two, VPC invokes succeed again within 10 s.
	killed := c.Hosts[2]
	killed.Kill()
	t0 := time.Now()
	for _, via := range []int{0, 1} {
		for _, fn := range fns {
			var r result
			for r = ping(via, fn); !reached(r) && time.Since(t0) < 30*time.Second; r = ping(via, fn) {
				time.Sleep(100 * time.Millisecond)
			}
			if !reached(r) {
				t.Fatalf("after SIGKILL of h3: %s through h%d: %v %v", fn, via+1, r.err, r.payload)
			}
		}
		if via == 0 {
			t.Logf("first VPC invokes of every function through h1 succeeded %s after SIGKILL of the ENI's home", time.Since(t0).Round(time.Millisecond))
			if d := time.Since(t0); d > 10*time.Second {
				t.Errorf("VPC invokes came back %s after the kill, want <= 10 s", d.Round(time.Millisecond))
			}
		}
	}
	got := lambdaENIs(t, c, 0, subnet)
	var ids []string
	for _, n := range got {
		ids = append(ids, aws.ToString(n.NetworkInterfaceId)+"="+aws.ToString(n.PrivateIpAddress))
	}
	sort.Strings(ids)
	if !strings.Contains(strings.Join(ids, " "), eniID+"="+eniIP) || len(got) != 2 {
		t.Errorf("after failover the lambda ENIs are %v, want %s=%s kept (and the other key's)", ids, eniID, eniIP)
	}
	harness.Eventually(t, 30*time.Second, "cluster status names a live new home of the ENI", func() bool {
		h := eniHome(t, c, 0, eniID)
		return h != "" && h != killed.ID
	})

	// h3 returns: it deletes nothing of the others'.
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	if err := killed.WaitReady(3 * time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if after := lambdaENIs(t, c, 2, subnet); len(after) != 2 {
		t.Errorf("after h3 returned: %d lambda ENIs, want 2", len(after))
	}
	for _, fn := range fns {
		if r := ping(2, fn); !reached(r) {
			t.Errorf("after h3 returned: %s through h3: %v %v", fn, r.err, r.payload)
		}
	}
}

// eniHome is the home host `cluster status` through host i names for ENI
// id ("" if it lists no such ENI).
func eniHome(t *testing.T, c *clusterharness.Cluster, i int, id string) string {
	t.Helper()
	for _, e := range status(t, c, i).ENIs {
		if e.ID == id {
			return e.Home
		}
	}
	return ""
}
