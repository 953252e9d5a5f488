//! The small static `fuselage` binary (README, "Init containers") works with nothing around it.
//!
//! Builds it exactly as documented (a no-op when `.ci/run` built it already):
//!
//! ```sh
//! cargo build --profile static -p fuselage --target x86_64-unknown-linux-musl
//! ```
//!
//! or, where the musl target is not installed, the glibc static build
//! (`RUSTFLAGS='-C target-feature=+crt-static' ... --target x86_64-unknown-linux-gnu`), saying
//! so. Checks that it needs no shared library (no ELF interpreter, `ldd`, `file`) and that the
//! musl build is under 1 MiB, then runs it in an empty root, as an init container would: a
//! chroot holding only the binary, `/dev/fuse`, an empty mountpoint (and for the passthrough
//! backend the directory it serves), with no /proc, no /sys, no /etc, no /lib and an empty
//! environment. For memfs and passthrough, on the blocking transport and on native io_uring
//! (the startup line must say `transport=uring`), it must mount, serve files written and read
//! through the mount, and exit 0 on SIGTERM with the mount gone. Native io_uring reads sysfs
//! through a private detached instance (nothing appears under the root); the passthrough
//! backend mounts /proc itself. `FUSELAGE_STATIC_BIN=PATH` tests a binary built elsewhere.
//!
//! Every test holds a guard that kills the server and lazily unmounts whatever is mounted
//! under its root on drop, also when an assertion fails.
//!
//! Needs root and /dev/fuse (and `enable_uring=Y` for the io_uring rows): skips with a message
//! without them, and fails instead when `FUSELAGE_REQUIRE_FUSE=1`.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The documented target.
const MUSL: &str = "x86_64-unknown-linux-musl";
/// The fallback where the musl target cannot be installed.
const GNU: &str = "x86_64-unknown-linux-gnu";
/// The size limit of the stripped musl binary.
const ONE_MIB: usize = 1 << 20;

/// Reports a missing prerequisite under the test kit's skip policy.
fn skip(why: &str) {
    fuselage_testkit::skip::require(Err(format!("static_binary: {why}")));
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// Whether the musl standard library is installed for the toolchain in use.
fn musl_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", MUSL])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .is_some_and(|mut entries| entries.next().is_some())
}

/// The static binary and the target it was built for (`None`: given by
/// `FUSELAGE_STATIC_BIN`). Builds it as documented.
fn static_binary() -> (PathBuf, Option<&'static str>) {
    if let Some(p) = std::env::var_os("FUSELAGE_STATIC_BIN") {
        return (PathBuf::from(p), None);
    }
    let root = workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = if musl_installed() {
        MUSL
    } else {
        eprintln!(
            "the {MUSL} target is not installed (rustup target add {MUSL}): \
             testing the glibc static build instead"
        );
        GNU
    };
    let started = Instant::now();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "static",
            "-p",
            "fuselage",
            "--target",
            target,
        ])
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target_dir);
    if target == GNU {
        cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    }
    let out = cmd.output().expect("run cargo build for the static binary");
    assert!(
        out.status.success(),
        "building the static binary failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "static binary built (or up to date) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (
        target_dir.join(target).join("static").join("fuselage"),
        Some(target),
    )
}

/// True if the ELF file has a PT_INTERP program header (needs a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    assert!(elf.len() > 64 && &elf[..4] == b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let phoff = u64_at(0x20);
    let phentsize = u16_at(0x36);
    let phnum = u16_at(0x38);
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

fn c_path(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Mountpoints at or under `dir` in this process's mount table, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn mounted(path: &Path) -> bool {
    mounts_under(path).iter().any(|p| p == path)
}

/// The empty root of one test. On drop (also after a failed assertion): kills the server,
/// lazily unmounts everything under the root, and removes it.
struct Chroot {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Chroot {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for m in mounts_under(&self.dir) {
            // SAFETY: the path is a valid NUL-terminated string that outlives the call.
            unsafe { libc::umount2(c_path(&m).as_ptr(), libc::MNT_DETACH) };
        }
        if mounts_under(&self.dir).is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The two backends of the binary.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Memfs,
    Passthrough,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Memfs => "memfs",
            Backend::Passthrough => "passthrough",
        }
    }
}

