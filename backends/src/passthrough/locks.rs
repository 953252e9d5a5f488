//! Locks: GETLK, SETLK, SETLKW (POSIX) and flock(2), forwarded to the host.
//!
//! POSIX locks become open file description (OFD) locks on the open file's
//! own host descriptor (`F_OFD_GETLK`, `F_OFD_SETLK`): every FUSE open has
//! its own descriptor, so locks taken through different opens conflict with
//! each other and with locks of host processes, as they should. Plain
//! `F_SETLK` would not work: every lock would belong to the server process
//! and never conflict. Because an OFD lock is not owned by a process, two
//! processes sharing one open file (after fork) share its locks; FLUSH
//! (close) releases the locks taken through the file, as POSIX says for the
//! closing process. flock(2) locks are flock calls on the same descriptor,
//! which already have open-file-description semantics.
//!
//! # Blocking waits
//!
//! SETLKW (and a blocking flock) must not park a worker thread in a blocking
//! host call: with every worker waiting, the request that would release the
//! lock could never be read. A waiter instead retries the non-blocking call
//! with a growing back-off (1 ms to 50 ms), gives up with `EINTR` when the
//! kernel sends INTERRUPT for it (the caller got a signal) or when the
//! filesystem is torn down, and at most
//! [`max_lock_waiters`](super::PassthroughConfig::max_lock_waiters) workers
//! wait at once: a further waiter gets `EDEADLK` at once, keeping a worker
//! free for the lock's holder.

use super::PassthroughFs;
use super::inode_store::lock;
use super::sys::{self, SysResult};
use fuselage_core::Errno;
use fuselage_core::abi::fuse_file_lock;
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The protocol's "to the end of the file" (`OFFSET_MAX`).
const OFFSET_MAX: u64 = i64::MAX as u64;

/// Requests waiting for a lock, by unique, with an "interrupted" mark.
#[derive(Debug)]
pub(crate) struct LockWaiters {
    max: usize,
    waiting: Mutex<Vec<(u64, bool)>>,
}

impl LockWaiters {
    /// At most `max` waiters at once.
    pub(crate) fn new(max: usize) -> LockWaiters {
        LockWaiters {
            max,
            waiting: Mutex::new(Vec::with_capacity(max)),
        }
    }

    /// Marks the waiter for request `unique` (if any) as interrupted.
    pub(crate) fn interrupt(&self, unique: u64) {
        for w in lock(&self.waiting).iter_mut() {
            if w.0 == unique {
                w.1 = true;
            }
        }
    }

    fn register(&self, unique: u64) -> SysResult<()> {
        let mut w = lock(&self.waiting);
        if w.len() >= self.max {
            return Err(Errno::EDEADLK);
        }
        w.push((unique, false));
        Ok(())
    }

    fn interrupted(&self, unique: u64) -> bool {
        lock(&self.waiting).iter().any(|w| w.0 == unique && w.1)
    }

    fn deregister(&self, unique: u64) {
        let mut w = lock(&self.waiting);
        if let Some(i) = w.iter().position(|w| w.0 == unique) {
            w.swap_remove(i);
        }
    }
}

fn would_block(e: Errno) -> bool {
    e == Errno::EAGAIN || e == Errno::EACCES
}

fn to_flock(lk: &fuse_file_lock) -> SysResult<libc::flock> {
    let start = i64::try_from(lk.start).map_err(|_| Errno::EINVAL)?;
    let len = if lk.end >= OFFSET_MAX {
        0
    } else if lk.end < lk.start {
        return Err(Errno::EINVAL);
    } else {
        (lk.end - lk.start + 1) as i64
    };
    Ok(libc::flock {
        l_type: lk.typ as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: len,
        // OFD locks require 0.
        l_pid: 0,
    })
}

impl PassthroughFs {
    pub(crate) fn do_getlk(
        &self,
        ino: u64,
        fh: u64,
        lk: &fuse_file_lock,
    ) -> SysResult<fuse_file_lock> {
        let file = self.file(ino, fh)?;
        let mut fl = to_flock(lk)?;
        sys::fcntl_lock(file.fd.as_fd(), libc::F_OFD_GETLK, &mut fl)?;
        if fl.l_type == libc::F_UNLCK as libc::c_short {
            return Ok(fuse_file_lock {
                typ: libc::F_UNLCK as u32,
                ..*lk
            });
        }
        let start = fl.l_start.max(0) as u64;
        Ok(fuse_file_lock {
            start,
            end: if fl.l_len == 0 {
                OFFSET_MAX
            } else {
                start + fl.l_len as u64 - 1
            },
            typ: fl.l_type as u32,
            // -1 for an OFD lock (no owning process).
            pid: fl.l_pid.max(0) as u32,
        })
    }

    pub(crate) fn do_setlk(
        &self,
        unique: u64,
        ino: u64,
        fh: u64,
        lk: &fuse_file_lock,
        flock: bool,
        sleep: bool,
    ) -> SysResult<()> {
        let file = self.file(ino, fh)?;
        let fd = file.fd.as_fd();
        let try_once = || -> SysResult<()> {
            if flock {
                let op = match lk.typ as libc::c_int {
                    libc::F_RDLCK => libc::LOCK_SH,
                    libc::F_WRLCK => libc::LOCK_EX,
                    libc::F_UNLCK => libc::LOCK_UN,
                    _ => return Err(Errno::EINVAL),
                };
                sys::flock(fd, op | libc::LOCK_NB)
            } else {
                let mut fl = to_flock(lk)?;
                sys::fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl)
            }
        };
        let result = match try_once() {
            Err(e) if sleep && would_block(e) => self.wait_for_lock(unique, try_once),
            // flock's "would block" is EWOULDBLOCK (= EAGAIN), like fcntl's.
            other => other,
        };
        if result.is_ok() && !flock && lk.typ != libc::F_UNLCK as u32 {
            file.posix_locked.store(true, Ordering::Release);
        }
        result
    }

    fn wait_for_lock(&self, unique: u64, try_once: impl Fn() -> SysResult<()>) -> SysResult<()> {
        self.locks.register(unique)?;
        let mut delay = Duration::from_millis(1);
        let result = loop {
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
            if self.locks.interrupted(unique) || self.shutdown.load(Ordering::Acquire) {
                break Err(Errno::EINTR);
            }
            match try_once() {
                Err(e) if would_block(e) => continue,
                other => break other,
            }
        };
        self.locks.deregister(unique);
        result
    }
}
