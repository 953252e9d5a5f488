//! Tracing hooks: let a debugging front end see every request and reply.
//!
//! A program that wants to show the conversation with the kernel (as
//! libfuse's `-d` does) installs a [`TraceHooks`] once with [`install`].
//! From then on [`Dispatcher`](crate::Dispatcher) calls
//! [`request`](TraceHooks::request) before it serves a parsed request and
//! [`done`](TraceHooks::done) when serving returns, and every reply handle
//! calls [`reply`](TraceHooks::reply) with the out header it is about to
//! send (on whichever thread answers, so deferred replies are seen too).
//!
//! Why hooks here and not in the transports: request and reply both pass
//! through this crate whatever the transport (blocking, uring-rw, native
//! io_uring, a socket), so one place sees them all. Why a process-wide
//! pointer and not a type parameter: a second instantiation of the
//! dispatcher (and of every backend method, which are generic over the
//! reply sink) would double the code of a binary that picks debug mode at
//! run time. When nothing is installed the cost is one load of a pointer
//! and a branch that is never taken, per request and per reply; nothing
//! allocates either way.
//!
//! ```
//! use fuselage_core::trace::{self, TraceHooks};
//! use fuselage_core::abi::{fuse_in_header, fuse_out_header};
//!
//! fn request(_h: &fuse_in_header) {}
//! fn reply(_h: &fuse_out_header) {}
//! fn done(_h: &fuse_in_header) {}
//! static HOOKS: TraceHooks = TraceHooks { request, reply, done };
//! trace::install(&HOOKS);
//! # trace::uninstall();
//! ```

use crate::abi::{fuse_in_header, fuse_out_header};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The functions called for each request and reply. They run on the
/// serving threads, inside the request path: keep them short, and do not
/// allocate if the program counts allocations.
#[derive(Debug)]
pub struct TraceHooks {
    /// A parsed request is about to be served (INIT included). Malformed
    /// messages never get here, but their error replies do reach `reply`.
    pub request: fn(&fuse_in_header),
    /// A reply is about to be handed to the transport: `len` is the whole
    /// message's length, `error` the negative errno (0 for success).
    pub reply: fn(&fuse_out_header),
    /// Serving the request returned: answered, deferred to another thread,
    /// or (FORGET, BATCH_FORGET, INTERRUPT) needing no answer.
    pub done: fn(&fuse_in_header),
}

static HOOKS: AtomicPtr<TraceHooks> = AtomicPtr::new(ptr::null_mut());

/// Installs `hooks` for every dispatcher and reply in this process,
/// replacing any installed before.
pub fn install(hooks: &'static TraceHooks) {
    HOOKS.store(ptr::from_ref(hooks).cast_mut(), Ordering::Release);
}

/// Removes the installed hooks (requests already being served may still
/// call them).
pub fn uninstall() {
    HOOKS.store(ptr::null_mut(), Ordering::Release);
}

/// The installed hooks, if any.
#[inline(always)]
pub fn hooks() -> Option<&'static TraceHooks> {
    let p = HOOKS.load(Ordering::Acquire);
    // SAFETY: the pointer is null or was made from a `&'static TraceHooks`
    // by `install`, so it is valid and immutable for the rest of the program.
    unsafe { p.cast_const().as_ref() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(_: &fuse_in_header) {}
    fn reply(_: &fuse_out_header) {}
    fn done(_: &fuse_in_header) {}
    static TEST_HOOKS: TraceHooks = TraceHooks {
        request,
        reply,
        done,
    };

    #[test]
    fn install_and_uninstall() {
        install(&TEST_HOOKS);
        assert!(hooks().is_some_and(|h| ptr::eq(h, &TEST_HOOKS)));
        uninstall();
        assert!(hooks().is_none());
    }
}
