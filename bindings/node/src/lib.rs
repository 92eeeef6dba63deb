//! napi-rs glue for the `polygear` Node.js package.
//!
//! Thin translation layer: JS values ⇄ core types, `polygear::Error` ⇄ encoded
//! JS errors. All protocol logic lives in the `polygear` core crate; all
//! network I/O runs on napi-rs' tokio runtime, never on the JS thread. The
//! user-facing API (classes, validation, error subclasses) is `node/index.js`.

#![deny(clippy::all)]

mod admin;
mod client;
mod error;
// mod server;
mod util;
mod worker;

pub use admin::*;
pub use client::*;
// pub use server::*;
pub use util::Canceller;
pub use worker::*;
