//! io_uring transports (see issue: native FUSE-over-io_uring and uring read/write).
