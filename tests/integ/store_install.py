#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""condafs install (issue 12): the corpus's locks installed from its channel, served by a
real HTTP server on 127.0.0.1 behind --channel-mirror, and from package caches (--pkgs-dir).
For each environment the hash is `condafs hash LOCK`'s in every lock format, and the tree,
exported and mounted by condafsd, equals the prefix the corpus builder made for that set
(conda's linking) at that path, path by path, except for the differences named in
DIFFERENCES. From the mount, python imports its modules without compiling one and the
noarch packages' entry points run. Real packages from conda's test data install from
file:// URLs; the .pyc compiler runs as nobody; a noarch package stored for one python
serves another from the store, compiled from its stored sources. Bad input: a lock without URLs, a lock with
PyPI packages, a wrong digest, an unreachable channel, a damaged cache archive, a package
for another platform, a .conda without metadata.json: each one clear line, nothing stored,
verify clean."""

import hashlib
import io
import json
import os
import pty
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile

import fs_lib
import lib

t = fs_lib.FsHarness("store_install: a lock's environment from its archives, no conda, "
                      "no prefix")
corpus = t.corpus()
channel = os.path.join(os.path.dirname(corpus["envs"]["sci"]["locks"]["explicit"]), "..", "..",
                       "channel")
channel = os.path.realpath(channel)
pkgs_dir = os.path.realpath(os.path.join(channel, "..", "pkgs"))
URL = "https://channel.example.invalid/corpus"
# What corpus-hello's post-link script makes in the corpus's prefixes.
POST_LINK_MADE = {"lib/libcorpushello.so", "share/corpus-hello/plugins"}
RECORD_KEYS_DIFFER = {"extracted_package_dir", "package_tarball_full_path", "link",
                      "requested_spec"}

# What an install makes differently from the prefix conda made, by design (the README's
# "condafs install" section says why); any other difference fails the test.
DIFFERENCES = {
    "noarch pyc": "the .pyc of noarch python packages are compiled by the environment's python "
                  "as conda compiles them, but name their source by its path in the "
                  "environment (an import puts in where it found it), so they differ in bytes",
    "post-link": "what a package's post-link script makes (scripts are not run): " +
                 ", ".join(sorted(POST_LINK_MADE)),
    "record paths": "conda-meta records name no package cache (" +
                    ", ".join(sorted(RECORD_KEYS_DIFFER)) + ")",
    "sha256_in_prefix": "records give no sha256_in_prefix for a file with a placeholder: its "
                        "bytes depend on the path it is served or exported at",
    "install time": "what conda stamps with the install's time (directories, symlinks, entry "
                    "points, records) carries this install's",
    "relocated mtime": "a file with a placeholder keeps its package's mtime (conda stamps the "
                       "install's), so a .pyc the package ships for it stays valid",
    "relocated pyc": "the .pyc a package ships for a .py with a placeholder is rewritten for "
                     "it (its size, the prefix in its strings): conda leaves it stale",
    "whole seconds": "a package archive keeps mtimes in whole seconds; the corpus's package "
                     "cache kept nanoseconds",
}


def install(store, lock, *extra, **kw):
    return t.cfs(store, "install", lock, *extra, **kw)


def records(prefix):
    out = {}
    cm = os.path.join(prefix, "conda-meta")
    for fn in os.listdir(cm):
        if fn.endswith(".json"):
            with open(os.path.join(cm, fn)) as f:
                out[fn] = json.load(f)
    return out


def compare(name, src, dst, mounted=False):
    """The export dst (or the mount's environment) against the corpus prefix src, but for
    DIFFERENCES; a mount also serves the frozen markers (CEP 22) and gives a content
    shared across environments one inode."""
    recs = records(src)
    pycs = {e["_path"] for r in recs.values() for e in r["paths_data"]["paths"]
            if e["path_type"] == "pyc_file"}
    skip = {p.encode() for p in POST_LINK_MADE}
    ignore = {b"conda-meta/" + fn.encode() for fn in os.listdir(os.path.join(src, "conda-meta"))}
    ignore |= {p.encode() for p in pycs}
    # The pycs shipped for relocated sources (checked below).
    shipped = {}
    for fn, r in recs.items():
        for e in r["paths_data"]["paths"]:
            py = e["_path"]
            if "prefix_placeholder" in e and py.endswith(".py"):
                d, b = os.path.split(py)
                pyc = f"{d}/__pycache__/{b[:-3]}.cpython-311.pyc"
                if os.path.exists(os.path.join(src, pyc)):
                    shipped[pyc] = py
    ignore |= {p.encode() for p in shipped}
    # The package file each relocated path comes from, by the corpus's package cache.
    relocated = {}
    for fn, r in recs.items():
        noarch = r.get("noarch") == "python" or r.get("package_type") == "noarch_python"
        for e in r["paths_data"]["paths"]:
            if "prefix_placeholder" not in e:
                continue
            inpkg = e["_path"]
            rel = inpkg
            if noarch and inpkg.startswith("site-packages/"):
                rel = f"lib/python3.11/{inpkg}"
            st = os.stat(os.path.join(pkgs_dir, fn[:-5], inpkg))
            relocated[rel.encode()] = st.st_mtime_ns
    ins_ns = os.lstat(os.path.join(src, "conda-meta", "history")).st_mtime_ns
    now_ns = os.lstat(os.path.join(dst, "conda-meta", "history")).st_mtime_ns

    def whole(ns):
        return ns - ns % 1_000_000_000

    def mtime_ok(rel, s_ns, d_ns):
        if d_ns == whole(s_ns):
            return True
        if s_ns == ins_ns and rel in relocated:
            return d_ns == whole(relocated[rel])
        return s_ns == ins_ns and d_ns == now_ns

    problems, counts = lib.compare_trees(
        src, dst, src, dst, skip=skip, ignore=ignore, mtime_ok=mtime_ok, links=not mounted,
        extra={b"conda-meta/frozen", b"lib/python3.11/EXTERNALLY-MANAGED"} if mounted else ())
    # The noarch pycs: conda's header (magic, flags, the source's mtime and size), made at
    # install time.
    for p in sorted(pycs):
        with open(os.path.join(src, p), "rb") as f:
            want = f.read(16)
        with open(os.path.join(dst, p), "rb") as f:
            got = f.read(16)
        if got != want:
            problems.append(f"{p}: pyc header {got.hex()}, conda's {want.hex()}")
        if os.lstat(os.path.join(dst, p)).st_mtime_ns != now_ns:
            problems.append(f"{p}: not made at install time")
    for pyc, py in sorted(shipped.items()):
        st = os.stat(os.path.join(dst, py))
        with open(os.path.join(dst, pyc), "rb") as f:
            hdr = f.read(16)
        want = (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + \
            (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
        if hdr[8:16] != want:
            problems.append(f"{pyc}: header {hdr.hex()} does not match {py} as exported")
    lib.report_tree(t, f"{name}: the install equals conda's prefix but for "
                    f"{', '.join(DIFFERENCES)}", problems, counts)
    got = records(dst)
    t.eq(f"{name}: the same conda-meta records", sorted(got), sorted(recs))
    def plain(rec):
        # conda records no directory (conda/core/path_actions.py); the corpus does.
        dirs = {e["_path"] for e in rec["paths_data"]["paths"] if e["path_type"] == "directory"}
        out = {k: v for k, v in rec.items() if k not in RECORD_KEYS_DIFFER}
        # Their order is conda's (files, then pycs, then entry points); the corpus sorts.
        out["files"] = sorted(p for p in rec["files"] if p not in dirs)
        out["paths_data"] = sorted(
            ({k: v for k, v in e.items()
              if k != "sha256_in_prefix" or "prefix_placeholder" not in e}
             for e in rec["paths_data"]["paths"] if e["_path"] not in dirs),
            key=lambda e: e["_path"])
        return out

    bad = []
    for fn in sorted(set(got) & set(recs)):
        a, b = plain(recs[fn]), plain(got[fn])
        if a != b:
            bad.append((fn, sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))))
    t.eq(f"{name}: records equal conda's but for the package cache", bad, [])


def check_python(name, e, d):
    """The environment at d: its python imports the corpus's modules without compiling
    one, and the noarch packages' entry points, as conda writes them, run."""
    imports = e["run"]["imports"]
    env = {"PATH": f"{d}/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    p = subprocess.run([f"{d}/{e['run']['python']}", "-B", "-v", "-c",
                        "import sys, " + ", ".join(imports) + "; print(sys.prefix)"],
                       capture_output=True, text=True, timeout=300, env=env)
    t.eq(f"{name}: its python imports {', '.join(imports)}",
         (p.returncode, p.stdout.strip()), (0, d), p.stderr[-2000:])
    # -v says "code object from <file>.py" (not quoted, unlike a .pyc's) for a module it
    # compiled from its source.
    compiled = [ln for ln in p.stderr.splitlines()
                if ln.startswith("# code object from ") and not ln.endswith(".pyc'")]
    t.eq(f"{name}: no import compiled a module (python -v)", compiled[:5], [])
    for ep in ("pip", "ipython"):
        if os.path.exists(os.path.join(d, "bin", ep)):
            p = subprocess.run([os.path.join(d, "bin", ep), "--version"],
                               capture_output=True, text=True, timeout=300, env=env)
            t.eq(f"{name}: bin/{ep} --version runs", p.returncode, 0, p.stderr[-2000:])


ch = lib.Channel(channel, URL)
store = t.path("store")

hashes = {}
with t.section("every corpus environment from the channel over HTTP"):
    for name in ("sci", "kernel", "torch"):
        e = t.env(name)
        locks = e["locks"]
        want = t.cfs(None, "hash", locks["explicit"]).out.strip()
        before = ch.total()
        r = install(store, locks["explicit"], "--channel-mirror", ch.mirror())
        t.ok(f"{name}: install of the explicit lock ({r.secs:.1f}s)", r)
        t.eq(f"{name}: its hash is `condafs hash LOCK`'s", r.out.strip(), want)
        t.check(f"{name}: the archives came over HTTP ({ch.total() - before} fetched)",
                ch.total() > before)
        for fmt in ("conda_lock", "pixi_lock"):
            r = install(store, locks[fmt], "--channel-mirror", ch.mirror())
            t.eq(f"{name}: {fmt} names the same environment, already stored",
                 (r.rc, r.out.strip(), "already stored" in r.err), (0, want, True), r)
        d = t.path(f"x-{name}")
        r = t.export(store, want, d)
        t.ok(f"{name}: export", r)
        if r.rc == 0:
            compare(f"{name} exported", e["prefix"], d)
        t.rmtree(d)
        hashes[name] = want
    # kernel and torch share python, numpy, pip and more with sci: taken from the store.
    # kernel's noarch packages are new, so their pycs are compiled, by the python the store
    # holds, written out for the compiler (the mount's imports below compile nothing).
    t.eq("no archive was fetched twice: what an install stored, the next takes from the "
         "store, python for the compiler too",
         sorted(n for n, c in ch.count().items() if c > 1), [])
    t.verify_clean("verify exits 0", store)

def pkg_name(url):
    """The package name of an archive's URL (or an explicit lock's line)."""
    return os.path.basename(url.split("#")[0]).rsplit("-", 2)[0]


with t.section("downloads: four at once, largest first when the lock gives sizes"):
    # The first four requests are the four transfers begun at once: held by the server
    # until all four came, none ends before the fourth begins.
    for fmt, what in (("explicit", "the first four by name (the lock gives no size)"),
                      ("pixi_lock", "the four largest (pixi.lock gives every size)")):
        lock = t.env("sci")["locks"][fmt]
        with open(t.env("sci")["locks"]["explicit"]) as f:
            urls = [ln.split("#")[0] for ln in f.read().split() if ln.startswith("https://")]
        size = {os.path.basename(u): os.path.getsize(os.path.join(channel, *u.split("/")[-2:]))
                for u in urls}
        names = [os.path.basename(u) for u in urls]
        want = (sorted(names, key=pkg_name)[:4] if fmt == "explicit"
                else sorted(names, key=lambda n: -size[n])[:4])
        before = len(ch.requested())
        ch.hold(4)
        r = install(t.path(f"store-order-{fmt}"), lock, "--channel-mirror", ch.mirror())
        t.ok(f"{fmt}: install", r)
        t.eq(f"{fmt}: the first four requests are {what}",
             sorted(ch.requested()[before:before + 4]), sorted(want))

def on_tty(cmd):
    """cmd's exit status and what it wrote to its stderr, a pseudo-terminal."""
    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not b:
            break
        out += b
    os.close(master)
    return p.wait(300), out.decode(errors="replace")


with t.section("the download's progress bar on a terminal: the lock's total when it has one"):
    with open(t.env("sci")["locks"]["explicit"]) as f:
        n_sci = sum(1 for ln in f.read().split() if ln.startswith("https://"))
    for fmt, total in (("explicit", "? (it gives no size)"), ("pixi_lock", "the lock's sum")):
        rc, err = on_tty([t.condafs, "--store", t.path(f"store-tty-{fmt}"), "install",
                          t.env("sci")["locks"][fmt], "--channel-mirror", ch.mirror()])
        bars = re.findall(r"\r\[[# ]{24}\] (\d+)/(\d+) packages  ([^/]+)/([^ ]+(?: \S+)?)  ",
                          err)
        t.check(f"{fmt}: installs, its bar redrawn in place", rc == 0 and len(bars) > 1,
                (rc, err[-500:]))
        if bars:
            last = bars[-1]
            t.check(f"{fmt}: the last bar: every package, their bytes of {total}",
                    last[0] == last[1] == str(n_sci) and
                    (last[3] == "?" if fmt == "explicit" else last[3] == last[2]), last)

with t.section("an environment ingested from a prefix is no package source"):
    # Its files are what conda linked in a prefix its owner could change: kernel, which
    # shares python, numpy and more with sci, fetches every archive into a store holding
    # sci ingested.
    st = t.path("store-ingested")
    t.ok("ingest of sci's prefix", t.ingest(st, t.env("sci")["prefix"]))
    with open(t.env("kernel")["locks"]["explicit"]) as f:
        names = [os.path.basename(ln.split("#")[0]) for ln in f.read().split()
                 if ln.startswith("https://")]
    before = ch.count()
    t.ok("install of kernel beside it", install(st, t.env("kernel")["locks"]["explicit"],
                                                "--channel-mirror", ch.mirror()))
    after = ch.count()
    t.eq("every archive of kernel's lock was fetched once, those of sci's packages too",
         [n for n in names if after.get(n, 0) - before.get(n, 0) != 1], [])

with t.section("served by condafsd: the trees, python, the entry points"):
    with t.daemon(store) as dm:
        for name, h in hashes.items():
            e = t.env(name)
            d = dm.path(h)
            compare(f"{name} mounted", e["prefix"], d, mounted=True)
            t.eq(f"{name}: its conda-meta records name the lock's set (`condafs hash` of "
                 "the mounted prefix)", t.cfs(None, "hash", d).out.strip(), h)
            check_python(name, e, d)

def no_pip(name):
    """name's explicit lock without its PyPI package, which install refuses."""
    path = t.path(f"{name}-nopip.txt")
    with open(t.env(name)["locks"]["explicit"]) as f:
        lines = [ln for ln in f.read().splitlines() if not ln.startswith("# pip ")]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


with t.section("the store as a package source: only the package that differs is fetched"):
    st = t.path("store-source")
    small, rebuild = no_pip("small"), no_pip("small-rebuild")
    before = ch.count()
    r = install(st, small, "--channel-mirror", ch.mirror())
    t.ok("small (no pip package)", r)
    hs = r.out.strip()
    first = {n: c - before.get(n, 0) for n, c in ch.count().items() if c > before.get(n, 0)}
    st_small = t.path("store-source-small")
    shutil.copytree(st, st_small, symlinks=True)
    before = ch.count()
    r = install(st, rebuild, "--channel-mirror", ch.mirror())
    t.ok("small-rebuild, one package rebuilt", r)
    hrb = r.out.strip()
    got = {n: c - before.get(n, 0) for n, c in ch.count().items() if c > before.get(n, 0)}
    t.eq(f"only the rebuilt corpus-hello was fetched (small fetched {len(first)})",
         sorted(got), [n for n in sorted(set(ch.count())) if n.startswith("corpus-hello-")
                       and n not in first])
    with t.daemon(st) as dm:
        d = dm.path(hrb)
        env = {"PATH": f"{d}/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        p = subprocess.run([f"{d}/bin/python3", "-B", "-v", "-c", "import numpy, pip"],
                           capture_output=True, text=True, timeout=300, env=env)
        compiled = [ln for ln in p.stderr.splitlines()
                    if ln.startswith("# code object from ") and not ln.endswith(".pyc'")]
        t.eq("its python imports numpy and pip from the mount, compiling nothing (the noarch "
             "pycs came from the store)", (p.returncode, compiled[:5]), (0, []),
             p.stderr[-2000:])
        p = subprocess.run([f"{d}/bin/pip", "--version"], capture_output=True, text=True,
                           timeout=300, env=env)
        t.eq("its pip entry point runs", p.returncode, 0, p.stderr[-2000:])
        # Taken from the store as the package's record keeps them (pkgrec_meta): the
        # records of the packages it shares with small are small's, byte for byte.
        ds = dm.path(hs)
        shared = sorted(f for f in set(os.listdir(f"{ds}/conda-meta")) &
                        set(os.listdir(f"{d}/conda-meta")) if f.endswith(".json"))
        differ = [f for f in shared if open(f"{ds}/conda-meta/{f}", "rb").read() !=
                  open(f"{d}/conda-meta/{f}", "rb").read()]
        t.check(f"the {len(shared)} conda-meta records it shares with small are small's "
                "bytes", len(shared) >= 20 and not differ, differ)
    t.verify_clean("verify exits 0", st)
    # The same packages under another channel's URLs (mapped to the same server), into a
    # store holding small alone: their records are made again, naming that channel, not
    # taken as stored.
    other_url = "https://other.example.invalid/corpus"
    other = t.path("small-rebuild-other.txt")
    with open(rebuild) as f, open(other, "w") as g:
        g.write(f.read().replace(URL, other_url))
    rebuilt, before = sorted(got), ch.count()
    r = install(st_small, other, "--channel-mirror", ch.mirror().replace(URL, other_url))
    t.ok("small-rebuild from another channel's URLs", r)
    t.eq("only the rebuilt corpus-hello was fetched: the others are known by their digests",
         sorted(n for n, c in ch.count().items() if c > before.get(n, 0)), rebuilt)
    x = t.path("x-other")
    if t.ok("export", t.export(st_small, r.out.strip(), x)):
        urls = [json.load(open(os.path.join(x, "conda-meta", f)))["url"]
                for f in os.listdir(os.path.join(x, "conda-meta")) if f.endswith(".json")]
        t.check(f"its {len(urls)} records name the other channel's URLs",
                len(urls) >= 20 and all(u.startswith(other_url + "/") for u in urls),
                [u for u in urls if not u.startswith(other_url + "/")][:3])
        t.rmtree(x)
    t.verify_clean("verify exits 0", st_small)
    # Its packages' store records name its own conda-meta records (catalog.c C9), not
    # small's: with small reaped, they still hold, and small installs again from them.
    t.ok("rm small", t.cfs(st_small, "rm", hs))
    t.ok("gc", t.cfs(st_small, "gc"))
    t.verify_clean("verify exits 0: every record names only what is stored", st_small)
    before = ch.count()
    r = install(st_small, small, "--channel-mirror", ch.mirror())
    t.eq("small again, from the other environment's records: only its own corpus-hello "
         "is fetched", (r.rc, r.out.strip(), sorted(n for n, c in ch.count().items()
                                                    if c > before.get(n, 0))),
         (0, hs, sorted(n for n in first if n.startswith("corpus-hello-"))), r)
    t.verify_clean("verify exits 0 after", st_small)
    # A record goes with its environment (catalog.c C9): small's corpus-hello was only in
    # small's; the rest small-rebuild recorded again.
    hsmall = t.cfs(None, "hash", small).out.strip()
    t.ok("rm small", t.cfs(st, "rm", hsmall))
    t.ok("gc", t.cfs(st, "gc"))
    before = ch.count()
    r = install(st, small, "--channel-mirror", ch.mirror())
    got = {n for n, c in ch.count().items() if c > before.get(n, 0)}
    t.eq("small again, its records reaped with it: only its own corpus-hello is fetched",
         (r.rc, sorted(got)), (0, sorted(n for n in first if n.startswith("corpus-hello-"))), r)
    # A damaged record is a warning, and its package is fetched.
    db = os.path.join(st, "catalog.db")
    con = lib.sqlite3.connect(db)
    n = con.execute("UPDATE packages SET archive = substr(archive, 1, 20) WHERE name = "
                    "'numpy' AND archive IS NOT NULL").rowcount
    con.commit()
    con.close()
    t.check(f"(numpy's records cut short: {n})", n >= 1)
    t.ok("rm small-rebuild", t.cfs(st, "rm", hrb))
    t.ok("gc", t.cfs(st, "gc"))
    before = ch.count()
    r = install(st, rebuild, "--channel-mirror", ch.mirror())
    got = sorted(n for n, c in ch.count().items() if c > before.get(n, 0))
    t.ok("small-rebuild again", r)
    t.check("a damaged record is a warning naming the catalog and the package, then "
            "the package is fetched",
            any("catalog.db" in w and "numpy" in w and "fetching it" in w
                for w in r.warnings()) and any(n.startswith("numpy-") for n in got), r)
    # small's is still damaged: verify names it, the repair forgets it.
    r = t.cfs(st, "--json", "verify")
    v = json.loads(r.out) if r.out.startswith("{") else {}
    t.eq("verify exits 1 naming small's damaged numpy record",
         (r.rc, v.get("damaged_records"),
          [(p["environment"], p["path"].split("-")[0]) for p in v.get("problems", [])]),
         (1, 1, [(hsmall, "numpy")]), r)
    r = t.cfs(st, "--json", "verify", "--repair")
    v = json.loads(r.out) if r.out.startswith("{") else {}
    t.eq("verify --repair forgets it (exit 1: problems found, all repaired)",
         (r.rc, v.get("records_forgotten"), [a["action"] for a in v.get("repairs", [])]),
         (1, 1, ["package record forgotten"]), r)
    t.verify_clean("verify exits 0", st)


with t.section("from a package cache, with no channel"):
    store2 = t.path("store-cache")
    e = t.env("sci")
    before = ch.total()
    # The cache and the (unreachable) mirror from the config file, as an admin sets them.
    cfg = t.path("condafs.yml")
    with open(cfg, "w") as f:
        f.write(f"pkgs_dirs:\n  - {pkgs_dir}\nmirrors:\n  {URL}: http://127.0.0.1:1\n")
    r = install(store2, e["locks"]["explicit"], "--config", cfg)
    t.ok("install with the config's pkgs_dirs and an unreachable mirror", r)
    t.eq("nothing was fetched", ch.total(), before)
    t.eq("the same hash", r.out.strip(), t.cfs(None, "hash", e["locks"]["explicit"]).out.strip())
    t.verify_clean("verify exits 0", store2)

# Real packages from conda's, mamba's and rattler's test data (tests/fixtures/SOURCES.txt),
# installed: both archive formats, noarch generic, symbolic links, a link script, an empty
# package. Refused, each with its reason: conda's zlib test packages (sanitized: their
# symbolic links have no target), a .conda without metadata.json (CEP 35 requires it), a
# package for another platform, a noarch python package without a python, an archive whose
# index.json names another version than its lock.
REAL = {"noarch": ["_r-mutex-1.0.1-anacondar_1.tar.bz2",
                   "clobber-with-symlink-a-0.1.0-h4616a5c_0.conda",
                   "cph_test_data-0.0.1-0.tar.bz2", "empty-0.1.0-h4616a5c_0.conda",
                   "link-scripts-0.1.0-h4616a5c_0.conda"]}


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def real_lock(name, pkgs):
    """An explicit lock of pkgs ({subdir: [fn]}) at file:// URLs of a channel made here."""
    lines = ["# platform: linux-64", "@EXPLICIT"]
    for subdir, fns in pkgs.items():
        d = t.path("realchan", subdir)
        os.makedirs(d, exist_ok=True)
        for fn in fns:
            dst = os.path.join(d, fn)
            if not os.path.exists(dst):
                shutil.copy(os.path.join(t.fixtures, "conda", "packages", fn), dst)
            lines.append(f"file://{dst}#{md5(dst)}")
    path = t.path(f"{name}.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def archive_paths(path):
    """paths.json of a package archive: [(path, type, placeholder)]."""
    d = t.path("unpacked", os.path.basename(path))
    if not os.path.isdir(d):
        os.makedirs(d)
        if path.endswith(".tar.bz2"):
            subprocess.run(["tar", "-xjf", path, "-C", d, "info"], check=True)
        else:
            n = os.path.basename(path)[:-len(".conda")]
            subprocess.run(f"unzip -p {path} info-{n}.tar.zst | zstd -dc | tar -xf - -C {d}",
                           shell=True, check=True)
    with open(os.path.join(d, "info", "paths.json")) as f:
        return [(e["_path"], e["path_type"], e.get("prefix_placeholder"))
                for e in json.load(f)["paths"]]


with t.section("real packages from file:// URLs"):
    pkgs = REAL
    lock = real_lock("real", pkgs)
    st = t.path("store-real")
    r = install(st, lock, "--json")
    t.ok("five noarch packages, .conda and .tar.bz2: install", r)
    want = t.cfs(None, "hash", lock).out.strip()
    out = json.loads(r.out) if r.rc == 0 else {}
    t.eq("--json: the hash is `condafs hash LOCK`'s, the link script not run",
         out, {"hash": want, "already_stored": False,
               "scripts_not_run": ["link-scripts-0.1.0-h4616a5c_0"]})
    t.check("the link script is named, not run",
            any("link-scripts-0.1.0-h4616a5c_0" in w and "does not run" in w
                for w in r.warnings()), r)
    d = t.path("x-real")
    t.ok("export", t.export(st, want, d))
    bad = []
    for subdir, fns in pkgs.items():
        for fn in fns:
            for rel, kind, ph in archive_paths(t.path("realchan", subdir, fn)):
                full = os.path.join(d, rel)
                if not os.path.lexists(full):
                    bad.append((fn, rel, "missing"))
                elif kind == "softlink" and not os.path.islink(full):
                    bad.append((fn, rel, "not a symlink"))
                elif kind == "hardlink" and not stat.S_ISREG(os.lstat(full).st_mode):
                    bad.append((fn, rel, "not a file"))
                elif ph:
                    with open(full, "rb") as f:
                        data = f.read()
                    if ph.encode() in data or d.encode() not in data:
                        bad.append((fn, rel, "placeholder not relocated"))
    t.eq("every path of every package, relocated to where it is exported", bad, [])
    if os.path.isdir(os.path.join(d, "conda-meta")):
        t.eq("a record for each package",
             len([n for n in os.listdir(os.path.join(d, "conda-meta")) if n.endswith(".json")]),
             sum(len(v) for v in pkgs.values()))
    t.rmtree(d)
    t.verify_clean("verify exits 0", st)
    st = t.path("store-real-bad")
    r = install(st, real_lock("real-osx", dict(REAL, **{"linux-64": [
        "mock-2.0.0-py37_1000.conda"]})))
    t.fails_clearly("a package for another platform is refused", r, "mock-2.0.0-py37_1000",
                    "osx-64", "linux-64")
    r = install(st, real_lock("real-pynoarch", {"noarch": [
        "clobber-pynoarch-1-0.1.0-pyh4616a5c_0.tar.bz2"]}))
    t.fails_clearly("a noarch python package without a python is refused", r,
                    "clobber-pynoarch-1", "python")
    for zlib in ("zlib-1.2.11-h7b6447c_3.conda", "zlib-1.2.11-h7b6447c_3.tar.bz2"):
        r = install(st, real_lock(f"real-{zlib}", dict(REAL, **{"linux-64": [zlib]})))
        t.fails_clearly(f"{zlib} (sanitized: links without a target) is refused", r,
                        "zlib-1.2.11-h7b6447c_3", "lib/libz.so")
    # An archive under another package's name: the records are made from its index.json,
    # and would not name the set the lock's hash is of.
    renamed = t.path("realchan", "noarch", "_r-mutex-1.0.2-anacondar_1.tar.bz2")
    os.makedirs(os.path.dirname(renamed), exist_ok=True)
    shutil.copy(os.path.join(t.fixtures, "conda", "packages", REAL["noarch"][0]), renamed)
    r = install(st, real_lock("real-renamed", {"noarch": [os.path.basename(renamed)]}))
    t.fails_clearly("an archive whose index.json names another version than the lock", r,
                    "_r-mutex-1.0.1-anacondar_1", "1.0.2")
    r = install(st, real_lock("real-nometa", {"noarch": ["symlink-test-1.0.0-0.conda"]}))
    t.fails_clearly("a .conda without metadata.json is refused", r, "symlink-test-1.0.0-0.conda",
                    "metadata.json")
    # Found by tests/fuzz/fuzz_package.c: the missing index.json was an error without a message.
    fn = "noindex-1.0-0.tar.bz2"
    with tarfile.open(t.path("realchan", "noarch", fn), "w:bz2") as tar:
        data = json.dumps({"paths_version": 1, "paths": []}).encode()
        ti = tarfile.TarInfo("info/paths.json")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    r = install(st, real_lock("real-noindex", {"noarch": [fn]}))
    t.fails_clearly("an archive without info/index.json is refused", r,
                    "noindex-1.0-0", "info/index.json: not in the package")
    t.eq("nothing stored", t.ls(st) if os.path.isdir(st) else [], [])

with t.section("the .pyc compiler runs as nobody, and may write nothing"):
    # A hostile "python": a script that reports who it runs as through the names of the
    # files it creates in a directory anyone may write, then tries what it must not do.
    probe = tempfile.mkdtemp(prefix="condafs-probe-", dir="/tmp")
    os.chmod(probe, 0o1777)
    script = f"""#!/bin/sh
d={probe}
/usr/bin/touch "$d/uid-$(/usr/bin/id -u)-gid-$(/usr/bin/id -g)-groups-$(/usr/bin/id -G)"
/bin/ls /proc/self/cwd >/dev/null 2>&1 && /usr/bin/touch "$d/listed-its-directory"
/bin/cat /etc/shadow >/dev/null 2>&1 && /usr/bin/touch "$d/read-shadow"
echo data > "$d/wrote"
exit 3
""".encode()
    fn = "python-3.11.0-hostile_0.tar.bz2"
    d = t.path("realchan", "linux-64")
    os.makedirs(d, exist_ok=True)
    with tarfile.open(os.path.join(d, fn), "w:bz2") as tar:
        def add(name, data, mode=0o644):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, 1700000000
            tar.addfile(ti, io.BytesIO(data))
        add("info/index.json", json.dumps({
            "name": "python", "version": "3.11.0", "build": "hostile_0", "build_number": 0,
            "subdir": "linux-64", "depends": []}).encode())
        add("info/paths.json", json.dumps({"paths_version": 1, "paths": [{
            "_path": "bin/python3.11", "path_type": "hardlink",
            "sha256": hashlib.sha256(script).hexdigest(),
            "size_in_bytes": len(script)}]}).encode())
        add("bin/python3.11", script, 0o755)
    lock = real_lock("hostile-python", {"linux-64": [fn], "noarch": [
        "clobber-pynoarch-1-0.1.0-pyh4616a5c_0.tar.bz2"]})
    st = t.path("store-hostile-python")
    r = install(st, lock)
    t.ok("install with a python that does not compile", r)
    # Killed by SIGXFSZ as it writes a byte (the script's exit 3 is never reached).
    t.check("its failure is a warning naming it",
            any("python3.11" in w and "not compiled" in w for w in r.warnings()), r)
    t.eq("it ran as nobody with no groups, could not list the install's directory, read "
         "/etc/shadow or write a byte", sorted(os.listdir(probe)),
         ["uid-65534-gid-65534-groups-65534", "wrote"])
    t.eq("(the file it made is empty)", os.path.getsize(os.path.join(probe, "wrote")), 0)
    h = r.out.strip()
    x = t.path("x-hostile")
    if t.ok("export", t.export(st, h, x)):
        t.eq("no .pyc", os.listdir(os.path.join(x, "lib/python3.11/site-packages/clobber")),
             ["clobber.py"])
    t.verify_clean("verify exits 0", st)
    shutil.rmtree(probe)

with t.section("a noarch package stored for one python serves another from the store"):
    # Two pythons, 3.11 and 3.12: each runs Debian's python3.11 (nobody may read it), which
    # compiles as well for either (the pycs are named for the environment's python), and
    # leaves an empty file in runs/ each time it is run.
    chan = t.path("pychan")
    os.makedirs(os.path.join(chan, "linux-64"))
    os.makedirs(os.path.join(chan, "noarch"))
    runs = tempfile.mkdtemp(prefix="condafs-runs-", dir="/tmp")
    os.chmod(runs, 0o1777)
    wrapper = (f"#!/bin/sh\n/usr/bin/touch {runs}/$$\nunset PYTHONHOME\n"
               "exec /usr/bin/python3.11 \"$@\"\n").encode()
    for ver in ("3.11", "3.12"):
        with tarfile.open(os.path.join(chan, "linux-64", f"python-{ver}.0-w_0.tar.bz2"),
                          "w:bz2") as tar:
            for name, data, mode in (
                    ("info/index.json", json.dumps({
                        "name": "python", "version": f"{ver}.0", "build": "w_0",
                        "build_number": 0, "subdir": "linux-64", "depends": []}).encode(),
                     0o644),
                    ("info/paths.json", json.dumps({"paths_version": 1, "paths": [{
                        "_path": f"bin/python{ver}", "path_type": "hardlink",
                        "sha256": hashlib.sha256(wrapper).hexdigest(),
                        "size_in_bytes": len(wrapper)}]}).encode(), 0o644),
                    (f"bin/python{ver}", wrapper, 0o755)):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode, ti.mtime = len(data), mode, 1700000000
                tar.addfile(ti, io.BytesIO(data))
    for fn in ("clobber-pynoarch-1-0.1.0-pyh4616a5c_0.tar.bz2",
               "_r-mutex-1.0.1-anacondar_1.tar.bz2"):
        shutil.copy(os.path.join(t.fixtures, "conda", "packages", fn),
                    os.path.join(chan, "noarch", fn))

    def py_lock(name, paths):
        lines = ["# platform: linux-64", "@EXPLICIT"] + [
            f"file://{chan}/{p}#{md5(os.path.join(chan, p))}" for p in paths]
        path = t.path(f"{name}.txt")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    clobber = "noarch/clobber-pynoarch-1-0.1.0-pyh4616a5c_0.tar.bz2"
    py311 = py_lock("py311", ["linux-64/python-3.11.0-w_0.tar.bz2", clobber])
    py312 = py_lock("py312", ["linux-64/python-3.12.0-w_0.tar.bz2", clobber])
    py312b = py_lock("py312b", ["linux-64/python-3.12.0-w_0.tar.bz2", clobber,
                                "noarch/_r-mutex-1.0.1-anacondar_1.tar.bz2"])
    st = t.path("store-pythons")
    r = install(st, py311)
    t.ok("python 3.11 with the noarch package", r)
    h311 = r.out.strip()
    # Gone from the channel: only the store can give it now.
    os.unlink(os.path.join(chan, clobber))

    def pyc_of(store, h, ver):
        """The source and pyc the environment h serves for clobber.py."""
        x = t.path(f"x-py-{h}")
        t.ok(f"export {h[:8]}", t.export(store, h, x))
        d = os.path.join(x, f"lib/python{ver}/site-packages/clobber")
        with open(os.path.join(d, "clobber.py"), "rb") as f:
            src = f.read()
        tag = "cpython-" + ver.replace(".", "")
        p = os.path.join(d, "__pycache__", f"clobber.{tag}.pyc")
        pyc = open(p, "rb").read() if os.path.exists(p) else None
        mtime = int(os.stat(os.path.join(d, "clobber.py")).st_mtime)
        t.rmtree(x)
        return src, pyc, mtime

    n = len(os.listdir(runs))
    r = install(st, py312)
    t.ok("python 3.12 with the same package: its archive is gone, so it came from the store",
         r)
    t.check("python ran to compile it for 3.12", len(os.listdir(runs)) > n)
    h312 = r.out.strip()
    t.eq("its hash is `condafs hash LOCK`'s", h312, t.cfs(None, "hash", py312).out.strip())
    src, pyc, mtime = pyc_of(st, h312, "3.12")
    t.eq("its source, read back from the store, is the archive's",
         src, tarfile.open(os.path.join(t.fixtures, "conda", "packages", os.path.basename(
             clobber))).extractfile("site-packages/clobber/clobber.py").read())
    t.check("its pyc for 3.12 was compiled, for this source (mtime and size in its header)",
            pyc is not None and pyc[8:12] == (mtime & 0xFFFFFFFF).to_bytes(4, "little")
            and pyc[12:16] == len(src).to_bytes(4, "little"), pyc)
    # The 3.11 environment gone, the record 3.12 made holds its pycs: nothing compiles.
    t.ok("rm python 3.11's", t.cfs(st, "rm", h311))
    t.ok("gc", t.cfs(st, "gc"))
    n = len(os.listdir(runs))
    r = install(st, py312b)
    t.ok("another 3.12 environment with it, from the record the 3.12 install made", r)
    t.eq("nothing was compiled", len(os.listdir(runs)), n)
    t.eq("the same pyc, taken from that record", pyc_of(st, r.out.strip(), "3.12")[1], pyc)
    t.verify_clean("verify exits 0", st)
    shutil.rmtree(runs)

with t.section("bad input stores nothing"):
    bad_store = t.path("store-bad")
    os.makedirs(t.path("bad"), exist_ok=True)
    r = install(bad_store, t.env("sci")["locks"]["environment_yml"])
    t.fails_clearly("an environment.yml: no archive URL", r, "environment.yml", "URL")
    r = install(bad_store, t.env("small")["locks"]["explicit"], "--channel-mirror", ch.mirror())
    t.fails_clearly("a lock with PyPI packages is refused whole", r, "PyPI", "pyjwt")
    # A wrong digest: the first package's md5 changed.
    with open(t.env("sci")["locks"]["explicit"]) as f:
        orig = f.read().splitlines()
    lines = list(orig)
    i = next(k for k, ln in enumerate(lines) if ln.startswith("https://"))
    url, digest = lines[i].split("#")
    lines[i] = url + "#" + ("0" * len(digest))
    wrong = t.path("bad", "wrong-digest.txt")
    with open(wrong, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = install(bad_store, wrong, "--channel-mirror", ch.mirror())
    t.fails_clearly("a digest that does not match names the archive and both digests", r,
                    os.path.basename(url), "0" * len(digest), "mismatch")
    # A wrong digest for the fifth package (by name: the order downloads begin in, four at
    # once, when the lock gives no sizes), with the first stalled half-way by the server:
    # the fifth is fetched once one of the three beside the first is done, its mismatch
    # stops the downloads, and the install does not wait for the stalled one (it would
    # for ever: the rest of it never comes; retried, it would be requested again).
    lines = list(orig)
    by_name = sorted((k for k, ln in enumerate(lines) if ln.startswith("https://")),
                     key=lambda k: pkg_name(lines[k]))
    stalled = os.path.basename(lines[by_name[0]].split("#")[0])
    url5, digest5 = lines[by_name[4]].split("#")
    lines[by_name[4]] = url5 + "#" + ("0" * len(digest5))
    wrong5 = t.path("bad", "wrong-digest-5.txt")
    with open(wrong5, "w") as f:
        f.write("\n".join(lines) + "\n")
    ch.stall(stalled)
    before = ch.count().get(stalled, 0)
    p = subprocess.Popen([t.condafs, "--store", bad_store, "install", wrong5,
                          "--channel-mirror", ch.mirror()],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t.check(f"{stalled} is half-sent", ch.half_sent.wait(300))
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            p.kill()
        r = t.finish_proc(p)
    finally:
        ch.release()
    t.fails_clearly(f"with {stalled} stalled: the fifth's mismatch", r,
                    os.path.basename(url5), "0" * len(digest5), "mismatch")
    t.eq(f"{stalled} was requested once: not waited for, nor retried",
         ch.count().get(stalled, 0), before + 1)
    # An archive the channel does not have (the last by name: the others are downloaded and
    # unpacked meanwhile, and stop): the download's failure is the one line.
    lines = list(orig)
    last = max((k for k, ln in enumerate(lines) if ln.startswith("https://")),
               key=lambda k: pkg_name(lines[k]))
    gone = re.sub(r"_(\d+)(\.conda|\.tar\.bz2)#", r"_9\1\2#", lines[last])
    lines[last] = gone
    missing = t.path("bad", "missing-archive.txt")
    with open(missing, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = install(bad_store, missing, "--channel-mirror", ch.mirror())
    t.fails_clearly("an archive the channel does not have: its URL and HTTP 404", r,
                    os.path.basename(gone.split("#")[0]), "HTTP 404")
    r = install(bad_store, t.env("sci")["locks"]["explicit"],
                "--channel-mirror", f"{URL}=http://127.0.0.1:1")
    t.fails_clearly("an unreachable channel", r, "127.0.0.1:1")
    # A cache's archive with a flipped byte fails its digest before a byte of it is read.
    cache = t.path("bad", "pkgs")
    os.makedirs(cache)
    first = os.path.basename(url)
    shutil.copy(os.path.join(pkgs_dir, first), cache)
    with open(os.path.join(cache, first), "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    r = install(bad_store, t.env("sci")["locks"]["explicit"], "--pkgs-dir", cache,
                "--channel-mirror", f"{URL}=http://127.0.0.1:1")
    t.fails_clearly("a cache's damaged archive, then an unreachable channel", r, "127.0.0.1:1")
    t.check("a cache's damaged archive is refused by its digest, with a warning",
            any(first in w and "mismatch" in w and "fetching it instead" in w
                for w in r.warnings()), r)
    store3 = t.path("store-damaged-cache")
    r = install(store3, t.env("sci")["locks"]["explicit"], "--pkgs-dir", cache,
                "--channel-mirror", ch.mirror())
    t.ok("a cache's damaged archive is fetched from the channel instead", r)
    t.verify_clean("verify exits 0", store3)
    if os.path.isdir(bad_store):
        t.eq("nothing stored", t.ls(bad_store), [])
        t.verify_clean("verify exits 0", bad_store)
        tmp = os.path.join(bad_store, "tmp")
        t.eq("no temporary directory left", os.listdir(tmp) if os.path.isdir(tmp) else [], [])

t.finish()
