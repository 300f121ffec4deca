#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""condafs kernel: a Jupyter kernelspec for a mounted environment, checked with Debian's
real jupyter-client. `jupyter kernelspec list` finds it (--prefix DIR through JUPYTER_PATH,
--user in the user's data dir), and a kernel started from it by jupyter_client's
KernelManager runs `import numpy` in the environment, through `condafs run`: sys.prefix is
the mount's MOUNT/<hash> and the activation's variables are set. As root and as nobody.
Also: an environment without ipykernel, bad names, an existing different kernelspec
(refused without --force), symlinks on the way (never followed), modes whatever the
umask."""

import json
import os
import stat
import sys

import fs_lib
import lib

t = fs_lib.FsHarness("fs_kernel: Jupyter kernelspecs run through condafs run")

# Runs in Debian's python3 (jupyter_client 7): start the kernel named argv[1], run code,
# print what the cell printed as JSON, shut the kernel down.
CLIENT = r"""
import json, sys
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name=sys.argv[1], startup_timeout=240)
out = []
try:
    reply = kc.execute_interactive(
        "import numpy, os, sys\n"
        "print(sys.prefix)\n"
        "print(numpy.__file__)\n"
        "print(os.environ.get('CONDA_PREFIX'), os.environ.get('CORPUS_HELLO_DATA'))\n"
        "print(int(numpy.arange(5).sum()))\n",
        output_hook=lambda m: out.append(m["content"].get("text", ""))
        if m["msg_type"] == "stream" else None, timeout=240)
    status = reply["content"]["status"]
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
print(json.dumps({"status": status, "out": "".join(out)}))
"""


def cfs(store, mnt, *args, user=None, env=None):
    return t.cfs(store, "--mount", mnt, *args, user=user, env=env)


def kernel_runs(what, name, mnt_env, env, user=None):
    """A kernel started from kernelspec name runs numpy in the environment at mnt_env."""
    r = t.run([sys.executable, "-c", CLIENT, name], env=env, user=user, timeout=600)
    try:
        got = json.loads(r.out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        got = None
    want = (f"{mnt_env}\n{mnt_env}/lib/python3.11/site-packages/numpy/__init__.py\n"
            f"{mnt_env} {mnt_env}/share/corpus-hello\n10\n")
    t.eq(what, got, {"status": "ok", "out": want}, r)


def listed(env, user=None):
    """`jupyter kernelspec list --json`: {name: resource_dir}."""
    r = t.run(["jupyter", "kernelspec", "list", "--json"], env=env, user=user)
    try:
        return {k: v["resource_dir"] for k, v in json.loads(r.out)["kernelspecs"].items()}
    except ValueError:
        return {"unreadable": r.out + r.err}


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


store, hashes = t.base_store()
os.makedirs(t.path("root-home"))
h = hashes["kernel"]
condafs = os.path.realpath(t.condafs)

with t.daemon(store) as d:
    mnt_env = d.path(h)

    with t.section("root: --prefix DIR, found through JUPYTER_PATH, runs numpy from the mount"):
        pre = t.path("prefix")
        r = t.run(["sh", "-c", 'umask 077; exec "$@"', "sh", t.condafs, "--store", store,
                   "--mount", d.mnt, "kernel", h[:8], "--prefix", pre])
        kdir = os.path.join(pre, "share", "jupyter", "kernels", f"condafs-{h[:12]}")
        t.eq("kernel HASH-PREFIX --prefix DIR says where it wrote",
             (r.rc, r.out), (0, f"kernelspec {kdir}/kernel.json: written\n"), r)
        with open(os.path.join(kdir, "kernel.json")) as f:
            spec = json.load(f)
        t.eq("kernel.json: argv runs ipykernel through condafs run <hash>, naming the "
             "store and mount it was made with", spec["argv"],
             [condafs, "--store", store, "--mount", d.mnt, "run", h, "--", "python", "-m",
              "ipykernel_launcher", "-f", "{connection_file}"])
        t.eq("kernel.json: display_name names the hash, language python",
             (spec["display_name"], spec["language"]), (f"Python (condafs {h[:12]})", "python"))
        t.eq("made under umask 077: directories 0755, kernel.json 0644",
             [mode(os.path.join(pre, *p)) for p in
              (["share"], ["share", "jupyter"], ["share", "jupyter", "kernels"],
               ["share", "jupyter", "kernels", f"condafs-{h[:12]}"],
               ["share", "jupyter", "kernels", f"condafs-{h[:12]}", "kernel.json"])],
             [0o755, 0o755, 0o755, 0o755, 0o644])
        jenv = {"JUPYTER_PATH": os.path.join(pre, "share", "jupyter"),
                "JUPYTER_RUNTIME_DIR": t.path("runtime-root"), "HOME": t.path("root-home")}
        t.eq("jupyter kernelspec list finds it", listed(jenv).get(f"condafs-{h[:12]}"), kdir)
        kernel_runs("a kernel started from it (jupyter_client) imports numpy from the mount: "
                    "sys.prefix is MOUNT/<hash>, the activation's variables set",
                    f"condafs-{h[:12]}", mnt_env, jenv)

        r = cfs(store, d.mnt, "kernel", h, "--prefix", pre)
        t.eq("written again: unchanged", (r.rc, r.out),
             (0, f"kernelspec {kdir}/kernel.json: unchanged (it held this already)\n"), r)
        with open(os.path.join(kdir, "kernel.json"), "a") as f:
            f.write(" ")
        r = cfs(store, d.mnt, "kernel", h, "--prefix", pre)
        t.fails_clearly("a different kernel.json there is refused without --force", r,
                        f"{kdir}/kernel.json", "--force")
        r = cfs(store, d.mnt, "kernel", h, "--prefix", pre, "--force")
        t.eq("--force replaces it", (r.rc, r.out),
             (0, f"kernelspec {kdir}/kernel.json: replaced (--force)\n"), r)
        with open(os.path.join(kdir, "kernel.json")) as f:
            t.eq("...with the kernelspec", json.load(f), spec)

    with t.section("ENV given as the environment's directory (a container's bind mount)"):
        r = cfs(store, d.mnt, "kernel", mnt_env, "--prefix", t.path("bydir"), "--name", "dirk")
        kd = t.path("bydir", "share", "jupyter", "kernels", "dirk")
        t.ok("kernel MOUNT/<hash> --name dirk", r)
        with open(os.path.join(kd, "kernel.json")) as f:
            argv = json.load(f)["argv"]
        t.eq("...its argv runs the directory itself", argv[argv.index("run") + 1], mnt_env)
        kernel_runs("...and a kernel started from it imports numpy from there", "dirk",
                    mnt_env, dict(jenv, JUPYTER_PATH=t.path("bydir", "share", "jupyter")))

    with t.section("--name, and what is refused"):
        r = cfs(store, d.mnt, "kernel", h, "--prefix", t.path("named"), "--name", "My.Env_1")
        t.check("--name My.Env_1 is lowercased as jupyter_client does",
                r.rc == 0 and os.path.isfile(t.path("named", "share", "jupyter", "kernels",
                                                    "my.env_1", "kernel.json")), r)
        for bad in ("a/b", "..", "x y", ""):
            r = cfs(store, d.mnt, "kernel", h, "--prefix", t.path("bad"), "--name", bad)
            t.check(f"--name {bad!r}: usage error, nothing written",
                    r.rc == 2 and len(r.errors()) == 1 and "--name" in r.err and
                    not os.path.exists(t.path("bad")), r)
        r = cfs(store, d.mnt, "kernel", h, "--user", "--prefix", t.path("bad"))
        t.check("--user with --prefix: usage error", r.rc == 2 and "choose one" in r.err, r)
        r = cfs(store, d.mnt, "kernel", hashes["small"], "--prefix", t.path("bad"))
        t.fails_clearly("an environment without ipykernel: one line, nothing written", r,
                        hashes["small"], "no ipykernel")
        t.check("...and no directory made", not os.path.exists(t.path("bad")))
        r = cfs(store, d.mnt, "kernel", "0000000000", "--prefix", t.path("bad"))
        t.fails_clearly("an unknown environment: one line", r, "0000000000")

    with t.section("symlinks on the way are not followed"):
        target = t.path("elsewhere")
        os.makedirs(target)
        linked = t.path("linked")
        os.makedirs(os.path.join(linked, "share"))
        os.symlink(target, os.path.join(linked, "share", "jupyter"))
        r = cfs(store, d.mnt, "kernel", h, "--prefix", linked)
        t.fails_clearly("share/jupyter a symlink: refused in one line", r, "jupyter",
                        "symbolic link")
        t.eq("...nothing written where it points", os.listdir(target), [])
        kd = t.path("linkfile", "share", "jupyter", "kernels", "k")
        os.makedirs(kd)
        os.symlink(os.path.join(target, "victim"), os.path.join(kd, "kernel.json"))
        r = cfs(store, d.mnt, "kernel", h, "--prefix", t.path("linkfile"), "--name", "k")
        t.fails_clearly("kernel.json a symlink: it differs, refused without --force", r,
                        "kernel.json", "--force")
        r = cfs(store, d.mnt, "kernel", h, "--prefix", t.path("linkfile"), "--name", "k",
                "--force")
        t.check("with --force the symlink itself is replaced by the file, its target not "
                "written", r.rc == 0 and not os.path.islink(os.path.join(kd, "kernel.json"))
                and os.listdir(target) == [], r)

    with t.section("a tagged environment: named and shown by its tag, run by its hash"):
        # ipykernel's package directory is all the kernelspec needs to find: this kernel
        # is written, not started.
        fake = lib.make_prefix(t.path("src", "fake"), files={
            "lib/python3.11/site-packages/ipykernel/__init__.py": ""})
        own = t.path("own-store")
        hf = t.ingest_hash(own, fake)
        t.ok("tag Py+Lab on it", t.cfs(own, "tag", "Py+Lab", hf))
        with t.daemon(own, mnt=t.path("mnt2")) as d2:
            r = t.cfs(own, "--mount", d2.mnt, "kernel", "Py+Lab", "--prefix", t.path("tagged"))
            kd = t.path("tagged", "share", "jupyter", "kernels", "condafs-py-lab")
            t.eq("kernel TAG: named condafs-TAG, lowercased, '+' made '-'", (r.rc, r.out),
                 (0, f"kernelspec {kd}/kernel.json: written\n"), r)
            with open(os.path.join(kd, "kernel.json")) as f:
                spec = json.load(f)
            t.eq("...its argv runs the hash (a moved tag does not change the kernel), its "
                 "display_name shows the tag and the hash",
                 (spec["argv"][spec["argv"].index("run") + 1], spec["display_name"]),
                 (hf, f"Python (condafs Py+Lab {hf[:12]})"))
            r = t.run(["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", t.tmp, t.condafs,
                       "--store", "own-store", "--mount", "mnt2", "kernel", "Py+Lab",
                       "--prefix", "rel", "--name", "rel"])
            with open(t.path("rel", "share", "jupyter", "kernels", "rel", "kernel.json")) as f:
                argv = json.load(f)["argv"]
            t.eq("--store and --mount given relative are absolute in the argv (Jupyter "
                 "starts kernels from anywhere)", argv[1:5],
                 ["--store", own, "--mount", os.path.realpath(d2.mnt)], r)

    with t.section("nobody: --user (the default), through the mount"):
        home = t.path("nobody-home")
        os.makedirs(home)
        os.chown(home, 65534, 65534)
        nenv = {"HOME": home, "JUPYTER_RUNTIME_DIR": os.path.join(home, "runtime")}
        for k in ("JUPYTER_DATA_DIR", "XDG_DATA_HOME", "JUPYTER_PATH"):
            nenv[k] = ""
        r = cfs(store, d.mnt, "kernel", h, "--name", "nb", user="nobody", env=nenv)
        kdir = os.path.join(home, ".local", "share", "jupyter", "kernels", "nb")
        t.eq("nobody: kernel HASH --name nb writes ~/.local/share/jupyter/kernels/nb",
             (r.rc, r.out), (0, f"kernelspec {kdir}/kernel.json: written\n"), r)
        st = os.stat(os.path.join(kdir, "kernel.json"))
        t.eq("...owned by nobody", (st.st_uid, st.st_gid), (65534, 65534))
        t.eq("jupyter kernelspec list (as nobody, no JUPYTER_PATH) finds it",
             listed(nenv, user="nobody").get("nb"), kdir)
        kernel_runs("nobody's kernel imports numpy from the mount", "nb", mnt_env, nenv,
                    user="nobody")
        xdg = t.path("nobody-xdg")
        os.makedirs(xdg)
        os.chown(xdg, 65534, 65534)
        r = cfs(store, d.mnt, "kernel", h, "--name", "nb", user="nobody",
                env=dict(nenv, XDG_DATA_HOME=xdg))
        t.check("XDG_DATA_HOME is where --user writes when set (as jupyter_core reads it)",
                r.rc == 0 and os.path.isfile(os.path.join(xdg, "jupyter", "kernels", "nb",
                                                          "kernel.json")), r)
        if not os.path.exists("/usr/local/share/jupyter/kernels/nb"):
            r = cfs(store, d.mnt, "kernel", h, "--name", "nb", "--system", user="nobody",
                    env=nenv)
            t.fails_clearly("nobody --system: refused in one line naming the directory", r,
                            "/usr/local/share/jupyter/kernels/nb")

t.finish()
