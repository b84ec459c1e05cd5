"""Environment → one frozen Settings object, validated at start-up.

No other module reads ``os.environ``: the WSGI entry point calls
``Settings.from_env(os.environ)`` once and passes the object down.

Every setting is declared once, as one ``Setting`` row of ``SETTINGS`` below: its attribute,
its environment variable, its parser (the type, the accepted values and bounds), its default,
a one-line description and its group. That row makes the dataclass field and its default,
is parsed and validated by ``from_env``, printed by ``mediaproxy check-config``, and becomes a
row of the generated ``docs/settings.md`` (``python -m mediaproxy.settings --markdown``;
tests/test_settings_docs.py checks the committed file is current).

A plain table rather than pydantic-settings: the fail-fast contract is one line naming the
variable and what it accepts (``MEDIAPROXY_THREADS='0': must be 1..1024``), which pydantic's
validation errors would have to be rewritten into for every type; the settings that depend on
others (the heartbeat bounded by the lease, the presign default clamped to its bounds, the
internal secret defaulting to the secret key, migrations on by default for SQLite) are
ordered rows here instead of model validators; and the server reads its environment once at
start-up, where a table of small parsers is all that is needed.
"""

from __future__ import annotations

import argparse
import inspect
import ipaddress
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .hotpath import decimal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEMO_SECRET = "mediaproxy-demo-secret-do-not-use-in-production"
# MEDIAPROXY_MODE values: which routes one instance serves (app.MODES maps each to its route groups).
MODES = ("media", "static", "library", "all")
# The modes that serve the media library (app.MODES gives them its route group); the others never
# import it (SQLAlchemy, Alembic, huey and the multipart parser stay out of their workers).
LIBRARY_MODES = ("library", "all")
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


def _sqlite_url(path: str) -> str:
    return "sqlite:///" + str(Path(path).resolve())


# --- Parsers: each reads one variable, returns its value or raises ConfigError with one line
# naming it; ``accepts`` is what docs/settings.md says it takes.

Env = Mapping[str, str]
Got = dict[str, Any]  # the values of the section parsed so far, by attribute
Bound = float | Callable[[Got], float] | None


def _at(bound: Bound, got: Got) -> Any:
    return bound(got) if callable(bound) else bound


def _span(lo: Bound, hi: Bound, bounds: str) -> str:
    if bounds:
        return bounds
    return f"{lo}..{hi}" if hi is not None else f"≥ {lo}"


@dataclass(frozen=True)
class Parser:
    type = "str"  # the field's annotation

    def accepts(self) -> str:
        raise NotImplementedError

    def show(self, value: Any) -> Any:
        """The value as check-config prints it."""
        return value


@dataclass(frozen=True)
class Int(Parser):
    lo: Bound = 0
    hi: Bound = None
    bounds: str = ""  # how the docs state a bound that depends on another setting
    type = "int"
    read = staticmethod(_int)
    noun = "integer"

    def __call__(self, env: Env, name: str, default: Any, got: Got) -> int | float:
        return self.read(env, name, default, _at(self.lo, got), _at(self.hi, got))

    def accepts(self) -> str:
        return f"{self.noun} {_span(self.lo, self.hi, self.bounds)}"


@dataclass(frozen=True)
class Float(Int):
    lo: Bound = 0.0
    type = "float"
    read = staticmethod(_float)
    noun = "number"


@dataclass(frozen=True)
class Choice(Parser):
    choices: tuple[str, ...] = ()
    type = "str"

    def __call__(self, env: Env, name: str, default: Any, got: Got) -> str:
        return _choice(env, name, default, self.choices)

    def accepts(self) -> str:
        return "one of " + ", ".join(f"`{c}`" for c in self.choices)


@dataclass(frozen=True)
class Address(Parser):
    unix: bool = True
    type = "str"

    def __call__(self, env: Env, name: str, default: Any, got: Got) -> str:
        return _address(env, name, default, self.unix)

    def accepts(self) -> str:
        return "`HOST:PORT`, `[v6]:PORT`" + (" or `unix:/path`" if self.unix else "; empty: off")


@dataclass(frozen=True)
class Text(Parser):
    """Any text, stripped; empty is the default."""

    type = "str"

    def __call__(self, env: Env, name: str, default: Any, got: Got) -> str:
        raw = env.get(name)
        return default if raw is None or not raw.strip() else raw.strip()

    def accepts(self) -> str:
        return "text"


@dataclass(frozen=True)
class Cidrs(Parser):
    type = "tuple[IPNetwork, ...]"

    def __call__(self, env: Env, name: str, default: Any, got: Got) -> tuple[IPNetwork, ...]:
        return _cidrs(env, name)

    def accepts(self) -> str:
        return ("networks (`10.0.0.0/8`, `2001:db8::/32`), `@cloudflare` (a shipped list) or `@/path/file`, "
                "comma-separated")

    def show(self, value: Any) -> Any:
        return [str(v) for v in value]


