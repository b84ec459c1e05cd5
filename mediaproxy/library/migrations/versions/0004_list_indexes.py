"""the list query's indexes: a trigram index for the substring search, (org_id, sort column, id)
btree indexes for each sort; see docs/library.md § Measured

Revision ID: 0004
Revises: 0003

PostgreSQL: ``pg_trgm`` GIN indexes on filename, alt and caption serve ``ILIKE '%term%'`` (a
bitmap OR of the three). SQLite: an FTS5 ``trigram`` table (``media_search``, one row per media:
the three columns and, unindexed, every column the list filters on) kept in step by triggers; the
service narrows with ``MATCH`` and re-checks with the same ``LIKE`` as before, so the answers do
not change. The FTS table keeps its own copy of the text (not external content): the media
table has no INTEGER PRIMARY KEY, so its rowids may change under VACUUM.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SORTED = {"created": "created_at", "updated": "updated_at", "filename": "filename", "size": "size",
          "mime": "mime_type"}
SEARCHED = ("filename", "alt", "caption")
# the FTS row also mirrors every column the list filters on, so a count never leaves the FTS table
MIRRORED_SRC = ("id", "org_id", "state", "mime_type", "owner")
MIRRORED = ("media_id", "org_id", "state", "mime_type", "owner")


def upgrade() -> None:
    for old in ("ix_media_org_created", "ix_media_org_filename", "ix_media_org_mime"):
        op.drop_index(old, table_name="media")
    for name, col in SORTED.items():
        op.create_index(f"ix_media_org_{name}_id", "media", ["org_id", col, "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for col in SEARCHED:
            op.execute(f"CREATE INDEX ix_media_{col}_trgm ON media USING gin ({col} gin_trgm_ops)")
    elif op.get_bind().dialect.name == "sqlite":
        create_sqlite_mirror()


def create_sqlite_mirror() -> None:
    """The FTS5 table and its triggers (0005's downgrade rebuilds them with this too)."""
    op.execute(f"CREATE VIRTUAL TABLE media_search USING fts5({', '.join(c + ' UNINDEXED' for c in MIRRORED)}, "
               f"{', '.join(SEARCHED)}, tokenize='trigram')")
    cols = ", ".join((*MIRRORED_SRC, *SEARCHED))
    new = ", ".join(f"new.{c}" for c in (*MIRRORED_SRC, *SEARCHED))
    op.execute(f"INSERT INTO media_search ({', '.join((*MIRRORED, *SEARCHED))}) SELECT {cols} FROM media")
    insert = f"INSERT INTO media_search ({', '.join((*MIRRORED, *SEARCHED))}) VALUES ({new}); "
    delete = "DELETE FROM media_search WHERE rowid IN (SELECT rowid FROM media_search WHERE media_id = old.id); "
    op.execute(f"CREATE TRIGGER media_search_ai AFTER INSERT ON media BEGIN {insert}END")
    op.execute(f"CREATE TRIGGER media_search_ad AFTER DELETE ON media BEGIN {delete}END")
    op.execute(f"CREATE TRIGGER media_search_au AFTER UPDATE OF {cols} ON media BEGIN {delete}{insert}END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for col in SEARCHED:
            op.execute(f"DROP INDEX ix_media_{col}_trgm")
    elif op.get_bind().dialect.name == "sqlite":
        for trig in ("media_search_ai", "media_search_ad", "media_search_au"):
            op.execute(f"DROP TRIGGER {trig}")
        op.execute("DROP TABLE media_search")
    for name in SORTED:
        op.drop_index(f"ix_media_org_{name}_id", table_name="media")
    op.create_index("ix_media_org_created", "media", ["org_id", "created_at"])
    op.create_index("ix_media_org_filename", "media", ["org_id", "filename"])
    op.create_index("ix_media_org_mime", "media", ["org_id", "mime_type"])
