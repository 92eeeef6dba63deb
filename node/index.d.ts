// Type declarations for the `polygear` package (hand-kept; checked with
// `tsc --noEmit` on examples/*.ts and against the runtime exports by
// test/types.test.js).

/// <reference types="node" />

import { EventEmitter } from 'node:events';

/** Payloads may be given as a Buffer, any Uint8Array, or a string (UTF-8). */
export type Payload = Buffer | Uint8Array | string;

/** How the native addon was compiled; benchmarks refuse `'debug'`. */
export declare const BUILD_PROFILE: 'release' | 'debug';

/** Job priority. */
export type Priority = 'high' | 'normal' | 'low';

// ------------------------------------------------------------------ errors

/** Stable error codes. */
export type ErrorCode =
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'ECONNABORTED'
  | 'ENOTCONN'
  | 'EPIPE'
  | 'EHOSTUNREACH'
  | 'ENETUNREACH'
  | 'EADDRNOTAVAIL'
  | 'EADDRINUSE'
  | 'EACCES'
  | 'ENOTFOUND'
  | 'ECONNERROR'
  | 'ETIMEDOUT'
  | 'EPROTOCOL'
  | 'ESERVER'
  | 'EJOBFAILED'
  | 'EJOBEXCEPTION'
  | 'ECLOSED'
  | 'EINVAL'
  | 'EJSON'
  | 'ABORT_ERR';

/**
 * Base class of every error raised by polygear. Thrown as itself with code
 * `EJSON` when `submitJson()` gets a result that is not JSON.
 */
export class GearmanError extends Error {
  constructor(message: string, code: ErrorCode | string, options?: { cause?: unknown });
  /** Stable machine-readable code. */
  readonly code: ErrorCode | string;
}
/** Could not connect, or the connection was lost (code `ECONNREFUSED`, `ECONNRESET`, …). */
export class ConnectionError extends GearmanError {}
/** A deadline passed (code `ETIMEDOUT`). */
export class TimeoutError extends GearmanError {}
/** The peer broke the wire protocol (code `EPROTOCOL`). */
export class ProtocolError extends GearmanError {}
/** The server answered with an error (code `ESERVER`). */
export class ServerError extends GearmanError {
  constructor(message: string, serverCode?: string, options?: { cause?: unknown });
  /** The server's own error code, e.g. `QUEUE_ERROR` or `UNKNOWN_JOB`. */
  readonly serverCode: string | undefined;
}
/**
 * The worker reported WORK_FAIL, or the server failed the job (code
 * `EJOBFAILED`). The message includes the server's reason when it gave one:
 * `job H:vm:3 failed: the worker exceeded its 1 s timeout` (polygeard).
 */
export class JobFailedError extends GearmanError {
  constructor(message: string, handle?: string, options?: { cause?: unknown; reason?: string });
  /** The job handle. */
  readonly handle: string | undefined;
  /** Why the server failed the job, when it said so (polygeard). */
  readonly reason: string | undefined;
}
/**
 * The job was cancelled (`client.cancel()`, an aborted signal of another
 * submitter, an administrator): a JobFailedError with code `ECANCELED`;
 * `reason` is the server's, e.g. `cancelled by an administrator`.
 */
export class JobCancelledError extends JobFailedError {}
/** The worker raised (WORK_EXCEPTION); `message` is the worker's text (code `EJOBEXCEPTION`). */
export class JobExceptionError extends GearmanError {
  constructor(message: string, handle?: string, options?: { cause?: unknown });
  /** The job handle. */
  readonly handle: string | undefined;
}
/** Used after close()/stop() (code `ECLOSED`). */
export class ClosedError extends GearmanError {}
/** A value of the right type that is not acceptable, e.g. a too long unique (code `EINVAL`). */
export class InvalidArgumentError extends GearmanError {}
/** Aborted through an AbortSignal (code `ABORT_ERR`); `cause` is the signal's reason. */
export class AbortError extends GearmanError {
  constructor(message?: string, options?: { cause?: unknown });
}

