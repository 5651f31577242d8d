package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/sandbox/initproc"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test cannot run: CI must run as root")
		}
		t.Skip("needs root")
	}
}

// Built once by TestMain (only when running as root).
var (
	initBin string // lambdaplane-init
	codeDir string // contains probe (static Go program) and shell scripts
	optDir  string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "sandbox-test-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			if err := buildFixtures(dir); err != nil {
				fmt.Fprintln(os.Stderr, "build fixtures:", err)
				return 1
			}
		}
		return m.Run()
	}())
}

func buildFixtures(dir string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	modRoot := filepath.Dir(strings.TrimSpace(string(gomod)))
	initBin = filepath.Join(dir, "lambdaplane-init")
	codeDir = filepath.Join(dir, "code")
	optDir = filepath.Join(dir, "opt")
	for _, d := range []string{codeDir, optDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	for pkg, out := range map[string]string{
		"./cmd/lambdaplane-init":            initBin,
		"./internal/sandbox/testdata/probe": filepath.Join(codeDir, "probe"),
	} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = modRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	scripts := map[string]string{
		"bootstrap":   "#!/bin/sh\necho hello from $(id -u)\necho to-stderr >&2\nexit ${EXIT_CODE:-0}\n",
		"tree":        "#!/bin/sh\nsleep 1000 &\nsleep 1000 &\n(sleep 1000 & sleep 1000) &\necho started\nwait\n",
		"noexec":      "#!/bin/sh\nexit 0\n",
		"badinterp":   "#!/nonexistent/interpreter\n",
		"true-script": "#!/bin/sh\n",
	}
	for name, body := range scripts {
		mode := os.FileMode(0o755)
		if name == "noexec" {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(codeDir, name), []byte(body), mode); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(optDir, "layer.txt"), []byte("layer\n"), 0o644)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newManager returns a Manager with a test-unique prefix and checks on
// cleanup that nothing was left behind.
func newManager(t testing.TB, opts ...func(*Config)) *Manager {
	t.Helper()
	prefix := "lpt" + randHex(3)
	cfg := Config{Prefix: prefix, InitPath: initBin, RootDir: t.TempDir()}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		left, err := listCgroups(prefix, true) // pooled sets included
		if err != nil || len(left) > 0 {
			t.Errorf("cgroups left behind: %v %v", left, err)
		}
		for _, c := range controllers {
			os.Remove(filepath.Join(CgroupRoot, c, prefix))
		}
	})
	return m
}

// TestCgroupPool: environments take pooled cgroup sets, renamed to their
// id, with their own size's limits (the pool's and another); pooled sets
// are not environments (ListCgroups), a crashed server's pool is removed
// by Cleanup, and Close leaves none (newManager's cleanup checks).
func TestCgroupPool(t *testing.T) {
	requireRoot(t)
	m := newManager(t, func(c *Config) { c.PoolSize = 2 })
	ns := newNetns(t)
	pooled := func() int {
		all, _ := listCgroups(m.cfg.Prefix, true)
		envs, _ := ListCgroups(m.cfg.Prefix)
		return len(all) - len(envs)
	}
	full := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for pooled() < 2*len(controllers) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := pooled(); n != 2*len(controllers) {
			t.Fatalf("%d pooled cgroup directories, want %d", n, 2*len(controllers))
		}
	}
	full()
	for _, mb := range []int{pooledMemoryMB, 256, 64} {
		full()
		s := spec(ns, nil, "/var/task/probe", "sleep")
		s.MemoryMB = mb
		e := start(t, m, s)
		cg := newCgroupSet(m.cfg.Prefix, s.ID)
		if got, err := readInt(cg[0] + "/memory.limit_in_bytes"); err != nil || got != int64(mb)<<20 {
			t.Errorf("%d MB environment: memory.limit_in_bytes %d %v", mb, got, err)
		}
		if got, err := readInt(cg[2] + "/cpu.shares"); err != nil || got != int64(cpuShares(mb)) {
			t.Errorf("%d MB environment: cpu.shares %d %v, want %d", mb, got, err, cpuShares(mb))
		}
		if m.memsw {
			if got, err := readInt(cg[0] + "/memory.memsw.limit_in_bytes"); err != nil || got != int64(mb)<<20 {
				t.Errorf("%d MB environment: memory.memsw.limit_in_bytes %d %v", mb, got, err)
			}
		}
		b, err := os.ReadFile(cg[1] + "/cgroup.procs")
		if err != nil || !strings.Contains(string(b), strconv.Itoa(e.pid)) {
			t.Errorf("%d MB environment: its init %d is not in %s (%q %v)", mb, e.pid, cg[1], b, err)
		}
		if envs, _ := ListCgroups(m.cfg.Prefix); len(envs) != len(controllers) {
			t.Errorf("ListCgroups %v, want only the environment's", envs)
		}
		if err := e.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
	if h := m.cgpool.hits.Load(); h != 3 {
		t.Errorf("%d of 3 starts took a pooled cgroup set", h)
	}
	// A crashed server's pool (another token) goes at Cleanup.
	stale := newCgroupSet(m.cfg.Prefix, cgPoolPrefix+"dead0000.1")
	if err := stale.create(pooledMemoryMB, m.memsw); err != nil {
		t.Fatal(err)
	}
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	for _, d := range stale {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("a stale pooled cgroup %s survived Cleanup: %v", d, err)
		}
	}
}

