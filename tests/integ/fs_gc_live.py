#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""gc while a mount serves the store. For a fixed time, at once: a loop that ingests small
environments sharing contents with a kept (tagged) one, removes them with rm or leaves them
for gc, and ingests them again; a loop of `condafs gc --unused-for 0` (config gc.grace 0);
and three readers reading random files of the kept environment through the mount, whole or
at random offsets, dropping the page cache after each read so the daemon serves every one,
each compared byte for byte with `condafs export` of it at the mount path. Then: every read
equal, no error, no failed gc, verify clean, the daemon still serves the kept environment
exactly and unmounts cleanly. Last, G4 of store/gc.c: a file of a removed environment held
open through the mount is still served after gc ran."""

import errno
import os
import random
import threading
import time

import fs_lib
import lib

t = fs_lib.FsHarness("fs_gc_live: gc, ingest and rm while a mount serves a kept environment")
seed = int(os.environ.get("LIVE_SEED", time.time_ns() % 1000000))
print(f"# LIVE_SEED={seed}")
DURATION = float(os.environ.get("LIVE_SECONDS", 45))
store = t.path("store")
CONF = t.path("condafs.yml")
with open(CONF, "w") as f:
    f.write("gc:\n  unused_for: 0\n  grace: 0\n")
KNOWN_REINGEST_BUG = "UNIQUE constraint failed: nodes.parent, nodes.name"


def shared_files(root):
    """Contents the kept environment and every churned one hold."""
    files = {f"lib/shared-{j}.bin": random.Random(j).randbytes((200 + 150 * j) << 10)
             for j in range(3)}
    files.update({f"share/common/c{j:03d}.txt": f"common {j}\n".encode() * (20 + j)
                  for j in range(60)})
    files["bin/tool"] = b"#!" + root.encode() + b"/bin/python3\nimport sys\n"
    files["lib/libk.so"] = b"\x7fELF\0" + root.encode() + b"/lib\0" + b"\0" * 400 + \
        bytes(range(256)) * 64
    return files


def make_kept():
    root = os.path.realpath(t.path("prefixes", "kept"))
    rnd = random.Random(1)
    files = shared_files(root)
    files.update({f"lib/kept-{j}.bin": rnd.randbytes((300 + 100 * j) << 10) for j in range(4)})
    files.update({f"share/kept/d{j // 20}/f{j:03d}.py": f"# kept {j}\nPREFIX = '{root}'\n"
                  .encode() * (1 + j % 7) for j in range(120)})
    return lib.make_prefix(root, pkgs=[("kept", "1.0", "h0_0")], files=files)


def make_churn(i):
    root = os.path.realpath(t.path("prefixes", f"churn{i}"))
    rnd = random.Random(100 + i)
    files = shared_files(root)
    files.update({f"lib/churn-{j}.bin": rnd.randbytes(300 << 10) for j in range(2)})
    files.update({f"share/churn/f{j:02d}.txt": f"churn {i} {j} {rnd.random()}\n".encode() * 30
                  for j in range(25)})
    return lib.make_prefix(root, pkgs=[(f"churn{i}", "1.0", "h0_0")], files=files)


kept = make_kept()
hk = t.ingest_hash(store, kept)
t.ok("tag the kept environment", t.cfs(store, "tag", "kept", hk))
churn = [make_churn(i) for i in range(4)]
churn_hash = [t.cfs(None, "hash", p).out.strip() for p in churn]


class Failures:
    """Failures seen by the threads, collected under a lock, reported at the end."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = {}
        self.counts = {}

    def add(self, kind, detail):
        with self.lock:
            self.items.setdefault(kind, []).append(detail)

    def count(self, kind, n=1):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + n


fails = Failures()
stop = threading.Event()


def churn_loop(rnd):
    while not stop.is_set():
        i = rnd.randrange(len(churn))
        r = t.ingest(store, churn[i])
        fails.count("ingests")
        if r.rc != 0:
            kind = "reingest-before-reap" if KNOWN_REINGEST_BUG in r.err else "ingest"
            fails.add(kind, str(r))
            continue
        if rnd.random() < 0.6:
            r = t.cfs(store, "rm", churn_hash[i])
            fails.count("rms")
            # gc may have removed it first (unused for more than 0 s)
            if r.rc != 0 and "no such environment" not in r.err:
                fails.add("rm", str(r))


def gc_loop():
    while not stop.is_set():
        r = t.cfs(store, "--config", CONF, "--json", "gc", "--unused-for", "0")
        fails.count("gcs")
        if r.rc != 0:
            fails.add("gc", str(r))
        time.sleep(0.1)


def read_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def reader(rnd, mnt_env, want):
    names = sorted(want)
    while not stop.is_set():
        rel = rnd.choice(names)
        data = want[rel]
        p = os.path.join(mnt_env, rel)
        try:
            fd = os.open(p, os.O_RDONLY)
            try:
                if rnd.random() < 0.5 or not data:
                    got, off = read_all(fd), 0
                    exp = data
                else:
                    off = rnd.randrange(len(data))
                    n = rnd.choice([1, 100, 4096, 65536, 300000])
                    got, exp = os.pread(fd, n, off), data[off:off + n]
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass
            finally:
                os.close(fd)
        except OSError as e:
            fails.add("read error", f"{rel}: {errno.errorcode.get(e.errno, e.errno)} {e}")
            continue
        fails.count("reads")
        fails.count("bytes read", len(got))
        if got != exp:
            fails.add("wrong bytes", f"{rel} at {off}: {len(got)} bytes read, want {len(exp)}")


