package initproc

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// EnvVar carries the encoded Base in the init process's environment.
const EnvVar = "_LAMBDAPLANE_INIT"

// Descriptors the init process is started with (besides 0-2).
const (
	// StatusFD is a pipe on which progress is reported (see package doc).
	StatusFD = 3
	// ControlFD is a SOCK_SEQPACKET socket on which the init process
	// receives one message: the encoded Params, optionally with a network
	// namespace descriptor to join (SCM_RIGHTS). End of file means "not
	// needed any more": the process exits 0 without doing anything.
	ControlFD = 4
	// MaxParamsSize bounds the encoded Params (one socket message).
	MaxParamsSize = 128 << 10
)

// FnRoot is where, inside the init's own root, the function's root is
// built; the function is chrooted into it (see startFunction).
const FnRoot = "/fn"

// Exit codes of the init process when it fails before the function runs.
const (
	// ExitSetup: the environment could not be built (mount, cgroup,
	// credentials). An operator problem, not the function's.
	ExitSetup = 125
	// ExitExec: the command could not be executed (missing, not executable,
	// bad format). Reported to users as Runtime.InvalidEntrypoint.
	ExitExec = 127
)

// Entry is one top-level host path replicated into the new root: a
// read-only bind mount of the same path, or a symlink when Link is set.
type Entry struct {
	Path string
	Link string
}

// Base is the part of the root filesystem that is the same for every
// environment of a manager. It is passed at start (EnvVar) so the process
// builds it before it is assigned an environment.
type Base struct {
	Root    string   // staging mountpoint for the new root
	System  []Entry  // /usr, /lib, /bin, /etc ...
	Devices []string // device nodes to create under /dev (see devNumbers)
}

// Roles of the descriptors attached to the Params message (Params.Fds).
const (
	FdNetns   = "netns"   // a network namespace to join
	FdOutput  = "output"  // becomes stdout and stderr
	FdCgroup  = "cgroup"  // an open cgroup.procs file to join
	FdCode    = "code"    // a detached read-only mount tree for /var/task
	FdOpt     = "opt"     // ... for /opt
	FdRuntime = "runtime" // ... for /var/runtime
)

// MaxFds bounds the descriptors attached to the Params message.
const MaxFds = 16

// Params is the environment-specific part, received on ControlFD with the
// descriptors Fds names attached (SCM_RIGHTS, in that order). The init has
// already pivoted into its root when it receives them, so host paths are
// out of its reach: the cgroups come as open cgroup.procs files and the
// code, layers and runtime as detached mount trees (open_tree clones) that
// are moved into place.
type Params struct {
	Fds         []string // role of each attached descriptor, in order
	CgroupProcs []string // the cgroup.procs files attached (for messages)
	CodeDir     string   // host path of the /var/task tree (for messages)
	OptDir      string   // ... of /opt, "" = empty
	RuntimeDir  string   // ... of /var/runtime, "" = empty
	TmpMB       int      // size of the /tmp tmpfs
	ShmMB       int      // size of the /dev/shm tmpfs
	Hostname    string
	UID         int // the function's uid and gid inside its user namespace
	GID         int
	HostUID     int // what UID and GID map to on the host: this environment's own
	HostGID     int
	Argv        []string
	Env         []string
}

// Encode returns the value for EnvVar.
func (b *Base) Encode() string {
	var e encoder
	e.str(encodingVersion)
	e.str(b.Root)
	e.int(len(b.System))
	for _, x := range b.System {
		e.str(x.Path)
		e.str(x.Link)
	}
	e.strs(b.Devices)
	return string(e.b)
}

// DecodeBase parses the value of EnvVar.
func DecodeBase(s string) (*Base, error) {
	if s == "" {
		return nil, fmt.Errorf("%s is not set: lambdaplane-init is started by the sandbox manager, not by hand", EnvVar)
	}
	d := decoder{s: s}
	d.version()
	b := new(Base)
	b.Root = d.str()
	if n := d.int(); d.err == nil && n <= len(d.s) {
		b.System = make([]Entry, n)
		for i := range b.System {
			b.System[i] = Entry{Path: d.str(), Link: d.str()}
		}
	}
	b.Devices = d.strs()
	if err := d.done(); err != nil {
		return nil, fmt.Errorf("decode %s: %w", EnvVar, err)
	}
	if b.Root == "" {
		return nil, fmt.Errorf("%s: root is required", EnvVar)
	}
	return b, nil
}

// The encoding is a sequence of length-prefixed tokens ("<len>:<bytes>"),
// strings and lists in a fixed order after a version token. It needs no
// reflection (encoding/json costs the init process ~0.5 ms on first use)
// and is safe for any byte except NUL, which environment strings and paths
// cannot contain anyway.
const encodingVersion = "lpi3"

// Encode returns the message sent on ControlFD.
func (p *Params) Encode() string {
	var e encoder
	e.str(encodingVersion)
	e.strs(p.Fds)
	e.strs(p.CgroupProcs)
	e.str(p.CodeDir)
	e.str(p.OptDir)
	e.str(p.RuntimeDir)
	e.int(p.TmpMB)
	e.int(p.ShmMB)
	e.str(p.Hostname)
	e.int(p.UID)
	e.int(p.GID)
	e.int(p.HostUID)
	e.int(p.HostGID)
	e.strs(p.Argv)
	e.strs(p.Env)
	return string(e.b)
}

