"""What the library's dialects share: the session-per-request middleware, which also enforces
each resource's declared authentication, JSON in and out, and the streaming multipart reader."""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import falcon
import msgspec
import orjson
from falcon.uri import parse_query_string
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget, ValueTarget
from streaming_form_data.validators import MaxSizeValidator, ValidationError

from ...errors import BadRequest, MediaError, TooLarge, TooManyRequests
from ...http import body_in_memory, close_connection, small_body_max
from .. import auth, unit
from ..models import Organization
from ..services import Library, Upload

JSON_MAX = 1024 * 1024  # a JSON body larger than this is refused (413)
FIELD_MAX = 64 * 1024  # one form field other than the file
DRAIN_MAX = 2 * 1024 * 1024  # bytes read and dropped after a refused upload, so the client sees the answer
CHUNK = 256 * 1024  # read from the socket and handed to the parser at a time
# Parts of one form, all names together (the file, the fields, repeated ones, unknown ones): each
# costs the parser time whatever its size (50,000 empty parts in 5 MiB: ~40 s of CPU)
FORM_PARTS_MAX = 128


# Who may call a responder. Each library resource declares it (``auth``: one level for all its
# responders, or one per method; HEAD follows GET), and LibraryMiddleware enforces it before the
# responder runs: a responder never authenticates by hand, and a route cannot forget to.
PUBLIC = "public"  # anyone: health, admin login and refresh, the public image bytes and URLs
TOKEN = "token"  # a credential in the URL, checked by the responder: a share token, a signed URL
KEY = "key"  # an API key (req.context.org)
KEY_USER = "key+user"  # an API key and the end user, X-User-Id (req.context.org, req.context.user)
ADMIN = "admin"  # an admin's access token (req.context.admin, req.context.admin_session)
LEVELS = (PUBLIC, TOKEN, KEY, KEY_USER, ADMIN)


def requirement(resource: object, method: str) -> str | None:
    """The level the resource declares for ``method``; None when it has no responder for it (Falcon
    answers 405 or OPTIONS itself, as before any authentication)."""
    if getattr(resource, f"on_{method.lower()}", None) is None:
        return None
    declared = getattr(resource, "auth", None)
    if isinstance(declared, dict):
        declared = declared.get(method, declared.get("GET") if method == "HEAD" else None)
    if declared not in LEVELS:
        raise TypeError(f"{type(resource).__name__} declares no authentication for {method}")
    return declared


class LibraryMiddleware:
    """One database session per request of a library resource: committed when the responder
    succeeds, rolled back otherwise, always closed. The only place sessions are opened for HTTP,
    and the one place a resource's declared authentication (``requirement``) is enforced.
    A commit that fails answers 500 (503 with Retry-After when the database is unreachable: see
    build.database_unavailable) with nothing of the success the responder had built."""

    def __init__(self, lib: Library):
        self.lib = lib

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict) -> None:
        if getattr(resource, "library", None) is None:
            return
        req.context.json_errors = getattr(resource, "json_errors", True)
        req.context.db = self.lib.db.session()
        need = requirement(resource, req.method)
        if need in (KEY, KEY_USER):
            req.context.org = resource.authenticate(req)
            if need == KEY_USER:
                req.context.user = resource.end_user(req)
        elif need == ADMIN:
            scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
            req.context.admin, req.context.admin_session = auth.admin_from_token(
                req.context.db, token.strip() if scheme.lower() == "bearer" else None,
                self.lib.ctx.settings.secret_key)
        optional_user = getattr(resource, "optional_user", None)  # not every library resource is a Resource
        if need in (PUBLIC, TOKEN, KEY) and optional_user is not None:
            optional_user(req)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        s = req.context.get("db")
        if s is None:
            return
        req.context.db = None
        try:
            if req_succeeded:
                try:
                    unit.commit(s)
                except Exception:
                    _drop_answer(resp)  # the error handler writes the 500 on a clean response
                    raise
            else:
                unit.rollback(s)
        finally:
            s.close()


