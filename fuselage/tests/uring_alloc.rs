//! Zero allocations per request in steady state, on each transport: a
//! counting global allocator sees every allocation of every thread in this
//! process (server and client); after a warm-up, GETATTR, LOOKUP, READ and
//! WRITE requests (memfs, TTL 0, O_DIRECT, raw libc calls with pre-built
//! CStrings so the client allocates nothing) must not allocate at all.

#[path = "uring_common/mod.rs"]
mod common;

use common::*;
use fuselage::transport::{Choice, Transport};
use fuselage_testkit::AlignedBuf;
use std::ffi::CString;

fuselage_testkit::install_counting_alloc!();

/// One round of requests; returns how many it sent.
fn round(path: &CString, fd: i32, buf: *mut u8) -> u64 {
    // SAFETY: `path` is NUL-terminated, `st` a writable stat, `buf` a live
    // 4 KiB-aligned buffer of 4096 bytes, `fd` an open file.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::stat(path.as_ptr(), &mut st), 0); // LOOKUP + GETATTR
        assert_eq!(libc::fstat(fd, &mut st), 0); // GETATTR
        assert_eq!(libc::pwrite(fd, buf.cast(), 4096, 8192), 4096); // WRITE
        assert_eq!(libc::pread(fd, buf.cast(), 4096, 8192), 4096); // READ
    }
    4
}

fn no_allocations_on(choice: Choice, want: Transport) {
    let served = serve(config(choice)).expect("serve");
    assert_eq!(served.info.transport, want);
    let file = served.path().join("f");
    std::fs::write(&file, vec![7u8; 65536]).unwrap();
    let path = CString::new(file.to_str().unwrap()).unwrap();
    // SAFETY: valid path; O_DIRECT so every read and write reaches the server.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_DIRECT) };
    assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    let mut page = AlignedBuf::page_aligned(4096);
    let buf = page.as_mut_ptr();
    for _ in 0..200 {
        round(&path, fd, buf);
    }
    let before = fuselage_testkit::alloc::process_total();
    let mut requests = 0;
    for _ in 0..1000 {
        requests += round(&path, fd, buf);
    }
    let allocs = fuselage_testkit::alloc::process_total() - before;
    eprintln!("{want}: {allocs} allocations for {requests} requests");
    assert_eq!(
        allocs, 0,
        "{want}: {allocs} allocations in {requests} requests"
    );
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    drop(page);
    served.unmount_and_join().unwrap();
}

#[test]
fn native_allocates_nothing_per_request() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    no_allocations_on(Choice::Uring, Transport::Uring);
}

#[test]
fn uring_rw_allocates_nothing_per_request() {
    if !require_uring() {
        return;
    }
    no_allocations_on(Choice::UringRw, Transport::UringRw);
}

#[test]
fn blocking_fallback_allocates_nothing_per_request() {
    if !require_fuse() {
        return;
    }
    no_allocations_on(Choice::Blocking, Transport::Blocking);
}
