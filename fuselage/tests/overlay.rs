//! End-to-end tests of the overlay backend (`--lower DIR... --upper
//! DIR|memory`) through real mounts, every scenario on every transport.
//!
//! Each test builds its layers in a temporary directory, checksums every
//! lower layer, mounts, works through the mount, and checks at the end that
//! the lowers are byte-for-byte what they were. Mounts are held by
//! `common::MountedFs` (lazily unmounted on drop, also on panic).

#[path = "common/mod.rs"]
mod common;

use common::{Backend, MountConfig, MountedFs, Setup, StreamHash};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Layers in a temporary directory: `l1` (topmost lower), `l2`, `u`
/// (upper) and `w` (a workdir for kernel overlayfs, on the same fs).
struct Layers {
    dir: tempfile::TempDir,
    sums: BTreeMap<PathBuf, BTreeMap<PathBuf, String>>,
}

impl Layers {
    fn new(fill: impl FnOnce(&Path, &Path)) -> Layers {
        let dir = common::traversable_tempdir();
        for d in ["l1", "l2", "u", "w"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        fill(&dir.path().join("l1"), &dir.path().join("l2"));
        let mut layers = Layers {
            dir,
            sums: BTreeMap::new(),
        };
        for l in ["l1", "l2"] {
            let p = layers.path(l);
            layers.sums.insert(p.clone(), tree(&p));
        }
        layers
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self, upper: Option<&str>) -> Vec<String> {
        let upper = upper.map_or_else(|| self.path("u").display().to_string(), str::to_string);
        vec![
            "--lower".into(),
            self.path("l1").display().to_string(),
            "--lower".into(),
            self.path("l2").display().to_string(),
            "--upper".into(),
            upper,
        ]
    }

    fn mount(&self, transport: &'static str, extra: &[&str]) -> MountedFs {
        self.mount_upper(transport, None, extra)
    }

    fn mount_upper(
        &self,
        transport: &'static str,
        upper: Option<&str>,
        extra: &[&str],
    ) -> MountedFs {
        let setup = Setup {
            backend: Backend::Memfs,
            transport,
            options: &[],
        };
        let mut args = self.args(upper);
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        MountedFs::mount_with(&setup, MountConfig::args(&refs))
    }

    /// Every lower layer is exactly as it was built.
    fn assert_lowers_unchanged(&self) {
        for (p, before) in &self.sums {
            let now = tree(p);
            assert_eq!(&now, before, "lower layer {} changed", p.display());
        }
    }
}

/// A description of a tree: every entry's type, mode, owner, size, link
/// count, content hash (files), target (symlinks) or device (devices).
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, true);
    out
}

/// The same without link counts and inode data (for comparing a view
/// through two different mounts).
fn view(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, false);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>, strict: bool) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let t = m.file_type();
        let mut d = format!("mode={:o} uid={} gid={}", m.mode(), m.uid(), m.gid());
        if strict {
            d.push_str(&format!(
                " nlink={} mtime={}.{}",
                m.nlink(),
                m.mtime(),
                m.mtime_nsec()
            ));
        }
        if t.is_file() {
            d.push_str(&format!(" size={} hash={:x}", m.len(), hash_file(&p)));
        } else if t.is_symlink() {
            d.push_str(&format!(" -> {}", fs::read_link(&p).unwrap().display()));
        } else if t.is_char_device() || t.is_block_device() {
            d.push_str(&format!(" rdev={}", m.rdev()));
        }
        out.insert(rel, d);
        if t.is_dir() {
            walk(root, &p, out, strict);
        }
    }
}

fn hash_file(p: &Path) -> u64 {
    let mut f = fs::File::open(p).unwrap();
    let mut h = StreamHash::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finish()
}

fn write(p: &Path, data: &[u8]) {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(p, data).unwrap();
}

fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

fn getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: valid NUL-terminated strings and a writable buffer.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

