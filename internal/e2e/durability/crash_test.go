package durability

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/sandbox"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// TestCrashRounds runs the real `lambdaplane serve` as a separate process
// and, round after round on one data directory, lets three clients write
// (functions created, updated in code, configuration and VpcConfig, and
// deleted; VPCs, subnets, security groups and rules created and deleted;
// Event invokes whose function reports a tag to a recorder in the test's
// internet namespace) until it SIGKILLs the server at a random moment,
// sometimes during its start. After every restart on the same data
// directory it checks that
//
//   - every acknowledged write is there, at its revision or a newer one
//     (a write is superseded only by one sent after it was acknowledged;
//     a write without an answer may or may not have happened), and a
//     function's VpcConfig and memory are what the write its Description
//     names asked for; a deleted function or VPC object stays deleted;
//   - every function becomes Active and can be invoked; the Hyperplane
//     ENIs are exactly one per (subnet, group set) a function uses and the
//     subnets' free addresses add up (no share or address leaked);
//   - every acknowledged Event invoke ran at least once and its START, END
//     and REPORT lines are stored;
//   - each VPC has its router namespace, and no router namespace is left
//     for a VPC that does not exist.
//
// At the end everything is deleted, the server is stopped cleanly, and no
// namespace, link, nft table or cgroup with its prefix is left.
//
// LAMBDAPLANE_CRASH_ROUNDS sets the number of rounds (default 6, 3 with
// -short) and LAMBDAPLANE_CRASH_KILL_MS the longest a round runs before its
// kill (default 1500). A round takes about 3 s; for hundreds, raise go
// test's -timeout:
//
//	LAMBDAPLANE_CRASH_ROUNDS=300 go test ./internal/e2e -run TestCrashRounds -timeout 60m -v
func TestCrashRounds(t *testing.T) {
	harness.RequireRoot(t)
	rounds := 6
	if testing.Short() {
		rounds = 3
	}
	if n, err := strconv.Atoi(os.Getenv("LAMBDAPLANE_CRASH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	killMax := 1500
	if n, err := strconv.Atoi(os.Getenv("LAMBDAPLANE_CRASH_KILL_MS")); err == nil && n > 0 {
		killMax = n
	}
	budget := time.Duration(rounds)*2*time.Minute + 5*time.Minute
	deadline := time.Now().Add(budget)

	h := newCrashHarness(t)
	defer h.cleanup()
	h.start(false)
	h.setup()
	h.verify()
	started := time.Now()
	done := 0
	for r := 1; r <= rounds && !t.Failed(); r++ {
		if time.Now().After(deadline) {
			t.Errorf("time budget of %v spent after %d of %d rounds", budget, done, rounds)
			break
		}
		h.round = r
		// The operator's rounds lasted 0-300 ms; longer ones reach
		// further (VPC setups, retries, idle reclaim of environments).
		window := killMax
		if r%2 == 1 {
			window = min(killMax, 300)
		}
		kill := time.Duration(rand.IntN(window)) * time.Millisecond
		early := rand.IntN(5) == 0
		before := h.acked
		h.work(kill)
		h.start(early)
		h.verify()
		done++
		if testing.Verbose() {
			h.mu.Lock()
			live, vpcFns := 0, 0
			for _, f := range h.fns {
				if f.exists && !f.deleted {
					live++
					if f.cfg[len(f.cfg)-1].vpc >= 0 {
						vpcFns++
					}
				}
			}
			t.Logf("round %d: killed after %v (and during the start: %v); %d writes acknowledged; %d functions (%d in the VPC), %d VPCs", r, kill, early, h.acked-before, live, vpcFns, len(h.gateways))
			h.mu.Unlock()
		}
	}
	t.Logf("%d rounds in %v: %d writes acknowledged, %d Event invokes acknowledged and checked; refused: %v", done, time.Since(started).Round(time.Second), h.acked, h.eventsChecked, h.refusals)
	if h.lockRefusals > 0 {
		t.Logf("%d starts were refused because the killed server's prefix was still claimed (started again)", h.lockRefusals)
	}
	if !t.Failed() {
		h.final()
	}
}

// crashHarness is the server process, the clients and the model of what
// was acknowledged.
type crashHarness struct {
	t                     *testing.T
	data, prefix, listen  string
	uplink, metrics, logF string
	proc                  *exec.Cmd
	exited                chan struct{}
	round                 int

	lc, rl *lambda.Client // writes (sent once), reads of the checks (retried)
	ec, re *ec2.Client

	roleArn                               string
	vpc, subnet1, subnet2, sgA, sgB, sgDB string
	cfgs                                  [][2][]string // VpcConfigs: subnets, groups
	freeAtStart                           map[string]int32
	variants                              [][]byte
	shaVariant                            map[string]int
	recorder                              net.Listener
	recorderAddr                          string

	mu            sync.Mutex
	seen          map[string]int // tags the recorder got
	fns           map[string]*fnModel
	tags          map[string]bool // acknowledged Event invokes not yet checked
	vpcs          map[string]*objModel
	subnets       map[string]*objModel
	groups        map[string]*objModel
	rules         map[int32]*objModel // tcp ports on sgDB
	refusals      map[string]int
	lockRefusals  int                 // starts refused by the host lock a killed server's child still held
	gateways      map[string][]string // VPC → its subnets' gateway addresses (at the last check)
	counter       int
	acked         int
	eventsChecked int
}

// write is one write of a register of a function: its configuration (named
// by Description) or its code (one of a few variants).
type write struct {
	token    string // Description, or the code variant's index
	vpc      int    // configuration of a VPC-capable function: index into cfgs, -1 none
	mem      int32
	sent     time.Time
	acked    time.Time // zero: no answer (in flight at the kill, or a server error)
	revision string
}

type fnModel struct {
	name       string
	vpcCapable bool
	exists     bool // created (acknowledged or seen after a restart)
	createSent bool
	deleteSent bool
	deleted    bool // acknowledged, or seen gone after a restart
	cfg, code  []*write
}

// objModel is a VPC, subnet, group or rule.
type objModel struct {
	id, parent string
	exists     bool
	deleteSent bool
	deleted    bool
}

func newCrashHarness(t *testing.T) *crashHarness {
	h := &crashHarness{
		t: t, data: t.TempDir(), prefix: "r" + harness.RandHex(4), listen: harness.FreePort(t), uplink: harness.UplinkNet().String(), metrics: harness.FreePort(t),
		seen: map[string]int{}, fns: map[string]*fnModel{}, tags: map[string]bool{},
		vpcs: map[string]*objModel{}, subnets: map[string]*objModel{}, groups: map[string]*objModel{}, rules: map[int32]*objModel{},
	}
	h.logF = filepath.Join(t.TempDir(), "serve.log")
	ln, err := harness.ListenIn(harness.InternetNS, harness.InternetIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	h.recorder, h.recorderAddr = ln, ln.Addr().String()
	go h.record()
	for i := range 6 {
		z, err := withFile(harness.ProbeZip, "variant.txt", fmt.Sprintf("variant %d\n", i))
		if err != nil {
			t.Fatal(err)
		}
		h.variants = append(h.variants, z)
	}
	h.shaVariant = map[string]int{}
	for i, z := range h.variants {
		s := sha256.Sum256(z)
		h.shaVariant[base64.StdEncoding.EncodeToString(s[:])] = i
	}
	return h
}

// withFile returns zip z with one more file.
func withFile(z []byte, name, content string) ([]byte, error) {
	r, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, f := range r.File {
		if err := w.Copy(f); err != nil {
			return nil, err
		}
	}
	fw, err := w.Create(name)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(fw, content); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// record serves the tag recorder: a line "TAG x" is answered "+OK".
func (h *crashHarness) record() {
	for {
		c, err := h.recorder.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if tag, ok := strings.CutPrefix(strings.TrimSpace(line), "TAG "); err == nil && ok {
				h.mu.Lock()
				h.seen[tag]++
				h.mu.Unlock()
				io.WriteString(c, "+OK\r\n")
			}
		}()
	}
}

func (h *crashHarness) cleanup() {
	if h.t.Failed() {
		if b, err := os.ReadFile(h.logF); err == nil {
			keep := filepath.Join(os.TempDir(), "lambdaplane-crash-"+h.prefix+".log")
			if os.WriteFile(keep, b, 0o644) == nil {
				h.t.Logf("the server's log is kept in %s", keep)
			}
		}
	}
	h.recorder.Close()
	if h.proc != nil && h.proc.ProcessState == nil {
		h.proc.Process.Kill()
		<-h.exited
	}
	netdev.Cleanup(h.prefix)
	sandbox.CleanupPrefix(h.prefix)
}

// logTail returns the end of the server's log (for failure messages).
func (h *crashHarness) logTail() string {
	b, _ := os.ReadFile(h.logF)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

func (h *crashHarness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("round %d: "+format+"\n--- server log (end) ---\n%s", append([]any{h.round}, append(args, h.logTail())...)...)
}

func (h *crashHarness) errorf(format string, args ...any) {
	h.t.Helper()
	h.t.Errorf("round %d: "+format, append([]any{h.round}, args...)...)
}

// start starts the server on the data directory; with killEarly it first
// starts one that it SIGKILLs at a random moment of its start.
func (h *crashHarness) start(killEarly bool) {
	h.t.Helper()
	if killEarly {
		h.spawn()
		select {
		case <-time.After(time.Duration(rand.IntN(1500)) * time.Millisecond):
		case <-h.exited:
		}
		h.kill()
	}
	h.spawn()
	deadline := time.Now().Add(90 * time.Second)
	for refused := 0; ; {
		select {
		case <-h.exited:
			// The host lock may still be held for a moment by a child of
			// the killed server (forked, not yet exec'd): a supervisor
			// would start it again, so does this, a bounded number of times.
			tail := h.logTail()
			if i := strings.LastIndex(tail, "=== round"); i >= 0 && refused < 20 &&
				strings.Contains(tail[i:], "another lambdaplane server is running") {
				refused++
				h.mu.Lock()
				h.lockRefusals++
				h.mu.Unlock()
				time.Sleep(250 * time.Millisecond)
				h.spawn()
				continue
			}
			h.fatalf("server exited while starting: %v", h.proc.ProcessState)
		default:
		}
		if healthy(h.listen) {
			break
		}
		if time.Now().After(deadline) {
			// Its goroutines go to the log (kept for the failure).
			h.proc.Process.Signal(syscall.SIGQUIT)
			select {
			case <-h.exited:
			case <-time.After(10 * time.Second):
			}
			h.fatalf("server not healthy after 90s (goroutine dump in its log)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	creds := harness.ReadCreds(h.t, filepath.Join(h.data, "credentials"))
	// Connections of this server process only; writers send each request
	// once (an answer is an acknowledgement, no answer leaves it unknown),
	// the checks' reads may be retried.
	tr := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	reads := func() aws.Retryer { return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 4 }) }
	ep := aws.String("http://" + h.listen)
	h.lc = lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds, Retryer: aws.NopRetryer{}, HTTPClient: hc})
	h.ec = ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds, Retryer: aws.NopRetryer{}, HTTPClient: hc})
	h.rl = lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds, Retryer: reads(), HTTPClient: hc})
	h.re = ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds, Retryer: reads(), HTTPClient: hc})
}

