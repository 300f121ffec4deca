"""Environments' trees as the store keeps them (docs/tree-format.md): one tree image per
environment, an object image (docs/object-format.md, format 2) whose content is the
environment's index, its directory objects and the relocation records they keep apart. All
of it read and written here independently of store/catalog_tree.c and store/object.c: the
tests read a tree through this to check what the store says, and damage one through it to
check that the store notices."""

import collections
import ctypes
import os
import struct

_xxh = ctypes.CDLL("libxxhash.so.0")


class _H128(ctypes.Structure):
    _fields_ = [("low", ctypes.c_uint64), ("high", ctypes.c_uint64)]


_xxh.XXH3_128bits.restype = _H128
_xxh.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

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
_zstd.ZSTD_isError.restype = ctypes.c_uint
_zstd.ZSTD_isError.argtypes = [ctypes.c_size_t]


def _compress(data):
    out = ctypes.create_string_buffer(_zstd.ZSTD_compressBound(len(data)))
    n = _zstd.ZSTD_compress(out, len(out), bytes(data), len(data), 3)
    assert not _zstd.ZSTD_isError(n), n
    return out.raw[:n]


def _decompress(data, want=None):
    data = bytes(data)
    size = _zstd.ZSTD_getFrameContentSize(data, len(data))
    assert size < 1 << 40, f"no zstd frame content size ({size:#x})"
    assert want is None or size == want, (size, want)
    out = ctypes.create_string_buffer(max(size, 1))
    n = _zstd.ZSTD_decompress(out, len(out), data, len(data))
    assert not _zstd.ZSTD_isError(n) and n == size, (n, size)
    return out.raw[:n]


DIR, FILE, SYMLINK = 1, 2, 3
RELOC_INLINE = 4096
OBJECT_CONTENT, OBJECT_PACK, OBJECT_TREE = 0, 1, 2   # objects.kind
TREE_SHIFT = 15         # tree images are written with 32 KiB frames
OBJ_MAGIC = b"CFSOBJ2\n"
ENVT_MAGIC = b"CFSENVT1"


def key_of(data):
    """XXH3-128 in canonical (big-endian) form: the store's key of data."""
    h = _xxh.XXH3_128bits(bytes(data), len(data))
    return struct.pack(">QQ", h.high, h.low)


def _xxh64(data):
    return _xxh.XXH3_64bits(bytes(data), len(data))


# ---- object images (docs/object-format.md, format 2) ----

def object_path(store, key):
    h = key.hex()
    return os.path.join(store, "objects", h[:2], h[2:])


def decode_image(img, key=None):
    """The content of a format 2 object image, every checksum it has checked (header and
    table, each frame, the key; key, when given, the one it was opened for)."""
    img = bytes(img)
    assert img[:8] == OBJ_MAGIC, f"magic {img[:8]!r}"
    shift, n, size = struct.unpack_from("<IIQ", img, 8)
    ikey = img[24:40]
    assert key is None or ikey == key, f"key {ikey.hex()}, opened as {key.hex()}"
    assert 12 <= shift <= 26, f"shift {shift}"
    assert n == (size + (1 << shift) - 1) >> shift, (n, size, shift)
    table = img[48:48 + 12 * n]
    assert len(table) == 12 * n, "shorter than its frame table"
    (hsum,) = struct.unpack_from("<Q", img, 40)
    assert _xxh64(img[:40] + table) == hsum, "header checksum"
    out = bytearray()
    p = 48 + 12 * n
    for i in range(n):
        e, fsum = struct.unpack_from("<IQ", table, 12 * i)
        kind, stored = e >> 30, e & ((1 << 30) - 1)
        flen = min(size - (i << shift), 1 << shift)
        frame = img[p:p + stored]
        assert len(frame) == stored, f"frame {i} past the end"
        p += stored
        if kind == 0:
            data = _decompress(frame, flen)
        elif kind == 1:
            assert stored == flen, f"raw frame {i}: {stored} bytes, holds {flen}"
            data = frame
        elif kind == 2:
            assert stored == 0, f"zero frame {i}: {stored} bytes stored"
            out += bytes(flen)
            continue
        else:
            raise AssertionError(f"frame {i}: kind 3")
        assert _xxh64(data) == fsum, f"frame {i} checksum"
        out += data
    assert p == len(img), f"frames end at {p}, the image at {len(img)}"
    out = bytes(out)
    assert key_of(out) == ikey, "the content does not hash to its key"
    return out


