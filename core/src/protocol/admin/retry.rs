//! Retries with backoff and the dead set (polygear extensions of the admin
//! protocol; gearmand answers `ERR UNKNOWN_COMMAND`): the policy and dead
//! record types, the byte escaping that lets any bytes travel in a text
//! row, and both directions of the `retry` and `dead list` rows.

use std::time::Duration;

use bytes::{BufMut, Bytes};

use crate::protocol::number::Decimal;
use crate::protocol::ProtocolError;

use super::bad;
use super::reply::{listing_rows, ListingResult};

/// The exponential part of a delay is capped at this by default (1 hour).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(3600);
/// The first delay when a policy gives none (1 second).
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// How a function's failed background jobs are retried.
///
/// After failure `n` (n ≥ 1) a job waits `min(max_delay, backoff · 2^(n-1))`
/// plus a random jitter of up to a quarter of that, then runs again, until it
/// has run `max_attempts` times; the last failure moves it to the dead set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs in all, the first included (1: no retry, straight to the dead
    /// set; 0: no policy, removes the function's policy when set).
    pub max_attempts: u32,
    /// The delay after the first failure (doubled after each further one).
    pub backoff: Duration,
    /// Cap of the exponential delay (the jitter comes on top).
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// A policy of `max_attempts` runs starting at `backoff`, capped at
    /// [`DEFAULT_MAX_DELAY`].
    pub fn new(max_attempts: u32, backoff: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff,
            max_delay: DEFAULT_MAX_DELAY,
        }
    }

    /// The delay before the next run after `failures` failures (≥ 1),
    /// without jitter: `min(max_delay, backoff · 2^(failures-1))`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(63);
        let ms = (self.backoff.as_millis() as u64).saturating_mul(1u64 << shift);
        Duration::from_millis(ms).min(self.max_delay)
    }

    /// [`RetryPolicy::base_delay`] plus `jitter` (in `[0, 1)`) times a quarter of it.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let base = self.base_delay(failures);
        base + base.mul_f64(jitter.clamp(0.0, 1.0) / 4.0)
    }
}

/// One job in the dead set: a background job whose attempts ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadJob {
    /// The job's handle when it died (handles restart after a server restart,
    /// so two records may share one).
    pub handle: String,
    /// Function name.
    pub function: String,
    /// The unique id it was submitted with.
    pub unique: Bytes,
    /// The workload (cut at [`DEAD_DATA_LISTED`] bytes in a listing).
    pub data: Bytes,
    /// Runs that failed.
    pub attempts: u32,
    /// The last WORK_EXCEPTION text, or the server's reason (`WORK_FAIL`,
    /// a lost worker, a timeout).
    pub error: String,
    /// Unix seconds of its first submission (as far as the server knows).
    pub submitted: i64,
    /// Unix seconds of its last failure.
    pub failed_at: i64,
}

/// The most workload bytes a `dead list` row carries (the record keeps all of
/// it, and `dead retry` requeues all of it).
pub const DEAD_DATA_LISTED: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Escaping
// ---------------------------------------------------------------------------

/// Escapes bytes for one tab-separated field: printable ASCII (space
/// included) stays, `\` becomes `\\`, tab, newline and carriage return
/// become `\t`, `\n`, `\r`, every other byte `\xHH` (lower-case hex).
pub fn escape_field(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\x");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
    out
}

/// Reverses [`escape_field`]; a malformed escape is an error.
pub fn unescape_field(text: &str) -> Result<Vec<u8>, ProtocolError> {
    let s = text.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        match s.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'x') => {
                let hex = s
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("bad \\x escape", text))?;
                out.push(hex);
                i += 4;
                continue;
            }
            _ => return Err(bad("bad escape", text)),
        }
        i += 2;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

fn ms(d: Duration) -> Decimal {
    Decimal::from(d.as_millis().min(u64::MAX as u128) as u64)
}

