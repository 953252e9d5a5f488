//! The end-to-end scenarios. Each takes the row's [`Setup`], mounts its own
//! filesystem and checks one area of behaviour through ordinary syscalls,
//! so the kernel's FUSE client sits between the test and the server.

use crate::common::*;
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The mounted line
// ---------------------------------------------------------------------------

/// The startup line names the mountpoint, backend, transport, thread count
/// and passthrough state in the contract's words, and comes exactly once.
pub fn mounted_line(setup: &Setup) {
    let fs = MountedFs::mount(setup, &["--threads", "3"]);
    let line = fs.mounted_line().to_string();
    let prefix = format!("fuselage: mounted {} ", fs.path().display());
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let (words, fallback) = match rest.split_once(" (fallback: ") {
        Some((w, f)) => (w, Some(f)),
        None => (rest, None),
    };
    if let Some(f) = fallback {
        assert!(
            f.ends_with(')') && f.len() > 1,
            "malformed fallback in {line:?}"
        );
    }
    let words: Vec<&str> = words.split(' ').collect();
    assert_eq!(
        words.len(),
        4,
        "expected backend= transport= threads= passthrough= in {line:?}"
    );
    assert_eq!(
        words[0],
        format!("backend={}", setup.backend.name()),
        "in {line:?}"
    );
    let transport = words[1]
        .strip_prefix("transport=")
        .unwrap_or_else(|| panic!("no transport= in {line:?}"));
    if setup.transport == "auto" {
        assert!(
            ["uring", "uring-rw", "blocking"].contains(&transport),
            "bad transport in {line:?}"
        );
    } else {
        assert_eq!(transport, setup.transport, "in {line:?}");
    }
    let threads: usize = words[2]
        .strip_prefix("threads=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no threads=N in {line:?}"));
    if transport == "uring" {
        // Native io_uring has one queue per possible CPU whatever --threads says.
        assert!(threads > 0, "in {line:?}");
    } else {
        assert_eq!(threads, 3, "--threads 3 in {line:?}");
    }
    let passthrough = words[3]
        .strip_prefix("passthrough=")
        .unwrap_or_else(|| panic!("no passthrough= in {line:?}"));
    assert!(
        ["on", "off"].contains(&passthrough),
        "bad passthrough in {line:?}"
    );
    if setup.backend == Backend::Memfs {
        assert_eq!(
            passthrough, "off",
            "memfs has no host files to pass through: {line:?}"
        );
    }
    let mounted = fs
        .stderr_lines()
        .iter()
        .filter(|l| l.starts_with(MOUNTED_PREFIX))
        .count();
    assert_eq!(
        mounted,
        1,
        "the mounted line must come exactly once: {:?}",
        fs.stderr_lines()
    );
    assert!(
        fs.is_mounted(),
        "{} is not in /proc/self/mountinfo",
        fs.path().display()
    );
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Create, write, read back (through the page cache and from the server).
pub fn create_write_read(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("hello.txt");
    write(&p, b"hello, fuselage\n");
    assert_eq!(read(&p), b"hello, fuselage\n");
    let st = stat(&p);
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(st.st_size, 16);
    assert_eq!(st.st_nlink, 1);

    expect_errno(
        OpenOptions::new().write(true).create_new(true).open(&p),
        libc::EEXIST,
        "O_CREAT|O_EXCL on an existing file",
    );
    expect_errno(
        File::open(fs.join("missing")),
        libc::ENOENT,
        "open a missing file",
    );

    // Overwrite in the middle, then a larger file read back from the server.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open rw");
    f.write_at(b"HELLO", 0).expect("pwrite");
    let mut buf = [0u8; 16];
    f.read_exact_at(&mut buf, 0).expect("pread");
    assert_eq!(&buf, b"HELLO, fuselage\n");
    drop(f);
    assert_eq!(read_direct(&p), b"HELLO, fuselage\n");

    let big = fs.join("big");
    let data = pattern(1, 0, (3 * MIB + 123) as usize);
    write(&big, &data);
    let back = read_direct(&big);
    assert!(
        back == data,
        "1st difference at {:?}",
        first_difference(&back, &data)
    );
    assert!(read(&big) == data, "cached read differs");

    let names: HashSet<String> = fs::read_dir(fs.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    assert_eq!(
        names,
        HashSet::from(["hello.txt".to_string(), "big".to_string()])
    );
}

/// O_APPEND writes land at the end, from several descriptors, even pwrite.
pub fn append(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("log");
    write(&p, b"abc");
    let mut f = OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open O_APPEND");
    let mut g = OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open O_APPEND");
    f.write_all(b"def").expect("append");
    g.write_all(b"ghi").expect("append");
    f.write_all(b"jkl").expect("append");
    assert_eq!(read(&p), b"abcdefghijkl");
    // Linux: pwrite on an O_APPEND descriptor appends, whatever the offset.
    f.write_at(b"mno", 0).expect("pwrite O_APPEND");
    assert_eq!(read(&p), b"abcdefghijklmno");
    // A write through another descriptor grows the file; appends follow it.
    let h = OpenOptions::new().write(true).open(&p).expect("open");
    h.write_at(b"0123456789", 20).expect("pwrite past the end");
    g.write_all(b"pqr").expect("append");
    let mut want = b"abcdefghijklmno".to_vec();
    want.resize(20, 0);
    want.extend_from_slice(b"0123456789pqr");
    assert_eq!(read(&p), want);
    drop((f, g, h));
    assert_eq!(read_direct(&p), want);

    // O_APPEND|O_CREAT on a new file.
    let q = fs.join("new");
    let mut n = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&q)
        .expect("create O_APPEND");
    n.write_all(b"x").expect("append");
    n.write_all(b"y").expect("append");
    assert_eq!(read(&q), b"xy");
}

/// Shrinking and extending with ftruncate, truncate and O_TRUNC; extended
/// ranges read as zeros, also after a shrink (no stale data).
pub fn truncate(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("t");
    let data = pattern(2, 0, 10_000);
    write(&p, &data);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    f.set_len(4000).expect("ftruncate shrink");
    assert_eq!(f.metadata().expect("fstat").len(), 4000);
    assert_eq!(read(&p), &data[..4000]);
    f.set_len(12_000).expect("ftruncate extend");
    let mut want = data[..4000].to_vec();
    want.resize(12_000, 0);
    assert_eq!(stat(&p).st_size, 12_000);
    assert!(
        read(&p) == want,
        "cached read after shrink+extend differs at {:?}",
        first_difference(&read(&p), &want)
    );
    let direct = read_direct(&p);
    assert!(
        direct == want,
        "server data after shrink+extend differs at {:?} (stale bytes?)",
        first_difference(&direct, &want)
    );

    let c = cpath(&p);
    // SAFETY: valid C string.
    check(unsafe { libc::truncate(c.as_ptr(), 100) }).expect("truncate(2) shrink");
    assert_eq!(stat(&p).st_size, 100);
    assert_eq!(read_direct(&p), &data[..100]);
    // SAFETY: valid C string.
    check(unsafe { libc::truncate(c.as_ptr(), 3 * MIB as i64) }).expect("truncate(2) extend");
    let back = read_direct(&p);
    assert_eq!(back.len() as u64, 3 * MIB);
    assert_eq!(&back[..100], &data[..100]);
    assert!(
        back[100..].iter().all(|&b| b == 0),
        "extended range is not zero"
    );

    drop(f);
    let t = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .expect("open O_TRUNC");
    assert_eq!(t.metadata().expect("fstat").len(), 0);
    drop(t);
    assert_eq!(read(&p), b"");

    // SAFETY: valid C string.
    expect_raw_errno(
        check(unsafe { libc::truncate(c.as_ptr(), -1) }),
        libc::EINVAL,
        "truncate to -1",
    );
    let d = cpath(fs.path());
    // SAFETY: valid C string.
    expect_raw_errno(
        check(unsafe { libc::truncate(d.as_ptr(), 0) }),
        libc::EISDIR,
        "truncate a directory",
    );
}

/// rename and renameat2 with RENAME_NOREPLACE and RENAME_EXCHANGE.
pub fn rename(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let (a, b, c, d) = (fs.join("a"), fs.join("b"), fs.join("c"), fs.join("d"));
    write(&a, b"A");
    write(&b, b"B");

    // Plain rename to a new name, then over an existing file.
    fs::rename(&a, &c).expect("rename a -> c");
    expect_errno(lstat(&a), libc::ENOENT, "old name after rename");
    assert_eq!(read(&c), b"A");
    let ino_c = stat(&c).st_ino;
    fs::rename(&c, &b).expect("rename c -> b (replacing)");
    expect_errno(lstat(&c), libc::ENOENT, "old name after replacing rename");
    assert_eq!(read(&b), b"A");
    assert_eq!(stat(&b).st_ino, ino_c, "the renamed inode keeps its number");

    // RENAME_NOREPLACE.
    write(&a, b"A2");
    expect_raw_errno(
        renameat2(&a, &b, libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "RENAME_NOREPLACE onto an existing name",
    );
    assert_eq!(read(&a), b"A2");
    assert_eq!(read(&b), b"A");
    renameat2(&a, &d, libc::RENAME_NOREPLACE).expect("RENAME_NOREPLACE onto a new name");
    expect_errno(lstat(&a), libc::ENOENT, "old name after RENAME_NOREPLACE");
    assert_eq!(read(&d), b"A2");

    // RENAME_EXCHANGE: two files, then a file and a directory.
    let (ino_b, ino_d) = (stat(&b).st_ino, stat(&d).st_ino);
    renameat2(&b, &d, libc::RENAME_EXCHANGE).expect("RENAME_EXCHANGE");
    assert_eq!(read(&b), b"A2");
    assert_eq!(read(&d), b"A");
    assert_eq!((stat(&b).st_ino, stat(&d).st_ino), (ino_d, ino_b));
    let dir = fs.join("dir");
    fs::create_dir(&dir).expect("mkdir");
    write(&dir.join("inner"), b"I");
    renameat2(&b, &dir, libc::RENAME_EXCHANGE).expect("RENAME_EXCHANGE file <-> directory");
    assert!(fs::symlink_metadata(&b).expect("stat").is_dir());
    assert_eq!(read(&b.join("inner")), b"I");
    assert_eq!(read(&dir), b"A2");
    expect_raw_errno(
        renameat2(&d, &fs.join("nothing"), libc::RENAME_EXCHANGE),
        libc::ENOENT,
        "RENAME_EXCHANGE with a missing target",
    );
    expect_raw_errno(
        renameat2(&d, &dir, libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE),
        libc::EINVAL,
        "RENAME_EXCHANGE|RENAME_NOREPLACE",
    );

    // Across directories, and the directory rules.
    let sub = fs.join("sub");
    fs::create_dir(&sub).expect("mkdir sub");
    fs::rename(&d, sub.join("moved")).expect("rename across directories");
    assert_eq!(read(&sub.join("moved")), b"A");
    expect_errno(
        lstat(&d),
        libc::ENOENT,
        "old name after a cross-directory rename",
    );
    let names: Vec<_> = fs::read_dir(&sub)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["moved"]);
    expect_errno(
        fs::rename(&sub, sub.join("inside")),
        libc::EINVAL,
        "rename a directory into itself",
    );
    // b is a non-empty directory now, sub holds "moved".
    let empty = fs.join("empty");
    fs::create_dir(&empty).expect("mkdir empty");
    expect_errno(
        fs::rename(&empty, &b),
        libc::ENOTEMPTY,
        "rename a directory over a non-empty one",
    );
    fs::rename(&sub, &empty).expect("rename a directory over an empty one");
    assert_eq!(read(&empty.join("moved")), b"A");
    expect_errno(
        fs::rename(&dir, &b),
        libc::EISDIR,
        "rename a file over a directory",
    );
    expect_errno(
        fs::rename(&b, &dir),
        libc::ENOTDIR,
        "rename a directory over a file",
    );
    expect_errno(
        fs::rename(fs.join("nothing"), fs.join("x")),
        libc::ENOENT,
        "rename a missing name",
    );
}

