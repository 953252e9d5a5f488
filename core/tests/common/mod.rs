//! Shared machinery of the core's integration tests: byte-level request
//! writers and reply readers written from `fuse.h` independently of
//! `fuselage_core::abi`, a valid sample request for every opcode, and a
//! recording filesystem that answers every method.
#![allow(dead_code)]

use fuselage_core::abi::*;
use fuselage_core::dirent::{DirentBuf, dtype};
use fuselage_core::op;
use fuselage_core::reply::*;
use fuselage_core::{
    Dispatched, Dispatcher, Errno, FileRange, Filesystem, InitConfig, InitFlags, KernelInit,
    Negotiated, Opcode, ReplySink, RequestHeader, SetAttr,
};
use fuselage_testkit::{AlignedBuf, ReplyRecorder};
use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

/// Caller credentials every test request carries.
pub const UID: u32 = 1001;
pub const GID: u32 = 1002;
pub const PID: u32 = 1003;

/// Every INIT flag of 7.45 but the reserved bit 31, as Linux 6.18 offers.
pub const FULL_OFFER: u64 = InitFlags::all().bits() & !(1 << 31);

// -------------------------------------------------------------------------
// Bytes out: a little writer in native byte order
// -------------------------------------------------------------------------

/// Builds bytes field by field, as the C structs of `fuse.h` lay them out.
#[derive(Debug, Default, Clone)]
pub struct W(pub Vec<u8>);

