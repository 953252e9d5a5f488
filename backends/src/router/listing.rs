//! Directory listings through the router: a route's listing with its
//! inode numbers rewritten, a junction's listing with the router's own
//! names shadowing the root backend's and added after them, and the
//! listing of a synthesized directory.
//!
//! Offsets: a backend's own offsets pass through (they are below 2^63:
//! `d_off` is a signed `loff_t`); the names the router adds after a root
//! backend's listing have offsets with [`INJECTED`] set.

use super::ids::{self, Owner};
use super::sink::{Answer, Recorder};
use super::tree::Child;
use super::{Router, with_nodeid};
use fuselage_core::Filesystem;
use fuselage_core::abi::{fuse_dirent, fuse_entry_out, fuse_read_in};
use fuselage_core::dirent::{DirentBuf, DirentError, dtype};
use fuselage_core::error::Errno;
use fuselage_core::filesystem::RequestHeader;
use fuselage_core::op;
use fuselage_core::reply::{ReplyDirectory, ReplySink};
use zerocopy::{FromBytes, IntoBytes};

/// Bytes of a backend's listing the router rewrites per request (the
/// kernel asks for a page or more; a shorter reply is fine).
const LIST_MAX: usize = 16 * 1024;
/// Offset bit of the names the router adds to a root backend's listing.
const INJECTED: u64 = 1 << 63;
const DIRENT_LEN: usize = core::mem::size_of::<fuse_dirent>();
const ENTRY_LEN: usize = core::mem::size_of::<fuse_entry_out>();

/// Lists `fs`'s directory `view` into `buf` (at most `limit` bytes); the
/// number of bytes packed.
fn list_from<F: Filesystem>(
    fs: &F,
    req: &RequestHeader,
    view: op::Readdir<'_>,
    plus: bool,
    buf: &mut [u8],
    limit: usize,
) -> Result<usize, Errno> {
    let rec = Recorder::new();
    let at = buf.as_ptr() as usize;
    let cap = limit.min(buf.len());
    let reply = ReplyDirectory::new(req.unique, &rec, DirentBuf::new(buf, cap));
    if plus {
        fs.readdirplus(req, view, reply)
    } else {
        fs.readdir(req, view, reply)
    }
    match rec.answer() {
        Answer::Error(e) => Err(e),
        Answer::Nothing => Err(Errno::EIO),
        Answer::Body { len: 0 } => Ok(0),
        Answer::Body { len } if len <= cap && rec.data_at() == at => Ok(len),
        Answer::Body { .. } => Err(Errno::EIO),
    }
}

/// One record of a packed listing: where its dirent starts, its size.
fn record(buf: &[u8], pos: usize, plus: bool) -> Option<(usize, fuse_dirent, usize)> {
    let d_at = pos + if plus { ENTRY_LEN } else { 0 };
    let (d, _) = fuse_dirent::read_from_prefix(buf.get(d_at..)?).ok()?;
    let size = if plus {
        fuselage_core::dirent::direntplus_size(d.namelen as usize)
    } else {
        fuselage_core::dirent::dirent_size(d.namelen as usize)
    };
    (pos + size <= buf.len()).then_some((d_at, d, size))
}

/// Rewrites route `index`'s node ids and inode numbers in a listing.
fn patch_listing(buf: &mut [u8], index: u8, plus: bool) {
    let mut pos = 0;
    while let Some((d_at, mut d, size)) = record(buf, pos, plus) {
        d.ino = ids::ino(index, d.ino);
        let _ = d.write_to_prefix(&mut buf[d_at..]);
        if plus && let Ok((mut e, _)) = fuse_entry_out::read_from_prefix(&buf[pos..]) {
            if e.nodeid != 0 {
                // An id past the router's space cannot be shown: the kernel
                // skips entries with node id 0.
                e.nodeid = ids::join(index, e.nodeid).unwrap_or(0);
            }
            // Also for entries without a node id (`.`, `..`): the record's
            // inode number and its attributes' agree.
            e.attr.ino = ids::ino(index, e.attr.ino);
            let _ = e.write_to_prefix(&mut buf[pos..]);
        }
        pos += size;
    }
}

