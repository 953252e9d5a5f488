//! The floor: a trivial filesystem served through fuselage's own transports, so its figures
//! are the best a FUSE round trip can do on this machine.
//!
//! It serves the data set's shape with nothing behind it: `big.bin` (reads answered with zeros
//! from a static buffer), `small/` (a flat directory of the small files' names, constant
//! attributes) and nothing else; writes are refused. Entry and attribute timeouts are those of
//! fuselage's passthrough (1 s, no negative entries), so a cold `lstat` is one LOOKUP of the file,
//! as it is there. `fuselage-bench --floor-server mount --source floor:BIG:FILES:SMALL ...`
//! serves it with the `fuselage mount` machinery (a [`Registry`] claim), on any `--transport`.

use crate::source::{BIG, SMALL};
use fuselage::cli::{self, Command};
use fuselage::core::abi::{FUSE_ROOT_ID, fuse_attr, fuse_kstatfs};
use fuselage::core::dirent::dtype;
use fuselage::core::reply::{
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, entry_out,
};
use fuselage::core::{Errno, Filesystem, ReplySink, RequestHeader, op};
use fuselage::registry::{Backend, Registry};
use fuselage::serve::Served;
use std::process::ExitCode;
use std::time::Duration;

/// The first argument that makes `fuselage-bench` a floor server.
pub const FLOOR_ARG: &str = "--floor-server";
/// `--source floor:BIG:FILES:SMALL`.
const SCHEME: &str = "floor:";

const BIG_INO: u64 = 2;
const SMALL_INO: u64 = 3;
/// Inode of small file 0; file `i` is `FIRST_FILE_INO + i`.
const FIRST_FILE_INO: u64 = 4;
/// As fuselage's passthrough (`PassthroughConfig::entry_ttl`, `attr_ttl`).
const TTL: Duration = Duration::from_secs(1);
/// What every read is answered from (the largest READ is `max_write`, 1 MiB).
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// The `--source` that asks for a floor of this shape.
pub fn source_spec(big_bytes: u64, files: usize, small_bytes: usize) -> String {
    format!("{SCHEME}{big_bytes}:{files}:{small_bytes}")
}

/// The trivial filesystem.
#[derive(Debug)]
pub struct FloorFs {
    big_bytes: u64,
    files: u64,
    small_bytes: u64,
    uid: u32,
    gid: u32,
}

/// Digits of `n` in decimal.
fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Writes `f{i:06}` (as [`crate::source::small_name`]) into `buf`; returns its length.
fn small_name_into(i: u64, buf: &mut [u8; 24]) -> usize {
    let len = 1 + digits(i).max(6);
    buf[0] = b'f';
    let mut n = i;
    for b in buf[1..len].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    len
}

/// The index of a small file's name, if it is one ([`small_name_into`]'s inverse).
fn small_index(name: &[u8]) -> Option<u64> {
    let rest = name.strip_prefix(b"f")?;
    if rest.is_empty() || rest.len() > 19 || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = rest.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    (rest.len() == digits(n).max(6)).then_some(n)
}

impl FloorFs {
    /// Parses `floor:BIG:FILES:SMALL`.
    pub fn from_spec(spec: &str) -> Option<FloorFs> {
        let mut parts = spec.strip_prefix(SCHEME)?.split(':');
        let mut next = || parts.next()?.parse::<u64>().ok();
        let (big_bytes, files, small_bytes) = (next()?, next()?, next()?);
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Some(FloorFs {
            big_bytes,
            files,
            small_bytes,
            uid,
            gid,
        })
    }

