"""The records as every dialect reads and describes them: a media by id, key or folder, the
list, a batch, what a public URL or a content address serves, a record's descriptive fields and
a /v2 image's tags. Reads have no side effects: a presigned upload is completed where its bytes
arrive (the local backend's PUT) or by the job the workers' sweep queues for it (S3), never by a
read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ...errors import BadRequest, NotFound
from .. import unit
from ..ids import is_id
from ..models import Media, Organization, StoredObject, Variant, now
from ..repositories import images, objects, tags
from .base import Core, keys_of, own_key
from .signed import sign_query

TAG_MAX = 64
TAGS_MAX = 32


def clean_tags(raw: list[str] | None) -> list[str]:
    """Trimmed, lower-cased, de-duplicated tags, in the order given; 400 for a bad one."""
    out: list[str] = []
    for t in raw or []:
        if not isinstance(t, str):
            raise BadRequest("tags must be strings")
        t = t.strip().lower()
        if not t:
            continue
        if len(t) > TAG_MAX or not t.isprintable():
            raise BadRequest(f"a tag must be printable and at most {TAG_MAX} characters")
        if t not in out:
            out.append(t)
    if len(out) > TAGS_MAX:
        raise BadRequest(f"at most {TAGS_MAX} tags")
    return out


class Catalog:
    def __init__(self, core: Core):
        self.core = core

    # -- one record -----------------------------------------------------------------------------

    def get(self, s: Session, org: Organization, media_id: str) -> Media:
        media = images.of_org(s, org.id, media_id) if is_id(media_id) else None
        if media is None:
            raise NotFound("no such media")
        return media

    def by_key(self, s: Session, org: Organization, bucket: str | None, key: str) -> Media:
        """The organization's media whose current original is ``key`` (the newest, if several)."""
        if (bucket or self.core.bucket) != self.core.bucket or not key:
            raise NotFound("no such object")
        media = objects.media_of_key(s, org.id, self.core.bucket, key)
        if media is None:
            raise NotFound("no such object")
        return media

    def owned_key(self, s: Session, org: Organization, bucket: str | None, key: str) -> Media:
        """The organization's media that ``key`` (its original or a variant) belongs to; 404 otherwise."""
        bucket = bucket or self.core.bucket
        if bucket != self.core.bucket or not key:
            raise NotFound("no such object")
        media = objects.org_media_of_key(s, org.id, bucket, key)
        if media is None or media.state != "ready":
            raise NotFound("no such object")
        return media

    def key_mime(self, s: Session, bucket: str, key: str) -> str:
        """The type recorded for a stored original or variant (judged from its bytes at ingest)."""
        return objects.key_mime(s, bucket, key) or "application/octet-stream"

    def key_is_private(self, s: Session, bucket: str, key: str) -> bool:
        found = objects.owner_of_key(s, bucket, key) if bucket == self.core.bucket and key else None
        if found is None:
            raise NotFound("no such object")
        return found[0].is_private

    def public_object(self, s: Session, key: str) -> tuple[str, str, str, str | None] | None:
        """What the public URL ``/library/{key}`` serves — (bucket, stored key, type, the record's
        Content-Disposition for its original) — or None.

        The key names one record and one of its versions (``{org}/{mediaId}/{versionId}/{name}``):
        the record's current original (under its own spelling, ``public_key``) or one of its
        variants. It is served only while that record is ready and public, whatever other records
        share the stored bytes. One query for an original, two for a variant."""
        parts = key.split("/")
        if len(parts) != 4 or not is_id(parts[1]) or not is_id(parts[2]):
            return None
        org_slug, media_id, version_id, _ = parts
        row = objects.public_original(s, org_slug, media_id, version_id)
        if row is None:
            return None
        mime, filename, folder, disposition, bucket, stored = row
        if bucket == self.core.bucket and own_key(folder, stored, filename) == key:
            return bucket, stored, mime, disposition
        variant = objects.variant_of_version(s, version_id, self.core.bucket, key)
        return (*variant, None) if variant is not None else None

    def own_disposition(self, s: Session, bucket: str, key: str) -> str | None:
        """The Content-Disposition of the record whose own upload the stored original ``key`` is
        (the version in whose folder it lies), if any: never another record's that shares it."""
        return objects.own_disposition(s, bucket, key)

    def public_sha256(self, s: Session, sha: str) -> StoredObject | None:
        """The object of a public media with these bytes (the canonical, content-addressed URI).

        The address names the bytes, not a record: it is served while some ready, public record
        holds them (that record publishes them), and a private record holding the same bytes does
        not stop it — which also keeps it from telling anyone whether a private copy exists."""
        return objects.public_of_sha256(s, sha)

    def variant_by_folder(self, s: Session, org: Organization, bucket: str, folder: str,
                          name: str) -> tuple[Media, Variant]:
        if bucket != self.core.bucket or name not in self.core.settings.variant_names:
            raise NotFound("no such variant")
        row = objects.variant_in_folder(s, org.id, folder, name)
        if row is None:
            raise NotFound("no such variant")
        return row[0], row[1]

    # -- many -------------------------------------------------------------------------------------

    def batch(self, s: Session, org: Organization, ids: list[str]) -> list[Media]:
        wanted = [i for i in ids if is_id(i)]
        if not wanted:
            return []
        found = images.batch(s, org.id, wanted)
        return [found[i] for i in ids if i in found]

    def list(self, s: Session, org: Organization, *, limit: int, offset: int, search: str | None,
             mime_prefix: str | None, sort: str, order: str) -> tuple[list[Media], int]:
        """One page of the organization's ready media, and the exact total (repositories/search.py)."""
        return self.core.search.page(s, org, limit=limit, offset=offset, search=search, mime_prefix=mime_prefix,
                                     sort=sort, order=order)

    # -- changes --------------------------------------------------------------------------------

    def patch(self, s: Session, media: Media, changes: dict) -> Media:
        for name, value in changes.items():
            setattr(media, name, value)
        media.updated_at = now()
        s.flush()
        if "is_private" in changes:  # its cached results, once the change has committed
            keys = keys_of(media)
            cache = self.core.ctx.cache
            unit.after_commit(s, lambda: cache.purge_keys(keys))
        return media

    # -- presigned downloads --------------------------------------------------------------------------

    def expiry(self, raw: int | None) -> int:
        st = self.core.settings
        value = st.presign_default if raw is None else raw
        if not st.presign_min <= value <= st.presign_max:
            raise BadRequest(f"expiry must be {st.presign_min}..{st.presign_max} seconds")
        return value

    def presign_download(self, base: str, key: str, expires: int, mime: str | None = None,
                         disposition: str | None = None) -> str:
        """A download URL of ``key``; one the store answers itself is told to send the type recorded
        from the bytes (``mime``) and the record's Content-Disposition, never the ones the upload's
        client gave the store."""
        core = self.core
        url = core.ctx.storage.presign_get(core.bucket, key, expires, mime, disposition)
        if url is not None:
            return url
        q = sign_query("GET", core.bucket, key, expires, core.ctx.settings.secret_key)
        return f"{base}/api/v1/media/signed/{core.bucket}/{key}?{q}"

    # -- /v2 images: tags and the list ------------------------------------------------------------

    def image(self, s: Session, org: Organization, media_id: str, user: str | None = None,
              owner_only: bool = False) -> Media:
        """A /v2 image of the client; another client's, or (``owner_only``) another user's
        private one, is the same 404 as one that does not exist."""
        media = self.get(s, org, media_id)
        if media.dialect != "v2":
            raise NotFound("no such image")
        if owner_only and media.is_private and media.owner != user:
            raise NotFound("no such image")
        return media

    def set_tags(self, s: Session, media_id: str, tags_: list[str]) -> None:
        tags.replace(s, media_id, tags_)

    def tags_of(self, s: Session, ids: list[str]) -> dict[str, list[str]]:
        return tags.of_media(s, ids)

    def albums_of(self, s: Session, ids: list[str]) -> dict[str, list[str]]:
        return tags.albums_of_media(s, ids)

    def list_images(self, s: Session, org_id: int | None, *, user: str | None, limit: int, offset: int,
                    tag: str | None = None, album_id: str | None = None, private: bool | None = None,
                    owner: str | None = None, since: datetime | None = None, until: datetime | None = None,
                    all_private: bool = False, also_sees: str | None = None,
                    search: str | None = None) -> tuple[list[Media], int]:
        """``also_sees``: another user whose private images are listed too (an album's owner, to
        whoever holds the album's token: never more than that owner could list). ``search``: text
        found in the file name or the description, whatever the case."""
        viewers = None if all_private else [u for u in (user, also_sees) if u is not None]
        return images.page(s, org_id, viewers=viewers, limit=limit, offset=offset, tag=tag, album_id=album_id,
                           private=private, owner=owner, since=since, until=until, search=search)