def encode_image(content, shift=TREE_SHIFT):
    """(key, format 2 image) of content, its frames written as store/object.c writes them:
    zstd -3, raw when that saves less than 1/64, nothing for all-zero frames."""
    content = bytes(content)
    key = key_of(content)
    n = (len(content) + (1 << shift) - 1) >> shift
    table, frames = bytearray(), []
    for i in range(n):
        f = content[i << shift:(i + 1) << shift]
        if not any(f):
            table += struct.pack("<IQ", 2 << 30, 0)
            continue
        c = _compress(f)
        if len(c) >= len(f) - len(f) // 64:
            table += struct.pack("<IQ", 1 << 30 | len(f), _xxh64(f))
            frames.append(f)
        else:
            table += struct.pack("<IQ", len(c), _xxh64(f))
            frames.append(c)
    hdr = OBJ_MAGIC + struct.pack("<IIQ", shift, n, len(content)) + key
    hdr += struct.pack("<Q", _xxh64(hdr + table))
    return key, hdr + bytes(table) + b"".join(frames)


def read_object(store, key):
    """The content of the object image of key (its checks passed)."""
    with open(object_path(store, key), "rb") as f:
        return decode_image(f.read(), key)


def write_object(store, content, shift=TREE_SHIFT):
    """Publish content as an image of its own under STORE/objects (mode 0444, written
    aside and renamed into place; objects/xx made 0755 when missing). An image already
    there under that key is left as it is. (key, the image file's size)."""
    key, img = encode_image(content, shift)
    path = object_path(store, key)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.exists(path):
        return key, os.path.getsize(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, img)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    return key, len(img)


# ---- directory objects and indexes (format 1) ----

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


# ---- tree images ----

def parse_tree(content):
    """A tree image's content, taken apart: {"index": its bytes, "dirs": [(offset, length)]
    in the index's order, "records": [(key, offset, length)] in the table's order,
    "objects_at": where the tables end}. Checks the layout, not the keys."""
    content = bytes(content)
    assert content[:8] == ENVT_MAGIC, content[:8]
    flags, ilen, d, r = struct.unpack_from("<IIII", content, 8)
    assert flags == 0, flags
    index = content[24:24 + ilen]
    assert len(index) == ilen
    p = 24 + ilen
    dirs = [struct.unpack_from("<II", content, p + 8 * i) for i in range(d)]
    p += 8 * d
    records = [struct.unpack_from("<16sII", content, p + 24 * i) for i in range(r)]
    p += 24 * r
    assert p <= len(content)
    return {"index": index, "dirs": dirs, "records": records, "objects_at": p}


def split_tree(content):
    """(index bytes, {directory key: bytes}, {record key: bytes}) of a tree image's content:
    each directory under the key its index gives it (its bytes are not checked against it)."""
    t = parse_tree(content)
    x = decode_index(t["index"])
    assert len(x["dirs"]) == len(t["dirs"]), (len(x["dirs"]), len(t["dirs"]))
    dirs = {}
    for d, (off, n) in zip(x["dirs"], t["dirs"]):
        dirs.setdefault(d["key"], content[off:off + n])
    recs = {k: content[off:off + n] for k, off, n in t["records"]}
    return t["index"], dirs, recs


def _dir_order(x):
    """The index's directories (positions), depth first, a directory before its
    subdirectories, in their entries' order; any the walk misses (a damaged index) after."""
    by_self = {d["self"]: i for i, d in enumerate(x["dirs"])}
    firsts = [d["first_child"] for d in x["dirs"]]
    seen, order = set(), []

    def children(i):
        end = firsts[i + 1] if i + 1 < len(firsts) else x["nodes"]
        return [by_self[o] for o in range(firsts[i], max(firsts[i], end)) if o in by_self]

    stack = [0] if x["dirs"] else []
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        order.append(i)
        stack.extend(reversed(children(i)))
    return order + [i for i in range(len(x["dirs"])) if i not in seen]


def tree_content(index, dirs, records=None):
    """The content of a tree image: index (bytes), dirs {key: directory object bytes} (one
    for each key the index names; identical directories share one location), records
    {key: bytes} kept apart (default: every record a directory names by key, taken from
    nowhere: pass them). Directory objects depth first, then the records by key, as
    store/catalog_tree.c writes them. The bytes are not checked against their keys: a
    test may damage them."""
    x = decode_index(index)
    records = records or {}
    keys = [d["key"] for d in x["dirs"]]
    rkeys = sorted(records)
    base = 24 + len(index) + 8 * len(keys) + 24 * len(rkeys)
    body, at = bytearray(), {}
    for i in _dir_order(x):
        k = keys[i]
        if k not in at:
            at[k] = (base + len(body), len(dirs[k]))
            body += dirs[k]
    rat = {}
    for k in rkeys:
        rat[k] = (base + len(body), len(records[k]))
        body += records[k]
    out = bytearray(ENVT_MAGIC + struct.pack("<IIII", 0, len(index), len(keys), len(rkeys)))
    out += index
    for k in keys:
        out += struct.pack("<II", *at[k])
    for k in rkeys:
        out += struct.pack("<16sII", k, *rat[k])
    return bytes(out + body)


