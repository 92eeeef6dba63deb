//! Typed Gearman binary packets: the 42 packet codes, their argument layout,
//! and conversion between a typed [`Packet`] and its payload bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::ProtocolError;

/// Length of the fixed binary header: magic, type and size, 4 bytes each.
pub const HEADER_LEN: usize = 12;
/// `\0REQ`: packets sent to a server.
pub const MAGIC_REQ: [u8; 4] = *b"\0REQ";
/// `\0RES`: packets sent by a server.
pub const MAGIC_RES: [u8; 4] = *b"\0RES";

/// Direction marker of a binary packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Magic {
    /// `\0REQ`, a request to the server.
    Req,
    /// `\0RES`, a response from the server.
    Res,
}

impl Magic {
    /// The four magic bytes on the wire.
    pub fn bytes(self) -> [u8; 4] {
        match self {
            Magic::Req => MAGIC_REQ,
            Magic::Res => MAGIC_RES,
        }
    }

    /// Parses the four magic bytes; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Magic> {
        match b {
            b"\0REQ" => Some(Magic::Req),
            b"\0RES" => Some(Magic::Res),
            _ => None,
        }
    }
}

/// Job priority, in gearmand's internal order (HIGH = 0, NORMAL = 1, LOW = 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Runs before normal and low jobs.
    High = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Runs after high and normal jobs.
    Low = 2,
}

impl Priority {
    /// All priorities, best first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// gearmand's numeric value (also what persistent queues store).
    pub fn as_index(self) -> usize {
        self as usize
    }

    /// The inverse of [`Priority::as_index`].
    pub fn from_index(i: i64) -> Option<Priority> {
        match i {
            0 => Some(Priority::High),
            1 => Some(Priority::Normal),
            2 => Some(Priority::Low),
            _ => None,
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            other => Err(format!(
                "unknown priority {other:?} (expected high, normal or low)"
            )),
        }
    }
}

macro_rules! packet_types {
    ($( $code:literal => $name:ident, $wire:literal, $argc:literal, $data:literal; )*) => {
        /// The numeric packet codes of the Gearman binary protocol (1..=42).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum PacketType {
            $( #[doc = $wire] $name = $code, )*
        }

        impl PacketType {
            /// Maps a wire code to its type; `None` for 0 and codes above 42.
            pub fn from_code(code: u32) -> Option<PacketType> {
                match code {
                    $( $code => Some(PacketType::$name), )*
                    _ => None,
                }
            }

            /// The protocol's name for the type, e.g. `SUBMIT_JOB_BG`.
            pub fn name(self) -> &'static str {
                match self { $( PacketType::$name => $wire, )* }
            }

            /// libgearman's `(argc, data)` layout (see protocol.md §1.2).
            pub fn layout(self) -> (usize, bool) {
                match self { $( PacketType::$name => ($argc, $data), )* }
            }
        }
    };
}

