//! Helpers for the end-to-end tests: run `polygear` and the C tools with
//! deadlines, keep background workers that are killed on drop, and read the
//! server's `status` over the text protocol (independently of our admin code).

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use polygear_interop::{free_port, which, ServerKind, TestServer};

/// Longest time any single command in a test may run.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The servers to test against (POLYGEAR_TEST_SERVERS), never empty.
pub fn kinds() -> Vec<ServerKind> {
    let k = ServerKind::selected();
    assert!(!k.is_empty(), "no job server selected/available");
    k
}

/// `polygear` with `-h 127.0.0.1 -p PORT` (when `server` is given) and a clean environment.
pub fn polygear(server: Option<&TestServer>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_polygear"));
    c.env_remove("GEARMAN_SERVER");
    if let Some(s) = server {
        c.args(["-h", "127.0.0.1", "-p", &s.port.to_string()]);
    }
    c
}

/// `polygear admin -h 127.0.0.1 -p PORT ARGS…`.
pub fn admin(server: &TestServer, args: &[&str]) -> Out {
    let mut c = polygear(None);
    c.args(["admin", "-h", "127.0.0.1", "-p", &server.port.to_string()])
        .args(args);
    run(&mut c, b"")
}

/// The C `gearman` tool pointed at `server`.
pub fn gearman(server: &TestServer) -> Command {
    let mut c =
        Command::new(which("gearman").expect("the C gearman tool (gearman-tools) is installed"));
    c.env_remove("GEARMAN_SERVER");
    c.args(["-h", "127.0.0.1", "-p", &server.port.to_string()]);
    c
}

/// What a finished command did.
#[derive(Debug)]
pub struct Out {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Raw stdout.
    pub stdout: Vec<u8>,
    /// Stderr as text.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Out {
    /// Stdout as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn temp_file(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "polygear-cli-test-{}-{n}-{tag}",
        std::process::id()
    ))
}

/// A child process whose stdout/stderr go to temp files; killed on drop.
pub struct Proc {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl Proc {
    /// Starts `cmd`, feeding `stdin` (then closing it) from a thread.
    pub fn start(cmd: &mut Command, stdin: &[u8]) -> Proc {
        let out = temp_file("out");
        let err = temp_file("err");
        cmd.stdin(Stdio::piped())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let mut pipe = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
        Proc {
            child: Some(child),
            out,
            err,
            started,
        }
    }

    /// Waits (at most `limit`, else kills it and panics) and collects the output.
    pub fn finish_within(mut self, limit: Duration) -> Out {
        let mut child = self.child.take().unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if self.started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "command did not finish within {limit:?}; stdout {:?} stderr {:?}",
                    String::from_utf8_lossy(&read(&self.out)),
                    String::from_utf8_lossy(&read(&self.err))
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Out {
            code: status.code(),
            stdout: read(&self.out),
            stderr: String::from_utf8_lossy(&read(&self.err)).into_owned(),
            elapsed: self.started.elapsed(),
        }
    }

    /// [`Proc::finish_within`] with the default deadline.
    pub fn finish(self) -> Out {
        self.finish_within(DEADLINE)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
    }
}

fn read(p: &PathBuf) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

/// Runs `cmd` with `stdin` to completion (bounded by [`DEADLINE`]).
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Out {
    Proc::start(cmd, stdin).finish()
}

/// One admin text command over a plain socket; returns the reply up to the
/// `.` line (listings) or the first line.
pub fn raw_admin(server: &TestServer, command: &str, listing: bool) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf);
        if (listing && (text == ".\n" || text.ends_with("\n.\n")))
            || (!listing && text.ends_with('\n'))
        {
            return text.into_owned();
        }
        let n = match s.read(&mut chunk) {
            // A signal (a child process ending) interrupted the wait: read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        };
        assert!(n > 0, "server closed the admin connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `status` as (function, total, running, workers) rows.
pub fn status(server: &TestServer) -> Vec<(String, u64, u64, u64)> {
    raw_admin(server, "status", true)
        .lines()
        .filter(|l| *l != ".")
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| {
                (
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                )
            })
        })
        .collect()
}

/// Polls `status` until `pred(total, running, workers)` holds for `function`.
pub fn wait_status(
    server: &TestServer,
    function: &str,
    what: &str,
    pred: impl Fn(u64, u64, u64) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = status(server);
        if rows
            .iter()
            .any(|(f, t, r, w)| f == function && pred(*t, *r, *w))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} on {function}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until at least `n` workers registered `function`.
pub fn wait_workers(server: &TestServer, function: &str, n: u64) {
    wait_status(server, function, "workers", |_, _, w| w >= n);
}

/// Waits until `function` has `n` jobs (waiting + running).
pub fn wait_jobs(server: &TestServer, function: &str, n: u64) {
    wait_status(server, function, "jobs", |t, _, _| t == n);
}

/// Starts `polygear -w` with the given arguments against `server` and waits until it registered `function`.
pub fn start_worker(server: &TestServer, function: &str, args: &[&str]) -> Proc {
    let mut c = polygear(Some(server));
    c.arg("-w").args(["-f", function]).args(args);
    let p = Proc::start(&mut c, b"");
    wait_workers(server, function, 1);
    p
}

/// Starts the C `gearman -w` with the given arguments and waits until it registered `function`.
pub fn start_c_worker(server: &TestServer, function: &str, args: &[&str]) -> Proc {
    let mut c = gearman(server);
    c.arg("-w").args(["-f", function]).args(args);
    let p = Proc::start(&mut c, b"");
    wait_workers(server, function, 1);
    p
}
