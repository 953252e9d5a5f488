//! The `dispatch` target.
//!
//! Input layout:
//!
//! ```text
//! [flags: u8][init_mode: u8] then messages, each
//!     [ctl: u8][mode: u8][len: u16 LE][len bytes]
//! ```
//!
//! `init_mode` steers `Filesystem::init` (refuse; ask for passthrough,
//! io_uring, odd `max_pages` / `max_write`, a request timeout, every flag).
//! `flags`: bit 0 sends a valid INIT first (so post-INIT paths are reached),
//! bits 1..=3 pick its protocol minor, bit 4 makes the dispatcher read-only,
//! bits 5..=7 pick the size of the scratch buffer lent to READDIR(PLUS).
//!
//! `ctl` (per message): bit 0 patches `fuse_in_header::len` to the real
//! length, bit 1 delivers through `dispatch_segments` (header / argument
//! struct / payload split as a ring entry does), bit 2 passes the ring's
//! whole 128-byte header area. `mode` steers how the filesystem answers
//! (success, error, dropped handle, or an alternative answer).
//!
//! The sink checks every reply: the out-header `len` equals the bytes of the
//! parts plus the file range, `unique` is the request's, errors are
//! header-only and in the kernel's accepted range, success bodies have the
//! size the opcode's reply struct has, READDIR(PLUS) bodies are well formed
//! and no larger than asked, no reply for FORGET / BATCH_FORGET / INTERRUPT /
//! NOTIFY_REPLY, and exactly one reply for every other request whose header
//! can be trusted (none for one that cannot, nor for unique 0).

use fuselage_testkit::AlignedBuf;
use core::cell::{Cell, RefCell};
use core::time::Duration;
use fuselage_core::DirentError;
use fuselage_core::abi::*;
use fuselage_core::dirent::dtype;
use fuselage_core::filesystem::{Filesystem, RequestHeader};
use fuselage_core::op;
use fuselage_core::reply::*;
use fuselage_core::request::arg_size;
use fuselage_core::{
    Dispatched, Dispatcher, Errno, InitConfig, InitFlags, KernelInit, Negotiated, Opcode,
    ParseContext,
};
use std::os::fd::AsFd;
use zerocopy::{FromBytes, IntoBytes};

const IN_HEADER: usize = fuselage_core::IN_HEADER_LEN;
const OUT_HEADER: usize = fuselage_core::OUT_HEADER_LEN;

/// Opcodes the kernel never expects an answer to (raw numbers, independent
/// of `Opcode::is_no_reply`).
fn no_reply(opcode: u32) -> bool {
    matches!(
        opcode,
        FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT | FUSE_NOTIFY_REPLY
    )
}

/// What the checker knows about the request being dispatched.
#[derive(Default)]
struct Current {
    unique: u64,
    opcode: u32,
    /// Whether the header can be trusted enough to answer.
    trusted: bool,
    /// READDIR(PLUS): the size the kernel asked for.
    dir_size: usize,
    replies: u32,
}

/// A sink that checks every reply it is given.
#[derive(Default)]
pub struct Checker {
    cur: RefCell<Current>,
    body: RefCell<Vec<u8>>,
    scratch_len: Cell<usize>,
    /// Replies checked over the whole input (for debugging).
    pub total_replies: Cell<u64>,
}