/// Hard links: one inode under two names, nlink counted through both.
pub fn hard_link(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let (a, b) = (fs.join("a"), fs.join("b"));
    write(&a, b"data");
    fs::hard_link(&a, &b).expect("link");
    let (sa, sb) = (stat(&a), stat(&b));
    assert_eq!(sa.st_ino, sb.st_ino, "both names are one inode");
    assert_eq!((sa.st_nlink, sb.st_nlink), (2, 2), "nlink after link");
    let mut f = OpenOptions::new().append(true).open(&b).expect("open b");
    f.write_all(b"more").expect("append via b");
    drop(f);
    assert_eq!(read(&a), b"datamore");
    assert_eq!(read_direct(&a), b"datamore");

    expect_errno(
        fs::hard_link(&a, &b),
        libc::EEXIST,
        "link onto an existing name",
    );
    expect_errno(
        fs::hard_link(fs.path(), fs.join("dirlink")),
        libc::EPERM,
        "link a directory",
    );
    expect_errno(
        fs::hard_link(fs.join("missing"), fs.join("x")),
        libc::ENOENT,
        "link a missing file",
    );

    let sub = fs.join("sub");
    fs::create_dir(&sub).expect("mkdir");
    fs::hard_link(&b, sub.join("c")).expect("link into a subdirectory");
    assert_eq!(stat(&a).st_nlink, 3);
    fs::remove_file(&a).expect("unlink a");
    expect_errno(lstat(&a), libc::ENOENT, "unlinked name");
    let (sb, sc) = (stat(&b), stat(&sub.join("c")));
    assert_eq!(
        (sb.st_nlink, sc.st_nlink),
        (2, 2),
        "nlink after unlinking one name"
    );
    assert_eq!(sb.st_ino, sc.st_ino);
    fs::remove_file(sub.join("c")).expect("unlink c");
    assert_eq!(stat(&b).st_nlink, 1);
    assert_eq!(read(&b), b"datamore");
}

/// Symbolic links and readlink.
pub fn symlink(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let link = fs.join("link");
    std::os::unix::fs::symlink("target.txt", &link).expect("symlink");
    assert_eq!(
        fs::read_link(&link).expect("readlink"),
        Path::new("target.txt")
    );
    let st = stat(&link);
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(
        st.st_size,
        "target.txt".len() as i64,
        "a symlink's size is its target's length"
    );
    expect_errno(
        fs::metadata(&link),
        libc::ENOENT,
        "follow a dangling symlink",
    );
    write(&fs.join("target.txt"), b"through the link");
    assert_eq!(read(&link), b"through the link");

    let long: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let long_link = fs.join("long");
    std::os::unix::fs::symlink(&long, &long_link).expect("symlink with a 1000-byte target");
    assert_eq!(
        fs::read_link(&long_link).expect("readlink").as_os_str(),
        long.as_str()
    );

    let abs = fs.join("abs");
    std::os::unix::fs::symlink("/proc/self/exe", &abs).expect("absolute symlink");
    assert_eq!(
        fs::read_link(&abs).expect("readlink"),
        Path::new("/proc/self/exe")
    );

    let sub = fs.join("sub");
    fs::create_dir(&sub).expect("mkdir");
    std::os::unix::fs::symlink("../target.txt", sub.join("up")).expect("relative symlink");
    assert_eq!(read(&sub.join("up")), b"through the link");

    expect_errno(
        std::os::unix::fs::symlink("x", &link),
        libc::EEXIST,
        "symlink onto an existing name",
    );
    expect_errno(
        fs::read_link(fs.join("target.txt")),
        libc::EINVAL,
        "readlink of a regular file",
    );
    fs::remove_file(&link).expect("unlink the symlink");
    assert_eq!(
        read(&fs.join("target.txt")),
        b"through the link",
        "unlinking a symlink leaves its target"
    );
}

/// A directory of 10,000 entries: every name seen exactly once with the
/// right d_type, and inode numbers that agree with lstat.
pub fn readdir_10000(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let dir = fs.join("big");
    fs::create_dir(&dir).expect("mkdir");
    const FILES: usize = 9_980;
    let mut want: HashMap<String, u8> = HashMap::new();
    for i in 0..FILES {
        let name = format!("file-{i:05}");
        File::create_new(dir.join(&name)).unwrap_or_else(|e| panic!("create {name}: {e}"));
        want.insert(name, libc::DT_REG);
    }
    for i in 0..10 {
        let name = format!("dir-{i}");
        fs::create_dir(dir.join(&name)).expect("mkdir");
        want.insert(name, libc::DT_DIR);
        let name = format!("link-{i}");
        std::os::unix::fs::symlink("file-00000", dir.join(&name)).expect("symlink");
        want.insert(name, libc::DT_LNK);
    }
    assert_eq!(want.len(), 10_000);

    // Raw readdir(3), which reports the d_type the server sent.
    let c = cpath(&dir);
    // SAFETY: valid C string; the DIR is closed below.
    let d = unsafe { libc::opendir(c.as_ptr()) };
    assert!(!d.is_null(), "opendir: {}", io::Error::last_os_error());
    let mut seen: HashMap<String, (u8, u64, usize)> = HashMap::new();
    loop {
        // SAFETY: `d` is an open DIR.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid dirent whose d_name is
        // NUL-terminated; it stays valid until the next readdir.
        let (name, typ, ino) = unsafe {
            let e = &*ent;
            (
                CStr::from_ptr(e.d_name.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                e.d_type,
                e.d_ino,
            )
        };
        seen.entry(name)
            .and_modify(|s| s.2 += 1)
            .or_insert((typ, ino, 1));
    }
    // SAFETY: `d` came from opendir and is closed once.
    unsafe { libc::closedir(d) };

    let dups: Vec<_> = seen
        .iter()
        .filter(|(_, s)| s.2 != 1)
        .map(|(n, s)| (n.clone(), s.2))
        .collect();
    assert!(dups.is_empty(), "names seen more than once: {dups:?}");
    for dot in [".", ".."] {
        let s = seen
            .remove(dot)
            .unwrap_or_else(|| panic!("{dot:?} missing from readdir"));
        assert_eq!(s.0, libc::DT_DIR, "d_type of {dot:?}");
    }
    let missing: Vec<_> = want
        .keys()
        .filter(|n| !seen.contains_key(*n))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{} names missing from readdir, e.g. {missing:?}",
        want.len().saturating_sub(seen.len())
    );
    let extra: Vec<_> = seen
        .keys()
        .filter(|n| !want.contains_key(*n))
        .take(10)
        .collect();
    assert!(extra.is_empty(), "unexpected names: {extra:?}");
    let wrong: Vec<_> = want
        .iter()
        .filter(|(n, t)| seen[*n].0 != **t)
        .map(|(n, t)| (n.clone(), *t, seen[n].0))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "wrong d_type (name, want, got): {wrong:?}"
    );
    for name in ["file-00000", "file-04321", "file-09979", "dir-3", "link-7"] {
        assert_eq!(
            seen[name].1,
            stat(&dir.join(name)).st_ino,
            "d_ino of {name} vs lstat"
        );
    }

    // std's iterator, a second full pass over the same directory.
    let count = fs::read_dir(&dir)
        .expect("read_dir")
        .inspect(|e| assert!(e.is_ok(), "{e:?}"))
        .count();
    assert_eq!(count, 10_000, "second pass");
}

