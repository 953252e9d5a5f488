//! The overlay's inode table: one [`Node`] per overlay inode, and which
//! layer inodes it stands for.
//!
//! A node holds exactly one lookup reference in each layer's inode store
//! for every layer inode it names (its upper inode, and its lower inodes:
//! one for a file, every merged directory for a directory); they are given
//! back when the kernel forgets the node. Every such layer inode is also a
//! key (`(layer, layer node id)`) leading back to the node, so two names of
//! one lower inode (hard links) are one overlay inode with the lower link
//! count, and a file copied up stays the same overlay inode.
//!
//! # Inode numbers
//!
//! A node reports the inode number of the entry it was first found as,
//! with the layer index in the top 8 bits (upper: 0, first lower: 1, ...),
//! so numbers from layers on different devices never collide (host inode
//! numbers above 2^56 are folded into the low 56 bits). A copied-up file
//! keeps reporting its origin's number, and directory listings map the
//! upper inode number of a copied-up file back to it ([`InoMap`]).

use super::super::passthrough::inode_store::lock;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Layer index of the upper layer (lowers are 1, 2, ... topmost first).
pub(crate) const UPPER: usize = 0;

/// Bits of a reported inode number that hold the layer index.
const LAYER_SHIFT: u32 = 56;

/// The inode number an overlay inode found in `layer` with host inode
/// number `host_ino` reports.
pub(crate) fn reported_ino(layer: usize, host_ino: u64) -> u64 {
    ((layer as u64) << LAYER_SHIFT) | (host_ino & ((1u64 << LAYER_SHIFT) - 1))
}

/// Which layer inodes an overlay inode stands for, and where it is.
#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    /// The upper inode (node id in the upper layer), once it exists.
    pub upper: Option<u64>,
    /// Lower inodes `(layer, node id)`, topmost first: the file's origin,
    /// or every lower directory merged into this one.
    pub lowers: Vec<(usize, u64)>,
    /// Parent overlay node id (for copy-up), and the name last seen.
    pub parent: u64,
    /// Name in the parent.
    pub name: CString,
    /// The layer open files of this node do their I/O in, and how many
    /// are open (the kernel allows only one backing file per inode).
    pub opens: Option<(usize, u32)>,
}

impl NodeState {
    /// The topmost layer inode: `(layer, node id)`.
    pub(crate) fn top(&self) -> Option<(usize, u64)> {
        self.upper
            .map(|u| (UPPER, u))
            .or_else(|| self.lowers.first().copied())
    }

    /// The node id in `layer`, if this node has one there.
    pub(crate) fn in_layer(&self, layer: usize) -> Option<u64> {
        if layer == UPPER {
            self.upper
        } else {
            self.lowers.iter().find(|(l, _)| *l == layer).map(|p| p.1)
        }
    }

    /// Every layer inode as a key.
    pub(crate) fn keys(&self) -> Vec<(usize, u64)> {
        let mut keys: Vec<(usize, u64)> = self.upper.map(|u| (UPPER, u)).into_iter().collect();
        keys.extend(self.lowers.iter().copied());
        keys
    }
}

/// Layer inodes `(layer, node id)`, the upper first if there is one, then
/// lowers topmost first: held inline for the usual few layers, so that
/// looking up a known name allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Up to [`Keys::INLINE`] keys.
    Inline([(usize, u64); Keys::INLINE], usize),
    /// More.
    Heap(Vec<(usize, u64)>),
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::Inline([(0, 0); Keys::INLINE], 0)
    }
}

impl Keys {
    /// How many keys fit without allocating.
    pub(crate) const INLINE: usize = 8;

    /// Adds a key at the end.
    pub(crate) fn push(&mut self, key: (usize, u64)) {
        match self {
            Keys::Inline(a, n) if *n < Keys::INLINE => {
                a[*n] = key;
                *n += 1;
            }
            Keys::Inline(a, n) => {
                let mut v = a[..*n].to_vec();
                v.push(key);
                *self = Keys::Heap(v);
            }
            Keys::Heap(v) => v.push(key),
        }
    }

    /// The keys in order.
    pub(crate) fn as_slice(&self) -> &[(usize, u64)] {
        match self {
            Keys::Inline(a, n) => &a[..*n],
            Keys::Heap(v) => v,
        }
    }

