//! `polygear`: a drop-in for the C `gearman` and `gearadmin` tools.
//!
//! Client mode submits workloads and prints results, worker mode serves a
//! function (optionally through a shell command), and `polygear admin`
//! speaks the server's text protocol. See `polygear --help`.

mod admin;
mod client;
mod fail;
mod opts;
mod out;
mod worker;

use std::process::ExitCode;
use std::time::Duration;

use fail::CliError;

const HELP: &str = "\
polygear - Gearman client, worker and admin tool (a drop-in for gearman/gearadmin)

Client mode:  polygear [OPTIONS] -f FUNC [DATA ...]
Worker mode:  polygear -w [OPTIONS] -f FUNC [--] [COMMAND [ARGS ...]]

Options are read up to the first word that is not an option (or '--');
that word and everything after it are the data (client) or the command
(worker). Use '--' before a command that has options of its own.

Common options:
  -f FUNC     function name; may be repeated (required)
  -h HOST     job server host, or several: -h a:4730,b:4731 (default localhost)
  -p PORT     job server port for hosts given without one (default 4730)
              When GEARMAN_SERVER=host[:port][,...] is set, -h/-p are ignored.
  -t MS       timeout in milliseconds: client: connect, submit, and the
              longest silence while a job runs; worker: connect, and the
              longest wait for the next job (then exit 4)
  -i FILE     write the process id to FILE (removed on exit)
  -d          run detached in the background (stdio to /dev/null)
  -v          client: print 'Task created: HANDLE' for each job
  -H, --help  print this help and exit
  --version   print the version and exit

Client options:
  (data)      each DATA word is one workload; without words all of stdin is one
  -n          one workload per stdin line (the line with its newline; whole
              lines however long, where the C tool splits them at 8 KiB);
              lines are submitted as they arrive
  -N          like -n, without the newline
  -s          no input: submit one empty workload
  -b          submit in the background (prints nothing without -v)
  -I / -L     high / low priority (the last one given wins)
  -u UNIQUE   unique key of every job (same function and key coalesce)
  -c COUNT    submit at most COUNT workloads, then exit
  --retain SECS   with -b (polygeard only): the server keeps each job's
              result SECS seconds after it ends, for --result
  --result HANDLE (polygeard only): print the retained result of a background
              job and exit 0; a failed job exits 1 ('Job failed'); a job
              still queued or running, or unknown/expired, prints its state
              ('queued', 'running', 'unknown') on stderr and exits 1
  -P          prefix each output chunk with 'FUNC: ' (on the chunk's stream)
  Every workload goes to each -f function at once; workloads run one after
  another. WORK_DATA and results are written raw to stdout, warnings and
  exception messages to stderr, progress as 'N% Complete', a failed job as
  'Job failed' on stderr (exit 1).

Worker options:
  -w          worker mode
  -c COUNT    exit after COUNT jobs
  -n          stream the command's output: each line is sent as its own
              WORK_DATA as soon as it is written, then an empty WORK_COMPLETE
              (the C tool resends everything accumulated so far instead)
  -N          like -n, without the newline of each line
  Without a command, each workload is written to stdout and the job completes
  with an empty result. With a command, the workload is piped to its stdin
  while its stdout is read (so payloads of any size work); exit status 0
  sends the output as the result, any other status sends the output as
  WORK_DATA and then fails the job. The command's stderr goes to ours.

";

const EXIT_CODES: &str = "
Exit status:
  0  success
  1  a job failed (WORK_FAIL or WORK_EXCEPTION), or the server refused an
     admin command
  2  usage error (the C tool uses 1)
  3  connection, server or I/O error (e.g. server unreachable)
  4  timeout (-t)
Unlike the C tool, connection errors and timeouts never exit 0.

Examples:
  ls / | polygear -f test                 send the listing to 'test'
  polygear -w -f wc -- wc -l              serve 'wc' with `wc -l`
  polygear -f rev -n < lines.txt          one 'rev' job per line
  polygear admin -h gm1 status            function status of a server
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    }
}

