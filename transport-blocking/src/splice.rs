//! Zero-copy replies: send a FUSE reply whose data is a range of a file, with splice(2).
//!
//! The kernel parses a reply spliced into `/dev/fuse` only if it arrives in ONE splice call of
//! exactly the length its out-header announces (`fuse_dev_splice_write` fails with `EINVAL` if
//! the pipe holds less). So a reply goes through a per-thread pipe in three steps:
//!
//! 1. the header (out-header plus any reply struct) is written into the empty pipe;
//! 2. the file range is spliced into the pipe behind it, until all of it is there;
//! 3. the whole pipe content is spliced into the FUSE fd in one call.
//!
//! If the file yields fewer bytes than promised (it shrank since the caller sized the reply),
//! or the reply does not fit the pipe, nothing is sent: the pipe is drained and
//! [`SpliceOutcome::Short`] tells the caller to build the reply again by copying. Every return
//! path leaves the pipe empty.
//!
//! ```no_run
//! # use std::os::fd::AsFd;
//! # fn demo(fuse: &std::fs::File, file: &std::fs::File) -> std::io::Result<()> {
//! use fuselage_transport_blocking::splice::{SpliceOutcome, SplicePipe};
//! let mut pipe = SplicePipe::new(16 + 128 * 1024)?;
//! let len = 4096usize;
//! let mut header = [0u8; 16];
//! header[..4].copy_from_slice(&((16 + len) as u32).to_le_bytes());
//! match pipe.send_file(fuse.as_fd(), &[&header], file.as_fd(), 0, len)? {
//!     SpliceOutcome::Sent => {}
//!     SpliceOutcome::Short { .. } => { /* copy instead */ }
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use fuselage_linux::error::ChannelError;
use fuselage_linux::sys::{grow_pipe, page_size, pipe_nonblocking};

use fuselage_core::{MAX_SINK_PARTS, OUT_HEADER_LEN};

/// What became of a [`SplicePipe::send_file`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum SpliceOutcome {
    /// The whole reply (header and `len` data bytes) reached the FUSE fd.
    Sent,
    /// Nothing was sent; resend by copying. Either the file ended after `got` bytes, before
    /// `len` (it shrank: copy what it really has), or the reply did not fit the pipe (see
    /// [`SplicePipe::fits`]; `got` is then what was spliced before the pipe filled up, possibly
    /// 0).
    Short {
        /// Data bytes the file delivered before the attempt stopped.
        got: usize,
    },
}

/// A pipe for splicing replies, one per worker thread.
///
/// The pipe is non-blocking: if a reply needs more pipe slots than there are (a file range not
/// aligned to pages takes one page more), splicing into it fails with `EAGAIN` instead of
/// blocking forever on a pipe nobody else reads, and the reply is reported as
/// [`SpliceOutcome::Short`]. Draining relies on the same property: it reads until `EAGAIN`.
#[derive(Debug)]
pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Where leftovers go when a reply is abandoned.
    null: OwnedFd,
    /// Pipe size in bytes as the kernel set it.
    size: usize,
    page: usize,
}

impl SplicePipe {
    /// Creates a pipe that can hold a reply of `capacity` bytes (header plus max_read) at
    /// any file offset.
    ///
    /// Asks F_SETPIPE_SZ for the next power of two of pages covering `capacity` plus two pages
    /// (one for the header, one for an unaligned range's extra partial page). Unprivileged
    /// processes may not exceed `/proc/sys/fs/pipe-max-size` (1 MiB by default); the error of
    /// the fcntl is returned then, so callers can fall back to copying (or ask for less).
    ///
    /// Without `CAP_SYS_RESOURCE` the pipe grows at most to
    /// `/proc/sys/fs/pipe-max-size`; check [`SplicePipe::fits`] per reply.
    pub fn new(capacity: usize) -> io::Result<SplicePipe> {
        let page = page_size();
        let (read, write) = pipe_nonblocking()?;
        let pages = capacity.div_ceil(page).saturating_add(2);
        let want = pages
            .checked_next_power_of_two()
            .and_then(|p| p.checked_mul(page))
            .filter(|&w| w <= libc::c_int::MAX as usize)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let set = grow_pipe(write.as_fd(), want)?;
        // SAFETY: the path is a NUL-terminated literal; the fd is checked below.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if null < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `null` was just opened by us and is owned by nobody else.
        let null = unsafe { OwnedFd::from_raw_fd(null) };
        Ok(SplicePipe {
            read,
            write,
            null,
            size: set,
            page,
        })
    }

    /// Largest reply (header plus data) that fits when the file range starts on a page
    /// boundary; unaligned ranges can take one page less.
    pub fn capacity(&self) -> usize {
        self.size.saturating_sub(self.page)
    }

    /// Whether a reply with `header_len` header bytes and `len` data bytes from file offset
    /// `offset` fits the pipe (one slot for the header, one per page the range touches).
    pub fn fits(&self, header_len: usize, offset: u64, len: usize) -> bool {
        let range_pages = ((offset % self.page as u64) as usize)
            .saturating_add(len)
            .div_ceil(self.page);
        header_len <= self.page
            && range_pages.saturating_add(1).saturating_mul(self.page) <= self.size
    }