/// Why this machine cannot run the test, if it cannot.
fn unmet_needs(transport: &str) -> Option<String> {
    use fuselage_testkit::skip;
    let met = skip::fuse_available().and_then(|()| {
        if transport == "uring" {
            skip::enable_native_uring()
        } else {
            Ok(())
        }
    });
    met.err()
}

#[test]
fn static_binary_is_static_and_under_one_mib() {
    let (bin, target) = static_binary();
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    eprintln!("static binary: {} ({} bytes)", bin.display(), bytes.len());
    assert!(
        !has_interpreter(&bytes),
        "{} has a PT_INTERP header: it needs a dynamic loader",
        bin.display()
    );
    let ldd = Command::new("ldd").arg(&bin).output().expect("run ldd");
    let ldd_text = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        ldd_text.contains("not a dynamic executable") || ldd_text.contains("statically linked"),
        "ldd lists shared libraries:\n{ldd_text}"
    );
    match Command::new("file").arg(&bin).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("statically linked") || text.contains("static-pie linked"),
                "file(1) does not call it static: {text}"
            );
            assert!(text.contains("stripped"), "not stripped: {text}");
        }
        Err(_) => eprintln!("file(1) not installed; relying on the ELF header check"),
    }
    if target == Some(MUSL) {
        assert!(
            bytes.len() < ONE_MIB,
            "the musl static binary is {} bytes, over 1 MiB ({ONE_MIB})",
            bytes.len()
        );
    }
}

#[test]
fn memfs_blocking_in_an_empty_root() {
    serve_in_empty_root(Backend::Memfs, "blocking", false);
}

#[test]
fn memfs_blocking_sandboxed_in_an_empty_root() {
    serve_in_empty_root(Backend::Memfs, "blocking", true);
}

#[test]
fn memfs_uring_in_an_empty_root() {
    serve_in_empty_root(Backend::Memfs, "uring", false);
}

#[test]
fn memfs_uring_sandboxed_in_an_empty_root() {
    serve_in_empty_root(Backend::Memfs, "uring", true);
}

#[test]
fn passthrough_blocking_in_an_empty_root() {
    serve_in_empty_root(Backend::Passthrough, "blocking", false);
}

#[test]
fn passthrough_blocking_sandboxed_in_an_empty_root() {
    serve_in_empty_root(Backend::Passthrough, "blocking", true);
}

#[test]
fn passthrough_uring_in_an_empty_root() {
    serve_in_empty_root(Backend::Passthrough, "uring", false);
}

#[test]
fn passthrough_uring_sandboxed_in_an_empty_root() {
    serve_in_empty_root(Backend::Passthrough, "uring", true);
}

/// 200 KB of a pattern that is not all one byte.
fn pattern() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

