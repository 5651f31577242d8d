// Package runtimes is the table of managed runtimes (python3.11, nodejs20.x,
// provided.al2023, ...) and the runtime interface clients that this project
// ships for them.
//
// A Runtime says how to start a function's process inside an execution
// environment: the argv (Bootstrap) and extra environment variables (Env),
// with paths as the sandbox sees them — the function code at /var/task,
// layers at /opt and the runtime files written by WriteRuntimeDir at
// /var/runtime. The interpreters are the host's (Debian's /usr/bin/python3.11,
// /usr/bin/node), which the sandbox mounts read-only.
package runtimes

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Paths inside the sandbox.
const (
	TaskRoot   = "/var/task"
	RuntimeDir = "/var/runtime"
	OptDir     = "/opt"
)

// Path and LDLibraryPath are the PATH and LD_LIBRARY_PATH every runtime gets
// (AWS's values minus /var/lang, which does not exist here).
const (
	Path          = "/usr/local/bin:/usr/bin:/bin:/opt/bin"
	LDLibraryPath = "/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
)

// Runtime is one entry of the table.
type Runtime struct {
	// ID is the Lambda runtime identifier, e.g. "python3.11".
	ID string `json:"id"`
	// Interpreter is the absolute path of the interpreter binary on the host
	// (and, because the sandbox mounts the host's /usr, inside it). Empty for
	// OS-only runtimes whose bootstrap comes with the function code.
	Interpreter string `json:"interpreter,omitempty"`
	// Bootstrap is the argv of the function's process inside the sandbox.
	Bootstrap []string `json:"bootstrap"`
	// Env holds extra variables (KEY=value) such as PYTHONPATH or NODE_PATH.
	// The platform adds the reserved Lambda variables (_HANDLER,
	// AWS_LAMBDA_RUNTIME_API, LAMBDA_TASK_ROOT, ...) and the function's own.
	Env []string `json:"env,omitempty"`
}

// ErrUnsupportedRuntime is matched (errors.Is) by the error Lookup returns.
var ErrUnsupportedRuntime = errors.New("unsupported runtime")

// UnsupportedError says that a runtime identifier cannot be served on this
// host, and which ones can.
type UnsupportedError struct {
	ID        string
	Reason    string // "unknown runtime" or why the host cannot run it
	Available []string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("runtime %q is not supported on this host (%s); available runtimes: %s",
		e.ID, e.Reason, strings.Join(e.Available, ", "))
}

// Is makes errors.Is(err, ErrUnsupportedRuntime) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupportedRuntime }

// Table is a set of runtimes keyed by ID. It is safe for concurrent use.
type Table struct {
	mu       sync.RWMutex
	runtimes map[string]Runtime
	// executable reports whether an interpreter binary is usable; a field
	// so that tests can fake it.
	executable func(path string) bool
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{runtimes: map[string]Runtime{}, executable: isExecutable}
}

// Default returns the built-in table: python3.11 and nodejs20.x with the
// host's Debian interpreters, and the OS-only provided.al2023 / provided.al2.
func Default() *Table {
	t := NewTable()
	t.Add(Python("python3.11", "/usr/bin/python3.11"))
	t.Add(Node("nodejs20.x", "/usr/bin/node"))
	t.Add(Provided("provided.al2023"))
	t.Add(Provided("provided.al2"))
	return t
}

// The AWS SDKs the managed runtimes carry, as on Lambda, found last (a
// function's own copy, in its package or a layer, wins). Both are host
// directories under /usr, which every sandbox sees read-only.
const (
	// PythonSDKDir is Debian's python3 dist-packages: boto3 and botocore
	// (python3-boto3) and their dependencies.
	PythonSDKDir = "/usr/lib/python3/dist-packages"
	// NodeSDKDir holds the JavaScript SDK v3 clients (@aws-sdk/client-*)
	// scripts/setup.sh installs from npm.
	NodeSDKDir = "/usr/local/lib/lambdaplane/nodejs/node_modules"
)

// Python returns the entry for a Python runtime id ("python3.X") run by the
// interpreter at interp with this package's runtime interface client.
// sys.path is ordered as on AWS: the task root, the layer's
// python/lib/python3.X/site-packages, the layer's python, the runtime
// directory, then the standard library (without the host's site-packages).
func Python(id, interp string) Runtime {
	ver := strings.TrimPrefix(id, "python") // "3.11"
	return Runtime{
		ID:          id,
		Interpreter: interp,
		// -S: no site module. The host's site-packages (and the .pth files
		// there, which may import packages at every start) are not part of
		// a function's environment; sys.path is the task root, the layers,
		// the runtime directory and the standard library.
		Bootstrap: []string{interp, "-S", "-u", RuntimeDir + "/python/bootstrap.py"},
		Env: []string{
			"PATH=" + Path,
			"LD_LIBRARY_PATH=" + LDLibraryPath,
			"PYTHONPATH=" + strings.Join([]string{
				TaskRoot,
				OptDir + "/python/lib/python" + ver + "/site-packages",
				OptDir + "/python",
				RuntimeDir,
				PythonSDKDir,
			}, ":"),
			"PYTHONUNBUFFERED=1",
			// /var/task is read-only: do not try to write __pycache__.
			"PYTHONDONTWRITEBYTECODE=1",
		},
	}
}

