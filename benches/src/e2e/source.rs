//! The data set every configuration serves: one big file and a directory of small files,
//! on tmpfs or on an ext4 image mounted from a loop device.

use crate::cleanup::{Registration, Undo};
use crate::cli::SourceFs;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The big file, relative to a root.
pub const BIG: &str = "big.bin";
/// The directory of small files.
pub const SMALL: &str = "small";
/// The directory of files the copy-up workload writes to (through an overlay only: its
/// first write copies each file up from the lower layer).
pub const COPYUP: &str = "copyup";
/// Where workloads create files; removed after every configuration.
pub const SCRATCH: &str = "scratch";
const MARKER: &str = ".fuselage-bench-layout";

/// Sizes of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes in [`BIG`].
    pub big_bytes: u64,
    /// Files in [`SMALL`].
    pub files: usize,
    /// Bytes in each small file.
    pub small_bytes: usize,
    /// Files in [`COPYUP`].
    pub copyup_files: usize,
    /// Bytes in each file of [`COPYUP`].
    pub copyup_bytes: u64,
    /// Entries of the archive the `tar-x` workload extracts (0: none prepared).
    pub tar_entries: u64,
    /// Bytes of the regular files in that archive.
    pub tar_bytes: u64,
}

impl Layout {
    fn marker(&self) -> String {
        format!(
            "big={} files={} small={} copyup={}x{}\n",
            self.big_bytes, self.files, self.small_bytes, self.copyup_files, self.copyup_bytes
        )
    }

    /// Bytes of all files in [`COPYUP`] together.
    pub fn copyup_total(&self) -> u64 {
        self.copyup_bytes * self.copyup_files as u64
    }
}

/// Name of small file `i`.
pub fn small_name(i: usize) -> String {
    format!("f{i:06}")
}

/// A 1 MiB buffer of non-repeating, non-zero bytes (no zero-page or dedup shortcuts).
pub fn pattern_block() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(1 << 20);
    while v.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// Name of copy-up file `i`.
pub fn copyup_name(i: usize) -> String {
    format!("c{i:03}")
}

/// Writes the data set under `root` (which must exist): [`BIG`], [`SMALL`] and [`COPYUP`].
pub fn populate(root: &Path, layout: &Layout) -> io::Result<()> {
    let block = pattern_block();
    let mut f = fs::File::create(root.join(BIG))?;
    let mut left = layout.big_bytes;
    let mut n = 0u64;
    let mut buf = block.clone();
    while left > 0 {
        buf[..8].copy_from_slice(&n.to_le_bytes());
        let len = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..len])?;
        left -= len as u64;
        n += 1;
    }
    f.sync_all()?;
    drop(f);
    let small = root.join(SMALL);
    fs::create_dir_all(&small)?;
    let body = &block[..layout.small_bytes.min(block.len())];
    for i in 0..layout.files {
        fs::write(small.join(small_name(i)), body)?;
    }
    let copyup = root.join(COPYUP);
    fs::create_dir_all(&copyup)?;
    for i in 0..layout.copyup_files {
        let mut f = fs::File::create(copyup.join(copyup_name(i)))?;
        let mut left = layout.copyup_bytes;
        while left > 0 {
            let len = left.min(block.len() as u64) as usize;
            f.write_all(&block[..len])?;
            left -= len as u64;
        }
    }
    Ok(())
}

/// The prepared source tree; dropping it tears down an ext4 mount and loop device.
pub struct Source {
    /// The directory served (and measured as "native").
    pub dir: PathBuf,
    /// tmpfs or ext4.
    pub kind: SourceFs,
    ext4: Option<Ext4>,
}

struct Ext4 {
    image: PathBuf,
    mount: Option<Registration>,
    loop_dev: Option<Registration>,
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        // Unmount first, then the loop device, then the image.
        drop(self.mount.take());
        drop(self.loop_dev.take());
        let _ = fs::remove_file(&self.image);
    }
}

impl Source {
    /// Prepares the source as the options say.
    pub fn prepare(
        kind: SourceFs,
        tmpfs_dir: &Path,
        image: &Path,
        layout: &Layout,
    ) -> Result<Source, String> {
        match kind {
            SourceFs::Tmpfs => prepare_tmpfs(tmpfs_dir, layout).map(|dir| Source {
                dir,
                kind,
                ext4: None,
            }),
            SourceFs::Ext4 => prepare_ext4(image, layout),
        }
    }

    /// A one-line description for the report.
    pub fn describe(&self) -> String {
        match (&self.kind, &self.ext4) {
            (SourceFs::Ext4, Some(e)) => {
                format!(
                    "ext4 on a loop device ({}), mounted at {}",
                    e.image.display(),
                    self.dir.display()
                )
            }
            _ => format!("tmpfs directory {}", self.dir.display()),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some(e) = self.ext4.take() {
            drop(e);
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

fn prepare_tmpfs(dir: &Path, layout: &Layout) -> Result<PathBuf, String> {
    let ok = fs::read_to_string(dir.join(MARKER)).is_ok_and(|m| m == layout.marker())
        && fs::metadata(dir.join(BIG)).is_ok_and(|m| m.len() == layout.big_bytes);
    if ok {
        let _ = fs::remove_dir_all(dir.join(SCRATCH));
        return Ok(dir.to_path_buf());
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    populate(dir, layout)
        .map_err(|e| format!("cannot write the source in {}: {e}", dir.display()))?;
    fs::write(dir.join(MARKER), layout.marker()).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir.to_path_buf())
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn prepare_ext4(image: &Path, layout: &Layout) -> Result<Source, String> {
    if !crate::procfs::is_root() {
        return Err("--source-fs ext4 needs root (losetup, mount)".into());
    }
    let bytes = layout.big_bytes * 2
        + (layout.files as u64) * 8192 * 2
        + layout.copyup_total()
        + (256 << 20);
    let f = fs::File::create(image).map_err(|e| format!("{}: {e}", image.display()))?;
    f.set_len(bytes)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    drop(f);
    let mut ext4 = Ext4 {
        image: image.to_path_buf(),
        mount: None,
        loop_dev: None,
    };
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(image))?;
    let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(image))?;
    ext4.loop_dev = Some(Registration::new(Undo::DetachLoop(PathBuf::from(&dev))));
    let dir = PathBuf::from(format!("/tmp/fuselage-bench-ext4.{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    run(Command::new("mount").args(["-t", "ext4", &dev]).arg(&dir))?;
    ext4.mount = Some(Registration::new(Undo::Unmount(dir.clone())));
    populate(&dir, layout)
        .map_err(|e| format!("cannot write the source in {}: {e}", dir.display()))?;
    Ok(Source {
        dir,
        kind: SourceFs::Ext4,
        ext4: Some(ext4),
    })
}
