//! Per-message cost of fuselage-core: parse + dispatch + reply building,
//! with a trivial in-memory filesystem and a sink that copies the reply into
//! a preallocated buffer (no system call).
//!
//! Run: `cargo bench -p fuselage-benches --bench core`
//!
//! The `alloc` columns come from divan's counting allocator: every
//! `dispatch/*` row must show no allocation (see also `tests/alloc.rs`).

use divan::{Bencher, black_box};
use fuselage_benches::{Fixture, Message};
use fuselage_core::abi::{fuse_attr, fuse_out_header};
use fuselage_core::reply::ReplyAttr;
use fuselage_core::{Dispatched, ParseContext, Request};
use std::time::Duration;

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

/// One message through `Dispatcher::dispatch` (parse, dispatch, filesystem
/// call, reply, sink copy).
#[divan::bench_group(sample_count = 1000, sample_size = 2000)]
mod dispatch {
    use super::*;

    fn run(bencher: Bencher, msg: Message, expect_body: usize) {
        let mut fx = Fixture::new();
        let out = fx.dispatch(msg.bytes());
        assert!(matches!(out, Dispatched::Handled(_)), "{out:?}");
        let h: fuse_out_header = fx.sink.last_header();
        assert_eq!(h.error, 0, "reply is an error");
        assert_eq!(
            fx.sink.last_len(),
            core::mem::size_of::<fuse_out_header>() + expect_body
        );
        bencher.bench_local(|| fx.dispatch(black_box(msg.bytes())));
    }

    #[divan::bench]
    fn getattr(bencher: Bencher) {
        run(bencher, Message::getattr(), 104);
    }

    #[divan::bench]
    fn lookup(bencher: Bencher) {
        run(bencher, Message::lookup(), 128);
    }

    #[divan::bench]
    fn read_4k(bencher: Bencher) {
        run(bencher, Message::read(), 4096);
    }

    #[divan::bench(sample_size = 100)]
    fn write_128k(bencher: Bencher) {
        run(bencher, Message::write(), 8);
    }

    #[divan::bench]
    fn readdirplus_4k(bencher: Bencher) {
        run(
            bencher,
            Message::readdirplus(),
            fuselage_benches::readdirplus_entries() * fuselage_core::dirent::direntplus_size(9),
        );
    }
}

/// The pieces of the GETATTR path on their own, to see where its time goes.
#[divan::bench_group(sample_count = 1000, sample_size = 5000)]
mod getattr_parts {
    use super::*;

    /// `Request::parse` alone.
    #[divan::bench]
    fn parse(bencher: Bencher) {
        let msg = Message::getattr();
        bencher.bench_local(|| {
            let req = Request::parse(black_box(msg.bytes()), ParseContext::CURRENT);
            black_box(req.is_ok())
        });
    }

    /// Building the reply (`ReplyAttr::attr`) into the copying sink alone.
    #[divan::bench]
    fn reply(bencher: Bencher) {
        let fx = Fixture::new();
        let attr = fuse_attr {
            ino: 2,
            mode: 0o100_644,
            ..Default::default()
        };
        bencher.bench_local(|| {
            ReplyAttr::new(black_box(7), &fx.sink).attr(Duration::from_secs(1), black_box(&attr))
        });
    }
}
