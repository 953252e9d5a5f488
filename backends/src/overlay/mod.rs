//! `overlay`: read-only lower layers under one writable upper layer, in
//! kernel overlayfs's on-disk format.
//!
//! [`OverlayFs`] serves the union of its layers: a name is taken from the
//! topmost layer that has it; directories of the same name are merged
//! unless the upper one is opaque; the first modification of a lower inode
//! copies it up; deleting a lower name leaves a whiteout.
//!
//! ```no_run
//! use fuselage_backends::overlay::{OverlayConfig, OverlayFs, UpperLayer};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fs = OverlayFs::new(OverlayConfig::new(
//!     vec!["/srv/app".into(), "/srv/base".into()],
//!     UpperLayer::Dir("/var/lib/app-changes".into()),
//! ))?;
//! # let _ = fs; Ok(()) }
//! ```
//!
//! # Layers are passthrough filesystems
//!
//! Every layer is a [`PassthroughFs`] of its own (the lowers read-only, on
//! a read-only private mount clone), so the overlay gets the passthrough's
//! confinement (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`,
//! `O_PATH` inode store, `/proc/self/fd` reopening), its credentials
//! handling for creations and its set-id rules, and, above all, its I/O
//! path: a file served from a lower layer is opened, read (spliced from the
//! host file, a `FileRange`) and passed to
//! the kernel (`FUSE_PASSTHROUGH`, a backing id registered per lower inode)
//! by exactly the code that serves `--source`, so it costs the same. The
//! overlay only translates node ids and file handles (the layer index is
//! in the top bits of a handle) and forwards the reply handle unchanged.
//!
//! # On-disk format
//!
//! Whiteouts are 0:0 character devices and opaque directories carry
//! `trusted.overlay.opaque=y` (`user.overlay.opaque=y` without
//! CAP_SYS_ADMIN, as overlayfs's `userxattr`), see [`whiteout`]; both are
//! read in either namespace. So an upper written here mounts the same under
//! kernel overlayfs (`-o lowerdir=L1:L2,upperdir=U,workdir=W`) and an
//! upper written by overlayfs reads the same here. Not written: overlayfs's
//! `origin`, `redirect`, `impure` and index xattrs (so after a remount
//! a copied-up file reports the upper inode number, as overlayfs does
//! without `xino`/`index`). Not followed: the `redirect` xattrs of an
//! upper that kernel overlayfs wrote with `redirect_dir=on` (such a renamed
//! directory shows its upper contents only).
//!
//! # Copy-up
//!
//! See [`copy_up`]: parents first, data into an `O_TMPFILE` (FICLONE,
//! copy_file_range, read/write), then owner, mode, xattrs and times, then
//! `linkat` into place. Open files of the lower inode keep their lower
//! descriptor (and backing id), so readers that opened before the copy-up
//! keep reading the same bytes. The kernel allows one backing file per
//! FUSE inode; an open that would need the upper file's while lower opens
//! are still active gets the copied-up file under a fresh node id (same
//! inode number) and answers `ESTALE`, on which the kernel repeats the
//! lookup and opens the new node.
//!
//! # Renaming directories
//!
//! A directory that has a lower part cannot be renamed: its lower part
//! would stay under the old name. Kernel overlayfs without `redirect_dir`
//! answers `EXDEV`, and so does this backend: `mv` then copies the tree
//! and deletes the original (whiteouts), which is correct, if slower.
//! Writing `redirect` xattrs would make the upper unreadable to overlayfs
//! mounted without `redirect_dir=on`.
//!
//! # Inode numbers
//!
//! See the `inode` module: the layer index in the top 8 bits, the origin's
//! number kept across copy-up, hard links of a lower inode one overlay
//! inode (keyed by the layer inode, which passthrough keys by device and
//! inode number).
//!
//! A lower file with several hard links is one overlay inode; it is copied
//! up under the name it was last looked up by (FUSE's OPEN and SETATTR name
//! no path), and its other names show the copy while this mount lasts.
//! After a remount they show the lower file again, as with overlayfs
//! without `index=on`, which also breaks such links on copy-up.
//!
//! # In-memory upper
//!
//! [`UpperLayer::Memory`] makes a private tmpfs with the new mount API
//! (`fsopen("tmpfs")`, `fsconfig` with the size, `fsmount`) that is never
//! attached to any path: nothing else can see it and it vanishes with the
//! process. It is then used exactly like a host upper directory (through
//! `/proc/self/fd/N` of the mount's descriptor), so it shares every code
//! path, kernel passthrough of upper files included. It needs CAP_SYS_ADMIN.
//!
//! # Not implemented
//!
//! POSIX and BSD locks (not negotiated: the kernel keeps them locally);
//! `RENAME_WHITEOUT` from a client (`EINVAL`).

pub mod copy_up;
mod inode;
mod memory;
mod merge;
pub mod whiteout;

use self::inode::{Keys, NodeState, NodeTable, UPPER, reported_ino};
use self::merge::MergedEntry;
use self::whiteout::{Probe, XattrNamespace, is_overlay_xattr, make_whiteout, probe, set_opaque};
use crate::passthrough::inode_store::{HeldFd, lock};
use crate::passthrough::sys::{self, SysResult};
use crate::passthrough::{
    PassthroughConfig, PassthroughError, PassthroughFs, PassthroughMode, PassthroughStatusHandle,
    stat,
};
use fuselage_core::abi::fuse_entry_out;
use fuselage_core::op;
use fuselage_core::reply::*;
use fuselage_core::{Errno, Filesystem, InitConfig, InitFlags, KernelInit, Negotiated};
use fuselage_core::{RequestHeader, SetAttr};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The writable upper layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpperLayer {
    /// A host directory.
    Dir(PathBuf),
    /// A private detached tmpfs of at most `size` bytes (the kernel's
    /// default, half of RAM, when `None`); see the module docs.
    Memory {
        /// Capacity in bytes.
        size: Option<u64>,
    },
}

/// How an [`OverlayFs`] is set up; build with [`OverlayConfig::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// Lower layers, topmost first (at least one).
    pub lowers: Vec<PathBuf>,
    /// The upper layer.
    pub upper: UpperLayer,
    /// Kernel passthrough for every layer's files. Default: auto.
    pub passthrough: PassthroughMode,
    /// See [`PassthroughConfig::max_lock_waiters`]. Default: 1.
    pub max_lock_waiters: usize,
    /// How long the kernel may cache names, for every layer (see
    /// [`PassthroughConfig::entry_ttl`]). Default: 1 s.
    pub entry_ttl: std::time::Duration,
    /// How long the kernel may cache attributes, for every layer (see
    /// [`PassthroughConfig::attr_ttl`]). Default: 1 s.
    pub attr_ttl: std::time::Duration,
    /// Page cache across opens, for every layer (see
    /// [`PassthroughConfig::cache`]). Default: auto.
    pub cache: crate::passthrough::CachePolicy,
}