/// Extended attributes: set, get, list, remove, and the flag errors.
pub fn xattr(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("f");
    write(&p, b"x");
    let c = cpath(&p);
    let set = |name: &str, value: &[u8], flags: i32| -> Result<i64, i32> {
        let n = cstr(name);
        // SAFETY: valid C strings and a valid value buffer.
        check(unsafe {
            libc::setxattr(
                c.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })
    };
    let get = |name: &str, size: usize| -> Result<Vec<u8>, i32> {
        let n = cstr(name);
        let mut buf = vec![0u8; size];
        // SAFETY: valid C strings; the buffer has `size` writable bytes.
        let r = check(unsafe {
            libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), size)
        })?;
        buf.truncate(r as usize);
        Ok(buf)
    };
    let list = || -> Vec<String> {
        // SAFETY: valid C string; size 0 asks for the length.
        let len = check(unsafe { libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0) })
            .expect("listxattr size");
        let mut buf = vec![0u8; len as usize];
        // SAFETY: the buffer has `len` writable bytes.
        let r = check(unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
            .expect("listxattr");
        assert_eq!(r, len, "listxattr length");
        let mut names: Vec<String> = buf
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        assert!(
            buf.is_empty() || buf.last() == Some(&0),
            "list not NUL-terminated"
        );
        names.sort();
        names
    };
    let remove = |name: &str| -> Result<i64, i32> {
        let n = cstr(name);
        // SAFETY: valid C strings.
        check(unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) })
    };

    assert_eq!(list(), Vec::<String>::new(), "a new file has no xattrs");
    expect_raw_errno(
        get("user.color", 64).map(|v| v.len() as i64),
        libc::ENODATA,
        "get a missing xattr",
    );
    set("user.color", b"blue", 0).expect("setxattr");
    assert_eq!(get("user.color", 64).expect("getxattr"), b"blue");
    // SAFETY: valid C strings; size 0 asks for the length.
    let size = check(unsafe {
        libc::getxattr(
            c.as_ptr(),
            cstr("user.color").as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    });
    assert_eq!(size, Ok(4), "getxattr size query");
    expect_raw_errno(
        get("user.color", 2).map(|v| v.len() as i64),
        libc::ERANGE,
        "getxattr into a too small buffer",
    );

    expect_raw_errno(
        set("user.color", b"red", libc::XATTR_CREATE),
        libc::EEXIST,
        "XATTR_CREATE on an existing xattr",
    );
    assert_eq!(
        get("user.color", 64).expect("getxattr"),
        b"blue",
        "a failed XATTR_CREATE changes nothing"
    );
    expect_raw_errno(
        set("user.shape", b"round", libc::XATTR_REPLACE),
        libc::ENODATA,
        "XATTR_REPLACE on a missing xattr",
    );
    set("user.color", b"red", libc::XATTR_REPLACE).expect("XATTR_REPLACE");
    assert_eq!(get("user.color", 64).expect("getxattr"), b"red");
    set("user.shape", b"round", libc::XATTR_CREATE).expect("XATTR_CREATE");
    set("user.empty", b"", 0).expect("set an empty value");
    assert_eq!(get("user.empty", 64).expect("get an empty value"), b"");
    let big: Vec<u8> = pattern(3, 0, 4000);
    set("user.big", &big, 0).expect("set a 4000-byte value");
    assert_eq!(get("user.big", 8192).expect("get a 4000-byte value"), big);
    assert_eq!(
        list(),
        ["user.big", "user.color", "user.empty", "user.shape"]
    );

    remove("user.color").expect("removexattr");
    expect_raw_errno(
        get("user.color", 64).map(|v| v.len() as i64),
        libc::ENODATA,
        "get a removed xattr",
    );
    expect_raw_errno(
        remove("user.color"),
        libc::ENODATA,
        "remove a missing xattr",
    );
    assert_eq!(list(), ["user.big", "user.empty", "user.shape"]);

    // Directories carry xattrs too.
    let d = cpath(fs.path());
    let (n, v) = (cstr("user.dir"), b"yes");
    // SAFETY: valid C strings and buffer.
    check(unsafe { libc::setxattr(d.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) })
        .expect("setxattr on a directory");
    let mut buf = [0u8; 8];
    // SAFETY: valid C strings; buffer of 8 bytes.
    let r = check(unsafe {
        libc::getxattr(d.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    });
    assert_eq!(r, Ok(3));
    assert_eq!(&buf[..3], b"yes");
}

/// chmod, chown and utimensat (explicit times with nanoseconds, UTIME_NOW,
/// UTIME_OMIT).
pub fn chmod_chown_utimens(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("f");
    write(&p, b"x");

    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_eq!(stat(&p).st_mode & 0o7777, 0o640);
    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).expect("chown");
    let st = stat(&p);
    assert_eq!((st.st_uid, st.st_gid), (1234, 5678));
    std::os::unix::fs::chown(&p, None, Some(42)).expect("chgrp");
    let st = stat(&p);
    assert_eq!((st.st_uid, st.st_gid), (1234, 42), "chown -1 keeps the uid");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
    assert_eq!(stat(&p).st_mode & 0o7777, 0o4755);
    let d = fs.join("d");
    fs::create_dir(&d).expect("mkdir");
    fs::set_permissions(&d, fs::Permissions::from_mode(0o1777)).expect("chmod +t");
    assert_eq!(stat(&d).st_mode & 0o7777, 0o1777);

    // Explicit times keep their nanoseconds.
    utimensat(
        &p,
        [
            ts(1_000_000_000, 123_456_789),
            ts(1_500_000_000, 987_654_321),
        ],
    )
    .expect("utimensat");
    let st = stat(&p);
    assert_eq!(
        (st.st_atime, st.st_atime_nsec),
        (1_000_000_000, 123_456_789),
        "atime"
    );
    assert_eq!(
        (st.st_mtime, st.st_mtime_nsec),
        (1_500_000_000, 987_654_321),
        "mtime"
    );

    // UTIME_OMIT leaves atime alone while mtime changes.
    utimensat(&p, [ts(0, libc::UTIME_OMIT), ts(1_600_000_000, 1)])
        .expect("utimensat OMIT/explicit");
    let st = stat(&p);
    assert_eq!(
        (st.st_atime, st.st_atime_nsec),
        (1_000_000_000, 123_456_789),
        "atime with UTIME_OMIT"
    );
    assert_eq!((st.st_mtime, st.st_mtime_nsec), (1_600_000_000, 1), "mtime");

    // UTIME_NOW for mtime, UTIME_OMIT for atime.
    let before = now_secs();
    utimensat(&p, [ts(0, libc::UTIME_OMIT), ts(0, libc::UTIME_NOW)]).expect("utimensat OMIT/NOW");
    let after = now_secs();
    let st = stat(&p);
    assert_eq!(
        (st.st_atime, st.st_atime_nsec),
        (1_000_000_000, 123_456_789),
        "atime with UTIME_OMIT"
    );
    assert!(
        (before - 1..=after + 1).contains(&st.st_mtime),
        "mtime {} not now ({before}..{after})",
        st.st_mtime
    );

    // UTIME_NOW for atime, UTIME_OMIT for mtime.
    let mtime = (st.st_mtime, st.st_mtime_nsec);
    utimensat(&p, [ts(0, libc::UTIME_NOW), ts(0, libc::UTIME_OMIT)]).expect("utimensat NOW/OMIT");
    let st = stat(&p);
    assert!(
        (before - 1..=now_secs() + 1).contains(&st.st_atime),
        "atime {} not now",
        st.st_atime
    );
    assert_eq!(
        (st.st_mtime, st.st_mtime_nsec),
        mtime,
        "mtime with UTIME_OMIT"
    );

    // futimens through a descriptor, and times on a directory.
    let f = File::open(&p).expect("open");
    let times = [ts(2_000_000_000, 5), ts(2_000_000_001, 999_999_999)];
    // SAFETY: valid fd and timespec array.
    check(unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) }).expect("futimens");
    let st = stat(&p);
    assert_eq!(
        (st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec),
        (2_000_000_000, 5, 2_000_000_001, 999_999_999)
    );
    utimensat(&d, [ts(1_234_567_890, 111), ts(1_234_567_891, 222)])
        .expect("utimensat on a directory");
    let st = stat(&d);
    assert_eq!(
        (st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec),
        (1_234_567_890, 111, 1_234_567_891, 222)
    );

    // A write moves mtime forward to now.
    let before = now_secs();
    OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .write_all(b"y")
        .expect("write");
    let st = stat(&p);
    assert!(
        st.st_mtime >= before - 1,
        "mtime {} not updated by a write ({before})",
        st.st_mtime
    );
}

/// statfs reports the --size capacity, and usage moves with data.
pub fn statfs(setup: &Setup) {
    if !memfs_only(setup, "--size") {
        return;
    }
    const SIZE: u64 = 64 * MIB;
    let fs = MountedFs::mount(setup, &["--size", "64M"]);
    let st = statvfs(fs.path());
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    assert!(frsize > 0, "f_frsize and f_bsize are 0");
    let total = st.f_blocks * frsize;
    assert!(
        total.abs_diff(SIZE) < frsize,
        "f_blocks {} × f_frsize {frsize} = {total}, not --size {SIZE}",
        st.f_blocks
    );
    assert!(
        st.f_bfree <= st.f_blocks && st.f_bavail <= st.f_bfree,
        "free {} avail {} blocks {}",
        st.f_bfree,
        st.f_bavail,
        st.f_blocks
    );
    let free0 = st.f_bfree * frsize;
    assert!(
        free0 >= SIZE - MIB,
        "an empty filesystem has only {free0} bytes free"
    );
    assert!(st.f_namemax >= 255, "f_namemax {}", st.f_namemax);

    let p = fs.join("eight");
    let mut f = File::create(&p).expect("create");
    f.write_all(&pattern(4, 0, (8 * MIB) as usize))
        .expect("write 8 MiB");
    f.sync_all().expect("fsync");
    drop(f);
    let st = statvfs(fs.path());
    let free1 = st.f_bfree * frsize;
    let used = free0.saturating_sub(free1);
    assert!(
        (8 * MIB - frsize..=9 * MIB).contains(&used),
        "writing 8 MiB used {used} bytes by statfs ({free0} -> {free1})"
    );
    assert_eq!(st.f_blocks * frsize, total, "f_blocks changed");

    fs::remove_file(&p).expect("unlink");
    let freed = wait_until(Duration::from_secs(5), || {
        statvfs(fs.path()).f_bfree * frsize >= free0
    });
    assert!(
        freed,
        "space not returned after unlink: free {} (was {free0})",
        statvfs(fs.path()).f_bfree * frsize
    );
}

/// MAP_SHARED mappings: read the file, write through the mapping, msync,
/// and find the bytes with read(2) and on the server.
pub fn mmap(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("m");
    let len = (64 * KIB + 100) as usize;
    let mut want = pattern(7, 0, len);
    write(&p, &want);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    // SAFETY: a fresh shared mapping of an open fd; unmapped below and only
    // accessed within `len`.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        map,
        libc::MAP_FAILED,
        "mmap MAP_SHARED: {}",
        io::Error::last_os_error()
    );
    // SAFETY: `map` is a live mapping of `len` bytes.
    let mapped = unsafe { std::slice::from_raw_parts_mut(map.cast::<u8>(), len) };
    assert!(
        mapped[..] == want[..],
        "mapping differs at {:?}",
        first_difference(mapped, &want)
    );

    let first = pattern(8, 0, 4096);
    let last = pattern(9, 0, 100);
    mapped[..4096].copy_from_slice(&first);
    mapped[len - 100..].copy_from_slice(&last);
    mapped[30_000] = 0xa5;
    want[..4096].copy_from_slice(&first);
    want[len - 100..].copy_from_slice(&last);
    want[30_000] = 0xa5;
    // SAFETY: `map` is a live mapping of `len` bytes.
    check(unsafe { libc::msync(map, len, libc::MS_SYNC) }).expect("msync");

    let mut other = File::open(&p).expect("open another fd");
    let mut got = Vec::new();
    other.read_to_end(&mut got).expect("read(2)");
    assert!(
        got == want,
        "read(2) after msync differs at {:?}",
        first_difference(&got, &want)
    );
    let direct = read_direct(&p);
    assert!(
        direct == want,
        "server data after msync differs at {:?}",
        first_difference(&direct, &want)
    );
    assert_eq!(
        stat(&p).st_size as usize,
        len,
        "size changed by writing through a mapping"
    );

    // SAFETY: unmapping the mapping made above; `mapped` is not used after.
    check(unsafe { libc::munmap(map, len) }).expect("munmap");

    // A private mapping's writes stay private.
    // SAFETY: as above, a fresh private mapping.
    let private = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        private,
        libc::MAP_FAILED,
        "mmap MAP_PRIVATE: {}",
        io::Error::last_os_error()
    );
    // SAFETY: a live mapping of at least one byte.
    unsafe { *private.cast::<u8>() ^= 0xff };
    // SAFETY: unmapping the mapping made above.
    check(unsafe { libc::munmap(private, len) }).expect("munmap");
    assert!(
        read_direct(&p) == want,
        "a MAP_PRIVATE write reached the file"
    );
}

/// fsync, fdatasync, directory fsync and syncfs succeed and keep the data.
pub fn fsync(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("f");
    let mut f = File::create(&p).expect("create");
    let data = pattern(10, 0, 200_000);
    f.write_all(&data).expect("write");
    f.sync_all().expect("fsync");
    f.write_all(b"tail").expect("write");
    f.sync_data().expect("fdatasync");
    // SAFETY: a valid fd.
    check(unsafe { libc::syncfs(f.as_raw_fd()) }).expect("syncfs");
    File::open(fs.path())
        .expect("open the root")
        .sync_all()
        .expect("fsync a directory");
    let d = fs.join("d");
    fs::create_dir(&d).expect("mkdir");
    File::open(&d)
        .expect("open a directory")
        .sync_data()
        .expect("fdatasync a directory");
    drop(f);
    let mut want = data;
    want.extend_from_slice(b"tail");
    assert!(read_direct(&p) == want, "data after fsync differs");
}

