//! [`Router`]: several backends under one mount, each at its own path.
//!
//! The mount's root is a backend of the embedder's choice (`R`, any
//! [`Filesystem`]); routes place [`StockFs`] backends at paths inside it,
//! like mounts: a memory filesystem at `/tmp`, a host directory at `/data`,
//! a single host file at `/etc/resolv.conf`.
//!
//! - Every request goes to the backend that owns its node id (the top 8
//!   bits, see [`ids`]); the backend sees its own ids only.
//! - Replies that carry node ids or inode numbers (entries, attributes,
//!   statx, directory listings) are recorded ([`sink::Recorder`]) and
//!   rewritten before they reach the kernel, so inode numbers never collide
//!   across backends. Nothing on the request path allocates.
//! - A route's name answers with the route backend's root and shadows a
//!   same-named entry of the directory it sits in; directories on the way
//!   that the root backend lacks are synthesized (read-only, mode 0755,
//!   owned by the server's user) ([`tree`]).
//! - Rename, link and copy_file_range across backends answer `EXDEV`
//!   (`mv` then copies); removing or renaming a route's mount point
//!   answers `EBUSY`, as the kernel does for mount points.
//! - STATFS is answered by the backend owning the path; INIT asks for what
//!   every backend can live with.
//! - The root backend's node ids pass through unchanged, so they must stay
//!   below 2^56 (memfs counts from 1, passthrough indexes a table); a
//!   route's ids past that are answered `EOVERFLOW`.
//!
//! ```no_run
//! use fuselage_backends::memfs::{MemFs, MemFsConfig};
//! use fuselage_backends::router::{RoutePath, Router};
//! use fuselage_backends::stock::StockFs;
//!
//! let root = MemFs::new(MemFsConfig::default());
//! let tmp = StockFs::Memory(MemFs::new(MemFsConfig::default()));
//! let router = Router::new(root, vec![(RoutePath::parse("/tmp")?, tmp)])?;
//! # Ok::<(), fuselage_backends::router::RouteError>(())
//! ```

pub mod ids;
mod listing;
pub mod sink;
pub mod tree;

use crate::stock::StockFs;
use fuselage_core::Filesystem;
use fuselage_core::abi::*;
use fuselage_core::error::Errno;
use fuselage_core::filesystem::RequestHeader;
use fuselage_core::init::{InitConfig, KernelInit, Negotiated};
use fuselage_core::op;
use fuselage_core::reply::*;
use ids::Owner;
use sink::{Answer, Recorder};
use std::ffi::CString;
use std::time::Duration;
use tree::{Child, Tree};
use zerocopy::FromBytes;

pub use tree::{RouteError, RoutePath, check_routes};

/// Most nodes of one backend handed over per BATCH_FORGET call.
const FORGET_CHUNK: usize = 64;

/// How long the kernel may cache the synthesized directories.
const SYNTH_TTL: Duration = Duration::from_secs(1);

/// A backend placed at a path inside the mount.
#[derive(Debug)]
pub struct Route {
    /// Where it sits.
    pub path: RoutePath,
    /// The backend.
    pub fs: StockFs,
}

/// Several backends under one mount: a root backend `R` and routes.
#[derive(Debug)]
pub struct Router<R> {
    root: R,
    routes: Vec<Route>,
    tree: Tree,
    uid: u32,
    gid: u32,
    born: u64,
}

/// The request header with the backend's own node id.
#[inline]
fn with_nodeid(req: &RequestHeader, nodeid: u64) -> RequestHeader {
    RequestHeader { nodeid, ..*req }
}

/// A cache time from the wire's seconds and nanoseconds.
fn ttl(secs: u64, nsecs: u32) -> Duration {
    Duration::new(secs, nsecs.min(999_999_999))
}

