//! A Debian `redis-server` for the tests, durable as the queue tests need it:
//! `appendonly yes`, `appendfsync always`, no RDB snapshots, its files in a
//! private directory.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

pub use crate::daemon::Daemon;

/// Whether `redis-server` is installed.
pub fn available() -> bool {
    crate::which("redis-server").is_some()
}

fn command(port: u16, dir: &Path) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .args(["--daemonize", "no", "--logfile", "redis.log"]);
    cmd
}

const PROBE: (&[u8], &[u8]) = (b"PING\r\n", b"+PONG\r\n");

/// The password of [`start_with_password`]'s server.
pub const PASSWORD: &str = "polygear-test-secret";

fn command_with_password(port: u16, dir: &Path) -> Command {
    let mut cmd = command(port, dir);
    cmd.args(["--requirepass", PASSWORD]);
    cmd
}

/// A Redis server of its own that requires [`PASSWORD`] (`requirepass`).
pub fn start_with_password() -> Daemon {
    // It answers PING without AUTH with an error (that it runs is enough).
    Daemon::start("redis", command_with_password, (b"PING\r\n", b"-NOAUTH"))
}

/// A Redis server of its own (stopped on drop), e.g. to stop and restart.
pub fn start() -> Daemon {
    Daemon::start("redis", command, PROBE)
}

/// The Redis server shared by the tests of this process (started on first
/// use, killed when the process ends); tests keep apart by key prefix.
pub fn shared() -> &'static Daemon {
    static SERVER: OnceLock<Daemon> = OnceLock::new();
    SERVER.get_or_init(|| Daemon::start_for_process("redis", command, PROBE))
}
