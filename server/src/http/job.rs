//! `POST /<function>` (or PUT; GET submits an empty workload): a job run
//! in-process, answered like gearmand's HTTP plugin, minus its bugs.
//!
//! * The function is the path without its leading slashes, percent-decoded
//!   (the query string is ignored); the body is the workload.
//! * `X-Gearman-Unique` (default: none, so no coalescing; send `-` to
//!   coalesce by workload as gearmand's default does), `X-Gearman-Background:
//!   true`, `X-Gearman-Priority: high|normal|low`, `X-Gearman-Timeout: <ms>`.
//! * Background: 200 once the job is created (for a durable queue: stored),
//!   the handle in `X-Gearman-Job-Handle` and as the body.
//! * Foreground: 200 with the result (`X-Gearman-Command: WORK_COMPLETE`).
//!   On HTTP/1.1 the first WORK_DATA starts a chunked response that streams
//!   every WORK_DATA chunk, then the WORK_COMPLETE payload (and, to a client
//!   that sent `TE: trailers`, the trailer `X-Gearman-Command: WORK_COMPLETE`);
//!   a failure after that aborts the response (see [`super::Body`]). On HTTP/1.0 the chunks
//!   are collected and sent with the result.
//! * WORK_FAIL and WORK_EXCEPTION: 500 with a JSON body `{"error", "handle"}`.
//! * No worker registered for the function: 503 at once, unless the request
//!   gives `X-Gearman-Timeout`: then the job is queued and waited for, and
//!   504 answers a job not finished in time. (gearmand queues and waits
//!   forever.) Background jobs are always queued.
//! * A request whose client goes away, or that times out, leaves its job
//!   like a disconnected TCP client does (a queued foreground job nobody
//!   waits for is dropped when a worker reaches it).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ALLOW, CONTENT_LENGTH, TRAILER};
use hyper::{Method, Request, Response, StatusCode, Version};
use percent_encoding::percent_decode_str;
use polygear::protocol::{Packet, Priority};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::peer::{LocalPeer, PeerError};
use super::reply::{self, with_body};
use super::{full, Body, ConnInfo};
use crate::budget::Account;
use crate::state::State;
use crate::Shared;

/// Response header: the job's handle.
pub(crate) const JOB_HANDLE: HeaderName = HeaderName::from_static("x-gearman-job-handle");
/// Response header: the packet that ended the request (gearmand's).
const COMMAND: HeaderName = HeaderName::from_static("x-gearman-command");
const UNIQUE: &str = "x-gearman-unique";
const BACKGROUND: &str = "x-gearman-background";
const PRIORITY: &str = "x-gearman-priority";
const TIMEOUT: &str = "x-gearman-timeout";

/// WORK_DATA chunks in flight to a streamed response's body.
const STREAM_CHUNKS: usize = 8;

/// Why a job request is not answered 200.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("method {0} not allowed: use POST or PUT (GET submits an empty workload)")]
    Method(Method),
    #[error("no function: the path names the function (POST /<function>)")]
    NoFunction,
    #[error("a function name or unique must not contain a NUL byte")]
    Nul,
    #[error("bad {0} header: {1}")]
    BadHeader(&'static str, &'static str),
    #[error("Content-Length required for an HTTP/1.0 request with a body")]
    LengthRequired,
    #[error("request too large: function, unique and workload must fit {0} bytes (--max-packet)")]
    TooLarge(usize),
    #[error("reading the request body: {0}")]
    Body(String),
    #[error("the server is short of memory for request bodies (--max-buffered); try again later")]
    OverBudget,
    #[error("no worker is registered for this function (send X-Gearman-Timeout to queue the job and wait)")]
    NoWorker,
    #[error("{code}: {text}")]
    Refused { code: String, text: String },
    #[error("the job did not finish within {0} ms")]
    Timeout(u64),
    /// WORK_FAIL, with the server's reason when it failed the job itself.
    #[error("the job failed{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Failed(Option<String>),
    #[error("{0}")]
    Exception(String),
    #[error("the result is larger than {0} bytes (--max-output)")]
    ResultTooLarge(usize),
    #[error("unexpected reply from the server: {0}")]
    Unexpected(&'static str),
    #[error(transparent)]
    Peer(PeerError),
}

