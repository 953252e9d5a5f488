//! The fusermount3 path (unprivileged): run the setuid helper, receive the `/dev/fuse` fd over
//! a unix socket (SCM_RIGHTS), and unmount through it.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mountinfo::fuse_mount_dev;
use super::resolve::path_cstring;
use super::watchdog::{OnDeath, Watchdog};
use super::{FUSE_COMMFD_ENV, Mount, MountMethod, MountOptions, is_fuse_mounted};
use crate::error::{Denial, MountError, MountStep};

/// The fusermount3 process kept alive for auto_unmount, with our end of its socket.
#[derive(Debug)]
pub(super) struct FusermountHelper {
    socket: OwnedFd,
    child: Child,
}

impl FusermountHelper {
    /// Closes the socket (the helper then checks the mount and exits) and reaps it.
    pub(super) fn finish(self) {
        let FusermountHelper { socket, mut child } = self;
        drop(socket);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

fn find_fusermount() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter()
        .map(|d| d.join("fusermount3"))
        .find(|p| std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false))
}

pub(super) fn mount_fusermount(resolved: &Path, opts: &MountOptions) -> Result<Mount, MountError> {
    let bin = find_fusermount().ok_or(MountError::FusermountMissing)?;
    let c_path = path_cstring(resolved)?;
    // fusermount3's own auto_unmount is not enough: before libfuse 3.15 its "is the server
    // dead" probe runs as root and gets EACCES instead of ENOTCONN unless allow_other is set,
    // so it never unmounts. Our watchdog runs `fusermount3 -u -z` as the user instead; both
    // may race harmlessly.
    let mut watchdog = if opts.auto_unmount {
        Some(
            Watchdog::spawn(&c_path, OnDeath::Fusermount(&bin)).map_err(|e| MountError::Io {
                step: MountStep::Watchdog,
                source: e,
            })?,
        )
    } else {
        None
    };
    let (ours, theirs) = socketpair_stream().map_err(|e| MountError::Io {
        step: MountStep::Socketpair,
        source: e,
    })?;
    let their_raw = theirs.as_raw_fd();
    let mut cmd = Command::new(&bin);
    cmd.arg("-o")
        .arg(opts.fusermount_options())
        .arg("--")
        .arg(resolved)
        .env(FUSE_COMMFD_ENV, their_raw.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and only calls fcntl, which is
    // async-signal-safe; it makes the helper's end of the socket survive exec (it is >= 3, so
    // the stdio redirections cannot clobber it).
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(their_raw, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => MountError::FusermountMissing,
        _ => MountError::Io {
            step: MountStep::RunFusermount,
            source: e,
        },
    })?;
    // Our copy of the helper's end must go, or we would never see EOF if the helper fails.
    drop(theirs);
    let received = receive_fd(ours.as_fd());
    let fd = match received {
        Ok(Some(fd)) => fd,
        Ok(None) | Err(_) => {
            // The helper has exited or is about to (it closed the socket): read what it said
            // until EOF, then reap it.
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let status = child.wait().ok();
            // A helper that succeeded but whose fd we could not receive: our side failed.
            match received {
                Err(e) if status.is_some_and(|s| s.success()) => {
                    return Err(MountError::Io {
                        step: MountStep::ReceiveFd,
                        source: e,
                    });
                }
                _ => {}
            }
            return Err(classify_fusermount_failure(
                resolved,
                status.and_then(|s| s.code()),
                &stderr,
            ));
        }
    };
    // Nothing more to read from the helper; do not keep its stderr pipe.
    drop(child.stderr.take());
    let dev = fuse_mount_dev(resolved).ok().flatten();
    if let Some(w) = watchdog.as_mut() {
        // If arming fails the watchdog only loses its safety net; the mount itself is fine.
        let _ = w.arm(dev);
    }
    let helper = if opts.auto_unmount {
        // The helper waits on the socket and unmounts a dead mount when it closes.
        Some(FusermountHelper {
            socket: ours,
            child,
        })
    } else {
        drop(ours);
        let _ = child.wait();
        None
    };
    Ok(Mount {
        fd,
        mountpoint: resolved.to_path_buf(),
        method: MountMethod::Fusermount,
        mounted: true,
        dev,
        watchdog,
        helper,
    })
}

pub(super) fn classify_fusermount_failure(
    path: &Path,
    status: Option<i32>,
    stderr: &str,
) -> MountError {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    let denied = |denial| MountError::PermissionDenied {
        path: path.to_path_buf(),
        denial,
    };
    if last.contains("/dev/fuse") {
        if last.contains("Permission denied") || last.contains("Operation not permitted") {
            return MountError::PermissionDenied {
                path: PathBuf::from("/dev/fuse"),
                denial: Denial::Device,
            };
        }
        if last.contains("No such file") || last.contains("No such device") {
            return MountError::NoDevFuse;
        }
    }
    if last.contains("fuse device not found") {
        MountError::NoDevFuse
    } else if last.contains("user_allow_other") {
        denied(Denial::AllowOther)
    } else if last.contains("no write access")
        || last.contains("Permission denied")
        || last.contains("not owned")
    {
        denied(Denial::Mountpoint)
    } else {
        MountError::Fusermount {
            status,
            message: last,
        }
    }
}

pub(super) fn fusermount_unmount(path: &Path) -> Result<(), MountError> {
    let bin = find_fusermount().ok_or(MountError::FusermountMissing)?;
    let out = Command::new(bin)
        .args(["-u", "-z", "--"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| MountError::Io {
            step: MountStep::RunFusermount,
            source: e,
        })?;
    if out.status.success() || !is_fuse_mounted(path) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(classify_fusermount_failure(
        path,
        out.status.code(),
        &stderr,
    ))
}

pub(super) fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Keep both >= 3 so that redirecting a child's stdio can never land on them.
    Ok((at_least_3(a)?, at_least_3(b)?))
}

pub(super) fn at_least_3(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC creates a new fd; it touches no memory.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` was just created by us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Receives one fd sent with SCM_RIGHTS (and one data byte). `Ok(None)` on EOF.
fn receive_fd(socket: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // Control buffer for one int, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let control_len = space.min(std::mem::size_of_val(&control));
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len as _;
    let n = loop {
        // SAFETY: `msg` points at live `iov`/`control` buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    if n == 0 {
        return Ok(None);
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    let mut found = None;
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and inside the control buffer.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: the data of an SCM_RIGHTS message holds at least one int (we offered room
            // for exactly one); read_unaligned because CMSG_DATA is only byte-aligned in type.
            let fd =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>()) };
            // SAFETY: the kernel just installed `fd` in our table for us.
            found = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            break;
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 && found.is_none() {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok(found)
}
