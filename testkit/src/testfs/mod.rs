//! Small filesystems to serve in tests, each once:
//!
//! - [`TestFs`]: a tiny in-memory tree whose files the test can inspect.
//! - [`RangeFs`]: one file answered as a file range (splice, pread), from
//!   another thread if asked ([`Defer`]), for transport tests.
//! - [`BenchFs`]: a fixed tree that allocates nothing per request, for
//!   benchmarks and zero-allocation tests of the core.

mod bench;
mod range;

pub use bench::BenchFs;
pub use range::{Defer, RangeFs, pattern};

use fuselage_core::abi::{FUSE_ROOT_ID, fuse_attr, fuse_kstatfs};
use fuselage_core::dirent::dtype;
use fuselage_core::reply::{
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, entry_out,
};
use fuselage_core::{DirentError, Errno, Filesystem, ReplySink, RequestHeader, op};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Cache timeout of every entry and attribute TestFs answers with.
pub const TTL: Duration = Duration::from_secs(1);

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const O_ACCMODE: u32 = 0o3;
const O_TRUNC: u32 = 0o1000;

#[derive(Debug)]
enum Kind {
    File(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, u64>),
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    /// Permission bits (the type comes from `kind`).
    perm: u32,
    nlink: u32,
    parent: u64,
    /// Lookup references the kernel holds.
    lookups: u64,
}

#[derive(Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    next_fh: u64,
    /// Open file and directory handles and their inodes.
    handles: HashMap<u64, u64>,
    destroyed: bool,
}

impl State {
    fn attr(&self, ino: u64) -> Option<fuse_attr> {
        let n = self.nodes.get(&ino)?;
        let (size, typ) = match &n.kind {
            Kind::File(data) => (data.len() as u64, S_IFREG),
            Kind::Dir(_) => (4096, S_IFDIR),
        };
        Some(fuse_attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            mode: typ | n.perm,
            nlink: n.nlink,
            blksize: 4096,
            ..Default::default()
        })
    }

    fn child(&self, parent: u64, name: &[u8]) -> Result<u64, Errno> {
        match &self.nodes.get(&parent).ok_or(Errno::ENOENT)?.kind {
            Kind::Dir(entries) => entries.get(name).copied().ok_or(Errno::ENOENT),
            Kind::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn insert(&mut self, parent: u64, name: &[u8], kind: Kind, perm: u32) -> Result<u64, Errno> {
        let ino = self.next_ino;
        let is_dir = matches!(kind, Kind::Dir(_));
        let Some(Node {
            kind: Kind::Dir(entries),
            ..
        }) = self.nodes.get_mut(&parent)
        else {
            return Err(if self.nodes.contains_key(&parent) {
                Errno::ENOTDIR
            } else {
                Errno::ENOENT
            });
        };
        if entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        entries.insert(name.to_vec(), ino);
        if is_dir {
            self.nodes.get_mut(&parent).expect("parent exists").nlink += 1;
        }
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                kind,
                perm: perm & 0o7777,
                nlink: if is_dir { 2 } else { 1 },
                parent,
                lookups: 0,
            },
        );
        Ok(ino)
    }

    /// Counts one lookup of `ino` and builds its entry reply.
    fn looked_up(&mut self, ino: u64) -> fuselage_core::abi::fuse_entry_out {
        let attr = self.attr(ino).expect("inode exists");
        self.nodes.get_mut(&ino).expect("inode exists").lookups += 1;
        entry_out(attr, 0, TTL, TTL)
    }

    /// Drops `ino` once nothing refers to it.
    fn maybe_drop(&mut self, ino: u64) {
        if ino == FUSE_ROOT_ID {
            return;
        }
        let open = self.handles.values().any(|&i| i == ino);
        if let Some(n) = self.nodes.get(&ino)
            && n.nlink == 0
            && n.lookups == 0
            && !open
        {
            self.nodes.remove(&ino);
        }
    }

    fn remove_entry(&mut self, parent: u64, name: &[u8], want_dir: bool) -> Result<(), Errno> {
        let ino = self.child(parent, name)?;
        match (&self.nodes[&ino].kind, want_dir) {
            (Kind::Dir(_), false) => return Err(Errno::EISDIR),
            (Kind::File(_), true) => return Err(Errno::ENOTDIR),
            (Kind::Dir(e), true) if !e.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        if let Some(Node {
            kind: Kind::Dir(entries),
            nlink,
            ..
        }) = self.nodes.get_mut(&parent)
        {
            entries.remove(name);
            if want_dir {
                *nlink -= 1;
            }
        }
        self.nodes.get_mut(&ino).expect("inode exists").nlink = 0;
        self.maybe_drop(ino);
        Ok(())
    }

    fn resolve(&self, path: &str) -> Option<u64> {
        path.split('/')
            .filter(|c| !c.is_empty())
            .try_fold(FUSE_ROOT_ID, |dir, c| self.child(dir, c.as_bytes()).ok())
    }
}

