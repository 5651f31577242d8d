package invoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/hyperplane"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/runtimeapi"
	"github.com/lambdaplane/lambdaplane/internal/runtimes"
	"github.com/lambdaplane/lambdaplane/internal/sandbox"
)

// RuntimeAPIAddr is where every environment finds its Runtime API.
const RuntimeAPIAddr = "127.0.0.1:9001"

// initTimeout bounds the init phase (process start until the first /next).
const initTimeout = 10 * time.Second

// exitInvalidEntrypoint is the code lambdaplane-init exits with when the
// command cannot be executed.
const exitInvalidEntrypoint = 127

// Phase is one cold-start step: when it started and how long it took.
type Phase struct {
	Name  string
	Start time.Time
	D     time.Duration
}

// env is one execution environment.
type env struct {
	id        string
	key       poolKey
	cfg       *control.Config
	logStream string
	creds     *Credentials // its execution role's (credentials.go); nil: none
	// provisioned: started ahead by SetProvisioned (provisioned.go).
	provisioned bool

	net     *netdev.EnvNet
	attach  *hyperplane.Attachment
	ln      net.Listener
	rapi    *runtimeapi.Server
	capture *logs.Capture
	proc    *sandbox.Env

	phases   []Phase
	initDur  time.Duration
	cold     bool // the next invoke is its first
	lastUsed time.Time

	// The scheduler's books (warmBook), under its mutex.
	pool       *pool // nil: not kept after its invoke (a superseded key)
	busy       bool
	memMB      int  // charged against the memory budget
	maxMemMB   int  // the cgroup's high-water mark after the last invoke
	listed     bool // in the idle list
	prev, next *env // the idle list, least recently used first

	unclean bool // a teardown hook failed: its namespace is not reused

	destroyOnce sync.Once
	hooks       []hook
	release     func() // the lease on the code it runs (Control.Lease)
}

// hook is one step of an environment's life (nomad allocrunner style):
// prerun in order, destroy in reverse; each reports its own duration.
type hook interface {
	name() string
	prerun(ctx context.Context, s *Scheduler, e *env) error
	destroy(s *Scheduler, e *env) error
}

type netnsHook struct{}

func (netnsHook) name() string { return "namespace" }
func (netnsHook) prerun(ctx context.Context, s *Scheduler, e *env) error {
	for {
		n := s.netStash.take(e.cfg.AccountID)
		if n == nil {
			break
		}
		if _, err := os.Stat(n.Path); err != nil { // removed from outside meanwhile
			s.netTeardown.add(n)
			continue
		}
		// The Runtime API's address must be free in a reused namespace:
		// bind it now (runtimeAPIHook serves on this listener). One where
		// something still listens there is not reused (seen once in a
		// cluster test: a cold start failed with EADDRINUSE).
		ln, err := netdev.ListenIn(n.Path, "tcp", RuntimeAPIAddr)
		if err != nil {
			s.log.Warn("a reused network namespace still has the Runtime API's address in use; deleting it instead", "netns", n.Name, "err", err)
			s.netTeardown.add(n)
			continue
		}
		e.net, e.ln = n, ln
		return nil
	}
	n, err := s.o.Router.Take(ctx)
	if err != nil {
		return fmt.Errorf("take network namespace: %w", err)
	}
	e.net = n
	return nil
}
func (netnsHook) destroy(s *Scheduler, e *env) error {
	if e.rapi == nil && e.ln != nil {
		e.ln.Close() // bound here, and the Runtime API never started
		e.ln = nil
	}
	if e.net == nil {
		return nil
	}
	// The namespace goes to the account's next cold start when nothing
	// of this environment can be left in it (every other hook's teardown
	// succeeded: processes reaped, VPC attachment removed). Otherwise, or
	// when the stash is full, it is deleted; deleting a veth and a
	// namespace holds the kernel's rtnl lock for milliseconds, and the
	// router's netlink socket is shared with cold starts: a few teardown
	// workers do it, so that a wave of superseded or reaped environments
	// cannot queue cold starts behind it.
	if !e.unclean && s.netStash.put(e.cfg.AccountID, e.net, time.Now()) {
		return nil
	}
	s.netTeardown.add(e.net)
	return nil
}

// vpcHook attaches a VPC function's environment to its Hyperplane ENI: the
// whole VPC cost of a cold start (two map elements; nothing is created).
// In per-env-eni mode it creates the environment's own ENI instead.
type vpcHook struct{}

