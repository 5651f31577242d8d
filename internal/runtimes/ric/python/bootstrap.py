# lambdaplane Python runtime interface client.
#
# Speaks the Lambda Runtime API (2018-06-01) at $AWS_LAMBDA_RUNTIME_API, loads
# the handler named by $_HANDLER ("module.function", packages as "pkg/mod.fn"
# or "pkg.mod.fn") from $LAMBDA_TASK_ROOT and calls it once per invocation.
# Standard library only.
import os
import sys

# Import what the client needs from the standard library before user paths
# (task root, layers) can shadow it: a user file named json.py or http.py must
# not break the client. Modules already loaded at start-up are unaffected.
_saved_path = sys.path[:]
_user_roots = set(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
_user_roots.add(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
_user_roots.add(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if p and p not in _user_roots]
# The Runtime API is plain HTTP/1.1 on a local address: the client speaks it
# over a socket itself rather than with http.client, whose imports (email.*)
# cost about 15 ms of every cold start. decimal is looked up only when a
# handler returns a Decimal (which means the user imported it).
try:
    import importlib
    import json
    import logging
    import socket
    import time
    import traceback
finally:
    sys.path[:] = _saved_path

API_PREFIX = "/2018-06-01/runtime"
TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")


def _fix_sys_path():
    """Order the search path the way AWS does: task root first, then layers,
    then the runtime directory, then the standard library. The directory of
    this script is dropped so that it cannot shadow user modules."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if p not in ("", here, TASK_ROOT)]
    sys.path[:] = [TASK_ROOT] + path


class ProtocolError(Exception):
    pass


class Response(object):
    """The parts of an HTTP response the client uses."""
    __slots__ = ("status", "headers", "will_close")

    def __init__(self, status, headers, will_close):
        self.status = status
        self.headers = headers  # lower-case names
        self.will_close = will_close


class RuntimeClient(object):
    """A persistent HTTP/1.1 connection to the Runtime API."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        if not host:
            host, port = address, "80"
        self.host = host.strip("[]")
        self.port = int(port)
        self.sock = None
        self.rfile = None

    def _close(self):
        for c in (self.rfile, self.sock):
            try:
                if c is not None:
                    c.close()
            except OSError:
                pass
        self.sock = self.rfile = None

    def _connect(self):
        family = None
        if self.host.replace(".", "").isdigit():
            family = socket.AF_INET
        elif ":" in self.host:
            family = socket.AF_INET6
        if family is None:
            self.sock = socket.create_connection((self.host, self.port))
        else:
            # A literal address: connect directly (getaddrinfo would load
            # the idna codec).
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                self.sock.connect((self.host, self.port))
            except OSError:
                self.sock.close()
                self.sock = None
                raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def _read_response(self):
        f = self.rfile
        line = f.readline(65537)
        if not line:
            raise ProtocolError("connection closed")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ProtocolError("bad status line %r" % line[:100])
        status = int(parts[1])
        headers = {}
        while True:
            h = f.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(f.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while f.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(f.read(size))
                f.readline(65537)
            body = b"".join(chunks)
        else:
            n = int(headers.get("content-length", "0"))
            body = f.read(n) if n else b""
            if len(body) != n:
                raise ProtocolError("short body")
        close = headers.get("connection", "").lower() == "close" or parts[0] == b"HTTP/1.0"
        return Response(status, headers, close), body

    def _request(self, method, path, body=None, headers=None):
        hdrs = ["%s %s%s HTTP/1.1" % (method, API_PREFIX, path), "Host: %s:%d" % (self.host, self.port)]
        if body is not None:
            hdrs.append("Content-Length: %d" % len(body))
        for k, v in (headers or {}).items():
            hdrs.append("%s: %s" % (k, v))
        req = ("\r\n".join(hdrs) + "\r\n\r\n").encode("latin-1")
        if body:
            req += body
        last = None
        for _ in range(2):
            try:
                if self.sock is None:
                    self._connect()
                self.sock.sendall(req)
                resp, data = self._read_response()
                if resp.will_close:
                    self._close()
                return resp, data
            except (ProtocolError, OSError, ValueError) as e:
                # The server may have closed an idle keep-alive connection:
                # reconnect once.
                last = e
                self._close()
        raise last

    def next(self):
        while True:
            resp, data = self._request("GET", "/invocation/next")
            if resp.status == 200:
                return resp, data
            _log_raw("[WARNING] runtime API /next returned %d: %r; retrying" % (resp.status, data[:200]))
            time.sleep(0.1)

    def _post(self, path, body, headers=None):
        hdrs = {"Content-Type": "application/json"}
        if headers:
            hdrs.update(headers)
        resp, data = self._request("POST", path, body=body, headers=hdrs)
        if resp.status >= 300:
            _log_raw("[WARNING] runtime API POST %s returned %d: %s" % (path, resp.status, data[:500].decode("utf-8", "replace")))
        return resp.status

    def post_response(self, request_id, body):
        return self._post("/invocation/%s/response" % request_id, body)

    def post_error(self, request_id, error):
        return self._post("/invocation/%s/error" % request_id, _to_json_bytes(error),
                          {"Lambda-Runtime-Function-Error-Type": error["errorType"]})

    def post_init_error(self, error):
        return self._post("/init/error", _to_json_bytes(error),
                          {"Lambda-Runtime-Function-Error-Type": error["errorType"]})


def _log_raw(line):
    try:
        sys.stdout.write(line.replace("\n", "\r") + "\n")
        sys.stdout.flush()
    except Exception:
        pass


def _to_json_bytes(obj):
    return json.dumps(obj, default=str).encode("utf-8")


def _decimal_default(o):
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(o, decimal.Decimal):
        if o == o.to_integral_value():
            return int(o)
        return float(o)
    raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)


class FaultError(Exception):
    def __init__(self, error_type, message, stack=None):
        Exception.__init__(self, message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []

    def result(self):
        return {"errorMessage": self.message, "errorType": self.error_type, "stackTrace": self.stack}


def _error_result(exc, request_id=None):
    etype = type(exc).__name__
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable %s>" % etype
    tb = traceback.extract_tb(exc.__traceback__)
    # Drop the client's own frames so that the trace starts in user code.
    here = os.path.abspath(__file__)
    tb = [f for f in tb if os.path.abspath(f.filename) != here and not _is_import_machinery(f.filename)]
    result = {"errorMessage": message, "errorType": etype, "stackTrace": traceback.format_list(tb)}
    if request_id is not None:
        result["requestId"] = request_id
    return result


def _is_import_machinery(filename):
    return filename.startswith("<frozen importlib") or filename == getattr(importlib, "__file__", None)


def _log_error(result):
    lines = ["[ERROR] %s: %s" % (result["errorType"], result["errorMessage"])]
    if result.get("stackTrace"):
        lines.append("Traceback (most recent call last):")
        lines.extend(s.rstrip("\n") for s in result["stackTrace"])
    _log_raw("\n".join(lines))


def load_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
        if not modname or not fname:
            raise ValueError("expected module.function")
    except ValueError as e:
        raise FaultError("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler, e))
    modname = modname.replace("/", ".").strip(".")
    if modname.split(".")[0] in sys.builtin_module_names:
        raise FaultError("Runtime.BuiltInModuleConflict",
                         "Cannot use built-in module %s as a handler module" % modname)
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise FaultError("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, (e.text or "").strip())]
        raise FaultError("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), trace)
    fn = getattr(module, fname, None)
    if fn is None:
        raise FaultError("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))
    if not callable(fn):
        raise FaultError("Runtime.HandlerNotFound", "Handler '%s' on module '%s' is not callable" % (fname, modname))
    return fn


class Client(object):
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, d):
        self.installation_id = d.get("installation_id")
        self.app_title = d.get("app_title")
        self.app_version_name = d.get("app_version_name")
        self.app_version_code = d.get("app_version_code")
        self.app_package_name = d.get("app_package_name")


class ClientContext(object):
    __slots__ = ("custom", "env", "client")

    def __init__(self, d):
        self.custom = d.get("custom")
        self.env = d.get("env")
        client = d.get("client")
        self.client = Client(client) if isinstance(client, dict) else None

    def __repr__(self):
        return "ClientContext(custom=%r, env=%r)" % (self.custom, self.env)


class CognitoIdentity(object):
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, d):
        self.cognito_identity_id = d.get("cognitoIdentityId")
        self.cognito_identity_pool_id = d.get("cognitoIdentityPoolId")


class LambdaContext(object):
    def __init__(self, request_id, deadline_ms, invoked_function_arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = ClientContext(client_context) if isinstance(client_context, dict) else None
        self.identity = CognitoIdentity(identity if isinstance(identity, dict) else {})
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return ("LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,function_name=%s,"
                "memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s])" % (
                    self.aws_request_id, self.log_group_name, self.log_stream_name, self.function_name,
                    self.memory_limit_in_mb, self.function_version, self.invoked_function_arn))


class _RequestIdFilter(logging.Filter):
    request_id = None

    def filter(self, record):
        record.aws_request_id = _RequestIdFilter.request_id
        return True


def _setup_logging():
    handler = logging.StreamHandler(sys.stdout)
    fmt = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                            "%Y-%m-%dT%H:%M:%S")
    fmt.converter = time.gmtime
    handler.setFormatter(fmt)
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def _parse_json_header(value):
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def handle_one(client, handler):
    resp, body = client.next()
    h = resp.headers
    request_id = h.get("lambda-runtime-aws-request-id", "")
    try:
        deadline_ms = int(h.get("lambda-runtime-deadline-ms", "0"))
    except ValueError:
        deadline_ms = 0
    trace_id = h.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    _RequestIdFilter.request_id = request_id
    context = LambdaContext(request_id, deadline_ms, h.get("lambda-runtime-invoked-function-arn"),
                            _parse_json_header(h.get("lambda-runtime-client-context")),
                            _parse_json_header(h.get("lambda-runtime-cognito-identity")))
    try:
        event = json.loads(body) if body else None
    except ValueError as e:
        err = {"errorMessage": "Unable to unmarshal input: %s" % e, "errorType": "Runtime.UnmarshalError",
               "stackTrace": [], "requestId": request_id}
        _log_error(err)
        client.post_error(request_id, err)
        return
    try:
        result = handler(event, context)
    except Exception as e:
        err = _error_result(e, request_id)
        _log_error(err)
        client.post_error(request_id, err)
        return
    try:
        payload = json.dumps(result, default=_decimal_default).encode("utf-8")
    except Exception as e:
        err = {"errorMessage": "Unable to marshal response: %s" % e, "errorType": "Runtime.MarshalError",
               "stackTrace": [], "requestId": request_id}
        _log_error(err)
        client.post_error(request_id, err)
        return
    client.post_response(request_id, payload)


def main():
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        sys.stderr.write("AWS_LAMBDA_RUNTIME_API is not set\n")
        sys.exit(2)
    client = RuntimeClient(address)
    _fix_sys_path()
    try:
        os.chdir(TASK_ROOT)
    except OSError:
        pass
    _setup_logging()
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultError as e:
        err = e.result()
    except Exception as e:
        err = _error_result(e)
    else:
        err = None
    if err is not None:
        _log_error(err)
        client.post_init_error(err)
        sys.exit(1)
    while True:
        handle_one(client, handler)


if __name__ == "__main__":
    main()
