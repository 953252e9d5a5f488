//! Choosing a transport and serving a connection with it.
//!
//! [`serve`] takes a mounted channel and a filesystem and serves until the
//! connection ends. It answers INIT itself (by `read(2)` on the channel, as
//! the kernel requires) and only then picks the loop, so a kernel that does
//! not offer `FUSE_OVER_IO_URING` is served on the same connection by the
//! next transport down instead of being remounted:
//!
//! | asked for | tries, in order | says why it stepped down |
//! |-----------|-----------------|--------------------------|
//! | `auto`    | uring → uring-rw → blocking | [`ServeInfo::fallback`] |
//! | `uring`   | uring only | [`ServeError::Unavailable`] |
//! | `uring-rw`| uring-rw only | [`ServeError::Unavailable`] |
//! | `blocking`| blocking | never |
//!
//! Before INIT, [`probe_uring`] and [`probe_native`] decide whether to ask
//! for `OVER_IO_URING` at all; after INIT the agreed flags decide. Native
//! queues that fail to register (e.g. `enable_uring` switched off between
//! INIT and REGISTER) step down the same way.
//!
//! The transports themselves know nothing of each other: this module (in
//! the `fuselage` crate, which depends on all of them) answers INIT with
//! `fuselage-linux`'s handshake and then hands the connection to one.

use fuselage_core::{Dispatcher, Filesystem, InitConfig, InitFlags, Negotiated};
use fuselage_linux::channel::{Channel, ChannelKind};
use fuselage_linux::handshake;
use fuselage_transport_blocking::{Session, SessionConfig, SessionEnd, SessionError};
use fuselage_transport_uring::native::{self, DEFAULT_DEPTH};
use fuselage_transport_uring::rw::{self, DEFAULT_RW_DEPTH, RwEnd};
use fuselage_transport_uring::{Unavailable, probe_native, probe_uring};
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// Which transport the caller asks for (the binary's `--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The best that works: native, then uring-rw, then blocking.
    Auto,
    /// Native FUSE-over-io_uring, never anything else.
    Uring,
    /// io_uring READ/WRITEV on `/dev/fuse`, never anything else.
    UringRw,
    /// Blocking read/writev threads.
    Blocking,
}

/// The transport that serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Native FUSE-over-io_uring.
    Uring,
    /// io_uring READ/WRITEV on `/dev/fuse`.
    UringRw,
    /// Blocking read/writev.
    Blocking,
}

impl Transport {
    /// The name used on the command line and in the startup line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Uring => "uring",
            Transport::UringRw => "uring-rw",
            Transport::Blocking => "blocking",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to serve.
///
/// `threads` means what it can for each transport: the number of ring
/// threads for uring-rw and of worker threads for blocking. Native io_uring
/// always has one queue thread per possible CPU (a kernel rule); for it the
/// knob is `depth`, the ring entries per queue, i.e. how many requests of
/// one CPU can be in the server at once. The `fuselage` binary maps
/// `--threads N` to `depth = N` when it serves natively.
#[derive(Debug, Clone)]
pub struct UringConfig {
    /// Which transport to use.
    pub choice: Choice,
    /// Ring entries per native queue (1..=256).
    pub depth: usize,
    /// Threads for uring-rw and blocking.
    pub threads: usize,
    /// READs in flight per uring-rw thread (1..=64).
    pub rw_depth: usize,
    /// What to ask the kernel for at INIT (`io_uring` is set as needed).
    pub init: InitConfig,
    /// Refuse every modifying request with EROFS.
    pub read_only: bool,
    /// Send file-range replies by splice where the transport can.
    pub splice: bool,
    /// Native queues only: the poll window, how long a queue thread keeps
    /// polling its ring (yielding the CPU to anything else runnable) after
    /// a request before it sleeps. Zero sleeps at once. Default:
    /// [`native::DEFAULT_POLL`] (50 µs).
    ///
    /// Polling is adaptive: a queue polls only while requests come one or
    /// two at a time within the window of the previous one (latency-bound
    /// callers, where a wakeup per request is most of the round trip), and
    /// sleeps at once after a window without work or after a large batch
    /// (throughput-bound callers). An idle mount spins for at most one
    /// window after its last request. A CPU whose queue thread polls also
    /// never looks idle to the scheduler, which then keeps a woken caller
    /// on its CPU instead of moving it to the idle one.
    pub poll: std::time::Duration,
    /// uring-rw and blocking: pin each thread to one of the CPUs the process
    /// may use (thread i to the i-th), when every thread has its own cloned
    /// `/dev/fuse` fd, so that a request is usually served on its caller's
    /// CPU. Native queues are always pinned (one per CPU). Default: true.
    pub cpu_local: bool,
    /// Test-only: act as if io_uring were refused (`io_uring_setup` failing
    /// with `EPERM`, reported as [`Unavailable::Simulated`]), to exercise the
    /// fallback to blocking. The `fuselage` binary sets it when the
    /// environment variable [`DENY_ENV`] is `1`; tests set it directly.
    /// Default: false.
    pub simulate_uring_refusal: bool,
}

/// Test-only: the environment variable (`FUSELAGE_TEST_DENY_URING=1`) from
/// which the `fuselage` binary sets [`UringConfig::simulate_uring_refusal`].
pub const DENY_ENV: &str = "FUSELAGE_TEST_DENY_URING";

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            choice: Choice::Auto,
            depth: DEFAULT_DEPTH,
            threads: fuselage_linux::sys::usable_cpus(),
            rw_depth: DEFAULT_RW_DEPTH,
            init: InitConfig::default(),
            read_only: false,
            splice: true,
            poll: native::DEFAULT_POLL,
            cpu_local: true,
            simulate_uring_refusal: false,
        }
    }
}

