//! `GET /`, `/dashboard/…`, `/api/…`: the web dashboard and its JSON API.
//!
//! Placeholder: the real dashboard replaces this file (branch `dash`).

use super::{Body, ConnInfo};

/// Answers a dashboard or API request (for now: 404 to everything).
pub(crate) async fn serve(
    shared: &std::sync::Arc<crate::Shared>,
    req: hyper::Request<hyper::body::Incoming>,
    info: &ConnInfo,
) -> hyper::Response<Body> {
    let _ = (shared, req, info);
    super::reply::error(
        hyper::StatusCode::NOT_FOUND,
        "no dashboard in this build",
        None,
    )
}
