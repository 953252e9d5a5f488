//! Minimal leveled logging to stderr, set by `FUSELAGE_LOG=debug|info|warn`.

use std::sync::atomic::{AtomicU8, Ordering};

/// Log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something is wrong but serving goes on.
    Warn = 1,
    /// Lifecycle events (mount, transport choice, unmount).
    Info = 2,
    /// Details useful when debugging.
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

/// Sets the level from `FUSELAGE_LOG` (unknown values keep `warn`).
pub fn init_from_env() {
    let level = match std::env::var("FUSELAGE_LOG").as_deref() {
        Ok("debug") => Level::Debug,
        Ok("info") => Level::Info,
        _ => Level::Warn,
    };
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages at `level` are shown.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Logs a message at a level: `log!(Info, "mounted {}", path)`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::$level) {
            eprintln!("fuselage[{}]: {}", stringify!($level).to_lowercase(), format_args!($($arg)*));
        }
    };
}
