//! Names: LOOKUP, MKDIR, MKNOD, SYMLINK, LINK, UNLINK, RMDIR, RENAME, CREATE,
//! TMPFILE, READLINK.
//!
//! Every call works on a parent directory's descriptor and one name
//! component. Creation calls (`mkdirat`, `mknodat`, `symlinkat`, `linkat`,
//! `renameat2`, `unlinkat`) never follow a final symlink; opens use openat2
//! with the confining resolve flags and `O_NOFOLLOW`.

use super::inode_store::Inode;
use super::sys::{self, SysResult};
use super::{Created, HeldDir, PassthroughFs, check_name, open_name, proc_fd};
use fuselage_core::abi::fuse_entry_out;
use fuselage_core::reply::{ReplyData, ReplySink};
use fuselage_core::{Errno, RequestHeader};
use std::cell::RefCell;
use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

thread_local! {
    /// Symlink targets are read into this (PATH_MAX), once per thread.
    static LINK_BUF: RefCell<[u8; 4096]> = const { RefCell::new([0; 4096]) };
}

impl PassthroughFs {
    pub(crate) fn do_lookup(&self, parent: u64, name: &CStr) -> SysResult<(u64, fuse_entry_out)> {
        check_name(name)?;
        let dir = self.dir_fd(parent)?;
        self.lookup_at(&dir.inode, dir.as_fd(), name)
    }

    /// Enters `name`, just created in `dir` by a call that returns no
    /// descriptor. If it was created with the server's credentials for
    /// `owner`, it is given to them, but only after checking that the name
    /// still leads to what we created (our type, our uid, a single link), so a
    /// host process swapping the name meanwhile cannot get some other file
    /// chowned.
    fn enter_created(
        &self,
        dir: &HeldDir,
        name: &CStr,
        kind: u32,
        owner: Option<(u32, u32)>,
        mode: Option<u32>,
    ) -> SysResult<fuse_entry_out> {
        let fd = open_name(dir.as_fd(), name)?;
        if let Some(owner) = owner {
            let st = self.stat(fd.as_fd())?;
            let fresh_links = if kind == libc::S_IFDIR { 2 } else { 1 };
            if u32::from(st.stx_mode) & libc::S_IFMT != kind
                || st.stx_uid != self.server_ids.0
                || st.stx_nlink != fresh_links
            {
                return Err(Errno::EEXIST);
            }
            self.give_to(fd.as_fd(), dir.as_fd(), owner, mode)?;
        }
        let (_, _, entry) = self.enter(fd, Some((&dir.inode, name)))?;
        Ok(entry)
    }

