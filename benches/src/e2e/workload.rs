//! The workloads: what is timed on every mount (and on the native source).

use crate::archive::{Archive, count_tree};
use crate::procfs;
use crate::source::{self, BIG, COPYUP, Layout, SCRATCH, SMALL};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One measured activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// From exec of the server to mounted.
    Mount,
    /// Read the big file sequentially, 1 MiB at a time, caches dropped first.
    SeqRead,
    /// Write a file as big as the big file sequentially, 1 MiB at a time, then fsync.
    SeqWrite,
    /// 4 KiB O_DIRECT random reads of the big file, one at a time.
    RandReadQd1,
    /// 4 KiB O_DIRECT random reads of the big file, 32 in flight.
    RandReadQd32,
    /// lstat of every small file, caches dropped first.
    Stat,
    /// Create (and close) every small file's name in a new directory, then unlink them all;
    /// caches dropped first.
    CreateUnlink,
    /// List the directory of small files, caches dropped first.
    Readdir,
    /// The application: `tar -x` of an archive (of /usr/include, or a generated tree) into a
    /// new directory; the tar process's wall time.
    TarX,
    /// Overlays only: the first write (open O_WRONLY|O_APPEND, write 1 byte, close) to
    /// every file of [`COPYUP`], each of which is copied up from the lower layer.
    CopyUp,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 10] = [
        Workload::Mount,
        Workload::SeqRead,
        Workload::SeqWrite,
        Workload::RandReadQd1,
        Workload::RandReadQd32,
        Workload::Stat,
        Workload::CreateUnlink,
        Workload::Readdir,
        Workload::TarX,
        Workload::CopyUp,
    ];

    /// Name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Mount => "mount",
            Workload::SeqRead => "seqread",
            Workload::SeqWrite => "seqwrite",
            Workload::RandReadQd1 => "randread-qd1",
            Workload::RandReadQd32 => "randread-qd32",
            Workload::Stat => "stat",
            Workload::CreateUnlink => "create-unlink",
            Workload::Readdir => "readdir",
            Workload::TarX => "tar-x",
            Workload::CopyUp => "copy-up",
        }
    }

    /// Inverse of [`name`](Workload::name).
    pub fn from_name(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Unit of the figure.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Mount => "ms",
            Workload::SeqRead | Workload::SeqWrite => "MiB/s",
            Workload::RandReadQd1 | Workload::RandReadQd32 => "IOPS",
            Workload::Stat | Workload::CreateUnlink => "files/s",
            Workload::Readdir => "entries/s",
            Workload::CopyUp => "ms/MiB",
            Workload::TarX => "s",
        }
    }

    /// Whether a larger figure is better (all but mount time, copy-up cost and `tar -x` time).
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Workload::Mount | Workload::CopyUp | Workload::TarX)
    }

    /// Whether it runs on the floor (reads of the data set; writes, creates, directories,
    /// symlinks and links with nothing behind them): all but copy-up, which needs a lower
    /// layer.
    pub fn on_floor(self) -> bool {
        !self.overlay_only()
    }

    /// Whether it runs on overlays only (it writes to the lower layer's files).
    pub fn overlay_only(self) -> bool {
        self == Workload::CopyUp
    }

    /// A short column title.
    pub fn title(self, layout: &Layout) -> String {
        let big = human_bytes(layout.big_bytes);
        let n = layout.files;
        match self {
            Workload::Mount => "exec→mounted".into(),
            Workload::SeqRead => format!("seq read {big}, cold"),
            Workload::SeqWrite => format!("seq write {big} + fsync"),
            Workload::RandReadQd1 => "4K rand read QD1".into(),
            Workload::RandReadQd32 => "4K rand read QD32 ×2 jobs".into(),
            Workload::Stat => format!("stat {n} files, cold"),
            Workload::CreateUnlink => format!("create+unlink {n}"),
            Workload::Readdir => format!("readdir {n}, cold"),
            Workload::TarX => format!(
                "tar -x ({})",
                crate::archive::Archive::describe(layout.tar_entries, layout.tar_bytes)
            ),
            Workload::CopyUp => format!(
                "copy-up {} in {} files",
                human_bytes(layout.copyup_total()),
                layout.copyup_files
            ),
        }
    }
}

