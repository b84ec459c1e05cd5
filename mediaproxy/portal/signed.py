"""Short-lived signed image URLs for the portal: ``{portal}/media/{id}?w=&h=&fit=&e=&s=``.

An admin sees private images too, but an ``<img>`` cannot send the admin's bearer token, and a
private image must never get a public URL. The admin API signs a URL for one image, one size and
one fit, valid until ``e`` (a Unix time): HMAC-SHA256 under a key derived from
``MEDIAPROXY_SECRET_KEY`` for this use only. The expiry is rounded to a window so that a page
of thumbnails asked again within it gets the same URLs (the browser's cache serves them), and
lasts ``WINDOW`` to ``2 × WINDOW`` seconds: a copied URL stops working soon after.
"""

from __future__ import annotations

import hashlib
import hmac
import time

WINDOW = 600


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"mediaproxy portal signed media", hashlib.sha256).digest()


def _mac(secret: str, image_id: str, w: int, h: int, fit: str, expires: int) -> str:
    msg = f"{image_id}\n{w}\n{h}\n{fit}\n{expires}".encode()
    return hmac.new(_key(secret), msg, hashlib.sha256).hexdigest()[:32]


def expiry(now: float | None = None) -> int:
    t = int(time.time() if now is None else now)
    return (t // WINDOW + 2) * WINDOW


def sign(portal: str, secret: str, image_id: str, w: int, h: int, fit: str, expires: int) -> str:
    return f"{portal}/media/{image_id}?w={w}&h={h}&fit={fit}&e={expires}&s={_mac(secret, image_id, w, h, fit, expires)}"


def valid(secret: str, image_id: str, w: int, h: int, fit: str, expires: int, mac: str,
          now: float | None = None) -> bool:
    if expires <= (time.time() if now is None else now):
        return False
    return hmac.compare_digest(_mac(secret, image_id, w, h, fit, expires).encode(), (mac or "").encode())
