//! Client mode: submit each workload to every `-f` function and print what
//! the workers send back, exactly like the C `gearman` tool.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use polygear::{
    Client, ClientOptions, Error, ErrorKind, JobEvent, JobResult, Priority, ServerAddr,
    SubmitOptions, TlsOptions,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::task::JoinSet;

use crate::fail::{describe, CliError};
use crate::out::{write, Stream};

/// Where the workloads come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Each data word is one workload.
    Words(Vec<String>),
    /// `-s`: one empty workload.
    Empty,
    /// All of stdin is one workload.
    Stdin,
    /// `-n` / `-N`: one workload per stdin line; `true` strips the newline.
    Lines(bool),
}

/// Settings of one client run.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Job servers.
    pub servers: Vec<ServerAddr>,
    /// Functions; every workload goes to each of them.
    pub functions: Vec<String>,
    /// Workload source.
    pub input: Input,
    /// `-b`.
    pub background: bool,
    /// `-I` / `-L`.
    pub priority: Priority,
    /// `-u`.
    pub unique: Option<String>,
    /// `-t`: connect/submit deadline and longest silence while a job runs.
    pub timeout: Option<Duration>,
    /// `-c`: submit at most this many workloads.
    pub count: Option<u64>,
    /// `-v`.
    pub verbose: bool,
    /// `-P`.
    pub prefix: bool,
    /// `-S` and its files (`None`: plain TCP).
    pub tls: Option<TlsOptions>,
    /// `--retain` (background jobs, polygeard only).
    pub retain: Option<Duration>,
}

/// `--result HANDLE`: prints the retained result raw; a job without one
/// (queued, running, unknown) prints its state on stderr and fails, as does
/// a failed job.
pub async fn fetch_result(
    servers: Vec<ServerAddr>,
    tls: Option<TlsOptions>,
    timeout: Option<Duration>,
    handle: &str,
) -> Result<(), CliError> {
    let mut opts = ClientOptions {
        servers,
        tls,
        ..ClientOptions::default()
    };
    if let Some(t) = timeout {
        opts.connect_timeout = t;
        opts.submit_timeout = t;
    }
    let client = Client::new(opts)?;
    let state = client.result_state(handle).await;
    client.close().await;
    match state? {
        JobResult::Complete(data) => {
            write(Stream::Out, None, &data);
            Ok(())
        }
        JobResult::Exception(msg) => {
            write(Stream::Err, None, &msg);
            if !msg.ends_with(b"\n") {
                write(Stream::Err, None, b"\n");
            }
            Err(CliError::Failed(Some("Job failed".into())))
        }
        JobResult::Failed => Err(CliError::Failed(Some("Job failed".into()))),
        other => Err(CliError::Failed(Some(format!(
            "{handle}: {}",
            other.name()
        )))),
    }
}

/// Runs the client; `Err(Failed)` when at least one job failed.
pub async fn run(cfg: ClientConfig) -> Result<(), CliError> {
    let mut opts = ClientOptions {
        servers: cfg.servers.clone(),
        tls: cfg.tls.clone(),
        ..ClientOptions::default()
    };
    if let Some(t) = cfg.timeout {
        opts.connect_timeout = t;
        opts.submit_timeout = t;
    }
    let client = Client::new(opts)?;
    let mut any_failed = false;
    let mut submitted = 0u64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    let result = async {
        match &cfg.input {
            Input::Words(words) => {
                for w in words
                    .iter()
                    .take(usize::try_from(limit).unwrap_or(usize::MAX))
                {
                    any_failed |=
                        workload(&client, &cfg, Bytes::copy_from_slice(w.as_bytes())).await?;
                }
            }
            Input::Empty => {
                any_failed |= workload(&client, &cfg, Bytes::new()).await?;
            }
            Input::Stdin => {
                let mut data = Vec::new();
                tokio::io::stdin().read_to_end(&mut data).await?;
                any_failed |= workload(&client, &cfg, Bytes::from(data)).await?;
            }
            Input::Lines(strip) => {
                let mut reader = BufReader::new(tokio::io::stdin());
                while submitted < limit {
                    let mut line = Vec::new();
                    if reader.read_until(b'\n', &mut line).await? == 0 {
                        break;
                    }
                    if *strip && line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    submitted += 1;
                    any_failed |= workload(&client, &cfg, Bytes::from(line)).await?;
                }
            }
        }
        Ok::<(), CliError>(())
    }
    .await;
    client.close().await;
    result?;
    if any_failed {
        Err(CliError::Failed(None))
    } else {
        Ok(())
    }
}

