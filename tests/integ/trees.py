"""Environments' trees as the catalog stores them (docs/tree-format.md), read and written
independently of store/catalog_tree.c: the tests read a tree through this to check what the
store says, and damage one through it to check that the store notices."""

import ctypes
import struct

_xxh = ctypes.CDLL("libxxhash.so.0")


class _H128(ctypes.Structure):
    _fields_ = [("low", ctypes.c_uint64), ("high", ctypes.c_uint64)]


_xxh.XXH3_128bits.restype = _H128
_xxh.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

_zstd = ctypes.CDLL("libzstd.so.1")
_zstd.ZSTD_compressBound.restype = ctypes.c_size_t
_zstd.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
_zstd.ZSTD_compress.restype = ctypes.c_size_t
_zstd.ZSTD_compress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                ctypes.c_size_t, ctypes.c_int]
_zstd.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
_zstd.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_zstd.ZSTD_decompress.restype = ctypes.c_size_t
_zstd.ZSTD_decompress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                  ctypes.c_size_t]


def _compress(data):
    out = ctypes.create_string_buffer(_zstd.ZSTD_compressBound(len(data)))
    n = _zstd.ZSTD_compress(out, len(out), bytes(data), len(data), 3)
    return out.raw[:n]


def _decompress(data):
    data = bytes(data)
    size = _zstd.ZSTD_getFrameContentSize(data, len(data))
    out = ctypes.create_string_buffer(max(size, 1))
    n = _zstd.ZSTD_decompress(out, len(out), data, len(data))
    assert n == size, (n, size)
    return out.raw[:n]

DIR, FILE, SYMLINK = 1, 2, 3
KIND_DIR, KIND_INDEX, KIND_RELOC = 0, 1, 2
RELOC_INLINE = 4096


def key_of(data):
    """XXH3-128 in canonical (big-endian) form: the store's key of data."""
    h = _xxh.XXH3_128bits(bytes(data), len(data))
    return struct.pack(">QQ", h.high, h.low)


def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _get_varint(b, p):
    v, shift = 0, 0
    while True:
        x = b[p]
        p += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return v, p


def decode_dir(data):
    """[entry dict] of a directory object, in its order."""
    assert data[:8] == b"CFSTREE1", data[:8]
    n, _flags = struct.unpack_from("<II", data, 8)
    offs = struct.unpack_from(f"<{n}I", data, 16)
    base = 16 + 4 * n
    out = []
    for i in range(n):
        end = base + (offs[i + 1] if i + 1 < n else len(data) - base)
        p = base + offs[i]
        typ, mode, mtime, nl = struct.unpack_from("<BHqB", data, p)
        p += 12
        e = {"type": typ, "mode": mode, "mtime_ns": mtime, "name": bytes(data[p:p + nl]),
             "key": None, "size": 0, "inserts": 0, "group": 0, "reloc": None,
             "reloc_key": None, "target": None}
        p += nl
        if typ in (DIR, FILE):
            e["key"] = bytes(data[p:p + 16])
            p += 16
        if typ == FILE:
            e["size"], p = _get_varint(data, p)
            e["inserts"], p = _get_varint(data, p)
            e["group"], p = _get_varint(data, p)
            rl, p = _get_varint(data, p)
            if rl & 1:
                e["reloc_key"] = bytes(data[p:p + 16])
                e["reloc_len"] = rl >> 1
                p += 16
            elif rl >> 1:
                e["reloc"] = bytes(data[p:p + (rl >> 1)])
                p += rl >> 1
        elif typ == SYMLINK:
            tl, p = _get_varint(data, p)
            e["target"] = bytes(data[p:p + tl])
            p += tl
            e["inserts"], p = _get_varint(data, p)
            rl, p = _get_varint(data, p)
            if rl >> 1:
                e["reloc"] = bytes(data[p:p + (rl >> 1)])
                p += rl >> 1
        assert p == end, (p, end)
        out.append(e)
    return out


def encode_dir(entries, sort=True):
    """A directory object's bytes (entries sorted by name unless sort is False: a damaged
    one may want them out of order)."""
    if sort:
        entries = sorted(entries, key=lambda e: e["name"])
    blobs = []
    for e in entries:
        b = bytearray(struct.pack("<BHqB", e["type"], e["mode"], e["mtime_ns"], len(e["name"])))
        b += e["name"]
        if e["type"] in (DIR, FILE):
            b += e["key"]
        if e["type"] == FILE:
            b += _varint(e["size"]) + _varint(e["inserts"]) + _varint(e["group"])
            if e.get("reloc_key"):
                b += _varint(e["reloc_len"] << 1 | 1) + e["reloc_key"]
            else:
                r = e.get("reloc") or b""
                b += _varint(len(r) << 1) + r
        elif e["type"] == SYMLINK:
            r = e.get("reloc") or b""
            b += _varint(len(e["target"])) + e["target"] + _varint(e["inserts"])
            b += _varint(len(r) << 1) + r
        blobs.append(bytes(b))
    offs, o = [], 0
    for b in blobs:
        offs.append(o)
        o += len(b)
    return (b"CFSTREE1" + struct.pack("<II", len(blobs), 0) +
            struct.pack(f"<{len(offs)}I", *offs) + b"".join(blobs))


def decode_index(data):
    assert data[:8] == b"CFSINDX1"
    nodes, ndirs, nlinks, _flags, mode, mtime = struct.unpack_from("<IIIIIq", data, 8)
    dirs = [struct.unpack_from("<16sII", data, 36 + 24 * i) for i in range(ndirs)]
    links = [struct.unpack_from("<II", data, 36 + 24 * ndirs + 8 * i) for i in range(nlinks)]
    return {"nodes": nodes, "mode": mode, "mtime_ns": mtime,
            "dirs": [{"key": k, "self": s, "first_child": f} for k, s, f in dirs],
            "links": [{"node": a, "first": b} for a, b in links]}