@dataclass(frozen=True)
class Types(Parser):
    type = "frozenset[str]"

    def __call__(self, env: Env, name: str, default: Any, got: Got) -> frozenset[str]:
        raw = env.get(name, "").strip()
        return frozenset(t.strip().lower() for t in raw.split(",") if t.strip()) if raw else default

    def accepts(self) -> str:
        return "MIME types, comma-separated"

    def show(self, value: Any) -> Any:
        return sorted(value)


@dataclass(frozen=True)
class Variants(Parser):
    type = "tuple[tuple[str, int, str], ...]"

    def __call__(self, env: Env, name: str, default: Any, got: Got) -> tuple[tuple[str, int, str], ...]:
        return _variants(env, name)

    def accepts(self) -> str:
        return "`NAME=SIDE[:inside|cover]`, comma-separated (SIDE ≤ 16383)"

    def show(self, value: Any) -> Any:
        return [f"{n}={side}:{fit}" for n, side, fit in value]


@dataclass(frozen=True)
class Custom(Parser):
    """A setting with a rule of its own: ``fn(env, name, default, got)``."""

    fn: Callable[[Env, str, Any, Got], Any] | None = None
    text: str = ""
    type: str = "str"

    def __call__(self, env: Env, name: str, default: Any, got: Got) -> Any:
        assert self.fn is not None
        return self.fn(env, name, default, got)

    def accepts(self) -> str:
        return self.text


# settings read by one function of (env, name, default)
BOOL = Custom(fn=lambda env, name, default, got: _bool(env, name, default),
              text="1/0, true/false, yes/no, on/off", type="bool")
BUCKET = Custom(fn=lambda env, name, default, got: _bucket(env, name, default), text="a bucket name")


def _storage(env: Env, name: str, default: str, got: Got) -> str:
    value = env.get(name, default).strip() or default
    return "s3" if value.lower() == "s3" else value


def _secret_key(env: Env, name: str, default: str, got: Got) -> str:
    secret = env.get(name, "")
    if secret:
        return secret
    if not got["demo"]:
        raise ConfigError(
            f"{name} is not set: it signs /external URLs and authenticates the internal "
            "endpoints. Set it to a long random string (e.g. `python -c 'import secrets; "
            "print(secrets.token_hex(32))'`), or set MEDIAPROXY_DEMO=1 for a local demo."
        )
    return DEMO_SECRET


def _internal_secret(env: Env, name: str, default: str, got: Got) -> str:
    return env.get(name, "") or got["secret_key"]


def _cache_dir(env: Env, name: str, default: str | None, got: Got) -> str | None:
    value = env.get(name, default)
    return None if value is not None and value.strip() == "" else value


def _addressing_style(env: Env, name: str, default: str, got: Got) -> str:
    style = env.get(name, default).strip().lower()
    if style not in ("auto", "path", "virtual"):
        raise ConfigError(f"{name}={style!r}: expected auto, path or virtual")
    return style


def _worker_class(env: Env, name: str, default: str, got: Got) -> str:
    worker_class = (env.get(name) or default).strip()
    if not all(part.isidentifier() for part in worker_class.split(".")):
        raise ConfigError(
            f"{name}={worker_class!r}: expected a dotted class path or a gunicorn "
            "worker name (e.g. mediaproxy.worker.ThreadWorker, gthread, sync)"
        )
    return worker_class


LIBRARY_DB = "./var/library.db"
QUEUE_DB = "./var/queue.db"


def _database_url(env: Env, name: str, default: str, got: Got) -> str:
    db = env.get(name, "").strip() or _sqlite_url(LIBRARY_DB)
    if not db.startswith(("sqlite:", "postgresql")):
        raise ConfigError(f"{name}={db!r}: expected sqlite:///PATH or postgresql+psycopg://...")
    return db


def _queue_url(env: Env, name: str, default: str, got: Got) -> str:
    queue = env.get(name, "").strip() or _sqlite_url(QUEUE_DB)
    if not queue.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name}={queue!r}: expected sqlite:///PATH or redis://HOST:PORT/DB")
    return queue


def _api_prefix(env: Env, name: str, default: str, got: Got) -> str:
    # the /v2 image service's own name for it is API_PREFIX; ours wins when both are set
    if name not in env and "API_PREFIX" in env:
        name = "API_PREFIX"
    prefix = env.get(name, default).strip().rstrip("/")
    if not prefix.startswith("/") or "{" in prefix or " " in prefix:
        raise ConfigError(f"{name}={prefix!r}: expected a path such as /v2")
    return prefix


def _portal_path(env: Env, name: str, default: str, got: Got) -> str:
    portal = env.get(name, default).strip().rstrip("/")
    prefix = got["api_prefix"]
    if not portal.startswith("/") or "{" in portal or " " in portal or portal == prefix \
            or portal.startswith(prefix + "/"):
        raise ConfigError(f"{name}={portal!r}: expected a path such as /admin, outside {prefix}")
    return portal


def _public_base_url(env: Env, name: str, default: str, got: Got) -> str:
    base = env.get(name, "").strip().rstrip("/")
    if base and not base.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={base!r}: expected http(s)://host[:port]")
    return base


def _presign_default(env: Env, name: str, default: int, got: Got) -> int:
    return min(max(_int(env, name, default, 1), got["presign_min"]), got["presign_max"])


