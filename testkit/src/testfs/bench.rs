//! [`BenchFs`]: a fixed in-memory filesystem that allocates nothing per
//! request, for benchmarks and zero-allocation tests of the core.

use core::cell::RefCell;
use core::ffi::CStr;
use core::time::Duration;
use fuselage_core::abi::{FUSE_ROOT_ID, fuse_attr};
use fuselage_core::dirent::dtype;
use fuselage_core::filesystem::{Filesystem, RequestHeader};
use fuselage_core::reply::{
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplySink, ReplyWrite, entry_out,
};
use fuselage_core::{Errno, op};

const TTL: Duration = Duration::from_secs(1);

/// A trivial in-memory filesystem for benchmarks: one directory (the root)
/// holding [`BenchFs::DIR_ENTRIES`] regular files, the first of which,
/// [`BenchFs::FILE_NAME`] (inode [`BenchFs::FILE_INO`]), has 1 MiB of
/// content. It answers LOOKUP of that file, GETATTR of it, READ (borrowing
/// the content), WRITE (copying into it, `EFBIG` past its end) and
/// READDIRPLUS of the root, all with a TTL of 1 s, and allocates nothing
/// after [`BenchFs::new`], so it measures the core and not itself. It is not
/// `Sync`: one dispatcher thread at a time.
///
/// ```
/// use fuselage_testkit::testfs::BenchFs;
/// let fs = BenchFs::new(); // all it will ever need, allocated here
/// assert_eq!(BenchFs::FILE_NAME.to_bytes(), b"hello.txt");
/// # drop(fs);
/// ```
pub struct BenchFs {
    attr: fuse_attr,
    data: RefCell<Vec<u8>>,
    names: Vec<Vec<u8>>,
}

impl Default for BenchFs {
    fn default() -> Self {
        Self::new()
    }
}

impl BenchFs {
    /// Inode of the regular file with content.
    pub const FILE_INO: u64 = 2;
    /// Name of that file in the root directory.
    pub const FILE_NAME: &'static CStr = c"hello.txt";
    /// Entries in the root directory (more than one 4 KiB READDIRPLUS
    /// holds).
    pub const DIR_ENTRIES: usize = 64;

    /// The filesystem, with all its memory allocated up front.
    pub fn new() -> Self {
        let attr = fuse_attr {
            ino: Self::FILE_INO,
            size: 1 << 20,
            blocks: (1 << 20) / 512,
            atime: 1_700_000_000,
            mtime: 1_700_000_000,
            ctime: 1_700_000_000,
            mode: 0o100_644,
            nlink: 1,
            uid: 1000,
            gid: 1000,
            blksize: 4096,
            ..Default::default()
        };
        let data = (0..1usize << 20).map(|i| (i * 7) as u8).collect();
        let names = (0..Self::DIR_ENTRIES)
            .map(|i| {
                if i == 0 {
                    Self::FILE_NAME.to_bytes().to_vec()
                } else {
                    format!("file-{i:04}").into_bytes()
                }
            })
            .collect();
        BenchFs {
            attr,
            data: RefCell::new(data),
            names,
        }
    }

    fn attr_of(&self, ino: u64) -> fuse_attr {
        fuse_attr { ino, ..self.attr }
    }
}

impl Filesystem for BenchFs {
    fn lookup<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        if op.parent() == FUSE_ROOT_ID && op.name() == Self::FILE_NAME {
            reply.entry(&entry_out(self.attr, 0, TTL, TTL))
        } else {
            reply.error(Errno::ENOENT)
        }
    }

    fn getattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getattr<'_>,
        reply: ReplyAttr<S>,
    ) {
        if op.ino() == Self::FILE_INO {
            reply.attr(TTL, &self.attr)
        } else {
            reply.error(Errno::ENOENT)
        }
    }

    fn read<S: ReplySink>(&self, _req: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        let data = self.data.borrow();
        let start = (op.offset() as usize).min(data.len());
        let end = start + (op.size() as usize).min(data.len() - start);
        reply.data(&data[start..end])
    }

    fn write<S: ReplySink>(&self, _req: &RequestHeader, op: op::Write<'_>, reply: ReplyWrite<S>) {
        let mut file = self.data.borrow_mut();
        let (start, data) = (op.offset() as usize, op.data());
        match file.get_mut(start..start + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                reply.written(data.len() as u32)
            }
            None => reply.error(Errno::EFBIG),
        }
    }

    fn readdirplus<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Readdirplus<'_>,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        for (i, name) in self.names.iter().enumerate().skip(op.offset() as usize) {
            let ino = Self::FILE_INO + i as u64;
            let e = entry_out(self.attr_of(ino), 0, TTL, TTL);
            if reply.push_plus(&e, i as u64 + 1, dtype::REG, name).is_err() {
                break;
            }
        }
        reply.ok()
    }
}
