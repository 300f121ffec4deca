#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What gc keeps and what it removes. Hand-made environments, aged by setting envs.last_used
in the catalog: tagged ones stay however old; untagged ones go once unused for --unused-for
(else the config's gc.unused_for), never sooner than gc.grace; `rm` hides at once (refused
while tagged unless --force) and gc reaps the rows. Tag names are checked (1-128 of
A-Za-z0-9._+-, not starting with '.' or '-', never a 32-digit hash) and moving a tag is one
step. For each gc: `--dry-run --json` changes nothing and reports exactly what the real run
then reports; ls shows the kept set; the removed environments' rows and their images are
gone while the kept ones' stay; objects/ shrinks by the bytes gc says it freed; verify is
clean with nothing unreferenced; every kept environment exports equal to its source; and gc
says, for each environment --unused-for alone would remove, why it kept it (tagged, used
within the grace window)."""

import json
import os
import random
import time

import lib

t = lib.Harness("store_gc_policy: tags, rm and gc decide what stays")
store = t.path("store")
NOW = int(time.time())
DAY = 86400


def conf(name, text):
    p = t.path(name + ".yml")
    with open(p, "w") as f:
        f.write(text)
    return p


# Explicit configs: the machine's /etc/condafs/condafs.yml must not decide these tests.
CONF_DEFAULT = conf("default", "gc:\n  unused_for: 30d\n  grace: 1h\n")
CONF_WEEK = conf("week", "gc:\n  unused_for: 7d\n  grace: 1h\n")
CONF_SHORT_GRACE = conf("short-grace", "gc:\n  unused_for: 30d\n  grace: 10m\n")


def make_env(name, seed):
    """A small prefix: files every env shares (one text, one big binary), files of its own
    (small ones, packed together; a big incompressible one with its own image), a script
    naming the prefix."""
    root = os.path.realpath(t.path("prefixes", name))
    rnd = random.Random(seed)
    files = {
        "share/common.txt": b"common to every environment\n" * 4000,
        "lib/shared-big.bin": random.Random(1).randbytes(300 << 10),
        f"lib/{name}-big.bin": rnd.randbytes(400 << 10),
        "bin/tool": b"#!" + root.encode() + b"/bin/python3\nprint('" + name.encode() + b"')\n",
    }
    for i in range(10):
        files[f"share/{name}/f{i}.txt"] = f"{name} file {i} {rnd.random()}\n".encode() * 50
    return lib.make_prefix(root, pkgs=[(f"pol-{name}", "1.0", "h0_0")], files=files)


def ingest(prefix):
    r = t.ingest(store, prefix)
    if r.rc != 0:
        raise RuntimeError(f"ingest failed: {r}")
    return r.out.split()[0]


def gc(config, *extra):
    r = t.cfs(store, "--config", config, "--json", "gc", *extra)
    t.ok(f"gc {' '.join(extra)} ({os.path.basename(config)}) exits 0", r)
    try:
        return json.loads(r.out)
    except ValueError:
        t.check("gc --json prints one JSON object", False, r)
        return None


def env_rows():
    return lib.catalog_rows(store, "SELECT id, hash, removed, last_used FROM envs ORDER BY id")


def content_objects_only_of(env_ids):
    """Content objects every node of which belongs to env_ids (gc frees exactly these)."""
    if not env_ids:
        return set()
    users = {}
    for r in lib.all_rows(store):
        if r["obj"]:
            users.setdefault(r["obj"], set()).add(r["env"])
    live = {i for (i,) in lib.catalog_rows(store, "SELECT id FROM objects WHERE kind = 0"
                                           " AND refs > 0")}
    return {o for o, e in users.items() if o in live and e <= set(env_ids)}


SRC = {}        # hash -> source prefix
NAMES = {}      # hash -> short name for messages


def named(hs):
    return sorted(NAMES.get(h, h[:8]) for h in hs)


def gc_round(title, config, extra, hidden, reaped_ids, kept, why):
    """One gc: the dry run first, then the real one. hidden: the hashes gc should remove
    (untagged, unused); reaped_ids: catalog ids of environments already removed (by rm)
    whose rows go too; kept: every hash that must stay; why: {name: reason} of the kept
    ones that --unused-for alone would remove."""
    with t.section(title):
        before_ls = t.ls(store)
        before_rows = env_rows()
        before_files = lib.image_files(store)
        ids = {h: i for i, h, removed, _ in before_rows if removed == 0}
        doomed_ids = {ids[h] for h in hidden} | set(reaped_ids)
        doomed_images = set().union(*[lib.env_images(store, env_id=i) for i in doomed_ids])
        kept_images = set().union(*[lib.env_images(store, h) for h in kept])
        unique_images = doomed_images - kept_images
        want_objects = content_objects_only_of(doomed_ids)

        dry = gc(config, "--dry-run", *extra)
        t.eq("the dry run changes no environment (ls)", t.ls(store), before_ls)
        t.eq("...no catalog row of envs", env_rows(), before_rows)
        t.eq("...and no object file", lib.image_files(store), before_files)
        real = gc(config, *extra)
        if dry is None or real is None:
            return
        t.eq("the dry run says dry_run true, the real run false",
             (dry.pop("dry_run"), real.pop("dry_run")), (True, False))
        t.eq("the dry run's report is the real run's", dry, real)
        t.eq("gc removes exactly the untagged environments unused long enough",
             named(e["hash"] for e in real["removed"]), named(hidden))
        t.eq("environments_removed counts them", real["environments_removed"], len(hidden))
        t.eq("it says why it kept each one --unused-for alone would remove",
             {NAMES.get(k["hash"], k["hash"]): k["reason"] for k in real.get("kept", [])}, why)
        t.eq("ls shows the kept environments", named(t.hashes(store) or []), named(kept))
        rows = env_rows()
        t.eq("every removed environment's rows are reaped (no mount holds any)",
             sorted(i for i, _, removed, _ in rows if removed or i in doomed_ids), [])
        after_files = lib.image_files(store)
        gone = set(before_files) - set(after_files)
        t.eq(f"the images only removed environments used are deleted ({len(unique_images)})",
             sorted(unique_images - gone), [])
        t.eq("the images kept environments use are all there",
             sorted(kept_images - set(after_files)), [])
        t.eq("no other file under objects/ is deleted", sorted(gone - unique_images), [])
        shrink = sum(before_files.values()) - sum(after_files.values())
        t.eq(f"objects/ shrinks by the bytes gc says it freed ({real['bytes_freed']})",
             shrink, real["bytes_freed"])
        if unique_images:
            t.check("bytes_freed > 0", real["bytes_freed"] > 0, real)
        t.eq("objects_freed: the content objects only removed environments used",
             real["objects_freed"], len(want_objects))
        v = t.verify_clean("verify exits 0 and finds nothing missing or corrupt", store)
        if v:
            t.eq("...and nothing unreferenced", v["unreferenced"], 0)
        t.eq("no object row is left with no references",
             lib.catalog_rows(store, "SELECT count(*) FROM objects WHERE refs = 0"), [(0,)])
        for h in kept:
            d = t.path("export-" + NAMES[h])
            r = t.export(store, h, d)
            if t.ok(f"{NAMES[h]} exports", r):
                problems, _ = lib.compare_trees(SRC[h], d, SRC[h], d)
                t.check(f"...equal to its source", not problems, "\n".join(problems[:10]))
            t.rmtree(d)


with t.section("environments to collect"):
    for name, seed in [("A", 1), ("B", 2), ("C", 3), ("D", 4), ("E", 5), ("F", 6), ("G", 7),
                       ("H", 8), ("I", 9)]:
        p = make_env(name, seed * 1000)
        h = ingest(p)
        SRC[h], NAMES[h] = p, name
    H = {n: h for h, n in NAMES.items()}
    t.eq("nine environments stored", len(t.hashes(store) or []), 9)
    t.eq("the catalog is version 8 (this test writes envs.last_used)",
         lib.catalog_version(store), "8")
    ages = {"A": 60 * DAY, "B": 120, "C": 40 * DAY, "D": 1800, "F": 10 * DAY, "G": 3 * DAY}
    for n, age in ages.items():
        lib.set_last_used(store, H[n], NOW - age)
    last = {e["hash"]: e["last_used"] for e in t.ls(store) or []}
    t.eq("ls shows the ages", {n: NOW - last[H[n]] for n in ages}, ages)

with t.section("tag names"):
    bad = ["a/b", ".hidden", "-dash", "x" * 129, H["B"], "0123456789abcdef0123456789abcdef",
           "ABCDEF0123456789ABCDEF0123456789", "0123456789ABCDEF0123456789abcdef", "", "a b",
           "é"]
    for name in bad:
        r = t.cfs(store, "tag", "--", name, H["A"])
        t.fails_clearly(f"tag {lib.show(name, 40)!r} is refused", r, "not a valid tag name")
    t.eq("none of them was set", [e["tags"] for e in t.ls(store) or []], [[]] * 9)
    good = ["x" * 128, "torch-2.8_cu118+gpu.v1", "A", "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0", "ABCDEF0123456789ABCDEF012345678", "a.-"]
    for name in good:
        t.ok(f"tag {lib.show(name, 40)!r} is accepted",
             t.cfs(store, "tag", "--", name, H["B"]))
    tags = {e["hash"]: e["tags"] for e in t.ls(store) or []}
    t.eq("ls shows them on B", sorted(tags.get(H["B"], [])), sorted(good))
    r = t.cfs(store, "show", "torch-2.8_cu118+gpu.v1")
    t.check("a tag names the environment (show)", r.rc == 0 and H["B"] in r.out, r)
    for name in good:
        t.ok(f"untag {lib.show(name, 40)!r}", t.cfs(store, "untag", name))
    r = t.cfs(store, "untag", "never-set")
    t.fails_clearly("untag of an unknown name fails, naming it", r, "never-set")
    t.eq("B has no tags left", {e["hash"]: e["tags"] for e in t.ls(store)}[H["B"]], [])

with t.section("moving a tag is one step"):
    t.ok("tag mv A", t.cfs(store, "tag", "mv", H["A"]))
    r = t.cfs(store, "tag", "mv", H["C"])
    t.ok("tag mv C (the name moves)", r)
    tags = {e["hash"]: e["tags"] for e in t.ls(store)}
    t.eq("ls shows mv on C only", sorted(NAMES[h] for h, tg in tags.items() if "mv" in tg),
         ["C"])
    r = t.cfs(store, "show", "mv")
    t.check("show mv is C", r.rc == 0 and H["C"] in r.out and H["A"] not in r.out, r)
    t.ok("tag mv C again (no change)", t.cfs(store, "tag", "mv", H["C"]))
    t.ok("untag mv", t.cfs(store, "untag", "mv"))
    t.eq("no tags left", [e["tags"] for e in t.ls(store)], [[]] * 9)
    t.ok("tag keep-me A (old, tagged: stays)", t.cfs(store, "tag", "keep-me", H["A"]))
    t.ok("tag i-tag I", t.cfs(store, "tag", "i-tag", H["I"]))
    t.ok("tag i-other I", t.cfs(store, "tag", "i-other", H["I"]))

with t.section("rm"):
    r = t.cfs(store, "rm", "keep-me")
    t.fails_clearly("rm of a tagged environment is refused, naming the tag", r, "keep-me",
                    "--force")
    r = t.cfs(store, "rm", H["I"])
    t.fails_clearly("...also by hash", r, H["I"])
    t.eq("both are still listed", named(h for h in t.hashes(store) if h in (H["A"], H["I"])),
         ["A", "I"])
    r = t.cfs(store, "rm", H["I"], "--force")
    t.eq("rm --force removes it", (r.rc, r.out.strip()), (0, f"removed {H['I']}"))
    r = t.cfs(store, "rm", H["E"][:10])
    t.eq("rm of an untagged one by a prefix of its hash", (r.rc, r.out.strip()),
         (0, f"removed {H['E']}"))
    r = t.cfs(store, "rm", H["H"])
    t.ok("rm H", r)
    listed = t.hashes(store) or []
    t.eq("ls no longer shows E, H, I", named(h for h in listed if h in (H["E"], H["H"], H["I"])),
         [])
    for n in ("E", "I"):
        for how in (H[n], H[n][:8]):
            t.fails_clearly(f"show {n} by {how} fails", t.cfs(store, "show", how), how)
        t.fails_clearly(f"export {n} fails", t.export(store, H[n], t.path("x-" + n)), H[n])
    for name in ("i-tag", "i-other"):
        t.fails_clearly(f"its tag {name} is gone", t.cfs(store, "show", name), name)
    t.fails_clearly("a removed environment cannot be tagged", t.cfs(store, "tag", "z", H["E"]),
                    H["E"])
    t.fails_clearly("nor removed twice", t.cfs(store, "rm", H["E"]), H["E"])
    rows = env_rows()
    t.eq("the removed ones' rows stay until gc", named(h for _, h, rm, _ in rows if rm),
         ["E", "H", "I"])
    removed_ids = [i for i, _, rm, _ in rows if rm]
    r = t.ingest(store, SRC[H["H"]])
    h_back = t.eq("H ingested again before gc: stored anew under its hash",
                  (r.rc, r.out.strip(), r.errors()), (0, H["H"], []))
    t.eq("ls shows H again (or not, if that ingest failed)",
         H["H"] in (t.hashes(store) or []), h_back)

gc_round("gc, config 30d: C goes; E, I and the removed H are reaped", CONF_DEFAULT, [],
         [H["C"]], removed_ids, [H[n] for n in "ABDFG" + ("H" if h_back else "")],
         {"A": "tagged"})
if not h_back:
    with t.section("H ingested again once gc reaped the removed one"):
        r = t.ingest(store, SRC[H["H"]])
        t.eq("H is stored anew", (r.rc, r.out.strip(), r.errors()), (0, H["H"], []))
gc_round("gc, config unused_for 7d: F (10 days) goes", CONF_WEEK, [], [H["F"]], [],
         [H[n] for n in "ABDGH"], {"A": "tagged"})

with t.section("gc --unused-for 0s says why it keeps what the grace window and tags keep"):
    lib.set_last_used(store, H["H"], NOW - 120)
    r = t.cfs(store, "--config", CONF_DEFAULT, "gc", "--dry-run", "--unused-for", "0s")
    t.ok("gc --dry-run --unused-for 0s exits 0", r)
    lines = r.out.splitlines()
    for n in "BDH":
        t.check(f"{n}: 'would keep {n}: used within the grace window (1h, gc.grace)'",
                any(l.startswith(f"would keep {H[n]} (") and
                    l.endswith("): used within the grace window (1h, gc.grace)")
                    for l in lines), r)
    t.check("A: 'would keep A: tagged keep-me'",
            any(l.startswith(f"would keep {H['A']} (") and l.endswith("): tagged keep-me")
                for l in lines), r)
    t.check("G: 'would remove G'", any(l.startswith(f"would remove {H['G']} (")
                                        for l in lines), r)
    t.eq("nothing else is kept or removed", len(lines), 6, r)

gc_round("gc --unused-for 0, grace 1h: G (3 days) goes, D (30 min) stays", CONF_DEFAULT,
         ["--unused-for", "0"], [H["G"]], [], [H[n] for n in "ABDH"],
         {"A": "tagged", "B": "grace", "D": "grace", "H": "grace"})
gc_round("gc --unused-for 5m, grace 10m: D (30 min) goes", CONF_SHORT_GRACE,
         ["--unused-for", "5m"], [H["D"]], [], [H[n] for n in "ABH"], {"A": "tagged"})
gc_round("gc with nothing to do", CONF_DEFAULT, ["--unused-for", "1d"], [], [],
         [H[n] for n in "ABH"], {"A": "tagged"})

with t.section("untagged, the old A goes too"):
    t.ok("untag keep-me", t.cfs(store, "untag", "keep-me"))
gc_round("gc, config 30d: A (60 days) goes", CONF_DEFAULT, [], [H["A"]], [], [H[n] for n in "BH"],
         {})

with t.section("gc refuses a bad duration"):
    r = t.cfs(store, "--config", CONF_DEFAULT, "gc", "--unused-for", "3 days")
    t.check("--unused-for '3 days': usage error (exit 2), nothing removed",
            r.rc == 2 and "not a duration" in r.err and
            named(t.hashes(store) or []) == ["B", "H"], r)

t.finish()