impl JobError {
    fn status(&self) -> StatusCode {
        match self {
            JobError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            JobError::NoFunction | JobError::Nul | JobError::BadHeader(..) | JobError::Body(_) => {
                StatusCode::BAD_REQUEST
            }
            JobError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            JobError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            JobError::NoWorker | JobError::OverBudget => StatusCode::SERVICE_UNAVAILABLE,
            JobError::Refused { code, .. } => match code.as_str() {
                "QUEUE_ERROR" => StatusCode::SERVICE_UNAVAILABLE,
                "ARGUMENT_TOO_LARGE" => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            JobError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            JobError::Failed(_)
            | JobError::Exception(_)
            | JobError::ResultTooLarge(_)
            | JobError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
            JobError::Peer(PeerError::Stopped | PeerError::Dropped) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            JobError::Peer(PeerError::TimedOut) => StatusCode::GATEWAY_TIMEOUT,
            JobError::Peer(PeerError::Protocol(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON error response, with the job's handle when it has one.
    fn response(&self, handle: Option<&Bytes>) -> Response<Body> {
        let mut r = reply::error(self.status(), &self.to_string(), handle.map(|h| &h[..]));
        let h = r.headers_mut();
        if let Some(v) = handle.and_then(|b| HeaderValue::from_bytes(b).ok()) {
            h.insert(JOB_HANDLE, v);
        }
        match self {
            JobError::Method(_) => {
                h.insert(ALLOW, HeaderValue::from_static("GET, POST, PUT"));
            }
            JobError::Failed(_) => {
                h.insert(COMMAND, HeaderValue::from_static("WORK_FAIL"));
            }
            JobError::Exception(_) => {
                h.insert(COMMAND, HeaderValue::from_static("WORK_EXCEPTION"));
            }
            _ => {}
        }
        r
    }
}

/// A job request as parsed from its line and headers.
struct Submission {
    function: Bytes,
    unique: Bytes,
    background: bool,
    priority: Priority,
    timeout: Option<u64>,
    /// The response may stream (HTTP/1.1: chunked).
    may_stream: bool,
}

/// Answers a job request.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    info: &ConnInfo,
) -> Response<Body> {
    let sub = match parse(&req) {
        Ok(s) => s,
        Err(e) => return e.response(None),
    };
    let data = match read_body(shared, &sub, req).await {
        Ok(d) => d,
        Err(e) => return e.response(None),
    };
    match run(shared, sub, data, info).await {
        Ok(r) => r,
        Err((e, handle)) => e.response(handle.as_ref()),
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a [u8]> {
    req.headers().get(name).map(HeaderValue::as_bytes)
}

fn parse(req: &Request<Incoming>) -> Result<Submission, JobError> {
    let m = req.method();
    if m != Method::POST && m != Method::PUT && m != Method::GET {
        return Err(JobError::Method(m.clone()));
    }
    let path = req.uri().path().trim_start_matches('/');
    let function: Vec<u8> = percent_decode_str(path).collect();
    if function.is_empty() {
        return Err(JobError::NoFunction);
    }
    let unique = header(req, UNIQUE).unwrap_or_default();
    // Both are NUL-separated fields of the packets the job travels in.
    if function.contains(&0) || unique.contains(&0) {
        return Err(JobError::Nul);
    }
    let background = match header(req, BACKGROUND).map(<[u8]>::to_ascii_lowercase) {
        None => false,
        Some(v) => match &v[..] {
            b"true" | b"1" | b"yes" => true,
            b"false" | b"0" | b"no" => false,
            _ => {
                return Err(JobError::BadHeader(
                    "X-Gearman-Background",
                    "use true or false",
                ))
            }
        },
    };
    let priority = match header(req, PRIORITY).map(<[u8]>::to_ascii_lowercase) {
        None => Priority::Normal,
        Some(v) => match &v[..] {
            b"high" => Priority::High,
            b"normal" => Priority::Normal,
            b"low" => Priority::Low,
            _ => {
                return Err(JobError::BadHeader(
                    "X-Gearman-Priority",
                    "use high, normal or low",
                ))
            }
        },
    };
    let timeout = match header(req, TIMEOUT) {
        None => None,
        Some(v) => Some(
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(JobError::BadHeader(
                    "X-Gearman-Timeout",
                    "milliseconds expected",
                ))?,
        ),
    };
    if req.version() == Version::HTTP_10
        && m != Method::GET
        && !req.headers().contains_key(CONTENT_LENGTH)
    {
        return Err(JobError::LengthRequired);
    }
    Ok(Submission {
        function: Bytes::from(function),
        unique: Bytes::copy_from_slice(unique),
        background,
        priority,
        timeout,
        may_stream: req.version() >= Version::HTTP_11,
    })
}

/// The workload: the body of a POST or PUT (GET: empty), refused before
/// it is read when its declared length is over the packet limit. While it
/// is read it counts in the server's memory budget (`--max-buffered`), as a
/// Gearman connection's read buffer does; a body that finds the budget
/// exhausted is refused (503) rather than making the server drop connections.
async fn read_body(
    shared: &Shared,
    sub: &Submission,
    req: Request<Incoming>,
) -> Result<Bytes, JobError> {
    if req.method() == Method::GET {
        return Ok(Bytes::new());
    }
    let max = shared.cfg.max_packet;
    let limit = max.saturating_sub(sub.function.len() + sub.unique.len() + 2);
    let declared = hyper::body::Body::size_hint(req.body()).lower();
    if declared > limit as u64 {
        return Err(JobError::TooLarge(max));
    }
    let held = Account::new(shared.budget.clone());
    let mut body = req.into_body();
    // Grown with the bytes received, not reserved from Content-Length.
    let mut data = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| JobError::Body(e.to_string()))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        if data.len() + chunk.len() > limit {
            return Err(JobError::TooLarge(max));
        }
        data.extend_from_slice(&chunk);
        held.set(data.len());
        if shared.budget.used() > shared.budget.limit() {
            return Err(JobError::OverBudget);
        }
    }
    Ok(data.freeze())
}

/// Whether a worker has registered `function`.
fn has_worker(st: &State, function: &[u8]) -> bool {
    st.find_func(function)
        .is_some_and(|f| !st.funcs[f].workers.is_empty())
}

/// Submits the job and waits for what answers the request.
async fn run(
    shared: &Arc<Shared>,
    sub: Submission,
    data: Bytes,
    info: &ConnInfo,
) -> Result<Response<Body>, (JobError, Option<Bytes>)> {
    let deadline = sub
        .timeout
        .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
    let queue_without_worker = sub.background || sub.timeout.is_some();
    let packet = Packet::SubmitJob {
        function: sub.function.clone(),
        unique: sub.unique,
        data,
        priority: sub.priority,
        background: sub.background,
    };
    let mut peer = LocalPeer::start(shared, info.peer.ip().to_string(), |st, cid| {
        if !queue_without_worker && !has_worker(st, &sub.function) {
            return Err(JobError::NoWorker);
        }
        st.handle_packet(cid, packet);
        Ok(())
    })
    .map_err(|e| (e, None))?;
    let timed_out = |e: PeerError| match e {
        PeerError::TimedOut => JobError::Timeout(sub.timeout.unwrap_or(0)),
        e => JobError::Peer(e),
    };
    let handle = match peer.next(deadline).await {
        Ok(Packet::JobCreated { handle }) => handle,
        Ok(Packet::Error { code, text }) => {
            return Err((
                JobError::Refused {
                    code: String::from_utf8_lossy(&code).into_owned(),
                    text: String::from_utf8_lossy(&text).into_owned(),
                },
                None,
            ))
        }
        Ok(_) => return Err((JobError::Unexpected("no JOB_CREATED"), None)),
        Err(e) => return Err((timed_out(e), None)),
    };
    if sub.background {
        return Ok(done(&handle, "JOB_CREATED", "text/plain", handle.clone()));
    }
    let fail = |e: JobError| (e, Some(handle.clone()));
    let limit = shared.cfg.max_output;
    let mut collected = BytesMut::new();
    let mut reason = None;
    loop {
        match peer.next(deadline).await.map_err(|e| fail(timed_out(e)))? {
            Packet::WorkData { data, .. } if sub.may_stream => {
                return Ok(stream(peer, handle, data, deadline));
            }
            Packet::WorkData { data, .. } => {
                if collected.len() + data.len() > limit {
                    return Err(fail(JobError::ResultTooLarge(limit)));
                }
                collected.extend_from_slice(&data);
            }
            Packet::WorkComplete { data, .. } => {
                let body = if collected.is_empty() {
                    data
                } else {
                    collected.extend_from_slice(&data);
                    collected.freeze()
                };
                return Ok(done(
                    &handle,
                    "WORK_COMPLETE",
                    "application/octet-stream",
                    body,
                ));
            }
            Packet::WorkFailReason { reason: r, .. } => {
                reason = Some(String::from_utf8_lossy(&r).into_owned());
            }
            Packet::WorkFail { .. } => return Err(fail(JobError::Failed(reason))),
            Packet::WorkException { data, .. } => {
                let message = String::from_utf8_lossy(&data).into_owned();
                return Err(fail(JobError::Exception(message)));
            }
            // WORK_STATUS, WORK_WARNING: not part of the result.
            _ => {}
        }
    }
}

/// A 200 answer with the job's handle and the packet that ended it.
fn done(handle: &Bytes, command: &'static str, content_type: &str, body: Bytes) -> Response<Body> {
    let mut r = with_body(StatusCode::OK, content_type, full(body));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_bytes(handle) {
        h.insert(JOB_HANDLE, v);
    }
    h.insert(COMMAND, HeaderValue::from_static(command));
    r
}

/// A response whose body is fed by a task: the first WORK_DATA chunk, the
/// later ones as they arrive, then the WORK_COMPLETE payload. A failure
/// ends the body with an error (hyper aborts the response).
fn stream(
    peer: LocalPeer,
    handle: Bytes,
    first: Bytes,
    deadline: Option<Instant>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel(STREAM_CHUNKS);
    tokio::spawn(feed(peer, tx, first, deadline));
    let mut r = with_body(
        StatusCode::OK,
        "application/octet-stream",
        ChannelBody(rx).boxed(),
    );
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_bytes(&handle) {
        h.insert(JOB_HANDLE, v);
    }
    h.insert(TRAILER, HeaderValue::from_static("X-Gearman-Command"));
    r
}

type Chunk = Result<Frame<Bytes>, io::Error>;

/// Passes the job's further replies to a streamed body until the job ends,
/// the body is dropped (client gone: the peer goes with this task) or the
/// deadline passes.
async fn feed(
    mut peer: LocalPeer,
    tx: mpsc::Sender<Chunk>,
    first: Bytes,
    deadline: Option<Instant>,
) {
    if tx.send(Ok(Frame::data(first))).await.is_err() {
        return;
    }
    let mut reason = None;
    loop {
        let next = tokio::select! {
            r = peer.next(deadline) => r,
            _ = tx.closed() => return,
        };
        let (chunk, last) = match next {
            Ok(Packet::WorkData { data, .. }) => (Ok(Frame::data(data)), false),
            Ok(Packet::WorkComplete { data, .. }) => (Ok(Frame::data(data)), true),
            Ok(Packet::WorkFailReason { reason: r, .. }) => {
                reason = Some(String::from_utf8_lossy(&r).into_owned());
                continue;
            }
            Ok(Packet::WorkFail { .. }) => {
                let why = match reason.take() {
                    Some(r) => format!("the job failed (WORK_FAIL): {r}"),
                    None => "the job failed (WORK_FAIL)".to_owned(),
                };
                (Err(io::Error::other(why)), true)
            }
            Ok(Packet::WorkException { data, .. }) => (
                Err(io::Error::other(format!(
                    "the job failed (WORK_EXCEPTION): {}",
                    String::from_utf8_lossy(&data)
                ))),
                true,
            ),
            Ok(_) => continue,
            Err(e) => (Err(io::Error::other(e)), true),
        };
        let complete = last && chunk.is_ok();
        let empty = matches!(&chunk, Ok(f) if f.data_ref().is_some_and(Bytes::is_empty));
        if !empty && tx.send(chunk).await.is_err() {
            return;
        }
        if complete {
            // Sent by hyper only to a client that asked (`TE: trailers`).
            let mut trailers = HeaderMap::new();
            trailers.insert(COMMAND, HeaderValue::from_static("WORK_COMPLETE"));
            let _ = tx.send(Ok(Frame::trailers(trailers))).await;
        }
        if last {
            return;
        }
    }
}

/// A body whose frames come from a channel (its end: the sender dropped).
struct ChannelBody(mpsc::Receiver<Chunk>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.get_mut().0.poll_recv(cx)
    }
}