impl W {
    pub fn new() -> W {
        W(Vec::new())
    }
    pub fn u16(mut self, v: u16) -> W {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> W {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn i32(mut self, v: i32) -> W {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> W {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn bytes(mut self, b: &[u8]) -> W {
        self.0.extend_from_slice(b);
        self
    }
    /// A name and its NUL.
    pub fn name(self, b: &[u8]) -> W {
        self.bytes(b).bytes(&[0])
    }
    pub fn done(self) -> Vec<u8> {
        self.0
    }
}

/// A `fuse_in_header` written by hand: len, opcode, unique, nodeid, uid,
/// gid, pid, total_extlen, padding.
pub fn in_header(len: u32, opcode: u32, unique: u64, nodeid: u64, total_extlen: u16) -> Vec<u8> {
    W::new()
        .u32(len)
        .u32(opcode)
        .u64(unique)
        .u64(nodeid)
        .u32(UID)
        .u32(GID)
        .u32(PID)
        .u16(total_extlen)
        .u16(0)
        .done()
}

/// A whole request in an aligned buffer: header (len computed), argument
/// struct, payload.
pub fn message(opcode: u32, unique: u64, nodeid: u64, arg: &[u8], payload: &[u8]) -> AlignedBuf {
    let len = (40 + arg.len() + payload.len()) as u32;
    let mut v = in_header(len, opcode, unique, nodeid, 0);
    v.extend_from_slice(arg);
    v.extend_from_slice(payload);
    AlignedBuf::from_bytes(&v)
}

/// A 64-byte `fuse_init_in`.
pub fn init_arg(major: u32, minor: u32, max_readahead: u32, flags: u64) -> Vec<u8> {
    W::new()
        .u32(major)
        .u32(minor)
        .u32(max_readahead)
        .u32(flags as u32)
        .u32((flags >> 32) as u32)
        .bytes(&[0; 44])
        .done()
}

// -------------------------------------------------------------------------
// Bytes in: a reader that checks every field
// -------------------------------------------------------------------------

/// Reads a reply body field by field.
pub struct R<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> R<'a> {
    pub fn new(b: &'a [u8]) -> R<'a> {
        R { b, at: 0 }
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.at + n <= self.b.len(),
            "reply body too short: want {n} bytes at {} of {}",
            self.at,
            self.b.len()
        );
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        s
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_ne_bytes(self.bytes(2).try_into().unwrap())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.bytes(4).try_into().unwrap())
    }
    pub fn i32(&mut self) -> i32 {
        i32::from_ne_bytes(self.bytes(4).try_into().unwrap())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_ne_bytes(self.bytes(8).try_into().unwrap())
    }
    pub fn i64(&mut self) -> i64 {
        i64::from_ne_bytes(self.bytes(8).try_into().unwrap())
    }
    /// Asserts the next `n` bytes are zero (padding, reserved).
    pub fn zeros(&mut self, n: usize) {
        let at = self.at;
        assert!(
            self.bytes(n).iter().all(|&b| b == 0),
            "non-zero bytes at {at}"
        );
    }
    pub fn remaining(&self) -> usize {
        self.b.len() - self.at
    }
    /// Asserts everything was read.
    pub fn end(&self) {
        assert_eq!(self.at, self.b.len(), "unread reply bytes");
    }
}

/// Reads an out-header by hand: (len, error, unique).
pub fn out_header(msg: &[u8]) -> (u32, i32, u64) {
    assert!(msg.len() >= 16, "message shorter than an out-header");
    let mut r = R::new(&msg[..16]);
    (r.u32(), r.i32(), r.u64())
}

/// Asserts `out` is one successful reply to `unique` with a body of exactly
/// `body_len` bytes, and returns a reader over the body.
#[track_caller]
pub fn ok_body(out: &[Vec<u8>], unique: u64, body_len: usize) -> R<'_> {
    assert_eq!(out.len(), 1, "expected exactly one reply, got {out:?}");
    let msg = &out[0];
    let (len, error, u) = out_header(msg);
    assert_eq!(error, 0, "reply is an error");
    assert_eq!(u, unique, "reply unique");
    assert_eq!(len as usize, msg.len(), "out-header len vs bytes sent");
    assert_eq!(msg.len(), 16 + body_len, "reply body length");
    R::new(&msg[16..])
}

/// Asserts `out` is one header-only error reply `-errno` to `unique`.
#[track_caller]
pub fn assert_error(out: &[Vec<u8>], unique: u64, errno: i32) {
    assert_eq!(out.len(), 1, "expected exactly one reply, got {out:?}");
    assert_eq!(out_header(&out[0]), (16, -errno, unique), "error reply");
    assert_eq!(out[0].len(), 16, "error replies are header-only");
}

// -------------------------------------------------------------------------
// Values the recording filesystem answers with, and their checks
// -------------------------------------------------------------------------

/// The attributes RecFs reports for `ino`.
pub fn sample_attr(ino: u64) -> fuse_attr {
    fuse_attr {
        ino,
        size: ino.wrapping_add(0x1000),
        blocks: 9,
        atime: 1_700_000_001,
        mtime: 1_700_000_002,
        ctime: 1_700_000_003,
        atimensec: 11,
        mtimensec: 12,
        ctimensec: 13,
        mode: 0o100644,
        nlink: 1,
        uid: 501,
        gid: 502,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Reads a `fuse_attr` field by field and checks it is `sample_attr(ino)`.
#[track_caller]
pub fn expect_attr(r: &mut R<'_>, ino: u64) {
    assert_eq!(r.u64(), ino, "attr.ino");
    assert_eq!(r.u64(), ino.wrapping_add(0x1000), "attr.size");
    assert_eq!(r.u64(), 9, "attr.blocks");
    assert_eq!(r.u64(), 1_700_000_001, "attr.atime");
    assert_eq!(r.u64(), 1_700_000_002, "attr.mtime");
    assert_eq!(r.u64(), 1_700_000_003, "attr.ctime");
    assert_eq!(r.u32(), 11, "attr.atimensec");
    assert_eq!(r.u32(), 12, "attr.mtimensec");
    assert_eq!(r.u32(), 13, "attr.ctimensec");
    assert_eq!(r.u32(), 0o100644, "attr.mode");
    assert_eq!(r.u32(), 1, "attr.nlink");
    assert_eq!(r.u32(), 501, "attr.uid");
    assert_eq!(r.u32(), 502, "attr.gid");
    assert_eq!(r.u32(), 0, "attr.rdev");
    assert_eq!(r.u32(), 4096, "attr.blksize");
    assert_eq!(r.u32(), 0, "attr.flags");
}

/// The entry RecFs answers for `ino`: generation 7, entry TTL 1 s + 2 ns,
/// attribute TTL 3 s + 4 ns.
pub fn sample_entry(ino: u64) -> fuse_entry_out {
    entry_out(
        sample_attr(ino),
        7,
        Duration::new(1, 2),
        Duration::new(3, 4),
    )
}

/// Reads a `fuse_entry_out` field by field and checks it is
/// `sample_entry(ino)`.
#[track_caller]
pub fn expect_entry(r: &mut R<'_>, ino: u64) {
    assert_eq!(r.u64(), ino, "entry.nodeid");
    assert_eq!(r.u64(), 7, "entry.generation");
    assert_eq!(r.u64(), 1, "entry.entry_valid");
    assert_eq!(r.u64(), 3, "entry.attr_valid");
    assert_eq!(r.u32(), 2, "entry.entry_valid_nsec");
    assert_eq!(r.u32(), 4, "entry.attr_valid_nsec");
    expect_attr(r, ino);
}

/// The statfs RecFs answers.
pub fn sample_kstatfs() -> fuse_kstatfs {
    fuse_kstatfs {
        blocks: 1000,
        bfree: 500,
        bavail: 400,
        files: 300,
        ffree: 200,
        bsize: 4096,
        namelen: 255,
        frsize: 512,
        padding: 0,
        spare: [0; 6],
    }
}

/// The statx RecFs answers for `ino`.
pub fn sample_statx(ino: u64) -> fuse_statx {
    let t = |s: i64, n: u32| fuse_sx_time {
        tv_sec: s,
        tv_nsec: n,
        __reserved: 0,
    };
    fuse_statx {
        mask: 0x7ff,
        blksize: 4096,
        attributes: 0x20,
        nlink: 2,
        uid: 501,
        gid: 502,
        mode: 0o100600,
        __spare0: [0],
        ino,
        size: 12345,
        blocks: 24,
        attributes_mask: 0x30,
        atime: t(1, 2),
        btime: t(3, 4),
        ctime: t(-5, 6),
        mtime: t(7, 8),
        rdev_major: 9,
        rdev_minor: 10,
        dev_major: 11,
        dev_minor: 12,
        __spare2: [0; 14],
    }
}

/// Entries of the directory RecFs lists: names of 1 to 13 bytes.
pub const DIR_ENTRIES: usize = 20;

/// Name of listed entry `i`.
pub fn dir_name(i: usize) -> Vec<u8> {
    let mut name = b"n".repeat(i % 11);
    name.extend_from_slice(i.to_string().as_bytes());
    name
}

/// `d_type` of listed entry `i`.
pub fn dir_type(i: usize) -> u32 {
    if i.is_multiple_of(3) {
        dtype::DIR
    } else {
        dtype::REG
    }
}

// -------------------------------------------------------------------------
// The recording filesystem
// -------------------------------------------------------------------------

/// The header fields a call was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hdr {
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Hdr {
    fn of(h: &RequestHeader) -> Hdr {
        Hdr {
            opcode: h.opcode,
            unique: h.unique,
            nodeid: h.nodeid,
            uid: h.uid,
            gid: h.gid,
            pid: h.pid,
        }
    }
}

/// One `Filesystem` call with owned copies of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Init(KernelInit),
    InitDone(Negotiated),
    Destroy,
    Lookup {
        parent: u64,
        name: Vec<u8>,
    },
    Forget {
        ino: u64,
        nlookup: u64,
    },
    BatchForget {
        nodes: Vec<(u64, u64)>,
    },
    Getattr {
        ino: u64,
        fh: Option<u64>,
    },
    Setattr {
        ino: u64,
        attr: SetAttr,
    },
    Readlink {
        ino: u64,
    },
    Symlink {
        parent: u64,
        name: Vec<u8>,
        target: Vec<u8>,
    },
    Mknod {
        parent: u64,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
        rdev: u32,
    },
    Mkdir {
        parent: u64,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
    },
    Unlink {
        parent: u64,
        name: Vec<u8>,
    },
    Rmdir {
        parent: u64,
        name: Vec<u8>,
    },
    Rename {
        parent: u64,
        name: Vec<u8>,
        newparent: u64,
        newname: Vec<u8>,
        flags: u32,
    },
    Link {
        ino: u64,
        newparent: u64,
        newname: Vec<u8>,
    },
    Open {
        ino: u64,
        flags: u32,
        open_flags: u32,
    },
    Read {
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
        flags: u32,
        lock_owner: Option<u64>,
    },
    Write {
        ino: u64,
        fh: u64,
        offset: u64,
        data: Vec<u8>,
        write_flags: u32,
        flags: u32,
        lock_owner: Option<u64>,
    },
    Statfs {
        ino: u64,
    },
    Release {
        ino: u64,
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
    },
    Fsync {
        ino: u64,
        fh: u64,
        datasync: bool,
    },
    Setxattr {
        ino: u64,
        name: Vec<u8>,
        value: Vec<u8>,
        flags: u32,
        setxattr_flags: u32,
    },
    Getxattr {
        ino: u64,
        name: Vec<u8>,
        size: u32,
    },
    Listxattr {
        ino: u64,
        size: u32,
    },
    Removexattr {
        ino: u64,
        name: Vec<u8>,
    },
    Flush {
        ino: u64,
        fh: u64,
        lock_owner: u64,
    },
    Opendir {
        ino: u64,
        flags: u32,
    },
    Readdir {
        ino: u64,
        fh: u64,
        offset: u64,
        room: usize,
    },
    Readdirplus {
        ino: u64,
        fh: u64,
        offset: u64,
        room: usize,
    },
    Releasedir {
        ino: u64,
        fh: u64,
        flags: u32,
    },
    Fsyncdir {
        ino: u64,
        fh: u64,
        datasync: bool,
    },
    Getlk {
        ino: u64,
        fh: u64,
        owner: u64,
        lock: fuse_file_lock,
    },
    Setlk {
        ino: u64,
        fh: u64,
        owner: u64,
        lock: fuse_file_lock,
        flock: bool,
        sleep: bool,
    },
    Access {
        ino: u64,
        mask: u32,
    },
    Create {
        parent: u64,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
        flags: u32,
    },
    Tmpfile {
        parent: u64,
        name: Vec<u8>,
        mode: u32,
        umask: u32,
        flags: u32,
    },
    Interrupt {
        unique: u64,
    },
    Bmap {
        ino: u64,
        blocksize: u32,
        block: u64,
    },
    Ioctl {
        ino: u64,
        fh: u64,
        flags: u32,
        cmd: u32,
        arg: u64,
        data: Vec<u8>,
        out_size: u32,
    },
    Poll {
        ino: u64,
        fh: u64,
        kh: u64,
        flags: u32,
        events: u32,
    },
    NotifyReply {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Fallocate {
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    },
    Lseek {
        ino: u64,
        fh: u64,
        offset: u64,
        whence: u32,
    },
    CopyFileRange {
        ino_in: u64,
        fh_in: u64,
        off_in: u64,
        ino_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u64,
    },
    Setupmapping {
        ino: u64,
        arg: fuse_setupmapping_in,
    },
    Removemapping {
        ino: u64,
        entries: Vec<(u64, u64)>,
    },
    Syncfs {
        ino: u64,
    },
    Statx {
        ino: u64,
        fh: Option<u64>,
        getattr_flags: u32,
        sx_flags: u32,
        sx_mask: u32,
    },
}

/// Lookup names that make RecFs answer differently.
pub const NAME_MISSING: &[u8] = b"missing";
pub const NAME_NEGATIVE: &[u8] = b"negative";
pub const NAME_DROP: &[u8] = b"drop";
/// Opens of this inode answer with passthrough (backing id 9).
pub const INO_PASSTHROUGH: u64 = 77;
/// Reads of this inode answer with a file range of RecFs's memfd.
pub const INO_FILE_RANGE: u64 = 0xF11E;
/// READDIR file handles that make RecFs answer differently.
pub const FH_DIR_ERROR: u64 = 0xBAD;
pub const FH_DIR_PACKED: u64 = 0xAC;
pub const FH_DIR_VIA_BUF: u64 = 0xBF;

/// A filesystem that records every call and answers every method with
/// fixed, recognisable values (see the constants above).
#[derive(Debug, Default)]
pub struct RecFs {
    pub calls: Mutex<Vec<(Hdr, Call)>>,
    /// Refuse INIT with this errno.
    pub refuse_init: Option<Errno>,
    /// File whose bytes `INO_FILE_RANGE` reads return.
    pub file: Option<OwnedFd>,
    /// Don't keep calls (for property tests).
    pub forgetful: bool,
}

impl RecFs {
    pub fn new() -> RecFs {
        RecFs::default()
    }

    fn rec(&self, h: &RequestHeader, c: Call) {
        if !self.forgetful {
            self.calls.lock().unwrap().push((Hdr::of(h), c));
        }
    }

    fn rec_plain(&self, c: Call) {
        if !self.forgetful {
            let h = Hdr {
                opcode: 0,
                unique: 0,
                nodeid: 0,
                uid: 0,
                gid: 0,
                pid: 0,
            };
            self.calls.lock().unwrap().push((h, c));
        }
    }

    /// Takes the calls recorded so far.
    pub fn take(&self) -> Vec<(Hdr, Call)> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn dir<S: ReplySink>(
        &self,
        offset: u64,
        plus: bool,
        fh: u64,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        if fh == FH_DIR_ERROR {
            return reply.error(Errno::ENOTDIR);
        }
        if fh == FH_DIR_PACKED {
            let mut raw = [0u8; 256];
            let mut buf = DirentBuf::new(&mut raw, 256);
            assert_eq!(buf.push(5, 1, dtype::REG, b"packed"), Ok(()));
            return reply.packed(buf.as_bytes());
        }
        for i in offset as usize..DIR_ENTRIES {
            let name = dir_name(i);
            let ino = 1000 + i as u64;
            let next = i as u64 + 1;
            let pushed = if plus {
                reply.push_plus(&sample_entry(ino), next, dir_type(i), &name)
            } else if fh == FH_DIR_VIA_BUF {
                reply.buf().push(ino, next, dir_type(i), &name)
            } else {
                reply.push(ino, next, dir_type(i), &name)
            };
            if pushed.is_err() {
                break;
            }
        }
        reply.ok()
    }
}

fn own(name: &CStr) -> Vec<u8> {
    name.to_bytes().to_vec()
}

impl Filesystem for RecFs {
    fn init(&self, kernel: &KernelInit, _config: &mut InitConfig) -> Result<(), Errno> {
        self.rec_plain(Call::Init(*kernel));
        match self.refuse_init {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn init_done(&self, negotiated: &Negotiated) {
        self.rec_plain(Call::InitDone(*negotiated));
    }

    fn destroy(&self) {
        self.rec_plain(Call::Destroy);
    }

    fn lookup<S: ReplySink>(&self, req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let (parent, name) = (op.parent(), op.name());
        self.rec(
            req,
            Call::Lookup {
                parent,
                name: own(name),
            },
        );
        match name.to_bytes() {
            NAME_MISSING => reply.error(Errno::ENOENT),
            NAME_NEGATIVE => reply.negative(Duration::new(5, 6)),
            NAME_DROP => drop(reply),
            n => reply.entry(&sample_entry(100 + n.len() as u64)),
        }
    }

    fn forget(&self, req: &RequestHeader, op: op::Forget) {
        let (ino, nlookup) = (op.ino(), op.nlookup());
        self.rec(req, Call::Forget { ino, nlookup });
    }

    fn batch_forget(&self, req: &RequestHeader, op: op::BatchForget<'_>) {
        let nodes = op.nodes();
        let nodes = nodes.iter().map(|n| (n.nodeid, n.nlookup)).collect();
        self.rec(req, Call::BatchForget { nodes });
    }

    fn getattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        let (ino, fh) = (op.ino(), op.fh());
        self.rec(req, Call::Getattr { ino, fh });
        reply.attr(Duration::new(5, 6), &sample_attr(ino))
    }

    fn setattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Setattr<'_>, reply: ReplyAttr<S>) {
        let (ino, attr) = (op.ino(), &op.attr());
        self.rec(req, Call::Setattr { ino, attr: *attr });
        reply.attr(Duration::new(5, 6), &sample_attr(ino))
    }

    fn readlink<S: ReplySink>(&self, req: &RequestHeader, op: op::Readlink, reply: ReplyData<S>) {
        let ino = op.ino();
        self.rec(req, Call::Readlink { ino });
        reply.data(b"link/target")
    }

    fn symlink<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Symlink<'_>,
        reply: ReplyEntry<S>,
    ) {
        let (parent, name, target) = (op.parent(), op.name(), op.target());
        self.rec(
            req,
            Call::Symlink {
                parent,
                name: own(name),
                target: own(target),
            },
        );
        reply.entry(&sample_entry(202))
    }

    fn mknod<S: ReplySink>(&self, req: &RequestHeader, op: op::Mknod<'_>, reply: ReplyEntry<S>) {
        let (parent, name, mode, umask, rdev) =
            (op.parent(), op.name(), op.mode(), op.umask(), op.rdev());
        self.rec(
            req,
            Call::Mknod {
                parent,
                name: own(name),
                mode,
                umask,
                rdev,
            },
        );
        reply.entry(&sample_entry(200))
    }

    fn mkdir<S: ReplySink>(&self, req: &RequestHeader, op: op::Mkdir<'_>, reply: ReplyEntry<S>) {
        let (parent, name, mode, umask) = (op.parent(), op.name(), op.mode(), op.umask());
        self.rec(
            req,
            Call::Mkdir {
                parent,
                name: own(name),
                mode,
                umask,
            },
        );
        reply.entry(&sample_entry(201))
    }

    fn unlink<S: ReplySink>(&self, req: &RequestHeader, op: op::Unlink<'_>, reply: ReplyEmpty<S>) {
        let (parent, name) = (op.parent(), op.name());
        self.rec(
            req,
            Call::Unlink {
                parent,
                name: own(name),
            },
        );
        reply.ok()
    }

    fn rmdir<S: ReplySink>(&self, req: &RequestHeader, op: op::Rmdir<'_>, reply: ReplyEmpty<S>) {
        let (parent, name) = (op.parent(), op.name());
        self.rec(
            req,
            Call::Rmdir {
                parent,
                name: own(name),
            },
        );
        reply.ok()
    }

    fn rename<S: ReplySink>(&self, req: &RequestHeader, op: op::Rename<'_>, reply: ReplyEmpty<S>) {
        let (parent, name, newparent, newname, flags) = (
            op.parent(),
            op.name(),
            op.newparent(),
            op.newname(),
            op.flags(),
        );
        self.rec(
            req,
            Call::Rename {
                parent,
                name: own(name),
                newparent,
                newname: own(newname),
                flags,
            },
        );
        reply.ok()
    }

    fn link<S: ReplySink>(&self, req: &RequestHeader, op: op::Link<'_>, reply: ReplyEntry<S>) {
        let (ino, newparent, newname) = (op.ino(), op.newparent(), op.newname());
        self.rec(
            req,
            Call::Link {
                ino,
                newparent,
                newname: own(newname),
            },
        );
        reply.entry(&sample_entry(203))
    }

    fn open<S: ReplySink>(&self, req: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        let (ino, flags, open_flags) = (op.ino(), op.flags(), op.open_flags());
        self.rec(
            req,
            Call::Open {
                ino,
                flags,
                open_flags,
            },
        );
        if ino == INO_PASSTHROUGH {
            reply.opened_passthrough(0x1111, FOPEN_KEEP_CACHE, 9)
        } else {
            reply.opened(ino.wrapping_add(0x1111), FOPEN_KEEP_CACHE)
        }
    }

    fn read<S: ReplySink>(&self, req: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        let (ino, fh, offset, size, flags, lock_owner) = (
            op.ino(),
            op.fh(),
            op.offset(),
            op.size(),
            op.flags(),
            op.lock_owner(),
        );
        self.rec(
            req,
            Call::Read {
                ino,
                fh,
                offset,
                size,
                flags,
                lock_owner,
            },
        );
        if ino == INO_FILE_RANGE {
            return match &self.file {
                Some(f) => reply.file(FileRange::new(f.as_fd(), offset, size)),
                None => reply.error(Errno::EIO),
            };
        }
        let data: Vec<u8> = (0..size.min(16) as u64)
            .map(|i| offset.wrapping_add(i) as u8)
            .collect();
        reply.data(&data)
    }

    fn write<S: ReplySink>(&self, req: &RequestHeader, op: op::Write<'_>, reply: ReplyWrite<S>) {
        let (ino, fh, offset, data, write_flags, flags, lock_owner) = (
            op.ino(),
            op.fh(),
            op.offset(),
            op.data(),
            op.write_flags(),
            op.flags(),
            op.lock_owner(),
        );
        self.rec(
            req,
            Call::Write {
                ino,
                fh,
                offset,
                data: data.to_vec(),
                write_flags,
                flags,
                lock_owner,
            },
        );
        reply.written(data.len() as u32)
    }

    fn statfs<S: ReplySink>(&self, req: &RequestHeader, op: op::Statfs, reply: ReplyStatfs<S>) {
        let ino = op.ino();
        self.rec(req, Call::Statfs { ino });
        reply.statfs(&sample_kstatfs())
    }

    fn release<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Release<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (ino, fh, flags, release_flags, lock_owner) = (
            op.ino(),
            op.fh(),
            op.flags(),
            op.release_flags(),
            op.lock_owner(),
        );
        self.rec(
            req,
            Call::Release {
                ino,
                fh,
                flags,
                release_flags,
                lock_owner,
            },
        );
        reply.ok()
    }

    fn fsync<S: ReplySink>(&self, req: &RequestHeader, op: op::Fsync<'_>, reply: ReplyEmpty<S>) {
        let (ino, fh, datasync) = (op.ino(), op.fh(), op.datasync());
        self.rec(req, Call::Fsync { ino, fh, datasync });
        reply.ok()
    }

    fn setxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Setxattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (ino, name, value, flags, setxattr_flags) = (
            op.ino(),
            op.name(),
            op.value(),
            op.flags(),
            op.setxattr_flags(),
        );
        self.rec(
            req,
            Call::Setxattr {
                ino,
                name: own(name),
                value: value.to_vec(),
                flags,
                setxattr_flags,
            },
        );
        reply.ok()
    }

