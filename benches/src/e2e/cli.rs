//! The command line of `fuselage-bench`.

use crate::archive::TarFrom;
use crate::cpuset::CpuSet;
use crate::workload::Workload;
use std::path::PathBuf;
use std::time::Duration;

/// What `fuselage-bench --help` prints.
pub const HELP: &str = "\
fuselage-bench: end-to-end FUSE benchmarks, fuselage beside native and peer servers

usage: fuselage-bench [OPTIONS]

  --quick               smoke run: tiny sizes, 1 repetition, the default rows, memfs,
                        passthrough, overlay and router on the blocking transport only
                        (and kernel overlayfs); a few seconds; exits 0 if the harness works
  --reps N              repetitions of every configuration (default 3); min/median reported
  --json PATH           results as JSON (default bench-results.json)
  --svg PATH            chart of the ratios to native (default: the JSON path with .svg)
  --fuselage PATH       the fuselage binary (default: beside this one, else on PATH)
  --source-fs KIND      tmpfs (default: /dev/shm/fuselage-bench-src) or ext4 (an image
                        on a loop device, mounted; caches dropped so both sides go cold)
  --source-dir DIR      where the tmpfs source lives (default /dev/shm/fuselage-bench-src)
  --image PATH          the ext4 image file (default /var/tmp/fuselage-bench-ext4.img)
  --size BYTES          size of the big file (default 1G; K/M/G suffixes)
  --files N             small files in one directory (default 10000)
  --copy-up BYTES       data the copy-up workload copies up, in 16 files (default 64M)
  --tar-from DIR        the directory tar-x extracts an archive of (default /usr/include
                        if it has 1000 entries, else a generated tree of 9000 files,
                        ~100 MB); 'generated' or 'generated:N' for a generated tree of N
                        files. Archived once into /dev/shm/fuselage-bench-tar, reused
  --runtime SECS        length of each random-read run (default 3)
  --threads N           passed to fuselage as --threads
  --peer SPEC           another FUSE server: 'name=NAME:cmd=COMMAND {src} {mnt}' (run with
                        sh -c 'exec COMMAND'; it must stay in the foreground). Without {src}
                        it serves its own (in-memory) filesystem, which the harness fills
                        with the data set after mounting, as for fuselage memfs. Repeatable.
  --no-bindfs           leave out the bindfs peer
  --no-kernel-overlay   leave out the kernel overlayfs row (mount -t overlay; needs root)
  --no-floor            leave out the floor rows: a trivial server (zero-filled reads,
                        constant attributes) served by this binary through fuselage's
                        transports, the best a FUSE round trip does here; read
                        workloads only
  --only LIST           configurations whose name contains one of these comma-separated
                        words (native is always measured, and so is the passthrough row
                        an overlay or router row is compared with)
  --workloads LIST      comma-separated subset of: mount,seqread,seqwrite,randread-qd1,
                        randread-qd32,stat,create-unlink,readdir,tar-x,copy-up (default:
                        all; copy-up runs on the overlay rows only)
  --no-fio              use the built-in loops even when fio is installed
  --load-cpus LIST      pin the load (workloads, fio) to these CPUs, e.g. 0 or 0-1,3
  --server-cpus LIST    pin the FUSE server to these CPUs; with either option every
                        configuration is measured unpinned and pinned
  --from-json PATH      measure nothing: re-print the tables and re-draw the chart (--svg)
                        from the JSON of an earlier run
  --strace-dir DIR      after the first repetition of every server, run each workload once
                        more under `strace -c -f -p SERVER` and keep the summaries in DIR
  -h, --help            this text

The default rows are what a user gets without tuning flags, `auto` choosing the
transport: default/passthrough (--source SRC), default/passthrough/pt-off (the
same with --passthrough off) and default/memfs (no options); the report names
the transport auto chose.

