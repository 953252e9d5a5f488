//! The kernel's end of a sandbox channel, for tests that play the kernel to
//! `fuselage mount /dev/fd/N` over a connected unix socket: both framings
//! (`SOCK_SEQPACKET` through `fuselage_testkit::SimKernel`, `SOCK_STREAM`
//! framed by the length in each header), a driver that numbers requests,
//! and the server's spawning.
#![allow(dead_code)]

use crate::common::*;
use fuselage::core::abi::*;
use fuselage_testkit::{Reply, SimKernel, channel_pair, encode_request};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The kernel's end of the channel, whatever its framing.
pub trait KernelEnd {
    /// Sends one request.
    fn send(&mut self, header: &fuse_in_header, arg: &[u8], payload: &[&[u8]]);
    /// Receives one reply (bounded by the socket's receive timeout).
    fn recv(&mut self) -> Reply;
    /// Sends `msg` as it is (one message; on a stream, its bytes).
    fn send_raw(&mut self, msg: &[u8]);
    /// Waits at most `timeout` for one message and returns its bytes,
    /// unchecked; `None` when nothing came.
    fn poll_raw(&mut self, timeout: Duration) -> Option<Vec<u8>>;
}

impl KernelEnd for SimKernel {
    fn send(&mut self, header: &fuse_in_header, arg: &[u8], payload: &[&[u8]]) {
        self.send_request(header, arg, payload)
            .expect("send a request on the SOCK_SEQPACKET channel");
    }
    fn recv(&mut self) -> Reply {
        self.recv_reply()
            .expect("a reply on the SOCK_SEQPACKET channel")
    }
    fn send_raw(&mut self, msg: &[u8]) {
        SimKernel::send_raw(self, msg).expect("send a message on the SOCK_SEQPACKET channel");
    }
    fn poll_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        readable(self.as_fd().as_raw_fd(), timeout).then(|| {
            self.recv_raw()
                .expect("a message on the SOCK_SEQPACKET channel")
        })
    }
}

/// Whether `fd` becomes readable within `timeout`.
fn readable(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the call's duration.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    n > 0
}

/// A SOCK_STREAM kernel end: messages are framed by their header's length.
pub struct StreamKernel(pub UnixStream);

impl StreamKernel {
    fn read_message(&mut self) -> Vec<u8> {
        let mut head = [0u8; 16];
        self.0
            .read_exact(&mut head)
            .expect("a reply header on the SOCK_STREAM channel");
        let len = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        assert!(
            (16..=16 << 20).contains(&len),
            "implausible reply length {len}"
        );
        let mut msg = head.to_vec();
        msg.resize(len, 0);
        self.0
            .read_exact(&mut msg[16..])
            .expect("a reply body on the SOCK_STREAM channel");
        msg
    }
}

impl KernelEnd for StreamKernel {
    fn send(&mut self, header: &fuse_in_header, arg: &[u8], payload: &[&[u8]]) {
        let msg = encode_request(header, arg, payload);
        self.send_raw(&msg);
    }
    fn recv(&mut self) -> Reply {
        let msg = self.read_message();
        Reply::parse(&msg).unwrap_or_else(|e| panic!("a reply the kernel would refuse: {e:?}"))
    }
    fn send_raw(&mut self, msg: &[u8]) {
        self.0
            .write_all(msg)
            .expect("send on the SOCK_STREAM channel");
    }
    fn poll_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        readable(self.0.as_raw_fd(), timeout).then(|| self.read_message())
    }
}

/// Drives requests one at a time over a [`KernelEnd`]; notifications that
/// arrive meanwhile are set aside in `notifications`.
pub struct Driver<K> {
    pub kernel: K,
    pub unique: u64,
    pub notifications: Vec<Reply>,
}

impl<K: KernelEnd> Driver<K> {
    /// A driver whose first request has unique 2.
    pub fn new(kernel: K) -> Self {
        Driver {
            kernel,
            unique: 0,
            notifications: Vec::new(),
        }
    }

    /// The next reply (notifications set aside).
    pub fn recv(&mut self) -> Reply {
        loop {
            let r = self.kernel.recv();
            if !r.is_notification() {
                return r;
            }
            self.notifications.push(r);
        }
    }

