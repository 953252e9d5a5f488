//! Serving modes: kernel passthrough (on, required, unavailable), a single
//! regular file as the source, and read-only mounts.

mod passthrough_common;

use fuselage_backends::passthrough::{PassthroughConfig, PassthroughFs, PassthroughMode};
use fuselage_linux::{Mount, MountOptions};
use fuselage_transport_blocking::{Session, SessionConfig, SessionError};
use passthrough_common::*;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::time::Duration;

fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn set_id_files_are_served_without_kernel_passthrough() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-setid");
    let m = Mounted::new(
        &tree.mnt(),
        PassthroughConfig {
            passthrough: PassthroughMode::On,
            ..config(&tree.src())
        },
        Options::default(),
    );
    assert!(m.fs().passthrough_status().active);
    let path = m.join("tool");
    fs::write(&path, b"#!/bin/true\n").unwrap();
    wait_until(Duration::from_secs(5), || {
        m.fs().stats().backing_ids_open == 0
    });
    fs::set_permissions(&path, fs::Permissions::from_mode(0o4755)).unwrap();
    let before = m.fs().stats();

    // Opens of a set-uid file reach the server: its writes must, so that
    // the bit can be cleared for an unprivileged writer.
    let setuid = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    setuid.write_all_at(b"#", 0).unwrap();
    let stats = m.fs().stats();
    assert_eq!(
        stats.passthrough_opens, before.passthrough_opens,
        "{stats:?}"
    );
    assert_eq!(stats.backing_ids_open, 0, "{stats:?}");
    assert!(
        stats.writes > before.writes,
        "the write reached the server: {stats:?}"
    );

    // The bit goes; while the cached open lasts, a new open stays cached
    // too (the kernel refuses to mix both kinds on one inode: EIO).
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    let second = fs::File::open(&path).unwrap();
    let mut buf = [0u8; 4];
    second.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"#!/b");
    assert_eq!(m.fs().stats().passthrough_opens, before.passthrough_opens);
    drop(second);
    drop(setuid);

    // Once they are released, the plain file gets passthrough again.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let f = fs::File::open(&path).unwrap();
            let passthrough = m.fs().stats().passthrough_opens > before.passthrough_opens;
            drop(f);
            passthrough
        }),
        "kernel passthrough never came back: {:?}",
        m.fs().stats()
    );
}

#[test]
fn kernel_passthrough_bypasses_the_server_and_closes_backing_ids() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-kernel");
    let m = Mounted::new(
        &tree.mnt(),
        PassthroughConfig {
            passthrough: PassthroughMode::On,
            ..config(&tree.src())
        },
        Options::default(),
    );
    let status = m.fs().passthrough_status();
    assert!(status.active, "passthrough not active: {status:?}");

    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    {
        let mut f = fs::File::create(m.join("big")).unwrap();
        f.write_all(&data).unwrap();
        // A second open of the same inode shares its backing id.
        let mut g = fs::File::open(m.join("big")).unwrap();
        let mut back = Vec::new();
        g.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let stats = m.fs().stats();
        assert_eq!(stats.backing_ids_open, 1, "{stats:?}");
        assert_eq!(stats.passthrough_opens, 2);
        // Positioned I/O and mmap go to the host file too.
        f.write_all_at(b"PASSTHROUGH", 1000).unwrap();
        let mut buf = [0u8; 11];
        g.read_exact_at(&mut buf, 1000).unwrap();
        assert_eq!(&buf, b"PASSTHROUGH");
        // SAFETY: mapping an open file read-only, reading within it.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                g.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            assert_eq!(*(p as *const u8).add(1000), b'P');
            libc::munmap(p, 4096);
        }
        g.seek(SeekFrom::Start(0)).unwrap();
    }
    let host = fs::read(tree.src().join("big")).unwrap();
    assert_eq!(&host[1000..1011], b"PASSTHROUGH");
    assert_eq!(host.len(), data.len());

    let stats = m.fs().stats();
    assert_eq!(stats.reads, 0, "no READ reached the server: {stats:?}");
    assert_eq!(stats.writes, 0, "no WRITE reached the server: {stats:?}");
    // RELEASE is asynchronous: the last one closes the backing id.
    assert!(
        wait_until(Duration::from_secs(5), || m.fs().stats().backing_ids_open
            == 0),
        "backing id still open: {:?}",
        m.fs().stats()
    );
    let stats = m.fs().stats();
    assert_eq!(stats.backing_opened, 1);
    assert_eq!(stats.backing_closed, 1);

    // Reopened later: a new backing id, closed again.
    assert_eq!(fs::read(m.join("big")).unwrap().len(), data.len());
    assert!(wait_until(Duration::from_secs(5), || {
        let s = m.fs().stats();
        s.backing_opened == 2 && s.backing_closed == 2
    }));
    assert_eq!(m.fs().stats().reads, 0);
}

