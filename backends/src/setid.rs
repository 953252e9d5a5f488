//! Clearing set-user-ID and set-group-ID bits when a regular file changes,
//! by the running kernel's rules, for backends that negotiate
//! `HANDLE_KILLPRIV_V2`.
//!
//! With `HANDLE_KILLPRIV_V2` the kernel leaves the clearing to the server
//! and tells it only part of what it needs:
//!
//! | change | what the kernel sends |
//! |---|---|
//! | WRITE | `FUSE_WRITE_KILL_SUIDGID` when the writer lacks `CAP_FSETID` |
//! | truncate (SETATTR size) | `FATTR_KILL_SUIDGID` when the caller lacks `CAP_FSETID` |
//! | OPEN/CREATE with `O_TRUNC` | `FUSE_OPEN_KILL_SUIDGID` when the caller lacks `CAP_FSETID` |
//! | chown/chgrp of a non-directory | `FATTR_KILL_SUIDGID`, always |
//! | FALLOCATE, COPY_FILE_RANGE | nothing |
//!
//! The rule itself (`setattr_should_drop_suidgid` in the kernel's
//! `fs/attr.c`, checked against native tmpfs on this kernel) concerns
//! regular files, and for a change of owner every non-directory:
//! - a caller with `CAP_FSETID` keeps both bits (except on chown, below);
//! - otherwise set-uid always goes, and set-gid goes when the file is group
//!   executable, or when the caller is not in the file's group;
//! - a change of owner or group clears set-uid even for a capable caller,
//!   and set-gid when group executable or when the caller is neither in
//!   the file's (old) group nor capable.
//!
//! The kernel's flags answer "capable?" where it sends them; whether the
//! caller is in the file's group (its fsgid or one of its supplementary
//! groups), and "capable?" where no flag comes, are read from
//! `/proc/PID/status` of the calling thread (the request header's pid).
//! That read happens only for a file that has a set-id bit, so ordinary
//! files cost nothing. If it fails (the caller is gone, pid 0 because the
//! caller lives in another pid namespace, no `/proc`), the caller counts as
//! neither in the group nor capable: the bits are cleared, the safe way to
//! be wrong.
//!
//! `security.capability` follows simpler rules (tmpfs removes it on every
//! write, truncate, fallocate, copy into the file and chown, whoever the
//! caller, but not on writes that come from the page cache of a shared
//! mapping); see [`write_drops_file_capabilities`].

use fuselage_core::RequestHeader;
use fuselage_core::abi::{FUSE_WRITE_CACHE, FUSE_WRITE_KILL_SUIDGID};

const S_IFMT: u32 = libc::S_IFMT;
const S_IFREG: u32 = libc::S_IFREG;
const S_IFDIR: u32 = libc::S_IFDIR;
const S_ISUID: u32 = libc::S_ISUID;
const S_ISGID: u32 = libc::S_ISGID;
const S_IXGRP: u32 = libc::S_IXGRP;

/// `CAP_FSETID`'s bit number.
const CAP_FSETID: u32 = 4;

/// The extended attribute that holds file capabilities.
pub(crate) const SECURITY_CAPABILITY: &[u8] = b"security.capability";

/// How a file is being changed, which decides both the rule and what the
/// kernel already told us about the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// WRITE, truncate or `O_TRUNC` open; `flagged` is the kernel's
    /// `*_KILL_SUIDGID` flag, set exactly when the caller lacks
    /// `CAP_FSETID`.
    Flagged {
        /// The request carried the kill flag.
        flagged: bool,
    },
    /// FALLOCATE or COPY_FILE_RANGE into the file: the kernel sends no
    /// flag, so the caller's capability is looked up.
    Unflagged,
    /// A change of owner or group.
    Chown,
}

impl Change {
    /// The change a WRITE with `write_flags` makes.
    pub(crate) fn write(write_flags: u32) -> Change {
        Change::Flagged {
            flagged: write_flags & FUSE_WRITE_KILL_SUIDGID != 0,
        }
    }
}

/// Whether a WRITE with `write_flags` removes `security.capability`: every
/// write does except those from the page cache (`FUSE_WRITE_CACHE`: a
/// shared mapping written back), which tmpfs leaves alone.
pub(crate) fn write_drops_file_capabilities(write_flags: u32) -> bool {
    write_flags & FUSE_WRITE_CACHE == 0
}

