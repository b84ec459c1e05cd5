"""The library's request and response schemas, declared once as ``msgspec.Struct``s: what the
dialects accept (JSON bodies, forms, query strings) and what they answer. The OpenAPI document is
generated from them (``openapi.py``, ``msgspec.json.schema_components``), and the handlers decode
every query string, JSON body and form through them (``common.decode``): a field's type, bounds
(``Meta``) and presence are checked from the same declaration the document shows, and a body whose
schema is declared with ``forbid_unknown_fields`` is refused when it carries any other field.
A ``Meta(extra={"refused": ...})`` says in words what a field's pattern refuses.

Names are the wire's (camelCase, ``rename="camel"`` or an explicit ``name``). A request field
that may be absent — not the same as ``null`` for a PATCH — defaults to ``UNSET``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from ...media.spec import FORMATS, MAX_DIM

# -- field types ---------------------------------------------------------------------------------

Time = Annotated[str, Meta(extra_json_schema={"format": "date-time"}, description="ISO 8601, UTC")]
# a URL as the server builds it: its path may carry a stored name as given (UTF-8), so not always an RFC 3986 "uri"
Url = str
NO_NUL = r"^[^\x00]*$"  # PostgreSQL cannot store a NUL (SQLite can): refused in every text field alike
_NUL = {"refused": "must not contain a NUL character"}


def Str(most: int) -> Any:
    """A text field of at most ``most`` characters, without NUL."""
    return Annotated[str, Meta(max_length=most, pattern=NO_NUL, extra=_NUL)]


def anycase(*words: str) -> str:
    """A pattern for one of ``words`` in any case (JSON Schema's regexes have no flags)."""
    return "^(" + "|".join("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in w)
                           for w in words) + ")$"


Text = Annotated[Str(4096), Meta(description="at most 4096 characters, no NUL")]
Binary = Annotated[bytes, Meta(extra_json_schema={"format": "binary"})]  # a form's file part
Limit = Annotated[int, Meta(ge=1, le=100, description="page size (default 20)")]
Offset = Annotated[int, Meta(ge=0, le=10**9, description="items to skip")]
Page = Annotated[int, Meta(ge=1, le=10**6, description="1-based page number (offset = (page - 1) × limit)")]
ClientId = Annotated[int, Meta(ge=1, description="one client (organization) only")]
Dimension = Annotated[int, Meta(ge=1, le=MAX_DIM)]
Quality = Annotated[int, Meta(ge=1, le=100, description="quality")]
ExpiresIn = Annotated[int, Meta(ge=1, le=365 * 86400, description="seconds until it expires (default 7 days)")]
UserId = Str(255)
# a boolean that may come as a string (a form, a query string, the /api/v1 API's bodies): true/false in
# any case or 1/0, spaces around; an empty one keeps the default. The reader (common.decode) turns
# such a string into the boolean; the string's pattern is what the document and the refusal say.
FormBool = bool | Annotated[str, Meta(
    pattern=r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])\s*$|^$", extra={"refused": "must be true or false"},
    description="true or false (any case), 1 or 0")]


def fields(schema: type[Struct]) -> tuple[str, ...]:
    """The wire names of a schema's fields."""
    return tuple(f.encode_name for f in msgspec.structs.fields(schema))


class Schema(Struct, kw_only=True, rename="camel"):
    """A response: every field is always sent."""


