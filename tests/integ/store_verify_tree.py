#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""verify checks every file's link to its object and every environment's tree, not only
the objects: a catalog damaged with sqlite3 makes it exit 1 naming the environment and path
and what is wrong: a file whose object row is gone, a file whose size disagrees with its
object, a file in a group of another object, names with '/', NUL, '.', '..' or nothing, a
directory object whose bytes do not match its key, an index whose directories are out of
order or disagree with their objects, a missing index or directory object. `verify
--repair` marks such an environment broken and exits 4 (nothing it can mend). `cat` of a
file whose object is shorter than its size fails instead of printing a short file with
exit 0. The trees are damaged through tests/integ/trees.py, which writes the format on its
own."""

import json
import os
import random
import shutil
import sqlite3

import lib
import trees

t = lib.Harness("store_verify_tree: node links and tree shapes are verified")
rnd = random.Random(20251105)
BIG = rnd.randbytes(600 << 10)
FILES = {"share/big.bin": BIG, "share/small.txt": b"small and packed\n",
         "lib/a/b/deep.txt": b"deep\n", "lib/a/sibling.txt": b"sibling\n"}
src = lib.make_prefix(t.path("p"), pkgs=[("tree", "1.0", "h0_0")], files=FILES)
clean = t.path("clean")
h = t.ingest(clean, src).out.strip()
t.check("ingested", lib.HASH_RE.match(h), h)
t.verify_clean("verify is clean to begin with", clean)
n = 0

with t.section("a file whose object is a pack of one member (the same row)"):
    one = t.path("one-member")
    shutil.copytree(clean, one, symlinks=True)
    # The same environment with one small file changed: its only new content.
    src2 = lib.make_prefix(t.path("p2"), pkgs=[("tree", "1.0", "h0_0")],
                           files=dict(FILES, **{"share/small.txt": b"the only new content\n"}))
    t.ok("ingest --replace", t.ingest(one, src2, "--replace"))
    kinds = lib.catalog_rows(one, "SELECT kind FROM objects WHERE id = ?",
                             (lib.catalog_nodes(one, h)[b"share/small.txt"]["obj"],))
    t.eq("its node names a pack row", kinds, [(1,)])
    t.verify_clean("verify is clean", one)


def damage(sql_list=(), rows=None, edit=None):
    """A copy of the clean store with the given statements run on its catalog, then its
    tree rebuilt after rows(rows by id) edited the nodes (trees.rewrite_env), then
    edit(db, env id) run."""
    global n
    n += 1
    store = t.path(f"store-{n}")
    shutil.copytree(clean, store, symlinks=True)
    db = sqlite3.connect(os.path.join(store, "catalog.db"))
    for q, args in sql_list:
        db.execute(q, args)
    env = db.execute("SELECT id FROM envs WHERE hash = ?", (h,)).fetchone()[0]
    if rows:
        trees.rewrite_env(db, env, rows)
    if edit:
        edit(db, env)
    db.commit()
    db.close()
    return store


def index_of(db, env):
    k = bytes(db.execute("SELECT tree FROM envs WHERE id = ?", (env,)).fetchone()[0])
    return trees.decode_index(trees.tree_data(db, k, trees.KIND_INDEX))


def set_index(db, env, x):
    db.execute("UPDATE envs SET tree = ? WHERE id = ?",
               (trees.put(db, trees.encode_index(x), trees.KIND_INDEX), env))


def node(rel):
    return lib.catalog_nodes(clean, h)[rel.encode()]


def verify_names(what, store, needles):
    """verify exits 1, and some line names every needle; --json counts a tree problem;
    --repair marks the environment broken and exits 4."""
    r = t.cfs(store, "verify")
    t.check(f"{what}: verify exits 1 naming {needles}", r.rc == 1 and any(
        all(x in line for x in needles) for line in r.out.splitlines()), r)
    r = t.cfs(store, "--json", "verify")
    v = json.loads(r.out) if r.out.startswith("{") else {}
    t.check(f"{what}: --json counts it", r.rc == 1 and v.get("damaged_nodes", 0) +
            v.get("corrupt", 0) >= 1, r)
    r = t.cfs(store, "--json", "verify", "--repair")
    v = json.loads(r.out) if r.out.startswith("{") else {}
    t.check(f"{what}: --repair exits 4 and leaves the environment broken", r.rc == 4 and
            v.get("envs_broken") == 1, r)
    ls = t.ls(store) or []
    t.check(f"{what}: ls shows it broken", [e.get("broken") for e in ls] == [True], ls)


with t.section("a file's object row deleted"):
    big = node("share/big.bin")
    s = damage([("DELETE FROM objects WHERE id = ?", (big["obj"],))])
    verify_names("object row gone", s, [f"{h}/share/big.bin", "no object row"])

with t.section("a file's size changed"):
    def grow(k):
        return lambda rows: rows[big["id"]].update(size=rows[big["id"]]["size"] + k)
    s = damage(rows=grow(100))
    verify_names("size + 100", s, [f"{h}/share/big.bin", "size"])
    r = t.cfs(s, "cat", h, "share/big.bin")
    t.fails_clearly("cat of a file longer than its object fails, naming it", r,
                    "share/big.bin")
    s = damage(rows=grow(-100))
    verify_names("size - 100", s, [f"{h}/share/big.bin", "size"])

with t.section("a file in a group of another object"):
    small = node("share/small.txt")
    s = damage(rows=lambda rows: rows[big["id"]].update(grp=small["grp"]))
    verify_names("wrong group", s, [f"{h}/share/big.bin", "group"])

for bad, label in ((b"a/b", "a '/'"), (b"x\0y", "a NUL"), (b".", "'.'"), (b"..", "'..'"),
                   (b"", "no name")):
    with t.section(f"a name with {label}"):
        sib = node("lib/a/sibling.txt")["id"]
        s = damage(rows=lambda rows: rows[sib].update(name=bad))
        verify_names(f"name {label}", s, [h, "name"])

with t.section("a directory object whose bytes do not match its key"):
    def flip(db, env):
        x = index_of(db, env)
        k = x["dirs"][0]["key"]  # the top directory: every path passes through it
        data = bytearray(trees.tree_data(db, k, trees.KIND_DIR))
        data[-1] ^= 1
        trees.set_tree_data(db, k, trees.KIND_DIR, bytes(data))
    s = damage(edit=flip)
    verify_names("a byte flipped", s, [h, "do not match its key"])
    r = t.cfs(s, "cat", h, "share/big.bin")
    t.fails_clearly("cat through it fails, naming the damage", r, "do not match its key")
    s = damage(edit=lambda db, env: db.execute(
        "UPDATE trees SET data = ? WHERE key = ?", 
        (b"not zstd", index_of(db, env)["dirs"][0]["key"])))
    verify_names("stored bytes that are no zstd frame", s, [h, "not a zstd frame"])

with t.section("an index out of order, and one that disagrees with its directories"):
    def swap(db, env):
        x = index_of(db, env)
        x["dirs"][1]["self"], x["dirs"][2]["self"] = x["dirs"][2]["self"], x["dirs"][1]["self"]
        set_index(db, env, x)
    s = damage(edit=swap)
    verify_names("directories out of order", s, [h, "out of order"])

    def other_key(db, env):
        x = index_of(db, env)
        x["dirs"][1]["key"] = x["dirs"][2]["key"]
        set_index(db, env, x)
    s = damage(edit=other_key)
    verify_names("a directory's object not its own", s, [h, "disagree"])

with t.section("the index gone, and a directory object gone"):
    s = damage(edit=lambda db, env: db.execute(
        "DELETE FROM trees WHERE kind = ?", (trees.KIND_INDEX,)))
    verify_names("index gone", s, [h, "index is missing"])
    s = damage(edit=lambda db, env: db.execute(
        "DELETE FROM trees WHERE key = ?", (index_of(db, env)["dirs"][1]["key"],)))
    verify_names("directory object gone", s, [h, "is missing"])

t.finish()
