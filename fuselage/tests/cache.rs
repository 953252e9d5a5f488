//! End-to-end tests of `--cache never|auto|always` on a `--source` mount,
//! on every transport and with both host watchers (one `#[test]` per
//! scenario, transport and watcher, see the `cache_rows!` invocation at the
//! bottom: the plain rows let the server pick fanotify, the `inotify_*`
//! rows force inotify).
//!
//! With `--cache always` the kernel may cache entries, attributes and
//! negative lookups for a day and keeps pages across opens, so a change
//! made directly in the source directory is only seen because the server
//! watches the host and pushes invalidations. Each such test first makes
//! the kernel cache what it will check (a stat, a read, a failed lookup),
//! changes the host, and then polls through the mount for at most
//! [`BOUND`] (the bound the README states). With `--cache never` the change
//! is seen at once, without polling.
//!
//! Each test needs root and /dev/fuse; without them it prints `skipped:
//! ...` unless `FUSELAGE_REQUIRE_FUSE=1`.

mod common;

use common::{Backend, MountedFs, Setup, lstat, wait_until};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How long a host change may take to show through a `--cache always`
/// mount.
const BOUND: Duration = Duration::from_secs(2);

/// A row: a transport, and which host watcher `--cache always` uses.
#[derive(Debug, Clone, Copy)]
struct Row {
    transport: &'static str,
    /// Force inotify (`FUSELAGE_TEST_WATCH_INOTIFY=1`); otherwise the
    /// server tries fanotify first.
    inotify: bool,
}

fn mount(row: Row, cache: &str) -> MountedFs {
    mount_backend(Backend::Passthrough, row, cache)
}

fn mount_backend(backend: Backend, row: Row, cache: &str) -> MountedFs {
    if row.inotify {
        // Inherited by the server. nextest runs each test in a process of
        // its own; under `cargo test` another row may see it too and then
        // merely watches with inotify as well. It is never removed.
        // SAFETY: no other thread of this test process reads the
        // environment concurrently in a way that could race (set once,
        // same value).
        unsafe { std::env::set_var("FUSELAGE_TEST_WATCH_INOTIFY", "1") };
    }
    let setup = Setup {
        backend,
        transport: row.transport,
        options: &[],
    };
    MountedFs::mount(&setup, &["--cache", cache])
}

fn src(m: &MountedFs) -> &Path {
    m.source().expect("a passthrough row has a source")
}

// Plain stat(2), not std's statx: std asks for the birth time too, which
// the kernel does not keep from LOOKUP/GETATTR replies and so always asks
// the server for; stat(2) is answered from the cache while it is valid.

fn size_of(p: &Path) -> Option<u64> {
    lstat(p).ok().map(|st| st.st_size as u64)
}

fn mode_of(p: &Path) -> Option<u32> {
    lstat(p).ok().map(|st| st.st_mode & 0o7777)
}

fn absent(p: &Path) -> bool {
    matches!(lstat(p), Err(e) if e.kind() == ErrorKind::NotFound)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Waits up to [`BOUND`] for `cond`, failing with `what` otherwise.
fn within_bound(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(BOUND, cond),
        "{what}: not seen through the mount within {BOUND:?}"
    );
}

fn startup_line_names_the_watcher(row: Row) {
    let m = mount(row, "always");
    let line = m.mounted_line();
    if row.inotify {
        assert!(line.contains(" cache=always(watch=inotify)"), "{line}");
        assert!(!line.contains("watch: fanotify"), "not tried: {line}");
    } else {
        // As root on a filesystem reporting file handles: fanotify; else
        // inotify, saying why.
        assert!(
            line.contains(" cache=always(watch=fanotify)")
                || (line.contains(" cache=always(watch=inotify)")
                    && line.contains("watch: fanotify")),
            "{line}"
        );
    }
    let never = mount(row, "never");
    assert!(
        never.mounted_line().contains(" cache=never"),
        "{}",
        never.mounted_line()
    );
    let auto = mount(row, "auto");
    assert!(
        !auto.mounted_line().contains("cache="),
        "{}",
        auto.mounted_line()
    );
}