/// Submits one workload to every function concurrently and waits for all
/// of them; `Ok(true)` if a job failed.
async fn workload(client: &Client, cfg: &ClientConfig, data: Bytes) -> Result<bool, CliError> {
    let mut set = JoinSet::new();
    for function in &cfg.functions {
        let client = client.clone();
        let function = function.clone();
        let data = data.clone();
        let opts = SubmitOptions {
            unique: cfg
                .unique
                .as_ref()
                .map(|u| Bytes::copy_from_slice(u.as_bytes())),
            priority: cfg.priority,
            retain: cfg.retain,
            ..SubmitOptions::default()
        };
        let (background, verbose, timeout) = (cfg.background, cfg.verbose, cfg.timeout);
        let prefix = cfg.prefix.then(|| function.clone());
        set.spawn(async move {
            if background {
                let what = format!("submitting a background job to {function}");
                let handle = deadline(
                    timeout,
                    &what,
                    client.submit_background(&function, data, opts),
                )
                .await?;
                if verbose {
                    write(
                        Stream::Out,
                        None,
                        format!("Task created: {handle}\n").as_bytes(),
                    );
                }
                Ok(false)
            } else {
                foreground(
                    &client,
                    &function,
                    data,
                    opts,
                    verbose,
                    timeout,
                    prefix.as_deref(),
                )
                .await
            }
        });
    }
    let mut failed = false;
    let mut first_err = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(f)) => failed |= f,
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(join) => {
                first_err.get_or_insert(CliError::Runtime(format!(
                    "job task ended abnormally: {join}"
                )));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(failed),
    }
}

/// Runs `fut`, failing with a timeout error after `timeout` if one is set.
async fn deadline<T>(
    timeout: Option<Duration>,
    what: &str,
    fut: impl Future<Output = polygear::Result<T>>,
) -> Result<T, CliError> {
    match timeout {
        None => Ok(fut.await?),
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(CliError::Timeout(format!(
                "timed out after {} ms {what}",
                t.as_millis()
            ))),
        },
    }
}

/// One foreground job: prints its events as they arrive; `Ok(true)` if it failed.
async fn foreground(
    client: &Client,
    function: &str,
    data: Bytes,
    opts: SubmitOptions,
    verbose: bool,
    timeout: Option<Duration>,
    prefix: Option<&str>,
) -> Result<bool, CliError> {
    let what = format!("submitting a job to {function}");
    let mut job = deadline(timeout, &what, client.submit_job(function, data, opts)).await?;
    if verbose {
        write(
            Stream::Out,
            None,
            format!("Task created: {}\n", job.handle()).as_bytes(),
        );
    }
    let what = format!("waiting for job {} ({function})", job.handle());
    loop {
        let next = match timeout {
            None => job.next_event().await,
            Some(t) => match tokio::time::timeout(t, job.next_event()).await {
                Ok(n) => n,
                Err(_) => {
                    return Err(CliError::Timeout(format!(
                        "timed out after {} ms {what}",
                        t.as_millis()
                    )))
                }
            },
        };
        let event = match next {
            // The stream ended without a final event: nothing more will come.
            None => return Ok(false),
            Some(Ok(ev)) => ev,
            Some(Err(Error::JobFailed { .. } | Error::JobCancelled { .. })) => JobEvent::Failed,
            Some(Err(Error::JobException { message, .. })) => {
                JobEvent::Exception(Bytes::from(message))
            }
            Some(Err(e)) => return Err(job_error(&e, &what)),
        };
        match event {
            JobEvent::Data(d) => write(Stream::Out, prefix, &d),
            JobEvent::Complete(d) => {
                write(Stream::Out, prefix, &d);
                return Ok(false);
            }
            JobEvent::Warning(d) => write(Stream::Err, prefix, &d),
            JobEvent::Status {
                numerator,
                denominator,
            } => {
                let pct = if denominator == 0 {
                    0
                } else {
                    u64::from(numerator) * 100 / u64::from(denominator)
                };
                write(Stream::Out, prefix, format!("{pct}% Complete\n").as_bytes());
            }
            JobEvent::Failed => {
                // polygeard says why when it failed the job itself.
                let line = match job.fail_reason() {
                    Some(reason) => format!("Job failed: {reason}\n"),
                    None => "Job failed\n".to_owned(),
                };
                write(Stream::Err, prefix, line.as_bytes());
                return Ok(true);
            }
            JobEvent::Exception(msg) => {
                let mut m = msg.to_vec();
                if m.last() != Some(&b'\n') {
                    m.push(b'\n');
                }
                write(Stream::Err, prefix, &m);
                return Ok(true);
            }
        }
    }
}

/// A library error while a job runs, worded with what we were doing.
fn job_error(e: &Error, what: &str) -> CliError {
    match e.kind() {
        // A job's own deadline: the core's message says which and how long.
        ErrorKind::Timeout if matches!(e, Error::JobTimeout { .. }) => {
            CliError::Timeout(e.to_string())
        }
        ErrorKind::Timeout => CliError::Timeout(format!("timed out {what}")),
        _ => CliError::Runtime(format!("{} ({what})", describe(e))),
    }
}
