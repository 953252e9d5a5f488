//! Attributes: extended attributes, chmod/chown/utimens and statfs.

use super::*;
use crate::common::*;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

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
