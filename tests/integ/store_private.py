#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The store is root's alone (README, "Security model"), and root's export writes only
where it was asked. A new store is 0700 and another user (nobody, through setpriv) can open
nothing in it; an older 0755 store is made private by root's first writing command, also for
a process that entered its objects/ directory before; users cannot hard-link its files
(fs.protected_hardlinks). A user's writing command says, in one line, that it needs root; a
user's read-only command never reads the store around the mount. `export` as root follows no
symlink at DIR or at any component of its path, refuses a non-empty DIR, refuses a catalog
tree with a bad name, a child listed under another parent, or a cycle, and leaves nothing
behind when it fails."""

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import lib
import trees

t = lib.Harness("store_private: a root-only store, and an export that follows no symlink")

# Run as nobody: try every path given on stdin (one per line), print one JSON line of
# {path: errno or 0} per batch. With a line "cd PATH" it changes its working directory,
# so a later batch can try paths relative to a directory it entered earlier.
PROBE = r"""
import json, os, sys
for line in sys.stdin:
    line = line.rstrip("\n")
    if line.startswith("cd "):
        try:
            os.chdir(line[3:])
            print(json.dumps({"cd": 0}), flush=True)
        except OSError as e:
            print(json.dumps({"cd": e.errno}), flush=True)
        continue
    out = {}
    for p in json.loads(line):
        res = []
        for how in ("read", "path", "stat"):
            try:
                if how == "stat":
                    os.stat(p, follow_symlinks=False)
                else:
                    flags = os.O_RDONLY | os.O_NONBLOCK if how == "read" else os.O_PATH
                    os.close(os.open(p, flags | os.O_NOFOLLOW))
                res.append(0)
            except OSError as e:
                res.append(e.errno)
        out[p] = res
    print(json.dumps(out), flush=True)
"""


class Probe:
    """A process of nobody's that opens paths when asked."""

    def __init__(self):
        self.p = subprocess.Popen(lib.NOBODY + [sys.executable, "-c", PROBE],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd="/")

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def cd(self, path):
        return self.ask("cd " + path)["cd"]

    def opened(self, paths):
        """The paths nobody could open or stat in any way."""
        got = self.ask(json.dumps(paths))
        return {p: v for p, v in got.items() if any(e == 0 for e in v)}

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def everything(store):
    """Every path under the store, the store itself first (as root sees them)."""
    out = [store]
    for d, dirs, files in os.walk(store):
        out += [os.path.join(d, n) for n in dirs + files]
    return out


def modes(store):
    out = {"": oct(os.stat(store).st_mode & 0o777)}
    objs = os.path.join(store, "objects")
    out["objects"] = oct(os.stat(objs).st_mode & 0o777)
    for n in os.listdir(objs):
        out["objects/" + n] = oct(os.stat(os.path.join(objs, n)).st_mode & 0o777)
    return out


src = lib.make_prefix(t.path("src"), pkgs=[("priv", "1.0", "h0_0")], files={
    "share/a.txt": "some text\n",
    "share/b.txt": "more text\n",
    "bin/tool": "#!/bin/sh\necho tool\n",
    "lib/libx.so": b"\x7fELF\x00" + b"x" * 5000 + b"\x00",
})

with t.section("a new store is its owner's alone"):
    store = t.path("var", "lib", "store")
    h = t.ingest(store, src).out.strip()
    t.check("ingest into a new store", lib.HASH_RE.match(h), h)
    t.eq("the store is 0700", oct(os.stat(store).st_mode & 0o777), "0o700")
    t.eq("the directories made above it are 0755",
         oct(os.stat(os.path.dirname(store)).st_mode & 0o777), "0o755")
    paths = everything(store)
    t.check("the store holds a catalog and objects",
            any(p.endswith("catalog.db") for p in paths) and
            any("/objects/" in p for p in paths), paths)
    pr = Probe()
    t.eq("nobody can open, O_PATH-open or stat anything under it (the store itself aside)",
         pr.opened(paths[1:]), {})
    pr.close()

