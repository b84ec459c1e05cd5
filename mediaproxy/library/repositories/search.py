"""The list of a client's media (``GET /api/v1/media/list``): one page and its exact total, each
from an index. One strategy per database, chosen once when the library is built
(``for_database``), never per call: SQLite reads its FTS5 trigram table and the per-type counts
its triggers keep (migration 0005), PostgreSQL its trigram GIN index of ``media_search``
(migration 0006) and counts beside the page on a connection of its own."""

from __future__ import annotations

from concurrent import futures

from sqlalchemy import (
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    union_all,
)
from sqlalchemy.orm import Session, joinedload

from ..db import Database
from ..models import Media, Organization, Version

SORTS = {
    "createdAt": Media.created_at,
    "updatedAt": Media.updated_at,
    "filename": Media.filename,
    "size": Media.size,
    "mimeType": Media.mime_type,
}
# SQLite: the FTS5 trigram index of ready media's filename, alt and caption, under the rowid
# org_id << 40 | kind << 32 | seq; kinds number the MIME types (migration 0005)
MEDIA_TEXT = table("media_text", column("media_text"), column("rowid"))
MEDIA_KINDS = table("media_kinds", column("code"), column("mime_type"))
MEDIA_COUNTS = table("media_counts", column("org_id"), column("mime_type"), column("n"))  # ready media per type
SEARCH_ROWID = literal_column("media.search_rowid")  # SQLite only: the media's rowid in media_text
SEARCH_TEXT = literal_column("media.search_text")  # PostgreSQL only: lower(filename, alt, caption) joined
# PostgreSQL only (migration 0006): what a search's total filters on, for ready media only; typed, so
# that the organization is bound as the integer its GIN index holds
MEDIA_SEARCH = table("media_search", column("org_id", Integer), column("search_text", Text),
                     column("mime_type", String))
TEXT_ORG_LIMIT = 1 << 23  # organizations with larger ids are not in media_text (the rowid would overflow)
KIND_SHARED = 255  # the 255th MIME type and later share one kind, so a filter on them cannot use the ranges
FETCH_BY_ID = 2000  # a search with at most this many matches fetches its page by id, not by walking the sort index
WALK_MAX = 20_000  # nor when the walk would read more rows of the sort index than this
ROW_WALK_MAX = 2000  # SQLite: a walk expected to read at most this many rows tests each row's text itself
# SQLite: the only characters outside ASCII that FTS5's trigram tokenizer folds to ASCII (KELVIN SIGN
# to k, LONG S to s; tests/test_library_list.py checks the linked SQLite): for an ASCII search, LIKE
# (ASCII case folding) on a row without them matches exactly the rows MATCH does
FOLDED_TO_ASCII = {"\u212a": "k", "\u017f": "s"}
# PostgreSQL: up to this offset a page is read while its total is counted beside it; deeper, after
COUNT_BESIDE_MAX_OFFSET = 1000


# A page's media as media_query loads them, but their current version and its object joined in
# the page's own statement (each at most one row a media) rather than read by two more: a
# selectinload costs its SQL and, even for media without a version, ~1 ms of CPU building its query
_LISTED = select(Media).options(joinedload(Media.current).joinedload(Version.object),
                                joinedload(Media.current).selectinload(Version.variants))
# the page's statement in each order, built once (building it is a large part of a list's Python time)
_ORDERED = {(sort, asc): _LISTED.order_by(col.asc() if asc else col.desc(), Media.id.asc() if asc else Media.id.desc())
            for sort, col in SORTS.items() for asc in (True, False)}


# The list's other statements, built once per shape with their values bound at execution
# (``org_id``, ``pattern``, ``prefix``, ``match``, ``lo``/``hi``, ``limit``/``offset``): building a
# statement and its cache key cost ~0.3 ms a statement, a list runs four or five (docs/library.md
# § Listing). Statements are immutable, so one built by two threads at once is built twice, harmlessly.
_BUILT: dict[tuple, object] = {}


def _built(shape: tuple, build):
    stmt = _BUILT.get(shape)
    if stmt is None:
        stmt = _BUILT[shape] = build()
    return stmt


def _paged(sort: str, asc: bool, *where):
    return _ORDERED[sort, asc].where(*where).limit(bindparam("limit")).offset(bindparam("offset"))


_MIME = Media.mime_type.like(bindparam("prefix"), escape="\\")  # a prefix of the MIME type, escaped, with %
# SQLite: the matches of one rowid range of media_text, and how many there are
_TEXT_MATCH = (MEDIA_TEXT.c.media_text.op("MATCH")(bindparam("match")),
               MEDIA_TEXT.c.rowid.between(bindparam("lo"), bindparam("hi")))
