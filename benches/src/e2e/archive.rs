//! The tar archive the application workload (`tar-x`) extracts: a system directory
//! (`/usr/include`) or a generated tree of the same shape, archived once outside every mount and
//! reused between runs.

use crate::source::pattern_block;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directory archived by default, when it has at least [`MIN_ENTRIES`] entries.
pub const SYSTEM_DIR: &str = "/usr/include";
/// Fewer entries than this in [`SYSTEM_DIR`] and a tree is generated instead.
pub const MIN_ENTRIES: u64 = 1000;
/// Where the archives live: tmpfs, outside every mount, so reading one costs the same for every
/// configuration and never touches a disk.
pub const ARCHIVE_DIR: &str = "/dev/shm/fuselage-bench-tar";

/// What to archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarFrom {
    /// [`SYSTEM_DIR`] if it has [`MIN_ENTRIES`] entries, else a generated tree of
    /// [`GENERATED_FILES`] files.
    Auto,
    /// This directory.
    Dir(PathBuf),
    /// A generated tree of this many files.
    Generated(usize),
}

/// Files of the generated tree when [`SYSTEM_DIR`] is missing or small (about as many as
/// `/usr/include` of a Debian system with a compiler, about 100 MB).
pub const GENERATED_FILES: usize = 9000;

/// A prepared archive.
#[derive(Debug, Clone)]
pub struct Archive {
    /// The `.tar` file.
    pub path: PathBuf,
    /// Entries in it (directories, files and symbolic links, the top directory included).
    pub entries: u64,
    /// Bytes of the regular files in it.
    pub bytes: u64,
    /// What was archived, for the report.
    pub origin: String,
}

/// Entries and regular-file bytes of a tree (not following symbolic links), the top included.
pub fn count_tree(top: &Path) -> std::io::Result<(u64, u64)> {
    let mut entries = 0;
    let mut bytes = 0;
    let mut stack = vec![top.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p)?;
        entries += 1;
        if m.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if m.is_file() {
            bytes += m.len();
        }
    }
    Ok((entries, bytes))
}

impl Archive {
    /// Prepares (or reuses) the archive `from` asks for.
    pub fn prepare(from: &TarFrom) -> Result<Archive, String> {
        let base = Path::new(ARCHIVE_DIR);
        fs::create_dir_all(base).map_err(|e| format!("cannot create {ARCHIVE_DIR}: {e}"))?;
        let from = match from {
            TarFrom::Auto => match count_tree(Path::new(SYSTEM_DIR)) {
                Ok((n, _)) if n >= MIN_ENTRIES => TarFrom::Dir(SYSTEM_DIR.into()),
                _ => TarFrom::Generated(GENERATED_FILES),
            },
            other => other.clone(),
        };
        match from {
            TarFrom::Dir(dir) => {
                let dir = dir
                    .canonicalize()
                    .map_err(|e| format!("--tar-from {}: {e}", dir.display()))?;
                let name = dir.to_string_lossy().trim_matches('/').replace('/', "-");
                let archive = base.join(format!("{name}.tar"));
                Archive::of_dir(&dir, &archive, dir.display().to_string())
            }
            TarFrom::Generated(files) => {
                let archive = base.join(format!("generated-{files}.tar"));
                let marker = archive.with_extension("tar.info");
                if let Some(a) = Archive::reuse(&archive, &marker, None) {
                    return Ok(a);
                }
                let work = base.join(format!("generated-{files}.{}", std::process::id()));
                let tree = work.join("tree");
                let _ = fs::remove_dir_all(&work);
                generate_tree(&tree, files)
                    .map_err(|e| format!("cannot generate {}: {e}", tree.display()))?;
                let r = Archive::of_dir(
                    &tree,
                    &archive,
                    format!("a generated tree of {files} files"),
                );
                let _ = fs::remove_dir_all(&work);
                r
            }
            TarFrom::Auto => unreachable!("resolved above"),
        }
    }