with t.section("an older 0755 store is made private by root's first writing command"):
    old = t.path("old-store")
    shutil.copytree(store, old, symlinks=True)
    for p in everything(old):
        if os.path.isdir(p):
            os.chmod(p, 0o755)
    objdir = next(os.path.join(old, "objects", n) for n in sorted(os.listdir(
        os.path.join(old, "objects"))))
    image = os.path.join(objdir, sorted(os.listdir(objdir))[0])
    pr = Probe()
    t.eq("nobody enters objects/xx of the 0755 store", pr.cd(objdir), 0)
    rel = os.path.basename(image)
    t.eq("...and opens an image there (what the 0755 store let users do)",
         pr.ask(json.dumps([rel]))[rel][0], 0)
    with open("/proc/sys/fs/protected_hardlinks") as f:
        t.eq("fs.protected_hardlinks is 1 (Debian's default)", f.read().strip(), "1")
    mine = t.path("nobody-dir")
    os.makedirs(mine)
    os.chown(mine, 65534, 65534)
    r = t.run([sys.executable, "-c", f"import os; os.link({image!r}, {mine + '/x'!r})"],
              user="nobody")
    t.check("nobody cannot hard-link an image to keep it (protected_hardlinks)",
            r.rc != 0 and "Operation not permitted" in r.err, r)
    before = modes(old)
    t.ok("root's ls (reads only)", t.cfs(old, "ls"))
    t.eq("...changes no mode", modes(old), before)
    t.ok("root's tag (writes)", t.cfs(old, "tag", "t1", h))
    after = modes(old)
    t.eq("...makes the store, objects/ and every objects/xx 0700",
         sorted(set(after.values())), ["0o700"])
    t.eq("nobody's process inside objects/xx can open nothing there any more",
         pr.ask(json.dumps([rel]))[rel][0], errno.EACCES)
    pr.close()
    pr = Probe()
    t.eq("a new process of nobody's opens nothing under it", pr.opened(everything(old)[1:]),
         {})
    pr.close()
    t.verify_clean("the store verifies", old)

with t.section("a user's writing command: one line, it needs root"):
    ls_before = t.ls(store)
    names_before = sorted(everything(store))
    for args, code in [(["ingest", src], 1), (["tag", "x", h], 1), (["untag", "t1"], 1),
                       (["rm", h], 1), (["gc"], 1), (["verify", "--repair"], 8)]:
        r = t.cfs(store, *args, user="nobody")
        t.check(f"{args[0]} {' '.join(args[1:])}: exit {code}, one line naming the store, "
                "needs root", r.rc == code and len(r.errors()) == 1 and
                store in r.errors()[0] and "needs root" in r.errors()[0], r)
    t.eq("nothing in the store changed", (t.ls(store), sorted(everything(store))),
         (ls_before, names_before))

with t.section("a user's read-only command never reads the store itself"):
    nomount = t.path("no-mount")
    os.makedirs(nomount)
    for s in (store, old):
        os.chmod(s, 0o755)   # even where the modes would let them in
        for args in (["ls"], ["show", h], ["cat", h, "share/a.txt"], ["stats"], ["verify"]):
            r = t.cfs(s, "--mount", nomount, *args, user="nobody")
            t.check(f"{os.path.basename(s)} (0755): {args[0]}: one line, no condafsd answers "
                    "at the mount", r.rc == 1 and r.out == "" and len(r.errors()) == 1 and
                    "no condafsd answers at " + nomount in r.errors()[0], r)
        os.chmod(s, 0o700)
    r = t.cfs(None, "hash", src, user="nobody")
    t.eq("hash needs no store", (r.rc, r.out.strip()), (0, h), r)

