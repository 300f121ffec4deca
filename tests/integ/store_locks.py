#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Naming environments by their lock, through the CLI: for every corpus env, `condafs hash`
of its explicit.txt, environment.yml, conda-lock.yml and pixi.lock, of the prefix itself,
and the hash `condafs ingest` prints are one hash; each lock form is accepted by
`ingest --lock`; `show` lists the solved set. Every real fixture under
fixtures/conda/lockfiles gives a hash (per platform where it holds several) or, for files
that are not locks, one clear error naming the file and why; so do `conda list --export`
output, unpinned specs and garbage. (Parsing detail is store/conda/lock.c's unit tests' job.)"""

import json
import os
import re

import lib

t = lib.Harness("store_locks: one identity from every lock form, real fixtures, non-locks")
store = t.path("store")
FORMS = ("explicit", "environment_yml", "conda_lock", "pixi_lock")

with t.section("corpus: every lock form, the prefix and ingest give one hash"):
    corpus = t.corpus()
    seen = {}
    for name in lib.CORPUS_ENVS:
        e = corpus["envs"][name]
        prefix = e["prefix"]
        r = t.cfs(None, "hash", prefix)
        t.ok(f"{name}: hash PREFIX succeeds", r)
        want = r.out.strip()
        t.check(f"{name}: it is 32 hex digits", lib.HASH_RE.match(want), r)
        for form in FORMS:
            r = t.cfs(None, "hash", e["locks"][form])
            t.eq(f"{name}: hash {os.path.basename(e['locks'][form])} == hash PREFIX",
                 (r.rc, r.out.strip()), (0, want), r)
        r = t.cfs(None, "--json", "hash", prefix)
        j = json.loads(r.out) if r.rc == 0 else {}
        n = len(e["identity"]["conda"]) + len(e["identity"]["pip"])
        t.eq(f"{name}: hash --json: platform and package count",
             (j.get("hash"), j.get("platform"), j.get("packages")), (want, e["platform"], n))
        r = t.ingest(store, prefix)
        t.eq(f"{name}: ingest prints the same hash", (r.rc, r.out.strip()), (0, want), r)
        for form in FORMS:
            r = t.ingest(store, prefix, "--lock", e["locks"][form])
            t.eq(f"{name}: ingest --lock {os.path.basename(e['locks'][form])} accepts it",
                 lib.ingest_said(r), (0, want, "already stored"), r)
        r = t.cfs(store, "--json", "show", want)
        pk = json.loads(r.out)["packages"] if r.rc == 0 else []
        got_conda = sorted([p["name"], p["version"], p["build"]] for p in pk if p["kind"] == "conda")
        got_pip = sorted([p["name"], p["version"]] for p in pk if p["kind"] == "pypi")
        t.eq(f"{name}: show lists exactly the solved conda packages", got_conda,
             sorted(list(x) for x in e["identity"]["conda"]))
        t.eq(f"{name}: show lists exactly the pip packages", got_pip,
             sorted(list(x) for x in e["identity"]["pip"]))
        seen[name] = want
    t.eq(f"the {len(seen)} corpus envs have as many different hashes", len(set(seen.values())),
         len(lib.CORPUS_ENVS))
    envs = t.ls(store)
    t.eq("ls lists them", sorted(x["hash"] for x in envs or []), sorted(seen.values()))
    t.eq("...with their source prefixes",
         sorted(x["source_prefix"] for x in envs or []),
         sorted(corpus["envs"][n]["prefix"] for n in lib.CORPUS_ENVS))

# What each real fixture is. Anything not listed here must be a lock.
NOT_LOCKS = {
    "conda-lock/conda-lock-v1.schema.json": "JSON Schema",
    "environment-yml/environment.yml": "not pinned",
    "environment-yml/environment_with_pip.yml": "not pinned",
}

with t.section("real fixtures: each is a lock with a hash, or a clear error"):
    root = os.path.join(t.fixtures, "conda", "lockfiles")
    fixtures = sorted(os.path.relpath(os.path.join(d, f), root)
                      for d, _, fs in os.walk(root) for f in fs)
    t.check(f"{len(fixtures)} fixtures found", len(fixtures) >= 20, root)
    hashes = {}
    for rel in fixtures:
        path = os.path.join(root, rel)
        r = t.cfs(None, "hash", path)
        if rel in NOT_LOCKS:
            t.fails_clearly(f"{rel}: not a lock, said so", r, path, "not a lock", NOT_LOCKS[rel])
            continue
        errs, notes = r.errors(), r.notes()
        if r.rc == 0 and notes and "took this machine's" in notes[0]:
            # Several platforms, none asked for: this machine's, as conda-lock and pixi.
            m = re.match(r"condafs: hash: note: (.*) is for (.*): took this machine's, (\S+) "
                         r"\(--platform to choose\)$", notes[0])
            t.check(f"{rel}: several platforms: one note names the file, them and the one "
                    "taken", m and m.group(1) == path and len(notes) == 1 and not errs, r)
            if not m:
                continue
            plats, host = m.group(2).split(", "), m.group(3)
            per = {}
            for p in plats:
                q = t.cfs(None, "hash", path, "--platform", p)
                t.check(f"{rel} --platform {p}: a hash, no note", q.rc == 0 and
                        lib.HASH_RE.match(q.out.strip()) and not q.err, q)
                per[p] = q.out.strip()
            t.eq(f"{rel}: each platform its own hash", len(set(per.values())), len(plats))
            t.eq(f"{rel}: without --platform, {host}'s", r.out.strip(), per.get(host))
            hashes[rel] = per
            continue
        t.check(f"{rel}: a hash", r.rc == 0 and lib.HASH_RE.match(r.out.strip()) and not errs, r)
        hashes[rel] = r.out.strip()
    t.eq("the same rattler lock written as pixi.lock v6 and v7 has one hash",
         hashes.get("pixi-lock/v6-python-from-conda-only-lock.yml"),
         hashes.get("pixi-lock/v7-python-from-conda-only-lock.yml"))
    q = t.cfs(None, "hash", os.path.join(root, "pixi-lock/v6-deps_add/pixi.lock"),
              "--platform", "linux-64", "--environment", "no-such-env")
    t.fails_clearly("pixi.lock --environment that does not exist: names it", q, "no-such-env")

with t.section("ingest --lock with a lock for several platforms takes this machine's"):
    e = t.corpus()["envs"]["small"]
    with open(e["locks"]["conda_lock"]) as f:
        text = f.read()
    two = t.path("two-platforms-conda-lock.yml")
    with open(two, "w") as f:
        f.write(re.sub(r"(?m)^(  platforms:\n)", r"\1  - osx-arm64\n", text, count=1))
    want = t.cfs(None, "hash", e["prefix"]).out.strip()
    r = t.ingest(t.path("store-two"), e["prefix"], "--lock", two)
    t.eq("it is accepted, stdout the hash alone", (r.rc, r.out.strip(), r.errors()),
         (0, want, []), r)
    t.check("one note names the lock and the platform taken", len(r.notes()) == 1 and
            f"{two} is for osx-arm64, {e['platform']}: took this machine's, {e['platform']}"
            in r.notes()[0], r)
    r = t.ingest(t.path("store-two"), e["prefix"], "--lock", two, "--platform", "osx-arm64")
    t.fails_clearly("--platform osx-arm64 is checked as asked (the lock has no package for "
                    "it)", r, two, "osx-arm64")

with t.section("files that are not locks"):
    e = t.corpus()["envs"]["small"]
    export = t.path("conda-list-export.txt")
    with open(export, "w") as f:
        f.write("# This file may be used to create an environment using:\n"
                "# $ conda create --name <env> --file <this file>\n# platform: linux-64\n")
        for n, v, b in e["identity"]["conda"]:
            f.write(f"{n}={v}={b}\n")
    r = t.cfs(None, "hash", export)
    t.fails_clearly("`conda list --export` output: not a lock, and says which it is", r,
                    export, "not a lock", "conda list --export")
    r = t.ingest(store, e["prefix"], "--lock", export)
    t.fails_clearly("...also as ingest --lock", r, export, "not a lock")
    spec = t.path("environment-specs.yml")
    with open(spec, "w") as f:
        f.write("name: x\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n"
                "  - numpy>=1.24\n")
    r = t.cfs(None, "hash", spec)
    t.fails_clearly("environment.yml with unpinned specs: not a lock, naming a spec", r, spec,
                    "not a lock", "not pinned")
    for name, data in (("empty.txt", b""), ("garbage.bin", bytes(range(256)) * 8),
                       ("random.yml", b"just: [a, yaml, document]\n")):
        p = t.path(name)
        with open(p, "wb") as f:
            f.write(data)
        r = t.cfs(None, "hash", p)
        t.fails_clearly(f"{name}: not a lock, naming the file", r, p)
    r = t.cfs(None, "hash", t.path("no-such-lock.txt"))
    t.fails_clearly("a lock that does not exist: names it", r, t.path("no-such-lock.txt"),
                    "No such file")
    os.makedirs(t.path("plain-dir"))
    r = t.cfs(None, "hash", t.path("plain-dir"))
    t.fails_clearly("a directory that is not a prefix: says so", r, t.path("plain-dir"),
                    "not a conda prefix")

t.finish()
