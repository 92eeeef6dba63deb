//! Worker mode: register the `-f` functions and, for each job, either print
//! the workload (no command) or pipe it through a command.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use polygear::{Client, ClientOptions, Job, ServerAddr, TlsOptions, Worker, WorkerOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::fail::{describe, CliError};
use crate::out::{write, Stream};

/// Settings of one worker run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Job servers (the worker connects to all of them).
    pub servers: Vec<ServerAddr>,
    /// Functions to register.
    pub functions: Vec<String>,
    /// Command and arguments; empty: print workloads to stdout.
    pub command: Vec<String>,
    /// `-n` (`Some(false)`) / `-N` (`Some(true)`): stream output lines as WORK_DATA.
    pub lines: Option<bool>,
    /// `-c`: exit after this many jobs.
    pub count: Option<u64>,
    /// `-t`: connect deadline, and exit (timeout) when no job arrives for this long.
    pub timeout: Option<Duration>,
    /// `-S` and its files (`None`: plain TCP).
    pub tls: Option<TlsOptions>,
}

/// How long a finished worker waits for its last packets to be flushed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the worker until `-c` jobs were done (or forever).
pub async fn run(cfg: WorkerConfig) -> Result<(), CliError> {
    let mut opts = WorkerOptions {
        servers: cfg.servers.clone(),
        concurrency: 1,
        tls: cfg.tls.clone(),
        ..WorkerOptions::default()
    };
    if let Some(t) = cfg.timeout {
        opts.connect_timeout = t;
    }
    probe(&cfg.servers, opts.connect_timeout, cfg.tls.as_ref()).await?;
    let worker = Worker::new(opts)?;
    for f in &cfg.functions {
        worker.register(f, None)?;
    }
    let mut done = 0u64;
    let result = loop {
        let next = match cfg.timeout {
            None => worker.next_job().await,
            Some(t) => match tokio::time::timeout(t, worker.next_job()).await {
                Ok(j) => j,
                Err(_) => {
                    break Err(CliError::Timeout(format!(
                        "timed out after {} ms waiting for a job",
                        t.as_millis()
                    )))
                }
            },
        };
        let Some(job) = next else { break Ok(()) };
        done += 1;
        let last = cfg.count.is_some_and(|c| done >= c);
        if last {
            // Take no further job while this one finishes.
            worker.stop();
        }
        let handle = job.handle().to_string();
        if let Err(e) = process(job, &cfg).await {
            write(
                Stream::Err,
                None,
                format!("polygear: job {handle}: {}\n", describe(&e)).as_bytes(),
            );
        }
        if last {
            break Ok(());
        }
    };
    worker.stop();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, worker.shutdown()).await;
    result
}

/// Fails fast with one clear line when no server can be reached at start;
/// later outages are survived by the worker's reconnect logic.
///
/// The probe is an ECHO round trip through a client with the worker's
/// settings, not just a connect: a server that refuses our TLS client
/// certificate says so only after the handshake, at the first read, and a
/// TLS port answers a plain peer only once it has sent something; either
/// way a worker would otherwise keep reconnecting without a word.
async fn probe(
    servers: &[ServerAddr],
    timeout: Duration,
    tls: Option<&TlsOptions>,
) -> Result<(), CliError> {
    let mut last = None;
    for s in servers {
        let client = Client::new(ClientOptions {
            servers: vec![s.clone()],
            connect_timeout: timeout,
            submit_timeout: timeout,
            tls: tls.cloned(),
            ..ClientOptions::default()
        })?;
        let reached = client.echo(Bytes::from_static(b"probe")).await;
        client.close().await;
        match reached {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => Err(CliError::Usage("no server given".into())),
    }
}

/// Handles one job and ends it (complete or fail).
async fn process(job: Job, cfg: &WorkerConfig) -> polygear::Result<()> {
    let Some((program, args)) = cfg.command.split_first() else {
        write(Stream::Out, None, job.data());
        return job.complete(Bytes::new());
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let msg = crate::fail::strip_os_error(&e.to_string());
            write(
                Stream::Err,
                None,
                format!("polygear: cannot run {program}: {msg}\n").as_bytes(),
            );
            return job.fail();
        }
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let data = job.data().clone();
    // Feed stdin and drain stdout at the same time, so a payload of any size
    // flows through commands like `cat` without both sides blocking.
    let feed = async move {
        // A command that exits without reading its input (e.g. `false`) closes
        // the pipe early; that is not an error of the job.
        let _ = stdin.write_all(&data).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
    };
    let drain = async {
        match cfg.lines {
            None => {
                let mut out = Vec::new();
                let mut stdout = stdout;
                stdout.read_to_end(&mut out).await.map(|_| out)
            }
            Some(strip) => {
                let mut reader = BufReader::new(stdout);
                loop {
                    let mut line = Vec::new();
                    if reader.read_until(b'\n', &mut line).await? == 0 {
                        break Ok(Vec::new());
                    }
                    if strip && line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if let Err(e) = job.send_data(line) {
                        break Err(std::io::Error::other(describe(&e)));
                    }
                }
            }
        }
    };
    let ((), output) = tokio::join!(feed, drain);
    let status = child.wait().await;
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            let msg = crate::fail::strip_os_error(&e.to_string());
            write(
                Stream::Err,
                None,
                format!("polygear: reading output of {program}: {msg}\n").as_bytes(),
            );
            return job.fail();
        }
    };
    match status {
        Ok(s) if s.success() => job.complete(output),
        _ => {
            if !output.is_empty() {
                job.send_data(output)?;
            }
            job.fail()
        }
    }
}
