//! Latency and throughput of the three transports, in one run, as ratios to
//! blocking: QD1 `stat` and 4 KiB `O_DIRECT` reads, and 4 KiB random reads
//! at depth 32 (32 client threads), with the client pinned to CPU 0, to
//! CPU 1, and unpinned. Serves memfs (TTL 0) in this process.
//!
//! Run as root: `cargo run --release -p fuselage --example uring_latency`
//! (sets `enable_uring=Y` for the run and restores it).

use fuselage::transport::{Choice, UringConfig};
use fuselage_backends::memfs::{MemFs, MemFsConfig};
use fuselage_linux::mount::{Mount, MountOptions};
use fuselage_transport_uring::probe::ENABLE_URING_PARAM;
use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const FILE_SIZE: u64 = 64 << 20;
const QD1_OPS: u32 = 20_000;
const RAND_SECS: f64 = 1.5;

#[derive(Clone, Copy)]
enum Pin {
    Cpu(usize),
    None,
}

fn pin(p: Pin) {
    if let Pin::Cpu(cpu) = p {
        // SAFETY: CPU_SET writes inside the zeroed set; sched_setaffinity
        // reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

struct Results {
    stat_us: f64,
    read_us: f64,
    rand_iops: f64,
}

fn aligned_buf() -> *mut u8 {
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: non-zero size; leaked for the program's life.
    unsafe { std::alloc::alloc_zeroed(layout) }
}

fn measure(root: &std::path::Path, p: Pin) -> Results {
    let file = CString::new(root.join("data").to_str().unwrap()).unwrap();
    // QD1 stat and O_DIRECT read on one pinned thread.
    let f2 = file.clone();
    let (stat_us, read_us) = std::thread::spawn(move || {
        pin(p);
        // SAFETY: valid path and buffers throughout.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            for _ in 0..1000 {
                libc::stat(f2.as_ptr(), &mut st);
            }
            let t = Instant::now();
            for _ in 0..QD1_OPS {
                libc::stat(f2.as_ptr(), &mut st);
            }
            let stat_us = t.elapsed().as_secs_f64() * 1e6 / QD1_OPS as f64;
            let fd = libc::open(f2.as_ptr(), libc::O_RDONLY | libc::O_DIRECT);
            assert!(fd >= 0);
            let buf = aligned_buf();
            for i in 0..1000u64 {
                libc::pread(fd, buf.cast(), 4096, ((i * 4096) % FILE_SIZE) as i64);
            }
            let t = Instant::now();
            for i in 0..QD1_OPS as u64 {
                let n = libc::pread(fd, buf.cast(), 4096, ((i * 7919 * 4096) % FILE_SIZE) as i64);
                assert_eq!(n, 4096);
            }
            let read_us = t.elapsed().as_secs_f64() * 1e6 / QD1_OPS as f64;
            libc::close(fd);
            (stat_us, read_us)
        }
    })
    .join()
    .unwrap();
    // Depth 32: 32 threads of 4 KiB O_DIRECT random reads.
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..32u64)
        .map(|k| {
            let (stop, ops, f) = (stop.clone(), ops.clone(), file.clone());
            std::thread::spawn(move || {
                pin(p);
                // SAFETY: valid path and buffer.
                unsafe {
                    let fd = libc::open(f.as_ptr(), libc::O_RDONLY | libc::O_DIRECT);
                    let buf = aligned_buf();
                    let mut x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let off = (x % (FILE_SIZE / 4096)) * 4096;
                        libc::pread(fd, buf.cast(), 4096, off as i64);
                        n += 1;
                    }
                    ops.fetch_add(n, Ordering::Relaxed);
                    libc::close(fd);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(RAND_SECS));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    Results {
        stat_us,
        read_us,
        rand_iops: ops.load(Ordering::Relaxed) as f64 / RAND_SECS,
    }
}

fn run(choice: Choice, pins: &[Pin]) -> (String, Vec<Results>) {
    let dir = std::env::temp_dir().join(format!("fuselage-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = MountOptions {
        auto_unmount: false,
        ..MountOptions::default()
    };
    let mut mount = Mount::new(&dir, &opts).expect("mount (run as root)");
    let channel = mount.channel().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let fs = MemFs::new(MemFsConfig {
            entry_ttl: Duration::ZERO,
            attr_ttl: Duration::ZERO,
            capacity_bytes: 1 << 30,
            ..MemFsConfig::default()
        });
        let config = UringConfig {
            choice,
            ..UringConfig::default()
        };
        fuselage::transport::serve(channel, fs, &config, |i| {
            let _ = tx.send(format!(
                "{} threads={} depth={}",
                i.transport, i.threads, i.depth
            ));
        })
    });
    let name = rx.recv_timeout(Duration::from_secs(10)).expect("server up");
    std::fs::write(dir.join("data"), vec![0xA5u8; FILE_SIZE as usize]).unwrap();
    let results = pins.iter().map(|&p| measure(&dir, p)).collect();
    mount.unmount().unwrap();
    let _ = server.join();
    let _ = std::fs::remove_dir(&dir);
    (name, results)
}

fn main() {
    let old = std::fs::read_to_string(ENABLE_URING_PARAM).ok();
    let _ = std::fs::write(ENABLE_URING_PARAM, "Y");
    let pins = [Pin::Cpu(0), Pin::Cpu(1), Pin::None];
    let pin_names = ["client on CPU 0", "client on CPU 1", "client unpinned"];
    let rows: Vec<_> = [Choice::Blocking, Choice::UringRw, Choice::Uring]
        .iter()
        .map(|&c| run(c, &pins))
        .collect();
    if let Some(old) = old {
        let _ = std::fs::write(ENABLE_URING_PARAM, old.trim());
    }
    for (pi, pname) in pin_names.iter().enumerate() {
        println!("\n== {pname} ==");
        println!(
            "{:<34} {:>12} {:>8} {:>14} {:>8} {:>14} {:>8}",
            "transport", "stat QD1 us", "ratio", "read4k QD1 us", "ratio", "rand4k QD32/s", "ratio"
        );
        let base = &rows[0].1[pi];
        for (name, res) in &rows {
            let r = &res[pi];
            println!(
                "{:<34} {:>12.2} {:>8.2} {:>14.2} {:>8.2} {:>14.0} {:>8.2}",
                name,
                r.stat_us,
                r.stat_us / base.stat_us,
                r.read_us,
                r.read_us / base.read_us,
                r.rand_iops,
                r.rand_iops / base.rand_iops
            );
        }
    }
    println!(
        "\nratios: latency vs blocking (lower is better), throughput vs blocking (higher is better)"
    );
}
