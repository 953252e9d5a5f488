//! The passthrough backend mounted for real: operations through the mount
//! reach the host directory with host semantics, and host changes show
//! through the mount.

mod passthrough_common;

use fuselage_backends::passthrough::{PassthroughConfig, PassthroughMode};
use passthrough_common::*;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

fn mount(tree: &Tree) -> Mounted {
    Mounted::new(&tree.mnt(), config(&tree.src()), Options::default())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn host_visibility_both_ways() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-visibility");
    // Without kernel passthrough, so that reads and writes reach the server
    // (the kernel passthrough test covers the other path).
    let m = Mounted::new(
        &tree.mnt(),
        PassthroughConfig {
            passthrough: PassthroughMode::Off,
            ..config(&tree.src())
        },
        Options::default(),
    );

    // Written through the mount: byte-exact on the host, sizes from 0 to
    // past the splice threshold (so both read paths are used).
    for (name, len) in [("empty", 0usize), ("small", 1000), ("big", 3 << 20)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(m.join(name), &data).unwrap();
        assert_eq!(
            fs::read(tree.src().join(name)).unwrap(),
            data,
            "{name} on the host"
        );
        assert_eq!(
            fs::read(m.join(name)).unwrap(),
            data,
            "{name} through the mount"
        );
    }
    // Ranged reads near the end: clamped to the file size.
    let f = fs::File::open(m.join("big")).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let n = f.read_at(&mut buf, (3 << 20) - 1000).unwrap();
    assert_eq!(n, 1000);
    assert_eq!(f.read_at(&mut buf, 3 << 20).unwrap(), 0);
    assert!(m.fs().stats().spliced_reads > 0, "large reads are spliced");

    // Inode numbers are the host's.
    let host = fs::metadata(tree.src().join("small")).unwrap();
    let seen = fs::metadata(m.join("small")).unwrap();
    assert_eq!(host.ino(), seen.ino());
    assert_eq!(host.mode(), seen.mode());
    assert_eq!(host.mtime_nsec(), seen.mtime_nsec());

    // Changed on the host: seen through the mount once the timeouts pass.
    fs::write(tree.src().join("hostmade"), b"from the host").unwrap();
    assert_eq!(fs::read(m.join("hostmade")).unwrap(), b"from the host");
    fs::write(tree.src().join("small"), b"rewritten on the host").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(fs::read(m.join("small")).unwrap(), b"rewritten on the host");
    fs::remove_file(tree.src().join("hostmade")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!m.join("hostmade").exists());

    // Directory listings match.
    let mut names: Vec<_> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut host_names: Vec<_> = fs::read_dir(tree.src())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    host_names.sort();
    assert_eq!(names, host_names);
}

#[test]
fn hard_links_share_one_inode() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-links");
    let m = mount(&tree);
    fs::write(m.join("a"), b"x").unwrap();
    fs::hard_link(m.join("a"), m.join("b")).unwrap();
    fs::hard_link(tree.src().join("a"), tree.src().join("c")).unwrap();
    let (a, b, c) = (
        fs::metadata(m.join("a")).unwrap(),
        fs::metadata(m.join("b")).unwrap(),
        fs::metadata(m.join("c")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.ino(), c.ino());
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(fs::metadata(m.join("a")).unwrap().nlink(), 3);
    fs::remove_file(m.join("b")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(fs::metadata(m.join("a")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(tree.src().join("a")).unwrap().nlink(), 2);
}

#[test]
fn utime_omit_and_now() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-utime");
    let m = mount(&tree);
    let p = m.join("f");
    fs::write(&p, b"x").unwrap();
    let c = cpath(&p);
    let set = |atime: libc::timespec, mtime: libc::timespec| {
        let ts = [atime, mtime];
        // SAFETY: valid path and two timespecs.
        let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) };
        assert_eq!(r, 0, "utimensat: {}", std::io::Error::last_os_error());
    };
    let at = |s: i64, ns: i64| libc::timespec {
        tv_sec: s,
        tv_nsec: ns,
    };
    set(at(1_000_000, 111), at(2_000_000, 222));
    let host = fs::metadata(tree.src().join("f")).unwrap();
    assert_eq!((host.atime(), host.atime_nsec()), (1_000_000, 111));
    assert_eq!((host.mtime(), host.mtime_nsec()), (2_000_000, 222));
    // UTIME_OMIT leaves mtime alone.
    set(at(3_000_000, 333), at(0, libc::UTIME_OMIT));
    let host = fs::metadata(tree.src().join("f")).unwrap();
    assert_eq!((host.atime(), host.atime_nsec()), (3_000_000, 333));
    assert_eq!((host.mtime(), host.mtime_nsec()), (2_000_000, 222));
    // UTIME_NOW for mtime, UTIME_OMIT for atime.
    set(at(0, libc::UTIME_OMIT), at(0, libc::UTIME_NOW));
    let host = fs::metadata(tree.src().join("f")).unwrap();
    assert_eq!(host.atime(), 3_000_000);
    assert!(host.mtime() > 1_600_000_000);
    // Seen through the mount too.
    let seen = fs::metadata(&p).unwrap();
    assert_eq!((seen.atime(), seen.atime_nsec()), (3_000_000, 333));
    assert_eq!(seen.mtime(), host.mtime());
}

