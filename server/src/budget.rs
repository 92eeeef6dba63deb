//! The server-wide memory budget for connection buffers: unsent output
//! (each connection's [`Outbox`](crate::outbox::Outbox)) and unparsed input
//! (each connection's read buffer) together.
//!
//! Each connection accounts its buffers in [`GRANULE`]-sized steps, so the
//! shared counter is touched only when a buffer crosses a step, not per
//! reply. When the total passes [`Budget::pressure`] (3/4 of the limit),
//! connections stop reading while they hold more than [`LOW_WATER`] of
//! unsent output (instead of [`HIGH_WATER`]); past the limit, the
//! reaper ([`run_reaper`]) disconnects the connections holding the most
//! until the total is back under it, and logs each one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::Shared;

/// Accounting step: buffers are counted in whole granules (rounded down).
pub(crate) const GRANULE: usize = 64 << 10;
/// A connection stops being read while this much of its output is unsent.
pub(crate) const HIGH_WATER: usize = 4 << 20;
/// ... or this much, while the server is short of buffer memory.
pub(crate) const LOW_WATER: usize = 256 << 10;

pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    over: Notify,
    /// Connections dropped because the budget was exceeded.
    pub(crate) dropped: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            limit: limit.max(GRANULE),
            used: AtomicUsize::new(0),
            over: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Bytes accounted to all connections.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Buffer memory is getting short: read less from slow readers.
    pub(crate) fn pressure(&self) -> bool {
        self.used() > self.limit / 4 * 3
    }

    /// How much unsent output pauses reading a connection now.
    pub(crate) fn high_water(&self) -> usize {
        if self.pressure() {
            LOW_WATER
        } else {
            HIGH_WATER
        }
    }

    fn change(&self, old_granules: usize, new_granules: usize) {
        if new_granules > old_granules {
            let add = (new_granules - old_granules) * GRANULE;
            let total = self.used.fetch_add(add, Ordering::Relaxed) + add;
            if total > self.limit {
                self.over.notify_one();
            }
        } else {
            let sub = (old_granules - new_granules) * GRANULE;
            self.used.fetch_sub(sub, Ordering::Relaxed);
        }
    }
}

/// One buffer's share of the [`Budget`] (a connection has two: output and input).
pub(crate) struct Account {
    budget: Arc<Budget>,
    granules: AtomicUsize,
}

impl Account {
    pub(crate) fn new(budget: Arc<Budget>) -> Account {
        Account {
            budget,
            granules: AtomicUsize::new(0),
        }
    }

    /// The buffer now holds `bytes`.
    pub(crate) fn set(&self, bytes: usize) {
        let g = bytes / GRANULE;
        let old = self.granules.swap(g, Ordering::Relaxed);
        if old != g {
            self.budget.change(old, g);
        }
    }

    /// Bytes accounted (a multiple of [`GRANULE`]); 0 for small buffers.
    pub(crate) fn get(&self) -> usize {
        self.granules.load(Ordering::Relaxed) * GRANULE
    }

    /// Whether anything is accounted (cheap: no lock).
    pub(crate) fn is_zero(&self) -> bool {
        self.granules.load(Ordering::Relaxed) == 0
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Disconnects the connections holding the most buffer memory whenever the
/// budget is exceeded, until it no longer is.
pub(crate) async fn run_reaper(shared: Arc<Shared>) {
    let budget = shared.budget.clone();
    loop {
        tokio::select! {
            _ = budget.over.notified() => {}
            _ = shared.stop.cancelled() => return,
        }
        if budget.used() <= budget.limit {
            continue;
        }
        let mut victims: Vec<_> = shared.with_state(|st| {
            st.peers
                .values()
                .map(|p| (p.out.buffered(), p.fd, p.ip.clone(), p.out.clone()))
                .filter(|v| v.0 > 0)
                .collect()
        });
        victims.sort_unstable_by_key(|v| std::cmp::Reverse(v.0));
        let mut used = budget.used();
        for (held, fd, ip, out) in victims {
            if used <= budget.limit {
                break;
            }
            tracing::warn!(
                "connection buffers over the server's budget ({} of {} MiB): dropping connection fd {fd} from {ip}, which holds {} KiB",
                used >> 20,
                budget.limit >> 20,
                held >> 10
            );
            budget.dropped.fetch_add(1, Ordering::Relaxed);
            out.kill();
            used = used.saturating_sub(held);
        }
    }
}