/// Drops the records `hidden` names from a listing, in place; the bytes
/// kept and the offset of the last record seen. `dropped` gets the node id
/// of every READDIRPLUS entry dropped (the backend counted a lookup the
/// kernel will never forget).
fn filter_listing(
    buf: &mut [u8],
    plus: bool,
    hidden: impl Fn(&[u8]) -> bool,
    mut dropped: impl FnMut(u64),
) -> (usize, u64) {
    let (mut pos, mut kept, mut last) = (0, 0, 0);
    while let Some((d_at, d, size)) = record(buf, pos, plus) {
        last = d.off;
        let name = &buf[d_at + DIRENT_LEN..d_at + DIRENT_LEN + d.namelen as usize];
        if hidden(name) {
            if plus
                && let Ok((e, _)) = fuse_entry_out::read_from_prefix(&buf[pos..])
                && e.nodeid != 0
            {
                dropped(e.nodeid);
            }
        } else {
            buf.copy_within(pos..pos + size, kept);
            kept += size;
        }
        pos += size;
    }
    (kept, last)
}

impl<R: Filesystem> Router<R> {
    /// READDIR (`plus` false) or READDIRPLUS of any directory.
    pub(super) fn listing<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Readdir<'_>,
        mut reply: ReplyDirectory<'_, S>,
        plus: bool,
    ) {
        // What the kernel asked for, and no more than the transport lent.
        let limit = reply.buf().capacity();
        match Owner::of(op.ino()) {
            Owner::Root(p) => match self.tree.junction_of_backend(p) {
                None if plus => self.root.readdirplus(req, op, reply),
                None => self.root.readdir(req, op, reply),
                Some(j) => self.junction_listing(req, op, reply, plus, (j, p), limit),
            },
            Owner::Route(i, l) => {
                let Some(fs) = self.route(i) else {
                    return reply.error(Errno::ESTALE);
                };
                let mut buf = [0u8; LIST_MAX];
                let view = op::Readdir::new(l, op.raw());
                match list_from(fs, &with_nodeid(req, l), view, plus, &mut buf, limit) {
                    Ok(len) => {
                        patch_listing(&mut buf[..len], i as u8, plus);
                        reply.packed(&buf[..len])
                    }
                    Err(e) => reply.error(e),
                }
            }
            Owner::Synth(j) if j < self.tree.junctions.len() => {
                self.synth_listing(req, op.offset(), reply, plus, j)
            }
            Owner::Synth(_) => reply.error(Errno::ESTALE),
        }
    }

    /// Whether child `child` of a junction hides a same-named entry of the
    /// root backend (routes, and directories the router synthesizes).
    fn shadows(&self, child: Child) -> bool {
        match child {
            Child::Route(_) => true,
            Child::Junction(c) => self.tree.junctions[c].backend_ino().is_none(),
        }
    }

    /// The entry and `d_type` of junction child `child`.
    fn child_entry(&self, req: &RequestHeader, child: Child) -> Result<fuse_entry_out, Errno> {
        match child {
            Child::Route(i) => self.route_root_entry(req, i),
            Child::Junction(c) => Ok(self.synth_entry(c)),
        }
    }

    /// The root backend's listing of junction `j` (its directory `p`),
    /// then the router's own names in it.
    fn junction_listing<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Readdir<'_>,
        reply: ReplyDirectory<'_, S>,
        plus: bool,
        (j, p): (usize, u64),
        limit: usize,
    ) {
        let junction = &self.tree.junctions[j];
        let hidden = |name: &[u8]| junction.child(name).is_some_and(|c| self.shadows(c));
        let offset = op.offset();
        if offset & INJECTED == 0 {
            let mut buf = [0u8; LIST_MAX];
            let mut cur = offset;
            // Skip past pages of nothing but hidden names (at most a few).
            for _ in 0..64 {
                let arg = fuse_read_in {
                    offset: cur,
                    ..*op.raw()
                };
                let view = op::Readdir::new(p, &arg);
                let len = match list_from(&self.root, req, view, plus, &mut buf, limit) {
                    Ok(len) => len,
                    Err(e) => return reply.error(e),
                };
                if len == 0 {
                    break;
                }
                let forget = |nodeid| self.root.forget(req, op::Forget::new(nodeid, 1));
                let (kept, last) = filter_listing(&mut buf[..len], plus, hidden, forget);
                if kept > 0 {
                    return reply.packed(&buf[..kept]);
                }
                cur = last;
            }
        }
        // Fresh from the backend's end, or resuming the router's names.
        let first = if offset & INJECTED != 0 {
            (offset & !INJECTED) as usize
        } else {
            0
        };
        self.push_children(req, reply, plus, j, first, INJECTED, 0, true)
    }

    /// Packs junction `j`'s children from number `first` on, with offsets
    /// `base | (number + 1)` (child numbers start after `skip` entries
    /// already listed); only shadowing ones when `shadowing_only`.
    #[allow(clippy::too_many_arguments)]
    fn push_children<S: ReplySink>(
        &self,
        req: &RequestHeader,
        mut reply: ReplyDirectory<'_, S>,
        plus: bool,
        j: usize,
        first: usize,
        base: u64,
        skip: usize,
        shadowing_only: bool,
    ) {
        let children = &self.tree.junctions[j].children;
        for (n, (name, child)) in children.iter().enumerate() {
            let number = skip + n;
            if number < first || (shadowing_only && !self.shadows(*child)) {
                continue;
            }
            let Ok(entry) = self.child_entry(req, *child) else {
                continue;
            };
            let typ = dtype::from_mode(entry.attr.mode);
            let next = base | (number as u64 + 1);
            let pushed = if plus {
                reply.push_plus(&entry, next, typ, name)
            } else {
                reply.push(entry.attr.ino, next, typ, name)
            };
            if pushed == Err(DirentError::Full) {
                break;
            }
        }
        reply.ok()
    }

    /// The listing of synthesized directory `j`: ".", "..", its children.
    fn synth_listing<S: ReplySink>(
        &self,
        req: &RequestHeader,
        offset: u64,
        mut reply: ReplyDirectory<'_, S>,
        plus: bool,
        j: usize,
    ) {
        let parent = self.tree.junctions[j].parent;
        let parent_ino = self.tree.junctions[parent]
            .backend_ino()
            .unwrap_or(ids::synth_id(parent));
        for (n, (name, ino)) in [(&b"."[..], ids::synth_id(j)), (&b".."[..], parent_ino)]
            .into_iter()
            .enumerate()
        {
            if (n as u64) < offset {
                continue;
            }
            let pushed = if plus {
                // The kernel takes no reference for "." and "..".
                let mut entry = fuse_entry_out::default();
                entry.attr.ino = ino;
                reply.push_plus(&entry, n as u64 + 1, dtype::DIR, name)
            } else {
                reply.push(ino, n as u64 + 1, dtype::DIR, name)
            };
            if pushed == Err(DirentError::Full) {
                return reply.ok();
            }
        }
        self.push_children(req, reply, plus, j, offset as usize, 0, 2, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_patch_walk_every_record() {
        let mut raw = [0u8; 256];
        let mut b = DirentBuf::new(&mut raw, 256);
        b.push(5, 1, dtype::REG, b"keep").unwrap();
        b.push(6, 2, dtype::DIR, b"tmp").unwrap();
        b.push(7, 3, dtype::REG, b"also").unwrap();
        let len = b.len();
        let (kept, last) = filter_listing(&mut raw[..len], false, |n| n == b"tmp", |_| panic!());
        assert_eq!(last, 3);
        patch_listing(&mut raw[..kept], 2, false);
        let (a, _, s) = record(&raw[..kept], 0, false).unwrap();
        assert_eq!(a, 0);
        let (_, d2, _) = record(&raw[..kept], s, false).unwrap();
        assert_eq!(d2.ino, 7 ^ (2 << 56));
        assert!(record(&raw[..kept], 2 * s, false).is_none());
    }
}