impl Checker {
    fn check(&self, parts: &[&[u8]], file_len: Option<u32>) {
        let mut cur = self.cur.borrow_mut();
        assert!(cur.trusted, "reply to a message whose header is untrusted");
        assert!(
            !no_reply(cur.opcode),
            "reply to no-reply opcode {}",
            cur.opcode
        );
        cur.replies += 1;
        assert_eq!(cur.replies, 1, "second reply to unique {}", cur.unique);
        self.total_replies.set(self.total_replies.get() + 1);

        let first = parts.first().expect("reply without parts");
        assert!(first.len() >= OUT_HEADER, "first part shorter than header");
        let (h, _) = fuse_out_header::read_from_prefix(first).unwrap();
        let total: usize =
            parts.iter().map(|p| p.len()).sum::<usize>() + file_len.map_or(0, |l| l as usize);
        assert_eq!(h.len as usize, total, "out-header len != bytes sent");
        assert_eq!(h.unique, cur.unique, "reply unique != request unique");

        if h.error != 0 {
            assert!(
                h.error < 0 && h.error > -512,
                "error {} outside what the kernel accepts",
                h.error
            );
            assert_eq!(total, OUT_HEADER, "error reply with a body");
            return;
        }

        // Success: the body must have the opcode's reply size.
        let mut body = self.body.borrow_mut();
        body.clear();
        body.extend_from_slice(&first[OUT_HEADER..]);
        for p in &parts[1..] {
            body.extend_from_slice(p);
        }
        let body_len = body.len() + file_len.map_or(0, |l| l as usize);
        let sz = core::mem::size_of::<fuse_entry_out>();
        let expect: Option<&[usize]> = match cur.opcode {
            FUSE_LOOKUP | FUSE_MKNOD | FUSE_MKDIR | FUSE_SYMLINK | FUSE_LINK => Some(&[sz]),
            FUSE_GETATTR | FUSE_SETATTR => Some(&[104]),
            FUSE_OPEN | FUSE_OPENDIR => Some(&[16]),
            FUSE_CREATE | FUSE_TMPFILE => Some(&[sz + 16]),
            FUSE_WRITE
            | FUSE_COPY_FILE_RANGE
            | FUSE_COPY_FILE_RANGE_64
            | FUSE_BMAP
            | FUSE_LSEEK
            | FUSE_POLL => Some(&[8]),
            FUSE_STATFS => Some(&[80]),
            FUSE_GETLK => Some(&[24]),
            FUSE_STATX => Some(&[core::mem::size_of::<fuse_statx_out>()]),
            FUSE_INIT => Some(&[8, 24, 64]),
            FUSE_UNLINK | FUSE_RMDIR | FUSE_RENAME | FUSE_RENAME2 | FUSE_RELEASE
            | FUSE_RELEASEDIR | FUSE_FSYNC | FUSE_FSYNCDIR | FUSE_FLUSH | FUSE_SETXATTR
            | FUSE_REMOVEXATTR | FUSE_ACCESS | FUSE_SETLK | FUSE_SETLKW | FUSE_FALLOCATE
            | FUSE_SYNCFS | FUSE_SETUPMAPPING | FUSE_REMOVEMAPPING | FUSE_DESTROY => Some(&[0]),
            _ => None,
        };
        if let Some(sizes) = expect {
            assert!(
                sizes.contains(&body_len),
                "opcode {} answered with a {body_len}-byte body",
                cur.opcode
            );
        }
        match cur.opcode {
            FUSE_READDIR => check_dirents(&body, false, cur.dir_size, self.scratch_len.get()),
            FUSE_READDIRPLUS => check_dirents(&body, true, cur.dir_size, self.scratch_len.get()),
            FUSE_IOCTL => {
                assert!(body_len >= 16, "ioctl reply without fuse_ioctl_out");
                let (out, rest) = fuse_ioctl_out::read_from_prefix(&body[..]).unwrap();
                if out.flags & FUSE_IOCTL_RETRY != 0 {
                    let n = (out.in_iovs + out.out_iovs) as usize;
                    assert_eq!(rest.len(), n * 16, "ioctl retry iovec count");
                }
            }
            _ => {}
        }
    }
}

fn check_dirents(body: &[u8], plus: bool, asked: usize, scratch: usize) {
    assert!(
        body.len() <= asked,
        "{} dirent bytes for {asked} asked",
        body.len()
    );
    assert!(
        body.len() <= scratch,
        "dirents longer than the scratch buffer"
    );
    let mut at = 0;
    while at < body.len() {
        let mut rec = at;
        if plus {
            assert!(body.len() - rec >= 128 + 24, "truncated direntplus");
            let (e, _) = fuse_entry_out::read_from_prefix(&body[rec..]).unwrap();
            rec += 128;
            let (d, _) = fuse_dirent::read_from_prefix(&body[rec..]).unwrap();
            assert_eq!(d.ino, e.attr.ino, "direntplus ino != attr.ino");
        }
        assert!(body.len() - rec >= 24, "truncated dirent");
        let (d, _) = fuse_dirent::read_from_prefix(&body[rec..]).unwrap();
        let n = d.namelen as usize;
        assert!((1..=1024).contains(&n), "dirent namelen {n}");
        let size = (24 + n + 7) & !7;
        assert!(body.len() - rec >= size, "dirent overruns the reply");
        let name = &body[rec + 24..rec + 24 + n];
        assert!(!name.contains(&0), "NUL in dirent name");
        assert!(
            body[rec + 24 + n..rec + size].iter().all(|&b| b == 0),
            "dirent padding not zeroed"
        );
        at = rec + size;
    }
    assert_eq!(at, body.len());
}

