# SPDX-License-Identifier: MIT
"""Helpers of the purge tests (store_purge, store_purge_crash, fs_purge; issue 11, point 4):
environments that share a pack with one holding secrets, and searches of everything a store
holds for those secrets, in the raw files and in every image decoded by the store's own
reader (tests/integ/store_objdump.c)."""

import os
import random
import subprocess

import lib

# Stored raw (random bytes do not compress) and compressed (text): the raw one is found by
# a search of the files as they are, the compressed one only once the images are decoded.
SECRET_RAW = random.Random(4242).randbytes(48 << 10)
SECRET_TEXT = b"token for the removed environment: cfs-SECRET-7f3a9c1e-do-not-leak\n" * 300
NEEDLES = {
    "raw secret (head)": SECRET_RAW[:64],
    "raw secret (middle)": SECRET_RAW[24 << 10:(24 << 10) + 64],
    "raw secret (tail)": SECRET_RAW[-64:],
    "text secret": b"cfs-SECRET-7f3a9c1e-do-not-leak",
}


def common_files(root, n=60, salt=""):
    """Small contents both environments of a pair hold: members of the first one's pack
    (salt: another set)."""
    files = {f"share/common/c{j:03d}.txt": f"{salt}common file {j}\n".encode() * (40 + 3 * j)
             for j in range(n)}
    files["lib/shared.bin"] = random.Random(7).randbytes(300 << 10)
    files["bin/tool"] = b"#!" + root.encode() + b"/bin/python3\nimport sys\n"
    return files


def secret_env(t, where, name, own=8, own_size=2000, seed=1):
    """An environment holding the secrets, the common files and own small files of about
    own_size bytes each (its part of the pack that goes with it)."""
    root = os.path.realpath(t.path(where, name))
    r = random.Random(seed)
    files = common_files(root)
    files["share/secret/key.bin"] = SECRET_RAW
    files["share/secret/token.txt"] = SECRET_TEXT
    files.update({f"share/{name}/own{j:03d}.txt": (f"{name} {j} {r.random()}\n".encode() *
                                                    (own_size // 40 + 1))[:own_size]
                  for j in range(own)})
    return lib.make_prefix(root, pkgs=[(f"purge-{name}", "1.0", "h0_0")], files=files)


def kept_env(t, where, name, seed=2, extra=None):
    """An environment sharing the common files (so the secrets' pack stays used)."""
    root = os.path.realpath(t.path(where, name))
    r = random.Random(seed)
    files = common_files(root)
    files.update({f"share/{name}/f{j:02d}.txt": f"{name} {j} {r.random()}\n".encode() * 30
                  for j in range(10)})
    files.update(extra or {})
    return lib.make_prefix(root, pkgs=[(f"purge-{name}", "1.0", "h0_0")], files=files)


def raw_hits(store):
    """{needle name: [files under the store holding it as is]}, only needles found."""
    hits = {}
    for d, _, fs in os.walk(store):
        for f in fs:
            p = os.path.join(d, f)
            try:
                with open(p, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            for name, needle in NEEDLES.items():
                if needle in data:
                    hits.setdefault(name, []).append(os.path.relpath(p, store))
    return hits


def decoded_hits(store):
    """The needles found in the images' decoded contents: (names found, error or None)."""
    p = subprocess.run([os.environ["STORE_OBJDUMP"], store], capture_output=True)
    err = None if p.returncode == 0 else p.stderr.decode(errors="replace")
    return sorted(n for n, needle in NEEDLES.items() if needle in p.stdout), err


def check_gone(t, store, what):
    """Nothing of the secrets anywhere under the store, raw or decoded."""
    t.eq(f"{what}: no file under the store holds a secret's bytes", raw_hits(store), {})
    found, err = decoded_hits(store)
    t.eq(f"{what}: no decoded image holds them either", (found, err), ([], None))


def check_present(t, store, what):
    """The searches find the secrets (so their finding nothing later means something)."""
    hits = raw_hits(store)
    t.check(f"{what}: the raw secret is in the files as they are",
            all(n in hits for n in NEEDLES if n.startswith("raw")), hits)
    found, err = decoded_hits(store)
    t.eq(f"{what}: the decoded images hold every secret", (found, err),
         (sorted(NEEDLES), None))


def secret_pack(store, env_hash):
    """The image file holding the environment's share/secret/key.bin."""
    n = lib.catalog_nodes(store, env_hash)[b"share/secret/key.bin"]
    o = lib.catalog_object(store, n["obj"])
    if not o["pack"]:
        return lib.object_file(store, bytes(o["key"]))
    return lib.object_file(store, bytes(lib.catalog_object(store, o["pack"])["key"]))


def catalog_images(store):
    """Every image file the catalog names: objects stored on their own, and packs."""
    return {lib.object_file(store, bytes(k)) for (k,) in
            lib.catalog_rows(store, "SELECT key FROM objects WHERE pack IS NULL")}