// newNetns creates a throwaway network namespace and returns its path.
func newNetns(t testing.TB) string {
	t.Helper()
	name := "lpt-" + randHex(4)
	if b, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, b)
	}
	t.Cleanup(func() {
		if b, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del: %v %s", err, b)
		}
	})
	return "/run/netns/" + name
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var idSeq struct {
	sync.Mutex
	n int
}

func nextID() string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return "e" + strconv.Itoa(idSeq.n)
}

func spec(netns string, out *syncBuffer, cmd ...string) Spec {
	s := Spec{
		ID: nextID(), NetnsPath: netns, CodeDir: codeDir, Command: cmd,
		Env:      []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C"},
		MemoryMB: 128, EphemeralMB: 16,
	}
	if out != nil {
		s.Stdout = out
	}
	return s
}

func start(t testing.TB, m *Manager, s Spec) *Env {
	t.Helper()
	e, err := m.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return e
}

func waitDone(t testing.TB, e *Env) ExitInfo {
	t.Helper()
	select {
	case <-e.Done():
		return e.Exit()
	case <-time.After(30 * time.Second):
		t.Fatalf("environment %s did not exit", e.ID())
		return ExitInfo{}
	}
}

type report struct {
	Pid      int
	Pids     []string
	Uid, Gid int
	Groups   []int
	Status   map[string]string
	NetnsIno uint64
	Hostname string
	Cwd      string
	Writes   map[string]string
	Devices  map[string]string
	Listing  map[string][]string
	Mounts   []string
}

func TestIsolation(t *testing.T) {
	requireRoot(t)
	t.Run("pool", func(t *testing.T) { testIsolation(t, newManager(t)) })
	t.Run("nopool", func(t *testing.T) { testIsolation(t, newManager(t, noPool)) })
}

