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
//!
//! The submodules follow those steps: `resolve` (mountpoint paths), `syscall` (mount(2) and
//! umount2(2)), `watchdog` (auto-unmount of syscall mounts), `fusermount` (the fusermount3
//! helper) and `mountinfo` (reading `/proc/self/mountinfo`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::channel::Channel;
use crate::error::{Denial, MountError, MountStep};

mod fusermount;
mod mountinfo;
mod resolve;
mod syscall;
mod watchdog;

use fusermount::{FusermountHelper, fusermount_unmount, mount_fusermount};
use mountinfo::{FsType, encode_dev, fuse_mount_dev, mount_dev_of_type};
use resolve::{parse_fd_path, path_cstring, resolve_for_mountinfo, resolve_mountpoint};
use syscall::{mount_syscall, open_dev_fuse, umount_detach, unmount_error};
use watchdog::Watchdog;

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

    /// Opens the readahead window of the mount's backing device
    /// (`/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`) for [`ReadaheadKnob::set`].
    ///
    /// The kernel gives every FUSE mount the block layer's default of 128 KiB and INIT can
    /// only lower it (`max_readahead`), so sequential reads travel as 128 KiB requests even
    /// when `max_pages` allows 1 MiB. Only root may raise it. Open it before confining the
    /// process (a sandbox may refuse `openat` later) and set it after INIT (the kernel
    /// applies INIT's `max_readahead` then, and would undo a larger value set before).
    /// Unknown device (an adopted fd): `ENODEV`.
    pub fn readahead_knob(&self) -> io::Result<ReadaheadKnob> {
        let (major, minor) = self
            .dev
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        Ok(ReadaheadKnob { file })
    }

    /// Opens what [`MountPresence::still_mounted`] needs to tell, later and from anywhere,
    /// whether this mount is still at its mountpoint: the mountpoint's parent directory
    /// (`O_PATH`) and the device number. Open it before the process leaves the host's mount
    /// namespace (`--sandbox-namespace`), after which neither the mountpoint nor
    /// `/proc/self/mountinfo` shows the host's mounts. The descriptor pins the parent
    /// directory's mount only, never the FUSE mount. Unknown device (an adopted fd) or the
    /// mountpoint `/`: `ENODEV`.
    pub fn presence(&self) -> io::Result<MountPresence> {
        let dev = self
            .dev
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        let (Some(parent), Some(name)) = (self.mountpoint.parent(), self.mountpoint.file_name())
        else {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        };
        let parent = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(parent)?;
        let name = CString::new(name.as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(MountPresence {
            parent: parent.into(),
            name,
            dev,
        })
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

/// The writable readahead setting of one mount's backing device, from [`Mount::readahead_knob`].
#[derive(Debug)]
pub struct ReadaheadKnob {
    file: std::fs::File,
}

impl ReadaheadKnob {
    /// Sets the readahead window to `kib` KiB (one `pwrite`, no other system call).
    pub fn set(&self, kib: u32) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(format!("{kib}\n").as_bytes(), 0)
    }
}

/// Whether one mount is still at its mountpoint, from [`Mount::presence`].
#[derive(Debug)]
pub struct MountPresence {
    parent: OwnedFd,
    name: CString,
    dev: (u32, u32),
}

impl MountPresence {
    /// Whether the top mount at the mountpoint is still this one: one `statx` of the
    /// mountpoint through the parent directory's descriptor, with `AT_STATX_DONT_SYNC` and an
    /// empty mask, so a FUSE mount answers from its cached attributes and the server is
    /// never asked. A connection the kernel aborted (`ENOTCONN`) is still mounted.
    pub fn still_mounted(&self) -> bool {
        match cached_dev_at(self.parent.as_raw_fd(), &self.name) {
            Ok(dev) => dev == self.dev,
            Err(errno) => errno == libc::ENOTCONN,
        }
    }
}

/// The device number of what `path` (relative to `dir`, not following a final symlink)
/// names, from one `statx` with `AT_STATX_DONT_SYNC` and an empty mask: a FUSE mount
/// answers from its cached attributes, without asking its server (which may be gone or
/// not serving yet). `Err(errno)` on failure. Allocation-free, for the watchdog after fork.
pub(super) fn cached_dev_at(dir: RawFd, path: &std::ffi::CStr) -> Result<(u32, u32), i32> {
    // SAFETY: an all-zero statx is a valid value for statx to overwrite.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is AT_FDCWD or an open directory descriptor, `path` a NUL-terminated
    // string and `st` a valid statx to write.
    let rc = unsafe {
        libc::statx(
            dir,
            path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
            0,
            &mut st,
        )
    };
    if rc == 0 {
        Ok((st.stx_dev_major, st.stx_dev_minor))
    } else {
        Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
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

#[cfg(test)]
mod tests {
    use super::fusermount::{classify_fusermount_failure, socketpair_stream};
    use super::mountinfo::MountinfoScan;
    use super::*;
    use std::os::fd::AsRawFd;

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
