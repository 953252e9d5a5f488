//! Debug mode (`-o debug`, `-d`, `FUSELAGE_LOG=debug`): one line on stderr
//! per request and its reply, as libfuse's `-d` shows the conversation.
//!
//! ```text
//! fuselage[debug]: LOOKUP unique=4 nodeid=1 in=50 out=144 errno=0 us=12
//! fuselage[debug]: GETATTR unique=6 nodeid=2 in=56 out=16 errno=ENOENT us=3
//! fuselage[debug]: FORGET unique=8 nodeid=2 in=48 noreply us=1
//! fuselage[debug]: READ unique=10 nodeid=3 in=80 deferred us=5
//! fuselage[debug]: reply unique=10 out=4112 errno=0
//! ```
//!
//! `in` and `out` are the whole messages' lengths (headers included), `us`
//! the microseconds from the request reaching the dispatcher to its reply.
//! A reply sent later from another thread (a deferred reply) gets its own
//! `reply` line.
//!
//! It works through [`fuselage_core::trace`] hooks, which cost nothing
//! measurable when not installed. When installed, each line is formatted
//! into a buffer on the stack and written with one write(2): no allocation,
//! so the allocation-counting tests hold in debug mode too.

use fuselage_core::abi::{fuse_in_header, fuse_out_header};
use fuselage_core::trace::{self, TraceHooks};
use fuselage_core::{Errno, Opcode};
use std::cell::Cell;
use std::fmt::Write;
use std::time::Instant;

/// The request this thread is serving, until its reply or the end of its
/// dispatch.
#[derive(Clone, Copy)]
struct Pending {
    unique: u64,
    opcode: u32,
    nodeid: u64,
    len: u32,
    start: Instant,
    replied: bool,
}

thread_local! {
    static PENDING: Cell<Option<Pending>> = const { Cell::new(None) };
}

static HOOKS: TraceHooks = TraceHooks {
    request: on_request,
    reply: on_reply,
    done: on_done,
};

/// Turns debug mode on for the rest of the process.
pub fn enable() {
    trace::install(&HOOKS);
}

fn on_request(h: &fuse_in_header) {
    PENDING.set(Some(Pending {
        unique: h.unique,
        opcode: h.opcode,
        nodeid: h.nodeid,
        len: h.len,
        start: Instant::now(),
        replied: false,
    }));
}

fn on_reply(h: &fuse_out_header) {
    let mut line = Line::new();
    match PENDING.get() {
        Some(p) if p.unique == h.unique && !p.replied => {
            PENDING.set(Some(Pending { replied: true, ..p }));
            request_words(&mut line, &p);
            let _ = write!(line, " out={}", h.len);
            errno_word(&mut line, h.error);
            let _ = write!(line, " us={}", p.start.elapsed().as_micros());
        }
        _ => {
            let _ = write!(line, "reply unique={} out={}", h.unique, h.len);
            errno_word(&mut line, h.error);
        }
    }
    line.emit();
}

fn on_done(h: &fuse_in_header) {
    let Some(p) = PENDING.take() else { return };
    if p.unique != h.unique || p.replied {
        return;
    }
    let mut line = Line::new();
    request_words(&mut line, &p);
    let no_reply = Opcode::from_u32(p.opcode).is_some_and(|op| op.is_no_reply());
    let _ = write!(
        line,
        " {} us={}",
        if no_reply { "noreply" } else { "deferred" },
        p.start.elapsed().as_micros()
    );
    line.emit();
}

fn request_words(line: &mut Line, p: &Pending) {
    match Opcode::from_u32(p.opcode) {
        Some(op) => {
            let _ = write!(line, "{}", Upper(op.name()));
        }
        None => {
            let _ = write!(line, "OPCODE_{}", p.opcode);
        }
    }
    let _ = write!(
        line,
        " unique={} nodeid={} in={}",
        p.unique, p.nodeid, p.len
    );
}

fn errno_word(line: &mut Line, error: i32) {
    let errno = error.unsigned_abs() as i32;
    match Errno(errno).name() {
        Some(name) if errno != 0 => {
            let _ = write!(line, " errno={name}");
        }
        _ => {
            let _ = write!(line, " errno={errno}");
        }
    }
}

/// Displays a name in upper case, inserting `_` between words
/// (`BatchForget` -> `BATCH_FORGET`), as the kernel names opcodes.
struct Upper<'a>(&'a str);

impl std::fmt::Display for Upper<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.char_indices() {
            if i > 0 && c.is_ascii_uppercase() {
                f.write_char('_')?;
            }
            f.write_char(c.to_ascii_uppercase())?;
        }
        Ok(())
    }
}

/// One line of output, built on the stack (longer lines are cut).
struct Line {
    buf: [u8; 192],
    len: usize,
}

const PREFIX: &[u8] = b"fuselage[debug]: ";

impl Line {
    fn new() -> Line {
        let mut line = Line {
            buf: [0; 192],
            len: 0,
        };
        line.buf[..PREFIX.len()].copy_from_slice(PREFIX);
        line.len = PREFIX.len();
        line
    }

    /// Writes the line and its newline to stderr with one write(2).
    fn emit(mut self) {
        let end = self.len.min(self.buf.len() - 1);
        self.buf[end] = b'\n';
        // SAFETY: writing initialized bytes of a live buffer to fd 2; a
        // failed or short write only loses debug output.
        unsafe { libc::write(2, self.buf.as_ptr().cast(), end + 1) };
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_names_as_the_kernel_spells_them() {
        assert_eq!(Upper("Lookup").to_string(), "LOOKUP");
        assert_eq!(Upper("BatchForget").to_string(), "BATCH_FORGET");
        let mut line = Line::new();
        let _ = write!(line, "{}", "x".repeat(500));
        assert_eq!(line.len, line.buf.len() - 1);
    }
}