    /// The upper inode among them.
    pub(crate) fn upper(&self) -> Option<u64> {
        self.as_slice()
            .first()
            .filter(|k| k.0 == UPPER)
            .map(|k| k.1)
    }

    /// The lower inodes among them, topmost first.
    pub(crate) fn lowers(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.as_slice().iter().copied().filter(|k| k.0 != UPPER)
    }
}

/// An overlay inode.
#[derive(Debug)]
pub(crate) struct Node {
    /// Its node id.
    pub id: u64,
    /// File type bits (`S_IFMT`).
    pub kind: u32,
    /// The inode number it reports.
    pub ino: u64,
    /// Kernel lookup references.
    pub refs: AtomicU64,
    /// Layers and place.
    pub state: Mutex<NodeState>,
    /// Held while the node is copied up.
    pub copy_lock: Mutex<()>,
}

impl Node {
    /// A snapshot of the state.
    pub(crate) fn snapshot(&self) -> NodeState {
        lock(&self.state).clone()
    }

    /// The topmost layer inode, read without copying the state (the
    /// request path must not allocate).
    pub(crate) fn top(&self) -> Option<(usize, u64)> {
        lock(&self.state).top()
    }

    /// The node id in `layer`, if it has one there.
    pub(crate) fn in_layer(&self, layer: usize) -> Option<u64> {
        lock(&self.state).in_layer(layer)
    }

    /// The upper inode, once it exists.
    pub(crate) fn upper(&self) -> Option<u64> {
        lock(&self.state).upper
    }

    /// Whether it stands for any lower inode.
    pub(crate) fn has_lowers(&self) -> bool {
        !lock(&self.state).lowers.is_empty()
    }

    /// Its layer inodes, copied without allocating.
    pub(crate) fn keys(&self) -> Keys {
        let st = lock(&self.state);
        let mut k = Keys::default();
        if let Some(u) = st.upper {
            k.push((UPPER, u));
        }
        for &l in &st.lowers {
            k.push(l);
        }
        k
    }

    /// Its parent's node id.
    pub(crate) fn parent(&self) -> u64 {
        lock(&self.state).parent
    }

    /// Whether it is a directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

/// Upper inode numbers of copied-up files, mapped to the origin's reported
/// number (for READDIR).
pub(crate) type InoMap = HashMap<u64, u64>;

#[derive(Debug, Default)]
struct Tables {
    nodes: HashMap<u64, Arc<Node>>,
    by_layer: HashMap<(usize, u64), u64>,
    next: u64,
}

/// The table of overlay inodes.
#[derive(Debug)]
pub(crate) struct NodeTable {
    tables: Mutex<Tables>,
}

/// What [`NodeTable::adopt`] did with the layer references it was given.
pub(crate) struct Adopted {
    /// The node.
    pub node: Arc<Node>,
    /// Layer references that duplicate ones the node already holds: give
    /// them back to their layers.
    pub surplus: Keys,
}

impl NodeTable {
    /// A table holding only the root (node id 1) with the given layers.
    pub(crate) fn new(root: NodeState, ino: u64) -> NodeTable {
        let mut t = Tables {
            next: 2,
            ..Tables::default()
        };
        for k in root.keys() {
            t.by_layer.insert(k, 1);
        }
        t.nodes.insert(
            1,
            Arc::new(Node {
                id: 1,
                kind: libc::S_IFDIR,
                ino,
                refs: AtomicU64::new(1),
                state: Mutex::new(root),
                copy_lock: Mutex::new(()),
            }),
        );
        NodeTable {
            tables: Mutex::new(t),
        }
    }

    /// The node `id`.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Node>> {
        lock(&self.tables).nodes.get(&id).cloned()
    }

    /// Records that `node` now also stands for the layer inode `key`.
    pub(crate) fn add_key(&self, key: (usize, u64), node: u64) {
        lock(&self.tables).by_layer.insert(key, node);
    }

