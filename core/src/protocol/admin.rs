//! Typed replies of the admin text protocol and their exact line formats.
//!
//! API CONTRACT: the admin helper fills in parsing/formatting; the field names stay.

/// A `status` line: `FUNC\tTOTAL\tRUNNING\tWORKERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionStatus {
    /// Function name.
    pub function: String,
    /// Waiting + running jobs.
    pub total: u64,
    /// Running jobs.
    pub running: u64,
    /// Registered workers (CAN_DO registrations).
    pub workers: u64,
}

/// A `prioritystatus` line: `FUNC\tHIGH\tNORMAL\tLOW\tWORKERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityStatus {
    /// Function name.
    pub function: String,
    /// Waiting high-priority jobs.
    pub high: u64,
    /// Waiting normal-priority jobs.
    pub normal: u64,
    /// Waiting low-priority jobs.
    pub low: u64,
    /// Registered workers.
    pub workers: u64,
}

/// A `workers` line: `FD IP CLIENT-ID : FUNC…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Server-side connection number.
    pub fd: i64,
    /// Peer address.
    pub ip: String,
    /// SET_CLIENT_ID value or `-`.
    pub client_id: String,
    /// Registered functions, as listed.
    pub functions: Vec<String>,
}

/// A `show jobs` line: `HANDLE\tRETRIES\tIGNORE\tQUEUED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// Job handle.
    pub handle: String,
    /// Lost-assignment counter.
    pub retries: u32,
    /// Abandoned or cancelled.
    pub ignore: bool,
    /// Background job (persistable).
    pub queued: bool,
}
