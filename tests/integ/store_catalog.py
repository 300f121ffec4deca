#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A lost catalog never costs the objects. A store whose catalog.db is missing, or empty (0
bytes), is refused by every command, read or write, with one line naming the file; nothing
recreates it, and no object file goes. A catalog that is whole but names no object while
objects/ holds images (one that never held an environment, put in place of the store's, or one
whose object rows were deleted) makes gc, verify and verify --repair refuse, deleting nothing;
so does gc when a node names an object row that is gone (verify --repair names the node, marks
the environment broken and deletes nothing). A directory holding objects but no
FORMAT and no catalog is not taken for an empty one: ingest refuses to create a store there.
And the legitimate case still works: gc killed after deleting the last environment's rows
leaves its files, which the next gc deletes."""

import os
import random
import shutil
import sqlite3

import lib

t = lib.Harness("store_catalog: a missing or empty catalog is refused, objects never lost")
store = t.path("store")
db = os.path.join(store, "catalog.db")
rnd = random.Random(20251104)
A = lib.make_prefix(t.path("a"), pkgs=[("cata", "1.0", "h0_0")], files={
    "share/big.bin": rnd.randbytes(600 << 10), "share/small.txt": b"small and packed\n"})
B = lib.make_prefix(t.path("b"), pkgs=[("catb", "1.0", "h0_0")], files={
    "share/other.bin": rnd.randbytes(400 << 10)})
h = t.ingest(store, A).out.strip()
t.check("ingested", lib.HASH_RE.match(h), h)
images = lib.image_files(store)
t.check("the store has image files", len(images) >= 2, images)


def sql_exec(query, args=()):
    c = sqlite3.connect(db)
    try:
        with c:
            c.execute(query, args)
    finally:
        c.close()


def aside(*names):
    """Move catalog files out of the store; returns the list to put back."""
    moved = []
    for n in names:
        p = os.path.join(store, n)
        if os.path.exists(p):
            os.rename(p, p + ".aside")
            moved.append(p)
    return moved


def back(moved):
    for n in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        p = os.path.join(store, n)
        if os.path.exists(p) and p not in moved:
            os.unlink(p)
    for p in moved:
        os.rename(p + ".aside", p)


COMMANDS = [["ingest", B], ["tag", "name", h], ["untag", "name"], ["rm", "--force", h],
            ["gc"], ["gc", "--dry-run"], ["gc", "--unused-for", "0s"], ["verify"],
            ["verify", "--repair"], ["ls"], ["show", h], ["stats"], ["cat", h, "share/small.txt"],
            ["export", h, t.path("export-never")]]


def every_command_refuses(what, needle, db_state):
    for args in COMMANDS:
        r = t.cfs(store, *args)
        t.fails_clearly(f"{what}: {' '.join(args[:2])}... fails naming catalog.db", r,
                        "catalog.db", needle)
        t.eq(f"{what}: after {args[0]}, catalog.db is as it was", db_state(), True)
    t.eq(f"{what}: every image file is still there", lib.image_files(store), images)


with t.section("catalog.db missing"):
    moved = aside("catalog.db", "catalog.db-wal", "catalog.db-shm")
    try:
        every_command_refuses("missing", "missing", lambda: not os.path.exists(db))
    finally:
        back(moved)
    t.verify_clean("put back: verify is clean", store)

with t.section("catalog.db empty (0 bytes)"):
    moved = aside("catalog.db", "catalog.db-wal", "catalog.db-shm")
    open(db, "wb").close()
    try:
        every_command_refuses("empty", "empty", lambda: os.path.getsize(db) == 0)
    finally:
        back(moved)
    t.verify_clean("put back: verify is clean", store)

with t.section("a whole catalog that names no object, in front of the objects"):
    fresh = t.path("fresh")
    r = t.cfs(fresh, "ingest", t.path("no-such-prefix"))
    t.check("a store is created even by an ingest that fails", r.rc != 0 and
            os.path.isfile(os.path.join(fresh, "catalog.db")), r)
    moved = aside("catalog.db", "catalog.db-wal", "catalog.db-shm")
    shutil.copy(os.path.join(fresh, "catalog.db"), db)
    try:
        for args in (["gc"], ["gc", "--unused-for", "0s"], ["verify", "--repair"],
                     ["verify"]):
            r = t.cfs(store, *args)
            t.fails_clearly(f"{' '.join(args)} refuses, naming catalog.db", r, "catalog.db",
                            "names no object")
            t.eq(f"{' '.join(args)}: every image file is still there",
                 lib.image_files(store), images)
    finally:
        back(moved)
    t.verify_clean("put back: verify is clean", store)

with t.section("object rows deleted with sqlite3, trees still naming them"):
    saved = t.path("catalog-saved.db")
    shutil.copy(db, saved)
    big = lib.catalog_nodes(store, h)[b"share/big.bin"]
    sql_exec("DELETE FROM objects WHERE id = ?", (big["obj"],))
    for args in (["gc"], ["gc", "--unused-for", "0s"]):
        r = t.cfs(store, *args)
        t.fails_clearly(f"one row gone: {' '.join(args)} refuses, naming catalog.db and the "
                        f"content", r, "catalog.db", big["key"].hex())
    r = t.cfs(store, "verify", "--repair")
    t.check("one row gone: verify --repair names the file, exits 4", r.rc == 4 and
            f"object {big['key'].hex()}: no object row: used by {h}/share/big.bin" in r.out, r)
    t.eq("one row gone: every image file is still there", lib.image_files(store), images)
    sql_exec("DELETE FROM objects")
    for args in (["gc"], ["verify", "--repair"], ["verify"]):
        r = t.cfs(store, *args)
        t.fails_clearly(f"every row gone: {' '.join(args)} refuses, naming catalog.db", r,
                        "catalog.db", "names no object")
    t.eq("every row gone: every image file is still there", lib.image_files(store), images)
    shutil.copy(saved, db)
    t.ok("put back (the saved catalog, from before the mark): verify --repair finds nothing",
         t.cfs(store, "verify", "--repair"))
    t.verify_clean("put back: verify is clean", store)

with t.section("objects but no FORMAT and no catalog: not a place to create a store"):
    moved = aside("catalog.db", "catalog.db-wal", "catalog.db-shm", "FORMAT")
    try:
        r = t.ingest(store, B)
        t.fails_clearly("ingest refuses to create a store over objects", r, store, "objects")
        t.check("no catalog.db and no FORMAT made", not os.path.exists(db) and
                not os.path.exists(os.path.join(store, "FORMAT")), os.listdir(store))
        t.eq("every image file is still there", lib.image_files(store), images)
    finally:
        back(moved)
    t.verify_clean("put back: verify is clean", store)

with t.section("a new store's first ingest killed after its images are published"):
    # Its catalog names nothing, yet objects/ holds images: they are orphans of that
    # ingest (the catalog says images were published), not a sign of a foreign catalog.
    first = t.path("first-store")
    r = t.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
               "inject=syncfs:signal=SIGKILL:when=2", t.condafs, "--store", first, "ingest", A])
    t.check("the ingest was killed between publishing and its commit",
            r.rc != 0 and lib.image_files(first), r)
    t.verify_clean("verify accepts the store (its images are unreferenced)", first)
    t.ok("gc", t.cfs(first, "gc"))
    t.eq("gc removed them", lib.image_files(first), {})
    t.ok("a re-run of the ingest", t.ingest(first, A))
    t.verify_clean("verify is clean", first)

with t.section("gc killed after its commit: the next gc deletes the files left"):
    keep = {p: open(p, "rb").read() for p in images}
    t.ok("rm", t.cfs(store, "rm", "--force", h))
    t.ok("gc", t.cfs(store, "gc", "--unused-for", "0s"))
    t.eq("gc deleted every image", lib.image_files(store), {})
    for p, data in keep.items():   # as if gc had died before its unlinks
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    r = t.cfs(store, "gc")
    t.ok("the next gc runs", r)
    t.eq("and deletes them", lib.image_files(store), {})
    t.verify_clean("verify is clean", store)

with t.section("gc's next unreferenced object is one index seek, not a sort of them all"):
    # Issue 13: reaping k objects sorted every unreferenced object k times. The plan is what
    # SQLite will do, not a timing; a store of the older index gets the new one on its
    # first writing command.
    sql_exec("DROP INDEX IF EXISTS objects_unreferenced")
    sql_exec("CREATE INDEX IF NOT EXISTS objects_unused ON objects(refs) WHERE refs = 0")
    t.ok("a writing command (tag)", t.cfs(store, "tag", "seek", t.ingest(store, B).out.strip()))
    c = sqlite3.connect(db)
    try:
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        plan = " / ".join(r[-1] for r in c.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM objects WHERE refs = 0 ORDER BY kind, id LIMIT 1"))
    finally:
        c.close()
    t.check("the older index is gone and the new one made",
            "objects_unreferenced" in names and "objects_unused" not in names, names)
    t.check("gc's query reads the index in order: no temporary B-tree",
            "objects_unreferenced" in plan and "TEMP B-TREE" not in plan, plan)
    t.verify_clean("verify is clean", store)

t.finish()
