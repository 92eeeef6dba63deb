//! napi-rs glue for the `polygear` Node.js package.
//!
//! Thin translation layer: JS values ⇄ core types, `polygear::Error` ⇄ encoded
//! JS errors. All protocol logic lives in the `polygear` core crate; all
//! network I/O runs on napi-rs' tokio runtime, never on the JS thread. The
//! user-facing API (classes, validation, error subclasses) is `node/index.js`.
//! What the three language bindings share (argument checks, the error table)
//! is in `polygear-bindings` (`bindings/common`); its `runtime` module says why
//! Python's and Ruby's blocking APIs drive their own runtime while this addon,
//! whose JS thread must never block, runs everything on napi-rs' runtime.

#![deny(clippy::all)]

mod admin;
mod client;
mod error;
mod server;
mod util;
mod worker;
mod worker_events;

pub use admin::*;
pub use client::*;
pub use server::*;
pub use util::Canceller;
pub use worker::*;
pub use worker_events::NativeWorkerEvent;

/// How the addon was compiled: `"release"` or `"debug"` (see `polygear::BUILD_PROFILE`).
#[napi_derive::napi]
pub fn build_profile() -> &'static str {
    polygear::BUILD_PROFILE
}

/// One tokio worker thread by default: Gearman traffic is I/O-bound, and a
/// single thread saves cross-thread wake-ups between the connection tasks and
/// the submissions (`POLYGEAR_THREADS=n` overrides).
#[napi_derive::module_init]
fn init() {
    let threads = std::env::var("POLYGEAR_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("polygear")
        .enable_all()
        .build();
    if let Ok(rt) = rt {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}