func (h *crashHarness) spawn() {
	h.t.Helper()
	logf, err := os.OpenFile(h.logF, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== round %d: start %s ===\n", h.round, time.Now().Format(time.StampMilli))
	cmd := exec.Command(filepath.Join(harness.BinDir, "lambdaplane"), "serve", "--data", h.data, "--prefix", h.prefix, "--listen", h.listen,
		"--uplink", "netns:"+harness.InternetNS, "--uplink-net", h.uplink, "--service-cidr", "auto", "--pool-size", "2",
		"--async-redelivery", "2s", "--async-retry-backoff", "200ms,400ms", "--log-level", "info", "--metrics-listen", h.metrics, "--url-listen", "off")
	cmd.Stdout, cmd.Stderr = logf, logf // files: Wait does not wait for children holding them
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.proc = cmd
	exited := make(chan struct{})
	h.exited = exited
	go func() { cmd.Wait(); close(exited) }()
}

func (h *crashHarness) kill() {
	if h.proc.ProcessState == nil {
		h.proc.Process.Kill()
	}
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		h.fatalf("the killed server did not exit")
	}
	if f, err := os.OpenFile(h.logF, os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "=== round %d: SIGKILL %s ===\n", h.round, time.Now().Format(time.StampMilli))
		f.Close()
	}
}

