#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""condafsd serves every environment exactly as `condafs export ENV DIR --prefix
MOUNTPOINT/<hash>` writes it: every path, type, mode, size, mtime (ns), symlink target and
byte, for every corpus environment. Identical files (same bytes, mode and mtime, no prefix
inside) are one inode across environments with st_nlink counting their names, and files
that differ only in mtime or mode are not; a directory too large for one reply lists whole.
The root lists exactly the environments. Then
8 processes read every file for a while from a multithreaded daemon with a small block
cache and reading ahead (random ranges, half with O_DIRECT so that each reaches the daemon;
two read whole files front to back): every byte equals the export."""

import errno
import multiprocessing
import os
import random
import stat
import time

import fs_lib
import lib

t = fs_lib.FsHarness("fs_tree: the mount equals the export, shared inodes, the root")

with t.section("every corpus environment equals its export"):
    store, hashes = t.base_store()
    with t.daemon(store) as d:
        names = sorted(os.listdir(d.mnt))
        t.eq("the root lists the environments", names, sorted(hashes.values()))
        st = os.stat(d.mnt)
        t.check("the root is a directory 0755 owned by root",
                stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and
                st.st_uid == 0 and st.st_gid == 0, oct(st.st_mode))
        for missing in ["0" * 32, next(iter(hashes.values()))[:8], "tags", ".hidden"]:
            for attempt in ("first", "cached"):
                try:
                    os.stat(d.path(missing))
                    got = 0
                except OSError as e:
                    got = e.errno
                t.eq(f"{missing}: ENOENT ({attempt} lookup)", got, errno.ENOENT)
        envs = {}
        for name, h in sorted(hashes.items()):
            dest = t.path("export", h)
            fs_lib.export_env(t, store, h, dest, d.path(h))
            problems, counts, files = fs_lib.compare_mount(
                dest, d.path(h), needle=os.fsencode(d.mnt + "/"))
            lib.report_tree(t, f"{name}: the mount equals the export", problems,
                            dict(counts, relocated=sum(1 for f in files.values() if f[6])))
            envs[name] = files
        problems, shared = fs_lib.check_inodes(envs)
        t.check(f"identical files share one inode, different ones never "
                f"({shared} inodes shared)", not problems and shared > 1000,
                "\n".join(problems[:20]))
        rel = b"lib/python3.11/os.py"
        inos = {name: os.stat(d.path(h, os.fsdecode(rel))).st_ino for name, h in hashes.items()}
        t.eq("lib/python3.11/os.py: one st_ino in every environment", len(set(inos.values())),
             1, inos)


READERS, SECONDS = 8, 8
# Each random reader at least this many: more than the 1000 reads the check asks for.
MIN_READS = 1000 // (READERS - READERS // 4) + 1


def reader(seed, mnt, export, files, deadline, out):
    try:
        out.put(read_randomly(seed, mnt, export, files, deadline))
    except Exception as e:
        out.put((0, 0, [f"reader {seed}: {e!r}"]))


def read_whole(mnt, export, rel):
    try:
        fd = os.open(os.path.join(mnt, rel), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            got = b"".join(iter(lambda: os.read(fd, 131072), b""))
        finally:
            os.close(fd)
        with open(os.path.join(export, rel), "rb") as f:
            want = f.read()
        return [] if got == want else [f"{rel}: read whole, {len(got)} bytes, want {len(want)}"]
    except OSError as e:
        return [f"{rel}: read whole: {e}"]


def read_randomly(seed, mnt, export, files, deadline):
    """Random ranges of random files, from the mount and the export: the mismatches."""
    rng = random.Random(seed)
    reads, nbytes, bad = 0, 0, []
    total = sum(size for _, size in files)
    # Past the deadline only until a reader has made its share of the reads the check
    # wants: a loaded machine reads fewer in the time, and the check is of bytes.
    while ((time.monotonic() < deadline or (seed % 4 != 3 and reads < MIN_READS)) and
           len(bad) < 5):
        # Half the picks by file, half by byte, so large files get their share.
        if rng.random() < 0.5:
            rel, size = files[rng.randrange(len(files))]
        else:
            x = rng.randrange(total)
            for rel, size in files:
                if x < size:
                    break
                x -= size
        if seed % 4 == 3:
            # A sequential reader: whole files front to back, dropped from the page cache
            # first, so that the daemon sees a stream (and reads ahead of it).
            bad += read_whole(mnt, export, rel)
            reads += 1
            nbytes += size
            continue
        off = rng.randrange(size + 1) if size else 0
        length = rng.choice((1, 4096, 65536, 131072, 1 << 20, rng.randrange(1, 300000)))
        direct = rng.random() < 0.5
        try:
            fd = os.open(os.path.join(mnt, rel), os.O_RDONLY | (os.O_DIRECT if direct else 0))
            try:
                got = os.pread(fd, length, off)
                if not direct and rng.random() < 0.1:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            with open(os.path.join(export, rel), "rb") as f:
                f.seek(off)
                want = f.read(length)
            if got != want:
                bad.append(f"{rel} @{off}+{length} direct={direct}: {len(got)} bytes, "
                           f"want {len(want)}, differ")
        except OSError as e:
            bad.append(f"{rel} @{off}+{length} direct={direct}: {e}")
        reads += 1
        nbytes += len(got) if not bad else 0
    return reads, nbytes, bad


with t.section(f"{READERS} concurrent readers ({READERS // 4} sequential), {SECONDS}s, "
               "4 threads"):
    files = []
    for h in sorted(hashes.values()):
        files += [(os.path.join(h, rel), size) for rel, size in
                  fs_lib.list_files(t.path("export", h))]
    if not files:
        raise RuntimeError("no exports to compare with")
    # The same mount point: relocated bytes name it. A small block cache, so that blocks
    # are evicted and reads go around a full cache too; reading ahead on.
    with t.daemon(store, args=["--threads", "4", "--cache", "4", "--prefetch"]) as d:
        q = multiprocessing.Queue()
        deadline = time.monotonic() + SECONDS
        procs = [multiprocessing.Process(target=reader, args=(
            i, d.mnt, t.path("export"), files, deadline, q)) for i in range(READERS)]
        for p in procs:
            p.start()
        results = [q.get(timeout=SECONDS + 120) for _ in procs]
        for p in procs:
            p.join()
        reads = sum(r[0] for r in results)
        mb = sum(r[1] for r in results) / 1e6
        bad = [b for r in results for b in r[2]]
        t.check(f"{reads} random reads ({mb:.0f} MB) over {len(files)} files equal the export",
                not bad and reads > 1000, "\n".join(bad[:20]))
    t.rmtree(t.path("export"))

with t.section("hand-made: another mtime or mode is another inode; a large directory"):
    store = t.path("store-hand")
    a = lib.make_prefix(t.path("src", "a"), pkgs=[("same", "1.0", "h0_0")])
    b = lib.make_prefix(t.path("src", "b"), pkgs=[("same", "1.0", "h1_0")])
    body = "identical bytes, no prefix inside\n" * 100
    for p in (a, b):
        lib.write(os.path.join(p, "share", "same.txt"), body, 0o644, 1700000000123456789)
        lib.write(os.path.join(p, "share", "mtime.txt"), body + "m",
                  0o644, 1700000000123456789 if p == a else 1700000000123456788)
        lib.write(os.path.join(p, "share", "mode.txt"), body + "x", 0o644 if p == a else 0o755,
                  1700000000123456789)
        lib.write(os.path.join(p, "share", "prefix.txt"), f"here is {p}\n", 0o644,
                  1700000000123456789)
    # A directory listed in several calls (5000 long names: more than one buffer).
    names = sorted(f"{i:05}-" + "n" * 200 for i in range(5000))
    for n in names:
        lib.write(os.path.join(a, "big", n), n[:5])
    ha, hb = t.ingest_hash(store, a), t.ingest_hash(store, b)
    with t.daemon(store, t.path("mnt-hand")) as d:
        def st(h, n):
            return os.stat(d.path(h, "share", n))
        sa, sb = st(ha, "same.txt"), st(hb, "same.txt")
        t.check("same bytes, mode and mtime: one inode, st_nlink 2",
                sa.st_ino == sb.st_ino and sa.st_nlink == 2 and sb.st_nlink == 2,
                f"{sa.st_ino} {sb.st_ino} nlink {sa.st_nlink}")
        t.check("mtime differs by 1 ns: two inodes",
                st(ha, "mtime.txt").st_ino != st(hb, "mtime.txt").st_ino)
        t.check("mode differs: two inodes", st(ha, "mode.txt").st_ino != st(hb, "mode.txt").st_ino)
        t.check("prefix inside: two inodes, each with its own path",
                st(ha, "prefix.txt").st_ino != st(hb, "prefix.txt").st_ino)
        with open(d.path(ha, "share", "prefix.txt")) as f:
            t.eq("prefix.txt names the mount path", f.read(), f"here is {d.path(ha)}\n")
        big = d.path(ha, "big")
        t.eq("a directory of 5000 long names lists whole (readdir)", sorted(os.listdir(big)),
             names)
        got = sorted((e.name, e.stat().st_size) for e in os.scandir(big))
        t.eq("and whole with attributes (readdirplus)", got, [(n, 5) for n in names])
        r = t.run(["find", big, "-mindepth", "1", "-printf", "%f %s\n"])
        t.eq("and through find", sorted(r.out.splitlines()), [f"{n} 5" for n in names])
        t.check("st_ino is unique per directory",
                len({os.stat(d.path(h, x)).st_ino for h in (ha, hb) for x in ("", "share")}) == 4)

t.finish()
