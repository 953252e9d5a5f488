//! The auto-unmount watchdog of syscall mounts: a forked process that unmounts lazily if the
//! server dies without saying goodbye (even by SIGKILL).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::fusermount::at_least_3;
use super::mountinfo::{FsType, mount_dev_of_type};

/// Message bytes on the watchdog pipe.
const WATCHDOG_CLEAN: u8 = b'C';
const WATCHDOG_ARMED: u8 = b'A';
const WATCHDOG_ARMED_UNKNOWN_DEV: u8 = b'U';

/// What the watchdog does when this process dies with the filesystem still mounted.
#[derive(Debug, Clone, Copy)]
pub(super) enum OnDeath<'a> {
    /// umount2(MNT_DETACH) (we mounted with mount(2), so we may unmount).
    Umount,
    /// Exec `fusermount3 -u -z -q -- MOUNTPOINT` (an unprivileged mount).
    Fusermount(&'a Path),
}

/// A `fusermount3 -u -z -q -- PATH` command line, built before fork so the watchdog can exec
/// it without allocating.
struct ExecLine {
    program: CString,
    _args: Vec<CString>,
    /// NULL-terminated pointers into `_args`, whose heap buffers do not move.
    argv: Vec<*const libc::c_char>,
}

impl ExecLine {
    fn fusermount_unmount(bin: &Path, c_path: &CStr) -> io::Result<ExecLine> {
        let program = CString::new(bin.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let args: Vec<CString> = [c"fusermount3", c"-u", c"-z", c"-q", c"--", c_path]
            .iter()
            .map(|a| CString::from(*a))
            .collect();
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        Ok(ExecLine {
            program,
            _args: args,
            argv,
        })
    }
}

/// A forked process that unmounts the filesystem lazily if this process dies without saying
/// goodbye (even by SIGKILL).
///
/// The watchdog holds nothing but the read end of a pipe (in particular not the `/dev/fuse`
/// fd, or the connection could never abort). Protocol on the pipe, parent to child: `A` +
/// major (u32 LE) + minor (u32 LE) once mounted ("guard this mount"), or `U` if the device
/// number is unknown; `C` = "clean shutdown, we unmounted; exit". EOF without `C` means we
/// died: the watchdog unmounts if the top FUSE mount at the path is still the guarded one.
#[derive(Debug)]
pub(super) struct Watchdog {
    pid: libc::pid_t,
    pipe: Option<OwnedFd>,
}

impl Watchdog {
    pub(super) fn spawn(c_path: &CStr, on_death: OnDeath<'_>) -> io::Result<Watchdog> {
        let raw_path = c_path.to_bytes();
        let exec = match on_death {
            OnDeath::Umount => None,
            OnDeath::Fusermount(bin) => Some(ExecLine::fusermount_unmount(bin, c_path)?),
        };
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Above 2, so the child can put /dev/null on its stdio without hitting it.
        let read = at_least_3(read)?;
        // Everything the child needs is prepared here: after fork it may only make
        // async-signal-safe calls (no allocation, no locks, no panics).
        let read_raw = read.as_raw_fd();
        let max_fd = max_fd_hint();
        // SAFETY: fork has no memory preconditions; the child below restricts itself to
        // async-signal-safe system calls on data prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            watchdog_main(read_raw, max_fd, c_path, raw_path, exec.as_ref());
        }
        drop(read);
        Ok(Watchdog {
            pid,
            pipe: Some(write),
        })
    }

