# SPDX-License-Identifier: MIT
"""Shared helpers for the condafs store integration and crash tests (suites integ, crash).

Each test script makes a Harness, which parses the paths meson passes (the condafs binary,
the corpus builder, where the shared corpus lives, the fixtures), runs condafs and checks
what it prints, compares an exported tree with its source under a reference relocation
written here from conda's rules, and ends with "N passed, N failed" (exit 1 on a failure).
The corpus is built once per checkout (both builds) and shared by every test (corpus()).
"""

import argparse
import collections
import contextlib
import fcntl
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import trees

CORPUS_ENVS = ("small", "sci", "torch", "small-rebuild", "kernel")
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
# Lines condafs prints on stderr that are not errors.
PROGRESS_RE = re.compile(r"^condafs: (ingest: \d+/\d+ files|install: \d+/\d+ packages), ")
WARNING_RE = re.compile(r"^condafs: \w+: warning: ")
# What a command says on stderr besides its output ("already stored", a platform taken).
NOTE_RE = re.compile(r"^condafs: \w+: note: ")
# What a command says while it works (store_set_notify): a lock it waits for, who holds one.
NOTICE_RE = re.compile(r"^condafs: \w+: (waiting for .* held by |\d+ removed environments? "
                       r"(is|are) still held )")
SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                          r"runtime error: |ThreadSanitizer")
HASH_RE = re.compile(r"^[0-9a-f]{32}$")

# meson sets MALLOC_PERTURB_ for every test, and glibc then fills every allocation: each
# big bytes object this harness (or a python it runs from an environment) makes is written
# twice over, which made store_roundtrip 20 times slower. The harness re-executes itself
# without it and gives it back to condafs and condafsd, whose memory it is meant to check.
if "MALLOC_PERTURB_" in os.environ:
    os.environ["CFS_MALLOC_PERTURB_"] = os.environ.pop("MALLOC_PERTURB_")
    os.execv(sys.executable, sys.orig_argv)


def ours(env):
    """env for running condafs or condafsd: with meson's MALLOC_PERTURB_ back."""
    if "CFS_MALLOC_PERTURB_" in os.environ:
        env["MALLOC_PERTURB_"] = os.environ["CFS_MALLOC_PERTURB_"]
    return env


def show(b, limit=300):
    """bytes or str for a message: printable, cut to limit."""
    if isinstance(b, bytes):
        b = b.decode("utf-8", "backslashreplace")
    b = b.replace("\n", "\\n") if "\n" in b.rstrip("\n") else b.rstrip("\n")
    return b if len(b) <= limit else b[:limit] + "..."


class Result:
    def __init__(self, args, rc, out, err, secs):
        self.args, self.rc, self.out, self.err, self.secs = args, rc, out, err, secs

    def errors(self):
        """stderr lines that are neither progress, warnings nor notes."""
        return [l for l in self.err.splitlines()
                if l and not PROGRESS_RE.match(l) and not WARNING_RE.match(l) and
                not NOTE_RE.match(l) and not NOTICE_RE.match(l)]

    def notes(self):
        return [l for l in self.err.splitlines() if NOTE_RE.match(l)]

    def warnings(self):
        return [l for l in self.err.splitlines() if WARNING_RE.match(l)]

    def __str__(self):
        return (f"$ {' '.join(show(a, 120) for a in self.args)}\n"
                f"     rc={self.rc} ({self.secs:.2f}s) stdout={show(self.out)!s}\n"
                f"     stderr={show(self.err, 600)}")


def ingest_said(r):
    """(exit code, stdout, what an ingest said on stderr besides its progress): stdout is
    the hash alone whatever happened; "already stored" and "replaced" are notes."""
    notes = r.notes()
    said = ("already stored" if any("was already stored" in n for n in notes) else
            "replaced" if any(" replaced " in n for n in notes) else None)
    return r.rc, r.out.strip(), said


