//! Error types of the blocking transport: [`MountError`] for mounting and unmounting,
//! [`ChannelError`] for protocol-level failures of a channel or splice pipe (carried inside
//! [`std::io::Error`] so channel I/O keeps one error type).
//!
//! Every `Display` message is one line that says what went wrong and what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What a permission failure was about, so the message can say what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The caller may not use the mountpoint (fusermount3 requires write access to it).
    Mountpoint,
    /// `allow_other` was asked for by a non-root user without `user_allow_other` in
    /// `/etc/fuse.conf`.
    AllowOther,
    /// mount(2) or umount2(2) was refused (no `CAP_SYS_ADMIN` for this mount).
    Syscall,
    /// `/dev/fuse` may not be opened by this user (fusermount3 opens it with the caller's
    /// rights, so it needs the usual mode 0666).
    Device,
}

/// A step of mounting that needs an operating-system resource, named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountStep {
    /// Looking at the mountpoint (stat, readlink, realpath).
    InspectMountpoint,
    /// Opening `/dev/fuse`.
    OpenDevice,
    /// Creating the pipe and process of the auto-unmount watchdog.
    Watchdog,
    /// Creating the socket pair that receives the fd from fusermount3.
    Socketpair,
    /// Starting or waiting for fusermount3.
    RunFusermount,
    /// Receiving the `/dev/fuse` fd from fusermount3.
    ReceiveFd,
    /// Duplicating an fd.
    DupFd,
}

impl MountStep {
    fn describe(self) -> &'static str {
        match self {
            MountStep::InspectMountpoint => "inspecting the mountpoint",
            MountStep::OpenDevice => "opening /dev/fuse",
            MountStep::Watchdog => "starting the auto-unmount watchdog",
            MountStep::Socketpair => "creating the fusermount3 socket pair",
            MountStep::RunFusermount => "running fusermount3",
            MountStep::ReceiveFd => "receiving the /dev/fuse fd from fusermount3",
            MountStep::DupFd => "duplicating the FUSE fd",
        }
    }
}

/// Why mounting, adopting or unmounting a FUSE filesystem failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum MountError {
    /// `/dev/fuse` does not exist or the kernel has no FUSE support.
    NoDevFuse,
    /// The mountpoint does not exist.
    MountpointMissing(PathBuf),
    /// A directory mountpoint was expected, but the path is something else.
    NotADirectory(PathBuf),
    /// A regular-file mountpoint was expected (single-file source), but the path is something
    /// else.
    NotARegularFile(PathBuf),
    /// The operation was refused for lack of permission.
    PermissionDenied {
        /// The path the operation was about.
        path: PathBuf,
        /// What exactly was refused.
        denial: Denial,
    },
    /// Mounting needs fusermount3 (not root), but it is not installed.
    FusermountMissing,
    /// fusermount3 failed; `message` is the last line it printed.
    Fusermount {
        /// Its exit code, if it exited normally.
        status: Option<i32>,
        /// The last non-empty line it wrote to stderr (may be empty).
        message: String,
    },
    /// Something is already mounted there with FUSE (live or dead).
    AlreadyMounted(PathBuf),
    /// mount(2) failed.
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// The error of the system call.
        source: io::Error,
    },
    /// umount2(2) failed.
    Unmount {
        /// The mountpoint.
        path: PathBuf,
        /// The error of the system call.
        source: io::Error,
    },
    /// A path given for an existing fd is not of the form `/dev/fd/N`.
    BadFdPath(PathBuf),
    /// The fd named by `/dev/fd/N` is not open.
    BadFd {
        /// The fd number.
        fd: i32,
        /// The error of fcntl(2).
        source: io::Error,
    },
    /// A mount option or the mountpoint contains a NUL byte (or, for the fs name, is empty).
    InvalidOption {
        /// The name of the offending option.
        option: &'static str,
    },
    /// An operating-system resource needed for mounting failed.
    Io {
        /// What was being done.
        step: MountStep,
        /// The underlying error.
        source: io::Error,
    },
}