#[test]
fn passthrough_on_refuses_to_start_without_support() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-refuse");
    // No /dev/fuse descriptor given: registering backing files is impossible.
    let fs = PassthroughFs::new(PassthroughConfig {
        passthrough: PassthroughMode::On,
        ..config(&tree.src())
    })
    .unwrap();
    let mount = Mount::new(&tree.mnt(), &MountOptions::default()).unwrap();
    let session = Session::new(mount.channel().unwrap(), fs, SessionConfig::default());
    let dispatcher = session.dispatcher().clone();
    let result = session.run();
    assert!(
        matches!(result, Err(SessionError::Init(_))),
        "INIT must be refused: {result:?}"
    );
    let status = dispatcher.filesystem().passthrough_status();
    assert!(!status.active);
    let reason = status.reason.expect("a reason");
    assert!(reason.contains("/dev/fuse"), "{reason}");
    drop(mount);
}

#[test]
fn passthrough_auto_falls_back_and_says_why() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-auto");
    let m = Mounted::new(
        &tree.mnt(),
        config(&tree.src()),
        Options {
            device_fd: false,
            ..Options::default()
        },
    );
    let status = m.fs().passthrough_status();
    assert!(!status.active);
    assert!(status.reason.is_some());
    fs::write(m.join("f"), b"served by the server").unwrap();
    assert_eq!(fs::read(m.join("f")).unwrap(), b"served by the server");
    let stats = m.fs().stats();
    assert!(stats.reads > 0 && stats.writes > 0, "{stats:?}");
    assert_eq!(stats.backing_opened, 0);
}

#[test]
fn passthrough_off_never_registers_backing_files() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-off");
    let m = Mounted::new(
        &tree.mnt(),
        PassthroughConfig {
            passthrough: PassthroughMode::Off,
            ..config(&tree.src())
        },
        Options::default(),
    );
    fs::write(m.join("f"), b"x").unwrap();
    assert_eq!(fs::read(m.join("f")).unwrap(), b"x");
    let status = m.fs().passthrough_status();
    assert!(!status.active);
    assert_eq!(status.reason, None);
    assert_eq!(m.fs().stats().backing_opened, 0);
}

