//! File contents: writing, appending, truncating, mmap, fsync, a large file,
//! concurrent writers, holes (SEEK_DATA/SEEK_HOLE, punching) and a full
//! filesystem.

use super::*;
use crate::common::*;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Create, write, read back (through the page cache and from the server).
pub fn create_write_read(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("hello.txt");
    write(&p, b"hello, fuselage\n");
    assert_eq!(read(&p), b"hello, fuselage\n");
    let st = stat(&p);
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(st.st_size, 16);
    assert_eq!(st.st_nlink, 1);

    expect_errno(
        OpenOptions::new().write(true).create_new(true).open(&p),
        libc::EEXIST,
        "O_CREAT|O_EXCL on an existing file",
    );
    expect_errno(
        File::open(fs.join("missing")),
        libc::ENOENT,
        "open a missing file",
    );

    // Overwrite in the middle, then a larger file read back from the server.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open rw");
    f.write_at(b"HELLO", 0).expect("pwrite");
    let mut buf = [0u8; 16];
    f.read_exact_at(&mut buf, 0).expect("pread");
    assert_eq!(&buf, b"HELLO, fuselage\n");
    drop(f);
    assert_eq!(read_direct(&p), b"HELLO, fuselage\n");

    let big = fs.join("big");
    let data = pattern(1, 0, (3 * MIB + 123) as usize);
    write(&big, &data);
    let back = read_direct(&big);
    assert!(
        back == data,
        "1st difference at {:?}",
        first_difference(&back, &data)
    );
    assert!(read(&big) == data, "cached read differs");

    let names: HashSet<String> = fs.root_names().into_iter().collect();
    assert_eq!(
        names,
        HashSet::from(["hello.txt".to_string(), "big".to_string()])
    );
}

/// O_APPEND writes land at the end, from several descriptors, even pwrite.
pub fn append(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("log");
    write(&p, b"abc");
    let mut f = OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open O_APPEND");
    let mut g = OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open O_APPEND");
    f.write_all(b"def").expect("append");
    g.write_all(b"ghi").expect("append");
    f.write_all(b"jkl").expect("append");
    assert_eq!(read(&p), b"abcdefghijkl");
    // Linux: pwrite on an O_APPEND descriptor appends, whatever the offset.
    f.write_at(b"mno", 0).expect("pwrite O_APPEND");
    assert_eq!(read(&p), b"abcdefghijklmno");
    // A write through another descriptor grows the file; appends follow it.
    let h = OpenOptions::new().write(true).open(&p).expect("open");
    h.write_at(b"0123456789", 20).expect("pwrite past the end");
    g.write_all(b"pqr").expect("append");
    let mut want = b"abcdefghijklmno".to_vec();
    want.resize(20, 0);
    want.extend_from_slice(b"0123456789pqr");
    assert_eq!(read(&p), want);
    drop((f, g, h));
    assert_eq!(read_direct(&p), want);

    // O_APPEND|O_CREAT on a new file.
    let q = fs.join("new");
    let mut n = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&q)
        .expect("create O_APPEND");
    n.write_all(b"x").expect("append");
    n.write_all(b"y").expect("append");
    assert_eq!(read(&q), b"xy");
}

/// Shrinking and extending with ftruncate, truncate and O_TRUNC; extended
/// ranges read as zeros, also after a shrink (no stale data).
pub fn truncate(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("t");
    let data = pattern(2, 0, 10_000);
    write(&p, &data);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    f.set_len(4000).expect("ftruncate shrink");
    assert_eq!(f.metadata().expect("fstat").len(), 4000);
    assert_eq!(read(&p), &data[..4000]);
    f.set_len(12_000).expect("ftruncate extend");
    let mut want = data[..4000].to_vec();
    want.resize(12_000, 0);
    assert_eq!(stat(&p).st_size, 12_000);
    assert!(
        read(&p) == want,
        "cached read after shrink+extend differs at {:?}",
        first_difference(&read(&p), &want)
    );
    let direct = read_direct(&p);
    assert!(
        direct == want,
        "server data after shrink+extend differs at {:?} (stale bytes?)",
        first_difference(&direct, &want)
    );

    let c = cpath(&p);
    // SAFETY: valid C string.
    check(unsafe { libc::truncate(c.as_ptr(), 100) }).expect("truncate(2) shrink");
    assert_eq!(stat(&p).st_size, 100);
    assert_eq!(read_direct(&p), &data[..100]);
    // SAFETY: valid C string.
    check(unsafe { libc::truncate(c.as_ptr(), 3 * MIB as i64) }).expect("truncate(2) extend");
    let back = read_direct(&p);
    assert_eq!(back.len() as u64, 3 * MIB);
    assert_eq!(&back[..100], &data[..100]);
    assert!(
        back[100..].iter().all(|&b| b == 0),
        "extended range is not zero"
    );

    drop(f);
    let t = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .expect("open O_TRUNC");
    assert_eq!(t.metadata().expect("fstat").len(), 0);
    drop(t);
    assert_eq!(read(&p), b"");

    // SAFETY: valid C string.
    expect_raw_errno(
        check(unsafe { libc::truncate(c.as_ptr(), -1) }),
        libc::EINVAL,
        "truncate to -1",
    );
    let d = cpath(fs.path());
    // SAFETY: valid C string.
    expect_raw_errno(
        check(unsafe { libc::truncate(d.as_ptr(), 0) }),
        libc::EISDIR,
        "truncate a directory",
    );
}

