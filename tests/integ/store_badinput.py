#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Bad input to ingest: every case gives one clear error line on stderr naming the file and
the reason, a non-zero exit, stores nothing (ls and stats unchanged) and leaves verify clean.
Cases: fifo, socket, character and block devices (and --skip-special: a warning each), an
unreadable file (run as nobody), a prefix without conda-meta/history, a broken conda-meta
record, a file whose mtime or size changes while it is read, a --lock that does not match,
a store of another format, a prefix that does not exist or is not a directory."""

import os
import shutil
import stat
import subprocess
import sys
import time

import lib

t = lib.Harness("store_badinput: bad input fails clearly and stores nothing")
store = t.path("store")
PKGS = [("demo", "1.0", "h0_0"), ("other", "2.0", "h1_0"), ("third", "3.0", "h2_0")]
n_prefix = 0


def good_prefix(name=None, pkgs=None):
    """A fresh valid prefix with a few ordinary files; its own package set unless given."""
    global n_prefix
    n_prefix += 1
    if pkgs is None:
        pkgs = PKGS + [("unique", f"{n_prefix}.0", "h0_0")]
    p = t.path(name or f"env{n_prefix}")
    lib.make_prefix(p, pkgs=pkgs, files={
        "bin/tool": b"#!" + os.path.realpath(p).encode() + b"/bin/python3\n",
        "share/data.txt": b"some data\n" * 100,
        "lib/libx.so": b"\x7fELF\0" + bytes(range(256)) * 64,
    })
    return os.path.realpath(p)


with t.section("a store holding one environment"):
    base = good_prefix("base", pkgs=[("base", "1.0", "h0_0")])
    r = t.ingest(store, base)
    t.ok("ingest of a good prefix succeeds", r)
    before_ls, before_stats = t.ls(store), t.stats(store)
    t.eq("ls shows it", [e["hash"] for e in before_ls or []], [r.out.strip()])


def unchanged(what, st=None, user=None):
    """Nothing stored: ls and stats as before; verify exits 0."""
    st = st or store
    if st == store:
        t.eq(f"{what}: ls unchanged", t.ls(st), before_ls)
        t.eq(f"{what}: stats unchanged", t.stats(st), before_stats)
    t.verify_clean(f"{what}: verify exits 0", st, user=user)


with t.section("special files"):
    specials = {
        "share/a-fifo": ("fifo", lambda p: os.mkfifo(p)),
        "share/a-socket": ("socket", lambda p: os.mknod(p, stat.S_IFSOCK | 0o644)),
        "dev/null-like": ("character device",
                          lambda p: os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3))),
        "dev/loop-like": ("block device",
                          lambda p: os.mknod(p, stat.S_IFBLK | 0o600, os.makedev(7, 200))),
    }
    for rel, (kind, make) in specials.items():
        p = good_prefix()
        os.makedirs(os.path.dirname(os.path.join(p, rel)), exist_ok=True)
        make(os.path.join(p, rel))
        r = t.ingest(store, p)
        t.fails_clearly(f"{kind}: ingest fails naming {rel} and its kind", r,
                        f"{p}/{rel}", kind)
        unchanged(kind)
    p = good_prefix()
    os.makedirs(os.path.join(p, "dev"))
    for rel, (kind, make) in specials.items():
        make(os.path.join(p, rel))
    r = t.ingest(store, p, "--skip-special")
    t.ok("--skip-special: ingest succeeds", r)
    for rel, (kind, make) in specials.items():
        t.check(f"--skip-special: a warning names {rel} ({kind})",
                any(f"{p}/{rel}" in w and kind in w for w in r.warnings()), r)
    t.eq("--skip-special: one warning each, no error lines", (len(r.warnings()), r.errors()),
         (len(specials), []))
    if r.rc == 0:
        d = t.path("export-skip-special")
        rx = t.export(store, r.out.strip(), d)
        t.ok("--skip-special: export succeeds", rx)
        lib.report_tree(t, "--skip-special: export is the prefix without the special files",
                        *lib.compare_trees(p, d, p, d, skip={os.fsencode(k) for k in specials}))
    t.verify_clean("--skip-special: verify exits 0", store)
    before_ls, before_stats = t.ls(store), t.stats(store)

with t.section("an unreadable file (condafs runs as nobody)"):
    nstore = t.path("store-nobody")
    os.makedirs(nstore)
    ok_p = good_prefix("nobody-ok", pkgs=[("nb", "1.0", "h0_0")])
    bad_p = good_prefix("nobody-bad", pkgs=[("nb", "2.0", "h0_0")])
    for top in (nstore, ok_p, bad_p):
        for dirpath, dirnames, filenames in os.walk(top):
            for n in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
                os.chown(n, 65534, 65534)
    os.chmod(os.path.join(bad_p, "share/data.txt"), 0o000)
    r = t.ingest(nstore, ok_p, user="nobody")
    t.ok("as nobody, ingest of a readable prefix succeeds", r)
    nb_before = t.ls(nstore, user="nobody")
    r = t.ingest(nstore, bad_p, user="nobody")
    t.fails_clearly("ingest fails naming the unreadable file and why", r,
                    f"{bad_p}/share/data.txt", "Permission denied")
    t.eq("ls unchanged", t.ls(nstore, user="nobody"), nb_before)
    t.verify_clean("verify exits 0", nstore, user="nobody")

with t.section("not a conda prefix"):
    p = good_prefix()
    os.unlink(os.path.join(p, "conda-meta", "history"))
    r = t.ingest(store, p)
    t.fails_clearly("no conda-meta/history: fails naming it", r, f"{p}/conda-meta/history",
                    "not a conda prefix")
    unchanged("no history")
    p = good_prefix()
    lib.write(os.path.join(p, "conda-meta", "broken-1.0-0.json"), "{not json at all\n")
    r = t.ingest(store, p)
    t.fails_clearly("a broken conda-meta record: fails naming it", r,
                    f"{p}/conda-meta/broken-1.0-0.json")
    unchanged("broken record")
    r = t.ingest(store, t.path("does-not-exist"))
    t.fails_clearly("a prefix that does not exist: fails naming it", r, t.path("does-not-exist"),
                    "No such file or directory")
    unchanged("missing prefix")
    lib.write(t.path("a-file"), "x")
    r = t.ingest(store, t.path("a-file"))
    t.fails_clearly("a prefix that is a file: fails naming it", r, t.path("a-file"))
    unchanged("prefix is a file")


# It stops by itself when the test is gone (killed with its process group, which meson
# makes apart from the runner's), rather than spin on.
MUTATOR = r"""
import os, sys, time
path, what = sys.argv[1], sys.argv[2]
parent = os.getppid()
i = 0
f = open(path, "ab") if what == "append" else None
while os.getppid() == parent:
    if f:
        f.write(b"more\n")
        f.flush()
    else:
        ns = 1700000000000000000 + i
        os.utime(path, ns=(ns, ns))
    i += 1
