//! Faults around the server: the host filesystem full or out of
//! descriptors under it, and a client killed while its request waits in
//! the server. Each must reach the client as the right errno (never a
//! panic or a hang), and the server must recover when the cause goes away.

use super::*;
use crate::common::*;
use std::fs::{self, File};
use std::io;
use std::time::{Duration, Instant};

/// The host filesystem under the server is full (the source is a 4 MiB
/// tmpfs): writing through the mount fails with ENOSPC, never EIO or a
/// hang, and writes work again once the file is removed.
pub fn enospc_host(setup: &Setup) {
    if !setup.backend.has_source() {
        eprintln!("not applicable: the row serves no host directory");
        return;
    }
    const SIZE: u64 = 4 * MIB;
    let fs = MountedFs::mount_with(
        setup,
        MountConfig {
            source_tmpfs: Some("size=4m,mode=0755"),
            ..MountConfig::default()
        },
    );
    let p = fs.join("fill");
    let mut f = File::create(&p).expect("create");
    let chunk = pattern(17, 0, (256 * KIB) as usize);
    let (accepted, failure) = write_until_error(&mut f, &chunk, 4 * SIZE);
    let failure = failure.unwrap_or_else(|| {
        panic!("wrote {accepted} bytes onto a 4 MiB host filesystem without an error")
    });
    assert_eq!(
        failure.raw_os_error(),
        Some(libc::ENOSPC),
        "filling the host filesystem: {failure} after {accepted} bytes"
    );
    assert!(
        accepted <= SIZE,
        "accepted {accepted} bytes onto a {SIZE}-byte host filesystem"
    );
    drop(f);
    expect_errno(
        fs::write(fs.join("more"), &chunk),
        libc::ENOSPC,
        "a second file on a full host filesystem",
    );
    fs::remove_file(&p).expect("unlink");
    let _ = fs::remove_file(fs.join("more"));
    let freed = wait_until(Duration::from_secs(5), || {
        let st = statvfs(fs.path());
        st.f_bavail * st.f_frsize >= 2 * MIB
    });
    assert!(freed, "space not returned after unlink");
    write(&fs.join("after"), &chunk);
    assert!(
        read_direct(&fs.join("after")) == chunk,
        "data written after the space came back"
    );
}

/// Descriptors the server `pid` has open.
fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sets the soft and hard RLIMIT_NOFILE of process `pid` (as root).
fn set_nofile(pid: i32, limit: u64) {
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: a valid rlimit to read and no old-limit pointer.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit of pid {pid}: {}", io::Error::last_os_error());
}

/// The server runs out of descriptors (its RLIMIT_NOFILE lowered to what
/// it holds plus 32, after it started): opening ever more files through
/// the mount fails with EMFILE (or ENFILE), never EIO, a panic or a hang;
/// files opened before still work, and once they are closed the server
/// opens files again.
pub fn emfile(setup: &Setup) {
    if !setup.backend.has_source() {
        eprintln!("not applicable: only a server of host files holds descriptors for them");
        return;
    }
    let mut fs = MountedFs::mount(setup, &[]);
    const FILES: usize = 400;
    for i in 0..FILES {
        write(&fs.join(format!("f{i}")), format!("{i}").as_bytes());
    }
    let pid = fs.pid();
    let limit = open_fds(pid) as u64 + 32;
    set_nofile(pid, limit);
    let mut open = Vec::new();
    let mut failure = None;
    for i in 0..FILES {
        match File::open(fs.join(format!("f{i}"))) {
            Ok(f) => open.push(f),
            Err(e) => {
                failure = Some((i, e));
                break;
            }
        }
    }
    let Some((at, err)) = failure else {
        // Nothing held per open file (kernel passthrough keeps the backing
        // file in the kernel): nothing to run out of.
        assert!(
            fs.mounted_line().contains(" passthrough=on"),
            "{FILES} files open through a server limited to {limit} descriptors ({} open now)",
            open_fds(pid)
        );
        eprintln!(
            "{FILES} files open with the server at {} of {limit} descriptors",
            open_fds(pid)
        );
        return;
    };
    assert!(
        matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)),
        "opening file {at} with the server out of descriptors: {err} ({:?})",
        err.raw_os_error().map(errno_name)
    );
    eprintln!("file {at} failed with {err} at a limit of {limit}");
    serves_again_after_running_out(&mut fs, open, at, "every other was closed");
}

