package netdev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/lambdaplane/lambdaplane/internal/nft"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test cannot run: CI must run as root")
		}
		t.Skip("needs root")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// internetAddrs are put on the "internet" namespace's lo. Only the first is
// reachable by default; the others prove that blocked traffic never leaves
// the service router (a listener is waiting for it there).
var internetAddrs = []string{"203.0.113.1", "10.1.2.3", "169.254.169.254", "192.168.1.1", "10.9.0.1"}

// newInternet creates a namespace standing in for the internet and returns
// its path.
func newInternet(tb testing.TB) string {
	tb.Helper()
	name := "lptinet" + randHex(4)
	if err := ensureNetnsRunDir(); err != nil {
		tb.Fatal(err)
	}
	if err := createNamedNetns(name, envSysctls); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = deleteNamedNetns(name) })
	path := "/run/netns/" + name
	h := handleAt(tb, path)
	lo, err := h.LinkByName("lo")
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range internetAddrs {
		if err := h.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(a + "/32"))}); err != nil {
			tb.Fatal(err)
		}
	}
	return path
}

func handleAt(tb testing.TB, path string) *netlink.Handle {
	tb.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}

// newTestRouter sets up a router with a unique prefix whose uplink ends in
// inet; cleanup closes it and asserts nothing with the prefix is left.
func newTestRouter(tb testing.TB, inet string, mod func(*Config)) *Router {
	tb.Helper()
	cfg := Config{Prefix: "lpt" + randHex(2), UplinkNetns: inet, PoolSize: 2}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewRouter(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	if err := r.Setup(context.Background()); err != nil {
		_ = Cleanup(cfg.Prefix)
		tb.Fatal(err)
	}
	tb.Logf("Setup (prefix %s, fresh) took %v", cfg.Prefix, time.Since(start))
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		if left, err := Leftovers(cfg.Prefix); err != nil || len(left) > 0 {
			tb.Errorf("leftovers after Close: %v %v", left, err)
		}
		if l, _ := linkByName(handleAt(tb, inet), hostLinkName(cfg.Prefix)); l != nil {
			tb.Errorf("uplink peer %s still in the internet namespace", l.Attrs().Name)
		}
	})
	return r
}

