//! Load (issue 16): 16 client threads run mixed operations for a while on
//! every backend × transport row, checked byte for byte against an
//! in-memory model, while the server's resident memory is sampled and a
//! watchdog looks for a deadlock.
//!
//! Each thread owns [`FILES_PER_THREAD`] files, so its model of them is
//! exact whatever the other threads do; the files live in directories that
//! every thread shares, and renames move them between those directories
//! (and over one another), so the namespace is contended while each name
//! stays owned. The operations: `pwrite` of random bytes at random ranges,
//! `pread` compared with the model (also across EOF), `ftruncate` growing
//! and shrinking, `fallocate` (mode 0, and `PUNCH_HOLE | KEEP_SIZE`),
//! reads and writes through a `MAP_SHARED` mapping (`msync`ed), `rename`
//! to a new name, `rename` over another owned file, `fsync`/`fdatasync`,
//! close and reopen (sometimes with `O_TRUNC`), and whole-file checks
//! through the open descriptor and through `O_DIRECT` (the server's data,
//! not the page cache). At the end every file is compared again by path,
//! with `O_DIRECT`, and on the host (rows with a source directory), and
//! every shared directory must list exactly the names the model expects.
//!
//! - Duration: `FUSELAGE_LOAD_SECS` per row (default [`DEFAULT_SECS`], the
//!   short form CI runs). The long form is one command (README "Tests"):
//!   `FUSELAGE_LOAD_SECS=300 cargo nextest run -p fuselage --test load
//!   --profile load` (the `load` profile of `.config/nextest.toml` runs one
//!   row at a time, allows each 20 minutes and prints its report; the
//!   server's watchdog here scales with the duration).
//! - Seed: printed at the start of each row and in every failure; set
//!   `FUSELAGE_LOAD_SEED` to replay a thread's sequence of operations (the
//!   interleaving of threads is the scheduler's).
//! - Memory: the server's `VmRSS` is sampled after a warm-up (a fifth of the
//!   run, 3 s to 60 s) and every 100 ms after it; its peak may exceed the
//!   warm-up sample by at most [`RSS_GROWTH_LONG`] in runs of
//!   [`LONG_FORM_SECS`] or more and by [`RSS_GROWTH_SHORT`] in shorter ones.
//!   The files hold at most 8 MiB together ([`THREADS`] ×
//!   [`FILES_PER_THREAD`] × [`MAX_FILE`]) and their total size is steady
//!   after the warm-up, so memfs's own data stays well inside the bound.
//! - Deadlock: if no operation completes for [`STALL`], the test dumps the
//!   server's and its own threads' `wchan` and kernel stacks, kills the
//!   server (so blocked requests fail) and fails. (A thread blocked in a
//!   page fault of a mapping then dies of SIGBUS, which ends the test
//!   process: the dump is printed before.) Checked by hand with
//!   `kill -STOP` of the server during a run.
//! - `fallocate` modes a backend answers with `EOPNOTSUPP` are dropped for
//!   that row and reported on stderr (none do today: memfs, passthrough,
//!   overlay and router all support both).

#[path = "common/mod.rs"]
mod common;

use common::*;
use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Client threads.
const THREADS: usize = 16;
/// Files each thread owns.
const FILES_PER_THREAD: usize = 4;
/// Largest size a file reaches.
const MAX_FILE: u64 = 128 << 10;
/// Largest single read or write.
const MAX_IO: u64 = 32 << 10;
/// Seconds per row without `FUSELAGE_LOAD_SECS`.
const DEFAULT_SECS: u64 = 10;
/// Runs at least this long use the strict memory bound.
const LONG_FORM_SECS: u64 = 60;
/// How far the server's RSS may rise above the warm-up sample in a long run.
const RSS_GROWTH_LONG: u64 = 16 << 20;
/// The same bound for short runs, where allocator pools may still be filling.
const RSS_GROWTH_SHORT: u64 = 32 << 20;
/// No operation completing for this long is a deadlock.
const STALL: Duration = Duration::from_secs(30);
/// Operations remembered per thread for a failure report.
const HISTORY: usize = 16;

