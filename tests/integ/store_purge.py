#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""gc --purge (issue 11, point 4): after rm and gc, nothing of a removed environment may stay
on disk, even in a pack another environment still uses. Environment A holds two secrets (one
random, stored raw; one text, stored compressed) in the pack its ingest made, which B shares
(B holds A's common files). After rm A: plain gc leaves a pack that is mostly used (it
rewrites only packs at least half unused), gc --purge rewrites it; then no file under the
store holds a secret's bytes, as they are or decoded by the store's own reader, B exports
byte for byte, verify is clean, reference counts are right, objects/ holds exactly the
images the catalog names. Also: plain gc rewrites a pack at least half unused; the dry run
changes nothing; a member left alone gets an image of its own; a new pack whose key is a
stored content's (M4 of store/repack.c); a tag set while gc --purge syncs its new images
does not make its commit fail; verify, held just before it opens the pack, is not
told the pack is missing by a gc --purge run meanwhile (gc waits for it); a damaged pack is
left as it is (plain gc succeeds, gc --purge fails naming it)."""

import json
import os
import subprocess
import time

import lib
import purge_lib as pl

t = lib.Harness("store_purge: gc --purge leaves nothing of a removed environment")
CONF = t.path("condafs.yml")
with open(CONF, "w") as f:
    f.write("gc:\n  unused_for: 30d\n  grace: 1h\n")


def ingest(store, prefix):
    r = t.ingest(store, prefix)
    if r.rc != 0:
        raise RuntimeError(f"ingest failed: {r}")
    return r.out.split()[0]


def gc(store, *args):
    r = t.cfs(store, "--config", CONF, "--json", "gc", *args)
    if not t.ok(f"gc {' '.join(args)}".rstrip(), r):
        return None
    return json.loads(r.out)


def exports_equal(store, h, src, what):
    d = t.path("export-" + h[:8])
    r = t.export(store, h, d)
    if t.ok(f"{what}: exports", r):
        problems, _ = lib.compare_trees(src, d, src, d)
        t.check(f"{what}: ...byte for byte equal to its source", not problems,
                "\n".join(problems[:10]))
    t.rmtree(d)


def consistent(store, what):
    v = t.verify_clean(f"{what}: verify exits 0", store)
    t.eq(f"{what}: nothing unreferenced", v and v["unreferenced"], 0)
    t.eq(f"{what}: every reference count is right (C2)", lib.refs_wrong(store), [])
    on_disk, named = set(lib.image_files(store)), pl.catalog_images(store)
    t.eq(f"{what}: objects/ holds exactly the images the catalog names",
         (sorted(on_disk - named), sorted(named - on_disk)), ([], []))
    t.eq(f"{what}: no litter", lib.litter(store), [])


with t.section("A holds the secrets in a pack B shares"):
    store = t.path("store")
    A = pl.secret_env(t, "prefixes", "A")
    B = pl.kept_env(t, "prefixes", "B")
    hA, hB = ingest(store, A), ingest(store, B)
    pack = pl.secret_pack(store, hA)
    t.check("the image holding A's secrets is one B's files need",
            pack in lib.env_images(store, hB), pack)
    pl.check_present(t, store, "before rm")

with t.section("rm A, plain gc: a pack mostly used stays as it is"):
    t.ok("rm A", t.cfs(store, "rm", hA))
    rep = gc(store)
    t.eq("gc rewrites no pack (A's part is less than half of it)",
         rep and rep["packs_repacked"], 0, rep)
    t.check("the pack is still there", os.path.exists(pack))
    pl.check_present(t, store, "after plain gc")

with t.section("gc --purge --dry-run changes nothing"):
    before = lib.image_files(store)
    rep = gc(store, "--purge", "--dry-run")
    t.eq("it would rewrite the pack", rep and rep["packs_repacked"], 1, rep)
    t.check("...and says it would free bytes", rep and rep["bytes_freed"] > 0, rep)
    t.eq("no object file changed", lib.image_files(store), before)

with t.section("gc --purge"):
    before = sum(lib.image_files(store).values())
    rep = gc(store, "--purge")
    t.eq("it rewrites the pack", rep and rep["packs_repacked"], 1, rep)
    t.check("the old image is gone", not os.path.exists(pack))
    after = sum(lib.image_files(store).values())
    t.eq("objects/ shrinks by the bytes gc says it freed", before - after,
         rep and rep["bytes_freed"])
    pl.check_gone(t, store, "after gc --purge")
    exports_equal(store, hB, B, "B")
    consistent(store, "after gc --purge")
    rep = gc(store, "--purge")
    t.eq("a second gc --purge has nothing to rewrite", rep and rep["packs_repacked"], 0, rep)
    t.eq("...and frees nothing", rep and rep["bytes_freed"], 0, rep)

with t.section("plain gc rewrites a pack at least half unused"):
    store = t.path("store-half")
    A2 = pl.secret_env(t, "prefixes", "A2", own=80, own_size=4000, seed=3)
    hA2, hB = ingest(store, A2), ingest(store, B)
    pack = pl.secret_pack(store, hA2)
    t.check("B needs the pack", pack in lib.env_images(store, hB), pack)
    pl.check_present(t, store, "before rm")
    t.ok("rm A2", t.cfs(store, "rm", hA2))
    rep = gc(store)
    t.eq("plain gc rewrites it", rep and rep["packs_repacked"], 1, rep)
    pl.check_gone(t, store, "after plain gc")
    exports_equal(store, hB, B, "B")
    consistent(store, "after plain gc")

with t.section("the one member left gets an image of its own"):
    store = t.path("store-single")
    root = os.path.realpath(t.path("prefixes", "S1"))
    S1 = lib.make_prefix(root, pkgs=[("purge-s1", "1.0", "h0_0")], files={
        "share/x.txt": b"the member that stays\n" * 50, "share/y.bin": pl.SECRET_RAW})
    root = os.path.realpath(t.path("prefixes", "S2"))
    S2 = lib.make_prefix(root, pkgs=[("purge-s2", "1.0", "h0_0")], files={
        "share/x.txt": b"the member that stays\n" * 50,
        "lib/big.bin": os.urandom(400 << 10)})
    h1, h2 = ingest(store, S1), ingest(store, S2)
    t.ok("rm S1", t.cfs(store, "rm", h1))
    # S1's pack also held its conda-meta record: the one left is x.txt.
    rep = gc(store, "--purge")
    t.eq("gc --purge rewrites S1's pack", rep and rep["packs_repacked"], 1, rep)
    x = lib.catalog_object(store, lib.catalog_nodes(store, h2)[b"share/x.txt"]["obj"])
    t.eq("x.txt is no pack's member now", x["pack"], None, x)
    t.check("...and has its image", os.path.exists(lib.object_file(store, bytes(x["key"]))))
    pl.check_gone(t, store, "after gc --purge")
    exports_equal(store, h2, S2, "S2")
    consistent(store, "one member left")

with t.section("another command commits while gc --purge writes the member's image"):
    store = t.path("store-single-race")
    h1, h2 = ingest(store, S1), ingest(store, S2)
    t.ok("rm S1", t.cfs(store, "rm", h1))
    # gc looked the key up before its sync and commits after it: a tag is set meanwhile.
    p = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=syncfs", "-e",
                          "inject=syncfs:delay_enter=1500000:when=1", t.condafs, "--store",
                          store, "--json", "gc", "--purge"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, ASAN_OPTIONS=os.environ.get(
                             "ASAN_OPTIONS", "") + ":detect_leaks=0"))
    time.sleep(0.5)
    t.ok("tag S2 meanwhile", t.cfs(store, "tag", "s2", h2))
    r = t.finish_proc(p)
    t.check("gc --purge succeeds and rewrites S1's pack",
            r.rc == 0 and '"packs_repacked": 1' in r.out, r)
    consistent(store, "after the race")

with t.section("a new pack whose key a stored content has (M4)"):
    store = t.path("store-collide")
    a, b = b"first half of c\n" * 30, b"second half of c\n" * 30
    root = os.path.realpath(t.path("prefixes", "C1"))
    # Packed in the order a, b, s (by extension, then path); conda-meta records are json.
    C1 = lib.make_prefix(root, pkgs=[("purge-c1", "1.0", "h0_0")], files={
        "share/a.txt": a, "share/b.txt": b, "share/s.txt": pl.SECRET_TEXT})
    root = os.path.realpath(t.path("prefixes", "C2"))
    C2 = lib.make_prefix(root, pkgs=[("purge-c2", "1.0", "h0_0")], files={
        "share/a.txt": a, "share/b.txt": b, "share/c.txt": a + b,
        "share/d.txt": b"another content\n" * 20})
    # C1's pack also holds its conda-meta files, which C2 does not share: after rm C1,
    # what is left of it is a.txt then b.txt, whose concatenation is c.txt.
    h1, h2 = ingest(store, C1), ingest(store, C2)
    na = lib.catalog_object(store, lib.catalog_nodes(store, h1)[b"share/a.txt"]["obj"])
    used = {r["obj"] for r in lib.catalog_nodes(store, h2).values() if r["obj"]}
    members = [(k,) for i, k in lib.catalog_rows(
        store, "SELECT id, key FROM objects WHERE pack = ? ORDER BY pack_off", (na["pack"],))
        if i in used]
    t.eq("C2 uses exactly a.txt and b.txt of C1's pack",
         len(members), 2, members)
    t.ok("rm C1", t.cfs(store, "rm", h1))
    rep = gc(store, "--purge")
    t.eq("gc --purge rewrites C1's pack", rep and rep["packs_repacked"], 1, rep)
    for name in (b"share/a.txt", b"share/b.txt"):
        o = lib.catalog_object(store, lib.catalog_nodes(store, h2)[name]["obj"])
        t.eq(f"{name.decode()} has an image of its own (a pack of a + b would have c.txt's key)",
             o["pack"], None, o)
    pl.check_gone(t, store, "after gc --purge")
    exports_equal(store, h2, C2, "C2")
    consistent(store, "after the collision")

with t.section("verify running while gc --purge moves what it is about to read"):
    store = t.path("store-verify")
    hA, hB = ingest(store, A), ingest(store, B)
    pack = os.path.relpath(pl.secret_pack(store, hA), store)
    t.ok("rm A", t.cfs(store, "rm", hA))
    # verify's catalog snapshot names the pack before it opens it: the open is held 2 s.
    p = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-P", pack, "-e",
                          "trace=openat", "-e", "inject=openat:delay_enter=2000000",
                          t.condafs, "--store", store, "--json", "verify"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, ASAN_OPTIONS=os.environ.get(
                             "ASAN_OPTIONS", "") + ":detect_leaks=0"))
    time.sleep(0.5)
    rep = gc(store, "--purge")
    r = t.finish_proc(p)
    v = json.loads(r.out) if r.rc == 0 else None
    t.check("verify exits 0 and finds nothing missing (gc waited for it)",
            v is not None and v["corrupt"] == 0, r)
    t.eq("gc --purge then rewrote the pack", rep and rep["packs_repacked"], 1, rep)
    pl.check_gone(t, store, "after gc --purge")

with t.section("a damaged pack is left as it is, and gc --purge names it"):
    store = t.path("store-damaged")
    hA, hB = ingest(store, A2), ingest(store, B)
    pack = pl.secret_pack(store, hA)
    # Its second half zeroed: frames there no longer decode, and the common files B uses
    # (ordered after A2's own ones) are among them.
    size = os.path.getsize(pack)
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(size // 2)
        f.write(bytes(size - 64 - size // 2))
    os.chmod(pack, 0o444)
    with open(pack, "rb") as f:
        damaged = f.read()
    t.ok("rm A2", t.cfs(store, "rm", hA))
    rep = gc(store)
    t.eq("plain gc leaves the damaged pack (at least half unused) and succeeds",
         rep and rep["packs_repacked"], 0, rep)
    r = t.cfs(store, "--config", CONF, "gc", "--purge")
    t.fails_clearly("gc --purge fails naming the damaged pack", r,
                    os.path.relpath(pack, store), "not repacked")
    with open(pack, "rb") as f:
        t.check("the damaged image is unchanged", f.read() == damaged)
    r = t.cfs(store, "--json", "verify")
    t.check("verify names it", r.rc == 1 and os.path.basename(pack) in r.out, r)

t.finish()
