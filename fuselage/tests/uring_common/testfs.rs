//! A tiny filesystem for transport tests: the root directory and one file,
//! `data`, whose bytes live in a host file and are answered as a
//! [`FileRange`] (so transports splice or pread them). It can answer from
//! another thread after its method returned (deferred replies, through
//! `defer()`, on transports whose sink supports it).

use fuselage_core::abi::{FOPEN_DIRECT_IO, fuse_attr};
use fuselage_core::op;
use fuselage_core::reply::{ReplyAttr, ReplyData, ReplyEntry, ReplyOpen, entry_out};
use fuselage_core::{Errno, FileRange, Filesystem, ReplySink, RequestHeader};
use std::io::Write;
use std::os::fd::AsFd;
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
    fn lookup<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let (parent, name) = (op.parent(), op.name());
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
        op: op::Getattr<'_>,
        reply: ReplyAttr<S>,
    ) {
        let ino = op.ino();
        let a = self.attr(ino);
        if !self.defer {
            return reply.attr(Duration::ZERO, &a);
        }
        match reply.defer() {
            Ok(r) => self.later(move || r.attr(Duration::ZERO, &a)),
            Err(r) => r.attr(Duration::ZERO, &a),
        }
    }

    fn open<S: ReplySink>(&self, _req: &RequestHeader, _op: op::Open<'_>, reply: ReplyOpen<S>) {
        reply.opened(0, FOPEN_DIRECT_IO)
    }

    fn read<S: ReplySink>(&self, _req: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        let (offset, size) = (op.offset(), op.size());
        let avail = self.size.saturating_sub(offset) + self.extra as u64;
        let len = (size as u64).min(avail) as u32;
        if !self.defer {
            return reply.file(FileRange::new(self.file.as_fd(), offset, len));
        }
        match reply.defer() {
            Ok(r) => {
                // The deferred answer needs a descriptor of its own: the
                // range borrows it until the reply is sent.
                let file = self.file.try_clone().expect("dup the backing file");
                self.later(move || r.file(FileRange::new(file.as_fd(), offset, len)))
            }
            Err(r) => r.file(FileRange::new(self.file.as_fd(), offset, len)),
        }
    }
}