Besides memfs and passthrough (--source SRC), fuselage is measured as an overlay
(--lower SRC --upper DIR, DIR a fresh directory on tmpfs) and as a router
(--source SRC --route /data=SRC, workloads under /data), on the same data set;
the report compares them with the passthrough row of the same transport and
--passthrough mode, and with kernel overlayfs over the same lower layer.

Every mount it makes is unmounted on exit, also on Ctrl-C and panic.
";

/// Where the source tree lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFs {
    /// A directory on tmpfs.
    Tmpfs,
    /// An ext4 image on a loop device.
    Ext4,
}

/// Another FUSE server to compare with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Name in the tables.
    pub name: String,
    /// Command with `{src}` and `{mnt}` placeholders.
    pub cmd: String,
    /// `passthrough=on|off`: whether the peer uses kernel passthrough (unknown: None).
    pub kernel_passthrough: Option<bool>,
}

impl PeerSpec {
    /// Parses `name=NAME[:passthrough=on|off]:cmd=COMMAND`.
    pub fn parse(spec: &str) -> Result<PeerSpec, String> {
        let rest = spec
            .strip_prefix("name=")
            .ok_or_else(|| format!("--peer '{spec}': expected 'name=NAME:cmd=COMMAND'"))?;
        let (head, cmd) = rest
            .split_once(":cmd=")
            .ok_or_else(|| format!("--peer '{spec}': expected 'name=NAME:cmd=COMMAND'"))?;
        let (name, kernel_passthrough) = match head.split_once(":passthrough=") {
            Some((name, "on")) => (name, Some(true)),
            Some((name, "off")) => (name, Some(false)),
            Some(_) => {
                return Err(format!("--peer '{spec}': passthrough= takes on or off"));
            }
            None => (head, None),
        };
        if name.is_empty() || cmd.trim().is_empty() {
            return Err(format!("--peer '{spec}': name and cmd must not be empty"));
        }
        if !cmd.contains("{mnt}") {
            return Err(format!(
                "--peer '{spec}': the command needs a {{mnt}} placeholder"
            ));
        }
        Ok(PeerSpec {
            name: name.to_string(),
            cmd: cmd.to_string(),
            kernel_passthrough,
        })
    }
}

/// Parsed options.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub reps: usize,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub fuselage: Option<PathBuf>,
    pub source_fs: SourceFs,
    pub source_dir: PathBuf,
    pub image: PathBuf,
    pub big_bytes: u64,
    pub files: usize,
    pub small_bytes: usize,
    /// Bytes the copy-up workload copies up, in [`COPYUP_FILES`] files.
    pub copyup_total: u64,
    /// What the `tar-x` workload extracts an archive of.
    pub tar_from: TarFrom,
    pub runtime: Duration,
    pub threads: Option<usize>,
    pub peers: Vec<PeerSpec>,
    pub bindfs: bool,
    /// Measure kernel overlayfs over the same lower layer.
    pub kernel_overlay: bool,
    /// Measure the floor (a trivial server) on every transport.
    pub floor: bool,
    pub only: Vec<String>,
    pub workloads: Vec<Workload>,
    pub use_fio: bool,
    pub load_cpus: Option<CpuSet>,
    pub server_cpus: Option<CpuSet>,
    pub strace_dir: Option<PathBuf>,
    pub from_json: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            quick: false,
            reps: 3,
            json: PathBuf::from("bench-results.json"),
            svg: PathBuf::from("bench-results.svg"),
            fuselage: None,
            source_fs: SourceFs::Tmpfs,
            source_dir: PathBuf::from("/dev/shm/fuselage-bench-src"),
            image: PathBuf::from("/var/tmp/fuselage-bench-ext4.img"),
            big_bytes: 1 << 30,
            files: 10_000,
            small_bytes: 4096,
            copyup_total: 64 << 20,
            tar_from: TarFrom::Auto,
            runtime: Duration::from_secs(3),
            threads: None,
            peers: Vec::new(),
            bindfs: true,
            kernel_overlay: true,
            floor: true,
            only: Vec::new(),
            workloads: Workload::ALL.to_vec(),
            use_fio: true,
            load_cpus: None,
            server_cpus: None,
            strace_dir: None,
            from_json: None,
        }
    }
}

