//! A hostile or unusual peer on a sandbox channel: `fuselage mount
//! /dev/fd/N` served over a unix socket on which the test plays a kernel
//! that sends what Linux never does, and a kernel of protocol 7.31 (the
//! short INIT, only MAX_PAGES offered, as gVisor's host-FD connections do).
//!
//! Whatever arrives, the server answers with an error or drops the message,
//! logs it once per kind (rate-limited), and serves the next request. Both
//! framings (`SOCK_SEQPACKET`, `SOCK_STREAM`) and the memfs and passthrough
//! backends; sockets are served by the blocking transport only (io_uring
//! needs /dev/fuse, whose kernel sends none of this).

mod common;
mod sandbox_common;

use common::*;
use fuselage::core::abi::*;
use fuselage_testkit::{Reply, encode_request, parse_dirents};
use sandbox_common::*;
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// The log line prefix of bad input.
const BAD_INPUT: &str = "fuselage: bad input from the FUSE peer: ";

/// Asserts nothing arrives for a while (no reply to a dropped message, no
/// unsolicited notification).
#[track_caller]
fn quiet<K: KernelEnd>(k: &mut Driver<K>, after: &str) {
    if let Some(r) = k.poll(QUIET) {
        panic!("after {after}: unexpected reply {r:?}");
    }
}

/// GETATTR of the root is served: a directory, with the unique it was
/// sent with (so no stray reply came before it).
#[track_caller]
fn serves<K: KernelEnd>(k: &mut Driver<K>, after: &str) {
    let r = k.call(
        FUSE_GETATTR,
        FUSE_ROOT_ID,
        fuse_getattr_in::default().as_bytes(),
        &[],
    );
    assert_eq!(r.errno(), None, "GETATTR after {after}");
    let attr: fuse_attr_out = r.decode().expect("attr_out");
    assert_eq!(
        attr.attr.mode & libc::S_IFMT,
        libc::S_IFDIR,
        "GETATTR after {after}"
    );
}

/// Asserts `r` is a header-only error reply `-errno` to `unique`.
#[track_caller]
fn error_reply(r: &Reply, unique: u64, errno: i32, what: &str) {
    assert_eq!(
        (r.header.len, r.header.error, r.header.unique),
        (16, -errno, unique),
        "{what}: {r:?}"
    );
}

/// A request with an explicit header (any unique), as bytes.
fn raw(opcode: u32, unique: u64, nodeid: u64, arg: &[u8], payload: &[&[u8]]) -> Vec<u8> {
    let h = fuse_in_header {
        opcode,
        unique,
        nodeid,
        ..Default::default()
    };
    encode_request(&h, arg, payload).to_vec()
}

/// INIT as Linux 6.18 sends it; returns what was agreed.
fn full_init<K: KernelEnd>(k: &mut Driver<K>) -> fuse_init_out {
    let init_in = linux_init_in();
    let out: fuse_init_out = k.ok(FUSE_INIT, 0, init_in.as_bytes(), &[]);
    assert_eq!(out.minor, FUSE_KERNEL_MINOR_VERSION);
    out
}

/// The short `fuse_init_in` of kernels before 7.36.
fn short_init(minor: u32, flags: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [FUSE_KERNEL_VERSION, minor, 128 * 1024, flags] {
        v.extend_from_slice(&w.to_ne_bytes());
    }
    v
}

/// Creates `name` in the root; returns (node, fh).
fn create<K: KernelEnd>(k: &mut Driver<K>, name: &[u8]) -> (u64, u64) {
    let create_in = fuse_create_in {
        flags: libc::O_RDWR as u32 | libc::O_CREAT as u32,
        mode: libc::S_IFREG | 0o644,
        umask: 0o022,
        open_flags: 0,
    };
    let r = k.call(FUSE_CREATE, FUSE_ROOT_ID, create_in.as_bytes(), &[name]);
    assert_eq!(r.errno(), None, "CREATE");
    assert_eq!(r.body.len(), 128 + 16, "CREATE: entry_out then open_out");
    let (entry, rest) = r.decode_prefix::<fuse_entry_out>().expect("entry_out");
    let open = fuse_open_out::read_from_bytes(rest).expect("open_out");
    (entry.nodeid, open.fh)
}

