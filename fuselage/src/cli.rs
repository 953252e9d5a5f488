//! The `fuselage` command line: parsing `fuselage mount [OPTIONS] MOUNTPOINT`
//! exactly as the contract in the README spells it.

use std::fmt;
use std::path::PathBuf;

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

/// Options of `fuselage mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountArgs {
    /// Where to mount, or `/dev/fd/N` for an already-open channel.
    pub mountpoint: PathBuf,
    /// Host directory or file to serve; `None` serves the in-memory filesystem.
    pub source: Option<PathBuf>,
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
    /// Native io_uring: microseconds a queue thread keeps polling after its
    /// last request (0: sleep at once).
    pub poll_us: u32,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
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
  --poll-us N            native io_uring: each queue thread keeps polling for N
                         microseconds after its last request before sleeping,
                         so unpinned callers stay on their CPU; costs CPU
                         (default 0: sleep at once; see the README)

Environment: FUSELAGE_LOG=debug|info|warn (default warn)
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
    let mut it = args.into_iter();
    let cmd = it.next().ok_or(UsageError::MissingCommand)?;
    match cmd.as_str() {
        "mount" => {}
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "-V" | "--version" => return Ok(Command::Version),
        other => return Err(UsageError::UnknownCommand(other.to_string())),
    }
    let mut m = MountArgs {
        mountpoint: PathBuf::new(),
        source: None,
        transport: TransportChoice::Auto,
        threads: None,
        passthrough: PassthroughChoice::Auto,
        read_only: false,
        allow_other: false,
        auto_unmount: true,
        size: None,
        poll_us: 0,
    };
    let mut mountpoint = None;
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
            "--transport" => {
                let v = value("--transport")?;
                m.transport = match v.as_str() {
                    "auto" => TransportChoice::Auto,
                    "uring" => TransportChoice::Uring,
                    "uring-rw" => TransportChoice::UringRw,
                    "blocking" => TransportChoice::Blocking,
                    _ => {
                        return Err(UsageError::BadValue {
                            option: "--transport",
                            value: v,
                            expected: "auto, uring, uring-rw or blocking",
                        });
                    }
                }
            }
            "--threads" => {
                let v = value("--threads")?;
                m.threads = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|&n| (1..=1024).contains(&n))
                        .ok_or(UsageError::BadValue {
                            option: "--threads",
                            value: v,
                            expected: "a number from 1 to 1024",
                        })?,
                );
            }
            "--passthrough" => {
                let v = value("--passthrough")?;
                m.passthrough = match v.as_str() {
                    "auto" => PassthroughChoice::Auto,
                    "on" => PassthroughChoice::On,
                    "off" => PassthroughChoice::Off,
                    _ => {
                        return Err(UsageError::BadValue {
                            option: "--passthrough",
                            value: v,
                            expected: "auto, on or off",
                        });
                    }
                }
            }
            "--read-only" => m.read_only = true,
            "--allow-other" => m.allow_other = true,
            "--no-auto-unmount" => m.auto_unmount = false,
            "--size" => {
                let v = value("--size")?;
                m.size = Some(parse_size(&v).ok_or(UsageError::BadValue {
                    option: "--size",
                    value: v,
                    expected: "a positive byte count, optionally with K, M, G or T",
                })?);
            }
            "--poll-us" => {
                let v = value("--poll-us")?;
                m.poll_us = v.parse::<u32>().ok().filter(|&n| n <= 1_000_000).ok_or(
                    UsageError::BadValue {
                        option: "--poll-us",
                        value: v,
                        expected: "microseconds from 0 to 1000000",
                    },
                )?;
            }
            "-h" | "--help" => return Ok(Command::Help),
            s if s.starts_with("--") => return Err(UsageError::UnknownOption(arg)),
            _ => {
                if mountpoint.is_some() {
                    return Err(UsageError::ExtraArgument(arg));
                }
                mountpoint = Some(PathBuf::from(arg));
            }
        }
    }
    m.mountpoint = mountpoint.ok_or(UsageError::MissingMountpoint)?;
    Ok(Command::Mount(m))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn defaults_and_errors() {
        let Command::Mount(m) = p(&["mount", "/m"]).unwrap() else {
            panic!()
        };
        assert_eq!(m.transport, TransportChoice::Auto);
        assert!(m.auto_unmount);
        assert_eq!(m.poll_us, 0);
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
}
