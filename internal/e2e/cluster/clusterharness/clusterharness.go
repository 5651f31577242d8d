package clusterharness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/lambdaplane/lambdaplane/internal/client"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/server"
)

// Underlay addresses: host i (from 0) is 198.18.0.11+i on the bridge.
// The driver's own veth to host i is 198.18.1.4i+1/30 (the host's end
// .4i+2), with a route to the host's underlay address through it.
var (
	underlay = netip.MustParsePrefix("198.18.0.0/24")
	mgmt     = netip.MustParsePrefix("198.18.1.0/24")
)

const (
	apiPort     = 9009
	clusterPort = 6222
	clientPort  = 4222 // the voting hosts' NATS client listener (with NATSHosts)
)

// Options shape a cluster.
type Options struct {
	Hosts int // default 3
	// NATSHosts more hosts join without a store server of their own,
	// through h1's NATS client listener (serve --nats-url), after the
	// voting hosts are ready.
	NATSHosts int
	// Args are extra serve flags for every host.
	Args []string
}

// Cluster is a running cluster of host processes.
type Cluster struct {
	T     testing.TB
	Hosts []*Host
	// Tag makes this cluster's names unique on the machine.
	Tag string
	// ServiceCIDR is the cluster-wide service CIDR (each host leases a /20).
	ServiceCIDR netip.Prefix
	// DriverNS is the namespace the test's clients dial from.
	DriverNS string
	HTTP     *http.Client
	Keys     aws.Credentials
	Account  string

	underlayNS string
	dir        string
	nsNames    []string
}