/// MAP_SHARED mappings: read the file, write through the mapping, msync,
/// and find the bytes with read(2) and on the server.
pub fn mmap(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("m");
    let len = (64 * KIB + 100) as usize;
    let mut want = pattern(7, 0, len);
    write(&p, &want);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    // SAFETY: a fresh shared mapping of an open fd; unmapped below and only
    // accessed within `len`.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        map,
        libc::MAP_FAILED,
        "mmap MAP_SHARED: {}",
        io::Error::last_os_error()
    );
    // SAFETY: `map` is a live mapping of `len` bytes.
    let mapped = unsafe { std::slice::from_raw_parts_mut(map.cast::<u8>(), len) };
    assert!(
        mapped[..] == want[..],
        "mapping differs at {:?}",
        first_difference(mapped, &want)
    );

    let first = pattern(8, 0, 4096);
    let last = pattern(9, 0, 100);
    mapped[..4096].copy_from_slice(&first);
    mapped[len - 100..].copy_from_slice(&last);
    mapped[30_000] = 0xa5;
    want[..4096].copy_from_slice(&first);
    want[len - 100..].copy_from_slice(&last);
    want[30_000] = 0xa5;
    // SAFETY: `map` is a live mapping of `len` bytes.
    check(unsafe { libc::msync(map, len, libc::MS_SYNC) }).expect("msync");

    let mut other = File::open(&p).expect("open another fd");
    let mut got = Vec::new();
    other.read_to_end(&mut got).expect("read(2)");
    assert!(
        got == want,
        "read(2) after msync differs at {:?}",
        first_difference(&got, &want)
    );
    let direct = read_direct(&p);
    assert!(
        direct == want,
        "server data after msync differs at {:?}",
        first_difference(&direct, &want)
    );
    assert_eq!(
        stat(&p).st_size as usize,
        len,
        "size changed by writing through a mapping"
    );

    // SAFETY: unmapping the mapping made above; `mapped` is not used after.
    check(unsafe { libc::munmap(map, len) }).expect("munmap");

    // A private mapping's writes stay private.
    // SAFETY: as above, a fresh private mapping.
    let private = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        private,
        libc::MAP_FAILED,
        "mmap MAP_PRIVATE: {}",
        io::Error::last_os_error()
    );
    // SAFETY: a live mapping of at least one byte.
    unsafe { *private.cast::<u8>() ^= 0xff };
    // SAFETY: unmapping the mapping made above.
    check(unsafe { libc::munmap(private, len) }).expect("munmap");
    assert!(
        read_direct(&p) == want,
        "a MAP_PRIVATE write reached the file"
    );
}

/// fsync, fdatasync, directory fsync and syncfs succeed and keep the data.
pub fn fsync(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("f");
    let mut f = File::create(&p).expect("create");
    let data = pattern(10, 0, 200_000);
    f.write_all(&data).expect("write");
    f.sync_all().expect("fsync");
    f.write_all(b"tail").expect("write");
    f.sync_data().expect("fdatasync");
    // SAFETY: a valid fd.
    check(unsafe { libc::syncfs(f.as_raw_fd()) }).expect("syncfs");
    File::open(fs.path())
        .expect("open the root")
        .sync_all()
        .expect("fsync a directory");
    let d = fs.join("d");
    fs::create_dir(&d).expect("mkdir");
    File::open(&d)
        .expect("open a directory")
        .sync_data()
        .expect("fdatasync a directory");
    drop(f);
    let mut want = data;
    want.extend_from_slice(b"tail");
    assert!(read_direct(&p) == want, "data after fsync differs");
}