impl ReplySink for Checker {
    fn send(&self, parts: &[&[u8]]) {
        self.check(parts, None)
    }
    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        self.check(parts, Some(file.len))
    }
}

/// A filesystem whose every method answers something plausible, steered by
/// the message's `mode` byte.
#[derive(Default)]
pub struct FuzzFs {
    mode: Cell<u32>,
    init_mode: Cell<u8>,
    forgets: Cell<u64>,
    destroyed: Cell<bool>,
    file: RefCell<Vec<u8>>,
}

static DATA: [u8; 8192] = {
    let mut d = [0u8; 8192];
    let mut i = 0;
    while i < d.len() {
        d[i] = (i * 31 % 251) as u8;
        i += 1;
    }
    d
};

static LONG_NAME: [u8; 1025] = [b'n'; 1025];

const TTL: Duration = Duration::from_millis(1500);

fn attr(ino: u64) -> fuse_attr {
    fuse_attr {
        ino,
        size: 4096,
        blocks: 8,
        mode: if ino == FUSE_ROOT_ID {
            0o040_755
        } else {
            0o100_644
        },
        nlink: 1,
        blksize: 4096,
        ..Default::default()
    }
}

fn entry(ino: u64) -> fuse_entry_out {
    entry_out(attr(ino), 1, TTL, TTL)
}

/// Whether a handle is answered, errored, dropped, or answered the other way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Answer,
    Error,
    Drop,
    Alt,
}

impl FuzzFs {
    fn way(&self) -> Way {
        let m = self.mode.get();
        self.mode.set(m.rotate_right(2));
        match m & 3 {
            0 => Way::Answer,
            1 => Way::Error,
            2 => Way::Drop,
            _ => Way::Alt,
        }
    }

    fn n(&self, max: u32) -> u32 {
        let m = self.mode.get();
        self.mode.set(m.rotate_right(5) ^ 0x9E37_79B9);
        m % max.max(1)
    }

    fn empty<S: ReplySink>(&self, reply: ReplyEmpty<S>) {
        match self.way() {
            Way::Answer | Way::Alt => reply.ok(),
            Way::Error => reply.error(Errno::EACCES),
            Way::Drop => drop(reply),
        }
    }

    fn entry_reply<S: ReplySink>(&self, ino: u64, reply: ReplyEntry<S>) {
        match self.way() {
            Way::Answer => reply.entry(&entry(ino)),
            Way::Error => reply.error(Errno::ENOENT),
            Way::Drop => drop(reply),
            Way::Alt => reply.negative(TTL),
        }
    }

    fn create_reply<S: ReplySink>(&self, ino: u64, reply: ReplyCreate<S>) {
        match self.way() {
            Way::Answer => reply.created(&entry(ino), 7, FOPEN_KEEP_CACHE),
            Way::Error => reply.error(Errno::EEXIST),
            Way::Drop => drop(reply),
            Way::Alt => reply.created_passthrough(&entry(ino), 7, 0, 3),
        }
    }

    fn dir<S: ReplySink>(&self, offset: u64, plus: bool, mut reply: ReplyDirectory<'_, S>) {
        match self.way() {
            Way::Error => return reply.error(Errno::ENOTDIR),
            Way::Drop => return drop(reply),
            Way::Alt => {
                // Entries packed elsewhere (a deferred worker); empty or a
                // single valid record.
                if self.n(2) == 0 {
                    return reply.packed(&[]);
                }
                let mut raw = [0u8; 64];
                let mut b = fuselage_core::DirentBuf::new(&mut raw, 64);
                assert_eq!(b.push(2, 1, dtype::REG, b"x"), Ok(()));
                if plus {
                    // A READDIRPLUS reply must be direntplus records.
                    return reply.error(Errno::EIO);
                }
                // `packed` does not check the kernel's size: a filesystem
                // must (the lent buffer's capacity is that size).
                if reply.buf().remaining() < b.len() {
                    return reply.packed(&[]);
                }
                let bytes = b.as_bytes().to_vec();
                return reply.packed(&bytes);
            }
            Way::Answer => {}
        }
        let names: [&[u8]; 8] = [
            b".",
            b"..",
            b"a",
            b"file-with-a-longer-name.txt",
            b"",
            &LONG_NAME[..1024],
            &LONG_NAME[..],
            b"12345678",
        ];
        let start = offset.min(1 << 20);
        for i in 0..300u64 {
            let off = start + i;
            let name = names[(off % names.len() as u64) as usize];
            let valid = !name.is_empty() && name.len() <= 1024;
            let ino = off + 2;
            let pushed = if plus {
                reply.push_plus(&entry(ino), off + 1, dtype::REG, name)
            } else {
                reply.push(ino, off + 1, dtype::REG, name)
            };
            if !valid {
                assert_eq!(
                    pushed,
                    Err(DirentError::InvalidName),
                    "invalid name accepted by DirentBuf"
                );
                continue;
            }
            if pushed.is_err() {
                assert_eq!(pushed, Err(DirentError::Full));
                break;
            }
        }
        reply.ok()
    }
}

