//! The `fuselage` command line: `fuselage mount [OPTIONS] MOUNTPOINT`
//! exactly as the contract in the README spells it, and the form mount(8)
//! calls through mount.fuse3: `fuselage SOURCE MOUNTPOINT -o OPTIONS`.
//!
//! Every long option is also an `-o` option of the same name (`-o
//! transport=blocking`, `-o allow_other`, `-o ro`, ...), and the generic
//! mount options (`nosuid`, `noexec`, `noatime`, `sync`, ...) go to the
//! kernel.

use fuselage_backends::router::{RoutePath, check_routes};
use fuselage_linux::MountFlags;
use std::fmt;
use std::path::PathBuf;

/// The default of `--poll-us`: the native queues' adaptive poll window
/// (`fuselage_transport_uring::native::DEFAULT_POLL`) in microseconds.
pub const DEFAULT_POLL_US: u32 = 50;

/// Which transport to serve with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportChoice {
    /// Best available: native io_uring, then io_uring on /dev/fuse, then blocking.
    Auto,
    /// Native FUSE-over-io_uring, never falling back.
    Uring,
    /// io_uring read/write on /dev/fuse.
    UringRw,
    /// Blocking read/writev.
    Blocking,
}

/// Kernel passthrough of opened files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthroughChoice {
    /// Use it where the kernel and backend allow it.
    Auto,
    /// Require it; refuse to start without it.
    On,
    /// Never use it.
    Off,
}

/// How long the kernel may cache entries, attributes and data (`--cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheChoice {
    /// No caching: entry and attribute TTLs 0, no page cache kept across
    /// opens; every host change is seen at once.
    Never,
    /// Each backend's own defaults (what fuselage always did).
    #[default]
    Auto,
    /// Long TTLs (a day), negative lookups cached, page cache kept across
    /// opens; a host source is watched and changes are pushed to the kernel
    /// as invalidations.
    Always,
}

impl CacheChoice {
    /// The spelling on the command line and in the startup line.
    pub fn name(self) -> &'static str {
        match self {
            CacheChoice::Never => "never",
            CacheChoice::Auto => "auto",
            CacheChoice::Always => "always",
        }
    }
}

/// The overlay's writable upper layer (`--upper`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpperChoice {
    /// A host directory.
    Dir(PathBuf),
    /// `memory`: a private tmpfs that vanishes with the server.
    Memory,
}

impl UpperChoice {
    fn parse(v: String) -> UpperChoice {
        if v == "memory" {
            UpperChoice::Memory
        } else {
            UpperChoice::Dir(PathBuf::from(v))
        }
    }
}

/// Options of `fuselage mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountArgs {
    /// Where to mount, or `/dev/fd/N` for an already-open channel.
    pub mountpoint: PathBuf,
    /// Host directory or file to serve; `None` serves the in-memory filesystem.
    pub source: Option<PathBuf>,
    /// Overlay lower layers, topmost first (`--lower`, repeatable).
    pub lower: Vec<PathBuf>,
    /// Overlay upper layer (`--upper`).
    pub upper: Option<UpperChoice>,
    /// Transport.
    pub transport: TransportChoice,
    /// Worker threads.
    pub threads: Option<usize>,
    /// Kernel passthrough.
    pub passthrough: PassthroughChoice,
    /// Mount read-only.
    pub read_only: bool,
    /// Let other users see the mount.
    pub allow_other: bool,
    /// Remove the mount if the server dies.
    pub auto_unmount: bool,
    /// In-memory filesystem capacity in bytes.
    pub size: Option<u64>,
    /// Native io_uring: the adaptive poll window in microseconds (0: never
    /// poll; default [`DEFAULT_POLL_US`]).
    pub poll_us: u32,
    /// Generic mount flags for the kernel (default `nosuid,nodev`).
    pub flags: MountFlags,
    /// The mount's source in /proc/mounts (`-o fsname=`; default
    /// `fuselage`, or SOURCE in the mount.fuse form).
    pub fs_name: Option<String>,
    /// The mount's subtype (`-o subtype=`; default the backend's name, or
    /// `fuselage` in the mount.fuse form).
    pub subtype: Option<String>,
    /// Largest read the kernel may send (`-o max_read=`).
    pub max_read: Option<u32>,
    /// Show every request and reply on stderr (`-o debug`, `-d`).
    pub debug: bool,
    /// Detach once the mount is live (the mount.fuse form without `-f`).
    pub background: bool,
    /// Test-only: act as if io_uring were refused (see
    /// [`UringConfig::simulate_uring_refusal`](crate::transport::UringConfig::simulate_uring_refusal)).
    /// Not an option: the binary sets it from `FUSELAGE_TEST_DENY_URING=1`.
    pub simulate_uring_refusal: bool,
    /// Backends placed at paths inside the mount (`--route SUBPATH=SPEC`).
    pub routes: Vec<RouteArg>,
    /// How long the kernel may cache (`--cache`).
    pub cache: CacheChoice,
    /// Test-only: with `--cache always`, watch the source with inotify even
    /// where fanotify works. Not an option: the binary sets it from
    /// `FUSELAGE_TEST_WATCH_INOTIFY=1`.
    pub watch_inotify_only: bool,
    /// `--sandbox[=kill|log]`: once mounted, confine the server (seccomp
    /// allow-list, capabilities, no_new_privs); `None` leaves it unconfined.
    pub sandbox: Option<crate::sandbox::SeccompMode>,
    /// `--sandbox-namespace`: confine in a private mount namespace whose
    /// root is empty (implies `--sandbox` when that is not given).
    pub sandbox_namespace: bool,
}