func healthy(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET /_lambdaplane/health HTTP/1.0\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.Contains(line, " 200")
}

// outcome of a request: acknowledged, refused (a 4xx: nothing happened),
// or unknown (no answer, or a server error: it may have happened).
type outcome int

const (
	acked outcome = iota
	refused
	unknown
)

func outcomeOf(err error) outcome {
	if err == nil {
		return acked
	}
	var st interface{ HTTPStatusCode() int }
	if errors.As(err, &st) && st.HTTPStatusCode() >= 400 && st.HTTPStatusCode() < 500 {
		return refused
	}
	return unknown
}

func (h *crashHarness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 20*time.Second)
}

// setup: an execution role, the base VPC (two subnets, three groups), the
// Event function.
func (h *crashHarness) setup() {
	t := h.t
	ctx, cancel := h.ctx()
	defer cancel()
	creds := harness.ReadCreds(t, filepath.Join(h.data, "credentials"))
	ic := iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + h.listen), Credentials: creds})
	role, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("vpc"), AssumeRolePolicyDocument: aws.String(server.LambdaTrustPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	h.roleArn = *role.Role.Arn
	if _, err := ic.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("vpc"), PolicyArn: aws.String("arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")}); err != nil {
		t.Fatal(err)
	}
	v, err := h.ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	h.vpc = *v.Vpc.VpcId
	h.vpcs[h.vpc] = &objModel{id: h.vpc, exists: true}
	for i, cidr := range []string{"10.0.1.0/24", "10.0.2.0/24"} {
		s, err := h.ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(h.vpc), CidrBlock: aws.String(cidr)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			h.subnet1 = *s.Subnet.SubnetId
		} else {
			h.subnet2 = *s.Subnet.SubnetId
		}
	}
	for _, name := range []string{"a", "b", "db"} {
		g, err := h.ec.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name), VpcId: aws.String(h.vpc)})
		if err != nil {
			t.Fatal(err)
		}
		switch name {
		case "a":
			h.sgA = *g.GroupId
		case "b":
			h.sgB = *g.GroupId
		default:
			h.sgDB = *g.GroupId
		}
	}
	h.cfgs = [][2][]string{{{h.subnet1}, {h.sgA}}, {{h.subnet2}, {h.sgA}}, {{h.subnet1, h.subnet2}, {h.sgB}}}
	h.freeAtStart = map[string]int32{}
	out, err := h.ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{h.subnet1, h.subnet2}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range out.Subnets {
		h.freeAtStart[*s.SubnetId] = *s.AvailableIpAddressCount
	}
	if _, err := h.lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("ev"), Runtime: "provided.al2023",
		Handler: aws.String("bootstrap"), Role: aws.String(h.role()), Code: &types.FunctionCode{ZipFile: harness.ProbeZip}, Timeout: aws.Int32(10)}); err != nil {
		t.Fatal(err)
	}
}

func (h *crashHarness) role() string { return h.roleArn }

// --- the work of a round ---

// work runs three writers until the server is SIGKILLed after killAfter.
func (h *crashHarness) work(killAfter time.Duration) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				h.op(w)
			}
		}()
	}
	time.Sleep(killAfter)
	h.kill()
	close(stop)
	wg.Wait()
}

func (h *crashHarness) next() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counter++
	return h.counter
}

// pickFn returns a random function that exists and is not being deleted.
func (h *crashHarness) pickFn() *fnModel {
	h.mu.Lock()
	defer h.mu.Unlock()
	var live []*fnModel
	for _, f := range h.fns {
		if f.exists && !f.deleteSent && !f.deleted {
			live = append(live, f)
		}
	}
	if len(live) == 0 {
		return nil
	}
	sort.Slice(live, func(i, j int) bool { return live[i].name < live[j].name })
	return live[rand.IntN(len(live))]
}

func (h *crashHarness) liveFns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, f := range h.fns {
		if !f.deleted && (f.exists || f.createSent) {
			n++
		}
	}
	return n
}

func (h *crashHarness) vpcInput(i int) *types.VpcConfig {
	if i < 0 {
		return &types.VpcConfig{SubnetIds: []string{}, SecurityGroupIds: []string{}}
	}
	return &types.VpcConfig{SubnetIds: h.cfgs[i][0], SecurityGroupIds: h.cfgs[i][1]}
}

func (h *crashHarness) op(worker int) {
	n := rand.IntN(100)
	switch {
	case n < 10 && h.liveFns() < 10:
		h.createFn()
	case n < 45:
		h.updateConfig()
	case n < 55:
		h.updateCode()
	case n < 62 && h.liveFns() > 4:
		h.deleteFn()
	case n < 85:
		h.eventInvoke()
	case n < 90:
		h.scratchCreate()
	case n < 93:
		h.scratchDelete()
	default:
		h.ruleOp()
	}
}

func (h *crashHarness) note(o outcome) {
	if o == acked {
		h.mu.Lock()
		h.acked++
		h.mu.Unlock()
	}
}

// refusal logs the first refusals of each operation (a workload that is
// always refused tests nothing). h.mu is held.
func (h *crashHarness) refusal(op string, err error) {
	if h.refusals == nil {
		h.refusals = map[string]int{}
	}
	h.refusals[op]++
	if h.refusals[op] <= 2 {
		h.t.Logf("round %d: %s refused: %v", h.round, op, err)
	}
}

