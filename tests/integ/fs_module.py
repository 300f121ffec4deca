#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""condafs module: modulefiles for a mounted environment, loaded by Debian's real Lmod in a
real bash (/usr/share/lmod/lmod/init/bash): `module load` puts the environment's python
first on PATH (sys.prefix is the mount's MOUNT/<hash>) and sets the activation's
variables; `module unload` gives PATH back as it was and unsets them. The Lua file, and the
Tcl one (--tcl: Lmod reads it through tclsh, as Environment Modules would; Debian's
environment-modules conflicts with lmod, so only Lmod is installed). Values holding quotes,
brackets, $, braces, backslashes and UTF-8 come back byte for byte through Lmod from both;
with tabs, newlines and characters past U+FFFF too when the files are read by the real
interpreters (lua5.3, tclsh with setenv as Environment Modules defines it): Lmod itself
cannot carry a newline (its bash output leaves it unquoted), nor, from a Tcl file, a tab
or a character past U+FFFF (its tcl2lua re-quotes them wrongly). As root and as nobody."""

import json
import os

import fs_lib
import lib

t = fs_lib.FsHarness("fs_module: Lmod and Tcl modulefiles, loaded by Lmod")

LMOD_INIT = "/usr/share/lmod/lmod/init/bash"
# A clean PATH without repeats: Lmod drops repeated entries when it edits PATH.
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
# What Lmod carries from both kinds of file, and what the interpreters read besides.
TRICKY = 'a "q" [b] $HOME \\back {c} ; `x` #h \u00e9 x'
TRICKY_SH = "it's [$x] \\\\ \"y\" }{"
TRICKIER = "tab\there\none \U0001f600 \\\\\n"

# $1 module dir, $2 module name, then the variables to print after load (NUL-separated,
# so any value comes back whole), after unload PATH and whether each is unset.
SCRIPT = r"""
set -e
. "$LMOD_INIT"
before=$PATH
module use "$1"
module load "$2"
mod=$2
shift 2
python3 -c 'import sys; print(sys.prefix)' || echo "no python"
for v in "$@"; do printenv "$v" | head -c -1; printf '\0'; done
printf '\n'
module unload "$mod"
[ "$PATH" = "$before" ] && echo "PATH restored" || echo "PATH now $PATH"
for v in "$@"; do printf '%s=%s\n' "$v" "${!v-unset}"; done
"""


def load(what, mdir, name, variables, user=None, home=None):
    """Load name from mdir in bash with Lmod: (python's sys.prefix or "no python",
    {variable: value after load}, PATH restored, [variables unset after unload])."""
    env = {"PATH": BASE_PATH, "HOME": home or t.path("root-home"), "LANG": "C.UTF-8",
           "LMOD_INIT": LMOD_INIT}
    cmd = ["env", "-i"] + [f"{k}={v}" for k, v in env.items()] + \
        ["bash", "--norc", "--noprofile", "-c", SCRIPT, "bash", mdir, name] + list(variables)
    r = t.run(cmd, user=user, timeout=300)
    raw = r.out.encode("utf-8", "surrogateescape")
    first, _, rest = raw.partition(b"\n")
    vals = rest.split(b"\0")
    got = {v: vals[i].decode("utf-8", "surrogateescape") if i < len(vals) else None
           for i, v in enumerate(variables)}
    tail = vals[-1].decode("utf-8", "surrogateescape").splitlines() if vals else []
    tail = [x for x in tail if x]
    restored = bool(tail) and tail[0] == "PATH restored"
    unset = [x.split("=")[0] for x in tail[1:] if x.endswith("=unset")]
    if r.rc != 0:
        t.check(f"{what}: bash with Lmod ran", False, r)
    return first.decode(), got, restored, unset


# The interpreters themselves reading a modulefile: setenv prints NAME=VALUE\0 as UTF-8
# bytes (the Tcl one as Environment Modules' setenv takes its arguments).
TCL_READER = t.path("reader.tcl")
LUA_READER = t.path("reader.lua")
lib.write(TCL_READER, """fconfigure stdout -encoding utf-8 -translation lf
proc setenv {name value} { puts -nonewline "$name=$value\\0" }
proc prepend-path {name value} {}
proc module-whatis {text} {}
source [lindex $argv 0]
""")
lib.write(LUA_READER, """function setenv(n, v) io.write(n, "=", v, "\\0") end
function prepend_path(n, v) end
function whatis(s) end
dofile(arg[1])
""")

store, hashes = t.base_store()
os.makedirs(t.path("root-home"))
h = hashes["kernel"]

# A small environment declaring tricky values: conda-meta/state's env_vars, and an
# activate.d script exporting one.
tricky = lib.make_prefix(t.path("src", "tricky"), files={
    "conda-meta/state": json.dumps({"env_vars": {"TRICKY": TRICKY}}),
    "etc/conda/activate.d/tricky.sh": "export TRICKY_SH='" + TRICKY_SH.replace("'", "'\\''")
    + "'\n",
    "bin/hello": "#!/bin/sh\necho hello\n",
})
# ...and one with what Lmod cannot load, for the interpreters.
trickier = lib.make_prefix(t.path("src", "trickier"), pkgs=(("trickier", "1.0", "h0_0"),),
                           files={
    "conda-meta/state": json.dumps({"env_vars": {"TRICKY": TRICKY, "TRICKIER": TRICKIER}}),
    "etc/conda/activate.d/tricky.sh": "export TRICKY_SH='" + TRICKY_SH.replace("'", "'\\''")
    + "'\n",
})
own = t.path("own-store")
ht = t.ingest_hash(own, tricky)
hr = t.ingest_hash(own, trickier)
t.ok("tag odd+1 on the tricky environment", t.cfs(own, "tag", "odd+1", ht))

with t.daemon(store) as d, t.daemon(own, mnt=t.path("mnt2")) as d2:
    mnt_env = d.path(h)
    names = ["CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_SHLVL", "CORPUS_HELLO_DATA"]
    want_vars = {"CONDA_PREFIX": mnt_env, "CONDA_DEFAULT_ENV": h, "CONDA_SHLVL": "1",
                 "CORPUS_HELLO_DATA": f"{mnt_env}/share/corpus-hello"}

    for tcl in (False, True):
        kind = "Tcl" if tcl else "Lua"
        flag = ["--tcl"] if tcl else []
        with t.section(f"{kind}: root writes and loads it"):
            mdir = t.path(f"modules-{kind}")
            r = t.cfs(store, "--mount", d.mnt, "module", h, "--prefix", mdir, *flag)
            f = os.path.join(mdir, "condafs", h[:12] + ("" if tcl else ".lua"))
            t.eq(f"module HASH {' '.join(flag)} --prefix DIR writes DIR/condafs/HASH12"
                 f"{'' if tcl else '.lua'}", (r.rc, r.out),
                 (0, f"modulefile {f}: written\n"), r)
            r2 = t.cfs(store, "--mount", d.mnt, "module", h, *flag)
            with open(f) as fh:
                t.eq("without --prefix the same text goes to stdout", r2.out, fh.read(), r2)
            py, got, restored, unset = load(f"{kind} root", mdir, f"condafs/{h[:12]}", names)
            t.eq(f"{kind}: module load puts the environment's python first (sys.prefix)",
                 py, mnt_env)
            t.eq(f"{kind}: ...and sets the activation's variables", got, want_vars)
            t.check(f"{kind}: module unload restores PATH", restored)
            t.eq(f"{kind}: ...and unsets the variables", unset, names)

            r = t.cfs(own, "--mount", d2.mnt, "module", "odd+1", "--prefix", mdir, *flag)
            t.ok(f"{kind}: module of the tricky environment by its tag", r)
            tv = ["TRICKY", "TRICKY_SH", "CONDA_DEFAULT_ENV"]
            py, got, restored, unset = load(f"{kind} tricky", mdir, "condafs/odd+1", tv)
            t.eq(f"{kind}: through Lmod, quotes, brackets, $, braces, backslashes and UTF-8 "
                 "come back byte for byte", got,
                 {"TRICKY": TRICKY, "TRICKY_SH": TRICKY_SH, "CONDA_DEFAULT_ENV": "odd+1"})
            t.check(f"{kind}: unloading it restores PATH and unsets them",
                    restored and unset == tv)
            r = t.cfs(own, "--mount", d2.mnt, "module", hr, "--prefix", mdir, "--name", "raw",
                      *flag)
            f = os.path.join(mdir, "raw" + ("" if tcl else ".lua"))
            t.ok(f"{kind}: module of an environment with tabs, newlines and U+1F600", r)
            r = t.run(["tclsh", TCL_READER, f] if tcl else ["lua5.3", LUA_READER, f])
            vals = dict(x.split("=", 1) for x in
                        r.out.encode("utf-8", "surrogateescape").decode("utf-8").split("\0")
                        if "=" in x)
            t.eq(f"{kind}: read by {'tclsh' if tcl else 'lua5.3'}, every value is the "
                 "activation's, tabs, newlines and U+1F600 too",
                 {k: vals.get(k) for k in ("TRICKY", "TRICKY_SH", "TRICKIER")},
                 {"TRICKY": TRICKY, "TRICKY_SH": TRICKY_SH, "TRICKIER": TRICKIER}, r)

        with t.section(f"{kind}: nobody writes and loads it through the mount"):
            home = t.path(f"nobody-home-{kind}")
            os.makedirs(home)
            os.chown(home, 65534, 65534)
            mdir = os.path.join(home, "modules")
            r = t.cfs(store, "--mount", d.mnt, "module", h, "--prefix", mdir, "--name",
                      "envs/nb", *flag, user="nobody")
            f = os.path.join(mdir, "envs", "nb" + ("" if tcl else ".lua"))
            t.eq("nobody: module HASH --name envs/nb --prefix DIR", (r.rc, r.out),
                 (0, f"modulefile {f}: written\n"), r)
            st = os.stat(f)
            t.eq("...owned by nobody, 0644", (st.st_uid, st.st_mode & 0o777),
                 (65534, 0o644))
            with open(f) as fh, open(os.path.join(t.path(f"modules-{kind}"), "condafs",
                                                  h[:12] + ("" if tcl else ".lua"))) as fr:
                t.eq("...the same text root wrote", fh.read(), fr.read())
            py, got, restored, unset = load(f"{kind} nobody", mdir, "envs/nb", names,
                                            user="nobody", home=home)
            t.eq(f"{kind}: nobody's module load runs python from the mount", py, mnt_env)
            t.eq(f"{kind}: ...with the activation's variables", got, want_vars)
            t.check(f"{kind}: ...and unload restores PATH and unsets them",
                    restored and unset == names)

    with t.section("what is refused"):
        mdir = t.path("modules-Lua")
        r = t.cfs(store, "--mount", d.mnt, "module", h, "--prefix", mdir)
        t.eq("written again: unchanged", r.out, f"modulefile {mdir}/condafs/{h[:12]}.lua: "
             "unchanged (it held this already)\n", r)
        r = t.cfs(store, "--mount", d.mnt, "module", h, "--prefix", mdir, "--name",
                  "condafs/odd+1")
        t.fails_clearly("another environment's module there: refused without --force", r,
                        "odd+1.lua", "--force")
        for bad in ("a//b", "/abs", "x/", ".hidden", "a/../b", "sp ace"):
            r = t.cfs(store, "--mount", d.mnt, "module", h, "--name", bad)
            t.check(f"--name {bad!r}: usage error", r.rc == 2 and len(r.errors()) == 1, r)
        os.makedirs(t.path("away"))
        os.symlink(t.path("away"), t.path("modules-link"))
        r = t.cfs(store, "--mount", d.mnt, "module", h, "--prefix",
                  t.path("modules-link", "sub"))
        t.fails_clearly("a symlink in --prefix DIR is not followed", r, "modules-link",
                        "symbolic link")
        t.eq("...nothing written where it points", os.listdir(t.path("away")), [])
        bad = lib.make_prefix(t.path("src", "latin1"), pkgs=(("latin", "1.0", "h0_0"),), files={
            "conda-meta/state": '{"env_vars": {"LATIN": "caf\\u00e9"}}'})
        # JSON's \u00e9 is UTF-8 é: the state file cannot hold other bytes. An activate.d
        # script can: it exports a Latin-1 byte.
        lib.write(os.path.join(bad, "etc", "conda", "activate.d", "l.sh"),
                  b"export LATIN1=caf\xe9\n")
        hb = t.ingest_hash(own, bad)
        r = t.cfs(own, "--mount", d2.mnt, "module", hb, "--tcl")
        t.fails_clearly("--tcl: a value that is not UTF-8 is refused, naming the variable", r,
                        "LATIN1", "not UTF-8")
        r = t.cfs(own, "--mount", d2.mnt, "module", hb)
        t.check("the Lua modulefile holds it (\\233)", r.rc == 0 and
                'setenv("LATIN1", "caf\\233")' in r.out, r)

t.finish()