class Harness:
    def __init__(self, title):
        ap = argparse.ArgumentParser()
        here = os.path.dirname(os.path.abspath(__file__))
        ap.add_argument("--condafs", default=os.environ.get("CONDAFS"))
        ap.add_argument("--mkcorpus", default=os.environ.get(
            "MKCORPUS", os.path.join(here, "..", "corpus", "mkcorpus")))
        ap.add_argument("--corpus-dir", default=os.environ.get("CORPUS_DIR"))
        ap.add_argument("--fixtures", default=os.environ.get(
            "FIXTURES", os.path.join(here, "..", "fixtures")))
        self.args = ap.parse_args()
        if not self.args.condafs:
            sys.exit("usage: --condafs PATH (or $CONDAFS) is required")
        self.condafs = os.path.abspath(self.args.condafs)
        self.fixtures = os.path.abspath(self.args.fixtures)
        self.passed = self.failed = 0
        self.t0 = time.monotonic()
        name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        self.tmp = tempfile.mkdtemp(prefix=f"cfs-{name}-")
        os.chmod(self.tmp, 0o755)   # tests that run condafs as nobody need to get in
        self._corpus = None
        print(f"# {title}", flush=True)

    # ---- reporting ----

    def check(self, what, ok, detail=None):
        if ok:
            self.passed += 1
            print(f"ok    {what}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {what}", flush=True)
            if detail is not None:
                for line in str(detail).splitlines():
                    print(f"      {line}", flush=True)
        return bool(ok)

    def eq(self, what, got, want, detail=None):
        ok = got == want
        d = f"got  {show(repr(got), 800)}\nwant {show(repr(want), 800)}"
        if detail is not None:
            d += f"\n{detail}"
        return self.check(what, ok, None if ok else d)

    @contextlib.contextmanager
    def section(self, name):
        """A group of checks; an unexpected exception inside is one failure, not the end."""
        print(f"## {name}", flush=True)
        t = time.monotonic()
        try:
            yield
        except Exception:
            self.failed += 1
            print(f"FAIL  {name}: unexpected exception", flush=True)
            for line in traceback.format_exc().splitlines():
                print(f"      {line}", flush=True)
        print(f"   ({name}: {time.monotonic() - t:.1f}s)", flush=True)

    def finish(self):
        if os.environ.get("CFS_KEEP_TMP"):
            print(f"# kept {self.tmp}")
        else:
            self.rmtree(self.tmp)
        print(f"# {time.monotonic() - self.t0:.1f}s")
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        sys.exit(1 if self.failed or not self.passed else 0)

    # ---- files ----

    def path(self, *parts):
        """A fresh path under this test's temporary directory."""
        return os.path.join(self.tmp, *parts)

    @staticmethod
    def rmtree(path):
        def onerror(fn, p, exc):
            # Modes like 000 on directories we made; root can fix them and retry.
            try:
                os.chmod(p, 0o700)
                fn(p)
            except OSError:
                pass
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, onerror=onerror)
            else:
                os.unlink(path)

    # ---- running condafs ----

    def run(self, args, env=None, user=None, timeout=600, input=None):
        cmd = (NOBODY if user == "nobody" else []) + [str(a) for a in args]
        e = ours(dict(os.environ))
        e.pop("CONDAFS_STORE", None)
        if env:
            e.update(env)
        if cmd[0] == "strace":
            # LeakSanitizer (on by default in an ASan build) cannot run under ptrace: it
            # would abort every traced run.
            e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
        t = time.monotonic()
        p = subprocess.run(cmd, env=e, capture_output=True, timeout=timeout, input=input)
        r = Result(cmd, p.returncode,
                   p.stdout.decode("utf-8", "surrogateescape"),
                   p.stderr.decode("utf-8", "surrogateescape"),
                   time.monotonic() - t)
        self.sane(r)
        return r

    def sane(self, r):
        """Every run: no crash, no sanitizer report. Counted only when broken."""
        if r.rc is not None and r.rc < 0 and r.rc != -9:
            self.check(f"condafs killed by signal {-r.rc}", False, r)
        if SANITIZER_RE.search(r.err):
            self.check("sanitizer report on stderr", False, r)

    def finish_proc(self, p):
        """Wait for a condafs started with subprocess.Popen (pipes): its Result, checked
        like every run."""
        out, err = p.communicate()
        r = Result(p.args, p.returncode, out.decode(errors="surrogateescape"),
                   err.decode(errors="surrogateescape"), 0)
        self.sane(r)
        return r

    def cfs(self, store, *args, **kw):
        pre = [self.condafs] + (["--store", store] if store else [])
        return self.run(pre + list(args), **kw)

    def ok(self, what, r):
        """Check that a command succeeded."""
        return self.check(what, r.rc == 0, None if r.rc == 0 else r)

    def fails_clearly(self, what, r, *needles):
        """A failed command: exit 1, exactly one error line on stderr, "condafs: " first,
        naming every needle (file names, reasons)."""
        errs = r.errors()
        ok = r.rc not in (0, None) and r.rc > 0 and len(errs) == 1 and \
            errs[0].startswith("condafs: ") and all(n in errs[0] for n in needles)
        missing = [n for n in needles if not errs or n not in errs[0]]
        return self.check(what, ok, None if ok else
                          f"{r}\n     want: exit != 0, one line naming {needles!r}; "
                          f"error lines={len(errs)}, missing={missing!r}")

    def ingest(self, store, prefix, *extra, **kw):
        return self.cfs(store, "ingest", prefix, *extra, **kw)

    def ls(self, store, **kw):
        r = self.cfs(store, "--json", "ls", **kw)
        if r.rc != 0:
            self.check("ls --json", False, r)
            return None
        return json.loads(r.out)

    def stats(self, store):
        r = self.cfs(store, "--json", "stats")
        if r.rc != 0:
            self.check("stats --json", False, r)
            return None
        return json.loads(r.out)

    def verify_clean(self, what, store, **kw):
        """condafs verify exits 0 and reports nothing missing or corrupt."""
        r = self.cfs(store, "--json", "verify", **kw)
        try:
            v = json.loads(r.out)
        except ValueError:
            v = None
        ok = r.rc == 0 and v is not None and v.get("corrupt") == 0 and \
            not [p for p in v["problems"] if p["problem"] != "unreferenced"]
        self.check(what, ok, None if ok else r)
        return v

    def hashes(self, store):
        v = self.ls(store)
        return None if v is None else sorted(e["hash"] for e in v)

    def export(self, store, env, dest, prefix=None):
        return self.cfs(store, "export", env, dest, *(["--prefix", prefix] if prefix else []))

    # ---- the shared corpus ----

    def corpus(self):
        """The manifest of the shared corpus, building it on first use (under a lock, so
        parallel tests build it once), keyed by a hash of the builder's sources."""
        if self._corpus:
            return self._corpus
        script = os.path.abspath(self.args.mkcorpus)
        if not os.path.isfile(script):
            raise RuntimeError(f"{script}: the corpus builder is missing")
        h = hashlib.sha256()
        srcdir = os.path.dirname(script)
        for fn in sorted(os.listdir(srcdir)):
            if fn == "mkcorpus" or fn.endswith((".c", ".h", ".py")):
                h.update(fn.encode() + b"\0")
                with open(os.path.join(srcdir, fn), "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
        key = h.hexdigest()[:12]
        base = self.corpus_base()
        os.makedirs(base, exist_ok=True)
        out = os.path.join(base, key)
        done = os.path.join(out, ".built")
        # base/.lock serialises building and cleaning; base/<key>.inuse is held shared by
        # every test using corpus <key>, so a corpus is removed only when nobody uses it
        # (the builder may change while tests run).
        with open(os.path.join(base, ".lock"), "w") as lock:
            t = time.monotonic()
            fcntl.flock(lock, fcntl.LOCK_EX)
            waited = time.monotonic() - t
            if not os.path.exists(done):
                self.clean_corpora(base, key)
                self.rmtree(out)
                t = time.monotonic()
                print(f"# building the corpus in {out} ...", flush=True)
                p = subprocess.run([sys.executable, script, out, "-q",
                                    "--envs", ",".join(CORPUS_ENVS)],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    raise RuntimeError(f"mkcorpus failed (exit {p.returncode}): "
                                       f"{p.stderr.strip()[-2000:]}")
                with open(done, "w") as f:
                    f.write(key + "\n")
                print(f"# corpus built in {time.monotonic() - t:.1f}s", flush=True)
            elif waited > 1:
                print(f"# waited {waited:.1f}s for the corpus", flush=True)
            self._inuse = open(os.path.join(base, key + ".inuse"), "a")
            fcntl.flock(self._inuse, fcntl.LOCK_SH)
        with open(os.path.join(out, "manifest.json")) as f:
            self._corpus = json.load(f)
        return self._corpus

    def clean_corpora(self, base, key):
        """Remove corpora of other builder versions that no test is using."""
        for n in os.listdir(base):
            old = n[:-len(".inuse")] if n.endswith(".inuse") else n
            if n == ".lock" or old == key or not os.path.exists(os.path.join(base, n)):
                continue
            with open(os.path.join(base, old + ".inuse"), "a") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue
                self.rmtree(os.path.join(base, old))
                os.unlink(os.path.join(base, old + ".inuse"))

    def corpus_base(self):
        """--corpus-dir, unless it is inside a git work tree (mkcorpus refuses those):
        then a directory outside it, named after the build directory."""
        d = os.path.abspath(self.args.corpus_dir or os.path.join(self.tmp, "..", "cfs-corpus"))
        p = d
        while p != "/":
            if os.path.exists(os.path.join(p, ".git")):
                tag = hashlib.sha256(d.encode()).hexdigest()[:8]
                return os.path.join(os.environ.get("TMPDIR", "/var/tmp"), f"condafs-corpus-{tag}")
            p = os.path.dirname(p)
        return d

    def env(self, name):
        return self.corpus()["envs"][name]


# ---- hand-made prefixes ----

STORE_FILE = re.compile(r"^(FORMAT|lock|holds|catalog\.db(-wal|-shm|-journal)?|tmp|objects|"
                        r"objects/[0-9a-f]{2}|objects/[0-9a-f]{2}/[0-9a-f]{30}|"
                        r"mounts|mounts/\d+\.[0-9a-f]{16})$")


def litter(store, tmp_ok=False):
    """Paths in the store that are neither the catalog nor an object (nor, with tmp_ok,
    under tmp/: a killed ingest's temporary directory, for the next ingest to clean)."""
    out = []
    for d, dirs, files in os.walk(store):
        for n in dirs + files:
            rel = os.path.relpath(os.path.join(d, n), store)
            if not STORE_FILE.match(rel) and not (tmp_ok and rel.startswith("tmp/")):
                out.append(rel)
    return out


def make_prefix(path, pkgs=(("demo", "1.0", "h0_0"),), files=None, history=True):
    """A minimal solved prefix: conda-meta/history and one record per (name, version,
    build[, paths_data entries]). files: {relpath: bytes} written with parents."""
    os.makedirs(os.path.join(path, "conda-meta"), exist_ok=True)
    if history:
        with open(os.path.join(path, "conda-meta", "history"), "w") as f:
            f.write("==> 2024-01-01 00:00:00 <==\n# cmd: conda create\n+conda-forge/linux-64::"
                    + "\n+conda-forge/linux-64::".join(f"{p[0]}-{p[1]}-{p[2]}" for p in pkgs)
                    + "\n")
    for p in pkgs:
        name, version, build = p[:3]
        paths = p[3] if len(p) > 3 else []
        fn = f"{name}-{version}-{build}"
        rec = {
            "name": name, "version": version, "build": build, "build_number": 0,
            "subdir": "linux-64", "channel": "https://channel.example.invalid/conda-forge/linux-64",
            "url": f"https://channel.example.invalid/conda-forge/linux-64/{fn}.tar.bz2",
            "fn": f"{fn}.tar.bz2",
            "md5": hashlib.md5(fn.encode()).hexdigest(),
            "sha256": hashlib.sha256(fn.encode()).hexdigest(),
            "files": [e["_path"] for e in paths],
            "paths_data": {"paths_version": 1, "paths": paths},
            "requested_spec": "None",
        }
        with open(os.path.join(path, "conda-meta", fn + ".json"), "w") as f:
            json.dump(rec, f, indent=1)
    for rel, data in (files or {}).items():
        write(os.path.join(path, rel), data)
    return os.path.realpath(path)


def flip(path, off):
    """Corrupt one byte of a file in place."""
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x5a]))


