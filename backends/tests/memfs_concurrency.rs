//! memfs shared by many threads: parallel readers and writers of one file
//! see whole writes, and concurrent namespace changes (cross-directory
//! renames in both directions, creates, unlinks, listings) neither deadlock
//! nor break link counts.

use fuselage_backends::{MemFs, MemFsConfig};
use fuselage_core::DirentBuf;
use fuselage_core::abi::{
    fuse_attr_out, fuse_create_in, fuse_entry_out, fuse_getattr_in, fuse_in_header, fuse_mkdir_in,
    fuse_out_header, fuse_read_in, fuse_write_in,
};
use fuselage_core::op;
use fuselage_core::reply::{
    FileRange, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplySink, ReplyWrite,
};
use fuselage_core::{Errno, Filesystem, RequestHeader};
use std::cell::RefCell;
use std::ffi::CString;
use std::sync::mpsc;
use std::time::Duration;
use zerocopy::FromBytes;

const ROOT: u64 = 1;

/// Keeps the last reply; one per thread.
#[derive(Default)]
struct Sink {
    last: RefCell<Vec<u8>>,
}

impl ReplySink for Sink {
    fn send(&self, parts: &[&[u8]]) {
        let mut b = self.last.borrow_mut();
        b.clear();
        for p in parts {
            b.extend_from_slice(p);
        }
    }
    fn send_file(&self, _parts: &[&[u8]], _file: FileRange) {
        unreachable!()
    }
}

impl Sink {
    fn body(&self) -> Result<Vec<u8>, Errno> {
        let b = self.last.borrow();
        let (h, rest) = fuse_out_header::read_from_prefix(&b).unwrap();
        if h.error != 0 {
            Err(Errno(-h.error))
        } else {
            Ok(rest.to_vec())
        }
    }

    fn entry(&self) -> Result<fuse_entry_out, Errno> {
        let e = fuse_entry_out::read_from_prefix(&self.body()?).unwrap().0;
        if e.nodeid == 0 {
            Err(Errno::ENOENT)
        } else {
            Ok(e)
        }
    }
}

fn req() -> RequestHeader {
    fuse_in_header {
        uid: 1000,
        gid: 1000,
        ..Default::default()
    }
}

fn name(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn mkdir(fs: &MemFs, sink: &Sink, parent: u64, n: &str) -> Result<u64, Errno> {
    fs.mkdir(
        &req(),
        op::Mkdir::new(
            parent,
            &fuse_mkdir_in {
                mode: 0o755,
                umask: 0,
            },
            &name(n),
        ),
        ReplyEntry::new(0, sink),
    );
    sink.entry().map(|e| e.nodeid)
}

fn lookup(fs: &MemFs, sink: &Sink, parent: u64, n: &str) -> Result<fuse_entry_out, Errno> {
    fs.lookup(
        &req(),
        op::Lookup::new(parent, &name(n)),
        ReplyEntry::new(0, sink),
    );
    sink.entry()
}

fn nlink(fs: &MemFs, sink: &Sink, ino: u64) -> u32 {
    fs.getattr(
        &req(),
        op::Getattr::new(ino, &fuse_getattr_in::default()),
        ReplyAttr::new(0, sink),
    );
    fuse_attr_out::read_from_bytes(&sink.body().unwrap())
        .unwrap()
        .attr
        .nlink
}

/// Runs `f` on another thread and fails if it does not finish in time (a
/// deadlock would otherwise hang the test run).
fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The worker panicked: surface its message.
            worker.join().unwrap();
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("deadlock: not done after {secs} s"),
    }
}

#[test]
fn parallel_readers_and_writers_see_whole_writes() {
    within(120, || {
        let fs = MemFs::new(MemFsConfig::default());
        let sink = Sink::default();
        fs.create(
            &req(),
            op::Create::new(
                ROOT,
                &fuse_create_in {
                    flags: libc::O_RDWR as u32,
                    mode: 0o644,
                    umask: 0,
                    open_flags: 0,
                },
                &name("shared"),
            ),
            ReplyCreate::new(0, &sink),
        );
        let ino = sink.entry().unwrap().nodeid;
        const BLOCK: usize = 16 * 1024;
        const BLOCKS: usize = 64;
        fs.write(
            &req(),
            op::Write::new(
                ino,
                &fuse_write_in {
                    fh: 0,
                    offset: 0,
                    size: (BLOCK * BLOCKS) as u32,
                    write_flags: 0,
                    flags: 0,
                    ..Default::default()
                },
                &vec![0u8; BLOCK * BLOCKS],
            ),
            ReplyWrite::new(0, &sink),
        );
        std::thread::scope(|s| {
            for writer in 1..=4u8 {
                let fs = &fs;
                s.spawn(move || {
                    let sink = Sink::default();
                    let block = vec![writer; BLOCK];
                    for i in 0..2000 {
                        // Writes straddle 128 KiB chunk boundaries too.
                        let off = ((i * 7 + writer as usize) % BLOCKS) * BLOCK + 8192;
                        let off = off.min(BLOCK * (BLOCKS - 1)) as u64;
                        fs.write(
                            &req(),
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
                            ReplyWrite::new(0, &sink),
                        );
                        sink.body().unwrap();
                    }
                });
            }
            for reader in 0..4usize {
                let fs = &fs;
                s.spawn(move || {
                    let sink = Sink::default();
                    for i in 0..2000 {
                        let off =
                            ((i * 5 + reader) % BLOCKS * BLOCK + 8192).min(BLOCK * (BLOCKS - 1));
                        fs.read(
                            &req(),
                            op::Read::new(
                                ino,
                                &fuse_read_in {
                                    fh: 0,
                                    offset: off as u64,
                                    size: BLOCK as u32,
                                    flags: 0,
                                    ..Default::default()
                                },
                            ),
                            ReplyData::new(0, &sink),
                        );
                        let data = sink.body().unwrap();
                        assert_eq!(data.len(), BLOCK);
                        // Every aligned write is all-or-nothing, so within an
                        // aligned read the bytes come from at most two writes
                        // (the ones overlapping its two halves).
                        let distinct = data.windows(2).filter(|w| w[0] != w[1]).count();
                        assert!(distinct <= 2, "torn read: {distinct} changes");
                    }
                });
            }
        });
    });
}

