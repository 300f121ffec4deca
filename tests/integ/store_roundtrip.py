#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Ingest -> export round trip for every corpus env (small, sci, small-rebuild, torch):
exported to a directory whose path is longer, shorter or as long as the source prefix,
the tree equals the source file by file with the prefix replaced by conda's rules (bytes,
mode, size, mtime ns, symlink targets, hard links, empty files and dirs); exported with
--prefix the original prefix, it is the source byte for byte. The exported env runs: its
python imports numpy (and scipy / torch / jwt) from inside the export, and the corpus's
binary-slot program finds its library and data through relocated compiled-in paths."""

import json
import os
import subprocess

import lib

t = lib.Harness("store_roundtrip: every corpus env, ingest -> export -> compare -> run")
store = t.path("store")

PROBE = r"""
import importlib, json, sys
mods = {m: importlib.import_module(m).__file__ for m in sys.argv[1].split(",")}
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if ".so" in l.split()[-1]})
print(json.dumps({"prefix": sys.prefix, "exec_prefix": sys.exec_prefix, "mods": mods,
                  "libs": libs, "path": sys.path}))
"""


def export_path(name, length):
    """A fresh directory path of exactly length bytes (or as close as the temp dir allows)."""
    base = t.path(f"x-{name}-")
    return base + "p" * max(1, length - len(base))


def run_checks(name, e, d, src):
    """The exported env runs from d and uses nothing from the source prefix src."""
    home = t.path("home")
    os.makedirs(home, exist_ok=True)
    env = {"PATH": f"{d}/bin:/usr/bin:/bin", "LD_LIBRARY_PATH": f"{d}/lib", "HOME": home,
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    imports = e["run"]["imports"]
    p = subprocess.run([f"{d}/{e['run']['python']}", "-B", "-c", PROBE, ",".join(imports)],
                       env=env, capture_output=True, text=True, timeout=300)
    if not t.check(f"{name}: the exported python imports {', '.join(imports)}", p.returncode == 0,
                   p.stderr[-2000:]):
        return
    out = json.loads(p.stdout)
    t.eq(f"{name}: sys.prefix is the export", (out["prefix"], out["exec_prefix"]), (d, d))
    for m, f in out["mods"].items():
        t.check(f"{name}: {m} is imported from inside the export ({os.path.relpath(f, d)})",
                f.startswith(d + "/"), f)
    stale = [x for x in out["libs"] + out["path"] if x.startswith(src + "/") or x == src]
    t.eq(f"{name}: no library or sys.path entry from the source prefix", stale, [])
    p = subprocess.run([f"{d}/bin/python3", "-B", "-c",
                        "import numpy; print(numpy.__file__)"], env=env, capture_output=True,
                       text=True, timeout=120)
    t.eq(f"{name}: `python3 -c 'import numpy; print(numpy.__file__)'` resolves inside",
         (p.returncode, p.stdout.strip()),
         (0, f"{d}/lib/python3.11/site-packages/numpy/__init__.py"), p.stderr[-1000:])
    bare = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
    prog = f"{d}/{e['run']['binary_slot_program']}"
    with open(f"{d}/{e['run']['expected_message_file']}") as f:
        msg = f.read()
    p = subprocess.run([prog], env=bare, capture_output=True, text=True, timeout=60)
    t.eq(f"{name}: {e['run']['binary_slot_program']} prints the export's message",
         (p.returncode, p.stdout), (0, msg), p.stderr)
    p = subprocess.run([prog, "--where"], env=bare, capture_output=True, text=True, timeout=60)
    t.eq(f"{name}: its compiled-in paths (program and library) point into the export",
         (p.returncode, p.stdout),
         (0, f"message: {d}/share/corpus-hello/message.txt\ndatadir: {d}/share/corpus-hello\n"),
         p.stderr)


for name, delta in (("small", +17), ("sci", -9), ("small-rebuild", 0), ("torch", -40)):
    with t.section(f"{name}"):
        e = t.env(name)
        src = e["prefix"]
        r = t.ingest(store, src)
        t.ok(f"{name}: ingest succeeds ({r.secs:.1f}s)", r)
        h = r.out.strip()
        d = export_path(name, len(src) + delta)
        r = t.export(store, h, d)
        t.ok(f"{name}: export to a path {len(d) - len(src):+d} bytes longer ({r.secs:.1f}s)", r)
        if r.rc != 0:
            continue
        problems, counts = lib.compare_trees(src, d, src, d)
        lib.report_tree(t, f"{name}: the export equals the source relocated", problems, counts)
        s = e["stats"]
        t.eq(f"{name}: the comparison saw every file, dir and symlink of the corpus stats",
             (counts["files"], counts["dirs"] + 1, counts["symlinks"]),
             (s["files"], s["dirs"], s["symlinks"]))
        slots = e["run"]["binary_slot_files"]
        t.eq(f"{name}: the binary-slot files are among the {counts['relocated']} relocated",
             [f for f in slots if f.encode() in counts["relocated_paths"]], slots)
        r = t.cfs(None, "hash", d)
        t.eq(f"{name}: the export is a conda prefix with the same hash", (r.rc, r.out.strip()),
             (0, h))
        run_checks(name, e, d, src)
        t.rmtree(d)
        d = t.path(f"orig-{name}")
        r = t.export(store, h, d, prefix=src)
        t.ok(f"{name}: export --prefix <the source prefix> ({r.secs:.1f}s)", r)
        if r.rc == 0:
            lib.report_tree(t, f"{name}: that export is the source byte for byte",
                            *lib.compare_trees(src, d))
        t.rmtree(d)

with t.section("the store"):
    t.verify_clean("verify exits 0", store)
    envs = t.ls(store)
    t.eq("ls lists the four envs", len(envs or []), 4)

t.finish()
