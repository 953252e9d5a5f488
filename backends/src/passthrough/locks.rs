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
//!
//! Where the transport can answer later (`defer`: native io_uring, the
//! blocking transport), the wait leaves the worker altogether: one
//! `fuselage-locks` thread, started on the first wait, retries every
//! pending wait with its own back-off and answers each through its deferred
//! reply. This matters most for native io_uring, whose one queue per CPU
//! would otherwise stop serving that CPU for the whole wait, including the
//! holder's unlock when the holder runs on the same CPU: a deadlock. The
//! same limit, interrupt and teardown rules apply; the thread ends when the
//! filesystem is dropped.

use super::PassthroughFs;
use super::inode_store::lock;
use super::open_file::OpenFile;
use super::sys::{self, SysResult};
use fuselage_core::abi::fuse_file_lock;
use fuselage_core::reply::{DeferredSink, ReplyEmpty};
use fuselage_core::{Errno, ReplySink};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The protocol's "to the end of the file" (`OFFSET_MAX`).
const OFFSET_MAX: u64 = i64::MAX as u64;

/// Requests waiting for a lock, by unique, with an "interrupted" mark.
#[derive(Debug)]
pub(crate) struct LockWaiters {
    max: usize,
    waiting: Mutex<Vec<(u64, bool)>>,
    /// The filesystem is torn down: pending waits end with `EINTR`.
    closed: AtomicBool,
}

impl LockWaiters {
    /// At most `max` waiters at once.
    pub(crate) fn new(max: usize) -> LockWaiters {
        LockWaiters {
            max,
            waiting: Mutex::new(Vec::with_capacity(max)),
            closed: AtomicBool::new(false),
        }
    }

    /// Ends every wait (DESTROY).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
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

/// One attempt at a lock, never blocking.
fn try_lock(fd: BorrowedFd<'_>, lk: &fuse_file_lock, flock: bool) -> SysResult<()> {
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
}

/// Marks `file` as holding POSIX locks after a successful `lk` (FLUSH then
/// unlocks it).
fn note_locked(file: &OpenFile, lk: &fuse_file_lock, flock: bool) {
    if !flock && lk.typ != libc::F_UNLCK as u32 {
        file.posix_locked.store(true, Ordering::Release);
    }
}

/// A lock wait handed to the lock thread.
struct DeferredWait {
    unique: u64,
    file: Arc<OpenFile>,
    lk: fuse_file_lock,
    flock: bool,
    reply: ReplyEmpty<DeferredSink>,
    delay: Duration,
    next: Instant,
}

/// The `fuselage-locks` thread: waits handed over by [`PassthroughFs`]
/// when the transport can defer. Dropping it ends the thread (pending waits
/// are answered `EINTR`) and joins it.
#[derive(Debug)]
pub(crate) struct LockThread {
    tx: Option<SyncSender<DeferredWait>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DeferredWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredWait")
            .field("unique", &self.unique)
            .finish()
    }
}

impl LockThread {
    /// Starts the thread; `None` if it cannot be started (waits then stay
    /// on the workers).
    pub(crate) fn start(waiters: Arc<LockWaiters>) -> Option<LockThread> {
        // Every wait registers first, so at most `max` are ever queued.
        let (tx, rx) = std::sync::mpsc::sync_channel(waiters.max.max(1));
        let thread = std::thread::Builder::new()
            .name("fuselage-locks".into())
            .spawn(move || lock_thread(&waiters, &rx))
            .ok()?;
        Some(LockThread {
            tx: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for LockThread {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock_thread(waiters: &LockWaiters, rx: &Receiver<DeferredWait>) {
    let mut pending: Vec<DeferredWait> = Vec::with_capacity(waiters.max);
    let mut open = true;
    while open || !pending.is_empty() {
        let next = pending.iter().map(|w| w.next).min();
        let received = match next {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match received {
            Ok(w) => pending.push(w),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            let w = &mut pending[i];
            let outcome = if !open || waiters.is_closed() || waiters.interrupted(w.unique) {
                Some(Err(Errno::EINTR))
            } else if w.next > now {
                None
            } else {
                match try_lock(w.file.fd.as_fd(), &w.lk, w.flock) {
                    Err(e) if would_block(e) => {
                        w.delay = (w.delay * 2).min(Duration::from_millis(50));
                        w.next = now + w.delay;
                        None
                    }
                    other => Some(other),
                }
            };
            match outcome {
                None => i += 1,
                Some(result) => {
                    let w = pending.swap_remove(i);
                    waiters.deregister(w.unique);
                    match result {
                        Ok(()) => {
                            note_locked(&w.file, &w.lk, w.flock);
                            w.reply.ok()
                        }
                        Err(e) => w.reply.error(e),
                    }
                }
            }
        }
    }
}

impl PassthroughFs {
    /// SETLK and SETLKW (POSIX locks and, with `flock`, flock(2) locks):
    /// answered at once, or, for a wait, by the lock thread when the
    /// transport can defer, else on this worker.
    pub(crate) fn setlk_reply<S: ReplySink>(
        &self,
        unique: u64,
        ino: u64,
        fh: u64,
        lk: &fuse_file_lock,
        (flock, sleep): (bool, bool),
        reply: ReplyEmpty<S>,
    ) {
        let file = match self.file(ino, fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let first = try_lock(file.fd.as_fd(), lk, flock);
        let reply = match first {
            Err(e) if sleep && would_block(e) => reply,
            Ok(()) => {
                note_locked(&file, lk, flock);
                return reply.ok();
            }
            Err(e) => return reply.error(e),
        };
        let thread = self
            .lock_thread
            .get_or_init(|| LockThread::start(self.locks.clone()));
        let Some(tx) = thread.as_ref().and_then(|t| t.tx.as_ref()) else {
            return self.wait_here(unique, &file, lk, flock, reply);
        };
        let deferred = match reply.defer() {
            Ok(d) => d,
            Err(reply) => return self.wait_here(unique, &file, lk, flock, reply),
        };
        if let Err(e) = self.locks.register(unique) {
            return deferred.error(e);
        }
        let delay = Duration::from_millis(1);
        let wait = DeferredWait {
            unique,
            file,
            lk: *lk,
            flock,
            reply: deferred,
            delay,
            next: Instant::now() + delay,
        };
        if let Err(TrySendError::Full(w) | TrySendError::Disconnected(w)) = tx.try_send(wait) {
            self.locks.deregister(w.unique);
            w.reply.error(Errno::EDEADLK);
        }
    }

    /// A wait on this worker (the transport cannot defer).
    fn wait_here<S: ReplySink>(
        &self,
        unique: u64,
        file: &OpenFile,
        lk: &fuse_file_lock,
        flock: bool,
        reply: ReplyEmpty<S>,
    ) {
        let fd = file.fd.as_fd();
        match self.wait_for_lock(unique, || try_lock(fd, lk, flock)) {
            Ok(()) => {
                note_locked(file, lk, flock);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

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
