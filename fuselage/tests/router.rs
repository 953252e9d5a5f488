//! End-to-end tests of router mounts (`--route SUBPATH=SPEC`): a memory
//! filesystem, a host directory and a single host file placed inside one
//! mount, over a memory root and over a `--source` root, on every
//! transport (one `#[test]` per scenario and transport, see the
//! `router_rows!` invocation at the bottom). The exit-2 checks of bad
//! routes run once.
//!
//! Each test needs root and /dev/fuse; without them it prints `skipped:
//! ...` unless `FUSELAGE_REQUIRE_FUSE=1`.

mod common;

use common::{Backend, MountConfig, MountedFs, ServerProcess, Setup, cpath, fuselage_bin};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A row's setup: the memory root unless the test passes `--source`.
fn setup(transport: &'static str) -> Setup {
    Setup {
        backend: Backend::Memfs,
        transport,
        options: &[],
    }
}

/// Host material for the routes: a directory with a file, and a file.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = common::traversable_tempdir();
        fs::create_dir(dir.path().join("data")).unwrap();
        fs::write(dir.path().join("data/hello"), b"from the host\n").unwrap();
        fs::write(dir.path().join("resolv.conf"), b"nameserver 192.0.2.1\n").unwrap();
        Host { dir }
    }
    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }
    fn file(&self) -> String {
        self.dir.path().join("resolv.conf").display().to_string()
    }
    fn route_args(&self) -> Vec<String> {
        vec![
            "--route".into(),
            "/tmp=memory".into(),
            "--route".into(),
            format!("/data={}", self.data()),
            "-o".into(),
            format!("route=/etc/resolv.conf={}", self.file()),
        ]
    }
}

fn mount(transport: &'static str, args: Vec<String>) -> MountedFs {
    MountedFs::mount_with(
        &setup(transport),
        MountConfig {
            args,
            run_as: None,
            deadline: None,
        },
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn statvfs(path: &Path) -> libc::statvfs {
    // SAFETY: all-zero is a valid statvfs; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(
            libc::statvfs(cpath(path).as_ptr(), &mut st),
            0,
            "statvfs {}",
            path.display()
        );
        st
    }
}