/// A small in-memory filesystem for tests, shared between the server and the
/// test: clones of a `TestFs` see the same files, so a test keeps one clone
/// to look at what the requests did.
///
/// It starts with:
///
/// ```text
/// /                 (ino 1)
/// /hello.txt        (ino 2)  "Hello, fuselage!\n"
/// /empty            (ino 3)  no bytes
/// /data.bin         (ino 4)  8192 bytes, byte i = i % 251
/// /subdir           (ino 5)
/// /subdir/nested.txt (ino 6) "nested\n"
/// ```
///
/// It answers LOOKUP, FORGET, GETATTR, SETATTR (mode, size), OPEN (with
/// `O_TRUNC`), READ, WRITE, RELEASE, CREATE, MKDIR, UNLINK, RMDIR, OPENDIR,
/// READDIR and READDIRPLUS (with `.` and `..`; entry `i` resumes at offset
/// `i + 1`), RELEASEDIR and STATFS; anything else gets `ENOSYS`. Lookup
/// references are counted per inode, and an unlinked inode lives until the
/// kernel forgets it and its last handle is released.
#[derive(Debug, Clone)]
pub struct TestFs {
    state: Arc<Mutex<State>>,
}

impl Default for TestFs {
    fn default() -> Self {
        TestFs::new()
    }
}

impl TestFs {
    /// Inode of `/hello.txt`.
    pub const HELLO_INO: u64 = 2;
    /// Contents of `/hello.txt`.
    pub const HELLO: &'static [u8] = b"Hello, fuselage!\n";
    /// Inode of `/empty`.
    pub const EMPTY_INO: u64 = 3;
    /// Inode of `/data.bin` (8192 bytes, byte `i` is `i % 251`).
    pub const DATA_INO: u64 = 4;
    /// Inode of `/subdir`.
    pub const SUBDIR_INO: u64 = 5;
    /// Inode of `/subdir/nested.txt`.
    pub const NESTED_INO: u64 = 6;

