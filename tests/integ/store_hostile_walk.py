#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Root ingests a prefix a user owns, and the user is hostile (issue 11, points 1, 11, 13).

Real users (setpriv, uids 61001 and 61002 that need no passwd entry) and real races, driven
deterministically: a fanotify FAN_OPEN_PERM mark holds the ingest the moment it opens a
chosen directory, the user swaps something, then the ingest goes on. Cases:
- a directory swapped for a symlink to a root-only 0700 directory during the walk, or to
  /etc after the walk (the secret is /etc/shadow, size and mtime matched): the ingest
  fails with one line naming the path, and nothing is stored;
- a file swapped for another file, or for a FIFO, after the walk; a FIFO in place of a
  conda-meta record (ingest and hash): one line, no hang;
- a prefix is read with its owner's permissions: a 0600 file of root or of another user,
  or a root-only directory, inside it fails the ingest naming it (the owner's own 0600
  file is stored); a symlinked record, or a prefix or lock file named through the
  user's symlink, leads nowhere the user could not read;
- a 4 GiB sparse file (a few KiB on disk) ingests with a bounded max RSS (the child's,
  from os.wait4), and large, sparse and relocated files come back byte for byte."""

import ctypes
import os
import select
import shutil
import struct
import subprocess
import sys

import lib

t = lib.Harness("store_hostile_walk: a user's prefix read by root")
ALICE, BOB = 61001, 61002
# The README's bound on ingest's memory for this prefix (Security model), with room for
# the sanitizer build's own allocations.
MAX_RSS_MIB = 256
SPARSE_GIB = 4


def as_user(uid, *cmd, cwd=None):
    """cmd run as uid (no groups); raises if it fails."""
    subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    *[str(c) for c in cmd]], check=True, cwd=cwd)


def own(path, uid):
    """chown -R uid:uid, links included."""
    for d, dirs, files in os.walk(path):
        for n in [d] + [os.path.join(d, x) for x in dirs + files]:
            os.lchown(n, uid, uid)


# ---- fanotify: hold the process that opens a path ----

libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                               ctypes.c_char_p]
FAN_CLOEXEC, FAN_CLASS_CONTENT = 0x1, 0x4
FAN_MARK_ADD, FAN_OPEN_PERM, FAN_ONDIR, FAN_ALLOW = 0x1, 0x10000, 0x40000000, 1
AT_FDCWD = -100
EVENT = struct.Struct("=IBBHQii")


class Pause:
    """The first open of path (a directory) waits until allow(); later ones pass."""

    def __init__(self, path):
        self.fd = libc.fanotify_init(FAN_CLOEXEC | FAN_CLASS_CONTENT, os.O_RDONLY)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "fanotify_init")
        if libc.fanotify_mark(self.fd, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_ONDIR, AT_FDCWD,
                              path.encode()) < 0:
            raise OSError(ctypes.get_errno(), f"fanotify_mark {path}")
        self.event_fd = None

    def wait(self, timeout=120):
        """The pid that opened it, held; None if nobody did in time."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return None
        buf = os.read(self.fd, 4096)
        _, _, _, _, _, self.event_fd, pid = EVENT.unpack_from(buf)
        return pid

    def allow(self):
        if self.event_fd is not None:
            os.write(self.fd, struct.pack("=iI", self.event_fd, FAN_ALLOW))
            os.close(self.event_fd)
            self.event_fd = None
        # Closing the group lets every other open through.
        os.close(self.fd)


