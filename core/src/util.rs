//! Two small helpers the client and the worker both need, defined once.
//!
//! [`lock`] takes a `std::sync::Mutex` whatever a panicking holder left
//! behind: no lock in this crate is held across user code, and the guarded
//! state stays consistent if a thread panics holding it, so poisoning is
//! not an error here. [`later`] computes deadlines from user-supplied
//! durations without panicking on absurd ones (`Duration::MAX`).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

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
