//! Helper server processes for the tests (Redis, memcached): started on a
//! loopback port with a private directory, as the unprivileged `nobody`
//! when the tests run as root, and killed with the test process even when
//! it dies abruptly (`PR_SET_PDEATHSIG`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The uid and gid of `nobody` (Debian).
const NOBODY: u32 = 65534;

/// One helper server process; killed (and its directory removed) on drop.
pub struct Daemon {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its private directory.
    pub dir: PathBuf,
    name: &'static str,
    command: fn(port: u16, dir: &Path) -> Command,
    probe: (&'static [u8], &'static [u8]),
    child: Option<Child>,
}

impl Daemon {
    /// Starts `name` (what `command` runs) on a free port and waits until it
    /// answers `probe.0` with a reply starting with `probe.1`.
    pub(crate) fn start(
        name: &'static str,
        command: fn(u16, &Path) -> Command,
        probe: (&'static [u8], &'static [u8]),
    ) -> Daemon {
        remove_stale_dirs(name);
        for _ in 0..5 {
            let port = crate::free_port();
            let dir =
                std::env::temp_dir().join(format!("polygear-{name}-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the server's directory");
            if is_root() {
                std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
            }
            let mut d = Daemon {
                port,
                dir,
                name,
                command,
                probe,
                child: None,
            };
            if d.spawn() {
                return d;
            }
        }
        panic!("{name} did not start");
    }

    /// Like [`Daemon::start`], from a thread that lives as long as the test
    /// process, so that the server dies only with the process (the parent
    /// death signal fires when the spawning thread ends): for a server kept
    /// in a `static` (statics are never dropped).
    pub(crate) fn start_for_process(
        name: &'static str,
        command: fn(u16, &Path) -> Command,
        probe: (&'static [u8], &'static [u8]),
    ) -> Daemon {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Daemon::start(name, command, probe));
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the starter thread panicked")
    }

    /// Spawns the process; false if it did not come up (port taken).
    fn spawn(&mut self) -> bool {
        let mut cmd = (self.command)(self.port, &self.dir);
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if is_root() {
            // std drops the supplementary groups when root sets a uid.
            cmd.uid(NOBODY).gid(NOBODY);
        }
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if self.answers() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    /// Whether the server answers its probe.
    fn answers(&self) -> bool {
        let addr = ([127, 0, 0, 1], self.port).into();
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = vec![0u8; self.probe.1.len()];
        s.write_all(self.probe.0).is_ok() && s.read_exact(&mut buf).is_ok() && buf == self.probe.1
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not restart on port {}", self.name, self.port);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Removes the directories of earlier test processes that are gone (the
/// servers kept in statics are never dropped).
fn remove_stale_dirs(name: &str) {
    let prefix = format!("polygear-{name}-");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&prefix).and_then(|r| r.split('-').next()) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