func testIsolation(t *testing.T, m *Manager) {
	ns := newNetns(t)
	rtDir := t.TempDir()
	if err := os.Chmod(rtDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	s := spec(ns, &out, "/var/task/probe", "report")
	s.OptDir, s.RuntimeDir = optDir, rtDir
	e := start(t, m, s)
	if x := waitDone(t, e); x.Code != 0 || x.Signal != "" || x.OOMKilled {
		t.Fatalf("exit %+v, output:\n%s", x, out.String())
	}
	var r report
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("decode report: %v\n%s", err, out.String())
	}
	t.Logf("report: %+v", r)

	// pid 1 is the init, the function its child; nothing else is there.
	if r.Pid == 1 || r.Status["PPid"] != "1" || len(r.Pids) != 2 || r.Pids[0] != "1" || r.Pids[1] != strconv.Itoa(r.Pid) {
		t.Errorf("pid %d (parent %s), /proc pids %v; want the init (1) and the function", r.Pid, r.Status["PPid"], r.Pids)
	}
	if r.Uid != DefaultUID || r.Gid != DefaultGID || len(r.Groups) != 0 {
		t.Errorf("uid %d gid %d groups %v; want %d %d []", r.Uid, r.Gid, r.Groups, DefaultUID, DefaultGID)
	}
	// The bounding set is the full one every new user namespace starts
	// with; with no_new_privs and nosuid mounts nothing can be gained
	// from it.
	for k, want := range map[string]string{
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapInh": "0000000000000000",
		"CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
	} {
		if r.Status[k] != want {
			t.Errorf("%s = %q, want %q", k, r.Status[k], want)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(ns, &st); err != nil {
		t.Fatal(err)
	}
	if r.NetnsIno != st.Ino {
		t.Errorf("netns inode %d, want %d (%s)", r.NetnsIno, st.Ino, ns)
	}
	if r.Hostname != s.ID || r.Cwd != "/var/task" {
		t.Errorf("hostname %q cwd %q", r.Hostname, r.Cwd)
	}
	for _, d := range []string{"/", "/var/task", "/etc", "/usr", "/usr/bin", "/opt", "/var/runtime", "/dev", "/proc"} {
		if r.Writes[d] == "" {
			t.Errorf("write to %s succeeded, want it refused", d)
		}
	}
	for _, d := range []string{"/tmp", "/dev/shm"} {
		if r.Writes[d] != "" {
			t.Errorf("write to %s: %s", d, r.Writes[d])
		}
	}
	for d, err := range r.Devices {
		if (d == "full") != (err != "") {
			t.Errorf("write to /dev/%s: %q", d, err)
		}
	}
	if got := strings.Join(r.Listing["/opt"], ","); got != "layer.txt" {
		t.Errorf("/opt lists %q", got)
	}
	if !strings.Contains(strings.Join(r.Listing["/var/task"], ","), "probe") {
		t.Errorf("/var/task lists %v", r.Listing["/var/task"])
	}
	// The host's mount tree is gone: the environment sees its root, the
	// system directories, its own trees and /proc, /dev, /tmp, nothing else
	// (no /run/netns, no /sys, no data directory).
	allowed := map[string]bool{"/": true, "/var/task": true, "/opt": true, "/var/runtime": true,
		"/tmp": true, "/proc": true, "/dev": true, "/dev/shm": true}
	system, err := systemEntries()
	if err != nil {
		t.Fatal(err)
	}
	underSystem := func(mp string) bool { // host system dirs are bound with what is mounted below them
		for _, e := range system {
			if e.Link == "" && (mp == e.Path || strings.HasPrefix(mp, e.Path+"/")) {
				return true
			}
		}
		return false
	}
	for _, mp := range r.Mounts {
		if !allowed[mp] && !underSystem(mp) {
			t.Errorf("the environment sees mount point %s (mounts: %v)", mp, r.Mounts)
		}
	}
	for _, want := range []string{"/var/task", "/opt", "/var/runtime", "/tmp"} {
		if !slices.Contains(r.Mounts, want) {
			t.Errorf("no mount on %s (mounts: %v)", want, r.Mounts)
		}
	}
	if len(e.Phases()) == 0 {
		t.Error("no phases recorded")
	}
	for _, p := range e.Phases() {
		t.Logf("phase %-8s %v", p.Name, p.D)
	}
}

// fnPid returns the host pid of the environment's function (the init's
// child).
func fnPid(t *testing.T, e *Env) int {
	t.Helper()
	var pid int
	eventually(t, func() bool {
		for _, p := range hostPidsIn(t, e) {
			if p != e.Pid() && ppidOf(p) == e.Pid() {
				pid = p
				return true
			}
		}
		return false
	})
	return pid
}

func ppidOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	n, _ := strconv.Atoi(f[1])
	return n
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}

// hostCreds returns the Uid and Gid lines of /proc/PID/status on the host.
func hostCreds(t *testing.T, pid int) (uid, gid string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			uid = strings.Join(strings.Fields(v), " ")
		}
		if v, ok := strings.CutPrefix(l, "Gid:"); ok {
			gid = strings.Join(strings.Fields(v), " ")
		}
	}
	return uid, gid
}

