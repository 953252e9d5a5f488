//! The kernel side of the protocol: [`SimKernel`] writes requests byte for
//! byte as Linux does and reads the server's replies with the kernel's
//! checks.

use crate::channel::{Received, recv_message, seqpacket_pair, set_recv_timeout, wait_readable};
use crate::dirent::{DirEntry, DirEntryPlus, parse_direntplus, parse_dirents};
use crate::wire::{Reply, ReplyError, encode_request};
use fuselage_core::abi::*;
use fuselage_core::{InitFlags, Opcode};
use std::collections::{HashSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// How long [`SimKernel`] waits for a reply before giving up, unless changed
/// with [`SimKernel::set_timeout`]: a test never hangs on a lost reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `max_readahead` the simulated kernel offers at INIT (128 KiB).
pub const KERNEL_MAX_READAHEAD: u32 = 128 * 1024;

/// The INIT flags [`SimKernel::init`] offers: every flag of protocol 7.45
/// (bits 32 and up in `flags2`, announced by `INIT_EXT`), without the
/// reserved bit 31.
pub const OFFERED_FLAGS: InitFlags = InitFlags::all().difference(InitFlags::INIT_RESERVED);

/// Size of the INIT argument kernels before 7.36 send (up to `flags`).
const OLD_INIT_IN_SIZE: usize = 16;

/// Creates the simulated device: the kernel end, ready to send requests,
/// and the server end (close-on-exec) to hand to a server loop such as
/// [`serve`](crate::serve).
///
/// Both ends are a `SOCK_SEQPACKET` unix socket pair: one send is one
/// message, one receive reads one message whole, as with `/dev/fuse`. No
/// root and no mount are needed.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use fuselage_testkit::{channel_pair, serve, TestFs};
/// let (mut kernel, server_fd) = channel_pair()?;
/// let server = serve(TestFs::new(), Default::default(), server_fd);
/// let init = kernel.init().unwrap();
/// assert_eq!(init.minor, 45);
/// let entry = kernel.lookup(1, "hello.txt").unwrap();
/// kernel.destroy().unwrap();
/// server.join().unwrap()?;
/// # let _ = entry; Ok(()) }
/// ```
pub fn channel_pair() -> io::Result<(SimKernel, OwnedFd)> {
    let (kernel, server) = seqpacket_pair()?;
    Ok((SimKernel::new(kernel)?, server))
}

/// A GETXATTR or LISTXATTR answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Xattr {
    /// The size needed (the request asked with size 0).
    Size(u32),
    /// The value, or the NUL-separated list of names.
    Data(Vec<u8>),
}

/// The kernel end of a simulated FUSE connection.
///
/// Low level, [`request`](Self::request) and [`send_raw`](Self::send_raw)
/// write any message and [`recv_reply`](Self::recv_reply) reads one back;
/// high level, one method per operation (`lookup`, `read`, ...) builds the
/// request exactly as Linux 6.18 does and returns the decoded reply or the
/// errno.
///
/// Uniques are allocated like the kernel's (2, 4, 6, ...: bit 0 is left for
/// INTERRUPT, which reuses its target's unique with bit 0 set). Requests
/// carry the credentials set with [`set_credentials`](Self::set_credentials)
/// (by default this process's), except those the kernel sends without any
/// (INIT, DESTROY, FORGET, BATCH_FORGET, INTERRUPT, RELEASE, RELEASEDIR,
/// NOTIFY_REPLY), which carry zeros.
///
/// # Panics
///
/// The high-level methods panic when the channel fails (including a reply
/// that does not come within the timeout) or the reply is malformed (wrong
/// size for the opcode, bad directory records): in a test, that is the
/// failure to report. Use the low-level methods to test such cases.
#[derive(Debug)]
pub struct SimKernel {
    fd: OwnedFd,
    next_unique: u64,
    uid: u32,
    gid: u32,
    pid: u32,
    pending: VecDeque<Reply>,
    /// Uniques of requests sent that still wait for their reply.
    outstanding: HashSet<u64>,
    init_out: Option<fuse_init_out>,
}

fn op_name(opcode: u32) -> String {
    match Opcode::from_u32(opcode) {
        Some(op) => op.name().to_owned(),
        None => format!("opcode {opcode}"),
    }
}

fn with_nul(name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 1);
    v.extend_from_slice(name);
    v.push(0);
    v
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed its end")
}