#[test]
fn rename_noreplace_and_exchange() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-rename");
    let m = mount(&tree);
    fs::write(m.join("a"), b"A").unwrap();
    fs::write(m.join("b"), b"B").unwrap();
    fs::create_dir(m.join("d")).unwrap();
    let (a, b, d) = (
        cpath(&m.join("a")),
        cpath(&m.join("b")),
        cpath(&m.join("d")),
    );
    let rename2 = |from: &CString, to: &CString, flags: u32| {
        // SAFETY: valid paths.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                flags,
            )
        };
        if r == 0 { 0 } else { errno() }
    };
    assert_eq!(rename2(&a, &b, libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(fs::read(tree.src().join("b")).unwrap(), b"B");
    assert_eq!(rename2(&a, &b, libc::RENAME_EXCHANGE), 0);
    assert_eq!(fs::read(tree.src().join("a")).unwrap(), b"B");
    assert_eq!(fs::read(tree.src().join("b")).unwrap(), b"A");
    assert_eq!(fs::read(m.join("a")).unwrap(), b"B");
    // Exchange a file and a directory.
    assert_eq!(rename2(&a, &d, libc::RENAME_EXCHANGE), 0);
    assert!(tree.src().join("a").is_dir());
    assert_eq!(fs::read(tree.src().join("d")).unwrap(), b"B");
    let c = cpath(&m.join("c"));
    assert_eq!(rename2(&b, &c, libc::RENAME_NOREPLACE), 0);
    assert_eq!(fs::read(tree.src().join("c")).unwrap(), b"A");
    assert!(!tree.src().join("b").exists());
    // Plain rename over an existing file, and across directories.
    fs::create_dir(m.join("sub")).unwrap();
    fs::rename(m.join("c"), m.join("sub/c2")).unwrap();
    assert_eq!(fs::read(tree.src().join("sub/c2")).unwrap(), b"A");
}

#[test]
fn fallocate_modes_and_holes() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-falloc");
    let m = mount(&tree);
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(m.join("f"))
        .unwrap();
    let fd = f.as_raw_fd();
    let falloc = |mode: i32, off: i64, len: i64| {
        // SAFETY: plain syscall on an open fd.
        let r = unsafe { libc::fallocate(fd, mode, off, len) };
        if r == 0 { 0 } else { errno() }
    };
    // Plain allocation extends the size.
    assert_eq!(falloc(0, 0, 1 << 20), 0);
    assert_eq!(fs::metadata(tree.src().join("f")).unwrap().len(), 1 << 20);
    // KEEP_SIZE allocates past the end without changing the size.
    assert_eq!(falloc(libc::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20), 0);
    let host = fs::metadata(tree.src().join("f")).unwrap();
    assert_eq!(host.len(), 1 << 20);
    assert!(host.blocks() * 512 >= 2 << 20);
    // Data, then a punched hole reads as zeros and shows as a hole.
    f.write_all_at(&vec![0xAB; 1 << 20], 0).unwrap();
    f.sync_all().unwrap();
    assert_eq!(
        falloc(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            256 << 10,
            256 << 10
        ),
        0
    );
    let data = fs::read(tree.src().join("f")).unwrap();
    assert!(data[..256 << 10].iter().all(|&b| b == 0xAB));
    assert!(data[256 << 10..512 << 10].iter().all(|&b| b == 0));
    assert!(data[512 << 10..].iter().all(|&b| b == 0xAB));
    // SEEK_HOLE / SEEK_DATA through the mount (FUSE_LSEEK).
    // SAFETY: plain syscalls on an open fd.
    let hole = unsafe { libc::lseek(fd, 0, libc::SEEK_HOLE) };
    assert_eq!(hole, 256 << 10);
    // SAFETY: as above.
    let data_at = unsafe { libc::lseek(fd, 256 << 10, libc::SEEK_DATA) };
    assert_eq!(data_at, 512 << 10);
    // ZERO_RANGE and COLLAPSE/INSERT where the host supports them (ext4,
    // xfs): the same answer as on the host.
    assert_eq!(falloc(libc::FALLOC_FL_ZERO_RANGE, 0, 4096), 0);
    assert!(
        fs::read(tree.src().join("f")).unwrap()[..4096]
            .iter()
            .all(|&b| b == 0)
    );
    let r = falloc(libc::FALLOC_FL_COLLAPSE_RANGE, 0, 4096);
    assert!(r == 0 || r == libc::EOPNOTSUPP, "collapse: {r}");
    if r == 0 {
        assert_eq!(
            fs::metadata(tree.src().join("f")).unwrap().len(),
            (1 << 20) - 4096
        );
        assert_eq!(falloc(libc::FALLOC_FL_INSERT_RANGE, 0, 4096), 0);
        assert_eq!(fs::metadata(tree.src().join("f")).unwrap().len(), 1 << 20);
    }
    // An unknown mode is refused by the host, not emulated.
    assert_ne!(falloc(0x4000_0000, 0, 4096), 0);
}