class Body(Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A request: fields absent from the wire keep their defaults."""


class Closed(Body, kw_only=True, forbid_unknown_fields=True):
    """A request whose unknown fields are refused (400, in the words of ``refused``)."""

    refused: ClassVar[str] = "unknown field(s): {unknown}"  # {unknown}: the fields refused; {known}: the others


# -- shared --------------------------------------------------------------------------------------

class Error(Schema, kw_only=True):
    """Every error of the library's JSON APIs."""

    error: Annotated[str, Meta(description="what was wrong, in words")]


class PageQuery(Body, kw_only=True):
    limit: Limit = 20
    offset: Offset = 0
    page: Page | UnsetType = UNSET

    @property
    def skip(self) -> int:
        """The items skipped: ``offset``, or the page's first."""
        return (self.page - 1) * self.limit if self.page is not UNSET else self.offset


# -- the /api/v1 API -----------------------------------------------------------------------------

class Health(Schema, kw_only=True):
    status: Literal["ok"]
    database: Literal["ok"]
    timestamp: Time


class HealthDown(Schema, kw_only=True):
    status: Literal["error"]
    database: Literal["unreachable"]


class Variant(Schema, kw_only=True):
    name: Annotated[str, Meta(examples=["thumbnail", "small", "medium", "large", "original_webp"])]
    url: Annotated[Url | None, Meta(description="null for a private media")]
    object_key: str
    width: int
    height: int
    size: int
    mime_type: str


class Media(Schema, kw_only=True):
    """A media as the /api/v1 API answers it."""

    id: str
    filename: str
    mime_type: str
    size: int
    width: int | None
    height: int | None
    object_key: str | None
    bucket: str
    is_private: bool
    status: Annotated[Literal["uploading", "ready"], Meta(description="uploading: waiting for its bytes")]
    alt: str | None
    caption: str | None
    description: str | None
    blur_hash: str | None
    thumb_hash: str | None
    canonical_uri: Annotated[Url | None, Meta(description="/sha256/{hex}: the bytes' content address, public only")]
    url: Annotated[Url | None, Meta(description="the public URL; null while private or uploading")]
    variants: list[Variant]
    created_at: Time
    updated_at: Time


class MediaList(Schema, kw_only=True):
    items: list[Media]
    total: int
    limit: int
    offset: int


class Job(Schema, kw_only=True):
    job_id: str
    state: Literal["pending", "active", "completed", "failed"]
    failed_reason: str | None
    result: dict[str, Any] | None
    attempts: int
    created_at: Time
    updated_at: Time


class Accepted(Schema, kw_only=True):
    """A job was queued (an asynchronous upload, crop or variants request)."""

    job_id: str
    state: str
    media: Media


class PresignedUpload(Schema, kw_only=True):
    upload_url: Url
    object_key: str
    method: Literal["PUT"]
    headers: Annotated[dict[str, str], Meta(description="send these headers with the PUT")]
    expires_at: Time
    id: str
    bucket: str


class MediaVariants(Schema, kw_only=True):
    id: str
    variants: list[Variant]


class VariantsInfo(Schema, kw_only=True):
    id: str
    object_key: str
    bucket: str
    variants: list[Variant]


class Batch(Schema, kw_only=True):
    items: Annotated[list[Media], Meta(description="the media found, in the order asked")]
    missing: Annotated[list[str], Meta(description="the ids not found (or another organization's)")]


class PresignedDownload(Schema, kw_only=True):
    url: Url
    object_key: str
    bucket: str
    expires_in: int
    expires_at: Time


class Deleted(Schema, kw_only=True):
    deleted: Literal[True]
    id: str
    objects_deleted: Annotated[int, Meta(description="stored objects removed (the original, its variants)")]


class Stored(Schema, kw_only=True):
    object_key: str
    bucket: str
    uploaded: Literal[True]


class UploadForm(Body, kw_only=True):
    file: Binary
    org_slug: Annotated[Str(4096), Meta(description="must be the API key's organization when given")] \
        | UnsetType = UNSET
    alt: Text | UnsetType = UNSET
    caption: Text | UnsetType = UNSET
    description: Text | UnsetType = UNSET
    is_private: FormBool = False
    generate_variants: Annotated[FormBool, Meta(description="render the variants now (or in the job)")] = False
    async_: Annotated[FormBool, Meta(description="answer 202 at once; a job does the rest")] = field(
        default=False, name="async")


class PresignRequest(Body, kw_only=True):
    org_slug: Str(4096) | UnsetType | None = UNSET
    filename: Annotated[str, Meta(min_length=1, max_length=255, pattern=NO_NUL, extra=_NUL)]
    mime_type: Annotated[Str(4096) | None, Meta(description=(
        "optional: without it, the filename's type (a type not allowed is 415); when the name tells none, "
        "no type is signed and the bytes decide when the upload completes"))] | UnsetType = UNSET
    size: Annotated[int, Meta(ge=1, description=(
        "the file's size in bytes: the upload URL then takes exactly that many bytes (S3 signs Content-Length; "
        "the local backend's URL checks it); over the limit is 413 at once"))] | UnsetType = UNSET


class ListQuery(Body, kw_only=True):
    limit: Limit = 20
    offset: Annotated[int, Meta(ge=0, le=10_000_000, description="items to skip")] = 0
    search: Annotated[str, Meta(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                                extra={"refused": "must not contain control characters"},
                                description="in filename, alt, caption")] | UnsetType = UNSET
    type: Annotated[Str(127), Meta(description="MIME prefix, e.g. image/")] | UnsetType = UNSET
    # empty: not given (the default), as a query string's empty values are
    sort: Literal["createdAt", "updatedAt", "filename", "size", "mimeType", ""] = "createdAt"
    order: Annotated[str, Meta(pattern=anycase("asc", "desc"), extra={"refused": "must be asc or desc"},
                               description="asc or desc, any case")] = "desc"


IDS_MAX = 100


class BatchRequest(Body, kw_only=True):
    ids: Annotated[list[str], Meta(min_length=1, max_length=IDS_MAX)] | Annotated[
        str, Meta(description="comma-separated")]

    def __post_init__(self):
        if isinstance(self.ids, str):  # the list's bounds hold for the ids a string names too
            self.ids = [i.strip() for i in self.ids.split(",") if i.strip()]
            if not 1 <= len(self.ids) <= IDS_MAX:
                raise ValueError(f"ids must name 1 to {IDS_MAX} ids")


class ByKey(Body, kw_only=True):
    """A media by its id, or by its original's key (and bucket)."""

    id: Annotated[Str(4096) | None, Meta(description="the media's id")] | UnsetType = UNSET
    object_key: Annotated[Str(1024) | None, Meta(description="the key of one of its originals (without id)")] \
        | UnsetType = UNSET
    bucket_name: Str(4096) | UnsetType | None = UNSET
    bucket: Annotated[Str(4096) | None, Meta(description="bucketName's other name")] | UnsetType = UNSET

    def __post_init__(self):
        if not self.id and not self.object_key:
            raise ValueError("objectKey is required (or id)")


class CropRequest(ByKey, kw_only=True):
    x: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    y: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    width: Annotated[int, Meta(ge=1, le=1_000_000)]
    height: Annotated[int, Meta(ge=1, le=1_000_000)]
    rotate: Literal[0, 90, 180, 270] = 0
    scale: Annotated[float, Meta(ge=0.01, le=4.0)] = 1.0
    quality: Quality | UnsetType = UNSET
    format: Annotated[str, Meta(pattern=anycase("webp", "jpeg", "jpg", "png"),
                                extra={"refused": "must be webp, jpeg or png"}, description="any case")] \
        | UnsetType | None = UNSET
    regenerate_variants: FormBool = False
    async_: FormBool = field(default=False, name="async")


class MediaPatch(Closed, kw_only=True):
    """Only the fields given change; any other field is refused."""

    refused: ClassVar[str] = "cannot change {unknown} (only {known})"

    alt: Text | UnsetType | None = UNSET
    caption: Text | UnsetType | None = UNSET
    description: Text | UnsetType | None = UNSET
    is_private: FormBool | UnsetType = UNSET


class KeyQuery(Body, kw_only=True):
    object_key: Annotated[str, Meta(min_length=1, max_length=1024, pattern=NO_NUL, extra=_NUL,
                                    description="the original's key")]
    bucket: Annotated[Str(4096), Meta(description="the library's bucket")] | UnsetType = UNSET
    bucket_name: Annotated[Str(4096), Meta(description="bucket's other name")] | UnsetType = UNSET


class PresignQuery(KeyQuery, kw_only=True):
    expiry: Annotated[int, Meta(description="seconds (default and bounds: MEDIAPROXY_PRESIGN_DEFAULT, "
                                            "MEDIAPROXY_PRESIGN_MIN, MEDIAPROXY_PRESIGN_MAX)")] | UnsetType = UNSET


class SignedQuery(Body, kw_only=True):
    """A signed URL's query (a missing or malformed one is 403, as a wrong signature)."""

    expires: Annotated[int, Meta(ge=0, description="epoch seconds")]
    signature: Annotated[str, Meta(max_length=128, description="HMAC")]


class SignedPutQuery(SignedQuery, kw_only=True):
    size: Annotated[int, Meta(ge=1, description=(
        "present when the upload was presigned with a size: the body must be exactly this many bytes "
        "(403 otherwise); signed"))] | UnsetType = UNSET


class PublicQuery(Body, kw_only=True):
    """imgix's parameters (without any: the stored bytes, with Range)."""

    w: Annotated[Dimension, Meta(description="width")] | UnsetType = UNSET
    h: Annotated[Dimension, Meta(description="height")] | UnsetType = UNSET
    fit: Literal["clip", "max", "crop", "min", "scale", "fill", "fillmax"] | UnsetType = UNSET
    crop: Annotated[str, Meta(description="focus: center, top, bottom, left, right, entropy, faces, edges")] \
        | UnsetType = UNSET
    q: Quality | UnsetType = UNSET
    fm: Literal["jpg", "jpeg", "png", "webp", "avif", "gif"] | UnsetType = UNSET
    auto: Annotated[str, Meta(description=(
        "format and/or compress, comma-separated (format: AVIF, else WebP, from Accept; compress: the quality "
        "chosen per image for a perceived-quality target, unless q is given)"))] | UnsetType = UNSET


# -- the presigned /media API --------------------------------------------------------------------

class CreateMediaRequest(Body, kw_only=True):
    filename: Annotated[str, Meta(min_length=1, max_length=255, pattern=NO_NUL, extra=_NUL)]
    content_type: Annotated[str, Meta(min_length=1, max_length=127, pattern=NO_NUL, extra=_NUL,
                                      description="one of MEDIAPROXY_MEDIA_API_TYPES",
                                      examples=["image/png", "image/jpeg", "image/gif", "image/webp"])]
    size: Annotated[int, Meta(ge=1, description=(
        "optional: the file's size in bytes; the upload URL then takes exactly that many bytes (S3 signs "
        "Content-Length; the local backend's URL checks it), and a size over the limit is 413 at once"))] \
        | UnsetType = UNSET


class MediaRef(Schema, kw_only=True):
    id: str
    filename: str
    content_type: str


class CreatedMedia(Schema, kw_only=True):
    upload_url: Url
    content_disposition_header: Annotated[str, Meta(description="send it as the PUT's Content-Disposition")]
    headers: dict[str, str]
    expires_at: Time
    max_bytes: int
    media: MediaRef


class MediaObject(Schema, kw_only=True):
    """A media as the presigned /media API answers it."""

    id: str
    filename: str
    content_type: str
    size: int | None
    width: int | None
    height: int | None
    status: Literal["pending_upload", "uploaded"]
    public_download_url: Url | None
    blur_hash: str | None
    thumb_hash: str | None
    canonical_uri: Url | None
    created_at: Time


# -- the /v2 image service -----------------------------------------------------------------------

class Image(Media, kw_only=True):
    """An image of the /v2 image service: the media's fields, its owner, tags, albums and URL."""

    user_id: Annotated[str | None, Meta(description="its owner (X-User-Id at upload)")]
    tags: list[str]
    album_ids: list[str]
    image_url: Url


class ImageList(Schema, kw_only=True):
    items: list[Image]
    total: int
    limit: int
    offset: int


Tag = Str(64)


class ImageForm(Body, kw_only=True):
    file: Binary
    album_id: Annotated[Str(64), Meta(description="add it to this album of X-User-Id")] | UnsetType = UNSET
    tags_list: list[str] | UnsetType = field(default=UNSET, name="tags[]")
    tags: Annotated[str, Meta(description="comma-separated")] | UnsetType = UNSET
    description: Text | UnsetType = UNSET
    is_private: Annotated[FormBool, Meta(description="needs an owner")] = False
    external_user_id: Annotated[UserId, Meta(description="admin upload: the owner")] | UnsetType = UNSET


class ImagesQuery(PageQuery, kw_only=True):
    tag: Tag | UnsetType = UNSET
    album_id: Annotated[Str(64), Meta(description="an album's images, as the album answers them")] \
        | UnsetType = UNSET
    is_private: FormBool | UnsetType = UNSET
    user_id: Annotated[UserId, Meta(description="one owner's")] | UnsetType = UNSET
    from_: Annotated[Str(40), Meta(description="ISO 8601: created at or after")] | UnsetType = field(
        default=UNSET, name="from")
    to: Annotated[Str(40), Meta(description="ISO 8601: created before")] | UnsetType = UNSET
    token: Annotated[Str(128), Meta(description="the album's access token")] | UnsetType = UNSET


class ServeQuery(Body, kw_only=True):
    w: Annotated[Dimension, Meta(description="width")] | UnsetType = UNSET
    h: Annotated[Dimension, Meta(description="height")] | UnsetType = UNSET
    q: Quality | UnsetType = UNSET
    format: Annotated[str, Meta(pattern=anycase(*FORMATS), extra={"refused": f"must be one of {', '.join(FORMATS)}"},
                                description=f"{', '.join(FORMATS)} (any case; default webp)")] | UnsetType = UNSET
    thumb: Annotated[FormBool, Meta(description="a 256-pixel square crop (unless w/h say otherwise)")] = False


class ImageQuery(ServeQuery, kw_only=True):
    info: Annotated[FormBool, Meta(description="the image's JSON (needs the key) instead of its bytes")] = False
    t: Annotated[str, Meta(description="cache buster; not part of the result")] | UnsetType = UNSET
    token: Annotated[Str(128), Meta(description="a share link's or an album's access token")] | UnsetType = UNSET


class AvatarQuery(ServeQuery, kw_only=True):
    info: Annotated[FormBool, Meta(description="the avatar's JSON instead of its bytes")] = False


class ImagePatch(Closed, kw_only=True):
    """Only the fields given change; any other field is refused."""

    tags: list[str] | str | UnsetType | None = UNSET
    description: Text | UnsetType | None = UNSET
    is_private: Annotated[bool, Meta(description="needs an owner")] | UnsetType = UNSET


class ShareRequest(Body, kw_only=True):
    expires_in: ExpiresIn = 7 * 86400


class Share(Schema, kw_only=True):
    token: Annotated[str, Meta(description="shown once")]
    image_id: str
    expires_at: Time
    url: Url
    image_url: Url


class AlbumShare(Schema, kw_only=True):
    token: Annotated[str, Meta(description="shown once")]
    album_id: str
    expires_at: Time
    url: Url


class AvatarForm(Body, kw_only=True):
    file: Binary
    external_user_id: Annotated[UserId, Meta(description="whose avatar (default: X-User-Id)")] | UnsetType = UNSET


class Avatar(Schema, kw_only=True):
    external_user_id: str
    id: str
    mime_type: str
    size: int
    width: int | None
    height: int | None
    url: Url
    versioned_url: Annotated[Url, Meta(description="this version's immutable public URL")]
    created_at: Time
    updated_at: Time


class AlbumInput(Closed, kw_only=True):
    """An album's fields (``name`` is required to create one); any other field is refused."""

    name: Annotated[str, Meta(max_length=255, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$",
                              extra={"refused": "is required: a non-empty string, without NUL"})] | UnsetType = UNSET
    description: Text | UnsetType | None = UNSET
    is_public: bool | UnsetType = UNSET
    album_id: Annotated[Str(255) | None, Meta(description="the client's own id for it")] | UnsetType = UNSET


class Album(Schema, kw_only=True):
    id: str
    name: str
    description: str | None
    is_public: bool
    album_id: str | None
    user_id: str
    image_count: int
    created_at: Time
    updated_at: Time


class AlbumList(Schema, kw_only=True):
    items: list[Album]
    total: int
    limit: int
    offset: int


class TokenQuery(Body, kw_only=True):
    token: Annotated[Str(128), Meta(description="an access token of the album")] | UnsetType = UNSET


class AlbumImagesQuery(PageQuery, kw_only=True):
    token: Annotated[Str(128), Meta(description="an access token of the album")] | UnsetType = UNSET


ImageIdList = Annotated[list[str], Meta(min_length=1, max_length=1000)]


class ImageIds(Body, kw_only=True):
    image_ids: ImageIdList | UnsetType = UNSET
    images: Annotated[ImageIdList, Meta(description="imageIds' other name")] | UnsetType = UNSET

    def __post_init__(self):
        if self.image_ids is UNSET:
            if self.images is UNSET:
                raise ValueError("imageIds is required: a non-empty list of image ids")
            self.image_ids = self.images


class AlbumAdded(Schema, kw_only=True):
    added: int
    album: Album


class AlbumRemoved(Schema, kw_only=True):
    removed: int
    album: Album


class ClientRef(Schema, kw_only=True):
    id: int
    slug: str


class StatusClient(ClientRef, kw_only=True):
    name: str


class Status(Schema, kw_only=True):
    status: Literal["ok"]
    timestamp: Time
    client: StatusClient


class ApiStats(Schema, kw_only=True):
    images: int
    private_images: int
    bytes: int


class Stats(Schema, kw_only=True):
    images: Annotated[int, Meta(description="ready media of every API but avatars: /api/v1, /media and /v2 uploads")]
    private_images: Annotated[int, Meta(description="of those, the private ones")]
    image_bytes: Annotated[int, Meta(description="their originals' sizes (variants and cached renditions not counted)")]
    albums: int
    avatars: int
    avatar_bytes: int
    total_bytes: Annotated[int, Meta(description="imageBytes + avatarBytes")]
    by_api: Annotated[dict[str, ApiStats], Meta(description=(
        "images by the API that stored them: v1 (the /api/v1 API), media (the presigned /media API), v2"))]


class ClientStats(Stats, kw_only=True):
    client: ClientRef


# -- the /v2 admin API ---------------------------------------------------------------------------

class Admin(Schema, kw_only=True):
    id: int
    email: str
    name: str
    created_at: Time
    updated_at: Time


class Tokens(Schema, kw_only=True):
    access_token: Annotated[str, Meta(description="a JWT: Authorization: Bearer …")]
    token_type: Literal["Bearer"]
    expires_in: Annotated[int, Meta(description="the access token's lifetime, seconds")]
    refresh_token: Annotated[str, Meta(description="rotated by /admin/auth/refresh; a reused one ends its family")]
    refresh_expires_in: int
    admin: Admin


class LoginTokens(Tokens, kw_only=True):
    device_token: Annotated[str, Meta(description=(
        "names this client as one the admin has logged in from; also set as the cookie mediaproxy_admin_device"))]


class LoginRequest(Body, kw_only=True):
    email: Annotated[str, Meta(min_length=1, max_length=255, pattern=NO_NUL, extra=_NUL)]
    password: Annotated[str, Meta(min_length=1, max_length=1024, pattern=NO_NUL, extra=_NUL)]
    device_token: Annotated[Str(200), Meta(description=(
        "the deviceToken of an earlier login of this account (or the cookie mediaproxy_admin_device): judged only "
        "by this device's own failed logins"))] | UnsetType = UNSET


class RefreshRequest(Body, kw_only=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=256, pattern=NO_NUL, extra=_NUL)]


