#![no_main]
//! `Request::parse` and `Request::parse_segments` on arbitrary bytes; see
//! `fuselage_fuzz::parse_harness` for the input layout and the checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuselage_fuzz::parse_harness::run(data);
});
