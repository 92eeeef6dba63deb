//! What a binary packet's 12-byte header carries: the magic (`\0REQ` to a
//! server, `\0RES` from one), the packet type (all 42 codes with their
//! field layout, from one table) and the job priority that selects a SUBMIT
//! type. Kept apart from [`super::packet`], which is about the fields.

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
        /// The numeric packet codes of the Gearman binary protocol (1..=42), and
        /// polygear's extensions `WORK_FAIL_REASON` (1001), `SUBMIT_RETAIN`
        /// (1002), `GET_RESULT` (1003) and `RESULT_RES` (1004).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum PacketType {
            $( #[doc = $wire] $name = $code, )*
        }

        impl PacketType {
            /// Maps a wire code to its type; `None` for 0 and unknown codes.
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
    // polygear extension (not part of the Gearman protocol): see
    // `PacketType::WorkFailReason`.
    1001 => WorkFailReason, "WORK_FAIL_REASON", 1, true;
    // polygear extensions for retained results (sent only to polygeard):
    // see `Packet::SubmitRetain`, `Packet::GetResult`, `Packet::ResultRes`.
    1002 => SubmitRetain, "SUBMIT_RETAIN", 1, false;
    1003 => GetResult, "GET_RESULT", 1, false;
    1004 => ResultRes, "RESULT_RES", 2, true;
}

/// The OPTION_REQ name that asks polygeard for [`PacketType::WorkFailReason`]
/// packets (other servers answer ERROR: the option is then simply off).
pub const OPTION_FAIL_REASONS: &str = "polygear-fail-reasons";

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
