package e2e

import (
	"context"
	"errors"
	"fmt"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdaplane/lambdaplane/internal/server"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// newestBlock is the newest message block file of a stream of a data
// directory's embedded store.
func newestBlock(t *testing.T, dataDir, stream string) string {
	t.Helper()
	dir := filepath.Join(dataDir, "nats", "jetstream", "$G", "streams", stream, "msgs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var idx []int
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".blk"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				idx = append(idx, i)
			}
		}
	}
	if len(idx) == 0 {
		t.Fatalf("no message blocks in %s", dir)
	}
	sort.Ints(idx)
	return filepath.Join(dir, fmt.Sprintf("%d.blk", idx[len(idx)-1]))
}

func listFunctions(t *testing.T, lc *lambda.Client) []string {
	t.Helper()
	var names []string
	p := lambda.NewListFunctionsPaginator(lc, &lambda.ListFunctionsInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range out.Functions {
			names = append(names, aws.ToString(f.FunctionName))
		}
	}
	sort.Strings(names)
	return names
}

// TestDamagedStoreIsRefusedAtStart: the incident of issue 13. With the
// server stopped, the newest block of KV_functions is cut in half: the
// server refuses to start, naming the stream, what was lost and what to
// do; with --accept-data-loss it starts and serves what is left.
func TestDamagedStoreIsRefusedAtStart(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	const n = 40
	for i := 0; i < n; i++ {
		e.createProbe(fmt.Sprintf("fn-%02d", i))
	}
	if got := listFunctions(t, e.lambda); len(got) != n {
		t.Fatalf("%d functions before the damage, want %d", len(got), n)
	}
	cfg := e.srv.Cfg
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	blk := newestBlock(t, cfg.DataDir, "KV_functions")
	fi, err := os.Stat(blk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blk, fi.Size()/2); err != nil {
		t.Fatal(err)
	}

	log := harness.TestLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for attempt := 1; attempt <= 2; attempt++ { // JetStream has repaired the file after the first
		s, err := server.Start(ctx, cfg, log)
		if err == nil {
			s.Close()
			t.Fatalf("start %d: a server started on a damaged store", attempt)
		}
		if !errors.Is(err, store.ErrDataLoss) {
			t.Fatalf("start %d: %v, want a data-loss refusal", attempt, err)
		}
		for _, want := range []string{"KV_functions", "messages", "lost", "sequence", "lambdaplane restore DIR", "--accept-data-loss"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("start %d: the refusal does not say %q:\n%v", attempt, want, err)
			}
		}
		t.Logf("start %d refused:\n%v", attempt, err)
	}

	e2 := startServer(t, func(c *server.Config) { c.DataDir = cfg.DataDir; c.AcceptDataLoss = true })
	left := listFunctions(t, e2.lambda)
	if len(left) == 0 || len(left) >= n {
		t.Fatalf("%d functions served with --accept-data-loss, want some but not all %d", len(left), n)
	}
	if m, _ := e2.invokeJSON(left[0], map[string]any{"name": "still-here"}); m == nil {
		t.Fatalf("invoking %s, which is left: no payload", left[0])
	}
	t.Logf("%d of %d functions left: %v", len(left), n, left)
}