# what describes the success a responder built; a commit that then fails must not send it
_REPRESENTATION = ("Location", "Content-Location", "ETag", "Last-Modified", "Content-Disposition", "Content-Range",
                   "Accept-Ranges", "Expires", "Content-Encoding", "Vary")


def _drop_answer(resp: falcon.Response) -> None:
    for name in _REPRESENTATION:
        resp.delete_header(name)
    stream, resp.stream = resp.stream, None
    close = getattr(stream, "close", None)
    if close is not None:
        close()


class Resource:
    json_errors = True
    auth: str | dict[str, str] = KEY
    bearer_keys = True  # the key may come as Authorization: Bearer KEY too (the /api/v1 and /media APIs)

    def __init__(self, lib: Library):
        self.library = lib

    def authenticate(self, req: falcon.Request) -> Organization:
        """The organization of the request's API key; 401 without a valid one."""
        key = req.get_header("X-API-Key")
        if key is None and self.bearer_keys:
            authz = req.get_header("Authorization") or ""
            scheme, _, token = authz.partition(" ")
            if scheme.lower() == "bearer":
                key = token.strip()
        return auth.authenticate(req.context.db, key)

    def end_user(self, req: falcon.Request) -> str:
        """The end user of a ``KEY_USER`` resource (its dialect's X-User-Id rules)."""
        raise NotImplementedError

    def optional_user(self, req: falcon.Request) -> None:
        """Where the end user is optional, an X-User-Id that is given is checked all the same (400
        when it breaks its dialect's rules), whether or not the responder comes to need it."""

    def org(self, req: falcon.Request) -> Organization:
        """The request's organization: authenticated by the middleware for a ``KEY`` responder,
        here for a public one that takes a key optionally (``GET /v2/images/{id}?info``)."""
        org = req.context.get("org")
        if org is None:
            org = req.context.org = self.authenticate(req)
        return org

    def base(self, req: falcon.Request) -> str:
        return self.library.settings.public_base_url or req.prefix


def body_stream(req: falcon.Request):
    """The request body: Falcon's bounded stream, or for a chunked body (no Content-Length) the
    server's own input, which ends at the last chunk (Falcon would treat it as empty)."""
    return req.bounded_stream if req.content_length is not None else req.stream


def send_json(resp: falcon.Response, body: object, status: int = 200) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = "application/json"
    resp.data = orjson.dumps(body)
    resp.set_header("Cache-Control", "no-store")


def refuse_unread_body(req: falcon.Request, what: str) -> None:
    """A JSON or form body is read before anyone is known (a login) or is small anyway: one the
    server did not read whole before the request took a thread (over ``MEDIAPROXY_SMALL_BODY_MAX``)
    is refused unread (413, ``Connection: close``), so a slow sender never holds a thread."""
    if body_in_memory(req) is False:
        close_connection(req)
        raise TooLarge(f"{what} over {small_body_max(req)} bytes")


def read_json(req: falcon.Request) -> dict:
    refuse_unread_body(req, "JSON body")
    if req.content_length is not None and req.content_length > JSON_MAX:
        raise TooLarge(f"JSON body over {JSON_MAX} bytes")
    raw = req.bounded_stream.read(JSON_MAX + 1)
    if len(raw) > JSON_MAX:
        raise TooLarge(f"JSON body over {JSON_MAX} bytes")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object")
    return body


# -- request schemas ----------------------------------------------------------------------------
# Every query string, JSON body and form is read through its declared Struct (schemas.py): the
# types, bounds, required and unknown fields the OpenAPI document shows are the ones checked here.
# What is left to this module is the wire's own shape, the same for every field of a type:
# a query string or a form holds strings (a repeated name: its last value), and the /api/v1 API's
# bodies, the presigned /media API's and the share requests take a number or a boolean as a
# string too ("5", "true"/"1"); JSON's own types are never loosened (0 is not false, null is not a
# number). msgspec's error is then told as a sentence naming the field (``refusal``).

