//! Notifications: messages the server sends to the kernel unasked.
//!
//! A notification is a `fuse_out_header` with `unique` 0 and the
//! notification code in `error`, then a code-specific struct and data. They
//! go out through the same [`ReplySink`] as replies (on FUSE-over-io_uring
//! they must use `/dev/fuse`: the ring refuses them). [`Notifier`] builds each
//! one on the stack; names and data stay borrowed.

use crate::abi::*;
use crate::error::Errno;
use crate::reply::ReplySink;
use zerocopy::IntoBytes;

/// Most node ids one NOTIFY_PRUNE can carry in one call of [`Notifier::prune`].
pub const PRUNE_MAX: usize = 512;

/// Sends notifications through a sink.
///
/// Made with [`Notifier::for_minor`], it sends only what a kernel of the
/// agreed protocol minor knows: a notification code (or an
/// `inval_entry` flag) newer than that is not sent.
#[derive(Debug, Clone, Copy)]
pub struct Notifier<S: ReplySink> {
    sink: S,
    minor: u32,
}

/// The protocol minor that introduced notification `code` (`u32::MAX` for
/// codes fuselage does not know).
pub const fn notify_since(code: u32) -> u32 {
    match code {
        FUSE_NOTIFY_POLL => 11,
        FUSE_NOTIFY_INVAL_INODE | FUSE_NOTIFY_INVAL_ENTRY => 12,
        FUSE_NOTIFY_STORE | FUSE_NOTIFY_RETRIEVE => 15,
        FUSE_NOTIFY_DELETE => 18,
        FUSE_NOTIFY_RESEND => 40,
        FUSE_NOTIFY_INC_EPOCH => 44,
        FUSE_NOTIFY_PRUNE => 45,
        _ => u32::MAX,
    }
}

/// Why a notification was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyError {
    /// A name longer than the protocol allows, or empty.
    BadName,
    /// More entries than fit one message.
    TooMany,
    /// The agreed protocol minor does not know this notification (or flag).
    Unsupported,
}

impl NotifyError {
    /// The errno a caller would report.
    pub const fn errno(self) -> Errno {
        match self {
            NotifyError::BadName => Errno::ENAMETOOLONG,
            NotifyError::TooMany => Errno::E2BIG,
            NotifyError::Unsupported => Errno::ENOSYS,
        }
    }
}