    /// Finds the node one of `found`'s layer inodes belongs to (topmost
    /// first) or makes one (named `name` in `parent`), taking `kernel_refs`
    /// kernel references. The caller gives one layer reference per entry of
    /// `found`. A known node is found without allocating.
    pub(crate) fn adopt(
        &self,
        found: &Keys,
        parent: u64,
        name: &CStr,
        kind: u32,
        ino: u64,
        kernel_refs: u64,
    ) -> Adopted {
        let mut t = lock(&self.tables);
        let keys = found.as_slice();
        let existing = keys
            .iter()
            .find_map(|k| t.by_layer.get(k).copied())
            .and_then(|id| t.nodes.get(&id).cloned());
        if let Some(node) = existing {
            node.refs.fetch_add(kernel_refs, Ordering::AcqRel);
            let mut surplus = Keys::default();
            let mut st = lock(&node.state);
            for &k in keys {
                // A layer inode another node already stands for stays
                // with it (never two owners of one layer reference).
                if t.by_layer.contains_key(&k) {
                    surplus.push(k);
                    continue;
                }
                if k.0 == UPPER && st.upper.is_none() {
                    st.upper = Some(k.1);
                    t.by_layer.insert(k, node.id);
                } else if k.0 != UPPER && st.in_layer(k.0).is_none() {
                    st.lowers.push(k);
                    st.lowers.sort_by_key(|p| p.0);
                    t.by_layer.insert(k, node.id);
                } else {
                    surplus.push(k);
                }
            }
            if st.parent != parent || st.name.as_c_str() != name {
                st.parent = parent;
                st.name = name.to_owned();
            }
            drop(st);
            return Adopted { node, surplus };
        }
        let id = t.next;
        t.next += 1;
        for k in keys {
            t.by_layer.insert(*k, id);
        }
        let node = Arc::new(Node {
            id,
            kind,
            ino,
            refs: AtomicU64::new(kernel_refs),
            state: Mutex::new(NodeState {
                upper: found.upper(),
                lowers: found.lowers().collect(),
                parent,
                name: name.to_owned(),
                opens: None,
            }),
            copy_lock: Mutex::new(()),
        });
        t.nodes.insert(id, node.clone());
        Adopted {
            node,
            surplus: Keys::default(),
        }
    }

    /// Gives `node`'s upper inode to a new node with the same inode number
    /// and place (for an open that needs a different backing file than the
    /// node's open files use); `node` keeps its lower inodes.
    pub(crate) fn split_upper(&self, node: &Node) -> Option<u64> {
        let mut t = lock(&self.tables);
        let mut st = lock(&node.state);
        let upper = st.upper.take()?;
        let id = t.next;
        t.next += 1;
        t.by_layer.insert((UPPER, upper), id);
        let fresh = Arc::new(Node {
            id,
            kind: node.kind,
            ino: node.ino,
            refs: AtomicU64::new(0),
            state: Mutex::new(NodeState {
                upper: Some(upper),
                lowers: Vec::new(),
                parent: st.parent,
                name: st.name.clone(),
                opens: None,
            }),
            copy_lock: Mutex::new(()),
        });
        t.nodes.insert(id, fresh);
        Some(id)
    }

