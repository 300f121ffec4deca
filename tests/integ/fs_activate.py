#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""condafs run and shell-hook on environments served by a real condafsd (README, "Using an
environment"). Hand-made prefixes declare variables (conda-meta/state as `conda env config
vars set` writes it, a package's etc/conda/env_vars.d) and have activate.d scripts (CUDA_HOME,
GDAL_DATA, an unset, one printing); ingest warns of a script that writes into the prefix.
run gives the command conda's variables, the declared ones and the scripts' exports, by tag,
hash, hash prefix, lock file and directory; the command's exit status, death by a signal,
stdin and stdout are its own; a script's write fails with EROFS and the command still runs;
a user (nobody, through setpriv) gets the same through the mount, and so does a container
that bind-mounts only the environment; nothing is written (the store's catalog and objects,
HOME and TMPDIR stay as they were). shell-hook's code is eval'd by real bash, zsh and fish and
gives what run gives; --json parses. Bad input is one line and a non-zero exit."""

import json
import os
import shutil
import subprocess

import fs_lib
import lib

t = fs_lib.FsHarness("fs_activate: run and shell-hook through the mount")

QUOTED = "it's a \"q\" \\ $HOME `x` *\n2nd line"
STATE = {"env_vars": {"my_var": "from-state", "QUOTED": QUOTED, "DROPPED": "***unset***",
                      "PATH": "/never"}}
CUDA_SH = ('export CUDA_HOME="$CONDA_PREFIX"\nexport CUDA_PATH="$CUDA_HOME/bin"\n'
           'echo "cuda activated for $CONDA_DEFAULT_ENV"\n')
GDAL_SH = ('export GDAL_DATA="${CONDA_PREFIX}/share/gdal"\nexport SEEN_MY_VAR="$MY_VAR"\n'
           'unset UNSET_ME\ncd /\n')
WRITER_SH = 'touch "$CONDA_PREFIX/x"\nexport AFTER_WRITE=1\n'
HELLO = '#!/bin/sh\necho "hello from $0 with $#"\n'
# What every run starts from besides PATH: a variable a script unsets, and a clean HOME and
# TMPDIR that must stay empty.
home, tmpdir = t.path("home"), t.path("tmpdir")
os.makedirs(home)
os.makedirs(tmpdir)
os.chmod(home, 0o777)
os.chmod(tmpdir, 0o777)
BASE = {"HOME": home, "TMPDIR": tmpdir, "UNSET_ME": "here", "PATH": "/usr/local/bin:/usr/bin:/bin"}
for k in ("CONDA_SHLVL", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_PROMPT_MODIFIER",
          "CUDA_HOME", "CUDA_PATH"):
    os.environ.pop(k, None)


def prefix(name, pkg, files, state=None):
    p = lib.make_prefix(t.path(name), pkgs=((pkg, "1.0", "h0_0"),), files=files)
    if state is not None:
        lib.write(os.path.join(p, "conda-meta", "state"),
                  state if isinstance(state, (str, bytes)) else json.dumps(state))
    return p


main = prefix("main", "demo", {
    "etc/conda/env_vars.d/pkg.json": json.dumps({"PKG_VAR": "from-pkg", "MY_VAR": "loses"}),
    "etc/conda/activate.d/cuda.sh": CUDA_SH,
    "etc/conda/activate.d/gdal.sh": GDAL_SH,
    "etc/conda/activate.d/not-sh.csh": "setenv NOT_SOURCED 1\n",
    "bin/hello": HELLO,
}, STATE)
os.chmod(os.path.join(main, "bin", "hello"), 0o755)
os.symlink("/usr/bin/python3", os.path.join(main, "bin", "python3"))
writer = prefix("writer", "writes", {"etc/conda/activate.d/touch.sh": WRITER_SH,
                                     "etc/conda/activate.d/fine.sh": "export FINE=1\n"})
notjson = prefix("notjson", "notjson", {}, "{\"env_vars\": {\"A\": ")
big = prefix("big", "big", {}, "{" + " " * (2 << 20) + "}")
ender = prefix("ender", "ender", {"etc/conda/activate.d/exit.sh": "exit 3\n"})

store = t.path("store")
hashes = {}
with t.section("ingest warns of an activate.d script that writes into the prefix"):
    for name, p in (("main", main), ("writer", writer), ("notjson", notjson), ("big", big),
                    ("ender", ender)):
        r = t.ingest(store, p)
        t.ok(f"ingest {name}", r)
        hashes[name] = r.out.strip()
        if name == "writer":
            w = r.warnings()
            t.check("one warning, naming etc/conda/activate.d/touch.sh and EROFS",
                    len(w) == 1 and f"{writer}/etc/conda/activate.d/touch.sh:" in w[0] and
                    "EROFS" in w[0] and "fine.sh" not in r.err, r)
        else:
            t.check(f"{name}: no warning", not r.warnings(), r)
    t.ok("tag py", t.cfs(store, "tag", "py", hashes["main"]))


def env0(out):
    return dict(e.split("=", 1) for e in out.split("\0") if e)


def run(d, env, *cmd, user=None, extra=None, input=None):
    e = dict(BASE)
    e.update(extra or {})
    return t.cfs(store, "--mount", d.mnt, "run", env, *cmd, env=e, user=user, input=input)


def store_state():
    """What must not change: the environments and tags (not last_used, which condafsd
    keeps), and the store's files other than the catalog's database and what condafsd
    keeps while it serves (holds, mounts/: gc.c G4)."""
    envs = [{k: v for k, v in e.items() if k != "last_used"} for e in t.ls(store)]
    files = []
    for dp, dirs, fs in os.walk(store):
        for n in fs:
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, store)
            if not n.startswith("catalog.db") and rel != "holds" and \
                    not rel.startswith("mounts/"):
                st = os.lstat(p)
                files.append((rel, st.st_size, st.st_mtime_ns))
    return envs, sorted(files)


def expected(d, h, name):
    env = d.path(h)
    return {
        "PATH": f"{env}/bin:{BASE['PATH']}", "CONDA_PREFIX": env, "CONDA_SHLVL": "1",
        "CONDA_DEFAULT_ENV": name, "CONDA_PROMPT_MODIFIER": f"({name}) ",
        "MY_VAR": "from-state", "PKG_VAR": "from-pkg", "QUOTED": QUOTED,
        "CUDA_HOME": env, "CUDA_PATH": f"{env}/bin", "GDAL_DATA": f"{env}/share/gdal",
        "SEEN_MY_VAR": "from-state",
    }


def check_env(what, got, want, unset=("UNSET_ME",), absent=("DROPPED", "NOT_SOURCED")):
    bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    bad.update({k: (got[k], None) for k in tuple(unset) + tuple(absent) if k in got})
    if got.get("PWD") == "/":
        bad["PWD"] = ("/", "not the cd of a script")
    t.check(what, not bad, "\n".join(f"{k}: got {g!r} want {w!r}" for k, (g, w) in bad.items()))


before = store_state()
with t.daemon(store) as d:
    h = hashes["main"]
    want = expected(d, h, "py")

    with t.section("run: conda's variables, the declared ones, the scripts' exports"):
        r = run(d, "py", "/usr/bin/env", "-0")
        t.ok("run py /usr/bin/env -0 (no --, the command's -0 is its own)", r)
        check_env("PATH, CONDA_*, state and env_vars.d variables, CUDA_HOME, GDAL_DATA, "
                  "UNSET_ME unset, not the .csh, PWD kept", env0(r.out), want)
        t.check("what a script echoes goes to stderr, not the command's stdout",
                "cuda activated for py" in r.err and "cuda activated" not in r.out, r)
        for name, arg in (("hash", h), ("hash prefix", h[:8])):
            r = run(d, arg, "--", "/usr/bin/env", "-0")
            check_env(f"by {name}: the same, CONDA_DEFAULT_ENV the hash", env0(r.out),
                      expected(d, h, h))
        lock = t.path("main.lock")
        lib.write(lock, lib.explicit_lock((("demo", "1.0", "h0_0"),)))
        r = run(d, lock, "/usr/bin/env", "-0")
        check_env("by lock file: its hash's environment", env0(r.out), expected(d, h, h))
        r = run(d, d.path(h), "/usr/bin/env", "-0")
        check_env("by directory: the same, named as conda names a prefix in envs/",
                  env0(r.out), expected(d, h, h) if os.path.basename(d.mnt) == "envs" else
                  expected(d, h, d.path(h)))
        r = run(d, "py", "hello", "a", "b")
        t.eq("a command found in the environment's bin/", r.out,
             f"hello from {d.path(h)}/bin/hello with 2\n")
        r = run(d, "py", "python3", "-c", "import os, sys; print(os.environ['CONDA_PREFIX'])")
        t.eq("python3 through the environment's bin/ sees CONDA_PREFIX", r.out.strip(),
             d.path(h))
        r = run(d, "py", "sh", "-c", 'echo "$CONDA_SHLVL $CONDA_PREFIX_1"',
                extra={"CONDA_SHLVL": "1", "CONDA_PREFIX": "/opt/other",
                       "PATH": "/opt/other/bin:/usr/bin:/bin"})
        t.eq("over an active environment: CONDA_SHLVL 2, CONDA_PREFIX_1 the old one",
             r.out, "2 /opt/other\n")

    with t.section("run: exit status, signals and stdin are the command's"):
        r = run(d, "py", "sh", "-c", "exit 42")
        t.eq("exit status 42 passed through", r.rc, 42)
        e = dict(os.environ)
        e.update(BASE)
        p = subprocess.run([t.condafs, "--store", store, "--mount", d.mnt, "run", "py", "--",
                            "sh", "-c", "kill -TERM $$"], env=e, capture_output=True)
        t.eq("killed by SIGTERM: the status says so", p.returncode, -15, p.stderr)
        r = run(d, "py", "cat", input=b"through stdin\n")
        t.eq("stdin reaches the command", r.out, "through stdin\n")
        r = run(d, "py", "no-such-command-here")
        t.check("a missing command: 127 and one line naming it (after the script's echo)",
                r.rc == 127 and r.errors() == [
                    "cuda activated for py",
                    "condafs: run: no-such-command-here: No such file or directory"], r)

    with t.section("an activate.d script that writes: EROFS, and the command runs"):
        r = run(d, hashes["writer"], "sh", "-c", 'echo "ran $AFTER_WRITE $FINE"')
        t.check("the command ran with what the scripts set", r.rc == 0 and
                r.out == "ran 1 1\n", r)
        t.check("the script's error shows: touch, the path, read-only file system",
                "touch" in r.err and f"{d.path(hashes['writer'])}/x" in r.err and
                "Read-only file system" in r.err, r)
        t.check("nothing was made", not os.path.lexists(d.path(hashes["writer"], "x")))

    with t.section("a user (nobody) through the mount"):
        r = run(d, "py", "/usr/bin/env", "-0", user="nobody")
        t.ok("nobody: run py", r)
        check_env("nobody gets the same variables", env0(r.out), want)
        r = run(d, "py", "id", "-un", user="nobody")
        t.eq("the command runs as nobody", r.out.strip(), "nobody")
        r = t.cfs(store, "--mount", d.mnt, "shell-hook", "py", env=BASE, user="nobody")
        t.ok("nobody: shell-hook py", r)

    with t.section("a container that bind-mounts only the environment"):
        env = d.path(h)
        r = t.run(["bwrap", "--dev-bind", "/", "/", "--tmpfs", d.mnt, "--ro-bind", env, env,
                   "--unshare-pid", "--die-with-parent", "--",
                   t.condafs, "run", env, "--", "sh", "-c",
                   'ls "$(dirname "$CONDA_PREFIX")"; echo "$CUDA_HOME"; hello'], env=BASE)
        t.check("condafs run DIR inside: the variables, and bin/ on PATH",
                r.rc == 0 and r.out == f"{h}\n{env}\nhello from {env}/bin/hello with 0\n", r)

    with t.section("shell-hook: eval'd by real shells, the same as run"):
        got = {}
        cf = f"{t.condafs} --store {store} --mount {d.mnt}"
        shells = {"bash": ["bash", "-c", f'eval "$({cf} shell-hook py)" && /usr/bin/env -0'],
                  "zsh": ["zsh", "-c", f'eval "$({cf} shell-hook py --shell zsh)" && '
                          '/usr/bin/env -0'],
                  "fish": ["fish", "-c", f'{cf} shell-hook py --shell fish | source; '
                           'and /usr/bin/env -0']}
        for sh, cmd in shells.items():
            if not shutil.which(sh):
                t.check(f"{sh} is installed (tools/bootstrap)", False)
                continue
            # fish makes its own ~/.config and ~/.local: not condafs's to answer for.
            shell_home = t.path(f"home-{sh}")
            os.makedirs(shell_home)
            r = t.run(cmd, env=dict(BASE, HOME=shell_home))
            got[sh] = env0(r.out)
            check_env(f"{sh}: eval'd, its environment has what run gives", got[sh], want)
        r = t.cfs(store, "--mount", d.mnt, "--json", "shell-hook", "py", env=BASE)
        try:
            j = json.loads(r.out)
        except ValueError:
            j = None
        t.check("--json parses: pixi's {\"environment_variables\": {...}}",
                isinstance(j, dict) and list(j) == ["environment_variables"], r)
        ev = (j or {}).get("environment_variables", {})
        check_env("--json holds every variable set, PATH whole", ev, want, unset=())
        t.check("--json: the variables run sets and no others",
                set(ev) == set(want), sorted(set(ev) ^ set(want)))

    with t.section("bad input: one line, non-zero"):
        t.fails_clearly("unknown ENV", run(d, "no-such-env", "true"), "no-such-env")
        t.fails_clearly("state not JSON", run(d, hashes["notjson"], "true"),
                        f"{d.path(hashes['notjson'])}/conda-meta/state")
        t.fails_clearly("state too large", run(d, hashes["big"], "true"),
                        f"{d.path(hashes['big'])}/conda-meta/state", "larger than")
        t.fails_clearly("a script that ends the shell",
                        run(d, hashes["ender"], "true"),
                        f"{d.path(hashes['ender'])}/etc/conda/activate.d/exit.sh", "status 3")
        t.fails_clearly("shell-hook of state not JSON",
                        t.cfs(store, "--mount", d.mnt, "shell-hook", hashes["notjson"],
                              env=BASE), "conda-meta/state")
        r = t.cfs(store, "--mount", d.mnt, "shell-hook", "py", "--shell", "tcsh", env=BASE)
        t.check("shell-hook --shell tcsh: usage, exit 2", r.rc == 2 and "tcsh" in r.err, r)
        r = t.cfs(store, "--mount", d.mnt, "run", "py", env=BASE)
        t.check("run without a command: usage, exit 2", r.rc == 2, r)
        t.fails_clearly("a directory that is no environment",
                        t.cfs(store, "run", t.path("home"), "true", env=BASE), "conda-meta")

with t.section("nothing written"):
    after = store_state()
    t.eq("the store's environments and tags are as before", after[0], before[0])
    t.eq("the store's files are as before", after[1], before[1])
    t.eq("HOME and TMPDIR are still empty", (os.listdir(home), os.listdir(tmpdir)), ([], []))

with t.section("the daemon is gone: a tag is one line"):
    t.fails_clearly("run py with no condafsd at the mount point",
                    run(fs_lib.Daemon(t, store, t.path("mnt")), "py", "true"), "not served")

t.finish()
