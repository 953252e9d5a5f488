//! Mountpoint paths: resolving a mountpoint as the kernel will without touching a FUSE mount
//! root, and parsing `/dev/fd/N`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::is_fuse_mounted;
use crate::error::{MountError, MountStep};

/// Makes `path` absolute and resolves symlinks of its parent directories, without touching
/// the last component (which may be an unresponsive FUSE mount root).
pub(super) fn resolve_for_mountinfo(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => path.to_path_buf(),
        }
    };
    match (abs.parent(), last_normal_component(&abs)) {
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(p) => p.join(name),
            Err(_) => abs,
        },
        _ => std::fs::canonicalize(&abs).unwrap_or(abs),
    }
}

fn last_normal_component(path: &Path) -> Option<&OsStr> {
    match path.components().next_back() {
        Some(Component::Normal(name)) => Some(name),
        _ => None,
    }
}

/// Resolves the mountpoint like the kernel will (following symlinks of the last component
/// too), while never stat-ing a FUSE mount root.
pub(super) fn resolve_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let mut current = resolve_for_mountinfo(path);
    for _ in 0..40 {
        if is_fuse_mounted(&current) {
            return Ok(current);
        }
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(|e| MountError::Io {
                    step: MountStep::InspectMountpoint,
                    source: e,
                })?;
                let base = current.parent().map(Path::to_path_buf).unwrap_or_default();
                current = resolve_for_mountinfo(&base.join(target));
            }
            _ => return Ok(current),
        }
    }
    Err(MountError::Io {
        step: MountStep::InspectMountpoint,
        source: io::Error::from_raw_os_error(libc::ELOOP),
    })
}

pub(super) fn path_cstring(path: &Path) -> Result<CString, MountError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| MountError::InvalidOption {
        option: "mountpoint",
    })
}

pub(super) fn parse_fd_path(path: &Path) -> Option<RawFd> {
    let text = path.to_str()?;
    let digits = text
        .strip_prefix("/dev/fd/")
        .or_else(|| text.strip_prefix("/proc/self/fd/"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fd: RawFd = digits.parse().ok()?;
    (fd >= 3).then_some(fd)
}