/// A 256 MiB file written as a stream and read back byte-exact, both from
/// the server (O_DIRECT) and through the page cache with readahead.
pub fn large_file_256m(setup: &Setup) {
    const SIZE: u64 = 256 * MIB;
    const CHUNK: usize = MIB as usize;
    const SEED: u64 = 0x256;
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("large");
    let started = Instant::now();

    let mut f = File::create(&p).expect("create");
    let mut buf = vec![0u8; CHUNK];
    let mut written = StreamHash::default();
    for i in 0..SIZE / CHUNK as u64 {
        fill_pattern_fast(SEED, i * CHUNK as u64, &mut buf);
        written.update(&buf);
        f.write_all(&buf)
            .unwrap_or_else(|e| panic!("write at {}: {e}", i * CHUNK as u64));
    }
    f.sync_all().expect("fsync");
    drop(f);
    assert_eq!(stat(&p).st_size as u64, SIZE);
    let written = written.finish();

    // From the server.
    let fd = open_raw(&p, libc::O_RDONLY | libc::O_DIRECT, 0).expect("open O_DIRECT");
    let mut abuf = AlignedBuf::page_aligned(CHUNK);
    let mut read_back = StreamHash::default();
    let mut first_bad = None;
    for i in 0..SIZE / CHUNK as u64 {
        let off = i * CHUNK as u64;
        let n = pread_full(fd.as_raw_fd(), &mut abuf, off)
            .unwrap_or_else(|e| panic!("O_DIRECT read at {off}: {e}"));
        assert_eq!(n, CHUNK, "short O_DIRECT read at {off}");
        read_back.update(&abuf);
        if first_bad.is_none() {
            fill_pattern_fast(SEED, off, &mut buf);
            first_bad = first_difference(&abuf, &buf).map(|d| off + d as u64);
        }
    }
    assert_eq!(
        pread_full(fd.as_raw_fd(), &mut abuf[..1], SIZE).expect("read at EOF"),
        0
    );
    assert_eq!(
        first_bad, None,
        "O_DIRECT read-back differs first at byte {first_bad:?}"
    );
    assert_eq!(read_back.finish(), written, "O_DIRECT read-back hash");
    drop(fd);

    // Through the page cache (dropped first), with readahead.
    let mut f = File::open(&p).expect("open");
    // SAFETY: a valid fd.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut cached = StreamHash::default();
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read at {total}: {e}"));
        if n == 0 {
            break;
        }
        cached.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    assert_eq!(cached.finish(), written, "buffered read-back hash");
    eprintln!("256 MiB written and read twice in {:?}", started.elapsed());
}

/// 8 threads read and write disjoint regions of two shared files at once;
/// everything is checked at the end from the server.
pub fn concurrent_8_threads(setup: &Setup) {
    const THREADS: u64 = 8;
    const REGION: u64 = MIB;
    const BLOCK: usize = 64 * KIB as usize;
    const ROUNDS: u64 = 4;
    let fs = MountedFs::mount(setup, &[]);
    let files = [fs.join("shared-a"), fs.join("shared-b")];
    for f in &files {
        File::create(f)
            .expect("create")
            .set_len(THREADS * REGION)
            .expect("size");
    }
    let seed = |t: u64, round: u64, file: usize| t * 1000 + round * 10 + file as u64;
    let (tx, rx) = mpsc::channel();
    for t in 0..THREADS {
        let files = files.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(|| {
                // Even threads go to the server directly, odd ones through the cache.
                let flags = if t % 2 == 0 {
                    libc::O_RDWR | libc::O_DIRECT
                } else {
                    libc::O_RDWR
                };
                let fds: Vec<_> = files
                    .iter()
                    .map(|f| open_raw(f, flags, 0).expect("open"))
                    .collect();
                let mut buf = AlignedBuf::page_aligned(BLOCK);
                let mut check = AlignedBuf::page_aligned(BLOCK);
                for round in 0..ROUNDS {
                    for (i, fd) in fds.iter().enumerate() {
                        for b in 0..REGION / BLOCK as u64 {
                            let off = t * REGION + b * BLOCK as u64;
                            fill_pattern_fast(seed(t, round, i), off, &mut buf);
                            pwrite_full(fd.as_raw_fd(), &buf, off)
                                .unwrap_or_else(|e| panic!("thread {t} pwrite at {off}: {e}"));
                        }
                    }
                    for (i, fd) in fds.iter().enumerate() {
                        for b in 0..REGION / BLOCK as u64 {
                            let off = t * REGION + b * BLOCK as u64;
                            let n = pread_full(fd.as_raw_fd(), &mut check, off).expect("pread");
                            assert_eq!(n, BLOCK, "thread {t} short read at {off}");
                            fill_pattern_fast(seed(t, round, i), off, &mut buf);
                            assert!(
                                check[..] == buf[..],
                                "thread {t} round {round} file {i}: read-back differs at {off}+{:?}",
                                first_difference(&check, &buf)
                            );
                        }
                    }
                }
            });
            let _ = tx.send((t, result.err().map(|e| panic_message(&*e))));
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failures = Vec::new();
    for _ in 0..THREADS {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, None)) => {}
            Ok((t, Some(msg))) => failures.push(format!("thread {t}: {msg}")),
            Err(_) => panic!(
                "threads still running after 40 s (hung requests?); failures so far: {failures:?}"
            ),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    for (i, f) in files.iter().enumerate() {
        let data = read_direct(f);
        assert_eq!(data.len() as u64, THREADS * REGION);
        let mut want = vec![0u8; REGION as usize];
        for t in 0..THREADS {
            let off = t * REGION;
            fill_pattern_fast(seed(t, ROUNDS - 1, i), off, &mut want);
            let got = &data[off as usize..(off + REGION) as usize];
            assert!(
                got == want,
                "{}: region of thread {t} differs at {:?}",
                f.display(),
                first_difference(got, &want)
            );
        }
    }
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Sparse files: holes read as zeros, take no space, and SEEK_DATA /
/// SEEK_HOLE find them.
pub fn sparse_seek(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .expect("create");
    let a = pattern(11, MIB, 4096);
    let b = pattern(12, 3 * MIB, 4096);
    f.write_all_at(&a, MIB).expect("write at 1 MiB");
    f.write_all_at(&b, 3 * MIB).expect("write at 3 MiB");
    f.set_len(4 * MIB).expect("size 4 MiB");
    let st = fstat(f.as_raw_fd()).expect("fstat");
    assert_eq!(st.st_size as u64, 4 * MIB);
    assert!(
        (st.st_blocks as u64) * 512 < MIB,
        "a file with 8 KiB of data takes {} blocks of 512",
        st.st_blocks
    );

    let data = read_direct(&p);
    assert!(
        data[..MIB as usize].iter().all(|&x| x == 0),
        "leading hole not zero"
    );
    assert_eq!(&data[MIB as usize..(MIB + 4096) as usize], &a[..]);
    assert!(
        data[(MIB + 4096) as usize..(3 * MIB) as usize]
            .iter()
            .all(|&x| x == 0),
        "middle hole not zero"
    );
    assert_eq!(&data[(3 * MIB) as usize..(3 * MIB + 4096) as usize], &b[..]);
    assert!(
        data[(3 * MIB + 4096) as usize..].iter().all(|&x| x == 0),
        "trailing hole not zero"
    );

    let fd = f.as_raw_fd();
    assert_eq!(
        lseek(fd, 0, libc::SEEK_HOLE),
        Ok(0),
        "SEEK_HOLE at 0 (a hole starts the file)"
    );
    let d1 = lseek(fd, 0, libc::SEEK_DATA).expect("SEEK_DATA from 0");
    assert!(
        d1 > 0 && d1 as u64 <= MIB,
        "SEEK_DATA from 0 = {d1}: the hole before 1 MiB was not seen"
    );
    let h1 = lseek(fd, MIB, libc::SEEK_HOLE).expect("SEEK_HOLE from 1 MiB");
    assert!(
        (MIB + 4096..=3 * MIB).contains(&(h1 as u64)),
        "SEEK_HOLE from 1 MiB = {h1}"
    );
    let d2 = lseek(fd, h1 as u64, libc::SEEK_DATA).expect("SEEK_DATA after the first extent");
    assert!(
        d2 > h1 && d2 as u64 <= 3 * MIB,
        "SEEK_DATA from {h1} = {d2}"
    );
    let h2 = lseek(fd, 3 * MIB, libc::SEEK_HOLE).expect("SEEK_HOLE from 3 MiB");
    assert!(
        (3 * MIB + 4096..=4 * MIB).contains(&(h2 as u64)),
        "SEEK_HOLE from 3 MiB = {h2}"
    );
    expect_raw_errno(
        lseek(fd, 3 * MIB + MIB / 2, libc::SEEK_DATA),
        libc::ENXIO,
        "SEEK_DATA in the trailing hole",
    );
    expect_raw_errno(
        lseek(fd, 4 * MIB, libc::SEEK_DATA),
        libc::ENXIO,
        "SEEK_DATA at EOF",
    );
    expect_raw_errno(
        lseek(fd, 4 * MIB, libc::SEEK_HOLE),
        libc::ENXIO,
        "SEEK_HOLE at EOF",
    );
    assert_eq!(
        lseek(fd, 4 * MIB - 1, libc::SEEK_HOLE),
        Ok((4 * MIB - 1) as i64),
        "SEEK_HOLE inside the trailing hole"
    );
}

/// fallocate(PUNCH_HOLE|KEEP_SIZE) zeroes a range, frees its space and
/// keeps the size.
pub fn punch_hole(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("punch");
    let data = pattern(13, 0, MIB as usize);
    write(&p, &data);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    let fd = f.as_raw_fd();
    let blocks_before = fstat(fd).expect("fstat").st_blocks;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: a valid fd.
    check(unsafe { libc::fallocate(fd, mode, (256 * KIB) as i64, (256 * KIB) as i64) })
        .expect("fallocate PUNCH_HOLE");
    let st = fstat(fd).expect("fstat");
    assert_eq!(st.st_size as u64, MIB, "KEEP_SIZE");
    assert!(
        st.st_blocks < blocks_before,
        "punching 256 KiB freed no blocks ({blocks_before} -> {})",
        st.st_blocks
    );

    let mut want = data.clone();
    want[(256 * KIB) as usize..(512 * KIB) as usize].fill(0);
    let direct = read_direct(&p);
    assert!(
        direct == want,
        "server data after punch differs at {:?}",
        first_difference(&direct, &want)
    );
    let mut cached = vec![0u8; MIB as usize];
    f.read_exact_at(&mut cached, 0).expect("read");
    assert!(
        cached == want,
        "cached data after punch differs at {:?}",
        first_difference(&cached, &want)
    );
    assert_eq!(
        lseek(fd, 0, libc::SEEK_HOLE),
        Ok((256 * KIB) as i64),
        "SEEK_HOLE finds the punched hole"
    );
    assert_eq!(
        lseek(fd, 256 * KIB, libc::SEEK_DATA),
        Ok((512 * KIB) as i64),
        "SEEK_DATA after the punched hole"
    );

    // A punch reaching past EOF keeps the size too.
    // SAFETY: a valid fd.
    check(unsafe { libc::fallocate(fd, mode, (900 * KIB) as i64, MIB as i64) })
        .expect("punch past EOF");
    want[(900 * KIB) as usize..].fill(0);
    assert_eq!(fstat(fd).expect("fstat").st_size as u64, MIB);
    assert!(read_direct(&p) == want, "data after punching the tail");
}

/// mkdir and rmdir, with their errors.
pub fn mkdir_rmdir(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let d = fs.join("d");
    let c = cpath(&d);
    // SAFETY: valid C string.
    check(unsafe { libc::mkdir(c.as_ptr(), 0o750) }).expect("mkdir");
    let st = stat(&d);
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(
        st.st_mode & 0o7777,
        0o750 & !umask(),
        "mode of a new directory"
    );
    expect_errno(
        fs::create_dir(&d),
        libc::EEXIST,
        "mkdir an existing directory",
    );
    fs::create_dir_all(d.join("e/f")).expect("mkdir -p");
    write(&d.join("file"), b"x");
    expect_errno(
        fs::remove_dir(&d),
        libc::ENOTEMPTY,
        "rmdir a non-empty directory",
    );
    expect_errno(
        fs::remove_dir(d.join("e")),
        libc::ENOTEMPTY,
        "rmdir a directory holding a directory",
    );
    expect_errno(
        fs::remove_dir(d.join("file")),
        libc::ENOTDIR,
        "rmdir a file",
    );
    expect_errno(
        fs::remove_file(d.join("e")),
        libc::EISDIR,
        "unlink a directory",
    );
    expect_errno(
        fs::remove_dir(fs.join("missing")),
        libc::ENOENT,
        "rmdir a missing name",
    );
    expect_errno(
        fs::create_dir(fs.join("missing/child")),
        libc::ENOENT,
        "mkdir in a missing parent",
    );
    expect_errno(
        fs::create_dir(d.join("file/child")),
        libc::ENOTDIR,
        "mkdir under a file",
    );
    let dot = cpath(&d.join("."));
    // SAFETY: valid C string.
    expect_raw_errno(
        check(unsafe { libc::rmdir(dot.as_ptr()) }),
        libc::EINVAL,
        "rmdir .",
    );

    fs::remove_dir(d.join("e/f")).expect("rmdir f");
    fs::remove_dir(d.join("e")).expect("rmdir e");
    fs::remove_file(d.join("file")).expect("unlink file");
    fs::remove_dir(&d).expect("rmdir d");
    expect_errno(lstat(&d), libc::ENOENT, "stat a removed directory");
    assert_eq!(
        fs::read_dir(fs.path()).expect("readdir").count(),
        0,
        "root not empty after rmdir"
    );
    fs::create_dir(&d).expect("mkdir again after rmdir");
}

/// An unlinked file stays readable and writable through an open fd.
pub fn unlink_while_open(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("ghost");
    write(&p, b"persist");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    fs::remove_file(&p).expect("unlink");
    expect_errno(lstat(&p), libc::ENOENT, "stat an unlinked name");
    assert_eq!(
        fs::read_dir(fs.path()).expect("readdir").count(),
        0,
        "unlinked name still listed"
    );
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).expect("read an unlinked file");
    assert_eq!(buf, b"persist");
    f.write_all(b" and grow").expect("write an unlinked file");
    let mut all = [0u8; 16];
    f.read_exact_at(&mut all, 0).expect("pread");
    assert_eq!(&all, b"persist and grow");
    let st = fstat(f.as_raw_fd()).expect("fstat");
    assert_eq!(st.st_nlink, 0, "nlink of an unlinked open file");
    assert_eq!(st.st_size, 16);

    // A new file under the same name is a different file.
    write(&p, b"new");
    f.seek(SeekFrom::Start(0)).expect("seek");
    buf.clear();
    f.read_to_end(&mut buf).expect("read the old file");
    assert_eq!(buf, b"persist and grow");
    assert_eq!(read(&p), b"new");
    assert_ne!(stat(&p).st_ino, st.st_ino);
    drop(f);
    assert_eq!(read(&p), b"new");
}

