//! `polygeard`: a gearmand-compatible Gearman job server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use polygear_server::{Lease, QueueConfig, Server, ServerConfig, TlsConfig};

/// `--version`: the version and how polygeard was compiled (benchmarks refuse a debug build).
const VERSION_LINE: &str = if cfg!(debug_assertions) {
    concat!(env!("CARGO_PKG_VERSION"), " (debug build)")
} else {
    concat!(env!("CARGO_PKG_VERSION"), " (release build)")
};

/// Command-line options (gearmand's names where they make sense).
#[derive(Parser, Debug)]
#[command(
    name = "polygeard",
    version = VERSION_LINE,
    max_term_width = 100,
    about = "polygeard: a fast, gearmand-compatible Gearman job server",
    after_help = "Clients, workers and gearadmin written for gearmand work unchanged.\n\
Background jobs are durable by default: each is stored in SQLite (fsync'd, group-committed)\n\
before JOB_CREATED is sent, and reloaded on start. Use `-q builtin` for memory only.\n\
`-q postgres|mysql|redis` use gearmand's table and key layouts; several polygeard sharing one\n\
PostgreSQL or MySQL table take over a dead server's queued jobs after --queue-lease.\n\
`-q libmemcached` is not durable: memcached forgets every job when it restarts.\n\
HTTP (`-r http` or --http-port): `curl --data-binary @in http://HOST:8080/<function>` runs a job\n\
(headers X-Gearman-Background: true, X-Gearman-Priority: high|low, X-Gearman-Unique,\n\
X-Gearman-Timeout: <ms>); GET /status/<handle> gives its status as JSON; see server/README.md.\n\
Signals: SIGTERM/SIGINT stop at once, SIGUSR1 stops accepting and exits when no job is left."
)]
struct Args {
    /// TCP port to listen on (env GEARMAND_PORT when not given)
    #[arg(short = 'p', long, value_name = "PORT")]
    port: Option<u16>,

    /// Protocol plugin to load, as gearmand's `-r`: only `http` (the HTTP front end on --http-port); repeatable
    #[arg(short = 'r', long = "protocol", value_name = "NAME")]
    protocol: Vec<String>,

    /// Port of the HTTP front end (POST /<function> runs a job; GET /status/<handle>, /metrics); given alone it enables HTTP too [default with -r http: 8080]
    #[arg(long = "http-port", value_name = "PORT")]
    http_port: Option<u16>,

    /// Address to listen on (Gearman and HTTP ports)
    #[arg(short = 'L', long, value_name = "ADDR", default_value = "0.0.0.0")]
    listen: String,

    /// Number of I/O threads (0 = one per CPU)
    #[arg(short = 't', long, value_name = "N", default_value_t = 0)]
    threads: usize,

    /// Assignments a job may lose to vanished workers before it fails (0 = unlimited)
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    job_retries: u32,

    /// Sleeping workers woken (NOOP) per queued job (0 = all of them)
    #[arg(short = 'w', long, value_name = "N", default_value_t = 1)]
    worker_wakeup: usize,

    /// Accepted for compatibility: functions are always served round-robin
    #[arg(short = 'R', long)]
    round_robin: bool,

    /// listen() backlog
    #[arg(short = 'b', long, value_name = "N", default_value_t = 1024)]
    backlog: u32,

    /// Job handle prefix instead of H:<hostname> (handles become PREFIX:N)
    #[arg(long, value_name = "PREFIX")]
    job_handle_prefix: Option<String>,

    /// Queue type: libsqlite3 (durable, default), postgres, mysql, redis, libmemcached (not durable across a memcached restart) or builtin (memory only)
    #[arg(short = 'q', long, value_name = "TYPE", default_value = "libsqlite3")]
    queue_type: String,

    /// PostgreSQL connection string (libpq's `host=... port=... user=... dbname=...`)
    #[arg(long = "libpq-conninfo", value_name = "STR", default_value = "")]
    libpq_conninfo: String,

