#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Damage gives EIO for the damaged file only, never wrong bytes: a truncated object and a
missing object make every file that uses them fail with EIO (again on every read), while
the rest of the environment reads and runs; the daemon logs each failing file once, naming
the environment, the path and the object. A binary whose NUL-padded slot is too short for
the mount path is EIO too, logged naming the file."""

import errno
import json
import os

import fs_lib
import lib

t = fs_lib.FsHarness("fs_corrupt: EIO on damaged files only, logged once")


def read_errno(path):
    try:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
        return 0
    except OSError as e:
        return e.errno


def users(store):
    """{object path: [(env, path)]} of the objects verify finds missing or corrupt."""
    r = t.cfs(store, "--json", "verify")
    out = {}
    for p in json.loads(r.out)["problems"]:
        if p["environment"]:
            k = p["object"]
            out.setdefault(os.path.join("objects", k[:2], k[2:]), []).append(
                (p["environment"], p["path"]))
    return out


with t.section("a truncated and a missing object"):
    store = t.path("store")
    h = t.ingest_hash(store, t.env("small")["prefix"])
    # Two object files of some size, of file contents: not the environment's tree image,
    # without which no file of it is found (store_verify_tree damages that one).
    trees_ = {lib.object_file(store, bytes(k)) for (k,) in lib.catalog_rows(
        store, "SELECT tree FROM envs")}
    objs = []
    for dirpath, _, files in os.walk(os.path.join(store, "objects")):
        for fn in files:
            p = os.path.join(dirpath, fn)
            if p not in trees_:
                objs.append((os.path.getsize(p), os.path.relpath(p, store)))
    objs.sort()
    truncated, missing = objs[len(objs) // 2][1], objs[len(objs) // 3][1]
    with open(os.path.join(store, truncated), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(store, truncated)) // 2)
    os.unlink(os.path.join(store, missing))
    bad = users(store)
    t.check("verify names the users of both objects",
            bad.get(truncated) and bad.get(missing), bad)
    # The single-threaded loop (the other tests use the default and more threads).
    with t.daemon(store, args=["--threads", "1"]) as d:
        for obj in (truncated, missing):
            for env, rel in bad.get(obj, []):
                p = d.path(env, rel)
                t.eq(f"{rel}: EIO", read_errno(p), errno.EIO)
                t.eq(f"{rel}: EIO again (nothing cached)", read_errno(p), errno.EIO)
                t.check(f"{rel}: its attributes still come", os.stat(p).st_size > 0)
        env = d.path(h)
        r = t.run_env(env, [os.path.join(env, "bin", "python3"), "-c", "print('fine')"])
        t.check("the rest of the environment runs", r.rc == 0 and r.out == "fine\n", r)
        damaged = {rel for o in (truncated, missing) for _, rel in bad.get(o, [])}
        others = [rel for rel, _ in fs_lib.list_files(env) if rel not in damaged][::40]
        errs = [rel for rel in others if read_errno(os.path.join(env, rel))]
        t.check(f"{len(others)} other files read without error", not errs, errs)
    log = d.log()
    for obj in (truncated, missing):
        for env, rel in bad.get(obj, []):
            lines = [x for x in log.splitlines() if f"{env}/{rel}:" in x]
            t.check(f"{rel}: logged once, with environment, path and object",
                    len(lines) == 1 and obj in lines[0] and "error" in lines[0], log[-3000:])

with t.section("a binary slot too short for the mount path"):
    store = t.path("store-slot")
    src = lib.make_prefix(t.path("p"), pkgs=[("slot", "1.0", "h0_0")])
    pb = os.fsencode(src)
    lib.write(os.path.join(src, "lib", "tight.bin"),
              b"\x7fELF\0\0" + pb + b"/lib\0\0\0\0more\0" + b"\1" * 100, 0o755)
    lib.write(os.path.join(src, "lib", "fine.txt"), "text mentions " + src + "\n", 0o644)
    h2 = t.ingest_hash(store, src)
    mnt = t.path("m" * 80)
    with t.daemon(store, mnt) as d:
        t.eq("the binary is EIO", read_errno(d.path(h2, "lib", "tight.bin")), errno.EIO)
        with open(d.path(h2, "lib", "fine.txt")) as f:
            t.eq("a text file beside it is relocated", f.read(),
                 "text mentions " + d.path(h2) + "\n")
    lines = [x for x in d.log().splitlines() if "lib/tight.bin" in x]
    t.check("logged once, naming the file and the slot", len(lines) == 1 and
            "does not fit" in lines[0] and h2 in lines[0], d.log()[-2000:])

t.finish()