// Each environment's function runs in a user namespace of its own as uid
// 993 inside, mapped to a host uid no other live environment holds.
func TestUserNamespacePerEnvironment(t *testing.T) {
	m := newManager(t)
	first, last := m.HostIDRange()
	seen := map[int]string{}
	hostUser, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e := start(t, m, spec(newNetns(t), nil, "/var/task/probe", "sleep"))
		pid := fnPid(t, e)
		x := e.HostUID()
		if x < first || x > last {
			t.Errorf("host uid %d outside the manager's block %d-%d", x, first, last)
		}
		if other, dup := seen[x]; dup {
			t.Errorf("host uid %d held by %s and %s", x, other, e.ID())
		}
		seen[x] = e.ID()
		all := fmt.Sprintf("%d %d %d %d", x, x, x, x)
		if uid, gid := hostCreds(t, pid); uid != all || gid != all {
			t.Errorf("%s: host Uid %q Gid %q, want %q", e.ID(), uid, gid, all)
		}
		m, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(strings.Fields(string(m)), " "), fmt.Sprintf("%d %d 1", DefaultUID, x); got != want {
			t.Errorf("%s: uid_map %q, want %q", e.ID(), got, want)
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid)); ns == hostUser || ns == "" {
			t.Errorf("%s: user namespace %q, the host's is %q", e.ID(), ns, hostUser)
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", e.Pid())); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "Rss:") || strings.HasPrefix(l, "Pss:") || strings.HasPrefix(l, "Anonymous:") {
					t.Logf("%s: init %s", e.ID(), strings.Join(strings.Fields(l), " "))
				}
			}
		}
		// The init itself stays in the host's user namespace.
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", e.Pid())); ns != hostUser {
			t.Errorf("%s: init's user namespace %q, want the host's %q", e.ID(), ns, hostUser)
		}
	}
}