// Host is one lambdaplane serve process in its own namespace.
type Host struct {
	C       *Cluster
	ID      string
	Prefix  string
	Netns   string // /run/netns/NAME
	Addr    netip.Addr
	API     string // http://addr:9009
	Data    string
	LogPath string
	args    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// New builds the underlay, starts every host at once (the store's cluster
// forms only when they find each other), waits until all are ready, and
// creates the execution role "probe". Everything goes when the test ends.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	harness.RequireRoot(t)
	if o.Hosts == 0 {
		o.Hosts = 3
	}
	// The underlay range must be one this machine routes nowhere but out
	// of its default route (no namespace here has one), never 192.0.2.0/24.
	for _, p := range []netip.Prefix{underlay, mgmt} {
		out, err := exec.Command("ip", "route", "get", p.Addr().Next().String()).CombinedOutput()
		if err != nil {
			t.Fatalf("ip route get: %v: %s", err, out)
		}
		if strings.Contains(string(out), " local ") || strings.HasPrefix(string(out), "local") {
			t.Fatalf("%s is this machine's own: %s", p, out)
		}
		// Whatever the root namespace does with it, no namespace made here
		// has a default route, so nothing sent here leaves the machine.
	}
	c := &Cluster{T: t, Tag: harness.RandHex(4), dir: t.TempDir()}
	// A /16 of 100.64.0.0/10 above the ranges other test servers take.
	b := harness.RandHex(2)
	var n int
	fmt.Sscanf(b, "%x", &n)
	c.ServiceCIDR = netip.MustParsePrefix(fmt.Sprintf("100.%d.0.0/16", 96+n%32))
	t.Cleanup(c.close)

	c.underlayNS = "lpu" + c.Tag
	driver := "lpd" + c.Tag
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{c.underlayNS, driver} {
		must(ipCmd("netns", "add", ns))
		c.nsNames = append(c.nsNames, ns)
		must(ipCmd("-n", ns, "link", "set", "lo", "up"))
	}
	c.DriverNS = "/run/netns/" + driver
	must(ipCmd("-n", c.underlayNS, "link", "add", "br0", "type", "bridge"))
	must(ipCmd("-n", c.underlayNS, "link", "set", "br0", "up"))

	c.HTTP = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil || !underlay.Contains(ap.Addr()) || ap.Addr() == underlay.Addr() {
				return nil, fmt.Errorf("clusterharness: refusing to dial %s: only the underlay %s", addr, underlay)
			}
			d := 10 * time.Second
			if dl, ok := ctx.Deadline(); ok {
				d = time.Until(dl)
			}
			return netdev.DialIn(c.DriverNS, network, addr, d)
		},
		MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
	}}

	var peers []string
	for i := 0; i < o.Hosts; i++ {
		peers = append(peers, fmt.Sprintf("%s:%d", hostAddr(i), clusterPort))
	}
	for i := 0; i < o.Hosts+o.NATSHosts; i++ {
		id := fmt.Sprintf("h%d", i+1)
		h := &Host{C: c, ID: id, Prefix: "c" + c.Tag[:3] + fmt.Sprint(i+1), Addr: hostAddr(i),
			Data: filepath.Join(c.dir, id), LogPath: filepath.Join(c.dir, id+".log")}
		ns := "lph" + c.Tag + fmt.Sprint(i+1)
		must(ipCmd("netns", "add", ns))
		c.nsNames = append(c.nsNames, ns)
		must(ipCmd("-n", ns, "link", "set", "lo", "up"))
		h.Netns = "/run/netns/" + ns
		c.plug(ns, "p"+id, netip.PrefixFrom(h.Addr, 24))
		c.plugDriver(ns, i, h.Addr)
		h.API = fmt.Sprintf("http://%s:%d", h.Addr, apiPort)
		var others []string
		for j, p := range peers {
			if j != i {
				others = append(others, p)
			}
		}
		store := []string{"--cluster-listen", fmt.Sprintf("%s:%d", h.Addr, clusterPort), "--cluster-peers", strings.Join(others, ",")}
		if o.NATSHosts > 0 {
			store = append(store, "--cluster-client-listen", fmt.Sprintf("%s:%d", h.Addr, clientPort))
		}
		if i >= o.Hosts {
			store = []string{"--nats-url", fmt.Sprintf("nats://%s:%d", hostAddr(0), clientPort)}
		}
		h.args = append([]string{"serve", "--host-id", id, "--prefix", h.Prefix, "--data", h.Data,
			"--listen", fmt.Sprintf("%s:%d", h.Addr, apiPort)}, store...)
		h.args = append(append(h.args,
			"--service-cidr", c.ServiceCIDR.String(), "--uplink", "netns:"+harness.InternetNS, "--uplink-net", harness.UplinkNet().String(),
			"--init-path", filepath.Join(harness.BinDir, "lambdaplane-init"), "--metrics-listen", "off",
			"--pool-size", "2", "--init-pool-size", "2", "--idle-timeout", "2m", "--async-redelivery", "3s",
			"--async-retry-backoff", "200ms,400ms", "--log-level", "info"), o.Args...)
		c.Hosts = append(c.Hosts, h)
	}
	for _, h := range c.Hosts[:o.Hosts] {
		must(h.Start())
	}
	for _, h := range c.Hosts[:o.Hosts] {
		must(h.WaitReady(3 * time.Minute))
	}
	for _, h := range c.Hosts[o.Hosts:] {
		must(h.Start())
		must(h.WaitReady(3 * time.Minute))
	}
	must(c.readKeys())
	must(c.ensureRole("probe"))
	return c
}

func hostAddr(i int) netip.Addr {
	a := underlay.Addr().As4()
	a[3] = byte(11 + i)
	return netip.AddrFrom4(a)
}

