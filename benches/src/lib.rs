//! Fixtures for fuselage's benchmarks: a trivial in-memory filesystem (the
//! test kit's [`BenchFs`]), a
//! sink that copies reply parts into a preallocated buffer, and prebuilt
//! request messages.
//!
//! They measure fuselage-core alone (parse, dispatch, reply building): no
//! system call, no transport. What a transport's `writev` / ring commit
//! costs is measured elsewhere. `benches/core.rs` times them with divan and
//! `tests/alloc.rs` checks that none of them allocates.

use core::cell::{Cell, RefCell};
use core::ffi::CStr;
use fuselage_core::abi::*;
use fuselage_core::dirent::direntplus_size;
use fuselage_core::reply::{FileRange, ReplySink};
use fuselage_core::{Dispatched, Dispatcher, InitConfig, InitFlags};
pub use fuselage_testkit::testfs::BenchFs;
use zerocopy::IntoBytes;

/// Size of the READ reply and of the READDIRPLUS request.
pub const READ_SIZE: u32 = 4096;
/// Size of the WRITE payload.
pub const WRITE_SIZE: usize = 128 * 1024;
/// Inode of the regular file every request is about.
pub const FILE_INO: u64 = BenchFs::FILE_INO;
/// Name of that file in the root directory.
pub const FILE_NAME: &CStr = BenchFs::FILE_NAME;
/// Entries in the root directory (more than one 4 KiB READDIRPLUS holds).
pub const DIR_ENTRIES: usize = BenchFs::DIR_ENTRIES;
/// Largest reply the sink may be handed (a 128 KiB read plus headers).
pub const SINK_CAPACITY: usize = 256 * 1024;

/// A sink that copies every reply into one preallocated buffer, as a
/// transport assembling a ring entry would (no system call).
pub struct CopySink {
    buf: RefCell<Box<[u8]>>,
    last_len: Cell<usize>,
    replies: Cell<u64>,
}

impl Default for CopySink {
    fn default() -> Self {
        Self::new()
    }
}

impl CopySink {
    /// A sink with [`SINK_CAPACITY`] bytes allocated up front.
    pub fn new() -> Self {
        CopySink {
            buf: RefCell::new(vec![0u8; SINK_CAPACITY].into_boxed_slice()),
            last_len: Cell::new(0),
            replies: Cell::new(0),
        }
    }

    /// Length of the last reply.
    pub fn last_len(&self) -> usize {
        self.last_len.get()
    }

    /// Replies received so far.
    pub fn replies(&self) -> u64 {
        self.replies.get()
    }

    /// The `fuse_out_header` of the last reply.
    pub fn last_header(&self) -> fuse_out_header {
        let buf = self.buf.borrow();
        let mut h = fuse_out_header::default();
        h.as_mut_bytes()
            .copy_from_slice(&buf[..fuselage_core::OUT_HEADER_LEN]);
        h
    }

    fn copy(&self, parts: &[&[u8]], extra: usize) {
        let mut buf = self.buf.borrow_mut();
        let mut n = 0;
        for p in parts {
            buf[n..n + p.len()].copy_from_slice(p);
            n += p.len();
        }
        self.last_len.set(n + extra);
        self.replies.set(self.replies.get() + 1);
    }
}

impl ReplySink for CopySink {
    fn send(&self, parts: &[&[u8]]) {
        self.copy(parts, 0)
    }

    fn send_file(&self, parts: &[&[u8]], file: FileRange<'_>) {
        self.copy(parts, file.len as usize)
    }
}

/// A request message in 8-byte aligned storage (transports read into such
/// buffers).
#[derive(Clone)]
pub struct Message {
    words: Vec<u64>,
    len: usize,
}

impl Message {
    /// Builds a message: header, argument struct, payload.
    pub fn new(opcode: u32, unique: u64, nodeid: u64, arg: &[u8], payload: &[u8]) -> Self {
        let len = fuselage_core::IN_HEADER_LEN + arg.len() + payload.len();
        let header = fuse_in_header {
            len: len as u32,
            opcode,
            unique,
            nodeid,
            uid: 1000,
            gid: 1000,
            pid: 4242,
            total_extlen: 0,
            padding: 0,
        };
        let mut words = vec![0u64; len.div_ceil(8)];
        let bytes = &mut words.as_mut_bytes()[..len];
        let (h, rest) = bytes.split_at_mut(header.as_bytes().len());
        h.copy_from_slice(header.as_bytes());
        let (a, p) = rest.split_at_mut(arg.len());
        a.copy_from_slice(arg);
        p.copy_from_slice(payload);
        Message { words, len }
    }