def write(path, data, mode=None, mtime_ns=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    if mode is not None:
        os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def explicit_lock(pkgs, platform="linux-64"):
    """`conda list --explicit --md5` text for make_prefix's packages."""
    lines = [f"# platform: {platform}", "@EXPLICIT"]
    for p in pkgs:
        fn = f"{p[0]}-{p[1]}-{p[2]}"
        lines.append(f"https://channel.example.invalid/conda-forge/{platform}/{fn}.tar.bz2"
                     f"#{hashlib.md5(fn.encode()).hexdigest()}")
    return "\n".join(lines) + "\n"


# ---- conda's relocation, the reference the export is compared with ----

NEVER_RELOCATED = (b".pyc", b".pyo", b".whl", b".zip", b".egg", b".jar")


class SlotTooShort(Exception):
    pass


def placeholders(prefix):
    """{relpath bytes: (file_mode, placeholder length)} from conda-meta paths_data, with
    noarch-python site-packages/ paths mapped to where files[] says they went."""
    out = {}
    cm = os.path.join(prefix, "conda-meta")
    for fn in sorted(os.listdir(cm)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(cm, fn), "rb") as f:
            rec = json.loads(f.read())
        pydir = None
        for f_ in rec.get("files") or []:
            m = re.match(r"(lib/python[^/]*/)site-packages/", f_)
            if m:
                pydir = m.group(1)
                break
        for e in ((rec.get("paths_data") or {}).get("paths") or []):
            ph = e.get("prefix_placeholder")
            if not ph:
                continue
            p = e["_path"]
            if p.startswith("site-packages/") and pydir:
                p = pydir + p
            mode = "binary" if e.get("file_mode") == "binary" else "text"
            out.setdefault(p.encode("utf-8", "surrogateescape"), (mode, len(ph)))
    return out


def reloc_mode(rel, data, meta):
    """None (never rewritten), "text" or "binary", and the placeholder length (0: none)."""
    if rel.lower().endswith(NEVER_RELOCATED) or data[:4] == b"PK\x03\x04":
        return None, 0
    if meta and rel in meta:
        return meta[rel]
    return ("binary" if b"\0" in data else "text"), 0


def relocate(data, old, new, mode, placeholder_len=0):
    """conda's replacement of old by new. Binary: in each NUL-terminated string holding old,
    every occurrence replaced, the size kept by taking or giving NULs after the string;
    SlotTooShort if the string's NUL run (keeping one), or the placeholder, cannot hold new."""
    if mode is None or old == new or old not in data:
        return data
    if mode == "text":
        return data.replace(old, new)
    if placeholder_len >= len(old) and len(new) > placeholder_len:
        raise SlotTooShort(f"{len(new)} > placeholder {placeholder_len}")
    out = bytearray()
    pos = 0
    pat = re.compile(re.escape(old) + rb"[^\0]*\0", re.S)
    while True:
        m = pat.search(data, pos)
        if not m:
            break
        h, t = m.start(), m.end() - 1           # t: the terminating NUL
        u = t
        while u < len(data) and data[u] == 0:
            u += 1
        s = data[h:t].replace(old, new)
        nuls = (u - h) - len(s)
        if nuls < 1:
            raise SlotTooShort(f"string at {h}: {len(s)} bytes in a slot of {u - h - 1}")
        out += data[pos:h] + s + b"\0" * nuls
        pos = u
    out += data[pos:]
    assert len(out) == len(data)
    return bytes(out)


def relink(target, old, new):
    """An absolute symlink into the prefix follows it; anything else is kept."""
    if target == old or target.startswith(old + b"/"):
        return new + target[len(old):]
    return target


# ---- trees ----

def _ftype(m):
    return "dir" if stat.S_ISDIR(m) else "file" if stat.S_ISREG(m) else \
        "symlink" if stat.S_ISLNK(m) else "special"


def read_at(dfd, name):
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
    try:
        chunks = []
        want = os.fstat(fd).st_size + 1
        while True:
            b = os.read(fd, min(want, 1 << 24))
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def compare_trees(src, dst, old=None, new=None, meta=None, skip=(), sparse_ok=True,
                  content=True, dir_mtimes=True, ignore=(), mtime_ok=None, links=True,
                  extra=()):
    """Differences between the source prefix src and the export dst, where dst should be
    src with the prefix old replaced by new: names, types, modes (setuid/setgid/sticky
    stripped), mtimes in ns, sizes, bytes (reference relocation), symlink targets, hard
    links (one inode in dst per inode in src), for every path including the top. Works on
    directory fds, so paths may be longer than PATH_MAX. dir_mtimes=False: directories' mtimes
    are not compared. ignore: paths that must be in both, nothing else compared; mtime_ok(rel,
    src_ns, dst_ns): True accepts a documented mtime difference. links=False: hard links are
    not compared (a mount gives a content shared across environments one inode); extra:
    paths the export may hold beyond src. Returns (problems, counts)."""
    old = os.fsencode(old) if old is not None else None
    new = os.fsencode(new) if new is not None else None
    if meta is None and old is not None and os.path.isdir(os.path.join(src, "conda-meta")):
        meta = placeholders(src)
    problems, counts = [], {"files": 0, "dirs": 0, "symlinks": 0, "relocated": 0, "bytes": 0,
                            "relocated_paths": []}
    src_inodes, dst_inodes = {}, {}

    def bad(rel, msg):
        problems.append(f"{show(rel or b'.', 200)}: {msg}")

    def attrs(rel, s, d):
        if _ftype(s.st_mode) != _ftype(d.st_mode):
            bad(rel, f"type {_ftype(d.st_mode)}, source {_ftype(s.st_mode)}")
            return False
        want = stat.S_IMODE(s.st_mode)
        if want & 0o7000:
            want &= 0o777
        if not stat.S_ISLNK(s.st_mode) and stat.S_IMODE(d.st_mode) != want:
            bad(rel, f"mode {stat.S_IMODE(d.st_mode):o}, want {want:o}")
        if d.st_mtime_ns != s.st_mtime_ns and (dir_mtimes or not stat.S_ISDIR(s.st_mode)) \
                and not (mtime_ok and mtime_ok(rel, s.st_mtime_ns, d.st_mtime_ns)):
            bad(rel, f"mtime_ns {d.st_mtime_ns}, source {s.st_mtime_ns}")
        return True

    def walk(sfd, dfd, rel):
        snames = sorted(os.fsencode(n) for n in os.listdir(sfd))
        dnames = set(os.fsencode(n) for n in os.listdir(dfd))
        for n in snames:
            r = rel + b"/" + n if rel else n
            if r in skip:
                if n in dnames:
                    bad(r, "exported, but it should have been skipped")
                dnames.discard(n)
                continue
            if n not in dnames:
                bad(r, "missing from the export")
                continue
            dnames.discard(n)
            if r in ignore:
                continue
            s = os.stat(n, dir_fd=sfd, follow_symlinks=False)
            d = os.stat(n, dir_fd=dfd, follow_symlinks=False)
            if not attrs(r, s, d):
                continue
            if stat.S_ISDIR(s.st_mode):
                counts["dirs"] += 1
                a = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=sfd)
                b = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    walk(a, b, r)
                finally:
                    os.close(a)
                    os.close(b)
            elif stat.S_ISLNK(s.st_mode):
                counts["symlinks"] += 1
                st_, dt = os.readlink(n, dir_fd=sfd), os.readlink(n, dir_fd=dfd)
                st_, dt = os.fsencode(st_), os.fsencode(dt)
                want = relink(st_, old, new) if old is not None else st_
                if dt != want:
                    bad(r, f"symlink -> {show(dt)}, want {show(want)}")
            elif stat.S_ISREG(s.st_mode):
                counts["files"] += 1
                counts["bytes"] += s.st_size
                src_inodes.setdefault((s.st_dev, s.st_ino), []).append(r)
                dst_inodes[r] = (d.st_dev, d.st_ino, d.st_nlink)
                if s.st_blocks * 512 < s.st_size and d.st_blocks * 512 > s.st_blocks * 512 + \
                        (1 << 20) and sparse_ok:
                    bad(r, f"sparse source ({s.st_blocks * 512} bytes allocated) exported "
                        f"with {d.st_blocks * 512} bytes allocated")
                if not content:
                    if d.st_size != s.st_size:
                        bad(r, f"size {d.st_size}, source {s.st_size}")
                    continue
                data = read_at(sfd, n)
                mode, phlen = reloc_mode(r, data, meta)
                try:
                    want = relocate(data, old, new, mode, phlen) if old is not None else data
                except SlotTooShort as e:
                    bad(r, f"the reference relocation does not fit: {e}")
                    continue
                if want != data:
                    counts["relocated"] += 1
                    counts["relocated_paths"].append(r)
                if d.st_size != len(want):
                    bad(r, f"size {d.st_size}, want {len(want)}")
                got = read_at(dfd, n)
                if got != want:
                    i = next((k for k in range(min(len(got), len(want)))
                              if got[k] != want[k]), min(len(got), len(want)))
                    bad(r, f"content differs at byte {i} ({mode or 'not relocated'}): "
                        f"got {show(got[max(0, i - 20):i + 40], 120)!r}, "
                        f"want {show(want[max(0, i - 20):i + 40], 120)!r}")
            else:
                bad(r, "special file in the source")
        for n in sorted(dnames):
            if (rel + b"/" + n if rel else n) not in extra:
                bad(rel + b"/" + n if rel else n, "only in the export")

    a = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    b = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attrs(b"", os.fstat(a), os.fstat(b))
        walk(a, b, b"")
    finally:
        os.close(a)
        os.close(b)
    # Hard links: the paths of one source inode share one export inode, and only they.
    owner = {}
    for paths in src_inodes.values() if links else ():
        ino = {dst_inodes[p][:2] for p in paths if p in dst_inodes}
        if len(ino) > 1:
            bad(paths[0], f"hard links {[show(p) for p in paths]} are {len(ino)} inodes in "
                "the export")
        for p in paths:
            if p in dst_inodes:
                if dst_inodes[p][2] != len(paths):
                    bad(p, f"nlink {dst_inodes[p][2]} in the export, {len(paths)} paths "
                        "in the source")
                k = dst_inodes[p][:2]
                if owner.setdefault(k, paths[0]) != paths[0]:
                    bad(p, f"shares an inode with {show(owner[k])} in the export only")
    return problems, counts