with t.section(f"{DURATION:.0f}s of ingest, rm and gc while three readers read the kept "
               "environment through the mount"):
    with t.daemon(store) as d:
        mnt_env = d.path(hk)
        want_dir = fs_lib.export_env(t, store, hk, t.path("want", hk), mnt_env)
        want = {}
        for rel, _ in fs_lib.list_files(want_dir):
            with open(os.path.join(want_dir, rel), "rb") as f:
                want[rel] = f.read()
        t.check(f"the kept environment has {len(want)} files to read", len(want) > 100)
        rnd = random.Random(seed)
        threads = [threading.Thread(target=churn_loop, args=(random.Random(rnd.random()),)),
                   threading.Thread(target=gc_loop)]
        threads += [threading.Thread(target=reader, args=(random.Random(rnd.random()),
                                                          mnt_env, want)) for _ in range(3)]
        for th in threads:
            th.start()
        time.sleep(DURATION)
        stop.set()
        for th in threads:
            th.join(timeout=300)
        c = fails.counts
        print(f"#   {c.get('reads', 0)} reads ({c.get('bytes read', 0)} bytes), "
              f"{c.get('ingests', 0)} ingests, {c.get('rms', 0)} rms, {c.get('gcs', 0)} gcs")
        t.check("the threads all ended", not any(th.is_alive() for th in threads))
        for kind, what in [("wrong bytes", "every read of the kept environment is right"),
                           ("read error", "no read of the kept environment fails"),
                           ("gc", "every gc succeeds"),
                           ("rm", "every rm succeeds (or finds gc removed it first)"),
                           ("ingest", "every ingest succeeds, apart from the one below"),
                           ("reingest-before-reap", "ingesting a removed environment again "
                            "before gc has reaped it succeeds (store_gc_policy)")]:
            items = fails.items.get(kind, [])
            t.check(f"{what} ({len(items)} failed)", not items, "\n".join(items[:5]))
        t.check("readers read, churn ingested and gc ran", c.get("reads", 0) > 100 and
                c.get("ingests", 0) > 5 and c.get("gcs", 0) > 5, c)
        t.verify_clean("verify exits 0 while still mounted", store)
        t.check("the daemon still answers", fs_lib.answers(d.mnt))
        t.check("the root lists the kept environment", hk in os.listdir(d.mnt))
        problems, counts, _ = fs_lib.compare_mount(want_dir, mnt_env)
        t.check(f"the kept environment is served exactly ({counts['files']} files)",
                not problems, "\n".join(problems[:10]))
    t.check("unmounted", fs_lib.mounted(d.mnt) is None)

with t.section("after the mount: gc reaps everything removed, verify is clean"):
    for h in churn_hash:
        if h in (t.hashes(store) or []):
            t.ok(f"rm {h[:8]}", t.cfs(store, "rm", h))
    r = t.cfs(store, "--config", CONF, "gc", "--unused-for", "0")
    t.ok("gc", r)
    t.eq("ls shows the kept environment only", t.hashes(store), [hk])
    t.eq("no removed rows remain",
         lib.catalog_rows(store, "SELECT count(*) FROM envs WHERE removed != 0"), [(0,)])
    v = t.verify_clean("verify exits 0", store)
    t.eq("nothing unreferenced", v and v["unreferenced"], 0)
    d = t.path("export-final")
    t.ok("the kept environment exports", t.export(store, hk, d))
    lib.report_tree(t, "...equal to its source", *lib.compare_trees(kept, d, kept, d))

with t.section("an open file of a removed environment is served after gc (G4)"):
    with t.daemon(store, t.path("mnt-g4")) as d:
        hc = t.ingest_hash(store, churn[0])
        rel = "lib/churn-0.bin"
        with open(os.path.join(churn[0], rel), "rb") as f:
            src = f.read()
        p = os.path.join(d.path(hc), rel)
        t0 = time.monotonic()
        while not os.path.exists(p) and time.monotonic() - t0 < 10:
            time.sleep(0.05)   # a newly ingested environment appears (fs_live)
        fd = os.open(p, os.O_RDONLY)
        try:
            t.eq("its first 4 KiB read through the mount while it is there",
                 os.pread(fd, 4096, 0), src[:4096])
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            images = sorted(lib.env_images(store, hc))
            t.ok("rm it", t.cfs(store, "rm", hc))
            r = t.cfs(store, "--config", CONF, "--json", "gc", "--unused-for", "0")
            t.ok("gc", r)
            t.verify_clean("verify exits 0", store)
            t.eq("the mount holds it: gc leaves its rows",
                 lib.catalog_rows(store, "SELECT hash FROM envs WHERE removed != 0"), [(hc,)])
            t.check("...and its images", all(os.path.exists(f) for f in images), images)
            try:
                got = os.pread(fd, 1 << 20, 0)
            except OSError as e:
                got = f"error {errno.errorcode.get(e.errno, e.errno)}"
            diff = None if got == src else "an error" if isinstance(got, str) else \
                next((i for i in range(min(len(got), len(src))) if got[i] != src[i]),
                     min(len(got), len(src)))
            t.check("the open file still reads all its bytes", got == src,
                    f"read {got if isinstance(got, str) else len(got)} bytes, want "
                    f"{len(src)}; first difference at {diff}")
        finally:
            os.close(fd)
        t0 = time.monotonic()
        while os.path.exists(d.path(hc)) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        t.check("the removed environment is gone from the mount",
                not os.path.exists(d.path(hc)))
    r = t.cfs(store, "--config", CONF, "gc", "--unused-for", "0")
    t.ok("gc once the mount is gone", r)
    t.eq("its rows are reaped then",
         lib.catalog_rows(store, "SELECT count(*) FROM envs WHERE removed != 0"), [(0,)])
    v = t.verify_clean("verify exits 0", store)
    t.eq("nothing unreferenced", v and v["unreferenced"], 0)

t.finish()