class LogoutRequest(Body, kw_only=True):
    refresh_token: Annotated[Str(256), Meta(description="end this session (default: every session)")] \
        | UnsetType = UNSET
    everywhere: Annotated[bool, Meta(description="end every session of this admin")] = False


class MePatch(Closed, kw_only=True):
    """Only the fields given change; any other field is refused."""

    name: Str(255) | UnsetType | None = UNSET  # null: ""
    email: Str(255) | UnsetType = UNSET


class PasswordChange(Body, kw_only=True):
    current_password: Annotated[str, Meta(min_length=1, max_length=1024, pattern=NO_NUL, extra=_NUL)]
    new_password: Annotated[str, Meta(min_length=10, max_length=1024, pattern=NO_NUL, extra=_NUL)]


class Client(Schema, kw_only=True):
    id: int
    slug: str
    name: str
    created_at: Time
    stats: Stats | UnsetType = UNSET


class ClientList(Schema, kw_only=True):
    items: list[Client]
    total: int
    limit: int
    offset: int


class ClientPatch(Closed, kw_only=True):
    """A client's name (its slug never changes); any other field is refused."""

    refused: ClassVar[str] = "unknown field(s): {unknown} (a client's slug never changes)"

    name: Annotated[str, Meta(min_length=1, max_length=255, pattern=NO_NUL, extra=_NUL)]


