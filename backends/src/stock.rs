//! [`StockFs`]: one of the backends this crate ships, chosen at run time.
//!
//! The [`Filesystem`] trait is generic over the reply sink, so it cannot be
//! a trait object; a server that picks its backend from the command line
//! (or a [`Router`] that holds several different
//! ones) keeps them in this enum instead, which delegates every method to
//! the variant it holds. Adding a backend is one variant and one line in the
//! `each_variant!` list below.
//!
//! The `fuselage` binary serves every stock mount as one [`StockRoot`]
//! (memfs, a host directory, an overlay, or routes over one of those), so
//! the transports and the dispatcher are compiled once for all of them
//! rather than once per backend: one branch per request, and a static
//! binary that stays under 1 MiB.

use crate::memfs::MemFs;
use crate::overlay::OverlayFs;
use crate::passthrough::PassthroughFs;
use crate::router::Router;
use fuselage_core::Filesystem;
use fuselage_core::error::Errno;
use fuselage_core::filesystem::RequestHeader;
use fuselage_core::init::{InitConfig, KernelInit, Negotiated};
use fuselage_core::op;
use fuselage_core::reply::*;

/// A stock backend chosen at run time.
// One value per mount or route, never copied around: boxing the larger
// variant would only add a pointer chase to every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum StockFs {
    /// The in-memory filesystem.
    Memory(MemFs),
    /// A host directory or a single host file.
    Host(PassthroughFs),
}

/// Any stock mount as the `fuselage` binary serves it: a [`StockFs`], an
/// overlay, or routes over one of those. One type for every stock mount
/// means the transports and the dispatcher are compiled once for all of
/// them (one branch per request), which keeps the static binary small;
/// routes stay [`StockFs`], so the router's recorded replies instantiate
/// only memfs and passthrough once more.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum StockRoot {
    /// The in-memory filesystem or a host directory or file.
    Stock(StockFs),
    /// Read-only host layers under a writable upper.
    Overlay(OverlayFs),
    /// Stock backends placed at paths over a stock root.
    Routed(Box<Router<StockRoot>>),
}

/// Runs `$body` with `$fs` bound to the backend inside `$self`.
macro_rules! each_root_variant {
    ($self:expr, |$fs:ident| $body:expr) => {
        match $self {
            StockRoot::Stock($fs) => $body,
            StockRoot::Overlay($fs) => $body,
            StockRoot::Routed($fs) => $body,
        }
    };
}

/// Runs `$body` with `$fs` bound to the backend inside `$self`.
macro_rules! each_variant {
    ($self:expr, |$fs:ident| $body:expr) => {
        match $self {
            StockFs::Memory($fs) => $body,
            StockFs::Host($fs) => $body,
        }
    };
}

impl StockFs {
    /// The host backend, when this is one (for its device descriptor and
    /// kernel passthrough status).
    pub fn as_host(&self) -> Option<&PassthroughFs> {
        match self {
            StockFs::Host(fs) => Some(fs),
            _ => None,
        }
    }
}

impl From<MemFs> for StockFs {
    fn from(fs: MemFs) -> Self {
        StockFs::Memory(fs)
    }
}

impl From<PassthroughFs> for StockFs {
    fn from(fs: PassthroughFs) -> Self {
        StockFs::Host(fs)
    }
}

/// Delegates methods with a reply handle: `name(OpView, ReplyType)`.
macro_rules! delegate {
    ($each:ident; $($name:ident($op:ty, $reply:ident);)*) => {
        $(
            #[inline]
            fn $name<S: ReplySink>(&self, req: &RequestHeader, op: $op, reply: $reply<S>) {
                $each!(self, |fs| fs.$name(req, op, reply))
            }
        )*
    };
}