/// The set-id bits (`S_ISUID`, `S_ISGID`) that `caller` changing a file
/// with `mode` and group `file_gid` clears: from regular files, and on a
/// change of owner from every non-directory.
pub(crate) fn bits_to_clear(
    mode: u32,
    file_gid: u32,
    caller: &RequestHeader,
    change: Change,
) -> u32 {
    // A change of owner clears them from every non-directory (the kernel's
    // `chown_common`); the other changes only from regular files.
    let applies = match change {
        Change::Chown => mode & S_IFMT != S_IFDIR,
        Change::Flagged { .. } | Change::Unflagged => mode & S_IFMT == S_IFREG,
    };
    if !applies || mode & (S_ISUID | S_ISGID) == 0 {
        return 0;
    }
    let mut facts = CallerFacts::new(caller, file_gid);
    // A capable caller keeps both bits, except on a change of owner.
    match change {
        Change::Flagged { flagged: false } => return 0,
        Change::Unflagged if facts.capable() => return 0,
        _ => {}
    }
    let mut kill = mode & S_ISUID;
    let sgid = mode & S_ISGID != 0;
    let group_exec = mode & S_IXGRP != 0;
    // Only a chown still has to ask about capability: the other changes
    // got here from an incapable caller.
    if sgid && (group_exec || !(facts.in_group() || (change == Change::Chown && facts.capable()))) {
        kill |= S_ISGID;
    }
    kill
}

/// What `/proc/PID/status` says about the caller, read at most once.
struct CallerFacts<'a> {
    caller: &'a RequestHeader,
    file_gid: u32,
    status: Option<Option<ProcStatus>>,
}

impl<'a> CallerFacts<'a> {
    fn new(caller: &'a RequestHeader, file_gid: u32) -> CallerFacts<'a> {
        CallerFacts {
            caller,
            file_gid,
            status: None,
        }
    }

    fn status(&mut self) -> Option<&ProcStatus> {
        let pid = self.caller.pid;
        self.status
            .get_or_insert_with(|| ProcStatus::read(pid))
            .as_ref()
    }

    /// The caller's fsgid or one of its supplementary groups is the file's.
    fn in_group(&mut self) -> bool {
        if self.caller.gid == self.file_gid {
            return true;
        }
        let gid = self.file_gid;
        self.status().is_some_and(|s| s.groups.contains(&gid))
    }

    /// The caller has `CAP_FSETID` in the initial user namespace (what the
    /// kernel's `capable()` asks).
    fn capable(&mut self) -> bool {
        self.status()
            .is_some_and(|s| s.cap_effective & (1 << CAP_FSETID) != 0 && s.same_user_ns)
    }
}

/// The parts of `/proc/PID/status` the rules need.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcStatus {
    groups: Vec<u32>,
    cap_effective: u64,
    /// The caller's user namespace is the server's (capabilities in a
    /// child namespace do not count for `capable()`).
    same_user_ns: bool,
}

impl ProcStatus {
    fn read(pid: u32) -> Option<ProcStatus> {
        if pid == 0 {
            return None;
        }
        let text = std::fs::read(format!("/proc/{pid}/status")).ok()?;
        let mut status = ProcStatus::parse(&text)?;
        status.same_user_ns = match (
            std::fs::read_link(format!("/proc/{pid}/ns/user")),
            std::fs::read_link("/proc/self/ns/user"),
        ) {
            (Ok(theirs), Ok(ours)) => theirs == ours,
            // The namespace links need ptrace access to the caller, which a
            // server without capabilities (`--sandbox`) lacks for a more
            // privileged caller. The id maps are readable by anyone; another
            // namespace shows ours only if it was given the same ids, which
            // takes CAP_SETUID over them in its parent (for a server in the
            // initial namespace: over every id).
            _ => {
                let theirs = std::fs::read(format!("/proc/{pid}/uid_map")).ok()?;
                theirs == std::fs::read("/proc/self/uid_map").ok()?
            }
        };
        Some(status)
    }

