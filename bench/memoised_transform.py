"""mediaproxy's WSGI application with ``pipeline.transform`` answering from memory after its first
call for a (source size, spec): ``bench/miss.py --overhead --stub`` serves it, so that what a miss
costs besides the transform (parsing, routing, the storage read, the cache's bookkeeping, headers,
metrics, the server) is measured alone, over HTTP and in process.

Served as ``memoised_transform:app`` with bench/ on the path; imported by the in-process side before
``mediaproxy.wsgi``."""

from mediaproxy.media import pipeline

_transform = pipeline.transform
_done: dict = {}


def transform(data, spec, limits):
    key = (len(data), spec)
    out = _done.get(key)
    if out is None:
        out = _done[key] = _transform(data, spec, limits)
    return out


pipeline.transform = transform

from mediaproxy.wsgi import app  # noqa: E402 - after the transform is replaced

__all__ = ["app"]