// Node returns the entry for a Node.js runtime id ("nodejsNN.x") run by the
// interpreter at interp with this package's runtime interface client.
func Node(id, interp string) Runtime {
	major := strings.TrimSuffix(strings.TrimPrefix(id, "nodejs"), ".x") // "20"
	return Runtime{
		ID:          id,
		Interpreter: interp,
		Bootstrap:   []string{interp, RuntimeDir + "/nodejs/bootstrap.js"},
		Env: []string{
			"PATH=" + Path,
			"LD_LIBRARY_PATH=" + LDLibraryPath,
			"NODE_PATH=" + strings.Join([]string{
				OptDir + "/nodejs/node" + major + "/node_modules",
				OptDir + "/nodejs/node_modules",
				RuntimeDir + "/node_modules",
				TaskRoot,
				NodeSDKDir,
			}, ":"),
		},
	}
}

// Provided returns an OS-only runtime entry: the function's own executable
// /var/task/bootstrap implements the Runtime API.
func Provided(id string) Runtime {
	return Runtime{
		ID:        id,
		Bootstrap: []string{TaskRoot + "/bootstrap"},
		Env: []string{
			"PATH=" + Path,
			"LD_LIBRARY_PATH=" + LDLibraryPath,
		},
	}
}

// Add adds r to the table, replacing an entry with the same ID.
func (t *Table) Add(r Runtime) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.runtimes[r.ID] = r.clone()
}

// Lookup returns the runtime id if the host can truly serve it: it is in the
// table and its interpreter (if any) is an executable file. Otherwise the
// error (an *UnsupportedError, matching ErrUnsupportedRuntime) names id and
// lists the available runtimes.
func (t *Table) Lookup(id string) (Runtime, error) {
	t.mu.RLock()
	r, ok := t.runtimes[id]
	t.mu.RUnlock()
	if !ok {
		return Runtime{}, &UnsupportedError{ID: id, Reason: "unknown runtime", Available: t.Available()}
	}
	if r.Interpreter != "" && !t.executable(r.Interpreter) {
		return Runtime{}, &UnsupportedError{ID: id,
			Reason:    fmt.Sprintf("interpreter %s is not installed", r.Interpreter),
			Available: t.Available()}
	}
	return r.clone(), nil
}

// Available returns the sorted IDs of the runtimes the host can serve.
func (t *Table) Available() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var ids []string
	for id, r := range t.runtimes {
		if r.Interpreter == "" || t.executable(r.Interpreter) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// configFile is the JSON accepted by LoadFile: either a bare array of
// runtimes or {"runtimes": [...]}.
type configFile struct {
	Runtimes []Runtime `json:"runtimes"`
}

// LoadFile adds the runtimes listed in the JSON file at path, e.g.
//
//	{"runtimes": [
//	  {"id": "python3.12", "interpreter": "/usr/bin/python3.12"},
//	  {"id": "nodejs22.x", "interpreter": "/usr/local/bin/node"},
//	  {"id": "ruby3.2", "interpreter": "/usr/bin/ruby",
//	   "bootstrap": ["/usr/bin/ruby", "/opt/ric/bootstrap.rb"], "env": ["RUBYLIB=/var/task"]}
//	]}
//
// An entry without "bootstrap" whose id starts with "python" or "nodejs" gets
// this package's runtime interface client and search paths (see Python and
// Node); "provided.*" needs only the id. Entries replace built-in ones with
// the same id. Nothing is added if any entry is invalid.
func (t *Table) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("runtimes: %w", err)
	}
	var cfg configFile
	trimmed := strings.TrimSpace(string(data))
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if strings.HasPrefix(trimmed, "[") {
		err = dec.Decode(&cfg.Runtimes)
	} else {
		err = dec.Decode(&cfg)
	}
	if err != nil {
		return fmt.Errorf("runtimes: %s: %w", path, err)
	}
	var add []Runtime
	for i, r := range cfg.Runtimes {
		full, err := complete(r)
		if err != nil {
			return fmt.Errorf("runtimes: %s: entry %d: %w", path, i, err)
		}
		add = append(add, full)
	}
	for _, r := range add {
		t.Add(r)
	}
	return nil
}

