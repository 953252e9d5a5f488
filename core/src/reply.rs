//! Building replies and handing them to the transport.
//!
//! A reply is a `fuse_out_header` followed by the opcode's reply struct and,
//! for some opcodes, data. fuselage never assembles it in one buffer: the
//! header and struct live on the stack of the reply call and the data stays
//! where the filesystem keeps it, and the transport receives the parts as a
//! list of slices ([`ReplySink::send`]) to pass to one `writev`, or to copy
//! into a ring entry. Data that lives in a host file can instead be named by
//! a [`FileRange`] ([`ReplySink::send_file`]) so the transport splices it
//! without copying through user memory.
//!
//! Every request that expects an answer comes with one typed reply handle
//! (`ReplyEntry`, `ReplyData`, ...). Its methods take `self`, so a request
//! cannot be answered twice; a handle dropped unanswered answers `EIO`, so a
//! request is never left hanging. A handle owns only the request's `unique`
//! and the sink: when the sink is `Send + 'static` the handle may be moved to
//! another thread and answered later (a deferred reply). The request's
//! buffer is *not* kept alive by the handle: copy what you need out of the
//! request before returning from the `Filesystem` method.

use crate::abi::*;
use crate::dirent::{DirentBuf, DirentError};
use crate::error::Errno;
use core::marker::PhantomData;
use core::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// A file descriptor borrowed for the lifetime `'fd`: the shape of
/// `std::os::fd::BorrowedFd` (and rustix's) for this `no_std` crate.
///
/// Safe code cannot make one from an integer: it comes from a descriptor the
/// caller holds open (with the `std` feature, from any
/// `std::os::fd::BorrowedFd`) or from [`BorrowedFd::borrow_raw`], whose
/// caller promises the descriptor stays open for `'fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct BorrowedFd<'fd> {
    fd: i32,
    _borrow: PhantomData<&'fd ()>,
}

impl BorrowedFd<'_> {
    /// Borrows the raw descriptor `fd`.
    ///
    /// # Safety
    ///
    /// `fd` must be an open descriptor that stays open for the whole
    /// lifetime of the result.
    pub const unsafe fn borrow_raw(fd: i32) -> Self {
        BorrowedFd {
            fd,
            _borrow: PhantomData,
        }
    }

    /// The raw descriptor, for a system call during the borrow.
    pub const fn as_raw_fd(&self) -> i32 {
        self.fd
    }
}

#[cfg(feature = "std")]
impl<'fd> From<std::os::fd::BorrowedFd<'fd>> for BorrowedFd<'fd> {
    fn from(fd: std::os::fd::BorrowedFd<'fd>) -> Self {
        use std::os::fd::AsRawFd;
        // SAFETY: `fd` is open for `'fd`, the lifetime of the result.
        unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) }
    }
}

#[cfg(feature = "std")]
impl std::os::fd::AsFd for BorrowedFd<'_> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: `self.fd` is open for `'fd` (the type's invariant), which
        // outlives this borrow of `self`.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) }
    }
}

/// A range of a host file that a reply carries as data, sent by splice when
/// the transport can. It borrows the file's descriptor, so the file stays
/// open while the reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange<'fd> {
    /// The open host file.
    pub fd: BorrowedFd<'fd>,
    /// Offset in the file.
    pub offset: u64,
    /// Exact number of bytes: callers clamp it to the file size first, since
    /// the reply header promising this length goes out before the data.
    pub len: u32,
}

impl<'fd> FileRange<'fd> {
    /// `len` bytes of `fd` from `offset`.
    pub fn new(fd: impl Into<BorrowedFd<'fd>>, offset: u64, len: u32) -> Self {
        FileRange {
            fd: fd.into(),
            offset,
            len,
        }
    }
}

/// Where replies go: implemented by every transport (and by test harnesses).
///
/// The first part always starts with a `fuse_out_header` whose `len` is the
/// total of all parts (plus the file range), and there are never more than
/// [`MAX_SINK_PARTS`] parts, counting a file range as one: a sink sizes its
/// iovec array by that constant (also when it sends a file range's bytes as
/// one more slice) and needs no other limit. A sink sends the message whole or not at all and
/// deals with send errors itself: `ENOENT` (the kernel dropped an interrupted
/// request) is normal, `ENODEV` means unmounted.
pub trait ReplySink {
    /// Sends the concatenation of `parts` as one message.
    fn send(&self, parts: &[&[u8]]);

    /// Sends `parts` followed by `file.len` bytes read from `file`.
    ///
    /// Transports splice where the channel allows it and copy otherwise. If
    /// the file turns out shorter than promised, the sink must not send a
    /// message with a wrong length: it re-reads and sends what the file has
    /// (fixing the header's `len`), or answers `EIO`.
    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>);

    /// A sink for the same request that may outlive this call and move to
    /// another thread (see [`ReplyHandle::defer`]); `None` when the
    /// transport cannot answer from elsewhere.
    fn defer(&self) -> Option<DeferredSink> {
        None
    }

    /// The most bytes [`ReplySink::send_filled`] can lend of the
    /// transport's own reply space ([`FILL_STACK_MAX`] by default).
    fn fill_capacity(&self) -> usize {
        FILL_STACK_MAX
    }

    /// Sends a reply whose body `fill` writes straight into the transport's
    /// own reply space (a ring entry's payload buffer, the buffer a reply is
    /// sent from), so the data is not copied a second time.
    ///
    /// `header` is the reply's out-header for an empty body (`error` 0).
    /// The sink calls `fill` once with `max` bytes (`max` is at most
    /// [`ReplySink::fill_capacity`]; the handle checks): `Ok(n)` sends the
    /// first `n` bytes (`n <= max`, the header's `len` fixed to them), `Err`
    /// answers that error instead.
    ///
    /// The default lends a zeroed stack buffer of [`FILL_STACK_MAX`] bytes
    /// and sends it with [`ReplySink::send`]: one copy more, as before.
    fn send_filled(
        &self,
        header: fuse_out_header,
        max: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, Errno>,
    ) {
        let mut buf = [0u8; FILL_STACK_MAX];
        let Some(space) = buf.get_mut(..max) else {
            return self.send(&[header.with_error(Errno::EIO.0).as_bytes()]);
        };
        match fill(space) {
            Ok(n) => {
                let n = n.min(max);
                self.send(&[header.with_body_len(n).as_bytes(), &space[..n]])
            }
            Err(e) => self.send(&[header.with_error(e.0).as_bytes()]),
        }
    }
}

/// Bytes the default [`ReplySink::send_filled`] lends on the stack: sinks
/// with a reply buffer of their own lend more.
pub const FILL_STACK_MAX: usize = 4096;

/// The operations of a [`DeferredSink`], provided by a transport.
///
/// Each function receives the sink's `ptr` and `words` exactly as given to
/// [`DeferredSink::new`].
#[derive(Debug)]
pub struct DeferredVTable {
    /// Sends a reply (see [`ReplySink::send`]).
    pub send: unsafe fn(ptr: *const (), words: &[u64; 2], parts: &[&[u8]]),
    /// Sends a reply with a file range (see [`ReplySink::send_file`]).
    pub send_file:
        unsafe fn(ptr: *const (), words: &[u64; 2], parts: &[&[u8]], file: FileRange<'_>),
    /// Releases the transport's state (called once, on drop).
    pub drop: unsafe fn(ptr: *const (), words: &[u64; 2]),
}

/// A type-erased, `Send + 'static` reply sink for answering a request later,
/// from any thread, without allocating: a pointer and two words of transport
/// state (e.g. an `Arc` turned into a raw pointer, a ring entry index and
/// its commit id) and the transport's [`DeferredVTable`].
pub struct DeferredSink {
    ptr: *const (),
    words: [u64; 2],
    vtable: &'static DeferredVTable,
}

