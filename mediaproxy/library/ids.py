"""The library's record ids: 32 lower-case hex characters (a random UUID), global across
organizations. An id of any other shape names nothing, so it is refused before any query."""

from __future__ import annotations

import re
import uuid

ID = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    return uuid.uuid4().hex


def is_id(text: str | None) -> bool:
    return ID.fullmatch(text or "") is not None
