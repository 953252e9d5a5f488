//! The sandbox pattern: `fuselage mount /dev/fd/N` serving a connected unix
//! socket on which the test plays the kernel (as gVisor or another sandbox
//! does with a host FD). Nothing is mounted, so neither root nor /dev/fuse
//! is needed.
//!
//! Both framings are covered: `SOCK_SEQPACKET` (one message per send, driven
//! through `fuselage_testkit::SimKernel`) and `SOCK_STREAM` (each message
//! framed by the length in its header).

mod common;
mod sandbox_common;

use common::*;
use fuselage::core::abi::*;
use sandbox_common::*;
use std::time::Duration;
use zerocopy::IntoBytes;

/// The conversation of a sandbox with its server, over either framing.
fn converse<K: KernelEnd>(kernel: K, mut server: ServerProcess, path: &str, backend: Backend) {
    let mut k = Driver::new(kernel);

    // INIT, as Linux 6.18 sends it.
    let init_in = linux_init_in();
    let init: fuse_init_out = k.ok(FUSE_INIT, 0, init_in.as_bytes(), &[]);
    assert_eq!(init.major, FUSE_KERNEL_VERSION, "INIT major");
    assert!(
        init.minor <= FUSE_KERNEL_MINOR_VERSION && init.minor >= 31,
        "INIT minor {}",
        init.minor
    );
    assert!(init.max_write >= 4096, "INIT max_write {}", init.max_write);

    let line = server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
    let want = format!(
        "fuselage: mounted {path} backend={} transport=blocking threads=",
        backend.name()
    );
    assert!(
        line.starts_with(&want),
        "mounted line {line:?} does not start with {want:?}"
    );

    // The root.
    let root: fuse_attr_out = k.ok(
        FUSE_GETATTR,
        FUSE_ROOT_ID,
        fuse_getattr_in::default().as_bytes(),
        &[],
    );
    assert_eq!(
        root.attr.mode & libc::S_IFMT,
        libc::S_IFDIR,
        "root mode {:o}",
        root.attr.mode
    );

    // LOOKUP of a missing name: ENOENT, or a negative entry (nodeid 0).
    let missing = k.call(FUSE_LOOKUP, FUSE_ROOT_ID, &[], &[b"missing\0"]);
    match missing.errno() {
        Some(e) => assert_eq!(
            e,
            libc::ENOENT,
            "LOOKUP of a missing name: {}",
            errno_name(e)
        ),
        None => {
            let entry: fuse_entry_out = missing.decode().expect("entry_out");
            assert_eq!(
                entry.nodeid, 0,
                "LOOKUP of a missing name found node {}",
                entry.nodeid
            );
        }
    }

    // CREATE / WRITE / RELEASE.
    let data = pattern(42, 0, 10_000);
    let create_in = fuse_create_in {
        flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL) as u32,
        mode: libc::S_IFREG | 0o644,
        umask: 0o022,
        open_flags: 0,
    };
    let created = k.call(
        FUSE_CREATE,
        FUSE_ROOT_ID,
        create_in.as_bytes(),
        &[b"hello\0"],
    );
    assert_eq!(
        created.errno(),
        None,
        "CREATE failed: {}",
        errno_name(created.errno().unwrap_or(0))
    );
    let (entry, rest) = created
        .decode_prefix::<fuse_entry_out>()
        .expect("CREATE entry_out");
    let open: fuse_open_out = zerocopy::FromBytes::read_from_bytes(rest).expect("CREATE open_out");
    let node = entry.nodeid;
    assert_ne!(node, 0, "CREATE returned node 0");
    assert_ne!(node, FUSE_ROOT_ID, "CREATE returned the root");
    assert_eq!(entry.attr.mode & libc::S_IFMT, libc::S_IFREG);
    let write_in = fuse_write_in {
        fh: open.fh,
        offset: 0,
        size: data.len() as u32,
        ..Default::default()
    };
    let written: fuse_write_out = k.ok(FUSE_WRITE, node, write_in.as_bytes(), &[&data]);
    assert_eq!(written.size as usize, data.len(), "WRITE size");
    let release_in = fuse_release_in {
        fh: open.fh,
        flags: create_in.flags,
        ..Default::default()
    };
    let released = k.call(FUSE_RELEASE, node, release_in.as_bytes(), &[]);
    assert_eq!(released.errno(), None, "RELEASE");

    // LOOKUP / OPEN / READ / RELEASE.
    let found: fuse_entry_out = k.ok(FUSE_LOOKUP, FUSE_ROOT_ID, &[], &[b"hello\0"]);
    assert_eq!(found.nodeid, node, "LOOKUP finds the created node");
    assert_eq!(found.attr.size, data.len() as u64, "size after WRITE");
    let open_in = fuse_open_in {
        flags: libc::O_RDONLY as u32,
        open_flags: 0,
    };
    let opened: fuse_open_out = k.ok(FUSE_OPEN, node, open_in.as_bytes(), &[]);
    let read_in = fuse_read_in {
        fh: opened.fh,
        offset: 0,
        size: 65536,
        ..Default::default()
    };
    let all = k.call(FUSE_READ, node, read_in.as_bytes(), &[]);
    assert_eq!(all.errno(), None, "READ");
    assert!(
        all.body == data,
        "READ returned {} bytes, first difference at {:?}",
        all.body.len(),
        first_difference(&all.body, &data)
    );
    let read_in = fuse_read_in {
        fh: opened.fh,
        offset: 4096,
        size: 100,
        ..Default::default()
    };
    let part = k.call(FUSE_READ, node, read_in.as_bytes(), &[]);
    assert_eq!(part.body, &data[4096..4196], "READ at an offset");
    let read_in = fuse_read_in {
        fh: opened.fh,
        offset: 20_000,
        size: 100,
        ..Default::default()
    };
    let past = k.call(FUSE_READ, node, read_in.as_bytes(), &[]);
    assert_eq!((past.errno(), past.body.len()), (None, 0), "READ past EOF");
    let release_in = fuse_release_in {
        fh: opened.fh,
        flags: open_in.flags,
        ..Default::default()
    };
    assert_eq!(
        k.call(FUSE_RELEASE, node, release_in.as_bytes(), &[])
            .errno(),
        None,
        "RELEASE"
    );

    // FORGET gets no reply; the next reply must be the STATFS one.
    k.send(
        FUSE_FORGET,
        node,
        fuse_forget_in { nlookup: 2 }.as_bytes(),
        &[],
    );
    let _statfs: fuse_statfs_out = k.ok(FUSE_STATFS, FUSE_ROOT_ID, &[], &[]);

    // Closing the kernel end ends the session: exit 0.
    drop(k);
    let status = server.wait_exit(EXIT_TIMEOUT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "the server did not exit within {EXIT_TIMEOUT:?} of the peer closing; stderr: {:?}",
            server.stderr_lines()
        )
    });
    server.drain_stderr(Duration::from_secs(2));
    assert!(
        status.success(),
        "exit status {status} after the peer closed; stderr: {:?}",
        server.stderr_lines()
    );
}

/// A SOCK_SEQPACKET channel, through the testkit's simulated kernel.
fn seqpacket(backend: Backend) {
    let scratch = traversable_tempdir();
    let (kernel, server_fd) = seqpacket_channel();
    let (server, path) = spawn_server(backend, &server_fd, scratch.path(), &[]);
    drop(server_fd);
    converse(kernel, server, &path, backend);
}

/// A SOCK_STREAM channel.
fn stream(backend: Backend) {
    let scratch = traversable_tempdir();
    let (kernel, server_fd) = stream_channel();
    let (server, path) = spawn_server(backend, &server_fd, scratch.path(), &[]);
    drop(server_fd);
    converse(kernel, server, &path, backend);
}

/// One module per backend, each with both framings.
macro_rules! sandbox_suite {
    ($($row:ident: $backend:expr),+ $(,)?) => {
        $(
            mod $row {
                #[allow(unused_imports)]
                use super::Backend;

                #[test]
                fn seqpacket() {
                    super::seqpacket($backend);
                }

                #[test]
                fn stream() {
                    super::stream($backend);
                }
            }
        )+
    };
}

sandbox_suite!(memfs: Backend::Memfs);