/// Implements [`Filesystem`] for `$ty` by delegating every method to the
/// backend `$each!` finds in it.
macro_rules! delegate_filesystem {
    ($ty:ty, $each:ident) => {
        impl Filesystem for $ty {
            fn init(&self, kernel: &KernelInit, config: &mut InitConfig) -> Result<(), Errno> {
                $each!(self, |fs| fs.init(kernel, config))
            }

            fn init_done(&self, negotiated: &Negotiated) {
                $each!(self, |fs| fs.init_done(negotiated))
            }

            fn destroy(&self) {
                $each!(self, |fs| fs.destroy())
            }

            fn forget(&self, req: &RequestHeader, op: op::Forget) {
                $each!(self, |fs| fs.forget(req, op))
            }

            fn batch_forget(&self, req: &RequestHeader, op: op::BatchForget<'_>) {
                $each!(self, |fs| fs.batch_forget(req, op))
            }

            fn interrupt(&self, req: &RequestHeader, op: op::Interrupt<'_>) {
                $each!(self, |fs| fs.interrupt(req, op))
            }

            fn notify_reply(&self, req: &RequestHeader, op: op::NotifyReply<'_>) {
                $each!(self, |fs| fs.notify_reply(req, op))
            }

            fn readdir<S: ReplySink>(
                &self,
                req: &RequestHeader,
                op: op::Readdir<'_>,
                reply: ReplyDirectory<'_, S>,
            ) {
                $each!(self, |fs| fs.readdir(req, op, reply))
            }

            fn readdirplus<S: ReplySink>(
                &self,
                req: &RequestHeader,
                op: op::Readdirplus<'_>,
                reply: ReplyDirectory<'_, S>,
            ) {
                $each!(self, |fs| fs.readdirplus(req, op, reply))
            }

            delegate! {
                $each;
                lookup(op::Lookup<'_>, ReplyEntry);
                getattr(op::Getattr<'_>, ReplyAttr);
                setattr(op::Setattr<'_>, ReplyAttr);
                readlink(op::Readlink, ReplyData);
                symlink(op::Symlink<'_>, ReplyEntry);
                mknod(op::Mknod<'_>, ReplyEntry);
                mkdir(op::Mkdir<'_>, ReplyEntry);
                unlink(op::Unlink<'_>, ReplyEmpty);
                rmdir(op::Rmdir<'_>, ReplyEmpty);
                rename(op::Rename<'_>, ReplyEmpty);
                link(op::Link<'_>, ReplyEntry);
                open(op::Open<'_>, ReplyOpen);
                read(op::Read<'_>, ReplyData);
                write(op::Write<'_>, ReplyWrite);
                statfs(op::Statfs, ReplyStatfs);
                release(op::Release<'_>, ReplyEmpty);
                fsync(op::Fsync<'_>, ReplyEmpty);
                setxattr(op::Setxattr<'_>, ReplyEmpty);
                getxattr(op::Getxattr<'_>, ReplyXattr);
                listxattr(op::Listxattr<'_>, ReplyXattr);
                removexattr(op::Removexattr<'_>, ReplyEmpty);
                flush(op::Flush<'_>, ReplyEmpty);
                opendir(op::Opendir<'_>, ReplyOpen);
                releasedir(op::Releasedir<'_>, ReplyEmpty);
                fsyncdir(op::Fsyncdir<'_>, ReplyEmpty);
                getlk(op::Getlk<'_>, ReplyLock);
                setlk(op::Setlk<'_>, ReplyEmpty);
                access(op::Access<'_>, ReplyEmpty);
                create(op::Create<'_>, ReplyCreate);
                bmap(op::Bmap<'_>, ReplyBmap);
                ioctl(op::Ioctl<'_>, ReplyIoctl);
                poll(op::Poll<'_>, ReplyPoll);
                fallocate(op::Fallocate<'_>, ReplyEmpty);
                lseek(op::Lseek<'_>, ReplyLseek);
                copy_file_range(op::CopyFileRange<'_>, ReplyCopyFormatted);
                setupmapping(op::Setupmapping<'_>, ReplyEmpty);
                removemapping(op::Removemapping<'_>, ReplyEmpty);
                syncfs(op::Syncfs, ReplyEmpty);
                tmpfile(op::Tmpfile<'_>, ReplyCreate);
                statx(op::Statx<'_>, ReplyStatx);
            }
        }
    };
}

delegate_filesystem!(StockFs, each_variant);
delegate_filesystem!(StockRoot, each_root_variant);
