//! The backend registry through real mounts: the registry of
//! `examples/registry.rs` (a custom backend claiming `--source
//! greeting:TEXT`, then the stock backends) serves mounts in this process
//! on every transport; mounts it does not claim fall through to the stock
//! backends, and a claim that fails stops the mount with exit status 2
//! before anything is mounted.

#[macro_use]
mod common;

#[path = "../examples/registry.rs"]
#[allow(dead_code)]
mod example;

use common::*;
use fuselage::cli::{self, Command, MountArgs};
use fuselage::serve::ServeError;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A mount served by a thread of this process; dropping it (also while a
/// test panics) unmounts lazily, which ends the serving thread.
struct InProcessMount {
    mountpoint: PathBuf,
    thread: Option<JoinHandle<Result<(), ServeError>>>,
    _dir: tempfile::TempDir,
}

impl InProcessMount {
    /// Serves `fuselage mount --transport TRANSPORT OPTIONS MNT` with the
    /// example's registry and waits until the mount is live.
    fn serve(transport: &str, options: &[&str]) -> InProcessMount {
        let dir = traversable_tempdir();
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&mountpoint).unwrap();
        let args = parse(transport, options, &mountpoint);
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            example::registry().serve_with(&args, move || {
                let _ = ready_tx.send(());
            })
        });
        let mut mount = InProcessMount {
            mountpoint,
            thread: Some(thread),
            _dir: dir,
        };
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let thread = mount.thread.take().unwrap();
            match thread.is_finished() {
                true => panic!(
                    "serving ended before the mount was live: {:?}",
                    thread.join()
                ),
                false => panic!("the mount was not live within 30 s"),
            }
        }
        mount
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and returns what serving returned.
    fn unmount(mut self) -> Result<(), ServeError> {
        let st = std::process::Command::new("umount")
            .arg(&self.mountpoint)
            .status()
            .unwrap();
        assert!(st.success(), "umount {}", self.mountpoint.display());
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the serving thread")
    }
}

impl Drop for InProcessMount {
    fn drop(&mut self) {
        if self.thread.is_some() {
            lazy_unmount(&self.mountpoint);
        }
    }
}

fn parse(transport: &str, options: &[&str], mountpoint: &Path) -> MountArgs {
    let mut argv = vec!["mount".to_string(), "--transport".into(), transport.into()];
    argv.extend(options.iter().map(|s| s.to_string()));
    argv.push(mountpoint.display().to_string());
    match cli::parse(argv) {
        Ok(Command::Mount(args)) => args,
        other => panic!("{other:?}"),
    }
}

/// The registered backend claims its specification and serves it.
fn custom_backend_serves(transport: &str) {
    let fs = InProcessMount::serve(transport, &["--source", "greeting:hello world"]);
    let p = fs.path();
    let entry = mount_entry(p).expect("in the mount table");
    assert!(entry.contains("fuse.greeting"), "{entry}");
    assert_eq!(
        fs::read_to_string(p.join("greeting")).unwrap(),
        "hello world\n"
    );
    let names: Vec<String> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["greeting"]);
    expect_errno(fs::write(p.join("greeting"), "x"), libc::EROFS, "write");
    expect_errno(p.join("missing").metadata(), libc::ENOENT, "stat");
    fs.unmount().expect("serving ends cleanly on unmount");
}

/// A mount nobody registered claims is served by the stock backends.
fn unclaimed_falls_to_stock(transport: &str) {
    let fs = InProcessMount::serve(transport, &["--size", "16M"]);
    let entry = mount_entry(fs.path()).expect("in the mount table");
    assert!(entry.contains("fuse.memfs"), "{entry}");
    fs::write(fs.path().join("f"), "data").unwrap();
    assert_eq!(fs::read_to_string(fs.path().join("f")).unwrap(), "data");
    fs.unmount().expect("serving ends cleanly on unmount");
}

every_transport!(custom_backend_serves, unclaimed_falls_to_stock);

/// A registered backend that accepts a mount but cannot start it fails the
/// mount with its reason and exit status 2; nothing is mounted.
#[test]
fn claim_error_exits_2() {
    let dir = traversable_tempdir();
    let args = parse("auto", &["--source", "greeting:"], dir.path());
    let e = example::registry().serve(&args).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "backend greeting: the greeting is empty: give --source greeting:TEXT"
    );
    assert!(!is_mountpoint(dir.path()));
}