/// Bytes as `1 GiB`, `16 MiB`, `4 KiB`.
pub fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
        format!("{} GiB", b >> 30)
    } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Wall-clock seconds of the timed part.
    pub secs: f64,
    /// The figure, in [`Workload::unit`].
    pub value: f64,
    /// CPU seconds the server spent meanwhile (all its threads).
    pub server_cpu: Option<f64>,
    /// CPU seconds the load spent meanwhile (this process and fio).
    pub load_cpu: Option<f64>,
    /// How it was generated (`built-in`, `fio psync`, ...).
    pub engine: String,
    /// Whether caches were dropped before it (false when not permitted).
    pub cold: bool,
}

/// Where and how to run.
pub struct Env<'a> {
    /// Root of the tree: the native source dir or a mountpoint.
    pub root: &'a Path,
    pub layout: &'a Layout,
    /// Length of each random-read run.
    pub runtime: Duration,
    /// Use fio for random reads.
    pub fio: bool,
    /// The server, for its CPU time.
    pub server_pid: Option<i32>,
    /// Repetition number, for unique scratch names.
    pub rep: usize,
    /// The root is an overlay whose lower layer is the source (so writing to its files
    /// leaves the source as it is).
    pub overlay: bool,
    /// The archive `tar-x` extracts.
    pub archive: Option<&'a Archive>,
}

/// What a workload itself reports before the CPU accounting is added.
struct Timed {
    meter: Metered,
    value: f64,
    engine: String,
    cold: bool,
}

/// Wall and CPU time of the timed part of a workload.
struct Meter {
    start: Instant,
    server_pid: Option<i32>,
    server0: Option<Duration>,
    load0: Duration,
}

struct Metered {
    secs: f64,
    server_cpu: Option<f64>,
    load_cpu: f64,
}

fn load_cpu() -> Duration {
    procfs::rusage_cpu(libc::RUSAGE_SELF) + procfs::rusage_cpu(libc::RUSAGE_CHILDREN)
}

impl Meter {
    /// Starts timing; call after any untimed preparation (dropping caches).
    fn start(env: &Env<'_>) -> Meter {
        let server0 = env.server_pid.and_then(procfs::process_cpu);
        let load0 = load_cpu();
        Meter {
            start: Instant::now(),
            server_pid: env.server_pid,
            server0,
            load0,
        }
    }

    fn stop(self) -> Metered {
        let secs = self.start.elapsed().as_secs_f64();
        let load = load_cpu().saturating_sub(self.load0).as_secs_f64();
        let server1 = self.server_pid.and_then(procfs::process_cpu);
        Metered {
            secs,
            server_cpu: match (self.server0, server1) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
                _ => None,
            },
            load_cpu: load,
        }
    }
}

/// Runs one workload (not [`Workload::Mount`], which the caller times).
pub fn run(w: Workload, env: &Env<'_>) -> Result<Sample, String> {
    let t = match w {
        Workload::Mount => return Err("mount is timed by the caller".into()),
        Workload::SeqRead => seq_read(env),
        Workload::SeqWrite => seq_write(env),
        Workload::RandReadQd1 => rand_read(env, 1, 1),
        Workload::RandReadQd32 => rand_read(env, 32, RAND_READ_JOBS),
        Workload::Stat => stat_all(env),
        Workload::CreateUnlink => create_unlink(env),
        Workload::Readdir => readdir(env),
        Workload::TarX => tar_x(env),
        Workload::CopyUp => copy_up(env),
    }?;
    Ok(Sample {
        secs: t.meter.secs,
        value: t.value,
        server_cpu: t.meter.server_cpu,
        load_cpu: Some(t.meter.load_cpu),
        engine: t.engine,
        cold: t.cold,
    })
}

fn ctx<E: std::fmt::Display>(what: &str, path: &Path) -> impl FnOnce(E) -> String {
    let p = path.display().to_string();
    let what = what.to_string();
    move |e| format!("{what} {p}: {e}")
}

const MIB: f64 = 1024.0 * 1024.0;

fn seq_read(env: &Env<'_>) -> Result<Timed, String> {
    let cold = procfs::drop_caches();
    let path = env.root.join(BIG);
    let mut buf = vec![0u8; 1 << 20];
    let meter = Meter::start(env);
    let mut f = File::open(&path).map_err(ctx("open", &path))?;
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(ctx("read", &path))?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    drop(f);
    let meter = meter.stop();
    let secs = meter.secs;
    if total != env.layout.big_bytes {
        return Err(format!(
            "read {total} bytes of {}, expected {}",
            path.display(),
            env.layout.big_bytes
        ));
    }
    Ok(Timed {
        meter,
        value: total as f64 / MIB / secs,
        engine: "built-in read(2) 1 MiB".into(),
        cold,
    })
}

