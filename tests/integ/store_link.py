#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Linking as conda does it, as data (store/conda/link.c, issue 12). For every corpus environment,
the plan link_drive makes from the extracted packages in OUTDIR/pkgs is compared with the
prefix the corpus made from them: the same paths, types, modes, mtimes, symlink targets;
every package file's bytes (relocated to the corpus prefix where it holds a placeholder);
entry points byte for byte with the prefix put in; conda-meta records that read as the
corpus's but for the differences named below; and a directory made from the plan's
directories and generated files hashes (`condafs hash`) as the lock does. Then bad
packages, each refused in one line naming the package and the reason, and the smaller
rules: clobbering with a warning, old packages with info/files and has_prefix, a path
through another package's symlink, pre/post-link scripts listed."""

import hashlib
import json
import os
import re
import shutil

import lib

t = lib.Harness("store_link: the link plan of the corpus's packages against its prefixes")
DRIVE = os.environ["LINK_DRIVE"]
TOKEN = "/condafs-link-test/" + "p" * 120

# What the corpus prefix has that the plan does not make, each named:
# - the pycs conda compiles for noarch python packages (the caller compiles them: the
#   plan's records list them, its entries do not);
# - what pip installed on top (PyJWT in small and small-rebuild): pip files are not conda's;
# - what corpus-hello's post-link script makes (scripts are not run: the plan lists them).
POST_LINK_MADE = {"lib/libcorpushello.so", "share/corpus-hello/plugins"}
SCRIPT_PKGS = {"corpus-hello"}
# Keys of a conda-meta record that differ on purpose (link.c, make_record): the package
# cache paths conda records (a store has none), requested_spec (a lock names no specs).
RECORD_KEYS_DIFFER = {"extracted_package_dir", "package_tarball_full_path", "link",
                      "requested_spec"}


def unesc(s):
    return None if s is None else s.encode("latin-1")


def drive(token, now_ns, dirs):
    r = t.run([DRIVE, token, str(now_ns)] + list(dirs))
    return r


def parse_plan(out):
    entries, extra = [], {}
    for line in out.splitlines():
        d = json.loads(line)
        if "path" in d:
            entries.append(d)
        else:
            extra.update(d)
    return entries, extra


def pip_paths(prefix):
    """Paths pip installed (every RECORD line of a dist-info whose INSTALLER is pip, and
    the directories only they need), relative to prefix."""
    out = set()
    sp = os.path.join(prefix, "lib", "python3.11", "site-packages")
    if not os.path.isdir(sp):
        return out
    for n in os.listdir(sp):
        inst = os.path.join(sp, n, "INSTALLER")
        if not n.endswith(".dist-info") or not os.path.isfile(inst):
            continue
        with open(inst) as f:
            if f.read().strip() != "pip":
                continue
        with open(os.path.join(sp, n, "RECORD")) as f:
            for line in f:
                p = line.rsplit(",", 2)[0]
                if p:
                    out.add(os.path.normpath(os.path.join("lib/python3.11/site-packages", p)))
    for p in list(out):
        d = os.path.dirname(p)
        while d and d != "lib/python3.11/site-packages":
            out.add(d)
            d = os.path.dirname(d)
    return out


