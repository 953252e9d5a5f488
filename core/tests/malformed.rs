//! Malformed requests for every opcode: the dispatcher answers with the
//! right errno when the request's unique can be trusted, drops the message
//! otherwise, never calls the filesystem, and never panics.

mod common;

use common::*;
use fuselage_core::abi::*;
use fuselage_core::request::{NAME_MAX, SYMLINK_MAX, XATTR_NAME_MAX, arg_size};
use fuselage_core::{Dispatched, InitConfig, Opcode, ParseContext, ParseError};
use fuselage_testkit::AlignedBuf;

const EINVAL: i32 = 22;
const ENAMETOOLONG: i32 = 36;

/// Checks a malformed request was refused with `error`: answered with its
/// errno unless the opcode expects no reply, and the filesystem untouched.
#[track_caller]
fn refused(h: &Harness, op: u32, unique: u64, d: Dispatched, out: &[Vec<u8>], error: ParseError) {
    let no_reply = Opcode::from_u32(op).is_some_and(|o| o.is_no_reply());
    assert_eq!(
        d,
        Dispatched::Malformed {
            error,
            replied: !no_reply
        },
        "opcode {op}"
    );
    if no_reply {
        assert!(out.is_empty(), "opcode {op} answered: {out:?}");
    } else {
        assert_error(out, unique, error.errno().0);
    }
    assert!(h.calls().is_empty(), "opcode {op} reached the filesystem");
}

/// Checks a message was dropped: no reply, no call.
#[track_caller]
fn dropped(h: &Harness, d: Dispatched, out: &[Vec<u8>], error: ParseError) {
    assert_eq!(
        d,
        Dispatched::Malformed {
            error,
            replied: false
        }
    );
    assert!(out.is_empty(), "answered: {out:?}");
    assert!(h.calls().is_empty());
}

// ---------------------------------------------------------------------------
// Argument structs cut short
// ---------------------------------------------------------------------------

#[test]
fn truncated_argument_structs_of_every_opcode() {
    let mut h = Harness::new();
    let mut checked = 0;
    for &op in Opcode::ALL {
        if op == Opcode::Init {
            continue; // below
        }
        for ext in [false, true] {
            if ext && op != Opcode::Setxattr {
                continue;
            }
            let ctx = ParseContext {
                minor: 45,
                setxattr_ext: ext,
            };
            let mut hx = if ext {
                setxattr_ext_harness()
            } else {
                Harness::new()
            };
            let h = if ext { &mut hx } else { &mut h };
            let (arg, _) = sample(op, ext);
            let fixed = arg_size(op, ctx);
            assert_eq!(arg.len(), fixed, "{op}: sample matches arg_size");
            for len in 0..fixed {
                let error = ParseError::ArgumentTruncated {
                    opcode: op as u32,
                    needed: fixed,
                    got: len,
                };
                let (u, d, out) = h.send(op as u32, 8, &arg[..len], &[]);
                refused(h, op as u32, u, d, &out, error);
                // Delivered in segments with an argument area of that
                // length, the same.
                let (u, d, out) = h.send_segments_exact(op as u32, 8, &arg[..len], &[]);
                refused(h, op as u32, u, d, &out, error);
                checked += 1;
            }
        }
    }
    // Every opcode with an argument struct (all but the eight without).
    assert!(checked > 900, "{checked}");
}

fn setxattr_ext_harness() -> Harness {
    let config = InitConfig {
        wanted: fuselage_core::init::DEFAULT_WANTED | fuselage_core::InitFlags::SETXATTR_EXT,
        ..InitConfig::default()
    };
    let h = Harness::ready(RecFs::new(), config, false);
    assert!(h.disp.parse_context().setxattr_ext);
    h.calls();
    h
}