/// Writing past `--size 16M` fails with ENOSPC, and space comes back after
/// unlink.
pub fn enospc(setup: &Setup) {
    if !memfs_only(setup, "--size") {
        return;
    }
    const SIZE: u64 = 16 * MIB;
    let fs = MountedFs::mount(setup, &["--size", "16M"]);
    let p = fs.join("fill");
    let mut f = File::create(&p).expect("create");
    let chunk = pattern(14, 0, MIB as usize);
    let mut accepted = 0u64;
    let mut failure = None;
    while accepted < 2 * SIZE {
        match f.write(&chunk) {
            Ok(0) => {
                failure = Some(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
                break;
            }
            Ok(n) => accepted += n as u64,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() {
        failure = f.sync_all().err();
    }
    let failure = failure.unwrap_or_else(|| {
        panic!("wrote {accepted} bytes into a 16 MiB filesystem without an error")
    });
    assert_eq!(
        failure.raw_os_error(),
        Some(libc::ENOSPC),
        "filling the filesystem: {failure} after {accepted} bytes"
    );
    assert!(
        accepted <= SIZE,
        "accepted {accepted} bytes, more than --size {SIZE}"
    );
    assert!(
        accepted >= SIZE / 2,
        "only {accepted} bytes fitted into --size {SIZE}"
    );
    assert_eq!(
        fstat(f.as_raw_fd()).expect("fstat").st_size as u64,
        accepted,
        "size after ENOSPC"
    );
    let st = statvfs(fs.path());
    assert!(
        st.f_bavail * st.f_frsize.max(1) < MIB,
        "statfs shows {} bytes available when full",
        st.f_bavail * st.f_frsize
    );
    drop(f);
    expect_errno(
        fs::write(fs.join("more"), &chunk),
        libc::ENOSPC,
        "a second file when full",
    );

    fs::remove_file(&p).expect("unlink");
    let _ = fs::remove_file(fs.join("more"));
    let freed = wait_until(Duration::from_secs(5), || {
        let st = statvfs(fs.path());
        st.f_bavail * st.f_frsize >= 8 * MIB
    });
    assert!(freed, "space not returned after unlink");
    write(&fs.join("after"), &chunk);
    assert!(read_direct(&fs.join("after")) == chunk);
}

// ---------------------------------------------------------------------------
// Users and permissions
// ---------------------------------------------------------------------------

/// The kernel enforces permissions for a non-root caller (uid 65534) on an
/// --allow-other mount, and what it creates is owned by it.
pub fn permissions_non_root(setup: &Setup) {
    let fs = MountedFs::mount(setup, &["--allow-other"]);
    let root_mode = stat(fs.path()).st_mode & 0o777;
    assert!(
        root_mode & 0o005 == 0o005,
        "the root directory ({root_mode:o}) must be readable by others for this test"
    );
    let rootfile = fs.join("rootfile");
    write(&rootfile, b"secret");
    fs::set_permissions(&rootfile, fs::Permissions::from_mode(0o644)).expect("chmod");
    let shared = fs.join("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod");
    let private = fs.join("private");
    fs::create_dir(&private).expect("mkdir");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).expect("chmod");
    write(&private.join("victim"), b"v");
    let secretdir = fs.join("secretdir");
    fs::create_dir(&secretdir).expect("mkdir");
    fs::set_permissions(&secretdir, fs::Permissions::from_mode(0o700)).expect("chmod");

    let c_rootfile = cpath(&rootfile);
    let c_mine = cpath(&shared.join("mine"));
    let c_mydir = cpath(&shared.join("mydir"));
    let c_nope = cpath(&private.join("nope"));
    let c_victim = cpath(&private.join("victim"));
    let c_secret = cpath(&secretdir);
    let r = run_as::<13>(NOBODY, NOBODY, |out| {
        // SAFETY: raw syscalls on valid C strings and stack buffers only.
        unsafe {
            out[0] = sys(libc::open(c_rootfile.as_ptr(), libc::O_WRONLY));
            let fd = libc::open(c_rootfile.as_ptr(), libc::O_RDONLY);
            out[1] = sys(fd);
            let mut buf = [0u8; 16];
            out[2] = if fd >= 0 {
                sys(libc::read(fd, buf.as_mut_ptr().cast(), 16))
            } else {
                -1
            };
            out[3] = i64::from(buf[..6] == *b"secret");
            let fd = libc::open(
                c_mine.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                0o644,
            );
            out[4] = sys(fd);
            if fd >= 0 {
                out[5] = sys(libc::write(fd, b"mine".as_ptr().cast(), 4));
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstat(fd, &mut st);
                out[6] = i64::from(st.st_uid);
                out[7] = i64::from(st.st_gid);
                libc::close(fd);
            }
            out[8] = sys(libc::mkdir(c_mydir.as_ptr(), 0o755));
            out[9] = sys(libc::open(
                c_nope.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY,
                0o644,
            ));
            out[10] = sys(libc::unlink(c_victim.as_ptr()));
            out[11] = sys(libc::chmod(c_rootfile.as_ptr(), 0o666));
            out[12] = sys(libc::open(
                c_secret.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            ));
        }
    });
    let e = |errno: i32| -i64::from(errno);
    assert_eq!(
        r[0],
        e(libc::EACCES),
        "uid 65534 opening a 0644 root file for writing: {}",
        show(r[0])
    );
    assert!(
        r[1] >= 0,
        "uid 65534 opening a 0644 root file for reading: {}",
        show(r[1])
    );
    assert_eq!((r[2], r[3]), (6, 1), "uid 65534 reading the root file");
    assert!(
        r[4] >= 0,
        "uid 65534 creating a file in a 0777 directory: {}",
        show(r[4])
    );
    assert_eq!(r[5], 4, "uid 65534 writing its file");
    assert_eq!(
        (r[6], r[7]),
        (i64::from(NOBODY), i64::from(NOBODY)),
        "owner of the file uid 65534 created (fstat)"
    );
    assert_eq!(
        r[8],
        0,
        "uid 65534 mkdir in a 0777 directory: {}",
        show(r[8])
    );
    assert_eq!(
        r[9],
        e(libc::EACCES),
        "uid 65534 creating in a 0755 root directory: {}",
        show(r[9])
    );
    assert_eq!(
        r[10],
        e(libc::EACCES),
        "uid 65534 unlinking in a 0755 root directory: {}",
        show(r[10])
    );
    assert_eq!(
        r[11],
        e(libc::EPERM),
        "uid 65534 chmod of a root file: {}",
        show(r[11])
    );
    assert_eq!(
        r[12],
        e(libc::EACCES),
        "uid 65534 opening a 0700 root directory: {}",
        show(r[12])
    );

    let st = stat(&shared.join("mine"));
    assert_eq!(
        (st.st_uid, st.st_gid),
        (NOBODY, NOBODY),
        "owner of the file uid 65534 created (lstat by root)"
    );
    let st = stat(&shared.join("mydir"));
    assert_eq!(
        (st.st_uid, st.st_gid),
        (NOBODY, NOBODY),
        "owner of the directory uid 65534 created"
    );
    assert_eq!(read(&shared.join("mine")), b"mine");
    assert_eq!(read(&rootfile), b"secret");
    assert_eq!(read(&private.join("victim")), b"v");
    expect_errno(
        lstat(&private.join("nope")),
        libc::ENOENT,
        "a refused create left a file",
    );
}

fn show(r: i64) -> String {
    if r < 0 && r > -4096 {
        errno_name(-r as i32)
    } else {
        r.to_string()
    }
}

/// New files, directories, symlinks and nodes belong to the caller's uid
/// and gid: root's, and another caller's (uid 1234, gid 4321).
pub fn ownership(setup: &Setup) {
    let fs = MountedFs::mount(setup, &["--allow-other"]);
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    write(&fs.join("file"), b"x");
    fs::create_dir(fs.join("dir")).expect("mkdir");
    std::os::unix::fs::symlink("file", fs.join("link")).expect("symlink");
    let fifo = cpath(&fs.join("fifo"));
    // SAFETY: valid C string.
    check(unsafe { libc::mknod(fifo.as_ptr(), libc::S_IFIFO | 0o644, 0) }).expect("mknod fifo");
    for name in ["file", "dir", "link", "fifo"] {
        let st = stat(&fs.join(name));
        assert_eq!(
            (st.st_uid, st.st_gid),
            (uid, gid),
            "owner of {name} created by root"
        );
    }
    assert_eq!(stat(&fs.join("fifo")).st_mode & libc::S_IFMT, libc::S_IFIFO);
    assert_eq!(
        stat(fs.path()).st_uid,
        uid,
        "the root directory belongs to the user who mounted"
    );

    let open = fs.join("open");
    fs::create_dir(&open).expect("mkdir");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    let names = ["file", "dir", "link", "fifo"].map(|n| cpath(&open.join(n)));
    let target = cstr("file");
    let r = run_as::<4>(1234, 4321, |out| {
        // SAFETY: raw syscalls on valid C strings.
        unsafe {
            let fd = libc::open(
                names[0].as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                0o600,
            );
            out[0] = sys(fd);
            if fd >= 0 {
                libc::close(fd);
            }
            out[1] = sys(libc::mkdir(names[1].as_ptr(), 0o700));
            out[2] = sys(libc::symlink(target.as_ptr(), names[2].as_ptr()));
            out[3] = sys(libc::mknod(names[3].as_ptr(), libc::S_IFIFO | 0o600, 0));
        }
    });
    for (i, name) in ["file", "dir", "link", "fifo"].iter().enumerate() {
        assert!(r[i] >= 0, "uid 1234 creating {name}: {}", show(r[i]));
        let st = stat(&open.join(name));
        assert_eq!(
            (st.st_uid, st.st_gid),
            (1234, 4321),
            "owner of {name} created by uid 1234 gid 4321"
        );
    }
}

/// --read-only: reads work, every write is refused with EROFS.
pub fn read_only(setup: &Setup) {
    let fs = MountedFs::mount(setup, &["--read-only"]);
    let root = fs.path();
    assert!(stat(root).st_mode & libc::S_IFMT == libc::S_IFDIR);
    assert_eq!(fs::read_dir(root).expect("readdir").count(), 0);
    let st = statvfs(root);
    assert!(
        st.f_flag & libc::ST_RDONLY != 0,
        "statvfs does not say read-only (f_flag {:#x})",
        st.f_flag
    );
    let entry = fs
        .is_mounted()
        .then(|| mount_entry(root))
        .flatten()
        .expect("mountinfo entry");
    let options = entry.split(' ').nth(5).unwrap_or("");
    assert!(
        options.split(',').any(|o| o == "ro"),
        "mount options {options:?} lack ro"
    );

    expect_errno(File::create(fs.join("f")), libc::EROFS, "create");
    expect_errno(fs::create_dir(fs.join("d")), libc::EROFS, "mkdir");
    expect_errno(
        std::os::unix::fs::symlink("x", fs.join("l")),
        libc::EROFS,
        "symlink",
    );
    expect_errno(
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)),
        libc::EROFS,
        "chmod",
    );
    expect_errno(
        std::os::unix::fs::chown(root, Some(1), Some(1)),
        libc::EROFS,
        "chown",
    );
    expect_raw_errno(
        utimensat(root, [ts(1, 0), ts(1, 0)]),
        libc::EROFS,
        "utimensat",
    );
    let c = cpath(root);
    let n = cstr("user.x");
    // SAFETY: valid C strings and buffer.
    let r = check(unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), b"1".as_ptr().cast(), 1, 0) });
    expect_raw_errno(r, libc::EROFS, "setxattr");
    let fifo = cpath(&fs.join("fifo"));
    // SAFETY: valid C string.
    expect_raw_errno(
        check(unsafe { libc::mknod(fifo.as_ptr(), libc::S_IFIFO | 0o644, 0) }),
        libc::EROFS,
        "mknod",
    );
}

