//! The INIT handshake: the first exchange on every FUSE connection, whatever transport serves
//! the rest.
//!
//! The kernel sends INIT on the channel (on `/dev/fuse` even when FUSE-over-io_uring follows,
//! which is only agreed by INIT itself) and sends nothing else until it is answered.
//! [`handshake`] reads messages until INIT arrives, lets the core's
//! [`Dispatcher`] negotiate and answer it (also the retry after a major-version downgrade),
//! and returns what was agreed, so a transport can size its buffers from it before it starts.

use crate::channel::{Channel, is_interrupted_reply, is_unmounted};
use fuselage_core::init::InitError;
use fuselage_core::{Dispatched, Dispatcher, FileRange, Filesystem, Negotiated, ReplySink};
use std::fmt;
use std::io;

/// Why INIT could not be answered.
#[derive(Debug)]
pub enum HandshakeError {
    /// The kernel's INIT could not be agreed.
    Init(InitError),
    /// The channel closed or was unmounted before INIT.
    ClosedBeforeInit,
    /// Reading the channel failed.
    Io(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Init(e) => write!(f, "FUSE INIT failed: {e}"),
            HandshakeError::ClosedBeforeInit => {
                f.write_str("the FUSE channel closed before INIT (was the mount aborted?)")
            }
            HandshakeError::Io(e) => write!(f, "FUSE channel I/O failed: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Reads and answers INIT (and the retry after a downgrade) on `channel` through
/// `dispatcher`, and returns what was agreed.
///
/// `max_write` is the largest write the dispatcher will offer at INIT: the receive buffer
/// is `max_write + 4096` bytes (at least 8192, the kernel's minimum), allocated once for the
/// handshake. Messages other than INIT are dropped (the kernel sends none before it);
/// `EINTR`, `EAGAIN` and `ENOENT` are retried.
pub fn handshake<F: Filesystem>(
    channel: &Channel,
    dispatcher: &Dispatcher<F>,
    max_write: u32,
) -> Result<Negotiated, HandshakeError> {
    let size = (max_write as usize + 4096).max(8192);
    // 8-byte aligned, as the core requires.
    let mut words = vec![0u64; size.div_ceil(8)];
    let buf = &mut zerocopy::IntoBytes::as_mut_bytes(words.as_mut_slice())[..size];
    let sink = InitSink(channel);
    loop {
        let n = match channel.receive(buf) {
            Ok(0) => return Err(HandshakeError::ClosedBeforeInit),
            Ok(n) => n,
            Err(e) if is_unmounted(&e) => return Err(HandshakeError::ClosedBeforeInit),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT)
                ) =>
            {
                continue;
            }
            Err(e) if crate::bad_input::refuse_oversized(channel, buf, &e) => continue,
            Err(e) => return Err(HandshakeError::Io(e)),
        };
        let outcome = dispatcher.dispatch(&buf[..n], &sink, &mut []);
        crate::bad_input::report(&outcome);
        match outcome {
            Dispatched::Initialized(neg) => return Ok(neg),
            Dispatched::InitFailed(e) => return Err(HandshakeError::Init(e)),
            Dispatched::Destroyed => return Err(HandshakeError::ClosedBeforeInit),
            _ => continue,
        }
    }
}

/// Sends the INIT reply (or the error that refuses INIT) with one writev.
struct InitSink<'a>(&'a Channel);

impl InitSink<'_> {
    fn send_parts(&self, parts: &[&[u8]]) {
        if let Err(e) = self.0.send(parts) {
            // ENOENT: the kernel dropped the request; ENODEV: the connection is gone and
            // the next read says so. Neither is ours to report.
            if !is_interrupted_reply(&e) && !is_unmounted(&e) {
                eprintln!("fuselage: sending a reply failed: {e}");
                // The kernel refused the reply: answer EIO so it is not left waiting.
                if parts.len() > 1 && parts[0].len() >= 16 {
                    let mut h = [0u8; 16];
                    h.copy_from_slice(&parts[0][..16]);
                    h[..4].copy_from_slice(&16u32.to_ne_bytes());
                    h[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
                    let _ = self.0.send(&[&h]);
                }
            }
        }
    }
}

impl ReplySink for InitSink<'_> {
    fn send(&self, parts: &[&[u8]]) {
        self.send_parts(parts)
    }
    fn send_file(&self, parts: &[&[u8]], _file: FileRange) {
        // INIT has no file-range reply.
        self.send_parts(parts)
    }
}