def report_tree(t, what, problems, counts=None):
    detail = "\n".join(problems[:25]) + (f"\n... {len(problems) - 25} more"
                                         if len(problems) > 25 else "")
    extra = f" ({counts['files']} files, {counts['dirs']} dirs, {counts['symlinks']} " \
            f"symlinks, {counts['relocated']} relocated)" if counts else ""
    return t.check(what + extra, not problems, detail if problems else None)


# ---- the catalog, read directly (only to find and damage objects) ----

def catalog_nodes(store, env_hash):
    """{relpath bytes: row dict} of one environment, from catalog.db."""
    db = sqlite3.connect(f"file:{os.path.join(store, 'catalog.db')}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        env = db.execute("SELECT id FROM envs WHERE hash = ? ORDER BY removed LIMIT 1",
                         (env_hash,)).fetchone()
        rows = trees.env_rows(db, store, env["id"])
    finally:
        db.close()
    paths = {}

    def path_of(i):
        if i in paths:
            return paths[i]
        r = rows[i]
        if r["parent"] == 0:
            p = b""
        else:
            pp = path_of(r["parent"])
            name = r["name"] if isinstance(r["name"], bytes) else r["name"].encode()
            p = pp + b"/" + name if pp else name
        paths[i] = p
        return p
    return {path_of(i): r for i, r in rows.items()}


