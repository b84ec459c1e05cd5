"""A media's versions: the pointer's compare-and-set move, and what a version still uses."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from ..models import Media, Organization, Version
from .media import media_query


def of_media(s: Session, media_id: str) -> list[Version]:
    """Every version of a media, with its variants and object."""
    return list(s.scalars(select(Version).options(selectinload(Version.variants), selectinload(Version.object))
                          .where(Version.media_id == media_id)))


def object_in_use(s: Session, object_id: int) -> bool:
    return bool(s.scalar(select(func.count()).select_from(Version).where(Version.object_id == object_id)))


def exists(s: Session, version_id: str) -> bool:
    return s.get(Version, version_id) is not None


def move_pointer(s: Session, media_id: str, base_id: str | None, version_id: str, **values) -> bool:
    """Point the media at ``version_id`` if it still points at ``base_id`` (compare-and-set), with
    ``values`` (its file name, type, size...); whether it moved."""
    return s.execute(
        update(Media).where(Media.id == media_id, Media.current_version_id == base_id)
        .values(current_version_id=version_id, **values)
        .execution_options(synchronize_session=False)).rowcount == 1


def reload_media(s: Session, media_id: str) -> Media | None:
    """The media as the database has it now (after a compare-and-set that bypassed the session)."""
    return s.scalar(media_query().where(Media.id == media_id).execution_options(populate_existing=True))


def crop_folder(s: Session, job_id: str, media_id: str, base_version_id: str | None, org_id: int) -> str | None:
    """The folder a crop job writes (named after the job), unless its media points at that
    version; None when nothing tells where it is."""
    media = s.get(Media, media_id)
    if media is not None and media.current_version_id == job_id:
        return None
    base = s.get(Version, base_version_id) if base_version_id else None
    if base is not None:
        return f"{base.folder.rsplit('/', 1)[0]}/{job_id}"
    org = s.get(Organization, org_id)
    return f"{org.slug}/{media_id}/{job_id}" if org is not None else None