// TestBackupRestoreBringsEverythingBack: `lambdaplane backup` of a running
// server, the data directory wiped, `lambdaplane restore` into it: every
// function is back and invokable (a VPC one too), the VPC, subnet,
// security groups and the Hyperplane ENI (same id and address), the
// stored logs, and the Event invokes that were queued run.
func TestBackupRestoreBringsEverythingBack(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	ec := e.ec2()
	n := makeNetwork(t, ec, "10.0.0.0/16", "10.0.1.0/24")
	acct := e.srv.Account.ID
	e.createProbe("plain")
	e.createProbe("vpcfn", func(in *lambda.CreateFunctionInput) {
		in.Role = aws.String("arn:aws:iam::" + acct + ":role/vpc")
		in.VpcConfig = &types.VpcConfig{SubnetIds: []string{n.subnet}, SecurityGroupIds: []string{n.sgApp}}
	})
	e.waitState(t, e.lambda, "vpcfn", types.StateActive)
	enis := e.lambdaENIs(t, ec, n.subnet)
	if len(enis) != 1 {
		t.Fatalf("%d lambda ENIs before the backup, want 1", len(enis))
	}
	// Held: no concurrency, so its Event invokes stay queued.
	e.createProbe("held")
	if _, err := e.lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("held"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("held"), InvocationType: types.InvocationTypeEvent,
			Payload: []byte(fmt.Sprintf(`{"print":"queued-event-%d"}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	e.invokeJSON("plain", map[string]any{"print": "logged-before-the-backup"})
	if depth, err := e.srv.Scheduler().QueueDepth(ctx); err != nil || depth != 3 {
		t.Fatalf("queue depth %d (%v) before the backup, want 3", depth, err)
	}
	functions := listFunctions(t, e.lambda)

	bdir := filepath.Join(t.TempDir(), "backup")
	out, err := exec.Command(filepath.Join(binDir, "lambdaplane"), "backup", bdir, "--data", e.data).CombinedOutput()
	if err != nil {
		t.Fatalf("lambdaplane backup: %v\n%s", err, out)
	}
	t.Logf("backup:\n%s", out)
	for _, want := range []string{"KV_functions", "OBJ_code", "INVOKE_ASYNC", "LOGS", "backup complete"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the backup's progress does not name %s", want)
		}
	}

	data := e.data
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// A restore refuses a data directory that is not empty.
	if out, err := exec.Command(filepath.Join(binDir, "lambdaplane"), "restore", bdir, "--data", data).CombinedOutput(); err == nil || !strings.Contains(string(out), "not empty") {
		t.Fatalf("restore into the old data directory: %v\n%s", err, out)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(filepath.Join(binDir, "lambdaplane"), "restore", bdir, "--data", data).CombinedOutput()
	if err != nil {
		t.Fatalf("lambdaplane restore: %v\n%s", err, out)
	}
	t.Logf("restore:\n%s", out)

	r := startServer(t, func(c *server.Config) { c.DataDir = data })
	if r.srv.Account.ID != acct {
		t.Fatalf("the restored server's first account is %s, was %s", r.srv.Account.ID, acct)
	}
	if got := listFunctions(t, r.lambda); fmt.Sprint(got) != fmt.Sprint(functions) {
		t.Fatalf("functions after the restore %v, want %v", got, functions)
	}
	for _, fn := range []string{"plain", "vpcfn"} {
		if m, _ := r.invokeJSON(fn, map[string]any{"name": "after-restore"}); m == nil {
			t.Fatalf("invoke %s after the restore: no payload", fn)
		}
	}
	rc := r.ec2()
	if v, err := rc.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{n.vpc}}); err != nil || len(v.Vpcs) != 1 || aws.ToString(v.Vpcs[0].CidrBlock) != "10.0.0.0/16" {
		t.Fatalf("VPC after the restore: %v, %v", v, err)
	}
	if s, err := rc.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{n.subnet}}); err != nil || len(s.Subnets) != 1 || aws.ToString(s.Subnets[0].CidrBlock) != "10.0.1.0/24" {
		t.Fatalf("subnet after the restore: %v, %v", s, err)
	}
	sgs, err := rc.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{n.sgApp, n.sgDB}})
	if err != nil || len(sgs.SecurityGroups) != 2 {
		t.Fatalf("security groups after the restore: %v, %v", sgs, err)
	}
	for _, g := range sgs.SecurityGroups {
		if aws.ToString(g.GroupId) == n.sgDB && (len(g.IpPermissions) != 1 || len(g.IpPermissions[0].UserIdGroupPairs) != 1 || aws.ToString(g.IpPermissions[0].UserIdGroupPairs[0].GroupId) != n.sgApp) {
			t.Errorf("db group's ingress after the restore: %+v", g.IpPermissions)
		}
	}
	after := r.lambdaENIs(t, rc, n.subnet)
	if len(after) != 1 || aws.ToString(after[0].NetworkInterfaceId) != aws.ToString(enis[0].NetworkInterfaceId) || aws.ToString(after[0].PrivateIpAddress) != aws.ToString(enis[0].PrivateIpAddress) {
		t.Fatalf("lambda ENIs after the restore %+v, want %s (%s) alone", after, aws.ToString(enis[0].NetworkInterfaceId), aws.ToString(enis[0].PrivateIpAddress))
	}

	logsOf := func(fn string) string {
		out, _ := exec.Command(filepath.Join(binDir, "lambdaplane"), "logs", fn, "--data", data).Output()
		return string(out)
	}
	if !strings.Contains(logsOf("plain"), "logged-before-the-backup") {
		t.Errorf("the stored logs did not come back")
	}
	if _, err := r.lambda.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("held")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the queued Event invokes ran after the restore", func() bool {
		l := logsOf("held")
		return strings.Contains(l, "queued-event-0") && strings.Contains(l, "queued-event-1") && strings.Contains(l, "queued-event-2")
	})
}
