//! Copy-up: making a lower inode's copy in the upper layer, atomically.
//!
//! A regular file is built as an unnamed `O_TMPFILE` in the target upper
//! directory: data first (`FICLONE` where the filesystems share extents,
//! else `copy_file_range`, else plain reads and writes), then owner (before
//! the mode, since chown clears set-id bits), mode, xattrs (all but
//! overlay's own) and timestamps last; only then is it linked into place
//! (`linkat` with `AT_EMPTY_PATH`, or through `/proc/self/fd/N` with
//! `AT_SYMLINK_FOLLOW` without CAP_DAC_READ_SEARCH). So the upper never holds a
//! partial file under the name: a failure or a crash leaves no trace.
//!
//! Directories, symlinks and special files are made by their creating call
//! (`mkdirat`, `symlinkat`, `mknodat`), which makes them whole at once, and
//! then get the same metadata.
//!
//! Everything here runs with the server's own credentials (the owner is set
//! explicitly), and on descriptors only: the source is the lower inode's
//! `O_PATH` descriptor, the target the upper directory's.

use super::super::passthrough::open_name;
use super::super::passthrough::proc_fd::{ProcFds, ProcPath};
use super::super::passthrough::sys::{self, SysResult};
use super::whiteout::is_overlay_xattr;
use fuselage_core::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// `FICLONE` (`_IOW(0x94, 9, int)`).
const FICLONE: libc::c_ulong = 0x4004_9409;

