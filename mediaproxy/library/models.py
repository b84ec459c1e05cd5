"""SQLAlchemy tables of the media library.

One ``media`` row per media object, pointing at its current ``version``; a
version points at the stored ``object`` (bucket, key, SHA-256) and owns its
``variants``. Objects never change under a key: crop and replace add a
version and move the pointer. Identical bytes of one organization share one
object row (content addressing, the presigned /media API).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored naive, always UTC


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class ApiKey(Base):
    """A key is ``mpk_{prefix}_{secret}``; only its prefix and SHA-256 digest are stored."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    digest: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    org: Mapped[Organization] = relationship()


class StoredObject(Base):
    __tablename__ = "objects"
    __table_args__ = (
        UniqueConstraint("bucket", "key", name="uq_objects_bucket_key"),
        Index("ix_objects_org_sha256", "org_id", "sha256"),
        Index("ix_objects_sha256", "sha256"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    bucket: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mime_type: Mapped[str] = mapped_column(String(127), default="application/octet-stream")
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Media(Base):
    __tablename__ = "media"
    __table_args__ = (
        # one per sort of the list (migration 0004; on SQLite 0005 appends search_rowid); the search's
        # trigram indexes are not declared here (0005: pg_trgm GIN on the generated search_text on
        # PostgreSQL, the FTS5 table media_text on SQLite)
        Index("ix_media_org_created_id", "org_id", "created_at", "id"),
        Index("ix_media_org_updated_id", "org_id", "updated_at", "id"),
        Index("ix_media_org_filename_id", "org_id", "filename", "id"),
        Index("ix_media_org_size_id", "org_id", "size", "id"),
        Index("ix_media_org_mime_id", "org_id", "mime_type", "id"),
        Index("ix_media_state_org_mime", "state", "org_id", "mime_type"),  # the list's total (0005)
        Index("ix_media_org_owner", "org_id", "owner"),
        Index("ix_media_state_created_id", "state", "created_at", "id"),  # the admin's list of every client (0010)
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)  # X-User-Id of the uploader
    dialect: Mapped[str] = mapped_column(String(8), default="v1")  # which API made it: v1, media, v2
    state: Mapped[str] = mapped_column(String(16), default="ready")  # uploading | ready
    filename: Mapped[str] = mapped_column(String(255), default="")
    mime_type: Mapped[str] = mapped_column(String(127), default="application/octet-stream")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    is_private: Mapped[bool] = mapped_column(Boolean, default=False)
    alt: Mapped[str | None] = mapped_column(Text, nullable=True)
    caption: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    blur_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    thumb_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    current_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, name="fk_media_current_version", ondelete="SET NULL"),
        nullable=True,
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)
    current: Mapped[Version | None] = relationship(foreign_keys=[current_version_id], post_update=True)


class Version(Base):
    __tablename__ = "versions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    media_id: Mapped[str] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id"), index=True)
    folder: Mapped[str] = mapped_column(String(1024))  # variants live under it
    # the Content-Disposition this record's presigned PUT carried (the /media API), served with its public
    # URL's bytes; the record's own, not the object's: identical bytes of two records share one object
    content_disposition: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    # the record's side of media_id, declared so that a flush deleting a media and its versions
    # deletes the versions first: deleted first, the media's ON DELETE CASCADE would take them,
    # and the ORM's own DELETE of each would then match no row
    media: Mapped[Media] = relationship(foreign_keys=[media_id])
    object: Mapped[StoredObject] = relationship()
    variants: Mapped[list[Variant]] = relationship(
        cascade="all, delete-orphan", order_by="Variant.id", back_populates="version"
    )


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (
        UniqueConstraint("version_id", "name", name="uq_variants_version_name"),
        UniqueConstraint("bucket", "key", name="uq_variants_bucket_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    bucket: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(String(1024))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(127))
    version: Mapped[Version] = relationship(back_populates="variants")


class Job(Base):
    """One unit of work of the worker, and the outbox the queue is fed from (docs/library.md § Jobs).

    The row is written in the transaction of the request that asks for the work; the queue only
    carries its id (``relayed_at`` says when it was handed over). A worker claims it by
    compare-and-set (``pending`` → ``active`` with its ``lease_owner`` and ``lease_until``, renewed
    by heartbeats); a lease that expires puts it back to ``pending``. A crop records the version it
    starts from (``base_version_id``) and the one it makes (``result_version_id``, named after the
    job, so every attempt writes the same keys); the media moves from one to the other by
    compare-and-set in the transaction that completes the job."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_lease", "state", "lease_until"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    media_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(32))  # variants | crop | finalize
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|active|completed|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    base_version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    result_version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    relayed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # handed to the queue
    run_after: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # a retry's backoff
    failing_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # first of a run of failures
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)


# -- the /v2 image service: tags, albums, share tokens, avatars -------------------------------------------------

class MediaTag(Base):
    """One tag of one media (the /v2 image service's ``tags[]``); filtered on, so a row per tag, not a JSON blob."""

    __tablename__ = "media_tags"
    __table_args__ = (Index("ix_media_tags_tag", "tag", "media_id"),)
    media_id: Mapped[str] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class Album(Base):
    __tablename__ = "albums"
    __table_args__ = (Index("ix_albums_org_owner", "org_id", "owner", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    owner: Mapped[str] = mapped_column(String(255))  # X-User-Id of its creator
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the /v2 image service's albumId
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)


class AlbumImage(Base):
    __tablename__ = "album_images"
    __table_args__ = (Index("ix_album_images_media", "media_id"),)
    album_id: Mapped[str] = mapped_column(ForeignKey("albums.id", ondelete="CASCADE"), primary_key=True)
    media_id: Mapped[str] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class ShareToken(Base):
    """A share link of an image or an access token of an album. Only the SHA-256 of the token is
    stored; it expires (``expires_at``) and can be revoked (``revoked_at``)."""

    __tablename__ = "share_tokens"
    __table_args__ = (Index("ix_share_tokens_target", "kind", "target_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # image | album
    target_id: Mapped[str] = mapped_column(String(40))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Avatar(Base):
    """One avatar per (client, external user): a pointer to an ordinary media record."""

    __tablename__ = "avatars"
    __table_args__ = (UniqueConstraint("org_id", "external_user_id", name="uq_avatars_org_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    external_user_id: Mapped[str] = mapped_column(String(255))
    media_id: Mapped[str] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)


# -- the admin API: admins, refresh tokens, login throttling ---------------------------------------------------

class Admin(Base):
    __tablename__ = "admins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id
    token_version: Mapped[int] = mapped_column(Integer, default=0)  # bumped: every access token dies
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)


class RefreshToken(Base):
    """Opaque, stored as SHA-256; one use each (rotation); a family is one login's chain."""

    __tablename__ = "refresh_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    family: Mapped[str] = mapped_column(String(40), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class AdminSession(Base):
    """One login of an admin (its refresh tokens are one family, ``RefreshToken.family``): every
    access token names its session, and is refused once the session is revoked (logout)."""

    __tablename__ = "admin_sessions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the refresh tokens' family
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LoginThrottle(Base):
    """Failed logins per device (``device:``), per (account, address) pair (``pair:``) and per
    address (``addr:``); see auth.throttle_reserve."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now)
