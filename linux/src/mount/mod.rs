//! Mounting and unmounting FUSE filesystems, and adopting an already-open FUSE fd.
//!
//! [`Mount::new`] checks the mountpoint, then mounts in one of two ways:
//!
//! - **Syscall** (root, or root of a user namespace): open `/dev/fuse` and call mount(2) with
//!   `fd=N,rootmode=...,user_id=...,group_id=...`. With
//!   [`auto_unmount`](MountOptions::auto_unmount) a small watchdog process is forked first; it
//!   holds nothing but the read end of a pipe, and when that pipe reports EOF without a
//!   "clean" byte (the server died, even by SIGKILL) it lazily unmounts the filesystem, so no
//!   dead `ENOTCONN` mount stays behind.
//! - **Fusermount** (unprivileged): run the setuid helper `fusermount3`, which mounts and sends
//!   the `/dev/fuse` fd back over a unix socket (SCM_RIGHTS). With auto_unmount the helper
//!   stays alive until that socket closes and then unmounts a dead filesystem itself.
//!
//! [`Mount::from_fd_path`] adopts `/dev/fd/N` instead: nothing is mounted or unmounted.
//!
//! Dropping a [`Mount`] unmounts lazily (`MNT_DETACH`), so files still open do not block it.
//! Nothing here touches the mounted filesystem itself (no stat of the mount root), so no call
//! can hang on a server that is not answering yet: mount state is read from
//! `/proc/self/mountinfo`.

use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::channel::Channel;
use crate::error::{Denial, MountError, MountStep};

/// Where the fusectl filesystem lives.
pub const FUSECTL_DIR: &str = "/sys/fs/fuse/connections";

/// The environment variable fusermount3 reads the socket fd number from.
const FUSE_COMMFD_ENV: &str = "_FUSE_COMMFD";

/// Options for [`Mount::new`]. Build with struct update syntax:
///
/// ```
/// use fuselage_linux::mount::MountOptions;
/// let opts = MountOptions {
///     subtype: Some("memfs".into()),
///     read_only: true,
///     ..MountOptions::default()
/// };
/// assert_eq!(opts.fs_type(), "fuse.memfs");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// The mount's source as shown in /proc/mounts (default `"fuselage"`).
    pub fs_name: String,
    /// Filesystem subtype: `Some("memfs")` mounts as type `fuse.memfs` (default `None`).
    pub subtype: Option<String>,
    /// Let users other than the mounting one access the filesystem (default `false`).
    pub allow_other: bool,
    /// Let the kernel check permissions from file modes (default `true`).
    pub default_permissions: bool,
    /// Mount read-only (default `false`).
    pub read_only: bool,
    /// Largest read request the kernel may send (default: the kernel's choice).
    pub max_read: Option<u32>,
    /// Remove the mount if the server dies without unmounting (default `true`).
    pub auto_unmount: bool,
    /// The mountpoint must be a regular file (a single-file source) instead of a directory
    /// (default `false`).
    pub expect_file: bool,
    /// The generic mount flags the kernel applies to any filesystem (`nosuid`, `noexec`,
    /// `noatime`, ...; default `nosuid,nodev`). [`read_only`](Self::read_only) is separate.
    pub flags: MountFlags,
}

/// Generic mount flags, as mount(8) spells them (`nosuid`, `nodev`, `noexec`, `noatime`,
/// `nodiratime`, `relatime`, `strictatime`, `lazytime`, `sync`, `dirsync`): the `MS_*` bits of
/// mount(2). The default is `nosuid,nodev`, as for every FUSE mount.
///
/// ```
/// use fuselage_linux::mount::MountFlags;
/// let mut flags = MountFlags::default();
/// assert!(flags.apply_option("noexec") && flags.apply_option("suid"));
/// assert!(!flags.apply_option("allow_other"));
/// assert!(flags.contains(MountFlags::NOEXEC) && !flags.contains(MountFlags::NOSUID));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MountFlags(libc::c_ulong);

impl MountFlags {
    /// Ignore set-user-ID and set-group-ID bits (`nosuid`).
    pub const NOSUID: MountFlags = MountFlags(libc::MS_NOSUID);
    /// No access to device files (`nodev`).
    pub const NODEV: MountFlags = MountFlags(libc::MS_NODEV);
    /// No execution of programs (`noexec`).
    pub const NOEXEC: MountFlags = MountFlags(libc::MS_NOEXEC);
    /// Do not update access times (`noatime`).
    pub const NOATIME: MountFlags = MountFlags(libc::MS_NOATIME);
    /// Do not update directory access times (`nodiratime`).
    pub const NODIRATIME: MountFlags = MountFlags(libc::MS_NODIRATIME);
    /// Update access times relative to modification times (`relatime`).
    pub const RELATIME: MountFlags = MountFlags(libc::MS_RELATIME);
    /// Always update access times (`strictatime`).
    pub const STRICTATIME: MountFlags = MountFlags(libc::MS_STRICTATIME);
    /// Keep time updates in memory only (`lazytime`).
    pub const LAZYTIME: MountFlags = MountFlags(libc::MS_LAZYTIME);
    /// Synchronous writes (`sync`).
    pub const SYNC: MountFlags = MountFlags(libc::MS_SYNCHRONOUS);
    /// Synchronous directory changes (`dirsync`).
    pub const DIRSYNC: MountFlags = MountFlags(libc::MS_DIRSYNC);

    /// Each flag with the word that sets it and the word that clears it.
    const WORDS: [(MountFlags, &'static str, &'static str); 10] = [
        (MountFlags::NOSUID, "nosuid", "suid"),
        (MountFlags::NODEV, "nodev", "dev"),
        (MountFlags::NOEXEC, "noexec", "exec"),
        (MountFlags::NOATIME, "noatime", "atime"),
        (MountFlags::NODIRATIME, "nodiratime", "diratime"),
        (MountFlags::RELATIME, "relatime", "norelatime"),
        (MountFlags::STRICTATIME, "strictatime", "nostrictatime"),
        (MountFlags::LAZYTIME, "lazytime", "nolazytime"),
        (MountFlags::SYNC, "sync", "async"),
        (MountFlags::DIRSYNC, "dirsync", "nodirsync"),
    ];

    /// No flags at all.
    pub const fn empty() -> MountFlags {
        MountFlags(0)
    }

    /// The `MS_*` bits for mount(2).
    pub const fn bits(self) -> libc::c_ulong {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: MountFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: MountFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: MountFlags) {
        self.0 &= !other.0;
    }

    /// Applies one mount(8) option word (`noexec` sets, `exec` clears, ...). Returns false,
    /// changing nothing, when `word` is not one of these flags.
    pub fn apply_option(&mut self, word: &str) -> bool {
        for (flag, set, clear) in MountFlags::WORDS {
            if word == set {
                self.insert(flag);
                return true;
            }
            if word == clear {
                self.remove(flag);
                return true;
            }
        }
        false
    }

