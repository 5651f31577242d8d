package runtimes

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestLookupUnknown(t *testing.T) {
	tab := Default()
	_, err := tab.Lookup("python3.99")
	if err == nil {
		t.Fatal("Lookup(python3.99) succeeded")
	}
	if !errors.Is(err, ErrUnsupportedRuntime) {
		t.Errorf("error %v does not match ErrUnsupportedRuntime", err)
	}
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.ID != "python3.99" {
		t.Fatalf("error %#v is not an *UnsupportedError for python3.99", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `"python3.99"`) {
		t.Errorf("error %q does not name the runtime", msg)
	}
	for _, id := range tab.Available() {
		if !strings.Contains(msg, id) {
			t.Errorf("error %q does not list available runtime %s", msg, id)
		}
	}
	if !strings.Contains(msg, "provided.al2023") {
		t.Errorf("error %q does not list provided.al2023", msg)
	}
}

func TestDefaultTable(t *testing.T) {
	tab := Default()
	py, ok := tab.runtimes["python3.11"]
	if !ok {
		t.Fatal("python3.11 missing")
	}
	if want := []string{"/usr/bin/python3.11", "-S", "-u", "/var/runtime/python/bootstrap.py"}; !reflect.DeepEqual(py.Bootstrap, want) {
		t.Errorf("python3.11 bootstrap = %q", py.Bootstrap)
	}
	if !containsEnv(py.Env, "PYTHONPATH=/var/task:/opt/python/lib/python3.11/site-packages:/opt/python:/var/runtime:/usr/lib/python3/dist-packages") {
		t.Errorf("python3.11 env = %q", py.Env)
	}
	node := tab.runtimes["nodejs20.x"]
	if want := []string{"/usr/bin/node", "/var/runtime/nodejs/bootstrap.js"}; !reflect.DeepEqual(node.Bootstrap, want) {
		t.Errorf("nodejs20.x bootstrap = %q", node.Bootstrap)
	}
	if !containsEnv(node.Env, "NODE_PATH=/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/task:/usr/local/lib/lambdaplane/nodejs/node_modules") {
		t.Errorf("nodejs20.x env = %q", node.Env)
	}
	for _, id := range []string{"provided.al2023", "provided.al2"} {
		r, err := tab.Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Interpreter != "" || !reflect.DeepEqual(r.Bootstrap, []string{"/var/task/bootstrap"}) {
			t.Errorf("%s = %+v", id, r)
		}
	}
	for _, r := range tab.runtimes {
		var path, ld string
		for _, kv := range r.Env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				path = v
			}
			if v, ok := strings.CutPrefix(kv, "LD_LIBRARY_PATH="); ok {
				ld = v
			}
		}
		if !strings.Contains(":"+path+":", ":/opt/bin:") || !strings.Contains(":"+ld+":", ":/opt/lib:") {
			t.Errorf("%s: PATH=%q LD_LIBRARY_PATH=%q lack /opt/bin, /opt/lib", r.ID, path, ld)
		}
	}
}

func containsEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