impl core::fmt::Display for NotifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NotifyError::BadName => {
                f.write_str("notification name is empty or longer than 1024 bytes")
            }
            NotifyError::TooMany => f.write_str("too many node ids for one notification"),
            NotifyError::Unsupported => {
                f.write_str("the kernel's protocol version does not know this notification")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NotifyError {}

fn header(code: u32, body: usize) -> fuse_out_header {
    fuse_out_header {
        len: (core::mem::size_of::<fuse_out_header>() + body) as u32,
        error: code as i32,
        unique: 0,
    }
}

fn check_name(name: &[u8]) -> Result<(), NotifyError> {
    if name.is_empty() || name.len() > crate::request::NAME_MAX {
        Err(NotifyError::BadName)
    } else {
        Ok(())
    }
}

impl<S: ReplySink> Notifier<S> {
    /// A notifier sending through `sink` to a kernel of the newest protocol.
    pub fn new(sink: S) -> Self {
        Notifier {
            sink,
            minor: FUSE_KERNEL_MINOR_VERSION,
        }
    }

    /// A notifier for a session agreed at protocol 7.`minor`
    /// ([`Negotiated::minor`](crate::Negotiated::minor)): notifications
    /// that minor does not know are not sent.
    pub fn for_minor(sink: S, minor: u32) -> Self {
        Notifier { sink, minor }
    }

    /// Whether the kernel knows notification `code`.
    pub const fn knows(&self, code: u32) -> bool {
        self.minor >= notify_since(code)
    }

    /// Sends the header of `code` and `parts` when the kernel knows `code`.
    fn send(&self, code: u32, body: &[&[u8]]) -> Result<(), NotifyError> {
        if !self.knows(code) {
            return Err(NotifyError::Unsupported);
        }
        let n = body.len().min(3);
        let len: usize = body[..n].iter().map(|b| b.len()).sum();
        let h = header(code, len);
        let mut parts: [&[u8]; 4] = [h.as_bytes(), &[], &[], &[]];
        parts[1..=n].copy_from_slice(&body[..n]);
        self.sink.send(&parts[..=n]);
        Ok(())
    }

    /// Wakes up pollers of the handle `kh` (from a POLL request with
    /// `FUSE_POLL_SCHEDULE_NOTIFY`).
    pub fn poll_wakeup(&self, kh: u64) {
        let out = fuse_notify_poll_wakeup_out { kh };
        let _ = self.send(FUSE_NOTIFY_POLL, &[out.as_bytes()]);
    }

    /// Drops cached attributes of `ino` and, for `len` != 0, its cached pages
    /// in `[off, off + len)` (`len` < 0: to the end). `off` < 0 drops only
    /// the attributes.
    pub fn inval_inode(&self, ino: u64, off: i64, len: i64) {
        let out = fuse_notify_inval_inode_out { ino, off, len };
        let _ = self.send(FUSE_NOTIFY_INVAL_INODE, &[out.as_bytes()]);
    }

    /// Drops the cached entry `name` in directory `parent`; `flags` may hold
    /// `FUSE_EXPIRE_ONLY` (7.38; before, the field must be 0).
    pub fn inval_entry(&self, parent: u64, name: &[u8], flags: u32) -> Result<(), NotifyError> {
        check_name(name)?;
        if flags != 0 && self.minor < 38 {
            return Err(NotifyError::Unsupported);
        }
        let out = fuse_notify_inval_entry_out {
            parent,
            namelen: name.len() as u32,
            flags,
        };
        self.send(FUSE_NOTIFY_INVAL_ENTRY, &[out.as_bytes(), name, &[0]])
    }

    /// Tells the kernel entry `name` of `parent` (inode `child`) was deleted.
    pub fn delete(&self, parent: u64, child: u64, name: &[u8]) -> Result<(), NotifyError> {
        check_name(name)?;
        let out = fuse_notify_delete_out {
            parent,
            child,
            namelen: name.len() as u32,
            padding: 0,
        };
        self.send(FUSE_NOTIFY_DELETE, &[out.as_bytes(), name, &[0]])
    }

    /// Stores `data` into the page cache of `ino` at `offset`.
    pub fn store(&self, ino: u64, offset: u64, data: &[u8]) {
        let out = fuse_notify_store_out {
            nodeid: ino,
            offset,
            size: data.len() as u32,
            padding: 0,
        };
        let _ = self.send(FUSE_NOTIFY_STORE, &[out.as_bytes(), data]);
    }

    /// Asks the kernel for `size` cached bytes of `ino` at `offset`; the answer
    /// comes as a NOTIFY_REPLY request whose unique is `notify_unique`.
    pub fn retrieve(&self, notify_unique: u64, ino: u64, offset: u64, size: u32) {
        let out = fuse_notify_retrieve_out {
            notify_unique,
            nodeid: ino,
            offset,
            size,
            padding: 0,
        };
        let _ = self.send(FUSE_NOTIFY_RETRIEVE, &[out.as_bytes()]);
    }

    /// Asks the kernel to resend every request still waiting for a reply
    /// (needs `HAS_RESEND`).
    pub fn resend(&self) {
        let _ = self.send(FUSE_NOTIFY_RESEND, &[]);
    }

    /// Increments the connection's epoch, invalidating all cached dentries
    /// (7.44; not sent to older kernels).
    pub fn inc_epoch(&self) {
        let _ = self.send(FUSE_NOTIFY_INC_EPOCH, &[]);
    }

    /// Asks the kernel to forget the given inodes if unused (7.45).
    pub fn prune(&self, nodeids: &[u64]) -> Result<(), NotifyError> {
        if nodeids.len() > PRUNE_MAX {
            return Err(NotifyError::TooMany);
        }
        let out = fuse_notify_prune_out {
            count: nodeids.len() as u32,
            padding: 0,
            spare: 0,
        };
        self.send(FUSE_NOTIFY_PRUNE, &[out.as_bytes(), nodeids.as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::tests::Capture;

    fn hdr(b: &[u8]) -> (u32, i32, u64) {
        (
            u32::from_ne_bytes(b[0..4].try_into().unwrap()),
            i32::from_ne_bytes(b[4..8].try_into().unwrap()),
            u64::from_ne_bytes(b[8..16].try_into().unwrap()),
        )
    }

    #[test]
    fn inval_entry_carries_name_and_nul() {
        let cap = Capture::new();
        let n = Notifier::new(&cap);
        n.inval_entry(1, b"foo", 0).unwrap();
        let (b, len) = cap.bytes();
        assert_eq!(len, 16 + 16 + 4);
        assert_eq!(hdr(&b), (36, FUSE_NOTIFY_INVAL_ENTRY as i32, 0));
        assert_eq!(u64::from_ne_bytes(b[16..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(b[24..28].try_into().unwrap()), 3);
        assert_eq!(&b[32..36], b"foo\0");
        assert_eq!(n.inval_entry(1, b"", 0), Err(NotifyError::BadName));
    }

    #[test]
    fn every_notification_has_its_code() {
        let cap = Capture::new();
        let n = Notifier::new(&cap);
        n.poll_wakeup(3);
        assert_eq!(hdr(&cap.bytes().0), (24, 1, 0));
        n.inval_inode(5, 0, -1);
        assert_eq!(hdr(&cap.bytes().0), (40, 2, 0));
        n.store(5, 0, b"hello");
        assert_eq!(hdr(&cap.bytes().0), (16 + 24 + 5, 4, 0));
        n.retrieve(9, 5, 0, 4096);
        assert_eq!(hdr(&cap.bytes().0), (16 + 32, 5, 0));
        n.delete(1, 5, b"x").unwrap();
        assert_eq!(hdr(&cap.bytes().0), (16 + 24 + 2, 6, 0));
        n.resend();
        assert_eq!(hdr(&cap.bytes().0), (16, 7, 0));
        n.inc_epoch();
        assert_eq!(hdr(&cap.bytes().0), (16, 8, 0));
        n.prune(&[1, 2, 3]).unwrap();
        assert_eq!(hdr(&cap.bytes().0), (16 + 16 + 24, 9, 0));
    }

    #[test]
    fn a_731_kernel_gets_only_what_731_knows() {
        let cap = Capture::new();
        let n = Notifier::for_minor(&cap, 31);
        n.inval_inode(5, 0, -1);
        assert_eq!(cap.sends(), 1);
        assert_eq!(hdr(&cap.bytes().0), (40, 2, 0));
        n.delete(1, 5, b"x").unwrap();
        assert_eq!(hdr(&cap.bytes().0), (16 + 24 + 2, 6, 0));
        assert_eq!(
            n.inval_entry(1, b"x", FUSE_EXPIRE_ONLY),
            Err(NotifyError::Unsupported)
        );
        assert_eq!(n.prune(&[1]), Err(NotifyError::Unsupported));
        n.resend();
        n.inc_epoch();
        assert_eq!(cap.sends(), 2, "nothing newer than 7.31 was sent");
        assert!(n.knows(FUSE_NOTIFY_DELETE) && !n.knows(FUSE_NOTIFY_RESEND));
        assert!(!n.knows(77));
    }
}
