#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Ordinary users read the store through the mount (README, "Security model"). condafsd
publishes MOUNT/.condafs/ (envs.json, stats.json, packages/<hash>.json: what root's ls,
stats and show print with --json; mount.json: which store), read-only, remade when the
store changes as new inodes while an old one stays readable, never counted as use. A user
(nobody, through setpriv) runs ls, show, stats, cat, hash, export and verify against the
real 0700 store with the daemon running, with --mount or the config's mount point, and
gets what root gets; a file the mount refuses (0600, or under a 0700 directory) is refused
by cat and export alike; verify through the mount finds files a damaged store cannot serve;
and with no daemon answering, or one serving another store, a user gets one clear line."""

import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

import fs_lib
import lib

t = fs_lib.FsHarness("fs_userread: users read the store through the mount")
errno_of, wait_for = fs_lib.errno_of, fs_lib.wait_for


def user(store, mnt, *args, **kw):
    """condafs as nobody, the store and the mount given on the command line."""
    return t.cfs(store, "--mount", mnt, *args, user="nobody", **kw)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def probe_opens(paths):
    """The paths under which nobody could open, O_PATH-open or stat anything."""
    code = ("import json, os, sys\nout = {}\n"
            "for p in json.load(sys.stdin):\n"
            "    for how in (os.O_RDONLY | os.O_NONBLOCK, os.O_PATH):\n"
            "        try:\n"
            "            os.close(os.open(p, how | os.O_NOFOLLOW)); out[p] = 'opened'\n"
            "        except OSError:\n"
            "            pass\n"
            "    try:\n"
            "        os.stat(p, follow_symlinks=False); out[p] = 'stat'\n"
            "    except OSError:\n"
            "        pass\n"
            "print(json.dumps(out))\n")
    r = t.run([sys.executable, "-c", code], user="nobody", input=json.dumps(paths).encode())
    return json.loads(r.out)


def tree(top):
    """{relative path: (type, mode, mtime_ns, size, bytes or link target)} and the groups of
    paths that are one inode (hard links), for comparing two exports."""
    out, inodes = {}, {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, st.st_mtime_ns, 0, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns, 0, None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size,
                            read(p))
                inodes.setdefault(st.st_ino, []).append(rel)
    top_st = os.stat(top)
    out["."] = ("dir", stat.S_IMODE(top_st.st_mode), top_st.st_mtime_ns, 0, None)
    return out, sorted(sorted(v) for v in inodes.values() if len(v) > 1)


def tree_diff(a, b):
    (ta, la), (tb, lb) = a, b
    diff = [f"{p}: {ta.get(p, 'missing')!r:.200} != {tb.get(p, 'missing')!r:.200}"
            for p in sorted(set(ta) | set(tb)) if ta.get(p) != tb.get(p)]
    if la != lb:
        diff.append(f"hard links {la} != {lb}")
    return diff


store = t.path("store")
small = t.env("small")
hs = t.ingest_hash(store, small["prefix"])
P = os.path.realpath(t.path("priv-src"))
PB = P.encode()
lib.make_prefix(P, pkgs=[("priv", "1.0", "h0_0")], files={
    "share/open.txt": "anyone reads this, built at " + P + "\n",
    "lib/libp.so": b"\x7fELF\x00" + PB + b"/lib\x00" + b"\x00" * 300 + b"end\x00",
})
lib.write(os.path.join(P, "share", "secret.txt"), "root only\n", 0o600)
os.makedirs(os.path.join(P, "locked"))
lib.write(os.path.join(P, "locked", "readable.txt"), "0644, in a 0700 directory\n", 0o644)
os.chmod(os.path.join(P, "locked"), 0o700)
os.symlink(P + "/share/open.txt", os.path.join(P, "share", "abs-link"))
os.link(os.path.join(P, "share", "open.txt"), os.path.join(P, "share", "hard-link"))
hp = t.ingest_hash(store, P)
t.ok("tag the hand-made environment", t.cfs(store, "tag", "priv", hp))
t.eq("the store is 0700 (root's alone)", oct(os.stat(store).st_mode & 0o777), "0o700")
mine = t.path("nobody-home")
os.makedirs(mine)
os.chown(mine, 65534, 65534)


def root_json(*args):
    r = t.cfs(store, "--json", *args)
    return r.out if r.rc == 0 else None


with t.section("MOUNT/.condafs: what root's --json prints, read-only"):
    with t.daemon(store) as d:
        meta = d.path(".condafs")
        st = os.stat(meta)
        t.eq(".condafs is a 0555 directory of root's", (stat.S_IMODE(st.st_mode),
             st.st_uid, st.st_gid, stat.S_ISDIR(st.st_mode)), (0o555, 0, 0, True))
        t.check("...not listed in the root", ".condafs" not in os.listdir(d.mnt),
                os.listdir(d.mnt))
        t.eq("it holds", sorted(os.listdir(meta)),
             ["envs.json", "mount.json", "packages", "stats.json"])
        t.eq("packages/ holds one file per environment", sorted(os.listdir(
             os.path.join(meta, "packages"))), sorted([hs + ".json", hp + ".json"]))
        files = ["envs.json", "stats.json", "mount.json", f"packages/{hs}.json",
                 f"packages/{hp}.json"]
        for f in files:
            st = os.stat(os.path.join(meta, f))
            t.eq(f"{f} is 0444 root:root", (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid),
                 (0o444, 0, 0))
        t.check("envs.json is what `condafs ls --json` prints", wait_for(
            lambda: read(os.path.join(meta, "envs.json")).decode() == root_json("ls")),
            read(os.path.join(meta, "envs.json")))
        t.check("stats.json is what `condafs stats --json` prints", wait_for(
            lambda: read(os.path.join(meta, "stats.json")).decode() == root_json("stats")))
        for h in (hs, hp):
            t.eq(f"packages/{h[:8]}….json is what `condafs show --json` prints",
                 read(os.path.join(meta, "packages", h + ".json")).decode(),
                 root_json("show", h))
        t.eq("mount.json names the store and the mount point",
             json.loads(read(os.path.join(meta, "mount.json"))),
             {"store": os.path.realpath(store), "mountpoint": d.mnt})
        r = t.run(["cat"] + [os.path.join(meta, f) for f in files], user="nobody")
        t.check("nobody reads them all", r.rc == 0 and hs in r.out, r)
        t.eq("nobody cannot write there", errno_of(
            lambda: open(os.path.join(meta, "envs.json"), "w")), errno.EROFS)
        t.eq("a name that is not there: ENOENT",
             errno_of(lambda: os.stat(os.path.join(meta, "nothing.json"))), errno.ENOENT)

with t.section("remade when the store changes; an old text stays readable"):
    with t.daemon(store) as d:
        path = d.path(".condafs", "envs.json")
        before = read(path)
        old = os.open(path, os.O_RDONLY)
        ino = os.fstat(old).st_ino
        t.ok("tag the small environment", t.cfs(store, "tag", "numpy-env", hs))
        t.check("envs.json shows the tag", wait_for(lambda: b'"numpy-env"' in read(path)))
        t.check("...as a new inode", os.stat(path).st_ino != ino)
        os.posix_fadvise(old, 0, 0, os.POSIX_FADV_DONTNEED)
        t.eq("the old one, opened before and its pages dropped, still reads whole",
             os.pread(old, 1 << 20, 0), before)
        os.close(old)
        t.ok("untag it", t.cfs(store, "untag", "numpy-env"))
        t.check("envs.json drops it", wait_for(lambda: b'"numpy-env"' not in read(path)))
        t.check("envs.json is what ls --json says again",
                wait_for(lambda: read(path).decode() == root_json("ls")))
        sci = t.env("sci")["prefix"]
        hsci = t.cfs(None, "hash", sci).out.strip()
        pk = d.path(".condafs", "packages", hsci + ".json")
        t.eq("the packages of an environment not stored yet: ENOENT", errno_of(
            lambda: os.stat(pk)), errno.ENOENT)
        t.ok("ingest it while mounted", t.ingest(store, sci))
        t.check("its packages appear (the cached miss is dropped)",
                wait_for(lambda: os.path.exists(pk)))
        t.eq("...what show --json prints", read(pk).decode(), root_json("show", hsci))
        t.check("envs.json lists it", wait_for(lambda: hsci.encode() in read(path)))
        t.ok("rm it", t.cfs(store, "rm", hsci))
        t.check("its packages vanish", wait_for(lambda: not os.path.exists(pk)))
        t.check("...and envs.json drops it", wait_for(lambda: hsci.encode() not in read(path)))


def last_used(h):
    with sqlite3.connect(os.path.join(store, "catalog.db")) as db:
        return db.execute("SELECT last_used FROM envs WHERE hash = ? AND removed = 0",
                          (h,)).fetchone()[0]


def set_last_used(when):
    with sqlite3.connect(os.path.join(store, "catalog.db")) as db:
        db.execute("UPDATE envs SET last_used = ?", (when,))


with t.section("reading .condafs is not use of any environment"):
    set_last_used(1000)
    with t.daemon(store) as d:
        for _ in range(3):
            for dirpath, _, fs in os.walk(d.path(".condafs")):
                for f in fs:
                    read(os.path.join(dirpath, f))
        r = user(store, d.mnt, "ls")
        t.ok("a user's ls", r)
        r = user(store, d.mnt, "show", "priv")
        t.ok("a user's show", r)
        time.sleep(1.1)   # a use now would be a later second than the reset below
    t.eq("no environment's last use moved", (last_used(hs), last_used(hp)), (1000, 1000))
    with t.daemon(store) as d:
        read(d.path(hp, "share", "open.txt"))
        t0 = int(time.time())
    t.check("(a file read does count: the check can see a use)", last_used(hp) >= t0 - 5,
            last_used(hp))
    set_last_used(int(time.time()))

cfg = t.path("condafs.yml")

with t.section("a user runs the read-only commands through the mount"):
    with t.daemon(store) as d:
        with open(cfg, "w") as f:
            f.write(f"store: {store}\nmountpoint: {d.mnt}\n")
        os.chmod(cfg, 0o644)
        for args in (["ls"], ["--json", "ls"], ["stats"], ["--json", "stats"],
                     ["show", hs[:6]], ["--json", "show", "priv"],
                     ["cat", hs, "bin/pip"], ["cat", "priv", "share/open.txt"],
                     ["cat", "priv", "share/open.txt", "--prefix", "/o"],
                     ["cat", "priv", "lib/libp.so"],
                     ["cat", "priv", "lib/libp.so", "--prefix", "/short"]):
            got = {}

            def same():
                got["root"] = t.cfs(store, *args)
                got["user"] = user(store, d.mnt, *args)
                return got["root"].rc == 0 and (got["user"].rc, got["user"].out) == \
                    (0, got["root"].out)
            t.check(f"{' '.join(args)}: the user gets what root gets",
                    wait_for(same) is not None,
                    f"root: {got.get('root')}\nuser: {got.get('user')}")
        r = t.run([t.condafs, "--config", cfg, "ls"], user="nobody")
        t.check("the mount point from the config (no --store, no --mount)",
                r.rc == 0 and hs in r.out and hp in r.out, r)
        r = user(store, d.mnt, "cat", "priv", "lib/libp.so", "--prefix", "/" + "x" * 400)
        t.fails_clearly("a binary slot too short: one line naming the file", r,
                        hp + "/lib/libp.so", "does not fit")
        t.eq("...and nothing on stdout", r.out, "")
        r = t.cfs(None, "hash", small["prefix"], user="nobody")
        t.eq("hash (no store)", (r.rc, r.out.strip()), (0, hs), r)
        # (The default prefix, DIR, is checked on a smaller environment below.)
        prefix = "/opt/elsewhere/env"
        mine_out, root_out = os.path.join(mine, "small"), t.path("root-small")
        r = user(store, d.mnt, "export", hs, mine_out, "--prefix", prefix)
        t.ok(f"export into nobody's own directory (--prefix {prefix})", r)
        t.ok("root's export with the same prefix", t.export(store, hs, root_out, prefix))
        diff = tree_diff(tree(mine_out), tree(root_out))
        t.check("...byte for byte what root's export writes", not diff, "\n".join(diff[:20]))
        st = os.stat(mine_out)
        t.eq("...owned by nobody", (st.st_uid, st.st_gid), (65534, 65534))
        t.rmtree(mine_out)
        t.rmtree(root_out)
        r = user(store, d.mnt, "--json", "verify")
        v = json.loads(r.out) if r.rc == 0 else {}
        t.check("verify: exit 0, nothing damaged, files checked, the 0600 file and the 0700 "
                "directory skipped", r.rc == 0 and v.get("corrupt") == 0 and
                v.get("problems") == [] and v.get("files_checked", 0) > 100 and
                v.get("files_skipped") == 2 and v.get("objects_checked") is None, r)
        r = user(store, d.mnt, "verify")
        t.check("verify (text): one summary line", r.rc == 0 and "files checked through" in
                r.out, r)
        r = user(store, d.mnt, "tag", "x", hs)
        t.fails_clearly("a writing command: one line, it needs root", r, store, "needs root")

with t.section("what the mount refuses, cat and export refuse (0600; 0644 under 0700)"):
    with t.daemon(store) as d:
        for rel in ("share/secret.txt", "locked/readable.txt"):
            r = t.run(["cat", d.path(hp, rel)], user="nobody")
            t.check(f"{rel}: the mount refuses nobody", r.rc != 0 and
                    "Permission denied" in r.err, r)
            r = user(store, d.mnt, "cat", "priv", rel)
            t.fails_clearly(f"cat {rel}: one line, Permission denied", r,
                            d.path(hp, rel), "Permission denied")
            t.eq(f"cat {rel}: nothing on stdout", r.out, "")
            r = t.cfs(store, "cat", "priv", rel)
            t.check(f"cat {rel} as root works", r.rc == 0 and r.out, r)
        out = os.path.join(mine, "priv-export")
        r = user(store, d.mnt, "export", "priv", out)
        t.fails_clearly("export of the environment: one line, Permission denied", r,
                        "Permission denied")
        t.check("...and nothing is left", not os.path.exists(out), os.listdir(mine))
        t.eq("nobody opens no object image or catalog file of the store", probe_opens(
            [os.path.join(dp, n) for dp, ds, fs in os.walk(store) for n in ds + fs]), {})

with t.section("verify through the mount finds what a damaged store cannot serve"):
    dstore = t.path("damaged-store")
    shutil.copytree(store, dstore, symlinks=True)
    t.ok("gc reaps the removed environment (only live ones are damaged below)",
         t.cfs(dstore, "gc"))
    # A file content's image, not an environment's tree image (without which none of its
    # files is found).
    trees_ = {lib.object_file(dstore, bytes(k)) for (k,) in lib.catalog_rows(
        dstore, "SELECT tree FROM envs")}
    objs = sorted((os.path.getsize(os.path.join(dp, f)), os.path.join(dp, f))
                  for dp, _, fs in os.walk(os.path.join(dstore, "objects")) for f in fs
                  if os.path.join(dp, f) not in trees_)
    victim = objs[len(objs) // 2][1]
    os.unlink(victim)
    r = t.cfs(dstore, "--json", "verify")
    want = sorted({(p["environment"], p["path"]) for p in json.loads(r.out)["problems"]
                   if p["environment"]})
    t.check("root's verify names the files using the deleted object", r.rc == 1 and want, r)
    # What nobody may read of them, one path per inode of the mount (read once).
    readable = [w for w in want if w[1] != "share/secret.txt" and
                not w[1].startswith("locked/")]
    with t.daemon(dstore, t.path("mnt-damaged")) as d:
        inodes = {os.stat(d.path(*w)).st_ino for w in readable}
        r = user(dstore, d.mnt, "--json", "verify")
        v = json.loads(r.out) if r.out else {}
        got = sorted({(p["environment"], p["path"]) for p in v.get("problems", [])})
        t.check("a user's verify exits 1", r.rc == 1, r)
        t.check("...naming files root's verify names, one per inode", set(got) <= set(want) and
                len(got) == len(inodes) and
                {os.stat(d.path(*g)).st_ino for g in got} == inodes,
                f"got {got[:10]}\nwant {readable[:10]}")
        t.check("...each as unreadable, with no object named", all(
            p["object"] is None and "Input/output error" in p["problem"]
            for p in v.get("problems", [])), v)
        t.eq("...counted as corrupt", v.get("corrupt"), len(got))
        r = user(dstore, d.mnt, "verify")
        t.check("verify (text): names them as ENV/PATH: reason",
                r.rc == 1 and got and f"{got[0][0]}/{got[0][1]}: Input/output error" in r.out,
                r)

with t.section("files larger than one read (64 MiB): searched in pieces, relocated whole"):
    B = os.path.realpath(t.path("big-src"))
    big = 65 << 20
    lib.make_prefix(B, pkgs=[("big", "1.0", "h0_0")], files={
        # The prefix across a 1 MiB boundary of the search, and near the end.
        "share/with-prefix.txt": b"a" * (big - 3) + B.encode() + b"/x\n",
        "share/plain.txt": b"b" * big + b"\n",
    })
    hb = t.ingest_hash(store, B)
    with t.daemon(store) as d:
        for rel, pre in (("share/with-prefix.txt", None), ("share/with-prefix.txt", "/o"),
                         ("share/plain.txt", None)):
            args = ["cat", hb, rel] + (["--prefix", pre] if pre else [])
            a, u = t.cfs(store, *args), user(store, d.mnt, *args)
            t.check(f"{' '.join(args[2:])}: the user gets what root gets",
                    a.rc == 0 and u.rc == 0 and len(a.out) > big and a.out == u.out,
                    f"root rc {a.rc} {len(a.out)} bytes, user {u}")
        out = os.path.join(mine, "big")
        t.ok("export of it by nobody (prefix: DIR)", user(store, d.mnt, "export", hb, out))
        lib.report_tree(t, "...equal to the source relocated to DIR",
                        *lib.compare_trees(B, out, B, out))
        t.rmtree(out)

with t.section("no condafsd answers, or one serving another store: one line"):
    empty = t.path("empty-mnt")
    os.makedirs(empty)
    for args in (["ls"], ["cat", hs, "bin/pip"], ["export", hs, os.path.join(mine, "x")],
                 ["verify"]):
        r = user(store, empty, *args)
        t.check(f"{args[0]}: one line naming the store and the mount", r.rc == 1 and
                len(r.errors()) == 1 and store in r.errors()[0] and
                f"no condafsd answers at {empty}" in r.errors()[0], r)
    other = t.path("other-store")
    t.ingest_hash(other, P)
    with t.daemon(other, t.path("mnt-other")) as d:
        r = user(store, d.mnt, "ls")
        t.fails_clearly("a mount of another store: one line naming both", r, d.mnt,
                        os.path.realpath(other), store)

t.finish()
