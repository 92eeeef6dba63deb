//! Small helpers several parts of the crate need, defined once.
//!
//! [`lock`] takes a `std::sync::Mutex` whatever a panicking holder left
//! behind: no lock in this crate is held across user code, and the guarded
//! state stays consistent if a thread panics holding it, so poisoning is
//! not an error here. [`later`] computes deadlines from user-supplied
//! durations without panicking on absurd ones (`Duration::MAX`).
//! [`release_if_larger`] is the one shrink rule of the read buffer
//! ([`FrameReader`](crate::frame::FrameReader)) and the write buffers
//! ([`Outbox`](crate::outbox::Outbox)).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

/// Locks `m`, taking the data back if a panicking holder poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `at + d`, saturating at a far-future instant instead of panicking on
/// huge durations (e.g. a timeout or `poll_interval` of `Duration::MAX`).
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Replaces an emptied `buf` by a new one of `initial` capacity if its
/// allocation is larger than `keep` bytes (a large packet passed through).
///
/// `capacity()` cannot tell: after `advance` or `split_to` it counts only the
/// space behind the consumed bytes, while the next `reserve` takes the whole
/// allocation back. `try_reclaim` sees it, as long as no frozen part of the
/// buffer (a packet still in use) shares it: then there is nothing to free.
pub(crate) fn release_if_larger(buf: &mut BytesMut, keep: usize, initial: usize) {
    debug_assert!(buf.is_empty());
    if buf.try_reclaim(keep.saturating_add(1)) {
        *buf = BytesMut::with_capacity(initial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
    }

    #[test]
    fn release_if_larger_sees_the_allocation() {
        use bytes::{Buf, BufMut};
        let mut b = BytesMut::new();
        b.put_slice(&[1; 3 << 20]);
        b.advance(3 << 20);
        assert_eq!(b.capacity(), 0, "what capacity() reports");
        release_if_larger(&mut b, 1 << 20, 100);
        assert_eq!(b.capacity(), 100);
        b.put_slice(&[1; 50]);
        b.advance(50);
        release_if_larger(&mut b, 1 << 20, 100);
        assert!(b.try_reclaim(100), "a small allocation is kept");
    }

    #[test]
    fn lock_survives_poisoning() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
