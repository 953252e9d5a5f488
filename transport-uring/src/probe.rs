//! Can this machine serve FUSE over io_uring? Probes that say why not.
//!
//! [`probe_uring`] answers for io_uring itself (what `uring-rw` needs):
//! the `kernel.io_uring_disabled` sysctl, then a real `io_uring_setup(2)` of a
//! tiny ring, which is where seccomp filters and container runtimes say no
//! (`EPERM`) and where kernels without io_uring say `ENOSYS`.
//! [`probe_native`] adds what FUSE-over-io_uring needs on top: Linux 6.14 or
//! later, a fuse module built with `CONFIG_FUSE_IO_URING` (it then has the
//! `enable_uring` parameter) and that parameter set to `Y`.
//!
//! Both sysfs files it reads (`enable_uring`, the possible CPUs) come from
//! `/sys`, or where that is not mounted (an init container's empty root)
//! from a private sysfs instance ([`crate::sysfs`]).
//!
//! Whether the kernel really offers `FUSE_OVER_IO_URING` is only known at
//! INIT, after the mount; [`Unavailable::NotOffered`] covers that case.
//!
//! Every [`Unavailable`] prints as one sentence saying what to do, which the
//! `fuselage` binary shows as `(fallback: REASON)` or as its exit message.

use crate::sysfs;
use std::fmt;
use std::fs;
use std::io;

/// The fuse module parameter that enables FUSE-over-io_uring.
pub const ENABLE_URING_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// [`ENABLE_URING_PARAM`] relative to the sysfs root.
const ENABLE_URING_REL: &str = "module/fuse/parameters/enable_uring";

/// The possible CPU list, relative to the sysfs root.
const POSSIBLE_CPUS_REL: &str = "devices/system/cpu/possible";

/// Reads the sysfs attributes native FUSE-over-io_uring needs
/// (`enable_uring`, the possible CPUs) now, for a server about to confine
/// itself: where `/sys` is not mounted, reading them later would need a
/// private sysfs instance (`fsopen`, `CAP_SYS_ADMIN`) that `--sandbox`
/// takes away. See [`sysfs::keep`].
pub fn read_ahead() {
    sysfs::keep(&[ENABLE_URING_REL, POSSIBLE_CPUS_REL]);
}

/// The first kernel release with FUSE-over-io_uring.
pub const NATIVE_MIN_KERNEL: (u32, u32) = (6, 14);

/// Why an io_uring transport cannot be used, in words a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The kernel is older than 6.14 (no FUSE-over-io_uring).
    KernelTooOld {
        /// Kernel major version.
        major: u32,
        /// Kernel minor version.
        minor: u32,
    },
    /// The fuse module has no `enable_uring` parameter: built without
    /// `CONFIG_FUSE_IO_URING`.
    NotBuiltIn,
    /// `/sys` is not mounted (e.g. a bare chroot) and no private sysfs
    /// instance could be made (no `CAP_SYS_ADMIN`), so neither the
    /// `enable_uring` parameter nor the possible CPUs can be read.
    NoSysfs,
    /// `/sys/module/fuse/parameters/enable_uring` is `N`.
    EnableUringOff,
    /// The kernel did not offer `FUSE_OVER_IO_URING` at INIT.
    NotOffered,
    /// `kernel.io_uring_disabled` forbids io_uring (1: only for a group we
    /// are not in, 2: for everyone).
    SysctlDisabled {
        /// The sysctl's value.
        value: u32,
    },
    /// `io_uring_setup(2)` failed with `EPERM` (seccomp, a container
    /// runtime, or the sysctl).
    NotPermitted,
    /// `io_uring_setup(2)` refused with `EPERM` by a test-only switch (the
    /// `fuselage` binary's `FUSELAGE_TEST_DENY_URING=1`), never by the probes
    /// here: whoever chooses the transport reports it.
    Simulated,
    /// The kernel has no io_uring (`ENOSYS`).
    NoSys,
    /// The channel is a unix socket, not `/dev/fuse`.
    NotADevice,
    /// Setting up a ring failed otherwise (the errno).
    Setup(i32),
    /// The kernel refused to register a FUSE ring entry (the errno).
    Register(i32),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::KernelTooOld { major, minor } => write!(
                f,
                "kernel {major}.{minor} is too old for FUSE-over-io_uring (needs {}.{} or later)",
                NATIVE_MIN_KERNEL.0, NATIVE_MIN_KERNEL.1
            ),
            Unavailable::NotBuiltIn => f.write_str(
                "the fuse module has no io_uring support (kernel built without CONFIG_FUSE_IO_URING)",
            ),
            Unavailable::NoSysfs => f.write_str(
                "/sys is not mounted and a private sysfs cannot be made (needs CAP_SYS_ADMIN), so enable_uring and the possible CPUs cannot be read: mount -t sysfs sysfs /sys",
            ),
            Unavailable::EnableUringOff => write!(
                f,
                "enable_uring is N: echo Y > {ENABLE_URING_PARAM}"
            ),
            Unavailable::NotOffered => write!(
                f,
                "the kernel did not offer FUSE_OVER_IO_URING at INIT (needs Linux 6.14+ and Y in {ENABLE_URING_PARAM})"
            ),
            Unavailable::SysctlDisabled { value } => write!(
                f,
                "io_uring is disabled by sysctl kernel.io_uring_disabled={value}: sysctl -w kernel.io_uring_disabled=0"
            ),
            Unavailable::NotPermitted => f.write_str(
                "io_uring_setup failed with EPERM: io_uring is not permitted here (seccomp profile or container runtime)",
            ),
            Unavailable::Simulated => write!(
                f,
                "io_uring_setup refused with EPERM (simulated: FUSELAGE_TEST_DENY_URING=1 is set, a test-only switch)"
            ),
            Unavailable::NoSys => {
                f.write_str("the kernel has no io_uring (io_uring_setup: ENOSYS)")
            }
            Unavailable::NotADevice => {
                f.write_str("the channel is a unix socket; the io_uring transports need /dev/fuse")
            }
            Unavailable::Setup(errno) => write!(
                f,
                "cannot set up an io_uring: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            Unavailable::Register(errno) => write!(
                f,
                "the kernel refused the FUSE io_uring queues: {}",
                io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Whether io_uring can be used by this process: the sysctl, then a real
/// `io_uring_setup(2)` of a two-entry ring (closed again at once).
pub fn probe_uring() -> Result<(), Unavailable> {
    let sysctl = fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if sysctl == 2 {
        return Err(Unavailable::SysctlDisabled { value: 2 });
    }
    match io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::new(2) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::EPERM) if sysctl == 1 => Unavailable::SysctlDisabled { value: 1 },
            Some(libc::EPERM) | Some(libc::EACCES) => Unavailable::NotPermitted,
            Some(libc::ENOSYS) => Unavailable::NoSys,
            Some(errno) => Unavailable::Setup(errno),
            None => Unavailable::Setup(libc::EIO),
        }),
    }
}

