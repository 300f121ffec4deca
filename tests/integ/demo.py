#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""tools/demo, the README's quick start: it serves the store with condafsd, runs python from
MOUNT/<hash> and through a tag, shows a shared file as one inode in two environments, runs
an environment in a mount namespace that sees only it at its own path, and unmounts at the
end. Nothing stays mounted and no daemon stays behind: after a full run, after a step that
fails half-way (a lock that does not match, once the mount is up), and after SIGTERM, or
SIGINT to its process group (Ctrl-C), while it is mounted."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import lib

t = lib.Harness("demo: the quick start shows the mount and leaves none behind")
DEMO = os.environ["DEMO"]
BIN = os.environ["CONDAFS_BIN"]
corpus = t.corpus()
base = os.path.dirname(os.path.dirname(os.path.dirname(
    corpus["envs"]["small"]["locks"]["conda_lock"])))


def fuse_mounts(mnt):
    with open("/proc/self/mounts") as f:
        return [l for l in f.read().splitlines() if l.split(" ")[1] == mnt]


def daemons(mnt):
    """condafsd processes serving mnt."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]) == b"condafsd" and os.fsencode(mnt) in args:
            out.append(int(pid))
    return out


def gone(mnt):
    """Nothing mounted at mnt and no daemon serving it, waiting a little for a daemon that
    was unmounted to exit."""
    for _ in range(200):
        if not fuse_mounts(mnt) and not daemons(mnt):
            return True
        time.sleep(0.05)
    return False


def start(demo_dir, corpus_dir):
    env = dict(os.environ, CONDAFS_BIN=BIN, CONDAFS_DEMO=demo_dir,
               CONDAFS_DEMO_CORPUS=corpus_dir)
    env.pop("CONDAFS_STORE", None)
    return subprocess.Popen([DEMO], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def cleanup(mnt):
    for pid in daemons(mnt):
        os.kill(pid, signal.SIGKILL)
    while fuse_mounts(mnt):
        subprocess.run(["umount", "-l", mnt], capture_output=True)


with t.section("a full run"):
    d = t.path("full")
    mnt = os.path.join(d, "envs")
    p = start(d, base)
    try:
        out = p.communicate(timeout=900)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.kill()
        out = p.communicate()[0].decode(errors="replace")
    t.eq("it exits 0", p.returncode, 0, out[-3000:])
    hs = t.cfs(None, "hash", corpus["envs"]["sci"]["prefix"]).out.strip()
    t.check("python runs from MOUNT/<hash> as soon as it is ingested",
            f"prefix {mnt}/{hs}\n" in out, out[-3000:])
    t.check("...and through the tag", "through the tag: gamma(5) = 24.0" in out, out[-3000:])
    inodes = re.findall(r"^(\d+) (\d+) \d+ " + re.escape(mnt) + r"/\w+/lib/libpython", out,
                        re.M)
    t.check("a shared file: one inode in both environments, two names",
            len(inodes) == 2 and inodes[0] == inodes[1] and inodes[0][1] == "2", inodes)
    t.check("in its own mount namespace the environment is alone at its own path",
            f"inside: ls {mnt} -> ['{hs}']" in out, out[-3000:])
    t.check("it says it unmounted", f"unmounted {mnt}" in out, out[-3000:])
    t.check("nothing is mounted there and no condafsd is left", gone(mnt), fuse_mounts(mnt))
    cleanup(mnt)

with t.section("a step that fails once the mount is up"):
    d = t.path("fails")
    mnt = os.path.join(d, "envs")
    bad = t.path("bad-corpus")
    os.makedirs(os.path.join(bad, "locks", "sci"))
    shutil.copy(os.path.join(base, "manifest.json"), bad)
    os.symlink(os.path.join(base, "locks", "small"), os.path.join(bad, "locks", "small"))
    # sci checked against small's lock: ingest refuses it, after the mount is up
    shutil.copy(os.path.join(base, "locks", "small", "conda-lock.yml"),
                os.path.join(bad, "locks", "sci"))
    p = start(d, bad)
    out = p.communicate(timeout=900)[0].decode(errors="replace")
    t.check("it fails (the lock does not match)", p.returncode not in (0, None) and
            "condafs: ingest:" in out, out[-3000:])
    t.check("...after mounting", "ls " + mnt + ": []" in out, out[-3000:])
    t.check("nothing is mounted there and no condafsd is left", gone(mnt), fuse_mounts(mnt))
    cleanup(mnt)

for sig, group in ((signal.SIGTERM, False), (signal.SIGINT, True)):
    with t.section(f"{sig.name}{' to its process group' if group else ''} while mounted"):
        d = t.path(f"killed-{sig.name}")
        mnt = os.path.join(d, "envs")
        p = start(d, base)
        mounted = False
        for _ in range(6000):
            if fuse_mounts(mnt) or p.poll() is not None:
                mounted = bool(fuse_mounts(mnt))
                break
            time.sleep(0.01)
        t.check("the demo mounted", mounted)
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        try:
            out = p.communicate(timeout=300)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            p.kill()
            out = p.communicate()[0].decode(errors="replace")
        t.check(f"it stops ({p.returncode}) and says it unmounted",
                p.returncode != 0 and f"unmounted {mnt}" in out, out[-3000:])
        t.check("nothing is mounted there and no condafsd is left", gone(mnt),
                fuse_mounts(mnt))
        cleanup(mnt)

t.finish()
