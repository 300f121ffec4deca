#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A mount reading through gc --purge (issue 11, point 4; store/repack.c M5). gc moves the
members still used of a pack to a new image and unlinks the old one, while condafsd may
have found where a file is before the move: in its per-thread node cache, or through a read
snapshot older than gc's commit. First, deterministically: with one worker thread and no
decoded-data cache, a file of B packed with A's secrets is read, then nine files with
images of their own (so the pack's image is no longer open, while the file's place stays
cached); A is removed, gc --purge rewrites the pack and unlinks it; the file, read again
(its pages dropped), must come back byte for byte. Then a file never read, first read
right after gc --purge within the second the worker's read snapshot began (so it is looked
up in a catalog that still names the old pack): right too. A removed environment whose
file is open through the mount is not purged (gc's holds), its file reads to the end, and
the first gc --purge after it is closed purges it. Then, for a while: readers read random
files of six kept environments through the mount while each one's pack partner is removed
and gc --purge rewrites the pack they share: every read right, no error logged, secrets
gone, verify clean."""

import errno
import os
import random
import threading
import time

import fs_lib
import lib
import purge_lib as pl

t = fs_lib.FsHarness("fs_purge: a mount reads correct bytes while gc --purge moves them")
seed = int(os.environ.get("LIVE_SEED", time.time_ns() % 1000000))
print(f"# LIVE_SEED={seed}")


def read_dropped(path):
    """The whole file through the daemon: its pages are dropped after the read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return b"".join(chunks)
    finally:
        os.close(fd)


def gc_purge(store):
    r = t.cfs(store, "--json", "gc", "--purge")
    t.ok("gc --purge", r)
    return r


with t.section("a file whose place the daemon has cached, moved by gc --purge"):
    store = t.path("store")
    A = pl.secret_env(t, "prefixes", "A")
    big = {f"lib/big{j}.bin": random.Random(100 + j).randbytes(300 << 10) for j in range(9)}
    B = pl.kept_env(t, "prefixes", "B", extra=big)
    hA, hB = t.ingest_hash(store, A), t.ingest_hash(store, B)
    pack = pl.secret_pack(store, hA)
    F = "share/common/c005.txt"
    with open(os.path.join(B, F), "rb") as f:
        want = f.read()
    with t.daemon(store, args=["--threads", "1", "--cache", "0", "--no-prefetch"]) as d:
        t.ok("rm A", t.cfs(store, "rm", hA))
        t.check("the mount drops A", fs_lib.wait_for(lambda: hA not in os.listdir(d.mnt)))
        t.eq(f"B/{F} reads right", read_dropped(d.path(hB, F)), want)
        for rel in sorted(big):
            t.eq(f"B/{rel} reads right (its own image)", read_dropped(d.path(hB, rel)), big[rel])
        r = gc_purge(store)
        t.check("it rewrites the pack B's file is in", '"packs_repacked": 1' in r.out, r)
        t.check("the old image is gone", not os.path.exists(pack))
        try:
            got = read_dropped(d.path(hB, F))
        except OSError as e:
            got = f"{errno.errorcode.get(e.errno, e.errno)}: {e}"
        t.eq(f"B/{F} read again: the same bytes, from the new image", got, want)
        t.check("the daemon logged no read error", "read:" not in d.log(), d.log()[-2000:])
    pl.check_gone(t, store, "after gc --purge")

with t.section("a removed environment a mount holds is purged once the mount lets go"):
    store = t.path("store-held")
    hA, hB = t.ingest_hash(store, A), t.ingest_hash(store, B)
    with t.daemon(store) as d:
        f = open(d.path(hA, "share/secret/token.txt"), "rb")
        head = f.read(100)
        t.ok("rm A while a file of it is open", t.cfs(store, "rm", hA))
        t.check("the mount drops A", fs_lib.wait_for(lambda: hA not in os.listdir(d.mnt)))
        r = gc_purge(store)
        t.check("gc --purge leaves A alone while it is held",
                '"environments_held": 1' in r.out and '"packs_repacked": 0' in r.out, r)
        pl.check_present(t, store, "while held")
        rest = f.read()
        t.check("the open file reads right to its end", head + rest == pl.SECRET_TEXT)
        f.close()
        repacked = 0
        for _ in range(100):
            r = t.cfs(store, "--json", "gc", "--purge")
            repacked += '"packs_repacked": 1' in r.out
            if r.rc != 0 or '"environments_held": 0' in r.out:
                break
            time.sleep(0.1)
        t.check("closed, a gc --purge reaps A and rewrites the pack",
                r.rc == 0 and '"environments_held": 0' in r.out and repacked == 1, r)
        t.eq(f"B/{F} reads right", read_dropped(d.path(hB, F)), want)
    pl.check_gone(t, store, "after the mount let go")

# The daemon's workers renew their read snapshot when CLOCK_MONOTONIC_COARSE (id 6, which
# Python's time module does not name) has moved on to another second (store.c).
COARSE = 6


with t.section("a file never read, found through a read snapshot older than gc's commit"):
    conclusive = 0
    for attempt in range(8):
        store = t.path(f"store-snap{attempt}")
        hA, hB = t.ingest_hash(store, A), t.ingest_hash(store, B)
        X, Y = "share/B/f00.txt", "share/common/c010.txt"
        with open(os.path.join(B, Y), "rb") as f:
            want = f.read()
        with t.daemon(store, args=["--threads", "1", "--cache", "0", "--no-prefetch"]) as d:
            t.ok("rm A", t.cfs(store, "rm", hA))
            t.check("the mount drops A", fs_lib.wait_for(lambda: hA not in os.listdir(d.mnt)))
            sec = int(time.clock_gettime(COARSE))
            while int(time.clock_gettime(COARSE)) == sec:
                time.sleep(0.001)
            sec = int(time.clock_gettime(COARSE))
            # The worker's snapshot begins here (the table changed: a fresh handle).
            read_dropped(d.path(hB, X))
            r = t.cfs(store, "--json", "gc", "--purge")
            try:
                got = read_dropped(d.path(hB, Y))
            except OSError as e:
                got = f"{errno.errorcode.get(e.errno, e.errno)}: {e}"
            same = int(time.clock_gettime(COARSE)) == sec
            t.ok("gc --purge", r)
            t.eq(f"B/{Y}, first read after gc moved it, is right", got, want)
            t.check("the daemon logged no read error", "read:" not in d.log(), d.log()[-2000:])
        conclusive += same and '"packs_repacked": 1' in r.out
        t.rmtree(store)
        if conclusive >= 2:
            break
    t.check(f"at least once the read came within the second of the snapshot ({conclusive} "
            f"of {attempt + 1} attempts)", conclusive >= 1)

ROUNDS = 6
DURATION = float(os.environ.get("LIVE_SECONDS", 2))


class Fails:
    def __init__(self):
        self.lock = threading.Lock()
        self.items, self.counts = {}, {}

    def add(self, kind, what):
        with self.lock:
            self.items.setdefault(kind, []).append(what)

    def count(self, kind, n=1):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + n


fails = Fails()
stop = threading.Event()


def reader(rnd, want):
    names = sorted(want)
    while not stop.is_set():
        path = rnd.choice(names)
        try:
            got = read_dropped(path)
        except OSError as e:
            fails.add("read error", f"{path}: {errno.errorcode.get(e.errno, e.errno)} {e}")
            continue
        fails.count("reads")
        if got != want[path]:
            fails.add("wrong bytes", f"{path}: {len(got)} bytes, want {len(want[path])}")


with t.section(f"readers of six environments through {ROUNDS} rounds of rm and gc --purge"):
    store = t.path("store-live")
    pairs = []
    for i in range(ROUNDS):
        root = os.path.realpath(t.path("live", f"K{i}"))
        files = pl.common_files(root, salt=f"round {i} ")
        files.update({f"share/K{i}/f{j:02d}.txt": f"K{i} {j}\n".encode() * (10 + j)
                      for j in range(20)})
        del files["bin/tool"]   # no prefix inside: read as ingested
        K = lib.make_prefix(root, pkgs=[(f"purge-k{i}", "1.0", "h0_0")], files=files)
        # E's pack holds K's files: E is ingested first, with the same common files.
        root = os.path.realpath(t.path("live", f"E{i}"))
        efiles = pl.common_files(root, salt=f"round {i} ")
        del efiles["bin/tool"]  # (its prefix-neutral content would be every E's)
        efiles.update({f"share/E{i}/secret{j}.txt": pl.SECRET_TEXT + bytes([i, j])
                       for j in range(10)})
        E = lib.make_prefix(root, pkgs=[(f"purge-e{i}", "1.0", "h0_0")], files=efiles)
        pairs.append((t.ingest_hash(store, E), t.ingest_hash(store, K), files))
    with t.daemon(store) as d:
        want = {}
        for _, hk, files in pairs:
            for rel, data in files.items():
                want[d.path(hk, rel)] = data
        rnd = random.Random(seed)
        threads = [threading.Thread(target=reader, args=(random.Random(rnd.random()), want))
                   for _ in range(3)]
        for th in threads:
            th.start()
        repacked = 0
        for he, _, _ in pairs:
            time.sleep(DURATION / ROUNDS)
            r = t.cfs(store, "rm", he)
            if r.rc != 0:
                fails.add("rm", str(r))
            r = t.cfs(store, "--json", "gc", "--purge")
            if r.rc != 0:
                fails.add("gc", str(r))
            repacked += '"packs_repacked": 1' in r.out
        time.sleep(DURATION / ROUNDS)
        stop.set()
        for th in threads:
            th.join(timeout=300)
        c = fails.counts
        print(f"#   {c.get('reads', 0)} reads")
        t.eq("every gc --purge rewrote its round's pack", repacked, ROUNDS)
        for kind, what in [("wrong bytes", "every read is right"),
                           ("read error", "no read fails"),
                           ("rm", "every rm succeeds"), ("gc", "every gc --purge succeeds")]:
            items = fails.items.get(kind, [])
            t.check(f"{what} ({len(items)} failed)", not items, "\n".join(items[:5]))
        t.check("the readers read", c.get("reads", 0) > 100, c)
        t.check("the daemon logged no read error", "read:" not in d.log(), d.log()[-2000:])
        t.verify_clean("verify exits 0 while mounted", store)
    found, err = pl.decoded_hits(store)
    t.eq("no decoded image holds a secret", (found, err), ([], None))

t.finish()
