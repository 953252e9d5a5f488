//! `uring-rw`: io_uring READ/WRITEV on `/dev/fuse`, for kernels without
//! (or with disabled) FUSE-over-io_uring.
//!
//! Each of `threads` worker threads owns a ring (64-byte SQEs), a `/dev/fuse`
//! fd of its own (`FUSE_DEV_IOC_CLONE`, made non-blocking so a READ with no
//! request waiting parks on the ring's poll instead of an io-wq thread; the
//! shared session fd, made non-blocking too for as long as they run, when
//! cloning fails: see `SharedNonblocking`) registered as fixed
//! file 0, and `depth` request buffers with a READ in flight on each. With
//! `cpu_local` (the default) and cloned fds, thread i is pinned to the i-th
//! CPU the process may use: a new request wakes the READs of every thread,
//! and the one on the caller's CPU, woken without an inter-processor
//! interrupt, usually takes it (4 KiB QD1 reads 33k -> 55k IOPS unpinned on
//! 2 vCPUs; see BENCHMARKS.md).
//!
//! A completed READ is dispatched from its buffer; the reply goes out as a
//! WRITEV SQE whose iovecs point at the reply's parts, submitted together
//! with any re-armed READs and waited for before the sink returns, so the
//! parts need no copy and never outlive their borrow. Completions of other
//! READs that arrive meanwhile are parked in a fixed queue and served next.
//!
//! File-range replies of two pages or more go through a per-thread pipe:
//! the header is written into it, then one IORING_OP_SPLICE moves the range
//! from the file into the pipe, linked to a second that moves the whole,
//! exactly sized reply into `/dev/fuse`. If the file is shorter than
//! promised, the second splice is cancelled, the pipe drained, and the
//! reply sent by copy (pread into a per-thread buffer, header fixed).
//!
//! Everything is allocated when a thread starts; a request allocates
//! nothing. The sink borrows the thread's state, so replies are sent before
//! the filesystem method returns (as with the blocking transport).

use crate::region::Region;
use fuselage_core::abi::fuse_out_header;
use fuselage_core::{
    Dispatched, Dispatcher, FileRange, Filesystem, MAX_SINK_PARTS, Negotiated, ReplySink,
};
use fuselage_linux::channel::{Channel, ChannelKind};
use fuselage_linux::sys::{
    grow_pipe, online_cpu, pin_to, pipe_nonblocking, pread_full, set_nonblocking,
};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use zerocopy::IntoBytes;

/// Default READs in flight per thread.
pub const DEFAULT_RW_DEPTH: usize = 2;
/// Replies with file data of at least this many bytes are spliced.
pub const SPLICE_MIN: usize = 8192;

const REPLY_TAG: u64 = 1 << 62;
const SPLICE_IN_TAG: u64 = REPLY_TAG + 1;
const SPLICE_OUT_TAG: u64 = REPLY_TAG + 2;
/// The cancellation of a thread's other READs before a lock wait.
const SHED_TAG: u64 = REPLY_TAG + 3;
/// `FUSE_SETLKW`: a request the backend may hold for as long as another
/// process holds a lock.
const FUSE_SETLKW: u32 = 33;

/// How a uring-rw session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RwEnd {
    /// The connection is gone (ENODEV): unmounted or aborted.
    Unmounted,
    /// The kernel sent DESTROY.
    Destroyed,
}

