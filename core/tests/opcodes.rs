//! Every opcode, byte-exact, through the `Dispatcher`: requests are written
//! field by field from `fuse.h` (as the kernel writes them), the recording
//! filesystem checks what it was called with, and the reply bytes are read
//! back field by field.

mod common;

use common::*;
use fuselage_core::abi::*;
use fuselage_core::init::{DEFAULT_WANTED, InitError};
use fuselage_core::notify::{NotifyError, PRUNE_MAX};
use fuselage_core::request::Operation;
use fuselage_core::{
    Dispatched, Errno, InitConfig, InitFlags, Notifier, Opcode, ParseContext, ParseError, Request,
    SetAttr, TimeOrNow,
};
use fuselage_testkit::{AlignedBuf, Reply, ReplyRecorder, memfd_with};

const EIO: i32 = 5;
const ENOENT: i32 = 2;

fn bits(list: &[u32]) -> u32 {
    list.iter().fold(0, |acc, b| acc | 1 << b)
}

/// The `flags` word DEFAULT_WANTED agrees to with a full offer, written out
/// by bit number: ASYNC_READ 0, ATOMIC_O_TRUNC 3, BIG_WRITES 5, DONT_MASK 6,
/// SPLICE_READ 9, AUTO_INVAL_DATA 12, DO_READDIRPLUS 13, READDIRPLUS_AUTO 14,
/// ASYNC_DIO 15, PARALLEL_DIROPS 18, MAX_PAGES 22, CACHE_SYMLINKS 23,
/// INIT_EXT 30.
fn default_flags_word() -> u32 {
    bits(&[0, 3, 5, 6, 9, 12, 13, 14, 15, 18, 22, 23, 30])
}

// ---------------------------------------------------------------------------
// INIT
// ---------------------------------------------------------------------------

#[test]
fn init_7_45_full_negotiation() {
    let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
    let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, 45, 131072, FULL_OFFER), &[]);
    let Dispatched::Initialized(n) = d else {
        panic!("{d:?}")
    };
    let mut r = ok_body(&out, u, 64);
    assert_eq!(r.u32(), 7, "major");
    assert_eq!(r.u32(), 45, "minor");
    assert_eq!(r.u32(), 131072, "max_readahead");
    assert_eq!(r.u32(), default_flags_word(), "flags");
    assert_eq!(r.u16(), 64, "max_background");
    assert_eq!(r.u16(), 48, "congestion_threshold (3/4 of 64)");
    assert_eq!(r.u32(), 1 << 20, "max_write");
    assert_eq!(r.u32(), 1, "time_gran");
    assert_eq!(r.u16(), 256, "max_pages");
    assert_eq!(r.u16(), 0, "map_alignment");
    assert_eq!(r.u32(), 1 << (39 - 32), "flags2: HAS_RESEND");
    assert_eq!(r.u32(), 0, "max_stack_depth");
    assert_eq!(r.u16(), 0, "request_timeout");
    r.zeros(22);
    r.end();

    assert_eq!((n.major, n.minor), (7, 45));
    assert_eq!(n.flags, DEFAULT_WANTED);
    assert_eq!(n.kernel_flags.bits(), FULL_OFFER);
    assert_eq!(
        (n.max_write, n.max_read, n.max_pages),
        (1 << 20, 1 << 20, 256)
    );
    assert_eq!(n.max_readahead, 131072);
    assert_eq!(n.request_buffer_size(), (1 << 20) + 4096);
    assert!(h.disp.is_running());
    assert_eq!(
        h.disp.parse_context(),
        ParseContext {
            minor: 45,
            setxattr_ext: false
        }
    );

    let calls = h.calls();
    assert_eq!(calls.len(), 2);
    let Call::Init(k) = &calls[0].1 else {
        panic!("{calls:?}")
    };
    assert_eq!((k.major, k.minor, k.max_readahead), (7, 45, 131072));
    assert_eq!(k.flags.bits(), FULL_OFFER);
    assert_eq!(calls[1].1, Call::InitDone(n));
}

#[test]
fn init_7_22_gets_24_byte_reply() {
    let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
    // A 7.22 kernel sends the 16-byte fuse_init_in and knows flags 0..=15.
    let offer = (1u64 << 16) - 1;
    let arg = W::new().u32(7).u32(22).u32(65536).u32(offer as u32).done();
    assert_eq!(arg.len(), 16);
    let (u, d, out) = h.send(FUSE_INIT, 0, &arg, &[]);
    let Dispatched::Initialized(n) = d else {
        panic!("{d:?}")
    };
    let mut r = ok_body(&out, u, 24);
    assert_eq!(r.u32(), 7);
    assert_eq!(r.u32(), 22);
    assert_eq!(r.u32(), 65536, "max_readahead");
    assert_eq!(r.u32(), bits(&[0, 3, 5, 6, 9, 12, 13, 14, 15]), "flags");
    assert_eq!(r.u16(), 64, "max_background");
    assert_eq!(r.u16(), 48, "congestion_threshold (3/4 of 64)");
    assert_eq!(r.u32(), 1 << 20, "max_write");
    r.end();
    assert_eq!(n.minor, 22);
    assert!(!n.has(InitFlags::INIT_EXT));
    assert_eq!(n.max_pages, 32, "no MAX_PAGES: the kernel's 32 pages");
    assert_eq!(h.disp.parse_context().minor, 22);

    // And the connection serves.
    h.calls();
    let (u, d, out) = h.send(FUSE_GETATTR, 9, &W::new().u32(0).u32(0).u64(0).done(), &[]);
    assert_eq!(d, Dispatched::Handled(Opcode::Getattr));
    ok_body(&out, u, 104);
}

#[test]
fn init_major_8_gets_downgrade_reply_then_second_init() {
    let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
    let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(8, 1, 131072, FULL_OFFER), &[]);
    assert_eq!(d, Dispatched::InitDowngraded);
    let mut r = ok_body(&out, u, 8);
    assert_eq!(r.u32(), 7, "our major");
    assert_eq!(r.u32(), 45, "our minor");
    r.end();
    assert!(!h.disp.is_running());

    // Still waiting for INIT.
    let (u, _, out) = h.send(FUSE_LOOKUP, 1, &[], b"x\0");
    assert_error(&out, u, EIO);

    let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, 45, 131072, FULL_OFFER), &[]);
    assert!(matches!(d, Dispatched::Initialized(_)), "{d:?}");
    ok_body(&out, u, 64);
    assert!(h.disp.is_running());
}

#[test]
fn init_major_6_and_old_minors_get_eproto() {
    let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
    let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(6, 45, 131072, FULL_OFFER), &[]);
    assert_eq!(d, Dispatched::InitFailed(InitError::UnsupportedMajor(6)));
    assert_error(&out, u, 71);
    assert!(!h.disp.is_running());

    let arg = W::new().u32(7).u32(11).u32(65536).u32(1).done();
    let (u, d, out) = h.send(FUSE_INIT, 0, &arg, &[]);
    assert_eq!(d, Dispatched::InitFailed(InitError::UnsupportedMinor(11)));
    assert_error(&out, u, 71);

    // 7.12, the oldest served, is fine.
    let arg = W::new().u32(7).u32(12).u32(65536).u32(1).done();
    let (u, d, out) = h.send(FUSE_INIT, 0, &arg, &[]);
    assert!(matches!(d, Dispatched::Initialized(_)), "{d:?}");
    ok_body(&out, u, 24);
}

#[test]
fn init_refused_by_the_filesystem() {
    let fs = RecFs {
        refuse_init: Some(Errno::EPERM),
        ..RecFs::new()
    };
    let mut h = Harness::fresh(fs, InitConfig::default(), false);
    let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, 45, 131072, FULL_OFFER), &[]);
    assert!(matches!(d, Dispatched::InitFailed(_)), "{d:?}");
    assert_error(&out, u, 1);
    assert!(!h.disp.is_running());
}

