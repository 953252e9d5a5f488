//! What the harness reads from /proc: memory and CPU time of a server, the mount table, and
//! the page cache switch.

use fuselage::uring::region::Region;
use std::path::Path;
use std::time::Duration;

/// A `kB` line of /proc/PID/status (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The child processes of `pid` (`/proc/PID/task/*/children`).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// CPU time used so far by every live thread of `pid` (sum of /proc/PID/task/*/schedstat,
/// nanosecond resolution).
pub fn process_cpu(pid: i32) -> Option<Duration> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Some(Duration::from_nanos(total))
}

/// CPU time (user + system) of this process (`who = RUSAGE_SELF`) or of its waited-for
/// children (`RUSAGE_CHILDREN`).
pub fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is valid and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to write to.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The filesystem type mounted on top at `mountpoint` per /proc/self/mountinfo, if any.
pub fn mounted_fstype(mountpoint: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_str()?;
    let mut found = None;
    for line in text.lines() {
        let mut fields = line.split(' ');
        let Some(mnt) = fields.nth(4) else { continue };
        if unescape_mountinfo(mnt) != want {
            continue;
        }
        let mut after_sep = line.split(" - ").nth(1).unwrap_or("").split(' ');
        found = after_sep.next().map(str::to_string);
    }
    found
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`. False when not permitted (not root).
pub fn drop_caches() -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Touches `bytes` of new anonymous memory and frees it again, so that the next
/// allocations of that much memory get pages the hypervisor already backs.
///
/// On a VM that hands free memory back to its host (virtio-balloon free page reporting,
/// as on this machine's Firecracker guest) the first touch of a returned page costs a
/// host fault: 1 GiB of anonymous memory touched cold took 1.8-2.3 s here, against
/// 0.4 s touched again at once. Which pages a workload gets then depends on what ran
/// before it (the allocator hands out recently freed pages first), so a write workload
/// that needs more new memory than the configuration before it freed pays that cost
/// and the next does not. Calling this first gives every configuration the same start.
pub fn warm_free_memory(bytes: u64) {
    let Ok(region) = Region::new(bytes as usize) else {
        return;
    };
    let (p, len) = (region.at(0, region.len()), region.len());
    // SAFETY: `p` is the start of the region's mapping of `len` bytes.
    let populated = unsafe { libc::madvise(p.cast(), len, libc::MADV_POPULATE_WRITE) } == 0;
    if !populated {
        // Kernels before 5.14: touch every page.
        for off in (0..len).step_by(4096) {
            // SAFETY: `off` is inside the writable mapping.
            unsafe { p.add(off).write_volatile(1) };
        }
    }
    // Dropping the region unmaps it.
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_status() {
        let pid = std::process::id() as i32;
        assert!(status_kib(pid, "VmRSS").unwrap() > 0);
        assert!(process_cpu(pid).is_some());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(mounted_fstype(Path::new("/proc")).as_deref(), Some("proc"));
    }
}