    pub(crate) fn do_mkdir(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> SysResult<fuse_entry_out> {
        self.writable()?;
        check_name(name)?;
        let dir = self.dir_fd(parent)?;
        let ((), owner) =
            self.create_as(req, Some(umask), |_| sys::mkdirat(dir.as_fd(), name, mode))?;
        self.enter_created(&dir, name, libc::S_IFDIR, owner, Some(mode))
    }

    pub(crate) fn do_mknod(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> SysResult<fuse_entry_out> {
        self.writable()?;
        check_name(name)?;
        let dir = self.dir_fd(parent)?;
        let kind = mode & libc::S_IFMT;
        let ((), owner) = self.create_as(req, Some(umask), |_| {
            sys::mknodat(dir.as_fd(), name, mode, sys::decode_dev(rdev))
        })?;
        let kind = if kind == 0 { libc::S_IFREG } else { kind };
        self.enter_created(&dir, name, kind, owner, Some(mode))
    }

    pub(crate) fn do_symlink(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        target: &CStr,
    ) -> SysResult<fuse_entry_out> {
        self.writable()?;
        check_name(name)?;
        let dir = self.dir_fd(parent)?;
        let ((), owner) =
            self.create_as(req, None, |_| sys::symlinkat(target, dir.as_fd(), name))?;
        self.enter_created(&dir, name, libc::S_IFLNK, owner, None)
    }

    pub(crate) fn do_link(
        &self,
        ino: u64,
        newparent: u64,
        newname: &CStr,
    ) -> SysResult<fuse_entry_out> {
        self.writable()?;
        check_name(newname)?;
        let inode = self.inode(ino)?;
        let dir = self.dir_fd(newparent)?;
        let src = self.store.fd(&inode)?;
        match sys::link_empty(src.as_fd(), dir.as_fd(), newname) {
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH: link through the proc
            // magic link instead (which resolves to the inode itself).
            Err(Errno::ENOENT) | Err(Errno::EPERM) if !inode.is_dir() => sys::link_proc(
                proc_fd::ProcPath::new(src.as_fd()).as_cstr(),
                dir.as_fd(),
                newname,
            )?,
            other => other?,
        }
        drop(src);
        let (_, entry) = self.lookup_at(&dir.inode, dir.as_fd(), newname)?;
        Ok(entry)
    }

    pub(crate) fn do_unlink(&self, parent: u64, name: &CStr, flags: libc::c_int) -> SysResult<()> {
        self.writable()?;
        check_name(name)?;
        let dir = self.dir_fd(parent)?;
        // Without file handles an inode known by this name must keep its
        // descriptor: the name will lead nowhere.
        let gone = self.store.placed_at(dir.as_fd(), name);
        let detached = gone
            .as_ref()
            .is_some_and(|i| self.store.detach(i, &dir.inode, name));
        let r = sys::unlinkat(dir.as_fd(), name, flags);
        if r.is_err()
            && detached
            && let Some(inode) = &gone
        {
            self.store.note_place(inode, &dir.inode, name);
        }
        r
    }

    pub(crate) fn do_rename(
        &self,
        parent: u64,
        name: &CStr,
        newparent: u64,
        newname: &CStr,
        flags: u32,
    ) -> SysResult<()> {
        self.writable()?;
        check_name(name)?;
        check_name(newname)?;
        let olddir = self.dir_fd(parent)?;
        let newdir = self.dir_fd(newparent)?;
        // Without file handles, inodes are found again by their places:
        // move the renamed one's, and pin whatever the new name replaces.
        let moved = self.store.placed_at(olddir.as_fd(), name);
        let target = self.store.placed_at(newdir.as_fd(), newname);
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let detached = !exchange
            && target
                .as_ref()
                .is_some_and(|i| self.store.detach(i, &newdir.inode, newname));
        let r = sys::renameat2(olddir.as_fd(), name, newdir.as_fd(), newname, flags);
        if r.is_ok() {
            if let Some(inode) = &moved {
                self.store.note_place(inode, &newdir.inode, newname);
            }
            if exchange && let Some(inode) = &target {
                self.store.note_place(inode, &olddir.inode, name);
            }
        } else if detached && let Some(inode) = &target {
            self.store.note_place(inode, &newdir.inode, newname);
        }
        r
    }

    pub(crate) fn do_create(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
        flags: u32,
    ) -> SysResult<Created> {
        self.writable()?;
        check_name(name)?;
        let dir = self.dir_fd(parent)?;
        let flags = (flags as i32 & !libc::O_NOCTTY) | libc::O_CREAT | libc::O_NOFOLLOW;
        let (fd, owner) = self.create_as(req, Some(umask), |as_server| {
            // With the server's credentials, only ever make a new file:
            // never open (and then give away) an existing one.
            let extra = if as_server { libc::O_EXCL } else { 0 };
            sys::openat2(
                dir.as_fd(),
                name,
                flags | extra,
                mode,
                sys::RESOLVE_CONFINED,
            )
        })?;
        self.finish_create(fd, &dir, Some(name), owner, mode, flags)
    }

    pub(crate) fn do_tmpfile(
        &self,
        req: &RequestHeader,
        parent: u64,
        mode: u32,
        umask: u32,
        flags: u32,
    ) -> SysResult<Created> {
        self.writable()?;
        let dir = self.dir_fd(parent)?;
        let flags = (flags as i32 & !(libc::O_CREAT | libc::O_NOCTTY)) | libc::O_TMPFILE;
        let (fd, owner) = self.create_as(req, Some(umask), |_| {
            sys::openat2(dir.as_fd(), c".", flags, mode, sys::RESOLVE_CONFINED)
        })?;
        self.finish_create(fd, &dir, None, owner, mode, flags & !libc::O_TMPFILE)
    }

    /// Enters a file just created and opened as `fd` (as `name` in `dir`;
    /// an `O_TMPFILE` has none) and registers the open.
    fn finish_create(
        &self,
        fd: OwnedFd,
        dir: &HeldDir,
        name: Option<&CStr>,
        owner: Option<(u32, u32)>,
        mode: u32,
        flags: i32,
    ) -> SysResult<Created> {
        // The anchor is taken from the very descriptor the creation
        // returned, so it is exactly the new file.
        let path_fd = self.procs.path_fd(fd.as_fd())?;
        if let Some(owner) = owner {
            self.give_to(path_fd.as_fd(), dir.as_fd(), owner, Some(mode))?;
        }
        let place = name.map(|name| (&dir.inode, name));
        let (id, inode, entry): (u64, Arc<Inode>, fuse_entry_out) = self.enter(path_fd, place)?;
        let open = self.register_open(id, inode, fd, flags, false, entry.attr.mode);
        Ok(Created { entry, open })
    }

    pub(crate) fn do_readlink<S: ReplySink>(&self, ino: u64, reply: ReplyData<S>) {
        let inode = match self.inode(ino) {
            Ok(i) if i.kind == libc::S_IFLNK => i,
            Ok(_) => return reply.error(Errno::EINVAL),
            Err(e) => return reply.error(e),
        };
        let fd = match self.store.fd(&inode) {
            Ok(fd) => fd,
            Err(e) => return reply.error(e),
        };
        LINK_BUF.with(|buf| {
            let Ok(mut buf) = buf.try_borrow_mut() else {
                return reply.error(Errno::EAGAIN);
            };
            match sys::readlink_empty(fd.as_fd(), &mut buf[..]) {
                Ok(n) if n < buf.len() => reply.data(&buf[..n]),
                Ok(_) => reply.error(Errno::ENAMETOOLONG),
                Err(e) => reply.error(e),
            }
        })
    }
}
