#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: valid FUSE requests.

    python3 fuzz/gen_corpus.py      # from the repository root (or anywhere)

Creates fuzz/corpus/parse/* and fuzz/corpus/dispatch/* (overwriting the
files it owns, leaving others alone). Layouts follow fuse.h (x86_64,
little-endian) and the input formats documented in
fuzz/src/parse_harness.rs and fuzz/src/dispatch_harness.rs.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# Opcodes.
LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK = 1, 2, 3, 4, 5, 6
MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE = 8, 9, 10, 11, 12, 13, 14, 15, 16
STATFS, RELEASE, FSYNC, SETXATTR, GETXATTR, LISTXATTR = 17, 18, 20, 21, 22, 23
REMOVEXATTR, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR = 24, 25, 26, 27, 28, 29
FSYNCDIR, GETLK, SETLK, SETLKW, ACCESS, CREATE, INTERRUPT = 30, 31, 32, 33, 34, 35, 36
BMAP, DESTROY, IOCTL, POLL, NOTIFY_REPLY, BATCH_FORGET = 37, 38, 39, 40, 41, 42
FALLOCATE, READDIRPLUS, RENAME2, LSEEK, COPY_FILE_RANGE = 43, 44, 45, 46, 47
SETUPMAPPING, REMOVEMAPPING, SYNCFS, TMPFILE, STATX, COPY_FILE_RANGE_64 = 48, 49, 50, 51, 52, 53

# Every INIT flag the kernel may offer (flags, flags2).
ALL_FLAGS = 0xFFFFFFFF
ALL_FLAGS2 = 0xFFFFFFFF

_unique = [100]


def header(opcode, body_len, nodeid=1, extlen=0):
    _unique[0] += 2
    return struct.pack(
        "<IIQQIIIHH",
        40 + body_len,
        opcode,
        _unique[0],
        nodeid,
        1000,  # uid
        1000,  # gid
        4242,  # pid
        extlen // 8,
        0,
    )


def msg(opcode, arg=b"", payload=b"", nodeid=1, ext=b""):
    body = arg + payload + ext
    return header(opcode, len(body), nodeid, len(ext)) + body


def name(s):
    return s.encode() + b"\0"


def init(minor=45):
    arg = struct.pack("<IIIII", 7, minor, 128 * 1024, ALL_FLAGS, ALL_FLAGS2) + bytes(44)
    return msg(INIT, arg, nodeid=0)


def read_in(fh, offset, size, read_flags=0, lock_owner=0, flags=0):
    return struct.pack("<QQIIQII", fh, offset, size, read_flags, lock_owner, flags, 0)


def write_in(fh, offset, size, write_flags=0, lock_owner=0, flags=0):
    return struct.pack("<QQIIQII", fh, offset, size, write_flags, lock_owner, flags, 0)


def setattr_in(valid, size=0, mode=0o644):
    return struct.pack(
        "<IIQQQQQQIIIIIIII",
        valid, 0, 0, size, 0, 1, 2, 3, 4, 5, 6, mode, 0, 1000, 1000, 0,
    )


def lk_in(typ=1, flags=0):
    lock = struct.pack("<QQII", 0, 0x7FFFFFFFFFFFFFFF, typ, 4242)
    return struct.pack("<QQ", 3, 77) + lock + struct.pack("<II", flags, 0)


def secctx_ext():
    # fuse_secctx_header + one fuse_secctx + "security.selinux\0" + context,
    # padded to 8 (FUSE_SECURITY_CTX on CREATE / MKDIR / ...).
    ctx_name = b"security.selinux\0"
    ctx_val = b"system_u:object_r:tmp_t:s0\0"
    one = struct.pack("<II", len(ctx_val), 0) + ctx_name + ctx_val
    one += bytes(-len(one) % 8)
    body = struct.pack("<II", 8 + len(one), 1) + one
    return body


def requests(setxattr_ext=False):
    """(label, message) pairs of well-formed requests."""
    data4k = bytes((i * 7) & 0xFF for i in range(4096))
    sx = (
        struct.pack("<IIII", 5, 1, 1, 0) if setxattr_ext else struct.pack("<II", 5, 1)
    )
    return [
        ("init", init()),
        ("init_7_22", init(22)),
        ("lookup", msg(LOOKUP, payload=name("hello.txt"))),
        ("forget", msg(FORGET, struct.pack("<Q", 3), nodeid=5)),
        ("getattr", msg(GETATTR, struct.pack("<IIQ", 0, 0, 0), nodeid=5)),
        ("getattr_fh", msg(GETATTR, struct.pack("<IIQ", 1, 0, 9), nodeid=5)),
        ("setattr", msg(SETATTR, setattr_in(0x1 | 0x8 | 0x10 | 0x80, size=100), nodeid=5)),
        ("readlink", msg(READLINK, nodeid=6)),
        ("symlink", msg(SYMLINK, payload=name("link") + name("/target/path"))),
        ("mknod", msg(MKNOD, struct.pack("<IIII", 0o10644, 0, 0o22, 0), name("fifo"))),
        ("mkdir", msg(MKDIR, struct.pack("<II", 0o755, 0o22), name("dir"))),
        ("mkdir_secctx", msg(MKDIR, struct.pack("<II", 0o755, 0o22), name("d2"), ext=secctx_ext())),
        ("unlink", msg(UNLINK, payload=name("hello.txt"))),
        ("rmdir", msg(RMDIR, payload=name("dir"))),
        ("rename", msg(RENAME, struct.pack("<Q", 1), name("a") + name("b"))),
        ("rename2", msg(RENAME2, struct.pack("<QII", 1, 2, 0), name("a") + name("b"))),
        ("link", msg(LINK, struct.pack("<Q", 5), name("hard"))),
        ("open", msg(OPEN, struct.pack("<II", 2, 0), nodeid=5)),
        ("read", msg(READ, read_in(9, 0, 4096), nodeid=5)),
        ("read_lockowner", msg(READ, read_in(9, 8192, 65536, 2, 77), nodeid=5)),
        ("write", msg(WRITE, write_in(9, 0, 4096), data4k, nodeid=5)),
        ("write_small", msg(WRITE, write_in(9, 10, 3, 1), b"abc", nodeid=5)),
        ("statfs", msg(STATFS)),
        ("release", msg(RELEASE, struct.pack("<QIIQ", 9, 2, 0, 0), nodeid=5)),
        ("fsync", msg(FSYNC, struct.pack("<QII", 9, 1, 0), nodeid=5)),
        ("setxattr", msg(SETXATTR, sx, name("user.test") + b"value", nodeid=5)),
        ("getxattr", msg(GETXATTR, struct.pack("<II", 64, 0), name("user.test"), nodeid=5)),
        ("getxattr_size", msg(GETXATTR, struct.pack("<II", 0, 0), name("user.test"), nodeid=5)),
        ("listxattr", msg(LISTXATTR, struct.pack("<II", 4096, 0), nodeid=5)),
        ("removexattr", msg(REMOVEXATTR, payload=name("user.test"), nodeid=5)),
        ("flush", msg(FLUSH, struct.pack("<QIIQ", 9, 0, 0, 77), nodeid=5)),
        ("opendir", msg(OPENDIR, struct.pack("<II", 0, 0))),
        ("readdir", msg(READDIR, read_in(1, 0, 4096))),
        ("readdir_off", msg(READDIR, read_in(1, 5, 200))),
        ("readdirplus", msg(READDIRPLUS, read_in(1, 0, 4096))),
        ("readdirplus_off", msg(READDIRPLUS, read_in(1, 3, 1000))),
        ("releasedir", msg(RELEASEDIR, struct.pack("<QIIQ", 1, 0, 0, 0))),
        ("fsyncdir", msg(FSYNCDIR, struct.pack("<QII", 1, 0, 0))),
        ("getlk", msg(GETLK, lk_in(), nodeid=5)),
        ("setlk", msg(SETLK, lk_in(1), nodeid=5)),
        ("setlkw_flock", msg(SETLKW, lk_in(1, 1), nodeid=5)),
        ("access", msg(ACCESS, struct.pack("<II", 4, 0), nodeid=5)),
        ("create", msg(CREATE, struct.pack("<IIII", 0o102, 0o100644, 0o22, 0), name("new"))),
        ("create_secctx", msg(CREATE, struct.pack("<IIII", 0o102, 0o100644, 0o22, 0), name("n2"), ext=secctx_ext())),
        ("interrupt", msg(INTERRUPT, struct.pack("<Q", 101), nodeid=0)),
        ("bmap", msg(BMAP, struct.pack("<QII", 7, 4096, 0), nodeid=5)),
        ("ioctl", msg(IOCTL, struct.pack("<QIIQII", 9, 0, 0x5401, 0, 4, 8), b"\1\2\3\4", nodeid=5)),
        ("poll", msg(POLL, struct.pack("<QQII", 9, 1, 1, 1), nodeid=5)),
        ("notify_reply", msg(NOTIFY_REPLY, struct.pack("<QQIIQQ", 0, 0, 4, 0, 0, 0), b"data", nodeid=5)),
        ("batch_forget", msg(BATCH_FORGET, struct.pack("<II", 3, 0), b"".join(struct.pack("<QQ", n, 1) for n in (5, 6, 7)), nodeid=0)),
        ("fallocate", msg(FALLOCATE, struct.pack("<QQQII", 9, 0, 4096, 0, 0), nodeid=5)),
        ("lseek", msg(LSEEK, struct.pack("<QQII", 9, 0, 3, 0), nodeid=5)),
        ("copy_file_range", msg(COPY_FILE_RANGE, struct.pack("<QQQQQQQ", 9, 0, 6, 10, 0, 4096, 0), nodeid=5)),
        ("copy_file_range_64", msg(COPY_FILE_RANGE_64, struct.pack("<QQQQQQQ", 9, 0, 6, 10, 0, 1 << 33, 0), nodeid=5)),
        ("setupmapping", msg(SETUPMAPPING, struct.pack("<QQQQQ", 9, 0, 4096, 1, 0), nodeid=5)),
        ("removemapping", msg(REMOVEMAPPING, struct.pack("<I", 1), struct.pack("<QQ", 0, 4096), nodeid=5)),
        ("syncfs", msg(SYNCFS, struct.pack("<Q", 0))),
        ("tmpfile", msg(TMPFILE, struct.pack("<IIII", 0o2, 0o100600, 0o22, 0), name("tmp"))),
        ("statx", msg(STATX, struct.pack("<IIQII", 0, 0, 0, 0, 0xFFF), nodeid=5)),
        ("destroy", msg(DESTROY, nodeid=0)),
    ]


def arg_len(m):
    """Length of the fixed argument struct in a message built above (for the
    canonical header / argument / payload split of parse seeds)."""
    fixed = {
        FORGET: 8, GETATTR: 16, SETATTR: 88, MKNOD: 16, MKDIR: 8, RENAME: 8,
        LINK: 8, OPEN: 8, READ: 40, WRITE: 40, RELEASE: 24, FSYNC: 16,
        SETXATTR: 8, GETXATTR: 8, LISTXATTR: 8, FLUSH: 24, INIT: 64,
        OPENDIR: 8, READDIR: 40, RELEASEDIR: 24, FSYNCDIR: 16, GETLK: 48,
        SETLK: 48, SETLKW: 48, ACCESS: 8, CREATE: 16, INTERRUPT: 8, BMAP: 16,
        IOCTL: 32, POLL: 24, NOTIFY_REPLY: 40, BATCH_FORGET: 8, FALLOCATE: 32,
        READDIRPLUS: 40, RENAME2: 16, LSEEK: 24, COPY_FILE_RANGE: 56,
        SETUPMAPPING: 40, REMOVEMAPPING: 4, SYNCFS: 8, TMPFILE: 16, STATX: 24,
        COPY_FILE_RANGE_64: 56,
    }
    opcode = struct.unpack_from("<I", m, 4)[0]
    return fixed.get(opcode, 0)


def frame(m, ctl=0, mode=0):
    return struct.pack("<BBH", ctl, mode, len(m)) + m


def write(target, label, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, label), "wb") as f:
        f.write(data)


def main():
    # parse: [split_a u16][split_b u16][message], split canonically.
    for label, m in requests():
        write("parse", label, struct.pack("<HH", 40, 40 + arg_len(m)) + m)
    for label, m in requests(setxattr_ext=True):
        if label == "setxattr":
            write("parse", "setxattr_ext", struct.pack("<HH", 40, 56) + m)

    # dispatch: [flags][init_mode] + frames. flags bit 0: INIT (7.45) first.
    for label, m in requests():
        if label.startswith("init"):
            continue
        write("dispatch", label, bytes([0x01, 0x00]) + frame(m))
    # Sessions: INIT in the stream, then a typical sequence, the same sent
    # through dispatch_segments with the ring's header areas, and DESTROY.
    reqs = dict(requests())
    seq = ["lookup", "getattr", "open", "read", "write", "flush", "release",
           "opendir", "readdirplus", "releasedir", "forget", "batch_forget"]
    write("dispatch", "session",
          bytes([0x00, 0x00]) + frame(reqs["init"]) + b"".join(frame(reqs[k]) for k in seq))
    write("dispatch", "session_segments",
          bytes([0x01, 0x00]) + b"".join(frame(reqs[k], ctl=0x06, mode=i) for i, k in enumerate(seq)))
    write("dispatch", "session_modes",
          bytes([0x01, 0x09]) + b"".join(frame(reqs[k], mode=0x5A + i) for i, k in enumerate(seq))
          + frame(reqs["destroy"]) + frame(reqs["getattr"]))
    write("dispatch", "readonly_session",
          bytes([0x11, 0x00]) + frame(reqs["create"]) + frame(reqs["write"]) + frame(reqs["open"]))
    write("dispatch", "before_init", bytes([0x00, 0x00]) + frame(reqs["getattr"]) + frame(reqs["forget"]))
    ext = dict(requests(setxattr_ext=True))
    write("dispatch", "setxattr_ext", bytes([0x01, 0x08]) + frame(ext["setxattr"]))


if __name__ == "__main__":
    main()