    /// The filesystem with its initial files.
    pub fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            FUSE_ROOT_ID,
            Node {
                kind: Kind::Dir(BTreeMap::new()),
                perm: 0o755,
                nlink: 2,
                parent: FUSE_ROOT_ID,
                lookups: 0,
            },
        );
        let mut state = State {
            nodes,
            next_ino: 2,
            next_fh: 1,
            handles: HashMap::new(),
            destroyed: false,
        };
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let files: [(u64, &[u8], Kind, u32); 5] = [
            (
                FUSE_ROOT_ID,
                b"hello.txt",
                Kind::File(Self::HELLO.to_vec()),
                0o644,
            ),
            (FUSE_ROOT_ID, b"empty", Kind::File(Vec::new()), 0o644),
            (FUSE_ROOT_ID, b"data.bin", Kind::File(data), 0o644),
            (FUSE_ROOT_ID, b"subdir", Kind::Dir(BTreeMap::new()), 0o755),
            (
                Self::SUBDIR_INO,
                b"nested.txt",
                Kind::File(b"nested\n".to_vec()),
                0o644,
            ),
        ];
        for (parent, name, kind, perm) in files {
            state
                .insert(parent, name, kind, perm)
                .expect("initial tree is consistent");
        }
        TestFs {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide the
        // filesystem from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inode at `path` (`/`-separated, from the root), if any.
    pub fn inode(&self, path: &str) -> Option<u64> {
        self.lock().resolve(path)
    }

    /// The contents of the regular file at `path`.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        let ino = self.inode(path)?;
        self.contents(ino)
    }

    /// The contents of regular file `ino` (also after it was unlinked, while
    /// it lives).
    pub fn contents(&self, ino: u64) -> Option<Vec<u8>> {
        match &self.lock().nodes.get(&ino)?.kind {
            Kind::File(data) => Some(data.clone()),
            Kind::Dir(_) => None,
        }
    }

    /// The names in the directory at `path`, sorted.
    pub fn list(&self, path: &str) -> Option<Vec<Vec<u8>>> {
        let st = self.lock();
        let ino = st.resolve(path)?;
        match &st.nodes.get(&ino)?.kind {
            Kind::Dir(entries) => Some(entries.keys().cloned().collect()),
            Kind::File(_) => None,
        }
    }

    /// Creates (or replaces) the regular file `name` in directory `parent`;
    /// returns its inode.
    pub fn insert_file(&self, parent: u64, name: &[u8], data: &[u8]) -> Result<u64, Errno> {
        let mut st = self.lock();
        if let Ok(ino) = st.child(parent, name)
            && let Some(Node {
                kind: Kind::File(old),
                ..
            }) = st.nodes.get_mut(&ino)
        {
            *old = data.to_vec();
            return Ok(ino);
        }
        st.insert(parent, name, Kind::File(data.to_vec()), 0o644)
    }

    /// Lookup references the kernel holds on `ino` (0 once forgotten or
    /// gone).
    pub fn lookup_count(&self, ino: u64) -> u64 {
        self.lock().nodes.get(&ino).map_or(0, |n| n.lookups)
    }

    /// Whether inode `ino` still exists.
    pub fn exists(&self, ino: u64) -> bool {
        self.lock().nodes.contains_key(&ino)
    }

    /// Number of open file and directory handles.
    pub fn open_handles(&self) -> usize {
        self.lock().handles.len()
    }

    /// Whether DESTROY arrived.
    pub fn destroyed(&self) -> bool {
        self.lock().destroyed
    }

    fn new_handle(st: &mut State, ino: u64) -> u64 {
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, ino);
        fh
    }

    /// Packs directory `ino` from `offset` into `reply` (`plus`: with entry
    /// replies, counting lookups of what was packed).
    fn fill_dir<S: ReplySink>(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        let mut st = self.lock();
        let (entries, parent) = match st.nodes.get(&ino) {
            Some(Node {
                kind: Kind::Dir(e),
                parent,
                ..
            }) => (e.clone(), *parent),
            Some(_) => return reply.error(Errno::ENOTDIR),
            None => return reply.error(Errno::ENOENT),
        };
        let all = [(b".".to_vec(), ino), (b"..".to_vec(), parent)]
            .into_iter()
            .chain(entries);
        for (i, (name, child)) in all.enumerate().skip(offset as usize) {
            let attr = st.attr(child).expect("directory entries exist");
            let typ = dtype::from_mode(attr.mode);
            let next = i as u64 + 1;
            let pushed = if plus {
                let dot = name == b"." || name == b"..";
                let entry = entry_out(attr, 0, TTL, TTL);
                let pushed = reply.push_plus(&entry, next, typ, &name);
                if pushed.is_ok() && !dot {
                    st.nodes.get_mut(&child).expect("exists").lookups += 1;
                }
                pushed
            } else {
                reply.push(child, next, typ, &name)
            };
            match pushed {
                Ok(()) | Err(DirentError::InvalidName) => {}
                Err(DirentError::Full) => break,
            }
        }
        drop(st);
        reply.ok()
    }
}