_INT = re.compile(r"-?[0-9]{1,18}")  # ASCII digits, within 64 bits: not "+5", "0x10", "5.0", "1e3", "٥"


@dataclass(frozen=True)
class _Field:
    name: str  # the wire's
    kinds: frozenset  # of "int", "float", "bool", "str", "list", "null", "literal"
    info: dict  # the declared bounds: ge, le, max_length, min_length, min_items, max_items, literals, refused


def _kinds(t, kinds: set, info: dict) -> None:
    if isinstance(t, msgspec.inspect.Metadata):
        if t.extra and "refused" in t.extra:
            info["refused"] = t.extra["refused"]
        _kinds(t.type, kinds, info)
    elif isinstance(t, msgspec.inspect.UnionType):
        for u in t.types:
            _kinds(u, kinds, info)
    elif isinstance(t, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        kinds.add("int" if isinstance(t, msgspec.inspect.IntType) else "float")
        info.update({k: v for k in ("ge", "le") if (v := getattr(t, k)) is not None})
    elif isinstance(t, msgspec.inspect.BoolType):
        kinds.add("bool")
    elif isinstance(t, msgspec.inspect.StrType):
        kinds.add("str")
        info.update({k: v for k in ("min_length", "max_length") if (v := getattr(t, k)) is not None})
    elif isinstance(t, msgspec.inspect.LiteralType):
        kinds.add("literal")
        kinds.update("int" if isinstance(v, int) else "str-literal" for v in t.values)
        info["literals"] = t.values
    elif isinstance(t, msgspec.inspect.ListType):
        kinds.add("list")
        info.update({"min_items": t.min_length, "max_items": t.max_length})
    elif isinstance(t, msgspec.inspect.NoneType):
        kinds.add("null")


@functools.cache  # once per schema, not per request
def _fields(schema: type[msgspec.Struct]) -> dict[str, _Field]:
    out = {}
    for f in msgspec.inspect.type_info(schema).fields:
        kinds: set = set()
        info: dict = {}
        _kinds(f.type, kinds, info)
        out[f.encode_name] = _Field(f.encode_name, frozenset(kinds), info)
    return out


def _from_string(f: _Field, value: str):
    """A number or a boolean written as a string, as the old query-string readers took it: the
    integer's digits (spaces around), a float as Python reads one, true/false/1/0 in any case. Left
    as it is when it is none of them: the schema then refuses it as the wrong type."""
    v = value.strip()
    if "int" in f.kinds and "float" not in f.kinds and _INT.fullmatch(v):
        return int(v)
    if "float" in f.kinds:
        try:
            return float(v)
        except ValueError:
            return value
    if "bool" in f.kinds:
        low = v.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
    return value


def _wire(values: dict, schema: type[msgspec.Struct], strings: bool, repeated: bool) -> dict:
    """``values`` as the schema takes them. ``repeated``: a query string's or a form's, where a name
    given twice is a list of strings (its last value, unless the field is a list). ``strings``: a
    number or boolean may come as a string, and an empty one is not given (the default)."""
    fields = _fields(schema)
    out = {}
    for name, value in values.items():
        f = fields.get(name)
        if f is None:  # refused by a closed schema, ignored by an open one
            out[name] = value
            continue
        if repeated and isinstance(value, list) and value and "list" not in f.kinds \
                and all(isinstance(v, str) for v in value):
            value = value[-1]
        if strings:
            flag = "bool" in f.kinds  # a boolean that may come as a string (schemas.FormBool)
            text = "str" in f.kinds and not flag
            if value == "" and not text:
                continue
            if isinstance(value, str) and not text:
                value = _from_string(f, value)
            elif isinstance(value, float) and "int" in f.kinds and "float" not in f.kinds and value.is_integer():
                value = int(value)
        out[name] = value
    return out


def decode(values: dict, schema: type[msgspec.Struct], strings: bool = False, repeated: bool = False):
    """``values`` read through ``schema``: a field of the wrong type, out of its declared bounds,
    missing or (a closed schema) unknown is a 400 naming it."""
    try:
        return msgspec.convert(_wire(values, schema, strings, repeated), schema)
    except msgspec.ValidationError as exc:
        raise BadRequest(refusal(str(exc), values, schema)) from None


def query(req: falcon.Request, schema: type[msgspec.Struct]):
    """The query string read through its schema."""
    return decode(req.params, schema, strings=True, repeated=True)


def json_body(req: falcon.Request, schema: type[msgspec.Struct], strings: bool = False):
    """The JSON body (absent: ``{}``) read through its schema; ``strings``: numbers and booleans may
    be strings too."""
    return decode(read_json(req), schema, strings=strings)


def params(req: falcon.Request, schema: type[msgspec.Struct]):
    """A JSON body, a urlencoded form or the query string, read through the schema (the API
    playgrounds send any of them; a body's field wins over the query string's)."""
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        refuse_unread_body(req, "form body")
        raw = req.bounded_stream.read(JSON_MAX + 1)
        if len(raw) > JSON_MAX:
            raise TooLarge(f"form body over {JSON_MAX} bytes")
        try:
            form = parse_query_string(raw.decode("utf-8"), keep_blank=True)
        except UnicodeDecodeError:
            raise BadRequest("malformed form body: not UTF-8") from None
        body = _wire({**req.params, **form}, schema, strings=False, repeated=True)
    else:
        body = {**_wire(req.params, schema, strings=False, repeated=True), **read_json(req)}
    return decode(body, schema, strings=True)


def form(fields: dict, schema: type[msgspec.Struct]):
    """A multipart form's fields other than the file, read through the form's schema (the file part
    is streamed to storage as it arrives, and stands in here as empty: it was there, or
    ``receive_upload`` refused the form already)."""
    return decode({**fields, "file": b""}, schema, strings=True, repeated=True)


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>.*)`)?$", re.S)


def refusal(message: str, values: dict, schema: type[msgspec.Struct]) -> str:
    """msgspec's ``message`` as a sentence naming the field, from the field's declared bounds."""
    fields = _fields(schema)
    m = _AT.match(message)
    what, path = m["what"], m["path"]
    if what.startswith("Object contains unknown field"):
        unknown = sorted(set(values) - set(fields))
        template = getattr(schema, "refused", "unknown field(s): {unknown}")
        return template.format(unknown=", ".join(unknown), known=", ".join(fields))
    if what.startswith("Object missing required field"):
        return f"{what.rsplit('`', 2)[-2]} is required"
    if path is None or not path.startswith("."):
        return what  # a schema's own check (__post_init__) says it in words already
    name = max((n for n in fields if path[1:].startswith(n)), key=len, default=None)
    if name is None:
        return message
    f = fields[name]
    i = f.info
    if "refused" in i and "regex" in what:
        return f"{name} {i['refused']}"
    if "bool" in f.kinds:
        return f"{name} must be true or false"
    if "literals" in i and (what.startswith("Invalid enum value") or ("literal" in f.kinds and "str" not in f.kinds)):
        return f"{name} must be one of {', '.join(map(str, i['literals']))}"
    if path[1 + len(name):].startswith("[") or ("list" in f.kinds and "array" in what and "length" in what):
        lo, hi = i.get("min_items"), i.get("max_items")
        count = f" of {lo or 0} to {hi}" if hi is not None else " of at least 1" if lo else ""
        return f"{name} must be a list{count} strings" + (" (or a comma-separated string)" if "str" in f.kinds else "")
    if "str" in f.kinds and "`str` of length" in what:
        if "<=" in what:
            return f"{name} is longer than {i['max_length']} characters"
        return f"{name} is required" if i.get("min_length") == 1 else \
            f"{name} must be at least {i['min_length']} characters"
    if "int" in f.kinds and "float" not in f.kinds and "str" not in f.kinds:
        if ">=" in what or "<=" in what:
            return f"{name} must be {i.get('ge', '')}..{i.get('le', '')}"
        return f"{name} must be an integer"
    if "float" in f.kinds:
        if ">=" in what or "<=" in what:
            return f"{name} must be a number {i.get('ge', '')}..{i.get('le', '')}"
        return f"{name} must be a number"
    if "str" in f.kinds and "list" not in f.kinds:
        return f"{name} must be a string" if "got" in what else f"{name} is malformed"
    return f"{name}: {what[0].lower()}{what[1:]}"


