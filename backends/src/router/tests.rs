//! The router driven directly, without a kernel: requests built by hand,
//! answers recorded.

use super::*;
use crate::memfs::{MemFs, MemFsConfig};
use fuselage_core::init::InitConfig;
use std::ffi::CStr;

fn memfs() -> MemFs {
    MemFs::new(MemFsConfig::default())
}

fn router() -> Router<MemFs> {
    let routes = vec![
        (RoutePath::parse("/tmp").unwrap(), StockFs::Memory(memfs())),
        (
            RoutePath::parse("/etc/scratch").unwrap(),
            StockFs::Memory(memfs()),
        ),
    ];
    let r = Router::new(memfs(), routes).unwrap();
    r.resolve_junctions();
    r
}

fn req(nodeid: u64) -> RequestHeader {
    RequestHeader {
        nodeid,
        unique: 1,
        ..Default::default()
    }
}

fn lookup(r: &Router<MemFs>, parent: u64, name: &CStr) -> Result<fuse_entry_out, Errno> {
    let rec = Recorder::new();
    r.lookup(
        &req(parent),
        op::Lookup::new(parent, name),
        ReplyEntry::new(1, &rec),
    );
    recorded::<fuse_entry_out>(&rec)
}

fn mkdir(r: &Router<MemFs>, parent: u64, name: &CStr) -> Result<fuse_entry_out, Errno> {
    let rec = Recorder::new();
    let arg = fuse_mkdir_in {
        mode: 0o755,
        umask: 0,
    };
    r.mkdir(
        &req(parent),
        op::Mkdir::new(parent, &arg, name),
        ReplyEntry::new(1, &rec),
    );
    recorded::<fuse_entry_out>(&rec)
}

#[test]
fn route_names_lead_to_route_roots_with_their_own_ids() {
    let r = router();
    let tmp = lookup(&r, 1, c"tmp").unwrap();
    assert_eq!(tmp.nodeid, ids::join(1, 1).unwrap());
    let etc = lookup(&r, 1, c"etc").unwrap();
    assert_eq!(Owner::of(etc.nodeid), Owner::Synth(1));
    let scratch = lookup(&r, etc.nodeid, c"scratch").unwrap();
    assert_eq!(scratch.nodeid, ids::join(2, 1).unwrap());
    // The same local inode in both routes shows distinct numbers.
    let a = mkdir(&r, tmp.nodeid, c"d").unwrap();
    let b = mkdir(&r, scratch.nodeid, c"d").unwrap();
    assert_eq!(a.nodeid & ids::LOCAL_MASK, b.nodeid & ids::LOCAL_MASK);
    assert_ne!(a.attr.ino, b.attr.ino);
    assert_eq!(
        Owner::of(a.nodeid),
        Owner::Route(1, a.nodeid & ids::LOCAL_MASK)
    );
}

#[test]
fn mount_points_are_busy_and_cross_renames_exdev() {
    let r = router();
    let tmp = lookup(&r, 1, c"tmp").unwrap();
    assert_eq!(mkdir(&r, 1, c"tmp").unwrap_err(), Errno::EEXIST);
    let rec = Recorder::new();
    r.rmdir(&req(1), op::Rmdir::new(1, c"tmp"), ReplyEmpty::new(1, &rec));
    assert!(matches!(rec.answer(), Answer::Error(Errno::EBUSY)));
    mkdir(&r, 1, c"here").unwrap();
    let rec = Recorder::new();
    r.rename(
        &req(1),
        op::Rename::new(1, c"here", tmp.nodeid, c"there", 0),
        ReplyEmpty::new(1, &rec),
    );
    assert!(matches!(rec.answer(), Answer::Error(Errno::EXDEV)));
}

#[test]
fn init_asks_for_what_every_backend_takes() {
    let root = memfs();
    let r = Router::new(
        root,
        vec![(RoutePath::parse("/a").unwrap(), StockFs::Memory(memfs()))],
    )
    .unwrap();
    let mut config = InitConfig::default();
    let kernel = KernelInit::from_wire(&fuse_init_in::default());
    r.init(&kernel, &mut config).unwrap();
    let mut alone = InitConfig::default();
    memfs().init(&kernel, &mut alone).unwrap();
    assert_eq!(config.wanted, alone.wanted);
}