    /// Drops `n` kernel references; returns the layer inodes to give back
    /// when the node is gone.
    pub(crate) fn forget(&self, id: u64, n: u64) -> Vec<(usize, u64)> {
        if id == 1 {
            return Vec::new();
        }
        let mut t = lock(&self.tables);
        let Some(node) = t.nodes.get(&id).cloned() else {
            return Vec::new();
        };
        let prev = node
            .refs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                Some(r.saturating_sub(n))
            })
            .unwrap_or(0);
        if prev > n {
            return Vec::new();
        }
        t.nodes.remove(&id);
        let keys = node.snapshot().keys();
        for k in &keys {
            if t.by_layer.get(k) == Some(&id) {
                t.by_layer.remove(k);
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(upper: Option<u64>, lowers: &[(usize, u64)]) -> Keys {
        let mut k = Keys::default();
        if let Some(u) = upper {
            k.push((UPPER, u));
        }
        for &l in lowers {
            k.push(l);
        }
        k
    }

    fn adopt(t: &NodeTable, upper: Option<u64>, lowers: &[(usize, u64)]) -> Adopted {
        t.adopt(&found(upper, lowers), 1, c"n", libc::S_IFREG, 9, 1)
    }

    fn state(upper: Option<u64>, lowers: &[(usize, u64)]) -> NodeState {
        NodeState {
            upper,
            lowers: lowers.to_vec(),
            parent: 1,
            name: c"n".to_owned(),
            opens: None,
        }
    }

    fn table() -> NodeTable {
        NodeTable::new(state(Some(1), &[(1, 1)]), 1)
    }

    #[test]
    fn one_layer_inode_is_one_node() {
        let t = table();
        let a = adopt(&t, None, &[(1, 5)]);
        assert!(a.surplus.as_slice().is_empty());
        // The same lower inode by another name (a hard link).
        let b = adopt(&t, None, &[(1, 5)]);
        assert_eq!(a.node.id, b.node.id);
        assert_eq!(
            b.surplus.as_slice(),
            [(1, 5)],
            "the second reference goes back"
        );
        // Copied up: the upper inode joins the node.
        t.add_key((UPPER, 7), a.node.id);
        lock(&a.node.state).upper = Some(7);
        let c = adopt(&t, Some(7), &[]);
        assert_eq!(c.node.id, a.node.id);
        assert_eq!(c.surplus.as_slice(), [(UPPER, 7)]);
        // Three kernel references: the layer references go back with the
        // last forget only.
        assert!(t.forget(a.node.id, 2).is_empty());
        let mut back = t.forget(a.node.id, 1);
        back.sort();
        assert_eq!(back, vec![(UPPER, 7), (1, 5)]);
        assert!(t.get(a.node.id).is_none());
        // Forgetting more than was counted is harmless.
        assert!(t.forget(a.node.id, 5).is_empty());
        assert!(t.forget(1, 5).is_empty(), "the root stays");
    }

    #[test]
    fn stray_forgets_give_layer_references_back_once() {
        let t = table();
        // Never adopted: nothing to give back, nothing removed.
        for id in [0, 2, 999, u64::MAX] {
            assert!(t.forget(id, 1).is_empty());
            assert!(t.forget(id, u64::MAX).is_empty());
        }
        assert!(t.forget(1, u64::MAX).is_empty(), "the root stays");
        assert!(t.get(1).is_some());
        let a = adopt(&t, Some(7), &[(1, 5)]);
        // A count of 0 changes nothing.
        assert!(t.forget(a.node.id, 0).is_empty());
        assert!(t.get(a.node.id).is_some());
        // More than was counted: the layer references go back once.
        let mut back = t.forget(a.node.id, u64::MAX);
        back.sort();
        assert_eq!(back, vec![(UPPER, 7), (1, 5)]);
        for n in [1, 0, u64::MAX] {
            assert!(t.forget(a.node.id, n).is_empty(), "forgotten twice");
        }
        // The layer inodes are free for a new node.
        let b = adopt(&t, Some(7), &[(1, 5)]);
        assert!(b.surplus.as_slice().is_empty());
        assert!(t.get(b.node.id).is_some());
        assert_eq!(t.forget(b.node.id, 1).len(), 2);
    }

    #[test]
    fn a_split_gives_the_upper_inode_a_node_of_its_own() {
        let t = table();
        let a = adopt(&t, Some(7), &[(2, 5)]);
        let id = t.split_upper(&a.node).unwrap();
        assert_ne!(id, a.node.id);
        let fresh = t.get(id).unwrap();
        assert_eq!(fresh.ino, a.node.ino, "same inode number");
        assert_eq!(fresh.snapshot().upper, Some(7));
        assert_eq!(a.node.snapshot().upper, None);
        let again = adopt(&t, Some(7), &[]);
        assert_eq!(again.node.id, id);
        assert_eq!(t.forget(a.node.id, 1), vec![(2, 5)]);
        assert_eq!(t.forget(id, 1), vec![(UPPER, 7)]);
    }

    #[test]
    fn keys_spill_past_the_inline_ones() {
        let mut k = Keys::default();
        for l in 1..=Keys::INLINE + 3 {
            k.push((l, l as u64));
        }
        assert!(matches!(k, Keys::Heap(_)));
        assert_eq!(k.as_slice().len(), Keys::INLINE + 3);
        assert_eq!(k.upper(), None);
        assert_eq!(k.lowers().next(), Some((1, 1)));
        assert_eq!(found(Some(4), &[(1, 2)]).upper(), Some(4));
    }

    #[test]
    fn topmost_layer_first() {
        let s = state(Some(3), &[(1, 4), (2, 5)]);
        assert_eq!(s.top(), Some((UPPER, 3)));
        assert_eq!(s.in_layer(2), Some(5));
        assert_eq!(state(None, &[(2, 5)]).top(), Some((2, 5)));
    }
}
