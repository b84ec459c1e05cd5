"""The library's SQL, one module per kind of record: the services ask these for rows and never
build a query themselves (a service still builds its inserts: adding a record is the ORM's `add`)."""

from sqlalchemy import text
from sqlalchemy.orm import Session


def ping(s: Session) -> None:
    """One round trip on the request's own connection: raises when the database does not answer."""
    s.execute(text("SELECT 1"))
