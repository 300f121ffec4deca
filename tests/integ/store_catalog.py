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
leaves its files, which the next gc deletes. A version 6 catalog, whose trees were rows of a
table of their own, is upgraded by the first writing command: the trees table goes, each
environment's tree becomes the same tree image an ingest writes, reading the same nodes."""

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
    # The environment's tree image (docs/tree-format.md) is an object like any: its row
    # gone, envs.tree still names it, and its file is no orphan.
    shutil.copy(saved, db)
    tree = lib.env_tree_key(store, h)
    with open(lib.object_file(store, tree), "rb") as f:
        tree_bytes = f.read()
    sql_exec("DELETE FROM objects WHERE key = ?", (tree,))
    for args in (["gc"], ["gc", "--unused-for", "0s"]):
        r = t.cfs(store, *args)
        t.fails_clearly(f"the tree image's row gone: {' '.join(args)} refuses, naming "
                        "catalog.db and the image", r, "catalog.db", tree.hex())
    r = t.cfs(store, "verify", "--repair")
    t.check("the tree image's row gone: verify --repair names it, exits 4", r.rc == 4 and
            f"object {tree.hex()}: no object row" in r.out, r)
    t.eq("the tree image's row gone: every image file is still there", lib.image_files(store),
         images)
    if not os.path.exists(lib.object_file(store, tree)):   # (so that what follows can run)
        os.makedirs(os.path.dirname(lib.object_file(store, tree)), exist_ok=True)
        with open(lib.object_file(store, tree), "wb") as f:
            f.write(tree_bytes)
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
    # Enough new images (files too large to pack) that a syncfs makes them durable, and its
    # second one follows the publishing (a few are fsynced one by one: ingest_store.c).
    first = t.path("first-store")
    M = lib.make_prefix(t.path("m"), pkgs=[("catm", "1.0", "h0_0")], files={
        f"share/m{i}.bin": rnd.randbytes(300 << 10) for i in range(12)})
    r = t.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
               "inject=syncfs:signal=SIGKILL:when=2", t.condafs, "--store", first, "ingest", M])
    t.check("the ingest was killed between publishing and its commit",
            r.rc != 0 and lib.image_files(first), r)
    t.verify_clean("verify accepts the store (its images are unreferenced)", first)
    t.ok("gc", t.cfs(first, "gc"))
    t.eq("gc removed them", lib.image_files(first), {})
    t.ok("a re-run of the ingest", t.ingest(first, M))
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

def tree_images(store_):
    """{env id: (tree key, kind, refs, owner, esum, esq)} of every environment row."""
    return {e: (bytes(k), kind, refs, owner, esum, esq) for e, k, kind, refs, owner, esum, esq
            in lib.catalog_rows(store_, "SELECT e.id, e.tree, o.kind, o.refs, o.owner, o.esum,"
                                " o.esq FROM envs e LEFT JOIN objects o ON o.key = e.tree")}


def every_tree(store_):
    """{env id: env_rows} of every environment row, live or removed."""
    c = sqlite3.connect(f"file:{os.path.join(store_, 'catalog.db')}?mode=ro", uri=True)
    try:
        return {e: lib.trees.env_rows(c, store_, e) for (e,) in c.execute("SELECT id FROM envs")}
    finally:
        c.close()


