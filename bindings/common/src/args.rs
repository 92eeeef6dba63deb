//! Arguments as every binding receives them, checked in one place: server
//! lists, priorities, and durations in seconds (Python, Ruby) or milliseconds
//! (Node).
//!
//! The bindings first check the language-level types (a `str`, a `Symbol`, a
//! number) and raise their own `TypeError`s; the values that then reach these
//! functions are plain Rust values.

use std::path::PathBuf;
use std::time::Duration;

use polygear::{Priority, ServerAddr, TlsOptions, DEFAULT_PORT};

/// Why an argument was refused.
#[derive(Debug)]
pub enum ArgError {
    /// A value the bindings refuse: raised as the language's plain value
    /// error (Python `ValueError`, Ruby `ArgumentError`, Node's `invalid`
    /// record, i.e. `InvalidArgumentError` with code `EINVAL`).
    Value(String),
    /// A value the core refused (e.g. a malformed `host:port`): raised like
    /// every other core error, through [`crate::errors`].
    Core(polygear::Error),
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgError::Value(m) => f.write_str(m),
            ArgError::Core(e) => e.fmt(f),
        }
    }
}

impl From<polygear::Error> for ArgError {
    fn from(e: polygear::Error) -> Self {
        ArgError::Core(e)
    }
}

/// The server used when none is given: `127.0.0.1:4730`.
pub fn default_servers() -> Vec<ServerAddr> {
    vec![ServerAddr::new("127.0.0.1", DEFAULT_PORT)]
}

/// Server addresses from `host[:port]` strings, each of which may also be a
/// comma-separated list (libgearman's syntax); at least one is required.
pub fn servers<S: AsRef<str>>(
    list: impl IntoIterator<Item = S>,
) -> Result<Vec<ServerAddr>, ArgError> {
    let mut out = Vec::new();
    for s in list {
        out.extend(ServerAddr::parse_list(s.as_ref())?);
    }
    if out.is_empty() {
        return Err(ArgError::Value("at least one server is required".into()));
    }
    Ok(out)
}

/// `"high"`, `"normal"` or `"low"` (any case), through the core's
/// `FromStr for Priority`.
pub fn priority(name: &str) -> Result<Priority, ArgError> {
    name.parse().map_err(|_: String| {
        ArgError::Value(format!(
            "priority must be 'high', 'normal' or 'low', not {:?}",
            name.to_ascii_lowercase()
        ))
    })
}

/// A priority by gearmand's number: 0 = high, 1 = normal, 2 = low.
pub fn priority_index(index: u32) -> Result<Priority, ArgError> {
    Priority::from_index(i64::from(index))
        .ok_or_else(|| ArgError::Value("priority must be 0, 1 or 2".into()))
}

/// A worker's concurrency: at least 1.
pub fn concurrency(n: usize) -> Result<usize, ArgError> {
    if n == 0 {
        return Err(ArgError::Value("concurrency must be at least 1".into()));
    }
    Ok(n)
}

/// A number of seconds: finite, not negative, and representable.
pub fn seconds(name: &str, secs: f64) -> Result<Duration, ArgError> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        ArgError::Value(format!(
            "{name} must be a finite, non-negative number of seconds, not {secs}"
        ))
    })
}

/// Like [`seconds`], with `None` meaning none.
pub fn opt_seconds(name: &str, secs: Option<f64>) -> Result<Option<Duration>, ArgError> {
    secs.map(|s| seconds(name, s)).transpose()
}

/// A number of milliseconds: finite, not negative, and representable.
pub fn millis(name: &str, ms: f64) -> Result<Duration, ArgError> {
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
        ArgError::Value(format!(
            "{name} must be a finite number of milliseconds ≥ 0"
        ))
    })
}

/// Like [`millis`], with `None` meaning none.
pub fn opt_millis(name: &str, ms: Option<f64>) -> Result<Option<Duration>, ArgError> {
    ms.map(|m| millis(name, m)).transpose()
}

