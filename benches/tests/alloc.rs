//! fuselage-core must not allocate per message: 10,000 dispatches of each
//! benchmarked opcode (GETATTR, LOOKUP, READ 4 KiB, WRITE 128 KiB,
//! READDIRPLUS 4 KiB) through a dispatcher over the in-memory filesystem make
//! zero heap allocations.
//!
//! The test kit's counting global allocator counts per thread too, so
//! the test harness's own threads and output do not disturb the count.

use fuselage_benches::{Fixture, Message};
use fuselage_core::Dispatched;
use fuselage_testkit::alloc::on_this_thread as allocations;

fuselage_testkit::install_counting_alloc!();

const ROUNDS: usize = 10_000;

#[test]
fn counting_allocator_sees_allocations() {
    let n = allocations(|| {
        let v = std::hint::black_box(vec![1u8; 32]);
        drop(v);
    });
    assert_eq!(n, 1, "the counting allocator itself is broken");
}

#[test]
fn dispatch_allocates_nothing_per_message() {
    let cases = [
        ("GETATTR", Message::getattr()),
        ("LOOKUP", Message::lookup()),
        ("READ 4 KiB", Message::read()),
        ("WRITE 128 KiB", Message::write()),
        ("READDIRPLUS 4 KiB", Message::readdirplus()),
    ];
    let mut fx = Fixture::new();
    let mut failures = Vec::new();
    for (name, msg) in &cases {
        let before = fx.sink.replies();
        let n = allocations(|| {
            for _ in 0..ROUNDS {
                let out = fx.dispatch(std::hint::black_box(msg.bytes()));
                assert!(matches!(out, Dispatched::Handled(_)));
            }
        });
        assert_eq!(fx.sink.replies() - before, ROUNDS as u64, "{name}: replies");
        assert_eq!(fx.sink.last_header().error, 0, "{name}: error reply");
        println!("{name}: {n} allocations over {ROUNDS} dispatches");
        if n != 0 {
            failures.push(format!("{name}: {n} allocations"));
        }
    }
    assert!(failures.is_empty(), "allocations per message: {failures:?}");
}
