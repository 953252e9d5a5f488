//! End to end through the simulated kernel: `SimKernel` on one end of the
//! seqpacket pair, the testkit's serve loop and the core's `Dispatcher` on
//! the other.

mod common;

use common::{Call, Hdr, RecFs};
use fuselage_core::abi::*;
use fuselage_core::init::DEFAULT_WANTED;
use fuselage_core::{Dispatcher, InitConfig, InitFlags, Notifier, SetAttr};
use fuselage_testkit::{
    OFFERED_FLAGS, ServeExit, SimKernel, SocketSink, TestFs, Xattr, channel_pair, serve,
    serve_dispatcher,
};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const O_RDONLY: u32 = 0;
const O_WRONLY: u32 = 1;
const O_RDWR: u32 = 2;
const ENOENT: i32 = 2;
const EIO: i32 = 5;
const ENOSYS: i32 = 38;

type Server = JoinHandle<io::Result<ServeExit>>;

fn start() -> (SimKernel, TestFs, Server) {
    let fs = TestFs::new();
    let (kernel, fd) = channel_pair().unwrap();
    let server = serve(fs.clone(), InitConfig::default(), fd);
    (kernel, fs, server)
}

fn started() -> (SimKernel, TestFs, Server) {
    let (mut k, fs, server) = start();
    k.init().unwrap();
    (k, fs, server)
}

/// Waits until the server has handled everything sent so far (the loop is
/// serial: a reply to a later request means earlier ones are done).
fn sync(k: &mut SimKernel) {
    k.statfs(1).unwrap();
}