// ---------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------

/// SIGTERM while files are open: the server unmounts lazily and exits 0.
pub fn sigterm_with_open_files(setup: &Setup) {
    let mut fs = MountedFs::mount(setup, &[]);
    let p = fs.join("open");
    let mut f = File::create(&p).expect("create");
    f.write_all(b"still open").expect("write");
    let dir = File::open(fs.path()).expect("open the root directory");
    fs.server().signal(libc::SIGTERM);
    let status = fs.server().wait_exit(EXIT_TIMEOUT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "the server did not exit within {EXIT_TIMEOUT:?} of SIGTERM; stderr: {:?}",
            fs.stderr_lines()
        )
    });
    assert!(
        status.success(),
        "exit status after SIGTERM: {status} (stderr: {:?})",
        fs.stderr_lines()
    );
    assert!(
        wait_until(Duration::from_secs(5), || !fs.is_mounted()),
        "{} still in /proc/self/mountinfo after the server exited",
        fs.path().display()
    );
    drop((f, dir));
}

/// SIGKILL while another thread reads a large file in a loop: the reader
/// gets ENOTCONN or ECONNABORTED promptly, and auto-unmount removes the
/// mount within about 5 s.
pub fn sigkill_during_read(setup: &Setup) {
    let mut fs = MountedFs::mount(setup, &[]);
    let p = fs.join("large");
    let mut f = File::create(&p).expect("create");
    let chunk = pattern(15, 0, MIB as usize);
    for _ in 0..64 {
        f.write_all(&chunk).expect("write");
    }
    drop(f);

    let reads = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    {
        let reads = reads.clone();
        let stop = stop.clone();
        let fd = open_raw(&p, libc::O_RDONLY | libc::O_DIRECT, 0).expect("open O_DIRECT");
        std::thread::spawn(move || {
            // 128 KiB: the size of the kernel's own readahead requests.
            let mut buf = AlignedBuf::page_aligned((128 * KIB) as usize);
            let mut off = 0u64;
            let err = loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match pread_full(fd.as_raw_fd(), &mut buf, off) {
                    Ok(_) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                        off = (off + 128 * KIB) % (64 * MIB);
                    }
                    Err(e) => break e,
                }
            };
            let _ = tx.send((err, Instant::now()));
        });
    }
    assert!(
        wait_until(Duration::from_secs(10), || reads.load(Ordering::Relaxed)
            >= 20),
        "the reader made only {} reads in 10 s",
        reads.load(Ordering::Relaxed)
    );
    if fs.mounted_line().contains(" passthrough=on") {
        // Kernel passthrough: the open file reads the host file directly, so
        // the reader neither fails nor hangs when the server dies; the mount
        // itself must still go away.
        fs.server().signal(libc::SIGKILL);
        let before = reads.load(Ordering::Relaxed);
        assert!(
            wait_until(Duration::from_secs(5), || reads.load(Ordering::Relaxed)
                >= before + 20),
            "a passthrough-opened file stopped reading after SIGKILL of the server"
        );
        assert!(
            rx.try_recv().is_err(),
            "a passthrough read failed after SIGKILL"
        );
        let gone = wait_until(Duration::from_secs(5), || !fs.is_mounted());
        stop.store(true, Ordering::Relaxed);
        assert!(
            gone,
            "auto-unmount did not remove {} within 5 s of SIGKILL",
            fs.path().display()
        );
        return;
    }
    let killed = Instant::now();
    fs.server().signal(libc::SIGKILL);
    let (err, when) = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
        panic!("the reader still blocked 5 s after SIGKILL of the server (a hang)")
    });
    assert!(
        when >= killed,
        "the reader failed before the server was killed: {err} ({:?})",
        err.raw_os_error().map(errno_name)
    );
    // With native FUSE-over-io_uring, a request whose ring entry is torn down
    // with the dying task is ended by the kernel with ECANCELED (see
    // shared/fuse-abi-notes.md, "Teardown"); nothing of the server runs
    // after SIGKILL, so that errno is the kernel's, not the server's.
    let native_uring = fs.mounted_line().contains(" transport=uring ");
    let errno = err.raw_os_error();
    assert!(
        matches!(errno, Some(libc::ENOTCONN) | Some(libc::ECONNABORTED))
            || (native_uring && errno == Some(libc::ECANCELED)),
        "the reader got {err} ({:?}), expected ENOTCONN or ECONNABORTED",
        errno.map(errno_name)
    );
    eprintln!(
        "reader failed {:?} after SIGKILL with {err}",
        when.duration_since(killed)
    );
    let gone = wait_until(Duration::from_secs(5), || !fs.is_mounted());
    assert!(
        gone,
        "auto-unmount did not remove {} within 5 s of SIGKILL",
        fs.path().display()
    );
}

/// --no-auto-unmount: a killed server leaves a dead mount (ENOTCONN), which
/// the guard then removes.
pub fn no_auto_unmount(setup: &Setup) {
    let mut fs = MountedFs::mount(setup, &["--no-auto-unmount"]);
    write(&fs.join("f"), b"x");
    fs.server().signal(libc::SIGKILL);
    assert!(
        fs.server().wait_exit(EXIT_TIMEOUT).is_some(),
        "server not dead after SIGKILL"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        fs.is_mounted(),
        "with --no-auto-unmount the dead mount must stay"
    );
    expect_errno(lstat(&fs.join("f")), libc::ENOTCONN, "stat in a dead mount");
    let path = fs.path().to_path_buf();
    fs.cleanup();
    assert!(
        !is_mountpoint(&path),
        "the guard did not remove the dead mount"
    );
}