// serve accepts connections and replies with the peer's address.
func serve(tb testing.TB, nsPath, addr string) {
	tb.Helper()
	l, err := ListenIn(nsPath, "tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

// ask connects from nsPath and returns the server's reply.
func ask(nsPath, addr string, timeout time.Duration) (string, error) {
	c, err := DialIn(nsPath, "tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

const blockedTimeout = 400 * time.Millisecond

func TestEgress(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	inet := newInternet(t)
	r := newTestRouter(t, inet, nil)
	for _, a := range internetAddrs {
		serve(t, inet, a+":8080")
	}
	e, err := r.Take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release(e)

	got, err := ask(e.Path, "203.0.113.1:8080", 2*time.Second)
	if err != nil {
		t.Fatalf("env -> internet: %v", err)
	}
	if got != "169.254.255.1" {
		t.Fatalf("internet saw source %q, want the uplink address 169.254.255.1 (masquerade)", got)
	}

	for _, dst := range []string{"10.1.2.3", "169.254.169.254", "192.168.1.1", "10.9.0.1"} {
		before, err := r.EgressBlockedPackets()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ask(e.Path, dst+":8080", blockedTimeout); err == nil {
			t.Errorf("env reached blocked %s (server saw %s)", dst, got)
		}
		after, err := r.EgressBlockedPackets()
		if err != nil {
			t.Fatal(err)
		}
		if after <= before {
			t.Errorf("%s: egress_blocked %d -> %d, want an increase", dst, before, after)
		}
		t.Logf("%s blocked, egress_blocked %d -> %d", dst, before, after)
	}

	// 127.0.0.1 is the environment's own loopback; the kernel never routes
	// 127/8 off a namespace, so the service router's loopback (where a
	// listener waits) is unreachable and the counter is not involved.
	serve(t, r.SvcNetnsPath(), "127.0.0.1:8081")
	if got, err := ask(e.Path, "127.0.0.1:8081", blockedTimeout); err == nil {
		t.Errorf("env reached svc's 127.0.0.1 (%s)", got)
	}

	// Operator allow-list opens 10.9.0.0/16, nothing else.
	if err := r.SetEgressAllow([]netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	if got, err := ask(e.Path, "10.9.0.1:8080", 2*time.Second); err != nil || got != "169.254.255.1" {
		t.Fatalf("allowed 10.9.0.1: %q %v", got, err)
	}
	if _, err := ask(e.Path, "10.1.2.3:8080", blockedTimeout); err == nil {
		t.Error("10.1.2.3 reachable after allowing 10.9.0.0/16")
	}
}

func TestIsolation(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	inet := newInternet(t)
	r := newTestRouter(t, inet, nil)
	a, err := r.Take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr == b.Addr || a.HostLink == b.HostLink || a.Name == b.Name {
		t.Fatalf("envs share identity: %+v %+v", a, b)
	}
	serve(t, b.Path, "0.0.0.0:7000")
	serve(t, r.SvcNetnsPath(), "0.0.0.0:7001")
	serve(t, inet, "203.0.113.1:7002")
	// Both work (so the failures below are the rules, not a broken path).
	for _, e := range []*EnvNet{a, b} {
		if _, err := ask(e.Path, "203.0.113.1:7002", 2*time.Second); err != nil {
			t.Fatalf("%s -> internet: %v", e.Name, err)
		}
	}
	// The service network is reachable from B itself (sanity).
	if _, err := ask(b.Path, b.Addr.String()+":7000", time.Second); err != nil {
		t.Fatalf("B cannot reach its own listener: %v", err)
	}
	if got, err := ask(a.Path, b.Addr.String()+":7000", blockedTimeout); err == nil {
		t.Errorf("env A reached env B (%s)", got)
	}
	for _, dst := range []string{"169.254.0.1:7001", "169.254.255.1:7001"} {
		if got, err := ask(a.Path, dst, blockedTimeout); err == nil {
			t.Errorf("env reached the service router at %s (%s)", dst, got)
		}
	}
	// Nobody outside can connect in, even with a route to the service CIDR.
	h := handleAt(t, inet)
	up, err := h.LinkByName(hostLinkName(r.cfg.Prefix))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: ipNet(r.cfg.ServiceCIDR), Gw: net.ParseIP("169.254.255.1")}); err != nil {
		t.Fatal(err)
	}
	if got, err := ask(inet, b.Addr.String()+":7000", blockedTimeout); err == nil {
		t.Errorf("internet reached env B (%s)", got)
	}
	if got, err := ask(inet, "169.254.255.1:7001", blockedTimeout); err == nil {
		t.Errorf("internet reached the service router (%s)", got)
	}
	// IPv6 is off in the environment and the service router.
	for _, p := range []string{a.Path, r.SvcNetnsPath()} {
		var v []byte
		if err := inNetns(p, func() (err error) {
			v, err = os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(v)) != "1" {
			t.Errorf("%s: disable_ipv6 = %q", p, v)
		}
	}
	if err := errors1(r.Release(a), r.Release(b), r.Release(b)); err != nil {
		t.Fatalf("release (twice for b): %v", err)
	}
}

func errors1(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// snapshot is a name-based description of the kernel state Setup owns.
func snapshot(t *testing.T, r *Router, inet string) string {
	t.Helper()
	var out []string
	for _, p := range []string{r.SvcNetnsPath(), inet} {
		h := handleAt(t, p)
		links, err := h.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		names := map[int]string{}
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
			addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
			var as []string
			for _, a := range addrs {
				as = append(as, a.IPNet.String())
			}
			sort.Strings(as)
			out = append(out, fmt.Sprintf("%s link %s %s up=%v %v", p, l.Attrs().Name, l.Type(), l.Attrs().Flags&net.FlagUp != 0, as))
		}
		routes, _ := h.RouteList(nil, netlink.FAMILY_V4)
		for _, rt := range routes {
			out = append(out, fmt.Sprintf("%s route %v via %v dev %s", p, rt.Dst, rt.Gw, names[rt.LinkIndex]))
		}
	}
	ns, err := netns.GetFromPath(r.SvcNetnsPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tab := &nftables.Table{Name: r.cfg.Prefix, Family: nftables.TableFamilyIPv4}
	chains, _ := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	for _, ch := range chains {
		rules, _ := c.GetRules(tab, ch)
		for _, ru := range rules {
			cm, _ := userdata.GetString(ru.UserData, userdata.TypeComment)
			out = append(out, fmt.Sprintf("nft %s handle %d %s", ch.Name, ru.Handle, cm))
		}
	}
	sets, _ := c.GetSets(tab)
	for _, s := range sets {
		els, _ := c.GetSetElements(s)
		out = append(out, fmt.Sprintf("nft set %s %d elements", s.Name, len(els)))
	}
	ents, _ := os.ReadDir(netnsRunDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), r.cfg.Prefix+"-") {
			out = append(out, "netns "+e.Name())
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestSetupIdempotentAndRepairs(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	inet := newInternet(t)
	serve(t, inet, "203.0.113.1:8080")
	r := newTestRouter(t, inet, func(c *Config) { c.PoolSize = -1 })
	ctx := context.Background()
	e, err := r.Take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, r, inet)
	if err := r.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, r, inet); got != want {
		t.Fatalf("second Setup changed the kernel:\n--- before\n%s\n--- after\n%s", want, got)
	}

	damage := map[string]func(){
		"uplink peer deleted": func() { delLink(handleAt(t, inet), hostLinkName(r.cfg.Prefix)) },
		"nft table deleted": func() {
			c, _ := nft.Open(r.SvcNetnsPath())
			defer c.Close()
			c.DeleteTable(r.cfg.Prefix)
		},
		"default route deleted": func() {
			h := handleAt(t, r.SvcNetnsPath())
			routes, _ := h.RouteList(nil, netlink.FAMILY_V4)
			for _, rt := range routes {
				if isDefault(rt.Dst) {
					h.RouteDel(&rt)
				}
			}
		},
		"env veth deleted": func() { delLink(handleAt(t, r.SvcNetnsPath()), e.HostLink) },
		"uplink address replaced": func() {
			h := handleAt(t, r.SvcNetnsPath())
			l, _ := h.LinkByName(UplinkName)
			addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
			for _, a := range addrs {
				h.AddrDel(l, &a)
			}
			h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("192.0.2.9/30"))})
		},
		"stale env netns and link": func() {
			if err := createNamedNetns(envName(r.cfg.Prefix, 999), envSysctls); err != nil {
				t.Fatal(err)
			}
			handleAt(t, r.SvcNetnsPath()).LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "e998"}})
		},
		"ip_forward off": func() {
			inNetns(r.SvcNetnsPath(), func() error { return writeSysctls([]sysctl{{"net.ipv4.ip_forward", "0"}}) })
		},
	}
	for name, f := range damage {
		f()
		if snapshot(t, r, inet) == want && name != "ip_forward off" {
			t.Fatalf("%s: damage not visible", name)
		}
		if err := r.Setup(ctx); err != nil {
			t.Fatalf("%s: Setup: %v", name, err)
		}
		if got := snapshot(t, r, inet); got != want {
			t.Fatalf("%s: Setup did not repair:\n--- want\n%s\n--- got\n%s", name, want, got)
		}
		// The repaired datapath works. After "uplink address replaced" the
		// kernel's masquerade cleanup for the removed address runs later, on
		// a workqueue, and deletes every conntrack entry NATed to that
		// address: on a busy machine that can include the first connection
		// made after Setup restored it (its reply then finds no entry). So
		// up to three connections, each one with the full timeout.
		got, err := ask(e.Path, "203.0.113.1:8080", 2*time.Second)
		for try := 1; try < 3 && err != nil; try++ {
			t.Logf("%s: connection %d after repair: %v", name, try, err)
			got, err = ask(e.Path, "203.0.113.1:8080", 2*time.Second)
		}
		if err != nil || got != "169.254.255.1" {
			t.Fatalf("%s: after repair env -> internet: %q %v", name, got, err)
		}
	}

	// The service router namespace itself removed: Setup rebuilds it and
	// re-plumbs the environment it handed out.
	h := handleAt(t, r.SvcNetnsPath())
	links, _ := h.LinkList()
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			h.LinkDel(l)
		}
	}
	if err := deleteNamedNetns(svcName(r.cfg.Prefix)); err != nil {
		t.Fatal(err)
	}
	if err := r.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := ask(e.Path, "203.0.113.1:8080", 2*time.Second); err != nil || got != "169.254.255.1" {
		t.Fatalf("after svc rebuild env -> internet: %q %v", got, err)
	}
}