impl<R: Filesystem> Router<R> {
    /// A router serving `root` at the mount's root and each route's backend
    /// at its path. Refuses overlapping or duplicate paths and more than
    /// [`ids::MAX_ROUTES`] routes.
    pub fn new(root: R, routes: Vec<(RoutePath, StockFs)>) -> Result<Router<R>, RouteError> {
        check_routes(routes.iter().map(|(p, _)| p))?;
        let paths: Vec<RoutePath> = routes.iter().map(|(p, _)| p.clone()).collect();
        let tree = Tree::new(&paths);
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let born = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Router {
            root,
            routes: routes
                .into_iter()
                .map(|(path, fs)| Route { path, fs })
                .collect(),
            tree,
            uid,
            gid,
            born,
        })
    }

    /// The root backend.
    pub fn root(&self) -> &R {
        &self.root
    }

    /// The routes, in the order given (route `i` of this slice has backend
    /// index `i + 1`).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Hands a duplicate of the `/dev/fuse` descriptor to every host route
    /// (kernel passthrough needs it for its backing-file ioctls); the root
    /// backend gets its own from the caller.
    pub fn attach_device(&self, fd: std::os::fd::BorrowedFd<'_>) {
        for route in &self.routes {
            if let Some(host) = route.fs.as_host()
                && let Ok(dup) = fd.try_clone_to_owned()
            {
                host.set_device_fd(dup);
            }
        }
    }

    #[inline]
    fn route(&self, index: usize) -> Option<&StockFs> {
        self.routes.get(index.wrapping_sub(1)).map(|r| &r.fs)
    }

    /// The junction child `name` of root-backend directory `parent`, when
    /// the router answers that name itself.
    #[inline]
    fn root_child(&self, parent: u64, name: &[u8]) -> Option<Child> {
        let j = self.tree.junction_of_backend(parent)?;
        self.tree.junctions[j].child(name)
    }

    /// The junction child `name` of synthesized directory `j`.
    fn synth_child(&self, j: usize, name: &[u8]) -> Option<Child> {
        self.tree.junctions.get(j)?.child(name)
    }

    /// Attributes of synthesized directory `j`.
    fn synth_attr(&self, j: usize) -> fuse_attr {
        fuse_attr {
            ino: ids::synth_id(j),
            mode: libc::S_IFDIR | 0o755,
            nlink: 2 + self.subdirs(j),
            uid: self.uid,
            gid: self.gid,
            blksize: 4096,
            atime: self.born,
            mtime: self.born,
            ctime: self.born,
            ..Default::default()
        }
    }

    /// How many of junction `j`'s children are directories (for `nlink`,
    /// which tools like find may trust).
    fn subdirs(&self, j: usize) -> u32 {
        self.tree.junctions[j]
            .children
            .iter()
            .filter(|(_, c)| match c {
                Child::Junction(_) => true,
                Child::Route(i) => self
                    .route(*i)
                    .is_some_and(|fs| fs.as_host().is_none_or(|h| !h.serves_single_file())),
            })
            .count() as u32
    }

    fn synth_entry(&self, j: usize) -> fuse_entry_out {
        entry_out(self.synth_attr(j), 0, SYNTH_TTL, SYNTH_TTL)
    }

    /// The entry of route `i`'s root (its backend's node 1), as a LOOKUP of
    /// the mount point answers it.
    fn route_root_entry(&self, req: &RequestHeader, i: usize) -> Result<fuse_entry_out, Errno> {
        let fs = self.route(i).ok_or(Errno::ESTALE)?;
        let rec = Recorder::new();
        let arg = fuse_getattr_in::default();
        fs.getattr(
            &with_nodeid(req, FUSE_ROOT_ID),
            op::Getattr::new(FUSE_ROOT_ID, &arg),
            ReplyAttr::new(req.unique, &rec),
        );
        let out = recorded::<fuse_attr_out>(&rec)?;
        let mut attr = out.attr;
        attr.ino = ids::ino(i as u8, attr.ino);
        let mut e = entry_out(
            attr,
            0,
            ttl(out.attr_valid, out.attr_valid_nsec),
            ttl(out.attr_valid, out.attr_valid_nsec),
        );
        e.nodeid = ids::join(i as u8, FUSE_ROOT_ID).ok_or(Errno::EIO)?;
        Ok(e)
    }

    /// Answers a LOOKUP of junction child `child`; `parent` is the root
    /// backend's directory it was looked up in, if real.
    fn lookup_child<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: Option<u64>,
        name: &core::ffi::CStr,
        child: Child,
        reply: ReplyEntry<S>,
    ) {
        match child {
            Child::Route(i) => match self.route_root_entry(req, i) {
                Ok(e) => reply.entry(&e),
                Err(e) => reply.error(e),
            },
            Child::Junction(j) => match (parent, self.tree.junctions[j].backend_ino()) {
                (Some(p), Some(_)) => self.root.lookup(req, op::Lookup::new(p, name), reply),
                _ => reply.entry(&self.synth_entry(j)),
            },
        }
    }

    /// Looks up each junction in the root backend: a real directory is used
    /// as it is, a missing one (or a non-directory) is synthesized.
    fn resolve_junctions(&self) {
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() } as u32;
        for (j, junction) in self.tree.junctions.iter().enumerate().skip(1) {
            let Some(parent) = self.tree.junctions[junction.parent].backend_ino() else {
                continue;
            };
            let Some(name) = self.tree.junctions[junction.parent]
                .children
                .iter()
                .find(|(_, c)| *c == Child::Junction(j))
                .and_then(|(n, _)| CString::new(n.to_vec()).ok())
            else {
                continue;
            };
            let req = RequestHeader {
                nodeid: parent,
                uid: self.uid,
                gid: self.gid,
                pid,
                ..Default::default()
            };
            let rec = Recorder::new();
            self.root.lookup(
                &req,
                op::Lookup::new(parent, &name),
                ReplyEntry::new(0, &rec),
            );
            if let Ok(e) = recorded::<fuse_entry_out>(&rec)
                && e.nodeid != 0
                && e.attr.mode & libc::S_IFMT == libc::S_IFDIR
            {
                junction.set_backend_ino(e.nodeid);
            }
        }
    }
}

