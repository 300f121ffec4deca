#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""verify checks every file's link to its object and every environment's tree, not only
the objects: a catalog damaged with sqlite3 makes it exit 1 naming the environment and path
and what is wrong: a file whose object row is gone, a file whose size disagrees with its
object, a file in a group of another object, names with '/', NUL, '.', '..' or nothing, a
directory object whose bytes do not match its key, an index whose directories are out of
order or disagree with their objects, a tree image (docs/tree-format.md) whose tables
point outside it or with another magic, a relocation record kept apart whose bytes do not
match its key, a tree image missing, corrupt or without its object row. `verify
--repair` marks such an environment broken and exits 4 (nothing it can mend). `cat` of a
file whose object is shorter than its size fails instead of printing a short file with
exit 0. The trees are damaged through tests/integ/trees.py, which writes the format on its
own: every damaged tree is a new tree image, a valid object under its own key, so that
what finds the damage is the tree's own checks, not the image's checksums."""

import json
import os
import random
import shutil
import sqlite3
import struct

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
    edit(db, store, env id) run."""
    global n
    n += 1
    store = t.path(f"store-{n}")
    shutil.copytree(clean, store, symlinks=True)
    db = sqlite3.connect(os.path.join(store, "catalog.db"))
    for q, args in sql_list:
        db.execute(q, args)
    env = db.execute("SELECT id FROM envs WHERE hash = ?", (h,)).fetchone()[0]
    if rows:
        trees.rewrite_env(db, store, env, rows)
    if edit:
        edit(db, store, env)
    db.commit()
    db.close()
    return store


def index_of(db, store, env):
    return trees.env_tree(db, store, env)[0]


def tree_key(db, env):
    return bytes(db.execute("SELECT tree FROM envs WHERE id = ?", (env,)).fetchone()[0])


def edit_image(change):
    """An edit: the environment's tree image content replaced by change(content as a
    bytearray, parse_tree of it), published as a new image."""
    def edit(db, store, env):
        content = bytearray(trees.read_object(store, tree_key(db, env)))
        change(content, trees.parse_tree(content))
        trees.set_env_tree(db, store, env, bytes(content))
    return edit


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
    def flip(db, store, env):
        x = index_of(db, store, env)
        # The top directory: every path passes through it.
        trees.damage_dir(db, store, env, x["dirs"][0]["key"],
                         lambda b: b[:-1] + bytes([b[-1] ^ 1]))
    s = damage(edit=flip)
    verify_names("a byte flipped", s, [h, "match its key"])
    r = t.cfs(s, "cat", h, "share/big.bin")
    t.fails_clearly("cat through it fails, naming the damage", r, "match its key")

    # Version 6 kept each directory object as a zstd frame in a catalog row, and a test
    # stored one that was no frame. A tree image's frames are the object store's: a flipped
    # byte of the image file is its checksums' to find, and verify names the image.
    def flip_file(db, store, env):
        p = trees.object_path(store, tree_key(db, env))
        os.chmod(p, 0o644)
        lib.flip(p, os.path.getsize(p) - 3)
        os.chmod(p, 0o444)
    s = damage(edit=flip_file)
    verify_names("a byte of the tree image file flipped", s,
                 [lib.catalog_rows(s, "SELECT tree FROM envs")[0][0].hex(), "corrupt"])

with t.section("a tree image whose tables point outside it"):
    def past_end(content, p):
        # The second directory's object said to lie past the content's end.
        at = 24 + len(p["index"]) + 8
        struct.pack_into("<II", content, at, len(content) - 4, 64)
    s = damage(edit=edit_image(past_end))
    verify_names("a directory past the content's end", s, [h, "directory 1 out of place"])

    def in_tables(content, p):
        # The top directory's object said to lie over the index.
        _, n = p["dirs"][0]
        struct.pack_into("<II", content, 24 + len(p["index"]), 24, n)
    s = damage(edit=edit_image(in_tables))
    verify_names("a directory inside the tables", s, [h, "directory 0 out of place"])

    def other_dir(content, p):
        # The second directory's location given the third's bytes: they hash to another key.
        struct.pack_into("<II", content, 24 + len(p["index"]) + 8, *p["dirs"][2])
    s = damage(edit=edit_image(other_dir))
    verify_names("a directory located at another one's bytes", s, [h, "match its key"])

    def bad_magic(content, p):
        content[7:8] = b"2"
    s = damage(edit=edit_image(bad_magic))
    verify_names("another magic", s, [h, "not a tree image"])

with t.section("an index out of order, and one that disagrees with its directories"):
    def swap(db, store, env):
        x = index_of(db, store, env)
        x["dirs"][1]["self"], x["dirs"][2]["self"] = x["dirs"][2]["self"], x["dirs"][1]["self"]
        trees.set_env_index(db, store, env, x)
    s = damage(edit=swap)
    verify_names("directories out of order", s, [h, "out of order"])

    def other_key(db, store, env):
        x = index_of(db, store, env)
        x["dirs"][1]["key"] = x["dirs"][2]["key"]
        trees.set_env_index(db, store, env, x)
    s = damage(edit=other_key)
    verify_names("a directory's object not its own", s, [h, "disagree"])

# Version 6 kept the index and each directory object in rows of its own, which a test
# deleted. Now the whole tree is one object: its file, or its objects row, goes.
with t.section("the tree image's file gone, and its object row gone"):
    def unlink(db, store, env):
        os.unlink(trees.object_path(store, tree_key(db, env)))
    s = damage(edit=unlink)
    verify_names("image file gone", s,
                 [lib.catalog_rows(s, "SELECT tree FROM envs")[0][0].hex(), "missing"])
    s = damage(edit=lambda db, store, env: db.execute(
        "DELETE FROM objects WHERE key = ?", (tree_key(db, env),)))
    verify_names("image row gone", s,
                 [lib.catalog_rows(s, "SELECT tree FROM envs")[0][0].hex(), "no object row"])

with t.section("a relocation record kept apart whose bytes do not match its key"):
    # A record longer than 4096 bytes is kept apart, in the tree image's record table.
    rp = os.path.realpath(t.path("rec"))
    lib.make_prefix(rp, pkgs=[("rec", "1.0", "h0_0")],
                    files={"share/many.txt": (rp + "/x\n") * 6000})
    rclean = t.path("rec-clean")
    hr = t.ingest(rclean, rp).out.strip()
    db = sqlite3.connect(os.path.join(rclean, "catalog.db"))
    try:
        (re_,), = db.execute("SELECT id FROM envs WHERE hash = ?", (hr,))
        _, _, recs = trees.env_tree(db, rclean, re_)
    finally:
        db.close()
    t.check("its tree image holds one record", len(recs) == 1 and
            len(next(iter(recs.values()))) > trees.RELOC_INLINE, len(recs))
    rs = t.path("rec-damaged")
    shutil.copytree(rclean, rs, symlinks=True)
    db = sqlite3.connect(os.path.join(rs, "catalog.db"))
    x, dirs, recs = trees.env_tree(db, rs, re_)
    (k, rec), = recs.items()
    recs[k] = rec[:-1] + bytes([rec[-1] ^ 1])
    trees.set_env_tree(db, rs, re_, trees.tree_content(trees.encode_index(x), dirs, recs))
    db.commit()
    db.close()
    verify_names("a record's byte flipped", rs, [hr, "match its key"])
    r = t.cfs(rs, "cat", hr, "share/many.txt")
    t.fails_clearly("cat of its file fails, naming the damage", r, "match its key")

t.finish()
