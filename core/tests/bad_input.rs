//! Messages a Linux kernel never sends but a sandbox's kernel or a hostile
//! peer might: each is answered with an error or dropped, and the next
//! request is served as if nothing had happened. Also a peer of protocol
//! 7.31 (short INIT, only MAX_PAGES offered) gets a reply it can read.

mod common;

use common::*;
use fuselage_core::abi::*;
use fuselage_core::{Dispatched, InitConfig, Opcode, ParseError};

const EIO: i32 = 5;

/// GETATTR of `ino` is served normally: one call, one 104-byte reply.
#[track_caller]
fn serves(h: &mut Harness, ino: u64) {
    let (u, d, out) = h.send(
        FUSE_GETATTR,
        ino,
        &W::new().u32(0).u32(0).u64(0).done(),
        &[],
    );
    assert_eq!(d, Dispatched::Handled(Opcode::Getattr));
    assert_eq!(
        h.only_call(FUSE_GETATTR, u, ino),
        Call::Getattr { ino, fh: None }
    );
    let mut r = ok_body(&out, u, 104);
    assert_eq!((r.u64(), r.u32(), r.u32()), (5, 6, 0), "attr_valid");
    expect_attr(&mut r, ino);
}

/// A whole request with an explicit unique.
fn with_unique(
    h: &mut Harness,
    opcode: u32,
    unique: u64,
    nodeid: u64,
    arg: &[u8],
    payload: &[u8],
) -> (Dispatched, Vec<Vec<u8>>) {
    let len = (40 + arg.len() + payload.len()) as u32;
    let mut v = in_header(len, opcode, unique, nodeid, 0);
    v.extend_from_slice(arg);
    v.extend_from_slice(payload);
    h.send_bytes(&v)
}

#[test]
fn second_init_is_refused_and_the_first_session_stays() {
    let mut h = Harness::new();
    assert_eq!(h.disp.parse_context().minor, 45);
    for arg in [
        init_arg(7, 31, 4096, 0),
        init_arg(7, 45, 131072, FULL_OFFER),
        init_arg(8, 0, 0, 0),
        // The short pre-7.36 INIT.
        init_arg(7, 12, 0, 0)[..16].to_vec(),
    ] {
        let (u, d, out) = h.send(FUSE_INIT, 0, &arg, &[]);
        assert_eq!(
            d,
            Dispatched::Malformed {
                error: ParseError::RepeatedInit,
                replied: true
            }
        );
        assert_error(&out, u, EIO);
        assert!(h.calls().is_empty(), "Filesystem::init ran again");
        // What the parser goes by is what the first INIT agreed.
        assert_eq!(h.disp.parse_context().minor, 45);
        assert!(h.disp.is_running());
        serves(&mut h, 9);
    }
}

#[test]
fn init_after_destroy_is_refused() {
    let mut h = Harness::new();
    let (u, d, out) = h.send(FUSE_DESTROY, 0, &[], &[]);
    assert_eq!(d, Dispatched::Destroyed);
    ok_body(&out, u, 0);
    h.calls();
    let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, 45, 131072, FULL_OFFER), &[]);
    assert_eq!(
        d,
        Dispatched::Malformed {
            error: ParseError::RepeatedInit,
            replied: true
        }
    );
    assert_error(&out, u, EIO);
    assert!(h.calls().is_empty());
    assert!(!h.disp.is_running());
}

#[test]
fn requests_with_unique_zero_get_no_reply() {
    let mut h = Harness::new();
    for &op in Opcode::ALL {
        if op == Opcode::Destroy {
            continue; // below: it would end the session
        }
        let (arg, payload) = sample(op, false);
        let (d, out) = with_unique(&mut h, op as u32, 0, 8, &arg, &payload);
        if op.is_no_reply() {
            // FORGET, BATCH_FORGET, INTERRUPT, NOTIFY_REPLY have no reply to
            // mistake for a notification: served (NOTIFY_REPLY's unique is
            // the one the server chose for its RETRIEVE, which may be 0).
            assert_eq!(d, Dispatched::Handled(op), "{op}");
            assert!(out.is_empty(), "{op} answered: {out:?}");
            assert_eq!(h.calls().len(), 1, "{op} not served");
        } else {
            assert_eq!(
                d,
                Dispatched::Malformed {
                    error: ParseError::ZeroUnique { opcode: op as u32 },
                    replied: false
                },
                "{op}"
            );
            assert!(out.is_empty(), "{op} answered: {out:?}");
            assert!(h.calls().is_empty(), "{op} reached the filesystem");
        }
        serves(&mut h, 9);
    }
    // DESTROY with unique 0: dropped, the session goes on.
    let (d, out) = with_unique(&mut h, FUSE_DESTROY, 0, 0, &[], &[]);
    assert!(matches!(d, Dispatched::Malformed { replied: false, .. }));
    assert!(out.is_empty());
    assert!(h.disp.is_running());
    serves(&mut h, 9);
}