    /// Sends a reply made of `header` (the out-header first, then any reply struct) followed
    /// by `len` bytes of `file_fd` from `offset`, into `out_fd` with one final splice.
    ///
    /// The out-header's `len` must already be `header bytes + len`
    /// ([`ChannelError::ReplyLengthMismatch`] otherwise). Nothing reaches `out_fd` unless the
    /// whole reply is in the pipe; see [`SpliceOutcome`] for the cases where the caller must
    /// copy instead. On `/dev/fuse` the final splice takes the whole reply at once; other
    /// fds (pipes in tests) may take it in several calls, which are continued.
    pub fn send_file(
        &mut self,
        out_fd: BorrowedFd<'_>,
        header: &[&[u8]],
        file_fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> io::Result<SpliceOutcome> {
        if header.len() > MAX_SINK_PARTS {
            return Err(ChannelError::TooManyParts {
                parts: header.len(),
            }
            .into());
        }
        let header_len: usize = header.iter().map(|p| p.len()).sum();
        let total = header_len
            .checked_add(len)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let mut announced = [0u8; 4];
        for (dst, src) in announced
            .iter_mut()
            .zip(header.iter().flat_map(|p| p.iter()))
        {
            *dst = *src;
        }
        let announced = u32::from_le_bytes(announced);
        if header_len < OUT_HEADER_LEN || announced as usize != total {
            return Err(ChannelError::ReplyLengthMismatch {
                header_len: announced,
                actual: total,
            }
            .into());
        }
        let mut file_offset = libc::loff_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        if !self.fits(header_len, offset, len) {
            return Ok(SpliceOutcome::Short { got: 0 });
        }

        // 1. The header. write(2), not vmsplice(2): the header is tens of bytes, copying it
        // into the pipe's own page is cheaper than pinning the caller's page, and the pipe then
        // owns its bytes, so the caller may reuse its header buffer at once and a drained or
        // abandoned reply never refers to caller memory.
        if let Err(err) = self.write_header(header, header_len) {
            self.drain();
            return Err(err);
        }

        // 2. The data.
        let mut got = 0usize;
        while got < len {
            let n = splice_retry(
                file_fd.as_raw_fd(),
                &mut file_offset,
                self.write.as_raw_fd(),
                std::ptr::null_mut(),
                len - got,
                libc::SPLICE_F_NONBLOCK,
            );
            match n {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.drain();
                    return Ok(SpliceOutcome::Short { got });
                }
                Err(err) => {
                    self.drain();
                    return Err(err);
                }
            }
        }
        if got < len {
            self.drain();
            return Ok(SpliceOutcome::Short { got });
        }

        // 3. The whole reply, in one call on /dev/fuse.
        let mut moved = 0usize;
        while moved < total {
            let n = splice_retry(
                self.read.as_raw_fd(),
                std::ptr::null_mut(),
                out_fd.as_raw_fd(),
                std::ptr::null_mut(),
                total - moved,
                libc::SPLICE_F_MOVE,
            );
            match n {
                Ok(0) => {
                    self.drain();
                    return Err(ChannelError::ShortWrite {
                        written: moved,
                        total,
                    }
                    .into());
                }
                Ok(n) => moved += n,
                Err(err) => {
                    self.drain();
                    return Err(err);
                }
            }
        }
        Ok(SpliceOutcome::Sent)
    }