# -- multipart, streamed -------------------------------------------------------------------------

class _FileTarget(BaseTarget):
    def __init__(self, form: Form):
        super().__init__()
        self.form = form

    def on_start(self) -> None:
        if self.form.upload is not None:
            raise BadRequest("more than one file in the form")
        self.form.upload = self.form.begin(self.multipart_filename)

    def on_data_received(self, chunk: bytes) -> None:
        self.form.upload.write(chunk)

    def on_finish(self) -> None:
        self.form.file_ended = True


@dataclass
class Form:
    begin: object  # filename → Upload
    fields: dict = field(default_factory=dict)
    upload: Upload | None = None
    file_ended: bool = False  # the file part's closing boundary arrived


def receive_upload(req: falcon.Request, lib: Library, org: Organization, names: tuple[str, ...], validate,
                   lists: tuple[str, ...] = ()):
    """A multipart upload: the ``file`` part streamed into storage, committed there only once
    ``validate(fields)`` has accepted the other fields. Returns (upload, stored object, what
    ``validate`` returned); any failure leaves nothing stored. Every upload route goes through it."""
    limit = lib.settings.upload_max_bytes
    with upload_place(req, lib, f"client {org.id}"):
        form = read_multipart(req, lambda filename: lib.ingest.begin_upload(org, filename, limit), names, limit, lists)
    up = form.upload
    if up is None:
        raise BadRequest("the form has no file field")
    try:
        checked = validate(form.fields)
        obj, _ = up.finish()
    except BaseException:
        up.abort()
        raise
    return up, obj, checked