    fn attr(&self, ino: u64) -> Option<fuse_attr> {
        let (mode, size, nlink) = match ino {
            FUSE_ROOT_ID => (libc::S_IFDIR | 0o555, 0, 3),
            SMALL_INO => (libc::S_IFDIR | 0o555, 0, 2),
            BIG_INO => (libc::S_IFREG | 0o444, self.big_bytes, 1),
            i if i >= FIRST_FILE_INO && i - FIRST_FILE_INO < self.files => {
                (libc::S_IFREG | 0o444, self.small_bytes, 1)
            }
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

    fn size_of(&self, ino: u64) -> Option<u64> {
        match ino {
            BIG_INO => Some(self.big_bytes),
            i if i >= FIRST_FILE_INO && i - FIRST_FILE_INO < self.files => Some(self.small_bytes),
            _ => None,
        }
    }

    /// READDIR or READDIRPLUS of the root or `small/` from entry `offset` on.
    fn list<S: ReplySink>(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        let mut name = [0u8; 24];
        let mut at = offset;
        loop {
            let (child, typ, len) = match (ino, at) {
                (FUSE_ROOT_ID | SMALL_INO, 0) => (ino, dtype::DIR, {
                    name[0] = b'.';
                    1
                }),
                (FUSE_ROOT_ID | SMALL_INO, 1) => (FUSE_ROOT_ID, dtype::DIR, {
                    name[..2].copy_from_slice(b"..");
                    2
                }),
                (FUSE_ROOT_ID, 2) => (BIG_INO, dtype::REG, {
                    name[..BIG.len()].copy_from_slice(BIG.as_bytes());
                    BIG.len()
                }),
                (FUSE_ROOT_ID, 3) => (SMALL_INO, dtype::DIR, {
                    name[..SMALL.len()].copy_from_slice(SMALL.as_bytes());
                    SMALL.len()
                }),
                (SMALL_INO, n) if n - 2 < self.files => (
                    FIRST_FILE_INO + n - 2,
                    dtype::REG,
                    small_name_into(n - 2, &mut name),
                ),
                (FUSE_ROOT_ID | SMALL_INO, _) => break,
                _ => return reply.error(Errno::ENOTDIR),
            };
            let pushed = match (plus, self.attr(child)) {
                (true, Some(attr)) => {
                    reply.push_plus(&entry_out(attr, 0, TTL, TTL), at + 1, typ, &name[..len])
                }
                _ => reply.push(child, at + 1, typ, &name[..len]),
            };
            if pushed.is_err() {
                break;
            }
            at += 1;
        }
        reply.ok()
    }
}

impl Filesystem for FloorFs {
    fn lookup<S: ReplySink>(&self, _: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let name = op.name().to_bytes();
        let ino = match op.parent() {
            FUSE_ROOT_ID if name == BIG.as_bytes() => Some(BIG_INO),
            FUSE_ROOT_ID if name == SMALL.as_bytes() => Some(SMALL_INO),
            FUSE_ROOT_ID => None,
            SMALL_INO => small_index(name)
                .filter(|i| *i < self.files)
                .map(|i| FIRST_FILE_INO + i),
            _ => return reply.error(Errno::ENOTDIR),
        };
        match ino.and_then(|i| self.attr(i)) {
            // Static inodes: lookup counts need no tracking.
            Some(attr) => reply.entry(&entry_out(attr, 0, TTL, TTL)),
            None => reply.negative(Duration::ZERO),
        }
    }

    fn getattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        match self.attr(op.ino()) {
            Some(attr) => reply.attr(TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open<S: ReplySink>(&self, _: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        if self.size_of(op.ino()).is_none() {
            return reply.error(Errno::EISDIR);
        }
        if op.flags() & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
            return reply.error(Errno::EROFS);
        }
        reply.opened(0, 0)
    }

    fn read<S: ReplySink>(&self, _: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        let Some(size) = self.size_of(op.ino()) else {
            return reply.error(Errno::EISDIR);
        };
        let left = size.saturating_sub(op.offset());
        let len = left.min(u64::from(op.size())).min(ZEROS.len() as u64) as usize;
        reply.data(&ZEROS[..len])
    }

    fn flush<S: ReplySink>(&self, _: &RequestHeader, _: op::Flush<'_>, reply: ReplyEmpty<S>) {
        reply.ok()
    }

    fn opendir<S: ReplySink>(&self, _: &RequestHeader, op: op::Opendir<'_>, reply: ReplyOpen<S>) {
        match op.ino() {
            FUSE_ROOT_ID | SMALL_INO => reply.opened(0, 0),
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
            files: self.files + 3,
            bsize: 4096,
            frsize: 4096,
            namelen: 255,
            ..Default::default()
        })
    }
}

/// Served with the defaults: no single-file root, no kernel passthrough.
impl Served for FloorFs {}

/// `fuselage-bench --floor-server mount [fuselage mount options] --source floor:B:F:S MNT`:
/// serves the floor until unmounted.
pub fn serve(args: impl IntoIterator<Item = String>) -> ExitCode {
    fuselage::log::init_from_env();
    let args = match cli::parse(args) {
        Ok(Command::Mount(args)) => args,
        Ok(_) => {
            eprintln!(
                "usage: fuselage-bench {FLOOR_ARG} mount --source {SCHEME}BIG:FILES:SMALL [OPTIONS] MOUNTPOINT"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("fuselage-bench {FLOOR_ARG}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut registry = Registry::new();
    registry.register("floor", |spec| {
        let source = spec.source_str()?;
        source.strip_prefix(SCHEME)?;
        Some(
            FloorFs::from_spec(source)
                .map(|fs| Backend::new("floor", fs))
                .ok_or_else(|| {
                    format!("--source {source}: expected {SCHEME}BIG:FILES:SMALL (numbers)").into()
                }),
        )
    });
    match registry.serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fuselage-bench {FLOOR_ARG}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::small_name;

    #[test]
    fn small_names_round_trip() {
        let mut buf = [0u8; 24];
        for i in [0u64, 7, 123_456, 999_999, 1_000_000, 12_345_678] {
            let len = small_name_into(i, &mut buf);
            assert_eq!(&buf[..len], small_name(i as usize).as_bytes());
            assert_eq!(small_index(&buf[..len]), Some(i));
        }
        for bad in [
            &b"f12"[..],
            b"f0000001",
            b"g000001",
            b"f",
            b"f00000x",
            b"big.bin",
        ] {
            assert_eq!(small_index(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn spec_round_trip() {
        let fs = FloorFs::from_spec(&source_spec(1 << 30, 10_000, 4096)).unwrap();
        assert_eq!(
            (fs.big_bytes, fs.files, fs.small_bytes),
            (1 << 30, 10_000, 4096)
        );
        assert_eq!(fs.attr(FIRST_FILE_INO + 9_999).map(|a| a.size), Some(4096));
        assert!(fs.attr(FIRST_FILE_INO + 10_000).is_none());
        assert!(FloorFs::from_spec("floor:1:2").is_none());
    }
}