"""


def while_ingesting(p, path, what):
    """Run ingest while another process rewrites path's mtime or appends to it in a loop.
    strace stalls each of the ingest's stat calls, so that the file does change between
    the walk and the end of its read even when the machine is too busy to run the
    mutator often (otherwise an ingest that never saw a change would rightly succeed)."""
    before = os.stat(path)
    m = subprocess.Popen([sys.executable, "-c", MUTATOR, path, what])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:      # until it has started
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                break
            time.sleep(0.001)
        return t.run(["strace", "-f", "-qq", "-o", "/dev/null",
                      "-e", "trace=fstat,newfstatat,statx",
                      "-e", "inject=fstat,newfstatat,statx:delay_enter=50000",
                      t.condafs, "--store", store, "ingest", p])
    finally:
        m.kill()
        m.wait()


with t.section("a file that changes while it is read"):
    block = bytes(range(256)) * 4096
    for i in range(3):
        p = good_prefix()
        big = os.path.join(p, "lib", "big.bin")
        with open(big, "wb") as f:
            for k in range(48):
                f.write(block[k:] + block[:k])
        r = while_ingesting(p, big, "mtime")
        t.fails_clearly(f"mtime rewritten in a loop (try {i + 1}): fails naming the file", r,
                        f"{p}/lib/big.bin", "changed")
        unchanged("mtime changes")
    for i in range(3):
        p = good_prefix()
        grow = os.path.join(p, "lib", "growing.log")
        with open(grow, "wb") as f:
            f.write(block * 8)
        r = while_ingesting(p, grow, "append")
        t.fails_clearly(f"a file appended to in a loop (try {i + 1}): fails naming it", r,
                        f"{p}/lib/growing.log", "changed")
        unchanged("size changes")

with t.section("a --lock that does not match"):
    p = good_prefix(pkgs=PKGS)
    lock = t.path("lock-mismatch.txt")
    lib.write(lock, lib.explicit_lock([("demo", "1.0", "h0_0"), ("other", "2.1", "h1_0"),
                                       ("fourth", "4.0", "h3_0")]))
    r = t.ingest(store, p, "--lock", lock)
    t.fails_clearly("fails naming the lock and every differing package", r, lock, "other",
                    "2.1", "fourth", "third")
    t.check("...but not the packages that agree", "demo" not in (r.errors() or [""])[0], r)
    unchanged("lock mismatch")
    lock = t.path("lock-md5.txt")
    text = lib.explicit_lock(PKGS)
    lib.write(lock, text.replace(text.rstrip().rsplit("#", 1)[1], "0" * 32))
    r = t.ingest(store, p, "--lock", lock)
    t.fails_clearly("an archive md5 that disagrees: fails naming the lock and package", r, lock,
                    "third", "md5")
    unchanged("md5 mismatch")
    lock = t.path("lock-channel.txt")
    lib.write(lock, lib.explicit_lock(PKGS).replace("/conda-forge/", "/bioconda/"))
    r = t.ingest(store, p, "--lock", lock)
    t.fails_clearly("a channel that disagrees: fails naming the lock and the channel", r, lock,
                    "bioconda")
    unchanged("channel mismatch")
    lock = t.path("lock-good.txt")
    lib.write(lock, lib.explicit_lock(PKGS))
    r = t.ingest(store, p, "--lock", lock)
    t.ok("the matching lock is accepted", r)
    t.eq("...and names the prefix's hash", r.out.strip(), t.cfs(None, "hash", lock).out.strip())
    before_ls, before_stats = t.ls(store), t.stats(store)

with t.section("a store of another format"):
    fstore = t.path("store-format")
    r = t.ingest(fstore, base)
    t.ok("ingest into a new store", r)
    f_ls = t.ls(fstore)
    fmt = os.path.join(fstore, "FORMAT")
    with open(fmt, "rb") as f:
        orig = f.read()
    os.chmod(fmt, 0o644)
    with open(fmt, "wb") as f:
        f.write(b"condafs-store 99\n")
    p = good_prefix()
    r = t.ingest(fstore, p)
    t.fails_clearly("ingest refuses it, naming FORMAT and the version", r, f"{fstore}/FORMAT",
                    "condafs-store 99")
    for cmd in (["ls"], ["verify"], ["stats"], ["export", f_ls[0]["hash"], t.path("x")]):
        r = t.cfs(fstore, *cmd)
        t.fails_clearly(f"{cmd[0]} refuses it too", r, f"{fstore}/FORMAT", "condafs-store 99")
    with open(fmt, "rb") as f:
        t.eq("FORMAT is left as it was", f.read(), b"condafs-store 99\n")
    with open(fmt, "wb") as f:
        f.write(orig)
    t.eq("with FORMAT restored, ls is unchanged", t.ls(fstore), f_ls)
    t.verify_clean("...and verify exits 0", fstore)
    empty = t.path("not-a-store")
    os.makedirs(empty)
    r = t.cfs(empty, "ls")
    t.fails_clearly("ls of a directory that holds no store fails naming it", r, empty)

with t.section("condafs install without condafs-install beside it or where meson installs it"):
    # install_exec.c: condafs runs the program that links libcurl and libarchive; a condafs
    # copied away from it says so in one line instead of failing some other way.
    alone = t.path("alone")
    os.makedirs(alone)
    shutil.copy2(t.condafs, os.path.join(alone, "condafs"))
    lock = t.path("alone.lock")
    with open(lock, "w") as f:
        f.write("@EXPLICIT\n")
    r = t.run([os.path.join(alone, "condafs"), "--store", t.path("store-alone"), "install",
               lock])
    t.fails_clearly("install names the helper it cannot run", r, "condafs-install",
                    "No such file or directory")
    t.check("and makes no store", not os.path.exists(t.path("store-alone")), r)

t.finish()