class AdminStats(Schema, kw_only=True):
    """The sums of every client's statistics (none without clients), and each client's."""

    clients: int
    images: int | UnsetType = UNSET
    private_images: int | UnsetType = UNSET
    image_bytes: int | UnsetType = UNSET
    albums: int | UnsetType = UNSET
    avatars: int | UnsetType = UNSET
    avatar_bytes: int | UnsetType = UNSET
    total_bytes: int | UnsetType = UNSET
    by_api: dict[str, ApiStats] | UnsetType = UNSET
    per_client: list[Client]


class ClientPageQuery(PageQuery, kw_only=True):
    client_id: ClientId | UnsetType = UNSET


class AdminUploadQuery(Body, kw_only=True):
    client_id: Annotated[int, Meta(ge=1, description="the client it is uploaded for")]


class AdminImageForm(Body, kw_only=True):
    file: Binary
    external_user_id: Annotated[UserId, Meta(description="the owner")] | UnsetType = UNSET
    tags_list: list[str] | UnsetType = field(default=UNSET, name="tags[]")
    tags: Annotated[str, Meta(description="comma-separated")] | UnsetType = UNSET
    description: Text | UnsetType = UNSET
    is_private: Annotated[FormBool, Meta(description="needs an owner")] = False


class AdminImagesQuery(ClientPageQuery, kw_only=True):
    tag: Tag | UnsetType = UNSET
    user_id: UserId | UnsetType = UNSET
    is_private: FormBool | UnsetType = UNSET
    from_: Annotated[Str(40), Meta(description="ISO 8601")] | UnsetType = field(default=UNSET, name="from")
    to: Annotated[Str(40), Meta(description="ISO 8601")] | UnsetType = UNSET
    search: Annotated[Str(255), Meta(description="in the file name and description")] | UnsetType = UNSET


