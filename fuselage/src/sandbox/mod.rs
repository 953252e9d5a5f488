//! `--sandbox`: once the mount is up, the server confines itself, the way
//! virtiofsd and gVisor's gofer do.
//!
//! [`confine`] runs after mounting and before any thread of the server
//! starts (so every thread inherits what it sets; capabilities are per
//! thread and are only inherited at thread creation):
//!
//! 1. capabilities: every one the mount does not need is dropped from the
//!    bounding, inheritable, permitted and effective sets, and the ambient
//!    set is cleared ([`policy::capabilities`]);
//! 2. `PR_SET_NO_NEW_PRIVS`, so no exec can gain privileges again;
//! 3. a seccomp filter (built with `seccompiler`, installed on every thread
//!    with `SECCOMP_FILTER_FLAG_TSYNC`) that allows exactly the syscalls of
//!    the chosen backend and transport ([`policy::syscalls`]). Any other
//!    syscall traps (`SECCOMP_RET_TRAP`) into a `SIGSYS` handler that names
//!    it on stderr (`fuselage: sandbox: refused syscall 169 (reboot)`) and
//!    then, by [`SeccompMode`], ends the server (exit status 159, 128 +
//!    SIGSYS: the mount then answers ENOTCONN and the auto-unmount watchdog
//!    removes it) or makes the syscall fail with `EPERM` and goes on.
//!
//! With `--sandbox-namespace` it first moves into a private mount namespace
//! whose root is an empty, read-only tmpfs holding only `/proc`
//! ([`namespace`]): no host path is reachable from the server any more.
//!
//! A confined server does not unmount by itself when the auto-unmount
//! watchdog (or fusermount3's helper) is there to do it: on SIGTERM it
//! exits, and the watchdog unmounts. Only with `--no-auto-unmount` does it
//! keep `umount2` and CAP_SYS_ADMIN to unmount on SIGTERM.

#[cfg(feature = "sandbox")]
mod names;
#[cfg(feature = "sandbox")]
pub mod namespace;
pub mod policy;

pub use policy::Needs;

use std::fmt;
use std::io;
#[cfg(feature = "sandbox")]
use std::sync::atomic::{AtomicBool, Ordering};

/// What a refused syscall does (`--sandbox=kill` or `--sandbox=log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// The server names the syscall on stderr and exits (status 159).
    Kill,
    /// The syscall fails with EPERM, named on stderr; the server goes on
    /// (for finding what a list lacks).
    Log,
}

impl SeccompMode {
    /// The name on the command line and in the startup line.
    pub fn name(self) -> &'static str {
        match self {
            SeccompMode::Kill => "kill",
            SeccompMode::Log => "log",
        }
    }
}

/// The exit status of a server killed by its sandbox: 128 + SIGSYS, as if
/// the signal had killed it.
pub const KILLED_STATUS: i32 = 128 + libc::SIGSYS;

/// Why the server could not confine itself.
#[derive(Debug)]
pub enum SandboxError {
    /// seccomp filters are not built for this architecture.
    Architecture,
    /// Other threads already run (capabilities would only drop in this one).
    Threads(usize),
    /// Dropping capabilities failed.
    Capabilities(io::Error),
    /// The SIGSYS handler could not be installed.
    Handler(io::Error),
    /// Building or installing the seccomp filter failed.
    #[cfg(feature = "sandbox")]
    Filter(seccompiler::Error),
    /// Entering the private mount namespace failed.
    #[cfg(feature = "sandbox")]
    Namespace(namespace::NamespaceError),
    /// This binary was built without the `sandbox` feature (the small
    /// static build).
    NotBuilt,
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::Architecture => {
                f.write_str("--sandbox: seccomp filters are built for x86_64 and aarch64 only")
            }
            SandboxError::Threads(n) => write!(
                f,
                "--sandbox: {n} threads already run; confinement must come before the first"
            ),
            SandboxError::Capabilities(e) => write!(f, "--sandbox: dropping capabilities: {e}"),
            SandboxError::Handler(e) => write!(f, "--sandbox: installing the SIGSYS handler: {e}"),
            #[cfg(feature = "sandbox")]
            SandboxError::Filter(e) => write!(f, "--sandbox: seccomp filter: {e}"),
            #[cfg(feature = "sandbox")]
            SandboxError::Namespace(e) => write!(f, "--sandbox-namespace: {e}"),
            SandboxError::NotBuilt => f.write_str(
                "--sandbox: this fuselage was built without the sandbox feature (the small static build)",
            ),
        }
    }
}

impl std::error::Error for SandboxError {}

/// What [`confine`] kept, for the startup line.
#[derive(Debug, Clone)]
pub struct Confined {
    /// What a refused syscall does.
    pub mode: SeccompMode,
    /// How many syscalls the filter allows.
    pub syscalls: usize,
    /// The capabilities kept (bit n = capability n).
    pub caps: u64,
    /// Whether it runs in a private mount namespace (`--sandbox-namespace`).
    pub namespace: bool,
}