impl Filesystem for FuzzFs {
    fn init(&self, kernel: &KernelInit, config: &mut InitConfig) -> Result<(), Errno> {
        let m = self.init_mode.get();
        let _ = kernel.flags;
        if m & 0x80 != 0 {
            return Err(Errno::EPROTO);
        }
        if m & 1 != 0 {
            config.passthrough = Some(u32::from(m >> 4) & 3);
        }
        config.io_uring = m & 2 != 0;
        config.max_pages = u16::from(m) * 37;
        config.max_write = u32::from(m) << 12;
        config.request_timeout = u16::from(m & 4);
        if m & 8 != 0 {
            config.wanted = InitFlags::all();
        }
        Ok(())
    }

    fn init_done(&self, negotiated: &Negotiated) {
        assert_eq!(negotiated.major, 7);
        assert!(negotiated.minor <= FUSE_KERNEL_MINOR_VERSION);
        assert!(negotiated.minor >= 12);
        assert!(negotiated.max_write >= 4096);
        assert!(negotiated.request_buffer_size() >= 8192);
        assert!((negotiated.flags - negotiated.kernel_flags - InitFlags::INIT_EXT).is_empty());
    }

    fn destroy(&self) {
        self.destroyed.set(true);
    }

    fn lookup<S: ReplySink>(&self, _: &RequestHeader, op: op::Lookup<'_>, r: ReplyEntry<S>) {
        let (p, name) = (op.parent(), op.name());
        self.entry_reply(p.wrapping_add(name.count_bytes() as u64 + 1), r)
    }

    fn forget(&self, _: &RequestHeader, op: op::Forget) {
        let nlookup = op.nlookup();
        self.forgets.set(self.forgets.get().wrapping_add(nlookup));
    }

