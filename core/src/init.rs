//! INIT negotiation: what the kernel offers, what the server wants, what
//! both agreed on.
//!
//! The kernel opens every connection with `FUSE_INIT` carrying its protocol
//! version and the capability flags it offers. The server answers with its
//! own version (the smaller minor wins), the subset of flags it accepts and its
//! limits. [`negotiate`] does that computation from an [`InitConfig`] without
//! touching any I/O; the dispatcher sends the resulting `fuse_init_out`.

use crate::abi::{self, fuse_init_in, fuse_init_out};
use bitflags::bitflags;

/// Oldest protocol minor fuselage serves (Linux 2.6.29). Older kernels get
/// `EPROTO`.
pub const MIN_MINOR: u32 = 12;

bitflags! {
    /// INIT capability flags in the protocol's own numbering: bits 0..31 travel
    /// in `flags`, bits 32..63 in `flags2` (only with [`InitFlags::INIT_EXT`]).
    ///
    /// The same type describes what the kernel offers and what the server
    /// accepts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct InitFlags: u64 {
        /// Asynchronous read requests.
        const ASYNC_READ = abi::FUSE_ASYNC_READ;
        /// Remote POSIX locks.
        const POSIX_LOCKS = abi::FUSE_POSIX_LOCKS;
        /// Kernel sends the file handle for fstat etc.
        const FILE_OPS = abi::FUSE_FILE_OPS;
        /// Server handles O_TRUNC in open.
        const ATOMIC_O_TRUNC = abi::FUSE_ATOMIC_O_TRUNC;
        /// Server handles lookups of "." and "..".
        const EXPORT_SUPPORT = abi::FUSE_EXPORT_SUPPORT;
        /// Writes larger than 4 KiB.
        const BIG_WRITES = abi::FUSE_BIG_WRITES;
        /// Kernel does not apply the umask to create modes.
        const DONT_MASK = abi::FUSE_DONT_MASK;
        /// Kernel may splice requests to the server.
        const SPLICE_WRITE = abi::FUSE_SPLICE_WRITE;
        /// Kernel may move pages when splicing.
        const SPLICE_MOVE = abi::FUSE_SPLICE_MOVE;
        /// Server may splice replies to the kernel.
        const SPLICE_READ = abi::FUSE_SPLICE_READ;
        /// Remote flock locks.
        const FLOCK_LOCKS = abi::FUSE_FLOCK_LOCKS;
        /// ioctl on directories.
        const HAS_IOCTL_DIR = abi::FUSE_HAS_IOCTL_DIR;
        /// Invalidate cached pages when mtime changes.
        const AUTO_INVAL_DATA = abi::FUSE_AUTO_INVAL_DATA;
        /// READDIRPLUS support.
        const DO_READDIRPLUS = abi::FUSE_DO_READDIRPLUS;
        /// Adaptive READDIRPLUS.
        const READDIRPLUS_AUTO = abi::FUSE_READDIRPLUS_AUTO;
        /// Asynchronous direct I/O.
        const ASYNC_DIO = abi::FUSE_ASYNC_DIO;
        /// Writeback caching.
        const WRITEBACK_CACHE = abi::FUSE_WRITEBACK_CACHE;
        /// Zero-message opens supported.
        const NO_OPEN_SUPPORT = abi::FUSE_NO_OPEN_SUPPORT;
        /// Parallel lookups and readdir.
        const PARALLEL_DIROPS = abi::FUSE_PARALLEL_DIROPS;
        /// Server clears setuid/setgid/capabilities on write (v1).
        const HANDLE_KILLPRIV = abi::FUSE_HANDLE_KILLPRIV;
        /// POSIX ACLs.
        const POSIX_ACL = abi::FUSE_POSIX_ACL;
        /// Reading the device after abort returns ECONNABORTED.
        const ABORT_ERROR = abi::FUSE_ABORT_ERROR;
        /// `max_pages` in init_out is honored.
        const MAX_PAGES = abi::FUSE_MAX_PAGES;
        /// Cache READLINK results.
        const CACHE_SYMLINKS = abi::FUSE_CACHE_SYMLINKS;
        /// Zero-message opendir supported.
        const NO_OPENDIR_SUPPORT = abi::FUSE_NO_OPENDIR_SUPPORT;
        /// Only invalidate cached pages on explicit request.
        const EXPLICIT_INVAL_DATA = abi::FUSE_EXPLICIT_INVAL_DATA;
        /// `map_alignment` is valid (DAX).
        const MAP_ALIGNMENT = abi::FUSE_MAP_ALIGNMENT;
        /// Submounts (virtio-fs).
        const SUBMOUNTS = abi::FUSE_SUBMOUNTS;
        /// Server clears setuid/setgid/capabilities on write (v2).
        const HANDLE_KILLPRIV_V2 = abi::FUSE_HANDLE_KILLPRIV_V2;
        /// Extended fuse_setxattr_in.
        const SETXATTR_EXT = abi::FUSE_SETXATTR_EXT;
        /// `flags2` is valid.
        const INIT_EXT = abi::FUSE_INIT_EXT;
        /// Reserved bit 31.
        const INIT_RESERVED = abi::FUSE_INIT_RESERVED;
        /// Security context in create requests.
        const SECURITY_CTX = abi::FUSE_SECURITY_CTX;
        /// Per-inode DAX.
        const HAS_INODE_DAX = abi::FUSE_HAS_INODE_DAX;
        /// Supplementary group extension on create requests.
        const CREATE_SUPP_GROUP = abi::FUSE_CREATE_SUPP_GROUP;
        /// Expire-only entry invalidation.
        const HAS_EXPIRE_ONLY = abi::FUSE_HAS_EXPIRE_ONLY;
        /// mmap with FOPEN_DIRECT_IO.
        const DIRECT_IO_ALLOW_MMAP = abi::FUSE_DIRECT_IO_ALLOW_MMAP;
        /// Kernel passthrough of opened files to a backing file.
        const PASSTHROUGH = abi::FUSE_PASSTHROUGH;
        /// Server cannot be exported over NFS.
        const NO_EXPORT_SUPPORT = abi::FUSE_NO_EXPORT_SUPPORT;
        /// NOTIFY_RESEND supported; resent requests carry bit 63 of unique.
        const HAS_RESEND = abi::FUSE_HAS_RESEND;
        /// Idmapped mounts.
        const ALLOW_IDMAP = abi::FUSE_ALLOW_IDMAP;
        /// FUSE-over-io_uring.
        const OVER_IO_URING = abi::FUSE_OVER_IO_URING;
        /// `request_timeout` in init_out is honored.
        const REQUEST_TIMEOUT = abi::FUSE_REQUEST_TIMEOUT;
    }
}

