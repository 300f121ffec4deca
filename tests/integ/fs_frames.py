#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Every frame is checked on every decode (docs/object-format.md): one byte flipped inside a
zstd frame whose literals are stored raw (so zstd itself decodes it without complaint), inside
a raw frame, and inside a frame of a pack gives EIO through the mount (the other frames of the
same file still read right), and makes `condafs cat` and `condafs export` fail with one line
naming the file. Images of format 1 (no frame checksums: written before the format changed)
are still served byte for byte, and verify still finds a flipped byte in them by the whole
object's hash; the first command that writes to such a store makes its FORMAT 2 (so an older
condafs refuses it) and never rewrites an image."""

import errno
import os
import random
import struct

import fs_lib
import lib

t = fs_lib.FsHarness("fs_frames: a flipped byte in any frame is EIO, never wrong bytes")
rnd = random.Random(20251103)
FRAME = 1 << 18
# 4 KiB of random bytes repeated: each zstd frame starts with them as raw literals (Huffman
# cannot shrink random bytes), then matches. A byte flipped in those literals still decodes,
# to wrong bytes wherever the matches copy it.
BLOCK = rnd.randbytes(4096)
REPEATED = BLOCK * (4 * FRAME // len(BLOCK))
RANDOM = rnd.randbytes(4 * FRAME)               # incompressible: raw frames
SMALL = {f"lib/python3.11/pkg/mod{i}.py": (b"# module %d\n" % i) + BLOCK[:1500] * 3 +
         b"x = %d\n" % i for i in range(400)}   # packed: about 2 MiB, several pack frames


def layout(path):
    """(format, [(kind, offset in the image, stored length)]) of an object image; kind 0
    zstd, 1 raw, 2 zero."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:8]
    _, n = struct.unpack_from("<II", data, 8)
    hdr, esz = {b"CFSOBJ1\n": (40, 4), b"CFSOBJ2\n": (48, 12)}[magic]
    off = hdr + esz * n
    frames = []
    for i in range(n):
        (e,) = struct.unpack_from("<I", data, hdr + esz * i)
        frames.append((e >> 30, off, e & ((1 << 30) - 1)))
        off += e & ((1 << 30) - 1)
    return int(magic[6:7]), frames


def to_format1(path):
    """Rewrite an image as format 1 wrote it: the same frames, no checksums."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"CFSOBJ2\n":
        return
    _, n = struct.unpack_from("<II", data, 8)
    table = b"".join(data[48 + 12 * i:48 + 12 * i + 4] for i in range(n))
    new = b"CFSOBJ1\n" + data[8:40] + table + data[48 + 12 * n:]
    with open(path + ".new", "wb") as f:
        f.write(new)
    os.chmod(path + ".new", 0o444)
    os.rename(path + ".new", path)


def read_file(path):
    """(errno or 0, bytes read)."""
    try:
        with open(path, "rb") as f:
            return 0, f.read()
    except OSError as e:
        return e.errno, b""


def read_at(path, off, n):
    try:
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n)
    except OSError as e:
        return e.errno


store = t.path("store")
src = lib.make_prefix(t.path("p"), pkgs=[("frames", "1.0", "h0_0")],
                      files=dict({"share/repeated.bin": REPEATED, "share/random.bin": RANDOM},
                                 **SMALL))
h = t.ingest_hash(store, src)
nodes = lib.catalog_nodes(store, h)


def image_of(rel):
    o = lib.catalog_object(store, nodes[rel.encode()]["obj"])
    if o["pack"]:
        p = lib.catalog_object(store, o["pack"])
        return lib.object_file(store, p["key"]), o["pack_off"], o["size"]
    return lib.object_file(store, o["key"]), 0, o["size"]


def damaged(what, rel, image, at, exported=None):
    """Flip the byte at offset at of image; rel (a file using it) must fail everywhere.
    exported: what export's error names (default rel; the first file it meets in the frame)."""
    lib.flip(image, at)
    try:
        with t.daemon(store) as d:
            p = d.path(h, rel)
            e, got = read_file(p)
            t.check(f"{what}: reading {rel} through the mount is EIO", e == errno.EIO,
                    f"errno {e}, {len(got)} bytes, right bytes: {got == src_bytes(rel)}")
            t.eq(f"{what}: EIO again on the next read (nothing kept)", read_file(p)[0],
                 errno.EIO)
            if rel == "share/repeated.bin":
                t.eq(f"{what}: the file's undamaged first frame reads right",
                     read_at(p, 100, 4096), REPEATED[100:4196])
        r = t.cfs(store, "cat", h, rel)
        t.fails_clearly(f"{what}: cat fails, one line naming the file and the frame", r,
                        rel, "checksum")
        t.check(f"{what}: cat wrote no wrong byte", src_bytes(rel).startswith(
            r.out.encode("utf-8", "surrogateescape")), len(r.out))
        r = t.export(store, h, t.path(f"export-{what.replace(' ', '-')}"))
        t.fails_clearly(f"{what}: export fails, one line naming the file", r, exported or rel,
                        "checksum")
    finally:
        lib.flip(image, at)