// What a function must not be able to do fails, in the kernel's or the
// seccomp filter's words.
func TestEscapesRefused(t *testing.T) {
	m := newManager(t)
	var out syncBuffer
	e := start(t, m, spec(newNetns(t), &out, "/var/task/probe", "escape"))
	if x := waitDone(t, e); x.Code != 0 {
		t.Fatalf("exit %+v, output:\n%s", x, out.String())
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	eperm, enosys := syscall.EPERM.Error(), syscall.ENOSYS.Error()
	for name, want := range map[string][]string{
		"unshare-user": {eperm}, "unshare-net": {eperm}, "unshare-mount": {eperm}, "setns": {eperm},
		"mount": {eperm}, "chroot": {eperm}, "add_key": {eperm}, "request_key": {eperm}, "keyctl": {eperm},
		"io_uring_setup": {eperm}, "bpf": {eperm}, "perf_event_open": {eperm}, "userfaultfd": {eperm},
		"socket-packet": {eperm}, "socket-raw": {eperm}, "ptrace-init": {eperm}, "kill-init": {eperm},
		"sethostname": {eperm}, "clone3": {enosys},
		"clone-user":    {"fork/exec /var/task/probe: operation not permitted"},
		"open-init-mem": {"open /proc/1/mem: permission denied"},
		"init-root":     {"readlink /proc/1/root: permission denied"},
	} {
		if !slices.Contains(want, got[name]) {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}
}

// Per-uid limits are per environment: one that uses up its inotify
// instances leaves the next one its own.
func TestInotifyLimitPerEnvironment(t *testing.T) {
	m := newManager(t)
	var a, b syncBuffer
	ea := start(t, m, spec(newNetns(t), &a, "/var/task/probe", "inotify", "hold"))
	eventually(t, func() bool { return strings.Contains(a.String(), "inotify") })
	if !strings.Contains(a.String(), "too many open files") {
		t.Fatalf("first environment: %q, want it to run out (EMFILE)", a.String())
	}
	eb := start(t, m, spec(newNetns(t), &b, "/var/task/probe", "inotify"))
	waitDone(t, eb)
	var na, nb int
	fmt.Sscanf(a.String(), "inotify %d", &na)
	fmt.Sscanf(b.String(), "inotify %d", &nb)
	if nb == 0 || nb != na {
		t.Errorf("second environment created %d inotify instances while the first held %d (%q, %q)", nb, na, a.String(), b.String())
	}
	_ = ea
}

// BenchmarkSeccompSyscall measures what the filter adds to a system call
// it allows (getppid, which does next to nothing itself): the same loop in
// an environment and in a plain process on the host, side by side.
func BenchmarkSeccompSyscall(b *testing.B) {
	requireRoot(b)
	m := newManager(b)
	const n = 2000000
	probe := filepath.Join(codeDir, "probe")
	var filtered, plain float64
	for range b.N {
		var out syncBuffer
		e := start(b, m, spec(newNetns(b), &out, "/var/task/probe", "getppid", strconv.Itoa(n)))
		waitDone(b, e)
		v, err := strconv.ParseFloat(strings.TrimSpace(out.String()), 64)
		if err != nil {
			b.Fatalf("%v: %q", err, out.String())
		}
		filtered += v
		host, err := exec.Command(probe, "getppid", strconv.Itoa(n)).Output()
		if err != nil {
			b.Fatal(err)
		}
		if v, err = strconv.ParseFloat(strings.TrimSpace(string(host)), 64); err != nil {
			b.Fatal(err)
		}
		plain += v
	}
	b.ReportMetric(filtered/float64(b.N), "ns/syscall-seccomp")
	b.ReportMetric(plain/float64(b.N), "ns/syscall-host")
	b.ReportMetric((filtered-plain)/float64(b.N), "ns/syscall-added")
}

func TestStdoutAndExitCodes(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)
	for _, code := range []int{0, 1, 7, 255} {
		var out syncBuffer
		s := spec(ns, &out, "/var/task/bootstrap")
		s.Env = append(s.Env, "EXIT_CODE="+strconv.Itoa(code))
		e := start(t, m, s)
		x := waitDone(t, e)
		if x.Code != code || x.Signal != "" || x.OOMKilled {
			t.Errorf("exit %+v, want code %d", x, code)
		}
		want := fmt.Sprintf("hello from %d\nto-stderr\n", DefaultUID)
		if out.String() != want {
			t.Errorf("output %q, want %q", out.String(), want)
		}
		if err := e.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
	// A command without a slash is looked up in the PATH of Spec.Env.
	var out syncBuffer
	e := start(t, m, spec(ns, &out, "sh", "-c", "echo $0; exit 3"))
	if x := waitDone(t, e); x.Code != 3 || out.String() != "sh\n" {
		t.Errorf("exit %+v output %q", x, out.String())
	}
}

func TestInvalidEntrypoint(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)
	for _, cmd := range [][]string{{"/var/task/missing"}, {"/var/task/noexec"}, {"/var/task/badinterp"}, {"missing-in-path"}, {"/var/task"}} {
		var out syncBuffer
		s := spec(ns, &out, cmd...)
		e, err := m.Start(context.Background(), s)
		if err == nil {
			e.Destroy()
			t.Errorf("%v: Start succeeded", cmd)
			continue
		}
		var ie *InitError
		if !errors.Is(err, ErrInvalidEntrypoint) || !errors.As(err, &ie) || ie.Code != initproc.ExitExec {
			t.Errorf("%v: err %v, want ErrInvalidEntrypoint", cmd, err)
		}
		if !strings.Contains(out.String(), "lambdaplane-init: exec") {
			t.Errorf("%v: stderr %q lacks the reason", cmd, out.String())
		}
		t.Logf("%v: %v", cmd, err)
		if m.Get(s.ID) != nil {
			t.Errorf("%v: env still registered", cmd)
		}
		// The ID is free again and nothing is left in the cgroups.
		if left, _ := ListCgroups(m.cfg.Prefix); len(left) != 0 {
			t.Errorf("%v: cgroups left: %v", cmd, left)
		}
	}
}

func TestStartErrors(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)

	// Not a network namespace.
	s := spec(codeDir+"/probe", nil, "/var/task/probe", "sleep")
	if _, err := m.Start(context.Background(), s); err == nil || !strings.Contains(err.Error(), "network namespace") {
		t.Errorf("bad netns: %v", err)
	}
	// Missing code directory: a setup failure that names it, not an
	// entrypoint one.
	s = spec(ns, nil, "/var/task/probe", "sleep")
	s.CodeDir = "/nonexistent/code"
	_, err := m.Start(context.Background(), s)
	if err == nil || errors.Is(err, ErrInvalidEntrypoint) || !strings.Contains(err.Error(), "/nonexistent/code") {
		t.Errorf("missing code dir: %v", err)
	}
	// Duplicate ID.
	s = spec(ns, nil, "/var/task/probe", "sleep")
	start(t, m, s)
	if _, err := m.Start(context.Background(), s); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	// Spec validation.
	if _, err := m.Start(context.Background(), Spec{ID: "Bad_ID"}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("invalid spec: %v", err)
	}
	if left, _ := ListCgroups(m.cfg.Prefix); len(left) != len(controllers) {
		t.Errorf("cgroups: %v, want only the live env's", left)
	}
}

func TestTmpIsSized(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)
	var out syncBuffer
	s := spec(ns, &out, "/var/task/probe", "fill", "9")
	s.EphemeralMB = 8
	waitDone(t, start(t, m, s))
	if !strings.Contains(out.String(), "no space left on device") {
		t.Errorf("filling an 8 MB /tmp with 9 MB: %q", out.String())
	}
	out = syncBuffer{}
	s = spec(ns, &out, "/var/task/probe", "fill", "7")
	s.EphemeralMB = 8
	waitDone(t, start(t, m, s))
	if out.String() != "fill: <nil>\n" {
		t.Errorf("filling an 8 MB /tmp with 7 MB: %q", out.String())
	}
}

