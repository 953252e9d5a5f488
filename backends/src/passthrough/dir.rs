//! Directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR.
//!
//! An open directory is a host directory descriptor (reopened from the
//! inode's `O_PATH` descriptor) read with getdents64 into a buffer owned by
//! the handle. Entries are passed on with the host's own `d_off` cookies as
//! offsets, so a READDIR that resumes where the previous one stopped continues
//! from the buffer, and any other offset is an lseek to that cookie (which is
//! what telldir/seekdir on the host would do).
//!
//! READDIRPLUS looks every entry up exactly like LOOKUP does (confined
//! openat2, statx, one lookup reference), checking first that the record fits
//! so that no reference is taken for an entry the kernel never receives.
//! `.` and `..` go out with node id 0 (the kernel takes no reference for them).

use super::inode_store::{Inode, lock};
use super::sys::{self, SysResult};
use super::{PassthroughFs, check_name_bytes};
use fuselage_core::Errno;
use fuselage_core::abi::{fuse_attr, fuse_entry_out};
use fuselage_core::dirent::direntplus_size;
use fuselage_core::reply::{ReplyDirectory, ReplySink};
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Bytes of getdents64 buffer per open directory.
const DIR_BUF: usize = 32 * 1024;

/// One host directory entry.
pub(crate) struct HostDirent<'a> {
    pub ino: u64,
    /// The cookie to resume after this entry.
    pub next: u64,
    pub typ: u8,
    pub name: &'a CStr,
}

/// What the consumer did with an entry.
pub(crate) enum Take {
    /// Packed: move on.
    Packed,
    /// Did not fit: stop, resume from this entry next time.
    Full,
}

struct DirStream {
    fd: OwnedFd,
    buf: Vec<u64>,
    start: usize,
    end: usize,
    /// The cookie of the entry at `start` (or the descriptor's position when
    /// the buffer is empty).
    offset: u64,
    positioned: bool,
}

/// An open directory.
pub(crate) struct DirHandle {
    /// The node id the kernel opened.
    pub nodeid: u64,
    inode: Arc<Inode>,
    stream: Mutex<DirStream>,
}

impl DirHandle {
    fn new(nodeid: u64, inode: Arc<Inode>, fd: OwnedFd) -> DirHandle {
        inode.opens.fetch_add(1, Ordering::AcqRel);
        DirHandle {
            nodeid,
            inode,
            stream: Mutex::new(DirStream {
                fd,
                buf: vec![0u64; DIR_BUF / 8],
                start: 0,
                end: 0,
                offset: 0,
                positioned: false,
            }),
        }
    }

    /// Passes entries from cookie `offset` on to `take` (with the directory
    /// descriptor, for lookups) until it is full or the directory ends.
    pub(crate) fn read(
        &self,
        offset: u64,
        mut take: impl FnMut(&HostDirent<'_>, BorrowedFd<'_>) -> Take,
    ) -> SysResult<()> {
        let mut s = lock(&self.stream);
        let s = &mut *s;
        if !s.positioned || s.offset != offset {
            sys::lseek(s.fd.as_fd(), offset as i64, libc::SEEK_SET)?;
            s.start = 0;
            s.end = 0;
            s.offset = offset;
            s.positioned = true;
        }
        let mut taken = 0usize;
        loop {
            if s.start >= s.end {
                // SAFETY: the u64 buffer viewed as bytes (any bit pattern is
                // a valid u8; alignment only decreases).
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(s.buf.as_mut_ptr().cast::<u8>(), s.buf.len() * 8)
                };
                match sys::getdents64(s.fd.as_fd(), bytes) {
                    Ok(0) => break,
                    Ok(n) => {
                        s.start = 0;
                        s.end = n;
                    }
                    // Report what was packed; the next call retries.
                    Err(_) if taken > 0 => break,
                    Err(e) => {
                        s.positioned = false;
                        return Err(e);
                    }
                }
            }
            // SAFETY: as above; reading the bytes the kernel filled in.
            let bytes =
                unsafe { std::slice::from_raw_parts(s.buf.as_ptr().cast::<u8>(), s.buf.len() * 8) };
            let Some((entry, reclen)) = parse_dirent(&bytes[s.start..s.end]) else {
                // Malformed record: drop the rest of the buffer.
                s.start = s.end;
                continue;
            };
            match take(&entry, s.fd.as_fd()) {
                Take::Full => break,
                Take::Packed => {
                    taken += 1;
                    s.start += reclen;
                    s.offset = entry.next;
                }
            }
        }
        Ok(())
    }

    fn fsync(&self, datasync: bool) -> SysResult<()> {
        let s = lock(&self.stream);
        sys::fsync(s.fd.as_fd(), datasync)
    }
}