/// A client blocked in F_SETLKW on a lock another process holds is
/// SIGKILLed: it dies promptly (its request is interrupted and answered,
/// or dropped), the lock holder is unaffected, and once the holder
/// releases the lock another process takes it at once (the killed waiter
/// left no lock or waiter behind in the server) and the mount serves on.
pub fn killed_lock_waiter(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("locked");
    write(&p, b"lock me");
    let path = cpath(&p);
    // The holder is a process of its own: a child forked while this process
    // held the file open would share that open file, and with it, on a
    // passthrough, the lock (see `backends::passthrough::locks`).
    let mut ready = [0i32; 2];
    // SAFETY: a valid array of two ints.
    let piped = unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(piped, 0, "pipe2");
    let holder = fork_child(|| {
        // SAFETY: raw syscalls on a valid C string (prepared before fork)
        // and the pipe's write end.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDWR);
            if fd < 0 || setlk(fd, libc::F_SETLK, libc::F_WRLCK).is_err() {
                return 1;
            }
            libc::write(ready[1], b"L".as_ptr().cast(), 1);
            loop {
                // SIGKILL ends the child.
                libc::pause();
            }
        }
    });
    // SAFETY: our copy of the write end, closed once; then a poll of the
    // read end with a valid pollfd.
    let locked = unsafe {
        libc::close(ready[1]);
        let mut pfd = libc::pollfd {
            fd: ready[0],
            events: libc::POLLIN,
            revents: 0,
        };
        let r = libc::poll(&mut pfd, 1, 10_000);
        libc::close(ready[0]);
        r == 1 && pfd.revents & libc::POLLIN != 0
    };
    assert!(
        locked,
        "the holder did not take its lock within 10 s (exit {:?})",
        holder.status(Duration::ZERO)
    );
    // A non-blocking attempt from another process conflicts.
    let conflicts = || {
        fork_child(|| {
            // SAFETY: as above.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
            match setlk(fd, libc::F_SETLK, libc::F_WRLCK) {
                Err(libc::EAGAIN | libc::EACCES) => 0,
                Ok(()) => 20,
                Err(_) => 21,
            }
        })
        .status(Duration::from_secs(10))
            == Some(0)
    };
    assert!(conflicts(), "another process took the holder's lock");
    let waiter = fork_child(|| {
        // SAFETY: as above.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return 10;
        }
        match setlk(fd, libc::F_SETLKW, libc::F_WRLCK) {
            Ok(()) => 0,
            Err(_) => 11,
        }
    });
    // Blocked, not failed.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiter.status(Duration::ZERO).is_none(),
        "the waiter did not block on the held lock: exit {:?}",
        waiter.status(Duration::ZERO)
    );
    let killed = Instant::now();
    // SAFETY: kill of our own unreaped child.
    unsafe { libc::kill(waiter.pid, libc::SIGKILL) };
    let status = waiter.status(Duration::from_secs(5));
    assert!(
        status.is_some(),
        "a SIGKILLed lock waiter still alive 5 s later (its request was never answered)"
    );
    eprintln!("the killed waiter was gone after {:?}", killed.elapsed());
    // The holder's lock is intact, and the waiter took none.
    assert!(conflicts(), "the holder's lock went with the killed waiter");
    // SAFETY: kill of our own unreaped child.
    unsafe { libc::kill(holder.pid, libc::SIGKILL) };
    assert!(
        holder.status(Duration::from_secs(5)).is_some(),
        "holder alive"
    );
    let taker = || {
        fork_child(|| {
            // SAFETY: as above.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
            match setlk(fd, libc::F_SETLK, libc::F_WRLCK) {
                Ok(()) => 0,
                Err(_) => 30,
            }
        })
        .status(Duration::from_secs(10))
            == Some(0)
    };
    // The holder's release (its close) reaches the server asynchronously.
    assert!(
        wait_until(Duration::from_secs(5), taker),
        "F_SETLK still refused after the holder died (a lock left by the killed waiter?)"
    );
    write(&fs.join("after"), b"still serving");
    assert_eq!(read(&fs.join("after")), b"still serving");
}

