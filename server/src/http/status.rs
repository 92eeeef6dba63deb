//! `GET /status/<handle>`: a job's status (GET_STATUS) as JSON:
//! `{"handle", "known", "running", "numerator", "denominator"}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use percent_encoding::percent_decode_str;
use polygear::protocol::Packet;
use tokio::time::Instant;

use super::peer::LocalPeer;
use super::reply::{self, push_json_string, with_body, JSON};
use super::{full, Body, ConnInfo};
use crate::Shared;

/// Answers `GET /status/<handle>` (`handle`: the rest of the path, percent-encoded).
pub(crate) async fn serve(shared: &Arc<Shared>, handle: &str, info: &ConnInfo) -> Response<Body> {
    let handle = Bytes::from(percent_decode_str(handle).collect::<Vec<u8>>());
    if handle.is_empty() {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "no job handle: GET /status/<handle>",
            None,
        );
    }
    let asked = handle.clone();
    let started = LocalPeer::start(shared, info.peer.ip().to_string(), |st, cid| {
        st.handle_packet(cid, Packet::GetStatus { handle: asked });
        Ok::<(), Infallible>(())
    });
    let Ok(mut peer) = started;
    // The state answers GET_STATUS at once; the deadline is only a guard.
    let deadline = Instant::now() + Duration::from_secs(5);
    match peer.next(Some(deadline)).await {
        Ok(Packet::StatusRes {
            known,
            running,
            numerator,
            denominator,
            ..
        }) => {
            let mut body = String::from("{\"handle\": ");
            push_json_string(&mut body, &handle);
            body.push_str(&format!(
                ", \"known\": {known}, \"running\": {running}, \"numerator\": {numerator}, \"denominator\": {denominator}}}\n"
            ));
            with_body(StatusCode::OK, JSON, full(body))
        }
        Ok(_) => reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected reply to GET_STATUS",
            Some(&handle),
        ),
        Err(e) => reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            &e.to_string(),
            Some(&handle),
        ),
    }
}
