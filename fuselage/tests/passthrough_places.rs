//! Without file handles (an unprivileged server, overlayfs without
//! `nfs_export`) inodes are anchored by the name they were found under, and
//! their descriptors are only cached: an evicted inode is re-resolved from
//! its recorded place. These tests keep the cache at its minimum (16) and
//! the kernel's entry and attribute caches long, so the kernel keeps sending
//! requests for node ids whose descriptors are long gone, and check that
//! renames, links and unlinks through the mount keep the places right, and
//! that a host-side replacement makes the old node id stale instead of
//! leading somewhere else.

mod passthrough_common;

use fuselage_backends::passthrough::PassthroughConfig;
use passthrough_common::*;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CACHE: usize = 16;

fn by_name(src: &Path) -> PassthroughConfig {
    PassthroughConfig {
        file_handles: false,
        max_cached_fds: Some(CACHE),
        entry_ttl: Duration::from_secs(3600),
        attr_ttl: Duration::from_secs(3600),
        ..config(src)
    }
}

/// Files made for [`churn`].
const CHURN_FILES: usize = 2048;

/// Looks up `n` files through the mount that the kernel has not seen yet
/// (so each is a LOOKUP and a new descriptor), evicting every descriptor
/// cached before.
fn churn(m: &Mounted, n: usize) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    for _ in 0..n {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(i < CHURN_FILES, "make more churn files");
        fs::symlink_metadata(m.join(format!("churn/c{i}"))).unwrap();
    }
}

fn tree_with_churn(prefix: &str) -> Tree {
    let tree = Tree::new(prefix);
    fs::create_dir(tree.src().join("churn")).unwrap();
    for i in 0..CHURN_FILES {
        fs::write(tree.src().join("churn").join(format!("c{i}")), b"").unwrap();
    }
    tree
}

#[test]
fn evicted_inodes_are_found_again_through_renames_links_and_unlinks() {
    if !require_fuse() {
        return;
    }
    let tree = tree_with_churn("pt-places");
    fs::create_dir_all(tree.src().join("a/b/c")).unwrap();
    fs::write(tree.src().join("a/b/c/deep"), b"deep").unwrap();
    fs::create_dir(tree.src().join("d")).unwrap();
    let m = Mounted::new(&tree.mnt(), by_name(&tree.src()), Options::default());
    assert!(!m.fs().stats().file_handles);

    // A deep file, looked up once, then its whole chain evicted: opening it
    // (OPEN on its node id; the kernel does not look it up again) walks up
    // to the root and back down.
    assert_eq!(fs::read(m.join("a/b/c/deep")).unwrap(), b"deep");
    churn(&m, CACHE * 4);
    let before = m.fs().stats().handle_reopens;
    assert_eq!(fs::read(m.join("a/b/c/deep")).unwrap(), b"deep");
    assert!(
        m.fs().stats().handle_reopens > before,
        "the deep file was not re-resolved: {:?}",
        m.fs().stats()
    );

    // Created through the mount, evicted, reopened.
    fs::write(m.join("d/f"), b"one").unwrap();
    churn(&m, CACHE * 4);
    assert_eq!(fs::read(m.join("d/f")).unwrap(), b"one");

    // Renamed through the mount: the place moves with it.
    fs::rename(m.join("d/f"), m.join("a/b/g")).unwrap();
    churn(&m, CACHE * 4);
    fs::write(m.join("a/b/g"), b"two").unwrap();
    assert_eq!(fs::read(tree.src().join("a/b/g")).unwrap(), b"two");

    // A directory renamed: inodes below it are found through it.
    fs::rename(m.join("a/b"), m.join("d/b2")).unwrap();
    churn(&m, CACHE * 4);
    assert_eq!(fs::read(m.join("d/b2/c/deep")).unwrap(), b"deep");
    assert_eq!(fs::read(m.join("d/b2/g")).unwrap(), b"two");

    // A hard link, then the first name unlinked: the other name still leads
    // to the inode, with its link count.
    fs::hard_link(m.join("d/b2/g"), m.join("d/h")).unwrap();
    fs::remove_file(m.join("d/b2/g")).unwrap();
    churn(&m, CACHE * 4);
    assert_eq!(fs::read(m.join("d/h")).unwrap(), b"two");
    assert_eq!(fs::metadata(m.join("d/h")).unwrap().nlink(), 1);

    // Unlinked while open: the open file keeps working whatever is evicted.
    fs::write(m.join("d/open"), b"open").unwrap();
    let f = fs::File::open(m.join("d/open")).unwrap();
    fs::remove_file(m.join("d/open")).unwrap();
    churn(&m, CACHE * 4);
    let mut buf = [0u8; 4];
    // SAFETY: valid fd and buffer.
    let n = unsafe { libc::pread(f.as_raw_fd(), buf.as_mut_ptr().cast(), 4, 0) };
    assert_eq!((n, &buf), (4, b"open"));
    drop(f);

    // Renamed over: the replaced name now leads to the moved file.
    fs::write(m.join("d/x"), b"x").unwrap();
    fs::write(m.join("d/y"), b"y").unwrap();
    fs::rename(m.join("d/x"), m.join("d/y")).unwrap();
    churn(&m, CACHE * 4);
    assert_eq!(fs::read(m.join("d/y")).unwrap(), b"x");

    // RENAME_EXCHANGE swaps the two places.
    fs::write(m.join("d/p"), b"p").unwrap();
    fs::write(m.join("d/q"), b"q").unwrap();
    let (p, q) = (cpath(&m.join("d/p")), cpath(&m.join("d/q")));
    // SAFETY: valid paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::AT_FDCWD,
            q.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    churn(&m, CACHE * 4);
    assert_eq!(fs::read(m.join("d/p")).unwrap(), b"q");
    assert_eq!(fs::read(m.join("d/q")).unwrap(), b"p");

    // Inode numbers are still the host's.
    assert_eq!(
        fs::metadata(m.join("d/b2/c/deep")).unwrap().ino(),
        fs::metadata(tree.src().join("d/b2/c/deep")).unwrap().ino()
    );
    let stats = m.fs().stats();
    assert!(stats.cached_fds <= stats.max_cached_fds, "{stats:?}");
    assert!(stats.fd_evictions > 0, "{stats:?}");
    // Nothing changed behind the server's back, so no recorded place may
    // have been wrong (the kernel would have hidden that by looking the
    // name up again after ESTALE).
    assert_eq!(stats.stale_places, 0, "{stats:?}");
}

