package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

func operator(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

func repairsOf(t *testing.T, e *env, kind string) float64 {
	t.Helper()
	return metricValue(scrape(t, e), server.MetricKernelRepairs, map[string]string{"kind": kind})
}

func (e *env) vpcProbe(name string, n network) {
	e.createProbe(name, func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/vpc")
		in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}
	})
}

func redisReplies(t *testing.T, e *env, fn, addr string, cmds ...string) string {
	m, _, err := invokeProbe(t, e.lambda, fn, map[string]any{"action": "redis", "addr": addr, "cmds": cmds})
	if err != nil || m == nil {
		return fmt.Sprint(err)
	}
	if r, ok := m["replies"]; ok {
		return fmt.Sprint(r)
	}
	return fmt.Sprint(m)
}

// waitRepairs waits (bounded) until the server counted a repair of kind.
func waitRepairs(t *testing.T, e *env, kind string) {
	t.Helper()
	eventually(t, 30*time.Second, kind+" repair counted", func() bool { return repairsOf(t, e, kind) >= 1 })
}

// TestRepairWhileServing: an operator deletes a VPC's router namespace
// while a VPC function is warm, and the service router's nft table; the
// running server rebuilds both within seconds (no restart): the warm
// function reaches the same redis instance again (its namespace adopted,
// its data intact), non-VPC egress works again, and the repairs are
// counted by kind.
func TestRepairWhileServing(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	c := e.ec2()
	n := makeNetwork(t, c, "10.0.0.0/16", "10.0.1.0/24")
	key := e.srv.Account.Keys[0]
	redis := e.runRedis(t, key.ID, key.Secret, n.subnet, n.sgDB) + ":6379"
	e.vpcProbe("app", n)
	e.waitState(t, e.lambda, "app", types.StateActive)
	eventually(t, 20*time.Second, "redis written", func() bool {
		return redisReplies(t, e, "app", redis, "SET kept yes") == "[+OK]"
	})

	// "ip netns del" only unmounts: the namespace lives on while the server
	// holds it, so the repair is awaited first; it frees the old namespace
	// (and every veth into it) and builds a new one.
	operator(t, "ip", "netns", "del", netdev.VPCNetnsName(e.prefix, n.vpc))
	waitRepairs(t, e, "vpc_netns")
	deadline := time.Now().Add(30 * time.Second)
	for redisReplies(t, e, "app", redis, "GET kept") != "[yes]" {
		if time.Now().After(deadline) {
			dumpKernel(t, e.prefix, netdev.VPCNetnsName(e.prefix, n.vpc))
			t.Fatalf("the warm function does not reach the same redis after the router namespace was rebuilt: %s", redisReplies(t, e, "app", redis, "GET kept"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Non-VPC egress: masquerade lives in the service router's table.
	e.createProbe("plain")
	dial := func() string {
		m, _ := e.invokeJSON("plain", map[string]any{"action": "probe", "addrs": []string{internetTCP}})
		d, _ := m["dials"].(map[string]any)
		return fmt.Sprint(d[internetTCP])
	}
	eventually(t, 20*time.Second, "non-VPC egress before", func() bool { return dial() == "connected" })
	operator(t, "ip", "netns", "exec", e.prefix+"-svc", "nft", "delete", "table", "ip", e.prefix)
	waitRepairs(t, e, "service_nft")
	eventually(t, 30*time.Second, "non-VPC egress after the service router's table was rebuilt", func() bool { return dial() == "connected" })
	// The VPC function still reaches its instance (the rebuilt table lets
	// its traffic through to its VPC again).
	eventually(t, 30*time.Second, "the VPC function after the service table repair", func() bool {
		return redisReplies(t, e, "app", redis, "GET kept") == "[yes]"
	})
}

// TestVPCActiveOnlyWithDatapath: with repairs off (no timer, no watch), a
// function created in a VPC whose router was destroyed (its links deleted,
// its namespace removed) is reported Active only once the datapath exists
// again (creation checks it in the kernel and has it rebuilt), so its first
// invoke reaches the instance.
func TestVPCActiveOnlyWithDatapath(t *testing.T) {
	t.Parallel()
	e := startServer(t, func(c *serverConfig) { c.RepairInterval = -1 })
	c := e.ec2()
	n := makeNetwork(t, c, "10.0.0.0/16", "10.0.1.0/24")
	key := e.srv.Account.Keys[0]
	redis := e.runRedis(t, key.ID, key.Secret, n.subnet, n.sgDB) + ":6379"
	e.vpcProbe("first", n)
	e.waitState(t, e.lambda, "first", types.StateActive)
	eventually(t, 20*time.Second, "redis written", func() bool {
		return redisReplies(t, e, "first", redis, "SET kept yes") == "[+OK]"
	})

	router := netdev.VPCNetnsName(e.prefix, n.vpc)
	out, err := exec.Command("ip", "-n", router, "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@"); len(f) > 1 && name != "lo" {
			operator(t, "ip", "-n", router, "link", "del", name)
		}
	}
	operator(t, "ip", "netns", "del", router)
	e.vpcProbe("second", n) // shares the first one's ENI
	e.waitState(t, e.lambda, "second", types.StateActive)
	if got := redisReplies(t, e, "second", redis, "GET kept"); got != "[yes]" {
		t.Fatalf("first invoke of a function reported Active: %s", got)
	}
	if got := repairsOf(t, e, "vpc_netns"); got < 1 {
		t.Errorf("%s{kind=vpc_netns} = %v, want a repair counted", server.MetricKernelRepairs, got)
	}
}

// TestInstanceSurvivesRestart: an instance ("lambdaplane instance run",
// redis) keeps running across a SIGTERM and a SIGKILL restart of the
// server; after each, a VPC function reaches the same redis, data intact,
// without the instance being restarted.
func TestInstanceSurvivesRestart(t *testing.T) {
	t.Parallel()
	b := startBinServer(t)
	a := b.vpcAppWithRedis(t)
	lc, redis := a.lc, a.redis
	replies := func(cmds ...string) string {
		m, _, err := invokeProbe(t, lc, "app", map[string]any{"action": "redis", "addr": redis, "cmds": cmds})
		if err != nil || m == nil {
			return fmt.Sprint(err)
		}
		return fmt.Sprint(m["replies"])
	}
	eventually(t, 20*time.Second, "redis written before the restarts", func() bool { return replies("SET survived yes") == "[+OK]" })

	// SIGTERM: a clean shutdown leaves the instance's namespace in place.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Wait(); err != nil {
		t.Fatalf("clean shutdown: %v", err)
	}
	ns, _, err := netdev.ListPrefixed(b.prefix)
	if err != nil || len(ns) != 1 || ns[0][len(b.prefix)+1] != 'i' {
		t.Fatalf("after SIGTERM with an instance running, namespaces %v (%v): want only the instance's", ns, err)
	}
	b.restart(t)
	eventually(t, 30*time.Second, "the same redis after a SIGTERM restart", func() bool { return replies("GET survived") == "[yes]" })

	// SIGKILL: nothing is torn down; the restart adopts it all.
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	b.cmd.Wait()
	b.restart(t)
	eventually(t, 30*time.Second, "the same redis after a SIGKILL restart", func() bool { return replies("GET survived") == "[yes]" })
}

// dumpKernel logs the service and VPC routers' state (diagnosis on failure).
func dumpKernel(t *testing.T, prefix string, routers ...string) {
	t.Helper()
	for _, ns := range append([]string{prefix + "-svc"}, routers...) {
		for _, args := range [][]string{{"ip", "-n", ns, "-o", "link"}, {"ip", "-n", ns, "-o", "-4", "addr"}, {"ip", "-n", ns, "rule"},
			{"ip", "-n", ns, "-4", "route", "show", "table", "all"}, {"ip", "netns", "exec", ns, "nft", "list", "ruleset"}} {
			out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
			t.Logf("%v (%v):\n%s", args, err, out)
		}
	}
}