/// The server's end: the peer closes, the server exits 0; returns its
/// stderr.
fn finish<K>(k: Driver<K>, mut server: ServerProcess) -> Vec<String> {
    drop(k);
    let status = server.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "the server did not exit after the peer closed; stderr: {:?}",
            server.stderr_lines()
        )
    });
    server.drain_stderr(Duration::from_secs(2));
    assert!(
        status.success(),
        "exit status {status}; stderr: {:?}",
        server.stderr_lines()
    );
    server.stderr_lines()
}

/// Log lines of bad input containing `what`.
fn logged(lines: &[String], what: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with(BAD_INPUT) && l.contains(what))
        .count()
}

/// The hostile conversation, over either framing.
fn hostile<K: KernelEnd>(kernel: K, mut server: ServerProcess) {
    let mut k = Driver::new(kernel);
    let agreed = full_init(&mut k);
    server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
    serves(&mut k, "INIT");

    // A second INIT (three times, long and short): EIO, and the first
    // session stays (its max_write, its READDIRPLUS).
    for arg in [
        short_init(31, FUSE_MAX_PAGES as u32),
        short_init(31, FUSE_MAX_PAGES as u32),
        fuse_init_in {
            major: 7,
            minor: 45,
            ..Default::default()
        }
        .as_bytes()
        .to_vec(),
    ] {
        let u = k.send(FUSE_INIT, 0, &arg, &[]);
        let r = k.recv();
        error_reply(&r, u, libc::EIO, "second INIT");
        serves(&mut k, "a second INIT");
    }

    // Requests with unique 0: no reply at all (it would read as a
    // notification), valid or not.
    let getattr_in = fuse_getattr_in::default();
    for msg in [
        raw(FUSE_GETATTR, 0, FUSE_ROOT_ID, getattr_in.as_bytes(), &[]),
        raw(FUSE_LOOKUP, 0, FUSE_ROOT_ID, &[], &[b"x\0"]),
        raw(FUSE_LOOKUP, 0, FUSE_ROOT_ID, &[], &[b"no-nul"]),
        raw(FUSE_STATFS, 0, FUSE_ROOT_ID, &[], &[]),
        raw(FUSE_DESTROY, 0, 0, &[], &[]),
    ] {
        k.kernel.send_raw(&msg);
        quiet(&mut k, "a request with unique 0");
        serves(&mut k, "a request with unique 0");
    }

    // An opcode no protocol defines: ENOSYS.
    let u = k.send(9999, FUSE_ROOT_ID, &[], &[]);
    error_reply(&k.recv(), u, libc::ENOSYS, "unknown opcode");
    serves(&mut k, "an unknown opcode");

    // A unique reused while the first request is in flight: both sent
    // before either is answered, each answered once with that unique.
    let (node, fh) = create(&mut k, b"f\0");
    let data = pattern(7, 0, 5000);
    let write_in = fuse_write_in {
        fh,
        size: data.len() as u32,
        ..Default::default()
    };
    k.unique += 2;
    let reused = k.unique;
    k.kernel.send_raw(&raw(
        FUSE_WRITE,
        reused,
        node,
        write_in.as_bytes(),
        &[&data],
    ));
    k.kernel.send_raw(&raw(
        FUSE_GETATTR,
        reused,
        FUSE_ROOT_ID,
        getattr_in.as_bytes(),
        &[],
    ));
    let mut sizes = Vec::new();
    for _ in 0..2 {
        let r = k
            .poll(Duration::from_secs(10))
            .expect("a reply to each request with the reused unique");
        assert_eq!((r.unique(), r.errno()), (reused, None), "{r:?}");
        sizes.push(r.body.len());
    }
    sizes.sort();
    assert_eq!(sizes, [8, 104], "a write_out and an attr_out");
    quiet(&mut k, "two requests with one unique");
    serves(&mut k, "two requests with one unique");

    // A message larger than any request (a WRITE past max_write, sent
    // twice): consumed, answered EINVAL, and the next one is framed.
    let huge = vec![0x5a; agreed.max_write as usize + 8192];
    let huge_in = fuse_write_in {
        fh,
        size: huge.len() as u32,
        ..Default::default()
    };
    for _ in 0..2 {
        let u = k.send(FUSE_WRITE, node, huge_in.as_bytes(), &[&huge]);
        error_reply(&k.recv(), u, libc::EINVAL, "an oversized WRITE");
        serves(&mut k, "an oversized message");
    }

    // Forgets of a node never looked up, of the root, and of `f` twice
    // (CREATE gave one lookup), one at a time and in a batch.
    for (nodeid, nlookup) in [
        (0xdead_beef, 1),
        (0, 1),
        (FUSE_ROOT_ID, u64::MAX),
        (node, 1),
        (node, 1),
        (node, u64::MAX),
    ] {
        k.send(
            FUSE_FORGET,
            nodeid,
            fuse_forget_in { nlookup }.as_bytes(),
            &[],
        );
    }
    let batch = [
        fuse_forget_one {
            nodeid: node,
            nlookup: 3,
        },
        fuse_forget_one {
            nodeid: 0xdead_beef,
            nlookup: 1,
        },
        fuse_forget_one {
            nodeid: node,
            nlookup: 1,
        },
    ];
    let batch_in = fuse_batch_forget_in {
        count: batch.len() as u32,
        dummy: 0,
    };
    k.send(
        FUSE_BATCH_FORGET,
        0,
        batch_in.as_bytes(),
        &[batch.as_bytes()],
    );
    quiet(&mut k, "stray FORGETs");
    serves(&mut k, "stray FORGETs");
    // The file is still there, its data intact, reachable by LOOKUP.
    let found: fuse_entry_out = k.ok(FUSE_LOOKUP, FUSE_ROOT_ID, &[], &[b"f\0"]);
    assert_eq!(found.attr.size, data.len() as u64);
    let read_in = fuse_read_in {
        fh,
        size: 8192,
        ..Default::default()
    };
    let back = k.call(FUSE_READ, found.nodeid, read_in.as_bytes(), &[]);
    assert_eq!(back.errno(), None, "READ after stray FORGETs");
    assert!(back.body == data, "READ after stray FORGETs: other bytes");

    // INTERRUPT of a request never sent (its unique odd, as the kernel
    // marks interrupts), and NOTIFY_REPLY to a RETRIEVE never sent.
    k.kernel.send_raw(&raw(
        FUSE_INTERRUPT,
        0x7777_0001,
        0,
        fuse_interrupt_in {
            unique: 0x7777_0000,
        }
        .as_bytes(),
        &[],
    ));
    quiet(&mut k, "an INTERRUPT of an unknown request");
    serves(&mut k, "an INTERRUPT of an unknown request");
    let notify_in = fuse_notify_retrieve_in {
        offset: 0,
        size: 3,
        ..Default::default()
    };
    k.kernel.send_raw(&raw(
        FUSE_NOTIFY_REPLY,
        0x1234_5678,
        node,
        notify_in.as_bytes(),
        &[b"abc"],
    ));
    quiet(&mut k, "a NOTIFY_REPLY nobody asked for");
    serves(&mut k, "a NOTIFY_REPLY nobody asked for");

    // The session is still the first one: a write of max_write bytes.
    let big = pattern(9, 0, agreed.max_write as usize);
    let write_in = fuse_write_in {
        fh,
        size: big.len() as u32,
        ..Default::default()
    };
    let r = k.call(FUSE_WRITE, found.nodeid, write_in.as_bytes(), &[&big]);
    if r.errno().is_none() {
        let w: fuse_write_out = r.decode().expect("write_out");
        assert_eq!(w.size, agreed.max_write, "a write of the first max_write");
    }

    // Notifications (from the --cache always watcher, seeing the server's
    // own changes on the host) are ones the protocol defines.
    quiet(&mut k, "the last request");
    for n in &k.notifications {
        let code = n.notify_code().expect("a notification");
        assert!((1..=9).contains(&code), "notification {code}");
    }
    // Logged once per kind, however often it came.
    let lines = finish(k, server);
    assert_eq!(
        logged(&lines, "INIT after the session was agreed"),
        1,
        "{lines:#?}"
    );
    assert_eq!(logged(&lines, "with unique 0"), 1, "{lines:#?}");
    assert_eq!(logged(&lines, "unknown opcode 9999"), 1, "{lines:#?}");
    // The LOOKUP without NUL and with unique 0 is its own kind.
    assert_eq!(logged(&lines, "not NUL-terminated"), 1, "{lines:#?}");
    assert_eq!(logged(&lines, "does not fit"), 1, "{lines:#?}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with(BAD_INPUT)).count(),
        5,
        "{lines:#?}"
    );
}

