#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Crash safety (suite crash). kill -9 of `condafs ingest` of the sci env at $CRASH_KILLS
delays (8 in the suite) spread over the measured duration of a full ingest, and at two random
tiny delays; after each:
verify exits 0, ls shows nothing or the complete env (its export equals the source), the
store holds no litter beside its objects and catalog, and a re-run of the ingest succeeds.
kill -9 of `ingest --replace` leaves the old tree or the new one, never a mix. Two ingests
at once (same env, into a store that does not exist yet; different envs) both succeed and
verify is clean. A longer campaign: CRASH_KILLS=60 meson test -C BUILD store_crash (with
CRASH_SEED to replay one)."""

import os
import random
import signal
import subprocess
import time

import lib

t = lib.Harness("store_crash: kill -9 during ingest, concurrent ingests")
seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 1000000))
rnd = random.Random(seed)
print(f"# CRASH_SEED={seed}")


def ingest_cmd(store, prefix, *extra):
    return [t.condafs, "--store", store, "ingest", prefix, *extra]


def start_ingest(store, prefix, *extra):
    return subprocess.Popen(ingest_cmd(store, prefix, *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_after(store, prefix, delay, *extra):
    """Start an ingest, SIGKILL it after delay seconds; True if the kill landed."""
    p = start_ingest(store, prefix, *extra)
    time.sleep(delay)
    try:
        p.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    r = t.finish_proc(p)
    return r.rc == -signal.SIGKILL, r


sci = t.env("sci")
src = sci["prefix"]
compared = 0

with t.section("a full ingest of sci, timed"):
    store = t.path("store-timing")
    t0 = time.monotonic()
    r = t.ingest(store, src)
    full = time.monotonic() - t0
    t.ok(f"ingest succeeds in {full:.2f}s", r)
    h = r.out.strip()
    t.rmtree(store)

spread = int(os.environ.get("CRASH_KILLS", "8"))
kills = [full * (i + 0.5) / spread for i in range(spread)] + [rnd.uniform(0, 0.005)
                                                             for _ in range(2)]
for i, delay in enumerate(kills):
    with t.section(f"kill -9 after {delay * 1000:.1f} ms ({i + 1}/{len(kills)})"):
        store = t.path(f"store-kill-{i}")
        landed, r = kill_after(store, src, delay)
        if not landed:
            t.check("the ingest finished before the kill (no crash to test)", r.rc == 0, r)
        elif not os.path.exists(store):
            print("      (killed before the store existed)")
        if os.path.exists(os.path.join(store, "FORMAT")):
            t.verify_clean("verify exits 0 after the kill", store)
            envs = t.hashes(store)
            t.check(f"ls shows nothing or the complete env ({envs})", envs in ([], [h]), envs)
            if envs == [h] and compared < 2:
                compared += 1
                d = t.path(f"export-kill-{i}")
                t.ok("the env survived the kill: export succeeds", t.export(store, h, d))
                lib.report_tree(t, "...and equals the source", *lib.compare_trees(src, d, src, d))
                t.rmtree(d)
        t.eq("the store holds only its catalog, objects and temporary files",
             lib.litter(store, tmp_ok=True) if os.path.exists(store) else [], [])
        r = t.ingest(store, src)
        t.check("a re-run of the ingest succeeds",
                r.rc == 0 and r.out.strip() == h, r)
        t.verify_clean("verify exits 0 after the re-run", store)
        t.eq("ls shows the env", t.hashes(store), [h])
        t.eq("no litter after the re-run (the killed ingest's temporary files are gone)",
             lib.litter(store), [])
        if i == len(kills) - 1:
            d = t.path("export-last")
            t.ok("export of the re-run env succeeds", t.export(store, h, d))
            lib.report_tree(t, "...and equals the source", *lib.compare_trees(src, d, src, d))
            t.rmtree(d)
        t.rmtree(store)

with t.section("kill -9 during ingest --replace: the old tree or the new one"):
    old = os.path.realpath(t.path("replace-env"))
    files = {f"share/d{i // 100}/f{i:04d}.txt": (b"file %d\n" % i) * 200 for i in range(2000)}
    files["lib/big.bin"] = bytes(rnd.randbytes(8 << 20))
    lib.make_prefix(old, pkgs=[("rep", "1.0", "h0_0")], files=files)
    new = os.path.realpath(t.path("replace-env-new"))
    subprocess.run(["cp", "-a", old, new], check=True)
    with open(os.path.join(new, "lib/big.bin"), "r+b") as f:
        f.write(b"changed")
    lib.write(os.path.join(new, "share/added.txt"), "added\n")
    store = t.path("store-replace")
    r = t.ingest(store, old)
    hr = r.out.strip()
    t0 = time.monotonic()
    r = t.ingest(store, new, "--replace")
    dur = time.monotonic() - t0
    t.eq(f"ingest --replace works ({dur:.2f}s)", lib.ingest_said(r), (0, hr, "replaced"))
    for i in range(4):
        r = t.ingest(store, old, "--replace")
        t.check("back to the old tree (replaced, or still there if the last kill was early)",
                lib.ingest_said(r) in ((0, hr, "replaced"), (0, hr, "already stored")), r)
        delay = dur * (i + 0.5) / 4
        landed, _ = kill_after(store, new, delay, "--replace")
        t.verify_clean(f"kill after {delay * 1000:.0f} ms (landed: {landed}): verify exits 0",
                       store)
        t.eq("ls shows the env", t.hashes(store), [hr])
        d = t.path(f"export-replace-{i}")
        t.ok("export succeeds", t.export(store, hr, d))
        p_old, _ = lib.compare_trees(old, d, old, d, content=False)
        p_new, _ = lib.compare_trees(new, d, new, d, content=False)
        if not p_old:
            p_old, _ = lib.compare_trees(old, d, old, d)
        elif not p_new:
            p_new, _ = lib.compare_trees(new, d, new, d)
        t.check("the export is exactly the old tree or exactly the new one",
                not p_old or not p_new, "\n".join(p_old[:5] + ["--"] + p_new[:5]))
        t.rmtree(d)
    r = t.ingest(store, new, "--replace")
    t.check("a re-run of --replace succeeds", lib.ingest_said(r) in
            ((0, hr, "replaced"), (0, hr, "already stored")), r)
    d = t.path("export-replace-final")
    t.ok("export succeeds", t.export(store, hr, d))
    lib.report_tree(t, "...and equals the new tree", *lib.compare_trees(new, d, new, d))

with t.section("three ingests at once creating one store, 30 times (a tiny prefix)"):
    tiny = lib.make_prefix(t.path("tiny"), pkgs=[("tiny", "1.0", "h0_0")],
                           files={"share/a.txt": b"a\n", "bin/b": b"#!" + t.path("tiny").encode()})
    ht = t.cfs(None, "hash", tiny).out.strip()
    failed = []
    for k in range(30):
        store = t.path(f"store-race-{k}")
        rs = [t.finish_proc(p) for p in lib.start_together([ingest_cmd(store, tiny)] * 3)]
        failed += [r for r in rs if r.rc != 0]
        if any(r.rc != 0 for r in rs) or k == 29:
            t.verify_clean(f"try {k + 1}: verify exits 0", store)
            t.eq(f"try {k + 1}: ls shows it once", t.hashes(store), [ht])
    t.check(f"all 90 ingests succeed ({len(failed)} failed)", not failed,
            "\n".join(str(r) for r in failed[:3]))

with t.section("two ingests of one env at once, into a store that does not exist yet"):
    small = t.env("small")
    hs = t.cfs(None, "hash", small["prefix"]).out.strip()
    for k in range(2):
        store = t.path(f"store-same-{k}")
        ps = lib.start_together([ingest_cmd(store, small["prefix"])] * 2)
        rs = [t.finish_proc(p) for p in ps]
        t.check(f"try {k + 1}: both succeed", all(r.rc == 0 for r in rs),
                "\n".join(str(r) for r in rs))
        t.eq(f"try {k + 1}: one stored it, the other found it stored (or both stored it)",
             sorted(lib.ingest_said(r)[2] or "" for r in rs) in (["", "already stored"], ["", ""])
             and [r.out.strip() for r in rs] == [hs, hs], True, [str(r) for r in rs])
        t.verify_clean(f"try {k + 1}: verify exits 0", store)
        t.eq(f"try {k + 1}: ls shows it once", t.hashes(store), [hs])
        t.eq(f"try {k + 1}: no litter", lib.litter(store), [])
    d = t.path("export-same")
    t.ok("export succeeds", t.export(store, hs, d))
    lib.report_tree(t, "...and equals the source",
                    *lib.compare_trees(small["prefix"], d, small["prefix"], d))
    t.rmtree(d)

with t.section("two ingests of different envs at once"):
    store = t.path("store-two")
    pair = [t.env("small"), t.env("sci")]
    ps = [start_ingest(store, e["prefix"]) for e in pair]
    rs = [t.finish_proc(p) for p in ps]
    t.check("both succeed", all(r.rc == 0 for r in rs), "\n".join(str(r) for r in rs))
    hashes = [r.out.strip() for r in rs]
    t.eq("ls shows both", t.hashes(store), sorted(hashes))
    t.verify_clean("verify exits 0", store)
    t.eq("no litter", lib.litter(store), [])
    for e, hh in zip(pair, hashes):
        d = t.path("export-two-" + hh[:8])
        t.ok("export succeeds", t.export(store, hh, d))
        lib.report_tree(t, f"...and equals {os.path.basename(e['prefix'])}",
                        *lib.compare_trees(e["prefix"], d, e["prefix"], d))
        t.rmtree(d)

t.finish()