#[test]
fn truncated_init() {
    let arg = init_arg(7, 45, 131072, FULL_OFFER);
    for len in 0..16 {
        let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
        let (u, d, out) = h.send(FUSE_INIT, 0, &arg[..len], &[]);
        let error = ParseError::ArgumentTruncated {
            opcode: FUSE_INIT,
            needed: 16,
            got: len,
        };
        refused(&h, FUSE_INIT, u, d, &out, error);
        assert!(!h.disp.is_running());
    }
    // 16 bytes and up are the short fuse_init_in of kernels before 7.36:
    // the rest reads as zeros.
    for len in 16..=64 {
        let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
        let (u, d, out) = h.send(FUSE_INIT, 0, &arg[..len], &[]);
        let Dispatched::Initialized(n) = d else {
            panic!("{len}: {d:?}")
        };
        ok_body(&out, u, 64);
        if len == 16 {
            assert_eq!(n.kernel_flags.bits() >> 32, 0, "no flags2 in 16 bytes");
        }
        if len >= 20 {
            assert_eq!(n.kernel_flags.bits(), FULL_OFFER, "flags2 read ({len})");
        }
    }
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// A directory entry name: 1..=1024 bytes, no '/'.
    Entry,
    /// An xattr name: up to 255 bytes.
    Xattr,
    /// A symlink target: up to 4095 bytes.
    Target,
    /// The TMPFILE name: up to 1024 bytes ("/" from the kernel).
    Plain,
}

impl Kind {
    fn max(self) -> usize {
        match self {
            Kind::Entry | Kind::Plain => NAME_MAX,
            Kind::Xattr => XATTR_NAME_MAX,
            Kind::Target => SYMLINK_MAX,
        }
    }
}

/// A place in a request where a name goes: `before`, the name, `after`.
struct Slot {
    opcode: u32,
    arg: Vec<u8>,
    before: Vec<u8>,
    after: Vec<u8>,
    kind: Kind,
}

fn slots() -> Vec<Slot> {
    let slot = |opcode, arg: Vec<u8>, before: &[u8], after: &[u8], kind| Slot {
        opcode,
        arg,
        before: before.to_vec(),
        after: after.to_vec(),
        kind,
    };
    let mknod = W::new().u32(0o100644).u32(0).u32(0).u32(0).done();
    let mkdir = W::new().u32(0o755).u32(0).done();
    let create = W::new().u32(0o101).u32(0o100644).u32(0o022).u32(0).done();
    let rename2 = W::new().u64(1).u32(0).u32(0).done();
    let e = Kind::Entry;
    vec![
        slot(FUSE_LOOKUP, vec![], b"", b"", e),
        slot(FUSE_SYMLINK, vec![], b"", b"target\0", e),
        slot(FUSE_SYMLINK, vec![], b"link\0", b"", Kind::Target),
        slot(FUSE_MKNOD, mknod, b"", b"", e),
        slot(FUSE_MKDIR, mkdir, b"", b"", e),
        slot(FUSE_UNLINK, vec![], b"", b"", e),
        slot(FUSE_RMDIR, vec![], b"", b"", e),
        slot(FUSE_RENAME, W::new().u64(1).done(), b"", b"new\0", e),
        slot(FUSE_RENAME, W::new().u64(1).done(), b"old\0", b"", e),
        slot(FUSE_LINK, W::new().u64(8).done(), b"", b"", e),
        slot(
            FUSE_SETXATTR,
            W::new().u32(3).u32(0).done(),
            b"",
            b"abc",
            Kind::Xattr,
        ),
        slot(
            FUSE_GETXATTR,
            W::new().u32(9).u32(0).done(),
            b"",
            b"",
            Kind::Xattr,
        ),
        slot(FUSE_REMOVEXATTR, vec![], b"", b"", Kind::Xattr),
        slot(FUSE_CREATE, create.clone(), b"", b"", e),
        slot(FUSE_RENAME2, rename2.clone(), b"", b"new\0", e),
        slot(FUSE_RENAME2, rename2, b"old\0", b"", e),
        slot(FUSE_TMPFILE, create, b"", b"", Kind::Plain),
    ]
}

impl Slot {
    /// The payload with `name` (raw, its NUL included by the caller) in
    /// place; with `cut`, nothing follows the name.
    fn payload(&self, name: &[u8], cut: bool) -> Vec<u8> {
        let mut p = self.before.clone();
        p.extend_from_slice(name);
        if !cut {
            p.extend_from_slice(&self.after);
        }
        p
    }
}

fn nul(name: &[u8]) -> Vec<u8> {
    let mut v = name.to_vec();
    v.push(0);
    v
}

