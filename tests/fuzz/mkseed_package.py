#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seeds for tests/fuzz/fuzz_package.c that the fuzzer can mutate through.

    mkseed_package.py ARCHIVE OUT.conda

A real package's .conda holds zstd-compressed tars and its .tar.bz2 a bzip2 stream, both
checksummed: a mutated byte only makes them corrupt. This writes the same package as a
.conda whose two tars are zstd frames of raw (stored) blocks with no checksum, so every
tar header, info/paths.json and has_prefix byte lies in the seed as it is and a mutation
reaches the tar reader, the unpacking and the link plan. The zip is stored, as conda-
package-handling writes it; metadata.json is conda's.
"""
import io
import struct
import subprocess
import sys
import tarfile
import zipfile

BLOCK_MAX = 128 * 1024


def raw_zstd(data):
    """One zstd frame (RFC 8878): single segment, 8-byte content size, raw blocks."""
    out = bytearray(struct.pack("<IB", 0xFD2FB528, 0xE0))
    out += struct.pack("<Q", len(data))
    pos = 0
    while True:
        n = min(BLOCK_MAX, len(data) - pos)
        last = pos + n == len(data)
        out += struct.pack("<I", (n << 3) | last)[:3]
        out += data[pos : pos + n]
        pos += n
        if last:
            return bytes(out)


def members(path):
    """The package's tar members with their data, info/ ones and the rest."""
    if path.endswith(".tar.bz2"):
        tars = [tarfile.open(path, "r:bz2")]
    else:
        tars = []
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith(".tar.zst"):
                    raw = subprocess.run(
                        ["zstd", "-dc"], input=z.read(name), stdout=subprocess.PIPE, check=True
                    ).stdout
                    tars.append(tarfile.open(fileobj=io.BytesIO(raw)))
    info, pkg = [], []
    for t in tars:
        for m in t.getmembers():
            data = t.extractfile(m).read() if m.isfile() else None
            (info if m.name.startswith("info/") else pkg).append((m, data))
    return info, pkg


def tar_of(entries):
    tarfile.RECORDSIZE = tarfile.BLOCKSIZE  # no padding to 10 KiB: a smaller seed
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for m, data in entries:
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def main():
    src, out = sys.argv[1], sys.argv[2]
    base = out.rsplit("/", 1)[-1][: -len(".conda")]
    info, pkg = members(src)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", '{"conda_pkg_format_version": 2}')
        z.writestr("pkg-%s.tar.zst" % base, raw_zstd(tar_of(pkg)))
        z.writestr("info-%s.tar.zst" % base, raw_zstd(tar_of(info)))


if __name__ == "__main__":
    main()
