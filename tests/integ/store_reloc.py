#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Relocation edge cases through ingest and export, on hand-made prefixes: several
occurrences in one binary string, the prefix at the very end of a file, a text shebang that
must run from the export, a binary slot too short for the export prefix (export and cat fail
naming the file), .pyc / zip / wheel content never rewritten, conda-meta file modes, and
symlinks into, at, beside and outside the prefix."""

import io
import os
import subprocess
import zipfile

import lib

t = lib.Harness("store_reloc: relocation edge cases through ingest / export / cat")
store = t.path("store")
P = os.path.realpath(t.path("env-a"))
PB = P.encode()
PH = ("/opt/conda-bld/demo_1700000000000/_h_env" + "_placehold" * 30)[:255]

# Binary content: a NUL-padded slot long enough for any export path used here.
PAD = b"\0" * 400


def zip_with(name, data):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr(name, data)
    return b.getvalue()


files_a = {
    # several occurrences in one C string, a second string, then more data
    "bin/tool": b"\x7fELF\x02\x01\x01\0\0\0" + b"RPATH=" + PB + b"/lib:" + PB + b"/lib64:" + PB
                + b"/lib/x" + PAD + b"second " + PB + b"/share" + PAD + b"tail\x01\x02",
    # adjacent occurrences, one at the start, one at the very end, no newline
    "share/many.txt": PB + b"\n" + PB + PB + b"/x " + PB + b"-sibling\nend=" + PB,
    # binary, the prefix at the very end with no NUL after it: not a C string, kept
    "share/end-nonul.bin": b"\0\x01\x02data" + PB,
    # binary, the prefix in the last string of the file, the slot is the NUL run
    "share/end-slot.bin": b"\0\x01hdr\0" + PB + b"/etc" + PAD,
    # text shebang; run from the export, it must find the export's python
    "bin/hello": b"#!" + PB + b"/bin/python3\nimport sys\nprint(sys.executable)\n",
    # .pyc, zip, wheel and a zip by magic: length-prefixed formats are never rewritten
    "lib/python3.11/__pycache__/m.cpython-311.pyc":
        b"\xa7\r\r\n\0\0\0\0" + b"\xe3" + len(PB).to_bytes(4, "little") + PB + b"\0\0" + PB,
    "lib/data.zip": zip_with("path.txt", PB + b"/lib\n"),
    "lib/pkg-1.0-py3-none-any.whl": zip_with("pkg/__init__.py", b"P = '" + PB + b"'\n"),
    "share/archive.bin": zip_with("x", PB + b"\0" + PB + PAD),
    # conda-meta says text for a file with a NUL: text mode rewrites everything
    "etc/recorded.txt": b"a\0b" + PB + b"/x no-nul-after",
    # conda-meta says binary with the 255-byte placeholder: the slot is the NUL run
    "lib/recorded.so": b"\x7fELF\0" + PB + b"/lib" + PAD + b"z",
    # a text file that does not hold the prefix at all
    "share/plain.txt": b"nothing to see\n",
}
paths_a = [
    {"_path": "etc/recorded.txt", "path_type": "hardlink", "prefix_placeholder": PH,
     "file_mode": "text"},
    {"_path": "lib/recorded.so", "path_type": "hardlink", "prefix_placeholder": PH,
     "file_mode": "binary"},
]
lib.make_prefix(P, pkgs=[("demo", "1.0", "h0_0", paths_a)], files=files_a)
os.chmod(os.path.join(P, "bin/hello"), 0o755)
os.symlink("/usr/bin/python3.11", os.path.join(P, "bin/python3"))      # absolute, outside
os.symlink(P + "/share/plain.txt", os.path.join(P, "share/abs-in"))    # absolute, inside
os.symlink(P, os.path.join(P, "share/abs-top"))                        # the prefix itself
os.symlink(P + "/", os.path.join(P, "share/abs-top-slash"))
os.symlink(P + "-sibling/lib/x", os.path.join(P, "share/abs-sibling"))  # beside it: kept
os.symlink("plain.txt", os.path.join(P, "share/rel"))                   # relative: kept
os.symlink(P + "/share/nonexistent", os.path.join(P, "share/dangling"))
os.symlink("/etc/" + P.lstrip("/"), os.path.join(P, "share/abs-contains"))  # not into it

with t.section("ingest the hand-made prefix"):
    r = t.ingest(store, P)
    t.ok("ingest succeeds", r)
    h = r.out.strip()
    t.check("ingest prints the environment hash", lib.HASH_RE.match(h), r)
    t.eq("the hash is the one `condafs hash PREFIX` gives", h, t.cfs(None, "hash", P).out.strip())

with t.section("export to a longer prefix (the default: the export directory)"):
    d = t.path("export-to-a-much-longer-directory-name", "env")
    os.makedirs(os.path.dirname(d))
    r = t.export(store, h, d)
    t.ok("export succeeds", r)
    t.check("the export prefix is longer than the source prefix", len(d) > len(P))
    lib.report_tree(t, "export equals the source relocated by conda's rules",
                    *lib.compare_trees(P, d, P, d))
    # spot checks that do not depend on the reference implementation
    with open(os.path.join(d, "bin/tool"), "rb") as f:
        tool = f.read()
    want_str = b"RPATH=" + d.encode() + b"/lib:" + d.encode() + b"/lib64:" + d.encode() + b"/lib/x\0"
    t.check("bin/tool: all three occurrences in one string rewritten", want_str in tool,
            lib.show(tool[:200]))
    t.eq("bin/tool: size kept", len(tool), len(files_a["bin/tool"]))
    t.check("bin/tool: the second string rewritten too",
            b"second " + d.encode() + b"/share\0" in tool)
    with open(os.path.join(d, "share/many.txt"), "rb") as f:
        t.eq("share/many.txt: prefix at the start, adjacent, and at the very end",
             f.read(), files_a["share/many.txt"].replace(PB, d.encode()))
    with open(os.path.join(d, "share/end-nonul.bin"), "rb") as f:
        t.eq("share/end-nonul.bin: prefix at the end without a NUL is kept",
             f.read(), files_a["share/end-nonul.bin"])
    for rel in ("lib/python3.11/__pycache__/m.cpython-311.pyc", "lib/data.zip",
                "lib/pkg-1.0-py3-none-any.whl", "share/archive.bin"):
        with open(os.path.join(d, rel), "rb") as f:
            t.eq(f"{rel}: byte for byte the source (never rewritten)", f.read(), files_a[rel])
    with open(os.path.join(d, "etc/recorded.txt"), "rb") as f:
        t.eq("etc/recorded.txt: conda-meta file_mode text rewrites despite the NUL",
             f.read(), files_a["etc/recorded.txt"].replace(PB, d.encode()))
    links = {n: os.readlink(os.path.join(d, "share", n)) for n in
             ("abs-in", "abs-top", "abs-top-slash", "abs-sibling", "rel", "dangling",
              "abs-contains")}
    t.eq("share/abs-in follows the prefix", links["abs-in"], d + "/share/plain.txt")
    t.eq("share/abs-top follows the prefix", links["abs-top"], d)
    t.eq("share/abs-top-slash follows the prefix", links["abs-top-slash"], d + "/")
    t.eq("share/abs-sibling (outside the prefix, same string start) is kept",
         links["abs-sibling"], P + "-sibling/lib/x")
    t.eq("share/abs-contains (outside, holds the prefix string) is kept",
         links["abs-contains"], "/etc/" + P.lstrip("/"))
    t.eq("share/rel is kept", links["rel"], "plain.txt")
    t.eq("share/dangling follows the prefix", links["dangling"], d + "/share/nonexistent")
    t.eq("bin/python3 (absolute, outside) is kept", os.readlink(os.path.join(d, "bin/python3")),
         "/usr/bin/python3.11")
    p = subprocess.run([os.path.join(d, "bin/hello")], capture_output=True, text=True)
    t.eq("the exported script's shebang runs the export's python", (p.returncode, p.stdout.strip()),
         (0, d + "/bin/python3"), p.stderr)

with t.section("export to a shorter prefix, and to one of equal length"):
    short = "/s"
    d = t.path("short")
    r = t.export(store, h, d, prefix=short)
    t.ok("export --prefix /s succeeds", r)
    lib.report_tree(t, "export equals the source relocated to /s", *lib.compare_trees(P, d, P, short))
    same = "/" + "q" * (len(P) - 1)
    d = t.path("same")
    r = t.export(store, h, d, prefix=same)
    t.ok("export --prefix <same length> succeeds", r)
    lib.report_tree(t, "export equals the source relocated to an equal-length prefix",
                    *lib.compare_trees(P, d, P, same))

with t.section("export with --prefix the original prefix is the source byte for byte"):
    d = t.path("orig")
    r = t.export(store, h, d, prefix=P)
    t.ok("export --prefix PREFIX succeeds", r)
    lib.report_tree(t, "export is identical to the source", *lib.compare_trees(P, d))

with t.section("cat under several prefixes"):
    for pre in (None, "/x", "/a/much/longer/prefix/than/the/original/one/" + "y" * 40):
        r = t.cfs(store, "cat", h, "bin/tool", *(["--prefix", pre] if pre else []))
        want = lib.relocate(files_a["bin/tool"], PB, (pre or P).encode(), "binary")
        t.check(f"cat bin/tool --prefix {pre}: conda's binary rule", r.rc == 0 and
                r.out.encode("utf-8", "surrogateescape") == want, r)
        r = t.cfs(store, "cat", h, "share/many.txt", *(["--prefix", pre] if pre else []))
        t.eq(f"cat share/many.txt --prefix {pre}: every occurrence",
             (r.rc, r.out.encode()), (0, files_a["share/many.txt"].replace(PB, (pre or P).encode())))
    r = t.cfs(store, "cat", h, "share/no-such-file")
    t.fails_clearly("cat of a missing path fails naming it", r, "share/no-such-file")

with t.section("a binary slot too short for the export prefix"):
    B = os.path.realpath(t.path("env-b"))
    BB = B.encode()
    slot = b"\0\x01hdr\0" + BB + b"/etc\0" + b"next string\0" + BB + b"\0"
    lib.make_prefix(B, pkgs=[("slotty", "2.0", "h1_0")],
                    files={"lib/libslot.so": slot, "share/ok.txt": BB + b"\n"})
    r = t.ingest(store, B)
    t.ok("ingest of the prefix with a tight slot succeeds", r)
    hb = r.out.strip()
    longer = B + "/longer"
    d = t.path("env-b-export")
    r = t.export(store, hb, d, prefix=longer)
    t.fails_clearly("export to a longer prefix fails, naming the file and the slot", r,
                    "lib/libslot.so", "does not fit")
    r = t.cfs(store, "cat", hb, "lib/libslot.so", "--prefix", longer)
    t.fails_clearly("cat --prefix longer fails, naming the file", r, "lib/libslot.so",
                    "does not fit")
    t.eq("cat --prefix longer writes nothing to stdout", r.out, "")
    r = t.cfs(store, "cat", hb, "share/ok.txt", "--prefix", longer)
    t.eq("cat of a text file under the longer prefix still works", (r.rc, r.out),
         (0, longer + "\n"))
    shorter = B[:len(B) - 3]
    d = t.path("env-b-short")
    r = t.export(store, hb, d, prefix=shorter)
    t.ok("export to a shorter prefix succeeds", r)
    lib.report_tree(t, "the shorter export equals conda's relocation",
                    *lib.compare_trees(B, d, B, shorter))
    d = t.path("env-b-same")
    r = t.export(store, hb, d, prefix=B[:-1] + "Z")
    t.ok("export to an equal-length prefix succeeds (the slot holds exactly that)", r)
    lib.report_tree(t, "the equal-length export equals conda's relocation",
                    *lib.compare_trees(B, d, B, B[:-1] + "Z"))

with t.section("the store stays clean"):
    t.verify_clean("verify exits 0", store)

t.finish()
