//! The `parse` target.
//!
//! Input layout: `[split_a: u16 LE][split_b: u16 LE][message...]`.
//!
//! The message is copied to an 8-byte aligned buffer and parsed with
//! [`Request::parse`] under several [`ParseContext`]s; it is also split into
//! three separately allocated, aligned segments at positions derived from
//! `split_a` / `split_b` and parsed with [`Request::parse_segments`], and
//! split canonically (header / argument struct / payload) so that both
//! parsers can be compared. Every request the parser accepts is checked for
//! internal consistency (lengths agree with counts, names are valid, nothing
//! is borrowed from outside the given buffers).

use crate::{ref_within, within};
use fuselage_testkit::AlignedBuf;
use core::ffi::CStr;
use fuselage_core::request::{NAME_MAX, SYMLINK_MAX, XATTR_NAME_MAX, arg_size};
use fuselage_core::{Opcode, Operation, ParseContext, ParseError, Request};

/// The connection states the parser is exercised under.
pub const CONTEXTS: [ParseContext; 4] = [
    ParseContext::CURRENT,
    ParseContext {
        minor: 45,
        setxattr_ext: true,
    },
    ParseContext {
        minor: 12,
        setxattr_ext: false,
    },
    ParseContext {
        minor: 22,
        setxattr_ext: true,
    },
];

const HEADER_LEN: usize = fuselage_core::IN_HEADER_LEN;

/// Runs one input (see the module docs for its layout).
pub fn run(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let split_a = u16::from_le_bytes([data[0], data[1]]) as usize;
    let split_b = u16::from_le_bytes([data[2], data[3]]) as usize;
    let msg = &data[4..];

    let whole = AlignedBuf::from_bytes(msg);
    let buf = whole.as_bytes();
    for ctx in CONTEXTS {
        let parsed = Request::parse(buf, ctx);
        if let Ok(req) = &parsed {
            check_request(req, &[buf], ctx);
            assert_eq!(req.header.len as usize, buf.len(), "parse ignored len");
        }
        canonical_segments_agree(buf, ctx, &parsed);
    }

    // A misaligned buffer is refused, never read.
    let shifted = AlignedBuf::misaligned(msg, 1 + (split_a % 7));
    for ctx in CONTEXTS {
        match Request::parse(shifted.as_bytes(), ctx) {
            Ok(_) => panic!("misaligned buffer accepted"),
            Err(
                ParseError::Misaligned
                | ParseError::HeaderTruncated { .. }
                | ParseError::LengthMismatch { .. },
            ) => {}
            // The header is misaligned, so nothing past it may be looked at.
            Err(e) => panic!("misaligned buffer gave {e:?}"),
        }
    }

    // Arbitrary three-way split, each segment in its own aligned buffer.
    let i = split_a % (msg.len() + 1);
    let j = i + split_b % (msg.len() - i + 1);
    let (h, o, p) = (
        AlignedBuf::from_bytes(&msg[..i]),
        AlignedBuf::from_bytes(&msg[i..j]),
        AlignedBuf::from_bytes(&msg[j..]),
    );
    let segs = [h.as_bytes(), o.as_bytes(), p.as_bytes()];
    for ctx in CONTEXTS {
        if let Ok(req) = Request::parse_segments(segs[0], segs[1], segs[2], ctx) {
            check_request(&req, &segs, ctx);
        }
    }
}

/// Splits `buf` the way a FUSE-over-io_uring ring entry carries it and
/// checks that `parse_segments` agrees with `parse` when both accept.
fn canonical_segments_agree(
    buf: &[u8],
    ctx: ParseContext,
    parsed: &Result<Request<'_>, ParseError>,
) {
    if buf.len() < HEADER_LEN {
        return;
    }
    let opcode = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
    let fixed = Opcode::from_u32(opcode).map_or(0, |op| arg_size(op, ctx));
    let arg_end = (HEADER_LEN + fixed).min(buf.len());
    // Ring entries reserve 128 bytes for the header and for the argument
    // struct; pass the whole zero-padded areas as a ring transport does.
    let mut header_area = AlignedBuf::zeroed(128);
    header_area.as_bytes_mut()[..HEADER_LEN].copy_from_slice(&buf[..HEADER_LEN]);
    let mut op_area = AlignedBuf::zeroed(128.max(fixed));
    op_area.as_bytes_mut()[..arg_end - HEADER_LEN].copy_from_slice(&buf[HEADER_LEN..arg_end]);
    let payload = AlignedBuf::from_bytes(&buf[arg_end..]);
    let op_in = &op_area.as_bytes()[..arg_end - HEADER_LEN];
    let seg = Request::parse_segments(header_area.as_bytes(), op_in, payload.as_bytes(), ctx);
    if let Ok(req) = &seg {
        check_request(req, &[header_area.as_bytes(), op_in, payload.as_bytes()], ctx);
    }
    if let (Ok(a), Ok(b)) = (parsed, &seg) {
        assert_eq!(
            format!("{:?}", a.operation),
            format!("{:?}", b.operation),
            "parse and parse_segments disagree"
        );
        assert_eq!(a.extensions, b.extensions, "extensions differ");
        assert_eq!(a.header, b.header);
    }
}

fn check_name(name: &CStr, max: usize, entry: bool, segs: &[&[u8]]) {
    let b = name.to_bytes_with_nul();
    assert!(within(b.as_ptr(), b.len(), segs), "name outside buffers");
    let n = name.count_bytes();
    assert!(n <= max, "name of {n} bytes accepted (max {max})");
    if entry {
        assert!(n > 0, "empty entry name accepted");
        assert!(!name.to_bytes().contains(&b'/'), "entry name with '/'");
    }
}

