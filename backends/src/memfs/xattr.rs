//! Extended attributes of one inode.
//!
//! Names must be in the `user.`, `trusted.` or `security.` namespace (as on
//! tmpfs; `system.` ACLs are not supported) and values are limited to
//! [`XATTR_SIZE_MAX`] bytes. Names and values count against the
//! filesystem's capacity like file data.

use fuselage_core::Errno;

/// Largest value (Linux's `XATTR_SIZE_MAX`, 64 KiB): larger ones get `E2BIG`.
pub const XATTR_SIZE_MAX: usize = 64 * 1024;

/// Largest name (`XATTR_NAME_MAX`): longer ones get `ERANGE`.
pub const XATTR_NAME_MAX: usize = 255;

/// `setxattr` flag: fail with `EEXIST` if the attribute exists.
pub const XATTR_CREATE: u32 = libc::XATTR_CREATE as u32;
/// `setxattr` flag: fail with `ENODATA` if the attribute does not exist.
pub const XATTR_REPLACE: u32 = libc::XATTR_REPLACE as u32;

const NAMESPACES: [&[u8]; 3] = [b"user.", b"trusted.", b"security."];

/// Checks an attribute name: `ERANGE` when too long, `EOPNOTSUPP` outside
/// the supported namespaces, `EINVAL` for a bare namespace prefix.
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    match NAMESPACES.iter().find(|ns| name.starts_with(ns)) {
        None => Err(Errno::EOPNOTSUPP),
        Some(ns) if name.len() == ns.len() => Err(Errno::EINVAL),
        Some(_) => Ok(()),
    }
}

/// Bytes an attribute is charged for.
fn cost(name: &[u8], value: &[u8]) -> u64 {
    (name.len() + value.len()) as u64
}

/// One attribute.
#[derive(Debug)]
struct Xattr {
    name: Box<[u8]>,
    value: Box<[u8]>,
}

/// The attributes of one inode (a short list searched linearly).
#[derive(Debug, Default)]
pub struct Xattrs {
    list: Vec<Xattr>,
}

impl Xattrs {
    fn position(&self, name: &[u8]) -> Option<usize> {
        self.list.iter().position(|x| &*x.name == name)
    }

    /// The value of `name`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.position(name).map(|i| &*self.list[i].value)
    }

    /// Sets `name` to `value` honoring `XATTR_CREATE` / `XATTR_REPLACE`.
    /// `charge` is asked for any growth in bytes first (and may refuse with
    /// `ENOSPC`); returns the bytes freed by a shrink.
    pub fn set(
        &mut self,
        name: &[u8],
        value: &[u8],
        flags: u32,
        charge: impl FnOnce(u64) -> Result<(), Errno>,
    ) -> Result<u64, Errno> {
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::E2BIG);
        }
        match self.position(name) {
            Some(_) if flags & XATTR_CREATE != 0 => Err(Errno::EEXIST),
            None if flags & XATTR_REPLACE != 0 => Err(Errno::ENODATA),
            Some(i) => {
                let old = cost(name, &self.list[i].value);
                let new = cost(name, value);
                if new > old {
                    charge(new - old)?;
                }
                self.list[i].value = value.into();
                Ok(old.saturating_sub(new))
            }
            None => {
                charge(cost(name, value))?;
                self.list.push(Xattr {
                    name: name.into(),
                    value: value.into(),
                });
                Ok(0)
            }
        }
    }

    /// Removes `name`; returns the bytes freed, or `ENODATA`.
    pub fn remove(&mut self, name: &[u8]) -> Result<u64, Errno> {
        let i = self.position(name).ok_or(Errno::ENODATA)?;
        let x = self.list.swap_remove(i);
        Ok(cost(&x.name, &x.value))
    }

    /// Length of the LISTXATTR answer: every name followed by a NUL.
    pub fn list_len(&self) -> usize {
        self.list.iter().map(|x| x.name.len() + 1).sum()
    }

    /// Appends the LISTXATTR answer to `out`.
    pub fn list_into(&self, out: &mut Vec<u8>) {
        for x in &self.list {
            out.extend_from_slice(&x.name);
            out.push(0);
        }
    }

    /// Bytes charged for all attributes.
    pub fn charged(&self) -> u64 {
        self.list.iter().map(|x| cost(&x.name, &x.value)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_sizes() {
        let mut x = Xattrs::default();
        let ok = |_| Ok(());
        assert_eq!(
            x.set(b"user.a", b"1", XATTR_REPLACE, ok),
            Err(Errno::ENODATA)
        );
        assert_eq!(x.set(b"user.a", b"1", XATTR_CREATE, ok), Ok(0));
        assert_eq!(x.set(b"user.a", b"2", XATTR_CREATE, ok), Err(Errno::EEXIST));
        assert_eq!(x.set(b"user.a", b"", XATTR_REPLACE, ok), Ok(1));
        assert_eq!(x.get(b"user.a"), Some(&b""[..]));
        let big = vec![0; XATTR_SIZE_MAX + 1];
        assert_eq!(x.set(b"user.b", &big, 0, ok), Err(Errno::E2BIG));
        assert_eq!(
            x.set(b"user.b", b"v", 0, |_| Err(Errno::ENOSPC)),
            Err(Errno::ENOSPC)
        );
        assert_eq!(x.list_len(), 7);
        assert_eq!(x.remove(b"user.a"), Ok(6));
        assert_eq!(x.remove(b"user.a"), Err(Errno::ENODATA));
        assert_eq!(
            check_name(b"system.posix_acl_access"),
            Err(Errno::EOPNOTSUPP)
        );
        assert_eq!(check_name(b"user."), Err(Errno::EINVAL));
        assert_eq!(check_name(&[b'u'; 256]), Err(Errno::ERANGE));
        assert_eq!(check_name(b"trusted.x"), Ok(()));
    }
}
