"""What the admin API reads across clients: statistics and tag counts."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..repositories import stats, tags
from .base import Core


class Admin:
    def __init__(self, core: Core):
        self.core = core

    def stats(self, s: Session, org_id: int) -> dict:
        """The client's media, whichever API stored them: ``images`` (with ``privateImages`` and
        ``imageBytes``) counts every ready record but avatars — uploads of the /api/v1 API, of
        the presigned /media API and of /v2 — each with its original's size (identical /media uploads,
        stored once, count once per record; variants and cached renditions are not counted);
        ``byApi`` splits them by API. Avatars, albums and ``totalBytes`` (images' and avatars')
        follow."""
        return stats.of_organizations(s, [org_id])[org_id]

    def stats_of(self, s: Session, org_ids: list[int]) -> dict[int, dict]:
        """``stats`` of several clients, in three queries whatever their number."""
        return stats.of_organizations(s, org_ids)

    def tag_counts(self, s: Session, org_id: int | None, search: str | None, limit: int) -> list[dict]:
        return [{"tag": t, "count": n} for t, n in tags.counts(s, org_id, search, limit)]