impl DeferredSink {
    /// Builds a deferred sink from transport state.
    ///
    /// # Safety
    ///
    /// `ptr` and `words` must stay valid for `vtable`'s functions until
    /// `vtable.drop` is called (exactly once, when the sink is dropped), and
    /// the functions must be safe to call from any thread, one at a time.
    pub unsafe fn new(ptr: *const (), words: [u64; 2], vtable: &'static DeferredVTable) -> Self {
        DeferredSink { ptr, words, vtable }
    }
}

impl core::fmt::Debug for DeferredSink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeferredSink")
            .field("ptr", &self.ptr)
            .field("words", &self.words)
            .finish()
    }
}

// SAFETY: `DeferredSink::new`'s contract requires the state to be usable from
// any thread; the sink is used by one thread at a time (no `Sync`).
unsafe impl Send for DeferredSink {}

impl ReplySink for DeferredSink {
    fn send(&self, parts: &[&[u8]]) {
        // SAFETY: the state is valid until drop, per `DeferredSink::new`.
        unsafe { (self.vtable.send)(self.ptr, &self.words, parts) }
    }

    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        // SAFETY: as in `send`.
        unsafe { (self.vtable.send_file)(self.ptr, &self.words, parts, file) }
    }
}

impl Drop for DeferredSink {
    fn drop(&mut self) {
        // SAFETY: called exactly once, as `DeferredSink::new` requires.
        unsafe { (self.vtable.drop)(self.ptr, &self.words) }
    }
}

impl<T: ReplySink + ?Sized> ReplySink for &T {
    fn send(&self, parts: &[&[u8]]) {
        (**self).send(parts)
    }
    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        (**self).send_file(parts, file)
    }
    fn defer(&self) -> Option<DeferredSink> {
        (**self).defer()
    }
    fn fill_capacity(&self) -> usize {
        (**self).fill_capacity()
    }
    fn send_filled(
        &self,
        header: fuse_out_header,
        max: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, Errno>,
    ) {
        (**self).send_filled(header, max, fill)
    }
}

/// Bytes of a [`fuse_out_header`] (16): the start of every reply and
/// notification.
pub const OUT_HEADER_LEN: usize = core::mem::size_of::<fuse_out_header>();

/// Most parts one reply may pass besides the out-header: a struct and data
/// split across up to 32 slices (e.g. the chunks of an in-memory file). A
/// reply with more is answered `EIO` (never truncated).
pub const MAX_REPLY_PARTS: usize = 33;

/// Most parts a [`ReplySink`] ever receives in one call: the out-header and
/// up to [`MAX_REPLY_PARTS`] more. Every transport sizes its iovec arrays by
/// this one limit.
pub const MAX_SINK_PARTS: usize = MAX_REPLY_PARTS + 1;

impl fuse_out_header {
    /// The out-header at the start of a reply's first part, as a sink
    /// receives it (`None` when the part is shorter than a header).
    pub fn of_reply(parts: &[&[u8]]) -> Option<fuse_out_header> {
        let first = parts.first()?;
        fuse_out_header::read_from_prefix(first)
            .ok()
            .map(|(h, _)| h)
    }

    /// The header of the same request answered with `errno` instead (a
    /// header-only reply).
    pub fn with_error(self, errno: i32) -> fuse_out_header {
        fuse_out_header {
            len: OUT_HEADER_LEN as u32,
            error: -errno,
            unique: self.unique,
        }
    }

