"""API keys and organizations.

A key is ``mpk_{prefix}_{secret}``: 12 hex characters of prefix (the lookup
index) and 256 bits of secret. Only the prefix and the SHA-256 of the whole
key are stored; a presented key is found by its prefix and compared to the
digest in constant time. (A fast hash is right here: the secret has 256 bits
of entropy, so nothing is gained by slowing down a guess; argon2 is for
passwords, which have little.)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from datetime import timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, case, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, joinedload

from ..errors import BadRequest, Unauthorized
from ..hotpath import decimal
from . import unit
from .models import Admin, AdminSession, ApiKey, LoginThrottle, Organization, RefreshToken, now

SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})")
_KEY = re.compile(r"mpk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_slug(slug: str) -> str:
    if not SLUG.fullmatch(slug or ""):
        raise BadRequest("organization slug must be 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    return slug


def organization(session: Session, slug: str, create: bool = False) -> Organization | None:
    org = session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None and create:
        org = Organization(slug=check_slug(slug), name=slug)
        session.add(org)
        session.flush()
    return org


def create_key(session: Session, slug: str, name: str = "") -> str:
    """A new key for the organization (created if needed); the only time the key is seen whole."""
    org = organization(session, check_slug(slug), create=True)
    prefix = secrets.token_hex(6)
    key = f"mpk_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(org_id=org.id, prefix=prefix, digest=digest(key), name=name))
    session.flush()
    return key


def list_keys(session: Session, slug: str | None = None) -> list[tuple[ApiKey, Organization]]:
    """Every key (of one organization with ``slug``), oldest first: what is stored, never a secret."""
    q = select(ApiKey, Organization).join(Organization, Organization.id == ApiKey.org_id)
    if slug is not None:
        q = q.where(Organization.slug == slug)
    return [(k, o) for k, o in session.execute(q.order_by(ApiKey.created_at, ApiKey.id))]


def key_prefix(text: str) -> str | None:
    """The lookup prefix named by ``text``: the prefix itself, ``mpk_PREFIX`` or a whole key."""
    text = text.strip()
    m = re.fullmatch(r"(?:mpk_)?([0-9a-f]{12})(?:_[A-Za-z0-9_-]*)?", text)
    return m.group(1) if m else None


def revoke_key(session: Session, prefix: str) -> ApiKey | None:
    """Revoke the key with this prefix (refused from the next request on); None if there is none.
    A key revoked before keeps its first revocation time."""
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is not None and row.revoked_at is None:
        row.revoked_at = now()
        session.flush()
    return row


# the key and its organization in one query (every library request asks for both); built once, as
# the list's statements are: building it per request, with its loader option, cost more than the lookup
_KEY_BY_PREFIX = select(ApiKey).options(joinedload(ApiKey.org)).where(ApiKey.prefix == bindparam("prefix"))


def authenticate(session: Session, key: str | None) -> Organization:
    """The organization of a valid, unrevoked key; ``Unauthorized`` otherwise."""
    if not key:
        raise Unauthorized("missing API key (X-API-Key or Authorization: Bearer)")
    m = _KEY.fullmatch(key.strip())
    row = session.scalar(_KEY_BY_PREFIX, {"prefix": m.group(1)}) if m else None
    # Compare even when nothing matched, so a wrong prefix costs the same as a wrong secret.
    ok = hmac.compare_digest(row.digest if row is not None else "0" * 64, digest(key.strip()))
    if row is None or not ok or row.revoked_at is not None:
        raise Unauthorized("invalid API key")
    return row.org


# -- the admin API's admins: argon2id passwords, HS256 access JWTs, rotating refresh tokens --------------
#
# A login starts a session (``AdminSession``; its refresh tokens are one family). An access token is
# a JWT (HS256 with a key derived from MEDIAPROXY_SECRET_KEY) that lives ACCESS_TTL seconds and
# carries its session's id and the admin's ``token_version``. Every admin request looks the session
# up (one primary-key read joined to the admin's row): a revoked session (logout) refuses its access
# tokens on the next request, and a password change or a reused refresh token bumps the version,
# which ends every access token at once. Only HS256 is accepted (``alg: none`` and every other
# algorithm are refused by PyJWT's ``algorithms=``); ``exp`` is required and checked.
# A refresh token is opaque (256 bits, stored as SHA-256), single use: refreshing rotates it; a used
# one presented again means it was stolen, so its whole family (that session) is revoked.

ACCESS_TTL = 900
REFRESH_TTL = 30 * 86400
PASSWORD_MIN = 10
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")
_SESSION = re.compile(r"[0-9a-f]{32}")


_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash stored for an admin's password."""
    return _HASHER.hash(password)


