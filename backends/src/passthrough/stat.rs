//! Host attributes (statx, statfs) in the protocol's layouts.
//!
//! Everything is the host's own value: inode numbers, owners, modes, link
//! counts, times with nanoseconds, device numbers (re-encoded the way the
//! kernel's `new_encode_dev` does for the 32-bit FUSE `rdev`).

use super::sys;
use fuselage_core::abi::{fuse_attr, fuse_kstatfs, fuse_statx, fuse_sx_time};

/// The statx fields every attribute reply needs (the mount id identifies the
/// inode together with device and inode number).
pub(crate) const STATX_MASK: u32 = libc::STATX_BASIC_STATS | libc::STATX_MNT_ID;

/// `fuse_attr` from statx.
pub(crate) fn attr_of(st: &libc::statx) -> fuse_attr {
    fuse_attr {
        ino: st.stx_ino,
        size: st.stx_size,
        blocks: st.stx_blocks,
        atime: st.stx_atime.tv_sec as u64,
        mtime: st.stx_mtime.tv_sec as u64,
        ctime: st.stx_ctime.tv_sec as u64,
        atimensec: st.stx_atime.tv_nsec,
        mtimensec: st.stx_mtime.tv_nsec,
        ctimensec: st.stx_ctime.tv_nsec,
        mode: u32::from(st.stx_mode),
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        rdev: sys::encode_dev(st.stx_rdev_major, st.stx_rdev_minor),
        blksize: st.stx_blksize,
        flags: 0,
    }
}

fn sx_time(t: &libc::statx_timestamp) -> fuse_sx_time {
    fuse_sx_time {
        tv_sec: t.tv_sec,
        tv_nsec: t.tv_nsec,
        __reserved: 0,
    }
}

/// `fuse_statx` from statx (the same layout, field by field).
pub(crate) fn statx_of(st: &libc::statx) -> fuse_statx {
    fuse_statx {
        mask: st.stx_mask,
        blksize: st.stx_blksize,
        attributes: st.stx_attributes,
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        mode: st.stx_mode,
        __spare0: [0],
        ino: st.stx_ino,
        size: st.stx_size,
        blocks: st.stx_blocks,
        attributes_mask: st.stx_attributes_mask,
        atime: sx_time(&st.stx_atime),
        btime: sx_time(&st.stx_btime),
        ctime: sx_time(&st.stx_ctime),
        mtime: sx_time(&st.stx_mtime),
        rdev_major: st.stx_rdev_major,
        rdev_minor: st.stx_rdev_minor,
        dev_major: st.stx_dev_major,
        dev_minor: st.stx_dev_minor,
        __spare2: [0; 14],
    }
}

/// `fuse_kstatfs` from statfs.
pub(crate) fn kstatfs_of(st: &libc::statfs) -> fuse_kstatfs {
    fuse_kstatfs {
        blocks: st.f_blocks,
        bfree: st.f_bfree,
        bavail: st.f_bavail,
        files: st.f_files,
        ffree: st.f_ffree,
        bsize: st.f_bsize as u32,
        namelen: st.f_namelen as u32,
        frsize: st.f_frsize as u32,
        ..Default::default()
    }
}
