//! `--route SUBPATH=SPEC`: the backends placed inside a router mount, and
//! the startup line's `route=` words.

use crate::cli::{MountArgs, RouteSpec};
use crate::serve::{ServeError, default_memfs_size, memfs_cache, passthrough_cache};
use fuselage_backends::memfs::{MemFs, MemFsConfig};
use fuselage_backends::passthrough::{PassthroughConfig, PassthroughFs};
use fuselage_backends::router::Router;
use fuselage_backends::stock::StockFs;
use fuselage_core::Filesystem;

/// The router serving `root` with every `--route` of `args`: `memory`
/// routes get an in-memory filesystem of their own (the `--size` default
/// capacity), host routes a passthrough backend honouring `--passthrough`
/// and `--read-only`.
pub fn build<R: Filesystem>(args: &MountArgs, root: R) -> Result<Router<R>, ServeError> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut routes = Vec::with_capacity(args.routes.len());
    for route in &args.routes {
        let fs = match &route.spec {
            RouteSpec::Memory => StockFs::Memory(MemFs::new(memfs_cache(
                args.cache,
                MemFsConfig {
                    capacity_bytes: default_memfs_size(),
                    uid,
                    gid,
                    ..MemFsConfig::default()
                },
            ))),
            RouteSpec::Host(host) => {
                // The backend reaches its files through /proc/self/fd.
                if let Err(e) = crate::procfs::ensure_mounted() {
                    return Err(ServeError::Options(format!(
                        "--route {}: a host route needs /proc, which is not mounted and could not be: {e}",
                        route.path
                    )));
                }
                // A route's node ids are rewritten by the router, so its
                // backend cannot address the kernel itself: no host watch.
                let fs = PassthroughFs::new(passthrough_cache(
                    args.cache,
                    PassthroughConfig {
                        passthrough: args.passthrough.mode(),
                        read_only: args.read_only,
                        max_lock_waiters: args.max_lock_waiters(),
                        ..PassthroughConfig::new(host)
                    },
                    false,
                ))
                .map_err(|e| ServeError::Options(format!("--route {}: {e}", route.path)))?;
                StockFs::Host(fs)
            }
        };
        routes.push((route.path.clone(), fs));
    }
    Router::new(root, routes).map_err(|e| ServeError::Options(format!("--route: {e}")))
}

/// ` route=SUBPATH:WHAT` for every route, WHAT being `memory`,
/// `HOSTDIR(passthrough=on|off)` or `HOSTFILE(file)`; read when the line is
/// printed (after INIT decided kernel passthrough).
pub fn startup_words<R: Filesystem>(router: &Router<R>) -> Box<dyn Fn() -> String + Send> {
    enum What {
        Memory,
        File(String),
        Dir(
            String,
            fuselage_backends::passthrough::PassthroughStatusHandle,
        ),
    }
    let routes: Vec<(String, What)> = router
        .routes()
        .iter()
        .map(|r| {
            let what = match r.fs.as_host() {
                None => What::Memory,
                Some(h) if h.serves_single_file() => {
                    What::File(h.config().source.display().to_string())
                }
                Some(h) => What::Dir(
                    h.config().source.display().to_string(),
                    h.passthrough_status_handle(),
                ),
            };
            (r.path.to_string(), what)
        })
        .collect();
    Box::new(move || {
        let mut words = String::new();
        for (path, what) in &routes {
            let what = match what {
                What::Memory => "memory".to_string(),
                What::File(host) => format!("{host}(file)"),
                What::Dir(host, status) => format!(
                    "{host}(passthrough={})",
                    if status.status().active { "on" } else { "off" }
                ),
            };
            words.push_str(&format!(" route={path}:{what}"));
        }
        words
    })
}
