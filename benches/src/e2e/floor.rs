//! The floor: a trivial filesystem served through fuselage's own transports, so its figures
//! are the best a FUSE round trip can do on this machine.
//!
//! It serves the data set's shape with nothing behind it: `big.bin` (reads answered with zeros
//! from a static buffer), `small/` (a flat directory of the small files' names, constant
//! attributes), both read-only, and a writable area for the write workloads: directories,
//! regular files, symlinks and hard links made in the root (or below) are names, sizes and
//! link targets only, their data is dropped as it arrives (WRITE answers at once with the
//! full count) and SETATTR changes nothing but a size, so `seqwrite`, `create-unlink` and
//! `tar-x` measure the round trips of their requests with no work behind them.
//! FLUSH and FSYNC are answered (as fuselage's passthrough does), so the kernel sends the same
//! requests as there. Entry and attribute timeouts are those of fuselage's passthrough (1 s, no
//! negative entries), so a cold `lstat` is one LOOKUP of the file, as it is there.
//! `fuselage-bench --floor-server mount --source floor:BIG:FILES:SMALL ...` serves it with the
//! `fuselage mount` machinery (a [`Registry`] claim), on any `--transport`.

use crate::source::{BIG, SMALL};
use fuselage::cli::{self, Command};
use fuselage::core::abi::{FUSE_ROOT_ID, fuse_attr, fuse_entry_out, fuse_kstatfs};
use fuselage::core::dirent::{DirentError, dtype};
use fuselage::core::reply::{
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, entry_out,
};
use fuselage::core::{Errno, Filesystem, ReplySink, RequestHeader, op};
use fuselage::registry::{Backend, Registry};
use fuselage::serve::Served;
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
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
    made: Mutex<Made>,
}

/// The writable area: what was made in the root or below it, names, sizes and link
/// targets only.
#[derive(Debug, Default)]
struct Made {
    /// The next inode number to hand out.
    next_ino: u64,
    /// Directory (the root or a made one) -> its made entries.
    dirs: HashMap<u64, MadeDir>,
    /// The next directory offset to hand out (1 and 2 are the dots').
    next_cookie: u64,
    /// Inode -> what it is.
    nodes: HashMap<u64, MadeNode>,
    /// Symlink inode -> its target.
    targets: HashMap<u64, Box<[u8]>>,
}

/// The made entries of a directory.
#[derive(Debug, Default)]
struct MadeDir {
    /// Name -> (inode, offset).
    by_name: HashMap<Arc<[u8]>, (u64, u64)>,
    /// Offset -> (name, inode): the listing order, stable while entries go (a
    /// `remove_dir_all` unlinks as it reads).
    by_cookie: BTreeMap<u64, (Arc<[u8]>, u64)>,
}

impl Made {
    /// The inode of `dir/name`, if made.
    fn entry(&self, dir: u64, name: &[u8]) -> Option<u64> {
        Some(self.dirs.get(&dir)?.by_name.get(name)?.0)
    }

    /// Enters `dir/name` -> `ino` at the end of the directory's listing.
    fn insert(&mut self, dir: u64, name: &[u8], ino: u64) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let name: Arc<[u8]> = name.into();
        let d = self.dirs.entry(dir).or_default();
        d.by_name.insert(name.clone(), (ino, cookie));
        d.by_cookie.insert(cookie, (name, ino));
    }

    /// Takes the name `dir/name` away (the inode stays).
    fn remove(&mut self, dir: u64, name: &[u8]) {
        if let Some(d) = self.dirs.get_mut(&dir)
            && let Some((_, cookie)) = d.by_name.remove(name)
        {
            d.by_cookie.remove(&cookie);
        }
    }
}

/// What a made inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
}

/// A directory, regular file or symlink of the writable area.
#[derive(Debug, Clone, Copy)]
struct MadeNode {
    kind: Kind,
    /// A file's size (the end of its furthest WRITE, or what SETATTR set), a symlink's
    /// target length.
    size: u64,
    /// Names of a file or symlink (LINK adds one, UNLINK takes one away).
    nlink: u32,
}

