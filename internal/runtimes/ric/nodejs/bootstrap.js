// lambdaplane Node.js runtime interface client.
//
// Speaks the Lambda Runtime API (2018-06-01) at $AWS_LAMBDA_RUNTIME_API, loads
// the handler named by $_HANDLER ("file.export", nested as "dir/file.export")
// from $LAMBDA_TASK_ROOT and calls it once per invocation. No third-party
// packages: HTTP/1.1 over node's net module.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const url = require('url');
const util = require('util');

const API_PREFIX = '/2018-06-01/runtime';
const TASK_ROOT = process.env.LAMBDA_TASK_ROOT || '/var/task';

// ---------------------------------------------------------------------------
// Logging: console.* lines in AWS's text format, one record per line
// ("\n" inside a message becomes "\r").

let currentRequestId; // undefined outside an invocation, as on AWS

function writeLog(level, args) {
  const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}`;
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

function patchConsole() {
  const levels = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG' };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => writeLog(level, args);
  }
  console.trace = (...args) => {
    const err = new Error(util.format(...args));
    err.name = 'Trace';
    writeLog('TRACE', [err.stack]);
  };
}

// ---------------------------------------------------------------------------
// Errors

class RuntimeError extends Error {
  constructor(type, message, cause) {
    super(message);
    this.name = type;
    if (cause && cause.stack) {
      // Keep the cause's frames, without its (possibly multi-line) message.
      const stack = String(cause.stack);
      const head = `${cause.name}: ${cause.message}`;
      const i = stack.indexOf('\n');
      const frames = stack.startsWith(head) ? stack.slice(head.length) : i >= 0 ? stack.slice(i) : '';
      this.stack = `${type}: ${message}` + frames;
    }
  }
}

function errorType(err) {
  if (err instanceof RuntimeError) return err.name;
  if (err instanceof Error || (err && typeof err === 'object' && 'message' in err)) {
    const name = typeof err.name === 'string' ? err.name : '';
    const ctor = err.constructor && typeof err.constructor.name === 'string' ? err.constructor.name : '';
    if (name && name !== 'Error') return name;
    if (ctor && ctor !== 'Object') return ctor;
    return name || 'Error';
  }
  return typeof err;
}

function toErrorResult(err, requestId) {
  let message;
  let trace = [];
  if (err instanceof Error || (err && typeof err === 'object' && 'message' in err)) {
    message = String(err.message);
    if (typeof err.stack === 'string') trace = err.stack.split('\n');
  } else {
    try {
      message = typeof err === 'string' ? err : JSON.stringify(err);
    } catch (e) {
      message = String(err);
    }
    if (message === undefined) message = String(err);
  }
  const result = { errorType: errorType(err), errorMessage: message, trace, stackTrace: trace };
  if (requestId !== undefined) result.requestId = requestId;
  return result;
}

function logError(prefix, result) {
  const copy = Object.assign({}, result);
  delete copy.stackTrace;
  writeLog('ERROR', [`${prefix} \t${JSON.stringify(copy)}`]);
}

// ---------------------------------------------------------------------------
// Runtime API client

// parseResponse parses one HTTP/1.1 response at the start of buf; it returns
// null while incomplete.
function parseResponse(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (buf.length > 65536) throw new Error('response header too large');
    return null;
  }
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const m = /^HTTP\/1\.(\d) (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0].slice(0, 100))}`);
  const headers = {};
  for (let i = 1; i < lines.length; i++) {
    const c = lines[i].indexOf(':');
    if (c > 0) headers[lines[i].slice(0, c).trim().toLowerCase()] = lines[i].slice(c + 1).trim();
  }
  let pos = end + 4;
  let body;
  if ((headers['transfer-encoding'] || '').toLowerCase() === 'chunked') {
    const parts = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', pos);
      if (eol < 0) return null;
      const size = parseInt(buf.toString('latin1', pos, eol).split(';')[0], 16);
      if (Number.isNaN(size)) throw new Error('bad chunk size');
      pos = eol + 2;
      if (size === 0) {
        const trailerEnd = buf.indexOf('\r\n\r\n', pos - 2);
        if (trailerEnd < 0) return null;
        pos = trailerEnd + 4;
        break;
      }
      if (buf.length < pos + size + 2) return null;
      parts.push(buf.subarray(pos, pos + size));
      pos += size + 2;
    }
    body = Buffer.concat(parts);
  } else {
    const n = Number(headers['content-length'] || 0);
    if (buf.length < pos + n) return null;
    body = buf.subarray(pos, pos + n);
    pos += n;
  }
  const close = (headers.connection || '').toLowerCase() === 'close' || m[1] === '0';
  return { status: Number(m[2]), headers, body, close, rest: buf.subarray(pos) };
}

