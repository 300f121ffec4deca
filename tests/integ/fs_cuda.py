#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The CUDA driver check (README, "The CUDA driver check"). Real prefixes whose packages
say what CUDA they need (cuda-version, cuda-cudart, cudatoolkit, pytorch-cuda, pytorch
build strings), real locks (the pixi.lock v7 fixture whose platform declares __cuda=12, an
explicit lock of a stored environment, pixi.lock v6 and conda-lock.yml whose packages
depend on __cuda): `condafs check` prints the need and where it came from, the driver and
the verdict, with exit 0 when the driver runs it (or nothing is needed) and 1 when not, the
driver given by --driver or CONDAFS_DRIVER_VERSION, and this host's own (none here: no
/proc/driver/nvidia/version). ls --json and show carry the need, for root from the store
and for a user (nobody) through a real mount, who also runs check and gets what root gets.
"""

import json
import os
import shutil

import fs_lib
import lib

t = fs_lib.FsHarness("fs_cuda: the CUDA driver check")
wait_for = fs_lib.wait_for

ENVS = {
    # name: (packages, need, source)
    "cu118": ([("cuda-version", "11.8", "h70ddcb2_3"),
               ("pytorch", "2.3.1", "cuda118_py311h0047a46_300"),
               ("python", "3.11.9", "hb806964_0_cpython")],
              "11.8", "cuda-version 11.8"),
    "cu124": ([("cuda-version", "12.4", "h3060b56_3"),
               ("cuda-cudart", "12.4.127", "he02047a_2"),
               ("pytorch", "2.4.0", "cuda120_py310h2c91c31_301")],
              "12.4", "cuda-version 12.4"),
    "pt-channel": ([("pytorch", "2.3.1", "py3.10_cuda11.8_cudnn8.7.0_0"),
                    ("pytorch-cuda", "12.1", "ha16c6d3_6")],
                   "12.1", "pytorch-cuda 12.1"),
    "cuda102": ([("cudatoolkit", "10.2.89", "h713d32c_11")], "10.2", "cudatoolkit 10.2.89"),
    "cpu": ([("pytorch", "2.3.1", "py3.10_cpu_0"), ("python", "3.10.14", "h0_0")], None, None),
}

store = t.path("store")
H = {}
for name, (pkgs, _, _) in ENVS.items():
    H[name] = t.ingest_hash(store, lib.make_prefix(t.path("src", name), pkgs=pkgs))
    t.ok(f"tag {name}", t.cfs(store, "tag", name, H[name]))


def check(*args, env=None, user=None, mnt=None):
    pre = ["--mount", mnt] if mnt else []
    return t.cfs(store, *pre, "check", *args, env=env, user=user)


def check_json(*args, **kw):
    r = check("--json", *args, **kw)
    try:
        return r, json.loads(r.out)
    except ValueError:
        return r, None


def lines(r):
    return dict(l.split(None, 1) for l in r.out.splitlines() if l.strip())


HOST_DRIVER = os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")

with t.section("check: the need, the driver, the verdict and the exit code"):
    r = check("cu118", "--driver", "535.104.05")
    got = lines(r)
    t.eq("exit 0 when the driver fits", r.rc, 0, r)
    t.eq("the environment", got.get("environment"), f"{H['cu118']} (cu118)")
    t.eq("the need and where it came from", got.get("CUDA"), "11.8, from cuda-version 11.8")
    t.eq("the driver and where it came from", got.get("driver"), "535.104.05, from --driver")
    t.eq("the verdict", got.get("verdict"), "fits: CUDA 11.8 needs driver >= 520.61.05")
    r = check("cu118", "--driver", "470.57.02")
    t.eq("an older 11.x-family driver: exit 0", r.rc, 0, r)
    t.eq("...by minor-version compatibility, naming what it lacks", lines(r).get("verdict"),
         "fits by minor-version compatibility: CUDA 11.8 runs on driver >= 450.80.02, but "
         "features such as PTX JIT need >= 520.61.05")
    r = check("cu118", "--driver", "418.39")
    t.eq("a driver too old: exit 1", r.rc, 1, r)
    t.eq("...saying what it needs and what the host has", lines(r).get("verdict"),
         "too old: CUDA 11.8 needs driver >= 520.61.05, or >= 450.80.02 with minor-version "
         "compatibility; this host has 418.39")
    t.eq("...and nothing on stderr", r.err, "")
    r = check("cu124", "--driver", "535.104.05")
    t.eq("12.4 on a 535 driver: exit 0 (compatibility)", r.rc, 0, r)
    t.check("...said so", "fits by minor-version compatibility" in r.out, r)
    r = check("cu124", "--driver", "520.61.05")
    t.eq("12.4 on a 520 driver: exit 1", r.rc, 1, r)
    r = check("cuda102", "--driver", "418.39")
    t.eq("10.2 has no minor-version compatibility: exit 1", r.rc, 1, r)
    t.eq("...needs 440.33", lines(r).get("verdict"),
         "too old: CUDA 10.2 needs driver >= 440.33; this host has 418.39")
    t.eq("pytorch-cuda 12.1 is stricter than the pytorch build's 11.8",
         lines(check("pt-channel", "--driver", "600.1")).get("CUDA"),
         "12.1, from pytorch-cuda 12.1")
    r = check("cpu", "--driver", "418.39")
    t.eq("no CUDA needed: exit 0", (r.rc, lines(r).get("CUDA"), lines(r).get("verdict")),
         (0, "none needed", "no CUDA needed"))
    r = check("cpu", "--driver", "none")
    t.eq("...also without a driver", r.rc, 0, r)

with t.section("check --json"):
    r, j = check_json(H["cu118"][:8], "--driver", "470.57.02")
    t.eq("by a prefix of the hash", (r.rc, j), (0, {
        "hash": H["cu118"], "cuda": "11.8", "cuda_source": "cuda-version 11.8",
        "driver": "470.57.02", "driver_source": "--driver", "verdict": "fits-minor-compat",
        "required_driver": "520.61.05", "compat_driver": "450.80.02",
        "message": "fits by minor-version compatibility: CUDA 11.8 runs on driver >= "
                   "450.80.02, but features such as PTX JIT need >= 520.61.05"}), r)
    r, j = check_json("cpu", "--driver", "none")
    t.eq("no CUDA, no driver", (r.rc, j and j["cuda"], j and j["driver"],
                                j and j["verdict"], j and j["driver_source"]),
         (0, None, None, "not-needed", "--driver none"), r)
    r, j = check_json("cu118", "--driver", "none")
    t.eq("CUDA needed and no driver: exit 1", (r.rc, j and j["verdict"]), (1, "no-driver"), r)

with t.section("the driver from CONDAFS_DRIVER_VERSION, and this host's"):
    r = check("cu118", env={"CONDAFS_DRIVER_VERSION": "418.39"})
    t.eq("CONDAFS_DRIVER_VERSION is the driver", (r.rc, lines(r).get("driver")),
         (1, "418.39, from CONDAFS_DRIVER_VERSION"), r)
    r = check("cu118", "--driver", "535.104.05", env={"CONDAFS_DRIVER_VERSION": "418.39"})
    t.eq("--driver wins over it", (r.rc, lines(r).get("driver")),
         (0, "535.104.05, from --driver"), r)
    r = check("cu118", env={"CONDAFS_DRIVER_VERSION": "none"})
    t.eq("CONDAFS_DRIVER_VERSION=none: no driver", (r.rc, lines(r).get("driver")),
         (1, "none (CONDAFS_DRIVER_VERSION none)"), r)
    t.fails_clearly("a driver that is no version: one line", check("cu118", "--driver", "5x"),
                    "--driver", "'5x' is not a driver version")
    t.fails_clearly("...also from the environment",
                    check("cu118", env={"CONDAFS_DRIVER_VERSION": "latest"}),
                    "CONDAFS_DRIVER_VERSION", "'latest'")
    if HOST_DRIVER:
        r = check("cpu")
        t.check("this host has a driver: check names it", r.rc == 0 and
                ("from /proc/driver/nvidia/version" in r.out or "from nvidia-smi" in r.out), r)
    else:
        r = check("cu118")
        t.eq("this host has no driver: exit 1", r.rc, 1, r)
        t.eq("...and says so", lines(r).get("driver"),
             "none (no /proc/driver/nvidia/version and no nvidia-smi)")
        t.eq("...in the verdict", lines(r).get("verdict"),
             "no driver: CUDA 11.8 needs driver >= 520.61.05, or >= 450.80.02 with "
             "minor-version compatibility, and this host has none")
        t.eq("no CUDA needed runs anywhere", check("cpu").rc, 0)
    t.fails_clearly("an unknown environment: one line", check("nosuch", "--driver", "1.0"),
                    "nosuch")

with t.section("check a lock: the need and hash from the lock alone"):
    nostore = ["--store", t.path("no-store-here")]
    lock = t.path("cu118.lock")
    lib.write(lock, lib.explicit_lock(ENVS["cu118"][0]))
    r, j = t.cfs(None, *nostore, "--json", "check", lock, "--driver", "520.61.05"), None
    try:
        j = json.loads(r.out)
    except ValueError:
        pass
    t.eq("an explicit lock of a stored environment: its hash, its need, no store",
         (r.rc, j and j["hash"], j and j["cuda"], j and j["verdict"]),
         (0, H["cu118"], "11.8", "fits"), r)
    t.check("no store was made", not os.path.exists(t.path("no-store-here")))
    v7 = os.path.join(t.fixtures, "conda", "lockfiles", "pixi-lock",
                      "v7-conditional-dependency-cuda", "pixi.lock")
    r = t.cfs(None, *nostore, "check", v7, "--platform", "linux-64-cuda", "--driver",
              "520.61.05")
    t.eq("pixi.lock v7: the platform's __cuda=12 (a 520 driver is too old)",
         (r.rc, lines(r).get("CUDA")), (1, "12.0, from __cuda 12 (platform linux-64-cuda)"), r)
    r = t.cfs(None, *nostore, "check", v7, "--platform", "linux-64-cuda", "--driver",
              "525.60.13")
    t.eq("...a 525.60.13 driver runs it", r.rc, 0, r)
    r = t.cfs(None, *nostore, "check", v7, "--platform", "linux-64", "--driver", "none")
    t.eq("...its plain linux-64 platform needs no CUDA",
         (r.rc, lines(r).get("CUDA")), (0, "none needed"), r)
    pixi = t.path("pixi.lock")
    lib.write(pixi, """version: 6