def check_env(name):
    env = t.env(name)
    outdir = os.path.dirname(t.corpus()["pkgs_dir"])
    prefix = env["prefix"]
    dirs = [os.path.join(t.corpus()["pkgs_dir"], d) for d in env["packages"]]
    now_ns = os.lstat(os.path.join(prefix, "conda-meta", "history")).st_mtime_ns
    r = drive(TOKEN, now_ns, dirs)
    if not t.ok(f"{name}: link_drive makes a plan", r):
        return
    entries, extra = parse_plan(r.out)
    t.eq(f"{name}: no warning (no two corpus packages ship one path)", r.err, "")
    plan = {unesc(e["path"]).decode(): e for e in entries}
    paths = [unesc(e["path"]) for e in entries]
    t.eq(f"{name}: entries sorted by path bytes", paths, sorted(paths))
    t.check(f"{name}: every parent is a directory entry",
            all(os.path.dirname(p) == "" or plan.get(os.path.dirname(p), {}).get("type") == "dir"
                for p in plan))

    # What conda-meta says of noarch pycs.
    noarch_pycs = set()
    records = {}
    for fn in os.listdir(os.path.join(prefix, "conda-meta")):
        if fn.endswith(".json"):
            with open(os.path.join(prefix, "conda-meta", fn)) as f:
                records[fn] = json.load(f)
            for p in records[fn]["paths_data"]["paths"]:
                if p["path_type"] == "pyc_file":
                    noarch_pycs.add(p["_path"])
    corpus = lib.lstat_tree(prefix)
    pip = pip_paths(prefix)
    want = {p for p in corpus if p not in pip and p not in POST_LINK_MADE}
    t.eq(f"{name}: the plan's paths are the prefix's but pip's and post-link's",
         sorted(set(plan) ^ want), [])
    # The noarch pycs are in the plan, to be compiled from their sources.
    t.eq(f"{name}: the noarch pycs are planned, each from its .py",
         sorted((p, e["pyc_of"]) for p, e in plan.items() if e["pyc_of"] is not None),
         sorted((p, os.path.dirname(os.path.dirname(p)) + "/" +
                 os.path.basename(p).split(".")[0] + ".py") for p in noarch_pycs))

    kinds = {"file": lambda st: os.path.stat.S_ISREG(st.st_mode),
             "symlink": lambda st: os.path.stat.S_ISLNK(st.st_mode),
             "dir": lambda st: os.path.stat.S_ISDIR(st.st_mode)}
    bad_type, bad_mode, bad_mtime, bad_target, bad_bytes, bad_ep, n_ph = [], [], [], [], [], [], 0
    for p, e in sorted(plan.items()):
        st = corpus.get(p)
        if st is None:
            continue
        if not kinds[e["type"]](st):
            bad_type.append(p)
            continue
        if e["type"] != "symlink" and e["mode"] != (st.st_mode & 0o7777):
            bad_mode.append((p, oct(e["mode"]), oct(st.st_mode & 0o7777)))
        full = os.path.join(prefix, p)
        # A package file keeps its package's mtime, relocated too (conda stamps those with
        # the install's time: the README's "condafs install" says why condafs does not).
        want_ns = st.st_mtime_ns
        if e["type"] == "file" and e["pkg"] is not None and e["placeholder"] is not None:
            want_ns = os.stat(os.path.join(unesc(e["pkg"]).decode(),
                                           unesc(e["src"]).decode())).st_mtime_ns
        if e["mtime_ns"] != want_ns:
            bad_mtime.append((p, e["mtime_ns"], want_ns))
        if e["type"] == "symlink":
            if unesc(e["target"]).decode() != os.readlink(full):
                bad_target.append(p)
        elif e["type"] == "file" and e["pkg"] is not None:
            src = os.path.join(unesc(e["pkg"]).decode(), unesc(e["src"]).decode())
            if e["len"] != os.path.getsize(src):
                bad_bytes.append((p, "len"))
            if e["placeholder"] is None:
                if not lib.same_bytes(src, full):
                    bad_bytes.append(p)
            else:
                n_ph += 1
                with open(src, "rb") as f:
                    data = f.read()
                with open(full, "rb") as f:
                    have = f.read()
                mode = "binary" if e["binary"] else "text"
                if lib.relocate(data, unesc(e["placeholder"]), prefix.encode(), mode) != have:
                    bad_bytes.append((p, "relocated"))
        elif e["type"] == "file" and e["pyc_of"] is None and not p.startswith("conda-meta/"):
            # An entry point: the prefix token where the prefix belongs, text mode.
            data = unesc(e["data"])
            ok = (e["placeholder"] == TOKEN and not e["binary"] and
                  data.replace(TOKEN.encode(), prefix.encode()) == open(full, "rb").read())
            if not ok:
                bad_ep.append(p)
    t.eq(f"{name}: types", bad_type, [])
    t.eq(f"{name}: modes", bad_mode[:5], [])
    t.eq(f"{name}: mtimes (package files keep theirs; the rest is the install's)",
         bad_mtime[:5], [])
    t.eq(f"{name}: symlink targets", bad_target, [])
    t.eq(f"{name}: package files byte for byte (placeholder-aware)", bad_bytes[:5], [])
    t.check(f"{name}: files with a placeholder were compared ({n_ph})", n_ph >= 10)
    eps = [p for p, e in plan.items() if e["type"] == "file" and e["pkg"] is None
           and e["pyc_of"] is None and not p.startswith("conda-meta/")]
    t.check(f"{name}: entry points written ({len(eps)})", len(eps) >= 3)
    t.eq(f"{name}: entry points as conda writes them, with the prefix put in", bad_ep, [])

    # Scripts and the python version.
    want_scripts = sorted(d for d in env["packages"] if d.rsplit("-", 2)[0] in SCRIPT_PKGS)
    t.eq(f"{name}: packages with a link script", sorted(extra["scripts"]), want_scripts)
    t.eq(f"{name}: noarch python mapped for 3.11", extra["python"], "3.11")
    order = [os.path.basename(unesc(d).decode()) for d in extra["order"]]
    t.check(f"{name}: python linked before every noarch python package",
            all(order.index(d) > order.index(next(x for x in order if x.startswith("python-3")))
                for d in order if "-pyh" in d))

    # conda-meta records: the corpus's, but the differences named above.
    bad_rec = []
    for fn, want_rec in sorted(records.items()):
        e = plan.get(f"conda-meta/{fn}")
        if e is None:
            bad_rec.append((fn, "missing"))
            continue
        text = unesc(e["data"]).decode()
        got = json.loads(text)
        if text != json.dumps(got, indent=2, sort_keys=True):
            bad_rec.append((fn, "not json.dumps(indent=2, sort_keys=True)"))
        for k in sorted(set(got) | set(want_rec)):
            if k in RECORD_KEYS_DIFFER or k in ("files", "paths_data"):
                continue
            if got.get(k) != want_rec.get(k):
                bad_rec.append((fn, k, got.get(k), want_rec.get(k)))
        if got["link"] != {"source": "", "type": 1} or got["requested_spec"] != "None":
            bad_rec.append((fn, "link/requested_spec"))
        # conda lists no directory in files or paths_data (the corpus lists them).
        dirs_ = {p["_path"] for p in want_rec["paths_data"]["paths"]
                 if p["path_type"] == "directory"}
        if sorted(got["files"]) != sorted(set(want_rec["files"]) - dirs_):
            bad_rec.append((fn, "files"))
        if len(got["files"]) != len(set(got["files"])):
            bad_rec.append((fn, "files repeated"))
        # sha256_in_prefix is left out for files with a placeholder (it depends on the
        # served prefix).
        wp = []
        for p in want_rec["paths_data"]["paths"]:
            if p["path_type"] == "directory":
                continue
            p = dict(p)
            if "prefix_placeholder" in p:
                p.pop("sha256_in_prefix", None)
            wp.append(p)
        key = lambda p: p["_path"]
        if sorted(got["paths_data"]["paths"], key=key) != sorted(wp, key=key):
            bad_rec.append((fn, "paths_data"))
        if got["paths_data"]["paths_version"] != 1:
            bad_rec.append((fn, "paths_version"))
    t.eq(f"{name}: conda-meta records as the corpus's, but the named differences", bad_rec[:5], [])

    # history: the same "+channel/subdir::dist" lines, conda's header.
    hist = unesc(plan["conda-meta/history"]["data"]).decode().splitlines()
    with open(os.path.join(prefix, "conda-meta", "history")) as f:
        first_rev = f.read().split("==> ")[1].splitlines()
    want_plus = sorted(l for l in first_rev if l.startswith("+"))
    if name == "small-rebuild":
        want_plus = sorted(set(want_plus) - {l for l in want_plus if "corpus-hello" in l}) + \
            ["+" + l.split("::")[0][1:] + "::" + d for l in want_plus if "corpus-hello" in l
             for d in env["packages"] if d.startswith("corpus-hello")]
        want_plus.sort()
    t.check(f"{name}: history header as conda writes it",
            re.fullmatch(r"==> \d{4}-\d\d-\d\d \d\d:\d\d:\d\d <==", hist[0]) and
            hist[1] == "# cmd: condafs install", hist[:2])
    t.eq(f"{name}: history lists every package as conda does", hist[2:], want_plus)

    # condafs hash of a directory made of the plan's directories and generated files (and
    # the conda packages' dist-info files; pip's dist-infos copied from the corpus, as pip
    # is not the plan's) equals the lock's.
    made = t.path(f"made-{name}")
    t.rmtree(made)
    os.makedirs(made)
    for p, e in sorted(plan.items()):
        full = os.path.join(made, p)
        if e["type"] == "dir":
            os.makedirs(full, exist_ok=True)
        elif e["type"] == "file" and e["pkg"] is None and e["pyc_of"] is None:
            with open(full, "wb") as f:
                f.write(unesc(e["data"]).replace(TOKEN.encode(), made.encode()))
        elif e["type"] == "file" and ".dist-info/" in p:
            shutil.copyfile(os.path.join(unesc(e["pkg"]).decode(), unesc(e["src"]).decode()),
                            full)
    for p in sorted(pip):
        src = os.path.join(prefix, p)
        if ".dist-info" in p:
            if os.path.isdir(src):
                os.makedirs(os.path.join(made, p), exist_ok=True)
            else:
                os.makedirs(os.path.dirname(os.path.join(made, p)), exist_ok=True)
                shutil.copyfile(src, os.path.join(made, p))
    h1 = t.cfs(None, "hash", made)
    h2 = t.cfs(None, "hash", env["locks"]["explicit"])
    t.ok(f"{name}: condafs hash reads the made prefix", h1)
    t.eq(f"{name}: condafs hash of the plan's records equals the lock's", h1.out.strip(),
         h2.out.strip())
    # show reads what the records say of each package: the corpus records' channel,
    # subdir, md5 and sha256.
    store = t.path(f"store-{name}")
    t.ok(f"{name}: the made prefix ingests", t.ingest(store, made))
    r = t.cfs(store, "show", h1.out.strip(), "--json")
    if t.ok(f"{name}: condafs show", r):
        got = sorted((p["name"], p["version"], p["build"], p["channel"], p["subdir"], p["md5"],
                      p["sha256"]) for p in json.loads(r.out)["packages"] if p["kind"] == "conda")
        want = sorted((w["name"], w["version"], w["build"], w["channel"].rsplit("/", 1)[0],
                       w["subdir"], w["md5"], w["sha256"]) for w in records.values())
        t.eq(f"{name}: condafs show lists the packages as the corpus records say", got, want)
    t.rmtree(store)
    t.rmtree(made)


