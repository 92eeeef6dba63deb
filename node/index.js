'use strict';
// polygear: Gearman client, worker, admin and embedded server for Node.js.
//
// This file is the public API. It validates arguments (wrong types throw or
// reject with TypeError), converts payloads to Buffers, and turns the native
// addon's encoded errors into Error subclasses with a stable `code`. All
// networking and protocol logic runs in Rust (crate `polygear`) on a tokio
// runtime, never on the JS thread.

const { EventEmitter } = require('node:events');
const path = require('node:path');

const json = require('./lib/json');
const { makeLog } = require('./lib/log');
const { rejectUnknown } = require('./lib/options');
const signals = require('./lib/signals');

let native;
try {
  native = require(path.join(__dirname, 'polygear.node'));
} catch (err) {
  const e = new Error(
    'polygear: the native addon (polygear.node) is missing or cannot be loaded; ' +
      'build it with `npm run build` (needs cargo). Cause: ' + err.message,
  );
  e.cause = err;
  throw e;
}

const DEFAULT_SERVER = '127.0.0.1:4730';
const PRIORITIES = { high: 0, normal: 1, low: 2 };

// ---------------------------------------------------------------- errors

/** Base class of every error raised by polygear; `code` is stable. */
class GearmanError extends Error {
  constructor(message, code, options) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
/** Could not connect, or the connection was lost (code ECONNREFUSED, ECONNRESET, …). */
class ConnectionError extends GearmanError {}
/** A deadline passed (code ETIMEDOUT). */
class TimeoutError extends GearmanError {}
/** The peer broke the wire protocol (code EPROTOCOL). */
class ProtocolError extends GearmanError {}
/** The server answered with an ERROR packet or admin error (code ESERVER; `serverCode`). */
class ServerError extends GearmanError {
  constructor(message, serverCode, options) {
    super(message, 'ESERVER', options);
    this.serverCode = serverCode;
  }
}
/**
 * The worker reported WORK_FAIL, or the server failed the job (code
 * EJOBFAILED); `reason` is the server's reason when it gave one (polygeard:
 * "the worker exceeded its 1 s timeout").
 */
class JobFailedError extends GearmanError {
  constructor(message, handle, options) {
    super(message, 'EJOBFAILED', options);
    this.handle = handle;
    this.reason = options && typeof options.reason === 'string' ? options.reason : undefined;
  }
}
/**
 * The job was cancelled (`client.cancel()`, an aborted signal, an
 * administrator): a JobFailedError with code ECANCELED; `reason` is the
 * server's text, e.g. "cancelled by a client".
 */
class JobCancelledError extends JobFailedError {
  constructor(message, handle, options) {
    super(message, handle, options);
    this.code = 'ECANCELED';
  }
}
/** Whether a WORK_FAIL reason says the job was cancelled (as the core tells it). */
function isCancelReason(reason) {
  return typeof reason === 'string' && (reason === 'cancelled' || reason.startsWith('cancelled '));
}
/** The worker raised (WORK_EXCEPTION); `message` is the worker's text (code EJOBEXCEPTION). */
class JobExceptionError extends GearmanError {
  constructor(message, handle, options) {
    super(message, 'EJOBEXCEPTION', options);
    this.handle = handle;
  }
}
/** Used after close()/stop() (code ECLOSED). */
class ClosedError extends GearmanError {}
/** A value of the right type but not acceptable, e.g. a too long unique (code EINVAL). */
class InvalidArgumentError extends GearmanError {}
/** The operation was aborted through an AbortSignal (code ABORT_ERR, like Node's). */
class AbortError extends GearmanError {
  constructor(message = 'The operation was aborted', options) {
    super(message, 'ABORT_ERR', options);
  }
}

const SEP = '\x1f';

/** Turns an encoded native error (`PGERR␟kind␟code␟extra␟message`) into its subclass. */
function translate(err, signal) {
  if (!(err instanceof Error) || typeof err.message !== 'string' || !err.message.startsWith('PGERR' + SEP)) {
    return err;
  }
  const parts = err.message.split(SEP);
  const [, kind, code, extra] = parts;
  const message = parts.slice(4).join(SEP);
  switch (kind) {
    case 'connection':
      return new ConnectionError(message, code);
    case 'timeout':
      return new TimeoutError(message, code);
    case 'protocol':
      return new ProtocolError(message, code);
    case 'server':
      return new ServerError(extra ? `${extra}: ${message}` : message, extra || undefined);
    case 'jobfailed': {
      const [handle, reason] = extra.split('\x1e');
      if (code === 'ECANCELED') return new JobCancelledError(message, handle, { reason });
      return new JobFailedError(message, handle, { reason });
    }
    case 'jobexception':
      return new JobExceptionError(message, extra);
    case 'closed':
      return new ClosedError(message, code);
    case 'invalid':
      return new InvalidArgumentError(message, code);
    case 'aborted':
      return abortError(signal);
    default:
      return new GearmanError(message, code);
  }
}

function abortError(signal) {
  const reason = signal ? signal.reason : undefined;
  return new AbortError('The operation was aborted', reason === undefined ? undefined : { cause: reason });
}

/** Calls a native function returning a promise and translates its errors (sync or async). */
async function call(fn, signal) {
  try {
    return await fn();
  } catch (err) {
    throw translate(err, signal);
  }
}

function callSync(fn) {
  try {
    return fn();
  } catch (err) {
    throw translate(err);
  }
}

// ------------------------------------------------------------ validation

function typeError(name, expected, value) {
  const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
  const e = new TypeError(`The "${name}" argument must be ${expected}. Received ${got}`);
  e.code = 'ERR_INVALID_ARG_TYPE';
  return e;
}

function rangeError(name, expected, value) {
  const e = new RangeError(`The value of "${name}" is out of range. It must be ${expected}. Received ${value}`);
  e.code = 'ERR_OUT_OF_RANGE';
  return e;
}

function checkObject(name, value) {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw typeError(name, 'an object', value);
  return value;
}

/** checkObject, then refuses keys not in `known` (a TypeError naming the key and the near match). */
function checkOptions(where, value, known) {
  const o = checkObject('options', value);
  rejectUnknown(where, o, known);
  return o;
}

const CLIENT_OPTIONS = ['servers', 'timeout', 'connectTimeout', 'submitTimeout', 'clientId', 'tls'];
const SUBMIT_OPTIONS = ['unique', 'priority', 'timeout', 'signal', 'epoch', 'retain'];
const WORKER_OPTIONS = [
  'servers', 'concurrency', 'clientId', 'connectTimeout', 'tls', 'logger', 'logLevel', 'onError', 'failFast',
];
const REGISTER_OPTIONS = ['timeout', 'json'];
const ADMIN_OPTIONS = ['server', 'timeout', 'tls'];
const SERVER_OPTIONS = [
  'host', 'port', 'queueFile', 'jobRetries', 'exceptions', 'allowShutdown', 'handlePrefix', 'tls',
  'retry', 'retain', 'uniqueWindow', 'schedules',
];
const RETRY_KEYS = ['maxAttempts', 'backoff', 'maxDelay'];
const SCHEDULE_KEYS = ['name', 'cron', 'function', 'data'];

/** `{ func: ms }` → `[{ function, ms }]`. */
function functionMillis(name, value) {
  checkObject(name, value);
  return Object.entries(value).map(([func, ms]) => {
    if (ms === undefined || ms === null) throw typeError(`${name}.${func}`, 'a number of milliseconds', ms);
    return { function: func, ms: checkMillis(`${name}.${func}`, ms) };
  });
}

/** The embedded server's #19 options (`retry`, `retain`, `uniqueWindow`, `schedules`) into `args`. */
function serverExtensions(o, args) {
  if (o.retry !== undefined) {
    checkObject('options.retry', o.retry);
    args.retry = Object.entries(o.retry).map(([func, p]) => {
      const where = `options.retry.${func}`;
      if (typeof p === 'number') return { function: func, maxAttempts: checkUint32(where, p) };
      const q = checkOptions(where, p, RETRY_KEYS);
      const r = { function: func, maxAttempts: checkUint32(`${where}.maxAttempts`, q.maxAttempts) };
      if (q.backoff !== undefined) r.backoff = checkMillis(`${where}.backoff`, q.backoff);
      if (q.maxDelay !== undefined) r.maxDelay = checkMillis(`${where}.maxDelay`, q.maxDelay);
      return r;
    });
  }
  if (o.retain !== undefined) args.retain = functionMillis('options.retain', o.retain);
  if (o.uniqueWindow !== undefined) args.uniqueWindow = functionMillis('options.uniqueWindow', o.uniqueWindow);
  if (o.schedules !== undefined) {
    if (!Array.isArray(o.schedules)) throw typeError('options.schedules', 'an array of { name, cron, function, data? }', o.schedules);
    args.schedules = o.schedules.map((sc, i) => {
      const q = checkOptions(`options.schedules[${i}]`, sc, SCHEDULE_KEYS);
      const r = {
        name: checkString(`options.schedules[${i}].name`, q.name),
        cron: checkString(`options.schedules[${i}].cron`, q.cron),
        function: checkString(`options.schedules[${i}].function`, q.function, FUNCTION_NAME),
      };
      if (q.data !== undefined) r.data = checkString(`options.schedules[${i}].data`, q.data, { nonEmpty: false });
      return r;
    });
  }
}

/** checkString's options for a function name. */
const FUNCTION_NAME = { what: 'function name' };

function checkString(name, value, { optional = false, nonEmpty = true, what = 'string' } = {}) {
  if (value === undefined && optional) return undefined;
  if (typeof value !== 'string') throw typeError(name, 'a string', value);
  if (nonEmpty && value.length === 0) throw rangeError(name, `a non-empty ${what}`, '""');
  return value;
}

function checkMillis(name, value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || Number.isNaN(value)) throw typeError(name, 'a number of milliseconds', value);
  if (!Number.isFinite(value) || value < 0) throw rangeError(name, 'a finite number ≥ 0', value);
  return value;
}

