//! Merged directory listings.
//!
//! A directory's listing is taken whole when it is opened (OPENDIR) and
//! kept with the open directory: the layers' directories are read topmost
//! first, a name is listed once (from the topmost layer that has it),
//! whiteouts hide the name in every layer below, and an opaque directory
//! ends the merge (its node lists no lower directories below it). The
//! snapshot makes READDIR offsets plain indexes, so a listing that spans a
//! copy-up, a whiteout or a new upper directory neither repeats nor skips
//! a name.

use super::super::passthrough::dir::{HostDirent, parse_dirent};
use super::super::passthrough::proc_fd::ProcFds;
use super::super::passthrough::sys::{self, SysResult};
use super::inode::{InoMap, UPPER, reported_ino};
use super::whiteout::is_whiteout;
use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};

/// One merged directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergedEntry {
    /// The inode number to report.
    pub ino: u64,
    /// `DT_*` type.
    pub typ: u8,
    /// The name.
    pub name: CString,
}

/// Reads the directories `layers` (`(layer, O_PATH descriptor)`, topmost
/// first) into one listing, without `.` and `..`.
pub(crate) fn merge(
    procs: &ProcFds,
    layers: &[(usize, BorrowedFd<'_>)],
    inos: &InoMap,
) -> SysResult<Vec<MergedEntry>> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut out = Vec::new();
    for &(layer, dir) in layers {
        let fd = procs.reopen(dir, libc::S_IFDIR, libc::O_RDONLY)?;
        each_entry(fd.as_fd(), |e| {
            let name = e.name.to_bytes();
            if name == b"." || name == b".." || !seen.insert(name.to_vec()) {
                return;
            }
            if e.typ == libc::DT_CHR
                && sys::statx_at(fd.as_fd(), e.name, libc::STATX_TYPE)
                    .is_ok_and(|st| is_whiteout(&st))
            {
                return;
            }
            let ino = if layer == UPPER {
                inos.get(&e.ino).copied().unwrap_or(e.ino)
            } else {
                reported_ino(layer, e.ino)
            };
            out.push(MergedEntry {
                ino,
                typ: e.typ,
                name: e.name.to_owned(),
            });
        })?;
    }
    Ok(out)
}

/// Calls `f` with every entry of the open directory `fd` (`.` and `..`
/// included), read with getdents64 from where its offset stands.
pub(crate) fn each_entry(fd: BorrowedFd<'_>, mut f: impl FnMut(&HostDirent<'_>)) -> SysResult<()> {
    let mut buf = vec![0u64; 4096];
    loop {
        // SAFETY: the u64 buffer viewed as bytes (any bit pattern is a
        // valid u8, alignment only decreases).
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
        let n = sys::getdents64(fd, bytes)?;
        if n == 0 {
            return Ok(());
        }
        let mut at = 0;
        while let Some((e, reclen)) = parse_dirent(&bytes[at..n]) {
            at += reclen;
            f(&e);
        }
    }
}
