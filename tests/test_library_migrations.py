"""The library's migrations, up and down, on SQLite and on PostgreSQL (started by the tests, as
tests/services.py does): every revision's downgrade runs and the next upgrade gets the same schema
back; the admin's list index (0010) is where the list's query needs it on both databases."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from mediaproxy.library.db import Database, alembic_config, current, upgrade

INDEX = "ix_media_state_created_id"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    url = (f"sqlite:///{tmp_path}/migrations.db" if request.param == "sqlite"
           else request.getfixturevalue("postgres").new_database())
    d = Database(url)
    yield d
    d.dispose()


def schema(d: Database) -> dict:
    """Tables with their columns and indexes, as the database reports them."""
    insp = inspect(d.engine)
    return {t: (sorted(c["name"] for c in insp.get_columns(t)),
                sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(t)))
            for t in sorted(insp.get_table_names())}


def media_indexes(d: Database) -> dict:
    return {i["name"]: i["column_names"] for i in inspect(d.engine).get_indexes("media")}


def test_every_migration_goes_down_and_up_again(db):
    revisions = [s.revision for s in ScriptDirectory.from_config(alembic_config(db.engine)).walk_revisions()]
    upgrade(db.engine, "head")
    head = schema(db)
    cfg = alembic_config(db.engine)
    for below in revisions[1:]:  # newest first: one step down, checked, until the first revision
        command.downgrade(cfg, below)
        assert current(db.engine) == below
    command.downgrade(cfg, "base")
    assert current(db.engine) is None
    upgrade(db.engine, "head")
    assert current(db.engine) == revisions[0]
    assert schema(db) == head


def test_the_admin_list_index_up_and_down(db):
    upgrade(db.engine, "0009")
    assert INDEX not in media_indexes(db)
    upgrade(db.engine, "0010")
    assert media_indexes(db)[INDEX] == ["state", "created_at", "id"]
    command.downgrade(alembic_config(db.engine), "0009")
    assert INDEX not in media_indexes(db)
    upgrade(db.engine, "head")
    assert media_indexes(db)[INDEX] == ["state", "created_at", "id"]
    # the admin's page across every client reads the index in its order (no sort of every ready record)
    query = ("SELECT id FROM media WHERE state = 'ready' AND dialect = 'v2' "
             "ORDER BY created_at DESC, id DESC LIMIT 100")
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + query)))
            assert INDEX in plan and "TEMP B-TREE" not in plan, plan
        else:
            conn.execute(text("SET enable_seqscan = off"))  # an empty table: the planner would scan it
            plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + query)))
            assert INDEX in plan and "Sort" not in plan, plan
