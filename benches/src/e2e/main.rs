//! `fuselage-bench`: end-to-end benchmarks of fuselage beside the native filesystem and other
//! FUSE servers. See `fuselage-bench --help` and BENCHMARKS.md at the repository root.
//!
//! For every repetition it mounts each configuration in turn (fuselage's defaults, passthrough,
//! memfs, overlay and router on every transport, kernel overlayfs, bindfs, peers given with
//! `--peer`), times the workloads on the mount
//! and on the source directory itself ("native"), and unmounts. A configuration the binary
//! refuses is recorded as "unavailable" with the server's own one-line reason. Results go to
//! stdout as markdown, to a JSON file and to an SVG chart of the ratios to native.

mod archive;
mod cleanup;
mod cli;
mod cpuset;
mod floor;
mod procfs;
mod report;
mod server;
mod source;
mod workload;

use cli::{Options, Parsed, SourceFs};
use cpuset::{CpuSet, PinGuard};
use report::{ConfigResult, Report};
use server::{Launch, Serve, Server};
use source::{Layout, Source};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use workload::{Sample, Workload};

/// The transports of `fuselage mount --transport`, in report order.
const TRANSPORTS: [&str; 3] = ["blocking", "uring-rw", "uring"];

/// What a configuration serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memfs,
    /// `--source SRC`.
    Passthrough,
    /// `--lower SRC --upper DIR`, DIR a fresh directory on tmpfs.
    Overlay,
    /// `--source SRC --route ROUTE=SRC`; the workloads run under ROUTE.
    Router,
}

impl Backend {
    /// Name in the tables and JSON.
    fn name(self) -> &'static str {
        match self {
            Backend::Memfs => "memfs",
            Backend::Passthrough => "passthrough",
            Backend::Overlay => "overlay",
            Backend::Router => "router",
        }
    }
}

/// Where the router configurations place the source (`--route /data=SRC`).
const ROUTE: &str = "/data";
/// Name of the kernel overlayfs row.
const KERNEL_OVERLAY: &str = "kernel-overlayfs";

/// What is measured.
#[derive(Debug, Clone)]
enum Target {
    /// The source directory itself.
    Native,
    /// `fuselage mount`; `None` leaves the option out (the default: `auto`).
    Fuselage {
        backend: Backend,
        transport: Option<&'static str>,
        passthrough: Option<&'static str>,
    },
    Peer {
        cmd: String,
        /// Whether it uses kernel passthrough (`passthrough=on|off` in `--peer`; bindfs:
        /// off), so that each fuselage default is compared with peers of its kind.
        kernel_passthrough: Option<bool>,
    },
    /// `mount -t overlay` with the source as its lower layer, upper and work on tmpfs.
    KernelOverlay,
    /// The trivial filesystem of [`floor`] served by this binary through fuselage's own
    /// `--transport`: the best a FUSE round trip can do here.
    Floor { transport: &'static str },
}

impl Target {
    /// An in-memory filesystem (fuselage memfs, or a peer whose command has no `{src}`):
    /// the harness writes the data set into it after mounting.
    fn serves_own_data(&self) -> bool {
        match self {
            Target::Native => false,
            Target::Fuselage { backend, .. } => *backend == Backend::Memfs,
            Target::Peer { cmd, .. } => !cmd.contains("{src}"),
            Target::KernelOverlay | Target::Floor { .. } => false,
        }
    }

    /// Whether workload `w` runs on it: every one, but on the floor only those
    /// [`Workload::on_floor`] names.
    fn runs(&self, w: Workload) -> bool {
        !matches!(self, Target::Floor { .. }) || w.on_floor()
    }

    /// Served by `fuselage mount` machinery (ready at its startup line).
    fn is_fuselage(&self) -> bool {
        matches!(self, Target::Fuselage { .. } | Target::Floor { .. })
    }

