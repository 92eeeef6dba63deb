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
