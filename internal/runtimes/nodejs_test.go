package runtimes

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

var nodeLayer = files{
	"nodejs/node_modules/layerlib/index.js":       "exports.VALUE = 'node_modules';\n",
	"nodejs/node20/node_modules/layer20/index.js": "module.exports = { VALUE: 'node20' };\n",
}

const nodeCJS = `
const layerlib = require('layerlib');
const layer20 = require('layer20');
let counter = 0;
const initPid = process.pid;

class MyError extends Error {}

exports.handler = async (event, context) => {
  counter++;
  console.log('hello from handler', event.n, 'h\u00e9llo \u2713');
  console.error('multi\nline');
  return {
    event,
    counter,
    pid: initPid,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memory: context.memoryLimitInMB,
    arn: context.invokedFunctionArn,
    logGroup: context.logGroupName,
    logStream: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    waits: context.callbackWaitsForEmptyEventLoop,
    trace: process.env._X_AMZN_TRACE_ID,
    clientCustom: context.clientContext && context.clientContext.custom,
    identity: context.identity && context.identity.cognitoIdentityId,
    layer: [layerlib.VALUE, layer20.VALUE],
  };
};

exports.none = async () => undefined;
exports.throws = async () => { throw new MyError('it broke'); };
exports.throwsSync = () => { const e = new TypeError('bad type'); throw e; };
exports.rejectsString = () => Promise.reject('just a string');
exports.circular = async () => { const o = {}; o.o = o; return o; };
exports.nested = { deeper: { fn: async (event) => 'nested ' + event.x } };
exports.notAFunction = 42;
`

func nodeFunc(t *testing.T, handler string, code files) *proc {
	t.Helper()
	return newFuncEnv(t, "nodejs20.x", handler, code, nodeLayer).start()
}

func TestNodeHandlerJSON(t *testing.T) {
	t.Parallel()
	p := nodeFunc(t, "index.handler", files{"index.js": nodeCJS})
	var first map[string]any
	for i := 1; i <= 2; i++ {
		id := "req-node-" + string(rune('0'+i))
		o := p.invokeWith(invocation{
			ID:      id,
			Payload: `{"n": ` + string(rune('0'+i)) + `}`,
			Headers: map[string]string{
				"Lambda-Runtime-Client-Context":   `{"custom": {"k": "v"}}`,
				"Lambda-Runtime-Cognito-Identity": `{"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}`,
			},
		})
		if o.Kind != "response" {
			t.Fatalf("invoke %d: %s %s", i, o.Kind, o.Body)
		}
		var got map[string]any
		if err := json.Unmarshal(o.Body, &got); err != nil {
			t.Fatalf("response %q: %v", o.Body, err)
		}
		if got["counter"] != float64(i) {
			t.Errorf("counter = %v, want %d (module state must survive between invokes)", got["counter"], i)
		}
		if i == 1 {
			first = got
		} else if got["pid"] != first["pid"] {
			t.Errorf("pid changed between warm invokes")
		}
		want := map[string]any{
			"requestId":       id,
			"functionName":    "fn-test",
			"functionVersion": "$LATEST",
			"memory":          "128",
			"arn":             "arn:aws:lambda:us-east-1:123456789012:function:fn-test",
			"logGroup":        "/aws/lambda/fn-test",
			"logStream":       "2024/01/01/[$LATEST]0123456789abcdef",
			"waits":           true,
			"trace":           "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
			"identity":        "id-1",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		if cc, _ := json.Marshal(got["clientCustom"]); string(cc) != `{"k":"v"}` {
			t.Errorf("clientContext.custom = %s", cc)
		}
		if l, _ := json.Marshal(got["layer"]); string(l) != `["node_modules","node20"]` {
			t.Errorf("layer modules = %s", l)
		}
		rem, _ := got["remaining"].(float64)
		if rem <= 0 || rem > 60000 {
			t.Errorf("getRemainingTimeInMillis() = %v, want in (0, 60000]", got["remaining"])
		}
	}
	log := p.log()
	ts := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
	for _, re := range []string{
		`(?m)^` + ts + `\treq-node-1\tINFO\thello from handler 1 héllo ✓$`,
		`(?m)^` + ts + `\treq-node-2\tINFO\thello from handler 2 héllo ✓$`,
		`(?m)^` + ts + `\treq-node-2\tERROR\tmulti\rline$`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log does not match %s:\n%q", re, log)
		}
	}
}