    /// The words to give fusermount3 (which mounts `nosuid,nodev` unless told otherwise).
    fn fusermount_words(self) -> impl Iterator<Item = &'static str> {
        MountFlags::WORDS
            .into_iter()
            .filter_map(move |(flag, set, clear)| {
                let default_on = flag == MountFlags::NOSUID || flag == MountFlags::NODEV;
                match (self.contains(flag), default_on) {
                    (true, false) => Some(set),
                    (false, true) => Some(clear),
                    _ => None,
                }
            })
    }
}

impl std::ops::BitOr for MountFlags {
    type Output = MountFlags;
    fn bitor(self, other: MountFlags) -> MountFlags {
        MountFlags(self.0 | other.0)
    }
}

impl Default for MountFlags {
    fn default() -> MountFlags {
        MountFlags(libc::MS_NOSUID | libc::MS_NODEV)
    }
}

impl Default for MountOptions {
    fn default() -> MountOptions {
        MountOptions {
            fs_name: "fuselage".to_owned(),
            subtype: None,
            allow_other: false,
            default_permissions: true,
            read_only: false,
            max_read: None,
            auto_unmount: true,
            expect_file: false,
            flags: MountFlags::default(),
        }
    }
}

impl MountOptions {
    /// The filesystem type passed to mount(2): `fuse` or `fuse.SUBTYPE`.
    pub fn fs_type(&self) -> String {
        match &self.subtype {
            Some(sub) => format!("fuse.{sub}"),
            None => "fuse".to_owned(),
        }
    }

    fn validate(&self) -> Result<(), MountError> {
        if self.fs_name.is_empty() || self.fs_name.contains('\0') {
            return Err(MountError::InvalidOption { option: "fs_name" });
        }
        if self
            .subtype
            .as_ref()
            .is_some_and(|sub| sub.is_empty() || sub.contains('\0'))
        {
            return Err(MountError::InvalidOption { option: "subtype" });
        }
        Ok(())
    }

    /// The kernel's mount data for the syscall path.
    fn kernel_data(&self, fd: RawFd, rootmode: u32, uid: u32, gid: u32) -> String {
        let mut data = format!("fd={fd},rootmode={rootmode:o},user_id={uid},group_id={gid}");
        if self.default_permissions {
            data.push_str(",default_permissions");
        }
        if self.allow_other {
            data.push_str(",allow_other");
        }
        if let Some(max_read) = self.max_read {
            data.push_str(&format!(",max_read={max_read}"));
        }
        data
    }

    /// The `-o` argument for fusermount3.
    fn fusermount_options(&self) -> String {
        let mut opts = format!("fsname={}", escape_option(&self.fs_name));
        if let Some(sub) = &self.subtype {
            opts.push_str(",subtype=");
            opts.push_str(&escape_option(sub));
        }
        if self.default_permissions {
            opts.push_str(",default_permissions");
        }
        if self.allow_other {
            opts.push_str(",allow_other");
        }
        if self.read_only {
            opts.push_str(",ro");
        }
        if let Some(max_read) = self.max_read {
            opts.push_str(&format!(",max_read={max_read}"));
        }
        for word in self.flags.fusermount_words() {
            opts.push(',');
            opts.push_str(word);
        }
        if self.auto_unmount {
            opts.push_str(",auto_unmount");
        }
        opts
    }
}

