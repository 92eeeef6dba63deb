//! A small tmpfs to run out of: mounted in a mount namespace of its own (`unshare -m`,
//! held open by a `sleep` process), so nothing is mounted in the machine's namespace
//! and nothing is left behind if the test dies. Programs run inside it through
//! [`Tmpfs::exec_prefix`] (`nsenter -t HOLDER -m --`); the test reaches its files
//! through `/proc/HOLDER/root/...`. When `unshare` is not allowed but we are root, a
//! plain `mount -t tmpfs` is used instead (unmounted on drop).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A size-limited tmpfs at `dir`.
pub struct Tmpfs {
    /// The mount point (as the programs inside see it).
    pub dir: PathBuf,
    holder: Option<Child>,
    mounted_here: bool,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"8m"`) on the existing folder `dir`;
    /// `Err(reason)` when this machine does not let us (the caller skips).
    pub fn new(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        match Self::in_namespace(dir, size) {
            Ok(t) => Ok(t),
            Err(ns_err) => {
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } != 0 {
                    return Err(format!("{ns_err}; and not root, so no plain mount either"));
                }
                eprintln!("[chaos] unshare -m failed ({ns_err}); mounting the tmpfs directly");
                run(Command::new("mount")
                    .args(["-t", "tmpfs", "-o"])
                    .arg(format!("size={size}"))
                    .arg("tmpfs")
                    .arg(dir))
                .map_err(|e| format!("{ns_err}; {e}"))?;
                Ok(Tmpfs {
                    dir: dir.to_path_buf(),
                    holder: None,
                    mounted_here: true,
                })
            }
        }
    }

    fn in_namespace(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o size=\"$1\" tmpfs \"$0\" && echo mounted && exec sleep 100000")
            .arg(dir)
            .arg(size)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut line = String::new();
        let out = holder.stdout.take().expect("piped stdout");
        let _ = BufReader::new(out).read_line(&mut line);
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let out = holder.wait_with_output();
            let err = out
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_default();
            return Err(format!("unshare -m + mount tmpfs failed: {err}"));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
            holder: Some(holder),
            mounted_here: false,
        })
    }

    /// The command prefix that runs a program where the tmpfs is mounted.
    pub fn exec_prefix(&self) -> Vec<String> {
        match &self.holder {
            Some(h) => vec![
                "nsenter".into(),
                "-t".into(),
                h.id().to_string(),
                "-m".into(),
                "--".into(),
            ],
            None => Vec::new(),
        }
    }

    /// `name` inside the tmpfs, as a path this process can open.
    pub fn path(&self, name: &str) -> PathBuf {
        let inside = self.dir.join(name);
        match &self.holder {
            Some(h) => {
                let rel = inside.strip_prefix("/").unwrap_or(&inside);
                PathBuf::from(format!("/proc/{}/root", h.id())).join(rel)
            }
            None => inside,
        }
    }

    /// Free bytes in the tmpfs.
    pub fn available(&self) -> u64 {
        let p = self.path("");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: statvfs writes into the struct we pass.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(c.as_ptr(), &mut st) != 0 {
                return 0;
            }
            st.f_bavail as u64 * st.f_frsize as u64
        }
    }

    /// Fills the tmpfs with `name` until the disk is full; returns the bytes written.
    pub fn fill(&self, name: &str) -> u64 {
        let mut f = std::fs::File::create(self.path(name)).expect("create filler");
        let chunk = vec![0xa5u8; 64 << 10];
        let mut written = 0u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(_) => break, // ENOSPC
            }
            assert!(Instant::now() < deadline, "filling the tmpfs never ended");
        }
        // Whatever is left (less than a chunk), byte by byte in small writes.
        let small = [0xa5u8; 512];
        while let Ok(n) = f.write(&small) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        let _ = f.sync_all();
        written
    }

    /// Deletes `name` (gives its space back).
    pub fn free(&self, name: &str) {
        std::fs::remove_file(self.path(name)).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(mut h) = self.holder.take() {
            // The namespace, and its tmpfs, go away with its last process.
            let _ = h.kill();
            let _ = h.wait();
        }
        if self.mounted_here {
            let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
        }
    }
}