@contextmanager
def upload_place(req: falcon.Request, lib: Library, holder: str):
    """While an upload's body is read from the network (it was too large for the server to read
    before the request took a thread), it holds one of its client's ``MEDIAPROXY_UPLOADS_PER_CLIENT``
    places in this process; past them 429, nothing read. Called only once the sender is known."""
    if body_in_memory(req) is not False:
        yield
        return
    places = lib.upload_places
    if not places.try_acquire(holder):
        close_connection(req)
        raise TooManyRequests(f"{places.limit} uploads of this client are already arriving here; retry when one ends",
                              headers={"Retry-After": "1"})
    try:
        yield
    finally:
        places.release(holder)


def read_multipart(req: falcon.Request, begin, names: tuple[str, ...], max_bytes: int,
                   lists: tuple[str, ...] = ()) -> Form:
    """Parse a multipart body as it arrives, streaming the ``file`` part into storage.

    Past ``max_bytes`` (or for a type not allowed) the upload is aborted, so nothing is stored, and
    the answer is sent after dropping at most DRAIN_MAX more bytes (a client that is still
    sending would otherwise see a reset instead of the 413/415)."""
    ctype = req.content_type or ""
    if not ctype.lower().startswith("multipart/form-data"):
        raise BadRequest("expected a multipart/form-data body")
    if req.content_length is not None and req.content_length > max_bytes + FIELD_MAX * (len(names) + 2):
        raise TooLarge(f"upload is over the {max_bytes} byte limit")
    try:
        parser = StreamingFormDataParser(headers={"Content-Type": ctype})
    except Exception as exc:  # the parser's own error types: a missing or bad boundary
        raise BadRequest(f"malformed multipart body: {exc}") from None
    parts = _PartCounter(ctype)
    form = Form(begin=begin)
    targets = {n: _FieldTarget(validator=MaxSizeValidator(FIELD_MAX)) for n in names}
    for n, t in targets.items():
        parser.register(n, t)
    parser.register("file", _FileTarget(form))
    repeated = {n: _ListTarget() for n in lists}  # a field sent several times (the /v2 image service's tags[])
    for n, t in repeated.items():
        parser.register(n, t)
    stream = body_stream(req)
    received = 0
    try:
        while chunk := stream.read(CHUNK):
            received += len(chunk)
            if parts.over(chunk):  # counted before the parser spends anything on them
                _abort(form, stream, drain=False)
                close_connection(req)
                raise TooLarge(f"the form has more than {FORM_PARTS_MAX} parts")
            parser.data_received(chunk)
    except TimeoutError:  # the body stalled (the worker's pace): nothing more will be read
        _abort(form, stream, drain=False)
        raise
    except MediaError:
        _abort(form, stream)
        raise
    except ValidationError:
        _abort(form, stream)
        raise BadRequest(f"a form field is longer than {FIELD_MAX} bytes") from None
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, MediaError):
            _abort(form, stream)
            raise cause from None
        _abort(form, stream)
        raise BadRequest(f"malformed multipart body: {exc}") from None
    if req.content_length is not None and received < req.content_length:
        # the client went away after the file part: a field after it may be cut short, and the
        # parser says nothing of that (a started field reads as empty), so nothing is kept
        _abort(form, stream)
        raise BadRequest(f"malformed multipart body: it ended after {received} of {req.content_length} bytes")
    if form.upload is not None and not form.file_ended:
        # the body ended inside the file (a client that went away, or a truncated body): what
        # arrived is not the file, so none of it is kept
        _abort(form, stream)
        raise BadRequest("malformed multipart body: it ends inside the file part")
    for n, t in targets.items():
        if t.sent:  # an empty value (alt=) is a value
            try:
                form.fields[n] = t.value.decode("utf-8")
            except UnicodeDecodeError:
                _abort(form, stream)
                raise BadRequest(f"{n} is not UTF-8") from None
    for n, t in repeated.items():
        if t.values:
            try:
                form.fields[n] = [bytes(v).decode("utf-8") for v in t.values]
            except UnicodeDecodeError:
                _abort(form, stream)
                raise BadRequest(f"{n} is not UTF-8") from None
    return form


