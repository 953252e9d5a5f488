//! Whiteouts and opaque directories, in kernel overlayfs's on-disk format.
//!
//! - A *whiteout* is a character device with device number 0:0 in the upper
//!   layer: the name is deleted, whatever the lower layers have there.
//! - An *opaque* directory carries the xattr `trusted.overlay.opaque` = `y`
//!   (or `user.overlay.opaque` when the server runs without CAP_SYS_ADMIN,
//!   overlayfs's `userxattr` format): the lower layers' directories of the
//!   same name are not merged into it.
//!
//! Both are read in either namespace, and neither is ever visible through
//! the mount: whiteouts are left out of lookups and listings, and xattrs
//! named `trusted.overlay.*` or `user.overlay.*` are neither listed, read
//! nor settable.

use super::super::passthrough::proc_fd::ProcPath;
use super::super::passthrough::sys::{self, SysResult};
use fuselage_core::Errno;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};

/// The xattr namespace overlay metadata is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrNamespace {
    /// `trusted.overlay.*` (needs CAP_SYS_ADMIN): kernel overlayfs's default.
    Trusted,
    /// `user.overlay.*`: overlayfs mounted with `-o userxattr`.
    User,
}

impl XattrNamespace {
    /// The opaque-directory xattr's name.
    pub(crate) fn opaque(self) -> &'static CStr {
        match self {
            XattrNamespace::Trusted => c"trusted.overlay.opaque",
            XattrNamespace::User => c"user.overlay.opaque",
        }
    }
}

/// What a name in one layer directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Nothing there.
    Missing,
    /// A whiteout: the name is deleted.
    Whiteout,
    /// A real entry; for a directory, whether it is opaque.
    Present {
        /// It is a directory.
        is_dir: bool,
        /// It is an opaque directory.
        opaque: bool,
    },
}

/// Whether a statx result is a whiteout (a 0:0 character device).
pub(crate) fn is_whiteout(st: &libc::statx) -> bool {
    u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFCHR
        && st.stx_rdev_major == 0
        && st.stx_rdev_minor == 0
}

/// Looks at `name` in the layer directory `dir`.
pub(crate) fn probe(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<Probe> {
    let st = match sys::statx_at(dir, name, libc::STATX_TYPE | libc::STATX_MODE) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(Probe::Missing),
        Err(e) => return Err(e),
    };
    if is_whiteout(&st) {
        return Ok(Probe::Whiteout);
    }
    let is_dir = u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFDIR;
    let opaque = is_dir && {
        let fd = sys::openat2(
            dir,
            name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            sys::RESOLVE_CONFINED,
        )?;
        is_opaque(fd.as_fd())
    };
    Ok(Probe::Present { is_dir, opaque })
}

/// Whether the directory `fd` (any descriptor, `O_PATH` included) is
/// opaque, in either namespace.
pub(crate) fn is_opaque(fd: BorrowedFd<'_>) -> bool {
    let path = ProcPath::new(fd);
    let mut buf = [0u8; 4];
    [
        XattrNamespace::Trusted.opaque(),
        XattrNamespace::User.opaque(),
    ]
    .iter()
    .any(|name| matches!(sys::getxattr(path.as_cstr(), name, &mut buf), Ok(1) if buf[0] == b'y'))
}

/// Marks the directory `fd` opaque.
pub(crate) fn set_opaque(fd: BorrowedFd<'_>, ns: XattrNamespace) -> SysResult<()> {
    sys::setxattr(ProcPath::new(fd).as_cstr(), ns.opaque(), b"y", 0)
}

/// Makes a whiteout for `name` in the upper directory `dir`.
pub(crate) fn make_whiteout(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    sys::mknodat(dir, name, libc::S_IFCHR, 0)
}

/// Whether `name` is one of overlay's own xattrs, which the mount hides.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_xattrs_are_recognised() {
        assert!(is_overlay_xattr(b"trusted.overlay.opaque"));
        assert!(is_overlay_xattr(b"user.overlay.origin"));
        assert!(!is_overlay_xattr(b"user.overlayish"));
        assert!(!is_overlay_xattr(b"security.capability"));
    }

    #[test]
    fn reported_inode_numbers_carry_the_layer() {
        use super::super::inode::reported_ino;
        assert_eq!(reported_ino(0, 42), 42);
        assert_eq!(reported_ino(2, 42), (2 << 56) | 42);
        assert_ne!(reported_ino(1, 7), reported_ino(2, 7));
    }
}
