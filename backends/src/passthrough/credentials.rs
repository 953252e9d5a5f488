//! Acting as the caller: per-thread filesystem ids, umask and CAP_FSETID.
//!
//! Linux keeps credentials per thread; glibc makes `setuid` and friends
//! process-wide by signalling every thread, but the raw syscalls change only
//! the calling thread. The guards here use the raw syscalls, so a worker
//! thread can act as one caller while its siblings serve others, and they
//! undo the change in `Drop`, so neither an early `?` return nor a panic can
//! leave a worker with the wrong identity.
//!
//! - [`FsIds`] switches the thread's fsgid, then fsuid (gid first, while the
//!   thread is still privileged), for requests that create inodes: the host
//!   kernel then gives new files, directories, nodes and symlinks the
//!   caller's owner and group (or the set-gid parent's group), applies default
//!   ACLs, and, since a non-zero fsuid drops the filesystem capabilities from
//!   the effective set, applies the caller's (unprivileged) rules for set-gid
//!   bits and `O_TRUNC` of set-uid files.
//! - [`set_thread_umask`] gives the worker thread its own fs context
//!   (`unshare(CLONE_FS)`, once per thread) and sets the request's umask, so
//!   the host applies it exactly as for a local call (not when the parent
//!   directory has a default ACL).
//! - [`WithoutFsetid`] drops `CAP_FSETID` from the thread's effective set
//!   while a kernel passthrough backing file is registered, so the
//!   kernel's I/O on it (done with the registering thread's credentials)
//!   never keeps set-id bits for a writer that has no right to keep them.

use super::sys::{self, CapData, SysResult};
use fuselage_core::Errno;
use std::cell::Cell;

/// The thread's filesystem ids switched to a caller's, restored on drop.
#[derive(Debug)]
pub(crate) struct FsIds {
    uid: u32,
    gid: u32,
}

impl FsIds {
    /// Switches the calling thread's fsgid and fsuid to `gid` and `uid`
    /// (gid first). Fails with `EPERM` if the kernel did not accept them.
    pub(crate) fn switch(uid: u32, gid: u32) -> SysResult<FsIds> {
        let old_gid = sys::setfsgid(gid);
        if sys::setfsgid(u32::MAX) != gid {
            sys::setfsgid(old_gid);
            return Err(Errno::EPERM);
        }
        let old_uid = sys::setfsuid(uid);
        if sys::setfsuid(u32::MAX) != uid {
            sys::setfsuid(old_uid);
            sys::setfsgid(old_gid);
            return Err(Errno::EPERM);
        }
        Ok(FsIds {
            uid: old_uid,
            gid: old_gid,
        })
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        // Reverse order: uid back first, then gid.
        sys::setfsuid(self.uid);
        sys::setfsgid(self.gid);
    }
}

/// Per-thread umask state: `None` until the thread has its own fs context.
#[derive(Clone, Copy)]
enum ThreadFs {
    Unknown,
    Private(u32),
    Shared,
}

thread_local! {
    static THREAD_FS: Cell<ThreadFs> = const { Cell::new(ThreadFs::Unknown) };
}

/// Sets the calling thread's umask to `mask` for a creating request. The
/// first call on a thread unshares its fs context so the umask is the
/// thread's alone. Returns `false` when that is impossible; the caller then
/// applies the umask to the mode itself (ignoring default ACLs).
pub(crate) fn set_thread_umask(mask: u32) -> bool {
    let mask = mask & 0o777;
    THREAD_FS.with(|state| match state.get() {
        ThreadFs::Private(current) if current == mask => true,
        ThreadFs::Private(_) => {
            sys::umask(mask);
            state.set(ThreadFs::Private(mask));
            true
        }
        ThreadFs::Shared => false,
        ThreadFs::Unknown => {
            if sys::unshare_fs().is_ok() {
                sys::umask(mask);
                state.set(ThreadFs::Private(mask));
                true
            } else {
                state.set(ThreadFs::Shared);
                false
            }
        }
    })
}

const CAP_FSETID: u32 = 4;

/// `CAP_FSETID` dropped from the thread's effective set, restored on drop.
#[derive(Debug)]
pub(crate) struct WithoutFsetid {
    saved: Option<[CapData; 2]>,
}

impl WithoutFsetid {
    /// Drops `CAP_FSETID` if the thread has it (a no-op guard otherwise).
    pub(crate) fn new() -> WithoutFsetid {
        let Ok(caps) = sys::capget() else {
            return WithoutFsetid { saved: None };
        };
        let bit = 1u32 << CAP_FSETID;
        if caps[0].effective & bit == 0 {
            return WithoutFsetid { saved: None };
        }
        let mut lowered = caps;
        lowered[0].effective &= !bit;
        match sys::capset(&lowered) {
            Ok(()) => WithoutFsetid { saved: Some(caps) },
            Err(_) => WithoutFsetid { saved: None },
        }
    }
}

impl Drop for WithoutFsetid {
    fn drop(&mut self) {
        if let Some(caps) = self.saved.take() {
            let _ = sys::capset(&caps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn fs_ids_switch_and_restore_on_this_thread_only() {
        if !is_root() {
            return;
        }
        let (switched_tx, switched_rx) = std::sync::mpsc::channel();
        let (checked_tx, checked_rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            {
                let _g = FsIds::switch(1234, 5678).unwrap();
                assert_eq!(sys::setfsuid(u32::MAX), 1234);
                assert_eq!(sys::setfsgid(u32::MAX), 5678);
                switched_tx.send(()).unwrap();
                checked_rx.recv().unwrap();
            }
            assert_eq!(sys::setfsuid(u32::MAX), 0);
            assert_eq!(sys::setfsgid(u32::MAX), 0);
        });
        switched_rx.recv().unwrap();
        // This thread is unaffected while the worker acts as 1234:5678.
        assert_eq!(sys::setfsuid(u32::MAX), 0);
        assert_eq!(sys::setfsgid(u32::MAX), 0);
        checked_tx.send(()).unwrap();
        worker.join().unwrap();
    }

    #[test]
    fn fsetid_dropped_and_restored() {
        if !is_root() {
            return;
        }
        std::thread::spawn(|| {
            assert!(sys::has_effective_cap(CAP_FSETID));
            {
                let _g = WithoutFsetid::new();
                assert!(!sys::has_effective_cap(CAP_FSETID));
            }
            assert!(sys::has_effective_cap(CAP_FSETID));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn thread_umask_is_private() {
        let before = sys::umask(0o022);
        sys::umask(before);
        std::thread::spawn(|| {
            assert!(set_thread_umask(0o077));
            assert_eq!(sys::umask(0o077), 0o077);
        })
        .join()
        .unwrap();
        // The spawning thread (sharing the process's fs context) still has
        // its own umask.
        let after = sys::umask(before);
        assert_eq!(after, before);
    }
}