func TestMemoryLimit(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)
	var out syncBuffer
	s := spec(ns, &out, "/var/task/probe", "alloc", "200")
	s.MemoryMB = 48
	e := start(t, m, s)
	x := waitDone(t, e)
	if !x.OOMKilled || x.Signal != "SIGKILL" || strings.Contains(out.String(), "allocated") {
		t.Errorf("exit %+v output %q; want OOM kill", x, out.String())
	}
	if got := e.MaxMemoryUsedMB(); got < 40 || got > 50 { // the kernel may overshoot by a few pages
		t.Errorf("MaxMemoryUsedMB = %d, want about 48", got)
	}

	// Under the limit: no OOM; the high-water mark is reported and resets.
	out = syncBuffer{}
	s = spec(ns, &out, "/var/task/probe", "alloc", "24", "hold")
	s.MemoryMB = 64
	e = start(t, m, s)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "allocated"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("probe did not allocate: %q", out.String())
		}
	}
	if got := e.MaxMemoryUsedMB(); got < 24 || got > 64 {
		t.Errorf("MaxMemoryUsedMB = %d, want 24..64", got)
	}
	if err := e.Destroy(); err != nil {
		t.Fatal(err)
	}
	if x := e.Exit(); x.OOMKilled || x.Signal != "SIGKILL" {
		t.Errorf("destroyed env exit %+v", x)
	}

	// The high-water mark is the environment's: it does not go down
	// after the peak.
	e = start(t, m, spec(ns, nil, "/var/task/probe", "alloc", "16"))
	waitDone(t, e)
	before := e.MaxMemoryUsedMB()
	if after := e.MaxMemoryUsedMB(); before < 16 || after != before {
		t.Errorf("MaxMemoryUsedMB %d, then %d", before, after)
	}
}

// hostPidsIn returns the host pids in the environment's pids cgroup.
func hostPidsIn(t *testing.T, e *Env) []int {
	b, err := os.ReadFile(e.cg[1] + "/cgroup.procs")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		p, _ := strconv.Atoi(f)
		pids = append(pids, p)
	}
	return pids
}

func TestDestroyKillsTree(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)
	var out syncBuffer
	e := start(t, m, spec(ns, &out, "/var/task/tree"))
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if pids = hostPidsIn(t, e); len(pids) >= 5 { // sh, subshell (execs its last sleep), 3 more sleeps
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree did not start: pids %v output %q", pids, out.String())
		}
	}
	if err := e.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := e.Destroy(); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	for _, p := range pids {
		if err := syscall.Kill(p, 0); err == nil {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
			t.Errorf("pid %d survived Destroy: %s", p, b)
		}
	}
	if x := e.Exit(); x.Signal != "SIGKILL" || x.Code != -1 {
		t.Errorf("exit %+v", x)
	}
	if _, err := os.Stat(e.cg[0]); !os.IsNotExist(err) {
		t.Errorf("cgroup %s still there: %v", e.cg[0], err)
	}
	if m.Get(e.ID()) != nil {
		t.Error("destroyed env still registered")
	}
}