def catalog_object(store, obj_id):
    db = sqlite3.connect(f"file:{os.path.join(store, 'catalog.db')}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        r = db.execute("SELECT * FROM objects WHERE id = ?", (obj_id,)).fetchone()
        return dict(r) if r else None
    finally:
        db.close()


def object_file(store, key):
    h = key.hex()
    return os.path.join(store, "objects", h[:2], h[2:])


# ---- the catalog, written directly (to age environments for gc) ----

V3_NODES = ("CREATE TABLE nodes(id INTEGER PRIMARY KEY, env INTEGER NOT NULL,"
            " parent INTEGER NOT NULL, name BLOB NOT NULL, type INTEGER NOT NULL,"
            " mode INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,"
            " inserts INTEGER NOT NULL, obj INTEGER, grp INTEGER, hardlink INTEGER,"
            " first_child INTEGER, nchildren INTEGER, target BLOB, reloc BLOB);"
            "CREATE UNIQUE INDEX nodes_lookup ON nodes(parent, name) WHERE parent > 0;"
            "CREATE INDEX nodes_obj ON nodes(obj); CREATE INDEX nodes_grp ON nodes(grp)")


def tree_images(db):
    """{key: objects row id} of every tree image (objects.kind 2) db names."""
    return {bytes(k): i for i, k in db.execute("SELECT id, key FROM objects WHERE kind = ?",
                                               (trees.OBJECT_TREE,))}


def _drop_tree_images(store, keys):
    for k in keys:
        p = object_file(store, k)
        if os.path.exists(p):
            os.unlink(p)


def catalog_to_v3(store):
    """Make store's catalog what condafs's catalog version 3 wrote: a row per node in
    nodes (from the tree images, whose rows and files go), no objects.owner (catalog.c C7),
    no groups.nlink (C8), no envs_root."""
    db = sqlite3.connect(os.path.join(store, "catalog.db"))
    try:
        with db:
            rows = [r for (env,) in db.execute("SELECT id FROM envs").fetchall()
                    for r in trees.env_rows(db, store, env).values()]
            images = tree_images(db)
            db.executescript(V3_NODES)
            for r in rows:
                db.execute("INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                           " ?, ?, ?)", (r["id"], r["env"], r["parent"], r["name"],
                                         r["type"], r["mode"], r["mtime_ns"], r["size"],
                                         r["inserts"], r["obj"], r["grp"], r["hardlink"],
                                         r["first_child"] if r["type"] == trees.DIR
                                         else None,
                                         r["nchildren"] if r["type"] == trees.DIR
                                         else None, r["target"], r["reloc"]))
            db.execute("DELETE FROM objects WHERE kind = ?", (trees.OBJECT_TREE,))
            db.executescript("DROP INDEX objects_owned; DROP INDEX envs_root;"
                             "ALTER TABLE envs DROP COLUMN nodes;"
                             "ALTER TABLE envs DROP COLUMN tree;"
                             "ALTER TABLE objects DROP COLUMN owner;"
                             "ALTER TABLE objects DROP COLUMN esum;"
                             "ALTER TABLE objects DROP COLUMN esq;"
                             "ALTER TABLE groups DROP COLUMN nlink;"
                             "ALTER TABLE groups DROP COLUMN refs;"
                             "UPDATE meta SET value = '3' WHERE key = 'catalog_version'")
    finally:
        db.close()
    _drop_tree_images(store, images)


