//! Users and permissions: access as a non-root user, ownership of new files
//! and a read-only mount.

use super::*;
use crate::common::*;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;

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
    assert_eq!(fs.root_names().len(), 0);
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