#[test]
fn concurrent_namespace_changes_do_not_deadlock() {
    within(120, || {
        let fs = MemFs::new(MemFsConfig::default());
        let sink = Sink::default();
        let a = mkdir(&fs, &sink, ROOT, "a").unwrap();
        let b = mkdir(&fs, &sink, ROOT, "b").unwrap();
        let a_sub = mkdir(&fs, &sink, a, "sub").unwrap();
        for i in 0..4 {
            mkdir(&fs, &sink, a, &format!("m{i}")).unwrap();
        }
        std::thread::scope(|s| {
            // Movers: directories go a -> b and b -> a concurrently, and
            // a subdirectory between "a/sub" and "b" (parent and child
            // locked in every order).
            for t in 0..4usize {
                let fs = &fs;
                s.spawn(move || {
                    let sink = Sink::default();
                    let n = name(&format!("m{t}"));
                    for i in 0..3000 {
                        let (from, to) = if (i + t) % 2 == 0 { (a, b) } else { (b, a) };
                        fs.rename(
                            &req(),
                            op::Rename::new(from, &n, to, &n, 0),
                            ReplyEmpty::new(0, &sink),
                        );
                        let _ = sink.body();
                        let (from, to) = if i % 2 == 0 { (a_sub, b) } else { (b, a_sub) };
                        fs.rename(
                            &req(),
                            op::Rename::new(from, &n, to, &n, 0),
                            ReplyEmpty::new(0, &sink),
                        );
                        let _ = sink.body();
                    }
                });
            }
            // Creators and removers in all three directories.
            for t in 0..2usize {
                let fs = &fs;
                s.spawn(move || {
                    let sink = Sink::default();
                    for i in 0..3000 {
                        let dir = [a, b, a_sub][i % 3];
                        let n = format!("f{t}-{}", i % 10);
                        if mkdir(fs, &sink, dir, &n).is_ok() {
                            fs.forget(&req(), op::Forget::new(sink.entry().unwrap().nodeid, 1));
                        }
                        fs.rmdir(
                            &req(),
                            op::Rmdir::new(dir, &name(&n)),
                            ReplyEmpty::new(0, &sink),
                        );
                        let _ = sink.body();
                    }
                });
            }
            // Listers with READDIRPLUS (locking children's metadata).
            let fs = &fs;
            s.spawn(move || {
                let sink = Sink::default();
                let mut scratch = vec![0u8; 4096];
                for i in 0..3000 {
                    let dir = [a, b, a_sub][i % 3];
                    let buf = DirentBuf::new(&mut scratch, 4096);
                    fs.readdirplus(
                        &req(),
                        op::Readdirplus::new(
                            dir,
                            &fuse_read_in {
                                fh: 0,
                                offset: 0,
                                ..Default::default()
                            },
                        ),
                        ReplyDirectory::new(0, &sink, buf),
                    );
                    let _ = sink.body();
                }
            });
        });
        // Link counts add up: every m* is in a, b or a/sub.
        let count_in = |dir: u64| {
            (0..4)
                .filter(|i| lookup(&fs, &sink, dir, &format!("m{i}")).is_ok())
                .count() as u32
        };
        let (in_a, in_b, in_sub) = (count_in(a), count_in(b), count_in(a_sub));
        assert_eq!(in_a + in_b + in_sub, 4);
        let leftover = |dir: u64| {
            (0..2)
                .flat_map(|t| (0..10).map(move |i| format!("f{t}-{i}")))
                .filter(|n| lookup(&fs, &sink, dir, n).is_ok())
                .count() as u32
        };
        assert_eq!(nlink(&fs, &sink, a), 2 + 1 + in_a + leftover(a));
        assert_eq!(nlink(&fs, &sink, b), 2 + in_b + leftover(b));
        assert_eq!(nlink(&fs, &sink, a_sub), 2 + in_sub + leftover(a_sub));
        assert_eq!(nlink(&fs, &sink, ROOT), 4);
    });
}
