//! Node ids, inode numbers and the backend that owns them.
//!
//! A router node id is the owning backend's index in its top 8 bits and
//! the backend's own node id in the lower 56: index 0 is the root backend
//! (so the kernel's root id 1 is the root backend's 1, and a root backend's
//! ids pass through unchanged), 1 to [`MAX_ROUTES`] the routes, and
//! [`SYNTH_INDEX`] the directories the router makes up on the way to a
//! route. Inode numbers (`st_ino`, `d_ino`) of a route have the same index
//! XORed into their top bits, so two backends that reuse the same numbers
//! still show distinct inodes through the mount.

/// Bits of a node id that belong to the backend.
pub const LOCAL_BITS: u32 = 56;
/// Mask of the backend's own part of a node id.
pub const LOCAL_MASK: u64 = (1 << LOCAL_BITS) - 1;
/// Most routes one router holds (indexes 1..=254).
pub const MAX_ROUTES: usize = 254;
/// The index of the directories the router synthesizes.
pub const SYNTH_INDEX: u8 = 0xff;

/// Whose a node id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The root backend, with its own id.
    Root(u64),
    /// Route `index` (1-based), with the route backend's own id.
    Route(usize, u64),
    /// Synthesized directory number `junction`.
    Synth(usize),
}

impl Owner {
    /// The owner of a router node id.
    #[inline]
    pub fn of(nodeid: u64) -> Owner {
        let index = (nodeid >> LOCAL_BITS) as u8;
        let local = nodeid & LOCAL_MASK;
        match index {
            0 => Owner::Root(local),
            SYNTH_INDEX => Owner::Synth(local as usize),
            i => Owner::Route(i as usize, local),
        }
    }

    /// The backend index (0 root, 1.. routes, [`SYNTH_INDEX`]).
    pub fn index(self) -> u8 {
        match self {
            Owner::Root(_) => 0,
            Owner::Route(i, _) => i as u8,
            Owner::Synth(_) => SYNTH_INDEX,
        }
    }
}

/// The router node id of backend `index`'s id `local`; `None` when `local`
/// does not fit in 56 bits (the backend ran out of the router's id space).
#[inline]
pub fn join(index: u8, local: u64) -> Option<u64> {
    if local > LOCAL_MASK {
        return None;
    }
    Some(((index as u64) << LOCAL_BITS) | local)
}

/// The inode number shown for backend `index`'s inode number `ino`.
#[inline]
pub fn ino(index: u8, ino: u64) -> u64 {
    ino ^ ((index as u64) << LOCAL_BITS)
}

/// The node id (and inode number) of synthesized directory `junction`.
pub fn synth_id(junction: usize) -> u64 {
    ((SYNTH_INDEX as u64) << LOCAL_BITS) | junction as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_by_owner() {
        assert_eq!(Owner::of(1), Owner::Root(1));
        let id = join(3, 42).unwrap();
        assert_eq!(Owner::of(id), Owner::Route(3, 42));
        assert_eq!(Owner::of(synth_id(2)), Owner::Synth(2));
        assert_eq!(join(1, 1 << 56), None);
        assert_eq!(join(1, LOCAL_MASK), Some((1 << 56) | LOCAL_MASK));
    }

    #[test]
    fn inode_numbers_differ_across_backends() {
        assert_eq!(ino(0, 5), 5);
        assert_ne!(ino(1, 5), ino(2, 5));
        assert_ne!(ino(1, 5), 5);
    }
}