/// The recorded reply body as `T`, or the recorded error.
fn recorded<T: FromBytes>(rec: &Recorder) -> Result<T, Errno> {
    match rec.answer() {
        Answer::Error(e) => Err(e),
        Answer::Nothing => Err(Errno::EIO),
        Answer::Body { .. } => T::read_from_prefix(&rec.body())
            .map(|(t, _)| t)
            .map_err(|_| Errno::EIO),
    }
}

/// The entry with route `i`'s node id and inode number.
fn patch_entry(i: usize, e: &mut fuse_entry_out) -> Result<(), Errno> {
    if e.nodeid != 0 {
        e.nodeid = ids::join(i as u8, e.nodeid).ok_or(Errno::EOVERFLOW)?;
        e.attr.ino = ids::ino(i as u8, e.attr.ino);
    }
    Ok(())
}

/// Answers `reply` with route `i`'s recorded entry, rewritten.
fn answer_entry<S: ReplySink>(i: usize, rec: &Recorder, reply: ReplyEntry<S>) {
    match recorded::<fuse_entry_out>(rec).and_then(|mut e| patch_entry(i, &mut e).map(|_| e)) {
        Ok(e) => reply.entry(&e),
        Err(e) => reply.error(e),
    }
}

/// Answers `reply` with route `i`'s recorded attributes, rewritten.
fn answer_attr<S: ReplySink>(i: usize, rec: &Recorder, reply: ReplyAttr<S>) {
    match recorded::<fuse_attr_out>(rec) {
        Ok(mut out) => {
            out.attr.ino = ids::ino(i as u8, out.attr.ino);
            reply.attr(ttl(out.attr_valid, out.attr_valid_nsec), &out.attr)
        }
        Err(e) => reply.error(e),
    }
}

/// Answers `reply` with route `i`'s recorded statx, rewritten.
fn answer_statx<S: ReplySink>(i: usize, rec: &Recorder, reply: ReplyStatx<S>) {
    match recorded::<fuse_statx_out>(rec) {
        Ok(mut out) => {
            out.stat.ino = ids::ino(i as u8, out.stat.ino);
            reply.statx(
                ttl(out.attr_valid, out.attr_valid_nsec),
                out.flags,
                &out.stat,
            )
        }
        Err(e) => reply.error(e),
    }
}

/// Answers `reply` with route `i`'s recorded CREATE answer, rewritten.
fn answer_create<S: ReplySink>(i: usize, rec: &Recorder, reply: ReplyCreate<S>) {
    let parsed = recorded::<[u8; 144]>(rec).and_then(|bytes| {
        let (mut e, rest) = fuse_entry_out::read_from_prefix(&bytes).map_err(|_| Errno::EIO)?;
        let (open, _) = fuse_open_out::read_from_prefix(rest).map_err(|_| Errno::EIO)?;
        patch_entry(i, &mut e)?;
        Ok((e, open))
    });
    match parsed {
        Ok((e, open)) if open.open_flags & FOPEN_PASSTHROUGH != 0 => {
            reply.created_passthrough(&e, open.fh, open.open_flags, open.backing_id)
        }
        Ok((e, open)) => reply.created(&e, open.fh, open.open_flags),
        Err(e) => reply.error(e),
    }
}

