//! Test harness: start real job servers (the C `gearmand` from Debian, or our
//! `polygeard` binary) on free loopback ports, and stop them afterwards.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use polygear::ServerAddr;

pub mod raw;

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

/// Sends the admin `getpid` command and returns the reply line.
fn ask_getpid(port: u16) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
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
    extra: Vec<String>,
    child: Option<Child>,
}

impl TestServer {
    /// Starts `kind` on a free port and waits until it accepts connections.
    pub fn start(kind: ServerKind) -> TestServer {
        Self::start_with(kind, &[])
    }

    /// Like [`TestServer::start`] with extra command-line flags.
    pub fn start_with(kind: ServerKind, extra: &[&str]) -> TestServer {
        let mut s = TestServer {
            kind,
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        s.spawn();
        s
    }

    /// Starts the server; if it cannot take the port (a parallel test got it
    /// first) a fresh run picks a new port, unless `keep_port` (restarts).
    fn spawn(&mut self) {
        self.spawn_inner(false)
    }

    fn spawn_inner(&mut self, keep_port: bool) {
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
        let bin = self
            .kind
            .binary()
            .unwrap_or_else(|| panic!("{} is not installed/built", self.kind.name()));
        let mut cmd = Command::new(bin);
        let port = self.port.to_string();
        match self.kind {
            ServerKind::Gearmand => {
                let pid = std::env::temp_dir().join(format!("gearmand-test-{}.pid", self.port));
                cmd.args([
                    "-L",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-l",
                    "stderr",
                    "--verbose",
                    "ERROR",
                ])
                .arg("-P")
                .arg(pid);
            }
            ServerKind::Polygeard => {
                cmd.args(["-L", "127.0.0.1", "-p", &port, "-q", "builtin"]);
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
            if ask_getpid(self.port).as_deref() == Some(want.as_str()) {
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

    /// The server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `127.0.0.1:PORT`.
    pub fn addr_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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
        self.spawn_inner(true);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}
