//! Names in directories: rename, hard and symbolic links, a large directory,
//! mkdir/rmdir and unlinking an open file.

use super::*;
use crate::common::*;
use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

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
    assert_eq!(fs.root_names().len(), 0, "root not empty after rmdir");
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
    assert_eq!(fs.root_names().len(), 0, "unlinked name still listed");
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