/// Methods on one existing inode whose replies carry no ids: the owner
/// answers with its own view of the request; a synthesized directory gets
/// `$synth`.
macro_rules! by_inode {
    ($($name:ident($op:ident: $view:ty, $reply:ident: $rty:ident)
        |$local:ident| $rebuilt:expr, synth => $synth:expr;)*) => {
        $(
            fn $name<S: ReplySink>(&self, req: &RequestHeader, $op: $view, $reply: $rty<S>) {
                match Owner::of($op.ino()) {
                    Owner::Root(_) => self.root.$name(req, $op, $reply),
                    Owner::Route(i, $local) => match self.route(i) {
                        Some(fs) => fs.$name(&with_nodeid(req, $local), $rebuilt, $reply),
                        None => $reply.error(Errno::ESTALE),
                    },
                    Owner::Synth(_) => $synth,
                }
            }
        )*
    };
}

/// Methods creating a name in a directory, answered with an entry: the
/// router's own names exist already, synthesized directories are
/// read-only, a route's entry is rewritten.
macro_rules! creating {
    ($($name:ident($op:ident: $view:ty, $reply:ident: $rty:ident)
        |$local:ident| $rebuilt:expr, answer => $answer:ident;)*) => {
        $(
            fn $name<S: ReplySink>(&self, req: &RequestHeader, $op: $view, $reply: $rty<S>) {
                let name = $op.name().to_bytes();
                match Owner::of($op.parent()) {
                    Owner::Root(p) => match self.root_child(p, name) {
                        Some(_) => $reply.error(Errno::EEXIST),
                        None => self.root.$name(req, $op, $reply),
                    },
                    Owner::Route(i, $local) => match self.route(i) {
                        Some(fs) => {
                            let rec = Recorder::new();
                            fs.$name(
                                &with_nodeid(req, $local),
                                $rebuilt,
                                $rty::new($reply.unique(), &rec),
                            );
                            $answer(i, &rec, $reply)
                        }
                        None => $reply.error(Errno::ESTALE),
                    },
                    Owner::Synth(j) => match self.synth_child(j, name) {
                        Some(_) => $reply.error(Errno::EEXIST),
                        None => $reply.error(Errno::EROFS),
                    },
                }
            }
        )*
    };
}

/// Methods removing a name: a mount point is busy.
macro_rules! removing {
    ($($name:ident($view:ident);)*) => {
        $(
            fn $name<S: ReplySink>(
                &self,
                req: &RequestHeader,
                op: op::$view<'_>,
                reply: ReplyEmpty<S>,
            ) {
                let name = op.name().to_bytes();
                match Owner::of(op.parent()) {
                    Owner::Root(p) => match self.root_child(p, name) {
                        Some(_) => reply.error(Errno::EBUSY),
                        None => self.root.$name(req, op, reply),
                    },
                    Owner::Route(i, l) => match self.route(i) {
                        Some(fs) => fs.$name(
                            &with_nodeid(req, l),
                            op::$view::new(l, op.name()),
                            reply,
                        ),
                        None => reply.error(Errno::ESTALE),
                    },
                    Owner::Synth(j) => match self.synth_child(j, name) {
                        Some(_) => reply.error(Errno::EBUSY),
                        None => reply.error(Errno::ENOENT),
                    },
                }
            }
        )*
    };
}