class RuntimeClient {
  constructor(address) {
    const i = address.lastIndexOf(':');
    this.host = i > 0 ? address.slice(0, i).replace(/^\[|\]$/g, '') : address;
    this.port = i > 0 ? Number(address.slice(i + 1)) : 80;
    this.sock = null;
    this.connecting = null;
    this.buf = null; // unparsed response bytes
    this.waiters = []; // { resolve, reject } of the requests in flight, in order
  }

  // connect opens the persistent connection. The Runtime API is HTTP/1.1 on
  // a local address; the client speaks it over a plain socket (node's http
  // client costs about a millisecond per request here) and pipelines: the
  // next GET /next goes out right behind a posted result.
  connect() {
    if (this.connecting) return this.connecting;
    this.connecting = new Promise((resolve, reject) => {
      const sock = net.connect({ host: this.host, port: this.port, noDelay: true });
      sock.once('error', (e) => {
        this.connecting = null;
        reject(e);
      });
      sock.once('connect', () => {
        sock.removeAllListeners('error');
        sock.on('data', (d) => this.onData(sock, d));
        const fail = (err) => {
          if (this.sock !== sock) return;
          this.sock = null;
          this.buf = null;
          const ws = this.waiters;
          this.waiters = [];
          for (const w of ws) w.reject(err || new Error('connection closed'));
        };
        sock.on('error', fail);
        sock.on('close', () => fail());
        this.sock = sock;
        this.connecting = null;
        resolve(sock);
      });
    });
    return this.connecting;
  }

  onData(sock, d) {
    if (sock !== this.sock) return;
    this.buf = this.buf ? Buffer.concat([this.buf, d]) : d;
    while (this.buf && this.waiters.length) {
      let res;
      try {
        res = parseResponse(this.buf);
      } catch (e) {
        sock.destroy(e);
        return;
      }
      if (!res) return;
      this.buf = res.rest.length ? res.rest : null;
      const w = this.waiters.shift();
      if (res.close) sock.destroy();
      w.resolve({ status: res.status, headers: res.headers, body: res.body });
    }
    // An idle connection must not keep the event loop alive: callback
    // handlers complete when it drains (beforeExit), as with node's agent.
    if (this.waiters.length === 0 && this.sock === sock) sock.unref();
  }

  async request(method, p, body, headers) {
    let head = `${method} ${API_PREFIX}${p} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n`;
    const payload = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    if (payload) head += `Content-Length: ${payload.length}\r\n`;
    for (const [k, v] of Object.entries(headers || {})) head += `${k}: ${v}\r\n`;
    head += '\r\n';
    const req = payload ? Buffer.concat([Buffer.from(head, 'latin1'), payload]) : Buffer.from(head, 'latin1');
    const sock = this.sock || (await this.connect());
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      sock.ref();
      sock.write(req);
    });
  }

  async retrying(method, p, body, headers) {
    try {
      return await this.request(method, p, body, headers);
    } catch (e) {
      // An idle keep-alive connection may have been closed: retry once.
      return this.request(method, p, body, headers);
    }
  }

  async next() {
    for (;;) {
      const res = await this.retrying('GET', '/invocation/next');
      if (res.status === 200) return res;
      process.stderr.write(`runtime API /next returned ${res.status}; retrying\n`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async post(p, body, headers) {
    const res = await this.retrying('POST', p, body, Object.assign({ 'Content-Type': 'application/json' }, headers || {}));
    if (res.status >= 300) {
      process.stderr.write(`runtime API POST ${p} returned ${res.status}: ${res.body.toString('utf8', 0, 500)}\n`);
    }
    return res.status;
  }

  postResponse(id, body) {
    return this.post(`/invocation/${id}/response`, body);
  }

  postError(id, result) {
    return this.post(`/invocation/${id}/error`, JSON.stringify(result), { 'Lambda-Runtime-Function-Error-Type': result.errorType });
  }

  postInitError(result) {
    return this.post('/init/error', JSON.stringify(result), { 'Lambda-Runtime-Function-Error-Type': result.errorType });
  }
}

// ---------------------------------------------------------------------------
// Handler loading

function isModuleNotFound(e) {
  return e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND');
}

function fileExists(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (e) {
    return false;
  }
}

// packageType returns the "type" of the package.json nearest to dir, as node
// itself decides whether a .js file is CommonJS or an ES module.
function packageType(dir) {
  for (let d = dir; ; d = path.dirname(d)) {
    const pj = path.join(d, 'package.json');
    if (fileExists(pj)) {
      try {
        const t = JSON.parse(fs.readFileSync(pj, 'utf8')).type;
        return t === 'module' ? 'module' : 'commonjs';
      } catch (e) {
        return 'commonjs';
      }
    }
    if (path.dirname(d) === d) return 'commonjs';
  }
}

async function importFile(file) {
  return import(url.pathToFileURL(file).href);
}

function requireOrImport(file) {
  try {
    return require(file);
  } catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) return importFile(file);
    throw e;
  }
}

