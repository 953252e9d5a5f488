//! Bad input from the peer on a FUSE channel, logged once per kind and then
//! rate-limited.
//!
//! Whatever a peer sends (a hostile process on a socket, a sandbox's kernel,
//! a fuzzer), the core's [`Dispatcher`](fuselage_core::Dispatcher) answers
//! with an error or drops the message and says so with
//! [`Dispatched::Malformed`]. Transports hand every outcome to [`report`]:
//! the first message of each kind ([`ParseError::kind`]) is logged to stderr
//! at once, later ones at most once per [`INTERVAL_SECS`] with how many were
//! not logged in between. Counting is a few atomic operations on a static
//! table: nothing allocates, and a flood cannot flood the log.

use fuselage_core::{Dispatched, ParseError};
use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds between two log lines of one kind.
pub const INTERVAL_SECS: u64 = 10;

/// One kind's state: when its next line may be written, and how many
/// messages went unlogged since the last line.
#[derive(Debug)]
struct Slot {
    next: AtomicU64,
    unlogged: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            next: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }
}

/// Per-kind counters of bad input; [`report`] uses one shared by the
/// process.
#[derive(Debug)]
pub struct BadInputLog {
    slots: [Slot; ParseError::KINDS],
}

impl Default for BadInputLog {
    fn default() -> Self {
        Self::new()
    }
}

impl BadInputLog {
    /// A log that has seen nothing.
    pub const fn new() -> BadInputLog {
        BadInputLog {
            slots: [const { Slot::new() }; ParseError::KINDS],
        }
    }

    /// Counts one message with `error` at time `now` (seconds, monotonic).
    /// Returns `Some(n)` when a line is due, `n` being how many messages of
    /// this kind went unlogged since the last line; `None` when it is
    /// counted only.
    pub fn note(&self, error: &ParseError, now: u64) -> Option<u64> {
        let slot = &self.slots[error.kind()];
        let next = slot.next.load(Ordering::Relaxed);
        if now >= next
            && slot
                .next
                .compare_exchange(
                    next,
                    now + INTERVAL_SECS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(slot.unlogged.swap(0, Ordering::Relaxed));
        }
        slot.unlogged.fetch_add(1, Ordering::Relaxed);
        None
    }
}

static LOG: BadInputLog = BadInputLog::new();

/// Seconds on the monotonic clock.
fn now_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64
}

/// Logs `outcome` if it is bad input (and the rate limit allows); other
/// outcomes cost one comparison.
#[inline]
pub fn report(outcome: &Dispatched) {
    if let Dispatched::Malformed { error, replied } = outcome {
        report_bad(error, *replied);
    }
}

#[cold]
fn report_bad(error: &ParseError, replied: bool) {
    let Some(unlogged) = LOG.note(error, now_secs()) else {
        return;
    };
    let answer = match (replied, error.errno().name()) {
        (true, Some(name)) => name,
        (true, None) => "an error",
        (false, _) => "dropped",
    };
    if unlogged == 0 {
        eprintln!("fuselage: bad input from the FUSE peer: {error}; {answer}");
    } else {
        eprintln!(
            "fuselage: bad input from the FUSE peer: {error}; {answer} \
             ({unlogged} more of this kind not logged in the last {INTERVAL_SECS} s)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_once_per_interval_with_a_count() {
        let log = BadInputLog::new();
        let zero = ParseError::ZeroUnique { opcode: 1 };
        let init = ParseError::RepeatedInit;
        assert_eq!(log.note(&zero, 100), Some(0));
        // Another kind has its own first line.
        assert_eq!(log.note(&init, 100), Some(0));
        for t in 100..110 {
            assert_eq!(log.note(&zero, t), None, "at {t}");
        }
        // Same kind, other fields: still the same kind.
        assert_eq!(log.note(&ParseError::ZeroUnique { opcode: 3 }, 109), None);
        assert_eq!(log.note(&zero, 110), Some(11));
        assert_eq!(log.note(&zero, 111), None);
        assert_eq!(log.note(&init, 200), Some(0));
    }
}