    /// The same header announcing `body_len` bytes after it.
    pub fn with_body_len(self, body_len: usize) -> fuse_out_header {
        fuse_out_header {
            len: (OUT_HEADER_LEN + body_len) as u32,
            ..self
        }
    }
}

/// Converts a cache timeout into the protocol's (seconds, nanoseconds).
pub const fn ttl_parts(ttl: Duration) -> (u64, u32) {
    (ttl.as_secs(), ttl.subsec_nanos())
}

/// Builds a `fuse_entry_out`.
pub fn entry_out(
    attr: fuse_attr,
    generation: u64,
    entry_ttl: Duration,
    attr_ttl: Duration,
) -> fuse_entry_out {
    let (entry_valid, entry_valid_nsec) = ttl_parts(entry_ttl);
    let (attr_valid, attr_valid_nsec) = ttl_parts(attr_ttl);
    fuse_entry_out {
        nodeid: attr.ino,
        generation,
        entry_valid,
        attr_valid,
        entry_valid_nsec,
        attr_valid_nsec,
        attr,
    }
}

/// The untyped core of every reply handle: a request's unique and the sink.
#[derive(Debug)]
pub struct ReplyHandle<S: ReplySink> {
    unique: u64,
    sink: Option<S>,
}

impl<S: ReplySink> ReplyHandle<S> {
    /// A handle answering request `unique` through `sink`.
    pub fn new(unique: u64, sink: S) -> Self {
        ReplyHandle {
            unique,
            sink: Some(sink),
        }
    }

    /// The unique of the request this handle answers.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// The out header of every reply this handle sends (the one place
    /// [`trace`](crate::trace) hooks see replies).
    #[inline]
    fn header(&self, error: i32, body_len: usize) -> fuse_out_header {
        let header = fuse_out_header {
            len: (OUT_HEADER_LEN + body_len) as u32,
            error,
            unique: self.unique,
        };
        if let Some(t) = crate::trace::hooks() {
            (t.reply)(&header);
        }
        header
    }

    /// Sends a successful reply made of `parts` (struct, then data).
    ///
    /// More than [`MAX_REPLY_PARTS`] parts is a filesystem bug: the request
    /// is answered `EIO` rather than with truncated data.
    #[inline]
    pub fn send_ok(mut self, parts: &[&[u8]]) {
        let Some(sink) = self.sink.take() else { return };
        // Fast paths for the common shapes: no 34-slot array to fill.
        match parts {
            [] => {
                let header = self.header(0, 0);
                sink.send(&[header.as_bytes()])
            }
            [a] => {
                let header = self.header(0, a.len());
                sink.send(&[header.as_bytes(), a])
            }
            [a, b] => {
                let header = self.header(0, a.len() + b.len());
                sink.send(&[header.as_bytes(), a, b])
            }
            _ if parts.len() > MAX_REPLY_PARTS => {
                let header = self.header(Errno::EIO.to_wire(), 0);
                sink.send(&[header.as_bytes()])
            }
            _ => {
                let n = parts.len();
                let body: usize = parts.iter().map(|p| p.len()).sum();
                let header = self.header(0, body);
                let mut all: [&[u8]; MAX_SINK_PARTS] = [&[]; MAX_SINK_PARTS];
                all[0] = header.as_bytes();
                all[1..=n].copy_from_slice(parts);
                sink.send(&all[..=n])
            }
        }
    }

    /// Sends a successful reply of `parts` followed by a file range, which
    /// counts as one more part: more than [`MAX_REPLY_PARTS`] in all is
    /// answered `EIO`.
    pub fn send_file(mut self, parts: &[&[u8]], file: FileRange<'_>) {
        let Some(sink) = self.sink.take() else { return };
        let body: usize = parts.iter().map(|p| p.len()).sum::<usize>() + file.len as usize;
        match parts {
            [] => {
                let header = self.header(0, body);
                sink.send_file(&[header.as_bytes()], file)
            }
            [a] => {
                let header = self.header(0, body);
                sink.send_file(&[header.as_bytes(), a], file)
            }
            _ if parts.len() + 1 > MAX_REPLY_PARTS => {
                let header = self.header(Errno::EIO.to_wire(), 0);
                sink.send(&[header.as_bytes()])
            }
            _ => {
                let n = parts.len();
                let header = self.header(0, body);
                let mut all: [&[u8]; MAX_SINK_PARTS] = [&[]; MAX_SINK_PARTS];
                all[0] = header.as_bytes();
                all[1..=n].copy_from_slice(parts);
                sink.send_file(&all[..=n], file)
            }
        }
    }

    /// Answers with an error. Values outside the kernel's accepted range
    /// (1..=511) would make it reject the reply and leave the request
    /// hanging, so they are sent as `EIO`.
    pub fn send_error(mut self, errno: Errno) {
        let Some(sink) = self.sink.take() else { return };
        let header = self.header(sendable(errno).to_wire(), 0);
        sink.send(&[header.as_bytes()]);
    }

    /// How many bytes [`ReplyHandle::send_filled`] can lend.
    pub fn fill_capacity(&self) -> usize {
        self.sink.as_ref().map_or(0, |s| s.fill_capacity())
    }

