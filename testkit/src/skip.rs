//! The skip policy of tests that need the machine's FUSE: a test whose
//! prerequisite is missing prints one line to stderr and passes, unless
//! `FUSELAGE_REQUIRE_FUSE=1` is set (as CI does), which turns every such skip
//! into a failure, so that CI never goes green by skipping.
//!
//! ```
//! use fuselage_testkit::skip;
//! fn needs_mount() {
//!     if !skip::require_fuse() {
//!         return; // skipped, with one line saying why
//!     }
//!     // ... mount and test ...
//! }
//! # let _ = needs_mount;
//! ```

use std::fs;

/// The variable that forbids skipping: set to `1`, a missing prerequisite
/// fails the test instead of skipping it.
pub const REQUIRE_FUSE_ENV: &str = "FUSELAGE_REQUIRE_FUSE";

/// The fuse module's switch that allows servers to offer FUSE-over-io_uring.
pub const ENABLE_URING_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Whether CI asked that nothing be skipped (`FUSELAGE_REQUIRE_FUSE=1`).
pub fn skipping_forbidden() -> bool {
    std::env::var(REQUIRE_FUSE_ENV).as_deref() == Ok("1")
}

/// Returns true if the test can go on. Otherwise prints `skipped: WHY` to
/// stderr and returns false, or, under `FUSELAGE_REQUIRE_FUSE=1`, panics.
///
/// ```
/// use fuselage_testkit::skip::require;
/// assert!(require(Ok(())));
/// ```
pub fn require(what: Result<(), String>) -> bool {
    match what {
        Ok(()) => true,
        Err(why) if skipping_forbidden() => {
            panic!("{REQUIRE_FUSE_ENV}=1 but this test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why} (set {REQUIRE_FUSE_ENV}=1 to make this a failure)");
            false
        }
    }
}

/// Whether this process can mount FUSE filesystems: it runs as root and
/// `/dev/fuse` opens; the error says which is missing.
pub fn fuse_available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root (these tests mount FUSE filesystems)".into());
    }
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map(drop)
        .map_err(|e| format!("cannot open /dev/fuse: {e}"))
}

/// [`require`] applied to [`fuse_available`]: true if the test can mount.
pub fn require_fuse() -> bool {
    require(fuse_available())
}

/// Switches native FUSE-over-io_uring on if it is off. A fresh machine boots
/// with the fuse module's `enable_uring` at `N`: as root this sets it to `Y`
/// and prints one line saying so (it stays on: it only allows servers to
/// offer io_uring). The error says why it cannot (no such parameter in this
/// kernel, not writable).
pub fn enable_native_uring() -> Result<(), String> {
    let read = || fs::read_to_string(ENABLE_URING_PARAM).map(|v| v.trim().to_string());
    let value = match read() {
        Ok(v) => v,
        Err(_) => {
            // The parameter appears once the fuse module is loaded.
            let _ = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/fuse");
            read().map_err(|e| {
                format!("no {ENABLE_URING_PARAM} ({e}): this kernel has no FUSE-over-io_uring")
            })?
        }
    };
    if value == "Y" {
        return Ok(());
    }
    fs::write(ENABLE_URING_PARAM, "Y").map_err(|e| {
        format!("enable_uring is {value} and cannot be switched on ({e}): echo Y > {ENABLE_URING_PARAM} as root")
    })?;
    eprintln!(
        "note: enable_uring was {value}; set it to Y ({ENABLE_URING_PARAM}) for the native io_uring rows"
    );
    Ok(())
}

/// Whether native FUSE-over-io_uring can be used: [`require_fuse`], then
/// [`enable_native_uring`] under [`require`].
///
/// Tests that flip the switch themselves and the tests that call this run in
/// nextest's `serial` group, so the switch does not change under a running
/// test.
pub fn require_native_uring() -> bool {
    require_fuse() && require(enable_native_uring())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn met_requirement_goes_on() {
        assert!(require(Ok(())));
    }

    #[test]
    fn unmet_requirement_skips_or_fails_as_ci_asks() {
        let outcome = std::panic::catch_unwind(|| require(Err("no such thing".into())));
        if skipping_forbidden() {
            assert!(outcome.is_err());
        } else {
            assert!(!outcome.unwrap());
        }
    }
}
