package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// TestOneServerPerPrefixAndServiceCIDR: a second server with the running
// one's prefix, or with a service CIDR overlapping its, stops before it
// touches the kernel, naming the running server and the flag to change;
// the first keeps serving invokes and loses none of its kernel objects.
func TestOneServerPerPrefixAndServiceCIDR(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	e.createProbe("keep")
	invoke := func(when string) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"name": when})
		out, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("keep"), Payload: b})
		if err != nil {
			t.Fatalf("invoke %s: %v", when, err)
		}
		var m map[string]any
		if json.Unmarshal(out.Payload, &m) != nil || m["hello"] != when || out.FunctionError != nil {
			t.Fatalf("invoke %s: %s", when, out.Payload)
		}
	}
	invoke("before")
	// A VPC, so that the server has a VPC router namespace too.
	v, err := e.ec2().CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	router := netdev.VPCNetnsName(e.prefix, *v.Vpc.VpcId)
	svc := e.prefix + "-svc"
	var nsBefore, cgBefore []string
	eventually(t, 30*time.Second, "the VPC router and full pools", func() bool {
		n, size := e.srv.Router().Pooled()
		in, isize := e.srv.Sandbox().Pooled()
		nsBefore, _, cgBefore = kernelObjects(t, e.prefix)
		return n == size && in == isize && slices.Contains(nsBefore, router) && slices.Contains(nsBefore, svc)
	})
	if len(cgBefore) == 0 {
		t.Fatalf("no cgroup of the warm environment among %v", cgBefore)
	}
	t.Logf("first server: pid %d, prefix %s, service CIDR %v, %d namespaces, %d cgroups", os.Getpid(), e.prefix, e.srv.Cfg.ServiceCIDR, len(nsBefore), len(cgBefore))

	// Inside the first server's service CIDR, and overlapping no other
	// test server's.
	overlap := netip.PrefixFrom(e.srv.Cfg.ServiceCIDR.Addr(), 24)
	wantMsg := func(msg, flag string) {
		t.Helper()
		for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "data dir " + e.data, "pass another " + flag} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q does not say %q", msg, want)
			}
		}
	}
	inProcess := func(prefix string, mut func(*server.Config)) error {
		cfg := server.Config{
			Listen: "127.0.0.1:0", DataDir: t.TempDir(), Prefix: prefix, PoolSize: 2,
			UplinkNetns: internetNS, UplinkNet: uplinkNet(), InitPath: filepath.Join(binDir, "lambdaplane-init"),
			AutoServiceCIDR: true,
		}
		if mut != nil {
			mut(&cfg)
		}
		log := harness.TestLogger(t)
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		s, err := server.Start(sctx, cfg, log)
		if err == nil {
			// Not closed: its Close would remove the first server's objects.
			t.Fatalf("a second server with prefix %s started (service CIDR %v)", prefix, s.Cfg.ServiceCIDR)
		}
		return err
	}
	binary := func(args ...string) string {
		t.Helper()
		bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(bctx, filepath.Join(binDir, "lambdaplane"), append([]string{"serve",
			"--data", t.TempDir(), "--listen", "127.0.0.1:0", "--uplink", "netns:" + internetNS,
			"--uplink-net", uplinkNet().String(), "--pool-size", "1", "--log-level", "warn"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || bctx.Err() != nil {
			t.Fatalf("serve %v: %v (want exit status 1)\n%s", args, err, stderr.String())
		}
		if testing.Verbose() {
			t.Logf("serve %v: %s", args, strings.TrimSpace(stderr.String()))
		}
		return stderr.String()
	}

	err = inProcess(e.prefix, nil)
	var ce *server.ConflictError
	if !errors.As(err, &ce) || ce.Flag != "--prefix" {
		t.Fatalf("same prefix: %v, want a --prefix conflict", err)
	}
	wantMsg(err.Error(), "--prefix")
	invoke("during-1")

	err = inProcess("t"+randHex(4), func(c *server.Config) { c.AutoServiceCIDR, c.ServiceCIDR = false, overlap })
	if !errors.As(err, &ce) || ce.Flag != "--service-cidr" {
		t.Fatalf("overlapping service CIDR: %v, want a --service-cidr conflict", err)
	}
	wantMsg(err.Error(), "--service-cidr")
	invoke("during-2")

	wantMsg(binary("--prefix", e.prefix, "--service-cidr", "auto"), "--prefix")
	invoke("during-3")
	wantMsg(binary("--prefix", "t"+randHex(4), "--service-cidr", overlap.String()), "--service-cidr")
	invoke("after")

	nsAfter, _, cgAfter := kernelObjects(t, e.prefix)
	for _, n := range nsBefore {
		if !slices.Contains(nsAfter, n) {
			t.Errorf("namespace %s of the first server disappeared", n)
		}
	}
	for _, c := range cgBefore {
		if !slices.Contains(cgAfter, c) {
			t.Errorf("cgroup %s of the first server disappeared", c)
		}
	}
}
