#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Nothing can be written: every write-type call on the mount fails with EROFS, both where
the kernel stops it (the mount is read-only) and where it reaches the daemon (the same
calls on a mount forced read-write with -o rw: the daemon's own handlers answer EROFS).
Every user reads (allow_other, default_permissions): nobody can list, read and run an
environment's python, and cannot write either."""

import errno
import fcntl
import os

import fs_lib
import lib

t = fs_lib.FsHarness("fs_rofs: EROFS for every write, every user reads")

store = t.path("store")
src = lib.make_prefix(t.path("src"), pkgs=[("ro", "1.0", "h0_0")])
lib.write(os.path.join(src, "share", "file.txt"), "read only\n", 0o644)
lib.write(os.path.join(src, "share", "secret.txt"), "root only\n", 0o600)
lib.write(os.path.join(src, "bin", "tool"), "#!/bin/sh\necho tool ran\n", 0o755)
os.makedirs(os.path.join(src, "share", "dir"))
os.symlink("file.txt", os.path.join(src, "share", "link"))
h = t.ingest_hash(store, src)


def try_call(fn):
    """The errno fn fails with, 0 if it succeeds."""
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno


def write_calls(env):
    f = os.path.join(env, "share", "file.txt")
    d = os.path.join(env, "share", "dir")
    new = os.path.join(env, "share", "new")

    def open_write(flags):
        def fn():
            fd = os.open(f, flags)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
        return fn

    def fd_call(call):
        # Only reachable with a writable descriptor: the -o rw mount.
        def fn():
            fd = os.open(f, os.O_RDWR)
            try:
                call(fd)
            finally:
                os.close(fd)
        return fn

    def copy_range():
        a = os.open(os.path.join(env, "bin", "tool"), os.O_RDONLY)
        b = os.open(f, os.O_WRONLY)
        try:
            os.copy_file_range(a, b, 10)
        finally:
            os.close(a)
            os.close(b)

    return {
        "open O_WRONLY + write": open_write(os.O_WRONLY),
        "open O_RDWR + write": open_write(os.O_RDWR),
        "open O_TRUNC": open_write(os.O_WRONLY | os.O_TRUNC),
        "open O_APPEND + write": open_write(os.O_WRONLY | os.O_APPEND),
        "create (open O_CREAT)": lambda: os.close(os.open(new, os.O_WRONLY | os.O_CREAT, 0o644)),
        "mknod (fifo)": lambda: os.mkfifo(new),
        "mkdir": lambda: os.mkdir(new),
        "rmdir": lambda: os.rmdir(d),
        "unlink": lambda: os.unlink(f),
        "rename": lambda: os.rename(f, new),
        "link": lambda: os.link(f, new),
        "symlink": lambda: os.symlink("x", new),
        "chmod (setattr)": lambda: os.chmod(f, 0o600),
        "chown (setattr)": lambda: os.chown(f, 1, 1),
        "utime (setattr)": lambda: os.utime(f, (0, 0)),
        "truncate (setattr)": lambda: os.truncate(f, 0),
        "setxattr": lambda: os.setxattr(f, "user.x", b"1"),
        "removexattr": lambda: os.removexattr(f, "user.x"),
        "fallocate": fd_call(lambda fd: os.posix_fallocate(fd, 0, 4096)),
        "copy_file_range": copy_range,
        "ftruncate": fd_call(lambda fd: os.ftruncate(fd, 0)),
        "flock + write": fd_call(lambda fd: (fcntl.flock(fd, fcntl.LOCK_EX), os.write(fd, b"x"))),
    }


with t.section("EROFS from a read-only mount (the kernel stops the call)"):
    with t.daemon(store) as d:
        env = d.path(h)
        for name, fn in write_calls(env).items():
            if name in ("fallocate", "ftruncate", "flock + write", "copy_file_range"):
                # No writable descriptor can be had: opening one is the EROFS.
                fn = write_calls(env)["open O_RDWR + write"]
            t.eq(f"{name}: EROFS", try_call(fn), errno.EROFS)
        with open(os.path.join(env, "share", "file.txt")) as f:
            t.eq("the file is unchanged", f.read(), "read only\n")

with t.section("EROFS from the daemon (a mount forced read-write with -o rw)"):
    with t.daemon(store, t.path("mnt-rw"), args=["-o", "rw"]) as d:
        env = d.path(h)
        opts = [line.split()[5] for line in open("/proc/self/mountinfo")
                if line.split()[4] == d.mnt]
        t.check("the mount is read-write, so calls reach the daemon",
                opts and opts[0].startswith("rw"), opts)
        for name, fn in write_calls(env).items():
            t.eq(f"{name}: EROFS from condafsd", try_call(fn), errno.EROFS)
        with open(os.path.join(env, "share", "file.txt")) as f:
            t.eq("the file is unchanged", f.read(), "read only\n")
        t.eq("entries are unchanged", sorted(os.listdir(os.path.join(env, "share"))),
             ["dir", "file.txt", "link", "secret.txt"])

with t.section("every user reads, nobody writes"):
    cstore, hashes = t.base_store()
    with t.daemon(store) as d, t.daemon(cstore, t.path("mnt-corpus")) as dc:
        env = d.path(h)
        r = t.run(["cat", os.path.join(env, "share", "file.txt")], user="nobody")
        t.check("nobody reads a file", r.rc == 0 and r.out == "read only\n", r)
        r = t.run(["cat", os.path.join(env, "share", "secret.txt")], user="nobody")
        t.check("nobody cannot read a 0600 file (default_permissions)", r.rc != 0 and
                "Permission denied" in r.err, r)
        r = t.run([os.path.join(env, "bin", "tool")], user="nobody")
        t.check("nobody runs a script", r.rc == 0 and r.out == "tool ran\n", r)
        r = t.run(["ls", d.mnt, env], user="nobody")
        t.check("nobody lists the root and an environment", r.rc == 0 and h in r.out, r)
        for what, cmd in [("append to a file", ["sh", "-c", f"echo x >> {env}/share/file.txt"]),
                          ("create a file", ["touch", f"{env}/share/new"]),
                          ("remove a file", ["rm", "-f", f"{env}/share/file.txt"]),
                          ("make a directory", ["mkdir", f"{d.mnt}/new"])]:
            r = t.run(cmd, user="nobody")
            t.check(f"nobody cannot {what}: read-only file system",
                    r.rc != 0 and "Read-only file system" in r.err, r)
        ce = dc.path(hashes["small"])
        r = t.run_env(ce, [os.path.join(ce, "bin", "python3"), "-c",
                           "import numpy; print(numpy.arange(4).sum())"], user="nobody")
        t.check("nobody imports numpy from the mount", r.rc == 0 and r.out == "6\n", r)

t.finish()
