//! Both io_uring transports through a real mount, beyond memfs: deferred
//! replies (native), file-range replies (pread into the ring entry; splice
//! or copy on uring-rw), uring-rw serving memfs.

#[path = "uring_common/mod.rs"]
mod common;

use common::*;
use fuselage::transport::{Choice, Transport};
use fuselage_testkit::testfs::{Defer, RangeFs, pattern};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

const SIZE: usize = 1_000_000;

/// Reads `data` through the mount in chunks of `chunk` bytes and compares.
fn check_reads(root: &std::path::Path, chunk: usize) {
    let want = pattern(SIZE);
    let f = std::fs::File::open(root.join("data")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), SIZE as u64);
    let mut buf = vec![0u8; chunk];
    let mut off = 0;
    while off < SIZE {
        let n = f.read_at(&mut buf, off as u64).unwrap();
        assert!(n > 0, "short read at {off}");
        assert_eq!(&buf[..n], &want[off..off + n], "data at {off}");
        off += n;
    }
    assert_eq!(f.read_at(&mut buf, SIZE as u64).unwrap(), 0);
}

#[test]
fn native_deferred_replies_and_file_ranges() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    let mut fs = RangeFs::new(SIZE);
    fs.defer = Defer::WhenPossible;
    let served = serve_fs(config(Choice::Uring), fs).expect("serve");
    assert_eq!(served.info.transport, Transport::Uring);
    for chunk in [4096, 65536, 128 * 1024] {
        check_reads(served.path(), chunk);
    }
    served.unmount_and_join().unwrap();
}

#[test]
fn native_deferred_replies_are_really_deferred() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    let mut fs = RangeFs::new(SIZE);
    fs.defer = Defer::WhenPossible;
    let fs = std::sync::Arc::new(fs);
    let served = serve_fs(config(Choice::Uring), Shared(fs.clone())).expect("serve");
    check_reads(served.path(), 65536);
    assert!(
        fs.deferred.load(Ordering::Relaxed) > 10,
        "replies were not deferred"
    );
    served.unmount_and_join().unwrap();
}

#[test]
fn native_serves_memfs_writes_and_xattrs() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    let served = serve(config(Choice::Uring)).expect("serve");
    assert_eq!(served.info.transport, Transport::Uring);
    for _ in 0..3 {
        exercise(served.path());
    }
    served.unmount_and_join().unwrap();
}

#[test]
fn uring_rw_serves_memfs() {
    if !require_uring() {
        return;
    }
    let served = serve(config(Choice::UringRw)).expect("serve");
    assert_eq!(served.info.transport, Transport::UringRw);
    assert_eq!(served.info.threads, 2);
    for _ in 0..3 {
        exercise(served.path());
    }
    served.unmount_and_join().unwrap();
}

#[test]
fn uring_rw_splices_and_copies_file_ranges() {
    if !require_uring() {
        return;
    }
    let served = serve_fs(config(Choice::UringRw), RangeFs::new(SIZE)).expect("serve");
    // 4 KiB replies are copied, 64 KiB and 128 KiB ones spliced.
    for chunk in [4096, 65536, 128 * 1024] {
        check_reads(served.path(), chunk);
    }
    served.unmount_and_join().unwrap();
}

#[test]
fn uring_rw_file_shorter_than_promised_is_sent_by_copy() {
    if !require_uring() {
        return;
    }
    let mut fs = RangeFs::new(SIZE);
    fs.extra = 50_000; // promises bytes past the end: splice comes up short
    let served = serve_fs(config(Choice::UringRw), fs).expect("serve");
    let f = std::fs::File::open(served.path().join("data")).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = f.read_at(&mut buf, (SIZE - 1000) as u64).unwrap();
    assert_eq!(n, 1000);
    assert_eq!(&buf[..n], &pattern(SIZE)[SIZE - 1000..]);
    drop(f); // an open file keeps a lazily unmounted connection alive
    served.unmount_and_join().unwrap();
}

/// Serves an `Arc<RangeFs>` so the test can look at its counters: forwards
/// each view and reply handle unchanged, as a wrapping filesystem does.
struct Shared(std::sync::Arc<RangeFs>);

impl fuselage_core::Filesystem for Shared {
    fn lookup<S: fuselage_core::ReplySink>(
        &self,
        req: &fuselage_core::RequestHeader,
        op: fuselage_core::op::Lookup<'_>,
        reply: fuselage_core::reply::ReplyEntry<S>,
    ) {
        self.0.lookup(req, op, reply)
    }
    fn getattr<S: fuselage_core::ReplySink>(
        &self,
        req: &fuselage_core::RequestHeader,
        op: fuselage_core::op::Getattr<'_>,
        reply: fuselage_core::reply::ReplyAttr<S>,
    ) {
        self.0.getattr(req, op, reply)
    }
    fn open<S: fuselage_core::ReplySink>(
        &self,
        req: &fuselage_core::RequestHeader,
        op: fuselage_core::op::Open<'_>,
        reply: fuselage_core::reply::ReplyOpen<S>,
    ) {
        self.0.open(req, op, reply)
    }
    fn read<S: fuselage_core::ReplySink>(
        &self,
        req: &fuselage_core::RequestHeader,
        op: fuselage_core::op::Read<'_>,
        reply: fuselage_core::reply::ReplyData<S>,
    ) {
        self.0.read(req, op, reply)
    }
}
