package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/sandbox/initproc"
	"golang.org/x/sys/unix"
)

// Defaults applied by NewManager and Start.
const (
	DefaultPrefix      = "lp"
	DefaultRootDir     = "/run/lambdaplane/sandbox"
	DefaultUID         = 993
	DefaultGID         = 993
	DefaultMemoryMB    = 128
	DefaultEphemeralMB = 512
	defaultSpawners    = 4
	// BackgroundNice is the niceness pool refills run at: a pooled init
	// starts at it and returns to 0 when it is handed an environment.
	BackgroundNice  = 19
	DefaultPoolSize = 2
	// DefaultRefillDelay is the default Config.RefillDelay.
	DefaultRefillDelay = 100 * time.Millisecond
	defaultStartLimit  = 30 * time.Second
	destroyWait        = 10 * time.Second
	shmMaxMB           = 64
)

// systemPaths are replicated from the host into every root, read-only.
var systemPaths = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}

// devices are bind-mounted from the host's /dev.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// Config configures a Manager. Zero fields take the defaults above.
type Config struct {
	Prefix   string // kernel object prefix; cgroups at /sys/fs/cgroup/<ctrl>/<Prefix>/<id>
	InitPath string // lambdaplane-init binary; default: next to the executable, then $PATH
	RootDir  string // staging mountpoint for environment roots (only ever mounted in private namespaces)
	UID, GID int    // ids the function runs as inside its user namespace
	// HostIDBase is the first of the HostIDBlock host uids (and gids)
	// this manager maps its environments' UID/GID to, one each; it must
	// be a multiple of HostIDBlock. 0 claims the first block from
	// DefaultHostIDBase that no other manager on the host holds.
	HostIDBase int
	Logger     *slog.Logger

	// KeepCgroupMountOptions stops NewManager from remounting the cgroup
	// hierarchy with favordynmods. Without it, every cgroup migration
	// (each environment joining its cgroups) waits for an RCU grace
	// period, ~10 ms on an idle host; with it, ~0.2 ms, at the price of
	// slightly costlier fork/exit host-wide. See tuneCgroups.
	KeepCgroupMountOptions bool

	// PoolSize is the number of init processes kept started ahead of time,
	// and of cgroup sets kept made (cgpool_linux.go) (0 = DefaultPoolSize,
	// negative = none: every Start forks and makes its cgroups).
	PoolSize int
	// RefillDelay is how long the pool refill waits for takes to stop
	// before it spawns (at most 10× that after the first take), so it does
	// not compete with the starts that emptied the pool; a pool down to a
	// quarter of its size is refilled at once. 0 = DefaultRefillDelay,
	// negative = none.
	RefillDelay time.Duration
}

