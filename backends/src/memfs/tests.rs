//! Tests of [`MemFs`] through the [`Filesystem`] trait, decoding the reply
//! bytes the way the kernel would.

use super::*;
use fuselage_core::abi::*;
use fuselage_core::dirent::dtype;
use fuselage_core::request::SetxattrArgs;
use fuselage_core::{DirentBuf, TimeOrNow};
use fuselage_core::{SetAttr, op};
use std::cell::RefCell;
use std::ffi::CString;
use zerocopy::FromBytes;

const ROOT: u64 = 1;
const NOREPLACE: u32 = libc::RENAME_NOREPLACE;
const EXCHANGE: u32 = libc::RENAME_EXCHANGE;
const WHITEOUT: u32 = libc::RENAME_WHITEOUT;
const CHUNK: u64 = CHUNK_SIZE as u64;

/// Captures the last reply.
#[derive(Default)]
struct Capture {
    last: RefCell<Vec<u8>>,
    /// How many slices the last reply came in (the header included).
    parts: std::cell::Cell<usize>,
}

impl ReplySink for Capture {
    fn send(&self, parts: &[&[u8]]) {
        self.parts.set(parts.len());
        let mut b = self.last.borrow_mut();
        b.clear();
        for p in parts {
            b.extend_from_slice(p);
        }
    }
    fn send_file(&self, _parts: &[&[u8]], _file: FileRange<'_>) {
        unreachable!("memfs never answers with a file range")
    }
}

use fuselage_core::reply::FileRange;

struct Harness {
    fs: MemFs,
    cap: Capture,
    uid: u32,
    gid: u32,
}

fn c(s: &[u8]) -> CString {
    CString::new(s).unwrap()
}

#[derive(Debug, Clone, PartialEq)]
struct Dirent {
    ino: u64,
    off: u64,
    typ: u32,
    name: Vec<u8>,
    entry: Option<fuse_entry_out>,
}

impl Harness {
    fn new() -> Self {
        Harness::with(MemFsConfig::default())
    }

    fn with(config: MemFsConfig) -> Self {
        Harness {
            fs: MemFs::new(config),
            cap: Capture::default(),
            uid: 1000,
            gid: 1000,
        }
    }

    fn req(&self) -> RequestHeader {
        fuse_in_header {
            uid: self.uid,
            gid: self.gid,
            unique: 7,
            ..Default::default()
        }
    }

    /// The last reply's body, or its errno.
    fn body(&self) -> Result<Vec<u8>, Errno> {
        let b = self.cap.last.borrow();
        let (h, rest) = fuse_out_header::read_from_prefix(&b).unwrap();
        assert_eq!(h.len as usize, b.len());
        assert_eq!(h.unique, 7);
        if h.error != 0 {
            assert!(rest.is_empty());
            Err(Errno(-h.error))
        } else {
            Ok(rest.to_vec())
        }
    }

    fn decode<T: FromBytes>(&self) -> Result<T, Errno> {
        let b = self.body()?;
        Ok(T::read_from_bytes(&b).expect("reply size"))
    }

