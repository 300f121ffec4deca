# SPDX-License-Identifier: MIT
"""store/pkgarchive.c through tests/integ/pkgarchive_drive.c (issue 12): the corpus's real
archives verify against their repodata digests and extract to what the corpus's package
cache holds; hostile archives made here are refused with one line naming the archive and
the path or reason, and write nothing outside the target directory.

Precision of mtimes: a tar header (ustar) holds whole seconds; a pax header may hold a
decimal fraction, which libarchive reads to the ns. The corpus's archives (both formats
are tars inside, pax) carry whole seconds (mkcorpus writes int(st_mtime)), so the corpus
comparison is to the second; a pax archive made here with a fractional mtime checks that
the fraction is kept.
"""

import bz2
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import warnings
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

t = lib.Harness("pkgarchive: verify and extract conda package archives")
DRIVE = os.environ["PKGARCHIVE_DRIVE"]
TOKEN = f"cfs-pkgarchive-{os.getpid()}"
SENTINEL = t.path("sentinel")
os.makedirs(SENTINEL)
lib.write(os.path.join(SENTINEL, "keep"), b"keep\n")


def drive(*args):
    r = t.run([DRIVE] + [str(a) for a in args])
    if os.environ.get("PKGARCHIVE_SAY") and r.err:
        print(f"      said: {r.err.strip()}")
    return r


def refused(what, r, archive, *needles):
    """Exit 1 and one line on stderr naming the archive first, then every needle."""
    lines = r.err.splitlines()
    want = f"pkgarchive_drive: {archive}: "
    ok = r.rc == 1 and len(lines) == 1 and lines[0].startswith(want) and \
        all(n in lines[0] for n in needles)
    return t.check(what, ok, None if ok else f"{r}\n     want: exit 1, one line starting "
                   f"{want!r} naming {needles!r}")


def dist_of(fn):
    return fn[:-len(".conda")] if fn.endswith(".conda") else fn[:-len(".tar.bz2")]


def extract(archive, name=None):
    """Extract into a fresh directory under out/; (result, directory)."""
    d = t.path("out", name or os.path.basename(archive))
    os.makedirs(d)
    return drive("extract", archive, d), d


# ---- reading archives independently (Python's tarfile and zipfile, zstd's CLI) ----

def tar_members(archive):
    """{path: TarInfo} of every tar in the archive."""
    out = {}

    def add(tf):
        for ti in tf:
            out[ti.name.rstrip("/")] = ti
    if archive.endswith(".tar.bz2"):
        with tarfile.open(archive, "r:bz2") as tf:
            add(tf)
        return out
    with zipfile.ZipFile(archive) as z:
        for n in z.namelist():
            if n.endswith(".tar.zst"):
                raw = subprocess.run(["zstd", "-q", "-d", "-c"], input=z.read(n),
                                     capture_output=True, check=True).stdout
                with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
                    add(tf)
    return out


def compare(archive, got, want):
    """Differences between the extraction got and the cache's extracted want (which also
    holds conda's info/repodata_record.json, not in the archive)."""
    members = tar_members(archive)
    g, w = lib.lstat_tree(got), lib.lstat_tree(want)
    w.pop("info/repodata_record.json", None)
    problems = [f"{p}: missing" for p in sorted(set(w) - set(g))]
    problems += [f"{p}: extra" for p in sorted(set(g) - set(w))]
    for p in sorted(set(g) & set(w)):
        gs, ws = g[p], w[p]
        if stat.S_IFMT(gs.st_mode) != stat.S_IFMT(ws.st_mode):
            problems.append(f"{p}: type {stat.S_IFMT(gs.st_mode):o} != {stat.S_IFMT(ws.st_mode):o}")
            continue
        if not stat.S_ISLNK(gs.st_mode) and stat.S_IMODE(gs.st_mode) != stat.S_IMODE(ws.st_mode):
            problems.append(f"{p}: mode {stat.S_IMODE(gs.st_mode):o} != "
                            f"{stat.S_IMODE(ws.st_mode):o}")
        if stat.S_ISREG(gs.st_mode) and (gs.st_size != ws.st_size or
                                         not lib.same_bytes(os.path.join(got, p),
                                                        os.path.join(want, p))):
            problems.append(f"{p}: size {gs.st_size} / {ws.st_size} or bytes differ")
        if stat.S_ISLNK(gs.st_mode) and \
                os.readlink(os.path.join(got, p)) != os.readlink(os.path.join(want, p)):
            problems.append(f"{p}: symlink target differs")
        # Directories the archive does not list get the time of extraction.
        if (not stat.S_ISDIR(gs.st_mode) or p in members) and \
                gs.st_mtime_ns != int(ws.st_mtime) * 10**9:
            problems.append(f"{p}: mtime {gs.st_mtime_ns} != {int(ws.st_mtime)} s")
        if p in members and int(members[p].mtime) != gs.st_mtime_ns // 10**9:
            problems.append(f"{p}: mtime {gs.st_mtime_ns} != the archive's {members[p].mtime}")
    problems += [f"{p}: in the archive, not extracted" for p in members if p not in g]
    return problems, len(g)


