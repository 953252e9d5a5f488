//! A FUSE channel over one fd: `/dev/fuse`, or a unix socket on which a peer plays the kernel.
//!
//! A channel moves whole FUSE messages. [`Channel::receive`] returns exactly one request and
//! [`Channel::send`] writes exactly one reply (or notification) from up to
//! [`MAX_SINK_PARTS`] slices (the core's one limit on reply parts) with one
//! writev(2)/sendmsg(2). The framing differs by [`ChannelKind`]:
//!
//! - [`ChannelKind::Device`] and [`ChannelKind::SeqPacket`] keep message boundaries: one read is
//!   one message, one write is one message.
//! - [`ChannelKind::Stream`] has no boundaries: a message is framed by the `len` field (the first
//!   little-endian `u32`) of its header, so reads are completed to exactly that length and short
//!   writes are continued.
//!
//! All methods take `&self`, so a channel can be shared between worker threads (or each worker
//! can get its own [`clone_device`](Channel::clone_device) fd). Nothing here allocates.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::ChannelError;

use fuselage_core::{IN_HEADER_LEN, MAX_SINK_PARTS};

/// `FUSE_DEV_IOC_CLONE`: `_IOR(229, 0, uint32_t)`.
const FUSE_DEV_IOC_CLONE: u32 = 0x8004_E500;

/// What kind of fd carries the FUSE messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// `/dev/fuse` (a character device): one read or write per message.
    Device,
    /// A `SOCK_SEQPACKET` unix socket: one packet per message.
    SeqPacket,
    /// A `SOCK_STREAM` unix socket: messages framed by their header's `len`.
    Stream,
}

impl ChannelKind {
    /// Detects the kind of `fd` with fstat(2) and, for sockets, `getsockopt(SO_TYPE)`.
    ///
    /// Fails with [`ChannelError::UnsupportedFd`] for any other file type or socket type.
    pub fn detect(fd: BorrowedFd<'_>) -> io::Result<ChannelKind> {
        // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is a live fd for the borrow and `st` is a writable stat buffer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let file_type = st.st_mode & libc::S_IFMT;
        match file_type {
            libc::S_IFCHR => Ok(ChannelKind::Device),
            libc::S_IFSOCK => {
                let mut ty: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: `ty` and `len` are valid for writes and `len` holds the size of `ty`.
                let rc = unsafe {
                    libc::getsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_TYPE,
                        (&mut ty as *mut libc::c_int).cast(),
                        &mut len,
                    )
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                match ty {
                    libc::SOCK_SEQPACKET => Ok(ChannelKind::SeqPacket),
                    libc::SOCK_STREAM => Ok(ChannelKind::Stream),
                    other => Err(ChannelError::UnsupportedFd {
                        file_type,
                        socket_type: Some(other),
                    }
                    .into()),
                }
            }
            _ => Err(ChannelError::UnsupportedFd {
                file_type,
                socket_type: None,
            }
            .into()),
        }
    }
}

/// True if `err` means the filesystem was unmounted or the connection aborted (`ENODEV` from
/// `/dev/fuse`): the normal end of a session, not a failure.
pub fn is_unmounted(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENODEV)
}

/// True if `err` is the kernel refusing a reply because the request was interrupted and
/// dropped meanwhile (`ENOENT` on write): normal, the reply is simply not needed any more.
pub fn is_interrupted_reply(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOENT)
}

/// A FUSE channel over one owned fd.
///
/// ```no_run
/// # fn demo(fd: std::os::fd::OwnedFd) -> std::io::Result<()> {
/// use fuselage_linux::channel::Channel;
/// let channel = Channel::new(fd)?;
/// let mut buf = vec![0u8; 128 * 1024 + 4096];
/// let n = channel.receive(&mut buf)?;
/// if n == 0 {
///     return Ok(()); // peer closed the socket
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
    kind: ChannelKind,
}

impl Channel {
    /// Wraps `fd`, detecting its [`ChannelKind`].
    pub fn new(fd: OwnedFd) -> io::Result<Channel> {
        let kind = ChannelKind::detect(fd.as_fd())?;
        Ok(Channel { fd, kind })
    }

