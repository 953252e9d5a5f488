//! Native FUSE-over-io_uring: one ring per possible CPU, ring entries
//! committed and re-armed with one `COMMIT_AND_FETCH` each.
//!
//! # Queues and entries
//!
//! `start` creates one queue per possible CPU (the kernel routes a request
//! to the queue of the CPU its caller runs on). A queue is a thread pinned to
//! its CPU that owns an `IORING_SETUP_SQE128` ring with the `/dev/fuse` fd
//! registered as fixed file 0, and `depth` ring entries. Each entry has a
//! 288-byte header buffer and a payload buffer of
//! `max(8192, max_write, max_pages * 4096)` bytes, registered once with
//! `REGISTER` (an iovec array of two). From then on a CQE with result 0
//! means "a request is in this entry's buffers"; the queue dispatches it and
//! answers with `COMMIT_AND_FETCH`, which hands the reply over and re-arms
//! the entry in the same submission.
//!
//! # Buffers and the aliasing rule
//!
//! A queue's buffers come from one [`Region`]: `depth` header slots,
//! `depth` payload buffers, one staging buffer and one scratch buffer (for
//! READDIR packing), all sized at start. The kernel uses the same payload
//! buffer for the request's payload and for the reply, while the core hands
//! the filesystem `&[u8]` slices borrowed from that payload (names, WRITE
//! data) for the whole method call, during which the reply may be sent. So:
//!
//! - requests without payload (`payload_sz == 0`: READ, GETATTR, READDIR,
//!   OPEN, ...) are dispatched with an empty payload slice that does not
//!   point into the buffer; a reply sent during dispatch is written straight
//!   into the payload buffer (a READ's data lands there with one copy, or
//!   with one `pread` for a [`FileRange`]);
//! - requests with a payload (LOOKUP, CREATE, WRITE, SETXATTR, GETXATTR, ...)
//!   have a reply sent during dispatch written to the queue's staging buffer
//!   and copied into the payload buffer after the method returned. Replies to
//!   such requests are small (an entry, a `write_out`) except GETXATTR and
//!   IOCTL: the cost is one extra copy of those, and one staging buffer per
//!   queue (not per entry), which suffices because a queue dispatches one
//!   request at a time;
//! - the out-header and `payload_sz` are kept beside the entry and written
//!   into the header buffer only at commit, after dispatch returned, since
//!   the filesystem holds a reference to the in-header while it runs;
//! - a reply sent after dispatch returned (deferred, from any thread) finds
//!   no borrow left and goes straight into the payload buffer; the queue is
//!   told through a bitmask and its eventfd and commits it.
//!
//! Each entry's reply state sits behind its own mutex, which orders a reply
//! racing with the end of dispatch; the staging buffer belongs to the entry
//! being dispatched and is only touched under that entry's lock.
//!
//! # Teardown
//!
//! Unmount, abort and server death complete every entry the kernel holds
//! with `ENOTCONN` (or `ECANCELED`); such entries are dead and never
//! resubmitted. A queue thread ends when none of its entries is in the
//! kernel and either all are dead or a stop was requested; only then is the
//! region unmapped. If the kernel never gives entries back after a stop, the
//! region is leaked rather than freed under the kernel.

use crate::probe::{Unavailable, possible_cpus};
use crate::region::Region;
use crate::rw::RwEnd;
use crate::sqe;
use fuselage_core::abi::{fuse_out_header, fuse_uring_ent_in_out, fuse_uring_req_header};
use fuselage_core::{
    DeferredSink, DeferredVTable, Dispatched, Dispatcher, FileRange, Filesystem, Negotiated,
    OUT_HEADER_LEN, ReplySink,
};
use fuselage_linux::channel::Channel;
use fuselage_linux::sys::{CpuMask, page_size, pin_to, pread_full};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::cell::Cell;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

/// Default ring entries per queue.
pub const DEFAULT_DEPTH: usize = 8;
/// Default poll window of a native queue thread (the facade's
/// `UringConfig::poll`, `--poll-us`); see the adaptive rule of the queue threads. 50 µs
/// covers a caller's turnaround between two requests with room to spare and
/// is short next to a scheduler tick.
pub const DEFAULT_POLL: Duration = Duration::from_micros(50);
/// A wake that brings more completions than this is throughput-bound:
/// the queue thread sleeps rather than polls after serving it.
pub const POLL_BATCH_MAX: usize = 2;
/// Most ring entries per queue.
pub const MAX_DEPTH: usize = 256;

/// Bytes reserved per header buffer (288 used, padded for alignment).
const HEADER_STRIDE: usize = 512;
/// The kernel's `fuse_uring_req_header`: in/out header, op struct, entry.
const HEADER_LEN: usize = std::mem::size_of::<fuse_uring_req_header>();
const OP_IN_OFFSET: usize = std::mem::offset_of!(fuse_uring_req_header, op_in);
const ENT_IN_OUT_OFFSET: usize = std::mem::offset_of!(fuse_uring_req_header, ring_ent_in_out);

const WAKE_TAG: u64 = u64::MAX;
const CANCEL_TAG: u64 = u64::MAX - 1;
/// How long a stopped queue waits for the kernel to give entries back.
const STOP_GRACE: Duration = Duration::from_secs(2);

thread_local! {
    /// The queue whose thread this is (its `QueueShared` address), or 0.
    static CURRENT_QUEUE: Cell<usize> = const { Cell::new(0) };
}

/// Where an entry is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Submitted (REGISTER or COMMIT_AND_FETCH): the kernel owns the buffers.
    Kernel,
    /// A request is being dispatched: its payload may be borrowed.
    Dispatching,
    /// Answered during dispatch; committed when dispatch returns.
    Replied,
    /// Dispatch returned without an answer: a reply handle is held.
    Deferred,
    /// Answered after dispatch: waiting for the queue thread to commit.
    Ready,
    /// Completed with an error (teardown): never resubmitted.
    Dead,
}

