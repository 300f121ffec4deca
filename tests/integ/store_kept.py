#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What ingest must keep exactly, through ingest -> export: mode bits (setuid, setgid and
sticky stripped with a warning naming the path), mtimes to the nanosecond (odd, zero,
before 1970, far future; files, directories and symlinks), file names with any bytes but
'/' and NUL, paths longer than PATH_MAX, hard links, empty files and directories, and a
sparse 5 GiB file (ingested fast, exported equal and still sparse)."""

import os
import stat
import time

import lib

t = lib.Harness("store_kept: modes, mtimes, names, deep paths, hard links, sparse files")
store = t.path("store")

NS = [1700000000123456789, 1700000000000000001, 999999999, 0, -1500000001,
      4102444800999999999]


def set_mtime(path, ns, dir_fd=None):
    os.utime(path, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)


with t.section("modes, mtimes, names, hard links, empty files and directories"):
    K = os.path.realpath(t.path("env-kept"))
    KB = K.encode()
    lib.make_prefix(K, pkgs=[("kept", "1.0", "h0_0")])
    names = ["new\nline", os.fsdecode(b"bad-utf8-\xff\xfe"), "with space ", " leading", "tab\tname",
             "\u00fcml\u00e4ut", "-dash", "*?[glob]", "back\\slash", "'quote\"", "x" * 255, ".hidden",
             "..dots", "\x01ctl"]
    for i, n in enumerate(names):
        lib.write(os.path.join(K, "names", n), f"file {i}\n")
    os.makedirs(os.path.join(K, "names", "dir\nwith newline", "sub"))
    os.symlink("../names/" + names[0], os.path.join(K, "names", "link\xa0" + "to newline"))
    modes = {"m644": 0o644, "m755": 0o755, "m600": 0o600, "m000": 0o000, "m444": 0o444,
             "m4755-setuid": 0o4755, "m2755-setgid": 0o2755, "m6711-both": 0o6711,
             "m1644-sticky": 0o1644}
    for n, m in modes.items():
        lib.write(os.path.join(K, "modes", n), n + "\n", mode=m)
    for n, m in {"d1777-sticky": 0o1777, "d2775-setgid": 0o2775, "d700": 0o700,
                 "d555": 0o555, "d000": 0o000}.items():
        p = os.path.join(K, "modes", n)
        os.makedirs(p)
        lib.write(os.path.join(p, "inside"), "x")
        os.chmod(p, m)
    # empty files and directories
    lib.write(os.path.join(K, "empty", "file"), b"")
    lib.write(os.path.join(K, "empty", "file-0755"), b"", mode=0o755)
    os.makedirs(os.path.join(K, "empty", "dir", "nested-empty"))
    os.makedirs(os.path.join(K, "empty", "leaf-dir"))
    # hard links: three names of one inode in two directories, a relocated file with two
    # names, an empty file with two names, and a file whose other name is outside the prefix
    lib.write(os.path.join(K, "links", "a"), b"shared content\n" * 500)
    os.makedirs(os.path.join(K, "links", "sub"))
    os.link(os.path.join(K, "links", "a"), os.path.join(K, "links", "b"))
    os.link(os.path.join(K, "links", "a"), os.path.join(K, "links", "sub", "c"))
    lib.write(os.path.join(K, "links", "reloc.txt"), b"prefix=" + KB + b"\n")
    os.link(os.path.join(K, "links", "reloc.txt"), os.path.join(K, "links", "sub", "reloc2.txt"))
    lib.write(os.path.join(K, "links", "empty1"), b"")
    os.link(os.path.join(K, "links", "empty1"), os.path.join(K, "links", "empty2"))
    lib.write(os.path.join(K, "links", "outside-too"), b"one name here, one outside\n")
    os.link(os.path.join(K, "links", "outside-too"), t.path("outside-name"))
    lib.write(os.path.join(K, "links", "same-bytes-1"), b"same bytes, two inodes\n")
    lib.write(os.path.join(K, "links", "same-bytes-2"), b"same bytes, two inodes\n")
    # mtimes: every node gets one, leaves first (creating children changes a directory's)
    i = 0
    for dirpath, dirnames, filenames in os.walk(K, topdown=False):
        for n in filenames + dirnames:
            set_mtime(os.path.join(dirpath, n), NS[i % len(NS)])
            i += 1
    set_mtime(os.path.join(K, "links", "a"), NS[0] + 2)
    set_mtime(os.path.join(K, "names", "-dash"), -1500000001)
    set_mtime(os.path.join(K, "empty", "leaf-dir"), -1)
    set_mtime(os.path.join(K, "names", "link\xa0to newline"), 1)
    os.chmod(K, 0o750)
    set_mtime(K, 1600000000000000007)

    r = t.ingest(store, K)
    t.ok("ingest succeeds", r)
    h = r.out.strip()
    for n in ("m4755-setuid", "m2755-setgid", "m6711-both", "m1644-sticky", "d1777-sticky",
              "d2775-setgid"):
        t.check(f"a warning names modes/{n}",
                any(f"{K}/modes/{n}" in w and "not kept" in w for w in r.warnings()), r)
    t.eq("one warning per path with such bits, nothing else on stderr",
         (len(r.warnings()), r.errors()), (6, []))
    d = t.path("export-kept")
    r = t.export(store, h, d)
    t.ok("export succeeds", r)
    problems, counts = lib.compare_trees(K, d, K, d)
    lib.report_tree(t, "export equals the source (modes stripped, mtimes, names, links, empties)",
                    problems, counts)
    st = os.stat(os.path.join(d, "modes", "m4755-setuid"))
    t.eq("modes/m4755-setuid exported as 0755", oct(stat.S_IMODE(st.st_mode)), oct(0o755))
    t.eq("links/a, links/b, links/sub/c are one inode with 3 links",
         len({os.stat(os.path.join(d, "links", p)).st_ino for p in ("a", "b", "sub/c")}), 1)
    t.eq("links/a has nlink 3", os.stat(os.path.join(d, "links", "a")).st_nlink, 3)
    t.eq("links/outside-too (other name outside the prefix) has nlink 1",
         os.stat(os.path.join(d, "links", "outside-too")).st_nlink, 1)
    t.check("files with equal bytes but separate inodes stay separate",
            os.stat(os.path.join(d, "links", "same-bytes-1")).st_ino !=
            os.stat(os.path.join(d, "links", "same-bytes-2")).st_ino)
    with open(os.path.join(d, "links", "sub", "reloc2.txt"), "rb") as f:
        t.eq("a hard-linked file holding the prefix is relocated under both names",
             f.read(), b"prefix=" + d.encode() + b"\n")
    for rel, ns in (("names/-dash", -1500000001), ("empty/leaf-dir", -1),
                    ("names/link\xa0to newline", 1)):
        t.eq(f"{rel}: mtime {ns} ns survives",
             os.stat(os.path.join(d, rel), follow_symlinks=False).st_mtime_ns, ns)
    r = t.cfs(store, "--json", "ls")
    t.check("ls --json parses with such names around", r.rc == 0 and h in r.out, r)

with t.section("deep paths (longer than PATH_MAX)"):
    D = os.path.realpath(t.path("env-deep"))
    lib.make_prefix(D, pkgs=[("deep", "1.0", "h0_0")])
    fd = os.open(D, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    for i in range(20):
        n = f"d{i:02d}-" + "x" * 246
        os.mkdir(n, dir_fd=fd)
        nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
        depth += len(n) + 1
    wfd = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(wfd, b"at the bottom of " + D.encode() + b"\n")
    os.close(wfd)
    os.symlink("leaf.txt", "leaf-link", dir_fd=fd)
    os.mkdir("empty-at-the-bottom", dir_fd=fd)
    set_mtime("leaf.txt", NS[0], dir_fd=fd)
    os.close(fd)
    t.check(f"the deepest path is {depth + 9} bytes (> 4096)", depth + 9 > 4096)
    r = t.ingest(store, D)
    t.ok("ingest of a prefix with paths > PATH_MAX succeeds", r)
    if r.rc == 0:
        hd = r.out.strip()
        d = t.path("export-deep")
        r = t.export(store, hd, d)
        t.ok("export succeeds", r)
        lib.report_tree(t, "export equals the source", *lib.compare_trees(D, d, D, d))
        t.verify_clean("verify exits 0 with deep paths in the store", store)

with t.section("hard links deeper than PATH_MAX"):
    L = os.path.realpath(t.path("env-deep-links"))
    lib.make_prefix(L, pkgs=[("deeplinks", "1.0", "h0_0")])
    fd = os.open(L, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(18):
        n = f"l{i:02d}-" + "y" * 246
        os.mkdir(n, dir_fd=fd)
        nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    wfd = os.open("one", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(wfd, b"two names, deep\n")
    os.close(wfd)
    os.link("one", "two", src_dir_fd=fd, dst_dir_fd=fd)
    os.close(fd)
    r = t.ingest(store, L)
    t.ok("ingest succeeds", r)
    if r.rc == 0:
        d = t.path("export-deep-links")
        r = t.export(store, r.out.strip(), d)
        t.ok("export of hard links below PATH_MAX depth succeeds", r)
        lib.report_tree(t, "export equals the source", *lib.compare_trees(L, d, L, d))


def extents(fd):
    """The data extents of a file, by SEEK_DATA / SEEK_HOLE."""
    out, pos = [], 0
    while True:
        try:
            a = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return out
        b = os.lseek(fd, a, os.SEEK_HOLE)
        out.append((a, b))
        pos = b


def same_sparse(p, q):
    """Compare two large sparse files by reading only where either has data."""
    fa, fb = os.open(p, os.O_RDONLY), os.open(q, os.O_RDONLY)
    try:
        if os.fstat(fa).st_size != os.fstat(fb).st_size:
            return "sizes differ"
        for a, b in sorted(extents(fa) + extents(fb)):
            for off in range(a, b, 1 << 24):
                n = min(1 << 24, b - off)
                if os.pread(fa, n, off) != os.pread(fb, n, off):
                    return f"bytes differ in [{off}, {off + n})"
        return None
    finally:
        os.close(fa)
        os.close(fb)


with t.section("a sparse 5 GiB file"):
    S = os.path.realpath(t.path("env-sparse"))
    lib.make_prefix(S, pkgs=[("sparse", "1.0", "h0_0")])
    big = os.path.join(S, "share", "disk.img")
    os.makedirs(os.path.dirname(big))
    size = 5 << 30
    with open(big, "wb") as f:
        f.truncate(size)
        f.seek((2 << 30) + 4096 + 17)
        f.write(b"a little data in the middle" * 4000)
        f.seek(size - 5)
        f.write(b"end\n\0")
    set_mtime(big, NS[0])
    st = os.stat(big)
    t.check("the source is sparse", st.st_blocks * 512 < (16 << 20), st)
    t0 = time.monotonic()
    r = t.ingest(store, S)
    secs = time.monotonic() - t0
    t.ok("ingest succeeds", r)
    t.check(f"ingest of 5 GiB of mostly holes is fast ({secs:.1f}s < 60s)", secs < 60)
    hs = r.out.strip()
    s = t.stats(store)
    t.check("the store did not grow by the file's logical size",
            s and s["stored_bytes"] < (256 << 20), s)
    d = t.path("export-sparse")
    t0 = time.monotonic()
    r = t.export(store, hs, d)
    t.ok(f"export succeeds ({time.monotonic() - t0:.1f}s)", r)
    if r.rc == 0:
        e = os.path.join(d, "share", "disk.img")
        est = os.stat(e)
        t.eq("exported size", est.st_size, size)
        t.check(f"the export is sparse ({est.st_blocks * 512} bytes allocated)",
                est.st_blocks * 512 < (64 << 20))
        t.eq("exported bytes equal the source (compared where either has data)",
             same_sparse(big, e), None)
        lib.report_tree(t, "the rest of the tree equals the source",
                        *lib.compare_trees(S, d, S, d, content=False))

with t.section("the store stays clean"):
    t.verify_clean("verify exits 0", store)

t.finish()