/// Whether native FUSE-over-io_uring can be expected: a kernel of 6.14 or
/// later, the fuse module's `enable_uring` parameter present and `Y`, and
/// [`probe_uring`]. The kernel's INIT has the last word.
pub fn probe_native() -> Result<(), Unavailable> {
    probe_uring()?;
    if let Some((major, minor)) = kernel_release()
        && (major, minor) < NATIVE_MIN_KERNEL
    {
        return Err(Unavailable::KernelTooOld { major, minor });
    }
    match read_enable_uring() {
        Some(true) => Ok(()),
        Some(false) => Err(Unavailable::EnableUringOff),
        None if !sysfs::reachable() => Err(Unavailable::NoSysfs),
        None => Err(Unavailable::NotBuiltIn),
    }
}

/// The `enable_uring` parameter: `Some(true)` for `Y`, `None` when it
/// cannot be read (no such parameter, or no sysfs). Loads the fuse module
/// first (by opening `/dev/fuse`) if the parameter is missing, since it only
/// exists once the module is loaded.
pub fn read_enable_uring() -> Option<bool> {
    let rel = ENABLE_URING_REL;
    let v = sysfs::read(rel).ok().or_else(|| {
        let _ = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse");
        sysfs::read(rel).ok()
    })?;
    Some(matches!(v.trim(), "Y" | "y" | "1"))
}

/// The running kernel's `(major, minor)` from uname(2).
pub fn kernel_release() -> Option<(u32, u32)> {
    // SAFETY: an all-zero utsname is a valid value of this plain C struct.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a writable utsname for uname to fill.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    parse_release(std::str::from_utf8(&bytes).ok()?)
}

/// Parses `"6.18.44-fc"` into `(6, 18)`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-3,8`):
/// FUSE-over-io_uring wants one queue for each.
pub fn possible_cpus() -> io::Result<Vec<usize>> {
    let text = sysfs::read(POSSIBLE_CPUS_REL)?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse the possible CPU list {:?}", text.trim()),
        )
    })
}

/// Parses a kernel CPU list (`0-3,8,10-11`).
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-2,5,7-8"), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert!(!possible_cpus().unwrap().is_empty());
    }

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("6.14"), Some((6, 14)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("x"), None);
        assert!(kernel_release().is_some());
    }

    #[test]
    fn reasons_say_what_to_do() {
        let s = Unavailable::EnableUringOff.to_string();
        assert!(
            s.contains("echo Y > /sys/module/fuse/parameters/enable_uring"),
            "{s}"
        );
        let s = Unavailable::SysctlDisabled { value: 2 }.to_string();
        assert!(s.contains("kernel.io_uring_disabled"), "{s}");
        let s = Unavailable::KernelTooOld { major: 6, minor: 1 }.to_string();
        assert!(s.contains("6.14"), "{s}");
        assert!(Unavailable::NotPermitted.to_string().contains("EPERM"));
        assert!(Unavailable::NoSys.to_string().contains("ENOSYS"));
    }
}
