//! Starting the FUSE servers under test (fuselage and peers), timing them to "mounted", and
//! taking them down again.

use crate::cleanup::{self, Registration, Undo};
use crate::cpuset::CpuSet;
use crate::procfs;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to mount before it counts as unavailable.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of a server's stderr kept for error messages.
const TAIL_LINES: usize = 40;

/// What a fuselage server serves.
#[derive(Debug, Clone, Copy)]
pub enum Serve<'a> {
    /// The in-memory filesystem (no `--source`).
    Memory,
    /// `--source DIR`.
    Source(&'a Path),
    /// `--lower LOWER --upper UPPER`: an overlay of one lower layer.
    Overlay {
        /// The read-only lower layer.
        lower: &'a Path,
        /// The writable upper layer.
        upper: &'a Path,
    },
    /// `--source SOURCE --route SUBPATH=DIR`: a router whose route is a host directory.
    Routed {
        /// The root's host directory.
        source: &'a Path,
        /// Where the route sits in the mount, e.g. `/data`.
        subpath: &'a str,
        /// The host directory served at `subpath`.
        dir: &'a Path,
    },
    /// `fuselage-bench --floor-server mount --source SPEC`: the trivial filesystem of the
    /// floor (the binary is then fuselage-bench itself).
    Floor(&'a str),
}

/// What to start.
#[derive(Debug, Clone)]
pub enum Launch<'a> {
    /// `fuselage mount ...`; ready at its startup line.
    Fuselage {
        bin: &'a Path,
        serve: Serve<'a>,
        /// `--transport`; `None` leaves it out (`auto`).
        transport: Option<&'a str>,
        passthrough: Option<&'a str>,
        threads: Option<usize>,
    },
    /// `sh -c 'exec CMD'` with `{src}` and `{mnt}` filled in; ready when the mountpoint shows
    /// up in /proc/self/mountinfo.
    Peer { cmd: &'a str, source: &'a Path },
}

/// A running, mounted server. Dropping it unmounts and reaps it.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// Process id of the server.
    pub pid: i32,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// From exec to mounted.
    pub mount_time: Duration,
    /// fuselage's `fuselage: mounted ...` line.
    pub startup_line: Option<String>,
    tail: Arc<Mutex<VecDeque<String>>>,
    unmount: Option<Registration>,
    kill: Option<Registration>,
}