/// What a `--route` places at its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    /// `memory`: an in-memory filesystem of its own.
    Memory,
    /// A host directory or a single host file (it exists when parsed).
    Host(PathBuf),
}

/// One `--route SUBPATH=SPEC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteArg {
    /// Where in the mount.
    pub path: RoutePath,
    /// What is placed there.
    pub spec: RouteSpec,
}

impl PassthroughChoice {
    /// The backends' setting for this choice.
    pub fn mode(self) -> fuselage_backends::passthrough::PassthroughMode {
        use fuselage_backends::passthrough::PassthroughMode;
        match self {
            PassthroughChoice::Auto => PassthroughMode::Auto,
            PassthroughChoice::On => PassthroughMode::On,
            PassthroughChoice::Off => PassthroughMode::Off,
        }
    }
}

impl MountArgs {
    /// Worker threads: `--threads`, else the number of CPUs.
    pub fn worker_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(fuselage_linux::sys::usable_cpus)
    }

    /// How many workers may wait for a contended lock: all but one, so a
    /// worker stays free for the holder.
    pub fn max_lock_waiters(&self) -> usize {
        self.worker_threads().saturating_sub(1).max(1)
    }

    /// The defaults of `fuselage mount MOUNTPOINT`.
    pub fn new(mountpoint: PathBuf) -> MountArgs {
        MountArgs {
            mountpoint,
            source: None,
            lower: Vec::new(),
            upper: None,
            transport: TransportChoice::Auto,
            threads: None,
            passthrough: PassthroughChoice::Auto,
            read_only: false,
            allow_other: false,
            auto_unmount: true,
            size: None,
            poll_us: DEFAULT_POLL_US,
            flags: MountFlags::default(),
            fs_name: None,
            subtype: None,
            max_read: None,
            debug: false,
            background: false,
            simulate_uring_refusal: false,
            routes: Vec::new(),
            cache: CacheChoice::Auto,
            watch_inotify_only: false,
            sandbox: None,
            sandbox_namespace: false,
        }
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
// Built once per process: boxing the options would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// `fuselage mount ...`.
    Mount(MountArgs),
    /// `fuselage --help` or `fuselage help`.
    Help,
    /// `fuselage --version`.
    Version,
}

/// A command line that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// A `--route` that cannot be placed (the message says why).
    BadRoute(String),
    /// No command given.
    MissingCommand,
    /// A command other than `mount`.
    UnknownCommand(String),
    /// An option that does not exist.
    UnknownOption(String),
    /// An option missing its value.
    MissingValue(&'static str),
    /// An option value that cannot be used.
    BadValue {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is expected.
        expected: &'static str,
    },
    /// No mountpoint given.
    MissingMountpoint,
    /// More than one mountpoint given.
    ExtraArgument(String),
    /// An `-o` option that does not exist.
    UnknownMountOption(String),
    /// An `-o` option that takes no value was given one.
    UnexpectedValue(String),
    /// The mount.fuse form's SOURCE is neither `memory` nor an existing path.
    BadSource(String),
    /// The mount.fuse form without SOURCE and MOUNTPOINT.
    MissingSourceOrMountpoint,
    /// Options that cannot be used together (or one without the other).
    BadCombination(&'static str),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::MissingCommand => f.write_str(
                "no command given; try 'fuselage mount MOUNTPOINT' or 'fuselage --help'",
            ),
            UsageError::UnknownCommand(c) => write!(
                f,
                "unknown command '{c}'; the command is 'mount' (see 'fuselage --help')"
            ),
            UsageError::UnknownOption(o) => {
                write!(f, "unknown option '{o}' (see 'fuselage --help')")
            }
            UsageError::MissingValue(o) => {
                write!(f, "option {o} needs a value (see 'fuselage --help')")
            }
            UsageError::BadValue {
                option,
                value,
                expected,
            } => {
                write!(
                    f,
                    "invalid value '{value}' for {option}: expected {expected}"
                )
            }
            UsageError::MissingMountpoint => {
                f.write_str("no MOUNTPOINT given: fuselage mount [OPTIONS] MOUNTPOINT")
            }
            UsageError::ExtraArgument(a) => {
                write!(f, "unexpected argument '{a}': give exactly one MOUNTPOINT")
            }
            UsageError::UnknownMountOption(o) => write!(
                f,
                "unknown mount option '-o {o}' (see 'fuselage --help' for the -o options)"
            ),
            UsageError::UnexpectedValue(o) => {
                write!(f, "mount option '-o {o}' takes no value")
            }
            UsageError::BadSource(s) => write!(
                f,
                "'{s}' is neither a command nor a SOURCE ('memory', or an existing directory or \
                 file): fuselage mount [OPTIONS] MOUNTPOINT, or fuselage SOURCE MOUNTPOINT [-o OPTIONS]"
            ),
            UsageError::BadRoute(why) => write!(f, "--route: {why}"),
            UsageError::BadCombination(why) => f.write_str(why),
            UsageError::MissingSourceOrMountpoint => f.write_str(
                "give SOURCE and MOUNTPOINT: fuselage SOURCE MOUNTPOINT [-o OPTIONS] \
                 (SOURCE: memory, a directory or a file)",
            ),
        }
    }
}