packet_types! {
    1 => CanDo, "CAN_DO", 1, false;
    2 => CantDo, "CANT_DO", 1, false;
    3 => ResetAbilities, "RESET_ABILITIES", 0, false;
    4 => PreSleep, "PRE_SLEEP", 0, false;
    5 => Unused, "UNUSED", 0, false;
    6 => Noop, "NOOP", 0, false;
    7 => SubmitJob, "SUBMIT_JOB", 2, true;
    8 => JobCreated, "JOB_CREATED", 1, false;
    9 => GrabJob, "GRAB_JOB", 0, false;
    10 => NoJob, "NO_JOB", 0, false;
    11 => JobAssign, "JOB_ASSIGN", 2, true;
    12 => WorkStatus, "WORK_STATUS", 3, false;
    13 => WorkComplete, "WORK_COMPLETE", 1, true;
    14 => WorkFail, "WORK_FAIL", 1, false;
    15 => GetStatus, "GET_STATUS", 1, false;
    16 => EchoReq, "ECHO_REQ", 0, true;
    17 => EchoRes, "ECHO_RES", 0, true;
    18 => SubmitJobBg, "SUBMIT_JOB_BG", 2, true;
    19 => Error, "ERROR", 2, false;
    20 => StatusRes, "STATUS_RES", 5, false;
    21 => SubmitJobHigh, "SUBMIT_JOB_HIGH", 2, true;
    22 => SetClientId, "SET_CLIENT_ID", 1, false;
    23 => CanDoTimeout, "CAN_DO_TIMEOUT", 2, false;
    24 => AllYours, "ALL_YOURS", 0, false;
    25 => WorkException, "WORK_EXCEPTION", 1, true;
    26 => OptionReq, "OPTION_REQ", 1, false;
    27 => OptionRes, "OPTION_RES", 1, false;
    28 => WorkData, "WORK_DATA", 1, true;
    29 => WorkWarning, "WORK_WARNING", 1, true;
    30 => GrabJobUniq, "GRAB_JOB_UNIQ", 0, false;
    31 => JobAssignUniq, "JOB_ASSIGN_UNIQ", 3, true;
    32 => SubmitJobHighBg, "SUBMIT_JOB_HIGH_BG", 2, true;
    33 => SubmitJobLow, "SUBMIT_JOB_LOW", 2, true;
    34 => SubmitJobLowBg, "SUBMIT_JOB_LOW_BG", 2, true;
    35 => SubmitJobSched, "SUBMIT_JOB_SCHED", 7, true;
    36 => SubmitJobEpoch, "SUBMIT_JOB_EPOCH", 3, true;
    37 => SubmitReduceJob, "SUBMIT_REDUCE_JOB", 4, true;
    38 => SubmitReduceJobBackground, "SUBMIT_REDUCE_JOB_BACKGROUND", 4, true;
    39 => GrabJobAll, "GRAB_JOB_ALL", 0, false;
    40 => JobAssignAll, "JOB_ASSIGN_ALL", 4, true;
    41 => GetStatusUnique, "GET_STATUS_UNIQUE", 1, false;
    42 => StatusResUnique, "STATUS_RES_UNIQUE", 6, false;
}

impl PacketType {
    /// The submit packet type for a priority and foreground/background.
    pub fn submit(priority: Priority, background: bool) -> PacketType {
        match (priority, background) {
            (Priority::Normal, false) => PacketType::SubmitJob,
            (Priority::Normal, true) => PacketType::SubmitJobBg,
            (Priority::High, false) => PacketType::SubmitJobHigh,
            (Priority::High, true) => PacketType::SubmitJobHighBg,
            (Priority::Low, false) => PacketType::SubmitJobLow,
            (Priority::Low, true) => PacketType::SubmitJobLowBg,
        }
    }

    /// Number of NUL separators a valid payload of this type contains.
    pub fn separators(self) -> usize {
        let (argc, data) = self.layout();
        if data {
            argc
        } else {
            argc.saturating_sub(1)
        }
    }
}

