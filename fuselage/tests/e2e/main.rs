//! End-to-end tests of the `fuselage` binary: every scenario in
//! [`scenarios`] runs against every row (backend × transport) listed in the
//! `e2e_suite!` invocation at the bottom. Adding a row is one line there.
//!
//! Each test mounts its own filesystem in a temporary directory (see
//! `common::MountedFs`), and needs root and /dev/fuse; without them it
//! prints `skipped: ...`, unless `FUSELAGE_REQUIRE_FUSE=1`, which makes it
//! fail instead. The native io_uring rows switch the kernel's `enable_uring`
//! on when it is off (as root) and say so in one line.

#[path = "../common/mod.rs"]
mod common;
mod scenarios;

/// Instantiates one `#[test]` per scenario for a row.
macro_rules! scenario_tests {
    ($setup:expr; $($scenario:ident),+ $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                // Native io_uring rows also need the kernel's enable_uring
                // switch, which the test turns on when it may.
                let ready = if $setup.transport == "uring" {
                    $crate::common::require_native_uring()
                } else {
                    $crate::common::require_fuse()
                };
                if ready {
                    $crate::scenarios::$scenario(&$setup);
                }
            }
        )+
    };
}

/// One module per row, each with every scenario.
macro_rules! e2e_suite {
    ($($row:ident: $setup:expr),+ $(,)?) => {
        $(
            mod $row {
                #[allow(unused_imports)]
                use $crate::common::{Backend, Setup};

                const SETUP: Setup = $setup;

                scenario_tests!(SETUP;
                    mounted_line,
                    create_write_read,
                    append,
                    truncate,
                    rename,
                    hard_link,
                    symlink,
                    readdir_10000,
                    xattr,
                    chmod_chown_utimens,
                    statfs,
                    mmap,
                    fsync,
                    large_file_256m,
                    concurrent_8_threads,
                    sparse_seek,
                    punch_hole,
                    mkdir_rmdir,
                    unlink_while_open,
                    enospc,
                    enospc_host,
                    emfile,
                    killed_lock_waiter,
                    lock_handover_on_one_cpu,
                    permissions_non_root,
                    ownership,
                    setid_bits_like_tmpfs,
                    read_only,
                    sigterm_with_open_files,
                    sigkill_during_read,
                    sigkill_during_write,
                    remount_after_sigkill,
                    fusectl_abort,
                    host_unmount_ends_the_server,
                    no_auto_unmount,
                    unprivileged_fusermount3,
                    user_namespace,
                    error_missing_mountpoint,
                    error_mountpoint_is_file,
                    error_already_mounted,
                    error_unknown_option,
                );
            }
        )+
    };
}