impl OverlayConfig {
    /// The defaults for these layers.
    pub fn new(lowers: Vec<PathBuf>, upper: UpperLayer) -> OverlayConfig {
        let defaults = PassthroughConfig::new("/");
        OverlayConfig {
            lowers,
            upper,
            passthrough: PassthroughMode::Auto,
            max_lock_waiters: 1,
            entry_ttl: defaults.entry_ttl,
            attr_ttl: defaults.attr_ttl,
            cache: defaults.cache,
        }
    }
}

/// Why an [`OverlayFs`] could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayError {
    /// No lower layer was given.
    NoLower,
    /// A lower layer is missing or not a directory.
    Lower {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The upper layer is missing or not a directory.
    Upper {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The upper layer's filesystem lacks a feature the overlay needs.
    UpperFeature {
        /// The upper's path (or `memory`).
        path: PathBuf,
        /// The feature.
        feature: &'static str,
        /// The error the probe got.
        errno: Errno,
    },
    /// Two layers overlap (one inside the other): writing the upper would
    /// change a lower.
    Overlap {
        /// One layer.
        a: PathBuf,
        /// The layer it contains or is inside of.
        b: PathBuf,
    },
    /// `--upper memory` could not make its tmpfs.
    Memory(Errno),
    /// A layer could not be served.
    Layer {
        /// The layer's path.
        path: PathBuf,
        /// Why.
        error: PassthroughError,
    },
}

impl OverlayError {
    /// The errno this error stands for.
    pub fn errno(&self) -> Errno {
        match self {
            OverlayError::NoLower | OverlayError::Overlap { .. } => Errno::EINVAL,
            OverlayError::Lower { .. } | OverlayError::Upper { .. } => Errno::ENOENT,
            OverlayError::UpperFeature { errno, .. } | OverlayError::Memory(errno) => *errno,
            OverlayError::Layer { .. } => Errno::EIO,
        }
    }
}

impl fmt::Display for OverlayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = |e: &Errno| std::io::Error::from_raw_os_error(e.0);
        match self {
            OverlayError::NoLower => f.write_str("an overlay needs at least one --lower DIR"),
            OverlayError::Lower { path, why } => {
                write!(f, "--lower {}: {why}", path.display())
            }
            OverlayError::Upper { path, why } => {
                write!(f, "--upper {}: {why}", path.display())
            }
            OverlayError::UpperFeature {
                path,
                feature,
                errno,
            } => write!(
                f,
                "--upper {}: its filesystem does not support {feature} ({}); use an upper on ext4, xfs, btrfs or tmpfs",
                path.display(),
                os(errno)
            ),
            OverlayError::Overlap { a, b } => write!(
                f,
                "layers {} and {} overlap (one is inside the other): give separate directories",
                a.display(),
                b.display()
            ),
            OverlayError::Memory(errno) => write!(
                f,
                "--upper memory: cannot make a private tmpfs ({}): it needs CAP_SYS_ADMIN (run as root), or give --upper DIR",
                os(errno)
            ),
            OverlayError::Layer { path, error } => write!(f, "layer {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for OverlayError {}

/// What each layer got (kernel passthrough), for a startup line; usable
/// after the filesystem moved into a session.
#[derive(Debug, Clone)]
pub struct OverlayStatusHandle {
    layers: Vec<(String, PassthroughStatusHandle)>,
}

impl OverlayStatusHandle {
    /// ` upper=/u(passthrough=on) lower1=/l1(passthrough=on) ...`: one
    /// word per layer (spaces in paths are written `\040`, as in
    /// /proc/mounts), each with a leading space.
    pub fn words(&self) -> String {
        let mut s = String::new();
        for (label, h) in &self.layers {
            let on = if h.status().active { "on" } else { "off" };
            s.push_str(&format!(" {label}(passthrough={on})"));
        }
        s
    }

    /// The upper layer's passthrough state (the same for every layer).
    pub fn upper(&self) -> &PassthroughStatusHandle {
        &self.layers[0].1
    }
}

/// Lower layers and one upper layer served as one; see the
/// [module docs](self).
pub struct OverlayFs {
    upper: PassthroughFs,
    lowers: Vec<PassthroughFs>,
    labels: Vec<String>,
    nodes: NodeTable,
    dirs: Mutex<HashMap<u64, Arc<Vec<MergedEntry>>>>,
    next_dir: AtomicU64,
    inos: Mutex<inode::InoMap>,
    xattrs: XattrNamespace,
    /// The detached tmpfs of an in-memory upper (kept open with it).
    _memory: Option<OwnedFd>,
}

impl fmt::Debug for OverlayFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayFs")
            .field("layers", &self.labels)
            .finish_non_exhaustive()
    }
}

/// Bits of a file handle that hold the layer index.
const FH_SHIFT: u32 = 48;

fn encode_fh(layer: usize, fh: u64) -> u64 {
    ((layer as u64) << FH_SHIFT) | fh
}

fn decode_fh(fh: u64) -> (usize, u64) {
    ((fh >> FH_SHIFT) as usize, fh & ((1 << FH_SHIFT) - 1))
}

fn is_dir_path(path: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err("not a directory".into()),
        Err(e) => Err(format!("{e}")),
    }
}

/// Refuses an upper inside a lower or the reverse (compared as canonical
/// paths).
fn check_overlap(upper: &std::path::Path, lowers: &[PathBuf]) -> Result<(), OverlayError> {
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let u = canon(upper);
    for l in lowers {
        let lc = canon(l);
        if u.starts_with(&lc) || lc.starts_with(&u) {
            return Err(OverlayError::Overlap {
                a: upper.to_path_buf(),
                b: l.clone(),
            });
        }
    }
    Ok(())
}

/// The hard `RLIMIT_NOFILE` (what the soft limit is raised to).
fn nofile_hard_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_max
    } else {
        1024
    }
}

/// Checks that the upper directory `dir` supports what the overlay writes.
fn probe_upper(
    dir: &OwnedFd,
    path: &std::path::Path,
    ns: XattrNamespace,
) -> Result<(), OverlayError> {
    let fail = |feature, errno| OverlayError::UpperFeature {
        path: path.to_path_buf(),
        feature,
        errno,
    };
    let tmp = sys::openat2(
        dir.as_fd(),
        c".",
        libc::O_TMPFILE | libc::O_RDWR,
        0o600,
        sys::RESOLVE_CONFINED,
    )
    .map_err(|e| fail("O_TMPFILE", e))?;
    sys::fsetxattr(tmp.as_fd(), ns.opaque(), b"y", 0)
        .map_err(|e| fail("overlay xattrs (for opaque directories)", e))?;
    drop(tmp);
    // SAFETY: getpid cannot fail.
    let name = CString::new(format!(".fuselage-whiteout-probe-{}", unsafe {
        libc::getpid()
    }))
    .map_err(|_| fail("whiteouts", Errno::EINVAL))?;
    let _ = sys::unlinkat(dir.as_fd(), &name, 0);
    make_whiteout(dir.as_fd(), &name)
        .map_err(|e| fail("whiteouts (mknod of a 0:0 character device)", e))?;
    let _ = sys::unlinkat(dir.as_fd(), &name, 0);
    Ok(())
}

