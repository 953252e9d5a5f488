//! The few system calls every transport needs, one copy each: reading a file range
//! completely, non-blocking fds, pipes for splice and their size, CPU affinity, the page size.
//!
//! Each function takes typed fds and returns `io::Result` with the errno, as rustix does; none
//! allocates except [`online_cpu`] and [`usable_cpus`] (they list the allowed CPUs) and [`grow_pipe`] when the
//! kernel refuses the size (it reads `/proc/sys/fs/pipe-max-size`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Reads `buf.len()` bytes of `fd` from `offset` with pread(2), continuing short reads and
/// retrying `EINTR`; stops early only at end of file. Returns the bytes read.
pub fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let want = buf.len();
    let mut got = 0;
    while got < want {
        // SAFETY: `buf[got..]` is valid writable memory of exactly `want - got` bytes, and
        // `fd` is open for the borrow.
        let r = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                want - got,
                (offset + got as u64) as libc::off_t,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            break;
        }
        got += r as usize;
    }
    Ok(got)
}

/// Makes `fd`'s open file non-blocking (`O_NONBLOCK`; every fd of that open file sees it).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we hold; no memory involved.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new non-blocking, close-on-exec pipe (pipe2(2)): `(read end, write end)`.
pub fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Grows the pipe whose write end is `fd` to `want` bytes and returns the
/// size the kernel set. Without `CAP_SYS_RESOURCE` a pipe may not grow past
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default): when the larger size is
/// refused with `EPERM`, asks for that maximum instead, so callers check per
/// reply whether it fits and copy larger ones.
pub fn grow_pipe(fd: BorrowedFd<'_>, want: usize) -> io::Result<usize> {
    let mut ask = want.min(libc::c_int::MAX as usize);
    loop {
        // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory of ours.
        let set = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, ask as libc::c_int) };
        if set >= 0 {
            return Ok(set as usize);
        }
        let err = io::Error::last_os_error();
        let max = pipe_max_size();
        if err.raw_os_error() == Some(libc::EPERM) && max < ask && max >= 8192 {
            ask = max;
            continue;
        }
        return Err(err);
    }
}

/// `/proc/sys/fs/pipe-max-size` (1 MiB when it cannot be read).
fn pipe_max_size() -> usize {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// The CPUs the process may run on (its affinity mask), in order; empty if
/// the mask cannot be read.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set, and
    // sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the given size.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the bound CPU_ISSET requires.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// The `i`-th CPU the process may run on (wrapping), from its affinity
/// mask; `None` if it may run on fewer than two (nothing to choose) or the
/// mask cannot be read. Used to place one worker per CPU.
pub fn online_cpu(i: usize) -> Option<usize> {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        return None;
    }
    Some(cpus[i % cpus.len()])
}

/// How many CPUs the process may run on (its affinity mask, at least 1):
/// the default worker count.
///
/// Unlike `std::thread::available_parallelism` it does not read cgroup CPU
/// quotas, which keeps the cgroup parsing (about 9 KB) out of the static
/// binary; a quota limits time, not where threads run, so a worker per
/// allowed CPU is still the right default.
pub fn usable_cpus() -> usize {
    allowed_cpus().len().max(1)
}

/// Pins the calling thread to `cpu` (`EINVAL` for a CPU at or above
/// `CPU_SETSIZE`).
pub fn pin_to(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside `set` for a CPU below CPU_SETSIZE
    // (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the given size.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A thread's CPU affinity mask (`cpu_set_t`), kept to put back later
/// without allocating.
#[derive(Clone, Copy)]
pub struct CpuMask(libc::cpu_set_t);

impl CpuMask {
    /// The calling thread's affinity mask.
    pub fn current() -> io::Result<CpuMask> {
        // SAFETY: an all-zero cpu_set_t is a valid empty set, and
        // sched_getaffinity writes at most its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable cpu_set_t of the given size.
        if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(CpuMask(set))
    }

    /// How many CPUs the mask holds.
    pub fn len(&self) -> usize {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `c` is below CPU_SETSIZE, the bound CPU_ISSET requires.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &self.0) })
            .count()
    }

    /// Whether the mask holds no CPU.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes this the calling thread's affinity mask.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: `self.0` is a valid cpu_set_t of the given size.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl std::fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpus = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `c` is below CPU_SETSIZE, the bound CPU_ISSET requires.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &self.0) });
        f.debug_list().entries(cpus).finish()
    }
}

/// A new mount of `fstype` (`fsopen`, an `fsconfig` string per
/// `options`, `fsmount` with the `MOUNT_ATTR_*` bits `attrs`), attached
/// nowhere: reachable only through the returned descriptor (the root of the
/// instance), until `move_mount` places it.
pub fn detached_mount(
    fstype: &std::ffi::CStr,
    options: &[(&std::ffi::CStr, &std::ffi::CStr)],
    attrs: u64,
) -> io::Result<OwnedFd> {
    let owned = |ret: libc::c_long| {
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the system call just returned this descriptor and nothing
        // else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) })
    };
    let fsconfig =
        |ctx: &OwnedFd, cmd: libc::c_uint, key: *const libc::c_char, value: *const libc::c_void| {
            // SAFETY: `ctx` is an open file system context; `key` and `value`
            // are NUL-terminated strings for FSCONFIG_SET_STRING, or null for
            // FSCONFIG_CMD_CREATE, which takes neither; aux is 0.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    ctx.as_raw_fd(),
                    cmd,
                    key,
                    value,
                    0 as libc::c_int,
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
    // SAFETY: fsopen reads a NUL-terminated file system name and returns a
    // new descriptor or -1.
    let ctx = owned(unsafe {
        libc::syscall(
            libc::SYS_fsopen,
            fstype.as_ptr(),
            libc::FSOPEN_CLOEXEC as libc::c_uint,
        )
    })?;
    for (key, value) in options {
        fsconfig(
            &ctx,
            libc::FSCONFIG_SET_STRING as libc::c_uint,
            key.as_ptr(),
            value.as_ptr().cast(),
        )?;
    }
    fsconfig(
        &ctx,
        libc::FSCONFIG_CMD_CREATE as libc::c_uint,
        std::ptr::null(),
        std::ptr::null(),
    )?;
    // SAFETY: fsmount takes the created context, flags and mount attributes
    // by value and returns a new descriptor or -1.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            ctx.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC as libc::c_uint,
            attrs as libc::c_uint,
        )
    })
}

/// The system page size (4096 if sysconf cannot tell).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn pread_full_reads_to_the_end_of_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 10_000]).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(pread_full(f.as_fd(), &mut buf, 100).unwrap(), 4096);
        assert_eq!(pread_full(f.as_fd(), &mut buf, 8000).unwrap(), 2000);
        assert_eq!(pread_full(f.as_fd(), &mut buf, 20_000).unwrap(), 0);
    }

    #[test]
    fn pipes_grow_and_are_non_blocking() {
        let (read, write) = pipe_nonblocking().unwrap();
        assert!(grow_pipe(write.as_fd(), 1 << 16).unwrap() >= 1 << 16);
        let mut byte = [0u8; 1];
        // SAFETY: `byte` is valid for writes of one byte.
        let n = unsafe { libc::read(read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        assert_eq!(n, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN)
        );
        set_nonblocking(read.as_fd()).unwrap();
    }

    #[test]
    fn cpus_and_pages() {
        assert!(page_size().is_power_of_two());
        assert!(pin_to(libc::CPU_SETSIZE as usize).is_err());
        if let Some(cpu) = online_cpu(0) {
            pin_to(cpu).unwrap();
        }
    }
}
