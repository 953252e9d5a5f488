//! Errors of the protocol layer and the errno values they map to.
//!
//! Two kinds of failure meet at the protocol edge: a request that cannot be
//! parsed ([`ParseError`]) and an answer a filesystem gives ([`Errno`]). Both end
//! as a negative errno in a `fuse_out_header`, so both map to [`Errno`].

use core::fmt;

/// A positive Linux errno value, as a filesystem answers a request with.
///
/// The kernel expects the negated value in `fuse_out_header::error`; the reply
/// builders negate it. The associated constants cover the values filesystems
/// use; any other value can be built with `Errno(n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $val:expr, $doc:literal;)*) => {
        impl Errno {
            $(#[doc = $doc] pub const $name: Errno = Errno($val);)*

            /// The symbolic name of a well-known errno (`"ENOENT"`), or `None`.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "Operation not permitted.";
    ENOENT = 2, "No such file or directory.";
    ESRCH = 3, "No such process.";
    EINTR = 4, "Interrupted system call.";
    EIO = 5, "Input/output error.";
    ENXIO = 6, "No such device or address.";
    E2BIG = 7, "Argument list too long.";
    EBADF = 9, "Bad file descriptor.";
    EAGAIN = 11, "Resource temporarily unavailable (try again).";
    ENOMEM = 12, "Out of memory.";
    EACCES = 13, "Permission denied.";
    EFAULT = 14, "Bad address.";
    EBUSY = 16, "Device or resource busy.";
    EEXIST = 17, "File exists.";
    EXDEV = 18, "Cross-device link.";
    ENODEV = 19, "No such device.";
    ENOTDIR = 20, "Not a directory.";
    EISDIR = 21, "Is a directory.";
    EINVAL = 22, "Invalid argument.";
    ENFILE = 23, "Too many open files in system.";
    EMFILE = 24, "Too many open files.";
    ENOTTY = 25, "Inappropriate ioctl for device.";
    ETXTBSY = 26, "Text file busy.";
    EFBIG = 27, "File too large.";
    ENOSPC = 28, "No space left on device.";
    ESPIPE = 29, "Illegal seek.";
    EROFS = 30, "Read-only file system.";
    EMLINK = 31, "Too many links.";
    EPIPE = 32, "Broken pipe.";
    ERANGE = 34, "Result too large (buffer too small).";
    EDEADLK = 35, "Resource deadlock would occur.";
    ENAMETOOLONG = 36, "File name too long.";
    ENOLCK = 37, "No locks available.";
    ENOSYS = 38, "Function not implemented.";
    ENOTEMPTY = 39, "Directory not empty.";
    ELOOP = 40, "Too many levels of symbolic links.";
    ENODATA = 61, "No data available (no such extended attribute).";
    EPROTO = 71, "Protocol error.";
    EOVERFLOW = 75, "Value too large for defined data type.";
    EOPNOTSUPP = 95, "Operation not supported.";
    ENOTCONN = 107, "Transport endpoint is not connected.";
    ESTALE = 116, "Stale file handle.";
    EDQUOT = 122, "Disk quota exceeded.";
    ECANCELED = 125, "Operation canceled.";
}

impl Errno {
    /// The value for `fuse_out_header::error`: the errno negated.
    pub const fn to_wire(self) -> i32 {
        -self.0
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Errno {}

/// Why a message from the kernel could not be parsed.
///
/// Every variant says what was wrong; [`ParseError::errno`] gives the answer
/// the kernel gets when the request's `unique` can still be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than a `fuse_in_header` (40): no `unique` to reply to.
    HeaderTruncated {
        /// Bytes available.
        got: usize,
    },
    /// The buffer holding the header or the opcode's struct is not 8-byte
    /// aligned. Transports must hand over aligned buffers.
    Misaligned,
    /// `fuse_in_header::len` disagrees with the bytes received.
    LengthMismatch {
        /// Length claimed by the header.
        header_len: u32,
        /// Bytes actually received.
        got: usize,
    },
    /// The extension area (`total_extlen`) is longer than the message body.
    ExtensionsTooLong {
        /// Extension bytes claimed by the header.
        extlen: usize,
    },
    /// An opcode this protocol version does not define.
    UnknownOpcode(u32),
    /// The opcode's fixed argument struct is cut short.
    ArgumentTruncated {
        /// The opcode.
        opcode: u32,
        /// Bytes the struct needs.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// A variable-length payload (data, array) is shorter than its count says.
    PayloadTruncated {
        /// The opcode.
        opcode: u32,
    },
    /// A name or path is not terminated by a NUL byte.
    MissingNul {
        /// The opcode.
        opcode: u32,
    },
    /// A name is longer than the kernel ever sends (`FUSE_NAME_MAX`, 1024;
    /// 4096 for symlink targets).
    NameTooLong {
        /// The opcode.
        opcode: u32,
    },
    /// A directory entry name is empty or contains a `/`.
    InvalidName {
        /// The opcode.
        opcode: u32,
    },
    /// A request other than INIT arrived before INIT was answered.
    NotInitialized {
        /// The opcode.
        opcode: u32,
    },
    /// INIT arrived again after the session was agreed (a Linux kernel
    /// sends it once). It is refused with `EIO`, as libfuse does; the
    /// session agreed first stays in force.
    RepeatedInit,
    /// A request that expects a reply carries `unique` 0. A reply with
    /// `unique` 0 would read as a notification, so none is sent.
    ZeroUnique {
        /// The opcode.
        opcode: u32,
    },
    /// A READ asks for more bytes than the session agreed a request may
    /// carry (`max_pages` pages). A Linux kernel never does; serving it
    /// would make a backend stage gigabytes for one reply.
    ReadTooLarge {
        /// Bytes asked for.
        size: u32,
        /// The agreed limit.
        limit: u32,
    },
}

impl ParseError {
    /// The errno the kernel gets for this request.
    pub const fn errno(&self) -> Errno {
        match self {
            ParseError::UnknownOpcode(_) => Errno::ENOSYS,
            ParseError::NameTooLong { .. } => Errno::ENAMETOOLONG,
            ParseError::NotInitialized { .. } | ParseError::RepeatedInit => Errno::EIO,
            _ => Errno::EINVAL,
        }
    }

    /// Whether the `unique` in the header can be trusted enough to reply.
    ///
    /// A message too short for a header, misaligned, or whose length disagrees
    /// with what was received is dropped instead, and so is one whose
    /// `unique` is 0 (its reply would read as a notification).
    pub const fn can_reply(&self) -> bool {
        !matches!(
            self,
            ParseError::HeaderTruncated { .. }
                | ParseError::Misaligned
                | ParseError::LengthMismatch { .. }
                | ParseError::ZeroUnique { .. }
        )
    }

    /// A small number per kind of error (the variant, fields aside), below
    /// [`ParseError::KINDS`]: what a transport needs to rate-limit its log
    /// per kind without allocating.
    pub const fn kind(&self) -> usize {
        match self {
            ParseError::HeaderTruncated { .. } => 0,
            ParseError::Misaligned => 1,
            ParseError::LengthMismatch { .. } => 2,
            ParseError::ExtensionsTooLong { .. } => 3,
            ParseError::UnknownOpcode(_) => 4,
            ParseError::ArgumentTruncated { .. } => 5,
            ParseError::PayloadTruncated { .. } => 6,
            ParseError::MissingNul { .. } => 7,
            ParseError::NameTooLong { .. } => 8,
            ParseError::InvalidName { .. } => 9,
            ParseError::NotInitialized { .. } => 10,
            ParseError::RepeatedInit => 11,
            ParseError::ZeroUnique { .. } => 12,
            ParseError::ReadTooLarge { .. } => 13,
        }
    }

    /// How many values [`ParseError::kind`] takes.
    pub const KINDS: usize = 14;
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::HeaderTruncated { got } => {
                write!(
                    f,
                    "message of {got} bytes is shorter than a fuse_in_header (40)"
                )
            }
            ParseError::Misaligned => f.write_str("request buffer is not 8-byte aligned"),
            ParseError::LengthMismatch { header_len, got } => {
                write!(f, "header says {header_len} bytes but {got} were received")
            }
            ParseError::ExtensionsTooLong { extlen } => {
                write!(f, "request extensions of {extlen} bytes exceed the message")
            }
            ParseError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            ParseError::ArgumentTruncated {
                opcode,
                needed,
                got,
            } => write!(
                f,
                "opcode {opcode}: argument needs {needed} bytes, got {got}"
            ),
            ParseError::PayloadTruncated { opcode } => {
                write!(f, "opcode {opcode}: payload shorter than its count")
            }
            ParseError::MissingNul { opcode } => {
                write!(f, "opcode {opcode}: name is not NUL-terminated")
            }
            ParseError::NameTooLong { opcode } => write!(f, "opcode {opcode}: name too long"),
            ParseError::InvalidName { opcode } => {
                write!(f, "opcode {opcode}: entry name is empty or contains '/'")
            }
            ParseError::NotInitialized { opcode } => {
                write!(f, "opcode {opcode} before INIT")
            }
            ParseError::RepeatedInit => {
                f.write_str("INIT after the session was agreed (refused; the first INIT stands)")
            }
            ParseError::ZeroUnique { opcode } => write!(
                f,
                "opcode {opcode} with unique 0 (a reply would read as a notification)"
            ),
            ParseError::ReadTooLarge { size, limit } => write!(
                f,
                "READ of {size} bytes, more than the {limit} a request may carry"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_wire_is_negative() {
        assert_eq!(Errno::ENOENT.to_wire(), -2);
        assert_eq!(Errno::ENOSYS.name(), Some("ENOSYS"));
        assert_eq!(Errno(9999).name(), None);
    }

    #[test]
    fn parse_errors_map_to_errno() {
        assert_eq!(ParseError::UnknownOpcode(77).errno(), Errno::ENOSYS);
        assert_eq!(
            ParseError::NameTooLong { opcode: 1 }.errno(),
            Errno::ENAMETOOLONG
        );
        assert!(!ParseError::HeaderTruncated { got: 3 }.can_reply());
        assert!(ParseError::MissingNul { opcode: 1 }.can_reply());
        assert!(!ParseError::ZeroUnique { opcode: 1 }.can_reply());
        assert_eq!(ParseError::RepeatedInit.errno(), Errno::EIO);
        let too_large = ParseError::ReadTooLarge { size: 2, limit: 1 };
        assert_eq!(too_large.errno(), Errno::EINVAL);
        assert!(too_large.can_reply());
        assert_eq!(too_large.kind(), ParseError::KINDS - 1);
    }
}