/// Appends a `retry` listing row `FUNCTION\tMAX_ATTEMPTS\tBACKOFF_MS\tMAX_DELAY_MS\n`.
pub fn write_retry_line(out: &mut impl BufMut, function: &[u8], p: &RetryPolicy) {
    out.put_slice(function);
    for n in [
        Decimal::from(p.max_attempts),
        ms(p.backoff),
        ms(p.max_delay),
    ] {
        out.put_u8(b'\t');
        out.put_slice(n.as_bytes());
    }
    out.put_u8(b'\n');
}

/// Appends a `dead list` row: `HANDLE FUNCTION ATTEMPTS SUBMITTED FAILED_AT
/// UNIQUE ERROR DATA`, tab-separated, the function, unique, error and data
/// escaped by [`escape_field`], the data cut at [`DEAD_DATA_LISTED`] bytes.
pub fn write_dead_line(out: &mut impl BufMut, d: &DeadJob) {
    let data = &d.data[..d.data.len().min(DEAD_DATA_LISTED)];
    let fields = [
        escape_field(d.handle.as_bytes()),
        escape_field(d.function.as_bytes()),
        d.attempts.to_string(),
        d.submitted.to_string(),
        d.failed_at.to_string(),
        escape_field(&d.unique),
        escape_field(d.error.as_bytes()),
        escape_field(data),
    ];
    out.put_slice(fields.join("\t").as_bytes());
    out.put_u8(b'\n');
}

fn num<T: std::str::FromStr>(field: &str, line: &str) -> Result<T, ProtocolError> {
    field.parse().map_err(|_| bad("bad number", line))
}

fn text(field: &str) -> Result<String, ProtocolError> {
    Ok(String::from_utf8_lossy(&unescape_field(field)?).into_owned())
}

impl DeadJob {
    /// Parses one `dead list` row (without its line ending).
    pub fn parse_line(line: &str) -> Result<DeadJob, ProtocolError> {
        let f: Vec<&str> = line.trim_end_matches(['\r', '\n']).split('\t').collect();
        let [handle, function, attempts, submitted, failed_at, unique, error, data] = f[..] else {
            return Err(bad("a dead row needs 8 tab-separated fields", line));
        };
        Ok(DeadJob {
            handle: text(handle)?,
            function: text(function)?,
            attempts: num(attempts, line)?,
            submitted: num(submitted, line)?,
            failed_at: num(failed_at, line)?,
            unique: Bytes::from(unescape_field(unique)?),
            error: text(error)?,
            data: Bytes::from(unescape_field(data)?),
        })
    }
}

/// Parses one `retry` listing row into the function and its policy.
pub fn parse_retry_line(line: &str) -> Result<(String, RetryPolicy), ProtocolError> {
    let f: Vec<&str> = line.trim_end_matches(['\r', '\n']).split('\t').collect();
    let [function, attempts, backoff, max_delay] = f[..] else {
        return Err(bad("a retry row needs 4 tab-separated fields", line));
    };
    Ok((
        function.to_string(),
        RetryPolicy {
            max_attempts: num(attempts, line)?,
            backoff: Duration::from_millis(num(backoff, line)?),
            max_delay: Duration::from_millis(num(max_delay, line)?),
        },
    ))
}

/// Parses a whole `retry` (`retry show`) reply.
pub fn parse_retry_policies(reply: &str) -> ListingResult<(String, RetryPolicy)> {
    listing_rows(reply)?
        .into_iter()
        .map(|r| parse_retry_line(r).map_err(Into::into))
        .collect()
}

