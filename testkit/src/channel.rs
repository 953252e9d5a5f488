//! The simulated `/dev/fuse`: a `SOCK_SEQPACKET` unix socket pair, where one
//! `send` is one message and one `recv` reads exactly one, like one `write`
//! and one `read` on the device.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Socket buffer asked for each end: room for a 1 MiB WRITE and its reply.
/// A seqpacket message must fit the sender's buffer whole.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Creates a connected `SOCK_SEQPACKET` pair (both ends close-on-exec) with
/// socket buffers large enough for 1 MiB messages where the system allows
/// (`SO_SNDBUFFORCE` as root, else up to `net.core.wmem_max`).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid array of two ints for socketpair(2) to fill.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded, so both fds are open and owned by no one
    // else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&a, &b] {
        for (force, plain) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        ] {
            if setsockopt_int(fd.as_raw_fd(), force, SOCKET_BUFFER).is_err() {
                // Not privileged: take what wmem_max/rmem_max allow.
                let _ = setsockopt_int(fd.as_raw_fd(), plain, SOCKET_BUFFER);
            }
        }
    }
    Ok((a, b))
}

fn setsockopt_int(fd: i32, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a valid c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            core::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets `SO_RCVTIMEO`; `None` blocks forever.
pub(crate) fn set_recv_timeout(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let tv = match timeout {
        Some(t) => libc::timeval {
            tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        },
        None => libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: `tv` is a valid timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            core::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends the concatenation of `parts` as one message (`sendmsg(2)` with an
/// iovec per part, `MSG_NOSIGNAL`).
pub(crate) fn send_parts(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> io::Result<()> {
    let iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    loop {
        // SAFETY: `msg` points at `iov`, whose entries point at the live
        // slices of `parts`; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// What one `recv` found.
pub(crate) enum Received {
    /// A message of this many bytes (possibly more than the buffer held).
    Message(usize),
    /// The other end is closed and nothing is queued.
    Closed,
}

/// Receives one message into `buf` (`MSG_TRUNC`: the real length is
/// returned even when the buffer was too small). A zero-length read is
/// told apart from a closed peer by `POLLHUP`.
pub(crate) fn recv_message(fd: BorrowedFd<'_>, buf: &mut [u8], flags: i32) -> io::Result<Received> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags | libc::MSG_TRUNC,
            )
        };
        if n > 0 {
            return Ok(Received::Message(n as usize));
        }
        if n == 0 {
            return Ok(if peer_closed(fd)? {
                Received::Closed
            } else {
                Received::Message(0)
            });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECONNRESET) => return Ok(Received::Closed),
            Some(libc::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no message before the receive timeout",
                ));
            }
            _ => return Err(err),
        }
    }
}

fn peer_closed(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(p.revents & libc::POLLHUP != 0)
}

/// Waits up to `timeout` for something to read; `true` when a message (or
/// the peer's close) is there.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: `p` is one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads `len` bytes of `fd` at `offset` with `pread(2)`, fewer at end of
/// file.
pub(crate) fn pread_range(fd: i32, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut data = vec![0u8; len];
    let mut done = 0;
    while done < len {
        // SAFETY: the destination is the unfilled tail of `data`, valid for
        // `len - done` bytes.
        let n = unsafe {
            libc::pread(
                fd,
                data[done..].as_mut_ptr().cast(),
                len - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    data.truncate(done);
    Ok(data)
}
