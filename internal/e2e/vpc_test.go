package e2e

import (
	"bufio"
	"context"
	"fmt"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// ec2For returns an EC2 client for the account's keys.
func (e *env) ec2For(keyID, secret string) *ec2.Client {
	return ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.srv.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, "")})
}

func (e *env) ec2() *ec2.Client {
	k := e.srv.Account.Keys[0]
	return e.ec2For(k.ID, k.Secret)
}

// network is a VPC with one subnet, an app group (for functions) and a db
// group that admits tcp/6379 from members of the app group.
type network struct {
	vpc, subnet, sgApp, sgDB string
}

func makeNetwork(t testing.TB, c *ec2.Client, cidr, subnetCIDR string) network {
	t.Helper()
	ctx := context.Background()
	v, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(cidr)})
	if err != nil {
		t.Fatal(err)
	}
	n := network{vpc: *v.Vpc.VpcId}
	sn, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(n.vpc), CidrBlock: aws.String(subnetCIDR)})
	if err != nil {
		t.Fatal(err)
	}
	n.subnet = *sn.Subnet.SubnetId
	for _, name := range []string{"app", "db"} {
		g, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name), VpcId: aws.String(n.vpc)})
		if err != nil {
			t.Fatal(err)
		}
		if name == "app" {
			n.sgApp = *g.GroupId
		} else {
			n.sgDB = *g.GroupId
		}
	}
	if _, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(n.sgDB),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(6379), ToPort: aws.Int32(6379),
			UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(n.sgApp)}}}}}); err != nil {
		t.Fatal(err)
	}
	return n
}

var instanceIPRe = regexp.MustCompile(`ip ([0-9.]+)`)

