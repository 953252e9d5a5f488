//! The blocking session against a simulated kernel: message sockets, stream
//! sockets, no-reply opcodes, DESTROY, peer close; and through a real mount:
//! FUSE_INTERRUPT of a slow request and ENOENT on a late reply.

use fuselage_backends::memfs::{MemFs, MemFsConfig};
use fuselage_core::abi::*;
use fuselage_core::op;
use fuselage_core::reply::{ReplyEntry, ReplySink};
use fuselage_core::{Errno, Filesystem, InitConfig, RequestHeader};
use fuselage_linux::{Channel, Mount, MountOptions};
use fuselage_testkit::testfs::{Defer, RangeFs, pattern};
use fuselage_testkit::{channel_pair, encode_request};
use fuselage_transport_blocking::{Session, SessionConfig, SessionEnd};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

fn memfs() -> MemFs {
    MemFs::new(MemFsConfig {
        capacity_bytes: 64 << 20,
        ..MemFsConfig::default()
    })
}

fn config(threads: usize) -> SessionConfig {
    SessionConfig {
        threads,
        init: InitConfig::default(),
        read_only: false,
        splice: true,
        cpu_local: true,
    }
}

#[test]
fn seqpacket_session_serves_and_ends_on_destroy() {
    let (mut kernel, server) = channel_pair().unwrap();
    let session = Session::new(Channel::new(server).unwrap(), memfs(), config(2));
    let handle = std::thread::spawn(move || session.run());
    let init = kernel.init().unwrap();
    assert_eq!((init.major, init.minor), (7, 45));
    let (entry, open) = kernel
        .create(1, "f", libc::O_RDWR as u32, 0o644, 0)
        .unwrap();
    assert_eq!(
        kernel.write(entry.nodeid, open.fh, 0, b"hello world"),
        Ok(11)
    );
    assert_eq!(
        kernel.read(entry.nodeid, open.fh, 6, 100).unwrap(),
        b"world"
    );
    // No reply to FORGET, BATCH_FORGET or INTERRUPT: the next call's reply is
    // the first thing that comes back.
    kernel.interrupt(12345);
    kernel.batch_forget(&[(entry.nodeid, 1), (999_999, 3)]);
    kernel
        .release(entry.nodeid, open.fh, libc::O_RDWR as u32)
        .unwrap();
    assert_eq!(kernel.lookup(1, "f").unwrap().nodeid, entry.nodeid);
    kernel.destroy().unwrap();
    let end = handle.join().unwrap().unwrap();
    assert!(
        matches!(end, SessionEnd::Destroyed | SessionEnd::PeerClosed),
        "{end:?}"
    );
}

#[test]
fn seqpacket_session_ends_when_peer_closes() {
    let (mut kernel, server) = channel_pair().unwrap();
    let session = Session::new(Channel::new(server).unwrap(), memfs(), config(3));
    let handle = std::thread::spawn(move || session.run());
    kernel.init().unwrap();
    kernel.getattr(1, None).unwrap();
    drop(kernel);
    assert_eq!(handle.join().unwrap().unwrap(), SessionEnd::PeerClosed);
}

fn header(opcode: u32, unique: u64, nodeid: u64) -> fuse_in_header {
    fuse_in_header {
        opcode,
        unique,
        nodeid,
        uid: 0,
        gid: 0,
        pid: 1,
        ..Default::default()
    }
}

fn read_reply(s: &mut UnixStream) -> (fuse_out_header, Vec<u8>) {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    let out = fuse_out_header::read_from_bytes(&h).unwrap();
    let mut body = vec![0u8; out.len as usize - 16];
    s.read_exact(&mut body).unwrap();
    (out, body)
}

