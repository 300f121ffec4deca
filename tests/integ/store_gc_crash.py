#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Crash safety of gc (suite crash). A template store holds two kept environments (one
tagged, one recently used), five untagged ones unused for long, two removed with rm, and
object files no row names (as a killed ingest leaves them). Copies of it get `condafs gc`
killed with SIGKILL: after delays spread over a full gc's duration and a few tiny ones,
after SIGSTOP at random moments, and at deterministic points (strace injects SIGKILL at the
Nth unlinkat, pwrite64, fdatasync, unlink, ftruncate of a gc). After each kill: verify exits
0 (unreferenced objects allowed), the kept environments are listed and export equal to
their sources, the removable ones are all listed or none (one transaction); then a second gc
finishes the job: only the kept environments, no removed rows, no unreferenced object, the
files under objects/ exactly the images the catalog names. Then an ingest running at the
same time as gc is killed at random moments (and both are, sometimes): gc succeeds, the
environment is whole or absent, and the next gc and a re-run of the ingest clean up."""

import os
import random
import re
import shutil
import signal
import subprocess
import time

import lib

t = lib.Harness("store_gc_crash: kill -9 during gc, and during an ingest racing gc")
seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 1000000))
rnd = random.Random(seed)
print(f"# CRASH_SEED={seed}")
NOW = int(time.time())
CONF = t.path("condafs.yml")
with open(CONF, "w") as f:
    f.write("gc:\n  unused_for: 30d\n  grace: 1h\n")


def make_env(name, seed, big=6, small=20):
    root = os.path.realpath(t.path("prefixes", name))
    r = random.Random(seed)
    files = {f"lib/{name}-{j}.bin": r.randbytes(300 << 10) for j in range(big)}
    files.update({f"share/{name}/f{j:02d}.txt": f"{name} {j} {r.random()}\n".encode() * 40
                  for j in range(small)})
    files["share/common.txt"] = b"shared by every environment\n" * 3000
    files["lib/shared.bin"] = random.Random(0).randbytes(280 << 10)
    files["bin/tool"] = b"#!" + root.encode() + b"/bin/python3\n"
    return lib.make_prefix(root, pkgs=[(f"crash-{name}", "1.0", "h0_0")], files=files)


def ingest(store, prefix):
    r = t.ingest(store, prefix)
    if r.rc != 0:
        raise RuntimeError(f"ingest failed: {r}")
    return r.out.split()[0]


def gc_cmd(store):
    return [t.condafs, "--store", store, "--config", CONF, "--json", "gc"]



def catalog_images(store):
    """Every image file the catalog names: objects stored on their own, and packs."""
    return {lib.object_file(store, bytes(k)) for (k,) in
            lib.catalog_rows(store, "SELECT key FROM objects WHERE pack IS NULL")}


def exports_equal(store, hashes, what):
    for h in hashes:
        d = t.path("export-" + h[:8])
        r = t.export(store, h, d)
        if t.ok(f"{what}: {NAMES[h]} exports", r):
            problems, _ = lib.compare_trees(SRC[h], d, SRC[h], d)
            t.check(f"{what}: ...equal to its source", not problems, "\n".join(problems[:10]))
        t.rmtree(d)



SRC, NAMES = {}, {}
template = t.path("template")

with t.section("the template store"):
    kept, removable = [], []
    for i, name in enumerate(["K1", "K2", "R0", "R1", "R2", "R3", "R4", "R5", "R6"]):
        p = make_env(name, i + 1)
        h = ingest(template, p)
        SRC[h], NAMES[h] = p, name
        (kept if name[0] == "K" else removable).append(h)
    K1, K2 = kept
    t.eq("the catalog is version 8 (this test writes envs.last_used)",
         lib.catalog_version(template), "8")
    t.ok("tag K1", t.cfs(template, "tag", "k1", K1))
    lib.set_last_used(template, K1, NOW - 90 * 86400)
    for h in removable[:5]:
        lib.set_last_used(template, h, NOW - 40 * 86400)
    for h in removable[5:]:
        t.ok(f"rm {NAMES[h]}", t.cfs(template, "rm", h))
    # Images of an environment ingested into another store: files no row here names.
    other = t.path("other-store")
    ingest(other, make_env("O", 99, big=4))
    orphans = [p for p in sorted(lib.image_files(other)) if not
               os.path.exists(os.path.join(template, os.path.relpath(p, other)))]
    for src in orphans:   # (the shared contents' images are there already)
        dst = os.path.join(template, os.path.relpath(src, other))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    t.rmtree(other)
    v = t.verify_clean("the template verifies", template)
    t.eq(f"...with the {len(orphans)} copied images unreferenced",
         v and v["unreferenced"], len(orphans))
    LISTED_ALL = sorted(kept + removable[:5])
    t.eq("ls shows the kept and the unused ones", t.hashes(template), LISTED_ALL)

n_store = 0


def fresh_store():
    global n_store
    n_store += 1
    d = t.path(f"store-{n_store}")
    shutil.copytree(template, d, symlinks=True)
    return d


def after_kill(store, what, extra_ok=()):
    """The state a killed gc leaves: consistent, kept environments whole. extra_ok: hashes
    that may or may not be listed (an environment whose ingest was killed)."""
    t.verify_clean(f"{what}: verify exits 0", store)
    listed = [h for h in (t.hashes(store) or []) if h not in extra_ok]
    t.check(f"{what}: ls shows the kept ones and all the unused ones or none of them",
            listed in (LISTED_ALL, sorted(kept)), [NAMES.get(h, h) for h in listed])


def gc_finishes(store, what, also_kept=()):
    """A following gc completes the job."""
    r = t.run(gc_cmd(store))
    t.ok(f"{what}: the next gc succeeds", r)
    want = sorted(kept + list(also_kept))
    t.eq(f"{what}: ls shows only the kept environments", t.hashes(store), want)
    v = t.verify_clean(f"{what}: verify exits 0", store)
    t.eq(f"{what}: nothing unreferenced", v and v["unreferenced"], 0)
    t.eq(f"{what}: no removed environment's rows remain",
         lib.catalog_rows(store, "SELECT count(*) FROM envs WHERE removed != 0"), [(0,)])
    t.eq(f"{what}: no object row without references",
         lib.catalog_rows(store, "SELECT count(*) FROM objects WHERE refs = 0"), [(0,)])
    on_disk, named = set(lib.image_files(store)), catalog_images(store)
    t.eq(f"{what}: objects/ holds exactly the images the catalog names",
         (sorted(on_disk - named), sorted(named - on_disk)), ([], []))
    t.eq(f"{what}: no litter", lib.litter(store, tmp_ok=True), [])
    return want


with t.section("a full gc of a copy, timed and traced"):
    store = fresh_store()
    t0 = time.monotonic()
    r = t.run(gc_cmd(store))
    full = time.monotonic() - t0
    t.ok(f"gc succeeds in {full:.3f}s", r)
    gc_finishes(store, "after a whole gc")
    exports_equal(store, kept, "after a whole gc")
    t.rmtree(store)
    store = fresh_store()
    trace = t.path("gc.strace")
    r = t.run(["strace", "-f", "-qq", "-o", trace] + gc_cmd(store))
    t.ok("gc succeeds under strace", r)
    calls = {}
    with open(trace) as f:
        for line in f:
            m = re.match(r"^\d+\s+(\w+)\(", line)
            if m:
                calls[m.group(1)] = calls.get(m.group(1), 0) + 1
    points = {c: calls.get(c, 0) for c in ("unlinkat", "pwrite64", "fdatasync", "fsync",
                                             "unlink", "ftruncate")}
    print(f"#   system calls of one gc: {points}")
    t.check("gc unlinks the freed images with unlinkat and writes the catalog with pwrite64",
            points["unlinkat"] >= 30 and points["pwrite64"] > 0, points)
    t.rmtree(store)


def spread(n, k):
    """k call numbers out of 1..n, the first and last among them."""
    if n <= k:
        return list(range(1, n + 1))
    return sorted({1, n} | {1 + round(i * (n - 1) / (k - 1)) for i in range(k)})


kills = [("after", full * (i + 0.5) / 12) for i in range(12)]
kills += [("after", rnd.uniform(0, 0.004)) for _ in range(3)]
kills += [("stop", rnd.uniform(0, full)) for _ in range(4)]
kills += [("inject", ("unlinkat", n)) for n in spread(points["unlinkat"], 9)]
kills += [("inject", ("pwrite64", n)) for n in spread(points["pwrite64"], 8)]
for c in ("fdatasync", "fsync", "unlink", "ftruncate"):
    kills += [("inject", (c, n)) for n in spread(points[c], 5)]

landed_n = 0
for i, (how, arg) in enumerate(kills):
    what = (f"kill after {arg * 1000:.1f} ms" if how == "after" else
            f"SIGSTOP after {arg * 1000:.1f} ms, then SIGKILL" if how == "stop" else
            f"SIGKILL at {arg[0]} #{arg[1]}")
    with t.section(f"{what} ({i + 1}/{len(kills)})"):
        store = fresh_store()
        if how == "inject":
            cmd = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={arg[0]}", "-e",
                   f"inject={arg[0]}:signal=SIGKILL:when={arg[1]}"] + gc_cmd(store)
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            r = t.finish_proc(p)
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
        after_kill(store, what)
        if i % 4 == 0:
            exports_equal(store, kept, "after the kill")
        gc_finishes(store, what)
        if i % 4 == 1:
            exports_equal(store, kept, "after the next gc")
        t.rmtree(store)
t.check(f"most kills landed before gc finished ({landed_n} of {len(kills)})",
        landed_n >= len(kills) // 2)

with t.section("an ingest alone, timed"):
    N = make_env("N", 77, big=8, small=300)
    store = fresh_store()
    t0 = time.monotonic()
    hn = ingest(store, N)
    ing = time.monotonic() - t0
    SRC[hn], NAMES[hn] = N, "N"
    print(f"#   ingest of N: {ing:.3f}s")
    t.rmtree(store)


races = [("ingest", ing * (i + 0.5) / 8) for i in range(8)] + \
        [("both", rnd.uniform(0, max(ing, full))) for _ in range(4)]
for i, (victims, delay) in enumerate(races):
    what = f"kill -9 {'the ingest' if victims == 'ingest' else 'ingest and gc'} " \
        f"after {delay * 1000:.0f} ms"
    with t.section(f"{what}, the two started together ({i + 1}/{len(races)})"):
        store = fresh_store()
        pi, pg = lib.start_together([[t.condafs, "--store", store, "ingest", N],
                                     gc_cmd(store)])
        time.sleep(delay)
        for p in ([pi] if victims == "ingest" else [pi, pg]):
            try:
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        ri, rg = t.finish_proc(pi), t.finish_proc(pg)
        t.check("the ingest succeeded or was killed", ri.rc in (0, -signal.SIGKILL), ri)
        if victims == "ingest":
            t.ok("gc succeeds (it waits for the ingest, or the ingest for it)", rg)
        else:
            t.check("gc succeeded or was killed", rg.rc in (0, -signal.SIGKILL), rg)
        after_kill(store, what, extra_ok=(hn,))
        if ri.rc == 0:
            t.check("the ingest that finished is listed", hn in (t.hashes(store) or []))
        if hn in (t.hashes(store) or []):
            exports_equal(store, [hn], "N after the race")
        gc_finishes(store, what, also_kept=[hn] if hn in (t.hashes(store) or []) else [])
        r = t.ingest(store, N)
        t.check("a re-run of the ingest succeeds", r.rc == 0 and r.out.split()[0] == hn, r)
        # An ingest that finds the environment stored writes nothing and leaves dead
        # ingests' directories (checked on its own below).
        t.eq("no litter after it (the killed ingest's temporary files are gone, unless the "
             "re-run found N stored)", lib.litter(store, tmp_ok="already stored" in r.err), [])
        v = t.verify_clean("verify exits 0", store)
        t.eq("nothing unreferenced", v and v["unreferenced"], 0)
        exports_equal(store, [hn] + (kept if i % 3 == 0 else []), "after the re-run")
        t.rmtree(store)

with t.section("kill -9 between an ingest's commit and the removal of its temporary "
               "directory"):
    # On a store with no dead ingest directories, an ingest's unlinkat calls remove its own
    # temporary directories: the tree image's (published before the commit, as every
    # image, on a thread of its own), then, after the commit, the one of its files' images,
    # ingest-PID-1. Which call of its thread that is (strace counts each thread's calls),
    # an ingest into a store of its own says.
    probe, log = fresh_store(), t.path("unlinkat.log")
    r = t.run(["strace", "-f", "-qq", "-o", log, "-e", "trace=unlinkat", t.condafs,
               "--store", probe, "ingest", N])
    with open(log) as f:
        calls = [line.split(None, 1) for line in f if "unlinkat(" in line]
    when = None
    for i, (tid, call) in enumerate(calls):
        if re.search(r'"ingest-\d+-1", AT_REMOVEDIR', call):
            when = sum(1 for c in calls[:i + 1] if c[0] == tid)
            break
    t.check(f"the ingest removes ingest-PID-1 with its unlinkat call {when}", r.rc == 0
            and when, r)
    t.rmtree(probe)
    store = fresh_store()
    r = t.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=unlinkat", "-e",
               f"inject=unlinkat:signal=SIGKILL:when={when or 1}", t.condafs, "--store",
               store, "ingest", N])
    t.eq("the ingest is killed", r.rc, -signal.SIGKILL, r)
    t.check("after its commit: N is listed", hn in (t.hashes(store) or []))
    t.check("its temporary directory is left", lib.litter(store, tmp_ok=False) != [],
            lib.litter(store, tmp_ok=False))
    t.verify_clean("verify exits 0", store)
    r = t.ingest(store, N)
    t.eq("a re-run finds N stored", lib.ingest_said(r), (0, hn, "already stored"))
    t.eq("...and removes the dead ingest's directory (\"the next ingest removes those of "
         "dead ones\")", lib.litter(store, tmp_ok=False), [])
    r = t.ingest(store, make_env("Z", 123, big=1, small=2))
    t.ok("an ingest of another environment (one that writes)", r)
    t.eq("after it: no litter", lib.litter(store, tmp_ok=False), [])
    t.rmtree(store)

t.finish()