func (h *crashHarness) createFn() {
	i := h.next()
	f := &fnModel{name: fmt.Sprintf("c%d", i), vpcCapable: rand.IntN(2) == 0, createSent: true}
	cfg := &write{token: fmt.Sprintf("d%d", i), vpc: -1, mem: 128, sent: time.Now()}
	code := &write{token: strconv.Itoa(rand.IntN(len(h.variants))), sent: cfg.sent}
	in := &lambda.CreateFunctionInput{FunctionName: aws.String(f.name), Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
		Role: aws.String(h.role()), Code: &types.FunctionCode{ZipFile: h.variants[atoi(code.token)]}, Timeout: aws.Int32(10),
		Description: aws.String(cfg.token), MemorySize: aws.Int32(cfg.mem)}
	if f.vpcCapable {
		cfg.vpc = rand.IntN(len(h.cfgs)+1) - 1
		if cfg.vpc >= 0 {
			in.VpcConfig = h.vpcInput(cfg.vpc)
		}
	}
	f.cfg, f.code = []*write{cfg}, []*write{code}
	h.mu.Lock()
	h.fns[f.name] = f
	h.mu.Unlock()
	ctx, cancel := h.ctx()
	out, err := h.lc.CreateFunction(ctx, in)
	cancel()
	o := h.answer(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch o {
	case acked:
		f.exists = true
		cfg.acked, code.acked = time.Now(), time.Now()
		cfg.revision, code.revision = *out.RevisionId, *out.RevisionId
	case refused:
		f.createSent, f.deleted = false, true
		h.refusal("CreateFunction", err)
	default:
		h.refusal("CreateFunction (no answer)", err)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func (h *crashHarness) updateConfig() {
	f := h.pickFn()
	if f == nil {
		return
	}
	w := &write{token: fmt.Sprintf("d%d", h.next()), vpc: -1, mem: int32(128 * (1 + rand.IntN(2))), sent: time.Now()}
	in := &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(f.name), Description: aws.String(w.token), MemorySize: aws.Int32(w.mem)}
	if f.vpcCapable {
		w.vpc = rand.IntN(len(h.cfgs)+1) - 1
		in.VpcConfig = h.vpcInput(w.vpc)
	} else {
		h.mu.Lock()
		w.vpc = f.cfg[len(f.cfg)-1].vpc
		h.mu.Unlock()
	}
	h.mu.Lock()
	f.cfg = append(f.cfg, w)
	h.mu.Unlock()
	ctx, cancel := h.ctx()
	out, err := h.lc.UpdateFunctionConfiguration(ctx, in)
	cancel()
	o := h.answer(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch o {
	case acked:
		w.acked, w.revision = time.Now(), *out.RevisionId
		// The answer already says what the write did.
		if *out.Description != w.token || *out.MemorySize != w.mem || !h.sameVpc(out.VpcConfig, w.vpc) {
			h.errorf("%s: UpdateFunctionConfiguration acknowledged %s (memory %d, VpcConfig %v) but answered %s (memory %d, VpcConfig %+v)",
				f.name, w.token, w.mem, h.cfgName(w.vpc), *out.Description, *out.MemorySize, out.VpcConfig)
		}
	case refused:
		f.cfg = slices.DeleteFunc(f.cfg, func(x *write) bool { return x == w })
		h.refusal("UpdateFunctionConfiguration", err)
	}
}

func (h *crashHarness) updateCode() {
	f := h.pickFn()
	if f == nil {
		return
	}
	w := &write{token: strconv.Itoa(rand.IntN(len(h.variants))), sent: time.Now()}
	h.mu.Lock()
	f.code = append(f.code, w)
	h.mu.Unlock()
	ctx, cancel := h.ctx()
	out, err := h.lc.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(f.name), ZipFile: h.variants[atoi(w.token)]})
	cancel()
	o := h.answer(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch o {
	case acked:
		w.acked, w.revision = time.Now(), *out.RevisionId
	case refused:
		f.code = slices.DeleteFunc(f.code, func(x *write) bool { return x == w })
		h.refusal("UpdateFunctionCode", err)
	}
}

func (h *crashHarness) deleteFn() {
	f := h.pickFn()
	if f == nil {
		return
	}
	h.mu.Lock()
	if f.deleteSent {
		h.mu.Unlock()
		return
	}
	f.deleteSent = true
	h.mu.Unlock()
	ctx, cancel := h.ctx()
	_, err := h.lc.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(f.name)})
	cancel()
	h.settleDelete(err, &f.deleted, &f.deleteSent)
}

// answer classifies a call's answer and counts it.
func (h *crashHarness) answer(err error) outcome {
	o := outcomeOf(err)
	h.note(o)
	return o
}

// settleDelete records a delete's answer: acknowledged, the object is
// gone (deleted); refused, it may be deleted again (sent cleared); no
// answer, the restart tells.
func (h *crashHarness) settleDelete(err error, deleted, sent *bool) outcome {
	o := h.answer(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch o {
	case acked:
		*deleted = true
	case refused:
		*sent = false
	}
	return o
}

func (h *crashHarness) eventInvoke() {
	tag := fmt.Sprintf("t%d-%d", h.round, h.next())
	payload, _ := json.Marshal(map[string]any{"action": "redis", "addr": h.recorderAddr, "cmds": []string{"TAG " + tag}, "print": "crash-tag " + tag})
	ctx, cancel := h.ctx()
	out, err := h.lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("ev"), InvocationType: types.InvocationTypeEvent, Payload: payload})
	cancel()
	o := h.answer(err)
	if o == acked {
		if out.StatusCode != 202 {
			h.errorf("Event invoke answered %d", out.StatusCode)
		}
		h.mu.Lock()
		h.tags[tag] = true
		h.mu.Unlock()
	}
}

