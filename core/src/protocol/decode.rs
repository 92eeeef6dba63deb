//! From payload bytes to a typed [`Packet`]: the payload is split into exactly
//! the number of fields the type has (the last may contain NULs), without
//! copying (`Bytes` slices) or allocating.

use bytes::{Buf, Bytes};

use super::header::{PacketType, Priority};
use super::number::{atoi, atou32, flag, strict_i64};
use super::packet::Packet;
use super::ProtocolError;

impl Packet {
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
            T::WorkFailReason => Packet::WorkFailReason {
                handle: next(),
                reason: next(),
            },
            T::SubmitRetain => {
                let raw = next();
                if raw.len() > 20 {
                    return Err(ProtocolError::BadNumber { field: "seconds" });
                }
                Packet::SubmitRetain {
                    seconds: atoi(&raw).clamp(0, u32::MAX as i64) as u32,
                }
            }
            T::GetResult => Packet::GetResult {
                handle: strip_nul(next()),
            },
            T::ResultRes => Packet::ResultRes {
                handle: next(),
                state: next(),
                data: next(),
            },
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

/// A field without its trailing NUL (some peers terminate handles and names with one).
fn strip_nul(b: Bytes) -> Bytes {
    if b.last() == Some(&0) {
        b.slice(..b.len() - 1)
    } else {
        b
    }
}