/// The reply state of one ring entry.
#[derive(Debug)]
struct Slot {
    phase: Phase,
    commit_id: u64,
    has_payload: bool,
    error: i32,
    payload_sz: u32,
    staged: bool,
}

/// Byte layout of a queue's region.
#[derive(Debug, Clone, Copy)]
struct Layout {
    depth: usize,
    payload_size: usize,
    payloads: usize,
    staging: usize,
    scratch: usize,
    total: usize,
}

impl Layout {
    fn new(depth: usize, payload_size: usize) -> Layout {
        let page = page_size();
        let payload_size = payload_size.next_multiple_of(page);
        let payloads = (depth * HEADER_STRIDE).next_multiple_of(page);
        let staging = payloads + depth * payload_size;
        let scratch = staging + payload_size;
        let total = scratch + payload_size;
        Layout {
            depth,
            payload_size,
            payloads,
            staging,
            scratch,
            total,
        }
    }
    fn header(&self, i: usize) -> usize {
        i * HEADER_STRIDE
    }
    fn payload(&self, i: usize) -> usize {
        self.payloads + i * self.payload_size
    }
}

/// What a queue shares with the reply handles of its requests.
#[derive(Debug)]
pub(crate) struct QueueShared {
    qid: u16,
    layout: Layout,
    region: ManuallyDrop<Region>,
    /// Set when the kernel may still use the region: it is leaked then.
    leak: AtomicBool,
    slots: Box<[Mutex<Slot>]>,
    /// Entries answered after dispatch, waiting for a commit.
    ready: Box<[AtomicU64]>,
    wake: OwnedFd,
    stop: AtomicBool,
}

impl Drop for QueueShared {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; nothing uses the region after
        // the last `Arc<QueueShared>` is gone.
        let region = unsafe { ManuallyDrop::take(&mut self.region) };
        if self.leak.load(Ordering::Acquire) {
            region.leak();
        }
    }
}

impl QueueShared {
    fn slot(&self, i: usize) -> MutexGuard<'_, Slot> {
        // A panic while holding the lock leaves plain data behind: go on.
        self.slots[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn mark_ready(&self, i: usize) {
        self.ready[i / 64].fetch_or(1 << (i % 64), Ordering::AcqRel);
        if CURRENT_QUEUE.with(|c| c.get()) != self as *const QueueShared as usize {
            self.wake();
        }
    }

    /// Writes a reply for entry `i` (request `commit_id`) into the right
    /// buffer and advances the entry. See the module docs for the rules.
    fn reply(&self, i: usize, commit_id: u64, parts: &[&[u8]], file: Option<FileRange<'_>>) {
        let Some((head, body)) = parts.split_first() else {
            return;
        };
        let error = fuse_out_header::of_reply(&[head]).map_or(-libc::EIO, |h| h.error);
        let body_len: usize =
            body.iter().map(|p| p.len()).sum::<usize>() + file.map_or(0, |f| f.len as usize);
        self.answer(i, commit_id, error, body_len, |base| {
            let mut n = 0usize;
            for p in body {
                // SAFETY: `base` is valid for `body_len` bytes (`answer`'s
                // contract) and `n + p.len() <= body_len`. `copy` tolerates
                // overlap.
                unsafe { std::ptr::copy(p.as_ptr(), base.add(n), p.len()) };
                n += p.len();
            }
            if let Some(f) = file {
                // SAFETY: as above, `n + f.len <= body_len`, and nothing else
                // refers to these bytes while `write` runs.
                let dst = unsafe { std::slice::from_raw_parts_mut(base.add(n), f.len as usize) };
                // SAFETY: the range's descriptor is lent by the filesystem for
                // the reply call (FileRange's contract); only borrowed.
                let fd = unsafe { BorrowedFd::borrow_raw(f.fd.as_raw_fd()) };
                match pread_full(fd, dst, f.offset) {
                    Ok(got) => n += got,
                    Err(e) => return Err(-e.raw_os_error().unwrap_or(libc::EIO)),
                }
            }
            Ok(n)
        })
    }

    /// Answers entry `i` (request `commit_id`) with `error`, or, when it is
    /// 0, with the up to `body_len` bytes `write` puts at the pointer it
    /// gets (returning how many, or a negated errno), and advances the entry.
    fn answer(
        &self,
        i: usize,
        commit_id: u64,
        mut error: i32,
        body_len: usize,
        write: impl FnOnce(*mut u8) -> Result<usize, i32>,
    ) {
        let mut slot = self.slot(i);
        if slot.commit_id != commit_id {
            return; // a stale handle of an earlier request on this entry
        }
        let (offset, staged) = match slot.phase {
            Phase::Dispatching if slot.has_payload => (self.layout.staging, true),
            Phase::Dispatching | Phase::Deferred => (self.layout.payload(i), false),
            _ => return, // answered already, or the entry is dead
        };
        let cap = self.layout.payload_size;
        let mut n = 0usize;
        if error == 0 && body_len > cap {
            error = -libc::EIO;
        }
        if error == 0 {
            // `base..base+cap` is this reply's target buffer, which nothing
            // borrows now (module docs: the staging buffer belongs to the
            // entry being dispatched, a payload buffer with no live request
            // borrows to its entry) and which we hold exclusively through
            // the entry's lock; `write` stays within `body_len <= cap`.
            let base = self.region.at(offset, cap);
            match write(base) {
                Ok(got) => n = got.min(body_len),
                Err(e) => error = e,
            }
        }
        if error != 0 {
            n = 0;
        }
        slot.error = error;
        slot.payload_sz = n as u32;
        slot.staged = staged && n > 0;
        if slot.phase == Phase::Dispatching {
            slot.phase = Phase::Replied;
        } else {
            slot.phase = Phase::Ready;
            drop(slot);
            self.mark_ready(i);
        }
    }
}

/// The reply sink of a request that came through a FUSE ring entry.
///
/// `Send + Sync + 'static`: a filesystem that knows it runs on this
/// transport may move the reply handle to another thread and answer after
/// its method returned (a deferred reply); the entry is committed by its
/// queue thread then. Replies to a request that is no longer current (a
/// second answer, or after teardown) are ignored.
#[derive(Debug, Clone)]
pub struct RingReply {
    queue: Arc<QueueShared>,
    index: u32,
    commit_id: u64,
}

impl RingReply {
    /// The queue (CPU) index the request came through.
    pub fn qid(&self) -> u16 {
        self.queue.qid
    }
}

/// Deferred replies on the ring: the sink keeps its queue alive (an `Arc`
/// turned into a raw pointer) with the entry index and commit id in the two
/// words, and commits from whichever thread answers.
static DEFERRED_VTABLE: DeferredVTable = DeferredVTable {
    send: deferred_send,
    send_file: deferred_send_file,
    drop: deferred_drop,
};

/// Borrows the queue a deferred sink owns, without touching its count.
///
/// # Safety
/// `ptr` came from `Arc::<QueueShared>::into_raw` and is still owned by the
/// sink.
unsafe fn deferred_queue(ptr: *const ()) -> ManuallyDrop<Arc<QueueShared>> {
    // SAFETY: the caller guarantees a live `Arc::into_raw` pointer;
    // ManuallyDrop keeps this temporary from releasing the sink's count.
    ManuallyDrop::new(unsafe { Arc::from_raw(ptr as *const QueueShared) })
}

unsafe fn deferred_send(ptr: *const (), words: &[u64; 2], parts: &[&[u8]]) {
    // SAFETY: forwarded from the vtable contract (ptr alive until drop).
    let queue = unsafe { deferred_queue(ptr) };
    queue.reply(words[0] as usize, words[1], parts, None)
}

unsafe fn deferred_send_file(
    ptr: *const (),
    words: &[u64; 2],
    parts: &[&[u8]],
    file: FileRange<'_>,
) {
    // SAFETY: forwarded from the vtable contract (ptr alive until drop).
    let queue = unsafe { deferred_queue(ptr) };
    queue.reply(words[0] as usize, words[1], parts, Some(file))
}

unsafe fn deferred_drop(ptr: *const (), _: &[u64; 2]) {
    // SAFETY: `ptr` came from `Arc::into_raw` in `defer` and is released
    // exactly once, here.
    drop(unsafe { Arc::from_raw(ptr as *const QueueShared) });
}

impl ReplySink for RingReply {
    fn defer(&self) -> Option<DeferredSink> {
        let ptr = Arc::into_raw(Arc::clone(&self.queue)) as *const ();
        // SAFETY: the pointer owns one strong count until `deferred_drop`;
        // `QueueShared` is shared across threads already (RingReply is
        // `Send`), and `reply` ignores stale or second answers.
        Some(unsafe {
            DeferredSink::new(ptr, [self.index as u64, self.commit_id], &DEFERRED_VTABLE)
        })
    }