/** A job or connect timeout: milliseconds, more than 0 (0 would mean "fail at once"). */
function checkTimeout(name, value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || Number.isNaN(value)) throw typeError(name, 'a number of milliseconds', value);
  if (!Number.isFinite(value) || value <= 0) throw rangeError(name, 'greater than 0 (milliseconds)', value);
  return value;
}

function checkUint32(name, value) {
  if (typeof value !== 'number' || Number.isNaN(value)) throw typeError(name, 'an integer', value);
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw rangeError(name, 'an integer from 0 to 4294967295', value);
  }
  return value;
}

function checkServers(value) {
  if (value === undefined || value === null) return [DEFAULT_SERVER];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) throw typeError('servers', 'a string or an array of strings', value);
  if (list.length === 0) throw rangeError('servers', 'a non-empty array', '[]');
  for (const s of list) {
    if (typeof s !== 'string') throw typeError('servers', 'an array of "host:port" strings', s);
  }
  return list.slice();
}

const TLS_KEYS = ['caFile', 'certFile', 'keyFile', 'serverName'];

/**
 * `tls`: `true` (libgearman's GEARMAND_CA_CERTIFICATE, GEARMAN_CLIENT_PEM and
 * GEARMAN_CLIENT_KEY; else the system's trust store), or an object with some
 * of caFile, certFile, keyFile, serverName (only those files are used).
 * `undefined`, `null` and `false` mean plain TCP.
 */
function checkTls(name, value) {
  if (value === undefined || value === null || value === false) return undefined;
  if (value === true) return { fromEnv: true };
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw typeError(name, 'true or an object { caFile, certFile, keyFile, serverName }', value);
  }
  const out = {};
  for (const key of Object.keys(value)) {
    if (!TLS_KEYS.includes(key)) {
      const e = new TypeError(`Unknown option "${name}.${key}"; expected one of ${TLS_KEYS.join(', ')}`);
      e.code = 'ERR_INVALID_ARG_VALUE';
      throw e;
    }
    if (value[key] !== undefined && value[key] !== null) {
      out[key] = checkString(`${name}.${key}`, value[key]);
    }
  }
  if ((out.certFile === undefined) !== (out.keyFile === undefined)) {
    const e = new TypeError(`${name}.certFile and ${name}.keyFile must be given together`);
    e.code = 'ERR_INVALID_ARG_VALUE';
    throw e;
  }
  return out;
}

const SERVER_TLS_KEYS = ['certFile', 'keyFile', 'caFile', 'verifyClients'];

/** The embedded server's `tls`: { certFile, keyFile, caFile?, verifyClients? }. */
function checkServerTls(value) {
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw typeError('options.tls', 'an object { certFile, keyFile, caFile, verifyClients }', value);
  }
  for (const key of Object.keys(value)) {
    if (!SERVER_TLS_KEYS.includes(key)) {
      const e = new TypeError(`Unknown option "options.tls.${key}"; expected one of ${SERVER_TLS_KEYS.join(', ')}`);
      e.code = 'ERR_INVALID_ARG_VALUE';
      throw e;
    }
  }
  const out = {
    certFile: checkString('options.tls.certFile', value.certFile),
    keyFile: checkString('options.tls.keyFile', value.keyFile),
  };
  if (value.caFile !== undefined && value.caFile !== null) out.caFile = checkString('options.tls.caFile', value.caFile);
  if (value.verifyClients !== undefined) {
    if (typeof value.verifyClients !== 'boolean') {
      throw typeError('options.tls.verifyClients', 'a boolean', value.verifyClients);
    }
    out.verifyClients = value.verifyClients;
  }
  return out;
}

function checkSignal(signal) {
  if (signal === undefined || signal === null) return undefined;
  if (typeof signal !== 'object' || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    throw typeError('options.signal', 'an AbortSignal', signal);
  }
  return signal;
}

/** Buffer | Uint8Array | string → Buffer (no copy for Buffers and Uint8Arrays). */
function toBuffer(name, data) {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw typeError(name, 'a Buffer, Uint8Array or string', data);
}