    pub(super) fn arm(&mut self, dev: Option<(u32, u32)>) -> io::Result<()> {
        let mut msg = [0u8; 9];
        let len = match dev {
            Some((major, minor)) => {
                msg[0] = WATCHDOG_ARMED;
                msg[1..5].copy_from_slice(&major.to_le_bytes());
                msg[5..9].copy_from_slice(&minor.to_le_bytes());
                9
            }
            None => {
                msg[0] = WATCHDOG_ARMED_UNKNOWN_DEV;
                1
            }
        };
        self.write(&msg[..len])
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let Some(pipe) = &self.pipe else {
            return Ok(());
        };
        loop {
            // SAFETY: `bytes` is valid for reads of its length; at most 9 bytes, so the pipe
            // write is atomic (<= PIPE_BUF).
            let n = unsafe { libc::write(pipe.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Ends the watchdog: `clean` tells it not to unmount. Reaps it (bounded wait).
    pub(super) fn finish(&mut self, clean: bool) {
        if clean {
            let _ = self.write(&[WATCHDOG_CLEAN]);
        }
        self.pipe = None;
        if self.pid > 0 {
            reap(self.pid, Duration::from_secs(2));
            self.pid = 0;
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Not finished cleanly: EOF lets the watchdog unmount if the mount is still there.
        self.finish(false);
    }
}

/// waitpid with a deadline, so a stuck child never blocks us for long.
pub(super) fn reap(pid: libc::pid_t, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write to; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc != 0 {
            return; // reaped, or not our child any more (ECHILD)
        }
        if Instant::now() >= deadline {
            return; // leave it; it exits on its own and init reaps it after us
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn max_fd_hint() -> libc::c_uint {
    // SAFETY: an all-zero rlimit is valid and getrlimit only writes into it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid rlimit to write to.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20) as libc::c_uint
    } else {
        1024
    }
}

/// The watchdog process. Only async-signal-safe system calls; never returns.
fn watchdog_main(
    read_fd: RawFd,
    max_fd: libc::c_uint,
    c_path: &CStr,
    raw_path: &[u8],
    exec: Option<&ExecLine>,
) -> ! {
    close_all_except(read_fd, max_fd);
    // SAFETY: open, dup2, close, setsid, signal and chdir are async-signal-safe; the only
    // pointers are NUL-terminated literals.
    unsafe {
        // stdio on /dev/null, so nothing we exec writes into a file that took fd 0..2.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for std_fd in 0..3 {
                if null != std_fd {
                    libc::dup2(null, std_fd);
                }
            }
            if null > 2 {
                libc::close(null);
            }
        }
        libc::setsid();
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::chdir(c"/".as_ptr());
    }
    // Read messages until EOF.
    let mut armed: Option<Option<(u32, u32)>> = None;
    let mut pending = [0u8; 9];
    let mut have = 0usize;
    let mut buf = [0u8; 16];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        if n < 0 {
            // Reading errno is async-signal-safe and allocates nothing.
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        for &byte in buf.iter().take(n as usize) {
            if have > 0 {
                if let Some(slot) = pending.get_mut(have) {
                    *slot = byte;
                }
                have += 1;
                if have == pending.len() {
                    let major =
                        u32::from_le_bytes([pending[1], pending[2], pending[3], pending[4]]);
                    let minor =
                        u32::from_le_bytes([pending[5], pending[6], pending[7], pending[8]]);
                    armed = Some(Some((major, minor)));
                    have = 0;
                }
                continue;
            }
            match byte {
                WATCHDOG_CLEAN => exit_child(0),
                WATCHDOG_ARMED => {
                    pending[0] = byte;
                    have = 1;
                }
                WATCHDOG_ARMED_UNKNOWN_DEV => armed = Some(None),
                _ => exit_child(1),
            }
        }
    }
    // The parent is gone without a clean goodbye.
    let unmount = match armed {
        None => false,
        Some(None) => true,
        Some(Some(dev)) => match mount_dev_of_type(raw_path, FsType::Fuse) {
            Ok(found) => found == Some(dev),
            // No /proc to ask (a chroot without it): the device at the path, from
            // cached attributes; a connection that died with its server says ENOTCONN.
            Err(_) => match super::cached_dev_at(libc::AT_FDCWD, c_path) {
                Ok(found) => found == dev,
                Err(errno) => errno == libc::ENOTCONN,
            },
        },
    };
    if !unmount {
        exit_child(0);
    }
    match exec {
        None => {
            // SAFETY: `c_path` is a NUL-terminated string prepared before the fork.
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
            exit_child(0)
        }
        Some(line) => {
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            // SAFETY: execve is async-signal-safe; `program` and the NULL-terminated `argv`
            // were prepared before the fork and stay alive (this process only execs or exits).
            unsafe { libc::execve(line.program.as_ptr(), line.argv.as_ptr(), envp.as_ptr()) };
            exit_child(1)
        }
    }
}

fn close_all_except(keep: RawFd, max_fd: libc::c_uint) {
    let keep = keep.max(0) as libc::c_uint;
    if keep > 0 {
        close_range(0, keep - 1, max_fd);
    }
    close_range(keep + 1, libc::c_uint::MAX, max_fd);
}

fn close_range(first: libc::c_uint, last: libc::c_uint, max_fd: libc::c_uint) {
    // SAFETY: close_range only closes fds of this (forked, single-threaded) process.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
    if rc == 0 {
        return;
    }
    let mut fd = first;
    while fd <= last && fd < max_fd {
        // SAFETY: close is async-signal-safe; closing an unused number yields EBADF only.
        unsafe { libc::close(fd as RawFd) };
        fd += 1;
    }
}

fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and skips atexit handlers and stdio flushing, which
    // belong to the parent.
    unsafe { libc::_exit(code) }
}