    fn getxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Getxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        let (ino, name, size) = (op.ino(), op.name(), op.size());
        self.rec(
            req,
            Call::Getxattr {
                ino,
                name: own(name),
                size,
            },
        );
        const VALUE: &[u8] = b"value";
        match size {
            0 => reply.size(VALUE.len() as u32),
            s if (s as usize) < VALUE.len() => reply.error(Errno::ERANGE),
            _ => reply.data(VALUE),
        }
    }

    fn listxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Listxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        let (ino, size) = (op.ino(), op.size());
        self.rec(req, Call::Listxattr { ino, size });
        const LIST: &[u8] = b"user.a\0user.b\0";
        match size {
            0 => reply.size(LIST.len() as u32),
            s if (s as usize) < LIST.len() => reply.error(Errno::ERANGE),
            _ => reply.data(LIST),
        }
    }

    fn removexattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Removexattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (ino, name) = (op.ino(), op.name());
        self.rec(
            req,
            Call::Removexattr {
                ino,
                name: own(name),
            },
        );
        reply.ok()
    }

    fn flush<S: ReplySink>(&self, req: &RequestHeader, op: op::Flush<'_>, reply: ReplyEmpty<S>) {
        let (ino, fh, lock_owner) = (op.ino(), op.fh(), op.lock_owner());
        self.rec(
            req,
            Call::Flush {
                ino,
                fh,
                lock_owner,
            },
        );
        reply.ok()
    }

    fn opendir<S: ReplySink>(&self, req: &RequestHeader, op: op::Opendir<'_>, reply: ReplyOpen<S>) {
        let (ino, flags) = (op.ino(), op.flags());
        self.rec(req, Call::Opendir { ino, flags });
        reply.opened(0x2222, FOPEN_CACHE_DIR)
    }

    fn readdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Readdir<'_>,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        let (ino, fh, offset) = (op.ino(), op.fh(), op.offset());
        let room = reply.buf().remaining();
        self.rec(
            req,
            Call::Readdir {
                ino,
                fh,
                offset,
                room,
            },
        );
        self.dir(offset, false, fh, reply)
    }

    fn readdirplus<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Readdirplus<'_>,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        let (ino, fh, offset) = (op.ino(), op.fh(), op.offset());
        let room = reply.buf().remaining();
        self.rec(
            req,
            Call::Readdirplus {
                ino,
                fh,
                offset,
                room,
            },
        );
        self.dir(offset, true, fh, reply)
    }

    fn releasedir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Releasedir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (ino, fh, flags) = (op.ino(), op.fh(), op.flags());
        self.rec(req, Call::Releasedir { ino, fh, flags });
        reply.ok()
    }

    fn fsyncdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Fsyncdir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (ino, fh, datasync) = (op.ino(), op.fh(), op.datasync());
        self.rec(req, Call::Fsyncdir { ino, fh, datasync });
        reply.ok()
    }

    fn getlk<S: ReplySink>(&self, req: &RequestHeader, op: op::Getlk<'_>, reply: ReplyLock<S>) {
        let (ino, fh, owner, lock) = (op.ino(), op.fh(), op.owner(), op.lock());
        self.rec(
            req,
            Call::Getlk {
                ino,
                fh,
                owner,
                lock: *lock,
            },
        );
        reply.lock(&fuse_file_lock {
            start: lock.start.wrapping_add(1),
            end: lock.end.wrapping_add(1),
            typ: 1,
            pid: 4242,
        })
    }

    fn setlk<S: ReplySink>(&self, req: &RequestHeader, op: op::Setlk<'_>, reply: ReplyEmpty<S>) {
        let (ino, fh, owner, lock, flock, sleep) = (
            op.ino(),
            op.fh(),
            op.owner(),
            op.lock(),
            op.flock(),
            op.sleep(),
        );
        self.rec(
            req,
            Call::Setlk {
                ino,
                fh,
                owner,
                lock: *lock,
                flock,
                sleep,
            },
        );
        reply.ok()
    }

    fn access<S: ReplySink>(&self, req: &RequestHeader, op: op::Access<'_>, reply: ReplyEmpty<S>) {
        let (ino, mask) = (op.ino(), op.mask());
        self.rec(req, Call::Access { ino, mask });
        reply.ok()
    }

    fn create<S: ReplySink>(&self, req: &RequestHeader, op: op::Create<'_>, reply: ReplyCreate<S>) {
        let (parent, name, mode, umask, flags) =
            (op.parent(), op.name(), op.mode(), op.umask(), op.flags());
        self.rec(
            req,
            Call::Create {
                parent,
                name: own(name),
                mode,
                umask,
                flags,
            },
        );
        if name.to_bytes() == b"passthrough" {
            reply.created_passthrough(&sample_entry(300), 0x3333, FOPEN_DIRECT_IO, 5)
        } else {
            reply.created(
                &sample_entry(300),
                0x3333,
                FOPEN_DIRECT_IO | FOPEN_KEEP_CACHE,
            )
        }
    }

    fn tmpfile<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Tmpfile<'_>,
        reply: ReplyCreate<S>,
    ) {
        let (parent, name, mode, umask, flags) =
            (op.parent(), op.name(), op.mode(), op.umask(), op.flags());
        self.rec(
            req,
            Call::Tmpfile {
                parent,
                name: own(name),
                mode,
                umask,
                flags,
            },
        );
        reply.created(&sample_entry(301), 0x3334, 0)
    }

    fn interrupt(&self, req: &RequestHeader, op: op::Interrupt<'_>) {
        let unique = op.unique();
        self.rec(req, Call::Interrupt { unique });
    }

    fn bmap<S: ReplySink>(&self, req: &RequestHeader, op: op::Bmap<'_>, reply: ReplyBmap<S>) {
        let (ino, blocksize, block) = (op.ino(), op.blocksize(), op.block());
        self.rec(
            req,
            Call::Bmap {
                ino,
                blocksize,
                block,
            },
        );
        reply.block(block.wrapping_mul(2).wrapping_add(1))
    }

    fn ioctl<S: ReplySink>(&self, req: &RequestHeader, op: op::Ioctl<'_>, reply: ReplyIoctl<S>) {
        let (ino, fh, flags, cmd, arg, in_data, out_size) = (
            op.ino(),
            op.fh(),
            op.flags(),
            op.cmd(),
            op.arg(),
            op.in_data(),
            op.out_size(),
        );
        self.rec(
            req,
            Call::Ioctl {
                ino,
                fh,
                flags,
                cmd,
                arg,
                data: in_data.to_vec(),
                out_size,
            },
        );
        if in_data == b"retry" {
            let i = fuse_ioctl_iovec {
                base: 0x1000,
                len: 8,
            };
            let o = fuse_ioctl_iovec {
                base: 0x2000,
                len: 16,
            };
            return reply.retry(&[i], &[o, i]);
        }
        let mut out: Vec<u8> = in_data.iter().rev().copied().collect();
        out.truncate(out_size as usize);
        reply.ioctl(42, &out)
    }

    fn poll<S: ReplySink>(&self, req: &RequestHeader, op: op::Poll<'_>, reply: ReplyPoll<S>) {
        let (ino, fh, kh, flags, events) = (op.ino(), op.fh(), op.kh(), op.flags(), op.events());
        self.rec(
            req,
            Call::Poll {
                ino,
                fh,
                kh,
                flags,
                events,
            },
        );
        reply.revents(events & 0x5)
    }

    fn notify_reply(&self, req: &RequestHeader, op: op::NotifyReply<'_>) {
        let (ino, offset, data) = (op.ino(), op.offset(), op.data());
        self.rec(
            req,
            Call::NotifyReply {
                ino,
                offset,
                data: data.to_vec(),
            },
        );
    }

    fn fallocate<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Fallocate<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (ino, fh, offset, length, mode) =
            (op.ino(), op.fh(), op.offset(), op.length(), op.mode());
        self.rec(
            req,
            Call::Fallocate {
                ino,
                fh,
                offset,
                length,
                mode,
            },
        );
        reply.ok()
    }

    fn lseek<S: ReplySink>(&self, req: &RequestHeader, op: op::Lseek<'_>, reply: ReplyLseek<S>) {
        let (ino, fh, offset, whence) = (op.ino(), op.fh(), op.offset(), op.whence());
        self.rec(
            req,
            Call::Lseek {
                ino,
                fh,
                offset,
                whence,
            },
        );
        reply.offset(offset.wrapping_add(100))
    }

    fn copy_file_range<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::CopyFileRange<'_>,
        reply: ReplyCopyFormatted<S>,
    ) {
        let (ino_in, fh_in, off_in, ino_out, fh_out, off_out, len, flags) = (
            op.ino(),
            op.fh_in(),
            op.off_in(),
            op.ino_out(),
            op.fh_out(),
            op.off_out(),
            op.len(),
            op.flags(),
        );
        self.rec(
            req,
            Call::CopyFileRange {
                ino_in,
                fh_in,
                off_in,
                ino_out,
                fh_out,
                off_out,
                len,
                flags,
            },
        );
        reply.copied(len)
    }

    fn setupmapping<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Setupmapping<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (ino, arg) = (op.ino(), op.raw());
        self.rec(req, Call::Setupmapping { ino, arg: *arg });
        reply.ok()
    }

    fn removemapping<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Removemapping<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (ino, entries) = (op.ino(), op.entries());
        let entries = entries.iter().map(|e| (e.moffset, e.len)).collect();
        self.rec(req, Call::Removemapping { ino, entries });
        reply.ok()
    }

    fn syncfs<S: ReplySink>(&self, req: &RequestHeader, op: op::Syncfs, reply: ReplyEmpty<S>) {
        let ino = op.ino();
        self.rec(req, Call::Syncfs { ino });
        reply.ok()
    }

    fn statx<S: ReplySink>(&self, req: &RequestHeader, op: op::Statx<'_>, reply: ReplyStatx<S>) {
        let (ino, fh, getattr_flags, sx_flags, sx_mask) = (
            op.ino(),
            op.fh(),
            op.getattr_flags(),
            op.sx_flags(),
            op.sx_mask(),
        );
        self.rec(
            req,
            Call::Statx {
                ino,
                fh,
                getattr_flags,
                sx_flags,
                sx_mask,
            },
        );
        reply.statx(Duration::new(7, 8), 0, &sample_statx(ino))
    }
}