def layout_problems(content):
    """What in a tree image's content breaks docs/tree-format.md's "Tree image" rules, or
    departs from how condafs writes one (directories depth first, each before its
    subdirectories, then the records): [message]."""
    out = []
    try:
        t = parse_tree(content)
        x = decode_index(t["index"])
    except (AssertionError, struct.error) as e:
        return [f"unreadable: {e!r}"]
    if len(content) >= 1 << 32:
        out.append(f"content of {len(content)} bytes")
    if len(x["dirs"]) != len(t["dirs"]):
        out.append(f"{len(t['dirs'])} directory locations, the index has {len(x['dirs'])}")
    start = t["objects_at"]
    ends = []
    for i, (d, (off, n)) in enumerate(zip(x["dirs"], t["dirs"])):
        if off < start or off + n > len(content):
            out.append(f"directory {i} at {off}+{n}, outside {start}..{len(content)}")
        elif key_of(content[off:off + n]) != d["key"]:
            out.append(f"directory {i} at {off}+{n} does not hash to {d['key'].hex()}")
        if n > 64 << 20:
            out.append(f"directory {i}: {n} bytes")
        ends.append(off + n)
    keys = [k for k, _, _ in t["records"]]
    if keys != sorted(set(keys)):
        out.append("record keys do not strictly increase")
    for k, off, n in t["records"]:
        if off < start or off + n > len(content):
            out.append(f"record {k.hex()} at {off}+{n}, outside {start}..{len(content)}")
        elif key_of(content[off:off + n]) != k:
            out.append(f"record at {off}+{n} does not hash to {k.hex()}")
        elif ends and off < max(ends):
            out.append(f"record {k.hex()} at {off}, before a directory's end {max(ends)}")
    if out:
        return out
    named = records_named(content[off:off + n] for off, n in t["dirs"])
    if named - set(keys):
        out.append(f"records named but not in the table: {sorted(k.hex() for k in named)}")
    if set(keys) - named:
        out.append("records in the table that no directory names")
    # A directory before its subdirectories (but for one whose location is shared: an
    # identical directory elsewhere may have come first).
    by_self = {d["self"]: i for i, d in enumerate(x["dirs"])}
    firsts = [d["first_child"] for d in x["dirs"]] + [x["nodes"]]
    users = collections.Counter(off for off, _ in t["dirs"])
    for i in range(len(x["dirs"])):
        for o in range(firsts[i], firsts[i + 1]):
            j = by_self.get(o)
            if j is not None and users[t["dirs"][j][0]] == 1 and \
                    t["dirs"][j][0] < t["dirs"][i][0]:
                out.append(f"directory {j} (ordinal {o}) before its parent {i}")
    return out


def records_named(dirs):
    """The keys of the records kept apart that directory objects (bytes) name."""
    return {e["reloc_key"] for d in dirs for e in decode_dir(d) if e.get("reloc_key")}


# ---- an environment's tree in a store ----

def env_tree(db, store, env_id):
    """(index dict, {directory key: bytes}, {record key: bytes}) of an environment, read
    from its tree image (envs.tree) and checked: the image's checksums and key, and each
    directory object and record against its own key."""
    (tree,) = db.execute("SELECT tree FROM envs WHERE id = ?", (env_id,)).fetchone()
    index, dirs, recs = split_tree(read_object(store, bytes(tree)))
    for k, b in list(dirs.items()) + list(recs.items()):
        assert key_of(b) == k, f"environment {env_id}: object {k.hex()} does not hash to its key"
    return decode_index(index), dirs, recs


def env_rows(db, store, env_id):
    """The environment's nodes as rows of the former nodes table: {id: row dict}, with obj
    the object id its key names (None when no row has it) and key the key itself."""
    root, h = db.execute("SELECT root, hash FROM envs WHERE id = ?", (env_id,)).fetchone()
    x, dirs, recs = env_tree(db, store, env_id)
    links = {lk["node"]: lk["first"] for lk in x["links"]}
    rows = {root: {"id": root, "env": env_id, "parent": 0, "name": h.encode(), "type": DIR,
                   "mode": x["mode"], "mtime_ns": x["mtime_ns"], "size": 0, "inserts": 0,
                   "obj": None, "grp": None, "hardlink": None, "first_child": root + 1,
                   "nchildren": 0, "target": None, "reloc": None, "key": None}}
    by_self = {d["self"]: d for d in x["dirs"]}
    objs = {}
    for d in x["dirs"]:
        ents = decode_dir(dirs[d["key"]])
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
                "nchildren": 0, "target": e["target"],
                "reloc": recs[e["reloc_key"]] if e.get("reloc_key") else e["reloc"],
                "key": e["key"] if e["type"] == FILE else None}
    return rows