# --- The declaration: one row per setting.


@dataclass(frozen=True)
class Setting:
    section: str  # "" (Settings), "server" (Settings.server) or "library" (Settings.library)
    attr: str
    env: str
    parse: Parser
    default: Any  # the field's default, and the value when the variable is unset (unless ``computed``)
    doc: str  # one line for docs/settings.md
    group: str  # its heading there
    computed: Callable[[Got, Env], Any] | None = None  # the default, from other settings or the environment
    default_doc: str = ""  # how docs/settings.md states a computed default
    secret: bool = False  # masked by describe() and check-config (a URL: its password only)

    @property
    def path(self) -> str:
        return f"{self.section}.{self.attr}" if self.section else self.attr


MODE = "Mode and storage"
S3 = "S3"
STORAGE = "Storage resilience"
SECRETS = "Secrets"
CACHE = "Result cache"
LIMITS = "Limits of the media pipeline"
CONCURRENCY = "Concurrency per worker"
FETCH = "External fetcher (/external)"
CLIENTS = "Client addresses"
INTERNAL = "Internal endpoints"
OPS = "Logs, metrics and telemetry"
GUNICORN = "gunicorn"
BODIES = "Slow clients and request bodies"
MEMORY = "Memory and libvips"
LIBRARY = "The media library"
JOBS = "The media library: jobs"

MiB = 1024**2
_tcp = Address(unix=False)
_lease = "MEDIAPROXY_JOB_LEASE"