class AdminImage(Image, kw_only=True):
    client_id: int


class AdminImageList(Schema, kw_only=True):
    items: list[AdminImage]
    total: int
    limit: int
    offset: int


class TagsQuery(Body, kw_only=True):
    client_id: ClientId | UnsetType = UNSET
    search: Annotated[Str(64), Meta(description="tags starting with it")] | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=500)] = 50


class TagCount(Schema, kw_only=True):
    tag: str
    count: int


class TagCounts(Schema, kw_only=True):
    items: list[TagCount]


class AdminAvatar(Schema, kw_only=True):
    id: int
    client_id: int
    external_user_id: str
    media_id: str
    mime_type: str
    size: int
    width: int | None
    height: int | None
    created_at: Time
    updated_at: Time


class AdminAvatarList(Schema, kw_only=True):
    items: list[AdminAvatar]
    total: int
    limit: int
    offset: int


class AdminAlbum(Album, kw_only=True):
    client_id: int


class AdminAlbumList(Schema, kw_only=True):
    items: list[AdminAlbum]
    total: int
    limit: int
    offset: int


# -- the admin portal ----------------------------------------------------------------------------

class TokenInfo(Schema, kw_only=True):
    """A share link or an album access token, as listed (never the token itself)."""

    id: int
    created_at: Time
    expires_at: Time | None
    revoked_at: Time | None
    created_by: str | None
    state: Literal["active", "expired", "revoked"]