impl std::error::Error for UsageError {}

/// The help text.
pub const HELP: &str = "\
fuselage: serve a filesystem over FUSE

Usage: fuselage mount [OPTIONS] MOUNTPOINT

  MOUNTPOINT may be /dev/fd/N to serve an already-open FUSE channel
  (a /dev/fuse fd mounted by the caller, or a connected unix socket).

Options:
  --source PATH          serve PATH from the host (a directory, or a single regular
                         file; then MOUNTPOINT is a regular file too). Without
                         --source: the in-memory filesystem.
  --transport MODE       auto (default) | uring | uring-rw | blocking
  --threads N            worker threads (default: number of CPUs)
  --passthrough MODE     auto (default) | on | off   (kernel FUSE_PASSTHROUGH)
  --read-only            mount read-only; every write is refused with EROFS
  --allow-other          let other users see the mount
  --no-auto-unmount      leave the mount in place if the server dies
  --size BYTES           capacity of the in-memory filesystem (default: a quarter
                         of RAM); suffixes K, M, G, T (powers of 1024) accepted
  --lower DIR            overlay: a read-only lower layer; repeat for more,
                         topmost first (needs --upper; excludes --source)
  --upper DIR|memory     overlay: the writable upper layer, a host directory or
                         `memory` (a private tmpfs of --size bytes)
  --route SUBPATH=SPEC   place another backend at SUBPATH inside the mount; SPEC is
                         memory, a host directory or a single host file; repeatable
  --cache MODE           never | auto (default) | always: how long the kernel
                         may cache entries, attributes and data; always
                         watches a host source and pushes invalidations
                         (see the README)
  --poll-us N            native io_uring: a queue thread that serves requests one
                         at a time keeps polling up to N microseconds for the
                         next before it sleeps (adaptive: never on an idle
                         mount or under throughput load; default 50, 0 = off;
                         see the README)
  --sandbox[=kill|log]   once mounted, confine the server: a seccomp allow-list
                         of the syscalls this backend and transport use, only
                         the capabilities they need, no_new_privs; a refused
                         syscall kills the server (kill, the default) or fails
                         with EPERM (log); both name it on stderr
  --sandbox-namespace    also move into a private mount namespace whose root
                         is an empty read-only tmpfs with only /proc: no host
                         path is reachable (needs root; implies --sandbox)

  -o OPT[,OPT...]        options as mount(8) gives them; every option above also
                         as -o NAME[=VALUE] (source=, transport=, threads=,
                         passthrough=, lower=, upper=, route=, ro, allow_other,
                         no_auto_unmount, size=, poll_us=, cache=, sandbox[=],
                         sandbox_namespace),
                         plus debug, fsname=,
                         subtype=, max_read=,
                         default_permissions, rw, and the generic mount flags
                         (nosuid, nodev, noexec, noatime, sync, dirsync, ... and
                         their opposites suid, dev, exec, atime, async, ...)
  -d                     debug: print every request and its reply on stderr
                         (same as -o debug)

Usage: fuselage SOURCE MOUNTPOINT [-f] [-o OPTIONS]

  The form mount(8) uses through mount.fuse3 (`mount -t fuse.fuselage SOURCE
  MOUNTPOINT -o OPTIONS`, or an fstab line of type fuse.fuselage). SOURCE is
  `memory` (the in-memory filesystem), a directory or a regular file; with
  -o source=PATH, SOURCE is only the name shown in /proc/mounts. It detaches
  once the mount is live and exits 0 (non-zero with the error if mounting
  fails), unless -f (foreground) or -d/-o debug is given.

Environment: FUSELAGE_LOG=debug|info|warn (default warn; debug also prints
every request), NOTIFY_SOCKET (READY=1 once mounted, STOPPING=1 on the way
down, as systemd's Type=notify expects)
";

/// Parses a byte count with an optional K/M/G/T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|&n| n > 0)
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let args: Vec<String> = args.into_iter().collect();
    let first = args.first().ok_or(UsageError::MissingCommand)?;
    match first.as_str() {
        "mount" => parse_mount(&args[1..], false),
        "-h" | "--help" | "help" => Ok(Command::Help),
        "-V" | "--version" => Ok(Command::Version),
        // mount.fuse form: SOURCE first, or an option before it.
        s if s.starts_with('-') && !matches!(s, "-o" | "-f" | "-d") && !s.starts_with("-o") => {
            Err(UsageError::UnknownCommand(s.to_string()))
        }
        _ => parse_mount(&args, true),
    }
}

