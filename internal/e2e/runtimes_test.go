package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// runtimeSuite is one managed runtime's test material: a function package
// with several handlers and a layer.
type runtimeSuite struct {
	runtime  string
	code     map[string]string
	layer    map[string]string
	handlers map[string]string // role -> handler string
	// expected error types
	raiseType, importMsg string
}

var pythonSuite = runtimeSuite{
	runtime: "python3.11",
	code: map[string]string{
		"app.py": `import os, subprocess, sys, time

# Module-level init: runs once per environment.
with open("/tmp/inits", "a") as f:
    f.write("x\n")
print("init-ran: module loaded")
CALLS = 0


def handler(event, context):
    global CALLS
    CALLS += 1
    out = {"event": event, "calls": CALLS, "pid": os.getpid(),
           "inits": len(open("/tmp/inits").read().split()),
           "requestId": context.aws_request_id,
           "remaining": context.get_remaining_time_in_millis()}
    if event.get("layer"):
        import shared, sitepkg
        out["layer"] = {
            "shared": shared.VALUE, "versioned": sitepkg.VALUE,
            "tool": subprocess.run(["tool"], capture_output=True, text=True).stdout.strip(),
            "which": open("/opt/data/which.txt").read().strip(),
        }
        out["env"] = {k: os.environ.get(k) for k in ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "HOME")}
    return out


def logs(event, context):
    print("print-line", event.get("n"))
    sys.stderr.write("stderr-line\n")
    import logging
    logging.getLogger().warning("logging-line")
    return "logged"


def boom(event, context):
    raise ValueError("bad input: %s" % event.get("x"))


def slow(event, context):
    time.sleep(10)
`,
		"broken.py":       "import not_a_real_module\n\ndef handler(event, context):\n    return 1\n",
		"syntax.py":       "def handler(event, context)\n    return 1\n",
		"pkg/__init__.py": "",
		"pkg/mod.py":      "def handler(event, context):\n    return {'nested': True}\n",
	},
	layer: map[string]string{
		"python/shared.py": `VALUE = "shared-from-layer"` + "\n",
		"python/lib/python3.11/site-packages/sitepkg/__init__.py": `VALUE = "site-packages-from-layer"` + "\n",
		"bin/tool*":      "#!/bin/sh\necho tool-ran\n",
		"data/which.txt": "libs\n",
	},
	handlers: map[string]string{
		"app": "app.handler", "logs": "app.logs", "raise": "app.boom", "slow": "app.slow",
		"import": "broken.handler", "syntax": "syntax.handler", "notfound": "app.nope", "nested": "pkg/mod.handler",
	},
	raiseType: "ValueError",
	importMsg: "Unable to import module 'broken': No module named 'not_a_real_module'",
}

var nodeSuite = runtimeSuite{
	runtime: "nodejs20.x",
	code: map[string]string{
		"app.js": `const fs = require('fs');
const { execFileSync } = require('child_process');

// Module-level init: runs once per environment.
fs.appendFileSync('/tmp/inits', 'x\n');
console.log('init-ran: module loaded');
let calls = 0;

exports.handler = async (event, context) => {
  calls++;
  const out = {
    event, calls, pid: process.pid,
    inits: fs.readFileSync('/tmp/inits', 'utf8').trim().split('\n').length,
    requestId: context.awsRequestId, remaining: context.getRemainingTimeInMillis(),
  };
  if (event.layer) {
    out.layer = {
      shared: require('shared').VALUE, versioned: require('verpkg').VALUE,
      tool: execFileSync('tool').toString().trim(),
      which: fs.readFileSync('/opt/data/which.txt', 'utf8').trim(),
    };
    out.env = { PATH: process.env.PATH, LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH, NODE_PATH: process.env.NODE_PATH, HOME: process.env.HOME };
  }
  return out;
};

exports.logs = async (event) => {
  console.log('print-line', event.n);
  process.stderr.write('stderr-line\n');
  console.error('logging-line');
  return 'logged';
};

exports.boom = async (event) => { throw new TypeError('bad input: ' + event.x); };
exports.slow = () => new Promise((r) => setTimeout(r, 10000));
exports.callback = (event, context, cb) => { cb(null, { callback: true }); };
`,
		"esm/index.mjs": `import { readFileSync } from 'node:fs';
const started = Date.now();
await Promise.resolve(); // top-level await
let calls = 0;
export const handler = async (event) => { calls++; return { esm: true, calls, started }; };
`,
		"esmpkg/package.json": `{"type": "module"}`,
		"esmpkg/app.js":       "export async function handler() { return { esmpkg: true }; }\n",
		"broken.js":           "require('not-a-real-module');\nexports.handler = async () => 1;\n",
		"syntax.js":           "exports.handler = async (e) => { return 1;\n",
	},
	layer: map[string]string{
		"nodejs/node_modules/shared/index.js":        "exports.VALUE = 'shared-from-layer';\n",
		"nodejs/node20/node_modules/verpkg/index.js": "exports.VALUE = 'node20-from-layer';\n",
		"bin/tool*":      "#!/bin/sh\necho tool-ran\n",
		"data/which.txt": "libs\n",
	},
	handlers: map[string]string{
		"app": "app.handler", "logs": "app.logs", "raise": "app.boom", "slow": "app.slow",
		"import": "broken.handler", "syntax": "syntax.handler", "notfound": "app.nope",
		"esm": "esm/index.handler", "esmpkg": "esmpkg/app.handler", "callback": "app.callback",
	},
	raiseType: "TypeError",
	importMsg: "Cannot find module 'not-a-real-module'",
}