    fn entry(&self) -> Result<fuse_entry_out, Errno> {
        let e: fuse_entry_out = self.decode()?;
        if e.nodeid == 0 {
            return Err(Errno::ENOENT);
        }
        assert_eq!(e.nodeid, e.attr.ino);
        Ok(e)
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Result<fuse_entry_out, Errno> {
        self.fs.lookup(
            &self.req(),
            op::Lookup::new(parent, &c(name)),
            ReplyEntry::new(7, &self.cap),
        );
        self.entry()
    }

    fn ino(&self, parent: u64, name: &[u8]) -> u64 {
        let e = self.lookup(parent, name).unwrap();
        self.forget(e.nodeid, 1);
        e.nodeid
    }

    fn forget(&self, ino: u64, n: u64) {
        self.fs.forget(&self.req(), op::Forget::new(ino, n));
    }

    fn getattr(&self, ino: u64) -> Result<fuse_attr, Errno> {
        let arg = fuse_getattr_in::default();
        self.fs.getattr(
            &self.req(),
            op::Getattr::new(ino, &arg),
            ReplyAttr::new(7, &self.cap),
        );
        Ok(self.decode::<fuse_attr_out>()?.attr)
    }

    fn setattr(&self, ino: u64, a: SetAttr) -> Result<fuse_attr, Errno> {
        let arg = a.to_wire();
        self.fs.setattr(
            &self.req(),
            op::Setattr::new(ino, &arg),
            ReplyAttr::new(7, &self.cap),
        );
        Ok(self.decode::<fuse_attr_out>()?.attr)
    }

    fn mkdir(&self, parent: u64, name: &[u8], mode: u32) -> Result<fuse_entry_out, Errno> {
        self.mkdir_umask(parent, name, mode, 0)
    }

    fn mkdir_umask(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> Result<fuse_entry_out, Errno> {
        let arg = fuse_mkdir_in { mode, umask };
        self.fs.mkdir(
            &self.req(),
            op::Mkdir::new(parent, &arg, &c(name)),
            ReplyEntry::new(7, &self.cap),
        );
        self.entry()
    }

    fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<fuse_entry_out, Errno> {
        let arg = fuse_mknod_in {
            mode,
            rdev,
            umask,
            padding: 0,
        };
        self.fs.mknod(
            &self.req(),
            op::Mknod::new(parent, &arg, &c(name)),
            ReplyEntry::new(7, &self.cap),
        );
        self.entry()
    }

    fn symlink(&self, parent: u64, name: &[u8], target: &[u8]) -> Result<fuse_entry_out, Errno> {
        self.fs.symlink(
            &self.req(),
            op::Symlink::new(parent, &c(name), &c(target)),
            ReplyEntry::new(7, &self.cap),
        );
        self.entry()
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        self.fs.readlink(
            &self.req(),
            op::Readlink::new(ino),
            ReplyData::new(7, &self.cap),
        );
        self.body()
    }

    fn create_full(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: u32,
    ) -> Result<(fuse_entry_out, fuse_open_out), Errno> {
        let arg = fuse_create_in {
            flags,
            mode,
            umask,
            open_flags: 0,
        };
        self.fs.create(
            &self.req(),
            op::Create::new(parent, &arg, &c(name)),
            ReplyCreate::new(7, &self.cap),
        );
        let b = self.body()?;
        let (e, rest) = fuse_entry_out::read_from_prefix(&b).unwrap();
        Ok((e, fuse_open_out::read_from_bytes(rest).unwrap()))
    }

    /// Creates a file, opened once (call `release`).
    fn create(&self, parent: u64, name: &[u8]) -> u64 {
        let flags = (libc::O_CREAT | libc::O_RDWR) as u32;
        self.create_full(parent, name, 0o644 | libc::S_IFREG, 0, flags)
            .unwrap()
            .0
            .nodeid
    }

    /// Creates a file and drops every reference the kernel got.
    fn touch(&self, parent: u64, name: &[u8]) -> u64 {
        let ino = self.create(parent, name);
        self.release(ino);
        self.forget(ino, 1);
        ino
    }

    fn tmpfile(&self, parent: u64, mode: u32, umask: u32) -> Result<fuse_entry_out, Errno> {
        let arg = fuse_create_in {
            flags: libc::O_RDWR as u32,
            mode,
            umask,
            open_flags: 0,
        };
        self.fs.tmpfile(
            &self.req(),
            op::Tmpfile::new(parent, &arg, &c(b"tmp")),
            ReplyCreate::new(7, &self.cap),
        );
        let b = self.body()?;
        Ok(fuse_entry_out::read_from_prefix(&b).unwrap().0)
    }

    fn open(&self, ino: u64, flags: u32) -> Result<fuse_open_out, Errno> {
        let arg = fuse_open_in {
            flags,
            open_flags: 0,
        };
        self.fs.open(
            &self.req(),
            op::Open::new(ino, &arg),
            ReplyOpen::new(7, &self.cap),
        );
        self.decode()
    }

    fn release(&self, ino: u64) {
        let arg = fuse_release_in::default();
        self.fs.release(
            &self.req(),
            op::Release::new(ino, &arg),
            ReplyEmpty::new(7, &self.cap),
        );
        self.body().unwrap();
    }

    fn write(&self, ino: u64, off: u64, data: &[u8]) -> Result<u32, Errno> {
        let arg = fuse_write_in {
            offset: off,
            size: data.len() as u32,
            ..Default::default()
        };
        self.fs.write(
            &self.req(),
            op::Write::new(ino, &arg, data),
            ReplyWrite::new(7, &self.cap),
        );
        Ok(self.decode::<fuse_write_out>()?.size)
    }

    fn read(&self, ino: u64, off: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let arg = fuse_read_in {
            offset: off,
            size,
            ..Default::default()
        };
        self.fs.read(
            &self.req(),
            op::Read::new(ino, &arg),
            ReplyData::new(7, &self.cap),
        );
        self.body()
    }

    fn empty(&self) -> Result<(), Errno> {
        let b = self.body()?;
        assert!(b.is_empty());
        Ok(())
    }

    fn unlink(&self, parent: u64, name: &[u8]) -> Result<(), Errno> {
        self.fs.unlink(
            &self.req(),
            op::Unlink::new(parent, &c(name)),
            ReplyEmpty::new(7, &self.cap),
        );
        self.empty()
    }

    fn rmdir(&self, parent: u64, name: &[u8]) -> Result<(), Errno> {
        self.fs.rmdir(
            &self.req(),
            op::Rmdir::new(parent, &c(name)),
            ReplyEmpty::new(7, &self.cap),
        );
        self.empty()
    }

    fn rename(&self, p: u64, n: &[u8], np: u64, nn: &[u8], flags: u32) -> Result<(), Errno> {
        self.fs.rename(
            &self.req(),
            op::Rename::new(p, &c(n), np, &c(nn), flags),
            ReplyEmpty::new(7, &self.cap),
        );
        self.empty()
    }

    fn link(&self, ino: u64, np: u64, nn: &[u8]) -> Result<fuse_entry_out, Errno> {
        let arg = fuse_link_in { oldnodeid: ino };
        self.fs.link(
            &self.req(),
            op::Link::new(np, &arg, &c(nn)),
            ReplyEntry::new(7, &self.cap),
        );
        self.entry()
    }

    fn readdir(&self, ino: u64, off: u64, size: usize, plus: bool) -> Result<Vec<Dirent>, Errno> {
        let mut scratch = vec![0u8; size];
        let buf = DirentBuf::new(&mut scratch, size);
        let reply = ReplyDirectory::new(7, &self.cap, buf);
        let arg = fuse_read_in {
            offset: off,
            size: size as u32,
            ..Default::default()
        };
        let op = op::Readdir::new(ino, &arg);
        if plus {
            self.fs.readdirplus(&self.req(), op, reply);
        } else {
            self.fs.readdir(&self.req(), op, reply);
        }
        let b = self.body()?;
        let mut rest = &b[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let entry = if plus {
                let (e, r) = fuse_entry_out::read_from_prefix(rest).unwrap();
                rest = r;
                Some(e)
            } else {
                None
            };
            let (d, r) = fuse_dirent::read_from_prefix(rest).unwrap();
            let name = r[..d.namelen as usize].to_vec();
            let rec = (d.namelen as usize).div_ceil(8) * 8;
            rest = &r[rec..];
            out.push(Dirent {
                ino: d.ino,
                off: d.off,
                typ: d.typ,
                name,
                entry,
            });
        }
        Ok(out)
    }

    /// All names via READDIR with a small buffer, resuming at offsets.
    fn list(&self, ino: u64) -> Vec<Vec<u8>> {
        let mut off = 0;
        let mut names = Vec::new();
        loop {
            let batch = self.readdir(ino, off, 100, false).unwrap();
            let Some(last) = batch.last() else {
                return names;
            };
            off = last.off;
            names.extend(batch.into_iter().map(|d| d.name));
        }
    }

    fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: u32) -> Result<(), Errno> {
        let arg = SetxattrArgs {
            size: value.len() as u32,
            flags,
            setxattr_flags: 0,
        };
        self.fs.setxattr(
            &self.req(),
            op::Setxattr::new(ino, arg, &c(name), value),
            ReplyEmpty::new(7, &self.cap),
        );
        self.empty()
    }

    fn getxattr(&self, ino: u64, name: &[u8], size: u32) -> Result<Vec<u8>, Errno> {
        let arg = fuse_getxattr_in { size, padding: 0 };
        self.fs.getxattr(
            &self.req(),
            op::Getxattr::new(ino, &arg, &c(name)),
            ReplyXattr::new(7, &self.cap),
        );
        self.body()
    }

    fn listxattr(&self, ino: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let arg = fuse_getxattr_in { size, padding: 0 };
        self.fs.listxattr(
            &self.req(),
            op::Listxattr::new(ino, &arg),
            ReplyXattr::new(7, &self.cap),
        );
        self.body()
    }

    fn removexattr(&self, ino: u64, name: &[u8]) -> Result<(), Errno> {
        self.fs.removexattr(
            &self.req(),
            op::Removexattr::new(ino, &c(name)),
            ReplyEmpty::new(7, &self.cap),
        );
        self.empty()
    }

    fn fallocate(&self, ino: u64, off: u64, len: u64, mode: u32) -> Result<(), Errno> {
        let arg = fuse_fallocate_in {
            offset: off,
            length: len,
            mode,
            ..Default::default()
        };
        self.fs.fallocate(
            &self.req(),
            op::Fallocate::new(ino, &arg),
            ReplyEmpty::new(7, &self.cap),
        );
        self.empty()
    }

    fn lseek(&self, ino: u64, off: u64, whence: i32) -> Result<u64, Errno> {
        let arg = fuse_lseek_in {
            offset: off,
            whence: whence as u32,
            ..Default::default()
        };
        self.fs.lseek(
            &self.req(),
            op::Lseek::new(ino, &arg),
            ReplyLseek::new(7, &self.cap),
        );
        Ok(self.decode::<fuse_lseek_out>()?.offset)
    }

    fn copy(&self, from: u64, off_in: u64, to: u64, off_out: u64, len: u64) -> Result<u64, Errno> {
        let arg = fuse_copy_file_range_in {
            off_in,
            nodeid_out: to,
            off_out,
            len,
            ..Default::default()
        };
        self.fs.copy_file_range(
            &self.req(),
            op::CopyFileRange::new(from, &arg),
            ReplyCopy::with_format(7, &self.cap, true),
        );
        let b = self.body()?;
        Ok(u64::from_ne_bytes(b[..8].try_into().unwrap()))
    }

    fn statfs(&self) -> fuse_kstatfs {
        self.fs.statfs(
            &self.req(),
            op::Statfs::new(ROOT),
            ReplyStatfs::new(7, &self.cap),
        );
        self.decode::<fuse_statfs_out>().unwrap().st
    }

    fn lookups(&self, ino: u64) -> u64 {
        lock(&self.fs.table.get(ino).unwrap().meta).lookups
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[test]
fn root_attributes() {
    let h = Harness::with(MemFsConfig {
        uid: 42,
        gid: 43,
        root_mode: 0o1777,
        ..Default::default()
    });
    let a = h.getattr(ROOT).unwrap();
    assert_eq!(a.ino, ROOT);
    assert_eq!(a.mode, libc::S_IFDIR | 0o1777);
    assert_eq!((a.uid, a.gid, a.nlink), (42, 43, 2));
    assert_eq!(a.blksize, 4096);
    assert_eq!(h.getattr(999), Err(Errno::ENOENT));
}

#[test]
fn create_write_read_across_chunks_and_holes() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    let a = pattern(200_000, 3);
    // Straddles chunk 0/1, leaving a hole before it.
    assert_eq!(h.write(f, 100_000, &a).unwrap(), 200_000);
    let b = pattern(5000, 9);
    // A lone write in chunk 5: chunks 3 and 4 are holes.
    h.write(f, 5 * CHUNK + 10, &b).unwrap();
    let size = 5 * CHUNK + 10 + 5000;
    let attr = h.getattr(f).unwrap();
    assert_eq!(attr.size, size);
    // As on tmpfs, only the 4 KiB pages written are stored: those holding
    // 100_000..300_000, and two pages in chunk 5.
    let stored = 300_000u64.div_ceil(4096) * 4096 - 100_000 / 4096 * 4096 + 8192;
    assert_eq!(attr.blocks, stored / 512);

    let mut expect = vec![0u8; size as usize];
    expect[100_000..300_000].copy_from_slice(&a);
    expect[(5 * CHUNK + 10) as usize..].copy_from_slice(&b);
    // 1 MiB reads at assorted alignments, and short reads at EOF.
    for off in [
        0u64,
        1,
        99_999,
        CHUNK - 3,
        3 * CHUNK,
        size - 10,
        size,
        size + 100,
    ] {
        let got = h.read(f, off, 1 << 20).unwrap();
        let from = (off as usize).min(expect.len());
        let to = (from + (1 << 20)).min(expect.len());
        assert_eq!(got, &expect[from..to], "read at {off}");
    }
    // Overwrite in place.
    h.write(f, 100_001, b"xyz").unwrap();
    assert_eq!(
        h.read(f, 100_000, 5).unwrap(),
        [a[0], b'x', b'y', b'z', a[4]]
    );
    assert_eq!(h.getattr(f).unwrap().blocks, stored / 512);
    h.release(f);
}

#[test]
fn read_write_on_non_files() {
    let h = Harness::new();
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    assert_eq!(h.read(d, 0, 10), Err(Errno::EISDIR));
    assert_eq!(h.write(d, 0, b"x"), Err(Errno::EISDIR));
    let l = h.symlink(ROOT, b"l", b"d").unwrap().nodeid;
    assert_eq!(h.read(l, 0, 10), Err(Errno::EINVAL));
    assert_eq!(h.readlink(l).unwrap(), b"d");
    assert_eq!(h.readlink(d), Err(Errno::EINVAL));
    assert_eq!(h.write(99, 0, b"x"), Err(Errno::ENOENT));
}

#[test]
fn truncate_and_extend() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    h.write(f, 0, &pattern(300_000, 1)).unwrap();
    let before = h.getattr(f).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let a = h
        .setattr(
            f,
            SetAttr {
                size: Some(1000),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.size, 1000);
    assert_eq!(a.blocks, 8);
    assert!((a.mtime, a.mtimensec) > (before.mtime, before.mtimensec));
    assert_eq!((a.ctime, a.ctimensec), (a.mtime, a.mtimensec));
    assert_eq!(h.fs.used_bytes(), 4096);
    // Extend: a hole that reads as zeros and takes no space.
    let a = h
        .setattr(
            f,
            SetAttr {
                size: Some(1 << 40),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((a.size, a.blocks), (1 << 40, 8));
    let tail = h.read(f, 900, 200).unwrap();
    assert_eq!(&tail[..100], &pattern(300_000, 1)[900..1000]);
    assert!(tail[100..].iter().all(|&b| b == 0));
    assert!(h.read(f, (1 << 40) - 10, 100).unwrap() == [0; 10]);
    // Same size of a file with allocated pages: as on tmpfs, mtime and
    // ctime change.
    std::thread::sleep(Duration::from_millis(2));
    let b = h
        .setattr(
            f,
            SetAttr {
                size: Some(1 << 40),
                ..Default::default()
            },
        )
        .unwrap();
    assert!((b.mtime, b.mtimensec) > (a.mtime, a.mtimensec));
    assert_eq!((b.ctime, b.ctimensec), (b.mtime, b.mtimensec));
    assert_eq!(
        h.setattr(
            f,
            SetAttr {
                size: Some(MAX_FILE_SIZE + 1),
                ..Default::default()
            }
        ),
        Err(Errno::EFBIG)
    );
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    assert_eq!(
        h.setattr(
            d,
            SetAttr {
                size: Some(0),
                ..Default::default()
            }
        ),
        Err(Errno::EISDIR)
    );
    h.release(f);
}

#[test]
fn setattr_times_modes_owners() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    let a = h
        .setattr(
            f,
            SetAttr {
                mode: Some(0o4711 | libc::S_IFDIR),
                uid: Some(5),
                gid: Some(6),
                atime: Some(TimeOrNow::Specific {
                    secs: 1_000_000_000,
                    nsecs: 123,
                }),
                mtime: Some(TimeOrNow::Specific { secs: -5, nsecs: 7 }),
                ..Default::default()
            },
        )
        .unwrap();
    // File type bits cannot change.
    assert_eq!(a.mode, libc::S_IFREG | 0o4711);
    assert_eq!((a.uid, a.gid), (5, 6));
    assert_eq!((a.atime, a.atimensec), (1_000_000_000, 123));
    assert_eq!((a.mtime as i64, a.mtimensec), (-5, 7));
    assert!(a.ctime > 1_600_000_000);
    // UTIME_NOW for mtime, UTIME_OMIT (None) for atime.
    let b = h
        .setattr(
            f,
            SetAttr {
                mtime: Some(TimeOrNow::Now),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((b.atime, b.atimensec), (1_000_000_000, 123));
    assert_eq!((b.mtime, b.mtimensec), (b.ctime, b.ctimensec));
    // An explicit ctime is taken as given.
    let c = h
        .setattr(
            f,
            SetAttr {
                ctime: Some((77, 8)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((c.ctime, c.ctimensec), (77, 8));
    h.release(f);
}

#[test]
fn write_updates_mtime_ctime_and_read_atime() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    let t0 = h.getattr(f).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    h.write(f, 0, b"hello").unwrap();
    let t1 = h.getattr(f).unwrap();
    assert!((t1.mtime, t1.mtimensec) > (t0.mtime, t0.mtimensec));
    assert_eq!((t1.ctime, t1.ctimensec), (t1.mtime, t1.mtimensec));
    assert_eq!((t1.atime, t1.atimensec), (t0.atime, t0.atimensec));
    std::thread::sleep(Duration::from_millis(2));
    h.read(f, 0, 5).unwrap();
    let t2 = h.getattr(f).unwrap();
    assert!((t2.atime, t2.atimensec) > (t1.mtime, t1.mtimensec));
    // relatime: a second read does not move atime again.
    h.read(f, 0, 5).unwrap();
    assert_eq!(h.getattr(f).unwrap().atime, t2.atime);
    assert_eq!(h.getattr(f).unwrap().atimensec, t2.atimensec);
    h.release(f);
}

#[test]
fn punch_hole_and_seek_data_hole() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    const KEEP: u32 = libc::FALLOC_FL_KEEP_SIZE as u32;
    const PUNCH: u32 = libc::FALLOC_FL_PUNCH_HOLE as u32;
    const ZERO: u32 = libc::FALLOC_FL_ZERO_RANGE as u32;
    h.write(f, 0, &vec![0xAB; 4 * CHUNK as usize]).unwrap();
    h.fallocate(f, CHUNK, CHUNK, PUNCH | KEEP).unwrap();
    let a = h.getattr(f).unwrap();
    assert_eq!(a.size, 4 * CHUNK);
    assert_eq!(a.blocks, 3 * CHUNK / 512);
    assert_eq!(h.lseek(f, 0, libc::SEEK_HOLE), Ok(CHUNK));
    assert_eq!(h.lseek(f, 10, libc::SEEK_DATA), Ok(10));
    assert_eq!(h.lseek(f, CHUNK + 5, libc::SEEK_DATA), Ok(2 * CHUNK));
    assert_eq!(h.lseek(f, 2 * CHUNK, libc::SEEK_HOLE), Ok(4 * CHUNK));
    assert_eq!(h.lseek(f, 4 * CHUNK, libc::SEEK_DATA), Err(Errno::ENXIO));
    assert_eq!(h.lseek(f, 4 * CHUNK, libc::SEEK_HOLE), Err(Errno::ENXIO));
    let r = h.read(f, CHUNK - 2, 4).unwrap();
    assert_eq!(r, [0xAB, 0xAB, 0, 0]);
    // Punching needs KEEP_SIZE; unknown modes are refused.
    assert_eq!(h.fallocate(f, 0, 1, PUNCH), Err(Errno::EOPNOTSUPP));
    assert_eq!(h.fallocate(f, 0, 1, 0x8), Err(Errno::EOPNOTSUPP));
    assert_eq!(h.fallocate(f, 0, 0, 0), Err(Errno::EINVAL));
    // Allocate past EOF with KEEP_SIZE: size unchanged, blocks grow.
    h.fallocate(f, 4 * CHUNK, CHUNK, KEEP).unwrap();
    let b = h.getattr(f).unwrap();
    assert_eq!((b.size, b.blocks), (4 * CHUNK, 4 * CHUNK / 512));
    // Mode 0 extends.
    h.fallocate(f, 5 * CHUNK, 100, 0).unwrap();
    assert_eq!(h.getattr(f).unwrap().size, 5 * CHUNK + 100);
    // Zero range: zeros, stored, size kept.
    h.fallocate(f, 10, 20, ZERO | KEEP).unwrap();
    assert_eq!(h.read(f, 8, 24).unwrap()[..4], [0xAB, 0xAB, 0, 0]);
    assert_eq!(h.lseek(f, 10, libc::SEEK_DATA), Ok(10));
    // Zero range over a hole allocates a page, but an unwritten one: like
    // a fallocated tmpfs page it is a hole to SEEK_DATA.
    let blocks = h.getattr(f).unwrap().blocks;
    h.fallocate(f, CHUNK, 10, ZERO).unwrap();
    assert_eq!(h.getattr(f).unwrap().blocks, blocks + 8);
    assert_eq!(h.lseek(f, CHUNK, libc::SEEK_DATA), Ok(2 * CHUNK));
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    assert_eq!(h.fallocate(d, 0, 1, 0), Err(Errno::EISDIR));
    h.release(f);
}

#[test]
fn seek_in_sparse_file() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    h.setattr(
        f,
        SetAttr {
            size: Some(10 * CHUNK),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(h.lseek(f, 0, libc::SEEK_DATA), Err(Errno::ENXIO));
    assert_eq!(h.lseek(f, 0, libc::SEEK_HOLE), Ok(0));
    h.write(f, 3 * CHUNK + 100, b"data").unwrap();
    // Stored as one 4 KiB page, as on tmpfs.
    assert_eq!(h.lseek(f, 0, libc::SEEK_DATA), Ok(3 * CHUNK));
    assert_eq!(h.lseek(f, 3 * CHUNK, libc::SEEK_HOLE), Ok(3 * CHUNK + 4096));
    assert_eq!(
        h.lseek(f, 3 * CHUNK + 4096, libc::SEEK_DATA),
        Err(Errno::ENXIO)
    );
    h.write(f, 5 * CHUNK + 5000, b"data").unwrap();
    assert_eq!(
        h.lseek(f, 3 * CHUNK + 4096, libc::SEEK_DATA),
        Ok(5 * CHUNK + 4096)
    );
    assert_eq!(h.getattr(f).unwrap().blocks, 16);
    assert_eq!(h.lseek(f, 9 * CHUNK, libc::SEEK_HOLE), Ok(9 * CHUNK));
    h.release(f);
}

#[test]
fn rename_flags_and_errors() {
    let h = Harness::new();
    let a = h.touch(ROOT, b"a");
    let b = h.touch(ROOT, b"b");
    assert_eq!(
        h.rename(ROOT, b"a", ROOT, b"b", NOREPLACE),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        h.rename(ROOT, b"a", ROOT, b"b", WHITEOUT | EXCHANGE),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.rename(ROOT, b"a", ROOT, b"b", NOREPLACE | EXCHANGE),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.rename(ROOT, b"a", ROOT, b"zz", EXCHANGE),
        Err(Errno::ENOENT)
    );
    assert_eq!(h.rename(ROOT, b"nope", ROOT, b"zz", 0), Err(Errno::ENOENT));
    // Exchange swaps.
    h.rename(ROOT, b"a", ROOT, b"b", EXCHANGE).unwrap();
    assert_eq!((h.ino(ROOT, b"a"), h.ino(ROOT, b"b")), (b, a));
    // NOREPLACE to a free name.
    h.rename(ROOT, b"a", ROOT, b"c", NOREPLACE).unwrap();
    assert_eq!(h.ino(ROOT, b"c"), b);
    assert_eq!(h.lookup(ROOT, b"a"), Err(Errno::ENOENT));
    // Replace: the old target is gone (and freed: no references left).
    let count = h.fs.inode_count();
    h.rename(ROOT, b"c", ROOT, b"b", 0).unwrap();
    assert_eq!(h.ino(ROOT, b"b"), b);
    assert_eq!(h.fs.inode_count(), count - 1);
    assert_eq!(h.getattr(a), Err(Errno::ENOENT));
    assert_eq!(h.list(ROOT), [&b"."[..], b"..", b"b"]);
}

#[test]
fn rename_directories() {
    let h = Harness::new();
    let d1 = h.mkdir(ROOT, b"d1", 0o755).unwrap().nodeid;
    let d2 = h.mkdir(ROOT, b"d2", 0o755).unwrap().nodeid;
    let sub = h.mkdir(d1, b"sub", 0o755).unwrap().nodeid;
    let deep = h.mkdir(sub, b"deep", 0o755).unwrap().nodeid;
    h.touch(d2, b"file");
    assert_eq!(h.getattr(ROOT).unwrap().nlink, 4);
    assert_eq!(h.getattr(d1).unwrap().nlink, 3);
    // Into its own subtree.
    assert_eq!(h.rename(ROOT, b"d1", deep, b"x", 0), Err(Errno::EINVAL));
    assert_eq!(h.rename(ROOT, b"d1", d1, b"x", 0), Err(Errno::EINVAL));
    assert_eq!(
        h.rename(ROOT, b"d1", deep, b"x", EXCHANGE),
        Err(Errno::ENOENT)
    );
    // Over an ancestor of the source: not empty.
    assert_eq!(
        h.rename(sub, b"deep", ROOT, b"d1", 0),
        Err(Errno::ENOTEMPTY)
    );
    assert_eq!(
        h.rename(sub, b"deep", ROOT, b"d1", EXCHANGE),
        Err(Errno::EINVAL)
    );
    // Dir over file, file over dir, dir over non-empty dir.
    assert_eq!(h.rename(ROOT, b"d1", d2, b"file", 0), Err(Errno::ENOTDIR));
    assert_eq!(h.rename(d2, b"file", ROOT, b"d1", 0), Err(Errno::EISDIR));
    assert_eq!(h.rename(ROOT, b"d2", ROOT, b"d1", 0), Err(Errno::ENOTEMPTY));
    // Move sub from d1 to d2: ".." link counts follow.
    h.rename(d1, b"sub", d2, b"sub2", 0).unwrap();
    assert_eq!(h.getattr(d1).unwrap().nlink, 2);
    assert_eq!(h.getattr(d2).unwrap().nlink, 3);
    let dots = h.readdir(sub, 0, 4096, false).unwrap();
    assert_eq!((dots[1].name.as_slice(), dots[1].ino), (&b".."[..], d2));
    assert_eq!(h.lookup(sub, b"..").unwrap().nodeid, d2);
    // Dir over an empty dir: allowed, the empty one goes away.
    let empty = h.mkdir(d1, b"empty", 0o755).unwrap().nodeid;
    h.forget(empty, 1);
    assert_eq!(h.getattr(d1).unwrap().nlink, 3);
    h.rename(d2, b"sub2", d1, b"empty", 0).unwrap();
    assert_eq!(h.getattr(d1).unwrap().nlink, 3);
    assert_eq!(h.getattr(d2).unwrap().nlink, 2);
    assert_eq!(h.getattr(empty), Err(Errno::ENOENT));
    assert_eq!(h.ino(d1, b"empty"), sub);
    // Exchange a directory with a file across parents.
    h.rename(d1, b"empty", d2, b"file", EXCHANGE).unwrap();
    assert_eq!(h.getattr(d1).unwrap().nlink, 2);
    assert_eq!(h.getattr(d2).unwrap().nlink, 3);
    assert_eq!(h.lookup(sub, b"..").unwrap().nodeid, d2);
    assert_eq!(h.readdir(d1, 0, 4096, false).unwrap()[2].typ, dtype::REG);
    // Renaming a directory within its parent keeps counts.
    h.rename(d2, b"file", d2, b"again", 0).unwrap();
    assert_eq!(h.getattr(d2).unwrap().nlink, 3);
    // Sizes follow the entries (tmpfs-like 20 bytes each).
    assert_eq!(h.getattr(d2).unwrap().size, 40 + 20);
    assert_eq!(h.getattr(d1).unwrap().size, 40 + 20);
}

#[test]
fn rename_same_inode_is_noop() {
    let h = Harness::new();
    let f = h.touch(ROOT, b"f");
    h.link(f, ROOT, b"g").unwrap();
    h.forget(f, 1);
    h.rename(ROOT, b"f", ROOT, b"g", 0).unwrap();
    h.rename(ROOT, b"f", ROOT, b"f", 0).unwrap();
    assert_eq!(h.ino(ROOT, b"f"), f);
    assert_eq!(h.ino(ROOT, b"g"), f);
    assert_eq!(h.getattr(f).unwrap().nlink, 2);
    assert_eq!(
        h.rename(ROOT, b"f", ROOT, b"g", NOREPLACE),
        Err(Errno::EEXIST)
    );
}

#[test]
fn link_counts() {
    let h = Harness::new();
    let f = h.touch(ROOT, b"f");
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let e = h.link(f, d, b"f2").unwrap();
    assert_eq!(e.nodeid, f);
    assert_eq!(e.attr.nlink, 2);
    assert_eq!(h.link(f, d, b"f2"), Err(Errno::EEXIST));
    assert_eq!(h.link(d, ROOT, b"dlink"), Err(Errno::EPERM));
    assert_eq!(h.link(f, f, b"x"), Err(Errno::ENOTDIR));
    h.unlink(ROOT, b"f").unwrap();
    assert_eq!(h.getattr(f).unwrap().nlink, 1);
    assert_eq!(h.unlink(ROOT, b"d"), Err(Errno::EISDIR));
    assert_eq!(h.rmdir(d, b"f2"), Err(Errno::ENOTDIR));
    assert_eq!(h.rmdir(ROOT, b"d"), Err(Errno::ENOTEMPTY));
    assert_eq!(h.rmdir(ROOT, b"nope"), Err(Errno::ENOENT));
    // Directories: 2 + subdirectories.
    h.mkdir(d, b"s1", 0o755).unwrap();
    h.mkdir(d, b"s2", 0o755).unwrap();
    assert_eq!(h.getattr(d).unwrap().nlink, 4);
    assert_eq!(h.getattr(ROOT).unwrap().nlink, 3);
    h.rmdir(d, b"s1").unwrap();
    assert_eq!(h.getattr(d).unwrap().nlink, 3);
}

#[test]
fn unlink_while_open_keeps_data_until_release() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    h.write(f, 0, &pattern(10_000, 5)).unwrap();
    h.forget(f, 1);
    h.unlink(ROOT, b"f").unwrap();
    assert_eq!(h.lookup(ROOT, b"f"), Err(Errno::ENOENT));
    assert_eq!(h.read(f, 0, 10_000).unwrap(), pattern(10_000, 5));
    assert_eq!(h.getattr(f).unwrap().nlink, 0);
    assert_eq!(h.fs.inode_count(), 2);
    assert_eq!(h.fs.used_bytes(), 12_288);
    h.release(f);
    assert_eq!(h.fs.inode_count(), 1);
    assert_eq!(h.fs.used_bytes(), 0);
    assert_eq!(h.getattr(f), Err(Errno::ENOENT));
}

#[test]
fn forget_frees_inodes() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    h.release(f);
    h.lookup(ROOT, b"f").unwrap();
    h.lookup(ROOT, b"f").unwrap();
    assert_eq!(h.lookups(f), 3);
    h.unlink(ROOT, b"f").unwrap();
    h.forget(f, 2);
    assert_eq!(h.fs.inode_count(), 2);
    h.fs.batch_forget(
        &h.req(),
        op::BatchForget::new(&[fuse_forget_one {
            nodeid: f,
            nlookup: 100,
        }]),
    );
    assert_eq!(h.fs.inode_count(), 1);
    // Forgetting unknown inodes or the root is harmless.
    h.forget(f, 1);
    h.forget(ROOT, 10);
    assert!(h.getattr(ROOT).is_ok());
    // Inode numbers are never reused.
    let g = h.touch(ROOT, b"g");
    assert!(g > f);
}

#[test]
fn rmdir_frees_directory_when_forgotten() {
    let h = Harness::new();
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let open = fuse_open_in::default();
    h.fs.opendir(
        &h.req(),
        op::Opendir::new(d, &open),
        ReplyOpen::new(7, &h.cap),
    );
    h.body().unwrap();
    h.rmdir(ROOT, b"d").unwrap();
    assert_eq!(h.getattr(ROOT).unwrap().nlink, 2);
    assert_eq!(h.getattr(d).unwrap().nlink, 0);
    // A removed directory lists nothing and takes no new names.
    assert!(h.readdir(d, 0, 4096, false).unwrap().is_empty());
    assert_eq!(h.mkdir(d, b"x", 0o755), Err(Errno::ENOENT));
    h.forget(d, 1);
    assert_eq!(h.fs.inode_count(), 2);
    let release = fuse_release_in::default();
    h.fs.releasedir(
        &h.req(),
        op::Releasedir::new(d, &release),
        ReplyEmpty::new(7, &h.cap),
    );
    assert_eq!(h.fs.inode_count(), 1);
}

#[test]
fn readdir_offsets_survive_concurrent_unlink() {
    let h = Harness::new();
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let names: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("file{i:02}").into_bytes())
        .collect();
    for n in &names {
        h.touch(d, n);
    }
    // First page: ".", "..", and some files (32 bytes per record).
    let first = h.readdir(d, 0, 32 * 10, false).unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!((first[0].name.as_slice(), first[0].ino), (&b"."[..], d));
    assert_eq!((first[1].name.as_slice(), first[1].ino), (&b".."[..], ROOT));
    assert_eq!(first[2].typ, dtype::REG);
    let seen: Vec<_> = first[2..].iter().map(|e| e.name.clone()).collect();
    // Between calls: remove one already seen, one not yet seen, add one.
    h.unlink(d, &seen[0]).unwrap();
    h.unlink(d, b"file20").unwrap();
    h.touch(d, b"new");
    let mut rest = Vec::new();
    let mut off = first.last().unwrap().off;
    loop {
        let batch = h.readdir(d, off, 32 * 7, false).unwrap();
        let Some(last) = batch.last() else { break };
        off = last.off;
        rest.extend(batch.into_iter().map(|e| e.name));
    }
    let mut all: Vec<_> = seen.iter().cloned().chain(rest.iter().cloned()).collect();
    // Nothing repeated, nothing that stayed missing; the new name appears
    // (it was added after every cookie seen).
    let mut expect: Vec<_> = names.iter().filter(|n| *n != b"file20").cloned().collect();
    expect.push(b"new".to_vec());
    all.sort();
    expect.sort();
    assert_eq!(all, expect);
    // The end stays the end.
    assert!(h.readdir(d, off, 4096, false).unwrap().is_empty());
}

/// A name the kernel would refuse (memfs never makes one; planted here) is
/// left out of READDIR and READDIRPLUS, and the listing goes on after it.
#[test]
fn readdir_skips_an_invalid_name_and_goes_on() {
    let h = Harness::new();
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let a = h.touch(d, b"a");
    {
        let dir = h.fs.table.get(d).unwrap();
        write(dir.dir().unwrap()).insert(b"bad/name", a, dtype::REG);
    }
    let z = h.touch(d, b"z");
    for plus in [false, true] {
        let names: Vec<Vec<u8>> = h
            .readdir(d, 0, 4096, plus)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, [&b"."[..], b"..", b"a", b"z"], "plus: {plus}");
    }
    // The skipped entry took no lookup reference; the packed ones did.
    assert_eq!((h.lookups(a), h.lookups(z)), (1, 1));
    // Resuming right after the entry before it still finds the rest.
    let page = h.readdir(d, 0, 4096, false).unwrap();
    let after_a = page.iter().find(|e| e.name == b"a").unwrap().off;
    let rest = h.readdir(d, after_a, 4096, false).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].name, b"z");
}

#[test]
fn readdirplus_counts_lookups_only_for_packed_entries() {
    let h = Harness::new();
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let inos: Vec<u64> = (0..5)
        .map(|i| h.touch(d, format!("f{i}").as_bytes()))
        .collect();
    // 160 bytes per record with short names: room for ".", "..", f0, f1.
    let page = h.readdir(d, 0, 160 * 4 + 100, true).unwrap();
    assert_eq!(page.len(), 4);
    for dot in &page[..2] {
        assert_eq!(dot.entry.unwrap().nodeid, 0);
    }
    assert_eq!(page[1].ino, ROOT);
    let e = page[2].entry.unwrap();
    assert_eq!(
        (e.nodeid, e.attr.ino, e.attr.mode),
        (inos[0], inos[0], libc::S_IFREG | 0o644)
    );
    assert_eq!(e.entry_valid, 60);
    assert_eq!(
        inos.iter().map(|&i| h.lookups(i)).collect::<Vec<_>>(),
        [1, 1, 0, 0, 0]
    );
    let rest = h.readdir(d, page[3].off, 4096, true).unwrap();
    assert_eq!(rest.len(), 3);
    assert!(inos.iter().all(|&i| h.lookups(i) == 1));
    // "." and ".." add no lookup to the listed directory or its parent.
    assert_eq!(h.lookups(d), 1);
}

#[test]
fn xattr_flags_and_sizes() {
    let h = Harness::new();
    let f = h.touch(ROOT, b"f");
    const CREATE: u32 = libc::XATTR_CREATE as u32;
    const REPLACE: u32 = libc::XATTR_REPLACE as u32;
    assert_eq!(h.getxattr(f, b"user.a", 100), Err(Errno::ENODATA));
    assert_eq!(
        h.setxattr(f, b"user.a", b"v1", REPLACE),
        Err(Errno::ENODATA)
    );
    h.setxattr(f, b"user.a", b"v1", CREATE).unwrap();
    assert_eq!(h.setxattr(f, b"user.a", b"v2", CREATE), Err(Errno::EEXIST));
    h.setxattr(f, b"user.a", b"value2", REPLACE).unwrap();
    h.setxattr(f, b"trusted.b", b"", 0).unwrap();
    // Size query, too small a buffer, exact buffer.
    let size = fuse_getxattr_out::read_from_bytes(&h.getxattr(f, b"user.a", 0).unwrap()).unwrap();
    assert_eq!(size.size, 6);
    assert_eq!(h.getxattr(f, b"user.a", 5), Err(Errno::ERANGE));
    assert_eq!(h.getxattr(f, b"user.a", 6).unwrap(), b"value2");
    assert_eq!(h.getxattr(f, b"trusted.b", 10).unwrap(), b"");
    let list_size = fuse_getxattr_out::read_from_bytes(&h.listxattr(f, 0).unwrap()).unwrap();
    assert_eq!(list_size.size, 17);
    assert_eq!(h.listxattr(f, 16), Err(Errno::ERANGE));
    assert_eq!(h.listxattr(f, 17).unwrap(), b"user.a\0trusted.b\0");
    // Limits and namespaces.
    let big = vec![1u8; 64 * 1024 + 1];
    assert_eq!(h.setxattr(f, b"user.big", &big, 0), Err(Errno::E2BIG));
    h.setxattr(f, b"user.max", &big[..64 * 1024], 0).unwrap();
    assert_eq!(
        h.setxattr(f, b"system.posix_acl_access", b"", 0),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        h.setxattr(f, b"nonamespace", b"", 0),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(h.fs.used_bytes(), 6 + 6 + 9 + 8 + 64 * 1024);
    h.removexattr(f, b"user.a").unwrap();
    assert_eq!(h.removexattr(f, b"user.a"), Err(Errno::ENODATA));
    assert_eq!(h.getxattr(f, b"user.a", 10), Err(Errno::ENODATA));
    // Freed with the inode.
    h.unlink(ROOT, b"f").unwrap();
    assert_eq!(h.fs.used_bytes(), 0);
}

#[test]
fn enospc_at_capacity_and_statfs() {
    let h = Harness::with(MemFsConfig {
        capacity_bytes: 1 << 20,
        max_inodes: Some(4),
        ..Default::default()
    });
    let st = h.statfs();
    assert_eq!((st.bsize, st.frsize, st.namelen), (4096, 4096, 255));
    assert_eq!((st.blocks, st.bfree, st.bavail), (256, 256, 256));
    assert_eq!((st.files, st.ffree), (4, 3));
    let f = h.create(ROOT, b"f");
    h.write(f, 0, &vec![1; 1 << 20]).unwrap();
    assert_eq!(h.write(f, 1 << 20, b"x"), Err(Errno::ENOSPC));
    assert_eq!(h.fallocate(f, 1 << 20, 4096, 0), Err(Errno::ENOSPC));
    // Sparse growth needs no space; overwrites neither.
    h.setattr(
        f,
        SetAttr {
            size: Some(1 << 30),
            ..Default::default()
        },
    )
    .unwrap();
    h.write(f, 5, b"abc").unwrap();
    assert_eq!(h.write(f, 1 << 29, b"x"), Err(Errno::ENOSPC));
    let st = h.statfs();
    assert_eq!((st.bfree, st.bavail), (0, 0));
    // Punching frees space for others, page by page (a partial page is
    // only zeroed).
    let punch = libc::FALLOC_FL_PUNCH_HOLE as u32 | libc::FALLOC_FL_KEEP_SIZE as u32;
    h.fallocate(f, 4096, 8192, punch).unwrap();
    assert_eq!(h.statfs().bfree, 2);
    h.fallocate(f, 2 * CHUNK + 1, 4096, punch).unwrap();
    assert_eq!(h.statfs().bfree, 2);
    h.fallocate(f, 2 * CHUNK, CHUNK, punch).unwrap();
    assert_eq!(h.statfs().bfree, 2 + CHUNK / 4096);
    let g = h.create(ROOT, b"g");
    h.write(g, 0, &[2; 8192]).unwrap();
    h.release(g);
    // Inode limit: root, f, g, one more.
    h.mkdir(ROOT, b"d", 0o755).unwrap();
    assert_eq!(h.mkdir(ROOT, b"e", 0o755), Err(Errno::ENOSPC));
    assert_eq!(h.statfs().ffree, 0);
    h.release(f);
}

#[test]
fn setgid_directory_inheritance() {
    let mut h = Harness::new();
    h.uid = 0;
    h.gid = 0;
    let d = h.mkdir(ROOT, b"sg", 0o2775).unwrap();
    // mkdir masks set-id bits; set them with chmod/chown like a user would.
    assert_eq!(d.attr.mode & 0o7777, 0o775);
    h.setattr(
        d.nodeid,
        SetAttr {
            mode: Some(0o2775),
            gid: Some(500),
            ..Default::default()
        },
    )
    .unwrap();
    h.uid = 1000;
    h.gid = 1000;
    let f = h
        .create_full(
            d.nodeid,
            b"f",
            libc::S_IFREG | 0o644,
            0,
            libc::O_CREAT as u32,
        )
        .unwrap()
        .0;
    assert_eq!((f.attr.uid, f.attr.gid), (1000, 500));
    assert_eq!(f.attr.mode, libc::S_IFREG | 0o644);
    let sub = h.mkdir(d.nodeid, b"sub", 0o755).unwrap();
    assert_eq!((sub.attr.uid, sub.attr.gid), (1000, 500));
    assert_eq!(sub.attr.mode, libc::S_IFDIR | 0o2755);
    // And on down.
    let n = h
        .mknod(sub.nodeid, b"fifo", libc::S_IFIFO | 0o600, 0, 0)
        .unwrap();
    assert_eq!(n.attr.gid, 500);
    let l = h.symlink(sub.nodeid, b"l", b"x").unwrap();
    assert_eq!(l.attr.gid, 500);
    let t = h.tmpfile(sub.nodeid, libc::S_IFREG | 0o600, 0).unwrap();
    assert_eq!(t.attr.gid, 500);
    // Outside: the caller's group.
    let o = h.mkdir(ROOT, b"plain", 0o755).unwrap();
    assert_eq!((o.attr.uid, o.attr.gid), (1000, 1000));
}

#[test]
fn umask_is_applied() {
    let h = Harness::new();
    let d = h.mkdir_umask(ROOT, b"d", 0o777, 0o022).unwrap();
    assert_eq!(d.attr.mode, libc::S_IFDIR | 0o755);
    let f = h
        .create_full(
            ROOT,
            b"f",
            libc::S_IFREG | 0o666,
            0o027,
            libc::O_CREAT as u32,
        )
        .unwrap()
        .0;
    assert_eq!(f.attr.mode, libc::S_IFREG | 0o640);
    let n = h
        .mknod(ROOT, b"n", libc::S_IFREG | 0o666, 0o077, 0)
        .unwrap();
    assert_eq!(n.attr.mode, libc::S_IFREG | 0o600);
    let n0 = h.mknod(ROOT, b"n0", 0o644, 0, 0).unwrap();
    assert_eq!(n0.attr.mode, libc::S_IFREG | 0o644);
    let t = h.tmpfile(ROOT, libc::S_IFREG | 0o666, 0o002).unwrap();
    assert_eq!(t.attr.mode, libc::S_IFREG | 0o664);
    let l = h.symlink(ROOT, b"l", b"target").unwrap();
    assert_eq!(l.attr.mode, libc::S_IFLNK | 0o777);
    assert_eq!(l.attr.size, 6);
}

#[test]
fn special_files_and_statx() {
    let h = Harness::new();
    // makedev(8, 1) in the kernel's new_encode_dev layout.
    let rdev = (8 << 8) | 1;
    let b = h
        .mknod(ROOT, b"blk", libc::S_IFBLK | 0o660, 0, rdev)
        .unwrap();
    assert_eq!((b.attr.mode, b.attr.rdev), (libc::S_IFBLK | 0o660, rdev));
    let s = h
        .mknod(ROOT, b"sock", libc::S_IFSOCK | 0o600, 0, 5)
        .unwrap();
    assert_eq!(s.attr.rdev, 0);
    h.mknod(ROOT, b"chr", libc::S_IFCHR | 0o600, 0, 0x1234)
        .unwrap();
    assert_eq!(
        h.mknod(ROOT, b"dir", libc::S_IFDIR | 0o600, 0, 0),
        Err(Errno::EPERM)
    );
    assert_eq!(
        h.mknod(ROOT, b"blk", libc::S_IFREG | 0o600, 0, 0),
        Err(Errno::EEXIST)
    );
    let arg = fuse_statx_in {
        sx_mask: 0x7ff,
        ..Default::default()
    };
    h.fs.statx(
        &h.req(),
        op::Statx::new(b.nodeid, &arg),
        ReplyStatx::new(7, &h.cap),
    );
    let sx = h.decode::<fuse_statx_out>().unwrap().stat;
    assert_eq!((sx.rdev_major, sx.rdev_minor), (8, 1));
    assert_eq!(sx.mode as u32, libc::S_IFBLK | 0o660);
    assert_eq!(sx.ino, b.nodeid);
    assert_eq!(sx.mask & libc::STATX_BTIME, libc::STATX_BTIME);
    assert_eq!(
        (sx.ctime.tv_sec as u64, sx.ctime.tv_nsec),
        (b.attr.ctime, b.attr.ctimensec)
    );
    let list = h.list(ROOT);
    assert_eq!(list, [&b"."[..], b"..", b"blk", b"sock", b"chr"]);
    let types: Vec<u32> = h
        .readdir(ROOT, 2, 4096, false)
        .unwrap()
        .iter()
        .map(|e| e.typ)
        .collect();
    assert_eq!(types, [dtype::BLK, dtype::SOCK, dtype::CHR]);
}

#[test]
fn tmpfile_is_unnamed_until_linked() {
    let h = Harness::new();
    let t = h.tmpfile(ROOT, libc::S_IFREG | 0o600, 0).unwrap();
    assert_eq!(t.attr.nlink, 0);
    assert_eq!(h.list(ROOT).len(), 2);
    h.write(t.nodeid, 0, b"tmp").unwrap();
    let e = h.link(t.nodeid, ROOT, b"named").unwrap();
    assert_eq!(e.attr.nlink, 1);
    assert_eq!(h.ino(ROOT, b"named"), t.nodeid);
    h.release(t.nodeid);
    h.forget(t.nodeid, 2);
    assert_eq!(h.read(t.nodeid, 0, 10).unwrap(), b"tmp");
    // A tmpfile never linked goes away on release + forget.
    let u = h.tmpfile(ROOT, libc::S_IFREG | 0o600, 0).unwrap().nodeid;
    h.release(u);
    assert!(h.getattr(u).is_ok());
    h.forget(u, 1);
    assert_eq!(h.getattr(u), Err(Errno::ENOENT));
}

#[test]
fn create_exclusive_and_open_truncate() {
    let h = Harness::new();
    let excl = (libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) as u32;
    let (e, o) = h
        .create_full(ROOT, b"f", libc::S_IFREG | 0o644, 0, excl)
        .unwrap();
    assert_eq!(o.open_flags & FOPEN_KEEP_CACHE, FOPEN_KEEP_CACHE);
    h.write(e.nodeid, 0, b"contents").unwrap();
    assert_eq!(
        h.create_full(ROOT, b"f", libc::S_IFREG | 0o644, 0, excl),
        Err(Errno::EEXIST)
    );
    // Without O_EXCL an existing file is opened (here with O_TRUNC).
    let flags = (libc::O_CREAT | libc::O_TRUNC | libc::O_RDWR) as u32;
    let (again, _) = h
        .create_full(ROOT, b"f", libc::S_IFREG | 0o600, 0, flags)
        .unwrap();
    assert_eq!(again.nodeid, e.nodeid);
    assert_eq!(again.attr.size, 0);
    assert_eq!(again.attr.mode, libc::S_IFREG | 0o644);
    assert_eq!(h.lookups(e.nodeid), 2);
    h.write(e.nodeid, 0, b"more").unwrap();
    // OPEN with O_TRUNC.
    h.open(e.nodeid, (libc::O_WRONLY | libc::O_TRUNC) as u32)
        .unwrap();
    assert_eq!(h.getattr(e.nodeid).unwrap().size, 0);
    assert_eq!(h.fs.used_bytes(), 0);
    h.mkdir(ROOT, b"d", 0o755).unwrap();
    assert_eq!(
        h.create_full(ROOT, b"d", libc::S_IFREG | 0o644, 0, libc::O_CREAT as u32),
        Err(Errno::EISDIR)
    );
    for _ in 0..3 {
        h.release(e.nodeid);
    }
    h.unlink(ROOT, b"f").unwrap();
    h.forget(e.nodeid, 2);
    assert_eq!(h.getattr(e.nodeid), Err(Errno::ENOENT));
}

#[test]
fn name_limits_and_negative_lookup() {
    let h = Harness::new();
    let long = vec![b'n'; 256];
    assert_eq!(h.mkdir(ROOT, &long, 0o755), Err(Errno::ENAMETOOLONG));
    assert_eq!(h.lookup(ROOT, &long), Err(Errno::ENAMETOOLONG));
    let ok = vec![b'n'; 255];
    h.mkdir(ROOT, &ok, 0o755).unwrap();
    assert_eq!(h.readdir(ROOT, 2, 4096, false).unwrap()[0].name, ok);
    assert_eq!(
        h.symlink(ROOT, b"l", &vec![b'x'; 4096]),
        Err(Errno::ENAMETOOLONG)
    );
    h.symlink(ROOT, b"l", &vec![b'x'; 4095]).unwrap();
    // A missing name is a cacheable negative entry.
    h.fs.lookup(
        &h.req(),
        op::Lookup::new(ROOT, &c(b"missing")),
        ReplyEntry::new(7, &h.cap),
    );
    let neg: fuse_entry_out = h.decode().unwrap();
    assert_eq!((neg.nodeid, neg.entry_valid), (0, 60));
    // A deep path: no limit on depth.
    let mut dir = ROOT;
    for _ in 0..200 {
        dir = h.mkdir(dir, &[b'd'; 100], 0o755).unwrap().nodeid;
    }
    assert_eq!(
        h.lookup(dir, b"..").unwrap().attr.mode & libc::S_IFMT,
        libc::S_IFDIR
    );
}

#[test]
fn copy_file_range_keeps_holes() {
    let h = Harness::new();
    let a = h.create(ROOT, b"a");
    let b = h.create(ROOT, b"b");
    h.write(a, 0, b"head").unwrap();
    h.write(a, 3 * CHUNK, b"tail").unwrap();
    h.write(b, 0, &vec![9; 2 * CHUNK as usize]).unwrap();
    let n = h.copy(a, 0, b, 10, u64::MAX).unwrap();
    assert_eq!(n, 3 * CHUNK + 4);
    let attr = h.getattr(b).unwrap();
    assert_eq!(attr.size, 3 * CHUNK + 14);
    let got = h.read(b, 0, (4 * CHUNK) as u32).unwrap();
    assert_eq!(&got[..14], b"\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09head");
    assert!(got[14..(3 * CHUNK + 10) as usize].iter().all(|&x| x == 0));
    assert_eq!(&got[(3 * CHUNK + 10) as usize..], b"tail");
    // The hole of `a` stays a hole in `b` where `b` had none stored.
    assert_eq!(h.lseek(b, 2 * CHUNK, libc::SEEK_HOLE), Ok(2 * CHUNK));
    // Past EOF copies nothing; same file overlapping is refused.
    assert_eq!(h.copy(a, 10 * CHUNK, b, 0, 10), Ok(0));
    assert_eq!(h.copy(a, 0, a, 2, 10), Err(Errno::EINVAL));
    assert_eq!(h.copy(a, 0, a, 100, 4), Ok(4));
    assert_eq!(h.read(a, 100, 4).unwrap(), b"head");
    h.release(a);
    h.release(b);
}

#[test]
fn access_checks_mode_bits() {
    let mut h = Harness::new();
    let f = h.create(ROOT, b"f");
    h.release(f);
    let check = |h: &Harness, mask: i32| {
        let arg = fuse_access_in {
            mask: mask as u32,
            padding: 0,
        };
        h.fs.access(
            &h.req(),
            op::Access::new(f, &arg),
            ReplyEmpty::new(7, &h.cap),
        );
        h.empty()
    };
    assert_eq!(check(&h, libc::R_OK | libc::W_OK), Ok(()));
    assert_eq!(check(&h, libc::X_OK), Err(Errno::EACCES));
    h.uid = 2000;
    assert_eq!(check(&h, libc::R_OK), Ok(()));
    assert_eq!(check(&h, libc::W_OK), Err(Errno::EACCES));
    assert_eq!(check(&h, libc::F_OK), Ok(()));
    h.uid = 0;
    assert_eq!(check(&h, libc::W_OK), Ok(()));
    assert_eq!(check(&h, libc::X_OK), Err(Errno::EACCES));
}

#[test]
fn init_asks_for_what_memfs_needs() {
    let h = Harness::new();
    let mut config = InitConfig {
        wanted: InitFlags::HANDLE_KILLPRIV,
        ..Default::default()
    };
    let kernel = KernelInit::from_wire(&Default::default());
    h.fs.init(&kernel, &mut config).unwrap();
    assert!(config.wanted.contains(
        InitFlags::DONT_MASK | InitFlags::ATOMIC_O_TRUNC | InitFlags::HANDLE_KILLPRIV_V2
    ));
    assert!(!config.wanted.contains(InitFlags::HANDLE_KILLPRIV));
}

const KEEP: u32 = libc::FALLOC_FL_KEEP_SIZE as u32;
const PUNCH: u32 = libc::FALLOC_FL_PUNCH_HOLE as u32;

/// pjdfstest/tmpfs comparison: holes are 4 KiB-granular as on tmpfs.
/// Punching a page out of the middle of stored data frees it (st_blocks and
/// statfs drop), SEEK_HOLE/SEEK_DATA see it, a write into a hole stores only
/// its own pages, and partial pages are zeroed but stay allocated.
#[test]
fn holes_are_page_granular_like_tmpfs() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    h.write(f, 0, &vec![0xCD; 1 << 20]).unwrap();
    assert_eq!(h.getattr(f).unwrap().blocks, 2048);
    let free = h.statfs().bfree;
    h.fallocate(f, 8192, 4096, PUNCH | KEEP).unwrap();
    assert_eq!(h.getattr(f).unwrap().blocks, 2040);
    assert_eq!(h.statfs().bfree, free + 1);
    assert_eq!(h.lseek(f, 0, libc::SEEK_HOLE), Ok(8192));
    assert_eq!(h.lseek(f, 8192, libc::SEEK_DATA), Ok(12288));
    assert_eq!(h.read(f, 8190, 4), Ok(vec![0xCD, 0xCD, 0, 0]));
    assert_eq!(h.read(f, 12286, 4), Ok(vec![0, 0, 0xCD, 0xCD]));
    // Unaligned: 5000..25000 frees pages 2..6 (8192..24576), zeroes the
    // rest.
    h.fallocate(f, 5000, 20_000, PUNCH | KEEP).unwrap();
    assert_eq!(h.getattr(f).unwrap().blocks, 2016);
    assert_eq!(h.lseek(f, 0, libc::SEEK_HOLE), Ok(8192));
    assert_eq!(h.lseek(f, 8192, libc::SEEK_DATA), Ok(24_576));
    assert!(h.read(f, 5000, 20_000).unwrap().iter().all(|&b| b == 0));
    assert_eq!(h.read(f, 4999, 1), Ok(vec![0xCD]));
    assert_eq!(h.read(f, 25_000, 1), Ok(vec![0xCD]));
    // Rewriting into the hole stores just that page again.
    h.write(f, 20_000, b"z").unwrap();
    assert_eq!(h.getattr(f).unwrap().blocks, 2024);
    assert_eq!(h.lseek(f, 8192, libc::SEEK_DATA), Ok(16_384));
    // A write in a hole of a sparse file takes its own pages only.
    let g = h.create(ROOT, b"g");
    h.setattr(
        g,
        SetAttr {
            size: Some(1 << 20),
            ..Default::default()
        },
    )
    .unwrap();
    h.write(g, 300_000, &[1; 5000]).unwrap();
    assert_eq!(h.getattr(g).unwrap().blocks, 16);
    assert_eq!(h.lseek(g, 0, libc::SEEK_DATA), Ok(299_008));
    assert_eq!(h.lseek(g, 299_008, libc::SEEK_HOLE), Ok(307_200));
    // Punching to the end of a file whose size is not page-aligned keeps
    // (and zeroes) its last page, as tmpfs does.
    let k = h.create(ROOT, b"k");
    h.write(k, 0, &[3; 300_000]).unwrap();
    h.fallocate(k, 0, 300_000, PUNCH | KEEP).unwrap();
    assert_eq!(h.getattr(k).unwrap().blocks, 8);
    assert_eq!(h.lseek(k, 0, libc::SEEK_DATA), Ok(299_008));
    for ino in [f, g, k] {
        h.release(ino);
    }
}

/// A checkerboard of 4 KiB data pages and holes needs more slices than a
/// reply can carry: the tail is copied, and the data is right.
#[test]
fn fragmented_reads_fit_in_one_reply() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    let mut expect = vec![0u8; 1 << 20];
    for page in (0..256usize).step_by(2) {
        let bytes = [page as u8 + 1; 4096];
        h.write(f, page as u64 * 4096, &bytes).unwrap();
        expect[page * 4096..(page + 1) * 4096].copy_from_slice(&bytes);
    }
    h.setattr(
        f,
        SetAttr {
            size: Some(1 << 20),
            ..Default::default()
        },
    )
    .unwrap();
    for off in [0u64, 1, 4095, 4096, 100_000] {
        let got = h.read(f, off, 1 << 20).unwrap();
        assert_eq!(got, &expect[off as usize..], "read at {off}");
        assert!(h.cap.parts.get() <= MAX_REPLY_PARTS + 1);
    }
    h.release(f);
}