for name in lib.CORPUS_ENVS:
    check_env(name)


# ---- hand-made packages ----

def mkpkg(name, version="1.0", build="0", depends=(), noarch=None, paths=None, files=None,
          has_prefix=None, link=None):
    """A package directory under t.tmp: files {path: bytes | ("link", target) | "dir"},
    its paths.json from paths (a list of dicts) or made from files; without paths, with
    files=..., has_prefix=..., an old package (info/files, info/has_prefix)."""
    d = t.path("pkgs", f"{name}-{version}-{build}")
    t.rmtree(d)
    os.makedirs(os.path.join(d, "info"))
    idx = {"name": name, "version": version, "build": build, "build_number": 0,
           "depends": list(depends), "subdir": "noarch" if noarch else "linux-64"}
    if noarch:
        idx["noarch"] = noarch
    with open(os.path.join(d, "info", "index.json"), "w") as f:
        json.dump(idx, f)
    for p, v in (files or {}).items():
        full = os.path.join(d, p)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if v == "dir":
            os.makedirs(full, exist_ok=True)
        elif isinstance(v, tuple):
            os.symlink(v[1], full)
        else:
            with open(full, "wb") as f:
                f.write(v)
    if paths is not None:
        with open(os.path.join(d, "info", "paths.json"), "w") as f:
            json.dump({"paths": paths, "paths_version": 1}, f)
    elif has_prefix is None:
        ps = []
        for p, v in sorted((files or {}).items()):
            if v == "dir":
                ps.append({"_path": p, "path_type": "directory"})
            elif isinstance(v, tuple):
                ps.append({"_path": p, "path_type": "softlink"})
            else:
                ps.append({"_path": p, "path_type": "hardlink", "size_in_bytes": len(v),
                           "sha256": hashlib.sha256(v).hexdigest()})
        with open(os.path.join(d, "info", "paths.json"), "w") as f:
            json.dump({"paths": ps, "paths_version": 1}, f)
    else:
        with open(os.path.join(d, "info", "files"), "w") as f:
            f.write("".join(p + "\n" for p in sorted(files)))
        with open(os.path.join(d, "info", "has_prefix"), "w") as f:
            f.write(has_prefix)
    if link is not None:
        with open(os.path.join(d, "info", "link.json"), "w") as f:
            json.dump(link, f)
    return d


