"""Media records: how they are loaded, and the joins from a media to what it currently serves."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from ..ids import is_id
from ..models import Media, StoredObject, Variant, Version

_MEDIA = select(Media).options(
    selectinload(Media.current).selectinload(Version.object),
    selectinload(Media.current).selectinload(Version.variants),
)


def media_query() -> Select:
    """Media with their current version, its object and its variants loaded (three queries in all,
    whatever the number of media). Built once: a statement is immutable (each ``where`` or
    ``order_by`` makes a new one), and building this one with its loader options cost more than
    the SQL of a short list."""
    return _MEDIA


def current_object(q: Select) -> Select:
    """``q`` joined to the media's current version and its stored original: the one place the
    "media whose current object is this key" join is written."""
    return (q.join(Version, Version.id == Media.current_version_id)
            .join(StoredObject, StoredObject.id == Version.object_id))


def current_variants(q: Select) -> Select:
    """``q`` joined to the media's current version and its variants."""
    return (q.join(Version, Version.id == Media.current_version_id)
            .join(Variant, Variant.version_id == Version.id))


def load(s: Session, media_id: str) -> Media | None:
    """One media, loaded as ``media_query`` loads it; None for an id of another shape."""
    return s.scalar(media_query().where(Media.id == media_id)) if is_id(media_id) else None


def kinds(s: Session, org_id: int, ids: list[str]) -> dict[str, tuple[str, bool, str | None]]:
    """(dialect, is_private, owner) of the organization's media among ``ids``, in one query."""
    wanted = [i for i in dict.fromkeys(ids) if is_id(i)]
    if not wanted:
        return {}
    rows = s.execute(select(Media.id, Media.dialect, Media.is_private, Media.owner)
                     .where(Media.org_id == org_id, Media.id.in_(wanted)))
    return {mid: (dialect, private, owner) for mid, dialect, private, owner in rows}