// ---------------------------------------------------------------------------
// A seeded generator (xorshift64*)
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 once, so that nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `1..=n`.
    fn len(&mut self, n: u64) -> u64 {
        1 + self.below(n.max(1))
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Read,
    Truncate,
    Allocate,
    PunchHole,
    MmapRead,
    MmapWrite,
    Rename,
    RenameOver,
    Fsync,
    Reopen,
    Verify,
    VerifyDirect,
}

/// Each operation with its weight.
const OPS: [(Op, u64); 13] = [
    (Op::Write, 24),
    (Op::Read, 24),
    (Op::Truncate, 6),
    (Op::Allocate, 4),
    (Op::PunchHole, 4),
    (Op::MmapRead, 5),
    (Op::MmapWrite, 5),
    (Op::Rename, 6),
    (Op::RenameOver, 2),
    (Op::Fsync, 3),
    (Op::Reopen, 5),
    (Op::Verify, 2),
    (Op::VerifyDirect, 1),
];

fn pick(rng: &mut Rng) -> Op {
    let total: u64 = OPS.iter().map(|(_, w)| w).sum();
    let mut r = rng.below(total);
    for (op, w) in OPS {
        if r < w {
            return op;
        }
        r -= w;
    }
    unreachable!("the weights cover 0..total")
}

fn op_index(op: Op) -> usize {
    OPS.iter().position(|(o, _)| *o == op).expect("listed")
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

struct Shared {
    /// Set when the time is up or a thread failed.
    stop: AtomicBool,
    /// Operations completed, by all threads (the watchdog's heartbeat).
    progress: AtomicU64,
    /// Completed operations per [`Op`].
    counts: [AtomicU64; OPS.len()],
    /// `fallocate` mode 0 answered EOPNOTSUPP.
    no_allocate: AtomicBool,
    /// `fallocate` PUNCH_HOLE answered EOPNOTSUPP.
    no_punch: AtomicBool,
    /// Total bytes of each thread's files in the model.
    data_bytes: [AtomicU64; THREADS],
    /// Threads still running.
    running: AtomicUsize,
    /// Failure reports.
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, report: String) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(report);
        self.stop.store(true, Ordering::SeqCst);
    }

    fn total_data(&self) -> u64 {
        self.data_bytes
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

/// One owned file: where it is, what it must hold, and its descriptor.
struct Slot {
    /// Index into the row's directory list.
    dir: usize,
    name: String,
    data: Vec<u8>,
    fd: Option<OwnedFd>,
}

/// The directories of a row, relative to the mountpoint, in groups: a
/// thread renames only within its group (the router row keeps half the
/// threads on the route, where a rename to the root would be EXDEV).
fn dir_groups(backend: Backend) -> Vec<Vec<&'static str>> {
    if backend == Backend::Router {
        vec![vec!["d0", "d1"], vec!["routed/d0", "routed/d1"]]
    } else {
        vec![vec!["d0", "d1", "d2", "d3"]]
    }
}

/// What a worker needs to know about the mount.
struct Place {
    root: PathBuf,
    dirs: Vec<&'static str>,
}

impl Place {
    fn path(&self, slot: &Slot) -> PathBuf {
        self.root.join(self.dirs[slot.dir]).join(&slot.name)
    }
}

// ---------------------------------------------------------------------------
// Syscalls returning errno
// ---------------------------------------------------------------------------

fn open_rw(path: &Path, extra: i32) -> Result<OwnedFd, String> {
    open_raw(path, libc::O_RDWR | extra, 0o644).map_err(|e| format!("open {}: {e}", path.display()))
}

fn errno_of(r: i32) -> Result<(), i32> {
    if r < 0 { Err(errno()) } else { Ok(()) }
}

/// Compares `got` with `want`, describing the first difference.
fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    match first_difference(got, want) {
        None => Ok(()),
        Some(i) => Err(format!(
            "MISMATCH in {what}: first difference at byte {i} (got {:?}, want {:?}); got {} bytes, want {}",
            got.get(i),
            want.get(i),
            got.len(),
            want.len()
        )),
    }
}

