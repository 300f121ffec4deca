#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""condafs verify --repair on real stores of hand-made prefixes: an orphan object file and
a dead ingest's temporary directory are removed (a live ingest's, whose lock is held, is
kept); reference counts damaged with sqlite3 (a tree image's too) are set back to what the
rows say; an environment whose object is missing or corrupt is marked broken (ls, ls
--json) and unmarked once the object file is restored; the row of a corrupt object nothing
uses is deleted and its file removed; exit codes 0 / 1 / 4 / 8 as documented; plain verify
is unchanged (it reports, changes nothing); kill -9 during a repair leaves a store verify
accepts and the next repair finishes the job."""

import fcntl
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time

import lib

t = lib.Harness("store_repair: verify --repair removes litter, fixes counts, marks broken envs")
store = t.path("store")
db_path = os.path.join(store, "catalog.db")
rnd = random.Random(20240607)
BIG = rnd.randbytes(1 << 20)        # own image, shared by both environments
UNIQ = rnd.randbytes(600 << 10)     # own image, env A only
SMALL = b"small and packed\n"       # a pack member, both environments


def prefix(name, pkgs, files):
    return lib.make_prefix(t.path(name), pkgs=pkgs, files=files)


def sql(query, args=()):
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(query, args).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def wrong_refs():
    """Objects whose refs disagree with the trees: {id: (refs, true count)}."""
    return {i: (refs, n) for i, refs, n in lib.refs_wrong(store)}


def repair(what, want_rc, **kw):
    """verify --repair --json: checks the exit code (one, or a tuple of those allowed),
    returns the report."""
    r = t.cfs(store, "--json", "verify", "--repair", **kw)
    try:
        v = json.loads(r.out)
    except ValueError:
        v = {}
    ok = r.rc in want_rc if isinstance(want_rc, tuple) else r.rc == want_rc
    t.check(f"{what}: verify --repair exits {want_rc}", ok and v, r)
    return v


def broken(store_, h):
    """(broken in ls --json, the STATE column of ls) of environment h."""
    js = {e["hash"]: e.get("broken") for e in (t.ls(store_) or [])}
    lines = t.cfs(store_, "ls").out.splitlines()
    state = None
    if lines and lines[0].split()[-2:] == ["STATE", "TAGS"]:
        # Sizes and times are two words each; the state is the word before the tags.
        state = next((l.split()[-2] for l in lines[1:] if l.startswith(h)), None)
    return js.get(h), state



with t.section("two environments sharing objects; a clean store"):
    A = prefix("env-a", [("ra", "1.0", "h0_0")], {
        "share/big.bin": BIG, "share/uniq.bin": UNIQ, "share/small.txt": SMALL})
    B = prefix("env-b", [("rb", "1.0", "h0_0")], {
        "lib/big-too.bin": BIG, "share/small.txt": SMALL})
    ha = t.ingest(store, A).out.strip()
    hb = t.ingest(store, B).out.strip()
    t.check("both ingested", lib.HASH_RE.match(ha) and lib.HASH_RE.match(hb))
    na = lib.catalog_nodes(store, ha)
    big_obj = lib.catalog_object(store, na[b"share/big.bin"]["obj"])
    uniq_obj = lib.catalog_object(store, na[b"share/uniq.bin"]["obj"])
    small_obj = lib.catalog_object(store, na[b"share/small.txt"]["obj"])
    pack_obj = lib.catalog_object(store, small_obj["pack"]) if small_obj["pack"] else None
    big_file = lib.object_file(store, big_obj["key"])
    uniq_file = lib.object_file(store, uniq_obj["key"])
    t.check("big.bin and uniq.bin have files of their own, small.txt is in a pack",
            os.path.isfile(big_file) and os.path.isfile(uniq_file) and pack_obj, small_obj)
    pack_file = lib.object_file(store, pack_obj["key"])
    t.eq("both environments start unbroken", [broken(store, ha), broken(store, hb)],
         [(False, "ok"), (False, "ok")])
    v = repair("a clean store", 0)
    t.eq("nothing repaired, nothing left", [v.get("repairs"), v.get("problems"),
                                            v.get("corrupt_left"), v.get("envs_broken")],
         [[], [], 0, 0])
    r = t.cfs(store, "verify", "--repair")
    t.check("text: a summary line", r.rc == 0 and "0 missing or corrupt" in r.out, r)

with t.section("an orphan object file, dead and live ingest temporary directories"):
    orphan = os.path.join(store, "objects", "ab", "cd" * 15)
    os.makedirs(os.path.dirname(orphan), exist_ok=True)
    shutil.copyfile(big_file, orphan)
    tmp = os.path.join(store, "tmp")
    os.makedirs(tmp, exist_ok=True)
    dead = os.path.join(tmp, "ingest-999999-1")
    os.mkdir(dead)
    lib.write(os.path.join(dead, "0123456789abcdef0123456789abcdef"), b"half an image")
    half = os.path.join(tmp, ".new-999999-2")    # killed before it was locked and renamed
    os.mkdir(half)
    live = os.path.join(tmp, f"ingest-{os.getpid()}-1")
    os.mkdir(live)
    lib.write(os.path.join(live, "fedcba9876543210fedcba9876543210"), b"being written")
    live_fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(live_fd, fcntl.LOCK_EX)
    r = t.cfs(store, "verify")
    t.check("plain verify: reports the orphan as unreferenced, exits 0, removes nothing",
            r.rc == 0 and f"object ab{'cd' * 15}: unreferenced" in r.out and
            os.path.exists(orphan) and os.path.exists(dead), r)
    v = repair("orphan and temporary directories", 1)
    acts = {(a["action"], a.get("object") or a.get("tmp")) for a in v.get("repairs", [])}
    t.eq("it names what it removed", acts, {
        ("orphan removed", "ab" + "cd" * 15),
        ("temporary directory removed", "ingest-999999-1"),
        ("temporary directory removed", ".new-999999-2")})
    t.eq("the orphan is reported as a problem first", [
        p["problem"] for p in v.get("problems", [])], ["unreferenced"])
    t.eq("orphan gone, dead directories gone, the live one kept with its file",
         [os.path.exists(orphan), os.path.exists(dead), os.path.exists(half),
          sorted(os.listdir(live))],
         [False, False, False, ["fedcba9876543210fedcba9876543210"]])
    t.eq("the counts say so", [v.get("orphans_removed"), v.get("tmp_removed"),
                               v.get("corrupt_left")], [1, 2, 0])
    t.verify_clean("verify is clean", store)
    repair("a second repair finds nothing", 0)
    t.check("the live directory is still there", os.path.isdir(live))
    fcntl.flock(live_fd, fcntl.LOCK_UN)
    os.close(live_fd)
    v = repair("its ingest died: now it goes", 1)
    t.eq("removed", [os.path.exists(live), v.get("tmp_removed")], [False, 1])

with t.section("reference counts damaged with sqlite3"):
    t.eq("the counts start right", wrong_refs(), {})
    sql("UPDATE objects SET refs = refs + 3 WHERE id = ?", (big_obj["id"],))
    sql("UPDATE objects SET refs = 0 WHERE id = ?", (small_obj["id"],))
    sql("UPDATE objects SET refs = refs + 5 WHERE id = ?", (pack_obj["id"],))
    bad = wrong_refs()
    t.eq("three are wrong", sorted(bad), sorted([big_obj["id"], small_obj["id"],
                                                 pack_obj["id"]]))
    r = t.cfs(store, "verify")
    t.check("plain verify exits 0 and changes nothing", r.rc == 0 and wrong_refs() == bad, r)
    v = repair("wrong counts", 1)
    t.eq("every count is right again", wrong_refs(), {})
    got = sorted((a["object"], a["refs_had"], a["refs_now"]) for a in v.get("repairs", [])
                 if a["action"] == "reference count fixed")
    want = sorted((o["key"].hex(), bad[o["id"]][0], bad[o["id"]][1])
                  for o in (big_obj, small_obj, pack_obj))
    t.eq("each fix is named with the old and new count", got, want)
    t.eq("refs_fixed", v.get("refs_fixed"), 3)
    t.verify_clean("verify is clean", store)
    repair("a second repair finds nothing", 0)

with t.section("a shared file's link count damaged with sqlite3 (catalog.c C8)"):
    (grp, obj_key, nlink), = sql("SELECT g.id, o.key, g.nlink FROM groups g JOIN objects o"
                                 " ON o.id = g.obj ORDER BY g.id LIMIT 1")
    sql("UPDATE groups SET nlink = ? WHERE id = ?", (nlink + 6, grp))
    t.eq("it is wrong", lib.nlink_wrong(store), [(grp, nlink + 6, nlink)])
    v = repair("a wrong link count", 1)
    t.eq("it is right again", lib.nlink_wrong(store), [])
    t.eq("the fix is named with the old and new count",
         [(a["object"], a["refs_had"], a["refs_now"]) for a in v.get("repairs", [])
          if a["action"] == "link count fixed"], [(bytes(obj_key).hex(), nlink + 6, nlink)])
    t.verify_clean("verify is clean", store)

# Version 6 kept trees in a table of their own, with counts of their own (T4), which a
# test damaged here. A tree is now one object, a tree image (docs/tree-format.md): its count
# is an ordinary reference count (catalog.c C2: the environments naming it), mended as any.
with t.section("a tree image's reference count damaged with sqlite3"):
    db = sqlite3.connect(db_path)
    try:
        (ta,), = db.execute("SELECT tree FROM envs WHERE hash = ?", (ha,))
        ta = bytes(ta)
        (tid, trefs), = db.execute("SELECT id, refs FROM objects WHERE key = ? AND kind = 2",
                                   (ta,))
        # A tree image no environment names, its row counting one: what an environment
        # row deleted by hand leaves.
        x, dirs, recs = lib.trees.env_tree(db, store, db.execute(
            "SELECT id FROM envs WHERE hash = ?", (ha,)).fetchone()[0])
        x = dict(x, mtime_ns=x["mtime_ns"] + 1)
        content = lib.trees.tree_content(lib.trees.encode_index(x), dirs, recs)
        stray, stored = lib.trees.write_object(store, content)
        db.execute("INSERT INTO objects(key, size, stored, refs, kind, pack_off, esum, esq)"
                   " VALUES (?, ?, ?, 1, 2, 0, 0, 0)", (stray, len(content), stored))
        db.commit()
    finally:
        db.close()
    t.eq("A's tree image counts one reference, its environment's", trefs, 1)
    sql("UPDATE objects SET refs = ? WHERE id = ?", (trefs + 4, tid))
    t.eq("refs_wrong sees both", sorted((r, w) for _, r, w in lib.refs_wrong(store)),
         [(1, 0), (trefs + 4, trefs)])
    r = t.cfs(store, "verify")
    t.check("plain verify exits 0 and changes nothing", r.rc == 0 and
            len(lib.refs_wrong(store)) == 2, r)
    v = repair("wrong tree image counts", 1)
    t.eq("both are fixed as reference counts, the old and new count named",
         sorted((a["action"], a["object"], a["refs_had"], a["refs_now"])
                for a in v.get("repairs", []) if "refs_had" in a),
         sorted([("reference count fixed", ta.hex(), trefs + 4, trefs),
                 ("reference count fixed", stray.hex(), 1, 0)]))
    t.eq("every count is right again", lib.refs_wrong(store), [])
    t.verify_clean("verify is clean (the stray image unreferenced)", store)
    r = t.cfs(store, "verify", "--repair")
    t.check("again: nothing to fix", r.rc == 0 and "count fixed" not in r.out, r)
    t.ok("gc", t.cfs(store, "gc"))
    t.eq("gc deleted the stray image, row and file, and kept A's",
         [lib.catalog_rows(store, "SELECT count(*) FROM objects WHERE key = ?", (stray,)),
          os.path.exists(lib.object_file(store, stray)),
          os.path.exists(lib.object_file(store, ta))], [[(0,)], False, True])
    repair("then nothing to do", 0)

with t.section("an object file deleted: its environment is broken until it is back"):
    os.rename(uniq_file, uniq_file + ".away")
    r = t.cfs(store, "verify")
    t.check("plain verify: exits 1 naming it, marks nothing", r.rc == 1 and
            f"{ha}/share/uniq.bin" in r.out and broken(store, ha) == (False, "ok"), r)
    v = repair("a missing object", 4)
    t.eq("the problem is named with its user", [
        (p["object"], p["environment"], p["path"]) for p in v.get("problems", [])],
        [(uniq_obj["key"].hex(), ha, "share/uniq.bin")])
    t.eq("A is marked broken, B is not", [a for a in v.get("repairs", [])], [
        {"action": "marked broken", "object": None, "environment": ha, "tmp": None}])
    t.eq("counts", [v.get("corrupt_left"), v.get("envs_marked"), v.get("envs_broken")],
         [1, 1, 1])
    t.eq("ls: A broken, B ok (text and --json)", [broken(store, ha), broken(store, hb)],
         [(True, "broken"), (False, "ok")])
    r = t.cfs(store, "verify", "--repair")
    t.check("again: still 4, nothing to change", r.rc == 4 and
            f"environment {ha}: marked broken" not in r.out and
            broken(store, ha) == (True, "broken"), r)
    t.check("repair did not remove the row of the missing object",
            lib.catalog_object(store, uniq_obj["id"]) is not None)
    r = t.cfs(store, "verify")
    t.check("plain verify still exits 1", r.rc == 1, r)
    d = t.path("export-b")
    t.ok("B still exports", t.export(store, hb, d))
    os.rename(uniq_file + ".away", uniq_file)
    v = repair("the file is back", 1)
    t.eq("A is no longer broken", [(a["action"], a["environment"])
                                   for a in v.get("repairs", [])], [("no longer broken", ha)])
    t.eq("ls: both ok", [broken(store, ha), broken(store, hb)], [(False, "ok"), (False, "ok")])
    repair("then nothing to do", 0)
    t.verify_clean("verify is clean", store)

with t.section("a shared object corrupted, with an orphan beside it"):
    size = os.path.getsize(big_file)
    lib.flip(big_file, size // 2)
    shutil.copyfile(uniq_file, orphan)
    v = repair("problems left win over problems repaired", 4)
    t.eq("both environments marked, the orphan removed", [
        sorted(a["environment"] for a in v.get("repairs", []) if a["action"] == "marked broken"),
        v.get("orphans_removed"), os.path.exists(orphan)], [sorted([ha, hb]), 1, False])
    t.eq("ls: both broken", [broken(store, ha)[0], broken(store, hb)[0]], [True, True])
    t.check("the corrupt file is kept (its bytes may yet be salvaged)", os.path.isfile(big_file))
    lib.flip(big_file, size // 2)
    v = repair("byte restored", 1)
    t.eq("both cleared", [v.get("envs_cleared"), broken(store, ha)[0], broken(store, hb)[0]],
         [2, False, False])

with t.section("a flipped byte in a pack"):
    size = os.path.getsize(pack_file)
    lib.flip(pack_file, size - size // 3)
    v = repair("a corrupt pack", 4)
    t.eq("every environment using a member is broken", [broken(store, ha)[0],
                                                       broken(store, hb)[0]], [True, True])
    lib.flip(pack_file, size - size // 3)
    repair("restored", 1)
    t.eq("both clear", [broken(store, ha)[0], broken(store, hb)[0]], [False, False])

with t.section("a corrupt object nothing uses: its row and file go"):
    C = prefix("env-c", [("rc", "1.0", "h0_0")], {"share/c-only.bin": rnd.randbytes(500 << 10)})
    hc = t.ingest(store, C).out.strip()
    nc = lib.catalog_nodes(store, hc)
    c_obj = lib.catalog_object(store, nc[b"share/c-only.bin"]["obj"])
    c_file = lib.object_file(store, c_obj["key"])
    # A catalog that names the object but no tree names it (refs still say 1): the state a
    # reaped environment would leave without gc's object pass.
    env_id = sql("SELECT id FROM envs WHERE hash = ?", (hc,))[0][0]
    sql("DELETE FROM packages WHERE env = ?", (env_id,))
    sql("DELETE FROM envs WHERE id = ?", (env_id,))
    lib.flip(c_file, os.path.getsize(c_file) // 2)
    r = t.cfs(store, "verify")
    t.check("plain verify: exits 1 (corrupt)", r.rc == 1 and "1 missing or corrupt" in r.out, r)
    v = repair("an unused corrupt object", 1)
    acts = [(a["action"], a["object"]) for a in v.get("repairs", [])]
    t.check("its count is fixed to 0, then its row deleted",
            ("reference count fixed", c_obj["key"].hex()) in acts and
            ("unused row deleted", c_obj["key"].hex()) in acts, acts)
    t.eq("row and file gone, nothing left", [
        lib.catalog_object(store, c_obj["id"]), os.path.exists(c_file), v.get("corrupt_left"),
        v.get("dropped")], [None, False, 0, 1])
    t.verify_clean("verify is clean", store)
    repair("then nothing to do", 0)
    t.ok("gc frees the rest", t.cfs(store, "gc"))
    repair("after gc: nothing to do", 0)
    d = t.path("export-a")
    t.ok("export of A after all this succeeds", t.export(store, ha, d))
    lib.report_tree(t, "and equals the source", *lib.compare_trees(A, d, A, d))

with t.section("exit codes: could not run, bad usage"):
    r = t.cfs(t.path("no-such-store"), "verify", "--repair")
    t.check("no store: exit 8, one line naming it", r.rc == 8 and len(r.errors()) == 1 and
            "no-such-store" in r.errors()[0], r)
    r = t.cfs(store, "verify", "--repair", "extra")
    t.eq("an extra argument: exit 2", r.rc, 2, r)
    r = t.cfs(store, "verify", "--repair", user="nobody")
    t.check("a store it may not write: exit 8", r.rc == 8 and len(r.errors()) == 1, r)

with t.section("a pack of one content: its row is the content's, and the nodes count"):
    # An ingest that stores exactly one new small content makes a pack of one member,
    # whose key is that content's: the node names the pack row. A recount that gave a
    # pack only its member rows set it to 0, and the next gc deleted a file in use.
    one = t.path("one-store")
    a = prefix("one", [("one", "1.0", "h0_0")], {"share/x.txt": b"x" * 3000})
    t.ok("ingest", t.cfs(one, "ingest", a))
    with open(os.path.join(a, "share", "x.txt"), "ab") as f:
        f.write(b"changed\n")
    r = t.cfs(one, "ingest", a, "--replace")
    t.ok("ingest --replace with one new small content", r)
    h = r.out.strip()
    r = t.cfs(one, "verify", "--repair")
    t.eq("repair finds nothing to fix", r.rc, 0, r)
    t.ok("gc", t.cfs(one, "gc"))
    r = t.cfs(one, "cat", h, "share/x.txt")
    t.eq("the file still reads", (r.rc, r.out), (0, "x" * 3000 + "changed\n"), r)
    t.verify_clean("verify accepts the store", one)

with t.section("kill -9 during a repair"):
    victims = [os.path.join(store, "objects", "ef", "%030x" % i) for i in range(40)]
    for i in range(6):
        os.makedirs(os.path.dirname(victims[0]), exist_ok=True)
        for p in victims:
            if not os.path.exists(p):
                shutil.copyfile(uniq_file, p)
        os.makedirs(os.path.join(tmp, f"ingest-999999-{10 + i}"), exist_ok=True)
        sql("UPDATE objects SET refs = refs + 1")
        p = subprocess.Popen([t.condafs, "--store", store, "verify", "--repair"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rnd.uniform(0, 0.03))
        p.send_signal(signal.SIGKILL)
        p.wait()
        t.verify_clean(f"kill {i + 1}: verify accepts the store", store)
    # 1 if a kill landed before the repair was done, 0 if every one came too late.
    v = repair("the next repair finishes the job", (0, 1))
    t.eq("no litter, no wrong count", [[p for p in victims if os.path.exists(p)],
                                        sorted(n for n in os.listdir(tmp)), wrong_refs()],
         [[], [], {}])
    repair("then nothing to do", 0)

t.finish()
