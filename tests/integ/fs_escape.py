#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""User-chosen names never reach a terminal raw: a prefix and a file name holding terminal
escape sequences (ESC, BEL, a C1 CSI), a newline and a stray invalid byte go through ingest's
warning, show, gc, verify, cat's error line and the daemon's log escaped (\\x1b, \\n) on
one line each, and the JSON output escapes them as \\u001b."""

import errno
import json
import os
import time

import fs_lib
import lib

t = fs_lib.FsHarness("fs_escape: control bytes in names are escaped on every output")
EVIL = "evil\x1b]0;pwned\x07\x1b[2J\u009b31m\nname\udcff"
RAW = [b"\x1b", b"\x07", b"\xc2\x9b", b"\xff"]


def bad_bytes(text):
    """The raw control bytes of EVIL found in text (str from lib.run, or bytes)."""
    b = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return [x for x in RAW if x in b]


def one_line(t, what, text, needle):
    """text holds needle, escaped, on one line, and none of EVIL's raw bytes."""
    lines = [x for x in text.splitlines() if needle in x]
    t.check(what, len(lines) == 1 and not bad_bytes(text), text[-2000:])


with t.section("ingest, show, cat, verify, gc of a prefix and a file with escapes"):
    store = t.path("store")
    prefix = os.path.realpath(t.path()) + "/env-" + EVIL
    name = "bin/" + EVIL
    lib.make_prefix(prefix, files={name: b"#!/bin/sh\necho hi\n", "share/p.txt": b"x"})
    os.chmod(os.path.join(prefix, name), 0o4755)
    esc_name = "evil\\x1b]0;pwned\\x07\\x1b[2J\\xc2\\x9b31m\\nname\\xff"

    r = t.ingest(store, prefix)
    t.ok("ingest stores it", r)
    h = r.out.split()[0] if r.rc == 0 else None
    one_line(t, "ingest's warning names the file escaped, on one line", r.err,
             "env-" + esc_name + "/bin/" + esc_name + ": setuid")
    r = t.cfs(store, "show", h)
    one_line(t, "show prints the source prefix escaped", r.out, "env-" + esc_name)
    r = t.cfs(store, "ls")
    t.check("ls prints no raw control byte", r.rc == 0 and not bad_bytes(r.out), r)
    r = t.cfs(store, "--json", "ls")
    j = json.loads(r.out) if r.rc == 0 else [{}]
    t.check("ls --json escapes them and round-trips",
            j[0].get("source_prefix") == prefix.encode("utf-8", "surrogateescape").decode(
                "utf-8", "replace") and "\\u001b" in r.out and "\\u009b" in r.out
            and not bad_bytes(r.out), r)
    r = t.cfs(store, "cat", h, "bin/no-" + EVIL)
    t.fails_clearly("cat of a missing name: one error line", r, "no-" + esc_name)
    t.check("...with no raw control byte", not bad_bytes(r.err), r)

    # The file's pack goes missing: verify names every user, the daemon logs the read.
    nodes = lib.catalog_nodes(store, h)
    row = nodes[name.encode("utf-8", "surrogateescape")]
    obj = lib.catalog_object(store, row["obj"])
    img = lib.catalog_object(store, obj["pack"]) if obj["pack"] else obj
    os.unlink(lib.object_file(store, img["key"]))
    r = t.cfs(store, "verify")
    one_line(t, "verify names the user of the missing object escaped", r.out,
             h + "/bin/" + esc_name)
    with t.daemon(store) as d:
        t.eq("reading it through the mount is EIO",
             fs_lib.errno_of(lambda: open(d.path(h, name), "rb").read()), errno.EIO)
    one_line(t, "condafsd logs the file escaped, on one line", d.log(),
             h + "/bin/" + esc_name + ":")

    lib.set_last_used(store, h, time.time() - 86400)
    r = t.cfs(store, "gc", "--unused-for", "1h")
    one_line(t, "gc names the removed environment's prefix escaped", r.out, "env-" + esc_name)
    r = t.cfs(store, "gc", "--unused-for", "x\x1b[2J")
    t.check("a bad argument is echoed escaped", r.rc == 2 and "x\\x1b[2J" in r.err
            and not bad_bytes(r.err), r)

t.finish()
