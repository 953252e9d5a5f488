//! The directory tree: lookup, listing, creating, linking, removing and
//! renaming names. The lock order these follow is described in the module
//! docs of [`super`].

use super::dir::{DOT_COOKIE, DOTDOT_COOKIE, Dir};
use super::file::{FileData, PAGE};
use super::inode::{
    Body, DIRENT_BOGO_SIZE, Inode, Meta, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, Timespec,
    lock, read, write,
};
use super::{MemFs, SYMLINK_INLINE_MAX, SYMLINK_MAX, check_name};
use crate::setid::Change;
use fuselage_core::abi::{FUSE_ROOT_ID, fuse_attr, fuse_entry_out};
use fuselage_core::dirent::{DirentError, dtype};
use fuselage_core::op;
use fuselage_core::reply::{ReplyDirectory, ReplySink};
use fuselage_core::{Errno, RequestHeader};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, RwLockWriteGuard};

const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;
const RENAME_WHITEOUT: u32 = libc::RENAME_WHITEOUT;

const O_EXCL: u32 = libc::O_EXCL as u32;
const O_TRUNC: u32 = libc::O_TRUNC as u32;

/// What a new inode will be.
struct NewNode {
    /// Type and permission bits (umask already applied).
    mode: u32,
    rdev: u32,
    body: Body,
    size: u64,
    /// `st_blocks` (512-byte units).
    blocks: u64,
    /// Open handles the creating request returns (CREATE: 1).
    opens: u64,
}

impl NewNode {
    fn new(mode: u32, body: Body) -> Self {
        NewNode {
            mode,
            rdev: 0,
            body,
            size: 0,
            blocks: 0,
            opens: 0,
        }
    }
}

/// Owner, group and mode of a new inode created by `req` in a directory
/// with metadata `parent`: a set-gid parent gives its group, and its set-gid
/// bit to subdirectories.
fn ownership(req: &RequestHeader, parent: &Meta, mode: u32) -> (u32, u32, u32) {
    if parent.mode & S_ISGID != 0 {
        let mode = if mode & S_IFMT == S_IFDIR {
            mode | S_ISGID
        } else {
            mode
        };
        (req.uid, parent.gid, mode)
    } else {
        (req.uid, req.gid, mode)
    }
}

fn new_body_dir() -> Body {
    Body::Dir(RwLock::new(Dir::new()))
}

fn new_body_file() -> Body {
    Body::File(RwLock::new(FileData::new()))
}

impl MemFs {
    pub(super) fn lookup_impl(&self, parent: u64, name: &[u8]) -> Result<fuse_entry_out, Errno> {
        check_name(name)?;
        let p = self.dir_inode(parent)?;
        let dir = read(p.dir().ok_or(Errno::ENOTDIR)?);
        if dir.removed {
            return Err(Errno::ENOENT);
        }
        let ino = match name {
            b"." => parent,
            b".." => p.parent.load(Ordering::Acquire),
            _ => dir.get(name).ok_or(Errno::ENOENT)?.ino,
        };
        let child = self.inode(ino)?;
        let mut m = lock(&child.meta);
        m.lookups += 1;
        Ok(self.entry(m.attr(ino)))
    }

    pub(super) fn opendir_impl(&self, ino: u64) -> Result<(), Errno> {
        let inode = self.dir_inode(ino)?;
        lock(&inode.meta).opens += 1;
        Ok(())
    }