#[test]
fn malformed_requests_with_unique_zero_get_no_reply() {
    let mut h = Harness::new();
    // A LOOKUP without NUL, a truncated GETATTR, an unknown opcode: each
    // would be answered with an errno, but not to unique 0.
    for (opcode, arg, payload) in [
        (FUSE_LOOKUP, vec![], b"name".to_vec()),
        (FUSE_GETATTR, vec![0; 4], vec![]),
        (9999, vec![], vec![]),
    ] {
        let (d, out) = with_unique(&mut h, opcode, 0, 1, &arg, &payload);
        assert!(
            matches!(d, Dispatched::Malformed { replied: false, .. }),
            "{d:?}"
        );
        assert!(out.is_empty(), "answered: {out:?}");
        assert!(h.calls().is_empty());
        serves(&mut h, 1);
    }
}

#[test]
fn init_with_unique_zero_is_dropped_and_a_real_init_follows() {
    let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
    let (d, out) = with_unique(
        &mut h,
        FUSE_INIT,
        0,
        0,
        &init_arg(7, 45, 131072, FULL_OFFER),
        &[],
    );
    assert_eq!(
        d,
        Dispatched::Malformed {
            error: ParseError::ZeroUnique { opcode: FUSE_INIT },
            replied: false
        }
    );
    assert!(out.is_empty());
    assert!(h.calls().is_empty(), "Filesystem::init ran");
    assert!(!h.disp.is_running());
    let (_, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, 45, 131072, FULL_OFFER), &[]);
    assert!(matches!(d, Dispatched::Initialized(_)), "{d:?}");
    assert_eq!(out.len(), 1);
    h.calls();
    serves(&mut h, 1);
}

#[test]
fn a_reused_unique_is_answered_once_per_request() {
    let mut h = Harness::new();
    let unique = 0x4242;
    let getattr = W::new().u32(0).u32(0).u64(0).done();
    let (d1, out1) = with_unique(&mut h, FUSE_LOOKUP, unique, 1, &[], b"a\0");
    let (d2, out2) = with_unique(&mut h, FUSE_GETATTR, unique, 9, &getattr, &[]);
    assert_eq!(d1, Dispatched::Handled(Opcode::Lookup));
    assert_eq!(d2, Dispatched::Handled(Opcode::Getattr));
    // Each request gets its own reply, both carrying the unique it came
    // with; the dispatcher keeps no table a repeated unique could corrupt.
    assert_eq!(out_header(&out1[0]).2, unique);
    assert_eq!(out1.len(), 1);
    ok_body(&out2, unique, 104);
    assert_eq!(h.calls().len(), 2);
    serves(&mut h, 9);
}

#[test]
fn interrupts_and_notify_replies_nobody_waits_for_are_dropped() {
    let mut h = Harness::new();
    // INTERRUPT of a request never sent (and of unique 0).
    for target in [0xdead_beef_u64, 0] {
        let (u, d, out) = h.send(FUSE_INTERRUPT, 0, &W::new().u64(target).done(), &[]);
        assert_eq!(d, Dispatched::Handled(Opcode::Interrupt));
        assert!(out.is_empty(), "INTERRUPT answered: {out:?}");
        assert_eq!(
            h.only_call(FUSE_INTERRUPT, u, 0),
            Call::Interrupt { unique: target }
        );
        serves(&mut h, 9);
    }
    // NOTIFY_REPLY for a RETRIEVE never sent.
    let arg = W::new().u64(0).u64(0).u32(3).u32(0).u64(0).u64(0).done();
    let (_, d, out) = h.send(FUSE_NOTIFY_REPLY, 7, &arg, b"abc");
    assert_eq!(d, Dispatched::Handled(Opcode::NotifyReply));
    assert!(out.is_empty(), "NOTIFY_REPLY answered: {out:?}");
    assert_eq!(h.calls().len(), 1);
    serves(&mut h, 9);
}

#[test]
fn forgets_of_unknown_nodes_reach_the_filesystem_unanswered() {
    let mut h = Harness::new();
    for (node, n) in [(0xffff_ffff_ffff, 1), (0, 1), (1, u64::MAX), (7, 0)] {
        let (u, d, out) = h.send(FUSE_FORGET, node, &W::new().u64(n).done(), &[]);
        assert_eq!(d, Dispatched::Handled(Opcode::Forget));
        assert!(out.is_empty());
        assert_eq!(
            h.only_call(FUSE_FORGET, u, node),
            Call::Forget {
                ino: node,
                nlookup: n
            }
        );
        serves(&mut h, 9);
    }
}

