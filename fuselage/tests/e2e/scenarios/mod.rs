//! The end-to-end scenarios. Each takes the row's [`Setup`], mounts its own
//! filesystem and checks one area of behaviour through ordinary syscalls,
//! so the kernel's FUSE client sits between the test and the server.
//!
//! One module per area; every scenario is re-exported here, where the
//! `e2e_suite!` rows name them.

mod attrs;
mod data;
mod errors;
mod faults;
mod lifecycle;
mod namespace;
mod permissions;
mod setid;

pub use attrs::*;
pub use data::*;
pub use errors::*;
pub use faults::*;
pub use lifecycle::*;
pub use namespace::*;
pub use permissions::*;
pub use setid::*;

use crate::common::*;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const KIB: u64 = 1 << 10;

const MIB: u64 = 1 << 20;

#[track_caller]
fn write(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[track_caller]
fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[track_caller]
fn stat(path: &Path) -> libc::stat {
    lstat(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> Result<i64, i32> {
    let (f, t) = (cpath(from), cpath(to));
    // SAFETY: both are valid C strings; AT_FDCWD is a valid dirfd.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    })
}

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

fn utimensat(path: &Path, times: [libc::timespec; 2]) -> Result<i64, i32> {
    let c = cpath(path);
    // SAFETY: valid C string and a valid array of two timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) })
}

fn statvfs(path: &Path) -> libc::statvfs {
    let c = cpath(path);
    // SAFETY: all-zero is a valid statvfs; valid C string and out pointer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(
        r,
        0,
        "statvfs {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
    st
}

fn lseek(fd: i32, offset: u64, whence: i32) -> Result<i64, i32> {
    // SAFETY: lseek has no memory-safety preconditions.
    check(unsafe { libc::lseek(fd, offset as libc::off_t, whence) })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn umask() -> u32 {
    // SAFETY: umask has no preconditions; it is restored at once (each test
    // is its own process under nextest).
    let m = unsafe { libc::umask(0o022) };
    // SAFETY: as above.
    unsafe { libc::umask(m) };
    m
}

/// Whether the row serves the in-memory filesystem; otherwise says why a
/// memfs-only check does not apply.
fn memfs_only(setup: &Setup, what: &str) -> bool {
    if setup.backend == Backend::Memfs {
        true
    } else {
        eprintln!("not applicable: {what} concerns the in-memory filesystem only");
        false
    }
}

fn show(r: i64) -> String {
    if r < 0 && r > -4096 {
        errno_name(-r as i32)
    } else {
        r.to_string()
    }
}

/// A row's arguments with a source directory made for it if it needs one.
fn start_args(setup: &Setup, dir: &Path, extra: &[&str]) -> Vec<String> {
    let source = setup.backend.make_source(dir);
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    mount_args(setup, source.as_deref(), &extra)
}

/// Writes `chunk` to `f` again and again until a write fails (or accepts
/// nothing) or `limit` bytes went in, then syncs if no write failed. Returns
/// the bytes accepted and the first error, if any: the write's, else the
/// sync's.
fn write_until_error(f: &mut fs::File, chunk: &[u8], limit: u64) -> (u64, Option<io::Error>) {
    use std::io::Write;
    let mut accepted = 0u64;
    while accepted < limit {
        match f.write(chunk) {
            Ok(0) => {
                let zero = io::Error::new(io::ErrorKind::WriteZero, "write returned 0");
                return (accepted, Some(zero));
            }
            Ok(n) => accepted += n as u64,
            Err(e) => return (accepted, Some(e)),
        }
    }
    (accepted, f.sync_all().err())
}
