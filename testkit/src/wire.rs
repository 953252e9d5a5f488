//! Messages as they cross the channel: requests the kernel writes and the
//! replies and notifications it reads back, checked as the kernel checks
//! them.

use crate::buf::AlignedBuf;
use fuselage_core::abi::{fuse_in_header, fuse_out_header};
use fuselage_core::{IN_HEADER_LEN, OUT_HEADER_LEN};
use std::fmt;
use std::io;
use zerocopy::{FromBytes, IntoBytes};

/// Lays out one request as the kernel writes it: `header` (its `len` replaced
/// by the message's length), the opcode's argument struct `arg`, then each
/// payload part (names with their NUL, data) back to back.
///
/// ```
/// use fuselage_core::abi::{fuse_in_header, FUSE_LOOKUP};
/// use fuselage_testkit::encode_request;
/// let header = fuse_in_header { opcode: FUSE_LOOKUP, unique: 2, nodeid: 1, ..Default::default() };
/// let msg = encode_request(&header, &[], &[b"a\0"]);
/// assert_eq!(msg.len(), 42);
/// assert_eq!(&msg[0..4], &42u32.to_ne_bytes());
/// ```
pub fn encode_request(header: &fuse_in_header, arg: &[u8], payload: &[&[u8]]) -> AlignedBuf {
    let len = IN_HEADER_LEN + arg.len() + payload.iter().map(|p| p.len()).sum::<usize>();
    let header = fuse_in_header {
        len: u32::try_from(len).expect("request longer than 4 GiB"),
        ..*header
    };
    let mut msg = AlignedBuf::zeroed(len);
    let mut at = 0;
    for part in [header.as_bytes(), arg]
        .into_iter()
        .chain(payload.iter().copied())
    {
        msg[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    msg
}

/// A reply or notification that passed the kernel's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The out-header.
    pub header: fuse_out_header,
    /// Everything after the out-header.
    pub body: Vec<u8>,
}

/// Why a message from the server would be refused by the kernel (its
/// `write(2)` on `/dev/fuse` fails with `EINVAL`), or does not have the shape
/// a caller expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Shorter than a `fuse_out_header`.
    TooShort {
        /// Bytes received.
        got: usize,
    },
    /// `fuse_out_header::len` is not the number of bytes received.
    LengthMismatch {
        /// Length claimed by the header.
        header_len: u32,
        /// Bytes received.
        got: usize,
    },
    /// A reply whose `error` is positive or below -511.
    BadError {
        /// The `error` field.
        error: i32,
    },
    /// An error reply that carries a body (the kernel wants the header
    /// alone).
    ErrorWithBody {
        /// The `error` field.
        error: i32,
        /// Bytes after the header.
        body_len: usize,
    },
    /// A notification (`unique` 0) with a code the kernel does not know
    /// (`FUSE_NOTIFY_*` is 1 to 9).
    UnknownNotification {
        /// The `error` field.
        code: i32,
    },
    /// A reply to a request that is not waiting for one: never sent, not
    /// expecting a reply (FORGET, ...), or answered already. The kernel
    /// fails such a write with `ENOENT`.
    NotWaiting {
        /// The `unique` of the reply.
        unique: u64,
    },
    /// The body is not the size the caller expected.
    BodySize {
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::TooShort { got } => {
                write!(
                    f,
                    "message of {got} bytes is shorter than a fuse_out_header"
                )
            }
            ReplyError::LengthMismatch { header_len, got } => {
                write!(f, "out-header says {header_len} bytes but {got} were sent")
            }
            ReplyError::BadError { error } => {
                write!(
                    f,
                    "reply error {error} is not 0 or a negated errno below 512"
                )
            }
            ReplyError::ErrorWithBody { error, body_len } => {
                write!(f, "error reply ({error}) carries {body_len} body bytes")
            }
            ReplyError::UnknownNotification { code } => {
                write!(f, "notification code {code} is not a FUSE_NOTIFY_* code")
            }
            ReplyError::NotWaiting { unique } => write!(
                f,
                "reply to request {unique}, which is not waiting for one (never sent, \
                 no reply expected, or answered already)"
            ),
            ReplyError::BodySize { expected, got } => {
                write!(f, "reply body is {got} bytes, expected {expected}")
            }
        }
    }
}

impl std::error::Error for ReplyError {}

