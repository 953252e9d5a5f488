//! Reading READDIR and READDIRPLUS replies back into entries.

use fuselage_core::abi::{fuse_dirent, fuse_entry_out};
use std::fmt;
use zerocopy::FromBytes;

const DIRENT_LEN: usize = core::mem::size_of::<fuse_dirent>();
const ENTRY_LEN: usize = core::mem::size_of::<fuse_entry_out>();
/// Longest name the kernel accepts in a directory entry (`FUSE_NAME_MAX`).
const NAME_MAX: usize = 1024;

/// One READDIR record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number (`d_ino`).
    pub ino: u64,
    /// Offset to resume after this entry.
    pub off: u64,
    /// `d_type`.
    pub typ: u32,
    /// The name, without padding.
    pub name: Vec<u8>,
}

/// One READDIRPLUS record: the lookup reply and the directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryPlus {
    /// The entry's lookup reply (counts as a lookup unless `nodeid` is 0 or
    /// the name is `.` or `..`).
    pub entry: fuse_entry_out,
    /// The directory entry.
    pub dirent: DirEntry,
}

/// Why a directory listing is malformed. The kernel fails the `getdents`
/// call with `EIO` for a bad name; the other checks are stricter than the
/// kernel's, to catch sloppy packing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirentError {
    /// A record (or its fixed head) runs past the end of the reply.
    Truncated {
        /// Offset of the record in the reply.
        at: usize,
    },
    /// `namelen` is 0 or above 1024.
    BadNameLen {
        /// Offset of the record.
        at: usize,
        /// The `namelen` field.
        namelen: u32,
    },
    /// The name contains `/` or NUL.
    BadName {
        /// Offset of the record.
        at: usize,
    },
    /// The padding after the name (up to the next 8-byte boundary) is not
    /// zero.
    NonZeroPadding {
        /// Offset of the record.
        at: usize,
    },
}

impl fmt::Display for DirentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirentError::Truncated { at } => write!(f, "record at byte {at} is truncated"),
            DirentError::BadNameLen { at, namelen } => {
                write!(f, "record at byte {at} has namelen {namelen}")
            }
            DirentError::BadName { at } => {
                write!(f, "record at byte {at} has a name with '/' or NUL")
            }
            DirentError::NonZeroPadding { at } => {
                write!(f, "record at byte {at} has non-zero padding")
            }
        }
    }
}

impl std::error::Error for DirentError {}

/// Parses the dirent at the start of `rec` (whose offset in the reply is
/// `at`); returns it and the record's padded size.
fn parse_one(rec: &[u8], at: usize) -> Result<(DirEntry, usize), DirentError> {
    let Ok((d, rest)) = fuse_dirent::read_from_prefix(rec) else {
        return Err(DirentError::Truncated { at });
    };
    let namelen = d.namelen as usize;
    if namelen == 0 || namelen > NAME_MAX {
        return Err(DirentError::BadNameLen {
            at,
            namelen: d.namelen,
        });
    }
    let padded = (DIRENT_LEN + namelen + 7) & !7;
    if rec.len() < padded {
        return Err(DirentError::Truncated { at });
    }
    let name = &rest[..namelen];
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(DirentError::BadName { at });
    }
    if rest[namelen..padded - DIRENT_LEN].iter().any(|&b| b != 0) {
        return Err(DirentError::NonZeroPadding { at });
    }
    let entry = DirEntry {
        ino: d.ino,
        off: d.off,
        typ: d.typ,
        name: name.to_vec(),
    };
    Ok((entry, padded))
}

/// Parses a READDIR reply body: `fuse_dirent` records, each name padded with
/// zeros to an 8-byte boundary, filling the body exactly.
///
/// ```
/// use fuselage_testkit::parse_dirents;
/// let mut rec = Vec::new();
/// rec.extend_from_slice(&5u64.to_ne_bytes()); // ino
/// rec.extend_from_slice(&1u64.to_ne_bytes()); // off
/// rec.extend_from_slice(&3u32.to_ne_bytes()); // namelen
/// rec.extend_from_slice(&8u32.to_ne_bytes()); // type
/// rec.extend_from_slice(b"abc\0\0\0\0\0");
/// let entries = parse_dirents(&rec).unwrap();
/// assert_eq!(entries[0].name, b"abc");
/// assert!(parse_dirents(&rec[..30]).is_err());
/// ```
pub fn parse_dirents(body: &[u8]) -> Result<Vec<DirEntry>, DirentError> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let (entry, size) = parse_one(&body[at..], at)?;
        entries.push(entry);
        at += size;
    }
    Ok(entries)
}

/// Parses a READDIRPLUS reply body: records of a `fuse_entry_out` followed by
/// a padded `fuse_dirent`, filling the body exactly.
pub fn parse_direntplus(body: &[u8]) -> Result<Vec<DirEntryPlus>, DirentError> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let Ok((entry, rest)) = fuse_entry_out::read_from_prefix(&body[at..]) else {
            return Err(DirentError::Truncated { at });
        };
        let (dirent, size) = parse_one(rest, at)?;
        entries.push(DirEntryPlus { entry, dirent });
        at += ENTRY_LEN + size;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn record(ino: u64, off: u64, typ: u32, name: &[u8], pad: u8) -> Vec<u8> {
        let mut v = fuse_dirent {
            ino,
            off,
            namelen: name.len() as u32,
            typ,
        }
        .as_bytes()
        .to_vec();
        v.extend_from_slice(name);
        while !v.len().is_multiple_of(8) {
            v.push(pad);
        }
        v
    }

    #[test]
    fn parses_and_checks_padding() {
        let mut body = record(2, 1, 8, b"a", 0);
        body.extend(record(3, 2, 4, b"12345678", 0));
        let e = parse_dirents(&body).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[1].ino, e[1].off, e[1].typ), (3, 2, 4));
        assert_eq!(e[1].name, b"12345678");
        assert_eq!(parse_dirents(&[]).unwrap(), vec![]);

        let bad = record(2, 1, 8, b"a", 0xAA);
        assert_eq!(
            parse_dirents(&bad),
            Err(DirentError::NonZeroPadding { at: 0 })
        );
        let mut cut = record(2, 1, 8, b"abc", 0);
        cut.truncate(28);
        assert_eq!(parse_dirents(&cut), Err(DirentError::Truncated { at: 0 }));
        assert_eq!(
            parse_dirents(&record(2, 1, 8, b"a/b", 0)),
            Err(DirentError::BadName { at: 0 })
        );
        assert_eq!(
            parse_dirents(&record(2, 1, 8, b"", 0)),
            Err(DirentError::BadNameLen { at: 0, namelen: 0 })
        );
        let mut second_bad = record(2, 1, 8, b"a", 0);
        second_bad.extend_from_slice(&[0; 8]);
        assert_eq!(
            parse_dirents(&second_bad),
            Err(DirentError::Truncated { at: 32 })
        );
    }

    #[test]
    fn parses_plus_records() {
        let entry = fuse_entry_out {
            nodeid: 9,
            ..Default::default()
        };
        let mut body = entry.as_bytes().to_vec();
        body.extend(record(9, 1, 10, b"link", 0));
        let e = parse_direntplus(&body).unwrap();
        assert_eq!(e[0].entry.nodeid, 9);
        assert_eq!(e[0].dirent.name, b"link");
        assert_eq!(
            parse_direntplus(&body[..100]),
            Err(DirentError::Truncated { at: 0 })
        );
    }
}