func TestTakeReleaseNoLeaks(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	inet := newInternet(t)
	r := newTestRouter(t, inet, func(c *Config) { c.PoolSize = 3 })
	ctx := context.Background()
	const cycles = 200
	var held []*EnvNet
	seen := map[netip.Addr]bool{}
	for i := range cycles {
		e, err := r.Take(ctx)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		for _, h := range held {
			if h.Addr == e.Addr {
				t.Fatalf("address %v handed out twice", e.Addr)
			}
		}
		seen[e.Addr] = true
		held = append(held, e)
		if len(held) == 3 || i == cycles-1 { // a few concurrently alive
			for _, h := range held {
				if err := r.Release(h); err != nil {
					t.Fatal(err)
				}
			}
			held = nil
		}
	}
	// Quiesce the refill (it builds under kmu.RLock) and compare the kernel
	// with the pool.
	deadline := time.Now().Add(10 * time.Second)
	for r.Ready() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.kmu.Lock()
	r.mu.Lock()
	pool := append([]*EnvNet{}, r.pool...)
	taken := len(r.taken)
	r.mu.Unlock()
	inUse := r.ipam.inUse()
	r.kmu.Unlock()
	if taken != 0 || inUse != len(pool) {
		t.Fatalf("taken %d, addresses in use %d, pool %d", taken, inUse, len(pool))
	}
	wantNs := []string{svcName(r.cfg.Prefix), apiNetnsName(r.cfg.Prefix)}
	wantLinks := []string{"lo", UplinkName, apiLinkName}
	for _, e := range pool {
		wantNs = append(wantNs, e.Name)
		wantLinks = append(wantLinks, e.HostLink)
	}
	gotNs, hostLinks, err := ListPrefixed(r.cfg.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(gotNs)
	slices.Sort(wantNs)
	if !slices.Equal(gotNs, wantNs) || len(hostLinks) != 0 {
		t.Fatalf("netns %v (want %v), host links %v", gotNs, wantNs, hostLinks)
	}
	h := handleAt(t, r.SvcNetnsPath())
	links, _ := h.LinkList()
	var gotLinks []string
	for _, l := range links {
		gotLinks = append(gotLinks, l.Attrs().Name)
	}
	slices.Sort(gotLinks)
	slices.Sort(wantLinks)
	if !slices.Equal(gotLinks, wantLinks) {
		t.Fatalf("svc links %v, want %v", gotLinks, wantLinks)
	}
	routes, _ := h.RouteList(nil, netlink.FAMILY_V4)
	envRoutes := 0
	for _, rt := range routes {
		if rt.Dst != nil && r.cfg.ServiceCIDR.Contains(netip.MustParsePrefix(rt.Dst.String()).Addr()) {
			envRoutes++
		}
	}
	if envRoutes != len(pool) {
		t.Fatalf("%d env routes in svc, want %d", envRoutes, len(pool))
	}
	addrs, _ := h.AddrList(nil, netlink.FAMILY_V4)
	// lo 127.0.0.1, uplink, and 169.254.0.1 on each pooled link and on
	// the API endpoint's.
	if len(addrs) != 3+len(pool) {
		t.Fatalf("%d addresses in svc, want %d", len(addrs), 3+len(pool))
	}
	t.Logf("%d cycles, %d distinct addresses used", cycles, len(seen))
}

func TestCleanupIdempotent(t *testing.T) {
	requireRoot(t)
	prefix := "lpt" + randHex(2)
	if err := Cleanup(prefix); err != nil {
		t.Fatalf("cleanup of nothing: %v", err)
	}
	r, err := NewRouter(Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Take(context.Background()); err != ErrNotSetup {
		t.Fatalf("Take before Setup: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHostUplink runs the uplink into the host's root namespace. It enables
// IPv4 forwarding on the host and so only runs when asked to.
func TestHostUplink(t *testing.T) {
	requireRoot(t)
	if os.Getenv("LP_TEST_HOST_UPLINK") == "" {
		t.Skip("set LP_TEST_HOST_UPLINK=1 to test an uplink into the host namespace (enables host ip_forward)")
	}
	prefix := "lpt" + randHex(2)
	r, err := NewRouter(Config{Prefix: prefix, PoolSize: -1, UplinkNet: netip.MustParsePrefix("169.254.254.0/30")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Setup(context.Background()); err != nil {
		Cleanup(prefix)
		t.Fatal(err)
	}
	left, err := Leftovers(prefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	want := []string{"link " + prefix + "-up", "netns " + prefix + "-svc", "nft ip " + prefix + "-host"}
	if !slices.Equal(left, want) {
		t.Errorf("objects %v, want %v", left, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := Leftovers(prefix); len(left) != 0 {
		t.Fatalf("leftovers %v", left)
	}
}

func BenchmarkTakeRelease(b *testing.B) {
	requireRootB(b)
	r := newTestRouter(b, newInternet(b), func(c *Config) { c.PoolSize = -1 })
	ctx := context.Background()
	for b.Loop() {
		e, err := r.Take(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Release(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	requireRootB(b)
	r := newTestRouter(b, newInternet(b), func(c *Config) { c.PoolSize = -1 })
	ctx := context.Background()
	var envs []*EnvNet
	for b.Loop() {
		e, err := r.Take(ctx)
		if err != nil {
			b.Fatal(err)
		}
		envs = append(envs, e)
	}
	b.StopTimer()
	for _, e := range envs {
		r.Release(e)
	}
}

func BenchmarkTakeWarm(b *testing.B) {
	requireRootB(b)
	r := newTestRouter(b, newInternet(b), func(c *Config) { c.PoolSize = 8 })
	ctx := context.Background()
	var envs []*EnvNet
	b.StopTimer()
	for range b.N {
		for r.Ready() == 0 {
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
		e, err := r.Take(ctx)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		envs = append(envs, e)
		if len(envs) > 32 {
			for _, e := range envs {
				r.Release(e)
			}
			envs = envs[:0]
		}
	}
	for _, e := range envs {
		r.Release(e)
	}
}

func requireRootB(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
}

// TestRefillRunsAtLowPriority: the pool's refill goroutine holds a thread
// of this process at BackgroundNice, and the namespaces it builds work.
func TestRefillRunsAtLowPriority(t *testing.T) {
	requireRoot(t)
	inet := newInternet(t)
	r := newTestRouter(t, inet, func(c *Config) { c.PoolSize = 2 })
	niceThreads := func() int {
		n := 0
		tasks, _ := filepath.Glob("/proc/self/task/*/stat")
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			s := string(b)
			fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
			if len(fields) > 16 && fields[16] == strconv.Itoa(BackgroundNice) {
				n++
			}
		}
		return n
	}
	// The refill goroutine sets its thread's niceness when it first runs.
	for deadline := time.Now().Add(5 * time.Second); niceThreads() < 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := niceThreads(); n < 1 {
		t.Fatalf("no thread at niceness %d: the refill thread runs at normal priority", BackgroundNice)
	}
	e, err := r.Take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.Path); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(e); err != nil {
		t.Fatal(err)
	}
}

// TestRefillWaitsForQuiet: after a take, the pool is rebuilt only once
// takes have stopped for RefillDelay, not while the cold start that took
// the namespace may still be running.
func TestRefillWaitsForQuiet(t *testing.T) {
	requireRoot(t)
	inet := newInternet(t)
	const delay = 400 * time.Millisecond
	r := newTestRouter(t, inet, func(c *Config) { c.PoolSize = 2; c.RefillDelay = delay })
	if !waitPooled(r.Pooled, 2) {
		t.Fatal("pool never filled")
	}
	taken := time.Now()
	e, err := r.Take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release(e)
	if !waitPooled(r.Pooled, 2) {
		t.Fatal("pool not refilled after a take")
	}
	if d := time.Since(taken); d < delay {
		t.Fatalf("pool refilled %v after the take, before the %v quiet period", d, delay)
	}
}

// TestRefillAtLowWater: a pool down to a quarter of its size is refilled
// without waiting for quiet.
func TestRefillAtLowWater(t *testing.T) {
	requireRoot(t)
	inet := newInternet(t)
	r := newTestRouter(t, inet, func(c *Config) { c.PoolSize = 4; c.RefillDelay = time.Hour })
	if !waitPooled(r.Pooled, 4) {
		t.Fatal("pool never filled")
	}
	for range 3 {
		e, err := r.Take(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Release(e)
	}
	if !waitPooled(r.Pooled, 4) {
		n, _ := r.Pooled()
		t.Fatalf("pool at %d of 4 after three takes: not refilled at low water", n)
	}
}

// waitPooled waits up to 10 s for a pool (its Pooled method) to hold want.
func waitPooled(pooled func() (n, size int), want int) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if n, _ := pooled(); n == want {
			return true
		}
	}
	return false
}