with t.section("a version 6 catalog (trees in a table) is upgraded by the first write"):
    # What condafs wrote before tree images (docs/tree-format.md, "Versions"): every
    # directory object, index and relocation record kept apart a row of the trees table.
    # R holds what each of those is made of: a record longer than 4096 bytes (kept apart),
    # two identical directories, a hard link, a symbolic link; rm'd and ingested again, it
    # is two environment rows naming one tree.
    v6 = t.path("store-v6")
    R = os.path.realpath(t.path("r"))
    lib.make_prefix(R, pkgs=[("catr", "1.0", "h0_0")], files={
        "share/many.txt": (R + "/x\n") * 6000, "share/same/a.txt": b"same\n",
        "share/same2/a.txt": b"same\n", "lib/one.bin": rnd.randbytes(5000)})
    for rel in ("share/same/a.txt", "share/same2/a.txt"):
        os.utime(os.path.join(R, rel), ns=(1700000000 * 10 ** 9,) * 2)
    os.link(os.path.join(R, "lib/one.bin"), os.path.join(R, "lib/two.bin"))
    os.symlink("../share/many.txt", os.path.join(R, "lib/many-link"))
    t.eq("A ingested", t.ingest(v6, A).out.strip(), h)
    hr = t.ingest(v6, R).out.strip()
    t.ok("R ingested, removed, and ingested again", t.cfs(v6, "rm", hr))
    t.eq("...under the same hash", t.ingest(v6, R).out.strip(), hr)
    before = tree_images(v6)
    (er_old, er), = lib.catalog_rows(v6, "SELECT min(id), max(id) FROM envs WHERE hash = ?",
                                     (hr,))
    t.eq("R's two rows name one tree image: kind 2, 2 references, no owner (C7)",
         (before[er][0] == before[er_old][0], before[er][1:]),
         (True, (2, 2, None, er + er_old, er * er + er_old * er_old)))
    rows = every_tree(v6)
    rec = next((r["reloc"] for r in rows[er].values() if r["name"] == b"many.txt"), None)
    t.check("share/many.txt has a record longer than 4096 bytes (kept apart)",
            rec and len(rec) > lib.trees.RELOC_INLINE, len(rec or b""))
    unique = {e["hash"]: e["unique_bytes"] for e in t.ls(v6) or []}
    lib.catalog_to_v6(v6)
    kinds = dict(lib.catalog_rows(v6, "SELECT kind, count(*) FROM trees GROUP BY kind"))
    t.check(f"made version 6: trees rows of each kind ({kinds}), no tree image left",
            lib.catalog_version(v6) == "6" and all(kinds.get(k) for k in (0, 1, 2)) and
            not lib.catalog_rows(v6, "SELECT id FROM objects WHERE kind = 2") and
            not any(os.path.exists(lib.object_file(v6, k)) for k, *_ in before.values()),
            kinds)
    r = t.cfs(v6, "ls")
    t.check("ls refuses the version 6 catalog, naming the command that upgrades it",
            r.rc != 0 and "version 6" in r.err and "upgrades it" in r.err, r)
    t.ok("a writing command (tag) upgrades it", t.cfs(v6, "tag", "keep", h))
    t.eq("version 8, the trees table gone",
         (lib.catalog_version(v6), lib.catalog_rows(
             v6, "SELECT count(*) FROM sqlite_master WHERE name = 'trees'")), ("8", [(0,)]))
    t.eq("every environment row reads the same tree as before (every node, file, link, "
         "record)", every_tree(v6), rows)
    after = tree_images(v6)
    t.eq("each environment's tree image is the one the ingest wrote (the same content)",
         {e: v[0] for e, v in after.items()}, {e: v[0] for e, v in before.items()})
    t.eq("...an object of kind 2, counted and owned as before (C2, C7)", after, before)
    t.eq("every reference count right", lib.refs_wrong(v6), [])
    t.eq("the link counts of shared files (C8)", lib.nlink_wrong(v6), [])
    for e, (k, *_) in sorted(after.items()):
        t.eq(f"environment {e}: its tree image laid out as docs/tree-format.md says",
             lib.trees.layout_problems(lib.trees.read_object(v6, k)), [])
    t.eq("unique bytes as before", {e["hash"]: e["unique_bytes"] for e in t.ls(v6) or []},
         unique)
    t.verify_clean("verify after the upgrade", v6)
    r = t.cfs(v6, "cat", hr, "share/many.txt")
    t.eq("cat reads the file with the record kept apart", (r.rc, r.out),
         (0, (R + "/x\n") * 6000))
    d = t.path("export-v6")
    t.ok("export R", t.export(v6, hr, d))
    lib.report_tree(t, "...equal to its source", *lib.compare_trees(R, d, R, d))
    t.ok("gc reaps R's removed row", t.cfs(v6, "gc"))
    t.eq("R's tree image: 1 reference, owned by the live row (C7)",
         tree_images(v6).get(er), (before[er][0], 2, 1, er, er, er * er))
    t.verify_clean("verify after gc", v6)

t.finish()