    /// Sends a successful reply whose body `fill` writes into the
    /// transport's reply space (see [`ReplySink::send_filled`]); more than
    /// [`ReplyHandle::fill_capacity`] bytes is answered `EIO` without
    /// calling `fill`, and so is a count larger than the buffer.
    pub fn send_filled(mut self, max: usize, fill: impl FnOnce(&mut [u8]) -> Result<usize, Errno>) {
        let Some(sink) = self.sink.take() else { return };
        let header = self.header(0, 0);
        if max > sink.fill_capacity() {
            return sink.send(&[self.header(Errno::EIO.to_wire(), 0).as_bytes()]);
        }
        let mut fill = Some(fill);
        sink.send_filled(header, max, &mut |buf: &mut [u8]| {
            let fill = fill.take().ok_or(Errno::EIO)?;
            match fill(buf) {
                Ok(n) if n <= buf.len() => Ok(n),
                Ok(_) => Err(Errno::EIO),
                Err(e) => Err(sendable(e)),
            }
        })
    }

    /// Turns this handle into one that is `Send + 'static`, to answer later
    /// from another thread (a deferred reply). The request's arguments are
    /// not kept: copy what you need first. `Err(self)` when the transport
    /// cannot defer (then answer before returning).
    pub fn defer(mut self) -> Result<ReplyHandle<DeferredSink>, Self> {
        match self.sink.as_ref().and_then(|s| s.defer()) {
            Some(deferred) => {
                // The original sink goes without answering: the deferred one
                // now owns the request.
                self.sink = None;
                Ok(ReplyHandle {
                    unique: self.unique,
                    sink: Some(deferred),
                })
            }
            None => Err(self),
        }
    }

    /// Gives up the handle without answering: only for requests the kernel
    /// expects no answer to.
    pub fn forget(mut self) {
        self.sink = None;
    }
}

/// `errno` if the kernel accepts it in a reply (1..=511), else `EIO`.
fn sendable(errno: Errno) -> Errno {
    if (1..512).contains(&errno.0) {
        errno
    } else {
        Errno::EIO
    }
}

impl<S: ReplySink> Drop for ReplyHandle<S> {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            let header = self.header(Errno::EIO.to_wire(), 0);
            sink.send(&[header.as_bytes()]);
        }
    }
}

macro_rules! reply_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<S: ReplySink>(ReplyHandle<S>);

        impl<S: ReplySink> $name<S> {
            /// A handle answering request `unique` through `sink`.
            pub fn new(unique: u64, sink: S) -> Self {
                $name(ReplyHandle::new(unique, sink))
            }

            /// Answers with an error.
            pub fn error(self, errno: Errno) {
                self.0.send_error(errno)
            }

            /// The unique of the request this handle answers.
            pub fn unique(&self) -> u64 {
                self.0.unique()
            }

            /// Turns this handle into a `Send + 'static` one to answer later
            /// from another thread; `Err(self)` when the transport cannot
            /// defer. See [`ReplyHandle::defer`].
            pub fn defer(self) -> Result<$name<DeferredSink>, Self> {
                self.0.defer().map($name).map_err($name)
            }
        }
    };
}

reply_type!(
    /// Answers with no data (UNLINK, RMDIR, RENAME, RELEASE, FSYNC, FLUSH,
    /// SETXATTR, REMOVEXATTR, ACCESS, SETLK, FALLOCATE, SYNCFS, ...).
    ReplyEmpty
);
impl<S: ReplySink> ReplyEmpty<S> {
    /// Answers success.
    pub fn ok(self) {
        self.0.send_ok(&[])
    }
}

reply_type!(
    /// Answers LOOKUP, MKNOD, MKDIR, SYMLINK and LINK with an entry.
    ReplyEntry
);
impl<S: ReplySink> ReplyEntry<S> {
    /// Answers with an entry (nodeid = `entry.attr.ino` by convention).
    pub fn entry(self, entry: &fuse_entry_out) {
        self.0.send_ok(&[entry.as_bytes()])
    }

    /// Answers LOOKUP with a cached "no such entry" (nodeid 0) that the
    /// kernel remembers for `ttl`.
    pub fn negative(self, ttl: Duration) {
        let (entry_valid, entry_valid_nsec) = ttl_parts(ttl);
        let out = fuse_entry_out {
            entry_valid,
            entry_valid_nsec,
            ..Default::default()
        };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers GETATTR and SETATTR.
    ReplyAttr
);
impl<S: ReplySink> ReplyAttr<S> {
    /// Answers with attributes valid for `ttl`.
    pub fn attr(self, ttl: Duration, attr: &fuse_attr) {
        let (attr_valid, attr_valid_nsec) = ttl_parts(ttl);
        let out = fuse_attr_out {
            attr_valid,
            attr_valid_nsec,
            dummy: 0,
            attr: *attr,
        };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers OPEN and OPENDIR.
    ReplyOpen
);
impl<S: ReplySink> ReplyOpen<S> {
    /// Answers with a file handle and `FOPEN_*` flags.
    pub fn opened(self, fh: u64, open_flags: u32) {
        let out = fuse_open_out {
            fh,
            open_flags,
            backing_id: 0,
        };
        self.0.send_ok(&[out.as_bytes()])
    }

    /// Answers with kernel passthrough to backing file `backing_id`
    /// (from `FUSE_DEV_IOC_BACKING_OPEN`); sets `FOPEN_PASSTHROUGH`.
    pub fn opened_passthrough(self, fh: u64, open_flags: u32, backing_id: i32) {
        let out = fuse_open_out {
            fh,
            open_flags: open_flags | FOPEN_PASSTHROUGH,
            backing_id,
        };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers CREATE and TMPFILE: an entry and an open file.
    ReplyCreate
);
impl<S: ReplySink> ReplyCreate<S> {
    /// Answers with the new entry and its open handle.
    pub fn created(self, entry: &fuse_entry_out, fh: u64, open_flags: u32) {
        let open = fuse_open_out {
            fh,
            open_flags,
            backing_id: 0,
        };
        self.0.send_ok(&[entry.as_bytes(), open.as_bytes()])
    }

