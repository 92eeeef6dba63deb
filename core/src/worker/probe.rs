//! [`Job::cancelled`](super::Job::cancelled)'s question to the server: one
//! client connection per server, opened on first use and kept for the
//! worker's life (a reconnect of the worker's own connection keeps it), so
//! a job may poll every 100 ms for the price of one GET_STATUS round trip.
//!
//! Separate from the worker connection because a worker connection's
//! replies are JOB_ASSIGN/NO_JOB/NOOP, matched by its grab state machine;
//! a STATUS_RES there would need a second reply queue.

use std::sync::Mutex;

use crate::client::{Client, ClientOptions};
use crate::error::Result;
use crate::servers::ServerAddr;
use crate::util::lock;

use super::WorkerOptions;

/// Asks one server about jobs (GET_STATUS) over a lazily opened client.
#[derive(Debug)]
pub(super) struct Probe {
    options: ClientOptions,
    client: Mutex<Option<Client>>,
}

impl Probe {
    /// A probe of `addr` with the worker's TLS options, connect timeout and
    /// backoff (not its client id: `drain worker ID` must not count it).
    pub(super) fn new(addr: &ServerAddr, opts: &WorkerOptions) -> Probe {
        Probe {
            options: ClientOptions {
                servers: vec![addr.clone()],
                connect_timeout: opts.connect_timeout,
                min_backoff: opts.min_backoff,
                max_backoff: opts.max_backoff,
                tls: opts.tls.clone(),
                ..ClientOptions::default()
            },
            client: Mutex::new(None),
        }
    }

    /// Whether the server still has job `handle` (GET_STATUS known).
    /// polygeard reports a cancelled job as unknown.
    pub(super) async fn known(&self, handle: &str) -> Result<bool> {
        let client = {
            let mut c = lock(&self.client);
            match c.as_ref() {
                Some(client) => client.clone(),
                None => c.insert(Client::new(self.options.clone())?).clone(),
            }
        };
        Ok(client.status(handle).await?.known)
    }
}