#[test]
fn stream_socket_frames_by_length() {
    let (mut client, server) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Ask for 4 threads: a stream socket must still get exactly one reader.
    let session = Session::new(
        Channel::new(OwnedFd::from(server)).unwrap(),
        memfs(),
        config(4),
    );
    let threads = Arc::new(Mutex::new(0));
    let t = threads.clone();
    let handle =
        std::thread::spawn(move || session.run_with(|info| *t.lock().unwrap() = info.threads));
    let init = fuse_init_in {
        major: 7,
        minor: 45,
        max_readahead: 131072,
        flags: FUSE_INIT_EXT as u32 | FUSE_MAX_PAGES as u32,
        ..Default::default()
    };
    client
        .write_all(encode_request(&header(FUSE_INIT, 1, 0), init.as_bytes(), &[]).as_bytes())
        .unwrap();
    let (h, body) = read_reply(&mut client);
    assert_eq!((h.error, h.unique), (0, 1));
    assert_eq!(fuse_init_out::read_from_prefix(&body).unwrap().0.minor, 45);
    // Two requests in one write: framing must split them by their lengths.
    let getattr = fuse_getattr_in::default();
    let mut both = encode_request(&header(FUSE_GETATTR, 2, 1), getattr.as_bytes(), &[])
        .as_bytes()
        .to_vec();
    both.extend_from_slice(
        encode_request(&header(FUSE_LOOKUP, 3, 1), &[], &[b"missing\0"]).as_bytes(),
    );
    client.write_all(&both).unwrap();
    let (h2, body2) = read_reply(&mut client);
    assert_eq!((h2.error, h2.unique), (0, 2));
    let attr = fuse_attr_out::read_from_bytes(&body2).unwrap();
    assert_eq!(attr.attr.ino, 1);
    assert_eq!(attr.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    // A missing name: ENOENT, or a cached negative entry (nodeid 0).
    let (h3, body3) = read_reply(&mut client);
    assert_eq!(h3.unique, 3);
    if h3.error == 0 {
        assert_eq!(fuse_entry_out::read_from_bytes(&body3).unwrap().nodeid, 0);
    } else {
        assert_eq!(h3.error, -libc::ENOENT);
    }
    // A synchronous client: one request, wait, the next.
    for i in 0..100u64 {
        client
            .write_all(
                encode_request(&header(FUSE_GETATTR, 10 + i, 1), getattr.as_bytes(), &[])
                    .as_bytes(),
            )
            .unwrap();
        let (h, _) = read_reply(&mut client);
        assert_eq!(h.unique, 10 + i);
    }
    drop(client);
    assert_eq!(handle.join().unwrap().unwrap(), SessionEnd::PeerClosed);
    assert_eq!(*threads.lock().unwrap(), 1);
}

#[test]
fn stream_socket_closed_mid_message_ends_session() {
    let (mut client, server) = UnixStream::pair().unwrap();
    let session = Session::new(
        Channel::new(OwnedFd::from(server)).unwrap(),
        memfs(),
        config(1),
    );
    let handle = std::thread::spawn(move || session.run());
    let init = fuse_init_in {
        major: 7,
        minor: 45,
        ..Default::default()
    };
    client
        .write_all(encode_request(&header(FUSE_INIT, 1, 0), init.as_bytes(), &[]).as_bytes())
        .unwrap();
    let _ = read_reply(&mut client);
    let msg = encode_request(
        &header(FUSE_GETATTR, 2, 1),
        fuse_getattr_in::default().as_bytes(),
        &[],
    );
    client.write_all(&msg.as_bytes()[..20]).unwrap();
    drop(client);
    // Either a clean end or an I/O error for the torn message: never a hang.
    let _ = handle.join().unwrap();
}

// ---------------------------------------------------------------------------
// Through a real mount.

/// Unmounts lazily on drop, even on panic.
struct Guard(std::path::PathBuf);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = fuselage_linux::mount::lazy_unmount(&self.0);
    }
}

/// A filesystem whose LOOKUP of "slow" waits until interrupted (then answers
/// EINTR) and whose LOOKUP of "late" answers only after a delay.
#[derive(Default)]
struct SlowFs {
    interrupted: Arc<(Mutex<Vec<u64>>, Condvar)>,
    waiting: Arc<(Mutex<Option<u64>>, Condvar)>,
}

impl Filesystem for SlowFs {
    fn lookup<S: ReplySink>(&self, req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let name = op.name();
        if name.to_bytes() == b"slow" {
            *self.waiting.0.lock().unwrap() = Some(req.unique);
            self.waiting.1.notify_all();
            let (lock, cv) = &*self.interrupted;
            let guard = lock.lock().unwrap();
            let (guard, timeout) = cv
                .wait_timeout_while(guard, Duration::from_secs(10), |v| !v.contains(&req.unique))
                .unwrap();
            drop(guard);
            reply.error(if timeout.timed_out() {
                Errno::ETIMEDOUT_FALLBACK
            } else {
                Errno::EINTR
            });
        } else {
            reply.error(Errno::ENOENT)
        }
    }

