//! Packing directory entries for READDIR and READDIRPLUS replies.
//!
//! A READDIR reply is a run of `fuse_dirent` records, each followed by its
//! name and zero padding to the next 8-byte boundary. READDIRPLUS records are
//! a `fuse_entry_out` followed by such a dirent. The kernel asks for at most
//! `size` bytes; [`DirentBuf`] packs into a caller's buffer up to exactly that
//! size and refuses (returns `false`) the first entry that does not fit, so
//! the filesystem knows where to resume: the next READDIR carries the `off`
//! of the last entry sent.

use crate::abi::{fuse_dirent, fuse_entry_out};
use zerocopy::IntoBytes;

/// `d_type` values (the file-type bits of a mode shifted right by 12).
pub mod dtype {
    /// Unknown type.
    pub const UNKNOWN: u32 = 0;
    /// FIFO.
    pub const FIFO: u32 = 1;
    /// Character device.
    pub const CHR: u32 = 2;
    /// Directory.
    pub const DIR: u32 = 4;
    /// Block device.
    pub const BLK: u32 = 6;
    /// Regular file.
    pub const REG: u32 = 8;
    /// Symbolic link.
    pub const LNK: u32 = 10;
    /// Socket.
    pub const SOCK: u32 = 12;

    /// The `d_type` for a `st_mode`.
    pub const fn from_mode(mode: u32) -> u32 {
        (mode & 0o170000) >> 12
    }
}

const DIRENT_LEN: usize = core::mem::size_of::<fuse_dirent>();
const ENTRY_LEN: usize = core::mem::size_of::<fuse_entry_out>();

/// Bytes one READDIR record with a name of `namelen` bytes takes.
pub const fn dirent_size(namelen: usize) -> usize {
    (DIRENT_LEN + namelen + 7) & !7
}

/// Bytes one READDIRPLUS record with a name of `namelen` bytes takes.
pub const fn direntplus_size(namelen: usize) -> usize {
    ENTRY_LEN + dirent_size(namelen)
}

/// Whether the kernel accepts `name` in a directory record: 1 to 1024 bytes,
/// no `/` and no NUL (the kernel fails the whole READDIR with EIO otherwise).
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= crate::request::NAME_MAX
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// Why a directory record was not packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirentError {
    /// The record does not fit in what is left of the reply: send the reply
    /// and resume from this entry on the next READDIR.
    Full,
    /// The kernel would reject the name (empty, longer than 1024 bytes, or
    /// holding `/` or NUL) and fail the whole READDIR: skip this entry and
    /// go on with the next one.
    InvalidName,
}

impl core::fmt::Display for DirentError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DirentError::Full => "the directory entry does not fit in the reply",
            DirentError::InvalidName => {
                "the directory entry's name is not valid in FUSE (empty, over 1024 bytes, or holding '/' or NUL)"
            }
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DirentError {}

/// A reply buffer being filled with directory records.
#[derive(Debug)]
pub struct DirentBuf<'b> {
    buf: &'b mut [u8],
    len: usize,
    limit: usize,
}

impl<'b> DirentBuf<'b> {
    /// Packs into `buf`, but never past `max` bytes (the request's `size`).
    pub fn new(buf: &'b mut [u8], max: usize) -> Self {
        let cap = max.min(buf.len());
        DirentBuf {
            buf: &mut buf[..cap],
            len: 0,
            limit: max,
        }
    }

    /// The size the kernel asked for: no reply may be longer.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most bytes this buffer can pack: the size the kernel asked for,
    /// or less where the transport lent less room. A listing packed
    /// elsewhere (then sent with [`ReplyDirectory::packed`](crate::reply::ReplyDirectory::packed))
    /// must not be longer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes packed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was packed (an empty reply means end of directory).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be packed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    /// The packed records.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Adds a READDIR record: inode `ino`, the offset at which to resume
    /// *after* this entry, the `d_type` and the name (without NUL). Packs
    /// nothing and says why when the name is not valid
    /// ([`DirentError::InvalidName`]: skip the entry) or the record does not
    /// fit ([`DirentError::Full`]: stop here).
    pub fn push(
        &mut self,
        ino: u64,
        next_offset: u64,
        typ: u32,
        name: &[u8],
    ) -> Result<(), DirentError> {
        if !valid_name(name) {
            return Err(DirentError::InvalidName);
        }
        let size = dirent_size(name.len());
        if size > self.remaining() {
            return Err(DirentError::Full);
        }
        self.write_dirent(self.len, ino, next_offset, typ, name, size);
        self.len += size;
        Ok(())
    }