/// A job or connect timeout in seconds (Python, Ruby): more than zero,
/// finite and representable ("timeout must be greater than 0 (seconds), not 0").
pub fn timeout_seconds(name: &str, secs: f64) -> Result<Duration, ArgError> {
    positive(name, secs, 1.0, "seconds")
}

/// A job or connect timeout in milliseconds (Node), checked like
/// [`timeout_seconds`].
pub fn timeout_millis(name: &str, ms: f64) -> Result<Duration, ArgError> {
    positive(name, ms, 1000.0, "milliseconds")
}

/// `value` in `unit` (`per_second` of them make a second) as a duration
/// greater than zero.
fn positive(name: &str, value: f64, per_second: f64, unit: &str) -> Result<Duration, ArgError> {
    let not_positive = || {
        ArgError::Value(format!(
            "{name} must be greater than 0 ({unit}), not {value}"
        ))
    };
    if value.is_nan() || value <= 0.0 {
        return Err(not_positive());
    }
    let d = Duration::try_from_secs_f64(value / per_second).map_err(|_| {
        ArgError::Value(format!(
            "{name} must be a finite number of {unit}, not {value}"
        ))
    })?;
    if d.is_zero() {
        // Below a nanosecond: as good as zero.
        return Err(not_positive());
    }
    Ok(d)
}

/// The fields of an explicit TLS setting, by their snake_case names (Node
/// spells them in camelCase: [`TLS_FIELDS_CAMEL`]).
pub const TLS_FIELDS: [&str; 4] = ["ca_file", "cert_file", "key_file", "server_name"];

/// [`TLS_FIELDS`] as Node's option object spells them.
pub const TLS_FIELDS_CAMEL: [&str; 4] = ["caFile", "certFile", "keyFile", "serverName"];

/// `tls: true`: libgearman's environment variables
/// (`GEARMAND_CA_CERTIFICATE`, `GEARMAN_CLIENT_PEM`, `GEARMAN_CLIENT_KEY`);
/// without them the system's trust store and no client certificate.
pub fn tls_default() -> TlsOptions {
    TlsOptions::from_env()
}

