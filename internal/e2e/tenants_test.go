package e2e

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// isolationPy tries, from inside a Python function, what a tenant must not
// be able to do, and what ordinary functions do and must keep doing.
const isolationPy = `import ctypes, errno, json, os, select, socket, subprocess, threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
HELD = []


def sc(nr, *args):
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = libc.syscall(ctypes.c_long(nr), *conv)
    if r >= 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def sock(*args):
    try:
        socket.socket(*args).close()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def run(*cmd):
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    return [p.returncode, p.stderr.strip()]


def escape(event, context):
    st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    buf = ctypes.create_string_buffer(128)
    return {
        "uid": os.getuid(), "gid": os.getgid(),
        "Seccomp": st["Seccomp"].strip(), "NoNewPrivs": st["NoNewPrivs"].strip(),
        "unshare -U": run("unshare", "-U", "true"),
        "unshare -n": run("unshare", "-n", "true"),
        "unshare -Urn": run("unshare", "-Urn", "true"),
        "mount": run("mount", "-t", "tmpfs", "none", "/tmp"),
        "add_key": sc(248, b"user", b"k", b"secret-of-" + event["tenant"].encode(), 6, -4),
        "request_key": sc(249, b"user", b"k", None, 0),
        "keyctl": sc(250, 0, -4, 0),
        "io_uring_setup": sc(425, 1, buf),
        "bpf": sc(321, 0, buf, 128),
        "perf_event_open": sc(298, buf, 0, -1, -1, 0),
        "AF_PACKET": sock(socket.AF_PACKET, socket.SOCK_RAW),
        "SOCK_RAW": sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    }


def ordinary(event, context):
    out = {}
    res = []
    ts = [threading.Thread(target=lambda i=i: res.append(i * i)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    out["threads"] = sorted(res)
    out["subprocess"] = subprocess.run(["sh", "-c", "echo sub"], capture_output=True, text=True).stdout.strip()
    ep = select.epoll()
    r, w = os.pipe()
    ep.register(r, select.EPOLLIN)
    os.write(w, b"x")
    out["epoll"] = len(ep.poll(1))
    mask = ctypes.c_uint64(1 << 9)  # SIGUSR1
    out["signalfd"] = sc(289, -1, ctypes.byref(mask), 8, 0)
    out["getrandom"] = len(os.getrandom(16))
    fd = os.memfd_create("x")
    os.write(fd, b"memfd")
    out["memfd"] = os.pread(fd, 5, 0).decode()
    with open("/tmp/f", "w") as f:
        f.write("tmp-io")
    out["tmp"] = open("/tmp/f").read()
    st = os.stat("/tmp")
    out["tmp_owner"] = [st.st_uid, st.st_gid]
    return out


def inotify(event, context):
    n, err = 0, ""
    while n < 100000:
        fd = libc.inotify_init1(0o2000000)
        if fd < 0:
            err = errno.errorcode.get(ctypes.get_errno(), "?")
            break
        HELD.append(fd)
        n += 1
    return {"n": n, "err": err}
`

// isolationJS checks that Node.js keeps its threads and subprocesses under
// the filter (libuv falls back from io_uring, glibc from clone3).
const isolationJS = `const { Worker } = require('worker_threads');
const { execFileSync } = require('child_process');
const fs = require('fs');
exports.handler = async () => {
  const fromWorker = await new Promise((resolve, reject) => {
    const w = new Worker('const { parentPort } = require("worker_threads"); parentPort.postMessage(6 * 7);', { eval: true });
    w.on('message', resolve); w.on('error', reject);
  });
  await fs.promises.writeFile('/tmp/n', 'node-tmp');
  return { worker: fromWorker, sub: execFileSync('sh', ['-c', 'echo sub']).toString().trim(),
           tmp: await fs.promises.readFile('/tmp/n', 'utf8'), uid: process.getuid() };
};
`

