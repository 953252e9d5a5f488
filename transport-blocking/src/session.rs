//! Serving a FUSE channel with blocking worker threads.
//!
//! A [`Session`] reads INIT on the calling thread, sizes every buffer from
//! what was agreed, then starts its workers. Each worker owns, allocated once:
//! an 8-byte-aligned request buffer of `max_write + 4096` bytes, a scratch
//! buffer that READDIR(PLUS) packs into, a copy buffer for file replies that
//! cannot be spliced, and (on `/dev/fuse`) a pipe for splicing file data.
//! The request path itself allocates nothing: read into the buffer, dispatch
//! through the core, reply with one `writev` (or a splice).
//!
//! Workers read from their own clone of `/dev/fuse` (`FUSE_DEV_IOC_CLONE`)
//! when the device can be opened again, and share the session fd otherwise
//! (an fd from fusermount3 when /dev/fuse is not accessible to us, or a
//! message socket). A stream socket has exactly one reader, since its
//! messages are framed by their length and two readers would tear them.

use crate::splice::{SpliceOutcome, SplicePipe};
use fuselage_core::abi::fuse_out_header;
use fuselage_core::init::InitError;
use fuselage_core::{
    DeferredSink, DeferredVTable, Dispatched, Dispatcher, FileRange, Filesystem, InitConfig,
    MAX_SINK_PARTS, Negotiated, ReplySink,
};
use fuselage_linux::bad_input::refuse_oversized;
use fuselage_linux::channel::{Channel, ChannelKind, is_interrupted_reply, is_unmounted};
use fuselage_linux::handshake::{HandshakeError, handshake};
use fuselage_linux::sys::{online_cpu, pin_to, pread_full, set_nonblocking};
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use zerocopy::IntoBytes;

/// How a session serves.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Worker threads (at least 1; a stream socket always uses 1).
    pub threads: usize,
    /// What to ask the kernel for at INIT.
    pub init: InitConfig,
    /// Refuse every modifying request with EROFS.
    pub read_only: bool,
    /// Send file-range replies by splice on `/dev/fuse` (copy elsewhere).
    pub splice: bool,
    /// Serve each request on the CPU of its caller where possible: with one
    /// cloned `/dev/fuse` fd per worker and at least two workers, worker `i`
    /// is pinned to online CPU `i mod n` and waits in poll(2) (which wakes
    /// every waiting worker) before a non-blocking read, so the worker on the
    /// caller's CPU takes the request without a cross-CPU wakeup; the others
    /// find nothing and wait again. See the README for the measurements.
    pub cpu_local: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            threads: fuselage_linux::sys::usable_cpus(),
            init: InitConfig::default(),
            read_only: false,
            splice: true,
            cpu_local: true,
        }
    }
}

/// Why a session stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The filesystem was unmounted or the connection aborted (ENODEV).
    Unmounted,
    /// The peer closed a socket channel.
    PeerClosed,
    /// The kernel sent DESTROY.
    Destroyed,
}

/// Why a session could not serve.
#[derive(Debug)]
pub enum SessionError {
    /// The kernel's INIT could not be agreed.
    Init(InitError),
    /// The channel closed or was unmounted before INIT.
    ClosedBeforeInit,
    /// Reading or writing the channel failed.
    Io(io::Error),
    /// A worker thread could not be started.
    Spawn(io::Error),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Init(e) => write!(f, "FUSE INIT failed: {e}"),
            SessionError::ClosedBeforeInit => {
                f.write_str("the FUSE channel closed before INIT (was the mount aborted?)")
            }
            SessionError::Io(e) => write!(f, "FUSE channel I/O failed: {e}"),
            SessionError::Spawn(e) => write!(f, "cannot start a worker thread: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<HandshakeError> for SessionError {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::Init(e) => SessionError::Init(e),
            HandshakeError::ClosedBeforeInit => SessionError::ClosedBeforeInit,
            HandshakeError::Io(e) => SessionError::Io(e),
        }
    }
}

/// What a running session knows after INIT, for the caller's startup line.
#[derive(Debug, Clone, Copy)]
pub struct ServeInfo {
    /// The agreed connection parameters.
    pub negotiated: Negotiated,
    /// Worker threads serving.
    pub threads: usize,
    /// Whether workers have their own cloned device fds.
    pub cloned_fds: bool,
    /// The channel's kind.
    pub kind: ChannelKind,
}

/// A FUSE channel being served to a filesystem by blocking worker threads.
pub struct Session<F> {
    channel: Arc<Channel>,
    dispatcher: Arc<Dispatcher<F>>,
    config: SessionConfig,
}