// -------------------------------------------------------------------------
// A valid request for every opcode
// -------------------------------------------------------------------------

/// A valid argument struct and payload for `op`, as the kernel would send
/// them (`setxattr_ext`: the 16-byte SETXATTR head).
pub fn sample(op: Opcode, setxattr_ext: bool) -> (Vec<u8>, Vec<u8>) {
    let read_in = W::new()
        .u64(3)
        .u64(4096)
        .u32(4096)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .done();
    let release_in = W::new().u64(3).u32(0).u32(0).u64(0).done();
    let fsync_in = W::new().u64(3).u32(0).u32(0).done();
    let lk_in = W::new()
        .u64(3)
        .u64(9)
        .u64(0)
        .u64(99)
        .u32(1)
        .u32(PID)
        .u32(0)
        .u32(0)
        .done();
    let create_in = W::new().u32(0o100).u32(0o100644).u32(0o022).u32(0).done();
    let copy_in = W::new()
        .u64(3)
        .u64(0)
        .u64(8)
        .u64(4)
        .u64(0)
        .u64(100)
        .u64(0)
        .done();
    let none = Vec::new;
    match op {
        Opcode::Lookup => (none(), W::new().name(b"file").done()),
        Opcode::Forget => (W::new().u64(1).done(), none()),
        Opcode::Getattr => (W::new().u32(0).u32(0).u64(0).done(), none()),
        Opcode::Setattr => {
            let mut a = W::new().u32(FATTR_MODE).u32(0).done();
            a.extend_from_slice(&[0; 48]);
            a.extend(W::new().u32(0).u32(0).u32(0).u32(0o100600).done());
            a.extend_from_slice(&[0; 16]);
            (a, none())
        }
        Opcode::Readlink => (none(), none()),
        Opcode::Symlink => (none(), W::new().name(b"link").name(b"target").done()),
        Opcode::Mknod => (
            W::new().u32(0o010644).u32(0).u32(0o022).u32(0).done(),
            W::new().name(b"fifo").done(),
        ),
        Opcode::Mkdir => (
            W::new().u32(0o755).u32(0o022).done(),
            W::new().name(b"dir").done(),
        ),
        Opcode::Unlink | Opcode::Rmdir => (none(), W::new().name(b"gone").done()),
        Opcode::Rename => (
            W::new().u64(1).done(),
            W::new().name(b"old").name(b"new").done(),
        ),
        Opcode::Link => (W::new().u64(8).done(), W::new().name(b"hard").done()),
        Opcode::Open | Opcode::Opendir => (W::new().u32(0).u32(0).done(), none()),
        Opcode::Read | Opcode::Readdir | Opcode::Readdirplus => (read_in, none()),
        Opcode::Write => (
            W::new()
                .u64(3)
                .u64(0)
                .u32(5)
                .u32(0)
                .u64(0)
                .u32(1)
                .u32(0)
                .done(),
            b"hello".to_vec(),
        ),
        Opcode::Statfs => (none(), none()),
        Opcode::Release | Opcode::Releasedir => (release_in, none()),
        Opcode::Fsync | Opcode::Fsyncdir => (fsync_in, none()),
        Opcode::Setxattr => {
            let mut a = W::new().u32(3).u32(0);
            if setxattr_ext {
                a = a.u32(0).u32(0);
            }
            (a.done(), W::new().name(b"user.x").bytes(b"abc").done())
        }
        Opcode::Getxattr => (
            W::new().u32(64).u32(0).done(),
            W::new().name(b"user.x").done(),
        ),
        Opcode::Listxattr => (W::new().u32(64).u32(0).done(), none()),
        Opcode::Removexattr => (none(), W::new().name(b"user.x").done()),
        Opcode::Flush => (W::new().u64(3).u32(0).u32(0).u64(0).done(), none()),
        Opcode::Init => (init_arg(7, 45, 131072, FULL_OFFER), none()),
        Opcode::Getlk | Opcode::Setlk | Opcode::Setlkw => (lk_in, none()),
        Opcode::Access => (W::new().u32(4).u32(0).done(), none()),
        Opcode::Create | Opcode::Tmpfile => {
            let name: &[u8] = if op == Opcode::Tmpfile { b"/" } else { b"new" };
            (create_in, W::new().name(name).done())
        }
        Opcode::Interrupt => (W::new().u64(2).done(), none()),
        Opcode::Bmap => (W::new().u64(10).u32(512).u32(0).done(), none()),
        Opcode::Destroy => (none(), none()),
        Opcode::Ioctl => (
            W::new()
                .u64(3)
                .u32(0)
                .u32(0x5401)
                .u64(0)
                .u32(4)
                .u32(8)
                .done(),
            b"data".to_vec(),
        ),
        Opcode::Poll => (W::new().u64(3).u64(7).u32(1).u32(1).done(), none()),
        Opcode::NotifyReply => (
            W::new().u64(0).u64(0).u32(3).u32(0).u64(0).u64(0).done(),
            b"abc".to_vec(),
        ),
        Opcode::BatchForget => (
            W::new().u32(2).u32(0).done(),
            W::new().u64(5).u64(1).u64(6).u64(2).done(),
        ),
        Opcode::Fallocate => (
            W::new().u64(3).u64(0).u64(4096).u32(0).u32(0).done(),
            none(),
        ),
        Opcode::Rename2 => (
            W::new().u64(1).u32(1).u32(0).done(),
            W::new().name(b"old").name(b"new").done(),
        ),
        Opcode::Lseek => (W::new().u64(3).u64(0).u32(3).u32(0).done(), none()),
        Opcode::CopyFileRange | Opcode::CopyFileRange64 => (copy_in, none()),
        Opcode::Setupmapping => (
            W::new().u64(3).u64(0).u64(4096).u64(3).u64(0).done(),
            none(),
        ),
        Opcode::Removemapping => (W::new().u32(0).done(), none()),
        Opcode::Syncfs => (W::new().u64(0).done(), none()),
        Opcode::Statx => (
            W::new().u32(0).u32(0).u64(0).u32(0).u32(0x7ff).done(),
            none(),
        ),
        Opcode::CuseInit => (W::new().u32(7).u32(45).u32(0).u32(0).done(), none()),
    }
}