def check_email(email: str | None) -> str:
    email = (email or "").strip().lower()
    if not _EMAIL.fullmatch(email):
        raise BadRequest("email must be an address")
    return email


def check_password(password: str | None) -> str:
    if not isinstance(password, str) or len(password) < PASSWORD_MIN or len(password) > 1024:
        raise BadRequest(f"the password must be {PASSWORD_MIN}..1024 characters")
    return password


def create_admin(session: Session, email: str, password: str, name: str = ""):
    email = check_email(email)
    if session.scalar(select(Admin).where(Admin.email == email)) is not None:
        raise BadRequest(f"an admin {email} exists")
    admin = Admin(email=email, name=name, password_hash=hash_password(check_password(password)), token_version=0)
    session.add(admin)
    session.flush()
    return admin


_DUMMY_HASH: list[str] = []


def verify_password(admin, password: str) -> bool:
    """Constant work whether or not the account exists (a dummy hash is checked for none)."""
    h = _HASHER
    if admin is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(h.hash(secrets.token_hex(16)))
        target = _DUMMY_HASH[0]
    else:
        target = admin.password_hash
    try:
        ok = h.verify(target, password)
    except (VerificationError, InvalidHashError):
        ok = False
    return ok and admin is not None


def jwt_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"mediaproxy admin access token", hashlib.sha256).digest()


def access_token(admin, session_id: str, secret: str) -> str:
    t = int(time.time())
    claims = {"sub": str(admin.id), "sid": session_id, "ver": admin.token_version, "typ": "access", "iat": t,
              "exp": t + ACCESS_TTL}
    return jwt.encode(claims, jwt_key(secret), algorithm="HS256")


@functools.cache
def _admin_of_session():
    """The admin's row and its session's end, by primary keys: built once, as building the
    statement costs as much as running it (docs/library.md § Admin)."""
    return (select(Admin, AdminSession.revoked_at).join(AdminSession, AdminSession.admin_id == Admin.id)
            .where(Admin.id == bindparam("admin_id"), AdminSession.id == bindparam("session_id")))