func (vpcHook) name() string { return "vpc_attach" }
func (vpcHook) prerun(ctx context.Context, s *Scheduler, e *env) error {
	v := e.cfg.VpcConfig
	if v == nil {
		return nil
	}
	hp := s.o.Networks
	if hp == nil {
		return &control.Error{Code: "ServiceException", Status: 500, Message: "this server has no VPC datapath; the function's VpcConfig cannot be honoured"}
	}
	n := int(s.spread.Add(1))
	var a *hyperplane.Attachment
	var err error
	if hp.Mode() == hyperplane.ModePerEnvENI {
		a, err = hp.AttachPerEnv(ctx, e.net.Addr, e.cfg.AccountID, v.NetUser, v.SubnetIDs[n%len(v.SubnetIDs)], v.SecurityGroupIDs)
	} else {
		enis := hp.ENIsFor(e.cfg.AccountID, v.NetUser)
		if len(enis) == 0 {
			return &control.Error{Code: "ResourceNotReadyException", Status: 502, Message: "The function's network interfaces are not set up on this host (yet); retry, or update the function's VpcConfig to set them up again."}
		}
		a, err = hp.Attach(ctx, e.net.Addr, enis[n%len(enis)])
	}
	if err != nil {
		return attachError(err)
	}
	e.attach = a
	return nil
}
func (vpcHook) destroy(s *Scheduler, e *env) error {
	if e.attach == nil {
		return nil
	}
	return e.attach.Detach()
}

// attachError maps an attach failure to the invoke's 502 error.
func attachError(err error) error {
	code := map[string]string{
		hyperplane.ReasonSubnetOutOfIPAddresses: "SubnetIPAddressLimitReachedException",
		hyperplane.ReasonEniLimitExceeded:       "ENILimitReachedException",
		hyperplane.ReasonInvalidSubnet:          "InvalidSubnetIDException",
		hyperplane.ReasonInvalidSecurityGroup:   "InvalidSecurityGroupIDException",
	}[hyperplane.ReasonOf(err)]
	if code == "" {
		code = "EC2UnexpectedException"
	}
	return &control.Error{Code: code, Status: 502, Message: err.Error()}
}

type runtimeAPIHook struct{}

func (runtimeAPIHook) name() string { return "runtime_api" }
func (runtimeAPIHook) prerun(ctx context.Context, s *Scheduler, e *env) error {
	ln := e.ln // bound already in a reused namespace (netnsHook)
	if ln == nil {
		var err error
		if ln, err = netdev.ListenIn(e.net.Path, "tcp", RuntimeAPIAddr); err != nil {
			return fmt.Errorf("open Runtime API in %s: %w", e.net.Name, err)
		}
	}
	e.ln = ln
	e.rapi = runtimeapi.New(runtimeapi.Options{Logger: s.log})
	go func() { _ = e.rapi.Serve(ln) }()
	return nil
}
func (runtimeAPIHook) destroy(s *Scheduler, e *env) error {
	if e.rapi != nil {
		e.rapi.Close()
	}
	if e.ln != nil {
		e.ln.Close()
	}
	return nil
}

type processHook struct {
	codeDir string
	optDir  string // merged layers, "" = empty /opt
	rt      runtimes.Runtime
}

func (processHook) name() string { return "process" }
func (h processHook) prerun(ctx context.Context, s *Scheduler, e *env) error {
	c, err := logs.NewCapture(1<<20, s.o.LogRate)
	if err != nil {
		return err
	}
	e.capture = c
	p, err := s.o.Sandbox.Start(ctx, sandbox.Spec{
		ID:          e.id,
		NetnsPath:   e.net.Path,
		CodeDir:     h.codeDir,
		OptDir:      h.optDir,
		RuntimeDir:  s.o.RuntimeDir,
		Command:     h.rt.Bootstrap,
		Env:         s.environ(e, h.rt),
		MemoryMB:    e.cfg.MemorySize,
		EphemeralMB: e.cfg.EphemeralStorage,
		Stdout:      c.Writer(),
	})
	c.CloseWriter()
	if err != nil {
		return fmt.Errorf("start sandbox: %w", err)
	}
	e.proc = p
	return nil
}
func (processHook) destroy(s *Scheduler, e *env) error {
	var err error
	if e.proc != nil {
		err = e.proc.Destroy()
	}
	if e.capture != nil {
		e.capture.Close()
	}
	return err
}

func newEnvID() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func logStreamName(version string, now time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("2006/01/02") + "/[" + version + "]" + hex.EncodeToString(b[:])
}