// -------------------------------------------------------------------------
// Driving a dispatcher
// -------------------------------------------------------------------------

/// A dispatcher over a filesystem, with a reply recorder and scratch space.
pub struct Harness<F = RecFs> {
    pub disp: Dispatcher<F>,
    pub rec: ReplyRecorder,
    scratch: Vec<u8>,
    next_unique: u64,
}

impl Harness<RecFs> {
    /// A RecFs dispatcher after a full 7.45 INIT (calls and replies of the
    /// INIT already taken).
    pub fn new() -> Self {
        let h = Harness::ready(RecFs::new(), InitConfig::default(), false);
        h.calls();
        h
    }

    /// The calls recorded so far.
    pub fn calls(&self) -> Vec<(Hdr, Call)> {
        self.disp.filesystem().take()
    }

    /// Asserts exactly one call was made, for request `unique` on `nodeid`
    /// with the test credentials, and returns it.
    #[track_caller]
    pub fn only_call(&self, opcode: u32, unique: u64, nodeid: u64) -> Call {
        let mut calls = self.calls();
        assert_eq!(calls.len(), 1, "expected one call, got {calls:?}");
        let (h, c) = calls.pop().unwrap();
        let want = Hdr {
            opcode,
            unique,
            nodeid,
            uid: UID,
            gid: GID,
            pid: PID,
        };
        assert_eq!(h, want, "request header as the filesystem saw it");
        c
    }
}