SETTINGS: tuple[Setting, ...] = (
    # Settings
    Setting("", "mode", "MEDIAPROXY_MODE", Choice(choices=MODES), "media",
            "which routes this instance serves: `media` the origin's routes and internal endpoints, `static` "
            "the static-assets host, `library` the media library's APIs and its public URLs, `all` media + library",
            MODE),
    Setting("", "storage", "MEDIAPROXY_STORAGE",
            Custom(fn=_storage, text="`s3` (any case) or a directory"), DEFAULT_STORAGE,
            "`s3` (boto3 finds the credentials), or a directory laid out as `{dir}/{bucket}/{key}` (created if "
            "missing; an empty one is warned about loudly)", MODE),
    Setting("", "cdn_bucket", "MEDIAPROXY_CDN_BUCKET", BUCKET, "cdn", "bucket served by the public routes", MODE),
    Setting("", "uploads_bucket", "MEDIAPROXY_UPLOADS_BUCKET", BUCKET, "uploads",
            "bucket the internal endpoints read videos from", MODE),
    Setting("", "static_bucket", "MEDIAPROXY_STATIC_BUCKET", BUCKET, "static",
            "bucket the static-assets host serves", MODE),
    Setting("", "s3_addressing_style", "MEDIAPROXY_S3_ADDRESSING_STYLE",
            Custom(fn=_addressing_style, text="`auto`, `path` or `virtual`"), "auto",
            "`path` for S3-compatible stores that need path-style URLs", S3),
    Setting("", "s3_connect_timeout", "MEDIAPROXY_S3_CONNECT_TIMEOUT", Float(0.01), 0.5,
            "seconds to connect to S3 (same region: a connect takes < 5 ms); a timeout answers `504`", S3),
    Setting("", "s3_read_timeout", "MEDIAPROXY_S3_READ_TIMEOUT", Float(0.01), 2.0,
            "seconds to the first byte and between bytes of an S3 read; a timeout answers `504` and is not retried",
            S3),
    Setting("", "s3_max_pool", "MEDIAPROXY_S3_MAX_POOL", Int(1, 1024), 32, "connections in boto3's pool per worker",
            S3),
    Setting("", "s3_write_timeout", "MEDIAPROXY_S3_WRITE_TIMEOUT", Float(0.01), 10.0,
            "seconds a library write (PutObject, UploadPart, Complete, abort) waits for the store; a timeout fails "
            "the upload (`504`) and is not retried, a fast failure is sent again (3 attempts in all)", S3),
    Setting("", "max_concurrent_storage", "MEDIAPROXY_MAX_CONCURRENT_STORAGE", Int(1, 1024), 4,
            "storage calls in progress per worker", STORAGE),
    Setting("", "storage_wait", "MEDIAPROXY_STORAGE_WAIT", Float(0.0, 600.0), 0.5,
            "seconds a storage call waits for a place, then `503`", STORAGE),
    Setting("", "storage_breaker_failures", "MEDIAPROXY_STORAGE_BREAKER_FAILURES", Int(0, 10_000), 5,
            "storage failures in a row that open the circuit breaker (`0`: never; docs/resilience.md)", STORAGE),
    Setting("", "storage_breaker_cooldown", "MEDIAPROXY_STORAGE_BREAKER_COOLDOWN", Float(0.1, 3600.0), 2.0,
            "seconds the breaker stays open before one probe", STORAGE),
    Setting("", "demo", "MEDIAPROXY_DEMO", BOOL, False,
            "allow starting without a secret key: a fixed, public demo key is used (never in production)", SECRETS),
    Setting("", "secret_key", "MEDIAPROXY_SECRET_KEY", Custom(fn=_secret_key, text="a long random string"), "",
            "signs `/external` URLs and the admin API's tokens; the internal secret too unless the next is set",
            SECRETS, default_doc="— (required, unless `MEDIAPROXY_DEMO`)", secret=True),
    Setting("", "internal_secret", "MEDIAPROXY_INTERNAL_SECRET", Custom(fn=_internal_secret, text="a long random "
            "string"), "", "`X-Internal-Secret` of `/_metadata`, `/_thumbnail`, `/_frames` and `/metrics`", SECRETS,
            default_doc="the secret key (a warning at start)", secret=True),
    Setting("", "cache_dir", "MEDIAPROXY_CACHE_DIR", Custom(fn=_cache_dir, text="a directory; empty: no cache",
            type="str | None"), "./var/cache", "the disk cache of results, shared by all workers", CACHE),
    Setting("", "cache_size", "MEDIAPROXY_CACHE_SIZE", Int(MiB), 2 * 1024**3,
            "bytes the cache may hold (the least recently stored entries are culled)", CACHE),
    Setting("", "fast_path", "MEDIAPROXY_FAST_PATH", BOOL, True,
            "answer the image routes (cache hits and misses) in a thin WSGI layer before Falcon (off only to "
            "compare)", CACHE),
    Setting("", "max_source_bytes", "MEDIAPROXY_MAX_SOURCE_BYTES", Int(1024), 50 * MiB,
            "largest original the image pipeline reads (`413` above)", LIMITS),
    Setting("", "max_pixels", "MEDIAPROXY_MAX_PIXELS", Int(1), 100_000_000,
            "largest width × height decoded (`413` above; checked from the header)", LIMITS),
    Setting("", "max_frames", "MEDIAPROXY_MAX_FRAMES", Int(1), 1000, "most frames of an animation (`413` above)",
            LIMITS),
    Setting("", "max_animation_pixels", "MEDIAPROXY_MAX_ANIMATION_PIXELS", Int(1), 400_000_000,
            "frames × width × height of an animation (`413` above)", LIMITS),
    Setting("", "max_concurrent_transforms", "MEDIAPROXY_MAX_CONCURRENT_TRANSFORMS", Int(1, 1024), 4,
            "transforms in progress per worker; more wait", CONCURRENCY),
    Setting("", "max_concurrent_misses", "MEDIAPROXY_MAX_CONCURRENT_MISSES", Int(1, 1024), 6,
            "requests per worker that need storage or a transform (misses, attachments, internal endpoints)",
            CONCURRENCY),
    Setting("", "max_queued_misses", "MEDIAPROXY_MAX_QUEUED_MISSES", Int(0, 1024), 6,
            "misses past those that may wait for a place (at most `MEDIAPROXY_TRANSFORM_WAIT`); more get `503` at "
            "once, so the other threads stay free for hits", CONCURRENCY),
    Setting("", "max_concurrent_streams", "MEDIAPROXY_MAX_CONCURRENT_STREAMS", Int(1, 1024), 4,
            "stored bodies (S3 attachments, themes) being sent by a thread per worker; more get `503` at once",
            CONCURRENCY),
    Setting("", "transform_wait", "MEDIAPROXY_TRANSFORM_WAIT", Float(0.0), 10.0,
            "seconds a request waits for a transform slot, then `503`", CONCURRENCY),
    Setting("", "fetch_allow_cidrs", "MEDIAPROXY_FETCH_ALLOW_CIDRS", Cidrs(), (),
            "networks the fetcher may reach despite the private-address rule (tests use `127.0.0.0/8`)", FETCH),
    Setting("", "fetch_connect_timeout", "MEDIAPROXY_FETCH_CONNECT_TIMEOUT", Float(0.01), 3.0,
            "seconds to connect to a fetched URL's host", FETCH),
    Setting("", "fetch_timeout", "MEDIAPROXY_FETCH_TIMEOUT", Float(0.01), 15.0, "seconds for a whole fetch", FETCH),
    Setting("", "fetch_max_bytes", "MEDIAPROXY_FETCH_MAX_BYTES", Int(1024), 50 * MiB,
            "byte cap on a fetched original (`413` above)", FETCH),
    Setting("", "fetch_max_redirects", "MEDIAPROXY_FETCH_MAX_REDIRECTS", Int(0, 20), 5,
            "redirects followed, each hop checked again", FETCH),
    Setting("", "trusted_client_cidrs", "MEDIAPROXY_TRUSTED_CLIENT_CIDRS", Cidrs(), (),
            "the client allow-list of the public routes (empty: off); the library's key-authenticated APIs are not "
            "behind it, its public URLs are", CLIENTS),
    Setting("", "trusted_proxy_cidrs", "MEDIAPROXY_TRUSTED_PROXY_CIDRS", Cidrs(), (),
            "proxies whose `X-Forwarded-For` is believed", CLIENTS),
    Setting("", "nsfw_threshold", "MEDIAPROXY_NSFW_THRESHOLD", Float(0.0, 1.0), 0.5,
            "`nsfw_detected` is `nsfw_score >= threshold`", INTERNAL),
    Setting("", "nsfw_enabled", "MEDIAPROXY_NSFW_ENABLED", BOOL, True, "run the NSFW model in `/_metadata`",
            INTERNAL),
    Setting("", "max_frames_count", "MEDIAPROXY_MAX_FRAMES_COUNT", Int(1, 1000), 50,
            "upper bound of `count` in `/_frames`", INTERNAL),
    Setting("", "service_name", "MEDIAPROXY_SERVICE_NAME", Text(), "mediaproxy", "`service` in `/internal/telemetry`",
            OPS),
    Setting("", "telemetry_enabled", "MEDIAPROXY_TELEMETRY_ENABLED", BOOL, False,
            "`telemetry_enabled` in `/internal/telemetry`", OPS),
    Setting("", "access_log", "MEDIAPROXY_ACCESS_LOG", BOOL, True,
            "one JSON line per request, whatever the log level", OPS),
    # Settings.server: gunicorn's knobs (gunicorn.conf.py applies them; gunicorn's own flags still win)
    Setting("server", "bind", "MEDIAPROXY_BIND", Address(), "127.0.0.1:8000",
            "listen address (gunicorn's `-b` wins)", GUNICORN),
    Setting("server", "workers", "MEDIAPROXY_WORKERS", Int(1, 1024), 1,
            "worker processes (gunicorn's `-w` wins)", GUNICORN, computed=lambda got, env: available_cpus(),
            default_doc="the CPUs this process may use (affinity mask, capped by a cgroup CPU quota)"),
    Setting("server", "threads", "MEDIAPROXY_THREADS", Int(1, 1024), 18,
            "threads per worker: misses hold at most the misses' places (and those waiting), streams theirs; the "
            "rest stay free for hits (docs/resilience.md)", GUNICORN),
    Setting("server", "worker_class", "MEDIAPROXY_WORKER_CLASS",
            Custom(fn=_worker_class, text="a dotted class path or a gunicorn worker name"),
            "mediaproxy.worker.ThreadWorker",
            "gunicorn worker class: gthread that accepts a connection only while it has a free thread", GUNICORN),
    Setting("server", "next_request_wait", "MEDIAPROXY_NEXT_REQUEST_WAIT", Float(0.0, 60.0), 0.002,
            "seconds a thread that answered a kept-alive connection waits for its next request before handing the "
            "connection back to the event loop, while the worker has another thread free, and never past "
            "`MEDIAPROXY_KEEPALIVE` (`0`: at once; mediaproxy's worker class only)", GUNICORN),
    Setting("server", "timeout", "MEDIAPROXY_TIMEOUT", Int(1, 86400), 60,
            "seconds a silent worker lives before gunicorn restarts it", GUNICORN),
    Setting("server", "graceful_timeout", "MEDIAPROXY_GRACEFUL_TIMEOUT", Int(0, 86400), 30,
            "seconds a worker has to finish its requests when stopped", GUNICORN),
    Setting("server", "keepalive", "MEDIAPROXY_KEEPALIVE", Int(0, 3600), 5,
            "seconds an idle keep-alive connection is held", GUNICORN),
    Setting("server", "keepalive_requests", "MEDIAPROXY_KEEPALIVE_REQUESTS", Int(0), 1000,
            "requests on one keep-alive connection before it is closed, so connections rebalance (`0`: no limit)",
            GUNICORN),
    Setting("server", "max_requests", "MEDIAPROXY_MAX_REQUESTS", Int(0), 100_000,
            "requests after which a worker is recycled, as a safety net (`0`: never)", GUNICORN),
    Setting("server", "max_requests_jitter", "MEDIAPROXY_MAX_REQUESTS_JITTER", Int(0), 10_000,
            "random spread added to that", GUNICORN),
    Setting("server", "recycle_spacing", "MEDIAPROXY_RECYCLE_SPACING", Float(0.0, 86400.0), 10.0,
            "seconds at least between two workers' recycles (`max_requests`): a worker past its limit "
            "waits while a sibling restarted more recently", GUNICORN),
    Setting("server", "backlog", "MEDIAPROXY_BACKLOG", Int(1, 65535), 2048, "listen backlog", GUNICORN),
    Setting("server", "control_socket", "MEDIAPROXY_CONTROL_SOCKET", Text(), "",
            "path of gunicorn's control socket for `gunicornc` (empty: none; gunicorn's default path is shared by "
            "every instance of a user)", GUNICORN),
    Setting("server", "log_level", "MEDIAPROXY_LOG_LEVEL", Choice(choices=LOG_LEVELS), "info",
            "gunicorn's and the application's log level", OPS),
    Setting("server", "metrics_bind", "MEDIAPROXY_METRICS_BIND", _tcp, "",
            "a Prometheus listener served by the gunicorn master (keep it private; empty: off)", OPS),
    Setting("server", "metrics_dir", "MEDIAPROXY_METRICS_DIR", Text(), "",
            "prometheus_client's multiprocess directory, emptied at start (empty: a fresh temporary one)", OPS),
    Setting("server", "header_timeout", "MEDIAPROXY_HEADER_TIMEOUT", Float(0.0, 3600.0), 10.0,
            "seconds a client has to send its request headers (read by the event loop, no thread taken), then "
            "`408` (`0`: off)", BODIES),
    Setting("server", "send_timeout", "MEDIAPROXY_SEND_TIMEOUT", Float(0.0, 3600.0), 10.0,
            "seconds a response send may make no progress before it is abandoned (`0`: off)", BODIES),
    Setting("server", "small_body_max", "MEDIAPROXY_SMALL_BODY_MAX", Int(1024, 16 * MiB), 64 * 1024,
            "request bodies up to this many bytes are read by the event loop before the request takes a thread; "
            "JSON and form bodies over it are refused (`413`)", BODIES),
    Setting("server", "body_min_rate", "MEDIAPROXY_BODY_MIN_RATE", Int(0), 10 * 1024,
            "bytes/s a request body must average once the grace has passed, else `408` (`0`: off)", BODIES),
    Setting("server", "body_grace", "MEDIAPROXY_BODY_GRACE", Float(0.0, 3600.0), 10.0,
            "seconds before that rate applies", BODIES),
    Setting("server", "body_timeout", "MEDIAPROXY_BODY_TIMEOUT", Float(0.0, 86400.0), 600.0,
            "seconds a request body must be complete within, else `408` (a 50 MiB upload needs 85 KiB/s; `0`: off)",
            BODIES),
    Setting("server", "vips_concurrency", "MEDIAPROXY_VIPS_CONCURRENCY", Int(1, 1024), 1,
            "libvips threads per operation", MEMORY,
            computed=lambda got, env: _int(env, "VIPS_CONCURRENCY", 1, 1, 1024),
            default_doc="`VIPS_CONCURRENCY`, else `1`"),
    Setting("server", "malloc_arena_max", "MEDIAPROXY_MALLOC_ARENA_MAX", Int(0, 1024), 2,
            "glibc heap arenas per worker, set after fork (libvips heap fragmentation)", MEMORY),
    Setting("server", "malloc_mmap_threshold", "MEDIAPROXY_MALLOC_MMAP_THRESHOLD", Int(0), 4 * MiB,
            "bytes from which glibc maps an allocation on its own, set after fork (`0`: glibc's dynamic threshold)",
            MEMORY),
    Setting("server", "malloc_trim_threshold", "MEDIAPROXY_MALLOC_TRIM_THRESHOLD", Int(0), 4 * MiB,
            "free bytes at the top of glibc's heap before a `free()` hands them back, set after fork (`0`: glibc's "
            "default); the periodic `malloc_trim(0)` hands back the rest", MEMORY),
    Setting("server", "malloc_trim_interval", "MEDIAPROXY_MALLOC_TRIM_INTERVAL", Float(0.0), 1.0,
            "seconds between `malloc_trim(0)` calls after requests, handing freed heap back (`0`: never)", MEMORY),
    # Settings.library: the media library (the /api/v1 API, the presigned /media API, the /v2 image service)
    Setting("library", "database_url", "MEDIAPROXY_DATABASE_URL",
            Custom(fn=_database_url, text="`sqlite:///PATH` or `postgresql+psycopg://user:pw@host/db`"),
            "sqlite:///var/library.db", "the library's database (SQLAlchemy URL)", LIBRARY,
            default_doc=f"`{LIBRARY_DB}` (SQLite, made absolute)", secret=True),
    Setting("library", "queue_url", "MEDIAPROXY_QUEUE_URL",
            Custom(fn=_queue_url, text="`sqlite:///PATH` or `redis://HOST:PORT/DB`"),
            "sqlite:///var/queue.db", "the job queue (huey)", JOBS,
            default_doc=f"`{QUEUE_DB}` (SQLite, made absolute)", secret=True),
    Setting("library", "migrate_on_start", "MEDIAPROXY_MIGRATE_ON_START", BOOL, True,
            "apply the database migrations when a process starts", LIBRARY,
            computed=lambda got, env: got["database_url"].startswith("sqlite"),
            default_doc="on for SQLite, off otherwise"),
    Setting("library", "bucket", "MEDIAPROXY_LIBRARY_BUCKET", BUCKET, "library",
            "bucket (or folder of the local backend) of the originals and variants; never one the origin serves",
            LIBRARY),
    Setting("library", "upload_max_bytes", "MEDIAPROXY_UPLOAD_MAX_BYTES", Int(1024), 50 * MiB,
            "largest upload of the `/api/v1` API (direct and presigned) and of the `/v2` image service", LIBRARY),
    Setting("library", "media_max_bytes", "MEDIAPROXY_MEDIA_MAX_BYTES", Int(1024), 10 * 1000**2,
            "largest upload of the presigned `/media` API", LIBRARY),
    Setting("library", "allowed_types", "MEDIAPROXY_LIBRARY_TYPES", Types(), frozenset(LIBRARY_TYPES.split(",")),
            "types the `/api/v1` API takes, judged by the bytes", LIBRARY, default_doc=f"`{LIBRARY_TYPES}`"),
    Setting("library", "media_api_types", "MEDIAPROXY_MEDIA_API_TYPES", Types(),
            frozenset(MEDIA_API_TYPES.split(",")), "types the presigned `/media` API takes", LIBRARY,
            default_doc=f"`{MEDIA_API_TYPES}`"),
    Setting("library", "variants", "MEDIAPROXY_VARIANTS", Variants(), _variants({}, "MEDIAPROXY_VARIANTS"),
            "the variants made of each upload: a SIDE×SIDE box the WebP fits `inside` (aspect kept) or `cover`s "
            "(cropped square); 0 is full size; never enlarged", LIBRARY, default_doc=f"`{DEFAULT_VARIANTS}`"),
    Setting("library", "presign_min", "MEDIAPROXY_PRESIGN_MIN", Int(1), 1,
            "shortest expiry (seconds) of a presigned download", LIBRARY),
    Setting("library", "presign_max", "MEDIAPROXY_PRESIGN_MAX", Int(lambda got: got["presign_min"], 7 * 86400,
            bounds="`MEDIAPROXY_PRESIGN_MIN`..604800"), 86400,
            "longest expiry (seconds) of a presigned download", LIBRARY),
    Setting("library", "presign_default", "MEDIAPROXY_PRESIGN_DEFAULT",
            Custom(fn=_presign_default, text="integer ≥ 1 (held within the two above)", type="int"), 3600,
            "expiry (seconds) of a presigned download that asks for none", LIBRARY),
    Setting("library", "upload_url_expiry", "MEDIAPROXY_UPLOAD_URL_EXPIRY", Int(1, 7 * 86400), 900,
            "seconds an upload URL (presigned `/media`, `/api/v1` presigned upload) stays valid", LIBRARY),
    Setting("library", "public_base_url", "MEDIAPROXY_PUBLIC_BASE_URL",
            Custom(fn=_public_base_url, text="`http(s)://host[:port]`"), "",
            "base of the absolute URLs in answers (`https://media.example.com`)", LIBRARY,
            default_doc="the request's own scheme and host"),
    Setting("library", "api_prefix", "MEDIAPROXY_API_PREFIX",
            Custom(fn=_api_prefix, text="a path such as `/v2`"), "/v2",
            "where the `/v2` image service and its admin API are served; the service's own name for it, "
            "`API_PREFIX`, is read too (ours wins when both are set)", LIBRARY),
    Setting("library", "portal_path", "MEDIAPROXY_PORTAL_PATH",
            Custom(fn=_portal_path, text="a path such as `/admin`, outside the API's prefix"), "/admin",
            "where the admin portal's pages and cookie session are served (docs/portal.md)", LIBRARY),
    Setting("library", "uploads_per_client", "MEDIAPROXY_UPLOADS_PER_CLIENT", Int(1, 1024), 4,
            "uploads of one client (an organization's keys; for an upload URL, one address) whose bodies are still "
            "arriving, per worker: past it `429`", LIBRARY),
    Setting("library", "janitor_grace", "MEDIAPROXY_JANITOR_GRACE", Float(0.0), 86400.0,
            "seconds: `mediaproxy janitor` leaves alone incomplete uploads and unrecorded objects younger than this "
            "(it refuses one shorter than an upload or a job's output can be in flight)", LIBRARY),
    Setting("library", "job_retries", "MEDIAPROXY_JOB_RETRIES", Int(0, 100), 3,
            "retries of a job's unexpected failure", JOBS),
    Setting("library", "job_retry_delay", "MEDIAPROXY_JOB_RETRY_DELAY", Float(0.0, 3600.0), 1.0,
            "seconds before the first retry, doubling", JOBS),
    Setting("library", "job_retry_max_delay", "MEDIAPROXY_JOB_RETRY_MAX_DELAY", Float(0.0, 86400.0), 60.0,
            "the longest wait between two attempts", JOBS),
    Setting("library", "job_retry_budget", "MEDIAPROXY_JOB_RETRY_BUDGET", Float(0.0, 7 * 86400.0), 600.0,
            "seconds a job is retried while storage or the database is unavailable (a time, not a count)", JOBS),
    Setting("library", "job_lease", _lease, Float(0.2, 3600.0), 30.0,
            "seconds a job stays with a worker that stopped renewing its lease; then another runs it", JOBS),
    Setting("library", "job_heartbeat", "MEDIAPROXY_JOB_HEARTBEAT",
            Float(0.05, lambda got: got["job_lease"] / 2, bounds=f"0.05..half of `{_lease}`"), 5.0,
            "seconds between lease renewals, sweeps of expired leases and of uploads arrived in S3, and "
            "outbox relays", JOBS,
            computed=lambda got, env: min(5.0, got["job_lease"] / 3), default_doc="`5`, at most a third of the lease"),
    Setting("library", "job_test_delay", "MEDIAPROXY_JOB_TEST_DELAY", Float(0.0, 600.0), 0.0,
            "tests only: seconds a crop job waits between writing its output and committing it", JOBS),
    Setting("library", "worker_threads", "MEDIAPROXY_WORKER_THREADS", Int(1, 64), 2,
            "job threads of `mediaproxy worker`", JOBS),
)


