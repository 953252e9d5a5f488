//! A counting global allocator for the tests that prove a path makes no heap
//! allocation.
//!
//! [`CountingAlloc`] forwards every call to the system allocator and counts
//! each allocation (`alloc`, `alloc_zeroed`, `realloc`; not `dealloc`) twice:
//! in a process-wide total, which sees every thread (server and client), and
//! in a total of the allocating thread, which the test harness's own threads
//! and output do not disturb. A test binary installs it with one line:
//!
//! ```ignore
//! fuselage_testkit::install_counting_alloc!();
//!
//! #[test]
//! fn nothing_allocates() {
//!     let made = fuselage_testkit::alloc::on_this_thread(|| { /* ... */ });
//!     assert_eq!(made, 0);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Allocations made by every thread since the process started.
static PROCESS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Allocations made by this thread since it started.
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// A global allocator that counts allocations and otherwise is the system
/// allocator. Install it with [`install_counting_alloc!`](crate::install_counting_alloc)
/// and read the counts with [`process_total`], [`thread_total`] or
/// [`on_this_thread`]; without it installed the counts stay at zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

fn note() {
    PROCESS.fetch_add(1, Ordering::Relaxed);
    // `try_with`: thread-locals may be gone while a thread shuts down.
    let _ = THREAD.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; counting touches only an
// atomic and a const-initialized thread-local `Cell`, neither of which
// allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made by any thread of this process so far.
pub fn process_total() -> u64 {
    PROCESS.load(Ordering::SeqCst)
}

/// Allocations made by the calling thread so far.
pub fn thread_total() -> u64 {
    THREAD.with(Cell::get)
}

/// Allocations the calling thread makes while `f` runs.
pub fn on_this_thread(f: impl FnOnce()) -> u64 {
    let before = thread_total();
    f();
    thread_total() - before
}

/// Installs [`CountingAlloc`] as this test binary's global allocator.
///
/// ```ignore
/// fuselage_testkit::install_counting_alloc!();
/// ```
#[macro_export]
macro_rules! install_counting_alloc {
    () => {
        #[global_allocator]
        static COUNTING_ALLOC: $crate::alloc::CountingAlloc = $crate::alloc::CountingAlloc;
    };
}
