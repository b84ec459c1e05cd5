"""Alembic environment: the engine comes from mediaproxy (``db.upgrade``), never from a URL in a file."""

from __future__ import annotations

from alembic import context

from mediaproxy.library.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    # PostgreSQL: one migrator at a time (several processes may start together).
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(71311)")
    context.run_migrations()