fn check_bytes(d: &[u8], expected_len: usize, segs: &[&[u8]]) {
    assert_eq!(d.len(), expected_len, "payload length disagrees with count");
    assert!(within(d.as_ptr(), d.len(), segs), "payload outside buffers");
}

/// Checks one accepted request: everything borrowed lies in `segs`, counts
/// and lengths agree, names are valid.
pub fn check_request(req: &Request<'_>, segs: &[&[u8]], ctx: ParseContext) {
    let h = req.header;
    assert!(ref_within(h, segs), "header outside buffers");
    assert_eq!(req.opcode() as u32, h.opcode, "opcode mismatch");
    assert_eq!(req.unique(), h.unique);
    assert_eq!(req.nodeid(), h.nodeid);
    let ext = req.extensions;
    assert_eq!(ext.len(), h.total_extlen as usize * 8, "extension length");
    assert!(within(ext.as_ptr(), ext.len(), segs), "extensions outside");

    macro_rules! arg_ok {
        ($a:expr) => {
            assert!(ref_within($a, segs), "argument struct outside buffers")
        };
    }
    let entry = |n: &CStr| check_name(n, NAME_MAX, true, segs);
    match req.operation {
        Operation::Lookup { name } | Operation::Unlink { name } | Operation::Rmdir { name } => {
            entry(name)
        }
        Operation::Removexattr { name } => check_name(name, XATTR_NAME_MAX, false, segs),
        Operation::Symlink { name, target } => {
            entry(name);
            check_name(target, SYMLINK_MAX, false, segs);
        }
        Operation::Mknod { arg, name } => {
            arg_ok!(arg);
            entry(name)
        }
        Operation::Mkdir { arg, name } => {
            arg_ok!(arg);
            entry(name)
        }
        Operation::Rename { arg, name, newname } => {
            arg_ok!(arg);
            entry(name);
            entry(newname);
        }
        Operation::Rename2 { arg, name, newname } => {
            arg_ok!(arg);
            entry(name);
            entry(newname);
        }
        Operation::Link { arg, name } => {
            arg_ok!(arg);
            entry(name)
        }
        Operation::Create { arg, name } => {
            arg_ok!(arg);
            entry(name)
        }
        // The kernel names the unhashed dentry of O_TMPFILE "/", so TMPFILE's
        // name is not held to the directory-entry rules.
        Operation::Tmpfile { arg, name } => {
            arg_ok!(arg);
            check_name(name, NAME_MAX, false, segs)
        }
        Operation::Write { arg, data } => {
            arg_ok!(arg);
            check_bytes(data, arg.size as usize, segs)
        }
        Operation::Setxattr { arg, name, value } => {
            check_name(name, XATTR_NAME_MAX, false, segs);
            check_bytes(value, arg.size as usize, segs);
            if !ctx.setxattr_ext {
                assert_eq!(arg.setxattr_flags, 0);
            }
        }
        Operation::Getxattr { arg, name } => {
            arg_ok!(arg);
            check_name(name, XATTR_NAME_MAX, false, segs)
        }
        Operation::Ioctl { arg, data } => {
            arg_ok!(arg);
            check_bytes(data, arg.in_size as usize, segs)
        }
        Operation::NotifyReply { arg, data } => {
            arg_ok!(arg);
            check_bytes(data, arg.size as usize, segs)
        }
        Operation::BatchForget { nodes } => {
            let b = zerocopy::IntoBytes::as_bytes(nodes);
            assert!(within(b.as_ptr(), b.len(), segs), "forget array outside");
            // The count is in the argument struct that precedes the array.
            assert_eq!(b.len(), nodes.len() * 16);
        }
        Operation::Removemapping { entries } => {
            let b = entries.as_bytes();
            assert!(within(b.as_ptr(), b.len(), segs), "mapping array outside");
            assert_eq!(entries.iter().count(), entries.len());
        }
        Operation::Forget { arg } => arg_ok!(arg),
        Operation::Getattr { arg } => arg_ok!(arg),
        Operation::Setattr { arg } => arg_ok!(arg),
        Operation::Open { arg } | Operation::Opendir { arg } => arg_ok!(arg),
        Operation::Read { arg } | Operation::Readdir { arg } | Operation::Readdirplus { arg } => {
            arg_ok!(arg)
        }
        Operation::Release { arg } | Operation::Releasedir { arg } => arg_ok!(arg),
        Operation::Fsync { arg } | Operation::Fsyncdir { arg } => arg_ok!(arg),
        Operation::Listxattr { arg } => arg_ok!(arg),
        Operation::Flush { arg } => arg_ok!(arg),
        Operation::Getlk { arg } | Operation::Setlk { arg } | Operation::Setlkw { arg } => {
            arg_ok!(arg)
        }
        Operation::Access { arg } => arg_ok!(arg),
        Operation::Interrupt { arg } => arg_ok!(arg),
        Operation::Bmap { arg } => arg_ok!(arg),
        Operation::Poll { arg } => arg_ok!(arg),
        Operation::Fallocate { arg } => arg_ok!(arg),
        Operation::Lseek { arg } => arg_ok!(arg),
        Operation::CopyFileRange { arg } | Operation::CopyFileRange64 { arg } => arg_ok!(arg),
        Operation::Setupmapping { arg } => arg_ok!(arg),
        Operation::Syncfs { arg } => arg_ok!(arg),
        Operation::Statx { arg } => arg_ok!(arg),
        Operation::CuseInit { arg } => arg_ok!(arg),
        Operation::Init { arg } => {
            let _ = arg.major;
        }
        Operation::Readlink | Operation::Statfs | Operation::Destroy => {}
    }
}