    /// The archive at `path` if its marker says it holds `expect` (entries, bytes), or
    /// anything when `expect` is None.
    fn reuse(path: &Path, marker: &Path, expect: Option<(u64, u64)>) -> Option<Archive> {
        let text = fs::read_to_string(marker).ok()?;
        let mut lines = text.lines();
        let origin = lines.next()?.to_string();
        let mut nums = lines.next()?.split_whitespace().map(|w| w.parse::<u64>());
        let (entries, bytes) = (nums.next()?.ok()?, nums.next()?.ok()?);
        if expect.is_some_and(|e| e != (entries, bytes)) || !path.is_file() {
            return None;
        }
        Some(Archive {
            path: path.to_path_buf(),
            entries,
            bytes,
            origin,
        })
    }

    /// Archives `dir` into `archive` (as `tar -c -C PARENT NAME`), unless the archive there
    /// already holds a tree of the same entries and bytes.
    fn of_dir(dir: &Path, archive: &Path, origin: String) -> Result<Archive, String> {
        let (entries, bytes) =
            count_tree(dir).map_err(|e| format!("cannot walk {}: {e}", dir.display()))?;
        let marker = archive.with_extension("tar.info");
        if let Some(a) = Archive::reuse(archive, &marker, Some((entries, bytes))) {
            return Ok(a);
        }
        let parent = dir.parent().unwrap_or(Path::new("/"));
        let name = dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or(".".into());
        let tmp = archive.with_extension(format!("tar.{}", std::process::id()));
        let out = Command::new("tar")
            .arg("-c")
            .arg("-f")
            .arg(&tmp)
            .arg("-C")
            .arg(parent)
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        if !out.status.success() {
            let _ = fs::remove_file(&tmp);
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "tar -c {} failed ({}): {}",
                dir.display(),
                out.status,
                err.lines().next_back().unwrap_or("").trim()
            ));
        }
        fs::rename(&tmp, archive).map_err(|e| format!("{}: {e}", archive.display()))?;
        fs::write(&marker, format!("{origin}\n{entries} {bytes}\n"))
            .map_err(|e| format!("{}: {e}", marker.display()))?;
        Ok(Archive {
            path: archive.to_path_buf(),
            entries,
            bytes,
            origin,
        })
    }

    /// `8,758 entries, 129 MB`.
    pub fn describe(entries: u64, bytes: u64) -> String {
        format!(
            "{} entries, {} MB",
            crate::report::fmt_figure(entries as f64),
            crate::report::fmt_figure(bytes as f64 / 1e6)
        )
    }
}

/// Writes a tree of `files` files under `top`, shaped like a system header directory: about
/// 200 files per directory, a few directories one level deeper, and sizes spread like headers
/// (two thirds under 6 KiB, a few hundred KiB at most; about 11.7 KB on average).
pub fn generate_tree(top: &Path, files: usize) -> std::io::Result<()> {
    let block = pattern_block();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    fs::create_dir_all(top)?;
    let per_dir = 200;
    for i in 0..files {
        let d = i / per_dir;
        // Every fourth directory sits one level below the previous one.
        let dir = if d % 4 == 3 {
            top.join(format!("d{:03}", d - 1)).join(format!("d{d:03}"))
        } else {
            top.join(format!("d{d:03}"))
        };
        if i % per_dir == 0 {
            fs::create_dir_all(&dir)?;
        }
        let r = next();
        let (lo, hi): (usize, usize) = match r % 1000 {
            0..650 => (256, 6 << 10),
            650..920 => (6 << 10, 24 << 10),
            920..995 => (24 << 10, 96 << 10),
            _ => (96 << 10, 384 << 10),
        };
        // Below the block's 1 MiB, so every file is one slice of it.
        let len = lo + (next() % (hi - lo) as u64) as usize;
        let start = (r >> 20) as usize % (block.len() - len + 1);
        let mut f = fs::File::create(dir.join(format!("h{i:05}.h")))?;
        f.write_all(&block[start..start + len])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tree_is_counted_as_archived() {
        let top = std::env::temp_dir().join(format!("fuselage-bench-gen.{}", std::process::id()));
        let _ = fs::remove_dir_all(&top);
        generate_tree(&top.join("tree"), 450).unwrap();
        let (entries, bytes) = count_tree(&top.join("tree")).unwrap();
        // 450 files in 3 directories (the fourth level-two directory is not reached), + top.
        assert_eq!(entries, 450 + 3 + 1);
        assert!(bytes > 450 * 256 && bytes < 450 * (384 << 10), "{bytes}");
        fs::remove_dir_all(&top).unwrap();
    }
}
