"""Environment → one frozen Settings object, validated at start-up.

No other module reads ``os.environ``: the WSGI entry point calls
``Settings.from_env(os.environ)`` once and passes the object down.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError
from .hotpath import decimal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEMO_SECRET = "mediaproxy-demo-secret-do-not-use-in-production"
# MEDIAPROXY_MODE values: which routes one instance serves (app.MODES maps each to its route groups).
MODES = ("media", "static", "library", "all")
DEFAULT_STORAGE = "./var/storage"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def _int(env: Mapping[str, str], name: str, default: int, lo: int = 0, hi: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name}={raw!r}: must be {bound}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float = 0.0, hi: float | None = None) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r}: expected a number")
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name}={raw!r}: must be {bound}")
    return value


DATA_DIR = Path(__file__).resolve().parent / "data"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return value


def _address(env: Mapping[str, str], name: str, default: str, unix: bool = True) -> str:
    """``host:port``, ``[v6]:port`` or (when allowed) ``unix:/path``; empty stays empty."""
    raw = env.get(name)
    value = default if raw is None else raw.strip()
    if not value or (unix and value.startswith("unix:") and len(value) > 5):
        return value
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    ok = bool(sep and host and decimal(port) and 0 <= int(port) <= 65535) and "/" not in host
    ok = ok and (bracketed == (":" in host))  # an IPv6 host is written in brackets, only it
    if ok and bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            ok = False
    if not ok:
        forms = "HOST:PORT (e.g. 127.0.0.1:8000 or [::1]:8000)" + (" or unix:/path/to.sock" if unix else "")
        raise ConfigError(f"{name}={raw!r}: expected {forms}")
    return value


def available_cpus(cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota
    (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), rounded up, at least 1.

    A container limited to 1.5 CPUs on a 64-core host gets 2, not 64."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    root = Path(cgroup_root)
    quota = period = None
    try:
        parts = (root / "cpu.max").read_text().split()
        if len(parts) == 2 and parts[0] != "max":
            quota, period = int(parts[0]), int(parts[1])
    except (OSError, ValueError):
        for v1 in (root / "cpu", root / "cpu,cpuacct", root):
            try:
                q = int((v1 / "cpu.cfs_quota_us").read_text())
                p = int((v1 / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if q > 0:
                quota, period = q, p
            break
    if quota and period and quota > 0 and period > 0:
        cpus = min(cpus, -(-quota // period))
    return max(1, cpus)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """gunicorn's knobs (gunicorn.conf.py applies them; gunicorn's own flags still win)."""

    bind: str = "127.0.0.1:8000"
    workers: int = 1  # from_env: the CPUs available (affinity and cgroup quota)
    # misses hold at most max_concurrent_misses (+ max_queued_misses waiting), streams
    # max_concurrent_streams; the rest stay free for hits (docs/resilience.md)
    threads: int = 18
    worker_class: str = "mediaproxy.worker.ThreadWorker"
    timeout: int = 60
    graceful_timeout: int = 30
    keepalive: int = 5
    keepalive_requests: int = 1000
    max_requests: int = 100_000
    max_requests_jitter: int = 10_000
    recycle_spacing: float = 10.0  # seconds between two workers' recycles (max_requests), at least
    backlog: int = 2048
    log_level: str = "info"
    vips_concurrency: int = 1
    malloc_arena_max: int = 2
    malloc_mmap_threshold: int = 1024 * 1024
    malloc_trim_interval: float = 1.0
    metrics_bind: str = ""  # a separate listener for /metrics, served by the gunicorn master
    metrics_dir: str = ""  # prometheus_client's multiprocess directory; empty: a fresh temporary one
    control_socket: str = ""  # gunicorn's control socket (gunicornc); empty: none
    header_timeout: float = 10.0  # seconds a client has to send its request headers (then 408); 0: off
    send_timeout: float = 10.0  # seconds a response send may make no progress before it is abandoned; 0: off
    # request bodies (docs/resilience.md "Slow clients get no thread"): up to small_body_max bytes
    # are read by the event loop before the request takes a thread; every body must arrive at
    # body_min_rate bytes/s on average once body_grace seconds have passed, and within body_timeout
    small_body_max: int = 64 * 1024
    body_min_rate: int = 10 * 1024
    body_grace: float = 10.0
    body_timeout: float = 600.0  # a 50 MiB upload needs 85 KiB/s

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        d = {f.name: f.default for f in fields(cls)}
        worker_class = (env.get("MEDIAPROXY_WORKER_CLASS") or d["worker_class"]).strip()
        if not all(part.isidentifier() for part in worker_class.split(".")):
            raise ConfigError(
                f"MEDIAPROXY_WORKER_CLASS={worker_class!r}: expected a dotted class path or a gunicorn "
                "worker name (e.g. mediaproxy.worker.ThreadWorker, gthread, sync)"
            )
        vips_default = _int(env, "VIPS_CONCURRENCY", d["vips_concurrency"], 1, 1024)
        return cls(
            bind=_address(env, "MEDIAPROXY_BIND", d["bind"]),
            workers=_int(env, "MEDIAPROXY_WORKERS", available_cpus(), 1, 1024),
            threads=_int(env, "MEDIAPROXY_THREADS", d["threads"], 1, 1024),
            worker_class=worker_class,
            timeout=_int(env, "MEDIAPROXY_TIMEOUT", d["timeout"], 1, 86400),
            graceful_timeout=_int(env, "MEDIAPROXY_GRACEFUL_TIMEOUT", d["graceful_timeout"], 0, 86400),
            keepalive=_int(env, "MEDIAPROXY_KEEPALIVE", d["keepalive"], 0, 3600),
            keepalive_requests=_int(env, "MEDIAPROXY_KEEPALIVE_REQUESTS", d["keepalive_requests"], 0),
            max_requests=_int(env, "MEDIAPROXY_MAX_REQUESTS", d["max_requests"], 0),
            max_requests_jitter=_int(env, "MEDIAPROXY_MAX_REQUESTS_JITTER", d["max_requests_jitter"], 0),
            recycle_spacing=_float(env, "MEDIAPROXY_RECYCLE_SPACING", d["recycle_spacing"], 0.0, 86400.0),
            backlog=_int(env, "MEDIAPROXY_BACKLOG", d["backlog"], 1, 65535),
            log_level=_choice(env, "MEDIAPROXY_LOG_LEVEL", d["log_level"], LOG_LEVELS),
            vips_concurrency=_int(env, "MEDIAPROXY_VIPS_CONCURRENCY", vips_default, 1, 1024),
            malloc_arena_max=_int(env, "MEDIAPROXY_MALLOC_ARENA_MAX", d["malloc_arena_max"], 0, 1024),
            malloc_mmap_threshold=_int(env, "MEDIAPROXY_MALLOC_MMAP_THRESHOLD", d["malloc_mmap_threshold"], 0),
            malloc_trim_interval=_float(env, "MEDIAPROXY_MALLOC_TRIM_INTERVAL", d["malloc_trim_interval"], 0.0),
            metrics_bind=_address(env, "MEDIAPROXY_METRICS_BIND", d["metrics_bind"], unix=False),
            metrics_dir=(env.get("MEDIAPROXY_METRICS_DIR") or "").strip(),
            control_socket=(env.get("MEDIAPROXY_CONTROL_SOCKET") or "").strip(),
            header_timeout=_float(env, "MEDIAPROXY_HEADER_TIMEOUT", d["header_timeout"], 0.0, 3600.0),
            send_timeout=_float(env, "MEDIAPROXY_SEND_TIMEOUT", d["send_timeout"], 0.0, 3600.0),
            small_body_max=_int(env, "MEDIAPROXY_SMALL_BODY_MAX", d["small_body_max"], 1024, 16 * 1024**2),
            body_min_rate=_int(env, "MEDIAPROXY_BODY_MIN_RATE", d["body_min_rate"], 0),
            body_grace=_float(env, "MEDIAPROXY_BODY_GRACE", d["body_grace"], 0.0, 3600.0),
            body_timeout=_float(env, "MEDIAPROXY_BODY_TIMEOUT", d["body_timeout"], 0.0, 86400.0),
        )


def _cidr_lines(name: str, ref: str) -> list[str]:
    """``@cloudflare`` → the shipped list ``mediaproxy/data/cloudflare.txt``; ``@/path/to/file`` →
    that file. One network per line, ``#`` comments."""
    target = ref[1:]
    if "/" in target or target.endswith(".txt"):
        path = Path(target)
    elif target.replace("-", "").replace("_", "").isalnum():
        path = DATA_DIR / f"{target}.txt"
    else:
        raise ConfigError(f"{name}: {ref!r} names no network list")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        known = ", ".join(sorted("@" + p.stem for p in DATA_DIR.glob("*.txt")))
        raise ConfigError(f"{name}: cannot read {ref!r} ({exc.strerror}); shipped lists: {known}") from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines()]


