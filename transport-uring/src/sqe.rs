//! Building the `IORING_OP_URING_CMD` SQEs of FUSE-over-io_uring.
//!
//! A FUSE ring command is a 128-byte SQE (`IORING_SETUP_SQE128`) whose
//! 80-byte command area holds a `fuse_uring_cmd_req` (`flags`, `commit_id`,
//! `qid`). REGISTER additionally passes the entry's two buffers as an iovec
//! array: `addr` points at it and `len` must be exactly 2.
//!
//! The io-uring crate's `UringCmd80` (0.7.15) sets `addr` but has no setter
//! for `len`, so [`register`] patches the field in the built entry at its
//! offset in the kernel's `struct io_uring_sqe` (24), an ABI fact checked at
//! compile time against the entry's size and by the tests below against an
//! opcode that sets `len` itself.

use fuselage_core::abi::{
    FUSE_URING_CMD_COMMIT_AND_FETCH, FUSE_URING_CMD_REGISTER, fuse_uring_cmd_req,
};
use io_uring::{opcode, squeue, types};
use static_assertions::const_assert_eq;
use zerocopy::IntoBytes;

/// Offset of `len` (u32) in `struct io_uring_sqe`: after opcode (u8), flags
/// (u8), ioprio (u16), fd (i32), off (u64) and addr (u64).
pub const SQE_LEN_OFFSET: usize = 24;
/// Offset of `addr` (u64) in `struct io_uring_sqe`.
pub const SQE_ADDR_OFFSET: usize = 16;

const_assert_eq!(core::mem::size_of::<squeue::Entry128>(), 128);
const_assert_eq!(core::mem::size_of::<squeue::Entry>(), 64);
const_assert_eq!(core::mem::align_of::<squeue::Entry128>(), 8);
// `len` is a whole u32 inside the first (classic) 64 bytes.
const_assert_eq!(SQE_LEN_OFFSET % 4, 0);
static_assertions::const_assert!(SQE_LEN_OFFSET + 4 <= 64);
static_assertions::const_assert!(core::mem::size_of::<fuse_uring_cmd_req>() <= 80);

/// The command area of a FUSE ring SQE.
fn cmd_area(commit_id: u64, qid: u16) -> [u8; 80] {
    let req = fuse_uring_cmd_req {
        flags: 0,
        commit_id,
        qid,
        ..Default::default()
    };
    let mut cmd = [0u8; 80];
    let bytes = req.as_bytes();
    cmd[..bytes.len()].copy_from_slice(bytes);
    cmd
}

/// Sets the `len` field of a built 128-byte SQE.
pub fn set_len(entry: &mut squeue::Entry128, len: u32) {
    let base = (entry as *mut squeue::Entry128).cast::<u8>();
    // SAFETY: `Entry128` is `repr(C)`, 128 bytes (asserted above), and begins
    // with the kernel's `struct io_uring_sqe`, whose `len` is the u32 at
    // offset 24 (kernel ABI, asserted in-bounds above and tested below).
    // `base` comes from a unique reference, so the write is exclusive; it is
    // unaligned-safe and writes plain integer bytes, valid for every field.
    unsafe { base.add(SQE_LEN_OFFSET).cast::<u32>().write_unaligned(len) };
}

/// Reads the `len` field of a 128-byte SQE (for tests and debugging).
pub fn get_len(entry: &squeue::Entry128) -> u32 {
    let base = (entry as *const squeue::Entry128).cast::<u8>();
    // SAFETY: as in `set_len`, offset 24..28 lies inside the entry; reading
    // integer bytes is valid for any contents.
    unsafe { base.add(SQE_LEN_OFFSET).cast::<u32>().read_unaligned() }
}

