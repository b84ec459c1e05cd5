"""admin sessions: an access token names its session, refused once the session is revoked

Revision ID: 0007
Revises: 0006

One row per login (the family of its refresh tokens). The sessions of the refresh tokens already
issued are made from them: revoked when every token of the family is. Access tokens issued before
this revision name no session and are refused (they lived 15 minutes at most): log in again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("admin_id", sa.Integer(), sa.ForeignKey("admins.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_admin_sessions_admin_id", "admin_sessions", ["admin_id"])
    op.execute("INSERT INTO admin_sessions (id, admin_id, created_at, revoked_at) "
               "SELECT family, MIN(admin_id), MIN(created_at), "
               "CASE WHEN COUNT(revoked_at) = COUNT(*) THEN MAX(revoked_at) END "
               "FROM refresh_tokens GROUP BY family")


def downgrade() -> None:
    op.drop_index("ix_admin_sessions_admin_id", table_name="admin_sessions")
    op.drop_table("admin_sessions")