func TestMissingInterpreter(t *testing.T) {
	tab := Default()
	tab.Add(Python("python3.12", "/nonexistent/python3.12"))
	_, err := tab.Lookup("python3.12")
	if !errors.Is(err, ErrUnsupportedRuntime) || !strings.Contains(err.Error(), "/nonexistent/python3.12") {
		t.Fatalf("Lookup(python3.12) = %v, want unsupported naming the interpreter", err)
	}
	for _, id := range tab.Available() {
		if id == "python3.12" {
			t.Errorf("Available() lists python3.12 without its interpreter: %q", tab.Available())
		}
	}

	fake := Default()
	fake.executable = func(string) bool { return true }
	fake.Add(Python("python3.12", "/nonexistent/python3.12"))
	if _, err := fake.Lookup("python3.12"); err != nil {
		t.Errorf("with an executable interpreter: %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "runtimes.json")
	os.WriteFile(p, []byte(`{"runtimes": [
	  {"id": "python3.12", "interpreter": "/usr/bin/python3.12", "env": ["PYTHONDONTWRITEBYTECODE=0", "EXTRA=1"]},
	  {"id": "nodejs22.x", "interpreter": "/usr/local/bin/node"},
	  {"id": "provided", "env": ["X=y"]},
	  {"id": "ruby3.2", "interpreter": "/usr/bin/ruby", "bootstrap": ["/usr/bin/ruby", "/opt/ric/bootstrap.rb"]}
	]}`), 0o644)
	tab := Default()
	tab.executable = func(string) bool { return true }
	if err := tab.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	py, err := tab.Lookup("python3.12")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/bin/python3.12", "-S", "-u", "/var/runtime/python/bootstrap.py"}; !reflect.DeepEqual(py.Bootstrap, want) {
		t.Errorf("python3.12 bootstrap = %q", py.Bootstrap)
	}
	for _, kv := range []string{"PYTHONPATH=/var/task:/opt/python/lib/python3.12/site-packages:/opt/python:/var/runtime:/usr/lib/python3/dist-packages", "PYTHONDONTWRITEBYTECODE=0", "EXTRA=1"} {
		if !containsEnv(py.Env, kv) {
			t.Errorf("python3.12 env %q lacks %s", py.Env, kv)
		}
	}
	if containsEnv(py.Env, "PYTHONDONTWRITEBYTECODE=1") {
		t.Errorf("configured env did not override the default: %q", py.Env)
	}
	node, _ := tab.Lookup("nodejs22.x")
	if !containsEnv(node.Env, "NODE_PATH=/opt/nodejs/node22/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/task:/usr/local/lib/lambdaplane/nodejs/node_modules") {
		t.Errorf("nodejs22.x env = %q", node.Env)
	}
	if r, _ := tab.Lookup("provided"); !reflect.DeepEqual(r.Bootstrap, []string{"/var/task/bootstrap"}) || !containsEnv(r.Env, "X=y") {
		t.Errorf("provided = %+v", r)
	}
	if r, _ := tab.Lookup("ruby3.2"); r.Bootstrap[1] != "/opt/ric/bootstrap.rb" {
		t.Errorf("ruby3.2 = %+v", r)
	}
	got := strings.Join(tab.Available(), ",")
	if got != "nodejs20.x,nodejs22.x,provided,provided.al2,provided.al2023,python3.11,python3.12,ruby3.2" {
		t.Errorf("Available() = %s", got)
	}

	// A bare array is accepted too; an invalid entry adds nothing.
	os.WriteFile(p, []byte(`[{"id": "python3.13", "interpreter": "/usr/bin/python3.13"}, {"id": "java21"}]`), 0o644)
	if err := tab.LoadFile(p); err == nil || !strings.Contains(err.Error(), "java21") {
		t.Errorf("LoadFile with an entry lacking bootstrap = %v", err)
	}
	if _, err := tab.Lookup("python3.13"); err == nil {
		t.Error("python3.13 was added although the file was rejected")
	}
	os.WriteFile(p, []byte(`{"runtimes": [{"id": "x", "interpeter": "/usr/bin/x"}]}`), 0o644)
	if err := tab.LoadFile(p); err == nil {
		t.Error("LoadFile accepted an unknown field")
	}
}

func TestWriteRuntimeDir(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ { // rewriting is fine
		if err := Default().WriteRuntimeDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"python/bootstrap.py", "nodejs/bootstrap.js", "nodejs/package.json"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 || fi.Size() == 0 {
			t.Errorf("%s: mode %v size %d", f, fi.Mode(), fi.Size())
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "python"))
	if len(entries) != 1 {
		t.Errorf("python/ holds %d entries, want 1 (no temporary files left)", len(entries))
	}
	if got := strings.Join(Files(), ","); got != "nodejs/bootstrap.js,nodejs/package.json,python/bootstrap.py" {
		t.Errorf("Files() = %s", got)
	}
}

// TestWriteRuntimeDirUnchanged: files that already hold the right bytes are
// not written again (a server restarting on a full disk starts), a changed
// or re-moded one is replaced.
func TestWriteRuntimeDirUnchanged(t *testing.T) {
	dir := t.TempDir()
	if err := Default().WriteRuntimeDir(dir); err != nil {
		t.Fatal(err)
	}
	js, py := filepath.Join(dir, "nodejs", "bootstrap.js"), filepath.Join(dir, "python", "bootstrap.py")
	ino := func(p string) uint64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	jsIno := ino(js)
	if err := os.WriteFile(py, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	pyIno := ino(py)
	if err := os.Chmod(filepath.Join(dir, "nodejs", "package.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Default().WriteRuntimeDir(dir); err != nil {
		t.Fatal(err)
	}
	if ino(js) != jsIno {
		t.Error("an unchanged file was written again")
	}
	if ino(py) == pyIno {
		t.Error("a changed file was not replaced")
	}
	if b, _ := os.ReadFile(py); string(b) == "tampered" {
		t.Error("python/bootstrap.py still holds the changed content")
	}
	if fi, _ := os.Stat(filepath.Join(dir, "nodejs", "package.json")); fi.Mode().Perm() != 0o644 {
		t.Errorf("package.json mode %v after rewrite", fi.Mode().Perm())
	}
}

func TestRelocate(t *testing.T) {
	r := Python("python3.11", "/usr/bin/python3.11").Relocate("/tmp/t", "/tmp/r", "/tmp/o")
	if want := []string{"/usr/bin/python3.11", "-S", "-u", "/tmp/r/python/bootstrap.py"}; !reflect.DeepEqual(r.Bootstrap, want) {
		t.Errorf("bootstrap = %q", r.Bootstrap)
	}
	if !containsEnv(r.Env, "PYTHONPATH=/tmp/t:/tmp/o/python/lib/python3.11/site-packages:/tmp/o/python:/tmp/r:/usr/lib/python3/dist-packages") {
		t.Errorf("env = %q", r.Env)
	}
	if !containsEnv(r.Env, "PATH=/usr/local/bin:/usr/bin:/bin:/tmp/o/bin") {
		t.Errorf("env = %q", r.Env)
	}
	// The original is untouched, and /optional is not /opt.
	if Default().runtimes["python3.11"].Bootstrap[3] != "/var/runtime/python/bootstrap.py" {
		t.Error("Relocate changed the table")
	}
	if got := (Runtime{Env: []string{"A=/optional:/opt"}}).Relocate("", "", "/o").Env[0]; got != "A=/optional:/o" {
		t.Errorf("Relocate = %q", got)
	}
}