#[test]
fn init_passthrough_timeout_and_setxattr_ext() {
    let config = InitConfig {
        wanted: DEFAULT_WANTED | InitFlags::SETXATTR_EXT,
        passthrough: Some(2),
        request_timeout: 30,
        max_write: 128 * 1024,
        max_readahead: Some(4096),
        max_background: 10,
        congestion_threshold: 7,
        ..InitConfig::default()
    };
    let mut h = Harness::fresh(RecFs::new(), config, false);
    let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, 45, 131072, FULL_OFFER), &[]);
    let Dispatched::Initialized(n) = d else {
        panic!("{d:?}")
    };
    let mut r = ok_body(&out, u, 64);
    assert_eq!((r.u32(), r.u32()), (7, 45));
    assert_eq!(r.u32(), 4096, "max_readahead: the smaller");
    assert_eq!(
        r.u32(),
        default_flags_word() | 1 << 29,
        "flags + SETXATTR_EXT"
    );
    assert_eq!((r.u16(), r.u16()), (10, 7));
    assert_eq!(r.u32(), 128 * 1024);
    assert_eq!(r.u32(), 1);
    assert_eq!(r.u16(), 32, "max_pages");
    assert_eq!(r.u16(), 0);
    assert_eq!(
        r.u32(),
        bits(&[7, 5, 10]),
        "flags2: HAS_RESEND, PASSTHROUGH, REQUEST_TIMEOUT"
    );
    assert_eq!(r.u32(), 2, "max_stack_depth");
    assert_eq!(r.u16(), 30, "request_timeout");
    r.zeros(22);
    r.end();
    assert!(n.has(InitFlags::PASSTHROUGH | InitFlags::SETXATTR_EXT));
    assert!(h.disp.parse_context().setxattr_ext);
}

#[test]
fn requests_before_init_get_eio() {
    for &op in Opcode::ALL {
        if op == Opcode::Init {
            continue;
        }
        let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
        let (arg, payload) = sample(op, false);
        let (u, d, out) = h.send(op as u32, 1, &arg, &payload);
        if op == Opcode::Destroy {
            // DESTROY is served in any state.
            assert_eq!(d, Dispatched::Destroyed);
            ok_body(&out, u, 0);
            continue;
        }
        let replied = !op.is_no_reply();
        assert_eq!(
            d,
            Dispatched::Malformed {
                error: ParseError::NotInitialized { opcode: op as u32 },
                replied
            },
            "{op}"
        );
        if replied {
            assert_error(&out, u, EIO);
        } else {
            assert!(out.is_empty(), "{op} answered");
        }
        assert!(h.calls().is_empty(), "{op} reached the filesystem");
    }
}

// ---------------------------------------------------------------------------
// One test per opcode
// ---------------------------------------------------------------------------

#[test]
fn lookup() {
    let mut h = Harness::new();
    let (u, d, out) = h.send(FUSE_LOOKUP, 1, &[], b"hello\0");
    assert_eq!(d, Dispatched::Handled(Opcode::Lookup));
    assert_eq!(
        h.only_call(FUSE_LOOKUP, u, 1),
        Call::Lookup {
            parent: 1,
            name: b"hello".to_vec()
        }
    );
    let mut r = ok_body(&out, u, 128);
    expect_entry(&mut r, 105);
    r.end();
}

#[test]
fn lookup_negative_and_error() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_LOOKUP, 1, &[], b"negative\0");
    let mut r = ok_body(&out, u, 128);
    assert_eq!(r.u64(), 0, "nodeid 0: negative entry");
    assert_eq!(r.u64(), 0, "generation");
    assert_eq!(r.u64(), 5, "entry_valid");
    assert_eq!(r.u64(), 0, "attr_valid");
    assert_eq!(r.u32(), 6, "entry_valid_nsec");
    assert_eq!(r.u32(), 0, "attr_valid_nsec");
    r.zeros(88);
    r.end();

    let (u, _, out) = h.send(FUSE_LOOKUP, 1, &[], b"missing\0");
    assert_error(&out, u, ENOENT);
}

#[test]
fn forget_gets_no_reply() {
    let mut h = Harness::new();
    let (u, d, out) = h.send(FUSE_FORGET, 42, &W::new().u64(3).done(), &[]);
    assert_eq!(d, Dispatched::Handled(Opcode::Forget));
    assert!(out.is_empty());
    assert_eq!(
        h.only_call(FUSE_FORGET, u, 42),
        Call::Forget {
            ino: 42,
            nlookup: 3
        }
    );
}

#[test]
fn getattr() {
    let mut h = Harness::new();
    // Without FUSE_GETATTR_FH the fh is not passed on.
    let (u, _, out) = h.send(FUSE_GETATTR, 9, &W::new().u32(0).u32(0).u64(77).done(), &[]);
    assert_eq!(
        h.only_call(FUSE_GETATTR, u, 9),
        Call::Getattr { ino: 9, fh: None }
    );
    let mut r = ok_body(&out, u, 104);
    assert_eq!(r.u64(), 5, "attr_valid");
    assert_eq!(r.u32(), 6, "attr_valid_nsec");
    assert_eq!(r.u32(), 0, "dummy");
    expect_attr(&mut r, 9);
    r.end();

    let arg = W::new().u32(FUSE_GETATTR_FH).u32(0).u64(77).done();
    let (u, _, _) = h.send(FUSE_GETATTR, 9, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_GETATTR, u, 9),
        Call::Getattr {
            ino: 9,
            fh: Some(77)
        }
    );
}

#[test]
fn setattr() {
    let mut h = Harness::new();
    let valid = FATTR_MODE
        | FATTR_UID
        | FATTR_GID
        | FATTR_SIZE
        | FATTR_ATIME
        | FATTR_MTIME_NOW
        | FATTR_FH
        | FATTR_LOCKOWNER
        | FATTR_CTIME
        | FATTR_KILL_SUIDGID;
    let arg = W::new()
        .u32(valid)
        .u32(0)
        .u64(0x77) // fh
        .u64(4096) // size
        .u64(0xABC) // lock_owner
        .u64(1000) // atime
        .u64(2000) // mtime
        .u64(3000) // ctime
        .u32(1) // atimensec
        .u32(2) // mtimensec
        .u32(3) // ctimensec
        .u32(0o100600) // mode
        .u32(0) // unused4
        .u32(65534) // uid
        .u32(65533) // gid
        .u32(0) // unused5
        .done();
    assert_eq!(arg.len(), 88);
    let (u, _, out) = h.send(FUSE_SETATTR, 9, &arg, &[]);
    let want = SetAttr {
        mode: Some(0o100600),
        uid: Some(65534),
        gid: Some(65533),
        size: Some(4096),
        atime: Some(TimeOrNow::Specific {
            secs: 1000,
            nsecs: 1,
        }),
        mtime: Some(TimeOrNow::Now),
        ctime: Some((3000, 3)),
        fh: Some(0x77),
        lock_owner: Some(0xABC),
        kill_suidgid: true,
    };
    assert_eq!(
        h.only_call(FUSE_SETATTR, u, 9),
        Call::Setattr { ino: 9, attr: want }
    );
    let mut r = ok_body(&out, u, 104);
    assert_eq!((r.u64(), r.u32(), r.u32()), (5, 6, 0));
    expect_attr(&mut r, 9);
    r.end();

    // Nothing valid: nothing to change.
    let arg = W::new().u32(0).bytes(&[0xFF; 84]).done();
    let (u, _, _) = h.send(FUSE_SETATTR, 9, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_SETATTR, u, 9),
        Call::Setattr {
            ino: 9,
            attr: SetAttr::default()
        }
    );
}

#[test]
fn readlink() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_READLINK, 12, &[], &[]);
    assert_eq!(
        h.only_call(FUSE_READLINK, u, 12),
        Call::Readlink { ino: 12 }
    );
    let mut r = ok_body(&out, u, 11);
    assert_eq!(r.bytes(11), b"link/target");
}

#[test]
fn symlink() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_SYMLINK, 1, &[], b"lnk\0../some/target\0");
    assert_eq!(
        h.only_call(FUSE_SYMLINK, u, 1),
        Call::Symlink {
            parent: 1,
            name: b"lnk".to_vec(),
            target: b"../some/target".to_vec()
        }
    );
    let mut r = ok_body(&out, u, 128);
    expect_entry(&mut r, 202);
}

#[test]
fn mknod() {
    let mut h = Harness::new();
    let arg = W::new().u32(0o020640).u32(0x0801).u32(0o027).u32(0).done();
    let (u, _, out) = h.send(FUSE_MKNOD, 3, &arg, b"dev\0");
    assert_eq!(
        h.only_call(FUSE_MKNOD, u, 3),
        Call::Mknod {
            parent: 3,
            name: b"dev".to_vec(),
            mode: 0o020640,
            umask: 0o027,
            rdev: 0x0801
        }
    );
    let mut r = ok_body(&out, u, 128);
    expect_entry(&mut r, 200);
}

#[test]
fn mkdir() {
    let mut h = Harness::new();
    let arg = W::new().u32(0o750).u32(0o022).done();
    let (u, _, out) = h.send(FUSE_MKDIR, 3, &arg, b"sub\0");
    assert_eq!(
        h.only_call(FUSE_MKDIR, u, 3),
        Call::Mkdir {
            parent: 3,
            name: b"sub".to_vec(),
            mode: 0o750,
            umask: 0o022
        }
    );
    let mut r = ok_body(&out, u, 128);
    expect_entry(&mut r, 201);
}

