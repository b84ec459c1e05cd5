"""the admin's list across every client, newest first: an index in its order

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # GET /v2/admin/images without clientId (the admin portal's grid): without it SQLite sorted
    # every ready record for each page (28 ms of a 3,000-image page, growing with the library)
    op.create_index("ix_media_state_created_id", "media", ["state", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_media_state_created_id", table_name="media")
