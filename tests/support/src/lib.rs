//! What polygear's test suites share (tests/interop, server/tests): free loopback
//! ports, real job server processes ([`TestServer`]: the C `gearmand` from Debian or
//! our `polygeard`) started on them and stopped afterwards, and raw protocol peers
//! that check exact packets: [`raw`] (async, tokio) and [`blocking`] (std sockets).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use polygear::ServerAddr;

pub mod blocking;
pub mod certs;
mod daemon;
pub mod mariadb;
pub mod memcached;
pub mod postgres;
pub mod raw;
pub mod redis;

/// Which job server implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The C gearmand (package `gearman-job-server`).
    Gearmand,
    /// Our polygeard binary.
    Polygeard,
}

impl ServerKind {
    /// Servers selected by `POLYGEAR_TEST_SERVERS` (comma list of
    /// `gearmand`, `polygeard`); default: every one that is installed/built.
    pub fn selected() -> Vec<ServerKind> {
        let wanted = std::env::var("POLYGEAR_TEST_SERVERS").unwrap_or_default();
        let all = [ServerKind::Gearmand, ServerKind::Polygeard];
        if wanted.trim().is_empty() {
            return all.into_iter().filter(|k| k.available()).collect();
        }
        all.into_iter()
            .filter(|k| wanted.split(',').any(|w| w.trim() == k.name()))
            .collect()
    }

    /// `gearmand` or `polygeard`.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Gearmand => "gearmand",
            ServerKind::Polygeard => "polygeard",
        }
    }

    /// Whether the binary exists on this machine.
    pub fn available(self) -> bool {
        self.binary().is_some()
    }

    fn binary(self) -> Option<PathBuf> {
        match self {
            ServerKind::Gearmand => which("gearmand"),
            ServerKind::Polygeard => polygear_bin("polygeard"),
        }
    }
}

/// Finds a program on PATH (and /usr/sbin, where Debian puts gearmand).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Path of a binary built by this workspace (`polygeard`, `polygear`):
/// `$POLYGEAR_BIN_DIR/NAME`, else the cargo target dir of this build.
pub fn polygear_bin(name: &str) -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("POLYGEAR_BIN_DIR") {
        let p = PathBuf::from(dir).join(name);
        return p.is_file().then_some(p);
    }
    let target = option_env!("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join(name))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends the admin `getpid` command to `addr` and returns the reply line.
pub fn ask_getpid(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"getpid\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    Some(line.trim_end().to_string())
}

/// A job server child process on a loopback port; killed on drop.
pub struct TestServer {
    /// Which implementation runs.
    pub kind: ServerKind,
    /// Its port on 127.0.0.1.
    pub port: u16,
    program: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl TestServer {
    /// Starts `kind` on a free port and waits until it accepts connections
    /// (polygeard with its memory queue, `-q builtin`).
    pub fn start(kind: ServerKind) -> TestServer {
        Self::start_with(kind, &[])
    }

    /// Like [`TestServer::start`] with extra command-line flags.
    pub fn start_with(kind: ServerKind, extra: &[&str]) -> TestServer {
        let program = kind
            .binary()
            .unwrap_or_else(|| panic!("{} is not installed/built", kind.name()));
        let mut flags = if kind == ServerKind::Polygeard {
            vec!["-q", "builtin"]
        } else {
            vec![]
        };
        flags.extend_from_slice(extra);
        Self::program(kind, program, free_port(), &flags)
    }

    /// The C gearmand with `extra` flags on a free port, if it is installed.
    pub fn gearmand(extra: &[&str]) -> Option<TestServer> {
        let program = ServerKind::Gearmand.binary()?;
        Some(Self::program(
            ServerKind::Gearmand,
            program,
            free_port(),
            extra,
        ))
    }

    /// Runs `program` (a server of `kind`) on `port` with exactly the flags `extra`
    /// besides the listen address and port (and gearmand's log and pid file); e.g. a
    /// crate's own polygeard
    /// (`env!("CARGO_BIN_EXE_polygeard")`) with a durable queue.
    pub fn program(
        kind: ServerKind,
        program: impl Into<PathBuf>,
        port: u16,
        extra: &[&str],
    ) -> TestServer {
        let mut s = TestServer {
            kind,
            port,
            program: program.into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        s.spawn(false);
        s
    }

    /// Starts the server; if it cannot take the port (a parallel test got it
    /// first) a fresh run picks a new port, unless `keep_port` (restarts).
    fn spawn(&mut self, keep_port: bool) {
        for _ in 0..5 {
            let child = self.command().spawn().expect("spawn job server");
            self.child = Some(child);
            if self.wait_ready() {
                return;
            }
            self.kill();
            if !keep_port {
                self.port = free_port();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not start on port {}", self.kind.name(), self.port);
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        let port = self.port.to_string();
        cmd.args(["-L", "127.0.0.1", "-p", &port]);
        if self.kind == ServerKind::Gearmand {
            let pid = std::env::temp_dir().join(format!("gearmand-test-{}.pid", self.port));
            cmd.arg("-P").arg(pid);
            // Errors to stderr; gearmand takes --verbose once, so a caller that sets
            // it (to compare the admin `verbose` reply) gets no log at all.
            if self.extra.iter().any(|a| a == "--verbose") {
                cmd.args(["-l", "none"]);
            } else {
                cmd.args(["-l", "stderr", "--verbose", "ERROR"]);
            }
        }
        cmd.args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    }

    /// Waits until OUR child answers `getpid` on the port (a plain connect can
    /// be fooled by another process on the port, or by a TCP self-connect).
    /// False if the child exited (e.g. the port was taken).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        let want = format!("OK {}", child.id());
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if ask_getpid(([127, 0, 0, 1], self.port).into()).as_deref() == Some(want.as_str()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The address clients and workers use.
    pub fn addr(&self) -> ServerAddr {
        ServerAddr::new("127.0.0.1", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status if the server process has ended (reaped), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// Sends a signal (`"-TERM"`, `"-USR1"`, ...) to the server process with `kill`.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("the server is running").to_string();
        let status = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// Waits until the server process exits (after a signal or shutdown) and returns
    /// its exit status; panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit",
                self.kind.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts again on the same port with the same flags.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(true);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}
