//! # polygear
//!
//! One fast implementation of the [Gearman](http://gearman.org) job protocol:
//! the wire codec ([`protocol`]), an async [`Client`], a [`Worker`] and an
//! [`Admin`] client, all on tokio. Byte-compatible with gearmand and every
//! other Gearman peer. The Python, Node.js and Ruby packages wrap this crate.

#![warn(missing_docs)]

pub mod admin;
pub mod backoff;
pub mod client;
mod error;
pub mod frame;
pub mod outbox;
pub mod protocol;
pub mod servers;
pub mod tls;
pub mod transport;
mod util;
pub mod worker;

pub use admin::{Admin, DrainingWorker, ScheduleInfo};
pub use bytes::Bytes;
pub use client::{
    Client, ClientOptions, JobEvent, JobResult, JobStatus, RunningJob, SubmitOptions,
};
pub use error::{format_decimal, format_duration, job_timeout_message, Error, ErrorKind, Result};
pub use protocol::admin::{DeadJob, RetryPolicy};
pub use protocol::{Packet, PacketType, Priority};
pub use servers::{ServerAddr, DEFAULT_PORT};
pub use tls::{TlsConnector, TlsOptions};
pub use worker::{Job, Worker, WorkerEvent, WorkerOptions};

/// How this library was compiled: `"release"` (optimised, no debug assertions: the
/// `release` and `dist` profiles) or `"debug"` (a dev build, several times slower).
/// The bindings expose it so benchmarks can refuse to measure a debug build.
pub const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};