def refused(what, dirs, *needles):
    r = drive(TOKEN, 1, dirs)
    lines = [l for l in r.err.splitlines() if l]
    ok = r.rc == 1 and len(lines) == 1 and lines[0].startswith("link_drive: ") and \
        all(n in lines[0] for n in needles)
    t.check(what, ok, None if ok else f"{r}\nwant one line naming {needles!r}")


py = mkpkg("python", "3.12.1", files={"bin/python3.12": b"\x7fELF"})
refused("paths.json naming a missing file: refused",
        [mkpkg("bad", paths=[{"_path": "bin/tool", "path_type": "hardlink"}])],
        "bad-1.0-0", "bin/tool", "lacks")
refused("a ../ path: refused",
        [mkpkg("esc", files={"x": b"1"}, paths=[{"_path": "../x", "path_type": "hardlink"}])],
        "esc-1.0-0", "../x", "escapes the prefix")
refused("an absolute path: refused",
        [mkpkg("abs", paths=[{"_path": "/etc/passwd", "path_type": "hardlink"}])],
        "abs-1.0-0", "/etc/passwd", "escapes the prefix")
refused("noarch python without python: refused",
        [mkpkg("nap", noarch="python", files={"site-packages/nap.py": b"x = 1\n"})],
        "nap-1.0-0", "no python")
