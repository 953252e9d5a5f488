//! Parsing requests: a typed, borrowed view of one message from the kernel.
//!
//! A request is three segments: the 40-byte `fuse_in_header`, the opcode's
//! fixed argument struct, and a payload (names, data, arrays). `/dev/fuse`
//! delivers them contiguously ([`Request::parse`]); FUSE-over-io_uring
//! delivers the header and the argument struct in the ring entry's header
//! buffer and the payload in its own buffer ([`Request::parse_segments`]).
//! Both end in the same [`Request`], whose [`Operation`] borrows every field
//! from the caller's buffers: nothing is copied but the INIT and SETXATTR
//! arguments, whose size depends on the protocol version.
//!
//! Lengths are checked once, up front; after that no accessor can fail or
//! read out of bounds. Buffers must be 8-byte aligned (transports allocate
//! them so); a misaligned buffer is an error, not undefined behavior.

use crate::abi::*;
use crate::error::ParseError;
use crate::opcode::Opcode;
use core::ffi::CStr;
use zerocopy::{FromBytes, Immutable, KnownLayout};

/// Longest directory entry name the kernel sends (`FUSE_NAME_MAX`).
pub const NAME_MAX: usize = 1024;
/// Longest symlink target (`PATH_MAX`, without the NUL).
pub const SYMLINK_MAX: usize = 4095;
/// Longest extended attribute name (`XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;

/// What the parser must know of the connection: sizes of some argument
/// structs depend on the agreed protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseContext {
    /// Agreed protocol minor.
    pub minor: u32,
    /// Whether `SETXATTR_EXT` was agreed (16-byte `fuse_setxattr_in`).
    pub setxattr_ext: bool,
}

impl ParseContext {
    /// The context before INIT and for the newest protocol.
    pub const CURRENT: ParseContext = ParseContext {
        minor: FUSE_KERNEL_MINOR_VERSION,
        setxattr_ext: false,
    };
}

impl Default for ParseContext {
    fn default() -> Self {
        ParseContext::CURRENT
    }
}

/// The arguments of SETXATTR, copied out because their size depends on
/// `SETXATTR_EXT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetxattrArgs {
    /// Value size.
    pub size: u32,
    /// `XATTR_CREATE` / `XATTR_REPLACE`.
    pub flags: u32,
    /// `FUSE_SETXATTR_ACL_KILL_SGID` (only with `SETXATTR_EXT`).
    pub setxattr_flags: u32,
}

/// The `fuse_removemapping_one` array of a REMOVEMAPPING request, viewed in
/// place without alignment requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovemappingEntries<'a> {
    bytes: &'a [u8],
}

impl<'a> RemovemappingEntries<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.bytes.len() / core::mem::size_of::<fuse_removemapping_one>()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw bytes of the array (a multiple of 16).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The entries, read by value.
    pub fn iter(&self) -> impl Iterator<Item = fuse_removemapping_one> + 'a {
        self.bytes
            .chunks_exact(core::mem::size_of::<fuse_removemapping_one>())
            .filter_map(|c| fuse_removemapping_one::read_from_bytes(c).ok())
    }
}

/// One decoded request: the header and its operation.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The in-header as the kernel wrote it.
    pub header: &'a fuse_in_header,
    /// The decoded operation.
    pub operation: Operation<'a>,
    /// Request extensions (`total_extlen`), e.g. security context or
    /// supplementary groups; empty unless such flags were agreed.
    pub extensions: &'a [u8],
}