#[test]
fn paths_near_path_max() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-deep");
    let m = mount(&tree);
    // Components of 200 bytes, then a last one of up to 255, so that the
    // path through the mount is just under PATH_MAX (4096 with the NUL).
    let comp = "d".repeat(200);
    let mut rel = std::path::PathBuf::new();
    while m.join(&rel).as_os_str().len() + 1 + 200 + 1 + 255 <= 4090 {
        rel.push(&comp);
        fs::create_dir(m.join(&rel)).unwrap();
    }
    let name_len = (4090 - m.join(&rel).as_os_str().len() - 1).min(255);
    let file = rel.join("f".repeat(name_len));
    let full = m.join(&file);
    assert!(full.as_os_str().len() >= 3850, "{}", full.as_os_str().len());
    assert!(full.as_os_str().len() < 4095);
    fs::write(&full, b"deep").unwrap();
    assert_eq!(fs::read(&full).unwrap(), b"deep");
    assert_eq!(fs::metadata(&full).unwrap().len(), 4);
    // The host has it (walked component by component, since the host path
    // may be longer than PATH_MAX).
    let mut dir = fs::File::open(tree.src()).unwrap();
    let comps: Vec<_> = file.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let name = CString::new(c.as_os_str().as_encoded_bytes()).unwrap();
        let flags = if i + 1 == comps.len() {
            libc::O_RDONLY
        } else {
            libc::O_RDONLY | libc::O_DIRECTORY
        };
        // SAFETY: valid dirfd and name.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
        assert!(fd >= 0, "openat {i}: {}", std::io::Error::last_os_error());
        // SAFETY: a new fd we own.
        dir = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    }
    let mut s = String::new();
    dir.read_to_string(&mut s).unwrap();
    assert_eq!(s, "deep");
}