#[test]
fn names_without_nul() {
    let mut h = Harness::new();
    for s in slots() {
        let missing = ParseError::MissingNul { opcode: s.opcode };
        for name in [&b"abc"[..], b"", b"/"] {
            let (u, d, out) = h.send(s.opcode, 1, &s.arg, &s.payload(name, true));
            refused(&h, s.opcode, u, d, &out, missing);
        }
        // No NUL and longer than any name may be: too long.
        let long = vec![b'a'; s.kind.max() + 1];
        let (u, d, out) = h.send(s.opcode, 1, &s.arg, &s.payload(&long, true));
        let too_long = ParseError::NameTooLong { opcode: s.opcode };
        refused(&h, s.opcode, u, d, &out, too_long);
    }
}

#[test]
fn names_too_long_and_longest_allowed() {
    let mut h = Harness::new();
    for s in slots() {
        let max = s.kind.max();
        let too_long = ParseError::NameTooLong { opcode: s.opcode };
        for len in [max + 1, max + 2, 4097, 8000] {
            let name = nul(&vec![b'a'; len]);
            let (u, d, out) = h.send(s.opcode, 1, &s.arg, &s.payload(&name, false));
            refused(&h, s.opcode, u, d, &out, too_long);
            assert_eq!(too_long.errno().0, ENAMETOOLONG);
        }
        // The longest name is served.
        let name = nul(&vec![b'a'; max]);
        let (u, d, out) = h.send(s.opcode, 1, &s.arg, &s.payload(&name, false));
        assert!(matches!(d, Dispatched::Handled(_)), "{}: {d:?}", s.opcode);
        assert_eq!(out.len(), 1);
        assert_eq!(out_header(&out[0]).1, 0, "{}", s.opcode);
        assert_eq!(out_header(&out[0]).2, u);
        assert_eq!(h.calls().len(), 1);
    }
}

