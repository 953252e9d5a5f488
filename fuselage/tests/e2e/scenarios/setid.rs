//! Set-id bits and file capabilities, compared with tmpfs.

use super::*;
use crate::common::*;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