fn memfs_and_overlay_take_the_mode(row: Row) {
    let m = mount_backend(Backend::Memfs, row, "always");
    let line = m.mounted_line();
    assert!(
        line.ends_with(" cache=always"),
        "memfs needs no watcher: {line}"
    );
    fs::write(m.join("f"), b"in memory").unwrap();
    assert_eq!(fs::read(m.join("f")).unwrap(), b"in memory");
    assert_eq!(size_of(&m.join("f")), Some(9));
    let m = mount_backend(Backend::Memfs, row, "never");
    assert!(
        m.mounted_line().ends_with(" cache=never"),
        "{}",
        m.mounted_line()
    );
    fs::write(m.join("f"), b"x").unwrap();
    assert_eq!(size_of(&m.join("f")), Some(1));
    let o = mount_backend(Backend::Overlay, row, "always");
    let line = o.mounted_line();
    assert!(
        line.contains(" cache=always(watch=none)")
            && line.contains("(fallback: watch: overlay layers are not watched"),
        "{line}"
    );
    fs::write(o.join("f"), b"upper").unwrap();
    assert_eq!(fs::read(o.join("f")).unwrap(), b"upper");
}

fn host_write_is_seen(row: Row) {
    host_write_is_seen_on(mount(row, "always"));
}

/// Without kernel passthrough reads come from the page cache, kept across
/// opens with `always`: the watcher must drop the pages, not only the size.
fn host_write_is_seen_through_the_page_cache(row: Row) {
    host_write_is_seen_on(mount_backend(Backend::PassthroughNoKernel, row, "always"));
}

fn host_write_is_seen_on(m: MountedFs) {
    fs::create_dir(src(&m).join("sub")).unwrap();
    for rel in ["f", "sub/g"] {
        fs::write(src(&m).join(rel), b"one").unwrap();
        // Cache attributes and pages (kept across opens with `always`).
        assert_eq!(fs::read(m.join(rel)).unwrap(), b"one");
        assert_eq!(size_of(&m.join(rel)), Some(3));
        fs::write(src(&m).join(rel), b"two, longer").unwrap();
        within_bound(&format!("new size of {rel}"), || {
            size_of(&m.join(rel)) == Some(11)
        });
        within_bound(&format!("new content of {rel}"), || {
            fs::read(m.join(rel)).unwrap() == b"two, longer"
        });
        // The same length, other bytes: only the data changed.
        fs::write(src(&m).join(rel), b"TWO, LONGER").unwrap();
        within_bound(&format!("rewritten content of {rel}"), || {
            fs::read(m.join(rel)).unwrap() == b"TWO, LONGER"
        });
    }
}

fn host_rename_is_seen(row: Row) {
    let m = mount(row, "always");
    fs::write(src(&m).join("a"), b"renamed").unwrap();
    assert_eq!(fs::read(m.join("a")).unwrap(), b"renamed");
    // A negative entry for the new name, cached for a day.
    assert!(absent(&m.join("b")));
    fs::rename(src(&m).join("a"), src(&m).join("b")).unwrap();
    within_bound("rename a -> b", || {
        absent(&m.join("a")) && fs::read(m.join("b")).is_ok_and(|d| d == b"renamed")
    });
    within_bound("listing after rename", || names(m.path()) == ["b"]);
}

fn host_unlink_is_seen(row: Row) {
    let m = mount(row, "always");
    fs::write(src(&m).join("gone"), b"x").unwrap();
    assert_eq!(size_of(&m.join("gone")), Some(1));
    assert_eq!(names(m.path()), ["gone"]);
    fs::remove_file(src(&m).join("gone")).unwrap();
    within_bound("unlink", || absent(&m.join("gone")));
    within_bound("listing after unlink", || names(m.path()).is_empty());
}

