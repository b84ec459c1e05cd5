"""Debian's chromium under Playwright, as the portal's browser tests and ``bench/portal.py`` start it.

Playwright's own browser downloads are not used (not reachable from the build machines): the
system's ``chromium`` (``scripts/deps`` installs it) is launched by its path, headless, with a
fresh profile directory and nothing in the background that would reach the network or skew a
measurement (updates, sync, field trials over QUIC)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}


def launch(playwright, profile: Path):
    """A persistent browser context (one profile directory, so its HTTP cache is a real one)."""
    return playwright.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                         args=CHROMIUM_ARGS, viewport=VIEWPORT)