/// Copies the lower inode `src` (an `O_PATH` descriptor) to `name` in the
/// upper directory `dir`. Fails with `EEXIST` if the name is taken.
pub(crate) fn copy_up(
    procs: &ProcFds,
    src: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> SysResult<()> {
    let st = sys::statx(src, 0, libc::STATX_BASIC_STATS)?;
    let mode = u32::from(st.stx_mode);
    match mode & libc::S_IFMT {
        libc::S_IFREG => copy_file(procs, src, &st, dir, name),
        libc::S_IFDIR => {
            sys::mkdirat(dir, name, 0o700)?;
            let fd = open_name(dir, name)?;
            copy_metadata(fd.as_fd(), src, &st, true)
        }
        libc::S_IFLNK => {
            let mut buf = [0u8; 4097];
            let n = sys::readlink_empty(src, &mut buf[..4096])?;
            let target = CString::new(&buf[..n]).map_err(|_| Errno::EINVAL)?;
            sys::symlinkat(&target, dir, name)?;
            let fd = open_name(dir, name)?;
            copy_metadata(fd.as_fd(), src, &st, false)
        }
        kind => {
            let rdev = libc::makedev(st.stx_rdev_major, st.stx_rdev_minor);
            sys::mknodat(dir, name, kind | 0o600, rdev)?;
            let fd = open_name(dir, name)?;
            copy_metadata(fd.as_fd(), src, &st, true)
        }
    }
}

fn copy_file(
    procs: &ProcFds,
    src: BorrowedFd<'_>,
    st: &libc::statx,
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> SysResult<()> {
    let input = procs.reopen(src, libc::S_IFREG, libc::O_RDONLY)?;
    let tmp = sys::openat2(
        dir,
        c".",
        libc::O_TMPFILE | libc::O_RDWR,
        0o600,
        sys::RESOLVE_CONFINED,
    )?;
    copy_data(input.as_fd(), tmp.as_fd(), st.stx_size)?;
    copy_metadata(tmp.as_fd(), src, st, true)?;
    match sys::link_empty(tmp.as_fd(), dir, name) {
        Err(Errno::ENOENT) | Err(Errno::EPERM) => {
            sys::link_proc(ProcPath::new(tmp.as_fd()).as_cstr(), dir, name)
        }
        other => other,
    }
}

/// Copies `len` bytes of `input` to the empty file `output`.
pub(crate) fn copy_data(input: BorrowedFd<'_>, output: BorrowedFd<'_>, len: u64) -> SysResult<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: FICLONE takes the source descriptor as its argument; both
    // descriptors are open for the call.
    if unsafe { libc::ioctl(output.as_raw_fd(), FICLONE as _, input.as_raw_fd()) } == 0 {
        return Ok(());
    }
    let mut done = 0u64;
    while done < len {
        match sys::copy_file_range(input, done, output, done, len - done) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                return copy_by_reading(input, done, output, done, len - done).map(drop);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// copy_file_range(2) of up to `len` bytes between open files, for a
/// COPY_FILE_RANGE from any layer into the upper: the host call where the
/// two files allow it (same filesystem), else reads and writes of at most
/// 64 MiB. Returns the bytes copied.
pub(crate) fn copy_range(
    input: BorrowedFd<'_>,
    off_in: u64,
    output: BorrowedFd<'_>,
    off_out: u64,
    len: u64,
) -> SysResult<u64> {
    match sys::copy_file_range(input, off_in, output, off_out, len) {
        Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {}
        other => return other,
    }
    copy_by_reading(input, off_in, output, off_out, len.min(64 << 20))
}

/// Reads and writes (1 MiB at a time) up to `len` bytes from `off_in` of
/// `input` to `off_out` of `output`, where the host cannot copy between
/// them; stops early at the input's end. Returns the bytes copied.
fn copy_by_reading(
    input: BorrowedFd<'_>,
    off_in: u64,
    output: BorrowedFd<'_>,
    off_out: u64,
    len: u64,
) -> SysResult<u64> {
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = sys::pread(input, &mut buf[..want], off_in + done)?;
        if n == 0 {
            break;
        }
        let mut w = 0;
        while w < n {
            w += sys::pwrite(output, &buf[w..n], off_out + done + w as u64)?;
        }
        done += n as u64;
    }
    Ok(done)
}

/// Owner, then mode, then xattrs, then timestamps of `src` onto `dst`.
fn copy_metadata(
    dst: BorrowedFd<'_>,
    src: BorrowedFd<'_>,
    st: &libc::statx,
    with_mode: bool,
) -> SysResult<()> {
    sys::fchown_empty(dst, st.stx_uid, st.stx_gid)?;
    let mode = u32::from(st.stx_mode) & 0o7777;
    if with_mode {
        match sys::fchmod_empty(dst, mode) {
            Err(Errno::ENOSYS | Errno::EINVAL | Errno::EBADF) => {
                sys::chmod_path(ProcPath::new(dst).as_cstr(), mode)?
            }
            other => other?,
        }
        copy_xattrs(src, dst)?;
    }
    let ts = |t: libc::statx_timestamp| libc::timespec {
        tv_sec: t.tv_sec,
        tv_nsec: i64::from(t.tv_nsec),
    };
    sys::utimens_empty(dst, &[ts(st.stx_atime), ts(st.stx_mtime)])
}

/// Copies every xattr but overlay's own. Names the target refuses in the
/// `security.` namespace (an LSM's label) are skipped.
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> SysResult<()> {
    let sp = ProcPath::new(src);
    let dp = ProcPath::new(dst);
    let names = match read_list(|buf| sys::listxattr(sp.as_cstr(), buf)) {
        Ok(n) => n,
        Err(Errno::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if is_overlay_xattr(name) {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let value = match read_list(|buf| sys::getxattr(sp.as_cstr(), &cname, buf)) {
            Ok(v) => v,
            Err(Errno::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        match sys::setxattr(dp.as_cstr(), &cname, &value, 0) {
            Ok(()) => {}
            Err(_) if name.starts_with(b"security.") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a size-queried value (`get` with an empty buffer answers the
/// size), retrying if it grew meanwhile.
pub(crate) fn read_list(mut get: impl FnMut(&mut [u8]) -> SysResult<usize>) -> SysResult<Vec<u8>> {
    for _ in 0..4 {
        let size = get(&mut [])?;
        let mut buf = vec![0u8; size];
        match get(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::ERANGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p =
                std::env::temp_dir().join(format!("fuselage-copy-up-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(p.join("lower")).unwrap();
            std::fs::create_dir_all(p.join("upper")).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn o_path(p: &Path) -> OwnedFd {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        sys::open_path(&c, libc::O_PATH | libc::O_NOFOLLOW).unwrap()
    }

    #[test]
    fn a_file_is_copied_whole_with_its_metadata() {
        let s = Scratch::new("file");
        let src = s.0.join("lower/f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).unwrap();
        let procs = ProcFds::open().unwrap();
        let (from, dir) = (o_path(&src), o_path(&s.0.join("upper")));
        copy_up(&procs, from.as_fd(), dir.as_fd(), c"f").unwrap();
        let dst = s.0.join("upper/f");
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        let (a, b) = (
            std::fs::metadata(&src).unwrap(),
            std::fs::metadata(&dst).unwrap(),
        );
        assert_eq!(a.mode(), b.mode());
        assert_eq!((a.uid(), a.gid()), (b.uid(), b.gid()));
        assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
        // The name is taken: nothing is replaced, nothing half-made left.
        assert_eq!(
            copy_up(&procs, from.as_fd(), dir.as_fd(), c"f"),
            Err(Errno::EEXIST)
        );
        let names: Vec<_> = std::fs::read_dir(s.0.join("upper")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn symlinks_and_directories_are_copied() {
        let s = Scratch::new("other");
        std::os::unix::fs::symlink("target/x", s.0.join("lower/l")).unwrap();
        std::fs::create_dir(s.0.join("lower/d")).unwrap();
        std::fs::set_permissions(s.0.join("lower/d"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        let procs = ProcFds::open().unwrap();
        let dir = o_path(&s.0.join("upper"));
        copy_up(
            &procs,
            o_path(&s.0.join("lower/l")).as_fd(),
            dir.as_fd(),
            c"l",
        )
        .unwrap();
        copy_up(
            &procs,
            o_path(&s.0.join("lower/d")).as_fd(),
            dir.as_fd(),
            c"d",
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(s.0.join("upper/l")).unwrap(),
            Path::new("target/x")
        );
        let m = std::fs::metadata(s.0.join("upper/d")).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o751);
    }

    #[test]
    fn read_list_follows_the_size() {
        let v = read_list(|buf| {
            if buf.is_empty() {
                Ok(3)
            } else {
                buf[..3].copy_from_slice(b"abc");
                Ok(3)
            }
        })
        .unwrap();
        assert_eq!(v, b"abc");
    }
}