// scratchCreate adds a VPC with a subnet and a group admitting a port.
func (h *crashHarness) scratchCreate() {
	h.mu.Lock()
	live := 0
	for _, v := range h.vpcs {
		if !v.deleted {
			live++
		}
	}
	h.mu.Unlock()
	if live > 3 {
		return
	}
	ctx, cancel := h.ctx()
	defer cancel()
	i := h.next()
	v, err := h.ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(fmt.Sprintf("10.%d.0.0/16", 100+i%100))})
	if o := outcomeOf(err); o != acked {
		return // one without an answer is found after the restart
	}
	h.note(acked)
	vid := *v.Vpc.VpcId
	h.mu.Lock()
	h.vpcs[vid] = &objModel{id: vid, exists: true}
	h.mu.Unlock()
	s, err := h.ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vid), CidrBlock: aws.String(fmt.Sprintf("10.%d.1.0/24", 100+i%100))})
	if outcomeOf(err) != acked {
		return
	}
	h.note(acked)
	h.mu.Lock()
	h.subnets[*s.Subnet.SubnetId] = &objModel{id: *s.Subnet.SubnetId, parent: vid, exists: true}
	h.mu.Unlock()
	g, err := h.ec.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(fmt.Sprintf("g%d", i)), Description: aws.String("scratch"), VpcId: aws.String(vid)})
	if outcomeOf(err) != acked {
		return
	}
	h.note(acked)
	h.mu.Lock()
	h.groups[*g.GroupId] = &objModel{id: *g.GroupId, parent: vid, exists: true}
	h.mu.Unlock()
}

// scratchDelete deletes a scratch VPC with its groups and subnets.
func (h *crashHarness) scratchDelete() {
	h.mu.Lock()
	var v *objModel
	for _, x := range h.vpcs {
		if x.id != h.vpc && x.exists && !x.deleteSent && !x.deleted {
			v = x
			break
		}
	}
	var children []*objModel
	if v != nil {
		v.deleteSent = true
		for _, m := range []map[string]*objModel{h.groups, h.subnets} {
			for _, c := range m {
				if c.parent == v.id && !c.deleted {
					c.deleteSent = true
					children = append(children, c)
				}
			}
		}
	}
	h.mu.Unlock()
	if v == nil {
		return
	}
	ctx, cancel := h.ctx()
	defer cancel()
	for _, c := range children {
		var err error
		if strings.HasPrefix(c.id, "sg-") {
			_, err = h.ec.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(c.id)})
		} else {
			_, err = h.ec.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(c.id)})
		}
		if o := h.settleDelete(err, &c.deleted, &c.deleteSent); o != acked {
			h.mu.Lock()
			v.deleteSent = false
			h.mu.Unlock()
			return
		}
	}
	_, err := h.ec.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: aws.String(v.id)})
	h.settleDelete(err, &v.deleted, &v.deleteSent)
}

// ruleOp authorizes a new port on sgDB or revokes one.
func (h *crashHarness) ruleOp() {
	h.mu.Lock()
	var revoke *objModel
	var port int32
	for p, r := range h.rules {
		if r.exists && !r.deleteSent && !r.deleted && rand.IntN(3) == 0 {
			revoke, port = r, p
			revoke.deleteSent = true
			break
		}
	}
	h.mu.Unlock()
	ctx, cancel := h.ctx()
	defer cancel()
	if revoke == nil {
		port = int32(1000 + h.next())
		r := &objModel{id: strconv.Itoa(int(port))}
		h.mu.Lock()
		h.rules[port] = r
		h.mu.Unlock()
		_, err := h.ec.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(h.sgDB), IpPermissions: tcpFrom(port, h.sgA)})
		o := h.answer(err)
		h.mu.Lock()
		defer h.mu.Unlock()
		switch o {
		case acked:
			r.exists = true
		case refused:
			delete(h.rules, port)
		default:
			r.deleteSent = true // unknown: observed after the restart
		}
		return
	}
	_, err := h.ec.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(h.sgDB), IpPermissions: tcpFrom(port, h.sgA)})
	h.settleDelete(err, &revoke.deleted, &revoke.deleteSent)
}

func tcpFrom(port int32, group string) []ec2types.IpPermission {
	return []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(port), ToPort: aws.Int32(port),
		UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(group)}}}}
}

func (h *crashHarness) sameVpc(got *types.VpcConfigResponse, want int) bool {
	if want < 0 {
		return got == nil || len(got.SubnetIds) == 0
	}
	if got == nil {
		return false
	}
	a, b := slices.Sorted(slices.Values(got.SubnetIds)), slices.Sorted(slices.Values(h.cfgs[want][0]))
	c, d := slices.Sorted(slices.Values(got.SecurityGroupIds)), slices.Sorted(slices.Values(h.cfgs[want][1]))
	return slices.Equal(a, b) && slices.Equal(c, d)
}

func (h *crashHarness) cfgName(i int) string {
	if i < 0 {
		return "none"
	}
	return fmt.Sprint(h.cfgs[i])
}

// --- checks after a restart ---

// allowed: w may be the register's value: no acknowledged write of it was
// sent after w was acknowledged.
func allowed(ws []*write, w *write) bool {
	if w.acked.IsZero() {
		return true
	}
	for _, x := range ws {
		if x != w && !x.acked.IsZero() && x.sent.After(w.acked) {
			return false
		}
	}
	return true
}

func (h *crashHarness) verify() {
	h.t.Helper()
	h.verifyFunctions()
	h.verifyEC2()
	h.verifyEvents()
	h.verifyENIs()
	h.verifyKernel()
}