/// fusermount3 splits `-o` at commas; in fsname/subtype values `\` escapes the next byte.
fn escape_option(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == ',' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How a [`Mount`] came to be, which decides how it is unmounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMethod {
    /// mount(2) by this process (root or user-namespace root); unmounted with umount2(2).
    Syscall,
    /// Mounted by the fusermount3 helper; unmounted with `fusermount3 -u -z`.
    Fusermount,
    /// An fd handed to us (`/dev/fd/N`); nothing to unmount.
    ExistingFd,
}

/// A mounted FUSE filesystem (or an adopted FUSE fd) and the fd that serves it.
///
/// The `Mount` keeps its own fd for its whole life; give a session a duplicate with
/// [`try_clone_fd`](Mount::try_clone_fd) or [`channel`](Mount::channel). Dropping the `Mount`
/// unmounts lazily and never panics.
#[derive(Debug)]
pub struct Mount {
    fd: OwnedFd,
    mountpoint: PathBuf,
    method: MountMethod,
    mounted: bool,
    /// `(major, minor)` of the mount as listed in mountinfo, when known.
    dev: Option<(u32, u32)>,
    watchdog: Option<Watchdog>,
    helper: Option<FusermountHelper>,
}

impl Mount {
    /// Mounts a FUSE filesystem on `mountpoint`.
    ///
    /// The mountpoint must exist and be a directory (a regular file with
    /// [`expect_file`](MountOptions::expect_file)) and must not be a FUSE mount already.
    /// Privileged processes mount with mount(2); when that is not permitted (or `/dev/fuse`
    /// cannot be opened for lack of permission) fusermount3 is used.
    pub fn new(mountpoint: &Path, opts: &MountOptions) -> Result<Mount, MountError> {
        opts.validate()?;
        let resolved = resolve_mountpoint(mountpoint)?;
        let c_path = CString::new(resolved.as_os_str().as_bytes()).map_err(|_| {
            MountError::InvalidOption {
                option: "mountpoint",
            }
        })?;
        if is_fuse_mounted(&resolved) {
            return Err(MountError::AlreadyMounted(resolved));
        }
        let meta = std::fs::symlink_metadata(&resolved).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => MountError::MountpointMissing(mountpoint.to_path_buf()),
            Some(libc::EACCES) | Some(libc::EPERM) => MountError::PermissionDenied {
                path: resolved.clone(),
                denial: Denial::Mountpoint,
            },
            Some(libc::ENOTCONN) => MountError::AlreadyMounted(resolved.clone()),
            Some(libc::ENOTDIR) => MountError::MountpointMissing(mountpoint.to_path_buf()),
            _ => MountError::Io {
                step: MountStep::InspectMountpoint,
                source: e,
            },
        })?;
        let ft = meta.file_type();
        if opts.expect_file {
            if !ft.is_file() {
                return Err(MountError::NotARegularFile(resolved));
            }
        } else if !ft.is_dir() {
            return Err(MountError::NotADirectory(resolved));
        }
        let rootmode = meta.mode() & libc::S_IFMT;

        match open_dev_fuse() {
            Ok(dev) => {
                // `None` is EPERM: fall through to fusermount3.
                if let Some(mount) = mount_syscall(dev, &resolved, &c_path, rootmode, opts)? {
                    return Ok(mount);
                }
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {}
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    return Err(MountError::NoDevFuse);
                }
                _ => {
                    return Err(MountError::Io {
                        step: MountStep::OpenDevice,
                        source: e,
                    });
                }
            },
        }
        mount_fusermount(&resolved, opts)
    }

    /// Adopts the already-open FUSE fd named by `path`, which must be `/dev/fd/N` (or
    /// `/proc/self/fd/N`) with `N >= 3`: a `/dev/fuse` fd the caller mounted, or a connected
    /// unix socket on which the caller plays the kernel. Nothing is mounted or unmounted.
    ///
    /// The `Mount` works on a close-on-exec duplicate of `N`; `N` itself is marked
    /// close-on-exec but stays open and owned by whoever owned it (for an inherited fd: nobody,
    /// it simply lives until exit). Use [`Mount::from_fd`] to hand over an fd you own.
    pub fn from_fd_path(path: impl AsRef<Path>) -> Result<Mount, MountError> {
        let path = path.as_ref();
        let fd = parse_fd_path(path).ok_or_else(|| MountError::BadFdPath(path.to_path_buf()))?;
        // SAFETY: F_GETFD only inspects the fd table; an unopened number yields EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(MountError::BadFd {
                fd,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: F_DUPFD_CLOEXEC creates a new fd that we own; it touches no memory.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(MountError::Io {
                step: MountStep::DupFd,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `dup` was just created by us and is owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        // SAFETY: F_SETFD only changes the fd's close-on-exec flag.
        unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        Ok(Mount::adopted(owned, path.to_path_buf()))
    }

    /// Adopts an owned FUSE fd (a `/dev/fuse` fd or a connected unix socket); `name` is what
    /// [`mountpoint`](Mount::mountpoint) reports. Nothing is mounted or unmounted.
    pub fn from_fd(fd: OwnedFd, name: impl Into<PathBuf>) -> Mount {
        Mount::adopted(fd, name.into())
    }

    fn adopted(fd: OwnedFd, mountpoint: PathBuf) -> Mount {
        Mount {
            fd,
            mountpoint,
            method: MountMethod::ExistingFd,
            mounted: false,
            dev: None,
            watchdog: None,
            helper: None,
        }
    }

    /// The FUSE fd (`/dev/fuse` or socket). Valid for the `Mount`'s whole life.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A close-on-exec duplicate of the FUSE fd, for a session to own.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// A [`Channel`] on a duplicate of the FUSE fd.
    pub fn channel(&self) -> io::Result<Channel> {
        Channel::new(self.try_clone_fd()?)
    }

    /// The mountpoint, absolute and with symlinks resolved (for an adopted fd: the path it was
    /// given as).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// How the filesystem was mounted.
    pub fn method(&self) -> MountMethod {
        self.method
    }

    /// True until [`unmount`](Mount::unmount) succeeded (always false for an adopted fd).
    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// The FUSE connection id (the directory name under `/sys/fs/fuse/connections`), if known.
    pub fn connection_id(&self) -> Option<u32> {
        self.dev.map(|(major, minor)| encode_dev(major, minor))
    }

    /// Unmounts lazily (`MNT_DETACH`: works while files are still open). Idempotent; a
    /// filesystem someone else already unmounted counts as success.
    pub fn unmount(&mut self) -> Result<(), MountError> {
        if !self.mounted {
            return Ok(());
        }
        match self.method {
            MountMethod::ExistingFd => {}
            MountMethod::Syscall => {
                if self.still_mounted() {
                    let c_path = path_cstring(&self.mountpoint)?;
                    match umount_detach(&c_path) {
                        // EINVAL: no longer a mount point (someone unmounted it meanwhile).
                        Err(source) if source.raw_os_error() != Some(libc::EINVAL) => {
                            return Err(unmount_error(&self.mountpoint, source));
                        }
                        _ => {}
                    }
                }
                if let Some(mut watchdog) = self.watchdog.take() {
                    watchdog.finish(true);
                }
            }
            MountMethod::Fusermount => {
                if self.still_mounted() {
                    fusermount_unmount(&self.mountpoint)?;
                }
                if let Some(mut watchdog) = self.watchdog.take() {
                    watchdog.finish(true);
                }
                if let Some(helper) = self.helper.take() {
                    helper.finish();
                }
            }
        }
        self.mounted = false;
        Ok(())
    }

    /// Whether our mount (by device number, when known) is still the top FUSE mount there.
    fn still_mounted(&self) -> bool {
        match (fuse_mount_dev(&self.mountpoint), self.dev) {
            (Ok(found), Some(ours)) => found == Some(ours),
            (Ok(found), None) => found.is_some(),
            // No mountinfo to ask: try the unmount anyway.
            (Err(_), _) => true,
        }
    }
}

impl AsFd for Mount {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.unmount();
        // If unmounting failed, dropping the watchdog/helper without a clean message lets them
        // unmount once our fd is gone.
    }
}

/// Unmounts the FUSE filesystem mounted at `path`, lazily, if there is one (stacked FUSE
/// mounts are all removed); anything that is not a FUSE mount is left alone. Meant for test
/// guards and cleanup; uses umount2(2), or `fusermount3 -u -z` when that is not permitted.
pub fn lazy_unmount(path: &Path) -> Result<(), MountError> {
    let resolved = resolve_for_mountinfo(path);
    let c_path = path_cstring(&resolved)?;
    for _ in 0..16 {
        if !is_fuse_mounted(&resolved) {
            return Ok(());
        }
        match umount_detach(&c_path) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                fusermount_unmount(&resolved)?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(unmount_error(&resolved, e)),
        }
    }
    Ok(())
}

/// True if a FUSE filesystem (type `fuse`, `fuse.*`, `fuseblk`, `fuseblk.*`) is mounted
/// exactly at `path`, alive or dead, according to `/proc/self/mountinfo`. Does not touch the
/// mounted filesystem, so it cannot hang on an unresponsive server.
pub fn is_fuse_mounted(path: &Path) -> bool {
    matches!(fuse_mount_dev(&resolve_for_mountinfo(path)), Ok(Some(_)))
}

/// The FUSE connection id of the filesystem mounted at `mountpoint`: the name of its directory
/// under `/sys/fs/fuse/connections` (the kernel's device number of the mount, whose minor it
/// is for the anonymous devices FUSE uses). Read from mountinfo, so it does not touch the
/// filesystem.
pub fn connection_id(mountpoint: &Path) -> Option<u32> {
    match fuse_mount_dev(&resolve_for_mountinfo(mountpoint)) {
        Ok(Some((major, minor))) => Some(encode_dev(major, minor)),
        _ => None,
    }
}

