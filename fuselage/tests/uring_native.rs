//! Native FUSE-over-io_uring through a real mount: memfs served, file I/O
//! through the mount, fallback when the kernel does not offer it.
//!
//! These tests flip the global `enable_uring` parameter (restored by a
//! guard, even on panic) and so run in nextest's `serial` group.

#[path = "uring_common/mod.rs"]
mod common;

use common::*;
use fuselage::transport::{Choice, ServeError, Transport, UringConfig};
use fuselage_transport_uring::Unavailable;

#[test]
fn native_serves_memfs() {
    native_serves_memfs_with(config(Choice::Uring));
}

/// The same with queue threads that poll their rings for 200 µs after each
/// request before sleeping.
#[test]
fn native_serves_memfs_while_polling() {
    native_serves_memfs_with(UringConfig {
        poll: std::time::Duration::from_micros(200),
        ..config(Choice::Uring)
    });
}

fn native_serves_memfs_with(config: UringConfig) {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    let served = serve(config).expect("serve");
    assert_eq!(served.info.transport, Transport::Uring);
    assert_eq!(
        served.info.threads,
        fuselage_transport_uring::possible_cpus().unwrap().len()
    );
    assert_eq!(served.info.fallback, None);
    exercise(served.path());
    // Also from a thread pinned to each CPU, so every queue serves.
    for cpu in fuselage_transport_uring::possible_cpus().unwrap() {
        let root = served.path().to_path_buf();
        std::thread::spawn(move || {
            pin(cpu);
            let f = root.join(format!("cpu{cpu}"));
            std::fs::write(&f, vec![cpu as u8; 70_000]).unwrap();
            assert_eq!(std::fs::read(&f).unwrap(), vec![cpu as u8; 70_000]);
            std::fs::remove_file(&f).unwrap();
        })
        .join()
        .unwrap();
    }
    let end = served.unmount_and_join();
    assert!(end.is_ok(), "{end:?}");
}

#[test]
fn auto_prefers_native() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    let served = serve(config(Choice::Auto)).expect("serve");
    assert_eq!(served.info.transport, Transport::Uring);
    exercise(served.path());
    served.unmount_and_join().unwrap();
}

#[test]
fn auto_steps_down_to_uring_rw_when_enable_uring_is_off() {
    let Some(_off) = EnableUring::set(false) else {
        return;
    };
    let served = serve(config(Choice::Auto)).expect("serve");
    assert_eq!(served.info.transport, Transport::UringRw);
    assert_eq!(served.info.fallback, Some(Unavailable::EnableUringOff));
    let why = served.info.fallback.unwrap().to_string();
    assert!(
        why.contains("echo Y > /sys/module/fuse/parameters/enable_uring"),
        "{why}"
    );
    exercise(served.path());
    served.unmount_and_join().unwrap();
}

#[test]
fn forced_native_refuses_when_enable_uring_is_off() {
    let Some(_off) = EnableUring::set(false) else {
        return;
    };
    match fuselage::transport::preflight(&config(Choice::Uring)) {
        Err(Unavailable::EnableUringOff) => {}
        other => panic!("preflight: {other:?}"),
    }
    // Serving anyway ends with the reason, never falls back.
    match serve(config(Choice::Uring)) {
        Err(msg) => assert!(msg.contains("enable_uring is N"), "{msg}"),
        Ok(s) => panic!("served on {:?}", s.info.transport),
    }
}

#[test]
fn native_not_offered_at_init_steps_down_after_init() {
    // The kernel builds INIT at mount time: mount with enable_uring=N, then
    // switch it on so the probe says yes but INIT has no OVER_IO_URING. The
    // decision after INIT must serve the same connection with uring-rw.
    let Some(_off) = EnableUring::set(false) else {
        return;
    };
    let dir = TempDir::new("late");
    let opts = fuselage_linux::MountOptions {
        auto_unmount: false,
        ..Default::default()
    };
    let mount = fuselage_linux::Mount::new(dir.path(), &opts).unwrap();
    let _guard = UnmountGuard(mount.mountpoint().to_path_buf());
    let channel = mount.channel().unwrap();
    let _on = EnableUring::set(true).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        fuselage::transport::serve(channel, memfs(), &config(Choice::Auto), |i| {
            let _ = tx.send(*i);
        })
    });
    let info = rx.recv_timeout(std::time::Duration::from_secs(15)).unwrap();
    assert_eq!(info.transport, Transport::UringRw);
    assert_eq!(info.fallback, Some(Unavailable::NotOffered));
    std::fs::write(dir.path().join("x"), b"late").unwrap();
    assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"late");
    drop(mount);
    let end = join_within(t, std::time::Duration::from_secs(20));
    assert!(end.is_ok(), "{end:?}");
}

#[test]
fn simulated_refusal_falls_back_to_blocking() {
    if !require_fuse() {
        return;
    }
    // The test-only switch, as the binary sets it from FUSELAGE_TEST_DENY_URING=1.
    let deny = |choice| UringConfig {
        simulate_uring_refusal: true,
        ..config(choice)
    };
    let served = serve(deny(Choice::Auto)).expect("serve");
    assert_eq!(served.info.transport, Transport::Blocking);
    assert_eq!(served.info.fallback, Some(Unavailable::Simulated));
    exercise(served.path());
    served.unmount_and_join().unwrap();
    match serve(deny(Choice::UringRw)) {
        Err(msg) => assert!(msg.contains("EPERM"), "{msg}"),
        Ok(s) => panic!("served on {:?}", s.info.transport),
    }
}

#[test]
fn forced_errors_are_errors() {
    let e = ServeError::Unavailable(Unavailable::NotOffered);
    assert!(e.to_string().contains("FUSE_OVER_IO_URING"));
}

fn pin(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET stays inside
    // it for small cpu numbers; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
