#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""verify checks every node's link to its object and the shape of every tree, not only the
objects: catalog rows damaged with sqlite3 make it exit 1 naming the environment and path
(or node) and what is wrong: a file whose object row is gone, a file whose size disagrees
with its object, a file in a group of another object, names with '/', NUL, '.', '..' or
nothing, a child listed before its parent, a directory that contains its own ancestor (a
cycle), a directory whose children are not where it says, a missing top directory.
`verify --repair` marks such an environment broken and exits 4 (nothing it can mend). `cat`
of a file whose object is shorter than its size fails instead of printing a short file with
exit 0."""

import json
import os
import random
import shutil
import sqlite3

import lib

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
    kinds = lib.catalog_rows(one, "SELECT o.kind FROM nodes n JOIN envs e ON e.id = n.env"
                             " JOIN objects o ON o.id = n.obj WHERE e.hash = ? AND"
                             " e.removed = 0 AND n.name = ?", (h, b"small.txt"))
    t.eq("its node names a pack row", kinds, [(1,)])
    t.verify_clean("verify is clean", one)


def damage(sql_list):
    """A copy of the clean store with the given statements run on its catalog."""
    global n
    n += 1
    store = t.path(f"store-{n}")
    shutil.copytree(clean, store, symlinks=True)
    db = sqlite3.connect(os.path.join(store, "catalog.db"))
    for q, args in sql_list:
        db.execute(q, args)
    db.commit()
    db.close()
    return store


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
    s = damage([("UPDATE nodes SET size = size + 100 WHERE id = ?", (big["id"],))])
    verify_names("size + 100", s, [f"{h}/share/big.bin", "size"])
    r = t.cfs(s, "cat", h, "share/big.bin")
    t.fails_clearly("cat of a file longer than its object fails, naming it", r,
                    "share/big.bin")
    s = damage([("UPDATE nodes SET size = size - 100 WHERE id = ?", (big["id"],))])
    verify_names("size - 100", s, [f"{h}/share/big.bin", "size"])

with t.section("a file in a group of another object"):
    small = node("share/small.txt")
    s = damage([("UPDATE nodes SET grp = (SELECT grp FROM nodes WHERE id = ?) WHERE id = ?",
                 (small["id"], big["id"]))])
    verify_names("wrong group", s, [f"{h}/share/big.bin", "group"])

for bad, label in ((b"a/b", "a '/'"), (b"x\0y", "a NUL"), (b".", "'.'"), (b"..", "'..'"),
                   (b"", "no name")):
    with t.section(f"a name with {label}"):
        s = damage([("UPDATE nodes SET name = ? WHERE id = ?", (bad, node("lib/a/sibling.txt")["id"]))])
        verify_names(f"name {label}", s, [h, "name"])

with t.section("a child before its parent, and a cycle"):
    a, b = node("lib/a"), node("lib/a/b")
    # b's parent made a later node: b is listed before its parent.
    s = damage([("UPDATE nodes SET parent = ? WHERE id = ?", (node("lib/a/b/deep.txt")["id"],
                                                              b["id"]))])
    verify_names("parent after child", s, [h, "parent"])
    # a's children range pointed at the top directory's: a contains its own ancestors.
    top = lib.catalog_rows(clean, "SELECT first_child, nchildren FROM nodes WHERE id ="
                           " (SELECT root FROM envs WHERE hash = ?)", (h,))[0]
    s = damage([("UPDATE nodes SET first_child = ?, nchildren = ? WHERE id = ?",
                 (top[0], top[1], a["id"]))])
    verify_names("cycle", s, [h, "lib/a"])

with t.section("the top directory gone, and every node gone"):
    root = lib.catalog_rows(clean, "SELECT root FROM envs WHERE hash = ?", (h,))[0][0]
    s = damage([("DELETE FROM nodes WHERE id = ?", (root,))])
    verify_names("top gone", s, [h, "top directory"])
    s = damage([("DELETE FROM nodes", ())])
    verify_names("every node gone", s, [h, "top directory"])

with t.section("a directory whose children are not where it says"):
    s = damage([("UPDATE nodes SET nchildren = nchildren + 1 WHERE id = ?",
                 (node("lib/a")["id"],))])
    verify_names("nchildren + 1", s, [f"{h}/lib/a", "children"])

t.finish()