/// Mounts the fusectl filesystem on [`FUSECTL_DIR`] unless it is mounted already.
///
/// Returns `Ok(true)` when it is mounted (now or before) and `Ok(false)` when this process may
/// not mount it (unprivileged) or the directory is missing; other failures are errors.
pub fn ensure_fusectl() -> io::Result<bool> {
    let dir = Path::new(FUSECTL_DIR);
    if mount_dev_of_type(dir.as_os_str().as_bytes(), FsType::Named(b"fusectl"))?.is_some() {
        return Ok(true);
    }
    // SAFETY: all pointers are NUL-terminated literals; fusectl takes no data.
    let rc = unsafe {
        libc::mount(
            c"fusectl".as_ptr(),
            c"/sys/fs/fuse/connections".as_ptr(),
            c"fusectl".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOENT) | Some(libc::ENODEV) => {
            Ok(false)
        }
        Some(libc::EBUSY) => Ok(true),
        _ => Err(err),
    }
}

// ---------------------------------------------------------------------------------------------
// Mountpoint resolution

/// Makes `path` absolute and resolves symlinks of its parent directories, without touching
/// the last component (which may be an unresponsive FUSE mount root).
fn resolve_for_mountinfo(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => path.to_path_buf(),
        }
    };
    match (abs.parent(), last_normal_component(&abs)) {
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(p) => p.join(name),
            Err(_) => abs,
        },
        _ => std::fs::canonicalize(&abs).unwrap_or(abs),
    }
}

fn last_normal_component(path: &Path) -> Option<&OsStr> {
    match path.components().next_back() {
        Some(Component::Normal(name)) => Some(name),
        _ => None,
    }
}

/// Resolves the mountpoint like the kernel will (following symlinks of the last component
/// too), while never stat-ing a FUSE mount root.
fn resolve_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let mut current = resolve_for_mountinfo(path);
    for _ in 0..40 {
        if is_fuse_mounted(&current) {
            return Ok(current);
        }
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(|e| MountError::Io {
                    step: MountStep::InspectMountpoint,
                    source: e,
                })?;
                let base = current.parent().map(Path::to_path_buf).unwrap_or_default();
                current = resolve_for_mountinfo(&base.join(target));
            }
            _ => return Ok(current),
        }
    }
    Err(MountError::Io {
        step: MountStep::InspectMountpoint,
        source: io::Error::from_raw_os_error(libc::ELOOP),
    })
}

fn path_cstring(path: &Path) -> Result<CString, MountError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| MountError::InvalidOption {
        option: "mountpoint",
    })
}

