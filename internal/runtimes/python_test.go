package runtimes

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

const pyApp = `
import os
import logging

import layerlib  # from the /opt layer (python/lib/python3.11/site-packages)
import layertop  # from the /opt layer (python)

counter = 0
INIT_PID = os.getpid()
logger = logging.getLogger()


class MyError(Exception):
    pass


def handler(event, context):
    global counter
    counter += 1
    print("hello from handler", event.get("n"), "h\u00e9llo \u2713")
    logger.warning("warned %d", counter)
    cc = context.client_context
    return {
        "event": event,
        "counter": counter,
        "pid": INIT_PID,
        "requestId": context.aws_request_id,
        "functionName": context.function_name,
        "functionVersion": context.function_version,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "logGroup": context.log_group_name,
        "logStream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "clientCustom": cc.custom if cc else None,
        "identity": context.identity.cognito_identity_id,
        "layer": [layerlib.VALUE, layertop.VALUE],
    }


def none(event, context):
    return None


def raises(event, context):
    raise MyError("it broke")


def unserialisable(event, context):
    return {"s": {1, 2}}
`

var pyLayer = files{
	"python/lib/python3.11/site-packages/layerlib.py": "VALUE = 'site-packages'\n",
	"python/layertop.py":                              "VALUE = 'python'\n",
}

func pyFunc(t *testing.T, handler string, code files) *proc {
	t.Helper()
	return newFuncEnv(t, "python3.11", handler, code, pyLayer).start()
}

