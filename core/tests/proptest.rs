//! Property tests: no byte sequence makes the parser or the dispatcher
//! panic, and whatever the dispatcher sends is a message the kernel accepts,
//! one per request that expects an answer.

mod common;

use common::*;
use fuselage_core::abi::FUSE_INIT;
use fuselage_core::init::{DEFAULT_WANTED, InitFlags};
use fuselage_core::request::NAME_MAX;
use fuselage_core::{Dispatched, InitConfig, Opcode, ParseContext, ParseError, Request};
use fuselage_testkit::{AlignedBuf, Reply};
use proptest::prelude::*;

fn ctx() -> impl Strategy<Value = ParseContext> {
    (
        prop_oneof![Just(45u32), 0u32..64, any::<u32>()],
        any::<bool>(),
    )
        .prop_map(|(minor, setxattr_ext)| ParseContext {
            minor,
            setxattr_ext,
        })
}

/// Any opcode number: mostly real ones, some unknown.
fn opcode() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => proptest::sample::select(Opcode::ALL).prop_map(|o| o as u32),
        1 => 0u32..64,
        1 => any::<u32>(),
    ]
}

/// A request body for `op`: random bytes, or a valid sample with some
/// bytes changed, cut short or extended.
fn body(op: u32) -> impl Strategy<Value = Vec<u8>> {
    let base = Opcode::from_u32(op)
        .map(|o| {
            let (mut a, p) = sample(o, false);
            a.extend(p);
            a
        })
        .unwrap_or_default();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        (
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            prop::option::of(any::<prop::sample::Index>()),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(move |(flips, cut, tail)| {
                let mut b = base.clone();
                if !b.is_empty() {
                    for (i, v) in flips {
                        let i = i.index(b.len());
                        b[i] = v;
                    }
                    if let Some(c) = cut {
                        b.truncate(c.index(b.len() + 1));
                    }
                }
                b.extend(tail);
                b
            }),
    ]
}

/// Checks what the dispatcher sent for one message: nothing, or one
/// message the kernel accepts, answering `unique`.
fn check_output(out: &[Vec<u8>], unique: Option<u64>) -> Result<(), TestCaseError> {
    prop_assert!(out.len() <= 1, "{} messages for one request", out.len());
    if let Some(m) = out.first() {
        let r = Reply::parse(m).map_err(|e| TestCaseError::fail(format!("kernel refuses: {e}")))?;
        if let Some(u) = unique {
            prop_assert_eq!(r.unique(), u);
        }
    }
    Ok(())
}

