"""Stored objects and the records they belong to, looked up by key, by bytes or by folder."""

from __future__ import annotations

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..models import Job, Media, Organization, StoredObject, Variant, Version
from .media import current_object, current_variants, media_query


def media_of_key(s: Session, org_id: int, bucket: str, key: str) -> Media | None:
    """The organization's media whose current original is ``key`` (the newest, if several)."""
    return s.scalar(current_object(media_query())
                    .where(Media.org_id == org_id, StoredObject.bucket == bucket, StoredObject.key == key)
                    .order_by(Media.created_at.desc()).limit(1))


def upload_of_key(s: Session, bucket: str, key: str) -> Media | None:
    """The media waiting for (or holding) the bytes of ``key``, whatever its organization."""
    return s.scalar(current_object(media_query()).where(StoredObject.bucket == bucket, StoredObject.key == key)
                    .limit(1))


def owner_of_key(s: Session, bucket: str, key: str) -> tuple[Media, bool] | None:
    """(a media whose current version has the stored ``key`` as original or variant — a private
    one if any is: identical /media uploads share one object —, is-variant)."""
    media = s.scalar(
        current_object(select(Media)).where(StoredObject.bucket == bucket, StoredObject.key == key)
        .order_by(Media.is_private.desc(), Media.created_at.desc()).limit(1))
    if media is not None:
        return media, False
    media = s.scalar(current_variants(select(Media)).where(Variant.bucket == bucket, Variant.key == key).limit(1))
    return (media, True) if media is not None else None


def org_media_of_key(s: Session, org_id: int, bucket: str, key: str) -> Media | None:
    """The organization's media that ``key`` (its original or a variant) belongs to."""
    media = s.scalar(current_object(select(Media))
                     .where(Media.org_id == org_id, StoredObject.bucket == bucket, StoredObject.key == key).limit(1))
    if media is None:
        media = s.scalar(current_variants(select(Media))
                         .where(Media.org_id == org_id, Variant.bucket == bucket, Variant.key == key).limit(1))
    return media


def key_mime(s: Session, bucket: str, key: str) -> str | None:
    mime = s.scalar(select(StoredObject.mime_type).where(StoredObject.bucket == bucket, StoredObject.key == key))
    if mime is None:
        mime = s.scalar(select(Variant.mime_type).where(Variant.bucket == bucket, Variant.key == key))
    return mime


def public_original(s: Session, org_slug: str, media_id: str, version_id: str):
    """(type, file name, folder, Content-Disposition, bucket, stored key) of a ready, public media's
    current original, if ``version_id`` is its current version; None otherwise."""
    return s.execute(
        current_object(select(Media.mime_type, Media.filename, Version.folder, Version.content_disposition,
                              StoredObject.bucket, StoredObject.key))
        .join(Organization, Organization.id == Media.org_id)
        .where(Media.id == media_id, Media.current_version_id == version_id, Organization.slug == org_slug,
               Media.state == "ready", Media.is_private.is_(False))).first()


def variant_of_version(s: Session, version_id: str, bucket: str, key: str):
    """(bucket, key, type) of the version's variant stored under ``key``, or None."""
    return s.execute(select(Variant.bucket, Variant.key, Variant.mime_type)
                     .where(Variant.version_id == version_id, Variant.key == key, Variant.bucket == bucket)).first()


def own_disposition(s: Session, bucket: str, key: str) -> str | None:
    """The Content-Disposition of the version in whose folder the stored original ``key`` lies."""
    folder = key.rsplit("/", 1)[0]
    return s.scalar(select(Version.content_disposition).join(StoredObject, StoredObject.id == Version.object_id)
                    .where(StoredObject.bucket == bucket, StoredObject.key == key, Version.folder == folder)
                    .limit(1))


def public_of_sha256(s: Session, sha: str) -> StoredObject | None:
    """The object of a ready, public media with these bytes."""
    return s.scalar(
        select(StoredObject).join(Version, Version.object_id == StoredObject.id)
        .join(Media, Media.current_version_id == Version.id)
        .where(StoredObject.sha256 == sha, Media.is_private.is_(False), Media.state == "ready").limit(1))


def variant_in_folder(s: Session, org_id: int, folder: str, name: str):
    """(media, variant) of the organization's media whose current version is ``folder``."""
    return s.execute(current_variants(select(Media, Variant))
                     .where(Media.org_id == org_id, Version.folder == folder, Variant.name == name).limit(1)).first()