def _section(section: str) -> tuple[Setting, ...]:
    return tuple(s for s in SETTINGS if s.section == section)


def _declared(section: str) -> Callable[[type], type]:
    """Make ``cls`` a frozen dataclass whose fields are the section's rows (then its own fields)."""

    def make(cls: type) -> type:
        own = inspect.get_annotations(cls)
        annotations = {s.attr: s.parse.type for s in _section(section)}
        for s in _section(section):
            setattr(cls, s.attr, s.default)
        cls.__annotations__ = {**annotations, **own}
        return dataclass(frozen=True, slots=True)(cls)

    return make


def _parse(section: str, env: Env) -> Got:
    got: Got = {}
    for s in _section(section):
        default = s.computed(got, env) if s.computed else s.default
        got[s.attr] = s.parse(env, s.env, default, got)
    return got


@_declared("server")
class ServerSettings:
    """gunicorn's knobs (gunicorn.conf.py applies them; gunicorn's own flags still win)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        return cls(**_parse("server", env))


@_declared("library")
class LibrarySettings:
    """The media library's section: records, jobs, uploads, variants, presigning."""

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v[0] for v in self.variants)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LibrarySettings:
        return cls(**_parse("library", env))


@_declared("")
class Settings:
    """Every setting: the rows of SETTINGS without a section, then gunicorn's and the library's."""

    server: ServerSettings = field(default_factory=ServerSettings)
    library: LibrarySettings = field(default_factory=LibrarySettings, compare=False)

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
        settings = cls(**_parse("", env), server=ServerSettings.from_env(env), library=LibrarySettings.from_env(env))
        if not settings.storage_is_s3:
            path = Path(settings.storage)
            if path.exists() and not path.is_dir():
                raise ConfigError(f"MEDIAPROXY_STORAGE={settings.storage!r}: exists and is not a directory")
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
        if self.mode in LIBRARY_MODES and not self.trusted_proxy_cidrs:
            out.append(
                "MEDIAPROXY_TRUSTED_PROXY_CIDRS is empty: admin logins are throttled by client address, and "
                "behind a proxy or load balancer every client shares the proxy's address (and its failed "
                "logins). Set it to the proxy's addresses.")
        return out

    def report(self, env: Mapping[str, str] | None = None) -> Iterator[tuple[Setting, object, bool]]:
        """Every setting with its value as shown (secrets masked) and whether ``env`` sets its variable."""
        env = os.environ if env is None else env
        for s in SETTINGS:
            value = getattr(getattr(self, s.section) if s.section else self, s.attr)
            yield s, _shown(s, value), s.env in env or (s.attr == "api_prefix" and "API_PREFIX" in env)

    def describe(self) -> dict[str, object]:
        """Settings for logs, with secrets masked: ``{attr: value, "server": {...}, "library": {...}}``."""
        out: dict[str, Any] = {}
        for s, value, _ in self.report({}):
            (out.setdefault(s.section, {}) if s.section else out)[s.attr] = value
        return {k: out[k] for k in [k for k in out if k not in ("server", "library")] + ["server", "library"]}