#[test]
fn a_single_file_source_serves_exactly_that_file() {
    if !require_fuse() {
        return;
    }
    let dir = TempDir::new("pt-single");
    let host_dir = dir.path().join("host");
    fs::create_dir(&host_dir).unwrap();
    let host = host_dir.join("data.bin");
    fs::write(&host, b"original contents").unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(0o640)).unwrap();
    let mountpoint = dir.path().join("view");
    fs::write(&mountpoint, b"").unwrap();
    let listing = |d: &std::path::Path| {
        let mut v: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing(&host_dir);

    for mode in [PassthroughMode::Off, PassthroughMode::On] {
        let m = Mounted::new(
            &mountpoint,
            PassthroughConfig {
                passthrough: mode,
                ..config(&host)
            },
            Options::default(),
        );
        assert!(m.fs().serves_single_file());
        let md = fs::metadata(&mountpoint).unwrap();
        assert!(md.is_file());
        assert_eq!(md.ino(), fs::metadata(&host).unwrap().ino());
        assert_eq!(md.mode() & 0o777, 0o640);
        assert!(fs::read(&mountpoint).unwrap().starts_with(b"original"));
        // Writes reach the host file.
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&mountpoint)
            .unwrap();
        f.write_all_at(b"CHANGED", 0).unwrap();
        drop(f);
        assert!(fs::read(&host).unwrap().starts_with(b"CHANGED"));
        fs::write(&mountpoint, b"replaced").unwrap();
        assert_eq!(fs::read(&host).unwrap(), b"replaced");
        // Nothing else is visible: it is not a directory.
        assert_eq!(errno_of(fs::read_dir(&mountpoint)), Some(libc::ENOTDIR));
        assert_eq!(
            errno_of(fs::metadata(mountpoint.join("x"))),
            Some(libc::ENOTDIR)
        );
        drop(m);
        fs::write(&host, b"original contents").unwrap();
    }
    // Nothing staged or left behind next to the file or the mountpoint.
    assert_eq!(listing(&host_dir), before);
    assert_eq!(fs::read(&mountpoint).unwrap(), b"");
}

#[test]
fn read_only_refuses_every_modification() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-ro");
    fs::write(tree.src().join("f"), b"keep me").unwrap();
    fs::create_dir(tree.src().join("d")).unwrap();
    let m = Mounted::new(
        &tree.mnt(),
        PassthroughConfig {
            read_only: true,
            ..config(&tree.src())
        },
        Options {
            read_only: true,
            ..Options::default()
        },
    );
    // Reads work.
    assert_eq!(fs::read(m.join("f")).unwrap(), b"keep me");
    assert_eq!(fs::read_dir(m.path()).unwrap().count(), 2);
    // The mount is MS_RDONLY.
    // SAFETY: struct statvfs is plain data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let c = cpath(m.path());
    // SAFETY: valid path and out pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_ne!(st.f_flag & libc::ST_RDONLY, 0);
    // Every modification is EROFS.
    let erofs = Some(libc::EROFS);
    assert_eq!(errno_of(fs::write(m.join("new"), b"x")), erofs);
    assert_eq!(
        errno_of(fs::OpenOptions::new().write(true).open(m.join("f"))),
        erofs
    );
    assert_eq!(errno_of(fs::create_dir(m.join("nd"))), erofs);
    assert_eq!(errno_of(fs::remove_file(m.join("f"))), erofs);
    assert_eq!(errno_of(fs::remove_dir(m.join("d"))), erofs);
    assert_eq!(errno_of(fs::rename(m.join("f"), m.join("g"))), erofs);
    assert_eq!(
        errno_of(fs::set_permissions(
            m.join("f"),
            fs::Permissions::from_mode(0o777)
        )),
        erofs
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("f", m.join("l"))),
        erofs
    );
    assert_eq!(errno_of(fs::hard_link(m.join("f"), m.join("h"))), erofs);
    let f = cpath(&m.join("f"));
    // SAFETY: valid strings.
    unsafe {
        assert_eq!(
            libc::setxattr(f.as_ptr(), c"user.x".as_ptr(), b"1".as_ptr().cast(), 1, 0),
            -1
        );
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), erofs);
        assert_eq!(libc::truncate(f.as_ptr(), 0), -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), erofs);
    }
    // The backend refuses on its own too, should a request get through.
    let stats = m.fs().stats();
    assert_eq!(stats.writes, 0);
    drop(m);
    assert_eq!(fs::read(tree.src().join("f")).unwrap(), b"keep me");
    assert_eq!(fs::read_dir(tree.src()).unwrap().count(), 2);
}