// Manager starts and tracks execution environments.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	base  string // encoded initproc.Base, the same for every environment
	memsw bool

	spawnReqs   chan spawnReq // on-demand starts, served by defaultSpawners threads
	bgSpawnReqs chan spawnReq // pool refills, served by one BackgroundNice thread
	stop        chan struct{}
	pool        chan *proc
	refillCh    chan struct{}
	fillerDone  chan struct{}

	ids *hostIDs
	// cgpool: cgroup sets made ahead (cgpool_linux.go); nil without a pool.
	cgpool *cgPool

	mu     sync.Mutex
	envs   map[string]*Env // nil value: ID reserved by a Start in progress
	closed bool
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,15}$`)

// NewManager checks the host (root, cgroup v1 controllers, init binary),
// prepares the staging directory and starts the spawner threads.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("%w: prefix %q must match %s", ErrInvalidSpec, cfg.Prefix, prefixRE)
	}
	if cfg.RootDir == "" {
		cfg.RootDir = DefaultRootDir
	}
	if cfg.UID == 0 {
		cfg.UID = DefaultUID
	}
	if cfg.GID == 0 {
		cfg.GID = DefaultGID
	}
	if cfg.UID < 0 || cfg.GID < 0 {
		return nil, fmt.Errorf("%w: uid/gid must be unprivileged, got %d/%d", ErrInvalidSpec, cfg.UID, cfg.GID)
	}
	if cfg.RefillDelay == 0 {
		cfg.RefillDelay = DefaultRefillDelay
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = DefaultPoolSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InitPath == "" {
		p, err := findInit()
		if err != nil {
			return nil, err
		}
		cfg.InitPath = p
	}
	if err := unix.Access(cfg.InitPath, unix.X_OK); err != nil {
		return nil, fmt.Errorf("init binary %s is not executable: %w (build it with go build ./cmd/lambdaplane-init)", cfg.InitPath, err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sandbox manager needs root (namespaces, mounts, cgroups)")
	}
	for _, c := range controllers {
		if _, err := os.Stat(filepath.Join(CgroupRoot, c, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("cgroup v1 %q hierarchy not mounted at %s: %w", c, filepath.Join(CgroupRoot, c), err)
		}
		if err := os.MkdirAll(filepath.Join(CgroupRoot, c, cfg.Prefix), 0o755); err != nil {
			return nil, fmt.Errorf("create cgroup %s/%s/%s: %w", CgroupRoot, c, cfg.Prefix, err)
		}
	}
	if !cfg.KeepCgroupMountOptions {
		tuneCgroups(cfg.Logger)
	}
	if err := os.MkdirAll(cfg.RootDir, 0o700); err != nil {
		return nil, fmt.Errorf("create staging dir: %w", err)
	}
	system, err := systemEntries()
	if err != nil {
		return nil, err
	}
	_, memswErr := os.Stat(filepath.Join(CgroupRoot, "memory", "memory.memsw.limit_in_bytes"))
	ids, err := claimHostIDs(cfg.HostIDBase, cfg.Prefix)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		ids:         ids,
		cfg:         cfg,
		log:         cfg.Logger,
		base:        (&initproc.Base{Root: cfg.RootDir, System: system, Devices: devices}).Encode(),
		memsw:       memswErr == nil,
		spawnReqs:   make(chan spawnReq),
		bgSpawnReqs: make(chan spawnReq),
		stop:        make(chan struct{}),
		envs:        make(map[string]*Env),
		pool:        make(chan *proc, max(0, cfg.PoolSize)),
		refillCh:    make(chan struct{}, 1),
		fillerDone:  make(chan struct{}),
	}
	ready := make(chan error, defaultSpawners+1)
	for range defaultSpawners {
		go m.spawner(ready, m.spawnReqs, 0)
	}
	go m.spawner(ready, m.bgSpawnReqs, BackgroundNice)
	var errs []error
	for range defaultSpawners + 1 {
		errs = append(errs, <-ready)
	}
	if err := errors.Join(errs...); err != nil {
		close(m.stop)
		ids.Close()
		return nil, err
	}
	if cfg.PoolSize > 0 {
		go m.filler()
		m.cgpool = newCgPool(cfg.Prefix, cfg.PoolSize, m.memsw)
		go m.cgpool.fill(m.stop)
	} else {
		close(m.fillerDone)
	}
	return m, nil
}

func findInit() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "lambdaplane-init")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("lambdaplane-init")
	if err != nil {
		return "", fmt.Errorf("lambdaplane-init not found next to the executable or in PATH; set Config.InitPath: %w", err)
	}
	return filepath.Abs(p)
}

// systemEntries lists the host's top-level system paths: directories are
// bind-mounted, symlinks (merged /usr) are recreated as symlinks.
func systemEntries() ([]initproc.Entry, error) {
	var out []initproc.Entry
	for _, p := range systemPaths {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			out = append(out, initproc.Entry{Path: p, Link: t})
		case fi.IsDir():
			out = append(out, initproc.Entry{Path: p})
		}
	}
	return out, nil
}

// Spec describes one environment.
type Spec struct {
	ID          string    // env id, [a-z0-9]{1,40}, unique among live environments
	NetnsPath   string    // pre-built network namespace the process joins
	CodeDir     string    // host dir, read-only at /var/task
	OptDir      string    // optional host dir, read-only at /opt ("" = empty /opt)
	RuntimeDir  string    // optional host dir, read-only at /var/runtime
	Command     []string  // argv inside the sandbox; argv[0] without "/" is searched in PATH from Env
	Env         []string  // full environment of the command
	MemoryMB    int       // memory limit (memory.limit_in_bytes, memsw too); 0 = 128
	EphemeralMB int       // /tmp size; 0 = 512
	Hostname    string    // "" = ID
	Stdout      io.Writer // stdout and stderr of the environment; nil = discard
}

var idRE = regexp.MustCompile(`^[a-z0-9]{1,40}$`)

func (s *Spec) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...))
	}
	if !idRE.MatchString(s.ID) {
		bad("ID %q must match %s", s.ID, idRE)
	}
	if s.NetnsPath == "" {
		bad("NetnsPath is required (a pre-built network namespace, e.g. /run/netns/NAME)")
	}
	for name, d := range map[string]string{"CodeDir": s.CodeDir, "OptDir": s.OptDir, "RuntimeDir": s.RuntimeDir} {
		if d == "" && name != "CodeDir" {
			continue
		}
		if !filepath.IsAbs(d) {
			bad("%s %q must be an absolute host path", name, d)
		}
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		bad("Command is empty")
	}
	if s.MemoryMB < 0 || s.EphemeralMB < 0 {
		bad("MemoryMB and EphemeralMB must not be negative")
	}
	return errors.Join(errs...)
}

// params builds what the init process needs.
func (m *Manager) params(s *Spec, cg cgroupSet, hostID int) *initproc.Params {
	host := s.Hostname
	if host == "" {
		host = s.ID
	}
	return &initproc.Params{
		CgroupProcs: cg.procs(),
		CodeDir:     s.CodeDir,
		OptDir:      s.OptDir,
		RuntimeDir:  s.RuntimeDir,
		TmpMB:       s.EphemeralMB,
		ShmMB:       min(shmMaxMB, max(1, s.MemoryMB/2)),
		Hostname:    host,
		UID:         m.cfg.UID,
		GID:         m.cfg.GID,
		HostUID:     hostID,
		HostGID:     hostID,
		Argv:        s.Command,
		Env:         s.Env,
	}
}

// attach opens what the init receives with its parameters: the network
// namespace (a pool member joins it itself; one started on demand is in it
// already), the output pipe, the cgroup.procs files and the read-only trees
// for /var/task, /opt and /var/runtime.
func (m *Manager) attach(s *Spec, cg cgroupSet, pooled bool, out *os.File) (_ *attachments, err error) {
	a := &attachments{}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if pooled {
		ns, err := openNetns(s.NetnsPath)
		if err != nil {
			return nil, err
		}
		a.add(initproc.FdNetns, ns)
	}
	if out != nil {
		fd, err := unix.FcntlInt(out.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("duplicate output: %w", err)
		}
		a.add(initproc.FdOutput, fd)
	}
	for _, f := range cg.procs() {
		fd, err := unix.Open(f, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", f, err)
		}
		a.add(initproc.FdCgroup, fd)
	}
	for _, t := range [...]struct{ role, dir string }{
		{initproc.FdCode, s.CodeDir}, {initproc.FdOpt, s.OptDir}, {initproc.FdRuntime, s.RuntimeDir},
	} {
		if t.dir == "" {
			continue
		}
		fd, err := readOnlyTree(t.dir)
		if err != nil {
			return nil, err
		}
		a.add(t.role, fd)
	}
	return a, nil
}

func (m *Manager) reserve(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.envs[id]; ok {
		return fmt.Errorf("%w: %s", ErrExists, id)
	}
	m.envs[id] = nil
	return nil
}

func (m *Manager) release(id string) {
	m.mu.Lock()
	delete(m.envs, id)
	m.mu.Unlock()
}

// Start creates the environment's cgroups and starts its process, returning
// once the function's command has been exec'd. On any failure everything it
// did is undone. An exec failure returns an *InitError matching
// ErrInvalidEntrypoint. ctx bounds the start only, not the environment.
func (m *Manager) Start(ctx context.Context, s Spec) (_ *Env, err error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if s.MemoryMB == 0 {
		s.MemoryMB = DefaultMemoryMB
	}
	if s.EphemeralMB == 0 {
		s.EphemeralMB = DefaultEphemeralMB
	}
	if err := m.reserve(s.ID); err != nil {
		return nil, err
	}
	e := &Env{m: m, id: s.ID, cg: newCgroupSet(m.cfg.Prefix, s.ID), done: make(chan struct{}), statusRead: make(chan struct{})}
	defer func() {
		if err != nil {
			if rerr := e.rollback(); rerr != nil {
				m.log.Error("sandbox start rollback", "id", s.ID, "err", rerr)
				err = errors.Join(err, rerr)
			}
		}
	}()

	if e.hostID, err = m.ids.alloc(); err != nil {
		return nil, err
	}
	t := time.Now()
	if cg, ok := m.cgpool.take(s.ID, s.MemoryMB); ok {
		e.cg = cg
	} else if err := e.cg.create(s.MemoryMB, m.memsw); err != nil {
		return nil, err
	}
	e.cgCreated = true
	e.phase("cgroup", time.Since(t))

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartLimit)
		defer cancel()
	}
	t = time.Now()
	p := m.takePooled()
	pooled := p != nil
	if pooled {
		e.phase("pool", time.Since(t))
	} else {
		// On demand: forked from a thread inside the target namespace.
		if p, err = m.spawnInit(ctx, s.NetnsPath, false); err != nil {
			return nil, fmt.Errorf("start %s: %w", s.ID, err)
		}
		e.phase("clone", p.clone)
	}
	e.p, e.pid = p, p.cmd.Process.Pid
	// The monitor reads the last status line (how the function ended)
	// once this has read the first.
	defer e.statusReadDone()
	// An *os.File output (a pipe the caller reads) goes to the function
	// directly, without a copying goroutine in between, so the caller can
	// tell what the function wrote before a given moment. The init's own
	// messages before the hand-over still come through the monitor.
	outFile, _ := s.Stdout.(*os.File)
	var monitorOut io.Writer = s.Stdout
	if outFile != nil {
		dup, err := unix.FcntlInt(outFile.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("start %s: duplicate output: %w", s.ID, err)
		}
		own := os.NewFile(uintptr(dup), "sandbox-output")
		monitorOut = own
		e.closeOut = own
	}
	go e.monitor(monitorOut)

	att, err := m.attach(&s, e.cg, pooled, outFile)
	if err != nil {
		p.ctrl.Close()
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	defer att.Close()
	pp := m.params(&s, e.cg, e.hostID)
	pp.Fds = att.roles
	params := []byte(pp.Encode())
	sent := initproc.Monotonic()
	if pooled {
		// It was started at BackgroundNice; its main thread (tid = pid,
		// the one that execs) wakes at normal priority. The init resets
		// its own thread too, so this is only about a prompt wake-up.
		_ = unix.Setpriority(unix.PRIO_PROCESS, e.pid, 0)
	}
	if err := p.send(params, att.fds); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	stopDeadline := context.AfterFunc(ctx, func() { _ = p.statusR.SetReadDeadline(time.Now()) })
	line, readErr := p.statusLine()
	stopDeadline()
	execEnd := initproc.Monotonic()
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		return nil, fmt.Errorf("start %s: waiting for init: %w", s.ID, errors.Join(readErr, ctx.Err()))
	}
	st, perr := initproc.ParseStatus(line)
	if perr != nil {
		e.statusReadDone()
		<-e.done // the process died before exec; say how
		return nil, &InitError{ID: s.ID, Msg: fmt.Sprintf("%v (%s)", perr, e.exit)}
	}
	if !st.OK {
		return nil, &InitError{ID: s.ID, Code: st.Code, Msg: st.Msg}
	}
	ns := func(a, b int64) time.Duration { return time.Duration(max(0, b-a)) }
	if pooled {
		e.phase("handoff", ns(sent, st.Times[1]))
	} else {
		e.phase("runtime", ns(p.started, st.Times[0]))
		e.phase("prepare", ns(st.Times[0], st.Times[1]))
	}
	e.phase("join", ns(st.Times[1], st.Times[2]))
	e.phase("rootfs", ns(st.Times[2], st.Times[3]))
	e.phase("exec", ns(st.Times[3], execEnd))

	m.mu.Lock()
	closed := m.closed
	if !closed {
		m.envs[s.ID] = e
	}
	m.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	m.log.Debug("sandbox started", "id", s.ID, "pid", e.pid, "phases", e.phases)
	return e, nil
}

// Get returns the live environment with this ID, or nil.
func (m *Manager) Get(id string) *Env {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.envs[id]
}

// Cleanup removes every cgroup under the prefix that belongs to no live or
// starting environment, killing any process still in it. Run it at startup
// to reconcile after a crash; it is safe at any time.
func (m *Manager) Cleanup() error {
	dirs, err := ListCgroups(m.cfg.Prefix)
	if err != nil {
		return err
	}
	errs := []error{removeStalePooled(m.cfg.Prefix, m.cgpool)}
	for _, d := range dirs {
		id := filepath.Base(d)
		m.mu.Lock()
		_, live := m.envs[id]
		m.mu.Unlock()
		if live {
			continue
		}
		killCgroupTasks(d)
		if err := removeCgroup(d); err != nil {
			errs = append(errs, err)
		} else {
			m.log.Info("removed leftover sandbox cgroup", "path", d)
		}
	}
	return errors.Join(errs...)
}

// Close destroys every live environment, ends the pooled init processes and
// stops the spawner threads.
// Start fails with ErrClosed afterwards. The prefix cgroup directories are
// removed if empty.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var live []*Env
	for _, e := range m.envs {
		if e != nil {
			live = append(live, e)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, e := range live {
		errs = append(errs, e.Destroy())
	}
	// Starts in progress hold IDs with nil entries; wait for them to finish.
	for deadline := time.Now().Add(defaultStartLimit); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		m.mu.Lock()
		n := len(m.envs)
		m.mu.Unlock()
		if n == 0 {
			break
		}
	}
	close(m.stop)
	<-m.fillerDone
	if m.cgpool != nil {
		<-m.cgpool.done // it removes its sets
	}
	m.drainPool()
	errs = append(errs, m.ids.Close())
	for _, c := range controllers {
		if err := unix.Rmdir(filepath.Join(CgroupRoot, c, m.cfg.Prefix)); err != nil && err != unix.ENOENT && err != unix.EBUSY && err != unix.ENOTEMPTY {
			errs = append(errs, fmt.Errorf("remove cgroup prefix dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

// String describes the exit for logs and error messages.
func (x ExitInfo) String() string {
	var b strings.Builder
	if x.Signal != "" {
		fmt.Fprintf(&b, "killed by %s", x.Signal)
	} else {
		fmt.Fprintf(&b, "exit status %d", x.Code)
	}
	if x.OOMKilled {
		b.WriteString(", out of memory")
	}
	return b.String()
}

// CleanupPrefix removes every cgroup with prefix — killing what still runs
// in them — and the prefix directories themselves. It is for a prefix whose
// server is gone (a crashed test run); a live server uses Manager.Cleanup.
func CleanupPrefix(prefix string) error {
	dirs, err := listCgroups(prefix, true)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		killCgroupTasks(d)
		errs = append(errs, removeCgroup(d))
	}
	for _, c := range controllers {
		p := filepath.Join(CgroupRoot, c, prefix)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