_TEXT_COUNT = select(func.count()).select_from(MEDIA_TEXT).where(*_TEXT_MATCH)
_TEXT_ROWIDS = select(MEDIA_TEXT.c.rowid).where(*_TEXT_MATCH)
_KIND_CODES = select(MEDIA_KINDS.c.code).where(MEDIA_KINDS.c.mime_type.like(bindparam("prefix"), escape="\\"))


def like_escape(text: str) -> str:
    """``text`` matched literally by ``LIKE … ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class MediaSearch:
    """What both strategies share: the page's query, sorted by the sort index's columns."""

    def __init__(self, db: Database):
        self.db = db

    def page(self, s: Session, org: Organization, *, limit: int, offset: int, search: str | None,
             mime_prefix: str | None, sort: str, order: str) -> tuple[list[Media], int]:
        """One page of the organization's ready media, and the exact total.

        ``search`` is a case-insensitive substring of filename, alt or caption; ``mime_prefix`` a
        prefix of the MIME type. Every total comes from an index (migrations 0005, 0006):
        - no search: on SQLite the per-type counts its triggers keep (``media_counts``), on
          PostgreSQL an index-only count on (state, org_id, mime_type);
        - SQLite, a search of 3 characters or more: ``MATCH`` in the FTS5 trigram table
          ``media_text`` over the rowid range of the organization (and of each MIME kind the
          prefix selects); case folding is Unicode's;
        - PostgreSQL, a search: the GIN index on (org_id, search_text) of ``media_search``, the
          narrow table of ready media (0006), re-checked with one ``LIKE``; counted on a
          connection of its own while the page is read;
        - anything else (a shorter search on SQLite, more than 254 MIME types): ``LIKE``, ASCII
          case folding on SQLite.
        The page walks the (org_id, sort column, id) index while matches are dense enough, and is
        otherwise sorted from the matches themselves."""
        mime_prefix = mime_prefix.lower() if mime_prefix else None  # stored MIME types are lower case
        prefix = like_escape(mime_prefix) + "%" if mime_prefix else None
        mime = [Media.mime_type.like(prefix, escape="\\")] if prefix else []
        page = _ORDERED[sort, order == "asc"].limit(limit).offset(offset)
        values = {"org_id": org.id, "prefix": prefix, "limit": limit, "offset": offset}
        return self._page(s, org, page, search, mime_prefix, prefix, mime, limit, offset, (sort, order == "asc"),
                          values)

    def _page(self, s: Session, org: Organization, page, search: str | None, mime_prefix: str | None,
              prefix: str | None, mime: list, limit: int, offset: int, order: tuple[str, bool],
              values: dict) -> tuple[list[Media], int]:
        raise NotImplementedError


class PostgresSearch(MediaSearch):
    def _page(self, s: Session, org: Organization, page, search: str | None, mime_prefix: str | None,
              prefix: str | None, mime: list, limit: int, offset: int, order: tuple[str, bool],
              values: dict) -> tuple[list[Media], int]:
        if search:
            values["pattern"] = "%" + like_escape(search) + "%"
        page = _built(("pg page", *order, bool(prefix), bool(search)), lambda: _paged(
            *order, Media.org_id == bindparam("org_id"), Media.state == "ready", *([_MIME] if prefix else []),
            *([SEARCH_TEXT.like(func.lower(bindparam("pattern")), escape="\\")] if search else [])))
        count = _built(("pg count", bool(prefix), bool(search)), lambda: self._count(bool(prefix), bool(search)))
        if offset <= COUNT_BESIDE_MAX_OFFSET:
            # the total on a connection of its own while this one reads the page: a list costs
            # the longer of the two instead of their sum (docs/library.md § Listing); a deeper
            # page is read only once the total says it exists (past the end, reading it could
            # walk the organization's whole sort index)
            counting = self.db.beside(lambda conn: conn.scalar(count, values))
            try:
                items = list(s.scalars(page, values))
            except BaseException:
                futures.wait([counting])  # the page's error is the one raised; the count is not left running
                raise
            total = counting.result() or 0
            return (items if offset < total else []), total
        total = s.scalar(count, values) or 0
        if offset >= total:
            return [], total
        return list(s.scalars(page, values)), total

    @staticmethod
    def _count(typed: bool, searched: bool):
        if not searched:
            return select(func.count()).select_from(Media).where(
                Media.org_id == bindparam("org_id"), Media.state == "ready", *([_MIME] if typed else []))
        # the total from the narrow table of ready media (0006), not from media's rows
        return select(func.count()).select_from(MEDIA_SEARCH).where(
            MEDIA_SEARCH.c.org_id == bindparam("org_id"),
            MEDIA_SEARCH.c.search_text.like(func.lower(bindparam("pattern")), escape="\\"),
            *([MEDIA_SEARCH.c.mime_type.like(bindparam("prefix"), escape="\\")] if typed else []))


class SqliteSearch(MediaSearch):
    def _page(self, s: Session, org: Organization, page, search: str | None, mime_prefix: str | None,
              prefix: str | None, mime: list, limit: int, offset: int, order: tuple[str, bool],
              values: dict) -> tuple[list[Media], int]:
        base = [Media.org_id == org.id, Media.state == "ready", *mime]
        # SQLite may read a walked page through (state, org_id, mime_type), which matches more of
        # the WHERE, and then sort every match; the unary + leaves it only the sort indexes
        walking = [Media.org_id == org.id, literal_column("+media.state") == "ready", *mime]
        if search and len(search) >= 3 and org.id < TEXT_ORG_LIMIT:
            ranges = self._text_ranges(s, org.id, mime_prefix, values)
            if ranges is not None:
                return self._list_text(s, org, page, search, mime_prefix, mime, ranges, limit, offset, order, values)
        found = []
        count = select(func.count()).select_from(Media).where(*base)
        if search:  # SQLite's LIKE folds ASCII case already; its ILIKE would call lower() on every row
            pattern = "%" + like_escape(search) + "%"
            found.append(or_(*(c.like(pattern, escape="\\") for c in (Media.filename, Media.alt, Media.caption))))
            count = count.where(*found)
        total = (s.scalar(count) or 0) if search else self._ready_count(s, org.id, mime_prefix)
        if offset >= total:
            return [], total
        walk = not (search or mime_prefix) or self._dense(s, org.id, mime_prefix, total, offset, limit)
        return list(s.scalars(page.where(*(walking if walk else base), *found))), total

    def _dense(self, s: Session, org_id: int, mime_prefix: str | None, total: int, offset: int, limit: int) -> bool:
        """Whether the page is cheaper read by walking the sort index than by sorting the matches."""
        return total > FETCH_BY_ID and self._walk_pays(total, self._ready_count(s, org_id, mime_prefix), offset, limit)

    @staticmethod
    def _walk_pays(total: int, candidates: int, offset: int, limit: int) -> bool:
        """More than FETCH_BY_ID matches among ``candidates``, and a walk of the sort index expected
        to read at most WALK_MAX rows."""
        return total > FETCH_BY_ID and (offset + limit) * candidates / total <= WALK_MAX

    def _text_ranges(self, s: Session, org_id: int, mime_prefix: str | None,
                     values: dict) -> list[tuple[int, int]] | None:
        """The rowid ranges of ``media_text`` that hold the organization's ready media of the MIME
        types the prefix selects; None when one of those types has no kind of its own."""
        org = org_id << 40
        if not mime_prefix:
            return [(org, org | (1 << 40) - 1)]
        codes = sorted(s.scalars(_KIND_CODES, {"prefix": values["prefix"]}))
        if codes and codes[-1] >= KIND_SHARED:
            return None
        ranges: list[tuple[int, int]] = []
        for code in codes:  # consecutive kinds make one range
            if ranges and ranges[-1][1] == (org | code << 32) - 1:
                ranges[-1] = (ranges[-1][0], org | (code << 32) | 0xFFFFFFFF)
            else:
                ranges.append((org | code << 32, org | (code << 32) | 0xFFFFFFFF))
        return ranges

    def _list_text(self, s: Session, org: Organization, page, search: str, mime_prefix: str | None, mime: list,
                   ranges: list[tuple[int, int]], limit: int, offset: int, order: tuple[str, bool],
                   values: dict) -> tuple[list[Media], int]:
        values["match"] = '"' + search.replace('"', '""') + '"'
        total = 0
        for lo, hi in ranges:
            total += s.scalar(_TEXT_COUNT, {"match": values["match"], "lo": lo, "hi": hi}) or 0
        if offset >= total:
            return [], total
        ready, typed = self._ready_counts(s, org.id, mime_prefix, values)
        if len(ranges) == 1:  # the common case (every kind the prefix selects is consecutive): built once
            values["lo"], values["hi"] = ranges[0]
            return self._list_range(s, search, values, order, total, ready, typed), total
        match = MEDIA_TEXT.c.media_text.op("MATCH")(values["match"])
        matches = union_all(*(select(MEDIA_TEXT.c.rowid).where(match, MEDIA_TEXT.c.rowid.between(lo, hi))
                              for lo, hi in ranges))
        if search.isascii() and (offset + limit) * ready / total <= ROW_WALK_MAX:
            # a short walk: test each row read in the sort index's order by LIKE (~0.5 µs a row),
            # instead of first gathering every match from media_text (~2 µs a match: 5 ms for a
            # word in 10% of 100,000 rows; docs/library.md § Listing). Exact: a row holding a
            # character FTS5 folds to ASCII is tested against the matches themselves, which
            # SQLite then gathers only if such a row is read
            pattern = "%" + like_escape(search) + "%"
            cols = (Media.filename, Media.alt, Media.caption)
            tests = [c.like(pattern, escape="\\") for c in cols]
            folded = [ch for ch, to in FOLDED_TO_ASCII.items() if to in search.lower()]
            if folded:
                glob = "*[" + "".join(folded) + "]*"
                tests.append(and_(or_(*(c.op("GLOB")(glob) for c in cols)),
                                  literal_column("+media.search_rowid").in_(matches)))
            walk = [Media.org_id == org.id, literal_column("+media.state") == "ready", *mime, or_(*tests)]
            return list(s.scalars(page.where(*walk))), total
        if self._walk_pays(total, typed, offset, limit):
            # walk the sort index, which holds search_rowid (0005): membership in the matches implies
            # the org, the state and the type, so no row is read but the page's; the unary + keeps
            # SQLite from reading the matches through the search_rowid index instead
            walk = [Media.org_id == org.id, literal_column("+media.search_rowid").in_(matches)]
            return list(s.scalars(page.where(*walk))), total
        # few matches, or sparse ones deep into the list: fetch them by rowid and sort them
        return list(s.scalars(page.where(SEARCH_ROWID.in_(matches)))), total

    def _list_range(self, s: Session, search: str, values: dict, order: tuple[str, bool], total: int, ready: int,
                    typed: int) -> list[Media]:
        """``_list_text``'s page for matches in one rowid range, by statements built once per shape."""
        offset, limit, prefix = values["offset"], values["limit"], values["prefix"]
        mime = [_MIME] if prefix else []
        if search.isascii() and (offset + limit) * ready / total <= ROW_WALK_MAX:
            # a short walk testing each row by LIKE (as in _list_text, which says why)
            values["pattern"] = "%" + like_escape(search) + "%"
            folded = tuple(ch for ch, to in FOLDED_TO_ASCII.items() if to in search.lower())

            def row_walk():
                cols = (Media.filename, Media.alt, Media.caption)
                tests = [c.like(bindparam("pattern"), escape="\\") for c in cols]
                if folded:
                    glob = "*[" + "".join(folded) + "]*"
                    tests.append(and_(or_(*(c.op("GLOB")(glob) for c in cols)),
                                      literal_column("+media.search_rowid").in_(_TEXT_ROWIDS)))
                return _paged(*order, Media.org_id == bindparam("org_id"), literal_column("+media.state") == "ready",
                              *mime, or_(*tests))

            return list(s.scalars(_built(("row walk", *order, bool(prefix), folded), row_walk), values))
        if self._walk_pays(total, typed, offset, limit):
            # as in _list_text: membership in the matches, tested from the sort index
            page = _built(("walk", *order), lambda: _paged(
                *order, Media.org_id == bindparam("org_id"), literal_column("+media.search_rowid").in_(_TEXT_ROWIDS)))
            return list(s.scalars(page, values))
        page = _built(("by rowid", *order), lambda: _paged(*order, SEARCH_ROWID.in_(_TEXT_ROWIDS)))
        return list(s.scalars(page, values))

    _READY_COUNTS = {typed: select(func.coalesce(func.sum(MEDIA_COUNTS.c.n), 0), func.coalesce(func.sum(
        case((MEDIA_COUNTS.c.mime_type.like(bindparam("prefix"), escape="\\"), MEDIA_COUNTS.c.n), else_=0)
        if typed else MEDIA_COUNTS.c.n), 0)).where(MEDIA_COUNTS.c.org_id == bindparam("org_id"))
        for typed in (False, True)}

    def _ready_counts(self, s: Session, org_id: int, mime_prefix: str | None, values: dict) -> tuple[int, int]:
        """SQLite: how many ready media the organization has, of any type and of these types, in
        one query of the counts the triggers of migration 0005 keep."""
        every, of_types = s.execute(self._READY_COUNTS[bool(mime_prefix)],
                                    {"org_id": org_id, "prefix": values["prefix"]}).one()
        return int(every), int(of_types)

    def _ready_count(self, s: Session, org_id: int, mime_prefix: str | None) -> int:
        """SQLite: how many ready media of these types the organization has, from the counts the
        triggers of migration 0005 keep."""
        q = select(func.coalesce(func.sum(MEDIA_COUNTS.c.n), 0)).where(MEDIA_COUNTS.c.org_id == org_id)
        if mime_prefix:
            q = q.where(MEDIA_COUNTS.c.mime_type.like(like_escape(mime_prefix) + "%", escape="\\"))
        return s.scalar(q) or 0


def for_database(db: Database) -> MediaSearch:
    """The strategy of the database's kind, chosen once when the library is built."""
    return SqliteSearch(db) if db.url.startswith("sqlite") else PostgresSearch(db)