impl MadeNode {
    /// Whether it is a directory.
    fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
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
            made: Mutex::new(Made {
                next_ino: FIRST_FILE_INO + files,
                next_cookie: 3,
                ..Made::default()
            }),
        })
    }

    fn made(&self) -> MutexGuard<'_, Made> {
        self.made.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The attributes of a made inode.
    fn made_attr(&self, ino: u64, node: MadeNode) -> fuse_attr {
        let (mode, nlink) = match node.kind {
            Kind::Dir => (libc::S_IFDIR | 0o755, 2),
            Kind::File => (libc::S_IFREG | 0o644, node.nlink),
            Kind::Symlink => (libc::S_IFLNK | 0o777, node.nlink),
        };
        self.attr_of(ino, mode, node.size, nlink)
    }

    /// The attributes of inode `ino`, owned by the server's user.
    fn attr_of(&self, ino: u64, mode: u32, size: u64, nlink: u32) -> fuse_attr {
        fuse_attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            mode,
            nlink,
            uid: self.uid,
            gid: self.gid,
            blksize: 4096,
            ..Default::default()
        }
    }

    /// Attributes of any inode, static or made.
    fn any_attr(&self, ino: u64) -> Option<fuse_attr> {
        self.attr(ino).or_else(|| {
            let node = *self.made().nodes.get(&ino)?;
            Some(self.made_attr(ino, node))
        })
    }

    /// Whether new entries may go in `parent`: the root or a made directory.
    fn writable_dir(made: &Made, parent: u64) -> Result<(), Errno> {
        match made.nodes.get(&parent) {
            Some(node) if node.is_dir() => Ok(()),
            Some(_) => Err(Errno::ENOTDIR),
            None if parent == FUSE_ROOT_ID => Ok(()),
            None if parent == SMALL_INO => Err(Errno::EROFS),
            None => Err(Errno::ENOTDIR),
        }
    }

    /// Makes `parent/name` (a symlink to `target`); returns its entry.
    fn make(
        &self,
        parent: u64,
        name: &[u8],
        kind: Kind,
        target: &[u8],
    ) -> Result<fuse_entry_out, Errno> {
        if parent == FUSE_ROOT_ID && (name == BIG.as_bytes() || name == SMALL.as_bytes()) {
            return Err(Errno::EEXIST);
        }
        let mut made = self.made();
        Self::writable_dir(&made, parent)?;
        if made.entry(parent, name).is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = made.next_ino;
        made.next_ino += 1;
        let node = MadeNode {
            kind,
            size: target.len() as u64,
            nlink: 1,
        };
        made.insert(parent, name, ino);
        made.nodes.insert(ino, node);
        if kind == Kind::Symlink {
            made.targets.insert(ino, target.into());
        }
        drop(made);
        Ok(entry_out(self.made_attr(ino, node), 0, TTL, TTL))
    }

    /// Removes `parent/name` (a directory only if `dir`, and only if empty).
    fn remove(&self, parent: u64, name: &[u8], dir: bool) -> Result<(), Errno> {
        let data_set = parent == SMALL_INO
            || (parent == FUSE_ROOT_ID && (name == BIG.as_bytes() || name == SMALL.as_bytes()));
        if data_set {
            return Err(Errno::EROFS);
        }
        let mut made = self.made();
        let Some(ino) = made.entry(parent, name) else {
            return Err(Errno::ENOENT);
        };
        let node = made.nodes[&ino];
        match (dir, node.is_dir()) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            _ => {}
        }
        if node.is_dir() && Self::children(&made, ino, 0).next().is_some() {
            return Err(Errno::ENOTEMPTY);
        }
        made.remove(parent, name);
        if let Some(n) = made.nodes.get_mut(&ino) {
            n.nlink = n.nlink.saturating_sub(1);
        }
        // The node stays: an open file may still be written, fsynced, released.
        Ok(())
    }

    /// Adds the name `parent/name` for made file or symlink `ino`; returns its entry.
    fn link_made(&self, ino: u64, parent: u64, name: &[u8]) -> Result<fuse_entry_out, Errno> {
        let mut made = self.made();
        Self::writable_dir(&made, parent)?;
        let node = match made.nodes.get(&ino) {
            Some(n) if n.is_dir() => return Err(Errno::EPERM),
            Some(n) => *n,
            None => return Err(Errno::EROFS),
        };
        let exists = parent == FUSE_ROOT_ID && (name == BIG.as_bytes() || name == SMALL.as_bytes());
        if exists || made.entry(parent, name).is_some() {
            return Err(Errno::EEXIST);
        }
        made.insert(parent, name, ino);
        let node = MadeNode {
            nlink: node.nlink + 1,
            ..node
        };
        made.nodes.insert(ino, node);
        drop(made);
        Ok(entry_out(self.made_attr(ino, node), 0, TTL, TTL))
    }

    /// The entries of made directory (or root) `dir` after offset `after`, in the
    /// order they were made: (offset, name, inode).
    fn children(made: &Made, dir: u64, after: u64) -> impl Iterator<Item = (u64, &[u8], u64)> {
        made.dirs
            .get(&dir)
            .into_iter()
            .flat_map(move |d| d.by_cookie.range(after.saturating_add(1)..))
            .map(|(cookie, (name, ino))| (*cookie, &name[..], *ino))
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
        Some(self.attr_of(ino, mode, size, nlink))
    }

    fn size_of(&self, ino: u64) -> Option<u64> {
        match ino {
            BIG_INO => Some(self.big_bytes),
            i if i >= FIRST_FILE_INO && i - FIRST_FILE_INO < self.files => Some(self.small_bytes),
            _ => None,
        }
    }

    /// READDIR or READDIRPLUS of the root or `small/` from entry `offset` on.
    /// What was made in the root is not listed there (no workload lists the root);
    /// made directories list their own entries ([`FloorFs::list_made`]).
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
                _ => return self.list_made(ino, offset, plus, reply),
            };
            let attr = self.attr(child);
            if push_entry(&mut reply, plus, child, attr, at + 1, typ, &name[..len]).is_err() {
                break;
            }
            at += 1;
        }
        reply.ok()
    }
}