// --------------------------------------------------------------------- tls

/**
 * TLS files for `tls`. Only the files given are used (the environment is not
 * read). A file that cannot be read throws an `InvalidArgumentError` naming it
 * when the Client, Worker or Admin is made; a handshake that fails rejects with
 * a `ConnectionError` whose message says why.
 */
export interface TlsOptions {
  /** PEM file of the CAs that sign the server's certificate (default: the system's trust store). */
  caFile?: string;
  /** Client certificate (PEM) for a server that verifies clients; needs `keyFile`. */
  certFile?: string;
  /** Private key (PEM) of `certFile`. */
  keyFile?: string;
  /** Name the server's certificate must carry (default: the host connected to). */
  serverName?: string;
}

/**
 * `true`: TLS with libgearman's variables GEARMAND_CA_CERTIFICATE,
 * GEARMAN_CLIENT_PEM and GEARMAN_CLIENT_KEY (unset: the system's trust store,
 * no client certificate); an object: exactly those files; `false`: plain TCP.
 */
export type TlsSetting = boolean | TlsOptions;

// ------------------------------------------------------------------ client

/** Client options; times in milliseconds. */
export interface ClientOptions {
  /** `host[:port]` job servers (default `['127.0.0.1:4730']`). */
  servers?: string | string[];
  /** Default deadline for a whole foreground job (default: none). */
  timeout?: number;
  /** Deadline for establishing a connection (default 5000). */
  connectTimeout?: number;
  /** Deadline for JOB_CREATED and status/echo replies (default 30000). */
  submitTimeout?: number;
  /** Sent with SET_CLIENT_ID. */
  clientId?: string;
  /** Connect with TLS (the server must run with `--ssl`). */
  tls?: TlsSetting;
}

/** Options of one submission. */
export interface SubmitOptions {
  /** Unique key (≤ 63 bytes); jobs with the same function and unique coalesce. */
  unique?: string;
  /** Job priority (default `'normal'`). */
  priority?: Priority;
  /** Whole-job deadline in milliseconds (overrides the client's `timeout`). */
  timeout?: number;
  /**
   * Rejects with AbortError (its `cause` the signal's reason) when aborted,
   * and cancels the job on the server (`client.cancel(handle)`, once the
   * handle is known).
   */
  signal?: AbortSignal;
}

/** Options of a background submission. */
export interface BackgroundOptions extends SubmitOptions {
  /** Run at this time (SUBMIT_JOB_EPOCH): a Date or Unix seconds. */
  epoch?: Date | number;
  /**
   * Keep the job's end this many milliseconds (whole seconds, rounded up;
   * more than 0) for `client.result(handle)`. polygeard only: elsewhere the
   * submission rejects with ServerError and nothing is sent.
   */
  retain?: number;
}

/** Result of `client.resultState()`. */
export interface ResultState {
  state: 'complete' | 'queued' | 'running' | 'failed' | 'exception' | 'unknown';
  /** The result (`complete`) or the worker's message (`exception`). */
  data?: Buffer;
}

/** Result of `client.status()`. */
export interface JobStatus {
  /** The handle asked about. */
  handle: string;
  /** The server knows the job (queued or running). */
  known: boolean;
  /** A worker is running it. */
  running: boolean;
  /** Last WORK_STATUS numerator. */
  numerator: number;
  /** Last WORK_STATUS denominator. */
  denominator: number;
}

/** Result of `client.statusUnique()`. */
export interface UniqueJobStatus extends JobStatus {
  /** Clients waiting on the job, when the server reports it. */
  clientCount?: number | null;
}

/** An event of a running job, as yielded by its async iterator. */
export type JobEvent =
  | { type: 'data'; data: Buffer }
  | { type: 'warning'; data: Buffer }
  | { type: 'status'; numerator: number; denominator: number }
  | { type: 'complete'; data: Buffer }
  | { type: 'fail'; reason?: string }
  | { type: 'exception'; data: Buffer; message: string };

