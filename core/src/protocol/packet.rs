//! Typed Gearman binary packets: [`Packet`], one variant per packet type with
//! its fields, and the way to the wire: [`encode_packet`], the one encoder,
//! and [`Packet::encode`]. Reading a payload back is [`Packet::decode`] (in `decode.rs`).

use bytes::{BufMut, Bytes, BytesMut};

pub use super::header::{
    Magic, PacketType, Priority, HEADER_LEN, MAGIC_REQ, MAGIC_RES, OPTION_FAIL_REASONS,
};
pub use super::number::{atoi, Decimal};
use super::ProtocolError;

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
    /// polygear extension (code 1001), sent by polygeard only to clients that
    /// sent `OPTION_REQ polygear-fail-reasons`, just before a WORK_FAIL the
    /// server decided itself: why the job failed (e.g. "the worker exceeded
    /// its 1 s timeout").
    WorkFailReason { handle: Bytes, reason: Bytes },
    /// polygear extension (code 1002, request, polygeard only): keep the
    /// result of the next background submission on this connection for
    /// `seconds` after it ends (0: the function's setting). No reply.
    SubmitRetain { seconds: u32 },
    /// polygear extension (code 1003, request, polygeard only): the retained
    /// result of a job; answered by [`Packet::ResultRes`].
    GetResult { handle: Bytes },
    /// polygear extension (code 1004, response): a job's `state` (`complete`,
    /// `queued`, `running`, `failed`, `exception` or `unknown`) and `data`
    /// (the result when complete, the message for an exception, else empty).
    ResultRes {
        handle: Bytes,
        state: Bytes,
        data: Bytes,
    },
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
            Packet::WorkFailReason { .. } => T::WorkFailReason,
            Packet::SubmitRetain { .. } => T::SubmitRetain,
            Packet::GetResult { .. } => T::GetResult,
            Packet::ResultRes { .. } => T::ResultRes,
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
            P::WorkFailReason { handle, reason } => f(&[handle, reason]),
            P::SubmitRetain { seconds } => f(&[Decimal::from(*seconds).as_bytes()]),
            P::GetResult { handle } => f(&[handle]),
            P::ResultRes {
                handle,
                state,
                data,
            } => f(&[handle, state, data]),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