/// The options and positional arguments of both forms. `helper`: the
/// mount.fuse form (`SOURCE MOUNTPOINT`, detaching unless `-f`).
fn parse_mount(args: &[String], helper: bool) -> Result<Command, UsageError> {
    let mut m = MountArgs::new(PathBuf::new());
    let mut positional = Vec::new();
    let mut foreground = false;
    let mut it = args.iter().cloned();
    while let Some(arg) = it.next() {
        // Accept both "--opt value" and "--opt=value".
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |opt: &'static str| -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or(UsageError::MissingValue(opt)),
            }
        };
        match name.as_str() {
            "--source" => m.source = Some(PathBuf::from(value("--source")?)),
            "--lower" => m.lower.push(PathBuf::from(value("--lower")?)),
            "--upper" => m.upper = Some(UpperChoice::parse(value("--upper")?)),
            "--transport" => m.transport = transport(value("--transport")?, "--transport")?,
            "--threads" => m.threads = Some(threads(value("--threads")?, "--threads")?),
            "--passthrough" => {
                m.passthrough = passthrough(value("--passthrough")?, "--passthrough")?
            }
            "--read-only" => m.read_only = true,
            "--allow-other" => m.allow_other = true,
            "--no-auto-unmount" => m.auto_unmount = false,
            "--size" => m.size = Some(size(value("--size")?, "--size")?),
            "--poll-us" => m.poll_us = poll_us(value("--poll-us")?, "--poll-us")?,
            "--route" => m.routes.push(route(&value("--route")?)?),
            "--cache" => m.cache = cache(value("--cache")?, "--cache")?,
            "--sandbox" => m.sandbox = Some(sandbox(inline.clone(), "--sandbox")?),
            "--sandbox-namespace" => m.sandbox_namespace = true,
            "-o" => {
                let opts = it.next().ok_or(UsageError::MissingValue("-o"))?;
                apply_mount_options(&mut m, &opts)?;
            }
            s if s.starts_with("-o") => apply_mount_options(&mut m, &s[2..])?,
            "-f" => foreground = true,
            "-d" => m.debug = true,
            "-h" | "--help" => return Ok(Command::Help),
            s if s.starts_with("--") => return Err(UsageError::UnknownOption(arg)),
            _ => positional.push(arg),
        }
    }
    check_overlay(&m)?;
    if !helper {
        let mut positional = positional.into_iter();
        m.mountpoint = PathBuf::from(positional.next().ok_or(UsageError::MissingMountpoint)?);
        if let Some(extra) = positional.next() {
            return Err(UsageError::ExtraArgument(extra));
        }
        check_route_set(&m)?;
        return Ok(Command::Mount(m));
    }
    let mut positional = positional.into_iter();
    let (Some(source), Some(mountpoint)) = (positional.next(), positional.next()) else {
        return match args.first() {
            Some(first) if !first.starts_with('-') => {
                Err(UsageError::UnknownCommand(first.clone()))
            }
            _ => Err(UsageError::MissingSourceOrMountpoint),
        };
    };
    if let Some(extra) = positional.next() {
        return Err(UsageError::ExtraArgument(extra));
    }
    // With -o lower=, SOURCE only names the mount (as `overlay` in fstab).
    if m.source.is_none() && m.lower.is_empty() && source != "memory" {
        if std::fs::symlink_metadata(&source).is_err() {
            return Err(UsageError::BadSource(source));
        }
        m.source = Some(PathBuf::from(&source));
    }
    m.fs_name.get_or_insert(source);
    m.subtype.get_or_insert_with(|| "fuselage".to_string());
    m.mountpoint = PathBuf::from(mountpoint);
    // As libfuse's helpers: debug output needs the terminal, so it implies -f.
    m.background = !foreground && !m.debug;
    check_route_set(&m)?;
    Ok(Command::Mount(m))
}

/// `--lower` needs `--upper` and the reverse; `--source` excludes them.
fn check_overlay(m: &MountArgs) -> Result<(), UsageError> {
    match (m.lower.is_empty(), m.upper.is_some()) {
        (true, true) => Err(UsageError::BadCombination(
            "--upper needs at least one --lower DIR (the read-only layers under it)",
        )),
        (false, false) => Err(UsageError::BadCombination(
            "--lower needs --upper DIR|memory (the writable layer over it)",
        )),
        (false, true) if m.source.is_some() => Err(UsageError::BadCombination(
            "--source and --lower exclude each other: --source serves one host directory, --lower/--upper an overlay",
        )),
        _ => Ok(()),
    }
}

/// Options mount(8) and mount.fuse3 pass that mean nothing to the kernel or
/// to fuselage (fstab bookkeeping): accepted and ignored.
fn userspace_only(name: &str) -> bool {
    matches!(
        name,
        "defaults"
            | "auto"
            | "noauto"
            | "user"
            | "nouser"
            | "users"
            | "owner"
            | "group"
            | "nofail"
            | "_netdev"
            | "comment"
            | "loop"
    ) || name.starts_with("x-")
}

