//! Command-line parsing with the C `gearman` tool's getopt semantics:
//! short options may be clustered (`-bv`) and take their value attached
//! (`-ffoo`) or as the next word (`-f foo`); the first word that is not an
//! option (or everything after `--`) starts the data words / the command.

use std::time::Duration;

use std::path::PathBuf;

use polygear::{Priority, ServerAddr, TlsOptions, DEFAULT_PORT};

use crate::fail::CliError;

/// Everything given on the command line for client and worker mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opts {
    /// `-f`, in the order given.
    pub functions: Vec<String>,
    /// `-h` (may be a comma-separated list).
    pub host: Option<String>,
    /// `-p`.
    pub port: Option<u16>,
    /// `-t` in milliseconds.
    pub timeout: Option<Duration>,
    /// `-i`.
    pub pid_file: Option<String>,
    /// `-v`.
    pub verbose: bool,
    /// `-H` / `--help`.
    pub help: bool,
    /// `--version`.
    pub version: bool,
    /// `-d`.
    pub daemon: bool,
    /// `-b`.
    pub background: bool,
    /// `-I` / `-L` (last wins).
    pub priority: Priority,
    /// `-n` (`Some(false)`) or `-N` (`Some(true)`: strip the newline); last wins.
    pub lines: Option<bool>,
    /// `-P`.
    pub prefix: bool,
    /// `-s`.
    pub no_input: bool,
    /// `-u`.
    pub unique: Option<String>,
    /// `-w`.
    pub worker: bool,
    /// `-c`.
    pub count: Option<u64>,
    /// `-S` / `--ssl` and the `--ssl-*` files.
    pub tls: TlsFlags,
    /// `--retain SECS` (with `-b`; polygeard): keep the results that long.
    pub retain: Option<Duration>,
    /// `--result HANDLE` (polygeard): print a retained result instead of submitting.
    pub result: Option<String>,
    /// Data words (client) or command and its arguments (worker).
    pub rest: Vec<String>,
}

/// Option letters that take a value (getopt string `bc:f:h:HILnNp:Pst:u:vwi:dS`).
fn takes_value(c: char) -> bool {
    matches!(c, 'c' | 'f' | 'h' | 'p' | 't' | 'u' | 'i')
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Opts, CliError> {
    let mut o = Opts::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            match name {
                "help" => o.help = true,
                "version" => o.version = true,
                "retain" | "result" => {
                    let value = attached
                        .or_else(|| {
                            i += 1;
                            args.get(i - 1).cloned()
                        })
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            CliError::Usage(format!("option '--{name}' requires an argument"))
                        })?;
                    if name == "result" {
                        o.result = Some(value);
                    } else {
                        let secs =
                            value
                                .parse::<u64>()
                                .ok()
                                .filter(|&s| s > 0)
                                .ok_or_else(|| {
                                    CliError::Usage(format!(
                                "--retain takes whole seconds greater than zero, not {value:?}"
                            ))
                                })?;
                        o.retain = Some(Duration::from_secs(secs));
                    }
                }
                _ => {
                    if !o.tls.long_option(long, || {
                        i += 1;
                        args.get(i - 1).cloned()
                    })? {
                        return Err(CliError::Usage(format!("unknown option '--{long}'")));
                    }
                }
            }
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            // First non-option word: it and everything after it is data/command.
            i -= 1;
            break;
        };
        for (pos, c) in cluster.char_indices() {
            if takes_value(c) {
                let attached = &cluster[pos + c.len_utf8()..];
                let value = if !attached.is_empty() {
                    attached.to_string()
                } else if i < args.len() {
                    i += 1;
                    args[i - 1].clone()
                } else {
                    return Err(CliError::Usage(format!(
                        "option '-{c}' requires an argument"
                    )));
                };
                set_value(&mut o, c, value)?;
                break;
            }
            match c {
                'H' => o.help = true,
                'I' => o.priority = Priority::High,
                'L' => o.priority = Priority::Low,
                'n' => o.lines = Some(false),
                'N' => o.lines = Some(true),
                'P' => o.prefix = true,
                's' => o.no_input = true,
                'v' => o.verbose = true,
                'w' => o.worker = true,
                'b' => o.background = true,
                'd' => o.daemon = true,
                'S' => o.tls.enabled = true,
                _ => return Err(CliError::Usage(format!("unknown option '-{c}'"))),
            }
        }
    }
    o.rest = args[i..].to_vec();
    Ok(o)
}

