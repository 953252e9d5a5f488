//! Round trips through the blocking transport, without mounting: the
//! simulated kernel (fuselage-testkit) sends byte-exact requests over a
//! `SOCK_SEQPACKET` socketpair to a `Session` serving memfs, and waits for
//! each reply. Times are per request/reply round trip, so they include two
//! socket syscalls on each side and the thread wakeups: a regression in the
//! transport's loop shows here without root or /dev/fuse.
//!
//! ```sh
//! cargo bench -p fuselage-benches --bench transport
//! ```

use fuselage_backends::memfs::{MemFs, MemFsConfig};
use fuselage_linux::Channel;
use fuselage_testkit::{SimKernel, channel_pair};
use fuselage_transport_blocking::{Session, SessionConfig};
use std::sync::{Mutex, OnceLock};

fn main() {
    divan::main();
}

/// One session for all benches: the kernel end, a file's node id and handle.
struct Rig {
    kernel: SimKernel,
    file: u64,
    fh: u64,
}

fn rig(threads: usize) -> &'static Mutex<Rig> {
    static ONE: OnceLock<Mutex<Rig>> = OnceLock::new();
    static TWO: OnceLock<Mutex<Rig>> = OnceLock::new();
    let cell = if threads == 1 { &ONE } else { &TWO };
    cell.get_or_init(|| {
        let (mut kernel, server) = channel_pair().expect("socketpair");
        let fs = MemFs::new(MemFsConfig {
            capacity_bytes: 64 << 20,
            ..MemFsConfig::default()
        });
        let config = SessionConfig {
            threads,
            ..SessionConfig::default()
        };
        let session = Session::new(Channel::new(server).expect("channel"), fs, config);
        std::thread::spawn(move || session.run());
        kernel.init().expect("INIT");
        let (entry, open) = kernel
            .create(1, "bench", libc::O_RDWR as u32, 0o644, 0)
            .expect("CREATE");
        kernel
            .write(entry.nodeid, open.fh, 0, &vec![7u8; 1 << 20])
            .expect("WRITE");
        Mutex::new(Rig {
            kernel,
            file: entry.nodeid,
            fh: open.fh,
        })
    })
}

#[divan::bench(args = [1, 2])]
fn getattr(bencher: divan::Bencher, threads: usize) {
    let mut rig = rig(threads).lock().unwrap();
    let file = rig.file;
    bencher.bench_local(|| rig.kernel.getattr(file, None).expect("GETATTR"));
}

#[divan::bench(args = [1, 2])]
fn lookup(bencher: divan::Bencher, threads: usize) {
    let mut rig = rig(threads).lock().unwrap();
    bencher.bench_local(|| rig.kernel.lookup(1, "bench").expect("LOOKUP"));
}

#[divan::bench(args = [1, 2])]
fn read_4k(bencher: divan::Bencher, threads: usize) {
    let mut rig = rig(threads).lock().unwrap();
    let (file, fh) = (rig.file, rig.fh);
    bencher.bench_local(|| rig.kernel.read(file, fh, 8192, 4096).expect("READ"));
}
