"""The media library's targets, measured in one run (ratios against baselines of the same run).

    .venv/bin/python bench/library.py upload [--mib 100] [--rounds 3] [--backends local,s3] [--out DIR]
    .venv/bin/python bench/library.py list [--records 100000] [--databases sqlite,postgres] [--out DIR]

upload: one POST /api/v1/media/upload of a --mib MiB file (multipart, streamed by the client from
  a generator) to gunicorn (1 worker, MEDIAPROXY_MODE=all). Reports the worker's peak RSS growth
  (VmHWM after − VmRSS before, after a warm-up upload) and the throughput against writing the same
  bytes to the same storage directly: a plain file copy (local) or boto3's upload_fileobj (S3,
  moto's server on loopback), in --rounds interleaved rounds (upload, baseline), best of each.
  Targets: growth ≤ 16 MiB, ratio ≥ 0.7. For reference, S3 also
  times upload_fileobj with one part in flight (max_concurrency=1, as the upload path holds at
  most two part buffers), and local measures each stage of the path alone (parse, SHA-256, write).
list: --records media rows in one organization (plus as many in another), then sequential
  GET /api/v1/media/list with search + sort (+ type) over HTTP; p50/p99 per database, and the CPU
  time per request of the server's processes and of PostgreSQL's (utime + stime from /proc: what a
  request costs, which the load of other tenants moves far less than wall time). Target: p99 ≤ 20 ms.

Results are printed; with --out DIR they are also written to DIR/library-<what>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ROOT, VENV_BIN, Server, loadavg, rss_kb, tree_cpu

from tests.server import AWS_ENV, MotoS3

MIB = 1024 * 1024
PNG_HEAD = b"\x89PNG\r\n\x1a\n"


def library_server(workdir: Path, extra: dict) -> tuple[Server, str]:
    env = {"MEDIAPROXY_MODE": "all", "MEDIAPROXY_WORKERS": "1", "MEDIAPROXY_THREADS": "4",
           "MEDIAPROXY_DATABASE_URL": f"sqlite:///{workdir}/library.db",
           "MEDIAPROXY_QUEUE_URL": f"sqlite:///{workdir}/queue.db", **extra}
    srv = Server(workdir, env=env, name="library")
    out = subprocess.run([str(VENV_BIN / "mediaproxy"), "keys", "create", "--org", "bench"], cwd=ROOT, env=srv.env,
                         capture_output=True, text=True, check=True)
    return srv, out.stdout.strip().splitlines()[-1]


def multipart(size: int, chunk: int = MIB) -> tuple[int, object, str]:
    boundary = "benchboundary7d1c"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = os.urandom(chunk)

    def gen():
        yield head
        yield PNG_HEAD
        left = size - len(PNG_HEAD)
        while left > 0:
            n = min(chunk, left)
            yield block[:n]
            left -= n
        yield tail

    return len(head) + size + len(tail), _Stream(gen(), len(head) + size + len(tail)), \
        f"multipart/form-data; boundary={boundary}"


class _Stream:
    """A file-like view of a generator with a known length (requests then sends Content-Length)."""

    def __init__(self, gen, length: int):
        self._gen, self._buf, self.len = gen, b"", length

    def __len__(self) -> int:
        return self.len

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._gen)
            except StopIteration:
                break
        if n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def upload_once(srv: Server, key: str, size: int) -> float:
    """One upload by http.client with 1 MiB writes (requests would send 8 KiB at a time)."""
    import http.client

    length, body, ctype = multipart(size)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=600, blocksize=MIB)
    t0 = time.perf_counter()
    conn.request("POST", "/api/v1/media/upload", body=body,
                 headers={"X-API-Key": key, "Content-Type": ctype, "Content-Length": str(length)})
    r = conn.getresponse()
    text = r.read()
    dt = time.perf_counter() - t0
    conn.close()
    if r.status != 201:
        raise RuntimeError(f"upload: {r.status} {text[:200]!r}")
    return dt


def s3_client(moto):
    import boto3

    return boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def stages(src: Path, work: Path, chunk: int = 256 * 1024) -> dict:
    """What the upload path does to each byte on the local backend, each stage alone, in this
    process (MiB/s, 256 KiB chunks as the server reads them): the multipart parser, SHA-256, the
    file write; and the rate of the three done one after another."""
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.targets import BaseTarget

    class Drop(BaseTarget):
        def on_data_received(self, chunk: bytes) -> None:
            pass

    size = src.stat().st_size
    _, body, ctype = multipart(size, chunk)
    pieces = []
    while piece := body.read(chunk):
        pieces.append(piece)
    parser = StreamingFormDataParser(headers={"Content-Type": ctype})
    parser.register("file", Drop())
    t0 = time.perf_counter()
    for piece in pieces:
        parser.data_received(piece)
    parse = time.perf_counter() - t0
    del pieces
    import hashlib

    with open(src, "rb") as f:
        blocks = list(iter(lambda: f.read(chunk), b""))
    t0 = time.perf_counter()
    sha = hashlib.sha256()
    for b in blocks:
        sha.update(b)
    hashing = time.perf_counter() - t0
    dest = work / "stage-write.bin"
    t0 = time.perf_counter()
    with open(dest, "wb") as g:
        for b in blocks:
            g.write(b)
    write = time.perf_counter() - t0
    dest.unlink()
    mib = size / MIB
    return {"parse": round(mib / parse), "sha256": round(mib / hashing), "write": round(mib / write),
            "all_three_in_turn": round(mib / (parse + hashing + write))}


def reset_peak(pid: int) -> None:
    """Start VmHWM (the peak RSS) afresh from the current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def write_source(src: Path, size: int) -> None:
    with open(src, "wb") as f:
        f.write(PNG_HEAD)
        left, block = size - len(PNG_HEAD), os.urandom(MIB)
        while left > 0:
            f.write(block[: min(MIB, left)])
            left -= MIB