// runRedis starts a real redis-server as an instance in the subnet with
// `lambdaplane instance run`, as a user would, and returns its address.
func (e *env) runRedis(t testing.TB, keyID, secret, subnet, sg string) string {
	t.Helper()
	credFile := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(credFile, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", keyID, secret)), 0o600)
	cmd := exec.Command(filepath.Join(binDir, "lambdaplane"), "instance", "run", "--endpoint-url", e.srv.Endpoint, "--region", "us-east-1",
		"--subnet-id", subnet, "--security-group-ids", sg, "--",
		"/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no")
	cmd.Env = append(os.Environ(), "AWS_SHARED_CREDENTIALS_FILE="+credFile, "AWS_PROFILE=default")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ipc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := instanceIPRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ipc <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	select {
	case ip := <-ipc:
		return ip
	case <-time.After(60 * time.Second):
		t.Fatal("instance run did not print its address")
	}
	return ""
}

// waitState polls GetFunction until the function reaches state.
func (e *env) waitState(t testing.TB, lc *lambda.Client, name string, state types.State) *types.FunctionConfiguration {
	t.Helper()
	var cfg *types.FunctionConfiguration
	eventually(t, 60*time.Second, name+" "+string(state), func() bool {
		out, err := lc.GetFunction(context.Background(), &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err != nil {
			return false
		}
		cfg = out.Configuration
		return cfg.State == state
	})
	return cfg
}

func (e *env) lambdaENIs(t testing.TB, c *ec2.Client, subnet string) []ec2types.NetworkInterface {
	t.Helper()
	out, err := c.DescribeNetworkInterfaces(context.Background(), &ec2.DescribeNetworkInterfacesInput{Filters: []ec2types.Filter{
		{Name: aws.String("interface-type"), Values: []string{"lambda"}}, {Name: aws.String("subnet-id"), Values: []string{subnet}}}})
	if err != nil {
		t.Fatal(err)
	}
	return out.NetworkInterfaces
}

func (e *env) freeAddresses(t testing.TB, c *ec2.Client, subnet string) int32 {
	t.Helper()
	out, err := c.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{SubnetIds: []string{subnet}})
	if err != nil || len(out.Subnets) != 1 {
		t.Fatalf("describe subnet: %v", err)
	}
	return *out.Subnets[0].AvailableIpAddressCount
}

func invokeProbe(t testing.TB, lc *lambda.Client, name string, ev map[string]any) (map[string]any, *lambda.InvokeOutput, error) {
	return harness.InvokeProbe(t, lc, name, ev)
}

// TestVPCFunctionReachesRedis is the heart of the 2019 model, end to end
// with /usr/bin/aws: a function in a private subnet reads and writes a real
// redis through its shared ENI; security groups apply; without VpcConfig or
// with the rule revoked it cannot reach it.
func TestVPCFunctionReachesRedis(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	c := e.ec2()
	n := makeNetwork(t, c, "10.0.0.0/16", "10.0.1.0/24")
	key := e.srv.Account.Keys[0]
	redis := e.runRedis(t, key.ID, key.Secret, n.subnet, n.sgDB) + ":6379"
	zipPath := filepath.Join(t.TempDir(), "fn.zip")
	os.WriteFile(zipPath, probeZip, 0o644)
	acct := e.srv.Account.ID

	// A role without the EC2 permissions is refused, as AWS does.
	_, errOut, code := e.cli("lambda", "create-function", "--function-name", "app", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", "arn:aws:iam::"+acct+":role/r", "--zip-file", "fileb://"+zipPath,
		"--vpc-config", "SubnetIds="+n.subnet+",SecurityGroupIds="+n.sgApp)
	if code == 0 || !strings.Contains(errOut, "InvalidParameterValueException") || !strings.Contains(errOut, "CreateNetworkInterface") {
		t.Fatalf("role without VPC permissions: exit %d: %s", code, errOut)
	}
	var created map[string]any
	e.mustCLI(&created, "lambda", "create-function", "--function-name", "app", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", "arn:aws:iam::"+acct+":role/vpc", "--zip-file", "fileb://"+zipPath, "--timeout", "10",
		"--vpc-config", "SubnetIds="+n.subnet+",SecurityGroupIds="+n.sgApp)
	if created["State"] != "Pending" || created["StateReasonCode"] != "Creating" {
		t.Errorf("create-function with VpcConfig answered State %v (%v), want Pending (Creating)", created["State"], created["StateReasonCode"])
	}
	vc, _ := created["VpcConfig"].(map[string]any)
	if vc["VpcId"] != n.vpc {
		t.Errorf("VpcConfig %v", vc)
	}
	e.mustCLI(nil, "lambda", "wait", "function-active-v2", "--function-name", "app")

	var m map[string]any
	eventually(t, 20*time.Second, "redis reachable from the function", func() bool {
		m, _, _ = invokeProbe(t, e.lambda, "app", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"PING", "SET greeting hello", "GET greeting"}})
		return m != nil && fmt.Sprint(m["replies"]) == "[+PONG +OK hello]"
	})
	enis := e.lambdaENIs(t, c, n.subnet)
	if len(enis) != 1 || enis[0].Status != ec2types.NetworkInterfaceStatusInUse || !strings.Contains(aws.ToString(enis[0].Description), "AWS Lambda VPC ENI-app") {
		t.Fatalf("lambda ENIs: %+v", enis)
	}
	// Redis saw the ENI's address: CLIENT LIST names the peer.
	m, _, _ = invokeProbe(t, e.lambda, "app", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"CLIENT INFO"}})
	if !strings.Contains(fmt.Sprint(m["replies"]), "addr="+aws.ToString(enis[0].PrivateIpAddress)+":") {
		t.Errorf("redis does not see the ENI address %s: %v", aws.ToString(enis[0].PrivateIpAddress), m["replies"])
	}

	// Without VpcConfig the same code cannot reach it: dropped by the platform.
	e.createProbe("novpc")
	before, _ := e.srv.Router().EgressBlockedPackets()
	m, _, _ = invokeProbe(t, e.lambda, "novpc", map[string]any{"action": "probe", "addrs": []string{redis}})
	if fmt.Sprint(m["dials"].(map[string]any)[redis]) == "connected" {
		t.Fatal("a function without VpcConfig reached the private redis")
	}
	if after, _ := e.srv.Router().EgressBlockedPackets(); after <= before {
		t.Errorf("the packets to %s were not dropped by the platform's egress block", redis)
	}

	// Revoking the db group's rule cuts the function off.
	if _, err := c.RevokeSecurityGroupIngress(context.Background(), &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(n.sgDB),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(6379), ToPort: aws.Int32(6379),
			UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(n.sgApp)}}}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "revoked rule blocks new connections", func() bool {
		_, out, err := invokeProbe(t, e.lambda, "app", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"PING"}})
		return err == nil && out.FunctionError != nil
	})
	// A function whose group the db does not admit cannot connect either.
	if _, err := c.AuthorizeSecurityGroupIngress(context.Background(), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(n.sgDB),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(6379), ToPort: aws.Int32(6379),
			UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(n.sgApp)}}}}}); err != nil {
		t.Fatal(err)
	}
	g, err := c.CreateSecurityGroup(context.Background(), &ec2.CreateSecurityGroupInput{GroupName: aws.String("other"), Description: aws.String("other"), VpcId: aws.String(n.vpc)})
	if err != nil {
		t.Fatal(err)
	}
	e.createProbe("outsider", func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String("arn:aws:iam::" + acct + ":role/vpc")
		in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{*g.GroupId}}
	})
	e.waitState(t, e.lambda, "outsider", types.StateActive)
	if _, out, err := invokeProbe(t, e.lambda, "outsider", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"PING"}}); err != nil || out.FunctionError == nil {
		t.Fatalf("a function outside sg-app reached redis: %v", err)
	}
	eventually(t, 10*time.Second, "re-authorized rule lets app in again", func() bool {
		m, _, _ := invokeProbe(t, e.lambda, "app", map[string]any{"action": "redis", "addr": redis, "cmds": []string{"GET greeting"}})
		return m != nil && fmt.Sprint(m["replies"]) == "[hello]"
	})
}