# ---- making hostile archives ----

def ent(name, kind="file", data=b"", mode=0o644, target="", mtime=1700000000):
    ti = tarfile.TarInfo(name)
    ti.mtime, ti.mode = mtime, mode
    if kind == "file":
        ti.size = len(data)
    else:
        ti.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                   "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE,
                   "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}[kind]
        ti.linkname = target
        if kind in ("chr", "blk"):
            ti.devmajor, ti.devminor = 1, 3
    return ti, (data if kind == "file" else None)


def tar_bytes(entries):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return bio.getvalue()


def zst(data):
    return subprocess.run(["zstd", "-q", "-3", "-c"], input=data, capture_output=True,
                          check=True).stdout


def make_tar_bz2(name, entries):
    path = t.path("hostile", name + ".tar.bz2")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(bz2.compress(tar_bytes(entries)))
    return path


def make_conda(name, members):
    """members: [(member name, bytes)], stored as conda does (no compression)."""
    path = t.path("hostile", name + ".conda")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with warnings.catch_warnings(), \
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        warnings.simplefilter("ignore")   # a name twice is what some cases want
        for n, data in members:
            z.writestr(n, data)
    return path


def conda_members(dist, info, pkg):
    return [("metadata.json", json.dumps({"conda_pkg_format_version": 2}).encode()),
            (f"pkg-{dist}.tar.zst", zst(tar_bytes(pkg))),
            (f"info-{dist}.tar.zst", zst(tar_bytes(info)))]


INFO = [ent("info/index.json", data=b'{"name": "h"}\n')]


def outside_clean(what):
    """Nothing written beside the target directories, in the sentinel or in /tmp."""
    stray = [n for n in os.listdir(t.path("out")) if not os.path.isdir(t.path("out", n))]
    stray += [os.path.join(SENTINEL, n) for n in os.listdir(SENTINEL) if n != "keep"]
    stray += [os.path.join("/tmp", n) for n in os.listdir("/tmp") if TOKEN in n]
    t.check(what, not stray, f"written outside: {stray}")


corpus = t.corpus()
PKGS = corpus["pkgs_dir"]
ARCHIVES = sorted(n for n in os.listdir(PKGS) if n.endswith((".conda", ".tar.bz2")))
os.makedirs(t.path("out"))

with t.section("the corpus's archives extract to the package cache's trees"):
    kinds = {".conda": 0, ".tar.bz2": 0}
    for fn in ARCHIVES:
        kinds[".conda" if fn.endswith(".conda") else ".tar.bz2"] += 1
    t.check(f"both formats in the corpus ({kinds})", all(kinds.values()))
    total = 0
    for fn in ARCHIVES:
        r, d = extract(os.path.join(PKGS, fn), dist_of(fn))
        if not t.ok(f"extract {fn}", r):
            continue
        problems, n = compare(os.path.join(PKGS, fn), d, os.path.join(PKGS, dist_of(fn)))
        total += n
        t.check(f"{fn}: {n} paths as in the cache (types, modes, sizes, bytes, targets, "
                f"mtimes to the second)", not problems, "\n".join(problems[:20]))
        t.rmtree(d)
    t.check(f"{total} paths compared", total > 10000)