e2e_suite!(
    memfs_blocking: Setup { backend: Backend::Memfs, transport: "blocking", options: &[] },
    memfs_uring: Setup { backend: Backend::Memfs, transport: "uring", options: &[] },
    memfs_uring_rw: Setup { backend: Backend::Memfs, transport: "uring-rw", options: &[] },
    passthrough_blocking: Setup { backend: Backend::Passthrough, transport: "blocking", options: &[] },
    passthrough_uring: Setup { backend: Backend::Passthrough, transport: "uring", options: &[] },
    passthrough_uring_rw: Setup { backend: Backend::Passthrough, transport: "uring-rw", options: &[] },
    passthrough_nokernel_blocking: Setup { backend: Backend::PassthroughNoKernel, transport: "blocking", options: &[] },
    passthrough_nokernel_uring: Setup { backend: Backend::PassthroughNoKernel, transport: "uring", options: &[] },
    passthrough_nokernel_uring_rw: Setup { backend: Backend::PassthroughNoKernel, transport: "uring-rw", options: &[] },
    // Native queues that never poll their rings (the other rows poll
    // adaptively, the default).
    memfs_uring_nopoll: Setup { backend: Backend::Memfs, transport: "uring", options: &["--poll-us", "0"] },
    passthrough_nokernel_uring_nopoll: Setup { backend: Backend::PassthroughNoKernel, transport: "uring", options: &["--poll-us", "0"] },
    overlay_blocking: Setup { backend: Backend::Overlay, transport: "blocking", options: &[] },
    overlay_uring: Setup { backend: Backend::Overlay, transport: "uring", options: &[] },
    overlay_uring_rw: Setup { backend: Backend::Overlay, transport: "uring-rw", options: &[] },
    router_blocking: Setup { backend: Backend::Router, transport: "blocking", options: &[] },
    router_uring: Setup { backend: Backend::Router, transport: "uring", options: &[] },
    router_uring_rw: Setup { backend: Backend::Router, transport: "uring-rw", options: &[] },
    // --sandbox: the server confined once mounted (seccomp, capabilities).
    sandbox_memfs_blocking: Setup { backend: Backend::Memfs, transport: "blocking", options: &["--sandbox"] },
    sandbox_memfs_uring: Setup { backend: Backend::Memfs, transport: "uring", options: &["--sandbox"] },
    sandbox_memfs_uring_rw: Setup { backend: Backend::Memfs, transport: "uring-rw", options: &["--sandbox"] },
    sandbox_passthrough_blocking: Setup { backend: Backend::Passthrough, transport: "blocking", options: &["--sandbox"] },
    sandbox_passthrough_uring: Setup { backend: Backend::Passthrough, transport: "uring", options: &["--sandbox"] },
    sandbox_passthrough_uring_rw: Setup { backend: Backend::Passthrough, transport: "uring-rw", options: &["--sandbox"] },
    sandbox_passthrough_nokernel_blocking: Setup { backend: Backend::PassthroughNoKernel, transport: "blocking", options: &["--sandbox"] },
    sandbox_passthrough_nokernel_uring: Setup { backend: Backend::PassthroughNoKernel, transport: "uring", options: &["--sandbox"] },
    sandbox_passthrough_nokernel_uring_rw: Setup { backend: Backend::PassthroughNoKernel, transport: "uring-rw", options: &["--sandbox"] },
    sandbox_overlay_blocking: Setup { backend: Backend::Overlay, transport: "blocking", options: &["--sandbox"] },
    sandbox_overlay_uring: Setup { backend: Backend::Overlay, transport: "uring", options: &["--sandbox"] },
    sandbox_overlay_uring_rw: Setup { backend: Backend::Overlay, transport: "uring-rw", options: &["--sandbox"] },
    sandbox_router_blocking: Setup { backend: Backend::Router, transport: "blocking", options: &["--sandbox"] },
    sandbox_router_uring: Setup { backend: Backend::Router, transport: "uring", options: &["--sandbox"] },
    sandbox_router_uring_rw: Setup { backend: Backend::Router, transport: "uring-rw", options: &["--sandbox"] },
    // --sandbox-namespace: confined as above, in a private mount namespace
    // whose root is an empty tmpfs with /proc.
    sandboxns_memfs_blocking: Setup { backend: Backend::Memfs, transport: "blocking", options: &["--sandbox-namespace"] },
    sandboxns_memfs_uring: Setup { backend: Backend::Memfs, transport: "uring", options: &["--sandbox-namespace"] },
    sandboxns_passthrough_uring: Setup { backend: Backend::Passthrough, transport: "uring", options: &["--sandbox-namespace"] },
    sandboxns_passthrough_nokernel_blocking: Setup { backend: Backend::PassthroughNoKernel, transport: "blocking", options: &["--sandbox-namespace"] },
    sandboxns_overlay_uring: Setup { backend: Backend::Overlay, transport: "uring", options: &["--sandbox-namespace"] },
    sandboxns_router_uring_rw: Setup { backend: Backend::Router, transport: "uring-rw", options: &["--sandbox-namespace"] },
);