/// A request's operation with its arguments, borrowed from the buffer.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)] // fields are named as in the protocol
pub enum Operation<'a> {
    /// LOOKUP `name` in directory `header.nodeid`.
    Lookup { name: &'a CStr },
    /// FORGET `arg.nlookup` references of `header.nodeid`.
    Forget { arg: &'a fuse_forget_in },
    /// GETATTR of `header.nodeid`.
    Getattr { arg: &'a fuse_getattr_in },
    /// SETATTR of `header.nodeid`.
    Setattr { arg: &'a fuse_setattr_in },
    /// READLINK of `header.nodeid`.
    Readlink,
    /// SYMLINK `name` -> `target` in directory `header.nodeid`.
    Symlink { name: &'a CStr, target: &'a CStr },
    /// MKNOD `name` in directory `header.nodeid`.
    Mknod {
        arg: &'a fuse_mknod_in,
        name: &'a CStr,
    },
    /// MKDIR `name` in directory `header.nodeid`.
    Mkdir {
        arg: &'a fuse_mkdir_in,
        name: &'a CStr,
    },
    /// UNLINK `name` from directory `header.nodeid`.
    Unlink { name: &'a CStr },
    /// RMDIR `name` from directory `header.nodeid`.
    Rmdir { name: &'a CStr },
    /// RENAME `name` in `header.nodeid` to `newname` in `arg.newdir`.
    Rename {
        arg: &'a fuse_rename_in,
        name: &'a CStr,
        newname: &'a CStr,
    },
    /// LINK `arg.oldnodeid` as `name` in directory `header.nodeid`.
    Link {
        arg: &'a fuse_link_in,
        name: &'a CStr,
    },
    /// OPEN `header.nodeid`.
    Open { arg: &'a fuse_open_in },
    /// READ from `header.nodeid`.
    Read { arg: &'a fuse_read_in },
    /// WRITE `data` (exactly `arg.size` bytes) to `header.nodeid`.
    Write {
        arg: &'a fuse_write_in,
        data: &'a [u8],
    },
    /// STATFS of the filesystem holding `header.nodeid`.
    Statfs,
    /// RELEASE an open file.
    Release { arg: &'a fuse_release_in },
    /// FSYNC an open file.
    Fsync { arg: &'a fuse_fsync_in },
    /// SETXATTR `name` = `value` on `header.nodeid`.
    Setxattr {
        arg: SetxattrArgs,
        name: &'a CStr,
        value: &'a [u8],
    },
    /// GETXATTR `name` of `header.nodeid`.
    Getxattr {
        arg: &'a fuse_getxattr_in,
        name: &'a CStr,
    },
    /// LISTXATTR of `header.nodeid`.
    Listxattr { arg: &'a fuse_getxattr_in },
    /// REMOVEXATTR `name` of `header.nodeid`.
    Removexattr { name: &'a CStr },
    /// FLUSH an open file (on close).
    Flush { arg: &'a fuse_flush_in },
    /// INIT; the argument is zero-extended from old kernels' 16 bytes.
    Init { arg: fuse_init_in },
    /// OPENDIR `header.nodeid`.
    Opendir { arg: &'a fuse_open_in },
    /// READDIR an open directory.
    Readdir { arg: &'a fuse_read_in },
    /// RELEASEDIR an open directory.
    Releasedir { arg: &'a fuse_release_in },
    /// FSYNCDIR an open directory.
    Fsyncdir { arg: &'a fuse_fsync_in },
    /// GETLK: test a lock.
    Getlk { arg: &'a fuse_lk_in },
    /// SETLK: set a lock without waiting.
    Setlk { arg: &'a fuse_lk_in },
    /// SETLKW: set a lock, waiting.
    Setlkw { arg: &'a fuse_lk_in },
    /// ACCESS check on `header.nodeid`.
    Access { arg: &'a fuse_access_in },
    /// CREATE and open `name` in directory `header.nodeid`.
    Create {
        arg: &'a fuse_create_in,
        name: &'a CStr,
    },
    /// INTERRUPT request `arg.unique`.
    Interrupt { arg: &'a fuse_interrupt_in },
    /// BMAP a block of `header.nodeid`.
    Bmap { arg: &'a fuse_bmap_in },
    /// DESTROY the connection's filesystem state.
    Destroy,
    /// IOCTL with `data` input bytes (`arg.in_size`).
    Ioctl {
        arg: &'a fuse_ioctl_in,
        data: &'a [u8],
    },
    /// POLL an open file.
    Poll { arg: &'a fuse_poll_in },
    /// Answer to NOTIFY_RETRIEVE `header.unique`: `data` of `header.nodeid`.
    NotifyReply {
        arg: &'a fuse_notify_retrieve_in,
        data: &'a [u8],
    },
    /// BATCH_FORGET of `nodes`.
    BatchForget { nodes: &'a [fuse_forget_one] },
    /// FALLOCATE on an open file.
    Fallocate { arg: &'a fuse_fallocate_in },
    /// READDIRPLUS an open directory.
    Readdirplus { arg: &'a fuse_read_in },
    /// RENAME2 with flags.
    Rename2 {
        arg: &'a fuse_rename2_in,
        name: &'a CStr,
        newname: &'a CStr,
    },
    /// LSEEK (SEEK_DATA / SEEK_HOLE) on an open file.
    Lseek { arg: &'a fuse_lseek_in },
    /// COPY_FILE_RANGE from `header.nodeid` (32-bit result).
    CopyFileRange { arg: &'a fuse_copy_file_range_in },
    /// SETUPMAPPING (DAX).
    Setupmapping { arg: &'a fuse_setupmapping_in },
    /// REMOVEMAPPING (DAX) of `entries`.
    Removemapping { entries: RemovemappingEntries<'a> },
    /// SYNCFS.
    Syncfs { arg: &'a fuse_syncfs_in },
    /// TMPFILE in directory `header.nodeid`.
    Tmpfile {
        arg: &'a fuse_create_in,
        name: &'a CStr,
    },
    /// STATX of `header.nodeid`.
    Statx { arg: &'a fuse_statx_in },
    /// COPY_FILE_RANGE_64 (64-bit result).
    CopyFileRange64 { arg: &'a fuse_copy_file_range_in },
    /// CUSE_INIT.
    CuseInit { arg: &'a fuse_cuse_init_in },
}

/// Bytes of a [`fuse_in_header`] (40): where a request's arguments start.
pub const IN_HEADER_LEN: usize = core::mem::size_of::<fuse_in_header>();

/// Size of the fixed argument struct of `op`, as the kernel sends it.
pub fn arg_size(op: Opcode, ctx: ParseContext) -> usize {
    use core::mem::size_of;
    match op {
        Opcode::Lookup
        | Opcode::Readlink
        | Opcode::Symlink
        | Opcode::Unlink
        | Opcode::Rmdir
        | Opcode::Statfs
        | Opcode::Removexattr
        | Opcode::Destroy => 0,
        Opcode::Forget => size_of::<fuse_forget_in>(),
        Opcode::Getattr => size_of::<fuse_getattr_in>(),
        Opcode::Setattr => size_of::<fuse_setattr_in>(),
        Opcode::Mknod => size_of::<fuse_mknod_in>(),
        Opcode::Mkdir => size_of::<fuse_mkdir_in>(),
        Opcode::Rename => size_of::<fuse_rename_in>(),
        Opcode::Link => size_of::<fuse_link_in>(),
        Opcode::Open | Opcode::Opendir => size_of::<fuse_open_in>(),
        Opcode::Read | Opcode::Readdir | Opcode::Readdirplus => size_of::<fuse_read_in>(),
        Opcode::Write => size_of::<fuse_write_in>(),
        Opcode::Release | Opcode::Releasedir => size_of::<fuse_release_in>(),
        Opcode::Fsync | Opcode::Fsyncdir => size_of::<fuse_fsync_in>(),
        Opcode::Setxattr => {
            if ctx.setxattr_ext {
                size_of::<fuse_setxattr_in>()
            } else {
                FUSE_COMPAT_SETXATTR_IN_SIZE
            }
        }
        Opcode::Getxattr | Opcode::Listxattr => size_of::<fuse_getxattr_in>(),
        Opcode::Flush => size_of::<fuse_flush_in>(),
        Opcode::Init => size_of::<fuse_init_in>(),
        Opcode::Getlk | Opcode::Setlk | Opcode::Setlkw => size_of::<fuse_lk_in>(),
        Opcode::Access => size_of::<fuse_access_in>(),
        Opcode::Create | Opcode::Tmpfile => size_of::<fuse_create_in>(),
        Opcode::Interrupt => size_of::<fuse_interrupt_in>(),
        Opcode::Bmap => size_of::<fuse_bmap_in>(),
        Opcode::Ioctl => size_of::<fuse_ioctl_in>(),
        Opcode::Poll => size_of::<fuse_poll_in>(),
        Opcode::NotifyReply => size_of::<fuse_notify_retrieve_in>(),
        Opcode::BatchForget => size_of::<fuse_batch_forget_in>(),
        Opcode::Fallocate => size_of::<fuse_fallocate_in>(),
        Opcode::Rename2 => size_of::<fuse_rename2_in>(),
        Opcode::Lseek => size_of::<fuse_lseek_in>(),
        Opcode::CopyFileRange | Opcode::CopyFileRange64 => size_of::<fuse_copy_file_range_in>(),
        Opcode::Setupmapping => size_of::<fuse_setupmapping_in>(),
        Opcode::Removemapping => size_of::<fuse_removemapping_in>(),
        Opcode::Syncfs => size_of::<fuse_syncfs_in>(),
        Opcode::Statx => size_of::<fuse_statx_in>(),
        Opcode::CuseInit => size_of::<fuse_cuse_init_in>(),
    }
}

/// Reads the `fuse_in_header` at the start of `buf` (alignment and length
/// checked). Useful to recover `unique` when the rest fails to parse.
pub fn parse_header(buf: &[u8]) -> Result<&fuse_in_header, ParseError> {
    if buf.len() < IN_HEADER_LEN {
        return Err(ParseError::HeaderTruncated { got: buf.len() });
    }
    fuse_in_header::ref_from_prefix(buf)
        .map(|(h, _)| h)
        .map_err(|_| ParseError::Misaligned)
}

impl<'a> Request<'a> {
    /// Parses one message as read from `/dev/fuse` or a message socket:
    /// `buf` holds exactly the bytes received and must be 8-byte aligned.
    pub fn parse(buf: &'a [u8], ctx: ParseContext) -> Result<Request<'a>, ParseError> {
        let header = parse_header(buf)?;
        let len = header.len as usize;
        if len != buf.len() {
            return Err(ParseError::LengthMismatch {
                header_len: header.len,
                got: buf.len(),
            });
        }
        let body = &buf[IN_HEADER_LEN..];
        let (args, extensions) = split_extensions(header, body)?;
        let op = Opcode::from_u32(header.opcode).ok_or(ParseError::UnknownOpcode(header.opcode))?;
        let fixed = arg_size(op, ctx);
        let (op_in, payload) = if args.len() >= fixed {
            args.split_at(fixed)
        } else {
            (args, &args[args.len()..])
        };
        let operation = parse_operation(op, op_in, payload, ctx)?;
        Ok(Request {
            header,
            operation,
            extensions,
        })
    }

    /// Parses a request delivered in separate segments, as FUSE-over-io_uring
    /// does: `header` holds the in-header (the ring's 128-byte area may be
    /// passed whole), `op_in` the opcode's argument struct (likewise), and
    /// `payload` exactly the payload bytes (`payload_sz`).
    pub fn parse_segments(
        header: &'a [u8],
        op_in: &'a [u8],
        payload: &'a [u8],
        ctx: ParseContext,
    ) -> Result<Request<'a>, ParseError> {
        let header = parse_header(header)?;
        let (payload, extensions) = split_extensions(header, payload)?;
        let op = Opcode::from_u32(header.opcode).ok_or(ParseError::UnknownOpcode(header.opcode))?;
        let fixed = arg_size(op, ctx);
        let op_in = &op_in[..fixed.min(op_in.len())];
        let operation = parse_operation(op, op_in, payload, ctx)?;
        Ok(Request {
            header,
            operation,
            extensions,
        })
    }

    /// The request's unique id (what its reply must carry).
    pub fn unique(&self) -> u64 {
        self.header.unique
    }

    /// The inode the request is about (`nodeid`).
    pub fn nodeid(&self) -> u64 {
        self.header.nodeid
    }

    /// The opcode.
    pub fn opcode(&self) -> Opcode {
        self.operation.opcode()
    }

    /// Whether the kernel resent this request (bit 63 of unique, after
    /// NOTIFY_RESEND).
    pub fn is_resend(&self) -> bool {
        self.header.unique & FUSE_UNIQUE_RESEND != 0
    }
}

fn split_extensions<'a>(
    header: &fuse_in_header,
    body: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), ParseError> {
    let extlen = header.total_extlen as usize * 8;
    if extlen > body.len() {
        return Err(ParseError::ExtensionsTooLong { extlen });
    }
    Ok(body.split_at(body.len() - extlen))
}

fn arg<T: FromBytes + KnownLayout + Immutable>(op: Opcode, bytes: &[u8]) -> Result<&T, ParseError> {
    let needed = core::mem::size_of::<T>();
    if bytes.len() < needed {
        return Err(ParseError::ArgumentTruncated {
            opcode: op as u32,
            needed,
            got: bytes.len(),
        });
    }
    T::ref_from_prefix(bytes)
        .map(|(t, _)| t)
        .map_err(|_| ParseError::Misaligned)
}

/// Splits the NUL-terminated string at the start of `bytes`.
fn cstr(op: Opcode, bytes: &[u8], max: usize) -> Result<(&CStr, &[u8]), ParseError> {
    let s = CStr::from_bytes_until_nul(bytes).map_err(|_| {
        if bytes.len() > max {
            ParseError::NameTooLong { opcode: op as u32 }
        } else {
            ParseError::MissingNul { opcode: op as u32 }
        }
    })?;
    let n = s.count_bytes();
    if n > max {
        return Err(ParseError::NameTooLong { opcode: op as u32 });
    }
    Ok((s, &bytes[n + 1..]))
}

/// A directory entry name: non-empty, no `/`, at most [`NAME_MAX`].
fn entry_name(op: Opcode, bytes: &[u8]) -> Result<(&CStr, &[u8]), ParseError> {
    let (name, rest) = cstr(op, bytes, NAME_MAX)?;
    let b = name.to_bytes();
    if b.is_empty() || b.contains(&b'/') {
        return Err(ParseError::InvalidName { opcode: op as u32 });
    }
    Ok((name, rest))
}

fn data(op: Opcode, payload: &[u8], size: usize) -> Result<&[u8], ParseError> {
    payload
        .get(..size)
        .ok_or(ParseError::PayloadTruncated { opcode: op as u32 })
}

fn parse_operation<'a>(
    op: Opcode,
    a: &'a [u8],
    p: &'a [u8],
    ctx: ParseContext,
) -> Result<Operation<'a>, ParseError> {
    Ok(match op {
        Opcode::Lookup => Operation::Lookup {
            name: entry_name(op, p)?.0,
        },
        Opcode::Forget => Operation::Forget { arg: arg(op, a)? },
        Opcode::Getattr => Operation::Getattr { arg: arg(op, a)? },
        Opcode::Setattr => Operation::Setattr { arg: arg(op, a)? },
        Opcode::Readlink => Operation::Readlink,
        Opcode::Symlink => {
            let (name, rest) = entry_name(op, p)?;
            let (target, _) = cstr(op, rest, SYMLINK_MAX)?;
            Operation::Symlink { name, target }
        }
        Opcode::Mknod => Operation::Mknod {
            arg: arg(op, a)?,
            name: entry_name(op, p)?.0,
        },
        Opcode::Mkdir => Operation::Mkdir {
            arg: arg(op, a)?,
            name: entry_name(op, p)?.0,
        },
        Opcode::Unlink => Operation::Unlink {
            name: entry_name(op, p)?.0,
        },
        Opcode::Rmdir => Operation::Rmdir {
            name: entry_name(op, p)?.0,
        },
        Opcode::Rename => {
            let arg = arg(op, a)?;
            let (name, rest) = entry_name(op, p)?;
            let (newname, _) = entry_name(op, rest)?;
            Operation::Rename { arg, name, newname }
        }
        Opcode::Link => Operation::Link {
            arg: arg(op, a)?,
            name: entry_name(op, p)?.0,
        },
        Opcode::Open => Operation::Open { arg: arg(op, a)? },
        Opcode::Read => Operation::Read { arg: arg(op, a)? },
        Opcode::Write => {
            let arg: &fuse_write_in = arg(op, a)?;
            Operation::Write {
                arg,
                data: data(op, p, arg.size as usize)?,
            }
        }
        Opcode::Statfs => Operation::Statfs,
        Opcode::Release => Operation::Release { arg: arg(op, a)? },
        Opcode::Fsync => Operation::Fsync { arg: arg(op, a)? },
        Opcode::Setxattr => {
            let args = if ctx.setxattr_ext {
                let x: &fuse_setxattr_in = arg(op, a)?;
                SetxattrArgs {
                    size: x.size,
                    flags: x.flags,
                    setxattr_flags: x.setxattr_flags,
                }
            } else {
                if a.len() < FUSE_COMPAT_SETXATTR_IN_SIZE {
                    return Err(ParseError::ArgumentTruncated {
                        opcode: op as u32,
                        needed: FUSE_COMPAT_SETXATTR_IN_SIZE,
                        got: a.len(),
                    });
                }
                let word = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
                SetxattrArgs {
                    size: word(0),
                    flags: word(4),
                    setxattr_flags: 0,
                }
            };
            let (name, rest) = cstr(op, p, XATTR_NAME_MAX)?;
            let value = data(op, rest, args.size as usize)?;
            Operation::Setxattr {
                arg: args,
                name,
                value,
            }
        }
        Opcode::Getxattr => Operation::Getxattr {
            arg: arg(op, a)?,
            name: cstr(op, p, XATTR_NAME_MAX)?.0,
        },
        Opcode::Listxattr => Operation::Listxattr { arg: arg(op, a)? },
        Opcode::Removexattr => Operation::Removexattr {
            name: cstr(op, p, XATTR_NAME_MAX)?.0,
        },
        Opcode::Flush => Operation::Flush { arg: arg(op, a)? },
        Opcode::Init => {
            // Kernels before 7.36 send only the first 16 bytes.
            const OLD_INIT_IN: usize = 16;
            if a.len() < OLD_INIT_IN {
                return Err(ParseError::ArgumentTruncated {
                    opcode: op as u32,
                    needed: OLD_INIT_IN,
                    got: a.len(),
                });
            }
            let mut bytes = [0u8; core::mem::size_of::<fuse_init_in>()];
            let n = a.len().min(bytes.len());
            bytes[..n].copy_from_slice(&a[..n]);
            let arg = fuse_init_in::read_from_bytes(&bytes).map_err(|_| {
                ParseError::ArgumentTruncated {
                    opcode: op as u32,
                    needed: 64,
                    got: n,
                }
            })?;
            Operation::Init { arg }
        }
        Opcode::Opendir => Operation::Opendir { arg: arg(op, a)? },
        Opcode::Readdir => Operation::Readdir { arg: arg(op, a)? },
        Opcode::Releasedir => Operation::Releasedir { arg: arg(op, a)? },
        Opcode::Fsyncdir => Operation::Fsyncdir { arg: arg(op, a)? },
        Opcode::Getlk => Operation::Getlk { arg: arg(op, a)? },
        Opcode::Setlk => Operation::Setlk { arg: arg(op, a)? },
        Opcode::Setlkw => Operation::Setlkw { arg: arg(op, a)? },
        Opcode::Access => Operation::Access { arg: arg(op, a)? },
        Opcode::Create => Operation::Create {
            arg: arg(op, a)?,
            name: entry_name(op, p)?.0,
        },
        Opcode::Interrupt => Operation::Interrupt { arg: arg(op, a)? },
        Opcode::Bmap => Operation::Bmap { arg: arg(op, a)? },
        Opcode::Destroy => Operation::Destroy,
        Opcode::Ioctl => {
            let arg: &fuse_ioctl_in = arg(op, a)?;
            Operation::Ioctl {
                arg,
                data: data(op, p, arg.in_size as usize)?,
            }
        }
        Opcode::Poll => Operation::Poll { arg: arg(op, a)? },
        Opcode::NotifyReply => {
            let arg: &fuse_notify_retrieve_in = arg(op, a)?;
            Operation::NotifyReply {
                arg,
                data: data(op, p, arg.size as usize)?,
            }
        }
        Opcode::BatchForget => {
            let arg: &fuse_batch_forget_in = arg(op, a)?;
            let nodes = <[fuse_forget_one]>::ref_from_prefix_with_elems(p, arg.count as usize)
                .map(|(n, _)| n)
                .map_err(|e| match e {
                    zerocopy::CastError::Alignment(_) => ParseError::Misaligned,
                    _ => ParseError::PayloadTruncated { opcode: op as u32 },
                })?;
            Operation::BatchForget { nodes }
        }
        Opcode::Fallocate => Operation::Fallocate { arg: arg(op, a)? },
        Opcode::Readdirplus => Operation::Readdirplus { arg: arg(op, a)? },
        Opcode::Rename2 => {
            let arg = arg(op, a)?;
            let (name, rest) = entry_name(op, p)?;
            let (newname, _) = entry_name(op, rest)?;
            Operation::Rename2 { arg, name, newname }
        }
        Opcode::Lseek => Operation::Lseek { arg: arg(op, a)? },
        Opcode::CopyFileRange => Operation::CopyFileRange { arg: arg(op, a)? },
        Opcode::Setupmapping => Operation::Setupmapping { arg: arg(op, a)? },
        Opcode::Removemapping => {
            let arg: &fuse_removemapping_in = arg(op, a)?;
            // The array follows a 4-byte struct, so in a contiguous message
            // it is not 8-byte aligned: keep it as bytes and read entries by
            // value.
            let len = (arg.count as usize)
                .checked_mul(core::mem::size_of::<fuse_removemapping_one>())
                .ok_or(ParseError::PayloadTruncated { opcode: op as u32 })?;
            let bytes = data(op, p, len)?;
            Operation::Removemapping {
                entries: RemovemappingEntries { bytes },
            }
        }
        Opcode::Syncfs => Operation::Syncfs { arg: arg(op, a)? },
        // The kernel sends the name of the unhashed dentry vfs_tmpfile()
        // allocates, "/": not a directory entry name, so only its NUL and
        // length are checked.
        Opcode::Tmpfile => Operation::Tmpfile {
            arg: arg(op, a)?,
            name: cstr(op, p, NAME_MAX)?.0,
        },
        Opcode::Statx => Operation::Statx { arg: arg(op, a)? },
        Opcode::CopyFileRange64 => Operation::CopyFileRange64 { arg: arg(op, a)? },
        Opcode::CuseInit => Operation::CuseInit { arg: arg(op, a)? },
    })
}

impl Operation<'_> {
    /// The operation's opcode.
    pub fn opcode(&self) -> Opcode {
        match self {
            Operation::Lookup { .. } => Opcode::Lookup,
            Operation::Forget { .. } => Opcode::Forget,
            Operation::Getattr { .. } => Opcode::Getattr,
            Operation::Setattr { .. } => Opcode::Setattr,
            Operation::Readlink => Opcode::Readlink,
            Operation::Symlink { .. } => Opcode::Symlink,
            Operation::Mknod { .. } => Opcode::Mknod,
            Operation::Mkdir { .. } => Opcode::Mkdir,
            Operation::Unlink { .. } => Opcode::Unlink,
            Operation::Rmdir { .. } => Opcode::Rmdir,
            Operation::Rename { .. } => Opcode::Rename,
            Operation::Link { .. } => Opcode::Link,
            Operation::Open { .. } => Opcode::Open,
            Operation::Read { .. } => Opcode::Read,
            Operation::Write { .. } => Opcode::Write,
            Operation::Statfs => Opcode::Statfs,
            Operation::Release { .. } => Opcode::Release,
            Operation::Fsync { .. } => Opcode::Fsync,
            Operation::Setxattr { .. } => Opcode::Setxattr,
            Operation::Getxattr { .. } => Opcode::Getxattr,
            Operation::Listxattr { .. } => Opcode::Listxattr,
            Operation::Removexattr { .. } => Opcode::Removexattr,
            Operation::Flush { .. } => Opcode::Flush,
            Operation::Init { .. } => Opcode::Init,
            Operation::Opendir { .. } => Opcode::Opendir,
            Operation::Readdir { .. } => Opcode::Readdir,
            Operation::Releasedir { .. } => Opcode::Releasedir,
            Operation::Fsyncdir { .. } => Opcode::Fsyncdir,
            Operation::Getlk { .. } => Opcode::Getlk,
            Operation::Setlk { .. } => Opcode::Setlk,
            Operation::Setlkw { .. } => Opcode::Setlkw,
            Operation::Access { .. } => Opcode::Access,
            Operation::Create { .. } => Opcode::Create,
            Operation::Interrupt { .. } => Opcode::Interrupt,
            Operation::Bmap { .. } => Opcode::Bmap,
            Operation::Destroy => Opcode::Destroy,
            Operation::Ioctl { .. } => Opcode::Ioctl,
            Operation::Poll { .. } => Opcode::Poll,
            Operation::NotifyReply { .. } => Opcode::NotifyReply,
            Operation::BatchForget { .. } => Opcode::BatchForget,
            Operation::Fallocate { .. } => Opcode::Fallocate,
            Operation::Readdirplus { .. } => Opcode::Readdirplus,
            Operation::Rename2 { .. } => Opcode::Rename2,
            Operation::Lseek { .. } => Opcode::Lseek,
            Operation::CopyFileRange { .. } => Opcode::CopyFileRange,
            Operation::Setupmapping { .. } => Opcode::Setupmapping,
            Operation::Removemapping { .. } => Opcode::Removemapping,
            Operation::Syncfs { .. } => Opcode::Syncfs,
            Operation::Tmpfile { .. } => Opcode::Tmpfile,
            Operation::Statx { .. } => Opcode::Statx,
            Operation::CopyFileRange64 { .. } => Opcode::CopyFileRange64,
            Operation::CuseInit { .. } => Opcode::CuseInit,
        }
    }
}