    fn getattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Getattr<'_>, r: ReplyAttr<S>) {
        let (ino, fh) = (op.ino(), op.fh());
        match self.way() {
            Way::Answer => r.attr(TTL, &attr(ino)),
            Way::Error => r.error(Errno::ENOENT),
            Way::Drop => drop(r),
            Way::Alt => r.attr(Duration::ZERO, &attr(fh.unwrap_or(ino))),
        }
    }

    fn setattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Setattr<'_>, r: ReplyAttr<S>) {
        let (ino, a) = (op.ino(), &op.attr());
        let mut at = attr(ino);
        if let Some(size) = a.size {
            at.size = size;
        }
        if let Some(mode) = a.mode {
            at.mode = mode;
        }
        match self.way() {
            Way::Answer | Way::Alt => r.attr(TTL, &at),
            Way::Error => r.error(Errno::EPERM),
            Way::Drop => drop(r),
        }
    }

    fn readlink<S: ReplySink>(&self, _: &RequestHeader, _op: op::Readlink, r: ReplyData<S>) {
        match self.way() {
            Way::Answer => r.data(b"target"),
            Way::Error => r.error(Errno::EINVAL),
            Way::Drop => drop(r),
            Way::Alt => r.data_parts(&[b"tar", b"", b"get"]),
        }
    }

    fn symlink<S: ReplySink>(&self, _: &RequestHeader, op: op::Symlink<'_>, r: ReplyEntry<S>) {
        let (p, t) = (op.parent(), op.target());
        self.entry_reply(p.wrapping_add(t.count_bytes() as u64), r)
    }

    fn mknod<S: ReplySink>(&self, _: &RequestHeader, op: op::Mknod<'_>, r: ReplyEntry<S>) {
        let p = op.parent();
        self.entry_reply(p.wrapping_add(10), r)
    }

    fn mkdir<S: ReplySink>(&self, _: &RequestHeader, op: op::Mkdir<'_>, r: ReplyEntry<S>) {
        let p = op.parent();
        self.entry_reply(p.wrapping_add(11), r)
    }

    fn unlink<S: ReplySink>(&self, _: &RequestHeader, _op: op::Unlink<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn rmdir<S: ReplySink>(&self, _: &RequestHeader, _op: op::Rmdir<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn rename<S: ReplySink>(&self, _: &RequestHeader, _op: op::Rename<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn link<S: ReplySink>(&self, _: &RequestHeader, op: op::Link<'_>, r: ReplyEntry<S>) {
        let ino = op.ino();
        self.entry_reply(ino, r)
    }

    fn open<S: ReplySink>(&self, _: &RequestHeader, op: op::Open<'_>, r: ReplyOpen<S>) {
        let ino = op.ino();
        match self.way() {
            Way::Answer => r.opened(ino, FOPEN_KEEP_CACHE),
            Way::Error => r.error(Errno::EACCES),
            Way::Drop => drop(r),
            Way::Alt => r.opened_passthrough(ino, 0, 1),
        }
    }

    fn read<S: ReplySink>(&self, _: &RequestHeader, op: op::Read<'_>, r: ReplyData<S>) {
        let (offset, size) = (op.offset(), op.size());
        let start = (offset % DATA.len() as u64) as usize;
        let end = start + (size as usize).min(DATA.len() - start);
        match self.way() {
            Way::Answer => r.data(&DATA[start..end]),
            Way::Error => r.error(Errno::EIO),
            Way::Drop => drop(r),
            Way::Alt => match self.n(3) {
                // Any open descriptor: the checker never reads it.
                0 => r.file(FileRange::new(
                    std::io::stdin().as_fd(),
                    offset,
                    size.min(1 << 20),
                )),
                _ => {
                    // The data in up to MAX_REPLY_PARTS chunks.
                    let k = 1 + self.n(MAX_REPLY_PARTS as u32) as usize;
                    let d = &DATA[start..end];
                    let chunk = d.len().div_ceil(k).max(1);
                    let mut parts: [&[u8]; MAX_REPLY_PARTS] = [&[]; MAX_REPLY_PARTS];
                    let mut n = 0;
                    for c in d.chunks(chunk) {
                        parts[n] = c;
                        n += 1;
                    }
                    r.data_parts(&parts[..n.max(1).min(k)])
                }
            },
        }
    }

    fn write<S: ReplySink>(&self, _: &RequestHeader, op: op::Write<'_>, r: ReplyWrite<S>) {
        let (offset, data) = (op.offset(), op.data());
        match self.way() {
            Way::Answer | Way::Alt => {
                let mut f = self.file.borrow_mut();
                let off = (offset % 4096) as usize;
                let n = data.len().min(4096);
                if f.len() < off + n {
                    f.resize(off + n, 0);
                }
                f[off..off + n].copy_from_slice(&data[..n]);
                r.written(data.len() as u32)
            }
            Way::Error => r.error(Errno::ENOSPC),
            Way::Drop => drop(r),
        }
    }

    fn statfs<S: ReplySink>(&self, _: &RequestHeader, _op: op::Statfs, r: ReplyStatfs<S>) {
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::ENOSYS),
            _ => r.statfs(&fuse_kstatfs {
                blocks: 100,
                bsize: 4096,
                namelen: 255,
                frsize: 4096,
                ..Default::default()
            }),
        }
    }

    fn release<S: ReplySink>(&self, _: &RequestHeader, _op: op::Release<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn fsync<S: ReplySink>(&self, _: &RequestHeader, _op: op::Fsync<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn setxattr<S: ReplySink>(&self, _: &RequestHeader, _op: op::Setxattr<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn getxattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Getxattr<'_>, r: ReplyXattr<S>) {
        let size = op.size();
        let value = b"user.value";
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::ENODATA),
            _ if size == 0 => r.size(value.len() as u32),
            _ if (size as usize) < value.len() => r.error(Errno::ERANGE),
            _ => r.data(value),
        }
    }

    fn listxattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Listxattr<'_>, r: ReplyXattr<S>) {
        let size = op.size();
        let list = b"user.a\0user.b\0";
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::EOPNOTSUPP),
            _ if size == 0 => r.size(list.len() as u32),
            _ if (size as usize) < list.len() => r.error(Errno::ERANGE),
            _ => r.data(list),
        }
    }

    fn removexattr<S: ReplySink>(
        &self,
        _: &RequestHeader,
        _op: op::Removexattr<'_>,
        r: ReplyEmpty<S>,
    ) {
        self.empty(r)
    }

    fn flush<S: ReplySink>(&self, _: &RequestHeader, _op: op::Flush<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn opendir<S: ReplySink>(&self, _: &RequestHeader, op: op::Opendir<'_>, r: ReplyOpen<S>) {
        let ino = op.ino();
        match self.way() {
            Way::Answer | Way::Alt => r.opened(ino, FOPEN_CACHE_DIR),
            Way::Error => r.error(Errno::ENOTDIR),
            Way::Drop => drop(r),
        }
    }

    fn readdir<S: ReplySink>(
        &self,
        _: &RequestHeader,
        op: op::Readdir<'_>,
        r: ReplyDirectory<'_, S>,
    ) {
        let offset = op.offset();
        self.dir(offset, false, r)
    }

    fn readdirplus<S: ReplySink>(
        &self,
        _: &RequestHeader,
        op: op::Readdirplus<'_>,
        r: ReplyDirectory<'_, S>,
    ) {
        let offset = op.offset();
        self.dir(offset, true, r)
    }

    fn releasedir<S: ReplySink>(
        &self,
        _: &RequestHeader,
        _op: op::Releasedir<'_>,
        r: ReplyEmpty<S>,
    ) {
        self.empty(r)
    }

    fn fsyncdir<S: ReplySink>(&self, _: &RequestHeader, _op: op::Fsyncdir<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn getlk<S: ReplySink>(&self, _: &RequestHeader, op: op::Getlk<'_>, r: ReplyLock<S>) {
        let lock = op.lock();
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::ENOLCK),
            _ => r.lock(lock),
        }
    }

    fn setlk<S: ReplySink>(&self, _: &RequestHeader, _op: op::Setlk<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn access<S: ReplySink>(&self, _: &RequestHeader, _op: op::Access<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn create<S: ReplySink>(&self, _: &RequestHeader, op: op::Create<'_>, r: ReplyCreate<S>) {
        let p = op.parent();
        self.create_reply(p.wrapping_add(20), r)
    }

    fn interrupt(&self, _: &RequestHeader, _op: op::Interrupt<'_>) {}

    fn bmap<S: ReplySink>(&self, _: &RequestHeader, op: op::Bmap<'_>, r: ReplyBmap<S>) {
        let block = op.block();
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::EINVAL),
            _ => r.block(block),
        }
    }

    fn ioctl<S: ReplySink>(&self, _: &RequestHeader, op: op::Ioctl<'_>, r: ReplyIoctl<S>) {
        let (in_data, out_size) = (op.in_data(), op.out_size());
        match self.way() {
            Way::Answer => r.ioctl(0, &in_data[..in_data.len().min(out_size as usize)]),
            Way::Error => r.error(Errno::ENOTTY),
            Way::Drop => drop(r),
            Way::Alt => {
                let iov = [fuse_ioctl_iovec { base: 4096, len: 8 }; 3];
                let a = self.n(4) as usize;
                let b = self.n(4) as usize;
                r.retry(&iov[..a.min(3)], &iov[..b.min(3)])
            }
        }
    }

    fn poll<S: ReplySink>(&self, _: &RequestHeader, op: op::Poll<'_>, r: ReplyPoll<S>) {
        let events = op.events();
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::ENOSYS),
            _ => r.revents(events),
        }
    }

    fn notify_reply(&self, _: &RequestHeader, op: op::NotifyReply<'_>) {
        let data = op.data();
        let _ = data.len();
    }

    fn fallocate<S: ReplySink>(&self, _: &RequestHeader, _op: op::Fallocate<'_>, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn lseek<S: ReplySink>(&self, _: &RequestHeader, op: op::Lseek<'_>, r: ReplyLseek<S>) {
        let offset = op.offset();
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::ENXIO),
            _ => r.offset(offset),
        }
    }

    fn copy_file_range<S: ReplySink>(
        &self,
        _: &RequestHeader,
        op: op::CopyFileRange<'_>,
        r: ReplyCopyFormatted<S>,
    ) {
        let len = op.len();
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::EXDEV),
            _ => r.copied(len),
        }
    }

    fn setupmapping<S: ReplySink>(
        &self,
        _: &RequestHeader,
        _op: op::Setupmapping<'_>,
        r: ReplyEmpty<S>,
    ) {
        self.empty(r)
    }

    fn removemapping<S: ReplySink>(
        &self,
        _: &RequestHeader,
        _op: op::Removemapping<'_>,
        r: ReplyEmpty<S>,
    ) {
        self.empty(r)
    }

    fn syncfs<S: ReplySink>(&self, _: &RequestHeader, _op: op::Syncfs, r: ReplyEmpty<S>) {
        self.empty(r)
    }

    fn tmpfile<S: ReplySink>(&self, _: &RequestHeader, op: op::Tmpfile<'_>, r: ReplyCreate<S>) {
        let p = op.parent();
        self.create_reply(p.wrapping_add(30), r)
    }

    fn statx<S: ReplySink>(&self, _: &RequestHeader, op: op::Statx<'_>, r: ReplyStatx<S>) {
        let (ino, mask) = (op.ino(), op.sx_mask());
        match self.way() {
            Way::Drop => drop(r),
            Way::Error => r.error(Errno::ENOSYS),
            _ => r.statx(
                TTL,
                0,
                &fuse_statx {
                    mask,
                    ino,
                    ..Default::default()
                },
            ),
        }
    }
}

