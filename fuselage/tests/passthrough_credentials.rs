//! Acting as the caller: inodes created by a non-root client belong to it
//! (also when its right to create comes from a supplementary group, and
//! with set-gid directories), its umask applies, and writes and truncates by
//! a non-root client clear set-uid/set-gid bits while root's do not.

mod passthrough_common;

use fuselage_backends::passthrough::{PassthroughConfig, PassthroughMode};
use passthrough_common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const NOBODY: u32 = 65534;

fn mount_shared(tree: &Tree, passthrough: PassthroughMode) -> Mounted {
    Mounted::new(
        &tree.mnt(),
        PassthroughConfig {
            passthrough,
            ..config(&tree.src())
        },
        Options {
            allow_other: true,
            ..Options::default()
        },
    )
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn owner(p: &Path) -> (u32, u32, u32) {
    let md = fs::symlink_metadata(p).unwrap();
    (md.uid(), md.gid(), md.mode() & 0o7777)
}

#[test]
fn new_inodes_belong_to_the_calling_user() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-owner");
    fs::create_dir(tree.src().join("pub")).unwrap();
    chmod(&tree.src().join("pub"), 0o777);
    let m = mount_shared(&tree, PassthroughMode::Auto);
    let file = cpath(&m.join("pub/file"));
    let dir = cpath(&m.join("pub/dir"));
    let link = cpath(&m.join("pub/link"));
    let fifo = cpath(&m.join("pub/fifo"));
    let code = run_as(NOBODY, NOBODY, &[], || {
        // SAFETY: raw syscalls on prepared strings (see `run_as`).
        unsafe {
            libc::umask(0o027);
            let fd = libc::open(file.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o666);
            if fd < 0 {
                return 1;
            }
            libc::write(fd, b"mine".as_ptr().cast(), 4);
            libc::close(fd);
            if libc::mkdir(dir.as_ptr(), 0o777) != 0 {
                return 2;
            }
            if libc::symlink(c"file".as_ptr(), link.as_ptr()) != 0 {
                return 3;
            }
            if libc::mkfifo(fifo.as_ptr(), 0o666) != 0 {
                return 4;
            }
        }
        0
    });
    assert_eq!(code, 0, "the child failed at step {code}");
    let src = tree.src().join("pub");
    assert_eq!(
        owner(&src.join("file")),
        (NOBODY, NOBODY, 0o640),
        "umask 027 applied"
    );
    assert_eq!(owner(&src.join("dir")), (NOBODY, NOBODY, 0o750));
    assert_eq!(owner(&src.join("link")).0, NOBODY);
    assert_eq!(owner(&src.join("link")).1, NOBODY);
    assert_eq!(owner(&src.join("fifo")), (NOBODY, NOBODY, 0o640));
    assert_eq!(fs::read(src.join("file")).unwrap(), b"mine");
    // Root's own creations stay root's.
    fs::write(m.join("pub/rootfile"), b"").unwrap();
    assert_eq!(owner(&src.join("rootfile")).0, 0);
}

#[test]
fn supplementary_groups_and_setgid_directories() {
    if !require_fuse() {
        return;
    }
    const GROUP: u32 = 4242;
    let tree = Tree::new("pt-groups");
    // Writable only through the group: nobody may create here only thanks
    // to a supplementary group, which the server's thread does not have.
    let team = tree.src().join("team");
    fs::create_dir(&team).unwrap();
    std::os::unix::fs::chown(&team, Some(0), Some(GROUP)).unwrap();
    chmod(&team, 0o770);
    // A set-gid directory passes its group on.
    let shared = tree.src().join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(GROUP)).unwrap();
    chmod(&shared, 0o2777);
    let m = mount_shared(&tree, PassthroughMode::Auto);
    let paths: Vec<_> = ["team/f", "team/d", "team/l", "shared/f", "shared/d"]
        .iter()
        .map(|p| cpath(&m.join(p)))
        .collect();
    let code = run_as(NOBODY, NOBODY, &[GROUP], || {
        // SAFETY: raw syscalls on prepared strings (see `run_as`).
        unsafe {
            libc::umask(0o022);
            let fd = libc::open(paths[0].as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
            if fd < 0 {
                return 1;
            }
            libc::close(fd);
            if libc::mkdir(paths[1].as_ptr(), 0o755) != 0 {
                return 2;
            }
            if libc::symlink(c"f".as_ptr(), paths[2].as_ptr()) != 0 {
                return 3;
            }
            let fd = libc::open(paths[3].as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
            if fd < 0 {
                return 4;
            }
            libc::close(fd);
            if libc::mkdir(paths[4].as_ptr(), 0o755) != 0 {
                return 5;
            }
        }
        0
    });
    assert_eq!(code, 0, "the child failed at step {code}");
    assert_eq!(owner(&team.join("f")), (NOBODY, NOBODY, 0o644));
    assert_eq!(owner(&team.join("d")), (NOBODY, NOBODY, 0o755));
    assert_eq!(owner(&team.join("l")).0, NOBODY);
    assert_eq!(owner(&shared.join("f")), (NOBODY, GROUP, 0o644));
    // A subdirectory of a set-gid directory inherits the bit.
    assert_eq!(owner(&shared.join("d")), (NOBODY, GROUP, 0o2755));
}

#[test]
fn writes_and_truncates_by_others_clear_setuid() {
    if !require_fuse() {
        return;
    }
    let tree = Tree::new("pt-killpriv");
    // Without kernel passthrough, so that writes come to the server.
    let m = mount_shared(&tree, PassthroughMode::Off);
    for name in ["w", "t", "root"] {
        fs::write(m.join(name), b"0123456789").unwrap();
        chmod(&m.join(name), 0o6777);
    }
    // Root (CAP_FSETID) writing keeps the bits.
    fs::OpenOptions::new()
        .write(true)
        .open(m.join("root"))
        .unwrap();
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(m.join("root"))
            .unwrap();
        f.write_all(b"x").unwrap();
    }
    assert_eq!(owner(&tree.src().join("root")).2, 0o6777);

    let w = cpath(&m.join("w"));
    let t = cpath(&m.join("t"));
    let code = run_as(NOBODY, NOBODY, &[], || {
        // SAFETY: raw syscalls on prepared strings (see `run_as`).
        unsafe {
            let fd = libc::open(w.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return 1;
            }
            if libc::write(fd, b"y".as_ptr().cast(), 1) != 1 {
                return 2;
            }
            libc::close(fd);
            if libc::truncate(t.as_ptr(), 3) != 0 {
                return 3;
            }
        }
        0
    });
    assert_eq!(code, 0, "the child failed at step {code}");
    assert_eq!(
        owner(&tree.src().join("w")).2,
        0o777,
        "write cleared set-uid/set-gid"
    );
    assert_eq!(
        owner(&tree.src().join("t")).2,
        0o777,
        "truncate cleared them"
    );
    assert_eq!(fs::read(tree.src().join("t")).unwrap(), b"012");
}
