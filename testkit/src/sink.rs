//! Reply sinks for tests: one that records messages in memory and one that
//! sends them over the simulated device.

use crate::channel::{pread_range, send_parts};
use crate::wire::Reply;
use fuselage_core::abi::fuse_out_header;
use fuselage_core::{Errno, FileRange, OUT_HEADER_LEN, ReplySink};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use zerocopy::{FromBytes, IntoBytes};

/// Sends `parts` followed by the bytes of `file`, read with `pread(2)`.
///
/// As [`ReplySink::send_file`] asks: when the file is shorter than
/// promised, the header's `len` is lowered to what was read; when it cannot
/// be read, the request is answered `EIO` instead.
fn send_with_file(parts: &[&[u8]], file: FileRange<'_>, send: impl FnOnce(&[&[u8]])) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    let Ok((header, after_header)) = fuse_out_header::read_from_prefix(first) else {
        // Not a reply: pass it on as it is for the peer to reject.
        send(parts);
        return;
    };
    match pread_range(file.fd.as_raw_fd(), file.offset, file.len as usize) {
        Ok(data) => {
            let missing = file.len as usize - data.len();
            let header = fuse_out_header {
                len: header.len - missing as u32,
                ..header
            };
            let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 2);
            all.push(header.as_bytes());
            all.push(after_header);
            all.extend_from_slice(rest);
            all.push(&data);
            send(&all);
        }
        Err(_) => {
            let eio = fuse_out_header {
                len: OUT_HEADER_LEN as u32,
                error: Errno::EIO.to_wire(),
                unique: header.unique,
            };
            send(&[eio.as_bytes()]);
        }
    }
}

/// A [`ReplySink`] that keeps every message in memory, for driving a
/// `Dispatcher` directly without any channel.
///
/// File ranges ([`ReplySink::send_file`]) are read with `pread(2)` and
/// recorded as bytes.
///
/// ```
/// use fuselage_core::reply::ReplyEmpty;
/// use fuselage_testkit::ReplyRecorder;
/// let rec = ReplyRecorder::new();
/// ReplyEmpty::new(7, &rec).ok();
/// let replies = rec.take_replies();
/// assert_eq!(replies[0].unique(), 7);
/// assert!(rec.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct ReplyRecorder {
    messages: Mutex<Vec<Vec<u8>>>,
}

impl ReplyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        ReplyRecorder::default()
    }

    fn push(&self, parts: &[&[u8]]) {
        let msg = parts.concat();
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
    }

    /// Takes the messages recorded so far, raw.
    pub fn take(&self) -> Vec<Vec<u8>> {
        core::mem::take(&mut *self.messages.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the messages recorded so far, parsed with the kernel's checks.
    ///
    /// # Panics
    ///
    /// If a message would be refused by the kernel (see [`Reply::parse`]).
    pub fn take_replies(&self) -> Vec<Reply> {
        self.take()
            .iter()
            .map(|m| Reply::parse(m).unwrap_or_else(|e| panic!("kernel would refuse {m:?}: {e}")))
            .collect()
    }

    /// Number of messages recorded and not yet taken.
    pub fn len(&self) -> usize {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplySink for ReplyRecorder {
    fn send(&self, parts: &[&[u8]]) {
        self.push(parts)
    }

    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        send_with_file(parts, file, |all| self.push(all))
    }
}

/// A [`ReplySink`] writing each reply as one `sendmsg(2)` (an iovec per
/// part) to the server end of a [`channel_pair`](crate::channel_pair).
///
/// It is `Send + 'static`, so filesystems may keep a reply handle and answer
/// from another thread. Send errors that mean the kernel side is gone
/// (`EPIPE`, `ECONNRESET`, `ENOTCONN`) are ignored; others are printed.
#[derive(Debug, Clone)]
pub struct SocketSink {
    fd: Arc<OwnedFd>,
}

impl SocketSink {
    /// A sink writing to `fd`.
    pub fn new(fd: Arc<OwnedFd>) -> Self {
        SocketSink { fd }
    }

    fn write(&self, parts: &[&[u8]]) {
        if let Err(e) = send_parts(self.fd.as_fd(), parts) {
            match e.raw_os_error() {
                Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN) => {}
                _ => eprintln!("fuselage-testkit: sending a reply failed: {e}"),
            }
        }
    }
}

impl ReplySink for SocketSink {
    fn send(&self, parts: &[&[u8]]) {
        self.write(parts)
    }

    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        send_with_file(parts, file, |all| self.write(all))
    }
}

/// Writes `data` into a fresh anonymous file (`memfd_create(2)`), for tests
/// of replies that carry a [`FileRange`].
pub fn memfd_with(data: &[u8]) -> io::Result<OwnedFd> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: the name is a valid NUL-terminated string.
    let fd = unsafe { libc::memfd_create(c"fuselage-testkit".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    file.write_all(data)?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuselage_core::reply::ReplyData;

    #[test]
    fn file_ranges_are_read_and_short_files_fix_len() {
        let fd = memfd_with(b"0123456789").unwrap();
        let rec = ReplyRecorder::new();
        ReplyData::new(4, &rec).file(FileRange::new(fd.as_fd(), 2, 3));
        ReplyData::new(6, &rec).file(FileRange::new(fd.as_fd(), 8, 100));
        let r = rec.take_replies();
        assert_eq!((r[0].unique(), &r[0].body[..]), (4, &b"234"[..]));
        assert_eq!((r[1].header.len, &r[1].body[..]), (18, &b"89"[..]));

        // A directory cannot be read with pread(2): EISDIR.
        let dir = std::fs::File::open("/").unwrap();
        ReplyData::new(8, &rec).file(FileRange::new(dir.as_fd(), 0, 5));
        let r = rec.take_replies();
        assert_eq!((r[0].unique(), r[0].errno()), (8, Some(libc::EIO)));
    }
}