func TestPythonHandlerJSON(t *testing.T) {
	t.Parallel()
	p := pyFunc(t, "app.handler", files{"app.py": pyApp})

	var first map[string]any
	for i := 1; i <= 2; i++ {
		o := p.invokeWith(invocation{
			ID:      "req-py-" + string(rune('0'+i)),
			Payload: `{"n": ` + string(rune('0'+i)) + `, "nested": {"a": [1, 2.5, "x", null, true]}}`,
			Headers: map[string]string{
				"Lambda-Runtime-Client-Context":   `{"custom": {"k": "v"}, "env": {}, "client": {}}`,
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
			t.Errorf("pid changed between warm invokes: %v then %v", first["pid"], got["pid"])
		}
		want := map[string]any{
			"requestId":       "req-py-" + string(rune('0'+i)),
			"functionName":    "fn-test",
			"functionVersion": "$LATEST",
			"memory":          "128",
			"arn":             "arn:aws:lambda:us-east-1:123456789012:function:fn-test",
			"logGroup":        "/aws/lambda/fn-test",
			"logStream":       "2024/01/01/[$LATEST]0123456789abcdef",
			"trace":           "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
			"identity":        "id-1",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		if ev, _ := json.Marshal(got["event"]); string(ev) != `{"n":`+string(rune('0'+i))+`,"nested":{"a":[1,2.5,"x",null,true]}}` {
			t.Errorf("event round trip = %s", ev)
		}
		if cc, _ := json.Marshal(got["clientCustom"]); string(cc) != `{"k":"v"}` {
			t.Errorf("client_context.custom = %s", cc)
		}
		if l, _ := json.Marshal(got["layer"]); string(l) != `["site-packages","python"]` {
			t.Errorf("layer modules = %s", l)
		}
		rem, _ := got["remaining"].(float64)
		if rem <= 0 || rem > 60000 {
			t.Errorf("get_remaining_time_in_millis() = %v, want in (0, 60000]", got["remaining"])
		}
	}

	// print() and logging reach the log before the result is posted.
	log := p.log()
	for _, want := range []string{"hello from handler 1 héllo ✓\n", "hello from handler 2 héllo ✓\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	re := regexp.MustCompile(`(?m)^\[WARNING\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\treq-py-2\twarned 2$`)
	if !re.MatchString(log) {
		t.Errorf("log lacks an AWS-format logging line for req-py-2:\n%s", log)
	}
}

func TestPythonNoneIsNull(t *testing.T) {
	t.Parallel()
	p := pyFunc(t, "app.none", files{"app.py": pyApp})
	o := p.invoke(`{}`)
	if o.Kind != "response" || string(o.Body) != "null" {
		t.Fatalf("got %s %q, want response null", o.Kind, o.Body)
	}
}

type errBody struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	StackTrace   []string `json:"stackTrace"`
	RequestID    string   `json:"requestId"`
}

func decodeErr(t *testing.T, o outcome) errBody {
	t.Helper()
	var e errBody
	if err := json.Unmarshal(o.Body, &e); err != nil {
		t.Fatalf("error body %q: %v", o.Body, err)
	}
	if o.ErrType != e.ErrorType {
		t.Errorf("Lambda-Runtime-Function-Error-Type = %q, body errorType %q", o.ErrType, e.ErrorType)
	}
	return e
}

func TestPythonRaises(t *testing.T) {
	t.Parallel()
	p := pyFunc(t, "app.raises", files{"app.py": pyApp})
	for i := 0; i < 2; i++ { // the process survives a failed invoke
		o := p.invokeWith(invocation{ID: "req-raise", Payload: `{}`})
		if o.Kind != "error" {
			t.Fatalf("got %s %s, want error", o.Kind, o.Body)
		}
		e := decodeErr(t, o)
		if e.ErrorType != "MyError" || e.ErrorMessage != "it broke" || e.RequestID != "req-raise" {
			t.Errorf("error = %+v", e)
		}
		if len(e.StackTrace) == 0 || !strings.Contains(strings.Join(e.StackTrace, ""), `app.py", line`) ||
			strings.Contains(strings.Join(e.StackTrace, ""), "bootstrap.py") {
			t.Errorf("stackTrace = %q, want user frames only", e.StackTrace)
		}
	}
	if log := p.log(); !strings.Contains(log, "[ERROR] MyError: it broke") {
		t.Errorf("log lacks the error:\n%s", log)
	}
}

func TestPythonMarshalError(t *testing.T) {
	t.Parallel()
	p := pyFunc(t, "app.unserialisable", files{"app.py": pyApp})
	e := decodeErr(t, p.invoke(`{}`))
	if e.ErrorType != "Runtime.MarshalError" || !strings.Contains(e.ErrorMessage, "Unable to marshal response") {
		t.Errorf("error = %+v", e)
	}
}

func TestPythonPackages(t *testing.T) {
	t.Parallel()
	code := files{
		"pkg/__init__.py":     "",
		"pkg/sub/__init__.py": "",
		"pkg/sub/mod.py":      "from . import helper\ndef fn(event, context):\n    return helper.X + event['add']\n",
		"pkg/sub/helper.py":   "X = 40\n",
		// A user module named like a standard one must not break the client.
		"json.py": "raise RuntimeError('user json.py shadowed the client')\n",
	}
	for _, h := range []string{"pkg/sub/mod.fn", "pkg.sub.mod.fn"} {
		t.Run(h, func(t *testing.T) {
			t.Parallel()
			p := pyFunc(t, h, code)
			if o := p.invoke(`{"add": 2}`); o.Kind != "response" || string(o.Body) != "42" {
				t.Fatalf("got %s %s, want 42", o.Kind, o.Body)
			}
		})
	}
}

func TestPythonInitErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, handler string
		code          files
		errType       string
		msg           string
	}{
		{"module missing", "nothere.handler", files{}, "Runtime.ImportModuleError",
			"Unable to import module 'nothere': No module named 'nothere'"},
		{"dependency missing", "app.handler", files{"app.py": "import requests_nope\ndef handler(e, c):\n    return 1\n"},
			"Runtime.ImportModuleError", "Unable to import module 'app': No module named 'requests_nope'"},
		{"handler missing", "app.nothere", files{"app.py": "def handler(e, c):\n    return 1\n"},
			"Runtime.HandlerNotFound", "Handler 'nothere' missing on module 'app'"},
		{"syntax error", "app.handler", files{"app.py": "def handler(e, c)\n    return 1\n"},
			"Runtime.UserCodeSyntaxError", "Syntax error in module 'app': "},
		{"malformed", "nodot", files{}, "Runtime.MalformedHandlerName", "Bad handler 'nodot'"},
		{"init raises", "app.handler", files{"app.py": "raise ValueError('bad config')\n"},
			"ValueError", "bad config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := pyFunc(t, c.handler, c.code)
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

func TestPythonUnbufferedLog(t *testing.T) {
	t.Parallel()
	// The handler prints, then blocks until the test has seen the line: the
	// output must not wait in a buffer for the invoke to end.
	code := files{"app.py": `
import os, time
def handler(event, context):
    print("early line")
    deadline = time.time() + 20
    while not os.path.exists(event["flag"]) and time.time() < deadline:
        time.sleep(0.01)
    return "done"
`}
	e := newFuncEnv(t, "python3.11", "app.handler", code, nil)
	p := e.start()
	flag := e.task + "/../flag"
	e.api.queue <- invocation{ID: "req-unbuf", Payload: `{"flag": "` + flag + `"}`, Deadline: time.Now().Add(time.Minute)}
	waitForLog(t, p, "early line\n")
	writeFiles(t, e.task, files{"../flag": ""})
	if o := p.wait(); o.Kind != "response" || string(o.Body) != `"done"` {
		t.Fatalf("got %s %s", o.Kind, o.Body)
	}
}

// waitForLog polls the process log until it contains s.
func waitForLog(t *testing.T, p *proc, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q:\n%s", s, p.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPythonUserImportsComplete(t *testing.T) {
	t.Parallel()
	// The client speaks HTTP over a plain socket for a faster start; user
	// code must still get complete http.client, ssl and urllib modules.
	code := files{"app.py": `
import http.client, ssl, urllib.request
def handler(event, context):
    return [hasattr(http.client, "HTTPSConnection"), hasattr(urllib.request, "HTTPSHandler"), ssl.OPENSSL_VERSION != ""]
`}
	p := pyFunc(t, "app.handler", code)
	if o := p.invoke(`{}`); o.Kind != "response" || string(o.Body) != "[true, true, true]" {
		t.Fatalf("got %s %s", o.Kind, o.Body)
	}
}