fn host_create_is_seen(row: Row) {
    let m = mount(row, "always");
    fs::create_dir(src(&m).join("d")).unwrap();
    assert!(absent(&m.join("new")));
    assert!(absent(&m.join("d/new")));
    assert_eq!(names(&m.join("d")), Vec::<String>::new());
    fs::write(src(&m).join("new"), b"hello").unwrap();
    fs::write(src(&m).join("d/new"), b"hello").unwrap();
    within_bound("create in the root", || {
        fs::read(m.join("new")).is_ok_and(|d| d == b"hello")
    });
    within_bound("create in a subdirectory", || {
        fs::read(m.join("d/new")).is_ok_and(|d| d == b"hello")
    });
    within_bound("listing after create", || names(&m.join("d")) == ["new"]);
}

fn host_chmod_is_seen(row: Row) {
    let m = mount(row, "always");
    let host = src(&m).join("mode");
    fs::write(&host, b"x").unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(mode_of(&m.join("mode")), Some(0o644));
    fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).unwrap();
    within_bound("chmod", || mode_of(&m.join("mode")) == Some(0o600));
}

fn never_sees_host_changes_at_once(row: Row) {
    let m = mount(row, "never");
    fs::write(src(&m).join("f"), b"one").unwrap();
    assert_eq!(fs::read(m.join("f")).unwrap(), b"one");
    assert!(absent(&m.join("g")));
    fs::write(src(&m).join("f"), b"two, longer").unwrap();
    assert_eq!(size_of(&m.join("f")), Some(11));
    assert_eq!(fs::read(m.join("f")).unwrap(), b"two, longer");
    fs::rename(src(&m).join("f"), src(&m).join("g")).unwrap();
    assert!(absent(&m.join("f")));
    assert_eq!(fs::read(m.join("g")).unwrap(), b"two, longer");
    fs::set_permissions(src(&m).join("g"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(mode_of(&m.join("g")), Some(0o600));
    fs::remove_file(src(&m).join("g")).unwrap();
    assert!(absent(&m.join("g")));
}

fn auto_is_unchanged(row: Row) {
    // `auto`: failed lookups are not cached, so a host create is seen at
    // once; attributes may be cached up to 1 s.
    let m = mount(row, "auto");
    assert!(absent(&m.join("late")));
    fs::write(src(&m).join("late"), b"x").unwrap();
    assert_eq!(fs::read(m.join("late")).unwrap(), b"x");
    fs::write(src(&m).join("late"), b"xyz").unwrap();
    assert!(wait_until(Duration::from_secs(3), || size_of(
        &m.join("late")
    ) == Some(3)));
}

macro_rules! cache_rows {
    (@rows $module:ident, $transport:literal, $inotify:literal, $require:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    if !super::common::$require() {
                        return;
                    }
                    super::$name(super::Row { transport: $transport, inotify: $inotify });
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        cache_rows!(@rows uring, "uring", false, require_native_uring, $($name),*);
        cache_rows!(@rows uring_rw, "uring-rw", false, require_fuse, $($name),*);
        cache_rows!(@rows blocking, "blocking", false, require_fuse, $($name),*);
        cache_rows!(@rows inotify_uring, "uring", true, require_native_uring, $($name),*);
        cache_rows!(@rows inotify_uring_rw, "uring-rw", true, require_fuse, $($name),*);
        cache_rows!(@rows inotify_blocking, "blocking", true, require_fuse, $($name),*);
    };
}

cache_rows!(
    startup_line_names_the_watcher,
    host_write_is_seen,
    host_write_is_seen_through_the_page_cache,
    host_rename_is_seen,
    host_unlink_is_seen,
    host_create_is_seen,
    host_chmod_is_seen,
    never_sees_host_changes_at_once,
    auto_is_unchanged,
    memfs_and_overlay_take_the_mode,
);
