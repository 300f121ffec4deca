#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A fresh server, and scripts that rely on the mount. condafsd starts on a store that does
not exist yet (it makes an empty one, root's alone: 0700) and on an empty directory, and
tells systemd it is ready (one datagram "READY=1" to $NOTIFY_SOCKET, a path or an abstract
'@' name, read here by this test acting as systemd) only once the mount answers. When
`condafs ingest`, `tag`, `untag`, `rm` or `gc` returns, the mount already shows the change:
`h=$(condafs ingest P) && MOUNT/$h/bin/python3` works with no sleep, also for a name looked
up (and its miss cached by the kernel) before the ingest; a removed environment or tag is
gone at once. A daemon that does not answer (stopped) makes the writer wait two seconds and
warn, then catches up by itself; one killed -9 leaves a socket name that the next writer
removes. gc says which removed environment a mount still holds."""

import errno
import json
import os
import signal
import socket
import stat
import subprocess

import fs_lib

t = fs_lib.FsHarness("fs_fresh: a fresh server, readiness, changes shown when commands return")
errno_of, wait_for = fs_lib.errno_of, fs_lib.wait_for

small = t.env("small")
sci = t.env("sci")
# gc's settings: the machine's /etc/condafs/condafs.yml must not decide this test.
CONF = t.path("condafs.yml")
with open(CONF, "w") as f:
    f.write("gc:\n  unused_for: 30d\n  grace: 1h\n")


def all_stopped(pid):
    """Every thread of process pid is stopped (state T in its stat)."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:
            pass
    return bool(states) and all(st == "T" for st in states)


def notify_socket(name):
    """A datagram socket as systemd's: a path, or an abstract name when name starts with
    '@'. Returns (socket, the NOTIFY_SOCKET value)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name[1:] if name.startswith("@") else name)
    return s, name


def ready(d, s, timeout=60):
    """Wait for condafsd's datagram (or its exit); then, at once, what the mount does.
    Returns (datagram or None, mounted type, answers, root listing or errno)."""
    s.settimeout(1)
    got = None
    for _ in range(timeout):
        try:
            got = s.recv(4096).decode()
            break
        except socket.timeout:
            if d.proc.poll() is not None:
                break
    mounted, answers = fs_lib.mounted(d.mnt), fs_lib.answers(d.mnt)
    try:
        listing = sorted(os.listdir(d.mnt))
    except OSError as e:
        listing = e.errno
    return got, mounted, answers, listing


def sh(script, **env):
    """A shell script as a user's: no sleeps anywhere."""
    return t.run(["sh", "-ec", script], env={k: str(v) for k, v in env.items()})


with t.section("a store that does not exist yet, READY=1 to a socket path"):
    store = t.path("var", "lib", "condafs")
    s, name = notify_socket(t.path("notify.sock"))
    d = t.daemon(store, t.path("mnt-new"), env={"NOTIFY_SOCKET": name}).start(wait=False)
    got, mounted, answers, listing = ready(d, s)
    t.check("condafsd says READY=1 in one datagram", got is not None and
            "READY=1" in got.split("\n"), f"got {got!r}\n{d.log()}")
    t.eq("...and by then the mount is up, answers, and its root is empty",
         (mounted, answers, listing), (fs_lib.FUSE_TYPE, True, []), d.log())
    t.check("...with a status line", got and "STATUS=serving 0 environments at " in got, got)
    st = os.stat(store) if os.path.isdir(store) else None
    t.check("the store is made, root's alone (0700)", st and st.st_uid == 0 and
            stat.S_IMODE(st.st_mode) == 0o700 and os.path.isfile(os.path.join(store, "FORMAT")),
            st and oct(st.st_mode))
    t.check("the daemon says it made it", "created an empty store" in d.log(), d.log())
    s.close()


with t.section("h=$(condafs ingest P) && MOUNT/$h/bin/python3, no sleep"):
    r = sh('h=$("$CONDAFS" --store "$STORE" ingest "$P")\n'
           'LD_LIBRARY_PATH="$M/$h/lib" "$M/$h/bin/python3" -c '
           '"import sys, numpy; print(sys.prefix)"\n'
           'echo "$h"',
           CONDAFS=t.condafs, STORE=store, P=small["prefix"], M=d.mnt)
    hs = r.out.split()[-1] if r.out.split() else ""
    t.check("python runs from MOUNT/$h the moment ingest returns",
            r.rc == 0 and r.out.split()[0] == os.path.join(d.mnt, hs), r)
    t.eq("...and nothing is said on stderr (but ingest's progress)",
         r.errors() + r.warnings() + r.notes(), [])

with t.section("a name looked up before its ingest (a cached miss) appears when ingest "
               "returns"):
    hsci = t.cfs(None, "hash", sci["prefix"]).out.strip()
    t.eq("looked up before: no such file (the kernel keeps the miss)",
         errno_of(lambda: os.stat(d.path(hsci))), errno.ENOENT)
    r = sh('h=$("$CONDAFS" --store "$STORE" ingest "$P")\n'
           'test -x "$M/$h/bin/python3" && ls "$M"',
           CONDAFS=t.condafs, STORE=store, P=sci["prefix"], M=d.mnt)
    t.check("there the moment ingest returns, and in the root's listing", r.rc == 0 and
            sorted(r.out.split()) == sorted([hs, hsci]), r)

with t.section("tag, untag, rm: shown when the command returns"):
    r = sh('"$CONDAFS" --store "$STORE" tag sci-now "$H"\nreadlink "$M/sci-now"\n'
           'LD_LIBRARY_PATH="$M/sci-now/lib" "$M/sci-now/bin/python3" -c "import scipy"',
           CONDAFS=t.condafs, STORE=store, H=hsci, M=d.mnt)
    t.check("tag: the symlink is there and python runs through it", r.rc == 0 and
            r.out.strip() == hsci and not r.err, r)
    r = sh('"$CONDAFS" --store "$STORE" tag sci-now "$H"\nreadlink "$M/sci-now"',
           CONDAFS=t.condafs, STORE=store, H=hs, M=d.mnt)
    t.check("a moved tag points at its new environment at once",
            r.rc == 0 and r.out.strip() == hs, r)
    r = sh('"$CONDAFS" --store "$STORE" untag sci-now\n! test -e "$M/sci-now" && '
           '! test -L "$M/sci-now"', CONDAFS=t.condafs, STORE=store, M=d.mnt)
    t.check("untag: the name is gone when it returns (it was cached by the kernel)",
            r.rc == 0, r)
    os.stat(os.path.join(d.path(hs), "bin", "python3"))
    r = sh('"$CONDAFS" --store "$STORE" rm "$H" >/dev/null\n! test -e "$M/$H" && '
           '! test -e "$M/$H/bin/python3" && ls "$M"',
           CONDAFS=t.condafs, STORE=store, H=hs, M=d.mnt)
    t.check("rm: the environment is gone when it returns", r.rc == 0 and
            r.out.split() == [hsci], r)
    r = sh('h=$("$CONDAFS" --store "$STORE" ingest "$P" 2>/dev/null)\n'
           'test -x "$M/$h/bin/python3"', CONDAFS=t.condafs, STORE=store,
           P=small["prefix"], M=d.mnt)
    t.check("ingested again: back at once", r.rc == 0, r)

with t.section("gc says which removed environment a mount holds"):
    # A file of sci alone (one that small has too would keep small, not sci: use.c U2):
    # scipy's largest Python source.
    only = max((os.path.getsize(os.path.join(dp, n)),
                os.path.relpath(os.path.join(dp, n), sci["prefix"]))
               for dp, _, fs in os.walk(os.path.join(sci["prefix"], "lib"))
               for n in fs if n.endswith(".py") and
               "/scipy/" in os.path.relpath(os.path.join(dp, n), sci["prefix"]))[1]
    f = open(os.path.join(d.path(hsci), only), "rb")
    try:
        r = t.cfs(store, "rm", "--force", hsci)
        t.ok("rm while a file of it is open", r)
        t.check("its name is gone", not os.path.exists(d.path(hsci)))
        r = t.cfs(store, "--config", CONF, "--json", "gc", "--dry-run")
        g = json.loads(r.out) if r.rc == 0 else {}
        t.eq("gc --dry-run --json: kept, reason held",
             [(k["hash"], k["reason"]) for k in g.get("kept", [])], [(hsci, "held")], r)
        r = t.cfs(store, "--config", CONF, "gc")
        t.check("gc says it keeps it: held by a mount", r.rc == 0 and any(
            l.startswith(f"keeping {hsci} (") and "a mount holds it" in l
            for l in r.out.splitlines()), r)
        t.check("...and reads it to the end all the same", len(f.read()) > 0)
    finally:
        f.close()

with t.section("a daemon that does not answer: the writer waits two seconds, warns, and "
               "the daemon catches up"):
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        # kill() returns before every thread has stopped: one still running could answer.
        t.check("every thread of the daemon is stopped",
                wait_for(lambda: all_stopped(d.proc.pid)) is not None)
        r = t.cfs(store, "tag", "late", hs)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    t.check("tag succeeds, with one warning that one mount did not confirm",
            r.rc == 0 and len(r.warnings()) == 1 and "did not confirm" in r.err and
            not r.errors(), r)
    t.check("the mount shows it soon after",
            wait_for(lambda: os.path.islink(d.path("late"))) is not None)
d.stop()

with t.section("an empty directory as the store, READY=1 to an abstract socket"):
    store2 = t.path("empty-store")
    os.makedirs(store2, mode=0o755)
    s, name = notify_socket(f"@condafs-test-{os.getpid()}")
    d = t.daemon(store2, t.path("mnt-empty"), env={"NOTIFY_SOCKET": name}).start(wait=False)
    got, mounted, answers, listing = ready(d, s)
    t.check("READY=1 reaches the abstract name", got is not None and
            "READY=1" in got.split("\n"), f"got {got!r}\n{d.log()}")
    t.eq("...once the mount answers, with nothing in it",
         (mounted, answers, listing), (fs_lib.FUSE_TYPE, True, []), d.log())
    t.eq("the directory became a store, root's alone",
         (os.path.isfile(os.path.join(store2, "FORMAT")),
          stat.S_IMODE(os.stat(store2).st_mode)), (True, 0o700))
    s.close()
    d.stop()

with t.section("a directory that is not empty and not a store is left alone"):
    other = t.path("not-a-store")
    os.makedirs(other)
    with open(os.path.join(other, "precious.txt"), "w") as f:
        f.write("mine\n")
    os.makedirs(t.path("mnt-other"))
    r = t.run([fs_lib.CONDAFSD, "--store", other, "-f", t.path("mnt-other")], timeout=30)
    t.check("condafsd refuses it, naming it", r.rc == 1 and other in r.err and
            "no condafs store here" in r.err, r)
    t.eq("and writes nothing there", os.listdir(other), ["precious.txt"])

with t.section("a daemon killed -9 leaves its socket name; the next writer removes it"):
    store3 = t.path("store-kill")
    h3 = t.ingest_hash(store3, small["prefix"])
    d = t.daemon(store3, t.path("mnt-kill")).start()
    names = os.listdir(os.path.join(store3, "mounts"))
    t.eq("one name under mounts/ while it runs", len(names), 1, names)
    d.kill9()
    r = t.cfs(store3, "tag", "after-kill", h3)
    t.check("a writer after the kill: no wait, no warning", r.rc == 0 and not r.err, r)
    t.eq("...and the dead daemon's name is gone", os.listdir(os.path.join(store3, "mounts")),
         [])
    d.stop(quiet=True)
    with t.daemon(store3, t.path("mnt-kill")) as d:
        t.eq("a new daemon: one name again", len(os.listdir(os.path.join(store3, "mounts"))),
             1)
    t.eq("a daemon that stops removes its name", os.listdir(os.path.join(store3, "mounts")),
         [])

t.finish()