impl InitFlags {
    /// Splits into the `(flags, flags2)` words of the wire format.
    pub const fn to_wire(self) -> (u32, u32) {
        (self.bits() as u32, (self.bits() >> 32) as u32)
    }

    /// The flags a kernel speaking protocol 7.`minor` can know: those
    /// defined at that minor (from `fuse.h`'s change log). A flag offered by
    /// a peer claiming an older minor is not agreed, so the reply never
    /// holds a bit (or a `flags2` word) the peer cannot read.
    pub const fn known_at(minor: u32) -> InitFlags {
        /// Each flag added since 7.12, with the minor that added it.
        const SINCE: [(InitFlags, u32); 35] = [
            (InitFlags::DONT_MASK, 12),
            (InitFlags::SPLICE_WRITE, 14),
            (InitFlags::SPLICE_MOVE, 14),
            (InitFlags::SPLICE_READ, 14),
            (InitFlags::FLOCK_LOCKS, 17),
            (InitFlags::HAS_IOCTL_DIR, 18),
            (InitFlags::AUTO_INVAL_DATA, 20),
            (InitFlags::DO_READDIRPLUS, 21),
            (InitFlags::READDIRPLUS_AUTO, 21),
            (InitFlags::ASYNC_DIO, 22),
            (InitFlags::WRITEBACK_CACHE, 23),
            (InitFlags::NO_OPEN_SUPPORT, 23),
            (InitFlags::PARALLEL_DIROPS, 25),
            (InitFlags::HANDLE_KILLPRIV, 26),
            (InitFlags::POSIX_ACL, 26),
            (InitFlags::ABORT_ERROR, 27),
            (InitFlags::MAX_PAGES, 28),
            (InitFlags::CACHE_SYMLINKS, 28),
            (InitFlags::NO_OPENDIR_SUPPORT, 29),
            (InitFlags::EXPLICIT_INVAL_DATA, 30),
            (InitFlags::MAP_ALIGNMENT, 31),
            (InitFlags::SUBMOUNTS, 32),
            (InitFlags::HANDLE_KILLPRIV_V2, 33),
            (InitFlags::SETXATTR_EXT, 33),
            (InitFlags::INIT_EXT, 36),
            (InitFlags::SECURITY_CTX, 36),
            (InitFlags::HAS_INODE_DAX, 36),
            (InitFlags::CREATE_SUPP_GROUP, 38),
            (InitFlags::HAS_EXPIRE_ONLY, 38),
            (InitFlags::DIRECT_IO_ALLOW_MMAP, 39),
            (InitFlags::PASSTHROUGH, 40),
            (InitFlags::NO_EXPORT_SUPPORT, 40),
            (InitFlags::HAS_RESEND, 40),
            (InitFlags::ALLOW_IDMAP, 40),
            (InitFlags::OVER_IO_URING, 42),
        ];
        // Bit 31 is reserved at every minor; REQUEST_TIMEOUT came with 7.43.
        let mut known = InitFlags::all().difference(InitFlags::INIT_RESERVED).bits();
        if minor < 43 {
            known &= !InitFlags::REQUEST_TIMEOUT.bits();
        }
        let mut i = 0;
        while i < SINCE.len() {
            if minor < SINCE[i].1 {
                known &= !SINCE[i].0.bits();
            }
            i += 1;
        }
        InitFlags::from_bits_retain(known)
    }