/**
 * A running foreground job. Read its events with listeners and `result()`,
 * or with `for await (const ev of job)`; not both.
 */
export class RunningJob extends EventEmitter implements AsyncIterable<JobEvent> {
  private constructor();
  /** The server-assigned job handle. */
  readonly handle: string;
  /** Resolves with the result; rejects with JobFailedError, JobExceptionError, TimeoutError, … */
  result(): Promise<Buffer>;
  [Symbol.asyncIterator](): AsyncIterator<JobEvent>;

  on(event: 'data' | 'warning' | 'complete', listener: (data: Buffer) => void): this;
  on(event: 'status', listener: (numerator: number, denominator: number) => void): this;
  on(event: 'exception', listener: (message: string) => void): this;
  on(event: 'fail', listener: (reason?: string) => void): this;
  once(event: 'data' | 'warning' | 'complete', listener: (data: Buffer) => void): this;
  once(event: 'status', listener: (numerator: number, denominator: number) => void): this;
  once(event: 'exception', listener: (message: string) => void): this;
  once(event: 'fail', listener: (reason?: string) => void): this;
}

/** A Gearman client: many jobs in flight over pipelined connections. */
export class Client {
  constructor(options?: ClientOptions);
  /** Runs a foreground job and resolves with its result. */
  submit(func: string, data: Payload, options?: SubmitOptions): Promise<Buffer>;
  /** Submits a foreground job; resolves once created with a RunningJob to read events from. */
  submitJob(func: string, data: Payload, options?: SubmitOptions): Promise<RunningJob>;
  /**
   * Runs a foreground job with a JSON payload and resolves with the decoded
   * result: `value` is sent as UTF-8 JSON (undefined as null) to a worker
   * registered with `{ json: true }` in any language. Rejects with a TypeError
   * for a value JSON cannot hold, with a GearmanError of code `EJSON` for a
   * result that is not JSON.
   */
  submitJson<T = unknown>(func: string, value: unknown, options?: SubmitOptions): Promise<T>;
  /** Submits a background job and resolves with its handle. */
  submitBackground(func: string, data: Payload, options?: BackgroundOptions): Promise<string>;
  /**
   * The retained result of a background job (submitted with `retain`, or of
   * a function with a retention): a Buffer once it completed, null while it
   * is queued, running, unknown or expired. Rejects with JobFailedError /
   * JobCancelledError / JobExceptionError for a job that failed, and with
   * ServerError on a server that is not polygeard.
   */
  result(handle: string): Promise<Buffer | null>;
  /** The retained state of a background job (polygeard only). */
  resultState(handle: string): Promise<ResultState>;
  /**
   * Cancels a job: true if a server had it queued or running (gearmand:
   * queued only), false if none knows it. Its waiting clients get
   * JobCancelledError; its worker sees `job.cancelled()` turn true.
   */
  cancel(handle: string): Promise<boolean>;
  /** GET_STATUS of a job handle. */
  status(handle: string): Promise<JobStatus>;
  /** GET_STATUS_UNIQUE of a unique key. */
  statusUnique(unique: string): Promise<UniqueJobStatus>;
  /** ECHO round trip. */
  echo(data: Payload): Promise<Buffer>;
  /** Closes every connection; jobs in flight reject with ClosedError. */
  close(): Promise<void>;
}

// ------------------------------------------------------------------ worker