    /// PostgreSQL table (created if missing)
    #[arg(long = "libpq-table", value_name = "NAME", default_value = "queue")]
    libpq_table: String,

    /// MySQL/MariaDB host
    #[arg(long = "mysql-host", value_name = "HOST", default_value = "localhost")]
    mysql_host: String,

    /// MySQL/MariaDB port
    #[arg(long = "mysql-port", value_name = "PORT", default_value_t = 3306)]
    mysql_port: u16,

    /// MySQL/MariaDB user
    #[arg(long = "mysql-user", value_name = "USER", default_value = "")]
    mysql_user: String,

    /// MySQL/MariaDB password
    #[arg(long = "mysql-password", value_name = "PASSWORD", default_value = "")]
    mysql_password: String,

    /// MySQL/MariaDB database
    #[arg(long = "mysql-db", value_name = "DB", default_value = "")]
    mysql_db: String,

    /// MySQL/MariaDB table (created if missing)
    #[arg(
        long = "mysql-table",
        value_name = "NAME",
        default_value = "gearman_queue"
    )]
    mysql_table: String,

    /// Redis host
    #[arg(
        long = "redis-server",
        value_name = "HOST",
        default_value = "127.0.0.1"
    )]
    redis_server: String,

    /// Redis port
    #[arg(long = "redis-port", value_name = "PORT", default_value_t = 6379)]
    redis_port: u16,

    /// Redis password (AUTH)
    #[arg(long = "redis-password", value_name = "PASSWORD", default_value = "")]
    redis_password: String,

    /// Redis key prefix
    #[arg(long = "redis-prefix", value_name = "PREFIX", default_value = "_gear_")]
    redis_prefix: String,

    /// memcached servers (host[:port],...); jobs there are lost when memcached restarts
    #[arg(
        long = "libmemcached-servers",
        value_name = "LIST",
        default_value = "127.0.0.1:11211"
    )]
    libmemcached_servers: String,

    /// memcached key prefix
    #[arg(
        long = "libmemcached-prefix",
        value_name = "PREFIX",
        default_value = "gear_"
    )]
    libmemcached_prefix: String,

    /// Shared PostgreSQL/MySQL queue: seconds a server's claim on its queued jobs lasts without renewal; another server sharing the table takes them over after it (0 = this server alone, like gearmand)
    #[arg(long = "queue-lease", value_name = "SECONDS", default_value_t = 10.0)]
    queue_lease: f64,

    /// Shared PostgreSQL/MySQL queue: this server's name in the table (default: <hostname>:<port>)
    #[arg(long = "server-id", value_name = "ID")]
    server_id: Option<String>,

    /// SQLite database file for the durable queue
    #[arg(
        long = "libsqlite3-db",
        value_name = "PATH",
        default_value = "polygeard.sqlite3"
    )]
    libsqlite3_db: PathBuf,

    /// Log destination: stderr, none, or a file path
    #[arg(short = 'l', long, value_name = "FILE", default_value = "stderr")]
    log_file: String,

    /// Log level: FATAL, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO, DEBUG
    #[arg(long, value_name = "LEVEL", default_value = "ERROR")]
    verbose: String,

    /// Write the process id to this file
    #[arg(short = 'P', long, value_name = "FILE")]
    pid_file: Option<PathBuf>,

    /// Enable SO_KEEPALIVE on client connections
    #[arg(long)]
    keepalive: bool,

    /// Enable the exceptions option for every connection
    #[arg(long)]
    exceptions: bool,

    /// Enable the admin commands `shutdown` and `shutdown graceful`
    #[arg(long)]
    allow_shutdown: bool,

    /// Token the HTTP dashboard's actions (cancel a queued job, drop a function) require, sent as `Authorization: Bearer TOKEN` (env POLYGEARD_ADMIN_TOKEN when not given); without it the actions are refused unless the client has a verified TLS certificate
    #[arg(long, value_name = "TOKEN")]
    admin_token: Option<String>,

    /// Keep the results of FUNCTION's background jobs for SECONDS after they end, for GET_RESULT (polygear extension; repeatable)
    #[arg(long = "retain", value_name = "FUNCTION=SECONDS", value_parser = function_seconds)]
    retain: Vec<(String, u32)>,

    /// After a job of FUNCTION with a unique key completes, keep the key reserved with its result for SECONDS: resubmissions get the finished job instead of running again (polygear extension; repeatable)
    #[arg(long = "unique-window", value_name = "FUNCTION=SECONDS", value_parser = function_seconds)]
    unique_window: Vec<(String, u32)>,

    /// Most bytes of retained results and unique windows kept; beyond it the entries closest to expiry are dropped
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    retain_max_bytes: usize,
    /// A periodic job, 'NAME=CRON=FUNCTION[=DATA]' (repeatable): at each occurrence of the cron expression (UTC; 5 fields, 6 with seconds first, or @hourly etc.) submit a background job to FUNCTION with unique NAME@<unix time>; the last firing is kept in the SQLite queue
    #[arg(long = "schedule", value_name = "NAME=CRON=FUNCTION[=DATA]")]
    schedule: Vec<String>,

    /// On a CAN_DO_TIMEOUT expiry requeue the job like gearmand (default: fail it to its clients)
    #[arg(long)]
    timeout_requeue: bool,

    /// How long a worker's GRAB_JOB that finds no job waits for one before NO_JOB, in milliseconds (0: answer at once, like gearmand; at most 1000)
    #[arg(long, value_name = "MS", default_value_t = 1)]
    grab_wait: u64,

    /// Speak TLS on every port (no plain-text connection is accepted; gearmand's --ssl)
    #[arg(long)]
    ssl: bool,

    /// PEM file of the CA that signs client certificates (env GEARMAND_CA_CERTIFICATE overrides it, as in gearmand)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssl/certs/gearmand-ca.pem"
    )]
    ssl_ca_file: PathBuf,

    /// The server's PEM certificate (env GEARMAND_SERVER_PEM overrides it)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssl/certs/gearmand.pem"
    )]
    ssl_certificate: PathBuf,

    /// The server's PEM private key (env GEARMAND_SERVER_KEY overrides it)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssl/certs/gearmand.key"
    )]
    ssl_key: PathBuf,

    /// With --ssl: require a client certificate signed by --ssl-ca-file (mutual TLS)
    #[arg(long)]
    ssl_verify_client: bool,

    /// Largest accepted packet payload in bytes
    #[arg(long, value_name = "BYTES", default_value_t = polygear::protocol::DEFAULT_MAX_PACKET)]
    max_packet: usize,

    /// Unsent output one connection may hold before it is dropped
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::default().max_output)]
    max_output: usize,

    /// Memory for all connections' unsent output and unparsed input together; past it the connections holding the most are dropped (logged, and counted by the admin `metrics` command)
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::default().max_buffered)]
    max_buffered: usize,

    /// Functions one connection may register (CAN_DO beyond it gets ERROR TOO_MANY_FUNCTIONS); 0 = no limit
    #[arg(long, value_name = "N", default_value_t = ServerConfig::default().max_worker_functions)]
    max_worker_functions: usize,

    /// Idle functions (no job, no worker) kept listed by `status`; the longest idle are forgotten beyond it; 0 = keep all, like gearmand
    #[arg(long, value_name = "N", default_value_t = ServerConfig::default().max_idle_functions)]
    max_idle_functions: usize,

    /// Retry policy of a function's failed background jobs: FUNCTION=ATTEMPTS[:BACKOFF_MS[:MAX_DELAY_MS]] (runs in all; backoff default 1000 ms, doubled per failure, capped at MAX_DELAY_MS, default 1 hour, plus up to 25% jitter); repeatable; jobs whose attempts run out go to the dead set
    #[arg(long = "retry", value_name = "FUNC=N[:MS[:MAX_MS]]", value_parser = polygear_server::parse_retry_flag)]
    retry: Vec<(String, polygear_server::RetryPolicy)>,

    /// Most records in the dead set (the oldest are dropped beyond it); 0 = no limit
    #[arg(long, value_name = "N", default_value_t = ServerConfig::default().dead_max)]
    dead_max: usize,

    /// Dead records older than this many seconds are dropped; 0 = keep them
    #[arg(long, value_name = "SECONDS", default_value_t = ServerConfig::default().dead_max_age.as_secs())]
    dead_max_age: u64,

    /// Most bytes of payloads (data, unique, error) kept in the dead set (the oldest are dropped beyond it); 0 = no limit
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::default().dead_max_bytes)]
    dead_max_bytes: usize,
}

