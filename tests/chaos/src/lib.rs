//! The fault and soak suite's harness (tests/chaos): real `polygeard` processes
//! ([`Daemon`]) that the scenarios kill, restart, put behind a partition ([`netns`]) or a
//! fault proxy ([`proxy`]), or on a full disk ([`mountns`]); the scenario modes (short
//! by default, long with `CHAOS_LONG=1`), a seeded random source, statistics, and the
//! figures each scenario reports (printed, and appended to `$CHAOS_SUMMARY_FILE` for
//! scripts/test-chaos.sh).
//!
//! The scenarios themselves are the files in `tests/`; the worker process some of them
//! kill is `src/bin/chaos-worker.rs`.

use std::fmt::Display;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use polygear::ServerAddr;

pub mod mountns;
pub mod netns;
pub mod proxy;

// ---------------------------------------------------------------------------
// Modes and figures

/// The long form (`CHAOS_LONG=1`, set by `scripts/test-chaos.sh --long`).
pub fn long() -> bool {
    std::env::var("CHAOS_LONG").is_ok_and(|v| v == "1")
}

/// `short` in the short form, `long` in the long form.
pub fn pick<T>(short: T, long_value: T) -> T {
    if long() {
        long_value
    } else {
        short
    }
}

/// Reports one figure line of `scenario`: printed to stderr (shown with
/// `--nocapture` or when the test fails) and appended to `$CHAOS_SUMMARY_FILE`.
pub fn figure(scenario: &str, line: impl Display) {
    let text = format!("{scenario}: {line}");
    eprintln!("[chaos] {text}");
    if let Ok(path) = std::env::var("CHAOS_SUMMARY_FILE") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{text}");
        }
    }
}

/// Reports that `scenario` could not run here, and why (never a silent pass).
pub fn skip(scenario: &str, reason: impl Display) {
    figure(scenario, format!("SKIPPED: {reason}"));
}

/// Failed expectations collected by a scenario, so it reports every one (and its
/// figures) before failing, instead of stopping at the first.
#[derive(Default)]
pub struct Violations {
    list: Mutex<Vec<String>>,
}

impl Violations {
    /// A new, empty list.
    pub fn new() -> Violations {
        Violations::default()
    }

    /// Records a violation unless `ok`.
    pub fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.add(what());
        }
    }

    /// Records a violation.
    pub fn add(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("[chaos] VIOLATION: {what}");
        self.list.lock().unwrap().push(what);
    }

    /// How many were recorded.
    pub fn len(&self) -> usize {
        self.list.lock().unwrap().len()
    }

    /// None recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reports them as figures of `scenario` and panics if there are any.
    pub fn finish(&self, scenario: &str) {
        let list = self.list.lock().unwrap().clone();
        if list.is_empty() {
            figure(scenario, "PASSED");
            return;
        }
        for v in &list {
            figure(scenario, format!("VIOLATION: {v}"));
        }
        figure(scenario, format!("FAILED ({} violations)", list.len()));
        panic!(
            "{scenario}: {} violation(s):\n  {}",
            list.len(),
            list.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------
// Random numbers (seeded, reproducible: CHAOS_SEED)

/// A small xorshift64* generator: reproducible runs without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The scenario's generator: seeded from `CHAOS_SEED` or the clock; the seed is
    /// reported so a failing run can be repeated.
    pub fn for_scenario(scenario: &str) -> Rng {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    ^ ((std::process::id() as u64) << 32)
            });
        figure(
            scenario,
            format!("seed {seed} (CHAOS_SEED={seed} repeats this run)"),
        );
        Rng::new(seed)
    }

    /// A generator with this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// An independent generator derived from this one.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64() ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// A duration uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

// ---------------------------------------------------------------------------
// Statistics

/// The `p`-quantile (0..=1) of sorted samples (nearest rank); zero when empty.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Latency samples from several tasks.
#[derive(Default)]
pub struct Latencies {
    samples: Mutex<Vec<Duration>>,
}

impl Latencies {
    /// An empty set.
    pub fn new() -> Latencies {
        Latencies::default()
    }

    /// Adds one sample.
    pub fn add(&self, d: Duration) {
        self.samples.lock().unwrap().push(d);
    }

    /// The samples, sorted.
    pub fn sorted(&self) -> Vec<Duration> {
        let mut v = self.samples.lock().unwrap().clone();
        v.sort();
        v
    }