class TokenList(Schema, kw_only=True):
    items: list[TokenInfo]


class ImageShareCreated(TokenInfo, kw_only=True):
    token: Annotated[str, Meta(description="shown once")]
    image_id: str
    url: Url
    image_url: Url


class AlbumTokenCreated(TokenInfo, kw_only=True):
    token: Annotated[str, Meta(description="shown once")]
    album_id: str
    url: Url


class UploadsQuery(Body, kw_only=True):
    days: Annotated[int, Meta(ge=1, le=366)] = 30
    client_id: ClientId | UnsetType = UNSET


class DayCount(Schema, kw_only=True):
    date: Annotated[str, Meta(extra_json_schema={"format": "date"})]
    images: int
    bytes: int


class UploadsPerDay(Schema, kw_only=True):
    days: int
    client_id: int | None
    items: list[DayCount]


class KeyInfo(Schema, kw_only=True):
    prefix: str
    name: str
    created_at: Time
    revoked_at: Time | None
    state: Literal["active", "revoked"]


class KeyList(Schema, kw_only=True):
    items: list[KeyInfo]


class SignedUrlsQuery(Body, kw_only=True):
    ids: Annotated[str, Meta(max_length=IDS_MAX * 41, pattern=NO_NUL, extra=_NUL,
                             description="1 to 100 image ids, comma-separated")]
    w: Dimension
    h: Dimension
    fit: Literal["cover", "inside", ""] = "cover"  # empty: not given (the default), as a query string's

    def __post_init__(self):
        _id_list(self)