function submitArgs(options, background) {
  const o = checkOptions(background ? 'submitBackground()' : 'submit()', options, SUBMIT_OPTIONS);
  const args = {};
  if (o.unique !== undefined) args.unique = checkString('options.unique', o.unique, { nonEmpty: false });
  if (o.priority !== undefined) {
    if (typeof o.priority !== 'string') throw typeError('options.priority', "'high', 'normal' or 'low'", o.priority);
    if (!(o.priority in PRIORITIES)) throw rangeError('options.priority', "'high', 'normal' or 'low'", o.priority);
    args.priority = PRIORITIES[o.priority];
  }
  const timeout = checkTimeout('options.timeout', o.timeout);
  if (timeout !== undefined) args.timeout = timeout;
  if (o.epoch !== undefined) {
    if (!background) throw typeError('options.epoch', 'undefined for foreground jobs', o.epoch);
    if (o.epoch instanceof Date) args.epoch = Math.floor(o.epoch.getTime() / 1000);
    else if (typeof o.epoch === 'number' && Number.isInteger(o.epoch)) args.epoch = o.epoch;
    else throw typeError('options.epoch', 'a Date or an integer Unix time in seconds', o.epoch);
  }
  if (o.retain !== undefined) {
    if (!background) throw typeError('options.retain', 'undefined for foreground jobs', o.retain);
    args.retain = checkTimeout('options.retain', o.retain);
  }
  return { args, signal: checkSignal(o.signal) };
}