#[test]
fn a_host_side_replacement_makes_the_old_node_stale_not_redirected() {
    if !require_fuse() {
        return;
    }
    let tree = tree_with_churn("pt-places-swap");
    let outside = tree.root().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"outside").unwrap();
    fs::create_dir(tree.src().join("s")).unwrap();
    fs::write(tree.src().join("s/victim"), b"inside").unwrap();
    fs::write(tree.src().join("file"), b"old").unwrap();
    let m = Mounted::new(&tree.mnt(), by_name(&tree.src()), Options::default());
    let mnt = fs::File::open(m.path()).unwrap();

    // The kernel knows s, s/victim and file (and keeps them for an hour).
    assert_eq!(fs::read(m.join("s/victim")).unwrap(), b"inside");
    assert_eq!(fs::read(m.join("file")).unwrap(), b"old");
    churn(&m, CACHE * 4);

    // Behind the server's back: s becomes a symlink to a directory outside
    // DIR holding a file of the same name, and file is replaced by another.
    fs::rename(tree.src().join("s"), tree.src().join("s-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, tree.src().join("s")).unwrap();
    fs::rename(tree.src().join("file"), tree.src().join("file-moved")).unwrap();
    fs::write(tree.src().join("file"), b"new").unwrap();

    // Opening the known s/victim must not reach the outside file: the
    // server finds s is no longer the directory it recorded and answers
    // ESTALE; the kernel then looks the names up again and finds a symlink,
    // which this client refuses to follow.
    let r = openat2(&mnt, "s/victim", libc::O_RDWR, 0);
    assert!(
        matches!(r, Err(libc::ELOOP) | Err(libc::ESTALE)),
        "opened something through the swapped directory: {r:?}"
    );
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"outside");

    // The replaced file: the old node id is stale, so what the client gets
    // after the kernel's retry is the file that has the name now, never
    // the old one under a name it no longer has.
    match openat2(&mnt, "file", libc::O_RDONLY, 0) {
        Ok(fd) => {
            let mut buf = [0u8; 8];
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8, 0) };
            assert_eq!(&buf[..n as usize], b"new");
        }
        Err(e) => assert_eq!(e, libc::ESTALE),
    }
    assert!(
        m.fs().stats().stale_places > 0,
        "no re-resolution was refused: {:?}",
        m.fs().stats()
    );
}

#[test]
fn more_inodes_than_the_cache_holds_in_one_directory() {
    if !require_fuse() {
        return;
    }
    const FILES: usize = 2_000;
    let tree = Tree::new("pt-places-many");
    fs::create_dir(tree.src().join("many")).unwrap();
    for i in 0..FILES {
        fs::write(tree.src().join(format!("many/f{i}")), i.to_string()).unwrap();
    }
    let m = Mounted::new(&tree.mnt(), by_name(&tree.src()), Options::default());
    for i in 0..FILES {
        assert_eq!(
            fs::read_to_string(m.join(format!("many/f{i}"))).unwrap(),
            i.to_string()
        );
    }
    for i in (0..FILES).rev().step_by(7) {
        assert_eq!(
            fs::read_to_string(m.join(format!("many/f{i}"))).unwrap(),
            i.to_string()
        );
    }
    let stats = m.fs().stats();
    assert!(stats.inodes > FILES, "{stats:?}");
    assert!(stats.cached_fds <= stats.max_cached_fds, "{stats:?}");
    assert!(stats.handle_reopens > 0, "{stats:?}");
}
