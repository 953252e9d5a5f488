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
//!
//! A socket message larger than the receive buffer never reaches the core:
//! the channel consumes it and fails the receive, and [`refuse_oversized`]
//! answers it with `EINVAL` and logs it the same way, so the session goes on.

use crate::channel::Channel;
use crate::error::ChannelError;
use fuselage_core::abi::fuse_out_header;
use fuselage_core::request::parse_header;
use fuselage_core::{Dispatched, Errno, Opcode, ParseError};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use zerocopy::IntoBytes;

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

/// The kind counted for a message larger than the receive buffer (after
/// those of [`ParseError::kind`]).
pub const OVERSIZED: usize = ParseError::KINDS;

/// Per-kind counters of bad input; [`report`] uses one shared by the
/// process.
#[derive(Debug)]
pub struct BadInputLog {
    slots: [Slot; ParseError::KINDS + 1],
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
            slots: [const { Slot::new() }; ParseError::KINDS + 1],
        }
    }

    /// Counts one message with `error` at time `now` (seconds, monotonic).
    /// Returns `Some(n)` when a line is due, `n` being how many messages of
    /// this kind went unlogged since the last line; `None` when it is
    /// counted only.
    pub fn note(&self, error: &ParseError, now: u64) -> Option<u64> {
        self.note_kind(error.kind(), now)
    }

    /// Like [`note`](Self::note) for a kind number: [`ParseError::kind`] or
    /// [`OVERSIZED`] (anything larger counts as [`OVERSIZED`]).
    pub fn note_kind(&self, kind: usize, now: u64) -> Option<u64> {
        let slot = &self.slots[kind.min(OVERSIZED)];
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
    log_line(error.kind(), error, replied.then(|| error.errno()));
}

/// Writes the line for one message of `kind` if the rate limit allows:
/// what was wrong, and the errno it was answered with (`None`: dropped).
fn log_line(kind: usize, what: &dyn std::fmt::Display, answer: Option<Errno>) {
    let Some(unlogged) = LOG.note_kind(kind, now_secs()) else {
        return;
    };
    let answer = match answer {
        Some(e) => e.name().unwrap_or("an error"),
        None => "dropped",
    };
    if unlogged == 0 {
        eprintln!("fuselage: bad input from the FUSE peer: {what}; {answer}");
    } else {
        eprintln!(
            "fuselage: bad input from the FUSE peer: {what}; {answer} \
             ({unlogged} more of this kind not logged in the last {INTERVAL_SECS} s)"
        );
    }
}

/// Handles a receive that failed with [`ChannelError::MessageTooLarge`]: the
/// message was consumed whole and `header` holds its first bytes (see
/// [`Channel::receive`]). It is answered with `EINVAL` when its header is
/// readable, its `unique` not 0 and its opcode expects a reply, else
/// dropped, and logged (rate-limited). Returns whether `err` was that error;
/// for any other the caller decides.
#[cold]
pub fn refuse_oversized(channel: &Channel, header: &[u8], err: &io::Error) -> bool {
    let Some(&ChannelError::MessageTooLarge { len, capacity }) =
        err.get_ref().and_then(|e| e.downcast_ref::<ChannelError>())
    else {
        return false;
    };
    let mut answer = None;
    if let Ok(h) = parse_header(header)
        && h.unique != 0
        && !Opcode::from_u32(h.opcode).is_some_and(|op| op.is_no_reply())
    {
        let out = fuse_out_header {
            len: std::mem::size_of::<fuse_out_header>() as u32,
            error: Errno::EINVAL.to_wire(),
            unique: h.unique,
        };
        // A peer that stopped reading shows on the next receive.
        if channel.send(&[out.as_bytes()]).is_ok() {
            answer = Some(Errno::EINVAL);
        }
    }
    let what = ChannelError::MessageTooLarge { len, capacity };
    log_line(OVERSIZED, &what, answer);
    true
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
        // Oversized messages have their own kind.
        assert_eq!(log.note_kind(OVERSIZED, 100), Some(0));
        assert_eq!(log.note_kind(OVERSIZED, 101), None);
        assert_eq!(log.note_kind(OVERSIZED + 5, 111), Some(1));
    }
}
