//! Dispatch: from bytes the kernel sent to a [`Filesystem`] call with its
//! reply handle.
//!
//! A [`Dispatcher`] owns the filesystem and the connection state that
//! parsing depends on (agreed protocol minor, flags). Transports call
//! [`Dispatcher::dispatch`] (contiguous message) or
//! [`Dispatcher::dispatch_segments`] (FUSE-over-io_uring) from any number of
//! worker threads; INIT is answered here, everything else goes to the
//! filesystem. Malformed messages are answered with an error when their
//! `unique` can be trusted and dropped otherwise; nothing panics. Messages a
//! Linux kernel never sends are treated the same way: a second INIT after
//! the handshake is refused with `EIO` (the first session stays), and a
//! request expecting a reply that carries `unique` 0 is dropped unanswered.
//! [`Dispatched::Malformed`] says which, for the transport to log.

use crate::abi::*;
use crate::dirent::DirentBuf;
use crate::error::{Errno, ParseError};
use crate::filesystem::Filesystem;
use crate::init::{
    InitConfig, InitError, InitFlags, InitOutcome, KernelInit, Negotiated, negotiate,
};
use crate::op;
use crate::opcode::Opcode;
use crate::reply::*;
use crate::request::{Operation, ParseContext, Request, parse_header};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use zerocopy::IntoBytes;

/// Bytes per page in `max_pages` (the kernel's unit on every architecture
/// FUSE servers meet here).
const PAGE_SIZE: u32 = 4096;

const WAITING_INIT: u8 = 0;
const RUNNING: u8 = 1;
const DESTROYED: u8 = 2;

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    /// Handed to the filesystem (answered, deferred, or needing no answer).
    Handled(Opcode),
    /// INIT was agreed with these parameters; the reply is sent. Transports
    /// size their buffers from it.
    Initialized(Negotiated),
    /// INIT was answered with our version only; a second INIT follows.
    InitDowngraded,
    /// INIT was refused (answered with `EPROTO`); the connection is useless.
    InitFailed(InitError),
    /// DESTROY was handled: stop serving.
    Destroyed,
    /// The message could not be parsed; it was answered with an error when
    /// `replied` is true and dropped otherwise.
    Malformed {
        /// What was wrong.
        error: ParseError,
        /// Whether an error reply was sent.
        replied: bool,
    },
}

/// Serves one FUSE connection's requests to a [`Filesystem`].
#[derive(Debug)]
pub struct Dispatcher<F> {
    fs: F,
    config: InitConfig,
    read_only: bool,
    state: AtomicU8,
    minor: AtomicU32,
    setxattr_ext: AtomicBool,
    /// The most bytes a READ may ask for (`max_pages` pages), set at INIT.
    read_limit: AtomicU32,
}

impl<F: Filesystem> Dispatcher<F> {
    /// A dispatcher for `fs` that will ask for `config` at INIT.
    pub fn new(fs: F, config: InitConfig) -> Self {
        Dispatcher {
            fs,
            config,
            read_only: false,
            state: AtomicU8::new(WAITING_INIT),
            minor: AtomicU32::new(FUSE_KERNEL_MINOR_VERSION),
            setxattr_ext: AtomicBool::new(false),
            read_limit: AtomicU32::new(0),
        }
    }

    /// Refuses every modifying request with `EROFS` (even if the kernel
    /// sends one despite a read-only mount).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The filesystem.
    pub fn filesystem(&self) -> &F {
        &self.fs
    }

    /// The INIT configuration.
    pub fn config(&self) -> &InitConfig {
        &self.config
    }

    /// Whether INIT has been agreed (and DESTROY not yet seen).
    pub fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// What the parser needs to know of the connection right now.
    pub fn parse_context(&self) -> ParseContext {
        ParseContext {
            minor: self.minor.load(Ordering::Relaxed),
            setxattr_ext: self.setxattr_ext.load(Ordering::Relaxed),
        }
    }

    /// Parses and serves one message received whole (`/dev/fuse`, a socket).
    /// `scratch` is lent to READDIR(PLUS) for packing entries; it should be
    /// at least a page.
    pub fn dispatch<S: ReplySink>(&self, buf: &[u8], sink: S, scratch: &mut [u8]) -> Dispatched {
        match Request::parse(buf, self.parse_context()) {
            Ok(req) => self.dispatch_request(&req, sink, scratch),
            Err(error) => self.malformed(buf, error, sink),
        }
    }

    /// Parses and serves a message delivered in segments (FUSE-over-io_uring).
    pub fn dispatch_segments<S: ReplySink>(
        &self,
        header: &[u8],
        op_in: &[u8],
        payload: &[u8],
        sink: S,
        scratch: &mut [u8],
    ) -> Dispatched {
        match Request::parse_segments(header, op_in, payload, self.parse_context()) {
            Ok(req) => self.dispatch_request(&req, sink, scratch),
            Err(error) => self.malformed(header, error, sink),
        }
    }