fn setxattr(p: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a readable value.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn listxattr(p: &Path) -> String {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    // SAFETY: a valid NUL-terminated path and a writable buffer.
    let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr: {}", std::io::Error::last_os_error());
    String::from_utf8_lossy(&buf[..r as usize]).into_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A small dependency tree in the lowers: `l2` has the package, `l1`
/// overrides one file and adds another.
fn dependency_tree(l1: &Path, l2: &Path) {
    let pkg = l2.join("node_modules/dep");
    write(
        &pkg.join("package.json"),
        br#"{"name":"dep","version":"1.0.0"}"#,
    );
    write(
        &pkg.join("lib/index.js"),
        b"module.exports = require('./util');\n",
    );
    write(&pkg.join("lib/util.js"), &common::pattern(7, 0, 100_000));
    write(&pkg.join("README.md"), b"lower2 readme\n");
    std::os::unix::fs::symlink("lib/index.js", pkg.join("main.js")).unwrap();
    write(
        &l1.join("node_modules/dep/README.md"),
        b"lower1 readme wins\n",
    );
    write(
        &l1.join("node_modules/dep/extra.js"),
        b"// only in lower1\n",
    );
    write(&l2.join("top.txt"), b"from lower2\n");
    fs::create_dir(l2.join("empty")).unwrap();
}

// ---------------------------------------------------------------------------
// Scenarios (one #[test] per scenario and transport, see the bottom)
// ---------------------------------------------------------------------------

fn reads_dependency_tree(transport: &'static str) {
    let layers = Layers::new(dependency_tree);
    let m = layers.mount(transport, &[]);
    let line = m.mounted_line();
    assert!(line.contains("backend=overlay"), "{line}");
    assert!(line.contains(&format!("transport={transport} ")), "{line}");
    for word in ["upper=", "lower1=", "lower2="] {
        assert!(line.contains(word), "{word} missing: {line}");
    }
    let pkg = m.join("node_modules/dep");
    assert_eq!(
        names(&pkg),
        ["README.md", "extra.js", "lib", "main.js", "package.json"]
    );
    assert_eq!(
        fs::read(pkg.join("README.md")).unwrap(),
        b"lower1 readme wins\n"
    );
    assert_eq!(
        fs::read(pkg.join("lib/util.js")).unwrap(),
        common::pattern(7, 0, 100_000)
    );
    assert_eq!(
        fs::read(pkg.join("main.js")).unwrap(),
        b"module.exports = require('./util');\n"
    );
    assert_eq!(
        fs::read_link(pkg.join("main.js")).unwrap(),
        Path::new("lib/index.js")
    );
    assert_eq!(fs::read(m.join("top.txt")).unwrap(), b"from lower2\n");
    // Nothing was copied up by reading.
    assert!(names(&layers.path("u")).is_empty());
    layers.assert_lowers_unchanged();
}

const BIG: u64 = 256 << 20;

fn big_file(_l1: &Path, l2: &Path) {
    let mut f = fs::File::create(l2.join("big")).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let mut at = 0;
    while at < BIG {
        common::fill_pattern_fast(42, at, &mut buf);
        f.write_all(&buf).unwrap();
        at += buf.len() as u64;
    }
}

fn stream_256m(transport: &'static str, passthrough: &'static str) {
    let layers = Layers::new(big_file);
    let want = hash_file(&layers.path("l2/big"));
    let m = layers.mount(transport, &["--passthrough", passthrough]);
    let line = m.mounted_line();
    assert!(
        line.contains(&format!("passthrough={passthrough}")),
        "{line}"
    );
    let start = Instant::now();
    let got = hash_file(&m.join("big"));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, want, "256 MiB from the lower differ");
    eprintln!(
        "overlay {transport} passthrough={passthrough}: 256 MiB read in {secs:.2} s ({:.0} MiB/s)",
        256.0 / secs
    );
    assert!(names(&layers.path("u")).is_empty());
    layers.assert_lowers_unchanged();
}

fn stream_256m_passthrough_on(transport: &'static str) {
    stream_256m(transport, "on")
}

fn stream_256m_passthrough_off(transport: &'static str) {
    stream_256m(transport, "off")
}

fn write_back_into_upper(transport: &'static str) {
    let layers = Layers::new(dependency_tree);
    let m = layers.mount(transport, &[]);
    let util = m.join("node_modules/dep/lib/util.js");
    let orig = common::pattern(7, 0, 100_000);
    // Append: copy-up with the data, then the write.
    fs::OpenOptions::new()
        .append(true)
        .open(&util)
        .unwrap()
        .write_all(b"// appended\n")
        .unwrap();
    let mut want = orig.clone();
    want.extend_from_slice(b"// appended\n");
    assert_eq!(fs::read(&util).unwrap(), want);
    let up = layers.path("u/node_modules/dep/lib/util.js");
    assert_eq!(fs::read(&up).unwrap(), want, "upper copy");
    // Parents were copied up with the lower's modes.
    let lower_dir = fs::metadata(layers.path("l2/node_modules/dep/lib")).unwrap();
    let upper_dir = fs::metadata(layers.path("u/node_modules/dep/lib")).unwrap();
    assert_eq!(lower_dir.mode(), upper_dir.mode());
    // chmod, truncate, xattr on other lower files.
    let pj = m.join("node_modules/dep/package.json");
    fs::set_permissions(&pj, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&pj).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        fs::read(&pj).unwrap(),
        br#"{"name":"dep","version":"1.0.0"}"#
    );
    let idx = m.join("node_modules/dep/lib/index.js");
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&idx)
        .unwrap()
        .write_all(b"new")
        .unwrap();
    assert_eq!(fs::read(&idx).unwrap(), b"new");
    let readme = m.join("node_modules/dep/README.md");
    setxattr(&readme, "user.note", b"hello").unwrap();
    assert_eq!(getxattr(&readme, "user.note").unwrap(), b"hello");
    assert_eq!(fs::read(&readme).unwrap(), b"lower1 readme wins\n");
    // A new file.
    write(&m.join("node_modules/dep/new.txt"), b"fresh");
    assert_eq!(
        fs::read(layers.path("u/node_modules/dep/new.txt")).unwrap(),
        b"fresh"
    );
    // An O_TMPFILE in a lower directory, linked in.
    let tmp = common::open_raw(
        &m.join("node_modules/dep/lib"),
        libc::O_TMPFILE | libc::O_RDWR,
        0o644,
    )
    .unwrap();
    {
        use std::os::fd::AsRawFd;
        common::pwrite_full(tmp.as_raw_fd(), b"tmp", 0).unwrap();
        let from = CString::new(format!("/proc/self/fd/{}", tmp.as_raw_fd())).unwrap();
        let to = CString::new(
            m.join("node_modules/dep/lib/linked.js")
                .as_os_str()
                .as_bytes(),
        )
        .unwrap();
        // SAFETY: valid NUL-terminated paths.
        let r = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        assert_eq!(r, 0, "linkat: {}", std::io::Error::last_os_error());
    }
    assert_eq!(
        fs::read(m.join("node_modules/dep/lib/linked.js")).unwrap(),
        b"tmp"
    );
    // copy_file_range from a lower file into a new upper file.
    {
        use std::os::fd::AsRawFd;
        let src = fs::File::open(m.join("top.txt")).unwrap();
        let dst = fs::File::create(m.join("node_modules/dep/copied.txt")).unwrap();
        let (mut off_in, mut off_out) = (5i64, 0i64);
        // SAFETY: both descriptors are open; the offsets are valid pointers.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                100,
                0,
            )
        };
        assert_eq!(n, 7, "copy_file_range: {}", std::io::Error::last_os_error());
    }
    assert_eq!(
        fs::read(m.join("node_modules/dep/copied.txt")).unwrap(),
        b"lower2\n"
    );
    assert!(
        !layers.path("u/top.txt").exists(),
        "the source stays in its lower"
    );
    // No temporary files left in the upper.
    let upper_names = names(&layers.path("u/node_modules/dep"));
    assert!(
        upper_names
            .iter()
            .all(|n| !n.starts_with('#') && !n.starts_with(".fuselage")),
        "{upper_names:?}"
    );
    drop(m);
    layers.assert_lowers_unchanged();
}

