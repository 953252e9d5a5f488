//! # fuselage-core
//!
//! The FUSE wire protocol (7.45, as Linux 6.18 speaks it) as a `#![no_std]`
//! library that never allocates. It is the heart of fuselage: transports feed
//! it bytes, backends answer through it.
//!
//! - [`abi`]: the kernel's structs and constants as zerocopy types, under the
//!   kernel's own names, each with a compile-time size assertion.
//! - [`request`]: a borrowed, length-checked view of a request ([`Request`],
//!   [`Operation`]) parsed from one contiguous buffer (`/dev/fuse`) or from
//!   header/argument/payload segments (FUSE-over-io_uring).
//! - [`reply`]: typed reply handles that cannot answer twice, sending their
//!   parts (or a file range for splice) through a transport's [`ReplySink`].
//! - [`init`]: INIT negotiation ([`InitFlags`], [`InitConfig`], [`Negotiated`]).
//! - [`dirent`]: READDIR/READDIRPLUS packing up to the kernel's size.
//! - [`notify`]: notifications (invalidation, store, retrieve, poll, ...).
//! - [`filesystem`]: the inode-based [`Filesystem`] trait backends implement.
//! - [`op`]: the borrowed view of each operation's arguments a
//!   [`Filesystem`] method receives (`op::Read` with `ino()`, `fh()`, ...).
//! - [`dispatch`]: the [`Dispatcher`] that ties them together.
//! - [`trace`]: hooks that let a debugging front end see every request and
//!   reply (off, and free, unless installed).
//!
//! The path of a request: a transport reads into its own fixed buffer, calls
//! [`Dispatcher::dispatch`], which parses into an [`Operation`] and calls the
//! [`Filesystem`] method with one borrowed [`op`] view of the arguments and a
//! reply handle; the backend answers with bytes, a [`FileRange`] (which
//! borrows its descriptor), bytes written straight into the transport's own
//! buffer ([`reply::ReplyData::fill`]) or a passthrough backing id; the
//! handle writes the out header and reply struct on the stack and gives the
//! parts (never more than [`MAX_SINK_PARTS`]) to the sink, which sends them
//! with one `writev`, a splice, or a ring commit.
//!
//! Companion crates: `fuselage-linux` (mounting, the channel, INIT),
//! `fuselage-transport-blocking` (read/writev), `fuselage-transport-uring`
//! (io_uring), `fuselage-backends` (memfs,
//! passthrough) and `fuselage` (facade and binary).
#![cfg_attr(not(feature = "std"), no_std)]

pub mod abi;
pub mod dirent;
pub mod dispatch;
pub mod error;
pub mod filesystem;
pub mod init;
pub mod notify;
pub mod op;
pub mod opcode;
pub mod reply;
pub mod request;
pub mod trace;

pub use dirent::{DirentBuf, DirentError};
pub use dispatch::{Dispatched, Dispatcher};
pub use error::{Errno, ParseError};
pub use filesystem::{Filesystem, RequestHeader, SetAttr, TimeOrNow};
pub use init::{InitConfig, InitFlags, KernelInit, Negotiated};
pub use notify::Notifier;
pub use opcode::Opcode;
pub use reply::{
    BorrowedFd, DeferredSink, DeferredVTable, FileRange, MAX_REPLY_PARTS, MAX_SINK_PARTS,
    OUT_HEADER_LEN, ReplySink,
};
pub use request::{IN_HEADER_LEN, Operation, ParseContext, Request};
