//! A backend of one's own, served by the `fuselage` machinery without
//! forking it: register a claim in a [`Registry`], and every option of
//! `fuselage mount` (transports and their fallback, `--route`,
//! `--read-only`, the startup line, signals, lazy unmount) works for it.
//!
//! This one, `greeting`, claims `--source greeting:TEXT` and serves a
//! read-only directory holding one file, `greeting`, whose content is TEXT
//! and a newline. Any other mount falls through to the stock backends:
//!
//! ```sh
//! cargo run --example registry -- mount --source greeting:hello /mnt/x
//! cat /mnt/x/greeting                          # hello
//! cargo run --example registry -- mount /mnt/y   # the stock memfs
//! ```

use fuselage::cli::{self, Command};
use fuselage::core::abi::{FUSE_ROOT_ID, fuse_attr, fuse_kstatfs};
use fuselage::core::dirent::dtype;
use fuselage::core::reply::{
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, entry_out,
};
use fuselage::core::{Errno, Filesystem, ReplySink, RequestHeader, op};
use fuselage::registry::{Backend, Registry};
use fuselage::serve::Served;
use std::process::ExitCode;
use std::time::Duration;

/// The inode of the one file.
const GREETING_INO: u64 = 2;
/// Its name.
const GREETING: &[u8] = b"greeting";
/// Nothing here ever changes, so the kernel may cache for long.
const TTL: Duration = Duration::from_secs(60);

/// A read-only directory with one file whose content is fixed at mount.
struct GreetingFs {
    text: Vec<u8>,
    uid: u32,
    gid: u32,
}

impl GreetingFs {
    fn attr(&self, ino: u64) -> Option<fuse_attr> {
        let (mode, size, nlink) = match ino {
            FUSE_ROOT_ID => (libc::S_IFDIR | 0o555, 0, 2),
            GREETING_INO => (libc::S_IFREG | 0o444, self.text.len() as u64, 1),
            _ => return None,
        };
        Some(fuse_attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            mode,
            nlink,
            uid: self.uid,
            gid: self.gid,
            blksize: 4096,
            ..Default::default()
        })
    }
}

impl GreetingFs {
    /// READDIR or READDIRPLUS of the root from entry `offset` on.
    fn list<S: ReplySink>(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        if ino != FUSE_ROOT_ID {
            return reply.error(Errno::ENOTDIR);
        }
        let entries: [(u64, u32, &[u8]); 3] = [
            (FUSE_ROOT_ID, dtype::DIR, b"."),
            (FUSE_ROOT_ID, dtype::DIR, b".."),
            (GREETING_INO, dtype::REG, GREETING),
        ];
        for (i, (ino, typ, name)) in entries.iter().enumerate().skip(offset as usize) {
            let next = i as u64 + 1;
            let pushed = match (plus, self.attr(*ino)) {
                (true, Some(attr)) => {
                    reply.push_plus(&entry_out(attr, 0, TTL, TTL), next, *typ, name)
                }
                _ => reply.push(*ino, next, *typ, name),
            };
            if pushed.is_err() {
                break;
            }
        }
        reply.ok()
    }
}

impl Filesystem for GreetingFs {
    fn lookup<S: ReplySink>(&self, _: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        match (op.parent(), op.name().to_bytes()) {
            (FUSE_ROOT_ID, GREETING) => {
                // Static inodes: the kernel's lookup counts need no tracking.
                let attr = self.attr(GREETING_INO).expect("the greeting exists");
                reply.entry(&entry_out(attr, 0, TTL, TTL))
            }
            (FUSE_ROOT_ID, _) => reply.negative(TTL),
            _ => reply.error(Errno::ENOTDIR),
        }
    }

    fn getattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        match self.attr(op.ino()) {
            Some(attr) => reply.attr(TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open<S: ReplySink>(&self, _: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        if op.ino() != GREETING_INO {
            return reply.error(Errno::EISDIR);
        }
        if op.flags() & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
            return reply.error(Errno::EROFS);
        }
        reply.opened(0, 0)
    }

    fn read<S: ReplySink>(&self, _: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        let start = (op.offset() as usize).min(self.text.len());
        let end = start
            .saturating_add(op.size() as usize)
            .min(self.text.len());
        reply.data(&self.text[start..end])
    }

    fn opendir<S: ReplySink>(&self, _: &RequestHeader, op: op::Opendir<'_>, reply: ReplyOpen<S>) {
        match op.ino() {
            FUSE_ROOT_ID => reply.opened(0, 0),
            _ => reply.error(Errno::ENOTDIR),
        }
    }

    fn readdir<S: ReplySink>(
        &self,
        _: &RequestHeader,
        op: op::Readdir<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        self.list(op.ino(), op.offset(), false, reply)
    }

    fn readdirplus<S: ReplySink>(
        &self,
        _: &RequestHeader,
        op: op::Readdirplus<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        self.list(op.ino(), op.offset(), true, reply)
    }

    fn statfs<S: ReplySink>(&self, _: &RequestHeader, _: op::Statfs, reply: ReplyStatfs<S>) {
        reply.statfs(&fuse_kstatfs {
            blocks: 1,
            files: 2,
            bsize: 4096,
            frsize: 4096,
            namelen: 255,
            ..Default::default()
        })
    }
}

/// Served with the defaults: no single-file root, no kernel passthrough.
impl Served for GreetingFs {}

/// The registry of this program: `greeting` first, then the stock backends.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register("greeting", |spec| {
        let text = spec.source_str()?.strip_prefix("greeting:")?;
        if text.is_empty() {
            // Ours, but unusable: fail the mount rather than fall through.
            return Some(Err(
                "the greeting is empty: give --source greeting:TEXT".into()
            ));
        }
        let mut text = text.as_bytes().to_vec();
        text.push(b'\n');
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Some(Ok(Backend::new("greeting", GreetingFs { text, uid, gid })))
    });
    registry
}

#[allow(dead_code)] // The registry test includes this file for `registry()`.
fn main() -> ExitCode {
    let registry = registry();
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Mount(args)) => args,
        Ok(_) => {
            eprintln!("usage: registry mount [OPTIONS] --source greeting:TEXT MOUNTPOINT");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("registry: {e}");
            return ExitCode::from(2);
        }
    };
    match registry.serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