def same_bytes(s: Session, org_id: int, bucket: str, sha256: str, other_than: int | None = None) -> StoredObject | None:
    """An object of the organization holding these bytes (content addressing)."""
    q = select(StoredObject).where(StoredObject.org_id == org_id, StoredObject.sha256 == sha256,
                                   StoredObject.bucket == bucket)
    if other_than is not None:
        q = q.where(StoredObject.id != other_than)
    return s.scalar(q.limit(1))


def media_state(s: Session, media_id: str) -> str | None:
    return s.scalar(select(Media.state).where(Media.id == media_id))


def claim_upload(s: Session, media_id: str, at, stale) -> bool:
    """``uploading`` (or ``receiving`` claimed before ``stale``) → ``receiving``, compare-and-set."""
    return s.execute(
        update(Media).where(Media.id == media_id,
                            or_(Media.state == "uploading",
                                (Media.state == "receiving") & (Media.updated_at < stale)))
        .values(state="receiving", updated_at=at)
        .execution_options(synchronize_session=False)).rowcount == 1


def release_upload(s: Session, media_id: str, claimed_at) -> bool:
    """``receiving`` → ``uploading``, only the claim taken at ``claimed_at`` (not a later one's)."""
    return s.execute(
        update(Media).where(Media.id == media_id, Media.state == "receiving", Media.updated_at == claimed_at)
        .values(state="uploading").execution_options(synchronize_session=False)).rowcount == 1


def key_recorded(s: Session, bucket: str, key: str) -> bool:
    """Whether an object or a variant row names the stored ``key``."""
    return s.scalar(select(StoredObject.id).where(StoredObject.bucket == bucket, StoredObject.key == key)
                    .union_all(select(Variant.id).where(Variant.bucket == bucket, Variant.key == key))
                    .limit(1)) is not None


def waiting_arrivals(s: Session, bucket: str, keys: list[str], stale) -> list[tuple[str, int, str, object]]:
    """(id, org id, state, updated_at) of the records waiting for the bytes of one of ``keys``
    (``uploading``, or ``receiving`` under a claim taken before ``stale``) that no live job
    completing them (``finalize``, ``variants``) waits for."""
    if not keys:
        return []
    return [tuple(row) for row in s.execute(
        current_object(select(Media.id, Media.org_id, Media.state, Media.updated_at))
        .where(StoredObject.bucket == bucket, StoredObject.key.in_(keys),
               or_(Media.state == "uploading", (Media.state == "receiving") & (Media.updated_at < stale)),
               ~_completion_waiting(("finalize", "variants"))))]


def dead_claims(s: Session, stale, limit: int) -> list[tuple[str, int, str, object, str, str]]:
    """(id, org id, state, updated_at, bucket, key of the current object) of at most ``limit``
    records under a claim taken before ``stale`` (``receiving``: its request died) that no live job
    completing them waits for."""
    return [tuple(row) for row in s.execute(
        current_object(select(Media.id, Media.org_id, Media.state, Media.updated_at,
                              StoredObject.bucket, StoredObject.key))
        .where(Media.state == "receiving", Media.updated_at < stale,
               ~_completion_waiting(("finalize", "variants")))
        .limit(limit))]


def waiting_alone(s: Session, media_id: str) -> int | None:
    """The organization id of the record ``media_id`` if it waits for its upload (``uploading``)
    and no live ``finalize`` job waits for it (a ``variants`` job does not count: one that fails
    for good, its image too large to render, leaves the upload to another); None otherwise."""
    return s.scalar(select(Media.org_id).where(Media.id == media_id, Media.state == "uploading",
                                               ~_completion_waiting(("finalize",))))


def _completion_waiting(kinds: tuple[str, ...]):
    """A live job (``pending``, ``active``) of ``kinds`` for the record, which completes its upload."""
    return (select(Job.id).where(Job.media_id == Media.id, Job.kind.in_(kinds),
                                 Job.state.in_(("pending", "active"))).exists())


def mark_arrival(s: Session, media_id: str, state: str, updated_at, at) -> bool:
    """Compare-and-set of a waiting record as a sweep saw it (``state``, ``updated_at``): it is
    ``uploading`` again (a dead claim given back), touched at ``at``. False when another
    transaction changed it since."""
    return s.execute(
        update(Media).where(Media.id == media_id, Media.state == state, Media.updated_at == updated_at)
        .values(state="uploading", updated_at=at).execution_options(synchronize_session=False)).rowcount == 1