/// One binary packet with typed, zero-copy (`Bytes`) fields.
///
/// The magic is not part of the packet: `WORK_*` packets travel both ways
/// with the same fields and only the magic differs.
#[allow(missing_docs)] // fields are named after the protocol specification
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Worker registers a function.
    CanDo { function: Bytes },
    /// Worker unregisters a function.
    CantDo { function: Bytes },
    /// Worker unregisters every function.
    ResetAbilities,
    /// Worker is about to sleep until a NOOP.
    PreSleep,
    /// Code 5, never valid.
    Unused,
    /// Server wakes a sleeping worker.
    Noop,
    /// Any of the six plain submit packets (foreground/background × priority).
    SubmitJob {
        function: Bytes,
        unique: Bytes,
        data: Bytes,
        priority: Priority,
        background: bool,
    },
    /// Server acknowledges a submission with the job handle.
    JobCreated { handle: Bytes },
    /// Worker asks for a job (reply without unique).
    GrabJob,
    /// Server has no job for the worker.
    NoJob,
    /// Server hands a job to a worker (no unique).
    JobAssign {
        handle: Bytes,
        function: Bytes,
        data: Bytes,
    },
    /// Progress of a job; numerator and denominator are kept as sent.
    WorkStatus {
        handle: Bytes,
        numerator: Bytes,
        denominator: Bytes,
    },
    /// A job finished with this result.
    WorkComplete { handle: Bytes, data: Bytes },
    /// A job failed. A trailing NUL (gearmand's converted exceptions) is stripped on decode.
    WorkFail { handle: Bytes },
    /// Client asks for a job's status.
    GetStatus { handle: Bytes },
    /// Ping with opaque data.
    EchoReq { data: Bytes },
    /// Pong with the same data.
    EchoRes { data: Bytes },
    /// Server-side error, e.g. `QUEUE_ERROR` / `Job queue is full`.
    Error { code: Bytes, text: Bytes },
    /// Reply to GET_STATUS.
    StatusRes {
        handle: Bytes,
        known: bool,
        running: bool,
        numerator: u32,
        denominator: u32,
    },
    /// Sets the id shown by the admin `workers` command.
    SetClientId { id: Bytes },
    /// CAN_DO with a per-job timeout in milliseconds (gearmand ≥ 1.1.19).
    CanDoTimeout { function: Bytes, timeout: u32 },
    /// Code 24, not implemented by any server.
    AllYours,
    /// A job raised an exception with this message.
    WorkException { handle: Bytes, data: Bytes },
    /// Request an option (only `exceptions` exists).
    OptionReq { name: Bytes },
    /// Option accepted.
    OptionRes { name: Bytes },
    /// A partial result.
    WorkData { handle: Bytes, data: Bytes },
    /// A warning from the worker.
    WorkWarning { handle: Bytes, data: Bytes },
    /// Worker asks for a job (reply with unique).
    GrabJobUniq,
    /// Server hands a job to a worker with its unique.
    JobAssignUniq {
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        data: Bytes,
    },
    /// Cron-style submission; no server implements it.
    SubmitJobSched {
        function: Bytes,
        unique: Bytes,
        minute: Bytes,
        hour: Bytes,
        day_of_month: Bytes,
        month: Bytes,
        day_of_week: Bytes,
        data: Bytes,
    },
    /// Background job to run at a Unix time (seconds).
    SubmitJobEpoch {
        function: Bytes,
        unique: Bytes,
        when: i64,
        data: Bytes,
    },
    /// Map/reduce submission (aggregator is ignored by servers).
    SubmitReduceJob {
        function: Bytes,
        unique: Bytes,
        reducer: Bytes,
        aggregator: Bytes,
        data: Bytes,
        background: bool,
    },
    /// Worker asks for a job (reply with unique and reducer).
    GrabJobAll,
    /// Server hands a job with a reducer to a worker.
    JobAssignAll {
        handle: Bytes,
        function: Bytes,
        unique: Bytes,
        reducer: Bytes,
        data: Bytes,
    },
    /// Client asks for a job's status by unique key.
    GetStatusUnique { unique: Bytes },
    /// Reply to GET_STATUS_UNIQUE (first field is the unique, as gearmand sends it).
    StatusResUnique {
        unique: Bytes,
        known: bool,
        running: bool,
        numerator: u32,
        denominator: u32,
        client_count: u32,
    },
}

/// Lenient decimal parse in the style of C's `atoi`: optional sign, leading
/// digits, anything after is ignored, no digits gives 0, overflow saturates.
pub fn atoi(b: &[u8]) -> i64 {
    let mut i = 0;
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add((b[i] - b'0') as i64);
        i += 1;
    }
    if neg {
        -v
    } else {
        v
    }
}

fn atou32(b: &[u8]) -> u32 {
    atoi(b).clamp(0, u32::MAX as i64) as u32
}

fn flag(b: &[u8]) -> bool {
    atoi(b) != 0
}

fn strict_i64(name: &'static str, b: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or(ProtocolError::BadNumber { field: name })
}

/// Length of fields joined by single NULs.
fn joined_len(fields: &[&[u8]]) -> usize {
    fields.iter().map(|f| f.len()).sum::<usize>() + fields.len().saturating_sub(1)
}

fn bool01(b: bool) -> &'static [u8] {
    if b {
        b"1"
    } else {
        b"0"
    }
}

/// A number as decimal ASCII digits, formatted on the stack (no allocation).
///
/// The one formatter for numbers on the wire: STATUS_RES fields, the
/// CAN_DO_TIMEOUT milliseconds, the SUBMIT_JOB_EPOCH time, the WORK_STATUS
/// numerator and denominator a worker sends. Same digits as `to_string()`.
#[derive(Clone, Copy)]
pub struct Decimal {
    /// Room for `u64::MAX` (20 digits) and `i64::MIN` (`-` and 19 digits).
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    /// Formats a signed number (a leading `-` if negative).
    pub fn new(v: i64) -> Decimal {
        Decimal::with_sign(v < 0, v.unsigned_abs())
    }

    /// Formats an unsigned number.
    pub fn unsigned(v: u64) -> Decimal {
        Decimal::with_sign(false, v)
    }

