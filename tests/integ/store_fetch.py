#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Downloads (store/fetch.c) from real HTTP servers on 127.0.0.1 serving the corpus's
channel: many archives in parallel give byte-identical files and no .part; a transfer cut
short is resumed with a Range request; 503, 503 then 200 succeeds; a 404 fails at once in
one line naming the URL and the status, and stops the other transfers; a server that
ignores Range restarts the part cleanly; file:// URLs work; http_proxy is honoured (a
forwarding proxy of the test's own is the only one that knows channel.example.invalid).
Mirror rules map as conda's do (longest FROM, '/' boundary) and a malformed rule is refused.
The package caches (store/conda/pkgcache.c) give the corpus's archives and extracted directories,
conda's and rattler's layouts, and refuse an extracted directory recording another digest."""

import errno
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import lib

t = lib.Harness("store_fetch: downloads, mirrors and package caches")
DRIVE = os.environ["FETCH_DRIVE"]
PROXY_VARS = ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
              "no_proxy", "NO_PROXY")
FAKE_HOST = "channel.example.invalid"


class HTTPServer(http.server.ThreadingHTTPServer):
    """A client gone (a transfer stopped by the test's point) is no error to report."""
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class Server:
    """A channel server. The first path component is the behaviour:
    plain, cut (the first GET of a file stops halfway, with the full Content-Length), short
    (the first GET of a file is a whole response of half the file),
    e503 (503 twice per file, then served), a503 (always 503), e404 (404), norange (Range
    ignored: always 200 with the whole file), slow (16 kB every 0.2 s).
    Every request is logged as (method, path, Range header, status)."""

    def __init__(self, root, tls=None):
        self.root = root
        self.log = []
        self.counts = {}
        self.active = self.max_active = 0
        self.lock = threading.Lock()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with srv.lock:
                    srv.active += 1
                    srv.max_active = max(srv.max_active, srv.active)
                try:
                    self.serve()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with srv.lock:
                        srv.active -= 1

            def record(self, status):
                with srv.lock:
                    srv.log.append(("GET", self.path, self.headers.get("Range"), status))

            def serve(self):
                parts = self.path.split("/", 2)
                mode, rel = parts[1], parts[2] if len(parts) > 2 else ""
                path = os.path.join(srv.root, rel)
                with srv.lock:
                    n = srv.counts[self.path] = srv.counts.get(self.path, 0) + 1
                if mode == "e404" or not os.path.isfile(path):
                    return self.status(404)
                if mode == "a503" or (mode == "e503" and n <= 2):
                    return self.status(503)
                with open(path, "rb") as f:
                    data = f.read()
                start = 0
                rng = self.headers.get("Range")
                if rng and mode != "norange":
                    start = int(rng.split("=", 1)[1].split("-", 1)[0])
                    if start >= len(data):
                        return self.status(416)
                    self.record(206)
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.record(200)
                    self.send_response(200)
                body = data[start:]
                if mode == "short" and n == 1:
                    body = body[:len(body) // 2]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "cut" and n == 1:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "slow":
                    for i in range(0, len(body), 16384):
                        self.wfile.write(body[i:i + 16384])
                        self.wfile.flush()
                        time.sleep(0.2)
                    return
                self.wfile.write(body)

            def status(self, code):
                self.record(code)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, mode, rel):
        return f"{self.scheme}://127.0.0.1:{self.port}/{mode}/{rel}"

    def requests(self, mode, rel):
        return [e for e in self.log if e[1] == f"/{mode}/{rel}"]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Proxy:
    """A forwarding HTTP proxy: absolute-form requests for FAKE_HOST go to the server;
    every other host is a 502. Logs the request lines."""

    def __init__(self, target_port):
        self.log = []
        prx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                prx.log.append(self.path)
                prefix = f"http://{FAKE_HOST}/"
                if not self.path.startswith(prefix):
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                c = http.client.HTTPConnection("127.0.0.1", target_port)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() in ("range", "user-agent", "accept")}
                c.request("GET", "/" + self.path[len(prefix):], headers=hdrs)
                r = c.getresponse()
                body = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() in ("content-range", "content-type"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                c.close()

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def drive(*args, env=None):
    e = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    e.update(env or {})
    p = subprocess.run([DRIVE] + [str(a) for a in args], capture_output=True, text=True,
                       env=lib.ours(e), timeout=300)
    r = lib.Result([DRIVE] + list(args), p.returncode, p.stdout, p.stderr, 0)
    t.sane(r)
    return r


def errors(r):
    return [l for l in r.err.splitlines()
            if l and not l.startswith("progress: ") and not l.startswith("done: ")]


def dones(r):
    """The done hook's calls: [(name, its file's size then)], in order."""
    return [(l.split()[1], int(l.split()[2])) for l in r.err.splitlines()
            if l.startswith("done: ")]


def progress(r):
    out = []
    for l in r.err.splitlines():
        if l.startswith("progress: "):
            d, b = l.split()[1:3]
            out.append(tuple(int(x) for x in d.split("/")) + tuple(int(x) for x in b.split("/")))
    return out


def fresh_dir(name):
    d = t.path(name)
    os.makedirs(d)
    return d


def same_files(what, d, want):
    """d holds exactly the names of want ({name: source path}), each identical."""
    names = sorted(os.listdir(d))
    t.eq(f"{what}: the files, and no .part", names, sorted(want))
    bad = [n for n, path in want.items()
           if n in names and sha256(os.path.join(d, n)) != sha256(path)]
    t.eq(f"{what}: every file byte-identical", bad, [])


m = t.corpus()
CHANNEL = m["channel_dir"]
PKGS = m["pkgs_dir"]

archives = {}   # fn -> (rel, record)
for sub in sorted(os.listdir(CHANNEL)):
    with open(os.path.join(CHANNEL, sub, "repodata.json")) as f:
        rd = json.load(f)
    for key in ("packages", "packages.conda"):
        for fn, rec in rd.get(key, {}).items():
            archives[fn] = (f"{sub}/{fn}", rec)
by_size = sorted(archives, key=lambda fn: archives[fn][1]["size"])
small = by_size[0]
medium = next(fn for fn in by_size if archives[fn][1]["size"] > 300000)
big = by_size[-1]


def src(fn):
    return os.path.join(CHANNEL, archives[fn][0])


def item(url, fn, size=True):
    return f"{url}={fn}@{archives[fn][1]['size']}" if size else f"{url}={fn}"


srv = Server(CHANNEL)

with t.section("parallel downloads of every archive"):
    d = fresh_dir("all")
    # Half the items without a size: the total is then unknown.
    items = [item(srv.url("plain", archives[fn][0]), fn, size=i % 2 == 0)
             for i, fn in enumerate(sorted(archives))]
    r = drive("fetch", d, 4, *items)
    t.check("fetch of every archive succeeds", r.rc == 0 and "rc=0" in r.out, r)
    same_files(f"{len(items)} archives", d, {fn: src(fn) for fn in archives})
    t.check("at most 4 transfers at once", 1 <= srv.max_active <= 4, srv.max_active)
    p = progress(r)
    t.check("progress reported, the last line all done (total unknown: 0)",
            p and p[-1][:2] == (len(items), len(items)) and p[-1][3] == 0 and
            p[-1][2] == sum(archives[fn][1]["size"] for fn in archives), p[-3:])
    t.check("progress never goes back", all(a[0] <= b[0] for a, b in zip(p, p[1:])), p)
    t.eq("the done hook: once for each item, each whole under its name when told",
         sorted(dones(r)), sorted((fn, archives[fn][1]["size"]) for fn in archives))

with t.section("known sizes: the total is their sum"):
    d = fresh_dir("sized")
    fns = by_size[:6]
    r = drive("fetch", d, 2, *[item(srv.url("plain", archives[fn][0]), fn) for fn in fns])
    total = sum(archives[fn][1]["size"] for fn in fns)
    p = progress(r)
    t.check("succeeds, last progress bytes == bytes_total == the sum",
            r.rc == 0 and p and p[-1] == (6, 6, total, total), r)
    same_files("6 archives", d, {fn: src(fn) for fn in fns})

with t.section("hinted sizes (a lock's): the total, and a wrong hint fails nothing"):
    d = fresh_dir("hinted")
    fns = by_size[:4]
    # The first hint too small, the second too large: the bytes are what came.
    hints = [archives[fn][1]["size"] + delta for fn, delta in zip(fns, (-100, 100, 0, 0))]
    r = drive("fetch", d, 2, *[f"{srv.url('plain', archives[fn][0])}={fn}@~{h}"
                               for fn, h in zip(fns, hints)])
    total = sum(archives[fn][1]["size"] for fn in fns)
    p = progress(r)
    t.check("succeeds; the last progress: every byte that came, of the hints' sum",
            r.rc == 0 and p and p[-1] == (4, 4, total, sum(hints)), r)
    same_files("4 archives", d, {fn: src(fn) for fn in fns})

with t.section("a transfer cut short is resumed with a Range request"):
    d = fresh_dir("cut")
    rel = archives[medium][0]
    r = drive("fetch", d, 1, item(srv.url("cut", rel), medium))
    t.check("fetch succeeds", r.rc == 0, r)
    reqs = srv.requests("cut", rel)
    size = archives[medium][1]["size"]
    t.eq("the server saw a whole GET, then one from the middle",
         [(q[2], q[3]) for q in reqs], [(None, 200), (f"bytes={size // 2}-", 206)])
    same_files("the resumed file", d, {medium: src(medium)})
    # Without a size the cut shows as curl's "partial file", and is resumed the same.
    d = fresh_dir("cut-nosize")
    rel = archives[by_size[-2]][0]
    r = drive("fetch", d, 1, item(srv.url("cut", rel), by_size[-2], size=False))
    t.check("fetch without a size succeeds", r.rc == 0, r)
    t.eq("resumed with a Range request", [q[3] for q in srv.requests("cut", rel)], [200, 206])
    same_files("the resumed file (no size)", d, {by_size[-2]: src(by_size[-2])})

with t.section("a response shorter than the expected size is resumed"):
    d = fresh_dir("short")
    rel = archives[medium][0]
    r = drive("fetch", d, 1, item(srv.url("short", rel), medium))
    t.check("fetch succeeds", r.rc == 0, r)
    size = archives[medium][1]["size"]
    t.eq("a whole GET, then one from where it stopped",
         [(q[2], q[3]) for q in srv.requests("short", rel)],
         [(None, 200), (f"bytes={size // 2}-", 206)])
    same_files("the completed file", d, {medium: src(medium)})

with t.section("a .part left by an earlier run is resumed"):
    d = fresh_dir("part")
    rel = archives[medium][0]
    with open(src(medium), "rb") as f:
        data = f.read()
    lib.write(os.path.join(d, medium + ".part"), data[:1000])
    r = drive("fetch", d, 1, item(srv.url("plain", rel), medium))
    t.check("fetch succeeds", r.rc == 0, r)
    t.eq("one request, for the rest", [(q[2], q[3]) for q in srv.requests("plain", rel)][-1:],
         [("bytes=1000-", 206)])
    same_files("the resumed file", d, {medium: src(medium)})
    p = progress(r)
    t.check("resumed bytes count in the progress", p and p[0][2] >= 1000, p[:2])

with t.section("a server that ignores Range: the part restarts from 0"):
    d = fresh_dir("norange")
    rel = archives[medium][0]
    # Bytes that are not the file's: kept, they would corrupt it.
    lib.write(os.path.join(d, medium + ".part"), b"\0" * 5000)
    r = drive("fetch", d, 1, item(srv.url("norange", rel), medium))
    t.check("fetch succeeds", r.rc == 0, r)
    t.eq("asked for a range, got 200", [(q[2], q[3]) for q in srv.requests("norange", rel)],
         [("bytes=5000-", 200)])
    same_files("the restarted file", d, {medium: src(medium)})

with t.section("a .part longer than the size, or of the size"):
    d = fresh_dir("long")
    lib.write(os.path.join(d, small + ".part"), b"x" * (archives[small][1]["size"] + 10))
    r = drive("fetch", d, 1, item(srv.url("plain", archives[small][0]), small))
    t.check("a too long part is fetched again from 0", r.rc == 0, r)
    same_files("the refetched file", d, {small: src(small)})
    d = fresh_dir("whole")
    shutil.copyfile(src(small), os.path.join(d, small + ".part"))
    n = len(srv.log)
    r = drive("fetch", d, 1, item(srv.url("e404", archives[small][0]), small))
    t.check("a part of the expected size is renamed without a request",
            r.rc == 0 and len(srv.log) == n, r)
    same_files("the renamed part", d, {small: src(small)})

with t.section("progress while a slow transfer runs"):
    d = fresh_dir("slow")
    rel = archives[medium][0]
    size = archives[medium][1]["size"]
    r = drive("fetch", d, 1, item(srv.url("slow", rel), medium))
    t.check("fetch succeeds", r.rc == 0, r)
    p = progress(r)
    mid = [x for x in p if 0 < x[2] < size]
    t.check("progress lines in the middle of the transfer, 0 of 1 done",
            mid and all(x[:2] == (0, 1) and x[3] == size for x in mid), p)
    rates = [float(l.split()[3]) for l in r.err.splitlines() if l.startswith("progress: ")]
    t.check("a rate is reported while bytes come", any(x > 0 for x in rates), rates)
    t.eq("the last line: all done", p[-1] if p else None, (1, 1, size, size))
    same_files("the slow file", d, {medium: src(medium)})

with t.section("503, 503, then 200"):
    d = fresh_dir("e503")
    rel = archives[small][0]
    r = drive("fetch", d, 1, item(srv.url("e503", rel), small))
    t.check("fetch succeeds", r.rc == 0, r)
    t.eq("three requests", [q[3] for q in srv.requests("e503", rel)], [503, 503, 200])
    same_files("the file", d, {small: src(small)})

with t.section("always 503: five attempts, then one line"):
    d = fresh_dir("a503")
    rel = archives[small][0]
    url = srv.url("a503", rel)
    r = drive("fetch", d, 1, item(url, small))
    e = errors(r)
    t.check("fails (-EIO) with one line naming the URL, the status, the attempts",
            r.rc == 1 and "rc=-5" in r.out and len(e) == 1 and url in e[0] and
            "HTTP 503" in e[0] and "5 attempts" in e[0], r)
    t.eq("five requests", len(srv.requests("a503", rel)), 5)

with t.section("404 fails at once and stops the others"):
    d = fresh_dir("e404")
    url = srv.url("e404", archives[small][0])
    r = drive("fetch", d, 2, item(srv.url("slow", archives[big][0]), big), item(url, small))
    e = errors(r)
    t.check("fails (-ENOENT) with one line: the URL and HTTP 404",
            r.rc == 1 and "rc=-2" in r.out and len(e) == 1 and
            e[0] == f"fetch_drive: {url}: HTTP 404", r)
    t.eq("one request for the missing file", len(srv.requests("e404", archives[small][0])), 1)
    t.check("the slow transfer was stopped: no file of its name",
            not os.path.exists(os.path.join(d, big)), os.listdir(d))
    t.check("no empty .part left for the missing file",
            not os.path.exists(os.path.join(d, small + ".part")), os.listdir(d))

with t.section("the stop hook stops every transfer"):
    d = fresh_dir("stop")
    # One small file, then slow ones: the hook asks to stop once the small one is whole.
    fns = [small, big, medium]
    items = [item(srv.url("plain" if fn == small else "slow", archives[fn][0]), fn)
             for fn in fns]
    r = drive("fetch", d, "3/1", *items)
    t.check("fails (-ECANCELED) with one line", r.rc == 1 and
            f"rc=-{errno.ECANCELED}" in r.out and errors(r) == ["fetch_drive: fetch: stopped"], r)
    t.eq("the small file done, nothing else", dones(r), [(small, archives[small][1]["size"])])
    t.check("the slow transfers were stopped: only the small file has its name",
            [n for n in os.listdir(d) if not n.endswith(".part")] == [small], os.listdir(d))

with t.section("a response longer than the expected size"):
    d = fresh_dir("toolong")
    url = srv.url("plain", archives[medium][0])
    r = drive("fetch", d, 1, f"{url}={medium}@1000")
    e = errors(r)
    t.check("fails at once, in one line naming the URL and the size",
            r.rc == 1 and len(e) == 1 and e[0] ==
            f"fetch_drive: {url}: more than the 1000 bytes expected", r)
    t.check("no file of its name", not os.path.exists(os.path.join(d, medium)), os.listdir(d))

with t.section("a missing host fails with curl's reason"):
    d = fresh_dir("nohost")
    # A closed port: connection refused, retried, then reported.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{port}/x/{small}"
    r = drive("fetch", d, 1, f"{url}={small}")
    e = errors(r)
    t.check("one line naming the URL", r.rc == 1 and len(e) == 1 and url in e[0] and
            "5 attempts" in e[0], r)

with t.section("file:// URLs"):
    d = fresh_dir("file")
    fns = by_size[:5] + [medium]
    r = drive("fetch", d, 3, *[item("file://" + src(fn), fn) for fn in fns])
    t.check("fetch succeeds", r.rc == 0, r)
    same_files("copied files", d, {fn: src(fn) for fn in fns})
    d = fresh_dir("file-missing")
    url = "file://" + os.path.join(CHANNEL, "noarch", "missing-1.0-0.conda")
    r = drive("fetch", d, 1, f"{url}=missing-1.0-0.conda")
    e = errors(r)
    t.check("a missing file: -ENOENT, one line naming it",
            r.rc == 1 and "rc=-2" in r.out and len(e) == 1 and url in e[0], r)

with t.section("bad names are refused"):
    d = fresh_dir("names")
    for name in ("../x", "a/b", "..", "."):
        r = drive("fetch", d, 1, f"{srv.url('plain', archives[small][0])}={name}")
        t.check(f"name {name!r}: -EINVAL", r.rc == 1 and "rc=-22" in r.out, r)
    t.eq("nothing created", os.listdir(d), [])
    # What is at name.part is never followed nor replaced.
    os.mkfifo(os.path.join(d, "f.conda.part"))
    target = t.path("target")
    lib.write(target, b"keep")
    os.symlink(target, os.path.join(d, "l.conda.part"))
    for name, want in (("f.conda", "not a regular file"), ("l.conda", "")):
        r = drive("fetch", d, 1, f"{srv.url('plain', archives[small][0])}={name}")
        e = errors(r)
        t.check(f"{name}.part not a file: refused in one line", r.rc == 1 and len(e) == 1 and
                f"{name}.part" in e[0] and want in e[0], r)
    t.eq("the fifo and the link stay, the link's target untouched",
         (sorted(os.listdir(d)), open(target, "rb").read()),
         (["f.conda.part", "l.conda.part"], b"keep"))

with t.section("http_proxy is honoured"):
    prx = Proxy(srv.port)
    d = fresh_dir("proxy")
    fns = by_size[:3]
    items = [item(f"http://{FAKE_HOST}/plain/{archives[fn][0]}", fn) for fn in fns]
    r = drive("fetch", d, 2, *items, env={"http_proxy": f"http://127.0.0.1:{prx.port}"})
    t.check("fetch through the proxy succeeds", r.rc == 0, r)
    same_files("files through the proxy", d, {fn: src(fn) for fn in fns})
    t.eq("the proxy forwarded each", sorted(prx.log),
         sorted(f"http://{FAKE_HOST}/plain/{archives[fn][0]}" for fn in fns))
    d = fresh_dir("noproxy")
    r = drive("fetch", d, 1, items[0], env={"http_proxy": f"http://127.0.0.1:{prx.port}",
                                            "no_proxy": FAKE_HOST})
    t.check("no_proxy skips it: the made-up host does not resolve", r.rc == 1 and
            FAKE_HOST in errors(r)[0], r)
    prx.stop()

with t.section("mirror rules"):
    base = f"https://{FAKE_HOST}/corpus"
    rules = [f"{base}=http://127.0.0.1:8000/corpus",
             f"{base}/noarch/=http://127.0.0.1:9000/na/",
             f"https://{FAKE_HOST}=http://127.0.0.1:7000"]
    for url, want in [
            (f"{base}/linux-64/a-1-0.conda", "http://127.0.0.1:8000/corpus/linux-64/a-1-0.conda"),
            (f"{base}/noarch/b-1-0.conda", "http://127.0.0.1:9000/na/b-1-0.conda"),
            (f"{base}2/linux-64/a-1-0.conda", "http://127.0.0.1:7000/corpus2/linux-64/a-1-0.conda"),
            (base, "http://127.0.0.1:8000/corpus"),
            ("https://other.example.invalid/corpus/x", "https://other.example.invalid/corpus/x"),
            (f"http://{FAKE_HOST}/corpus/x", f"http://{FAKE_HOST}/corpus/x")]:
        r = drive("map", *rules, "--", url)
        t.eq(f"map {url}", (r.rc, r.out.strip()), (0, want))
    r = drive("map", "--", f"{base}/x")
    t.eq("no rules: the URL itself", r.out.strip(), f"{base}/x")
    r = drive("map", f"{base}/=file:///srv/mirror/", f"{base}=http://127.0.0.1:1/c", "--",
              f"{base}/noarch/x.conda")
    t.eq("trailing '/' ignored; of equal FROMs the first", r.out.strip(),
         "file:///srv/mirror/noarch/x.conda")
    for bad in ("no-equals", f"={base}", f"{base}=", "corpus=http://127.0.0.1/x",
                f"{base}=127.0.0.1:8000"):
        r = drive("map", f"https://a.example.invalid=http://b", bad, "--", base)
        e = errors(r)
        t.check(f"malformed rule {bad!r} refused, named", r.rc == 1 and len(e) == 1 and
                f'"{bad}"' in e[0], r)

    # A channel URL as a lock has it, mapped to the server, then fetched.
    fn = small
    lock_url = f"{m['channel']}/{archives[fn][0]}"
    r = drive("map", f"{m['channel']}=http://127.0.0.1:{srv.port}/plain", "--", lock_url)
    d = fresh_dir("mapped")
    r = drive("fetch", d, 1, item(r.out.strip(), fn))
    t.check("a lock's URL mapped to the server is fetched", r.rc == 0, r)
    same_files("the mapped file", d, {fn: src(fn)})

srv.stop()

with t.section("https, with $SSL_CERT_FILE"):
    # A certificate of the test's own for 127.0.0.1 (Debian's openssl, which ca-certificates
    # depends on).
    cert, key = t.path("cert.pem"), t.path("key.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], capture_output=True, text=True)
    t.check("a certificate made", p.returncode == 0, p.stderr)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tsrv = Server(CHANNEL, tls=ctx)
    fns = by_size[:3]
    items = [item(tsrv.url("plain", archives[fn][0]), fn) for fn in fns]
    d = fresh_dir("https")
    r = drive("fetch", d, 2, *items, env={"SSL_CERT_FILE": cert})
    t.check("fetch over https succeeds", r.rc == 0, r)
    same_files("files over https", d, {fn: src(fn) for fn in fns})
    d = fresh_dir("https-untrusted")
    r = drive("fetch", d, 1, items[0])
    e = errors(r)
    t.check("without it the certificate is refused, at once, in one line",
            r.rc == 1 and len(e) == 1 and tsrv.url("plain", archives[fns[0]][0]) in e[0] and
            "attempts" not in e[0], r)
    tsrv.stop()

# ---- package caches ----

home = fresh_dir("home")
CACHE_ENV = {"HOME": home, "XDG_CACHE_HOME": "", "PIXI_CACHE_DIR": "", "RATTLER_CACHE_DIR": ""}


def find(dirs, fn, sha, md5, env=None):
    e = dict(CACHE_ENV)
    e.update(env or {})
    r = drive("find", *dirs, "--", fn, sha or "-", md5 or "-", env=e)
    got = dict(l.split(": ", 1) for l in r.out.splitlines() if ": " in l)
    return r, got.get("archive"), got.get("extracted")


records = {}
for n in sorted(os.listdir(PKGS)):
    rec = os.path.join(PKGS, n, "info", "repodata_record.json")
    if os.path.isfile(rec):
        with open(rec) as f:
            records[n] = json.load(f)

with t.section("the corpus's package cache"):
    t.check("the corpus has extracted packages", len(records) > 20, len(records))
    wrong = []
    for dist, rec in records.items():
        fn = rec["fn"]
        r, a, x = find(["/nonexistent/pkgs", PKGS], fn, rec["sha256"], rec["md5"])
        if (r.rc, a, x) != (0, os.path.join(PKGS, fn), os.path.join(PKGS, dist)):
            wrong.append((fn, r.rc, a, x, r.err))
    t.eq("each archive and extracted dir found by sha256", wrong, [])
    dist, rec = next(iter(records.items()))
    r, a, x = find([PKGS], rec["fn"], None, rec["md5"].upper())
    t.eq("md5 only (uppercase): found", x, os.path.join(PKGS, dist))
    r, a, x = find([PKGS], rec["fn"], "0" * 64, rec["md5"])
    t.eq("another sha256: the archive (unverified) but no extracted dir",
         (a, x), (os.path.join(PKGS, rec["fn"]), "-"))
    r, a, x = find([PKGS], rec["fn"], None, None)
    t.eq("no digest: no extracted dir", x, "-")
    r, a, x = find([PKGS], "absent-1.0-0.conda", "0" * 64, None)
    t.eq("an absent package", (r.rc, a, x), (0, "-", "-"))

with t.section("an extracted dir recording another sha256 is refused"):
    dist, rec = next(iter(records.items()))
    bad = fresh_dir("badcache")
    info = os.path.join(bad, dist, "info")
    os.makedirs(info)
    for n in ("index.json", "paths.json"):
        shutil.copyfile(os.path.join(PKGS, dist, "info", n), os.path.join(info, n))
    other = dict(rec, sha256="1" * 64)
    with open(os.path.join(info, "repodata_record.json"), "w") as f:
        json.dump(other, f)
    r, a, x = find([bad, PKGS], rec["fn"], rec["sha256"], None)
    t.eq("the other cache's matching dir is taken", x, os.path.join(PKGS, dist))
    r, a, x = find([bad], rec["fn"], rec["sha256"], None)
    t.eq("alone: nothing", (r.rc, x), (0, "-"))
    r, a, x = find([bad], rec["fn"], "1" * 64, None)
    t.eq("its own sha256: found", x, os.path.join(bad, dist))
    os.unlink(os.path.join(info, "paths.json"))
    r, a, x = find([bad], rec["fn"], "1" * 64, None)
    t.eq("without info/paths.json: refused", x, "-")
    link = fresh_dir("linkcache")
    os.symlink(os.path.join(PKGS, dist), os.path.join(link, dist))
    r, a, x = find([link], rec["fn"], rec["sha256"], None)
    t.eq("a symlinked package dir: refused", x, "-")

with t.section("rattler's cache (pixi)"):
    dist, rec = next(iter(records.items()))
    rc = fresh_dir("rattler")
    pk = os.path.join(rc, "pkgs")
    shutil.copytree(os.path.join(PKGS, dist), os.path.join(pk, dist), symlinks=True)
    os.unlink(os.path.join(pk, dist, "info", "repodata_record.json"))

    def meta(path, sha):
        with open(path + ".lock", "wb") as f:
            f.write(struct.pack(">Q", 3) + (bytes.fromhex(sha) if sha else b""))

    meta(os.path.join(pk, dist), rec["sha256"])
    r, a, x = find([], rec["fn"], rec["sha256"], None, env={"RATTLER_CACHE_DIR": rc})
    t.eq("$RATTLER_CACHE_DIR/pkgs/<dist> with its sha256", x, os.path.join(pk, dist))
    r, a, x = find([], rec["fn"], rec["sha256"], None, env={"PIXI_CACHE_DIR": rc})
    t.eq("$PIXI_CACHE_DIR/pkgs/<dist>", x, os.path.join(pk, dist))
    r, a, x = find([], rec["fn"], "2" * 64, None, env={"RATTLER_CACHE_DIR": rc})
    t.eq("another sha256: refused", x, "-")
    r, a, x = find([], rec["fn"], None, rec["md5"], env={"RATTLER_CACHE_DIR": rc})
    t.eq("md5 only: rattler records none, refused", x, "-")
    meta(os.path.join(pk, dist), None)
    r, a, x = find([], rec["fn"], rec["sha256"], None, env={"RATTLER_CACHE_DIR": rc})
    t.eq("no sha256 recorded: refused", x, "-")
    # The default location, and an origin-keyed entry.
    xdg = os.path.join(home, ".cache", "rattler", "cache", "pkgs")
    os.makedirs(xdg)
    keyed = f"{dist}-{hashlib.sha256(b'https://x').hexdigest()}"
    os.rename(os.path.join(pk, dist), os.path.join(xdg, keyed))
    meta(os.path.join(xdg, keyed), rec["sha256"])
    r, a, x = find([], rec["fn"], rec["sha256"], None)
    t.eq("~/.cache/rattler/cache/pkgs/<dist>-<origin hash>", x, os.path.join(xdg, keyed))
    r, a, x = find([], rec["fn"], rec["sha256"], None,
                   env={"XDG_CACHE_HOME": os.path.join(home, "elsewhere")})
    t.eq("$XDG_CACHE_HOME moves it", x, "-")
    shutil.copyfile(os.path.join(PKGS, rec["fn"]), os.path.join(home, "a"))
    os.makedirs(os.path.join(home, ".conda", "pkgs"))
    shutil.copyfile(os.path.join(PKGS, rec["fn"]), os.path.join(home, ".conda", "pkgs", rec["fn"]))
    r, a, x = find([], rec["fn"], rec["sha256"], None)
    t.eq("$HOME/.conda/pkgs/<fn>", a, os.path.join(home, ".conda", "pkgs", rec["fn"]))

t.finish()