#[test]
fn xattrs_and_posix_acls() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-xattr");
    let m = mount(&tree);
    fs::write(m.join("f"), b"x").unwrap();
    let p = cpath(&m.join("f"));
    let host = cpath(&tree.src().join("f"));
    // SAFETY: valid strings and buffers in all the xattr calls below.
    unsafe {
        assert_eq!(
            libc::setxattr(
                p.as_ptr(),
                c"user.k".as_ptr(),
                b"value".as_ptr().cast(),
                5,
                0
            ),
            0
        );
        let mut buf = [0u8; 64];
        let n = libc::getxattr(
            host.as_ptr(),
            c"user.k".as_ptr(),
            buf.as_mut_ptr().cast(),
            64,
        );
        assert_eq!(&buf[..n as usize], b"value");
        let n = libc::getxattr(p.as_ptr(), c"user.k".as_ptr(), std::ptr::null_mut(), 0);
        assert_eq!(n, 5);
        let n = libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), 64);
        assert!(n > 0);
        assert!(buf[..n as usize].windows(6).any(|w| w == b"user.k"));
        assert_eq!(
            libc::setxattr(
                p.as_ptr(),
                c"user.k".as_ptr(),
                b"v".as_ptr().cast(),
                1,
                libc::XATTR_CREATE
            ),
            -1
        );
        assert_eq!(errno(), libc::EEXIST);
        assert_eq!(libc::removexattr(p.as_ptr(), c"user.k".as_ptr()), 0);
        let n = libc::getxattr(
            host.as_ptr(),
            c"user.k".as_ptr(),
            buf.as_mut_ptr().cast(),
            64,
        );
        assert_eq!((n, errno()), (-1, libc::ENODATA));
    }
    // POSIX ACLs through setfacl/getfacl.
    if std::process::Command::new("setfacl")
        .arg("--version")
        .output()
        .is_ok()
    {
        let out = std::process::Command::new("setfacl")
            .args(["-m", "u:65534:rw"])
            .arg(m.join("f"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = std::process::Command::new("getfacl")
            .arg("-n")
            .arg(tree.src().join("f"))
            .output()
            .unwrap();
        let acl = String::from_utf8_lossy(&out.stdout);
        assert!(acl.contains("user:65534:rw-"), "{acl}");
        // The ACL mask shows in the group bits on both sides.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            fs::metadata(m.join("f")).unwrap().mode() & 0o070,
            fs::metadata(tree.src().join("f")).unwrap().mode() & 0o070
        );
        // A default ACL on a directory is inherited by files created
        // through the mount (the host applies it, not the umask).
        fs::create_dir(m.join("d")).unwrap();
        let out = std::process::Command::new("setfacl")
            .args(["-d", "-m", "u:65534:rwx"])
            .arg(m.join("d"))
            .output()
            .unwrap();
        assert!(out.status.success());
        fs::write(m.join("d/inherits"), b"").unwrap();
        let out = std::process::Command::new("getfacl")
            .arg("-n")
            .arg(tree.src().join("d/inherits"))
            .output()
            .unwrap();
        let acl = String::from_utf8_lossy(&out.stdout);
        assert!(acl.contains("user:65534:rw"), "{acl}");
    }
}

#[test]
fn xattrs_of_symlinks_are_their_own() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-lxattr");
    let m = mount(&tree);
    fs::write(tree.src().join("target"), b"t").unwrap();
    std::os::unix::fs::symlink("target", tree.src().join("link")).unwrap();
    let link = cpath(&m.join("link"));
    let host_link = cpath(&tree.src().join("link"));
    let host_target = cpath(&tree.src().join("target"));
    // SAFETY: valid strings and buffers.
    unsafe {
        assert_eq!(
            libc::lsetxattr(
                link.as_ptr(),
                c"trusted.k".as_ptr(),
                b"L".as_ptr().cast(),
                1,
                0
            ),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
        let mut buf = [0u8; 8];
        let n = libc::lgetxattr(
            host_link.as_ptr(),
            c"trusted.k".as_ptr(),
            buf.as_mut_ptr().cast(),
            8,
        );
        assert_eq!(n, 1, "the symlink itself has it");
        let n = libc::getxattr(
            host_target.as_ptr(),
            c"trusted.k".as_ptr(),
            buf.as_mut_ptr().cast(),
            8,
        );
        assert_eq!((n, errno()), (-1, libc::ENODATA), "the target does not");
        let n = libc::lgetxattr(
            link.as_ptr(),
            c"trusted.k".as_ptr(),
            buf.as_mut_ptr().cast(),
            8,
        );
        assert_eq!(n, 1);
    }
}