    fn send(&self, parts: &[&[u8]]) {
        self.queue
            .reply(self.index as usize, self.commit_id, parts, None)
    }

    /// Reads the range with `pread` straight into the ring entry's payload
    /// buffer: a ring entry cannot be the target of splice.
    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        self.queue
            .reply(self.index as usize, self.commit_id, parts, Some(file))
    }

    /// The ring entry's payload buffer.
    fn fill_capacity(&self) -> usize {
        self.queue.layout.payload_size
    }

    /// Lends the ring entry's payload buffer (or the queue's staging buffer
    /// while a request with a payload is dispatched) to `fill`: the data is
    /// written where the kernel takes it from, with no second copy.
    fn send_filled(
        &self,
        header: fuse_out_header,
        max: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, fuselage_core::Errno>,
    ) {
        let (i, id) = (self.index as usize, self.commit_id);
        self.queue.answer(i, id, header.error, max, |base| {
            // SAFETY: `answer` hands out `base` valid for `max` bytes, held
            // exclusively under the entry's lock; the region holds plain
            // initialised bytes (zeroed by mmap, written only with bytes).
            let buf = unsafe { std::slice::from_raw_parts_mut(base, max) };
            fill(buf).map_err(|e| -e.0)
        })
    }
}

/// A running set of native queues.
#[derive(Debug)]
pub struct NativeQueues {
    queues: Vec<Arc<QueueShared>>,
    threads: Vec<JoinHandle<()>>,
    /// Entries per queue.
    pub depth: usize,
}