fn readers_during_copy_up(transport: &'static str) {
    readers_during_copy_up_with(transport, "on")
}

fn readers_during_copy_up_passthrough_off(transport: &'static str) {
    readers_during_copy_up_with(transport, "off")
}

/// Eight threads read one lower file (opened before) while a ninth copies
/// it up (open for writing, then an xattr): every pass sees the same bytes.
/// With kernel passthrough the readers keep the lower backing file and the
/// writer's open is answered with the copied-up node.
fn readers_during_copy_up_with(transport: &'static str, passthrough: &str) {
    const LEN: usize = 16 << 20;
    let layers = Layers::new(|_, l2| {
        let mut data = vec![0u8; LEN];
        common::fill_pattern_fast(9, 0, &mut data);
        write(&l2.join("shared.bin"), &data);
    });
    let want = hash_file(&layers.path("l2/shared.bin"));
    let m = layers.mount(transport, &["--passthrough", passthrough]);
    let path = m.join("shared.bin");
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let path = path.clone();
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || {
            let mut f = fs::File::open(&path).unwrap();
            let mut rounds = 0;
            let mut buf = vec![0u8; 1 << 20];
            while rounds < 3 || !stop.load(Ordering::Acquire) {
                let mut h = StreamHash::default();
                let mut at = 0u64;
                loop {
                    let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, at).unwrap();
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    at += n as u64;
                }
                assert_eq!(h.finish(), want, "a reader saw inconsistent bytes");
                rounds += 1;
                let _ = &mut f;
            }
            rounds
        }));
    }
    std::thread::sleep(Duration::from_millis(100));
    let copier = {
        let path = path.clone();
        std::thread::spawn(move || {
            // Opening for writing copies the file up; so does an xattr.
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            f.sync_all().unwrap();
            setxattr(&path, "user.copied", b"1").unwrap();
        })
    };
    copier.join().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() >= 3);
    }
    assert_eq!(hash_file(&layers.path("u/shared.bin")), want, "upper copy");
    assert_eq!(hash_file(&path), want, "a fresh open after copy-up");
    layers.assert_lowers_unchanged();
}

