"""Avatars: each user of a client has at most one, a media record (``dialect='avatar'``) its
pointer names; a new one replaces it, and the replaced record and its bytes go."""

from __future__ import annotations

import time

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...errors import Overloaded
from ...hotpath import decimal
from ..models import Avatar, Media, Organization, now
from ..repositories import avatars
from ..repositories.media import load
from .base import Core

REPLACE_FOR = 5.0  # seconds a replacement retries a pointer another request keeps moving


class Avatars:
    def __init__(self, core: Core, versions):
        self.core = core
        self.versions = versions  # services.versions.Versions: the replaced record's delete

    def by_id(self, s: Session, avatar_id: str) -> Avatar | None:
        """An avatar by its id given as text (the admin API's path); None for any other text."""
        return s.get(Avatar, int(avatar_id)) if decimal(avatar_id) and len(avatar_id) < 12 else None

    def media_of(self, s: Session, row: Avatar) -> Media:
        return s.get(Media, row.media_id)

    def of_user(self, s: Session, org_id: int, user: str) -> Avatar | None:
        return avatars.of_user(s, org_id, user)

    def replace(self, s: Session, org: Organization, user: str, media: Media) -> None:
        """Point the user's avatar at ``media`` and delete the record it pointed at, in the
        session's transaction (the replaced bytes go once it commits).

        Concurrent uploads for one user: the pointer moves by compare-and-set (the row still points
        where it was read), and a lost race (a unique-key clash on the first avatar, a pointer
        another transaction moved) reads again, so exactly one avatar is left and every replaced
        one is deleted."""
        deadline = time.monotonic() + REPLACE_FOR
        while time.monotonic() < deadline:
            row = avatars.of_user(s, org.id, user, fresh=True)
            if row is None:
                try:
                    with s.begin_nested():  # a clash with a concurrent first avatar undoes this alone
                        s.add(Avatar(org_id=org.id, external_user_id=user, media_id=media.id))
                    return
                except IntegrityError:
                    continue
            old_id = row.media_id
            if avatars.move(s, row.id, old_id, media.id, now()):
                old = load(s, old_id)
                if old is not None:
                    self.versions.delete(s, old)
                return
            time.sleep(0.01)
        raise Overloaded("the avatar is being replaced by another request; retry")

    def delete(self, s: Session, row: Avatar) -> None:
        media = load(s, row.media_id)
        s.delete(row)
        s.flush()
        if media is not None:
            self.versions.delete(s, media)

    def page(self, s: Session, org_id: int | None, limit: int, offset: int) -> tuple[list, int]:
        return avatars.page(s, org_id, limit, offset)
