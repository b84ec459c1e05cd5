"""mediaproxy: the origin server behind a chat platform's media CDN."""

__version__ = "0.1.0"