// TestManagedRuntimes runs Python and Node.js functions in real sandboxes,
// driven by /usr/bin/aws where a user would use it.
func TestManagedRuntimes(t *testing.T) {
	t.Parallel()
	e := startServer(t, func(c *serverConfig) { c.PoolSize = 8 })
	for _, s := range []runtimeSuite{pythonSuite, nodeSuite} {
		t.Run(s.runtime, func(t *testing.T) {
			t.Parallel()
			testRuntime(t, e, s)
		})
	}
}

func testRuntime(t *testing.T, e *env, s runtimeSuite) {
	p := strings.NewReplacer(".", "", "x", "")
	prefix := p.Replace(s.runtime)
	codeZip := zipOf(t, s.code)
	codePath := filepath.Join(t.TempDir(), "code.zip")
	writeFile(t, codePath, codeZip)

	// Publish the layer and create the function with it, as a user would.
	var layer struct {
		LayerVersionArn string
		Version         int64
	}
	awsCLI(t, e, &layer, "lambda", "publish-layer-version", "--layer-name", prefix+"-libs",
		"--zip-file", "fileb://"+zipFileOf(t, s.layer), "--compatible-runtimes", s.runtime)
	if layer.Version != 1 || !strings.HasSuffix(layer.LayerVersionArn, ":layer:"+prefix+"-libs:1") {
		t.Fatalf("published layer %+v", layer)
	}
	var created struct {
		Layers []struct {
			Arn      string
			CodeSize int64
		}
	}
	awsCLI(t, e, &created, "lambda", "create-function", "--function-name", prefix+"-app", "--runtime", s.runtime,
		"--handler", s.handlers["app"], "--role", "arn:aws:iam::"+e.srv.Account.ID+":role/fn",
		"--zip-file", "fileb://"+codePath, "--layers", layer.LayerVersionArn, "--timeout", "5")
	if len(created.Layers) != 1 || created.Layers[0].Arn != layer.LayerVersionArn || created.Layers[0].CodeSize == 0 {
		t.Fatalf("configuration Layers %+v", created.Layers)
	}

	t.Run("json and layer", func(t *testing.T) {
		r := cliInvoke(t, e, prefix+"-app", `{"hello":"world","layer":true}`)
		t.Logf("payload %s\nlog:\n%s", r.Raw, r.Log)
		if r.FunctionError != "" {
			t.Fatalf("function error: %s\n%s", r.Raw, r.Log)
		}
		if ev, _ := r.Payload["event"].(map[string]any); ev["hello"] != "world" {
			t.Errorf("event not echoed: %s", r.Raw)
		}
		l, _ := r.Payload["layer"].(map[string]any)
		want := map[string]string{"shared": "shared-from-layer", "tool": "tool-ran", "which": "libs"}
		if s.runtime == "python3.11" {
			want["versioned"] = "site-packages-from-layer"
		} else {
			want["versioned"] = "node20-from-layer"
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("layer %s = %v, want %q (payload %s)", k, l[k], v, r.Raw)
			}
		}
		if env, _ := r.Payload["env"].(map[string]any); env["HOME"] != "/tmp" || !strings.Contains(fmt.Sprint(env["PATH"]), "/opt/bin") || !strings.Contains(fmt.Sprint(env["LD_LIBRARY_PATH"]), "/opt/lib") {
			t.Errorf("environment %v", env)
		}
		for _, w := range []string{"init-ran: module loaded", "START RequestId:", "END RequestId:", "REPORT RequestId:", "Init Duration:"} {
			if !strings.Contains(r.Log, w) {
				t.Errorf("log tail lacks %q:\n%s", w, r.Log)
			}
		}
	})

	t.Run("warm state and init once", func(t *testing.T) {
		first := sdkInvoke(t, e, prefix+"-app", `{}`)
		second := sdkInvoke(t, e, prefix+"-app", `{}`)
		if first.Payload["pid"] != second.Payload["pid"] || second.Payload["calls"].(float64) != first.Payload["calls"].(float64)+1 {
			t.Errorf("warm invokes did not share the environment: %s then %s", first.Raw, second.Raw)
		}
		if second.Payload["inits"] != 1.0 {
			t.Errorf("module init ran %v times in one environment", second.Payload["inits"])
		}
		if strings.Contains(second.Log, "Init Duration") || strings.Contains(second.Log, "init-ran") {
			t.Errorf("warm invoke logged init:\n%s", second.Log)
		}
	})

	// The other handlers live in the same package.
	for _, role := range []string{"logs", "raise", "slow", "import", "syntax", "notfound", "nested", "esm", "esmpkg", "callback"} {
		h, ok := s.handlers[role]
		if !ok {
			continue
		}
		createFn(t, e, prefix+"-"+role, s.runtime, h, codeZip, func(in *lambda.CreateFunctionInput) {
			if role == "slow" {
				in.Timeout = aws.Int32(1)
			}
		})
	}

	t.Run("logs", func(t *testing.T) {
		r := cliInvoke(t, e, prefix+"-logs", `{"n":3}`)
		if r.Raw != `"logged"` {
			t.Errorf("payload %s", r.Raw)
		}
		for _, w := range []string{"print-line 3", "stderr-line", "logging-line"} {
			if !strings.Contains(r.Log, w) {
				t.Errorf("log tail lacks %q:\n%s", w, r.Log)
			}
		}
	})

	t.Run("exception", func(t *testing.T) {
		r := cliInvoke(t, e, prefix+"-raise", `{"x":7}`)
		t.Logf("payload %s\nlog:\n%s", r.Raw, r.Log)
		if r.FunctionError != "Unhandled" || r.Payload["errorType"] != s.raiseType || r.Payload["errorMessage"] != "bad input: 7" {
			t.Fatalf("error %q %s", r.FunctionError, r.Raw)
		}
		st, ok := r.Payload["stackTrace"].([]any)
		if !ok || len(st) == 0 || !strings.Contains(fmt.Sprint(st), "app.") {
			t.Errorf("stackTrace %v", r.Payload["stackTrace"])
		}
		if !strings.Contains(r.Log, "bad input: 7") {
			t.Errorf("the error is not in the log:\n%s", r.Log)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		r := sdkInvoke(t, e, prefix+"-slow", `{}`)
		if r.FunctionError != "Unhandled" || !strings.Contains(fmt.Sprint(r.Payload["errorMessage"]), "Task timed out after 1.00 seconds") {
			t.Fatalf("timeout: %q %s", r.FunctionError, r.Raw)
		}
	})

	t.Run("import error", func(t *testing.T) {
		r := cliInvoke(t, e, prefix+"-import", `{}`)
		t.Logf("payload %s\nlog:\n%s", r.Raw, r.Log)
		if r.FunctionError != "Unhandled" || r.Payload["errorType"] != "Runtime.ImportModuleError" || !strings.Contains(fmt.Sprint(r.Payload["errorMessage"]), s.importMsg) {
			t.Fatalf("import error: %q %s", r.FunctionError, r.Raw)
		}
	})

	t.Run("init errors", func(t *testing.T) {
		for role, typ := range map[string]string{"syntax": "Runtime.UserCodeSyntaxError", "notfound": "Runtime.HandlerNotFound"} {
			r := sdkInvoke(t, e, prefix+"-"+role, `{}`)
			if r.FunctionError != "Unhandled" || r.Payload["errorType"] != typ {
				t.Errorf("%s: %q %s", role, r.FunctionError, r.Raw)
			}
		}
	})

	t.Run("handler strings", func(t *testing.T) {
		want := map[string]string{"nested": `"nested":true`, "esm": `"esm":true`, "esmpkg": `"esmpkg":true`, "callback": `"callback":true`}
		for role, w := range want {
			if _, ok := s.handlers[role]; !ok {
				continue
			}
			r := sdkInvoke(t, e, prefix+"-"+role, `{}`)
			if r.FunctionError != "" || !strings.Contains(strings.ReplaceAll(r.Raw, " ", ""), w) {
				t.Errorf("%s (%s): %q %s\n%s", role, s.handlers[role], r.FunctionError, r.Raw, r.Log)
			}
		}
		if _, ok := s.handlers["esm"]; ok {
			// ESM module state survives between warm invokes too.
			r := sdkInvoke(t, e, prefix+"-esm", `{}`)
			if r.Payload["calls"] != 2.0 {
				t.Errorf("ESM warm state: %s", r.Raw)
			}
		}
	})
}