def direct_write(backend: str, moto, src: Path, work: Path, serial: bool = False) -> float:
    """The baseline: the same bytes written to the same storage directly (seconds)."""
    t0 = time.perf_counter()
    if backend == "s3":
        from boto3.s3.transfer import TransferConfig

        client = s3_client(moto)
        config = TransferConfig(max_concurrency=1) if serial else None
        with open(src, "rb") as f:
            client.upload_fileobj(f, "library", "baseline", Config=config)
        dt = time.perf_counter() - t0
        client.delete_object(Bucket="library", Key="baseline")
        return dt
    dest = work / "storage" / "library" / "baseline"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f, open(dest, "wb") as g:
        shutil.copyfileobj(f, g, MIB)
    dt = time.perf_counter() - t0
    dest.unlink()
    return dt


def bench_upload(backend: str, mib: int, rounds: int) -> dict:
    """``rounds`` interleaved rounds (upload, baseline[, one part in flight]); the best of each."""
    size = mib * MIB
    work = Path(tempfile.mkdtemp(prefix=f"bench-lib-{backend}-"))
    extra = {"MEDIAPROXY_UPLOAD_MAX_BYTES": str(size + MIB)}
    moto = None
    try:
        if backend == "s3":
            moto = MotoS3()
            extra.update({**AWS_ENV, "MEDIAPROXY_STORAGE": "s3", "AWS_ENDPOINT_URL": moto.endpoint,
                          "MEDIAPROXY_S3_ADDRESSING_STYLE": "path"})
        src = work / "src.bin"
        write_source(src, size)
        srv, key = library_server(work, extra)
        times, base_times, serial_times = [], [], []
        try:
            upload_once(srv, key, 8 * MIB)  # warm-up: imports, connections, first allocations
            (pid,) = srv.worker_pids()
            time.sleep(1.5)  # past gunicorn.conf.py's malloc_trim interval
            requests.get(srv.url("/healthz"), timeout=30)
            reset_peak(pid)
            before = rss_kb(pid)
            for _ in range(rounds):
                times.append(upload_once(srv, key, size))
                base_times.append(direct_write(backend, moto, src, work))
                if backend == "s3":  # a reference: boto3 with one part in flight, as the upload path has
                    serial_times.append(direct_write(backend, moto, src, work, serial=True))
            peak = rss_kb(pid, "VmHWM")
        finally:
            srv.stop()
        best, base = min(times), min(base_times)
        row = {"backend": backend, "mib": mib, "rounds": rounds, "upload_s": round(best, 3),
               "upload_mib_s": round(mib / best, 1),
               "baseline": "boto3 upload_fileobj" if backend == "s3" else "file copy",
               "baseline_s": round(base, 3), "baseline_mib_s": round(mib / base, 1),
               "throughput_ratio": round(base / best, 2),
               "ratio_per_round": [round(b / t, 2) for t, b in zip(times, base_times, strict=True)],
               "worker_rss_before_mib": round(before / 1024, 1), "worker_peak_rss_mib": round(peak / 1024, 1),
               "rss_growth_mib": round((peak - before) / 1024, 1), "loadavg_1m": round(loadavg(), 2)}
        if serial_times:
            serial = min(serial_times)
            row.update({"one_part_in_flight_s": round(serial, 3), "one_part_in_flight_mib_s": round(mib / serial, 1),
                        "ratio_to_one_part_in_flight": round(serial / best, 2)})
        else:
            row["stages_mib_s"] = stages(src, work)
        return row
    finally:
        if moto is not None:
            moto.stop()
        shutil.rmtree(work, ignore_errors=True)


WORDS = ["sunset", "beach", "mountain", "city", "portrait", "dog", "cat", "street", "night", "forest", "river",
         "snow", "desert", "market", "family", "party", "concert", "garden", "bridge", "harbour"]
TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


