#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The lifecycle as a mount sees it: tags are symlinks in the root that follow `condafs tag`
and `untag`; the daemon records last use (a read, a path into the environment) and not a
`stat` or listing of the environment's directory; an environment removed while a process
reads one of its files keeps serving that file until it is closed, while gc leaves its rows
alone, and once closed the next gc reaps it; --replace keeps tags."""

import errno
import json
import os
import sqlite3
import time

import fs_lib
import lib

t = fs_lib.FsHarness("fs_lifecycle: tags, last use, removal while open")

errno_of = fs_lib.errno_of
BIG = os.urandom(6 << 20)  # incompressible: every later read reaches the daemon


def wait_for(cond):
    return fs_lib.wait_for(cond) is not None


def prefix(name, extra=b""):
    return lib.make_prefix(t.path("src", name), pkgs=((name, "1.0", "h0_0"),), files={
        "bin/tool": b"#!/bin/sh\necho " + name.encode() + b"\n",
        "share/big.bin": BIG,
        "share/only-" + name: b"unique to " + name.encode() + extra,
    })


def last_used(store, h):
    with sqlite3.connect(os.path.join(store, "catalog.db")) as db:
        return db.execute("SELECT last_used FROM envs WHERE hash = ? AND removed = 0",
                          (h,)).fetchone()[0]


def set_last_used(store, when):
    with sqlite3.connect(os.path.join(store, "catalog.db")) as db:
        db.execute("UPDATE envs SET last_used = ?", (when,))


def gc(store, *args):
    r = t.cfs(store, "gc", "--json", *args)
    if r.rc != 0:
        raise RuntimeError(f"gc failed: {r}")
    return json.loads(r.out)


store = t.path("store")
ha = t.ingest_hash(store, prefix("alpha"))
hb = t.ingest_hash(store, prefix("beta"))

with t.section("tags are symlinks in the root"):
    t.ok("tag stable -> alpha", t.cfs(store, "tag", "stable", ha))
    with t.daemon(store) as d:
        t.eq("the root lists both environments and the tag", sorted(os.listdir(d.mnt)),
             sorted([ha, hb, "stable"]))
        link = d.path("stable")
        t.check("the tag is a symlink", os.path.islink(link))
        t.eq("pointing at the hash", os.readlink(link), ha)
        with open(os.path.join(link, "share", "only-alpha"), "rb") as f:
            t.eq("paths through it reach the environment", f.read(), b"unique to alpha")
        t.ok("move the tag to beta", t.cfs(store, "tag", "stable", hb))
        t.check("the link follows within seconds",
                wait_for(lambda: os.readlink(link) == hb), os.readlink(link))
        t.check("and paths through it reach beta",
                os.path.exists(os.path.join(link, "share", "only-beta")))
        t.ok("a second tag", t.cfs(store, "tag", "old.1", ha))
        t.check("appears", wait_for(lambda: os.path.islink(d.path("old.1"))))
        t.ok("untag it", t.cfs(store, "untag", "old.1"))
        t.check("it vanishes", wait_for(lambda: not os.path.lexists(d.path("old.1"))))
        t.eq("the root's listing follows", sorted(os.listdir(d.mnt)),
             sorted([ha, hb, "stable"]))
        t.eq("writing through a tag is EROFS",
             errno_of(lambda: open(os.path.join(link, "new"), "w")), errno.EROFS)
    t.sane_daemon(d)

with t.section("last use"):
    set_last_used(store, 1000)
    with t.daemon(store) as d:
        os.listdir(d.mnt)
        os.stat(d.path(ha))
        os.stat(d.path(hb))
        with open(os.path.join(d.path(ha), "share", "only-alpha"), "rb") as f:
            f.read()
        t0 = int(time.time())
    t.sane_daemon(d)
    t.check("a read recorded alpha's use (written when the daemon stops)",
            last_used(store, ha) >= t0 - 5, last_used(store, ha))
    t.eq("a stat and a listing did not count for beta", last_used(store, hb), 1000)
    set_last_used(store, int(time.time()))  # gc below must not take beta for unused

with t.section("removed while a file is open"):
    t.ok("untag stable", t.cfs(store, "untag", "stable"))
    with t.daemon(store) as d:
        f = open(os.path.join(d.path(ha), "share", "big.bin"), "rb")
        head = f.read(4096)
        t.ok("condafs rm alpha while it is open", t.cfs(store, "rm", ha))
        t.check("it vanishes from the mount",
                wait_for(lambda: not os.path.exists(d.path(ha))))
        rep = gc(store)
        t.eq("gc leaves it alone while the file is open", rep["environments_held"], 1, rep)
        t.verify_clean("verify is clean with it held", store)
        f.seek(3 << 20)
        mid = f.read(1 << 20)
        rest = f.read()
        t.check("the open file still reads correctly to its end",
                head == BIG[:4096] and mid == BIG[3 << 20:4 << 20] and
                rest == BIG[4 << 20:], f"{len(mid)} {len(rest)}")
        f.close()
        rep = None
        for _ in range(100):
            rep = gc(store)
            if rep["environments_held"] == 0:
                break
            time.sleep(0.1)
        t.eq("closed, the next gc reaps it", rep["environments_held"], 0, rep)
        t.check("and frees its unique object", rep["objects_freed"] >= 1, rep)
        t.check("beta is still served",
                os.path.exists(os.path.join(d.path(hb), "share", "only-beta")))
        t.verify_clean("verify is clean after reaping", store)
        t.ok("ingest alpha again while mounted", t.ingest(store, prefix("alpha")))
        t.check("it comes back", wait_for(lambda: os.path.exists(
            os.path.join(d.path(ha), "share", "only-alpha"))))
    t.sane_daemon(d)

with t.section("--replace keeps tags"):
    t.ok("tag keep -> alpha", t.cfs(store, "tag", "keep", ha))
    t.ok("replace alpha with a changed tree",
         t.ingest(store, prefix("alpha", extra=b" v2"), "--replace"))
    r = t.cfs(store, "show", "keep")
    t.check("the tag still names alpha", r.rc == 0 and ha in r.out + r.err, r)
    with t.daemon(store) as d:
        with open(os.path.join(d.path("keep"), "share", "only-alpha"), "rb") as f:
            t.eq("and serves the new tree", f.read(), b"unique to alpha v2")
    t.sane_daemon(d)
    rep = gc(store)
    t.eq("the replaced tree is reaped with no mount", rep["environments_held"], 0, rep)
    t.verify_clean("verify clean", store)

t.finish()