def src_bytes(rel):
    with open(os.path.join(src, rel), "rb") as f:
        return f.read()


with t.section("the images as written"):
    img, _, _ = image_of("share/repeated.bin")
    fmt, frames = layout(img)
    t.eq("new images are format 2", fmt, 2)
    t.eq("share/repeated.bin: four zstd frames", [f[0] for f in frames], [0, 0, 0, 0])
    rimg, _, _ = image_of("share/random.bin")
    t.eq("share/random.bin: four raw frames", [f[0] for f in layout(rimg)[1]], [1, 1, 1, 1])
    t.verify_clean("verify is clean", store)

with t.section("a byte flipped in a zstd frame's raw literals"):
    _, frames = layout(img)
    damaged("zstd frame", "share/repeated.bin", img, frames[1][1] + 200)

with t.section("a byte flipped in a raw frame"):
    _, frames = layout(rimg)
    damaged("raw frame", "share/random.bin", rimg, frames[2][1] + frames[2][2] // 2)

with t.section("a byte flipped in a frame of a pack"):
    rel = "lib/python3.11/pkg/mod7.py"
    pimg, off, size = image_of(rel)
    _, frames = layout(pimg)
    i = off // FRAME
    t.check("the pack is zstd frames", frames[i][0] == 0, frames)
    # Early in the frame: in its literals, whichever member it lands in.
    damaged("pack frame", rel, pimg, frames[i][1] + 300, exported="lib/python3.11/pkg/mod")

with t.section("images of format 1 are still served, and verify checks them whole"):
    # The store as an older condafs left it: FORMAT 1, every image of format 1.
    fmt = os.path.join(store, "FORMAT")
    for d, _, files in os.walk(os.path.join(store, "objects")):
        for fn in files:
            to_format1(os.path.join(d, fn))
    os.chmod(fmt, 0o644)
    with open(fmt, "w") as f:
        f.write("condafs-store 1\n")
    t.eq("every image is format 1 now", layout(img)[0], 1)
    t.verify_clean("verify is clean", store)
    t.eq("a command that only reads leaves FORMAT 1", open(fmt).read(), "condafs-store 1\n")
    with t.daemon(store) as d:
        bad = [rel for rel in ["share/repeated.bin", "share/random.bin"] + list(SMALL)
               if read_file(d.path(h, rel)) != (0, src_bytes(rel))]
        t.check("every file reads byte for byte", not bad, bad[:5])
    r = t.cfs(store, "cat", h, "share/random.bin")
    t.check("cat reads one", r.rc == 0 and
            r.out.encode("utf-8", "surrogateescape") == RANDOM, r)
    _, frames = layout(rimg)
    lib.flip(rimg, frames[2][1] + 5)
    r = t.cfs(store, "verify")
    t.check("a flipped byte in a format 1 raw frame: verify exits 1 naming the file",
            r.rc == 1 and f"{h}/share/random.bin" in r.out and "corrupt" in r.out, r)
    lib.flip(rimg, frames[2][1] + 5)
    t.verify_clean("restored: verify is clean", store)

with t.section("the first command that writes makes FORMAT 2; old images stay as they are"):
    t.ok("tag", t.cfs(store, "tag", "frames", h))
    t.eq("FORMAT is 2", open(fmt).read(), "condafs-store 2\n")
    t.eq("the images are not rewritten", layout(img)[0], 1)
    src2 = lib.make_prefix(t.path("p2"), pkgs=[("frames2", "1.0", "h0_0")],
                           files={"share/random.bin": RANDOM, "share/new.bin": RANDOM[::-1]})
    h2 = t.ingest_hash(store, src2)
    n2 = lib.catalog_nodes(store, h2)
    new_img = lib.object_file(store, lib.catalog_object(store, n2[b"share/new.bin"]["obj"])["key"])
    t.eq("a new content gets a format 2 image", layout(new_img)[0], 2)
    t.eq("a stored content keeps its format 1 image", lib.object_file(store, lib.catalog_object(
        store, n2[b"share/random.bin"]["obj"])["key"]), rimg)
    t.verify_clean("verify is clean", store)
    with t.daemon(store) as d:
        t.eq("both read through the mount", [read_file(d.path(h2, "share", x))[1] for x in
                                             ("random.bin", "new.bin")], [RANDOM, RANDOM[::-1]])

t.finish()
