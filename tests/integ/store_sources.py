#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Files whose bytes were verified before (store/ingest.c I4, catalog.c C5): ingest records
every file it stored or compared, by device, inode and ctime. A later ingest shares a
stored key without decompressing it only for the very inode recorded, unchanged since:
another inode with the same content is compared byte for byte, and so is the same inode
once anything changed it, even with its mtime set back. A corrupt object is then still
refused by every ingest that compares it, and verify --repair and gc forget what they
drop. An inode has one row, naming the last content seen in it. A version 2 catalog is
read as it is and upgraded by the first writing command; so is a version 3 one, whose
environments' unique bytes (catalog.c C7, each environment's tree image included) read the
same before and after."""

import os
import shutil
import sqlite3

import lib

t = lib.Harness("store_sources: a file verified before is not compared again, nothing else")
MT = 1700000000123456789
BIG = b"".join(b"line %06d of a large file that compresses\n" % i for i in range(9000))
SMALL = b"a small file, a member of a pack\n" * 4


def prefix(name, pkg, files=None, links_from=None, copies_from=None,
           rels=("lib/big.bin", "share/small.txt")):
    """A prefix of its own package; files rels hard-linked to (as conda links from its
    package cache) or copied from another prefix's."""
    root = t.path(name)
    lib.make_prefix(root, pkgs=[(pkg, "1.0", "h0_0")], files=files)
    for src, how in ((links_from, os.link), (copies_from, shutil.copy2)):
        if src:
            for rel in rels:
                os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
                how(os.path.join(src, rel), os.path.join(root, rel))
    return os.path.realpath(root)


def sources(store):
    return lib.catalog_rows(store, "SELECT obj, dev, ino, ctime_ns FROM sources")


def files_of(store, h):
    """{path: object id} of an environment's files."""
    return {rel.decode(): r["obj"] for rel, r in lib.catalog_nodes(store, h).items()
            if r["type"] == 2}


def unique_recount(store):
    """{hash: bytes} of each live environment's objects no other environment's files name
    (removed ones' included), counted from the trees themselves."""
    users = {}
    for r in lib.all_rows(store):
        if r["obj"]:
            users.setdefault(r["obj"], set()).add(r["env"])
    # Each environment's tree image is named by it (catalog.c C7), shared by another
    # environment only when their trees are the same.
    for env, obj in lib.catalog_rows(store, "SELECT e.id, o.id FROM envs e JOIN objects o"
                                     " ON o.key = e.tree"):
        users.setdefault(obj, set()).add(env)
    stored = dict(lib.catalog_rows(store, "SELECT id, stored FROM objects"))
    out = {}
    for env, h in lib.catalog_rows(store, "SELECT id, hash FROM envs WHERE removed = 0"):
        out[h] = sum(stored[o] for o, e in users.items() if e == {env})
    return out


def unique_ls(store):
    return {e["hash"]: e["unique_bytes"] for e in t.ls(store) or []}


def ingest_refused(what, store, root, before):
    r = t.ingest(store, root)
    t.fails_clearly(what, r, root, "same key but other content", "condafs verify")
    t.eq(f"{what}: nothing stored", sorted(t.hashes(store)), sorted(before))


# Every prefix exists before the first ingest: linking a file changes its ctime.
A = prefix("env-a", "a", {"lib/big.bin": BIG, "share/small.txt": SMALL,
                          "lib/other.bin": BIG[::-1]})
for rel in ("lib/big.bin", "share/small.txt"):
    os.utime(os.path.join(A, rel), ns=(MT, MT))
B = prefix("env-b", "b", links_from=A)
D = prefix("env-d", "d", links_from=A)
E = prefix("env-e", "e", links_from=A, rels=("lib/other.bin",))
C = prefix("env-c", "c", copies_from=A)
G = prefix("env-g", "g", {"share/x.txt": b"first content of x\n" * 100})
H = prefix("env-h", "h", links_from=G, rels=("share/x.txt",))
store = t.path("store")

