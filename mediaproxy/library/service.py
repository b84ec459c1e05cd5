"""The names importers of the library's former single service module used; the verbs are in
``services/`` (one module per domain)."""

from .services import Library, Upload
from .services.base import INCOMING, clean_disposition, incoming_key, iso, own_key, safe_filename
from .services.signed import check_signature, sign_query

__all__ = ["INCOMING", "Library", "Upload", "check_signature", "clean_disposition", "incoming_key", "iso", "own_key",
           "safe_filename", "sign_query"]