fn scratch(env: &Env<'_>) -> Result<PathBuf, String> {
    let dir = env.root.join(SCRATCH);
    fs::create_dir_all(&dir).map_err(ctx("mkdir", &dir))?;
    Ok(dir)
}

fn seq_write(env: &Env<'_>) -> Result<Timed, String> {
    let path = scratch(env)?.join(format!("seqwrite-{}.bin", env.rep));
    let block = source::pattern_block();
    // The written file takes twice its size of new memory: the mount's page cache and the
    // server's copy (a host file or memfs's pages).
    procfs::warm_free_memory(2 * env.layout.big_bytes);
    let meter = Meter::start(env);
    let mut f = File::create(&path).map_err(ctx("create", &path))?;
    let mut left = env.layout.big_bytes;
    while left > 0 {
        let len = left.min(block.len() as u64) as usize;
        f.write_all(&block[..len]).map_err(ctx("write", &path))?;
        left -= len as u64;
    }
    f.sync_all().map_err(ctx("fsync", &path))?;
    drop(f);
    let meter = meter.stop();
    let secs = meter.secs;
    fs::remove_file(&path).map_err(ctx("unlink", &path))?;
    Ok(Timed {
        meter,
        value: env.layout.big_bytes as f64 / MIB / secs,
        engine: "built-in write(2) 1 MiB + fsync".into(),
        cold: false,
    })
}

/// Jobs (fio processes, each with its own queue of `depth` reads) of the
/// deep random-read workload: one per CPU of the machines this is built for,
/// so a transport with per-CPU queues gets load on each.
const RAND_READ_JOBS: usize = 2;

fn rand_read(env: &Env<'_>, depth: usize, jobs: usize) -> Result<Timed, String> {
    let cold = procfs::drop_caches();
    let path = env.root.join(BIG);
    let mut t = if env.fio && fio_available() {
        fio_rand_read(&path, env, depth, jobs)?
    } else {
        builtin_rand_read(&path, env, depth * jobs)?
    };
    t.cold = cold;
    Ok(t)
}

/// Whether `fio` runs.
pub fn fio_available() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn fio_rand_read(path: &Path, env: &Env<'_>, depth: usize, jobs: usize) -> Result<Timed, String> {
    let engine = if depth == 1 { "psync" } else { "io_uring" };
    let meter = Meter::start(env);
    let out = Command::new("fio")
        .arg("--name=randread")
        .arg(format!("--filename={}", path.display()))
        .args(["--rw=randread", "--bs=4k", "--direct=1", "--invalidate=1"])
        .arg(format!("--ioengine={engine}"))
        .arg(format!("--iodepth={depth}"))
        .arg(format!("--numjobs={jobs}"))
        .arg("--group_reporting=1")
        .arg(format!("--size={}", env.layout.big_bytes))
        .arg("--time_based=1")
        .arg(format!("--runtime={}ms", env.runtime.as_millis().max(1)))
        .args(["--norandommap=1", "--randrepeat=0", "--output-format=json"])
        .output()
        .map_err(|e| format!("cannot run fio: {e}"))?;
    let mut meter = meter.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    let json_start = text.find('{');
    if !out.status.success() || json_start.is_none() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(format!("fio ({engine}) failed: {line}"));
    }
    let v: serde_json::Value = serde_json::from_str(&text[json_start.unwrap_or(0)..])
        .map_err(|e| format!("fio output is not JSON: {e}"))?;
    let job = &v["jobs"][0];
    let error = job["error"].as_i64().unwrap_or(0);
    if error != 0 {
        return Err(format!("fio ({engine}) reported error {error}"));
    }
    let iops = job["read"]["iops"]
        .as_f64()
        .ok_or("fio output has no read.iops")?;
    // fio's own runtime excludes its start-up; CPU shares are taken over the whole process.
    if let Some(ms) = job["read"]["runtime"].as_f64().filter(|ms| *ms > 0.0) {
        meter.secs = ms / 1000.0;
    }
    Ok(Timed {
        meter,
        value: iops,
        engine: if jobs > 1 {
            format!("fio {engine} iodepth={depth} numjobs={jobs} O_DIRECT")
        } else {
            format!("fio {engine} iodepth={depth} O_DIRECT")
        },
        cold: false,
    })
}