#[test]
fn init_lookup_open_read_release() {
    let (mut k, fs, server) = start();
    let init = k.init().unwrap();
    assert_eq!((init.major, init.minor), (7, 45));
    assert_eq!(init.max_readahead, 128 * 1024);
    assert_eq!(init.max_write, 1 << 20);
    assert_eq!(init.max_pages, 256);
    let (w1, w2) = DEFAULT_WANTED.to_wire();
    assert_eq!((init.flags, init.flags2), (w1, w2));
    assert_eq!(k.init_out(), Some(&init));

    let entry = k.lookup(1, "hello.txt").unwrap();
    assert_eq!(entry.nodeid, TestFs::HELLO_INO);
    assert_eq!(entry.attr.ino, TestFs::HELLO_INO);
    assert_eq!(entry.attr.size, TestFs::HELLO.len() as u64);
    assert_eq!(entry.attr.mode, 0o100644);
    assert_eq!((entry.entry_valid, entry.attr_valid), (1, 1));
    assert_eq!(fs.lookup_count(TestFs::HELLO_INO), 1);

    let attr = k.getattr(entry.nodeid, None).unwrap();
    assert_eq!(attr.attr, entry.attr);

    let open = k.open(entry.nodeid, O_RDONLY).unwrap();
    assert_eq!(fs.open_handles(), 1);
    let data = k.read(entry.nodeid, open.fh, 0, 4096).unwrap();
    assert_eq!(data, TestFs::HELLO);
    let part = k.read(entry.nodeid, open.fh, 7, 8).unwrap();
    assert_eq!(part, &TestFs::HELLO[7..15]);
    assert_eq!(k.read(entry.nodeid, open.fh, 1000, 10).unwrap(), b"");
    k.release(entry.nodeid, open.fh, O_RDONLY).unwrap();
    assert_eq!(fs.open_handles(), 0);
    assert_eq!(
        k.read(entry.nodeid, open.fh, 0, 10),
        Err(9),
        "EBADF after release"
    );

    // A larger file, read across its end.
    let data_ino = k.lookup(1, "data.bin").unwrap().nodeid;
    let fh = k.open(data_ino, O_RDONLY).unwrap().fh;
    let got = k.read(data_ino, fh, 4000, 8192).unwrap();
    let want: Vec<u8> = (4000..8192u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(got, want);

    // Nested lookup.
    let sub = k.lookup(1, "subdir").unwrap();
    assert_eq!(sub.attr.mode & 0o170000, 0o040000);
    let nested = k.lookup(sub.nodeid, "nested.txt").unwrap();
    assert_eq!(nested.nodeid, TestFs::NESTED_INO);
    assert_eq!(k.lookup(1, "missing"), Err(ENOENT));

    k.destroy().unwrap();
    assert_eq!(server.join().unwrap().unwrap(), ServeExit::Destroyed);
}

#[test]
fn create_write_and_check_the_backend() {
    let (mut k, fs, server) = started();
    let (entry, open) = k
        .create(1, "new.txt", O_WRONLY | 0o100, 0o666, 0o022)
        .unwrap();
    assert_eq!(entry.attr.mode, 0o100644, "umask applied");
    assert_eq!(entry.attr.size, 0);
    assert_eq!(k.write(entry.nodeid, open.fh, 0, b"Hello"), Ok(5));
    assert_eq!(k.write(entry.nodeid, open.fh, 5, b", world"), Ok(7));
    assert_eq!(k.write(entry.nodeid, open.fh, 20, b"!"), Ok(1));
    k.flush(entry.nodeid, open.fh, 0).unwrap_err(); // TestFs has no FLUSH
    k.release(entry.nodeid, open.fh, O_WRONLY).unwrap();
    let mut want = b"Hello, world".to_vec();
    want.resize(20, 0);
    want.push(b'!');
    assert_eq!(fs.file("new.txt").unwrap(), want);
    assert_eq!(
        k.create(1, "new.txt", O_WRONLY, 0o644, 0),
        Err(17),
        "EEXIST"
    );

    // A write as large as max_write, which fills the negotiated buffer.
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 249) as u8).collect();
    let fh = k.open(entry.nodeid, O_RDWR).unwrap().fh;
    assert_eq!(k.write(entry.nodeid, fh, 0, &big), Ok(1 << 20));
    assert_eq!(fs.contents(entry.nodeid).unwrap(), big);
    let back = k.read(entry.nodeid, fh, (1 << 20) - 100, 4096).unwrap();
    assert_eq!(back, &big[(1 << 20) - 100..]);

    // Truncate by SETATTR, and by OPEN with O_TRUNC.
    let set = fuse_setattr_in {
        valid: FATTR_SIZE | FATTR_MODE,
        size: 3,
        mode: 0o100600,
        ..Default::default()
    };
    let out = k.setattr(entry.nodeid, &set).unwrap();
    assert_eq!((out.attr.size, out.attr.mode), (3, 0o100600));
    assert_eq!(fs.contents(entry.nodeid).unwrap(), &big[..3]);
    k.open(entry.nodeid, O_WRONLY | 0o1000).unwrap();
    assert_eq!(fs.contents(entry.nodeid).unwrap(), b"");

    drop(k);
    assert_eq!(server.join().unwrap().unwrap(), ServeExit::Eof);
}

#[test]
fn forget_and_batch_forget() {
    let (mut k, fs, _server) = started();
    let ino = k.lookup(1, "hello.txt").unwrap().nodeid;
    k.lookup(1, "hello.txt").unwrap();
    k.lookup(1, "empty").unwrap();
    assert_eq!(fs.lookup_count(ino), 2);

    // No reply to FORGET.
    k.forget(ino, 1);
    assert!(k.poll_reply(Duration::from_millis(100)).unwrap().is_none());
    sync(&mut k);
    assert_eq!(fs.lookup_count(ino), 1);

    k.batch_forget(&[(ino, 1), (TestFs::EMPTY_INO, 1)]);
    assert!(k.poll_reply(Duration::from_millis(50)).unwrap().is_none());
    sync(&mut k);
    assert_eq!(fs.lookup_count(ino), 0);
    assert_eq!(fs.lookup_count(TestFs::EMPTY_INO), 0);
    // Forgetting more than was looked up saturates.
    k.forget(ino, 100);
    sync(&mut k);
    assert!(fs.exists(ino));

    // An unlinked inode lives until the kernel forgets it.
    let created = k.lookup(1, "data.bin").unwrap().nodeid;
    k.unlink(1, "data.bin").unwrap();
    assert_eq!(k.lookup(1, "data.bin"), Err(ENOENT));
    assert!(fs.exists(created));
    assert_eq!(fs.contents(created).unwrap().len(), 8192);
    k.forget(created, 1);
    sync(&mut k);
    assert!(!fs.exists(created));
}