    /// The next reply within `timeout` (notifications set aside), parsed
    /// and checked as the kernel would; `None` when none came.
    pub fn poll(&mut self, timeout: Duration) -> Option<Reply> {
        loop {
            let msg = self.kernel.poll_raw(timeout)?;
            let r = Reply::parse(&msg)
                .unwrap_or_else(|e| panic!("a message the kernel would refuse: {e:?}"));
            if !r.is_notification() {
                return Some(r);
            }
            self.notifications.push(r);
        }
    }

    /// The header of a request with the next unique, with this process's
    /// credentials where the kernel sends them.
    pub fn header(&mut self, opcode: u32, nodeid: u64) -> fuse_in_header {
        self.unique += 2;
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let creds = !matches!(
            opcode,
            FUSE_INIT | FUSE_FORGET | FUSE_RELEASE | FUSE_DESTROY
        );
        fuse_in_header {
            opcode,
            unique: self.unique,
            nodeid,
            uid: if creds { uid } else { 0 },
            gid: if creds { gid } else { 0 },
            pid: if creds { std::process::id() } else { 0 },
            ..Default::default()
        }
    }

    /// Sends a request with the next unique; returns the unique.
    pub fn send(&mut self, opcode: u32, nodeid: u64, arg: &[u8], payload: &[&[u8]]) -> u64 {
        let header = self.header(opcode, nodeid);
        self.kernel.send(&header, arg, payload);
        self.unique
    }

    /// Sends a request and returns its reply, checking the unique.
    pub fn call(&mut self, opcode: u32, nodeid: u64, arg: &[u8], payload: &[&[u8]]) -> Reply {
        let unique = self.send(opcode, nodeid, arg, payload);
        let reply = self.recv();
        assert_eq!(
            reply.unique(),
            unique,
            "reply to opcode {opcode} answers another request: {reply:?}"
        );
        reply
    }

    /// Like `call`, expecting success and decoding the body.
    pub fn ok<T: zerocopy::FromBytes>(
        &mut self,
        opcode: u32,
        nodeid: u64,
        arg: &[u8],
        payload: &[&[u8]],
    ) -> T {
        let r = self.call(opcode, nodeid, arg, payload);
        assert_eq!(
            r.errno(),
            None,
            "opcode {opcode} failed: {}",
            errno_name(r.errno().unwrap_or(0))
        );
        r.decode()
            .unwrap_or_else(|e| panic!("opcode {opcode}: reply body {e:?}"))
    }
}

/// Spawns `fuselage mount [--source DIR] [extra] /dev/fd/N` with `server`
/// as fd N (close-on-exec cleared in the child only).
pub fn spawn_server(
    backend: Backend,
    server: &OwnedFd,
    scratch: &Path,
    extra: &[&str],
) -> (ServerProcess, String) {
    let fd = server.as_raw_fd();
    let path = format!("/dev/fd/{fd}");
    let mut cmd = Command::new(fuselage_bin());
    cmd.arg("mount");
    if backend == Backend::Passthrough {
        let src: PathBuf = scratch.join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        cmd.arg("--source").arg(src);
    }
    cmd.args(extra);
    cmd.arg(&path);
    // SAFETY: the closure runs between fork and exec and only calls fcntl,
    // which is async-signal-safe; `fd` is open in the parent, hence in the
    // child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (ServerProcess::spawn(cmd), path)
}

/// A SOCK_SEQPACKET channel: the simulated kernel and the server's end.
pub fn seqpacket_channel() -> (SimKernel, OwnedFd) {
    channel_pair().expect("socketpair")
}

/// A SOCK_STREAM channel: the kernel's end (10 s receive timeout) and the
/// server's end.
pub fn stream_channel() -> (StreamKernel, OwnedFd) {
    let (kernel, server_end) = UnixStream::pair().expect("socketpair");
    kernel
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("SO_RCVTIMEO");
    (StreamKernel(kernel), OwnedFd::from(server_end))
}

/// INIT's argument as Linux 6.18 sends it: this protocol version, 128 KiB of
/// readahead and every flag the kernel offers (`fuselage_testkit::OFFERED_FLAGS`).
pub fn linux_init_in() -> fuse_init_in {
    let (flags, flags2) = fuselage_testkit::OFFERED_FLAGS.to_wire();
    fuse_init_in {
        major: FUSE_KERNEL_VERSION,
        minor: FUSE_KERNEL_MINOR_VERSION,
        max_readahead: 128 * 1024,
        flags,
        flags2,
        unused: [0; 11],
    }
}