impl Drop for DirHandle {
    fn drop(&mut self) {
        self.inode.opens.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Parses one `linux_dirent64` at the start of `b`: `(entry, d_reclen)`.
fn parse_dirent(b: &[u8]) -> Option<(HostDirent<'_>, usize)> {
    const NAME_AT: usize = 19;
    if b.len() < NAME_AT + 1 {
        return None;
    }
    let ino = u64::from_ne_bytes(b[0..8].try_into().ok()?);
    let off = i64::from_ne_bytes(b[8..16].try_into().ok()?);
    let reclen = u16::from_ne_bytes(b[16..18].try_into().ok()?) as usize;
    let typ = b[18];
    if reclen < NAME_AT + 1 || reclen > b.len() {
        return None;
    }
    let name = CStr::from_bytes_until_nul(&b[NAME_AT..reclen]).ok()?;
    Some((
        HostDirent {
            ino,
            next: off as u64,
            typ,
            name,
        },
        reclen,
    ))
}

fn is_dot_or_dotdot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

impl PassthroughFs {
    pub(super) fn do_opendir(&self, ino: u64, flags: u32) -> SysResult<u64> {
        let inode = self.inode(ino)?;
        if !inode.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let anchor = self.store.fd(&inode)?;
        let flags = (flags as i32 & (libc::O_NOATIME | libc::O_NONBLOCK)) | libc::O_RDONLY;
        let fd = self.procs.reopen(anchor.as_fd(), inode.kind, flags)?;
        drop(anchor);
        Ok(self.dirs.insert(DirHandle::new(ino, inode, fd)))
    }

    fn dir_handle(&self, ino: u64, fh: u64) -> SysResult<Arc<DirHandle>> {
        let dir = self.dirs.get(fh)?;
        if dir.nodeid != ino {
            return Err(Errno::EBADF);
        }
        Ok(dir)
    }

    pub(super) fn do_readdir<S: ReplySink>(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        reply: &mut ReplyDirectory<'_, S>,
    ) -> SysResult<()> {
        let dir = self.dir_handle(ino, fh)?;
        dir.read(offset, |e, _| {
            if reply.push(e.ino, e.next, u32::from(e.typ), e.name.to_bytes()) {
                Take::Packed
            } else {
                Take::Full
            }
        })
    }

    pub(super) fn do_readdirplus<S: ReplySink>(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        reply: &mut ReplyDirectory<'_, S>,
    ) -> SysResult<()> {
        let dir = self.dir_handle(ino, fh)?;
        dir.read(offset, |e, dirfd| {
            let name = e.name.to_bytes();
            if direntplus_size(name.len()) > reply.buf().remaining() {
                return Take::Full;
            }
            let looked_up = if is_dot_or_dotdot(name) || check_name_bytes(name).is_err() {
                None
            } else {
                self.lookup_at(&dir.inode, dirfd, e.name).ok()
            };
            let (entry, nodeid) = match looked_up {
                Some((nodeid, entry)) => (entry, nodeid),
                None => (
                    fuse_entry_out {
                        attr: fuse_attr {
                            ino: e.ino,
                            mode: u32::from(e.typ) << 12,
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    0,
                ),
            };
            let typ = (entry.attr.mode & libc::S_IFMT) >> 12;
            if reply.push_plus(&entry, e.next, typ, name) {
                Take::Packed
            } else {
                // Cannot happen after the size check; never leak the
                // reference the lookup took.
                if nodeid != 0 {
                    self.store.forget(nodeid, 1);
                }
                Take::Full
            }
        })
    }

    pub(super) fn do_releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }

    pub(super) fn do_fsyncdir(&self, ino: u64, fh: u64, datasync: bool) -> SysResult<()> {
        self.dir_handle(ino, fh)?.fsync(datasync)
    }
}
