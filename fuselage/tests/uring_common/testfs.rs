//! A tiny filesystem for transport tests: the root directory and one file,
//! `data`, whose bytes live in a host file and are answered as a
//! [`FileRange`] (so transports splice or pread them). It can answer from
//! another thread after its method returned (deferred replies, through
//! `defer()`, on transports whose sink supports it).

use fuselage_core::abi::{FOPEN_DIRECT_IO, fuse_attr};
use fuselage_core::reply::{ReplyAttr, ReplyData, ReplyEntry, ReplyOpen, entry_out};
use fuselage_core::{Errno, FileRange, Filesystem, ReplySink, RequestHeader};
use std::ffi::CStr;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// See the module docs.
pub struct TestFs {
    file: std::fs::File,
    size: u64,
    /// Answer from another thread after returning, where the transport can.
    pub defer: bool,
    /// Promise `extra` bytes more than the file has at its end (a file that
    /// shrank between sizing a reply and sending it).
    pub extra: u32,
    /// Replies sent from another thread.
    pub deferred: AtomicUsize,
}

impl TestFs {
    /// A file of `size` bytes with a position-dependent pattern.
    pub fn new(size: usize) -> TestFs {
        let path = std::env::temp_dir().join(format!(
            "fuselage-uring-testfs-{}-{size}",
            std::process::id()
        ));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        f.write_all(&pattern(size)).unwrap();
        TestFs {
            file: f,
            size: size as u64,
            defer: false,
            extra: 0,
            deferred: AtomicUsize::new(0),
        }
    }

    fn attr(&self, ino: u64) -> fuse_attr {
        if ino == 1 {
            fuse_attr {
                ino: 1,
                mode: libc::S_IFDIR | 0o755,
                nlink: 2,
                ..Default::default()
            }
        } else {
            fuse_attr {
                ino: 2,
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

/// The file's content.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

impl Filesystem for TestFs {
    fn lookup<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        parent: u64,
        name: &CStr,
        reply: ReplyEntry<S>,
    ) {
        if parent != 1 || name != c"data" {
            return reply.error(Errno::ENOENT);
        }
        let e = entry_out(self.attr(2), 0, Duration::ZERO, Duration::ZERO);
        if !self.defer {
            return reply.entry(&e);
        }
        match reply.defer() {
            Ok(r) => self.later(move || r.entry(&e)),
            Err(r) => r.entry(&e),
        }
    }

    fn getattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        ino: u64,
        _fh: Option<u64>,
        reply: ReplyAttr<S>,
    ) {
        let a = self.attr(ino);
        if !self.defer {
            return reply.attr(Duration::ZERO, &a);
        }
        match reply.defer() {
            Ok(r) => self.later(move || r.attr(Duration::ZERO, &a)),
            Err(r) => r.attr(Duration::ZERO, &a),
        }
    }

    fn open<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        _ino: u64,
        _flags: u32,
        _open_flags: u32,
        reply: ReplyOpen<S>,
    ) {
        reply.opened(0, FOPEN_DIRECT_IO)
    }

    fn read<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        _ino: u64,
        _fh: u64,
        offset: u64,
        size: u32,
        _flags: u32,
        _lock_owner: Option<u64>,
        reply: ReplyData<S>,
    ) {
        let avail = self.size.saturating_sub(offset) + self.extra as u64;
        let len = (size as u64).min(avail) as u32;
        let range = FileRange {
            fd: self.file.as_raw_fd(),
            offset,
            len,
        };
        if !self.defer {
            return reply.file(range);
        }
        match reply.defer() {
            Ok(r) => self.later(move || r.file(range)),
            Err(r) => r.file(range),
        }
    }
}
