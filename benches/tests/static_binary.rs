//! The small static `fuselage` binary (README, "Static binary") works with nothing around it.
//!
//! Builds it exactly as documented (a no-op when `.ci/run` built it already):
//!
//! ```sh
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile static -p fuselage --target x86_64-unknown-linux-gnu
//! ```
//!
//! then checks that it needs no shared library (no ELF interpreter, `ldd`, `file`) and runs
//! it in an empty chroot holding only the binary, `/dev/fuse` and an empty mountpoint, as an
//! init container would: no /proc, no /sys, no /etc, no environment. It must mount the
//! in-memory filesystem (its startup line), serve a file written through the mount, and exit
//! 0 on SIGTERM with the mount gone. `FUSELAGE_STATIC_BIN=PATH` tests a binary built
//! elsewhere instead.
//!
//! Needs root and /dev/fuse: skips with a message without them, and fails instead when
//! `FUSELAGE_REQUIRE_FUSE=1`.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn skip(why: &str) {
    if std::env::var("FUSELAGE_REQUIRE_FUSE").is_ok_and(|v| v == "1") {
        panic!("FUSELAGE_REQUIRE_FUSE=1 but this test cannot run: {why}");
    }
    eprintln!("SKIPPED static_binary: {why}");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// Builds (or finds) the static binary.
fn static_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FUSELAGE_STATIC_BIN") {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "static",
            "-p",
            "fuselage",
            "--target",
            TARGET,
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .expect("run cargo build for the static binary");
    assert!(
        out.status.success(),
        "building the static binary failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "static binary built (or up to date) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    target_dir.join(TARGET).join("static").join("fuselage")
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

fn mounted(path: &Path) -> bool {
    let want = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want))
}

/// Tears the chroot down even when an assertion fails: kill the server, unmount, remove.
struct Chroot {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let mnt = self.dir.join("mnt");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if mounted(&mnt) {
            // SAFETY: the path is a valid NUL-terminated string that outlives the call.
            unsafe { libc::umount2(c_path(&mnt).as_ptr(), libc::MNT_DETACH) };
        }
        if !mounted(&mnt) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn static_binary_serves_memfs_from_an_empty_chroot() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return skip("needs root (chroot, mknod, mount)");
    }
    if !Path::new("/dev/fuse").exists() {
        return skip("no /dev/fuse");
    }

    let bin = static_binary();
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    eprintln!("static binary: {} ({} bytes)", bin.display(), bytes.len());

    // No shared libraries: no ELF interpreter, and the system tools agree.
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
        }
        Err(_) => eprintln!("file(1) not installed; relying on the ELF header check"),
    }

    // The empty chroot: the binary, /dev/fuse and an empty mountpoint. Nothing else.
    let dir = std::env::temp_dir().join(format!("fuselage-static-chroot.{}", std::process::id()));
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
    let listing: Vec<String> = walk(&dir);
    assert_eq!(
        listing,
        ["dev", "dev/fuse", "fuselage", "mnt"],
        "chroot holds more"
    );

    let root = c_path(&dir);
    let mut cmd = Command::new("/fuselage");
    cmd.args(["mount", "--transport", "blocking", "/mnt"])
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
    assert!(
        startup.starts_with("fuselage: mounted /mnt backend=memfs "),
        "unexpected startup line: {startup}"
    );
    let mnt = dir.join("mnt");
    assert!(
        mounted(&mnt),
        "{} not in mountinfo after the startup line",
        mnt.display()
    );

    // A file written through the mount reads back.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(mnt.join("hello.bin"), &body).unwrap();
    let mut back = Vec::new();
    std::fs::File::open(mnt.join("hello.bin"))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == body, "read back {} bytes that differ", back.len());
    let names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["hello.bin"]);

    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.to_string())
        .unwrap_or_default();
    eprintln!(
        "static fuselage: exec to mounted {:.1} ms; after a 200 KB write {rss}",
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