refused("a size that is not the file's: refused",
        [mkpkg("sz", files={"a": b"12"},
               paths=[{"_path": "a", "path_type": "hardlink", "size_in_bytes": 3}])],
        "sz-1.0-0", "a has 2 bytes")
refused("a softlink that is a file: refused",
        [mkpkg("lk", files={"a": b"12"}, paths=[{"_path": "a", "path_type": "softlink"}])],
        "lk-1.0-0", "softlink")
refused("a path through another package's symlink: refused",
        [mkpkg("ln", files={"lib": ("link", "/etc")}),
         mkpkg("thru", depends=["ln"], files={"lib/passwd": b"x"})],
        "lib", "symbolic link")
refused("a package file through its own file: refused",
        [mkpkg("ff", files={"a": b"1"},
               paths=[{"_path": "a", "path_type": "hardlink"},
                      {"_path": "a/b", "path_type": "hardlink"}])],
        "ff-1.0-0", "a/b")
refused("a bad entry point: refused",
        [py, mkpkg("ep", noarch="python", files={"site-packages/ep.py": b""},
                   link={"noarch": {"type": "python", "entry_points": ["../x = ep:main"]}})],
        "ep-1.0-0", "entry point")
refused("a hardlink in paths.json that is a symlink: refused",
        [mkpkg("hl", files={"a": ("link", "b")},
               paths=[{"_path": "a", "path_type": "hardlink"}])],
        "hl-1.0-0", "a is a hardlink in paths.json")
refused("a path through a symlink in the package: refused",
        [mkpkg("via", files={"lib": ("link", "/etc")},
               paths=[{"_path": "lib/passwd", "path_type": "hardlink"}])],
        "via-1.0-0", "lib/passwd", "symbolic link")
nothing = mkpkg("nothing")
os.unlink(os.path.join(nothing, "info", "paths.json"))
refused("a package with neither paths.json nor info/files: refused", [nothing],
        "nothing-1.0-0", "neither info/paths.json nor info/files")
refused("a directory the package lacks a source for: refused",
        [mkpkg("nod", paths=[{"_path": "share/d", "path_type": "directory"}])],
        "nod-1.0-0", "share/d")

# Clobbering: the later in link order (b depends on a) wins, with a warning.
a = mkpkg("a", files={"share/x": b"from a"})
b = mkpkg("b", depends=["a >=1"], files={"share/x": b"from b"})
r = drive(TOKEN, 1, [b, a])
if t.ok("two packages shipping one path: a plan", r):
    ents, _ = parse_plan(r.out)
    x = [e for e in ents if e["path"] == "share/x"]
    t.eq("the later in link order wins", [unesc(e["pkg"]).decode() for e in x], [b])
    t.eq("a warning, as conda resolves it",
         r.err.strip(), "link_drive: warning: share/x: in both a-1.0-0 and b-1.0-0; b-1.0-0 wins")

# An entry point over the package's own python-scripts/ file: conda writes the entry point
# over it, warning.
own = mkpkg("own", noarch="python", files={"python-scripts/own": b"#!x\n"},
            link={"noarch": {"type": "python", "entry_points": ["own = own:main"]}})
r = drive(TOKEN, 1, [own, py])
if t.ok("an entry point over the package's own script: a plan", r):
    ents, _ = parse_plan(r.out)
    t.eq("the entry point wins", [e["pkg"] for e in ents if e["path"] == "bin/own"], [None])
    t.eq("with a warning", r.err.strip(),
         "link_drive: warning: bin/own: in both own-1.0-0 and own-1.0-0; own-1.0-0 wins")

