"""the /v2 image service: media tags, albums, album images, share tokens, avatars

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_tags",
        sa.Column("media_id", sa.String(40), sa.ForeignKey("media.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
    )
    op.create_index("ix_media_tags_tag", "media_tags", ["tag", "media_id"])
    op.create_table(
        "albums",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_albums_org_owner", "albums", ["org_id", "owner", "created_at"])
    op.create_table(
        "album_images",
        sa.Column("album_id", sa.String(40), sa.ForeignKey("albums.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("media_id", sa.String(40), sa.ForeignKey("media.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("added_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_album_images_media", "album_images", ["media_id"])
    op.create_table(
        "share_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("target_id", sa.String(40), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_share_tokens_target", "share_tokens", ["kind", "target_id"])
    op.create_table(
        "avatars",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("external_user_id", sa.String(255), nullable=False),
        sa.Column("media_id", sa.String(40), sa.ForeignKey("media.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("org_id", "external_user_id", name="uq_avatars_org_user"),
    )


def downgrade() -> None:
    op.drop_table("avatars")
    op.drop_index("ix_share_tokens_target", table_name="share_tokens")
    op.drop_table("share_tokens")
    op.drop_index("ix_album_images_media", table_name="album_images")
    op.drop_table("album_images")
    op.drop_index("ix_albums_org_owner", table_name="albums")
    op.drop_table("albums")
    op.drop_index("ix_media_tags_tag", table_name="media_tags")
    op.drop_table("media_tags")
