//! Which backend serves a mount: registered backends in the order they were
//! registered, then the stock ones.
//!
//! An embedder adds a backend of its own (encrypted, network-backed, ...)
//! without forking the binary: it registers a *claim*, a function that looks
//! at the mount's specification ([`MountSpec`]: the parsed `fuselage mount`
//! options, `--source` first among them) and either declines (`None`) or
//! builds the backend. For each mount the first claim that accepts serves
//! it; when none does, the stock backends decide exactly as the `fuselage`
//! binary does (an overlay for `--lower`, the host passthrough for
//! `--source`, the in-memory filesystem otherwise). Whatever serves the
//! root, `--route` places stock backends over it, and every transport,
//! fallback and startup line works the same.
//!
//! ```no_run
//! use fuselage::registry::{Backend, Registry};
//! use fuselage::backends::memfs::{MemFs, MemFsConfig};
//!
//! let mut registry = Registry::new();
//! // `--source scratch:` asks for a small in-memory filesystem.
//! registry.register("scratch", |spec| {
//!     (spec.source_str()? == "scratch:").then(|| {
//!         let fs = MemFs::new(MemFsConfig { capacity_bytes: 1 << 20, ..MemFsConfig::default() });
//!         Ok(Backend::new("scratch", fs))
//!     })
//! });
//! let args = match fuselage::cli::parse(["mount", "--source", "scratch:", "/mnt/x"].map(String::from)) {
//!     Ok(fuselage::cli::Command::Mount(args)) => args,
//!     _ => unreachable!(),
//! };
//! registry.serve(&args).unwrap();
//! ```
//!
//! `examples/registry.rs` registers a complete custom backend.

use crate::cli::MountArgs;
use crate::serve::{ServeError, Served};
use std::error::Error;
use std::fmt;
use std::path::Path;

/// A backend a claim built, ready to mount and serve.
pub struct Backend {
    name: String,
    run: ServeOnce,
}

/// Mounts and serves a built backend once: `(options, on_ready)`.
type ServeOnce = Box<dyn FnOnce(&MountArgs, &mut dyn FnMut()) -> Result<(), ServeError> + Send>;

impl Backend {
    /// Wraps `fs` under `name` (the startup line's `backend=` word and the
    /// mount's default subtype).
    pub fn new<F: Served>(name: impl Into<String>, fs: F) -> Backend {
        let name = name.into();
        let backend = name.clone();
        Backend {
            name,
            run: Box::new(move |args, on_ready| {
                crate::serve::serve_routed(args, fs, &backend, on_ready)
            }),
        }
    }

    /// A stock backend whose routes are already in place (the binary's
    /// own backends: one [`StockRoot`](fuselage_backends::stock::StockRoot)
    /// type, so the transports are compiled once for all of them).
    pub(crate) fn stock(name: &str, fs: fuselage_backends::stock::StockRoot) -> Backend {
        let backend = name.to_string();
        Backend {
            name: backend.clone(),
            run: Box::new(move |args, on_ready| {
                crate::serve::serve_fs(args, fs, &backend, on_ready)
            }),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mounts (or adopts the `/dev/fd/N` channel) and serves until the
    /// filesystem is unmounted; `on_ready` runs once the mount is live.
    pub fn serve(self, args: &MountArgs, on_ready: &mut dyn FnMut()) -> Result<(), ServeError> {
        (self.run)(args, on_ready)
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend").field("name", &self.name).finish()
    }
}

/// What a mount asks for, as a claim sees it.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec<'a> {
    args: &'a MountArgs,
}

impl<'a> MountSpec<'a> {
    /// The specification of the mount `args` describe.
    pub fn new(args: &'a MountArgs) -> MountSpec<'a> {
        MountSpec { args }
    }

    /// `--source` (or the mount.fuse form's SOURCE) as given.
    pub fn source(&self) -> Option<&'a Path> {
        self.args.source.as_deref()
    }

    /// `--source` as UTF-8 text, for claims that match a scheme such as
    /// `sftp://` or `enc:`.
    pub fn source_str(&self) -> Option<&'a str> {
        self.source().and_then(Path::to_str)
    }

    /// Whether the mount is read-only.
    pub fn read_only(&self) -> bool {
        self.args.read_only
    }

    /// Every option of the mount.
    pub fn args(&self) -> &'a MountArgs {
        self.args
    }
}

/// Why a claim that accepted a mount could not build its backend.
pub type ClaimError = Box<dyn Error + Send + Sync>;