fn set_value(o: &mut Opts, c: char, v: String) -> Result<(), CliError> {
    match c {
        'f' => {
            if v.is_empty() {
                return Err(CliError::Usage("empty function name".into()));
            }
            o.functions.push(v)
        }
        'h' => o.host = Some(v),
        'p' => o.port = Some(parse_port(&v)?),
        't' => o.timeout = Some(parse_timeout(&v)?),
        'u' => o.unique = Some(v),
        'i' => o.pid_file = Some(v),
        'c' => {
            o.count =
                Some(v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    CliError::Usage(format!("-c needs a positive count, not {v:?}"))
                })?)
        }
        _ => unreachable!("takes_value and set_value disagree on -{c}"),
    }
    Ok(())
}

/// `-S` / `--ssl` and the files given with `--ssl-ca-file`,
/// `--ssl-certificate`, `--ssl-key` and `--ssl-server-name` (each of which
/// turns TLS on too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFlags {
    /// TLS was asked for.
    pub enabled: bool,
    /// `--ssl-ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `--ssl-certificate`.
    pub cert_file: Option<PathBuf>,
    /// `--ssl-key`.
    pub key_file: Option<PathBuf>,
    /// `--ssl-server-name`.
    pub server_name: Option<String>,
}

/// The TLS options' help lines (client, worker and admin mode).
pub const TLS_USAGE: &str = "\
TLS (every mode; the server must run with --ssl):
  -S, --ssl   connect with TLS. Files from libgearman's variables:
              GEARMAND_CA_CERTIFICATE (CAs to trust; unset: the system's),
              GEARMAN_CLIENT_PEM and GEARMAN_CLIENT_KEY (client certificate
              and key, for servers that verify clients)
  --ssl-ca-file FILE       CA certificates (PEM) instead of GEARMAND_CA_CERTIFICATE
  --ssl-certificate FILE   client certificate (PEM) instead of GEARMAN_CLIENT_PEM
  --ssl-key FILE           client key (PEM) instead of GEARMAN_CLIENT_KEY
  --ssl-server-name NAME   name the server's certificate must carry
                           (default: the host connected to)
  Each --ssl-* option turns TLS on; '--opt=VALUE' works too.
";

impl TlsFlags {
    /// Takes `long` (without its `--`) if it is one of the TLS options;
    /// `next` gives the following word for a value not attached with `=`.
    /// `Ok(false)`: not a TLS option.
    pub fn long_option(
        &mut self,
        long: &str,
        next: impl FnOnce() -> Option<String>,
    ) -> Result<bool, CliError> {
        let (name, attached) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (long, None),
        };
        if name == "ssl" {
            if attached.is_some() {
                return Err(CliError::Usage("option '--ssl' takes no value".into()));
            }
            self.enabled = true;
            return Ok(true);
        }
        if !matches!(
            name,
            "ssl-ca-file" | "ssl-certificate" | "ssl-key" | "ssl-server-name"
        ) {
            return Ok(false);
        }
        let value = attached
            .or_else(next)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| CliError::Usage(format!("option '--{name}' requires an argument")))?;
        match name {
            "ssl-ca-file" => self.ca_file = Some(value.into()),
            "ssl-certificate" => self.cert_file = Some(value.into()),
            "ssl-key" => self.key_file = Some(value.into()),
            _ => self.server_name = Some(value),
        }
        self.enabled = true;
        Ok(true)
    }

    /// The TLS settings (`None`: plain TCP): libgearman's variables in `env`,
    /// each overridden by its flag.
    pub fn options(&self, env: TlsOptions) -> Option<TlsOptions> {
        if !self.enabled {
            return None;
        }
        Some(TlsOptions {
            ca_file: self.ca_file.clone().or(env.ca_file),
            cert_file: self.cert_file.clone().or(env.cert_file),
            key_file: self.key_file.clone().or(env.key_file),
            server_name: self.server_name.clone().or(env.server_name),
        })
    }
}

/// A TCP port number (1-65535).
pub fn parse_port(v: &str) -> Result<u16, CliError> {
    v.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| CliError::Usage(format!("bad port {v:?}")))
}

/// A positive number of milliseconds.
pub fn parse_timeout(v: &str) -> Result<Duration, CliError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "-t needs a positive number of milliseconds, not {v:?}"
            ))
        })
}