func TestCleanupRemovesLeftovers(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)
	live := start(t, m, spec(ns, nil, "/var/task/probe", "sleep"))

	// A leftover from a "crashed" manager: cgroups with a process in them.
	stale := newCgroupSet(m.cfg.Prefix, "stale1")
	if err := stale.create(64, false); err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("sleep", "1000")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range stale.procs() {
		if err := writeFile(f, strconv.Itoa(orphan.Process.Pid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := orphan.Process.Wait(); err != nil {
		t.Fatal(err)
	}
	left, err := ListCgroups(m.cfg.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if want := live.cg[:]; strings.Join(left, ",") != strings.Join(sortedCopy(want), ",") {
		t.Errorf("after Cleanup: %v, want %v", left, want)
	}
	select {
	case <-live.Done():
		t.Error("Cleanup killed a live environment")
	default:
	}
	if err := m.Cleanup(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func countMounts(t testing.TB, needle string) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), needle)
}

// noPool makes every Start fork on demand.
func noPool(c *Config) { c.PoolSize = -1 }

// children returns "pid:state" of the test process's children.
func children(t testing.TB) []string {
	var z []string
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == me {
			z = append(z, e.Name()+":"+f[0])
		}
	}
	return z
}

func TestStartDestroyCyclesLeakNothing(t *testing.T) {
	requireRoot(t)
	t.Run("pool", func(t *testing.T) { testCycles(t, newManager(t), DefaultPoolSize) })
	t.Run("nopool", func(t *testing.T) { testCycles(t, newManager(t, noPool), 0) })
}

func testCycles(t *testing.T, m *Manager, poolSize int) {
	ns := newNetns(t)
	n := 200
	if testing.Short() {
		n = 20
	}
	// Warm up (spawner threads, netpoller, pipes, pool) before the baseline.
	warm := start(t, m, spec(ns, nil, "/var/task/true-script"))
	waitDone(t, warm)
	if err := warm.Destroy(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(m.pool) < poolSize && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	goroutines := runtime.NumGoroutine()
	mounts := countMounts(t, m.cfg.RootDir)
	var fds int
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	sum := map[string]time.Duration{}
	for i := range n {
		var out syncBuffer
		s := spec(ns, &out, "/var/task/probe", "sleep")
		if i%2 == 1 {
			s.Command = []string{"/bin/true"} // exits on its own
		}
		e, err := m.Start(context.Background(), s)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		for _, p := range e.Phases() {
			sum[p.Name] += p.D
		}
		if err := e.Destroy(); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	for _, p := range []string{"cgroup", "pool", "handoff", "clone", "runtime", "prepare", "join", "rootfs", "exec"} {
		if sum[p] > 0 {
			t.Logf("mean %-8s %v", p, sum[p]/time.Duration(n))
		}
	}
	if left, _ := ListCgroups(m.cfg.Prefix); len(left) != 0 {
		t.Errorf("cgroups left: %v", left)
	}
	if c := countMounts(t, m.cfg.RootDir); c != mounts || c != 0 {
		t.Errorf("host mountinfo mentions %s %d times (before: %d)", m.cfg.RootDir, c, mounts)
	}
	for deadline := time.Now().Add(10 * time.Second); len(m.pool) < poolSize && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	// A member that just reported "ready" may still be on its way into
	// recvmsg (running, not yet sleeping): give the states a moment.
	idle := func(cs []string) bool {
		for _, c := range cs {
			if !strings.HasSuffix(c, ":S") {
				return false
			}
		}
		return true
	}
	c := children(t)
	for deadline := time.Now().Add(5 * time.Second); !(len(c) == poolSize && idle(c)) && time.Now().Before(deadline); c = children(t) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(c) != poolSize {
		t.Errorf("children: %v, want %d idle pool members", c, poolSize)
	} else {
		for _, c := range c {
			if !strings.HasSuffix(c, ":S") {
				t.Errorf("child %s is not an idle pool member", c)
			}
		}
	}
	var g int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if g = runtime.NumGoroutine(); g <= goroutines || time.Now().After(deadline) {
			break
		}
	}
	if g > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines %d -> %d\n%s", goroutines, g, buf[:runtime.Stack(buf, true)])
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil && len(ents) > fds {
		t.Errorf("fds %d -> %d", fds, len(ents))
	}
}

func TestConcurrentStarts(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			var out syncBuffer
			e, err := m.Start(context.Background(), spec(ns, &out, "/var/task/bootstrap"))
			if err != nil {
				errs <- err
				return
			}
			<-e.Done()
			if x := e.Exit(); x.Code != 0 || !strings.HasPrefix(out.String(), "hello") {
				errs <- fmt.Errorf("exit %+v output %q", x, out.String())
			}
			errs <- e.Destroy()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestCloseDestroysLive(t *testing.T) {
	requireRoot(t)
	m := newManager(t)
	ns := newNetns(t)
	e, err := m.Start(context.Background(), spec(ns, nil, "/var/task/probe", "sleep"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if x := e.Exit(); x.Signal != "SIGKILL" {
		t.Errorf("exit after Close: %+v", x)
	}
	if _, err := m.Start(context.Background(), spec(ns, nil, "/bin/true")); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
}

func BenchmarkStart(b *testing.B) {
	requireRoot(b)
	m := newManager(b)
	ns := newNetns(b)
	run := func(b *testing.B, wait bool) {
		sum := map[string]time.Duration{}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			s := spec(ns, nil, "/bin/true")
			e, err := m.Start(context.Background(), s)
			if err != nil {
				b.Fatal(err)
			}
			if wait {
				<-e.Done()
			}
			b.StopTimer()
			for _, p := range e.Phases() {
				sum[p.Name] += p.D
			}
			if err := e.Destroy(); err != nil {
				b.Fatal(err)
			}
			// A cold start finds a full pool unless starts come faster than
			// ~2 ms apart; measure that case, not the refill race.
			for len(m.pool) < cap(m.pool) {
				time.Sleep(100 * time.Microsecond)
			}
			b.StartTimer()
		}
		for name, d := range sum {
			b.ReportMetric(float64(d.Microseconds())/float64(b.N), name+"-us")
		}
	}
	b.Run("pool/until-exec", func(b *testing.B) { run(b, false) })
	b.Run("pool/until-done", func(b *testing.B) { run(b, true) })
	m = newManager(b, noPool)
	b.Run("nopool/until-exec", func(b *testing.B) { run(b, false) })
	b.Run("nopool/until-done", func(b *testing.B) { run(b, true) })
}

// niceOf returns the scheduling niceness of pid's main thread (field 19 of
// /proc/PID/stat, counted after the parenthesised command name).
func niceOf(t testing.TB, stat string) string {
	t.Helper()
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 17 {
		t.Fatalf("short stat %q", stat)
	}
	return f[16]
}

// TestPoolRefillsAtLowPriority: pooled init processes wait at
// BackgroundNice (a refill during a burst only takes idle CPU), and the
// function a pooled start runs is back at niceness 0.
func TestPoolRefillsAtLowPriority(t *testing.T) {
	requireRoot(t)
	m := newManager(t, func(c *Config) { c.PoolSize = 2 })
	ns := newNetns(t)
	for deadline := time.Now().Add(10 * time.Second); len(m.pool) < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if len(m.pool) < 2 {
		t.Fatalf("pool holds %d of 2 after 10s", len(m.pool))
	}
	p := <-m.pool
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if got := niceOf(t, string(b)); got != strconv.Itoa(BackgroundNice) {
		t.Errorf("pooled init niceness %s, want %d", got, BackgroundNice)
	}
	m.pool <- p

	var out syncBuffer
	e := start(t, m, spec(ns, &out, "sh", "-c", "cat /proc/self/stat"))
	if x := waitDone(t, e); x.Code != 0 {
		t.Fatalf("exit %+v output %q", x, out.String())
	}
	pooled := false
	for _, ph := range e.Phases() {
		pooled = pooled || ph.Name == "pool"
	}
	if !pooled {
		t.Fatalf("the start did not come from the pool: phases %v", e.Phases())
	}
	if got := niceOf(t, out.String()); got != "0" {
		t.Errorf("function niceness %s, want 0 (stat %q)", got, out.String())
	}
}

// TestPoolRefillWaitsForQuiet: a started environment's pool slot is
// refilled only once starts have stopped for RefillDelay.
func TestPoolRefillWaitsForQuiet(t *testing.T) {
	requireRoot(t)
	const delay = 400 * time.Millisecond
	m := newManager(t, func(c *Config) { c.PoolSize = 2; c.RefillDelay = delay })
	ns := newNetns(t)
	if !waitPooled(m.Pooled, 2) {
		t.Fatal("pool never filled")
	}
	started := time.Now()
	e := start(t, m, spec(ns, nil, "/var/task/probe", "sleep"))
	defer e.Destroy()
	if n, _ := m.Pooled(); n != 1 {
		t.Fatalf("pool holds %d after one start, want 1", n)
	}
	if !waitPooled(m.Pooled, 2) {
		t.Fatal("pool not refilled after a start")
	}
	if d := time.Since(started); d < delay {
		t.Fatalf("pool refilled %v after the start, before the %v quiet period", d, delay)
	}
}

// TestPoolRefillAtLowWater: a pool down to a quarter of its size is
// refilled without waiting for quiet.
func TestPoolRefillAtLowWater(t *testing.T) {
	requireRoot(t)
	m := newManager(t, func(c *Config) { c.PoolSize = 4; c.RefillDelay = time.Hour })
	ns := newNetns(t)
	if !waitPooled(m.Pooled, 4) {
		t.Fatal("pool never filled")
	}
	for range 3 {
		e := start(t, m, spec(ns, nil, "/var/task/probe", "sleep"))
		defer e.Destroy()
	}
	if !waitPooled(m.Pooled, 4) {
		n, _ := m.Pooled()
		t.Fatalf("pool at %d of 4 after three starts: not refilled at low water", n)
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
