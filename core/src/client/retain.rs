//! Retained results of background jobs (polygear extension, polygeard only):
//! `SUBMIT_RETAIN` before a background submission, and `GET_RESULT` /
//! `RESULT_RES` to fetch what the server kept. Extension packets are only
//! ever sent on a connection whose server accepted the
//! `OPTION_REQ polygear-fail-reasons` probe (other servers close the
//! connection on an unknown packet); elsewhere the call fails with
//! [`Error::Unsupported`] and nothing is sent.

use std::time::Duration;

use bytes::Bytes;

use super::conn::{Conn, Expect};
use super::pool::{unexpected_reply, Pool};
use super::submit::check_handle;
use super::Client;
use crate::error::{Error, Result};
use crate::protocol::Packet;

/// The extension's name in [`Error::Unsupported`].
const FEATURE: &str = "retained results";

/// What a server knows of a job, from [`Client::result_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// It completed and its result was retained: the result.
    Complete(Bytes),
    /// Waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// It failed (WORK_FAIL, or the server gave up on it) and its end was retained.
    Failed,
    /// The worker raised an exception (WORK_EXCEPTION): its message.
    Exception(Bytes),
    /// Not known: never submitted here, not retained, or expired.
    Unknown,
}

impl JobResult {
    /// The state's name on the wire (`complete`, `queued`, …).
    pub fn name(&self) -> &'static str {
        match self {
            JobResult::Complete(_) => "complete",
            JobResult::Queued => "queued",
            JobResult::Running => "running",
            JobResult::Failed => "failed",
            JobResult::Exception(_) => "exception",
            JobResult::Unknown => "unknown",
        }
    }

    /// Parses RESULT_RES's `state` and `data`; `None` for an unknown state.
    pub fn from_wire(state: &[u8], data: Bytes) -> Option<JobResult> {
        Some(match state {
            b"complete" => JobResult::Complete(data),
            b"queued" => JobResult::Queued,
            b"running" => JobResult::Running,
            b"failed" => JobResult::Failed,
            b"exception" => JobResult::Exception(data),
            b"unknown" => JobResult::Unknown,
            _ => return None,
        })
    }

    /// What [`Client::result`] returns for it: the data when complete,
    /// `None` while queued, running or unknown, the job's error when it
    /// failed or raised (as a foreground job's would be).
    pub fn into_result(self, handle: &str) -> Result<Option<Bytes>> {
        match self {
            JobResult::Complete(d) => Ok(Some(d)),
            JobResult::Queued | JobResult::Running | JobResult::Unknown => Ok(None),
            JobResult::Failed => Err(Error::JobFailed {
                handle: handle.to_owned(),
                reason: None,
            }),
            JobResult::Exception(m) => Err(Error::JobException {
                handle: handle.to_owned(),
                message: String::from_utf8_lossy(&m).into_owned(),
            }),
        }
    }
}

/// `SubmitOptions::retain` as SUBMIT_RETAIN's whole seconds (rounded up).
pub(super) fn retain_seconds(retain: Option<Duration>) -> Result<Option<u32>> {
    match retain {
        None => Ok(None),
        Some(d) if d.is_zero() => Err(Error::InvalidArgument(
            "retain must be greater than zero".into(),
        )),
        Some(d) => {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            u32::try_from(secs)
                .map(Some)
                .map_err(|_| Error::InvalidArgument(format!("retain of {secs} s is too long")))
        }
    }
}

pub(super) fn unsupported(conn: &Conn) -> Error {
    Error::Unsupported {
        addr: conn.addr.clone(),
        feature: FEATURE.into(),
    }
}

impl Pool {
    /// Waits until at least one server for `key` (in routing order) said it
    /// speaks the extensions, connecting as needed; [`Error::Unsupported`]
    /// if every reachable one is another kind of server. The submission
    /// then goes only to a server that said yes.
    pub(super) async fn check_extensions(&self, key: &[u8]) -> Result<()> {
        let mut last_err = None;
        for i in self.order(key) {
            match self.conn(i).await {
                Ok(conn) => match conn.extensions(self.options.submit_timeout).await {
                    Ok(true) => return Ok(()),
                    Ok(false) if conn.alive.load(std::sync::atomic::Ordering::Acquire) => {
                        last_err = Some(unsupported(&conn))
                    }
                    Ok(false) => {
                        last_err = Some(Error::ConnectionLost {
                            addr: conn.addr.clone(),
                            reason: "closed before answering the OPTION_REQ sent on connect".into(),
                            kind: std::io::ErrorKind::ConnectionReset,
                        })
                    }
                    Err(e) => last_err = Some(e),
                },
                Err(e) => last_err = Some(e),
            }
        }
        Err(match last_err {
            Some(e @ Error::Unsupported { .. }) => e,
            other => self.all_failed(other),
        })
    }