# Catalog version 6's trees table (store/catalog.c before version 7).
V6_TREES = ("CREATE TABLE IF NOT EXISTS trees(id INTEGER PRIMARY KEY, key BLOB NOT NULL,"
            " kind INTEGER NOT NULL, refs INTEGER NOT NULL, data BLOB NOT NULL,"
            " UNIQUE(key, kind))")
V6_DIR, V6_INDEX, V6_RELOC = 0, 1, 2     # trees.kind


def catalog_to_v6(store):
    """Make store's catalog what condafs's catalog version 6 wrote: each environment's tree
    as rows of the trees table (a directory object, an index, a relocation record kept
    apart: key, kind, refs, data: a zstd frame of the bytes, a record as it is), counted as
    catalog_tree_count.c's T4 said (a directory: the entries of indexes naming it; an index:
    the environments naming it; a record: the entries of stored directory objects naming
    it), envs.tree the index's key; the tree images' rows and files go."""
    db = sqlite3.connect(os.path.join(store, "catalog.db"))
    try:
        with db:
            rows = {}      # (key, kind): [refs, bytes]

            def name(key, kind, data):
                rows.setdefault((key, kind), [0, data])[0] += 1
            envs = []
            for (env,) in db.execute("SELECT id FROM envs").fetchall():
                x, dirs, recs = trees.env_tree(db, store, env)
                index = trees.encode_index(x)
                name(trees.key_of(index), V6_INDEX, index)
                envs.append((trees.key_of(index), env))
                for d in x["dirs"]:
                    name(d["key"], V6_DIR, dirs[d["key"]])
                for k, data in recs.items():
                    rows.setdefault((k, V6_RELOC), [0, data])
            for (key, kind), (_, data) in list(rows.items()):
                if kind == V6_DIR:
                    for e in trees.decode_dir(data):
                        if e.get("reloc_key"):
                            rows[(e["reloc_key"], V6_RELOC)][0] += 1
            images = tree_images(db)
            db.executescript(V6_TREES)
            for (key, kind), (refs, data) in sorted(rows.items(), key=lambda kv: kv[0][::-1]):
                db.execute("INSERT INTO trees(key, kind, refs, data) VALUES (?, ?, ?, ?)",
                           (key, kind, refs,
                            data if kind == V6_RELOC else trees._compress(data)))
            db.executemany("UPDATE envs SET tree = ? WHERE id = ?", envs)
            db.execute("DELETE FROM objects WHERE kind = ?", (trees.OBJECT_TREE,))
            db.execute("UPDATE meta SET value = '6' WHERE key = 'catalog_version'")
    finally:
        db.close()
    _drop_tree_images(store, images)