impl<F: Filesystem + Send + Sync + 'static> Session<F> {
    /// A session serving `fs` on `channel`.
    pub fn new(channel: Channel, fs: F, config: SessionConfig) -> Self {
        let dispatcher = Dispatcher::new(fs, config.init).with_read_only(config.read_only);
        Session {
            channel: Arc::new(channel),
            dispatcher: Arc::new(dispatcher),
            config,
        }
    }

    /// A session serving through an existing `dispatcher`, which another
    /// transport on the same connection may share (e.g. the io_uring
    /// transport's `/dev/fuse` reader, or its fallback after INIT).
    pub fn with_dispatcher(
        channel: Channel,
        dispatcher: Arc<Dispatcher<F>>,
        config: SessionConfig,
    ) -> Self {
        Session {
            channel: Arc::new(channel),
            dispatcher,
            config,
        }
    }

    /// The dispatcher (and through it the filesystem).
    pub fn dispatcher(&self) -> &Arc<Dispatcher<F>> {
        &self.dispatcher
    }

    /// Serves until the filesystem is unmounted, the peer closes the channel
    /// or the kernel sends DESTROY.
    pub fn run(self) -> Result<SessionEnd, SessionError> {
        self.run_with(|_| {})
    }

    /// Like [`Session::run`], calling `ready` once INIT is answered.
    pub fn run_with(self, ready: impl FnOnce(&ServeInfo)) -> Result<SessionEnd, SessionError> {
        let negotiated = self.handshake()?;
        self.run_initialized(negotiated, ready)
    }

    /// Serves a connection whose INIT was already answered through this
    /// session's dispatcher (see [`Session::with_dispatcher`]); `negotiated` is
    /// what that INIT agreed. Calls `ready` once the workers are about to start.
    pub fn run_initialized(
        self,
        negotiated: Negotiated,
        ready: impl FnOnce(&ServeInfo),
    ) -> Result<SessionEnd, SessionError> {
        let kind = self.channel.kind();
        let threads = match kind {
            ChannelKind::Stream => 1,
            _ => self.config.threads.max(1),
        };
        let mut channels = Vec::with_capacity(threads);
        let mut cloned_fds = kind == ChannelKind::Device;
        for i in 0..threads {
            let ch = if i == 0 {
                self.channel.clone()
            } else if cloned_fds {
                match self.channel.clone_device() {
                    Ok(c) => Arc::new(c),
                    Err(_) => {
                        cloned_fds = false;
                        self.channel.clone()
                    }
                }
            } else {
                self.channel.clone()
            };
            channels.push(ch);
        }
        let info = ServeInfo {
            negotiated,
            threads,
            cloned_fds: cloned_fds && threads > 1,
            kind,
        };
        ready(&info);

        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(threads);
        for (i, ch) in channels.into_iter().enumerate() {
            let mut worker = Worker::new(
                ch,
                self.dispatcher.clone(),
                &negotiated,
                &self.config,
                stop.clone(),
            );
            if self.config.cpu_local && info.cloned_fds {
                worker.local_cpu = online_cpu(i);
            }
            let h = thread::Builder::new()
                .name(format!("fuselage-{i}"))
                .spawn(move || worker.run())
                .map_err(SessionError::Spawn)?;
            handles.push(h);
        }
        let mut end = Ok(SessionEnd::Unmounted);
        for h in handles {
            match h.join() {
                Ok(Ok(e)) => {
                    // The most specific reason wins: a peer closing or a
                    // DESTROY over the plain "unmounted" of the others.
                    let rank = |e: &SessionEnd| match e {
                        SessionEnd::Unmounted => 0,
                        SessionEnd::Destroyed => 1,
                        SessionEnd::PeerClosed => 2,
                    };
                    if let Ok(cur) = &end
                        && rank(&e) > rank(cur)
                    {
                        end = Ok(e)
                    }
                }
                Ok(Err(e)) => end = Err(SessionError::Io(e)),
                Err(_) => end = Err(SessionError::Io(io::Error::other("worker panicked"))),
            }
        }
        end
    }

    /// Reads and answers INIT (and the retry after a downgrade).
    fn handshake(&self) -> Result<Negotiated, SessionError> {
        handshake(&self.channel, &self.dispatcher, self.config.init.max_write)
            .map_err(SessionError::from)
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT)
    )
}