/** Worker options. */
export interface WorkerOptions {
  /** `host[:port]` job servers (default `['127.0.0.1:4730']`). */
  servers?: string | string[];
  /** Jobs processed at the same time (default 1). */
  concurrency?: number;
  /** Sent with SET_CLIENT_ID. */
  clientId?: string;
  /** Deadline for establishing a connection, in milliseconds (default 5000). */
  connectTimeout?: number;
  /** Connect with TLS (the server must run with `--ssl`). */
  tls?: TlsSetting;
  /** Where the worker logs (default `console`); lines are strings starting with `polygear: `. */
  logger?: Logger;
  /** Lowest level logged (default `'warn'` with the console, `'debug'` with a logger of your own). */
  logLevel?: LogLevel;
  /** Called with each error of a handler (after it is logged), like a `'jobError'` listener. */
  onError?: (err: unknown, job: Job) => void | Promise<void>;
  /** `work()` first calls `connect()`: it rejects (and the worker stops) when no server can be reached. */
  failFast?: boolean;
}

/** `'connect'`: a connection is up and the functions are registered over it. */
export interface ConnectEvent {
  /** `host:port`. */
  server: string;
  /** An earlier attempt failed or a connection to this server was lost. */
  reconnect: boolean;
  /** The log line. */
  message: string;
}

/** `'connectError'`: an attempt to connect failed; the worker retries after `retryIn` ms. */
export interface ConnectErrorEvent {
  server: string;
  /** Why, e.g. `Connection refused (os error 111)`. */
  error: string;
  /** Consecutive failed attempts to this server, from 1. */
  attempt: number;
  /** Milliseconds until the next attempt. */
  retryIn: number;
  message: string;
}

/** `'disconnect'`: an established connection failed; the worker reconnects. */
export interface DisconnectEvent {
  server: string;
  /** What happened. */
  reason: string;
  message: string;
}

/** Log levels, lowest first; `'silent'` logs nothing. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** A logger: `console`, pino, winston, … */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Options of `worker.register()`. */
export interface RegisterOptions {
  /**
   * Job timeout in milliseconds (CAN_DO_TIMEOUT): the server fails the job
   * after it, and the worker aborts `job.signal` and frees the job's slot.
   */
  timeout?: number;
  /** The handler gets the decoded JSON workload and its result is sent as JSON. */
  json?: boolean;
}

/** Options of `worker.register()` for a JSON handler. */
export interface JsonRegisterOptions extends RegisterOptions {
  json: true;
}

/** Options of `worker.work()`. */
export interface WorkOptions {
  /** Stop gracefully on SIGINT and SIGTERM while working (default true); a second signal exits at once. */
  handleSignals?: boolean;
}

/** A job given to a handler. */
export class Job {
  private constructor();
  /** The job handle. */
  readonly handle: string;
  /** The function name. */
  readonly function: string;
  /** The unique key ('' if none). */
  readonly unique: string;
  /** The workload. */
  readonly data: Buffer;
  /**
   * Aborts when the function's registered timeout passes (reason: a
   * TimeoutError) or when `stop({ timeout })` gives up on the job (reason: a
   * ClosedError). The job has then ended: a later result is dropped.
   */
  readonly signal: AbortSignal;
  /** gearmanode's name of `data`. */
  readonly payload: Buffer;
  /** The workload decoded as UTF-8 JSON (throws a SyntaxError if it is not JSON). */
  json(): unknown;
  /**
   * Resolves with true once the server no longer has the job: it was
   * cancelled or the server gave up on it; the handler should then stop
   * (its result is dropped). Asks the server each time (one round trip):
   * check every 0.1–1 s, not in a tight loop. Always false for a running
   * job on gearmand.
   */
  cancelled(): Promise<boolean>;
  /** WORK_DATA: partial output for waiting clients. */
  sendData(data: Payload): void;
  /** WORK_WARNING. */
  sendWarning(data: Payload): void;
  /** WORK_STATUS: progress numerator / denominator. */
  sendStatus(numerator: number, denominator: number): void;
  /** gearmanode's name of sendStatus(). */
  reportStatus(numerator: number, denominator: number): void;
  /** gearmanode's name of sendWarning(). */
  reportWarning(data: Payload): void;
}

/** What a handler may return (undefined/null → empty result). */
export type HandlerResult = Payload | undefined | null | void;