def encode_index(x):
    b = bytearray(b"CFSINDX1" + struct.pack("<IIIIIq", x["nodes"], len(x["dirs"]),
                                           len(x["links"]), 0, x["mode"], x["mtime_ns"]))
    for d in x["dirs"]:
        b += struct.pack("<16sII", d["key"], d["self"], d["first_child"])
    for lk in x["links"]:
        b += struct.pack("<II", lk["node"], lk["first"])
    return bytes(b)


def tree_data(db, key, kind):
    """The bytes of a tree object (directory objects and indexes are stored as a zstd
    frame of them)."""
    row = db.execute("SELECT data FROM trees WHERE key = ? AND kind = ?", (key, kind)).fetchone()
    if row is None:
        return None
    return bytes(row[0]) if kind == KIND_RELOC else _decompress(row[0])


def set_tree_data(db, key, kind, data):
    """Overwrite a tree object's bytes in place (its key unchanged: damage)."""
    db.execute("UPDATE trees SET data = ? WHERE key = ? AND kind = ?",
               (data if kind == KIND_RELOC else _compress(data), key, kind))


def env_rows(db, env_id):
    """The environment's nodes as rows of the former nodes table: {id: row dict}, with obj
    the object id its key names (None when no row has it) and key the key itself."""
    root, tree, h = db.execute("SELECT root, tree, hash FROM envs WHERE id = ?",
                               (env_id,)).fetchone()
    x = decode_index(tree_data(db, bytes(tree), KIND_INDEX))
    links = {lk["node"]: lk["first"] for lk in x["links"]}
    rows = {root: {"id": root, "env": env_id, "parent": 0, "name": h.encode(), "type": DIR,
                   "mode": x["mode"], "mtime_ns": x["mtime_ns"], "size": 0, "inserts": 0,
                   "obj": None, "grp": None, "hardlink": None, "first_child": root + 1,
                   "nchildren": 0, "target": None, "reloc": None, "key": None}}
    by_self = {d["self"]: d for d in x["dirs"]}
    objs = {}
    for i, d in enumerate(x["dirs"]):
        ents = decode_dir(tree_data(db, d["key"], KIND_DIR))
        rows[root + d["self"]]["nchildren"] = len(ents)
        for j, e in enumerate(ents):
            o = d["first_child"] + j
            if e["type"] == FILE and e["key"] not in objs:
                r = db.execute("SELECT id FROM objects WHERE key = ?", (e["key"],)).fetchone()
                objs[e["key"]] = r[0] if r else None
            sub = by_self.get(o)
            rows[root + o] = {
                "id": root + o, "env": env_id, "parent": root + d["self"], "name": e["name"],
                "type": e["type"], "mode": e["mode"], "mtime_ns": e["mtime_ns"],
                "size": e["size"] if e["type"] == FILE else
                len(e["target"]) if e["type"] == SYMLINK else 0,
                "inserts": e["inserts"], "obj": objs.get(e["key"]) if e["type"] == FILE
                else None, "grp": e["group"] or None,
                "hardlink": root + links[o] if o in links else None,
                "first_child": root + sub["first_child"] if sub else None,
                "nchildren": 0, "target": e["target"], "reloc": e["reloc"],
                "key": e["key"] if e["type"] == FILE else None}
    return rows


def put(db, data, kind):
    """Store tree bytes (one reference, or one more), as the store would: their key."""
    k = key_of(data)
    if db.execute("UPDATE trees SET refs = refs + 1 WHERE key = ? AND kind = ?",
                  (k, kind)).rowcount == 0:
        db.execute("INSERT INTO trees(key, kind, refs, data) VALUES (?, ?, 1, ?)",
                   (k, kind, data if kind == KIND_RELOC else _compress(data)))
    return k


def rewrite_env(db, env_id, change):
    """Rebuild an environment's tree after change(rows by id) edited its nodes (as the
    former nodes rows: name, mode, size, grp, target, key...): new directory objects and
    index under their own keys, so that only what change did is wrong. Caller commits."""
    rows = env_rows(db, env_id)
    change(rows)
    root = min(rows)
    keys = {}
    for i in sorted(rows, reverse=True):
        r = rows[i]
        if r["type"] != DIR:
            continue
        ents = []
        for c in sorted(k for k in rows if rows[k]["parent"] == i):
            k = rows[c]
            e = {"type": k["type"], "mode": k["mode"], "mtime_ns": k["mtime_ns"],
                 "name": k["name"], "key": keys.get(c) if k["type"] == DIR else k["key"],
                 "size": k["size"], "inserts": k["inserts"], "group": k["grp"] or 0,
                 "reloc": k["reloc"], "target": k["target"]}
            ents.append(e)
        keys[i] = put(db, encode_dir(ents, sort=False), KIND_DIR)
    old = decode_index(tree_data(db, bytes(db.execute("SELECT tree FROM envs WHERE id = ?",
                                                       (env_id,)).fetchone()[0]), KIND_INDEX))
    dirs = [{"key": keys[root + d["self"]], "self": d["self"],
             "first_child": d["first_child"]} for d in old["dirs"]]
    idx = put(db, encode_index(dict(old, dirs=dirs)), KIND_INDEX)
    db.execute("UPDATE envs SET tree = ? WHERE id = ?", (idx, env_id))