environments:
  default:
    channels:
    - url: https://channel.example.invalid/conda-forge/
    packages:
      linux-64:
      - conda: https://channel.example.invalid/conda-forge/linux-64/pytorch-2.4.0-cuda120_py310h2c91c31_301.conda
packages:
- conda: https://channel.example.invalid/conda-forge/linux-64/pytorch-2.4.0-cuda120_py310h2c91c31_301.conda
  sha256: 5ced96500d945fb286c9c838e54fa759aa04a7129c59800f0846b4335cee770d
  md5: 62ee74e96c5ebb0af99386de58cf9553
  depends:
  - __cuda >=12.2
  - __glibc >=2.17,<3.0.a0
""")
    r = t.cfs(None, *nostore, "check", pixi, "--driver", "530.30.02")
    t.eq("pixi.lock v6: a package's __cuda >=12.2 is stricter than its build's 12.0",
         (r.rc, lines(r).get("CUDA")), (0, "12.2, from __cuda >=12.2 (pytorch)"), r)
    t.check("...530 runs 12.2 by compatibility only",
            "fits by minor-version compatibility" in r.out, r)
    condalock = t.path("conda-lock.yml")
    lib.write(condalock, """version: 1
metadata:
  platforms:
  - linux-64
package:
- name: gpu-tool
  version: '1.0'
  manager: conda
  platform: linux-64
  dependencies:
    __cuda: '>=11.8'
  url: https://channel.example.invalid/conda-forge/linux-64/gpu-tool-1.0-h0_0.conda
  hash:
    md5: 62ee74e96c5ebb0af99386de58cf9553
  category: main
  optional: false
