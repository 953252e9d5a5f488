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
use fuselage_core::dirent::{DirentError, direntplus_size, valid_name};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Packed: move on.
    Packed,
    /// Left out (a name the kernel would refuse): move on without it.
    Skipped,
    /// Did not fit: stop, resume from this entry next time.
    Full,
}

impl From<Result<(), DirentError>> for Take {
    fn from(pushed: Result<(), DirentError>) -> Take {
        match pushed {
            Ok(()) => Take::Packed,
            Err(DirentError::InvalidName) => Take::Skipped,
            Err(DirentError::Full) => Take::Full,
        }
    }
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
            stream: Mutex::new(DirStream::new(fd)),
        }
    }

    /// Passes entries from cookie `offset` on to `take` (with the directory
    /// descriptor, for lookups) until it is full or the directory ends.
    pub(crate) fn read(
        &self,
        offset: u64,
        take: impl FnMut(&HostDirent<'_>, BorrowedFd<'_>) -> Take,
    ) -> SysResult<()> {
        lock(&self.stream).read(offset, take)
    }

    fn fsync(&self, datasync: bool) -> SysResult<()> {
        let s = lock(&self.stream);
        sys::fsync(s.fd.as_fd(), datasync)
    }
}

impl DirStream {
    fn new(fd: OwnedFd) -> DirStream {
        DirStream {
            fd,
            buf: vec![0u64; DIR_BUF / 8],
            start: 0,
            end: 0,
            offset: 0,
            positioned: false,
        }
    }

    /// See [`DirHandle::read`].
    fn read(
        &mut self,
        offset: u64,
        mut take: impl FnMut(&HostDirent<'_>, BorrowedFd<'_>) -> Take,
    ) -> SysResult<()> {
        let s = self;
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
                // Consumed but not sent: an error after only skipped entries
                // must still be reported, not look like the end.
                Take::Skipped => {
                    s.start += reclen;
                    s.offset = entry.next;
                }
            }
        }
        Ok(())
    }
}

impl Drop for DirHandle {
    fn drop(&mut self) {
        self.inode.opens.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Parses one `linux_dirent64` at the start of `b`: `(entry, d_reclen)`.
pub(crate) fn parse_dirent(b: &[u8]) -> Option<(HostDirent<'_>, usize)> {
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
    pub(crate) fn do_opendir(&self, ino: u64, flags: u32) -> SysResult<u64> {
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

    pub(crate) fn do_readdir<S: ReplySink>(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        reply: &mut ReplyDirectory<'_, S>,
    ) -> SysResult<()> {
        let dir = self.dir_handle(ino, fh)?;
        dir.read(offset, |e, _| {
            Take::from(reply.push(e.ino, e.next, u32::from(e.typ), e.name.to_bytes()))
        })
    }

    pub(crate) fn do_readdirplus<S: ReplySink>(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        reply: &mut ReplyDirectory<'_, S>,
    ) -> SysResult<()> {
        let dir = self.dir_handle(ino, fh)?;
        dir.read(offset, |e, dirfd| {
            let name = e.name.to_bytes();
            if !valid_name(name) {
                // The kernel would fail the whole READDIRPLUS: leave the
                // entry out (before any lookup reference is taken).
                return Take::Skipped;
            }
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
            let taken = Take::from(reply.push_plus(&entry, e.next, typ, name));
            if taken != Take::Packed && nodeid != 0 {
                // Cannot happen after the checks above; never leak the
                // reference the lookup took.
                self.forget_node(nodeid, 1);
            }
            taken
        })
    }

    pub(crate) fn do_releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }

    pub(crate) fn do_fsyncdir(&self, ino: u64, fh: u64, datasync: bool) -> SysResult<()> {
        self.dir_handle(ino, fh)?.fsync(datasync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuselage_core::DirentBuf;
    use fuselage_core::dirent::dtype;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn push_results_map_to_takes() {
        let mut raw = [0u8; 64];
        let mut buf = DirentBuf::new(&mut raw, 64);
        assert_eq!(
            Take::from(buf.push(1, 1, dtype::REG, b"a/b")),
            Take::Skipped
        );
        assert_eq!(Take::from(buf.push(1, 1, dtype::REG, b"ok")), Take::Packed);
        let long = [b'x'; 40];
        assert_eq!(Take::from(buf.push(1, 1, dtype::REG, &long)), Take::Full);
    }

    /// A skipped entry (a name the kernel would refuse) does not end the
    /// listing: the entries after it come, and resuming from the last
    /// cookie neither repeats nor loses any.
    #[test]
    fn a_skipped_entry_does_not_end_the_listing() {
        let dir = std::env::temp_dir().join(format!("fuselage-dir-skip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
        for n in &names {
            std::fs::write(dir.join(n), b"").unwrap();
        }
        let fd = OwnedFd::from(std::fs::File::open(&dir).unwrap());
        let mut stream = DirStream::new(fd);
        // Every third entry plays an invalid name; at most 5 entries fit.
        let mut seen = Vec::new();
        let mut offset = 0;
        let mut pos = 0usize;
        loop {
            let mut packed = 0;
            let mut last = None;
            stream
                .read(offset, |e, _| {
                    pos += 1;
                    if pos.is_multiple_of(3) {
                        last = Some(e.next);
                        return Take::Skipped;
                    }
                    if packed == 5 {
                        pos -= 1; // offered again next time
                        return Take::Full;
                    }
                    packed += 1;
                    seen.push(std::ffi::OsStr::from_bytes(e.name.to_bytes()).to_owned());
                    last = Some(e.next);
                    Take::Packed
                })
                .unwrap();
            match last {
                Some(next) => offset = next,
                None => break,
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let total = names.len() + 2; // with "." and ".."
        assert_eq!(pos, total, "every entry was offered exactly once");
        assert_eq!(
            seen.len(),
            total - total / 3,
            "only the skipped ones are missing"
        );
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no entry repeated: {seen:?}");
    }
}