/// The servers to use, like the C tool: `GEARMAN_SERVER` (when set and not
/// empty) wins over `-h`/`-p`; `-h` may list several `host[:port]` separated
/// by commas, and `-p` is the port of every entry that has none.
pub fn servers(
    host: Option<&str>,
    port: Option<u16>,
    env: Option<&str>,
) -> Result<Vec<ServerAddr>, CliError> {
    if let Some(env) = env.filter(|e| !e.trim().is_empty()) {
        return ServerAddr::parse_list(env)
            .map_err(|_| CliError::Usage(format!("bad server list in GEARMAN_SERVER: {env:?}")));
    }
    let port = port.unwrap_or(DEFAULT_PORT);
    let host = host.unwrap_or("localhost");
    let mut list = Vec::new();
    for item in host.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let has_port = item.starts_with('[') || item.matches(':').count() == 1;
        let addr = if has_port {
            item.parse::<ServerAddr>()
                .map_err(|_| CliError::Usage(format!("bad server address {item:?}")))?
        } else {
            ServerAddr::new(item, port)
        };
        list.push(addr);
    }
    if list.is_empty() {
        return Err(CliError::Usage(format!("no server in {host:?}")));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Opts, CliError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn getopt_clusters_values_and_first_word() {
        let o = p(&["-bvf", "a", "-fb", "-I", "-L", "x", "-y"]).unwrap();
        assert!(o.background && o.verbose);
        assert_eq!(o.functions, ["a", "b"]);
        assert_eq!(o.priority, Priority::Low);
        assert_eq!(o.rest, ["x", "-y"]);

        let o = p(&["-w", "-f", "wc", "--", "wc", "-l"]).unwrap();
        assert!(o.worker);
        assert_eq!(o.rest, ["wc", "-l"]);

        let o = p(&["-w", "-f", "wc", "wc", "-l"]).unwrap();
        assert_eq!(o.rest, ["wc", "-l"]);

        let o = p(&["-f", "x", "-", "-b"]).unwrap();
        assert_eq!(o.rest, ["-", "-b"]);
        assert!(!o.background);

        let o = p(&["-N", "-n", "-c3", "-t", "250", "-p", "7", "-u", "k"]).unwrap();
        assert_eq!(o.lines, Some(false));
        assert_eq!(o.count, Some(3));
        assert_eq!(o.timeout, Some(Duration::from_millis(250)));
        assert_eq!(o.port, Some(7));
        assert_eq!(o.unique.as_deref(), Some("k"));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["-x"][..],
            &["-f"],
            &["-p", "x"],
            &["-t", "0"],
            &["-c", "-1"],
            &["--frob"],
            &["--ssl-ca-file"],
            &["--ssl-key="],
            &["--ssl=yes"],
        ] {
            assert!(matches!(p(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
        assert!(p(&["--help"]).unwrap().help);
        assert!(p(&["-H"]).unwrap().help);
    }

    #[test]
    fn tls_flags() {
        assert_eq!(
            p(&["-f", "x"]).unwrap().tls.options(TlsOptions::default()),
            None
        );
        let o = p(&["-Sbf", "x", "data"]).unwrap();
        assert!(o.tls.enabled && o.background);
        assert_eq!(o.rest, ["data"]);
        let env = TlsOptions {
            ca_file: Some("env-ca".into()),
            cert_file: Some("env-cert".into()),
            key_file: Some("env-key".into()),
            server_name: None,
        };
        // -S alone: libgearman's variables.
        assert_eq!(o.tls.options(env.clone()), Some(env.clone()));
        // A flag overrides its variable and turns TLS on by itself.
        let o = p(&[
            "--ssl-ca-file",
            "ca.pem",
            "--ssl-key=k.pem",
            "--ssl-server-name",
            "gm.example",
            "-f",
            "x",
        ])
        .unwrap();
        assert_eq!(
            o.tls.options(env),
            Some(TlsOptions {
                ca_file: Some("ca.pem".into()),
                cert_file: Some("env-cert".into()),
                key_file: Some("k.pem".into()),
                server_name: Some("gm.example".into()),
            })
        );
        let o = p(&["--ssl", "-w", "-f", "x"]).unwrap();
        assert!(o.tls.enabled && o.worker);
    }

    #[test]
    fn server_lists() {
        assert_eq!(
            servers(None, None, None).unwrap(),
            [ServerAddr::new("localhost", 4730)]
        );
        assert_eq!(
            servers(Some("a:1,b"), Some(9), None).unwrap(),
            [ServerAddr::new("a", 1), ServerAddr::new("b", 9)]
        );
        assert_eq!(
            servers(Some("ignored"), Some(9), Some("c:2,d")).unwrap(),
            [ServerAddr::new("c", 2), ServerAddr::new("d", 4730)]
        );
        assert_eq!(
            servers(Some("::1"), Some(5), Some(" ")).unwrap(),
            [ServerAddr::new("::1", 5)]
        );
        assert!(servers(Some("a:x"), None, None).is_err());
        assert!(servers(Some(","), None, None).is_err());
    }
}