with t.section("ingest records every file it read"):
    r = t.ingest(store, A)
    t.ok("env-a stored", r)
    ha = r.out.strip()
    want = set()
    for rel, obj in files_of(store, ha).items():
        st = os.lstat(os.path.join(A, rel))
        want.add((obj, st.st_dev, st.st_ino, st.st_ctime_ns))
    t.eq("one sources row per file: its object, device, inode and ctime", set(sources(store)),
         want)

# Two images damaged: from now on comparing their contents fails.
big_obj = files_of(store, ha)["lib/big.bin"]
other_obj = files_of(store, ha)["lib/other.bin"]
for obj in (big_obj, other_obj):
    lib.flip(lib.object_file(store, lib.catalog_object(store, obj)["key"]), 200)

with t.section("another inode with the same bytes is compared"):
    ingest_refused("env-c (copies of env-a's files)", store, C, [ha])

with t.section("the very inode, unchanged, is not compared again"):
    r = t.ingest(store, B)
    t.ok("env-b (hard links to env-a's files) is stored without reading the stored images", r)
    hb = r.out.strip()
    fa, fb = files_of(store, ha), files_of(store, hb)
    t.eq("env-b's linked files name env-a's objects",
         [fb[rel] for rel in ("lib/big.bin", "share/small.txt")],
         [fa[rel] for rel in ("lib/big.bin", "share/small.txt")])
    r = t.cfs(store, "verify")
    t.check("verify still finds the damaged object, named with both environments",
            r.rc != 0 and ha in r.out + r.err and hb in r.out + r.err, r)

with t.section("the same inode, changed and its mtime set back, is compared"):
    path = os.path.join(A, "lib/big.bin")
    with open(path, "r+b") as f:
        f.write(BIG[:10])
    os.utime(path, ns=(MT, MT))
    t.eq("the same bytes, size and mtime as when it was recorded",
         (open(path, "rb").read() == BIG, os.lstat(path).st_mtime_ns), (True, MT))
    ingest_refused("env-d (the same inodes, one written over in place)", store, D, [ha, hb])

with t.section("one row per inode: the last content seen in it"):
    other = t.path("store-gh")
    r = t.ingest(other, G)
    t.ok("env-g stored", r)
    x = os.lstat(os.path.join(G, "share/x.txt"))
    lib.write(os.path.join(G, "share/x.txt"), b"second content of x\n" * 100)
    r = t.ingest(other, H)
    t.ok("env-h (the same inode, written over since) stored", r)
    rows = lib.catalog_rows(other, "SELECT obj FROM sources WHERE dev = ? AND ino = ?",
                            (x.st_dev, x.st_ino))
    t.eq("the inode has one row, naming env-h's content", rows,
         [(files_of(other, r.out.strip())["share/x.txt"],)])

with t.section("verify --repair forgets the files of a damaged object"):
    r = t.cfs(store, "verify", "--repair")
    t.check("repair runs, and says the objects are still lost", r.rc != 0, r)
    t.eq("no sources row names a damaged object",
         [row for row in sources(store) if row[0] in (big_obj, other_obj)], [])
    ingest_refused("env-e (an unchanged inode of the repaired object) is compared", store, E,
                   [ha, hb])

with t.section("gc forgets the files of the objects it deletes"):
    for h in (ha, hb):
        t.ok(f"rm {h[:8]}", t.cfs(store, "rm", h))
    r = t.cfs(store, "gc", "--unused-for", "0s")
    t.ok("gc", r)
    t.eq("no sources row names a deleted object",
         lib.catalog_rows(store, "SELECT count(*) FROM sources WHERE obj NOT IN"
                          " (SELECT id FROM objects)"), [(0,)])
    t.eq("...and none is left (nothing is stored)", sources(store), [])

