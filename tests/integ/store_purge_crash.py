#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Crash safety of gc --purge (suite crash; issue 11, point 4). A template store holds A,
whose secrets are in a pack B shares, and three more pairs X/Y whose packs hold about 3.5 MiB
that Y uses and a part only X used (so the rewrite takes two new packs); A and the Xs are
removed. Copies of it get `condafs gc --purge` killed with SIGKILL: after delays spread
over a whole run's duration, after SIGSTOP at random moments, and at deterministic points
(strace injects SIGKILL at the Nth pwrite64, syncfs, renameat2, fsync, fdatasync, unlinkat
of a run). After each kill: verify exits 0 (unreferenced objects allowed) and the kept
environments export equal to their sources; then the next gc --purge finishes the job:
no file holds a secret's bytes (as they are, or decoded), verify clean with nothing
unreferenced, reference counts right, objects/ exactly the images the catalog names, no
litter. Last, an ingest sharing the packs racing gc --purge: both succeed, in either order."""

import os
import random
import re
import shutil
import signal
import subprocess
import time

import lib
import purge_lib as pl

t = lib.Harness("store_purge_crash: kill -9 during gc --purge")
seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 1000000))
rnd = random.Random(seed)
print(f"# CRASH_SEED={seed}")
CONF = t.path("condafs.yml")
with open(CONF, "w") as f:
    f.write("gc:\n  unused_for: 30d\n  grace: 1h\n")


def ingest(store, prefix):
    r = t.ingest(store, prefix)
    if r.rc != 0:
        raise RuntimeError(f"ingest failed: {r}")
    return r.out.split()[0]


def bulk(name, salt, own):
    """About 3.5 MiB of small files shared with the other of the pair, and own ones."""
    root = os.path.realpath(t.path("prefixes", name))
    files = {f"share/bulk/b{j:03d}.txt": random.Random(f"{salt}{j}").randbytes(25 << 10)
             .hex().encode() for j in range(70)}
    r = random.Random(name)
    files.update({f"share/{name}/own{j:02d}.txt": r.randbytes(25 << 10).hex().encode()
                  for j in range(own)})
    return lib.make_prefix(root, pkgs=[(f"purge-{name}", "1.0", "h0_0")], files=files)


def gc_cmd(store):
    return [t.condafs, "--store", store, "--config", CONF, "--json", "gc", "--purge"]


SRC, NAMES = {}, {}
template = t.path("template")
with t.section("the template store"):
    removed, kept = [], []
    for name, p in [("A", pl.secret_env(t, "prefixes", "A")),
                    ("B", pl.kept_env(t, "prefixes", "B"))] + \
            [(f"{x}{i}", bulk(f"{x}{i}", f"pair{i}", 20 if x == "X" else 2))
             for i in range(3) for x in "XY"]:
        h = ingest(template, p)
        SRC[h], NAMES[h] = p, name
        (removed if name[0] in "AX" else kept).append(h)
    for h in removed:
        t.ok(f"rm {NAMES[h]}", t.cfs(template, "rm", h))
    pl.check_present(t, template, "the template")
    t.verify_clean("the template verifies", template)


def packs(store):
    return lib.catalog_rows(store, "SELECT count(*) FROM objects WHERE kind = 1")[0][0]


def exports_equal(store, hashes, what):
    for h in hashes:
        d = t.path("export-" + h[:8])
        r = t.export(store, h, d)
        if t.ok(f"{what}: {NAMES[h]} exports", r):
            problems, _ = lib.compare_trees(SRC[h], d, SRC[h], d)
            t.check(f"{what}: ...equal to its source", not problems, "\n".join(problems[:10]))
        t.rmtree(d)


def finished(store, what, also=()):
    """The state a whole gc --purge leaves."""
    t.eq(f"{what}: ls shows only the kept environments", t.hashes(store),
         sorted(kept + list(also)))
    pl.check_gone(t, store, what)
    v = t.verify_clean(f"{what}: verify exits 0", store)
    t.eq(f"{what}: nothing unreferenced", v and v["unreferenced"], 0)
    t.eq(f"{what}: every reference count is right", lib.refs_wrong(store), [])
    t.eq(f"{what}: no object row without references",
         lib.catalog_rows(store, "SELECT count(*) FROM objects WHERE refs = 0"), [(0,)])
    on_disk, named = set(lib.image_files(store)), pl.catalog_images(store)
    t.eq(f"{what}: objects/ holds exactly the images the catalog names",
         (sorted(on_disk - named), sorted(named - on_disk)), ([], []))
    t.eq(f"{what}: no litter", lib.litter(store), [])


n_store = 0


def fresh_store():
    global n_store
    n_store += 1
    d = t.path(f"store-{n_store}")
    shutil.copytree(template, d, symlinks=True)
    return d


with t.section("a whole gc --purge of a copy, timed and traced"):
    store = fresh_store()
    t0 = time.monotonic()
    r = t.run(gc_cmd(store))
    full = time.monotonic() - t0
    t.ok(f"gc --purge succeeds in {full:.3f}s", r)
    t.check("it rewrites the four packs (A's and the Xs')",
            r.rc == 0 and '"packs_repacked": 4' in r.out, r)
    t.eq("...into two: what is left of them is more than one pack holds (8 MiB)",
         packs(store), packs(template) - 2)
    finished(store, "after a whole gc --purge")
    exports_equal(store, kept, "after a whole gc --purge")
    t.rmtree(store)
    store = fresh_store()
    trace = t.path("gc.strace")
    r = t.run(["strace", "-f", "-qq", "-o", trace] + gc_cmd(store))
    t.ok("gc --purge succeeds under strace", r)
    calls = {}
    with open(trace) as f:
        for line in f:
            m = re.match(r"^\d+\s+(\w+)\(", line)
            if m:
                calls[m.group(1)] = calls.get(m.group(1), 0) + 1
    points = {c: calls.get(c, 0) for c in ("pwrite64", "syncfs", "renameat2", "fsync",
                                             "fdatasync", "unlinkat")}
    print(f"#   system calls of one gc --purge: {points}")
    t.check("it writes images and the catalog (pwrite64), syncs the store twice (syncfs), "
            "publishes with renameat2 and unlinks",
            points["pwrite64"] > 0 and points["syncfs"] >= 2 and points["renameat2"] >= 2 and
            points["unlinkat"] >= 4, points)
    t.rmtree(store)


def spread(n, k):
    """k call numbers out of 1..n, the first and last among them."""
    if n <= k:
        return list(range(1, n + 1))
    return sorted({1, n} | {1 + round(i * (n - 1) / (k - 1)) for i in range(k)})


# About 25 kills: each costs a copy of the store, two gc runs, two verifies and a search.
kills = [("after", full * (i + 0.5) / 6) for i in range(6)]
kills += [("stop", rnd.uniform(0, full)) for _ in range(2)]
for c, k in (("pwrite64", 5), ("syncfs", 2), ("renameat2", 3), ("fsync", 2), ("fdatasync", 3),
             ("unlinkat", 4)):
    kills += [("inject", (c, n)) for n in spread(points[c], k)]

landed_n = 0
for i, (how, arg) in enumerate(kills):
    what = (f"kill after {arg * 1000:.1f} ms" if how == "after" else
            f"SIGSTOP after {arg * 1000:.1f} ms, then SIGKILL" if how == "stop" else
            f"SIGKILL at {arg[0]} #{arg[1]}")
    with t.section(f"{what} ({i + 1}/{len(kills)})"):
        store = fresh_store()
        if how == "inject":
            r = t.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={arg[0]}", "-e",
                       f"inject={arg[0]}:signal=SIGKILL:when={arg[1]}"] + gc_cmd(store))
            landed = r.rc == -signal.SIGKILL
            t.check("strace's SIGKILL lands", landed, r)
        else:
            p = subprocess.Popen(gc_cmd(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(arg)
            try:
                if how == "stop":
                    p.send_signal(signal.SIGSTOP)
                    time.sleep(0.01)
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            r = t.finish_proc(p)
            landed = r.rc == -signal.SIGKILL
            if not landed:
                t.check("gc finished before the kill (no crash to test)", r.rc == 0, r)
        landed_n += landed
        t.verify_clean(f"{what}: verify exits 0", store)
        exports_equal(store, kept if i % 4 == 0 else [kept[0]], "after the kill")
        r = t.run(gc_cmd(store))
        t.ok("the next gc --purge succeeds", r)
        finished(store, "after the next gc --purge")
        if i % 4 == 2:
            exports_equal(store, kept, "after the next gc --purge")
        t.rmtree(store)
t.check(f"most kills landed before gc finished ({landed_n} of {len(kills)})",
        landed_n >= len(kills) // 2)

N = bulk("N", "pair0", 5)


for i in range(2):
    with t.section(f"an ingest sharing the packs, started with gc --purge ({i + 1}/2)"):
        store = fresh_store()
        cmds = [[t.condafs, "--store", store, "ingest", N], gc_cmd(store)]
        ps = lib.start_together(cmds if i % 2 else cmds[::-1])
        pi, pg = ps if i % 2 else ps[::-1]
        ri, rg = t.finish_proc(pi), t.finish_proc(pg)
        t.ok("the ingest succeeds", ri)
        t.ok("gc --purge succeeds", rg)
        if ri.rc != 0:
            continue
        hn = ri.out.split()[0]
        SRC[hn], NAMES[hn] = N, "N"
        exports_equal(store, [hn, kept[0]], "after the race")
        r = t.run(gc_cmd(store))
        t.ok("the next gc --purge succeeds", r)
        finished(store, "after the race and another gc --purge", also=[hn])
        exports_equal(store, [hn], "after the next gc --purge")
        t.rmtree(store)

t.finish()