/// A shared mapping of the first `len` bytes of `fd`, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(fd: &OwnedFd, len: usize, writable: bool) -> Result<Mapping, String> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of an open fd; the slice views
        // below stay within `len`, which never exceeds the file's size
        // (only this thread changes it, and not while mapped).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", errno_name(errno())));
        }
        Ok(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: a live mapping of `len` bytes, all within the file.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; the mapping is writable when this is called.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<u8>(), self.len) }
    }

    fn sync(&self) -> Result<(), String> {
        // SAFETY: msync of a live mapping.
        errno_of(unsafe { libc::msync(self.ptr, self.len, libc::MS_SYNC) })
            .map_err(|e| format!("msync: {}", errno_name(e)))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping this value owns; no slice outlives it.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The whole file read through `fd` (one byte more than the model holds,
/// so data past the model's end shows up).
fn read_all(fd: &OwnedFd, want_len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; want_len + 1];
    let n = pread_full(fd.as_raw_fd(), &mut buf, 0).map_err(|e| format!("pread: {e}"))?;
    buf.truncate(n);
    Ok(buf)
}

/// The whole file read with O_DIRECT through a new descriptor.
fn read_direct_checked(path: &Path) -> Result<Vec<u8>, String> {
    let fd = open_raw(path, libc::O_RDONLY | libc::O_DIRECT, 0)
        .map_err(|e| format!("open O_DIRECT {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut buf = AlignedBuf::page_aligned(256 << 10);
    loop {
        let n = pread_full(fd.as_raw_fd(), &mut buf, out.len() as u64)
            .map_err(|e| format!("O_DIRECT pread at {}: {e}", out.len()))?;
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

// ---------------------------------------------------------------------------
// A worker
// ---------------------------------------------------------------------------

struct Worker {
    tid: usize,
    seed: u64,
    rng: Rng,
    place: Place,
    group: Vec<usize>,
    slots: Vec<Slot>,
    generation: u64,
    history: VecDeque<String>,
    shared: Arc<Shared>,
}

impl Worker {
    fn new_name(&mut self, k: usize) -> String {
        self.generation += 1;
        format!("t{}.f{k}.g{}", self.tid, self.generation)
    }

    fn random_dir(&mut self) -> usize {
        self.group[self.rng.below(self.group.len() as u64) as usize]
    }

    fn create(&mut self, k: usize) -> Result<Slot, String> {
        let dir = self.random_dir();
        let name = self.new_name(k);
        let mut slot = Slot {
            dir,
            name,
            data: Vec::new(),
            fd: None,
        };
        let fd = open_rw(&self.place.path(&slot), libc::O_CREAT | libc::O_EXCL)?;
        slot.fd = Some(fd);
        Ok(slot)
    }

    fn note(&mut self, what: String) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(what);
    }

    fn report(&self, n: u64, err: &str) -> String {
        let mut s = format!(
            "thread {} (thread seed {:#x}) at operation {n}: {err}\n  last operations of this thread, oldest first:",
            self.tid, self.seed
        );
        for h in &self.history {
            let _ = write!(s, "\n    {h}");
        }
        s
    }

    fn run(mut self) -> Result<Vec<Slot>, String> {
        for k in 0..FILES_PER_THREAD {
            let slot = self.create(k)?;
            self.slots.push(slot);
        }
        let mut n = 0u64;
        while !self.shared.stop.load(Ordering::Relaxed) {
            n += 1;
            let op = pick(&mut self.rng);
            let k = self.rng.below(FILES_PER_THREAD as u64) as usize;
            if let Err(e) = self.step(op, k) {
                return Err(self.report(n, &e));
            }
            self.shared.counts[op_index(op)].fetch_add(1, Ordering::Relaxed);
            self.shared.progress.fetch_add(1, Ordering::Relaxed);
            let bytes = self.slots.iter().map(|s| s.data.len() as u64).sum();
            self.shared.data_bytes[self.tid].store(bytes, Ordering::Relaxed);
        }
        // Leave every file synced and closed for the final comparison.
        for k in 0..self.slots.len() {
            if let Some(fd) = self.slots[k].fd.take() {
                // SAFETY: fsync of an open fd.
                errno_of(unsafe { libc::fsync(fd.as_raw_fd()) }).map_err(|e| {
                    self.report(n, &format!("final fsync of file {k}: {}", errno_name(e)))
                })?;
            }
        }
        Ok(self.slots)
    }

    /// Makes sure slot `k` has an open descriptor.
    fn fd(&mut self, k: usize) -> Result<&OwnedFd, String> {
        if self.slots[k].fd.is_none() {
            let fd = open_rw(&self.place.path(&self.slots[k]), 0)?;
            self.slots[k].fd = Some(fd);
        }
        Ok(self.slots[k].fd.as_ref().expect("just opened"))
    }

    fn step(&mut self, op: Op, k: usize) -> Result<(), String> {
        let size = self.slots[k].data.len() as u64;
        let path = self.place.path(&self.slots[k]);
        let what = format!("{op:?} {} (size {size})", path.display());
        match op {
            Op::Write => {
                let off = self.rng.below(MAX_FILE);
                let len = self.rng.len(MAX_IO.min(MAX_FILE - off));
                let mut buf = vec![0u8; len as usize];
                self.rng.fill(&mut buf);
                self.note(format!("{what}: pwrite {len} at {off}"));
                let fd = self.fd(k)?.as_raw_fd();
                pwrite_full(fd, &buf, off).map_err(|e| format!("pwrite: {e}"))?;
                let data = &mut self.slots[k].data;
                let end = (off + len) as usize;
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[off as usize..end].copy_from_slice(&buf);
            }
            Op::Read => {
                // Also ranges that cross or start past EOF.
                let off = self.rng.below(size + 4096);
                let len = self.rng.len(MAX_IO);
                self.note(format!("{what}: pread {len} at {off}"));
                let mut buf = vec![0u8; len as usize];
                let fd = self.fd(k)?.as_raw_fd();
                let got = pread_full(fd, &mut buf, off).map_err(|e| format!("pread: {e}"))?;
                let data = &self.slots[k].data;
                let from = (off as usize).min(data.len());
                let to = ((off + len) as usize).min(data.len());
                compare(
                    &format!("pread of {len} at {off}"),
                    &buf[..got],
                    &data[from..to],
                )?;
            }
            Op::Truncate => {
                let new = self.rng.below(MAX_FILE + 1);
                self.note(format!("{what}: ftruncate to {new}"));
                let fd = self.fd(k)?.as_raw_fd();
                // SAFETY: ftruncate of an open fd.
                errno_of(unsafe { libc::ftruncate(fd, new as libc::off_t) })
                    .map_err(|e| format!("ftruncate: {}", errno_name(e)))?;
                self.slots[k].data.resize(new as usize, 0);
            }
            Op::Allocate | Op::PunchHole => {
                let (mode, flag) = if op == Op::Allocate {
                    (0, &self.shared.no_allocate)
                } else {
                    (
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        &self.shared.no_punch,
                    )
                };
                if flag.load(Ordering::Relaxed) {
                    return Ok(());
                }
                // A punch starts inside the file (it may reach past EOF).
                let room = if op == Op::PunchHole { size } else { MAX_FILE };
                if room == 0 {
                    return Ok(());
                }
                let off = self.rng.below(room);
                let len = self.rng.len((2 * MAX_IO).min(MAX_FILE - off));
                self.note(format!("{what}: fallocate mode {mode:#x} {len} at {off}"));
                let fd = self.fd(k)?.as_raw_fd();
                // SAFETY: fallocate of an open fd.
                let r = unsafe { libc::fallocate(fd, mode, off as i64, len as i64) };
                match errno_of(r) {
                    Ok(()) => {}
                    Err(libc::EOPNOTSUPP) => {
                        let flag = if op == Op::Allocate {
                            &self.shared.no_allocate
                        } else {
                            &self.shared.no_punch
                        };
                        flag.store(true, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(e) => return Err(format!("fallocate: {}", errno_name(e))),
                }
                let data = &mut self.slots[k].data;
                let end = (off + len) as usize;
                if op == Op::Allocate {
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                } else {
                    let end = end.min(data.len());
                    data[off as usize..end].fill(0);
                }
            }
            Op::MmapRead | Op::MmapWrite => {
                if size == 0 {
                    return Ok(());
                }
                let off = self.rng.below(size);
                let len = self.rng.len(MAX_IO.min(size - off));
                let writable = op == Op::MmapWrite;
                self.note(format!("{what}: mmap {len} at {off}"));
                let map = Mapping::new(self.fd(k)?, size as usize, writable)?;
                let (from, to) = (off as usize, (off + len) as usize);
                if writable {
                    let mut buf = vec![0u8; len as usize];
                    self.rng.fill(&mut buf);
                    let mut map = map;
                    map.bytes_mut()[from..to].copy_from_slice(&buf);
                    map.sync()?;
                    drop(map);
                    self.slots[k].data[from..to].copy_from_slice(&buf);
                } else {
                    compare(
                        &format!("mmap read of {len} at {off}"),
                        &map.bytes()[from..to],
                        &self.slots[k].data[from..to],
                    )?;
                }
            }
            Op::Rename => {
                let dir = self.random_dir();
                let name = self.new_name(k);
                let to = self.place.root.join(self.place.dirs[dir]).join(&name);
                self.note(format!("{what}: rename to {}", to.display()));
                fs::rename(&path, &to).map_err(|e| format!("rename: {e}"))?;
                self.slots[k].dir = dir;
                self.slots[k].name = name;
            }
            Op::RenameOver => {
                // File k replaces another owned file j, whose name it takes;
                // slot k then starts again as a new empty file.
                let j = (k + 1 + self.rng.below(FILES_PER_THREAD as u64 - 1) as usize)
                    % FILES_PER_THREAD;
                let target = self.place.path(&self.slots[j]);
                self.note(format!("{what}: rename over {}", target.display()));
                fs::rename(&path, &target).map_err(|e| format!("rename over: {e}"))?;
                let fresh = self.create(k)?;
                let moved = std::mem::replace(&mut self.slots[k], fresh);
                // The descriptor moves with its file; j's old one, on the
                // file just replaced (now unlinked), is closed.
                self.slots[j].data = moved.data;
                self.slots[j].fd = moved.fd;
            }
            Op::Fsync => {
                let data_only = self.rng.chance(2);
                self.note(format!("{what}: fsync (data only: {data_only})"));
                let fd = self.fd(k)?.as_raw_fd();
                // SAFETY: fsync/fdatasync of an open fd.
                let r = unsafe {
                    if data_only {
                        libc::fdatasync(fd)
                    } else {
                        libc::fsync(fd)
                    }
                };
                errno_of(r).map_err(|e| format!("fsync: {}", errno_name(e)))?;
            }
            Op::Reopen => {
                let trunc = self.rng.chance(8);
                self.note(format!("{what}: close and reopen (O_TRUNC: {trunc})"));
                self.slots[k].fd = None;
                let fd = open_rw(&path, if trunc { libc::O_TRUNC } else { 0 })?;
                self.slots[k].fd = Some(fd);
                if trunc {
                    self.slots[k].data.clear();
                }
            }
            Op::Verify => {
                self.note(format!("{what}: whole file through the descriptor"));
                let fd = self.fd(k)?;
                let st = fstat(fd.as_raw_fd()).map_err(|e| format!("fstat: {e}"))?;
                let got = read_all(fd, size as usize)?;
                if st.st_size as u64 != size {
                    return Err(format!(
                        "MISMATCH: fstat size {} but the model has {size}",
                        st.st_size
                    ));
                }
                compare("whole-file read", &got, &self.slots[k].data)?;
            }
            Op::VerifyDirect => {
                self.note(format!("{what}: whole file with O_DIRECT"));
                let got = read_direct_checked(&path)?;
                compare("whole-file O_DIRECT read", &got, &self.slots[k].data)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Watching the server
// ---------------------------------------------------------------------------

/// Resident bytes of process `pid` (`VmRSS`).
fn rss(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Every thread of `pid` (`self` for this process): name, state, wchan and
/// kernel stack.
fn dump_tasks(pid: &str) -> String {
    let mut out = String::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("  (no /proc/{pid}/task)\n");
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_else(|e| format!("({e})"));
        let state = read("status")
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or("")
            .to_string();
        let _ = writeln!(
            out,
            "  task {} {} {} wchan={}",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            state,
            read("wchan").trim()
        );
        for line in read("stack").lines() {
            let _ = writeln!(out, "      {line}");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// A row
// ---------------------------------------------------------------------------

fn secs() -> u64 {
    std::env::var("FUSELAGE_LOAD_SECS")
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("FUSELAGE_LOAD_SECS={v:?} is not a whole number"))
        })
        .unwrap_or(DEFAULT_SECS)
}

fn seed() -> u64 {
    match std::env::var("FUSELAGE_LOAD_SEED") {
        Ok(v) => {
            let v = v.trim_start_matches("0x");
            u64::from_str_radix(v, 16)
                .unwrap_or_else(|_| panic!("FUSELAGE_LOAD_SEED={v:?} is not hexadecimal"))
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

fn run(setup: &Setup) {
    let secs = secs();
    let seed = seed();
    let duration = Duration::from_secs(secs);
    let warm_up = (duration / 5).clamp(Duration::from_secs(3), Duration::from_secs(60));
    let row = format!("{:?}/{}", setup.backend, setup.transport);
    eprintln!(
        "load {row}: seed {seed:#x} (FUSELAGE_LOAD_SEED), {secs} s (FUSELAGE_LOAD_SECS), {THREADS} threads × {FILES_PER_THREAD} files"
    );
    let mut fs = MountedFs::mount_with(
        setup,
        MountConfig {
            // Room for the run, a stall report and the final comparison.
            deadline: Some(duration + STALL + Duration::from_secs(60)),
            ..MountConfig::default()
        },
    );
    let pid = fs.pid();
    let groups = dir_groups(setup.backend);
    let dirs: Vec<&'static str> = groups.iter().flatten().copied().collect();
    for d in &dirs {
        fs::create_dir_all(fs.join(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        counts: std::array::from_fn(|_| AtomicU64::new(0)),
        no_allocate: AtomicBool::new(false),
        no_punch: AtomicBool::new(false),
        data_bytes: std::array::from_fn(|_| AtomicU64::new(0)),
        running: AtomicUsize::new(THREADS),
        failures: Mutex::new(Vec::new()),
    });

    let mut workers = Vec::new();
    for tid in 0..THREADS {
        let group_names = &groups[tid % groups.len()];
        let group = group_names
            .iter()
            .map(|g| dirs.iter().position(|d| d == g).expect("listed"))
            .collect();
        let thread_seed = seed ^ (tid as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let worker = Worker {
            tid,
            seed: thread_seed,
            rng: Rng::new(thread_seed),
            place: Place {
                root: fs.path().to_path_buf(),
                dirs: dirs.clone(),
            },
            group,
            slots: Vec::new(),
            generation: 0,
            history: VecDeque::new(),
            shared: shared.clone(),
        };
        let sh = shared.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("load-{tid}"))
                .spawn(move || {
                    let r = worker.run();
                    if let Err(e) = &r {
                        sh.fail(e.clone());
                    }
                    sh.running.fetch_sub(1, Ordering::SeqCst);
                    r
                })
                .expect("spawn a load thread"),
        );
    }

    // Watch: progress (deadlock), memory, time.
    let start = Instant::now();
    let mut last_progress = (0u64, Instant::now());
    let mut rss_warm: Option<(u64, u64)> = None;
    let mut rss_peak = 0u64;
    let mut stalled: Option<String> = None;
    while shared.running.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let p = shared.progress.load(Ordering::Relaxed);
        if p != last_progress.0 {
            last_progress = (p, now);
        } else if now - last_progress.1 > STALL && stalled.is_none() {
            let report = format!(
                "DEADLOCK: no operation completed for {STALL:?} ({p} done, seed {seed:#x}).\nserver (pid {pid}) threads:\n{}test threads:\n{}",
                dump_tasks(&pid.to_string()),
                dump_tasks("self")
            );
            eprintln!("{report}");
            stalled = Some(report);
            shared.stop.store(true, Ordering::SeqCst);
            // Blocked requests fail with ENOTCONN once the server is gone.
            fs.server().signal(libc::SIGKILL);
        }
        if now - start >= warm_up
            && !shared.stop.load(Ordering::Relaxed)
            && let Some(r) = rss(pid)
        {
            match rss_warm {
                None => rss_warm = Some((r, shared.total_data())),
                Some(_) => rss_peak = rss_peak.max(r),
            }
        }
        if now - start >= duration {
            shared.stop.store(true, Ordering::SeqCst);
        }
        if let Some(report) = &stalled
            && now - last_progress.1 > STALL + Duration::from_secs(10)
        {
            // Threads still stuck after the server was killed.
            panic!("{report}");
        }
    }
    let elapsed = start.elapsed();
    let rss_end = rss(pid);
    let data_end = shared.total_data();

    let mut all = Vec::new();
    for (tid, w) in workers.into_iter().enumerate() {
        match w.join() {
            Ok(Ok(slots)) => all.extend(slots),
            Ok(Err(_)) => {} // reported in `failures`
            Err(_) => shared.fail(format!("thread {tid} panicked (seed {seed:#x})")),
        }
    }
    if let Some(report) = stalled {
        panic!("{report}");
    }
    let failures = shared
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        failures.is_empty(),
        "load {row} (seed {seed:#x}): {} thread(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Report.
    let total = shared.progress.load(Ordering::Relaxed);
    let mut counts = String::new();
    for (i, (op, _)) in OPS.iter().enumerate() {
        let _ = write!(
            counts,
            " {op:?}={}",
            shared.counts[i].load(Ordering::Relaxed)
        );
    }
    eprintln!(
        "load {row}: {total} operations in {:.1} s ({:.0}/s):{counts}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    for (flag, what) in [
        (&shared.no_allocate, "fallocate mode 0"),
        (&shared.no_punch, "fallocate PUNCH_HOLE|KEEP_SIZE"),
    ] {
        if flag.load(Ordering::Relaxed) {
            eprintln!("load {row}: {what} answered EOPNOTSUPP; that operation was skipped");
        }
    }

    // Every byte of every file, by path, through the page cache, with
    // O_DIRECT, and on the host; every directory's listing.
    let root = fs.path().to_path_buf();
    let mut checked = 0u64;
    let mut expected_names: Vec<BTreeSet<String>> = vec![BTreeSet::new(); dirs.len()];
    for slot in &all {
        let path = root.join(dirs[slot.dir]).join(&slot.name);
        expected_names[slot.dir].insert(slot.name.clone());
        let st = lstat(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        assert_eq!(
            st.st_size as usize,
            slot.data.len(),
            "MISMATCH: size of {} (seed {seed:#x})",
            path.display()
        );
        let cached = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if let Err(e) = compare("final read", &cached, &slot.data) {
            panic!("{} (seed {seed:#x}): {e}", path.display());
        }
        let direct = read_direct_checked(&path).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = compare("final O_DIRECT read", &direct, &slot.data) {
            panic!("{} (seed {seed:#x}): {e}", path.display());
        }
        if let Some(src) = fs.source() {
            let host = src.join(dirs[slot.dir]).join(&slot.name);
            let on_host =
                fs::read(&host).unwrap_or_else(|e| panic!("read {}: {e}", host.display()));
            if let Err(e) = compare("host file", &on_host, &slot.data) {
                panic!("{} (seed {seed:#x}): {e}", host.display());
            }
        }
        checked += slot.data.len() as u64;
    }
    for (i, d) in dirs.iter().enumerate() {
        let listed: BTreeSet<String> = fs::read_dir(root.join(d))
            .unwrap_or_else(|e| panic!("readdir {d}: {e}"))
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert_eq!(
            listed, expected_names[i],
            "MISMATCH: the names in {d} (seed {seed:#x})"
        );
    }
    eprintln!(
        "load {row}: {} files, {checked} bytes compared at the end: no mismatch",
        all.len()
    );

    // Memory after the warm-up.
    let (warm, data_warm) = rss_warm.expect("the run outlasted its warm-up");
    let peak = rss_peak.max(rss_end.unwrap_or(0));
    let bound = if secs >= LONG_FORM_SECS {
        RSS_GROWTH_LONG
    } else {
        RSS_GROWTH_SHORT
    };
    eprintln!(
        "load {row}: server VmRSS {:.1} MiB after {:?} of warm-up, peak after it {:.1} MiB, at the end {:.1} MiB (file data {:.1} -> {:.1} MiB); bound +{:.0} MiB",
        mib(warm),
        warm_up,
        mib(peak),
        mib(rss_end.unwrap_or(0)),
        mib(data_warm),
        mib(data_end),
        mib(bound)
    );
    assert!(
        peak <= warm + bound,
        "load {row}: the server's VmRSS rose from {:.1} MiB after warm-up to {:.1} MiB, more than {:.0} MiB (seed {seed:#x})",
        mib(warm),
        mib(peak),
        mib(bound)
    );
}

/// One module per row, each with the `load` test.
macro_rules! load_rows {
    ($($row:ident: $setup:expr),+ $(,)?) => {
        $(
            mod $row {
                #[allow(unused_imports)]
                use super::common::{Backend, Setup};

                #[test]
                fn load() {
                    let setup: Setup = $setup;
                    // Native io_uring rows also need the kernel's
                    // enable_uring switch, which the test turns on when it may.
                    let ready = if setup.transport == "uring" {
                        super::common::require_native_uring()
                    } else {
                        super::common::require_fuse()
                    };
                    if ready {
                        super::run(&setup);
                    }
                }
            }
        )+
    };
}

load_rows!(
    memfs_blocking: Setup { backend: Backend::Memfs, transport: "blocking", options: &[] },
    memfs_uring: Setup { backend: Backend::Memfs, transport: "uring", options: &[] },
    memfs_uring_rw: Setup { backend: Backend::Memfs, transport: "uring-rw", options: &[] },
    passthrough_blocking: Setup { backend: Backend::Passthrough, transport: "blocking", options: &[] },
    passthrough_uring: Setup { backend: Backend::Passthrough, transport: "uring", options: &[] },
    passthrough_uring_rw: Setup { backend: Backend::Passthrough, transport: "uring-rw", options: &[] },
    passthrough_nokernel_blocking: Setup { backend: Backend::PassthroughNoKernel, transport: "blocking", options: &[] },
    passthrough_nokernel_uring: Setup { backend: Backend::PassthroughNoKernel, transport: "uring", options: &[] },
    passthrough_nokernel_uring_rw: Setup { backend: Backend::PassthroughNoKernel, transport: "uring-rw", options: &[] },
    overlay_blocking: Setup { backend: Backend::Overlay, transport: "blocking", options: &[] },
    overlay_uring: Setup { backend: Backend::Overlay, transport: "uring", options: &[] },
    overlay_uring_rw: Setup { backend: Backend::Overlay, transport: "uring-rw", options: &[] },
    router_blocking: Setup { backend: Backend::Router, transport: "blocking", options: &[] },
    router_uring: Setup { backend: Backend::Router, transport: "uring", options: &[] },
    router_uring_rw: Setup { backend: Backend::Router, transport: "uring-rw", options: &[] },
);