#[test]
fn unlink() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_UNLINK, 3, &[], b"file\0");
    assert_eq!(
        h.only_call(FUSE_UNLINK, u, 3),
        Call::Unlink {
            parent: 3,
            name: b"file".to_vec()
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn rmdir() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_RMDIR, 3, &[], b"dir\0");
    assert_eq!(
        h.only_call(FUSE_RMDIR, u, 3),
        Call::Rmdir {
            parent: 3,
            name: b"dir".to_vec()
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn rename() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_RENAME, 3, &W::new().u64(4).done(), b"a\0bb\0");
    assert_eq!(
        h.only_call(FUSE_RENAME, u, 3),
        Call::Rename {
            parent: 3,
            name: b"a".to_vec(),
            newparent: 4,
            newname: b"bb".to_vec(),
            flags: 0
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn rename2() {
    let mut h = Harness::new();
    let arg = W::new().u64(4).u32(2).u32(0).done(); // RENAME_EXCHANGE
    let (u, d, out) = h.send(FUSE_RENAME2, 3, &arg, b"a\0bb\0");
    assert_eq!(d, Dispatched::Handled(Opcode::Rename2));
    assert_eq!(
        h.only_call(FUSE_RENAME2, u, 3),
        Call::Rename {
            parent: 3,
            name: b"a".to_vec(),
            newparent: 4,
            newname: b"bb".to_vec(),
            flags: 2
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn link() {
    let mut h = Harness::new();
    // nodeid is the new parent; the argument names the existing inode.
    let (u, _, out) = h.send(FUSE_LINK, 3, &W::new().u64(8).done(), b"hard\0");
    assert_eq!(
        h.only_call(FUSE_LINK, u, 3),
        Call::Link {
            ino: 8,
            newparent: 3,
            newname: b"hard".to_vec()
        }
    );
    let mut r = ok_body(&out, u, 128);
    expect_entry(&mut r, 203);
}

#[test]
fn open() {
    let mut h = Harness::new();
    let arg = W::new()
        .u32(0o2 | 0o2000)
        .u32(FUSE_OPEN_KILL_SUIDGID)
        .done();
    let (u, _, out) = h.send(FUSE_OPEN, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_OPEN, u, 8),
        Call::Open {
            ino: 8,
            flags: 0o2002,
            open_flags: FUSE_OPEN_KILL_SUIDGID
        }
    );
    let mut r = ok_body(&out, u, 16);
    assert_eq!(r.u64(), 0x1119, "fh");
    assert_eq!(r.u32(), FOPEN_KEEP_CACHE, "open_flags");
    assert_eq!(r.i32(), 0, "backing_id");
    r.end();
}

#[test]
fn open_passthrough() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(
        FUSE_OPEN,
        INO_PASSTHROUGH,
        &W::new().u32(0).u32(0).done(),
        &[],
    );
    let mut r = ok_body(&out, u, 16);
    assert_eq!(r.u64(), 0x1111);
    assert_eq!(r.u32(), FOPEN_KEEP_CACHE | FOPEN_PASSTHROUGH);
    assert_eq!(r.i32(), 9, "backing_id");
}

#[test]
fn read() {
    let mut h = Harness::new();
    let arg = W::new()
        .u64(0x55) // fh
        .u64(100) // offset
        .u32(4096) // size
        .u32(FUSE_READ_LOCKOWNER)
        .u64(0xFEED) // lock_owner
        .u32(0o100002) // flags
        .u32(0)
        .done();
    let (u, _, out) = h.send(FUSE_READ, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_READ, u, 8),
        Call::Read {
            ino: 8,
            fh: 0x55,
            offset: 100,
            size: 4096,
            flags: 0o100002,
            lock_owner: Some(0xFEED)
        }
    );
    let mut r = ok_body(&out, u, 16);
    let want: Vec<u8> = (100..116).collect();
    assert_eq!(r.bytes(16), &want[..]);

    // Without FUSE_READ_LOCKOWNER the owner is not passed on.
    let arg = W::new()
        .u64(1)
        .u64(0)
        .u32(3)
        .u32(0)
        .u64(0xFEED)
        .u32(0)
        .u32(0)
        .done();
    let (u, _, out) = h.send(FUSE_READ, 8, &arg, &[]);
    assert!(matches!(
        h.only_call(FUSE_READ, u, 8),
        Call::Read {
            lock_owner: None,
            size: 3,
            ..
        }
    ));
    assert_eq!(ok_body(&out, u, 3).bytes(3), &[0, 1, 2]);
}

#[test]
fn read_answered_with_a_file_range() {
    let fs = RecFs {
        file: Some(memfd_with(b"0123456789abcdef").unwrap()),
        ..RecFs::new()
    };
    let mut h = Harness::ready(fs, InitConfig::default(), false);
    let arg = W::new()
        .u64(1)
        .u64(4)
        .u32(6)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .done();
    let (u, _, out) = h.send(FUSE_READ, INO_FILE_RANGE, &arg, &[]);
    assert_eq!(ok_body(&out, u, 6).bytes(6), b"456789");
}

#[test]
fn write() {
    let mut h = Harness::new();
    let flags = FUSE_WRITE_CACHE | FUSE_WRITE_LOCKOWNER | FUSE_WRITE_KILL_SUIDGID;
    let arg = W::new()
        .u64(0x55)
        .u64(4096)
        .u32(5)
        .u32(flags)
        .u64(0xBEEF)
        .u32(0o100001)
        .u32(0)
        .done();
    let (u, _, out) = h.send(FUSE_WRITE, 8, &arg, b"hello");
    assert_eq!(
        h.only_call(FUSE_WRITE, u, 8),
        Call::Write {
            ino: 8,
            fh: 0x55,
            offset: 4096,
            data: b"hello".to_vec(),
            write_flags: flags,
            flags: 0o100001,
            lock_owner: Some(0xBEEF)
        }
    );
    let mut r = ok_body(&out, u, 8);
    assert_eq!(r.u32(), 5, "size");
    assert_eq!(r.u32(), 0, "padding");
    r.end();

    // A large write, as with max_write 1 MiB.
    let data: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 253) as u8).collect();
    let arg = W::new()
        .u64(1)
        .u64(0)
        .u32(1 << 20)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .done();
    let (u, _, out) = h.send(FUSE_WRITE, 8, &arg, &data);
    let Call::Write {
        data: got,
        lock_owner,
        ..
    } = h.only_call(FUSE_WRITE, u, 8)
    else {
        panic!()
    };
    assert_eq!(got, data);
    assert_eq!(lock_owner, None);
    assert_eq!(ok_body(&out, u, 8).u32(), 1 << 20);
}

#[test]
fn statfs() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_STATFS, 1, &[], &[]);
    assert_eq!(h.only_call(FUSE_STATFS, u, 1), Call::Statfs { ino: 1 });
    let mut r = ok_body(&out, u, 80);
    assert_eq!(r.u64(), 1000, "blocks");
    assert_eq!(r.u64(), 500, "bfree");
    assert_eq!(r.u64(), 400, "bavail");
    assert_eq!(r.u64(), 300, "files");
    assert_eq!(r.u64(), 200, "ffree");
    assert_eq!(r.u32(), 4096, "bsize");
    assert_eq!(r.u32(), 255, "namelen");
    assert_eq!(r.u32(), 512, "frsize");
    r.zeros(4 + 24);
    r.end();
}