#[test]
fn tmpfile_copy_range_and_unlink_while_open() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-tmpfile");
    let m = mount(&tree);
    // O_TMPFILE, then linked into the tree.
    let dir = cpath(m.path());
    // SAFETY: valid path.
    let fd = unsafe { libc::open(dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o640) };
    assert!(fd >= 0, "O_TMPFILE: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd we own.
    let mut tmp = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    tmp.write_all(b"anonymous").unwrap();
    let proc_path = cpath(Path::new(&format!("/proc/self/fd/{fd}")));
    let named = cpath(&m.join("named"));
    // SAFETY: valid paths.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            named.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    assert_eq!(r, 0, "linkat: {}", std::io::Error::last_os_error());
    assert_eq!(fs::read(tree.src().join("named")).unwrap(), b"anonymous");

    // copy_file_range between two files of the mount.
    let src = fs::File::open(m.join("named")).unwrap();
    let dst = fs::File::create(m.join("copy")).unwrap();
    let (mut off_in, mut off_out) = (0i64, 0i64);
    // SAFETY: valid fds and offsets.
    let n = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            &mut off_in,
            dst.as_raw_fd(),
            &mut off_out,
            9,
            0,
        )
    };
    assert_eq!(n, 9, "{}", std::io::Error::last_os_error());
    drop(dst);
    assert_eq!(fs::read(tree.src().join("copy")).unwrap(), b"anonymous");

    // Unlinked while open: still readable and writable through the fd.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("copy"))
        .unwrap();
    fs::remove_file(m.join("copy")).unwrap();
    assert!(!tree.src().join("copy").exists());
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"+more").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "anonymous+more");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
}

#[test]
fn modes_owners_sizes_and_special_files() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-attrs");
    let m = mount(&tree);
    fs::write(m.join("f"), b"0123456789").unwrap();
    fs::set_permissions(m.join("f"), fs::Permissions::from_mode(0o4751)).unwrap();
    assert_eq!(
        fs::metadata(tree.src().join("f")).unwrap().mode() & 0o7777,
        0o4751
    );
    std::os::unix::fs::chown(m.join("f"), Some(1234), Some(5678)).unwrap();
    let host = fs::metadata(tree.src().join("f")).unwrap();
    assert_eq!((host.uid(), host.gid()), (1234, 5678));
    // chown of a set-uid file clears set-uid (host semantics).
    assert_eq!(host.mode() & 0o4000, 0);
    // Truncate and extend.
    fs::OpenOptions::new()
        .write(true)
        .open(m.join("f"))
        .unwrap()
        .set_len(4)
        .unwrap();
    assert_eq!(fs::read(tree.src().join("f")).unwrap(), b"0123");
    let c = cpath(&m.join("f"));
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 8192) }, 0);
    assert_eq!(fs::metadata(tree.src().join("f")).unwrap().len(), 8192);
    // O_TRUNC, O_APPEND, O_EXCL.
    fs::write(m.join("f"), b"abc").unwrap();
    assert_eq!(fs::read(tree.src().join("f")).unwrap(), b"abc");
    let mut a = fs::OpenOptions::new()
        .append(true)
        .open(m.join("f"))
        .unwrap();
    a.write_all(b"def").unwrap();
    assert_eq!(fs::read(tree.src().join("f")).unwrap(), b"abcdef");
    let e = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.join("f"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    // A FIFO and a device node are created on the host, never opened by
    // the server.
    let fifo = cpath(&m.join("fifo"));
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(tree.src().join("fifo")).unwrap().file_type()
    ));
    let dev = cpath(&m.join("null"));
    // SAFETY: valid path.
    let r = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
    assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
    let host = fs::metadata(tree.src().join("null")).unwrap();
    assert_eq!(host.rdev(), libc::makedev(1, 3));
    assert_eq!(
        fs::metadata(m.join("null")).unwrap().rdev(),
        libc::makedev(1, 3)
    );
    // statfs answers with the host filesystem's numbers.
    // SAFETY: struct statfs is plain data; all zeroes is a valid value.
    let mut a: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut b: libc::statfs = unsafe { std::mem::zeroed() };
    let (mp, sp) = (cpath(m.path()), cpath(&tree.src()));
    // SAFETY: valid paths and out pointers.
    unsafe {
        assert_eq!(libc::statfs(mp.as_ptr(), &mut a), 0);
        assert_eq!(libc::statfs(sp.as_ptr(), &mut b), 0);
    }
    assert_eq!(a.f_blocks, b.f_blocks);
    assert_eq!(a.f_bsize, b.f_bsize);
}

