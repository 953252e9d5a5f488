//! Reading `/proc/self/mountinfo`: which FUSE mount is at a path and its device number,
//! allocation-free so the watchdog can scan it after fork.

use std::io::{self};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The kernel's dev_t encoding (what fusectl names its directories by).
pub(super) fn encode_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xF_FFFF)
}

/// `(major, minor)` of the top FUSE mount at `path` (already resolved), from mountinfo.
pub(super) fn fuse_mount_dev(path: &Path) -> io::Result<Option<(u32, u32)>> {
    mount_dev_of_type(path.as_os_str().as_bytes(), FsType::Fuse)
}

/// Which filesystem types a mountinfo scan accepts.
#[derive(Debug, Clone, Copy)]
pub(super) enum FsType<'a> {
    /// `fuse`, `fuseblk` and their `.subtype` forms.
    Fuse,
    /// Exactly this type.
    Named(&'a [u8]),
}

/// Scans `/proc/self/mountinfo` for the last (top) mount of `want` type at `target`.
///
/// Allocation-free and panic-free with raw open/read, so the watchdog can call it after fork.
pub(super) fn mount_dev_of_type(target: &[u8], want: FsType<'_>) -> io::Result<Option<(u32, u32)>> {
    // SAFETY: the path is a NUL-terminated literal; the fd is checked and closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/mountinfo".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut scan = MountinfoScan::new(target, want);
    let mut buf = [0u8; 4096];
    let result = loop {
        // SAFETY: `buf` is valid for writes of its length; `fd` is open.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break Ok(scan.finish());
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break Err(err);
        }
        scan.feed(buf.get(..n as usize).unwrap_or(&[]));
    };
    // SAFETY: `fd` was opened above and is closed exactly once.
    unsafe { libc::close(fd) };
    result
}

/// A streaming matcher over mountinfo lines:
/// `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`.
/// Mount points are octal-escaped (`\040` for space); they are unescaped on the fly and
/// compared with the target.
pub(super) struct MountinfoScan<'a> {
    target: &'a [u8],
    want: FsType<'a>,
    field: usize,
    field_len: usize,
    first_byte: u8,
    fstype_field: Option<usize>,
    mp_pos: usize,
    mp_ok: bool,
    esc_digits: u8,
    esc_value: u32,
    dev: [u8; 24],
    dev_len: usize,
    fstype: [u8; 32],
    fstype_len: usize,
    found: Option<(u32, u32)>,
}

impl<'a> MountinfoScan<'a> {
    pub(super) fn new(target: &'a [u8], want: FsType<'a>) -> MountinfoScan<'a> {
        MountinfoScan {
            target,
            want,
            field: 0,
            field_len: 0,
            first_byte: 0,
            fstype_field: None,
            mp_pos: 0,
            mp_ok: true,
            esc_digits: 0,
            esc_value: 0,
            dev: [0; 24],
            dev_len: 0,
            fstype: [0; 32],
            fstype_len: 0,
            found: None,
        }
    }

    pub(super) fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'\n' => {
                    self.end_field();
                    self.end_line();
                }
                b' ' => {
                    self.end_field();
                    self.field += 1;
                }
                _ => self.push(b),
            }
        }
    }

    pub(super) fn finish(mut self) -> Option<(u32, u32)> {
        if self.field > 0 || self.field_len > 0 {
            self.end_field();
            self.end_line();
        }
        self.found
    }

    fn push(&mut self, b: u8) {
        if self.field_len == 0 {
            self.first_byte = b;
        }
        self.field_len += 1;
        match self.field {
            2 => {
                if let Some(slot) = self.dev.get_mut(self.dev_len) {
                    *slot = b;
                }
                self.dev_len += 1;
            }
            4 => self.push_mountpoint(b),
            f if Some(f) == self.fstype_field => {
                if let Some(slot) = self.fstype.get_mut(self.fstype_len) {
                    *slot = b;
                }
                self.fstype_len += 1;
            }
            _ => {}
        }
    }

    fn push_mountpoint(&mut self, b: u8) {
        if self.esc_digits > 0 {
            if (b'0'..=b'7').contains(&b) {
                self.esc_value = self.esc_value * 8 + u32::from(b - b'0');
                self.esc_digits += 1;
                if self.esc_digits == 4 {
                    self.esc_digits = 0;
                    self.match_mountpoint_byte(self.esc_value as u8);
                }
            } else {
                // Not an escape the kernel writes: compare literally.
                self.esc_digits = 0;
                self.mp_ok = false;
            }
            return;
        }
        if b == b'\\' {
            self.esc_digits = 1;
            self.esc_value = 0;
            return;
        }
        self.match_mountpoint_byte(b);
    }

    fn match_mountpoint_byte(&mut self, b: u8) {
        if self.mp_ok && self.target.get(self.mp_pos) == Some(&b) {
            self.mp_pos += 1;
        } else {
            self.mp_ok = false;
        }
    }

    fn end_field(&mut self) {
        if self.field == 4 {
            self.mp_ok = self.mp_ok && self.esc_digits == 0 && self.mp_pos == self.target.len();
        }
        if self.field >= 6
            && self.fstype_field.is_none()
            && self.field_len == 1
            && self.first_byte == b'-'
        {
            self.fstype_field = Some(self.field + 1);
        }
        self.field_len = 0;
    }

    fn end_line(&mut self) {
        let complete = self.field >= 4 && self.fstype_field.is_some();
        if complete
            && self.mp_ok
            && self.type_matches()
            && let Some(dev) = parse_dev(self.dev.get(..self.dev_len).unwrap_or(&[]))
        {
            self.found = Some(dev);
        }
        self.field = 0;
        self.field_len = 0;
        self.fstype_field = None;
        self.mp_pos = 0;
        self.mp_ok = true;
        self.esc_digits = 0;
        self.dev_len = 0;
        self.fstype_len = 0;
    }

    fn type_matches(&self) -> bool {
        let Some(ty) = self.fstype.get(..self.fstype_len) else {
            return false; // longer than our buffer: not a type we look for
        };
        match self.want {
            FsType::Fuse => {
                ty == b"fuse"
                    || ty == b"fuseblk"
                    || ty.starts_with(b"fuse.")
                    || ty.starts_with(b"fuseblk.")
            }
            FsType::Named(name) => ty == name,
        }
    }
}

fn parse_dev(text: &[u8]) -> Option<(u32, u32)> {
    let mut parts = text.splitn(2, |&b| b == b':');
    let major = parse_u32(parts.next()?)?;
    let minor = parse_u32(parts.next()?)?;
    Some((major, minor))
}

fn parse_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    Some(value)
}