def _owner(refs, esum, esq):
    """catalog.c C7: the one environment whose names these are, else None."""
    if refs <= 0 or esum % refs:
        return None
    m = esum // refs
    return m if esq == refs * m * m else None


def _count(db, store, key, env_id, delta):
    """The tree image row of key gains (delta 1) or loses (-1) environment env_id's
    reference, as C2 and C7 count it; the row and its file go with the last one."""
    row = db.execute("SELECT id, refs, esum, esq FROM objects WHERE key = ?",
                     (key,)).fetchone()
    if row is None:
        return
    i, refs, esum, esq = row
    refs, esum, esq = refs + delta, esum + delta * env_id, esq + delta * env_id * env_id
    if refs <= 0:
        db.execute("DELETE FROM objects WHERE id = ?", (i,))
        p = object_path(store, key)
        if os.path.exists(p):
            os.unlink(p)
        return
    db.execute("UPDATE objects SET refs = ?, esum = ?, esq = ?, owner = ? WHERE id = ?",
               (refs, esum, esq, _owner(refs, esum, esq), i))


def set_env_tree(db, store, env_id, content):
    """Make content (a tree image's) environment env_id's tree, as the store would: its image
    written, its objects row inserted or given one more reference (kind 2, C7's sums of the
    environment), the old image's row one reference less (gone with its file at 0), envs.tree
    its key. Returns the key. The caller commits."""
    (old,) = db.execute("SELECT tree FROM envs WHERE id = ?", (env_id,)).fetchone()
    old = bytes(old) if old is not None else None
    key, stored = write_object(store, content)
    if key == old:
        return key
    if db.execute("SELECT 1 FROM objects WHERE key = ?", (key,)).fetchone():
        _count(db, store, key, env_id, 1)
    else:
        db.execute("INSERT INTO objects(key, size, stored, refs, kind, pack, pack_off, owner,"
                   " esum, esq) VALUES (?, ?, ?, 1, ?, NULL, 0, ?, ?, ?)",
                   (key, len(content), stored, OBJECT_TREE, env_id, env_id, env_id * env_id))
    db.execute("UPDATE envs SET tree = ? WHERE id = ?", (key, env_id))
    if old is not None:
        _count(db, store, old, env_id, -1)
    return key


def set_env_index(db, store, env_id, x):
    """The environment's tree with its index replaced by x (a decode_index dict, edited),
    its directory objects and records as they were. Returns the image's key."""
    _, dirs, recs = env_tree(db, store, env_id)
    return set_env_tree(db, store, env_id, tree_content(encode_index(x), dirs, recs))


def damage_dir(db, store, env_id, key, change):
    """The environment's directory object of key replaced, inside its tree image, by
    change(its bytes), the index still naming it by key: the image is a valid object under
    its own (new) key, so only the directory's own key check can find the damage."""
    x, dirs, recs = env_tree(db, store, env_id)
    dirs[key] = bytes(change(bytearray(dirs[key])))
    return set_env_tree(db, store, env_id, tree_content(encode_index(x), dirs, recs))


def rewrite_env(db, store, env_id, change):
    """Rebuild an environment's tree after change(rows by id) edited its nodes (as the
    former nodes rows: name, mode, size, grp, target, key, reloc...): new directory objects,
    index and tree image under their own keys, so that only what change did is wrong.
    Caller commits."""
    rows = env_rows(db, store, env_id)
    change(rows)
    root = min(rows)
    old, _, _ = env_tree(db, store, env_id)
    dirs, recs, keys = {}, {}, {}
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
            if k["type"] == FILE and k["reloc"] and len(k["reloc"]) > RELOC_INLINE:
                e["reloc_key"], e["reloc_len"] = key_of(k["reloc"]), len(k["reloc"])
                recs[e["reloc_key"]] = k["reloc"]
            ents.append(e)
        data = encode_dir(ents, sort=False)
        keys[i] = key_of(data)
        dirs[keys[i]] = data
    x = dict(old, dirs=[{"key": keys[root + d["self"]], "self": d["self"],
                         "first_child": d["first_child"]} for d in old["dirs"]])
    return set_env_tree(db, store, env_id, tree_content(encode_index(x), dirs, recs))