impl From<ReplyError> for io::Error {
    fn from(e: ReplyError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl Reply {
    /// Parses one message written by the server, with the checks of the
    /// kernel's `fuse_dev_do_write`: at least an out-header, `len` equal to
    /// the bytes written; for notifications (`unique` 0) a known code; for
    /// replies an `error` of 0 or a negated errno below 512, and nothing
    /// after the header of an error.
    pub fn parse(msg: &[u8]) -> Result<Reply, ReplyError> {
        let Ok((header, body)) = fuse_out_header::read_from_prefix(msg) else {
            return Err(ReplyError::TooShort { got: msg.len() });
        };
        if header.len as usize != msg.len() {
            return Err(ReplyError::LengthMismatch {
                header_len: header.len,
                got: msg.len(),
            });
        }
        if header.unique == 0 && !(1..=9).contains(&header.error) {
            return Err(ReplyError::UnknownNotification { code: header.error });
        }
        if header.unique != 0 {
            if header.error > 0 || header.error <= -512 {
                return Err(ReplyError::BadError {
                    error: header.error,
                });
            }
            if header.error != 0 && !body.is_empty() {
                return Err(ReplyError::ErrorWithBody {
                    error: header.error,
                    body_len: body.len(),
                });
            }
        }
        Ok(Reply {
            header,
            body: body.to_vec(),
        })
    }

    /// The message's bytes, header included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(OUT_HEADER_LEN + self.body.len());
        v.extend_from_slice(self.header.as_bytes());
        v.extend_from_slice(&self.body);
        v
    }

    /// The `unique` of the request answered (0 for a notification).
    pub fn unique(&self) -> u64 {
        self.header.unique
    }

    /// Whether this is a notification (`unique` 0) rather than a reply.
    pub fn is_notification(&self) -> bool {
        self.header.unique == 0
    }

    /// The notification code (`FUSE_NOTIFY_*`), for notifications.
    pub fn notify_code(&self) -> Option<u32> {
        self.is_notification().then_some(self.header.error as u32)
    }

    /// The (positive) errno of an error reply; `None` for success and for
    /// notifications.
    pub fn errno(&self) -> Option<i32> {
        (!self.is_notification() && self.header.error != 0).then_some(-self.header.error)
    }

    /// The body as a `T`, which must be exactly its size.
    pub fn decode<T: FromBytes>(&self) -> Result<T, ReplyError> {
        T::read_from_bytes(&self.body).map_err(|_| ReplyError::BodySize {
            expected: core::mem::size_of::<T>(),
            got: self.body.len(),
        })
    }

    /// A `T` from the start of the body and the bytes after it.
    pub fn decode_prefix<T: FromBytes>(&self) -> Result<(T, &[u8]), ReplyError> {
        T::read_from_prefix(&self.body).map_err(|_| ReplyError::BodySize {
            expected: core::mem::size_of::<T>(),
            got: self.body.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuselage_core::abi::fuse_write_out;

    fn msg(len: u32, error: i32, unique: u64, body: &[u8]) -> Vec<u8> {
        let mut v = fuse_out_header { len, error, unique }.as_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn kernel_checks() {
        assert_eq!(
            Reply::parse(&[0; 15]),
            Err(ReplyError::TooShort { got: 15 })
        );
        assert_eq!(
            Reply::parse(&msg(17, 0, 2, &[])),
            Err(ReplyError::LengthMismatch {
                header_len: 17,
                got: 16
            })
        );
        assert_eq!(
            Reply::parse(&msg(16, 1, 2, &[])),
            Err(ReplyError::BadError { error: 1 })
        );
        assert_eq!(
            Reply::parse(&msg(16, -512, 2, &[])),
            Err(ReplyError::BadError { error: -512 })
        );
        assert_eq!(
            Reply::parse(&msg(17, -2, 2, &[0])),
            Err(ReplyError::ErrorWithBody {
                error: -2,
                body_len: 1
            })
        );
        let r = Reply::parse(&msg(16, -2, 2, &[])).unwrap();
        assert_eq!(r.errno(), Some(2));
        // Notifications carry their code in `error`.
        let n = Reply::parse(&msg(24, 1, 0, &[7; 8])).unwrap();
        assert_eq!((n.errno(), n.notify_code()), (None, Some(1)));
        for code in [0, 10, -2] {
            assert_eq!(
                Reply::parse(&msg(16, code, 0, &[])),
                Err(ReplyError::UnknownNotification { code })
            );
        }
    }

    #[test]
    fn decode_wants_exact_size() {
        let r = Reply::parse(&msg(24, 0, 4, &[5, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(r.decode::<fuse_write_out>().unwrap().size, 5);
        assert_eq!(
            r.decode::<u32>(),
            Err(ReplyError::BodySize {
                expected: 4,
                got: 8
            })
        );
        let (v, rest) = r.decode_prefix::<u32>().unwrap();
        assert_eq!((v, rest.len()), (5, 4));
        assert_eq!(r.to_bytes(), msg(24, 0, 4, &[5, 0, 0, 0, 0, 0, 0, 0]));
    }
}
