//! The dashboard: `GET /` (one HTML page, its script and style embedded in
//! the binary), `GET /api/status` (polled by the page every 2 s),
//! `GET /api/jobs?function=F` (the first queued jobs of a function),
//! `POST /api/cancel` (`{"handle": "H:host:1"}`) and `POST /api/drop`
//! (`{"function": "name"}`).
//!
//! The actions need `Authorization: Bearer <--admin-token>` or a verified
//! client certificate; without either they are refused with 403. What the
//! state does for them is in [`crate::stats`]; this file only maps requests
//! to it, so [`handle`] is tested without a socket.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::{Body, ConnInfo};
use crate::stats::{ActionError, Snapshot, PRIORITIES, SAMPLE_EVERY};
use crate::Shared;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

/// Largest request body read (an action's JSON is a few bytes).
const MAX_BODY: usize = 64 * 1024;
/// Queued jobs listed by `/api/jobs`.
pub(crate) const JOBS_LISTED: usize = 100;
/// Functions and workers in one `/api/status` (bounds the time under the lock).
const STATUS_FUNCTIONS: usize = 2000;
const STATUS_WORKERS: usize = 500;

/// What the dashboard needs of a request, read from hyper's.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<Vec<u8>>,
    pub body: Bytes,
}

/// A response before it becomes hyper's.
#[derive(Debug, Clone)]
pub(crate) struct ApiResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl ApiResponse {
    fn json<T: Serialize>(status: StatusCode, v: &T) -> ApiResponse {
        let body = serde_json::to_vec(v).unwrap_or_else(|e| {
            format!("{{\"error\":\"cannot encode the reply: {e}\"}}").into_bytes()
        });
        ApiResponse {
            status,
            content_type: "application/json",
            body: Bytes::from(body),
        }
    }

    fn error(status: StatusCode, message: impl Into<String>) -> ApiResponse {
        #[derive(Serialize)]
        struct E {
            error: String,
        }
        ApiResponse::json(
            status,
            &E {
                error: message.into(),
            },
        )
    }

    fn text(content_type: &'static str, body: &'static str) -> ApiResponse {
        ApiResponse {
            status: StatusCode::OK,
            content_type,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn into_hyper(self) -> Response<Body> {
        let mut r = Response::new(Full::new(self.body).map_err(|never| match never {}).boxed());
        *r.status_mut() = self.status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// Serves `/`, `/dashboard/...` and `/api/...`.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    info: &ConnInfo,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = if parts.method == Method::POST {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return ApiResponse::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
                )
                .into_hyper()
            }
        }
    } else {
        Bytes::new()
    };
    let req = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        authorization: parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec()),
        body,
    };
    handle(shared, &req, info).into_hyper()
}

/// Answers one request (no I/O).
pub(crate) fn handle(shared: &Shared, req: &ApiRequest, info: &ConnInfo) -> ApiResponse {
    let get = req.method == Method::GET || req.method == Method::HEAD;
    match (req.path.as_str(), get) {
        ("/" | "/dashboard" | "/dashboard/", true) => {
            ApiResponse::text("text/html; charset=utf-8", INDEX_HTML)
        }
        ("/dashboard/app.js", true) => ApiResponse::text("text/javascript; charset=utf-8", APP_JS),
        ("/dashboard/app.css", true) => ApiResponse::text("text/css; charset=utf-8", APP_CSS),
        ("/api/status", true) => status(shared),
        ("/api/jobs", true) => jobs(shared, &req.query),
        ("/api/cancel", false) if req.method == Method::POST => {
            action(shared, req, info, |st, body: CancelBody| {
                st.cancel_queued(body.handle.as_bytes())
            })
        }
        ("/api/drop", false) if req.method == Method::POST => {
            action(shared, req, info, |st, body: DropBody| {
                st.drop_function(body.function.as_bytes())
            })
        }
        (
            "/" | "/dashboard" | "/dashboard/" | "/dashboard/app.js" | "/dashboard/app.css"
            | "/api/status" | "/api/jobs" | "/api/cancel" | "/api/drop",
            _,
        ) => ApiResponse::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => ApiResponse::error(StatusCode::NOT_FOUND, "not found"),
    }
}

