//! Responses the handlers share: the metrics page, JSON errors, JSON strings.

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::{full, Body};

/// `Content-Type` of JSON bodies.
pub(crate) const JSON: &str = "application/json";

/// A response with `status`, a `Content-Type` and a complete body.
pub(crate) fn with_body(status: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// `GET /metrics`: the OpenMetrics text format that `prometheus-client`
/// writes (Prometheus scrapes it; `# EOF` last, counters typed without `_total`).
pub(crate) fn metrics(text: String) -> Response<Body> {
    with_body(StatusCode::OK, super::metrics::CONTENT_TYPE, full(text))
}

/// An error as JSON: `{"error": message, "handle": handle or null}`.
pub(crate) fn error(status: StatusCode, message: &str, handle: Option<&[u8]>) -> Response<Body> {
    let mut body = String::with_capacity(message.len() + 48);
    body.push_str("{\"error\": ");
    push_json_string(&mut body, message.as_bytes());
    body.push_str(", \"handle\": ");
    match handle {
        Some(h) => push_json_string(&mut body, h),
        None => body.push_str("null"),
    }
    body.push_str("}\n");
    with_body(status, JSON, full(body))
}

/// Appends `bytes` as a JSON string (invalid UTF-8 replaced by U+FFFD),
/// escaped by serde_json.
pub(crate) fn push_json_string(out: &mut String, bytes: &[u8]) {
    match serde_json::to_string(&String::from_utf8_lossy(bytes)) {
        Ok(s) => out.push_str(&s),
        // Serialising a string cannot fail.
        Err(_) => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::push_json_string;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_string(&mut s, b"a\"b\\c\n\x01\xff");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\u{fffd}\"");
    }
}