fn forgetful() -> RecFs {
    RecFs {
        forgetful: true,
        ..RecFs::new()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), ctx in ctx(), shift in 0usize..8) {
        let mut backing = AlignedBuf::zeroed(bytes.len() + 8);
        backing[shift..shift + bytes.len()].copy_from_slice(&bytes);
        let buf = &backing[shift..shift + bytes.len()];
        if let Ok(req) = Request::parse(buf, ctx) {
            prop_assert_eq!(req.header.len as usize, buf.len());
            prop_assert_eq!(req.opcode() as u32, req.header.opcode);
            prop_assert_eq!(shift, 0, "misaligned buffer accepted");
        }
    }

    #[test]
    fn parse_of_a_valid_header_never_panics(op in opcode(), tail in proptest::collection::vec(any::<u8>(), 0..1024), extlen in prop_oneof![Just(0u16), any::<u16>()], ctx in ctx()) {
        let mut v = in_header(0, op, 2, 1, extlen);
        v.extend(tail);
        let len = v.len() as u32;
        v[..4].copy_from_slice(&len.to_ne_bytes());
        let buf = AlignedBuf::from_bytes(&v);
        match Request::parse(&buf, ctx) {
            Ok(req) => {
                prop_assert_eq!(req.header.opcode, op);
                prop_assert_eq!(req.extensions.len(), extlen as usize * 8);
            }
            Err(e) => prop_assert!(e.can_reply() || e == ParseError::Misaligned, "{e:?}"),
        }
    }

    #[test]
    fn parse_segments_never_panics(
        header in proptest::collection::vec(any::<u8>(), 0..160),
        op_in in proptest::collection::vec(any::<u8>(), 0..160),
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        ctx in ctx(),
        shifts in (0usize..8, 0usize..8, 0usize..8),
    ) {
        let place = |b: &[u8], s: usize| {
            let mut a = AlignedBuf::zeroed(b.len() + 8);
            a[s..s + b.len()].copy_from_slice(b);
            (a, s, b.len())
        };
        let (h, hs, hl) = place(&header, shifts.0);
        let (o, os, ol) = place(&op_in, shifts.1);
        let (p, ps, pl) = place(&payload, shifts.2);
        let _ = Request::parse_segments(&h[hs..hs + hl], &o[os..os + ol], &p[ps..ps + pl], ctx);
    }

    #[test]
    fn dispatch_of_arbitrary_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        initialized in any::<bool>(),
        read_only in any::<bool>(),
    ) {
        let mut h = if initialized {
            Harness::ready(forgetful(), InitConfig::default(), read_only)
        } else {
            Harness::fresh(forgetful(), InitConfig::default(), read_only)
        };
        let (_, out) = h.send_bytes(&bytes);
        check_output(&out, None)?;
    }

    #[test]
    fn dispatch_behind_a_valid_header_answers_exactly_once(
        (op, body) in opcode().prop_flat_map(|op| (Just(op), body(op))),
        nodeid in prop_oneof![Just(1u64), Just(INO_FILE_RANGE), any::<u64>()],
        unique in prop_oneof![Just(2u64), any::<u64>()],
        extlen in prop_oneof![4 => Just(0u16), 1 => 0u16..4, 1 => any::<u16>()],
        read_only in any::<bool>(),
        setxattr_ext in any::<bool>(),
    ) {
        let config = InitConfig {
            wanted: if setxattr_ext { DEFAULT_WANTED | InitFlags::SETXATTR_EXT } else { DEFAULT_WANTED },
            ..InitConfig::default()
        };
        let mut h = Harness::ready(forgetful(), config, read_only);
        let mut v = in_header(0, op, unique, nodeid, extlen);
        v.extend(body);
        let len = v.len() as u32;
        v[..4].copy_from_slice(&len.to_ne_bytes());
        let (d, out) = h.send_bytes(&v);
        check_output(&out, Some(unique))?;
        // The header is sound, so the unique is trusted: every request that
        // expects an answer gets exactly one, the others none.
        let no_reply = Opcode::from_u32(op).is_some_and(|o| o.is_no_reply());
        prop_assert_eq!(out.len(), usize::from(!no_reply), "{:?}", d);
        if let Dispatched::Malformed { replied, .. } = d {
            prop_assert_eq!(replied, !no_reply);
        }
    }

    #[test]
    fn entry_names_reach_the_filesystem_exactly_or_are_refused(name in proptest::collection::vec(1u8..=255, 0..1100)) {
        let mut h = Harness::new();
        let mut payload = name.clone();
        payload.push(0);
        let (u, d, out) = h.send(fuselage_core::abi::FUSE_LOOKUP, 1, &[], &payload);
        let valid = !name.is_empty() && name.len() <= NAME_MAX && !name.contains(&b'/');
        if valid {
            prop_assert_eq!(d, Dispatched::Handled(Opcode::Lookup));
            let calls = h.calls();
            prop_assert_eq!(calls.len(), 1);
            prop_assert_eq!(&calls[0].1, &Call::Lookup { parent: 1, name: name.clone() });
        } else {
            let errno = if name.len() > NAME_MAX { 36 } else { 22 };
            prop_assert_eq!(out_header(&out[0]), (16, -errno, u));
            prop_assert!(h.calls().is_empty());
        }
    }

    #[test]
    fn init_agrees_within_both_offers(minor in 12u32..80, offer in any::<u64>(), readahead in any::<u32>(), wanted in any::<u64>()) {
        let config = InitConfig {
            wanted: InitFlags::from_bits_retain(wanted),
            ..InitConfig::default()
        };
        let mut h = Harness::fresh(forgetful(), config, false);
        let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, minor, readahead, offer), &[]);
        let Dispatched::Initialized(n) = d else {
            return Err(TestCaseError::fail(format!("{d:?}")));
        };
        let agreed_minor = minor.min(45);
        prop_assert_eq!(n.minor, agreed_minor);
        let reply_len = if agreed_minor < 23 { 24 } else { 64 };
        let mut r = ok_body(&out, u, reply_len);
        prop_assert_eq!((r.u32(), r.u32()), (7, agreed_minor));
        prop_assert_eq!(r.u32(), readahead);
        let flags = r.u32();
        // Without INIT_EXT in the offer, flags2 was never read.
        let offered = if offer & (1 << 30) != 0 { offer } else { offer & 0xFFFF_FFFF };
        let mut allowed = offered & wanted;
        if allowed >> 32 != 0 {
            allowed |= 1 << 30;
        }
        prop_assert_eq!(flags as u64 & !allowed, 0, "flags beyond both offers");
        prop_assert_eq!(n.flags.bits() & !allowed, 0);
        prop_assert!(n.max_write >= 4096);
    }
}