/// A 256 MiB file written as a stream and read back byte-exact, both from
/// the server (O_DIRECT) and through the page cache with readahead.
pub fn large_file_256m(setup: &Setup) {
    const SIZE: u64 = 256 * MIB;
    const CHUNK: usize = MIB as usize;
    const SEED: u64 = 0x256;
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("large");
    let started = Instant::now();

    let mut f = File::create(&p).expect("create");
    let mut buf = vec![0u8; CHUNK];
    let mut written = StreamHash::default();
    for i in 0..SIZE / CHUNK as u64 {
        fill_pattern_fast(SEED, i * CHUNK as u64, &mut buf);
        written.update(&buf);
        f.write_all(&buf)
            .unwrap_or_else(|e| panic!("write at {}: {e}", i * CHUNK as u64));
    }
    f.sync_all().expect("fsync");
    drop(f);
    assert_eq!(stat(&p).st_size as u64, SIZE);
    let written = written.finish();

    // From the server.
    let fd = open_raw(&p, libc::O_RDONLY | libc::O_DIRECT, 0).expect("open O_DIRECT");
    let mut abuf = AlignedBuf::page_aligned(CHUNK);
    let mut read_back = StreamHash::default();
    let mut first_bad = None;
    for i in 0..SIZE / CHUNK as u64 {
        let off = i * CHUNK as u64;
        let n = pread_full(fd.as_raw_fd(), &mut abuf, off)
            .unwrap_or_else(|e| panic!("O_DIRECT read at {off}: {e}"));
        assert_eq!(n, CHUNK, "short O_DIRECT read at {off}");
        read_back.update(&abuf);
        if first_bad.is_none() {
            fill_pattern_fast(SEED, off, &mut buf);
            first_bad = first_difference(&abuf, &buf).map(|d| off + d as u64);
        }
    }
    assert_eq!(
        pread_full(fd.as_raw_fd(), &mut abuf[..1], SIZE).expect("read at EOF"),
        0
    );
    assert_eq!(
        first_bad, None,
        "O_DIRECT read-back differs first at byte {first_bad:?}"
    );
    assert_eq!(read_back.finish(), written, "O_DIRECT read-back hash");
    drop(fd);

    // Through the page cache (dropped first), with readahead.
    let mut f = File::open(&p).expect("open");
    // SAFETY: a valid fd.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut cached = StreamHash::default();
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read at {total}: {e}"));
        if n == 0 {
            break;
        }
        cached.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    assert_eq!(cached.finish(), written, "buffered read-back hash");
    eprintln!("256 MiB written and read twice in {:?}", started.elapsed());
}

