#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""condafs verify finds damage: one flipped byte in a large object file (raw and zstd
frames), a truncated one, a deleted one (named as missing), a flipped byte in a pack of
small contents, and a small content's catalog row changed with sqlite3 (its place in its
pack); each is named with every environment and path that uses it and makes verify exit
non-zero; reads of a missing object fail naming the file; an object file nobody uses is
reported but harmless (exit 0); repairing the damage makes verify clean again."""

import json
import os
import random
import re
import sqlite3

import lib

t = lib.Harness("store_verify: corrupt, truncated, missing and inline objects are found")
store = t.path("store")
rnd = random.Random(20240601)
BIG = rnd.randbytes(3 << 20)                          # incompressible: raw frames
TEXT = b"".join(b"line %d of a compressible file\n" % i for i in range(200000))  # zstd frames


def prefix(name, pkgs, files):
    return lib.make_prefix(t.path(name), pkgs=pkgs, files=files)


with t.section("two environments sharing objects"):
    A = prefix("env-a", [("va", "1.0", "h0_0")], {
        "share/big.bin": BIG, "share/text.txt": TEXT, "share/small.txt": b"small and inline\n"})
    B = prefix("env-b", [("vb", "1.0", "h0_0")], {
        "lib/other-name.bin": BIG, "share/small.txt": b"small and inline\n"})
    ha = t.ingest(store, A).out.strip()
    hb = t.ingest(store, B).out.strip()
    t.check("both ingested", lib.HASH_RE.match(ha) and lib.HASH_RE.match(hb))
    t.verify_clean("verify is clean to begin with", store)
    na, nb = lib.catalog_nodes(store, ha), lib.catalog_nodes(store, hb)
    t.eq("share/big.bin and lib/other-name.bin are one object",
         na[b"share/big.bin"]["obj"], nb[b"lib/other-name.bin"]["obj"])
    big_obj = lib.catalog_object(store, na[b"share/big.bin"]["obj"])
    text_obj = lib.catalog_object(store, na[b"share/text.txt"]["obj"])
    small_obj = lib.catalog_object(store, na[b"share/small.txt"]["obj"])
    big_file = lib.object_file(store, big_obj["key"])
    text_file = lib.object_file(store, text_obj["key"])
    t.check("the large objects are files under objects/", os.path.isfile(big_file) and
            os.path.isfile(text_file) and not big_obj.get("pack"), big_file)
    pack_obj = lib.catalog_object(store, small_obj["pack"]) if small_obj.get("pack") else None
    t.check("the small one is a member of a pack, itself a file under objects/",
            pack_obj is not None and os.path.isfile(lib.object_file(store, pack_obj["key"])) and
            not os.path.exists(lib.object_file(store, small_obj["key"])), small_obj)
    pack_file = lib.object_file(store, pack_obj["key"]) if pack_obj else None


def verify_finds(what, key, problem, users, count=1):
    """verify exits 1 and names the object, the problem and every (env, path) user;
    count: how many objects it should count as missing or corrupt (None: any)."""
    r = t.cfs(store, "verify")
    t.eq(f"{what}: verify exits 1", r.rc, 1, r)
    lines = [l for l in r.out.splitlines() if l.startswith(f"object {key.hex()}")]
    for env, path in users:
        t.check(f"{what}: verify names {env[:8]}.../{path} ({problem})",
                any(problem in l and f"{env}/{path}" in l for l in lines), r)
    t.check(f"{what}: the summary counts it", f"{count} missing or corrupt" in r.out
            if count else not re.search(r"\b0 missing or corrupt", r.out), r)
    r = t.cfs(store, "--json", "verify")
    v = json.loads(r.out) if r.out.startswith("{") else {}
    got = sorted((p["environment"], p["path"]) for p in v.get("problems", [])
                 if p["object"] == key.hex() and problem in p["problem"])
    t.eq(f"{what}: --json names the same users", (r.rc, got, v.get("corrupt") if count else 1),
         (1, sorted(users), count or 1))



with t.section("one flipped byte in a large object file"):
    size = os.path.getsize(big_file)
    lib.flip(big_file, size // 2)
    verify_finds("raw frames", big_obj["key"], "corrupt",
                 [(ha, "share/big.bin"), (hb, "lib/other-name.bin")])
    lib.flip(big_file, size // 2)
    t.verify_clean("byte restored: verify is clean", store)
    size = os.path.getsize(text_file)
    lib.flip(text_file, size // 2)
    verify_finds("zstd frames", text_obj["key"], "corrupt", [(ha, "share/text.txt")])
    lib.flip(text_file, size // 2)
    t.verify_clean("byte restored: verify is clean", store)

with t.section("a truncated object file"):
    with open(big_file, "rb") as f:
        keep = f.read()
    with open(big_file, "r+b") as f:
        f.truncate(len(keep) - 1000)
    verify_finds("truncated", big_obj["key"], "corrupt",
                 [(ha, "share/big.bin"), (hb, "lib/other-name.bin")])
    with open(big_file, "wb") as f:
        f.write(keep)
    t.verify_clean("restored: verify is clean", store)

with t.section("a deleted object file"):
    os.rename(big_file, big_file + ".away")
    verify_finds("deleted", big_obj["key"], "missing",
                 [(ha, "share/big.bin"), (hb, "lib/other-name.bin")])
    r = t.cfs(store, "cat", ha, "share/big.bin")
    t.fails_clearly("cat of a file whose object is missing fails naming the file", r,
                    "share/big.bin")
    r = t.export(store, hb, t.path("export-missing"))
    t.fails_clearly("export of an environment with a missing object fails naming the file", r,
                    "lib/other-name.bin")
    os.rename(big_file + ".away", big_file)
    t.verify_clean("restored: verify is clean", store)

with t.section("a flipped byte in a pack of small contents"):
    size = os.path.getsize(pack_file)
    lib.flip(pack_file, size - size // 3)
    verify_finds("pack", small_obj["key"], "corrupt",
                 [(ha, "share/small.txt"), (hb, "share/small.txt")], count=None)
    r = t.cfs(store, "verify")
    t.check("the pack itself is named too", f"object {pack_obj['key'].hex()}: " in r.out, r)
    lib.flip(pack_file, size - size // 3)
    t.verify_clean("byte restored: verify is clean", store)

with t.section("a small content's catalog row damaged (sqlite3)"):
    db = sqlite3.connect(os.path.join(store, "catalog.db"))
    db.execute("UPDATE objects SET pack_off = pack_off + 1 WHERE id = ?", (small_obj["id"],))
    db.commit()
    db.close()
    verify_finds("pack_off + 1", small_obj["key"], "corrupt",
                 [(ha, "share/small.txt"), (hb, "share/small.txt")])
    db = sqlite3.connect(os.path.join(store, "catalog.db"))
    db.execute("UPDATE objects SET pack_off = ?, size = size + 1 WHERE id = ?",
               (small_obj["pack_off"], small_obj["id"]))
    db.commit()
    db.close()
    verify_finds("size + 1", small_obj["key"], "corrupt",
                 [(ha, "share/small.txt"), (hb, "share/small.txt")])
    db = sqlite3.connect(os.path.join(store, "catalog.db"))
    db.execute("UPDATE objects SET size = ? WHERE id = ?", (small_obj["size"], small_obj["id"]))
    db.commit()
    db.close()
    t.verify_clean("restored: verify is clean", store)

with t.section("an object file that no environment uses"):
    stray = os.path.join(store, "objects", "ab", "cd" * 15)
    os.makedirs(os.path.dirname(stray), exist_ok=True)  # made on first use
    with open(big_file, "rb") as f, open(stray, "wb") as g:
        g.write(f.read())
    r = t.cfs(store, "verify")
    t.check("verify reports it as unreferenced and exits 0",
            r.rc == 0 and f"object ab{'cd' * 15}: unreferenced" in r.out and
            "1 unreferenced" in r.out, r)
    os.unlink(stray)
    d = t.path("export-a")
    t.ok("export after all this succeeds", t.export(store, ha, d))
    lib.report_tree(t, "and equals the source", *lib.compare_trees(A, d, A, d))

t.finish()
