//! [`RangeFs`]: one file answered as a file range, optionally from another
//! thread.

use fuselage_core::abi::{FOPEN_DIRECT_IO, FUSE_ROOT_ID, fuse_attr};
use fuselage_core::op;
use fuselage_core::reply::{ReplyAttr, ReplyData, ReplyEntry, ReplyOpen, entry_out};
use fuselage_core::{Errno, FileRange, Filesystem, ReplySink, RequestHeader};
use std::ffi::CStr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// When [`RangeFs`] answers from another thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Defer {
    /// Always answer before the method returns.
    #[default]
    Never,
    /// Answer from another thread where the transport's sink can defer a
    /// reply, and at once where it cannot.
    WhenPossible,
    /// Answer from another thread; where the sink cannot defer, fail the
    /// request with `EIO`, so that a transport that should defer and does
    /// not is seen.
    Always,
}

/// A tiny filesystem for transport tests: the root directory and one file,
/// [`RangeFs::NAME`] (inode [`RangeFs::FILE_INO`], `FOPEN_DIRECT_IO`), whose
/// bytes live in a memfd and are answered as a [`FileRange`], so transports
/// splice or pread them. It can answer LOOKUP, GETATTR and READ from another
/// thread after its method returned ([`RangeFs::defer`]). Attributes have a
/// TTL of 0. Anything else gets `ENOSYS`.
///
/// ```
/// use fuselage_testkit::{channel_pair, serve, testfs::{RangeFs, pattern}};
/// let (mut kernel, server_fd) = channel_pair().unwrap();
/// let server = serve(RangeFs::new(10_000), Default::default(), server_fd);
/// kernel.init().unwrap();
/// let e = kernel.lookup(1, "data").unwrap();
/// let open = kernel.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
/// assert_eq!(kernel.read(e.nodeid, open.fh, 100, 50).unwrap(), &pattern(10_000)[100..150]);
/// drop(kernel);
/// server.join().unwrap().unwrap();
/// ```
#[derive(Debug)]
pub struct RangeFs {
    file: std::fs::File,
    size: u64,
    /// When to answer from another thread.
    pub defer: Defer,
    /// Promise `extra` bytes more than the file has at its end (a file that
    /// shrank between sizing a reply and sending it).
    pub extra: u32,
    /// Replies sent from another thread so far.
    pub deferred: AtomicUsize,
}

impl RangeFs {
    /// The name of the file in the root directory.
    pub const NAME: &'static CStr = c"data";
    /// The inode of the file.
    pub const FILE_INO: u64 = 2;

    /// A file of `size` bytes of [`pattern`].
    pub fn new(size: usize) -> RangeFs {
        RangeFs::with_content(&pattern(size))
    }

    /// A file holding `content`.
    pub fn with_content(content: &[u8]) -> RangeFs {
        let fd = crate::memfd_with(content).expect("memfd for RangeFs");
        RangeFs {
            file: std::fs::File::from(fd),
            size: content.len() as u64,
            defer: Defer::Never,
            extra: 0,
            deferred: AtomicUsize::new(0),
        }
    }

    fn attr(&self, ino: u64) -> fuse_attr {
        if ino == FUSE_ROOT_ID {
            fuse_attr {
                ino: FUSE_ROOT_ID,
                mode: libc::S_IFDIR | 0o755,
                nlink: 2,
                ..Default::default()
            }
        } else {
            fuse_attr {
                ino: Self::FILE_INO,
                mode: libc::S_IFREG | 0o644,
                nlink: 1,
                size: self.size,
                blocks: self.size.div_ceil(512),
                blksize: 4096,
                ..Default::default()
            }
        }
    }

    /// Runs `job` on another thread after a short delay.
    fn later(&self, job: impl FnOnce() + Send + 'static) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            job()
        });
    }
}

/// The content of [`RangeFs::new`]: `size` bytes that differ with position
/// (also across 4 KiB pages), so a misplaced range shows.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// Answers with `$answer` (a closure over the reply handle) now, or from
/// another thread, as `$fs.defer` says.
macro_rules! answer {
    ($fs:expr, $reply:expr, $answer:expr) => {
        match $fs.defer {
            Defer::Never => $answer($reply),
            Defer::WhenPossible => match $reply.defer() {
                Ok(r) => $fs.later(move || $answer(r)),
                Err(r) => $answer(r),
            },
            Defer::Always => match $reply.defer() {
                Ok(r) => $fs.later(move || $answer(r)),
                Err(r) => r.error(Errno::EIO),
            },
        }
    };
}

impl Filesystem for RangeFs {
    fn lookup<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        if op.parent() != FUSE_ROOT_ID || op.name() != Self::NAME {
            return reply.error(Errno::ENOENT);
        }
        let e = entry_out(self.attr(Self::FILE_INO), 0, Duration::ZERO, Duration::ZERO);
        answer!(self, reply, move |r: ReplyEntry<_>| r.entry(&e))
    }

    fn getattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getattr<'_>,
        reply: ReplyAttr<S>,
    ) {
        let a = self.attr(op.ino());
        answer!(self, reply, move |r: ReplyAttr<_>| r
            .attr(Duration::ZERO, &a))
    }

    fn open<S: ReplySink>(&self, _req: &RequestHeader, _op: op::Open<'_>, reply: ReplyOpen<S>) {
        reply.opened(0, FOPEN_DIRECT_IO)
    }

    fn read<S: ReplySink>(&self, _req: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        let (offset, size) = (op.offset(), op.size());
        let avail = self.size.saturating_sub(offset) + self.extra as u64;
        let len = (size as u64).min(avail) as u32;
        if self.defer == Defer::Never {
            return reply.file(FileRange::new(self.file.as_fd(), offset, len));
        }
        // A deferred answer needs a descriptor of its own: the range borrows
        // it until the reply is sent.
        let file = self.file.try_clone().expect("dup the backing file");
        answer!(self, reply, move |r: ReplyData<_>| r.file(FileRange::new(
            file.as_fd(),
            offset,
            len
        )))
    }
}
