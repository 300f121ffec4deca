#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A writer that waits for a lock says so after a second, naming who holds it, and goes on
waiting until it is let go: gc and ingest behind a flock of STORE/lock, a catalog write
behind a read lock on the WAL's write-lock byte of catalog.db-shm, and gc naming who holds
a removed environment (an open file description lock on STORE/holds, whose holder
/proc/locks does not name). Each holder is a real process with a recognisable command
line, holding a real lock until the test lets go."""

import os
import selectors
import subprocess
import sys
import time

import lib

t = lib.Harness("store_lockwait: waits for a lock are said, with the holder, then finish")
store = t.path("store")

HOLDER = t.path("lock-holder-marker.py")
with open(HOLDER, "w") as f:
    f.write(r"""
import fcntl, os, sqlite3, struct, sys
path, kind, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "shm":
    # A reader keeps the WAL index set up, as a running daemon does; then the lock.
    db = sqlite3.connect(path[:-len("-shm")])
    db.execute("SELECT count(*) FROM envs").fetchall()
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
if kind == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX)
elif kind == "shm":
    fcntl.lockf(fd, fcntl.LOCK_SH, 1, start)
else:  # an open file description read lock: F_OFD_SETLK
    fcntl.fcntl(fd, 37, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, start, 1, 0))
print("held", flush=True)
sys.stdin.readline()
""")


class Holder:
    """A process holding a lock on path until release()."""

    def __init__(self, path, kind, start=0):
        self.p = subprocess.Popen([sys.executable, HOLDER, path, kind, str(start)],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "held":
            raise RuntimeError(f"holder of {path} did not take its lock")

    def release(self):
        self.p.stdin.close()
        self.p.wait()


def wait_for_line(p, needle, timeout=120):
    """Read p's stderr until a line holds needle: (line or None, everything read)."""
    sel = selectors.DefaultSelector()
    sel.register(p.stderr, selectors.EVENT_READ)
    buf = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not sel.select(timeout=1):
            if p.poll() is not None:
                break
            continue
        chunk = os.read(p.stderr.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        for line in buf.decode(errors="replace").splitlines():
            if needle in line:
                sel.close()
                return line, buf
    sel.close()
    return None, buf


def run_behind(what, holder, args, needle):
    """Start condafs args while holder holds its lock: it must say it waits, naming the
    holder, still be waiting, and finish once the lock is let go."""
    p = subprocess.Popen([t.condafs, "--store", store] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    line, early = wait_for_line(p, needle)
    t.check(f"{what}: says what it waits for and who holds it",
            line is not None and f"pid {holder.p.pid} (" in line and
            "lock-holder-marker" in line and line.startswith("condafs: "),
            f"line={line!r}\nstderr={early[-2000:]!r}")
    t.check(f"{what}: ...and keeps waiting", p.poll() is None, f"rc={p.returncode}")
    holder.release()
    out, err = p.communicate(timeout=600)
    r = lib.Result(p.args, p.returncode, out.decode(errors="replace"),
                   (early + err).decode(errors="replace"), 0)
    t.sane(r)
    t.check(f"{what}: finishes once the lock is let go", r.rc == 0, r)
    return r


with t.section("setup"):
    a = lib.make_prefix(t.path("env-a"), files={"share/a.txt": b"a\n"})
    b = lib.make_prefix(t.path("env-b"), pkgs=(("other", "2.0", "h0_0"),),
                        files={"share/b.txt": b"b\n"})
    r = t.ingest(store, a)
    t.ok("ingest a", r)
    ha = r.out.split()[0]

with t.section("the store lock: gc and ingest behind a flock of STORE/lock"):
    h = Holder(os.path.join(store, "lock"), "flock")
    r = run_behind("gc", h, ["gc"], "waiting for the store lock")
    h = Holder(os.path.join(store, "lock"), "flock")
    r = run_behind("ingest", h, ["ingest", b], "waiting for the store lock")
    t.check("ingest stored the environment", lib.HASH_RE.match(r.out.strip()), r)

with t.section("the catalog: a write behind a read lock on catalog.db-shm's byte 120"):
    h = Holder(os.path.join(store, "catalog.db-shm"), "shm", 120)
    r = run_behind("tag", h, ["tag", "name-1", ha], "waiting for the catalog's write lock")
    r = t.cfs(store, "--json", "ls")
    t.check("the tag is there", r.rc == 0 and '"name-1"' in r.out, r)

with t.section("two writers behind the lock, both having read version 3, upgrade it once"):
    lib.catalog_to_v3(store)
    h = Holder(os.path.join(store, "catalog.db-shm"), "shm", 120)
    ps = [subprocess.Popen([t.condafs, "--store", store, "tag", f"up-{i}", ha],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (1, 2)]
    # A writer reads the version, then waits for the write lock: both have read 3 now.
    said = [wait_for_line(p, "waiting for the catalog's write lock")[0] for p in ps]
    t.check("both wait for the catalog's write lock", all(said), said)
    h.release()
    rcs = [(p.wait(timeout=600), p.stderr.read().decode(errors="replace")) for p in ps]
    t.eq("both finish", [rc for rc, _ in rcs], [0, 0], rcs)
    t.eq("the catalog is version 8", lib.catalog_version(store), "8")
    t.verify_clean("verify is clean", store)

with t.section("holds: gc names who holds a removed environment"):
    t.ok("rm a", t.cfs(store, "rm", "--force", ha))
    (env_id,), = lib.catalog_rows(store, "SELECT id FROM envs WHERE hash = ?", (ha,))
    h = Holder(os.path.join(store, "holds"), "ofd", env_id)
    r = t.cfs(store, "gc")
    notes = [x for x in r.err.splitlines() if "still held" in x]
    t.check("gc says the removed environment is held, and by whom",
            r.rc == 0 and len(notes) == 1 and f"pid {h.p.pid} (" in notes[0] and
            "lock-holder-marker" in notes[0], r)
    h.release()
    r = t.cfs(store, "gc")
    t.check("once let go, gc reaps it and says nothing of holds",
            r.rc == 0 and "still held" not in r.err and
            not lib.catalog_rows(store, "SELECT id FROM envs WHERE id = ?", (env_id,)), r)

t.finish()