/// Serves `backend` on `transport` from the static binary in an empty root;
/// with `sandbox`, confined by `--sandbox` (seccomp, capabilities).
fn serve_in_empty_root(backend: Backend, transport: &str, sandbox: bool) {
    if let Some(why) = unmet_needs(transport) {
        return skip(&why);
    }
    let (bin, _) = static_binary();

    // The empty root: the binary, /dev/fuse, an empty mountpoint (and what passthrough serves).
    let dir = std::env::temp_dir().join(format!(
        "fuselage-static-{}-{transport}{}.{}",
        backend.name(),
        if sandbox { "-sandbox" } else { "" },
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dev")).unwrap();
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let mut chroot = Chroot {
        dir: dir.clone(),
        child: None,
    };
    std::fs::copy(&bin, dir.join("fuselage")).unwrap();
    // SAFETY: the path is a valid NUL-terminated string; makedev is a pure computation.
    let rc = unsafe {
        libc::mknod(
            c_path(&dir.join("dev/fuse")).as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(10, 229),
        )
    };
    if rc != 0 {
        return skip(&format!(
            "cannot mknod /dev/fuse in the chroot: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut expected = vec!["dev", "dev/fuse", "fuselage", "mnt"];
    let mut args = vec!["mount", "--transport", transport];
    if sandbox {
        args.push("--sandbox");
    }
    if backend == Backend::Passthrough {
        std::fs::create_dir(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/data.bin"), pattern()).unwrap();
        expected.extend(["src", "src/data.bin"]);
        args.extend(["--source", "/src"]);
    }
    args.push("/mnt");
    expected.sort();
    assert_eq!(walk(&dir), expected, "the chroot holds more");

    let root = c_path(&dir);
    let mut cmd = Command::new("/fuselage");
    cmd.args(&args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: chroot and chdir are async-signal-safe and `root` was built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("exec /fuselage inside the chroot");
    let pid = child.id() as i32;
    let stderr = child.stderr.take().unwrap();
    chroot.child = Some(child);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[static fuselage] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let startup = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with("fuselage: mounted ") => break line,
            Ok(line) => lines.push(line),
            Err(e) => panic!(
                "no startup line from the static binary in the chroot ({e:?}); stderr so far: {lines:?}"
            ),
        }
    };
    let to_mounted = started.elapsed();
    let want = format!(
        "fuselage: mounted /mnt backend={} transport={transport} ",
        backend.name()
    );
    assert!(
        startup.starts_with(&want),
        "unexpected startup line: {startup} (wanted {want}...)"
    );
    assert!(
        !startup.contains("fallback"),
        "the startup line reports a fallback: {startup}"
    );
    assert_eq!(
        startup.contains(" sandbox=on("),
        sandbox,
        "the startup line and --sandbox disagree: {startup}"
    );
    let mnt = dir.join("mnt");
    assert!(
        mounted(&mnt),
        "{} not in mountinfo after the startup line",
        mnt.display()
    );

    // What the server mounted for itself: /proc for passthrough (it needs /proc/self/fd),
    // nothing for memfs; sysfs never (native io_uring reads a private, detached instance).
    let own: Vec<PathBuf> = mounts_under(&dir)
        .into_iter()
        .filter(|m| *m != mnt)
        .collect();
    let want_own: Vec<PathBuf> = match backend {
        Backend::Passthrough => vec![dir.join("proc")],
        Backend::Memfs => Vec::new(),
    };
    assert_eq!(own, want_own, "mounts the server made in its root");

    let body = pattern();
    match backend {
        Backend::Memfs => {
            // A file written through the mount reads back.
            std::fs::write(mnt.join("hello.bin"), &body).unwrap();
            let mut back = Vec::new();
            std::fs::File::open(mnt.join("hello.bin"))
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == body, "read back {} bytes that differ", back.len());
            // A sparse file: its holes read as zeros (memfs's shared zero region).
            let sparse = std::fs::File::create(mnt.join("sparse.bin")).unwrap();
            sparse.set_len(3 << 20).unwrap();
            sparse.write_all_at(b"x", 2 << 20).unwrap();
            drop(sparse);
            let back = std::fs::read(mnt.join("sparse.bin")).unwrap();
            assert_eq!(back.len(), 3 << 20);
            assert_eq!(back[2 << 20], b'x');
            let nonzero = back.iter().filter(|&&b| b != 0).count();
            assert_eq!(nonzero, 1, "the holes of sparse.bin do not read as zeros");
        }
        Backend::Passthrough => {
            // The host file reads through the mount, and a file written through it lands
            // in the served directory.
            let back = std::fs::read(mnt.join("data.bin")).unwrap();
            assert!(back == body, "read {} bytes that differ", back.len());
            std::fs::write(mnt.join("hello.bin"), &body).unwrap();
            let on_host = std::fs::read(dir.join("src/hello.bin")).unwrap();
            assert!(on_host == body, "hello.bin differs in the source directory");
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want_names = match backend {
        Backend::Memfs => ["hello.bin", "sparse.bin"],
        Backend::Passthrough => ["data.bin", "hello.bin"],
    };
    assert_eq!(names, want_names);

    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    eprintln!(
        "static fuselage {} {transport}: exec to mounted {:.1} ms; after the I/O {rss}",
        backend.name(),
        to_mounted.as_secs_f64() * 1000.0
    );

    // SIGTERM: unmount and exit 0.
    // SAFETY: kill has no memory preconditions; `pid` is our unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut child = chroot.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the static binary did not exit within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert!(
        !mounted(&mnt),
        "{} still mounted after SIGTERM",
        mnt.display()
    );
}

/// Relative paths of everything under `dir`, sorted.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}
