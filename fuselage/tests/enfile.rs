//! ENFILE: the whole system out of open files (`fs.file-max`), on every
//! transport, against the `fuselage` binary serving host files.
//!
//! `fs.file-max` binds only processes without CAP_SYS_ADMIN, so the server
//! runs with `--sandbox` (a passthrough without kernel passthrough keeps no
//! CAP_SYS_ADMIN), while this test, as root, is not bound by it. The limit
//! is lowered to the files open in the system plus a few, then files are
//! opened through the mount and held until one fails: it must fail with
//! ENFILE (never EIO, a panic or a hang), files opened before still read,
//! and once the limit is back and the files are closed the server opens and
//! creates files again. The limit is the machine's: `.config/nextest.toml`
//! runs these tests alone (`threads-required`), and a guard puts the old
//! value back even on panic.

#[macro_use]
mod common;

use common::*;
use std::fs::{self, File};

const FILE_MAX: &str = "/proc/sys/fs/file-max";

/// `CAP_SYS_ADMIN`, from `linux/capability.h`.
const CAP_SYS_ADMIN: u32 = 21;

/// Puts `fs.file-max` back on drop.
struct FileMaxGuard {
    old: String,
}

impl FileMaxGuard {
    /// Lowers `fs.file-max` to the files allocated now plus `margin`.
    fn lower(margin: u64) -> FileMaxGuard {
        let old = fs::read_to_string(FILE_MAX).expect("read fs.file-max");
        let nr = fs::read_to_string("/proc/sys/fs/file-nr").expect("read fs.file-nr");
        let allocated: u64 = nr
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("fs.file-nr's first field");
        let guard = FileMaxGuard { old };
        fs::write(FILE_MAX, format!("{}\n", allocated + margin)).expect("lower fs.file-max");
        guard
    }
}

impl Drop for FileMaxGuard {
    fn drop(&mut self) {
        if let Err(e) = fs::write(FILE_MAX, &self.old) {
            eprintln!("could not put fs.file-max back to {}: {e}", self.old.trim());
        }
    }
}

/// Whether capability `cap` is in the effective set of process `pid`.
fn has_capability(pid: i32, cap: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff");
    eff & (1 << cap) != 0
}

fn out_of_files_in_the_system(transport: &'static str) {
    let setup = Setup {
        backend: Backend::PassthroughNoKernel,
        transport,
        options: &["--sandbox"],
    };
    let mut fs = MountedFs::mount(&setup, &[]);
    const FILES: usize = 400;
    for i in 0..FILES {
        fs::write(fs.join(format!("f{i}")), format!("{i}")).expect("write");
    }
    assert!(
        !has_capability(fs.pid(), CAP_SYS_ADMIN),
        "the confined server kept CAP_SYS_ADMIN, which fs.file-max does not bind"
    );
    let mut open = Vec::new();
    let failure = {
        let _limit = FileMaxGuard::lower(64);
        let mut failure = None;
        for i in 0..FILES {
            match File::open(fs.join(format!("f{i}"))) {
                Ok(f) => open.push(f),
                Err(e) => {
                    failure = Some((i, e));
                    break;
                }
            }
        }
        failure
    };
    let Some((at, err)) = failure else {
        panic!("{FILES} files opened through a server that was out of files in the system")
    };
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENFILE),
        "opening file {at} with the system out of files: {err} ({:?})",
        err.raw_os_error().map(errno_name)
    );
    eprintln!("file {at} failed with {err}");
    // The limit is back (the guard).
    serves_again_after_running_out(&mut fs, open, at, "the limit was raised");
}

every_transport!(out_of_files_in_the_system);