/// Serves the connection of `channel` (INIT already answered) with
/// `threads` ring threads, each with `depth` READs in flight (`splice`:
/// send large file-range replies by splice; `cpu_local`: pin thread i to
/// the i-th CPU, see the module docs).
pub fn run<F: Filesystem + Send + Sync + 'static>(
    channel: Arc<Channel>,
    dispatcher: Arc<Dispatcher<F>>,
    neg: &Negotiated,
    threads: usize,
    depth: usize,
    splice: bool,
    cpu_local: bool,
) -> io::Result<RwEnd> {
    let threads = threads.max(1);
    let depth = depth.clamp(1, 64);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(threads);
    // Put back on return, after every thread ended (declared before them).
    let mut shared_nonblocking: Option<SharedNonblocking> = None;
    for i in 0..threads {
        // Own fds when the device can be opened again; else the shared one.
        let fd = match channel.clone_device() {
            Ok(c) => {
                let fd = c.into_fd();
                set_nonblocking(fd.as_fd())?;
                Some(fd)
            }
            Err(_) => {
                if shared_nonblocking.is_none() {
                    shared_nonblocking = Some(SharedNonblocking::set(&channel)?);
                }
                None
            }
        };
        // With a fd of its own, thread i serves the i-th CPU: READs of all
        // threads wait on the same kernel queue, and the one on the caller's
        // CPU usually takes the request (no cross-CPU wake-up).
        let cpu = if cpu_local && fd.is_some() {
            online_cpu(i)
        } else {
            None
        };
        let (channel, dispatcher, neg, stop) =
            (channel.clone(), dispatcher.clone(), *neg, stop.clone());
        workers.push(
            thread::Builder::new()
                .name(format!("fuselage-rw{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        // Best effort: unpinned, the thread still serves.
                        let _ = pin_to(cpu);
                    }
                    // Built here: the ring context holds raw iovec pointers.
                    RwThread::new(fd, &channel, dispatcher, &neg, depth, splice, stop)?.run()
                })?,
        );
    }
    let mut end = Ok(RwEnd::Unmounted);
    for w in workers {
        match w.join() {
            Ok(Ok(RwEnd::Destroyed)) => {
                if end.is_ok() {
                    end = Ok(RwEnd::Destroyed)
                }
            }
            Ok(Ok(RwEnd::Unmounted)) => {}
            Ok(Err(e)) => end = Err(e),
            Err(_) => end = Err(io::Error::other("a uring-rw thread panicked")),
        }
    }
    end
}

/// A non-blocking pipe for spliced replies.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    fn new(capacity: usize) -> io::Result<Pipe> {
        let (read, write) = pipe_nonblocking()?;
        let want = capacity.next_power_of_two();
        let set = grow_pipe(write.as_fd(), want)?;
        Ok(Pipe {
            read,
            write,
            size: set,
        })
    }

    /// Whether a reply of `header` bytes plus `len` bytes from `offset` fits.
    fn fits(&self, header: usize, offset: u64, len: usize) -> bool {
        let page = 4096;
        let pages = ((offset % page as u64) as usize + len).div_ceil(page) + 1;
        header <= page && pages * page <= self.size
    }

    /// Empties the pipe after an abandoned reply.
    fn drain(&self) {
        let mut scratch = [0u8; 4096];
        loop {
            // SAFETY: `scratch` is valid for writes of its length.
            let n = unsafe {
                libc::read(
                    self.read.as_raw_fd(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                )
            };
            if n <= 0 {
                return;
            }
        }
    }
}

/// The state a thread's sink needs: the ring and reply resources.
struct RingCtx {
    ring: IoUring<squeue::Entry, cqueue::Entry>,
    /// Completions that arrived while a reply was waited for.
    parked: VecDeque<(u64, i32)>,
    /// Room for the most parts a reply has (the core's one limit).
    iov: [libc::iovec; MAX_SINK_PARTS],
    pipe: Option<Pipe>,
    /// For file replies sent by copy: max_read bytes.
    copy: Region,
}

impl RingCtx {
    fn push(&mut self, e: &squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry names (request buffers, iovec
            // arrays, parts borrowed for a reply) outlives the entry: READ
            // buffers live in the thread's region until the thread ends,
            // which only happens once no READ is in flight; replies are
            // waited for before the borrowed parts go away.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }

    /// Submits and waits until a completion tagged `tag` arrives; others are
    /// parked. Returns its result.
    fn wait_for(&mut self, tag: u64) -> i32 {
        // A batch may already have brought it (linked SQEs complete together).
        if let Some(at) = self.parked.iter().position(|&(t, _)| t == tag)
            && let Some((_, r)) = self.parked.remove(at)
        {
            return r;
        }
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
                Err(_) => return -libc::EIO,
            }
            let mut found = None;
            let mut cq = self.ring.completion();
            cq.sync();
            for cqe in &mut cq {
                if cqe.user_data() == tag && found.is_none() {
                    found = Some(cqe.result());
                } else {
                    self.parked.push_back((cqe.user_data(), cqe.result()));
                }
            }
            drop(cq);
            if let Some(r) = found {
                return r;
            }
        }
    }

