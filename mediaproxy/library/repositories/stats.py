"""What a client stores, counted for its statistics: grouped by organization, so the admin's
statistics of every client cost three queries, not three per client."""

from __future__ import annotations

from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session

from ..models import Album, Avatar, Media

# the records' dialects: the /api/v1 API, the presigned /media API, the /v2 image service
STATS_APIS = ("v1", "media", "v2")


def _blank() -> dict:
    return {"images": 0, "privateImages": 0, "bytes": 0}


def of_organizations(s: Session, org_ids: list[int]) -> dict[int, dict]:
    """Each organization's statistics (``Gallery.stats`` says what they count)."""
    if not org_ids:
        return {}
    per_org = {o: {api: _blank() for api in STATS_APIS} for o in org_ids}
    for org_id, dialect, n, size, private in s.execute(
            select(Media.org_id, Media.dialect, func.count(), func.coalesce(func.sum(Media.size), 0),
                   func.coalesce(func.sum(func.cast(Media.is_private, Integer)), 0))
            .where(Media.org_id.in_(org_ids), Media.state == "ready", Media.dialect != "avatar")
            .group_by(Media.org_id, Media.dialect).order_by(Media.org_id, Media.dialect)):
        api = per_org[org_id].setdefault(dialect, _blank())
        api["images"], api["privateImages"], api["bytes"] = int(n), int(private), int(size)
    albums = dict(s.execute(select(Album.org_id, func.count()).where(Album.org_id.in_(org_ids))
                            .group_by(Album.org_id)).all())
    avatars = {o: (n, size) for o, n, size in s.execute(
        select(Avatar.org_id, func.count(), func.coalesce(func.sum(Media.size), 0)).select_from(Avatar)
        .join(Media, Media.id == Avatar.media_id).where(Avatar.org_id.in_(org_ids)).group_by(Avatar.org_id))}
    out = {}
    for org_id, per_api in per_org.items():
        images = sum(a["images"] for a in per_api.values())
        private = sum(a["privateImages"] for a in per_api.values())
        size = sum(a["bytes"] for a in per_api.values())
        n_avatars, avatar_bytes = avatars.get(org_id, (0, 0))
        out[org_id] = {"images": images, "privateImages": private, "imageBytes": size,
                       "albums": int(albums.get(org_id, 0)), "avatars": int(n_avatars),
                       "avatarBytes": int(avatar_bytes), "totalBytes": size + int(avatar_bytes), "byApi": per_api}
    return out