struct OverlayMount(std::path::PathBuf);

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let c = cpath(&self.0);
        // SAFETY: valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn kernel_passthrough_works_when_the_source_is_on_overlayfs() {
    if !require_fuse() {
        return;
    }
    let dir = TempDir::new("pt-overlay");
    for d in ["lower", "upper", "work", "merged", "mnt"] {
        fs::create_dir(dir.path().join(d)).unwrap();
    }
    fs::write(dir.path().join("lower/from-lower"), b"lower layer").unwrap();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.path().join("lower").display(),
        dir.path().join("upper").display(),
        dir.path().join("work").display()
    );
    let data = std::ffi::CString::new(data).unwrap();
    let merged = cpath(&dir.path().join("merged"));
    // SAFETY: valid strings.
    let r = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            merged.as_ptr(),
            c"overlay".as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        fuselage_testkit::skip::require(Err(format!("cannot mount overlayfs: {e}")));
        return;
    }
    let _overlay = OverlayMount(dir.path().join("merged"));
    let m = Mounted::new(
        &dir.path().join("mnt"),
        PassthroughConfig {
            passthrough: PassthroughMode::On,
            ..config(&dir.path().join("merged"))
        },
        Options::default(),
    );
    assert!(m.fs().passthrough_status().active);
    assert_eq!(fs::read(m.join("from-lower")).unwrap(), b"lower layer");
    fs::write(m.join("new"), b"to the upper layer").unwrap();
    assert_eq!(
        fs::read(dir.path().join("upper/new")).unwrap(),
        b"to the upper layer"
    );
    let stats = m.fs().stats();
    assert_eq!(stats.reads + stats.writes, 0, "{stats:?}");
    assert!(stats.passthrough_opens >= 2, "{stats:?}");
    // max_stack_depth 2 lets the kernel accept overlayfs backing files.
    assert!(m.fs().passthrough_status().reason.is_none());
}

/// Threads of this process named `fuselage-watch`.
fn watch_threads() -> usize {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "fuselage-watch")
        .count()
}

fn stat_size(p: &std::path::Path) -> Option<i64> {
    let c = cpath(p);
    // SAFETY: an all-zero stat is valid; `c` is a C string, `st` an out pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::lstat(c.as_ptr(), &mut st) } == 0).then_some(st.st_size)
}

#[test]
fn host_watcher_starts_after_init_and_ends_with_the_filesystem() {
    use fuselage_backends::passthrough::{CachePolicy, WatchStatus};
    if !require_fuse() {
        return;
    }
    let day = Duration::from_secs(86_400);
    for fanotify in [true, false] {
        let tree = Tree::new("pt-watch");
        let before = watch_threads();
        fs::create_dir(tree.src().join("d")).unwrap();
        fs::write(tree.src().join("d/f"), b"one").unwrap();
        let m = Mounted::new(
            &tree.mnt(),
            PassthroughConfig {
                entry_ttl: day,
                attr_ttl: day,
                negative_ttl: day,
                cache: CachePolicy::Always,
                watch_host: true,
                watch_fanotify: fanotify,
                ..config(&tree.src())
            },
            Options::default(),
        );
        let status = m.fs().watch_status_handle().status();
        if fanotify {
            assert!(
                status == WatchStatus::Fanotify
                    || matches!(&status, WatchStatus::Inotify { fallback: Some(_) }),
                "{status:?}"
            );
        } else {
            assert_eq!(status, WatchStatus::Inotify { fallback: None });
        }
        // The thread names itself once it runs, which may be a moment
        // after INIT on a loaded machine.
        assert!(
            wait_until(Duration::from_secs(2), || watch_threads() == before + 1),
            "one watcher thread: {} besides {before}",
            watch_threads()
        );
        assert_eq!(stat_size(&m.join("d/f")), Some(3));
        if status.name() == "inotify" {
            assert_eq!(m.fs().watched_dirs(), 2, "the root and d");
        }
        fs::write(tree.src().join("d/f"), b"longer").unwrap();
        assert!(
            wait_until(Duration::from_secs(2), || stat_size(&m.join("d/f"))
                == Some(6)),
            "host write seen within 2 s ({status:?})"
        );
        drop(m);
        assert!(
            wait_until(Duration::from_secs(2), || watch_threads() == before),
            "the watcher thread ends with the filesystem"
        );
    }
}
