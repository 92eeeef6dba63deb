//! `GET /metrics`: the server's counters in Prometheus' text format.
//!
//! Placeholder: the real exposition replaces this file (branch `dash`).

/// The metrics page (Prometheus text exposition format 0.0.4).
pub(crate) fn render(shared: &crate::Shared) -> String {
    let _ = shared;
    String::new()
}