def fill(url: str, records: int) -> None:
    """--records media of org 'bench' and as many of another org, inserted in bulk."""
    from sqlalchemy import insert

    from mediaproxy.library import auth
    from mediaproxy.library.db import Database
    from mediaproxy.library.models import Media, Organization

    db = Database(url)
    db.upgrade()
    with db.transaction() as s:
        auth.organization(s, "bench", create=True)
        auth.organization(s, "noise", create=True)
    rnd = random.Random(7)
    t0 = datetime(2024, 1, 1)
    with db.engine.begin() as conn:
        orgs = {slug: oid for oid, slug in conn.execute(Organization.__table__.select().with_only_columns(
            Organization.id, Organization.slug))}
        for org in ("bench", "noise"):
            batch = []
            for i in range(records):
                words = rnd.sample(WORDS, 2)
                batch.append({"id": os.urandom(16).hex(), "org_id": orgs[org], "dialect": "v1", "state": "ready",
                              "filename": f"{words[0]}-{words[1]}-{i}.jpg", "mime_type": rnd.choice(TYPES),
                              "size": rnd.randint(10_000, 5_000_000), "width": 800, "height": 600,
                              "is_private": False, "alt": f"a {words[0]} photo", "caption": None,
                              "created_at": t0 + timedelta(seconds=i * 37),
                              "updated_at": t0 + timedelta(seconds=i * 37)})
                if len(batch) == 5000:
                    conn.execute(insert(Media), batch)
                    batch = []
            if batch:
                conn.execute(insert(Media), batch)
    if db.engine.dialect.name == "postgresql":
        # what autovacuum does within a minute of a bulk load: statistics and the visibility map
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # every table: media and media_search (0006)
    db.dispose()


def bench_list(database: str, records: int, n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-list-{database}-"))
    pg = None
    try:
        if database == "postgres":
            from tests.services import Postgres

            # shared_buffers as a deployment sizes it, to hold the table and its indexes (~110 MB
            # here; PostgreSQL's default is 128 MB, the test fixture's 32 MB)
            pg = Postgres(shared_buffers="256MB")
            url = pg.new_database()
        else:
            url = f"sqlite:///{work}/library.db"
        t0 = time.perf_counter()
        fill(url, records)
        filled = time.perf_counter() - t0
        srv, key = library_server(work, {"MEDIAPROXY_DATABASE_URL": url, "MEDIAPROXY_WORKERS": "2"})
        try:
            session = requests.Session()
            session.headers["X-API-Key"] = key
            rnd = random.Random(3)
            queries = []
            for _ in range(n):
                q = {"search": rnd.choice(WORDS), "sort": rnd.choice(["createdAt", "filename", "size"]),
                     "order": rnd.choice(["asc", "desc"]), "limit": 20, "offset": rnd.choice([0, 20, 100])}
                if rnd.random() < 0.3:
                    q["type"] = rnd.choice(["image/", "image/png"])
                queries.append(q)
            for q in queries[:20]:  # warm-up
                session.get(srv.url("/api/v1/media/list"), params=q, timeout=60)
            times = []
            totals = set()
            cpu0 = tree_cpu(srv.proc.pid), (tree_cpu(pg.proc.pid) if pg is not None else 0.0)
            for q in queries:
                t = time.perf_counter()
                r = session.get(srv.url("/api/v1/media/list"), params=q, timeout=60)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
                totals.add(r.json()["total"])
            server_cpu = tree_cpu(srv.proc.pid) - cpu0[0]
            db_cpu = tree_cpu(pg.proc.pid) - cpu0[1] if pg is not None else None
        finally:
            srv.stop()
        times.sort()
        return {"database": database, "records": records, "requests": n, "fill_s": round(filled, 1),
                "p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
                "max_ms": round(times[-1], 2),
                "server_cpu_ms_per_request": round(server_cpu * 1000 / n, 2),
                "postgres_cpu_ms_per_request": round(db_cpu * 1000 / n, 2) if db_cpu is not None else None,
                "loadavg_1m": round(loadavg(), 2)}
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    u = sub.add_parser("upload")
    u.add_argument("--mib", type=int, default=100)
    u.add_argument("--rounds", type=int, default=3)
    u.add_argument("--backends", default="local,s3")
    u.add_argument("--out")
    li = sub.add_parser("list")
    li.add_argument("--records", type=int, default=100_000)
    li.add_argument("--databases", default="sqlite,postgres")
    li.add_argument("--requests", type=int, default=300)
    li.add_argument("--out")
    args = ap.parse_args()
    load = round(loadavg(), 2)
    if args.what == "upload":
        rows = [bench_upload(b, args.mib, args.rounds) for b in args.backends.split(",")]
    else:
        rows = [bench_list(d, args.records, args.requests) for d in args.databases.split(",")]
    result = {"benchmark": f"library-{args.what}", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "cores": os.cpu_count(), "loadavg_1m_at_start": load, "rows": rows}
    for row in rows:
        print(json.dumps(row))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"library-{args.what}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out / f'library-{args.what}.json'}")


if __name__ == "__main__":
    main()
