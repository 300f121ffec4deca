#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""An idle mount does not hold the catalog's write-ahead log open: with condafsd mounted
and its workers used once (each then held a catalog snapshot), 120 small ingests while the
mount sits unused keep catalog.db-wal under a bound (before, every worker kept its snapshot
while idle, so SQLite could never restart the log: 0 to 63 MB over 120 ingests). Then the
mount serves the environments those ingests added.

The bound: SQLite checkpoints once the log holds 1,000 pages (4 MiB of 4 KiB pages) and
starts it again from the top at the next write when no reader holds it back, so the file
never needs to grow past that plus the transactions that commit while a snapshot taken
before the checkpoint is still held (at most the second a worker waits before it lets
go). One of these ingests writes about 0.2 MiB, so 6 MiB leaves room for ten of them;
a log held back for all 120 grows past 20 MiB. The mount runs four workers and reads
ahead (--prefetch: that thread keeps a snapshot of its own), and each is used first."""

import os
import threading

import fs_lib
import lib

t = fs_lib.FsHarness("fs_wal: the catalog's log stays bounded under an idle mount")
BOUND = 6 << 20
N = 120

with t.section(f"{N} ingests under an idle mount"):
    store = t.path("store")
    first = lib.make_prefix(t.path("env-0"), files={"share/0.txt": b"0\n",
                                                    "share/big.bin": os.urandom(4 << 20)})
    h0 = t.ingest_hash(store, first)
    wal = os.path.join(store, "catalog.db-wal")
    with t.daemon(store, args=["--threads", "4", "--prefetch"]) as d:
        # Every worker thread serves something, and so holds a snapshot.
        def use():
            for _ in range(50):
                os.listdir(d.path(h0, "share"))
                with open(d.path(h0, "share", "0.txt"), "rb") as f:
                    f.read()
                os.stat(d.path(h0, "conda-meta"))
        threads = [threading.Thread(target=use) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        # A sequential reader: the prefetch thread reads ahead of it.
        with open(d.path(h0, "share", "big.bin"), "rb") as f:
            while f.read(128 << 10):
                pass
        sizes = []
        hashes = []
        for i in range(1, N + 1):
            files = {f"share/{i}/{k}.txt": f"{i} {k}\n".encode() for k in range(40)}
            files[f"share/{i}.txt"] = f"{i}\n".encode() * 50
            p = lib.make_prefix(t.path(f"env-{i}"), pkgs=((f"pkg{i}", "1.0", "h0_0"),),
                                files=files)
            r = t.ingest(store, p)
            if r.rc != 0:
                t.check(f"ingest {i}", False, r)
                break
            hashes.append(r.out.split()[0])
            sizes.append(os.path.getsize(wal) if os.path.exists(wal) else 0)
        t.check(f"{len(hashes)} ingests stored", len(hashes) == N)
        t.check(f"catalog.db-wal stays under {BOUND >> 20} MiB "
                f"(largest {max(sizes or [0]) / 2**20:.1f} MiB)", max(sizes or [0]) < BOUND,
                f"sizes in MiB: {[round(s / 2**20, 1) for s in sizes]}")
        last = hashes[-1] if hashes else h0
        t.check("the mount serves the last one ingested",
                fs_lib.wait_for(lambda: os.path.exists(d.path(last, "share"))) is not None)
        with open(d.path(last, "share", f"{len(hashes)}.txt"), "rb") as f:
            t.eq("...with its bytes", f.read(), f"{len(hashes)}\n".encode() * 50)

t.finish()