/// A 7.31 kernel: the short INIT offering only MAX_PAGES, then the usual
/// operations; every reply sized as 7.31 lays it out, nothing it cannot
/// know.
fn old_kernel<K: KernelEnd>(kernel: K, server: ServerProcess) {
    old_kernel_notified(kernel, server);
}

/// [`old_kernel`] with the host watcher on (`--cache always`): the
/// server's own changes to the host come back as notifications, each one
/// 7.31 knows.
fn old_kernel_watched<K: KernelEnd>(kernel: K, server: ServerProcess) {
    let n = old_kernel_notified(kernel, server);
    assert!(n > 0, "the watcher sent no notification");
}

/// [`old_kernel`]; returns how many notifications came.
fn old_kernel_notified<K: KernelEnd>(kernel: K, mut server: ServerProcess) -> usize {
    let mut k = Driver::new(kernel);
    let u = k.send(FUSE_INIT, 0, &short_init(31, FUSE_MAX_PAGES as u32), &[]);
    let r = k.recv();
    assert_eq!((r.unique(), r.errno()), (u, None), "INIT: {r:?}");
    // 7.31's fuse_init_out is 64 bytes (with 7.23's fields and up).
    assert_eq!(r.body.len(), 64, "init_out size");
    let init: fuse_init_out = r.decode().expect("init_out");
    assert_eq!((init.major, init.minor), (7, 31), "version");
    assert_eq!(
        init.flags, FUSE_MAX_PAGES as u32,
        "flags: only what was offered"
    );
    assert!(init.max_pages >= 1, "max_pages {}", init.max_pages);
    assert!(init.max_write >= 4096);
    assert!(init.max_readahead <= 128 * 1024);
    assert_eq!(init.map_alignment, 0, "map_alignment");
    assert_eq!(init.flags2, 0, "flags2 (7.36)");
    assert_eq!(init.max_stack_depth, 0, "max_stack_depth (7.40)");
    assert_eq!(init.request_timeout, 0, "request_timeout (7.43)");
    assert_eq!(init.unused, [0; 11], "unused");
    server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
    serves(&mut k, "a 7.31 INIT");

    // LOOKUP of a missing name.
    let missing = k.call(FUSE_LOOKUP, FUSE_ROOT_ID, &[], &[b"missing\0"]);
    if missing.errno() != Some(libc::ENOENT) {
        let e: fuse_entry_out = missing.decode().expect("entry_out");
        assert_eq!(e.nodeid, 0);
    }

    // CREATE, WRITE, READ: no passthrough (backing id) in the open reply.
    let create_in = fuse_create_in {
        flags: libc::O_RDWR as u32 | libc::O_CREAT as u32,
        mode: libc::S_IFREG | 0o644,
        umask: 0o022,
        open_flags: 0,
    };
    let r = k.call(FUSE_CREATE, FUSE_ROOT_ID, create_in.as_bytes(), &[b"old\0"]);
    assert_eq!(r.errno(), None, "CREATE");
    assert_eq!(r.body.len(), 128 + 16, "CREATE: entry_out then open_out");
    let (entry, rest) = r.decode_prefix::<fuse_entry_out>().expect("entry_out");
    let open = fuse_open_out::read_from_bytes(rest).expect("open_out");
    // FOPEN flags up to FOPEN_STREAM (7.31).
    assert_eq!(
        open.open_flags & !0x1f,
        0,
        "open flags {:#x}",
        open.open_flags
    );
    assert_eq!(open.backing_id, 0, "backing id");
    // No attribute flags (FUSE_ATTR_SUBMOUNT is 7.32's, DAX 7.36's).
    assert_eq!(entry.attr.flags, 0, "attr flags");
    let node = entry.nodeid;
    let data = pattern(31, 0, 3 * 4096 + 17);
    let write_in = fuse_write_in {
        fh: open.fh,
        size: data.len() as u32,
        ..Default::default()
    };
    let w: fuse_write_out = k.ok(FUSE_WRITE, node, write_in.as_bytes(), &[&data]);
    assert_eq!(w.size as usize, data.len());
    let read_in = fuse_read_in {
        fh: open.fh,
        size: 65536,
        ..Default::default()
    };
    let back = k.call(FUSE_READ, node, read_in.as_bytes(), &[]);
    assert_eq!(back.errno(), None, "READ");
    assert!(back.body == data, "READ returned other bytes");

    // SETXATTR in 7.31's layout (fuse_setxattr_in of 8 bytes), then
    // GETXATTR of its size.
    let setxattr_in = [1u32.to_ne_bytes(), 0u32.to_ne_bytes()].concat();
    let r = k.call(FUSE_SETXATTR, node, &setxattr_in, &[b"user.k\0", b"v"]);
    if r.errno() != Some(libc::EOPNOTSUPP) {
        assert_eq!(r.errno(), None, "SETXATTR in the 7.31 layout");
        let getxattr_in = fuse_getxattr_in::default();
        let size: fuse_getxattr_out =
            k.ok(FUSE_GETXATTR, node, getxattr_in.as_bytes(), &[b"user.k\0"]);
        assert_eq!(size.size, 1);
    }
    let release_in = fuse_release_in {
        fh: open.fh,
        flags: create_in.flags,
        ..Default::default()
    };
    assert_eq!(
        k.call(FUSE_RELEASE, node, release_in.as_bytes(), &[])
            .errno(),
        None
    );

    // READDIR (READDIRPLUS was not offered).
    let dir: fuse_open_out = k.ok(
        FUSE_OPENDIR,
        FUSE_ROOT_ID,
        fuse_open_in::default().as_bytes(),
        &[],
    );
    assert_eq!(
        dir.open_flags & !0x1f,
        0,
        "opendir flags {:#x}",
        dir.open_flags
    );
    assert_eq!(dir.backing_id, 0);
    let readdir_in = fuse_read_in {
        fh: dir.fh,
        size: 4096,
        ..Default::default()
    };
    let r = k.call(FUSE_READDIR, FUSE_ROOT_ID, readdir_in.as_bytes(), &[]);
    assert_eq!(r.errno(), None, "READDIR");
    let names: Vec<Vec<u8>> = parse_dirents(&r.body)
        .expect("dirents")
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert!(names.contains(&b"old".to_vec()), "{names:?}");
    let releasedir_in = fuse_release_in {
        fh: dir.fh,
        ..Default::default()
    };
    assert_eq!(
        k.call(FUSE_RELEASEDIR, FUSE_ROOT_ID, releasedir_in.as_bytes(), &[])
            .errno(),
        None
    );

    // Nothing unsolicited: no notification a 7.31 kernel cannot know
    // (codes 1 to 6 are 7.31's; none is expected here at all).
    // (With --cache always the watcher reports the server's own changes to
    // the host: INVAL_ENTRY and INVAL_INODE, without 7.38's flags.)
    quiet(&mut k, "the last request");
    for n in &k.notifications {
        let code = n.notify_code().expect("a notification");
        assert!((1..=6).contains(&code), "notification {code} after 7.31");
        if code == FUSE_NOTIFY_INVAL_ENTRY {
            let (out, _) =
                fuse_notify_inval_entry_out::read_from_prefix(&n.body).expect("inval_entry_out");
            assert_eq!(out.flags, 0, "inval_entry flags at 7.31");
        }
    }
    let notified = k.notifications.len();
    let lines = finish(k, server);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with(BAD_INPUT)).count(),
        0,
        "{lines:#?}"
    );
    notified
}

