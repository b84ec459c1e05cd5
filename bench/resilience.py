"""Resilience targets, each a ratio or a count measured in one run.

    .venv/bin/python bench/resilience.py [--duration 60] [--out bench/results]

1. Slow clients: 200 connections trickling request headers at 1 byte/s and 50
   clients reading a 50 MiB attachment at 1 KB/s (reconnecting when cut off):
   normal clients' cache hits during the attack / without it (target >= 0.8x,
   0 failures), and their misses (all must succeed).
2. S3 frozen (moto's server SIGSTOPped, its sockets open): cache hits frozen /
   normal (>= 0.8x, p99 < 50 ms); every miss meanwhile 503/504 within 3 s;
   seconds from SIGCONT until a miss succeeds (< 5 s).
3. 8 concurrent clients x 300 requests of a corrupt JPEG: answers of 500 (0).
4. Cache directory on a full tmpfs, then the same cache read-only: 500s (0) and
   the slowest request minus its work (a miss on a healthy cache) (< 1 s).
5. Slow request bodies (MEDIAPROXY_MODE=all): 200 connections sending a login
   body one byte every 5 s (``--body-every``; half declaring 100,000 bytes,
   half 4,000) and 50 sending a 5 MB upload with a valid key as slowly, each
   reconnecting at its next byte once the server answered or closed it: cache
   hits during the attack / without it (>= 0.8x) and /healthz, asked twice a
   second, always answering.

``--only 5`` (any of 1-5, comma-separated) runs those scenarios and, with
``--out``, replaces only their results in the files already there.

Everything runs on loopback in this process's session (mediaproxy's defaults:
2 workers; moto's server for S3; tmpfs needs root, else scenario 4 is
skipped). Hits are measured by 4 keep-alive client threads in this process.
On this shared 2-core machine the clients compete with the server for CPU, so
the ratios are conservative. Results are printed; ``--out DIR`` also writes
DIR/resilience.json and DIR/resilience.md.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import boto3
from common import ROOT, VENV_BIN, Server, free_port, jpeg, loadavg, wait_port

AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
       "AWS_DEFAULT_REGION": "us-east-1"}
USER = "80351110224678912"


def get(port: int, path: str, timeout: float = 30.0) -> tuple[int, float]:
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        r.read()
        return r.status, time.perf_counter() - t
    except OSError:
        return 0, time.perf_counter() - t
    finally:
        c.close()


def hits(port: int, path: str, seconds: float, clients: int = 4) -> dict:
    """Keep-alive GETs of one cached URL from ``clients`` threads for ``seconds``."""
    lat: list[float] = []
    fails = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, bad = [], 0
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                ok = r.status == 200
            except OSError:
                ok = False
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                mine.append(time.perf_counter() - t)
            else:
                bad += 1
        c.close()
        with lock:
            lat.extend(mine)
            fails[0] += bad

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else None
    return {"rps": round(len(lat) / seconds, 1), "p99_ms": round(p99, 2) if p99 else None, "failures": fails[0]}


class SlowClients:
    """``headers`` connections sending one header byte a second; ``readers`` connections reading
    ``path`` at 1 KB/s, reconnecting when the server cuts them off."""

    def __init__(self, port: int, headers: int, readers: int, path: str):
        self.port, self.path = port, path
        self.stop = threading.Event()
        self.loris = [self._connect() for _ in range(headers)]
        self.readers = [self._reader() for _ in range(readers)]
        self.cut = 0
        self.threads = [threading.Thread(target=self._trickle), threading.Thread(target=self._read)]
        for t in self.threads:
            t.start()

    def _connect(self) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return None
        s.setblocking(False)
        return s

    def _reader(self) -> socket.socket | None:
        s = self._connect()
        if s is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                s.send(f"GET {self.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            except OSError:
                return None
        return s

    def _trickle(self) -> None:
        line = b"GET /_health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100_000
        i = 0
        while not self.stop.wait(1.0):
            for n, s in enumerate(self.loris):
                try:
                    if s is None:
                        raise OSError
                    s.send(line[i : i + 1])
                except OSError:  # the server's header deadline closed it: a new one starts over
                    if s is not None:
                        s.close()
                    self.loris[n] = self._connect()
            i += 1

    def _read(self) -> None:
        while not self.stop.wait(1.0):
            for n, s in enumerate(self.readers):
                try:
                    if s is None:
                        raise OSError
                    if s.recv(1024) == b"":
                        raise OSError
                except BlockingIOError:
                    pass
                except OSError:
                    self.cut += 1
                    if s is not None:
                        s.close()
                    self.readers[n] = self._reader()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        for s in self.loris + self.readers:
            if s is not None:
                s.close()


def scenario_slow_clients(work: Path, seconds: float) -> dict:
    with Server(work / "s1") as srv:
        srv.put("attachments/1/2/big.bin", b"\0" * (50 * 1024 * 1024))
        srv.put(f"avatars/{USER}/hit", jpeg(512, 512))
        for i in range(40):
            srv.put(f"avatars/{USER}/miss{i}", jpeg(512, 512, seed=i + 2))
        hit = f"/avatars/{USER}/hit.webp?size=128"
        assert get(srv.port, hit)[0] == 200
        base = hits(srv.port, hit, seconds)
        attack = SlowClients(srv.port, 200, 50, "/attachments/1/2/big.bin")
        try:
            time.sleep(2)
            results: list[int] = []
            miss_thread = threading.Thread(target=lambda: results.extend(
                get(srv.port, f"/avatars/{USER}/miss{i}.webp?size=256")[0] for i in range(40)))
            miss_thread.start()
            under = hits(srv.port, hit, seconds)
            miss_thread.join()
        finally:
            attack.close()
    return {"hits_normal": base, "hits_under_attack": under, "ratio": round(under["rps"] / base["rps"], 3),
            "misses": len(results), "misses_ok": results.count(200), "slow_readers_cut_off": attack.cut}


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **AWS}, process_group=0)
        wait_port(self.port, path="/moto-api/")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="bench",
                               aws_secret_access_key="bench", region_name="us-east-1")
        self.s3.create_bucket(Bucket="cdn")

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait(20)


def scenario_s3_frozen(work: Path, seconds: float) -> dict:
    moto = Moto()
    try:
        env = {**AWS, "MEDIAPROXY_STORAGE": "s3", "AWS_ENDPOINT_URL": moto.endpoint,
               "MEDIAPROXY_S3_ADDRESSING_STYLE": "path"}
        with Server(work / "s2", env=env) as srv:
            moto.s3.put_object(Bucket="cdn", Key=f"avatars/{USER}/hit", Body=jpeg(512, 512))
            for i in range(200):
                moto.s3.put_object(Bucket="cdn", Key=f"avatars/{USER}/m{i}", Body=jpeg(64, 64, seed=i + 2))
            hit = f"/avatars/{USER}/hit.webp?size=128"
            assert get(srv.port, hit)[0] == 200
            base = hits(srv.port, hit, seconds)
            misses: list[tuple[int, float]] = []
            counter = itertools.count()  # keys cycle: a failed miss is never cached, so each is a miss again
            stop = threading.Event()

            def miss_loop() -> None:
                while not stop.is_set():
                    misses.append(get(srv.port, f"/avatars/{USER}/m{next(counter) % 200}.webp?size=32"))
                    stop.wait(0.05)

            os.kill(moto.proc.pid, signal.SIGSTOP)
            loops = [threading.Thread(target=miss_loop) for _ in range(4)]
            for t in loops:
                t.start()
            frozen = hits(srv.port, hit, seconds)
            stop.set()
            for t in loops:
                t.join()
            os.kill(moto.proc.pid, signal.SIGCONT)
            t0 = time.monotonic()
            while True:
                status, _ = get(srv.port, f"/avatars/{USER}/m{next(counter) % 200}.webp?size=32")
                if status == 200 or time.monotonic() - t0 > 60:
                    break
                time.sleep(0.05)
            recovered = time.monotonic() - t0
    finally:
        moto.stop()
    statuses = sorted({s for s, _ in misses})
    return {"hits_normal": base, "hits_frozen": frozen, "ratio": round(frozen["rps"] / base["rps"], 3),
            "misses_while_frozen": len(misses), "miss_statuses": statuses,
            "miss_max_s": round(max(t for _, t in misses), 3), "miss_median_s": round(
                statistics.median(t for _, t in misses), 3),
            "recovered_after_s": round(recovered, 2), "recovered": status == 200}


def scenario_corrupt(work: Path, clients: int = 8, per_client: int = 300) -> dict:
    with Server(work / "s3c") as srv:
        data = jpeg(1024, 1024)
        srv.put(f"avatars/{USER}/cut", data[: len(data) // 2])
        counts: dict[int, int] = {}
        lock = threading.Lock()

        def run() -> None:
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            for _ in range(per_client):
                c.request("GET", f"/avatars/{USER}/cut.webp?size=128")
                r = c.getresponse()
                r.read()
                with lock:
                    counts[r.status] = counts.get(r.status, 0) + 1
            c.close()

        t = time.monotonic()
        threads = [threading.Thread(target=run) for _ in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    return {"requests": clients * per_client, "statuses": counts, "answers_500": counts.get(500, 0),
            "seconds": round(time.monotonic() - t, 1)}


def _burst(port: int, paths: list[str]) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    threads = [threading.Thread(target=lambda p=p: out.append(get(port, p))) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def scenario_cache_disk(work: Path) -> dict:
    mnt, ro = work / "cachefs", work / "cachefs-ro"
    mnt.mkdir()
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        return {"skipped": "cannot mount a tmpfs (needs root)"}
    out: dict = {}
    try:
        with Server(work / "s4", env={"MEDIAPROXY_CACHE_DIR": str(mnt / "cache")}) as srv:
            for i in range(8):
                srv.put(f"avatars/{USER}/d{i}", jpeg(1024, 1024, seed=i + 2))
            # the work: concurrent misses of these URLs on a healthy cache
            # 4 URLs x 2 at once: coalesced pairs, within one worker's miss share
            work_burst = _burst(srv.port, [f"/avatars/{USER}/d{i}.webp?size=600" for i in range(4)] * 2)
            work_s = max(t for _, t in work_burst)
            with open(mnt / "filler", "wb", buffering=0) as f:
                for block in (65536, 4096, 512, 1):
                    try:
                        while True:
                            f.write(b"\0" * block)
                    except OSError:
                        pass
            full = []
            for size in (128, 256, 320):
                full += _burst(srv.port, [f"/avatars/{USER}/d{i}.webp?size={size}" for i in range(4)] * 2)
            storage = srv.storage
        subprocess.run(["mount", "--bind", str(mnt / "cache"), str(ro)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        with Server(work / "s4ro", env={"MEDIAPROXY_CACHE_DIR": str(ro), "MEDIAPROXY_STORAGE": str(storage)}) as srv:
            rof = []
            for size in (128, 160, 240):
                rof += _burst(srv.port, [f"/avatars/{USER}/d{i}.webp?size={size}" for i in range(4)] * 2)
        for name, got in (("full", full), ("read_only", rof)):
            out[name] = {"requests": len(got), "answers_500": sum(1 for s, _ in got if s == 500),
                         "answers_503": sum(1 for s, _ in got if s == 503),
                         "statuses": sorted({s for s, _ in got}), "max_s": round(max(t for _, t in got), 3),
                         "over_work_s": round(max(t for _, t in got) - work_s, 3)}
        out["work_s"] = round(work_s, 3)
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return out


class SlowBodies:
    """Connections sending a request's headers, then its body one byte a second; a connection the
    server answers or closes is replaced by a new one that starts over."""

    def __init__(self, port: int, heads: list[bytes], every: float):
        self.port, self.heads, self.every = port, heads, every
        self.answers: dict[str, int] = {}
        self.socks = [self._open(h) for h in heads]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _open(self, head: bytes) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.sendall(head)
        except OSError:
            return None
        s.setblocking(False)
        return s

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            for n, s in enumerate(self.socks):
                try:
                    if s is None:
                        raise OSError
                    try:
                        answer = s.recv(4096)
                    except BlockingIOError:
                        answer = None
                    if answer is not None:
                        status = answer[9:12].decode("latin-1", "replace") if answer else "closed"
                        self.answers[status] = self.answers.get(status, 0) + 1
                        raise OSError
                    s.send(b"x")
                except OSError:
                    if s is not None:
                        s.close()
                    self.socks[n] = self._open(self.heads[n])

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            if s is not None:
                s.close()


def scenario_slow_bodies(work: Path, seconds: float, every: float) -> dict:
    env = {"MEDIAPROXY_MODE": "all", "MEDIAPROXY_DATABASE_URL": f"sqlite:///{work}/s5-lib.db",
           "MEDIAPROXY_QUEUE_URL": f"sqlite:///{work}/s5-q.db"}
    with Server(work / "s5", env=env) as srv:
        key = subprocess.run([str(VENV_BIN / "mediaproxy"), "keys", "create", "--org", "bench"], cwd=ROOT,
                             env=srv.env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        srv.put(f"avatars/{USER}/hit", jpeg(512, 512))
        hit = f"/avatars/{USER}/hit.webp?size=128"
        assert get(srv.port, hit)[0] == 200
        base = hits(srv.port, hit, seconds)
        login = ("POST /v2/admin/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: {n}\r\n\r\n{{").encode
        boundary = "b" * 32
        upload = (f"POST /v2/images HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 5000000\r\n\r\n"
                  f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
                  "Content-Type: image/jpeg\r\n\r\n").encode()
        heads = [login().replace(b"{n}", b"100000") if i % 2 else login().replace(b"{n}", b"4000")
                 for i in range(200)] + [upload] * 50
        # the attackers in a process of their own: their reconnects (one a second each, 150 or
        # so a second in all) must not take the GIL from this process's hit clients
        mp = multiprocessing.get_context("fork")
        done, answers = mp.Event(), mp.Queue()
        attacker = mp.Process(target=_attack_bodies, args=(srv.port, heads, every, done, answers))
        attacker.start()
        health: list[tuple[int, float]] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.wait(0.5):
                health.append(get(srv.port, "/healthz", timeout=10))

        try:
            time.sleep(2)
            prober = threading.Thread(target=probe)
            prober.start()
            under = hits(srv.port, hit, seconds)
            stop.set()
            prober.join()
        finally:
            done.set()
            got = answers.get(timeout=60)
            attacker.join(30)
    return {"hits_normal": base, "hits_under_attack": under, "ratio": round(under["rps"] / base["rps"], 3),
            "healthz": len(health), "healthz_ok": sum(1 for st, _ in health if st == 200),
            "healthz_max_s": round(max(t for _, t in health), 3) if health else None,
            "attack_answers": got, "byte_every_s": every}


def _attack_bodies(port: int, heads: list[bytes], every: float, done, answers) -> None:
    attack = SlowBodies(port, heads, every)
    done.wait()
    attack.close()
    answers.put(attack.answers)


def markdown(r: dict, seconds: float) -> str:
    rows = ["| target | measured | |", "|---|---|---|"]
    if all(k in r for k in ("slow_clients", "s3_frozen", "corrupt", "cache_disk")):
        rows += markdown_1_to_4(r)
    s5 = r.get("slow_bodies")
    if s5 is not None:
        met5 = s5["ratio"] >= 0.8 and s5["healthz"] and s5["healthz_ok"] == s5["healthz"]
        rows.append(
            f"| 5. hits under 200 slow login bodies + 50 slow uploads with a valid key (a byte every "
            f"{s5.get('byte_every_s', 1):g} s, reconnecting when refused) >= 0.8x; /healthz always answers | "
            f"{s5['ratio']}x ({s5['hits_under_attack']['rps']} vs {s5['hits_normal']['rps']} req/s, p99 "
            f"{s5['hits_under_attack']['p99_ms']} ms, {s5['hits_under_attack']['failures']} failures); /healthz "
            f"{s5['healthz_ok']}/{s5['healthz']}, slowest {s5['healthz_max_s']} s; the attackers got "
            f"{dict(sorted(s5['attack_answers'].items()))} | {'met' if met5 else 'not met'} |")
    runs = r.get("runs")
    if runs:  # scenarios measured at different times
        when = "; ".join(f"scenario{'s' if len(n) > 1 else ''} {n}: {d}" for n, d in runs.items())
    else:
        when = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {seconds:g} s per measurement, "
                f"load average {r['loadavg_1m_at_start']} at start")
    return f"Resilience ({when}, {os.cpu_count()} cores shared)\n\n" + "\n".join(rows) + "\n"


def markdown_1_to_4(r: dict) -> list[str]:
    s1, s2, s3, s4 = r["slow_clients"], r["s3_frozen"], r["corrupt"], r["cache_disk"]
    statuses3 = {int(k): v for k, v in s3["statuses"].items()}  # JSON keys are strings once reloaded
    met1 = s1["ratio"] >= 0.8 and not s1["hits_under_attack"]["failures"] and s1["misses_ok"] == s1["misses"]
    met2 = (s2["ratio"] >= 0.8 and (s2["hits_frozen"]["p99_ms"] or 99) < 50 and s2["miss_max_s"] < 3
            and s2["recovered_after_s"] < 5 and set(s2["miss_statuses"]) <= {503, 504})
    rows = [
        f"| 1. hits under 200 slow-header + 50 slow-reader clients >= 0.8x, 0 failures; misses all succeed | "
        f"{s1['ratio']}x ({s1['hits_under_attack']['rps']} vs {s1['hits_normal']['rps']} req/s, p99 "
        f"{s1['hits_under_attack']['p99_ms']} ms), {s1['hits_under_attack']['failures']} failures; misses "
        f"{s1['misses_ok']}/{s1['misses']} | {'met' if met1 else 'not met'} |",
        f"| 2. S3 frozen: hits >= 0.8x, p99 < 50 ms; misses 503/504 within 3 s; back within 5 s | "
        f"{s2['ratio']}x ({s2['hits_frozen']['rps']} vs {s2['hits_normal']['rps']} req/s), p99 "
        f"{s2['hits_frozen']['p99_ms']} ms; {s2['misses_while_frozen']} misses: {s2['miss_statuses']}, slowest "
        f"{s2['miss_max_s']} s (median {s2['miss_median_s']} s); misses succeed {s2['recovered_after_s']} s after "
        f"SIGCONT | {'met' if met2 else 'not met'} |",
        f"| 3. 8 clients x 300 requests of a corrupt JPEG: 0 answers of 500 | {s3['answers_500']} of "
        f"{s3['requests']} (all: {statuses3}; 503 = a worker's miss share full, shed at once) | "
        f"{'met' if s3['answers_500'] == 0 else 'not met'} |",
    ]
    if "skipped" in s4:
        rows.append(f"| 4. cache on a full tmpfs, then read-only | skipped: {s4['skipped']} | |")
    else:
        ok = all(s4[k]["answers_500"] == 0 and s4[k]["over_work_s"] < 1 for k in ("full", "read_only"))
        rows.append(
            f"| 4. cache on a full tmpfs, then read-only: 0 500s, none slower than its work + 1 s | full: "
            f"{s4['full']['answers_500']} 500s ({s4['full']['answers_503']} 503s) of {s4['full']['requests']}, "
            f"slowest {s4['full']['max_s']} s; read-only: {s4['read_only']['answers_500']} 500s "
            f"({s4['read_only']['answers_503']} 503s) of {s4['read_only']['requests']}, slowest "
            f"{s4['read_only']['max_s']} s; the work (a concurrent miss, healthy cache) {s4['work_s']} s | "
            f"{'met' if ok else 'not met'} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per hit measurement")
    ap.add_argument("--out", type=Path, help="write resilience.json and resilience.md into this directory")
    ap.add_argument("--only", default="1,2,3,4,5", help="the scenarios to run (with --out, the others' results "
                    "already in DIR/resilience.json are kept)")
    ap.add_argument("--body-every", type=float, default=5.0, help="scenario 5: seconds between two body bytes of "
                    "an attacker (the audit's 5); a refused attacker reconnects at its next byte")
    args = ap.parse_args()
    only = {int(n) for n in args.only.split(",")}
    work = Path(tempfile.mkdtemp(prefix="bench-resilience-"))
    results: dict = {}
    load = round(loadavg(), 2)
    if args.out and only != {1, 2, 3, 4, 5} and (args.out / "resilience.json").exists():
        results = json.loads((args.out / "resilience.json").read_text())
        if "runs" not in results:  # when the others were measured: the header of their table
            first = (args.out / "resilience.md").read_text().split("\n", 1)[0]
            earlier = first[first.find("(") + 1:first.rfind(",")]
            results["runs"] = {"1-4": earlier}
        results["runs"][",".join(map(str, sorted(only)))] = (
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.duration:g} s per measurement, "
            f"load average {load} at start")
    else:
        results.update({"duration_s": args.duration, "loadavg_1m_at_start": load})
    scenarios = [(1, "slow_clients", lambda: scenario_slow_clients(work, args.duration)),
                 (2, "s3_frozen", lambda: scenario_s3_frozen(work, args.duration)),
                 (3, "corrupt", lambda: scenario_corrupt(work)),
                 (4, "cache_disk", lambda: scenario_cache_disk(work)),
                 (5, "slow_bodies", lambda: scenario_slow_bodies(work, args.duration, args.body_every))]
    for n, name, run in scenarios:
        if n not in only:
            continue
        print(f"{n}. {name.replace('_', ' ')}", flush=True)
        results[name] = run()
        print(json.dumps(results[name]), flush=True)
    md = markdown(results, args.duration)
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "resilience.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "resilience.md").write_text(md)
        print(f"wrote {args.out / 'resilience.json'} and .md")


if __name__ == "__main__":
    main()
