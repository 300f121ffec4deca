#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What conda and pip see: condafsd serves conda-meta/frozen (CEP 22) and Python's
EXTERNALLY-MANAGED (PEP 668, in the stdlib directory) in every environment and stores
neither. Listed once by readdir and find, readable by root and by nobody, 0444 root's with
the environment's ingest time, valid JSON / INI naming the mount path; pip of the
environment's python refuses to install with that message instead of an EROFS traceback,
and sysconfig is untouched. hash, show and verify say what they said before; export leaves
both out, export --frozen writes them byte for byte as served (root and nobody alike). An
environment without python gets only conda-meta/frozen, one that stores either file keeps
its own."""

import configparser
import json
import os
import pwd
import re
import stat
import subprocess

import fs_lib
import lib

t = fs_lib.FsHarness("fs_served: conda-meta/frozen and EXTERNALLY-MANAGED")

FROZEN = "conda-meta/frozen"
EXTERNAL = "lib/python3.11/EXTERNALLY-MANAGED"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def created(store, h):
    r = t.cfs(store, "--json", "ls")
    return next(e["created"] for e in json.loads(r.out) if e["hash"] == h)


def served_paths(top):
    """Every path named frozen or EXTERNALLY-MANAGED under top, as find lists them."""
    r = t.run(["find", top, "(", "-name", "frozen", "-o", "-name", "EXTERNALLY-MANAGED",
               ")", "-print"])
    return sorted(os.path.relpath(p, top) for p in r.out.splitlines())


def check_texts(what, env_dir, h, frozen, external):
    """The two texts: CEP 22's schema and PEP 668's section, naming env_dir and h."""
    try:
        doc = json.loads(frozen)
    except ValueError as e:
        t.check(f"{what}: conda-meta/frozen is JSON", False, f"{e}: {frozen!r}")
        return
    msg = doc.get("message") if isinstance(doc, dict) else None
    t.check(f"{what}: conda-meta/frozen is {{\"message\": str}} (CEP 22), naming the path",
            list(doc) == ["message"] and isinstance(msg, str) and env_dir in msg and
            f"condafs export {h}" in msg, frozen)
    if external is None:
        return
    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read_string(external.decode())
        err = cp.get("externally-managed", "Error")
    except (configparser.Error, UnicodeDecodeError) as e:
        t.check(f"{what}: EXTERNALLY-MANAGED is INI with [externally-managed] Error",
                False, f"{e}: {external!r}")
        return
    t.check(f"{what}: EXTERNALLY-MANAGED has [externally-managed] Error= (PEP 668), "
            "naming the path", env_dir in err and f"condafs export {h}" in err, external)
    t.eq(f"{what}: both say the same", err, msg)


def user_dir(name):
    d = t.path(name)
    os.makedirs(d)
    pw = pwd.getpwnam("nobody")
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


store, hashes = t.base_store()
h = hashes["small"]

with t.section("served in the corpus environment, stored nowhere"):
    show_before = t.cfs(store, "--json", "show", h)
    ls_before = json.loads(t.cfs(store, "--json", "ls").out)
    src = t.corpus()["envs"]["small"]["prefix"]
    t.check("the source prefix has neither file",
            not os.path.lexists(os.path.join(src, FROZEN)) and
            not os.path.lexists(os.path.join(src, EXTERNAL)))
    with t.daemon(store) as d:
        env = d.path(h)
        for rel in (FROZEN, EXTERNAL):
            name = os.path.basename(rel)
            parent = os.path.join(env, os.path.dirname(rel))
            t.eq(f"{rel}: listed once by readdir", os.listdir(parent).count(name), 1)
            with os.scandir(parent) as it:
                ents = [e for e in it if e.name == name]
            st = os.stat(os.path.join(env, rel))
            t.check(f"{rel}: a regular file, 0444, root's, mtime the ingest time",
                    stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444 and
                    st.st_uid == 0 and st.st_gid == 0 and
                    st.st_mtime_ns == created(store, h) * 10**9 and st.st_nlink == 1,
                    f"{st}")
            t.check(f"{rel}: scandir's entry is the same inode",
                    len(ents) == 1 and ents[0].inode() == st.st_ino and
                    ents[0].is_file(follow_symlinks=False))
            data = read(os.path.join(env, rel))
            t.eq(f"{rel}: size is exact", len(data), st.st_size)
            with open(os.path.join(env, rel), "rb") as f:
                f.seek(7)
                t.eq(f"{rel}: a read at an offset", f.read(5), data[7:12])
        t.eq("find through the mount sees each once", served_paths(env),
             sorted([FROZEN, EXTERNAL]))
        inos = {os.stat(os.path.join(d.path(x), FROZEN)).st_ino for x in hashes.values()}
        t.eq("every environment has its own conda-meta/frozen inode", len(inos), len(hashes))
        t.check("served inodes collide with no stored one",
                not inos & {os.lstat(os.path.join(dp, n)).st_ino
                            for dp, ds, fs in os.walk(env) for n in ds + fs
                            if n not in ("frozen", "EXTERNALLY-MANAGED")})
        frozen, external = read(os.path.join(env, FROZEN)), read(os.path.join(env, EXTERNAL))
        check_texts("small", env, h, frozen, external)
        for rel, want in ((FROZEN, frozen), (EXTERNAL, external)):
            r = t.run(["cat", os.path.join(env, rel)], user="nobody")
            t.check(f"{rel}: nobody reads the same bytes", r.rc == 0 and
                    r.out.encode("utf-8", "surrogateescape") == want, r)
        r = t.run(["ls", "-la", os.path.join(env, "conda-meta")], user="nobody")
        t.eq("ls -la as nobody lists frozen once",
             sum(1 for ln in r.out.splitlines() if ln.endswith(" frozen")), 1, r.out)
        for name, x in hashes.items():
            rels = served_paths(d.path(x))
            t.eq(f"{name}: find sees conda-meta/frozen and EXTERNALLY-MANAGED once each",
                 rels, sorted([FROZEN, EXTERNAL]))

with t.section("pip refuses with the message; python is unaffected"):
    with t.daemon(store) as d:
        env = d.path(h)
        py = os.path.join(env, "bin", "python3")
        for user in (None, "nobody"):
            who = user or "root"
            r = t.run_env(env, [py, "-c", "import sysconfig, sys; "
                                "print(sysconfig.get_path('stdlib')); print(sys.prefix)"],
                          user=user)
            t.eq(f"{who}: sysconfig's stdlib and sys.prefix are the mount's", r.out,
                 f"{env}/lib/python3.11\n{env}\n", r)
            r = t.run_env(env, [py, "-m", "pip", "install", "--no-index", "--no-cache-dir",
                                "PyJWT"], user=user)
            t.check(f"{who}: pip install refuses: externally-managed-environment, "
                    "naming the mount path, no EROFS traceback",
                    r.rc not in (0, None) and "externally-managed-environment" in r.err
                    and f"served read-only by condafs at {env}" in r.err and
                    "Read-only file system" not in r.err and
                    "Traceback" not in r.err, r)
            r = t.run_env(env, [os.path.join(env, "bin", "pip"), "install", "--no-index",
                                "six"], user=user)
            t.check(f"{who}: bin/pip install refuses the same way",
                    r.rc not in (0, None) and "externally-managed-environment" in r.err
                    and "Traceback" not in r.err, r)
            r = t.run_env(env, [py, "-m", "pip", "list"], user=user)
            t.check(f"{who}: pip list still works", r.rc == 0 and "PyJWT" in r.out, r)
            r = t.run_env(env, [py, "-c", "import numpy, jwt; print(numpy.__file__)"],
                          user=user)
            t.check(f"{who}: imports from the mount work",
                    r.rc == 0 and r.out.startswith(env + "/"), r)

with t.section("hash, show, ls and verify are unchanged"):
    with t.daemon(store) as d:
        env = d.path(h)
        r = t.cfs(None, "hash", env)
        t.eq("condafs hash of the mounted environment is its hash", r.out.strip(), h, r)
        after = t.cfs(store, "--json", "show", h)
        t.eq("show --json: the same packages", after.out, show_before.out)
        r = t.cfs(store, "--mount", d.mnt, "--json", "show", h, user="nobody")
        t.eq("show --json through the mount: the same", r.out, show_before.out)
        ls_after = json.loads(t.cfs(store, "--json", "ls").out)
        key = ("hash", "files", "logical_bytes")
        t.eq("ls: the same files and bytes",
             [[e[k] for k in key] for e in ls_after], [[e[k] for k in key] for e in ls_before])
        r = t.cfs(store, "--json", "verify")
        t.check("verify (root, the store): clean", r.rc == 0, r)
        r = t.cfs(store, "--mount", d.mnt, "--json", "verify", user="nobody")
        v = json.loads(r.out) if r.rc == 0 else {}
        files = sum(e["files"] for e in ls_after)
        t.check("verify (nobody, the mount): clean, reading no served file",
                r.rc == 0 and v.get("files_checked", 0) + v.get("files_skipped", 0) <= files
                and "frozen" not in r.out and "EXTERNALLY" not in r.out, r)

with t.section("export leaves them out, export --frozen writes them as served"):
    with t.daemon(store) as d:
        env = d.path(h)
        plain = t.path("plain")
        t.ok("export", t.export(store, h, plain, env))
        t.eq("export: neither file", served_paths(plain), [])
        lib.report_tree(t, "export: equal to the source prefix",
                        *lib.compare_trees(src, plain, src, env))
        frz = t.path("frz")
        r = t.cfs(store, "export", h, frz, "--prefix", env, "--frozen")
        t.ok("export --frozen --prefix MOUNT/HASH", r)
        problems, counts, _ = fs_lib.compare_mount(frz, env)
        lib.report_tree(t, f"export --frozen: the mount, byte for byte (modes, mtimes; "
                        f"{counts['files']} files)", problems)
        mine = user_dir("mine")
        r = t.cfs(store, "--mount", d.mnt, "export", h, os.path.join(mine, "plain"), "--prefix",
                  env, user="nobody")
        t.ok("nobody's export through the mount", r)
        t.eq("...has neither file", served_paths(os.path.join(mine, "plain")), [])
        r = subprocess.run(["diff", "-r", "--no-dereference", plain,
                            os.path.join(mine, "plain")], capture_output=True)
        t.check("...and is root's export", r.returncode == 0, r.stdout[-2000:])
        r = t.cfs(store, "--mount", d.mnt, "export", h, os.path.join(mine, "frz"), "--prefix",
                  env, "--frozen", user="nobody")
        t.ok("nobody's export --frozen through the mount", r)
        problems, counts, _ = fs_lib.compare_mount(os.path.join(mine, "frz"), env)
        lib.report_tree(t, "...the mount, byte for byte", problems)
        other = t.path("other")
        t.ok("export --frozen to its own directory", t.cfs(store, "export", h, other,
                                                           "--frozen"))
        check_texts("export --frozen DIR", other, h, read(os.path.join(other, FROZEN)),
                    read(os.path.join(other, EXTERNAL)))
        t.check("...which names DIR, not the mount",
                env.encode() not in read(os.path.join(other, FROZEN)))
        r = t.cfs(store, "--mount", d.mnt, "export", h, os.path.join(mine, "other"),
                  "--frozen", user="nobody")
        t.ok("nobody's export --frozen to their own directory", r)
        for rel in (FROZEN, EXTERNAL):
            t.eq(f"...{rel} as root's would name it",
                 read(os.path.join(mine, "other", rel)),
                 read(os.path.join(other, rel)).replace(other.encode(),
                                                        os.path.join(mine, "other").encode()))

with t.section("hand-made environments: no python, python's landmark, their own files"):
    s2 = t.path("store2")
    nopy = lib.make_prefix(t.path("nopy"), pkgs=[("tool", "1.0", "h0_0")],
                           files={"bin/tool": "#!/bin/sh\n", "lib/python3.11/notes.txt": "x\n"})
    landmark = lib.make_prefix(t.path("landmark"), pkgs=[("py", "3.12.1", "h0_0")],
                               files={"lib/python3.12/os.py": "# os\n",
                                      "lib/python3.12t/os.py": "# os\n",
                                      "lib/python3/os.py": "# not a stdlib name\n",
                                      "share/python3.12/os.py": "# not under lib\n"})
    own = lib.make_prefix(t.path("own"), pkgs=[("py", "3.11.0", "h0_0")],
                          files={"conda-meta/frozen": "",
                                 "lib/python3.11/os.py": "# os\n",
                                 "lib/python3.11/EXTERNALLY-MANAGED":
                                     "[externally-managed]\nError=theirs\n"})
    hn, hl, ho = (t.ingest_hash(s2, p) for p in (nopy, landmark, own))
    # A mount path with what JSON, INI and printf must not take as their own.
    with t.daemon(s2, t.path('mnt2 "q" %s; #\u00e9')) as d:
        t.eq("no python: only conda-meta/frozen", served_paths(d.path(hn)), [FROZEN])
        check_texts("no python", d.path(hn), hn, read(d.path(hn, FROZEN)), None)
        check_texts("python 3.12 (mount path with quotes, %, ;, #, UTF-8)", d.path(hl), hl,
                    read(d.path(hl, FROZEN)),
                    read(d.path(hl, "lib/python3.12/EXTERNALLY-MANAGED")))
        t.eq("no python: EXTERNALLY-MANAGED looked up is ENOENT",
             fs_lib.errno_of(lambda: os.stat(d.path(hn, "lib/python3.11/EXTERNALLY-MANAGED"))),
             2)
        t.eq("stdlib directories (lib/python3.12, lib/python3.12t: os.py) get one each",
             served_paths(d.path(hl)), sorted([FROZEN, "lib/python3.12/EXTERNALLY-MANAGED",
                                               "lib/python3.12t/EXTERNALLY-MANAGED"]))
        t.eq("its own files: listed once", served_paths(d.path(ho)),
             sorted([FROZEN, EXTERNAL]))
        t.eq("...its own conda-meta/frozen, as stored", read(d.path(ho, FROZEN)), b"")
        t.eq("...its own EXTERNALLY-MANAGED, as stored", read(d.path(ho, EXTERNAL)),
             b"[externally-managed]\nError=theirs\n")
        t.check("...stored modes, not 0444",
                stat.S_IMODE(os.stat(d.path(ho, FROZEN)).st_mode) == 0o644)
        frz = t.path("own-frz")
        t.ok("export --frozen of it", t.cfs(s2, "export", ho, frz, "--frozen"))
        t.eq("...writes its own files", read(os.path.join(frz, FROZEN)), b"")
        e = t.path("nopy-frz")
        t.ok("export --frozen of the no-python one", t.cfs(s2, "export", hn, e, "--prefix",
                                                          d.path(hn), "--frozen"))
        problems, counts, _ = fs_lib.compare_mount(e, d.path(hn))
        lib.report_tree(t, "...the mount, byte for byte", problems)
        for x in (hn, hl, ho):
            t.eq(f"{x[:8]}: condafs hash of the mount is its hash",
                 t.cfs(None, "hash", d.path(x)).out.strip(), x)

with t.section("listed by READDIRPLUS and by plain READDIR"):
    # Python's scandir of a small directory is one READDIRPLUS at offset 0; a directory
    # too large for one reply is continued with plain READDIR (the kernel's readdirplus
    # "auto" mode), and the served entry comes after every stored one.
    s3 = t.path("store3")
    many = {f"conda-meta/note-{i:04d}-{'x' * 60}.txt": "n\n" for i in range(1500)}
    big = lib.make_prefix(t.path("big"), pkgs=[("tool", "1.0", "h0_0")], files=many)
    hb = t.ingest_hash(s3, big)
    with t.daemon(s3, t.path("mnt3"), args=["-d"]) as d:
        cm = d.path(hb, "conda-meta")
        ino = os.stat(cm).st_ino
        r = t.run(["ls", "-f", cm])
        names = r.out.splitlines()
        t.eq("ls -f of a 1,500-entry conda-meta: frozen once, last",
             (names.count("frozen"), names[-1] if names else None), (1, "frozen"))
        t.eq("...every stored name too", len(names), 1500 + 2 + 2 + 1)
        ops = re.findall(rf"opcode: (READDIRPLUS|READDIR) \(\d+\), nodeid: {ino},", d.log())
        t.check("...listed by one READDIRPLUS at offset 0, continued with plain READDIR",
                ops.count("READDIRPLUS") == 1 and ops.count("READDIR") >= 2, ops)
        with os.scandir(d.path(hb)) as it:
            t.check("a directory that gets nothing lists nothing more",
                    [e.name for e in it] == ["conda-meta"])
        t.check("frozen reads after the listing",
                json.loads(read(os.path.join(cm, "frozen")))["message"].count(d.path(hb)) == 1)

t.finish()