impl NativeQueues {
    /// Number of queues (= possible CPUs).
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether there are no queues.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Serves the `/dev/fuse` side of the connection until it ends, then
    /// stops the queues: FORGET, BATCH_FORGET and INTERRUPT always come
    /// through `/dev/fuse`, as does whatever arrived before the rings were
    /// live. One thread reads them with a READ SQE in a small ring of its own
    /// on a cloned fd and answers in place, as uring-rw does (see
    /// [`rw::run`](crate::rw::run)), through the same `dispatcher` as the
    /// queues, so an INTERRUPT finds the request it names.
    pub fn serve_device<F: Filesystem + Send + Sync + 'static>(
        self,
        channel: &Arc<Channel>,
        dispatcher: &Arc<Dispatcher<F>>,
        neg: &Negotiated,
        splice: bool,
    ) -> io::Result<RwEnd> {
        let end = crate::rw::run(
            channel.clone(),
            dispatcher.clone(),
            neg,
            1,
            1,
            splice,
            false,
        );
        self.stop_and_join();
        end
    }

    /// Asks every queue to stop once the kernel has given its entries back,
    /// and waits for the queue threads.
    pub fn stop_and_join(self) {
        for q in &self.queues {
            q.stop.store(true, Ordering::Release);
            q.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The payload buffer size the kernel requires of a ring entry.
pub(crate) fn payload_size(neg: &Negotiated) -> usize {
    let pages = neg.max_pages.max(1) as usize * 4096;
    8192.max(neg.max_write as usize).max(pages)
}

/// Starts one queue per possible CPU on the FUSE device `fd`, after INIT
/// agreed `OVER_IO_URING`. Returns the queues (keep them: entries that did
/// register stay in the kernel until teardown) and whether every queue
/// registered.
pub fn start<F: Filesystem + Send + Sync + 'static>(
    fd: RawFd,
    dispatcher: &Arc<Dispatcher<F>>,
    neg: &Negotiated,
    depth: usize,
    poll: Duration,
) -> Result<(NativeQueues, Result<(), Unavailable>), Unavailable> {
    let errno = |e: io::Error| Unavailable::Setup(e.raw_os_error().unwrap_or(libc::EIO));
    let cpus = possible_cpus().map_err(errno)?;
    let depth = depth.clamp(1, MAX_DEPTH);
    let layout = Layout::new(depth, payload_size(neg));
    let mut queues = Vec::with_capacity(cpus.len());
    let mut threads = Vec::with_capacity(cpus.len());
    let (report_tx, report_rx) = mpsc::sync_channel::<Result<(), i32>>(cpus.len());
    let mut registered = Ok(());
    for (qid, &cpu) in cpus.iter().enumerate() {
        let shared = Arc::new(new_queue(qid as u16, layout).map_err(errno)?);
        let entries = ((depth + 2) as u32).next_power_of_two();
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(entries * 2)
            .build(entries)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) => Unavailable::NotPermitted,
                Some(libc::ENOSYS) => Unavailable::NoSys,
                Some(n) => Unavailable::Setup(n),
                None => Unavailable::Setup(libc::EIO),
            })?;
        ring.submitter().register_files(&[fd]).map_err(errno)?;
        let tx = report_tx.clone();
        let (q, d) = (shared.clone(), dispatcher.clone());
        let spawned = thread::Builder::new()
            .name(format!("fuselage-q{qid}"))
            .spawn(move || {
                // Built here: the iovec arrays hold raw pointers (not Send).
                let worker = QueueThread {
                    shared: q,
                    ring,
                    dispatcher: d,
                    iovecs: vec![[empty_iovec(); 2]; depth].into_boxed_slice(),
                    wake_buf: Box::new(0),
                    last_commit: vec![None; depth].into_boxed_slice(),
                    in_kernel: 0,
                    dead: 0,
                    wake_armed: false,
                    poll: Poller::new(poll),
                    affinity: Affinity::new(cpu),
                };
                worker.run(tx)
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                registered = Err(errno(e));
                break;
            }
        }
        queues.push(shared);
    }
    drop(report_tx);
    for _ in 0..threads.len() {
        match report_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if registered.is_ok() {
                    registered = Err(Unavailable::Register(e));
                }
            }
            Err(_) => {
                if registered.is_ok() {
                    registered = Err(Unavailable::Register(libc::EIO));
                }
            }
        }
    }
    Ok((
        NativeQueues {
            queues,
            threads,
            depth,
        },
        registered,
    ))
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn new_queue(qid: u16, layout: Layout) -> io::Result<QueueShared> {
    let region = Region::new(layout.total)?;
    // SAFETY: eventfd has no memory-safety preconditions; checked below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `efd` was just created and is owned by nobody else.
    let wake = unsafe { OwnedFd::from_raw_fd(efd) };
    let slots = (0..layout.depth)
        .map(|_| {
            Mutex::new(Slot {
                phase: Phase::Kernel,
                commit_id: 0,
                has_payload: false,
                error: 0,
                payload_sz: 0,
                staged: false,
            })
        })
        .collect();
    let ready = (0..layout.depth.div_ceil(64))
        .map(|_| AtomicU64::new(0))
        .collect();
    Ok(QueueShared {
        qid,
        layout,
        region: ManuallyDrop::new(region),
        leak: AtomicBool::new(false),
        slots,
        ready,
        wake,
        stop: AtomicBool::new(false),
    })
}

struct QueueThread<F> {
    shared: Arc<QueueShared>,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    dispatcher: Arc<Dispatcher<F>>,
    /// REGISTER iovec arrays, alive for the queue's life.
    iovecs: Box<[[libc::iovec; 2]]>,
    /// Where the eventfd READ lands.
    wake_buf: Box<u64>,
    /// The commit id of each entry's last COMMIT_AND_FETCH (None: REGISTER).
    last_commit: Box<[Option<u64>]>,
    in_kernel: usize,
    dead: usize,
    wake_armed: bool,
    /// Whether and how long to poll the ring before sleeping.
    poll: Poller,
    /// Where the thread runs: its CPU, or any while requests come in bulk.
    affinity: Affinity,
}

/// Where a queue thread runs. The kernel puts a request on the queue of the
/// CPU its caller runs on, and while requests come one or two at a time
/// the thread serves them best from that CPU (no cross-CPU wake-up: 4 KiB
/// QD1 reads 80k IOPS pinned, 44k not, unpinned caller). When one wake
/// brings more than [`POLL_BATCH_MAX`] requests, callers keep the queue
/// busy, and pinned the thread competes with them for their CPU while the
/// others may idle (4 KiB QD32 × 2 fio jobs on CPU 0 of 2: 104-129k IOPS
/// pinned, 247-263k not): it is released to every CPU the process may use,
/// and pinned again once no such batch came for [`REPIN_AFTER`].
struct Affinity {
    cpu: usize,
    /// The mask to release to: the thread's at start (the process's).
    all: Option<CpuMask>,
    pinned: bool,
    /// When the last batch of more than [`POLL_BATCH_MAX`] requests came.
    last_bulk: Instant,
}