with t.section("verify: the repodata's sha256 and md5"):
    digests = {}
    for sub in os.listdir(corpus["channel_dir"]):
        rd = os.path.join(corpus["channel_dir"], sub, "repodata.json")
        if os.path.isfile(rd):
            with open(rd) as f:
                j = json.load(f)
            for key in ("packages", "packages.conda"):
                digests.update(j.get(key, {}))
    for fn in ARCHIVES:
        a, rec = os.path.join(PKGS, fn), digests.get(fn)
        if not t.check(f"{fn} in the repodata", rec is not None):
            continue
        t.ok(f"verify {fn} by sha256", drive("verify", a, rec["sha256"], "-"))
        t.ok(f"verify {fn} by md5", drive("verify", a, "-", rec["md5"]))
    fn = ARCHIVES[0]
    a, rec = os.path.join(PKGS, fn), digests[fn]
    t.ok("sha256 in capitals", drive("verify", a, rec["sha256"].upper(), "-"))
    t.ok("sha256 wins over md5", drive("verify", a, rec["sha256"], "0" * 32))
    bad = ("0" if rec["sha256"][0] != "0" else "1") + rec["sha256"][1:]
    refused("a wrong sha256", drive("verify", a, bad, rec["md5"]), a,
            f"sha256 mismatch: the lock says {bad}, the archive is {rec['sha256']}")
    badmd5 = ("0" if rec["md5"][0] != "0" else "1") + rec["md5"][1:]
    refused("a wrong md5", drive("verify", a, "-", badmd5), a,
            f"md5 mismatch: the lock says {badmd5}, the archive is {rec['md5']}")
    refused("neither digest", drive("verify", a, "-", "-"), a, "neither a sha256 nor an md5")
    refused("a sha256 too short", drive("verify", a, rec["sha256"][:-1], "-"), a,
            "sha256 is not 64 hex digits")
    refused("an md5 not hex", drive("verify", a, "-", "z" * 32), a, "md5 is not 32 hex digits")

