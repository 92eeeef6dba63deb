//! What the queue stores for retries and the dead set (see
//! `crate::state::retry`): the changes a batch carries besides inserts and
//! deletes ([`DeadOp`]) and what is read back at start ([`Recovered`]). Only
//! SQLite keeps them ([`super::Store::commit_extras`]); the other stores see
//! the job rows' inserts and deletes that come with them and nothing else.

use std::collections::HashMap;

use bytes::Bytes;
use polygear::DeadJob;

use super::{StoredJob, StoredKey};

/// A dead record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadRow {
    /// The record's id in the store (unique per database).
    pub id: i64,
    /// The job's priority (0 = HIGH, 1 = NORMAL, 2 = LOW), for a retry.
    pub priority: u8,
    /// The function name as bytes (`job.function` is its lossy text).
    pub function: Bytes,
    pub job: DeadJob,
}

/// One retry or dead-set change, committed in the same transaction as the
/// batch's inserts and deletes.
#[derive(Debug)]
pub(crate) enum DeadOp {
    /// Stored job `id` failed `attempts` times and runs again at unix time `when`.
    Reschedule { id: i64, when: i64, attempts: u32 },
    /// A job's attempts ran out: its record is added and its row (if
    /// stored) deleted, atomically.
    Bury {
        row: DeadRow,
        delete: Option<StoredKey>,
    },
    /// Dead record `dead_id` goes back to the queue as job `row`, atomically.
    Unbury { dead_id: i64, row: StoredJob },
    /// Dead record `id` is forgotten (deleted, or dropped for a limit).
    Forget(i64),
}

impl DeadOp {
    /// The job row deleted with this change.
    pub(crate) fn job_delete(&self) -> Option<&StoredKey> {
        match self {
            DeadOp::Bury { delete, .. } => delete.as_ref(),
            _ => None,
        }
    }

    /// The job row inserted with this change.
    pub(crate) fn job_insert(&self) -> Option<&StoredJob> {
        match self {
            DeadOp::Unbury { row, .. } => Some(row),
            _ => None,
        }
    }
}

/// Retry state read back at start.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The dead set, oldest first.
    pub dead: Vec<DeadRow>,
    /// Per stored job id: failed attempts so far and first submission (unix secs).
    pub attempts: HashMap<i64, (u32, i64)>,
}