func (h *crashHarness) verifyFunctions() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	listed := map[string]bool{}
	var marker *string
	for range 100 {
		out, err := h.rl.ListFunctions(ctx, &lambda.ListFunctionsInput{Marker: marker})
		if err != nil {
			h.fatalf("ListFunctions: %v", err)
		}
		for _, f := range out.Functions {
			listed[*f.FunctionName] = true
		}
		if marker = out.NextMarker; marker == nil {
			break
		}
	}
	h.mu.Lock()
	fns := make([]*fnModel, 0, len(h.fns))
	for _, f := range h.fns {
		fns = append(fns, f)
	}
	h.mu.Unlock()
	h.mu.Lock()
	for name := range listed {
		if name != "ev" && h.fns[name] == nil {
			h.errorf("function %s exists but was never created", name)
		}
	}
	h.mu.Unlock()
	for _, f := range fns {
		if f.deleted {
			if listed[f.name] {
				h.errorf("%s: deleted (acknowledged, or gone at an earlier check) or refused, yet listed", f.name)
			}
			continue
		}
		if !listed[f.name] {
			if f.exists && !f.deleteSent {
				h.errorf("%s: created (acknowledged) but gone after the restart", f.name)
			}
			f.deleted, f.exists = true, false
			continue
		}
		// Listed: a create without an answer happened; a delete without
		// one did not.
		f.exists, f.deleteSent = true, false
		h.checkFunction(ctx, f)
	}
	// Every function becomes Active (an interrupted VPC setup resumes).
	deadline := time.Now().Add(90 * time.Second)
	for _, f := range fns {
		if !f.exists || f.deleted {
			continue
		}
		for {
			out, err := h.rl.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(f.name)})
			if err != nil {
				h.fatalf("%s: %v", f.name, err)
			}
			if out.State == types.StateActive && out.LastUpdateStatus == types.LastUpdateStatusSuccessful {
				break
			}
			if out.State == types.StateFailed || out.LastUpdateStatus == types.LastUpdateStatusFailed {
				h.errorf("%s: %s/%s: %s %s", f.name, out.State, out.LastUpdateStatus, aws.ToString(out.StateReason), aws.ToString(out.LastUpdateStatusReason))
				break
			}
			if time.Now().After(deadline) {
				h.fatalf("%s still %s/%s (%s) 90s after the restart", f.name, out.State, out.LastUpdateStatus, out.StateReasonCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// One function runs (a VPC one attaches to its ENI).
	if f := h.pickFn(); f != nil {
		m, out, err := harness.InvokeProbe(h.t, h.lc, f.name, map[string]any{"name": "after-" + strconv.Itoa(h.round)})
		if err != nil || out.FunctionError != nil || m["hello"] != "after-"+strconv.Itoa(h.round) {
			h.errorf("%s: invoke after the restart: %v %v %s", f.name, err, m, payloadOf(out))
		}
	}
}

func payloadOf(out *lambda.InvokeOutput) string {
	if out == nil {
		return ""
	}
	return string(out.Payload)
}

// checkFunction compares one function with the writes made to it, then
// collapses its history into what it is now.
func (h *crashHarness) checkFunction(ctx context.Context, f *fnModel) {
	h.t.Helper()
	out, err := h.rl.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(f.name)})
	if err != nil {
		h.errorf("%s: %v", f.name, err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var cfgW *write
	for _, w := range f.cfg {
		if w.token == aws.ToString(out.Description) {
			cfgW = w
		}
	}
	switch {
	case cfgW == nil:
		h.errorf("%s: Description %q is no write's", f.name, aws.ToString(out.Description))
		return
	case !allowed(f.cfg, cfgW):
		h.errorf("%s: configuration %s (acknowledged %s) is back, but a later write was acknowledged: %s", f.name, cfgW.token, cfgW.acked.Format(time.StampMilli), describeWrites(f.cfg))
	case *out.MemorySize != cfgW.mem || !h.sameVpc(out.VpcConfig, cfgW.vpc):
		h.errorf("%s: configuration %s asked for memory %d and VpcConfig %s; the function has memory %d and VpcConfig %+v", f.name, cfgW.token, cfgW.mem, h.cfgName(cfgW.vpc), *out.MemorySize, out.VpcConfig)
	}
	v, ok := h.shaVariant[aws.ToString(out.CodeSha256)]
	var codeWs []*write
	for _, w := range f.code {
		if ok && w.token == strconv.Itoa(v) && allowed(f.code, w) {
			codeWs = append(codeWs, w)
		}
	}
	if len(codeWs) == 0 {
		h.errorf("%s: code %s (variant %d, %v) is no write that may be the newest: %s", f.name, aws.ToString(out.CodeSha256), v, ok, describeWrites(f.code))
	}
	// The revision: an acknowledged write's only if that write is the
	// newest of its register; otherwise a write without an answer's.
	rev := aws.ToString(out.RevisionId)
	cands := append([]*write{cfgW}, codeWs...)
	known := false
	for _, w := range append(slices.Clone(f.cfg), f.code...) {
		if w.revision == rev && rev != "" {
			known = true
			if !slices.Contains(cands, w) {
				h.errorf("%s: RevisionId %s is that of write %s, which is not the newest", f.name, rev, w.token)
			}
		}
	}
	if !known && !slices.ContainsFunc(cands, func(w *write) bool { return w.acked.IsZero() }) {
		h.errorf("%s: RevisionId %s is no acknowledged write's, and no write without an answer explains it (config %s, code %s)", f.name, rev, describeWrites(f.cfg), describeWrites(f.code))
	}
	now := time.Now()
	f.cfg = []*write{{token: cfgW.token, vpc: cfgW.vpc, mem: cfgW.mem, sent: now, acked: now, revision: rev}}
	f.code = []*write{{token: strconv.Itoa(v), sent: now, acked: now, revision: rev}}
}

func describeWrites(ws []*write) string {
	var b strings.Builder
	for _, w := range ws {
		a := "no answer"
		if !w.acked.IsZero() {
			a = "acked " + w.acked.Format("15:04:05.000")
		}
		fmt.Fprintf(&b, "[%s sent %s %s rev %s] ", w.token, w.sent.Format("15:04:05.000"), a, w.revision)
	}
	return b.String()
}

func (h *crashHarness) verifyEC2() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vs, err := h.re.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil {
		h.fatalf("DescribeVpcs: %v", err)
	}
	ss, err := h.re.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil {
		h.fatalf("DescribeSubnets: %v", err)
	}
	gs, err := h.re.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		h.fatalf("DescribeSecurityGroups: %v", err)
	}
	have := map[string]string{} // id → parent VPC
	for _, v := range vs.Vpcs {
		have[*v.VpcId] = ""
	}
	gateways := map[string][]string{}
	for _, s := range ss.Subnets {
		have[*s.SubnetId] = *s.VpcId
		if p, err := netip.ParsePrefix(aws.ToString(s.CidrBlock)); err == nil {
			gateways[*s.VpcId] = append(gateways[*s.VpcId], p.Masked().Addr().Next().String())
		}
	}
	var dbRules []ec2types.IpPermission
	for _, g := range gs.SecurityGroups {
		if *g.GroupName == "default" {
			continue
		}
		have[*g.GroupId] = *g.VpcId
		if *g.GroupId == h.sgDB {
			dbRules = g.IpPermissions
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gateways = gateways
	base := map[string]bool{h.vpc: true, h.subnet1: true, h.subnet2: true, h.sgA: true, h.sgB: true, h.sgDB: true}
	for _, m := range []map[string]*objModel{h.vpcs, h.subnets, h.groups} {
		for id, o := range m {
			_, ok := have[id]
			switch {
			case o.deleted && ok:
				h.errorf("%s: deleted (acknowledged, or gone at an earlier check) but there", id)
			case o.exists && !o.deleteSent && !ok:
				h.errorf("%s: created (acknowledged) but gone", id)
			}
			o.exists, o.deleted, o.deleteSent = ok, !ok, false
			delete(have, id)
		}
	}
	// Creates without an answer that happened: part of the model now.
	for id, parent := range have {
		if base[id] {
			continue
		}
		o := &objModel{id: id, parent: parent, exists: true}
		switch {
		case strings.HasPrefix(id, "vpc-"):
			h.vpcs[id] = o
		case strings.HasPrefix(id, "subnet-"):
			h.subnets[id] = o
		case strings.HasPrefix(id, "sg-"):
			h.groups[id] = o
		}
	}
	ports := map[int32]bool{}
	for _, p := range dbRules {
		if p.FromPort != nil {
			ports[*p.FromPort] = true
		}
	}
	for port, r := range h.rules {
		switch {
		case r.exists && !r.deleteSent && !ports[port]:
			h.errorf("rule tcp/%d on %s: authorized (acknowledged) but gone", port, h.sgDB)
		case r.deleted && ports[port]:
			h.errorf("rule tcp/%d on %s: revoked (acknowledged) but still there", port, h.sgDB)
		}
		r.exists, r.deleted, r.deleteSent = ports[port], !ports[port], false
	}
}

// verifyEvents: every acknowledged Event invoke ran (the recorder got its
// tag) and its log is stored with START, END and REPORT.
func (h *crashHarness) verifyEvents() {
	h.t.Helper()
	h.mu.Lock()
	var pending []string
	for tag := range h.tags {
		pending = append(pending, tag)
	}
	h.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		h.mu.Lock()
		var missing []string
		for _, tag := range pending {
			if h.seen[tag] == 0 {
				missing = append(missing, tag)
			}
		}
		h.mu.Unlock()
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			h.fatalf("%d acknowledged Event invokes never ran: %v", len(missing), missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var bad []string
	for {
		logs := h.storedLogs("ev")
		bad = bad[:0]
		for _, tag := range pending {
			if !logged(logs, tag) {
				bad = append(bad, tag)
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(bad) > 0 {
		h.errorf("%d of %d acknowledged Event invokes ran but their START/END/REPORT are not stored: %v", len(bad), len(pending), bad)
	}
	h.mu.Lock()
	for _, tag := range pending {
		delete(h.tags, tag)
	}
	h.eventsChecked += len(pending)
	h.mu.Unlock()
}

func (h *crashHarness) storedLogs(fn string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(harness.BinDir, "lambdaplane"), "logs", fn, "--data", h.data).Output()
	if err != nil {
		h.t.Logf("round %d: lambdaplane logs %s: %v", h.round, fn, err)
	}
	return string(out)
}

// logged: the marker of tag is between a START and an END of one request,
// followed by its REPORT.
func logged(logs, tag string) bool {
	lines := strings.Split(logs, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "crash-tag "+tag {
			continue
		}
		id := ""
		for j := i - 1; j >= 0 && j >= i-20; j-- {
			if rest, ok := strings.CutPrefix(lines[j], "START RequestId: "); ok {
				id = strings.Fields(rest)[0]
				break
			}
		}
		if id == "" {
			continue
		}
		end, report := false, false
		for j := i + 1; j < len(lines) && j <= i+20; j++ {
			end = end || strings.HasPrefix(lines[j], "END RequestId: "+id)
			if strings.HasPrefix(lines[j], "REPORT RequestId: "+id) {
				report = true
				break
			}
		}
		if end && report {
			return true
		}
	}
	return false
}

// verifyENIs: one lambda ENI per (subnet, group set) the functions use,
// and every address of the base subnets accounted for.
func (h *crashHarness) verifyENIs() {
	h.t.Helper()
	h.mu.Lock()
	want := map[string]bool{}
	var users []string
	for _, f := range h.fns {
		if f.exists && !f.deleted && f.vpcCapable && f.cfg[len(f.cfg)-1].vpc >= 0 {
			users = append(users, fmt.Sprintf("%s on %v", f.name, h.cfgs[f.cfg[len(f.cfg)-1].vpc]))
			c := h.cfgs[f.cfg[len(f.cfg)-1].vpc]
			for _, s := range c[0] {
				want[s+"/"+strings.Join(slices.Sorted(slices.Values(c[1])), ",")] = true
			}
		}
	}
	h.mu.Unlock()
	var got map[string]int
	var free map[string]int32
	var enis []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, free, enis = map[string]int{}, map[string]int32{}, nil
		ctx, cancel := h.ctx()
		out, err := h.re.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{})
		if err != nil {
			cancel()
			h.fatalf("DescribeNetworkInterfaces: %v", err)
		}
		inSubnet := map[string]int32{}
		for _, n := range out.NetworkInterfaces {
			inSubnet[*n.SubnetId]++
			if n.InterfaceType != "lambda" {
				continue
			}
			var g []string
			for _, x := range n.Groups {
				g = append(g, *x.GroupId)
			}
			sort.Strings(g)
			k := *n.SubnetId + "/" + strings.Join(g, ",")
			got[k]++
			enis = append(enis, *n.NetworkInterfaceId+" "+k)
		}
		ss, err := h.re.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{h.subnet1, h.subnet2}})
		cancel()
		if err != nil {
			h.fatalf("DescribeSubnets: %v", err)
		}
		okAddrs := true
		for _, s := range ss.Subnets {
			free[*s.SubnetId] = *s.AvailableIpAddressCount
			if *s.AvailableIpAddressCount+inSubnet[*s.SubnetId] != h.freeAtStart[*s.SubnetId] {
				okAddrs = false
			}
		}
		okENIs := len(got) == len(want)
		for k, n := range got {
			okENIs = okENIs && want[k] && n == 1
		}
		if okENIs && okAddrs {
			return
		}
		if time.Now().After(deadline) {
			h.errorf("lambda ENIs %v (want one for each of %v: %v); free addresses %v of %v at the start", enis, slices.Sorted(maps(want)), users, free, h.freeAtStart)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func maps(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// verifyKernel: each VPC has its router namespace (with links in it), no
// router namespace is left for a VPC that is gone, and the server holds no
// more namespaces than its service router, pool, environments and VPCs.
func (h *crashHarness) verifyKernel() {
	h.t.Helper()
	h.mu.Lock()
	routers := map[string]string{}
	for id, v := range h.vpcs {
		if v.exists && !v.deleted {
			routers[netdev.VPCNetnsName(h.prefix, id)] = id
		}
	}
	gateways := h.gateways
	h.mu.Unlock()
	var problems []string
	deadline := time.Now().Add(45 * time.Second)
	for {
		problems = problems[:0]
		ns, _, err := netdev.ListPrefixed(h.prefix)
		if err != nil {
			h.fatalf("%v", err)
		}
		for name, id := range routers {
			if !slices.Contains(ns, name) {
				problems = append(problems, "no router namespace "+name+" for "+id)
				continue
			}
			// The router holds the VPC's nft table and answers for each
			// subnet's gateway.
			if tables := nftTablesIn(name); tables == 0 {
				problems = append(problems, "no nft table in router namespace "+name+" of "+id)
			}
			lo := loAddrsIn(name)
			for _, gw := range gateways[id] {
				if !slices.Contains(lo, gw) {
					problems = append(problems, fmt.Sprintf("router namespace %s of %s lacks gateway %s (has %v)", name, id, gw, lo))
				}
			}
		}
		routerNS := 0
		for _, n := range ns {
			if strings.HasPrefix(n, h.prefix+"-v") {
				routerNS++
				if routers[n] == "" {
					problems = append(problems, "router namespace "+n+" of no VPC")
				}
			}
		}
		envs := int(harness.MetricValue(harness.ScrapeMetrics(h.t, "http://"+h.metrics), invoke.MetricEnvironments, nil))
		if others := len(ns) - routerNS; others > 2+2+envs {
			problems = append(problems, fmt.Sprintf("%d namespaces besides VPC routers (%v) for the service router, the API endpoint, a pool of 2 and %d environments", others, ns, envs))
		}
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.errorf("kernel after the restart: %v", problems)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func nftTablesIn(netnsName string) int {
	out, err := exec.Command("ip", "netns", "exec", netnsName, "nft", "list", "tables").Output()
	if err != nil {
		return 0
	}
	return strings.Count(string(out), "table ")
}

func loAddrsIn(netnsName string) []string {
	out, _ := exec.Command("ip", "-n", netnsName, "-o", "-4", "addr", "show", "dev", "lo").Output()
	var addrs []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				a, _, _ := strings.Cut(f[i+1], "/")
				addrs = append(addrs, a)
			}
		}
	}
	return addrs
}

// final deletes everything, stops the server cleanly and checks that
// nothing with its prefix is left.
func (h *crashHarness) final() {
	t := h.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h.round++
	h.mu.Lock()
	var names []string
	for _, f := range h.fns {
		if f.exists && !f.deleted {
			names = append(names, f.name)
		}
	}
	h.mu.Unlock()
	for _, n := range append(names, "ev") {
		if _, err := h.lc.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(n)}); err != nil {
			t.Errorf("delete %s: %v", n, err)
		}
	}
	// Lambda ENIs go once no function uses them.
	harness.Eventually(t, 60*time.Second, "no lambda ENI left", func() bool {
		out, err := h.ec.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{})
		return err == nil && len(out.NetworkInterfaces) == 0
	})
	gs, err := h.ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs.SecurityGroups { // rules naming other groups first
		if len(g.IpPermissions) > 0 {
			if _, err := h.ec.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: g.GroupId, IpPermissions: g.IpPermissions}); err != nil {
				t.Errorf("revoke the rules of %s: %v", *g.GroupId, err)
			}
		}
	}
	for _, g := range gs.SecurityGroups {
		if *g.GroupName != "default" {
			if _, err := h.ec.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: g.GroupId}); err != nil {
				t.Errorf("delete %s: %v", *g.GroupId, err)
			}
		}
	}
	ss, err := h.ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss.Subnets {
		if _, err := h.ec.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: s.SubnetId}); err != nil {
			t.Errorf("delete %s: %v", *s.SubnetId, err)
		}
	}
	vs, err := h.ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Vpcs {
		if _, err := h.ec.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: v.VpcId}); err != nil {
			t.Errorf("delete %s: %v", *v.VpcId, err)
		}
	}
	harness.Eventually(t, 30*time.Second, "VPC router namespaces removed", func() bool {
		ns, _, _ := netdev.ListPrefixed(h.prefix)
		return !slices.ContainsFunc(ns, func(n string) bool { return strings.HasPrefix(n, h.prefix+"-v") })
	})
	h.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(60 * time.Second):
		h.fatalf("no exit 60s after SIGTERM")
	}
	if !h.proc.ProcessState.Success() {
		h.fatalf("clean shutdown: %v", h.proc.ProcessState)
	}
	left, err := netdev.Leftovers(h.prefix)
	if err != nil {
		t.Fatal(err)
	}
	cg, err := sandbox.ListAllCgroups(h.prefix)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "-n", filepath.Base(harness.InternetNS), "-o", "link").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, h.prefix+"-") {
			left = append(left, "link in the uplink namespace: "+l)
		}
	}
	if len(left)+len(cg) > 0 {
		t.Errorf("after a clean shutdown: %v, cgroups %v", left, cg)
	}
}