#[test]
fn posix_and_flock_locks_reach_the_host() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-locks");
    let m = mount(&tree);
    fs::write(m.join("f"), b"lock me").unwrap();
    let a = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("f"))
        .unwrap();
    let b = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("f"))
        .unwrap();
    let host = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tree.src().join("f"))
        .unwrap();
    let lk = |typ: i32| libc::flock {
        l_type: typ as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let fcntl = |f: &fs::File, cmd: i32, l: &mut libc::flock| {
        // SAFETY: valid fd and flock.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), cmd, l as *mut libc::flock) };
        if r == 0 { 0 } else { errno() }
    };
    // An OFD write lock through one open conflicts with the other open and
    // with a host process.
    assert_eq!(fcntl(&a, libc::F_OFD_SETLK, &mut lk(libc::F_WRLCK)), 0);
    assert_eq!(
        fcntl(&b, libc::F_OFD_SETLK, &mut lk(libc::F_WRLCK)),
        libc::EAGAIN
    );
    let mut probe = lk(libc::F_WRLCK);
    assert_eq!(fcntl(&host, libc::F_OFD_GETLK, &mut probe), 0);
    assert_eq!(probe.l_type, libc::F_WRLCK as i16, "the host sees the lock");
    let mut probe = lk(libc::F_RDLCK);
    assert_eq!(fcntl(&b, libc::F_GETLK, &mut probe), 0);
    assert_eq!(probe.l_type, libc::F_WRLCK as i16);
    // A blocking wait is granted once the holder unlocks.
    let waiter = std::thread::spawn(move || {
        let mut l = lk(libc::F_WRLCK);
        // SAFETY: valid fd and flock.
        let r = unsafe {
            libc::fcntl(
                b.as_raw_fd(),
                libc::F_OFD_SETLKW,
                &mut l as *mut libc::flock,
            )
        };
        (r, b)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fcntl(&a, libc::F_OFD_SETLK, &mut lk(libc::F_UNLCK)), 0);
    let (r, b) = waiter.join().unwrap();
    assert_eq!(r, 0);
    drop(b);
    // flock through the mount is a host flock.
    // SAFETY: valid fds.
    unsafe {
        assert_eq!(libc::flock(a.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB), 0);
        assert_eq!(
            libc::flock(host.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB),
            -1
        );
        assert_eq!(errno(), libc::EWOULDBLOCK);
        assert_eq!(libc::flock(a.as_raw_fd(), libc::LOCK_UN), 0);
        assert_eq!(
            libc::flock(host.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB),
            0
        );
    }
}

#[test]
fn readdir_and_readdirplus_count_lookups() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-readdir");
    for i in 0..3000 {
        fs::write(tree.src().join(format!("file-{i:05}")), b"").unwrap();
    }
    let m = mount(&tree);
    assert_eq!(m.fs().stats().inodes, 1);
    let mut names: Vec<String> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3000);
    assert_eq!(names[0], "file-00000");
    assert_eq!(names[2999], "file-02999");
    // READDIRPLUS (the kernel asks for it at least for the first batch)
    // entered entries with one lookup reference each.
    let listed = m.fs().stats().inodes;
    assert!(listed > 1, "READDIRPLUS entered nothing");
    // Every name, whether entered by READDIRPLUS or by LOOKUP, is one inode
    // with the host's inode number.
    for n in &names {
        assert_eq!(
            fs::symlink_metadata(m.join(n)).unwrap().ino(),
            fs::symlink_metadata(tree.src().join(n)).unwrap().ino()
        );
    }
    assert_eq!(m.fs().stats().inodes, 3001);
    // Removing the files through the mount makes the kernel evict their
    // inodes and send FORGET for every reference it got: the table goes
    // back to the root alone, so the references balanced exactly
    // (READDIRPLUS entries included).
    for n in &names {
        fs::remove_file(m.join(n)).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(10), || m.fs().stats().inodes == 1),
        "inodes after forget: {}",
        m.fs().stats().inodes
    );
}