def _shown(s: Setting, value: object) -> object:
    if s.secret:
        return _mask_url(str(value)) if "://" in str(value) else ("***" if value else "")
    return s.parse.show(value)


def _mask_url(url: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    cred, _, host = rest.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in cred else url


# --- docs/settings.md


def _default_doc(s: Setting) -> str:
    if s.default_doc:
        return s.default_doc
    value = s.default
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if value in ("", ()):
        return "empty"
    if isinstance(value, int) and value >= MiB and value % MiB == 0:
        return f"`{value}` ({value // MiB} MiB)"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """docs/settings.md: every setting, grouped, from the declaration above."""
    out = [
        "# Settings",
        "",
        "<!-- Generated from mediaproxy/settings.py by `python -m mediaproxy.settings --markdown > docs/settings.md`;",
        "     edit the declaration there, not this file (tests/test_settings_docs.py checks it is current). -->",
        "",
        "Every setting is read once from the environment at start-up and validated before anything",
        "starts (gunicorn.conf.py, in the master, before it forks): an invalid value stops the server",
        "(exit status 2) with one line naming the variable and what it accepts. `mediaproxy check-config`",
        "prints the effective settings (secrets masked) and fails the same way.",
        "",
        "Read by others, not by mediaproxy's settings: boto3's own variables (`AWS_ACCESS_KEY_ID`,",
        "`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...: S3 credentials, region and",
        "endpoint; presigned URLs are signed with SigV4, so set `AWS_REGION` to the buckets' region),",
        "and `MEDIAPROXY_STATIC_BIND` (`scripts/serve` only: where it starts the static-assets host,",
        "default `127.0.0.1:8001`).",
    ]
    groups: dict[str, list[Setting]] = {}
    for s in SETTINGS:
        groups.setdefault(s.group, []).append(s)
    for group, rows in groups.items():
        out += ["", f"## {group}", "", "| variable | default | accepts | meaning |", "|---|---|---|---|"]
        for s in rows:
            out.append(f"| `{s.env}` | {_cell(_default_doc(s))} | {_cell(s.parse.accepts())} | {_cell(s.doc)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mediaproxy.settings", description="mediaproxy's settings")
    parser.add_argument("--markdown", action="store_true", help="print docs/settings.md")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