func TestNodeModuleKinds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, handler string
		code          files
		want          string
	}{
		{"esm mjs", "app.handler", files{"app.mjs": `
import { readFileSync } from 'node:fs';
let n = 0;
export const handler = async (event) => ({ esm: true, n: ++n, x: event.x });
`}, `{"esm":true,"n":1,"x":7}`},
		{"esm via package.json type module", "src/app.handler", files{
			"package.json": `{"type": "module"}`,
			"src/app.js":   "export async function handler(event) { return {typeModule: true, x: event.x}; }\n",
		}, `{"typeModule":true,"x":7}`},
		{"cjs file", "lib/app.handler", files{
			"lib/app.cjs": "module.exports.handler = async (e) => ({cjs: true, x: e.x});\n",
		}, `{"cjs":true,"x":7}`},
		{"cjs default export from mjs", "app.handler", files{
			"app.mjs": "export default { handler: async (e) => ({viaDefault: e.x}) };\n",
		}, `{"viaDefault":7}`},
		{"nested export", "index.nested.deeper.fn", files{"index.js": nodeCJS}, `"nested 7"`},
		{"callback", "cb.handler", files{"cb.js": `
exports.handler = (event, context, callback) => {
  setTimeout(() => callback(null, {cb: true, x: event.x}), 10);
};
`}, `{"cb":true,"x":7}`},
		{"sync no result", "cb.handler", files{"cb.js": "exports.handler = (event, context, callback) => { console.log('nothing'); };\n"}, `null`},
		{"undefined is null", "index.none", files{"index.js": nodeCJS}, `null`},
		{"directory index", "dir.handler", files{"dir/index.js": "exports.handler = async (e) => 'dir ' + e.x;\n"}, `"dir 7"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := nodeFunc(t, c.handler, c.code)
			o := p.invoke(`{"x": 7}`)
			if o.Kind != "response" || string(o.Body) != c.want {
				t.Fatalf("got %s %s, want response %s; log:\n%s", o.Kind, o.Body, c.want, p.log())
			}
		})
	}
}

func TestNodeCallbackWaitsForEmptyEventLoop(t *testing.T) {
	t.Parallel()
	// With callbackWaitsForEmptyEventLoop the result is sent once pending
	// timers have run; with false it is sent at once (the 30 s timer would
	// otherwise make the test time out).
	code := files{"cb.js": `
let ticks = 0;
exports.wait = (event, context, callback) => {
  setTimeout(() => { ticks++; console.log('timer fired'); }, 50);
  callback(null, 'waited');
};
exports.nowait = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => {}, 30000);
  callback(null, 'immediate');
};
`}
	p := nodeFunc(t, "cb.wait", code)
	if o := p.invoke(`{}`); o.Kind != "response" || string(o.Body) != `"waited"` {
		t.Fatalf("got %s %s", o.Kind, o.Body)
	}
	if !strings.Contains(p.log(), "timer fired") {
		t.Errorf("response sent before the event loop was empty; log:\n%s", p.log())
	}
	// The process keeps serving after a loop-drain completion.
	if o := p.invoke(`{}`); o.Kind != "response" || string(o.Body) != `"waited"` {
		t.Fatalf("second invoke: got %s %s", o.Kind, o.Body)
	}

	p2 := nodeFunc(t, "cb.nowait", code)
	for i := 0; i < 2; i++ {
		if o := p2.invoke(`{}`); o.Kind != "response" || string(o.Body) != `"immediate"` {
			t.Fatalf("got %s %s", o.Kind, o.Body)
		}
	}
}

func TestNodeErrors(t *testing.T) {
	t.Parallel()
	cbErr := files{"cb.js": "exports.handler = (e, c, cb) => cb(new RangeError('out of range'));\n"}
	cases := []struct {
		name, handler string
		code          files
		errType, msg  string
	}{
		{"async throw custom class", "index.throws", files{"index.js": nodeCJS}, "MyError", "it broke"},
		{"sync throw", "index.throwsSync", files{"index.js": nodeCJS}, "TypeError", "bad type"},
		{"reject string", "index.rejectsString", files{"index.js": nodeCJS}, "string", "just a string"},
		{"callback error", "cb.handler", cbErr, "RangeError", "out of range"},
		{"circular result", "index.circular", files{"index.js": nodeCJS}, "Runtime.MarshalError", "Unable to stringify response body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := nodeFunc(t, c.handler, c.code)
			for i := 0; i < 2; i++ { // the process survives a failed invoke
				o := p.invokeWith(invocation{ID: "req-err", Payload: `{}`})
				if o.Kind != "error" {
					t.Fatalf("got %s %s, want error", o.Kind, o.Body)
				}
				e := decodeErr(t, o)
				if e.ErrorType != c.errType || !strings.HasPrefix(e.ErrorMessage, c.msg) || e.RequestID != "req-err" {
					t.Errorf("error = %+v, want %s: %s", e, c.errType, c.msg)
				}
			}
			if !strings.Contains(p.log(), "\treq-err\tERROR\tInvoke Error \t{") {
				t.Errorf("log lacks the invoke error:\n%s", p.log())
			}
		})
	}
}

func TestNodeInitErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, handler string
		code          files
		errType, msg  string
	}{
		{"module missing", "nothere.handler", files{}, "Runtime.ImportModuleError", "Error: Cannot find module 'nothere'"},
		{"dependency missing cjs", "index.handler", files{"index.js": "require('left-pad-nope');\nexports.handler = async () => 1;\n"},
			"Runtime.ImportModuleError", "Error: Cannot find module 'left-pad-nope'"},
		{"dependency missing esm", "index.handler", files{"index.mjs": "import x from 'left-pad-nope';\nexport const handler = async () => x;\n"},
			"Runtime.ImportModuleError", "Error: Cannot find package 'left-pad-nope'"},
		{"handler missing", "index.nothere", files{"index.js": nodeCJS}, "Runtime.HandlerNotFound", "index.nothere is undefined or not exported"},
		{"not a function", "index.notAFunction", files{"index.js": nodeCJS}, "Runtime.HandlerNotFound", "index.notAFunction is not a function"},
		{"syntax error cjs", "index.handler", files{"index.js": "exports.handler = async () => {\n"}, "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"syntax error esm", "index.handler", files{"index.mjs": "export const handler = ;\n"}, "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"malformed", "nodot", files{}, "Runtime.MalformedHandlerName", "Bad handler nodot"},
		{"init throws", "index.handler", files{"index.js": "class ConfigError extends Error {}\nthrow new ConfigError('bad config');\n"},
			"ConfigError", "bad config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := nodeFunc(t, c.handler, c.code)
			o := p.wait()
			if o.Kind != "init-error" {
				t.Fatalf("got %s %s, want init-error", o.Kind, o.Body)
			}
			e := decodeErr(t, o)
			if e.ErrorType != c.errType || !strings.HasPrefix(e.ErrorMessage, c.msg) {
				t.Errorf("init error = %s: %q, want %s: %q...", e.ErrorType, e.ErrorMessage, c.errType, c.msg)
			}
			if err := p.waitExit(); err == nil {
				t.Error("process exited 0 after an init error")
			}
		})
	}
}

func TestNodeUncaughtExceptionDuringInvoke(t *testing.T) {
	t.Parallel()
	code := files{"index.js": "exports.handler = async () => { setTimeout(() => { throw new EvalError('late'); }, 1); return new Promise(() => {}); };\n"}
	p := nodeFunc(t, "index.handler", code)
	o := p.invokeWith(invocation{ID: "req-uncaught", Payload: `{}`, Deadline: time.Now().Add(time.Minute)})
	if o.Kind != "error" {
		t.Fatalf("got %s %s", o.Kind, o.Body)
	}
	if e := decodeErr(t, o); e.ErrorType != "EvalError" || e.ErrorMessage != "late" {
		t.Errorf("error = %+v", e)
	}
	if err := p.waitExit(); err == nil {
		t.Error("process exited 0 after an uncaught exception")
	}
}