    fn write_header(&self, header: &[&[u8]], header_len: usize) -> io::Result<()> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_SINK_PARTS];
        for (slot, part) in iov.iter_mut().zip(header) {
            slot.iov_base = part.as_ptr().cast_mut().cast();
            slot.iov_len = part.len();
        }
        loop {
            // SAFETY: the first `header.len()` iovecs point into live caller slices that the
            // kernel only reads.
            let n = unsafe {
                libc::writev(
                    self.write.as_raw_fd(),
                    iov.as_ptr(),
                    header.len() as libc::c_int,
                )
            };
            if n >= 0 {
                // The pipe is empty and at least a page large, and header_len <= page, so a
                // pipe write of it is atomic (<= PIPE_BUF is guaranteed; a page fits one slot).
                if n as usize == header_len {
                    return Ok(());
                }
                return Err(ChannelError::ShortWrite {
                    written: n as usize,
                    total: header_len,
                }
                .into());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Empties the pipe (to /dev/null, or by reading if that fails). Never blocks: the pipe is
    /// non-blocking, so an empty pipe ends the loop with `EAGAIN`.
    fn drain(&mut self) {
        loop {
            let n = splice_retry(
                self.read.as_raw_fd(),
                std::ptr::null_mut(),
                self.null.as_raw_fd(),
                std::ptr::null_mut(),
                self.size,
                libc::SPLICE_F_NONBLOCK,
            );
            match n {
                Ok(n) if n > 0 => continue,
                Ok(_) => return,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        let mut scratch = [0u8; 512];
        loop {
            // SAFETY: `scratch` is valid for writes of its length.
            let n = unsafe {
                libc::read(
                    self.read.as_raw_fd(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                )
            };
            if n > 0 {
                continue;
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
    }

    /// Bytes currently queued in the pipe (0 between calls).
    pub fn queued(&self) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, which points at a live local.
        if unsafe { libc::ioctl(self.read.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.max(0) as usize)
    }
}

/// splice(2), retrying `EINTR`.
fn splice_retry(
    fd_in: libc::c_int,
    off_in: *mut libc::loff_t,
    fd_out: libc::c_int,
    off_out: *mut libc::loff_t,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    loop {
        // SAFETY: the fds are live for the caller's borrows; each offset pointer is either
        // null or points at a live `loff_t` of the caller.
        let n = unsafe { libc::splice(fd_in, off_in, fd_out, off_out, len, flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both fds were just created and are owned by nobody else.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    fn out_header(total: usize, unique: u64) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&(total as u32).to_le_bytes());
        h[8..].copy_from_slice(&unique.to_le_bytes());
        h
    }

    fn file_with(data: &[u8]) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    fn unread(f: &std::fs::File) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, which points at a live local.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0);
        n as usize
    }

    #[test]
    fn sends_header_then_file_range() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        let file = file_with(&data);
        let (mut rx, tx) = pipe();
        let mut sp = SplicePipe::new(16 + 8192).unwrap();
        let (offset, len) = (1234usize, 9000usize);
        let extra = [0xEEu8; 8];
        let header = out_header(16 + extra.len() + len, 42);
        let outcome = sp
            .send_file(
                tx.as_fd(),
                &[&header, &extra],
                file.as_fd(),
                offset as u64,
                len,
            )
            .unwrap_or_else(|e| panic!("send_file: {e}"));
        // Unaligned 9000 bytes at 1234 touch 3 pages, plus one slot for the header.
        assert!(sp.fits(24, offset as u64, len));
        assert_eq!(outcome, SpliceOutcome::Sent);
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 16 + 8 + len);
        assert_eq!(&got[..16], &header);
        assert_eq!(&got[16..24], &extra);
        assert_eq!(&got[24..], &data[offset..offset + len]);
        assert_eq!(sp.queued().unwrap(), 0);
    }

    #[test]
    fn short_file_sends_nothing_and_leaves_pipe_empty() {
        let file = file_with(&[5u8; 3000]);
        let (rx, tx) = pipe();
        let mut sp = SplicePipe::new(16 + 8192).unwrap();
        let header = out_header(16 + 4096, 1);
        let outcome = sp
            .send_file(tx.as_fd(), &[&header], file.as_fd(), 0, 4096)
            .unwrap();
        assert_eq!(outcome, SpliceOutcome::Short { got: 3000 });
        assert_eq!(sp.queued().unwrap(), 0);
        assert_eq!(unread(&rx), 0);
        // The pipe is reusable afterwards.
        let header = out_header(16 + 3000, 2);
        let outcome = sp
            .send_file(tx.as_fd(), &[&header], file.as_fd(), 0, 3000)
            .unwrap();
        assert_eq!(outcome, SpliceOutcome::Sent);
        assert_eq!(unread(&rx), 3016);
    }

    #[test]
    fn offset_past_end_is_short_zero() {
        let file = file_with(&[1u8; 100]);
        let (rx, tx) = pipe();
        let mut sp = SplicePipe::new(4096).unwrap();
        let header = out_header(16 + 10, 3);
        let outcome = sp
            .send_file(tx.as_fd(), &[&header], file.as_fd(), 500, 10)
            .unwrap();
        assert_eq!(outcome, SpliceOutcome::Short { got: 0 });
        assert_eq!(unread(&rx), 0);
    }

    #[test]
    fn too_large_reply_is_short_without_sending() {
        let file = file_with(&vec![2u8; 1 << 20]);
        let (rx, tx) = pipe();
        let mut sp = SplicePipe::new(4096).unwrap();
        let len = sp.capacity() * 2;
        assert!(!sp.fits(16, 0, len));
        assert!(sp.fits(16, 0, sp.capacity() - 16));
        assert!(!sp.fits(16, 4095, sp.capacity() - 16));
        let header = out_header(16 + len, 4);
        let outcome = sp
            .send_file(tx.as_fd(), &[&header], file.as_fd(), 0, len)
            .unwrap();
        assert_eq!(outcome, SpliceOutcome::Short { got: 0 });
        assert_eq!(sp.queued().unwrap(), 0);
        assert_eq!(unread(&rx), 0);
    }

    #[test]
    fn wrong_header_length_is_refused() {
        let file = file_with(&[1u8; 100]);
        let (rx, tx) = pipe();
        let mut sp = SplicePipe::new(4096).unwrap();
        let header = out_header(16 + 99, 5);
        let err = sp
            .send_file(tx.as_fd(), &[&header], file.as_fd(), 0, 100)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = sp
            .send_file(tx.as_fd(), &[&header[..8]], file.as_fd(), 0, 0)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(unread(&rx), 0);
    }

    #[test]
    fn capacity_covers_request() {
        let sp = SplicePipe::new(16 + 128 * 1024).unwrap();
        assert!(sp.capacity() >= 16 + 128 * 1024);
    }
}