/** Runs `start(canceller)` with `signal` wired to the canceller. */
async function withSignal(signal, start) {
  if (!signal) return call(() => start(undefined));
  if (signal.aborted) throw abortError(signal);
  const canceller = new native.Canceller();
  const onAbort = () => canceller.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await call(() => start(canceller), signal);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

// ---------------------------------------------------------------- client

function toEvent(ev) {
  switch (ev.kind) {
    case 'data':
    case 'warning':
    case 'complete':
      return { type: ev.kind, data: ev.data };
    case 'status':
      return { type: 'status', numerator: ev.numerator, denominator: ev.denominator };
    case 'exception':
      return { type: 'exception', data: ev.data, message: ev.data.toString('utf8') };
    default:
      return ev.reason ? { type: 'fail', reason: ev.reason } : { type: 'fail' };
  }
}

const JOB_EVENTS = new Set(['data', 'warning', 'status', 'complete', 'fail', 'exception']);

/**
 * A running foreground job (from `client.submitJob`). Read its events either
 * with listeners (`job.on('data', …)`, then `await job.result()`) or with
 * `for await (const ev of job)`; not both.
 */
class RunningJob extends EventEmitter {
  constructor(nativeJob, signal, onEnd) {
    super();
    this._native = nativeJob;
    this._signal = signal;
    this._onEnd = onEnd;
    this._mode = null;
    this._done = null;
    this._outcome = null;
    /** The server-assigned job handle. */
    this.handle = nativeJob.handle;
    this.on('newListener', (name) => {
      if (JOB_EVENTS.has(name) && this._mode === null) {
        process.nextTick(() => {
          if (this._mode === null) this._push();
        });
      }
    });
  }

  async _next() {
    if (this._outcome) return null;
    if (this._signal && this._signal.aborted) {
      // aborted: whatever the server says of the (cancelled) job comes second
      const err = abortError(this._signal);
      this._finish({ error: err });
      throw err;
    }
    let ev;
    try {
      ev = await call(() => this._native.nextEvent(), this._signal);
    } catch (err) {
      this._finish({ error: err });
      throw err;
    }
    if (ev === null) {
      const err = new ClosedError('the job ended without a result', 'ECLOSED');
      this._finish({ error: err });
      throw err;
    }
    const event = toEvent(ev);
    if (event.type === 'complete') this._finish({ value: event.data });
    else if (event.type === 'fail') {
      const why = event.reason ? `: ${event.reason}` : '';
      const Class = isCancelReason(event.reason) ? JobCancelledError : JobFailedError;
      this._finish({ error: new Class(`job ${this.handle} failed${why}`, this.handle, { reason: event.reason }) });
    }
    else if (event.type === 'exception') this._finish({ error: new JobExceptionError(event.message, this.handle) });
    return event;
  }

  _finish(outcome) {
    if (this._outcome) return;
    this._outcome = outcome;
    if (this._onEnd) this._onEnd();
  }

  _settled() {
    if (this._outcome.error) throw this._outcome.error;
    return this._outcome.value;
  }

  _push() {
    if (this._done) return this._done;
    if (this._mode === 'pull') {
      throw new Error('this job is being read with an async iterator; use either listeners/result() or the iterator');
    }
    this._mode = 'push';
    this._done = (async () => {
      for (;;) {
        const ev = await this._next();
        if (ev === null) return this._settled();
        switch (ev.type) {
          case 'status':
            this.emit('status', ev.numerator, ev.denominator);
            break;
          case 'exception':
            this.emit('exception', ev.message);
            break;
          case 'fail':
            this.emit('fail', ev.reason);
            break;
          default:
            this.emit(ev.type, ev.data);
        }
        if (this._outcome) return this._settled();
      }
    })();
    this._done.catch(() => {}); // the error is reported through result(); never unhandled
    return this._done;
  }

  /** Resolves with the result (WORK_COMPLETE); rejects with JobFailedError, JobExceptionError, … */
  result() {
    if (this._mode === 'pull') {
      if (this._outcome) return Promise.resolve().then(() => this._settled());
      return Promise.reject(new Error('this job is being read with an async iterator; finish the iteration first'));
    }
    return this._push();
  }

  /** Yields `{ type, … }` events up to and including the final one. */
  async *[Symbol.asyncIterator]() {
    if (this._mode === 'push') {
      throw new Error('this job is being read with listeners/result(); use either those or the iterator');
    }
    this._mode = 'pull';
    for (;;) {
      const ev = await this._next();
      if (ev === null) return;
      yield ev;
      if (this._outcome) return;
    }
  }
}

/** A Gearman client: many jobs in flight over pipelined connections to every server. */
class Client {
  constructor(options) {
    const o = checkOptions('new Client()', options, CLIENT_OPTIONS);
    const args = { servers: checkServers(o.servers) };
    const timeout = checkTimeout('options.timeout', o.timeout);
    if (timeout !== undefined) args.timeout = timeout;
    const connectTimeout = checkTimeout('options.connectTimeout', o.connectTimeout);
    if (connectTimeout !== undefined) args.connectTimeout = connectTimeout;
    const submitTimeout = checkTimeout('options.submitTimeout', o.submitTimeout);
    if (submitTimeout !== undefined) args.submitTimeout = submitTimeout;
    if (o.clientId !== undefined) args.clientId = checkString('options.clientId', o.clientId);
    const tls = checkTls('options.tls', o.tls);
    if (tls !== undefined) args.tls = tls;
    this._native = callSync(() => new native.NativeClient(args));
    this._closed = false;
  }

  _checkOpen() {
    if (this._closed) throw new ClosedError('the client is closed', 'ECLOSED');
  }

  /**
   * Runs a foreground job and resolves with its result. An aborted
   * `signal` rejects with AbortError and cancels the job on the server.
   */
  async submit(func, data, options) {
    checkString('func', func, FUNCTION_NAME);
    const buf = toBuffer('data', data);
    const { args, signal } = submitArgs(options, false);
    this._checkOpen();
    return withSignal(signal, (c) => this._native.submit(func, buf, args, c));
  }

  /** Submits a foreground job and resolves (once created) with a RunningJob to read events from. */
  async submitJob(func, data, options) {
    checkString('func', func, FUNCTION_NAME);
    const buf = toBuffer('data', data);
    const { args, signal } = submitArgs(options, false);
    this._checkOpen();
    if (signal && signal.aborted) throw abortError(signal);
    const canceller = signal ? new native.Canceller() : undefined;
    let handle;
    // An abort cancels the job on the server too: here once its handle is
    // known, in the addon (right after JOB_CREATED) before that.
    const onAbort = () => {
      canceller.cancel();
      if (handle !== undefined) this._cancelQuietly(handle);
    };
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    const cleanup = () => signal && signal.removeEventListener('abort', onAbort);
    let nativeJob;
    try {
      nativeJob = await call(() => this._native.submitJob(func, buf, args, canceller), signal);
    } catch (err) {
      cleanup();
      throw err;
    }
    handle = nativeJob.handle;
    if (signal && signal.aborted) {
      cleanup();
      this._cancelQuietly(handle);
      throw abortError(signal);
    }
    return new RunningJob(nativeJob, signal, cleanup);
  }

  /**
   * Submits a background job and resolves with its handle. `{ retain: ms }`
   * (polygeard only) keeps its result for `result()`; an aborted `signal`
   * rejects and cancels the job on the server.
   */
  async submitBackground(func, data, options) {
    checkString('func', func, FUNCTION_NAME);
    const buf = toBuffer('data', data);
    const { args, signal } = submitArgs(options, true);
    this._checkOpen();
    const handle = await withSignal(signal, (c) => this._native.submitBackground(func, buf, args, c));
    if (signal && signal.aborted) {
      // aborted while the handle was on its way to this thread
      this._cancelQuietly(handle);
      throw abortError(signal);
    }
    return handle;
  }

  /**
   * The retained result of background job `handle` (submitted with
   * `{ retain }`): a Buffer once it completed, null while it is queued,
   * running, unknown or expired. Rejects with JobFailedError (failed),
   * JobCancelledError (cancelled), JobExceptionError (raised), and with
   * ServerError on a server that is not polygeard.
   */
  async result(handle) {
    checkString('handle', handle);
    this._checkOpen();
    return call(() => this._native.result(handle));
  }

  /**
   * The retained state of background job `handle`: `{ state, data }` with
   * state 'complete' (data: the result), 'queued', 'running', 'failed',
   * 'exception' (data: the worker's message) or 'unknown'.
   */
  async resultState(handle) {
    checkString('handle', handle);
    this._checkOpen();
    const r = await call(() => this._native.resultState(handle));
    return r.data === undefined || r.data === null ? { state: r.state } : { state: r.state, data: r.data };
  }

  /**
   * Cancels job `handle` on its server: true if it was queued or running
   * (polygeard; gearmand cancels queued jobs only), false if no server
   * knows it. Its waiting clients get JobCancelledError.
   */
  async cancel(handle) {
    checkString('handle', handle);
    this._checkOpen();
    return call(() => this._native.cancel(handle));
  }

  /** cancel() after an abort; its outcome has no one to go to. */
  _cancelQuietly(handle) {
    if (this._closed) return;
    this._native.cancel(handle).catch(() => {});
  }

  /**
   * Runs a foreground job with a JSON payload and resolves with the decoded
   * result: `value` is sent as UTF-8 JSON (undefined as null), for a worker
   * registered with `{ json: true }` in any language. A result that is not
   * JSON rejects with a GearmanError of code EJSON.
   */
  async submitJson(func, value, options) {
    checkString('func', func, FUNCTION_NAME);
    const buf = json.encode(value, 'the value');
    const result = await this.submit(func, buf, options);
    try {
      return json.decode(result);
    } catch (err) {
      throw new GearmanError(
        `the result of function '${func}' is not valid JSON (${err.message}); is its worker registered with {json: true}?`,
        'EJSON',
        { cause: err },
      );
    }
  }

  /** GET_STATUS of a job handle. */
  async status(handle) {
    checkString('handle', handle);
    this._checkOpen();
    return stripStatus(await call(() => this._native.status(handle)));
  }

  /** GET_STATUS_UNIQUE of a unique key (includes `clientCount`). */
  async statusUnique(unique) {
    checkString('unique', unique);
    this._checkOpen();
    return call(() => this._native.statusUnique(unique));
  }

  /** ECHO round trip to the first reachable server. */
  async echo(data) {
    const buf = toBuffer('data', data);
    this._checkOpen();
    return call(() => this._native.echo(buf));
  }

  /** Closes every connection; jobs still in flight reject with ClosedError. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    await call(() => this._native.close());
  }
}

function stripStatus(s) {
  const out = { handle: s.handle, known: s.known, running: s.running, numerator: s.numerator, denominator: s.denominator };
  return out;
}

// ---------------------------------------------------------------- worker

/** A job given to a worker handler. */
class Job {
  constructor(nativeJob, signal) {
    this._native = nativeJob;
    /** The job handle. */
    this.handle = nativeJob.handle;
    /** The function name. */
    this.function = nativeJob.function;
    /** The unique key ('' if none). */
    this.unique = nativeJob.unique;
    /**
     * Aborts when the function's registered timeout passes (reason: a
     * TimeoutError) or when `stop({ timeout })` gives up on the job (reason:
     * a ClosedError). The job has then ended: what the handler returns later
     * is dropped.
     */
    this.signal = signal || new AbortController().signal;
    this._data = undefined;
    this._probe = undefined;
  }

  /** The workload. */
  get data() {
    if (this._data === undefined) this._data = this._native.data;
    return this._data;
  }

  /** The workload decoded as UTF-8 JSON (throws a SyntaxError if it is not JSON). */
  json() {
    return json.decode(this.data);
  }

  /** WORK_DATA: send a chunk of partial output to waiting clients. */
  sendData(data) {
    const buf = toBuffer('data', data);
    callSync(() => this._native.sendData(buf));
  }

  /** WORK_WARNING. */
  sendWarning(data) {
    const buf = toBuffer('data', data);
    callSync(() => this._native.sendWarning(buf));
  }

  /** WORK_STATUS: progress numerator / denominator. */
  sendStatus(numerator, denominator) {
    checkUint32('numerator', numerator);
    checkUint32('denominator', denominator);
    callSync(() => this._native.sendStatus(numerator, denominator));
  }

  /**
   * Resolves with true once the server no longer has this job: it was
   * cancelled (`client.cancel()`, an administrator) or the server gave up
   * on it. Each call asks the server (one round trip), so check every
   * 0.1–1 s, not in a tight loop; a handler that sees true should stop
   * (its result is dropped). gearmand cancels only queued jobs: there it
   * stays false while the job runs. Calls made while one is pending share it.
   */
  cancelled() {
    if (!this._probe) {
      this._probe = call(() => this._native.cancelled()).finally(() => {
        this._probe = undefined;
      });
    }
    return this._probe;
  }

  /** gearmanode's name of `data`. */
  get payload() {
    return this.data;
  }

  /** gearmanode's name of sendStatus(). */
  reportStatus(numerator, denominator) {
    this.sendStatus(numerator, denominator);
  }

  /** gearmanode's name of sendWarning(). */
  reportWarning(data) {
    this.sendWarning(data);
  }
}

/**
 * A handler's result as the WORK_COMPLETE payload: Buffer, Uint8Array and
 * string pass, undefined and null are an empty result; anything else is a
 * TypeError naming its type (the job then ends with WORK_EXCEPTION).
 */
function resultBuffer(value) {
  if (value === undefined || value === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array || typeof value === 'string') {
    return toBuffer('result', value);
  }
  throw new TypeError(
    `worker function returned ${json.typeName(value)}; return a Buffer, string or undefined ` +
      '(or register with {json: true})',
  );
}

function errorText(err) {
  if (err instanceof Error) return err.message || err.name;
  if (typeof err === 'string') return err;
  try {
    return String(err);
  } catch {
    return 'worker handler failed';
  }
}

const STOP_OPTIONS = ['timeout'];
/** The shortest CAN_DO_TIMEOUT gearmand and polygeard apply (ms); shorter ones are raised to it. */
const SERVER_MIN_TIMEOUT_MS = 1000;
const WORK_OPTIONS = ['handleSignals'];

/** Connection events: kind → what is emitted. */
const CONNECTION_EVENTS = {
  connect: (ev) => ({ server: ev.server, reconnect: ev.reconnect, message: ev.message }),
  connectError: (ev) => ({ server: ev.server, error: ev.error, attempt: ev.attempt, retryIn: ev.retryIn, message: ev.message }),
  disconnect: (ev) => ({ server: ev.server, reason: ev.reason, message: ev.message }),
};

/** Failed connects logged at warn level (the others at debug): the first ones, then every 10th. */
const loudAttempt = (attempt) => attempt <= 3 || attempt % 10 === 0;

/**
 * A Gearman worker. `register()` functions, then `await worker.work()` until
 * `await worker.stop()` (or SIGINT / SIGTERM). Handlers run on the JS thread
 * and may be async.
 *
 * Events (it never emits 'error'): 'jobError' (err, job) when a handler
 * throws, rejects or returns what cannot be sent; 'connect' ({ server,
 * reconnect }), 'connectError' ({ server, error, attempt, retryIn }) and
 * 'disconnect' ({ server, reason }) for its connections.
 */
class Worker extends EventEmitter {
  constructor(options) {
    super();
    const o = checkOptions('new Worker()', options, WORKER_OPTIONS);
    const args = { servers: checkServers(o.servers) };
    if (o.concurrency !== undefined) {
      checkUint32('options.concurrency', o.concurrency);
      if (o.concurrency < 1) throw rangeError('options.concurrency', '≥ 1', o.concurrency);
      args.concurrency = o.concurrency;
    }
    if (o.clientId !== undefined) args.clientId = checkString('options.clientId', o.clientId);
    const connectTimeout = checkTimeout('options.connectTimeout', o.connectTimeout);
    if (connectTimeout !== undefined) args.connectTimeout = connectTimeout;
    const tls = checkTls('options.tls', o.tls);
    if (tls !== undefined) args.tls = tls;
    if (o.onError !== undefined && o.onError !== null && typeof o.onError !== 'function') {
      throw typeError('options.onError', 'a function', o.onError);
    }
    if (o.failFast !== undefined && typeof o.failFast !== 'boolean') throw typeError('options.failFast', 'a boolean', o.failFast);
    this._failFast = o.failFast === true;
    this._log = makeLog(o.logger, o.logLevel);
    this._onError = o.onError || undefined;
    this._native = callSync(() => new native.NativeWorker(args));
    this._subscribed = false;
    /** name → { handler, timeout, json } */
    this._handlers = new Map();
    /** Jobs handed to handlers that have not ended: { job, nativeJob, controller } (ended: nativeJob.finished). */
    this._running = new Set();
    this._working = null;
    this._stopping = null;
  }

  /**
   * Registers `handler` for `name` (CAN_DO, or CAN_DO_TIMEOUT with
   * `options.timeout` ms). With `options.json` the handler gets the decoded
   * workload and the job, `handler(value, job)`, and what it returns is sent
   * as JSON (undefined as null).
   */
  register(name, handler, options) {
    checkString('name', name, FUNCTION_NAME);
    if (typeof handler !== 'function') throw typeError('handler', 'a function', handler);
    const o = checkOptions('register()', options, REGISTER_OPTIONS);
    const timeout = checkTimeout('options.timeout', o.timeout);
    if (o.json !== undefined && typeof o.json !== 'boolean') throw typeError('options.json', 'a boolean', o.json);
    if (this._stopping) throw new ClosedError('the worker is stopped', 'ECLOSED');
    callSync(() => this._native.register(name, timeout));
    this._handlers.set(name, { handler, json: o.json === true });
    return this;
  }

  /** Unregisters `name` (CANT_DO). */
  unregister(name) {
    checkString('name', name, FUNCTION_NAME);
    this._handlers.delete(name);
    callSync(() => this._native.unregister(name));
    return this;
  }

  /** gearmanode's name of unregister(). */
  removeFunction(name) {
    return this.unregister(name);
  }

  /** Unregisters every function (gearmanode's RESET_ABILITIES). */
  resetAbilities() {
    for (const name of [...this._handlers.keys()]) this.unregister(name);
    return this;
  }

  async _dispatch(nativeJob) {
    const entry = this._handlers.get(nativeJob.function);
    const controller = new AbortController();
    const job = new Job(nativeJob, controller.signal);
    const run = { job, nativeJob, controller };
    this._running.add(run);
    let timer;
    const timeout = nativeJob.timeout;
    if (timeout > 0) timer = setTimeout(() => this._expire(run, timeout), timeout);
    try {
      if (!entry) throw new Error(`no handler registered for function '${nativeJob.function}'`);
      const result = entry.json ? await runJson(entry.handler, job) : resultBuffer(await entry.handler(job));
      if (nativeJob.finished) {
        this._log('debug', `polygear: job ${job.handle} had already ended; its handler's late result is dropped`);
      } else {
        nativeJob.complete(result);
      }
    } catch (err) {
      if (nativeJob.finished) {
        this._log('debug', `polygear: job ${job.handle} had already ended; its handler's late error is dropped: ${errorText(err)}`);
        return;
      }
      this._jobError(err, job);
      try {
        nativeJob.exception(errorText(err));
      } catch {
        // the connection is gone; the core fails the job on its own
      }
    } finally {
      clearTimeout(timer);
      this._running.delete(run);
    }
  }

  /**
   * Forwards the connection events from now on (before the worker starts:
   * connect() or work()); the forwarding ends with the shutdown.
   */
  _subscribe() {
    if (this._subscribed) return;
    this._subscribed = true;
    this._native.onEvent((ev) => this._connectionEvent(ev));
  }

  /** A connection event from the core: emitted, and logged (warn when nobody listens to a problem). */
  _connectionEvent(ev) {
    const shape = CONNECTION_EVENTS[ev.kind];
    if (!shape) {
      this._log('info', `polygear: ${ev.message}`);
      return;
    }
    const listened = this.listenerCount(ev.kind) > 0;
    let level = 'info';
    if (ev.kind === 'disconnect') level = listened ? 'debug' : 'warn';
    if (ev.kind === 'connectError') level = !listened && loudAttempt(ev.attempt) ? 'warn' : 'debug';
    this._log(level, `polygear: ${ev.message}`);
    if (!listened) return;
    try {
      this.emit(ev.kind, shape(ev));
    } catch (err) {
      this._log('warn', `polygear: a '${ev.kind}' listener threw: ${errorText(err)}`);
    }
  }

  /**
   * Fail-fast start: resolves once a server is connected with the registered
   * functions; rejects with a ConnectionError once every server failed its
   * first attempt. The worker keeps retrying in the background either way
   * (stop() ends that). `work()` calls it first with `failFast: true`.
   */
  async connect() {
    if (this._stopping) throw new ClosedError('the worker is stopped', 'ECLOSED');
    this._subscribe();
    return call(() => this._native.connect());
  }

  /** Reports a handler's error: the log (with its stack), 'jobError' listeners, onError. */
  _jobError(err, job) {
    const detail = err instanceof Error && err.stack ? err.stack : errorText(err);
    this._log('error', `polygear: job ${job.handle} (function '${job.function}') failed: ${detail}`);
    const hook = (what, fn) => {
      try {
        const r = fn();
        if (r && typeof r.then === 'function') r.then(undefined, (e) => this._log('warn', `polygear: ${what} rejected: ${errorText(e)}`));
      } catch (e) {
        this._log('warn', `polygear: ${what} threw: ${errorText(e)}`);
      }
    };
    if (this.listenerCount('jobError') > 0) hook("a 'jobError' listener", () => this.emit('jobError', err, job));
    if (this._onError) hook('options.onError', () => this._onError(err, job));
  }

  /**
   * The job's registered timeout passed: end it here, free its slot, abort
   * its signal. Servers raise a CAN_DO_TIMEOUT below 1 s to 1 s, so for a
   * shorter one the server has not acted yet and gets WORK_FAIL (its
   * clients see the job fail now); from 1 s on it has given up on the job
   * at the same moment (polygeard failed it, gearmand requeues it), so the
   * job is abandoned without a word (a WORK_FAIL would get JOB_NOT_FOUND).
   */
  _expire(run, timeout) {
    if (run.nativeJob.finished) return;
    this._running.delete(run);
    const { handle, function: func } = run.job;
    const reason = new TimeoutError(
      `job ${handle} (function '${func}') did not finish within its ${timeout} ms timeout (timeout is in milliseconds)`,
      'ETIMEDOUT',
    );
    this._log('warn', `polygear: ${reason.message}; its slot is freed and a late result will be dropped`);
    try {
      if (timeout < SERVER_MIN_TIMEOUT_MS) run.nativeJob.fail();
      else run.nativeJob.abandon();
    } catch {
      // already ended by the core (connection gone)
    }
    run.controller.abort(reason);
  }

  /** stop({ timeout }) handed the jobs still running back to the server: they end here, their signals abort. */
  _handedBack(count) {
    const runs = [...this._running];
    this._running.clear();
    if (count > 0 || runs.length > 0) {
      const jobs = runs.map((r) => `${r.job.handle} (function '${r.job.function}')`).join(', ');
      this._log('warn', `polygear: stop() timed out: ${Math.max(count, runs.length)} running job(s) handed back to the ` +
        `server, which gives them to another worker${jobs ? `: ${jobs}` : ''}`);
    }
    for (const run of runs) {
      run.controller.abort(new ClosedError(
        `the worker stopped before job ${run.job.handle} finished; it was handed back to the server`, 'ECLOSED'));
    }
  }

  /**
   * Processes jobs until stop(); resolves once the running handlers finished.
   * Rejects with InvalidArgumentError when no function is registered. Unless
   * `options.handleSignals` is false, SIGINT and SIGTERM stop the worker
   * gracefully while it works (a second one exits at once).
   */
  async work(options) {
    const o = checkOptions('work()', options, WORK_OPTIONS);
    if (o.handleSignals !== undefined && typeof o.handleSignals !== 'boolean') {
      throw typeError('options.handleSignals', 'a boolean', o.handleSignals);
    }
    if (this._stopping) throw new ClosedError('the worker is stopped', 'ECLOSED');
    if (this._working) throw new Error('work() is already running');
    if (this._handlers.size === 0) {
      throw new InvalidArgumentError('no function registered; use worker.register(name, handler) before work()', 'EINVAL');
    }
    if (this._failFast) {
      try {
        await this.connect();
      } catch (err) {
        await this.stop().catch(() => {});
        throw err;
      }
    }
    this._subscribe();
    const untrap = o.handleSignals === false ? () => {} : this._trapSignals();
    this._working = call(() => this._native.work((job) => this._dispatch(job)));
    try {
      return await this._working;
    } finally {
      untrap();
    }
  }

  /** Stops gracefully on SIGINT/SIGTERM (lib/signals.js) until the returned function is called. */
  _trapSignals() {
    return signals.trap({
      first: (sig) => {
        this._log('warn', `polygear: ${sig}: finishing the running jobs, taking no new ones (${sig} again exits at once)`);
        this.stop().catch((err) => this._log('error', `polygear: stopping on ${sig} failed: ${errorText(err)}`));
      },
      again: (sig) => this._log('warn', `polygear: ${sig} again: exiting without waiting for the running jobs`),
    });
  }

  /**
   * Graceful stop: no new jobs; running handlers finish; then the connections
   * close. With `options.timeout` (ms), jobs whose handlers are still running
   * after that long are handed back to the server, which requeues them for
   * another worker (their clients keep waiting); their signals abort and
   * their later results are dropped.
   */
  async stop(options) {
    const o = checkOptions('stop()', options, STOP_OPTIONS);
    const timeout = checkMillis('options.timeout', o.timeout);
    if (!this._stopping) {
      this._native.stop();
      this._stopping = timeout === undefined ? this._shutdown() : this._shutdownWithin(timeout);
    } else if (timeout !== undefined) {
      await this._shutdownWithin(timeout);
    }
    return this._stopping;
  }

  async _shutdown() {
    await call(() => this._native.shutdown());
    if (this._working) await this._working.catch(() => {});
  }

  async _shutdownWithin(timeout) {
    this._handedBack(await call(() => this._native.shutdownTimeout(timeout)));
    if (this._working) await this._working.catch(() => {});
  }

  /** Same as stop(). */
  close(options) {
    return this.stop(options);
  }
}

/** Runs a `{ json: true }` handler: decoded workload in, JSON-encoded result out. */
async function runJson(handler, job) {
  let value;
  try {
    value = job.json();
  } catch (err) {
    throw new TypeError(`the workload of job ${job.handle} for function '${job.function}' is not valid JSON: ${err.message}`, {
      cause: err,
    });
  }
  return json.encode(await handler(value, job), `the result of function '${job.function}'`);
}

// ----------------------------------------------------------------- admin

/** gearmand's text admin protocol (status, workers, …) on one server. */
class Admin {
  constructor(options) {
    const o = checkOptions('new Admin()', options, ADMIN_OPTIONS);
    const server = o.server === undefined ? DEFAULT_SERVER : checkString('options.server', o.server);
    const timeout = checkTimeout('options.timeout', o.timeout);
    const tls = checkTls('options.tls', o.tls);
    this._native = callSync(() => new native.NativeAdmin(server, timeout, tls));
  }

  /** `status`: per function total/running jobs and workers. */
  status() {
    return call(() => this._native.status());
  }
  /** `prioritystatus`: waiting jobs per priority. */
  priorityStatus() {
    return call(() => this._native.priorityStatus());
  }
  /** `workers`: one entry per connection. */
  workers() {
    return call(() => this._native.workers());
  }
  /** `version`. */
  version() {
    return call(() => this._native.version());
  }
  /** `getpid`. */
  getpid() {
    return call(() => this._native.getpid());
  }
  /** `verbose`: the server's log level. */
  verbose() {
    return call(() => this._native.verbose());
  }
  /** `show jobs`. */
  showJobs() {
    return call(() => this._native.showJobs());
  }
  /** `show unique jobs`. */
  showUniqueJobs() {
    return call(() => this._native.showUniqueJobs());
  }
  /** `cancel job HANDLE`. */
  async cancelJob(handle) {
    checkString('handle', handle);
    return call(() => this._native.cancelJob(handle));
  }
  /** `maxqueue FUNC` (no limits: unlimited) or `maxqueue FUNC HIGH NORMAL LOW`. */
  async maxqueue(func, limits) {
    checkString('func', func, FUNCTION_NAME);
    if (limits !== undefined && limits !== null) {
      if (typeof limits === 'number') limits = [limits, limits, limits];
      if (!Array.isArray(limits) || limits.length !== 3) throw typeError('limits', 'a number or [high, normal, low]', limits);
      limits.forEach((n, i) => checkUint32(`limits[${i}]`, n));
    } else {
      limits = undefined;
    }
    return call(() => this._native.maxqueue(func, limits));
  }
  /** `create function FUNC`. */
  async createFunction(func) {
    checkString('func', func, FUNCTION_NAME);
    return call(() => this._native.createFunction(func));
  }
  /** `drop function FUNC`. */
  async dropFunction(func) {
    checkString('func', func, FUNCTION_NAME);
    return call(() => this._native.dropFunction(func));
  }
  /** `shutdown` (graceful: `shutdown graceful`). */
  async shutdown(graceful = false) {
    if (typeof graceful !== 'boolean') throw typeError('graceful', 'a boolean', graceful);
    return call(() => this._native.shutdown(graceful));
  }
  // ------------------------------------------------ polygeard extensions
  // (against gearmand these reject with ServerError, serverCode UNKNOWN_COMMAND)

  /**
   * Retries a function's failed background jobs: `maxAttempts` runs in all
   * (the first included; 0 removes the policy), waiting `backoff` ms after
   * the first failure, doubled after each further one up to `maxDelay` ms
   * (default 1 h). The last failure moves the job to the dead set.
   */
  async setRetryPolicy(func, maxAttempts, backoff, maxDelay) {
    checkString('func', func, FUNCTION_NAME);
    checkUint32('maxAttempts', maxAttempts);
    if (backoff === undefined || backoff === null) throw typeError('backoff', 'a number of milliseconds', backoff);
    checkMillis('backoff', backoff);
    const max = checkMillis('maxDelay', maxDelay);
    return call(() => this._native.setRetryPolicy(func, maxAttempts, backoff, max));
  }
  /** The retry policies: `{ function, maxAttempts, backoff, maxDelay }` (ms). */
  retryPolicies() {
    return call(() => this._native.retryPolicies());
  }
  /**
   * The dead set, oldest first (of `func`, or all): `{ handle, function,
   * unique, data (Buffers), attempts, error, submitted, failedAt (Dates) }`.
   */
  async deadJobs(func) {
    if (func !== undefined && func !== null) checkString('func', func, FUNCTION_NAME);
    const rows = await call(() => this._native.deadJobs(func === null ? undefined : func));
    return rows.map((j) => ({
      handle: j.handle,
      function: j.function,
      unique: j.unique,
      data: j.data,
      attempts: j.attempts,
      error: j.error,
      submitted: new Date(j.submitted * 1000),
      failedAt: new Date(j.failedAt * 1000),
    }));
  }
  /** Requeues `func`'s dead jobs; resolves with how many. */
  async retryDead(func) {
    checkString('func', func, FUNCTION_NAME);
    return call(() => this._native.retryDead(func));
  }
  /** Requeues one dead job; true if it was in the dead set. */
  async retryDeadJob(handle) {
    checkString('handle', handle);
    return call(() => this._native.retryDeadJob(handle));
  }
  /** Requeues every dead job; resolves with how many. */
  retryAllDead() {
    return call(() => this._native.retryAllDead());
  }
  /** Drops `func`'s dead jobs; resolves with how many. */
  async deleteDead(func) {
    checkString('func', func, FUNCTION_NAME);
    return call(() => this._native.deleteDead(func));
  }
  /** Drops one dead job; true if it was in the dead set. */
  async deleteDeadJob(handle) {
    checkString('handle', handle);
    return call(() => this._native.deleteDeadJob(handle));
  }
  /** Drops every dead job; resolves with how many. */
  deleteAllDead() {
    return call(() => this._native.deleteAllDead());
  }
  /** Pauses `func`: its jobs stay queued (submissions go on), none is handed out. */
  async pause(func) {
    checkString('func', func, FUNCTION_NAME);
    return call(() => this._native.pause(func));
  }
  /** Resumes a paused function. */
  async resume(func) {
    checkString('func', func, FUNCTION_NAME);
    return call(() => this._native.resume(func));
  }
  /** The paused functions. */
  paused() {
    return call(() => this._native.paused());
  }
  /**
   * Drains a worker: it gets no new jobs, finishes those it has. `id` is the
   * `fd` of `workers()` (number or string) or its client id; resolves with
   * how many connections matched (ServerError UNKNOWN_WORKER if none).
   */
  async drainWorker(id) {
    if (typeof id === 'number') checkUint32('id', id);
    else checkString('id', id);
    return call(() => this._native.drainWorker(String(id)));
  }
  /** The worker connections being drained: `{ fd, clientId }`. */
  draining() {
    return call(() => this._native.draining());
  }
  /** Keeps `func`'s background results `ms` (whole seconds, rounded up; 0 turns it off). */
  async setRetention(func, ms) {
    checkString('func', func, FUNCTION_NAME);
    if (ms === undefined || ms === null) throw typeError('ms', 'a number of milliseconds', ms);
    checkMillis('ms', ms);
    return call(() => this._native.setRetention(func, ms));
  }
  /** The retention settings: `{ function, retain }` (ms). */
  async retention() {
    const rows = await call(() => this._native.retention());
    return rows.map((r) => ({ function: r.function, retain: r.duration }));
  }
  /**
   * Sets `func`'s unique window (ms, whole seconds; 0 turns it off): a job
   * with the unique of one that completed within the window is not run again.
   */
  async setUniqueWindow(func, ms) {
    checkString('func', func, FUNCTION_NAME);
    if (ms === undefined || ms === null) throw typeError('ms', 'a number of milliseconds', ms);
    checkMillis('ms', ms);
    return call(() => this._native.setUniqueWindow(func, ms));
  }
  /** The unique windows: `{ function, window }` (ms). */
  async uniqueWindows() {
    const rows = await call(() => this._native.uniqueWindows());
    return rows.map((r) => ({ function: r.function, window: r.duration }));
  }
  /**
   * Adds (or replaces) periodic job `name`: at each time `cron` (UTC; 5
   * fields, 6 with seconds first, or @hourly, @daily, …) matches, a
   * background job of `func` with payload `data` (a string, default '')
   * and unique `NAME@<unix time>`.
   */
  async scheduleAdd(name, cron, func, data = '') {
    checkString('name', name);
    checkString('cron', cron);
    checkString('func', func, FUNCTION_NAME);
    checkString('data', data, { nonEmpty: false });
    return call(() => this._native.scheduleAdd(name, cron, func, data));
  }
  /** The periodic jobs: `{ name, function, cron, data, lastFired, next }` (Dates or null). */
  async schedules() {
    const rows = await call(() => this._native.schedules());
    const date = (t) => (t === undefined || t === null ? null : new Date(t * 1000));
    return rows.map((r) => ({
      name: r.name,
      function: r.function,
      cron: r.cron,
      data: r.data,
      lastFired: date(r.lastFired),
      next: date(r.next),
    }));
  }
  /** Deletes periodic job `name` (ServerError UNKNOWN_SCHEDULE if there is none). */
  async scheduleDelete(name) {
    checkString('name', name);
    return call(() => this._native.scheduleDelete(name));
  }
  /** Any command line; resolves with the raw reply. */
  async raw(command) {
    checkString('command', command);
    return call(() => this._native.raw(command));
  }
  /** Closes the connection (a later call reconnects). */
  close() {
    return call(() => this._native.close());
  }
}

// ---------------------------------------------------------------- server

/** Servers started in this process (kept referenced until they stop). */
const liveServers = new Set();

/**
 * The polygear job server running inside this process (tests, small
 * deployments). While it runs it keeps Node alive, unless `unref()` is called.
 */
class Server {
  constructor(options) {
    const o = checkOptions('new Server()', options, SERVER_OPTIONS);
    const args = {};
    if (o.host !== undefined) args.host = checkString('options.host', o.host);
    if (o.port !== undefined) {
      checkUint32('options.port', o.port);
      if (o.port > 65535) throw rangeError('options.port', 'from 0 to 65535', o.port);
      args.port = o.port;
    }
    if (o.queueFile !== undefined) args.queueFile = checkString('options.queueFile', o.queueFile);
    if (o.jobRetries !== undefined) args.jobRetries = checkUint32('options.jobRetries', o.jobRetries);
    for (const flag of ['exceptions', 'allowShutdown']) {
      if (o[flag] !== undefined) {
        if (typeof o[flag] !== 'boolean') throw typeError(`options.${flag}`, 'a boolean', o[flag]);
        args[flag] = o[flag];
      }
    }
    if (o.handlePrefix !== undefined) args.handlePrefix = checkString('options.handlePrefix', o.handlePrefix);
    if (o.tls !== undefined && o.tls !== null) args.tls = checkServerTls(o.tls);
    serverExtensions(o, args);
    this._args = args;
    this._native = null;
    this._starting = null;
    this._stopping = null;
    this._keepAlive = null;
    this._refed = true;
  }

  /** Creates and starts a server; resolves once it accepts connections. */
  static async start(options) {
    const server = new Server(options);
    await server.start();
    return server;
  }

  /** Starts listening; resolves once the server accepts connections. */
  start() {
    if (!this._starting) {
      this._starting = (async () => {
        this._native = await call(() => native.startServer(this._args));
        liveServers.add(this);
        this._keepAlive = setInterval(() => {}, 0x7fffffff);
        if (!this._refed) this._keepAlive.unref();
        this._native.onStopped(() => this._release());
      })();
    }
    return this._starting;
  }

  _release() {
    if (this._keepAlive) clearInterval(this._keepAlive);
    this._keepAlive = null;
    liveServers.delete(this);
  }

  _started() {
    if (!this._native) throw new Error('the server is not started; await server.start() first');
    return this._native;
  }

  /** The bound port (the real one when 0 was asked for). */
  get port() {
    return this._started().port;
  }

  /** The bound address. */
  get host() {
    return this._started().host;
  }

  /** `host:port`, ready for the `servers` option of Client and Worker. */
  get address() {
    const n = this._started();
    return n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`;
  }

  /** True while the server runs. */
  get listening() {
    return this._keepAlive !== null;
  }

  /** Stops the server and closes every connection; resolves once it is down. */
  stop() {
    if (!this._stopping) {
      this._stopping = (async () => {
        if (this._starting) await this._starting.catch(() => {});
        if (this._native) await call(() => this._native.stop());
        this._release();
      })();
    }
    return this._stopping;
  }

  /** Same as stop(). */
  close() {
    return this.stop();
  }

  /** Lets Node exit even though the server runs. */
  unref() {
    this._refed = false;
    if (this._keepAlive) this._keepAlive.unref();
    return this;
  }

  /** Undoes unref(). */
  ref() {
    this._refed = true;
    if (this._keepAlive) this._keepAlive.ref();
    return this;
  }
}

/** How the native addon was compiled: 'release' or 'debug' (benchmarks refuse 'debug'). */
const BUILD_PROFILE = native.buildProfile();

// Plain names only: Node finds a CommonJS module's named exports for `import { … }`
// by reading this literal, and stops at the first entry that is not a plain name.
module.exports = {
  BUILD_PROFILE,
  Client,
  RunningJob,
  Worker,
  Job,
  Admin,
  Server,
  GearmanError,
  ConnectionError,
  TimeoutError,
  ProtocolError,
  ServerError,
  JobFailedError,
  JobCancelledError,
  JobExceptionError,
  ClosedError,
  InvalidArgumentError,
  AbortError,
};