/// How a server ended.
#[derive(Debug)]
pub struct Stopped {
    /// Exit status, if it was reaped.
    pub status: Option<ExitStatus>,
    /// Whether it had to be signalled after the unmount.
    pub signalled: bool,
    /// The last lines of its stderr.
    pub tail: Vec<String>,
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Fills `{src}` and `{mnt}` in a peer command.
pub fn peer_command(cmd: &str, src: &Path, mnt: &Path) -> String {
    cmd.replace("{src}", &shell_quote(src))
        .replace("{mnt}", &shell_quote(mnt))
}

/// Splits a command's leading environment assignments (`NAME=value` words, as in
/// `FUSE_URING_ENABLE=1 passthrough_hp ...`) from the command itself.
pub fn split_env(cmd: &str) -> (&str, &str) {
    let mut rest = cmd.trim_start();
    loop {
        let word = rest.split_whitespace().next().unwrap_or("");
        let is_assignment = word.split_once('=').is_some_and(|(name, _)| {
            name.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !is_assignment {
            break;
        }
        rest = rest[word.len()..].trim_start();
    }
    let env = cmd.trim_start();
    (env[..env.len() - rest.len()].trim_end(), rest)
}

/// The `sh -c` line of a peer: `[NAME=value ...] exec COMMAND`, so the server is the shell's
/// own process (its pid is the one measured and signalled) and gets the assignments in its
/// environment.
pub fn peer_shell_line(cmd: &str, src: &Path, mnt: &Path) -> String {
    let (env, rest) = split_env(cmd);
    let line = format!("exec {}", peer_command(rest, src, mnt));
    if env.is_empty() {
        line
    } else {
        format!("{env} {line}")
    }
}

impl Server {
    /// Starts a server on `mountpoint` and waits until it is mounted. `Err` carries the
    /// server's own one-line reason (its last stderr line) when it refused to start.
    pub fn start(
        launch: &Launch<'_>,
        mountpoint: &Path,
        cpus: Option<&CpuSet>,
    ) -> Result<Server, String> {
        let mut cmd = match launch {
            Launch::Fuselage {
                bin,
                serve,
                transport,
                passthrough,
                threads,
            } => {
                let mut c = Command::new(bin);
                if let Serve::Floor(_) = serve {
                    c.arg(crate::floor::FLOOR_ARG);
                }
                c.arg("mount");
                match serve {
                    Serve::Memory => {}
                    Serve::Floor(spec) => {
                        c.arg("--source").arg(spec);
                    }
                    Serve::Source(s) => {
                        c.arg("--source").arg(s);
                    }
                    Serve::Overlay { lower, upper } => {
                        c.arg("--lower").arg(lower).arg("--upper").arg(upper);
                    }
                    Serve::Routed {
                        source,
                        subpath,
                        dir,
                    } => {
                        let mut route = std::ffi::OsString::from(format!("{subpath}="));
                        route.push(dir.as_os_str());
                        c.arg("--source").arg(source).arg("--route").arg(route);
                    }
                }
                if let Some(t) = transport {
                    c.args(["--transport", t]);
                }
                if let Some(p) = passthrough {
                    c.args(["--passthrough", p]);
                }
                if let Some(n) = threads {
                    c.args(["--threads", &n.to_string()]);
                }
                c.arg(mountpoint);
                c.env("FUSELAGE_LOG", "warn");
                c
            }
            Launch::Peer { cmd, source } => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(peer_shell_line(cmd, source, mountpoint));
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let cpus = cpus.cloned();
        // SAFETY: the hook runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, sched_setaffinity) on data prepared before
        // the fork.
        unsafe {
            cmd.pre_exec(move || {
                // The server goes if the harness dies without cleaning up.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if let Some(c) = &cpus {
                    c.apply_to_current_thread()?;
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| match launch {
            Launch::Fuselage { bin, .. } => format!("cannot run {}: {e}", bin.display()),
            Launch::Peer { .. } => format!("cannot run /bin/sh: {e}"),
        })?;
        let pid = child.id() as i32;
        let kill = Registration::new(Undo::Kill(pid));
        let unmount = Registration::new(Undo::Unmount(mountpoint.to_path_buf()));
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel::<(Instant, String)>();
        let stderr = child.stderr.take();
        {
            let tail = tail.clone();
            std::thread::spawn(move || {
                let Some(stderr) = stderr else { return };
                let mut sent = false;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if !sent && line.starts_with("fuselage: mounted ") {
                        sent = true;
                        let _ = tx.send((Instant::now(), line.clone()));
                    }
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        let mut server = Server {
            child: Some(child),
            pid,
            mountpoint: mountpoint.to_path_buf(),
            mount_time: Duration::ZERO,
            startup_line: None,
            tail,
            unmount: Some(unmount),
            kill: Some(kill),
        };
        let ready = match launch {
            Launch::Fuselage { .. } => server.wait_startup_line(&rx, started),
            Launch::Peer { .. } => server.wait_mountinfo(started),
        };
        match ready {
            Ok(()) => Ok(server),
            Err(reason) => {
                let stopped = server.stop();
                let last = stopped
                    .tail
                    .iter()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .cloned();
                Err(match (reason, last) {
                    (Wait::Exited, Some(line)) => line,
                    (Wait::Exited, None) => format!(
                        "exited before mounting ({})",
                        stopped
                            .status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "status unknown".into())
                    ),
                    (Wait::Timeout, Some(line)) => {
                        format!("not mounted after {MOUNT_TIMEOUT:?}; last line: {line}")
                    }
                    (Wait::Timeout, None) => format!("not mounted after {MOUNT_TIMEOUT:?}"),
                })
            }
        }
    }

    fn wait_startup_line(
        &mut self,
        rx: &mpsc::Receiver<(Instant, String)>,
        started: Instant,
    ) -> Result<(), Wait> {
        match rx.recv_timeout(MOUNT_TIMEOUT) {
            Ok((at, line)) => {
                self.mount_time = at - started;
                self.startup_line = Some(line);
                Ok(())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Wait::Exited),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Wait::Timeout),
        }
    }

    fn wait_mountinfo(&mut self, started: Instant) -> Result<(), Wait> {
        loop {
            if procfs::mounted_fstype(&self.mountpoint).is_some_and(|t| t.starts_with("fuse")) {
                self.mount_time = started.elapsed();
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                // Let the reader thread collect the last lines.
                std::thread::sleep(Duration::from_millis(20));
                return Err(Wait::Exited);
            }
            if started.elapsed() > MOUNT_TIMEOUT {
                return Err(Wait::Timeout);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Resident memory of the server process now, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        procfs::status_kib(self.pid, "VmRSS")
    }

    /// Resident memory of the server's child processes now (fuselage's
    /// auto-unmount watchdog), summed, KiB; 0 without children.
    pub fn children_rss_kib(&self) -> u64 {
        procfs::children(self.pid)
            .into_iter()
            .filter_map(|c| procfs::status_kib(c, "VmRSS"))
            .sum()
    }

    /// Peak resident memory of the server process so far, KiB.
    pub fn hwm_kib(&self) -> Option<u64> {
        procfs::status_kib(self.pid, "VmHWM")
    }

    /// Unmounts (lazily), waits for the server to exit by itself, then signals it if it does
    /// not; reaps it.
    pub fn stop(&mut self) -> Stopped {
        let mut signalled = false;
        let mut status = None;
        if let Some(mut child) = self.child.take() {
            if procfs::mounted_fstype(&self.mountpoint).is_some_and(|t| t.starts_with("fuse")) {
                let _ = cleanup::unmount_lazy(&self.mountpoint);
            }
            status = wait_for(&mut child, Duration::from_secs(10));
            if status.is_none() {
                signalled = true;
                // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
                unsafe { libc::kill(self.pid, libc::SIGTERM) };
                status = wait_for(&mut child, Duration::from_secs(5));
            }
            if status.is_none() {
                let _ = child.kill();
                status = child.wait().ok();
            }
            // Its stderr reaches EOF now; give the reader a moment.
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(r) = self.unmount.take() {
            r.forget();
        }
        if let Some(r) = self.kill.take() {
            r.forget();
        }
        let tail = self
            .tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        Stopped {
            status,
            signalled,
            tail,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

enum Wait {
    Exited,
    Timeout,
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_placeholders() {
        assert_eq!(
            peer_command("bindfs -f {src} {mnt}", Path::new("/a b"), Path::new("/m")),
            "bindfs -f '/a b' '/m'"
        );
    }

    #[test]
    fn peer_environment_goes_before_exec() {
        assert_eq!(
            split_env("bindfs -f {src} {mnt}"),
            ("", "bindfs -f {src} {mnt}")
        );
        assert_eq!(
            split_env(" A=1 B_2=x=y hp -o k=v {mnt}"),
            ("A=1 B_2=x=y", "hp -o k=v {mnt}")
        );
        assert_eq!(split_env("=1 hp"), ("", "=1 hp"));
        assert_eq!(
            peer_shell_line(
                "FUSE_URING_ENABLE=1 hp {src} {mnt}",
                Path::new("/s"),
                Path::new("/m")
            ),
            "FUSE_URING_ENABLE=1 exec hp '/s' '/m'"
        );
        assert_eq!(
            peer_shell_line("hp {mnt}", Path::new("/s"), Path::new("/m")),
            "exec hp '/m'"
        );
        // The shell passes the assignment to the program it execs.
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(peer_shell_line(
                "FUSELAGE_BENCH_T=42 env {mnt}",
                Path::new("/s"),
                Path::new("-0"),
            ))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("FUSELAGE_BENCH_T=42"));
    }
}
