//! A backend with faults on purpose, for the fault tests
//! (`tests/faults.rs`) and for trying a build's panic handling by hand:
//! `--source faulty:` serves a directory with one file, `ok`, whose
//! backend panics on a lookup of `panic`, answers a lookup of `slow` after
//! a while, and fails reads of `ok` with EIO while told to. Every other
//! mount falls through to the stock backends.
//!
//! ```sh
//! cargo run --example faulty -- mount --source faulty: /mnt/x
//! stat /mnt/x/panic      # EIO; the server says why in one line, serves on
//! # In the abort-on-panic static build the server dies instead, saying so,
//! # and the auto-unmount watchdog removes the mount:
//! cargo build --profile static --example faulty
//! ```

use fuselage::cli::{self, Command};
use fuselage::core::abi::{FUSE_ROOT_ID, fuse_attr};
use fuselage::core::reply::{ReplyAttr, ReplyData, ReplyEntry, ReplyOpen, entry_out};
use fuselage::core::{Errno, Filesystem, ReplySink, RequestHeader, op};
use fuselage::registry::{Backend, Registry};
use fuselage::serve::Served;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The one file of [`FaultyFs`] that always works.
pub const OK: &[u8] = b"ok";
/// Looking this name up panics inside the backend.
pub const PANIC: &[u8] = b"panic";
/// Looking this name up takes [`SLOW`] and then finds the file.
pub const SLOW_NAME: &[u8] = b"slow";
/// How long a lookup of `slow` takes.
pub const SLOW: Duration = Duration::from_millis(400);
/// The inode of `ok`.
pub const OK_INO: u64 = 2;
/// The content of `ok`.
pub const CONTENT: &[u8] = b"fine\n";

/// A directory with one file, `ok`, whose backend panics on a lookup of
/// `panic` and answers a lookup of `slow` (the same file) after a while;
/// reads of `ok` fail with EIO while `failing` is set. Every TTL is zero,
/// so each stat reaches the server.
#[derive(Default)]
pub struct FaultyFs {
    /// Reads of `ok` fail with EIO while set.
    pub failing: Arc<AtomicBool>,
}

impl FaultyFs {
    fn attr(ino: u64) -> Option<fuse_attr> {
        let (mode, size, nlink) = match ino {
            FUSE_ROOT_ID => (libc::S_IFDIR | 0o755, 0, 2),
            OK_INO => (libc::S_IFREG | 0o444, CONTENT.len() as u64, 1),
            _ => return None,
        };
        Some(fuse_attr {
            ino,
            size,
            mode,
            nlink,
            blksize: 4096,
            ..Default::default()
        })
    }

    fn entry<S: ReplySink>(reply: ReplyEntry<S>) {
        let attr = Self::attr(OK_INO).expect("the file exists");
        reply.entry(&entry_out(attr, 0, Duration::ZERO, Duration::ZERO))
    }
}

impl Filesystem for FaultyFs {
    fn lookup<S: ReplySink>(&self, _: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        if op.parent() != FUSE_ROOT_ID {
            return reply.error(Errno::ENOTDIR);
        }
        match op.name().to_bytes() {
            OK => Self::entry(reply),
            SLOW_NAME => {
                std::thread::sleep(SLOW);
                Self::entry(reply)
            }
            PANIC => panic!("FaultyFs: a lookup of {:?} panics", op.name()),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        match Self::attr(op.ino()) {
            Some(attr) => reply.attr(Duration::ZERO, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open<S: ReplySink>(&self, _: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        match op.ino() {
            OK_INO => reply.opened(0, 0),
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn read<S: ReplySink>(&self, _: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        if self.failing.load(Ordering::Relaxed) {
            return reply.error(Errno::EIO);
        }
        let start = (op.offset() as usize).min(CONTENT.len());
        let end = (start + op.size() as usize).min(CONTENT.len());
        reply.data(&CONTENT[start..end])
    }
}

/// Served with the defaults: no single-file root, no kernel passthrough.
impl Served for FaultyFs {}

/// The registry of this program: `faulty` first, then the stock backends.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register("faulty", |spec| {
        (spec.source_str()? == "faulty:").then(|| Ok(Backend::new("faulty", FaultyFs::default())))
    });
    registry
}

#[allow(dead_code)] // The fault tests include this file for `FaultyFs`.
fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Mount(args)) => args,
        Ok(_) => {
            eprintln!("usage: faulty mount [OPTIONS] --source faulty: MOUNTPOINT");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("faulty: {e}");
            return ExitCode::from(2);
        }
    };
    match registry().serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faulty: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