def admin_from_token(session: Session, token: str | None, secret: str):
    """(the admin, the session id) of a valid access token whose session is still open;
    ``Unauthorized`` for anything else."""
    if not token:
        raise Unauthorized("missing Authorization: Bearer access token")
    try:
        claims = jwt.decode(token, jwt_key(secret), algorithms=["HS256"],
                            options={"require": ["exp", "iat", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the access token has expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid access token") from None
    sid = claims.get("sid")
    if (claims.get("typ") != "access" or not decimal(str(claims.get("sub", ""))) or len(str(claims["sub"])) > 18
            or not isinstance(sid, str) or not _SESSION.fullmatch(sid)):
        raise Unauthorized("invalid access token")
    row = session.execute(_admin_of_session(), {"admin_id": int(claims["sub"]), "session_id": sid}).first()
    if row is None or row[1] is not None or row[0].token_version != claims.get("ver"):
        raise Unauthorized("the access token has been revoked")
    return row[0], sid


def issue_refresh(session: Session, admin, family: str | None = None) -> tuple[str, str]:
    """(a new refresh token, its session id): of the session ``family``, or of a new one."""
    if family is None:
        family = secrets.token_hex(16)
        session.add(AdminSession(id=family, admin_id=admin.id))
    token = secrets.token_urlsafe(32)
    session.add(RefreshToken(admin_id=admin.id, family=family, digest=digest(token),
                             expires_at=now() + timedelta(seconds=REFRESH_TTL)))
    session.flush()
    return token, family


def rotate_refresh(session: Session, token: str | None):
    """(admin, a new refresh token, its session id) for a valid one, which is used up; a reused
    token revokes its whole session and every access token of the admin."""
    row = session.scalar(select(RefreshToken).where(RefreshToken.digest == digest(token or ""))) if token else None
    if row is None or row.revoked_at is not None or row.expires_at <= now():
        raise Unauthorized("invalid refresh token")
    admin = session.get(Admin, row.admin_id)
    if row.used_at is not None:
        with unit.beside(session) as own:  # recorded though the request is refused (and rolled back)
            revoke_family(own, row.family)
            own.execute(update(Admin).where(Admin.id == admin.id).values(token_version=Admin.token_version + 1))
        raise Unauthorized("the refresh token was used before: its session is revoked")
    live = session.scalar(select(AdminSession.id).where(AdminSession.id == row.family,
                                                        AdminSession.revoked_at.is_(None)))
    if live is None:
        raise Unauthorized("invalid refresh token")
    # compare-and-set: of two concurrent refreshes with one token, only one wins
    won = session.execute(update(RefreshToken).where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
                          .values(used_at=now())).rowcount
    if not won:
        raise Unauthorized("invalid refresh token")
    refresh, family = issue_refresh(session, admin, row.family)
    return admin, refresh, family


def revoke_family(session: Session, family: str) -> None:
    """End one session: its refresh tokens and (at their next request) its access tokens."""
    t = now()
    session.execute(update(RefreshToken).where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=t))
    session.execute(update(AdminSession).where(AdminSession.id == family, AdminSession.revoked_at.is_(None))
                    .values(revoked_at=t))


def revoke_refresh(session: Session, admin, token: str | None) -> None:
    """End the session of one of the admin's refresh tokens (another admin's token: nothing)."""
    row = session.scalar(select(RefreshToken).where(RefreshToken.digest == digest(token or ""),
                                                    RefreshToken.admin_id == admin.id)) if token else None
    if row is not None:
        revoke_family(session, row.family)


def end_every_session(session: Session, admin) -> None:
    """Every session of the admin: all refresh tokens and all access tokens, at once."""
    t = now()
    session.execute(update(RefreshToken).where(RefreshToken.admin_id == admin.id, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=t))
    session.execute(update(AdminSession).where(AdminSession.admin_id == admin.id, AdminSession.revoked_at.is_(None))
                    .values(revoked_at=t))
    admin.token_version += 1


# -- failed logins -----------------------------------------------------------------------------------
#
# Slow down the attacker, not the owner. A login attempt is judged by counters of failures:
#
# - with a device token (handed out by an earlier successful login of that account, sent back as
#   ``deviceToken`` or the device cookie): by that device's own counter only. Nobody else's
#   failures, from any address, ever refuse the owner's right password from a device that has
#   logged in before;
# - without one: by its (account, address) pair (LOGIN_FREE_PAIR free failures) and its address
#   (LOGIN_FREE_ADDR, whatever the accounts: many users may share one address).
#
# A counter past its free failures waits 2^(n - free) seconds (at most LOGIN_MAX_WAIT) between
# attempts, answered 429 with Retry-After before the password is looked at. Every attempt is
# counted *before* the password is verified, by one atomic statement per counter, and forgiven on
# success: parallel guesses cannot get past a limit between the check and the count. The address is
# the client's as the trusted-proxy settings say (``MEDIAPROXY_TRUSTED_PROXY_CIDRS``;
# clientip.client_address), an IPv6 address taken by its /64 (what one subscriber gets).

LOGIN_FREE_PAIR = 5  # failures of one account from one address (or one device) before it slows down
LOGIN_FREE_ADDR = 30  # failures from one address, whatever the accounts (many users may share one)
LOGIN_FORGET = 3600  # a counter untouched this long starts again
LOGIN_MAX_WAIT = 900
DEVICE_COOKIE = "mediaproxy_admin_device"


def throttle_address(address) -> str:
    """The address a counter is kept for: an IPv4 address whole, an IPv6 one by its /64 (a
    subscriber rotating through its own /64 stays one address)."""
    if address is None:
        return "unknown"
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _account(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:32]  # bounded length, whatever the email


def throttle_keys(email: str, address: str, device: str | None = None) -> list[str]:
    """The counters a login attempt is judged by: its device's (``device``: the nonce of a valid
    device token for this account), or its (account, address) pair and its address."""
    if device:
        return [f"device:{hashlib.sha256(device.encode()).hexdigest()[:32]}"]
    return [f"pair:{_account(email)}:{address}", f"addr:{address}"]


def _device_mac(admin_id: int, nonce: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"mediaproxy admin device {admin_id} {nonce}".encode(),
                    hashlib.sha256).hexdigest()[:32]


def device_token(admin, secret: str) -> str:
    """A token naming this browser or client as one the admin has logged in from."""
    nonce = secrets.token_urlsafe(18)
    return f"{admin.id}.{nonce}.{_device_mac(admin.id, nonce, secret)}"


def device_of(token: str | None, admin, secret: str) -> str | None:
    """The device nonce of ``token`` if it is a valid device token of ``admin``, else None."""
    if not token or admin is None or len(token) > 200:
        return None
    admin_id, _, rest = token.partition(".")
    nonce, _, mac = rest.partition(".")
    # compared as bytes: compare_digest refuses (TypeError) a str with a non-ASCII character
    if admin_id != str(admin.id) or not nonce or not hmac.compare_digest(
            mac.encode(), _device_mac(admin.id, nonce, secret).encode()):
        return None
    return nonce


def _free(key: str) -> int:
    return LOGIN_FREE_ADDR if key.startswith("addr:") else LOGIN_FREE_PAIR


def throttle_reserve(session: Session, keys: list[str]) -> int:
    """Count this attempt as a failure on every key, atomically, unless one of them is waiting:
    then count nothing and answer the seconds to wait (0: counted, go on and verify). A counter that
    reaches its free failures starts waiting at once, so a parallel attempt is refused before this
    one's password is even verified. A unit of work of its own, committed before this returns (a
    parallel attempt must see the count), whatever becomes of the request."""
    with unit.beside(session) as own:
        return _reserve(own, keys)


def _reserve(session: Session, keys: list[str]) -> int:
    t = now()
    table = LoginThrottle.__table__
    wait = 0
    counted = []
    for k in keys:
        free = _free(k)
        ins = _insert(session)(table)
        # The counter after this attempt: 1 when it was forgotten, else one more.
        n = case((table.c.updated_at < t - timedelta(seconds=LOGIN_FORGET), 1), else_=table.c.failures + 1)
        waits = {m: t + timedelta(seconds=min(2 ** (m - free), LOGIN_MAX_WAIT)) for m in range(free, free + 11)}
        locked = case(*((n == m, u) for m, u in waits.items()), else_=t + timedelta(seconds=LOGIN_MAX_WAIT))
        stmt = ins.values(key=k, failures=1, updated_at=t,
                          locked_until=None).on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"failures": n, "updated_at": t, "locked_until": case((n >= free, locked), else_=None)},
            where=or_(table.c.locked_until.is_(None), table.c.locked_until <= t),
        ).returning(table.c.failures)
        if session.execute(stmt).first() is None:  # waiting: the update did not apply
            until = session.scalar(select(table.c.locked_until).where(table.c.key == k))
            wait = int((until - t).total_seconds()) + 1 if until is not None else 1
            break
        counted.append(k)
    if wait:
        for k in counted:  # refused: this attempt was not one, take it back
            _forgive(session, k)
    return wait


def _insert(session: Session):
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _forgive(session: Session, key: str) -> None:
    """Take back one counted attempt; a counter back under its free failures stops waiting."""
    table = LoginThrottle.__table__
    session.execute(update(table).where(table.c.key == key, table.c.failures > 0).values(
        failures=table.c.failures - 1,
        locked_until=case((table.c.failures - 1 >= _free(key), table.c.locked_until), else_=None)))


def throttle_success(session: Session, keys: list[str]) -> None:
    """The attempt was the right password: its pair or device starts again (deleted); its address
    only gets this attempt back (an attacker with an account of their own cannot reset an
    address's count by logging in)."""
    for k in keys:
        if k.startswith("addr:"):
            _forgive(session, k)
        else:
            session.execute(delete(LoginThrottle).where(LoginThrottle.key == k))