impl<F: Filesystem> Harness<F> {
    /// A dispatcher not yet initialized.
    pub fn fresh(fs: F, config: InitConfig, read_only: bool) -> Self {
        Harness {
            disp: Dispatcher::new(fs, config).with_read_only(read_only),
            rec: ReplyRecorder::new(),
            scratch: vec![0; 1 << 16],
            next_unique: 0x100,
        }
    }

    /// A dispatcher after a full 7.45 INIT.
    pub fn ready(fs: F, config: InitConfig, read_only: bool) -> Self {
        let mut h = Harness::fresh(fs, config, read_only);
        let (_, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, 45, 131072, FULL_OFFER), &[]);
        assert!(matches!(d, Dispatched::Initialized(_)), "{d:?}");
        assert_eq!(out.len(), 1);
        h
    }

    /// A fresh unique (even, as the kernel allocates them).
    pub fn unique(&mut self) -> u64 {
        self.next_unique += 2;
        self.next_unique
    }

    /// Dispatches `bytes` (copied into an aligned buffer) and returns the
    /// outcome and the messages sent.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> (Dispatched, Vec<Vec<u8>>) {
        let buf = AlignedBuf::from_bytes(bytes);
        let d = self.disp.dispatch(&buf, &self.rec, &mut self.scratch);
        (d, self.rec.take())
    }

    /// Sends a request with a fresh unique.
    pub fn send(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[u8],
    ) -> (u64, Dispatched, Vec<Vec<u8>>) {
        let unique = self.unique();
        let (d, out) = self.send_bytes(&message(opcode, unique, nodeid, arg, payload));
        (unique, d, out)
    }

    /// Sends a request split as FUSE-over-io_uring delivers it: the header
    /// and argument in zero-padded 128-byte areas, the payload alone.
    pub fn send_segments(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[u8],
    ) -> (u64, Dispatched, Vec<Vec<u8>>) {
        self.segments(opcode, nodeid, arg, payload, true)
    }

    /// Like [`send_segments`](Self::send_segments), with the argument area
    /// exactly `arg` long.
    pub fn send_segments_exact(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[u8],
    ) -> (u64, Dispatched, Vec<Vec<u8>>) {
        self.segments(opcode, nodeid, arg, payload, false)
    }

    fn segments(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[u8],
        whole_areas: bool,
    ) -> (u64, Dispatched, Vec<Vec<u8>>) {
        let unique = self.unique();
        let len = (40 + arg.len() + payload.len()) as u32;
        let mut header = AlignedBuf::zeroed(128);
        header[..40].copy_from_slice(&in_header(len, opcode, unique, nodeid, 0));
        let mut op_in = AlignedBuf::zeroed(128.max(arg.len()));
        op_in[..arg.len()].copy_from_slice(arg);
        if !whole_areas {
            header.resize(40);
            op_in.resize(arg.len());
        }
        let payload = AlignedBuf::from_bytes(payload);
        let d =
            self.disp
                .dispatch_segments(&header, &op_in, &payload, &self.rec, &mut self.scratch);
        (unique, d, self.rec.take())
    }
}