with t.section("export as root follows no symlink"):
    target = t.path("target")
    os.makedirs(target)
    os.symlink(target, t.path("link"))
    r = t.export(store, h, t.path("link"))
    t.fails_clearly("DIR a symlink to an empty directory: refused", r, "link",
                    "symbolic link")
    r = t.export(store, h, t.path("link", "sub"))
    t.fails_clearly("DIR under a symlinked parent: refused", r, "link", "symbolic link")
    os.makedirs(t.path("real", "a"))
    os.symlink(t.path("real"), t.path("mid"))
    r = t.export(store, h, t.path("mid", "a", "out"))
    t.fails_clearly("a symlink two components up: refused", r, "mid", "symbolic link")
    t.eq("nothing was written through any of them",
         (os.listdir(target), os.listdir(t.path("real", "a"))), ([], []))
    t.eq("...and no mode changed", oct(os.stat(target).st_mode & 0o777), "0o755")
    full = t.path("full")
    os.makedirs(full)
    lib.write(os.path.join(full, "keep"), "mine\n")
    r = t.export(store, h, full)
    t.fails_clearly("an existing non-empty DIR: refused", r, full, "not empty")
    t.eq("...and left as it was", os.listdir(full), ["keep"])
    empty = t.path("empty")
    os.makedirs(empty)
    t.ok("an existing empty DIR: written", t.export(store, h, empty))
    lib.report_tree(t, "...equal to the source", *lib.compare_trees(src, empty, src, empty))

def rename(node, name):
    """Give node (by path) another name, its tree rebuilt under its own keys."""
    return lambda db, store, env: trees.rewrite_env(
        db, store, env, lambda rows: next(r for r in rows.values()
                                          if r["id"] == NODES[node]).update(name=name))


def index_edit(fn):
    """The environment's index edited by fn, in a new tree image holding the same directory
    objects."""
    def edit(db, store, env):
        x = trees.env_tree(db, store, env)[0]
        fn(x, {bytes(d["key"]): d for d in x["dirs"]},
           {d["self"]: d for d in x["dirs"]}, NODES)
        trees.set_env_index(db, store, env, x)
    return edit


def ordinal(path):
    return NODES[path] - NODES[""]


# (what, how the catalog is damaged, what the error names)
DAMAGE = [
    ("a name '..'", rename("share", b".."), "name"),
    ("a name '.'", rename("share", b"."), "name"),
    ("a name with '/'", rename("share/a.txt", b"../../escaped"), "name"),
    ("a name with a NUL", rename("share/a.txt", b"a\0b\0"), "name"),
    ("an empty name", rename("share/a.txt", b""), "name"),
    ("a cycle: a directory's children start at the top",
     index_edit(lambda x, k, by_self, n: by_self[ordinal("share")].update(first_child=1)),
     "out of order"),
    ("a directory that lists itself",
     index_edit(lambda x, k, by_self, n: by_self[ordinal("share")].update(
         first_child=ordinal("share"))), "out of order"),
    ("a directory given another directory's object",
     index_edit(lambda x, k, by_self, n: by_self[ordinal("bin")].update(
         key=by_self[ordinal("share")]["key"])), "disagree"),
]

with t.section("export refuses a damaged catalog tree and leaves nothing behind"):
    NODES = {r.decode(): v["id"] for r, v in lib.catalog_nodes(store, h).items()}
    for what, edit, needle in DAMAGE:
        bad = t.path("bad-store")
        t.rmtree(bad)
        shutil.copytree(store, bad, symlinks=True)
        db = sqlite3.connect(os.path.join(bad, "catalog.db"))
        env = db.execute("SELECT id FROM envs WHERE hash = ?", (h,)).fetchone()[0]
        edit(db, bad, env)
        db.commit()
        db.close()
        outer = t.path("outer")
        t.rmtree(outer)
        os.makedirs(outer)
        dest = os.path.join(outer, "dest")
        r = t.export(bad, h, dest)
        t.fails_clearly(f"{what}: refused, naming the catalog as damaged", r, dest, "damaged",
                        needle)
        t.eq(f"{what}: nothing left, nothing written outside DIR", os.listdir(outer), [])
    t.rmtree(t.path("bad-store"))

t.finish()