/// Applies one `-o` argument: comma-separated `NAME` or `NAME=VALUE` words.
/// Option names may be spelled with `_` or `-` (`allow_other`, `allow-other`).
pub fn apply_mount_options(m: &mut MountArgs, opts: &str) -> Result<(), UsageError> {
    for word in opts.split(',').filter(|w| !w.is_empty()) {
        let (raw_name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (word, None),
        };
        let name = raw_name.replace('-', "_");
        let need = |label: &'static str| value.clone().ok_or(UsageError::MissingValue(label));
        let flag = |set: &mut bool, on: bool| -> Result<(), UsageError> {
            match &value {
                Some(_) => Err(UsageError::UnexpectedValue(word.to_string())),
                None => {
                    *set = on;
                    Ok(())
                }
            }
        };
        match name.as_str() {
            "source" => m.source = Some(PathBuf::from(need("-o source=")?)),
            "lower" => m.lower.push(PathBuf::from(need("-o lower=")?)),
            "upper" => m.upper = Some(UpperChoice::parse(need("-o upper=")?)),
            "transport" => m.transport = transport(need("-o transport=")?, "-o transport")?,
            "threads" => m.threads = Some(threads(need("-o threads=")?, "-o threads")?),
            "passthrough" => {
                m.passthrough = passthrough(need("-o passthrough=")?, "-o passthrough")?
            }
            "size" => m.size = Some(size(need("-o size=")?, "-o size")?),
            "poll_us" => m.poll_us = poll_us(need("-o poll_us=")?, "-o poll_us")?,
            "route" => m.routes.push(route(&need("-o route=")?)?),
            "cache" => m.cache = cache(need("-o cache=")?, "-o cache")?,
            "sandbox" => m.sandbox = Some(sandbox(value.clone(), "-o sandbox")?),
            "sandbox_namespace" => flag(&mut m.sandbox_namespace, true)?,
            "fsname" => m.fs_name = Some(nonempty(need("-o fsname=")?, "-o fsname")?),
            "subtype" => m.subtype = Some(nonempty(need("-o subtype=")?, "-o subtype")?),
            "max_read" => {
                let v = need("-o max_read=")?;
                m.max_read = Some(v.parse::<u32>().map_err(|_| UsageError::BadValue {
                    option: "-o max_read",
                    value: v,
                    expected: "a byte count",
                })?);
            }
            "ro" | "read_only" => flag(&mut m.read_only, true)?,
            "rw" => flag(&mut m.read_only, false)?,
            "allow_other" => flag(&mut m.allow_other, true)?,
            "auto_unmount" => flag(&mut m.auto_unmount, true)?,
            "no_auto_unmount" => flag(&mut m.auto_unmount, false)?,
            "debug" => flag(&mut m.debug, true)?,
            // Always on: the kernel checks permissions from file modes.
            "default_permissions" if value.is_none() => {}
            _ if userspace_only(raw_name) => {}
            n if value.is_none() && m.flags.apply_option(n) => {}
            _ => return Err(UsageError::UnknownMountOption(word.to_string())),
        }
    }
    Ok(())
}

/// Parses `SUBPATH=SPEC`: an absolute path inside the mount, then `memory`
/// or a host directory or file that exists.
fn route(v: &str) -> Result<RouteArg, UsageError> {
    let Some((path, spec)) = v.split_once('=') else {
        return Err(UsageError::BadRoute(format!(
            "'{v}' is not SUBPATH=SPEC (SPEC: memory, a host directory or a host file), e.g. /tmp=memory"
        )));
    };
    let path = RoutePath::parse(path).map_err(|e| UsageError::BadRoute(e.to_string()))?;
    let spec = match spec {
        "memory" => RouteSpec::Memory,
        "" => {
            return Err(UsageError::BadRoute(format!(
                "route {path} has no SPEC: give memory, a host directory or a host file"
            )));
        }
        host => match std::fs::metadata(host) {
            Ok(meta) if meta.is_dir() || meta.is_file() => RouteSpec::Host(PathBuf::from(host)),
            Ok(_) => {
                return Err(UsageError::BadRoute(format!(
                    "route {path}: {host} is neither a directory nor a regular file"
                )));
            }
            Err(e) => {
                return Err(UsageError::BadRoute(format!(
                    "route {path}: cannot use {host}: {e}"
                )));
            }
        },
    };
    Ok(RouteArg { path, spec })
}

/// Checks the routes together: none inside another, none twice, and a root
/// they can sit in (not a single file).
fn check_route_set(m: &MountArgs) -> Result<(), UsageError> {
    if m.routes.is_empty() {
        return Ok(());
    }
    check_routes(m.routes.iter().map(|r| &r.path))
        .map_err(|e| UsageError::BadRoute(e.to_string()))?;
    if let Some(source) = &m.source
        && source.is_file()
    {
        return Err(UsageError::BadRoute(format!(
            "--source {} is a single file: routes need a directory root",
            source.display()
        )));
    }
    Ok(())
}

fn nonempty(v: String, option: &'static str) -> Result<String, UsageError> {
    if v.is_empty() {
        return Err(UsageError::BadValue {
            option,
            value: v,
            expected: "a name",
        });
    }
    Ok(v)
}

fn transport(v: String, option: &'static str) -> Result<TransportChoice, UsageError> {
    Ok(match v.as_str() {
        "auto" => TransportChoice::Auto,
        "uring" => TransportChoice::Uring,
        "uring-rw" => TransportChoice::UringRw,
        "blocking" => TransportChoice::Blocking,
        _ => {
            return Err(UsageError::BadValue {
                option,
                value: v,
                expected: "auto, uring, uring-rw or blocking",
            });
        }
    })
}