// plug joins namespace ns to the bridge with a veth: "eth0" inside with
// addr, port on the bridge side.
func (c *Cluster) plug(ns, port string, addr netip.Prefix) {
	t := c.T
	tmp := "lpv" + c.Tag + port
	if len(tmp) > 15 {
		tmp = tmp[:15]
	}
	for _, args := range [][]string{
		{"-n", c.underlayNS, "link", "add", port, "type", "veth", "peer", "name", tmp},
		{"-n", c.underlayNS, "link", "set", tmp, "netns", ns},
		{"-n", ns, "link", "set", tmp, "name", "eth0"},
		{"-n", ns, "addr", "add", addr.String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", c.underlayNS, "link", "set", port, "master", "br0"},
		{"-n", c.underlayNS, "link", "set", port, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
}

// plugDriver gives the driver its own veth to host i and a route to the
// host's underlay address through it (so the driver still reaches a
// partitioned host's API).
func (c *Cluster) plugDriver(ns string, i int, hostAddr netip.Addr) {
	b := mgmt.Addr().As4()
	b[3] = byte(4*i + 1)
	drv := netip.AddrFrom4(b)
	b[3] = byte(4*i + 2)
	hst := netip.AddrFrom4(b)
	dl := fmt.Sprintf("d%d", i+1)
	driver := filepath.Base(c.DriverNS)
	for _, args := range [][]string{
		{"-n", driver, "link", "add", dl, "type", "veth", "peer", "name", "m0", "netns", ns},
		{"-n", driver, "addr", "add", netip.PrefixFrom(drv, 30).String(), "dev", dl},
		{"-n", driver, "link", "set", dl, "up"},
		{"-n", ns, "addr", "add", netip.PrefixFrom(hst, 30).String(), "dev", "m0"},
		{"-n", ns, "link", "set", "m0", "up"},
		{"-n", driver, "route", "add", hostAddr.String() + "/32", "via", hst.String(), "dev", dl},
	} {
		if err := ipCmd(args...); err != nil {
			c.T.Fatal(err)
		}
	}
}

// Start starts the host's process (again, after Kill or Stop, on the same
// data directory).
func (h *Host) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		return fmt.Errorf("host %s is running", h.ID)
	}
	f, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("nsenter", append([]string{"--net=" + h.Netns, "--", filepath.Join(harness.BinDir, "lambdaplane")}, h.args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	h.cmd, h.logf, h.done = cmd, f, make(chan struct{})
	done := h.done
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	return nil
}

// Running reports whether the process runs.
func (h *Host) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// WaitReady waits until the host's API answers its health check.
func (h *Host) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !h.Running() {
			return fmt.Errorf("host %s exited while starting; its log:\n%s", h.ID, h.Tail(60))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.API+"/_lambdaplane/health", nil)
		resp, err := h.C.HTTP.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("host %s not ready after %s; its log:\n%s", h.ID, timeout, h.Tail(60))
}

// Tail is the last n lines of the host's log.
func (h *Host) Tail(n int) string {
	b, _ := os.ReadFile(h.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// signal sends sig to the host's process group and waits up to wait for
// it to exit (0: no wait).
func (h *Host) signal(sig syscall.Signal, wait time.Duration) error {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	// The process group: nsenter and the server it execs.
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		h.mu.Lock()
		h.cmd = nil
		h.mu.Unlock()
		return fmt.Errorf("host %s did not exit within %s of %s; killed", h.ID, wait, sig)
	}
	h.mu.Lock()
	h.cmd = nil
	h.mu.Unlock()
	return nil
}

// Kill SIGKILLs the host (its environments' processes are its children in
// other process groups; they are reaped by its next start's cleanup).
func (h *Host) Kill() { _ = h.signal(syscall.SIGKILL, time.Minute) }

// Stop SIGTERMs the host and waits for its clean shutdown.
func (h *Host) Stop() error { return h.signal(syscall.SIGTERM, time.Minute) }

// Partition cuts the host's veth on the bridge: it no longer reaches the
// other hosts (nor they it); the driver still reaches its API through its
// own veth.
func (h *Host) Partition() error {
	return ipCmd("-n", h.C.underlayNS, "link", "set", "p"+h.ID, "down")
}

// Heal restores the host's veth.
func (h *Host) Heal() error {
	return ipCmd("-n", h.C.underlayNS, "link", "set", "p"+h.ID, "up")
}

func (c *Cluster) readKeys() error {
	f, err := os.Open(filepath.Join(c.Hosts[0].Data, "credentials"))
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			if c.Keys.AccessKeyID == "" {
				c.Keys.AccessKeyID = strings.TrimSpace(v)
			}
		case "aws_secret_access_key":
			if c.Keys.SecretAccessKey == "" {
				c.Keys.SecretAccessKey = strings.TrimSpace(v)
			}
		}
	}
	if c.Keys.AccessKeyID == "" {
		return fmt.Errorf("no keys in %s/credentials", c.Hosts[0].Data)
	}
	return nil
}

// AWSConfig is an SDK config for host i: explicit endpoint, region and
// static credentials, dialing from the driver namespace.
func (c *Cluster) AWSConfig(i int) aws.Config {
	return aws.Config{
		Region: "us-east-1", BaseEndpoint: aws.String(c.Hosts[i].API), HTTPClient: c.HTTP,
		Credentials:      credentials.NewStaticCredentialsProvider(c.Keys.AccessKeyID, c.Keys.SecretAccessKey, ""),
		RetryMaxAttempts: 1,
	}
}

// Lambda is a Lambda client of host i (no retries: each call is sent once).
func (c *Cluster) Lambda(i int) *lambda.Client { return lambda.NewFromConfig(c.AWSConfig(i)) }

// Role is the ARN of an execution role made by ensureRole.
func (c *Cluster) Role(name string) string { return "arn:aws:iam::" + c.Account + ":role/" + name }

func (c *Cluster) ensureRole(name string) error {
	cl := iam.NewFromConfig(c.AWSConfig(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := cl.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(server.LambdaTrustPolicy)})
	if err != nil && !strings.Contains(err.Error(), "EntityAlreadyExists") {
		return fmt.Errorf("create role %s: %w", name, err)
	}
	if out != nil && out.Role != nil {
		arn := aws.ToString(out.Role.Arn)
		if p := strings.Split(arn, ":"); len(p) > 4 {
			c.Account = p[4]
		}
	}
	_, err = cl.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(name), PolicyArn: aws.String("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")})
	return err
}