    fn with_sign(negative: bool, mut n: u64) -> Decimal {
        let mut d = Decimal {
            buf: [0; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if negative {
            d.start -= 1;
            d.buf[d.start] = b'-';
        }
        d
    }

    /// The digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

impl From<u32> for Decimal {
    fn from(v: u32) -> Decimal {
        Decimal::unsigned(v.into())
    }
}

impl From<u64> for Decimal {
    fn from(v: u64) -> Decimal {
        Decimal::unsigned(v)
    }
}

impl From<i64> for Decimal {
    fn from(v: i64) -> Decimal {
        Decimal::new(v)
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only ASCII digits and `-`.
        f.pad(std::str::from_utf8(self.as_bytes()).unwrap_or_default())
    }
}

impl std::fmt::Debug for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Appends one binary packet to `dst`: the 12-byte header (`magic`, `kind`,
/// payload size) and the payload, `fields` joined by single NULs.
///
/// The one packet encoder of the crate: [`Packet::encode`] (the codec), the
/// client's submissions and requests and the worker's requests all end
/// here, so no other code writes a header. Allocation-free apart from
/// growing `dst`.
///
/// Fails if a field other than the last contains a NUL byte (the receiver
/// would split the payload differently) or if the payload does not fit the
/// 32-bit size field; `dst` is left unchanged then.
pub fn encode_packet(
    dst: &mut BytesMut,
    magic: Magic,
    kind: PacketType,
    fields: &[&[u8]],
) -> Result<(), ProtocolError> {
    if let Some((_, head)) = fields.split_last() {
        if let Some(index) = head.iter().position(|f| f.contains(&0)) {
            return Err(ProtocolError::NulInArgument {
                packet: kind.name(),
                index,
            });
        }
    }
    let len = joined_len(fields);
    let size = u32::try_from(len).map_err(|_| ProtocolError::PayloadTooLarge {
        size: len as u64,
        limit: u32::MAX as u64,
    })?;
    dst.reserve(HEADER_LEN + len);
    dst.put_slice(&magic.bytes());
    dst.put_u32(kind as u32);
    dst.put_u32(size);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            dst.put_u8(0);
        }
        dst.put_slice(f);
    }
    Ok(())
}

fn strip_nul(b: Bytes) -> Bytes {
    if b.last() == Some(&0) {
        b.slice(..b.len() - 1)
    } else {
        b
    }
}

impl Packet {
    /// The wire type of this packet.
    pub fn packet_type(&self) -> PacketType {
        use PacketType as T;
        match self {
            Packet::CanDo { .. } => T::CanDo,
            Packet::CantDo { .. } => T::CantDo,
            Packet::ResetAbilities => T::ResetAbilities,
            Packet::PreSleep => T::PreSleep,
            Packet::Unused => T::Unused,
            Packet::Noop => T::Noop,
            Packet::SubmitJob {
                priority,
                background,
                ..
            } => T::submit(*priority, *background),
            Packet::JobCreated { .. } => T::JobCreated,
            Packet::GrabJob => T::GrabJob,
            Packet::NoJob => T::NoJob,
            Packet::JobAssign { .. } => T::JobAssign,
            Packet::WorkStatus { .. } => T::WorkStatus,
            Packet::WorkComplete { .. } => T::WorkComplete,
            Packet::WorkFail { .. } => T::WorkFail,
            Packet::GetStatus { .. } => T::GetStatus,
            Packet::EchoReq { .. } => T::EchoReq,
            Packet::EchoRes { .. } => T::EchoRes,
            Packet::Error { .. } => T::Error,
            Packet::StatusRes { .. } => T::StatusRes,
            Packet::SetClientId { .. } => T::SetClientId,
            Packet::CanDoTimeout { .. } => T::CanDoTimeout,
            Packet::AllYours => T::AllYours,
            Packet::WorkException { .. } => T::WorkException,
            Packet::OptionReq { .. } => T::OptionReq,
            Packet::OptionRes { .. } => T::OptionRes,
            Packet::WorkData { .. } => T::WorkData,
            Packet::WorkWarning { .. } => T::WorkWarning,
            Packet::GrabJobUniq => T::GrabJobUniq,
            Packet::JobAssignUniq { .. } => T::JobAssignUniq,
            Packet::SubmitJobSched { .. } => T::SubmitJobSched,
            Packet::SubmitJobEpoch { .. } => T::SubmitJobEpoch,
            Packet::SubmitReduceJob { background, .. } => {
                if *background {
                    T::SubmitReduceJobBackground
                } else {
                    T::SubmitReduceJob
                }
            }
            Packet::GrabJobAll => T::GrabJobAll,
            Packet::JobAssignAll { .. } => T::JobAssignAll,
            Packet::GetStatusUnique { .. } => T::GetStatusUnique,
            Packet::StatusResUnique { .. } => T::StatusResUnique,
        }
    }

    /// The argument fields in wire order, copied out (numbers as decimal
    /// text). For inspection and tests; encoding uses the borrowed,
    /// allocation-free layout of [`Packet::encode`] directly.
    pub fn fields(&self) -> Vec<Bytes> {
        self.with_wire_fields(|f| f.iter().map(|x| Bytes::copy_from_slice(x)).collect())
    }

    /// Calls `f` with the argument fields in wire order, borrowed, with the
    /// numeric fields formatted on the stack (no heap allocation).
    fn with_wire_fields<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        use Packet as P;
        match self {
            P::ResetAbilities
            | P::PreSleep
            | P::Unused
            | P::Noop
            | P::GrabJob
            | P::NoJob
            | P::AllYours
            | P::GrabJobUniq
            | P::GrabJobAll => f(&[]),
            P::CanDo { function } | P::CantDo { function } => f(&[function]),
            P::SubmitJob {
                function,
                unique,
                data,
                ..
            } => f(&[function, unique, data]),
            P::JobCreated { handle } | P::WorkFail { handle } | P::GetStatus { handle } => {
                f(&[handle])
            }
            P::JobAssign {
                handle,
                function,
                data,
            } => f(&[handle, function, data]),
            P::WorkStatus {
                handle,
                numerator,
                denominator,
            } => f(&[handle, numerator, denominator]),
            P::WorkComplete { handle, data }
            | P::WorkException { handle, data }
            | P::WorkData { handle, data }
            | P::WorkWarning { handle, data } => f(&[handle, data]),
            P::EchoReq { data } | P::EchoRes { data } => f(&[data]),
            P::Error { code, text } => f(&[code, text]),
            P::StatusRes {
                handle,
                known,
                running,
                numerator,
                denominator,
            } => {
                let (n, d) = (Decimal::from(*numerator), Decimal::from(*denominator));
                f(&[
                    handle,
                    bool01(*known),
                    bool01(*running),
                    n.as_bytes(),
                    d.as_bytes(),
                ])
            }
            P::SetClientId { id } => f(&[id]),
            P::CanDoTimeout { function, timeout } => {
                let t = Decimal::from(*timeout);
                f(&[function, t.as_bytes()])
            }
            P::OptionReq { name } | P::OptionRes { name } => f(&[name]),
            P::JobAssignUniq {
                handle,
                function,
                unique,
                data,
            } => f(&[handle, function, unique, data]),
            P::SubmitJobSched {
                function,
                unique,
                minute,
                hour,
                day_of_month,
                month,
                day_of_week,
                data,
            } => f(&[
                function,
                unique,
                minute,
                hour,
                day_of_month,
                month,
                day_of_week,
                data,
            ]),
            P::SubmitJobEpoch {
                function,
                unique,
                when,
                data,
            } => {
                let w = Decimal::new(*when);
                f(&[function, unique, w.as_bytes(), data])
            }
            P::SubmitReduceJob {
                function,
                unique,
                reducer,
                aggregator,
                data,
                ..
            } => f(&[function, unique, reducer, aggregator, data]),
            P::JobAssignAll {
                handle,
                function,
                unique,
                reducer,
                data,
            } => f(&[handle, function, unique, reducer, data]),
            P::GetStatusUnique { unique } => f(&[unique]),
            P::StatusResUnique {
                unique,
                known,
                running,
                numerator,
                denominator,
                client_count,
            } => {
                let n = Decimal::from(*numerator);
                let d = Decimal::from(*denominator);
                let c = Decimal::from(*client_count);
                f(&[
                    unique,
                    bool01(*known),
                    bool01(*running),
                    n.as_bytes(),
                    d.as_bytes(),
                    c.as_bytes(),
                ])
            }
        }
    }

    /// Payload length in bytes (fields joined by single NULs).
    pub fn payload_len(&self) -> usize {
        self.with_wire_fields(joined_len)
    }

    /// Appends the whole packet (header and payload) to `dst` with
    /// [`encode_packet`]. Allocation-free apart from growing `dst`.
    ///
    /// Fails if the payload does not fit the 32-bit size field, or if a field
    /// other than the last contains a NUL byte (the receiver would split the
    /// payload differently); `dst` is left unchanged then.
    pub fn encode(&self, magic: Magic, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let kind = self.packet_type();
        self.with_wire_fields(|fields| encode_packet(dst, magic, kind, fields))
    }

    /// Encodes to a fresh buffer.
    pub fn to_bytes(&self, magic: Magic) -> Result<Bytes, ProtocolError> {
        let mut b = BytesMut::new();
        self.encode(magic, &mut b)?;
        Ok(b.freeze())
    }

    /// Builds a typed packet from its type and payload, splitting the payload
    /// into exactly the number of fields the type has. A payload with too few
    /// separators is a [`ProtocolError::MissingArguments`]; it never reads
    /// beyond `payload`.
    pub fn decode(kind: PacketType, payload: Bytes) -> Result<Packet, ProtocolError> {
        let (argc, data) = kind.layout();
        let nfields = if data { argc + 1 } else { argc };
        let mut f = split_fields(kind, payload, nfields)?;
        let mut next = || f.next();
        use PacketType as T;
        let p = match kind {
            T::CanDo => Packet::CanDo { function: next() },
            T::CantDo => Packet::CantDo { function: next() },
            T::ResetAbilities => Packet::ResetAbilities,
            T::PreSleep => Packet::PreSleep,
            T::Unused => Packet::Unused,
            T::Noop => Packet::Noop,
            T::SubmitJob
            | T::SubmitJobBg
            | T::SubmitJobHigh
            | T::SubmitJobHighBg
            | T::SubmitJobLow
            | T::SubmitJobLowBg => {
                let (priority, background) = match kind {
                    T::SubmitJob => (Priority::Normal, false),
                    T::SubmitJobBg => (Priority::Normal, true),
                    T::SubmitJobHigh => (Priority::High, false),
                    T::SubmitJobHighBg => (Priority::High, true),
                    T::SubmitJobLow => (Priority::Low, false),
                    _ => (Priority::Low, true),
                };
                Packet::SubmitJob {
                    function: next(),
                    unique: next(),
                    data: next(),
                    priority,
                    background,
                }
            }
            T::JobCreated => Packet::JobCreated { handle: next() },
            T::GrabJob => Packet::GrabJob,
            T::NoJob => Packet::NoJob,
            T::JobAssign => Packet::JobAssign {
                handle: next(),
                function: next(),
                data: next(),
            },
            T::WorkStatus => Packet::WorkStatus {
                handle: next(),
                numerator: next(),
                denominator: next(),
            },
            T::WorkComplete => Packet::WorkComplete {
                handle: next(),
                data: next(),
            },
            T::WorkFail => Packet::WorkFail {
                handle: strip_nul(next()),
            },
            T::GetStatus => Packet::GetStatus {
                handle: strip_nul(next()),
            },
            T::EchoReq => Packet::EchoReq { data: next() },
            T::EchoRes => Packet::EchoRes { data: next() },
            T::Error => Packet::Error {
                code: next(),
                text: next(),
            },
            T::StatusRes => Packet::StatusRes {
                handle: next(),
                known: flag(&next()),
                running: flag(&next()),
                numerator: atou32(&next()),
                denominator: atou32(&next()),
            },
            T::SetClientId => Packet::SetClientId { id: next() },
            T::CanDoTimeout => {
                let function = next();
                let raw = next();
                if raw.len() > 20 {
                    return Err(ProtocolError::BadNumber { field: "timeout" });
                }
                Packet::CanDoTimeout {
                    function,
                    timeout: atoi(&raw).clamp(0, u32::MAX as i64) as u32,
                }
            }
            T::AllYours => Packet::AllYours,
            T::WorkException => Packet::WorkException {
                handle: next(),
                data: next(),
            },
            T::OptionReq => Packet::OptionReq {
                name: strip_nul(next()),
            },
            T::OptionRes => Packet::OptionRes { name: next() },
            T::WorkData => Packet::WorkData {
                handle: next(),
                data: next(),
            },
            T::WorkWarning => Packet::WorkWarning {
                handle: next(),
                data: next(),
            },
            T::GrabJobUniq => Packet::GrabJobUniq,
            T::JobAssignUniq => Packet::JobAssignUniq {
                handle: next(),
                function: next(),
                unique: next(),
                data: next(),
            },
            T::SubmitJobSched => Packet::SubmitJobSched {
                function: next(),
                unique: next(),
                minute: next(),
                hour: next(),
                day_of_month: next(),
                month: next(),
                day_of_week: next(),
                data: next(),
            },
            T::SubmitJobEpoch => {
                let function = next();
                let unique = next();
                let raw = next();
                let when = if raw.is_empty() {
                    0
                } else {
                    strict_i64("epoch", &raw)?
                };
                Packet::SubmitJobEpoch {
                    function,
                    unique,
                    when,
                    data: next(),
                }
            }
            T::SubmitReduceJob | T::SubmitReduceJobBackground => Packet::SubmitReduceJob {
                function: next(),
                unique: next(),
                reducer: next(),
                aggregator: next(),
                data: next(),
                background: kind == T::SubmitReduceJobBackground,
            },
            T::GrabJobAll => Packet::GrabJobAll,
            T::JobAssignAll => Packet::JobAssignAll {
                handle: next(),
                function: next(),
                unique: next(),
                reducer: next(),
                data: next(),
            },
            T::GetStatusUnique => Packet::GetStatusUnique { unique: next() },
            T::StatusResUnique => Packet::StatusResUnique {
                unique: next(),
                known: flag(&next()),
                running: flag(&next()),
                numerator: atou32(&next()),
                denominator: atou32(&next()),
                client_count: atou32(&next()),
            },
        };
        Ok(p)
    }
}

/// The most fields any packet has (SUBMIT_JOB_SCHED).
const MAX_FIELDS: usize = 8;

/// The split fields of one payload, handed out in order (no heap allocation).
struct Fields {
    f: [Bytes; MAX_FIELDS],
    next: usize,
}

impl Fields {
    fn next(&mut self) -> Bytes {
        let b = self
            .f
            .get_mut(self.next)
            .map(std::mem::take)
            .unwrap_or_default();
        self.next += 1;
        b
    }
}

/// Splits `payload` into `nfields` fields: the first `nfields - 1` end at a
/// NUL, the last runs to the end of the payload and may contain NULs.
fn split_fields(kind: PacketType, payload: Bytes, nfields: usize) -> Result<Fields, ProtocolError> {
    let mut out = Fields {
        f: Default::default(),
        next: 0,
    };
    if nfields == 0 {
        // Zero-argument packets: any payload is ignored.
        return Ok(out);
    }
    debug_assert!(nfields <= MAX_FIELDS);
    let mut rest = payload;
    for i in 0..nfields - 1 {
        match memchr0(&rest) {
            Some(pos) => {
                out.f[i] = rest.slice(..pos);
                rest.advance(pos + 1);
            }
            None => {
                return Err(ProtocolError::MissingArguments {
                    packet: kind.name(),
                    expected: kind.separators(),
                    found: i,
                })
            }
        }
    }
    out.f[nfields - 1] = rest;
    Ok(out)
}

fn memchr0(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_matches_to_string() {
        for v in [0i64, 7, 10, 1234, -1, -1234, i64::MAX, i64::MIN] {
            assert_eq!(Decimal::new(v).as_bytes(), v.to_string().as_bytes());
        }
        for v in [0u64, 9, 4_294_967_295, u64::MAX] {
            assert_eq!(Decimal::unsigned(v).as_bytes(), v.to_string().as_bytes());
        }
        assert_eq!(Decimal::from(u32::MAX).as_bytes(), b"4294967295");
        assert_eq!(
            format!("{:?} {}", Decimal::new(-5), Decimal::from(7u32)),
            "-5 7"
        );
    }

    #[test]
    fn encode_packet_checks_before_writing() {
        let mut dst = BytesMut::from(&b"keep"[..]);
        assert_eq!(
            encode_packet(
                &mut dst,
                Magic::Req,
                PacketType::WorkStatus,
                &[b"h\0", b"1", b"2"]
            ),
            Err(ProtocolError::NulInArgument {
                packet: "WORK_STATUS",
                index: 0
            })
        );
        assert_eq!(&dst[..], b"keep");
        encode_packet(&mut dst, Magic::Res, PacketType::Noop, &[]).unwrap();
        assert_eq!(&dst[..], b"keep\0RES\0\0\0\x06\0\0\0\0");
    }
}