// Decode parses a message received on ControlFD.
func Decode(s string) (*Params, error) {
	if s == "" {
		return nil, fmt.Errorf("empty parameters")
	}
	d := decoder{s: s}
	d.version()
	p := new(Params)
	p.Fds = d.strs()
	p.CgroupProcs = d.strs()
	p.CodeDir = d.str()
	p.OptDir = d.str()
	p.RuntimeDir = d.str()
	p.TmpMB = d.int()
	p.ShmMB = d.int()
	p.Hostname = d.str()
	p.UID = d.int()
	p.GID = d.int()
	p.HostUID = d.int()
	p.HostGID = d.int()
	p.Argv = d.strs()
	p.Env = d.strs()
	if err := d.done(); err != nil {
		return nil, fmt.Errorf("decode parameters: %w", err)
	}
	if p.CodeDir == "" || len(p.Argv) == 0 {
		return nil, fmt.Errorf("parameters: code directory and argv are required")
	}
	if p.HostUID <= 0 || p.HostGID <= 0 {
		return nil, fmt.Errorf("parameters: host uid/gid %d/%d must be unprivileged", p.HostUID, p.HostGID)
	}
	if len(p.Fds) > MaxFds {
		return nil, fmt.Errorf("parameters: %d descriptors, at most %d", len(p.Fds), MaxFds)
	}
	if !slices.Contains(p.Fds, FdCode) {
		return nil, fmt.Errorf("parameters: no %s descriptor", FdCode)
	}
	return p, nil
}

type encoder struct{ b []byte }

func (e *encoder) str(s string) {
	e.b = strconv.AppendInt(e.b, int64(len(s)), 10)
	e.b = append(e.b, ':')
	e.b = append(e.b, s...)
}

func (e *encoder) int(n int) { e.str(strconv.Itoa(n)) }

func (e *encoder) strs(ss []string) {
	e.int(len(ss))
	for _, s := range ss {
		e.str(s)
	}
}

type decoder struct {
	s   string
	err error
}

func (d *decoder) version() {
	if v := d.str(); v != encodingVersion && d.err == nil {
		d.err = fmt.Errorf("version %q, want %q (init binary and manager from different builds?)", v, encodingVersion)
	}
}

func (d *decoder) done() error {
	if d.err == nil && d.s != "" {
		d.err = fmt.Errorf("%d trailing bytes", len(d.s))
	}
	return d.err
}

func (d *decoder) str() string {
	if d.err != nil {
		return ""
	}
	i := strings.IndexByte(d.s, ':')
	if i < 0 {
		d.err = fmt.Errorf("truncated input")
		return ""
	}
	n, err := strconv.Atoi(d.s[:i])
	if err != nil || n < 0 || n > len(d.s)-i-1 {
		d.err = fmt.Errorf("bad length %q", d.s[:i])
		return ""
	}
	v := d.s[i+1 : i+1+n]
	d.s = d.s[i+1+n:]
	return v
}

func (d *decoder) int() int {
	v := d.str()
	if d.err != nil {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		d.err = fmt.Errorf("bad number %q", v)
	}
	return n
}

func (d *decoder) strs() []string {
	n := d.int()
	if d.err != nil || n > len(d.s) {
		if d.err == nil {
			d.err = fmt.Errorf("bad list length %d", n)
		}
		return nil
	}
	var out []string
	if n > 0 {
		out = make([]string, n)
	}
	for i := range out {
		out[i] = d.str()
	}
	return out
}

// Status is the parsed progress report of one init process.
type Status struct {
	OK    bool
	Times [5]int64 // CLOCK_MONOTONIC ns: main, parameters received, cgroups joined, root built, pre-exec
	Code  int      // exit code when !OK
	Msg   string   // failure message when !OK
}

// ParseStatus parses one status line: "ok <t0> … <t4>" once the function
// runs, or "err <code> <message>" when the environment could not be built
// or the command not executed.
func ParseStatus(line string) (Status, error) {
	var st Status
	line = strings.TrimSpace(line)
	f := strings.SplitN(line, " ", 3)
	switch f[0] {
	case "ok":
		ts := strings.Fields(line)[1:]
		if len(ts) != len(st.Times) {
			return st, fmt.Errorf("malformed status line %q", line)
		}
		for i, s := range ts {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return st, fmt.Errorf("malformed status line %q", line)
			}
			st.Times[i] = v
		}
		st.OK = true
		return st, nil
	case "err":
		if len(f) < 2 {
			return st, fmt.Errorf("malformed status line %q", line)
		}
		code, err := strconv.Atoi(f[1])
		if err != nil {
			return st, fmt.Errorf("malformed status line %q", line)
		}
		st.Code = code
		if len(f) == 3 {
			st.Msg = f[2]
		}
		return st, nil
	case "":
		return st, fmt.Errorf("init process exited without reporting")
	}
	return st, fmt.Errorf("malformed status line %q", line)
}

// ExitLine is the last status line of an init whose function ran: how the
// function (pid 2, the init's child) ended, as a wait(2) status.
func ExitLine(ws unix.WaitStatus) string {
	return "exit " + strconv.FormatUint(uint64(ws), 10) + "\n"
}

// ParseExit parses an ExitLine; ok is false for anything else.
func ParseExit(line string) (ws unix.WaitStatus, ok bool) {
	v, found := strings.CutPrefix(strings.TrimSpace(line), "exit ")
	if !found {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return unix.WaitStatus(n), true
}

// Monotonic returns CLOCK_MONOTONIC in nanoseconds, the clock shared by the
// manager and the init process for phase timings.
func Monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