// TestENISharing: one ENI per (subnet, SG set) whatever the number of
// functions and environments; the per-env-eni mode consumes one address
// per environment.
// Not parallel: it counts the environments (and addresses) of simultaneous
// invokes, which another test's load would let finish one by one.
func TestENISharing(t *testing.T) {
	for _, mode := range []string{"hyperplane", "per-env-eni"} {
		t.Run(mode, func(t *testing.T) {
			e := startServer(t, func(c *serverConfig) {
				c.VpcMode, c.PoolSize = mode, 16
				// The legacy model's creation rate limit is checked below;
				// here it must not get in the way of counting addresses.
				c.ENICreateRate = 1000
			})
			c := e.ec2()
			n := makeNetwork(t, c, "10.0.0.0/16", "10.0.1.0/24")
			acct := e.srv.Account.ID
			free0 := e.freeAddresses(t, c, n.subnet)
			fns := 20
			if mode != "hyperplane" {
				fns = 1
			}
			for i := 0; i < fns; i++ {
				e.createProbe(fmt.Sprintf("share-%d", i), func(in *lambda.CreateFunctionInput) {
					in.Role = aws.String("arn:aws:iam::" + acct + ":role/vpc")
					in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}
				})
			}
			for i := 0; i < fns; i++ {
				e.waitState(t, e.lambda, fmt.Sprintf("share-%d", i), types.StateActive)
			}
			wantENIs := 1
			if mode != "hyperplane" {
				wantENIs = 0
			}
			if got := len(e.lambdaENIs(t, c, n.subnet)); got != wantENIs {
				t.Fatalf("%d functions with one (subnet, SG set): %d ENIs, want %d", fns, got, wantENIs)
			}
			if mode == "hyperplane" {
				e.createProbe("other-sgs", func(in *lambda.CreateFunctionInput) {
					in.Role = aws.String("arn:aws:iam::" + acct + ":role/vpc")
					in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp, n.sgDB}}
				})
				e.waitState(t, e.lambda, "other-sgs", types.StateActive)
				if got := len(e.lambdaENIs(t, c, n.subnet)); got != 2 {
					t.Fatalf("a second SG set: %d ENIs, want 2", got)
				}
			}
			free1 := e.freeAddresses(t, c, n.subnet)
			// 50 concurrent invokes: 50 environments at once.
			var wg sync.WaitGroup
			errs := make(chan error, 50)
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, out, err := invokeProbe(t, e.lambda, "share-0", map[string]any{"action": "sleep", "sleepMs": 1500})
					if err == nil && out.FunctionError != nil {
						err = fmt.Errorf("function error: %s", out.Payload)
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			free2 := e.freeAddresses(t, c, n.subnet)
			used := free1 - free2
			t.Logf("%s: free addresses %d before functions, %d after creating them, %d with 50 environments", mode, free0, free1, free2)
			if mode == "hyperplane" {
				if used != 0 || len(e.lambdaENIs(t, c, n.subnet)) != 2 {
					t.Fatalf("50 concurrent environments consumed %d addresses (want 0) and left %d ENIs (want 2)", used, len(e.lambdaENIs(t, c, n.subnet)))
				}
			} else if used != 50 {
				t.Fatalf("per-env-eni: 50 concurrent environments consumed %d addresses, want 50", used)
			}
		})
	}
	// With the default creation rate (10/s) a burst of cold starts in the
	// legacy model hits the ENI creation limit, as Lambda did before 2019.
	t.Run("per-env-eni rate limit", func(t *testing.T) {
		e := startServer(t, func(c *serverConfig) { c.VpcMode, c.PoolSize = "per-env-eni", 16 })
		n := makeNetwork(t, e.ec2(), "10.0.0.0/16", "10.0.1.0/24")
		e.createProbe("burst", func(in *lambda.CreateFunctionInput) {
			in.Role = aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/vpc")
			in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}
		})
		e.waitState(t, e.lambda, "burst", types.StateActive)
		var wg sync.WaitGroup
		var mu sync.Mutex
		limited := 0
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := invokeProbe(t, e.lambda, "burst", map[string]any{"action": "sleep", "sleepMs": 1000})
				if apiCode(err) == "ENILimitReachedException" {
					mu.Lock()
					limited++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if limited == 0 {
			t.Fatal("40 simultaneous legacy cold starts never hit the ENI creation rate limit")
		}
		t.Logf("%d of 40 simultaneous legacy cold starts were refused with ENILimitReachedException", limited)
	})
}

