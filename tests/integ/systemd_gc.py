#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""condafs-gc.service follows the configured store. The unit may write only the store
(ProtectSystem=strict); condafs-generator, run by systemd at boot and on daemon-reload,
writes the drop-in that names the config's store (here a path with a space and a '%', which
a unit file must quote and escape), and systemd-analyze verify accepts the unit with it.
systemd is not PID 1 here, so the sandbox's file system part is rebuilt as systemd builds
it, in a mount namespace of its own: every mount read-only, then each ReadWritePaths entry
of the unit and its drop-ins (in order, an empty one clearing the list) bound writable on
itself. There `condafs gc` fails on a store elsewhere with the unit alone (read-only file
system) and works with the drop-in. condafsd.service is Type=notify (fs_fresh checks the
datagram itself)."""

import os
import re
import subprocess

import lib

t = lib.Harness("systemd_gc: the gc unit writes the configured store, and only it")
UNITDIR = os.environ["UNITDIR"]
GENERATOR = os.environ["GENERATOR"]


def unit_paths(texts):
    """ReadWritePaths of a unit and its drop-ins, in order: [(path, ignore if missing)]."""
    paths = []
    for text in texts:
        for line in text.splitlines():
            m = re.match(r"^ReadWritePaths=(.*)$", line)
            if not m:
                continue
            if not m.group(1).strip():
                paths = []
                continue
            for word in re.findall(r'-?"[^"]*"|\S+', m.group(1)):
                ignore = word.startswith("-")
                word = word.lstrip("-").strip('"').replace("%%", "%")
                paths.append((word, ignore))
    return paths


def sandboxed(paths, cmd):
    """cmd in a mount namespace as ProtectSystem=strict and ReadWritePaths= build it."""
    script = ['set -e',
              'for m in $(awk \'{print $5}\' /proc/self/mountinfo | sort -u); do',
              '  mount -o remount,bind,ro "$(printf "%b" "$m")" 2>/dev/null || true',
              'done']
    for p, ignore in paths:
        q = "'" + p.replace("'", "'\\''") + "'"
        test = f"[ -e {q} ] && " if ignore else ""
        script.append(f"{test}mount --bind {q} {q} && mount -o remount,bind,rw {q} || "
                      f"{'true' if ignore else 'exit 111'}")
    script.append('exec "$@"')
    return t.run(["unshare", "-m", "--propagation", "private", "sh", "-c", "\n".join(script),
                  "sandbox"] + cmd)


with open(os.path.join(UNITDIR, "condafsd.service")) as f:
    t.check("condafsd.service is Type=notify", re.search(r"(?m)^Type=notify$", f.read()))
with open(os.path.join(UNITDIR, "condafs-gc.service")) as f:
    gc_unit = f.read()
t.check("condafs-gc.service is ProtectSystem=strict",
        re.search(r"(?m)^ProtectSystem=strict$", gc_unit))

store = t.path("srv dir", "condafs%store")
conf = t.path("condafs.yml")
with open(conf, "w") as f:
    f.write(f'store: "{store}"\ngc:\n  unused_for: 30d\n  grace: 1h\n')
prefix = lib.make_prefix(os.path.realpath(t.path("prefix")),
                         files={"share/a.txt": b"a\n" * 100})
t.ok("a store at the configured path", t.cfs(store, "ingest", prefix))

with t.section("the generator writes the drop-in naming the configured store"):
    gen = t.path("generator")
    os.makedirs(os.path.join(gen, "normal"))
    r = t.run([GENERATOR, os.path.join(gen, "normal"), os.path.join(gen, "early"),
               os.path.join(gen, "late")], env={"CONDAFS_CONFIG": conf})
    t.ok("condafs-generator exits 0", r)
    dropin = os.path.join(gen, "normal", "condafs-gc.service.d", "50-store.conf")
    text = open(dropin).read() if os.path.exists(dropin) else ""
    t.eq("its ReadWritePaths are the store alone", unit_paths([gc_unit, text]),
         [(store, True)], text)
    bad = t.path("bad.yml")
    with open(bad, "w") as f:
        f.write("store: relative/path\n")
    r = t.run([GENERATOR, os.path.join(gen, "normal")], env={"CONDAFS_CONFIG": bad})
    t.check("a store that is no absolute path: an error naming the config, nothing written",
            r.rc == 1 and bad in r.err and "absolute" in r.err and
            open(dropin).read() == text, r)

with t.section("systemd-analyze verify accepts the unit with the drop-in"):
    v = t.path("verify")
    os.makedirs(os.path.join(v, "condafs-gc.service.d"))
    with open(os.path.join(v, "condafs-gc.service"), "w") as f:
        f.write(re.sub(r"(?m)^ExecStart=\S*/condafs ", f"ExecStart={t.condafs} ", gc_unit))
    with open(os.path.join(v, "condafs-gc.service.d", "50-store.conf"), "w") as f:
        f.write(text)
    r = t.run(["systemd-analyze", "verify", os.path.join(v, "condafs-gc.service")])
    t.check("no complaint", r.rc == 0 and not r.out.strip() and not r.err.strip(), r)

with t.section("gc under the unit's file system sandbox"):
    gc = [t.condafs, "--config", conf, "gc", "--unused-for", "0s"]
    r = sandboxed(unit_paths([gc_unit]), gc)
    t.check("the unit alone: gc cannot write a store configured elsewhere (it fails, "
            "naming it)", r.rc == 1 and store in r.err, r)
    r = sandboxed(unit_paths([gc_unit, text]), gc)
    t.ok("with the generator's drop-in: gc runs", r)
    r = sandboxed(unit_paths([gc_unit, text]), ["touch", t.path("outside")])
    t.check("...and nothing outside the store is writable", r.rc != 0 and
            not os.path.exists(t.path("outside")), r)

t.finish()