/// A heap buffer allocated once and 8-byte aligned (the core's requirement).
struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        AlignedBuf {
            words: vec![0u64; len.div_ceil(8)],
            len,
        }
    }
    fn as_ref(&self) -> &[u8] {
        &zerocopy::IntoBytes::as_bytes(self.words.as_slice())[..self.len]
    }
    fn as_mut(&mut self) -> &mut [u8] {
        &mut zerocopy::IntoBytes::as_mut_bytes(self.words.as_mut_slice())[..self.len]
    }
}

struct Worker<F> {
    channel: Arc<Channel>,
    dispatcher: Arc<Dispatcher<F>>,
    stop: Arc<AtomicBool>,
    buf: AlignedBuf,
    scratch: Vec<u8>,
    copy: RefCell<Vec<u8>>,
    pipe: RefCell<PipeState>,
    splice: bool,
    pipe_capacity: usize,
    /// The CPU this worker serves (pinned, poll-then-read), if any.
    local_cpu: Option<usize>,
}

/// Waits until `fd` is readable (or errors, which the next read reports).
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd; poll writes only its `revents`.
    unsafe { libc::poll(&mut pfd, 1, -1) };
}

impl<F: Filesystem> Worker<F> {
    fn new(
        channel: Arc<Channel>,
        dispatcher: Arc<Dispatcher<F>>,
        neg: &Negotiated,
        config: &SessionConfig,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let max_read = neg.max_read.max(neg.max_write) as usize;
        let splice = config.splice && channel.kind() == ChannelKind::Device;
        Worker {
            buf: AlignedBuf::new(neg.request_buffer_size()),
            scratch: vec![0u8; max_read.max(4096)],
            copy: RefCell::new(vec![0u8; max_read + 4096]),
            pipe: RefCell::new(PipeState::Untried),
            splice,
            pipe_capacity: max_read + 4096,
            local_cpu: None,
            channel,
            dispatcher,
            stop,
        }
    }

    fn run(mut self) -> io::Result<SessionEnd> {
        let poll_first = match self.local_cpu {
            Some(cpu) => pin_to(cpu).is_ok() && set_nonblocking(self.channel.fd()).is_ok(),
            None => false,
        };
        loop {
            if poll_first {
                wait_readable(self.channel.fd());
            }
            if self.stop.load(Ordering::Relaxed) {
                // Another worker ended the session and reports why; this
                // one's answer ranks lowest when the results are joined.
                return Ok(SessionEnd::Unmounted);
            }
            let n = match self.channel.receive(self.buf.as_mut()) {
                Ok(0) => {
                    self.stop.store(true, Ordering::Relaxed);
                    return Ok(SessionEnd::PeerClosed);
                }
                Ok(n) => n,
                Err(e) if is_unmounted(&e) => return Ok(SessionEnd::Unmounted),
                Err(e) if retryable(&e) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                    return Ok(SessionEnd::Unmounted);
                }
                // A socket message larger than any request: consumed,
                // answered EINVAL, logged; the next one is served.
                Err(e) if refuse_oversized(&self.channel, self.buf.as_ref(), &e) => continue,
                Err(e) => return Err(e),
            };
            let sink = ChannelSink {
                channel: &self.channel,
                copy: Some(&self.copy),
                pipe: if self.splice { Some(&self.pipe) } else { None },
                pipe_capacity: self.pipe_capacity,
            };
            let message = &self.buf.as_ref()[..n];
            let outcome = fuselage_linux::panic::guarded(message, || {
                self.dispatcher.dispatch(message, &sink, &mut self.scratch)
            });
            fuselage_linux::bad_input::report(&outcome);
            if outcome == Dispatched::Destroyed {
                self.stop.store(true, Ordering::Relaxed);
                if self.channel.kind() != ChannelKind::Device {
                    // The kernel aborts /dev/fuse after DESTROY, which wakes
                    // every reader with ENODEV; a socket peer may not close,
                    // so wake the other workers blocked on it ourselves.
                    // SAFETY: shutdown on a descriptor we hold open; it has
                    // no memory-safety preconditions.
                    unsafe { libc::shutdown(self.channel.fd().as_raw_fd(), libc::SHUT_RD) };
                }
                return Ok(SessionEnd::Destroyed);
            }
        }
    }
}

/// A worker's splice pipe, made on first use.
enum PipeState {
    /// Not made yet.
    Untried,
    /// Ready to splice.
    Ready(SplicePipe),
    /// Could not be made: file ranges are copied.
    Failed,
}