impl FloorFs {
    /// READDIR or READDIRPLUS of a made directory from entry `offset` on (the cleanup's
    /// `remove_dir_all`; never timed).
    fn list_made<S: ReplySink>(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        let made = self.made();
        if !made.nodes.get(&ino).is_some_and(|n| n.is_dir()) {
            return reply.error(Errno::ENOTDIR);
        }
        // The kernel takes neither dot's inode from a listing: ".." may name the root.
        let dots = [(1, &b"."[..], ino), (2, &b".."[..], FUSE_ROOT_ID)];
        let entries = dots
            .into_iter()
            .filter(|(cookie, _, _)| *cookie > offset)
            .chain(Self::children(&made, ino, offset));
        for (cookie, name, child) in entries {
            let node = made.nodes.get(&child).copied();
            let typ = match node.map(|n| n.kind) {
                Some(Kind::File) => dtype::REG,
                Some(Kind::Symlink) => dtype::LNK,
                _ => dtype::DIR,
            };
            // Every entry of a READDIRPLUS answer is a direntplus, the dots too (the
            // kernel skips them, but a plain dirent among them garbles the rest).
            let attr = match node {
                Some(n) => Some(self.made_attr(child, n)),
                None => self.attr(child),
            };
            if push_entry(&mut reply, plus, child, attr, cookie, typ, name).is_err() {
                break;
            }
        }
        reply.ok()
    }
}

/// Adds `name` (inode `child`, attributes `attr` if known) to a listing: a direntplus
/// in a READDIRPLUS answer, a dirent otherwise.
fn push_entry<S: ReplySink>(
    reply: &mut ReplyDirectory<'_, S>,
    plus: bool,
    child: u64,
    attr: Option<fuse_attr>,
    next_offset: u64,
    typ: u32,
    name: &[u8],
) -> Result<(), DirentError> {
    match (plus, attr) {
        (true, Some(attr)) => {
            reply.push_plus(&entry_out(attr, 0, TTL, TTL), next_offset, typ, name)
        }
        _ => reply.push(child, next_offset, typ, name),
    }
}

impl Filesystem for FloorFs {
    fn lookup<S: ReplySink>(&self, _: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let name = op.name().to_bytes();
        let ino = match op.parent() {
            FUSE_ROOT_ID if name == BIG.as_bytes() => Some(BIG_INO),
            FUSE_ROOT_ID if name == SMALL.as_bytes() => Some(SMALL_INO),
            SMALL_INO => small_index(name)
                .filter(|i| *i < self.files)
                .map(|i| FIRST_FILE_INO + i),
            parent => {
                let made = self.made();
                if let Err(e) = Self::writable_dir(&made, parent) {
                    drop(made);
                    return reply.error(e);
                }
                let attr = made
                    .entry(parent, name)
                    .and_then(|i| Some(self.made_attr(i, *made.nodes.get(&i)?)));
                drop(made);
                return match attr {
                    Some(attr) => reply.entry(&entry_out(attr, 0, TTL, TTL)),
                    None => reply.negative(Duration::ZERO),
                };
            }
        };
        match ino.and_then(|i| self.attr(i)) {
            // Static inodes: lookup counts need no tracking.
            Some(attr) => reply.entry(&entry_out(attr, 0, TTL, TTL)),
            None => reply.negative(Duration::ZERO),
        }
    }