#[test]
fn empty_names_and_names_with_a_slash() {
    let mut h = Harness::new();
    for s in slots() {
        for name in [&b""[..], b"/", b"a/b", b"dir/", b"/abs"] {
            let payload = s.payload(&nul(name), false);
            let (u, d, out) = h.send(s.opcode, 1, &s.arg, &payload);
            if s.kind == Kind::Entry {
                let error = ParseError::InvalidName { opcode: s.opcode };
                refused(&h, s.opcode, u, d, &out, error);
                assert_eq!(error.errno().0, EINVAL);
            } else {
                // Xattr names, symlink targets and the TMPFILE name are not
                // directory entries.
                assert!(matches!(d, Dispatched::Handled(_)), "{}: {d:?}", s.opcode);
                assert_eq!(out_header(&out[0]).1, 0);
                assert_eq!(h.calls().len(), 1);
            }
        }
        // "." and ".." are names (the kernel looks up ".." for NFS export).
        if s.kind == Kind::Entry {
            for name in [&b"."[..], b".."] {
                let (_, d, _) = h.send(s.opcode, 1, &s.arg, &s.payload(&nul(name), false));
                assert!(matches!(d, Dispatched::Handled(_)));
                h.calls();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Data and arrays shorter than their counts
// ---------------------------------------------------------------------------

#[test]
fn write_data_shorter_than_size() {
    let mut h = Harness::new();
    let arg = W::new()
        .u64(1)
        .u64(0)
        .u32(100)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .done();
    let data = [7u8; 100];
    let error = ParseError::PayloadTruncated { opcode: FUSE_WRITE };
    for len in [0, 1, 50, 99] {
        let (u, d, out) = h.send(FUSE_WRITE, 8, &arg, &data[..len]);
        refused(&h, FUSE_WRITE, u, d, &out, error);
    }
    // size u32::MAX with little data.
    let arg = W::new()
        .u64(1)
        .u64(0)
        .u32(u32::MAX)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .done();
    let (u, d, out) = h.send(FUSE_WRITE, 8, &arg, &data);
    refused(&h, FUSE_WRITE, u, d, &out, error);
    // Exactly size bytes are served.
    let arg = W::new()
        .u64(1)
        .u64(0)
        .u32(100)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .done();
    let (u, _, out) = h.send(FUSE_WRITE, 8, &arg, &data);
    assert_eq!(ok_body(&out, u, 8).u32(), 100);
}

#[test]
fn other_payloads_shorter_than_their_counts() {
    let mut h = Harness::new();
    // SETXATTR value shorter than size.
    let (u, d, out) = h.send(
        FUSE_SETXATTR,
        8,
        &W::new().u32(10).u32(0).done(),
        b"user.x\0abc",
    );
    refused(
        &h,
        FUSE_SETXATTR,
        u,
        d,
        &out,
        ParseError::PayloadTruncated {
            opcode: FUSE_SETXATTR,
        },
    );
    // IOCTL input shorter than in_size.
    let ioctl = W::new().u64(1).u32(0).u32(1).u64(0).u32(9).u32(0).done();
    let (u, d, out) = h.send(FUSE_IOCTL, 8, &ioctl, b"short");
    refused(
        &h,
        FUSE_IOCTL,
        u,
        d,
        &out,
        ParseError::PayloadTruncated { opcode: FUSE_IOCTL },
    );
    // NOTIFY_REPLY data shorter than size: dropped (no reply is expected).
    let nr = W::new().u64(0).u64(0).u32(10).u32(0).u64(0).u64(0).done();
    let (u, d, out) = h.send(FUSE_NOTIFY_REPLY, 8, &nr, b"abc");
    refused(
        &h,
        FUSE_NOTIFY_REPLY,
        u,
        d,
        &out,
        ParseError::PayloadTruncated {
            opcode: FUSE_NOTIFY_REPLY,
        },
    );
    // REMOVEMAPPING (in segments, where it can be parsed) with too few
    // entries.
    let (u, d, out) = h.send_segments(FUSE_REMOVEMAPPING, 8, &W::new().u32(3).done(), &[0; 32]);
    refused(
        &h,
        FUSE_REMOVEMAPPING,
        u,
        d,
        &out,
        ParseError::PayloadTruncated {
            opcode: FUSE_REMOVEMAPPING,
        },
    );
}

#[test]
fn batch_forget_count_larger_than_payload() {
    let mut h = Harness::new();
    let error = ParseError::PayloadTruncated {
        opcode: FUSE_BATCH_FORGET,
    };
    let one = W::new().u64(5).u64(1).done();
    for (count, entries) in [(1, 0), (2, 1), (3, 2), (u32::MAX, 1), (1 << 28, 0)] {
        let payload = one.repeat(entries);
        let arg = W::new().u32(count).u32(0).done();
        let (u, d, out) = h.send(FUSE_BATCH_FORGET, 0, &arg, &payload);
        refused(&h, FUSE_BATCH_FORGET, u, d, &out, error);
        let (u, d, out) = h.send_segments_exact(FUSE_BATCH_FORGET, 0, &arg, &payload);
        refused(&h, FUSE_BATCH_FORGET, u, d, &out, error);
    }
    // Half an entry short.
    let (u, d, out) = h.send(
        FUSE_BATCH_FORGET,
        0,
        &W::new().u32(2).u32(0).done(),
        &one.repeat(2)[..24],
    );
    refused(&h, FUSE_BATCH_FORGET, u, d, &out, error);
    // Extra bytes after `count` entries are ignored.
    let (_, d, out) = h.send(
        FUSE_BATCH_FORGET,
        0,
        &W::new().u32(1).u32(0).done(),
        &one.repeat(2),
    );
    assert_eq!(d, Dispatched::Handled(Opcode::BatchForget));
    assert!(out.is_empty());
    assert_eq!(h.calls().len(), 1);
}

// ---------------------------------------------------------------------------
// The header and the buffer
// ---------------------------------------------------------------------------

#[test]
fn header_len_mismatch_is_dropped() {
    let mut h = Harness::new();
    for &op in Opcode::ALL {
        let (arg, payload) = sample(op, false);
        let msg = message(op as u32, 0x5000, 8, &arg, &payload);
        let real = msg.len() as u32;
        for len in [0, 1, 39, 40, real - 1, real + 1, real + 4096, u32::MAX] {
            if len == real {
                continue;
            }
            let mut bad = msg.clone();
            bad[..4].copy_from_slice(&len.to_ne_bytes());
            let (d, out) = h.send_bytes(&bad);
            let error = ParseError::LengthMismatch {
                header_len: len,
                got: real as usize,
            };
            dropped(&h, d, &out, error);
        }
    }
}

#[test]
fn extensions_longer_than_the_body() {
    let mut h = Harness::new();
    let getattr = W::new().u32(0).u32(0).u64(0).done();
    for extlen in [3u16, 100, u16::MAX] {
        for (op, arg) in [(FUSE_GETATTR, &getattr[..]), (FUSE_FORGET, &[0u8; 8][..])] {
            let mut v = in_header(40 + arg.len() as u32, op, 0x6000, 8, extlen);
            v.extend_from_slice(arg);
            let (d, out) = h.send_bytes(&v);
            let error = ParseError::ExtensionsTooLong {
                extlen: extlen as usize * 8,
            };
            refused(&h, op, 0x6000, d, &out, error);
        }
    }
    // Extensions that swallow the argument struct leave it truncated.
    let mut v = in_header(56, FUSE_GETATTR, 0x6002, 8, 1);
    v.extend_from_slice(&getattr);
    let (d, out) = h.send_bytes(&v);
    let error = ParseError::ArgumentTruncated {
        opcode: FUSE_GETATTR,
        needed: 16,
        got: 8,
    };
    refused(&h, FUSE_GETATTR, 0x6002, d, &out, error);
}

#[test]
fn misaligned_buffers_are_dropped() {
    let h = Harness::new();
    for &op in Opcode::ALL {
        let (arg, payload) = sample(op, false);
        let msg = message(op as u32, 0x7000, 8, &arg, &payload);
        for shift in 1..8 {
            let mut backing = AlignedBuf::zeroed(msg.len() + 8);
            backing[shift..shift + msg.len()].copy_from_slice(&msg);
            let buf = &backing[shift..shift + msg.len()];
            let mut scratch = vec![0u8; 4096];
            let d = h.disp.dispatch(buf, &h.rec, &mut scratch);
            dropped(&h, d, &h.rec.take(), ParseError::Misaligned);
        }
    }
}

#[test]
fn misaligned_segments() {
    let h = Harness::new();
    let mut scratch = vec![0u8; 4096];
    let header = in_header(56, FUSE_GETATTR, 0x7100, 8, 0);
    let arg = W::new().u32(0).u32(0).u64(0).done();
    let mut hb = AlignedBuf::zeroed(128 + 8);
    let mut ab = AlignedBuf::zeroed(128 + 8);
    // A misaligned header area cannot be trusted: dropped.
    hb[1..41].copy_from_slice(&header);
    ab[..16].copy_from_slice(&arg);
    let d = h
        .disp
        .dispatch_segments(&hb[1..129], &ab[..16], &[], &h.rec, &mut scratch);
    dropped(&h, d, &h.rec.take(), ParseError::Misaligned);
    // A misaligned argument area behind a sound header: answered.
    hb[..40].copy_from_slice(&header);
    ab[3..19].copy_from_slice(&arg);
    let d = h
        .disp
        .dispatch_segments(&hb[..128], &ab[3..19], &[], &h.rec, &mut scratch);
    refused(
        &h,
        FUSE_GETATTR,
        0x7100,
        d,
        &h.rec.take(),
        ParseError::Misaligned,
    );
}

#[test]
fn buffers_shorter_than_a_header_are_dropped() {
    let mut h = Harness::new();
    let msg = message(
        FUSE_GETATTR,
        0x8000,
        8,
        &W::new().u32(0).u32(0).u64(0).done(),
        &[],
    );
    for len in 0..40 {
        let (d, out) = h.send_bytes(&msg[..len]);
        dropped(&h, d, &out, ParseError::HeaderTruncated { got: len });
        let garbage = vec![0xFF; len];
        let (d, out) = h.send_bytes(&garbage);
        dropped(&h, d, &out, ParseError::HeaderTruncated { got: len });
        // In segments: the header area itself is short.
        let mut scratch = vec![0u8; 4096];
        let hb = AlignedBuf::from_bytes(&msg[..len]);
        let d = h
            .disp
            .dispatch_segments(&hb, &[], &[], &h.rec, &mut scratch);
        dropped(
            &h,
            d,
            &h.rec.take(),
            ParseError::HeaderTruncated { got: len },
        );
    }
}

#[test]
fn malformed_before_init_is_still_malformed() {
    let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
    let (u, d, out) = h.send(FUSE_LOOKUP, 1, &[], b"no-nul");
    refused(
        &h,
        FUSE_LOOKUP,
        u,
        d,
        &out,
        ParseError::MissingNul {
            opcode: FUSE_LOOKUP,
        },
    );
    let (u, d, out) = h.send(99, 1, &[], &[]);
    refused(&h, 99, u, d, &out, ParseError::UnknownOpcode(99));
}
