#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The daemon's memory bound holds whatever the files hold: a 240 MB text file made of
nothing but copies of its prefix (12 million relocation inserts, a 12 MB record in the
catalog) read through a mount by four threads at once, at ranges all over it, leaves
condafsd's peak RSS (VmHWM) under the bound for four threads in docs/ARCHITECTURE.md
("Threads, caches and memory"), 75 MiB. Before, each worker decoded the whole record into
8 bytes per insert: 9 MB to 382 MB. Every range read is the right bytes, and the file's
size is its inserts times the mount prefix."""

import os
import random
import tempfile
import threading

import fs_lib
import lib

t = fs_lib.FsHarness("fs_reloc_memory: a file of prefix copies keeps the daemon bounded")
THREADS = 4
# docs/ARCHITECTURE.md, "Threads, caches and memory": 32 + 9 x threads + 2 MiB, plus
# about 5 MiB of binary and libraries.
BOUND_MIB = 32 + 9 * THREADS + 2 + 5
SIZE = 240 << 20


def vm_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


with t.section("a 240 MB file of prefix copies, read through the mount"):
    # Short paths: many inserts from a short prefix, and a served file of a size to read.
    short = tempfile.mkdtemp(prefix="cfs-rl-", dir="/tmp")
    try:
        prefix = os.path.join(short, "p")
        lib.make_prefix(prefix, files={"share/ok.txt": b"fine\n"})
        pb = prefix.encode()
        copies = SIZE // len(pb)
        with open(os.path.join(prefix, "share", "copies.txt"), "wb") as f:
            chunk = pb * (1 << 16)
            for _ in range(copies >> 16):
                f.write(chunk)
            f.write(pb * (copies & 0xffff))
        store = t.path("store")
        r = t.ingest(store, prefix)
        t.ok("ingest stores it", r)
        h = r.out.split()[0]
        t.rmtree(os.path.join(prefix, "share", "copies.txt"))
        mnt = os.path.join(short, "m")
        # A sanitizer's quarantine keeps freed buffers resident: without it, the peak is
        # what the daemon holds at once, as in the plain build.
        env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
               ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"}
        with t.daemon(store, mnt=mnt, args=["--threads", str(THREADS)], env=env) as d:
            idle = vm_kb(d.proc.pid, "VmHWM")
            mp = os.path.realpath(d.path(h)).encode()
            path = d.path(h, "share", "copies.txt")
            size = os.stat(path).st_size
            t.eq("its size is its inserts times the mount prefix", size, copies * len(mp))
            rng = random.Random(7)
            ranges = [(0, 1 << 20), (size - (1 << 20), 1 << 20)] + \
                [(rng.randrange(size - (1 << 20)), 1 << 20) for _ in range(62)]
            bad = []

            def reader(part):
                with open(path, "rb") as f:
                    for off, n in part:
                        f.seek(off)
                        got = f.read(n)
                        k = off % len(mp)
                        want = (mp * (n // len(mp) + 2))[k:k + n]
                        if got != want:
                            bad.append(off)
            threads = [threading.Thread(target=reader, args=(ranges[i::THREADS],))
                       for i in range(THREADS)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            t.check(f"{len(ranges)} ranges of 1 MiB read right, four readers at once",
                    not bad, bad[:5])
            hwm = vm_kb(d.proc.pid, "VmHWM")
            t.check(f"condafsd's peak RSS stays under {BOUND_MIB} MiB "
                    f"(idle {idle / 1024:.0f} MiB, peak {hwm / 1024:.0f} MiB)",
                    hwm < BOUND_MIB * 1024)
            with open(d.path(h, "share", "ok.txt"), "rb") as f:
                t.eq("the rest of the environment reads", f.read(), b"fine\n")
    finally:
        t.rmtree(short)

t.finish()
