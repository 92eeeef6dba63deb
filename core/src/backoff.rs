//! Exponential backoff, written once for every retry loop in the crate.
//!
//! The client's reconnect delay per server (`client/pool.rs`), the worker's
//! reconnect delay per server task (`worker/grab.rs`) and the hand-off
//! watchdog's re-check interval (`worker/queue.rs`), and polygeard's queue
//! stores reconnecting to their database, all wait `min` first,
//! then double up to `max`, and start over after a success. [`Backoff`] is
//! that sequence; the callers only decide when to ask for the next delay and
//! when to [`Backoff::reset`].

use std::time::Duration;

/// Delays of `min`, `2 × min`, `4 × min`, … capped at `max`, until [`Backoff::reset`].
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The last delay handed out; zero before the first one (and after a reset).
    current: Duration,
}

impl Backoff {
    /// A backoff from `min` to `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            current: Duration::ZERO,
        }
    }

    /// The next delay: `min` after a reset, else the last one doubled (at most `max`).
    pub fn next_delay(&mut self) -> Duration {
        self.current = if self.current.is_zero() {
            self.min
        } else {
            self.current.saturating_mul(2).min(self.max)
        };
        self.current
    }

    /// Starts over: the next delay is `min` again.
    pub fn reset(&mut self) {
        self.current = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_max_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let seq: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(seq, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(100));
        // A max below the min is raised to it.
        let mut b = Backoff::new(ms(100), ms(10));
        assert_eq!((b.next_delay(), b.next_delay()), (ms(100), ms(100)));
        // No overflow with huge values; a zero min stays zero.
        let mut b = Backoff::new(Duration::MAX / 2 + ms(1), Duration::MAX);
        b.next_delay();
        assert_eq!(b.next_delay(), Duration::MAX);
        let mut b = Backoff::new(Duration::ZERO, ms(10));
        assert_eq!(
            (b.next_delay(), b.next_delay()),
            (Duration::ZERO, Duration::ZERO)
        );
    }
}