/// fallocate allocates (st_blocks) but, as on tmpfs, the pages stay holes
/// to SEEK_DATA until written.
#[test]
fn fallocated_pages_are_holes_until_written() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    h.fallocate(f, 0, 100_000, 0).unwrap();
    let a = h.getattr(f).unwrap();
    assert_eq!((a.size, a.blocks), (100_000, 200));
    assert_eq!(h.lseek(f, 0, libc::SEEK_DATA), Err(Errno::ENXIO));
    assert_eq!(h.lseek(f, 0, libc::SEEK_HOLE), Ok(0));
    h.write(f, 50_000, b"x").unwrap();
    assert_eq!(h.getattr(f).unwrap().blocks, 200);
    assert_eq!(h.lseek(f, 0, libc::SEEK_DATA), Ok(49_152));
    assert_eq!(h.lseek(f, 49_152, libc::SEEK_HOLE), Ok(53_248));
    // KEEP_SIZE past the end, then a truncate to the same size frees it.
    h.fallocate(f, 100_000, 100_000, KEEP).unwrap();
    assert_eq!(h.getattr(f).unwrap().blocks, 200 + 192);
    let t = h
        .setattr(
            f,
            SetAttr {
                size: Some(100_000),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(t.blocks, 200);
    h.release(f);
}

fn mctime(a: &fuse_attr) -> ((u64, u32), (u64, u32)) {
    ((a.mtime, a.mtimensec), (a.ctime, a.ctimensec))
}

/// tmpfs: truncate(2) to the size a file without allocated pages already
/// has changes no timestamp; ftruncate (a handle comes with it) always
/// updates mtime and ctime.
#[test]
fn same_size_truncate_times_follow_tmpfs() {
    let h = Harness::new();
    let f = h.create(ROOT, b"f");
    let size_only = |fh: Option<u64>| SetAttr {
        size: Some(0),
        fh,
        ..Default::default()
    };
    let before = h.getattr(f).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let a = h.setattr(f, size_only(None)).unwrap();
    assert_eq!(mctime(&a), mctime(&before));
    std::thread::sleep(Duration::from_millis(2));
    let b = h.setattr(f, size_only(Some(0))).unwrap();
    assert!(b.mtime > a.mtime || (b.mtime == a.mtime && b.mtimensec > a.mtimensec));
    assert_eq!((b.ctime, b.ctimensec), (b.mtime, b.mtimensec));
    // Another attribute along with the size still changes ctime.
    std::thread::sleep(Duration::from_millis(2));
    let c = h
        .setattr(
            f,
            SetAttr {
                mode: Some(0o600),
                ..size_only(None)
            },
        )
        .unwrap();
    assert_eq!((c.mtime, c.mtimensec), (b.mtime, b.mtimensec));
    assert!((c.ctime, c.ctimensec) > (b.ctime, b.ctimensec));
    h.release(f);
}

/// RENAME_WHITEOUT (used by overlayfs on tmpfs upper layers) leaves a
/// character device 0:0 with mode 0 under the old name.
#[test]
fn rename_whiteout_leaves_a_whiteout() {
    let h = Harness::new();
    let d = h.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let a = h.touch(ROOT, b"a");
    let size = h.getattr(ROOT).unwrap().size;
    h.rename(ROOT, b"a", ROOT, b"b", WHITEOUT).unwrap();
    assert_eq!(h.ino(ROOT, b"b"), a);
    let w = h.lookup(ROOT, b"a").unwrap();
    assert_ne!(w.nodeid, a);
    assert_eq!((w.attr.mode, w.attr.rdev), (libc::S_IFCHR, 0));
    assert_eq!((w.attr.uid, w.attr.gid, w.attr.nlink), (1000, 1000, 1));
    assert_eq!(h.lookups(w.nodeid), 1, "only the lookup counts");
    h.forget(w.nodeid, 1);
    assert_eq!(h.getattr(ROOT).unwrap().size, size + 20);
    let listed = h.readdir(ROOT, 0, 4096, false).unwrap();
    let e = listed.iter().find(|e| e.name == b"a").unwrap();
    assert_eq!(e.typ, dtype::CHR);
    // Across directories, replacing a target.
    let c = h.touch(d, b"c");
    h.rename(ROOT, b"b", d, b"c", WHITEOUT).unwrap();
    assert_eq!(h.ino(d, b"c"), a);
    assert_eq!(h.getattr(c), Err(Errno::ENOENT), "the old target is freed");
    assert_eq!(
        h.lookup(ROOT, b"b").unwrap().attr.mode,
        libc::S_IFCHR,
        "a whiteout where the source was"
    );
    // Whiteouts are removed like any file and then freed.
    let count = h.fs.inode_count();
    h.unlink(ROOT, b"a").unwrap();
    assert_eq!(h.fs.inode_count(), count - 1);
    // No whiteout when the rename fails.
    assert_eq!(
        h.rename(ROOT, b"nope", ROOT, b"x", WHITEOUT),
        Err(Errno::ENOENT)
    );
    assert_eq!(h.lookup(ROOT, b"nope"), Err(Errno::ENOENT));
    // The whiteout needs an inode.
    let h = Harness::with(MemFsConfig {
        max_inodes: Some(2),
        ..Default::default()
    });
    let a = h.touch(ROOT, b"a");
    assert_eq!(
        h.rename(ROOT, b"a", ROOT, b"b", WHITEOUT),
        Err(Errno::ENOSPC)
    );
    assert_eq!(h.ino(ROOT, b"a"), a, "nothing moved");
}

/// tmpfs keeps symlink targets of up to 127 bytes in the inode and gives
/// longer ones a page: 8 blocks, charged against the capacity.
#[test]
fn long_symlinks_take_a_page() {
    let h = Harness::with(MemFsConfig {
        capacity_bytes: 8192,
        ..Default::default()
    });
    let short = h.symlink(ROOT, b"s", &[b'x'; 127]).unwrap();
    assert_eq!((short.attr.size, short.attr.blocks), (127, 0));
    assert_eq!(h.fs.used_bytes(), 0);
    let long = h.symlink(ROOT, b"l", &[b'y'; 128]).unwrap();
    assert_eq!((long.attr.size, long.attr.blocks), (128, 8));
    assert_eq!(h.fs.used_bytes(), 4096);
    h.symlink(ROOT, b"l2", &[b'y'; 4095]).unwrap();
    assert_eq!(
        h.symlink(ROOT, b"l3", &[b'y'; 200]),
        Err(Errno::ENOSPC),
        "no page left"
    );
    assert_eq!(h.fs.used_bytes(), 8192);
    h.unlink(ROOT, b"l").unwrap();
    h.forget(long.nodeid, 1);
    assert_eq!(h.fs.used_bytes(), 4096);
}

#[test]
fn stray_forgets_neither_panic_nor_corrupt() {
    let h = Harness::new();
    // Inodes never looked up (0, unused numbers), zero and huge counts.
    for ino in [0, 2, 999, u64::MAX] {
        h.forget(ino, 1);
        h.forget(ino, u64::MAX);
        h.forget(ino, 0);
    }
    h.forget(ROOT, u64::MAX);
    h.fs.batch_forget(
        &h.req(),
        op::BatchForget::new(&[
            fuse_forget_one {
                nodeid: ROOT,
                nlookup: u64::MAX,
            },
            fuse_forget_one {
                nodeid: 12345,
                nlookup: 1,
            },
        ]),
    );
    assert_eq!(h.fs.inode_count(), 1);
    assert!(h.getattr(ROOT).is_ok());
    // A linked file forgotten more often than it was looked up stays, its
    // count at zero; a new lookup counts from there.
    let f = h.create(ROOT, b"f");
    h.write(f, 0, b"data").unwrap();
    for _ in 0..3 {
        h.forget(f, 1);
    }
    h.forget(f, u64::MAX);
    assert_eq!(h.lookups(f), 0);
    assert_eq!(h.read(f, 0, 10).unwrap(), b"data");
    assert_eq!(h.lookup(ROOT, b"f").unwrap().nodeid, f);
    assert_eq!(h.lookups(f), 1);
    // Unlinked while open and forgotten twice: freed once, at release,
    // with its space given back exactly once.
    let used = h.fs.used_bytes();
    assert!(used > 0);
    h.unlink(ROOT, b"f").unwrap();
    h.forget(f, 5);
    h.forget(f, 5);
    assert_eq!(h.read(f, 0, 10).unwrap(), b"data");
    h.release(f);
    assert_eq!(h.fs.inode_count(), 1);
    assert_eq!(h.fs.used_bytes(), 0);
    h.forget(f, 1);
    h.forget(f, u64::MAX);
    assert_eq!((h.fs.inode_count(), h.fs.used_bytes()), (1, 0));
    assert_eq!(h.getattr(f), Err(Errno::ENOENT));
    let g = h.touch(ROOT, b"g");
    assert!(g > f);
}
