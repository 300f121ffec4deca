#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The mount follows the store while it runs: an environment ingested by another process
appears at once (also after a failed lookup of its name was cached, and in the root's
cached listing), one removed through another store handle vanishes, and one added back
works. The daemon's life: kill -9 leaves a dead mount that a new condafsd clears and
replaces, a dead mount of another file system is refused with the command that clears it,
SIGTERM and SIGINT unmount cleanly, and without -f it detaches and still unmounts."""

import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import fs_lib
import lib

t = fs_lib.FsHarness("fs_live: environments added and removed while mounted, daemon life")
RMENV = os.environ.get("FS_RMENV")
errno_of, wait_for = fs_lib.errno_of, fs_lib.wait_for


def lib_read(path):
    with open(path, "rb") as f:
        return f.read()




small = t.env("small")["prefix"]
sci = t.env("sci")["prefix"]
store = t.path("store")
hs = t.ingest_hash(store, small)
r = t.cfs(None, "hash", sci)
hsci = r.out.strip()

with t.section("live add and remove"):
    with t.daemon(store) as d:
        t.eq("the root lists the one environment", os.listdir(d.mnt), [hs])
        t.eq("the next one is not there yet (the miss is cached)",
             errno_of(lambda: os.stat(d.path(hsci))), errno.ENOENT)
        t.ok("ingest another environment while mounted", t.ingest(store, sci))
        secs = wait_for(lambda: os.path.isdir(d.path(hsci)))
        t.check(f"it appears by name ({secs if secs is None else round(secs, 2)}s)",
                secs is not None and secs < 2)
        t.eq("the root's listing shows it", sorted(os.listdir(d.mnt)), sorted([hs, hsci]))
        env = d.path(hsci)
        r = t.run_env(env, [os.path.join(env, "bin", "python3"), "-c",
                            "import scipy.special; print(scipy.special.gamma(5))"])
        t.check("its python imports scipy", r.rc == 0 and r.out == "24.0\n", r)
        some = os.path.join(d.path(hs), "bin", "pip")
        with open(some) as f:
            before = f.read()
        # A file both environments hold: one inode with two names while both are live.
        shared = next((p for p in (os.path.join(env, "lib", "python3.11", n)
                                   for n in sorted(os.listdir(os.path.join(
                                       env, "lib", "python3.11"))))
                       if os.path.isfile(p) and os.lstat(p).st_nlink == 2), None)
        t.check("the two environments share a file (st_nlink 2)", shared is not None)
        r = t.run([RMENV, store, hs])
        t.ok("remove the first one through another store handle", r)
        secs = wait_for(lambda: not os.path.exists(d.path(hs)))
        t.check(f"it vanishes ({secs if secs is None else round(secs, 2)}s)",
                secs is not None and secs < 2)
        t.eq("the root's listing drops it", os.listdir(d.mnt), [hsci])
        t.eq("a path inside it is gone", errno_of(lambda: os.stat(some)), errno.ENOENT)
        t.check("the other one still works", os.path.isfile(os.path.join(env, "bin", "pip")))
        # The kernel keeps the attributes it has; a second mount asks afresh.
        with t.daemon(store, t.path("mnt2")) as d2:
            again = os.path.join(d2.path(hsci), os.path.relpath(shared, env))
            t.check("to a new mount, its shared file has one name left (the removed one's "
                    "rows wait for gc) and reads", os.lstat(again).st_nlink == 1
                    and lib_read(again) == lib_read(shared), os.lstat(again).st_nlink)
        t.ok("ingest the removed one again", t.ingest(store, small))
        secs = wait_for(lambda: os.path.isdir(d.path(hs)))
        t.check("it comes back", secs is not None)
        with open(some) as f:
            t.eq("with its files served again", f.read(), before)
        with t.daemon(store, t.path("mnt2")) as d2:
            t.eq("to a new mount, the shared file has two names again",
                 os.lstat(os.path.join(d2.path(hsci), os.path.relpath(shared, env))).st_nlink,
                 2)

with t.section("a version 3 catalog: the daemon upgrades it before it serves, waiting for "
               "a writer that holds the lock"):
    old = t.path("store-v3")
    shutil.copytree(store, old, symlinks=True)
    lib.catalog_to_v3(old)
    holder = sqlite3.connect(os.path.join(old, "catalog.db"))
    holder.execute("BEGIN IMMEDIATE")
    rel = os.path.relpath(shared, env)
    d3 = t.daemon(old, t.path("mnt3")).start(wait=False)
    try:
        t.check("it waits for the catalog's write lock, saying so, and does not mount",
                wait_for(lambda: "write lock" in d3.log(), 20) is not None and
                fs_lib.mounted(d3.mnt) is None and lib.catalog_version(old) == "3", d3.log())
        holder.rollback()
        holder.close()
        t.check("let go, it upgrades the catalog and serves",
                wait_for(lambda: fs_lib.answers(d3.mnt) and
                         fs_lib.mounted(d3.mnt) == fs_lib.FUSE_TYPE, 30) is not None and
                lib.catalog_version(old) == "8", d3.log())
        paths = [os.path.join(d3.path(h), rel) for h in (hs, hsci)]
        data = lib_read(paths[0])
        t.eq("the file both environments hold: one inode, two names, its bytes",
             ([os.lstat(p).st_nlink for p in paths], len({os.lstat(p).st_ino for p in paths}),
              lib_read(paths[1]) == data), ([2, 2], 1, True))
    finally:
        d3.stop()

with t.section("kill -9, then a new daemon on the same mount point"):
    mnt = t.path("mnt-kill")
    d = t.daemon(store, mnt).start()
    d.kill9()
    t.eq("the dead mount gives ENOTCONN (statfs)", errno_of(lambda: os.statvfs(mnt)),
         errno.ENOTCONN)
    with t.daemon(store, mnt) as d2:
        t.eq("a new condafsd clears it and serves", sorted(os.listdir(d2.mnt)),
             sorted([hs, hsci]))
        t.check("and says so", "cleared the dead mount" in d2.log(), d2.log())

with t.section("a dead mount of another file system is refused with the fix"):
    img, mnt = t.path("x.sqfs"), t.path("mnt-other")
    os.makedirs(t.path("sqsrc"))
    os.makedirs(mnt)
    subprocess.run(["mksquashfs", t.path("sqsrc"), img, "-quiet", "-no-progress"], check=True,
                   capture_output=True)
    p = subprocess.Popen(["squashfuse_ll", "-f", img, mnt])
    try:
        wait_for(lambda: fs_lib.mounted(mnt) is not None)
        p.kill()
        p.wait()
        r = t.run([fs_lib.CONDAFSD, "--store", store, "-f", mnt], timeout=20)
        t.check("condafsd refuses, naming fusermount3 -u and umount -l",
                r.rc == 1 and f"fusermount3 -u {mnt}" in r.err and "umount -l" in r.err and
                fs_lib.mounted(mnt) != fs_lib.FUSE_TYPE, r)
    finally:
        if p.poll() is None:
            p.kill()
        subprocess.run(["umount", "-l", mnt], capture_output=True)

with t.section("the config file"):
    mnt = t.path("mnt-config")
    os.makedirs(mnt)
    conf = t.path("condafs.yml")
    with open(conf, "w") as f:
        f.write(f"store: {store}\nmountpoint: {mnt}\nthreads: 3\nlog_level: warning\n")
    p = subprocess.Popen([fs_lib.CONDAFSD, "--config", conf, "-f"], stderr=subprocess.PIPE)
    try:
        ok = wait_for(lambda: fs_lib.mounted(mnt) == fs_lib.FUSE_TYPE and fs_lib.answers(mnt))
        t.check("without arguments it serves the configured store at the configured mount "
                "point", ok is not None and sorted(os.listdir(mnt)) == sorted([hs, hsci]))
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        try:
            err = p.communicate(timeout=10)[1].decode()
        except subprocess.TimeoutExpired:
            p.kill()
            err = p.communicate()[1].decode()
        if fs_lib.mounted(mnt):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    t.check("and logs at the configured level (nothing below warning)",
            p.returncode == 0 and err == "", f"rc={p.returncode} stderr={err}")
    with open(conf, "w") as f:
        f.write("store: /x\nmount_point: /y\n")
    r = t.run([fs_lib.CONDAFSD, "--config", conf, "-f"], timeout=20)
    t.check("a bad key is an error naming the file and line", r.rc == 1 and
            f"{conf}:2: mount_point" in r.err, r)

with t.section("signals and detaching"):
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = t.daemon(store, t.path(f"mnt-{sig.name}")).start()
        os.listdir(d.mnt)
        d.proc.send_signal(sig)
        try:
            rc = d.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        t.check(f"{sig.name}: exits 0 and unmounts", rc == 0 and
                fs_lib.mounted(d.mnt) is None, f"rc={rc}\n{d.log()}")
        d.stop(quiet=True)
    mnt = t.path("mnt-bg")
    os.makedirs(mnt)
    r = t.run([fs_lib.CONDAFSD, "--store", store, mnt], timeout=20)
    t.check("without -f it returns once mounted", r.rc == 0 and
            fs_lib.mounted(mnt) == fs_lib.FUSE_TYPE, r)
    try:
        t.eq("and serves", sorted(os.listdir(mnt)), sorted([hs, hsci]))
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)

    def daemon_alive():
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if os.fsencode(mnt) in f.read():
                        return True
            except OSError:
                pass
        return False
    t.check("the detached daemon exits once unmounted",
            wait_for(lambda: not daemon_alive()) is not None)
    if fs_lib.mounted(mnt):
        subprocess.run(["umount", "-l", mnt], capture_output=True)

t.finish()