/// Parses a whole `dead list` reply.
pub fn parse_dead_jobs(reply: &str) -> ListingResult<DeadJob> {
    listing_rows(reply)?
        .into_iter()
        .map(|r| DeadJob::parse_line(r).map_err(Into::into))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).chain(*b"\\x4\\\t\r\n").collect();
        let e = escape_field(&all);
        assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e}");
        assert!(!e.contains('\t'));
        assert_eq!(unescape_field(&e).unwrap(), all);
        assert_eq!(escape_field(b"a b\\\t\x01\xff"), "a b\\\\\\t\\x01\\xff");
    }

    #[test]
    fn bad_escapes_are_refused() {
        for s in ["\\", "\\q", "\\x", "\\x4", "\\xzz"] {
            assert!(unescape_field(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn dead_rows_round_trip() {
        let d = DeadJob {
            handle: "H:h:7".into(),
            function: "f\tx".into(),
            unique: Bytes::from_static(b"u\n\0"),
            data: Bytes::from_static(b"\xde\xad\\"),
            attempts: 3,
            error: "boom: é".into(),
            submitted: 1_700_000_000,
            failed_at: 1_700_000_050,
        };
        let mut b = Vec::new();
        write_dead_line(&mut b, &d);
        let line = String::from_utf8(b).unwrap();
        assert_eq!(line.matches('\t').count(), 7);
        assert_eq!(DeadJob::parse_line(&line).unwrap(), d);
        let reply = format!("{line}.\n");
        assert_eq!(parse_dead_jobs(&reply).unwrap(), vec![d]);
        assert!(DeadJob::parse_line("a\tb").is_err());
    }

    #[test]
    fn retry_rows_round_trip() {
        let p = RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        };
        let mut b = Vec::new();
        write_retry_line(&mut b, b"resize", &p);
        assert_eq!(b, b"resize\t3\t250\t10000\n");
        let reply = format!("{}.\n", String::from_utf8(b).unwrap());
        assert_eq!(
            parse_retry_policies(&reply).unwrap(),
            vec![("resize".to_string(), p)]
        );
    }

    #[test]
    fn commands_parse_and_print_back() {
        use crate::protocol::admin::{AdminCommand as C, DeadTarget as T};
        let cases: Vec<(&str, C)> = vec![
            ("retry", C::ShowRetry),
            ("retry show", C::ShowRetry),
            (
                "retry f 3 250",
                C::SetRetry {
                    function: "f".into(),
                    policy: RetryPolicy::new(3, Duration::from_millis(250)),
                },
            ),
            (
                "RETRY f 0 1 2",
                C::SetRetry {
                    function: "f".into(),
                    policy: RetryPolicy {
                        max_attempts: 0,
                        backoff: Duration::from_millis(1),
                        max_delay: Duration::from_millis(2),
                    },
                },
            ),
            ("dead list", C::DeadList(None)),
            ("dead list f", C::DeadList(Some("f".into()))),
            ("dead retry all", C::DeadRetry(T::All)),
            ("dead retry job H:x:1", C::DeadRetry(T::Job("H:x:1".into()))),
            (
                "dead delete function f",
                C::DeadDelete(T::Function("f".into())),
            ),
        ];
        for (line, want) in cases {
            let got = C::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(got, want, "{line}");
            assert_eq!(C::parse(got.to_string().as_bytes()), Ok(got.clone()));
            assert_eq!(
                got.is_listing(),
                matches!(got, C::ShowRetry | C::DeadList(_))
            );
        }
        for bad in [
            "retry f",
            "retry f x 1",
            "retry f -1 1",
            "retry f 1 2 3 4",
            "dead",
            "dead list a b",
            "dead retry",
            "dead retry function",
            "dead purge all",
            "dead delete job",
        ] {
            let e = C::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code, "INVALID_ARGUMENTS", "{bad}");
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_with_a_quarter_of_jitter() {
        let p = RetryPolicy {
            max_attempts: 10,
            backoff: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let base: Vec<u64> = (1..=5)
            .map(|n| p.base_delay(n).as_millis() as u64)
            .collect();
        assert_eq!(base, [100, 200, 400, 500, 500]);
        assert_eq!(p.delay(2, 0.0), Duration::from_millis(200));
        let most = p.delay(2, 0.999_999);
        assert!(most > Duration::from_millis(249) && most < Duration::from_millis(250));
        assert_eq!(p.base_delay(u32::MAX), Duration::from_millis(500));
    }
}