/// `fcntl(fd, cmd, {type, whole file})`: `Err(errno)` on failure.
fn setlk(fd: i32, cmd: i32, kind: i32) -> Result<(), i32> {
    // SAFETY: all-zero is a valid flock.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a valid flock for this command.
    let r = unsafe { libc::fcntl(fd, cmd, &fl) };
    if r == 0 { Ok(()) } else { Err(errno()) }
}

/// A forked child, SIGKILLed and reaped on drop.
struct Forked {
    pid: i32,
    status: std::cell::Cell<Option<i32>>,
}

/// Forks a child that runs `f` and exits with its result. `f` runs after
/// fork in a multithreaded process: raw syscalls only, no allocation.
fn fork_child(f: impl FnOnce() -> i32) -> Forked {
    // SAFETY: the child only makes raw syscalls (see above) and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code = f();
        // SAFETY: _exit never returns and runs no destructors.
        unsafe { libc::_exit(code) };
    }
    Forked {
        pid,
        status: std::cell::Cell::new(None),
    }
}

impl Forked {
    /// The child's exit code (128 + signal if killed) once it has exited,
    /// waiting at most `timeout`.
    fn status(&self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status.get().is_some() {
                return self.status.get();
            }
            let mut st = 0;
            // SAFETY: our own child; a valid out pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) };
            if r == self.pid {
                let code = if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    128 + libc::WTERMSIG(st)
                };
                self.status.set(Some(code));
                return Some(code);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if self.status.get().is_none() {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.status(Duration::from_secs(5));
        }
    }
}

/// A lock handed over on one CPU: the holder and a waiter run on the same
/// CPU, the waiter blocks in F_SETLKW, and the holder's release (its
/// close) must reach the server and end the wait within 5 s; with one
/// native queue per CPU, the release arrives on the queue the wait holds.
pub fn lock_handover_on_one_cpu(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("locked");
    write(&p, b"lock me");
    let path = cpath(&p);
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    let pin = move || {
        // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET
        // writes inside it for a CPU below CPU_SETSIZE.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    };
    let mut ready = [0i32; 2];
    // SAFETY: a valid array of two ints.
    let piped = unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(piped, 0, "pipe2");
    let holder = fork_child(|| {
        pin();
        // SAFETY: raw syscalls on a valid C string and the pipe's ends.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDWR);
            if fd < 0 || setlk(fd, libc::F_SETLK, libc::F_WRLCK).is_err() {
                return 1;
            }
            libc::write(ready[1], b"L".as_ptr().cast(), 1);
            // Hold it for 500 ms (the waiter blocks meanwhile), then close.
            libc::usleep(500_000);
            libc::close(fd);
            0
        }
    });
    // SAFETY: our copy of the write end, closed once; a poll of the read
    // end with a valid pollfd.
    let locked = unsafe {
        libc::close(ready[1]);
        let mut pfd = libc::pollfd {
            fd: ready[0],
            events: libc::POLLIN,
            revents: 0,
        };
        let r = libc::poll(&mut pfd, 1, 10_000);
        libc::close(ready[0]);
        r == 1
    };
    assert!(locked, "the holder did not take its lock");
    let started = Instant::now();
    let waiter = fork_child(|| {
        pin();
        // SAFETY: as above.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
        match setlk(fd, libc::F_SETLKW, libc::F_WRLCK) {
            Ok(()) => 0,
            Err(_) => 11,
        }
    });
    let got = waiter.status(Duration::from_secs(5));
    assert_eq!(
        got,
        Some(0),
        "the waiter on CPU {cpu} did not get the lock within 5 s of its release"
    );
    eprintln!("the waiter got the lock after {:?}", started.elapsed());
    assert_eq!(holder.status(Duration::from_secs(5)), Some(0), "the holder");
}
