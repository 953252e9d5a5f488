//! [`Recorder`]: a reply sink that keeps a backend's answer for the router
//! to rewrite (node ids, inode numbers, directory listings) before it
//! answers the kernel through the real reply handle.
//!
//! The backend answers into the recorder while the router waits in the same
//! call; the recorder cannot be deferred, so a backend answers before it
//! returns. Nothing is allocated: the reply's body is copied into the
//! recorder (entry, attributes, statx, create: at most [`BODY_MAX`] bytes),
//! and a directory listing stays in the router's own buffer, only its
//! length being recorded.

use core::cell::Cell;
use fuselage_core::abi::fuse_out_header;
use fuselage_core::error::Errno;
use fuselage_core::reply::{FileRange, OUT_HEADER_LEN, ReplySink};

/// The largest reply body the recorder copies (a `fuse_statx_out`).
pub const BODY_MAX: usize = 288;

/// What a backend answered.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// Nothing yet (a handle dropped unanswered sends `EIO`, so a backend
    /// that returned leaves something).
    Nothing,
    /// An error.
    Error(Errno),
    /// A successful reply whose body is `len` bytes; the first
    /// [`BODY_MAX`] are in the recorder.
    Body {
        /// The body's length.
        len: usize,
    },
}

/// A reply sink that records the answer instead of sending it.
#[derive(Debug)]
pub struct Recorder {
    answer: Cell<Answer>,
    body: Cell<[u8; BODY_MAX]>,
    data_at: Cell<usize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder {
            answer: Cell::new(Answer::Nothing),
            body: Cell::new([0; BODY_MAX]),
            data_at: Cell::new(0),
        }
    }

    /// What was answered.
    pub fn answer(&self) -> Answer {
        self.answer.get()
    }

    /// The address of the reply's first part after the header: a
    /// directory listing must be the router's own buffer.
    pub fn data_at(&self) -> usize {
        self.data_at.get()
    }

    /// The recorded body's first bytes (up to [`BODY_MAX`]).
    pub fn body(&self) -> [u8; BODY_MAX] {
        self.body.get()
    }
}

impl ReplySink for &Recorder {
    fn send(&self, parts: &[&[u8]]) {
        let Some(header) = fuse_out_header::of_reply(parts) else {
            return self.answer.set(Answer::Error(Errno::EIO));
        };
        if header.error != 0 {
            return self.answer.set(Answer::Error(Errno(-header.error)));
        }
        self.data_at
            .set(parts.get(1).map_or(0, |p| p.as_ptr() as usize));
        let mut body = [0u8; BODY_MAX];
        let mut len = 0usize;
        let mut first = true;
        for part in parts {
            // The header is the first part's first bytes.
            let part = if first {
                first = false;
                part.get(OUT_HEADER_LEN..).unwrap_or(&[])
            } else {
                part
            };
            if len < BODY_MAX {
                let n = part.len().min(BODY_MAX - len);
                body[len..len + n].copy_from_slice(&part[..n]);
            }
            len += part.len();
        }
        self.body.set(body);
        self.answer.set(Answer::Body { len });
    }

    fn send_file(&self, _parts: &[&[u8]], _file: FileRange<'_>) {
        // Only data replies carry files, and the router never records those.
        self.answer.set(Answer::Error(Errno::EIO));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuselage_core::reply::{ReplyAttr, ReplyEmpty};
    use std::time::Duration;

    #[test]
    fn records_errors_and_bodies() {
        let r = Recorder::new();
        ReplyEmpty::new(7, &r).error(Errno::EXDEV);
        assert!(matches!(r.answer(), Answer::Error(Errno::EXDEV)));
        let r = Recorder::new();
        let attr = fuselage_core::abi::fuse_attr {
            ino: 9,
            ..Default::default()
        };
        ReplyAttr::new(7, &r).attr(Duration::from_secs(1), &attr);
        assert!(matches!(r.answer(), Answer::Body { len: 104 }));
        assert_eq!(r.body()[0], 1); // attr_valid
        assert_eq!(r.body()[16], 9); // attr.ino
    }
}
