"""External URL signatures: lowercase hex HMAC-SHA256 over the base64url text."""

from __future__ import annotations

import base64
import hashlib
import hmac


def encode_url(url: str) -> str:
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def signature(encoded: str, secret: str) -> str:
    return hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).hexdigest()


def sign_path(url: str, secret: str) -> str:
    """``{signature}/{encoded_url}`` for ``/external/``."""
    encoded = encode_url(url)
    return f"{signature(encoded, secret)}/{encoded}"


def verify(signature_hex: str, encoded: str, secret: str) -> bool:
    """Constant-time check of a signature against the encoded text."""
    return hmac.compare_digest(signature(encoded, secret).encode(), (signature_hex or "").encode())  # bytes: any text


def decode_url(encoded: str) -> str:
    """The target URL; raises ValueError for text that is not base64url UTF-8."""
    padded = encoded + "=" * (-len(encoded) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
