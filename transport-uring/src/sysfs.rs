//! Reading sysfs attributes, also where `/sys` is not mounted.
//!
//! Native FUSE-over-io_uring needs two sysfs files before it mounts: the
//! fuse module's `enable_uring` parameter and the list of possible CPUs (the
//! kernel wants one queue per possible CPU). A container runtime mounts
//! `/sys`; an init container's empty root or a bare chroot does not. There
//! [`read`] falls back to a private sysfs instance: `fsopen("sysfs")`,
//! `fsconfig(FSCONFIG_CMD_CREATE)` and `fsmount` give a *detached* mount,
//! attached to no path, that only the returned descriptor reaches. Nothing
//! appears in the mount table, no directory is needed, and the instance goes
//! away when the descriptor is closed (right after the read). Making it
//! needs `CAP_SYS_ADMIN` (root in an init container) and Linux 5.2; where it
//! is refused, [`reachable`] says no and the caller reports that /sys is not
//! mounted.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::OnceLock;

/// Where sysfs is normally mounted.
const SYSFS_ROOT: &str = "/sys";

/// Attributes read by [`keep`] before the process gave up the right to make
/// a private instance (`--sandbox`), with what they held.
static KEPT: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();

/// Reads the attributes `rels` now and answers later [`read`]s of them from
/// what was read, for a process about to confine itself (seccomp without
/// `fsopen`, no `CAP_SYS_ADMIN`) in a root without `/sys`: an init
/// container's `--sandbox`. Attributes that cannot be read are left to
/// [`read`]. Only the first call keeps anything.
pub fn keep(rels: &[&'static str]) {
    KEPT.get_or_init(|| {
        rels.iter()
            .filter_map(|&rel| read(rel).ok().map(|text| (rel, text)))
            .collect()
    });
}

/// Reads the sysfs attribute `rel` (relative to the sysfs root, e.g.
/// `devices/system/cpu/possible`): from `/sys` when sysfs is mounted there,
/// else through a private, detached sysfs instance (see the module docs).
pub fn read(rel: &str) -> io::Result<String> {
    if let Some((_, text)) = KEPT
        .get()
        .and_then(|kept| kept.iter().find(|(r, _)| *r == rel))
    {
        return Ok(text.clone());
    }
    match fs::read_to_string(Path::new(SYSFS_ROOT).join(rel)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !mounted() => read_private(rel),
        other => other,
    }
}

/// Whether sysfs can be read at all: mounted at `/sys`, or a private
/// instance can be made.
pub fn reachable() -> bool {
    KEPT.get().is_some_and(|kept| !kept.is_empty()) || mounted() || private_instance().is_ok()
}

/// Whether `/sys` holds a sysfs (every sysfs has `module/`).
fn mounted() -> bool {
    fs::metadata(Path::new(SYSFS_ROOT).join("module")).is_ok()
}

/// Reads `rel` from a fresh private sysfs instance.
fn read_private(rel: &str) -> io::Result<String> {
    let root = private_instance()?;
    let rel = CString::new(rel).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `root` is an open directory descriptor and `rel` a valid
    // NUL-terminated path; openat returns a new descriptor or -1.
    let fd = unsafe {
        libc::openat(
            root.as_raw_fd(),
            rel.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    let fd = owned(fd as libc::c_long)?;
    let mut text = String::new();
    fs::File::from(fd).read_to_string(&mut text)?;
    Ok(text)
}

/// A detached, read-only sysfs mount, reachable only through the returned
/// descriptor (the root directory of the instance).
fn private_instance() -> io::Result<OwnedFd> {
    fuselage_linux::sys::detached_mount(
        c"sysfs",
        &[],
        libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC,
    )
}

/// Takes ownership of a descriptor returned by a system call (-1: errno).
fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the system call just returned this descriptor and nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_possible_cpus_from_sys_and_from_a_private_instance() {
        let Ok(from_sys) = fs::read_to_string("/sys/devices/system/cpu/possible") else {
            return; // no sysfs here at all
        };
        assert_eq!(read("devices/system/cpu/possible").unwrap(), from_sys);
        match read_private("devices/system/cpu/possible") {
            Ok(text) => assert_eq!(text, from_sys),
            // Not root: a private sysfs needs CAP_SYS_ADMIN.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }
}