    /// Answers with the new entry, opened with kernel passthrough.
    pub fn created_passthrough(
        self,
        entry: &fuse_entry_out,
        fh: u64,
        open_flags: u32,
        backing_id: i32,
    ) {
        let open = fuse_open_out {
            fh,
            open_flags: open_flags | FOPEN_PASSTHROUGH,
            backing_id,
        };
        self.0.send_ok(&[entry.as_bytes(), open.as_bytes()])
    }
}

reply_type!(
    /// Answers READ and READLINK (and any reply that is plain bytes).
    ReplyData
);
impl<S: ReplySink> ReplyData<S> {
    /// Answers with `data` (borrowed; the transport copies or writes it
    /// directly).
    pub fn data(self, data: &[u8]) {
        self.0.send_ok(&[data])
    }

    /// Answers with the concatenation of up to [`MAX_REPLY_PARTS`] slices
    /// (e.g. the two halves of a ring buffer).
    pub fn data_parts(self, parts: &[&[u8]]) {
        self.0.send_ok(parts)
    }

    /// Answers with bytes of a host file, spliced when possible.
    pub fn file(self, range: FileRange<'_>) {
        self.0.send_file(&[], range)
    }

    /// How many bytes [`ReplyData::fill`] can take: the transport's own
    /// reply space, or [`FILL_STACK_MAX`].
    pub fn fill_capacity(&self) -> usize {
        self.0.fill_capacity()
    }

    /// Answers with up to `max` bytes that `fill` writes straight into the
    /// transport's reply buffer (e.g. `pread` into a ring entry's payload),
    /// returning how many it wrote; an error is answered as such. `max`
    /// above [`ReplyData::fill_capacity`] is answered `EIO`: check first.
    ///
    /// ```
    /// # use fuselage_core::reply::{ReplyData, ReplySink};
    /// fn answer<S: ReplySink>(reply: ReplyData<S>, file: &[u8]) {
    ///     let n = file.len().min(reply.fill_capacity());
    ///     reply.fill(n, |buf| {
    ///         buf.copy_from_slice(&file[..n]);
    ///         Ok(n)
    ///     })
    /// }
    /// ```
    pub fn fill(self, max: usize, fill: impl FnOnce(&mut [u8]) -> Result<usize, Errno>) {
        self.0.send_filled(max, fill)
    }
}

reply_type!(
    /// Answers WRITE and COPY_FILE_RANGE (32-bit result).
    ReplyWrite
);
impl<S: ReplySink> ReplyWrite<S> {
    /// Answers with the number of bytes written.
    pub fn written(self, size: u32) {
        let out = fuse_write_out { size, padding: 0 };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers COPY_FILE_RANGE and COPY_FILE_RANGE_64 in the format the
    /// opcode asked for.
    ReplyCopy
);
impl<S: ReplySink> ReplyCopy<S> {
    /// A handle for COPY_FILE_RANGE (`wide` false) or _64 (`wide` true).
    pub fn with_format(unique: u64, sink: S, wide: bool) -> ReplyCopyFormatted<S> {
        ReplyCopyFormatted {
            inner: ReplyCopy::new(unique, sink),
            wide,
        }
    }
}

/// A [`ReplyCopy`] that knows whether to answer with 32 or 64 bits.
#[derive(Debug)]
pub struct ReplyCopyFormatted<S: ReplySink> {
    inner: ReplyCopy<S>,
    wide: bool,
}

impl<S: ReplySink> ReplyCopyFormatted<S> {
    /// Whether the answer is 64-bit (COPY_FILE_RANGE_64); a 32-bit answer
    /// caps `copied` at `u32::MAX`, so copy at most that much.
    pub fn is_wide(&self) -> bool {
        self.wide
    }

    /// Answers with the number of bytes copied (clamped to `u32::MAX` for
    /// the 32-bit opcode).
    pub fn copied(self, bytes: u64) {
        if self.wide {
            let out = fuse_copy_file_range_out {
                bytes_copied: bytes,
            };
            self.inner.0.send_ok(&[out.as_bytes()])
        } else {
            let out = fuse_write_out {
                size: bytes.min(u32::MAX as u64) as u32,
                padding: 0,
            };
            self.inner.0.send_ok(&[out.as_bytes()])
        }
    }

    /// Answers with an error.
    pub fn error(self, errno: Errno) {
        self.inner.error(errno)
    }

    /// Turns this handle into a `Send + 'static` one; see
    /// [`ReplyHandle::defer`].
    pub fn defer(self) -> Result<ReplyCopyFormatted<DeferredSink>, Self> {
        let wide = self.wide;
        match self.inner.defer() {
            Ok(inner) => Ok(ReplyCopyFormatted { inner, wide }),
            Err(inner) => Err(ReplyCopyFormatted { inner, wide }),
        }
    }
}

reply_type!(
    /// Answers STATFS.
    ReplyStatfs
);
impl<S: ReplySink> ReplyStatfs<S> {
    /// Answers with filesystem statistics.
    pub fn statfs(self, st: &fuse_kstatfs) {
        let out = fuse_statfs_out { st: *st };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers GETXATTR and LISTXATTR: a size query (request size 0) or the
    /// bytes.
    ReplyXattr
);
impl<S: ReplySink> ReplyXattr<S> {
    /// Answers a size query (the request's size was 0).
    pub fn size(self, size: u32) {
        let out = fuse_getxattr_out { size, padding: 0 };
        self.0.send_ok(&[out.as_bytes()])
    }