/// How long a released queue thread stays released after its last bulk batch.
const REPIN_AFTER: Duration = Duration::from_millis(50);

impl Affinity {
    fn new(cpu: usize) -> Affinity {
        Affinity {
            cpu,
            all: None,
            pinned: false,
            last_bulk: Instant::now(),
        }
    }

    /// Pins the calling (queue) thread, remembering the mask it had.
    fn start(&mut self) {
        self.all = CpuMask::current().ok();
        // Best effort: unpinned, the queue still serves.
        self.pinned = pin_to(self.cpu).is_ok();
    }

    /// A batch of `served` requests was served at `now`.
    fn done(&mut self, now: Instant, served: usize) {
        if served > POLL_BATCH_MAX {
            self.last_bulk = now;
            if self.pinned
                && let Some(all) = &self.all
                && all.apply().is_ok()
            {
                self.pinned = false;
            }
        } else if !self.pinned
            && self.all.is_some()
            && now.duration_since(self.last_bulk) > REPIN_AFTER
        {
            self.pinned = pin_to(self.cpu).is_ok();
        }
    }
}

/// Adaptive polling of one queue: after serving requests, the queue thread
/// keeps looking at its ring (yielding the CPU between looks) for up to
/// `window` before it sleeps, but only while requests keep coming. A
/// sleeping thread costs a wakeup per request (on this project's 2-vCPU VM
/// 4 KiB QD1 reads went from 32k to 80k IOPS unpinned), so polling pays when
/// the next request comes soon. It is armed when a request comes within
/// [`ARM_GAP_WINDOWS`] windows of the end of the previous batch (an unpinned
/// caller moving between CPUs feeds each CPU's queue every other request, so
/// one window would miss it), stays armed while polling finds work, and
/// stops after a window without work until requests come close together
/// again. An idle mount therefore spins for at most one window after its
/// last request.
///
/// A `sched_yield` between two looks that kept the thread off the CPU for
/// more than [`YIELD_CONTENDED`] (a scheduler tick: the CPU is busy with
/// other work, as on a loaded build machine) ends polling for
/// [`CONTENDED_COOLDOWN`] wakes: there the spinning only delays the others.
///
/// Polling is also only for the latency-bound case: when one wake brought a
/// batch of more than [`POLL_BATCH_MAX`] requests, callers keep the queue
/// busy by themselves and a polling thread would only take CPU from them
/// (fixed 50 µs polling cost 17 % at QD32 with both CPUs saturated; adaptive
/// costs 3-9 %).
struct Poller {
    /// Longest look before sleeping; zero: never poll.
    window: Duration,
    /// Poll before the next sleep: the last request came within `window`.
    armed: bool,
    /// When the queue finished its last batch of requests.
    last_done: Instant,
    /// Wakes to sleep through without arming, after polling found the CPU
    /// busy with other work.
    cooldown: u8,
}

/// A `sched_yield` that kept the thread off the CPU longer than this (a
/// scheduler tick) ran other work: the CPU is busy, polling only delays it.
const YIELD_CONTENDED: Duration = Duration::from_millis(1);
/// A request that comes within this many windows of the previous batch arms polling.
const ARM_GAP_WINDOWS: u32 = 4;
/// Wakes a queue sleeps through after polling met a busy CPU.
const CONTENDED_COOLDOWN: u8 = 16;

/// How the queue thread waited for work.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// Found work while polling.
    Polled,
    /// Slept in the kernel (or stopped polling without work).
    Slept,
}

impl Poller {
    fn new(window: Duration) -> Poller {
        Poller {
            window,
            armed: false,
            last_done: Instant::now(),
            cooldown: 0,
        }
    }

    /// Polling met a CPU busy with other work: stop polling for a while.
    fn contended(&mut self) {
        self.armed = false;
        self.cooldown = CONTENDED_COOLDOWN;
    }

    /// Whether to poll before the next sleep.
    fn should_poll(&self) -> bool {
        self.armed && !self.window.is_zero()
    }

    /// After a wait that brought completions: keep polling while work comes
    /// within [`ARM_GAP_WINDOWS`] windows of the previous batch's end.
    fn woke(&mut self, how: Waited, now: Instant) {
        if self.cooldown > 0 {
            self.cooldown -= 1;
            self.armed = false;
            return;
        }
        self.armed = how == Waited::Polled
            || now.duration_since(self.last_done) <= self.window * ARM_GAP_WINDOWS;
    }

    /// The batch of `served` completions is served.
    fn done(&mut self, now: Instant, served: usize) {
        self.last_done = now;
        if served > POLL_BATCH_MAX {
            self.armed = false;
        }
    }
}

impl<F: Filesystem> QueueThread<F> {
    fn run(mut self, report: mpsc::SyncSender<Result<(), i32>>) {
        self.affinity.start();
        CURRENT_QUEUE.with(|c| c.set(Arc::as_ptr(&self.shared) as usize));
        for i in 0..self.shared.layout.depth {
            self.push_register(i);
        }
        self.arm_wake();
        let mut first_error = None;
        if let Err(e) = self.ring.submit() {
            first_error = Some(e.raw_os_error().unwrap_or(libc::EIO));
        }
        // Registration errors complete at once; anything else is a request.
        let mut batch = [(0u64, 0i32); 64];
        let n = self.reap(&mut batch);
        for &(tag, res) in &batch[..n] {
            if tag < WAKE_TAG - 1 && res < 0 && first_error.is_none() {
                first_error = Some(-res);
            }
        }
        let _ = report.send(first_error.map_or(Ok(()), Err));
        drop(report);
        for &(tag, res) in &batch[..n] {
            self.complete(tag, res);
        }
        self.process_ready();
        self.serve();
        self.finish();
    }

