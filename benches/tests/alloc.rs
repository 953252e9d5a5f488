//! fuselage-core must not allocate per message: 10,000 dispatches of each
//! benchmarked opcode (GETATTR, LOOKUP, READ 4 KiB, WRITE 128 KiB,
//! READDIRPLUS 4 KiB) through a dispatcher over the in-memory filesystem make
//! zero heap allocations.
//!
//! A counting global allocator counts only on the thread that enabled it, so
//! the test harness's own threads and output do not disturb the count.

use fuselage_benches::{Fixture, Message};
use fuselage_core::Dispatched;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: thread-locals may be gone while a thread shuts down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counting only touches const-initialized thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(|n| n.get())
}

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
