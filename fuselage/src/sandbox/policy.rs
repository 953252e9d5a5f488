//! Which syscalls a confined server may make: one list per feature, so the
//! allow-list is the union of exactly the features the mount uses.
//!
//! The lists were derived by running the e2e suite's `sandbox_*` rows (every
//! backend on every transport) with `--sandbox=log`, which names every
//! refusal on stderr, for the glibc build and for a musl build (which makes
//! `stat`, `lstat` and `open` where glibc makes `statx` and `openat`); a
//! syscall is listed in the feature whose code makes it.

use libc::c_long;

/// What the mount uses, as far as the allow-list and the capabilities care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// An io_uring transport may serve (native or uring-rw).
    pub uring: bool,
    /// The backend works on host files (passthrough, overlay layers, host
    /// routes, or a backend of unknown needs).
    pub host_files: bool,
    /// Kernel passthrough may register backing files (FUSE_DEV_IOC_BACKING_OPEN
    /// needs CAP_SYS_ADMIN).
    pub kernel_passthrough: bool,
    /// `--cache always` watches the host (fanotify or inotify).
    pub watch: bool,
    /// The server unmounts by itself on SIGTERM (no auto-unmount watchdog
    /// to do it): umount2 and CAP_SYS_ADMIN stay.
    pub unmount: bool,
    /// `NOTIFY_SOCKET` is set: READY=1 and STOPPING=1 are sent by datagram.
    pub notify: bool,
}

/// Every server: memory, threads, signals, time, and the FUSE device
/// (read/writev, splice, per-thread clones by ioctl).
const BASE: &[c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_close,
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_splice,
    libc::SYS_ppoll,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_prctl,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_setaffinity,
    libc::SYS_getrandom,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_uname,
    // A caller's /proc/PID/ns/user, for its setid privileges.
    libc::SYS_readlinkat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_readlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fstat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_nanosleep,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
    // musl's stat and lstat (std uses statx only with glibc).
    #[cfg(target_arch = "x86_64")]
    libc::SYS_stat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lstat,
];

/// The io_uring transports (native and uring-rw).
const URING: &[c_long] = &[
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_eventfd2,
];

/// Host files: the passthrough backend (also under overlay and routes).
const HOST: &[c_long] = &[
    libc::SYS_openat2,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_unlinkat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_utimensat,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_getdents64,
    libc::SYS_copy_file_range,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_flock,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    // Acting as the caller: per-thread fs credentials, umask and
    // capabilities (unshare(CLONE_FS) gives each worker its own umask).
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_unshare,
    libc::SYS_umask,
    libc::SYS_capget,
    libc::SYS_capset,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_renameat,
];

/// `--cache always`: the host watcher.
const WATCH: &[c_long] = &[
    libc::SYS_fanotify_init,
    libc::SYS_fanotify_mark,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_eventfd2,
];

/// Unmounting on SIGTERM by the server itself.
const UNMOUNT: &[c_long] = &[libc::SYS_umount2];

/// sd_notify datagrams.
const NOTIFY: &[c_long] = &[libc::SYS_socket, libc::SYS_sendto];

/// One past the highest syscall number the lists hold (x86_64 and aarch64
/// numbers are all below it), checked at compile time.
const NR_LIMIT: usize = 512;

/// Whether every number in `list` is in `0..NR_LIMIT`.
const fn below_limit(list: &[c_long]) -> bool {
    let mut i = 0;
    while i < list.len() {
        if list[i] < 0 || list[i] as usize >= NR_LIMIT {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = assert!(
    below_limit(BASE)
        && below_limit(URING)
        && below_limit(HOST)
        && below_limit(WATCH)
        && below_limit(UNMOUNT)
        && below_limit(NOTIFY)
);

/// The allow-list for `needs`, sorted and without duplicates.
///
/// Gathered in a bitmap rather than sorted: the static binary then carries
/// no sorting code for it.
pub fn syscalls(needs: &Needs) -> Vec<c_long> {
    let mut set = [0u64; NR_LIMIT / 64];
    for (on, list) in [
        (true, BASE),
        (needs.uring, URING),
        (needs.host_files, HOST),
        (needs.watch, WATCH),
        (needs.unmount, UNMOUNT),
        (needs.notify, NOTIFY),
    ] {
        if on {
            for &nr in list {
                // Below NR_LIMIT: checked at compile time above.
                let nr = nr as usize;
                set[nr / 64] |= 1 << (nr % 64);
            }
        }
    }
    (0..NR_LIMIT)
        .filter(|&nr| set[nr / 64] & (1 << (nr % 64)) != 0)
        .map(|nr| nr as c_long)
        .collect()
}

/// Capabilities (numbers as in `linux/capability.h`) the mount needs; all
/// others are dropped from every set and from the bounding set.
pub fn capabilities(needs: &Needs) -> u64 {
    const CHOWN: u32 = 0;
    const DAC_OVERRIDE: u32 = 1;
    const DAC_READ_SEARCH: u32 = 2;
    const FOWNER: u32 = 3;
    const FSETID: u32 = 4;
    const SETGID: u32 = 6;
    const SETUID: u32 = 7;
    const MKNOD: u32 = 27;
    const SETFCAP: u32 = 31;
    const SYS_ADMIN: u32 = 21;
    let mut caps = 0u64;
    if needs.host_files {
        // Serving host files as their callers (virtiofsd's default set, plus
        // DAC_READ_SEARCH for open_by_handle_at).
        for cap in [
            CHOWN,
            DAC_OVERRIDE,
            DAC_READ_SEARCH,
            FOWNER,
            FSETID,
            SETGID,
            SETUID,
            MKNOD,
            SETFCAP,
        ] {
            caps |= 1 << cap;
        }
    }
    // BACKING_OPEN, a fanotify mark on a whole filesystem, umount2.
    if needs.kernel_passthrough || needs.watch || needs.unmount {
        caps |= 1 << SYS_ADMIN;
    }
    caps
}

/// Short names of capabilities, for the startup line.
pub fn capability_name(cap: u32) -> &'static str {
    match cap {
        0 => "chown",
        1 => "dac_override",
        2 => "dac_read_search",
        3 => "fowner",
        4 => "fsetid",
        6 => "setgid",
        7 => "setuid",
        21 => "sys_admin",
        27 => "mknod",
        31 => "setfcap",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_the_union_of_the_features() {
        let memfs = syscalls(&Needs::default());
        assert!(memfs.contains(&libc::SYS_read));
        assert!(!memfs.contains(&libc::SYS_io_uring_enter));
        assert!(!memfs.contains(&libc::SYS_openat2));
        assert!(!memfs.contains(&libc::SYS_umount2));
        let host = syscalls(&Needs {
            uring: true,
            host_files: true,
            ..Needs::default()
        });
        assert!(host.contains(&libc::SYS_io_uring_enter) && host.contains(&libc::SYS_setfsuid));
        assert!(!host.contains(&libc::SYS_fanotify_init));
        assert!(host.windows(2).all(|w| w[0] < w[1]));
        // Everything on: exactly the sorted union of the lists.
        let all = syscalls(&Needs {
            uring: true,
            host_files: true,
            watch: true,
            unmount: true,
            notify: true,
            ..Needs::default()
        });
        let mut want: Vec<c_long> = [BASE, URING, HOST, WATCH, UNMOUNT, NOTIFY].concat();
        want.sort_unstable();
        want.dedup();
        assert_eq!(all, want);
        assert_eq!(capabilities(&Needs::default()), 0);
        assert_eq!(
            capabilities(&Needs {
                kernel_passthrough: true,
                ..Needs::default()
            }),
            1 << 21
        );
    }
}
