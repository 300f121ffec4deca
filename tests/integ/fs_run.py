#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Running environments through the mount: each corpus environment's python imports its
packages (numpy, scipy, torch, a pip-installed one) from MOUNTPOINT/<hash>, and strace shows
no open for writing and no EROFS inside the mount while it does (every .pyc is valid: exact
mtimes and sizes); an entry-point script runs through its shebang; a binary finds its data
through a compiled-in (NUL-padded) prefix; and the environment bind-mounted into a new
mount namespace at the same path, as containers do, runs there."""

import os
import re
import subprocess

import fs_lib

t = fs_lib.FsHarness("fs_run: python, entry points and binaries through the mount")

OPEN_RE = re.compile(r'^\d+\s+(?:open|openat|openat2|creat)\((?:[^,]*, )?"([^"]*)", ([A-Z_|]+)')
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")
# Extra imports that load compiled extensions, per corpus environment.
MORE = {"sci": ["scipy.linalg", "scipy.special"], "torch": []}


def strace_problems(path, mnt):
    """Lines of an strace log that open a path in the mount for writing, or got EROFS."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if "EROFS" in line:
                out.append(line.rstrip())
                continue
            m = OPEN_RE.match(line)
            if m and m.group(1).startswith(mnt) and any(w in m.group(2) for w in WRITE_FLAGS):
                out.append(line.rstrip())
    return out


with t.section("imports through the mount, no write attempts"):
    store, hashes = t.base_store()
    with t.daemon(store) as d:
        for name in ("small", "sci", "torch"):
            h = hashes[name]
            env = d.path(h)
            mods = t.env(name)["run"]["imports"] + MORE.get(name, [])
            code = ("import sys, " + ", ".join(mods) + "\n"
                    "for m in " + repr(mods) + ": print(sys.modules[m].__file__)\n"
                    "print(sys.prefix)\n")
            log = t.path(f"strace-{name}.log")
            r = t.run_env(env, [os.path.join(env, "bin", "python3"), "-c", code], strace=log)
            lines = r.out.splitlines()
            t.check(f"{name}: bin/python3 -c 'import {', '.join(mods)}' from the mount",
                    r.rc == 0 and len(lines) == len(mods) + 1 and
                    all(x.startswith(env + "/") for x in lines[:-1]) and lines[-1] == env, r)
            bad = strace_problems(log, d.mnt + "/")
            t.check(f"{name}: no open for writing and no EROFS in the mount during the import",
                    not bad and os.path.getsize(log) > 0, "\n".join(bad[:20]))

        h = hashes["small"]
        env = d.path(h)
        r = t.run_env(env, [os.path.join(env, "bin", "pip"), "--version"])
        with open(os.path.join(env, "bin", "pip"), "rb") as f:
            shebang = f.readline().decode().strip()
        t.check("bin/pip runs through its shebang, which points into the mount",
                r.rc == 0 and shebang == f"#!{env}/bin/python3.11" and
                f"{env}/lib/python3.11/site-packages/pip" in r.out, f"{shebang}\n{r}")
        spec = t.env("small")
        r = t.run_env(env, [os.path.join(env, spec["run"]["binary_slot_program"])])
        t.eq("corpus-hello-bin finds its data through its compiled-in prefix", r.out,
             spec["verify"]["corpus_hello_bin"]["stdout"], r)

with t.section("the mount's readahead"):
    # The kernel sets it from the INIT reply (at most the 128 KiB it offered); condafsd
    # raises it through sysfs after that reply, or the raise would be undone.
    for args, want in (([], fs_lib.DEFAULT_READAHEAD_KB), (["--readahead", "1536"], 1536)):
        with t.daemon(store, args=args) as d:
            os.listdir(d.mnt)
            with open("/proc/self/mountinfo") as f:
                dev = next(line.split()[2] for line in f if line.split()[4] == d.mnt)
            with open(f"/sys/class/bdi/{dev}/read_ahead_kb") as f:
                got = int(f.read())
            t.eq(f"condafsd {' '.join(args) or '(default)'}: read_ahead_kb", got, want)

with t.section("bind-mounted into a new mount namespace at the same path"):
    with t.daemon(store) as d:
        h = hashes["torch"]
        env = d.path(h)
        stage = t.path("stage")
        os.makedirs(stage)
        # Hide the whole mount behind a tmpfs and bring back only this environment, read
        # only, at its own path: what `-v /envs/<hash>:/envs/<hash>:ro` does in a container.
        script = f"""set -e
mount --make-rprivate /
mount --bind "{env}" "{stage}"
mount -t tmpfs -o size=1m tmpfs "{d.mnt}"
mkdir "{env}"
mount --bind "{stage}" "{env}"
mount -o remount,bind,ro "{env}"
umount "{stage}"
ls "{d.mnt}"
export LD_LIBRARY_PATH="{env}/lib"
exec "{env}/bin/python3" -c 'import torch, numpy; print(torch.__file__); print(numpy.ones(3).sum())'
"""
        r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                           text=True, timeout=300)
        lines = r.stdout.splitlines()
        t.check("only the environment is visible in the namespace, and its python runs there",
                r.returncode == 0 and lines == [h, f"{env}/lib/python3.11/site-packages/torch/"
                                                   "__init__.py", "3.0"],
                f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr[-2000:]}")
        t.check("the host's mount is untouched", sorted(os.listdir(d.mnt)) ==
                sorted(hashes.values()))

t.finish()