fn cache(v: String, option: &'static str) -> Result<CacheChoice, UsageError> {
    Ok(match v.as_str() {
        "never" => CacheChoice::Never,
        "auto" => CacheChoice::Auto,
        "always" => CacheChoice::Always,
        _ => {
            return Err(UsageError::BadValue {
                option,
                value: v,
                expected: "never, auto or always",
            });
        }
    })
}

fn threads(v: String, option: &'static str) -> Result<usize, UsageError> {
    v.parse::<usize>()
        .ok()
        .filter(|&n| (1..=1024).contains(&n))
        .ok_or(UsageError::BadValue {
            option,
            value: v,
            expected: "a number from 1 to 1024",
        })
}

fn passthrough(v: String, option: &'static str) -> Result<PassthroughChoice, UsageError> {
    Ok(match v.as_str() {
        "auto" => PassthroughChoice::Auto,
        "on" => PassthroughChoice::On,
        "off" => PassthroughChoice::Off,
        _ => {
            return Err(UsageError::BadValue {
                option,
                value: v,
                expected: "auto, on or off",
            });
        }
    })
}

fn size(v: String, option: &'static str) -> Result<u64, UsageError> {
    parse_size(&v).ok_or(UsageError::BadValue {
        option,
        value: v,
        expected: "a positive byte count, optionally with K, M, G or T",
    })
}

/// `--sandbox` alone (or `=kill`, `=on`) kills the server at a refused
/// syscall; `=log` fails it with EPERM and says so.
fn sandbox(
    v: Option<String>,
    option: &'static str,
) -> Result<crate::sandbox::SeccompMode, UsageError> {
    use crate::sandbox::SeccompMode;
    match v.as_deref() {
        None | Some("kill" | "on") => Ok(SeccompMode::Kill),
        Some("log") => Ok(SeccompMode::Log),
        Some(_) => Err(UsageError::BadValue {
            option,
            value: v.unwrap_or_default(),
            expected: "nothing, kill or log",
        }),
    }
}