    /// Answers with the value (or the NUL-separated name list).
    pub fn data(self, data: &[u8]) {
        self.0.send_ok(&[data])
    }
}

reply_type!(
    /// Answers GETLK.
    ReplyLock
);
impl<S: ReplySink> ReplyLock<S> {
    /// Answers with the conflicting lock (or `F_UNLCK` when none).
    pub fn lock(self, lk: &fuse_file_lock) {
        let out = fuse_lk_out { lk: *lk };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers BMAP.
    ReplyBmap
);
impl<S: ReplySink> ReplyBmap<S> {
    /// Answers with the device block.
    pub fn block(self, block: u64) {
        let out = fuse_bmap_out { block };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers IOCTL.
    ReplyIoctl
);
impl<S: ReplySink> ReplyIoctl<S> {
    /// Answers with the ioctl's return value and output bytes.
    pub fn ioctl(self, result: i32, data: &[u8]) {
        let out = fuse_ioctl_out {
            result,
            flags: 0,
            in_iovs: 0,
            out_iovs: 0,
        };
        self.0.send_ok(&[out.as_bytes(), data])
    }

    /// Asks the kernel to retry an unrestricted ioctl with these buffers.
    pub fn retry(self, in_iovs: &[fuse_ioctl_iovec], out_iovs: &[fuse_ioctl_iovec]) {
        let out = fuse_ioctl_out {
            result: 0,
            flags: FUSE_IOCTL_RETRY,
            in_iovs: in_iovs.len() as u32,
            out_iovs: out_iovs.len() as u32,
        };
        self.0
            .send_ok(&[out.as_bytes(), in_iovs.as_bytes(), out_iovs.as_bytes()])
    }
}

reply_type!(
    /// Answers POLL.
    ReplyPoll
);
impl<S: ReplySink> ReplyPoll<S> {
    /// Answers with the ready events.
    pub fn revents(self, revents: u32) {
        let out = fuse_poll_out {
            revents,
            padding: 0,
        };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers LSEEK.
    ReplyLseek
);
impl<S: ReplySink> ReplyLseek<S> {
    /// Answers with the resulting offset.
    pub fn offset(self, offset: u64) {
        let out = fuse_lseek_out { offset };
        self.0.send_ok(&[out.as_bytes()])
    }
}

reply_type!(
    /// Answers STATX.
    ReplyStatx
);
impl<S: ReplySink> ReplyStatx<S> {
    /// Answers with extended attributes valid for `ttl`.
    pub fn statx(self, ttl: Duration, flags: u32, stat: &fuse_statx) {
        let (attr_valid, attr_valid_nsec) = ttl_parts(ttl);
        let out = fuse_statx_out {
            attr_valid,
            attr_valid_nsec,
            flags,
            spare: [0; 2],
            stat: *stat,
        };
        self.0.send_ok(&[out.as_bytes()])
    }
}

/// Answers READDIR or READDIRPLUS: entries are packed straight into a buffer
/// the transport lends for the call ([`DirentBuf`]), sized to what the kernel
/// asked for.
#[derive(Debug)]
pub struct ReplyDirectory<'b, S: ReplySink> {
    handle: ReplyHandle<S>,
    buf: DirentBuf<'b>,
}

impl<'b, S: ReplySink> ReplyDirectory<'b, S> {
    /// A handle answering `unique` with entries packed into `buf`.
    pub fn new(unique: u64, sink: S, buf: DirentBuf<'b>) -> Self {
        ReplyDirectory {
            handle: ReplyHandle::new(unique, sink),
            buf,
        }
    }

    /// The buffer to pack entries into.
    pub fn buf(&mut self) -> &mut DirentBuf<'b> {
        &mut self.buf
    }

    /// Adds a READDIR entry; see [`DirentBuf::push`] for what an error means
    /// ([`DirentError::Full`]: stop and resume from this entry next time;
    /// [`DirentError::InvalidName`]: skip it and go on).
    pub fn push(
        &mut self,
        ino: u64,
        next_offset: u64,
        typ: u32,
        name: &[u8],
    ) -> Result<(), DirentError> {
        self.buf.push(ino, next_offset, typ, name)
    }

    /// Adds a READDIRPLUS entry; see [`DirentBuf::push_plus`].
    pub fn push_plus(
        &mut self,
        entry: &fuse_entry_out,
        next_offset: u64,
        typ: u32,
        name: &[u8],
    ) -> Result<(), DirentError> {
        self.buf.push_plus(entry, next_offset, typ, name)
    }

    /// Sends the packed entries (none means end of directory).
    pub fn ok(self) {
        let ReplyDirectory { handle, buf } = self;
        handle.send_ok(&[buf.as_bytes()])
    }

    /// Sends entries packed elsewhere (e.g. by a deferred worker). More
    /// bytes than the request's size would make the kernel fail the READDIR,
    /// so they are answered `EIO` instead.
    pub fn packed(self, bytes: &[u8]) {
        if bytes.len() > self.buf.limit() {
            return self.handle.send_error(Errno::EIO);
        }
        self.handle.send_ok(&[bytes])
    }

    /// Answers with an error.
    pub fn error(self, errno: Errno) {
        self.handle.send_error(errno)
    }

    /// The unique of the request this handle answers.
    pub fn unique(&self) -> u64 {
        self.handle.unique()
    }

