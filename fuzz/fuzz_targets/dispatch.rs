#![no_main]
//! Sequences of messages through a `Dispatcher` with an invariant-checking
//! sink; see `fuselage_fuzz::dispatch_harness` for the input layout.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuselage_fuzz::dispatch_harness::run(data);
});