/// 8 threads read and write disjoint regions of two shared files at once;
/// everything is checked at the end from the server.
pub fn concurrent_8_threads(setup: &Setup) {
    const THREADS: u64 = 8;
    const REGION: u64 = MIB;
    const BLOCK: usize = 64 * KIB as usize;
    const ROUNDS: u64 = 4;
    let fs = MountedFs::mount(setup, &[]);
    let files = [fs.join("shared-a"), fs.join("shared-b")];
    for f in &files {
        File::create(f)
            .expect("create")
            .set_len(THREADS * REGION)
            .expect("size");
    }
    let seed = |t: u64, round: u64, file: usize| t * 1000 + round * 10 + file as u64;
    let (tx, rx) = mpsc::channel();
    for t in 0..THREADS {
        let files = files.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(|| {
                // Even threads go to the server directly, odd ones through the cache.
                let flags = if t % 2 == 0 {
                    libc::O_RDWR | libc::O_DIRECT
                } else {
                    libc::O_RDWR
                };
                let fds: Vec<_> = files
                    .iter()
                    .map(|f| open_raw(f, flags, 0).expect("open"))
                    .collect();
                let mut buf = AlignedBuf::page_aligned(BLOCK);
                let mut check = AlignedBuf::page_aligned(BLOCK);
                for round in 0..ROUNDS {
                    for (i, fd) in fds.iter().enumerate() {
                        for b in 0..REGION / BLOCK as u64 {
                            let off = t * REGION + b * BLOCK as u64;
                            fill_pattern_fast(seed(t, round, i), off, &mut buf);
                            pwrite_full(fd.as_raw_fd(), &buf, off)
                                .unwrap_or_else(|e| panic!("thread {t} pwrite at {off}: {e}"));
                        }
                    }
                    for (i, fd) in fds.iter().enumerate() {
                        for b in 0..REGION / BLOCK as u64 {
                            let off = t * REGION + b * BLOCK as u64;
                            let n = pread_full(fd.as_raw_fd(), &mut check, off).expect("pread");
                            assert_eq!(n, BLOCK, "thread {t} short read at {off}");
                            fill_pattern_fast(seed(t, round, i), off, &mut buf);
                            assert!(
                                check[..] == buf[..],
                                "thread {t} round {round} file {i}: read-back differs at {off}+{:?}",
                                first_difference(&check, &buf)
                            );
                        }
                    }
                }
            });
            let _ = tx.send((t, result.err().map(|e| panic_message(&*e))));
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut failures = Vec::new();
    for _ in 0..THREADS {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, None)) => {}
            Ok((t, Some(msg))) => failures.push(format!("thread {t}: {msg}")),
            Err(_) => panic!(
                "threads still running after 40 s (hung requests?); failures so far: {failures:?}"
            ),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    for (i, f) in files.iter().enumerate() {
        let data = read_direct(f);
        assert_eq!(data.len() as u64, THREADS * REGION);
        let mut want = vec![0u8; REGION as usize];
        for t in 0..THREADS {
            let off = t * REGION;
            fill_pattern_fast(seed(t, ROUNDS - 1, i), off, &mut want);
            let got = &data[off as usize..(off + REGION) as usize];
            assert!(
                got == want,
                "{}: region of thread {t} differs at {:?}",
                f.display(),
                first_difference(got, &want)
            );
        }
    }
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Sparse files: holes read as zeros, take no space, and SEEK_DATA /
/// SEEK_HOLE find them.
pub fn sparse_seek(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .expect("create");
    let a = pattern(11, MIB, 4096);
    let b = pattern(12, 3 * MIB, 4096);
    f.write_all_at(&a, MIB).expect("write at 1 MiB");
    f.write_all_at(&b, 3 * MIB).expect("write at 3 MiB");
    f.set_len(4 * MIB).expect("size 4 MiB");
    let st = fstat(f.as_raw_fd()).expect("fstat");
    assert_eq!(st.st_size as u64, 4 * MIB);
    assert!(
        (st.st_blocks as u64) * 512 < MIB,
        "a file with 8 KiB of data takes {} blocks of 512",
        st.st_blocks
    );

    let data = read_direct(&p);
    assert!(
        data[..MIB as usize].iter().all(|&x| x == 0),
        "leading hole not zero"
    );
    assert_eq!(&data[MIB as usize..(MIB + 4096) as usize], &a[..]);
    assert!(
        data[(MIB + 4096) as usize..(3 * MIB) as usize]
            .iter()
            .all(|&x| x == 0),
        "middle hole not zero"
    );
    assert_eq!(&data[(3 * MIB) as usize..(3 * MIB + 4096) as usize], &b[..]);
    assert!(
        data[(3 * MIB + 4096) as usize..].iter().all(|&x| x == 0),
        "trailing hole not zero"
    );

    let fd = f.as_raw_fd();
    assert_eq!(
        lseek(fd, 0, libc::SEEK_HOLE),
        Ok(0),
        "SEEK_HOLE at 0 (a hole starts the file)"
    );
    let d1 = lseek(fd, 0, libc::SEEK_DATA).expect("SEEK_DATA from 0");
    assert!(
        d1 > 0 && d1 as u64 <= MIB,
        "SEEK_DATA from 0 = {d1}: the hole before 1 MiB was not seen"
    );
    let h1 = lseek(fd, MIB, libc::SEEK_HOLE).expect("SEEK_HOLE from 1 MiB");
    assert!(
        (MIB + 4096..=3 * MIB).contains(&(h1 as u64)),
        "SEEK_HOLE from 1 MiB = {h1}"
    );
    let d2 = lseek(fd, h1 as u64, libc::SEEK_DATA).expect("SEEK_DATA after the first extent");
    assert!(
        d2 > h1 && d2 as u64 <= 3 * MIB,
        "SEEK_DATA from {h1} = {d2}"
    );
    let h2 = lseek(fd, 3 * MIB, libc::SEEK_HOLE).expect("SEEK_HOLE from 3 MiB");
    assert!(
        (3 * MIB + 4096..=4 * MIB).contains(&(h2 as u64)),
        "SEEK_HOLE from 3 MiB = {h2}"
    );
    expect_raw_errno(
        lseek(fd, 3 * MIB + MIB / 2, libc::SEEK_DATA),
        libc::ENXIO,
        "SEEK_DATA in the trailing hole",
    );
    expect_raw_errno(
        lseek(fd, 4 * MIB, libc::SEEK_DATA),
        libc::ENXIO,
        "SEEK_DATA at EOF",
    );
    expect_raw_errno(
        lseek(fd, 4 * MIB, libc::SEEK_HOLE),
        libc::ENXIO,
        "SEEK_HOLE at EOF",
    );
    assert_eq!(
        lseek(fd, 4 * MIB - 1, libc::SEEK_HOLE),
        Ok((4 * MIB - 1) as i64),
        "SEEK_HOLE inside the trailing hole"
    );
}

/// fallocate(PUNCH_HOLE|KEEP_SIZE) zeroes a range, frees its space and
/// keeps the size.
pub fn punch_hole(setup: &Setup) {
    let fs = MountedFs::mount(setup, &[]);
    let p = fs.join("punch");
    let data = pattern(13, 0, MIB as usize);
    write(&p, &data);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    let fd = f.as_raw_fd();
    let blocks_before = fstat(fd).expect("fstat").st_blocks;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: a valid fd.
    check(unsafe { libc::fallocate(fd, mode, (256 * KIB) as i64, (256 * KIB) as i64) })
        .expect("fallocate PUNCH_HOLE");
    let st = fstat(fd).expect("fstat");
    assert_eq!(st.st_size as u64, MIB, "KEEP_SIZE");
    assert!(
        st.st_blocks < blocks_before,
        "punching 256 KiB freed no blocks ({blocks_before} -> {})",
        st.st_blocks
    );

    let mut want = data.clone();
    want[(256 * KIB) as usize..(512 * KIB) as usize].fill(0);
    let direct = read_direct(&p);
    assert!(
        direct == want,
        "server data after punch differs at {:?}",
        first_difference(&direct, &want)
    );
    let mut cached = vec![0u8; MIB as usize];
    f.read_exact_at(&mut cached, 0).expect("read");
    assert!(
        cached == want,
        "cached data after punch differs at {:?}",
        first_difference(&cached, &want)
    );
    assert_eq!(
        lseek(fd, 0, libc::SEEK_HOLE),
        Ok((256 * KIB) as i64),
        "SEEK_HOLE finds the punched hole"
    );
    assert_eq!(
        lseek(fd, 256 * KIB, libc::SEEK_DATA),
        Ok((512 * KIB) as i64),
        "SEEK_DATA after the punched hole"
    );

    // A punch reaching past EOF keeps the size too.
    // SAFETY: a valid fd.
    check(unsafe { libc::fallocate(fd, mode, (900 * KIB) as i64, MIB as i64) })
        .expect("punch past EOF");
    want[(900 * KIB) as usize..].fill(0);
    assert_eq!(fstat(fd).expect("fstat").st_size as u64, MIB);
    assert!(read_direct(&p) == want, "data after punching the tail");
}

/// Writing past `--size 16M` fails with ENOSPC, and space comes back after
/// unlink.
pub fn enospc(setup: &Setup) {
    if !memfs_only(setup, "--size") {
        return;
    }
    const SIZE: u64 = 16 * MIB;
    let fs = MountedFs::mount(setup, &["--size", "16M"]);
    let p = fs.join("fill");
    let mut f = File::create(&p).expect("create");
    let chunk = pattern(14, 0, MIB as usize);
    let (accepted, failure) = write_until_error(&mut f, &chunk, 2 * SIZE);
    let failure = failure.unwrap_or_else(|| {
        panic!("wrote {accepted} bytes into a 16 MiB filesystem without an error")
    });
    assert_eq!(
        failure.raw_os_error(),
        Some(libc::ENOSPC),
        "filling the filesystem: {failure} after {accepted} bytes"
    );
    assert!(
        accepted <= SIZE,
        "accepted {accepted} bytes, more than --size {SIZE}"
    );
    assert!(
        accepted >= SIZE / 2,
        "only {accepted} bytes fitted into --size {SIZE}"
    );
    assert_eq!(
        fstat(f.as_raw_fd()).expect("fstat").st_size as u64,
        accepted,
        "size after ENOSPC"
    );
    let st = statvfs(fs.path());
    assert!(
        st.f_bavail * st.f_frsize.max(1) < MIB,
        "statfs shows {} bytes available when full",
        st.f_bavail * st.f_frsize
    );
    drop(f);
    expect_errno(
        fs::write(fs.join("more"), &chunk),
        libc::ENOSPC,
        "a second file when full",
    );

    fs::remove_file(&p).expect("unlink");
    let _ = fs::remove_file(fs.join("more"));
    let freed = wait_until(Duration::from_secs(5), || {
        let st = statvfs(fs.path());
        st.f_bavail * st.f_frsize >= 8 * MIB
    });
    assert!(freed, "space not returned after unlink");
    write(&fs.join("after"), &chunk);
    assert!(read_direct(&fs.join("after")) == chunk);
}