/// `FUSE_IO_URING_CMD_REGISTER` of one ring entry: `iovecs` points at two
/// iovecs (header buffer, payload buffer) that must stay valid until the
/// command has been issued (the kernel reads them at issue time and keeps
/// the buffers, not the array).
pub fn register(
    fd: types::Fixed,
    qid: u16,
    iovecs: *const libc::iovec,
    user_data: u64,
) -> squeue::Entry128 {
    let mut e = opcode::UringCmd80::new(fd, FUSE_URING_CMD_REGISTER)
        .cmd(cmd_area(0, qid))
        .addr(Some(iovecs as u64))
        .build()
        .user_data(user_data);
    set_len(&mut e, 2);
    e
}

/// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`: the reply for `commit_id` is in the
/// entry's buffers; the same command re-arms the entry for the next request.
pub fn commit_and_fetch(
    fd: types::Fixed,
    qid: u16,
    commit_id: u64,
    user_data: u64,
) -> squeue::Entry128 {
    opcode::UringCmd80::new(fd, FUSE_URING_CMD_COMMIT_AND_FETCH)
        .cmd(cmd_area(commit_id, qid))
        .build()
        .user_data(user_data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(e: &squeue::Entry128) -> [u8; 128] {
        // SAFETY: Entry128 is 128 bytes of plain data (asserted above).
        unsafe { core::mem::transmute_copy(e) }
    }

    #[test]
    fn len_offset_matches_an_opcode_that_sets_len() {
        // Read sets sqe->len to its length: find it at our offset.
        let read: squeue::Entry128 =
            opcode::Read::new(types::Fd(3), std::ptr::null_mut(), 0xA1B2_C3D4)
                .build()
                .into();
        assert_eq!(get_len(&read), 0xA1B2_C3D4);
        let b = bytes(&read);
        assert_eq!(
            &b[SQE_LEN_OFFSET..SQE_LEN_OFFSET + 4],
            &0xA1B2_C3D4u32.to_ne_bytes()
        );
    }

    #[test]
    fn register_has_len_two_addr_and_command() {
        let iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2];
        let e = register(types::Fixed(0), 7, iov.as_ptr(), 99);
        assert_eq!(get_len(&e), 2);
        let b = bytes(&e);
        assert_eq!(b[0], 46, "IORING_OP_URING_CMD");
        assert_eq!(
            &b[SQE_ADDR_OFFSET..SQE_ADDR_OFFSET + 8],
            &(iov.as_ptr() as u64).to_ne_bytes()
        );
        // cmd_op (u32 at offset 8, in the union with `off`).
        assert_eq!(&b[8..12], &FUSE_URING_CMD_REGISTER.to_ne_bytes());
        // The command area starts at offset 48: flags, commit_id, qid.
        assert_eq!(&b[48..56], &0u64.to_ne_bytes());
        assert_eq!(&b[56..64], &0u64.to_ne_bytes());
        assert_eq!(&b[64..66], &7u16.to_ne_bytes());
        assert_eq!(e.get_user_data(), 99);
        // Patching len touched nothing else: same bytes as without the patch
        // apart from 24..28.
        let plain = opcode::UringCmd80::new(types::Fixed(0), FUSE_URING_CMD_REGISTER)
            .cmd(cmd_area(0, 7))
            .addr(Some(iov.as_ptr() as u64))
            .build()
            .user_data(99);
        let p = bytes(&plain);
        for i in (0..128).filter(|i| !(SQE_LEN_OFFSET..SQE_LEN_OFFSET + 4).contains(i)) {
            assert_eq!(b[i], p[i], "byte {i}");
        }
        assert_eq!(get_len(&plain), 0);
    }

    #[test]
    fn commit_carries_commit_id_and_qid() {
        let e = commit_and_fetch(types::Fixed(0), 1, 0xDEAD_BEEF, 5);
        let b = bytes(&e);
        assert_eq!(&b[8..12], &FUSE_URING_CMD_COMMIT_AND_FETCH.to_ne_bytes());
        assert_eq!(&b[56..64], &0xDEAD_BEEFu64.to_ne_bytes());
        assert_eq!(&b[64..66], &1u16.to_ne_bytes());
        assert_eq!(get_len(&e), 0);
    }
}