/// What serves, known once INIT is answered (for the startup line).
#[derive(Debug, Clone, Copy)]
pub struct ServeInfo {
    /// The transport serving.
    pub transport: Transport,
    /// Threads serving requests: native queues (one per possible CPU),
    /// uring-rw ring threads, or blocking workers.
    pub threads: usize,
    /// Native ring entries per queue, or uring-rw READs per thread (0 for
    /// blocking).
    pub depth: usize,
    /// Why automatic selection stepped down, if it did.
    pub fallback: Option<Unavailable>,
    /// What INIT agreed.
    pub negotiated: Negotiated,
}

/// Why serving failed.
#[derive(Debug)]
pub enum ServeError {
    /// The requested io_uring transport cannot be used (no fallback was
    /// allowed).
    Unavailable(Unavailable),
    /// The blocking session (INIT, or the fallback) failed.
    Session(SessionError),
    /// Serving over io_uring failed.
    Io(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Unavailable(u) => write!(f, "cannot use io_uring: {u}"),
            ServeError::Session(e) => write!(f, "{e}"),
            ServeError::Io(e) => write!(f, "serving over io_uring failed: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<SessionError> for ServeError {
    fn from(e: SessionError) -> Self {
        ServeError::Session(e)
    }
}

/// Decides, before anything is mounted, whether `config.choice` can work
/// here: `Ok(None)` go ahead, `Ok(Some(reason))` auto will step down for this
/// reason, `Err(reason)` a forced io_uring transport cannot work.
pub fn preflight(config: &UringConfig) -> Result<Option<Unavailable>, Unavailable> {
    let simulate = config.simulate_uring_refusal;
    match config.choice {
        Choice::Blocking => Ok(None),
        Choice::Uring => native_probe(simulate).map(|()| None),
        Choice::UringRw => uring_probe(simulate).map(|()| None),
        Choice::Auto => Ok(native_probe(simulate).err()),
    }
}

/// [`probe_uring`], or the simulated refusal.
fn uring_probe(simulate: bool) -> Result<(), Unavailable> {
    if simulate {
        return Err(Unavailable::Simulated);
    }
    probe_uring()
}

/// [`probe_native`], or the simulated refusal.
fn native_probe(simulate: bool) -> Result<(), Unavailable> {
    if simulate {
        return Err(Unavailable::Simulated);
    }
    probe_native()
}

/// Serves `fs` on `channel` (a mounted `/dev/fuse` fd or a socket) until the
/// connection ends, with the transport `config.choice` allows; `ready` is
/// called once, after INIT, with what serves.
pub fn serve<F: Filesystem + Send + Sync + 'static>(
    channel: Channel,
    fs: F,
    config: &UringConfig,
    ready: impl FnOnce(&ServeInfo),
) -> Result<SessionEnd, ServeError> {
    let device = channel.kind() == ChannelKind::Device;
    let simulate = config.simulate_uring_refusal;
    let blocking_config = SessionConfig {
        threads: config.threads.max(1),
        init: config.init,
        read_only: config.read_only,
        splice: config.splice,
        cpu_local: config.cpu_local,
    };
    // What can work, before INIT.
    let (native, rw): (Result<(), Unavailable>, Result<(), Unavailable>) = match config.choice {
        Choice::Blocking => (Err(Unavailable::NotOffered), Err(Unavailable::NotOffered)),
        _ if !device => (Err(Unavailable::NotADevice), Err(Unavailable::NotADevice)),
        Choice::Uring => (native_probe(simulate), Err(Unavailable::NotOffered)),
        Choice::UringRw => (Err(Unavailable::NotOffered), uring_probe(simulate)),
        Choice::Auto => (native_probe(simulate), uring_probe(simulate)),
    };
    match config.choice {
        Choice::Uring => native.map_err(ServeError::Unavailable)?,
        Choice::UringRw => rw.map_err(ServeError::Unavailable)?,
        _ => {}
    }
    if config.choice == Choice::Blocking || (native.is_err() && rw.is_err()) {
        let fallback = if config.choice == Choice::Auto {
            rw.err()
        } else {
            None
        };
        let session = Session::new(channel, fs, blocking_config);
        return session
            .run_with(|info| {
                ready(&ServeInfo {
                    transport: Transport::Blocking,
                    threads: info.threads,
                    depth: 0,
                    fallback,
                    negotiated: info.negotiated,
                })
            })
            .map_err(ServeError::Session);
    }

    let mut init = config.init;
    init.io_uring = native.is_ok();
    let dispatcher = Arc::new(Dispatcher::new(fs, init).with_read_only(config.read_only));
    let channel = Arc::new(channel);
    let neg = handshake(&channel, &dispatcher, init.max_write).map_err(SessionError::from)?;

    // Native, if INIT agreed it.
    let mut fallback = native.err();
    if native.is_ok() {
        if neg.has(InitFlags::OVER_IO_URING) {
            let (queues, registered) = native::start(
                channel.fd().as_raw_fd(),
                &dispatcher,
                &neg,
                config.depth,
                config.poll,
            )
            .map_err(ServeError::Unavailable)?;
            match registered {
                Ok(()) => {
                    ready(&ServeInfo {
                        transport: Transport::Uring,
                        threads: queues.len(),
                        depth: queues.depth,
                        fallback: None,
                        negotiated: neg,
                    });
                    // FORGET, INTERRUPT and whatever arrived before the rings
                    // were live come through /dev/fuse: the native transport
                    // reads them itself, then stops the queues.
                    let end = queues
                        .serve_device(&channel, &dispatcher, &neg, config.splice)
                        .map_err(ServeError::Io)?;
                    return Ok(session_end(end));
                }
                Err(u) => {
                    if config.choice == Choice::Uring {
                        // Entries that did register are given back at teardown.
                        return Err(ServeError::Unavailable(u));
                    }
                    // Queues that registered stay idle until teardown; the
                    // connection goes on over /dev/fuse.
                    let end = step_down(
                        Initialized {
                            channel: &channel,
                            dispatcher: &dispatcher,
                            neg: &neg,
                        },
                        config,
                        &blocking_config,
                        rw,
                        Some(u),
                        ready,
                    );
                    queues.stop_and_join();
                    return end;
                }
            }
        }
        if config.choice == Choice::Uring {
            return Err(ServeError::Unavailable(Unavailable::NotOffered));
        }
        fallback = Some(Unavailable::NotOffered);
    }
    step_down(
        Initialized {
            channel: &channel,
            dispatcher: &dispatcher,
            neg: &neg,
        },
        config,
        &blocking_config,
        rw,
        fallback,
        ready,
    )
}

/// A connection whose INIT is answered: what every step down serves.
struct Initialized<'a, F> {
    channel: &'a Arc<Channel>,
    dispatcher: &'a Arc<Dispatcher<F>>,
    neg: &'a Negotiated,
}