with t.section("what packages may hold"):
    data = os.urandom(3 << 20)
    a = make_tar_bz2("fine-1.0-0", [
        ent("info/index.json", data=b"{}\n"),
        ent("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, mtime=1700000000.5),
        ent("lib/big.bin", data=data, mode=0o600),
        ent("lib/libx.so", kind="symlink", target="big.bin"),
        ent("lib/abs", kind="symlink", target="/etc/passwd"),
        ent("lib/hard", kind="hardlink", target="lib/big.bin"),
        ent("share/ro/f", data=b"f\n"),
        ent("share/ro", kind="dir", mode=0o555, mtime=1600000000),
        ent("share/empty", kind="dir", mode=0o700, mtime=1600000001),
        ent("share/\u00e9t\u00e9.txt", data=b"summer\n"),
    ])
    r, d = extract(a)
    if t.ok("extract a package of every allowed kind", r):
        st = os.lstat(os.path.join(d, "bin/tool"))
        t.eq("set-id bits dropped", stat.S_IMODE(st.st_mode), 0o755)
        t.eq("a pax mtime's fraction kept (ns)", st.st_mtime_ns, 1700000000_500000000)
        t.check("3 MiB of bytes as written",
                open(os.path.join(d, "lib/big.bin"), "rb").read() == data)
        t.eq("a relative symlink as written", os.readlink(os.path.join(d, "lib/libx.so")),
             "big.bin")
        t.eq("an absolute symlink as written", os.readlink(os.path.join(d, "lib/abs")),
             "/etc/passwd")
        h, b = os.lstat(os.path.join(d, "lib/hard")), os.lstat(os.path.join(d, "lib/big.bin"))
        t.check("a hard link to an earlier file is that file",
                (h.st_ino, h.st_nlink) == (b.st_ino, 2))
        ro = os.lstat(os.path.join(d, "share/ro"))
        t.eq("a directory listed after its files gets its mode and mtime",
             (stat.S_IMODE(ro.st_mode), ro.st_mtime_ns), (0o555, 1600000000 * 10**9))
        t.check("and holds them", os.path.isfile(os.path.join(d, "share/ro/f")))
        t.eq("an empty directory", stat.S_IMODE(os.lstat(os.path.join(d, "share/empty")).st_mode),
             0o700)
        t.eq("a directory the archive does not list is 0755",
             stat.S_IMODE(os.lstat(os.path.join(d, "lib")).st_mode), 0o755)
        t.check("a UTF-8 name", os.path.isfile(os.path.join(d, "share/\u00e9t\u00e9.txt")))
    # A sparse file (GNU tar's pax sparse format): its data where it was, holes of zeros,
    # the trailing one included, and the size the archive gives.
    src = t.path("sparse-src")
    os.makedirs(os.path.join(src, "lib"))
    with open(os.path.join(src, "lib/sparse.bin"), "wb") as f:
        f.write(b"head")
        f.seek(1 << 20)
        f.write(b"middle")
        f.truncate(3 << 20)
    a = t.path("hostile", "sparse-1.0-0.tar.bz2")
    subprocess.run(["tar", "--format=pax", "--sparse", "-cjf", a, "-C", src, "lib/sparse.bin"],
                   check=True)
    r, d = extract(a)
    if t.ok("extract a sparse file", r):
        t.check("its bytes and size", lib.same_bytes(os.path.join(src, "lib/sparse.bin"),
                                                 os.path.join(d, "lib/sparse.bin")) and
                os.path.getsize(os.path.join(d, "lib/sparse.bin")) == 3 << 20)
    c = make_conda("fine-1.0-0", conda_members("fine-1.0-0", INFO, [
        ent("lib/a", data=b"a\n"), ent("lib/b", kind="symlink", target="a")]))
    r, d = extract(c)
    if t.ok("extract a hand-made .conda", r):
        t.eq("its paths", sorted(lib.lstat_tree(d)),
             ["info", "info/index.json", "lib", "lib/a", "lib/b"])

with t.section("hostile archives are refused"):
    cases = [
        ("dotdot", [ent("../x")], ["../x", '".." component']),
        ("abs", [ent(f"/tmp/{TOKEN}-abs")], [f"/tmp/{TOKEN}-abs", "absolute path"]),
        ("climb", [ent("a/b", data=b"b"), ent("a/../../x")], ["a/../../x", '".." component']),
        ("dot", [ent("./x")], ["./x", '"." component']),
        ("tmplink", [ent("d", kind="symlink", target="/tmp"), ent(f"d/{TOKEN}-f")],
         [f"d/{TOKEN}-f", "reaches through the symbolic link d"]),
        ("outlink", [ent("lib/out", kind="symlink", target=SENTINEL), ent("lib/out/f")],
         ["lib/out/f", "reaches through the symbolic link lib/out"]),
        ("uplink", [ent("lib/up", kind="symlink", target="../../../sentinel"),
                    ent("lib/up/f")], ["lib/up/f", "symbolic link lib/up"]),
        ("linkdir", [ent("lib/out", kind="symlink", target=SENTINEL),
                     ent("lib/out", kind="dir")], ["lib/out", "named twice"]),
        ("fifo", [ent("bin/fifo", kind="fifo")], ["bin/fifo", "a fifo"]),
        ("chr", [ent("dev/null", kind="chr")], ["dev/null", "a character device"]),
        ("blk", [ent("dev/sda", kind="blk")], ["dev/sda", "a block device"]),
        ("hardlater", [ent("lib/h", kind="hardlink", target="lib/f"), ent("lib/f")],
         ["lib/h", "a hard link to lib/f"]),
        ("hardout", [ent("lib/h", kind="hardlink", target="/etc/passwd")],
         ["lib/h", "a hard link to /etc/passwd"]),
        ("hardup", [ent("lib/h", kind="hardlink", target="../sentinel/keep")],
         ["lib/h", "a hard link to ../sentinel/keep"]),
        ("hardvia", [ent("lib/etc", kind="symlink", target="/etc"),
                     ent("lib/h", kind="hardlink", target="lib/etc/passwd")],
         ["lib/h", "a hard link to lib/etc/passwd"]),
        ("twice", [ent("lib/f", data=b"1"), ent("lib/f", data=b"2")],
         ["lib/f", "named twice"]),
        ("dirfile", [ent("lib/f/g"), ent("lib/f")],
         ["lib/f", "already the directory of paths before it"]),
        ("filedir", [ent("lib/f"), ent("lib/f/g")], ["lib/f/g", "lib/f is a regular file"]),
        ("empty", [ent("a//b")], ["a//b", "empty path component"]),
    ]
    for name, entries, needles in cases:
        a = make_tar_bz2(name, entries)
        r, d = extract(a)
        refused(f"{name}: {needles[0]}", r, a, *needles)
    c = make_conda("inner-1.0-0", conda_members("inner-1.0-0", INFO, [ent("../x")]))
    refused(".conda: ../x in its pkg tar", extract(c)[0], c, "../x", '".." component')

    with open(os.path.join(PKGS, next(f for f in ARCHIVES if f.endswith(".tar.bz2"))),
              "rb") as f:
        whole = f.read()
    a = t.path("hostile", "truncated-1.0-0.tar.bz2")
    lib.write(a, whole[:len(whole) // 2])
    refused("a truncated .tar.bz2", extract(a)[0], a, "corrupt archive: ")
    a = t.path("hostile", "garbage-1.0-0.tar.bz2")
    lib.write(a, b"not an archive\n" * 100)
    refused("a .tar.bz2 that is not one", extract(a)[0], a, "corrupt archive: ")

    real = os.path.join(PKGS, min((f for f in ARCHIVES if f.endswith(".conda")),
                                  key=lambda f: os.path.getsize(os.path.join(PKGS, f))))
    with zipfile.ZipFile(real) as z:
        zi = next(i for i in z.infolist() if i.filename.startswith("pkg-"))
        with open(real, "rb") as f:
            f.seek(zi.header_offset + 26)
            ln = int.from_bytes(f.read(2), "little") + int.from_bytes(f.read(2), "little")
            start = zi.header_offset + 30 + ln
    for where, off in (("header", start + 2), ("middle", start + zi.compress_size // 2),
                       ("end", start + zi.compress_size - 1)):
        c = t.path("hostile", f"flip{where}-1.0-0.conda")
        with open(real, "rb") as f:
            b = bytearray(f.read())
        b[off] ^= 0x40
        lib.write(c, bytes(b))
        refused(f".conda with a byte flipped in the zstd data ({where})", extract(c)[0], c,
                "corrupt archive: ")
    # Random bytes go into raw zstd blocks and --no-check drops zstd's own checksum: a
    # flipped byte there decodes without complaint, and only the zip's CRC-32 can tell.
    payload = tar_bytes([ent("lib/random.bin", data=os.urandom(1 << 20))])
    raw = subprocess.run(["zstd", "-q", "-3", "--no-check", "-c"], input=payload,
                         capture_output=True, check=True).stdout
    good = make_conda("crc-1.0-0", [("metadata.json", b"{}"), ("info-crc-1.0-0.tar.zst",
                                                               zst(tar_bytes(INFO))),
                                    ("pkg-crc-1.0-0.tar.zst", raw)])
    t.ok("a .conda of raw zstd blocks", extract(good)[0])
    with open(good, "rb") as f:
        b = bytearray(f.read())
    b[b.index(raw) + len(raw) // 2] ^= 0x01
    c = t.path("hostile", "crc-1.0-1.conda")
    lib.write(c, bytes(b))
    refused(".conda with a byte flipped in a raw zstd block (the zip's CRC)", extract(c)[0],
            c, "corrupt archive: ", "pkg-crc-1.0-0.tar.zst")
    dist = "parts-1.0-0"
    whole = conda_members(dist, INFO, [ent("lib/a")])
    c = make_conda("nopkg-1.0-0", [m for m in whole if not m[0].startswith("pkg-")])
    refused(".conda without its pkg tar", extract(c)[0], c, "pkg-*.tar.zst")
    c = make_conda("noinfo-1.0-0", [m for m in whole if not m[0].startswith("info-")])
    refused(".conda without its info tar", extract(c)[0], c, "info-*.tar.zst")
    c = make_conda("extra-1.0-0", whole + [("evil.sh", b"#!/bin/sh\n")])
    refused(".conda with an extra member", extract(c)[0], c, "evil.sh", "not a member")
    c = make_conda("twopkg-1.0-0", whole + [(f"pkg-{dist}.tar.zst", whole[1][1])])
    refused(".conda with two pkg tars", extract(c)[0], c, f"pkg-{dist}.tar.zst", "second")
    c = t.path("hostile", "notzip-1.0-0.conda")
    lib.write(c, b"PK\x03\x04" + b"\0" * 200)
    refused("a .conda that is not a zip", extract(c)[0], c, "corrupt archive: ")
    a = t.path("hostile", "other-1.0-0.tar.gz")
    lib.write(a, b"")
    refused("neither format by name", extract(a)[0], a, "not a .conda or a .tar.bz2")
    outside_clean("nothing written outside the target directories, the sentinel or /tmp")

t.finish()
