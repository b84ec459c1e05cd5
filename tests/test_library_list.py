"""The list query's every path against a plain Python reference, on SQLite and PostgreSQL.

`Library.list` answers a search from the FTS5 rowid ranges (SQLite), the generated trigram column
(PostgreSQL) or LIKE, and reads a page by walking the sort index or by sorting the matches. The
thresholds that pick a path are forced here so each path answers every query, and every answer
must equal the reference: same total, same page, through inserts, patches, state changes and
deletes (the triggers keep the index in step)."""

from __future__ import annotations

import contextlib
import random
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from alembic import command
from sqlalchemy import delete, insert, update

from mediaproxy.library import auth
from mediaproxy.library.db import Database, alembic_config, upgrade
from mediaproxy.library.models import Media, Organization
from mediaproxy.library.repositories import search
from mediaproxy.library.services import Library

WORDS = ["Sunset", "beach", "MOUNTAIN", "city", "dog", "cat", "river", "snow", "été", "x%y", "a_b", 'qu"ote']
TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif", "video/mp4", "application/pdf"]
SORT_COLS = {"createdAt": "created_at", "updatedAt": "updated_at", "filename": "filename", "size": "size",
             "mimeType": "mime_type"}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/list.db"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def db(db_url):
    d = Database(db_url)
    d.upgrade()
    yield d
    d.dispose()


def _lib(db: Database) -> Library:
    ctx = SimpleNamespace(settings=SimpleNamespace(library=SimpleNamespace(bucket="library")))
    return Library(ctx, db)


def _fill(db: Database, n: int) -> tuple[dict, dict]:
    rnd = random.Random(5)
    with db.transaction() as s:
        orgs = {slug: auth.organization(s, slug, create=True) for slug in ("a", "b")}
        ids = {slug: o.id for slug, o in orgs.items()}
    t0 = datetime(2025, 1, 1)
    rows = []
    for slug in ("a", "b"):
        for i in range(n):
            w = rnd.sample(WORDS, 2)
            rows.append({"id": f"{slug}{i:031d}", "org_id": ids[slug], "dialect": "v1",
                         "state": "ready" if rnd.random() < 0.9 else "uploading",
                         "filename": f"{w[0]}-{i}.jpg", "mime_type": rnd.choice(TYPES),
                         "size": rnd.randint(1, 50), "is_private": False,
                         "alt": rnd.choice([None, f"the {w[1]}"]), "caption": rnd.choice([None, "", "Été " + w[0]]),
                         "created_at": t0 + timedelta(seconds=rnd.randint(0, 40)),
                         "updated_at": t0 + timedelta(seconds=i)})
    with db.engine.begin() as conn:
        conn.execute(insert(Media), rows)
    return ids, {r["id"]: r for r in rows}


def _expected(rows: dict, org_id: int, search, prefix, sort, order, limit, offset, ascii_fold: bool):
    def fold(v: str) -> str:
        return "".join(c.lower() if c.isascii() else c for c in v) if ascii_fold else v.lower()

    out = [r for r in rows.values() if r["org_id"] == org_id and r["state"] == "ready"]
    if prefix:
        out = [r for r in out if fold(r["mime_type"]).startswith(fold(prefix))]
    if search:
        out = [r for r in out if any(fold(search) in fold(r[c] or "") for c in ("filename", "alt", "caption"))]
    col = SORT_COLS[sort]
    out.sort(key=lambda r: (r[col], r["id"]), reverse=order == "desc")
    return [r["id"] for r in out[offset:offset + limit]], len(out)


QUERIES = [
    ("sunset", None, "createdAt", "desc", 20, 0),
    ("SUNSET", "image/", "filename", "asc", 7, 3),
    ("beach", "image/png", "size", "desc", 10, 5),
    ("the riv", None, "updatedAt", "asc", 50, 0),
    ("x%y", None, "mimeType", "asc", 20, 0),  # LIKE wildcards are literal
    ("a_b", "video/", "createdAt", "asc", 20, 0),
    ('qu"ote', None, "size", "asc", 20, 0),  # a quote is literal, not FTS syntax
    ('"sunset" OR dog', None, "size", "asc", 20, 0),
    ("og", None, "filename", "desc", 20, 0),  # shorter than a trigram
    ("c", "image/", "size", "asc", 100, 0),
    ("-1", None, "createdAt", "asc", 100, 40),
    ("nothing-like-this", None, "createdAt", "asc", 20, 0),
    ("dog", "image/", "createdAt", "desc", 20, 10_000),  # past the end
    ("dog", "text/", "createdAt", "desc", 20, 0),  # a type nobody has
    (None, None, "createdAt", "desc", 20, 0),
    (None, "image/", "size", "asc", 30, 17),
    (None, "IMAGE/P", "filename", "asc", 30, 0),
]
def _check(db: Database, lib: Library, ids: dict, rows: dict, tag: str) -> None:
    sqlite = db.engine.dialect.name == "sqlite"
    with db.transaction() as s:
        for slug, org_id in ids.items():
            org = auth.organization(s, slug)
            for search, prefix, sort, order, limit, offset in QUERIES:
                # SQLite's LIKE (short searches, shared kinds) folds only ASCII case; FTS5 and
                # PostgreSQL's lower() fold more, which no searched word here tells apart
                items, total = lib.catalog.list(s, org, limit=limit, offset=offset, search=search,
                                                mime_prefix=prefix, sort=sort, order=order)
                want = _expected(rows, org_id, search, prefix, sort, order, limit, offset, ascii_fold=sqlite)
                assert ([m.id for m in items], total) == want, (tag, slug, search, prefix, sort, order, offset)


