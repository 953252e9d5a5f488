//! A directory's entries: names indexed for lookup, ordered by a stable
//! cookie for READDIR.
//!
//! Every entry gets a cookie from a per-directory counter when it is
//! inserted; cookies only grow and are never reused. READDIR at offset `off`
//! resumes at the first cookie greater than `off`, so a listing in progress
//! neither repeats nor skips entries that stay while others are created or
//! removed. Cookies 1 and 2 are "." and ".." (which are not stored).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The READDIR offset after ".".
pub const DOT_COOKIE: u64 = 1;
/// The READDIR offset after "..".
pub const DOTDOT_COOKIE: u64 = 2;
const FIRST_COOKIE: u64 = 3;

/// One name in a directory.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The name (shared with the name index).
    pub name: Arc<[u8]>,
    /// The inode it names.
    pub ino: u64,
    /// Its `d_type`.
    pub dtype: u32,
}

/// The entries of one directory.
#[derive(Debug)]
pub struct Dir {
    entries: BTreeMap<u64, DirEntry>,
    names: HashMap<Arc<[u8]>, u64>,
    next_cookie: u64,
    /// Set by RMDIR (or a rename over it): the directory is gone and takes
    /// no new entries.
    pub removed: bool,
}

impl Default for Dir {
    fn default() -> Self {
        Dir {
            entries: BTreeMap::new(),
            names: HashMap::new(),
            next_cookie: FIRST_COOKIE,
            removed: false,
        }
    }
}

impl Dir {
    /// An empty directory.
    pub fn new() -> Self {
        Dir::default()
    }

    /// The entry called `name` (borrowed key: never allocates).
    pub fn get(&self, name: &[u8]) -> Option<&DirEntry> {
        let cookie = self.names.get(name)?;
        self.entries.get(cookie)
    }

    /// Whether the directory has no entries besides "." and "..".
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `name`, which must not exist yet; returns its cookie.
    pub fn insert(&mut self, name: &[u8], ino: u64, dtype: u32) -> u64 {
        debug_assert!(!self.names.contains_key(name));
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let name: Arc<[u8]> = Arc::from(name);
        self.names.insert(name.clone(), cookie);
        self.entries.insert(cookie, DirEntry { name, ino, dtype });
        cookie
    }

    /// Removes `name`, returning its entry.
    pub fn remove(&mut self, name: &[u8]) -> Option<DirEntry> {
        let cookie = self.names.remove(name)?;
        self.entries.remove(&cookie)
    }

    /// Points the existing entry `name` at another inode, keeping its
    /// cookie; returns the inode it named before.
    pub fn retarget(&mut self, name: &[u8], ino: u64, dtype: u32) -> Option<u64> {
        let cookie = self.names.get(name)?;
        let entry = self.entries.get_mut(cookie)?;
        let old = entry.ino;
        entry.ino = ino;
        entry.dtype = dtype;
        Some(old)
    }

    /// Entries with a cookie greater than `offset`, in cookie order (none
    /// after `u64::MAX`: cookies are counted from 3 and never get there).
    pub fn after(&self, offset: u64) -> impl Iterator<Item = (u64, &DirEntry)> {
        let from = offset.max(DOTDOT_COOKIE).saturating_add(1);
        self.entries.range(from..).map(|(&c, e)| (c, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_stable_and_never_reused() {
        let mut d = Dir::new();
        let a = d.insert(b"a", 10, 8);
        let b = d.insert(b"b", 11, 8);
        assert_eq!((a, b), (3, 4));
        assert_eq!(d.remove(b"a").unwrap().ino, 10);
        let c = d.insert(b"a", 12, 8);
        assert_eq!(c, 5);
        let names: Vec<_> = d.after(b).map(|(_, e)| e.name.to_vec()).collect();
        assert_eq!(names, [b"a".to_vec()]);
        assert_eq!(d.after(0).count(), 2);
        // Any offset a peer sends is answered, the largest with nothing.
        assert_eq!(d.after(u64::MAX).count(), 0);
        assert_eq!(d.retarget(b"b", 20, 4), Some(11));
        assert_eq!(d.get(b"b").unwrap().ino, 20);
        assert!(d.get(b"zz").is_none());
    }
}