/// Runs `program args` and asserts it succeeds with nothing on stderr.
fn run_quiet(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{program} {args:?}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every (st_dev, st_ino) under `root` belongs to one path (or to hard
/// links of one file).
fn assert_unique_inodes(root: &Path) {
    let mut seen: HashMap<(u64, u64), (String, u64)> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let key = (m.dev(), m.ino());
        if let Some((other, _)) = seen.get(&key) {
            assert!(
                !m.is_dir() && m.nlink() > 1,
                "{} and {other} share st_dev/st_ino {key:?}",
                p.display()
            );
        }
        seen.insert(key, (p.display().to_string(), m.nlink()));
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
}

/// The three routes over the memory root: listing, data, statfs, the
/// startup line.
fn routes_over_memory_root(transport: &'static str) {
    let host = Host::new();
    let m = mount(transport, host.route_args());
    let line = m.mounted_line();
    assert!(line.contains(" backend=router "), "{line}");
    assert!(line.contains(&format!(" transport={transport} ")), "{line}");
    assert!(line.contains(" route=/tmp:memory"), "{line}");
    assert!(
        line.contains(&format!(" route=/data:{}(passthrough=", host.data())),
        "{line}"
    );
    assert!(
        line.contains(&format!(" route=/etc/resolv.conf:{}(file)", host.file())),
        "{line}"
    );
    assert_eq!(names(m.path()), ["data", "etc", "tmp"]);
    assert_eq!(names(&m.join("etc")), ["resolv.conf"]);
    let etc = fs::metadata(m.join("etc")).unwrap();
    assert!(etc.is_dir());
    assert_eq!(etc.mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read(m.join("etc/resolv.conf")).unwrap(),
        b"nameserver 192.0.2.1\n"
    );
    assert!(fs::metadata(m.join("etc/resolv.conf")).unwrap().is_file());
    assert_eq!(fs::read(m.join("data/hello")).unwrap(), b"from the host\n");
    // Written through the route, found in the host directory.
    fs::write(m.join("data/new"), b"written through the mount").unwrap();
    assert_eq!(
        fs::read(host.dir.path().join("data/new")).unwrap(),
        b"written through the mount"
    );
    fs::create_dir(m.join("tmp/sub")).unwrap();
    fs::write(m.join("tmp/sub/f"), b"scratch").unwrap();
    assert_eq!(fs::read(m.join("tmp/sub/f")).unwrap(), b"scratch");
    assert!(!host.dir.path().join("data/sub").exists());
    // Writing into the routed file reaches the host file.
    fs::write(m.join("etc/resolv.conf"), b"nameserver 192.0.2.2\n").unwrap();
    assert_eq!(fs::read(host.file()).unwrap(), b"nameserver 192.0.2.2\n");
    // statfs: the owner of each path answers.
    let host_st = statvfs(&host.dir.path().join("data"));
    let data_st = statvfs(&m.join("data"));
    let tmp_st = statvfs(&m.join("tmp"));
    assert_eq!(
        data_st.f_blocks * data_st.f_frsize,
        host_st.f_blocks * host_st.f_frsize
    );
    assert_ne!(
        data_st.f_blocks * data_st.f_frsize,
        tmp_st.f_blocks * tmp_st.f_frsize
    );
    // A route's name in the root cannot be made again.
    let e = fs::create_dir(m.join("tmp")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    assert_unique_inodes(m.path());
    run_quiet("find", &[&m.path().display().to_string()]);
    run_quiet("du", &["-s", &m.path().display().to_string()]);
}

/// The same routes over a `--source` root whose /etc exists (with another
/// file) and which has its own `tmp` file and `etc/resolv.conf`, both
/// shadowed by the routes.
fn routes_over_source_root(transport: &'static str) {
    let host = Host::new();
    let src = common::traversable_tempdir();
    fs::create_dir(src.path().join("etc")).unwrap();
    fs::write(src.path().join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(src.path().join("etc/resolv.conf"), b"shadowed\n").unwrap();
    fs::write(src.path().join("tmp"), b"shadowed file\n").unwrap();
    fs::write(src.path().join("top"), b"root file\n").unwrap();
    let mut args = vec!["--source".to_string(), src.path().display().to_string()];
    args.extend(host.route_args());
    let m = mount(transport, args);
    assert!(m.mounted_line().contains(" backend=router "));
    assert_eq!(names(m.path()), ["data", "etc", "tmp", "top"]);
    assert!(fs::metadata(m.join("tmp")).unwrap().is_dir());
    assert_eq!(names(&m.join("etc")), ["hosts", "resolv.conf"]);
    assert_eq!(
        fs::read(m.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(
        fs::read(m.join("etc/resolv.conf")).unwrap(),
        b"nameserver 192.0.2.1\n"
    );
    // /etc is the source's own directory: new files land there.
    fs::write(m.join("etc/new"), b"x").unwrap();
    assert!(src.path().join("etc/new").exists());
    let e = fs::remove_file(m.join("etc/resolv.conf")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    assert_eq!(
        fs::read(src.path().join("etc/resolv.conf")).unwrap(),
        b"shadowed\n"
    );
    assert_unique_inodes(m.path());
    run_quiet("find", &[&m.path().display().to_string()]);
    run_quiet("du", &["-s", &m.path().display().to_string()]);
}

/// Routes over an overlay root: the startup line names the layers and the
/// routes; lower files read through, a write copies up into the upper and
/// leaves the lower alone, and routed paths live beside the merged view.
fn routes_over_overlay_root(transport: &'static str) {
    let host = Host::new();
    let layers = common::traversable_tempdir();
    let (lower, upper) = (layers.path().join("lower"), layers.path().join("upper"));
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::create_dir(&upper).unwrap();
    fs::write(lower.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(lower.join("lib.so"), b"lower bytes").unwrap();
    let mut args = vec![
        "--lower".to_string(),
        lower.display().to_string(),
        "--upper".into(),
        upper.display().to_string(),
    ];
    args.extend(host.route_args());
    let m = mount(transport, args);
    let line = m.mounted_line();
    assert!(line.contains(" backend=router "), "{line}");
    for word in [
        format!(" upper={}", upper.display()),
        format!(" lower1={}", lower.display()),
        " route=/tmp:memory".to_string(),
        format!(" route=/data:{}", host.data()),
    ] {
        assert!(line.contains(&word), "{word:?} missing in {line}");
    }
    assert_eq!(names(m.path()), ["data", "etc", "lib.so", "tmp"]);
    assert_eq!(names(&m.join("etc")), ["hosts", "resolv.conf"]);
    assert_eq!(fs::read(m.join("lib.so")).unwrap(), b"lower bytes");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.join("lib.so"))
        .unwrap();
    std::io::Write::write_all(&mut f, b" + upper").unwrap();
    drop(f);
    assert_eq!(fs::read(m.join("lib.so")).unwrap(), b"lower bytes + upper");
    assert_eq!(
        fs::read(upper.join("lib.so")).unwrap(),
        b"lower bytes + upper"
    );
    assert_eq!(fs::read(lower.join("lib.so")).unwrap(), b"lower bytes");
    fs::write(m.join("tmp/scratch"), b"s").unwrap();
    assert!(
        !upper.join("tmp").exists(),
        "the memory route is not the upper"
    );
    let e = fs::rename(m.join("lib.so"), m.join("data/lib.so")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
    assert_unique_inodes(m.path());
}

/// Host routes only over a `--source` root: every backend asks for
/// READDIRPLUS, so listings carry entries the router rewrites and adds.
fn host_routes_readdirplus(transport: &'static str) {
    let host = Host::new();
    let src = common::traversable_tempdir();
    fs::write(src.path().join("top"), b"root file\n").unwrap();
    fs::create_dir(src.path().join("data")).unwrap();
    let many = host.dir.path().join("data");
    for i in 0..300 {
        fs::write(many.join(format!("file-{i:03}")), b"x").unwrap();
    }
    let m = mount(
        transport,
        vec![
            "--source".into(),
            src.path().display().to_string(),
            "--route".into(),
            format!("/data={}", host.data()),
            "--route".into(),
            format!("/deep/er/file={}", host.file()),
        ],
    );
    assert_eq!(names(m.path()), ["data", "deep", "top"]);
    assert_eq!(names(&m.join("deep")), ["er"]);
    assert_eq!(fs::metadata(m.join("deep")).unwrap().nlink(), 3);
    assert_eq!(fs::metadata(m.join("deep/er")).unwrap().nlink(), 2);
    assert_eq!(names(&m.join("deep/er")), ["file"]);
    let listed = names(&m.join("data"));
    assert_eq!(listed.len(), 301, "{listed:?}");
    for name in &listed {
        let meta = fs::symlink_metadata(m.join("data").join(name)).unwrap();
        assert!(meta.is_file());
    }
    assert_eq!(
        fs::read(m.join("deep/er/file")).unwrap(),
        b"nameserver 192.0.2.1\n"
    );
    assert_unique_inodes(m.path());
    run_quiet("find", &[&m.path().display().to_string()]);
    run_quiet("du", &["-s", &m.path().display().to_string()]);
    run_quiet("ls", &["-laR", &m.path().display().to_string()]);
}

/// Backends whose inode numbers collide: two memory routes with the same
/// files, two host routes over bind mounts of one directory.
fn colliding_inodes(transport: &'static str) {
    let host = Host::new();
    let other = host.dir.path().join("bind");
    fs::create_dir(&other).unwrap();
    let status = Command::new("mount")
        .args(["--bind", &host.data(), &other.display().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "mount --bind");
    struct Unbind(std::path::PathBuf);
    impl Drop for Unbind {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unbind = Unbind(other.clone());
    let m = mount(
        transport,
        vec![
            "--route".into(),
            "/m1=memory".into(),
            "--route".into(),
            "/m2=memory".into(),
            "--route".into(),
            format!("/h1={}", host.data()),
            "--route".into(),
            format!("/h2={}", other.display()),
        ],
    );
    for r in ["m1", "m2"] {
        fs::create_dir(m.join(r).join("d")).unwrap();
        fs::write(m.join(r).join("d/f"), r.as_bytes()).unwrap();
    }
    let a = fs::metadata(m.join("m1/d/f")).unwrap();
    let b = fs::metadata(m.join("m2/d/f")).unwrap();
    assert_eq!(a.dev(), b.dev());
    assert_ne!(a.ino(), b.ino());
    let a = fs::metadata(m.join("h1/hello")).unwrap();
    let b = fs::metadata(m.join("h2/hello")).unwrap();
    assert_ne!(a.ino(), b.ino());
    assert_ne!(
        fs::metadata(m.join("h1")).unwrap().ino(),
        fs::metadata(m.join("h2")).unwrap().ino()
    );
    assert_unique_inodes(m.path());
    run_quiet("find", &[&m.path().display().to_string()]);
    run_quiet("du", &["-s", &m.path().display().to_string()]);
}

/// Rename and link across routes: EXDEV (and `mv` copies); mount points
/// are busy.
fn across_routes(transport: &'static str) {
    let host = Host::new();
    let m = mount(transport, host.route_args());
    fs::write(m.join("tmp/a"), b"moving").unwrap();
    let e = fs::rename(m.join("tmp/a"), m.join("data/a")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
    let e = fs::hard_link(m.join("tmp/a"), m.join("data/a")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
    let e = fs::rename(m.join("tmp/a"), m.join("top")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
    run_quiet(
        "mv",
        &[
            &m.join("tmp/a").display().to_string(),
            &m.join("data/a").display().to_string(),
        ],
    );
    assert_eq!(fs::read(host.dir.path().join("data/a")).unwrap(), b"moving");
    assert!(!m.join("tmp/a").exists());
    // Within one route, rename and link work.
    fs::write(m.join("tmp/b"), b"b").unwrap();
    fs::rename(m.join("tmp/b"), m.join("tmp/c")).unwrap();
    fs::hard_link(m.join("tmp/c"), m.join("tmp/d")).unwrap();
    assert_eq!(fs::metadata(m.join("tmp/d")).unwrap().nlink(), 2);
    // Mount points are busy.
    let e = fs::remove_dir(m.join("tmp")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    let e = fs::rename(m.join("data"), m.join("data2")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    let e = fs::rename(m.join("etc"), m.join("etc2")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
}

/// Bad routes: one line on stderr, exit 2, nothing mounted.
#[test]
fn bad_routes_exit_2_before_mounting() {
    let host = Host::new();
    let cases: Vec<Vec<String>> = vec![
        vec![
            "--route".into(),
            "/a=memory".into(),
            "--route".into(),
            "/a/b=memory".into(),
        ],
        vec![
            "--route".into(),
            "/a=memory".into(),
            "--route".into(),
            "/a=memory".into(),
        ],
        vec!["--route".into(), "/=memory".into()],
        vec!["--route".into(), "a=memory".into()],
        vec!["--route".into(), "/a/../b=memory".into()],
        vec!["--route".into(), format!("/a={}/missing", host.data())],
    ];
    for case in cases {
        let dir = common::traversable_tempdir();
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let mut cmd = Command::new(fuselage_bin());
        cmd.arg("mount").args(&case).arg(&mnt);
        let mut server = ServerProcess::spawn(cmd);
        let status = server
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{case:?}: still running"));
        server.drain_stderr(Duration::from_secs(2));
        let lines = server.stderr_lines();
        assert_eq!(status.code(), Some(2), "{case:?}: {status} {lines:?}");
        assert_eq!(lines.len(), 1, "{case:?}: {lines:?}");
        assert!(lines[0].starts_with("fuselage: --route: "), "{lines:?}");
        assert!(!common::is_mountpoint(&mnt), "{case:?} mounted");
    }
}

/// One `#[test]` per scenario for a transport.
macro_rules! scenario_tests {
    ($transport:literal; $($scenario:ident),+ $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                let ready = if $transport == "uring" {
                    $crate::common::require_native_uring()
                } else {
                    $crate::common::require_fuse()
                };
                if ready {
                    $crate::$scenario($transport);
                }
            }
        )+
    };
}

/// One module per transport, each with every scenario.
macro_rules! router_rows {
    ($($row:ident: $transport:literal),+ $(,)?) => {
        $(
            mod $row {
                scenario_tests!($transport;
                    routes_over_memory_root,
                    routes_over_source_root,
                    routes_over_overlay_root,
                    host_routes_readdirplus,
                    colliding_inodes,
                    across_routes,
                );
            }
        )+
    };
}

router_rows! {
    native_uring: "uring",
    uring_rw: "uring-rw",
    blocking: "blocking",
}