""")
    r = t.cfs(None, *nostore, "check", condalock, "--driver", "450.80.01")
    t.eq("conda-lock.yml: a package's __cuda >=11.8; 450.80.01 is too old",
         (r.rc, lines(r).get("CUDA")), (1, "11.8, from __cuda >=11.8 (gpu-tool)"), r)

with t.section("ls --json and show carry the need (root, from the store)"):
    envs = {e["hash"]: e for e in t.ls(store) or []}
    for name, (_, need, source) in ENVS.items():
        e = envs.get(H[name], {})
        t.eq(f"ls --json: {name}", (e.get("cuda"), e.get("cuda_source")), (need, source))
    r = t.cfs(store, "show", "cu118")
    t.check("show: a line for the need", r.rc == 0 and
            "# CUDA 11.8 (cuda-version 11.8)\n" in r.out, r)
    r = t.cfs(store, "show", "cpu")
    t.check("show: none needed", r.rc == 0 and "# CUDA: none needed\n" in r.out, r)
    r = t.cfs(store, "--json", "show", "cu124")
    j = json.loads(r.out) if r.rc == 0 else {}
    t.eq("show --json", (j.get("cuda"), j.get("cuda_source")), ("12.4", "cuda-version 12.4"))

with t.section("a user (nobody) sees the same through the mount"):
    t.eq("the store is 0700 (root's alone)", oct(os.stat(store).st_mode & 0o777), "0o700")
    with t.daemon(store) as d:
        with open(d.path(".condafs", "envs.json")) as f:
            published = {e["hash"]: e for e in json.load(f)}
        t.eq("envs.json carries the need",
             {n: published.get(H[n], {}).get("cuda") for n in ENVS},
             {n: ENVS[n][1] for n in ENVS})
        for args in (["--json", "ls"], ["show", "cu118"], ["--json", "show", "pt-channel"],
                     ["check", "cu118", "--driver", "470.57.02"],
                     ["--json", "check", H["cu124"][:6], "--driver", "520.61.05"],
                     ["check", "cpu", "--driver", "none"]):
            got = {}

            def same():
                got["root"] = t.cfs(store, *args)
                got["user"] = t.cfs(store, "--mount", d.mnt, *args, user="nobody")
                return (got["user"].rc, got["user"].out) == (got["root"].rc, got["root"].out)
            t.check(f"{' '.join(args)}: the user gets what root gets",
                    wait_for(same) is not None,
                    f"root: {got.get('root')}\nuser: {got.get('user')}")
        r = t.cfs(store, "--mount", d.mnt, "check", "cu124", "--driver", "520.61.05",
                  user="nobody")
        t.eq("...exit 1 for a driver too old", r.rc, 1, r)
        r = t.cfs(store, "--mount", d.mnt, "check", "cu118", user="nobody",
                  env={"CONDAFS_DRIVER_VERSION": "535.104.05"})
        t.eq("...CONDAFS_DRIVER_VERSION for a user too", (r.rc, lines(r).get("driver")),
             (0, "535.104.05, from CONDAFS_DRIVER_VERSION"), r)
        t.fails_clearly("...an unknown environment: one line",
                        t.cfs(store, "--mount", d.mnt, "check", "nosuch", user="nobody"),
                        "nosuch")
        # A change remakes envs.json: the new environment's need is read, the others'
        # are kept (condafsd reads each environment's packages once).
        h121 = t.ingest_hash(store, lib.make_prefix(t.path("src", "cu121"), pkgs=[
            ("cuda-cudart", "12.1.105", "hd3aeb46_0")]))
        t.ok("tag cu121 while the mount runs", t.cfs(store, "tag", "cu121", h121))
        with open(d.path(".condafs", "envs.json")) as f:
            published = {e["hash"]: e for e in json.load(f)}
        t.eq("envs.json after the change: the new environment's need",
             (published.get(h121, {}).get("cuda"), published.get(h121, {}).get("cuda_source")),
             ("12.1", "cuda-cudart 12.1.105"))
        t.eq("...and every other one's still",
             {n: published.get(H[n], {}).get("cuda") for n in ENVS},
             {n: ENVS[n][1] for n in ENVS})
        r = t.cfs(store, "--mount", d.mnt, "check", "cu121", "--driver", "530.30.02",
                  user="nobody")
        t.eq("...and a user checks it at once", (r.rc, lines(r).get("CUDA")),
             (0, "12.1, from cuda-cudart 12.1.105"), r)

        with t.section("run warns, one line, when the driver is too old, and runs the command"):
            for who in ("root", "nobody"):
                user = None if who == "root" else "nobody"
                pre = ["--mount", d.mnt]
                r = t.cfs(store, *pre, "run", "--driver", "470.57.02", "cu124", "--", "echo",
                          "ran", user=user)
                w = r.err.splitlines()
                t.check(f"{who}: a driver too old for 12.4: one warning, the command runs",
                        r.rc == 0 and r.out == "ran\n" and len(w) == 1 and
                        w[0].startswith("condafs: run: warning: ") and "12.4" in w[0] and
                        "470.57.02" in w[0], r)
                for args, env, what in ((["--driver", "550.54.14"], None, "a driver that fits"),
                                        (["--driver", "none"], None, "no driver"),
                                        ([], {"CONDAFS_DRIVER_VERSION": "535.104.05"},
                                         "CONDAFS_DRIVER_VERSION that fits")):
                    r = t.cfs(store, *pre, "run", *args, "cu124", "--", "echo", "ran",
                              user=user, env=env)
                    t.check(f"{who}: {what}: no warning",
                            (r.rc, r.out, r.err) == (0, "ran\n", ""), r)
            r = t.cfs(store, "--mount", d.mnt, "run", "--driver", "470.57.02", "cpu", "--",
                      "true")
            t.check("an environment that needs no CUDA: no warning", (r.rc, r.err) == (0, ""), r)
            r = t.cfs(store, "--mount", d.mnt, "run", "--driver", "5x", "cu124", "--", "echo",
                      "ran")
            t.fails_clearly("a --driver that is no version: one line, and nothing runs", r, "5x")
            t.check("...nothing ran", "ran" not in r.out, r)
            r = t.cfs(store, "run", "--driver", "470.57.02", d.path(H["cu124"]), "--", "true")
            t.check("an environment's directory: the need from its conda-meta",
                    r.rc == 0 and "12.4" in r.err and "warning" in r.err, r)
            r = t.cfs(store, "run", "--driver", "470.57.02", d.path(H["cu118"]), "--", "true")
            t.check("...11.8 on 470: minor-version compatibility, no warning",
                    (r.rc, r.err) == (0, ""), r)

t.finish()