def start(store, *args):
    return subprocess.Popen([t.condafs, *(["--store", store] if store else []), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(p, timeout=120):
    """(Result, hung): a condafs that has not exited after timeout is killed."""
    hung = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        p.kill()
        out, err = p.communicate()
    r = lib.Result(p.args, p.returncode, out.decode(errors="surrogateescape"),
                   err.decode(errors="surrogateescape"), 0)
    t.sane(r)
    return r, hung


def run(store, *args, timeout=120):
    return finish(start(store, *args), timeout)


def ingest_paused(what, store, prefix, pause_dir, swap):
    """Ingest prefix, held when it opens pause_dir while swap() runs; its Result."""
    pause = Pause(pause_dir)
    p = start(store, "ingest", prefix)
    try:
        pid = pause.wait()
        t.check(f"{what}: the ingest is held when it opens {os.path.relpath(pause_dir, prefix)}",
                pid == p.pid, f"opened by {pid}, ingest is {p.pid}")
        if pid == p.pid:
            swap()
    finally:
        pause.allow()
    r, hung = finish(p)
    t.check(f"{what}: the ingest does not hang", not hung, r)
    return r


def nothing_stored(what, store):
    t.eq(f"{what}: nothing stored", (t.hashes(store), lib.image_files(store)), ([], {}))


def fresh_prefix(name, uid, files=None, pkgs=(("demo", "1.0", "h0_0"),)):
    p = lib.make_prefix(t.path(name), pkgs=pkgs, files=files or {"share/x.txt": b"x\n"})
    own(p, uid)
    return p


def secret_dir(name, files):
    """A root-only 0700 directory with 0600 files: what a user must never get stored."""
    d = t.path(name)
    for rel, data in files.items():
        lib.write(os.path.join(d, rel), data, mode=0o600)
    for dd, dirs, _ in os.walk(d):
        os.chmod(dd, 0o700)
    return d


with t.section("a directory swapped for a symlink to a root-only directory during the walk"):
    store = t.path("store-walk")
    P = fresh_prefix("walk", ALICE, {"a/c/d": b"public\n", "zz/.keep": b""})
    S = secret_dir("secret-walk", {"c/d": b"SECRET walk\n"})
    # Breadth first: a, conda-meta, zz, then a/c. Held at zz, a/c is seen but not listed.
    r = ingest_paused("walk", store, P, os.path.join(P, "zz"), lambda: (
        as_user(ALICE, "mv", "a", "a.old", cwd=P), as_user(ALICE, "ln", "-s", S, "a", cwd=P)))
    t.fails_clearly("walk: the ingest fails, naming the path through the link", r,
                    f"{P}/a/c", "symbolic link")
    nothing_stored("walk", store)

with t.section("a directory swapped for a symlink to /etc after the walk"):
    store = t.path("store-etc")
    shadow = os.stat("/etc/shadow")
    # The prefix is root's; u is the user's. The file matches /etc/shadow's size and mtime,
    # so only the path can tell them apart.
    P = lib.make_prefix(t.path("etc"), files={"zz/zz/.keep": b""})
    lib.write(os.path.join(P, "u/etc/shadow"), b"s" * shadow.st_size,
              mtime_ns=shadow.st_mtime_ns)
    own(os.path.join(P, "u"), ALICE)
    # Level 2 in order: u/etc (listed: shadow seen), then zz/zz, where it is held.
    r = ingest_paused("etc", store, P, os.path.join(P, "zz/zz"), lambda: (
        as_user(ALICE, "mv", "etc", "etc.old", cwd=os.path.join(P, "u")),
        as_user(ALICE, "ln", "-s", "/etc", "etc", cwd=os.path.join(P, "u"))))
    t.fails_clearly("etc: the ingest fails, naming the file behind the link", r,
                    f"{P}/u/etc/shadow", "symbolic link")
    nothing_stored("etc", store)

with t.section("a file swapped for another file after the walk"):
    store = t.path("store-other")
    P = fresh_prefix("other", ALICE, {"f1": b"one\n", "f2": b"two\n", "zz/.keep": b""})
    os.utime(os.path.join(P, "f2"), ns=(0, os.stat(os.path.join(P, "f1")).st_mtime_ns))
    r = ingest_paused("other", store, P, os.path.join(P, "zz"),
                      lambda: as_user(ALICE, "ln", "-f", "f2", "f1", cwd=P))
    t.fails_clearly("other: the ingest fails, naming the file", r, f"{P}/f1", "changed")
    nothing_stored("other", store)

with t.section("a file swapped for a fifo after the walk"):
    store = t.path("store-fifo")
    P = fresh_prefix("fifo", ALICE, {"x": b"data\n", "zz/.keep": b""})
    r = ingest_paused("fifo", store, P, os.path.join(P, "zz"), lambda: (
        as_user(ALICE, "rm", "x", cwd=P), as_user(ALICE, "mkfifo", "x", cwd=P)))
    t.fails_clearly("fifo: the ingest fails, naming the fifo", r, f"{P}/x", "fifo")
    nothing_stored("fifo", store)

with t.section("a fifo in place of a conda-meta record"):
    store = t.path("store-record")
    P = fresh_prefix("record", ALICE)
    as_user(ALICE, "mkfifo", "conda-meta/late-1.0-0.json", cwd=P)
    rec = f"{P}/conda-meta/late-1.0-0.json"
    r, hung = run(store, "ingest", P)
    t.check("record: ingest does not hang", not hung, r)
    t.fails_clearly("record: ingest fails, naming the record", r, rec, "fifo")
    r, hung = run(None, "hash", P)
    t.check("record: hash does not hang", not hung, r)
    t.fails_clearly("record: hash fails, naming the record", r, rec, "fifo")
    nothing_stored("record", store)

with t.section("a prefix is read with its owner's permissions"):
    cases = {
        "root's 0600 file": ("share/root-secret", 0, 0o600, False),
        "another user's 0600 file": ("share/bob-secret", BOB, 0o600, False),
        "a root-only directory": ("rootdir/inside", 0, 0o644, True),
    }
    for what, (rel, uid, mode, in_dir) in cases.items():
        store = t.path("store-" + rel.replace("/", "-"))
        P = fresh_prefix("own-" + rel.replace("/", "-"), ALICE)
        lib.write(os.path.join(P, rel), b"SECRET of " + what.encode() + b"\n", mode=mode)
        os.chown(os.path.join(P, rel), uid, uid)
        named = rel
        if in_dir:
            os.chmod(os.path.join(P, os.path.dirname(rel)), 0o700)
            named = os.path.dirname(rel)
        r, _ = run(store, "ingest", P)
        t.fails_clearly(f"{what}: the ingest fails, naming it and whose permissions",
                        r, f"{P}/{named}", f"uid {ALICE}", "Permission denied")
        nothing_stored(what, store)

    store = t.path("store-own")
    P = fresh_prefix("own-ok", ALICE, {"share/mine": b"alice's own\n",
                                       "share/public": b"root's, world-readable\n"})
    os.chmod(os.path.join(P, "share/mine"), 0o600)
    os.chown(os.path.join(P, "share/public"), 0, 0)
    r, _ = run(store, "ingest", P)
    t.ok("the owner's own 0600 file and root's 0644 file are stored", r)
    h = r.out.strip()
    for rel, want in (("share/mine", b"alice's own\n"),
                      ("share/public", b"root's, world-readable\n")):
        c = t.cfs(store, "cat", h, rel)
        t.eq(f"{rel} reads back", c.out.encode(), want)

with t.section("no link leads a prefix where its owner could not go"):
    store = t.path("store-links")
    R = lib.make_prefix(t.path("root-only/env"), pkgs=[("rootpkg", "9.9", "h0_0")])
    os.chmod(t.path("root-only"), 0o700)
    P = fresh_prefix("linked-record", ALICE)
    rec = os.path.join(P, "conda-meta/rootpkg-9.9-h0_0.json")
    as_user(ALICE, "ln", "-s", os.path.join(R, "conda-meta/rootpkg-9.9-h0_0.json"), rec)
    for cmd in ("ingest", "hash"):
        r, _ = run(store if cmd == "ingest" else None, cmd, P)
        t.fails_clearly(f"a record linked to a root-only one: {cmd} fails, naming it", r,
                        rec, "symbolic link")
    home = t.path("home-alice")
    os.mkdir(home)
    os.chown(home, ALICE, ALICE)
    as_user(ALICE, "ln", "-s", R, "env", cwd=home)
    for cmd in ("ingest", "hash"):
        r, _ = run(store if cmd == "ingest" else None, cmd, os.path.join(home, "env"))
        t.fails_clearly(f"a prefix named through the user's link to a root-only one: {cmd} "
                        "fails", r, f"{home}/env", "Permission denied")
    # In a directory anyone may write to, the link is still the user's.
    shared = t.path("shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    as_user(ALICE, "ln", "-s", R, os.path.join(shared, "env"))
    for cmd in ("ingest", "hash"):
        r, _ = run(store if cmd == "ingest" else None, cmd, os.path.join(shared, "env"))
        t.fails_clearly(f"... also from a directory anyone may write to: {cmd} fails", r,
                        f"{shared}/env", "Permission denied")
    # A lock file someone names is looked up as the owner of each directory on the way.
    lock = t.path("root-only/env.lock")
    with open(lock, "w") as f:
        f.write(lib.explicit_lock([("rootpkg", "9.9", "h0_0")]))
    os.chmod(lock, 0o600)
    as_user(ALICE, "ln", "-s", lock, "env.lock", cwd=home)
    r, _ = run(None, "hash", os.path.join(home, "env.lock"))
    t.fails_clearly("a lock named through the user's link to a root-only one: hash fails", r,
                    f"{home}/env.lock", "Permission denied")
    r, _ = run(store, "ingest", fresh_prefix("with-lock", ALICE), "--lock",
               os.path.join(home, "env.lock"))
    t.fails_clearly("... and ingest --lock fails", r, f"{home}/env.lock", "Permission denied")
    nothing_stored("links", store)
    # A link the administrator made is theirs: it is followed as root.
    os.symlink(R, t.path("admin-link"))
    r, _ = run(store, "ingest", t.path("admin-link"))
    t.ok("a prefix named through root's own link is ingested", r)
    t.eq("its prefix is the link's target", [e["source_prefix"] for e in t.ls(store) or []],
         [R])

with t.section(f"a {SPARSE_GIB} GiB sparse file: bounded memory"):
    store = t.path("store-sparse")
    P = fresh_prefix("sparse", ALICE)
    big = os.path.join(P, "share/big.img")
    with open(big, "wb") as f:
        f.truncate(SPARSE_GIB << 30)
        for off in (0, (SPARSE_GIB << 29) + 12345, (SPARSE_GIB << 30) - 4096):
            f.seek(off)
            f.write(b"data@%d\n" % off * 64)
    os.chown(big, ALICE, ALICE)
    du = os.stat(big).st_blocks * 512
    t.check(f"the file takes {du} bytes on disk", du < 1 << 20)
    pid = os.posix_spawn(t.condafs, [t.condafs, "--store", store, "ingest", P], os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
    _, status, ru = os.wait4(pid, 0)
    t.eq("ingest exits 0", os.waitstatus_to_exitcode(status), 0)
    t.check(f"its max RSS is under {MAX_RSS_MIB} MiB ({ru.ru_maxrss >> 10} MiB)",
            ru.ru_maxrss < MAX_RSS_MIB << 10, f"ru_maxrss {ru.ru_maxrss} KiB")
    used = sum(lib.image_files(store).values())
    t.check(f"the store takes {used} bytes", used < 16 << 20)
    env = (t.ls(store) or [{}])[0]
    t.eq("the environment's size counts the holes", env.get("logical_bytes", 0) >=
         SPARSE_GIB << 30, True, env)
    t.verify_clean("verify re-reads it whole and passes", store)

with t.section("large, sparse and relocated files come back byte for byte"):
    store = t.path("store-bytes")
    P = os.path.realpath(t.path("bytes"))
    rnd = os.urandom(3 << 20)
    M = 1 << 20
    files = {
        "lib/big.bin": rnd + rnd[::-1],
        "lib/libprefix.so": b"\x7fELF\0" + rnd[:2 * M] + P.encode() + b"/lib/x\0" +
                            b"\0" * 300 + rnd[:M],
        "share/prefix.txt": (b"#!" + P.encode() + b"/bin/python\n") * 50000,
        "share/mid.bin": rnd[:M + 7],
    }
    lib.make_prefix(P, files=files)
    sparse = {"share/sparse": (50 * M + 123, [(0, b"a" * 5000), (M - 10, rnd[:20]),
                                              (7 * M, rnd[:3 * M]), (50 * M, b"end" * 41)]),
              "share/sparse-small": (300000, [(200000, b"zz" * 100)]),
              "share/all-hole": (5 * M, [])}
    for rel, (size, pieces) in sparse.items():
        with open(os.path.join(P, rel), "wb") as f:
            f.truncate(size)
            for off, d in pieces:
                f.seek(off)
                f.write(d)
        with open(os.path.join(P, rel), "rb") as f:
            files[rel] = f.read()
    own(P, ALICE)
    r, _ = run(store, "ingest", P)
    t.ok("ingest", r)
    h = r.out.strip()
    for rel, want in files.items():
        got = t.run([t.condafs, "--store", store, "cat", h, rel]).out.encode(
            "utf-8", "surrogateescape")
        t.check(f"{rel} ({len(want)} bytes) reads back", got == want,
                f"got {len(got)} bytes")
    other = "/opt/elsewhere/env"
    got = t.run([t.condafs, "--store", store, "cat", h, "share/prefix.txt", "--prefix",
                 other]).out.encode()
    t.check("the large text file is relocated", got == files["share/prefix.txt"].replace(
        P.encode(), other.encode()), f"got {len(got)} bytes")
    r, _ = run(store, "ingest", P)
    t.ok("a second ingest compares every file with the store and finds it there", r)
    t.verify_clean("verify passes", store)

t.finish()
