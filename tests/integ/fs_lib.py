# SPDX-License-Identifier: MIT
"""Shared by the condafsd integration tests (tests/integ/fs_*.py), on top of lib.py's
Harness: running condafsd in the foreground and always unmounting it (also when a test
fails or meson's timeout sends SIGTERM), a store with every corpus environment ingested
once per build directory (under a lock, like the corpus), and comparing a mounted
environment with `condafs export ENV DIR --prefix MOUNTPOINT/<hash> --frozen`."""

import atexit
import fcntl
import hashlib
import json
import os
import signal
import stat
import re
import subprocess
import time

import lib

CONDAFSD = os.environ.get("CONDAFSD")
FUSE_TYPE = "fuse.condafs"
# What condafsd sets the mount's readahead to (KiB) when not told (fs/main.c).
DEFAULT_READAHEAD_KB = 2048

_daemons = []


def _cleanup():
    for d in list(_daemons):
        d.stop(quiet=True)


def _on_term(signum, frame):
    # meson's timeout: unmount on the way out (atexit runs on SystemExit).
    raise SystemExit(f"signal {signum}")


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, _on_term)


def errno_of(fn):
    """The errno fn() fails with, 0 when it does not."""
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno


def wait_for(cond, timeout=10):
    """Seconds until cond() held, or None when it did not within timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


def mounts(path):
    """[(mount id, file system type)] of the mounts at path, bottom to top."""
    path = os.path.abspath(path)
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            pre, _, post = line.partition(b" - ")
            fields = pre.split(b" ")
            mnt = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
            if os.fsdecode(mnt) == path:
                out.append((int(fields[0]), post.split(b" ")[0].decode()))
    return out


def answers(path):
    """The daemon at path answers (statfs always reaches it; stat may be cached)."""
    try:
        os.statvfs(path)
        return True
    except OSError:
        return False


def mounted(path):
    """The file system type mounted at path (the top one), or None."""
    m = mounts(path)
    return m[-1][1] if m else None


class Daemon:
    """condafsd -f on store at mnt. A context manager: always unmounted on exit."""

    def __init__(self, t, store, mnt, args=(), env=None):
        self.t, self.store, self.mnt, self.args = t, store, os.path.realpath(mnt), list(args)
        self.env = env
        self.proc = None
        self.logpath = None
        try:
            os.makedirs(self.mnt)
        except FileExistsError:
            pass  # also a dead mount (ENOTCONN): condafsd is to deal with it

    def start(self, timeout=20, wait=True):
        """Start condafsd; with wait, return once it is mounted and answers."""
        if not CONDAFSD:
            raise RuntimeError("$CONDAFSD is not set")
        self.logpath = self.t.path(
            f"condafsd-{os.path.basename(self.mnt)}-{time.monotonic_ns()}.log")
        e = lib.ours(dict(os.environ))
        e.pop("CONDAFS_STORE", None)
        if self.env:
            e.update(self.env)
        log = open(self.logpath, "wb")
        self.proc = subprocess.Popen([CONDAFSD, "--store", self.store, "-f"] + self.args +
                                     [self.mnt], stdout=log, stderr=subprocess.STDOUT, env=e)
        log.close()
        _daemons.append(self)
        if not wait:
            return self
        t0 = time.monotonic()
        # Answering, then mounted: a dead mount left by a killed daemon is mounted too, but
        # gives ENOTCONN (mount ids are reused, so they cannot tell the two apart). In the
        # other order the daemon could clear the dead mount between the two checks, and the
        # bare directory beneath would answer for a mount that is not there yet.
        while not answers(self.mnt) or mounted(self.mnt) != FUSE_TYPE:
            if self.proc.poll() is not None:
                raise RuntimeError(f"condafsd exited with {self.proc.returncode} before "
                                   f"mounting: {self.log()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"condafsd did not mount {self.mnt} in {timeout}s")
            time.sleep(0.02)
        return self

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "backslashreplace")
        except (OSError, TypeError):
            return ""

    def stop(self, quiet=False, timeout=20):
        """Unmount as a user would (fusermount3 -u): the daemon must then exit 0.
        Returns the daemon's exit code."""
        if self not in _daemons:
            return self.proc.returncode if self.proc else None
        _daemons.remove(self)
        if self.proc.poll() is None and mounted(self.mnt) == FUSE_TYPE:
            subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # Whatever happened, leave nothing mounted.
        while mounted(self.mnt) == FUSE_TYPE:
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        if not quiet:
            self.t.sane_daemon(self)
        return self.proc.returncode

    def kill9(self):
        """The daemon dies; its dead mount stays (until cleared, or this test exits)."""
        self.proc.kill()
        self.proc.wait()

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(quiet=exc[0] is not None)