/// Protocol minors the leading INIT may announce.
const INIT_MINORS: [u32; 8] = [45, 36, 31, 23, 22, 12, 44, 99];
/// Scratch sizes lent to READDIR(PLUS).
const SCRATCH: [usize; 8] = [4096, 0, 100, 160, 4095, 8192, 32, 152 + 8];

/// Builds a well-formed INIT request.
pub fn init_message(unique: u64, minor: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(IN_HEADER + 64);
    let h = fuse_in_header {
        len: (IN_HEADER + 64) as u32,
        opcode: FUSE_INIT,
        unique,
        nodeid: 0,
        ..Default::default()
    };
    m.extend_from_slice(h.as_bytes());
    let (f1, f2) = InitFlags::all().to_wire();
    let arg = fuse_init_in {
        major: 7,
        minor,
        max_readahead: 1 << 17,
        flags: f1,
        flags2: f2,
        unused: [0; 11],
    };
    m.extend_from_slice(arg.as_bytes());
    m
}

/// A filesystem the dispatch harness can drive: [`FuzzFs`], steered by
/// each message's `mode` byte, or a real backend (which ignores it).
pub trait Target: Filesystem {
    /// Steers how the next request is answered.
    fn steer(&self, _mode: u8) {}
    /// Whether INIT must have succeeded given the input's `init_mode` byte.
    fn init_accepted(&self, _init_mode: u8) -> bool {
        true
    }
}