    /// Joins the wire words. `flags2` is only meaningful when `flags` has
    /// `INIT_EXT`; pass 0 otherwise.
    pub const fn from_wire(flags: u32, flags2: u32) -> InitFlags {
        InitFlags::from_bits_retain(flags as u64 | ((flags2 as u64) << 32))
    }
}

/// What a server wants from the connection. Fields the kernel does not
/// support are dropped during [`negotiate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitConfig {
    /// Largest WRITE payload the server accepts, in bytes. The kernel raises
    /// anything below 4096 to 4096. Also bounds READ sizes via `max_pages`.
    pub max_write: u32,
    /// Largest number of pages in one request (needs `MAX_PAGES`); 0 derives
    /// it from `max_write`.
    pub max_pages: u16,
    /// Readahead limit in bytes; `None` keeps the kernel's value.
    pub max_readahead: Option<u32>,
    /// Timestamp granularity in nanoseconds (1 = nanosecond timestamps).
    pub time_gran: u32,
    /// How many background requests the kernel lets into the server at
    /// once; more wait in the kernel. Background requests are readahead
    /// READs (with `ASYNC_READ`), page writeback WRITEs (dirty shared
    /// mappings, the writeback cache), asynchronous direct I/O (with
    /// `ASYNC_DIO`, one per in-flight aio or io_uring `O_DIRECT` request of
    /// an application) and RELEASEs. 0 keeps the kernel's default,
    /// [`KERNEL_MAX_BACKGROUND`] (12); the default here is
    /// [`DEFAULT_MAX_BACKGROUND`] (64, see there why). For mounts without
    /// `CAP_SYS_ADMIN` the kernel caps it at its `max_user_bgreq` module
    /// parameter.
    pub max_background: u16,
    /// Background requests in flight at which the kernel holds back
    /// speculative work: the asynchronous part of readahead is dropped and
    /// background page writeback is postponed. 0 (the default) means 3/4 of
    /// `max_background`, computed by [`negotiate`] (the kernel's own ratio,
    /// 9 of 12): sending 0 would leave the kernel at
    /// [`KERNEL_CONGESTION_THRESHOLD`] (9) whatever `max_background` is.
    /// Capped at `max_background`.
    pub congestion_threshold: u16,
    /// Capability flags the server would like; only those the kernel offers
    /// are agreed.
    pub wanted: InitFlags,
    /// Kernel passthrough: `Some(max_stack_depth)` (1 or 2) asks for
    /// `PASSTHROUGH`, `None` does not.
    pub passthrough: Option<u32>,
    /// Ask for FUSE-over-io_uring (`OVER_IO_URING`).
    pub io_uring: bool,
    /// Request timeout in seconds the kernel enforces (needs
    /// `REQUEST_TIMEOUT`); 0 for none.
    pub request_timeout: u16,
}