class ThumbnailsQuery(Body, kw_only=True):
    ids: Annotated[str, Meta(max_length=IDS_MAX * 41, pattern=NO_NUL, extra=_NUL,
                             description="1 to 100 image or avatar ids, comma-separated")]
    # a grid's cell at a phone's density; the signed URLs serve larger sizes
    w: Annotated[int, Meta(ge=1, le=400, description="a thumbnail's width")]
    h: Annotated[int, Meta(ge=1, le=400, description="a thumbnail's height")]
    fit: Literal["cover", "inside", ""] = "cover"  # empty: not given (the default), as a query string's

    def __post_init__(self):
        _id_list(self)


def _id_list(query) -> None:
    """``ids`` (comma-separated) as the list of ids it names, 1 to IDS_MAX of them."""
    ids = [i for i in query.ids.split(",") if i]
    if not 1 <= len(ids) <= IDS_MAX:
        raise ValueError(f"ids must name 1 to {IDS_MAX} images, comma-separated")
    query.ids = ids


class ClientsQuery(PageQuery, kw_only=True):
    search: Annotated[str, Meta(max_length=255, pattern=NO_NUL, extra=_NUL,
                                description="text in the slug or the name, any case")] | UnsetType = UNSET


class SignedUrls(Schema, kw_only=True):
    urls: Annotated[dict[str, Url], Meta(description="each image id's URL")]
    expires_at: Annotated[int, Meta(description="epoch seconds")]


class SessionRequest(Body, kw_only=True):
    email: Annotated[str, Meta(min_length=1, max_length=255, pattern=NO_NUL, extra=_NUL)]
    password: Annotated[str, Meta(min_length=1, max_length=1024, pattern=NO_NUL, extra=_NUL)]
    device_token: Str(200) | UnsetType = UNSET


class Session(Schema, kw_only=True):
    """A login or refresh of the portal's session: the refresh token is the HttpOnly cookie, not here."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_expires_in: int
    admin: Admin
    device_token: str | UnsetType = UNSET
    csrf_token: Annotated[str, Meta(description="send it as X-CSRF-Token with the session's other requests")]


class SessionLogoutRequest(Body, kw_only=True):
    everywhere: Annotated[FormBool, Meta(description="end every session of the cookie's admin")] = False


class SignedMediaQuery(Body, kw_only=True):
    w: Dimension
    h: Dimension
    fit: Annotated[str, Meta(min_length=1, max_length=8, pattern=NO_NUL, extra=_NUL, description="cover or inside")]
    e: Annotated[int, Meta(ge=0, le=2**40, description="expiry, epoch seconds")]
    s: Annotated[Str(64), Meta(description="the signature (without it: a wrong one, 403)")] = ""