#[test]
fn destroy_ends_the_serve_loop() {
    let (mut k, fs, server) = started();
    k.destroy().unwrap();
    assert_eq!(server.join().unwrap().unwrap(), ServeExit::Destroyed);
    assert!(fs.destroyed());
    // Nobody answers now.
    k.request(FUSE_STATFS, 1, &[], &[]).ok();
    assert!(matches!(
        k.recv_reply().map_err(|e| e.kind()),
        Err(io::ErrorKind::UnexpectedEof)
    ));
}

#[test]
fn closing_the_kernel_end_ends_the_serve_loop() {
    let (k, _fs, server) = start();
    drop(k);
    assert_eq!(server.join().unwrap().unwrap(), ServeExit::Eof);
}

#[test]
fn directories() {
    let (mut k, fs, _server) = started();
    let dir = k.mkdir(1, "d", 0o777, 0o022).unwrap();
    assert_eq!(dir.attr.mode, 0o040755);
    let fh = k.opendir(1, 0).unwrap().fh;
    let entries = k.readdir(1, fh, 0, 4096).unwrap();
    let names: Vec<&[u8]> = entries.iter().map(|e| &e.name[..]).collect();
    assert_eq!(
        names,
        [
            &b"."[..],
            b"..",
            b"d",
            b"data.bin",
            b"empty",
            b"hello.txt",
            b"subdir"
        ]
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.off, i as u64 + 1);
    }
    assert_eq!(entries[2].typ, 4, "DT_DIR");
    assert_eq!(entries[3].typ, 8, "DT_REG");

    // Resume from an offset, with a size that fits two records (32 each).
    let two = k.readdir(1, fh, 3, 64).unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two[0].name, b"data.bin");
    assert!(k.readdir(1, fh, 7, 4096).unwrap().is_empty());

    // READDIRPLUS counts lookups of what it returns (but not . and ..).
    let plus = k.readdirplus(1, fh, 0, 4096).unwrap();
    assert_eq!(plus.len(), 7);
    assert_eq!(plus[5].dirent.name, b"hello.txt");
    assert_eq!(plus[5].entry.nodeid, TestFs::HELLO_INO);
    assert_eq!(plus[5].entry.attr.size, TestFs::HELLO.len() as u64);
    assert_eq!(fs.lookup_count(TestFs::HELLO_INO), 1);
    assert_eq!(fs.lookup_count(1), 0);
    k.releasedir(1, fh, 0).unwrap();
    assert_eq!(fs.open_handles(), 0);

    assert_eq!(k.rmdir(1, "subdir"), Err(39), "ENOTEMPTY");
    k.rmdir(1, "d").unwrap();
    assert_eq!(fs.list("/").unwrap().len(), 4);
    assert_eq!(k.opendir(TestFs::HELLO_INO, 0), Err(20), "ENOTDIR");
}

#[test]
fn errors_and_silence_through_the_socket() {
    let (mut k, _fs, _server) = start();
    // Before INIT.
    assert_eq!(k.lookup(1, "hello.txt"), Err(EIO));
    k.init().unwrap();
    // Not implemented by TestFs.
    assert_eq!(k.symlink(1, "l", "t"), Err(ENOSYS));
    assert_eq!(k.getxattr(1, "user.x", 0), Err(ENOSYS));
    // Unknown opcode.
    let r = k.call(19, 1, &[], &[]).unwrap();
    assert_eq!(r.errno(), Some(ENOSYS));
    // A message too short for a header is dropped, and serving goes on.
    k.send_raw(&[1, 2, 3]).unwrap();
    k.send_raw(&[]).unwrap();
    assert!(k.poll_reply(Duration::from_millis(100)).unwrap().is_none());
    // INTERRUPT gets no reply.
    k.interrupt(2);
    assert!(k.poll_reply(Duration::from_millis(50)).unwrap().is_none());
    assert!(k.statfs(1).is_ok());
}