/// The reply sink of a blocking worker: writev on the channel, splice or copy
/// for file ranges.
struct ChannelSink<'w> {
    channel: &'w Arc<Channel>,
    copy: Option<&'w RefCell<Vec<u8>>>,
    pipe: Option<&'w RefCell<PipeState>>,
    pipe_capacity: usize,
}

impl<'w> ChannelSink<'w> {
    fn plain(channel: &'w Arc<Channel>) -> Self {
        ChannelSink {
            channel,
            copy: None,
            pipe: None,
            pipe_capacity: 0,
        }
    }

    fn send_parts(&self, parts: &[&[u8]]) {
        if let Err(e) = self.channel.send(parts) {
            // ENOENT: the kernel dropped an interrupted request; ENODEV: the
            // connection is gone and the next read says so. Neither is ours
            // to report.
            if !is_interrupted_reply(&e) && !is_unmounted(&e) {
                log_send_error(&e);
                // The kernel refused the reply (or it could not be built):
                // answer EIO so the caller is not left waiting forever.
                if parts.len() > 1
                    && let Some(h) = fuse_out_header::of_reply(parts)
                {
                    let _ = self.channel.send(&[h.with_error(libc::EIO).as_bytes()]);
                }
            }
        }
    }

    fn try_splice(&self, parts: &[&[u8]], file: FileRange<'_>) -> bool {
        let Some(pipe) = self.pipe else { return false };
        let Ok(mut slot) = pipe.try_borrow_mut() else {
            return false;
        };
        if matches!(*slot, PipeState::Untried) {
            // Tried once per worker: a pipe that cannot be made (or sized)
            // now will not be next time either, so copy from then on.
            *slot = match SplicePipe::new(self.pipe_capacity) {
                Ok(p) => PipeState::Ready(p),
                Err(_) => PipeState::Failed,
            };
        }
        let PipeState::Ready(p) = &mut *slot else {
            return false;
        };
        let header_len: usize = parts.iter().map(|p| p.len()).sum();
        if !p.fits(header_len, file.offset, file.len as usize) {
            return false;
        }
        match p.send_file(
            self.channel.as_fd(),
            parts,
            file.fd.as_fd(),
            file.offset,
            file.len as usize,
        ) {
            Ok(SpliceOutcome::Sent) => true,
            Ok(SpliceOutcome::Short { .. }) => false,
            Err(e) if is_interrupted_reply(&e) || is_unmounted(&e) => true,
            Err(_) => {
                // The pipe may hold leftovers after a failure: rebuild it next time.
                *slot = PipeState::Untried;
                false
            }
        }
    }

    /// Reads the range into the copy buffer and sends it, fixing the header's
    /// length if the file is shorter than promised.
    fn copy_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        let Some(header) = fuse_out_header::of_reply(parts) else {
            return;
        };
        let Some(copy) = self.copy else {
            return self.send_error_for(header, libc::EIO);
        };
        let Ok(mut copy) = copy.try_borrow_mut() else {
            return self.send_error_for(header, libc::EIO);
        };
        let want = (file.len as usize).min(copy.len());
        // SAFETY: the range's descriptor is open and lent for the duration
        // of this reply call (FileRange's contract); only borrowed here.
        let file_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(file.fd.as_raw_fd()) };
        let got = match pread_full(file_fd, &mut copy[..want], file.offset) {
            Ok(got) => got,
            Err(e) => return self.send_error_for(header, e.raw_os_error().unwrap_or(libc::EIO)),
        };
        let others: usize = parts[1..].iter().map(|p| p.len()).sum();
        let fixed = header.with_body_len(others + got);
        // The core counts the file range as one of the `MAX_SINK_PARTS`, so
        // its bytes always fit as the last slice; nothing is dropped.
        let mut all: [&[u8]; MAX_SINK_PARTS] = [&[]; MAX_SINK_PARTS];
        let Some(all) = all.get_mut(..=parts.len()) else {
            return self.send_error_for(header, libc::EIO);
        };
        all[0] = fixed.as_bytes();
        all[1..parts.len()].copy_from_slice(&parts[1..]);
        all[parts.len()] = &copy[..got];
        self.send_parts(all);
    }

    fn send_error_for(&self, header: fuse_out_header, errno: i32) {
        self.send_parts(&[header.with_error(errno).as_bytes()]);
    }

    /// The core's stack-buffer fill, for a sink without its buffer.
    fn default_send_filled(
        &self,
        header: fuse_out_header,
        max: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, fuselage_core::Errno>,
    ) {
        struct Plain<'a, 'w>(&'a ChannelSink<'w>);
        impl ReplySink for Plain<'_, '_> {
            fn send(&self, parts: &[&[u8]]) {
                self.0.send_parts(parts)
            }
            fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
                self.0.send_file(parts, file)
            }
        }
        Plain(self).send_filled(header, max, fill)
    }
}

