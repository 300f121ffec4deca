# SPDX-License-Identifier: MIT
"""store/conda/pkgarchive.c through tests/integ/pkgarchive_drive.c (issue 12): the corpus's real
archives verify against their repodata digests and unpack (into one data file, listed by
the drive) to what the corpus's package cache holds, path by path; hostile archives made
here are refused with one line naming the archive and the path or reason, and write
nothing but their data file.

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

t = lib.Harness("pkgarchive: verify and unpack conda package archives")
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


UNPACKED = iter(range(1 << 30))


def unpack(archive, name=None):
    """Unpack into a fresh data file under data/; (result, {path: entry}, the data file)."""
    data = t.path("data", f"{name or os.path.basename(archive)}-{next(UNPACKED)}.data")
    r = drive("unpack", archive, data)
    entries = {}
    for line in r.out.splitlines() if r.rc == 0 else []:
        head, path, target = line.split("\t")
        kind, mode, mtime, size, off = head.split()
        entries[path] = dict(kind=kind, mode=int(mode, 8), mtime_ns=int(mtime),
                             size=int(size), off=int(off), target=target)
    return r, entries, data


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


def compare(archive, entries, data, want):
    """Differences between what unpack listed of archive and the cache's extracted want
    (which also holds conda's info/repodata_record.json, not in the archive): every path,
    its type, mode, size, bytes, link target, and mtime to the second (but for directories
    the archive does not list, which get the time of the run)."""
    members = tar_members(archive)
    w = lib.lstat_tree(want)
    w.pop("info/repodata_record.json", None)
    problems = [f"{p}: missing" for p in sorted(set(w) - set(entries))]
    problems += [f"{p}: extra" for p in sorted(set(entries) - set(w))]
    with open(data, "rb") as f:
        for p in sorted(set(w) & set(entries)):
            ws, e = w[p], entries[p]
            kind = "d" if stat.S_ISDIR(ws.st_mode) else "l" if stat.S_ISLNK(ws.st_mode) else "f"
            if kind != e["kind"]:
                problems.append(f"{p}: type {e['kind']}, in the cache {kind}")
                continue
            if kind != "l" and stat.S_IMODE(ws.st_mode) != e["mode"]:
                problems.append(f"{p}: mode {e['mode']:o} != {stat.S_IMODE(ws.st_mode):o}")
            if kind == "f":
                f.seek(e["off"])
                with open(os.path.join(want, p), "rb") as x:
                    if ws.st_size != e["size"] or f.read(e["size"]) != x.read():
                        problems.append(f"{p}: size {e['size']} / {ws.st_size} or bytes differ")
            if kind == "l" and (os.readlink(os.path.join(want, p)) != e["target"] or
                                e["size"] != len(e["target"].encode())):
                problems.append(f"{p}: target {e['target']!r}")
            if (kind != "d" or p in members) and e["mtime_ns"] != int(ws.st_mtime) * 10**9:
                problems.append(f"{p}: mtime {e['mtime_ns']} != {int(ws.st_mtime)} s")
            if p in members and int(members[p].mtime) != e["mtime_ns"] // 10**9:
                problems.append(f"{p}: mtime {e['mtime_ns']} != the archive's {members[p].mtime}")
    problems += [f"{p}: in the archive, not unpacked" for p in members if p not in entries]
    return problems


def read_data(data, e):
    with open(data, "rb") as f:
        f.seek(e["off"])
        return f.read(e["size"])


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
    """Nothing written but the data files: in the sentinel or in /tmp."""
    stray = [n for n in os.listdir(t.path("data")) if not n.endswith(".data")]
    stray += [os.path.join(SENTINEL, n) for n in os.listdir(SENTINEL) if n != "keep"]
    stray += [os.path.join("/tmp", n) for n in os.listdir("/tmp") if TOKEN in n]
    t.check(what, not stray, f"written outside: {stray}")


corpus = t.corpus()
PKGS = corpus["pkgs_dir"]
ARCHIVES = sorted(n for n in os.listdir(PKGS) if n.endswith((".conda", ".tar.bz2")))
os.makedirs(t.path("data"))

with t.section("the corpus's archives unpack to the package cache's trees"):
    kinds = {".conda": 0, ".tar.bz2": 0}
    for fn in ARCHIVES:
        kinds[".conda" if fn.endswith(".conda") else ".tar.bz2"] += 1
    t.check(f"both formats in the corpus ({kinds})", all(kinds.values()))
    total = 0
    for fn in ARCHIVES:
        r, entries, data = unpack(os.path.join(PKGS, fn), dist_of(fn))
        if not t.ok(f"unpack {fn}", r):
            continue
        problems = compare(os.path.join(PKGS, fn), entries, data, os.path.join(PKGS, dist_of(fn)))
        total += len(entries)
        t.check(f"{fn}: {len(entries)} paths as in the cache (types, modes, sizes, bytes, "
                f"targets, mtimes to the second)", not problems, "\n".join(problems[:20]))
        os.unlink(data)
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
    big = os.urandom(3 << 20)
    a = make_tar_bz2("fine-1.0-0", [
        ent("info/index.json", data=b"{}\n"),
        ent("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, mtime=1700000000.5),
        ent("lib/big.bin", data=big, mode=0o600),
        ent("lib/libx.so", kind="symlink", target="big.bin"),
        ent("lib/abs", kind="symlink", target="/etc/passwd"),
        ent("lib/hard", kind="hardlink", target="lib/big.bin"),
        ent("share/ro/f", data=b"f\n"),
        ent("share/ro", kind="dir", mode=0o555, mtime=1600000000),
        ent("share/empty", kind="dir", mode=0o700, mtime=1600000001),
        ent("share/\u00e9t\u00e9.txt", data=b"summer\n"),
    ])
    r, entries, data = unpack(a)
    if t.ok("unpack a package of every allowed kind", r):
        tool = entries["bin/tool"]
        t.eq("set-id bits dropped", tool["mode"], 0o755)
        t.eq("a pax mtime's fraction kept (ns)", tool["mtime_ns"], 1700000000_500000000)
        t.check("3 MiB of bytes as written", read_data(data, entries["lib/big.bin"]) == big)
        t.eq("a relative symlink as written", (entries["lib/libx.so"]["kind"],
                                               entries["lib/libx.so"]["target"]), ("l", "big.bin"))
        t.eq("an absolute symlink as written, its size its target's",
             (entries["lib/abs"]["target"], entries["lib/abs"]["size"]),
             ("/etc/passwd", len("/etc/passwd")))
        h, b = entries["lib/hard"], entries["lib/big.bin"]
        t.check("a hard link to an earlier file is that file: its bytes, mode and mtime",
                (h["kind"], h["off"], h["size"], h["mode"], h["mtime_ns"]) ==
                ("f", b["off"], b["size"], b["mode"], b["mtime_ns"]), (h, b))
        ro = entries["share/ro"]
        t.eq("a directory listed after its files gets its mode and mtime",
             (ro["kind"], ro["mode"], ro["mtime_ns"]), ("d", 0o555, 1600000000 * 10**9))
        t.eq("and holds them", entries["share/ro/f"]["kind"], "f")
        t.eq("an empty directory", (entries["share/empty"]["kind"],
                                    entries["share/empty"]["mode"]), ("d", 0o700))
        t.eq("a directory the archive does not list is 0755",
             (entries["lib"]["kind"], entries["lib"]["mode"]), ("d", 0o755))
        t.eq("a UTF-8 name", entries["share/\u00e9t\u00e9.txt"]["kind"], "f")
        t.eq("every path, sorted", list(entries), sorted(entries, key=lambda p: p.encode()))
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
    r, entries, data = unpack(a)
    if t.ok("unpack a sparse file", r):
        with open(data, "rb") as f, open(os.path.join(src, "lib/sparse.bin"), "rb") as x:
            e = entries["lib/sparse.bin"]
            f.seek(e["off"])
            t.check("its bytes and size, the trailing hole too",
                    e["size"] == 3 << 20 and f.read(e["size"]) == x.read())
    c = make_conda("fine-1.0-0", conda_members("fine-1.0-0", INFO, [
        ent("lib/a", data=b"a\n"), ent("lib/b", kind="symlink", target="a")]))
    r, entries, data = unpack(c)
    if t.ok("unpack a hand-made .conda", r):
        t.eq("its paths", list(entries), ["info", "info/index.json", "lib", "lib/a", "lib/b"])
        t.eq("its file's bytes", read_data(data, entries["lib/a"]), b"a\n")

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
        refused(f"{name}: {needles[0]}", unpack(a)[0], a, *needles)
    c = make_conda("inner-1.0-0", conda_members("inner-1.0-0", INFO, [ent("../x")]))
    refused(".conda: ../x in its pkg tar", unpack(c)[0], c, "../x", '".." component')
    # A target no symbolic link may hold (over PATH_MAX) is refused.
    a = make_tar_bz2("longlink", [ent("lib/l", kind="symlink", target="x" * 5000)])
    refused("a symbolic link target over 4095 bytes", unpack(a)[0], a, "lib/l",
            "over 4095 bytes")
    # Link targets are kept in memory with the names, and count against the same cap: 17,000
    # links of 4,000 bytes each pass its 64 MiB (A4).
    c = make_conda("manylinks-1.0-0", conda_members("manylinks-1.0-0", INFO, [
        ent(f"lib/l{i}", kind="symlink", target=f"{i}".ljust(4000, "x")) for i in range(17000)]))
    refused("link targets past the names' cap", unpack(c)[0], c,
            "more than 64 MiB of path names and link targets")

    with open(os.path.join(PKGS, next(f for f in ARCHIVES if f.endswith(".tar.bz2"))),
              "rb") as f:
        whole = f.read()
    a = t.path("hostile", "truncated-1.0-0.tar.bz2")
    lib.write(a, whole[:len(whole) // 2])
    refused("a truncated .tar.bz2", unpack(a)[0], a, "corrupt archive: ")
    a = t.path("hostile", "garbage-1.0-0.tar.bz2")
    lib.write(a, b"not an archive\n" * 100)
    refused("a .tar.bz2 that is not one", unpack(a)[0], a, "corrupt archive: ")

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
        refused(f".conda with a byte flipped in the zstd data ({where})", unpack(c)[0], c,
                "corrupt archive: ")
    # Random bytes go into raw zstd blocks and --no-check drops zstd's own checksum: a
    # flipped byte there decodes without complaint, and only the zip's CRC-32 can tell.
    payload = tar_bytes([ent("lib/random.bin", data=os.urandom(1 << 20))])
    raw = subprocess.run(["zstd", "-q", "-3", "--no-check", "-c"], input=payload,
                         capture_output=True, check=True).stdout
    good = make_conda("crc-1.0-0", [("metadata.json", b"{}"), ("info-crc-1.0-0.tar.zst",
                                                               zst(tar_bytes(INFO))),
                                    ("pkg-crc-1.0-0.tar.zst", raw)])
    t.ok("a .conda of raw zstd blocks", unpack(good)[0])
    with open(good, "rb") as f:
        b = bytearray(f.read())
    b[b.index(raw) + len(raw) // 2] ^= 0x01
    c = t.path("hostile", "crc-1.0-1.conda")
    lib.write(c, bytes(b))
    refused(".conda with a byte flipped in a raw zstd block (the zip's CRC)", unpack(c)[0],
            c, "corrupt archive: ", "pkg-crc-1.0-0.tar.zst")
    dist = "parts-1.0-0"
    whole = conda_members(dist, INFO, [ent("lib/a")])
    c = make_conda("nopkg-1.0-0", [m for m in whole if not m[0].startswith("pkg-")])
    refused(".conda without its pkg tar", unpack(c)[0], c, "pkg-*.tar.zst")
    c = make_conda("noinfo-1.0-0", [m for m in whole if not m[0].startswith("info-")])
    refused(".conda without its info tar", unpack(c)[0], c, "info-*.tar.zst")
    c = make_conda("extra-1.0-0", whole + [("evil.sh", b"#!/bin/sh\n")])
    refused(".conda with an extra member", unpack(c)[0], c, "evil.sh", "not a member")
    c = make_conda("twopkg-1.0-0", whole + [(f"pkg-{dist}.tar.zst", whole[1][1])])
    refused(".conda with two pkg tars", unpack(c)[0], c, f"pkg-{dist}.tar.zst", "second")
    c = t.path("hostile", "notzip-1.0-0.conda")
    lib.write(c, b"PK\x03\x04" + b"\0" * 200)
    refused("a .conda that is not a zip", unpack(c)[0], c, "corrupt archive: ")
    a = t.path("hostile", "other-1.0-0.tar.gz")
    lib.write(a, b"")
    refused("neither format by name", unpack(a)[0], a, "not a .conda or a .tar.bz2")
    outside_clean("nothing written but data files: not in the sentinel, not in /tmp")

t.finish()
