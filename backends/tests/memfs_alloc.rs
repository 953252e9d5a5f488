//! The steady-state request path of memfs does not allocate: after warm-up,
//! GETATTR, LOOKUP of an existing name, READ, WRITE within the file's stored
//! bytes, and OPEN/RELEASE of an existing file make no heap allocation.
//!
//! A counting global allocator counts the allocations of the current thread;
//! the reply sink copies into a buffer allocated up front.

use fuselage_backends::{MemFs, MemFsConfig};
use fuselage_core::abi::{
    fuse_attr_out, fuse_create_in, fuse_entry_out, fuse_getattr_in, fuse_in_header, fuse_mkdir_in,
    fuse_open_in, fuse_out_header, fuse_read_in, fuse_release_in, fuse_write_in,
};
use fuselage_core::op;
use fuselage_core::reply::{
    FileRange, ReplyAttr, ReplyCreate, ReplyData, ReplyEmpty, ReplyEntry, ReplyOpen, ReplySink,
    ReplyWrite,
};
use fuselage_core::{Filesystem, RequestHeader};
use fuselage_testkit::alloc::thread_total as allocations;
use std::cell::RefCell;
use std::ffi::CString;
use zerocopy::FromBytes;

fuselage_testkit::install_counting_alloc!();

/// Keeps the last reply in a buffer reserved up front.
struct Sink {
    buf: RefCell<Vec<u8>>,
}

impl ReplySink for Sink {
    fn send(&self, parts: &[&[u8]]) {
        let mut b = self.buf.borrow_mut();
        b.clear();
        for p in parts {
            assert!(b.len() + p.len() <= b.capacity(), "sink would grow");
            b.extend_from_slice(p);
        }
    }
    fn send_file(&self, _parts: &[&[u8]], _file: FileRange) {
        unreachable!()
    }
}

impl Sink {
    /// The reply's error and body length.
    fn result(&self) -> (i32, usize) {
        let b = self.buf.borrow();
        let (h, rest) = fuse_out_header::read_from_prefix(&b).unwrap();
        (h.error, rest.len())
    }
}

const ROOT: u64 = 1;
const FILE_SIZE: usize = 1 << 20;

#[test]
fn steady_state_requests_do_not_allocate() {
    let fs = MemFs::new(MemFsConfig::default());
    let sink = Sink {
        buf: RefCell::new(Vec::with_capacity(2 << 20)),
    };
    let req: RequestHeader = fuse_in_header {
        uid: 1000,
        gid: 1000,
        unique: 1,
        ..Default::default()
    };
    let name = CString::new("file").unwrap();

    // Set up: a 1 MiB file, fully written, plus a sparse one.
    fs.create(
        &req,
        op::Create::new(
            ROOT,
            &fuse_create_in {
                flags: libc::O_RDWR as u32,
                mode: 0o644,
                umask: 0o022,
                open_flags: 0,
            },
            &name,
        ),
        ReplyCreate::new(1, &sink),
    );
    let ino = fuse_entry_out::read_from_prefix(&sink.buf.borrow()[16..])
        .unwrap()
        .0
        .nodeid;
    let data = vec![0x5Au8; FILE_SIZE];
    fs.write(
        &req,
        op::Write::new(
            ino,
            &fuse_write_in {
                fh: 0,
                offset: 0,
                size: data.len() as u32,
                write_flags: 0,
                flags: 0,
                ..Default::default()
            },
            &data,
        ),
        ReplyWrite::new(1, &sink),
    );
    assert_eq!(sink.result(), (0, 8));
    let block = vec![0xA5u8; 4096];

    let iteration = |i: usize| {
        fs.getattr(
            &req,
            op::Getattr::new(ino, &fuse_getattr_in::default()),
            ReplyAttr::new(1, &sink),
        );
        let (err, len) = sink.result();
        assert_eq!((err, len), (0, size_of::<fuse_attr_out>()));

        fs.lookup(
            &req,
            op::Lookup::new(ROOT, &name),
            ReplyEntry::new(1, &sink),
        );
        assert_eq!(sink.result(), (0, size_of::<fuse_entry_out>()));
        fs.forget(&req, op::Forget::new(ino, 1));

        fs.open(
            &req,
            op::Open::new(
                ino,
                &fuse_open_in {
                    flags: libc::O_RDWR as u32,
                    open_flags: 0,
                },
            ),
            ReplyOpen::new(1, &sink),
        );
        assert_eq!(sink.result(), (0, 16));

        let off = ((i * 7 * 4096 + i) % (FILE_SIZE - 4096)) as u64;
        fs.read(
            &req,
            op::Read::new(
                ino,
                &fuse_read_in {
                    fh: 0,
                    offset: off,
                    size: 4096,
                    flags: 0,
                    ..Default::default()
                },
            ),
            ReplyData::new(1, &sink),
        );
        assert_eq!(sink.result(), (0, 4096));
        fs.write(
            &req,
            op::Write::new(
                ino,
                &fuse_write_in {
                    fh: 0,
                    offset: off,
                    size: block.len() as u32,
                    write_flags: 0,
                    flags: 0,
                    ..Default::default()
                },
                &block,
            ),
            ReplyWrite::new(1, &sink),
        );
        assert_eq!(sink.result(), (0, 8));
        // A large read across chunk boundaries, too.
        fs.read(
            &req,
            op::Read::new(
                ino,
                &fuse_read_in {
                    fh: 0,
                    offset: off,
                    size: 1 << 20,
                    flags: 0,
                    ..Default::default()
                },
            ),
            ReplyData::new(1, &sink),
        );
        assert_eq!(sink.result(), (0, FILE_SIZE - off as usize));

        fs.release(
            &req,
            op::Release::new(
                ino,
                &fuse_release_in {
                    fh: 0,
                    flags: 0,
                    release_flags: 0,
                    lock_owner: 0,
                },
            ),
            ReplyEmpty::new(1, &sink),
        );
        assert_eq!(sink.result(), (0, 0));
    };

    for i in 0..100 {
        iteration(i);
    }
    let before = allocations();
    for i in 0..10_000 {
        iteration(i);
    }
    let made = allocations() - before;
    assert_eq!(
        made, 0,
        "{made} allocations in 10,000 steady-state iterations"
    );

    // The counter works: creating a file does allocate.
    let other = CString::new("other").unwrap();
    let before = allocations();
    fs.mkdir(
        &req,
        op::Mkdir::new(
            ROOT,
            &fuse_mkdir_in {
                mode: 0o755,
                umask: 0,
            },
            &other,
        ),
        ReplyEntry::new(1, &sink),
    );
    assert!(allocations() > before);
}