// environ builds the process environment as Lambda sets it; the function's
// own variables come first and the reserved ones are appended after them,
// so they cannot be overridden.
func (s *Scheduler) environ(e *env, rt runtimes.Runtime) []string {
	c := e.cfg
	out := make([]string, 0, len(c.Environment)+24)
	for k, v := range c.Environment {
		if !control.IsReservedEnv(k) {
			out = append(out, k+"="+v)
		}
	}
	// Go sizes its scheduler by the host's CPUs; an environment is allotted
	// fewer (sandbox.VCPUs), and a Go function told so spends far less time
	// handing work between idle threads. A function may set its own.
	if _, ok := c.Environment["GOMAXPROCS"]; !ok {
		out = append(out, "GOMAXPROCS="+strconv.Itoa(sandbox.VCPUs(c.MemorySize)))
	}
	path := "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
	ld := "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
	out = append(out,
		"_HANDLER="+c.Handler,
		"AWS_REGION="+c.Region,
		"AWS_DEFAULT_REGION="+c.Region,
		"AWS_LAMBDA_FUNCTION_NAME="+c.FunctionName,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="+strconv.Itoa(c.MemorySize),
		"AWS_LAMBDA_FUNCTION_VERSION="+c.Version,
		"AWS_LAMBDA_INITIALIZATION_TYPE="+e.initType(),
		"AWS_LAMBDA_LOG_GROUP_NAME="+c.LogGroupName(),
		"AWS_LAMBDA_LOG_STREAM_NAME="+e.logStream,
		"AWS_LAMBDA_RUNTIME_API="+RuntimeAPIAddr,
		"LAMBDA_TASK_ROOT=/var/task",
		"LAMBDA_RUNTIME_DIR=/var/runtime",
		"TZ=:UTC",
		"LANG=en_US.UTF-8",
		"HOME=/tmp",
	)
	out = append(out, s.credsEnviron(e)...)
	if l := c.Logging(); l.LogFormat == control.LogFormatJSON {
		// LoggingConfig JSON: runtimes format their logs as JSON records
		// and filter them at this level, as the managed runtimes do.
		out = append(out, "AWS_LAMBDA_LOG_FORMAT=JSON", "AWS_LAMBDA_LOG_LEVEL="+l.ApplicationLogLevel)
	}
	if rt.Interpreter != "" {
		out = append(out, "AWS_EXECUTION_ENV=AWS_Lambda_"+c.Runtime)
	}
	hasPath, hasLD := false, false
	for _, kv := range rt.Env {
		switch {
		case len(kv) > 5 && kv[:5] == "PATH=":
			hasPath = true
		case len(kv) > 16 && kv[:16] == "LD_LIBRARY_PATH=":
			hasLD = true
		}
		out = append(out, kv)
	}
	if !hasPath {
		out = append(out, "PATH="+path)
	}
	if !hasLD {
		out = append(out, "LD_LIBRARY_PATH="+ld)
	}
	return out
}

// coldStart builds a new environment for cfg and waits until its runtime
// asked for the first invocation.
// initFailure is a cold start that ended before the runtime was ready:
// the error to report and what the process printed until then.
type initFailure struct {
	fe     *runtimeapi.FunctionError
	output []byte
}