fn poll_us(v: String, option: &'static str) -> Result<u32, UsageError> {
    v.parse::<u32>()
        .ok()
        .filter(|&n| n <= 1_000_000)
        .ok_or(UsageError::BadValue {
            option,
            value: v,
            expected: "microseconds from 0 to 1000000",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_the_contract() {
        let Command::Mount(m) = p(&[
            "mount",
            "--source",
            "/src",
            "--transport",
            "uring-rw",
            "--threads=3",
            "--passthrough",
            "off",
            "--read-only",
            "--allow-other",
            "--no-auto-unmount",
            "--size",
            "64M",
            "/mnt",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(m.source.as_deref(), Some(std::path::Path::new("/src")));
        assert_eq!(m.transport, TransportChoice::UringRw);
        assert_eq!(m.threads, Some(3));
        assert_eq!(m.passthrough, PassthroughChoice::Off);
        assert!(m.read_only && m.allow_other && !m.auto_unmount);
        assert_eq!(m.size, Some(64 << 20));
        assert_eq!(m.mountpoint, PathBuf::from("/mnt"));
    }

    #[test]
    fn parses_overlay_layers() {
        let Command::Mount(m) = p(&[
            "mount",
            "--lower",
            "/l1",
            "--lower=/l2",
            "--upper",
            "/u",
            "/m",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(m.lower, vec![PathBuf::from("/l1"), PathBuf::from("/l2")]);
        assert_eq!(m.upper, Some(UpperChoice::Dir(PathBuf::from("/u"))));
        let Command::Mount(m) =
            p(&["mount", "-o", "lower=/a,lower=/b,upper=memory", "/m"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(m.lower, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(m.upper, Some(UpperChoice::Memory));
        // The mount.fuse form: SOURCE is just the name in /proc/mounts.
        let Command::Mount(m) = p(&["overlay", "/m", "-o", "lower=/a,upper=/u"]).unwrap() else {
            panic!()
        };
        assert_eq!(m.source, None);
        assert_eq!(m.fs_name.as_deref(), Some("overlay"));
        assert_eq!(m.lower, vec![PathBuf::from("/a")]);
        for bad in [
            &["mount", "--lower", "/l", "/m"][..],
            &["mount", "--upper", "/u", "/m"],
            &[
                "mount", "--source", "/s", "--lower", "/l", "--upper", "/u", "/m",
            ],
        ] {
            assert!(
                matches!(p(bad), Err(UsageError::BadCombination(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn default_poll_is_the_transports() {
        assert_eq!(
            Duration::from_micros(u64::from(DEFAULT_POLL_US)),
            fuselage_transport_uring::native::DEFAULT_POLL
        );
    }

    #[test]
    fn sandbox_modes() {
        use crate::sandbox::SeccompMode;
        let mode = |args: &[&str]| match p(args) {
            Ok(Command::Mount(m)) => Ok(m.sandbox),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(mode(&["mount", "/m"]), Ok(None));
        assert_eq!(
            mode(&["mount", "--sandbox", "/m"]),
            Ok(Some(SeccompMode::Kill))
        );
        assert_eq!(
            mode(&["mount", "--sandbox=kill", "/m"]),
            Ok(Some(SeccompMode::Kill))
        );
        assert_eq!(
            mode(&["mount", "--sandbox=log", "/m"]),
            Ok(Some(SeccompMode::Log))
        );
        assert_eq!(
            mode(&["mount", "-o", "sandbox", "/m"]),
            Ok(Some(SeccompMode::Kill))
        );
        assert_eq!(
            mode(&["mount", "-o", "ro,sandbox=log", "/m"]),
            Ok(Some(SeccompMode::Log))
        );
        assert_eq!(
            mode(&["mount", "--sandbox=maybe", "/m"]),
            Err(UsageError::BadValue {
                option: "--sandbox",
                value: "maybe".into(),
                expected: "nothing, kill or log",
            })
        );
    }

    #[test]
    fn sandbox_namespace_flag() {
        let namespace = |args: &[&str]| match p(args) {
            Ok(Command::Mount(m)) => Ok((m.sandbox_namespace, m.sandbox)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(namespace(&["mount", "/m"]), Ok((false, None)));
        assert_eq!(
            namespace(&["mount", "--sandbox-namespace", "/m"]),
            Ok((true, None))
        );
        assert_eq!(
            namespace(&["mount", "-o", "ro,sandbox_namespace", "/m"]),
            Ok((true, None))
        );
        assert_eq!(
            namespace(&["mount", "--sandbox=log", "--sandbox-namespace", "/m"]),
            Ok((true, Some(crate::sandbox::SeccompMode::Log)))
        );
        assert!(namespace(&["mount", "-o", "sandbox_namespace=yes", "/m"]).is_err());
    }

    #[test]
    fn defaults_and_errors() {
        let Command::Mount(m) = p(&["mount", "/m"]).unwrap() else {
            panic!()
        };
        assert_eq!(m.transport, TransportChoice::Auto);
        assert!(m.auto_unmount);
        assert_eq!(m.poll_us, DEFAULT_POLL_US);
        let Command::Mount(m) = p(&["mount", "--poll-us=50", "/m"]).unwrap() else {
            panic!()
        };
        assert_eq!(m.poll_us, 50);
        assert!(matches!(
            p(&["mount", "--poll-us", "-1", "/m"]),
            Err(UsageError::BadValue {
                option: "--poll-us",
                ..
            })
        ));
        assert_eq!(p(&["mount"]), Err(UsageError::MissingMountpoint));
        assert_eq!(p(&[]), Err(UsageError::MissingCommand));
        assert!(matches!(
            p(&["mount", "--transport", "x", "/m"]),
            Err(UsageError::BadValue { .. })
        ));
        assert!(matches!(
            p(&["mount", "--bogus", "/m"]),
            Err(UsageError::UnknownOption(_))
        ));
        assert!(matches!(
            p(&["mount", "/a", "/b"]),
            Err(UsageError::ExtraArgument(_))
        ));
        assert_eq!(
            p(&["mount", "--size"]),
            Err(UsageError::MissingValue("--size"))
        );
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("0"), None);
    }

    #[test]
    fn every_long_option_as_dash_o() {
        let Command::Mount(m) = p(&[
            "mount",
            "-o",
            "source=/src,transport=uring-rw,threads=3,passthrough=off,ro,allow_other",
            "-ono_auto_unmount,size=64M,poll-us=50,noexec,noatime,debug",
            "/mnt",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(m.source.as_deref(), Some(std::path::Path::new("/src")));
        assert_eq!(m.transport, TransportChoice::UringRw);
        assert_eq!(m.threads, Some(3));
        assert_eq!(m.passthrough, PassthroughChoice::Off);
        assert!(m.read_only && m.allow_other && !m.auto_unmount && m.debug);
        assert_eq!(m.size, Some(64 << 20));
        assert_eq!(m.poll_us, 50);
        assert!(m.flags.contains(MountFlags::NOEXEC | MountFlags::NOATIME));
        assert!(m.flags.contains(MountFlags::NOSUID));
        // The `mount` form never detaches.
        assert!(!m.background);
    }

    #[test]
    fn mount_fuse_form() {
        // What mount.fuse3 runs for `mount -t fuse.fuselage memory /mnt/x -o allow_other`.
        let Command::Mount(m) = p(&["memory", "/mnt/x", "-o", "rw,allow_other,dev,suid"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(m.source, None);
        assert_eq!(m.mountpoint, PathBuf::from("/mnt/x"));
        assert!(m.allow_other && m.background && !m.read_only);
        assert!(!m.flags.contains(MountFlags::NOSUID) && !m.flags.contains(MountFlags::NODEV));
        assert_eq!(m.fs_name.as_deref(), Some("memory"));
        assert_eq!(m.subtype.as_deref(), Some("fuselage"));
        // A directory source, foreground, fstab bookkeeping words ignored.
        let Command::Mount(m) = p(&[
            "/",
            "/mnt/x",
            "-f",
            "-o",
            "ro,nofail,_netdev,x-systemd.automount",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(m.source.as_deref(), Some(std::path::Path::new("/")));
        assert!(m.read_only && !m.background);
        // -o source= wins; SOURCE is then only the name.
        let Command::Mount(m) = p(&["-o", "source=/tmp", "data", "/mnt/x"]).unwrap() else {
            panic!()
        };
        assert_eq!(m.source.as_deref(), Some(std::path::Path::new("/tmp")));
        assert_eq!(m.fs_name.as_deref(), Some("data"));
        // Debug keeps it in the foreground, as libfuse's -d does.
        let Command::Mount(m) = p(&["memory", "/mnt/x", "-o", "debug"]).unwrap() else {
            panic!()
        };
        assert!(m.debug && !m.background);
    }

    #[test]
    fn bad_dash_o_and_sources() {
        assert_eq!(
            p(&["memory", "/m", "-o", "rw,bogus"]),
            Err(UsageError::UnknownMountOption("bogus".into()))
        );
        assert_eq!(
            p(&["mount", "-o", "allow_root", "/m"]),
            Err(UsageError::UnknownMountOption("allow_root".into()))
        );
        assert_eq!(
            p(&["mount", "-o", "ro=1", "/m"]),
            Err(UsageError::UnexpectedValue("ro=1".into()))
        );
        assert_eq!(
            p(&["mount", "-o", "transport", "/m"]),
            Err(UsageError::MissingValue("-o transport="))
        );
        assert!(matches!(
            p(&["mount", "-o", "threads=0", "/m"]),
            Err(UsageError::BadValue {
                option: "-o threads",
                ..
            })
        ));
        assert_eq!(
            p(&["/no/such/source", "/m"]),
            Err(UsageError::BadSource("/no/such/source".into()))
        );
        assert_eq!(
            p(&["bogus"]),
            Err(UsageError::UnknownCommand("bogus".into()))
        );
        assert_eq!(
            p(&["--bogus"]),
            Err(UsageError::UnknownCommand("--bogus".into()))
        );
        assert_eq!(
            p(&["-o", "ro", "memory"]),
            Err(UsageError::MissingSourceOrMountpoint)
        );
        assert!(matches!(
            p(&["memory", "/a", "/b"]),
            Err(UsageError::ExtraArgument(_))
        ));
    }

    #[test]
    fn parses_cache_modes() {
        let mode = |args: &[&str]| match p(args) {
            Ok(Command::Mount(m)) => Ok(m.cache),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(mode(&["mount", "/mnt"]), Ok(CacheChoice::Auto));
        assert_eq!(
            mode(&["mount", "--cache", "never", "/mnt"]),
            Ok(CacheChoice::Never)
        );
        assert_eq!(
            mode(&["mount", "--cache=always", "/mnt"]),
            Ok(CacheChoice::Always)
        );
        assert_eq!(
            mode(&["mount", "--cache", "auto", "/mnt"]),
            Ok(CacheChoice::Auto)
        );
        assert_eq!(
            mode(&["mount", "-o", "cache=always", "/mnt"]),
            Ok(CacheChoice::Always)
        );
        assert_eq!(
            mode(&["mount", "-o", "ro,cache=never", "/mnt"]),
            Ok(CacheChoice::Never)
        );
        assert_eq!(
            mode(&["mount", "--cache", "sometimes", "/mnt"]),
            Err(UsageError::BadValue {
                option: "--cache",
                value: "sometimes".into(),
                expected: "never, auto or always",
            })
        );
        assert!(matches!(
            mode(&["mount", "-o", "cache=", "/mnt"]),
            Err(UsageError::BadValue {
                option: "-o cache",
                ..
            })
        ));
        assert_eq!(
            mode(&["mount", "-o", "cache", "/mnt"]),
            Err(UsageError::MissingValue("-o cache="))
        );
        assert_eq!(
            mode(&["mount", "--cache"]),
            Err(UsageError::MissingValue("--cache"))
        );
        assert_eq!(CacheChoice::Always.name(), "always");
    }

    #[test]
    fn parses_routes() {
        let dir = std::env::temp_dir();
        let dir_s = dir.display().to_string();
        let Command::Mount(m) = p(&[
            "mount",
            "--route",
            "/tmp=memory",
            &format!("--route=/data={dir_s}"),
            "-o",
            &format!("route=//etc/x/={dir_s}"),
            "/mnt",
        ])
        .unwrap() else {
            panic!()
        };
        let paths: Vec<&str> = m.routes.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/tmp", "/data", "/etc/x"]);
        assert_eq!(m.routes[0].spec, RouteSpec::Memory);
        assert_eq!(m.routes[1].spec, RouteSpec::Host(dir.clone()));
    }

    #[test]
    fn refuses_bad_routes() {
        for bad in [
            &[
                "mount",
                "--route",
                "/tmp=memory",
                "--route",
                "/tmp/a=memory",
                "/mnt",
            ][..],
            &[
                "mount",
                "--route",
                "/tmp=memory",
                "--route",
                "/tmp/=memory",
                "/mnt",
            ],
            &["mount", "--route", "/=memory", "/mnt"],
            &["mount", "--route", "tmp=memory", "/mnt"],
            &["mount", "--route", "/a/../b=memory", "/mnt"],
            &["mount", "--route", "/a=/no/such/path/anywhere", "/mnt"],
            &["mount", "--route", "/a", "/mnt"],
            &["mount", "--route", "/a=", "/mnt"],
        ] {
            assert!(
                matches!(p(bad), Err(UsageError::BadRoute(_))),
                "{bad:?} gave {:?}",
                p(bad)
            );
        }
    }
}