with t.section("a version 2 catalog is upgraded by the first write"):
    old = t.path("store-v2")
    t.ok("env-c stored", t.ingest(old, C))
    hc = t.hashes(old)
    lib.catalog_to_v3(old)
    db = sqlite3.connect(os.path.join(old, "catalog.db"))
    with db:
        db.executescript("DROP TABLE sources; CREATE INDEX nodes_env ON nodes(env);"
                         "CREATE INDEX objects_pack ON objects(pack) WHERE pack IS NOT NULL;"
                         "UPDATE meta SET value = '2' WHERE key = 'catalog_version'")
    db.close()
    r = t.ingest(old, A)
    t.ok("ingest into it succeeds", r)
    t.eq("it is version 8 now, with sources, without nodes, trees and the two dropped indexes",
         (lib.catalog_version(old), sorted(n for (n,) in lib.catalog_rows(
             old, "SELECT name FROM sqlite_schema WHERE name IN"
             " ('sources', 'nodes', 'trees', 'nodes_env', 'objects_pack')"))),
         ("8", ["sources"]))
    t.eq("...and every reference count right, tree images' too", lib.refs_wrong(old), [])
    r = t.cfs(old, "cat", hc[0], "share/small.txt")
    t.eq("cat reads a file of the environment it held", (r.rc, r.out), (0, SMALL.decode()))
    t.verify_clean("verify after the upgrade", old)

with t.section("a version 3 catalog: unique bytes read as they are, the same after the upgrade"):
    v3 = t.path("store-v3")
    hashes = {}
    for name, root in (("a", A), ("c", C), ("g", G), ("h", H)):
        r = t.ingest(v3, root)
        t.ok(f"env-{name} stored", r)
        hashes[name] = r.out.strip()
    t.ok("rm env-h: its rows stay until gc, naming the file it shares with env-g",
         t.cfs(v3, "rm", hashes["h"]))
    want = unique_recount(v3)
    t.eq("catalog.c C7: each environment's unique bytes are its objects no other one names",
         unique_ls(v3), want)
    ids_v3 = sorted(r["id"] for r in lib.all_rows(v3))
    lib.catalog_to_v3(v3)
    r = t.cfs(v3, "ls")
    t.check("ls refuses the version 3 catalog, naming the command that upgrades it",
            r.rc != 0 and "version 3" in r.err and "upgrades it" in r.err, r)
    t.ok("a writing command (tag) upgrades it", t.cfs(v3, "tag", "keep", hashes["g"]))
    t.eq("version 8, with the same unique bytes (tree images included)",
         (unique_ls(v3), lib.catalog_version(v3)), (want, "8"))
    t.eq("...and every reference count right, tree images' too", lib.refs_wrong(v3), [])
    t.eq("the nodes are gone, each environment a tree with the same node ids",
         (lib.catalog_rows(v3, "SELECT count(*) FROM sqlite_master WHERE name = 'nodes'"),
          sorted(r["id"] for r in lib.all_rows(v3))), ([(0,)], ids_v3))
    t.eq("...and the link counts of shared files (C8), env-h's not counted",
         lib.nlink_wrong(v3), [])
    groups = lib.catalog_rows(v3, "SELECT count(*) FROM groups")[0][0]
    t.ok("gc reaps env-h", t.cfs(v3, "gc"))
    named = {r["grp"] for r in lib.all_rows(v3) if r["grp"]}
    t.eq("its groups went with it, and no other",
         sorted(i for (i,) in lib.catalog_rows(v3, "SELECT id FROM groups")), sorted(named))
    t.check("(it had groups of its own)",
            lib.catalog_rows(v3, "SELECT count(*) FROM groups")[0][0] < groups)
    after = unique_recount(v3)
    t.check("env-g owns the file it shared with env-h now",
            after[hashes["g"]] > want[hashes["g"]], (want, after))
    t.eq("ls agrees", unique_ls(v3), after)
    t.eq("the link counts still hold", lib.nlink_wrong(v3), [])
    t.verify_clean("verify after the upgrade", v3)

t.finish()