    /// READDIR / READDIRPLUS from `offset` (see [`Dir`] for the cookies).
    pub(super) fn readdir_impl<S: ReplySink>(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        let inode = match self.dir_inode(ino) {
            Ok(inode) => inode,
            Err(e) => return reply.error(e),
        };
        let Some(dir) = inode.dir() else {
            return reply.error(Errno::ENOTDIR);
        };
        let dir = read(dir);
        if dir.removed {
            return reply.ok();
        }
        let parent = inode.parent.load(Ordering::Acquire);
        let dots: [(u64, u64, &[u8]); 2] =
            [(DOT_COOKIE, ino, b"."), (DOTDOT_COOKIE, parent, b"..")];
        for (cookie, dot_ino, name) in dots {
            if offset >= cookie {
                continue;
            }
            // "." and ".." carry no lookup reference: nodeid 0 tells the
            // kernel not to take one (it ignores these names anyway).
            let pushed = if plus {
                let entry = fuse_entry_out {
                    attr: fuse_attr {
                        ino: dot_ino,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                reply.push_plus(&entry, cookie, dtype::DIR, name)
            } else {
                reply.push(dot_ino, cookie, dtype::DIR, name)
            };
            if pushed == Err(DirentError::Full) {
                return reply.ok();
            }
        }
        for (cookie, e) in dir.after(offset) {
            let pushed = if plus {
                match self.table.get(e.ino) {
                    Some(child) => {
                        let mut m = lock(&child.meta);
                        let entry = self.entry(m.attr(e.ino));
                        let pushed = reply.push_plus(&entry, cookie, e.dtype, &e.name);
                        if pushed.is_ok() {
                            m.lookups += 1;
                        }
                        pushed
                    }
                    None => reply.push(e.ino, cookie, e.dtype, &e.name),
                }
            } else {
                reply.push(e.ino, cookie, e.dtype, &e.name)
            };
            match pushed {
                Ok(()) => {}
                Err(DirentError::Full) => break,
                // A name the kernel would refuse (memfs checks names when
                // they are made, so never in practice): leave it out and go
                // on, rather than ending the listing here.
                Err(DirentError::InvalidName) => continue,
            }
        }
        drop(dir);
        lock(&inode.meta).accessed(Timespec::now());
        reply.ok()
    }

    /// Adds a new inode called `name` to directory `parent`.
    fn create_node(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &[u8],
        node: NewNode,
    ) -> Result<fuse_attr, Errno> {
        check_name(name)?;
        let p = self.dir_inode(parent)?;
        let mut dir = write(p.dir().ok_or(Errno::ENOTDIR)?);
        if dir.removed {
            return Err(Errno::ENOENT);
        }
        if dir.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        let is_dir = node.mode & S_IFMT == S_IFDIR;
        let now = Timespec::now();
        let meta = {
            let pm = lock(&p.meta);
            if is_dir && pm.nlink == u32::MAX {
                return Err(Errno::EMLINK);
            }
            let (uid, gid, mode) = ownership(req, &pm, node.mode);
            let mut meta = Meta::new(mode, uid, gid, if is_dir { 2 } else { 1 }, now);
            meta.rdev = node.rdev;
            meta.size = node.size;
            meta.blocks = node.blocks;
            meta
        };
        let child = self.new_inode(meta, node.body, parent, node.opens)?;
        dir.insert(name, child.ino, child.dtype());
        let attr = lock(&child.meta).attr(child.ino);
        let mut pm = lock(&p.meta);
        pm.modified(now);
        pm.size += DIRENT_BOGO_SIZE;
        if is_dir {
            pm.nlink += 1;
        }
        Ok(attr)
    }

    pub(super) fn mkdir_impl(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> Result<fuse_attr, Errno> {
        let mode = S_IFDIR | (mode & 0o1777 & !umask);
        let mut node = NewNode::new(mode, new_body_dir());
        node.size = 2 * DIRENT_BOGO_SIZE;
        self.create_node(req, parent, name, node)
    }

    pub(super) fn mknod_impl(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<fuse_attr, Errno> {
        let perm = mode & 0o7777 & !umask;
        let node = match mode & S_IFMT {
            0 | S_IFREG => NewNode::new(S_IFREG | perm, new_body_file()),
            kind @ (libc::S_IFCHR | libc::S_IFBLK) => NewNode {
                rdev,
                ..NewNode::new(kind | perm, Body::Special)
            },
            kind @ (libc::S_IFIFO | libc::S_IFSOCK) => NewNode::new(kind | perm, Body::Special),
            S_IFDIR => return Err(Errno::EPERM),
            _ => return Err(Errno::EINVAL),
        };
        self.create_node(req, parent, name, node)
    }

    pub(super) fn symlink_impl(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> Result<fuse_attr, Errno> {
        if target.len() > SYMLINK_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut node = NewNode::new(S_IFLNK | 0o777, Body::Symlink(target.into()));
        node.size = target.len() as u64;
        if target.len() <= SYMLINK_INLINE_MAX {
            return self.create_node(req, parent, name, node);
        }
        // A long target takes a page, as on tmpfs.
        self.space.reserve(PAGE)?;
        node.blocks = PAGE / 512;
        let created = self.create_node(req, parent, name, node);
        if created.is_err() {
            self.space.release(PAGE);
        }
        created
    }

    /// CREATE: a new regular file, opened; an existing one is opened
    /// (truncated with `O_TRUNC`) unless `O_EXCL` asks for `EEXIST`.
    pub(super) fn create_impl(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: u32,
    ) -> Result<fuse_attr, Errno> {
        // Retried when the existing name vanishes before it can be opened.
        loop {
            let mut node = NewNode::new(S_IFREG | (mode & 0o7777 & !umask), new_body_file());
            node.opens = 1;
            match self.create_node(req, parent, name, node) {
                Err(Errno::EEXIST) if flags & O_EXCL == 0 => {}
                other => return other,
            }
            // The name exists: open it like OPEN would, counting the lookup.
            let existing = {
                let p = self.dir_inode(parent)?;
                let dir = read(p.dir().ok_or(Errno::ENOTDIR)?);
                let Some(e) = dir.get(name) else { continue };
                let child = self.inode(e.ino)?;
                match child.kind {
                    S_IFREG => {}
                    S_IFDIR => return Err(Errno::EISDIR),
                    _ => return Err(Errno::EEXIST),
                }
                let mut m = lock(&child.meta);
                m.lookups += 1;
                m.opens += 1;
                drop(m);
                child
            };
            if flags & O_TRUNC != 0 {
                // Cannot fail for a regular file truncated to 0. CREATE
                // carries no kill flag to memfs: ask about the caller.
                self.truncate_on_open(&existing, req, Change::Unflagged)?;
            }
            return Ok(lock(&existing.meta).attr(existing.ino));
        }
    }

    /// TMPFILE: an unnamed regular file (`nlink` 0 until LINKed), opened.
    pub(super) fn tmpfile_impl(
        &self,
        req: &RequestHeader,
        parent: u64,
        mode: u32,
        umask: u32,
    ) -> Result<fuse_attr, Errno> {
        let p = self.dir_inode(parent)?;
        let now = Timespec::now();
        let meta = {
            let pm = lock(&p.meta);
            let (uid, gid, mode) = ownership(req, &pm, S_IFREG | (mode & 0o7777 & !umask));
            Meta::new(mode, uid, gid, 0, now)
        };
        let child = self.new_inode(meta, new_body_file(), parent, 1)?;
        Ok(lock(&child.meta).attr(child.ino))
    }

    pub(super) fn link_impl(
        &self,
        ino: u64,
        newparent: u64,
        newname: &[u8],
    ) -> Result<fuse_attr, Errno> {
        check_name(newname)?;
        let inode = self.inode(ino)?;
        if inode.is_dir() {
            return Err(Errno::EPERM);
        }
        let p = self.dir_inode(newparent)?;
        let mut dir = write(p.dir().ok_or(Errno::ENOTDIR)?);
        if dir.removed {
            return Err(Errno::ENOENT);
        }
        if dir.get(newname).is_some() {
            return Err(Errno::EEXIST);
        }
        let now = Timespec::now();
        let attr = {
            let mut m = lock(&inode.meta);
            if m.dead {
                return Err(Errno::ENOENT);
            }
            if m.nlink == u32::MAX {
                return Err(Errno::EMLINK);
            }
            m.nlink += 1;
            m.ctime = now;
            m.lookups += 1;
            m.attr(ino)
        };
        dir.insert(newname, ino, inode.dtype());
        let mut pm = lock(&p.meta);
        pm.modified(now);
        pm.size += DIRENT_BOGO_SIZE;
        Ok(attr)
    }

    pub(super) fn unlink_impl(&self, parent: u64, name: &[u8]) -> Result<(), Errno> {
        check_name(name)?;
        let p = self.dir_inode(parent)?;
        let mut dir = write(p.dir().ok_or(Errno::ENOTDIR)?);
        let e = dir.get(name).ok_or(Errno::ENOENT)?;
        let child = self.inode(e.ino)?;
        if child.is_dir() {
            return Err(Errno::EISDIR);
        }
        dir.remove(name);
        let now = Timespec::now();
        {
            let mut pm = lock(&p.meta);
            pm.modified(now);
            pm.size -= DIRENT_BOGO_SIZE;
        }
        drop(dir);
        self.unref(&child, |m| {
            m.nlink = m.nlink.saturating_sub(1);
            m.ctime = now;
        });
        Ok(())
    }

    pub(super) fn rmdir_impl(&self, parent: u64, name: &[u8]) -> Result<(), Errno> {
        match name {
            b"." => return Err(Errno::EINVAL),
            b".." => return Err(Errno::ENOTEMPTY),
            _ => check_name(name)?,
        }
        let p = self.dir_inode(parent)?;
        let mut dir = write(p.dir().ok_or(Errno::ENOTDIR)?);
        let e = dir.get(name).ok_or(Errno::ENOENT)?;
        let child = self.inode(e.ino)?;
        let Some(child_dir) = child.dir() else {
            return Err(Errno::ENOTDIR);
        };
        {
            let mut cd = write(child_dir);
            if !cd.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            cd.removed = true;
        }
        dir.remove(name);
        let now = Timespec::now();
        {
            let mut pm = lock(&p.meta);
            pm.modified(now);
            pm.size -= DIRENT_BOGO_SIZE;
            pm.nlink -= 1;
        }
        drop(dir);
        self.unref(&child, |m| {
            m.nlink = 0;
            m.ctime = now;
        });
        Ok(())
    }

    /// Whether directory `ancestor` is a proper ancestor of `ino`. Reads the
    /// parent pointers, which only cross-directory renames change: callers
    /// hold the rename lock, or accept a racy answer.
    fn is_ancestor(&self, ancestor: u64, mut ino: u64) -> bool {
        while ino != FUSE_ROOT_ID {
            let Some(inode) = self.table.get(ino) else {
                return false;
            };
            let parent = inode.parent.load(Ordering::Acquire);
            if parent == ancestor {
                return true;
            }
            if parent == ino {
                return false;
            }
            ino = parent;
        }
        false
    }

    /// RENAME, with `RENAME_NOREPLACE`, `RENAME_EXCHANGE` or
    /// `RENAME_WHITEOUT` (which, as on tmpfs, leaves a character device
    /// 0:0 owned by the caller under the old name).
    pub(super) fn rename_impl(
        &self,
        req: &RequestHeader,
        op: &op::Rename<'_>,
    ) -> Result<(), Errno> {
        let (parent, newparent, flags) = (op.parent(), op.newparent(), op.flags());
        let (name, newname) = (op.name().to_bytes(), op.newname().to_bytes());
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0
            || (flags & RENAME_EXCHANGE != 0 && flags & (RENAME_NOREPLACE | RENAME_WHITEOUT) != 0)
        {
            return Err(Errno::EINVAL);
        }
        check_name(name)?;
        check_name(newname)?;
        if [name, newname].iter().any(|n| *n == b"." || *n == b"..") {
            return Err(Errno::EBUSY);
        }
        let src_parent = self.dir_inode(parent)?;
        let dst_parent = self.dir_inode(newparent)?;
        let src_lock = src_parent.dir().ok_or(Errno::ENOTDIR)?;
        let dst_lock = dst_parent.dir().ok_or(Errno::ENOTDIR)?;
        let replaced = if parent == newparent {
            let mut dir = write(src_lock);
            self.rename_locked(req, op, &src_parent, &mut dir, None)?
        } else {
            let _tree = super::inode::lock(&self.rename_lock);
            // Ancestor first; unrelated directories by inode number.
            let dst_first = self.is_ancestor(newparent, parent)
                || (!self.is_ancestor(parent, newparent) && newparent < parent);
            let (mut src, mut dst): (RwLockWriteGuard<'_, Dir>, RwLockWriteGuard<'_, Dir>) =
                if dst_first {
                    let dst = write(dst_lock);
                    (write(src_lock), dst)
                } else {
                    let src = write(src_lock);
                    (src, write(dst_lock))
                };
            self.rename_locked(
                req,
                op,
                &src_parent,
                &mut src,
                Some((&dst_parent, &mut dst)),
            )?
        };
        if let Some(inode) = replaced {
            self.unref(&inode, |_| {});
        }
        Ok(())
    }

    /// The body of RENAME with the parent directories locked (`dst` is
    /// `None` for a rename within `src`). Returns an inode that lost a name
    /// and may have to be freed once the locks are dropped.
    fn rename_locked(
        &self,
        req: &RequestHeader,
        op: &op::Rename<'_>,
        src_parent: &Inode,
        src: &mut Dir,
        dst: Option<(&Inode, &mut Dir)>,
    ) -> Result<Option<Arc<Inode>>, Errno> {
        let (name, newname, flags) = (op.name().to_bytes(), op.newname().to_bytes(), op.flags());
        let cross = dst.is_some();
        let (dst_parent, mut dst) = match dst {
            Some((p, d)) => (p, Some(d)),
            None => (src_parent, None),
        };
        macro_rules! dst_dir {
            () => {
                match dst.as_deref_mut() {
                    Some(d) => d,
                    None => &mut *src,
                }
            };
        }
        if src.removed || dst_dir!().removed {
            return Err(Errno::ENOENT);
        }
        // Checks in the order Linux makes them (do_renameat2, vfs_rename).
        let s = src.get(name).ok_or(Errno::ENOENT)?.clone();
        let s_inode = self.inode(s.ino)?;
        let target = dst_dir!().get(newname).map(|e| (e.ino, e.dtype));
        let exchange = flags & RENAME_EXCHANGE != 0;
        if target.is_some() && flags & RENAME_NOREPLACE != 0 {
            return Err(Errno::EEXIST);
        }
        if target.is_none() && exchange {
            return Err(Errno::ENOENT);
        }
        // The source may not contain the destination directory...
        if cross
            && s_inode.is_dir()
            && (dst_parent.ino == s.ino || self.is_ancestor(s.ino, dst_parent.ino))
        {
            return Err(Errno::EINVAL);
        }
        let now = Timespec::now();
        // Made once every check has passed, before anything changes.
        let whiteout = || {
            (flags & RENAME_WHITEOUT != 0)
                .then(|| self.new_whiteout(req, src_parent))
                .transpose()
        };
        let Some((t_ino, t_dtype)) = target else {
            // Plain move to a free name.
            let whiteout = whiteout()?;
            src.remove(name);
            dst_dir!().insert(newname, s.ino, s.dtype);
            if cross {
                self.moved_between(src_parent, dst_parent, &s_inode, now);
            } else {
                lock(&src_parent.meta).modified(now);
            }
            lock(&s_inode.meta).ctime = now;
            if let Some(w) = whiteout {
                Self::put_whiteout(src_parent, src, name, &w);
            }
            return Ok(None);
        };
        // ...nor the target the source directory (then it is not empty).
        if cross && (src_parent.ino == t_ino || self.is_ancestor(t_ino, src_parent.ino)) {
            return Err(if exchange {
                Errno::EINVAL
            } else {
                Errno::ENOTEMPTY
            });
        }
        if t_ino == s.ino {
            return Ok(None);
        }
        let t_inode = self.inode(t_ino)?;
        if exchange {
            src.retarget(name, t_ino, t_dtype);
            dst_dir!().retarget(newname, s.ino, s.dtype);
            if cross {
                self.moved_between(src_parent, dst_parent, &s_inode, now);
                self.moved_between(dst_parent, src_parent, &t_inode, now);
            } else {
                lock(&src_parent.meta).modified(now);
            }
            lock(&s_inode.meta).ctime = now;
            lock(&t_inode.meta).ctime = now;
            return Ok(None);
        }
        match (s_inode.is_dir(), t_inode.is_dir()) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            _ => {}
        }
        let whiteout = if let Some(t_dir) = t_inode.dir() {
            let mut t_dir = write(t_dir);
            if !t_dir.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            let whiteout = whiteout()?;
            t_dir.removed = true;
            whiteout
        } else {
            whiteout()?
        };
        // Replace: the target's entry now names the source.
        dst_dir!().retarget(newname, s.ino, s.dtype);
        src.remove(name);
        {
            let mut tm = lock(&t_inode.meta);
            tm.nlink = if t_inode.is_dir() {
                0
            } else {
                tm.nlink.saturating_sub(1)
            };
            tm.ctime = now;
        }
        {
            let mut dm = lock(&dst_parent.meta);
            if t_inode.is_dir() {
                dm.nlink -= 1;
            }
            dm.modified(now);
        }
        if cross {
            // The source's old name goes away; its new one took the
            // target's, so only the source directory shrinks.
            self.moved_between(src_parent, dst_parent, &s_inode, now);
            lock(&dst_parent.meta).size -= DIRENT_BOGO_SIZE;
        } else {
            let mut pm = lock(&src_parent.meta);
            pm.size -= DIRENT_BOGO_SIZE;
        }
        lock(&s_inode.meta).ctime = now;
        if let Some(w) = whiteout {
            Self::put_whiteout(src_parent, src, name, &w);
        }
        Ok(Some(t_inode))
    }

    /// A whiteout for RENAME_WHITEOUT in directory `parent`: a character
    /// device 0:0 with no permission bits, owned like any new inode, not
    /// yet named, with no lookup reference.
    fn new_whiteout(&self, req: &RequestHeader, parent: &Inode) -> Result<Arc<Inode>, Errno> {
        let meta = {
            let pm = lock(&parent.meta);
            let (uid, gid, mode) = ownership(req, &pm, libc::S_IFCHR);
            Meta::new(mode, uid, gid, 1, Timespec::now())
        };
        let inode = self.new_inode(meta, Body::Special, parent.ino, 0)?;
        lock(&inode.meta).lookups = 0;
        Ok(inode)
    }

    /// Names the whiteout `name` in `parent` (whose lock `dir` is).
    fn put_whiteout(parent: &Inode, dir: &mut Dir, name: &[u8], whiteout: &Inode) {
        dir.insert(name, whiteout.ino, whiteout.dtype());
        lock(&parent.meta).size += DIRENT_BOGO_SIZE;
    }

    /// Bookkeeping for `moved` going from directory `from` to `to`: sizes,
    /// times, and for a directory the link counts and its parent pointer.
    fn moved_between(&self, from: &Inode, to: &Inode, moved: &Inode, now: Timespec) {
        let is_dir = moved.is_dir();
        if is_dir {
            moved.parent.store(to.ino, Ordering::Release);
        }
        {
            let mut fm = lock(&from.meta);
            fm.size -= DIRENT_BOGO_SIZE;
            if is_dir {
                fm.nlink -= 1;
            }
            fm.modified(now);
        }
        let mut tm = lock(&to.meta);
        tm.size += DIRENT_BOGO_SIZE;
        if is_dir {
            tm.nlink += 1;
        }
        tm.modified(now);
    }
}