# An old package: info/files + has_prefix (bare path: conda's default placeholder, text;
# "PH mode path" otherwise), its symlink told by the file itself; noarch python mapped,
# python-scripts/ to bin/, entry points for python 3.12, a post-link script listed.
old = mkpkg("old", files={"bin/a": b"/opt/anaconda1anaconda2anaconda3/x\n",
                          "lib/b.so": b"/ph/here\0\0\0\0", "lib/c.so": ("link", "b.so"),
                          "bin/.old-post-link.sh": b"echo\n"},
            has_prefix="bin/a\n/ph/here binary lib/b.so\n")
nap = mkpkg("nap", noarch="python", depends=["python >=3"],
            files={"site-packages/nap/__init__.py": b"", "python-scripts/napper": b"#!py\n"},
            link={"noarch": {"type": "python", "entry_points": ["nap = nap.cli:main.run"]}})
gen = mkpkg("gen", noarch="generic", files={"site-packages/g.py": b""})
r = drive(TOKEN, 5, [nap, old, py, gen])
if t.ok("old package, noarch python: a plan", r):
    ents, extra = parse_plan(r.out)
    by = {e["path"]: e for e in ents}
    t.eq("bare has_prefix line: the default placeholder, text",
         (by["bin/a"]["placeholder"], by["bin/a"]["binary"]),
         ("/opt/anaconda1anaconda2anaconda3", False))
    t.eq("three-word has_prefix line: its placeholder and mode",
         (by["lib/b.so"]["placeholder"], by["lib/b.so"]["binary"]), ("/ph/here", True))
    t.eq("an old package's symlink", (by["lib/c.so"]["type"], by["lib/c.so"]["target"]),
         ("symlink", "b.so"))
    t.check("noarch python mapped to lib/python3.12/site-packages and bin/",
            "lib/python3.12/site-packages/nap/__init__.py" in by and "bin/napper" in by)
    t.eq("entry point as conda writes it", unesc(by["bin/nap"]["data"]).decode(),
         f"#!{TOKEN}/bin/python3.12\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n\n"
         "from nap.cli import main\n\nif __name__ == '__main__':\n"
         "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
         "    sys.exit(main.run())\n")
    t.eq("entry point mode and placeholder", (by["bin/nap"]["mode"], by["bin/nap"]["placeholder"]),
         (0o755, TOKEN))
    t.eq("link script packages", extra["scripts"], ["old-1.0-0"])
    t.eq("python version", extra["python"], "3.12")
    rec = json.loads(unesc(by["conda-meta/nap-1.0-0.json"]["data"]))
    t.eq("noarch record: files as conda lists them (paths as linked, pycs, entry points)",
         rec["files"], ["bin/napper", "lib/python3.12/site-packages/nap/__init__.py",
                        "lib/python3.12/site-packages/nap/__pycache__/__init__.cpython-312.pyc",
                        "bin/nap"])
    t.eq("noarch record: paths_data keeps the package's paths, then the generated ones",
         [(p["_path"], p["path_type"]) for p in rec["paths_data"]["paths"]],
         [("python-scripts/napper", "hardlink"), ("site-packages/nap/__init__.py", "hardlink"),
          ("lib/python3.12/site-packages/nap/__pycache__/__init__.cpython-312.pyc", "pyc_file"),
          ("bin/nap", "unix_python_entry_point")])
    t.eq("noarch record: package_type", rec["package_type"], "noarch_python")
    rec = json.loads(unesc(by["conda-meta/old-1.0-0.json"]["data"]))
    t.eq("old record: placeholders in paths_data",
         [(p["_path"], p.get("prefix_placeholder"), p.get("file_mode"), p["path_type"])
          for p in rec["paths_data"]["paths"]],
         [("bin/.old-post-link.sh", None, None, "hardlink"),
          ("bin/a", "/opt/anaconda1anaconda2anaconda3", "text", "hardlink"),
          ("lib/b.so", "/ph/here", "binary", "hardlink"), ("lib/c.so", None, None, "softlink")])
    t.eq("link order: python before the noarch package",
         [os.path.basename(unesc(d).decode()) for d in extra["order"]],
         ["gen-1.0-0", "old-1.0-0", "python-3.12.1-0", "nap-1.0-0"])
    rec = json.loads(unesc(by["conda-meta/gen-1.0-0.json"]["data"]))
    t.check("noarch generic: not mapped, package_type noarch_generic",
            "site-packages/g.py" in by and rec["package_type"] == "noarch_generic", rec)
    t.check("no noarch record for an arch package", "package_type" not in
            json.loads(unesc(by["conda-meta/old-1.0-0.json"]["data"])))

t.finish()