/// An explicit TLS setting: exactly these files (the environment is not
/// read), each `None` when not given. An empty string is refused here, a
/// missing or unreadable file when the client, worker or admin is made (an
/// `InvalidArgument` error naming it).
pub fn tls(
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
) -> Result<TlsOptions, ArgError> {
    let named = [
        (
            "ca_file",
            ca_file.as_ref().map(|p| p.as_os_str().is_empty()),
        ),
        (
            "cert_file",
            cert_file.as_ref().map(|p| p.as_os_str().is_empty()),
        ),
        (
            "key_file",
            key_file.as_ref().map(|p| p.as_os_str().is_empty()),
        ),
        ("server_name", server_name.as_ref().map(|n| n.is_empty())),
    ];
    if let Some((name, _)) = named.iter().find(|(_, empty)| *empty == Some(true)) {
        return Err(ArgError::Value(format!("tls {name} must not be empty")));
    }
    if cert_file.is_some() != key_file.is_some() {
        return Err(ArgError::Value(
            "tls needs cert_file and key_file together (a client certificate and its key)".into(),
        ));
    }
    Ok(TlsOptions {
        ca_file,
        cert_file,
        key_file,
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(e: ArgError) -> String {
        match e {
            ArgError::Value(m) => m,
            ArgError::Core(e) => panic!("a core error: {e}"),
        }
    }

    #[test]
    fn server_lists() {
        let list = servers(["a:1,b", " c:3 "]).unwrap();
        let names: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["a:1", "b:4730", "c:3"]);
        assert_eq!(default_servers()[0].to_string(), "127.0.0.1:4730");
        assert_eq!(
            value(servers(Vec::<String>::new()).unwrap_err()),
            "at least one server is required"
        );
        match servers(["h:port"]) {
            Err(ArgError::Core(e)) => assert_eq!(e.kind(), polygear::ErrorKind::InvalidArgument),
            other => panic!("{other:?}"),
        }
        // an empty string is the core's error ("no server in ...")
        assert!(matches!(servers([""]), Err(ArgError::Core(_))));
    }

    #[test]
    fn priorities() {
        assert_eq!(priority("HIGH").unwrap(), Priority::High);
        assert_eq!(priority("normal").unwrap(), Priority::Normal);
        assert_eq!(priority("low").unwrap(), Priority::Low);
        assert_eq!(
            value(priority("Urgent").unwrap_err()),
            "priority must be 'high', 'normal' or 'low', not \"urgent\""
        );
        assert_eq!(priority_index(0).unwrap(), Priority::High);
        assert_eq!(priority_index(2).unwrap(), Priority::Low);
        assert_eq!(
            value(priority_index(3).unwrap_err()),
            "priority must be 0, 1 or 2"
        );
    }

    #[test]
    fn concurrency_is_at_least_one() {
        assert_eq!(concurrency(4).unwrap(), 4);
        assert_eq!(
            value(concurrency(0).unwrap_err()),
            "concurrency must be at least 1"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(seconds("t", 1.5).unwrap(), Duration::from_millis(1500));
        assert_eq!(seconds("t", 0.0).unwrap(), Duration::ZERO);
        assert_eq!(opt_seconds("t", None).unwrap(), None);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert_eq!(
                value(seconds("timeout", bad).unwrap_err()),
                format!("timeout must be a finite, non-negative number of seconds, not {bad}")
            );
        }
        assert_eq!(millis("t", 250.0).unwrap(), Duration::from_millis(250));
        assert_eq!(opt_millis("t", Some(0.0)).unwrap(), Some(Duration::ZERO));
        for bad in [-0.5, f64::NAN, f64::NEG_INFINITY, 1e300] {
            assert_eq!(
                value(millis("connectTimeout", bad).unwrap_err()),
                "connectTimeout must be a finite number of milliseconds ≥ 0"
            );
        }
    }

    #[test]
    fn timeouts_must_be_positive_in_the_languages_unit() {
        assert_eq!(
            timeout_seconds("timeout", 1.5).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            timeout_millis("timeout", 5.0).unwrap(),
            Duration::from_millis(5)
        );
        assert_eq!(
            value(timeout_seconds("timeout", 0.0).unwrap_err()),
            "timeout must be greater than 0 (seconds), not 0"
        );
        assert_eq!(
            value(timeout_seconds("timeout", -1.0).unwrap_err()),
            "timeout must be greater than 0 (seconds), not -1"
        );
        assert_eq!(
            value(timeout_seconds("timeout", f64::NAN).unwrap_err()),
            "timeout must be greater than 0 (seconds), not NaN"
        );
        assert_eq!(
            value(timeout_seconds("timeout", 1e-12).unwrap_err()),
            "timeout must be greater than 0 (seconds), not 0.000000000001"
        );
        assert_eq!(
            value(timeout_seconds("connect_timeout", f64::INFINITY).unwrap_err()),
            "connect_timeout must be a finite number of seconds, not inf"
        );
        assert_eq!(
            value(timeout_millis("timeout", 0.0).unwrap_err()),
            "timeout must be greater than 0 (milliseconds), not 0"
        );
        assert_eq!(
            value(timeout_millis("connectTimeout", -5.0).unwrap_err()),
            "connectTimeout must be greater than 0 (milliseconds), not -5"
        );
        assert!(value(timeout_millis("timeout", 1e300).unwrap_err())
            .starts_with("timeout must be a finite number of milliseconds, not 1000"));
    }

    #[test]
    fn tls_settings() {
        let t = tls(Some("ca.pem".into()), None, None, Some("gm".into())).unwrap();
        assert_eq!(t.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(t.server_name.as_deref(), Some("gm"));
        assert_eq!(t.cert_file, None);
        assert_eq!(
            value(tls(Some("".into()), None, None, None).unwrap_err()),
            "tls ca_file must not be empty"
        );
        assert_eq!(
            value(tls(None, None, None, Some(String::new())).unwrap_err()),
            "tls server_name must not be empty"
        );
        assert!(value(tls(None, Some("c".into()), None, None).unwrap_err())
            .contains("cert_file and key_file together"));
        assert_eq!(tls(None, None, None, None).unwrap(), TlsOptions::default());
    }
}