/// Spawns the server on a SOCK_SEQPACKET channel and runs `f`.
fn seqpacket(backend: Backend, extra: &[&str], f: fn(fuselage_testkit::SimKernel, ServerProcess)) {
    let scratch = traversable_tempdir();
    let (kernel, server_fd) = seqpacket_channel();
    let (server, _) = spawn_server(backend, &server_fd, scratch.path(), extra);
    drop(server_fd);
    f(kernel, server);
}

/// Spawns the server on a SOCK_STREAM channel and runs `f`.
fn stream(backend: Backend, extra: &[&str], f: fn(StreamKernel, ServerProcess)) {
    let scratch = traversable_tempdir();
    let (kernel, server_fd) = stream_channel();
    let (server, _) = spawn_server(backend, &server_fd, scratch.path(), extra);
    drop(server_fd);
    f(kernel, server);
}

/// One module per backend, each with both framings.
macro_rules! bad_input_suite {
    ($($row:ident: $backend:expr, $extra:expr, $old:ident),+ $(,)?) => {
        $(
            mod $row {
                #[allow(unused_imports)]
                use super::Backend;

                #[test]
                fn hostile_seqpacket() {
                    super::seqpacket($backend, $extra, super::hostile);
                }

                #[test]
                fn hostile_stream() {
                    super::stream($backend, $extra, super::hostile);
                }

                #[test]
                fn kernel_7_31_seqpacket() {
                    super::seqpacket($backend, $extra, super::$old);
                }

                #[test]
                fn kernel_7_31_stream() {
                    super::stream($backend, $extra, super::$old);
                }
            }
        )+
    };
}