fn builtin_rand_read(path: &Path, env: &Env<'_>, depth: usize) -> Result<Timed, String> {
    let blocks = (env.layout.big_bytes / 4096).max(1);
    let runtime = env.runtime;
    let meter = Meter::start(env);
    let results: Vec<Result<u64, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..depth)
            .map(|i| {
                s.spawn(move || -> Result<u64, String> {
                    let f = OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_DIRECT)
                        .open(path)
                        .map_err(ctx("open O_DIRECT", path))?;
                    let mut raw = vec![0u8; 8192];
                    let off = raw.as_ptr().align_offset(4096);
                    let buf = &mut raw[off..off + 4096];
                    let mut x = 0x2545_F491_4F6C_DD1D_u64 ^ ((i as u64 + 1) << 32);
                    let mut n = 0u64;
                    let deadline = Instant::now() + runtime;
                    while Instant::now() < deadline {
                        for _ in 0..64 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let pos = (x % blocks) * 4096;
                            f.read_exact_at(buf, pos).map_err(ctx("pread", path))?;
                            n += 1;
                        }
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("reader thread panicked".into()))
            })
            .collect()
    });
    let meter = meter.stop();
    let secs = meter.secs;
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok(Timed {
        meter,
        value: total as f64 / secs,
        engine: if depth == 1 {
            "built-in pread(2) O_DIRECT".into()
        } else {
            format!("built-in pread(2) O_DIRECT, {depth} threads")
        },
        cold: false,
    })
}