// Status asks host i for the cluster's state (GET /_lambdaplane/cluster).
func (c *Cluster) Status(i int) (*server.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := &client.Client{Endpoint: c.Hosts[i].API, Region: "us-east-1", Creds: c.Keys, HTTP: c.HTTP}
	resp, err := cl.Do(ctx, "lambda", http.MethodGet, "/_lambdaplane/cluster", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, client.ReadError(resp)
	}
	var st server.ClusterStatus
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

// Leftovers lists kernel objects with host h's prefix: named namespaces
// (machine-wide), links and the nft host table in h's namespace, cgroups.
func (h *Host) Leftovers() []string {
	out, err := netdev.Leftovers(h.Prefix)
	if err != nil {
		out = append(out, "error: "+err.Error())
	}
	if b, err := exec.Command("ip", "-n", filepath.Base(h.Netns), "-o", "link").Output(); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], h.Prefix+"-") {
				out = append(out, "link "+strings.TrimSuffix(f[1], ":")+" in "+h.Netns)
			}
		}
	}
	if b, err := exec.Command("nsenter", "--net="+h.Netns, "nft", "list", "tables").Output(); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 3 && strings.HasPrefix(f[2], h.Prefix+"-") {
				out = append(out, "nft "+f[1]+" "+f[2]+" in "+h.Netns)
			}
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/" + h.Prefix + "*")
	for _, p := range cg {
		out = append(out, "cgroup "+p)
	}
	return out
}

// close stops every host, checks that none left a prefixed kernel object
// behind, and removes the namespaces.
func (c *Cluster) close() {
	t := c.T
	var wg sync.WaitGroup
	for _, h := range c.Hosts {
		_ = h.Heal()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.Stop(); err != nil {
				t.Errorf("%v; log:\n%s", err, h.Tail(40))
			}
		}()
	}
	wg.Wait()
	for _, h := range c.Hosts {
		if left := h.Leftovers(); len(left) > 0 {
			t.Errorf("host %s left kernel objects with its prefix %s: %v", h.ID, h.Prefix, left)
			_ = netdev.Cleanup(h.Prefix)
		}
	}
	if t.Failed() {
		keep := filepath.Join(os.TempDir(), "lpcluster-logs-"+c.Tag)
		_ = os.MkdirAll(keep, 0o755)
		for _, h := range c.Hosts {
			t.Logf("--- log of %s (last 40 lines):\n%s", h.ID, h.Tail(40))
			if b, err := os.ReadFile(h.LogPath); err == nil {
				_ = os.WriteFile(filepath.Join(keep, h.ID+".log"), b, 0o644)
			}
		}
		t.Logf("the hosts' whole logs are kept in %s", keep)
	}
	for i := len(c.nsNames) - 1; i >= 0; i-- {
		_ = ipCmd("netns", "del", c.nsNames[i])
	}
}

// Netns lists the named network namespaces with prefix.
func Netns(prefix string) []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			names = append(names, f[0])
		}
	}
	return names
}