    /// Wraps `fd` as a channel of the given kind without checking it.
    pub fn with_kind(fd: OwnedFd, kind: ChannelKind) -> Channel {
        Channel { fd, kind }
    }

    /// The kind of fd this channel uses.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// Borrows the fd (for splice, poll or io_uring registration).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives up the channel, returning its fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Receives exactly one FUSE message into `buf` and returns its length.
    ///
    /// `Ok(0)` means a socket peer closed the channel at a message boundary. On `/dev/fuse`,
    /// an unmount shows as an error for which [`is_unmounted`] is true. `EINTR` is retried.
    /// `buf` must hold the largest message (for `/dev/fuse`: max_write + 4096, and at least
    /// 8192 bytes, or the kernel fails the read with `EINVAL`).
    ///
    /// A socket message larger than `buf` (which no kernel sends, but a peer may) fails with
    /// [`ChannelError::MessageTooLarge`] after it has been consumed whole, with its first
    /// `buf.len()` bytes (its header among them) in `buf`: the next call receives the next
    /// message, and [`refuse_oversized`](crate::bad_input::refuse_oversized) answers it.
    pub fn receive(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.kind {
            ChannelKind::Device => retry_eintr(|| {
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes and the fd is owned.
                unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
            }),
            ChannelKind::SeqPacket => {
                let n = retry_eintr(|| {
                    // SAFETY: as above; MSG_TRUNC only makes the kernel report the real packet
                    // length, it never writes past `buf.len()`.
                    unsafe {
                        libc::recv(
                            self.fd.as_raw_fd(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            libc::MSG_TRUNC,
                        )
                    }
                })?;
                if n > buf.len() {
                    return Err(ChannelError::MessageTooLarge {
                        len: n,
                        capacity: buf.len(),
                    }
                    .into());
                }
                Ok(n)
            }
            ChannelKind::Stream => self.receive_stream(buf),
        }
    }

    fn receive_stream(&self, buf: &mut [u8]) -> io::Result<usize> {
        let capacity = buf.len();
        let Some(header) = buf.get_mut(..IN_HEADER_LEN) else {
            return Err(ChannelError::BufferTooSmall {
                needed: IN_HEADER_LEN,
                have: capacity,
            }
            .into());
        };
        let got = self.read_full(header)?;
        if got == 0 {
            return Ok(0);
        }
        if got < IN_HEADER_LEN {
            return Err(ChannelError::Truncated {
                got,
                expected: IN_HEADER_LEN,
            }
            .into());
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let total = len as usize;
        if total < IN_HEADER_LEN {
            return Err(ChannelError::BadLength { len }.into());
        }
        let Some(body) = buf.get_mut(IN_HEADER_LEN..total) else {
            // Consume the message, so the stream stays framed at the next one. (A bad path
            // only: a page on the stack, read into over and over.)
            let mut discard = [0u8; 4096];
            let mut left = total - IN_HEADER_LEN;
            while left > 0 {
                let chunk = left.min(discard.len());
                let got = self.read_full(&mut discard[..chunk])?;
                if got < chunk {
                    return Err(ChannelError::Truncated {
                        got: total - left + got,
                        expected: total,
                    }
                    .into());
                }
                left -= chunk;
            }
            return Err(ChannelError::MessageTooLarge {
                len: total,
                capacity,
            }
            .into());
        };
        let got = self.read_full(body)?;
        if got < body.len() {
            return Err(ChannelError::Truncated {
                got: IN_HEADER_LEN + got,
                expected: total,
            }
            .into());
        }
        Ok(total)
    }

    /// Reads until `buf` is full or EOF; returns the bytes read.
    fn read_full(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
            let n = retry_eintr(|| {
                // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
                unsafe { libc::read(self.fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) }
            })?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(filled)
    }

    /// Sends one FUSE message made of `parts` (header, reply struct, data...) in one
    /// writev(2) (sendmsg(2) on sockets, with `MSG_NOSIGNAL` so a closed peer is `EPIPE`,
    /// never `SIGPIPE`).
    ///
    /// On a stream socket a short write is continued until the whole message is sent. On the
    /// device and on seqpacket sockets a message is taken whole or not at all; a short write
    /// there is reported as [`ChannelError::ShortWrite`]. `EINTR` is retried. An error for
    /// which [`is_interrupted_reply`] is true means the kernel no longer wanted this reply.
    pub fn send(&self, parts: &[&[u8]]) -> io::Result<()> {
        if parts.len() > MAX_SINK_PARTS {
            return Err(ChannelError::TooManyParts { parts: parts.len() }.into());
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_SINK_PARTS];
        let mut total = 0usize;
        for (slot, part) in iov.iter_mut().zip(parts) {
            slot.iov_base = part.as_ptr().cast_mut().cast();
            slot.iov_len = part.len();
            total += part.len();
        }
        let count = parts.len();
        match self.kind {
            ChannelKind::Device => {
                let n = retry_eintr(|| {
                    // SAFETY: the first `count` iovecs point into the live `parts` slices; the
                    // kernel only reads through them.
                    unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), count as libc::c_int) }
                })?;
                check_whole(n, total)
            }
            ChannelKind::SeqPacket => {
                let n = self.sendmsg(&mut iov[..count])?;
                check_whole(n, total)
            }
            ChannelKind::Stream => {
                let mut start = 0;
                let mut sent = 0;
                while sent < total {
                    let Some(live) = iov.get_mut(start..count) else {
                        break;
                    };
                    let n = self.sendmsg(live)?;
                    if n == 0 {
                        return Err(ChannelError::ShortWrite {
                            written: sent,
                            total,
                        }
                        .into());
                    }
                    sent += n;
                    start += advance_iovecs(live, n);
                }
                Ok(())
            }
        }
    }

    fn sendmsg(&self, iov: &mut [libc::iovec]) -> io::Result<usize> {
        // SAFETY: an all-zero msghdr (no name, no control data) is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        retry_eintr(|| {
            // SAFETY: `msg` points at `iov`, whose entries point into live caller slices that
            // the kernel only reads.
            unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) }
        })
    }

    /// Opens a new `/dev/fuse` fd attached to this channel's connection
    /// (`FUSE_DEV_IOC_CLONE`), so a worker thread can read requests on its own fd; replies
    /// must go to the fd the request came from.
    ///
    /// Opens `/dev/fuse`, or where that path is missing (a private mount namespace, a chroot)
    /// the device behind the session fd through `/proc/self/fd/N`.
    ///
    /// Fails with [`ChannelError::NotADevice`] for socket channels; on any error the caller
    /// can fall back to sharing this channel (or [`try_clone`](Channel::try_clone)).
    pub fn clone_device(&self) -> io::Result<Channel> {
        if self.kind != ChannelKind::Device {
            return Err(ChannelError::NotADevice.into());
        }
        // SAFETY: the path is a NUL-terminated literal; the returned fd is checked below.
        let mut raw = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            // No /dev/fuse by name (a private mount namespace, a chroot): the device again
            // through the session fd's /proc link, which names the open file, not a path.
            let first = io::Error::last_os_error();
            let link = std::ffi::CString::new(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
                .map_err(|_| first)?;
            // SAFETY: `link` is a NUL-terminated string; the returned fd is checked below.
            raw = unsafe { libc::open(link.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: `raw` was just opened by us and is owned by nobody else.
        let clone = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut session = self.fd.as_raw_fd() as u32;
        // SAFETY: FUSE_DEV_IOC_CLONE reads one u32 (the session fd) through the pointer, which
        // points at a live local.
        let rc = unsafe {
            libc::ioctl(
                clone.as_raw_fd(),
                FUSE_DEV_IOC_CLONE as _,
                &mut session as *mut u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Channel {
            fd: clone,
            kind: ChannelKind::Device,
        })
    }

    /// Duplicates the fd (same open file, same connection) so another thread can own a handle.
    pub fn try_clone(&self) -> io::Result<Channel> {
        Ok(Channel {
            fd: self.fd.try_clone()?,
            kind: self.kind,
        })
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Runs a syscall returning `-1`/errno until it does not fail with `EINTR`.
fn retry_eintr(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn check_whole(written: usize, total: usize) -> io::Result<()> {
    if written == total {
        Ok(())
    } else {
        Err(ChannelError::ShortWrite { written, total }.into())
    }
}

/// Consumes `n` written bytes from the front of `iov`; returns how many entries are finished.
fn advance_iovecs(iov: &mut [libc::iovec], mut n: usize) -> usize {
    let mut done = 0;
    for v in iov.iter_mut() {
        if n == 0 {
            break;
        }
        if n >= v.iov_len {
            n -= v.iov_len;
            v.iov_len = 0;
            done += 1;
        } else {
            // SAFETY: `n < iov_len`, so the advanced pointer stays inside the same slice.
            v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
            v.iov_len -= n;
            n = 0;
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn socketpair(ty: libc::c_int) -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds socketpair writes.
        let rc = unsafe {
            libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
        };
        assert_eq!(rc, 0, "socketpair: {}", io::Error::last_os_error());
        // SAFETY: both fds were just created and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// A fake request: 40-byte in-header with `len`, `opcode`, `unique`, then `body`.
    fn request(opcode: u32, unique: u64, body: &[u8]) -> Vec<u8> {
        let len = (IN_HEADER_LEN + body.len()) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&opcode.to_le_bytes());
        v.extend_from_slice(&unique.to_le_bytes());
        v.resize(IN_HEADER_LEN, 0);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn detects_kinds() {
        let (a, _b) = socketpair(libc::SOCK_STREAM);
        assert_eq!(ChannelKind::detect(a.as_fd()).unwrap(), ChannelKind::Stream);
        let (a, _b) = socketpair(libc::SOCK_SEQPACKET);
        assert_eq!(
            ChannelKind::detect(a.as_fd()).unwrap(),
            ChannelKind::SeqPacket
        );
        let (a, _b) = socketpair(libc::SOCK_DGRAM);
        let err = ChannelKind::detect(a.as_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        let null = std::fs::File::open("/dev/null").unwrap();
        // /dev/null is a character device: detection only looks at the file type.
        assert_eq!(
            ChannelKind::detect(null.as_fd()).unwrap(),
            ChannelKind::Device
        );
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(ChannelKind::detect(file.as_fd()).is_err());
    }

    #[test]
    fn stream_receive_splits_messages_exactly() {
        let (ours, theirs) = socketpair(libc::SOCK_STREAM);
        let channel = Channel::new(ours).unwrap();
        let mut peer = UnixStream::from(theirs);
        let first = request(3, 7, b"hello");
        let second = request(26, 8, &[0xAB; 100]);
        let mut wire = first.clone();
        wire.extend_from_slice(&second);
        // Dribble the bytes in odd pieces from another thread.
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            for chunk in wire.chunks(7) {
                peer.write_all(chunk).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let mut buf = vec![0u8; 4096];
        let n = channel.receive(&mut buf).unwrap();
        assert_eq!(&buf[..n], &first[..]);
        let n = channel.receive(&mut buf).unwrap();
        assert_eq!(&buf[..n], &second[..]);
        writer.join().unwrap();
        // Peer closed at a boundary: Ok(0).
        assert_eq!(channel.receive(&mut buf).unwrap(), 0);
    }

    #[test]
    fn stream_eof_mid_message_is_an_error() {
        let (ours, theirs) = socketpair(libc::SOCK_STREAM);
        let channel = Channel::new(ours).unwrap();
        {
            use std::io::Write;
            let mut peer = UnixStream::from(theirs);
            let msg = request(3, 1, &[1; 20]);
            peer.write_all(&msg[..50]).unwrap();
        }
        let mut buf = vec![0u8; 4096];
        let err = channel.receive(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn stream_rejects_oversized_and_undersized() {
        let (ours, theirs) = socketpair(libc::SOCK_STREAM);
        let channel = Channel::new(ours).unwrap();
        let mut peer = UnixStream::from(theirs);
        {
            use std::io::Write;
            peer.write_all(&request(3, 1, &[0; 200])).unwrap();
        }
        let mut small = vec![0u8; 100];
        let err = channel.receive(&mut small).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // It was consumed whole, its header kept: the next message is framed.
        assert_eq!(&small[..40], &request(3, 1, &[0; 200])[..40]);
        {
            use std::io::Write;
            peer.write_all(&request(3, 2, b"next")).unwrap();
        }
        let n = channel.receive(&mut small).unwrap();
        assert_eq!(&small[..n], &request(3, 2, b"next")[..]);
        let mut tiny = [0u8; 10];
        let err = channel.receive(&mut tiny).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn seqpacket_roundtrip_and_truncation() {
        let (ours, theirs) = socketpair(libc::SOCK_SEQPACKET);
        let channel = Channel::new(ours).unwrap();
        let peer = Channel::new(theirs).unwrap();
        let msg = request(1, 2, b"name\0");
        peer.send(&[&msg[..10], &msg[10..]]).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = channel.receive(&mut buf).unwrap();
        assert_eq!(&buf[..n], &msg[..]);
        peer.send(&[&[0u8; 300]]).unwrap();
        let mut small = vec![0u8; 100];
        let err = channel.receive(&mut small).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Consumed: the next message comes whole.
        peer.send(&[&msg]).unwrap();
        let n = channel.receive(&mut small).unwrap();
        assert_eq!(&small[..n], &msg[..]);
        drop(peer);
        assert_eq!(channel.receive(&mut buf).unwrap(), 0);
    }

    #[test]
    fn stream_send_completes_large_messages() {
        let (ours, theirs) = socketpair(libc::SOCK_STREAM);
        let channel = Channel::new(ours).unwrap();
        let header = [9u8; 16];
        let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let expected_len = header.len() + data.len();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut peer = UnixStream::from(theirs);
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        channel
            .send(&[&header, &data[..10], &[], &data[10..]])
            .unwrap();
        drop(channel);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expected_len);
        assert_eq!(&got[..16], &header);
        assert_eq!(&got[16..], &data[..]);
    }

    #[test]
    fn send_rejects_too_many_parts_and_reports_closed_peer() {
        let (ours, theirs) = socketpair(libc::SOCK_SEQPACKET);
        let channel = Channel::new(ours).unwrap();
        let part: &[u8] = b"x";
        let parts = [part; MAX_SINK_PARTS + 1];
        let err = channel.send(&parts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        drop(theirs);
        // EPIPE, and no SIGPIPE killing the test.
        let err = channel.send(&[b"abc"]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn clone_device_needs_a_device_and_try_clone_shares() {
        let (ours, theirs) = socketpair(libc::SOCK_SEQPACKET);
        let channel = Channel::new(ours).unwrap();
        let err = channel.clone_device().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        let dup = channel.try_clone().unwrap();
        assert_eq!(dup.kind(), ChannelKind::SeqPacket);
        let peer = Channel::new(theirs).unwrap();
        dup.send(&[b"0123456789"]).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(peer.receive(&mut buf).unwrap(), 10);
    }

    #[test]
    fn error_classifiers() {
        assert!(is_unmounted(&io::Error::from_raw_os_error(libc::ENODEV)));
        assert!(!is_unmounted(&io::Error::from_raw_os_error(libc::ENOENT)));
        assert!(is_interrupted_reply(&io::Error::from_raw_os_error(
            libc::ENOENT
        )));
    }

    #[test]
    fn advance_iovecs_moves_through_parts() {
        let a = [1u8; 4];
        let b = [2u8; 4];
        let mut iov = [
            libc::iovec {
                iov_base: a.as_ptr().cast_mut().cast(),
                iov_len: 4,
            },
            libc::iovec {
                iov_base: b.as_ptr().cast_mut().cast(),
                iov_len: 4,
            },
        ];
        assert_eq!(advance_iovecs(&mut iov, 5), 1);
        assert_eq!(iov[1].iov_len, 3);
        assert_eq!(iov[1].iov_base as usize, b.as_ptr() as usize + 1);
    }
}