fn delete_and_recreate(transport: &'static str) {
    let layers = Layers::new(dependency_tree);
    let m = layers.mount(transport, &[]);
    // A lower file: deleted, then made anew.
    fs::remove_file(m.join("top.txt")).unwrap();
    assert!(!m.join("top.txt").exists());
    assert!(!names(m.path()).contains(&"top.txt".to_string()));
    assert!(
        is_whiteout(&layers.path("u/top.txt")),
        "whiteout in the upper"
    );
    write(&m.join("top.txt"), b"again");
    assert_eq!(fs::read(m.join("top.txt")).unwrap(), b"again");
    // A lower directory (files in two lowers): removed, then made anew.
    fs::remove_dir_all(m.join("node_modules/dep")).unwrap();
    assert!(!m.join("node_modules/dep").exists());
    assert!(is_whiteout(&layers.path("u/node_modules/dep")));
    fs::create_dir(m.join("node_modules/dep")).unwrap();
    assert!(
        names(&m.join("node_modules/dep")).is_empty(),
        "opaque: nothing from below"
    );
    assert_eq!(
        getxattr(&layers.path("u/node_modules/dep"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    // Overlay's own xattrs are invisible through the mount.
    assert_eq!(
        getxattr(&m.join("node_modules/dep"), "trusted.overlay.opaque"),
        None
    );
    let listed = listxattr(&m.join("node_modules/dep"));
    assert!(!listed.contains("overlay."), "{listed:?}");
    assert!(
        setxattr(&m.join("node_modules/dep"), "trusted.overlay.opaque", b"n").is_err(),
        "overlay's xattrs cannot be set through the mount"
    );
    assert_eq!(
        getxattr(&layers.path("u/node_modules/dep"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    write(&m.join("node_modules/dep/only.txt"), b"x");
    assert_eq!(names(&m.join("node_modules/dep")), ["only.txt"]);
    // A whiteout is never listed; a file over a whiteout in a merged dir.
    fs::remove_file(m.join("node_modules/dep/only.txt")).unwrap();
    assert!(names(&m.join("node_modules/dep")).is_empty());
    drop(m);
    layers.assert_lowers_unchanged();
}

fn rename_lower_dir_with_mv(transport: &'static str) {
    let layers = Layers::new(dependency_tree);
    let m = layers.mount(transport, &[]);
    let before = view(&m.join("node_modules/dep"));
    // rename(2) of a directory with a lower part: EXDEV, as overlayfs
    // without redirect_dir.
    let err = fs::rename(m.join("node_modules/dep"), m.join("node_modules/moved")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
    // mv falls back to copy and delete.
    let out = Command::new("mv")
        .arg(m.join("node_modules/dep"))
        .arg(m.join("node_modules/moved"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!m.join("node_modules/dep").exists());
    let after = view(&m.join("node_modules/moved"));
    let strip = |v: BTreeMap<PathBuf, String>| -> BTreeMap<PathBuf, String> {
        v.into_iter()
            .map(|(k, d)| {
                (
                    k,
                    d.split(" uid").next().unwrap().to_string()
                        + &d[d.find(" size").unwrap_or(d.len())..],
                )
            })
            .collect()
    };
    assert_eq!(strip(after), strip(before));
    // Files rename fine (copied up first), leaving a whiteout.
    fs::rename(m.join("top.txt"), m.join("node_modules/top2.txt")).unwrap();
    assert_eq!(
        fs::read(m.join("node_modules/top2.txt")).unwrap(),
        b"from lower2\n"
    );
    assert!(!m.join("top.txt").exists());
    assert!(is_whiteout(&layers.path("u/top.txt")));
    // RENAME_EXCHANGE of a lower file and a new one.
    write(&m.join("swap.txt"), b"new file");
    {
        let a = CString::new(m.join("swap.txt").as_os_str().as_bytes()).unwrap();
        let b = CString::new(m.join("node_modules/top2.txt").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated paths.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        assert_eq!(r, 0, "RENAME_EXCHANGE: {}", std::io::Error::last_os_error());
    }
    assert_eq!(fs::read(m.join("swap.txt")).unwrap(), b"from lower2\n");
    assert_eq!(
        fs::read(m.join("node_modules/top2.txt")).unwrap(),
        b"new file"
    );
    // A new directory renamed over an empty lower one becomes opaque.
    fs::create_dir(m.join("fresh")).unwrap();
    write(&m.join("fresh/x"), b"x");
    fs::rename(m.join("fresh"), m.join("empty")).unwrap();
    assert_eq!(names(&m.join("empty")), ["x"]);
    assert_eq!(
        getxattr(&layers.path("u/empty"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    drop(m);
    layers.assert_lowers_unchanged();
}

fn readdir_spanning_copy_up(transport: &'static str) {
    const N: usize = 3000;
    let layers = Layers::new(|l1, l2| {
        fs::create_dir(l2.join("many")).unwrap();
        fs::create_dir(l1.join("many")).unwrap();
        for i in 0..N {
            let top = if i % 2 == 0 { l1 } else { l2 };
            fs::write(
                top.join(format!("many/entry-with-a-long-name-{i:05}")),
                b"x",
            )
            .unwrap();
        }
    });
    let m = layers.mount(transport, &[]);
    let dir = m.join("many");
    let mut it = fs::read_dir(&dir).unwrap();
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..100 {
        seen.push(
            it.next()
                .unwrap()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    // Copy up every entry (the directory too) in the middle of the listing.
    for i in 0..N {
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join(format!("entry-with-a-long-name-{i:05}")))
            .unwrap()
            .write_all(b"y")
            .unwrap();
    }
    seen.extend(it.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()));
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "no duplicates");
    assert_eq!(seen.len(), N, "every name once");
    assert_eq!(names(&dir).len(), N);
    layers.assert_lowers_unchanged();
}

fn non_root_caller(transport: &'static str) {
    if !common::require_program("setpriv") {
        return;
    }
    let layers = Layers::new(|_, l2| {
        fs::create_dir(l2.join("pub")).unwrap();
        fs::set_permissions(l2.join("pub"), fs::Permissions::from_mode(0o1777)).unwrap();
        write(&l2.join("pub/mine.txt"), b"mine\n");
        common::chown(&l2.join("pub/mine.txt"), 65534, 65534);
        write(&l2.join("pub/root.txt"), b"root\n");
    });
    let m = layers.mount(transport, &["--allow-other"]);
    let sh = |script: &str| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .current_dir(m.path())
            .output()
            .unwrap()
    };
    let ok = sh("echo more >> pub/mine.txt && echo new > pub/new.txt");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let denied = sh("echo no >> pub/root.txt");
    assert!(
        !denied.status.success(),
        "a root file stays closed to nobody"
    );
    assert_eq!(fs::read(m.join("pub/mine.txt")).unwrap(), b"mine\nmore\n");
    let up = |n: &str| fs::metadata(layers.path("u").join(n)).unwrap();
    assert_eq!(
        (up("pub/mine.txt").uid(), up("pub/mine.txt").gid()),
        (65534, 65534)
    );
    assert_eq!(
        (up("pub/new.txt").uid(), up("pub/new.txt").gid()),
        (65534, 65534)
    );
    assert_eq!(
        up("pub").mode() & 0o7777,
        0o1777,
        "parent copied up with its mode"
    );
    assert!(
        !layers.path("u/pub/root.txt").exists(),
        "no copy-up on a refused open"
    );
    drop(m);
    layers.assert_lowers_unchanged();
}

fn hard_links_keep_nlink(transport: &'static str) {
    let layers = Layers::new(|_, l2| {
        write(&l2.join("a"), b"linked");
        fs::hard_link(l2.join("a"), l2.join("b")).unwrap();
        fs::create_dir(l2.join("d")).unwrap();
        fs::hard_link(l2.join("a"), l2.join("d/c")).unwrap();
    });
    let m = layers.mount(transport, &[]);
    let a = fs::metadata(m.join("a")).unwrap();
    let b = fs::metadata(m.join("b")).unwrap();
    let c = fs::metadata(m.join("d/c")).unwrap();
    assert_eq!(a.nlink(), 3);
    assert_eq!((a.ino(), a.nlink()), (b.ino(), b.nlink()));
    assert_eq!(a.ino(), c.ino());
    assert_eq!(fs::read(m.join("d/c")).unwrap(), b"linked");
    layers.assert_lowers_unchanged();
}

fn inode_numbers_stable(transport: &'static str) {
    let layers = Layers::new(dependency_tree);
    let m = layers.mount(transport, &[]);
    let p = m.join("top.txt");
    let before = fs::metadata(&p).unwrap().ino();
    let dir_before = fs::metadata(m.join("node_modules/dep/lib")).unwrap().ino();
    fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(b"+")
        .unwrap();
    fs::set_permissions(
        m.join("node_modules/dep/lib/util.js"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    assert!(layers.path("u/top.txt").exists(), "copied up");
    assert_eq!(
        fs::metadata(&p).unwrap().ino(),
        before,
        "ino across copy-up"
    );
    assert_eq!(
        fs::metadata(m.join("node_modules/dep/lib")).unwrap().ino(),
        dir_before,
        "a directory's ino across copy-up"
    );
    // Directory listings report the same numbers.
    for e in fs::read_dir(m.path()).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "top.txt" {
            assert_eq!(e.ino(), before, "d_ino of a copied-up file");
        }
    }
    // Inode numbers from two lowers do not collide.
    let a = fs::metadata(m.join("node_modules/dep/extra.js"))
        .unwrap()
        .ino();
    let b = fs::metadata(m.join("node_modules/dep/package.json"))
        .unwrap()
        .ino();
    assert_ne!(a, b);
    layers.assert_lowers_unchanged();
}

/// Mounts kernel overlayfs over the same layers at `<dir>/k`.
struct KernelOverlay(PathBuf);

impl KernelOverlay {
    fn mount(layers: &Layers) -> KernelOverlay {
        let k = layers.path("k");
        fs::create_dir_all(&k).unwrap();
        let opts = format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            layers.path("l1").display(),
            layers.path("l2").display(),
            layers.path("u").display(),
            layers.path("w").display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&k)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t overlay: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        KernelOverlay(k)
    }
}

impl Drop for KernelOverlay {
    fn drop(&mut self) {
        common::lazy_unmount(&self.0);
    }
}

fn kernel_overlayfs_round_trip(transport: &'static str) {
    // fuselage writes, the kernel reads.
    let layers = Layers::new(dependency_tree);
    let m = layers.mount(transport, &[]);
    fs::remove_file(m.join("top.txt")).unwrap();
    fs::remove_dir_all(m.join("node_modules/dep/lib")).unwrap();
    fs::create_dir(m.join("node_modules/dep/lib")).unwrap();
    write(&m.join("node_modules/dep/lib/new.js"), b"new");
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("node_modules/dep/package.json"))
        .unwrap()
        .write_all(b"\n")
        .unwrap();
    fs::remove_file(m.join("node_modules/dep/README.md")).unwrap();
    let ours = view(m.path());
    drop(m);
    {
        let k = KernelOverlay::mount(&layers);
        assert_eq!(view(&k.0), ours, "kernel overlayfs reads fuselage's upper");
    }
    // The kernel writes, fuselage reads.
    let layers = Layers::new(dependency_tree);
    {
        let k = KernelOverlay::mount(&layers);
        fs::remove_file(k.0.join("top.txt")).unwrap();
        fs::remove_dir_all(k.0.join("node_modules/dep/lib")).unwrap();
        fs::create_dir(k.0.join("node_modules/dep/lib")).unwrap();
        write(&k.0.join("node_modules/dep/lib/k.js"), b"kernel");
        fs::remove_file(k.0.join("node_modules/dep/README.md")).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(k.0.join("node_modules/dep/extra.js"))
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let theirs = view(&k.0);
        drop(k);
        let m = layers.mount(transport, &[]);
        assert_eq!(
            view(m.path()),
            theirs,
            "fuselage reads kernel overlayfs's upper"
        );
    }
    layers.assert_lowers_unchanged();
}

fn memory_upper(transport: &'static str) {
    let layers = Layers::new(dependency_tree);
    let m = layers.mount_upper(transport, Some("memory"), &["--size", "16M"]);
    assert!(
        m.mounted_line().contains("upper=memory"),
        "{}",
        m.mounted_line()
    );
    write(&m.join("node_modules/dep/mem.txt"), b"in memory");
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("top.txt"))
        .unwrap()
        .write_all(b"more\n")
        .unwrap();
    assert_eq!(fs::read(m.join("top.txt")).unwrap(), b"from lower2\nmore\n");
    fs::remove_file(m.join("node_modules/dep/README.md")).unwrap();
    assert!(!m.join("node_modules/dep/README.md").exists());
    assert_eq!(
        fs::read(m.join("node_modules/dep/mem.txt")).unwrap(),
        b"in memory"
    );
    // --size bounds the in-memory upper.
    let mut f = fs::File::create(m.join("fill")).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let full = (0..64).map(|_| f.write_all(&chunk)).find_map(Result::err);
    let full = full.or_else(|| f.sync_all().err());
    assert_eq!(
        full.and_then(|e| e.raw_os_error()),
        Some(libc::ENOSPC),
        "64 MiB into a 16 MiB upper"
    );
    drop(f);
    fs::remove_file(m.join("fill")).unwrap();
    // The host upper directory was not used.
    assert!(names(&layers.path("u")).is_empty());
    drop(m);
    layers.assert_lowers_unchanged();
}

// ---------------------------------------------------------------------------
// Startup errors (once, not per transport)
// ---------------------------------------------------------------------------

fn expect_exit_2(args: &[&str], needle: &str) {
    let dir = common::traversable_tempdir();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut cmd = Command::new(common::fuselage_bin());
    cmd.arg("mount").args(args).arg(&mnt);
    let done = common::run_bounded(cmd, Duration::from_secs(20), "fuselage mount");
    assert_eq!(done.status.code(), Some(2), "{args:?}: {}", done.stderr);
    let lines = done.stderr_lines();
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(lines[0].contains(needle), "{needle:?} not in {lines:?}");
    assert!(!common::is_mountpoint(&mnt), "nothing mounted");
}

#[test]
fn startup_errors_exit_2_before_mounting() {
    if !common::require_fuse() {
        return;
    }
    let layers = Layers::new(dependency_tree);
    let (l1, u) = (layers.path("l1"), layers.path("u"));
    let (l1, u) = (l1.to_str().unwrap(), u.to_str().unwrap());
    let missing = layers.path("nope");
    let missing = missing.to_str().unwrap();
    expect_exit_2(&["--lower", missing, "--upper", u], "--lower");
    expect_exit_2(&["--lower", l1], "--upper");
    expect_exit_2(&["--upper", u], "--lower");
    expect_exit_2(&["--source", l1, "--lower", l1, "--upper", u], "exclude");
    expect_exit_2(&["--lower", l1, "--upper", missing], "--upper");
    let inside = layers.path("l1/node_modules");
    expect_exit_2(
        &["--lower", l1, "--upper", inside.to_str().unwrap()],
        "overlap",
    );
    // procfs has no O_TMPFILE.
    expect_exit_2(&["--lower", l1, "--upper", "/proc/sys"], "O_TMPFILE");
    // `--upper memory` needs CAP_SYS_ADMIN.
    if common::require_program("setpriv") {
        let dir = common::traversable_tempdir();
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        common::chown(&mnt, 65534, 65534);
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::fuselage_bin())
            .args([
                "mount",
                "--transport",
                "blocking",
                "--lower",
                l1,
                "--upper",
                "memory",
            ])
            .arg(&mnt);
        let done = common::run_bounded(cmd, Duration::from_secs(20), "fuselage mount");
        assert_eq!(done.status.code(), Some(2), "{}", done.stderr);
        let lines = done.stderr_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("CAP_SYS_ADMIN"), "{lines:?}");
        assert!(!common::is_mountpoint(&mnt));
    }
    layers.assert_lowers_unchanged();
}

// ---------------------------------------------------------------------------
// One #[test] per (scenario, transport)
// ---------------------------------------------------------------------------

/// Whether the native io_uring row can run. The kernel's `enable_uring`
/// switch belongs to whoever runs the suite: this never flips it, it skips
/// (or fails under `FUSELAGE_REQUIRE_FUSE=1`) when it is off.
fn native_uring_ready() -> bool {
    let on = fs::read_to_string(common::ENABLE_URING_PARAM).is_ok_and(|v| v.trim() == "Y");
    if !on {
        return common::require(Err(format!(
            "{} is not Y; this suite does not switch it",
            common::ENABLE_URING_PARAM
        )));
    }
    common::require_native_uring()
}

/// One `#[test]` per scenario for a transport.
macro_rules! rows {
    ($name:literal; $($scenario:ident),+ $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                let ready = if $name == "uring" {
                    super::native_uring_ready()
                } else {
                    super::common::require_fuse()
                };
                if ready {
                    super::$scenario($name);
                }
            }
        )+
    };
}

/// One module per transport, each with every scenario.
macro_rules! overlay_tests {
    ($($transport:ident = $name:literal),+ $(,)?) => {
        $(
            mod $transport {
                rows!($name;
                    reads_dependency_tree,
                    stream_256m_passthrough_on,
                    stream_256m_passthrough_off,
                    write_back_into_upper,
                    readers_during_copy_up,
                    readers_during_copy_up_passthrough_off,
                    delete_and_recreate,
                    rename_lower_dir_with_mv,
                    hard_links_keep_nlink,
                    non_root_caller,
                    readdir_spanning_copy_up,
                    inode_numbers_stable,
                    kernel_overlayfs_round_trip,
                    memory_upper,
                );
            }
        )+
    };
}

overlay_tests!(
    uring = "uring",
    uring_rw = "uring-rw",
    blocking = "blocking"
);