impl Target for FuzzFs {
    fn steer(&self, mode: u8) {
        self.mode.set(u32::from(mode) * 0x0101_0101);
    }
    fn init_accepted(&self, init_mode: u8) -> bool {
        // Running unless the filesystem refused INIT (init_mode bit 7).
        init_mode & 0x80 == 0
    }
}

struct Session<F: Target> {
    dispatcher: Dispatcher<F>,
    checker: Checker,
    scratch: Vec<u8>,
}

impl<F: Target> Session<F> {
    /// Delivers one message and checks what became of it.
    fn deliver(&mut self, msg: &[u8], ctl: u8, mode: u8) {
        let mut owned;
        let mut msg = msg;
        if ctl & 1 != 0 && msg.len() >= 4 {
            owned = msg.to_vec();
            owned[..4].copy_from_slice(&(msg.len() as u32).to_ne_bytes());
            msg = &owned[..];
        }
        let segments = ctl & 2 != 0;
        let ring_area = ctl & 4 != 0;

        // The header the dispatcher will see, and whether it can trust it.
        let header_bytes: Vec<u8> = if segments && ring_area {
            let mut a = msg[..msg.len().min(128)].to_vec();
            a.resize(128, 0);
            a
        } else {
            msg[..msg.len().min(IN_HEADER)].to_vec()
        };
        let (trusted, unique, opcode) = if header_bytes.len() >= IN_HEADER {
            let (h, _) = fuse_in_header::read_from_prefix(&header_bytes[..]).unwrap();
            let len_ok = segments || h.len as usize == msg.len();
            // A reply to unique 0 would read as a notification: none.
            (len_ok && h.unique != 0, h.unique, h.opcode)
        } else {
            (false, 0, 0)
        };
        let dir_size = if (opcode == FUSE_READDIR || opcode == FUSE_READDIRPLUS)
            && msg.len() >= IN_HEADER + 20
        {
            u32::from_ne_bytes(msg[IN_HEADER + 16..IN_HEADER + 20].try_into().unwrap()) as usize
        } else {
            usize::MAX
        };
        *self.checker.cur.borrow_mut() = Current {
            unique,
            opcode,
            trusted,
            dir_size,
            replies: 0,
        };
        self.dispatcher.filesystem().steer(mode);
        self.checker.scratch_len.set(self.scratch.len());

        let outcome = if segments {
            let ctx: ParseContext = self.dispatcher.parse_context();
            let fixed = Opcode::from_u32(opcode).map_or(0, |op| arg_size(op, ctx));
            let h_end = msg.len().min(IN_HEADER);
            let a_end = msg.len().min(IN_HEADER + fixed);
            let header = if ring_area {
                AlignedBuf::from_bytes(&header_bytes)
            } else {
                AlignedBuf::from_bytes(&msg[..h_end])
            };
            let mut op_area = AlignedBuf::zeroed(if ring_area { 128.max(fixed) } else { 0 });
            let op_in = if ring_area {
                op_area.as_bytes_mut()[..a_end - h_end].copy_from_slice(&msg[h_end..a_end]);
                AlignedBuf::from_bytes(op_area.as_bytes())
            } else {
                AlignedBuf::from_bytes(&msg[h_end..a_end])
            };
            let payload = AlignedBuf::from_bytes(&msg[a_end..]);
            self.dispatcher.dispatch_segments(
                header.as_bytes(),
                op_in.as_bytes(),
                payload.as_bytes(),
                &self.checker,
                &mut self.scratch,
            )
        } else {
            let buf = AlignedBuf::from_bytes(msg);
            self.dispatcher
                .dispatch(buf.as_bytes(), &self.checker, &mut self.scratch)
        };

        let cur = self.checker.cur.borrow();
        let expected = u32::from(trusted && !no_reply(opcode));
        assert_eq!(
            cur.replies, expected,
            "opcode {opcode} (trusted {trusted}) got {} replies, outcome {outcome:?}",
            cur.replies
        );
        match outcome {
            Dispatched::Malformed { replied, .. } => {
                assert_eq!(replied, cur.replies == 1, "Malformed.replied is wrong")
            }
            Dispatched::Handled(op) => assert_eq!(op as u32, opcode),
            Dispatched::Destroyed => {
                assert_eq!(opcode, FUSE_DESTROY);
                assert!(!self.dispatcher.is_running());
            }
            Dispatched::Initialized(n) => {
                assert_eq!(opcode, FUSE_INIT);
                assert!(self.dispatcher.is_running());
                assert_eq!(self.dispatcher.parse_context().minor, n.minor);
            }
            Dispatched::InitDowngraded | Dispatched::InitFailed(_) => {
                assert_eq!(opcode, FUSE_INIT)
            }
        }
    }
}

