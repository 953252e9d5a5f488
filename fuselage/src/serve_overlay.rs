//! `fuselage mount --lower DIR... --upper DIR|memory`: the overlay backend,
//! kept apart from `serve` so that the other backends' wiring stays small.

use crate::cli::{MountArgs, UpperChoice};
use crate::registry::Backend;
use crate::serve::{ServeError, Served};
use fuselage_backends::overlay::{OverlayConfig, OverlayFs, UpperLayer};
use fuselage_backends::passthrough::PassthroughStatusHandle;
use std::os::fd::OwnedFd;

/// An overlay of `args.lower` under `args.upper`. Bad layers (a missing
/// lower, an upper without the needed features, `memory` without
/// CAP_SYS_ADMIN) are [`ServeError::Layers`] (exit 2), before mounting.
pub(crate) fn overlay_backend(args: &MountArgs) -> Result<Backend, ServeError> {
    crate::serve::passthrough_on_preflight(args)?;
    if let Err(e) = crate::procfs::ensure_mounted() {
        return Err(ServeError::Options(format!(
            "--lower needs /proc (the layers are reached through /proc/self/fd): {e}"
        )));
    }
    let upper = match &args.upper {
        Some(UpperChoice::Dir(d)) => UpperLayer::Dir(d.clone()),
        Some(UpperChoice::Memory) => UpperLayer::Memory { size: args.size },
        None => {
            return Err(ServeError::Layers(
                "--lower needs --upper DIR|memory".into(),
            ));
        }
    };
    // --cache: the layers' TTLs and page cache; an overlay's node ids are
    // its own, so its layers are not watched (see the README).
    let layer = crate::serve::passthrough_cache(
        args.cache,
        fuselage_backends::passthrough::PassthroughConfig::new("/"),
        false,
    );
    let fs = OverlayFs::new(OverlayConfig {
        passthrough: args.passthrough.mode(),
        max_lock_waiters: args.max_lock_waiters(),
        entry_ttl: layer.entry_ttl,
        attr_ttl: layer.attr_ttl,
        cache: layer.cache,
        ..OverlayConfig::new(args.lower.clone(), upper)
    })
    .map_err(|e| ServeError::Layers(e.to_string()))?;
    crate::serve::stock_routed(
        args,
        "overlay",
        fuselage_backends::stock::StockRoot::Overlay(fs),
    )
}

impl Served for OverlayFs {
    fn attach_device(&self, fd: OwnedFd) {
        self.set_device_fd(fd)
    }
    fn passthrough_handle(&self) -> Option<PassthroughStatusHandle> {
        Some(self.status_handle().upper().clone())
    }
    fn startup_words(&self) -> Box<dyn Fn() -> String + Send> {
        let handle = self.status_handle();
        Box::new(move || handle.words())
    }
    /// Layers are not watched in this version (the overlay's node ids are
    /// its own): `--cache always` says so in the startup line.
    fn watch_handle(&self) -> Option<fuselage_backends::passthrough::WatchStatusHandle> {
        use fuselage_backends::passthrough::{WatchStatus, WatchStatusHandle};
        Some(WatchStatusHandle::fixed(WatchStatus::Failed(
            "overlay layers are not watched: host changes under them show when the TTL expires"
                .into(),
        )))
    }
}