impl<R: Filesystem> Filesystem for Router<R> {
    /// Asks for what every backend asks for: the root backend's request,
    /// less any flag a route does not want; kernel passthrough when any
    /// backend uses it; the smallest request size any backend takes.
    fn init(&self, kernel: &KernelInit, config: &mut InitConfig) -> Result<(), Errno> {
        let base = *config;
        self.root.init(kernel, config)?;
        for route in &self.routes {
            let mut mine = base;
            route.fs.init(kernel, &mut mine)?;
            config.wanted &= mine.wanted;
            config.max_write = config.max_write.min(mine.max_write);
            config.passthrough = match (config.passthrough, mine.passthrough) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        if config.passthrough.is_some() {
            config.wanted -= fuselage_core::InitFlags::WRITEBACK_CACHE;
        }
        Ok(())
    }

    fn init_done(&self, negotiated: &Negotiated) {
        self.root.init_done(negotiated);
        for route in &self.routes {
            route.fs.init_done(negotiated);
        }
        self.resolve_junctions();
    }

    fn destroy(&self) {
        self.root.destroy();
        for route in &self.routes {
            route.fs.destroy();
        }
    }

    fn lookup<S: ReplySink>(&self, req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let name = op.name().to_bytes();
        match Owner::of(op.parent()) {
            Owner::Root(p) => match self.root_child(p, name) {
                Some(child) => self.lookup_child(req, Some(p), op.name(), child, reply),
                None => self.root.lookup(req, op, reply),
            },
            Owner::Route(i, l) => match self.route(i) {
                Some(fs) => {
                    let rec = Recorder::new();
                    fs.lookup(
                        &with_nodeid(req, l),
                        op::Lookup::new(l, op.name()),
                        ReplyEntry::new(reply.unique(), &rec),
                    );
                    answer_entry(i, &rec, reply)
                }
                None => reply.error(Errno::ESTALE),
            },
            Owner::Synth(j) => match self.synth_child(j, name) {
                Some(child) => self.lookup_child(req, None, op.name(), child, reply),
                None => reply.negative(SYNTH_TTL),
            },
        }
    }

    fn forget(&self, req: &RequestHeader, op: op::Forget) {
        match Owner::of(op.ino()) {
            Owner::Root(_) => self.root.forget(req, op),
            // A route's root is held by its mount point, not by lookups.
            Owner::Route(_, FUSE_ROOT_ID) | Owner::Synth(_) => {}
            Owner::Route(i, l) => {
                if let Some(fs) = self.route(i) {
                    fs.forget(&with_nodeid(req, l), op::Forget::new(l, op.nlookup()))
                }
            }
        }
    }

    /// Splits the batch per backend (one pass per backend, at most
    /// 64 nodes per call, on the stack).
    fn batch_forget(&self, req: &RequestHeader, op: op::BatchForget<'_>) {
        if op
            .nodes()
            .iter()
            .all(|n| matches!(Owner::of(n.nodeid), Owner::Root(_)))
        {
            return self.root.batch_forget(req, op);
        }
        let mut chunk = [fuse_forget_one::default(); FORGET_CHUNK];
        let flush = |index: usize, nodes: &[fuse_forget_one]| {
            if nodes.is_empty() {
                return;
            }
            let batch = op::BatchForget::new(nodes);
            match index {
                0 => self.root.batch_forget(req, batch),
                i => {
                    if let Some(fs) = self.route(i) {
                        fs.batch_forget(req, batch)
                    }
                }
            }
        };
        for index in 0..=self.routes.len() {
            let mut n = 0;
            for node in op.nodes() {
                let local = match Owner::of(node.nodeid) {
                    Owner::Root(l) if index == 0 => l,
                    // A route's root is held by its mount point.
                    Owner::Route(i, l) if i == index && l != FUSE_ROOT_ID => l,
                    _ => continue,
                };
                chunk[n] = fuse_forget_one {
                    nodeid: local,
                    nlookup: node.nlookup,
                };
                n += 1;
                if n == FORGET_CHUNK {
                    flush(index, &chunk);
                    n = 0;
                }
            }
            flush(index, &chunk[..n]);
        }
    }

    fn getattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        match Owner::of(op.ino()) {
            Owner::Root(_) => self.root.getattr(req, op, reply),
            Owner::Route(i, l) => match self.route(i) {
                Some(fs) => {
                    let rec = Recorder::new();
                    fs.getattr(
                        &with_nodeid(req, l),
                        op::Getattr::new(l, op.raw()),
                        ReplyAttr::new(reply.unique(), &rec),
                    );
                    answer_attr(i, &rec, reply)
                }
                None => reply.error(Errno::ESTALE),
            },
            Owner::Synth(j) if j < self.tree.junctions.len() => {
                reply.attr(SYNTH_TTL, &self.synth_attr(j))
            }
            Owner::Synth(_) => reply.error(Errno::ESTALE),
        }
    }