async function loadModule(root, moduleName) {
  const base = path.resolve(root, moduleName);
  try {
    if (fileExists(base + '.js')) {
      if (packageType(path.dirname(base)) === 'module') return await importFile(base + '.js');
      return await requireOrImport(base + '.js');
    }
    if (fileExists(base + '.mjs')) return await importFile(base + '.mjs');
    if (fileExists(base + '.cjs')) return require(base + '.cjs');
    // Fall back to node's own resolution (a directory with index.js, a
    // package in node_modules, a name on NODE_PATH).
    let resolved;
    try {
      resolved = require.resolve(moduleName, { paths: [root] });
    } catch (e) {
      if (isModuleNotFound(e)) {
        throw new RuntimeError('Runtime.ImportModuleError', `Error: Cannot find module '${moduleName}'`, e);
      }
      throw e;
    }
    if (resolved.endsWith('.mjs') || (resolved.endsWith('.js') && packageType(path.dirname(resolved)) === 'module')) {
      return await importFile(resolved);
    }
    return await requireOrImport(resolved);
  } catch (e) {
    if (e instanceof RuntimeError) throw e;
    if (e instanceof SyntaxError) throw new RuntimeError('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`, e);
    if (isModuleNotFound(e)) throw new RuntimeError('Runtime.ImportModuleError', `${e.name || 'Error'}: ${e.message}`, e);
    throw e;
  }
}

async function loadHandler(handlerString) {
  const slash = handlerString.lastIndexOf('/');
  const dir = slash >= 0 ? handlerString.slice(0, slash) : '';
  const tail = slash >= 0 ? handlerString.slice(slash + 1) : handlerString;
  const m = /^([^.]+)\.(.+)$/.exec(tail);
  if (!m) throw new RuntimeError('Runtime.MalformedHandlerName', `Bad handler ${handlerString}`);
  const [, moduleName, exportPath] = m;
  const mod = await loadModule(path.resolve(TASK_ROOT, dir), moduleName);
  let fn = mod;
  for (const part of exportPath.split('.')) {
    fn = fn == null ? undefined : fn[part];
  }
  // ESM importing a CommonJS module puts module.exports on "default".
  if (fn === undefined && mod && mod.default && typeof mod.default === 'object' && exportPath.indexOf('.') < 0) {
    fn = mod.default[exportPath];
  }
  if (fn === undefined) {
    throw new RuntimeError('Runtime.HandlerNotFound', `${tail} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw new RuntimeError('Runtime.HandlerNotFound', `${tail} is not a function`);
  }
  return fn;
}

// ---------------------------------------------------------------------------
// Response streaming: awslambda.streamifyResponse(handler) makes the handler
// (event, responseStream, context) => Promise; what it writes to
// responseStream goes to the Runtime API as it is written (a chunked POST in
// the streaming response mode), and an error after the first byte ends the
// stream with the Lambda-Runtime-Function-Error-* trailers.

const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';

class HttpResponseStream {
  // from writes the HTTP status and headers (metadata: {statusCode,
  // headers, cookies}) ahead of the body, as Lambda's function URLs read it.
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(INTEGRATION_CONTENT_TYPE);
    const metadata = JSON.stringify(prelude || {});
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadata);
      write(new Uint8Array(8));
    };
    return underlyingStream;
  }
}

global.awslambda = {
  streamifyResponse(handler, options) {
    handler[HANDLER_STREAMING] = 'response';
    if (options && Number.isInteger(options.highWaterMark)) handler[HANDLER_HIGHWATERMARK] = options.highWaterMark;
    return handler;
  },
  HttpResponseStream,
};

function createResponseStream(client, id, highWaterMark) {
  const http = require('http');
  const { Writable } = require('stream');
  let req = null;
  let contentType = 'application/octet-stream';
  let resolveDone;
  let rejectDone;
  const done = new Promise((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  const start = () => {
    if (req) return req;
    req = http.request({
      host: client.host,
      port: client.port,
      method: 'POST',
      path: `${API_PREFIX}/invocation/${id}/response`,
      agent: false,
      headers: {
        'Lambda-Runtime-Function-Response-Mode': 'streaming',
        'Transfer-Encoding': 'chunked',
        'Content-Type': contentType,
        Trailer: 'Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body',
      },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolveDone(res.statusCode));
    });
    req.on('error', (e) => rejectDone(e));
    req.setNoDelay(true);
    req.flushHeaders();
    return req;
  };
  const before = () => {
    const f = stream._onBeforeFirstWrite;
    if (f) {
      stream._onBeforeFirstWrite = null;
      f((c) => req.write(c));
    }
  };
  const stream = new Writable({
    highWaterMark: highWaterMark || undefined,
    write(chunk, encoding, cb) {
      start();
      before();
      req.write(chunk, encoding, cb);
    },
    final(cb) {
      start();
      before();
      req.end(cb);
    },
  });
  stream.setContentType = (ct) => {
    if (req) throw new Error('setContentType must be called before the first write');
    contentType = ct;
  };
  stream._onBeforeFirstWrite = null;
  stream.started = () => req !== null;
  // fail ends a started stream with the error in trailers.
  stream.fail = (result) => {
    start();
    req.addTrailers({
      'Lambda-Runtime-Function-Error-Type': result.errorType,
      'Lambda-Runtime-Function-Error-Body': Buffer.from(JSON.stringify(result)).toString('base64'),
    });
    req.end();
  };
  stream.done = done;
  return stream;
}

// ---------------------------------------------------------------------------
// Invocation

function parseJSONHeader(v) {
  if (!v) return undefined;
  try {
    return JSON.parse(v);
  } catch (e) {
    return undefined;
  }
}

function makeContext(headers, finish) {
  const deadline = Number(headers['lambda-runtime-deadline-ms'] || 0);
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJSONHeader(headers['lambda-runtime-client-context']),
    identity: parseJSONHeader(headers['lambda-runtime-cognito-identity']),
    getRemainingTimeInMillis() {
      return Math.max(0, deadline - Date.now());
    },
    // Legacy completion methods: they finish at once, without waiting for
    // the event loop.
    done(err, result) {
      finish(err, result, false);
    },
    succeed(result) {
      finish(null, result, false);
    },
    fail(err) {
      finish(err == null ? new Error('handled') : err, undefined, false);
    },
  };
  return context;
}

class Runtime {
  constructor(client, handler) {
    this.client = client;
    this.handler = handler;
    this.current = null; // { id, settled, waitingForLoop, result }
    process.on('beforeExit', () => this.onBeforeExit());
    process.on('uncaughtException', (err) => this.onFatal(err, 'Uncaught Exception'));
    process.on('unhandledRejection', (reason) => {
      const msg = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason);
      this.onFatal(new RuntimeError('Runtime.UnhandledPromiseRejection', msg, reason), 'Unhandled Promise Rejection');
    });
  }

  async loop() {
    const res = await this.client.next();
    const h = res.headers;
    const id = h['lambda-runtime-aws-request-id'];
    currentRequestId = id;
    if (h['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = h['lambda-runtime-trace-id'];
    else delete process.env._X_AMZN_TRACE_ID;
    const inv = { id, settled: false, pending: null };
    this.current = inv;

    let event;
    try {
      event = res.body.length ? JSON.parse(res.body.toString('utf8')) : null;
    } catch (e) {
      this.complete(inv, new RuntimeError('Runtime.UnmarshalError', `Unable to unmarshal input: ${e.message}`), undefined);
      return;
    }

    const finish = (err, result, waitForLoop) => {
      if (inv.settled || inv.pending) return;
      if (waitForLoop) {
        // Send when the event loop is empty (see onBeforeExit).
        inv.pending = { err, result };
        return;
      }
      this.complete(inv, err, result);
    };
    const context = makeContext(h, finish);
    if (this.handler[HANDLER_STREAMING] === 'response') {
      this.invokeStreaming(inv, event, context);
      return;
    }
    const callback = (err, result) => finish(err, result, context.callbackWaitsForEmptyEventLoop);

    let ret;
    try {
      ret = this.handler(event, context, callback);
    } catch (e) {
      finish(e, undefined, false);
      return;
    }
    if (ret && typeof ret.then === 'function') {
      ret.then((r) => finish(null, r, false), (e) => finish(e == null ? new Error(String(e)) : e, undefined, false));
    }
    // Otherwise wait for the callback; a handler that returns neither a
    // promise nor calls back completes with null once the event loop drains.
  }

  // invokeStreaming runs a streamifyResponse handler: its responseStream is
  // the response; the invocation completes when the stream's POST does.
  invokeStreaming(inv, event, context) {
    const stream = createResponseStream(this.client, inv.id, this.handler[HANDLER_HIGHWATERMARK]);
    const fail = (err) => {
      if (inv.settled) return;
      if (!stream.started()) {
        inv.settled = true;
        const r = toErrorResult(err, inv.id);
        logError('Invoke Error', r);
        this.client.postError(inv.id, r).then(() => this.scheduleNext(), (e) => {
          process.stderr.write(`runtime API unreachable: ${e && e.message}\n`);
          process.exit(1);
        });
        return;
      }
      inv.settled = true;
      const r = toErrorResult(err, inv.id);
      logError('Invoke Error', r);
      stream.fail(r);
      stream.done.then(() => this.scheduleNext(), () => this.scheduleNext());
    };
    stream.on('error', fail);
    let ret;
    try {
      ret = this.handler(event, stream, context);
    } catch (e) {
      fail(e);
      return;
    }
    Promise.resolve(ret).then(
      () => {
        if (inv.settled) return;
        if (!stream.writableEnded) stream.end();
        stream.on('finish', () => {});
        stream.done.then(
          () => {
            if (inv.settled) return;
            inv.settled = true;
            this.scheduleNext();
          },
          (e) => {
            process.stderr.write(`runtime API unreachable: ${e && e.message}\n`);
            process.exit(1);
          },
        );
      },
      (e) => fail(e == null ? new Error(String(e)) : e),
    );
  }

  onBeforeExit() {
    const inv = this.current;
    if (!inv || inv.settled) return;
    const p = inv.pending || { err: null, result: undefined };
    inv.pending = null;
    this.complete(inv, p.err, p.result);
  }

  complete(inv, err, result) {
    if (inv.settled) return;
    inv.settled = true;
    let posted;
    if (err !== null && err !== undefined) {
      const r = toErrorResult(err, inv.id);
      logError('Invoke Error', r);
      posted = this.client.postError(inv.id, r);
    } else {
      let body;
      try {
        body = JSON.stringify(result === undefined ? null : result);
        if (body === undefined) body = 'null';
      } catch (e) {
        const r = toErrorResult(new RuntimeError('Runtime.MarshalError', `Unable to stringify response body: ${e.message}`), inv.id);
        r.trace = [];
        r.stackTrace = [];
        logError('Invoke Error', r);
        posted = this.client.postError(inv.id, r);
      }
      if (!posted) posted = this.client.postResponse(inv.id, body);
    }
    posted.catch((e) => {
      process.stderr.write(`runtime API unreachable: ${e && e.message}\n`);
      process.exit(1);
    });
    // The next GET /next follows the result on the same connection.
    this.scheduleNext();
  }

  scheduleNext() {
    // Run the next invocation from a fresh stack.
    setImmediate(() => this.loop().catch((e) => {
      process.stderr.write(`runtime API unreachable: ${e && e.message}\n`);
      process.exit(1);
    }));
  }

  onFatal(err, what) {
    const inv = this.current;
    const r = toErrorResult(err, inv ? inv.id : undefined);
    logError(what, r);
    const done = () => process.exit(129);
    if (inv && !inv.settled) {
      inv.settled = true;
      this.client.postError(inv.id, r).then(done, done);
    } else {
      done();
    }
  }
}

async function main() {
  const address = process.env.AWS_LAMBDA_RUNTIME_API;
  if (!address) {
    process.stderr.write('AWS_LAMBDA_RUNTIME_API is not set\n');
    process.exit(2);
  }
  patchConsole();
  const client = new RuntimeClient(address);
  try {
    process.chdir(TASK_ROOT);
  } catch (e) {
    // keep the current directory
  }
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER || '');
  } catch (e) {
    const r = toErrorResult(e);
    logError('Uncaught Exception', r);
    try {
      await client.postInitError(r);
    } finally {
      process.exit(129);
    }
  }
  const rt = new Runtime(client, handler);
  rt.scheduleNext();
}

main();