# each way of reading the page: (FETCH_BY_ID, WALK_MAX, KIND_SHARED, ROW_WALK_MAX)
PATHS = {"default": (2000, 20_000, 255, 2000), "walk": (0, 10**9, 255, -1), "row-walk": (0, 0, 255, 10**9),
         "by-id": (0, 0, 255, -1), "shared-kinds": (0, 10**9, 2, -1)}


def _force(monkeypatch, path: str) -> None:
    fetch, walk, shared, row_walk = PATHS[path]
    monkeypatch.setattr(search, "FETCH_BY_ID", fetch)
    monkeypatch.setattr(search, "WALK_MAX", walk)
    monkeypatch.setattr(search, "KIND_SHARED", shared)
    monkeypatch.setattr(search, "ROW_WALK_MAX", row_walk)


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_answers_like_the_reference(db, path, monkeypatch):
    _force(monkeypatch, path)
    ids, rows = _fill(db, 300)
    lib = _lib(db)

    def check(tag: str) -> None:
        _check(db, lib, ids, rows, tag)

    check("filled")
    # the index follows patches, state changes, a move between types and deletes
    some = sorted(rows)[::7]
    with db.engine.begin() as conn:
        for i, mid in enumerate(some):
            r = rows[mid]
            if i % 4 == 0:
                r["alt"] = "now a Sunset"
                conn.execute(update(Media).where(Media.id == mid).values(alt=r["alt"]))
            elif i % 4 == 1:
                r["state"] = "uploading" if r["state"] == "ready" else "ready"
                conn.execute(update(Media).where(Media.id == mid).values(state=r["state"]))
            elif i % 4 == 2:
                r["mime_type"] = "image/png" if r["mime_type"] != "image/png" else "video/mp4"
                r["filename"] = "beachside.png"
                conn.execute(update(Media).where(Media.id == mid).values(mime_type=r["mime_type"],
                                                                          filename=r["filename"]))
            else:
                del rows[mid]
                conn.execute(delete(Media).where(Media.id == mid))
        # a MIME type the index has never seen
        r = dict(rows[some[1]], id="n" * 32, mime_type="image/avif", filename="new sunset.avif", state="ready")
        rows[r["id"]] = r
        conn.execute(insert(Media), [r])
    check("changed")
    if db.engine.dialect.name == "postgresql":
        # media_search (0006) holds exactly the ready media, row for row, and follows a deleted
        # organization and a TRUNCATE
        def mirrored() -> set:
            with db.engine.connect() as conn:
                return set(conn.exec_driver_sql("SELECT media_id, org_id, mime_type, search_text FROM media_search"))

        def expected(org_ids) -> set:
            return {(r["id"], r["org_id"], r["mime_type"],
                     "\x1f".join((r["filename"], r["alt"] or "", r["caption"] or "")).lower())
                    for r in rows.values() if r["state"] == "ready" and r["org_id"] in org_ids}

        assert mirrored() == expected(ids.values())
        with db.engine.begin() as conn:
            conn.execute(delete(Organization).where(Organization.id == ids["b"]))
        assert mirrored() == expected({ids["a"]})
        with db.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE media CASCADE")
        assert mirrored() == set()


@pytest.mark.parametrize("before", ["0004", "0005"])
def test_migrations_index_existing_media_and_go_back(db_url, before):
    """Media written under 0004 (before 0005's indexes) or 0005 (before PostgreSQL's media_search
    of 0006) are searchable and counted after the upgrade; a downgrade to that revision and a
    second upgrade give the same answers."""
    d = Database(db_url)
    try:
        upgrade(d.engine, before)
        ids, rows = _fill(d, 120)
        upgrade(d.engine, "head")
        lib = _lib(d)
        _check(d, lib, ids, rows, "upgraded")
        command.downgrade(alembic_config(d.engine), before)
        upgrade(d.engine, "head")
        _check(d, lib, ids, rows, "round trip")
    finally:
        d.dispose()


