//! polygeard's HTTP listener (`/metrics`, the dashboard, `/api/...`).
//!
//! Placeholder on the `dash` branch: the listener and its router come from
//! the `http` branch; this declares the types the router hands to
//! [`metrics::render`] and [`dashboard::serve`].
#![allow(dead_code)]

pub(crate) mod dashboard;
pub(crate) mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;

/// A response body.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Who sent a request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The peer presented a client certificate the server verified (mutual TLS).
    pub client_cert_verified: bool,
}