    fn malformed<S: ReplySink>(
        &self,
        header_bytes: &[u8],
        error: ParseError,
        sink: S,
    ) -> Dispatched {
        let mut replied = false;
        // `Misaligned` after a readable header comes from the payload (the
        // REMOVEMAPPING array sits at offset 44 of a contiguous message):
        // the unique is sound then, so the request is answered, not left
        // hanging. A misaligned header fails `parse_header` and is dropped.
        let trusted = error.can_reply() || error == ParseError::Misaligned;
        // A unique of 0 gets no reply either: the kernel would read it as a
        // notification.
        if trusted
            && let Ok(h) = parse_header(header_bytes)
            && h.unique != 0
        {
            let no_reply = Opcode::from_u32(h.opcode).is_some_and(|op| op.is_no_reply());
            if !no_reply {
                ReplyHandle::new(h.unique, sink).send_error(error.errno());
                replied = true;
            }
        }
        Dispatched::Malformed { error, replied }
    }

    fn init<S: ReplySink>(&self, req: &Request<'_>, arg: &fuse_init_in, sink: S) -> Dispatched {
        let handle = ReplyHandle::new(req.unique(), sink);
        if self.state.load(Ordering::Acquire) != WAITING_INIT {
            // A Linux kernel sends INIT once; a second one (from a sandbox
            // or a hostile peer) must not change what the running session
            // parses by. Refused as libfuse does.
            handle.send_error(ParseError::RepeatedInit.errno());
            return Dispatched::Malformed {
                error: ParseError::RepeatedInit,
                replied: true,
            };
        }
        let kernel = KernelInit::from_wire(arg);
        let mut config = self.config;
        if let Err(e) = self.fs.init(&kernel, &mut config) {
            handle.send_error(e);
            return Dispatched::InitFailed(InitError::Refused(e));
        }
        match negotiate(&kernel, &config) {
            Ok(InitOutcome::Agreed {
                reply,
                reply_len,
                negotiated,
            }) => {
                self.minor.store(negotiated.minor, Ordering::Relaxed);
                self.read_limit.store(
                    u32::from(negotiated.max_pages.max(1)) * PAGE_SIZE,
                    Ordering::Relaxed,
                );
                self.setxattr_ext.store(
                    negotiated.flags.contains(InitFlags::SETXATTR_EXT),
                    Ordering::Relaxed,
                );
                self.fs.init_done(&negotiated);
                self.state.store(RUNNING, Ordering::Release);
                handle.send_ok(&[&reply.as_bytes()[..reply_len]]);
                Dispatched::Initialized(negotiated)
            }
            Ok(InitOutcome::Downgrade { reply, reply_len }) => {
                handle.send_ok(&[&reply.as_bytes()[..reply_len]]);
                Dispatched::InitDowngraded
            }
            Err(e) => {
                handle.send_error(Errno::EPROTO);
                Dispatched::InitFailed(e)
            }
        }
    }

    /// Serves an already parsed request.
    ///
    /// With [`trace`](crate::trace) hooks installed, they see the request
    /// before it is served and again when serving returns.
    #[inline]
    pub fn dispatch_request<S: ReplySink>(
        &self,
        req: &Request<'_>,
        sink: S,
        scratch: &mut [u8],
    ) -> Dispatched {
        // Off (the normal case): one pointer load and two untaken branches.
        let hooks = crate::trace::hooks();
        if let Some(t) = hooks {
            (t.request)(req.header);
        }
        let dispatched = self.serve_request(req, sink, scratch);
        if let Some(t) = hooks {
            (t.done)(req.header);
        }
        dispatched
    }