/// The kernel's background request limit when INIT leaves it at 0
/// (`FUSE_DEFAULT_MAX_BACKGROUND`).
pub const KERNEL_MAX_BACKGROUND: u16 = 12;

/// The kernel's congestion threshold when INIT leaves it at 0
/// (`FUSE_DEFAULT_CONGESTION_THRESHOLD`, 3/4 of [`KERNEL_MAX_BACKGROUND`]).
pub const KERNEL_CONGESTION_THRESHOLD: u16 = 9;

/// [`InitConfig::max_background`] by default: 64.
///
/// Why not the kernel's 12: each in-flight asynchronous `O_DIRECT` request
/// of an application is a background request, so 12 caps an fio job at
/// queue depth 32 to 12 requests in the server; fio's 4 KiB random reads
/// at QD32 × 2 jobs on passthrough over native io_uring measured about
/// half again as many IOPS with 64 as with 12, and no more with 128
/// (README "Performance", "Background requests"). 64 admits two such jobs in full, and is 4 × the 16 requests the native
/// transport has ring entries for on 2 CPUs (one queue per CPU × 8
/// entries), 1 × on 8 CPUs, so the server's queues stay fed.
///
/// Why not more: background requests share the kernel's pending queue with
/// synchronous ones (LOOKUP, GETATTR) on the `/dev/fuse` transports, so a
/// long background backlog delays interactive requests behind it, and each
/// in-flight READ or WRITE pins up to `max_pages` pages (64 × 1 MiB at the
/// default `max_write`).
pub const DEFAULT_MAX_BACKGROUND: u16 = 64;

/// The congestion threshold [`negotiate`] sends for `config`: as set, or
/// 3/4 of `max_background` when 0 (at least 1), never above
/// `max_background`; 0 (the kernel's default) when `max_background` is 0.
pub const fn congestion_threshold(config: &InitConfig) -> u16 {
    let max = config.max_background;
    if max == 0 {
        return config.congestion_threshold;
    }
    let t = if config.congestion_threshold == 0 {
        (max as u32 * 3 / 4) as u16
    } else {
        config.congestion_threshold
    };
    if t == 0 {
        1
    } else if t > max {
        max
    } else {
        t
    }
}

/// Flags a typical fast, correct server accepts when offered.
pub const DEFAULT_WANTED: InitFlags = InitFlags::ASYNC_READ
    .union(InitFlags::ATOMIC_O_TRUNC)
    .union(InitFlags::BIG_WRITES)
    .union(InitFlags::DONT_MASK)
    .union(InitFlags::SPLICE_READ)
    .union(InitFlags::AUTO_INVAL_DATA)
    .union(InitFlags::DO_READDIRPLUS)
    .union(InitFlags::READDIRPLUS_AUTO)
    .union(InitFlags::ASYNC_DIO)
    .union(InitFlags::PARALLEL_DIROPS)
    .union(InitFlags::MAX_PAGES)
    .union(InitFlags::CACHE_SYMLINKS)
    .union(InitFlags::INIT_EXT)
    .union(InitFlags::HAS_RESEND);

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            max_write: 1 << 20,
            max_pages: 0,
            max_readahead: None,
            time_gran: 1,
            max_background: DEFAULT_MAX_BACKGROUND,
            congestion_threshold: 0,
            wanted: DEFAULT_WANTED,
            passthrough: None,
            io_uring: false,
            request_timeout: 0,
        }
    }
}

