#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""No import recompiles a module whose source holds the build prefix (store/pyc.c). A
module holding the prefix in strings of several kinds (a short one that grows past 255
bytes at the mount, bytes, a frozenset, a nested code object) and its timestamp pyc,
compiled by Debian's python3.11 at the build prefix: through the mount the pyc is valid
for the relocated source (its header's size follows it), importing it reads the pyc and
opens neither the source nor anything for writing (strace), and its constants name the
mount path; `condafs export` to another directory writes a pyc valid there, naming it, and a user's
export through the mount writes the same bytes as root's.
A hash-based pyc, one of an unknown magic and a truncated one are served as they are,
and the import still works (Python compiles their sources, as before)."""

import marshal
import os
import struct
import subprocess

import fs_lib
import lib

PY = "/usr/bin/python3.11"
SITE = os.path.join("lib", "python3.11", "site-packages")

t = fs_lib.FsHarness("fs_pyc: pycs served valid for relocated sources")
store = t.path("store")
src = os.path.realpath(t.path("src"))
# A long mount path: the short string below grows past 255 bytes there.
mnt = t.path("m" * 80)
P = src
pad = 250 - len(P) - 1
SHORT = P + "/" + "s" * pad
assert len(SHORT) < 256

MOD = f'''
PREFIX = {P!r}
LIBDIR = {P + "/lib"!r}
SHORT = {SHORT!r}
TWICE = {P + ":" + P + "/bin"!r}
LONG = {P + "/" + "l" * 300!r}
BYTES = {(P + "/bytes").encode()!r}
NESTED = ({P + "/share"!r}, frozenset({{{P + "/etc"!r}}}), {{"k": [{P + "/include"!r}]}})

def outer():
    def inner():
        return {P + "/in/nested/code"!r}
    return inner()

VALUES = [PREFIX, LIBDIR, SHORT, TWICE, LONG, BYTES.decode(), NESTED[0], sorted(NESTED[1])[0],
          NESTED[2]["k"][0], outer()]
'''
NAMES = ["pycmod", "hashmod", "magicmod", "truncmod"]
lib.make_prefix(src, pkgs=[("pycpkg", "1.0", "h0_0")])
site = os.path.join(src, SITE)
for name in NAMES:
    lib.write(os.path.join(site, name + ".py"), MOD, 0o644,
              mtime_ns=1700000000_123456789)
# The prefix in a comment only: the pyc holds none, but its header must follow the source.
lib.write(os.path.join(site, "commentmod.py"), f"# built at {P}\nVALUES = [1]\n", 0o644,
          mtime_ns=1700000000_123456789)
# Compiled at the build prefix by Debian's python, as a build would: timestamp mode for
# pycmod, checked hash for hashmod.
env = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATE_EPOCH",
                                                        "PYTHONDONTWRITEBYTECODE")}
subprocess.run([PY, "-c", f"""
import py_compile as c
for name, mode in [("pycmod", c.PycInvalidationMode.TIMESTAMP),
                   ("hashmod", c.PycInvalidationMode.CHECKED_HASH),
                   ("magicmod", c.PycInvalidationMode.TIMESTAMP),
                   ("truncmod", c.PycInvalidationMode.TIMESTAMP),
                   ("commentmod", c.PycInvalidationMode.TIMESTAMP)]:
    c.compile({site!r} + "/" + name + ".py", invalidation_mode=mode, doraise=True)
"""], check=True, env=env)
cache = os.path.join(site, "__pycache__")
TAG = "cpython-311.pyc"


def pyc_path(top, name):
    return os.path.join(top, SITE, "__pycache__", f"{name}.{TAG}")


def rewrite(name, fn):
    p = pyc_path(src, name)
    with open(p, "rb") as f:
        data = f.read()
    with open(p, "wb") as f:
        f.write(fn(data))


rewrite("magicmod", lambda d: b"\x01\x02\r\n" + d[4:])
rewrite("truncmod", lambda d: d[:10])
orig = {}
for name in NAMES:
    with open(pyc_path(src, name), "rb") as f:
        orig[name] = f.read()
t.check("the build pyc of pycmod holds the build prefix", P.encode() in orig["pycmod"])

h = t.ingest_hash(store, src)


def header_matches(top, name):
    """Python's check of a timestamp pyc against its source."""
    with open(pyc_path(top, name), "rb") as f:
        head = f.read(16)
    st = os.stat(os.path.join(top, SITE, name + ".py"))
    flags, mtime, size = struct.unpack("<III", head[4:16])
    return flags == 0 and mtime == int(st.st_mtime) & 0xFFFFFFFF and \
        size == st.st_size & 0xFFFFFFFF


def import_traced(top, name):
    """Import name from top's site-packages under strace: (result, strace lines)."""
    log = t.path(f"strace-{name}-{os.path.basename(top)}.log")
    e = {k: v for k, v in env.items()}
    code = (f"import sys; sys.path.insert(0, {os.path.join(top, SITE)!r}); import {name}; "
            f"print(repr({name}.VALUES))")
    r = subprocess.run(["strace", "-f", "-qq", "-o", log, "-e", "trace=%file,%desc",
                        "-e", "signal=none", PY, "-I", "-c", code],
                       capture_output=True, text=True, env=e, timeout=120)
    with open(log) as f:
        lines = f.read().splitlines()
    return r, lines


def want_values(new):
    return repr([v.replace(P, new) for v in [
        P, P + "/lib", SHORT, P + ":" + P + "/bin", P + "/" + "l" * 300, P + "/bytes",
        P + "/share", P + "/etc", P + "/include", P + "/in/nested/code"]])


def check_valid_import(top, what):
    """The pyc is valid for the source at top, read, no source opened, nothing written."""
    t.check(f"{what}: the pyc's header matches its source", header_matches(top, "pycmod"))
    r, lines = import_traced(top, "pycmod")
    t.check(f"{what}: import works", r.returncode == 0, r.stderr[-2000:])
    t.eq(f"{what}: the constants name {top}", r.stdout.strip(), want_values(top))
    py = os.path.join(top, SITE, "pycmod.py")
    pyc = pyc_path(top, "pycmod")
    t.check(f"{what}: the pyc is opened",
            any("open" in x and f'"{pyc}"' in x for x in lines), "\n".join(lines[-40:]))
    t.check(f"{what}: the source is not opened (stat only)",
            not [x for x in lines if "open" in x and f'"{py}"' in x],
            [x for x in lines if py in x])
    writes = [x for x in lines if "__pycache__" in x and
              ("O_WRONLY" in x or "O_CREAT" in x or "mkdir" in x or "rename" in x)]
    t.check(f"{what}: no pyc is written, nor tried", not writes, writes)


with t.section("through the mount"):
    with t.daemon(store, mnt) as d:
        top = d.path(h)
        data = open(pyc_path(top, "pycmod"), "rb").read()
        t.eq("st_size is the size served", os.stat(pyc_path(top, "pycmod")).st_size, len(data))
        t.check("the served pyc names the mount path, not the build prefix",
                top.encode() in data and P.encode() not in data)
        t.check("a short string grew past 255 bytes: 4-byte length",
                len(SHORT.replace(P, top)) > 255)
        check_valid_import(top, "the mount")
        t.check("commentmod: the pyc's header matches its source (prefix in a comment)",
                header_matches(top, "commentmod"))
        r, lines = import_traced(top, "commentmod")
        py = os.path.join(top, SITE, "commentmod.py")
        t.check("commentmod: imported from its pyc, the source not opened",
                r.returncode == 0 and r.stdout.strip() == "[1]" and
                not [x for x in lines if "open" in x and f'"{py}"' in x], (r, lines[-20:]))
        for name in ("hashmod", "magicmod", "truncmod"):
            t.eq(f"{name}: its pyc is served as it is",
                 open(pyc_path(top, name), "rb").read(), orig[name])
            r, lines = import_traced(top, name)
            t.check(f"{name}: import works (compiled from the source)", r.returncode == 0,
                    r.stderr[-2000:])
            t.eq(f"{name}: the constants name the mount path", r.stdout.strip(),
                 want_values(top))
            py = os.path.join(top, SITE, name + ".py")
            t.check(f"{name}: strace sees the source opened to be compiled",
                    any("open" in x and f'"{py}"' in x for x in lines))
        # Export through the mount, as a user's export reads it: the same bytes as root's.
        dest = t.path("exported")
        r = t.export(store, h, dest)
        t.check("condafs export", r.rc == 0, r)

with t.section("condafs export to another directory"):
    check_valid_import(dest, "export")

with t.section("a user's export through the mount: the pyc root's export writes"):
    mine = t.path("nobody-home")
    os.makedirs(mine)
    os.chown(mine, 65534, 65534)
    udest = os.path.join(mine, "env")
    with t.daemon(store, mnt) as d:
        r = t.cfs(store, "--mount", d.mnt, "export", h, udest, user="nobody")
        t.check("nobody exports the environment", r.rc == 0, r)
        rel = os.path.join(SITE, "__pycache__", f"pycmod.{TAG}")
        where = t.path("elsewhere")
        rr = t.cfs(store, "cat", h, rel, "--prefix", where)
        ru = t.cfs(store, "--mount", d.mnt, "cat", h, rel, "--prefix", where, user="nobody")
        t.check("cat of the pyc: nobody's bytes are root's", rr.rc == 0 and ru.rc == 0 and
                rr.out == ru.out, (rr, ru))
        rs = t.cfs(store, "cat", h, os.path.join(SITE, "pycmod.py"), "--prefix", where)
        pyc = rr.out.encode("utf-8", "surrogateescape")
        t.eq("cat of the pyc: its header names the source's size under that prefix",
             struct.unpack("<I", pyc[12:16])[0], len(rs.out.encode()))
        t.check("cat of the pyc: it names that prefix", where.encode() in pyc and
                P.encode() not in pyc)
    check_valid_import(udest, "nobody's export")
    mine_pycs = {n: open(pyc_path(udest, n), "rb").read() for n in NAMES}
    os.rename(udest, udest + ".nobody")
    r = t.export(store, h, udest)
    t.check("root's export to the same directory", r.rc == 0, r)
    for name in NAMES:
        t.eq(f"{name}: nobody's pyc is root's, byte for byte", mine_pycs[name],
             open(pyc_path(udest, name), "rb").read())

with t.section("export at the build prefix: the same objects as the build's pyc"):
    lib.Harness.rmtree(src)
    r = t.export(store, h, src)
    t.check("condafs export at the build prefix", r.rc == 0, r)
    with open(pyc_path(src, "pycmod"), "rb") as f:
        again = f.read()
    t.eq("the header is the build's", again[:16], orig["pycmod"][:16])
    t.check("the code loads equal to the build's",
            marshal.loads(again[16:]) == marshal.loads(orig["pycmod"][16:]))
    check_valid_import(src, "the build prefix")
    for name in ("hashmod", "magicmod", "truncmod"):
        t.eq(f"{name}: exported as it was", open(pyc_path(src, name), "rb").read(),
             orig[name])

t.finish()