def test_fts5_folds_to_ascii_only_the_characters_the_row_walk_knows():
    """The row walk (search.ROW_WALK_MAX) tests an ASCII search by LIKE, which folds ASCII case only:
    exact as long as FOLDED_TO_ASCII lists every character outside ASCII that the linked SQLite's
    FTS5 trigram tokenizer folds to an ASCII one."""
    import sqlite3

    c = sqlite3.connect(":memory:")
    c.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram')")
    c.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)",
                  ((cp, f"a{chr(cp)}a") for cp in range(0x80, 0x110000) if not 0xD800 <= cp < 0xE000))
    folded = {}
    for a in range(0x20, 0x7F):
        for (cp,) in c.execute("SELECT rowid FROM t WHERE t MATCH ?", ('"a' + chr(a).replace('"', '""') + 'a"',)):
            folded[chr(cp)] = chr(a).lower()
    assert folded == search.FOLDED_TO_ASCII


@pytest.mark.parametrize("path", ["row-walk", "walk", "by-id"])
def test_characters_folded_to_ascii_are_found_on_every_path(tmp_path, monkeypatch, path):
    """A KELVIN SIGN or a LONG S in a row is matched by a search for k or s (FTS5 folds them) on
    every path, the row walk's LIKE included, and the page agrees with the total."""
    _force(monkeypatch, path)
    d = Database(f"sqlite:///{tmp_path}/fold.db")
    try:
        d.upgrade()
        with d.transaction() as s:
            org_id = auth.organization(s, "f", create=True).id
        names = ["\u212aite.png", "kite.png", "\u017funset.png", "SUNSET.png", "\u212a\u212a.png", "plain.png"]
        with d.engine.begin() as conn:
            conn.execute(insert(Media), [
                {"id": f"f{i:031d}", "org_id": org_id, "dialect": "v1", "state": "ready", "filename": name,
                 "mime_type": "image/png", "size": i, "is_private": False, "alt": None, "caption": None,
                 "created_at": datetime(2025, 1, 1), "updated_at": datetime(2025, 1, 1)}
                for i, name in enumerate(names)])
        lib = _lib(d)
        with d.transaction() as s:
            org = auth.organization(s, "f")
            for word, want in (("kite", [0, 1]), ("sunset", [2, 3]), ("ITE.", [0, 1]), ("plain", [5])):
                items, total = lib.catalog.list(s, org, limit=10, offset=0, search=word, mime_prefix=None,
                                                sort="size", order="asc")
                assert ([m.filename for m in items], total) == ([names[i] for i in want], len(want)), word
    finally:
        d.dispose()


def test_more_mime_types_than_kinds(tmp_path):
    """SQLite numbers MIME types into kinds up to 255; the 255th type and later share one kind,
    and a type filter that selects any of them is answered by LIKE: still exact."""
    d = Database(f"sqlite:///{tmp_path}/kinds.db")
    try:
        d.upgrade()
        with d.transaction() as s:
            org_id = auth.organization(s, "k", create=True).id
        rows = {}
        for i in range(300):
            r = {"id": f"k{i:031d}", "org_id": org_id, "dialect": "v1", "state": "ready",
                 "filename": f"sunset-{i}.bin" if i % 3 else f"other-{i}.bin", "mime_type": f"x-type/t{i:03d}",
                 "size": i, "is_private": False, "alt": None, "caption": None,
                 "created_at": datetime(2025, 1, 1) + timedelta(seconds=i), "updated_at": datetime(2025, 1, 1)}
            rows[r["id"]] = r
        with d.engine.begin() as conn:
            conn.execute(insert(Media), list(rows.values()))
            assert conn.exec_driver_sql("SELECT max(code) FROM media_kinds").scalar() == 300
        lib = _lib(d)
        with d.transaction() as s:
            org = auth.organization(s, "k")
            for prefix in ("x-type/t0", "x-type/t25", "x-type/t2", "x-type/t29", "x-type/t1", None):
                for search in ("sunset", "ther", None):
                    items, total = lib.catalog.list(s, org, limit=100, offset=0, search=search, mime_prefix=prefix,
                                            sort="size", order="asc")
                    want = _expected(rows, org_id, search, prefix, "size", "asc", 100, 0, ascii_fold=True)
                    assert ([m.id for m in items], total) == want, (prefix, search)
    finally:
        d.dispose()


def test_beside_runs_on_its_own_pool(db_url):
    """With every connection of the sessions' pool held (1 kept + 4 overflow), a total is still
    counted beside them (the helpers' pool is their own), and the helper's error reaches the caller."""
    d = Database(db_url, pool_size=1)
    try:
        d.upgrade()
        with contextlib.ExitStack() as held:
            for _ in range(5):
                held.enter_context(d.engine.connect()).exec_driver_sql("SELECT 1")
            assert d.beside(lambda conn: conn.exec_driver_sql("SELECT 41 + 1").scalar()).result(timeout=10) == 42
            with pytest.raises(Exception, match="no_such_table"):
                d.beside(lambda conn: conn.exec_driver_sql("SELECT * FROM no_such_table").all()).result(timeout=10)
    finally:
        d.dispose()