// ------------------------------------------------------------------ status

#[derive(Serialize)]
struct Status<'a> {
    version: &'static str,
    time_ms: u64,
    sample_seconds: u64,
    actions: Actions,
    connections: u64,
    jobs: u64,
    submitted: u64,
    completed: u64,
    failed: u64,
    functions: Vec<FunctionRow<'a>>,
    functions_omitted: usize,
    workers: &'a [crate::stats::WorkerSnapshot],
    workers_omitted: usize,
    failures: &'a [crate::stats::FailureSnapshot],
    samples: &'a [crate::stats::Sample],
}

#[derive(Serialize)]
struct Actions {
    /// A token is configured (a client with a verified certificate may act without one).
    token_configured: bool,
}

#[derive(Serialize)]
struct FunctionRow<'a> {
    name: &'a str,
    queued: Queued,
    running: u64,
    workers: u64,
    submitted: u64,
    completed: u64,
    failed: u64,
}

#[derive(Serialize)]
struct Queued {
    high: u64,
    normal: u64,
    low: u64,
}

fn status(shared: &Shared) -> ApiResponse {
    let snap: Snapshot = shared
        .state
        .lock()
        .snapshot(STATUS_FUNCTIONS, STATUS_WORKERS, true);
    let outcome =
        |f: &crate::stats::FuncSnapshot, o: crate::stats::Outcome| f.stats.outcomes[o.index()];
    use crate::stats::Outcome as O;
    let functions = snap
        .functions
        .iter()
        .map(|f| FunctionRow {
            name: &f.name,
            queued: Queued {
                high: f.queued[0],
                normal: f.queued[1],
                low: f.queued[2],
            },
            running: f.running,
            workers: f.workers,
            submitted: f.stats.submitted.iter().sum(),
            completed: outcome(f, O::Complete),
            failed: outcome(f, O::Fail)
                + outcome(f, O::Exception)
                + outcome(f, O::Timeout)
                + outcome(f, O::RetriesExhausted),
        })
        .collect();
    let body = Status {
        version: crate::admin::VERSION,
        time_ms: crate::stats::unix_ms(),
        sample_seconds: SAMPLE_EVERY.as_secs(),
        actions: Actions {
            token_configured: shared.cfg.admin_token.is_some(),
        },
        connections: snap.connections,
        jobs: snap.jobs,
        submitted: snap.totals.submitted,
        completed: snap.totals.completed,
        failed: snap.totals.failed,
        functions,
        functions_omitted: snap.functions_omitted,
        workers: &snap.workers,
        workers_omitted: snap.workers_omitted,
        failures: &snap.failures,
        samples: &snap.samples,
    };
    ApiResponse::json(StatusCode::OK, &body)
}

// ------------------------------------------------------------------ jobs

fn jobs(shared: &Shared, query: &str) -> ApiResponse {
    let Some(function) = query_param(query, "function") else {
        return ApiResponse::error(StatusCode::BAD_REQUEST, "missing ?function=NAME");
    };
    let listed = shared.state.lock().queued_jobs(&function, JOBS_LISTED);
    match listed {
        Ok(jobs) => {
            #[derive(Serialize)]
            struct Jobs<'a> {
                function: String,
                limit: usize,
                priorities: [&'static str; 3],
                jobs: &'a [crate::stats::QueuedJob],
            }
            ApiResponse::json(
                StatusCode::OK,
                &Jobs {
                    function: String::from_utf8_lossy(&function).into_owned(),
                    limit: JOBS_LISTED,
                    priorities: PRIORITIES,
                    jobs: &jobs,
                },
            )
        }
        Err(e) => action_error(e),
    }
}

/// The value of `name` in an `application/x-www-form-urlencoded` query.
pub(crate) fn query_param(query: &str, name: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k) == name.as_bytes()).then(|| form_decode(v))
    })
}