impl Confined {
    /// The startup line's word, with its leading space:
    /// ` sandbox=on(seccomp=kill,syscalls=58,caps=none,no_new_privs)`,
    /// with `,mountns=private` inside the parentheses under
    /// `--sandbox-namespace`.
    pub fn word(&self) -> String {
        let caps: Vec<&str> = (0..64)
            .filter(|c| self.caps & (1 << c) != 0)
            .map(policy::capability_name)
            .collect();
        format!(
            " sandbox=on(seccomp={},syscalls={},caps={},no_new_privs{})",
            self.mode.name(),
            self.syscalls,
            if caps.is_empty() {
                "none".to_string()
            } else {
                caps.join("+")
            },
            if self.namespace {
                ",mountns=private"
            } else {
                ""
            }
        )
    }
}

/// Whether the SIGSYS handler returns EPERM (log) rather than exiting.
#[cfg(feature = "sandbox")]
static LOG_ONLY: AtomicBool = AtomicBool::new(false);

/// Confines the calling process as described in the [module](self) docs.
/// Must run before the server starts any thread.
#[cfg(not(feature = "sandbox"))]
pub fn confine(
    _mode: SeccompMode,
    _needs: &Needs,
    _namespace: bool,
) -> Result<Confined, SandboxError> {
    Err(SandboxError::NotBuilt)
}

/// Confines the calling process as described in the [module](self) docs.
/// Must run before the server starts any thread.
/// With `namespace`, it first enters a private mount namespace
/// ([`namespace::enter`]).
#[cfg(feature = "sandbox")]
pub fn confine(
    mode: SeccompMode,
    needs: &Needs,
    namespace: bool,
) -> Result<Confined, SandboxError> {
    let arch = target_arch().ok_or(SandboxError::Architecture)?;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let n = tasks.count();
        if n > 1 {
            return Err(SandboxError::Threads(n));
        }
    }
    if namespace {
        // Before the capabilities go: it needs CAP_SYS_ADMIN.
        namespace::enter().map_err(SandboxError::Namespace)?;
    }
    let caps = policy::capabilities(needs);
    drop_capabilities(caps).map_err(SandboxError::Capabilities)?;
    LOG_ONLY.store(mode == SeccompMode::Log, Ordering::Relaxed);
    install_handler().map_err(SandboxError::Handler)?;
    let allowed = policy::syscalls(needs);
    // c_long is i64 on the 64-bit targets seccompiler builds for.
    // Inserted one by one (already in order): collecting into the map would
    // link a stable sort into the static binary for nothing.
    let mut rules = std::collections::BTreeMap::new();
    for &nr in &allowed {
        rules.insert(nr, Vec::new());
    }
    // unshare only as the host-file backends use it (a worker's own umask):
    // never a new mount, user or other namespace, even where CAP_SYS_ADMIN
    // stays (kernel passthrough).
    if let Some(unshare) = rules.get_mut(&libc::SYS_unshare) {
        let clone_fs = seccompiler::SeccompCondition::new(
            0,
            seccompiler::SeccompCmpArgLen::Dword,
            seccompiler::SeccompCmpOp::Eq,
            libc::CLONE_FS as u64,
        )
        .and_then(|c| seccompiler::SeccompRule::new(vec![c]))
        .map_err(|e| SandboxError::Filter(e.into()))?;
        unshare.push(clone_fs);
    }
    let filter = seccompiler::SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::Trap,
        seccompiler::SeccompAction::Allow,
        arch,
    )
    .map_err(|e| SandboxError::Filter(e.into()))?;
    let program: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Filter(e.into()))?;
    // Sets PR_SET_NO_NEW_PRIVS first.
    seccompiler::apply_filter_all_threads(&program).map_err(SandboxError::Filter)?;
    Ok(Confined {
        mode,
        syscalls: allowed.len(),
        caps,
        namespace,
    })
}

#[cfg(feature = "sandbox")]
fn target_arch() -> Option<seccompiler::TargetArch> {
    if cfg!(target_arch = "x86_64") {
        Some(seccompiler::TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(seccompiler::TargetArch::aarch64)
    } else {
        None
    }
}

#[cfg(feature = "sandbox")]
/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[cfg(feature = "sandbox")]
/// One word of `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(feature = "sandbox")]
/// `_LINUX_CAPABILITY_VERSION_3`: two data words.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[cfg(feature = "sandbox")]
/// Drops every capability outside `keep` from the bounding set (where this
/// process may: it needs CAP_SETPCAP), clears the ambient set, and sets
/// effective = permitted = what it had of `keep`, inheritable = none.
fn drop_capabilities(keep: u64) -> io::Result<()> {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which the
    // capset below removes. EINVAL marks the end of the kernel's caps.
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINVAL) => break,
                // Without CAP_SETPCAP (unprivileged) the bounding set stays;
                // no_new_privs keeps it from mattering.
                Some(libc::EPERM) => break,
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(io::Error::last_os_error());
    }
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version-3 header and two data words, as the kernel expects.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    for (i, word) in data.iter_mut().enumerate() {
        let keep = (keep >> (32 * i)) as u32;
        word.permitted &= keep;
        word.effective &= word.permitted;
        word.inheritable = 0;
    }
    // SAFETY: as above; the kernel only reads the data.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(feature = "sandbox")]
