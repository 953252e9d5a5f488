//! Backend panics: the request answered `EIO`, the server serving on.
//!
//! A bug in a backend method must cost one request, not the mount. Every
//! transport serves each request inside [`guarded`]: when the backend
//! panics (in a build that unwinds), the unwinding drops the request's reply
//! handle, which answers `EIO` if nothing was sent yet (see
//! `fuselage_core::reply`); `guarded` catches the panic there, says so in
//! one line naming the opcode, and the worker goes on with its next request.
//! Requests in flight on other threads are not touched.
//!
//! In a build that aborts on panic (the `static` profile) nothing can be
//! caught: the process dies, and the auto-unmount watchdog removes the mount
//! as after any other death. [`install_hook`] makes that death say why, in
//! one line, before the abort.
//!
//! Costs on the request path: two thread-local stores (the opcode and
//! `unique` being served, for the hook) and the landing pad of
//! `catch_unwind`; nothing is allocated unless a panic happens.
//!
//! A panic that leaves the backend's own state half-changed (a poisoned
//! lock, a broken invariant) is the backend's to survive; the guard only
//! keeps the connection alive.

use fuselage_core::Dispatched;
use fuselage_core::error::ParseError;
use fuselage_core::opcode::Opcode;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;

thread_local! {
    /// The request this thread is serving, as (opcode, unique); opcode 0
    /// when it serves none.
    static SERVING: Cell<(u32, u64)> = const { Cell::new((0, 0)) };
    /// What the hook saw of a panic while serving ("MESSAGE at FILE:LINE"),
    /// for [`guarded`]'s line.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The opcode and `unique` of the message starting at `header` (zeros when
/// it is shorter than a `fuse_in_header`).
fn peek(header: &[u8]) -> (u32, u64) {
    let word = |at: usize, n: usize| header.get(at..at + n);
    match (word(4, 4), word(8, 8)) {
        (Some(op), Some(unique)) => (
            u32::from_le_bytes(op.try_into().unwrap_or_default()),
            u64::from_le_bytes(unique.try_into().unwrap_or_default()),
        ),
        _ => (0, 0),
    }
}

/// Serves one request with `serve` (a call of `Dispatcher::dispatch` or
/// `dispatch_segments` on the message whose header starts at `header`),
/// catching a panic of the backend.
///
/// After a panic the request has been answered `EIO` by its reply handle
/// (unless the backend had already answered it, or moved the handle
/// elsewhere), one line on stderr says which request panicked and why, and
/// the result is what dispatch returns for a request handed to the
/// filesystem, `Dispatched::Handled(opcode)`, so the transport carries on
/// as after any other request.
#[inline]
pub fn guarded(header: &[u8], serve: impl FnOnce() -> Dispatched) -> Dispatched {
    let (opcode, unique) = peek(header);
    SERVING.with(|s| s.set((opcode, unique)));
    let outcome = panic::catch_unwind(AssertUnwindSafe(serve));
    SERVING.with(|s| s.set((0, 0)));
    match outcome {
        Ok(dispatched) => dispatched,
        Err(payload) => recovered(opcode, unique, payload.as_ref()),
    }
}

#[cold]
#[inline(never)]
fn recovered(opcode: u32, unique: u64, payload: &(dyn Any + Send)) -> Dispatched {
    let seen = CAUGHT.with(|c| c.borrow_mut().take());
    let what = match seen {
        Some(s) => s,
        None => message(payload).to_string(),
    };
    eprintln!(
        "fuselage: panic in backend serving {} (unique {unique}): {what}; answered EIO, still serving",
        opcode_name(opcode)
    );
    match Opcode::from_u32(opcode) {
        Some(op) => Dispatched::Handled(op),
        None => Dispatched::Malformed {
            error: ParseError::UnknownOpcode(opcode),
            replied: false,
        },
    }
}

/// The kernel's name of `opcode`, or `opcode N` for a number it does not
/// define.
fn opcode_name(opcode: u32) -> String {
    match Opcode::from_u32(opcode) {
        Some(op) => op.name().to_string(),
        None => format!("opcode {opcode}"),
    }
}

/// A panic payload's message (`panic!` makes a `&str` or a `String`).
fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a panic without a message)"
    }
}

/// Installs (once per process; later calls do nothing) a panic hook for a
/// serving process.
///
/// - A panic while a thread serves a request, in a build that unwinds: the
///   hook prints nothing and keeps the message and place for [`guarded`]'s
///   one line (instead of the default hook's lines beside it).
/// - In a build that aborts on panic, any panic: one line before the abort,
///   `fuselage: panic in backend serving OPCODE (unique N) at FILE:LINE:
///   MESSAGE; AFTERMATH` (`fuselage: panic at ...` outside a request),
///   where `aftermath` says what becomes of the mount, e.g. `the mount is
///   removed` when the auto-unmount watchdog guards it.
/// - Anything else goes to the hook that was installed before.
pub fn install_hook(aftermath: &'static str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let (opcode, unique) = SERVING.with(|s| s.get());
            if cfg!(panic = "abort") {
                announce_abort(info, opcode, unique, aftermath);
            } else if opcode != 0 {
                let what = describe(info);
                CAUGHT.with(|c| *c.borrow_mut() = Some(what));
            } else {
                previous(info);
            }
        }));
    });
}

/// "MESSAGE at FILE:LINE:COLUMN".
fn describe(info: &PanicHookInfo<'_>) -> String {
    let msg = message(info.payload());
    match info.location() {
        Some(l) => format!("{msg} at {}:{}:{}", l.file(), l.line(), l.column()),
        None => msg.to_string(),
    }
}

/// The one line of an abort-on-panic build.
fn announce_abort(info: &PanicHookInfo<'_>, opcode: u32, unique: u64, aftermath: &str) {
    let what = describe(info);
    if opcode != 0 {
        eprintln!(
            "fuselage: panic in backend serving {} (unique {unique}): {what}; {aftermath}",
            opcode_name(opcode)
        );
    } else {
        eprintln!("fuselage: panic: {what}; {aftermath}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: u32, unique: u64) -> [u8; 40] {
        let mut h = [0u8; 40];
        h[0..4].copy_from_slice(&40u32.to_le_bytes());
        h[4..8].copy_from_slice(&opcode.to_le_bytes());
        h[8..16].copy_from_slice(&unique.to_le_bytes());
        h
    }

    #[test]
    fn a_request_served_whole_passes_its_outcome() {
        let h = header(1, 7);
        let d = guarded(&h, || Dispatched::Destroyed);
        assert_eq!(d, Dispatched::Destroyed);
        assert_eq!(SERVING.with(|s| s.get()), (0, 0));
    }

    #[test]
    fn a_panic_is_caught_and_counts_as_handled() {
        let h = header(Opcode::Getattr as u32, 9);
        let d = guarded(&h, || panic!("boom"));
        assert_eq!(d, Dispatched::Handled(Opcode::Getattr));
        assert_eq!(SERVING.with(|s| s.get()), (0, 0));
        let d = guarded(&header(999, 1), || panic!("{}", String::from("owned")));
        assert!(matches!(
            d,
            Dispatched::Malformed {
                error: ParseError::UnknownOpcode(999),
                replied: false
            }
        ));
    }

    #[test]
    fn short_headers_peek_as_zero() {
        assert_eq!(peek(&[1, 2, 3]), (0, 0));
        assert_eq!(peek(&header(3, 5)), (3, 5));
    }
}
