#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Crash safety of condafs install (suite crash, issue 12): kill -9 at eight points of an
install of the corpus's small environment (its lock without the PyPI line, which install
refuses), each into a fresh store, each point reached deterministically, with no sleep:

- during a download: the test's HTTP server sends half of python's archive and blocks.
  Once it has sent that half the install is in its downloads, which cannot end; once every
  other package is unpacked into its data file (archives are checked and unpacked as each
  is whole, beside the downloads: checked), it is killed (checked: python's archive is
  still a part);
- the other seven through strace, which sends SIGKILL on entry to the N-th matching system
  call (`-e inject=SYSCALL:signal=KILL:when=N`; `-P PATH` counts only calls naming PATH;
  the kernel skips the call itself):
  - during unpacking: the openat that would make the smallest archive's data file
    (checked: the install's pkgs/ is there, that file is not);
  - while python is written out of its data file for the .pyc compiler: the openat that
    would make lib/python3.11/os.py (checked: python3.11/ is there, os.py is not);
  - at the store phase's first syncfs, when no package's data file is left (the records
    are made and the files read: nothing but the images is there for it to write out);
  - half-way through publishing the store phase's images (renameat2 into objects/);
  - half-way through the commit's writes to the catalog's WAL (the environment is
    absent: the frame that marks the commit is the last);
  - at the commit's fdatasync of the WAL (every frame written: present);
  - after the commit, at the first unlinkat (tmp/ not yet removed: present).
  N is counted from a reference install of the same lock into a fresh store, traced
  (`strace -f -y`) without injecting anything: the install makes these calls in one order
  (only the number of renames and of the commit's pages may differ by one or two, so those
  points are taken half-way).

After each kill: verify exits 0; ls shows nothing or the whole environment, as the point
guarantees, and a surviving one exports exactly as the reference does but for the install's
own time; the store holds nothing but its catalog, objects and the dead install's temporary
directories; a re-run of the install prints `condafs hash LOCK`'s hash and leaves tmp/
empty (the re-run removes the dead install's directories, also when it finds the
environment stored); gc then frees every unreferenced object and verify is clean.

Then two installs released at one moment: of two overlapping locks (sci and small) into one
store, and of one lock into a store that does not exist yet: both succeed with the right
hashes (the second of one lock finds it stored), verify is clean, no litter. Last, an
environment that differs from a stored one by a single rebuilt package (small-rebuild)
installs beside it, also after a kill -9 at the first rename of its few new images (made
durable by an fsync each, not a syncfs)."""

import os
import re
import shutil
import subprocess
import time

import lib

t = lib.Harness("store_install_crash: kill -9 during install, concurrent installs")
corpus = t.corpus()
channel = os.path.realpath(os.path.join(
    os.path.dirname(corpus["envs"]["sci"]["locks"]["explicit"]), "..", "..", "channel"))
URL = "https://channel.example.invalid/corpus"


ch = lib.Channel(channel, URL)


def install_cmd(store, lock):
    return [t.condafs, "--store", store, "install", lock, "--channel-mirror", ch.mirror()]


def install(store, lock):
    return t.run(install_cmd(store, lock))


def conda_only(name):
    """The corpus env's explicit lock without its pip line: install installs conda packages
    only, and refuses a lock with PyPI packages whole."""
    with open(t.env(name)["locks"]["explicit"]) as f:
        lines = [ln for ln in f.read().splitlines() if not ln.startswith("# pip ")]
    path = t.path(f"{name}.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def tmp_entries(store):
    tmp = os.path.join(store, "tmp")
    return sorted(os.listdir(tmp)) if os.path.isdir(tmp) else []


# ---- the reference install, traced ----

CALL_RE = re.compile(r"^\d+ +(\w+)\((?:\d+<([^>]*)>)?")


def calls(trace):
    """(syscall, path of its first fd argument or None) of each call begun in an strace -y
    log, in order ("<... resumed>" lines continue a call already counted)."""
    out = []
    with open(trace, errors="replace") as f:
        for line in f:
            m = CALL_RE.match(line)
            if m:
                out.append((m.group(1), m.group(2)))
    return out


def nth(evs, upto, sc, path=None):
    """How many calls of sc (naming path, if given) evs[:upto] holds."""
    return sum(1 for s, p in evs[:upto] if s == sc and (path is None or p == path))


def kill_points(evs, store):
    """{name: (syscall, -P path or None, when, state after the kill)} from the reference
    install's calls into store. State: "absent" or "present", what the point guarantees."""
    wal = os.path.join(store, "catalog.db-wal")
    first_rename = next(i for i, (s, _) in enumerate(evs) if s == "renameat2")
    # The commit: the WAL's first fdatasync after the images are published.
    commit_sync = next(i for i, (s, p) in enumerate(evs)
                       if i > first_rename and s == "fdatasync" and p == wal)
    after = next(i for i, (s, _) in enumerate(evs) if i > commit_sync and s == "unlinkat")
    return {
        # Half of the images in objects/, the catalog names none of them.
        "half-way through publishing the images": (
            "renameat2", None, nth(evs, len(evs), "renameat2") // 2, "absent"),
        # Half of the transaction's frames in the WAL, not the last, which marks the
        # commit. (Half, not the last write: the number of pages the commit writes varies
        # by one or two with where the keys of the install's time-stamped files fall.)
        "half-way through the commit's writes to the WAL": (
            "pwrite64", wal, (nth(evs, first_rename, "pwrite64", wal) +
                              nth(evs, commit_sync, "pwrite64", wal)) // 2 + 1, "absent"),
        # Every frame written, none synced: the next reader recovers the commit from the
        # WAL (the page cache outlives a killed process).
        "at the commit's fdatasync": (
            "fdatasync", wal, nth(evs, commit_sync, "fdatasync", wal) + 1, "present"),
        # Committed, the temporary directories not yet removed.
        "after the commit, removing tmp/": (
            "unlinkat", None, nth(evs, after, "unlinkat") + 1, "present"),
    }


def traced_install(store, lock, sc, path, when):
    """install under strace, which kills it with SIGKILL on entry to the when-th call of sc
    (naming path, if given)."""
    return t.run(["strace", "-f", "-qq", "-o", "/dev/null",
                  *(["-P", path] if path else []), "-e", f"trace={sc}",
                  "-e", f"inject={sc}:signal=KILL:when={when}", *install_cmd(store, lock)])


def same_env(what, d, ref):
    """The export d against the reference install's export ref, both at one --prefix: equal
    but for the install's own time (conda-meta/history's first line, and the mtimes the
    install stamps with it, which are the top directory's)."""
    ref_ns = os.stat(ref).st_mtime_ns
    d_ns = os.stat(d).st_mtime_ns
    problems, counts = lib.compare_trees(
        ref, d, ignore={b"conda-meta/history"},
        mtime_ok=lambda rel, s_ns, d_ns_: s_ns == ref_ns and d_ns_ == d_ns)
    with open(os.path.join(ref, "conda-meta", "history")) as f:
        a = f.read().splitlines()[1:]
    with open(os.path.join(d, "conda-meta", "history")) as f:
        b = f.read().splitlines()[1:]
    if a != b:
        problems.append("conda-meta/history differs beyond its time stamp")
    lib.report_tree(t, what, problems, counts)


def after_kill(store, lock, want, expect, ref_export, r):
    """The checks after a kill -9 of an install of lock into store (docs/ARCHITECTURE.md,
    crash safety)."""
    t.eq("the install died of SIGKILL", r.rc, -9, r)
    t.verify_clean("verify exits 0 after the kill", store)
    envs = t.hashes(store)
    t.check(f"ls shows nothing or the whole environment ({envs})", envs in ([], [want]), envs)
    t.eq(f"the environment is {expect} (what this point guarantees)",
         "present" if envs == [want] else "absent", expect)
    if envs == [want]:
        d = t.path("export-killed")
        r = t.export(store, want, d, prefix="/opt/same")
        t.ok("export of the surviving environment succeeds", r)
        if r.rc == 0:
            same_env("...and equals the reference install's export", d, ref_export)
        t.rmtree(d)
    t.eq("the store holds only its catalog, objects and temporary directories",
         lib.litter(store, tmp_ok=True), [])
    r = install(store, lock)
    t.check("a re-run of the install prints the lock's hash", r.rc == 0 and r.out.strip() == want,
            r)
    t.eq("ls shows the environment", t.hashes(store), [want])
    t.eq("tmp/ is empty: the re-run removed the dead install's directories",
         tmp_entries(store), [])
    t.eq("no litter after the re-run", lib.litter(store), [])
    # gc deletes only what no row names: verify checks the re-run's store as much as gc's.
    t.ok("gc", t.cfs(store, "gc"))
    v = t.verify_clean("verify exits 0 after the re-run and gc", store)
    t.eq("gc freed every unreferenced object", v and v.get("unreferenced"), 0, v)


lock = conda_only("small")
want = t.cfs(None, "hash", lock).out.strip()
t.check(f"condafs hash of the small lock ({want})", lib.HASH_RE.match(want), want)

points = {}
with t.section("a reference install of small, traced"):
    store = os.path.realpath(t.path("store-ref"))
    trace = t.path("reference.strace")
    r = t.run(["strace", "-f", "-qq", "-y", "-o", trace,
               "-e", "trace=renameat2,pwrite64,fdatasync,unlinkat",
               *install_cmd(store, lock)])
    t.check("install under strace prints the lock's hash", r.rc == 0 and r.out.strip() == want, r)
    points = kill_points(calls(trace), store)
    ref_export = t.path("export-ref")
    t.ok("export", t.export(store, want, ref_export, prefix="/opt/same"))
    t.verify_clean("verify exits 0", store)
    t.eq("tmp/ is empty", tmp_entries(store), [])

with open(lock) as f:
    urls = [u.split("#")[0] for u in f.read().split() if u.startswith(("http:", "https:"))]
python = next(os.path.basename(u) for u in urls if "/python-3" in u)


def dist_of(url):
    return re.sub(r"\.(conda|tar\.bz2)$", "", os.path.basename(url))


def work_dir(store, sub):
    """The listing of sub (dl, pkgs) in the install's one temporary directory, or None."""
    d = [os.path.join(store, "tmp", e, sub) for e in tmp_entries(store)]
    return sorted(os.listdir(d[0])) if len(d) == 1 and os.path.isdir(d[0]) else None


with t.section(f"kill -9 during the download of {python}, the others unpacked meanwhile"):
    store = t.path("store-download")
    ch.stall(python)
    p = subprocess.Popen(install_cmd(store, lock), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        t.check("the server sent half of the archive", ch.half_sent.wait(300))
        # Each archive is checked and unpacked as soon as it is whole, beside the
        # downloads: every other one is, while python's cannot end.
        others = sorted(f"{dist_of(u)}.data" for u in urls if os.path.basename(u) != python)
        # A download is removed once unpacked: then only python's part is left in dl/.
        deadline = time.monotonic() + 120
        while ((work_dir(store, "pkgs"), work_dir(store, "dl")) != (others, [f"{python}.part"])
               and time.monotonic() < deadline):
            time.sleep(0.05)
        t.eq("while python downloads, every other package is unpacked into its data file",
             work_dir(store, "pkgs"), others)
        t.eq("the kill lands in the downloads: python's archive is still a part, every "
             "other download unpacked and removed", work_dir(store, "dl"), [f"{python}.part"])
        p.kill()
        r = t.finish_proc(p)
    finally:
        ch.release()
    after_kill(store, lock, want, "absent", ref_export, r)

with t.section("kill -9 while python is written out for the compiler (openat of os.py)"):
    store = t.path("store-extract")
    r = traced_install(store, lock, "openat", "lib/python3.11/os.py", 1)
    dist = python[:-len(".conda")]
    landed = [os.path.join(store, "tmp", d, "pkgs", dist, "lib", "python3.11")
              for d in tmp_entries(store)]
    t.check("the kill lands in the writing out: python3.11/ is there, os.py is not",
            len(landed) == 1 and os.path.isdir(landed[0]) and
            not os.path.exists(os.path.join(landed[0], "os.py")), landed)
    after_kill(store, lock, want, "absent", ref_export, r)

# The smallest archive: whatever order the archives are unpacked in (as each download is
# whole, the largest of those waiting first), the install is unpacking when it makes its
# data file.
small = dist_of(min(urls, key=lambda u: os.path.getsize(os.path.join(channel,
                                                                      *u.split("/")[-2:]))))

with t.section(f"kill -9 while packages are unpacked into data files (openat of {small}'s)"):
    store = t.path("store-unpack")
    r = traced_install(store, lock, "openat", f"{small}.data", 1)
    data = work_dir(store, "pkgs")
    t.check(f"the kill lands in the unpacking: the install's pkgs/ is there, {small}'s data "
            "file is not", data is not None and f"{small}.data" not in data, data)
    after_kill(store, lock, want, "absent", ref_export, r)

with t.section("kill -9 at the store phase's first syncfs: the data files are gone by then"):
    store = t.path("store-syncfs")
    r = traced_install(store, lock, "syncfs", None, 1)
    # The install's directory, beside the store phase's own (its images).
    pkgs = [p for p in (os.path.join(store, "tmp", d, "pkgs") for d in tmp_entries(store))
            if os.path.isdir(p)]
    left = [n for p in pkgs for n in os.listdir(p) if n.endswith(".data")]
    t.check("no data file is left for the syncfs to write out (the records are made, the "
            "files read)", len(pkgs) == 1 and not left, (pkgs, left))
    after_kill(store, lock, want, "absent", ref_export, r)

for i, (name, (sc, path, when, expect)) in enumerate(points.items()):
    of = f" of {os.path.basename(path)}" if path else ""
    with t.section(f"kill -9 {name} ({sc} #{when}{of})"):
        store = t.path(f"store-kill-{i}")
        # The reference's paths are those of its own store: the same names in this one.
        path = path and path.replace(os.path.realpath(t.path("store-ref")),
                                     os.path.realpath(store))
        after_kill(store, lock, want, expect, ref_export,
                   traced_install(store, lock, sc, path, when))


with t.section("two installs at once: sci and small, which share packages, into one store"):
    store = t.path("store-two")
    locks = [t.env("sci")["locks"]["explicit"], lock]
    hashes = [t.cfs(None, "hash", lk).out.strip() for lk in locks]
    rs = [t.finish_proc(p) for p in lib.start_together([install_cmd(store, lk)
                                                          for lk in locks])]
    t.check("both succeed", all(r.rc == 0 for r in rs), "\n".join(str(r) for r in rs))
    t.eq("each prints its lock's hash", [r.out.strip() for r in rs], hashes)
    t.eq("ls shows both", t.hashes(store), sorted(hashes))
    t.verify_clean("verify exits 0", store)
    t.eq("no litter, tmp/ empty", lib.litter(store), [])

with t.section("two installs of one lock at once, into a store that does not exist yet"):
    store = t.path("store-same")
    rs = [t.finish_proc(p) for p in lib.start_together([install_cmd(store, lock)] * 2)]
    t.check("both succeed", all(r.rc == 0 for r in rs), "\n".join(str(r) for r in rs))
    t.eq("both print the lock's hash", [r.out.strip() for r in rs], [want, want])
    t.eq("one stored it, the other found it stored",
         sorted(lib.ingest_said(r)[2] or "" for r in rs), ["", "already stored"],
         "\n".join(str(r) for r in rs))
    t.eq("ls shows it once", t.hashes(store), [want])
    t.verify_clean("verify exits 0", store)
    t.eq("no litter, tmp/ empty", lib.litter(store), [])

with t.section("an environment that differs from a stored one by one rebuilt package"):
    # The reference store holds small.
    store = t.path("store-ref")
    rebuild = conda_only("small-rebuild")
    want2 = t.cfs(None, "hash", rebuild).out.strip()
    with open(lock) as f, open(rebuild) as g:
        differ = sorted(os.path.basename(u.split("#")[0])
                        for u in set(g.read().split()) - set(f.read().split()))
    t.eq("the locks differ by one package", len(differ), 1, differ)
    # Its few new images are fsynced one by one, not by a syncfs (ingest_store.c): killed
    # at the first one's rename into objects/, the store still holds small alone.
    few = t.path("store-few")
    shutil.copytree(store, few, symlinks=True)
    r = traced_install(few, rebuild, "renameat2", None, 1)
    t.eq("the install of small-rebuild died of SIGKILL at its first rename", r.rc, -9, r)
    t.verify_clean("verify exits 0 after the kill", few)
    t.eq("ls shows small alone", t.hashes(few), [want])
    t.eq("the store holds only its catalog, objects and temporary directories",
         lib.litter(few, tmp_ok=True), [])
    r = install(few, rebuild)
    t.check("a re-run installs small-rebuild", r.rc == 0 and r.out.strip() == want2, r)
    t.eq("...and leaves tmp/ empty", tmp_entries(few), [])
    t.verify_clean("verify exits 0 after the re-run", few)
    before = ch.count()
    r = install(store, rebuild)
    t.check("install small-rebuild prints its hash", r.rc == 0 and r.out.strip() == want2, r)
    fetched = sorted(n for n, c in ch.count().items() if c > before.get(n, 0))
    t.check("the rebuilt package's archive was downloaded", set(differ) <= set(fetched),
            fetched)
    t.eq("ls shows both", t.hashes(store), sorted([want, want2]))
    t.verify_clean("verify exits 0", store)
    t.eq("no litter, tmp/ empty", lib.litter(store), [])

with t.section("a gc reaps the stored packages while an install downloads the one it lacks"):
    # The install has taken small's other packages from the store before it downloads the
    # rebuilt one; the store lock holds them only from its store phase on (gc.c G2).
    store = t.path("store-reaped")
    conf = t.path("gc-now.yml")
    with open(conf, "w") as f:
        f.write("gc:\n  unused_for: 0\n  grace: 0\n")
    r = install(store, lock)
    t.check("install small", r.rc == 0 and r.out.strip() == want, r)
    ch.stall(differ[0])
    p = subprocess.Popen(install_cmd(store, rebuild), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        t.check("the server sent half of the rebuilt package", ch.half_sent.wait(300))
        # Unused for 0 s: last used before this second (uses are counted in seconds).
        time.sleep(1.1)
        r = t.cfs(store, "--config", conf, "gc", "--unused-for", "0")
        t.ok("gc removes small and its objects meanwhile", r)
        t.eq("...and the store holds no environment", t.hashes(store), [])
    finally:
        ch.release()
    out, errs = p.communicate(timeout=600)
    said = [ln for ln in errs.splitlines() if ": warning: " not in ln]
    t.check("the install fails in one line: a content it took from the store is gone, "
            "install again", p.returncode == 1 and len(said) == 1 and
            "stored content is gone" in said[0] and "install again" in said[0], errs)
    t.eq("ls shows nothing", t.hashes(store), [])
    t.verify_clean("verify exits 0", store)
    t.eq("no litter, tmp/ empty", lib.litter(store), [])
    r = install(store, rebuild)
    t.check("installed again, from the channel, it prints its hash",
            r.rc == 0 and r.out.strip() == want2, r)
    t.verify_clean("verify exits 0 after", store)

t.finish()