/// Files of the generated tree `tar-x` extracts under `--quick`.
pub const QUICK_TAR_FILES: usize = 300;

/// Files the copy-up workload writes to (its data split evenly among them).
pub const COPYUP_FILES: usize = 16;

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
}

/// Parses a byte count with an optional K/M/G suffix (powers of 1024).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut json_given = false;
    let mut svg_given = false;
    let mut size_given = false;
    let mut files_given = false;
    let mut copyup_given = false;
    let mut tar_given = false;
    let mut reps_given = false;
    let mut runtime_given = false;
    let mut source_dir_given = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("option {name} needs a value (see --help)"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--quick" => o.quick = true,
            "--reps" => {
                let v = value("--reps")?;
                o.reps = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--reps '{v}': expected a positive integer"))?;
                reps_given = true;
            }
            "--json" => {
                o.json = PathBuf::from(value("--json")?);
                json_given = true;
            }
            "--svg" => {
                o.svg = PathBuf::from(value("--svg")?);
                svg_given = true;
            }
            "--fuselage" => o.fuselage = Some(PathBuf::from(value("--fuselage")?)),
            "--source-fs" => {
                o.source_fs = match value("--source-fs")?.as_str() {
                    "tmpfs" => SourceFs::Tmpfs,
                    "ext4" => SourceFs::Ext4,
                    other => return Err(format!("--source-fs '{other}': expected tmpfs or ext4")),
                }
            }
            "--source-dir" => {
                o.source_dir = PathBuf::from(value("--source-dir")?);
                source_dir_given = true;
            }
            "--image" => o.image = PathBuf::from(value("--image")?),
            "--size" => {
                let v = value("--size")?;
                o.big_bytes = parse_bytes(&v).filter(|n| *n >= 64 * 1024).ok_or(format!(
                    "--size '{v}': expected bytes >= 64K (K/M/G suffix)"
                ))?;
                size_given = true;
            }
            "--files" => {
                let v = value("--files")?;
                o.files = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--files '{v}': expected a positive integer"))?;
                files_given = true;
            }
            "--copy-up" => {
                let v = value("--copy-up")?;
                o.copyup_total = parse_bytes(&v)
                    .filter(|n| *n >= COPYUP_FILES as u64 * 4096)
                    .ok_or(format!(
                        "--copy-up '{v}': expected bytes >= 64K (K/M/G suffix)"
                    ))?;
                copyup_given = true;
            }
            "--tar-from" => {
                let v = value("--tar-from")?;
                o.tar_from = match v.strip_prefix("generated") {
                    Some("") => TarFrom::Generated(crate::archive::GENERATED_FILES),
                    Some(n) => TarFrom::Generated(
                        n.strip_prefix(':')
                            .and_then(|n| n.parse().ok())
                            .filter(|n| *n > 0)
                            .ok_or(format!(
                                "--tar-from '{v}': expected DIR, generated or generated:N"
                            ))?,
                    ),
                    None => TarFrom::Dir(PathBuf::from(v)),
                };
                tar_given = true;
            }
            "--runtime" => {
                let v = value("--runtime")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && *s < 3600.0)
                    .ok_or(format!("--runtime '{v}': expected seconds, e.g. 3 or 0.5"))?;
                o.runtime = Duration::from_secs_f64(secs);
                runtime_given = true;
            }
            "--threads" => {
                let v = value("--threads")?;
                o.threads = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("--threads '{v}': expected a positive integer"))?,
                );
            }
            "--peer" => o.peers.push(PeerSpec::parse(&value("--peer")?)?),
            "--no-bindfs" => o.bindfs = false,
            "--no-kernel-overlay" => o.kernel_overlay = false,
            "--no-floor" => o.floor = false,
            "--only" => {
                o.only = value("--only")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "--workloads" => {
                let v = value("--workloads")?;
                let mut list = Vec::new();
                for name in v.split(',').filter(|s| !s.is_empty()) {
                    list.push(Workload::from_name(name).ok_or(format!(
                        "--workloads: unknown workload '{name}' (see --help)"
                    ))?);
                }
                list.sort();
                list.dedup();
                o.workloads = list;
            }
            "--no-fio" => o.use_fio = false,
            "--load-cpus" => o.load_cpus = Some(CpuSet::parse(&value("--load-cpus")?)?),
            "--server-cpus" => o.server_cpus = Some(CpuSet::parse(&value("--server-cpus")?)?),
            "--from-json" => o.from_json = Some(PathBuf::from(value("--from-json")?)),
            "--strace-dir" => o.strace_dir = Some(PathBuf::from(value("--strace-dir")?)),
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    if o.quick {
        if !size_given {
            o.big_bytes = 16 << 20;
        }
        if !files_given {
            o.files = 200;
        }
        if !copyup_given {
            o.copyup_total = 1 << 20;
        }
        if !tar_given {
            o.tar_from = TarFrom::Generated(QUICK_TAR_FILES);
        }
        if !reps_given {
            o.reps = 1;
        }
        if !runtime_given {
            o.runtime = Duration::from_millis(300);
        }
        if !source_dir_given {
            o.source_dir = PathBuf::from("/dev/shm/fuselage-bench-src-quick");
        }
        o.bindfs = false;
    }
    if json_given && !svg_given {
        o.svg = o.json.with_extension("svg");
    }
    if let (Some(from), false) = (&o.from_json, svg_given) {
        o.svg = from.with_extension("svg");
    }
    Ok(Parsed::Run(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(args.iter().map(|s| s.to_string())).unwrap() {
            Parsed::Run(o) => *o,
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("16m"), Some(16 << 20));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("x"), None);
    }

    #[test]
    fn peer_spec() {
        let p = PeerSpec::parse("name=hp:cmd=/x/passthrough_hp {src} {mnt}").unwrap();
        assert_eq!(p.name, "hp");
        assert_eq!(p.cmd, "/x/passthrough_hp {src} {mnt}");
        assert_eq!(p.kernel_passthrough, None);
        let p = PeerSpec::parse("name=hp:passthrough=on:cmd=x {mnt}").unwrap();
        assert_eq!((p.name.as_str(), p.kernel_passthrough), ("hp", Some(true)));
        let p = PeerSpec::parse("name=hp:passthrough=off:cmd=x {mnt}").unwrap();
        assert_eq!(p.kernel_passthrough, Some(false));
        assert!(PeerSpec::parse("name=hp:passthrough=maybe:cmd=x {mnt}").is_err());
        assert!(PeerSpec::parse("cmd=x").is_err());
        assert!(PeerSpec::parse("name=a:cmd=nomnt").is_err());
    }

    #[test]
    fn quick_scales_down() {
        let o = run(&["--quick", "--json", "/tmp/q.json"]);
        assert_eq!(o.reps, 1);
        assert!(o.big_bytes < 1 << 30);
        assert!(!o.bindfs);
        assert!(o.copyup_total < 64 << 20);
        assert_eq!(o.tar_from, TarFrom::Generated(QUICK_TAR_FILES));
        assert_eq!(
            run(&["--tar-from", "generated:50"]).tar_from,
            TarFrom::Generated(50)
        );
        assert!(parse(["--tar-from".to_string(), "generated:x".to_string()]).is_err());
        assert_eq!(o.svg, PathBuf::from("/tmp/q.svg"));
    }

    #[test]
    fn workloads_and_pins() {
        let o = run(&[
            "--workloads",
            "stat,mount",
            "--load-cpus",
            "0",
            "--server-cpus",
            "1",
        ]);
        assert_eq!(o.workloads, vec![Workload::Mount, Workload::Stat]);
        assert!(o.load_cpus.is_some() && o.server_cpus.is_some());
        assert!(parse(["--workloads".to_string(), "nope".to_string()]).is_err());
    }
}