// complete validates a configured entry and fills in bootstrap and env for
// the families this package knows.
func complete(r Runtime) (Runtime, error) {
	if r.ID == "" {
		return r, errors.New(`"id" is required`)
	}
	if r.Interpreter != "" && !filepath.IsAbs(r.Interpreter) {
		return r, fmt.Errorf("%s: interpreter %q must be an absolute path", r.ID, r.Interpreter)
	}
	if len(r.Bootstrap) == 0 {
		switch {
		case strings.HasPrefix(r.ID, "python") && r.Interpreter != "":
			def := Python(r.ID, r.Interpreter)
			r.Bootstrap, r.Env = def.Bootstrap, MergeEnv(def.Env, r.Env)
		case strings.HasPrefix(r.ID, "nodejs") && r.Interpreter != "":
			def := Node(r.ID, r.Interpreter)
			r.Bootstrap, r.Env = def.Bootstrap, MergeEnv(def.Env, r.Env)
		case strings.HasPrefix(r.ID, "provided") && r.Interpreter == "":
			def := Provided(r.ID)
			r.Bootstrap, r.Env = def.Bootstrap, MergeEnv(def.Env, r.Env)
		default:
			return r, fmt.Errorf("%s: \"bootstrap\" is required (only python*, nodejs* with an interpreter and provided* can omit it)", r.ID)
		}
	}
	for _, kv := range r.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return r, fmt.Errorf("%s: env entry %q is not KEY=value", r.ID, kv)
		}
	}
	return r, nil
}

// MergeEnv returns base with the KEY=value entries of over applied: a key in
// both takes over's value (in base's position); new keys are appended.
func MergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	idx := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = i
	}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

func (r Runtime) clone() Runtime {
	r.Bootstrap = append([]string(nil), r.Bootstrap...)
	r.Env = append([]string(nil), r.Env...)
	return r
}

// Relocate returns a copy of r whose paths under /var/task, /var/runtime and
// /opt (in Bootstrap and in the values of Env) point to taskRoot, runtimeDir
// and optDir instead; an empty argument leaves that prefix alone. It is for
// running a runtime without the sandbox's mounts (tests, a development mode).
// The caller also sets LAMBDA_TASK_ROOT and LAMBDA_RUNTIME_DIR, which the
// runtime interface clients honour.
func (r Runtime) Relocate(taskRoot, runtimeDir, optDir string) Runtime {
	out := r.clone()
	repl := func(p string) string {
		for _, m := range [][2]string{{TaskRoot, taskRoot}, {RuntimeDir, runtimeDir}, {OptDir, optDir}} {
			if m[1] == "" {
				continue
			}
			if p == m[0] {
				return m[1]
			}
			if strings.HasPrefix(p, m[0]+"/") {
				return m[1] + p[len(m[0]):]
			}
		}
		return p
	}
	for i, a := range out.Bootstrap {
		out.Bootstrap[i] = repl(a)
	}
	for i, kv := range out.Env {
		k, v, _ := strings.Cut(kv, "=")
		parts := strings.Split(v, ":")
		for j, p := range parts {
			parts[j] = repl(p)
		}
		out.Env[i] = k + "=" + strings.Join(parts, ":")
	}
	return out
}

// ric holds the runtime interface clients; WriteRuntimeDir writes them out.
// (Names starting with "." or "_", such as __pycache__, are not embedded.)
//
//go:embed ric
var ric embed.FS

// WriteRuntimeDir writes the runtime interface clients (python/bootstrap.py,
// nodejs/bootstrap.js, nodejs/package.json) into dir, which the sandbox
// mounts read-only at /var/runtime. Files are written atomically (temporary
// file and rename) with mode 0644 under 0755 directories, so rewriting a
// directory in use is safe. A file that already holds the same bytes with
// mode 0644 is left alone: a server restarting on a full disk writes nothing.
func (t *Table) WriteRuntimeDir(dir string) error {
	return fs.WalkDir(ric, "ric", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, "ric"), "/")
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if d.IsDir() {
			if fi, err := os.Lstat(dst); err == nil && fi.IsDir() && fi.Mode().Perm() == 0o755 {
				return nil
			}
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("runtimes: %w", err)
			}
			return os.Chmod(dst, 0o755)
		}
		data, err := ric.ReadFile(p)
		if err != nil {
			return err
		}
		if sameFile(dst, data, 0o644) {
			return nil
		}
		return writeAtomic(dst, data)
	})
}

// Files returns the relative paths (slash-separated) WriteRuntimeDir writes.
func Files() []string {
	var out []string
	_ = fs.WalkDir(ric, "ric", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, path.Clean(strings.TrimPrefix(p, "ric/")))
		}
		return nil
	})
	return out
}

// sameFile reports whether p is a regular file holding data with mode perm.
func sameFile(p string, data []byte, perm fs.FileMode) bool {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != perm || fi.Size() != int64(len(data)) {
		return false
	}
	cur, err := os.ReadFile(p)
	return err == nil && bytes.Equal(cur, data)
}

func writeAtomic(dst string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return fmt.Errorf("runtimes: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp, dst)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("runtimes: writing %s: %w", dst, werr)
	}
	return nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
