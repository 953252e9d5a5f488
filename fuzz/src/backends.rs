//! Real backends behind the dispatch harness: every message the fuzzer
//! makes reaches memfs, the router, the overlay or the passthrough, whose replies the
//! harness checks as it checks [`FuzzFs`](crate::dispatch_harness::FuzzFs)'s.

use crate::dispatch_harness::{Target, run_on};
use fuselage_backends::memfs::{MemFs, MemFsConfig};
use fuselage_backends::overlay::{OverlayConfig, OverlayFs, UpperLayer};
use fuselage_backends::passthrough::{PassthroughConfig, PassthroughFs};
use fuselage_backends::router::{RoutePath, Router};
use fuselage_backends::stock::StockFs;
use std::path::PathBuf;
use std::sync::OnceLock;

impl Target for MemFs {}
impl Target for Router<MemFs> {}
impl Target for OverlayFs {}
impl Target for PassthroughFs {}

/// A small memfs (16 MiB, so ENOSPC is reachable).
fn memfs() -> MemFs {
    MemFs::new(MemFsConfig {
        capacity_bytes: 16 << 20,
        ..MemFsConfig::default()
    })
}

/// One input against a fresh memfs.
pub fn run_memfs(data: &[u8]) {
    run_on(data, memfs())
}

/// One input against a router: a memfs root with another memfs at `/r`.
pub fn run_router(data: &[u8]) {
    let route = RoutePath::parse("/r").expect("a valid route path");
    let router = Router::new(memfs(), vec![(route, StockFs::Memory(memfs()))])
        .expect("a router over two memfs");
    run_on(data, router)
}

/// The scratch layers of this process: a lower holding a file, a
/// directory and a symlink, and a parent for fresh uppers.
fn layers() -> &'static (PathBuf, PathBuf) {
    static LAYERS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    LAYERS.get_or_init(|| {
        let base =
            std::env::temp_dir().join(format!("fuselage-fuzz-overlay.{}", std::process::id()));
        let lower = base.join("lower");
        let uppers = base.join("uppers");
        std::fs::create_dir_all(lower.join("dir")).expect("mkdir lower/dir");
        std::fs::create_dir_all(&uppers).expect("mkdir uppers");
        std::fs::write(lower.join("file"), b"lower data\n").expect("write lower/file");
        std::fs::write(lower.join("dir/inner"), b"inner\n").expect("write lower/dir/inner");
        let _ = std::os::unix::fs::symlink("file", lower.join("link"));
        (lower, uppers)
    })
}

/// One input against an overlay of the scratch lower under a fresh upper
/// (removed afterwards, so inputs do not see each other's changes).
pub fn run_overlay(data: &[u8]) {
    let (lower, uppers) = layers();
    let upper = uppers.join("u");
    let _ = std::fs::remove_dir_all(&upper);
    std::fs::create_dir(&upper).expect("mkdir upper");
    let fs = OverlayFs::new(OverlayConfig::new(
        vec![lower.clone()],
        UpperLayer::Dir(upper.clone()),
    ))
    .expect("an overlay of the scratch layers");
    run_on(data, fs);
}

/// Fills `dir` with what the scratch trees hold: a file, a directory with
/// a file in it and a symlink.
fn populate(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("dir")).expect("mkdir dir");
    std::fs::write(dir.join("file"), b"host data\n").expect("write file");
    std::fs::write(dir.join("dir/inner"), b"inner\n").expect("write dir/inner");
    let _ = std::os::unix::fs::symlink("file", dir.join("link"));
}

/// One input against the passthrough backend (its defaults: file handles,
/// a private clone of the source's mount when privileged, acting as the
/// caller when root) serving a fresh scratch directory, removed
/// afterwards. A directory that cannot be removed (an input may leave
/// something behind that resists it) is left and the next input takes a
/// new name, so no input sees another's changes.
pub fn run_passthrough(data: &[u8]) {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = BASE.get_or_init(|| {
        let base =
            std::env::temp_dir().join(format!("fuselage-fuzz-passthrough.{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("mkdir the scratch base");
        base
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let source = base.join(format!("s{n}"));
    std::fs::create_dir(&source).expect("mkdir a scratch source");
    populate(&source);
    let fds_before = open_fds();
    let fs = PassthroughFs::new(PassthroughConfig {
        // The process's soft limit stays as it is: an input that leaks
        // descriptors then shows up sooner.
        raise_fd_limit: false,
        ..PassthroughConfig::new(&source)
    })
    .expect("a passthrough of the scratch directory");
    run_on(data, fs);
    // Everything an input opened (inodes, files, directories, backing
    // descriptors) is closed once the filesystem is dropped.
    let fds_after = open_fds();
    assert!(
        fds_after <= fds_before,
        "descriptors leaked: {fds_before} open before the filesystem was made, {fds_after} after it was dropped"
    );
    let _ = std::fs::remove_dir_all(&source);
}

/// How many descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
