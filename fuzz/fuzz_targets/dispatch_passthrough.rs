#![no_main]
//! Sequences of messages through a `Dispatcher` over the real passthrough
//! backend on a fresh scratch directory per input, with the dispatch
//! harness's invariant-checking sink (input layout:
//! `fuselage_fuzz::dispatch_harness`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuselage_fuzz::backends::run_passthrough(data);
});