#[test]
fn overlapping_routes_are_refused() {
    let routes = vec![
        (RoutePath::parse("/a").unwrap(), StockFs::Memory(memfs())),
        (RoutePath::parse("/a/b").unwrap(), StockFs::Memory(memfs())),
    ];
    assert!(matches!(
        Router::new(memfs(), routes),
        Err(RouteError::Overlap { .. })
    ));
}

#[test]
fn batch_forget_reaches_each_backend_with_its_own_ids() {
    let r = router();
    let tmp = lookup(&r, 1, c"tmp").unwrap();
    let a = mkdir(&r, tmp.nodeid, c"a").unwrap();
    let b = mkdir(&r, 1, c"b").unwrap();
    // Forgetting every lookup lets memfs drop nothing that is linked, but
    // the ids must arrive local: a wrong id would be ignored or, worse,
    // drop another inode's count. Look both up again afterwards.
    let nodes = [
        fuse_forget_one {
            nodeid: a.nodeid,
            nlookup: 1,
        },
        fuse_forget_one {
            nodeid: b.nodeid,
            nlookup: 1,
        },
        fuse_forget_one {
            nodeid: tmp.nodeid,
            nlookup: 1,
        },
    ];
    r.batch_forget(&req(0), op::BatchForget::new(&nodes));
    assert_eq!(lookup(&r, tmp.nodeid, c"a").unwrap().nodeid, a.nodeid);
    assert_eq!(lookup(&r, 1, c"b").unwrap().nodeid, b.nodeid);
}

#[test]
fn stray_forgets_reach_no_wrong_backend_and_corrupt_nothing() {
    let r = router();
    let tmp = lookup(&r, 1, c"tmp").unwrap();
    let a = mkdir(&r, tmp.nodeid, c"a").unwrap();
    let b = mkdir(&r, 1, c"b").unwrap();
    let forget = |nodeid: u64, n: u64| r.forget(&req(nodeid), op::Forget::new(nodeid, n));
    // Never looked up: 0, the largest id, a route that does not exist, a
    // synthetic directory, unused local ids; and the roots.
    for nodeid in [
        0,
        u64::MAX,
        ids::join(9, 5).unwrap(),
        ids::join(200, 1).unwrap(),
        ids::synth_id(0),
        ids::synth_id(77),
        ids::join(1, 999).unwrap(),
        999,
        1,
        tmp.nodeid,
    ] {
        forget(nodeid, 1);
        forget(nodeid, u64::MAX);
    }
    // Each node forgotten twice, once more in a batch mixing unknown ids.
    for _ in 0..2 {
        forget(a.nodeid, 1);
        forget(b.nodeid, 1);
    }
    let nodes = [
        fuse_forget_one {
            nodeid: a.nodeid,
            nlookup: u64::MAX,
        },
        fuse_forget_one {
            nodeid: ids::join(9, 5).unwrap(),
            nlookup: 1,
        },
        fuse_forget_one {
            nodeid: ids::synth_id(3),
            nlookup: 1,
        },
        fuse_forget_one {
            nodeid: b.nodeid,
            nlookup: u64::MAX,
        },
    ];
    r.batch_forget(&req(0), op::BatchForget::new(&nodes));
    // Everything linked is still there, with the same ids.
    assert_eq!(lookup(&r, 1, c"tmp").unwrap().nodeid, tmp.nodeid);
    assert_eq!(lookup(&r, tmp.nodeid, c"a").unwrap().nodeid, a.nodeid);
    assert_eq!(lookup(&r, 1, c"b").unwrap().nodeid, b.nodeid);
    let etc = lookup(&r, 1, c"etc").unwrap();
    assert_eq!(Owner::of(etc.nodeid), Owner::Synth(1));
    let scratch = lookup(&r, etc.nodeid, c"scratch").unwrap();
    assert_eq!(scratch.nodeid, ids::join(2, 1).unwrap());
}
