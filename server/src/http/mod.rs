//! The HTTP front end (`-r http`, `--http-port`): jobs submitted over HTTP
//! (gearmand's HTTP protocol plugin, with its bugs fixed), job status, the
//! Prometheus metrics and the dashboard, on a port of their own.
//!
//! * [`listener`]: the HTTP port's accept loop and [`serve`], one
//!   connection over any byte stream (plain TCP here; a TLS stream works
//!   the same), HTTP/1.1 keep-alive and HTTP/1.0 through hyper;
//! * this file: the types every handler shares ([`Body`], [`ConnInfo`])
//!   and the router ([`route`]);
//! * [`job`]: `POST /<function>`, a job run in-process through a
//!   [`peer::LocalPeer`] (the request is a peer of the server's state like a
//!   TCP client, its replies taken from a socket-less outbox);
//! * [`status`]: `GET /status/<handle>` (GET_STATUS);
//! * [`metrics`], [`dashboard`]: `GET /metrics`, `GET /`, `/dashboard/…`, `/api/…`;
//! * [`reply`]: the plain and JSON responses the handlers build.

pub(crate) mod dashboard;
mod job;
mod listener;
pub(crate) mod metrics;
mod peer;
pub(crate) mod reply;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

pub(crate) use listener::accept_loop;
#[allow(unused_imports)] // for the TLS listener
pub(crate) use listener::serve;

use crate::Shared;

/// The body of every response.
///
/// Its error type is [`std::io::Error`], not `Infallible`: a foreground job
/// whose result is streamed (WORK_DATA chunks sent as they arrive) may still
/// fail after the status line went out; the stream then ends with an error,
/// which makes hyper abort the response (no final chunk, the connection is
/// closed), so the client sees an incomplete transfer instead of a short
/// result that looks complete. Bodies that cannot fail are made with
/// [`full`] and [`empty`] (or `.map_err(|never| match never {}).boxed()`).
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
#[allow(dead_code)] // for the dashboard
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The client presented a certificate the server verified (TLS with
    /// client authentication; always false on plain TCP).
    #[allow(dead_code)] // read by the dashboard's actions (next merge)
    pub(crate) client_cert_verified: bool,
}

/// `path` is `prefix` or a path under it (`/api`, `/api/…`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Sends a request to its handler: `GET /metrics`; `GET /` and anything
/// under `/dashboard` or `/api`; `GET /status/<handle>`; everything else is
/// a job for the function named by the path ([`job`]).
pub(crate) async fn route(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    info: &ConnInfo,
) -> Response<Body> {
    let path = req.uri().path();
    let get = req.method() == Method::GET;
    if get && path == "/metrics" {
        return reply::metrics(metrics::render(shared));
    }
    if (get && path == "/") || under(path, "/dashboard") || under(path, "/api") {
        return dashboard::serve(shared, req, info).await;
    }
    if get {
        if let Some(handle) = path.strip_prefix("/status/") {
            return status::serve(shared, handle, info).await;
        }
    }
    job::serve(shared, req, info).await
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn under_matches_the_prefix_and_paths_below_it_only() {
        assert!(under("/api", "/api"));
        assert!(under("/api/jobs", "/api"));
        assert!(!under("/apis", "/api"));
        assert!(!under("/x/api", "/api"));
    }
}