/// The server run as uid 65534 mounts through the setuid fusermount3
/// (/dev/fuse is 0600), serves that user, and exits 0 after
/// `fusermount3 -u -z`.
pub fn unprivileged_fusermount3(setup: &Setup) {
    if !require_program("fusermount3") || !require_program("setpriv") {
        return;
    }
    // fusermount3 opens /dev/fuse as the calling user: a server started
    // while that is refused must say so in one line; then open it to all.
    let _dev_fuse = DevFuseForAll::acquire(|mode| {
        if mode & 0o006 == 0o006 {
            return;
        }
        let dir = traversable_tempdir();
        let mp = dir.path().join("mnt");
        fs::create_dir(&mp).expect("mkdir");
        chown(&mp, NOBODY, NOBODY);
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            fuselage_bin(),
        ])
        .args(start_args(setup, dir.path(), &[]))
        .arg(&mp);
        let out = run_bounded(
            cmd,
            EXIT_TIMEOUT,
            "an unprivileged server without /dev/fuse access",
        );
        let what = format!("uid 65534 serving while /dev/fuse is {mode:o}");
        assert!(!out.status.success(), "{what}: exit status {}", out.status);
        let lines = out.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "{what}: expected one line on stderr, got {lines:?}"
        );
        assert!(
            lines[0].starts_with("fuselage: ") && lines[0].contains("/dev/fuse"),
            "{what}: {:?}",
            lines[0]
        );
        assert!(!is_mountpoint(&mp), "{what}: something got mounted");
    });
    let mut fs = MountedFs::mount_with(
        setup,
        MountConfig {
            args: Vec::new(),
            run_as: Some(NOBODY),
        },
    );
    let entry = mount_entry(fs.path()).expect("the mount is in /proc/self/mountinfo");
    let after_dash = entry.split(" - ").nth(1).unwrap_or("");
    assert!(
        after_dash.starts_with("fuse"),
        "filesystem type in {entry:?}"
    );
    assert!(
        after_dash.contains("user_id=65534"),
        "not mounted for uid 65534: {entry:?}"
    );
    // Without --allow-other even root is kept out.
    expect_errno(
        lstat(&fs.join("x")),
        libc::EACCES,
        "root looking into uid 65534's mount",
    );

    let file = cpath(&fs.join("f"));
    let dir = cpath(&fs.join("d"));
    let r = run_as::<7>(NOBODY, NOBODY, |out| {
        // SAFETY: raw syscalls on valid C strings and stack buffers.
        unsafe {
            let fd = libc::open(
                file.as_ptr(),
                libc::O_CREAT | libc::O_RDWR | libc::O_EXCL,
                0o644,
            );
            out[0] = sys(fd);
            if fd >= 0 {
                out[1] = sys(libc::write(fd, b"unprivileged".as_ptr().cast(), 12));
                let mut buf = [0u8; 32];
                out[2] = sys(libc::pread(fd, buf.as_mut_ptr().cast(), 32, 0));
                out[3] = i64::from(buf[..12] == *b"unprivileged");
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstat(fd, &mut st);
                out[4] = i64::from(st.st_uid);
                out[5] = i64::from(st.st_gid);
                libc::close(fd);
            }
            out[6] = sys(libc::mkdir(dir.as_ptr(), 0o755));
        }
    });
    assert!(r[0] >= 0, "uid 65534 creating a file: {}", show(r[0]));
    assert_eq!(
        (r[1], r[2], r[3]),
        (12, 12, 1),
        "uid 65534 writing and reading back"
    );
    assert_eq!(
        (r[4], r[5]),
        (i64::from(NOBODY), i64::from(NOBODY)),
        "owner of the new file"
    );
    assert_eq!(r[6], 0, "uid 65534 mkdir: {}", show(r[6]));

    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "fusermount3",
        "-u",
        "-z",
    ])
    .arg(fs.path());
    let out = run_bounded(cmd, EXIT_TIMEOUT, "fusermount3 -u -z");
    assert!(
        out.status.success(),
        "fusermount3 -u -z as uid 65534: {out:?}"
    );
    let status = fs.server().wait_exit(EXIT_TIMEOUT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "the server did not exit after fusermount3 -u; stderr: {:?}",
            fs.stderr_lines()
        )
    });
    assert!(
        status.success(),
        "exit status after unmount: {status}; stderr: {:?}",
        fs.stderr_lines()
    );
    assert!(!fs.is_mounted(), "still mounted after fusermount3 -u -z");
}

/// The server in a user namespace (`unshare -Urm`): the mount lives in the
/// child's mount namespace only; checks run inside it.
pub fn user_namespace(setup: &Setup) {
    if !require_program("unshare") {
        return;
    }
    let probe = run_bounded(
        {
            let mut c = Command::new("unshare");
            c.args(["-Urm", "--propagation", "private", "true"]);
            c
        },
        EXIT_TIMEOUT,
        "unshare -Urm true",
    );
    if !require(if probe.status.success() {
        Ok(())
    } else {
        Err(format!(
            "unshare -Urm does not work here: {}",
            probe.stderr.trim()
        ))
    }) {
        return;
    }
    let dir = traversable_tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir");
    let source = if setup.backend != Backend::Memfs {
        let s = dir.path().join("src");
        fs::create_dir(&s).expect("mkdir");
        Some(s)
    } else {
        None
    };
    const SCRIPT: &str = r#"
bin=$1; mp=$2; dir=$3; shift 3
"$bin" "$@" "$mp" 2>"$dir/err" &
pid=$!
i=0
until grep -q '^fuselage: mounted ' "$dir/err" 2>/dev/null; do
    i=$((i + 1))
    if ! kill -0 "$pid" 2>/dev/null; then echo "server died"; cat "$dir/err"; exit 4; fi
    if [ "$i" -gt 300 ]; then echo "no mounted line"; cat "$dir/err"; kill -9 "$pid"; exit 3; fi
    sleep 0.05
done
echo "line: $(grep '^fuselage: mounted ' "$dir/err")"
echo "uid: $(id -u)"
echo data > "$mp/f" || echo "write failed"
echo "read: $(cat "$mp/f")"
echo "ls: $(ls "$mp")"
if grep -q " $mp " /proc/self/mountinfo; then echo "mounted inside"; fi
: > "$dir/inside"
i=0
while [ ! -e "$dir/go" ] && [ "$i" -lt 400 ]; do i=$((i + 1)); sleep 0.05; done
kill -TERM "$pid"
wait "$pid"
echo "exit=$?"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-Urm",
        "--propagation",
        "private",
        "sh",
        "-c",
        SCRIPT,
        "sh",
        fuselage_bin(),
    ])
    .arg(&mp)
    .arg(dir.path())
    .args(mount_args(setup, source.as_deref(), &[]));
    let mut child = BoundedChild::spawn(cmd);
    let inside = dir.path().join("inside");
    let ready = wait_until(Duration::from_secs(30), || {
        inside.exists() || child.wait(Duration::ZERO).is_some()
    });
    assert!(
        ready,
        "the namespace script did not get through its checks in 30 s; stdout:\n{}",
        child.stdout()
    );
    assert!(
        inside.exists(),
        "the namespace script stopped early; stdout:\n{}\nstderr:\n{}",
        child.stdout(),
        child.stderr()
    );
    assert!(
        !is_mountpoint(&mp),
        "the namespaced mount leaked into our mount namespace"
    );
    fs::write(dir.path().join("go"), b"").expect("signal the script");
    let out = child.finish(Duration::from_secs(20), "unshare script");
    let stdout = &out.stdout;
    let err_log = fs::read_to_string(dir.path().join("err")).unwrap_or_default();
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}\nserver stderr:\n{err_log}",
        out.stderr
    );
    assert!(out.status.success(), "{context}");
    assert!(
        stdout.contains(&format!(
            "line: fuselage: mounted {} backend=",
            mp.display()
        )),
        "{context}"
    );
    assert!(stdout.contains("uid: 0"), "{context}");
    assert!(stdout.contains("read: data"), "{context}");
    assert!(stdout.contains("ls: f"), "{context}");
    assert!(stdout.contains("mounted inside"), "{context}");
    assert!(
        stdout.contains("exit=0"),
        "the server's exit status after SIGTERM; {context}"
    );
    assert!(!is_mountpoint(&mp));
}

// ---------------------------------------------------------------------------
// Failures to start
// ---------------------------------------------------------------------------

/// Runs `fuselage ARGS` expecting a failure to start: a non-zero exit
/// within 10 s and exactly one stderr line starting with `fuselage: `.
fn expect_start_failure(args: &[String], what: &str) -> String {
    let mut cmd = Command::new(fuselage_bin());
    cmd.args(args);
    let out = run_bounded(cmd, EXIT_TIMEOUT, what);
    assert!(
        !out.status.success(),
        "{what}: exit status {} (stderr {:?})",
        out.status,
        out.stderr
    );
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr, got {lines:?}"
    );
    assert!(
        lines[0].starts_with("fuselage: "),
        "{what}: {:?} does not start with 'fuselage: '",
        lines[0]
    );
    assert!(
        lines[0].len() > "fuselage: ".len() + 10,
        "{what}: {:?} says nothing useful",
        lines[0]
    );
    lines[0].to_string()
}

/// A row's arguments with a source directory made for it if it needs one.
fn start_args(setup: &Setup, dir: &Path, extra: &[&str]) -> Vec<String> {
    let source = (setup.backend != Backend::Memfs).then(|| {
        let s = dir.join("src");
        fs::create_dir_all(&s).expect("mkdir");
        s
    });
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    mount_args(setup, source.as_deref(), &extra)
}

/// No MOUNTPOINT, and a MOUNTPOINT that does not exist.
pub fn error_missing_mountpoint(setup: &Setup) {
    let dir = traversable_tempdir();
    let args = start_args(setup, dir.path(), &[]);
    expect_start_failure(&args, "no MOUNTPOINT argument");
    let missing = dir.path().join("does-not-exist");
    let mut with = args.clone();
    with.push(missing.display().to_string());
    let line = expect_start_failure(&with, "a missing mountpoint");
    assert!(
        line.contains(&missing.display().to_string()),
        "the message should name the mountpoint: {line:?}"
    );
    assert!(!missing.exists(), "the missing mountpoint was created");
}

/// A MOUNTPOINT that is a regular file (the served root is a directory).
pub fn error_mountpoint_is_file(setup: &Setup) {
    let dir = traversable_tempdir();
    let file = dir.path().join("a-file");
    write(&file, b"not a directory");
    let mut args = start_args(setup, dir.path(), &[]);
    args.push(file.display().to_string());
    let line = expect_start_failure(&args, "a mountpoint that is a regular file");
    assert!(
        line.contains(&file.display().to_string()),
        "the message should name the mountpoint: {line:?}"
    );
    assert!(!is_mountpoint(&file), "something got mounted on the file");
    assert_eq!(read(&file), b"not a directory");
}

/// A MOUNTPOINT where fuselage is already mounted; the first mount keeps
/// working.
pub fn error_already_mounted(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    write(&fs.join("before"), b"1");
    let mut args = start_args(setup, fs.scratch_dir(), &[]);
    args.push(fs.path().display().to_string());
    let line = expect_start_failure(&args, "an already-mounted mountpoint");
    assert!(
        line.contains(&fs.path().display().to_string()),
        "the message should name the mountpoint: {line:?}"
    );
    assert_eq!(
        read(&fs.join("before")),
        b"1",
        "the first mount no longer serves"
    );
    let count = fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(&*fs.path().display().to_string()))
        .count();
    assert_eq!(count, 1, "mounts stacked on {}", fs.path().display());
}

