//! CPU placement: lists like `0-1,3` and sched_setaffinity(2).

use std::fmt;
use std::io;

/// A set of CPU numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSet {
    cpus: Vec<usize>,
}

impl CpuSet {
    /// Parses `0`, `0-3`, `0,2-3`.
    pub fn parse(s: &str) -> Result<CpuSet, String> {
        let bad = || format!("CPU list '{s}': expected e.g. 0 or 0-1,3");
        let mut cpus = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                None => {
                    let n: usize = part.parse().map_err(|_| bad())?;
                    (n, n)
                }
            };
            if lo > hi || hi >= libc::CPU_SETSIZE as usize {
                return Err(bad());
            }
            cpus.extend(lo..=hi);
        }
        if cpus.is_empty() {
            return Err(bad());
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuSet { cpus })
    }

    /// The affinity of the calling thread.
    pub fn current() -> io::Result<CpuSet> {
        // SAFETY: an all-zero cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let cpus = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `i` is below CPU_SETSIZE, the set's capacity.
            .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
            .collect();
        Ok(CpuSet { cpus })
    }

    fn raw(&self) -> libc::cpu_set_t {
        // SAFETY: an all-zero cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in &self.cpus {
            // SAFETY: `parse` only admits numbers below CPU_SETSIZE.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        set
    }

    /// Pins the calling thread (and whatever it spawns or forks afterwards).
    ///
    /// Async-signal-safe, so it may run in a `pre_exec` hook.
    pub fn apply_to_current_thread(&self) -> io::Result<()> {
        let set = self.raw();
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.cpus.len() {
            let start = self.cpus[i];
            let mut end = start;
            while i + 1 < self.cpus.len() && self.cpus[i + 1] == end + 1 {
                i += 1;
                end = self.cpus[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

/// Pins the calling thread to a set while alive; restores the previous affinity on drop.
pub struct PinGuard {
    previous: Option<CpuSet>,
}

impl PinGuard {
    /// Pins to `set`, or does nothing for `None`.
    pub fn new(set: Option<&CpuSet>) -> io::Result<PinGuard> {
        match set {
            None => Ok(PinGuard { previous: None }),
            Some(set) => {
                let previous = CpuSet::current()?;
                set.apply_to_current_thread()?;
                Ok(PinGuard {
                    previous: Some(previous),
                })
            }
        }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.previous {
            let _ = p.apply_to_current_thread();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let s = CpuSet::parse("3,0-1").unwrap();
        assert_eq!(s.to_string(), "0-1,3");
        assert!(CpuSet::parse("").is_err());
        assert!(CpuSet::parse("2-1").is_err());
        assert!(CpuSet::parse("a").is_err());
    }

    #[test]
    fn current_is_not_empty() {
        assert!(!CpuSet::current().unwrap().cpus.is_empty());
    }
}
