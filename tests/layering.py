#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The house's layers, from the #include lines of its sources (shared/STYLE.md):

  base/   error lines, user-owned files, text files: includes nothing of conda/ or the store;
  conda/  the conda library: base/ and its own headers, and of the public headers only
          those that name nothing of the store (condafs/store.h, condafs/cache.h, and any
          public header that includes either);
  store/  never a FUSE header;
  tools/, fs/: only the public headers condafs/*.h of the store, never a file of store/.

meson's include paths already keep a store header out of conda/ (it is not found); this
names the mistake they cannot see: a public header of the store's. Each breach is one line
naming the file, its line and what it includes.

usage: layering.py SOURCE_ROOT
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')
root = sys.argv[1]
store = os.path.join(root, "store")
public = os.path.join(store, "include", "condafs")


def includes(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                yield n, m.group(1)


def sources(d):
    for name in sorted(os.listdir(d)):
        if name.endswith((".c", ".h")):
            yield os.path.join(d, name)


# Public headers of the store: store.h, cache.h, and those that include one of them.
store_public = {"condafs/store.h", "condafs/cache.h"}
changed = True
while changed:
    changed = False
    for path in sources(public):
        name = "condafs/" + os.path.basename(path)
        if name not in store_public and any(i in store_public for _, i in includes(path)):
            store_public.add(name)
            changed = True

store_private = {os.path.basename(p) for p in sources(store)}
conda_headers = {os.path.basename(p) for p in sources(os.path.join(store, "conda"))}
breaches = []


def breach(path, n, what):
    breaches.append(f"{os.path.relpath(path, root)}:{n}: {what}")


for layer in ("base", "conda"):
    for path in sources(os.path.join(store, layer)):
        for n, inc in includes(path):
            if inc in store_public:
                breach(path, n, f"{layer}/ includes the store's public header {inc}")
            elif inc in store_private:
                breach(path, n, f"{layer}/ includes the store's private header {inc}")
            elif layer == "base" and inc in conda_headers:
                breach(path, n, f"base/ includes the conda library's header {inc}")
for d in ("", "base", "conda", "include/condafs"):
    for path in sources(os.path.join(store, d)):
        for n, inc in includes(path):
            if "fuse" in inc.lower():
                breach(path, n, f"the store includes a FUSE header {inc}")
for d in ("tools", "fs"):
    for path in sources(os.path.join(root, d)):
        for n, inc in includes(path):
            if "store/" in inc or (inc.endswith(".h") and "/" not in inc and
                                   inc in store_private | conda_headers and
                                   not os.path.exists(os.path.join(os.path.dirname(path), inc))):
                breach(path, n, f"{d}/ reaches past the public headers: {inc}")

# The check must see what it checks: an empty tree would pass anything.
if not store_private or not conda_headers or "condafs/frozen.h" not in store_public:
    breaches.append(f"{root}: not the condafs tree this check knows (store/, store/conda/)")
for b in breaches:
    print(b)
print(f"layering: {len(breaches)} breach{'es' if len(breaches) != 1 else ''}")
sys.exit(1 if breaches else 0)