impl SimKernel {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        set_recv_timeout(fd.as_fd(), Some(DEFAULT_TIMEOUT))?;
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(SimKernel {
            fd,
            next_unique: 2,
            uid,
            gid,
            pid: std::process::id(),
            pending: VecDeque::new(),
            outstanding: HashSet::new(),
            init_out: None,
        })
    }

    /// Sets how long a receive waits (`SO_RCVTIMEO`) before failing with
    /// [`io::ErrorKind::TimedOut`].
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        set_recv_timeout(self.fd.as_fd(), Some(timeout))
    }

    /// Sets the caller's `uid`, `gid` and `pid` put in later requests.
    pub fn set_credentials(&mut self, uid: u32, gid: u32, pid: u32) {
        (self.uid, self.gid, self.pid) = (uid, gid, pid);
    }

    /// The unique the next request will carry.
    pub fn next_unique(&self) -> u64 {
        self.next_unique
    }

    fn alloc_unique(&mut self) -> u64 {
        let u = self.next_unique;
        self.next_unique += 2;
        u
    }

    /// What the server agreed to at INIT, once an INIT of major 7 was
    /// answered successfully.
    pub fn init_out(&self) -> Option<&fuse_init_out> {
        self.init_out.as_ref()
    }

    fn agreed(&self, flag: InitFlags) -> bool {
        self.init_out.is_some_and(|o| {
            let flags2 = if o.flags & FUSE_INIT_EXT as u32 != 0 {
                o.flags2
            } else {
                0
            };
            InitFlags::from_wire(o.flags, flags2).contains(flag)
        })
    }

    // ---------------------------------------------------------------------
    // Low level
    // ---------------------------------------------------------------------

    /// Sends `msg` as one message, as it is. When it starts with an
    /// in-header of an opcode that expects a reply, its unique is noted as
    /// waiting for one.
    pub fn send_raw(&mut self, msg: &[u8]) -> io::Result<()> {
        crate::channel::send_parts(self.fd.as_fd(), &[msg])?;
        if let Ok((h, _)) = fuse_in_header::read_from_prefix(msg) {
            let no_reply = Opcode::from_u32(h.opcode).is_some_and(|o| o.is_no_reply());
            if !no_reply && h.unique & 1 == 0 {
                self.outstanding.insert(h.unique);
            }
        }
        Ok(())
    }

    /// Sends a request with every header field from `header` but `len`,
    /// which is computed.
    pub fn send_request(
        &mut self,
        header: &fuse_in_header,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> io::Result<()> {
        self.send_raw(&encode_request(header, arg, payload))
    }

    /// Sends a request with a fresh unique and the current credentials:
    /// in-header, `arg` (the opcode's struct), then the `payload` parts
    /// (names with their NUL, data). Returns the unique.
    pub fn request(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> io::Result<u64> {
        let unique = self.alloc_unique();
        let header = fuse_in_header {
            opcode,
            unique,
            nodeid,
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            ..Default::default()
        };
        self.send_request(&header, arg, payload)?;
        Ok(unique)
    }

    /// Like [`request`](Self::request), with zero credentials as the kernel
    /// sends INIT, DESTROY, FORGET, RELEASE and the like.
    fn request_nocreds(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> io::Result<u64> {
        let unique = self.alloc_unique();
        let header = fuse_in_header {
            opcode,
            unique,
            nodeid,
            ..Default::default()
        };
        self.send_request(&header, arg, payload)?;
        Ok(unique)
    }

    /// Receives the next message from the socket, unparsed (messages already
    /// received and queued by [`recv_reply_for`](Self::recv_reply_for) are
    /// not looked at).
    pub fn recv_raw(&mut self) -> io::Result<Vec<u8>> {
        let fd = self.fd.as_fd();
        let len = match recv_message(fd, &mut [], libc::MSG_PEEK)? {
            Received::Message(n) => n,
            Received::Closed => return Err(eof()),
        };
        let mut buf = vec![0u8; len];
        match recv_message(fd, &mut buf, 0)? {
            Received::Message(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Received::Closed => Err(eof()),
        }
    }

    fn recv_one(&mut self) -> io::Result<Reply> {
        let msg = self.recv_raw()?;
        let reply = Reply::parse(&msg)?;
        let unique = reply.unique();
        if unique & 1 != 0 {
            // An answer to an INTERRUPT (ENOSYS: no interrupt support,
            // EAGAIN: send it again): a header alone.
            if !reply.body.is_empty() {
                return Err(ReplyError::BodySize {
                    expected: 0,
                    got: reply.body.len(),
                }
                .into());
            }
        } else if unique != 0 && !self.outstanding.remove(&unique) {
            return Err(ReplyError::NotWaiting { unique }.into());
        }
        Ok(reply)
    }

    /// Receives the next reply or notification (queued ones first), checked
    /// as the kernel checks what a server writes: a message the kernel would
    /// refuse (including a second reply to one request) is an
    /// [`io::ErrorKind::InvalidData`] error.
    pub fn recv_reply(&mut self) -> io::Result<Reply> {
        match self.pending.pop_front() {
            Some(r) => Ok(r),
            None => self.recv_one(),
        }
    }

    /// Receives the reply to request `unique`; other messages that arrive
    /// first are queued for [`recv_reply`](Self::recv_reply).
    pub fn recv_reply_for(&mut self, unique: u64) -> io::Result<Reply> {
        self.recv_matching(|r| r.unique() == unique)
    }

    /// Receives the next notification (`unique` 0); replies that arrive
    /// first are queued.
    pub fn recv_notification(&mut self) -> io::Result<Reply> {
        self.recv_matching(Reply::is_notification)
    }

    fn recv_matching(&mut self, wanted: impl Fn(&Reply) -> bool) -> io::Result<Reply> {
        if let Some(i) = self.pending.iter().position(&wanted) {
            return Ok(self.pending.remove(i).expect("index in range"));
        }
        loop {
            let r = self.recv_one()?;
            if wanted(&r) {
                return Ok(r);
            }
            self.pending.push_back(r);
        }
    }

    /// Waits at most `timeout` for a message: `None` when none came (e.g. to
    /// check that FORGET is not answered).
    pub fn poll_reply(&mut self, timeout: Duration) -> io::Result<Option<Reply>> {
        if let Some(r) = self.pending.pop_front() {
            return Ok(Some(r));
        }
        if wait_readable(self.fd.as_fd(), timeout)? {
            self.recv_one().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Sends a request and receives its reply (checking its unique).
    pub fn call(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> io::Result<Reply> {
        let unique = self.request(opcode, nodeid, arg, payload)?;
        self.recv_reply_for(unique)
    }

    // ---------------------------------------------------------------------
    // Plumbing of the high-level calls
    // ---------------------------------------------------------------------

    fn transact(
        &mut self,
        creds: bool,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> Result<Reply, i32> {
        let sent = if creds {
            self.request(opcode, nodeid, arg, payload)
        } else {
            self.request_nocreds(opcode, nodeid, arg, payload)
        };
        let reply = sent
            .and_then(|u| self.recv_reply_for(u))
            .unwrap_or_else(|e| panic!("SimKernel: {}: {e}", op_name(opcode)));
        match reply.errno() {
            Some(errno) => Err(errno),
            None => Ok(reply),
        }
    }

    fn fixed<T: FromBytes>(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> Result<T, i32> {
        let reply = self.transact(true, opcode, nodeid, arg, payload)?;
        Ok(reply
            .decode::<T>()
            .unwrap_or_else(|e| panic!("SimKernel: {} reply: {e}", op_name(opcode))))
    }

    fn empty_with(
        &mut self,
        creds: bool,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> Result<(), i32> {
        let reply = self.transact(creds, opcode, nodeid, arg, payload)?;
        assert!(
            reply.body.is_empty(),
            "SimKernel: {} reply has {} unexpected body bytes",
            op_name(opcode),
            reply.body.len()
        );
        Ok(())
    }

    fn empty(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> Result<(), i32> {
        self.empty_with(true, opcode, nodeid, arg, payload)
    }

    /// A reply of at most `max` bytes of data.
    fn var(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
        max: usize,
    ) -> Result<Vec<u8>, i32> {
        let reply = self.transact(true, opcode, nodeid, arg, payload)?;
        assert!(
            reply.body.len() <= max,
            "SimKernel: {} reply of {} bytes exceeds the {max} asked for",
            op_name(opcode),
            reply.body.len()
        );
        Ok(reply.body)
    }

    fn xattr(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
        size: u32,
    ) -> Result<Xattr, i32> {
        if size == 0 {
            let out: fuse_getxattr_out = self.fixed(opcode, nodeid, arg, payload)?;
            Ok(Xattr::Size(out.size))
        } else {
            self.var(opcode, nodeid, arg, payload, size as usize)
                .map(Xattr::Data)
        }
    }

    fn entry_and_open(
        &mut self,
        opcode: u32,
        parent: u64,
        arg: &[u8],
        name: &[u8],
    ) -> Result<(fuse_entry_out, fuse_open_out), i32> {
        let reply = self.transact(true, opcode, parent, arg, &[&with_nul(name)])?;
        let parsed = reply
            .decode_prefix::<fuse_entry_out>()
            .ok()
            .and_then(|(entry, rest)| Some((entry, fuse_open_out::read_from_bytes(rest).ok()?)));
        Ok(parsed.unwrap_or_else(|| {
            panic!(
                "SimKernel: {} reply is {} bytes, expected 144",
                op_name(opcode),
                reply.body.len()
            )
        }))
    }

    // ---------------------------------------------------------------------
    // High level: one method per operation
    // ---------------------------------------------------------------------

    /// INIT as Linux 6.18 sends it: protocol 7.45, every flag offered
    /// ([`OFFERED_FLAGS`]), readahead 128 KiB. Returns the server's
    /// `fuse_init_out`.
    pub fn init(&mut self) -> Result<fuse_init_out, i32> {
        self.init_with(
            FUSE_KERNEL_VERSION,
            FUSE_KERNEL_MINOR_VERSION,
            OFFERED_FLAGS.bits(),
        )
    }

    /// INIT for protocol `major.minor` offering `flags` (bits 32 and up go in
    /// `flags2`). Like a real kernel of that version, minors below 36 send
    /// the 16-byte `fuse_init_in` of old kernels. The reply, which old
    /// minors accept shorter (24 or 8 bytes), is returned zero-extended.
    pub fn init_with(&mut self, major: u32, minor: u32, flags: u64) -> Result<fuse_init_out, i32> {
        let (flags_lo, flags_hi) = InitFlags::from_bits_retain(flags).to_wire();
        let arg = fuse_init_in {
            major,
            minor,
            max_readahead: KERNEL_MAX_READAHEAD,
            flags: flags_lo,
            flags2: flags_hi,
            unused: [0; 11],
        };
        let bytes = if major == FUSE_KERNEL_VERSION && minor < 36 {
            &arg.as_bytes()[..OLD_INIT_IN_SIZE]
        } else {
            arg.as_bytes()
        };
        let reply = self.transact(false, FUSE_INIT, 0, bytes, &[])?;
        let mut out = [0u8; core::mem::size_of::<fuse_init_out>()];
        assert!(
            reply.body.len() <= out.len(),
            "SimKernel: INIT reply of {} bytes is longer than fuse_init_out",
            reply.body.len()
        );
        out[..reply.body.len()].copy_from_slice(&reply.body);
        let out = fuse_init_out::read_from_bytes(&out).expect("size matches");
        if major == FUSE_KERNEL_VERSION && out.major == FUSE_KERNEL_VERSION {
            self.init_out = Some(out);
        }
        Ok(out)
    }

    /// LOOKUP `name` in directory `parent`.
    pub fn lookup(&mut self, parent: u64, name: impl AsRef<[u8]>) -> Result<fuse_entry_out, i32> {
        self.fixed(FUSE_LOOKUP, parent, &[], &[&with_nul(name.as_ref())])
    }

    /// FORGET `nlookup` references of `nodeid` (no reply).
    pub fn forget(&mut self, nodeid: u64, nlookup: u64) {
        let arg = fuse_forget_in { nlookup };
        self.request_nocreds(FUSE_FORGET, nodeid, arg.as_bytes(), &[])
            .unwrap_or_else(|e| panic!("SimKernel: FORGET: {e}"));
    }

    /// BATCH_FORGET of `(nodeid, nlookup)` pairs (no reply).
    pub fn batch_forget(&mut self, nodes: &[(u64, u64)]) {
        let arg = fuse_batch_forget_in {
            count: nodes.len() as u32,
            dummy: 0,
        };
        let ones: Vec<fuse_forget_one> = nodes
            .iter()
            .map(|&(nodeid, nlookup)| fuse_forget_one { nodeid, nlookup })
            .collect();
        self.request_nocreds(FUSE_BATCH_FORGET, 0, arg.as_bytes(), &[ones.as_bytes()])
            .unwrap_or_else(|e| panic!("SimKernel: BATCH_FORGET: {e}"));
    }

    /// GETATTR of `nodeid`, through open file `fh` when given.
    pub fn getattr(&mut self, nodeid: u64, fh: Option<u64>) -> Result<fuse_attr_out, i32> {
        let arg = fuse_getattr_in {
            getattr_flags: if fh.is_some() { FUSE_GETATTR_FH } else { 0 },
            dummy: 0,
            fh: fh.unwrap_or(0),
        };
        self.fixed(FUSE_GETATTR, nodeid, arg.as_bytes(), &[])
    }

    /// SETATTR of `nodeid` with the fields `arg.valid` selects.
    pub fn setattr(&mut self, nodeid: u64, arg: &fuse_setattr_in) -> Result<fuse_attr_out, i32> {
        self.fixed(FUSE_SETATTR, nodeid, arg.as_bytes(), &[])
    }

    /// READLINK of `nodeid`. Like the kernel, which reads the target into
    /// one page, it takes at most 4095 bytes.
    pub fn readlink(&mut self, nodeid: u64) -> Result<Vec<u8>, i32> {
        self.var(FUSE_READLINK, nodeid, &[], &[], 4095)
    }

    /// SYMLINK `name` -> `target` in `parent`.
    pub fn symlink(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> Result<fuse_entry_out, i32> {
        let (name, target) = (with_nul(name.as_ref()), with_nul(target.as_ref()));
        self.fixed(FUSE_SYMLINK, parent, &[], &[&name, &target])
    }

    /// MKNOD `name` in `parent`.
    pub fn mknod(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> Result<fuse_entry_out, i32> {
        let arg = fuse_mknod_in {
            mode,
            rdev,
            umask,
            padding: 0,
        };
        self.fixed(
            FUSE_MKNOD,
            parent,
            arg.as_bytes(),
            &[&with_nul(name.as_ref())],
        )
    }

    /// MKDIR `name` in `parent`.
    pub fn mkdir(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        mode: u32,
        umask: u32,
    ) -> Result<fuse_entry_out, i32> {
        let arg = fuse_mkdir_in { mode, umask };
        self.fixed(
            FUSE_MKDIR,
            parent,
            arg.as_bytes(),
            &[&with_nul(name.as_ref())],
        )
    }

    /// UNLINK `name` from `parent`.
    pub fn unlink(&mut self, parent: u64, name: impl AsRef<[u8]>) -> Result<(), i32> {
        self.empty(FUSE_UNLINK, parent, &[], &[&with_nul(name.as_ref())])
    }

    /// RMDIR `name` from `parent`.
    pub fn rmdir(&mut self, parent: u64, name: impl AsRef<[u8]>) -> Result<(), i32> {
        self.empty(FUSE_RMDIR, parent, &[], &[&with_nul(name.as_ref())])
    }

    /// RENAME `parent/name` to `newparent/newname`.
    pub fn rename(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        newparent: u64,
        newname: impl AsRef<[u8]>,
    ) -> Result<(), i32> {
        let arg = fuse_rename_in { newdir: newparent };
        let (a, b) = (with_nul(name.as_ref()), with_nul(newname.as_ref()));
        self.empty(FUSE_RENAME, parent, arg.as_bytes(), &[&a, &b])
    }

    /// RENAME2 with `renameat2(2)` `flags`.
    pub fn rename2(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        newparent: u64,
        newname: impl AsRef<[u8]>,
        flags: u32,
    ) -> Result<(), i32> {
        let arg = fuse_rename2_in {
            newdir: newparent,
            flags,
            padding: 0,
        };
        let (a, b) = (with_nul(name.as_ref()), with_nul(newname.as_ref()));
        self.empty(FUSE_RENAME2, parent, arg.as_bytes(), &[&a, &b])
    }

    /// LINK `nodeid` as `newparent/newname`.
    pub fn link(
        &mut self,
        nodeid: u64,
        newparent: u64,
        newname: impl AsRef<[u8]>,
    ) -> Result<fuse_entry_out, i32> {
        let arg = fuse_link_in { oldnodeid: nodeid };
        self.fixed(
            FUSE_LINK,
            newparent,
            arg.as_bytes(),
            &[&with_nul(newname.as_ref())],
        )
    }

    /// OPEN `nodeid` with `open(2)` `flags`.
    pub fn open(&mut self, nodeid: u64, flags: u32) -> Result<fuse_open_out, i32> {
        let arg = fuse_open_in {
            flags,
            open_flags: 0,
        };
        self.fixed(FUSE_OPEN, nodeid, arg.as_bytes(), &[])
    }

    /// READ `size` bytes at `offset` through `fh`.
    pub fn read(&mut self, nodeid: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        let arg = fuse_read_in {
            fh,
            offset,
            size,
            ..Default::default()
        };
        self.var(FUSE_READ, nodeid, arg.as_bytes(), &[], size as usize)
    }

    /// WRITE `data` at `offset` through `fh`; returns the bytes written.
    pub fn write(&mut self, nodeid: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let arg = fuse_write_in {
            fh,
            offset,
            size: data.len() as u32,
            ..Default::default()
        };
        let out: fuse_write_out = self.fixed(FUSE_WRITE, nodeid, arg.as_bytes(), &[data])?;
        Ok(out.size)
    }

    /// STATFS of the filesystem holding `nodeid`.
    pub fn statfs(&mut self, nodeid: u64) -> Result<fuse_kstatfs, i32> {
        let out: fuse_statfs_out = self.fixed(FUSE_STATFS, nodeid, &[], &[])?;
        Ok(out.st)
    }

    /// RELEASE open file `fh` (opened with `flags`).
    pub fn release(&mut self, nodeid: u64, fh: u64, flags: u32) -> Result<(), i32> {
        let arg = fuse_release_in {
            fh,
            flags,
            release_flags: 0,
            lock_owner: 0,
        };
        self.empty_with(false, FUSE_RELEASE, nodeid, arg.as_bytes(), &[])
    }

    /// FSYNC open file `fh` (`datasync`: `fdatasync(2)`).
    pub fn fsync(&mut self, nodeid: u64, fh: u64, datasync: bool) -> Result<(), i32> {
        let arg = fuse_fsync_in {
            fh,
            fsync_flags: if datasync { FUSE_FSYNC_FDATASYNC } else { 0 },
            padding: 0,
        };
        self.empty(FUSE_FSYNC, nodeid, arg.as_bytes(), &[])
    }

    /// SETXATTR `name` = `value` with `XATTR_*` `flags`. The argument is the
    /// 16-byte `fuse_setxattr_in` when INIT agreed `SETXATTR_EXT`, its
    /// 8-byte head otherwise, as the kernel does.
    pub fn setxattr(
        &mut self,
        nodeid: u64,
        name: impl AsRef<[u8]>,
        value: &[u8],
        flags: u32,
    ) -> Result<(), i32> {
        let arg = fuse_setxattr_in {
            size: value.len() as u32,
            flags,
            setxattr_flags: 0,
            padding: 0,
        };
        let arg = if self.agreed(InitFlags::SETXATTR_EXT) {
            arg.as_bytes()
        } else {
            &arg.as_bytes()[..FUSE_COMPAT_SETXATTR_IN_SIZE]
        };
        let name = with_nul(name.as_ref());
        self.empty(FUSE_SETXATTR, nodeid, arg, &[&name, value])
    }

    /// GETXATTR `name`; `size` 0 asks for the size.
    pub fn getxattr(
        &mut self,
        nodeid: u64,
        name: impl AsRef<[u8]>,
        size: u32,
    ) -> Result<Xattr, i32> {
        let arg = fuse_getxattr_in { size, padding: 0 };
        let name = with_nul(name.as_ref());
        self.xattr(FUSE_GETXATTR, nodeid, arg.as_bytes(), &[&name], size)
    }

    /// LISTXATTR; `size` 0 asks for the size.
    pub fn listxattr(&mut self, nodeid: u64, size: u32) -> Result<Xattr, i32> {
        let arg = fuse_getxattr_in { size, padding: 0 };
        self.xattr(FUSE_LISTXATTR, nodeid, arg.as_bytes(), &[], size)
    }

    /// REMOVEXATTR `name`.
    pub fn removexattr(&mut self, nodeid: u64, name: impl AsRef<[u8]>) -> Result<(), i32> {
        self.empty(FUSE_REMOVEXATTR, nodeid, &[], &[&with_nul(name.as_ref())])
    }

    /// FLUSH open file `fh` (on `close(2)`).
    pub fn flush(&mut self, nodeid: u64, fh: u64, lock_owner: u64) -> Result<(), i32> {
        let arg = fuse_flush_in {
            fh,
            unused: 0,
            padding: 0,
            lock_owner,
        };
        self.empty(FUSE_FLUSH, nodeid, arg.as_bytes(), &[])
    }

    /// OPENDIR `nodeid`.
    pub fn opendir(&mut self, nodeid: u64, flags: u32) -> Result<fuse_open_out, i32> {
        let arg = fuse_open_in {
            flags,
            open_flags: 0,
        };
        self.fixed(FUSE_OPENDIR, nodeid, arg.as_bytes(), &[])
    }

    fn read_dir_raw(
        &mut self,
        opcode: u32,
        nodeid: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, i32> {
        let arg = fuse_read_in {
            fh,
            offset,
            size,
            ..Default::default()
        };
        self.var(opcode, nodeid, arg.as_bytes(), &[], size as usize)
    }

    /// READDIR of open directory `fh` from `offset`, at most `size` bytes;
    /// the records are checked and parsed (empty: end of directory).
    pub fn readdir(
        &mut self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<DirEntry>, i32> {
        let body = self.read_dir_raw(FUSE_READDIR, nodeid, fh, offset, size)?;
        Ok(parse_dirents(&body).unwrap_or_else(|e| panic!("SimKernel: READDIR reply: {e}")))
    }

    /// READDIRPLUS of open directory `fh` from `offset`, at most `size`
    /// bytes.
    pub fn readdirplus(
        &mut self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<DirEntryPlus>, i32> {
        let body = self.read_dir_raw(FUSE_READDIRPLUS, nodeid, fh, offset, size)?;
        Ok(parse_direntplus(&body).unwrap_or_else(|e| panic!("SimKernel: READDIRPLUS reply: {e}")))
    }

    /// RELEASEDIR open directory `fh`.
    pub fn releasedir(&mut self, nodeid: u64, fh: u64, flags: u32) -> Result<(), i32> {
        let arg = fuse_release_in {
            fh,
            flags,
            release_flags: 0,
            lock_owner: 0,
        };
        self.empty_with(false, FUSE_RELEASEDIR, nodeid, arg.as_bytes(), &[])
    }

    /// FSYNCDIR open directory `fh`.
    pub fn fsyncdir(&mut self, nodeid: u64, fh: u64, datasync: bool) -> Result<(), i32> {
        let arg = fuse_fsync_in {
            fh,
            fsync_flags: if datasync { FUSE_FSYNC_FDATASYNC } else { 0 },
            padding: 0,
        };
        self.empty(FUSE_FSYNCDIR, nodeid, arg.as_bytes(), &[])
    }

    /// ACCESS check of `mask` (`R_OK | W_OK | X_OK` or `F_OK`).
    pub fn access(&mut self, nodeid: u64, mask: u32) -> Result<(), i32> {
        let arg = fuse_access_in { mask, padding: 0 };
        self.empty(FUSE_ACCESS, nodeid, arg.as_bytes(), &[])
    }

    /// CREATE and open `name` in `parent`.
    pub fn create(
        &mut self,
        parent: u64,
        name: impl AsRef<[u8]>,
        flags: u32,
        mode: u32,
        umask: u32,
    ) -> Result<(fuse_entry_out, fuse_open_out), i32> {
        let arg = fuse_create_in {
            flags,
            mode,
            umask,
            open_flags: 0,
        };
        self.entry_and_open(FUSE_CREATE, parent, arg.as_bytes(), name.as_ref())
    }

    /// INTERRUPT request `unique` (no reply). As in the kernel, the
    /// interrupt carries its target's unique with bit 0 set.
    pub fn interrupt(&mut self, unique: u64) {
        let header = fuse_in_header {
            opcode: FUSE_INTERRUPT,
            unique: unique | 1,
            ..Default::default()
        };
        let arg = fuse_interrupt_in { unique };
        self.send_request(&header, arg.as_bytes(), &[])
            .unwrap_or_else(|e| panic!("SimKernel: INTERRUPT: {e}"));
    }

    /// FALLOCATE on open file `fh`.
    pub fn fallocate(
        &mut self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<(), i32> {
        let arg = fuse_fallocate_in {
            fh,
            offset,
            length,
            mode,
            padding: 0,
        };
        self.empty(FUSE_FALLOCATE, nodeid, arg.as_bytes(), &[])
    }

    /// LSEEK (`SEEK_DATA` 3, `SEEK_HOLE` 4) on open file `fh`.
    pub fn lseek(&mut self, nodeid: u64, fh: u64, offset: u64, whence: u32) -> Result<u64, i32> {
        let arg = fuse_lseek_in {
            fh,
            offset,
            whence,
            padding: 0,
        };
        let out: fuse_lseek_out = self.fixed(FUSE_LSEEK, nodeid, arg.as_bytes(), &[])?;
        Ok(out.offset)
    }

    /// COPY_FILE_RANGE from `nodeid` (the source); returns the bytes copied
    /// (32-bit reply).
    pub fn copy_file_range(
        &mut self,
        nodeid: u64,
        arg: &fuse_copy_file_range_in,
    ) -> Result<u32, i32> {
        let out: fuse_write_out = self.fixed(FUSE_COPY_FILE_RANGE, nodeid, arg.as_bytes(), &[])?;
        Ok(out.size)
    }

    /// COPY_FILE_RANGE_64 from `nodeid`; returns the bytes copied (64-bit
    /// reply).
    pub fn copy_file_range_64(
        &mut self,
        nodeid: u64,
        arg: &fuse_copy_file_range_in,
    ) -> Result<u64, i32> {
        let out: fuse_copy_file_range_out =
            self.fixed(FUSE_COPY_FILE_RANGE_64, nodeid, arg.as_bytes(), &[])?;
        Ok(out.bytes_copied)
    }

    /// TMPFILE in `parent`. Like the kernel, the name sent is `/` (the name
    /// of the unhashed dentry `vfs_tmpfile` allocates).
    pub fn tmpfile(
        &mut self,
        parent: u64,
        flags: u32,
        mode: u32,
        umask: u32,
    ) -> Result<(fuse_entry_out, fuse_open_out), i32> {
        let arg = fuse_create_in {
            flags,
            mode,
            umask,
            open_flags: 0,
        };
        self.entry_and_open(FUSE_TMPFILE, parent, arg.as_bytes(), b"/")
    }

    /// STATX of `nodeid` (through `fh` when given).
    pub fn statx(
        &mut self,
        nodeid: u64,
        fh: Option<u64>,
        sx_flags: u32,
        sx_mask: u32,
    ) -> Result<fuse_statx_out, i32> {
        let arg = fuse_statx_in {
            getattr_flags: if fh.is_some() { FUSE_GETATTR_FH } else { 0 },
            reserved: 0,
            fh: fh.unwrap_or(0),
            sx_flags,
            sx_mask,
        };
        self.fixed(FUSE_STATX, nodeid, arg.as_bytes(), &[])
    }

    /// SYNCFS of the filesystem holding `nodeid`.
    pub fn syncfs(&mut self, nodeid: u64) -> Result<(), i32> {
        let arg = fuse_syncfs_in { padding: 0 };
        self.empty(FUSE_SYNCFS, nodeid, arg.as_bytes(), &[])
    }

    /// Answers a NOTIFY_RETRIEVE: a NOTIFY_REPLY request whose unique is
    /// the notification's `notify_unique`, carrying `data` (no reply).
    pub fn notify_reply(&mut self, notify_unique: u64, nodeid: u64, offset: u64, data: &[u8]) {
        let header = fuse_in_header {
            opcode: FUSE_NOTIFY_REPLY,
            unique: notify_unique,
            nodeid,
            ..Default::default()
        };
        let arg = fuse_notify_retrieve_in {
            offset,
            size: data.len() as u32,
            ..Default::default()
        };
        self.send_request(&header, arg.as_bytes(), &[data])
            .unwrap_or_else(|e| panic!("SimKernel: NOTIFY_REPLY: {e}"));
    }

    /// DESTROY (sent on unmount); the server answers and stops.
    pub fn destroy(&mut self) -> Result<(), i32> {
        self.empty_with(false, FUSE_DESTROY, 0, &[], &[])
    }
}

impl AsFd for SimKernel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::send_parts;

    fn reply(unique: u64, error: i32) -> Vec<u8> {
        fuse_out_header {
            len: 16,
            error,
            unique,
        }
        .as_bytes()
        .to_vec()
    }

    #[test]
    fn replies_must_answer_a_waiting_request_once() {
        let (mut k, server) = channel_pair().unwrap();
        k.set_timeout(Duration::from_secs(2)).unwrap();
        let u = k.request(FUSE_STATFS, 1, &[], &[]).unwrap();
        assert_eq!(u, 2);
        send_parts(server.as_fd(), &[&reply(u, -5)]).unwrap();
        assert_eq!(k.recv_reply().unwrap().errno(), Some(5));
        // A second answer to the same request.
        send_parts(server.as_fd(), &[&reply(u, 0)]).unwrap();
        let e = k.recv_reply().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("not waiting"), "{e}");
        // An answer to FORGET, which expects none.
        k.forget(5, 1);
        send_parts(server.as_fd(), &[&reply(4, 0)]).unwrap();
        assert!(k.recv_reply().is_err());
        // An answer to an INTERRUPT is a bare header.
        send_parts(server.as_fd(), &[&reply(3, -libc::EAGAIN)]).unwrap();
        assert_eq!(k.recv_reply().unwrap().errno(), Some(libc::EAGAIN));
        // A zero-length message is not a reply.
        send_parts(server.as_fd(), &[]).unwrap();
        assert!(k.recv_reply().is_err());
        // The server going away is the end.
        drop(server);
        let e = k.recv_reply().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn requests_are_laid_out_as_the_kernel_writes_them() {
        let (mut k, server) = channel_pair().unwrap();
        k.set_credentials(1, 2, 3);
        k.request(FUSE_LOOKUP, 1, &[], &[b"ab\0"]).unwrap();
        k.interrupt(2);
        let mut buf = [0u8; 64];
        let Received::Message(n) = recv_message(server.as_fd(), &mut buf, 0).unwrap() else {
            panic!()
        };
        let h = fuse_in_header::read_from_prefix(&buf[..n]).unwrap().0;
        assert_eq!(n, 43);
        assert_eq!(
            (h.len, h.opcode, h.unique, h.nodeid),
            (43, FUSE_LOOKUP, 2, 1)
        );
        assert_eq!((h.uid, h.gid, h.pid, h.total_extlen), (1, 2, 3, 0));
        assert_eq!(&buf[40..43], b"ab\0");
        let Received::Message(n) = recv_message(server.as_fd(), &mut buf, 0).unwrap() else {
            panic!()
        };
        let h = fuse_in_header::read_from_prefix(&buf[..n]).unwrap().0;
        assert_eq!(
            (n, h.opcode, h.unique, h.nodeid, h.uid),
            (48, FUSE_INTERRUPT, 3, 0, 0)
        );
        assert_eq!(&buf[40..48], &2u64.to_ne_bytes());
    }
}
