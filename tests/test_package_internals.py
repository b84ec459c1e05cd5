"""Every private internal of another package that mediaproxy still relies on, checked on the
installed package: the day an upgrade renames or removes one, this fails naming the package,
its installed version and what the name is used for (the code that uses it would otherwise
break at run time, or silently).

An internal is kept only where no public API does the job (the reason and, where it is about
cost, the figure are in the using code's docstring). A name used from a base class the code
subclasses counts too when the package does not document it as an extension point.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
from pathlib import Path

import pytest

# (package, module, object, attribute, kind, what mediaproxy uses it for)
# kind: "attr" — the object has the attribute; "self" — the class's code (or a base's) assigns
# ``self.<attribute>`` (an instance attribute, not visible on the class).
_ERROR_PAGE = "worker/errors.py: a parser error → the status of its error page"
INTERNALS: list[tuple[str, str, str, str, str, str]] = [
    # gunicorn: mediaproxy/worker/ subclasses the gthread worker (one part per module, joined in
    # thread_worker.py) and its connection, reader and response; none of these is a documented
    # extension point.
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "set_accept_enabled", "attr",
     "worker/thread_worker.py: stop accepting while every thread is busy"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "enqueue_req", "attr",
     "worker/thread_worker.py: count busy threads as requests are queued"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "finish_request", "attr",
     "worker/handoff.py, headers.py: hand a response's rest to the event loop, keep-alive or linger after it"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "murder_pending", "attr",
     "worker/thread_worker.py: the periodic sweep, extended with every part's deadlines"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "on_client_socket_readable", "attr",
     "worker/headers.py: read a kept-alive connection's next headers on the event loop"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "accept", "attr",
     "worker/headers.py: read a new connection's headers on the event loop"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "handle", "attr",
     "worker/headers.py: start the thread's parser from the bytes the event loop read"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "_keepalive_after", "attr",
     "worker/bodies.py: no keep-alive after a body that fell under its minimum rate"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "keepalived_conns", "self",
     "worker/headers.py: take a kept-alive connection off gunicorn's keep-alive list"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "poller", "self",
     "worker/: register header, body, send and linger events on the worker's selector"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "nr_conns", "self",
     "worker/: the open-connection count gunicorn's accept limit uses"),
    ("gunicorn", "gunicorn.workers.gthread", "TConn", "init", "attr",
     "worker/headers.py: build the connection's parser for the headers the event loop read"),
    ("gunicorn", "gunicorn.workers.gthread", "TConn", "data_ready", "self",
     "worker/headers.py: a connection whose bytes are already read goes straight to a thread"),
    ("gunicorn", "gunicorn.workers.gthread", "ThreadWorker", "handle_request", "attr",
     "worker/answers.py: a memory-tier hit runs the thread's own handle_request on the event loop"),
    ("gunicorn", "gunicorn.workers.gthread", "TConn", "initialized", "self",
     "worker/answers.py: a connection whose parser the event loop built (no blocking socket)"),
    ("gunicorn", "gunicorn.workers.gthread", "TConn", "parser", "self",
     "worker/answers.py: the connection's parser reads a hit's request on the event loop"),
    ("gunicorn", "gunicorn.http", "", "get_parser", "attr",
     "worker/answers.py: the parser TConn.init() builds, built on the event loop"),
    ("gunicorn", "gunicorn.util", "", "unquote_to_wsgi_str", "attr",
     "worker/answers.py: PATH_INFO as gunicorn makes it, to check the quick look at a request line"),
    ("gunicorn", "gunicorn.http.message", "Request", "fragment", "self",
     "worker/answers.py: a parsed request with a fragment is left to a thread"),
    ("gunicorn", "gunicorn.http.message", "Request", "query", "self",
     "worker/answers.py: the parsed query matches the quick look at the request line"),
    ("gunicorn", "gunicorn.http.unreader", "SocketUnreader", "chunk", "attr",
     "worker/bodies.py: the paced reader of a body a thread reads"),
    ("gunicorn", "gunicorn.http.unreader", "SocketUnreader", "take_buffered", "attr",
     "worker/headers.py: a pipelined request already buffered goes through the event loop"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "_omits_body", "self",
     "worker/handoff.py: no body is handed off for HEAD, 1xx, 204 and 304"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "response_length", "self",
     "worker/handoff.py: only a response of known length is handed to the event loop"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "headers_sent", "self",
     "worker/handoff.py: a response whose headers are out is not handed off"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "chunked", "self",
     "worker/handoff.py: a chunked response is not handed off"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "upgrade", "self",
     "worker/handoff.py: an upgraded connection is not handed off"),
    ("gunicorn", "gunicorn.http.unreader", "SocketUnreader", "buf", "self",
     "worker/bodies.py: the body bytes the parser already holds (read by the event loop)"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "send_headers", "attr",
     "worker/handoff.py: headers sent by the thread, the body by the event loop"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "process_headers", "attr",
     "worker/handoff.py: CheckedHeaders remembers the fields it checked (a hit's ten, ~1.5 µs each)"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "headers", "self",
     "worker/handoff.py: the checked fields CheckedHeaders keeps, and the header block of a one-send body"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "default_headers", "attr",
     "worker/handoff.py: the status line and gunicorn's own fields of a body sent with its headers"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "sent", "self",
     "worker/handoff.py: the body length the access log reads, for a body sent by the worker"),
    ("gunicorn", "gunicorn.config", "Config", "settings", "self",
     "worker/thread_worker.py: freeze_config copies each setting's value onto the worker's Config"),
    ("gunicorn", "gunicorn.workers.gthread", "TConn", "set_timeout", "attr",
     "worker/headers.py: a kept-alive connection's keep-alive deadline, as gunicorn sets it"),
    ("gunicorn", "gunicorn.http.wsgi", "Response", "force_close", "attr",
     "worker/bodies.py: Connection: close when the response starts before the body was read"),
    ("gunicorn", "gunicorn.util", "", "write_nonblock", "attr",
     "worker/errors.py: error pages written without blocking the worker"),
    ("gunicorn", "gunicorn.util", "", "has_fileno", "attr",
     "worker/handoff.py: a file body is handed to the event loop for sendfile"),
    ("gunicorn", "gunicorn.http.errors", "", "InvalidResponseHeader", "attr", _ERROR_PAGE),
    ("gunicorn", "gunicorn.http.errors", "", "InvalidResponseHeaderName", "attr", _ERROR_PAGE),
    ("gunicorn", "gunicorn.http.errors", "", "LimitRequestLine", "attr", _ERROR_PAGE),
    ("gunicorn", "gunicorn.http.errors", "", "LimitRequestHeaders", "attr", _ERROR_PAGE),
    ("gunicorn", "gunicorn.http.errors", "", "ExpectationFailed", "attr", _ERROR_PAGE),
    ("gunicorn", "gunicorn.http.errors", "", "UnsupportedTransferCoding", "attr", _ERROR_PAGE),
    ("gunicorn", "gunicorn.http.errors", "", "ConfigurationProblem", "attr", _ERROR_PAGE),
    ("gunicorn", "gunicorn.http.errors", "", "ForbiddenProxyRequest", "attr", _ERROR_PAGE),
    ("gunicorn", "gunicorn.http.errors", "", "ParseException", "attr", _ERROR_PAGE),
    # prometheus_client: a histogram has no public way to add a count to one bucket
    ("prometheus-client", "prometheus_client.metrics", "Histogram", "_buckets", "self",
     "metrics.py flush(): the latency histogram's tallied bucket counts, once a second"),
    ("prometheus-client", "prometheus_client.metrics", "Histogram", "_sum", "self",
     "metrics.py flush(): the latency histogram's tallied sum, once a second"),
]

# What the code calls with keyword arguments that are public but recent (a floor check, not an internal).
PUBLIC_FLOORS: list[tuple[str, str, str, str, str, str]] = [
    ("diskcache", "diskcache", "Cache", "evict", "attr", "cache.py: purge an object's entries by tag"),
    ("diskcache", "diskcache", "Cache", "volume", "attr", "metrics.py: the cache size gauge"),
    ("urllib3", "urllib3", "HTTPConnectionPool", "ConnectionCls", "attr",
     "netguard.py: guarded connections (watched by the fetch's deadline, peer checked)"),
]


def _missing(module: str, obj: str, attribute: str, kind: str) -> bool:
    target = importlib.import_module(module)
    if obj:
        target = getattr(target, obj, None)
        if target is None:
            return True
    if kind == "attr":
        return not hasattr(target, attribute)
    if kind == "self":  # assigned in the class's code or a base class's
        assigned = re.compile(rf"\bself\.{re.escape(attribute)}\s*[:=]")
        for cls in inspect.getmro(target):
            try:
                if assigned.search(inspect.getsource(cls)):
                    return False
            except (OSError, TypeError):  # builtins
                continue
        return True
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("package", "module", "obj", "attribute", "kind", "used_for"),
    INTERNALS + PUBLIC_FLOORS,
    ids=[f"{r[0]}:{r[2] + '.' if r[2] else ''}{r[3]}" for r in INTERNALS + PUBLIC_FLOORS],
)
def test_relied_on_name_exists(package, module, obj, attribute, kind, used_for):
    version = importlib.metadata.version(package)
    where = f"{module}.{obj + '.' if obj else ''}{attribute}"
    assert not _missing(module, obj, attribute, kind), (
        f"{package} {version} has no {where}, which mediaproxy uses ({used_for}): "
        f"pin {package} to a release that has it, or replace the use"
    )


def private_names_of_others() -> dict[str, set[str]]:
    """Private names (``x._name``) mediaproxy's code reads that mediaproxy does not define itself,
    and private names reached through ``super()``: {name: files}."""
    root = Path(__file__).resolve().parent.parent / "mediaproxy"
    defined: set[str] = set()
    used: dict[str, set[str]] = {}
    inherited: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
            elif isinstance(node, ast.alias):
                defined.add(node.asname or node.name.split(".")[-1])
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            if isinstance(node.ctx, ast.Store) and getattr(node.value, "id", None) in ("self", "cls"):
                defined.add(node.attr)  # (assigning another package's private name is using it)
            elif isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "super":
                inherited.setdefault(node.attr, set()).add(rel)
            else:
                used.setdefault(node.attr, set()).add(rel)
    found = {name: files for name, files in used.items() if name not in defined}
    for name, files in inherited.items():
        found.setdefault(name, set()).update(files)
    return found


def test_every_private_name_used_is_listed():
    """A private name of another package used in mediaproxy's code must be in INTERNALS (and so
    checked above): a new use fails here until it is listed, with its reason."""
    listed = {r[3] for r in INTERNALS}
    unlisted = {name: sorted(files) for name, files in private_names_of_others().items() if name not in listed}
    assert not unlisted, f"private names of other packages used but not listed in INTERNALS: {unlisted}"


def test_the_scan_finds_a_private_name():
    """The scan above is not vacuous: today it finds the internals listed."""
    assert {"_buckets", "_sum", "_omits_body", "_keepalive_after"} <= set(private_names_of_others())
