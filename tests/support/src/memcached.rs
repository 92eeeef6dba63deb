//! A Debian `memcached` for the tests (64 MB, UDP off).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

pub use crate::daemon::Daemon;

/// Whether `memcached` is installed.
pub fn available() -> bool {
    crate::which("memcached").is_some()
}

fn command(port: u16, _dir: &Path) -> Command {
    let mut cmd = Command::new("memcached");
    cmd.args([
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-m",
        "64",
        "-t",
        "2",
    ]);
    cmd
}

/// memcached with one LRU per slab class (`-o no_lru_maintainer`): the C
/// gearmand replays with `stats cachedump`, which lists only part of the
/// items under memcached's default segmented LRU.
fn command_single_lru(port: u16, dir: &Path) -> Command {
    let mut cmd = command(port, dir);
    cmd.args(["-o", "no_lru_maintainer"]);
    cmd
}

const PROBE: (&[u8], &[u8]) = (b"version\r\n", b"VERSION ");

/// A memcached of its own (stopped on drop), e.g. to stop and restart.
pub fn start() -> Daemon {
    Daemon::start("memcached", command, PROBE)
}

/// A memcached of its own with one LRU per slab class, for gearmand's
/// replay (see [`command_single_lru`]).
pub fn start_single_lru() -> Daemon {
    Daemon::start("memcached", command_single_lru, PROBE)
}

/// The memcached shared by the tests of this process (started on first
/// use, killed when the process ends); tests keep apart by key prefix.
pub fn shared() -> &'static Daemon {
    static SERVER: OnceLock<Daemon> = OnceLock::new();
    SERVER.get_or_init(|| Daemon::start_for_process("memcached", command, PROBE))
}