    fn parse(text: &[u8]) -> Option<ProcStatus> {
        let text = std::str::from_utf8(text).ok()?;
        let mut groups = None;
        let mut caps = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Groups:") {
                groups = rest
                    .split_ascii_whitespace()
                    .map(|g| g.parse().ok())
                    .collect::<Option<Vec<u32>>>();
            } else if let Some(rest) = line.strip_prefix("CapEff:") {
                caps = u64::from_str_radix(rest.trim(), 16).ok();
            }
        }
        Some(ProcStatus {
            groups: groups?,
            cap_effective: caps?,
            same_user_ns: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn caller(uid: u32, gid: u32, pid: u32) -> RequestHeader {
        let mut h = RequestHeader::new_zeroed();
        h.uid = uid;
        h.gid = gid;
        h.pid = pid;
        h
    }

    const REG: u32 = S_IFREG;

    #[test]
    fn only_regular_files_with_set_id_bits() {
        let nobody = caller(65534, 65534, 0);
        let write = Change::Flagged { flagged: true };
        assert_eq!(bits_to_clear(REG | 0o777, 0, &nobody, write), 0);
        assert_eq!(bits_to_clear(libc::S_IFDIR | 0o6777, 0, &nobody, write), 0);
        assert_eq!(bits_to_clear(libc::S_IFIFO | 0o6777, 0, &nobody, write), 0);
        let chown = Change::Chown;
        assert_eq!(bits_to_clear(libc::S_IFDIR | 0o6777, 0, &nobody, chown), 0);
        assert_eq!(
            bits_to_clear(libc::S_IFIFO | 0o6555, 0, &nobody, chown),
            S_ISUID | S_ISGID
        );
        assert_eq!(
            bits_to_clear(REG | 0o6777, 0, &nobody, write),
            S_ISUID | S_ISGID
        );
    }

    #[test]
    fn flagged_writer_keeps_setgid_only_in_the_group_without_group_exec() {
        let write = Change::Flagged { flagged: true };
        // Not in the file's group (pid 0: no supplementary groups known).
        let outsider = caller(65534, 65534, 0);
        assert_eq!(bits_to_clear(REG | 0o2767, 0, &outsider, write), S_ISGID);
        assert_eq!(
            bits_to_clear(REG | 0o6767, 0, &outsider, write),
            S_ISUID | S_ISGID
        );
        // In the group by fsgid.
        let member = caller(65534, 100, 0);
        assert_eq!(bits_to_clear(REG | 0o2767, 100, &member, write), 0);
        assert_eq!(bits_to_clear(REG | 0o6767, 100, &member, write), S_ISUID);
        assert_eq!(bits_to_clear(REG | 0o2777, 100, &member, write), S_ISGID);
    }

    #[test]
    fn unflagged_writer_keeps_bits() {
        let root = caller(0, 0, 0);
        let keep = Change::Flagged { flagged: false };
        assert_eq!(bits_to_clear(REG | 0o6777, 0, &root, keep), 0);
    }

    #[test]
    fn unknown_capability_clears() {
        // pid 0: nothing can be learnt, so the caller counts as incapable.
        let unknown = caller(0, 0, 0);
        assert_eq!(
            bits_to_clear(REG | 0o4755, 0, &unknown, Change::Unflagged),
            S_ISUID
        );
        assert_eq!(
            bits_to_clear(REG | 0o2745, 0, &unknown, Change::Unflagged),
            0
        );
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let me = std::process::id();
        let status = ProcStatus::read(me).expect("own /proc status");
        assert!(status.same_user_ns);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let root = caller(0, 0, me);
            assert_eq!(bits_to_clear(REG | 0o6777, 0, &root, Change::Unflagged), 0);
            // A capable caller's chown still clears set-uid.
            assert_eq!(
                bits_to_clear(REG | 0o6767, 5, &root, Change::Chown),
                S_ISUID
            );
        }
    }

    #[test]
    fn status_parsing() {
        let text = b"Name:\tx\nGroups:\t10 20 65534 \nCapEff:\t000001ffffffffff\n";
        let s = ProcStatus::parse(text).expect("parses");
        assert_eq!(s.groups, [10, 20, 65534]);
        assert_eq!(s.cap_effective, 0x1ff_ffff_ffff);
        let none = b"Groups:\t\nCapEff:\t0000000000000000\n";
        assert_eq!(
            ProcStatus::parse(none).expect("parses").groups,
            [] as [u32; 0]
        );
        assert!(ProcStatus::parse(b"Groups:\tx\nCapEff:\t0\n").is_none());
        assert!(ProcStatus::parse(b"Name:\tx\n").is_none());
    }
}