#[test]
fn a_731_kernel_with_the_short_init_and_only_max_pages() {
    let mut h = Harness::fresh(
        RecFs::new(),
        InitConfig {
            passthrough: Some(1),
            request_timeout: 10,
            ..InitConfig::default()
        },
        false,
    );
    // fuse_init_in before 7.36: major, minor, max_readahead, flags.
    let short = W::new()
        .u32(7)
        .u32(31)
        .u32(128 * 1024)
        .u32(FUSE_MAX_PAGES as u32)
        .done();
    let (u, d, out) = h.send(FUSE_INIT, 0, &short, &[]);
    let Dispatched::Initialized(neg) = d else {
        panic!("{d:?}")
    };
    assert_eq!((neg.minor, neg.max_pages), (31, 256));
    let mut r = ok_body(&out, u, 64);
    assert_eq!(r.u32(), 7, "major");
    assert_eq!(r.u32(), 31, "minor: the kernel's, echoed");
    assert_eq!(r.u32(), 128 * 1024, "max_readahead");
    assert_eq!(
        r.u32(),
        FUSE_MAX_PAGES as u32,
        "flags: only what was offered"
    );
    assert_eq!(r.u16(), 64, "max_background");
    assert_eq!(r.u16(), 48, "congestion_threshold: 3/4 of max_background");
    assert_eq!(r.u32(), 1 << 20, "max_write");
    assert_eq!(r.u32(), 1, "time_gran");
    assert_eq!(r.u16(), 256, "max_pages");
    assert_eq!(r.u16(), 0, "map_alignment");
    assert_eq!(r.u32(), 0, "flags2 (7.36)");
    assert_eq!(r.u32(), 0, "max_stack_depth (7.40)");
    assert_eq!(r.u16(), 0, "request_timeout (7.43)");
    r.zeros(22);
    r.end();
    assert_eq!(h.disp.parse_context().minor, 31);
    assert!(!h.disp.parse_context().setxattr_ext);
    h.calls();
    serves(&mut h, 1);
}

#[test]
fn a_peer_claiming_731_gets_no_newer_flag_whatever_it_offers() {
    let mut h = Harness::fresh(
        RecFs::new(),
        InitConfig {
            wanted: fuselage_core::init::DEFAULT_WANTED | fuselage_core::InitFlags::SETXATTR_EXT,
            passthrough: Some(1),
            ..InitConfig::default()
        },
        false,
    );
    let (u, d, out) = h.send(FUSE_INIT, 0, &init_arg(7, 31, 131072, FULL_OFFER), &[]);
    assert!(matches!(d, Dispatched::Initialized(_)), "{d:?}");
    let mut r = ok_body(&out, u, 64);
    r.bytes(12);
    let flags = r.u32();
    assert_eq!(flags >> 26, 0, "flags newer than 7.31: {flags:#x}");
    assert_ne!(flags & FUSE_MAX_PAGES as u32, 0);
    r.bytes(16);
    assert_eq!(r.u32(), 0, "flags2");
    assert_eq!(r.u32(), 0, "max_stack_depth");
    // SETXATTR_EXT (7.33) was not agreed: the 7.31 setxattr layout parses.
    assert!(!h.disp.parse_context().setxattr_ext);
}

/// A READ argument: `size` bytes at offset 0 of handle 0x55.
fn read_arg(size: u32) -> Vec<u8> {
    W::new()
        .u64(0x55)
        .u64(0)
        .u32(size)
        .u32(0)
        .u64(0)
        .u32(0)
        .u32(0)
        .done()
}

#[test]
fn a_read_larger_than_the_agreed_pages_is_refused() {
    const EINVAL: i32 = 22;
    for (minor, flags) in [(45, FULL_OFFER), (27, 0)] {
        let mut h = Harness::fresh(RecFs::new(), InitConfig::default(), false);
        let (_, d, _) = h.send(FUSE_INIT, 0, &init_arg(7, minor, 131072, flags), &[]);
        let Dispatched::Initialized(n) = d else {
            panic!("INIT: {d:?}")
        };
        h.calls();
        // Without MAX_PAGES the kernel's own 32 pages stand.
        let limit = u32::from(n.max_pages) * 4096;
        if minor == 27 {
            assert_eq!(limit, 32 * 4096);
        }
        // The largest READ the session allows reaches the filesystem.
        let (u, d, _) = h.send(FUSE_READ, 8, &read_arg(limit), &[]);
        assert_eq!(d, Dispatched::Handled(Opcode::Read));
        assert!(matches!(
            h.only_call(FUSE_READ, u, 8),
            Call::Read { size, .. } if size == limit
        ));
        // One byte more, and a gigabyte, are refused without a call.
        for size in [limit + 1, 1 << 30, u32::MAX] {
            let (u, d, out) = h.send(FUSE_READ, 8, &read_arg(size), &[]);
            assert_eq!(
                d,
                Dispatched::Malformed {
                    error: ParseError::ReadTooLarge { size, limit },
                    replied: true
                }
            );
            assert_error(&out, u, EINVAL);
            assert!(
                h.calls().is_empty(),
                "READ of {size} reached the filesystem"
            );
            serves(&mut h, 9);
        }
    }
}