/// The kernel's side of INIT, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInit {
    /// Protocol major version.
    pub major: u32,
    /// Protocol minor version.
    pub minor: u32,
    /// Kernel's readahead limit in bytes.
    pub max_readahead: u32,
    /// Flags the kernel offers.
    pub flags: InitFlags,
}

impl KernelInit {
    /// Decodes `fuse_init_in` (`flags2` counts only with `INIT_EXT`).
    pub fn from_wire(arg: &fuse_init_in) -> KernelInit {
        let flags2 = if arg.flags & abi::FUSE_INIT_EXT as u32 != 0 {
            arg.flags2
        } else {
            0
        };
        KernelInit {
            major: arg.major,
            minor: arg.minor,
            max_readahead: arg.max_readahead,
            flags: InitFlags::from_wire(arg.flags, flags2),
        }
    }
}

/// The agreed parameters of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Protocol major (always 7).
    pub major: u32,
    /// Agreed minor: the smaller of the kernel's and ours.
    pub minor: u32,
    /// Flags both sides agreed on.
    pub flags: InitFlags,
    /// Flags the kernel offered.
    pub kernel_flags: InitFlags,
    /// Largest WRITE payload (after the kernel's 4096 floor).
    pub max_write: u32,
    /// Largest READ a request may ask for, in bytes.
    pub max_read: u32,
    /// Pages per request.
    pub max_pages: u16,
    /// Readahead limit.
    pub max_readahead: u32,
    /// Passthrough stack depth (0 without passthrough).
    pub max_stack_depth: u32,
    /// Background request limit sent (0: the kernel's 12).
    pub max_background: u16,
    /// Congestion threshold sent (see [`congestion_threshold`]; 0: the
    /// kernel's 9).
    pub congestion_threshold: u16,
    /// Timestamp granularity.
    pub time_gran: u32,
    /// Request timeout (seconds, 0 = none).
    pub request_timeout: u16,
}

impl Negotiated {
    /// The receive buffer a transport needs: the kernel refuses reads smaller
    /// than `max(8192, 40 + 40 + max_write)`; one extra page covers every
    /// header and name.
    pub const fn request_buffer_size(&self) -> usize {
        let need = self.max_write as usize + 4096;
        if need < 8192 { 8192 } else { need }
    }

    /// Whether `flags` were agreed.
    pub const fn has(&self, flags: InitFlags) -> bool {
        self.flags.contains(flags)
    }
}

/// Why INIT cannot be agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// The kernel speaks a major version older than 7.
    UnsupportedMajor(u32),
    /// The kernel's minor is older than [`MIN_MINOR`].
    UnsupportedMinor(u32),
    /// The filesystem refused the connection in `Filesystem::init`.
    Refused(crate::error::Errno),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::UnsupportedMajor(m) => {
                write!(
                    f,
                    "kernel FUSE protocol major {m} is not supported (need 7)"
                )
            }
            InitError::Refused(e) => write!(f, "the filesystem refused INIT: {e}"),
            InitError::UnsupportedMinor(m) => write!(
                f,
                "kernel FUSE protocol 7.{m} is older than the oldest supported 7.{MIN_MINOR}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for InitError {}

/// The result of [`negotiate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// Agreed: send `reply` (its first `reply_len` bytes) and serve.
    Agreed {
        /// The reply struct.
        reply: fuse_init_out,
        /// Bytes of `reply` to send (24 for minors below 23, else 64).
        reply_len: usize,
        /// The agreed parameters.
        negotiated: Negotiated,
    },
    /// The kernel's major is newer than 7: answer with our version only and
    /// expect a second INIT.
    Downgrade {
        /// The reply struct (only major and minor set).
        reply: fuse_init_out,
        /// Bytes of `reply` to send.
        reply_len: usize,
    },
}

