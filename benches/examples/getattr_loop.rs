//! Dispatches GETATTR in a loop, for profilers:
//!
//! ```sh
//! cargo build --profile bench -p fuselage-benches --example getattr_loop
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/getattr_loop 1000000
//! callgrind_annotate --inclusive=yes /tmp/cg.out | head -40
//! ```
//!
//! (The bench profile, like release, has LTO and one codegen unit; the
//! example lands in `target/release/examples/`.)

use fuselage_benches::{Fixture, Message};
use std::hint::black_box;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let mut fx = Fixture::new();
    let msg = Message::getattr();
    let start = std::time::Instant::now();
    for _ in 0..n {
        black_box(fx.dispatch(black_box(msg.bytes())));
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{n} GETATTR dispatches, {ns:.1} ns each");
}