fn stat_all(env: &Env<'_>) -> Result<Timed, String> {
    let cold = procfs::drop_caches();
    let dir = env.root.join(SMALL);
    let names: Vec<std::ffi::CString> = (0..env.layout.files)
        .map(|i| {
            let p = dir.join(source::small_name(i));
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    // lstat(2) as C programs, ls and find call it (newfstatat: basic stats). Not
    // std::fs::symlink_metadata: that is statx(STATX_ALL), whose STATX_BTIME makes the kernel
    // send FUSE_STATX after every LOOKUP to a server that implements STATX (see BENCHMARKS.md).
    let meter = Meter::start(env);
    for p in &names {
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `p` is NUL-terminated and `st` is a valid stat to write to.
        if unsafe { libc::lstat(p.as_ptr(), &mut st) } != 0 {
            return Err(format!(
                "lstat {}: {}",
                p.to_string_lossy(),
                std::io::Error::last_os_error()
            ));
        }
        if st.st_size as u64 != env.layout.small_bytes as u64 {
            return Err(format!(
                "{}: size {}, expected {}",
                p.to_string_lossy(),
                st.st_size,
                env.layout.small_bytes
            ));
        }
    }
    let meter = meter.stop();
    let secs = meter.secs;
    Ok(Timed {
        meter,
        value: names.len() as f64 / secs,
        engine: "built-in lstat(2) (newfstatat)".into(),
        cold,
    })
}

fn create_unlink(env: &Env<'_>) -> Result<Timed, String> {
    // Caches dropped first, so the inodes earlier workloads left in the kernel's cache (the
    // stat workload's 10,000) do not stay referenced: a server that holds a descriptor per
    // inode the kernel knows (libfuse's passthrough_hp) would otherwise need 20,000 here and
    // fail with EMFILE under a 20,000 RLIMIT_NOFILE. Every configuration starts alike.
    let cold = procfs::drop_caches();
    let dir = scratch(env)?.join(format!("cu-{}", env.rep));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).map_err(ctx("mkdir", &dir))?;
    let names: Vec<PathBuf> = (0..env.layout.files)
        .map(|i| dir.join(source::small_name(i)))
        .collect();
    let meter = Meter::start(env);
    for p in &names {
        File::create(p).map_err(ctx("create", p))?;
    }
    for p in &names {
        fs::remove_file(p).map_err(ctx("unlink", p))?;
    }
    let meter = meter.stop();
    let secs = meter.secs;
    fs::remove_dir(&dir).map_err(ctx("rmdir", &dir))?;
    Ok(Timed {
        meter,
        value: names.len() as f64 / secs,
        engine: "built-in open(O_CREAT)+close, then unlink(2)".into(),
        cold,
    })
}

fn readdir(env: &Env<'_>) -> Result<Timed, String> {
    let cold = procfs::drop_caches();
    let dir = env.root.join(SMALL);
    let meter = Meter::start(env);
    let mut n = 0usize;
    for e in fs::read_dir(&dir).map_err(ctx("opendir", &dir))? {
        e.map_err(ctx("readdir", &dir))?;
        n += 1;
    }
    let meter = meter.stop();
    let secs = meter.secs;
    if n != env.layout.files {
        return Err(format!(
            "readdir {} listed {n} entries, expected {}",
            dir.display(),
            env.layout.files
        ));
    }
    Ok(Timed {
        meter,
        value: n as f64 / secs,
        engine: "built-in getdents64(2) (std read_dir)".into(),
        cold,
    })
}

/// `tar -x -f ARCHIVE -C DIR` into a new directory: the tar process's wall time, from spawn
/// to exit. No `sync` after it: on the tmpfs source it is a no-op natively, and a FUSE mount
/// has every file's data at the server once tar exits (the kernel flushes on close), so native
/// and the mounts stop the clock at the same point. The extracted tree is counted (it must
/// have the archive's entries) and removed outside the timed part.
fn tar_x(env: &Env<'_>) -> Result<Timed, String> {
    let archive = env.archive.ok_or("no archive was prepared")?;
    let dir = scratch(env)?.join(format!("tar-{}", env.rep));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).map_err(ctx("mkdir", &dir))?;
    let meter = Meter::start(env);
    let out = Command::new("tar")
        .arg("-x")
        .arg("-f")
        .arg(&archive.path)
        .arg("-C")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let meter = meter.stop();
    let result = if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "tar -x failed ({}): {}",
            out.status,
            err.lines().next().unwrap_or("").trim()
        ))
    } else {
        // The extracted tree is DIR/NAME; entries as counted in the archived tree.
        let mut entries = 0;
        for e in fs::read_dir(&dir).map_err(ctx("opendir", &dir))? {
            let p = e.map_err(ctx("readdir", &dir))?.path();
            entries += count_tree(&p).map_err(ctx("walk", &p))?.0;
        }
        if entries == archive.entries {
            Ok(())
        } else {
            Err(format!(
                "tar -x into {} made {entries} entries, the archive has {}",
                dir.display(),
                archive.entries
            ))
        }
    };
    fs::remove_dir_all(&dir).map_err(ctx("remove", &dir))?;
    result?;
    let secs = meter.secs;
    Ok(Timed {
        meter,
        value: secs,
        engine: "tar -x -f ARCHIVE -C DIR (no sync)".into(),
        cold: false,
    })
}

fn copy_up(env: &Env<'_>) -> Result<Timed, String> {
    if !env.overlay {
        return Err("copy-up runs on overlays only (it would change the source)".into());
    }
    let dir = env.root.join(COPYUP);
    let names: Vec<PathBuf> = (0..env.layout.copyup_files)
        .map(|i| dir.join(source::copyup_name(i)))
        .collect();
    for p in &names {
        let len = fs::metadata(p).map_err(ctx("stat", p))?.len();
        if len != env.layout.copyup_bytes {
            return Err(format!(
                "{}: size {len} before the first write, expected {} (already copied up?)",
                p.display(),
                env.layout.copyup_bytes
            ));
        }
    }
    let meter = Meter::start(env);
    for p in &names {
        let mut f = OpenOptions::new()
            .append(true)
            .open(p)
            .map_err(ctx("open O_WRONLY, O_APPEND", p))?;
        f.write_all(b"+").map_err(ctx("write", p))?;
    }
    let meter = meter.stop();
    let secs = meter.secs;
    for p in &names {
        let len = fs::metadata(p).map_err(ctx("stat", p))?.len();
        if len != env.layout.copyup_bytes + 1 {
            return Err(format!(
                "{}: size {len} after appending 1 byte, expected {}",
                p.display(),
                env.layout.copyup_bytes + 1
            ));
        }
    }
    let mib = env.layout.copyup_total() as f64 / MIB;
    Ok(Timed {
        meter,
        value: secs * 1000.0 / mib,
        engine: "built-in open(O_WRONLY, O_APPEND) + write 1 byte + close, per file".into(),
        cold: false,
    })
}