    fn serve_request<S: ReplySink>(
        &self,
        req: &Request<'_>,
        sink: S,
        scratch: &mut [u8],
    ) -> Dispatched {
        let opcode = req.opcode();
        let h = req.header;
        let unique = h.unique;
        let ino = h.nodeid;
        if unique == 0 && !opcode.is_no_reply() {
            // The kernel never uses unique 0 for a request; a reply to it
            // would read as a notification. FORGET and the other requests
            // without a reply are served (NOTIFY_REPLY carries the unique
            // the server chose for its RETRIEVE, which may be 0).
            return Dispatched::Malformed {
                error: ParseError::ZeroUnique {
                    opcode: opcode as u32,
                },
                replied: false,
            };
        }
        if let Operation::Init { arg } = &req.operation {
            return self.init(req, arg, sink);
        }
        if self.state.load(Ordering::Acquire) != RUNNING && opcode != Opcode::Destroy {
            if !opcode.is_no_reply() {
                ReplyHandle::new(unique, sink).send_error(Errno::EIO);
            }
            return Dispatched::Malformed {
                error: ParseError::NotInitialized {
                    opcode: opcode as u32,
                },
                replied: !opcode.is_no_reply(),
            };
        }
        if self.read_only && refused_read_only(&req.operation) {
            ReplyHandle::new(unique, sink).send_error(Errno::EROFS);
            return Dispatched::Handled(opcode);
        }
        let fs = &self.fs;
        // Operations off the hot path reach the filesystem through one
        // type-erased sink (`&dyn ReplySink`: one virtual call per reply,
        // nothing beside a round trip's microseconds), so a backend's code
        // for them is compiled once, not once per transport: the static
        // binary stays under 1 MiB. The per-I/O ones (LOOKUP, GETATTR, READ,
        // WRITE, READDIR, READDIRPLUS) stay monomorphic.
        macro_rules! cold {
            () => {
                &sink as &dyn ReplySink
            };
        }
        match req.operation {
            Operation::Init { .. } => unreachable_init(),
            Operation::Lookup { name } => {
                fs.lookup(h, op::Lookup::new(ino, name), ReplyEntry::new(unique, sink))
            }
            Operation::Forget { arg } => fs.forget(h, op::Forget::new(ino, arg.nlookup)),
            Operation::BatchForget { nodes } => fs.batch_forget(h, op::BatchForget::new(nodes)),
            Operation::Getattr { arg } => {
                fs.getattr(h, op::Getattr::new(ino, arg), ReplyAttr::new(unique, sink))
            }
            Operation::Setattr { arg } => fs.setattr(
                h,
                op::Setattr::new(ino, arg),
                ReplyAttr::new(unique, cold!()),
            ),
            Operation::Readlink => {
                fs.readlink(h, op::Readlink::new(ino), ReplyData::new(unique, cold!()))
            }
            Operation::Symlink { name, target } => fs.symlink(
                h,
                op::Symlink::new(ino, name, target),
                ReplyEntry::new(unique, cold!()),
            ),
            Operation::Mknod { arg, name } => fs.mknod(
                h,
                op::Mknod::new(ino, arg, name),
                ReplyEntry::new(unique, cold!()),
            ),
            Operation::Mkdir { arg, name } => fs.mkdir(
                h,
                op::Mkdir::new(ino, arg, name),
                ReplyEntry::new(unique, cold!()),
            ),
            Operation::Unlink { name } => fs.unlink(
                h,
                op::Unlink::new(ino, name),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Rmdir { name } => fs.rmdir(
                h,
                op::Rmdir::new(ino, name),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Rename { arg, name, newname } => fs.rename(
                h,
                op::Rename::new(ino, name, arg.newdir, newname, 0),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Rename2 { arg, name, newname } => fs.rename(
                h,
                op::Rename::new(ino, name, arg.newdir, newname, arg.flags),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Link { arg, name } => fs.link(
                h,
                op::Link::new(ino, arg, name),
                ReplyEntry::new(unique, cold!()),
            ),
            Operation::Open { arg } => {
                fs.open(h, op::Open::new(ino, arg), ReplyOpen::new(unique, cold!()))
            }
            Operation::Read { arg } => {
                let limit = self.read_limit.load(Ordering::Relaxed);
                if arg.size > limit {
                    let error = ParseError::ReadTooLarge {
                        size: arg.size,
                        limit,
                    };
                    ReplyHandle::new(unique, sink).send_error(error.errno());
                    return Dispatched::Malformed {
                        error,
                        replied: true,
                    };
                }
                fs.read(h, op::Read::new(ino, arg), ReplyData::new(unique, sink))
            }
            Operation::Write { arg, data } => fs.write(
                h,
                op::Write::new(ino, arg, data),
                ReplyWrite::new(unique, sink),
            ),
            Operation::Statfs => {
                fs.statfs(h, op::Statfs::new(ino), ReplyStatfs::new(unique, cold!()))
            }
            Operation::Release { arg } => fs.release(
                h,
                op::Release::new(ino, arg),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Fsync { arg } => fs.fsync(
                h,
                op::Fsync::new(ino, arg),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Setxattr { arg, name, value } => fs.setxattr(
                h,
                op::Setxattr::new(ino, arg, name, value),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Getxattr { arg, name } => fs.getxattr(
                h,
                op::Getxattr::new(ino, arg, name),
                ReplyXattr::new(unique, cold!()),
            ),
            Operation::Listxattr { arg } => fs.listxattr(
                h,
                op::Listxattr::new(ino, arg),
                ReplyXattr::new(unique, cold!()),
            ),
            Operation::Removexattr { name } => fs.removexattr(
                h,
                op::Removexattr::new(ino, name),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Flush { arg } => fs.flush(
                h,
                op::Flush::new(ino, arg),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Opendir { arg } => fs.opendir(
                h,
                op::Opendir::new(ino, arg),
                ReplyOpen::new(unique, cold!()),
            ),
            Operation::Readdir { arg } => {
                let buf = DirentBuf::new(scratch, arg.size as usize);
                fs.readdir(
                    h,
                    op::Readdir::new(ino, arg),
                    ReplyDirectory::new(unique, sink, buf),
                )
            }
            Operation::Readdirplus { arg } => {
                let buf = DirentBuf::new(scratch, arg.size as usize);
                fs.readdirplus(
                    h,
                    op::Readdirplus::new(ino, arg),
                    ReplyDirectory::new(unique, sink, buf),
                )
            }
            Operation::Releasedir { arg } => fs.releasedir(
                h,
                op::Releasedir::new(ino, arg),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Fsyncdir { arg } => fs.fsyncdir(
                h,
                op::Fsyncdir::new(ino, arg),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Getlk { arg } => {
                fs.getlk(h, op::Getlk::new(ino, arg), ReplyLock::new(unique, cold!()))
            }
            Operation::Setlk { arg } | Operation::Setlkw { arg } => fs.setlk(
                h,
                op::Setlk::new(ino, arg, opcode == Opcode::Setlkw),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Access { arg } => fs.access(
                h,
                op::Access::new(ino, arg),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Create { arg, name } => fs.create(
                h,
                op::Create::new(ino, arg, name),
                ReplyCreate::new(unique, cold!()),
            ),
            Operation::Tmpfile { arg, name } => fs.tmpfile(
                h,
                op::Tmpfile::new(ino, arg, name),
                ReplyCreate::new(unique, cold!()),
            ),
            Operation::Interrupt { arg } => fs.interrupt(h, op::Interrupt::new(arg)),
            Operation::Bmap { arg } => {
                fs.bmap(h, op::Bmap::new(ino, arg), ReplyBmap::new(unique, cold!()))
            }
            Operation::Destroy => {
                self.state.store(DESTROYED, Ordering::Release);
                fs.destroy();
                ReplyHandle::new(unique, sink).send_ok(&[]);
                return Dispatched::Destroyed;
            }
            Operation::Ioctl { arg, data } => fs.ioctl(
                h,
                op::Ioctl::new(ino, arg, data),
                ReplyIoctl::new(unique, cold!()),
            ),
            Operation::Poll { arg } => {
                fs.poll(h, op::Poll::new(ino, arg), ReplyPoll::new(unique, cold!()))
            }
            Operation::NotifyReply { arg, data } => {
                fs.notify_reply(h, op::NotifyReply::new(ino, arg, data))
            }
            Operation::Fallocate { arg } => fs.fallocate(
                h,
                op::Fallocate::new(ino, arg),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Lseek { arg } => fs.lseek(
                h,
                op::Lseek::new(ino, arg),
                ReplyLseek::new(unique, cold!()),
            ),
            Operation::CopyFileRange { arg } | Operation::CopyFileRange64 { arg } => fs
                .copy_file_range(
                    h,
                    op::CopyFileRange::new(ino, arg),
                    ReplyCopy::with_format(unique, cold!(), opcode == Opcode::CopyFileRange64),
                ),
            Operation::Setupmapping { arg } => fs.setupmapping(
                h,
                op::Setupmapping::new(ino, arg),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Removemapping { entries } => fs.removemapping(
                h,
                op::Removemapping::new(ino, entries),
                ReplyEmpty::new(unique, cold!()),
            ),
            Operation::Syncfs { .. } => {
                fs.syncfs(h, op::Syncfs::new(ino), ReplyEmpty::new(unique, cold!()))
            }
            Operation::Statx { arg } => fs.statx(
                h,
                op::Statx::new(ino, arg),
                ReplyStatx::new(unique, cold!()),
            ),
            Operation::CuseInit { .. } => ReplyHandle::new(unique, sink).send_error(Errno::ENOSYS),
        }
        Dispatched::Handled(opcode)
    }
}

#[inline]
fn unreachable_init() {}

/// Whether a read-only mount refuses `op` with EROFS.
fn refused_read_only(op: &Operation<'_>) -> bool {
    const O_ACCMODE: u32 = 0o3;
    const O_TRUNC: u32 = 0o1000;
    match op {
        Operation::Open { arg } => arg.flags & O_ACCMODE != 0 || arg.flags & O_TRUNC != 0,
        other => other.opcode().is_modifying(),
    }
}