/// Serves an initialized connection with uring-rw if it works, else
/// blocking.
fn step_down<F: Filesystem + Send + Sync + 'static>(
    conn: Initialized<'_, F>,
    config: &UringConfig,
    blocking: &SessionConfig,
    rw: Result<(), Unavailable>,
    fallback: Option<Unavailable>,
    ready: impl FnOnce(&ServeInfo),
) -> Result<SessionEnd, ServeError> {
    let Initialized {
        channel,
        dispatcher,
        neg,
    } = conn;
    let fallback = if config.choice == Choice::Auto {
        fallback
    } else {
        None
    };
    match rw {
        Ok(()) => {
            ready(&ServeInfo {
                transport: Transport::UringRw,
                threads: config.threads.max(1),
                depth: config.rw_depth.clamp(1, 64),
                fallback,
                negotiated: *neg,
            });
            let end = rw::run(
                channel.clone(),
                dispatcher.clone(),
                neg,
                config.threads,
                config.rw_depth,
                config.splice,
                config.cpu_local,
            )
            .map_err(ServeError::Io)?;
            Ok(session_end(end))
        }
        Err(why) => {
            let fallback = if config.choice == Choice::Auto {
                fallback.or(Some(why))
            } else {
                None
            };
            let session = reader_session(channel, dispatcher, blocking, blocking.threads)?;
            session
                .run_initialized(*neg, |info| {
                    ready(&ServeInfo {
                        transport: Transport::Blocking,
                        threads: info.threads,
                        depth: 0,
                        fallback,
                        negotiated: *neg,
                    })
                })
                .map_err(ServeError::Session)
        }
    }
}

/// How an io_uring transport's end reads as a session's end.
fn session_end(end: RwEnd) -> SessionEnd {
    match end {
        RwEnd::Unmounted => SessionEnd::Unmounted,
        RwEnd::Destroyed => SessionEnd::Destroyed,
    }
}

/// A blocking session on a duplicate of the channel, sharing `dispatcher`.
fn reader_session<F: Filesystem + Send + Sync + 'static>(
    channel: &Arc<Channel>,
    dispatcher: &Arc<Dispatcher<F>>,
    config: &SessionConfig,
    threads: usize,
) -> Result<Session<F>, ServeError> {
    let dup = channel.try_clone().map_err(ServeError::Io)?;
    Ok(Session::with_dispatcher(
        dup,
        dispatcher.clone(),
        SessionConfig {
            threads,
            ..config.clone()
        },
    ))
}