    /// Adds a READDIRPLUS record, with the same checks as
    /// [`DirentBuf::push`]. The kernel takes a lookup reference for every
    /// entry with a non-zero nodeid it receives (except "." and ".."), so
    /// count one lookup per entry packed, only when this returns `Ok`.
    pub fn push_plus(
        &mut self,
        entry: &fuse_entry_out,
        next_offset: u64,
        typ: u32,
        name: &[u8],
    ) -> Result<(), DirentError> {
        if !valid_name(name) {
            return Err(DirentError::InvalidName);
        }
        let size = direntplus_size(name.len());
        if size > self.remaining() {
            return Err(DirentError::Full);
        }
        let at = self.len;
        self.buf[at..at + ENTRY_LEN].copy_from_slice(entry.as_bytes());
        self.write_dirent(
            at + ENTRY_LEN,
            entry.attr.ino,
            next_offset,
            typ,
            name,
            size - ENTRY_LEN,
        );
        self.len += size;
        Ok(())
    }

    fn write_dirent(&mut self, at: usize, ino: u64, off: u64, typ: u32, name: &[u8], size: usize) {
        let d = fuse_dirent {
            ino,
            off,
            namelen: name.len() as u32,
            typ,
        };
        let rec = &mut self.buf[at..at + size];
        rec[..DIRENT_LEN].copy_from_slice(d.as_bytes());
        rec[DIRENT_LEN..DIRENT_LEN + name.len()].copy_from_slice(name);
        rec[DIRENT_LEN + name.len()..].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::fuse_attr;

    #[test]
    fn records_are_padded_to_eight() {
        assert_eq!(dirent_size(1), 32);
        assert_eq!(dirent_size(8), 32);
        assert_eq!(dirent_size(9), 40);
        assert_eq!(direntplus_size(1), 160);
        let mut raw = [0xFFu8; 64];
        let mut b = DirentBuf::new(&mut raw, 64);
        assert_eq!(b.push(5, 1, dtype::REG, b"abc"), Ok(()));
        assert_eq!(b.len(), 32);
        let bytes = b.as_bytes();
        assert_eq!(u64::from_ne_bytes(bytes[0..8].try_into().unwrap()), 5);
        assert_eq!(u64::from_ne_bytes(bytes[8..16].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(bytes[16..20].try_into().unwrap()), 3);
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 8);
        assert_eq!(&bytes[24..27], b"abc");
        assert_eq!(&bytes[27..32], &[0; 5]);
    }

    #[test]
    fn fills_exactly_to_size_and_refuses_overflow() {
        let mut raw = [0u8; 4096];
        let mut b = DirentBuf::new(&mut raw, 64);
        assert_eq!(b.push(1, 1, dtype::DIR, b"a"), Ok(()));
        assert_eq!(b.push(2, 2, dtype::DIR, b"bb"), Ok(()));
        assert_eq!(b.remaining(), 0);
        assert_eq!(b.push(3, 3, dtype::DIR, b"c"), Err(DirentError::Full));
        assert_eq!(b.len(), 64);
        assert_eq!(b.push(3, 3, dtype::DIR, b""), Err(DirentError::InvalidName));
    }

    #[test]
    fn refuses_names_the_kernel_rejects() {
        let mut raw = [0u8; 4096];
        let mut b = DirentBuf::new(&mut raw, 4096);
        let invalid = Err(DirentError::InvalidName);
        assert_eq!(b.push(1, 1, dtype::REG, b"a/b"), invalid);
        assert_eq!(b.push(1, 1, dtype::REG, b"a\0b"), invalid);
        assert_eq!(b.push(1, 1, dtype::REG, &[b'x'; 1025]), invalid);
        let e = fuse_entry_out::default();
        assert_eq!(b.push_plus(&e, 1, dtype::REG, b"a/b"), invalid);
        assert_eq!(b.push_plus(&e, 1, dtype::REG, b"a\0b"), invalid);
        assert_eq!(b.push_plus(&e, 1, dtype::REG, b""), invalid);
        assert!(b.is_empty(), "nothing packed for an invalid name");
        // An invalid name is refused even when the buffer is full too: the
        // caller skips it rather than ending the listing there.
        let mut tiny = [0u8; 8];
        let mut t = DirentBuf::new(&mut tiny, 8);
        assert_eq!(t.push(1, 1, dtype::REG, b"a/b"), invalid);
        assert_eq!(t.push(1, 1, dtype::REG, b"ok"), Err(DirentError::Full));
        assert_eq!(b.push(1, 1, dtype::REG, &[b'x'; 1024]), Ok(()));
    }

    #[test]
    fn plus_record_layout() {
        let mut raw = [0u8; 4096];
        let mut b = DirentBuf::new(&mut raw, 4096);
        let e = fuse_entry_out {
            nodeid: 9,
            attr: fuse_attr {
                ino: 9,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(b.push_plus(&e, 7, dtype::LNK, b"link"), Ok(()));
        assert_eq!(b.len(), 160);
        let bytes = b.as_bytes();
        assert_eq!(u64::from_ne_bytes(bytes[0..8].try_into().unwrap()), 9);
        assert_eq!(u64::from_ne_bytes(bytes[128..136].try_into().unwrap()), 9);
        assert_eq!(u64::from_ne_bytes(bytes[136..144].try_into().unwrap()), 7);
        assert_eq!(&bytes[152..156], b"link");
        assert_eq!(dtype::from_mode(0o120777), dtype::LNK);
    }
}
