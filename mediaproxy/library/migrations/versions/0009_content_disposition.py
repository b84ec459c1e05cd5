"""the Content-Disposition a presigned upload's PUT carried, kept with its record's version

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a nullable column: ALTER TABLE ADD COLUMN on both SQLite and PostgreSQL, no table rewrite
    op.add_column("versions", sa.Column("content_disposition", sa.String(1024), nullable=True))


def downgrade() -> None:
    op.drop_column("versions", "content_disposition")