    /// GET_RESULT on server `i`.
    async fn result_on(&self, i: usize, handle: &str) -> Result<JobResult> {
        let conn = self.conn(i).await?;
        if !conn.extensions(self.options.submit_timeout).await? {
            return Err(unsupported(&conn));
        }
        let packet = Packet::GetResult {
            handle: Bytes::copy_from_slice(handle.as_bytes()),
        };
        match self.request_on(&conn, &packet, Expect::Result).await? {
            Packet::ResultRes { state, data, .. } => {
                JobResult::from_wire(&state, data).ok_or_else(|| {
                    unexpected_reply(
                        &conn,
                        &Packet::ResultRes {
                            handle: Bytes::new(),
                            state,
                            data: Bytes::new(),
                        },
                    )
                })
            }
            other => Err(unexpected_reply(&conn, &other)),
        }
    }
}

impl Client {
    /// The retained result of background job `handle` (polygeard only; see
    /// `SubmitOptions::retain` and the server's `retain` setting):
    /// `Some(result)` once it completed, `None` while it is queued or
    /// running, and when the server does not know it (never retained, or
    /// expired); a job that failed or raised gives the error a foreground
    /// job would ([`Error::JobFailed`], [`Error::JobException`]).
    /// [`Error::Unsupported`] from a server that is not polygeard.
    pub async fn result(&self, handle: &str) -> Result<Option<Bytes>> {
        self.result_state(handle).await?.into_result(handle)
    }

    /// The state of job `handle` as the server knows it, with its retained
    /// result or exception message: [`Client::result`] without turning the
    /// state into an error. Asks the server that created the handle if this
    /// client remembers it, else each server until one knows the job.
    pub async fn result_state(&self, handle: &str) -> Result<JobResult> {
        let inner = &self.inner;
        check_handle(handle)?;
        let n = inner.servers.len();
        if let Some(i) = inner.server_of(handle) {
            return inner.result_on(i, handle).await;
        }
        let mut last_err = None;
        let mut unknown = false;
        for i in 0..n {
            match inner.result_on(i, handle).await {
                Ok(JobResult::Unknown) => unknown = true,
                Ok(r) => return Ok(r),
                Err(e) => last_err = Some(e),
            }
        }
        match (unknown, last_err) {
            (true, _) => Ok(JobResult::Unknown),
            (false, Some(e @ Error::Unsupported { .. })) => Err(e),
            (false, e) => Err(inner.all_failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_rounds_up_to_whole_seconds() {
        assert_eq!(retain_seconds(None).unwrap(), None);
        assert_eq!(
            retain_seconds(Some(Duration::from_secs(5))).unwrap(),
            Some(5)
        );
        assert_eq!(
            retain_seconds(Some(Duration::from_millis(1500))).unwrap(),
            Some(2)
        );
        assert!(matches!(
            retain_seconds(Some(Duration::ZERO)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(retain_seconds(Some(Duration::from_secs(u64::MAX))).is_err());
    }

    #[test]
    fn states_map_to_results() {
        let r = |s: &[u8], d: &'static [u8]| JobResult::from_wire(s, Bytes::from_static(d));
        assert_eq!(
            r(b"complete", b"x").unwrap().into_result("H:1").unwrap(),
            Some(Bytes::from_static(b"x"))
        );
        for s in [&b"queued"[..], b"running", b"unknown"] {
            assert_eq!(r(s, b"").unwrap().into_result("H:1").unwrap(), None);
        }
        assert!(matches!(
            r(b"failed", b"").unwrap().into_result("H:1"),
            Err(Error::JobFailed { handle, reason: None }) if handle == "H:1"
        ));
        assert!(matches!(
            r(b"exception", b"boom").unwrap().into_result("H:1"),
            Err(Error::JobException { message, .. }) if message == "boom"
        ));
        assert_eq!(r(b"bogus", b""), None);
        assert_eq!(JobResult::Running.name(), "running");
    }
}