    fn setattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Setattr<'_>, reply: ReplyAttr<S>) {
        match Owner::of(op.ino()) {
            Owner::Root(_) => self.root.setattr(req, op, reply),
            Owner::Route(i, l) => match self.route(i) {
                Some(fs) => {
                    let rec = Recorder::new();
                    fs.setattr(
                        &with_nodeid(req, l),
                        op::Setattr::new(l, op.raw()),
                        ReplyAttr::new(reply.unique(), &rec),
                    );
                    answer_attr(i, &rec, reply)
                }
                None => reply.error(Errno::ESTALE),
            },
            Owner::Synth(_) => reply.error(Errno::EROFS),
        }
    }

    fn statx<S: ReplySink>(&self, req: &RequestHeader, op: op::Statx<'_>, reply: ReplyStatx<S>) {
        match Owner::of(op.ino()) {
            Owner::Root(_) => self.root.statx(req, op, reply),
            Owner::Route(i, l) => match self.route(i) {
                Some(fs) => {
                    let rec = Recorder::new();
                    fs.statx(
                        &with_nodeid(req, l),
                        op::Statx::new(l, op.raw()),
                        ReplyStatx::new(reply.unique(), &rec),
                    );
                    answer_statx(i, &rec, reply)
                }
                None => reply.error(Errno::ESTALE),
            },
            Owner::Synth(j) if j < self.tree.junctions.len() => {
                let a = self.synth_attr(j);
                let time = fuse_sx_time {
                    tv_sec: a.mtime as i64,
                    ..Default::default()
                };
                let stat = fuse_statx {
                    mask: 0x7ff, // STATX_BASIC_STATS
                    blksize: a.blksize,
                    nlink: a.nlink,
                    uid: a.uid,
                    gid: a.gid,
                    mode: a.mode as u16,
                    ino: a.ino,
                    atime: time,
                    ctime: time,
                    mtime: time,
                    ..Default::default()
                };
                reply.statx(SYNTH_TTL, 0, &stat)
            }
            Owner::Synth(_) => reply.error(Errno::ESTALE),
        }
    }

    creating! {
        mknod(op: op::Mknod<'_>, reply: ReplyEntry)
            |l| op::Mknod::new(l, op.raw(), op.name()), answer => answer_entry;
        mkdir(op: op::Mkdir<'_>, reply: ReplyEntry)
            |l| op::Mkdir::new(l, op.raw(), op.name()), answer => answer_entry;
        symlink(op: op::Symlink<'_>, reply: ReplyEntry)
            |l| op::Symlink::new(l, op.name(), op.target()), answer => answer_entry;
        create(op: op::Create<'_>, reply: ReplyCreate)
            |l| op::Create::new(l, op.raw(), op.name()), answer => answer_create;
    }

    fn tmpfile<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Tmpfile<'_>,
        reply: ReplyCreate<S>,
    ) {
        match Owner::of(op.parent()) {
            Owner::Root(_) => self.root.tmpfile(req, op, reply),
            Owner::Route(i, l) => match self.route(i) {
                Some(fs) => {
                    let rec = Recorder::new();
                    fs.tmpfile(
                        &with_nodeid(req, l),
                        op::Tmpfile::new(l, op.raw(), op.name()),
                        ReplyCreate::new(reply.unique(), &rec),
                    );
                    answer_create(i, &rec, reply)
                }
                None => reply.error(Errno::ESTALE),
            },
            Owner::Synth(_) => reply.error(Errno::EROFS),
        }
    }

    fn link<S: ReplySink>(&self, req: &RequestHeader, op: op::Link<'_>, reply: ReplyEntry<S>) {
        let (from, to) = (Owner::of(op.ino()), Owner::of(op.newparent()));
        let name = op.newname().to_bytes();
        match to {
            Owner::Root(p) if self.root_child(p, name).is_some() => {
                return reply.error(Errno::EEXIST);
            }
            Owner::Synth(_) => return reply.error(Errno::EROFS),
            _ => {}
        }
        if from.index() != to.index() {
            return reply.error(Errno::EXDEV);
        }
        match (from, to) {
            (Owner::Root(_), _) => self.root.link(req, op, reply),
            (Owner::Route(i, l), Owner::Route(_, lp)) => match self.route(i) {
                Some(fs) => {
                    let arg = fuse_link_in { oldnodeid: l };
                    let rec = Recorder::new();
                    fs.link(
                        &with_nodeid(req, lp),
                        op::Link::new(lp, &arg, op.newname()),
                        ReplyEntry::new(reply.unique(), &rec),
                    );
                    answer_entry(i, &rec, reply)
                }
                None => reply.error(Errno::ESTALE),
            },
            _ => reply.error(Errno::EXDEV),
        }
    }

    removing! {
        unlink(Unlink);
        rmdir(Rmdir);
    }

    fn rename<S: ReplySink>(&self, req: &RequestHeader, op: op::Rename<'_>, reply: ReplyEmpty<S>) {
        let (from, to) = (Owner::of(op.parent()), Owner::of(op.newparent()));
        let busy = |owner: Owner, name: &core::ffi::CStr| match owner {
            Owner::Root(p) => self.root_child(p, name.to_bytes()).is_some(),
            Owner::Synth(j) => self.synth_child(j, name.to_bytes()).is_some(),
            Owner::Route(..) => false,
        };
        if busy(from, op.name()) || busy(to, op.newname()) {
            return reply.error(Errno::EBUSY);
        }
        if from.index() != to.index() {
            return reply.error(Errno::EXDEV);
        }
        match (from, to) {
            (Owner::Root(_), _) => self.root.rename(req, op, reply),
            (Owner::Route(i, lp), Owner::Route(_, lnp)) => match self.route(i) {
                Some(fs) => fs.rename(
                    &with_nodeid(req, lp),
                    op::Rename::new(lp, op.name(), lnp, op.newname(), op.flags()),
                    reply,
                ),
                None => reply.error(Errno::ESTALE),
            },
            _ => reply.error(Errno::EROFS),
        }
    }

    fn copy_file_range<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::CopyFileRange<'_>,
        reply: ReplyCopyFormatted<S>,
    ) {
        let (from, to) = (Owner::of(op.ino()), Owner::of(op.ino_out()));
        if from.index() != to.index() {
            return reply.error(Errno::EXDEV);
        }
        match (from, to) {
            (Owner::Root(_), _) => self.root.copy_file_range(req, op, reply),
            (Owner::Route(i, l), Owner::Route(_, lo)) => match self.route(i) {
                Some(fs) => {
                    let arg = fuse_copy_file_range_in {
                        nodeid_out: lo,
                        ..*op.raw()
                    };
                    fs.copy_file_range(&with_nodeid(req, l), op::CopyFileRange::new(l, &arg), reply)
                }
                None => reply.error(Errno::ESTALE),
            },
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn statfs<S: ReplySink>(&self, req: &RequestHeader, op: op::Statfs, reply: ReplyStatfs<S>) {
        match Owner::of(op.ino()) {
            Owner::Root(_) => self.root.statfs(req, op, reply),
            Owner::Route(i, l) => match self.route(i) {
                Some(fs) => fs.statfs(&with_nodeid(req, l), op::Statfs::new(l), reply),
                None => reply.error(Errno::ESTALE),
            },
            Owner::Synth(_) => self.root.statfs(
                &with_nodeid(req, FUSE_ROOT_ID),
                op::Statfs::new(FUSE_ROOT_ID),
                reply,
            ),
        }
    }

    /// syncfs(2) of the mount flushes every backend.
    fn syncfs<S: ReplySink>(&self, req: &RequestHeader, op: op::Syncfs, reply: ReplyEmpty<S>) {
        for route in &self.routes {
            let rec = Recorder::new();
            route.fs.syncfs(
                &with_nodeid(req, FUSE_ROOT_ID),
                op::Syncfs::new(FUSE_ROOT_ID),
                ReplyEmpty::new(req.unique, &rec),
            );
        }
        match Owner::of(op.ino()) {
            Owner::Root(_) => self.root.syncfs(req, op, reply),
            _ => self.root.syncfs(
                &with_nodeid(req, FUSE_ROOT_ID),
                op::Syncfs::new(FUSE_ROOT_ID),
                reply,
            ),
        }
    }

    fn interrupt(&self, req: &RequestHeader, op: op::Interrupt<'_>) {
        self.root.interrupt(req, op);
        for route in &self.routes {
            route.fs.interrupt(req, op);
        }
    }

    fn notify_reply(&self, req: &RequestHeader, op: op::NotifyReply<'_>) {
        match Owner::of(op.ino()) {
            Owner::Root(_) => self.root.notify_reply(req, op),
            Owner::Route(i, l) => {
                if let Some(fs) = self.route(i) {
                    fs.notify_reply(req, op::NotifyReply::new(l, op.raw(), op.data()))
                }
            }
            Owner::Synth(_) => {}
        }
    }

    fn readdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Readdir<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        self.listing(req, op, reply, false)
    }

    fn readdirplus<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Readdirplus<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        self.listing(req, op, reply, true)
    }

    by_inode! {
        readlink(op: op::Readlink, reply: ReplyData)
            |l| op::Readlink::new(l), synth => reply.error(Errno::EINVAL);
        open(op: op::Open<'_>, reply: ReplyOpen)
            |l| op::Open::new(l, op.raw()), synth => reply.error(Errno::EISDIR);
        read(op: op::Read<'_>, reply: ReplyData)
            |l| op::Read::new(l, op.raw()), synth => reply.error(Errno::EISDIR);
        write(op: op::Write<'_>, reply: ReplyWrite)
            |l| op::Write::new(l, op.raw(), op.data()), synth => reply.error(Errno::EISDIR);
        release(op: op::Release<'_>, reply: ReplyEmpty)
            |l| op::Release::new(l, op.raw()), synth => reply.ok();
        fsync(op: op::Fsync<'_>, reply: ReplyEmpty)
            |l| op::Fsync::new(l, op.raw()), synth => reply.ok();
        setxattr(op: op::Setxattr<'_>, reply: ReplyEmpty)
            |l| op::Setxattr::new(l, fuselage_core::request::SetxattrArgs {
                size: op.value().len() as u32,
                flags: op.flags(),
                setxattr_flags: op.setxattr_flags(),
            }, op.name(), op.value()), synth => reply.error(Errno::EROFS);
        getxattr(op: op::Getxattr<'_>, reply: ReplyXattr)
            |l| op::Getxattr::new(l, op.raw(), op.name()), synth => reply.error(Errno::ENODATA);
        listxattr(op: op::Listxattr<'_>, reply: ReplyXattr)
            |l| op::Listxattr::new(l, op.raw()), synth => reply.size(0);
        removexattr(op: op::Removexattr<'_>, reply: ReplyEmpty)
            |l| op::Removexattr::new(l, op.name()), synth => reply.error(Errno::EROFS);
        flush(op: op::Flush<'_>, reply: ReplyEmpty)
            |l| op::Flush::new(l, op.raw()), synth => reply.ok();
        opendir(op: op::Opendir<'_>, reply: ReplyOpen)
            |l| op::Opendir::new(l, op.raw()), synth => reply.opened(0, 0);
        releasedir(op: op::Releasedir<'_>, reply: ReplyEmpty)
            |l| op::Releasedir::new(l, op.raw()), synth => reply.ok();
        fsyncdir(op: op::Fsyncdir<'_>, reply: ReplyEmpty)
            |l| op::Fsyncdir::new(l, op.raw()), synth => reply.ok();
        getlk(op: op::Getlk<'_>, reply: ReplyLock)
            |l| op::Getlk::new(l, op.raw()), synth => reply.error(Errno::ENOSYS);
        setlk(op: op::Setlk<'_>, reply: ReplyEmpty)
            |l| op::Setlk::new(l, op.raw(), op.sleep()), synth => reply.error(Errno::ENOSYS);
        access(op: op::Access<'_>, reply: ReplyEmpty)
            |l| op::Access::new(l, op.raw()), synth => reply.ok();
        bmap(op: op::Bmap<'_>, reply: ReplyBmap)
            |l| op::Bmap::new(l, op.raw()), synth => reply.error(Errno::ENOSYS);
        ioctl(op: op::Ioctl<'_>, reply: ReplyIoctl)
            |l| op::Ioctl::new(l, op.raw(), op.in_data()), synth => reply.error(Errno::ENOTTY);
        poll(op: op::Poll<'_>, reply: ReplyPoll)
            |l| op::Poll::new(l, op.raw()), synth => reply.error(Errno::ENOSYS);
        fallocate(op: op::Fallocate<'_>, reply: ReplyEmpty)
            |l| op::Fallocate::new(l, op.raw()), synth => reply.error(Errno::EISDIR);
        lseek(op: op::Lseek<'_>, reply: ReplyLseek)
            |l| op::Lseek::new(l, op.raw()), synth => reply.error(Errno::ENOSYS);
        setupmapping(op: op::Setupmapping<'_>, reply: ReplyEmpty)
            |l| op::Setupmapping::new(l, op.raw()), synth => reply.error(Errno::ENOSYS);
        removemapping(op: op::Removemapping<'_>, reply: ReplyEmpty)
            |l| op::Removemapping::new(l, op.entries()), synth => reply.error(Errno::ENOSYS);
    }
}

#[cfg(test)]
mod tests;