// Two accounts on one kernel: each function runs as uid 993 in a user
// namespace of its own, under a seccomp filter, and what one tenant does
// with per-user kernel resources does not reach the other.
func TestTenantIsolationInTheKernel(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	b, err := e.srv.Accounts().Create(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.EnsureExecutionRole(ctx, b.ID, "fn", false); err != nil {
		t.Fatal(err)
	}
	tenants := []struct {
		name, account string
		lc            *lambda.Client
	}{
		{"a", e.srv.Account.ID, e.lambda},
		{"b", b.ID, e.lambdaFor(b.Keys[0].ID, b.Keys[0].Secret)},
	}
	zip := zipOf(t, map[string]string{"iso.py": isolationPy})
	for _, tn := range tenants {
		for _, h := range []string{"escape", "ordinary", "inotify"} {
			if _, err := tn.lc.CreateFunction(ctx, &lambda.CreateFunctionInput{
				FunctionName: aws.String(h), Runtime: "python3.11", Handler: aws.String("iso." + h),
				Role: aws.String("arn:aws:iam::" + tn.account + ":role/fn"), Code: &types.FunctionCode{ZipFile: zip},
				Timeout: aws.Int32(20),
			}); err != nil {
				t.Fatalf("%s: create %s: %v", tn.name, h, err)
			}
		}
	}
	invoke := func(lc *lambda.Client, name string, event any) map[string]any {
		t.Helper()
		payload, _ := json.Marshal(event)
		out, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: payload})
		if err != nil {
			t.Fatalf("invoke %s: %v", name, err)
		}
		if out.FunctionError != nil {
			t.Fatalf("invoke %s: %s: %s", name, *out.FunctionError, out.Payload)
		}
		var m map[string]any
		if err := json.Unmarshal(out.Payload, &m); err != nil {
			t.Fatalf("invoke %s: %v: %s", name, err, out.Payload)
		}
		return m
	}

	t.Run("refused inside a function", func(t *testing.T) {
		for _, tn := range tenants {
			got := invoke(tn.lc, "escape", map[string]string{"tenant": tn.name})
			t.Logf("%s: %v", tn.name, got)
			for k, want := range map[string]any{
				"uid": 993.0, "gid": 993.0, "Seccomp": "2", "NoNewPrivs": "1",
				// A key that cannot be added cannot be read by the other tenant.
				"add_key": "EPERM", "request_key": "EPERM", "keyctl": "EPERM",
				"io_uring_setup": "EPERM", "bpf": "EPERM", "perf_event_open": "EPERM",
				"AF_PACKET": "EPERM", "SOCK_RAW": "EPERM",
			} {
				if got[k] != want {
					t.Errorf("%s: %s = %v, want %v", tn.name, k, got[k], want)
				}
			}
			for _, k := range []string{"unshare -U", "unshare -n", "unshare -Urn", "mount"} {
				r, _ := got[k].([]any)
				if len(r) != 2 || r[0] == 0.0 {
					t.Errorf("%s: %s = %v, want it to fail", tn.name, k, got[k])
				}
			}
		}
	})

	t.Run("ordinary functions keep working", func(t *testing.T) {
		got := invoke(e.lambda, "ordinary", map[string]any{})
		for k, want := range map[string]any{
			"subprocess": "sub", "epoll": 1.0, "signalfd": "ok", "getrandom": 16.0, "memfd": "memfd", "tmp": "tmp-io",
		} {
			if got[k] != want {
				t.Errorf("%s = %v, want %v (%v)", k, got[k], want, got)
			}
		}
		if th, _ := got["threads"].([]any); len(th) != 4 {
			t.Errorf("threads %v", got["threads"])
		}
		if o, _ := got["tmp_owner"].([]any); len(o) != 2 || o[0] != 993.0 || o[1] != 993.0 {
			t.Errorf("/tmp owned by %v, want the function's uid 993", got["tmp_owner"])
		}
		createFn(t, e, "node-iso", "nodejs20.x", "index.handler", zipOf(t, map[string]string{"index.js": isolationJS}))
		n := sdkInvoke(t, e, "node-iso", `{}`)
		if n.FunctionError != "" || n.Payload["worker"] != 42.0 || n.Payload["sub"] != "sub" || n.Payload["tmp"] != "node-tmp" || n.Payload["uid"] != 993.0 {
			t.Errorf("node: %s", n.Raw)
		}
	})

	t.Run("per-user limits are per environment", func(t *testing.T) {
		// A uses up its inotify instances and keeps them (its environment
		// stays warm); B still gets as many.
		a := invoke(e.lambda, "inotify", map[string]any{})
		bb := invoke(tenants[1].lc, "inotify", map[string]any{})
		if a["err"] != "EMFILE" || a["n"] == 0.0 {
			t.Fatalf("a: %v, want instances up to EMFILE", a)
		}
		if bb["n"] != a["n"] {
			t.Errorf("b created %v inotify instances while a held %v", bb["n"], a["n"])
		}
	})
}