def _cidrs(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    raw = env.get(name, "")
    parts = []
    for part in raw.replace(";", ",").replace(" ", ",").split(","):
        part = part.strip()
        parts.extend(_cidr_lines(name, part) if part.startswith("@") else [part])
    nets = []
    for part in parts:
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not an IP network (e.g. 10.0.0.0/8 or 2001:db8::/32)") from None
    return tuple(nets)


def _bucket(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).strip()
    if not value or "/" in value or value in (".", ".."):
        raise ConfigError(f"{name}={value!r}: not a valid bucket name")
    return value



# The library's variants: name → (box side, fit). ``cover`` crops to a square,
# ``inside`` keeps the aspect ratio within the box; 0 is "full size".
DEFAULT_VARIANTS = "thumbnail=150:cover,small=320,medium=640,large=1280,original_webp=0"
LIBRARY_TYPES = "image/jpeg,image/png,image/gif,image/webp,image/avif"
MEDIA_API_TYPES = "image/png,image/jpeg,image/gif,image/webp"


def _variants(env: Mapping[str, str], name: str) -> tuple[tuple[str, int, str], ...]:
    raw = env.get(name, "").strip() or DEFAULT_VARIANTS
    out = []
    for part in raw.split(","):
        part = part.strip()
        vname, eq, spec = part.partition("=")
        size, _, fit = spec.partition(":")
        fit = fit or "inside"
        if not eq or not vname.replace("_", "").isalnum() or not decimal(size) or fit not in ("inside", "cover"):
            raise ConfigError(f"{name}: {part!r} is not NAME=SIDE[:inside|cover] (e.g. small=320)")
        if int(size) > 16383:
            raise ConfigError(f"{name}: {part!r}: at most 16383 pixels a side")
        out.append((vname, int(size), fit))
    if len({v[0] for v in out}) != len(out):
        raise ConfigError(f"{name}: a variant name is given twice")
    return tuple(out)


def _types(env: Mapping[str, str], name: str, default: str) -> frozenset[str]:
    raw = env.get(name, "").strip() or default
    return frozenset(t.strip().lower() for t in raw.split(",") if t.strip())


def _sqlite_url(path: str) -> str:
    return "sqlite:///" + str(Path(path).resolve())


@dataclass(frozen=True, slots=True)
class LibrarySettings:
    """The media library's section (seeds 002-004): records, jobs, uploads, variants, presigning."""

    database_url: str = "sqlite:///var/library.db"
    queue_url: str = "sqlite:///var/queue.db"
    bucket: str = "library"  # where the library keeps originals and variants
    upload_max_bytes: int = 50 * 1024**2  # seed 002's direct and presigned uploads
    media_max_bytes: int = 10 * 1000**2  # seed 003: "10 MB per file"
    allowed_types: frozenset[str] = frozenset(LIBRARY_TYPES.split(","))
    media_api_types: frozenset[str] = frozenset(MEDIA_API_TYPES.split(","))
    variants: tuple[tuple[str, int, str], ...] = _variants({}, "MEDIAPROXY_VARIANTS")
    presign_default: int = 3600
    presign_min: int = 1
    presign_max: int = 86400
    upload_url_expiry: int = 900  # seconds an upload URL of POST /media or /upload/presigned stays valid
    public_base_url: str = ""  # absolute URLs in answers; empty: from the request's own host
    api_prefix: str = "/v2"  # seed 004's routes (issue 14)
    job_retries: int = 3
    job_retry_delay: float = 1.0  # first retry after this many seconds, doubling
    job_retry_max_delay: float = 60.0  # the doubling stops here
    job_retry_budget: float = 600.0  # storage or database unavailable: retried for this long, not a count
    job_lease: float = 30.0  # a job whose worker stops renewing its lease for this long is run again
    job_heartbeat: float = 5.0  # leases renewed, expired ones swept and the outbox relayed this often
    job_test_delay: float = 0.0  # tests only: a crop job waits this long between its output and its commit
    worker_threads: int = 2
    # `mediaproxy janitor`: incomplete uploads and objects no record points at are removed once this
    # old (seconds): far past any upload in flight, so that one is never touched
    janitor_grace: float = 86400.0
    # uploads whose body is still arriving, per worker process, of one client (an organization's keys,
    # or one address for signed URLs): past it 429, so one client cannot hold every thread
    uploads_per_client: int = 4
    migrate_on_start: bool = True  # embedded SQLite: apply migrations when the app starts

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v[0] for v in self.variants)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LibrarySettings:
        d = {f.name: f.default for f in fields(cls)}
        db = env.get("MEDIAPROXY_DATABASE_URL", "").strip() or _sqlite_url("./var/library.db")
        queue = env.get("MEDIAPROXY_QUEUE_URL", "").strip() or _sqlite_url("./var/queue.db")
        if not queue.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
            raise ConfigError(f"MEDIAPROXY_QUEUE_URL={queue!r}: expected sqlite:///PATH or redis://HOST:PORT/DB")
        if not db.startswith(("sqlite:", "postgresql")):
            raise ConfigError(f"MEDIAPROXY_DATABASE_URL={db!r}: expected sqlite:///PATH or postgresql+psycopg://...")
        # the /v2 image service's own name for it is API_PREFIX; ours wins when both are set
        prefix_name = "MEDIAPROXY_API_PREFIX" if "MEDIAPROXY_API_PREFIX" in env or "API_PREFIX" not in env \
            else "API_PREFIX"
        prefix = env.get(prefix_name, d["api_prefix"]).strip().rstrip("/")
        if not prefix.startswith("/") or "{" in prefix or " " in prefix:
            raise ConfigError(f"{prefix_name}={prefix!r}: expected a path such as /v2")
        pmin = _int(env, "MEDIAPROXY_PRESIGN_MIN", d["presign_min"], 1)
        pmax = _int(env, "MEDIAPROXY_PRESIGN_MAX", d["presign_max"], pmin, 7 * 86400)
        lease = _float(env, "MEDIAPROXY_JOB_LEASE", d["job_lease"], 0.2, 3600.0)
        base = env.get("MEDIAPROXY_PUBLIC_BASE_URL", "").strip().rstrip("/")
        if base and not base.startswith(("http://", "https://")):
            raise ConfigError(f"MEDIAPROXY_PUBLIC_BASE_URL={base!r}: expected http(s)://host[:port]")
        return cls(
            database_url=db,
            queue_url=queue,
            bucket=_bucket(env, "MEDIAPROXY_LIBRARY_BUCKET", d["bucket"]),
            upload_max_bytes=_int(env, "MEDIAPROXY_UPLOAD_MAX_BYTES", d["upload_max_bytes"], 1024),
            media_max_bytes=_int(env, "MEDIAPROXY_MEDIA_MAX_BYTES", d["media_max_bytes"], 1024),
            allowed_types=_types(env, "MEDIAPROXY_LIBRARY_TYPES", LIBRARY_TYPES),
            media_api_types=_types(env, "MEDIAPROXY_MEDIA_API_TYPES", MEDIA_API_TYPES),
            variants=_variants(env, "MEDIAPROXY_VARIANTS"),
            presign_default=min(max(_int(env, "MEDIAPROXY_PRESIGN_DEFAULT", d["presign_default"], 1), pmin), pmax),
            presign_min=pmin,
            presign_max=pmax,
            upload_url_expiry=_int(env, "MEDIAPROXY_UPLOAD_URL_EXPIRY", d["upload_url_expiry"], 1, 7 * 86400),
            public_base_url=base,
            api_prefix=prefix,
            job_retries=_int(env, "MEDIAPROXY_JOB_RETRIES", d["job_retries"], 0, 100),
            job_retry_delay=_float(env, "MEDIAPROXY_JOB_RETRY_DELAY", d["job_retry_delay"], 0.0, 3600.0),
            job_retry_max_delay=_float(env, "MEDIAPROXY_JOB_RETRY_MAX_DELAY", d["job_retry_max_delay"], 0.0, 86400.0),
            job_retry_budget=_float(env, "MEDIAPROXY_JOB_RETRY_BUDGET", d["job_retry_budget"], 0.0, 7 * 86400.0),
            job_lease=lease,
            job_heartbeat=_float(env, "MEDIAPROXY_JOB_HEARTBEAT", min(d["job_heartbeat"], lease / 3), 0.05, lease / 2),
            job_test_delay=_float(env, "MEDIAPROXY_JOB_TEST_DELAY", d["job_test_delay"], 0.0, 600.0),
            worker_threads=_int(env, "MEDIAPROXY_WORKER_THREADS", d["worker_threads"], 1, 64),
            janitor_grace=_float(env, "MEDIAPROXY_JANITOR_GRACE", d["janitor_grace"], 0.0),
            uploads_per_client=_int(env, "MEDIAPROXY_UPLOADS_PER_CLIENT", d["uploads_per_client"], 1, 1024),
            migrate_on_start=_bool(env, "MEDIAPROXY_MIGRATE_ON_START", db.startswith("sqlite")),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    mode: str = "media"  # media (the origin), static (static assets), library (seeds 002-004), all (media + library)
    # storage
    storage: str = DEFAULT_STORAGE  # "s3" or a directory laid out as {dir}/{bucket}/{key}
    cdn_bucket: str = "cdn"
    uploads_bucket: str = "uploads"
    static_bucket: str = "static"
    s3_addressing_style: str = "auto"
    s3_connect_timeout: float = 0.5  # same-region: a connect takes < 5 ms; a lost SYN is retried at 1 s
    s3_read_timeout: float = 2.0  # first byte / between bytes; a timeout is not retried: 504 in 2 s
    s3_max_pool: int = 32
    # the library's writes (PutObject, UploadPart, Complete, abort): seconds a write waits for the
    # store (sending, then its answer); a timeout fails the upload (504) and is not retried, a fast
    # failure (refused, reset, 5xx) is sent again up to 3 times in all (a part is re-sendable)
    s3_write_timeout: float = 10.0
    # storage resilience (mediaproxy/bulkhead.py, storage/guard.py)
    max_concurrent_storage: int = 4  # storage calls in progress per worker
    storage_wait: float = 0.5  # seconds a call waits for a storage slot before 503 (+ read timeout: < 3 s)
    storage_breaker_failures: int = 5  # failures in a row that open the circuit breaker (0: never)
    storage_breaker_cooldown: float = 2.0  # seconds the breaker stays open before a probe
    # secrets
    secret_key: str = ""
    internal_secret: str = ""
    demo: bool = False
    # cache
    cache_dir: str | None = "./var/cache"
    cache_size: int = 2 * 1024**3
    # limits
    max_source_bytes: int = 50 * 1024**2
    max_pixels: int = 100_000_000
    max_frames: int = 1000
    max_animation_pixels: int = 400_000_000
    max_concurrent_transforms: int = 4
    max_concurrent_misses: int = 6  # requests needing storage or a transform per worker (threads: 18)
    max_queued_misses: int = 6  # misses that may wait for a place (up to transform_wait); more: 503 at once
    max_concurrent_streams: int = 4  # stored bodies being sent per worker (attachments, themes)
    transform_wait: float = 10.0
    # external fetcher
    fetch_allow_cidrs: tuple[IPNetwork, ...] = ()
    fetch_connect_timeout: float = 3.0
    fetch_timeout: float = 15.0
    fetch_max_bytes: int = 50 * 1024**2
    fetch_max_redirects: int = 5
    # client allow-list
    trusted_client_cidrs: tuple[IPNetwork, ...] = ()
    trusted_proxy_cidrs: tuple[IPNetwork, ...] = ()
    # internal endpoints
    nsfw_threshold: float = 0.5
    nsfw_enabled: bool = True
    max_frames_count: int = 50
    # ops
    service_name: str = "mediaproxy"
    telemetry_enabled: bool = False
    access_log: bool = True
    fast_path: bool = True  # answer result-cache hits before Falcon (mediaproxy/fastpath.py)
    server: ServerSettings = field(default_factory=ServerSettings)
    library: LibrarySettings = field(default_factory=LibrarySettings, compare=False)
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def storage_is_s3(self) -> bool:
        return self.storage == "s3"

    @property
    def storage_is_default(self) -> bool:
        return self.storage == DEFAULT_STORAGE

    @property
    def storage_dir(self) -> Path:
        return Path(self.storage)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = {f.name: f.default for f in fields(cls)}
        demo = _bool(env, "MEDIAPROXY_DEMO", False)
        storage = env.get("MEDIAPROXY_STORAGE", d["storage"]).strip() or d["storage"]
        if storage.lower() == "s3":
            storage = "s3"
        secret = env.get("MEDIAPROXY_SECRET_KEY", "")
        if not secret:
            if not demo:
                raise ConfigError(
                    "MEDIAPROXY_SECRET_KEY is not set: it signs /external URLs and authenticates the internal "
                    "endpoints. Set it to a long random string (e.g. `python -c 'import secrets; "
                    "print(secrets.token_hex(32))'`), or set MEDIAPROXY_DEMO=1 for a local demo."
                )
            secret = DEMO_SECRET
        internal = env.get("MEDIAPROXY_INTERNAL_SECRET", "") or secret
        cache_dir: str | None = env.get("MEDIAPROXY_CACHE_DIR", d["cache_dir"])
        if cache_dir is not None and cache_dir.strip() == "":
            cache_dir = None
        style = env.get("MEDIAPROXY_S3_ADDRESSING_STYLE", "auto").strip().lower()
        if style not in ("auto", "path", "virtual"):
            raise ConfigError(f"MEDIAPROXY_S3_ADDRESSING_STYLE={style!r}: expected auto, path or virtual")
        settings = cls(
            mode=_choice(env, "MEDIAPROXY_MODE", d["mode"], MODES),
            storage=storage,
            cdn_bucket=_bucket(env, "MEDIAPROXY_CDN_BUCKET", d["cdn_bucket"]),
            uploads_bucket=_bucket(env, "MEDIAPROXY_UPLOADS_BUCKET", d["uploads_bucket"]),
            static_bucket=_bucket(env, "MEDIAPROXY_STATIC_BUCKET", d["static_bucket"]),
            s3_addressing_style=style,
            s3_connect_timeout=_float(env, "MEDIAPROXY_S3_CONNECT_TIMEOUT", d["s3_connect_timeout"], 0.01),
            s3_read_timeout=_float(env, "MEDIAPROXY_S3_READ_TIMEOUT", d["s3_read_timeout"], 0.01),
            s3_max_pool=_int(env, "MEDIAPROXY_S3_MAX_POOL", d["s3_max_pool"], 1, 1024),
            s3_write_timeout=_float(env, "MEDIAPROXY_S3_WRITE_TIMEOUT", d["s3_write_timeout"], 0.01),
            max_concurrent_storage=_int(env, "MEDIAPROXY_MAX_CONCURRENT_STORAGE", d["max_concurrent_storage"], 1, 1024),
            storage_wait=_float(env, "MEDIAPROXY_STORAGE_WAIT", d["storage_wait"], 0.0, 600.0),
            storage_breaker_failures=_int(
                env, "MEDIAPROXY_STORAGE_BREAKER_FAILURES", d["storage_breaker_failures"], 0, 10_000
            ),
            storage_breaker_cooldown=_float(
                env, "MEDIAPROXY_STORAGE_BREAKER_COOLDOWN", d["storage_breaker_cooldown"], 0.1, 3600.0
            ),
            secret_key=secret,
            internal_secret=internal,
            demo=demo,
            cache_dir=cache_dir,
            cache_size=_int(env, "MEDIAPROXY_CACHE_SIZE", d["cache_size"], 1024**2),
            max_source_bytes=_int(env, "MEDIAPROXY_MAX_SOURCE_BYTES", d["max_source_bytes"], 1024),
            max_pixels=_int(env, "MEDIAPROXY_MAX_PIXELS", d["max_pixels"], 1),
            max_frames=_int(env, "MEDIAPROXY_MAX_FRAMES", d["max_frames"], 1),
            max_animation_pixels=_int(env, "MEDIAPROXY_MAX_ANIMATION_PIXELS", d["max_animation_pixels"], 1),
            max_concurrent_transforms=_int(
                env, "MEDIAPROXY_MAX_CONCURRENT_TRANSFORMS", d["max_concurrent_transforms"], 1, 1024
            ),
            max_concurrent_misses=_int(env, "MEDIAPROXY_MAX_CONCURRENT_MISSES", d["max_concurrent_misses"], 1, 1024),
            max_queued_misses=_int(env, "MEDIAPROXY_MAX_QUEUED_MISSES", d["max_queued_misses"], 0, 1024),
            max_concurrent_streams=_int(env, "MEDIAPROXY_MAX_CONCURRENT_STREAMS", d["max_concurrent_streams"], 1, 1024),
            transform_wait=_float(env, "MEDIAPROXY_TRANSFORM_WAIT", d["transform_wait"], 0.0),
            fetch_allow_cidrs=_cidrs(env, "MEDIAPROXY_FETCH_ALLOW_CIDRS"),
            fetch_connect_timeout=_float(env, "MEDIAPROXY_FETCH_CONNECT_TIMEOUT", d["fetch_connect_timeout"], 0.01),
            fetch_timeout=_float(env, "MEDIAPROXY_FETCH_TIMEOUT", d["fetch_timeout"], 0.01),
            fetch_max_bytes=_int(env, "MEDIAPROXY_FETCH_MAX_BYTES", d["fetch_max_bytes"], 1024),
            fetch_max_redirects=_int(env, "MEDIAPROXY_FETCH_MAX_REDIRECTS", d["fetch_max_redirects"], 0, 20),
            trusted_client_cidrs=_cidrs(env, "MEDIAPROXY_TRUSTED_CLIENT_CIDRS"),
            trusted_proxy_cidrs=_cidrs(env, "MEDIAPROXY_TRUSTED_PROXY_CIDRS"),
            nsfw_threshold=_float(env, "MEDIAPROXY_NSFW_THRESHOLD", d["nsfw_threshold"], 0.0, 1.0),
            nsfw_enabled=_bool(env, "MEDIAPROXY_NSFW_ENABLED", d["nsfw_enabled"]),
            max_frames_count=_int(env, "MEDIAPROXY_MAX_FRAMES_COUNT", d["max_frames_count"], 1, 1000),
            service_name=env.get("MEDIAPROXY_SERVICE_NAME", d["service_name"]) or d["service_name"],
            telemetry_enabled=_bool(env, "MEDIAPROXY_TELEMETRY_ENABLED", d["telemetry_enabled"]),
            access_log=_bool(env, "MEDIAPROXY_ACCESS_LOG", d["access_log"]),
            fast_path=_bool(env, "MEDIAPROXY_FAST_PATH", d["fast_path"]),
            server=ServerSettings.from_env(env),
            library=LibrarySettings.from_env(env),
        )
        if not settings.storage_is_s3:
            path = Path(settings.storage)
            if path.exists() and not path.is_dir():
                raise ConfigError(f"MEDIAPROXY_STORAGE={storage!r}: exists and is not a directory")
        served = {"MEDIAPROXY_CDN_BUCKET": settings.cdn_bucket, "MEDIAPROXY_UPLOADS_BUCKET": settings.uploads_bucket,
                  "MEDIAPROXY_STATIC_BUCKET": settings.static_bucket}
        for name, bucket in served.items():
            if bucket == settings.library.bucket:
                # The static host serves every key of its bucket and the CDN routes read theirs
                # without records: the library's private originals must never be in one of them.
                raise ConfigError(f"MEDIAPROXY_LIBRARY_BUCKET={bucket!r}: must differ from {name}")
        return settings

    def warnings(self) -> list[str]:
        """Settings that work but are unsafe: logged at WARNING when the server starts (and by
        ``mediaproxy check-config``), so an operator hears of them."""
        out = []
        if self.internal_secret == self.secret_key:
            out.append(
                "MEDIAPROXY_INTERNAL_SECRET is not set (or equals MEDIAPROXY_SECRET_KEY): the internal "
                "endpoints (/_metadata, /_thumbnail, /_frames, /metrics) accept the same secret "
                "that signs /external URLs and the admin API's tokens, so whoever learns one has all. "
                "Set MEDIAPROXY_INTERNAL_SECRET to a separate long random string.")
        if self.mode in ("library", "all") and not self.trusted_proxy_cidrs:
            out.append(
                "MEDIAPROXY_TRUSTED_PROXY_CIDRS is empty: admin logins are throttled by client address, and "
                "behind a proxy or load balancer every client shares the proxy's address (and its failed "
                "logins). Set it to the proxy's addresses.")
        return out

    def describe(self) -> dict[str, object]:
        """Settings for logs, with secrets masked."""
        out: dict[str, object] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in ("secret_key", "internal_secret"):
                value = "***" if value else ""
            elif isinstance(value, LibrarySettings):
                value = {k.name: _plain(getattr(value, k.name)) for k in fields(value)}
                value["database_url"] = _mask_url(str(value["database_url"]))
                value["queue_url"] = _mask_url(str(value["queue_url"]))
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            elif isinstance(value, ServerSettings):
                value = {g.name: getattr(value, g.name) for g in fields(value)}
            out[f.name] = value
        return out


def _plain(value: object) -> object:
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return [list(v) if isinstance(v, tuple) else v for v in value]
    return value


def _mask_url(url: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    cred, _, host = rest.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in cred else url