/// A registered backend's decision about a mount: `None` declines,
/// `Some(Ok(_))` serves it, `Some(Err(_))` accepts it but cannot start
/// (the mount fails with that error rather than falling through).
pub type Claimed = Option<Result<Backend, ClaimError>>;

/// Registered backends, tried in order before the stock ones.
#[derive(Default)]
pub struct Registry {
    claims: Vec<Registered>,
}

struct Registered {
    name: String,
    claim: Box<dyn Fn(&MountSpec<'_>) -> Claimed + Send + Sync>,
}

/// The stock backends, in the order they claim a mount (always last).
pub const STOCK: [&str; 3] = ["overlay", "passthrough", "memfs"];

impl Registry {
    /// A registry with only the stock backends.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a backend after those registered before it (and before the
    /// stock ones). `name` names it in errors and [`Registry::names`].
    pub fn register(
        &mut self,
        name: impl Into<String>,
        claim: impl Fn(&MountSpec<'_>) -> Claimed + Send + Sync + 'static,
    ) -> &mut Registry {
        self.claims.push(Registered {
            name: name.into(),
            claim: Box::new(claim),
        });
        self
    }

    /// Every backend in the order they are asked: registered, then stock.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.claims
            .iter()
            .map(|r| r.name.as_str())
            .chain(STOCK.iter().copied())
    }

    /// The backend that serves the mount `args` describe: the first
    /// registered claim that accepts it, else the stock choice.
    pub fn resolve(&self, args: &MountArgs) -> Result<Backend, ServeError> {
        let spec = MountSpec::new(args);
        for r in &self.claims {
            match (r.claim)(&spec) {
                None => continue,
                Some(Ok(backend)) => return Ok(backend),
                Some(Err(error)) => {
                    return Err(ServeError::Backend {
                        backend: r.name.clone(),
                        error,
                    });
                }
            }
        }
        crate::serve::stock_backend(args)
    }

    /// Resolves the mount's backend, mounts and serves until unmounted.
    pub fn serve(&self, args: &MountArgs) -> Result<(), ServeError> {
        self.serve_with(args, || {})
    }

    /// [`Registry::serve`], calling `on_ready` once the mount is live.
    pub fn serve_with(&self, args: &MountArgs, on_ready: impl FnOnce()) -> Result<(), ServeError> {
        crate::serve::prepare(args)?;
        let mut once = Some(on_ready);
        let on_ready: &mut dyn FnMut() = &mut || {
            if let Some(f) = once.take() {
                f()
            }
        };
        self.resolve(args)?.serve(args, on_ready)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuselage_backends::memfs::{MemFs, MemFsConfig};
    use std::path::PathBuf;

    fn args(source: Option<&str>) -> MountArgs {
        let mut a = MountArgs::new(PathBuf::from("/nonexistent-mountpoint"));
        a.source = source.map(PathBuf::from);
        a
    }

    fn scheme(prefix: &'static str, name: &'static str) -> impl Fn(&MountSpec<'_>) -> Claimed {
        move |spec| {
            spec.source_str()?.strip_prefix(prefix)?;
            Some(Ok(Backend::new(name, MemFs::new(MemFsConfig::default()))))
        }
    }

    #[test]
    fn first_claim_wins_and_stock_comes_last() {
        let mut r = Registry::new();
        r.register("a", scheme("x:", "a"))
            .register("b", scheme("x:", "b"))
            .register("c", scheme("y:", "c"));
        assert_eq!(
            r.names().collect::<Vec<_>>(),
            ["a", "b", "c", "overlay", "passthrough", "memfs"]
        );
        assert_eq!(r.resolve(&args(Some("x:1"))).unwrap().name(), "a");
        assert_eq!(r.resolve(&args(Some("y:1"))).unwrap().name(), "c");
        // Nobody claims: the stock in-memory filesystem serves.
        assert_eq!(r.resolve(&args(None)).unwrap().name(), "memfs");
    }

    #[test]
    fn a_failing_claim_fails_the_mount() {
        let mut r = Registry::new();
        r.register("broken", |spec: &MountSpec<'_>| {
            spec.source_str()?
                .strip_prefix("enc:")
                .map(|_| Err("no key".into()))
        });
        let e = r.resolve(&args(Some("enc:/x"))).unwrap_err();
        assert_eq!(e.to_string(), "backend broken: no key");
        assert_eq!(e.exit_code(), 2);
    }
}
