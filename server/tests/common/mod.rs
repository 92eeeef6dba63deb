//! What the polygeard integration tests share: this crate's `polygeard` binary run as
//! a [`TestServer`] on a free loopback port, and the blocking raw protocol peer. Both
//! come from `polygear-test-support` (tests/support), shared with tests/interop.
#![allow(dead_code, unused_imports)] // each test file uses a part

pub mod durable;
pub mod keyed;

pub use polygear_test_support::blocking::*;
pub use polygear_test_support::{free_port, ServerKind, TestServer};

/// This crate's polygeard (logging off) with `extra` flags on a free port.
pub fn polygeard(extra: &[&str]) -> TestServer {
    polygeard_on(free_port(), extra)
}

/// This crate's polygeard (logging off) with `extra` flags on `port`.
pub fn polygeard_on(port: u16, extra: &[&str]) -> TestServer {
    let mut flags = vec!["-l", "none"];
    flags.extend_from_slice(extra);
    TestServer::program(
        ServerKind::Polygeard,
        env!("CARGO_BIN_EXE_polygeard"),
        port,
        &flags,
    )
}

/// Borrows a list of owned arguments.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A two-thread tokio runtime for tests of the async core API.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A core client of the polygeard (or gearmand) on `port`, default options.
pub fn client(port: u16) -> polygear::Client {
    polygear::Client::new(polygear::ClientOptions {
        servers: vec![polygear::ServerAddr::new("127.0.0.1", port)],
        ..Default::default()
    })
    .expect("client")
}

/// Kills the child process when dropped.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether Perl's Gearman::Client and Gearman::Worker are installed
/// (Debian's libgearman-client-perl); tests skip their Perl part without.
pub fn perl_gearman() -> bool {
    let ok = std::process::Command::new("perl")
        .args(["-MGearman::Client", "-MGearman::Worker", "-e", "1"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("Perl Gearman modules not installed; skipping the Perl part");
    }
    ok
}

/// Runs the Perl program `src` (`perl -e`, output discarded) until dropped.
pub fn perl(src: &str) -> Kill {
    Kill(
        std::process::Command::new("perl")
            .args(["-e", src])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("perl"),
    )
}