    /// Takes the samples out (sorted), leaving the set empty.
    pub fn take_sorted(&self) -> Vec<Duration> {
        let mut v = std::mem::take(&mut *self.samples.lock().unwrap());
        v.sort();
        v
    }
}

// ---------------------------------------------------------------------------
// Processes

/// The resident set size of process `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Raises this process's RLIMIT_NOFILE soft limit to `want` (or the hard limit, if
/// lower); children inherit it. Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < want as libc::rlim_t {
            let target = (want as libc::rlim_t).min(lim.rlim_max);
            let new = libc::rlimit {
                rlim_cur: target,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                lim.rlim_cur = target;
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on 64-bit Linux only
        let soft = lim.rlim_cur as u64;
        soft
    }
}

/// The workspace root (this crate is tests/chaos).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn newest_source(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                newest_source(&e.path(), newest);
            }
        }
    } else if let Ok(t) = meta.modified() {
        if newest.as_ref().is_none_or(|(n, _)| t > *n) {
            *newest = Some((t, path.to_path_buf()));
        }
    }
}

/// A binary of this workspace (`polygeard`, `polygear`): from `$POLYGEAR_BIN_DIR` if
/// set (scripts/test-chaos.sh points it at the release build), else the cargo target
/// folder's debug or release build. Panics if it is missing or older than the sources
/// it is built from: a stale binary would test old code.
pub fn workspace_bin(name: &str) -> PathBuf {
    let bin = polygear_test_support::polygear_bin(name).unwrap_or_else(|| {
        panic!(
            "{name} is not built: run `cargo build -p polygear-server -p polygear-cli` \
             (or scripts/test-chaos.sh, which builds the release binaries), or set POLYGEAR_BIN_DIR"
        )
    });
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    let root = workspace_root();
    let mut newest = None;
    let sources: &[&str] = match name {
        "polygeard" => &[
            "core/src",
            "core/Cargo.toml",
            "server/src",
            "server/Cargo.toml",
        ],
        _ => &["core/src", "core/Cargo.toml", "cli/src", "cli/Cargo.toml"],
    };
    for s in sources {
        newest_source(&root.join(s), &mut newest);
    }
    if let Some((t, file)) = newest {
        assert!(
            t <= built,
            "{} is older than {}: rebuild it (cargo build [--release] -p polygear-server -p polygear-cli; \
             scripts/test-chaos.sh does)",
            bin.display(),
            file.display()
        );
    }
    bin
}

/// `polygeard --version` of `bin`, e.g. `polygeard 0.1.0 (release build)`.
pub fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("{}: {e}", bin.display()))
}

/// A `polygeard` process: started (optionally through a wrapper command such as
/// `ip netns exec NS`), SIGKILLed, restarted on the same port and database; killed on
/// drop. Its log goes to a file that restarts append to.
pub struct Daemon {
    /// Name in reports, e.g. `polygeard A`.
    pub name: String,
    /// The address it listens on.
    pub host: String,
    /// Its port.
    pub port: u16,
    program: PathBuf,
    prefix: Vec<String>,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
    /// Whether the port may change when it cannot be bound (loopback daemons).
    port_fixed: bool,
}

impl Daemon {
    /// A polygeard on 127.0.0.1 and a free port with `args` (besides `-L`, `-p`, `-l`),
    /// logging at `level` into `log`; started at once.
    pub fn loopback(name: &str, args: &[&str], level: &str, log: &Path) -> Daemon {
        let mut d = Daemon::new(
            name,
            Vec::new(),
            "127.0.0.1",
            polygear_test_support::free_port(),
            args,
            level,
            log,
        );
        d.port_fixed = false;
        d.start();
        d
    }