impl MountError {
    /// The errno that best describes this error, for reporting at a protocol edge or as an exit
    /// status.
    pub fn errno(&self) -> i32 {
        match self {
            MountError::NoDevFuse => libc::ENODEV,
            MountError::MountpointMissing(_) => libc::ENOENT,
            MountError::NotADirectory(_) => libc::ENOTDIR,
            MountError::NotARegularFile(_) => libc::EINVAL,
            MountError::PermissionDenied { denial, .. } => match denial {
                Denial::Syscall => libc::EPERM,
                Denial::Mountpoint | Denial::AllowOther | Denial::Device => libc::EACCES,
            },
            MountError::FusermountMissing => libc::ENOENT,
            MountError::Fusermount { .. } => libc::EIO,
            MountError::AlreadyMounted(_) => libc::EBUSY,
            MountError::BadFdPath(_) | MountError::InvalidOption { .. } => libc::EINVAL,
            MountError::Mount { source, .. }
            | MountError::Unmount { source, .. }
            | MountError::BadFd { source, .. }
            | MountError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::NoDevFuse => write!(
                f,
                "/dev/fuse is missing: load the fuse module (modprobe fuse) or pass the device \
                 into the container (--device /dev/fuse)"
            ),
            MountError::MountpointMissing(p) => write!(
                f,
                "mountpoint {} does not exist: create it first (a directory, or a regular file \
                 when serving a single file)",
                p.display()
            ),
            MountError::NotADirectory(p) => write!(
                f,
                "mountpoint {} is not a directory: mount on a directory, or serve a single \
                 regular file to mount on a file",
                p.display()
            ),
            MountError::NotARegularFile(p) => write!(
                f,
                "mountpoint {} is not a regular file: a single-file source must be mounted on a \
                 regular file (create it with touch)",
                p.display()
            ),
            MountError::PermissionDenied { path, denial } => match denial {
                Denial::Mountpoint => write!(
                    f,
                    "permission denied on mountpoint {}: use a mountpoint you own and can write \
                     to, or run as root",
                    path.display()
                ),
                Denial::AllowOther => write!(
                    f,
                    "allow_other is refused for {}: add user_allow_other to /etc/fuse.conf or \
                     drop --allow-other",
                    path.display()
                ),
                Denial::Device => write!(
                    f,
                    "{} is not accessible to this user: give it its usual mode (chmod 0666 {}) \
                     or run as root",
                    path.display(),
                    path.display()
                ),
                Denial::Syscall => write!(
                    f,
                    "not permitted to mount or unmount {}: run as root (CAP_SYS_ADMIN) or \
                     install fuse3 for fusermount3",
                    path.display()
                ),
            },
            MountError::FusermountMissing => write!(
                f,
                "fusermount3 not found in PATH: install fuse3 (apt-get install fuse3) or run as \
                 root"
            ),
            MountError::Fusermount { status, message } => {
                let message = if message.is_empty() {
                    "no message"
                } else {
                    message.as_str()
                };
                match status {
                    Some(code) => write!(
                        f,
                        "fusermount3 failed (exit {code}): {message}: fix the cause it names \
                         and retry"
                    ),
                    None => write!(
                        f,
                        "fusermount3 was killed: {message}: check the system log and retry"
                    ),
                }
            }
            MountError::AlreadyMounted(p) => write!(
                f,
                "{} is already a FUSE mount: unmount it first (fusermount3 -u {})",
                p.display(),
                p.display()
            ),
            MountError::Mount { path, source } => write!(
                f,
                "mounting FUSE on {} failed: {source}: see dmesg for the kernel's reason",
                path.display()
            ),
            MountError::Unmount { path, source } => write!(
                f,
                "unmounting {} failed: {source}: unmount it by hand (umount -l {})",
                path.display(),
                path.display()
            ),
            MountError::BadFdPath(p) => write!(
                f,
                "{} does not name an fd: pass /dev/fd/N for an open FUSE fd N (N >= 3)",
                p.display()
            ),
            MountError::BadFd { fd, source } => write!(
                f,
                "fd {fd} is not usable: {source}: keep it open (without close-on-exec) when \
                 starting the server"
            ),
            MountError::InvalidOption { option } => write!(
                f,
                "mount option {option} is empty or contains a NUL byte: choose another value"
            ),
            MountError::Io { step, source } => write!(
                f,
                "{} failed: {source}: check system limits (open files, processes) and retry",
                step.describe()
            ),
        }
    }
}

impl std::error::Error for MountError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MountError::Mount { source, .. }
            | MountError::Unmount { source, .. }
            | MountError::BadFd { source, .. }
            | MountError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Protocol-level failures of a [`Channel`](crate::channel::Channel) or
/// `SplicePipe` (fuselage-transport-blocking).
///
/// These travel inside [`io::Error`] (see the `From` impl) so that channel I/O has a single
/// error type; recover one with `err.get_ref().and_then(|e| e.downcast_ref::<ChannelError>())`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    /// The receive buffer is smaller than a FUSE in-header.
    BufferTooSmall {
        /// Bytes needed at least.
        needed: usize,
        /// Bytes offered.
        have: usize,
    },
    /// A message is larger than the receive buffer.
    MessageTooLarge {
        /// Length of the message.
        len: usize,
        /// Size of the buffer.
        capacity: usize,
    },
    /// A stream message header announces a length shorter than the header itself.
    BadLength {
        /// The announced length.
        len: u32,
    },
    /// The peer closed the stream in the middle of a message.
    Truncated {
        /// Bytes of the message received.
        got: usize,
        /// Bytes the message should have had.
        expected: usize,
    },
    /// The fd accepted only part of a message that must be written whole.
    ShortWrite {
        /// Bytes written.
        written: usize,
        /// Bytes of the message.
        total: usize,
    },
    /// More message parts than [`MAX_SINK_PARTS`](fuselage_core::MAX_SINK_PARTS).
    TooManyParts {
        /// Number of parts given.
        parts: usize,
    },
    /// The fd is neither a character device nor a SOCK_SEQPACKET/SOCK_STREAM socket.
    UnsupportedFd {
        /// `st_mode & S_IFMT` of the fd.
        file_type: u32,
        /// The socket type (SO_TYPE) if it is a socket.
        socket_type: Option<i32>,
    },
    /// A device-only operation was used on a socket channel.
    NotADevice,
    /// The out-header's `len` does not match header plus data of a spliced reply.
    ReplyLengthMismatch {
        /// The `len` field of the out-header.
        header_len: u32,
        /// Header bytes plus data bytes actually being sent.
        actual: usize,
    },
}