    fn serve(&mut self) {
        let mut batch = [(0u64, 0i32); 64];
        let mut stop_since: Option<Instant> = None;
        loop {
            let stopping = self.shared.stop.load(Ordering::Acquire);
            let live = self.shared.layout.depth - self.dead;
            if self.in_kernel == 0 && (live == 0 || stopping) {
                return;
            }
            let waited = if stopping {
                let since = *stop_since.get_or_insert_with(Instant::now);
                if since.elapsed() > STOP_GRACE {
                    // The kernel kept entries past a stop: never free the
                    // region under it.
                    self.shared.leak.store(true, Ordering::Release);
                    return;
                }
                let ts = types::Timespec::new().nsec(100_000_000);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring
                    .submitter()
                    .submit_with_args(1, &args)
                    .map(|_| Waited::Slept)
            } else if self.poll.should_poll() {
                self.poll_then_wait()
            } else {
                self.ring.submit_and_wait(1).map(|_| Waited::Slept)
            };
            let how = match waited {
                Ok(how) => how,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) | Some(libc::ETIME) | Some(libc::EBUSY) => Waited::Slept,
                    _ => {
                        log_error("io_uring_enter", &e);
                        self.shared.leak.store(true, Ordering::Release);
                        return;
                    }
                },
            };
            let mut served = 0;
            loop {
                let n = self.reap(&mut batch);
                if served == 0 && n > 0 {
                    self.poll.woke(how, Instant::now());
                }
                served += n;
                for &(tag, res) in &batch[..n] {
                    self.complete(tag, res);
                }
                self.process_ready();
                if n < batch.len() {
                    break;
                }
            }
            if served > 0 {
                let now = Instant::now();
                self.poll.done(now, served);
                self.affinity.done(now, served);
            }
        }
    }

    /// Submits what is queued (commits), then polls the completion queue
    /// for up to the poll window, yielding the CPU between looks, before
    /// sleeping in the kernel. New requests reach the ring as task work,
    /// which the kernel runs on the way back from each `sched_yield`.
    fn poll_then_wait(&mut self) -> io::Result<Waited> {
        self.ring.submit()?;
        let deadline = Instant::now() + self.poll.window;
        loop {
            if !self.ring.completion().is_empty() {
                return Ok(Waited::Polled);
            }
            let now = Instant::now();
            if now >= deadline {
                return self.ring.submit_and_wait(1).map(|_| Waited::Slept);
            }
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
            if now.elapsed() > YIELD_CONTENDED && self.ring.completion().is_empty() {
                self.poll.contended();
                return self.ring.submit_and_wait(1).map(|_| Waited::Slept);
            }
        }
    }

    /// Cancels the eventfd read so nothing is left in flight that could
    /// write into our memory, then lets the ring go.
    fn finish(&mut self) {
        if self.wake_armed {
            let cancel = opcode::AsyncCancel::new(WAKE_TAG)
                .build()
                .user_data(CANCEL_TAG)
                .into();
            self.push(&cancel);
            let deadline = Instant::now() + STOP_GRACE;
            let mut batch = [(0u64, 0i32); 64];
            while self.wake_armed && Instant::now() < deadline {
                let ts = types::Timespec::new().nsec(50_000_000);
                let args = types::SubmitArgs::new().timespec(&ts);
                let _ = self.ring.submitter().submit_with_args(1, &args);
                let n = self.reap(&mut batch);
                for &(tag, _) in &batch[..n] {
                    if tag == WAKE_TAG {
                        self.wake_armed = false;
                    }
                }
            }
            if self.wake_armed {
                // The read may still land in `wake_buf`: keep it forever.
                std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
            }
        }
        CURRENT_QUEUE.with(|c| c.set(0));
    }

    /// Copies completions out of the CQ (result, user_data).
    fn reap(&mut self, out: &mut [(u64, i32)]) -> usize {
        let mut n = 0;
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            out[n] = (cqe.user_data(), cqe.result());
            n += 1;
            if n == out.len() {
                break;
            }
        }
        n
    }

    fn push(&mut self, e: &squeue::Entry128) {
        loop {
            // SAFETY: every pointer an entry carries (iovec arrays, the wake
            // buffer) lives in `self` or the queue region until the entry
            // completes; `finish` and the region's leak flag uphold that.
            let pushed = unsafe { self.ring.submission().push(e) };
            if pushed.is_ok() {
                return;
            }
            if let Err(err) = self.ring.submit()
                && err.raw_os_error() != Some(libc::EBUSY)
            {
                log_error("io_uring_enter", &err);
            }
        }
    }

    fn push_register(&mut self, i: usize) {
        let l = self.shared.layout;
        self.iovecs[i] = [
            libc::iovec {
                iov_base: self.shared.region.at(l.header(i), HEADER_LEN).cast(),
                iov_len: HEADER_LEN,
            },
            libc::iovec {
                iov_base: self.shared.region.at(l.payload(i), l.payload_size).cast(),
                iov_len: l.payload_size,
            },
        ];
        let e = sqe::register(
            types::Fixed(0),
            self.shared.qid,
            self.iovecs[i].as_ptr(),
            i as u64,
        );
        self.last_commit[i] = None;
        self.shared.slot(i).phase = Phase::Kernel;
        self.push(&e);
        self.in_kernel += 1;
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let e = opcode::Read::new(types::Fd(self.shared.wake.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(WAKE_TAG)
            .into();
        self.push(&e);
        self.wake_armed = true;
    }

    fn complete(&mut self, tag: u64, res: i32) {
        match tag {
            WAKE_TAG => {
                self.wake_armed = false;
                if !self.shared.stop.load(Ordering::Acquire) {
                    self.arm_wake();
                }
            }
            CANCEL_TAG => {}
            i => self.complete_entry(i as usize, res),
        }
    }

    fn complete_entry(&mut self, i: usize, res: i32) {
        if i >= self.shared.layout.depth {
            return;
        }
        self.in_kernel -= 1;
        if res == 0 {
            self.dispatch(i);
            return;
        }
        match -res {
            libc::EAGAIN | libc::EINTR => self.resubmit(i),
            // The kernel no longer knows the request we answered (it ended
            // meanwhile) and did not re-arm the entry: register it again.
            libc::ENOENT if self.last_commit[i].is_some() => self.push_register(i),
            errno => {
                if !matches!(
                    errno,
                    libc::ENOTCONN | libc::ECANCELED | libc::ECONNABORTED | libc::ENODEV
                ) {
                    log_error("FUSE ring entry", &io::Error::from_raw_os_error(errno));
                }
                self.shared.slot(i).phase = Phase::Dead;
                self.dead += 1;
            }
        }
    }

    fn resubmit(&mut self, i: usize) {
        match self.last_commit[i] {
            None => self.push_register(i),
            Some(id) => {
                let e = sqe::commit_and_fetch(types::Fixed(0), self.shared.qid, id, i as u64);
                self.shared.slot(i).phase = Phase::Kernel;
                self.push(&e);
                self.in_kernel += 1;
            }
        }
    }

    fn dispatch(&mut self, i: usize) {
        let l = self.shared.layout;
        let hdr = self.shared.region.at(l.header(i), HEADER_LEN);
        // SAFETY: the kernel completed this entry's command, so it is done
        // writing the header buffer until we submit again; the struct is
        // plain integers at an 8-aligned offset of a page-aligned region.
        let ent: fuse_uring_ent_in_out = unsafe {
            hdr.add(ENT_IN_OUT_OFFSET)
                .cast::<fuse_uring_ent_in_out>()
                .read()
        };
        let psz = (ent.payload_sz as usize).min(l.payload_size);
        {
            let mut s = self.shared.slot(i);
            s.phase = Phase::Dispatching;
            s.commit_id = ent.commit_id;
            s.has_payload = psz > 0;
            s.error = 0;
            s.payload_sz = 0;
            s.staged = false;
        }
        let outcome = {
            // SAFETY: userspace owns this entry's buffers until the next
            // submission (below, after these borrows end). The header
            // buffer is only written at commit; the payload buffer is only
            // written during dispatch when it is not lent out (`psz == 0`
            // passes an empty slice that does not point into it), otherwise
            // replies go to the staging buffer. The scratch buffer belongs
            // to this queue thread alone.
            let (header, op_in, payload, scratch) = unsafe {
                (
                    std::slice::from_raw_parts(hdr, OP_IN_OFFSET),
                    std::slice::from_raw_parts(hdr.add(OP_IN_OFFSET), OP_IN_OFFSET),
                    if psz > 0 {
                        std::slice::from_raw_parts(
                            self.shared.region.at(l.payload(i), psz).cast_const(),
                            psz,
                        )
                    } else {
                        &[][..]
                    },
                    std::slice::from_raw_parts_mut(
                        self.shared.region.at(l.scratch, l.payload_size),
                        l.payload_size,
                    ),
                )
            };
            let sink = RingReply {
                queue: self.shared.clone(),
                index: i as u32,
                commit_id: ent.commit_id,
            };
            let dispatcher = &self.dispatcher;
            fuselage_linux::panic::guarded(header, || {
                dispatcher.dispatch_segments(header, op_in, payload, sink, scratch)
            })
        };
        fuselage_linux::bad_input::report(&outcome);
        let mut s = self.shared.slot(i);
        match s.phase {
            Phase::Replied => {
                drop(s);
                self.commit(i);
            }
            Phase::Dispatching => {
                let may_defer = matches!(outcome, Dispatched::Handled(op) if !op.is_no_reply());
                if may_defer {
                    s.phase = Phase::Deferred;
                } else {
                    // Nothing will ever answer (a message the core dropped):
                    // answer EIO so the entry comes back.
                    s.error = -libc::EIO;
                    s.payload_sz = 0;
                    s.staged = false;
                    s.phase = Phase::Replied;
                    drop(s);
                    self.commit(i);
                }
            }
            _ => {}
        }
    }

    /// Hands entry `i`'s reply to the kernel and re-arms it.
    fn commit(&mut self, i: usize) {
        let l = self.shared.layout;
        let mut s = self.shared.slot(i);
        if !matches!(s.phase, Phase::Replied | Phase::Ready) {
            return;
        }
        let n = s.payload_sz as usize;
        let hdr = self.shared.region.at(l.header(i), HEADER_LEN);
        let out = fuse_out_header {
            len: (OUT_HEADER_LEN + n) as u32,
            error: s.error,
            unique: s.commit_id,
        };
        let ent = fuse_uring_ent_in_out {
            flags: 0,
            commit_id: s.commit_id,
            payload_sz: n as u32,
            padding: 0,
            reserved: 0,
        };
        // SAFETY: dispatch has returned, so no borrow of this entry's header
        // or payload buffer is alive, and the kernel does not use them until
        // the submission below; staging holds this entry's reply (it was
        // answered during its own dispatch, the last one on this queue).
        // All ranges are inside the region and do not overlap.
        unsafe {
            if s.staged {
                std::ptr::copy_nonoverlapping(
                    self.shared.region.at(l.staging, n),
                    self.shared.region.at(l.payload(i), n),
                    n,
                );
            }
            std::ptr::copy_nonoverlapping(out.as_bytes().as_ptr(), hdr, OUT_HEADER_LEN);
            std::ptr::copy_nonoverlapping(
                ent.as_bytes().as_ptr(),
                hdr.add(ENT_IN_OUT_OFFSET),
                std::mem::size_of::<fuse_uring_ent_in_out>(),
            );
        }
        s.phase = Phase::Kernel;
        s.staged = false;
        let id = s.commit_id;
        drop(s);
        self.last_commit[i] = Some(id);
        let e = sqe::commit_and_fetch(types::Fixed(0), self.shared.qid, id, i as u64);
        self.push(&e);
        self.in_kernel += 1;
    }

    /// Commits the entries answered after their dispatch.
    fn process_ready(&mut self) {
        for w in 0..self.shared.ready.len() {
            let mut bits = self.shared.ready[w].swap(0, Ordering::AcqRel);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.commit(w * 64 + b);
            }
        }
    }
}