#[test]
fn release() {
    let mut h = Harness::new();
    let arg = W::new()
        .u64(0x55)
        .u32(0o100002)
        .u32(FUSE_RELEASE_FLUSH | FUSE_RELEASE_FLOCK_UNLOCK)
        .u64(0x0123)
        .done();
    let (u, _, out) = h.send(FUSE_RELEASE, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_RELEASE, u, 8),
        Call::Release {
            ino: 8,
            fh: 0x55,
            flags: 0o100002,
            release_flags: 3,
            lock_owner: 0x0123
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn fsync() {
    let mut h = Harness::new();
    let arg = W::new().u64(0x55).u32(FUSE_FSYNC_FDATASYNC).u32(0).done();
    let (u, _, out) = h.send(FUSE_FSYNC, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_FSYNC, u, 8),
        Call::Fsync {
            ino: 8,
            fh: 0x55,
            datasync: true
        }
    );
    ok_body(&out, u, 0).end();
    let (u, _, _) = h.send(FUSE_FSYNC, 8, &W::new().u64(1).u32(0).u32(0).done(), &[]);
    assert!(matches!(
        h.only_call(FUSE_FSYNC, u, 8),
        Call::Fsync {
            datasync: false,
            ..
        }
    ));
}

#[test]
fn setxattr_without_setxattr_ext() {
    let mut h = Harness::new();
    // 8-byte fuse_setxattr_in head: size, flags (XATTR_REPLACE).
    let arg = W::new().u32(6).u32(2).done();
    let (u, _, out) = h.send(FUSE_SETXATTR, 8, &arg, b"user.key\0value!");
    assert_eq!(
        h.only_call(FUSE_SETXATTR, u, 8),
        Call::Setxattr {
            ino: 8,
            name: b"user.key".to_vec(),
            value: b"value!".to_vec(),
            flags: 2,
            setxattr_flags: 0
        }
    );
    ok_body(&out, u, 0).end();

    // An empty value.
    let (u, _, _) = h.send(
        FUSE_SETXATTR,
        8,
        &W::new().u32(0).u32(0).done(),
        b"user.e\0",
    );
    assert!(matches!(
        h.only_call(FUSE_SETXATTR, u, 8),
        Call::Setxattr { value, .. } if value.is_empty()
    ));
}

#[test]
fn setxattr_with_setxattr_ext() {
    let config = InitConfig {
        wanted: DEFAULT_WANTED | InitFlags::SETXATTR_EXT,
        ..InitConfig::default()
    };
    let mut h = Harness::ready(RecFs::new(), config, false);
    h.calls();
    // 16-byte fuse_setxattr_in: size, flags, setxattr_flags, padding.
    let arg = W::new()
        .u32(3)
        .u32(1)
        .u32(FUSE_SETXATTR_ACL_KILL_SGID)
        .u32(0)
        .done();
    let (u, _, out) = h.send(FUSE_SETXATTR, 8, &arg, b"system.posix_acl_access\0abc");
    assert_eq!(
        h.only_call(FUSE_SETXATTR, u, 8),
        Call::Setxattr {
            ino: 8,
            name: b"system.posix_acl_access".to_vec(),
            value: b"abc".to_vec(),
            flags: 1,
            setxattr_flags: FUSE_SETXATTR_ACL_KILL_SGID
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn getxattr() {
    let mut h = Harness::new();
    // Size probe.
    let (u, _, out) = h.send(
        FUSE_GETXATTR,
        8,
        &W::new().u32(0).u32(0).done(),
        b"user.k\0",
    );
    assert_eq!(
        h.only_call(FUSE_GETXATTR, u, 8),
        Call::Getxattr {
            ino: 8,
            name: b"user.k".to_vec(),
            size: 0
        }
    );
    let mut r = ok_body(&out, u, 8);
    assert_eq!((r.u32(), r.u32()), (5, 0), "fuse_getxattr_out");
    // The value.
    let (u, _, out) = h.send(
        FUSE_GETXATTR,
        8,
        &W::new().u32(64).u32(0).done(),
        b"user.k\0",
    );
    h.calls();
    assert_eq!(ok_body(&out, u, 5).bytes(5), b"value");
    // Too small a buffer.
    let (u, _, out) = h.send(
        FUSE_GETXATTR,
        8,
        &W::new().u32(2).u32(0).done(),
        b"user.k\0",
    );
    assert_error(&out, u, 34);
}

#[test]
fn listxattr() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_LISTXATTR, 8, &W::new().u32(0).u32(0).done(), &[]);
    assert_eq!(
        h.only_call(FUSE_LISTXATTR, u, 8),
        Call::Listxattr { ino: 8, size: 0 }
    );
    let mut r = ok_body(&out, u, 8);
    assert_eq!((r.u32(), r.u32()), (14, 0));
    let (u, _, out) = h.send(FUSE_LISTXATTR, 8, &W::new().u32(4096).u32(0).done(), &[]);
    assert_eq!(ok_body(&out, u, 14).bytes(14), b"user.a\0user.b\0");
}

#[test]
fn removexattr() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_REMOVEXATTR, 8, &[], b"user.k\0");
    assert_eq!(
        h.only_call(FUSE_REMOVEXATTR, u, 8),
        Call::Removexattr {
            ino: 8,
            name: b"user.k".to_vec()
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn flush() {
    let mut h = Harness::new();
    let arg = W::new().u64(0x55).u32(0).u32(0).u64(0x0777).done();
    let (u, _, out) = h.send(FUSE_FLUSH, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_FLUSH, u, 8),
        Call::Flush {
            ino: 8,
            fh: 0x55,
            lock_owner: 0x0777
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn opendir() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_OPENDIR, 1, &W::new().u32(0o200000).u32(0).done(), &[]);
    assert_eq!(
        h.only_call(FUSE_OPENDIR, u, 1),
        Call::Opendir {
            ino: 1,
            flags: 0o200000
        }
    );
    let mut r = ok_body(&out, u, 16);
    assert_eq!(r.u64(), 0x2222);
    assert_eq!(r.u32(), FOPEN_CACHE_DIR);
    assert_eq!(r.i32(), 0);
}

fn read_in(fh: u64, offset: u64, size: u32) -> Vec<u8> {
    W::new()
        .u64(fh)
        .u64(offset)
        .u32(size)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .done()
}

fn dirent_len(name_len: usize) -> usize {
    (24 + name_len).div_ceil(8) * 8
}

/// Reads one READDIR record and checks it is listed entry `i`.
#[track_caller]
fn expect_dirent(r: &mut R<'_>, i: usize) {
    let name = dir_name(i);
    assert_eq!(r.u64(), 1000 + i as u64, "ino");
    assert_eq!(r.u64(), i as u64 + 1, "off");
    assert_eq!(r.u32(), name.len() as u32, "namelen");
    assert_eq!(r.u32(), dir_type(i), "type");
    assert_eq!(r.bytes(name.len()), &name[..], "name");
    r.zeros(dirent_len(name.len()) - 24 - name.len());
}

#[test]
fn readdir_packs_to_exact_size_and_resumes() {
    let mut h = Harness::new();
    // Exactly entries 0..5.
    let size: usize = (0..5).map(|i| dirent_len(dir_name(i).len())).sum();
    let (u, d, out) = h.send(FUSE_READDIR, 1, &read_in(0x2222, 0, size as u32), &[]);
    assert_eq!(d, Dispatched::Handled(Opcode::Readdir));
    assert_eq!(
        h.only_call(FUSE_READDIR, u, 1),
        Call::Readdir {
            ino: 1,
            fh: 0x2222,
            offset: 0,
            room: size
        }
    );
    let mut r = ok_body(&out, u, size);
    for i in 0..5 {
        expect_dirent(&mut r, i);
    }
    r.end();

    // Resume at the last entry's offset; one byte short of four entries.
    let size: usize = (5..9).map(|i| dirent_len(dir_name(i).len())).sum::<usize>() - 1;
    let (u, _, out) = h.send(FUSE_READDIR, 1, &read_in(0x2222, 5, size as u32), &[]);
    h.calls();
    let body: usize = (5..8).map(|i| dirent_len(dir_name(i).len())).sum();
    let mut r = ok_body(&out, u, body);
    for i in 5..8 {
        expect_dirent(&mut r, i);
    }
    r.end();

    // The rest in one go, then the end of the directory.
    let (u, _, out) = h.send(FUSE_READDIR, 1, &read_in(0x2222, 8, 4096), &[]);
    h.calls();
    let body: usize = (8..DIR_ENTRIES)
        .map(|i| dirent_len(dir_name(i).len()))
        .sum();
    let mut r = ok_body(&out, u, body);
    for i in 8..DIR_ENTRIES {
        expect_dirent(&mut r, i);
    }
    r.end();
    let (u, _, out) = h.send(FUSE_READDIR, 1, &read_in(0x2222, 20, 4096), &[]);
    ok_body(&out, u, 0).end();

    // Too small for even one entry: an empty reply.
    let (u, _, out) = h.send(FUSE_READDIR, 1, &read_in(0x2222, 0, 31), &[]);
    ok_body(&out, u, 0).end();
}

#[test]
fn readdir_is_bounded_by_the_scratch_buffer() {
    let mut h = Harness::new();
    let (u, _, _) = h.send(FUSE_READDIR, 1, &read_in(1, 0, 1 << 20), &[]);
    assert!(matches!(
        h.only_call(FUSE_READDIR, u, 1),
        Call::Readdir { room: 65536, .. }
    ));
}

#[test]
fn reply_directory_buf_packed_and_error() {
    let mut h = Harness::new();
    // Entries pushed through ReplyDirectory::buf() are the same bytes.
    let (u1, _, a) = h.send(FUSE_READDIR, 1, &read_in(1, 3, 200), &[]);
    let (u2, _, b) = h.send(FUSE_READDIR, 1, &read_in(FH_DIR_VIA_BUF, 3, 200), &[]);
    assert_eq!(a[0][16..], b[0][16..]);
    assert_eq!(out_header(&a[0]).2, u1);
    assert_eq!(out_header(&b[0]).2, u2);

    // Entries packed elsewhere.
    let (u, _, out) = h.send(FUSE_READDIR, 1, &read_in(FH_DIR_PACKED, 0, 4096), &[]);
    let mut r = ok_body(&out, u, 32);
    assert_eq!((r.u64(), r.u64(), r.u32(), r.u32()), (5, 1, 6, 8));
    assert_eq!(r.bytes(6), b"packed");
    r.zeros(2);

    let (u, _, out) = h.send(FUSE_READDIR, 1, &read_in(FH_DIR_ERROR, 0, 4096), &[]);
    assert_error(&out, u, 20);
}

#[test]
fn readdirplus_packs_to_exact_size_and_resumes() {
    let mut h = Harness::new();
    let plus_len = |i: usize| 128 + dirent_len(dir_name(i).len());
    let size: usize = (0..3).map(plus_len).sum();
    let (u, d, out) = h.send(FUSE_READDIRPLUS, 1, &read_in(7, 0, size as u32 + 100), &[]);
    assert_eq!(d, Dispatched::Handled(Opcode::Readdirplus));
    assert_eq!(
        h.only_call(FUSE_READDIRPLUS, u, 1),
        Call::Readdirplus {
            ino: 1,
            fh: 7,
            offset: 0,
            room: size + 100
        }
    );
    // The fourth record (160 bytes) does not fit in the 100 spare bytes.
    let mut r = ok_body(&out, u, size);
    for i in 0..3 {
        expect_entry(&mut r, 1000 + i as u64);
        expect_dirent(&mut r, i);
    }
    r.end();

    let size: usize = (3..6).map(plus_len).sum();
    let (u, _, out) = h.send(FUSE_READDIRPLUS, 1, &read_in(7, 3, size as u32), &[]);
    let mut r = ok_body(&out, u, size);
    for i in 3..6 {
        expect_entry(&mut r, 1000 + i as u64);
        expect_dirent(&mut r, i);
    }
    r.end();
}

#[test]
fn releasedir() {
    let mut h = Harness::new();
    let arg = W::new().u64(0x2222).u32(0o200000).u32(0).u64(0).done();
    let (u, _, out) = h.send(FUSE_RELEASEDIR, 1, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_RELEASEDIR, u, 1),
        Call::Releasedir {
            ino: 1,
            fh: 0x2222,
            flags: 0o200000
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn fsyncdir() {
    let mut h = Harness::new();
    let arg = W::new().u64(0x2222).u32(FUSE_FSYNC_FDATASYNC).u32(0).done();
    let (u, _, out) = h.send(FUSE_FSYNCDIR, 1, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_FSYNCDIR, u, 1),
        Call::Fsyncdir {
            ino: 1,
            fh: 0x2222,
            datasync: true
        }
    );
    ok_body(&out, u, 0).end();
}

fn lk_in(lk_flags: u32) -> Vec<u8> {
    W::new()
        .u64(0x55) // fh
        .u64(0xC0FFEE) // owner
        .u64(10) // lk.start
        .u64(19) // lk.end
        .u32(1) // lk.type F_WRLCK
        .u32(777) // lk.pid
        .u32(lk_flags)
        .u32(0)
        .done()
}

fn the_lock() -> fuse_file_lock {
    fuse_file_lock {
        start: 10,
        end: 19,
        typ: 1,
        pid: 777,
    }
}

#[test]
fn getlk() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_GETLK, 8, &lk_in(0), &[]);
    assert_eq!(
        h.only_call(FUSE_GETLK, u, 8),
        Call::Getlk {
            ino: 8,
            fh: 0x55,
            owner: 0xC0FFEE,
            lock: the_lock()
        }
    );
    let mut r = ok_body(&out, u, 24);
    assert_eq!((r.u64(), r.u64(), r.u32(), r.u32()), (11, 20, 1, 4242));
}

#[test]
fn setlk() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_SETLK, 8, &lk_in(FUSE_LK_FLOCK), &[]);
    assert_eq!(
        h.only_call(FUSE_SETLK, u, 8),
        Call::Setlk {
            ino: 8,
            fh: 0x55,
            owner: 0xC0FFEE,
            lock: the_lock(),
            flock: true,
            sleep: false
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn setlkw() {
    let mut h = Harness::new();
    let (u, d, out) = h.send(FUSE_SETLKW, 8, &lk_in(0), &[]);
    assert_eq!(d, Dispatched::Handled(Opcode::Setlkw));
    assert_eq!(
        h.only_call(FUSE_SETLKW, u, 8),
        Call::Setlk {
            ino: 8,
            fh: 0x55,
            owner: 0xC0FFEE,
            lock: the_lock(),
            flock: false,
            sleep: true
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn access() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_ACCESS, 8, &W::new().u32(6).u32(0).done(), &[]);
    assert_eq!(
        h.only_call(FUSE_ACCESS, u, 8),
        Call::Access { ino: 8, mask: 6 }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn create() {
    let mut h = Harness::new();
    let arg = W::new().u32(0o101).u32(0o100644).u32(0o022).u32(0).done();
    let (u, _, out) = h.send(FUSE_CREATE, 3, &arg, b"new.txt\0");
    assert_eq!(
        h.only_call(FUSE_CREATE, u, 3),
        Call::Create {
            parent: 3,
            name: b"new.txt".to_vec(),
            mode: 0o100644,
            umask: 0o022,
            flags: 0o101
        }
    );
    let mut r = ok_body(&out, u, 144);
    expect_entry(&mut r, 300);
    assert_eq!(r.u64(), 0x3333, "fh");
    assert_eq!(r.u32(), FOPEN_DIRECT_IO | FOPEN_KEEP_CACHE);
    assert_eq!(r.i32(), 0, "backing_id");
    r.end();

    let (u, _, out) = h.send(FUSE_CREATE, 3, &arg, b"passthrough\0");
    let mut r = ok_body(&out, u, 144);
    expect_entry(&mut r, 300);
    assert_eq!(r.u64(), 0x3333);
    assert_eq!(r.u32(), FOPEN_DIRECT_IO | FOPEN_PASSTHROUGH);
    assert_eq!(r.i32(), 5);
}

#[test]
fn tmpfile_named_slash_as_the_kernel_sends_it() {
    let mut h = Harness::new();
    let arg = W::new()
        .u32(0o20000002)
        .u32(0o100600)
        .u32(0o077)
        .u32(0)
        .done();
    let (u, d, out) = h.send(FUSE_TMPFILE, 3, &arg, b"/\0");
    assert_eq!(d, Dispatched::Handled(Opcode::Tmpfile));
    assert_eq!(
        h.only_call(FUSE_TMPFILE, u, 3),
        Call::Tmpfile {
            parent: 3,
            name: b"/".to_vec(),
            mode: 0o100600,
            umask: 0o077,
            flags: 0o20000002
        }
    );
    let mut r = ok_body(&out, u, 144);
    expect_entry(&mut r, 301);
    assert_eq!((r.u64(), r.u32(), r.i32()), (0x3334, 0, 0));
}

#[test]
fn interrupt_gets_no_reply() {
    let mut h = Harness::new();
    // The kernel reuses the target's unique with bit 0 set.
    let msg = message(FUSE_INTERRUPT, 0x41, 0, &W::new().u64(0x40).done(), &[]);
    let (d, out) = h.send_bytes(&msg);
    assert_eq!(d, Dispatched::Handled(Opcode::Interrupt));
    assert!(out.is_empty());
    assert_eq!(
        h.only_call(FUSE_INTERRUPT, 0x41, 0),
        Call::Interrupt { unique: 0x40 }
    );
}

#[test]
fn bmap() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_BMAP, 8, &W::new().u64(21).u32(1024).u32(0).done(), &[]);
    assert_eq!(
        h.only_call(FUSE_BMAP, u, 8),
        Call::Bmap {
            ino: 8,
            blocksize: 1024,
            block: 21
        }
    );
    assert_eq!(ok_body(&out, u, 8).u64(), 43);
}

#[test]
fn destroy_answers_and_stops() {
    let mut h = Harness::new();
    let (u, d, out) = h.send(FUSE_DESTROY, 0, &[], &[]);
    assert_eq!(d, Dispatched::Destroyed);
    ok_body(&out, u, 0).end();
    assert!(matches!(&h.calls()[..], [(_, Call::Destroy)]));
    assert!(!h.disp.is_running());
    // Nothing is served afterwards.
    let (u, d, out) = h.send(FUSE_LOOKUP, 1, &[], b"x\0");
    assert!(matches!(d, Dispatched::Malformed { replied: true, .. }));
    assert_error(&out, u, EIO);
    assert!(h.calls().is_empty());
}

fn ioctl_in(in_size: u32, out_size: u32) -> Vec<u8> {
    W::new()
        .u64(0x55) // fh
        .u32(FUSE_IOCTL_UNRESTRICTED | FUSE_IOCTL_DIR)
        .u32(0x8004_5401) // cmd
        .u64(0x7FFF_0000_1000) // arg
        .u32(in_size)
        .u32(out_size)
        .done()
}

#[test]
fn ioctl_data_in_and_out() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_IOCTL, 8, &ioctl_in(4, 3), b"abcd");
    assert_eq!(
        h.only_call(FUSE_IOCTL, u, 8),
        Call::Ioctl {
            ino: 8,
            fh: 0x55,
            flags: FUSE_IOCTL_UNRESTRICTED | FUSE_IOCTL_DIR,
            cmd: 0x8004_5401,
            arg: 0x7FFF_0000_1000,
            data: b"abcd".to_vec(),
            out_size: 3
        }
    );
    let mut r = ok_body(&out, u, 16 + 3);
    assert_eq!(r.i32(), 42, "result");
    assert_eq!(r.u32(), 0, "flags");
    assert_eq!(r.u32(), 0, "in_iovs");
    assert_eq!(r.u32(), 0, "out_iovs");
    assert_eq!(r.bytes(3), b"dcb");
    r.end();
}

#[test]
fn ioctl_retry() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_IOCTL, 8, &ioctl_in(5, 64), b"retry");
    h.calls();
    let mut r = ok_body(&out, u, 16 + 3 * 16);
    assert_eq!(r.i32(), 0);
    assert_eq!(r.u32(), FUSE_IOCTL_RETRY);
    assert_eq!((r.u32(), r.u32()), (1, 2), "in_iovs, out_iovs");
    assert_eq!((r.u64(), r.u64()), (0x1000, 8));
    assert_eq!((r.u64(), r.u64()), (0x2000, 16));
    assert_eq!((r.u64(), r.u64()), (0x1000, 8));
    r.end();
}