/// Agrees INIT from the kernel's offer and the server's wishes.
pub fn negotiate(kernel: &KernelInit, config: &InitConfig) -> Result<InitOutcome, InitError> {
    if kernel.major > abi::FUSE_KERNEL_VERSION {
        let reply = fuse_init_out {
            major: abi::FUSE_KERNEL_VERSION,
            minor: abi::FUSE_KERNEL_MINOR_VERSION,
            ..Default::default()
        };
        return Ok(InitOutcome::Downgrade {
            reply,
            reply_len: abi::FUSE_COMPAT_INIT_OUT_SIZE,
        });
    }
    if kernel.major < abi::FUSE_KERNEL_VERSION {
        return Err(InitError::UnsupportedMajor(kernel.major));
    }
    if kernel.minor < MIN_MINOR {
        return Err(InitError::UnsupportedMinor(kernel.minor));
    }
    let minor = kernel.minor.min(abi::FUSE_KERNEL_MINOR_VERSION);

    let mut wanted = config.wanted;
    if config.passthrough.is_some() {
        wanted |= InitFlags::PASSTHROUGH;
    } else {
        wanted -= InitFlags::PASSTHROUGH;
    }
    if config.io_uring {
        wanted |= InitFlags::OVER_IO_URING;
    } else {
        wanted -= InitFlags::OVER_IO_URING;
    }
    if config.request_timeout > 0 {
        wanted |= InitFlags::REQUEST_TIMEOUT;
    }
    // The kernel ignores passthrough together with writeback caching.
    if wanted.contains(InitFlags::PASSTHROUGH) {
        wanted -= InitFlags::WRITEBACK_CACHE;
    }
    if !kernel.flags.contains(InitFlags::INIT_EXT) {
        // Without INIT_EXT nothing in flags2 can be agreed.
        wanted &= InitFlags::from_bits_retain(u32::MAX as u64);
    }
    // Only what the kernel's own minor defines: a peer claiming 7.31 that
    // offers flags2 bits (or any flag newer than it) does not get them.
    let mut flags = kernel.flags & wanted & InitFlags::known_at(kernel.minor);
    // INIT_EXT must be echoed for the kernel to read flags2.
    if flags.bits() >> 32 != 0 {
        flags |= InitFlags::INIT_EXT;
    }

    let max_write = config.max_write.max(4096);
    let pages_for_write = max_write.div_ceil(4096).min(u16::MAX as u32) as u16;
    let max_pages = if flags.contains(InitFlags::MAX_PAGES) {
        if config.max_pages == 0 {
            pages_for_write
        } else {
            config.max_pages.max(1)
        }
    } else {
        32
    };
    let max_read = (max_pages as u32 * 4096).min(max_write.max(4096 * 32));
    let max_readahead = match config.max_readahead {
        Some(r) => r.min(kernel.max_readahead),
        None => kernel.max_readahead,
    };
    let max_stack_depth = match (flags.contains(InitFlags::PASSTHROUGH), config.passthrough) {
        (true, Some(d)) => d.clamp(1, 2),
        _ => 0,
    };
    let congestion_threshold = congestion_threshold(config);
    let request_timeout = if flags.contains(InitFlags::REQUEST_TIMEOUT) {
        config.request_timeout
    } else {
        0
    };
    let (w1, w2) = flags.to_wire();
    let reply = fuse_init_out {
        major: abi::FUSE_KERNEL_VERSION,
        minor,
        max_readahead,
        flags: w1,
        max_background: config.max_background,
        congestion_threshold,
        max_write,
        time_gran: config.time_gran.max(1),
        // Meaningful only with MAX_PAGES; zero for a kernel that did not
        // agree it (before 7.28 the field is unused space).
        max_pages: if flags.contains(InitFlags::MAX_PAGES) {
            max_pages
        } else {
            0
        },
        flags2: w2,
        max_stack_depth,
        request_timeout,
        ..Default::default()
    };
    let reply_len = if minor < 23 {
        abi::FUSE_COMPAT_22_INIT_OUT_SIZE
    } else {
        core::mem::size_of::<fuse_init_out>()
    };
    Ok(InitOutcome::Agreed {
        reply,
        reply_len,
        negotiated: Negotiated {
            major: abi::FUSE_KERNEL_VERSION,
            minor,
            flags,
            kernel_flags: kernel.flags,
            max_write,
            max_read,
            max_pages,
            max_readahead,
            max_stack_depth,
            max_background: config.max_background,
            congestion_threshold,
            time_gran: config.time_gran.max(1),
            request_timeout,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(minor: u32, flags: InitFlags) -> KernelInit {
        KernelInit {
            major: 7,
            minor,
            max_readahead: 131072,
            flags,
        }
    }

    #[test]
    fn flags_split_across_words() {
        let f = InitFlags::ASYNC_READ | InitFlags::PASSTHROUGH | InitFlags::INIT_EXT;
        let (a, b) = f.to_wire();
        assert_eq!(a, 1 | (1 << 30));
        assert_eq!(b, 1 << 5);
        assert_eq!(InitFlags::from_wire(a, b), f);
        assert_eq!(InitFlags::OVER_IO_URING.bits(), 1 << 41);
    }

    #[test]
    fn agrees_intersection_and_limits() {
        let offered = InitFlags::all();
        let cfg = InitConfig {
            max_write: 1 << 20,
            ..Default::default()
        };
        let InitOutcome::Agreed {
            reply,
            reply_len,
            negotiated,
        } = negotiate(&kernel(45, offered), &cfg).unwrap()
        else {
            panic!("expected agreement")
        };
        assert_eq!(reply_len, 64);
        assert_eq!(reply.minor, 45);
        assert_eq!(reply.max_write, 1 << 20);
        assert_eq!(reply.max_pages, 256);
        assert!(negotiated.has(InitFlags::MAX_PAGES | InitFlags::INIT_EXT));
        assert!(!negotiated.has(InitFlags::PASSTHROUGH));
        assert!(!negotiated.has(InitFlags::WRITEBACK_CACHE));
        assert_eq!(negotiated.request_buffer_size(), (1 << 20) + 4096);
    }

    #[test]
    fn background_limits_are_sent_and_the_threshold_derived() {
        let reply_of = |max_background, congestion_threshold| {
            let cfg = InitConfig {
                max_background,
                congestion_threshold,
                ..Default::default()
            };
            let InitOutcome::Agreed {
                reply, negotiated, ..
            } = negotiate(&kernel(45, InitFlags::all()), &cfg).unwrap()
            else {
                panic!("expected agreement")
            };
            assert_eq!(negotiated.max_background, reply.max_background);
            assert_eq!(negotiated.congestion_threshold, reply.congestion_threshold);
            (reply.max_background, reply.congestion_threshold)
        };
        // The default: 64 and 3/4 of it, not 0 (which would leave the
        // kernel's 9 under a limit of 64).
        let d = InitConfig::default();
        assert_eq!(reply_of(d.max_background, d.congestion_threshold), (64, 48));
        assert_eq!(reply_of(12, 0), (12, 9));
        assert_eq!(reply_of(1, 0), (1, 1));
        assert_eq!(reply_of(64, 20), (64, 20));
        assert_eq!(reply_of(16, 100), (16, 16));
        // 0 leaves both to the kernel.
        assert_eq!(reply_of(0, 0), (0, 0));
    }

    #[test]
    fn passthrough_and_uring_need_offer() {
        let cfg = InitConfig {
            passthrough: Some(2),
            io_uring: true,
            ..Default::default()
        };
        let offered = InitFlags::INIT_EXT | InitFlags::PASSTHROUGH;
        let InitOutcome::Agreed {
            reply, negotiated, ..
        } = negotiate(&kernel(45, offered), &cfg).unwrap()
        else {
            panic!()
        };
        assert!(negotiated.has(InitFlags::PASSTHROUGH));
        assert!(!negotiated.has(InitFlags::OVER_IO_URING));
        assert_eq!(reply.max_stack_depth, 2);
        assert_eq!(reply.flags2, 1 << 5);
        assert_ne!(reply.flags & (1 << 30), 0);
    }

    #[test]
    fn old_and_new_versions() {
        let cfg = InitConfig::default();
        assert_eq!(
            negotiate(
                &KernelInit {
                    major: 6,
                    ..kernel(45, InitFlags::empty())
                },
                &cfg
            ),
            Err(InitError::UnsupportedMajor(6))
        );
        assert_eq!(
            negotiate(&kernel(8, InitFlags::empty()), &cfg),
            Err(InitError::UnsupportedMinor(8))
        );
        let Ok(InitOutcome::Downgrade { reply, reply_len }) = negotiate(
            &KernelInit {
                major: 8,
                ..kernel(0, InitFlags::empty())
            },
            &cfg,
        ) else {
            panic!()
        };
        assert_eq!((reply.major, reply.minor, reply_len), (7, 45, 8));
        let Ok(InitOutcome::Agreed {
            reply, reply_len, ..
        }) = negotiate(&kernel(22, InitFlags::all() - InitFlags::INIT_EXT), &cfg)
        else {
            panic!()
        };
        assert_eq!((reply.minor, reply_len), (22, 24));
        // No INIT_EXT offered: nothing from flags2.
        assert_eq!(reply.flags2, 0);
    }

    #[test]
    fn a_731_kernel_gets_only_what_731_defines() {
        let cfg = InitConfig {
            passthrough: Some(1),
            request_timeout: 30,
            ..Default::default()
        };
        // What gVisor offers on a host-FD connection.
        let Ok(InitOutcome::Agreed {
            reply,
            reply_len,
            negotiated,
        }) = negotiate(&kernel(31, InitFlags::MAX_PAGES), &cfg)
        else {
            panic!()
        };
        assert_eq!((reply.major, reply.minor, reply_len), (7, 31, 64));
        assert_eq!(reply.flags, abi::FUSE_MAX_PAGES as u32);
        assert_eq!(
            (reply.flags2, reply.max_stack_depth, reply.request_timeout),
            (0, 0, 0)
        );
        assert_eq!(reply.max_pages, 256);
        assert_eq!(negotiated.flags, InitFlags::MAX_PAGES);
        // A peer claiming 7.31 but offering everything (flags2 included):
        // nothing newer than 7.31 is agreed.
        let Ok(InitOutcome::Agreed { reply, .. }) = negotiate(&kernel(31, InitFlags::all()), &cfg)
        else {
            panic!()
        };
        let agreed = InitFlags::from_wire(reply.flags, reply.flags2);
        assert_eq!(reply.flags2, 0);
        assert!(agreed.contains(InitFlags::MAX_PAGES | InitFlags::PARALLEL_DIROPS));
        assert!(
            !agreed
                .intersects(InitFlags::INIT_EXT | InitFlags::PASSTHROUGH | InitFlags::SETXATTR_EXT)
        );
        assert_eq!((reply.max_stack_depth, reply.request_timeout), (0, 0));
        // Without MAX_PAGES the field stays zero.
        let Ok(InitOutcome::Agreed {
            reply, negotiated, ..
        }) = negotiate(&kernel(31, InitFlags::empty()), &cfg)
        else {
            panic!()
        };
        assert_eq!(
            (reply.flags, reply.max_pages, negotiated.max_pages),
            (0, 0, 32)
        );
    }

    #[test]
    fn known_flags_grow_with_the_minor() {
        assert!(!InitFlags::known_at(27).contains(InitFlags::MAX_PAGES));
        assert!(InitFlags::known_at(28).contains(InitFlags::MAX_PAGES));
        assert_eq!(InitFlags::known_at(31).bits() >> 26, 1);
        assert_eq!(
            InitFlags::known_at(45),
            InitFlags::all() - InitFlags::INIT_RESERVED
        );
        assert!(!InitFlags::known_at(42).contains(InitFlags::REQUEST_TIMEOUT));
    }
}
