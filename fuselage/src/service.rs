//! Readiness for service managers: systemd's notification protocol, spoken
//! without a library.
//!
//! When `NOTIFY_SOCKET` is set (systemd does for `Type=notify` units), the
//! server sends `READY=1` once the mount is live and `STOPPING=1` when it
//! starts to go down, each as one datagram on that unix socket. A name
//! starting with `@` is an abstract socket (the `@` stands for the leading
//! NUL byte). See sd_notify(3).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that names the service manager's socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

static STOPPING_SENT: AtomicBool = AtomicBool::new(false);

/// The socket [`connect`] connected to `NOTIFY_SOCKET`, used from then on.
static CONNECTED: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Connects a socket to `NOTIFY_SOCKET` now and sends every later
/// notification through it: for a server about to enter a private mount
/// namespace (`--sandbox-namespace`), where the socket's path no longer
/// resolves. Failing, it says so and leaves notifications to [`notify`]'s
/// usual path.
pub fn connect() {
    let Some(name) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return;
    };
    let name = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()).to_vec();
    match socket_to(&name, true) {
        Ok((fd, _, _)) => {
            let _ = CONNECTED.set(fd);
        }
        Err(e) => crate::log!(Warn, "cannot connect to ${NOTIFY_SOCKET_ENV}: {e}"),
    }
}

/// Sends `state` (e.g. `"READY=1"`) to the socket named by `NOTIFY_SOCKET`.
/// `Ok(false)` when the variable is not set: nobody is listening.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(name) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return Ok(false);
    };
    if let Some(fd) = CONNECTED.get() {
        // SAFETY: `state` is valid for its length; `fd` is a connected
        // datagram socket.
        let sent = unsafe {
            libc::send(
                fd.as_raw_fd(),
                state.as_ptr().cast(),
                state.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(true);
    }
    let name = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()).to_vec();
    send_datagram(&name, state.as_bytes())?;
    Ok(true)
}

/// Tells the service manager the mount is live (`READY=1`).
pub fn ready() {
    if let Err(e) = notify("READY=1") {
        crate::log!(Warn, "cannot send READY=1 to ${NOTIFY_SOCKET_ENV}: {e}");
    }
}

/// Tells the service manager the server is going down (`STOPPING=1`), once
/// however many paths lead here.
pub fn stopping() {
    if !STOPPING_SENT.swap(true, Ordering::AcqRel)
        && let Err(e) = notify("STOPPING=1")
    {
        crate::log!(Warn, "cannot send STOPPING=1 to ${NOTIFY_SOCKET_ENV}: {e}");
    }
}

/// A datagram socket for the unix socket `name` (a path, or `@name` for the
/// abstract namespace), with its address and the address's length;
/// connected to it when `connect`.
fn socket_to(
    name: &[u8],
    connect: bool,
) -> io::Result<(OwnedFd, libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let abstract_name = name.first() == Some(&b'@');
    if name.is_empty() || name.len() >= addr.sun_path.len() || (!abstract_name && name[0] != b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute socket path or @abstract name",
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    if abstract_name {
        addr.sun_path[0] = 0;
    }
    // Abstract names are exactly as long as given; paths end at their NUL.
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len() + usize::from(!abstract_name);
    let len = len as libc::socklen_t;
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if connect {
        // SAFETY: `addr` is valid for `len` bytes, which do not exceed its
        // size (checked above).
        let rc = unsafe { libc::connect(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((fd, addr, len))
}

/// Sends one datagram to the unix socket `name` (a path, or `@name` for
/// the abstract namespace).
fn send_datagram(name: &[u8], message: &[u8]) -> io::Result<()> {
    let (fd, addr, len) = socket_to(name, false)?;
    // SAFETY: `message` and `addr` are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::from_ref(&addr).cast(),
            len,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send_datagram(path.as_os_str().as_encoded_bytes(), b"READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("fuselage-notify-test-{}", std::process::id());
        let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_datagram(format!("@{name}").as_bytes(), b"STOPPING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        assert!(send_datagram(b"relative", b"x").is_err());
    }
}
