#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Ingesting an environment that is already stored: the same tree reports "already stored"
and changes nothing (also from another path with the prefix relocated); a tree that differs
(mtime, content, mode, link target, added or removed paths) is refused with the differing
paths listed and nothing stored; --replace swaps the new tree in, verify stays clean and
the export equals the new tree."""

import os
import subprocess

import lib

t = lib.Harness("store_reingest: already stored, differing trees, --replace")
store = t.path("store")
R = os.path.realpath(t.path("env-r"))
RB = R.encode()
MT = 1700000000123456789


def objects_on_disk(st):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(st, "objects"))
                  for f in fs)


def snapshot(st):
    return t.ls(st), t.stats(st), objects_on_disk(st)


def set_mtimes(root, ns):
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + dirnames + [""]:
            os.utime(os.path.join(dirpath, n) if n else dirpath, ns=(ns, ns),
                     follow_symlinks=False)


lib.make_prefix(R, pkgs=[("re", "1.0", "h0_0"), ("ingest", "2.0", "h0_0")], files={
    "bin/script": b"#!" + RB + b"/bin/python3\nprint('hi')\n",
    "lib/libr.so": b"\x7fELF\0" + RB + b"/lib\0" + b"\0" * 300 + bytes(range(256)) * 40,
    "share/data.txt": b"payload " * 2000,
    "share/small.txt": b"small\n",
})
os.symlink(R + "/share/data.txt", os.path.join(R, "share/abs-link"))
os.link(os.path.join(R, "share/data.txt"), os.path.join(R, "share/data-hardlink.txt"))
for i in range(12):
    lib.write(os.path.join(R, "many", f"f{i:02d}"), f"file {i}\n")
set_mtimes(R, MT)

with t.section("first ingest, then the same prefix again"):
    r = t.ingest(store, R)
    t.ok("first ingest succeeds", r)
    h = r.out.strip()
    t.check("it prints the bare hash", lib.HASH_RE.match(h), r)
    before = snapshot(store)
    r = t.ingest(store, R)
    t.eq("second ingest: exit 0, the bare hash on stdout, \"already stored\" on stderr",
         (lib.ingest_said(r), r.errors()), ((0, h, "already stored"), []), r)
    r = t.cfs(store, "--json", "ingest", R)
    t.eq("--json ingest says already stored", (r.rc, r.out.strip()),
         (0, f'{{"hash": "{h}", "result": "already stored", "already_stored": true}}'))
    t.eq("nothing changed: ls, stats and object files as before", snapshot(store), before)

with t.section("the same tree at another path (prefix relocated) is already stored"):
    R2 = os.path.realpath(t.path("env-r-elsewhere-longer"))
    subprocess.run(["cp", "-a", R, R2], check=True)
    for rel in ("bin/script", "lib/libr.so"):
        p = os.path.join(R2, rel)
        with open(p, "rb") as f:
            data = f.read()
        mode, _ = lib.reloc_mode(rel.encode(), data, None)
        with open(p, "wb") as f:
            f.write(lib.relocate(data, RB, R2.encode(), mode))
    os.unlink(os.path.join(R2, "share/abs-link"))
    os.symlink(R2 + "/share/data.txt", os.path.join(R2, "share/abs-link"))
    set_mtimes(R2, MT)
    r = t.ingest(store, R2)
    t.eq("ingest of the relocated copy: already stored", lib.ingest_said(r),
         (0, h, "already stored"), r)
    t.eq("nothing changed", snapshot(store), before)


def refused(what, prefix, *needles):
    r = t.ingest(store, prefix)
    t.fails_clearly(f"{what}: refused, naming the path and the difference", r, prefix, h,
                    "--replace", *needles)
    t.eq(f"{what}: nothing changed", snapshot(store), before)
    return r


def variant(name):
    p = os.path.realpath(t.path(name))
    subprocess.run(["cp", "-a", R, p], check=True)
    # A copy of R at another path, relocated as conda would install it there: the same
    # environment until a case changes it.
    for rel in ("bin/script", "lib/libr.so"):
        q = os.path.join(p, rel)
        with open(q, "rb") as f:
            data = f.read()
        with open(q, "wb") as f:
            f.write(lib.relocate(data, RB, p.encode(), lib.reloc_mode(rel.encode(), data, None)[0]))
    os.unlink(os.path.join(p, "share/abs-link"))
    os.symlink(p + "/share/data.txt", os.path.join(p, "share/abs-link"))
    set_mtimes(p, MT)
    return p


with t.section("a tree that differs is refused"):
    p = variant("v-mtime")
    os.utime(os.path.join(p, "share/small.txt"), ns=(MT + 1, MT + 1))
    refused("a touched file", p, "share/small.txt (mtime)")
    p = variant("v-content")
    with open(os.path.join(p, "share/small.txt"), "wb") as f:
        f.write(b"SMALL\n")
    os.utime(os.path.join(p, "share/small.txt"), ns=(MT, MT))
    refused("same size and mtime, other bytes", p, "share/small.txt (content)")
    p = variant("v-mode")
    os.chmod(os.path.join(p, "share/small.txt"), 0o600)
    refused("a mode change", p, "share/small.txt (mode)")
    p = variant("v-link")
    os.unlink(os.path.join(p, "share/abs-link"))
    os.symlink(p + "/share/small.txt", os.path.join(p, "share/abs-link"))
    set_mtimes(p, MT)
    refused("a symlink pointing elsewhere", p, "share/abs-link (link target)")
    p = variant("v-added")
    lib.write(os.path.join(p, "share/new-file"), "post-link output\n", mtime_ns=MT)
    os.utime(os.path.join(p, "share"), ns=(MT, MT))
    refused("an added file", p, "share/new-file (only in the prefix)")
    p = variant("v-removed")
    os.unlink(os.path.join(p, "share/small.txt"))
    os.utime(os.path.join(p, "share"), ns=(MT, MT))
    refused("a removed file", p, "share/small.txt (only in the store)")
    p = variant("v-many")
    for i in range(12):
        os.utime(os.path.join(p, "many", f"f{i:02d}"), ns=(MT + 5, MT + 5))
    r = refused("twelve touched files", p, "12 paths", "many/f00 (mtime)")
    t.check("...the list is cut short with \"...\"", r.errors() and "..." in r.errors()[0], r)

with t.section("--replace swaps the new tree in"):
    p = variant("v-replace")
    with open(os.path.join(p, "share/small.txt"), "wb") as f:
        f.write(b"replaced content, longer than before\n")
    lib.write(os.path.join(p, "share/added.txt"), b"added\n")
    os.unlink(os.path.join(p, "many/f03"))
    os.chmod(os.path.join(p, "bin/script"), 0o700)
    set_mtimes(p, MT + 1000)
    r = t.ingest(store, p, "--replace")
    t.eq("ingest --replace: exit 0, the bare hash, \"replaced\" on stderr",
         (lib.ingest_said(r), r.errors()), ((0, h, "replaced"), []), r)
    envs = t.ls(store)
    t.eq("ls still shows one environment with that hash", [e["hash"] for e in envs or []], [h])
    t.eq("...its source prefix is the new one", envs and envs[0]["source_prefix"], p)
    t.verify_clean("verify exits 0 after the replacement", store)
    d = t.path("export-replaced")
    r = t.export(store, h, d)
    t.ok("export succeeds", r)
    lib.report_tree(t, "the export equals the new tree", *lib.compare_trees(p, d, p, d))
    r = t.cfs(store, "cat", h, "share/small.txt")
    t.eq("cat serves the new content", r.out, "replaced content, longer than before\n")
    r = t.ingest(store, p)
    t.eq("the new tree again: already stored", lib.ingest_said(r), (0, h, "already stored"))
    r = t.ingest(store, p, "--replace")
    t.eq("--replace with an identical tree: already stored, nothing swapped",
         lib.ingest_said(r), (0, h, "already stored"))
    r = t.ingest(store, R)
    t.fails_clearly("the original tree is now the one that differs", r, R, h, "--replace")
    r = t.ingest(store, R, "--replace")
    t.eq("...and --replace brings it back", lib.ingest_said(r), (0, h, "replaced"))
    d = t.path("export-back")
    t.ok("export succeeds", t.export(store, h, d))
    lib.report_tree(t, "the export equals the original tree", *lib.compare_trees(R, d, R, d))
    t.verify_clean("verify exits 0", store)

t.finish()
