//! A minimal server loop over the simulated device, for tests of the core
//! alone. The real transport is `fuselage-transport-blocking`.

use crate::buf::AlignedBuf;
use crate::channel::{Received, recv_message};
use crate::sink::SocketSink;
use fuselage_core::{Dispatched, Dispatcher, Filesystem, InitConfig};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Request buffer before INIT: room for a 1 MiB WRITE and its headers.
pub const DEFAULT_BUFFER_SIZE: usize = (1 << 20) + 4096;

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeExit {
    /// DESTROY was answered.
    Destroyed,
    /// The kernel end was closed.
    Eof,
}

/// Serves requests from `fd` on the calling thread until DESTROY or until
/// the kernel end closes.
///
/// Each message is read whole into an 8-byte-aligned buffer (1 MiB + 4 KiB
/// until INIT, then [`Negotiated::request_buffer_size`]), dispatched with a
/// [`SocketSink`], and answered with one `sendmsg(2)`. A message larger than
/// the buffer reaches the dispatcher cut to the buffer, so its header's
/// `len` disagrees and it is dropped.
///
/// [`Negotiated::request_buffer_size`]: fuselage_core::Negotiated::request_buffer_size
pub fn run<F: Filesystem>(dispatcher: &Dispatcher<F>, fd: Arc<OwnedFd>) -> io::Result<ServeExit> {
    let mut buf = AlignedBuf::zeroed(DEFAULT_BUFFER_SIZE);
    let mut scratch = vec![0u8; DEFAULT_BUFFER_SIZE];
    loop {
        let n = match recv_message(fd.as_fd(), &mut buf, 0)? {
            Received::Message(n) => n.min(buf.len()),
            Received::Closed => return Ok(ServeExit::Eof),
        };
        let sink = SocketSink::new(Arc::clone(&fd));
        match dispatcher.dispatch(&buf[..n], sink, &mut scratch) {
            Dispatched::Destroyed => return Ok(ServeExit::Destroyed),
            Dispatched::Initialized(negotiated) => {
                let size = negotiated.request_buffer_size();
                buf.resize(size);
                scratch.resize(size, 0);
            }
            _ => {}
        }
    }
}

/// Serves `dispatcher` on a new thread (see [`run`]). Keep an `Arc` clone to
/// look at the filesystem (`dispatcher.filesystem()`) while or after it
/// runs.
pub fn serve_dispatcher<F>(
    dispatcher: Arc<Dispatcher<F>>,
    fd: OwnedFd,
) -> JoinHandle<io::Result<ServeExit>>
where
    F: Filesystem + Send + Sync + 'static,
{
    std::thread::Builder::new()
        .name("fuselage-testkit-serve".into())
        .spawn(move || run(&dispatcher, Arc::new(fd)))
        .expect("spawning the serve thread")
}

/// Serves `fs` with INIT `config` on a new thread until DESTROY or until the
/// kernel end closes (see [`run`]).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use fuselage_testkit::{channel_pair, serve, ServeExit, TestFs};
/// let fs = TestFs::new();
/// let (mut kernel, server_fd) = channel_pair()?;
/// let server = serve(fs.clone(), Default::default(), server_fd);
/// kernel.init().unwrap();
/// let hello = kernel.lookup(1, "hello.txt").unwrap();
/// let open = kernel.open(hello.nodeid, libc::O_RDONLY as u32).unwrap();
/// let data = kernel.read(hello.nodeid, open.fh, 0, 4096).unwrap();
/// assert_eq!(Some(data), fs.file("hello.txt"));
/// kernel.destroy().unwrap();
/// assert_eq!(server.join().unwrap()?, ServeExit::Destroyed);
/// # Ok(()) }
/// ```
pub fn serve<F>(fs: F, config: InitConfig, fd: OwnedFd) -> JoinHandle<io::Result<ServeExit>>
where
    F: Filesystem + Send + Sync + 'static,
{
    serve_dispatcher(Arc::new(Dispatcher::new(fs, config)), fd)
}