class _ListTarget(BaseTarget):
    """Every value of a repeated field, at most FIELD_MAX bytes in all."""

    def __init__(self):
        super().__init__()
        self.values: list[bytearray] = []
        self.size = 0

    def on_start(self) -> None:
        self.values.append(bytearray())

    def on_data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > FIELD_MAX:
            raise ValidationError(f"a form field is longer than {FIELD_MAX} bytes")
        self.values[-1] += chunk


class _FieldTarget(ValueTarget):
    """A form field's value, and whether the field was sent at all (an empty one included)."""

    sent = False

    def on_start(self) -> None:
        self.sent = True


class _PartCounter:
    """Counts a multipart body's delimiters (``--boundary`` at a line start) as its chunks go by,
    a chunk's tail kept so that one split between two chunks is counted once."""

    def __init__(self, ctype: str):
        boundary = falcon.parse_header(ctype)[1].get("boundary", "")
        self.delimiter = b"\r\n--" + boundary.encode("latin-1", "replace")
        self.tail = b"\r\n"  # the first delimiter starts the body, without a line break before it
        self.seen = 0

    def over(self, chunk: bytes) -> bool:
        data = self.tail + chunk
        self.seen += data.count(self.delimiter)
        self.tail = data[-(len(self.delimiter) - 1):]
        return self.seen > FORM_PARTS_MAX + 1  # n parts: n + 1 delimiters, the last one closing the form


def _abort(form: Form, stream, drain: bool = True) -> None:
    if form.upload is not None:
        form.upload.abort()
    left = DRAIN_MAX if drain else 0
    try:
        while left > 0:
            data = stream.read(min(CHUNK, left))
            if not data:
                break
            left -= len(data)
    except OSError:  # the client has gone (or stalled: TimeoutError): nobody to answer
        pass