/// An option that does not exist.
pub fn error_unknown_option(setup: &Setup) {
    let dir = traversable_tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir");
    let mut args = start_args(setup, dir.path(), &["--no-such-option"]);
    args.push(mp.display().to_string());
    let line = expect_start_failure(&args, "an unknown option");
    assert!(
        line.contains("--no-such-option"),
        "the message should name the option: {line:?}"
    );
    assert!(!is_mountpoint(&mp));
}

// ---------------------------------------------------------------------------
// Set-id bits and file capabilities, compared with tmpfs
// ---------------------------------------------------------------------------

/// A `security.capability` value (`vfs_cap_data` revision 2, no
/// capabilities): enough to see whether a change removed it.
const FILE_CAPS: [u8; 20] = [1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// A group that uid 65534 is given as a supplementary group.
const OTHER_GROUP: u32 = 1000;

/// One way of changing a file, done by a child process as some user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetidOp {
    Write,
    OpenTrunc,
    Ftruncate,
    Truncate,
    Fallocate,
    FallocateKeepSize,
    CopyFileRange,
    SharedMmapWrite,
    Chgrp,
    /// Open for writing while the file has no set-id bit, then chmod it to
    /// the mode under test and write through the open file (with kernel
    /// passthrough: a file that gained its bits while open).
    ChmodThenWrite,
}

const SETID_OPS: [SetidOp; 10] = [
    SetidOp::Write,
    SetidOp::OpenTrunc,
    SetidOp::Ftruncate,
    SetidOp::Truncate,
    SetidOp::Fallocate,
    SetidOp::FallocateKeepSize,
    SetidOp::CopyFileRange,
    SetidOp::SharedMmapWrite,
    SetidOp::Chgrp,
    SetidOp::ChmodThenWrite,
];

const SETID_MODES: [u32; 6] = [0o4777, 0o2777, 0o6777, 0o2767, 0o6767, 0o4767];

/// Who changes the file, and whose file it is.
struct SetidWho {
    name: &'static str,
    uid: u32,
    gid: u32,
    groups: &'static [u32],
    file_uid: u32,
    file_gid: u32,
}

const SETID_WHO: [SetidWho; 4] = [
    SetidWho {
        name: "root",
        uid: 0,
        gid: 0,
        groups: &[0],
        file_uid: 0,
        file_gid: 0,
    },
    SetidWho {
        name: "65534, not in the file's group",
        uid: NOBODY,
        gid: NOBODY,
        groups: &[NOBODY],
        file_uid: 0,
        file_gid: 0,
    },
    SetidWho {
        name: "65534, in the file's group by a supplementary group",
        uid: NOBODY,
        gid: NOBODY,
        groups: &[NOBODY, OTHER_GROUP],
        file_uid: 0,
        file_gid: OTHER_GROUP,
    },
    SetidWho {
        name: "65534, the owner, not in the file's group",
        uid: NOBODY,
        gid: NOBODY,
        groups: &[NOBODY, OTHER_GROUP],
        file_uid: NOBODY,
        file_gid: 0,
    },
];

impl SetidOp {
    /// Runs the change on `path` (`source`: a 3-byte file to copy from);
    /// 0 or `-errno` of the first failing call. Raw syscalls only (it runs
    /// in a forked child).
    ///
    /// # Safety
    /// Both pointers are valid NUL-terminated paths.
    unsafe fn run(self, path: *const libc::c_char, source: *const libc::c_char, mode: u32) -> i64 {
        // SAFETY: the caller's contract; every buffer is on the stack.
        unsafe {
            let open = |flags| sys(libc::open(path, flags | libc::O_CLOEXEC));
            let step = |r: i64, fd: i64| {
                if fd >= 0 {
                    libc::close(fd as i32);
                }
                r.min(0)
            };
            match self {
                SetidOp::Write => {
                    let fd = open(libc::O_WRONLY);
                    if fd < 0 {
                        return fd;
                    }
                    step(sys(libc::pwrite(fd as i32, b"x".as_ptr().cast(), 1, 0)), fd)
                }
                SetidOp::OpenTrunc => step(0, open(libc::O_WRONLY | libc::O_TRUNC)).min(0),
                SetidOp::Ftruncate => {
                    let fd = open(libc::O_WRONLY);
                    if fd < 0 {
                        return fd;
                    }
                    step(sys(libc::ftruncate(fd as i32, 1)), fd)
                }
                SetidOp::Truncate => sys(libc::truncate(path, 2)).min(0),
                SetidOp::Fallocate | SetidOp::FallocateKeepSize => {
                    let fd = open(libc::O_WRONLY);
                    if fd < 0 {
                        return fd;
                    }
                    let keep = if self == SetidOp::Fallocate {
                        0
                    } else {
                        libc::FALLOC_FL_KEEP_SIZE
                    };
                    step(sys(libc::fallocate(fd as i32, keep, 0, 8192)), fd)
                }
                SetidOp::CopyFileRange => {
                    let src = sys(libc::open(source, libc::O_RDONLY | libc::O_CLOEXEC));
                    if src < 0 {
                        return src;
                    }
                    let fd = open(libc::O_WRONLY);
                    if fd < 0 {
                        return step(fd, src);
                    }
                    let null = std::ptr::null_mut();
                    let r = sys(libc::copy_file_range(
                        src as i32, null, fd as i32, null, 3, 0,
                    ));
                    step(step(r, fd), src)
                }
                SetidOp::SharedMmapWrite => {
                    let fd = open(libc::O_RDWR);
                    if fd < 0 {
                        return fd;
                    }
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        4,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        fd as i32,
                        0,
                    );
                    if p == libc::MAP_FAILED {
                        return step(sys(-1), fd);
                    }
                    *p.cast::<u8>() = b'y';
                    let r = sys(libc::msync(p, 4, libc::MS_SYNC));
                    libc::munmap(p, 4);
                    step(r, fd)
                }
                SetidOp::Chgrp => sys(libc::chown(path, u32::MAX, OTHER_GROUP)).min(0),
                SetidOp::ChmodThenWrite => {
                    let fd = open(libc::O_WRONLY);
                    if fd < 0 {
                        return fd;
                    }
                    let r = sys(libc::chmod(path, mode));
                    if r < 0 {
                        return step(r, fd);
                    }
                    step(sys(libc::pwrite(fd as i32, b"x".as_ptr().cast(), 1, 0)), fd)
                }
            }
        }
    }
}

/// Result of one change: the change's result (0 or `-errno`), the file's
/// mode bits afterwards, and whether it still has `security.capability`.
type SetidOutcome = (i64, u32, bool);

/// Makes `dir/target` (owner, group, mode and file capabilities as the case
/// wants), has `who` change it with `op`, and says what became of it.
fn setid_case(dir: &Path, who: &SetidWho, op: SetidOp, mode: u32) -> SetidOutcome {
    let path = dir.join("target");
    let _ = fs::remove_file(&path);
    write(&path, b"data");
    chown(&path, who.file_uid, who.file_gid);
    let start = if op == SetidOp::ChmodThenWrite {
        0o666
    } else {
        mode
    };
    fs::set_permissions(&path, fs::Permissions::from_mode(start)).expect("chmod");
    let c = cpath(&path);
    let name = c"security.capability";
    // SAFETY: valid C strings and a readable value.
    let set = unsafe {
        libc::setxattr(
            c.as_ptr(),
            name.as_ptr(),
            FILE_CAPS.as_ptr().cast(),
            FILE_CAPS.len(),
            0,
        )
    };
    assert_eq!(
        set,
        0,
        "setxattr security.capability on {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
    let source = cpath(&dir.join("source"));
    let r = run_as_groups::<1>(who.uid, who.gid, who.groups, |out| {
        // SAFETY: both are valid C strings that outlive the child's use.
        out[0] = unsafe { op.run(c.as_ptr(), source.as_ptr(), mode) };
    });
    let st = stat(&path);
    // SAFETY: a size query (null buffer) on a valid path.
    let caps = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    (r[0], st.st_mode & 0o7777, caps >= 0)
}

/// Makes `dir/fifo` owned by uid 65534 (group 0) with `mode`, has its
/// owner chgrp it to a group of theirs, and returns the result and the mode.
fn fifo_chgrp_case(dir: &Path, mode: u32) -> (i64, u32) {
    let path = dir.join("fifo");
    let _ = fs::remove_file(&path);
    let c = cpath(&path);
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    chown(&path, NOBODY, 0);
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    let r = run_as_groups::<1>(NOBODY, NOBODY, &[NOBODY, OTHER_GROUP], |out| {
        // SAFETY: a valid C string.
        out[0] = sys(unsafe { libc::chown(c.as_ptr(), u32::MAX, OTHER_GROUP) });
    });
    (r[0].min(0), stat(&path).st_mode & 0o7777)
}

/// Every way of changing a file that must clear set-uid/set-gid bits (and
/// file capabilities), by root, by uid 65534 in and out of the file's
/// group, and by a non-root owner, gives exactly what native tmpfs on the
/// same kernel gives: with kernel passthrough on (writes that never reach
/// the server) and off, and on memfs.
pub fn setid_bits_like_tmpfs(setup: &Setup) {
    let fs = MountedFs::mount(setup, &["--allow-other"]);
    let reference = TmpfsMount::new();
    let ours = fs.join("setid");
    let theirs = reference.path().join("setid");
    let mut mismatches = Vec::new();
    let mut cases = 0;
    for dir in [&ours, &theirs] {
        fs::create_dir(dir).expect("mkdir");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        write(&dir.join("source"), b"abc");
        fs::set_permissions(dir.join("source"), fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    for who in &SETID_WHO {
        for op in SETID_OPS {
            for mode in SETID_MODES {
                // Root's write through a file that became set-id while open
                // with kernel passthrough loses the bits (the backing file
                // writes without CAP_FSETID; the README's limits say so),
                // where tmpfs keeps them: not compared.
                if op == SetidOp::ChmodThenWrite && who.uid == 0 {
                    continue;
                }
                cases += 1;
                let want = setid_case(&theirs, who, op, mode);
                let got = setid_case(&ours, who, op, mode);
                if want != got {
                    mismatches.push(format!(
                        "{op:?} by {} on mode {mode:o}: tmpfs {want:?}, fuselage {got:?}",
                        who.name
                    ));
                }
            }
        }
    }
    // A change of owner clears them from every non-directory: a FIFO
    // chgrp'ed by its owner.
    for mode in [0o6555, 0o6545, 0o4755, 0o2745] {
        cases += 1;
        let want = fifo_chgrp_case(&theirs, mode);
        let got = fifo_chgrp_case(&ours, mode);
        if want != got {
            mismatches.push(format!(
                "chgrp of a FIFO by its owner, mode {mode:o}: tmpfs {want:?}, fuselage {got:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {cases} cases differ from tmpfs ((result, mode, has security.capability)):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The set-id files never used kernel passthrough; ordinary ones still do.
    if setup.backend == Backend::Passthrough && fs.mounted_line().contains("passthrough=on") {
        let plain = fs.join("plain");
        write(&plain, &[7u8; 4096]);
        assert_eq!(read(&plain), [7u8; 4096]);
    }
}