/// A form-encoded component: `+` is a space, then percent-decoding (the
/// crate the job paths use; an invalid escape stays as it is).
fn form_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).collect()
}

// ------------------------------------------------------------------ actions

#[derive(Deserialize)]
struct CancelBody {
    handle: String,
}

#[derive(Deserialize)]
struct DropBody {
    function: String,
}

/// Why a request may not act.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Forbidden {
    #[error("actions are disabled: start polygeard with --admin-token TOKEN (or POLYGEARD_ADMIN_TOKEN), or connect with a client certificate it verifies (mutual TLS)")]
    Disabled,
    #[error("this action needs the admin token: send Authorization: Bearer <token>")]
    NoToken,
    #[error("wrong admin token")]
    WrongToken,
}

/// Whether a request may cancel jobs and drop functions.
pub(crate) fn authorize(
    token: Option<&str>,
    authorization: Option<&[u8]>,
    info: &ConnInfo,
) -> Result<(), Forbidden> {
    if info.client_cert_verified {
        return Ok(());
    }
    let Some(token) = token else {
        return Err(Forbidden::Disabled);
    };
    let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
        return Err(Forbidden::NoToken);
    };
    if constant_time_eq(given.trim_ascii(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Forbidden::WrongToken)
    }
}

/// Compares without stopping at the first difference (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn action<B: for<'de> Deserialize<'de>>(
    shared: &Shared,
    req: &ApiRequest,
    info: &ConnInfo,
    f: impl FnOnce(&mut crate::state::State, B) -> Result<(), ActionError>,
) -> ApiResponse {
    if let Err(e) = authorize(
        shared.cfg.admin_token.as_deref(),
        req.authorization.as_deref(),
        info,
    ) {
        return ApiResponse::error(StatusCode::FORBIDDEN, e.to_string());
    }
    let body: B = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => {
            return ApiResponse::error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}"))
        }
    };
    match shared.with_state(|st| f(st, body)) {
        Ok(()) => {
            #[derive(Serialize)]
            struct Ok {
                ok: bool,
            }
            ApiResponse::json(StatusCode::OK, &Ok { ok: true })
        }
        Err(e) => action_error(e),
    }
}

fn action_error(e: ActionError) -> ApiResponse {
    let status = match e {
        ActionError::NoSuchFunction | ActionError::NoSuchJob => StatusCode::NOT_FOUND,
        ActionError::Running | ActionError::FunctionInUse => StatusCode::CONFLICT,
    };
    ApiResponse::error(status, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(verified: bool) -> ConnInfo {
        ConnInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            client_cert_verified: verified,
        }
    }

    #[test]
    fn token_rules() {
        let i = info(false);
        assert_eq!(authorize(None, None, &i), Err(Forbidden::Disabled));
        assert_eq!(
            authorize(None, Some(b"Bearer x"), &i),
            Err(Forbidden::Disabled)
        );
        assert_eq!(authorize(Some("s3"), None, &i), Err(Forbidden::NoToken));
        assert_eq!(
            authorize(Some("s3"), Some(b"Basic s3"), &i),
            Err(Forbidden::NoToken)
        );
        assert_eq!(
            authorize(Some("s3"), Some(b"Bearer s4"), &i),
            Err(Forbidden::WrongToken)
        );
        assert_eq!(
            authorize(Some("s3"), Some(b"Bearer s33"), &i),
            Err(Forbidden::WrongToken)
        );
        assert_eq!(authorize(Some("s3"), Some(b"Bearer s3"), &i), Ok(()));
        assert_eq!(authorize(None, None, &info(true)), Ok(()));
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            query_param("function=a%20b+c", "function").unwrap(),
            b"a b c"
        );
        assert_eq!(
            query_param("x=1&function=%zz%", "function").unwrap(),
            b"%zz%"
        );
        assert_eq!(query_param("function=%4", "function").unwrap(), b"%4");
        assert_eq!(query_param("function", "function").unwrap(), b"");
        assert!(query_param("", "function").is_none());
    }
}