impl Filesystem for TestFs {
    fn destroy(&self) {
        self.lock().destroyed = true;
    }

    fn lookup<S: ReplySink>(&self, _: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let mut st = self.lock();
        match st.child(op.parent(), op.name().to_bytes()) {
            Ok(ino) => {
                let entry = st.looked_up(ino);
                drop(st);
                reply.entry(&entry)
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _: &RequestHeader, op: op::Forget) {
        let (ino, nlookup) = (op.ino(), op.nlookup());
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.lookups = n.lookups.saturating_sub(nlookup);
        }
        st.maybe_drop(ino);
    }

    fn getattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        let attr = self.lock().attr(op.ino());
        match attr {
            Some(a) => reply.attr(TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Setattr<'_>, reply: ReplyAttr<S>) {
        let (ino, set) = (op.ino(), op.attr());
        let mut st = self.lock();
        let Some(node) = st.nodes.get_mut(&ino) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(mode) = set.mode {
            node.perm = mode & 0o7777;
        }
        if let Some(size) = set.size {
            match &mut node.kind {
                Kind::File(data) => data.resize(size as usize, 0),
                Kind::Dir(_) => return reply.error(Errno::EISDIR),
            }
        }
        let attr = st.attr(ino).expect("exists");
        drop(st);
        reply.attr(TTL, &attr)
    }

    fn mkdir<S: ReplySink>(&self, _: &RequestHeader, op: op::Mkdir<'_>, reply: ReplyEntry<S>) {
        let mut st = self.lock();
        match st.insert(
            op.parent(),
            op.name().to_bytes(),
            Kind::Dir(BTreeMap::new()),
            op.mode() & !op.umask(),
        ) {
            Ok(ino) => {
                let entry = st.looked_up(ino);
                drop(st);
                reply.entry(&entry)
            }
            Err(e) => reply.error(e),
        }
    }

    fn unlink<S: ReplySink>(&self, _: &RequestHeader, op: op::Unlink<'_>, reply: ReplyEmpty<S>) {
        let r = self
            .lock()
            .remove_entry(op.parent(), op.name().to_bytes(), false);
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir<S: ReplySink>(&self, _: &RequestHeader, op: op::Rmdir<'_>, reply: ReplyEmpty<S>) {
        let r = self
            .lock()
            .remove_entry(op.parent(), op.name().to_bytes(), true);
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open<S: ReplySink>(&self, _: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        let (ino, flags) = (op.ino(), op.flags());
        let mut st = self.lock();
        match st.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File(data)) => {
                if flags & O_TRUNC != 0 && flags & O_ACCMODE != 0 {
                    data.clear();
                }
            }
            Some(Kind::Dir(_)) => return reply.error(Errno::EISDIR),
            None => return reply.error(Errno::ENOENT),
        }
        let fh = Self::new_handle(&mut st, ino);
        drop(st);
        reply.opened(fh, 0)
    }

    fn read<S: ReplySink>(&self, _: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        let (ino, fh, offset, size) = (op.ino(), op.fh(), op.offset(), op.size());
        let st = self.lock();
        if st.handles.get(&fh) != Some(&ino) {
            return reply.error(Errno::EBADF);
        }
        match st.nodes.get(&ino).map(|n| &n.kind) {
            Some(Kind::File(data)) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end])
            }
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn write<S: ReplySink>(&self, _: &RequestHeader, op: op::Write<'_>, reply: ReplyWrite<S>) {
        let (ino, fh, offset, data) = (op.ino(), op.fh(), op.offset(), op.data());
        let mut st = self.lock();
        if st.handles.get(&fh) != Some(&ino) {
            return reply.error(Errno::EBADF);
        }
        match st.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File(contents)) => {
                let start = offset as usize;
                let end = start + data.len();
                if contents.len() < end {
                    contents.resize(end, 0);
                }
                contents[start..end].copy_from_slice(data);
                drop(st);
                reply.written(data.len() as u32)
            }
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn statfs<S: ReplySink>(&self, _: &RequestHeader, _: op::Statfs, reply: ReplyStatfs<S>) {
        let files = self.lock().nodes.len() as u64;
        reply.statfs(&fuse_kstatfs {
            blocks: 1 << 20,
            bfree: 1 << 19,
            bavail: 1 << 19,
            files,
            ffree: 1 << 20,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
            ..Default::default()
        })
    }

    fn release<S: ReplySink>(&self, _: &RequestHeader, op: op::Release<'_>, reply: ReplyEmpty<S>) {
        let (ino, fh) = (op.ino(), op.fh());
        let mut st = self.lock();
        if st.handles.remove(&fh).is_none() {
            return reply.error(Errno::EBADF);
        }
        st.maybe_drop(ino);
        drop(st);
        reply.ok()
    }

    fn create<S: ReplySink>(&self, _: &RequestHeader, op: op::Create<'_>, reply: ReplyCreate<S>) {
        let (parent, name, mode, umask) = (op.parent(), op.name(), op.mode(), op.umask());
        if mode & S_IFMT != S_IFREG && mode & S_IFMT != 0 {
            return reply.error(Errno::EINVAL);
        }
        let mut st = self.lock();
        match st.insert(
            parent,
            name.to_bytes(),
            Kind::File(Vec::new()),
            mode & !umask,
        ) {
            Ok(ino) => {
                let entry = st.looked_up(ino);
                let fh = Self::new_handle(&mut st, ino);
                drop(st);
                reply.created(&entry, fh, 0)
            }
            Err(e) => reply.error(e),
        }
    }

    fn opendir<S: ReplySink>(&self, _: &RequestHeader, op: op::Opendir<'_>, reply: ReplyOpen<S>) {
        let ino = op.ino();
        let mut st = self.lock();
        match st.nodes.get(&ino).map(|n| &n.kind) {
            Some(Kind::Dir(_)) => {
                let fh = Self::new_handle(&mut st, ino);
                drop(st);
                reply.opened(fh, 0)
            }
            Some(Kind::File(_)) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir<S: ReplySink>(
        &self,
        _: &RequestHeader,
        op: op::Readdir<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        self.fill_dir(op.ino(), op.offset(), false, reply)
    }

    fn readdirplus<S: ReplySink>(
        &self,
        _: &RequestHeader,
        op: op::Readdirplus<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        self.fill_dir(op.ino(), op.offset(), true, reply)
    }

    fn releasedir<S: ReplySink>(
        &self,
        _: &RequestHeader,
        op: op::Releasedir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        match self.lock().handles.remove(&op.fh()) {
            Some(_) => reply.ok(),
            None => reply.error(Errno::EBADF),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_tree() {
        let fs = TestFs::new();
        assert_eq!(fs.inode("hello.txt"), Some(TestFs::HELLO_INO));
        assert_eq!(fs.inode("/subdir/nested.txt"), Some(TestFs::NESTED_INO));
        assert_eq!(fs.inode("/data.bin"), Some(TestFs::DATA_INO));
        assert_eq!(fs.file("hello.txt").as_deref(), Some(TestFs::HELLO));
        assert_eq!(fs.file("data.bin").unwrap()[300], (300 % 251) as u8);
        assert_eq!(
            fs.list("/").unwrap(),
            vec![
                b"data.bin".to_vec(),
                b"empty".to_vec(),
                b"hello.txt".to_vec(),
                b"subdir".to_vec()
            ]
        );
        assert_eq!(fs.insert_file(1, b"new", b"x"), Ok(7));
        assert_eq!(fs.insert_file(1, b"new", b"yz"), Ok(7));
        assert_eq!(fs.file("new").unwrap(), b"yz");
        assert_eq!(fs.insert_file(2, b"x", b""), Err(Errno::ENOTDIR));
    }
}