#[test]
fn poll() {
    let mut h = Harness::new();
    let arg = W::new()
        .u64(0x55)
        .u64(0xABCD)
        .u32(FUSE_POLL_SCHEDULE_NOTIFY)
        .u32(0x7)
        .done();
    let (u, _, out) = h.send(FUSE_POLL, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_POLL, u, 8),
        Call::Poll {
            ino: 8,
            fh: 0x55,
            kh: 0xABCD,
            flags: FUSE_POLL_SCHEDULE_NOTIFY,
            events: 7
        }
    );
    let mut r = ok_body(&out, u, 8);
    assert_eq!((r.u32(), r.u32()), (5, 0));
}

#[test]
fn notify_reply_gets_no_reply() {
    let mut h = Harness::new();
    // The answer to a NOTIFY_RETRIEVE with notify_unique 0x99.
    let arg = W::new().u64(0).u64(8192).u32(4).u32(0).u64(0).u64(0).done();
    let msg = message(FUSE_NOTIFY_REPLY, 0x99, 8, &arg, b"data");
    let (d, out) = h.send_bytes(&msg);
    assert_eq!(d, Dispatched::Handled(Opcode::NotifyReply));
    assert!(out.is_empty());
    assert_eq!(
        h.only_call(FUSE_NOTIFY_REPLY, 0x99, 8),
        Call::NotifyReply {
            ino: 8,
            offset: 8192,
            data: b"data".to_vec()
        }
    );
}