func (s *Scheduler) coldStart(ctx context.Context, key poolKey, cfg *control.Config) (*env, *initFailure, error) {
	rt, err := s.o.Runtimes.Lookup(cfg.Runtime)
	if err != nil {
		return nil, nil, control.InvalidParam("%v", err)
	}
	// The code stays on disk while the environment lives, even if its
	// function is deleted or updated meanwhile (released by destroy).
	release := s.o.Control.Lease(cfg)
	codeDir, err := s.o.Control.CodeDir(ctx, cfg)
	if err != nil {
		release()
		return nil, nil, err
	}
	optDir, err := s.o.Control.OptDir(ctx, cfg)
	if err != nil {
		release()
		return nil, nil, err
	}
	creds, err := s.credentials(ctx, cfg)
	if err != nil {
		release()
		return nil, nil, err
	}
	now := time.Now()
	e := &env{id: newEnvID(), key: key, cfg: cfg, cold: true, logStream: logStreamName(cfg.Version, now), release: release, creds: creds, provisioned: isProvisioned(ctx)}
	e.hooks = []hook{netnsHook{}, vpcHook{}, runtimeAPIHook{}, processHook{codeDir: codeDir, optDir: optDir, rt: rt}}
	for i, h := range e.hooks {
		t := time.Now()
		if err := h.prerun(ctx, s, e); err != nil {
			var out []byte
			if e.capture != nil {
				out = e.capture.Take()
			}
			e.unclean = true // a half-built environment's namespace is not reused
			for j := i; j >= 0; j-- {
				_ = e.hooks[j].destroy(s, e)
			}
			release()
			if errors.Is(err, sandbox.ErrInvalidEntrypoint) {
				msg := "RequestId: Error: Couldn't find valid bootstrap(s): " + fmt.Sprint(rt.Bootstrap)
				if len(out) > 0 {
					msg += ": " + trimOutput(out)
				}
				return nil, &initFailure{fe: &runtimeapi.FunctionError{Type: "Runtime.InvalidEntrypoint", Message: msg}, output: out}, nil
			}
			return nil, nil, err
		}
		e.phases = append(e.phases, Phase{Name: h.name(), Start: t, D: time.Since(t)})
	}
	s.metrics.envCreated()
	if e.proc != nil {
		for _, p := range e.proc.Phases() {
			e.phases = append(e.phases, Phase{Name: "sandbox_" + p.Name, D: p.D})
		}
	}
	started := time.Now()
	timer := time.NewTimer(initTimeout)
	defer timer.Stop()
	select {
	case <-e.rapi.Ready():
		e.initDur = time.Since(started)
		e.phases = append(e.phases, Phase{Name: "runtime_init", Start: started, D: e.initDur})
		s.metrics.observeColdStart(cfg, e.phases)
		return e, nil, nil
	case fe := <-e.rapi.InitError():
		out := e.capture.Take()
		s.destroy(e)
		return nil, &initFailure{fe: fe, output: out}, nil
	case <-e.proc.Done():
		fe := s.exitError(e, "")
		out := e.capture.Take()
		s.destroy(e)
		return nil, &initFailure{fe: fe, output: out}, nil
	case <-timer.C:
		out := e.capture.Take()
		s.destroy(e)
		return nil, &initFailure{fe: &runtimeapi.FunctionError{Type: "Sandbox.Timedout", Message: fmt.Sprintf("Init phase timed out after %.2f seconds", initTimeout.Seconds())}, output: out}, nil
	case <-ctx.Done():
		s.destroy(e)
		return nil, nil, ctx.Err()
	}
}

// exitError describes why an environment's process ended.
func (s *Scheduler) exitError(e *env, requestID string) *runtimeapi.FunctionError {
	x := e.proc.Exit()
	prefix := ""
	if requestID != "" {
		prefix = "RequestId: " + requestID + " "
	}
	switch {
	case x.OOMKilled:
		return &runtimeapi.FunctionError{Type: "Runtime.OutOfMemory", Message: prefix + "Error: Runtime exited with error: signal: killed (memory limit of " + strconv.Itoa(e.cfg.MemorySize) + " MB exceeded)"}
	case x.Code == exitInvalidEntrypoint:
		out := e.capture.Take()
		msg := "Couldn't find valid bootstrap(s): " + fmt.Sprint(e.cfgBootstrap())
		if len(out) > 0 {
			msg += ": " + trimOutput(out)
		}
		return &runtimeapi.FunctionError{Type: "Runtime.InvalidEntrypoint", Message: prefix + "Error: " + msg}
	case x.Signal != "":
		return &runtimeapi.FunctionError{Type: "Runtime.ExitError", Message: prefix + "Error: Runtime exited with error: signal: " + x.Signal}
	default:
		return &runtimeapi.FunctionError{Type: "Runtime.ExitError", Message: prefix + "Error: Runtime exited with error: exit status " + strconv.Itoa(x.Code)}
	}
}

func (e *env) cfgBootstrap() []string {
	for _, h := range e.hooks {
		if p, ok := h.(processHook); ok {
			return p.rt.Bootstrap
		}
	}
	return nil
}

func trimOutput(b []byte) string {
	const max = 512
	if len(b) > max {
		b = b[len(b)-max:]
	}
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// destroy tears an environment down (hooks in reverse); idempotent.
func (s *Scheduler) destroy(e *env) {
	e.destroyOnce.Do(func() {
		var errs []error
		for i := len(e.hooks) - 1; i >= 0; i-- {
			e.unclean = e.unclean || len(errs) > 0
			if err := e.hooks[i].destroy(s, e); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.hooks[i].name(), err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			s.log.Warn("environment teardown incomplete", "env", e.id, "err", err)
		}
		if e.release != nil {
			e.release()
		}
		s.metrics.envDestroyed()
	})
}

// errProcessExited ends an invoke whose runtime process died first.
var errProcessExited = errors.New("runtime process exited")