#[cold]
fn log_error(what: &str, e: &io::Error) {
    eprintln!("fuselage: io_uring queue: {what}: {e}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_follows_the_arrival_of_requests() {
        let window = Duration::from_micros(50);
        let t0 = Instant::now();
        let mut p = Poller::new(window);
        assert!(!p.should_poll(), "a fresh queue sleeps");
        // The first request after a long sleep: still sleep next time.
        p.done(t0, 1);
        p.woke(Waited::Slept, t0 + Duration::from_millis(10));
        assert!(!p.should_poll(), "an idle mount never polls");
        // A request that follows the last one within the window arms it.
        p.done(t0 + Duration::from_millis(10), 1);
        p.woke(
            Waited::Slept,
            t0 + Duration::from_millis(10) + Duration::from_micros(20),
        );
        assert!(p.should_poll(), "back-to-back requests poll");
        // Found work while polling: keep polling.
        p.done(t0 + Duration::from_millis(11), 1);
        p.woke(Waited::Polled, t0 + Duration::from_millis(12));
        assert!(p.should_poll());
        // A window without work, then a late request: sleep at once again.
        p.done(t0 + Duration::from_millis(12), 1);
        p.woke(Waited::Slept, t0 + Duration::from_millis(20));
        assert!(!p.should_poll(), "polling stops after an empty window");
        // A large batch is throughput-bound: no polling after it.
        p.woke(Waited::Polled, t0 + Duration::from_millis(21));
        assert!(p.should_poll());
        p.done(t0 + Duration::from_millis(21), POLL_BATCH_MAX + 1);
        assert!(!p.should_poll(), "a large batch sleeps");
        // Polling met a busy CPU: sleep through the next wakes.
        p.woke(Waited::Polled, t0 + Duration::from_millis(22));
        assert!(p.should_poll());
        p.contended();
        for i in 0..CONTENDED_COOLDOWN {
            p.woke(Waited::Polled, t0 + Duration::from_millis(23));
            assert!(!p.should_poll(), "cooling down at wake {i}");
        }
        p.woke(Waited::Polled, t0 + Duration::from_millis(24));
        assert!(p.should_poll(), "polls again after the cooldown");
        // Zero window: never.
        let mut off = Poller::new(Duration::ZERO);
        off.woke(Waited::Polled, t0);
        assert!(!off.should_poll());
    }

    #[test]
    fn a_queue_thread_is_released_under_bulk_and_pinned_again() {
        // In a thread of its own: the test harness's thread keeps its mask.
        std::thread::spawn(|| {
            let all = CpuMask::current().expect("the affinity mask");
            let cpu = fuselage_linux::sys::online_cpu(0).unwrap_or(0);
            let mut a = Affinity::new(cpu);
            a.start();
            assert!(a.pinned);
            assert_eq!(CpuMask::current().unwrap().len(), 1, "pinned to its CPU");
            let t0 = Instant::now();
            a.done(t0, POLL_BATCH_MAX);
            assert!(a.pinned, "small batches keep it pinned");
            a.done(t0, POLL_BATCH_MAX + 1);
            assert!(!a.pinned, "a bulk batch releases it");
            assert_eq!(
                CpuMask::current().unwrap().len(),
                all.len(),
                "released to all"
            );
            a.done(t0 + REPIN_AFTER / 2, 1);
            assert!(!a.pinned, "released for a while after the bulk");
            a.done(t0 + REPIN_AFTER / 2, POLL_BATCH_MAX + 1);
            a.done(t0 + REPIN_AFTER, 1);
            assert!(!a.pinned, "a new bulk batch extends it");
            a.done(
                t0 + REPIN_AFTER / 2 + REPIN_AFTER + Duration::from_millis(1),
                1,
            );
            assert!(a.pinned, "pinned again after a quiet spell");
            assert_eq!(CpuMask::current().unwrap().len(), 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn layout_is_aligned_and_disjoint() {
        let l = Layout::new(8, 1 << 20);
        assert_eq!(l.payloads % page_size(), 0);
        assert!(l.header(7) + HEADER_LEN <= l.payloads);
        assert_eq!(l.payload(1) - l.payload(0), 1 << 20);
        assert_eq!(l.staging, l.payload(7) + (1 << 20));
        assert_eq!(l.total, l.scratch + (1 << 20));
        assert_eq!(HEADER_STRIDE % 8, 0);
    }

    #[test]
    fn payload_size_follows_the_kernel_rule() {
        let mut neg = fuselage_core::Negotiated {
            major: 7,
            minor: 45,
            flags: fuselage_core::InitFlags::empty(),
            kernel_flags: fuselage_core::InitFlags::empty(),
            max_write: 4096,
            max_read: 4096,
            max_pages: 1,
            max_readahead: 0,
            max_stack_depth: 0,
            max_background: 0,
            congestion_threshold: 0,
            time_gran: 1,
            request_timeout: 0,
        };
        assert_eq!(payload_size(&neg), 8192);
        neg.max_pages = 256;
        assert_eq!(payload_size(&neg), 1 << 20);
        neg.max_write = 2 << 20;
        assert_eq!(payload_size(&neg), 2 << 20);
    }
}
