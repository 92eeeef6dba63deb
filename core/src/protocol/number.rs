//! Numbers in text fields: the lenient `atoi` gearmand parses them with, the
//! strict parse where a bad number is an error, and [`Decimal`], the one
//! formatter for every number polygear puts on the wire.

use super::ProtocolError;

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

pub(super) fn atou32(b: &[u8]) -> u32 {
    atoi(b).clamp(0, u32::MAX as i64) as u32
}

pub(super) fn flag(b: &[u8]) -> bool {
    atoi(b) != 0
}

pub(super) fn strict_i64(name: &'static str, b: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or(ProtocolError::BadNumber { field: name })
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
}
