//! Detaching as mount helpers do: the mount.fuse form (`fuselage SOURCE
//! MOUNTPOINT`, without `-f`) returns to mount(8) only once the mount is
//! live, and leaves the server running in the background.
//!
//! [`detach`] forks before anything else starts (no threads exist yet). The
//! parent waits on a pipe: one byte means the mount is live and it exits 0;
//! end of file without that byte means the child failed (it has already
//! said why on the shared stderr) and the parent exits with the child's
//! status. The child starts its own session (no terminal signals reach it)
//! and, once [`Detached::ready`] is called, closes the pipe, moves to `/`
//! and points stdin, stdout and stderr at /dev/null.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The child's end of the detach: tells the waiting parent the mount is live.
#[derive(Debug)]
pub struct Detached {
    pipe: Option<OwnedFd>,
}

/// Forks. In the parent this never returns: it exits 0 once the child calls
/// [`Detached::ready`], or with the child's status if it ends first. In the
/// child it returns the handle to call when the mount is live.
///
/// Call before any thread is started.
pub fn detach() -> io::Result<Detached> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has a single thread here (see the doc), so the
    // child may run any code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(read);
        // SAFETY: setsid has no memory-safety preconditions; failing (we
        // already lead a group) only leaves the session as it was.
        unsafe { libc::setsid() };
        return Ok(Detached { pipe: Some(write) });
    }
    drop(write);
    let mut byte = 0u8;
    let n = loop {
        // SAFETY: reading one byte into a valid one-byte buffer.
        let n = unsafe { libc::read(read.as_raw_fd(), (&raw mut byte).cast(), 1) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    if n == 1 {
        std::process::exit(0);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = if r == pid && libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status).max(1)
    } else {
        1
    };
    std::process::exit(code);
}

impl Detached {
    /// The mount is live: lets the parent exit 0 and detaches from the
    /// caller's directory and terminal. Later calls do nothing.
    pub fn ready(&mut self) {
        let Some(pipe) = self.pipe.take() else { return };
        // SAFETY: chdir with a NUL-terminated constant path.
        unsafe { libc::chdir(c"/".as_ptr()) };
        // SAFETY: open with a NUL-terminated constant path; checked.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if null >= 0 {
            for fd in 0..=2 {
                // SAFETY: dup2 onto the standard descriptors, which this
                // process owns; the Rust std handles keep working on them.
                unsafe { libc::dup2(null, fd) };
            }
            // SAFETY: `null` is ours and no longer needed.
            unsafe { libc::close(null) };
        }
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        unsafe { libc::write(pipe.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }
}