bad_input_suite!(
    memfs: Backend::Memfs, &[], old_kernel,
    passthrough: Backend::Passthrough, &[], old_kernel,
    passthrough_cache_always: Backend::Passthrough, &["--cache", "always"], old_kernel_watched,
);

/// On a stream, a header announcing fewer bytes than itself leaves no way
/// to find the next message: the session ends, saying why, instead of
/// reading garbage as requests.
#[test]
fn stream_header_shorter_than_itself_ends_the_session() {
    let scratch = traversable_tempdir();
    let (kernel, server_fd) = stream_channel();
    let (mut server, _) = spawn_server(Backend::Memfs, &server_fd, scratch.path(), &[]);
    drop(server_fd);
    let mut k = Driver::new(kernel);
    full_init(&mut k);
    server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
    let mut msg = raw(FUSE_GETATTR, 8, FUSE_ROOT_ID, &[0; 16], &[]);
    msg[..4].copy_from_slice(&10u32.to_ne_bytes());
    k.kernel.send_raw(&msg);
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .expect("the server ends the session");
    server.drain_stderr(Duration::from_secs(2));
    let lines = server.stderr_lines();
    assert!(!status.success(), "exit status {status}; {lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("announces 10 bytes, less than the header")),
        "no line says why: {lines:#?}"
    );
}