#[test]
fn receive_times_out() {
    let (mut k, _fs, _server) = started();
    k.set_timeout(Duration::from_millis(50)).unwrap();
    let e = k.recv_reply().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn replies_are_matched_by_unique() {
    let (mut k, _fs, _server) = started();
    let a = k.request(FUSE_STATFS, 1, &[], &[]).unwrap();
    let b = k.request(FUSE_LOOKUP, 1, &[], &[b"missing\0"]).unwrap();
    assert_eq!((a % 2, b - a), (0, 2), "even uniques, step 2");
    let rb = k.recv_reply_for(b).unwrap();
    assert_eq!(rb.errno(), Some(ENOENT));
    let ra = k.recv_reply_for(a).unwrap();
    assert_eq!(ra.body.len(), 80);
}

fn serve_rec(
    config: InitConfig,
) -> (
    SimKernel,
    Arc<Dispatcher<RecFs>>,
    Arc<std::os::fd::OwnedFd>,
    Server,
) {
    let (k, fd) = channel_pair().unwrap();
    let notify_fd = Arc::new(fd.try_clone().unwrap());
    let disp = Arc::new(Dispatcher::new(RecFs::new(), config));
    let server = serve_dispatcher(Arc::clone(&disp), fd);
    (k, disp, notify_fd, server)
}

/// The last call the filesystem saw, with its header.
fn last(disp: &Dispatcher<RecFs>) -> (Hdr, Call) {
    disp.filesystem().take().pop().expect("a call")
}

#[test]
fn sim_kernel_speaks_every_operation_as_the_kernel() {
    let config = InitConfig {
        wanted: DEFAULT_WANTED | InitFlags::SETXATTR_EXT,
        ..InitConfig::default()
    };
    let (mut k, disp, notify_fd, server) = serve_rec(config);
    k.set_credentials(10, 20, 30);
    let init = k.init().unwrap();
    assert_ne!(init.flags & (1 << 29), 0, "SETXATTR_EXT agreed");
    let calls = disp.filesystem().take();
    let Call::Init(offer) = &calls[0].1 else {
        panic!("{calls:?}")
    };
    assert_eq!(offer.flags, OFFERED_FLAGS);
    assert_eq!(
        (offer.major, offer.minor, offer.max_readahead),
        (7, 45, 131072)
    );

    // Requests carry the credentials and even uniques; INIT carried none.
    let u = k.next_unique();
    k.statfs(1).unwrap();
    let (h, c) = last(&disp);
    assert_eq!(c, Call::Statfs { ino: 1 });
    assert_eq!(
        (h.unique, h.uid, h.gid, h.pid, h.nodeid),
        (u, 10, 20, 30, 1)
    );
    assert_eq!(u, 4, "INIT took unique 2");

    let check = |disp: &Dispatcher<RecFs>, want: Call| assert_eq!(last(disp).1, want);

    assert_eq!(k.readlink(5).unwrap(), b"link/target");
    check(&disp, Call::Readlink { ino: 5 });
    assert_eq!(k.symlink(1, "l", "../t").unwrap().nodeid, 202);
    check(
        &disp,
        Call::Symlink {
            parent: 1,
            name: b"l".to_vec(),
            target: b"../t".to_vec(),
        },
    );
    assert_eq!(k.mknod(1, "n", 0o010600, 7, 0o022).unwrap().nodeid, 200);
    check(
        &disp,
        Call::Mknod {
            parent: 1,
            name: b"n".to_vec(),
            mode: 0o010600,
            umask: 0o022,
            rdev: 7,
        },
    );
    assert_eq!(k.link(9, 1, "h").unwrap().nodeid, 203);
    check(
        &disp,
        Call::Link {
            ino: 9,
            newparent: 1,
            newname: b"h".to_vec(),
        },
    );
    k.rename(1, "a", 2, "b").unwrap();
    check(
        &disp,
        Call::Rename {
            parent: 1,
            name: b"a".to_vec(),
            newparent: 2,
            newname: b"b".to_vec(),
            flags: 0,
        },
    );
    k.rename2(1, "a", 2, "b", 1).unwrap();
    check(
        &disp,
        Call::Rename {
            parent: 1,
            name: b"a".to_vec(),
            newparent: 2,
            newname: b"b".to_vec(),
            flags: 1,
        },
    );
    k.fsync(9, 3, true).unwrap();
    check(
        &disp,
        Call::Fsync {
            ino: 9,
            fh: 3,
            datasync: true,
        },
    );
    k.fsyncdir(1, 3, false).unwrap();
    check(
        &disp,
        Call::Fsyncdir {
            ino: 1,
            fh: 3,
            datasync: false,
        },
    );
    k.setxattr(9, "user.k", b"v", 1).unwrap();
    check(
        &disp,
        Call::Setxattr {
            ino: 9,
            name: b"user.k".to_vec(),
            value: b"v".to_vec(),
            flags: 1,
            setxattr_flags: 0,
        },
    );
    assert_eq!(k.getxattr(9, "user.k", 0), Ok(Xattr::Size(5)));
    assert_eq!(
        k.getxattr(9, "user.k", 100),
        Ok(Xattr::Data(b"value".to_vec()))
    );
    assert_eq!(k.getxattr(9, "user.k", 1), Err(34));
    assert_eq!(k.listxattr(9, 0), Ok(Xattr::Size(14)));
    assert_eq!(
        k.listxattr(9, 14),
        Ok(Xattr::Data(b"user.a\0user.b\0".to_vec()))
    );
    k.removexattr(9, "user.k").unwrap();
    k.flush(9, 3, 0x77).unwrap();
    check(
        &disp,
        Call::Flush {
            ino: 9,
            fh: 3,
            lock_owner: 0x77,
        },
    );
    k.access(9, 4).unwrap();
    check(&disp, Call::Access { ino: 9, mask: 4 });
    k.fallocate(9, 3, 10, 20, 1).unwrap();
    check(
        &disp,
        Call::Fallocate {
            ino: 9,
            fh: 3,
            offset: 10,
            length: 20,
            mode: 1,
        },
    );
    assert_eq!(k.lseek(9, 3, 5, 3), Ok(105));
    let copy = fuse_copy_file_range_in {
        fh_in: 3,
        off_in: 1,
        nodeid_out: 10,
        fh_out: 4,
        off_out: 2,
        len: 5 << 30,
        flags: 0,
    };
    assert_eq!(k.copy_file_range(9, &copy), Ok(u32::MAX));
    assert_eq!(k.copy_file_range_64(9, &copy), Ok(5 << 30));
    let (e, o) = k.tmpfile(1, O_RDWR, 0o100600, 0o077).unwrap();
    assert_eq!((e.nodeid, o.fh), (301, 0x3334));
    check(
        &disp,
        Call::Tmpfile {
            parent: 1,
            name: b"/".to_vec(),
            mode: 0o100600,
            umask: 0o077,
            flags: O_RDWR,
        },
    );
    let sx = k.statx(9, Some(3), 0, 0x7ff).unwrap();
    assert_eq!((sx.attr_valid, sx.stat.ino, sx.stat.size), (7, 9, 12345));
    check(
        &disp,
        Call::Statx {
            ino: 9,
            fh: Some(3),
            getattr_flags: FUSE_GETATTR_FH,
            sx_flags: 0,
            sx_mask: 0x7ff,
        },
    );
    k.syncfs(1).unwrap();
    check(&disp, Call::Syncfs { ino: 1 });
    let set = fuse_setattr_in {
        valid: FATTR_UID,
        uid: 99,
        ..Default::default()
    };
    k.setattr(9, &set).unwrap();
    check(
        &disp,
        Call::Setattr {
            ino: 9,
            attr: SetAttr {
                uid: Some(99),
                ..SetAttr::default()
            },
        },
    );
    assert_eq!(k.getattr(9, Some(3)).unwrap().attr.ino, 9);
    check(
        &disp,
        Call::Getattr {
            ino: 9,
            fh: Some(3),
        },
    );
    let plus = k.readdirplus(1, 1, 18, 4096).unwrap();
    assert_eq!(plus.len(), 2);
    assert_eq!(plus[1].entry.nodeid, 1019);

    // RELEASE and RELEASEDIR go without credentials, like the kernel's.
    k.release(9, 3, O_RDWR).unwrap();
    let (h, c) = last(&disp);
    assert_eq!(
        c,
        Call::Release {
            ino: 9,
            fh: 3,
            flags: O_RDWR,
            release_flags: 0,
            lock_owner: 0
        }
    );
    assert_eq!((h.uid, h.gid, h.pid), (0, 0, 0));
    k.releasedir(1, 3, 0).unwrap();
    assert_eq!(last(&disp).0.uid, 0);

    // No-reply requests: INTERRUPT reuses the target's unique, bit 0 set.
    let target = k.next_unique();
    k.interrupt(target);
    k.batch_forget(&[(5, 1), (6, 2)]);
    k.forget(7, 3);
    assert!(k.poll_reply(Duration::from_millis(50)).unwrap().is_none());
    k.statfs(1).unwrap();
    let calls = disp.filesystem().take();
    assert_eq!(calls[0].0.unique, target | 1);
    assert_eq!(calls[0].1, Call::Interrupt { unique: target });
    assert_eq!(
        calls[1].1,
        Call::BatchForget {
            nodes: vec![(5, 1), (6, 2)]
        }
    );
    assert_eq!(
        (calls[2].0.nodeid, &calls[2].1),
        (7, &Call::Forget { ino: 7, nlookup: 3 })
    );

    // Notifications from the server, and the answer to a retrieve.
    let notifier = Notifier::new(SocketSink::new(notify_fd));
    notifier.inval_entry(1, b"gone", 0).unwrap();
    notifier.retrieve(0x99, 9, 4096, 3);
    let n = k.recv_notification().unwrap();
    assert_eq!(n.notify_code(), Some(FUSE_NOTIFY_INVAL_ENTRY));
    assert_eq!(&n.body[16..], b"gone\0");
    let n = k.recv_notification().unwrap();
    assert_eq!(n.notify_code(), Some(FUSE_NOTIFY_RETRIEVE));
    let (out, _) = n.decode_prefix::<fuse_notify_retrieve_out>().unwrap();
    k.notify_reply(out.notify_unique, out.nodeid, out.offset, b"abc");
    k.statfs(1).unwrap();
    let calls = disp.filesystem().take();
    assert_eq!(calls[0].0.unique, 0x99);
    assert_eq!(
        calls[0].1,
        Call::NotifyReply {
            ino: 9,
            offset: 4096,
            data: b"abc".to_vec()
        }
    );

    k.destroy().unwrap();
    assert_eq!(server.join().unwrap().unwrap(), ServeExit::Destroyed);
}

#[test]
fn old_kernels_and_downgrades() {
    // A 7.22 kernel: 16-byte INIT, 24-byte reply, no SETXATTR_EXT.
    let (mut k, disp, _fd, _server) = serve_rec(InitConfig::default());
    let out = k.init_with(7, 22, (1 << 16) - 1).unwrap();
    assert_eq!((out.minor, out.max_write, out.time_gran), (22, 1 << 20, 0));
    let calls = disp.filesystem().take();
    let Call::Init(offer) = &calls[0].1 else {
        panic!()
    };
    assert_eq!(offer.flags.bits(), (1 << 16) - 1);
    k.setxattr(9, "user.k", b"v", 0).unwrap();
    assert!(matches!(last(&disp).1, Call::Setxattr { .. }));

    // A kernel of major 8 is told 7.45, then speaks 7.
    let (mut k, _disp, _fd, _server) = serve_rec(InitConfig::default());
    let out = k.init_with(8, 0, 0).unwrap();
    assert_eq!((out.major, out.minor, out.max_write), (7, 45, 0));
    assert!(k.init_out().is_none());
    assert_eq!(k.statfs(1), Err(EIO));
    k.init().unwrap();
    assert!(k.statfs(1).is_ok());
    // Major 6: EPROTO.
    let (mut k, _disp, _fd, _server) = serve_rec(InitConfig::default());
    assert_eq!(k.init_with(6, 45, 0), Err(71));
}