    /// An overlay whose lower layer is the source: writes to the data set's files copy
    /// them up and leave the source as it is.
    fn is_overlay(&self) -> bool {
        match self {
            Target::Fuselage { backend, .. } => *backend == Backend::Overlay,
            Target::KernelOverlay => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Plan {
    name: String,
    target: Target,
    pinned: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(floor::FLOOR_ARG) {
        return floor::serve(args.into_iter().skip(1));
    }
    let opts = match cli::parse(args.clone()) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fuselage-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &opts.from_json {
        return match replot(path, &opts.svg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fuselage-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = cleanup::install_signal_handlers() {
        eprintln!("fuselage-bench: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let result = run(&opts, &args);
    cleanup::undo_all();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fuselage-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--from-json`: the tables and chart of an earlier run.
fn replot(json: &Path, svg: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(json)
        .map_err(|e| format!("cannot read {}: {e}", json.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let report = Report::from_json(&v)?;
    print!("{}", report.markdown());
    std::fs::write(svg, report.svg())
        .map_err(|e| format!("cannot write {}: {e}", svg.display()))?;
    eprintln!("fuselage-bench: wrote {}", svg.display());
    Ok(())
}

/// The default configurations: what a user gets without tuning flags (no `--transport`, so
/// `auto` picks; no `--passthrough` but in the second row).
const DEFAULTS: [(&str, Backend, Option<&str>); 3] = [
    ("default/passthrough", Backend::Passthrough, None),
    (
        "default/passthrough/pt-off",
        Backend::Passthrough,
        Some("off"),
    ),
    ("default/memfs", Backend::Memfs, None),
];

fn plans(opts: &Options) -> Vec<Plan> {
    let mut base = vec![Plan {
        name: "native".into(),
        target: Target::Native,
        pinned: false,
    }];
    let transports: &[&'static str] = if opts.quick {
        &TRANSPORTS[..1]
    } else {
        &TRANSPORTS
    };
    for (name, backend, passthrough) in DEFAULTS {
        base.push(Plan {
            name: name.into(),
            target: Target::Fuselage {
                backend,
                transport: None,
                passthrough,
            },
            pinned: false,
        });
    }
    for t in transports {
        base.push(Plan {
            name: format!("memfs/{t}"),
            target: Target::Fuselage {
                backend: Backend::Memfs,
                transport: Some(t),
                passthrough: None,
            },
            pinned: false,
        });
    }
    for backend in [Backend::Passthrough, Backend::Overlay, Backend::Router] {
        for t in transports {
            let modes: &[&'static str] = if opts.quick { &["off"] } else { &["off", "on"] };
            for pt in modes {
                base.push(Plan {
                    name: format!("{}/{t}/pt-{pt}", backend.name()),
                    target: Target::Fuselage {
                        backend,
                        transport: Some(t),
                        passthrough: Some(pt),
                    },
                    pinned: false,
                });
            }
        }
    }
    if opts.floor {
        for t in transports {
            base.push(Plan {
                name: format!("floor/{t}"),
                target: Target::Floor { transport: t },
                pinned: false,
            });
        }
    }
    if opts.kernel_overlay {
        base.push(Plan {
            name: KERNEL_OVERLAY.into(),
            target: Target::KernelOverlay,
            pinned: false,
        });
    }
    if opts.bindfs {
        base.push(Plan {
            name: "bindfs".into(),
            target: Target::Peer {
                cmd: "bindfs -f {src} {mnt}".into(),
                kernel_passthrough: Some(false),
            },
            pinned: false,
        });
    }
    for p in &opts.peers {
        base.push(Plan {
            name: p.name.clone(),
            target: Target::Peer {
                cmd: p.cmd.clone(),
                kernel_passthrough: p.kernel_passthrough,
            },
            pinned: false,
        });
    }
    let chosen = |name: &str| opts.only.is_empty() || opts.only.iter().any(|w| name.contains(w));
    // An overlay or router row is reported against the passthrough row of the same transport
    // and passthrough mode: keep that one too.
    let references: Vec<String> = base
        .iter()
        .filter(|p| chosen(&p.name))
        .filter_map(|p| reference_name(&p.name))
        .collect();
    base.retain(|p| {
        matches!(p.target, Target::Native) || chosen(&p.name) || references.contains(&p.name)
    });
    if opts.load_cpus.is_some() || opts.server_cpus.is_some() {
        let pinned: Vec<Plan> = base
            .iter()
            .map(|p| Plan {
                name: format!("{} [pinned]", p.name),
                target: p.target.clone(),
                pinned: true,
            })
            .collect();
        base.extend(pinned);
    }
    base
}

/// The passthrough row an overlay or router row is compared with.
fn reference_name(name: &str) -> Option<String> {
    ["overlay/", "router/"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .map(|rest| format!("passthrough/{rest}"))
}

fn find_fuselage(opts: &Options) -> Option<PathBuf> {
    if let Some(p) = &opts.fuselage {
        return Some(p.clone());
    }
    let beside = std::env::current_exe().ok()?.parent()?.join("fuselage");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("fuselage"))
            .find(|p| p.is_file())
    })
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}

fn command_line(args: &[String]) -> String {
    let mut s = String::from("fuselage-bench");
    for a in args {
        s.push(' ');
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c))
        {
            s.push_str(a);
        } else {
            s.push_str(&format!("'{}'", a.replace('\'', "'\\''")));
        }
    }
    s
}

fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

fn machine(opts: &Options, fuselage: Option<&Path>, fio: bool) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    m.insert(
        "kernel".into(),
        read("/proc/sys/kernel/osrelease").trim().to_string(),
    );
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    m.insert("cpus".into(), format!("{cpus} × {model}"));
    let mem = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    m.insert("memory".into(), mem);
    if let Some(d) = first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]) {
        m.insert("date".into(), d);
    }
    m.insert(
        "fio".into(),
        if fio {
            first_line("fio", &["--version"]).unwrap_or_default()
        } else if opts.use_fio {
            "not installed: built-in loops".into()
        } else {
            "not used (--no-fio): built-in loops".into()
        },
    );
    if let Some(f) = fuselage {
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        m.insert(
            "fuselage".into(),
            format!("{} ({} bytes)", f.display(), size),
        );
    }
    if opts.bindfs
        && let Some(v) = first_line("bindfs", &["--version"])
    {
        m.insert("bindfs".into(), v);
    }
    m.insert(
        "fuse enable_uring".into(),
        read("/sys/module/fuse/parameters/enable_uring")
            .trim()
            .to_string(),
    );
    if opts.load_cpus.is_some() || opts.server_cpus.is_some() {
        let show = |c: &Option<CpuSet>| c.as_ref().map(|c| c.to_string()).unwrap_or("any".into());
        m.insert(
            "pinning".into(),
            format!(
                "[pinned] rows: load on CPUs {}, server on CPUs {}",
                show(&opts.load_cpus),
                show(&opts.server_cpus)
            ),
        );
    }
    m
}

struct Progress {
    total: usize,
    done: usize,
    tty: bool,
}

impl Progress {
    fn step(&mut self, rep: usize, reps: usize, config: &str, what: &str) {
        self.done += 1;
        let line = format!(
            "[{:>3}/{}] rep {}/{} {config}: {what}",
            self.done.min(self.total),
            self.total,
            rep + 1,
            reps
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Kills a stuck server if a workload outlives `limit`, so the harness never hangs on a
/// deadlocked mount (the stuck request then fails with ENOTCONN).
struct Deadline {
    tx: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<bool>>,
}

impl Deadline {
    fn new(pid: Option<i32>, limit: Duration) -> Deadline {
        let Some(pid) = pid else {
            return Deadline {
                tx: None,
                thread: None,
            };
        };
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return true;
            }
            false
        });
        Deadline {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// True if it had to kill the server.
    fn finish(mut self) -> bool {
        drop(self.tx.take());
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(false))
            .unwrap_or(false)
    }
}

struct Ctx<'a> {
    opts: &'a Options,
    layout: Layout,
    source: &'a Source,
    archive: Option<&'a archive::Archive>,
    /// A copy of this binary, for the floor server.
    bench: Option<&'a Path>,
    /// The floor's `--source`.
    floor_spec: String,
    fuselage: Option<&'a Path>,
    fio: bool,
    mount_base: &'a Path,
    /// Where the overlays' fresh upper layers are made (on tmpfs).
    upper_base: &'a Path,
}

fn run(opts: &Options, args: &[String]) -> Result<ExitCode, String> {
    let mut layout = Layout {
        big_bytes: opts.big_bytes,
        files: opts.files,
        small_bytes: opts.small_bytes,
        copyup_files: cli::COPYUP_FILES,
        copyup_bytes: opts.copyup_total / cli::COPYUP_FILES as u64,
        tar_entries: 0,
        tar_bytes: 0,
    };
    let fuselage = find_fuselage(opts);
    let fio = opts.use_fio && workload::fio_available();
    let cold = procfs::is_root();
    let plans = plans(opts);
    let workloads = &opts.workloads;

    eprintln!(
        "fuselage-bench: preparing the source ({}, {} + {} small files)",
        match opts.source_fs {
            SourceFs::Tmpfs => opts.source_dir.display().to_string(),
            SourceFs::Ext4 => format!("ext4 image {}", opts.image.display()),
        },
        workload::human_bytes(layout.big_bytes),
        layout.files
    );
    let source = Source::prepare(opts.source_fs, &opts.source_dir, &opts.image, &layout)?;
    let archive = if workloads.contains(&Workload::TarX) {
        eprintln!("fuselage-bench: preparing the archive for tar-x");
        let a = archive::Archive::prepare(&opts.tar_from)?;
        layout.tar_entries = a.entries;
        layout.tar_bytes = a.bytes;
        Some(a)
    } else {
        None
    };
    let mount_base = PathBuf::from(format!("/tmp/fuselage-bench.{}", std::process::id()));
    std::fs::create_dir_all(&mount_base)
        .map_err(|e| format!("cannot create {}: {e}", mount_base.display()))?;
    let _mount_base_guard =
        cleanup::Registration::new(cleanup::Undo::RemoveEmptyDir(mount_base.clone()));
    // Overlays' upper (and kernel overlayfs' work) directories: fresh ones on tmpfs for
    // every mount, all under this one.
    let upper_base = PathBuf::from(format!(
        "/dev/shm/fuselage-bench-upper.{}",
        std::process::id()
    ));
    let _upper_base_guard = plans
        .iter()
        .any(|p| p.target.is_overlay())
        .then(|| cleanup::Registration::new(cleanup::Undo::RemoveTree(upper_base.clone())));
    // Serve from a private copy, so a rebuild of the binary during the run changes nothing.
    let mut _copy_guard = None;
    let under_test = match &fuselage {
        Some(f) => {
            let copy = mount_base.join("fuselage-under-test");
            std::fs::copy(f, &copy).map_err(|e| format!("cannot copy {}: {e}", f.display()))?;
            _copy_guard = Some(cleanup::Registration::new(cleanup::Undo::RemoveFile(
                copy.clone(),
            )));
            Some(copy)
        }
        None => None,
    };
    // The floor server is this binary: a copy too.
    let mut _bench_copy_guard = None;
    let under_test_bench = if plans
        .iter()
        .any(|p| matches!(p.target, Target::Floor { .. }))
    {
        let copy = mount_base.join("fuselage-bench-floor");
        std::env::current_exe()
            .and_then(|me| std::fs::copy(me, &copy))
            .ok()
            .map(|_| {
                _bench_copy_guard = Some(cleanup::Registration::new(cleanup::Undo::RemoveFile(
                    copy.clone(),
                )));
                copy
            })
    } else {
        None
    };
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // Taken before the run: other processes may flip e.g. enable_uring meanwhile.
    let mut machine = machine(opts, fuselage.as_deref(), fio);
    if let Some(d) = &opts.strace_dir {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }

    let mut results: Vec<ConfigResult> = plans
        .iter()
        .map(|p| {
            let (kind, backend, transport, passthrough) = match &p.target {
                Target::Native => ("native", None, None, None),
                Target::Fuselage {
                    backend,
                    transport,
                    passthrough,
                } => (
                    "fuselage",
                    Some(backend.name().to_string()),
                    Some(transport.unwrap_or(report::AUTO).to_string()),
                    passthrough.map(str::to_string),
                ),
                Target::Peer {
                    kernel_passthrough, ..
                } => (
                    "peer",
                    None,
                    None,
                    kernel_passthrough.map(|on| if on { "on" } else { "off" }.to_string()),
                ),
                Target::KernelOverlay => ("kernel", Some("overlay".to_string()), None, None),
                Target::Floor { transport } => (
                    "floor",
                    Some("floor".to_string()),
                    Some(transport.to_string()),
                    None,
                ),
            };
            ConfigResult {
                name: p.name.clone(),
                kind,
                backend,
                transport,
                passthrough,
                pinned: p.pinned,
                ..Default::default()
            }
        })
        .collect();
    // Peers that are not installed are unavailable from the start.
    for (p, r) in plans.iter().zip(results.iter_mut()) {
        if let Target::Peer { cmd, .. } = &p.target {
            let prog = server::split_env(cmd)
                .1
                .split_whitespace()
                .next()
                .unwrap_or("");
            let exists = if prog.contains('/') {
                Path::new(prog).is_file()
            } else {
                on_path(prog)
            };
            if !exists {
                r.unavailable = Some(format!("{prog}: not installed"));
            }
        }
        if matches!(p.target, Target::KernelOverlay) && !cold {
            r.unavailable = Some("mount -t overlay needs root".into());
        }
        if matches!(p.target, Target::Floor { .. }) && under_test_bench.is_none() {
            r.unavailable = Some("cannot copy this binary to serve the floor".into());
        }
        if matches!(p.target, Target::Fuselage { .. }) && fuselage.is_none() {
            r.unavailable = Some(
                "fuselage binary not found: build it (cargo build --release -p fuselage) or pass --fuselage PATH"
                    .into(),
            );
        }
    }

    let ctx = Ctx {
        opts,
        layout,
        source: &source,
        archive: archive.as_ref(),
        bench: under_test_bench.as_deref(),
        floor_spec: floor::source_spec(layout.big_bytes, layout.files, layout.small_bytes),
        fuselage: under_test.as_deref(),
        fio,
        mount_base: &mount_base,
        upper_base: &upper_base,
    };
    let mut progress = Progress {
        total: opts.reps * plans.len() * workloads.len().max(1),
        done: 0,
        tty: std::io::stderr().is_terminal(),
    };
    for rep in 0..opts.reps {
        for (plan, res) in plans.iter().zip(results.iter_mut()) {
            if res.unavailable.is_some() {
                progress.done += workloads.len();
                continue;
            }
            run_one(&ctx, plan, res, rep, &mut progress)?;
        }
    }
    progress.finish();

    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let three = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    machine.insert(
        "load average (1/5/15 min)".into(),
        format!(
            "{} at start, {} at end",
            three(&load_before),
            three(&load_after)
        ),
    );
    let report = Report {
        command: command_line(args),
        machine,
        source: source.describe(),
        tar: archive.as_ref().map(|a| {
            format!(
                "{}, archived into {} ({})",
                a.origin,
                a.path.display(),
                archive::Archive::describe(a.entries, a.bytes)
            )
        }),
        layout,
        reps: opts.reps,
        workloads: workloads.clone(),
        cold,
        results,
    };
    let quick_source =
        (opts.quick && opts.source_fs == SourceFs::Tmpfs).then(|| source.dir.clone());
    drop(source);
    if let Some(dir) = quick_source {
        // The tiny --quick data set is not worth keeping in RAM (the full one is reused).
        let _ = std::fs::remove_dir_all(dir);
    }
    print!("{}", report.markdown());
    let json = serde_json::to_string_pretty(&report.json()).map_err(|e| e.to_string())?;
    std::fs::write(&opts.json, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", opts.json.display()))?;
    std::fs::write(&opts.svg, report.svg())
        .map_err(|e| format!("cannot write {}: {e}", opts.svg.display()))?;
    eprintln!(
        "fuselage-bench: wrote {} and {}",
        opts.json.display(),
        opts.svg.display()
    );

    if opts.quick {
        return Ok(quick_verdict(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--quick` fails when the harness itself did not work: a workload failed somewhere, or
/// (with FUSELAGE_REQUIRE_FUSE=1) fuselage's memfs could not be mounted.
fn quick_verdict(report: &Report) -> ExitCode {
    let mut ok = true;
    for r in &report.results {
        for (w, e) in &r.errors {
            eprintln!(
                "fuselage-bench --quick: {} / {} failed: {e}",
                r.name,
                w.name()
            );
            ok = false;
        }
    }
    let require = std::env::var("FUSELAGE_REQUIRE_FUSE").is_ok_and(|v| v == "1");
    if let Some(r) = report.results.iter().find(|r| r.name == "memfs/blocking")
        && let Some(why) = &r.unavailable
    {
        if require {
            eprintln!(
                "fuselage-bench --quick: memfs/blocking unavailable with FUSELAGE_REQUIRE_FUSE=1: {why}"
            );
            ok = false;
        } else {
            eprintln!("fuselage-bench --quick: note: memfs/blocking unavailable: {why}");
        }
    }
    if ok {
        eprintln!("fuselage-bench --quick: harness OK");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_one(
    ctx: &Ctx<'_>,
    plan: &Plan,
    res: &mut ConfigResult,
    rep: usize,
    progress: &mut Progress,
) -> Result<(), String> {
    let opts = ctx.opts;
    let workloads = &opts.workloads;
    let server_cpus = if plan.pinned {
        opts.server_cpus.as_ref()
    } else {
        None
    };
    let mountpoint = ctx.mount_base.join(sanitize(&plan.name));
    // An overlay gets a fresh upper layer (and kernel overlayfs a work directory) on tmpfs,
    // removed after the unmount (the guard outlives the server and the kernel mount).
    let layers = ctx
        .upper_base
        .join(format!("{}.{rep}", sanitize(&plan.name)));
    let upper = layers.join("upper");
    let _layers_guard = if plan.target.is_overlay() {
        let _ = std::fs::remove_dir_all(&layers);
        std::fs::create_dir_all(&upper)
            .and_then(|()| std::fs::create_dir_all(layers.join("work")))
            .map_err(|e| format!("cannot create {}: {e}", layers.display()))?;
        Some(cleanup::Registration::new(cleanup::Undo::RemoveTree(
            layers.clone(),
        )))
    } else {
        None
    };
    let src = ctx.source.dir.as_path();
    let launch = match &plan.target {
        Target::Native | Target::KernelOverlay => None,
        Target::Fuselage {
            backend,
            transport,
            passthrough,
        } => Some(Launch::Fuselage {
            bin: ctx.fuselage.ok_or("no fuselage binary")?,
            serve: match backend {
                Backend::Memfs => Serve::Memory,
                Backend::Passthrough => Serve::Source(src),
                Backend::Overlay => Serve::Overlay {
                    lower: src,
                    upper: &upper,
                },
                Backend::Router => Serve::Routed {
                    source: src,
                    subpath: ROUTE,
                    dir: src,
                },
            },
            transport: *transport,
            passthrough: *passthrough,
            threads: opts.threads,
        }),
        Target::Floor { transport } => Some(Launch::Fuselage {
            bin: ctx.bench.ok_or("no copy of fuselage-bench")?,
            serve: Serve::Floor(&ctx.floor_spec),
            transport: Some(transport),
            passthrough: None,
            threads: opts.threads,
        }),
        Target::Peer { cmd, .. } => Some(Launch::Peer {
            cmd,
            source: &ctx.source.dir,
        }),
    };
    let mut server = None;
    let mut kernel_mount = None;
    if let Some(launch) = &launch {
        progress.step(rep, opts.reps, &plan.name, "mount");
        std::fs::create_dir_all(&mountpoint)
            .map_err(|e| format!("cannot create {}: {e}", mountpoint.display()))?;
        match Server::start(launch, &mountpoint, server_cpus) {
            Ok(s) => server = Some(s),
            Err(reason) => {
                let _ = std::fs::remove_dir(&mountpoint);
                progress.done += workloads.len().saturating_sub(1);
                res.unavailable = Some(reason);
                return Ok(());
            }
        }
    } else if matches!(plan.target, Target::KernelOverlay) {
        progress.step(rep, opts.reps, &plan.name, "mount");
        std::fs::create_dir_all(&mountpoint)
            .map_err(|e| format!("cannot create {}: {e}", mountpoint.display()))?;
        match mount_kernel_overlay(src, &layers, &mountpoint) {
            Ok((guard, took)) => {
                kernel_mount = Some(guard);
                if workloads.contains(&Workload::Mount) {
                    res.samples
                        .entry(Workload::Mount)
                        .or_default()
                        .push(Sample {
                            secs: took.as_secs_f64(),
                            value: took.as_secs_f64() * 1000.0,
                            server_cpu: None,
                            load_cpu: None,
                            engine: "mount(8) -t overlay, exec to exit".into(),
                            cold: false,
                        });
                }
            }
            Err(reason) => {
                let _ = std::fs::remove_dir(&mountpoint);
                progress.done += workloads.len().saturating_sub(1);
                res.unavailable = Some(reason);
                return Ok(());
            }
        }
    } else {
        progress.done += usize::from(workloads.contains(&Workload::Mount));
    }
    let pid = server.as_ref().map(|s| s.pid);
    if let Some(s) = &server {
        res.startup_line = s.startup_line.clone();
        if workloads.contains(&Workload::Mount) {
            res.samples
                .entry(Workload::Mount)
                .or_default()
                .push(Sample {
                    secs: s.mount_time.as_secs_f64(),
                    value: s.mount_time.as_secs_f64() * 1000.0,
                    server_cpu: None,
                    load_cpu: None,
                    engine: if plan.target.is_fuselage() {
                        "until the startup line".into()
                    } else {
                        "until listed in /proc/self/mountinfo".into()
                    },
                    cold: false,
                });
        }
        std::thread::sleep(Duration::from_millis(200));
        if let Some(rss) = s.rss_kib() {
            res.idle_rss_kib.push(rss);
        }
        res.idle_children_rss_kib.push(s.children_rss_kib());
    }
    let root = match (&server, &plan.target) {
        (
            Some(s),
            Target::Fuselage {
                backend: Backend::Router,
                ..
            },
        ) => s.mountpoint.join(ROUTE.trim_start_matches('/')),
        (Some(s), _) => s.mountpoint.clone(),
        (None, Target::KernelOverlay) => mountpoint.clone(),
        (None, _) => ctx.source.dir.clone(),
    };

    let overlay = plan.target.is_overlay();
    let measured: Vec<Workload> = workloads
        .iter()
        .copied()
        .filter(|w| *w != Workload::Mount && (overlay || !w.overlay_only()))
        .filter(|w| plan.target.runs(*w))
        .collect();
    // Overlay-only workloads are not run here.
    progress.done += workloads
        .iter()
        .filter(|w| (w.overlay_only() && !overlay) || !plan.target.runs(**w))
        .count();
    let mut ready = true;
    if plan.target.serves_own_data()
        && !measured.is_empty()
        && let Err(e) = source::populate(&root, &ctx.layout)
    {
        for w in &measured {
            res.errors.insert(
                *w,
                format!("could not fill the mount with the data set: {e}"),
            );
        }
        ready = false;
    }
    let limit = Duration::from_secs(300) + ctx.opts.runtime * 20;
    if ready {
        let env = workload::Env {
            root: &root,
            layout: &ctx.layout,
            runtime: opts.runtime,
            fio: ctx.fio,
            server_pid: pid,
            rep,
            overlay,
            archive: ctx.archive,
        };
        let pin = PinGuard::new(if plan.pinned {
            opts.load_cpus.as_ref()
        } else {
            None
        })
        .map_err(|e| format!("cannot pin the load: {e}"))?;
        for w in &measured {
            progress.step(rep, opts.reps, &plan.name, w.name());
            let deadline = Deadline::new(pid, limit);
            let r = workload::run(*w, &env);
            if deadline.finish() {
                res.errors.insert(
                    *w,
                    format!("no progress for {limit:?}: the server was killed"),
                );
                break;
            }
            match r {
                Ok(s) => res.samples.entry(*w).or_default().push(s),
                Err(e) => {
                    res.errors.insert(*w, e);
                }
            }
        }
        if rep == 0
            && let (Some(dir), Some(pid)) = (&opts.strace_dir, pid)
        {
            for w in &measured {
                progress.step(
                    rep,
                    opts.reps,
                    &plan.name,
                    &format!("{} under strace", w.name()),
                );
                progress.done -= 1;
                let file = dir.join(format!("{}.{}.txt", sanitize(&plan.name), w.name()));
                strace_run(*w, &env, pid, &file);
            }
        }
        drop(pin);
    }
    if let Some(s) = &server
        && let Some(hwm) = s.hwm_kib()
    {
        res.peak_rss_kib.push(hwm);
    }
    if !plan.target.serves_own_data() {
        let _ = std::fs::remove_dir_all(root.join(source::SCRATCH));
    }
    if let Some(mut s) = server {
        let stopped = s.stop();
        let fuselage = plan.target.is_fuselage();
        match stopped.status {
            Some(st) if st.success() && !stopped.signalled => {}
            Some(st) if !fuselage && stopped.signalled => {
                // Peers that need a signal after the unmount are noted but normal for some.
                res.exit_notes.push(format!(
                    "rep {}: still running 10 s after the unmount; stopped by signal ({st})",
                    rep + 1
                ));
            }
            other => res.exit_notes.push(format!(
                "rep {}: after the unmount it {}{}",
                rep + 1,
                if stopped.signalled {
                    "did not exit within 10 s and was signalled; "
                } else {
                    ""
                },
                match other {
                    Some(st) => format!("ended with {st}"),
                    None => "could not be reaped".into(),
                },
            )),
        }
        let _ = std::fs::remove_dir(&mountpoint);
    }
    // Unmounts (lazily) and removes the mountpoint.
    drop(kernel_mount);
    Ok(())
}

/// `mount -t overlay overlay -o lowerdir=LOWER,upperdir=LAYERS/upper,workdir=LAYERS/work MNT`
/// (loading the overlay module first if the kernel does not list overlayfs). Returns the
/// guard that unmounts it and how long mount(8) took, or why it failed.
fn mount_kernel_overlay(
    lower: &Path,
    layers: &Path,
    mnt: &Path,
) -> Result<(cleanup::Registration, Duration), String> {
    let listed = || {
        std::fs::read_to_string("/proc/filesystems")
            .is_ok_and(|f| f.lines().any(|l| l.trim_end().ends_with("\toverlay")))
    };
    if !listed() {
        let _ = Command::new("modprobe")
            .arg("overlay")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !listed() {
            return Err("the kernel has no overlayfs (modprobe overlay failed)".into());
        }
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        layers.join("upper").display(),
        layers.join("work").display()
    );
    let started = std::time::Instant::now();
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    let took = started.elapsed();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "mount -t overlay failed ({}): {}",
            out.status,
            err.lines().next_back().unwrap_or("").trim()
        ));
    }
    Ok((
        cleanup::Registration::new(cleanup::Undo::Unmount(mnt.to_path_buf())),
        took,
    ))
}

/// Runs `w` once more with `strace -c -f` attached to the server; the summary lands in `file`.
fn strace_run(w: Workload, env: &workload::Env<'_>, pid: i32, file: &Path) {
    let child = Command::new("strace")
        .args(["-c", "-f", "-p", &pid.to_string(), "-o"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("fuselage-bench: strace not available; skipping --strace-dir");
        return;
    };
    std::thread::sleep(Duration::from_millis(500));
    let r = workload::run(w, env);
    // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    if let Ok(s) = r {
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .and_then(|mut f| {
                writeln!(
                    f,
                    "\n# {} under strace: {} {} in {:.3} s ({})",
                    w.name(),
                    report::fmt_figure(s.value),
                    w.unit(),
                    s.secs,
                    s.engine
                )
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_and_router_rows_keep_their_reference() {
        assert_eq!(
            reference_name("overlay/uring/pt-on").as_deref(),
            Some("passthrough/uring/pt-on")
        );
        assert_eq!(
            reference_name("router/blocking/pt-off").as_deref(),
            Some("passthrough/blocking/pt-off")
        );
        assert_eq!(reference_name("passthrough/blocking/pt-off"), None);
        let opts = match cli::parse(["--quick", "--only", "overlay"].map(String::from)) {
            Ok(Parsed::Run(o)) => *o,
            _ => panic!("parse"),
        };
        let names: Vec<String> = plans(&opts).into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "native",
                "passthrough/blocking/pt-off",
                "overlay/blocking/pt-off",
                KERNEL_OVERLAY
            ]
        );
    }

    #[test]
    fn the_issue_15_selection() {
        // The command of BENCHMARKS.md "How to run" for issue 15 (peers shortened).
        let args = [
            "--load-cpus",
            "0",
            "--only",
            "default,floor,bindfs,passthrough_hp",
            "--peer",
            "name=passthrough_hp:cmd=hp --foreground {src} {mnt}",
            "--peer",
            "name=passthrough_hp-uring-nopt:cmd=hp -o io_uring --nopassthrough {src} {mnt}",
        ];
        let opts = match cli::parse(args.map(String::from)) {
            Ok(Parsed::Run(o)) => *o,
            _ => panic!("parse"),
        };
        let names: Vec<String> = plans(&opts).into_iter().map(|p| p.name).collect();
        let unpinned = [
            "native",
            "default/passthrough",
            "default/passthrough/pt-off",
            "default/memfs",
            "floor/blocking",
            "floor/uring-rw",
            "floor/uring",
            "bindfs",
            "passthrough_hp",
            "passthrough_hp-uring-nopt",
        ];
        let pinned = unpinned.map(|n| format!("{n} [pinned]"));
        assert_eq!(names[..unpinned.len()], unpinned);
        assert_eq!(names[unpinned.len()..], pinned);
    }
}