// TestVPCStates: a full subnet fails the function with the matching error;
// idle reclaim makes it Inactive and the next invoke restores it.
func TestVPCStates(t *testing.T) {
	t.Parallel()
	// Warm environments are reaped before the function goes idle, as they
	// are on AWS (minutes against weeks): an ENI is deleted after its last
	// environment detaches.
	e := startServer(t, func(c *serverConfig) { c.VpcIdleTimeout = 4 * time.Second; c.IdleTimeout = time.Second })
	c := e.ec2()
	acct := e.srv.Account.ID
	ctx := context.Background()
	full := makeNetwork(t, c, "10.1.0.0/16", "10.1.0.0/28")
	for i := 0; i < 11; i++ {
		if _, err := c.CreateNetworkInterface(ctx, &ec2.CreateNetworkInterfaceInput{SubnetId: aws.String(full.subnet)}); err != nil {
			t.Fatal(err)
		}
	}
	e.createProbe("starved", func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String("arn:aws:iam::" + acct + ":role/vpc")
		in.VpcConfig = &types.VpcConfig{SubnetIds: []string{full.subnet}, SecurityGroupIds: []string{full.sgApp}}
	})
	cfg := e.waitState(t, e.lambda, "starved", types.StateFailed)
	if cfg.StateReasonCode != types.StateReasonCodeSubnetOutOfIPAddresses {
		t.Fatalf("state reason %s: %s", cfg.StateReasonCode, aws.ToString(cfg.StateReason))
	}
	if _, _, err := invokeProbe(t, e.lambda, "starved", map[string]any{}); apiCode(err) != "SubnetIPAddressLimitReachedException" {
		t.Fatalf("invoke of the failed function: %v", err)
	}

	n := makeNetwork(t, c, "10.0.0.0/16", "10.0.1.0/24")
	e.createProbe("sleepy", func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String("arn:aws:iam::" + acct + ":role/vpc")
		in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}
	})
	// An invoke while Pending waits and succeeds.
	if m, _, err := invokeProbe(t, e.lambda, "sleepy", map[string]any{"name": "early"}); err != nil || m["hello"] != "early" {
		t.Fatalf("invoke during setup: %v %v", m, err)
	}
	free := e.freeAddresses(t, c, n.subnet)
	cfg = e.waitState(t, e.lambda, "sleepy", types.StateInactive)
	if cfg.StateReasonCode != types.StateReasonCodeIdle {
		t.Fatalf("inactive reason %s", cfg.StateReasonCode)
	}
	eventually(t, 20*time.Second, "idle ENI deleted and its address returned", func() bool {
		return len(e.lambdaENIs(t, c, n.subnet)) == 0 && e.freeAddresses(t, c, n.subnet) == free+1
	})
	if m, _, err := invokeProbe(t, e.lambda, "sleepy", map[string]any{"name": "back"}); err != nil || m["hello"] != "back" {
		t.Fatalf("invoke of the inactive function: %v %v", m, err)
	}
	if len(e.lambdaENIs(t, c, n.subnet)) != 1 {
		t.Fatal("the ENI was not restored")
	}
	// Deleting the subnet the ENI uses is refused.
	if _, err := c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(n.subnet)}); apiCode(err) != "DependencyViolation" {
		t.Fatalf("delete subnet in use: %v", err)
	}
	// Deleting the last function releases the ENI.
	if _, err := e.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sleepy")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ENI of the deleted function gone", func() bool { return len(e.lambdaENIs(t, c, n.subnet)) == 0 })
}