fn real_main(args: Vec<String>) -> Result<(), CliError> {
    if args.first().map(String::as_str) == Some("admin") {
        return admin_main(&args[1..]);
    }
    let o = opts::parse(&args)?;
    if o.help {
        print!("{HELP}{}{}{EXIT_CODES}", admin::USAGE, opts::TLS_USAGE);
        return Ok(());
    }
    if o.version {
        println!("polygear {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let env = std::env::var("GEARMAN_SERVER").ok();
    if let Some(handle) = &o.result {
        let servers = opts::servers(o.host.as_deref(), o.port, env.as_deref())?;
        let tls = o.tls.options(polygear::TlsOptions::from_env());
        return runtime()?.block_on(client::fetch_result(servers, tls, o.timeout, handle));
    }
    if o.functions.is_empty() {
        return Err(CliError::Usage("no function given (use -f FUNC)".into()));
    }
    if o.retain.is_some() && !o.background {
        return Err(CliError::Usage(
            "--retain is for background jobs (-b)".into(),
        ));
    }
    let servers = opts::servers(o.host.as_deref(), o.port, env.as_deref())?;
    if o.daemon && std::env::var_os(DAEMON_ENV).is_none() {
        return daemonize();
    }
    let tls = o.tls.options(polygear::TlsOptions::from_env());
    let _pid = o.pid_file.as_deref().map(PidFile::create).transpose()?;
    let rt = runtime()?;
    if o.worker {
        let cfg = worker::WorkerConfig {
            servers,
            functions: o.functions,
            command: o.rest,
            lines: o.lines,
            count: o.count,
            timeout: o.timeout,
            tls,
        };
        rt.block_on(worker::run(cfg))
    } else {
        let input = if !o.rest.is_empty() {
            client::Input::Words(o.rest)
        } else if o.no_input {
            client::Input::Empty
        } else if let Some(strip) = o.lines {
            client::Input::Lines(strip)
        } else {
            client::Input::Stdin
        };
        let cfg = client::ClientConfig {
            servers,
            functions: o.functions,
            input,
            background: o.background,
            priority: o.priority,
            unique: o.unique,
            timeout: o.timeout,
            count: o.count,
            verbose: o.verbose,
            prefix: o.prefix,
            tls,
            retain: o.retain,
        };
        rt.block_on(client::run(cfg))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(format!("cannot start the async runtime: {e}")))
}

/// Default deadline of an admin command.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `polygear admin [-h HOST] [-p PORT] [-t MS] COMMAND [ARGS]`; options may
/// come anywhere before `--`.
fn admin_main(args: &[String]) -> Result<(), CliError> {
    let mut host = None;
    let mut port = None;
    let mut timeout = ADMIN_TIMEOUT;
    let mut tls = opts::TlsFlags::default();
    let mut words = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a.starts_with("--ssl")
            && tls.long_option(&a[2..], || {
                i += 1;
                args.get(i - 1).cloned()
            })?
        {
            continue;
        }
        let mut value = |name: &str| -> Result<String, CliError> {
            i += 1;
            args.get(i - 1)
                .cloned()
                .ok_or_else(|| CliError::Usage(format!("option '{name}' requires an argument")))
        };
        match a {
            "--" => {
                words.extend_from_slice(&args[i..]);
                break;
            }
            "-H" | "--help" => {
                print!("{}{}{EXIT_CODES}", admin::USAGE, opts::TLS_USAGE);
                return Ok(());
            }
            "-S" => tls.enabled = true,
            "-h" | "--host" => host = Some(value(a)?),
            "-p" | "--port" => port = Some(opts::parse_port(&value(a)?)?),
            "-t" | "--timeout" => timeout = opts::parse_timeout(&value(a)?)?,
            _ if a.starts_with("-h") && a.len() > 2 => host = Some(a[2..].to_string()),
            _ if a.starts_with("-p") && a.len() > 2 => port = Some(opts::parse_port(&a[2..])?),
            _ if a.starts_with("-t") && a.len() > 2 => timeout = opts::parse_timeout(&a[2..])?,
            _ if a.starts_with('-') && !a.starts_with("--") && a.len() > 1 => {
                return Err(CliError::Usage(format!("admin: unknown option '{a}'")))
            }
            _ => words.push(a.to_string()),
        }
    }
    let cmd = admin::command(&words)?;
    // Explicit -h/-p win; else GEARMAN_SERVER; else localhost:4730.
    let env = if host.is_some() || port.is_some() {
        None
    } else {
        std::env::var("GEARMAN_SERVER").ok()
    };
    let servers = opts::servers(host.as_deref(), port, env.as_deref())?;
    let tls = tls.options(polygear::TlsOptions::from_env());
    runtime()?.block_on(admin::run(&servers, timeout, tls.as_ref(), &cmd))
}

/// Set in the detached child started by `-d`.
const DAEMON_ENV: &str = "POLYGEAR_DETACHED";

/// `-d`: start this same command again, detached, and return at once.
fn daemonize() -> Result<(), CliError> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()?;
    Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            CliError::Runtime(format!(
                "cannot start in the background: {}",
                fail::strip_os_error(&e.to_string())
            ))
        })?;
    Ok(())
}

/// A pid file that is removed again when the command ends normally.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn create(path: &str) -> Result<PidFile, CliError> {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
            CliError::Runtime(format!(
                "cannot write pid file {path}: {}",
                fail::strip_os_error(&e.to_string())
            ))
        })?;
        Ok(PidFile(path.into()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