    fn send_parts(&mut self, parts: &[&[u8]]) {
        if parts.len() > self.iov.len() {
            // The core never gives more (`MAX_SINK_PARTS`); never send a
            // message whose header promises bytes that are left out.
            log_error(
                "sending a reply",
                &io::Error::from_raw_os_error(libc::E2BIG),
            );
            if let Some(h) = fuse_out_header::of_reply(parts) {
                self.send_parts(&[h.with_error(libc::EIO).as_bytes()]);
            }
            return;
        }
        let n = parts.len();
        for (slot, p) in self.iov.iter_mut().zip(parts) {
            slot.iov_base = p.as_ptr().cast_mut().cast();
            slot.iov_len = p.len();
        }
        let e = opcode::Writev::new(types::Fixed(0), self.iov.as_ptr(), n as u32)
            .build()
            .user_data(REPLY_TAG);
        self.push(&e);
        let r = self.wait_for(REPLY_TAG);
        if r < 0 && !matches!(-r, libc::ENOENT | libc::ENODEV | libc::ECONNABORTED) {
            log_error("sending a reply", &io::Error::from_raw_os_error(-r));
        }
    }

    /// Tries to send `parts` + `file` by splice; false if it must be copied.
    fn splice_file(&mut self, parts: &[&[u8]], file: FileRange<'_>) -> bool {
        let header_len: usize = parts.iter().map(|p| p.len()).sum();
        let len = file.len as usize;
        let Some(pipe) = self.pipe.as_ref() else {
            return false;
        };
        if !pipe.fits(header_len, file.offset, len) {
            return false;
        }
        let (pr, pw) = (pipe.read.as_raw_fd(), pipe.write.as_raw_fd());
        // 1. The header, by plain writev into the empty pipe (tens of bytes).
        if parts.len() > self.iov.len() {
            return false; // never with the core's limit; sent by copy then
        }
        let n = parts.len();
        for (slot, p) in self.iov.iter_mut().zip(parts) {
            slot.iov_base = p.as_ptr().cast_mut().cast();
            slot.iov_len = p.len();
        }
        // SAFETY: the first `n` iovecs point into live `parts`, read only.
        let w = unsafe { libc::writev(pw, self.iov.as_ptr(), n as libc::c_int) };
        if w < 0 || w as usize != header_len {
            if let Some(p) = &self.pipe {
                p.drain();
            }
            return false;
        }
        // 2. file -> pipe, linked to 3. pipe -> /dev/fuse (whole reply).
        let total = header_len + len;
        let into_pipe = opcode::Splice::new(
            types::Fd(file.fd.as_raw_fd()),
            file.offset as i64,
            types::Fd(pw),
            -1,
            file.len,
        )
        .build()
        .flags(squeue::Flags::IO_LINK)
        .user_data(SPLICE_IN_TAG);
        let out = opcode::Splice::new(types::Fd(pr), -1, types::Fixed(0), -1, total as u32)
            .build()
            .user_data(SPLICE_OUT_TAG);
        self.push(&into_pipe);
        self.push(&out);
        let got = self.wait_for(SPLICE_IN_TAG);
        let sent = self.wait_for(SPLICE_OUT_TAG);
        if got as usize == len && sent as usize == total {
            return true;
        }
        if sent < 0 && matches!(-sent, libc::ENOENT | libc::ENODEV | libc::ECONNABORTED) {
            return true; // the kernel no longer wants it
        }
        if let Some(p) = &self.pipe {
            p.drain();
        }
        if sent > 0 {
            // Part of a reply reached the device: nothing to repair.
            log_error("splicing a reply", &io::Error::from_raw_os_error(libc::EIO));
            return true;
        }
        false
    }