/**
 * A function handler. A thrown error or rejected promise becomes
 * WORK_EXCEPTION (and is logged, emitted as 'jobError' and passed to
 * onError); so does a result of another type than HandlerResult.
 */
export type Handler = (job: Job) => HandlerResult | Promise<HandlerResult>;

/** A `{ json: true }` handler: the decoded workload in, a value to encode as JSON out (undefined → null). */
export type JsonHandler = (value: any, job: Job) => unknown;

/**
 * A Gearman worker. Events (it never emits 'error'): `'jobError'`
 * (err, job) for each handler error; `'connect'`, `'connectError'` and
 * `'disconnect'` for its connections (logged as warnings when nobody listens).
 */
export class Worker extends EventEmitter {
  constructor(options?: WorkerOptions);
  /** Registers a JSON handler (CAN_DO / CAN_DO_TIMEOUT). */
  register(name: string, handler: JsonHandler, options: JsonRegisterOptions): this;
  /** Registers a handler (CAN_DO / CAN_DO_TIMEOUT). */
  register(name: string, handler: Handler, options?: RegisterOptions): this;
  /** Unregisters a function (CANT_DO). */
  unregister(name: string): this;
  /** gearmanode's name of unregister(). */
  removeFunction(name: string): this;
  /** Unregisters every function. */
  resetAbilities(): this;
  /**
   * Fail-fast start: resolves once a server is connected with the functions
   * registered; rejects with a ConnectionError once every server failed its
   * first attempt (the worker keeps retrying until stop()).
   */
  connect(): Promise<void>;
  /**
   * Processes jobs until stop() (or SIGINT / SIGTERM); resolves once the
   * running handlers finished. Rejects with InvalidArgumentError when no
   * function is registered.
   */
  work(options?: WorkOptions): Promise<void>;
  /**
   * Graceful stop: no new jobs, running handlers finish, connections close.
   * With `timeout` (ms), jobs still running after that long are handed back
   * to the server, which requeues them for another worker; their `signal`s
   * abort and their later results are dropped.
   */
  stop(options?: StopOptions): Promise<void>;
  /** Same as stop(). */
  close(options?: StopOptions): Promise<void>;

  on(event: 'jobError', listener: (err: unknown, job: Job) => void): this;
  on(event: 'connect', listener: (event: ConnectEvent) => void): this;
  on(event: 'connectError', listener: (event: ConnectErrorEvent) => void): this;
  on(event: 'disconnect', listener: (event: DisconnectEvent) => void): this;
  once(event: 'jobError', listener: (err: unknown, job: Job) => void): this;
  once(event: 'connect', listener: (event: ConnectEvent) => void): this;
  once(event: 'connectError', listener: (event: ConnectErrorEvent) => void): this;
  once(event: 'disconnect', listener: (event: DisconnectEvent) => void): this;
}

/** Options of `worker.stop()`. */
export interface StopOptions {
  /** Hand the jobs whose handlers are still running after this many milliseconds back to the server. */
  timeout?: number;
}

// ------------------------------------------------------------------- admin

/** Admin options. */
export interface AdminOptions {
  /** `host[:port]` (default `'127.0.0.1:4730'`). */
  server?: string;
  /** Deadline of every call in milliseconds (default 5000). */
  timeout?: number;
  /** Connect with TLS (the server must run with `--ssl`). */
  tls?: TlsSetting;
}

/** A `status` line. */
export interface FunctionStatus {
  function: string;
  total: number;
  running: number;
  workers: number;
}

/** A `prioritystatus` line. */
export interface PriorityStatus {
  function: string;
  high: number;
  normal: number;
  low: number;
  workers: number;
}

/** A `workers` line. */
export interface WorkerInfo {
  fd: number;
  ip: string;
  clientId: string;
  functions: string[];
}

/** A `show jobs` line. */
export interface JobInfo {
  handle: string;
  retries: number;
  ignore: boolean;
  queued: boolean;
}