fn level_filter(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_uppercase().as_str() {
        "FATAL" | "ALERT" | "CRITICAL" | "ERROR" => "error",
        "WARNING" | "WARN" => "warn",
        "NOTICE" | "INFO" => "info",
        "DEBUG" => "debug",
        "TRACE" => "trace",
        _ => return None,
    })
}

fn init_logging(dest: &str, level: &'static str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("polygear_server={level},polygeard={level}"))
    });
    match dest {
        "none" => Ok(()),
        "stderr" => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            Ok(())
        }
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {path}: {e}"))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
            Ok(())
        }
    }
}

/// `--ssl`'s files, gearmand's environment variables taking precedence.
fn tls_config(args: &Args) -> Option<TlsConfig> {
    if !args.ssl {
        if args.ssl_verify_client {
            eprintln!("polygeard: --ssl-verify-client has no effect without --ssl");
        }
        return None;
    }
    let file = |var: &str, flag: &PathBuf| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| flag.clone())
    };
    Some(TlsConfig {
        cert_file: file("GEARMAND_SERVER_PEM", &args.ssl_certificate),
        key_file: file("GEARMAND_SERVER_KEY", &args.ssl_key),
        ca_file: Some(file("GEARMAND_CA_CERTIFICATE", &args.ssl_ca_file)),
        verify_clients: args.ssl_verify_client,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(level) = level_filter(&args.verbose) else {
        eprintln!("polygeard: unknown --verbose level {:?}", args.verbose);
        return ExitCode::from(2);
    };
    if let Err(e) = init_logging(&args.log_file, level) {
        eprintln!("polygeard: {e}");
        return ExitCode::from(2);
    }
    let port = args.port.unwrap_or_else(|| {
        std::env::var("GEARMAND_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(4730)
    });
    if !(args.queue_lease.is_finite() && (0.0..=86400.0).contains(&args.queue_lease)) {
        eprintln!("polygeard: --queue-lease must be between 0 and 86400 seconds");
        return ExitCode::from(2);
    }
    let lease = (args.queue_lease > 0.0).then(|| Lease {
        server_id: args
            .server_id
            .clone()
            .unwrap_or_else(|| format!("{}:{port}", polygear_server::hostname())),
        duration: std::time::Duration::from_secs_f64(args.queue_lease),
    });
    let mut schedules = Vec::new();
    for flag in &args.schedule {
        match polygear_server::ScheduleSpec::parse_flag(flag) {
            Ok(s) => schedules.push(s),
            Err(e) => {
                eprintln!("polygeard: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let queue = match args.queue_type.to_ascii_lowercase().as_str() {
        "builtin" | "memory" | "none" => QueueConfig::Memory,
        "libsqlite3" | "sqlite" | "sqlite3" => QueueConfig::Sqlite {
            path: args.libsqlite3_db.clone(),
        },
        "postgres" | "postgresql" | "libpq" => QueueConfig::Postgres {
            conninfo: args.libpq_conninfo.clone(),
            table: args.libpq_table.clone(),
            lease: lease.clone(),
        },
        "mysql" | "mariadb" => QueueConfig::Mysql {
            host: args.mysql_host.clone(),
            port: args.mysql_port,
            user: args.mysql_user.clone(),
            password: args.mysql_password.clone(),
            db: args.mysql_db.clone(),
            table: args.mysql_table.clone(),
            lease,
        },
        "redis" => QueueConfig::Redis {
            host: args.redis_server.clone(),
            port: args.redis_port,
            password: args.redis_password.clone(),
            prefix: args.redis_prefix.clone(),
        },
        "libmemcached" | "memcached" => QueueConfig::Memcached {
            servers: args.libmemcached_servers.clone(),
            prefix: args.libmemcached_prefix.clone(),
        },
        other => {
            eprintln!(
                "polygeard: unknown queue type {other:?} (use libsqlite3, postgres, mysql, redis, libmemcached or builtin)"
            );
            return ExitCode::from(2);
        }
    };
    let mut http = args.http_port.is_some();
    for name in &args.protocol {
        match name.to_ascii_lowercase().as_str() {
            "http" => http = true,
            other => {
                eprintln!(
                    "polygeard: unknown protocol {other:?} for -r/--protocol (only http exists)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let http_port = http.then(|| args.http_port.unwrap_or(8080));
    let config = ServerConfig {
        listen: args.listen.clone(),
        port,
        http_port,
        backlog: args.backlog,
        queue,
        job_retries: args.job_retries,
        worker_wakeup: args.worker_wakeup,
        round_robin: args.round_robin,
        job_handle_prefix: args.job_handle_prefix.clone(),
        max_packet: args.max_packet,
        max_output: args.max_output,
        max_buffered: args.max_buffered,
        max_worker_functions: args.max_worker_functions,
        max_idle_functions: args.max_idle_functions,
        allow_shutdown: args.allow_shutdown,
        exceptions: args.exceptions,
        keepalive: args.keepalive,
        verbose: args.verbose.to_ascii_uppercase(),
        timeout_requeue: args.timeout_requeue,
        grab_wait: std::time::Duration::from_millis(args.grab_wait),
        tls: tls_config(&args),
        admin_token: args
            .admin_token
            .clone()
            .or_else(|| std::env::var("POLYGEARD_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty()),
        retain: args.retain.clone(),
        unique_windows: args.unique_window.clone(),
        retain_max_bytes: args.retain_max_bytes,
        retry_policies: args.retry.clone(),
        dead_max: args.dead_max,
        dead_max_age: std::time::Duration::from_secs(args.dead_max_age),
        dead_max_bytes: args.dead_max_bytes,
        schedules,
        ..ServerConfig::default()
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = match polygear_server::tune_runtime(rt.enable_all()).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("polygeard: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // The pid file exists before the port accepts connections.
        if let Some(p) = &args.pid_file {
            if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
                eprintln!("polygeard: cannot write pid file {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("polygeard: {e}");
                if let Some(p) = &args.pid_file {
                    let _ = std::fs::remove_file(p);
                }
                return ExitCode::FAILURE;
            }
        };
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::user_defined1()),
            signal(SignalKind::hangup()),
        ) else {
            eprintln!("polygeard: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1: graceful shutdown");
                    server.begin_graceful_shutdown();
                }
                _ = hup.recv() => {
                    // gearmand reopens its log here; our log file is opened in
                    // append mode once, so SIGHUP must simply not kill us.
                    tracing::info!("SIGHUP ignored");
                }
                _ = server.stopped() => break,
            }
        }
        server.shutdown().await;
        if let Some(p) = &args.pid_file {
            let _ = std::fs::remove_file(p);
        }
        ExitCode::SUCCESS
    })
}

/// `FUNCTION=SECONDS` of `--retain` and `--unique-window`.
fn function_seconds(s: &str) -> Result<(String, u32), String> {
    let (f, secs) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected FUNCTION=SECONDS, got {s:?}"))?;
    if f.is_empty() {
        return Err("the function name is empty".into());
    }
    let secs = secs
        .parse::<u32>()
        .map_err(|_| format!("SECONDS must be a whole number, got {secs:?}"))?;
    Ok((f.to_string(), secs))
}
