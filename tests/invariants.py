#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The numbered invariants (docs/INVARIANTS.md): each label is defined once across the
tree, in the header comment of the file that keeps it ("* G2: ..."); the index lists every
one with its file and nothing else; and a citation that names a file ("catalog.c C7",
"reloc.c's R4", "verify.c V1-V4") names a label that file defines. Each breach is one line
naming the file, its line and the label.

usage: invariants.py SOURCE_ROOT
"""
import os
import re
import sys

root = sys.argv[1]
# At most three spaces in: a wrapped line of an invariant's text is indented further.
DEFINE = re.compile(r"^ \* {1,3}(?:\(([A-Z]{1,2}[0-9]+)\)|([A-Z]{1,2}[0-9]+))[:.]? ")
# "catalog.c C7", "catalog.c's C1-C9", "reloc.h R6", "(cache.c H2)"
CITE = re.compile(r"\b([a-z_]+\.[ch])(?:'s)? ([A-Z]{1,2}[0-9]+)(?:-([A-Z]{1,2}[0-9]+))?\b")
HEADER_LINES = 80  # a file's invariants are in its opening comment

files = []
for top in ("store", "fs", "tools"):
    for d, _, names in os.walk(os.path.join(root, top)):
        files += [os.path.join(d, n) for n in sorted(names) if n.endswith((".c", ".h"))]
files.sort()
by_name = {}
for f in files:
    by_name.setdefault(os.path.basename(f), []).append(f)

defined = {}  # label -> (file, line)
in_file = {}  # basename -> set of labels
breaches = []
for f in files:
    rel = os.path.relpath(f, root)
    with open(f, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    for n, line in enumerate(lines[:HEADER_LINES], 1):
        m = DEFINE.match(line)
        if not m:
            continue
        label = m.group(1) or m.group(2)
        if label in defined and defined[label][0] != rel:
            breaches.append(f"{rel}:{n}: {label} is defined in {defined[label][0]} too")
        defined.setdefault(label, (rel, n))
        in_file.setdefault(os.path.basename(f), set()).add(label)


def expand(a, b):
    if not b:
        return [a]
    pa, na = re.match(r"([A-Z]+)(\d+)", a).groups()
    pb, nb = re.match(r"([A-Z]+)(\d+)", b).groups()
    return [f"{pa}{i}" for i in range(int(na), int(nb) + 1)] if pa == pb else [a, b]


for f in files + [os.path.join(root, "docs", n) for n in sorted(os.listdir(os.path.join(root, "docs")))]:
    rel = os.path.relpath(f, root)
    with open(f, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            for m in CITE.finditer(line):
                name = m.group(1)
                if name not in by_name:
                    continue
                for label in expand(m.group(2), m.group(3)):
                    if label not in in_file.get(name, set()):
                        breaches.append(f"{rel}:{n}: cites {name} {label}, which {name} "
                                        "does not define")

index = os.path.join(root, "docs", "INVARIANTS.md")
listed = {}
with open(index, encoding="utf-8") as fh:
    for n, line in enumerate(fh, 1):
        m = re.match(r"^\| ([A-Z]{1,2}[0-9]+) \| `([^`]+)` \|", line)
        if m:
            listed[m.group(1)] = (m.group(2), n)
for label, (rel, n) in sorted(defined.items()):
    if label not in listed:
        breaches.append(f"{rel}:{n}: {label} is not in docs/INVARIANTS.md")
    elif listed[label][0] != rel:
        breaches.append(f"docs/INVARIANTS.md:{listed[label][1]}: {label} is in {rel}, "
                        f"not {listed[label][0]}")
for label, (rel, n) in sorted(listed.items()):
    if label not in defined:
        breaches.append(f"docs/INVARIANTS.md:{n}: {label} ({rel}) is defined nowhere")

# The check must see what it checks: a tree without invariants would pass anything.
if len(defined) < 20:
    breaches.append(f"{root}: only {len(defined)} invariants found: not the tree this knows")
for b in breaches:
    print(b)
print(f"invariants: {len(defined)} labels, {len(breaches)} breach"
      f"{'es' if len(breaches) != 1 else ''}")
sys.exit(1 if breaches else 0)