/** A retry policy (`admin.retryPolicies()`); times in milliseconds. */
export interface RetryPolicy {
  function: string;
  /** Runs in all, the first included. */
  maxAttempts: number;
  /** Delay after the first failure, doubled after each further one. */
  backoff: number;
  /** Cap of that delay. */
  maxDelay: number;
}

/** A job in the dead set (`admin.deadJobs()`). */
export interface DeadJob {
  /** Its handle when it died. */
  handle: string;
  function: string;
  unique: Buffer;
  data: Buffer;
  /** Runs made. */
  attempts: number;
  /** The last failure: the worker's exception text, `WORK_FAIL`, … */
  error: string;
  /** When it was submitted (whole seconds). */
  submitted: Date;
  /** When it went to the dead set (whole seconds). */
  failedAt: Date;
}

/** A worker connection being drained (`admin.draining()`). */
export interface DrainingWorker {
  fd: number;
  /** Its client id (`-` if none). */
  clientId: string;
}

/** A periodic job (`admin.schedules()`). */
export interface Schedule {
  name: string;
  function: string;
  /** Cron expression (UTC). */
  cron: string;
  /** The jobs' payload. */
  data: string;
  /** The last occurrence fired (null: never). */
  lastFired: Date | null;
  /** The next occurrence (null: none). */
  next: Date | null;
}

/** gearmand's text admin protocol on one server (connects on first use). */
export class Admin {
  constructor(options?: AdminOptions);
  status(): Promise<FunctionStatus[]>;
  priorityStatus(): Promise<PriorityStatus[]>;
  workers(): Promise<WorkerInfo[]>;
  version(): Promise<string>;
  getpid(): Promise<number>;
  verbose(): Promise<string>;
  showJobs(): Promise<JobInfo[]>;
  showUniqueJobs(): Promise<string[]>;
  cancelJob(handle: string): Promise<void>;
  /** No limits: unlimited; a number: the same limit for every priority. */
  maxqueue(func: string, limits?: number | [number, number, number] | null): Promise<void>;
  createFunction(func: string): Promise<void>;
  dropFunction(func: string): Promise<void>;
  shutdown(graceful?: boolean): Promise<void>;
  // polygeard extensions (gearmand: ServerError with serverCode UNKNOWN_COMMAND)
  /**
   * Retries `func`'s failed background jobs: `maxAttempts` runs in all (0
   * removes the policy), `backoff` ms after the first failure, doubled up
   * to `maxDelay` ms (default 1 h); the last failure goes to the dead set.
   */
  setRetryPolicy(func: string, maxAttempts: number, backoff: number, maxDelay?: number): Promise<void>;
  retryPolicies(): Promise<RetryPolicy[]>;
  /** The dead set, oldest first; of `func` or of every function. */
  deadJobs(func?: string | null): Promise<DeadJob[]>;
  /** Requeues `func`'s dead jobs; resolves with how many. */
  retryDead(func: string): Promise<number>;
  /** Requeues one dead job; true if it was there. */
  retryDeadJob(handle: string): Promise<boolean>;
  retryAllDead(): Promise<number>;
  /** Drops `func`'s dead jobs; resolves with how many. */
  deleteDead(func: string): Promise<number>;
  /** Drops one dead job; true if it was there. */
  deleteDeadJob(handle: string): Promise<boolean>;
  deleteAllDead(): Promise<number>;
  /** Its jobs stay queued (submissions go on), none is handed out. */
  pause(func: string): Promise<void>;
  resume(func: string): Promise<void>;
  paused(): Promise<string[]>;
  /**
   * A worker (`fd` of `workers()`, or its client id) gets no new jobs;
   * resolves with how many connections matched (ServerError
   * `UNKNOWN_WORKER` if none).
   */
  drainWorker(id: number | string): Promise<number>;
  draining(): Promise<DrainingWorker[]>;
  /** Keep `func`'s background results `ms` milliseconds (whole seconds; 0: off). */
  setRetention(func: string, ms: number): Promise<void>;
  retention(): Promise<Array<{ function: string; retain: number }>>;
  /** `func`'s unique window in ms (whole seconds; 0: off). */
  setUniqueWindow(func: string, ms: number): Promise<void>;
  uniqueWindows(): Promise<Array<{ function: string; window: number }>>;
  /**
   * Adds (or replaces) a periodic job: each time `cron` (UTC; 5 fields, 6
   * with seconds first, or `@hourly`, …) matches, a background job of
   * `func` with payload `data` and unique `NAME@<unix time>`.
   */
  scheduleAdd(name: string, cron: string, func: string, data?: string): Promise<void>;
  schedules(): Promise<Schedule[]>;
  /** ServerError `UNKNOWN_SCHEDULE` if there is none. */
  scheduleDelete(name: string): Promise<void>;
  /** Any command line; the raw reply. */
  raw(command: string): Promise<string>;
  /** Closes the connection (a later call reconnects). */
  close(): Promise<void>;
}