class FsHarness(lib.Harness):
    def daemon(self, store, mnt=None, args=(), env=None):
        return Daemon(self, store, mnt or self.path("mnt"), args, env)

    def sane_daemon(self, d):
        """After a daemon stopped: exit 0, no sanitizer report, nothing unexpected logged."""
        log = d.log()
        self.check(f"condafsd exited cleanly (rc {d.proc.returncode})",
                   d.proc.returncode == 0, None if d.proc.returncode == 0 else log[-3000:])
        if lib.SANITIZER_RE.search(log):
            self.check("no sanitizer report from condafsd", False, log[-6000:])

    def ingest_hash(self, store, prefix):
        r = self.ingest(store, prefix)
        if r.rc != 0:
            raise RuntimeError(f"ingest {prefix} failed: {r}")
        return r.out.split()[0]

    def base_store(self):
        """A store holding every corpus environment, shared by the tests of this build
        directory (rebuilt when the corpus or condafs changes). Returns (store,
        {env name: hash}). Read-only for the tests: the ones that change a store make
        their own."""
        manifest = self.corpus()
        key = hashlib.sha256()
        with open(self.condafs, "rb") as f:
            key.update(hashlib.sha256(f.read()).digest())
        for name in sorted(manifest["envs"]):
            key.update(name.encode() + b"\0" + manifest["envs"][name]["prefix"].encode() +
                       b"\0" + manifest["envs"][name]["identity_text_sha256"].encode())
        key = key.hexdigest()[:16]
        base = os.path.join(os.path.dirname(self.condafs), "..", "fs-tests")
        base = os.path.realpath(base)
        os.makedirs(base, exist_ok=True)
        store = os.path.join(base, "store-" + key)
        stamp = os.path.join(base, "hashes-" + key + ".json")
        with open(os.path.join(base, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(stamp):
                for old in os.listdir(base):
                    if old != ".lock":
                        self.rmtree(os.path.join(base, old))
                t0 = time.monotonic()
                hashes = {name: self.ingest_hash(store, e["prefix"])
                          for name, e in sorted(manifest["envs"].items())}
                with open(stamp + ".tmp", "w") as f:
                    json.dump(hashes, f)
                os.rename(stamp + ".tmp", stamp)
                print(f"# ingested {len(hashes)} environments in "
                      f"{time.monotonic() - t0:.1f}s", flush=True)
            with open(stamp) as f:
                return store, json.load(f)

    def run_env(self, mnt_env, args, user=None, timeout=300, strace=None):
        """Run a command with the environment at mnt_env (its directory in a mount):
        LD_LIBRARY_PATH at its lib/ as the corpus says (Debian-built extensions). Not
        PYTHONDONTWRITEBYTECODE: a stale .pyc must show as a write attempt."""
        e = {"LD_LIBRARY_PATH": os.path.join(mnt_env, "lib")}
        cmd = list(args)
        if strace:
            cmd = ["strace", "-f", "-qq", "-o", strace, "-e", "trace=%file,%desc",
                   "-e", "signal=none"] + cmd
        return self.run(cmd, env=e, user=user, timeout=timeout)


def export_env(t, store, env_hash, dest, prefix):
    """`condafs export --frozen`: the environment as a mount at prefix serves it, with the
    files served in every environment (conda-meta/frozen, EXTERNALLY-MANAGED)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    r = t.cfs(store, "export", env_hash, dest, "--prefix", prefix, "--frozen")
    if r.rc != 0:
        raise RuntimeError(f"export failed: {r}")
    return dest


def _ftype(m):
    return "dir" if stat.S_ISDIR(m) else "file" if stat.S_ISREG(m) else \
        "symlink" if stat.S_ISLNK(m) else "other"


def _digest(dfd, name, needle=None):
    """sha256 of a file's bytes, its length, and whether needle occurs in it."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
    h = hashlib.sha256()
    n, found, tail = 0, False, b""
    try:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            n += len(b)
            h.update(b)
            if needle and not found:
                found = needle in tail + b
                tail = b[-len(needle):]
    finally:
        os.close(fd)
    return h.digest(), n, found


def compare_mount(want, got, content=True, needle=None):
    """Differences between an export (want) and a mounted environment (got): every path,
    type, mode, size (files and symlinks), mtime in ns, symlink target and byte. Hard links
    are not compared here: the mount shares inodes more widely (identical files across and
    within environments; see check_inodes). Returns (problems, counts, files) where files
    maps each regular file's path to (sha256, mode, mtime_ns, size, st_ino, st_nlink, whether
    needle occurs in it)."""
    problems = []
    counts = {"files": 0, "dirs": 0, "symlinks": 0, "bytes": 0}
    files = {}

    def bad(rel, msg):
        problems.append(f"{lib.show(rel or b'.', 200)}: {msg}")

    def attrs(rel, w, g):
        if _ftype(w.st_mode) != _ftype(g.st_mode):
            bad(rel, f"type {_ftype(g.st_mode)}, want {_ftype(w.st_mode)}")
            return False
        if not stat.S_ISLNK(w.st_mode) and stat.S_IMODE(w.st_mode) != stat.S_IMODE(g.st_mode):
            bad(rel, f"mode {stat.S_IMODE(g.st_mode):o}, want {stat.S_IMODE(w.st_mode):o}")
        if w.st_mtime_ns != g.st_mtime_ns:
            bad(rel, f"mtime_ns {g.st_mtime_ns}, want {w.st_mtime_ns}")
        if not stat.S_ISDIR(w.st_mode) and w.st_size != g.st_size:
            bad(rel, f"size {g.st_size}, want {w.st_size}")
        if g.st_uid != 0 or g.st_gid != 0:
            bad(rel, f"owner {g.st_uid}:{g.st_gid}, want 0:0")
        return True

    def walk(wfd, gfd, rel):
        wnames = sorted(os.fsencode(n) for n in os.listdir(wfd))
        gnames = sorted(os.fsencode(n) for n in os.listdir(gfd))
        if wnames != gnames:
            for n in sorted(set(wnames) - set(gnames)):
                bad(rel + b"/" + n if rel else n, "missing from the mount")
            for n in sorted(set(gnames) - set(wnames)):
                bad(rel + b"/" + n if rel else n, "only in the mount")
        for n in wnames:
            if n not in gnames:
                continue
            r = rel + b"/" + n if rel else n
            w = os.stat(n, dir_fd=wfd, follow_symlinks=False)
            g = os.stat(n, dir_fd=gfd, follow_symlinks=False)
            if not attrs(r, w, g):
                continue
            if stat.S_ISDIR(w.st_mode):
                counts["dirs"] += 1
                a = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=wfd)
                b = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=gfd)
                try:
                    walk(a, b, r)
                finally:
                    os.close(a)
                    os.close(b)
            elif stat.S_ISLNK(w.st_mode):
                counts["symlinks"] += 1
                wt, gt = os.readlink(n, dir_fd=wfd), os.readlink(n, dir_fd=gfd)
                if wt != gt:
                    bad(r, f"symlink -> {gt!r}, want {wt!r}")
            else:
                counts["files"] += 1
                counts["bytes"] += w.st_size
                if not content:
                    continue
                try:
                    gd, gn, _ = _digest(gfd, n)
                except OSError as e:
                    bad(r, f"read: {e}")
                    continue
                wd, wn, has = _digest(wfd, n, needle)
                if gd != wd or gn != wn:
                    bad(r, f"content differs ({gn} bytes read, want {wn})")
                files[r] = (wd, stat.S_IMODE(w.st_mode), w.st_mtime_ns, w.st_size, g.st_ino,
                            g.st_nlink, has)

    a = os.open(want, os.O_RDONLY | os.O_DIRECTORY)
    b = os.open(got, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attrs(b"", os.fstat(a), os.fstat(b))
        walk(a, b, b"")
    finally:
        os.close(a)
        os.close(b)
    return problems, counts, files


def check_inodes(envs):
    """envs: {env: compare_mount's files}. Files with the same bytes, mode and mtime and no
    prefix inside must be one inode wherever they are (hard-link semantics, with st_nlink
    counting them), and one inode must never serve two different (bytes, mode, mtime).
    Returns (problems, number of inodes shared by two or more paths)."""
    problems = []
    by_key, by_ino = {}, {}
    for env, files in envs.items():
        for rel, (digest, mode, mtime, size, ino, nlink, has_prefix) in files.items():
            key = (digest, mode, mtime, size)
            by_ino.setdefault(ino, {}).setdefault(key, []).append((env, rel, nlink))
            if not has_prefix:
                by_key.setdefault(key, {}).setdefault(ino, []).append((env, rel, nlink))
    for key, inos in by_key.items():
        if len(inos) > 1:
            where = [f"{e}:{lib.show(r)} ino {i}" for i, v in inos.items() for e, r, _ in v[:2]]
            problems.append(f"identical files served as {len(inos)} inodes: {where[:6]}")
    shared = 0
    for ino, keys in by_ino.items():
        if len(keys) > 1:
            where = [f"{e}:{lib.show(r)}" for v in keys.values() for e, r, _ in v[:2]]
            problems.append(f"inode {ino} serves {len(keys)} different files: {where[:6]}")
            continue
        paths = next(iter(keys.values()))
        if len(paths) > 1:
            shared += 1
            nl = {n for _, _, n in paths}
            if len(nl) != 1 or next(iter(nl)) < len(paths):
                problems.append(f"inode {ino}: {len(paths)} paths seen, st_nlink {sorted(nl)}")
    return problems, shared


def list_files(top):
    """Every regular file under top (relative paths, sorted) with its size."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                out.append((os.path.relpath(p, top), st.st_size))
    return out
