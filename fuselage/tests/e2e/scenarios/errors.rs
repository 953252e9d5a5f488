//! Failures to start: what the server says and how it exits when it cannot
//! mount.

use super::*;
use crate::common::*;
use std::fs;
use std::process::Command;

/// Runs `fuselage ARGS` expecting a failure to start: a non-zero exit
/// within 10 s and exactly one stderr line starting with `fuselage: `.
fn expect_start_failure(args: &[String], what: &str) -> String {
    let mut cmd = Command::new(fuselage_bin());
    cmd.args(args);
    let out = run_bounded(cmd, EXIT_TIMEOUT, what);
    assert!(
        !out.status.success(),
        "{what}: exit status {} (stderr {:?})",
        out.status,
        out.stderr
    );
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr, got {lines:?}"
    );
    assert!(
        lines[0].starts_with("fuselage: "),
        "{what}: {:?} does not start with 'fuselage: '",
        lines[0]
    );
    assert!(
        lines[0].len() > "fuselage: ".len() + 10,
        "{what}: {:?} says nothing useful",
        lines[0]
    );
    lines[0].to_string()
}

/// No MOUNTPOINT, and a MOUNTPOINT that does not exist.
pub fn error_missing_mountpoint(setup: &Setup) {
    let dir = traversable_tempdir();
    let args = start_args(setup, dir.path(), &[]);
    expect_start_failure(&args, "no MOUNTPOINT argument");
    let missing = dir.path().join("does-not-exist");
    let mut with = args.clone();
    with.push(missing.display().to_string());
    let line = expect_start_failure(&with, "a missing mountpoint");
    assert!(
        line.contains(&missing.display().to_string()),
        "the message should name the mountpoint: {line:?}"
    );
    assert!(!missing.exists(), "the missing mountpoint was created");
}

/// A MOUNTPOINT that is a regular file (the served root is a directory).
pub fn error_mountpoint_is_file(setup: &Setup) {
    let dir = traversable_tempdir();
    let file = dir.path().join("a-file");
    write(&file, b"not a directory");
    let mut args = start_args(setup, dir.path(), &[]);
    args.push(file.display().to_string());
    let line = expect_start_failure(&args, "a mountpoint that is a regular file");
    assert!(
        line.contains(&file.display().to_string()),
        "the message should name the mountpoint: {line:?}"
    );
    assert!(!is_mountpoint(&file), "something got mounted on the file");
    assert_eq!(read(&file), b"not a directory");
}

/// A MOUNTPOINT where fuselage is already mounted; the first mount keeps
/// working.
pub fn error_already_mounted(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    write(&fs.join("before"), b"1");
    let mut args = start_args(setup, fs.scratch_dir(), &[]);
    args.push(fs.path().display().to_string());
    let line = expect_start_failure(&args, "an already-mounted mountpoint");
    assert!(
        line.contains(&fs.path().display().to_string()),
        "the message should name the mountpoint: {line:?}"
    );
    assert_eq!(
        read(&fs.join("before")),
        b"1",
        "the first mount no longer serves"
    );
    let count = fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(&*fs.path().display().to_string()))
        .count();
    assert_eq!(count, 1, "mounts stacked on {}", fs.path().display());
}

/// An option that does not exist.
pub fn error_unknown_option(setup: &Setup) {
    let dir = traversable_tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir");
    let mut args = start_args(setup, dir.path(), &["--no-such-option"]);
    args.push(mp.display().to_string());
    let line = expect_start_failure(&args, "an unknown option");
    assert!(
        line.contains("--no-such-option"),
        "the message should name the option: {line:?}"
    );
    assert!(!is_mountpoint(&mp));
}