    /// Sends `parts` + `file` by copying the range (clamped to what the
    /// file has, fixing the header's length).
    fn copy_file(&mut self, parts: &[&[u8]], file: FileRange<'_>) {
        let Some(head) = fuse_out_header::of_reply(parts) else {
            return;
        };
        let cap = self.copy.len();
        let want = (file.len as usize).min(cap);
        let dst = self.copy.at(0, cap);
        // SAFETY: `dst..dst+cap` is this thread's copy buffer, not borrowed
        // anywhere; `want <= cap`.
        let buf = unsafe { std::slice::from_raw_parts_mut(dst, want) };
        // SAFETY: the range's descriptor is lent by the filesystem for the
        // reply call (FileRange's contract); only borrowed.
        let file_fd = unsafe { BorrowedFd::borrow_raw(file.fd.as_raw_fd()) };
        let (got, err) = match pread_full(file_fd, buf, file.offset) {
            Ok(got) => (got, 0),
            Err(e) => (0, e.raw_os_error().unwrap_or(libc::EIO)),
        };
        if err != 0 {
            return self.send_parts(&[head.with_error(err).as_bytes()]);
        }
        let others: usize = parts[1..].iter().map(|p| p.len()).sum();
        let head = head.with_body_len(others + got);
        // SAFETY: the first `got` bytes of the copy buffer were just written
        // and nothing else refers to them until the send below completes.
        let data = unsafe { std::slice::from_raw_parts(dst.cast_const(), got) };
        // The core counts the file range as one of the `MAX_SINK_PARTS`, so
        // its bytes always fit as the last slice; nothing is dropped.
        let mut all: [&[u8]; MAX_SINK_PARTS] = [&[]; MAX_SINK_PARTS];
        let Some(all) = all.get_mut(..=parts.len()) else {
            return self.send_parts(&[head.with_error(libc::EIO).as_bytes()]);
        };
        all[0] = head.as_bytes();
        all[1..parts.len()].copy_from_slice(&parts[1..]);
        all[parts.len()] = data;
        self.send_parts(all);
    }
}

/// The reply sink of a uring-rw thread.
struct RwSink<'a> {
    ctx: &'a RefCell<RingCtx>,
    splice: bool,
}

impl ReplySink for RwSink<'_> {
    fn send(&self, parts: &[&[u8]]) {
        self.ctx.borrow_mut().send_parts(parts)
    }

    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        let mut ctx = self.ctx.borrow_mut();
        if self.splice && file.len as usize >= SPLICE_MIN && ctx.splice_file(parts, file) {
            return;
        }
        ctx.copy_file(parts, file)
    }

    /// The thread's reply buffer (`max_read` bytes).
    fn fill_capacity(&self) -> usize {
        self.ctx.try_borrow().map_or(0, |c| c.copy.len())
    }

    /// Lends the thread's reply buffer, which the reply is then written
    /// from: the data is not copied between buffers.
    fn send_filled(
        &self,
        header: fuse_out_header,
        max: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, fuselage_core::Errno>,
    ) {
        let mut ctx = self.ctx.borrow_mut();
        if max > ctx.copy.len() {
            return ctx.send_parts(&[header.with_error(libc::EIO).as_bytes()]);
        }
        let dst = ctx.copy.at(0, max);
        // SAFETY: `dst..dst+max` is this thread's reply buffer (page
        // aligned, zero-filled, only ever written with bytes), which nothing
        // else refers to while `ctx` is borrowed here.
        let buf = unsafe { std::slice::from_raw_parts_mut(dst, max) };
        match fill(buf) {
            Ok(n) => {
                let n = n.min(max);
                let head = header.with_body_len(n);
                ctx.send_parts(&[head.as_bytes(), &buf[..n]])
            }
            Err(e) => ctx.send_parts(&[header.with_error(e.0).as_bytes()]),
        }
    }
}