/// The SIGSYS part of `siginfo_t` (`_sigsys` in the kernel's union).
#[repr(C)]
struct SigsysInfo {
    _signo: libc::c_int,
    _errno: libc::c_int,
    _code: libc::c_int,
    /// The union is pointer-aligned.
    _pad: libc::c_int,
    _call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    _arch: libc::c_uint,
}

#[cfg(feature = "sandbox")]
fn install_handler() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO
    // signature and stays valid for the life of the process.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(feature = "sandbox")]
/// A fixed buffer for the message: the handler must not allocate.
struct Message {
    buf: [u8; 128],
    len: usize,
}

#[cfg(feature = "sandbox")]
impl Message {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn number(&mut self, n: i32) {
        let mut digits = [0u8; 11];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.push(b"-");
        }
        self.push(&digits[i..]);
    }
}

#[cfg(feature = "sandbox")]
/// The SIGSYS handler: async-signal-safe (no allocation, no locks; only
/// write(2) and _exit(2), both on every allow-list).
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a SIGSYS siginfo, whose layout SigsysInfo
    // mirrors.
    let nr = unsafe { (*(info as *const SigsysInfo)).syscall };
    let log = LOG_ONLY.load(Ordering::Relaxed);
    let mut m = Message {
        buf: [0; 128],
        len: 0,
    };
    m.push(b"fuselage: sandbox: refused syscall ");
    m.number(nr);
    if let Some(name) = names::name(nr) {
        m.push(b" (");
        m.push(name.as_bytes());
        m.push(b")");
    }
    m.push(if log {
        b": failed with EPERM (--sandbox=log)\n"
    } else {
        b": stopping the server (--sandbox)\n"
    });
    // SAFETY: write(2) of an initialized buffer to stderr.
    unsafe { libc::write(2, m.buf.as_ptr().cast(), m.len) };
    if !log {
        // SAFETY: _exit ends the process without running anything else.
        unsafe { libc::_exit(KILLED_STATUS) };
    }
    // SAFETY: the kernel passes the interrupted thread's ucontext; the
    // syscall's return register is set to -EPERM for when it resumes.
    unsafe { set_return(context.cast(), -libc::EPERM as i64) };
}

/// Sets the return value the trapped syscall appears to return.
///
/// # Safety
///
/// `context` must be the `ucontext_t` the kernel passed to the handler.
#[cfg(all(feature = "sandbox", target_arch = "x86_64"))]
unsafe fn set_return(context: *mut libc::ucontext_t, value: i64) {
    // SAFETY: the caller's promise; REG_RAX is in bounds of gregs.
    unsafe { (*context).uc_mcontext.gregs[libc::REG_RAX as usize] = value };
}

/// Sets the return value the trapped syscall appears to return.
///
/// # Safety
///
/// `context` must be the `ucontext_t` the kernel passed to the handler.
#[cfg(all(feature = "sandbox", target_arch = "aarch64"))]
unsafe fn set_return(context: *mut libc::ucontext_t, value: i64) {
    // SAFETY: the caller's promise; x0 carries the return value.
    unsafe { (*context).uc_mcontext.regs[0] = value as u64 };
}

/// No filter is built on other architectures.
///
/// # Safety
///
/// Never called.
#[cfg(all(
    feature = "sandbox",
    not(any(target_arch = "x86_64", target_arch = "aarch64"))
))]
unsafe fn set_return(_context: *mut libc::ucontext_t, _value: i64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_names_what_was_kept() {
        let c = Confined {
            mode: SeccompMode::Kill,
            syscalls: 58,
            caps: (1 << 21) | 1,
            namespace: false,
        };
        assert_eq!(
            c.word(),
            " sandbox=on(seccomp=kill,syscalls=58,caps=chown+sys_admin,no_new_privs)"
        );
        let c = Confined {
            mode: SeccompMode::Log,
            syscalls: 3,
            caps: 0,
            namespace: false,
        };
        assert_eq!(
            c.word(),
            " sandbox=on(seccomp=log,syscalls=3,caps=none,no_new_privs)"
        );
        let c = Confined {
            namespace: true,
            ..c
        };
        assert_eq!(
            c.word(),
            " sandbox=on(seccomp=log,syscalls=3,caps=none,no_new_privs,mountns=private)"
        );
    }

    #[cfg(feature = "sandbox")]
    #[test]
    fn message_numbers() {
        let mut m = Message {
            buf: [0; 128],
            len: 0,
        };
        m.number(0);
        m.push(b" ");
        m.number(-12);
        m.push(b" ");
        m.number(i32::MIN);
        assert_eq!(&m.buf[..m.len], b"0 -12 -2147483648");
    }
}
