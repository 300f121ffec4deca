#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Deduplication: ingesting small and then small-rebuild (the same set with one package
rebuilt, at a prefix of another length) stores the shared files once: stored bytes grow
by a small fraction of what small-rebuild takes alone; every file that differs between the
two only by the prefix (text or binary relocation) is one object; every object's
reference count is the number of files naming it; each environment has a tree image of its
own, counted in its unique bytes; stats and ls agree on logical and unique bytes. The same
on hand-made prefixes of different lengths."""

import os

import lib

t = lib.Harness("store_dedup: shared files are stored once, also across prefix lengths")


def read(root, rel):
    with open(os.path.join(root, os.fsdecode(rel)), "rb") as f:
        return f.read()


with t.section("small, then small-rebuild"):
    a, b = t.env("small"), t.env("small-rebuild")
    pa, pb = a["prefix"], b["prefix"]
    t.check(f"the two prefixes differ in length ({len(pa)} and {len(pb)})", len(pa) != len(pb))
    alone = t.path("store-alone")
    r = t.ingest(alone, pb)
    t.ok("small-rebuild alone, in its own store", r)
    s_alone = t.stats(alone)
    store = t.path("store")
    ha = t.ingest(store, pa).out.strip()
    s1 = t.stats(store)
    r = t.ingest(store, pb)
    t.ok("small-rebuild after small", r)
    hb = r.out.strip()
    s2 = t.stats(store)
    growth = s2["stored_bytes"] - s1["stored_bytes"]
    t.check(f"stored bytes grew by {growth} B, under 15% of small-rebuild alone "
            f"({s_alone['stored_bytes']} B)", growth < 0.15 * s_alone["stored_bytes"], s2)
    t.check(f"...and under 5% of its logical size ({b['stats']['bytes']} B)",
            growth < 0.05 * b["stats"]["bytes"])
    t.check(f"objects grew by {s2['objects'] - s1['objects']}, far fewer than its "
            f"{s_alone['objects']} objects", s2["objects"] - s1["objects"] <
            0.2 * s_alone["objects"], (s1, s2))
    t.eq("every object's reference count is the number of files naming it",
         lib.refs_wrong(store), [])
    t.eq("every shared file's link count is its names in live environments (C8)",
         lib.nlink_wrong(store), [])
    envs = {e["hash"]: e for e in t.ls(store) or []}
    t.eq("stats logical bytes are the sum over the envs", s2["logical_bytes"],
         sum(e["logical_bytes"] for e in envs.values()))
    t.eq("ls and stats agree on bytes unique to each env",
         {h: e["unique_bytes"] for h, e in envs.items()}, s2["unique_bytes"])
    t.check("each env's unique bytes are a small part of the store",
            all(u < 0.15 * s2["stored_bytes"] for u in s2["unique_bytes"].values()), s2)
    t.check("content bytes <= logical bytes, stored < content (compressed)",
            s2["stored_bytes"] < s2["content_bytes"] <= s2["logical_bytes"], s2)

    na, nb = lib.catalog_nodes(store, ha), lib.catalog_nodes(store, hb)
    meta_a = lib.placeholders(pa)
    shared = same_obj = differ_ok = 0
    wrong = []
    for rel, ra in sorted(na.items()):
        rb = nb.get(rel)
        if ra["type"] != 2 or not rb or rb["type"] != 2:
            continue
        da, db = read(pa, rel), read(pb, rel)
        mode, phlen = lib.reloc_mode(rel, da, meta_a)
        try:
            moved = lib.relocate(da, pa.encode(), pb.encode(), mode, phlen)
        except lib.SlotTooShort:
            moved = None
        if moved == db and pa.encode() in da and mode:
            shared += 1
            if ra["obj"] == rb["obj"]:
                same_obj += 1
            else:
                wrong.append(f"{lib.show(rel)}: differs only by the prefix ({mode}), "
                             f"objects {ra['obj']} and {rb['obj']}")
        elif da != db and ra["obj"] == rb["obj"] and not (ra["reloc"] or rb["reloc"]):
            wrong.append(f"{lib.show(rel)}: different bytes, one object")
        elif da == db:
            differ_ok += ra["obj"] == rb["obj"]
    t.check(f"{shared} files differ only by the prefix between the two (relocated files)",
            shared >= 5)
    t.eq("every one of them is one object in the store", (same_obj, wrong[:10]), (shared, []))
    t.check(f"identical files are one object ({differ_ok})", differ_ok > 3000)

    # Version 6 shared directory objects between environments, and this counted those
    # small-rebuild added. Environments share file contents, never trees now: each has a
    # tree image of its own (docs/tree-format.md), whose bytes count in the growth above.
    db = lib.sqlite3.connect(f"file:{os.path.join(store, 'catalog.db')}?mode=ro", uri=True)
    try:
        imgs = {}
        for h in (ha, hb):
            (env, k), = db.execute("SELECT id, tree FROM envs WHERE hash = ? AND removed = 0",
                                   (h,))
            imgs[h] = (env, bytes(k)) + tuple(db.execute(
                "SELECT kind, refs, owner, stored FROM objects WHERE key = ?", (k,)).fetchone())
            t.eq(f"{h[:8]}: its tree image reads, laid out as "
                 "docs/tree-format.md says", lib.trees.layout_problems(
                     lib.trees.read_object(store, bytes(k))), [])
            t.eq(f"{h[:8]}: its image holds envs.nodes nodes",
                 len(lib.trees.env_rows(db, store, env)),
                 db.execute("SELECT nodes FROM envs WHERE id = ?", (env,)).fetchone()[0])
    finally:
        db.close()
    t.check("two tree images", imgs[ha][1] != imgs[hb][1], imgs)
    t.eq("each an object of kind 2, one reference, owned by its environment (C7)",
         [v[2:5] for v in imgs.values()], [(2, 1, v[0]) for v in imgs.values()])
    t.check(f"small-rebuild's tree image ({imgs[hb][5]} B) is part of the growth "
            f"({growth} B), which is far less than small's stored bytes "
            f"({s1['stored_bytes']} B)", imgs[hb][5] < growth < 0.15 * s1["stored_bytes"],
            (imgs, s1, s2))
    t.check("each environment's unique bytes count its tree image",
            all(s2["unique_bytes"][h] >= imgs[h][5] for h in (ha, hb)), (imgs, s2))
    t.verify_clean("verify exits 0", store)

with t.section("hand-made prefixes of different lengths share relocated objects"):
    store = t.path("store-hand")
    body = b"".join(b"line %d\n" % i for i in range(20000))
    # What a package holds at build time, under the 255-byte placeholder; each prefix is
    # then a conda install of it (binary slots NUL-padded, so equal sizes).
    ph = ("/opt/conda-bld/hand_1700000000000/_h_env" + "_placehold" * 30)[:255].encode()
    package = {
        "bin/script": (b"#!" + ph + b"/bin/python3\n" + body, "text"),
        "lib/libbin.so": (b"\x7fELF\0" + ph + b"/lib:" + ph + b"/lib64\0" + b"\0" * 400 + body,
                          "binary"),
        "etc/config.txt": (body + b"prefix=" + ph + b"\n" + body, "text"),
        "share/plain.txt": (body, None),
    }
    roots = []
    for i, name in enumerate(("p", "a-much-longer-prefix-directory-name/for/the/second/copy")):
        root = os.path.realpath(t.path(name))
        paths = [{"_path": rel, "path_type": "hardlink", "prefix_placeholder": ph.decode(),
                  "file_mode": mode} for rel, (_, mode) in package.items() if mode]
        lib.make_prefix(root, pkgs=[(f"hand{i}", "1.0", "h0_0", paths)], files={
            rel: lib.relocate(data, ph, root.encode(), mode) for rel, (data, mode) in
            package.items()})
        roots.append(root)
    h0 = t.ingest(store, roots[0]).out.strip()
    s1 = t.stats(store)
    h1 = t.ingest(store, roots[1]).out.strip()
    s2 = t.stats(store)
    n0, n1 = lib.catalog_nodes(store, h0), lib.catalog_nodes(store, h1)
    for rel in (b"bin/script", b"lib/libbin.so", b"etc/config.txt", b"share/plain.txt"):
        t.eq(f"{rel.decode()}: one object for both prefixes", n0[rel]["obj"], n1[rel]["obj"])
    # Besides its conda-meta, the second environment stores its tree image (its own).
    (tree1,), = lib.catalog_rows(store, "SELECT stored FROM objects WHERE key = ?",
                                 (lib.env_tree_key(store, h1),))
    t.check(f"stored bytes grew by {s2['stored_bytes'] - s1['stored_bytes']} B (conda-meta, "
            f"and the tree image's {tree1} B)",
            s2["stored_bytes"] - s1["stored_bytes"] - tree1 < 4096, (s1, s2))
    for root, h in zip(roots, (h0, h1)):
        d = t.path("export-" + h[:8])
        t.ok("export succeeds", t.export(store, h, d))
        lib.report_tree(t, f"export of {os.path.basename(root)} equals its source relocated",
                        *lib.compare_trees(root, d, root, d))

t.finish()