def all_rows(store, live_only=False):
    """Every node of every environment (live only, or removed ones too), as rows of the
    former nodes table (trees.env_rows), read from their tree images."""
    db = sqlite3.connect(f"file:{os.path.join(store, 'catalog.db')}?mode=ro", uri=True,
                         timeout=60)
    try:
        out = []
        for (env, removed) in db.execute("SELECT id, removed FROM envs").fetchall():
            if not (live_only and removed):
                out.extend(trees.env_rows(db, store, env).values())
        return out
    finally:
        db.close()


def catalog_version(store):
    db = sqlite3.connect(f"file:{os.path.join(store, 'catalog.db')}?mode=ro", uri=True)
    try:
        r = db.execute("SELECT value FROM meta WHERE key = 'catalog_version'").fetchone()
        return r[0] if r else None
    finally:
        db.close()


def set_last_used(store, env_hash, when):
    """Make a live environment look last used at when (seconds since the epoch), as if
    nothing had read it since: gc decides on envs.last_used alone."""
    db = sqlite3.connect(os.path.join(store, "catalog.db"), timeout=60)
    try:
        with db:
            n = db.execute("UPDATE envs SET last_used = ? WHERE hash = ? AND removed = 0",
                           (int(when), env_hash)).rowcount
    finally:
        db.close()
    if n != 1:
        raise RuntimeError(f"{env_hash}: {n} live environments with this hash in {store}")


def catalog_rows(store, sql, args=()):
    db = sqlite3.connect(f"file:{os.path.join(store, 'catalog.db')}?mode=ro", uri=True,
                         timeout=60)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def refs_wrong(store):
    """Objects whose reference count is not what catalog.c C2 says (the files of every
    environment's tree naming them, plus a pack's members; for a tree image, the
    environments, live or removed, naming it by envs.tree): [(id, refs, want)]."""
    named = collections.Counter(r["obj"] for r in all_rows(store) if r["obj"])
    rows = catalog_rows(store, "SELECT o.id, o.refs, (SELECT count(*) FROM objects m"
                        " WHERE m.pack = o.id) + (SELECT count(*) FROM envs e"
                        " WHERE e.tree = o.key) FROM objects o")
    return [(i, refs, named[i] + m) for i, refs, m in rows if refs != named[i] + m]


