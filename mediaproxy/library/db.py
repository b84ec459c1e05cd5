"""Engine, sessions and migrations of the library's database.

SQLite (the embedded default) runs in WAL mode with foreign keys on and a busy
timeout, so gunicorn's workers and the job worker share one file; PostgreSQL
(``postgresql+psycopg://``) gets a small connection pool per process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from . import unit

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_migrate_lock = threading.Lock()


SQLITE_MMAP = 1 << 30  # address space only; pages are the OS page cache's, shared by every worker
SQLITE_CACHE_KIB = 16 * 1024  # per connection, for what mmap does not cover (writes, WAL frames)
BESIDE = 4  # helper threads (and their connections) per process for work beside a session


def make_engine(url: str, pool_size: int = 5, max_overflow: int = 4) -> Engine:
    """``pool_size`` connections kept, and a few more on demand: one per thread that may hold a
    session (gunicorn's threads, the job worker's), so no request waits for another's connection."""
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **(pool if path and path != ":memory:" else {}))

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # reads map the file instead of copying 4 KiB pages through read() into a 2 MiB cache:
            # a list that walks an index touches one random page per row (docs/library.md § Measured)
            cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP}")
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cur.close()

        return engine
    connect_args: dict = {}
    if url.startswith("postgresql"):
        # a server that is gone is an error within seconds, not at the kernel's TCP timeout;
        # and every query planned for its own parameters (psycopg prepares a statement after 5
        # runs, and PostgreSQL may then use a generic plan: a search's count read every row of
        # the organization instead of the trigram index, 4-5x slower; docs/library.md § Measured)
        # (a SET once connected, not a startup option: PgBouncer refuses unknown startup parameters)
        connect_args = {"connect_timeout": 5}
    engine = create_engine(url, pool_pre_ping=True, **pool, connect_args=connect_args)
    if url.startswith("postgresql"):
        @event.listens_for(engine, "connect")
        def _custom_plans(dbapi_conn, _record) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET plan_cache_mode = force_custom_plan")
            dbapi_conn.commit()

    return engine


class Database:
    """One engine and session factory per process (created lazily: after gunicorn forks)."""

    def __init__(self, url: str, pool_size: int = 5):
        self.url = url
        self.pool_size = pool_size
        self._engine: Engine | None = None
        self._factory: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        self._side: tuple[Engine, ThreadPoolExecutor] | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = make_engine(self.url, self.pool_size)
                    self._factory = sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    def session(self) -> Session:
        self.engine  # noqa: B018 - creates the factory
        assert self._factory is not None
        return self._factory()

    def transaction(self) -> AbstractContextManager[Session]:
        """A unit of work of its own (``unit.transaction``): committed when the block ends
        normally, rolled back otherwise."""
        return unit.transaction(self)

    def beside(self, fn: Callable[[Connection], object]) -> Future:
        """Run ``fn`` with a connection of its own on a helper thread while the caller goes on with
        its session: a list's exact total (PostgreSQL) is counted while its page is read.

        The helpers have their own pool, one connection per helper thread (``BESIDE`` at most),
        so a helper never waits for a connection a request holds: with one shared pool, every
        thread holding its session's connection while its helper waits for a second one would
        deadlock until the pool's timeout. More concurrent callers than helpers queue for one.
        ``fn`` runs in a transaction of its own (its own snapshot): under READ COMMITTED each
        statement has its own snapshot anyway."""
        if self._side is None:
            with self._lock:
                if self._side is None:
                    n = min(self.pool_size, BESIDE)
                    self._side = (make_engine(self.url, n, max_overflow=0),
                                  ThreadPoolExecutor(n, thread_name_prefix="db-beside"))
        engine, helpers = self._side

        def run():
            with engine.connect() as conn:
                return fn(conn)

        return helpers.submit(run)

    def upgrade(self) -> None:
        upgrade(self.engine)

    def ping(self) -> None:
        """Raise unless the database answers a query (readiness)."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        with self._lock:
            side, self._side = self._side, None
        if side is not None:
            engine, helpers = side
            helpers.shutdown(wait=True)
            engine.dispose()
        if self._engine is not None:
            self._engine.dispose()


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (idempotent: an up-to-date database is left alone)."""
    from alembic import command

    with _migrate_lock:
        command.upgrade(alembic_config(engine), revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_locked(db: Database) -> None:
    """Migrate at start-up, one process at a time (gunicorn's workers and the job worker may start
    together): an exclusive file lock beside an SQLite database; PostgreSQL: migrations/env.py's advisory lock."""
    if not db.url.startswith("sqlite:///"):
        db.upgrade()
        return
    import fcntl

    lock_path = Path(db.url.removeprefix("sqlite:///") + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            db.upgrade()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
