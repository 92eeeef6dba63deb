//! The worker process the kill-workers scenario SIGKILLs: a polygear [`Worker`] that
//! runs jobs whose data is `KIND:MILLISECONDS` (sleeps that long: the job's "work"),
//! and records every step in a log shared by all workers, one `write(2)` per line on
//! an `O_APPEND` file (so the lines of all workers are in one global order):
//!
//! - `S UNIQUE PID` when the job starts,
//! - `P UNIQUE PID` when the work is done, right before WORK_COMPLETE is sent,
//! - `C UNIQUE PID` after WORK_COMPLETE was written.
//!
//! A kill between `S` and `P` loses the job for sure (the server must run it again or
//! fail it after its retry limit); one between `P` and `C` may or may not have got the
//! result out. The result is the worker's pid. Exits when its parent goes away.
//!
//! Usage: `chaos-worker --server HOST:PORT --function NAME --log FILE [--concurrency N]`

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use polygear::{ServerAddr, Worker, WorkerOptions};

fn main() {
    let mut server = None;
    let mut function = None;
    let mut log = None;
    let mut concurrency = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--server" => server = Some(value()),
            "--function" => function = Some(value()),
            "--log" => log = Some(value()),
            "--concurrency" => concurrency = value().parse().expect("--concurrency N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let server: ServerAddr = server
        .expect("--server")
        .parse()
        .expect("--server HOST:PORT");
    let function = function.expect("--function");
    let log = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log.expect("--log"))
            .expect("open the log"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        // Orphaned (the test died): stop, instead of reconnecting forever.
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                // SAFETY: as above.
                if unsafe { libc::getppid() } != parent {
                    std::process::exit(3);
                }
            }
        });
        let worker = Worker::new(WorkerOptions {
            servers: vec![server],
            concurrency,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..Default::default()
        })
        .expect("worker options");
        worker.register(&function, None).expect("register");
        let pid = std::process::id();
        worker
            .run(move |job| {
                let log = log.clone();
                async move {
                    let unique = job.unique().to_string();
                    let millis: u64 = std::str::from_utf8(job.data())
                        .ok()
                        .and_then(|d| d.rsplit(':').next())
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(0);
                    line(&log, &format!("S {unique} {pid}\n"));
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    line(&log, &format!("P {unique} {pid}\n"));
                    match job.complete(pid.to_string()) {
                        Ok(()) => line(&log, &format!("C {unique} {pid}\n")),
                        Err(e) => line(&log, &format!("E {unique} {pid} {e}\n")),
                    }
                }
            })
            .await
            .expect("worker run");
    });
}

/// One line, one write(2) on the O_APPEND log.
fn line(log: &File, text: &str) {
    let mut f: &File = log;
    f.write_all(text.as_bytes()).expect("write the log");
}