#[test]
fn batch_forget_gets_no_reply() {
    let mut h = Harness::new();
    let payload = W::new()
        .u64(5)
        .u64(1)
        .u64(6)
        .u64(2)
        .u64(7)
        .u64(u64::MAX)
        .done();
    let (u, d, out) = h.send(
        FUSE_BATCH_FORGET,
        0,
        &W::new().u32(3).u32(0).done(),
        &payload,
    );
    assert_eq!(d, Dispatched::Handled(Opcode::BatchForget));
    assert!(out.is_empty());
    assert_eq!(
        h.only_call(FUSE_BATCH_FORGET, u, 0),
        Call::BatchForget {
            nodes: vec![(5, 1), (6, 2), (7, u64::MAX)]
        }
    );
    // An empty batch.
    let (u, _, out) = h.send(FUSE_BATCH_FORGET, 0, &W::new().u32(0).u32(0).done(), &[]);
    assert!(out.is_empty());
    assert_eq!(
        h.only_call(FUSE_BATCH_FORGET, u, 0),
        Call::BatchForget { nodes: vec![] }
    );
}

#[test]
fn fallocate() {
    let mut h = Harness::new();
    let arg = W::new().u64(0x55).u64(4096).u64(8192).u32(3).u32(0).done();
    let (u, _, out) = h.send(FUSE_FALLOCATE, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_FALLOCATE, u, 8),
        Call::Fallocate {
            ino: 8,
            fh: 0x55,
            offset: 4096,
            length: 8192,
            mode: 3
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn lseek() {
    let mut h = Harness::new();
    let arg = W::new().u64(0x55).u64(4096).u32(4).u32(0).done();
    let (u, _, out) = h.send(FUSE_LSEEK, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_LSEEK, u, 8),
        Call::Lseek {
            ino: 8,
            fh: 0x55,
            offset: 4096,
            whence: 4
        }
    );
    assert_eq!(ok_body(&out, u, 8).u64(), 4196);
}

const FIVE_GIB: u64 = 5 << 30;

fn copy_in(len: u64) -> Vec<u8> {
    W::new()
        .u64(0x55) // fh_in
        .u64(100) // off_in
        .u64(9) // nodeid_out
        .u64(0x66) // fh_out
        .u64(200) // off_out
        .u64(len)
        .u64(0) // flags
        .done()
}

fn expected_copy(len: u64) -> Call {
    Call::CopyFileRange {
        ino_in: 8,
        fh_in: 0x55,
        off_in: 100,
        ino_out: 9,
        fh_out: 0x66,
        off_out: 200,
        len,
        flags: 0,
    }
}

#[test]
fn copy_file_range_answers_32_bits() {
    let mut h = Harness::new();
    let (u, d, out) = h.send(FUSE_COPY_FILE_RANGE, 8, &copy_in(FIVE_GIB), &[]);
    assert_eq!(d, Dispatched::Handled(Opcode::CopyFileRange));
    assert_eq!(
        h.only_call(FUSE_COPY_FILE_RANGE, u, 8),
        expected_copy(FIVE_GIB)
    );
    // fuse_write_out: the count clamped to 32 bits, then padding.
    let mut r = ok_body(&out, u, 8);
    assert_eq!(r.u32(), u32::MAX);
    assert_eq!(r.u32(), 0);

    let (u, _, out) = h.send(FUSE_COPY_FILE_RANGE, 8, &copy_in(4096), &[]);
    h.calls();
    let mut r = ok_body(&out, u, 8);
    assert_eq!((r.u32(), r.u32()), (4096, 0));
}

#[test]
fn copy_file_range_64_answers_64_bits() {
    let mut h = Harness::new();
    let (u, d, out) = h.send(FUSE_COPY_FILE_RANGE_64, 8, &copy_in(FIVE_GIB), &[]);
    assert_eq!(d, Dispatched::Handled(Opcode::CopyFileRange64));
    assert_eq!(
        h.only_call(FUSE_COPY_FILE_RANGE_64, u, 8),
        expected_copy(FIVE_GIB)
    );
    assert_eq!(ok_body(&out, u, 8).u64(), FIVE_GIB);
}

#[test]
fn setupmapping() {
    let mut h = Harness::new();
    let arg = W::new()
        .u64(0x55)
        .u64(1 << 21)
        .u64(1 << 21)
        .u64(3)
        .u64(1 << 30)
        .done();
    let (u, _, out) = h.send(FUSE_SETUPMAPPING, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_SETUPMAPPING, u, 8),
        Call::Setupmapping {
            ino: 8,
            arg: fuse_setupmapping_in {
                fh: 0x55,
                foffset: 1 << 21,
                len: 1 << 21,
                flags: FUSE_SETUPMAPPING_FLAG_READ | FUSE_SETUPMAPPING_FLAG_WRITE,
                moffset: 1 << 30
            }
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn removemapping() {
    // In a ring entry the array has its own, aligned, buffer.
    let mut h = Harness::new();
    let entries = W::new()
        .u64(1 << 21)
        .u64(4096)
        .u64(1 << 22)
        .u64(8192)
        .done();
    let (u, d, out) = h.send_segments(FUSE_REMOVEMAPPING, 8, &W::new().u32(2).done(), &entries);
    assert_eq!(d, Dispatched::Handled(Opcode::Removemapping));
    assert_eq!(
        h.only_call(FUSE_REMOVEMAPPING, u, 8),
        Call::Removemapping {
            ino: 8,
            entries: vec![(1 << 21, 4096), (1 << 22, 8192)]
        }
    );
    ok_body(&out, u, 0).end();

    // In a contiguous message the array follows the 4-byte
    // fuse_removemapping_in at offset 44 (not 8-aligned): it is read in place
    // all the same.
    let (u, d, out) = h.send(FUSE_REMOVEMAPPING, 8, &W::new().u32(2).done(), &entries);
    assert_eq!(d, Dispatched::Handled(Opcode::Removemapping));
    assert_eq!(
        h.only_call(FUSE_REMOVEMAPPING, u, 8),
        Call::Removemapping {
            ino: 8,
            entries: vec![(1 << 21, 4096), (1 << 22, 8192)]
        }
    );
    ok_body(&out, u, 0).end();
}

#[test]
fn syncfs() {
    let mut h = Harness::new();
    let (u, _, out) = h.send(FUSE_SYNCFS, 1, &W::new().u64(0).done(), &[]);
    assert_eq!(h.only_call(FUSE_SYNCFS, u, 1), Call::Syncfs { ino: 1 });
    ok_body(&out, u, 0).end();
}

#[test]
fn statx() {
    let mut h = Harness::new();
    let arg = W::new()
        .u32(FUSE_GETATTR_FH)
        .u32(0)
        .u64(0x55)
        .u32(0x2000) // AT_STATX_FORCE_SYNC
        .u32(0xfff)
        .done();
    let (u, _, out) = h.send(FUSE_STATX, 8, &arg, &[]);
    assert_eq!(
        h.only_call(FUSE_STATX, u, 8),
        Call::Statx {
            ino: 8,
            fh: Some(0x55),
            getattr_flags: FUSE_GETATTR_FH,
            sx_flags: 0x2000,
            sx_mask: 0xfff
        }
    );
    let mut r = ok_body(&out, u, 288);
    assert_eq!(r.u64(), 7, "attr_valid");
    assert_eq!(r.u32(), 8, "attr_valid_nsec");
    assert_eq!(r.u32(), 0, "flags");
    r.zeros(16);
    assert_eq!(r.u32(), 0x7ff, "mask");
    assert_eq!(r.u32(), 4096, "blksize");
    assert_eq!(r.u64(), 0x20, "attributes");
    assert_eq!((r.u32(), r.u32(), r.u32()), (2, 501, 502), "nlink uid gid");
    assert_eq!(r.u16(), 0o100600, "mode");
    r.zeros(2);
    assert_eq!(
        (r.u64(), r.u64(), r.u64()),
        (8, 12345, 24),
        "ino size blocks"
    );
    assert_eq!(r.u64(), 0x30, "attributes_mask");
    for (sec, nsec) in [(1, 2), (3, 4), (-5, 6), (7, 8)] {
        assert_eq!((r.i64(), r.u32()), (sec, nsec), "timestamp");
        r.zeros(4);
    }
    assert_eq!(
        (r.u32(), r.u32(), r.u32(), r.u32()),
        (9, 10, 11, 12),
        "devices"
    );
    r.zeros(14 * 8);
    r.end();
}

#[test]
fn cuse_init_is_not_served() {
    let mut h = Harness::new();
    let arg = W::new().u32(7).u32(45).u32(0).u32(0).done();
    let (u, d, out) = h.send(CUSE_INIT, 0, &arg, &[]);
    assert_eq!(d, Dispatched::Handled(Opcode::CuseInit));
    assert_error(&out, u, 38);
    assert!(h.calls().is_empty());
}

/// Opcodes with a dedicated test above; must be every opcode.
const COVERED: &[Opcode] = &[
    Opcode::Lookup,
    Opcode::Forget,
    Opcode::Getattr,
    Opcode::Setattr,
    Opcode::Readlink,
    Opcode::Symlink,
    Opcode::Mknod,
    Opcode::Mkdir,
    Opcode::Unlink,
    Opcode::Rmdir,
    Opcode::Rename,
    Opcode::Link,
    Opcode::Open,
    Opcode::Read,
    Opcode::Write,
    Opcode::Statfs,
    Opcode::Release,
    Opcode::Fsync,
    Opcode::Setxattr,
    Opcode::Getxattr,
    Opcode::Listxattr,
    Opcode::Removexattr,
    Opcode::Flush,
    Opcode::Init,
    Opcode::Opendir,
    Opcode::Readdir,
    Opcode::Releasedir,
    Opcode::Fsyncdir,
    Opcode::Getlk,
    Opcode::Setlk,
    Opcode::Setlkw,
    Opcode::Access,
    Opcode::Create,
    Opcode::Interrupt,
    Opcode::Bmap,
    Opcode::Destroy,
    Opcode::Ioctl,
    Opcode::Poll,
    Opcode::NotifyReply,
    Opcode::BatchForget,
    Opcode::Fallocate,
    Opcode::Readdirplus,
    Opcode::Rename2,
    Opcode::Lseek,
    Opcode::CopyFileRange,
    Opcode::Setupmapping,
    Opcode::Removemapping,
    Opcode::Syncfs,
    Opcode::Tmpfile,
    Opcode::Statx,
    Opcode::CopyFileRange64,
    Opcode::CuseInit,
];

#[test]
fn every_opcode_has_a_test() {
    assert_eq!(COVERED, Opcode::ALL);
    assert_eq!(Opcode::ALL.len(), 52);
}

// ---------------------------------------------------------------------------
// Across opcodes
// ---------------------------------------------------------------------------

#[test]
fn unknown_opcodes_get_enosys() {
    for opcode in [0, 7, 19, 54, 99, 4095, 4097, u32::MAX] {
        for initialized in [false, true] {
            let mut h = if initialized {
                Harness::new()
            } else {
                Harness::fresh(RecFs::new(), InitConfig::default(), false)
            };
            let (u, d, out) = h.send(opcode, 1, &[1, 2, 3, 4, 5, 6, 7, 8], b"x\0");
            assert_eq!(
                d,
                Dispatched::Malformed {
                    error: ParseError::UnknownOpcode(opcode),
                    replied: true
                }
            );
            assert_error(&out, u, 38);
            assert!(h.calls().is_empty());
        }
    }
}

#[test]
fn read_only_refuses_every_modifying_opcode() {
    let mut h = Harness::ready(RecFs::new(), InitConfig::default(), true);
    h.calls();
    for &op in Opcode::ALL {
        if matches!(op, Opcode::Init | Opcode::Destroy) {
            continue;
        }
        let (arg, payload) = sample(op, false);
        let (u, d, out) = h.send(op as u32, 8, &arg, &payload);
        if op.is_modifying() {
            assert_eq!(d, Dispatched::Handled(op));
            assert_error(&out, u, 30);
            assert!(h.calls().is_empty(), "{op} reached the filesystem");
        } else {
            assert_ne!(
                out.first().map(|m| out_header(m).1),
                Some(-30),
                "{op} refused"
            );
            if op != Opcode::CuseInit {
                assert_eq!(h.calls().len(), 1, "{op} did not reach the filesystem");
            }
        }
    }
    // All 17 modifying opcodes were refused.
    let modifying = Opcode::ALL.iter().filter(|o| o.is_modifying()).count();
    assert_eq!(modifying, 17);
}

#[test]
fn read_only_open_for_writing_or_truncating_is_erofs() {
    let mut h = Harness::ready(RecFs::new(), InitConfig::default(), true);
    h.calls();
    const O_WRONLY: u32 = 0o1;
    const O_RDWR: u32 = 0o2;
    const O_TRUNC: u32 = 0o1000;
    const O_APPEND: u32 = 0o2000;
    for flags in [O_WRONLY, O_RDWR, O_TRUNC, O_WRONLY | O_TRUNC, 0o3] {
        let (u, _, out) = h.send(FUSE_OPEN, 8, &W::new().u32(flags).u32(0).done(), &[]);
        assert_error(&out, u, 30);
    }
    assert!(h.calls().is_empty());
    for flags in [0, O_APPEND, 0o100000] {
        let (u, _, out) = h.send(FUSE_OPEN, 8, &W::new().u32(flags).u32(0).done(), &[]);
        ok_body(&out, u, 16);
        assert_eq!(h.calls().len(), 1);
    }
    // OPENDIR is never refused.
    let (u, _, out) = h.send(FUSE_OPENDIR, 1, &W::new().u32(O_RDWR).u32(0).done(), &[]);
    ok_body(&out, u, 16);
}

#[test]
fn reply_handle_dropped_without_answer_is_eio() {
    let mut h = Harness::new();
    let (u, d, out) = h.send(FUSE_LOOKUP, 1, &[], b"drop\0");
    assert_eq!(d, Dispatched::Handled(Opcode::Lookup));
    assert_error(&out, u, EIO);
}

#[test]
fn replies_of_too_many_parts_keep_len_consistent() {
    use fuselage_core::reply::{MAX_REPLY_PARTS, ReplyData};
    let rec = ReplyRecorder::new();
    // Past the limit the request is answered EIO rather than truncated.
    let parts = [&b"ab"[..]; MAX_REPLY_PARTS + 7];
    ReplyData::new(0x10, &rec).data_parts(&parts);
    let out = rec.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out_header(&out[0]), (16, -5, 0x10));
    assert_eq!(out[0].len(), 16);
    // Within the limit, everything goes.
    ReplyData::new(0x12, &rec).data_parts(&parts[..MAX_REPLY_PARTS]);
    assert_eq!(rec.take_replies()[0].body, b"ab".repeat(MAX_REPLY_PARTS));
}

#[test]
fn uniques_are_echoed_whole() {
    let mut h = Harness::new();
    for unique in [1, 0x7FFF_FFFF_FFFF_FFFE, FUSE_UNIQUE_RESEND | 6, u64::MAX] {
        let msg = message(FUSE_STATFS, unique, 1, &[], &[]);
        let (_, out) = h.send_bytes(&msg);
        assert_eq!(out_header(&out[0]), (96, 0, unique));
        let buf = AlignedBuf::from_bytes(&msg);
        let req = Request::parse(&buf, ParseContext::CURRENT).unwrap();
        assert_eq!(req.is_resend(), unique & (1 << 63) != 0);
    }
}

#[test]
fn extensions_are_split_off() {
    // CREATE with a supplementary-groups extension (total_extlen 2).
    let ext = W::new().u32(16).u32(FUSE_EXT_GROUPS).u32(1).u32(100).done();
    let arg = W::new().u32(0o101).u32(0o100644).u32(0o022).u32(0).done();
    let mut v = in_header(40 + 16 + 8 + 16, FUSE_CREATE, 2, 1, 2);
    v.extend(arg);
    v.extend_from_slice(b"name\0\0\0\0");
    v.extend_from_slice(&ext);
    let buf = AlignedBuf::from_bytes(&v);
    let req = Request::parse(&buf, ParseContext::CURRENT).unwrap();
    assert_eq!(req.extensions, &ext[..]);
    let Operation::Create { arg, name } = req.operation else {
        panic!("{:?}", req.operation)
    };
    assert_eq!(name.to_bytes(), b"name");
    assert_eq!(arg.mode, 0o100644);
    assert_eq!(req.header.total_extlen, 2);

    // And the dispatcher serves it.
    let mut h = Harness::new();
    let (d, out) = h.send_bytes(&v);
    assert_eq!(d, Dispatched::Handled(Opcode::Create));
    ok_body(&out, 2, 144);
}

#[test]
fn segments_and_contiguous_agree_for_every_opcode() {
    for &op in Opcode::ALL {
        if matches!(op, Opcode::Init | Opcode::Destroy) {
            continue;
        }
        let (arg, payload) = sample(op, false);
        let mut a = Harness::new();
        let mut b = Harness::new();
        let (_, da, out_a) = a.send(op as u32, 8, &arg, &payload);
        let (_, db, out_b) = b.send_segments(op as u32, 8, &arg, &payload);
        assert_eq!(da, db, "{op}");
        assert_eq!(a.calls(), b.calls(), "{op}");
        assert_eq!(out_a, out_b, "{op}");
    }
}

// ---------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------

#[test]
fn notifications_byte_exact() {
    let rec = ReplyRecorder::new();
    let n = Notifier::new(&rec);
    let one = || {
        let mut m = rec.take();
        assert_eq!(m.len(), 1);
        m.pop().unwrap()
    };

    n.poll_wakeup(0x1234);
    let m = one();
    assert_eq!(out_header(&m), (24, FUSE_NOTIFY_POLL as i32, 0));
    let mut r = R::new(&m[16..]);
    assert_eq!(r.u64(), 0x1234, "kh");
    r.end();

    n.inval_inode(5, 4096, -1);
    let m = one();
    assert_eq!(out_header(&m), (40, 2, 0));
    let mut r = R::new(&m[16..]);
    assert_eq!((r.u64(), r.i64(), r.i64()), (5, 4096, -1));
    r.end();

    n.inval_entry(1, b"foo", FUSE_EXPIRE_ONLY).unwrap();
    let m = one();
    assert_eq!(out_header(&m), (36, 3, 0));
    let mut r = R::new(&m[16..]);
    assert_eq!((r.u64(), r.u32(), r.u32()), (1, 3, FUSE_EXPIRE_ONLY));
    assert_eq!(r.bytes(4), b"foo\0");
    r.end();

    n.store(5, 8192, b"hello");
    let m = one();
    assert_eq!(out_header(&m), (45, 4, 0));
    let mut r = R::new(&m[16..]);
    assert_eq!((r.u64(), r.u64(), r.u32(), r.u32()), (5, 8192, 5, 0));
    assert_eq!(r.bytes(5), b"hello");
    r.end();

    n.retrieve(0x99, 5, 4096, 65536);
    let m = one();
    assert_eq!(out_header(&m), (48, 5, 0));
    let mut r = R::new(&m[16..]);
    assert_eq!((r.u64(), r.u64(), r.u64()), (0x99, 5, 4096));
    assert_eq!((r.u32(), r.u32()), (65536, 0));
    r.end();

    n.delete(1, 5, b"x").unwrap();
    let m = one();
    assert_eq!(out_header(&m), (42, 6, 0));
    let mut r = R::new(&m[16..]);
    assert_eq!((r.u64(), r.u64(), r.u32(), r.u32()), (1, 5, 1, 0));
    assert_eq!(r.bytes(2), b"x\0");
    r.end();

    n.resend();
    assert_eq!(one(), W::new().u32(16).i32(7).u64(0).done());
    n.inc_epoch();
    assert_eq!(one(), W::new().u32(16).i32(8).u64(0).done());

    n.prune(&[1, 2, u64::MAX]).unwrap();
    let m = one();
    assert_eq!(out_header(&m), (56, 9, 0));
    let mut r = R::new(&m[16..]);
    assert_eq!((r.u32(), r.u32(), r.u64()), (3, 0, 0));
    assert_eq!((r.u64(), r.u64(), r.u64()), (1, 2, u64::MAX));
    r.end();

    // The kernel side accepts them all as notifications.
    n.poll_wakeup(1);
    let parsed = rec.take_replies();
    assert_eq!(parsed[0].notify_code(), Some(FUSE_NOTIFY_POLL));
    assert_eq!(parsed[0].errno(), None);
}

#[test]
fn notifications_refuse_bad_names_and_too_many_ids() {
    let rec = ReplyRecorder::new();
    let n = Notifier::new(&rec);
    assert_eq!(n.inval_entry(1, b"", 0), Err(NotifyError::BadName));
    assert_eq!(
        n.inval_entry(1, &[b'a'; 1025], 0),
        Err(NotifyError::BadName)
    );
    assert_eq!(n.delete(1, 2, b""), Err(NotifyError::BadName));
    assert_eq!(n.prune(&[0; PRUNE_MAX + 1]), Err(NotifyError::TooMany));
    assert!(rec.is_empty(), "nothing sent for refused notifications");
    assert_eq!(NotifyError::BadName.errno(), Errno::ENAMETOOLONG);
    assert_eq!(NotifyError::TooMany.errno(), Errno::E2BIG);

    n.inval_entry(1, &[b'a'; 1024], 0).unwrap();
    n.prune(&[7; PRUNE_MAX]).unwrap();
    let m = rec.take_replies();
    assert_eq!(m[0].header.len as usize, 16 + 16 + 1025);
    assert_eq!(m[1].header.len as usize, 16 + 16 + 8 * PRUNE_MAX);
    let _: Vec<Reply> = m;
}