    /// Gives up the lent buffer for a `Send + 'static` handle that answers
    /// with entries packed elsewhere ([`ReplyDirectory::packed`] semantics,
    /// through [`ReplyData::data`]) and keeps the size limit to respect;
    /// `Err(self)` when the transport cannot defer.
    pub fn defer(self) -> Result<(ReplyData<DeferredSink>, usize), Self> {
        let limit = self.buf.limit();
        match self.handle.defer() {
            Ok(h) => Ok((ReplyData(h), limit)),
            Err(handle) => Err(ReplyDirectory {
                handle,
                buf: self.buf,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use core::cell::RefCell;
    use zerocopy::FromBytes;

    /// Collects sent messages into a fixed buffer (no allocation in core).
    pub struct Capture {
        pub buf: RefCell<([u8; 8192], usize, u32)>,
    }

    impl Capture {
        pub fn new() -> Self {
            Capture {
                buf: RefCell::new(([0; 8192], 0, 0)),
            }
        }
        pub fn bytes(&self) -> ([u8; 8192], usize) {
            let b = self.buf.borrow();
            (b.0, b.1)
        }
        pub fn sends(&self) -> u32 {
            self.buf.borrow().2
        }
    }

    impl ReplySink for Capture {
        fn send(&self, parts: &[&[u8]]) {
            let mut b = self.buf.borrow_mut();
            let mut n = 0;
            for p in parts {
                b.0[n..n + p.len()].copy_from_slice(p);
                n += p.len();
            }
            b.1 = n;
            b.2 += 1;
        }
        fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
            let mut b = self.buf.borrow_mut();
            let mut n = 0;
            for p in parts {
                b.0[n..n + p.len()].copy_from_slice(p);
                n += p.len();
            }
            // Stand-in for the file bytes: 0xEE.
            for i in 0..file.len as usize {
                b.0[n + i] = 0xEE;
            }
            b.1 = n + file.len as usize;
            b.2 += 1;
        }
    }

    fn header(bytes: &[u8]) -> fuse_out_header {
        fuse_out_header::read_from_prefix(bytes).unwrap().0
    }

    #[test]
    fn error_reply_is_header_only() {
        let cap = Capture::new();
        ReplyEmpty::new(77, &cap).error(Errno::ENOENT);
        let (b, n) = cap.bytes();
        assert_eq!(n, 16);
        let h = header(&b);
        assert_eq!((h.len, h.error, h.unique), (16, -2, 77));
    }

    #[test]
    fn dropped_handle_answers_eio_once() {
        let cap = Capture::new();
        drop(ReplyAttr::new(5, &cap));
        let (b, _) = cap.bytes();
        assert_eq!(header(&b).error, -5);
        assert_eq!(cap.sends(), 1);
        ReplyEmpty::new(6, &cap).ok();
        assert_eq!(cap.sends(), 2);
    }

    #[test]
    fn entry_reply_layout() {
        let cap = Capture::new();
        let attr = fuse_attr {
            ino: 42,
            size: 1000,
            mode: 0o100644,
            nlink: 1,
            ..Default::default()
        };
        let e = entry_out(attr, 3, Duration::new(1, 500), Duration::from_secs(2));
        ReplyEntry::new(9, &cap).entry(&e);
        let (b, n) = cap.bytes();
        assert_eq!(n, 16 + 128);
        let h = header(&b);
        assert_eq!((h.len, h.error, h.unique), (144, 0, 9));
        let out = fuse_entry_out::read_from_bytes(&b[16..144]).unwrap();
        assert_eq!(out.nodeid, 42);
        assert_eq!(out.generation, 3);
        assert_eq!((out.entry_valid, out.entry_valid_nsec), (1, 500));
        assert_eq!(out.attr_valid, 2);
        assert_eq!(out.attr.size, 1000);
    }

    #[test]
    fn create_reply_is_entry_then_open() {
        let cap = Capture::new();
        let e = entry_out(
            fuse_attr {
                ino: 2,
                ..Default::default()
            },
            0,
            Duration::ZERO,
            Duration::ZERO,
        );
        ReplyCreate::new(1, &cap).created_passthrough(&e, 11, FOPEN_KEEP_CACHE, 4);
        let (b, n) = cap.bytes();
        assert_eq!(n, 16 + 128 + 16);
        let open = fuse_open_out::read_from_bytes(&b[144..160]).unwrap();
        assert_eq!(open.fh, 11);
        assert_eq!(open.open_flags, FOPEN_KEEP_CACHE | FOPEN_PASSTHROUGH);
        assert_eq!(open.backing_id, 4);
    }

    #[test]
    fn file_reply_counts_file_bytes_in_len() {
        let cap = Capture::new();
        // SAFETY: the capture never uses the descriptor.
        let fd = unsafe { BorrowedFd::borrow_raw(0) };
        ReplyData::new(3, &cap).file(FileRange::new(fd, 0, 100));
        let (b, n) = cap.bytes();
        assert_eq!(n, 116);
        assert_eq!(header(&b).len, 116);
    }

    /// A deferring sink over a static capture: counts sends and drops.
    static DEFERRED_SENDS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    static DEFERRED_DROPS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    static VTABLE: DeferredVTable = DeferredVTable {
        send: |_, words, parts| {
            assert_eq!(words, &[7, 8]);
            assert_eq!(parts[0].len(), 16);
            DEFERRED_SENDS.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        },
        send_file: |_, _, _, _| {},
        drop: |_, _| {
            DEFERRED_DROPS.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        },
    };

    #[derive(Debug)]
    struct Deferring;
    impl ReplySink for Deferring {
        fn send(&self, _: &[&[u8]]) {
            panic!("the original sink must not answer a deferred request")
        }
        fn send_file(&self, _: &[&[u8]], _: FileRange<'_>) {}
        fn defer(&self) -> Option<DeferredSink> {
            // SAFETY: the vtable ignores the pointer; nothing to keep valid.
            Some(unsafe { DeferredSink::new(core::ptr::null(), [7, 8], &VTABLE) })
        }
    }

    fn assert_send_static<T: Send + 'static>(_: &T) {}

    #[test]
    fn deferred_reply_moves_and_answers_once() {
        use core::sync::atomic::Ordering::SeqCst;
        let r = ReplyEmpty::new(3, Deferring).defer().unwrap();
        assert_send_static(&r);
        r.ok();
        assert_eq!(DEFERRED_SENDS.load(SeqCst), 1);
        assert_eq!(DEFERRED_DROPS.load(SeqCst), 1);
        // A transport that cannot defer gives the handle back.
        let cap = Capture::new();
        let back = ReplyEmpty::new(4, &cap).defer().unwrap_err();
        back.ok();
        assert_eq!(cap.sends(), 1);
    }

    #[test]
    fn out_of_range_errno_becomes_eio() {
        for bad in [0, -5, 512, 600] {
            let cap = Capture::new();
            ReplyEmpty::new(1, &cap).error(Errno(bad));
            assert_eq!(header(&cap.bytes().0).error, -5, "errno {bad}");
        }
    }

    #[test]
    fn too_many_parts_is_eio_not_truncation() {
        let cap = Capture::new();
        let parts = [&b"x"[..]; MAX_REPLY_PARTS + 1];
        ReplyData::new(1, &cap).data_parts(&parts);
        assert_eq!(header(&cap.bytes().0).error, -5);
        let cap = Capture::new();
        ReplyData::new(1, &cap).data_parts(&parts[..MAX_REPLY_PARTS]);
        let (b, n) = cap.bytes();
        assert_eq!(
            (header(&b).len as usize, n),
            (16 + MAX_REPLY_PARTS, 16 + MAX_REPLY_PARTS)
        );
    }

    #[test]
    fn filled_replies_on_the_default_stack_buffer() {
        let cap = Capture::new();
        ReplyData::new(5, &cap).fill(10, |buf| {
            assert_eq!(buf.len(), 10);
            buf[..3].copy_from_slice(b"abc");
            Ok(3)
        });
        let (b, n) = cap.bytes();
        let h = header(&b);
        assert_eq!((h.len, h.error, h.unique, n), (19, 0, 5, 19));
        assert_eq!(&b[16..19], b"abc");
        // An error from `fill` is the answer.
        ReplyData::new(6, &cap).fill(10, |_| Err(Errno::ENOENT));
        assert_eq!(header(&cap.bytes().0).error, -2);
        // Beyond what the sink lends, or a count past the buffer: EIO.
        let r = ReplyData::new(7, &cap);
        assert_eq!(r.fill_capacity(), FILL_STACK_MAX);
        r.fill(FILL_STACK_MAX + 1, |_| unreachable!("not called"));
        assert_eq!(header(&cap.bytes().0).error, -5);
        ReplyData::new(8, &cap).fill(4, |_| Ok(5));
        assert_eq!(header(&cap.bytes().0).error, -5);
        ReplyData::new(9, &cap).fill(4, |_| Err(Errno(9999)));
        assert_eq!(header(&cap.bytes().0).error, -5);
        assert_eq!(cap.sends(), 5);
    }

    #[test]
    fn copy_reply_formats() {
        let cap = Capture::new();
        ReplyCopy::with_format(1, &cap, true).copied(1 << 33);
        let (b, n) = cap.bytes();
        assert_eq!(n, 24);
        assert_eq!(u64::from_ne_bytes(b[16..24].try_into().unwrap()), 1 << 33);
        ReplyCopy::with_format(1, &cap, false).copied(1 << 33);
        let (b, n) = cap.bytes();
        assert_eq!(n, 24);
        assert_eq!(u32::from_ne_bytes(b[16..20].try_into().unwrap()), u32::MAX);
    }

    #[test]
    fn small_replies_sizes() {
        let cap = Capture::new();
        ReplyWrite::new(1, &cap).written(4096);
        assert_eq!(cap.bytes().1, 24);
        ReplyXattr::new(1, &cap).size(12);
        assert_eq!(cap.bytes().1, 24);
        ReplyLseek::new(1, &cap).offset(12);
        assert_eq!(cap.bytes().1, 24);
        ReplyPoll::new(1, &cap).revents(1);
        assert_eq!(cap.bytes().1, 24);
        ReplyBmap::new(1, &cap).block(1);
        assert_eq!(cap.bytes().1, 24);
        ReplyStatfs::new(1, &cap).statfs(&fuse_kstatfs::default());
        assert_eq!(cap.bytes().1, 16 + 80);
        ReplyLock::new(1, &cap).lock(&fuse_file_lock::default());
        assert_eq!(cap.bytes().1, 16 + 24);
        ReplyAttr::new(1, &cap).attr(Duration::ZERO, &fuse_attr::default());
        assert_eq!(cap.bytes().1, 16 + 104);
        ReplyStatx::new(1, &cap).statx(Duration::ZERO, 0, &fuse_statx::default());
        assert_eq!(cap.bytes().1, 16 + core::mem::size_of::<fuse_statx_out>());
        ReplyIoctl::new(1, &cap).ioctl(7, b"abc");
        assert_eq!(cap.bytes().1, 16 + 16 + 3);
        ReplyOpen::new(1, &cap).opened(9, 0);
        assert_eq!(cap.bytes().1, 32);
    }
}