    /// A polygeard run through `prefix` (a wrapper command, may be empty) listening on
    /// `host:port`; not started yet.
    pub fn new(
        name: &str,
        prefix: Vec<String>,
        host: &str,
        port: u16,
        args: &[&str],
        level: &str,
        log: &Path,
    ) -> Daemon {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--verbose".to_string(), level.to_string()]);
        Daemon {
            name: name.to_string(),
            host: host.to_string(),
            port,
            program: workspace_bin("polygeard"),
            prefix,
            args: all,
            log: log.to_path_buf(),
            child: None,
            starts: 0,
            port_fixed: true,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(["-L", &self.host, "-p", &self.port.to_string()])
            .arg("-l")
            .arg(&self.log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    }

    /// Starts it and waits until it answers `getpid` with its own pid; returns how
    /// long that took. Panics if it does not come up.
    pub fn start(&mut self) -> Duration {
        assert!(self.child.is_none(), "{} is already running", self.name);
        for _ in 0..5 {
            let t0 = Instant::now();
            let child = self
                .command()
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
            self.child = Some(child);
            self.starts += 1;
            if self.wait_ready(Duration::from_secs(60)) {
                return t0.elapsed();
            }
            self.kill();
            if self.port_fixed {
                break;
            }
            self.port = polygear_test_support::free_port();
        }
        panic!(
            "{} did not start on {}:{} (log: {})",
            self.name,
            self.host,
            self.port,
            self.log.display()
        );
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let addr: SocketAddr = format!("{}:{}", self.host, self.port)
            .parse()
            .expect("numeric address");
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        let want = format!("OK {}", child.id());
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if polygear_test_support::ask_getpid(addr).as_deref() == Some(want.as_str()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// SIGKILL and reap (nothing if it is not running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, then start again with the same flags, port and database; returns the
    /// time from the kill until it answered again.
    pub fn restart(&mut self) -> Duration {
        let t0 = Instant::now();
        self.kill();
        self.start();
        t0.elapsed()
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }

    /// Waits for the process to exit (after a signal); panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return st;
                }
            } else {
                panic!("{} is not running", self.name);
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running (false after it died by itself).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The address clients and workers use.
    pub fn addr(&self) -> ServerAddr {
        ServerAddr::new(self.host.clone(), self.port)
    }

    /// The log so far (all starts).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Server-side views

/// `(total, running)` jobs of `function` from the admin `status` (0, 0 when absent).
pub async fn queued(addr: &ServerAddr, function: &str) -> polygear::Result<(u64, u64)> {
    let mut a = polygear::Admin::connect(addr, Duration::from_secs(5)).await?;
    let rows = a.status().await?;
    Ok(rows
        .iter()
        .find(|r| r.function == function)
        .map_or((0, 0), |r| (r.total, r.running)))
}

/// Waits until `cond` holds (polled every 50 ms); false if `limit` passed first.
pub async fn wait_for<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A multi-thread tokio runtime with `threads` workers for a scenario.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------
// A raw protocol peer that reports a closed connection instead of panicking

/// A binary-protocol connection for checking exact replies where the server might
/// close the connection (tests/support's `Raw` treats that as a test failure).
pub struct Peer {
    stream: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    codec: polygear::protocol::PacketCodec,
    limit: Duration,
}

impl Peer {
    /// Connects to `addr`; every [`Peer::recv`] waits at most `limit`.
    pub async fn connect(addr: &ServerAddr, limit: Duration) -> polygear::Result<Peer> {
        let stream = addr.connect(limit).await?;
        Ok(Peer {
            stream,
            buf: bytes::BytesMut::new(),
            codec: polygear::protocol::PacketCodec::new(64 << 20),
            limit,
        })
    }

    /// Sends one request; `Err` if the connection is gone.
    pub async fn send(&mut self, p: polygear::Packet) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        let wire = p
            .to_bytes(polygear::protocol::Magic::Req)
            .map_err(|e| e.to_string())?;
        self.stream
            .write_all(&wire)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// The next reply packet; `Err` on a closed connection, a timeout or garbage.
    pub async fn recv(&mut self) -> Result<polygear::Packet, String> {
        use polygear::protocol::{Frame, Magic};
        use tokio::io::AsyncReadExt;
        let fut = async {
            loop {
                match self.codec.decode_frame(&mut self.buf) {
                    Ok(Some(Frame::Packet(Magic::Res, p))) => return Ok(p),
                    Ok(Some(other)) => return Err(format!("unexpected frame {other:?}")),
                    Ok(None) => {}
                    Err(e) => return Err(format!("protocol error: {e}")),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) => return Err("the server closed the connection".to_string()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        };
        tokio::time::timeout(self.limit, fut)
            .await
            .unwrap_or_else(|_| Err(format!("no reply within {:?}", self.limit)))
    }

    /// Sends `p` and returns the reply.
    pub async fn ask(&mut self, p: polygear::Packet) -> Result<polygear::Packet, String> {
        self.send(p).await?;
        self.recv().await
    }
}