// ------------------------------------------------------------------ server

/** Embedded server options. */
export interface ServerOptions {
  /** Address to bind (default `'127.0.0.1'`). */
  host?: string;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** SQLite file keeping background jobs across restarts (default: in memory). */
  queueFile?: string;
  /** Assignments a job may lose to vanished workers before it fails (0 = unlimited). */
  jobRetries?: number;
  /** Every connection starts with the `exceptions` option on. */
  exceptions?: boolean;
  /** Allow the admin `shutdown` command. */
  allowShutdown?: boolean;
  /** Job handle prefix (handles become `PREFIX:N`). */
  handlePrefix?: string;
  /** TLS on the port: every connection (admin text included) must then speak TLS. */
  tls?: ServerTlsOptions;
  /**
   * Retry policies at start (polygeard's `--retry`): per function, its
   * `maxAttempts`, or `{ maxAttempts, backoff?, maxDelay? }` (ms; backoff
   * default 1000, maxDelay 1 h). `admin.setRetryPolicy()` changes them later.
   */
  retry?: Record<string, number | { maxAttempts: number; backoff?: number; maxDelay?: number }>;
  /** Per function, how long background results are kept (ms, whole seconds rounded up; `--retain`). */
  retain?: Record<string, number>;
  /** Per function, the unique window (ms, whole seconds rounded up; `--unique-window`). */
  uniqueWindow?: Record<string, number>;
  /** Periodic jobs (`--schedule`): cron in UTC, payload `data` (default ''). */
  schedules?: Array<{ name: string; cron: string; function: string; data?: string }>;
}

/** TLS files of the embedded server. */
export interface ServerTlsOptions {
  /** The server's PEM certificate (chain). */
  certFile: string;
  /** Its PEM private key. */
  keyFile: string;
  /** PEM file of the CA that signs client certificates. */
  caFile?: string;
  /** Require a client certificate signed by `caFile` (mutual TLS). */
  verifyClients?: boolean;
}

/**
 * The polygear job server running inside this process. While it runs it
 * keeps Node alive, unless `unref()` is called.
 */
export class Server {
  constructor(options?: ServerOptions);
  /** Creates and starts a server; resolves once it accepts connections. */
  static start(options?: ServerOptions): Promise<Server>;
  /** Starts listening; resolves once the server accepts connections. */
  start(): Promise<void>;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** The bound address. */
  readonly host: string;
  /** `host:port`, ready for the `servers` option of Client and Worker. */
  readonly address: string;
  /** True while the server runs. */
  readonly listening: boolean;
  /** Stops the server and closes every connection. */
  stop(): Promise<void>;
  /** Same as stop(). */
  close(): Promise<void>;
  /** Lets Node exit even though the server runs. */
  unref(): this;
  /** Undoes unref(). */
  ref(): this;
}