/// Runs one input (see the module docs for its layout) against [`FuzzFs`].
pub fn run(data: &[u8]) {
    let fs = FuzzFs::default();
    if let Some(&init_mode) = data.get(1) {
        fs.init_mode.set(init_mode);
    }
    run_on(data, fs)
}

/// Runs one input (see the module docs for its layout) against `fs`.
pub fn run_on<F: Target>(data: &[u8], fs: F) {
    if data.len() < 2 {
        return;
    }
    let (flags, init_mode, mut rest) = (data[0], data[1], &data[2..]);
    let dispatcher = Dispatcher::new(fs, InitConfig::default()).with_read_only(flags & 0x10 != 0);
    let mut s = Session {
        dispatcher,
        checker: Checker::default(),
        scratch: vec![0xA5; SCRATCH[usize::from(flags >> 5)]],
    };
    if flags & 1 != 0 {
        let minor = INIT_MINORS[usize::from((flags >> 1) & 7)];
        s.deliver(&init_message(1, minor), 0, 0);
        let accepted = s.dispatcher.filesystem().init_accepted(init_mode);
        assert_eq!(s.dispatcher.is_running(), accepted);
    }
    let mut count = 0;
    while rest.len() >= 4 && count < 64 {
        let ctl = rest[0];
        let mode = rest[1];
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        let body = &rest[4..];
        let (msg, tail) = body.split_at(len.min(body.len()));
        s.deliver(msg, ctl, mode);
        rest = tail;
        count += 1;
    }
}