    fn getattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        match self.any_attr(op.ino()) {
            Some(attr) => reply.attr(TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// Made files take a new size (truncate, extend); other changes are accepted and
    /// forgotten. The data set is read-only.
    fn setattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Setattr<'_>, reply: ReplyAttr<S>) {
        let mut made = self.made();
        let Some(node) = made.nodes.get_mut(&op.ino()) else {
            drop(made);
            return reply.error(Errno::EROFS);
        };
        if let Some(size) = op.attr().size {
            if node.kind != Kind::File {
                drop(made);
                return reply.error(Errno::EISDIR);
            }
            node.size = size;
        }
        let node = *node;
        drop(made);
        reply.attr(TTL, &self.made_attr(op.ino(), node))
    }

    fn mkdir<S: ReplySink>(&self, _: &RequestHeader, op: op::Mkdir<'_>, reply: ReplyEntry<S>) {
        match self.make(op.parent(), op.name().to_bytes(), Kind::Dir, b"") {
            Ok(entry) => reply.entry(&entry),
            Err(e) => reply.error(e),
        }
    }

    fn symlink<S: ReplySink>(&self, _: &RequestHeader, op: op::Symlink<'_>, reply: ReplyEntry<S>) {
        let target = op.target().to_bytes();
        match self.make(op.parent(), op.name().to_bytes(), Kind::Symlink, target) {
            Ok(entry) => reply.entry(&entry),
            Err(e) => reply.error(e),
        }
    }

    fn readlink<S: ReplySink>(&self, _: &RequestHeader, op: op::Readlink, reply: ReplyData<S>) {
        let made = self.made();
        match made.targets.get(&op.ino()) {
            Some(target) => reply.data(target),
            None => reply.error(Errno::EINVAL),
        }
    }

    fn link<S: ReplySink>(&self, _: &RequestHeader, op: op::Link<'_>, reply: ReplyEntry<S>) {
        match self.link_made(op.ino(), op.newparent(), op.newname().to_bytes()) {
            Ok(entry) => reply.entry(&entry),
            Err(e) => reply.error(e),
        }
    }

    fn create<S: ReplySink>(&self, _: &RequestHeader, op: op::Create<'_>, reply: ReplyCreate<S>) {
        if op.mode() & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match self.make(op.parent(), op.name().to_bytes(), Kind::File, b"") {
            Ok(entry) => reply.created(&entry, 0, 0),
            Err(e) => reply.error(e),
        }
    }

    fn unlink<S: ReplySink>(&self, _: &RequestHeader, op: op::Unlink<'_>, reply: ReplyEmpty<S>) {
        match self.remove(op.parent(), op.name().to_bytes(), false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir<S: ReplySink>(&self, _: &RequestHeader, op: op::Rmdir<'_>, reply: ReplyEmpty<S>) {
        match self.remove(op.parent(), op.name().to_bytes(), true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// Drops the data and answers with the full count.
    fn write<S: ReplySink>(&self, _: &RequestHeader, op: op::Write<'_>, reply: ReplyWrite<S>) {
        let len = op.data().len();
        let mut made = self.made();
        match made.nodes.get_mut(&op.ino()) {
            Some(node) if node.kind == Kind::File => {
                node.size = node.size.max(op.offset().saturating_add(len as u64));
                drop(made);
                reply.written(len as u32)
            }
            _ => {
                drop(made);
                reply.error(Errno::EBADF)
            }
        }
    }

    fn fsync<S: ReplySink>(&self, _: &RequestHeader, _: op::Fsync<'_>, reply: ReplyEmpty<S>) {
        reply.ok()
    }

    fn open<S: ReplySink>(&self, _: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        if self.size_of(op.ino()).is_some() {
            return if op.flags() & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
                reply.error(Errno::EROFS)
            } else {
                reply.opened(0, 0)
            };
        }
        let kind = self.made().nodes.get(&op.ino()).map(|n| n.kind);
        match kind {
            Some(Kind::File) => reply.opened(0, 0),
            Some(Kind::Symlink) => reply.error(Errno::ELOOP),
            Some(Kind::Dir) | None => reply.error(Errno::EISDIR),
        }
    }

    fn read<S: ReplySink>(&self, _: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        // The data set's reads take no lock.
        let size = self.size_of(op.ino()).or_else(|| {
            let made = self.made();
            made.nodes
                .get(&op.ino())
                .filter(|n| n.kind == Kind::File)
                .map(|n| n.size)
        });
        let Some(size) = size else {
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
            ino if self.made().nodes.get(&ino).is_some_and(|n| n.is_dir()) => reply.opened(0, 0),
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

    #[test]
    fn made_names_and_sizes() {
        let fs = FloorFs::from_spec(&source_spec(1 << 20, 10, 4096)).unwrap();
        let first = FIRST_FILE_INO + 10;
        let dir = fs.make(FUSE_ROOT_ID, b"scratch", Kind::Dir, b"").unwrap();
        assert_eq!(dir.nodeid, first);
        assert_eq!(dir.attr.mode, libc::S_IFDIR | 0o755);
        let file = fs.make(first, b"a", Kind::File, b"").unwrap();
        assert_eq!(file.attr.mode, libc::S_IFREG | 0o644);
        assert_eq!(
            fs.make(first, b"a", Kind::File, b"").unwrap_err(),
            Errno::EEXIST
        );
        assert_eq!(
            fs.make(FUSE_ROOT_ID, b"big.bin", Kind::File, b"")
                .unwrap_err(),
            Errno::EEXIST
        );
        assert_eq!(
            fs.make(SMALL_INO, b"x", Kind::File, b"").unwrap_err(),
            Errno::EROFS
        );
        assert_eq!(
            fs.make(file.nodeid, b"x", Kind::File, b"").unwrap_err(),
            Errno::ENOTDIR
        );
        let names: Vec<_> = FloorFs::children(&fs.made(), first, 0)
            .map(|(_, name, ino)| (name.to_vec(), ino))
            .collect();
        assert_eq!(names, [(b"a".to_vec(), file.nodeid)]);

        assert_eq!(
            fs.remove(FUSE_ROOT_ID, b"scratch", true).unwrap_err(),
            Errno::ENOTEMPTY
        );
        assert_eq!(fs.remove(first, b"a", true).unwrap_err(), Errno::ENOTDIR);
        assert_eq!(
            fs.remove(FUSE_ROOT_ID, b"scratch", false).unwrap_err(),
            Errno::EISDIR
        );
        assert_eq!(
            fs.remove(SMALL_INO, b"f000001", false).unwrap_err(),
            Errno::EROFS
        );
        assert_eq!(
            fs.remove(FUSE_ROOT_ID, b"small", true).unwrap_err(),
            Errno::EROFS
        );
        assert_eq!(fs.remove(first, b"nope", false).unwrap_err(), Errno::ENOENT);
        let link = fs.make(first, b"l", Kind::Symlink, b"a").unwrap();
        assert_eq!(link.attr.mode, libc::S_IFLNK | 0o777);
        assert_eq!(link.attr.size, 1);
        assert_eq!(&fs.made().targets[&link.nodeid][..], b"a");
        // Offsets stay put while entries go: the listing goes on after the last one read.
        let listed = |after| -> Vec<Vec<u8>> {
            FloorFs::children(&fs.made(), first, after)
                .map(|(_, name, _)| name.to_vec())
                .collect()
        };
        assert_eq!(listed(0), [b"a".to_vec(), b"l".to_vec()]);
        let hard = fs.link_made(file.nodeid, first, b"b").unwrap();
        assert_eq!((hard.nodeid, hard.attr.nlink), (file.nodeid, 2));
        assert_eq!(
            fs.link_made(first, FUSE_ROOT_ID, b"d").unwrap_err(),
            Errno::EPERM
        );
        assert_eq!(
            fs.link_made(file.nodeid, first, b"l").unwrap_err(),
            Errno::EEXIST
        );
        let after_a = FloorFs::children(&fs.made(), first, 0).next().unwrap().0;
        fs.remove(first, b"a", false).unwrap();
        assert_eq!(listed(after_a), [b"l".to_vec(), b"b".to_vec()]);
        assert_eq!(listed(0), [b"l".to_vec(), b"b".to_vec()]);
        fs.remove(first, b"b", false).unwrap();
        fs.remove(first, b"l", false).unwrap();
        // An unlinked file keeps its node (an open descriptor may still use it).
        assert!(fs.any_attr(file.nodeid).is_some());
        fs.remove(FUSE_ROOT_ID, b"scratch", true).unwrap();
        assert_eq!(FloorFs::children(&fs.made(), FUSE_ROOT_ID, 0).count(), 0);
    }
}
