"""The local backend's signed URLs (S3 signs its own): HMAC over the method, bucket, key, expiry
and, for an upload URL with a declared size, the size."""

from __future__ import annotations

import hashlib
import hmac
import time

from ...errors import Forbidden
from ...hotpath import decimal


def _signature(method: str, bucket: str, key: str, expires_at: int, secret: str, size: str | None = None) -> str:
    msg = f"{method}\n{bucket}\n{key}\n{expires_at}" + (f"\n{size}" if size is not None else "")
    return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


def sign_query(method: str, bucket: str, key: str, expires: int, secret: str, size: int | None = None) -> str:
    """The query of a URL of the local backend; with ``size``, an upload URL for exactly that many
    bytes (the length is signed, as S3 signs Content-Length)."""
    at = int(time.time()) + expires
    sized = str(size) if size is not None else None
    return (f"expires={at}" + (f"&size={sized}" if sized else "")
            + f"&signature={_signature(method, bucket, key, at, secret, sized)}")


def check_signature(method: str, bucket: str, key: str, expires: str | None, signature: str | None,
                    secret: str, size: str | None = None) -> None:
    """403 for a tampered or expired URL (the signature is checked first, in constant time)."""
    if not expires or not decimal(expires) or not signature or (size is not None and not decimal(size)):
        raise Forbidden("missing or malformed signature")
    # as bytes: compare_digest raises TypeError on a str with a non-ASCII character
    if not hmac.compare_digest(_signature(method, bucket, key, int(expires), secret, size).encode(),
                               signature.encode()):
        raise Forbidden("invalid signature")
    if int(expires) < time.time():
        raise Forbidden("the URL has expired")