    fn getattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getattr<'_>,
        reply: fuselage_core::reply::ReplyAttr<S>,
    ) {
        let ino = op.ino();
        let attr = fuse_attr {
            ino,
            mode: libc::S_IFDIR | 0o755,
            nlink: 2,
            ..Default::default()
        };
        reply.attr(Duration::ZERO, &attr)
    }

    fn interrupt(&self, _req: &RequestHeader, op: op::Interrupt<'_>) {
        let unique = op.unique();
        let (lock, cv) = &*self.interrupted;
        lock.lock().unwrap().push(unique);
        cv.notify_all();
    }
}

trait TimedOut {
    const ETIMEDOUT_FALLBACK: Errno;
}
impl TimedOut for Errno {
    const ETIMEDOUT_FALLBACK: Errno = Errno(libc::ETIMEDOUT);
}

extern "C" fn on_usr1(_: libc::c_int) {}

#[test]
fn interrupt_reaches_a_slow_request() {
    if !fuselage_testkit::skip::require_fuse() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::new(dir.path(), &MountOptions::default()).unwrap();
    let _guard = Guard(dir.path().to_path_buf());
    let fs = SlowFs::default();
    let waiting = fs.waiting.clone();
    let session = Session::new(mount.channel().unwrap(), fs, config(2));
    let server = std::thread::spawn(move || session.run());

    // SAFETY: installing a no-op handler without SA_RESTART for SIGUSR1; the
    // sigaction struct is zero-initialized and fully set before use.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let path = dir.path().join("slow");
    let (tx, rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        std::fs::metadata(&path)
            .map(|_| ())
            .map_err(|e| e.raw_os_error())
    });
    let tid = rx.recv().unwrap();
    {
        let (lock, cv) = &*waiting;
        let g = lock.lock().unwrap();
        let (g, t) = cv
            .wait_timeout_while(g, Duration::from_secs(10), |w| w.is_none())
            .unwrap();
        assert!(
            !t.timed_out() && g.is_some(),
            "the slow LOOKUP never arrived"
        );
    }
    // SAFETY: `tid` is the live client thread (it is blocked in stat).
    unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
    let result = client.join().unwrap();
    assert_eq!(
        result,
        Err(Some(libc::EINTR)),
        "the kernel should relay our EINTR answer"
    );
    drop(mount);
    let end = server.join().unwrap().unwrap();
    assert!(matches!(end, SessionEnd::Unmounted | SessionEnd::Destroyed));
}

#[test]
fn reply_to_unknown_request_is_enoent_and_serving_goes_on() {
    if !fuselage_testkit::skip::require_fuse() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::new(dir.path(), &MountOptions::default()).unwrap();
    let _guard = Guard(dir.path().to_path_buf());
    let raw = mount.channel().unwrap();
    let session = Session::new(mount.channel().unwrap(), memfs(), config(2));
    let server = std::thread::spawn(move || session.run());
    std::fs::write(dir.path().join("a"), b"x").unwrap();
    // A reply for a request the kernel does not know (as after an interrupt):
    // the kernel refuses it with ENOENT.
    let bogus = fuse_out_header {
        len: 16,
        error: 0,
        unique: 0xdead_beef_0000,
    };
    let err = raw.send(&[bogus.as_bytes()]).unwrap_err();
    assert!(fuselage_linux::channel::is_interrupted_reply(&err), "{err}");
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"x");
    drop(mount);
    assert!(server.join().unwrap().is_ok());
}

#[test]
fn unmount_ends_every_worker() {
    if !fuselage_testkit::skip::require_fuse() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut mount = Mount::new(dir.path(), &MountOptions::default()).unwrap();
    let _guard = Guard(dir.path().to_path_buf());
    let session = Session::new(mount.channel().unwrap(), memfs(), config(4));
    let server = std::thread::spawn(move || session.run());
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("f{i}")), b"data").unwrap();
    }
    mount.unmount().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(server.join()));
    let end = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("workers did not stop after unmount");
    assert!(matches!(
        end.unwrap().unwrap(),
        SessionEnd::Unmounted | SessionEnd::Destroyed
    ));
}

// ---------------------------------------------------------------------------
// Deferred replies: the test kit's RangeFs, answering LOOKUP, GETATTR and READ
// from another thread after its method returned (EIO where it cannot defer);
// READ data comes as a file range of a memfd (spliced on /dev/fuse, copied on
// a socket).

/// A RangeFs holding `content` that always answers from another thread.
fn defer_fs(content: &[u8]) -> RangeFs {
    let mut fs = RangeFs::with_content(content);
    fs.defer = Defer::Always;
    fs
}

