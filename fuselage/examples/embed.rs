//! Embedding fuselage: mount a directory and serve the in-memory filesystem
//! on the blocking transport from your own program.
//!
//! ```sh
//! cargo run --example embed -- /mnt/x     # as root (or with fusermount3)
//! ```
//!
//! Serves until the filesystem is unmounted (`umount /mnt/x`); dropping the
//! `Mount` unmounts lazily.

use fuselage::backends::memfs::{MemFs, MemFsConfig};
use fuselage::blocking::{Session, SessionConfig};
use fuselage::linux::{Mount, MountOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mountpoint = std::env::args().nth(1).ok_or("usage: embed MOUNTPOINT")?;
    let mount = Mount::new(
        mountpoint.as_ref(),
        &MountOptions {
            subtype: Some("memfs".into()),
            ..MountOptions::default()
        },
    )?;
    let fs = MemFs::new(MemFsConfig {
        capacity_bytes: 256 << 20,
        ..MemFsConfig::default()
    });
    let session = Session::new(mount.channel()?, fs, SessionConfig::default());
    let end = session.run_with(|info| {
        eprintln!(
            "serving {mountpoint}: protocol 7.{}, {} threads",
            info.negotiated.minor, info.threads
        )
    })?;
    eprintln!("session ended: {end:?}");
    Ok(())
}