impl ChannelError {
    fn kind(&self) -> io::ErrorKind {
        match self {
            ChannelError::BufferTooSmall { .. }
            | ChannelError::TooManyParts { .. }
            | ChannelError::ReplyLengthMismatch { .. } => io::ErrorKind::InvalidInput,
            ChannelError::MessageTooLarge { .. } | ChannelError::BadLength { .. } => {
                io::ErrorKind::InvalidData
            }
            ChannelError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            ChannelError::ShortWrite { .. } => io::ErrorKind::WriteZero,
            ChannelError::UnsupportedFd { .. } | ChannelError::NotADevice => {
                io::ErrorKind::Unsupported
            }
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::BufferTooSmall { needed, have } => write!(
                f,
                "receive buffer of {have} bytes is too small: offer at least {needed} bytes"
            ),
            ChannelError::MessageTooLarge { len, capacity } => write!(
                f,
                "FUSE message of {len} bytes does not fit the {capacity}-byte buffer: size \
                 buffers from max_write + 4096"
            ),
            ChannelError::BadLength { len } => write!(
                f,
                "FUSE message header announces {len} bytes, less than the header: the peer \
                 speaks a different protocol"
            ),
            ChannelError::Truncated { got, expected } => write!(
                f,
                "peer closed the channel after {got} of {expected} message bytes: the peer \
                 crashed or misframed a message"
            ),
            ChannelError::ShortWrite { written, total } => write!(
                f,
                "only {written} of {total} reply bytes were taken: the channel is broken, \
                 restart the session"
            ),
            ChannelError::TooManyParts { parts } => write!(
                f,
                "{parts} message parts given, at most {} are supported: join small parts first",
                fuselage_core::MAX_SINK_PARTS
            ),
            ChannelError::UnsupportedFd {
                file_type,
                socket_type,
            } => match socket_type {
                Some(t) => write!(
                    f,
                    "socket type {t} cannot carry FUSE: use SOCK_SEQPACKET or SOCK_STREAM"
                ),
                None => write!(
                    f,
                    "fd of file type {file_type:#o} cannot carry FUSE: pass /dev/fuse or a unix \
                     socket"
                ),
            },
            ChannelError::NotADevice => write!(
                f,
                "operation needs a /dev/fuse channel, not a socket: share the channel instead"
            ),
            ChannelError::ReplyLengthMismatch { header_len, actual } => write!(
                f,
                "reply header says {header_len} bytes but {actual} would be sent: set the \
                 out-header len to header plus data"
            ),
        }
    }
}

impl std::error::Error for ChannelError {}

impl From<ChannelError> for io::Error {
    fn from(err: ChannelError) -> io::Error {
        io::Error::new(err.kind(), err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let errors = [
            MountError::NoDevFuse,
            MountError::MountpointMissing("/x".into()),
            MountError::NotADirectory("/x".into()),
            MountError::NotARegularFile("/x".into()),
            MountError::PermissionDenied {
                path: "/x".into(),
                denial: Denial::AllowOther,
            },
            MountError::FusermountMissing,
            MountError::Fusermount {
                status: Some(1),
                message: "fusermount3: mount failed: Operation not permitted".into(),
            },
            MountError::AlreadyMounted("/x".into()),
            MountError::Mount {
                path: "/x".into(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            },
            MountError::BadFdPath("/dev/fd/x".into()),
            MountError::InvalidOption { option: "fs_name" },
        ];
        for e in &errors {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.contains(':'), "no advice in {text}");
        }
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(MountError::AlreadyMounted("/x".into()).errno(), libc::EBUSY);
        assert_eq!(
            MountError::MountpointMissing("/x".into()).errno(),
            libc::ENOENT
        );
        let e = MountError::Mount {
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert_eq!(e.errno(), libc::EINVAL);
    }

    #[test]
    fn channel_error_roundtrips_through_io_error() {
        let err: io::Error = ChannelError::TooManyParts { parts: 9 }.into();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<ChannelError>())
            .cloned();
        assert_eq!(inner, Some(ChannelError::TooManyParts { parts: 9 }));
    }
}
