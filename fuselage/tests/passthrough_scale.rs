//! More inodes than the process may have descriptors: with a hard
//! `RLIMIT_NOFILE` of 20,000 (CI's), 60,000 files are looked up, created,
//! read and stat'ed through one mount.

mod passthrough_common;

use fuselage_backends::passthrough::PassthroughConfig;
use passthrough_common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

fn hard_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_max
}

#[test]
fn fifty_thousand_files_past_the_descriptor_limit() {
    past_the_descriptor_limit(true);
}

/// The same without file handles: evicted inodes are re-resolved from the
/// names they were found under.
#[test]
fn fifty_thousand_files_past_the_descriptor_limit_without_file_handles() {
    past_the_descriptor_limit(false);
}

fn past_the_descriptor_limit(file_handles: bool) {
    if !require_fuse() {
        return;
    }
    const HOST_FILES: usize = 50_000;
    const NEW_FILES: usize = 10_000;
    let limit = hard_nofile();
    assert!(
        limit < (HOST_FILES + NEW_FILES) as u64,
        "the test needs a descriptor limit below {} (it is {limit})",
        HOST_FILES + NEW_FILES
    );
    let tree = Tree::new("pt-scale");
    let many = tree.src().join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..HOST_FILES {
        fs::write(many.join(format!("f{i}")), i.to_string()).unwrap();
    }
    let m = Mounted::new(
        &tree.mnt(),
        PassthroughConfig {
            file_handles,
            ..config(&tree.src())
        },
        Options::default(),
    );
    let stats = m.fs().stats();
    assert_eq!(
        stats.file_handles, file_handles,
        "file handles should be usable as root"
    );

    // Stat all of them: every one becomes an inode the kernel holds (unless
    // memory pressure makes it forget some, hence the peak).
    let mut peak = 0;
    for i in 0..HOST_FILES {
        let md = fs::symlink_metadata(m.join(format!("many/f{i}"))).unwrap();
        assert_eq!(md.len(), i.to_string().len() as u64);
        if i % 1000 == 999 {
            peak = peak.max(m.fs().stats().inodes);
        }
    }
    let stats = m.fs().stats();
    assert!(
        peak > limit as usize,
        "at most {peak} inodes known, limit {limit}"
    );
    assert!(stats.cached_fds <= stats.max_cached_fds);
    assert!(stats.fd_evictions > 0);
    assert!(open_fds() < limit as usize, "{} fds open", open_fds());

    // Create 10,000 more through the mount.
    for i in 0..NEW_FILES {
        fs::write(m.join(format!("many/new{i}")), b"new").unwrap();
    }
    for i in (0..NEW_FILES).step_by(97) {
        assert_eq!(fs::read(many.join(format!("new{i}"))).unwrap(), b"new");
    }
    assert!(open_fds() < limit as usize, "{} fds open", open_fds());

    // Inodes whose descriptors were evicted long ago still work: their
    // attributes (after the cache timeout), their data, their inode number.
    std::thread::sleep(Duration::from_millis(1100));
    for i in (0..HOST_FILES).step_by(1000) {
        let p = m.join(format!("many/f{i}"));
        assert_eq!(fs::read_to_string(&p).unwrap(), i.to_string());
        assert_eq!(
            fs::metadata(&p).unwrap().ino(),
            fs::metadata(many.join(format!("f{i}"))).unwrap().ino()
        );
    }
    assert!(m.fs().stats().handle_reopens > 0);
    eprintln!("scale: {:?}, open fds {}", m.fs().stats(), open_fds());
}