impl OverlayFs {
    /// Checks the layers and prepares to serve them.
    pub fn new(config: OverlayConfig) -> Result<OverlayFs, OverlayError> {
        if config.lowers.is_empty() {
            return Err(OverlayError::NoLower);
        }
        for path in &config.lowers {
            is_dir_path(path).map_err(|why| OverlayError::Lower {
                path: path.clone(),
                why,
            })?;
        }
        const CAP_SYS_ADMIN: u32 = 21;
        // trusted.* needs CAP_SYS_ADMIN in the initial user namespace; in
        // any other (a rootless container) overlayfs itself uses userxattr.
        let xattrs = if sys::has_effective_cap(CAP_SYS_ADMIN)
            && crate::passthrough::in_initial_user_namespace()
        {
            XattrNamespace::Trusted
        } else {
            XattrNamespace::User
        };
        let (upper_path, label, memory) = match &config.upper {
            UpperLayer::Dir(path) => {
                is_dir_path(path).map_err(|why| OverlayError::Upper {
                    path: path.clone(),
                    why,
                })?;
                check_overlap(path, &config.lowers)?;
                (path.clone(), path.display().to_string(), None)
            }
            UpperLayer::Memory { size } => {
                let fd = memory::detached_tmpfs(*size).map_err(OverlayError::Memory)?;
                use std::os::fd::AsRawFd;
                let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                (path, "memory".to_string(), Some(fd))
            }
        };
        let shown = |p: &std::path::Path| p.display().to_string().replace(' ', "\\040");
        {
            let c = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
                upper_path.as_os_str(),
            ))
            .map_err(|_| OverlayError::Upper {
                path: upper_path.clone(),
                why: "contains a NUL byte".into(),
            })?;
            let dir = sys::open_path(&c, libc::O_PATH | libc::O_DIRECTORY).map_err(|e| {
                OverlayError::Upper {
                    path: upper_path.clone(),
                    why: format!("{}", std::io::Error::from_raw_os_error(e.0)),
                }
            })?;
            let shown_path = if memory.is_some() {
                PathBuf::from("memory")
            } else {
                upper_path.clone()
            };
            probe_upper(&dir, &shown_path, xattrs)?;
        }
        // Every layer caches descriptors: share the budget a single
        // passthrough would take (half the descriptor limit, which the first
        // layer raises to the hard limit).
        let per_layer = nofile_hard_limit() / 2 / (config.lowers.len() as u64 + 1);
        let layer = |path: &PathBuf, read_only: bool| {
            PassthroughFs::new(PassthroughConfig {
                passthrough: config.passthrough,
                read_only,
                max_lock_waiters: config.max_lock_waiters,
                max_cached_fds: Some(per_layer.clamp(64, 1 << 20) as usize),
                entry_ttl: config.entry_ttl,
                attr_ttl: config.attr_ttl,
                cache: config.cache,
                ..PassthroughConfig::new(path)
            })
            .map_err(|error| OverlayError::Layer {
                path: path.clone(),
                error,
            })
        };
        let upper = layer(&upper_path, false)?;
        let lowers = config
            .lowers
            .iter()
            .map(|p| layer(p, true))
            .collect::<Result<Vec<_>, _>>()?;
        let mut labels = vec![format!(
            "upper={}",
            if memory.is_some() {
                label
            } else {
                shown(&upper_path)
            }
        )];
        for (i, p) in config.lowers.iter().enumerate() {
            labels.push(format!("lower{}={}", i + 1, shown(p)));
        }
        let mut fs = OverlayFs {
            upper,
            lowers,
            labels,
            nodes: NodeTable::new(
                NodeState {
                    upper: Some(1),
                    lowers: Vec::new(),
                    parent: 1,
                    name: CString::default(),
                    opens: None,
                },
                1,
            ),
            dirs: Mutex::new(HashMap::new()),
            next_dir: AtomicU64::new(1),
            inos: Mutex::new(HashMap::new()),
            xattrs,
            _memory: memory,
        };
        // The root merges every lower root, down to an opaque one.
        let mut root_lowers = Vec::new();
        let upper_root = fs.host_fd(UPPER, 1).map_err(|e| OverlayError::Upper {
            path: upper_path.clone(),
            why: format!("{}", std::io::Error::from_raw_os_error(e.0)),
        })?;
        if !whiteout::is_opaque(upper_root.as_fd()) {
            for l in 1..=fs.lowers.len() {
                root_lowers.push((l, 1));
                if fs
                    .host_fd(l, 1)
                    .is_ok_and(|fd| whiteout::is_opaque(fd.as_fd()))
                {
                    break;
                }
            }
        }
        drop(upper_root);
        let root_ino = fs
            .upper
            .do_getattr(1, None)
            .map(|st| st.stx_ino)
            .unwrap_or(1);
        fs.nodes = NodeTable::new(
            NodeState {
                upper: Some(1),
                lowers: root_lowers,
                parent: 1,
                name: CString::default(),
                opens: None,
            },
            root_ino,
        );
        Ok(fs)
    }

    /// Gives every layer a duplicate of the session's `/dev/fuse`
    /// descriptor (for kernel passthrough); see
    /// [`PassthroughFs::set_device_fd`].
    pub fn set_device_fd(&self, fd: OwnedFd) {
        for l in &self.lowers {
            if let Ok(dup) = fd.try_clone() {
                l.set_device_fd(dup);
            }
        }
        self.upper.set_device_fd(fd);
    }

    /// What each layer got, for a startup line.
    pub fn status_handle(&self) -> OverlayStatusHandle {
        let mut layers = vec![(
            self.labels[0].clone(),
            self.upper.passthrough_status_handle(),
        )];
        for (i, l) in self.lowers.iter().enumerate() {
            layers.push((self.labels[i + 1].clone(), l.passthrough_status_handle()));
        }
        OverlayStatusHandle { layers }
    }

    /// The xattr namespace whiteout metadata is written in.
    pub fn xattr_namespace(&self) -> XattrNamespace {
        self.xattrs
    }

    // -----------------------------------------------------------------------
    // Layers and nodes
    // -----------------------------------------------------------------------

    fn layer(&self, l: usize) -> &PassthroughFs {
        if l == UPPER {
            &self.upper
        } else {
            &self.lowers[l - 1]
        }
    }

    /// A descriptor for layer `l`'s inode `nid`, held for a request.
    fn host_fd(&self, l: usize, nid: u64) -> SysResult<HeldFd> {
        let fs = self.layer(l);
        fs.store.hold(fs.inode(nid)?)
    }

    fn give_back(&self, keys: &[(usize, u64)]) {
        for &(l, nid) in keys {
            if nid != 1 {
                self.layer(l).store.forget(nid, 1);
            }
        }
    }

    fn node(&self, id: u64) -> SysResult<Arc<inode::Node>> {
        self.nodes.get(id).ok_or(Errno::ENOENT)
    }

    fn dir_node(&self, id: u64) -> SysResult<Arc<inode::Node>> {
        let n = self.node(id)?;
        if n.is_dir() {
            Ok(n)
        } else {
            Err(Errno::ENOTDIR)
        }
    }

    /// The inode number a node first found as `host_ino` in layer `l`
    /// reports.
    fn ino_for(&self, l: usize, host_ino: u64) -> u64 {
        if l == UPPER {
            lock(&self.inos).get(&host_ino).copied().unwrap_or(host_ino)
        } else {
            reported_ino(l, host_ino)
        }
    }

    /// Finds `name` in `parent`'s layers, taking one layer reference per
    /// layer inode in the result. Returns the layers, the top layer and its
    /// entry.
    fn resolve(
        &self,
        parent: &inode::Node,
        name: &CStr,
    ) -> SysResult<(Keys, usize, fuse_entry_out)> {
        let parent_keys = parent.keys();
        let mut found = Keys::default();
        let mut top: Option<(usize, fuse_entry_out)> = None;
        let mut dirs_only = false;
        let result = (|| {
            for &(l, dnid) in parent_keys.as_slice() {
                let Some(found_here) = self.look_in(l, dnid, name)? else {
                    continue;
                };
                let Some((nid, e, opaque)) = found_here else {
                    // A whiteout: nothing of the name below.
                    return if top.is_some() {
                        Ok(())
                    } else {
                        Err(Errno::ENOENT)
                    };
                };
                let is_dir = e.attr.mode & libc::S_IFMT == libc::S_IFDIR;
                if dirs_only && !is_dir {
                    self.give_back(&[(l, nid)]);
                    break;
                }
                found.push((l, nid));
                if top.is_none() {
                    top = Some((l, e));
                }
                if !is_dir || opaque {
                    break;
                }
                dirs_only = true;
            }
            Ok(())
        })();
        match (result, top) {
            (Ok(()), Some((l, e))) => Ok((found, l, e)),
            (r, _) => {
                self.give_back(found.as_slice());
                Err(r.err().unwrap_or(Errno::ENOENT))
            }
        }
    }

    /// Looks `name` up in layer `l`'s directory `dnid`: `None` if it is not
    /// there, `Some(None)` for a whiteout, else the layer inode (one layer
    /// reference taken), its entry and, for a directory, whether it is
    /// opaque. One confined open and statx, as a passthrough lookup.
    #[allow(clippy::type_complexity)]
    fn look_in(
        &self,
        l: usize,
        dnid: u64,
        name: &CStr,
    ) -> SysResult<Option<Option<(u64, fuse_entry_out, bool)>>> {
        let (nid, e) = match self.layer(l).do_lookup(dnid, name) {
            Ok(found) => found,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let kind = e.attr.mode & libc::S_IFMT;
        if kind == libc::S_IFCHR && e.attr.rdev == 0 {
            self.give_back(&[(l, nid)]);
            return Ok(Some(None));
        }
        let opaque = kind == libc::S_IFDIR
            && self
                .host_fd(l, nid)
                .is_ok_and(|fd| whiteout::is_opaque(fd.as_fd()));
        Ok(Some(Some((nid, e, opaque))))
    }

    /// Looks `name` up in `parent` and enters it as a node, taking
    /// `kernel_refs` kernel references.
    fn lookup_node(
        &self,
        parent: &inode::Node,
        name: &CStr,
        kernel_refs: u64,
    ) -> SysResult<(Arc<inode::Node>, fuse_entry_out)> {
        let (found, l, e) = self.resolve(parent, name)?;
        let ino = self.ino_for(l, e.attr.ino);
        let adopted = self.nodes.adopt(
            &found,
            parent.id,
            name,
            e.attr.mode & libc::S_IFMT,
            ino,
            kernel_refs,
        );
        self.give_back(adopted.surplus.as_slice());
        Ok((adopted.node.clone(), self.entry_of(&adopted.node, e)))
    }

    fn entry_of(&self, node: &inode::Node, mut e: fuse_entry_out) -> fuse_entry_out {
        e.nodeid = node.id;
        e.generation = 0;
        e.attr.ino = node.ino;
        e
    }

    /// Enters an inode just created in the upper layer (its entry as the
    /// upper layer answered) as a node with one kernel reference.
    fn enter_upper(
        &self,
        parent: u64,
        name: &CStr,
        e: fuse_entry_out,
    ) -> (Arc<inode::Node>, fuse_entry_out) {
        let ino = self.ino_for(UPPER, e.attr.ino);
        let mut found = Keys::default();
        found.push((UPPER, e.nodeid));
        let adopted = self
            .nodes
            .adopt(&found, parent, name, e.attr.mode & libc::S_IFMT, ino, 1);
        self.give_back(adopted.surplus.as_slice());
        let e = self.entry_of(&adopted.node, e);
        (adopted.node, e)
    }

    /// Whether any lower directory merged into `parent` has `name` (so
    /// removing or replacing it needs a whiteout or an opaque directory).
    fn in_lowers(&self, parent: &NodeState, name: &CStr) -> bool {
        parent.lowers.iter().any(|&(l, nid)| {
            self.host_fd(l, nid)
                .is_ok_and(|fd| sys::statx_at(fd.as_fd(), name, libc::STATX_TYPE).is_ok())
        })
    }

    /// Copies `node` up (its parents first) unless it is in the upper
    /// layer already; returns its upper node id.
    fn copy_up(&self, node: &inode::Node) -> SysResult<u64> {
        if let Some(u) = lock(&node.state).upper {
            return Ok(u);
        }
        let _copying = lock(&node.copy_lock);
        let st = node.snapshot();
        if let Some(u) = st.upper {
            return Ok(u);
        }
        let &(l, lnid) = st.lowers.first().ok_or(Errno::ENOENT)?;
        let parent = self.node(st.parent)?;
        let pu = self.copy_up(&parent)?;
        {
            let src = self.host_fd(l, lnid)?;
            let dir = self.host_fd(UPPER, pu)?;
            match copy_up::copy_up(&self.upper.procs, src.as_fd(), dir.as_fd(), &st.name) {
                // A directory already there (a racing lookup's node
                // copied it up) is the same merged directory: use it. A
                // file there is some other file: refuse.
                Ok(()) => {}
                Err(Errno::EEXIST) if node.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        let (unid, e) = self.upper.do_lookup(pu, &st.name)?;
        if e.attr.mode & libc::S_IFMT != node.kind {
            self.give_back(&[(UPPER, unid)]);
            return Err(Errno::EEXIST);
        }
        // The key first: a lookup racing with us then finds this node.
        self.nodes.add_key((UPPER, unid), node.id);
        lock(&node.state).upper = Some(unid);
        lock(&self.inos).insert(e.attr.ino, node.ino);
        Ok(unid)
    }

    /// Makes room for a new `name` in `parent`'s upper directory (copying
    /// the parent up, removing a whiteout); returns the upper directory and
    /// whether a directory made there must be opaque.
    fn prepare_name(&self, parent: &inode::Node, name: &CStr) -> SysResult<(u64, bool)> {
        let pu = self.copy_up(parent)?;
        let dir = self.host_fd(UPPER, pu)?;
        match probe(dir.as_fd(), name)? {
            Probe::Whiteout => {
                sys::unlinkat(dir.as_fd(), name, 0)?;
                Ok((pu, true))
            }
            Probe::Present { .. } => Err(Errno::EEXIST),
            Probe::Missing => Ok((pu, self.in_lowers(&parent.snapshot(), name))),
        }
    }

    /// The merged listing of a directory node.
    fn listing(&self, node: &inode::Node) -> SysResult<Vec<MergedEntry>> {
        let held: Vec<(usize, HeldFd)> = node
            .snapshot()
            .keys()
            .into_iter()
            .map(|(l, nid)| self.host_fd(l, nid).map(|fd| (l, fd)))
            .collect::<SysResult<_>>()?;
        let fds: Vec<_> = held.iter().map(|(l, fd)| (*l, fd.as_fd())).collect();
        let inos = lock(&self.inos).clone();
        merge::merge(&self.upper.procs, &fds, &inos)
    }

    /// Removes the whiteouts in an upper directory that merges to empty
    /// (before it is removed or replaced).
    fn clear_whiteouts(&self, upper_dir: u64) -> SysResult<()> {
        let dir = self.host_fd(UPPER, upper_dir)?;
        let held = [(UPPER, dir.as_fd())];
        let visible = merge::merge(&self.upper.procs, &held, &HashMap::new())?;
        if !visible.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        let fd = self
            .upper
            .procs
            .reopen(dir.as_fd(), libc::S_IFDIR, libc::O_RDONLY)?;
        let mut names = Vec::new();
        merge::each_entry(fd.as_fd(), |e| {
            let name = e.name.to_bytes();
            if name != b"." && name != b".." {
                names.push(e.name.to_owned());
            }
        })?;
        for name in names {
            sys::unlinkat(dir.as_fd(), &name, 0)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Operations
    // -----------------------------------------------------------------------

    fn do_getattr(&self, ino: u64, fh: Option<u64>) -> SysResult<fuselage_core::abi::fuse_attr> {
        let node = self.node(ino)?;
        let (l, nid) = node.top().ok_or(Errno::ENOENT)?;
        let fh = fh.map(decode_fh).filter(|(fl, _)| *fl == l).map(|p| p.1);
        let st = self.layer(l).do_getattr(nid, fh)?;
        let mut a = stat::attr_of(&st);
        a.ino = node.ino;
        Ok(a)
    }

    fn do_setattr(
        &self,
        req: &RequestHeader,
        ino: u64,
        attr: &SetAttr,
    ) -> SysResult<fuselage_core::abi::fuse_attr> {
        let node = self.node(ino)?;
        let unid = self.copy_up(&node)?;
        let mut attr = *attr;
        attr.fh = attr
            .fh
            .map(decode_fh)
            .filter(|(l, _)| *l == UPPER)
            .map(|p| p.1);
        let st = self.upper.do_setattr(req, unid, &attr)?;
        let mut a = stat::attr_of(&st);
        a.ino = node.ino;
        Ok(a)
    }

    fn do_open(
        &self,
        req: &RequestHeader,
        ino: u64,
        flags: u32,
        open_flags: u32,
    ) -> SysResult<(u64, u32, Option<i32>)> {
        let node = self.node(ino)?;
        let f = flags as i32;
        let write = f & libc::O_ACCMODE != libc::O_RDONLY || f & libc::O_TRUNC != 0;
        if write {
            self.copy_up(&node)?;
        }
        let (l, nid) = {
            let mut st = lock(&node.state);
            let (l, nid) = st.top().ok_or(Errno::ENOENT)?;
            match st.opens {
                Some((ol, n)) if n > 0 && ol != l => {
                    if self.upper.passthrough_status().active {
                        // The kernel allows one backing file per inode: the
                        // copied-up file becomes a new node, found again
                        // by the kernel's retry of the lookup.
                        drop(st);
                        self.nodes.split_upper(&node);
                        return Err(Errno::ESTALE);
                    }
                    st.opens = Some((l, n + 1));
                }
                Some((_, n)) => st.opens = Some((l, n + 1)),
                None => st.opens = Some((l, 1)),
            }
            (l, nid)
        };
        match self.layer(l).do_open(req, nid, flags, open_flags) {
            Ok(o) => Ok((encode_fh(l, o.fh), o.flags, o.backing)),
            Err(e) => {
                self.open_ended(&node);
                Err(e)
            }
        }
    }

    fn open_ended(&self, node: &inode::Node) {
        let mut st = lock(&node.state);
        if let Some((l, n)) = st.opens {
            st.opens = (n > 1).then_some((l, n - 1));
        }
    }

    /// The layer node id and layer handle an overlay file handle of `ino`
    /// stands for.
    fn file(&self, ino: u64, fh: u64) -> SysResult<(usize, u64, u64)> {
        let (l, lfh) = decode_fh(fh);
        if l > self.lowers.len() {
            return Err(Errno::EBADF);
        }
        let nid = self.node(ino)?.in_layer(l).ok_or(Errno::EBADF)?;
        Ok((l, nid, lfh))
    }

    fn do_unlink(&self, parent: u64, name: &CStr, dir: bool) -> SysResult<()> {
        let p = self.dir_node(parent)?;
        if dir {
            let (child, _) = self.lookup_node(&p, name, 0)?;
            if !child.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if !self.listing(&child)?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            if let Some(cu) = child.upper() {
                self.clear_whiteouts(cu)?;
            }
        }
        let pst = p.snapshot();
        let lower = self.in_lowers(&pst, name);
        let pu = if lower {
            self.copy_up(&p)?
        } else {
            pst.upper.ok_or(Errno::ENOENT)?
        };
        let updir = self.host_fd(UPPER, pu)?;
        match probe(updir.as_fd(), name)? {
            Probe::Present { .. } => {
                let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
                self.upper.do_unlink(pu, name, flags)?
            }
            Probe::Whiteout => return Err(Errno::ENOENT),
            Probe::Missing if !lower => return Err(Errno::ENOENT),
            Probe::Missing => {}
        }
        if lower {
            make_whiteout(updir.as_fd(), name)?;
        }
        Ok(())
    }

    fn do_rename(
        &self,
        parent: u64,
        name: &CStr,
        newparent: u64,
        newname: &CStr,
        flags: u32,
    ) -> SysResult<()> {
        if flags & libc::RENAME_EXCHANGE != 0 && flags & !libc::RENAME_EXCHANGE == 0 {
            return self.do_exchange(parent, name, newparent, newname);
        }
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        let p = self.dir_node(parent)?;
        let np = self.dir_node(newparent)?;
        let (src, _) = self.lookup_node(&p, name, 0)?;
        if src.is_dir() && src.has_lowers() {
            // See the module docs: no redirect_dir.
            return Err(Errno::EXDEV);
        }
        self.copy_up(&src)?;
        let pu = self.copy_up(&p)?;
        let npu = self.copy_up(&np)?;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        match self.lookup_node(&np, newname, 0) {
            Ok((t, _)) => {
                if noreplace {
                    return Err(Errno::EEXIST);
                }
                if t.id == src.id {
                    return Ok(());
                }
                if t.is_dir() {
                    if !src.is_dir() {
                        return Err(Errno::EISDIR);
                    }
                    if !self.listing(&t)?.is_empty() {
                        return Err(Errno::ENOTEMPTY);
                    }
                    if let Some(tu) = t.upper() {
                        self.clear_whiteouts(tu)?;
                    }
                } else if src.is_dir() {
                    return Err(Errno::ENOTDIR);
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let target_lower = self.in_lowers(&np.snapshot(), newname);
        {
            let tdir = self.host_fd(UPPER, npu)?;
            if probe(tdir.as_fd(), newname)? == Probe::Whiteout && (src.is_dir() || noreplace) {
                sys::unlinkat(tdir.as_fd(), newname, 0)?;
            }
        }
        let source_lower = self.in_lowers(&p.snapshot(), name);
        let keep = flags & libc::RENAME_NOREPLACE;
        if source_lower {
            match self
                .upper
                .do_rename(pu, name, npu, newname, keep | libc::RENAME_WHITEOUT)
            {
                Ok(()) => {}
                Err(Errno::EINVAL | Errno::EPERM) => {
                    self.upper.do_rename(pu, name, npu, newname, keep)?;
                    let sdir = self.host_fd(UPPER, pu)?;
                    make_whiteout(sdir.as_fd(), name)?;
                }
                Err(e) => return Err(e),
            }
        } else {
            self.upper.do_rename(pu, name, npu, newname, keep)?;
        }
        if src.is_dir()
            && target_lower
            && let Some(su) = src.upper()
        {
            let fd = self.host_fd(UPPER, su)?;
            set_opaque(fd.as_fd(), self.xattrs)?;
        }
        let mut st = lock(&src.state);
        st.parent = np.id;
        st.name = newname.to_owned();
        Ok(())
    }

    /// RENAME_EXCHANGE: both copied up, swapped in the upper; a directory
    /// that lands where a lower has the name is made opaque. Directories
    /// with a lower part answer `EXDEV` (see the module docs).
    fn do_exchange(
        &self,
        parent: u64,
        name: &CStr,
        newparent: u64,
        newname: &CStr,
    ) -> SysResult<()> {
        let p = self.dir_node(parent)?;
        let np = self.dir_node(newparent)?;
        let (a, _) = self.lookup_node(&p, name, 0)?;
        let (b, _) = self.lookup_node(&np, newname, 0)?;
        for n in [&a, &b] {
            if n.is_dir() && n.has_lowers() {
                return Err(Errno::EXDEV);
            }
            self.copy_up(n)?;
        }
        let pu = self.copy_up(&p)?;
        let npu = self.copy_up(&np)?;
        self.upper
            .do_rename(pu, name, npu, newname, libc::RENAME_EXCHANGE)?;
        for (n, dir, at) in [(&a, &np, newname), (&b, &p, name)] {
            if n.is_dir()
                && self.in_lowers(&dir.snapshot(), at)
                && let Some(u) = n.upper()
            {
                set_opaque(self.host_fd(UPPER, u)?.as_fd(), self.xattrs)?;
            }
            let mut st = lock(&n.state);
            st.parent = dir.id;
            st.name = at.to_owned();
        }
        Ok(())
    }

    fn do_listxattr<S: ReplySink>(&self, ino: u64, size: u32, reply: ReplyXattr<S>) {
        let list = (|| {
            let node = self.node(ino)?;
            let (l, nid) = node.top().ok_or(Errno::ENOENT)?;
            let fd = self.host_fd(l, nid)?;
            let path = crate::passthrough::proc_fd::ProcPath::new(fd.as_fd());
            let all = copy_up::read_list(|buf| sys::listxattr(path.as_cstr(), buf))?;
            let mut out = Vec::with_capacity(all.len());
            for name in all.split(|b| *b == 0).filter(|n| !n.is_empty()) {
                if !is_overlay_xattr(name) {
                    out.extend_from_slice(name);
                    out.push(0);
                }
            }
            Ok(out)
        })();
        match list {
            Ok(list) if size == 0 => reply.size(list.len() as u32),
            Ok(list) if list.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(list) => reply.data(&list),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for OverlayFs {
    /// Every layer's wishes (kernel passthrough decided by the upper's
    /// rules), minus what the overlay does not serve: remote locks.
    fn init(&self, kernel: &KernelInit, config: &mut InitConfig) -> Result<(), Errno> {
        self.upper.init(kernel, config)?;
        for l in &self.lowers {
            let mut c = *config;
            l.init(kernel, &mut c)?;
        }
        config.wanted -= InitFlags::POSIX_LOCKS | InitFlags::FLOCK_LOCKS;
        Ok(())
    }

    fn init_done(&self, negotiated: &Negotiated) {
        self.upper.init_done(negotiated);
        for l in &self.lowers {
            l.init_done(negotiated);
        }
    }

    fn destroy(&self) {
        self.upper.destroy();
        for l in &self.lowers {
            l.destroy();
        }
    }

    fn lookup<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let r = self
            .dir_node(op.parent())
            .and_then(|p| self.lookup_node(&p, op.name(), 1));
        answer!(reply, r, |(_, e)| reply.entry(&e))
    }

    fn forget(&self, _req: &RequestHeader, op: op::Forget) {
        let keys = self.nodes.forget(op.ino(), op.nlookup());
        self.give_back(&keys);
    }

    fn batch_forget(&self, _req: &RequestHeader, op: op::BatchForget<'_>) {
        for n in op.nodes() {
            let keys = self.nodes.forget(n.nodeid, n.nlookup);
            self.give_back(&keys);
        }
    }

    fn getattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getattr<'_>,
        reply: ReplyAttr<S>,
    ) {
        answer!(reply, self.do_getattr(op.ino(), op.fh()), |a| reply
            .attr(self.upper.config().attr_ttl, &a))
    }

    fn setattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Setattr<'_>, reply: ReplyAttr<S>) {
        answer!(reply, self.do_setattr(req, op.ino(), &op.attr()), |a| reply
            .attr(self.upper.config().attr_ttl, &a))
    }

    fn readlink<S: ReplySink>(&self, _req: &RequestHeader, op: op::Readlink, reply: ReplyData<S>) {
        match self
            .node(op.ino())
            .and_then(|n| n.top().ok_or(Errno::ENOENT))
        {
            Ok((l, nid)) => self.layer(l).do_readlink(nid, reply),
            Err(e) => reply.error(e),
        }
    }

    fn symlink<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Symlink<'_>,
        reply: ReplyEntry<S>,
    ) {
        let r = (|| {
            let p = self.dir_node(op.parent())?;
            let (pu, _) = self.prepare_name(&p, op.name())?;
            let e = self.upper.do_symlink(req, pu, op.name(), op.target())?;
            Ok(self.enter_upper(p.id, op.name(), e).1)
        })();
        answer!(reply, r, |e| reply.entry(&e))
    }

    fn mknod<S: ReplySink>(&self, req: &RequestHeader, op: op::Mknod<'_>, reply: ReplyEntry<S>) {
        let r = (|| {
            let p = self.dir_node(op.parent())?;
            let (pu, _) = self.prepare_name(&p, op.name())?;
            let e = self
                .upper
                .do_mknod(req, pu, op.name(), op.mode(), op.umask(), op.rdev())?;
            Ok(self.enter_upper(p.id, op.name(), e).1)
        })();
        answer!(reply, r, |e| reply.entry(&e))
    }

    fn mkdir<S: ReplySink>(&self, req: &RequestHeader, op: op::Mkdir<'_>, reply: ReplyEntry<S>) {
        let r = (|| {
            let p = self.dir_node(op.parent())?;
            let (pu, opaque) = self.prepare_name(&p, op.name())?;
            let e = self
                .upper
                .do_mkdir(req, pu, op.name(), op.mode(), op.umask())?;
            if opaque {
                let fd = self.host_fd(UPPER, e.nodeid)?;
                set_opaque(fd.as_fd(), self.xattrs)?;
            }
            Ok(self.enter_upper(p.id, op.name(), e).1)
        })();
        answer!(reply, r, |e| reply.entry(&e))
    }

    fn unlink<S: ReplySink>(&self, _req: &RequestHeader, op: op::Unlink<'_>, reply: ReplyEmpty<S>) {
        answer!(reply, self.do_unlink(op.parent(), op.name(), false), |()| {
            reply.ok()
        })
    }

    fn rmdir<S: ReplySink>(&self, _req: &RequestHeader, op: op::Rmdir<'_>, reply: ReplyEmpty<S>) {
        answer!(reply, self.do_unlink(op.parent(), op.name(), true), |()| {
            reply.ok()
        })
    }

    fn rename<S: ReplySink>(&self, _req: &RequestHeader, op: op::Rename<'_>, reply: ReplyEmpty<S>) {
        answer!(
            reply,
            self.do_rename(
                op.parent(),
                op.name(),
                op.newparent(),
                op.newname(),
                op.flags()
            ),
            |()| reply.ok()
        )
    }

    fn link<S: ReplySink>(&self, _req: &RequestHeader, op: op::Link<'_>, reply: ReplyEntry<S>) {
        let r = (|| {
            let node = self.node(op.ino())?;
            if node.is_dir() {
                return Err(Errno::EPERM);
            }
            let unid = self.copy_up(&node)?;
            let p = self.dir_node(op.newparent())?;
            let (pu, _) = self.prepare_name(&p, op.newname())?;
            let e = self.upper.do_link(unid, pu, op.newname())?;
            Ok(self.enter_upper(p.id, op.newname(), e).1)
        })();
        answer!(reply, r, |e| reply.entry(&e))
    }

    fn open<S: ReplySink>(&self, req: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        answer!(
            reply,
            self.do_open(req, op.ino(), op.flags(), op.open_flags()),
            |(fh, flags, backing)| match backing {
                Some(id) => reply.opened_passthrough(fh, flags, id),
                None => reply.opened(fh, flags),
            }
        )
    }

    fn read<S: ReplySink>(&self, _req: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        match self.file(op.ino(), op.fh()) {
            Ok((l, nid, fh)) => self
                .layer(l)
                .do_read(nid, fh, op.offset(), op.size(), reply),
            Err(e) => reply.error(e),
        }
    }

    fn write<S: ReplySink>(&self, req: &RequestHeader, op: op::Write<'_>, reply: ReplyWrite<S>) {
        let r = self.file(op.ino(), op.fh()).and_then(|(l, nid, fh)| {
            if l != UPPER {
                return Err(Errno::EBADF);
            }
            self.upper
                .do_write(req, nid, fh, op.offset(), op.data(), op.write_flags())
        });
        answer!(reply, r, |n| reply.written(n))
    }

    fn statfs<S: ReplySink>(&self, _req: &RequestHeader, _op: op::Statfs, reply: ReplyStatfs<S>) {
        answer!(reply, self.upper.do_statfs(1), |st| reply.statfs(&st))
    }

    fn release<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Release<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let (l, fh) = decode_fh(op.fh());
        if l <= self.lowers.len() {
            self.layer(l).do_release(fh, op.release_flags());
        }
        if let Ok(node) = self.node(op.ino()) {
            self.open_ended(&node);
        }
        reply.ok()
    }

    fn fsync<S: ReplySink>(&self, _req: &RequestHeader, op: op::Fsync<'_>, reply: ReplyEmpty<S>) {
        let r = self
            .file(op.ino(), op.fh())
            .and_then(|(l, nid, fh)| self.layer(l).do_fsync(nid, fh, op.datasync()));
        answer!(reply, r, |()| reply.ok())
    }

    fn flush<S: ReplySink>(&self, _req: &RequestHeader, op: op::Flush<'_>, reply: ReplyEmpty<S>) {
        let r = self
            .file(op.ino(), op.fh())
            .and_then(|(l, nid, fh)| self.layer(l).do_flush(nid, fh));
        answer!(reply, r, |()| reply.ok())
    }

    fn setxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Setxattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let r = (|| {
            if is_overlay_xattr(op.name().to_bytes()) {
                return Err(Errno::EPERM);
            }
            let unid = self.copy_up(&*self.node(op.ino())?)?;
            self.upper
                .do_setxattr(unid, op.name(), op.value(), op.flags(), op.setxattr_flags())
        })();
        answer!(reply, r, |()| reply.ok())
    }

    fn getxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        if is_overlay_xattr(op.name().to_bytes()) {
            return reply.error(Errno::ENODATA);
        }
        match self
            .node(op.ino())
            .and_then(|n| n.top().ok_or(Errno::ENOENT))
        {
            Ok((l, nid)) => self.layer(l).do_getxattr(nid, op.name(), op.size(), reply),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Listxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        self.do_listxattr(op.ino(), op.size(), reply)
    }

    fn removexattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Removexattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let r = (|| {
            if is_overlay_xattr(op.name().to_bytes()) {
                return Err(Errno::ENODATA);
            }
            let unid = self.copy_up(&*self.node(op.ino())?)?;
            self.upper.do_removexattr(unid, op.name())
        })();
        answer!(reply, r, |()| reply.ok())
    }

    fn opendir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Opendir<'_>,
        reply: ReplyOpen<S>,
    ) {
        let r = (|| {
            let node = self.dir_node(op.ino())?;
            let parent_ino = self.node(node.parent()).map_or(node.ino, |p| p.ino);
            let mut entries = vec![
                MergedEntry {
                    ino: node.ino,
                    typ: libc::DT_DIR,
                    name: c".".to_owned(),
                },
                MergedEntry {
                    ino: parent_ino,
                    typ: libc::DT_DIR,
                    name: c"..".to_owned(),
                },
            ];
            entries.extend(self.listing(&node)?);
            let fh = self.next_dir.fetch_add(1, Ordering::Relaxed);
            lock(&self.dirs).insert(fh, Arc::new(entries));
            Ok(fh)
        })();
        answer!(reply, r, |fh| reply.opened(fh, 0))
    }

    fn readdir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Readdir<'_>,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        let Some(entries) = lock(&self.dirs).get(&op.fh()).cloned() else {
            return reply.error(Errno::EBADF);
        };
        for (i, e) in entries.iter().enumerate().skip(op.offset() as usize) {
            match reply.push(e.ino, i as u64 + 1, u32::from(e.typ), e.name.to_bytes()) {
                Ok(()) => {}
                Err(fuselage_core::dirent::DirentError::Full) => break,
                Err(_) => continue,
            }
        }
        reply.ok()
    }

    fn readdirplus<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Readdirplus<'_>,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        use fuselage_core::dirent::{direntplus_size, valid_name};
        let Some(entries) = lock(&self.dirs).get(&op.fh()).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let dir = match self.dir_node(op.ino()) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        for (i, e) in entries.iter().enumerate().skip(op.offset() as usize) {
            let name = e.name.to_bytes();
            if !valid_name(name) {
                continue;
            }
            if direntplus_size(name.len()) > reply.buf().remaining() {
                break;
            }
            let looked_up = if name == b"." || name == b".." {
                None
            } else {
                self.lookup_node(&dir, &e.name, 1).ok()
            };
            let entry = match &looked_up {
                Some((_, entry)) => *entry,
                // Gone meanwhile, or `.`/`..`: a name without an inode
                // (the kernel looks it up if it needs it).
                None => fuse_entry_out {
                    attr: fuselage_core::abi::fuse_attr {
                        ino: e.ino,
                        mode: u32::from(e.typ) << 12,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            };
            let typ = (entry.attr.mode & libc::S_IFMT) >> 12;
            if reply.push_plus(&entry, i as u64 + 1, typ, name).is_err() {
                // Cannot happen after the checks above; never leak the
                // reference the lookup took.
                if let Some((node, _)) = looked_up {
                    let keys = self.nodes.forget(node.id, 1);
                    self.give_back(&keys);
                }
                break;
            }
        }
        reply.ok()
    }

    fn releasedir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Releasedir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        lock(&self.dirs).remove(&op.fh());
        reply.ok()
    }

    fn fsyncdir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        _op: op::Fsyncdir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.ok()
    }

    fn access<S: ReplySink>(&self, req: &RequestHeader, op: op::Access<'_>, reply: ReplyEmpty<S>) {
        let r = self
            .node(op.ino())
            .and_then(|n| n.top().ok_or(Errno::ENOENT))
            .and_then(|(l, nid)| {
                // A lower file is writable through the overlay (copy-up).
                let mask = if l == UPPER {
                    op.mask()
                } else {
                    op.mask() & !2
                };
                self.layer(l).do_access(req, nid, mask)
            });
        answer!(reply, r, |()| reply.ok())
    }

    fn create<S: ReplySink>(&self, req: &RequestHeader, op: op::Create<'_>, reply: ReplyCreate<S>) {
        let r = (|| {
            let p = self.dir_node(op.parent())?;
            let (pu, _) = self.prepare_name(&p, op.name())?;
            let c = self
                .upper
                .do_create(req, pu, op.name(), op.mode(), op.umask(), op.flags())?;
            let (node, e) = self.enter_upper(p.id, op.name(), c.entry);
            lock(&node.state).opens = Some((UPPER, 1));
            Ok((e, c.open))
        })();
        answer!(reply, r, |(e, o)| match o.backing {
            Some(id) => reply.created_passthrough(&e, encode_fh(UPPER, o.fh), o.flags, id),
            None => reply.created(&e, encode_fh(UPPER, o.fh), o.flags),
        })
    }

    fn fallocate<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Fallocate<'_>,
        reply: ReplyEmpty<S>,
    ) {
        let r = self.file(op.ino(), op.fh()).and_then(|(l, nid, fh)| {
            if l != UPPER {
                return Err(Errno::EBADF);
            }
            self.upper
                .do_fallocate(req, nid, fh, op.offset(), op.length(), op.mode())
        });
        answer!(reply, r, |()| reply.ok())
    }

    fn lseek<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lseek<'_>, reply: ReplyLseek<S>) {
        let r = self
            .file(op.ino(), op.fh())
            .and_then(|(l, nid, fh)| self.layer(l).do_lseek(nid, fh, op.offset(), op.whence()));
        answer!(reply, r, |o| reply.offset(o))
    }

    fn statx<S: ReplySink>(&self, _req: &RequestHeader, op: op::Statx<'_>, reply: ReplyStatx<S>) {
        let r = self.node(op.ino()).and_then(|node| {
            let (l, nid) = node.top().ok_or(Errno::ENOENT)?;
            let fh = op
                .fh()
                .map(decode_fh)
                .filter(|(fl, _)| *fl == l)
                .map(|p| p.1);
            let st = self
                .layer(l)
                .do_statx(nid, fh, op.sx_flags(), op.sx_mask())?;
            let mut sx = stat::statx_of(&st);
            sx.ino = node.ino;
            Ok(sx)
        });
        answer!(reply, r, |sx| reply.statx(
            self.upper.config().attr_ttl,
            0,
            &sx
        ))
    }

    fn tmpfile<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Tmpfile<'_>,
        reply: ReplyCreate<S>,
    ) {
        let r = (|| {
            let p = self.dir_node(op.parent())?;
            let pu = self.copy_up(&p)?;
            let c = self
                .upper
                .do_tmpfile(req, pu, op.mode(), op.umask(), op.flags())?;
            let (node, e) = self.enter_upper(p.id, c"", c.entry);
            lock(&node.state).opens = Some((UPPER, 1));
            Ok((e, c.open))
        })();
        answer!(reply, r, |(e, o)| match o.backing {
            Some(id) => reply.created_passthrough(&e, encode_fh(UPPER, o.fh), o.flags, id),
            None => reply.created(&e, encode_fh(UPPER, o.fh), o.flags),
        })
    }

    fn copy_file_range<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::CopyFileRange<'_>,
        reply: ReplyCopyFormatted<S>,
    ) {
        let r = (|| {
            if op.flags() != 0 {
                return Err(Errno::EINVAL);
            }
            let (l_in, nid_in, fh_in) = self.file(op.ino(), op.fh_in())?;
            let (l_out, nid_out, fh_out) = self.file(op.ino_out(), op.fh_out())?;
            if l_out != UPPER {
                return Err(Errno::EBADF);
            }
            let src = self.layer(l_in).file(nid_in, fh_in)?;
            let dst = self.upper.file(nid_out, fh_out)?;
            self.upper
                .clear_setid(dst.fd.as_fd(), req, crate::setid::Change::Unflagged)?;
            copy_up::copy_range(
                src.fd.as_fd(),
                op.off_in(),
                dst.fd.as_fd(),
                op.off_out(),
                op.len(),
            )
        })();
        answer!(reply, r, |n| reply.copied(n))
    }

    fn syncfs<S: ReplySink>(&self, _req: &RequestHeader, _op: op::Syncfs, reply: ReplyEmpty<S>) {
        answer!(reply, self.upper.do_syncfs(1), |()| reply.ok())
    }
}