#[test]
fn deferred_replies_over_a_socket() {
    let content = pattern(300_000);
    let fs = defer_fs(&content);
    let (mut kernel, server) = channel_pair().unwrap();
    let session = Session::new(Channel::new(server).unwrap(), fs, config(2));
    let handle = std::thread::spawn(move || session.run());
    kernel.init().unwrap();
    assert_eq!(kernel.getattr(1, None).unwrap().attr.ino, 1);
    let e = kernel.lookup(1, "data").unwrap();
    assert_eq!(
        kernel.getattr(e.nodeid, None).unwrap().attr.size,
        content.len() as u64
    );
    let open = kernel.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    let got = kernel.read(e.nodeid, open.fh, 1000, 128 * 1024).unwrap();
    assert_eq!(got, &content[1000..1000 + 128 * 1024]);
    // Past the end: a short (here empty) answer.
    assert!(
        kernel
            .read(e.nodeid, open.fh, 400_000, 4096)
            .unwrap()
            .is_empty()
    );
    drop(kernel);
    assert_eq!(handle.join().unwrap().unwrap(), SessionEnd::PeerClosed);
}

#[test]
fn deferred_replies_through_a_mount() {
    if !fuselage_testkit::skip::require_fuse() {
        return;
    }
    let content = pattern(3 << 20);
    let fs = defer_fs(&content);
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::new(dir.path(), &MountOptions::default()).unwrap();
    let _guard = Guard(dir.path().to_path_buf());
    let session = Session::new(mount.channel().unwrap(), fs, config(2));
    let server = std::thread::spawn(move || session.run());
    let meta = std::fs::metadata(dir.path().join("data")).unwrap();
    assert_eq!(meta.len(), content.len() as u64);
    // FOPEN_DIRECT_IO: every read(2) reaches the server, answered by splice
    // from the memfd on another thread.
    let got = std::fs::read(dir.path().join("data")).unwrap();
    assert!(got == content, "content differs");
    drop(mount);
    assert!(server.join().unwrap().is_ok());
}

/// Answers READ with `ReplyData::fill` and records the space it was lent.
struct FillFs {
    lent: Arc<Mutex<Vec<usize>>>,
}

impl Filesystem for FillFs {
    fn open<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        _op: op::Open<'_>,
        reply: fuselage_core::reply::ReplyOpen<S>,
    ) {
        reply.opened(0, FOPEN_DIRECT_IO)
    }

    fn read<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Read<'_>,
        reply: fuselage_core::reply::ReplyData<S>,
    ) {
        self.lent.lock().unwrap().push(reply.fill_capacity());
        if op.offset() == 1 << 40 {
            return reply.fill(16, |_| Err(Errno::ENXIO));
        }
        let want = op.size() as usize;
        if want > reply.fill_capacity() {
            return reply.error(Errno::EFBIG);
        }
        let offset = op.offset() as usize;
        reply.fill(want, |buf| {
            // Half of what was asked, as a short read near the end would.
            let n = want / 2;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((offset + i) % 251) as u8;
            }
            Ok(n)
        })
    }
}

#[test]
fn filled_replies_use_the_workers_buffer() {
    let lent = Arc::new(Mutex::new(Vec::new()));
    let fs = FillFs { lent: lent.clone() };
    let (mut kernel, server) = channel_pair().unwrap();
    let session = Session::new(Channel::new(server).unwrap(), fs, config(1));
    let fs_handle = std::thread::spawn(move || session.run());
    kernel.init().unwrap();
    let open = kernel.open(1, libc::O_RDONLY as u32).unwrap();
    let got = kernel.read(1, open.fh, 10, 64 * 1024).unwrap();
    let want: Vec<u8> = (0..32 * 1024).map(|i| ((10 + i) % 251) as u8).collect();
    assert_eq!(got, want);
    let err = kernel.read(1, open.fh, 1 << 40, 4096).unwrap_err();
    assert_eq!(err, libc::ENXIO);
    drop(kernel);
    assert_eq!(fs_handle.join().unwrap().unwrap(), SessionEnd::PeerClosed);
    // The worker lent its own reply buffer (max_read and more), not the
    // core's stack fallback (`FILL_STACK_MAX`, 4 KiB).
    let lent = lent.lock().unwrap();
    assert_eq!(lent.len(), 2);
    assert!(lent.iter().all(|&n| n >= 64 * 1024), "{lent:?}");
}