fn parse_fd_path(path: &Path) -> Option<RawFd> {
    let text = path.to_str()?;
    let digits = text
        .strip_prefix("/dev/fd/")
        .or_else(|| text.strip_prefix("/proc/self/fd/"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fd: RawFd = digits.parse().ok()?;
    (fd >= 3).then_some(fd)
}

// ---------------------------------------------------------------------------------------------
// Syscall path

fn open_dev_fuse() -> io::Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated literal; the returned fd is checked.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened by us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount(2). `Ok(None)` means EPERM: the caller falls back to fusermount3.
fn mount_syscall(
    dev: OwnedFd,
    resolved: &Path,
    c_path: &CStr,
    rootmode: u32,
    opts: &MountOptions,
) -> Result<Option<Mount>, MountError> {
    let source = CString::new(opts.fs_name.as_bytes())
        .map_err(|_| MountError::InvalidOption { option: "fs_name" })?;
    let fs_type = CString::new(opts.fs_type())
        .map_err(|_| MountError::InvalidOption { option: "subtype" })?;
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let data = CString::new(opts.kernel_data(dev.as_raw_fd(), rootmode, uid, gid))
        .map_err(|_| MountError::InvalidOption { option: "fs_name" })?;
    let mut flags = opts.flags.bits();
    if opts.read_only {
        flags |= libc::MS_RDONLY;
    }

    // The watchdog exists before the mount does, so there is no moment in which the mount is
    // unguarded.
    let mut watchdog = if opts.auto_unmount {
        Some(
            Watchdog::spawn(c_path, OnDeath::Umount).map_err(|e| MountError::Io {
                step: MountStep::Watchdog,
                source: e,
            })?,
        )
    } else {
        None
    };

    // SAFETY: all pointers are NUL-terminated CStrings that outlive the call; `data` is the
    // option string fuse parses.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            c_path.as_ptr(),
            fs_type.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if let Some(mut w) = watchdog.take() {
            w.finish(true);
        }
        return match err.raw_os_error() {
            Some(libc::EPERM) => Ok(None),
            Some(libc::EACCES) => Err(MountError::PermissionDenied {
                path: resolved.to_path_buf(),
                denial: Denial::Mountpoint,
            }),
            _ => Err(MountError::Mount {
                path: resolved.to_path_buf(),
                source: err,
            }),
        };
    }
    let dev_id = fuse_mount_dev(resolved).ok().flatten();
    if let Some(w) = watchdog.as_mut() {
        // If arming fails the watchdog only loses its safety net; the mount itself is fine.
        let _ = w.arm(dev_id);
    }
    Ok(Some(Mount {
        fd: dev,
        mountpoint: resolved.to_path_buf(),
        method: MountMethod::Syscall,
        mounted: true,
        dev: dev_id,
        watchdog,
        helper: None,
    }))
}

fn umount_detach(c_path: &CStr) -> io::Result<()> {
    loop {
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call.
        let rc =
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn unmount_error(path: &Path, source: io::Error) -> MountError {
    if source.raw_os_error() == Some(libc::EPERM) {
        MountError::PermissionDenied {
            path: path.to_path_buf(),
            denial: Denial::Syscall,
        }
    } else {
        MountError::Unmount {
            path: path.to_path_buf(),
            source,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watchdog

/// Message bytes on the watchdog pipe.
const WATCHDOG_CLEAN: u8 = b'C';
const WATCHDOG_ARMED: u8 = b'A';
const WATCHDOG_ARMED_UNKNOWN_DEV: u8 = b'U';

/// What the watchdog does when this process dies with the filesystem still mounted.
#[derive(Debug, Clone, Copy)]
enum OnDeath<'a> {
    /// umount2(MNT_DETACH) (we mounted with mount(2), so we may unmount).
    Umount,
    /// Exec `fusermount3 -u -z -q -- MOUNTPOINT` (an unprivileged mount).
    Fusermount(&'a Path),
}

/// A `fusermount3 -u -z -q -- PATH` command line, built before fork so the watchdog can exec
/// it without allocating.
struct ExecLine {
    program: CString,
    _args: Vec<CString>,
    /// NULL-terminated pointers into `_args`, whose heap buffers do not move.
    argv: Vec<*const libc::c_char>,
}

impl ExecLine {
    fn fusermount_unmount(bin: &Path, c_path: &CStr) -> io::Result<ExecLine> {
        let program = CString::new(bin.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let args: Vec<CString> = [c"fusermount3", c"-u", c"-z", c"-q", c"--", c_path]
            .iter()
            .map(|a| CString::from(*a))
            .collect();
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        Ok(ExecLine {
            program,
            _args: args,
            argv,
        })
    }
}

/// A forked process that unmounts the filesystem lazily if this process dies without saying
/// goodbye (even by SIGKILL).
///
/// The watchdog holds nothing but the read end of a pipe (in particular not the `/dev/fuse`
/// fd, or the connection could never abort). Protocol on the pipe, parent to child: `A` +
/// major (u32 LE) + minor (u32 LE) once mounted ("guard this mount"), or `U` if the device
/// number is unknown; `C` = "clean shutdown, we unmounted; exit". EOF without `C` means we
/// died: the watchdog unmounts if the top FUSE mount at the path is still the guarded one.
#[derive(Debug)]
struct Watchdog {
    pid: libc::pid_t,
    pipe: Option<OwnedFd>,
}

impl Watchdog {
    fn spawn(c_path: &CStr, on_death: OnDeath<'_>) -> io::Result<Watchdog> {
        let raw_path = c_path.to_bytes();
        let exec = match on_death {
            OnDeath::Umount => None,
            OnDeath::Fusermount(bin) => Some(ExecLine::fusermount_unmount(bin, c_path)?),
        };
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Above 2, so the child can put /dev/null on its stdio without hitting it.
        let read = at_least_3(read)?;
        // Everything the child needs is prepared here: after fork it may only make
        // async-signal-safe calls (no allocation, no locks, no panics).
        let read_raw = read.as_raw_fd();
        let max_fd = max_fd_hint();
        // SAFETY: fork has no memory preconditions; the child below restricts itself to
        // async-signal-safe system calls on data prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            watchdog_main(read_raw, max_fd, c_path, raw_path, exec.as_ref());
        }
        drop(read);
        Ok(Watchdog {
            pid,
            pipe: Some(write),
        })
    }

    fn arm(&mut self, dev: Option<(u32, u32)>) -> io::Result<()> {
        let mut msg = [0u8; 9];
        let len = match dev {
            Some((major, minor)) => {
                msg[0] = WATCHDOG_ARMED;
                msg[1..5].copy_from_slice(&major.to_le_bytes());
                msg[5..9].copy_from_slice(&minor.to_le_bytes());
                9
            }
            None => {
                msg[0] = WATCHDOG_ARMED_UNKNOWN_DEV;
                1
            }
        };
        self.write(&msg[..len])
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let Some(pipe) = &self.pipe else {
            return Ok(());
        };
        loop {
            // SAFETY: `bytes` is valid for reads of its length; at most 9 bytes, so the pipe
            // write is atomic (<= PIPE_BUF).
            let n = unsafe { libc::write(pipe.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Ends the watchdog: `clean` tells it not to unmount. Reaps it (bounded wait).
    fn finish(&mut self, clean: bool) {
        if clean {
            let _ = self.write(&[WATCHDOG_CLEAN]);
        }
        self.pipe = None;
        if self.pid > 0 {
            reap(self.pid, Duration::from_secs(2));
            self.pid = 0;
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Not finished cleanly: EOF lets the watchdog unmount if the mount is still there.
        self.finish(false);
    }
}

/// waitpid with a deadline, so a stuck child never blocks us for long.
fn reap(pid: libc::pid_t, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write to; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc != 0 {
            return; // reaped, or not our child any more (ECHILD)
        }
        if Instant::now() >= deadline {
            return; // leave it; it exits on its own and init reaps it after us
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn max_fd_hint() -> libc::c_uint {
    // SAFETY: an all-zero rlimit is valid and getrlimit only writes into it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid rlimit to write to.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20) as libc::c_uint
    } else {
        1024
    }
}

/// The watchdog process. Only async-signal-safe system calls; never returns.
fn watchdog_main(
    read_fd: RawFd,
    max_fd: libc::c_uint,
    c_path: &CStr,
    raw_path: &[u8],
    exec: Option<&ExecLine>,
) -> ! {
    close_all_except(read_fd, max_fd);
    // SAFETY: open, dup2, close, setsid, signal and chdir are async-signal-safe; the only
    // pointers are NUL-terminated literals.
    unsafe {
        // stdio on /dev/null, so nothing we exec writes into a file that took fd 0..2.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for std_fd in 0..3 {
                if null != std_fd {
                    libc::dup2(null, std_fd);
                }
            }
            if null > 2 {
                libc::close(null);
            }
        }
        libc::setsid();
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::chdir(c"/".as_ptr());
    }
    // Read messages until EOF.
    let mut armed: Option<Option<(u32, u32)>> = None;
    let mut pending = [0u8; 9];
    let mut have = 0usize;
    let mut buf = [0u8; 16];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        if n < 0 {
            // Reading errno is async-signal-safe and allocates nothing.
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        for &byte in buf.iter().take(n as usize) {
            if have > 0 {
                if let Some(slot) = pending.get_mut(have) {
                    *slot = byte;
                }
                have += 1;
                if have == pending.len() {
                    let major =
                        u32::from_le_bytes([pending[1], pending[2], pending[3], pending[4]]);
                    let minor =
                        u32::from_le_bytes([pending[5], pending[6], pending[7], pending[8]]);
                    armed = Some(Some((major, minor)));
                    have = 0;
                }
                continue;
            }
            match byte {
                WATCHDOG_CLEAN => exit_child(0),
                WATCHDOG_ARMED => {
                    pending[0] = byte;
                    have = 1;
                }
                WATCHDOG_ARMED_UNKNOWN_DEV => armed = Some(None),
                _ => exit_child(1),
            }
        }
    }
    // The parent is gone without a clean goodbye.
    let unmount = match armed {
        None => false,
        Some(None) => true,
        Some(Some(dev)) => matches!(
            mount_dev_of_type(raw_path, FsType::Fuse),
            Ok(Some(found)) if found == dev
        ),
    };
    if !unmount {
        exit_child(0);
    }
    match exec {
        None => {
            // SAFETY: `c_path` is a NUL-terminated string prepared before the fork.
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
            exit_child(0)
        }
        Some(line) => {
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            // SAFETY: execve is async-signal-safe; `program` and the NULL-terminated `argv`
            // were prepared before the fork and stay alive (this process only execs or exits).
            unsafe { libc::execve(line.program.as_ptr(), line.argv.as_ptr(), envp.as_ptr()) };
            exit_child(1)
        }
    }
}

fn close_all_except(keep: RawFd, max_fd: libc::c_uint) {
    let keep = keep.max(0) as libc::c_uint;
    if keep > 0 {
        close_range(0, keep - 1, max_fd);
    }
    close_range(keep + 1, libc::c_uint::MAX, max_fd);
}

fn close_range(first: libc::c_uint, last: libc::c_uint, max_fd: libc::c_uint) {
    // SAFETY: close_range only closes fds of this (forked, single-threaded) process.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
    if rc == 0 {
        return;
    }
    let mut fd = first;
    while fd <= last && fd < max_fd {
        // SAFETY: close is async-signal-safe; closing an unused number yields EBADF only.
        unsafe { libc::close(fd as RawFd) };
        fd += 1;
    }
}

fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and skips atexit handlers and stdio flushing, which
    // belong to the parent.
    unsafe { libc::_exit(code) }
}

// ---------------------------------------------------------------------------------------------
// fusermount3 path

/// The fusermount3 process kept alive for auto_unmount, with our end of its socket.
#[derive(Debug)]
struct FusermountHelper {
    socket: OwnedFd,
    child: Child,
}

impl FusermountHelper {
    /// Closes the socket (the helper then checks the mount and exits) and reaps it.
    fn finish(self) {
        let FusermountHelper { socket, mut child } = self;
        drop(socket);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

fn find_fusermount() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter()
        .map(|d| d.join("fusermount3"))
        .find(|p| std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false))
}

fn mount_fusermount(resolved: &Path, opts: &MountOptions) -> Result<Mount, MountError> {
    let bin = find_fusermount().ok_or(MountError::FusermountMissing)?;
    let c_path = path_cstring(resolved)?;
    // fusermount3's own auto_unmount is not enough: before libfuse 3.15 its "is the server
    // dead" probe runs as root and gets EACCES instead of ENOTCONN unless allow_other is set,
    // so it never unmounts. Our watchdog runs `fusermount3 -u -z` as the user instead; both
    // may race harmlessly.
    let mut watchdog = if opts.auto_unmount {
        Some(
            Watchdog::spawn(&c_path, OnDeath::Fusermount(&bin)).map_err(|e| MountError::Io {
                step: MountStep::Watchdog,
                source: e,
            })?,
        )
    } else {
        None
    };
    let (ours, theirs) = socketpair_stream().map_err(|e| MountError::Io {
        step: MountStep::Socketpair,
        source: e,
    })?;
    let their_raw = theirs.as_raw_fd();
    let mut cmd = Command::new(&bin);
    cmd.arg("-o")
        .arg(opts.fusermount_options())
        .arg("--")
        .arg(resolved)
        .env(FUSE_COMMFD_ENV, their_raw.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and only calls fcntl, which is
    // async-signal-safe; it makes the helper's end of the socket survive exec (it is >= 3, so
    // the stdio redirections cannot clobber it).
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(their_raw, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => MountError::FusermountMissing,
        _ => MountError::Io {
            step: MountStep::RunFusermount,
            source: e,
        },
    })?;
    // Our copy of the helper's end must go, or we would never see EOF if the helper fails.
    drop(theirs);
    let received = receive_fd(ours.as_fd());
    let fd = match received {
        Ok(Some(fd)) => fd,
        Ok(None) | Err(_) => {
            // The helper has exited or is about to (it closed the socket): read what it said
            // until EOF, then reap it.
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let status = child.wait().ok();
            // A helper that succeeded but whose fd we could not receive: our side failed.
            match received {
                Err(e) if status.is_some_and(|s| s.success()) => {
                    return Err(MountError::Io {
                        step: MountStep::ReceiveFd,
                        source: e,
                    });
                }
                _ => {}
            }
            return Err(classify_fusermount_failure(
                resolved,
                status.and_then(|s| s.code()),
                &stderr,
            ));
        }
    };
    // Nothing more to read from the helper; do not keep its stderr pipe.
    drop(child.stderr.take());
    let dev = fuse_mount_dev(resolved).ok().flatten();
    if let Some(w) = watchdog.as_mut() {
        // If arming fails the watchdog only loses its safety net; the mount itself is fine.
        let _ = w.arm(dev);
    }
    let helper = if opts.auto_unmount {
        // The helper waits on the socket and unmounts a dead mount when it closes.
        Some(FusermountHelper {
            socket: ours,
            child,
        })
    } else {
        drop(ours);
        let _ = child.wait();
        None
    };
    Ok(Mount {
        fd,
        mountpoint: resolved.to_path_buf(),
        method: MountMethod::Fusermount,
        mounted: true,
        dev,
        watchdog,
        helper,
    })
}

fn classify_fusermount_failure(path: &Path, status: Option<i32>, stderr: &str) -> MountError {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    let denied = |denial| MountError::PermissionDenied {
        path: path.to_path_buf(),
        denial,
    };
    if last.contains("/dev/fuse") {
        if last.contains("Permission denied") || last.contains("Operation not permitted") {
            return MountError::PermissionDenied {
                path: PathBuf::from("/dev/fuse"),
                denial: Denial::Device,
            };
        }
        if last.contains("No such file") || last.contains("No such device") {
            return MountError::NoDevFuse;
        }
    }
    if last.contains("fuse device not found") {
        MountError::NoDevFuse
    } else if last.contains("user_allow_other") {
        denied(Denial::AllowOther)
    } else if last.contains("no write access")
        || last.contains("Permission denied")
        || last.contains("not owned")
    {
        denied(Denial::Mountpoint)
    } else {
        MountError::Fusermount {
            status,
            message: last,
        }
    }
}

fn fusermount_unmount(path: &Path) -> Result<(), MountError> {
    let bin = find_fusermount().ok_or(MountError::FusermountMissing)?;
    let out = Command::new(bin)
        .args(["-u", "-z", "--"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| MountError::Io {
            step: MountStep::RunFusermount,
            source: e,
        })?;
    if out.status.success() || !is_fuse_mounted(path) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(classify_fusermount_failure(
        path,
        out.status.code(),
        &stderr,
    ))
}

fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Keep both >= 3 so that redirecting a child's stdio can never land on them.
    Ok((at_least_3(a)?, at_least_3(b)?))
}

fn at_least_3(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC creates a new fd; it touches no memory.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` was just created by us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Receives one fd sent with SCM_RIGHTS (and one data byte). `Ok(None)` on EOF.
fn receive_fd(socket: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // Control buffer for one int, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let control_len = space.min(std::mem::size_of_val(&control));
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len as _;
    let n = loop {
        // SAFETY: `msg` points at live `iov`/`control` buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    if n == 0 {
        return Ok(None);
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    let mut found = None;
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and inside the control buffer.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: the data of an SCM_RIGHTS message holds at least one int (we offered room
            // for exactly one); read_unaligned because CMSG_DATA is only byte-aligned in type.
            let fd =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>()) };
            // SAFETY: the kernel just installed `fd` in our table for us.
            found = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            break;
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 && found.is_none() {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// /proc/self/mountinfo

/// The kernel's dev_t encoding (what fusectl names its directories by).
fn encode_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xF_FFFF)
}

/// `(major, minor)` of the top FUSE mount at `path` (already resolved), from mountinfo.
fn fuse_mount_dev(path: &Path) -> io::Result<Option<(u32, u32)>> {
    mount_dev_of_type(path.as_os_str().as_bytes(), FsType::Fuse)
}

/// Which filesystem types a mountinfo scan accepts.
#[derive(Debug, Clone, Copy)]
enum FsType<'a> {
    /// `fuse`, `fuseblk` and their `.subtype` forms.
    Fuse,
    /// Exactly this type.
    Named(&'a [u8]),
}

/// Scans `/proc/self/mountinfo` for the last (top) mount of `want` type at `target`.
///
/// Allocation-free and panic-free with raw open/read, so the watchdog can call it after fork.
fn mount_dev_of_type(target: &[u8], want: FsType<'_>) -> io::Result<Option<(u32, u32)>> {
    // SAFETY: the path is a NUL-terminated literal; the fd is checked and closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/mountinfo".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut scan = MountinfoScan::new(target, want);
    let mut buf = [0u8; 4096];
    let result = loop {
        // SAFETY: `buf` is valid for writes of its length; `fd` is open.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break Ok(scan.finish());
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break Err(err);
        }
        scan.feed(buf.get(..n as usize).unwrap_or(&[]));
    };
    // SAFETY: `fd` was opened above and is closed exactly once.
    unsafe { libc::close(fd) };
    result
}

/// A streaming matcher over mountinfo lines:
/// `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`.
/// Mount points are octal-escaped (`\040` for space); they are unescaped on the fly and
/// compared with the target.
struct MountinfoScan<'a> {
    target: &'a [u8],
    want: FsType<'a>,
    field: usize,
    field_len: usize,
    first_byte: u8,
    fstype_field: Option<usize>,
    mp_pos: usize,
    mp_ok: bool,
    esc_digits: u8,
    esc_value: u32,
    dev: [u8; 24],
    dev_len: usize,
    fstype: [u8; 32],
    fstype_len: usize,
    found: Option<(u32, u32)>,
}

impl<'a> MountinfoScan<'a> {
    fn new(target: &'a [u8], want: FsType<'a>) -> MountinfoScan<'a> {
        MountinfoScan {
            target,
            want,
            field: 0,
            field_len: 0,
            first_byte: 0,
            fstype_field: None,
            mp_pos: 0,
            mp_ok: true,
            esc_digits: 0,
            esc_value: 0,
            dev: [0; 24],
            dev_len: 0,
            fstype: [0; 32],
            fstype_len: 0,
            found: None,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'\n' => {
                    self.end_field();
                    self.end_line();
                }
                b' ' => {
                    self.end_field();
                    self.field += 1;
                }
                _ => self.push(b),
            }
        }
    }

    fn finish(mut self) -> Option<(u32, u32)> {
        if self.field > 0 || self.field_len > 0 {
            self.end_field();
            self.end_line();
        }
        self.found
    }

    fn push(&mut self, b: u8) {
        if self.field_len == 0 {
            self.first_byte = b;
        }
        self.field_len += 1;
        match self.field {
            2 => {
                if let Some(slot) = self.dev.get_mut(self.dev_len) {
                    *slot = b;
                }
                self.dev_len += 1;
            }
            4 => self.push_mountpoint(b),
            f if Some(f) == self.fstype_field => {
                if let Some(slot) = self.fstype.get_mut(self.fstype_len) {
                    *slot = b;
                }
                self.fstype_len += 1;
            }
            _ => {}
        }
    }

    fn push_mountpoint(&mut self, b: u8) {
        if self.esc_digits > 0 {
            if (b'0'..=b'7').contains(&b) {
                self.esc_value = self.esc_value * 8 + u32::from(b - b'0');
                self.esc_digits += 1;
                if self.esc_digits == 4 {
                    self.esc_digits = 0;
                    self.match_mountpoint_byte(self.esc_value as u8);
                }
            } else {
                // Not an escape the kernel writes: compare literally.
                self.esc_digits = 0;
                self.mp_ok = false;
            }
            return;
        }
        if b == b'\\' {
            self.esc_digits = 1;
            self.esc_value = 0;
            return;
        }
        self.match_mountpoint_byte(b);
    }

    fn match_mountpoint_byte(&mut self, b: u8) {
        if self.mp_ok && self.target.get(self.mp_pos) == Some(&b) {
            self.mp_pos += 1;
        } else {
            self.mp_ok = false;
        }
    }

    fn end_field(&mut self) {
        if self.field == 4 {
            self.mp_ok = self.mp_ok && self.esc_digits == 0 && self.mp_pos == self.target.len();
        }
        if self.field >= 6
            && self.fstype_field.is_none()
            && self.field_len == 1
            && self.first_byte == b'-'
        {
            self.fstype_field = Some(self.field + 1);
        }
        self.field_len = 0;
    }

    fn end_line(&mut self) {
        let complete = self.field >= 4 && self.fstype_field.is_some();
        if complete
            && self.mp_ok
            && self.type_matches()
            && let Some(dev) = parse_dev(self.dev.get(..self.dev_len).unwrap_or(&[]))
        {
            self.found = Some(dev);
        }
        self.field = 0;
        self.field_len = 0;
        self.fstype_field = None;
        self.mp_pos = 0;
        self.mp_ok = true;
        self.esc_digits = 0;
        self.dev_len = 0;
        self.fstype_len = 0;
    }

    fn type_matches(&self) -> bool {
        let Some(ty) = self.fstype.get(..self.fstype_len) else {
            return false; // longer than our buffer: not a type we look for
        };
        match self.want {
            FsType::Fuse => {
                ty == b"fuse"
                    || ty == b"fuseblk"
                    || ty.starts_with(b"fuse.")
                    || ty.starts_with(b"fuseblk.")
            }
            FsType::Named(name) => ty == name,
        }
    }
}

fn parse_dev(text: &[u8]) -> Option<(u32, u32)> {
    let mut parts = text.splitn(2, |&b| b == b':');
    let major = parse_u32(parts.next()?)?;
    let minor = parse_u32(parts.next()?)?;
    Some((major, minor))
}

fn parse_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
36 27 0:57 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:5 - fuse.memfs fuselage rw,user_id=0\n\
37 27 0:58 / /tmp/plain rw,nosuid,nodev - fuse fuselage rw\n\
38 36 0:59 / /tmp/a\\040b rw - tmpfs tmpfs rw\n\
39 27 0:60 / /sys/fs/fuse/connections rw - fusectl fusectl rw\n\
40 27 0:61 / /tmp/plain rw master:1 - fuse.other x rw\n\
41 27 0:62 / /tmp/ctl rw - fusectl none rw\n";

    fn scan(data: &[u8], target: &[u8], want: FsType<'_>, chunk: usize) -> Option<(u32, u32)> {
        let mut s = MountinfoScan::new(target, want);
        for piece in data.chunks(chunk) {
            s.feed(piece);
        }
        s.finish()
    }

    #[test]
    fn mountinfo_scan_matches_exact_unescaped_paths() {
        for chunk in [1, 3, 7, 4096] {
            assert_eq!(
                scan(SAMPLE, b"/tmp/a b", FsType::Fuse, chunk),
                Some((0, 57))
            );
            assert_eq!(
                scan(SAMPLE, b"/tmp/plain", FsType::Fuse, chunk),
                Some((0, 61))
            );
            assert_eq!(scan(SAMPLE, b"/tmp/a", FsType::Fuse, chunk), None);
            assert_eq!(scan(SAMPLE, b"/tmp/a\\040b", FsType::Fuse, chunk), None);
            assert_eq!(scan(SAMPLE, b"/proc", FsType::Fuse, chunk), None);
            assert_eq!(scan(SAMPLE, b"/tmp/ctl", FsType::Fuse, chunk), None);
            assert_eq!(
                scan(
                    SAMPLE,
                    b"/sys/fs/fuse/connections",
                    FsType::Named(b"fusectl"),
                    chunk
                ),
                Some((0, 60))
            );
        }
        // No trailing newline.
        assert_eq!(
            scan(b"1 2 0:9 / /m rw - fuse x rw", b"/m", FsType::Fuse, 5),
            Some((0, 9))
        );
    }

    #[test]
    fn live_mountinfo_is_readable() {
        assert!(
            mount_dev_of_type(b"/proc", FsType::Named(b"proc"))
                .unwrap()
                .is_some()
        );
        assert!(!is_fuse_mounted(Path::new("/proc")));
    }

    #[test]
    fn fd_paths() {
        assert_eq!(parse_fd_path(Path::new("/dev/fd/7")), Some(7));
        assert_eq!(parse_fd_path(Path::new("/proc/self/fd/12")), Some(12));
        assert_eq!(parse_fd_path(Path::new("/dev/fd/2")), None);
        assert_eq!(parse_fd_path(Path::new("/dev/fd/-4")), None);
        assert_eq!(parse_fd_path(Path::new("/dev/fd/")), None);
        assert_eq!(parse_fd_path(Path::new("/dev/fuse")), None);
        assert!(matches!(
            Mount::from_fd_path("/dev/fd/x"),
            Err(MountError::BadFdPath(_))
        ));
        assert!(matches!(
            Mount::from_fd_path("/dev/fd/999999"),
            Err(MountError::BadFd { fd: 999_999, .. })
        ));
    }

    #[test]
    fn from_fd_path_adopts_a_socket() {
        let (a, _b) = socketpair_stream().unwrap();
        let path = format!("/dev/fd/{}", a.as_raw_fd());
        let mut m = Mount::from_fd_path(&path).unwrap();
        assert_eq!(m.method(), MountMethod::ExistingFd);
        assert_eq!(m.mountpoint(), Path::new(&path));
        assert!(!m.is_mounted());
        let channel = m.channel().unwrap();
        assert_eq!(channel.kind(), crate::channel::ChannelKind::Stream);
        m.unmount().unwrap();
        // The original fd is still open and now close-on-exec.
        // SAFETY: F_GETFD only inspects the fd table.
        let flags = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0);
    }

    #[test]
    fn options_render() {
        let opts = MountOptions {
            fs_name: "a,b\\c".into(),
            subtype: Some("memfs".into()),
            allow_other: true,
            read_only: true,
            max_read: Some(131072),
            ..MountOptions::default()
        };
        assert_eq!(opts.fs_type(), "fuse.memfs");
        assert_eq!(
            opts.kernel_data(5, 0o040000, 1000, 100),
            "fd=5,rootmode=40000,user_id=1000,group_id=100,default_permissions,allow_other,\
             max_read=131072"
        );
        assert_eq!(
            opts.fusermount_options(),
            "fsname=a\\,b\\\\c,subtype=memfs,default_permissions,allow_other,ro,\
             max_read=131072,auto_unmount"
        );
        let mut flags = MountFlags::default();
        for word in ["dev", "noexec", "noatime", "sync"] {
            assert!(flags.apply_option(word), "{word}");
        }
        let opts = MountOptions {
            flags,
            auto_unmount: false,
            ..MountOptions::default()
        };
        assert_eq!(
            opts.fusermount_options(),
            "fsname=fuselage,default_permissions,dev,noexec,noatime,sync"
        );
        assert_eq!(
            flags.bits(),
            libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NOATIME | libc::MS_SYNCHRONOUS
        );
        let bad = MountOptions {
            fs_name: String::new(),
            ..MountOptions::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(MountError::InvalidOption { option: "fs_name" })
        ));
    }

    #[test]
    fn fusermount_failures_are_classified() {
        let p = Path::new("/m");
        assert!(matches!(
            classify_fusermount_failure(
                p,
                Some(1),
                "fusermount3: option allow_other only allowed if 'user_allow_other' is set in \
                 /etc/fuse.conf\n"
            ),
            MountError::PermissionDenied {
                denial: Denial::AllowOther,
                ..
            }
        ));
        assert!(matches!(
            classify_fusermount_failure(
                p,
                Some(1),
                "fusermount3: user has no write access to mountpoint /m\n"
            ),
            MountError::PermissionDenied {
                denial: Denial::Mountpoint,
                ..
            }
        ));
        assert!(matches!(
            classify_fusermount_failure(
                p,
                Some(1),
                "fusermount3: failed to open /dev/fuse: Permission denied\n"
            ),
            MountError::PermissionDenied {
                denial: Denial::Device,
                ..
            }
        ));
        match classify_fusermount_failure(
            p,
            Some(1),
            "x\nfusermount3: mount failed: Invalid argument\n\n",
        ) {
            MountError::Fusermount { status, message } => {
                assert_eq!(status, Some(1));
                assert_eq!(message, "fusermount3: mount failed: Invalid argument");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolve_for_mountinfo_makes_absolute_and_canonical_parent() {
        let dir = tempfile::tempdir().unwrap();
        let canon = std::fs::canonicalize(dir.path()).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&canon, &link).unwrap();
        assert_eq!(resolve_for_mountinfo(&link.join("x")), canon.join("x"));
        std::fs::create_dir(canon.join("real")).unwrap();
        std::os::unix::fs::symlink("real", canon.join("alias")).unwrap();
        assert_eq!(
            resolve_mountpoint(&canon.join("alias")).unwrap(),
            canon.join("real")
        );
    }

    #[test]
    fn mountpoint_checks_come_before_any_privilege() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            Mount::new(&missing, &MountOptions::default()),
            Err(MountError::MountpointMissing(_))
        ));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            Mount::new(&file, &MountOptions::default()),
            Err(MountError::NotADirectory(_))
        ));
        let opts = MountOptions {
            expect_file: true,
            ..MountOptions::default()
        };
        assert!(matches!(
            Mount::new(dir.path(), &opts),
            Err(MountError::NotARegularFile(_))
        ));
    }
}