/// Deferred replies on the blocking transport: the sink keeps a reference
/// to the channel (an `Arc` turned into a raw pointer) and sends from
/// whichever thread answers. File ranges are spliced through a pipe made for
/// the occasion on `/dev/fuse` (fds, no heap) and copied through a buffer
/// allocated for the occasion elsewhere: deferral is the slow path.
static DEFERRED_VTABLE: DeferredVTable = DeferredVTable {
    send: deferred_send,
    send_file: deferred_send_file,
    drop: deferred_drop,
};

/// Borrows the channel a deferred sink owns, without touching its count.
///
/// # Safety
/// `ptr` came from `Arc::<Channel>::into_raw` and is still owned by the sink.
unsafe fn deferred_channel(ptr: *const ()) -> std::mem::ManuallyDrop<Arc<Channel>> {
    // SAFETY: the caller guarantees `ptr` is a live `Arc::into_raw` pointer;
    // ManuallyDrop keeps this temporary from releasing the sink's count.
    std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(ptr as *const Channel) })
}

unsafe fn deferred_send(ptr: *const (), _: &[u64; 2], parts: &[&[u8]]) {
    // SAFETY: forwarded from the vtable contract (ptr alive until drop).
    let channel = unsafe { deferred_channel(ptr) };
    ChannelSink::plain(&channel).send_parts(parts)
}

unsafe fn deferred_send_file(ptr: *const (), _: &[u64; 2], parts: &[&[u8]], file: FileRange<'_>) {
    // SAFETY: forwarded from the vtable contract (ptr alive until drop).
    let channel = unsafe { deferred_channel(ptr) };
    let channel: &Arc<Channel> = &channel;
    let pipe = RefCell::new(PipeState::Untried);
    let len = file.len as usize + 4096;
    let copy = RefCell::new(Vec::new());
    let splice = channel.kind() == ChannelKind::Device;
    let sink = ChannelSink {
        channel,
        copy: Some(&copy),
        pipe: if splice { Some(&pipe) } else { None },
        pipe_capacity: len,
    };
    if !sink.try_splice(parts, file) {
        copy.borrow_mut().resize(len, 0);
        sink.copy_file(parts, file)
    }
}

unsafe fn deferred_drop(ptr: *const (), _: &[u64; 2]) {
    // SAFETY: `ptr` came from `Arc::into_raw` in `defer` and is released
    // exactly once, here.
    drop(unsafe { Arc::from_raw(ptr as *const Channel) });
}

impl ReplySink for ChannelSink<'_> {
    fn defer(&self) -> Option<DeferredSink> {
        let ptr = Arc::into_raw(Arc::clone(self.channel)) as *const ();
        // SAFETY: the pointer owns one strong count until `deferred_drop`;
        // `Channel` is `Send + Sync`, so the functions may run on any thread.
        Some(unsafe { DeferredSink::new(ptr, [0; 2], &DEFERRED_VTABLE) })
    }

    fn send(&self, parts: &[&[u8]]) {
        self.send_parts(parts)
    }

    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        if !self.try_splice(parts, file) {
            self.copy_file(parts, file)
        }
    }

    /// The worker's reply buffer (`max_read` bytes and a page).
    fn fill_capacity(&self) -> usize {
        self.copy
            .and_then(|c| c.try_borrow().ok().map(|c| c.len()))
            .unwrap_or(fuselage_core::reply::FILL_STACK_MAX)
    }

    /// Lends the worker's reply buffer, which the reply is then written
    /// from with writev: the data is not copied between buffers.
    fn send_filled(
        &self,
        header: fuse_out_header,
        max: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, fuselage_core::Errno>,
    ) {
        let copy = self.copy.and_then(|c| c.try_borrow_mut().ok());
        let Some(mut copy) = copy else {
            return ChannelSink::plain(self.channel).default_send_filled(header, max, fill);
        };
        let Some(buf) = copy.get_mut(..max) else {
            return self.send_error_for(header, libc::EIO);
        };
        match fill(buf) {
            Ok(n) => {
                let n = n.min(max);
                self.send_parts(&[header.with_body_len(n).as_bytes(), &buf[..n]])
            }
            Err(e) => self.send_error_for(header, e.0),
        }
    }
}

#[cold]
fn log_send_error(e: &io::Error) {
    eprintln!("fuselage: sending a reply failed: {e}");
}
