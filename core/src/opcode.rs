//! The request opcodes of protocol 7.45 as an enum.

macro_rules! opcodes {
    ($($(#[$doc:meta])* $name:ident = $val:expr,)*) => {
        /// A FUSE request opcode (`fuse_in_header::opcode`).
        ///
        /// The discriminants are the kernel's numbers (`FUSE_LOOKUP` = 1, ...),
        /// so `Opcode::Lookup as u32 == abi::FUSE_LOOKUP`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Opcode {
            $($(#[$doc])* $name = $val,)*
        }

        impl Opcode {
            /// Every opcode, in numeric order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name,)*];

            /// The opcode for a raw number, or `None` for numbers the protocol
            /// does not define (7, 19 and anything unknown).
            pub const fn from_u32(n: u32) -> Option<Opcode> {
                match n {
                    $($val => Some(Opcode::$name),)*
                    _ => None,
                }
            }

            /// The kernel's name for the opcode, e.g. `"LOOKUP"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Opcode::$name => stringify!($name),)*
                }
            }
        }
    };
}

opcodes! {
    /// Look up a directory entry by name.
    Lookup = 1,
    /// Drop lookup references to an inode (no reply).
    Forget = 2,
    /// Get attributes.
    Getattr = 3,
    /// Set attributes.
    Setattr = 4,
    /// Read a symbolic link.
    Readlink = 5,
    /// Create a symbolic link.
    Symlink = 6,
    /// Create a file node.
    Mknod = 8,
    /// Create a directory.
    Mkdir = 9,
    /// Remove a file.
    Unlink = 10,
    /// Remove a directory.
    Rmdir = 11,
    /// Rename an entry.
    Rename = 12,
    /// Create a hard link.
    Link = 13,
    /// Open a file.
    Open = 14,
    /// Read data.
    Read = 15,
    /// Write data.
    Write = 16,
    /// Filesystem statistics.
    Statfs = 17,
    /// Release an open file.
    Release = 18,
    /// Synchronize file contents.
    Fsync = 20,
    /// Set an extended attribute.
    Setxattr = 21,
    /// Get an extended attribute.
    Getxattr = 22,
    /// List extended attribute names.
    Listxattr = 23,
    /// Remove an extended attribute.
    Removexattr = 24,
    /// Flush on close().
    Flush = 25,
    /// Protocol negotiation.
    Init = 26,
    /// Open a directory.
    Opendir = 27,
    /// Read directory entries.
    Readdir = 28,
    /// Release an open directory.
    Releasedir = 29,
    /// Synchronize directory contents.
    Fsyncdir = 30,
    /// Test for a POSIX lock.
    Getlk = 31,
    /// Acquire or release a POSIX lock (non-blocking).
    Setlk = 32,
    /// Acquire a POSIX lock, waiting.
    Setlkw = 33,
    /// Check access permissions.
    Access = 34,
    /// Create and open a file.
    Create = 35,
    /// Interrupt an earlier request (no reply).
    Interrupt = 36,
    /// Map a block index (block-device filesystems).
    Bmap = 37,
    /// Clean up on unmount.
    Destroy = 38,
    /// ioctl on an open file.
    Ioctl = 39,
    /// Poll for I/O readiness.
    Poll = 40,
    /// Answer to a NOTIFY_RETRIEVE (no reply).
    NotifyReply = 41,
    /// Drop lookup references to many inodes (no reply).
    BatchForget = 42,
    /// Allocate or punch file space.
    Fallocate = 43,
    /// Read directory entries with attributes.
    Readdirplus = 44,
    /// Rename with flags.
    Rename2 = 45,
    /// Find data or holes.
    Lseek = 46,
    /// Copy a range between files (32-bit result).
    CopyFileRange = 47,
    /// DAX: map a file range (virtio-fs).
    Setupmapping = 48,
    /// DAX: unmap file ranges (virtio-fs).
    Removemapping = 49,
    /// Synchronize the whole filesystem.
    Syncfs = 50,
    /// Create an unnamed temporary file.
    Tmpfile = 51,
    /// Extended attributes (statx).
    Statx = 52,
    /// Copy a range between files (64-bit result).
    CopyFileRange64 = 53,
    /// CUSE device initialization.
    CuseInit = 4096,
}

impl Opcode {
    /// Whether the kernel expects no reply to this opcode.
    pub const fn is_no_reply(self) -> bool {
        matches!(
            self,
            Opcode::Forget | Opcode::BatchForget | Opcode::Interrupt | Opcode::NotifyReply
        )
    }

    /// Whether the request modifies the filesystem (refused with EROFS on a
    /// read-only mount). OPEN/CREATE with write flags are judged by the caller.
    pub const fn is_modifying(self) -> bool {
        matches!(
            self,
            Opcode::Setattr
                | Opcode::Symlink
                | Opcode::Mknod
                | Opcode::Mkdir
                | Opcode::Unlink
                | Opcode::Rmdir
                | Opcode::Rename
                | Opcode::Rename2
                | Opcode::Link
                | Opcode::Write
                | Opcode::Setxattr
                | Opcode::Removexattr
                | Opcode::Create
                | Opcode::Fallocate
                | Opcode::CopyFileRange
                | Opcode::CopyFileRange64
                | Opcode::Tmpfile
        )
    }
}

impl core::fmt::Display for Opcode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for &op in Opcode::ALL {
            assert_eq!(Opcode::from_u32(op as u32), Some(op));
        }
        assert_eq!(Opcode::from_u32(7), None);
        assert_eq!(Opcode::from_u32(19), None);
        assert_eq!(Opcode::from_u32(54), None);
        assert_eq!(Opcode::ALL.len(), 52);
        assert_eq!(Opcode::CopyFileRange64 as u32, 53);
    }
}