    /// The message bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.words.as_bytes()[..self.len]
    }

    /// INIT as Linux 6.18 sends it, offering every flag.
    pub fn init() -> Self {
        let (flags, flags2) = InitFlags::all().to_wire();
        let arg = fuse_init_in {
            major: FUSE_KERNEL_VERSION,
            minor: FUSE_KERNEL_MINOR_VERSION,
            max_readahead: 128 * 1024,
            flags,
            flags2,
            unused: [0; 11],
        };
        Self::new(FUSE_INIT, 1, 0, arg.as_bytes(), &[])
    }

    /// GETATTR of [`FILE_INO`].
    pub fn getattr() -> Self {
        Self::new(
            FUSE_GETATTR,
            2,
            FILE_INO,
            fuse_getattr_in::default().as_bytes(),
            &[],
        )
    }

    /// LOOKUP of [`FILE_NAME`] in the root.
    pub fn lookup() -> Self {
        Self::new(
            FUSE_LOOKUP,
            4,
            FUSE_ROOT_ID,
            &[],
            FILE_NAME.to_bytes_with_nul(),
        )
    }

    /// READ of [`READ_SIZE`] bytes at offset 8192.
    pub fn read() -> Self {
        let arg = fuse_read_in {
            fh: 1,
            offset: 8192,
            size: READ_SIZE,
            ..Default::default()
        };
        Self::new(FUSE_READ, 6, FILE_INO, arg.as_bytes(), &[])
    }

    /// WRITE of [`WRITE_SIZE`] bytes at offset 0.
    pub fn write() -> Self {
        let arg = fuse_write_in {
            fh: 1,
            offset: 0,
            size: WRITE_SIZE as u32,
            ..Default::default()
        };
        let payload: Vec<u8> = (0..WRITE_SIZE).map(|i| (i * 13) as u8).collect();
        Self::new(FUSE_WRITE, 8, FILE_INO, arg.as_bytes(), &payload)
    }

    /// READDIRPLUS of the root from offset 0, [`READ_SIZE`] bytes.
    pub fn readdirplus() -> Self {
        let arg = fuse_read_in {
            fh: 1,
            offset: 0,
            size: READ_SIZE,
            ..Default::default()
        };
        Self::new(FUSE_READDIRPLUS, 10, FUSE_ROOT_ID, arg.as_bytes(), &[])
    }
}

/// Entries one 4 KiB READDIRPLUS of [`BenchFs`]'s root carries.
pub const fn readdirplus_entries() -> usize {
    // "hello.txt" (9 bytes) and "file-NNNN" (9 bytes) records alike.
    READ_SIZE as usize / direntplus_size(9)
}

/// A dispatcher over [`BenchFs`] that has agreed INIT, its sink and its
/// READDIR scratch buffer.
pub struct Fixture {
    /// The dispatcher.
    pub dispatcher: Dispatcher<BenchFs>,
    /// Where replies are copied.
    pub sink: CopySink,
    /// Lent to READDIRPLUS.
    pub scratch: Vec<u8>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// Builds the filesystem and the dispatcher and agrees INIT.
    pub fn new() -> Self {
        let config = InitConfig {
            max_write: 1 << 20,
            ..Default::default()
        };
        let dispatcher = Dispatcher::new(BenchFs::new(), config);
        let sink = CopySink::new();
        let mut scratch = vec![0u8; 64 * 1024];
        let init = Message::init();
        let outcome = dispatcher.dispatch(init.bytes(), &sink, &mut scratch);
        assert!(
            matches!(outcome, Dispatched::Initialized(_)),
            "INIT failed: {outcome:?}"
        );
        Fixture {
            dispatcher,
            sink,
            scratch,
        }
    }

    /// Dispatches one message; its reply lands in [`Fixture::sink`].
    #[inline]
    pub fn dispatch(&mut self, msg: &[u8]) -> Dispatched {
        self.dispatcher.dispatch(msg, &self.sink, &mut self.scratch)
    }
}