struct RwThread<F> {
    ctx: RefCell<RingCtx>,
    dispatcher: Arc<Dispatcher<F>>,
    /// Request buffers (`depth` of `stride` bytes) and READDIR scratch.
    bufs: Region,
    stride: usize,
    depth: usize,
    scratch: Vec<u8>,
    splice: bool,
    stop: Arc<AtomicBool>,
    _own_fd: Option<OwnedFd>,
    _shared: Arc<Channel>,
}

/// The shared session fd made non-blocking while the READs of threads
/// without a fd of their own use it; its flags are put back on drop (the
/// blocking transport, a fallback, reads it after).
///
/// A blocking fd would do harm: io_uring issues a READ inline, from the
/// thread's task work, when poll says a request is waiting, and when
/// another READ takes that request first, the READ blocks in the kernel's
/// `fuse_dev_do_read` inside the thread, whose completed READs then sit in
/// its ring unserved: the mount hangs.
struct SharedNonblocking {
    channel: Arc<Channel>,
    flags: libc::c_int,
}

impl SharedNonblocking {
    fn set(channel: &Arc<Channel>) -> io::Result<Self> {
        // SAFETY: F_GETFL on a descriptor the channel holds; no memory involved.
        let flags = unsafe { libc::fcntl(channel.fd().as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        set_nonblocking(channel.fd())?;
        Ok(SharedNonblocking {
            channel: channel.clone(),
            flags,
        })
    }
}

impl Drop for SharedNonblocking {
    fn drop(&mut self) {
        // SAFETY: F_SETFL on a descriptor the channel (kept alive here) holds.
        unsafe { libc::fcntl(self.channel.fd().as_raw_fd(), libc::F_SETFL, self.flags) };
    }
}

impl<F: Filesystem> RwThread<F> {
    /// A thread reading from `own_fd` (its clone of the device), or from
    /// the shared channel without one.
    fn new(
        own_fd: Option<OwnedFd>,
        channel: &Arc<Channel>,
        dispatcher: Arc<Dispatcher<F>>,
        neg: &Negotiated,
        depth: usize,
        splice: bool,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        let fd = own_fd
            .as_ref()
            .map_or(channel.fd().as_raw_fd(), |f| f.as_raw_fd());
        let entries = ((depth + 4) as u32).next_power_of_two();
        let ring = IoUring::<squeue::Entry, cqueue::Entry>::builder()
            .setup_cqsize(entries * 2)
            .build(entries)?;
        ring.submitter().register_files(&[fd])?;
        let stride = neg.request_buffer_size().next_multiple_of(4096);
        let max_read = neg.max_read.max(neg.max_write) as usize;
        let pipe = if splice && channel.kind() == ChannelKind::Device {
            Pipe::new(max_read + 2 * 4096).ok()
        } else {
            None
        };
        Ok(RwThread {
            ctx: RefCell::new(RingCtx {
                ring,
                parked: VecDeque::with_capacity(entries as usize * 2),
                iov: [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; MAX_SINK_PARTS],
                pipe,
                copy: Region::new(max_read.max(4096))?,
            }),
            dispatcher,
            bufs: Region::new(stride * depth)?,
            stride,
            depth,
            scratch: vec![0u8; max_read.max(4096)],
            splice,
            stop,
            _own_fd: own_fd,
            _shared: channel.clone(),
        })
    }

    fn arm_read(&self, slot: usize) {
        let buf = self.bufs.at(slot * self.stride, self.stride);
        let e = opcode::Read::new(types::Fixed(0), buf, self.stride as u32)
            .build()
            .user_data(slot as u64);
        self.ctx.borrow_mut().push(&e);
    }

    fn run(mut self) -> io::Result<RwEnd> {
        for s in 0..self.depth {
            self.arm_read(s);
        }
        let mut live = self.depth;
        let mut end = RwEnd::Unmounted;
        // A lock wait (SETLKW) may hold this thread until another request
        // releases the lock, or an INTERRUPT ends the wait. Either could be
        // read by this thread's other READs and then sit in its ring,
        // unserved, for ever. So before it dispatches a SETLKW the thread
        // cancels its other READs (`shedding` names the SETLKW's slot,
        // `shed` collects the cancelled slots), serves whatever they had
        // already read, and arms them again once the wait is over; other
        // threads read the requests meanwhile.
        let mut shedding: Option<usize> = None;
        let mut shed: Vec<usize> = Vec::with_capacity(self.depth);
        while live > 0 {
            let next = self.ctx.borrow_mut().parked.pop_front();
            let (tag, res) = match next {
                Some(c) => c,
                None => {
                    let mut ctx = self.ctx.borrow_mut();
                    match ctx.ring.submit_and_wait(1) {
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::EINTR) | Some(libc::EBUSY)
                            ) => {}
                        Err(e) => return Err(e),
                    }
                    let RingCtx { ring, parked, .. } = &mut *ctx;
                    let mut cq = ring.completion();
                    cq.sync();
                    for cqe in &mut cq {
                        parked.push_back((cqe.user_data(), cqe.result()));
                    }
                    continue;
                }
            };
            if tag >= REPLY_TAG {
                continue; // a stale reply completion
            }
            let slot = tag as usize;
            if res > 0 {
                let n = res as usize;
                // SAFETY: the READ for this slot completed, so the kernel
                // is done writing its buffer until `arm_read` below; the
                // slice ends before that.
                let buf = unsafe {
                    std::slice::from_raw_parts(self.bufs.at(slot * self.stride, n).cast_const(), n)
                };
                if shedding.is_none() && self.depth > 1 && opcode_of(buf) == Some(FUSE_SETLKW) {
                    self.shed_reads();
                    shedding = Some(slot);
                    // Served after what the other READs had already read.
                    self.ctx.borrow_mut().parked.push_back((tag, res));
                    continue;
                }
                let outcome = {
                    let sink = RwSink {
                        ctx: &self.ctx,
                        splice: self.splice,
                    };
                    let (dispatcher, scratch) = (&self.dispatcher, &mut self.scratch);
                    fuselage_linux::panic::guarded(buf, || dispatcher.dispatch(buf, &sink, scratch))
                };
                fuselage_linux::bad_input::report(&outcome);
                if outcome == Dispatched::Destroyed {
                    self.stop.store(true, Ordering::Release);
                    end = RwEnd::Destroyed;
                }
                let stopping = self.stop.load(Ordering::Acquire);
                if shedding == Some(slot) {
                    shedding = None;
                    for s in shed.drain(..) {
                        if stopping {
                            live -= 1;
                        } else {
                            self.arm_read(s);
                        }
                    }
                }
                if stopping {
                    live -= 1;
                    continue;
                }
                self.arm_read(slot);
                continue;
            }
            match -res {
                libc::ECANCELED if shedding.is_some() => shed.push(slot),
                libc::EINTR | libc::EAGAIN | libc::ENOENT => self.arm_read(slot),
                libc::ENODEV | libc::ECONNABORTED | libc::ECANCELED => live -= 1,
                errno => {
                    log_error("reading /dev/fuse", &io::Error::from_raw_os_error(errno));
                    live -= 1;
                }
            }
        }
        Ok(end)
    }
}

impl<F> RwThread<F> {
    /// Cancels this thread's READs in flight and waits until the
    /// cancellation is done: each READ's completion (a request it had read
    /// already, or `ECANCELED`) is then parked.
    #[cold]
    fn shed_reads(&self) {
        let cancel = types::CancelBuilder::fd(types::Fixed(0)).all();
        let e = opcode::AsyncCancel2::new(cancel)
            .build()
            .user_data(SHED_TAG);
        let mut ctx = self.ctx.borrow_mut();
        ctx.push(&e);
        ctx.wait_for(SHED_TAG);
    }
}

/// The opcode of the request in `buf` (`None` if shorter than a header).
fn opcode_of(buf: &[u8]) -> Option<u32> {
    let b = buf.get(4..8)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cold]
fn log_error(what: &str, e: &io::Error) {
    eprintln!("fuselage: uring-rw: {what}: {e}");
}