// TestVPCAccountsIsolated: two accounts with identical 10.0.0.0/16 setups
// (the same ENI and redis addresses) each reach only their own redis.
func TestVPCAccountsIsolated(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	b, err := e.srv.Accounts().Create(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.EnsureExecutionRole(ctx, b.ID, "vpc", true); err != nil {
		t.Fatal(err)
	}
	type tenant struct {
		id, keyID, secret string
		lc                *lambda.Client
		ec                *ec2.Client
		redis             string
	}
	ka := e.srv.Account.Keys[0]
	ts := []*tenant{
		{id: e.srv.Account.ID, keyID: ka.ID, secret: ka.Secret, lc: e.lambda, ec: e.ec2()},
		{id: b.ID, keyID: b.Keys[0].ID, secret: b.Keys[0].Secret, lc: e.lambdaFor(b.Keys[0].ID, b.Keys[0].Secret), ec: e.ec2For(b.Keys[0].ID, b.Keys[0].Secret)},
	}
	for _, tn := range ts {
		n := makeNetwork(t, tn.ec, "10.0.0.0/16", "10.0.1.0/24")
		tn.redis = e.runRedis(t, tn.keyID, tn.secret, n.subnet, n.sgDB) + ":6379"
		if _, err := tn.lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("app"), Runtime: "provided.al2023",
			Handler: aws.String("bootstrap"), Role: aws.String("arn:aws:iam::" + tn.id + ":role/vpc"), Code: &types.FunctionCode{ZipFile: probeZip},
			Timeout: aws.Int32(10), VpcConfig: &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}}); err != nil {
			t.Fatal(err)
		}
		e.waitState(t, tn.lc, "app", types.StateActive)
	}
	if ts[0].redis != ts[1].redis {
		t.Logf("redis addresses differ (%s, %s); isolation still checked", ts[0].redis, ts[1].redis)
	}
	for _, tn := range ts {
		tn := tn
		eventually(t, 20*time.Second, "tenant "+tn.id+" writes its redis", func() bool {
			m, _, _ := invokeProbe(t, tn.lc, "app", map[string]any{"action": "redis", "addr": tn.redis, "cmds": []string{"GET owner", "SET owner " + tn.id}})
			if m == nil || m["replies"] == nil {
				return false
			}
			r := m["replies"].([]any)
			if r[0] != "$-1" && r[0] != tn.id {
				t.Fatalf("tenant %s read another tenant's data: %v", tn.id, r)
			}
			return r[1] == "+OK"
		})
	}
	for _, tn := range ts {
		m, _, err := invokeProbe(t, tn.lc, "app", map[string]any{"action": "redis", "addr": tn.redis, "cmds": []string{"GET owner"}})
		if err != nil || fmt.Sprint(m["replies"]) != "["+tn.id+"]" {
			t.Fatalf("tenant %s reads %v (%v)", tn.id, m["replies"], err)
		}
	}
}