def nlink_wrong(store):
    """Groups of shared files whose link count is not what catalog.c C8 says (their files
    in live environments): [(id, nlink, want)]."""
    named = collections.Counter(r["grp"] for r in all_rows(store, True) if r["grp"])
    return [(i, n, named[i]) for i, n in catalog_rows(store, "SELECT id, nlink FROM groups")
            if n != named[i]]


def env_images(store, env_hash=None, env_id=None):
    """The object image files (paths under the store) an environment needs: its tree image,
    and each of its files' own image or the pack it lives in."""
    if env_id is None:
        (env_id,), = catalog_rows(store, "SELECT id FROM envs WHERE hash = ? AND removed = 0",
                                  (env_hash,))
    db = sqlite3.connect(f"file:{os.path.join(store, 'catalog.db')}?mode=ro", uri=True,
                         timeout=60)
    try:
        (tree,), = db.execute("SELECT tree FROM envs WHERE id = ?", (env_id,))
        out = {object_file(store, bytes(tree))}
        for r in trees.env_rows(db, store, env_id).values():
            if r["obj"]:
                (k,), = db.execute("SELECT coalesce(p.key, o.key) FROM objects o LEFT JOIN"
                                   " objects p ON p.id = o.pack WHERE o.id = ?", (r["obj"],))
                out.add(object_file(store, bytes(k)))
        return out
    finally:
        db.close()


def env_tree_key(store, env_hash):
    """The key of a live environment's tree image (envs.tree)."""
    (k,), = catalog_rows(store, "SELECT tree FROM envs WHERE hash = ? AND removed = 0",
                         (env_hash,))
    return bytes(k)


def image_files(store):
    """{path: bytes allocated} of every file under objects/."""
    out = {}
    for d, _, fs in os.walk(os.path.join(store, "objects")):
        for f in fs:
            p = os.path.join(d, f)
            out[p] = os.lstat(p).st_blocks * 512
    return out


def lstat_tree(root):
    """{relative path: lstat} of everything under root."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def same_bytes(a, b):
    """Files a and b hold the same bytes (one inode does)."""
    sa, sb = os.stat(a), os.stat(b)
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if sa.st_size != sb.st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


class Channel:
    """A conda channel directory served over HTTP on 127.0.0.1, for --channel-mirror
    url=<it>. Counts the GETs of each file, keeps their order, can stall one response
    half-way (stall()) until release(), and hold the next n requests until all n came
    (hold())."""

    def __init__(self, directory, url):
        self.url = url
        self.gets = {}
        self.order = []
        self.gate, self.gate_left = None, 0
        self.lock = threading.Lock()
        self.stall_name = None
        self.half_sent = threading.Event()
        self.released = threading.Event()
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                name = os.path.basename(self.path)
                with outer.lock:
                    outer.gets[name] = outer.gets.get(name, 0) + 1
                    outer.order.append(name)
                    stall = name == outer.stall_name
                    if stall:
                        outer.stall_name = None
                    gate = outer.gate if outer.gate_left > 0 else None
                    if gate:
                        outer.gate_left -= 1
                if gate:
                    try:
                        gate.wait(60)
                    except threading.BrokenBarrierError:
                        pass
                if stall:
                    self.send_half()
                else:
                    super().do_GET()

            def send_half(self):
                with open(self.translate_path(self.path), "rb") as f:
                    data = f.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                outer.half_sent.set()
                # The rest never comes: the client is killed meanwhile.
                outer.released.wait(600)
                self.close_connection = True

        h = functools.partial(Handler, directory=directory)
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def mirror(self):
        return f"{self.url}=http://127.0.0.1:{self.port}"

    def stall(self, name):
        """The next GET of file name sends half of it, then blocks until release()."""
        self.half_sent.clear()
        self.released.clear()
        with self.lock:
            self.stall_name = name

    def release(self):
        self.released.set()

    def hold(self, n):
        """The next n GETs are answered only once all n have come (or after 60 s)."""
        with self.lock:
            self.gate, self.gate_left = threading.Barrier(n), n

    def requested(self):
        """The file names GET so far, in the order the requests came."""
        with self.lock:
            return list(self.order)

    def count(self):
        """{file name: GETs so far}."""
        with self.lock:
            return dict(self.gets)

    def total(self):
        with self.lock:
            return sum(self.gets.values())


def _reading_stdin(pid):
    """The process is blocked in read(0, ...) (/proc/PID/syscall: number, then arguments)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[:2] == ["0", "0x0"]
    except OSError:
        return False


def start_together(cmds):
    """Processes released at one moment: each waits in a shell for a line on its stdin, then
    execs its command, so their start-up does not spread them out. The line goes once every
    shell is blocked reading it. Returns the Popens (stdout and stderr piped)."""
    ps = [subprocess.Popen(["/bin/sh", "-c", 'read x; exec "$@"', "sh", *c],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE) for c in cmds]
    deadline = time.monotonic() + 30
    while not all(_reading_stdin(p.pid) for p in ps) and time.monotonic() < deadline:
        time.sleep(0.001)
    for p in ps:
        p.stdin.write(b"\n")
        p.stdin.flush()
    for p in ps:
        p.stdin.close()
        p.stdin = None
    return ps
